/* state_blob.c - write and validate the header of a saved session state. */
#include "state_blob.h"

#include <string.h>

#include "error.h"
#include "hash.h"

static const char k_magic[8] = {'F', 'M', 'S', 'T', 'A', 'T', 'E', 0};

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

void fm_state_header_write(const fm_state_header *h, uint8_t *o) {
    memcpy(o, k_magic, 8);
    put32(o + 8, FM_STATE_FORMAT_VERSION);
    put32(o + 12, FM_STATE_HEADER_BYTES);
    put64(o + 16, h->fingerprint);
    put32(o + 24, h->n_layer);
    put32(o + 28, h->d_inner);
    put32(o + 32, h->d_conv);
    put32(o + 36, h->d_state);
    put32(o + 40, h->n_vocab);
    put32(o + 44, h->flags);
    put64(o + 48, h->n_tokens);
    put64(o + 56, h->payload_bytes);
    put64(o + 64, h->checksum);
    put32(o + 72, h->n_history);
    put32(o + 76, 0);
    put64(o + 80, h->rng_seed);
    for (int i = 0; i < 4; i++) put64(o + 88 + 8 * i, h->rng[i]);
}

uint64_t fm_state_payload_bytes(const fm_model *m, int has_logits, uint32_t n_history) {
    return (uint64_t)m->state_floats * 4 + (has_logits ? (uint64_t)m->cfg.n_vocab * 4 : 0) + (uint64_t)n_history * 4;
}

fm_status fm_state_header_check(const fm_model *m, const uint8_t *b, size_t n, fm_state_header *h) {
    if (n < FM_STATE_HEADER_BYTES)
        return fm_error(FM_ERR_STATE_MISMATCH, "state blob: %zu bytes is shorter than its header", n);
    if (memcmp(b, k_magic, 8) != 0) return fm_error(FM_ERR_STATE_MISMATCH, "state blob: bad magic (not a saved state)");
    uint32_t version = get32(b + 8), hbytes = get32(b + 12);
    if (version != FM_STATE_FORMAT_VERSION)
        return fm_error(FM_ERR_STATE_MISMATCH, "state blob: format version %u is not supported (expected %u)", version,
                        FM_STATE_FORMAT_VERSION);
    if (hbytes != FM_STATE_HEADER_BYTES)
        return fm_error(FM_ERR_STATE_MISMATCH, "state blob: header size %u (expected %u)", hbytes, FM_STATE_HEADER_BYTES);
    h->fingerprint = get64(b + 16);
    h->n_layer = get32(b + 24);
    h->d_inner = get32(b + 28);
    h->d_conv = get32(b + 32);
    h->d_state = get32(b + 36);
    h->n_vocab = get32(b + 40);
    h->flags = get32(b + 44);
    h->n_tokens = get64(b + 48);
    h->payload_bytes = get64(b + 56);
    h->checksum = get64(b + 64);
    h->n_history = get32(b + 72);
    h->rng_seed = get64(b + 80);
    for (int i = 0; i < 4; i++) h->rng[i] = get64(b + 88 + 8 * i);
    const fm_config *c = &m->cfg;
    if (h->n_layer != (uint32_t)c->n_layer || h->d_inner != (uint32_t)c->d_inner ||
        h->d_conv != (uint32_t)c->d_conv || h->d_state != (uint32_t)c->d_state || h->n_vocab != (uint32_t)c->n_vocab)
        return fm_error(FM_ERR_STATE_MISMATCH,
                        "state blob: dimensions (layers %u, d_inner %u, conv %u, d_state %u, vocab %u) do not match "
                        "this model (%d, %d, %d, %d, %d)",
                        h->n_layer, h->d_inner, h->d_conv, h->d_state, h->n_vocab, c->n_layer, c->d_inner, c->d_conv,
                        c->d_state, c->n_vocab);
    if (h->fingerprint != m->fingerprint)
        return fm_error(FM_ERR_STATE_MISMATCH, "state blob: saved from another model (fingerprint %016llx, this model %016llx)",
                        (unsigned long long)h->fingerprint, (unsigned long long)m->fingerprint);
    if (get32(b + 76) != 0) /* reserved: refused so that a later format can give it a meaning */
        return fm_error(FM_ERR_STATE_MISMATCH, "state blob: reserved header field is %u, not 0", get32(b + 76));
    if (h->flags & ~(FM_STATE_HAS_LOGITS | FM_STATE_RNG_SEEDED))
        return fm_error(FM_ERR_STATE_MISMATCH, "state blob: unknown flags 0x%x", h->flags);
    if (h->n_history > FM_HISTORY_MAX)
        return fm_error(FM_ERR_STATE_MISMATCH, "state blob: %u history tokens (at most %d)", h->n_history, FM_HISTORY_MAX);
    uint64_t want = fm_state_payload_bytes(m, (h->flags & FM_STATE_HAS_LOGITS) != 0, h->n_history);
    if (h->payload_bytes != want)
        return fm_error(FM_ERR_STATE_MISMATCH, "state blob: payload of %llu bytes, this model needs %llu",
                        (unsigned long long)h->payload_bytes, (unsigned long long)want);
    if ((uint64_t)(n - FM_STATE_HEADER_BYTES) != want)
        return fm_error(FM_ERR_STATE_MISMATCH, "state blob: %zu bytes given, %llu expected (truncated?)", n,
                        (unsigned long long)(want + FM_STATE_HEADER_BYTES));
    if (fm_fnv1a(FM_FNV_OFFSET, b + FM_STATE_HEADER_BYTES, (size_t)want) != h->checksum)
        return fm_error(FM_ERR_STATE_MISMATCH, "state blob: checksum mismatch (corrupted data)");
    /* The history must hold valid ids: the sampler indexes logits with them. */
    const uint8_t *hist = b + FM_STATE_HEADER_BYTES + (want - (uint64_t)h->n_history * 4);
    for (uint32_t i = 0; i < h->n_history; i++) {
        uint32_t id = get32(hist + 4 * (size_t)i);
        if (id >= (uint32_t)c->n_vocab)
            return fm_error(FM_ERR_STATE_MISMATCH, "state blob: history token %u is %u, outside the vocabulary", i, id);
    }
    return FM_OK;
}
