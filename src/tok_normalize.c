/* tok_normalize.c - tokenizer.json normalizers: NFC, NFD, NFKC, NFKD (utf8proc), Lowercase, Replace,
   Prepend, Strip, StripAccents, ByteLevel, Nmt, BertNormalizer and Sequence. Each one maps a string
   to a new string, as the Rust crate's NormalizedString does (alignments are not kept). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <utf8proc.h>

#include "error.h"
#include "tokenizer.h"

#define OOM() fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory")

/* ---- parsing ----------------------------------------------------------------------------------- */

fm_status fm_pattern_parse(const cJSON *j, const char *where, fm_regex **out) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
    if (!cJSON_IsObject(pat)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: 'pattern' must be an object", where);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    if (cJSON_IsString(s) && s->valuestring) return fm_regex_compile(s->valuestring, strlen(s->valuestring), 1, where, out);
    if (cJSON_IsString(r) && r->valuestring) return fm_regex_compile(r->valuestring, strlen(r->valuestring), 0, where, out);
    return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: 'pattern' must be {\"String\": ...} or {\"Regex\": ...}", where);
}

static fm_status dup_string(const cJSON *j, const char *key, const char *where, char **out, size_t *len) {
    const char *s;
    fm_status st = fm_json_string(j, key, &s, where);
    if (st) return st;
    *len = strlen(s);
    *out = malloc(*len + 1);
    if (!*out) return OOM();
    memcpy(*out, s, *len + 1);
    return FM_OK;
}

fm_status fm_normalizer_parse(const cJSON *j, const char *where, fm_normalizer **out) {
    *out = NULL;
    if (!cJSON_IsObject(j)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s must be an object or null", where);
    const char *type;
    fm_status st = fm_json_string(j, "type", &type, where);
    if (st) return st;
    fm_normalizer *nz = calloc(1, sizeof *nz);
    if (!nz) return OOM();
    if (!strcmp(type, "Sequence")) {
        nz->kind = FM_NORM_SEQUENCE;
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        if (!cJSON_IsArray(arr)) {
            st = fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: Sequence needs a 'normalizers' array", where);
        } else {
            size_t n = (size_t)cJSON_GetArraySize(arr);
            nz->children = calloc(n ? n : 1, sizeof *nz->children);
            if (!nz->children) st = OOM();
            size_t i = 0;
            for (const cJSON *e = arr->child; e && !st; e = e->next, i++) {
                char w[256];
                snprintf(w, sizeof w, "%s.normalizers[%zu]", where, i);
                st = fm_normalizer_parse(e, w, &nz->children[i]);
                if (!st) nz->n_children = i + 1;
            }
        }
    } else if (!strcmp(type, "NFC")) nz->kind = FM_NORM_NFC;
    else if (!strcmp(type, "NFD")) nz->kind = FM_NORM_NFD;
    else if (!strcmp(type, "NFKC")) nz->kind = FM_NORM_NFKC;
    else if (!strcmp(type, "NFKD")) nz->kind = FM_NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) nz->kind = FM_NORM_LOWERCASE;
    else if (!strcmp(type, "StripAccents")) nz->kind = FM_NORM_STRIP_ACCENTS;
    else if (!strcmp(type, "ByteLevel")) nz->kind = FM_NORM_BYTELEVEL;
    else if (!strcmp(type, "Nmt")) nz->kind = FM_NORM_NMT;
    else if (!strcmp(type, "Replace")) {
        nz->kind = FM_NORM_REPLACE;
        if (!(st = fm_pattern_parse(j, where, &nz->re))) st = dup_string(j, "content", where, &nz->str, &nz->str_len);
    } else if (!strcmp(type, "Prepend")) {
        nz->kind = FM_NORM_PREPEND;
        st = dup_string(j, "prepend", where, &nz->str, &nz->str_len);
    } else if (!strcmp(type, "Strip")) {
        nz->kind = FM_NORM_STRIP;
        if (!(st = fm_json_bool(j, "strip_left", 0, &nz->left, where))) st = fm_json_bool(j, "strip_right", 0, &nz->right, where);
    } else if (!strcmp(type, "BertNormalizer") || !strcmp(type, "Bert")) {
        nz->kind = FM_NORM_BERT;
        if (!(st = fm_json_bool(j, "clean_text", 1, &nz->clean_text, where)) &&
            !(st = fm_json_bool(j, "handle_chinese_chars", 1, &nz->chinese, where)) &&
            !(st = fm_json_bool(j, "lowercase", 1, &nz->lowercase, where)))
            st = fm_json_bool(j, "strip_accents", nz->lowercase, &nz->strip_accents, where);
    } else if (!strcmp(type, "Precompiled")) {
        st = fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: %s: normalizer type 'Precompiled' (SentencePiece) is not supported", where);
    } else {
        st = fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: %s: normalizer type '%.64s' is not supported", where, type);
    }
    if (st) {
        fm_normalizer_free(nz);
        return st;
    }
    *out = nz;
    return FM_OK;
}

void fm_normalizer_free(fm_normalizer *nz) {
    if (!nz) return;
    for (size_t i = 0; i < nz->n_children; i++) fm_normalizer_free(nz->children[i]);
    free(nz->children);
    fm_regex_free(nz->re);
    free(nz->str);
    free(nz);
}

/* ---- applying ------------------------------------------------------------------------------------ */

static int put_cp(fm_buf *o, uint32_t c) {
    char u[4];
    return fm_buf_append(o, u, fm_utf8_put(c, u));
}

static fm_status unicode_form_raw(const char *s, size_t n, int opts, fm_buf *out) {
    utf8proc_uint8_t *dst = NULL;
    if ((size_t)(ssize_t)n != n || (ssize_t)n < 0) return fm_error(FM_ERR_INVALID_ARGUMENT, "text too long");
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)(opts | UTF8PROC_STABLE));
    if (r < 0) {
        free(dst);
        if (r == UTF8PROC_ERROR_NOMEM) return OOM();
        return fm_error(FM_ERR_INTERNAL, "unicode normalization failed: %s", utf8proc_errmsg(r));
    }
    int ok = fm_buf_append(out, dst, (size_t)r);
    free(dst);
    return ok ? FM_OK : OOM();
}

/* NFC / NFD / NFKC / NFKD. The few code points that utf8proc's newer tables decompose and the
   reference's do not are copied through unchanged, the text between them normalized as usual. */
static fm_status unicode_form(const char *s, size_t n, int opts, fm_buf *out) {
    const uint32_t *keep = NULL;
    size_t nkeep = 0;
    if (opts & UTF8PROC_COMPAT) keep = fm_uc_keep_nfkd, nkeep = fm_uc_keep_nfkd_n;
    else if (opts & UTF8PROC_DECOMPOSE) keep = fm_uc_keep_nfd, nkeep = fm_uc_keep_nfd_n;
    size_t last = 0;
    if (keep)
        for (size_t i = 0; i < n;) {
            size_t a = i;
            if ((unsigned char)s[i] < 0xE0) { /* every listed code point is >= U+0800 */
                i += fm_utf8_len((unsigned char)s[i]);
                continue;
            }
            uint32_t c = fm_utf8_next(s, &i);
            if (!fm_uc_in_list(keep, nkeep, c)) continue;
            fm_status st = unicode_form_raw(s + last, a - last, opts, out);
            if (st) return st;
            if (!fm_buf_append(out, s + a, i - a)) return OOM();
            last = i;
        }
    return unicode_form_raw(s + last, n - last, opts, out);
}

static fm_status lowercase(const char *s, size_t n, fm_buf *out) {
    if (!fm_buf_reserve(out, n)) return OOM();
    for (size_t i = 0; i < n;) {
        uint32_t c = fm_utf8_next(s, &i);
        if (c < 0x80) {
            char ch = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            if (!fm_buf_append(out, &ch, 1)) return OOM();
        } else if (c == 0x130) { /* the one unconditional multi-character lowercase mapping */
            if (!fm_buf_append(out, "i\xCC\x87", 3)) return OOM();
        } else {
            const char *to = fm_uc_map_find(fm_uc_lower_extra, fm_uc_lower_extra_n, c);
            if (to ? !fm_buf_append(out, to, strlen(to)) : !put_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c)))
                return OOM();
        }
    }
    return FM_OK;
}

static fm_status replace(const fm_normalizer *nz, fm_re_scratch *rs, const char *s, size_t n, fm_buf *out) {
    fm_spanvec m = {0};
    fm_status st = fm_regex_find_all(nz->re, rs, s, n, &m);
    size_t last = 0;
    for (size_t i = 0; i < m.n && !st; i++) {
        if (!fm_buf_append(out, s + last, m.v[i].start - last) || !fm_buf_append(out, nz->str, nz->str_len)) st = OOM();
        last = m.v[i].end;
    }
    if (!st && !fm_buf_append(out, s + last, n - last)) st = OOM();
    free(m.v);
    return st;
}

static fm_status strip(const char *s, size_t n, int left, int right, fm_buf *out) {
    size_t a = 0, b = n;
    if (left)
        while (a < b) {
            size_t j = a;
            if (!fm_uc_is_whitespace(fm_utf8_next(s, &j))) break;
            a = j;
        }
    if (right)
        while (b > a) {
            size_t ps;
            if (!fm_uc_is_whitespace(fm_utf8_prev(s, b, &ps))) break;
            b = ps;
        }
    return fm_buf_append(out, s + a, b - a) ? FM_OK : OOM();
}

static int nmt_removed(uint32_t c) {
    return (c >= 0x01 && c <= 0x08) || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || c == 0x8F || c == 0x9F;
}

static uint32_t nmt_map(uint32_t c) {
    switch (c) {
    case 0x09: case 0x0A: case 0x0C: case 0x0D: case 0x1680: case 0x2028: case 0x2029: case 0x2581: case 0xFEFF:
    case 0xFFFD:
        return ' ';
    default:
        return c >= 0x200B && c <= 0x200F ? ' ' : c;
    }
}

static fm_status apply_one(const fm_normalizer *nz, fm_re_scratch *rs, const char *s, size_t n, fm_buf *out);

static fm_status bert(const fm_normalizer *nz, const char *s, size_t n, fm_buf *out) {
    fm_buf a = {0}, b = {0};
    fm_status st = FM_OK;
    if (!fm_buf_append(&a, s, n)) return OOM();
    if (nz->clean_text) {
        for (size_t i = 0; i < a.n && !st;) {
            uint32_t c = fm_utf8_next(a.p, &i);
            if (fm_uc_is_other(c)) continue; /* NUL, U+FFFD, and controls / format / private use other than tab, LF, CR */
            if (c == '\t' || c == '\n' || c == '\r' || fm_uc_is_whitespace(c)) c = ' ';
            if (!put_cp(&b, c)) st = OOM();
        }
        fm_buf t = a;
        a = b;
        b = t;
        b.n = 0;
    }
    if (!st && nz->chinese) {
        for (size_t i = 0; i < a.n && !st;) {
            uint32_t c = fm_utf8_next(a.p, &i);
            int cjk = fm_uc_is_chinese(c);
            if ((cjk && !fm_buf_append(&b, " ", 1)) || !put_cp(&b, c) || (cjk && !fm_buf_append(&b, " ", 1))) st = OOM();
        }
        fm_buf t = a;
        a = b;
        b = t;
        b.n = 0;
    }
    if (!st && nz->strip_accents) {
        if (!(st = unicode_form(a.p ? a.p : "", a.n, UTF8PROC_DECOMPOSE, &b))) {
            a.n = 0;
            for (size_t i = 0; i < b.n && !st;) {
                uint32_t c = fm_utf8_next(b.p, &i);
                if (!fm_uc_is_mark_nonspacing(c) && !put_cp(&a, c)) st = OOM();
            }
            b.n = 0;
        }
    }
    if (!st && nz->lowercase) {
        if (!(st = lowercase(a.p ? a.p : "", a.n, &b))) {
            fm_buf t = a;
            a = b;
            b = t;
        }
    }
    if (!st && !fm_buf_append(out, a.p ? a.p : "", a.n)) st = OOM();
    fm_buf_free(&a);
    fm_buf_free(&b);
    return st;
}

static fm_status apply_one(const fm_normalizer *nz, fm_re_scratch *rs, const char *s, size_t n, fm_buf *out) {
    switch (nz->kind) {
    case FM_NORM_SEQUENCE: {
        fm_buf a = {0}, b = {0};
        if (!fm_buf_append(&a, s, n)) return OOM();
        fm_status st = FM_OK;
        for (size_t i = 0; i < nz->n_children && !st; i++) {
            b.n = 0;
            if (!(st = apply_one(nz->children[i], rs, a.p, a.n, &b))) {
                fm_buf t = a;
                a = b;
                b = t;
            }
        }
        if (!st && !fm_buf_append(out, a.p, a.n)) st = OOM();
        fm_buf_free(&a);
        fm_buf_free(&b);
        return st;
    }
    case FM_NORM_NFC: return unicode_form(s, n, UTF8PROC_COMPOSE, out);
    case FM_NORM_NFD: return unicode_form(s, n, UTF8PROC_DECOMPOSE, out);
    case FM_NORM_NFKC: return unicode_form(s, n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case FM_NORM_NFKD: return unicode_form(s, n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case FM_NORM_LOWERCASE: return lowercase(s, n, out);
    case FM_NORM_REPLACE: return replace(nz, rs, s, n, out);
    case FM_NORM_PREPEND:
        if (n && !fm_buf_append(out, nz->str, nz->str_len)) return OOM();
        return fm_buf_append(out, s, n) ? FM_OK : OOM();
    case FM_NORM_STRIP: return strip(s, n, nz->left, nz->right, out);
    case FM_NORM_STRIP_ACCENTS:
        for (size_t i = 0; i < n;) {
            size_t j = i;
            uint32_t c = fm_utf8_next(s, &j);
            if (!fm_uc_is_mark(c) && !fm_buf_append(out, s + i, j - i)) return OOM();
            i = j;
        }
        return FM_OK;
    case FM_NORM_BYTELEVEL:
        for (size_t i = 0; i < n; i++)
            if (!put_cp(out, fm_bytelevel_cp[(unsigned char)s[i]])) return OOM();
        return FM_OK;
    case FM_NORM_NMT:
        for (size_t i = 0; i < n;) {
            uint32_t c = fm_utf8_next(s, &i);
            if (!nmt_removed(c) && !put_cp(out, nmt_map(c))) return OOM();
        }
        return FM_OK;
    case FM_NORM_BERT: return bert(nz, s, n, out);
    }
    return fm_error(FM_ERR_INTERNAL, "unknown normalizer");
}

fm_status fm_normalizer_apply(const fm_normalizer *nz, fm_re_scratch *rs, const char *s, size_t n, fm_buf *out) {
    out->n = 0;
    if (!fm_buf_reserve(out, n)) return OOM();
    out->p[0] = '\0';
    return apply_one(nz, rs, s ? s : "", n, out);
}
