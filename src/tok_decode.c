/* tok_decode.c - decoding: ids -> token strings -> the tokenizer.json decoder chain (ByteLevel,
   Metaspace, ByteFallback, Fuse, Strip, Replace, BPEDecoder, Sequence), fm_tokenizer_decode, and the
   streaming fm_detokenizer.

   The detokenizer follows the Rust crate's DecodeStream: it keeps a small window of ids (those of
   the previous emission plus the ids not emitted yet), decodes the window with the new id, and
   emits the part after the window's previous text once it does not end in U+FFFD, i.e. once a
   multi-byte character is complete. The window is cut after every emission, so each push costs
   O(window), not O(history). Ids that decode to nothing (special ids with skip_special, ids with
   no token) are dropped at once; if FM_DETOK_MAX_PENDING ids in a row produce nothing complete,
   the text is emitted anyway (a lone invalid byte then shows as U+FFFD early). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

#define OOM() fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory")
#define FM_DETOK_MAX_PENDING 16

/* ---- parsing -------------------------------------------------------------------------------------- */

fm_status fm_decoder_parse(const cJSON *j, const char *where, fm_decoder **out) {
    *out = NULL;
    if (!cJSON_IsObject(j)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s must be an object or null", where);
    const char *type;
    fm_status st = fm_json_string(j, "type", &type, where);
    if (st) return st;
    fm_decoder *d = calloc(1, sizeof *d);
    if (!d) return OOM();
    if (!strcmp(type, "Sequence")) {
        d->kind = FM_DEC_SEQUENCE;
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "decoders");
        if (!cJSON_IsArray(arr)) {
            st = fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: Sequence needs a 'decoders' array", where);
        } else {
            size_t n = (size_t)cJSON_GetArraySize(arr);
            d->children = calloc(n ? n : 1, sizeof *d->children);
            if (!d->children) st = OOM();
            size_t i = 0;
            for (const cJSON *e = arr->child; e && !st; e = e->next, i++) {
                char w[256];
                snprintf(w, sizeof w, "%s.decoders[%zu]", where, i);
                st = fm_decoder_parse(e, w, &d->children[i]);
                if (!st) d->n_children = i + 1;
            }
        }
    } else if (!strcmp(type, "ByteLevel")) {
        d->kind = FM_DEC_BYTELEVEL;
    } else if (!strcmp(type, "Metaspace")) {
        d->kind = FM_DEC_METASPACE;
        if (!(st = fm_json_char(j, "replacement", &d->ch, where))) st = fm_prepend_scheme_parse(j, where, &d->prepend_scheme);
    } else if (!strcmp(type, "ByteFallback")) {
        d->kind = FM_DEC_BYTE_FALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d->kind = FM_DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        d->kind = FM_DEC_STRIP;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "start"), *b = cJSON_GetObjectItemCaseSensitive(j, "stop");
        if (!(st = fm_json_char(j, "content", &d->ch, where))) {
            if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valuedouble < 0 || b->valuedouble < 0 ||
                a->valuedouble > 1e9 || b->valuedouble > 1e9)
                st = fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: 'start' and 'stop' must be non-negative integers", where);
            else {
                d->start = (size_t)a->valuedouble;
                d->stop = (size_t)b->valuedouble;
            }
        }
    } else if (!strcmp(type, "Replace")) {
        d->kind = FM_DEC_REPLACE;
        const char *c;
        if (!(st = fm_pattern_parse(j, where, &d->re)) && !(st = fm_json_string(j, "content", &c, where))) {
            d->str_len = strlen(c);
            if (!(d->str = strdup(c))) st = OOM();
        }
    } else if (!strcmp(type, "BPEDecoder")) {
        d->kind = FM_DEC_BPE;
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "suffix");
        const char *c = "</w>";
        if (s && !cJSON_IsString(s)) st = fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: 'suffix' must be a string", where);
        else if (s) c = s->valuestring;
        if (!st) {
            d->str_len = strlen(c);
            if (!(d->str = strdup(c))) st = OOM();
        }
    } else {
        st = fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: %s: decoder type '%.64s' is not supported", where, type);
    }
    if (st) {
        fm_decoder_free(d);
        return st;
    }
    *out = d;
    return FM_OK;
}

void fm_decoder_free(fm_decoder *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n_children; i++) fm_decoder_free(d->children[i]);
    free(d->children);
    fm_regex_free(d->re);
    free(d->str);
    free(d);
}

/* ---- string lists ----------------------------------------------------------------------------------- */

typedef struct strlist {
    fm_buf data;
    size_t *off, *len;
    size_t n, cap;
} strlist;

static int sl_begin(strlist *l) { /* start a new string at the end of data */
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        size_t *o = realloc(l->off, cap * sizeof *o);
        if (!o) return 0;
        l->off = o;
        size_t *n = realloc(l->len, cap * sizeof *n);
        if (!n) return 0;
        l->len = n;
        l->cap = cap;
    }
    l->off[l->n] = l->data.n;
    l->len[l->n] = 0;
    l->n++;
    return 1;
}
static int sl_add(strlist *l, const void *s, size_t n) { /* append to the current string */
    if (!fm_buf_append(&l->data, s, n)) return 0;
    l->len[l->n - 1] += n;
    return 1;
}
static int sl_push(strlist *l, const void *s, size_t n) { return sl_begin(l) && sl_add(l, s, n); }
static void sl_clear(strlist *l) {
    l->n = 0;
    l->data.n = 0;
}
static void sl_free(strlist *l) {
    fm_buf_free(&l->data);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}
/* data.p is NULL while every string is empty (NULL + 0 is undefined) */
#define SL_STR(l, i) ((l)->data.p ? (l)->data.p + (l)->off[i] : "")

/* ---- the decoders ---------------------------------------------------------------------------------- */

typedef struct dec_ctx {
    fm_re_scratch *rs;
    fm_buf tmp;
    fm_spanvec spans;
} dec_ctx;

static fm_status dec_chain(const fm_decoder *d, dec_ctx *cx, strlist *in, strlist *out);

static fm_status dec_bytelevel(dec_ctx *cx, const strlist *in, strlist *out) {
    cx->tmp.n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = SL_STR(in, i);
        size_t n = in->len[i], start = cx->tmp.n;
        int ok = 1;
        if (!fm_buf_reserve(&cx->tmp, n)) return OOM();
        for (size_t k = 0; k < n;) {
            int b = fm_bytelevel_byte(fm_utf8_next(s, &k));
            if (b < 0) {
                ok = 0;
                break;
            }
            cx->tmp.p[cx->tmp.n++] = (char)b;
        }
        if (!ok) { /* a character outside the byte alphabet: the token's own bytes */
            cx->tmp.n = start;
            if (!fm_buf_append(&cx->tmp, s, n)) return OOM();
        }
    }
    if (!sl_begin(out)) return OOM();
    size_t before = out->data.n;
    if (!fm_utf8_lossy_append(&out->data, cx->tmp.p ? cx->tmp.p : "", cx->tmp.n)) return OOM();
    out->len[out->n - 1] = out->data.n - before;
    return FM_OK;
}

static fm_status dec_metaspace(const fm_decoder *d, const strlist *in, strlist *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = SL_STR(in, i);
        if (!sl_begin(out)) return OOM();
        for (size_t k = 0; k < in->len[i];) {
            size_t a = k;
            uint32_t c = fm_utf8_next(s, &k);
            if (c == d->ch) {
                if (i == 0 && d->prepend_scheme != FM_PREPEND_NEVER) continue;
                if (!sl_add(out, " ", 1)) return OOM();
            } else if (!sl_add(out, s + a, k - a)) {
                return OOM();
            }
        }
    }
    return FM_OK;
}

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static fm_status flush_bytes(dec_ctx *cx, strlist *out) {
    if (!cx->tmp.n) return FM_OK;
    if (fm_utf8_valid_prefix(cx->tmp.p, cx->tmp.n) == cx->tmp.n) {
        if (!sl_push(out, cx->tmp.p, cx->tmp.n)) return OOM();
    } else {
        for (size_t k = 0; k < cx->tmp.n; k++)
            if (!sl_push(out, "\xEF\xBF\xBD", 3)) return OOM();
    }
    cx->tmp.n = 0;
    return FM_OK;
}

static fm_status dec_byte_fallback(dec_ctx *cx, const strlist *in, strlist *out) {
    cx->tmp.n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = SL_STR(in, i);
        size_t n = in->len[i];
        int hi, lo;
        if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && (hi = hexv(s[3])) >= 0 && (lo = hexv(s[4])) >= 0) {
            char b = (char)(hi * 16 + lo);
            if (!fm_buf_append(&cx->tmp, &b, 1)) return OOM();
            continue;
        }
        fm_status st = flush_bytes(cx, out);
        if (st) return st;
        if (!sl_push(out, s, n)) return OOM();
    }
    return flush_bytes(cx, out);
}

static fm_status dec_strip(const fm_decoder *d, const strlist *in, strlist *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = SL_STR(in, i);
        size_t n = in->len[i], a = 0, b = n;
        for (size_t k = 0; k < d->start && a < n; k++) {
            size_t q = a;
            if (fm_utf8_next(s, &q) != d->ch) break;
            a = q;
        }
        for (size_t k = 0; k < d->stop && b > 0; k++) {
            size_t ps;
            if (fm_utf8_prev(s, b, &ps) != d->ch) break;
            b = ps;
        }
        if (b < a) b = a;
        if (!sl_push(out, s + a, b - a)) return OOM();
    }
    return FM_OK;
}

static fm_status dec_replace(const fm_decoder *d, dec_ctx *cx, const strlist *in, strlist *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = SL_STR(in, i);
        size_t n = in->len[i];
        if (!sl_begin(out)) return OOM();
        if (n == 0) continue;
        if (!cx->rs && !(cx->rs = fm_re_scratch_new())) return OOM();
        cx->spans.n = 0;
        fm_status st = fm_regex_find_all(d->re, cx->rs, s, n, &cx->spans);
        if (st) return st;
        size_t prev = 0;
        for (size_t k = 0; k < cx->spans.n; k++) {
            if (!sl_add(out, s + prev, cx->spans.v[k].start - prev) || !sl_add(out, d->str, d->str_len)) return OOM();
            prev = cx->spans.v[k].end;
        }
        if (!sl_add(out, s + prev, n - prev)) return OOM();
    }
    return FM_OK;
}

static fm_status dec_bpe(const fm_decoder *d, const strlist *in, strlist *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = SL_STR(in, i);
        size_t n = in->len[i];
        const char *rep = i + 1 == in->n ? "" : " ";
        if (!sl_begin(out)) return OOM();
        for (size_t k = 0; k < n;) {
            if (d->str_len && k + d->str_len <= n && !memcmp(s + k, d->str, d->str_len)) {
                if (!sl_add(out, rep, strlen(rep))) return OOM();
                k += d->str_len;
            } else {
                if (!sl_add(out, s + k, 1)) return OOM();
                k++;
            }
        }
    }
    return FM_OK;
}

static fm_status dec_chain(const fm_decoder *d, dec_ctx *cx, strlist *in, strlist *out) {
    switch (d->kind) {
    case FM_DEC_SEQUENCE: {
        strlist a = {0}, b = {0};
        fm_status st = FM_OK;
        for (size_t i = 0; i < in->n && !st; i++)
            if (!sl_push(&a, SL_STR(in, i), in->len[i])) st = OOM();
        for (size_t i = 0; i < d->n_children && !st; i++) {
            sl_clear(&b);
            if (!(st = dec_chain(d->children[i], cx, &a, &b))) {
                strlist t = a;
                a = b;
                b = t;
            }
        }
        for (size_t i = 0; i < a.n && !st; i++)
            if (!sl_push(out, SL_STR(&a, i), a.len[i])) st = OOM();
        sl_free(&a);
        sl_free(&b);
        return st;
    }
    case FM_DEC_BYTELEVEL: return dec_bytelevel(cx, in, out);
    case FM_DEC_METASPACE: return dec_metaspace(d, in, out);
    case FM_DEC_BYTE_FALLBACK: return dec_byte_fallback(cx, in, out);
    case FM_DEC_FUSE:
        if (!sl_begin(out)) return OOM();
        for (size_t i = 0; i < in->n; i++)
            if (!sl_add(out, SL_STR(in, i), in->len[i])) return OOM();
        return FM_OK;
    case FM_DEC_STRIP: return dec_strip(d, in, out);
    case FM_DEC_REPLACE: return dec_replace(d, cx, in, out);
    case FM_DEC_BPE: return dec_bpe(d, in, out);
    }
    return fm_error(FM_ERR_INTERNAL, "unknown decoder");
}

fm_status fm_tokenizer_decode_buf(const fm_tokenizer *tok, const int32_t *ids, size_t n, int skip_special, fm_buf *out) {
    strlist in = {0}, res = {0};
    fm_status st = FM_OK;
    size_t n_in = 0;
    for (size_t i = 0; i < n && !st; i++) {
        int32_t id = ids[i];
        if (!tok->id_str[id] || (skip_special && tok->special[id])) continue;
        if (!tok->decoder) { /* no decoder: the tokens joined with spaces */
            if ((n_in++ && !fm_buf_append(out, " ", 1)) || !fm_buf_append(out, tok->id_str[id], tok->id_len[id]))
                st = OOM();
        } else if (!sl_push(&in, tok->id_str[id], tok->id_len[id])) {
            st = OOM();
        }
    }
    if (!st && tok->decoder) {
        dec_ctx cx = {0};
        st = dec_chain(tok->decoder, &cx, &in, &res);
        for (size_t i = 0; i < res.n && !st; i++)
            if (!fm_buf_append(out, SL_STR(&res, i), res.len[i])) st = OOM();
        fm_re_scratch_free(cx.rs);
        fm_buf_free(&cx.tmp);
        free(cx.spans.v);
    }
    sl_free(&in);
    sl_free(&res);
    return st;
}

/* ---- public: decode ------------------------------------------------------------------------------- */

static fm_status check_ids(const fm_tokenizer *tok, const int32_t *ids, size_t n, const char *fn) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tok->n_vocab)
            return fm_error(FM_ERR_INVALID_TOKEN, "%s: token %d at position %zu is outside [0, %d)", fn, ids[i], i,
                            tok->n_vocab);
    return FM_OK;
}

static fm_status copy_out(const fm_buf *b, char *buf, size_t cap, size_t *len_out) {
    if (len_out) *len_out = b->n;
    if (b->n > cap) return fm_error(FM_ERR_BUFFER_TOO_SMALL, "output needs %zu bytes, buffer holds %zu", b->n, cap);
    if (b->n) memcpy(buf, b->p, b->n);
    if (b->n < cap) buf[b->n] = '\0';
    return FM_OK;
}

FM_API fm_status fm_tokenizer_decode(const fm_tokenizer *tok, const int32_t *tokens, size_t n, int skip_special,
                                     char *buf, size_t cap, size_t *len_out) {
    fm_error_clear();
    if (!tok || (n && !tokens) || (cap && !buf))
        return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_tokenizer_decode: tok, tokens (when n > 0) and buf (when cap > 0) must not be NULL");
    fm_status st = check_ids(tok, tokens, n, "fm_tokenizer_decode");
    if (st) return st;
    fm_buf out = {0};
    st = fm_tokenizer_decode_buf(tok, tokens, n, skip_special, &out);
    if (!st) st = copy_out(&out, buf, cap, len_out);
    fm_buf_free(&out);
    return st;
}

/* ---- public: streaming ----------------------------------------------------------------------------- */

struct fm_detokenizer {
    const fm_tokenizer *tok;
    int skip_special;
    fm_i32vec ids;      /* the window */
    fm_buf prefix;      /* decode of ids[0..prefix_index) as emitted */
    size_t prefix_index;
    size_t pending;     /* ids pushed since the last emission */
    fm_buf text;        /* scratch */
};

FM_API fm_status fm_detokenizer_open(const fm_tokenizer *tok, int skip_special, fm_detokenizer **out) {
    fm_error_clear();
    if (!tok || !out) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_detokenizer_open: tok and out must not be NULL");
    fm_detokenizer *d = calloc(1, sizeof *d);
    if (!d) return OOM();
    d->tok = tok;
    d->skip_special = skip_special != 0;
    *out = d;
    return FM_OK;
}

FM_API void fm_detokenizer_close(fm_detokenizer *d) {
    if (!d) return;
    fm_i32vec_free(&d->ids);
    fm_buf_free(&d->prefix);
    fm_buf_free(&d->text);
    free(d);
}

FM_API void fm_detokenizer_reset(fm_detokenizer *d) {
    if (!d) return;
    d->ids.n = 0;
    d->prefix.n = 0;
    d->prefix_index = 0;
    d->pending = 0;
}

static int ends_fffd(const fm_buf *b) { return b->n >= 3 && !memcmp(b->p + b->n - 3, "\xEF\xBF\xBD", 3); }

static fm_status decode_window(fm_detokenizer *d, const int32_t *ids, size_t n, fm_buf *out) {
    out->n = 0;
    if (!fm_buf_reserve(out, 16)) return OOM();
    return fm_tokenizer_decode_buf(d->tok, ids, n, d->skip_special, out);
}

FM_API fm_status fm_detokenizer_push(fm_detokenizer *d, int32_t token, char *buf, size_t cap, size_t *len_out) {
    fm_error_clear();
    if (!d || (cap && !buf) || !len_out)
        return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_detokenizer_push: d, len_out and buf (when cap > 0) must not be NULL");
    const fm_tokenizer *tok = d->tok;
    fm_status st = check_ids(tok, &token, 1, "fm_detokenizer_push");
    if (st) return st;
    *len_out = 0;
    if (!tok->id_str[token] || (d->skip_special && tok->special[token])) {
        if (cap) buf[0] = '\0';
        return FM_OK; /* contributes nothing to decode() */
    }
    if (d->prefix.n == 0 && d->ids.n > 0) {
        if ((st = decode_window(d, d->ids.v, d->ids.n, &d->text))) return st;
        if (!ends_fffd(&d->text)) {
            fm_buf t = d->prefix;
            d->prefix = d->text;
            d->text = t;
            d->prefix_index = d->ids.n;
        }
    }
    if (!fm_i32vec_push(&d->ids, token)) return OOM();
    if ((st = decode_window(d, d->ids.v, d->ids.n, &d->text))) {
        d->ids.n--;
        return st;
    }
    const fm_buf *s = &d->text;
    int grew = s->n > d->prefix.n;
    if (!(grew && (!ends_fffd(s) || d->pending + 1 >= FM_DETOK_MAX_PENDING))) {
        d->pending++;
        if (!grew && d->pending >= 4 * FM_DETOK_MAX_PENDING) {
            /* a long run of ids that decode to nothing: restart the window, keep the newest id */
            d->ids.v[0] = token;
            d->ids.n = 1;
            d->prefix.n = 0;
            d->prefix_index = 0;
            d->pending = 1;
        }
        if (cap) buf[0] = '\0';
        return FM_OK;
    }
    if (memcmp(s->p, d->prefix.p ? d->prefix.p : "", d->prefix.n) != 0) {
        d->ids.n--;
        return fm_error(FM_ERR_UNSUPPORTED,
                        "fm_detokenizer_push: this tokenizer's decoder changes earlier text when token %d follows; "
                        "decode the whole sequence with fm_tokenizer_decode instead", token);
    }
    size_t need = s->n - d->prefix.n;
    *len_out = need;
    if (need > cap) {
        d->ids.n--;
        return fm_error(FM_ERR_BUFFER_TOO_SMALL, "fm_detokenizer_push: needs %zu bytes, buffer holds %zu", need, cap);
    }
    memcpy(buf, s->p + d->prefix.n, need);
    if (need < cap) buf[need] = '\0';
    /* cut the window: keep the ids after the old prefix */
    size_t new_prefix_index = d->ids.n - d->prefix_index;
    memmove(d->ids.v, d->ids.v + d->prefix_index, new_prefix_index * sizeof *d->ids.v);
    d->ids.n = new_prefix_index;
    if ((st = decode_window(d, d->ids.v, d->ids.n, &d->prefix))) {
        fm_detokenizer_reset(d);
        return st;
    }
    d->prefix_index = new_prefix_index;
    d->pending = 0;
    return FM_OK;
}

FM_API fm_status fm_detokenizer_flush(fm_detokenizer *d, char *buf, size_t cap, size_t *len_out) {
    fm_error_clear();
    if (!d || (cap && !buf) || !len_out)
        return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_detokenizer_flush: d, len_out and buf (when cap > 0) must not be NULL");
    *len_out = 0;
    if (d->ids.n) {
        fm_status st = decode_window(d, d->ids.v, d->ids.n, &d->text);
        if (st) return st;
        const fm_buf *s = &d->text;
        if (s->n > d->prefix.n && !memcmp(s->p, d->prefix.p ? d->prefix.p : "", d->prefix.n)) {
            size_t need = s->n - d->prefix.n;
            *len_out = need;
            if (need > cap) return fm_error(FM_ERR_BUFFER_TOO_SMALL, "fm_detokenizer_flush: needs %zu bytes, buffer holds %zu", need, cap);
            memcpy(buf, s->p + d->prefix.n, need);
            if (need < cap) buf[need] = '\0';
            fm_detokenizer_reset(d);
            return FM_OK;
        }
    }
    if (cap) buf[0] = '\0';
    fm_detokenizer_reset(d);
    return FM_OK;
}
