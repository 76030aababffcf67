/* api_session.c - fm_session_*: feed, logits, fork, state save/load, batched decode, cancel. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "hash.h"
#include "internal.h"
#include "state_blob.h"

#define FM_DEFAULT_PREFILL_CHUNK 256

FM_API void fm_session_params_init(fm_session_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->prefill_chunk = 0;
}

static fm_status session_new(fm_context *ctx, size_t chunk, fm_session **out) {
    fm_session *s = calloc(1, sizeof *s);
    if (!s) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    s->ctx = ctx;
    s->chunk = chunk;
    s->logits = malloc((size_t)ctx->model.cfg.n_vocab * sizeof(float));
    if (!s->logits) {
        free(s);
        return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    fm_status st = fm_state_pool_acquire(&ctx->pool, &s->state);
    if (st) {
        free(s->logits);
        free(s);
        return st;
    }
    atomic_init(&s->cancel, 0);
    atomic_fetch_add(&ctx->n_sessions, 1);
    *out = s;
    return FM_OK;
}

FM_API fm_status fm_session_open(fm_context *ctx, const fm_session_params *params, fm_session **out) {
    fm_error_clear();
    if (!ctx || !out) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_session_open: ctx and out must not be NULL");
    fm_session_params p;
    fm_session_params_init(&p);
    fm_status st = fm_params_copy(&p, sizeof p, params, "fm_session_params");
    if (st) return st;
    size_t chunk = p.prefill_chunk ? p.prefill_chunk : FM_DEFAULT_PREFILL_CHUNK;
    return session_new(ctx, chunk, out);
}

FM_API void fm_session_close(fm_session *s) {
    if (!s) return;
    fm_context *ctx = s->ctx;
    fm_workspace_free(&ctx->model, &s->ws);
    fm_state_pool_release(&ctx->pool, s->state);
    atomic_fetch_sub(&ctx->n_sessions, 1);
    free(s->logits);
    free(s);
}

FM_API fm_status fm_session_reset(fm_session *s) {
    fm_error_clear();
    if (!s) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_session_reset: session is NULL");
    fm_status st = (fm_status)s->ctx->ops->zero(s->ctx->be, s->state, s->ctx->model.state_floats * sizeof(float));
    if (st) return st;
    s->has_logits = 0;
    s->n_tokens = 0;
    return FM_OK;
}

static fm_status check_tokens(const fm_context *ctx, const int32_t *tokens, size_t n) {
    int32_t v = ctx->model.cfg.n_vocab;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= v)
            return fm_error(FM_ERR_INVALID_TOKEN, "token %zu is %d, outside the vocabulary [0, %d)", i, tokens[i], v);
    return FM_OK;
}

static int take_cancel(fm_session *s) { return atomic_exchange(&s->cancel, 0) != 0; }

FM_API fm_status fm_session_feed(fm_session *s, const int32_t *tokens, size_t n, float *logits_out) {
    fm_error_clear();
    if (!s || !tokens) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_session_feed: session and tokens must not be NULL");
    if (n == 0) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_session_feed: n must be at least 1");
    fm_context *ctx = s->ctx;
    const fm_model *m = &ctx->model;
    const size_t V = (size_t)m->cfg.n_vocab;
    if (logits_out && n > SIZE_MAX / sizeof(float) / V)
        return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_session_feed: n * n_vocab overflows");
    fm_status st = check_tokens(ctx, tokens, n);
    if (st) return st;
    size_t want = n < s->chunk ? n : s->chunk;
    if ((st = fm_workspace_reserve(m, &s->ws, want))) return st;

    for (size_t start = 0; start < n; start += s->chunk) {
        if (take_cancel(s)) return fm_error(FM_ERR_CANCELLED, "fm_session_feed: cancelled after %zu of %zu tokens", start, n);
        size_t rows = n - start < s->chunk ? n - start : s->chunk;
        fm_seq seq = {s->state, rows};
        const float *lg;
        if ((st = fm_model_forward(m, &s->ws, tokens + start, rows, &seq, 1, logits_out != NULL, &lg))) return st;
        if (logits_out) {
            float *dst = logits_out + start * V;
            if ((st = (fm_status)ctx->ops->download(ctx->be, dst, lg, rows * V * sizeof(float)))) return st;
            memcpy(s->logits, dst + (rows - 1) * V, V * sizeof(float));
        } else if ((st = (fm_status)ctx->ops->download(ctx->be, s->logits, lg, V * sizeof(float)))) {
            return st;
        }
        s->has_logits = 1;
        s->n_tokens += rows;
    }
    return FM_OK;
}

FM_API const float *fm_session_logits(const fm_session *s) { return s && s->has_logits ? s->logits : NULL; }

FM_API uint64_t fm_session_n_tokens(const fm_session *s) { return s ? s->n_tokens : 0; }

FM_API void fm_session_cancel(fm_session *s) {
    if (s) atomic_store(&s->cancel, 1);
}

FM_API fm_status fm_session_fork(const fm_session *s, fm_session **out) {
    fm_error_clear();
    if (!s || !out) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_session_fork: session and out must not be NULL");
    fm_session *f;
    fm_status st = session_new(s->ctx, s->chunk, &f);
    if (st) return st;
    st = (fm_status)s->ctx->ops->copy(s->ctx->be, f->state, s->state, s->ctx->model.state_floats * sizeof(float));
    if (st) {
        fm_session_close(f);
        return st;
    }
    memcpy(f->logits, s->logits, (size_t)s->ctx->model.cfg.n_vocab * sizeof(float));
    f->has_logits = s->has_logits;
    f->n_tokens = s->n_tokens;
    *out = f;
    return FM_OK;
}

static size_t payload_bytes(const fm_session *s) {
    const fm_model *m = &s->ctx->model;
    return m->state_floats * sizeof(float) + (s->has_logits ? (size_t)m->cfg.n_vocab * sizeof(float) : 0);
}

FM_API size_t fm_session_state_size(const fm_session *s) {
    return s ? FM_STATE_HEADER_BYTES + payload_bytes(s) : 0;
}

FM_API fm_status fm_session_state_save(const fm_session *s, void *buf, size_t cap, size_t *written) {
    fm_error_clear();
    if (!s || (!buf && cap)) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_session_state_save: session is NULL or buf is NULL");
    size_t need = fm_session_state_size(s);
    if (cap < need) {
        if (written) *written = need;
        return fm_error(FM_ERR_BUFFER_TOO_SMALL, "fm_session_state_save: need %zu bytes, buffer has %zu", need, cap);
    }
    const fm_model *m = &s->ctx->model;
    uint8_t *b = buf;
    uint8_t *payload = b + FM_STATE_HEADER_BYTES;
    size_t state_bytes = m->state_floats * sizeof(float);
    fm_status st = (fm_status)s->ctx->ops->download(s->ctx->be, payload, s->state, state_bytes);
    if (st) return st;
    if (s->has_logits) memcpy(payload + state_bytes, s->logits, (size_t)m->cfg.n_vocab * sizeof(float));
    fm_state_header h = {m->fingerprint,
                         (uint32_t)m->cfg.n_layer,
                         (uint32_t)m->cfg.d_inner,
                         (uint32_t)m->cfg.d_conv,
                         (uint32_t)m->cfg.d_state,
                         (uint32_t)m->cfg.n_vocab,
                         s->has_logits ? 1u : 0u,
                         s->n_tokens,
                         payload_bytes(s),
                         fm_fnv1a(FM_FNV_OFFSET, payload, payload_bytes(s))};
    fm_state_header_write(&h, b);
    if (written) *written = need;
    return FM_OK;
}

FM_API fm_status fm_session_state_load(fm_session *s, const void *buf, size_t n) {
    fm_error_clear();
    if (!s || !buf) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_session_state_load: session and buf must not be NULL");
    const fm_model *m = &s->ctx->model;
    fm_state_header h;
    fm_status st = fm_state_header_check(m, buf, n, &h);
    if (st) return st;
    const uint8_t *payload = (const uint8_t *)buf + FM_STATE_HEADER_BYTES;
    size_t state_bytes = m->state_floats * sizeof(float);
    if ((st = (fm_status)s->ctx->ops->upload(s->ctx->be, s->state, payload, state_bytes))) return st;
    s->has_logits = (h.flags & 1u) != 0;
    if (s->has_logits) memcpy(s->logits, payload + state_bytes, (size_t)m->cfg.n_vocab * sizeof(float));
    s->n_tokens = h.n_tokens;
    return FM_OK;
}

FM_API fm_status fm_decode_batch(fm_session *const *sessions, const int32_t *tokens, size_t n) {
    fm_error_clear();
    if (!sessions || !tokens || n == 0)
        return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_decode_batch: sessions and tokens must not be NULL, n >= 1");
    for (size_t i = 0; i < n; i++) {
        if (!sessions[i]) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_decode_batch: sessions[%zu] is NULL", i);
        if (sessions[i]->ctx != sessions[0]->ctx)
            return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_decode_batch: sessions[%zu] belongs to another context", i);
        for (size_t j = 0; j < i; j++)
            if (sessions[j] == sessions[i])
                return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_decode_batch: sessions[%zu] and [%zu] are the same session", j, i);
    }
    fm_context *ctx = sessions[0]->ctx;
    const fm_model *m = &ctx->model;
    fm_status st = check_tokens(ctx, tokens, n);
    if (st) return st;
    for (size_t i = 0; i < n; i++)
        if (take_cancel(sessions[i])) return fm_error(FM_ERR_CANCELLED, "fm_decode_batch: sessions[%zu] was cancelled", i);
    fm_seq *seqs = malloc(n * sizeof *seqs);
    if (!seqs) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) seqs[i] = (fm_seq){sessions[i]->state, 1};
    fm_workspace *ws = &sessions[0]->ws; /* all sessions belong to the calling thread now */
    const float *lg;
    st = fm_workspace_reserve(m, ws, n);
    if (st == FM_OK) st = fm_model_forward(m, ws, tokens, n, seqs, n, 1, &lg);
    free(seqs);
    if (st) return st;
    const size_t V = (size_t)m->cfg.n_vocab;
    for (size_t i = 0; i < n; i++) {
        if ((st = (fm_status)ctx->ops->download(ctx->be, sessions[i]->logits, lg + i * V, V * sizeof(float)))) return st;
        sessions[i]->has_logits = 1;
        sessions[i]->n_tokens++;
    }
    return FM_OK;
}
