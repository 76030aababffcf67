/* fuzz_state_blob.c - bytes through fm_session_state_load on a tiny model (tests/support/tiny_model,
   written once per process). To get past the fingerprint and checksum checks, an input of header
   size or more whose fingerprint field is 0 gets the model's fingerprint, and one whose checksum
   field is 0 gets the checksum of the payload it declares; any other value is loaded as given. A
   refused blob must leave the session exactly as it was; an accepted one must survive a save round
   trip, a feed and a sample. */
#include <string.h>
#include <sys/stat.h>

#include "falconmamba.h"
#include "fuzz_common.h"
#include "hash.h"
#include "internal.h"
#include "state_blob.h"
#include "test_util.h"
#include "tiny_model.h"

static fm_context *g_ctx;
static fm_session *g_s;

static void teardown(void) {
    fm_session_close(g_s);
    fm_context_close(g_ctx);
}

static void setup(void) {
    fm_tm_options o;
    fm_tm_options_init(&o);
    o.n_layer = 1;
    fm_tm_model *m = fm_tm_create(&o);
    FUZZ_CHECK(m != NULL);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/model", fuzz_tmpdir());
    FUZZ_CHECK(mkdir(dir, 0700) == 0);
    FUZZ_CHECK(fm_tm_write(m, dir) == 0);
    fm_tm_free(m);
    FUZZ_CHECK(fm_context_open(dir, NULL, &g_ctx) == FM_OK);
    FUZZ_CHECK(fm_session_open(g_ctx, NULL, &g_s) == FM_OK);
    atexit(teardown);
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* The session's saved form, to compare before/after a refused load. */
static uint8_t *snapshot(size_t *n) {
    *n = fm_session_state_size(g_s);
    uint8_t *b = malloc(*n);
    FUZZ_CHECK(b != NULL);
    FUZZ_CHECK(fm_session_state_save(g_s, b, *n, n) == FM_OK);
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FUZZ_ONCE(setup);
    uint8_t *blob = malloc(size ? size : 1);
    FUZZ_CHECK(blob != NULL);
    memcpy(blob, data, size);
    if (size >= FM_STATE_HEADER_BYTES) {
        if (get64(blob + 16) == 0) put64(blob + 16, g_ctx->model.fingerprint);
        if (get64(blob + 64) == 0) {
            uint64_t declared = get64(blob + 56), have = size - FM_STATE_HEADER_BYTES;
            put64(blob + 64, fm_fnv1a(FM_FNV_OFFSET, blob + FM_STATE_HEADER_BYTES, (size_t)(declared < have ? declared : have)));
        }
    }
    /* Alternate between an empty session and one with logits and history. */
    FUZZ_CHECK(fm_session_reset(g_s) == FM_OK);
    if (size & 1) {
        int32_t toks[3] = {1, 2, 3};
        FUZZ_CHECK(fm_session_feed(g_s, toks, 3, NULL) == FM_OK);
    }
    size_t n0;
    uint8_t *before = snapshot(&n0);
    fm_status st = fm_session_state_load(g_s, blob, size);
    if (st != FM_OK) {
        FUZZ_CHECK(st == FM_ERR_STATE_MISMATCH);
        size_t n1;
        uint8_t *after = snapshot(&n1);
        FUZZ_CHECK(n0 == n1 && memcmp(before, after, n0) == 0); /* unchanged */
        free(after);
    } else {
        size_t n1;
        uint8_t *again = snapshot(&n1);
        FUZZ_CHECK(n1 == size && memcmp(again, blob, size) == 0); /* loads what it saves */
        free(again);
        fm_sampler_params sp;
        fm_sampler_params_init(&sp);
        sp.repeat_penalty = 1.3f;
        sp.presence_penalty = 0.5f;
        int32_t tok = 0;
        if (fm_session_logits(g_s)) {
            fm_status s2 = fm_session_sample(g_s, &sp, &tok);
            FUZZ_CHECK(s2 == FM_OK || s2 == FM_ERR_INVALID_ARGUMENT);
            if (s2 == FM_OK) FUZZ_CHECK(tok >= 0 && tok < fm_n_vocab(g_ctx));
        }
        tok = 5;
        FUZZ_CHECK(fm_session_feed(g_s, &tok, 1, NULL) == FM_OK);
    }
    free(before);
    free(blob);
    return 0;
}
