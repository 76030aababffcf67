/* tok_encode.c - one encode, in the order of the Rust crate's encode_single_sequence and
   post_process: raw added tokens, normalizer, normalized added tokens, pre-tokenizer, BPE, then
   truncation, post-processor and padding. All state lives in a per-call scratch, so any number of
   threads may encode with one fm_tokenizer. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

#define OOM() fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory")

static void scratch_free(fm_enc_scratch *sc) {
    fm_re_scratch_free(sc->pt.rs);
    fm_arena_free(&sc->pt.arena);
    free(sc->pt.a.v);
    free(sc->pt.b.v);
    free(sc->pt.spans.v);
    free(sc->pt.matches);
    fm_bpe_scratch_free(&sc->bpe);
    fm_buf_free(&sc->norm);
    free(sc->seg1.v);
    free(sc->seg2.v);
}

/* Pre-tokenize one piece of (normalized) text and run the model on every resulting piece. */
static fm_status pretok_and_model(const fm_tokenizer *tok, fm_enc_scratch *sc, const char *s, size_t n, int at_start,
                                  fm_i32vec *out) {
    if (n == 0) return FM_OK;
    sc->pt.a.n = 0;
    if (!fm_piecevec_push(&sc->pt.a, s, n, at_start)) return OOM();
    fm_status st = FM_OK;
    if (tok->pretok) st = fm_pretok_apply(tok->pretok, &sc->pt, &sc->pt.a);
    for (size_t i = 0; i < sc->pt.a.n && !st; i++)
        st = fm_bpe_tokenize(&tok->bpe, &sc->bpe, sc->pt.a.v[i].p, sc->pt.a.v[i].len, out);
    fm_arena_reset(&sc->pt.arena);
    return st;
}

static fm_status encode_text(const fm_tokenizer *tok, fm_enc_scratch *sc, const char *text, size_t len, fm_i32vec *out) {
    fm_status st;
    sc->seg1.n = 0;
    if ((st = fm_added_split(&tok->added, &tok->added.raw, text, len, &sc->seg1))) return st;
    for (size_t i = 0; i < sc->seg1.n; i++) {
        fm_seg g = sc->seg1.v[i];
        if (g.id >= 0) {
            if (!fm_i32vec_push(out, g.id)) return OOM();
            continue;
        }
        const char *p = text + g.start;
        size_t n = g.end - g.start;
        if (tok->normalizer) {
            if ((st = fm_normalizer_apply(tok->normalizer, sc->pt.rs, p, n, &sc->norm))) return st;
            p = sc->norm.p;
            n = sc->norm.n;
        }
        if (!tok->added.norm.n_patterns) {
            if ((st = pretok_and_model(tok, sc, p, n, g.start == 0, out))) return st;
            continue;
        }
        sc->seg2.n = 0;
        if ((st = fm_added_split(&tok->added, &tok->added.norm, p, n, &sc->seg2))) return st;
        for (size_t k = 0; k < sc->seg2.n; k++) {
            fm_seg h = sc->seg2.v[k];
            if (h.id >= 0) {
                if (!fm_i32vec_push(out, h.id)) return OOM();
            } else if ((st = pretok_and_model(tok, sc, p + h.start, h.end - h.start, g.start == 0 && h.start == 0, out))) {
                return st;
            }
        }
    }
    return FM_OK;
}

static fm_status post_process(const fm_tokenizer *tok, int add_special, fm_i32vec *ids) {
    if (tok->trunc.enabled) {
        size_t max = tok->trunc.max_length, added = fm_post_added(tok->post);
        int skip = 0;
        if (add_special && added > 0) {
            if (max < added) skip = 1; /* the reference's unsigned subtraction wraps: no truncation */
            else max -= added;
        }
        if (!skip) {
            if (max == 0) {
                ids->n = 0;
            } else if (ids->n > max) {
                if (tok->trunc.only_second)
                    return fm_error(FM_ERR_INVALID_ARGUMENT, "tokenizer.json: truncation strategy OnlySecond needs a second sequence");
                if (tok->trunc.left) memmove(ids->v, ids->v + (ids->n - max), max * sizeof *ids->v);
                ids->n = max;
            }
        }
    }
    if (tok->post) {
        fm_status st = fm_post_apply(tok->post, add_special, ids);
        if (st) return st;
    }
    if (tok->pad.enabled) {
        size_t target = tok->pad.fixed ? tok->pad.fixed : ids->n;
        if (tok->pad.multiple && target % tok->pad.multiple) target += tok->pad.multiple - target % tok->pad.multiple;
        if (ids->n < target) {
            size_t add = target - ids->n, old = ids->n;
            for (size_t i = 0; i < add; i++)
                if (!fm_i32vec_push(ids, tok->pad.pad_id)) return OOM();
            if (tok->pad.left) {
                memmove(ids->v + add, ids->v, old * sizeof *ids->v);
                for (size_t i = 0; i < add; i++) ids->v[i] = tok->pad.pad_id;
            }
        }
    }
    return FM_OK;
}

fm_status fm_tokenizer_encode_ids(const fm_tokenizer *tok, const char *text, size_t len, int add_special, fm_i32vec *out) {
    fm_enc_scratch sc;
    memset(&sc, 0, sizeof sc);
    if (!(sc.pt.rs = fm_re_scratch_new())) return OOM();
    fm_status st = encode_text(tok, &sc, text, len, out);
    scratch_free(&sc);
    if (!st) st = post_process(tok, add_special, out);
    return st;
}
