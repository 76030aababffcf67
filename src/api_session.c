/* api_session.c - fm_session_*: feed, logits, fork, state save/load, batched decode, cancel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "hash.h"
#include "internal.h"
#include "sampler.h"
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
    free(s->history);
    free(s->sample_work);
    free(s->sample_scores);
    free(s);
}

#define HISTORY_CAP_MAX (2 * (size_t)FM_HISTORY_MAX)

/* Make room for `want` tokens in total (capped), leaving the contents alone. */
static fm_status history_ensure(fm_session *s, size_t want) {
    if (want > HISTORY_CAP_MAX) want = HISTORY_CAP_MAX;
    if (want <= s->history_cap) return FM_OK;
    size_t cap = s->history_cap ? s->history_cap : 256;
    while (cap < want) cap *= 2;
    if (cap > HISTORY_CAP_MAX) cap = HISTORY_CAP_MAX;
    int32_t *h = realloc(s->history, cap * sizeof *h);
    if (!h) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory for the token history");
    s->history = h;
    s->history_cap = cap;
    return FM_OK;
}

/* Make room so that appending `add` tokens cannot fail. */
static fm_status history_reserve(fm_session *s, size_t add) { return history_ensure(s, s->n_history + add); }

static void history_append(fm_session *s, const int32_t *t, size_t k) {
    if (k == 0) return;
    if (k >= FM_HISTORY_MAX) {
        t += k - FM_HISTORY_MAX;
        k = FM_HISTORY_MAX;
        s->n_history = 0;
    }
    if (s->n_history + k > s->history_cap) { /* full: keep the newest FM_HISTORY_MAX - k */
        size_t keep = FM_HISTORY_MAX - k;
        memmove(s->history, s->history + (s->n_history - keep), keep * sizeof *s->history);
        s->n_history = keep;
    }
    memcpy(s->history + s->n_history, t, k * sizeof *t);
    s->n_history += k;
}

FM_API fm_status fm_session_reset(fm_session *s) {
    fm_error_clear();
    if (!s) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_session_reset: session is NULL");
    fm_status st = (fm_status)s->ctx->ops->zero(s->ctx->be, s->state, s->ctx->model.state_floats * sizeof(float));
    if (st) return st;
    s->has_logits = 0;
    s->n_tokens = 0;
    s->n_history = 0;
    s->rng_seeded = 0;
    atomic_store(&s->cancel, 0); /* a pending cancel belonged to the old conversation */
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
    if ((st = history_reserve(s, n))) return st;

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
        history_append(s, tokens + start, rows);
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
    if ((st = history_reserve(f, s->n_history))) {
        fm_session_close(f);
        return st;
    }
    history_append(f, s->history, s->n_history);
    memcpy(f->logits, s->logits, (size_t)s->ctx->model.cfg.n_vocab * sizeof(float));
    f->has_logits = s->has_logits;
    f->n_tokens = s->n_tokens;
    f->rng = s->rng;
    f->rng_seed = s->rng_seed;
    f->rng_seeded = s->rng_seeded;
    *out = f;
    return FM_OK;
}

static size_t saved_history(const fm_session *s) {
    return s->n_history < FM_HISTORY_MAX ? s->n_history : FM_HISTORY_MAX;
}

static size_t payload_bytes(const fm_session *s) {
    return (size_t)fm_state_payload_bytes(&s->ctx->model, s->has_logits, (uint32_t)saved_history(s));
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
    uint8_t *p = payload + state_bytes;
    if (s->has_logits) {
        memcpy(p, s->logits, (size_t)m->cfg.n_vocab * sizeof(float));
        p += (size_t)m->cfg.n_vocab * sizeof(float);
    }
    size_t nh = saved_history(s);
    if (nh) memcpy(p, s->history + (s->n_history - nh), nh * sizeof(int32_t));
    fm_state_header h = {0};
    h.fingerprint = m->fingerprint;
    h.n_layer = (uint32_t)m->cfg.n_layer;
    h.d_inner = (uint32_t)m->cfg.d_inner;
    h.d_conv = (uint32_t)m->cfg.d_conv;
    h.d_state = (uint32_t)m->cfg.d_state;
    h.n_vocab = (uint32_t)m->cfg.n_vocab;
    h.flags = (s->has_logits ? FM_STATE_HAS_LOGITS : 0u) | (s->rng_seeded ? FM_STATE_RNG_SEEDED : 0u);
    h.n_tokens = s->n_tokens;
    h.payload_bytes = payload_bytes(s);
    h.checksum = fm_fnv1a(FM_FNV_OFFSET, payload, payload_bytes(s));
    h.n_history = (uint32_t)nh;
    h.rng_seed = s->rng_seed;
    memcpy(h.rng, s->rng.s, sizeof h.rng);
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
    /* Reserve first so that nothing can fail after the session starts changing. */
    if ((st = history_ensure(s, h.n_history))) return st;
    if ((st = (fm_status)s->ctx->ops->upload(s->ctx->be, s->state, payload, state_bytes))) return st;
    const uint8_t *p = payload + state_bytes;
    s->has_logits = (h.flags & FM_STATE_HAS_LOGITS) != 0;
    if (s->has_logits) {
        memcpy(s->logits, p, (size_t)m->cfg.n_vocab * sizeof(float));
        p += (size_t)m->cfg.n_vocab * sizeof(float);
    }
    if (h.n_history) memcpy(s->history, p, h.n_history * sizeof(int32_t));
    s->n_history = h.n_history;
    s->n_tokens = h.n_tokens;
    s->rng_seeded = (h.flags & FM_STATE_RNG_SEEDED) != 0;
    s->rng_seed = h.rng_seed;
    memcpy(s->rng.s, h.rng, sizeof h.rng);
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
    for (size_t i = 0; i < n && st == FM_OK; i++) st = history_reserve(sessions[i], 1);
    if (st == FM_OK) st = fm_workspace_reserve(m, ws, n);
    if (st == FM_OK) st = fm_model_forward(m, ws, tokens, n, seqs, n, 1, &lg);
    free(seqs);
    if (st) return st;
    const size_t V = (size_t)m->cfg.n_vocab;
    for (size_t i = 0; i < n; i++) {
        if ((st = (fm_status)ctx->ops->download(ctx->be, sessions[i]->logits, lg + i * V, V * sizeof(float)))) return st;
        sessions[i]->has_logits = 1;
        sessions[i]->n_tokens++;
        history_append(sessions[i], &tokens[i], 1);
    }
    return FM_OK;
}

FM_API void fm_sampler_params_init(fm_sampler_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->temperature = 1.0f; /* transformers' generation defaults */
    p->top_k = 50;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = -1;
    p->seed = 0;
    p->typical_p = 1.0f;
}

static uint64_t os_seed(const void *salt) {
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&v, sizeof v, 1, f) != 1) v = 0;
        fclose(f);
    }
    return v ^ (uint64_t)(uintptr_t)salt ^ (uint64_t)time(NULL);
}

FM_API fm_status fm_session_sample(fm_session *s, const fm_sampler_params *params, int32_t *token_out) {
    fm_error_clear();
    if (!s || !token_out) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_session_sample: session and token_out must not be NULL");
    if (!s->has_logits) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_session_sample: no logits yet (feed a token first)");
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    fm_status st = fm_params_copy(&sp, sizeof sp, params, "fm_sampler_params");
    if (st) return st;
    const int32_t V = s->ctx->model.cfg.n_vocab;
    if ((st = fm_sampler_check(&sp, V))) return st;
    if (!s->sample_work) {
        s->sample_work = malloc(fm_sampler_work_bytes(V));
        s->sample_scores = malloc((size_t)V * sizeof(float));
        if (!s->sample_work || !s->sample_scores) {
            free(s->sample_work);
            free(s->sample_scores);
            s->sample_work = NULL;
            s->sample_scores = NULL;
            return fm_error(FM_ERR_OUT_OF_MEMORY, "fm_session_sample: out of memory");
        }
    }
    memcpy(s->sample_scores, s->logits, (size_t)V * sizeof(float));
    if ((st = fm_sampler_process(&sp, s->sample_scores, V, s->history, s->n_history, s->sample_work))) return st;
    if (!s->rng_seeded || s->rng_seed != sp.seed) {
        fm_rng_seed(&s->rng, sp.seed == FM_SEED_RANDOM ? os_seed(s) : sp.seed);
        s->rng_seed = sp.seed;
        s->rng_seeded = 1;
    }
    *token_out = fm_sampler_pick(&sp, s->sample_scores, V, &s->rng);
    return FM_OK;
}
