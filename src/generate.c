/* generate.c - fm_generate: tokenize, prefill, sample/feed loop with streaming UTF-8 pieces, stop
   strings that may span tokens, statistics. Built on the public API only. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "internal.h"

FM_API void fm_generate_params_init(fm_generate_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->max_new_tokens = 128;
    p->add_special = -1;
    p->skip_special = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Text produced but not yet handed to the callback (it may be the start of a stop string). */
typedef struct pending {
    char *buf;
    size_t len, cap;
} pending;

static fm_status pending_add(pending *p, const char *s, size_t n) {
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap < p->len + n + 1) cap *= 2;
        char *b = realloc(p->buf, cap);
        if (!b) return fm_error(FM_ERR_OUT_OF_MEMORY, "fm_generate: out of memory");
        p->buf = b;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    return FM_OK;
}

/* Earliest occurrence of any stop string in the pending text, or len if none. */
static size_t find_stop(const pending *p, const char *const *stop, size_t n_stop) {
    size_t best = p->len;
    for (size_t i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        if (sl == 0 || sl > p->len) continue;
        for (size_t at = 0; at + sl <= p->len && at < best; at++)
            if (memcmp(p->buf + at, stop[i], sl) == 0) {
                best = at;
                break;
            }
    }
    return best;
}

/* Length of the longest suffix of the pending text that begins some stop string. */
static size_t held_suffix(const pending *p, const char *const *stop, size_t n_stop) {
    size_t hold = 0;
    for (size_t i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        for (size_t k = sl - (sl > 0); k > hold; k--)
            if (k <= p->len && memcmp(p->buf + p->len - k, stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

typedef struct gen {
    fm_session *s;
    const fm_generate_params *gp;
    fm_token_callback cb;
    void *user;
    pending text;
    fm_stop_reason reason;
} gen;

/* Hand the first n pending bytes to the callback and drop them. */
static void release(gen *g, size_t n, int32_t token) {
    int stop = g->cb ? g->cb(g->text.buf ? g->text.buf : "", n, token, g->user) : 0;
    memmove(g->text.buf, g->text.buf + n, g->text.len - n);
    g->text.len -= n;
    if (stop && g->reason == FM_STOP_NONE) g->reason = FM_STOP_CALLBACK;
}

/* New text for `token`: stop at a stop string, hold back a possible stop-string prefix. */
static fm_status on_text(gen *g, const char *piece, size_t n, int32_t token) {
    fm_status st = pending_add(&g->text, piece, n);
    if (st) return st;
    size_t at = find_stop(&g->text, g->gp->stop, g->gp->n_stop);
    if (at < g->text.len) {
        g->text.len = at; /* the stop string and anything after it are not emitted */
        release(g, at, token);
        g->reason = FM_STOP_STRING;
        return FM_OK;
    }
    size_t hold = held_suffix(&g->text, g->gp->stop, g->gp->n_stop);
    release(g, g->text.len - hold, token);
    return FM_OK;
}

static fm_status tokenize_prompt(const fm_tokenizer *tok, const char *prompt, int add_special, int32_t **ids,
                                 size_t *n) {
    size_t len = strlen(prompt), need = 0;
    *ids = NULL;
    *n = 0;
    if (len == 0) return FM_OK;
    fm_status st = fm_tokenizer_encode(tok, prompt, len, add_special, NULL, 0, &need);
    if (st != FM_OK && st != FM_ERR_BUFFER_TOO_SMALL) return st;
    if (need == 0) return FM_OK;
    *ids = malloc(need * sizeof **ids);
    if (!*ids) return fm_error(FM_ERR_OUT_OF_MEMORY, "fm_generate: out of memory");
    if ((st = fm_tokenizer_encode(tok, prompt, len, add_special, *ids, need, n))) {
        free(*ids);
        *ids = NULL;
    }
    return st;
}

FM_API fm_status fm_generate(fm_session *s, const char *prompt, const fm_generate_params *params, fm_token_callback cb,
                             void *user) {
    fm_error_clear();
    if (!s || !prompt) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_generate: session and prompt must not be NULL");
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    fm_status st = fm_params_copy(&gp, sizeof gp, params, "fm_generate_params");
    if (st) return st;
    if (gp.max_new_tokens < 0) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_generate: max_new_tokens < 0");
    if (gp.n_stop && !gp.stop) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_generate: n_stop > 0 but stop is NULL");
    for (size_t i = 0; i < gp.n_stop; i++)
        if (!gp.stop[i]) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_generate: stop[%zu] is NULL", i);
    const fm_tokenizer *tok = fm_context_tokenizer(s->ctx);
    if (!tok) return fm_error(FM_ERR_UNSUPPORTED, "fm_generate: the model directory has no tokenizer.json");
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    if ((st = fm_params_copy(&sp, sizeof sp, gp.sampler, "fm_sampler_params"))) return st;

    double t0 = now_s();
    int add_special = gp.add_special < 0 ? s->n_tokens == 0 : gp.add_special != 0;
    int32_t *ids;
    size_t n_ids;
    if ((st = tokenize_prompt(tok, prompt, add_special, &ids, &n_ids))) return st;
    if (n_ids) st = fm_session_feed(s, ids, n_ids, NULL);
    free(ids);
    if (st) return st;
    if (!fm_session_logits(s))
        return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_generate: empty prompt and nothing to continue from");
    double t1 = now_s();

    fm_detokenizer *dt = NULL;
    if ((st = fm_detokenizer_open(tok, gp.skip_special, &dt))) return st;
    gen g = {s, &gp, cb, user, {NULL, 0, 0}, FM_STOP_NONE};
    const int32_t eos_model = fm_token_eos(s->ctx), eos_tok = fm_tokenizer_eos(tok);
    char piece[512];
    int32_t n_gen = 0;
    while (st == FM_OK && g.reason == FM_STOP_NONE) {
        if (n_gen >= gp.max_new_tokens) {
            g.reason = FM_STOP_MAX_TOKENS;
            break;
        }
        int32_t t;
        if ((st = fm_session_sample(s, &sp, &t))) break;
        if ((st = fm_session_feed(s, &t, 1, NULL))) break;
        n_gen++;
        if (!gp.ignore_eos && (t == eos_model || t == eos_tok)) {
            g.reason = FM_STOP_EOS;
            break;
        }
        size_t plen = 0;
        st = fm_detokenizer_push(dt, t, piece, sizeof piece, &plen);
        if (st == FM_ERR_BUFFER_TOO_SMALL) { /* a very long token: decode it through the heap */
            char *big = malloc(plen);
            if (!big) st = fm_error(FM_ERR_OUT_OF_MEMORY, "fm_generate: out of memory");
            else if ((st = fm_detokenizer_push(dt, t, big, plen, &plen)) == FM_OK) st = on_text(&g, big, plen, t);
            free(big);
        } else if (st == FM_OK) {
            st = on_text(&g, piece, plen, t);
        }
    }
    if (st == FM_OK && g.reason != FM_STOP_STRING) {
        size_t plen = 0;
        if (fm_detokenizer_flush(dt, piece, sizeof piece, &plen) == FM_OK && plen) st = pending_add(&g.text, piece, plen);
        if (st == FM_OK && g.text.len) release(&g, g.text.len, -1);
    }
    if (st == FM_ERR_CANCELLED) g.reason = FM_STOP_CANCELLED;
    fm_detokenizer_close(dt);
    free(g.text.buf);
    if (gp.stats && gp.stats->struct_size >= sizeof(size_t)) {
        fm_generate_stats full = {sizeof full, n_ids, (uint64_t)n_gen, t1 - t0, now_s() - t1, g.reason};
        size_t k = gp.stats->struct_size < sizeof full ? gp.stats->struct_size : sizeof full;
        memcpy((char *)gp.stats + sizeof(size_t), (char *)&full + sizeof(size_t), k - sizeof(size_t));
    }
    return st;
}
