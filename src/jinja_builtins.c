/* jinja_builtins.c - jinja2's filters and tests, the Python str/dict/list methods templates call,
   and the global functions (range, namespace, dict, raise_exception, strftime_now), each with the
   argument names, defaults and edge cases of the Python original. The tojson filter is
   transformers' override: json.dumps(x, ensure_ascii=False, indent=None, separators=None,
   sort_keys=False). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "jinja.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ================================================================================================
 * Helpers
 * ============================================================================================== */

void jj_bind_args(jj_ctx *x, const char *what, const char *const *params, size_t np, jv *args,
                  const char **kw, size_t n, jv *out) {
    for (size_t i = 0; i < np; i++) out[i] = jv_undef(NULL, JVF_U_MISSING);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (!kw || !kw[i]) {
            if (pos >= np) jj_raise(x, "TypeError: %s() takes at most %zu argument(s)", what, np);
            out[pos++] = args[i];
            continue;
        }
        size_t k;
        for (k = 0; k < np; k++)
            if (!strcmp(params[k], kw[i])) break;
        if (k == np) jj_raise(x, "TypeError: %s() got an unexpected keyword argument '%s'", what, kw[i]);
        if (!jv_missing(out[k])) jj_raise(x, "TypeError: %s() got multiple values for argument '%s'", what, kw[i]);
        out[k] = args[i];
    }
}

#define BIND(what, ...)                                                          \
    static const char *const P_[] = {__VA_ARGS__};                               \
    jv A_[sizeof P_ / sizeof *P_];                                               \
    jj_bind_args(x, what, P_, sizeof P_ / sizeof *P_, args, kw, n, A_)
#define ARG(i) A_[i]
#define NOARGS(what)                                                             \
    do {                                                                         \
        (void)args;                                                              \
        (void)kw;                                                                \
        if (n) jj_raise(x, "TypeError: %s() takes no arguments (%zu given)", (const char *)(what), n); \
    } while (0)
#define HAS(i) (!jv_missing(A_[i]))

static jv soft_str(jj_ctx *x, jv v) { return jv_to_str(x, v); }

static int64_t want_int(jj_ctx *x, jv v, const char *what) {
    if (v.kind == JV_INT || v.kind == JV_BOOL) return v.u.i;
    if (v.kind == JV_UNDEF) jj_undefined_error(x, v);
    jj_raise(x, "TypeError: %s: '%s' object cannot be interpreted as an integer", what, jv_type_name(v));
}

static const jstr *want_str(jj_ctx *x, jv v, const char *what) {
    if (v.kind == JV_STR) return JS(v);
    if (v.kind == JV_UNDEF) jj_undefined_error(x, v);
    jj_raise(x, "TypeError: %s: expected str, got %s", what, jv_type_name(v));
}

static uint32_t *to_cps(jj_ctx *x, const char *s, size_t n, size_t *out_n) {
    uint32_t *cp = jj_alloc(x, (n + 1) * sizeof(uint32_t), JT_RAW);
    size_t i = 0, k = 0;
    while (i < n) cp[k++] = jj_utf8_next(s, n, &i);
    *out_n = k;
    return cp;
}

static jv from_cps(jj_ctx *x, const uint32_t *cp, size_t n) {
    jsb b;
    jsb_init(x, &b);
    for (size_t i = 0; i < n; i++) jsb_put_cp(x, &b, cp[i]);
    return jsb_take(x, &b);
}

static jv with_flags(jv r, jv like) {
    if (r.kind == JV_STR) r.flags = like.flags & JVF_MARKUP;
    return r;
}

/* ---- case conversion ---------------------------------------------------------------------- */

static void put_map(jj_ctx *x, jsb *b, uint32_t c, int which) {
    uint32_t m[3];
    int k = jj_case(c, which, m);
    for (int i = 0; i < k; i++) jsb_put_cp(x, b, m[i]);
}

static int ignorable(uint32_t c) { return (jj_uprops(c) & JU_IGNORABLE) != 0; }

/* lower-case cp[i] of cp[from..n), with Python's final-sigma rule for U+03A3:
   \p{cased}\p{case-ignorable}* SIGMA !(\p{case-ignorable}* \p{cased}) gives U+03C2 */
static void put_lower(jj_ctx *x, jsb *b, const uint32_t *cp, size_t from, size_t n, size_t i) {
    if (cp[i] != 0x3a3) {
        put_map(x, b, cp[i], JC_LOWER);
        return;
    }
    size_t j = i;
    uint32_t c = 0;
    int found = 0;
    while (j > from) {
        c = cp[--j];
        if (!ignorable(c)) {
            found = 1;
            break;
        }
    }
    int final_sigma = found && jj_is_cased(c);
    if (final_sigma && i + 1 < n) {
        size_t k = i + 1;
        for (; k < n; k++)
            if (!ignorable(cp[k])) break;
        final_sigma = k == n || !jj_is_cased(cp[k]);
    }
    jsb_put_cp(x, b, final_sigma ? 0x3c2 : 0x3c3);
}

enum { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE, CASE_SWAP, CASE_FOLD, CASE_JTITLE };

static int jtitle_sep(uint32_t c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || jj_is_space(c); }

static jv change_case(jj_ctx *x, jv sv, int mode) {
    const jstr *s = JS(sv);
    size_t n;
    uint32_t *cp = to_cps(x, s->s, s->len, &n);
    jsb b;
    jsb_init(x, &b);
    int prev_cased = 0;
    size_t word = 0; /* CASE_JTITLE: start of the current word */
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp[i];
        switch (mode) {
        case CASE_UPPER: put_map(x, &b, c, JC_UPPER); break;
        case CASE_LOWER: put_lower(x, &b, cp, 0, n, i); break;
        case CASE_FOLD: put_map(x, &b, c, JC_FOLD); break;
        case CASE_TITLE: /* str.title */
            if (prev_cased) put_lower(x, &b, cp, 0, n, i);
            else put_map(x, &b, c, JC_TITLE);
            prev_cased = jj_is_cased(c);
            break;
        case CASE_CAPITALIZE:
            if (i == 0) put_map(x, &b, c, JC_TITLE);
            else put_lower(x, &b, cp, 0, n, i);
            break;
        case CASE_SWAP: {
            unsigned p = c < 0x80 ? 0 : jj_uprops(c);
            int up = c < 0x80 ? (c >= 'A' && c <= 'Z') : (p & JU_UPPER) != 0;
            int low = c < 0x80 ? (c >= 'a' && c <= 'z') : (p & JU_LOWER) != 0;
            if (up) put_lower(x, &b, cp, 0, n, i);
            else if (low) put_map(x, &b, c, JC_UPPER);
            else jsb_put_cp(x, &b, c);
            break;
        }
        case CASE_JTITLE: {
            /* jinja's title filter: re.split(r"([-\s({\[<]+)") and item[0].upper() +
               item[1:].lower() for each piece; separators have no case */
            if (jtitle_sep(c)) {
                jsb_put_cp(x, &b, c);
                word = i + 1;
            } else if (i == word) put_map(x, &b, c, JC_UPPER);
            else {
                size_t end = i;
                while (end < n && !jtitle_sep(cp[end])) end++;
                put_lower(x, &b, cp, word + 1, end, i);
            }
            break;
        }
        }
    }
    jj_free(x, cp);
    return with_flags(jsb_take(x, &b), sv);
}

/* ---- strip / split / find / replace ----------------------------------------------------- */

static int in_set(uint32_t c, const uint32_t *set, size_t ns) {
    if (!set) return jj_is_space(c);
    for (size_t i = 0; i < ns; i++)
        if (set[i] == c) return 1;
    return 0;
}

/* which: 1 = left, 2 = right, 3 = both; chars NONE/missing = whitespace */
static jv do_strip(jj_ctx *x, jv sv, jv chars, int which) {
    const jstr *s = JS(sv);
    uint32_t *set = NULL;
    size_t ns = 0;
    if (!jv_missing(chars) && chars.kind != JV_NONE) {
        const jstr *cs = want_str(x, chars, "strip arg");
        set = to_cps(x, cs->s, cs->len, &ns);
    }
    size_t a = 0, b = s->len;
    if (which & 1) {
        while (a < b) {
            size_t q = a;
            uint32_t c = jj_utf8_next(s->s, s->len, &q);
            if (!in_set(c, set, ns)) break;
            a = q;
        }
    }
    if (which & 2) {
        while (b > a) {
            size_t st = b - 1;
            while (st > a && ((unsigned char)s->s[st] & 0xc0) == 0x80 && b - st < 4) st--;
            size_t q = st;
            uint32_t c = jj_utf8_next(s->s, s->len, &q);
            if (q != b || !in_set(c, set, ns)) break;
            b = st;
        }
    }
    if (set) jj_free(x, set);
    if (a == 0 && b == s->len) return jv_retain(sv);
    return with_flags(jv_str(x, s->s + a, b - a), sv);
}

static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn, size_t from) {
    if (nn == 0) return from <= hn ? h + from : NULL;
    for (size_t i = from; i + nn <= hn; i++)
        if (h[i] == nd[0] && memcmp(h + i, nd, nn) == 0) return h + i;
    return NULL;
}

static const char *rfind_bytes(const char *h, size_t hn, const char *nd, size_t nn, size_t end) {
    (void)hn;
    if (nn > end) return NULL;
    for (size_t i = end - nn + 1; i-- > 0;)
        if (memcmp(h + i, nd, nn) == 0) return h + i;
    return NULL;
}

static jv do_split(jj_ctx *x, jv sv, jv sep, jv maxsplit, int from_right) {
    const jstr *s = JS(sv);
    int64_t max = -1;
    if (!jv_missing(maxsplit)) max = want_int(x, maxsplit, "split maxsplit");
    jv out = jv_list(x, JL_LIST, 0);
    if (jv_missing(sep) || sep.kind == JV_NONE) {
        size_t n;
        uint32_t *cp = to_cps(x, s->s, s->len, &n);
        /* byte offsets of each code point */
        size_t *off = jj_alloc(x, (n + 1) * sizeof(size_t), JT_RAW);
        size_t i = 0, k = 0;
        while (i < s->len) {
            off[k++] = i;
            jj_utf8_next(s->s, s->len, &i);
        }
        off[n] = s->len;
        int64_t splits = 0;
        if (!from_right) {
            size_t p = 0;
            for (;;) {
                while (p < n && jj_is_space(cp[p])) p++;
                if (p >= n) break;
                if (max >= 0 && splits >= max) {
                    jl_push(x, out, with_flags(jv_str(x, s->s + off[p], s->len - off[p]), sv));
                    break;
                }
                size_t q = p;
                while (q < n && !jj_is_space(cp[q])) q++;
                jl_push(x, out, with_flags(jv_str(x, s->s + off[p], off[q] - off[p]), sv));
                splits++;
                p = q;
            }
        } else {
            jv rev = jv_list(x, JL_LIST, 0);
            size_t p = n;
            for (;;) {
                while (p > 0 && jj_is_space(cp[p - 1])) p--;
                if (p == 0) break;
                if (max >= 0 && splits >= max) {
                    jl_push(x, rev, with_flags(jv_str(x, s->s, off[p]), sv));
                    break;
                }
                size_t q = p;
                while (q > 0 && !jj_is_space(cp[q - 1])) q--;
                jl_push(x, rev, with_flags(jv_str(x, s->s + off[q], off[p] - off[q]), sv));
                splits++;
                p = q;
            }
            for (size_t j = JL(rev)->n; j-- > 0;) jl_push(x, out, jv_retain(JL(rev)->v[j]));
            jv_release(x, rev);
        }
        jj_free(x, off);
        jj_free(x, cp);
        return out;
    }
    const jstr *sp = want_str(x, sep, "split sep");
    if (sp->len == 0) {
        jv_release(x, out);
        jj_raise(x, "ValueError: empty separator");
    }
    int64_t splits = 0;
    if (!from_right) {
        size_t p = 0;
        for (;;) {
            const char *f = (max >= 0 && splits >= max) ? NULL : find_bytes(s->s, s->len, sp->s, sp->len, p);
            if (!f) {
                jl_push(x, out, with_flags(jv_str(x, s->s + p, s->len - p), sv));
                break;
            }
            size_t at = (size_t)(f - s->s);
            jl_push(x, out, with_flags(jv_str(x, s->s + p, at - p), sv));
            p = at + sp->len;
            splits++;
        }
    } else {
        jv rev = jv_list(x, JL_LIST, 0);
        size_t end = s->len;
        for (;;) {
            const char *f = (max >= 0 && splits >= max) ? NULL : rfind_bytes(s->s, s->len, sp->s, sp->len, end);
            if (!f) {
                jl_push(x, rev, with_flags(jv_str(x, s->s, end), sv));
                break;
            }
            size_t at = (size_t)(f - s->s);
            jl_push(x, rev, with_flags(jv_str(x, s->s + at + sp->len, end - at - sp->len), sv));
            end = at;
            splits++;
        }
        for (size_t j = JL(rev)->n; j-- > 0;) jl_push(x, out, jv_retain(JL(rev)->v[j]));
        jv_release(x, rev);
    }
    return out;
}

static int line_break(uint32_t c) {
    return c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e || c == 0x85 ||
           c == 0x2028 || c == 0x2029;
}

static jv do_splitlines(jj_ctx *x, jv sv, int keepends) {
    const jstr *s = JS(sv);
    jv out = jv_list(x, JL_LIST, 0);
    size_t i = 0, start = 0;
    while (i < s->len) {
        size_t q = i;
        uint32_t c = jj_utf8_next(s->s, s->len, &q);
        if (!line_break(c)) {
            i = q;
            continue;
        }
        size_t eol = q;
        if (c == '\r' && q < s->len && s->s[q] == '\n') eol = q + 1;
        jl_push(x, out, with_flags(jv_str(x, s->s + start, (keepends ? eol : i) - start), sv));
        start = i = eol;
    }
    if (start < s->len) jl_push(x, out, with_flags(jv_str(x, s->s + start, s->len - start), sv));
    return out;
}

static jv do_replace_str(jj_ctx *x, jv sv, const jstr *old, const jstr *nw, int64_t count) {
    const jstr *s = JS(sv);
    jsb b;
    jsb_init(x, &b);
    int64_t done = 0;
    if (old->len == 0) {
        size_t i = 0;
        while (i <= s->len) {
            if (count < 0 || done < count) {
                jsb_put(x, &b, nw->s, nw->len);
                done++;
            }
            if (i == s->len) break;
            size_t q = i;
            jj_utf8_next(s->s, s->len, &q);
            jsb_put(x, &b, s->s + i, q - i);
            i = q;
        }
        return with_flags(jsb_take(x, &b), sv);
    }
    size_t p = 0;
    for (;;) {
        const char *f = (count >= 0 && done >= count) ? NULL : find_bytes(s->s, s->len, old->s, old->len, p);
        if (!f) break;
        size_t at = (size_t)(f - s->s);
        jsb_put(x, &b, s->s + p, at - p);
        jsb_put(x, &b, nw->s, nw->len);
        p = at + old->len;
        done++;
    }
    jsb_put(x, &b, s->s + p, s->len - p);
    return with_flags(jsb_take(x, &b), sv);
}

static size_t cp_index(const jstr *s, const char *at) { return jj_utf8_len(s->s, (size_t)(at - s->s)); }

static int prefix_match(jj_ctx *x, const jstr *s, jv arg, int suffix) {
    if (arg.kind == JV_LIST && JL(arg)->sub == JL_TUPLE) {
        for (size_t i = 0; i < JL(arg)->n; i++)
            if (prefix_match(x, s, JL(arg)->v[i], suffix)) return 1;
        return 0;
    }
    if (arg.kind != JV_STR)
        jj_raise(x, "TypeError: %s first arg must be str or a tuple of str, not %s", suffix ? "endswith" : "startswith",
                 jv_type_name(arg));
    const jstr *p = JS(arg);
    if (p->len > s->len) return 0;
    return memcmp(suffix ? s->s + s->len - p->len : s->s, p->s, p->len) == 0;
}

static jv pad(jj_ctx *x, jv sv, int64_t width, jv fill, int how /* 0 left(ljust) 1 right 2 center */) {
    const jstr *s = JS(sv);
    uint32_t fc = ' ';
    if (!jv_missing(fill)) {
        const jstr *f = want_str(x, fill, "fillchar");
        if (jj_utf8_len(f->s, f->len) != 1) jj_raise(x, "TypeError: The fill character must be exactly one character long");
        size_t i = 0;
        fc = jj_utf8_next(f->s, f->len, &i);
    }
    int64_t len = (int64_t)jj_utf8_len(s->s, s->len);
    if (width <= len) return jv_retain(sv);
    if (width > (int64_t)JJ_MAX_STRING) jj_limit(x, "a string exceeds the engine's 64 MiB limit");
    int64_t marg = width - len, left, right;
    if (how == 0) left = 0;
    else if (how == 1) left = marg;
    else left = marg / 2 + (marg & width & 1);
    right = marg - left;
    jsb b;
    jsb_init(x, &b);
    for (int64_t i = 0; i < left; i++) jsb_put_cp(x, &b, fc);
    jsb_put(x, &b, s->s, s->len);
    for (int64_t i = 0; i < right; i++) jsb_put_cp(x, &b, fc);
    return with_flags(jsb_take(x, &b), sv);
}

/* ---- attribute getter for filters (jinja make_attrgetter) --------------------------------- */

static jv attr_get(jj_ctx *x, jv item, jv attr /* str (dotted) or int */, jv dflt) {
    jv cur = jv_retain(item);
    if (attr.kind == JV_STR) {
        const jstr *a = JS(attr);
        size_t p = 0;
        for (;;) {
            const char *dot = memchr(a->s + p, '.', a->len - p);
            size_t end = dot ? (size_t)(dot - a->s) : a->len;
            int digits = end > p;
            for (size_t i = p; i < end; i++)
                if (a->s[i] < '0' || a->s[i] > '9') digits = 0;
            jv key;
            if (digits) {
                int64_t v = 0;
                for (size_t i = p; i < end; i++) {
                    if (v > (INT64_MAX - 9) / 10) jj_unsup(x, "attribute index out of range");
                    v = v * 10 + (a->s[i] - '0');
                }
                key = jv_int(v);
            } else key = jv_str(x, a->s + p, end - p);
            jv next = jj_getitem(x, cur, key);
            jv_release(x, key);
            jv_release(x, cur);
            cur = next;
            if (!dot) break;
            p = end + 1;
        }
    } else {
        jv next = jj_getitem(x, cur, attr);
        jv_release(x, cur);
        cur = next;
    }
    if (!jv_missing(dflt) && dflt.kind != JV_NONE && cur.kind == JV_UNDEF) {
        jv_release(x, cur);
        cur = jv_retain(dflt);
    }
    return cur;
}

static jv ignore_case(jj_ctx *x, jv v) {
    if (v.kind == JV_STR) return change_case(x, v, CASE_LOWER);
    return jv_retain(v);
}

/* stable merge sort of idx[0..n) by keys; reverse keeps equal items in order (as Python) */
static void sort_idx(jj_ctx *x, jv *keys, size_t *idx, size_t n, int reverse) {
    if (n < 2) return;
    size_t *tmp = jj_alloc(x, n * sizeof(size_t), JT_RAW);
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi) {
                int take_b = reverse ? jv_lt(x, keys[idx[a]], keys[idx[b]]) : jv_lt(x, keys[idx[b]], keys[idx[a]]);
                tmp[o++] = take_b ? idx[b++] : idx[a++];
            }
            while (a < mid) tmp[o++] = idx[a++];
            while (b < hi) tmp[o++] = idx[b++];
        }
        memcpy(idx, tmp, n * sizeof(size_t));
    }
    jj_free(x, tmp);
}

static jv make_iter(jj_ctx *x, jv list /* owned JL_LIST */) {
    JL(list)->sub = JL_ITER;
    JL(list)->pos = 0;
    (void)x;
    return list;
}

/* ---- numbers from strings (Python int()/float()) ---------------------------------------- */

static int parse_py_int(const jstr *s, int64_t base, int64_t *out) {
    const char *p = s->s, *e = s->s + s->len;
    while (p < e && (*p == ' ' || (*p >= '\t' && *p <= '\r'))) p++;
    while (e > p && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r'))) e--;
    int neg = 0;
    if (p < e && (*p == '+' || *p == '-')) neg = *p++ == '-';
    if (base == 0 || base == 16 || base == 8 || base == 2) {
        if (e - p > 2 && p[0] == '0') {
            char b = (char)(p[1] | 0x20);
            int bb = b == 'x' ? 16 : b == 'o' ? 8 : b == 'b' ? 2 : 0;
            if (bb && (base == 0 || base == bb)) {
                base = bb;
                p += 2;
                if (p < e && *p == '_') p++;
            }
        }
        if (base == 0) base = 10;
    }
    if (base < 2 || base > 36 || p >= e) return 0;
    uint64_t v = 0;
    int prev_us = 1;
    for (; p < e; p++) {
        if (*p == '_') {
            if (prev_us) return 0;
            prev_us = 1;
            continue;
        }
        int d;
        char c = *p;
        if (c >= '0' && c <= '9') d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') d = (c | 0x20) - 'a' + 10;
        else return 0;
        if (d >= base) return 0;
        if (v > (UINT64_C(0x7fffffffffffffff) - (uint64_t)d) / (uint64_t)base) return -1;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_us = 0;
    }
    if (prev_us) return 0;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 1;
}

static int parse_py_float(const jstr *s, double *out) {
    const char *p = s->s, *e = s->s + s->len;
    while (p < e && (*p == ' ' || (*p >= '\t' && *p <= '\r'))) p++;
    while (e > p && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r'))) e--;
    char buf[128];
    size_t k = 0;
    const char *q = p;
    if (q < e && (*q == '+' || *q == '-')) buf[k++] = *q++;
    size_t rest = (size_t)(e - q);
    if ((rest == 3 && (!strncasecmp(q, "inf", 3) || !strncasecmp(q, "nan", 3))) || (rest == 8 && !strncasecmp(q, "infinity", 8))) {
        memcpy(buf + k, q, rest);
        buf[k + rest] = 0;
        *out = strtod(buf, NULL);
        return 1;
    }
    int digits = 0, prev_digit = 0;
    int seen_dot = 0, seen_e = 0;
    for (; q < e; q++) {
        char c = *q;
        if (k >= sizeof buf - 2) return 0;
        if (c >= '0' && c <= '9') {
            buf[k++] = c;
            digits = prev_digit = 1;
        } else if (c == '_' && prev_digit && q + 1 < e && q[1] >= '0' && q[1] <= '9') {
            prev_digit = 0;
        } else if (c == '.' && !seen_dot && !seen_e) {
            buf[k++] = c;
            seen_dot = 1;
            prev_digit = 0;
        } else if ((c == 'e' || c == 'E') && digits && !seen_e) {
            buf[k++] = c;
            seen_e = 1;
            digits = prev_digit = 0;
            if (q + 1 < e && (q[1] == '+' || q[1] == '-')) buf[k++] = *++q;
        } else return 0;
    }
    if (!digits) return 0;
    buf[k] = 0;
    *out = strtod(buf, NULL);
    return 1;
}

/* ================================================================================================
 * Methods
 * ============================================================================================== */

static const char *const STR_METHODS[] = {
    "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format", "format_map",
    "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric",
    "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip", "maketrans", "partition",
    "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split",
    "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper", "zfill", NULL};
static const char *const DICT_METHODS[] = {"clear", "copy", "fromkeys", "get", "items", "keys", "pop", "popitem",
                                           "setdefault", "update", "values", NULL};
static const char *const LIST_METHODS[] = {"append", "clear", "copy", "count", "extend", "index", "insert", "pop",
                                           "remove", "reverse", "sort", NULL};
static const char *const TUPLE_METHODS[] = {"count", "index", NULL};
static const char *const LOOP_METHODS[] = {"cycle", "changed", NULL};
static const char *const NUM_ATTRS[] = {"real", "imag", "numerator", "denominator", "conjugate", "bit_length",
                                        "bit_count", "to_bytes", "from_bytes", "as_integer_ratio", "is_integer",
                                        "hex", "fromhex", NULL};

static const char *in_list(const char *const *l, const char *name) {
    for (int i = 0; l[i]; i++)
        if (!strcmp(l[i], name)) return l[i];
    return NULL;
}

const char *jj_method_name(jv obj, const char *name) {
    switch (obj.kind) {
    case JV_STR: return in_list(STR_METHODS, name);
    case JV_DICT: return in_list(DICT_METHODS, name);
    case JV_LIST:
        if (JL(obj)->sub == JL_LIST) return in_list(LIST_METHODS, name);
        if (JL(obj)->sub == JL_TUPLE || JL(obj)->sub == JL_RANGE) return in_list(TUPLE_METHODS, name);
        return NULL;
    case JV_LOOP: return in_list(LOOP_METHODS, name);
    case JV_INT:
    case JV_BOOL:
    case JV_FLOAT: return in_list(NUM_ATTRS, name);
    default: return NULL;
    }
}

static int str_all(const jstr *s, int (*pred)(uint32_t)) {
    if (!s->len) return 0;
    size_t i = 0;
    while (i < s->len)
        if (!pred(jj_utf8_next(s->s, s->len, &i))) return 0;
    return 1;
}
static int p_has(uint32_t c, unsigned mask) {
    if (c < 0x80) {
        int digit = c >= '0' && c <= '9', alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        return ((mask & (JU_DECIMAL | JU_DIGIT | JU_NUMERIC)) && digit) || ((mask & JU_ALPHA) && alpha);
    }
    return (jj_uprops(c) & mask) != 0;
}
static int p_digit(uint32_t c) { return p_has(c, JU_DIGIT); }
static int p_decimal(uint32_t c) { return p_has(c, JU_DECIMAL); }
static int p_numeric(uint32_t c) { return p_has(c, JU_NUMERIC); }
static int p_alpha(uint32_t c) { return p_has(c, JU_ALPHA); }
static int p_alnum(uint32_t c) { return p_has(c, JU_ALPHA | JU_DECIMAL | JU_DIGIT | JU_NUMERIC); }
static int p_space(uint32_t c) { return jj_is_space(c); }
static int p_ascii(uint32_t c) { return c < 0x80; }

/* str.isupper() / str.islower() */
static int case_state(const jstr *s, int want_upper) {
    int cased = 0;
    size_t i = 0;
    while (i < s->len) {
        uint32_t c = jj_utf8_next(s->s, s->len, &i);
        unsigned p = c < 0x80 ? ((c >= 'A' && c <= 'Z') ? JU_UPPER : (c >= 'a' && c <= 'z') ? JU_LOWER : 0) : jj_uprops(c);
        if ((p & (want_upper ? JU_LOWER : JU_UPPER)) || (p & JU_TITLE)) return 0;
        if (p & (want_upper ? JU_UPPER : JU_LOWER)) cased = 1;
    }
    return cased;
}

static jv str_method(jj_ctx *x, jv self, const char *name, jv *args, const char **kw, size_t n) {
    const jstr *s = JS(self);
    if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
        BIND(name, "chars");
        return do_strip(x, self, ARG(0), name[0] == 'l' ? 1 : name[0] == 'r' ? 2 : 3);
    }
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        BIND(name, "prefix", "start", "end");
        if (!HAS(0)) jj_raise(x, "TypeError: %s() takes at least 1 argument (0 given)", name);
        if (HAS(1) || HAS(2)) jj_unsup(x, "%s() with start/end arguments is not supported", name);
        return jv_bool(prefix_match(x, s, ARG(0), name[0] == 'e'));
    }
    if (!strcmp(name, "split") || !strcmp(name, "rsplit")) {
        BIND(name, "sep", "maxsplit");
        return do_split(x, self, ARG(0), ARG(1), name[0] == 'r');
    }
    if (!strcmp(name, "splitlines")) {
        BIND(name, "keepends");
        return do_splitlines(x, self, HAS(0) && jv_truthy(ARG(0)));
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") || !strcmp(name, "capitalize") ||
        !strcmp(name, "swapcase") || !strcmp(name, "casefold")) {
        NOARGS(name);
        int mode = name[0] == 'u' ? CASE_UPPER : name[0] == 't' ? CASE_TITLE : !strcmp(name, "capitalize") ? CASE_CAPITALIZE
                 : name[0] == 's' ? CASE_SWAP : !strcmp(name, "casefold") ? CASE_FOLD : CASE_LOWER;
        return change_case(x, self, mode);
    }
    if (!strcmp(name, "replace")) {
        BIND(name, "old", "new", "count");
        if (!HAS(0) || !HAS(1)) jj_raise(x, "TypeError: replace expected at least 2 arguments");
        return do_replace_str(x, self, want_str(x, ARG(0), "replace"), want_str(x, ARG(1), "replace"),
                              HAS(2) ? want_int(x, ARG(2), "replace count") : -1);
    }
    if (!strcmp(name, "find") || !strcmp(name, "rfind") || !strcmp(name, "index") || !strcmp(name, "rindex") ||
        !strcmp(name, "count")) {
        BIND(name, "sub", "start", "end");
        if (!HAS(0)) jj_raise(x, "TypeError: %s() takes at least 1 argument (0 given)", name);
        if (HAS(1) || HAS(2)) jj_unsup(x, "%s() with start/end arguments is not supported", name);
        const jstr *sub = want_str(x, ARG(0), name);
        if (!strcmp(name, "count")) {
            if (sub->len == 0) return jv_int((int64_t)jj_utf8_len(s->s, s->len) + 1);
            int64_t c = 0;
            size_t p = 0;
            const char *f;
            while ((f = find_bytes(s->s, s->len, sub->s, sub->len, p))) {
                c++;
                p = (size_t)(f - s->s) + sub->len;
            }
            return jv_int(c);
        }
        const char *f = name[0] == 'r' ? rfind_bytes(s->s, s->len, sub->s, sub->len, s->len)
                                       : find_bytes(s->s, s->len, sub->s, sub->len, 0);
        if (!f) {
            if (!strcmp(name, "index") || !strcmp(name, "rindex")) jj_raise(x, "ValueError: substring not found");
            return jv_int(-1);
        }
        return jv_int((int64_t)cp_index(s, f));
    }
    if (!strcmp(name, "join")) {
        BIND(name, "iterable");
        if (!HAS(0)) jj_raise(x, "TypeError: join() takes exactly one argument (0 given)");
        jv items = jv_iterate(x, ARG(0));
        jsb b;
        jsb_init(x, &b);
        for (size_t i = 0; i < JL(items)->n; i++) {
            jv it = JL(items)->v[i];
            if (it.kind != JV_STR)
                jj_raise(x, "TypeError: sequence item %zu: expected str instance, %s found", i, jv_type_name(it));
            if (i) jsb_put(x, &b, s->s, s->len);
            jsb_put(x, &b, JS(it)->s, JS(it)->len);
        }
        jv_release(x, items);
        return with_flags(jsb_take(x, &b), self);
    }
    if (!strcmp(name, "removeprefix") || !strcmp(name, "removesuffix")) {
        BIND(name, "affix");
        if (!HAS(0)) jj_raise(x, "TypeError: %s() takes exactly one argument (0 given)", name);
        const jstr *a = want_str(x, ARG(0), name);
        int suffix = name[6] == 's';
        if (a->len && a->len <= s->len && memcmp(suffix ? s->s + s->len - a->len : s->s, a->s, a->len) == 0)
            return with_flags(jv_str(x, suffix ? s->s : s->s + a->len, s->len - a->len), self);
        return jv_retain(self);
    }
    if (!strcmp(name, "ljust") || !strcmp(name, "rjust") || !strcmp(name, "center")) {
        BIND(name, "width", "fillchar");
        if (!HAS(0)) jj_raise(x, "TypeError: %s() takes at least 1 argument (0 given)", name);
        return pad(x, self, want_int(x, ARG(0), name), ARG(1), name[0] == 'l' ? 0 : name[0] == 'r' ? 1 : 2);
    }
    if (!strcmp(name, "zfill")) {
        BIND(name, "width");
        if (!HAS(0)) jj_raise(x, "TypeError: zfill() takes exactly one argument (0 given)");
        int64_t w = want_int(x, ARG(0), name), len = (int64_t)jj_utf8_len(s->s, s->len);
        if (w <= len) return jv_retain(self);
        if (w > (int64_t)JJ_MAX_STRING) jj_limit(x, "a string exceeds the engine's 64 MiB limit");
        jsb b;
        jsb_init(x, &b);
        size_t start = 0;
        if (s->len && (s->s[0] == '+' || s->s[0] == '-')) {
            jsb_putc(x, &b, s->s[0]);
            start = 1;
        }
        for (int64_t i = 0; i < w - len; i++) jsb_putc(x, &b, '0');
        jsb_put(x, &b, s->s + start, s->len - start);
        return jsb_take(x, &b);
    }
    if (!strcmp(name, "partition") || !strcmp(name, "rpartition")) {
        BIND(name, "sep");
        if (!HAS(0)) jj_raise(x, "TypeError: %s() takes exactly one argument (0 given)", name);
        const jstr *sp = want_str(x, ARG(0), name);
        if (!sp->len) jj_raise(x, "ValueError: empty separator");
        const char *f = name[0] == 'r' ? rfind_bytes(s->s, s->len, sp->s, sp->len, s->len) : find_bytes(s->s, s->len, sp->s, sp->len, 0);
        jv out = jv_list(x, JL_TUPLE, 3);
        if (!f) {
            if (name[0] == 'r') {
                jl_push(x, out, jv_str(x, "", 0));
                jl_push(x, out, jv_str(x, "", 0));
                jl_push(x, out, jv_retain(self));
            } else {
                jl_push(x, out, jv_retain(self));
                jl_push(x, out, jv_str(x, "", 0));
                jl_push(x, out, jv_str(x, "", 0));
            }
            return out;
        }
        size_t at = (size_t)(f - s->s);
        jl_push(x, out, with_flags(jv_str(x, s->s, at), self));
        jl_push(x, out, jv_retain(ARG(0)));
        jl_push(x, out, with_flags(jv_str(x, s->s + at + sp->len, s->len - at - sp->len), self));
        return out;
    }
    if (!strncmp(name, "is", 2)) {
        NOARGS(name);
        if (!strcmp(name, "isdigit")) return jv_bool(str_all(s, p_digit));
        if (!strcmp(name, "isdecimal")) return jv_bool(str_all(s, p_decimal));
        if (!strcmp(name, "isnumeric")) return jv_bool(str_all(s, p_numeric));
        if (!strcmp(name, "isalpha")) return jv_bool(str_all(s, p_alpha));
        if (!strcmp(name, "isalnum")) return jv_bool(str_all(s, p_alnum));
        if (!strcmp(name, "isspace")) return jv_bool(str_all(s, p_space));
        if (!strcmp(name, "isascii")) return jv_bool(s->len == 0 || str_all(s, p_ascii));
        if (!strcmp(name, "isupper")) return jv_bool(case_state(s, 1));
        if (!strcmp(name, "islower")) return jv_bool(case_state(s, 0));
    }
    jj_unsup(x, "the str method '%s' is not supported", name);
}

static jv dict_view(jj_ctx *x, jv d, int sub) {
    jdict *dd = JD(d);
    jv out = jv_list(x, sub, dd->n);
    for (size_t i = 0; i < dd->n; i++) {
        if (sub == JL_KEYS) jl_push(x, out, jv_retain(dd->kv[2 * i]));
        else if (sub == JL_VALUES) jl_push(x, out, jv_retain(dd->kv[2 * i + 1]));
        else {
            jv t = jv_list(x, JL_TUPLE, 2);
            jl_push(x, t, jv_retain(dd->kv[2 * i]));
            jl_push(x, t, jv_retain(dd->kv[2 * i + 1]));
            jl_push(x, out, t);
        }
    }
    return out;
}

jv jj_call_method(jj_ctx *x, jv self, const char *name, jv *args, const char **kw, size_t n) {
    switch (self.kind) {
    case JV_STR: return str_method(x, self, name, args, kw, n);
    case JV_DICT:
        if (!strcmp(name, "get")) {
            BIND("get", "key", "default");
            if (!HAS(0)) jj_raise(x, "TypeError: get expected at least 1 argument, got 0");
            if (!jv_hashable(ARG(0))) jj_raise(x, "TypeError: unhashable type: '%s'", jv_type_name(ARG(0)));
            jv *v = jd_find(self, ARG(0));
            if (v) return jv_retain(*v);
            return HAS(1) ? jv_retain(ARG(1)) : jv_none();
        }
        if (!strcmp(name, "items") || !strcmp(name, "keys") || !strcmp(name, "values")) {
            NOARGS(name);
            return dict_view(x, self, name[0] == 'i' ? JL_ITEMS : name[0] == 'k' ? JL_KEYS : JL_VALUES);
        }
        if (!strcmp(name, "copy")) {
            jv out = jv_dict(x, JV_DICT);
            for (size_t i = 0; i < JD(self)->n; i++)
                jd_set(x, out, jv_retain(JD(self)->kv[2 * i]), jv_retain(JD(self)->kv[2 * i + 1]));
            return out;
        }
        if (!strcmp(name, "clear") || !strcmp(name, "pop") || !strcmp(name, "popitem") || !strcmp(name, "setdefault") ||
            !strcmp(name, "update"))
            jj_raise(x, "SecurityError: access to attribute '%s' of 'dict' object is unsafe.", name);
        break;
    case JV_LIST:
        if (!strcmp(name, "count") || !strcmp(name, "index")) {
            BIND(name, "value");
            if (!HAS(0)) jj_raise(x, "TypeError: %s() takes exactly one argument (0 given)", name);
            int64_t c = 0;
            for (size_t i = 0; i < JL(self)->n; i++)
                if (jv_eq(x, JL(self)->v[i], ARG(0))) {
                    if (name[0] == 'i') return jv_int((int64_t)i);
                    c++;
                }
            if (name[0] == 'i') jj_raise(x, "ValueError: value is not in list");
            return jv_int(c);
        }
        if (!strcmp(name, "copy")) {
            jv out = jv_list(x, JL_LIST, JL(self)->n);
            for (size_t i = 0; i < JL(self)->n; i++) jl_push(x, out, jv_retain(JL(self)->v[i]));
            return out;
        }
        jj_raise(x, "SecurityError: access to attribute '%s' of '%s' object is unsafe.", name, jv_type_name(self));
    case JV_LOOP:
        if (!strcmp(name, "cycle")) {
            if (n == 0) jj_raise(x, "TypeError: no items for cycling given");
            for (size_t i = 0; i < n; i++)
                if (kw && kw[i]) jj_raise(x, "TypeError: cycle() got an unexpected keyword argument '%s'", kw[i]);
            jloop *l = self.u.p;
            return jv_retain(args[l->i % n]);
        }
        break;
    default: break;
    }
    jj_unsup(x, "the %s method '%s' is not supported", jv_type_name(self), name);
}

/* ================================================================================================
 * Tests
 * ============================================================================================== */

static const char *const TESTS[] = {
    "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean", "false", "true",
    "integer", "float", "lower", "upper", "string", "mapping", "number", "sequence", "iterable", "callable",
    "sameas", "escaped", "in", "==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan", "ge", ">=", "<", "lt",
    "lessthan", "<=", "le", NULL};

int jj_has_test(const char *name) { return in_list(TESTS, name) != NULL; }

static int is_num(jv v) { return v.kind == JV_BOOL || v.kind == JV_INT || v.kind == JV_FLOAT; }

static int cmp_test(jj_ctx *x, const char *name, jv a, jv b) {
    if (!strcmp(name, "==") || !strcmp(name, "eq") || !strcmp(name, "equalto")) return jv_eq(x, a, b);
    if (!strcmp(name, "!=") || !strcmp(name, "ne")) return !jv_eq(x, a, b);
    if (is_num(a) && is_num(b)) {
        double fa = a.kind == JV_FLOAT ? a.u.f : (double)a.u.i, fb = b.kind == JV_FLOAT ? b.u.f : (double)b.u.i;
        if (!strcmp(name, ">") || !strcmp(name, "gt") || !strcmp(name, "greaterthan")) return fa > fb;
        if (!strcmp(name, ">=") || !strcmp(name, "ge")) return fa >= fb;
        if (!strcmp(name, "<") || !strcmp(name, "lt") || !strcmp(name, "lessthan")) return fa < fb;
        return fa <= fb;
    }
    if (!strcmp(name, ">") || !strcmp(name, "gt") || !strcmp(name, "greaterthan")) return jv_lt(x, b, a);
    if (!strcmp(name, ">=") || !strcmp(name, "ge")) return jv_lt(x, b, a) || jv_eq(x, a, b);
    if (!strcmp(name, "<") || !strcmp(name, "lt") || !strcmp(name, "lessthan")) return jv_lt(x, a, b);
    return jv_lt(x, a, b) || jv_eq(x, a, b);
}

static int is_iterable(jv v) {
    return v.kind == JV_STR || v.kind == JV_LIST || v.kind == JV_DICT || v.kind == JV_UNDEF || v.kind == JV_LOOP;
}

int jj_test(jj_ctx *x, const char *name, jv v, jv *args, const char **kw, size_t n) {
    if (!jj_has_test(name)) jj_unsup(x, "test '%s' is not supported", name);
    if (!strcmp(name, "defined")) return v.kind != JV_UNDEF;
    if (!strcmp(name, "undefined")) return v.kind == JV_UNDEF;
    if (!strcmp(name, "none")) return v.kind == JV_NONE;
    if (!strcmp(name, "boolean")) return v.kind == JV_BOOL;
    if (!strcmp(name, "true")) return v.kind == JV_BOOL && v.u.i;
    if (!strcmp(name, "false")) return v.kind == JV_BOOL && !v.u.i;
    if (!strcmp(name, "integer")) return v.kind == JV_INT;
    if (!strcmp(name, "float")) return v.kind == JV_FLOAT;
    if (!strcmp(name, "number")) return is_num(v);
    if (!strcmp(name, "string")) return v.kind == JV_STR;
    if (!strcmp(name, "mapping")) return v.kind == JV_DICT;
    if (!strcmp(name, "sequence"))
        return v.kind == JV_STR || v.kind == JV_DICT || v.kind == JV_UNDEF ||
               (v.kind == JV_LIST && (JL(v)->sub == JL_LIST || JL(v)->sub == JL_TUPLE || JL(v)->sub == JL_RANGE));
    if (!strcmp(name, "iterable")) return is_iterable(v);
    if (!strcmp(name, "callable"))
        return v.kind == JV_MACRO || v.kind == JV_FUNC || v.kind == JV_METHOD || v.kind == JV_UNDEF || v.kind == JV_LOOP;
    if (!strcmp(name, "escaped")) return v.kind == JV_STR && (v.flags & JVF_MARKUP);
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        jv s = soft_str(x, v);
        int r = case_state(JS(s), name[0] == 'u');
        jv_release(x, s);
        return r;
    }
    if (!strcmp(name, "odd") || !strcmp(name, "even")) {
        NOARGS(name);
        jv r = jj_binop(x, OP_MOD, v, jv_int(2));
        int odd = r.kind == JV_FLOAT ? r.u.f == 1.0 : r.u.i == 1;
        return name[0] == 'o' ? odd : (r.kind == JV_FLOAT ? r.u.f == 0.0 : r.u.i == 0);
    }
    if (!strcmp(name, "divisibleby")) {
        BIND(name, "num");
        if (!HAS(0)) jj_raise(x, "TypeError: test_divisibleby() missing 1 required positional argument: 'num'");
        jv r = jj_binop(x, OP_MOD, v, ARG(0));
        return r.kind == JV_FLOAT ? r.u.f == 0.0 : r.u.i == 0;
    }
    if (!strcmp(name, "filter") || !strcmp(name, "test")) {
        if (v.kind != JV_STR) return 0;
        return name[0] == 'f' ? jj_has_filter(JS(v)->s) : jj_has_test(JS(v)->s);
    }
    if (!strcmp(name, "sameas")) {
        BIND(name, "other");
        if (!HAS(0)) jj_raise(x, "TypeError: test_sameas() missing 1 required positional argument: 'other'");
        jv o = ARG(0);
        if (v.kind != o.kind) return 0;
        switch (v.kind) {
        case JV_NONE: return 1;
        case JV_BOOL: return v.u.i == o.u.i;
        case JV_INT: return v.u.i == o.u.i && v.u.i >= -5 && v.u.i <= 256; /* CPython's small ints */
        case JV_FLOAT: case JV_UNDEF: return 0;
        case JV_FUNC: return v.u.i == o.u.i;
        default: return v.u.p == o.u.p;
        }
    }
    if (!strcmp(name, "in")) {
        BIND(name, "seq");
        if (!HAS(0)) jj_raise(x, "TypeError: test_in() missing 1 required positional argument: 'seq'");
        jv seq = ARG(0);
        if (seq.kind == JV_STR) {
            if (v.kind != JV_STR) jj_raise(x, "TypeError: 'in <string>' requires string as left operand, not %s", jv_type_name(v));
            return find_bytes(JS(seq)->s, JS(seq)->len, JS(v)->s, JS(v)->len, 0) != NULL;
        }
        if (seq.kind == JV_DICT) return jv_hashable(v) && jd_find(seq, v) != NULL;
        jv items = jv_iterate(x, seq);
        int found = 0;
        for (size_t i = 0; i < JL(items)->n && !found; i++) found = jv_eq(x, JL(items)->v[i], v);
        jv_release(x, items);
        return found;
    }
    /* comparisons */
    BIND(name, "other");
    if (!HAS(0)) jj_raise(x, "TypeError: test '%s' needs an argument", name);
    return cmp_test(x, name, v, ARG(0));
}

/* ================================================================================================
 * Filters
 * ============================================================================================== */

static const char *const FILTERS[] = {
    "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
    "forceescape", "indent", "int", "join", "last", "length", "list", "lower", "items", "map", "min", "max",
    "reject", "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum",
    "title", "trim", "unique", "upper", "tojson", NULL};

int jj_has_filter(const char *name) { return in_list(FILTERS, name) != NULL; }

static jv html_escape(jj_ctx *x, jv v) {
    if (v.kind == JV_STR && (v.flags & JVF_MARKUP)) return jv_retain(v);
    jv s = soft_str(x, v);
    jsb b;
    jsb_init(x, &b);
    for (size_t i = 0; i < JS(s)->len; i++) {
        char c = JS(s)->s[i];
        switch (c) {
        case '&': jsb_put(x, &b, "&amp;", 5); break;
        case '<': jsb_put(x, &b, "&lt;", 4); break;
        case '>': jsb_put(x, &b, "&gt;", 4); break;
        case '"': jsb_put(x, &b, "&#34;", 5); break;
        case '\'': jsb_put(x, &b, "&#39;", 5); break;
        default: jsb_putc(x, &b, c);
        }
    }
    jv_release(x, s);
    jv r = jsb_take(x, &b);
    r.flags = JVF_MARKUP;
    return r;
}

/* ---- lazy filters -----------------------------------------------------------------------
   select/reject/selectattr/rejectattr/map/unique/items are Python generators: nothing runs until
   the result is iterated, and an exception surfaces only then (a template may never iterate
   it, or test only its truthiness, which is always true). They are computed here at once, but an
   exception is caught and kept in the iterator, to be raised when its items run out. */

typedef struct gen_args {
    jv v;
    jv *args;
    const char **kw;
    size_t n;
    int use_attr, select; /* select/reject */
} gen_args;
typedef void (*gen_fn)(jj_ctx *x, jv out, const gen_args *g);

static jv run_generator(jj_ctx *x, gen_fn fn, const gen_args *g) {
    jv out = jv_list(x, JL_LIST, 0);
    jmp_buf saved;
    memcpy(saved, x->jmp, sizeof saved);
    int depth = x->depth, macro_depth = x->macro_depth, line = x->line;
    jframe *frame = x->frame;
    jsb *o = x->out;
    if (setjmp(x->jmp) == 0) {
        fn(x, out, g);
        memcpy(x->jmp, saved, sizeof saved);
    } else {
        memcpy(x->jmp, saved, sizeof saved);
        x->depth = depth;
        x->macro_depth = macro_depth;
        x->line = line;
        x->frame = frame;
        x->out = o;
        if (x->hard || x->status != FM_ERR_INVALID_ARGUMENT) longjmp(x->jmp, 1);
        JL(out)->err = jv_cstr(x, x->msg);
        x->status = FM_OK;
        x->msg[0] = 0;
    }
    return make_iter(x, out);
}

static void gen_select(jj_ctx *x, jv out, const gen_args *g) {
    if (!jv_truthy(g->v)) return; /* "if value:" */
    jv *args = g->args;
    size_t n = g->n;
    for (size_t i = 0; i < n; i++)
        if (g->kw && g->kw[i]) jj_unsup(x, "keyword arguments to select/reject filters are not supported");
    size_t k = 0;
    jv attr = jv_none();
    if (g->use_attr) {
        if (n < 1) jj_raise(x, "FilterArgumentError: Missing parameter for attribute name");
        attr = args[k++];
    }
    const char *test = NULL;
    if (k < n) {
        if (args[k].kind != JV_STR) jj_raise(x, "TypeError: test name must be a string");
        test = JS(args[k])->s;
        k++;
        if (!jj_has_test(test)) jj_raise(x, "TemplateRuntimeError: No test named '%s'.", test);
    }
    jv items = jv_iterate(x, g->v);
    for (size_t i = 0; i < JL(items)->n; i++) {
        jv item = JL(items)->v[i];
        jv val = g->use_attr ? attr_get(x, item, attr, jv_undef(NULL, JVF_U_MISSING)) : jv_retain(item);
        int t = test ? jj_test(x, test, val, args + k, NULL, n - k) : jv_truthy(val);
        jv_release(x, val);
        if (t == g->select) jl_push(x, out, jv_retain(item));
    }
    jv_release(x, items);
}

static void gen_map(jj_ctx *x, jv out, const gen_args *g) {
    if (!jv_truthy(g->v)) return; /* "if value:" */
    jv *args = g->args;
    const char **kw = g->kw;
    size_t n = g->n;
    int npos = 0;
    for (size_t i = 0; i < n; i++) npos += !(kw && kw[i]);
    jv items = jv_iterate(x, g->v);
    if (npos == 0) {
        BIND("map", "attribute", "default");
        if (!HAS(0)) jj_raise(x, "FilterArgumentError: map requires a filter argument");
        for (size_t i = 0; i < JL(items)->n; i++) jl_push(x, out, attr_get(x, JL(items)->v[i], ARG(0), ARG(1)));
    } else {
        if (kw && kw[0]) jj_unsup(x, "map() with this argument form is not supported");
        if (args[0].kind != JV_STR) jj_raise(x, "TypeError: filter name must be a string");
        const char *fname = JS(args[0])->s;
        if (!jj_has_filter(fname)) jj_unsup(x, "filter '%s' is not supported", fname);
        for (size_t i = 0; i < JL(items)->n; i++)
            jl_push(x, out, jj_filter(x, fname, JL(items)->v[i], args + 1, kw ? kw + 1 : NULL, n - 1));
    }
    jv_release(x, items);
}

static void gen_unique(jj_ctx *x, jv out, const gen_args *g) {
    jv *args = g->args;
    const char **kw = g->kw;
    size_t n = g->n;
    BIND("unique", "case_sensitive", "attribute");
    int cs = HAS(0) && jv_truthy(ARG(0));
    jv items = jv_iterate(x, g->v);
    jv seen = jv_list(x, JL_LIST, 0);
    for (size_t i = 0; i < JL(items)->n; i++) {
        jv key = HAS(1) && ARG(1).kind != JV_NONE ? attr_get(x, JL(items)->v[i], ARG(1), jv_undef(NULL, JVF_U_MISSING))
                                                 : jv_retain(JL(items)->v[i]);
        if (!cs) {
            jv k2 = ignore_case(x, key);
            jv_release(x, key);
            key = k2;
        }
        if (!jv_hashable(key)) jj_raise(x, "TypeError: unhashable type: '%s'", jv_type_name(key));
        int dup = 0;
        for (size_t j = 0; j < JL(seen)->n && !dup; j++) dup = jv_eq(x, JL(seen)->v[j], key);
        if (dup) jv_release(x, key);
        else {
            jl_push(x, seen, key);
            jl_push(x, out, jv_retain(JL(items)->v[i]));
        }
    }
    jv_release(x, seen);
    jv_release(x, items);
}

static jv dict_view(jj_ctx *x, jv d, int sub);

static void gen_items(jj_ctx *x, jv out, const gen_args *g) {
    if (g->n) jj_raise(x, "TypeError: do_items() takes 1 positional argument but %zu were given", g->n + 1);
    if (g->v.kind == JV_UNDEF) return;
    if (g->v.kind != JV_DICT) jj_raise(x, "TypeError: Can only get item pairs from a mapping.");
    jv view = dict_view(x, g->v, JL_ITEMS);
    for (size_t i = 0; i < JL(view)->n; i++) jl_push(x, out, jv_retain(JL(view)->v[i]));
    jv_release(x, view);
}

static jv lazy(jj_ctx *x, gen_fn fn, jv v, jv *args, const char **kw, size_t n, int use_attr, int select) {
    gen_args g = {v, args, kw, n, use_attr, select};
    return run_generator(x, fn, &g);
}

static jv minmax(jj_ctx *x, jv seq, jv *args, const char **kw, size_t n, int want_max) {
    BIND(want_max ? "max" : "min", "case_sensitive", "attribute");
    int cs = HAS(0) && jv_truthy(ARG(0));
    jv items = jv_iterate(x, seq);
    jlist *l = JL(items);
    if (!l->n) {
        jv_release(x, items);
        return jv_undef("No aggregated item, sequence was empty.", JVF_U_MSG);
    }
    size_t best = 0;
    jv bestkey = jv_none();
    for (size_t i = 0; i < l->n; i++) {
        jv key = HAS(1) && ARG(1).kind != JV_NONE ? attr_get(x, l->v[i], ARG(1), jv_undef(NULL, JVF_U_MISSING)) : jv_retain(l->v[i]);
        if (!cs) {
            jv k2 = ignore_case(x, key);
            jv_release(x, key);
            key = k2;
        }
        if (i == 0 || (want_max ? jv_lt(x, bestkey, key) : jv_lt(x, key, bestkey))) {
            jv_release(x, bestkey);
            bestkey = key;
            best = i;
        } else jv_release(x, key);
    }
    jv_release(x, bestkey);
    jv r = jv_retain(l->v[best]);
    jv_release(x, items);
    return r;
}

static jv f_indent(jj_ctx *x, jv s, jv *args, const char **kw, size_t n) {
    BIND("indent", "width", "first", "blank");
    if (s.kind == JV_UNDEF) jj_undefined_error(x, s);
    if (s.kind != JV_STR) jj_raise(x, "TypeError: unsupported operand type(s) for +=: '%s' and 'str'", jv_type_name(s));
    jv ind;
    if (HAS(0) && ARG(0).kind == JV_STR) ind = jv_retain(ARG(0));
    else {
        int64_t w = HAS(0) ? want_int(x, ARG(0), "indent width") : 4;
        jv sp = jv_str(x, " ", 1);
        ind = jj_binop(x, OP_MUL, sp, jv_int(w < 0 ? 0 : w));
        jv_release(x, sp);
    }
    int first = HAS(1) && jv_truthy(ARG(1)), blank = HAS(2) && jv_truthy(ARG(2));
    /* s += "\n"; lines = s.splitlines() */
    jsb tmp;
    jsb_init(x, &tmp);
    jsb_put(x, &tmp, JS(s)->s, JS(s)->len);
    jsb_putc(x, &tmp, '\n');
    jv s2 = jsb_take(x, &tmp);
    jv lines = do_splitlines(x, s2, 0);
    jv_release(x, s2);
    jsb b;
    jsb_init(x, &b);
    const jstr *is = JS(ind);
    jlist *L = JL(lines);
    if (blank) {
        for (size_t i = 0; i < L->n; i++) {
            if (i) {
                jsb_putc(x, &b, '\n');
                jsb_put(x, &b, is->s, is->len);
            }
            jsb_put(x, &b, JS(L->v[i])->s, JS(L->v[i])->len);
        }
    } else {
        for (size_t i = 0; i < L->n; i++) {
            const jstr *ln = JS(L->v[i]);
            if (i) {
                jsb_putc(x, &b, '\n');
                if (ln->len) jsb_put(x, &b, is->s, is->len);
            }
            jsb_put(x, &b, ln->s, ln->len);
        }
    }
    jv body = jsb_take(x, &b);
    jv r;
    if (first) {
        jsb f;
        jsb_init(x, &f);
        jsb_put(x, &f, is->s, is->len);
        jsb_put(x, &f, JS(body)->s, JS(body)->len);
        r = jsb_take(x, &f);
        jv_release(x, body);
    } else r = body;
    jv_release(x, lines);
    jv_release(x, ind);
    return with_flags(r, s);
}

static jv f_tojson(jj_ctx *x, jv v, jv *args, const char **kw, size_t n) {
    BIND("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
    int ensure_ascii = HAS(0) && jv_truthy(ARG(0));
    int has_indent = HAS(1) && ARG(1).kind != JV_NONE;
    char *indent = NULL;
    if (has_indent) {
        jv iv = ARG(1);
        if (iv.kind == JV_STR) {
            indent = jj_alloc(x, JS(iv)->len + 1, JT_RAW);
            memcpy(indent, JS(iv)->s, JS(iv)->len + 1);
        } else {
            int64_t w = want_int(x, iv, "tojson indent");
            if (w < 0) w = 0;
            if (w > 4096) jj_unsup(x, "tojson indent above 4096 is not supported");
            indent = jj_alloc(x, (size_t)w + 1, JT_RAW);
            memset(indent, ' ', (size_t)w);
            indent[w] = 0;
        }
    }
    char *item_sep = NULL, *key_sep = NULL;
    if (HAS(2) && ARG(2).kind != JV_NONE) {
        jv sv = ARG(2);
        if (sv.kind != JV_LIST || JL(sv)->n != 2 || JL(sv)->v[0].kind != JV_STR || JL(sv)->v[1].kind != JV_STR)
            jj_raise(x, "ValueError: tojson separators must be a pair of strings");
        item_sep = JS(JL(sv)->v[0])->s;
        key_sep = JS(JL(sv)->v[1])->s;
    }
    jsb b;
    jsb_init(x, &b);
    jv_write_json(x, &b, v, ensure_ascii, indent, has_indent, item_sep, key_sep, HAS(3) && jv_truthy(ARG(3)));
    if (indent) jj_free(x, indent);
    return jsb_take(x, &b);
}

static jv f_sort(jj_ctx *x, jv v, jv *args, const char **kw, size_t n, int dictsort) {
    jv items;
    int reverse, cs;
    jv attr = jv_undef(NULL, JVF_U_MISSING);
    int by_value = 0;
    if (dictsort) {
        BIND("dictsort", "case_sensitive", "by", "reverse");
        if (v.kind != JV_DICT) jj_raise(x, "AttributeError: '%s' object has no attribute 'items'", jv_type_name(v));
        cs = HAS(0) && jv_truthy(ARG(0));
        if (HAS(1)) {
            const jstr *by = want_str(x, ARG(1), "dictsort by");
            if (!strcmp(by->s, "value")) by_value = 1;
            else if (strcmp(by->s, "key")) jj_raise(x, "FilterArgumentError: You can only sort by either \"key\" or \"value\"");
        }
        reverse = HAS(2) && jv_truthy(ARG(2));
        items = dict_view(x, v, JL_ITEMS);
        JL(items)->sub = JL_LIST;
    } else {
        BIND("sort", "reverse", "case_sensitive", "attribute");
        reverse = HAS(0) && jv_truthy(ARG(0));
        cs = HAS(1) && jv_truthy(ARG(1));
        if (HAS(2) && ARG(2).kind != JV_NONE) {
            attr = ARG(2);
            if (attr.kind == JV_STR && memchr(JS(attr)->s, ',', JS(attr)->len))
                jj_unsup(x, "sort by several attributes is not supported");
        }
        items = jv_iterate(x, v);
    }
    jlist *l = JL(items);
    jv *keys = jj_alloc(x, (l->n + 1) * sizeof(jv), JT_RAW);
    size_t *idx = jj_alloc(x, (l->n + 1) * sizeof(size_t), JT_RAW);
    for (size_t i = 0; i < l->n; i++) {
        jv k;
        if (dictsort) k = jv_retain(JL(l->v[i])->v[by_value]);
        else if (!jv_missing(attr)) k = attr_get(x, l->v[i], attr, jv_undef(NULL, JVF_U_MISSING));
        else k = jv_retain(l->v[i]);
        if (!cs) {
            jv k2 = ignore_case(x, k);
            jv_release(x, k);
            k = k2;
        }
        keys[i] = k;
        idx[i] = i;
    }
    sort_idx(x, keys, idx, l->n, reverse);
    jv out = jv_list(x, JL_LIST, l->n);
    for (size_t i = 0; i < l->n; i++) jl_push(x, out, jv_retain(l->v[idx[i]]));
    for (size_t i = 0; i < l->n; i++) jv_release(x, keys[i]);
    jj_free(x, keys);
    jj_free(x, idx);
    jv_release(x, items);
    return out;
}

static jv f_round(jj_ctx *x, jv v, jv *args, const char **kw, size_t n) {
    BIND("round", "precision", "method");
    int64_t prec = HAS(0) ? want_int(x, ARG(0), "round precision") : 0;
    const char *method = HAS(1) ? want_str(x, ARG(1), "round method")->s : "common";
    if (strcmp(method, "common") && strcmp(method, "ceil") && strcmp(method, "floor"))
        jj_raise(x, "FilterArgumentError: method must be common, ceil or floor");
    if (v.kind == JV_UNDEF) jj_undefined_error(x, v);
    if (!is_num(v)) jj_raise(x, "TypeError: type %s doesn't define __round__ method", jv_type_name(v));
    if (prec < -300 || prec > 300) jj_unsup(x, "round precision out of range");
    double f = v.kind == JV_FLOAT ? v.u.f : (double)v.u.i;
    if (strcmp(method, "common")) {
        double p = pow(10.0, (double)prec);
        double r = method[0] == 'c' ? ceil(f * p) : floor(f * p);
        return jv_float(r / p);
    }
    if (v.kind != JV_FLOAT) {
        if (prec >= 0) return jv_int(v.u.i);
        jj_unsup(x, "round() of an int with negative precision is not supported");
    }
    if (!isfinite(f)) return jv_float(f);
    if (prec == 0) return jv_float(nearbyint(f));
    if (prec > 0) {
        char buf[512];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, f);
        return jv_float(strtod(buf, NULL));
    }
    double p = pow(10.0, (double)-prec);
    return jv_float(nearbyint(f / p) * p);
}

jv jj_filter(jj_ctx *x, const char *name, jv v, jv *args, const char **kw, size_t n) {
    if (!jj_has_filter(name)) jj_unsup(x, "filter '%s' is not supported", name);
    switch (name[0]) {
    case 'a':
        if (!strcmp(name, "abs")) {
            NOARGS("abs");
            if (v.kind == JV_FLOAT) return jv_float(fabs(v.u.f));
            if (v.kind == JV_INT || v.kind == JV_BOOL) {
                if (v.u.i == INT64_MIN) jj_unsup(x, "integer overflow");
                return jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
            }
            if (v.kind == JV_UNDEF) jj_undefined_error(x, v);
            jj_raise(x, "TypeError: bad operand type for abs(): '%s'", jv_type_name(v));
        }
        if (!strcmp(name, "attr")) {
            BIND("attr", "name");
            const jstr *a = want_str(x, ARG(0), "attr");
            if (v.kind == JV_UNDEF) jj_undefined_error(x, v);
            if (v.kind == JV_DICT) {
                const char *m = jj_method_name(v, a->s);
                return m ? jv_method(x, v, m) : jv_undef("attribute", JVF_U_ATTR);
            }
            jv r = jj_getattr(x, v, a->s);
            if (r.kind == JV_UNDEF) r = jv_undef("attribute", JVF_U_ATTR);
            return r;
        }
        break;
    case 'c':
        if (!strcmp(name, "capitalize")) {
            NOARGS("capitalize");
            jv s = soft_str(x, v);
            jv r = change_case(x, s, CASE_CAPITALIZE);
            jv_release(x, s);
            return r;
        }
        if (!strcmp(name, "center")) {
            BIND("center", "width");
            jv s = soft_str(x, v);
            jv r = pad(x, s, HAS(0) ? want_int(x, ARG(0), "center") : 80, jv_undef(NULL, JVF_U_MISSING), 2);
            jv_release(x, s);
            return r;
        }
        if (!strcmp(name, "count")) {
            NOARGS("count");
            return jv_int((int64_t)jv_len(x, v));
        }
        break;
    case 'd':
        if (!strcmp(name, "d") || !strcmp(name, "default")) {
            BIND("default", "default_value", "boolean");
            int boolean = HAS(1) && jv_truthy(ARG(1));
            if (v.kind == JV_UNDEF || (boolean && !jv_truthy(v)))
                return HAS(0) ? jv_retain(ARG(0)) : jv_str(x, "", 0);
            return jv_retain(v);
        }
        if (!strcmp(name, "dictsort")) return f_sort(x, v, args, kw, n, 1);
        break;
    case 'e':
        if (!strcmp(name, "e") || !strcmp(name, "escape")) {
            NOARGS("escape");
            return html_escape(x, v);
        }
        break;
    case 'f':
        if (!strcmp(name, "first")) {
            NOARGS("first");
            if (v.kind == JV_LIST && JL(v)->sub == JL_ITER) {
                jlist *l = JL(v);
                if (l->pos < l->n) return jv_retain(l->v[l->pos++]);
                jj_iter_exhausted(x, l);
                return jv_undef("No first item, sequence was empty.", JVF_U_MSG);
            }
            jv items = jv_iterate(x, v);
            jv r = JL(items)->n ? jv_retain(JL(items)->v[0]) : jv_undef("No first item, sequence was empty.", JVF_U_MSG);
            jv_release(x, items);
            return r;
        }
        if (!strcmp(name, "float")) {
            BIND("float", "default");
            jv dflt = HAS(0) ? ARG(0) : jv_float(0.0);
            double d;
            if (v.kind == JV_UNDEF) jj_undefined_error(x, v); /* Undefined.__float__ raises */
            if (is_num(v)) return jv_float(v.kind == JV_FLOAT ? v.u.f : (double)v.u.i);
            if (v.kind == JV_STR && parse_py_float(JS(v), &d)) return jv_float(d);
            return jv_retain(dflt);
        }
        if (!strcmp(name, "forceescape")) {
            NOARGS("forceescape");
            jv s = soft_str(x, v);
            s.flags = 0;
            jv r = html_escape(x, s);
            jv_release(x, s);
            return r;
        }
        break;
    case 'i':
        if (!strcmp(name, "indent")) return f_indent(x, v, args, kw, n);
        if (!strcmp(name, "int")) {
            BIND("int", "default", "base");
            jv dflt = HAS(0) ? ARG(0) : jv_int(0);
            int64_t base = HAS(1) ? want_int(x, ARG(1), "int base") : 10;
            if (v.kind == JV_UNDEF) jj_undefined_error(x, v); /* Undefined.__int__ raises */
            if (v.kind == JV_INT || v.kind == JV_BOOL) return jv_int(v.u.i);
            if (v.kind == JV_FLOAT) {
                if (v.u.f != v.u.f) return jv_retain(dflt);
                if (!isfinite(v.u.f)) jj_raise(x, "OverflowError: cannot convert float infinity to integer");
                if (fabs(v.u.f) >= 9.2e18) jj_unsup(x, "integer overflow");
                return jv_int((int64_t)v.u.f);
            }
            if (v.kind == JV_STR) {
                int64_t r;
                int ok = parse_py_int(JS(v), base, &r);
                if (ok < 0) jj_unsup(x, "integer overflow");
                if (ok) return jv_int(r);
                double d;
                if (parse_py_float(JS(v), &d)) {
                    if (d != d) return jv_retain(dflt);
                    if (!isfinite(d)) jj_raise(x, "OverflowError: cannot convert float infinity to integer");
                    if (fabs(d) >= 9.2e18) jj_unsup(x, "integer overflow");
                    return jv_int((int64_t)d);
                }
            }
            return jv_retain(dflt);
        }
        if (!strcmp(name, "items")) return lazy(x, gen_items, v, args, kw, n, 0, 0);
        break;
    case 'j':
        if (!strcmp(name, "join")) {
            BIND("join", "d", "attribute");
            jv sep = HAS(0) ? soft_str(x, ARG(0)) : jv_str(x, "", 0);
            jv items = jv_iterate(x, v);
            jsb b;
            jsb_init(x, &b);
            for (size_t i = 0; i < JL(items)->n; i++) {
                if (i) jsb_put(x, &b, JS(sep)->s, JS(sep)->len);
                if (HAS(1) && ARG(1).kind != JV_NONE) {
                    jv a = attr_get(x, JL(items)->v[i], ARG(1), jv_undef(NULL, JVF_U_MISSING));
                    jv_write_str(x, &b, a);
                    jv_release(x, a);
                } else jv_write_str(x, &b, JL(items)->v[i]);
            }
            jv_release(x, items);
            jv_release(x, sep);
            return jsb_take(x, &b);
        }
        break;
    case 'l':
        if (!strcmp(name, "last")) {
            NOARGS("last");
            if (v.kind == JV_LIST && JL(v)->sub == JL_ITER) jj_raise(x, "TypeError: 'generator' object is not reversible");
            if (v.kind != JV_STR && v.kind != JV_LIST && v.kind != JV_DICT && v.kind != JV_UNDEF)
                jj_raise(x, "TypeError: '%s' object is not reversible", jv_type_name(v));
            jv items = jv_iterate(x, v);
            jv r = JL(items)->n ? jv_retain(JL(items)->v[JL(items)->n - 1]) : jv_undef("No last item, sequence was empty.", JVF_U_MSG);
            jv_release(x, items);
            return r;
        }
        if (!strcmp(name, "length")) {
            NOARGS("length");
            return jv_int((int64_t)jv_len(x, v));
        }
        if (!strcmp(name, "list")) {
            NOARGS("list");
            return jv_iterate(x, v);
        }
        if (!strcmp(name, "lower")) {
            NOARGS("lower");
            jv s = soft_str(x, v);
            jv r = change_case(x, s, CASE_LOWER);
            jv_release(x, s);
            return r;
        }
        break;
    case 'm':
        if (!strcmp(name, "map")) return lazy(x, gen_map, v, args, kw, n, 0, 0);
        if (!strcmp(name, "min")) return minmax(x, v, args, kw, n, 0);
        if (!strcmp(name, "max")) return minmax(x, v, args, kw, n, 1);
        break;
    case 'r':
        if (!strcmp(name, "reject")) return lazy(x, gen_select, v, args, kw, n, 0, 0);
        if (!strcmp(name, "rejectattr")) return lazy(x, gen_select, v, args, kw, n, 1, 0);
        if (!strcmp(name, "replace")) {
            BIND("replace", "old", "new", "count");
            if (!HAS(0) || !HAS(1)) jj_raise(x, "TypeError: do_replace() missing required arguments 'old' and 'new'");
            jv s = soft_str(x, v), o = soft_str(x, ARG(0)), nw = soft_str(x, ARG(1));
            int64_t count = HAS(2) && ARG(2).kind != JV_NONE ? want_int(x, ARG(2), "replace count") : -1;
            s.flags = 0;
            jv r = do_replace_str(x, s, JS(o), JS(nw), count);
            jv_release(x, s);
            jv_release(x, o);
            jv_release(x, nw);
            return r;
        }
        if (!strcmp(name, "reverse")) {
            NOARGS("reverse");
            if (v.kind == JV_STR) {
                size_t nc;
                uint32_t *cp = to_cps(x, JS(v)->s, JS(v)->len, &nc);
                for (size_t i = 0; i < nc / 2; i++) {
                    uint32_t t = cp[i];
                    cp[i] = cp[nc - 1 - i];
                    cp[nc - 1 - i] = t;
                }
                jv r = with_flags(from_cps(x, cp, nc), v);
                jj_free(x, cp);
                return r;
            }
            int was_iter = v.kind == JV_LIST && JL(v)->sub == JL_ITER;
            if (v.kind == JV_LIST && (JL(v)->sub == JL_ITEMS || JL(v)->sub == JL_KEYS || JL(v)->sub == JL_VALUES))
                was_iter = 0;
            jv items = jv_iterate(x, v);
            jlist *l = JL(items);
            for (size_t i = 0; i < l->n / 2; i++) {
                jv t = l->v[i];
                l->v[i] = l->v[l->n - 1 - i];
                l->v[l->n - 1 - i] = t;
            }
            return was_iter ? items : make_iter(x, items);
        }
        if (!strcmp(name, "round")) return f_round(x, v, args, kw, n);
        break;
    case 's':
        if (!strcmp(name, "safe")) {
            NOARGS("safe");
            jv s = soft_str(x, v);
            if (s.flags & JVF_MARKUP) return s;
            jv r = jv_str(x, JS(s)->s, JS(s)->len);
            jv_release(x, s);
            r.flags = JVF_MARKUP;
            return r;
        }
        if (!strcmp(name, "select")) return lazy(x, gen_select, v, args, kw, n, 0, 1);
        if (!strcmp(name, "selectattr")) return lazy(x, gen_select, v, args, kw, n, 1, 1);
        if (!strcmp(name, "sort")) return f_sort(x, v, args, kw, n, 0);
        if (!strcmp(name, "string")) {
            NOARGS("string");
            return soft_str(x, v);
        }
        if (!strcmp(name, "sum")) {
            BIND("sum", "attribute", "start");
            jv acc = HAS(1) ? jv_retain(ARG(1)) : jv_int(0);
            if (acc.kind == JV_STR) jj_raise(x, "TypeError: sum() can't sum strings [use ''.join(seq) instead]");
            jv items = jv_iterate(x, v);
            for (size_t i = 0; i < JL(items)->n; i++) {
                jv it = HAS(0) && ARG(0).kind != JV_NONE ? attr_get(x, JL(items)->v[i], ARG(0), jv_undef(NULL, JVF_U_MISSING))
                                                        : jv_retain(JL(items)->v[i]);
                jv next = jj_binop(x, OP_ADD, acc, it);
                jv_release(x, it);
                jv_release(x, acc);
                acc = next;
            }
            jv_release(x, items);
            return acc;
        }
        break;
    case 't':
        if (!strcmp(name, "title")) {
            NOARGS("title");
            jv s = soft_str(x, v);
            jv r = change_case(x, s, CASE_JTITLE);
            jv_release(x, s);
            return r;
        }
        if (!strcmp(name, "trim")) {
            BIND("trim", "chars");
            jv s = soft_str(x, v);
            jv r = do_strip(x, s, ARG(0), 3);
            jv_release(x, s);
            return r;
        }
        if (!strcmp(name, "tojson")) return f_tojson(x, v, args, kw, n);
        break;
    case 'u':
        if (!strcmp(name, "upper")) {
            NOARGS("upper");
            jv s = soft_str(x, v);
            jv r = change_case(x, s, CASE_UPPER);
            jv_release(x, s);
            return r;
        }
        if (!strcmp(name, "unique")) return lazy(x, gen_unique, v, args, kw, n, 0, 0);
        break;
    default: break;
    }
    jj_unsup(x, "filter '%s' is not supported", name);
}

/* ================================================================================================
 * Global functions
 * ============================================================================================== */

static const char *const FUNCS[] = {"range", "namespace", "dict", "raise_exception", "strftime_now", "lipsum",
                                    "cycler", "joiner", NULL};

int jj_func_id(const char *name) {
    for (int i = 0; FUNCS[i]; i++)
        if (!strcmp(FUNCS[i], name)) return i;
    return -1;
}

static jv make_mapping(jj_ctx *x, int kind, jv *args, const char **kw, size_t n, const char *what) {
    jv d = jv_dict(x, kind);
    size_t npos = 0;
    for (size_t i = 0; i < n; i++) {
        if (kw && kw[i]) continue;
        if (++npos > 1) jj_raise(x, "TypeError: %s expected at most 1 positional argument", what);
        jv a = args[i];
        if (a.kind == JV_DICT || a.kind == JV_NS) {
            for (size_t k = 0; k < JD(a)->n; k++) jd_set(x, d, jv_retain(JD(a)->kv[2 * k]), jv_retain(JD(a)->kv[2 * k + 1]));
        } else {
            jv items = jv_iterate(x, a);
            for (size_t k = 0; k < JL(items)->n; k++) {
                jv pair = jv_iterate(x, JL(items)->v[k]);
                if (JL(pair)->n != 2)
                    jj_raise(x, "ValueError: dictionary update sequence element #%zu has length %zu; 2 is required", k, JL(pair)->n);
                if (!jv_hashable(JL(pair)->v[0])) jj_raise(x, "TypeError: unhashable type: '%s'", jv_type_name(JL(pair)->v[0]));
                jd_set(x, d, jv_retain(JL(pair)->v[0]), jv_retain(JL(pair)->v[1]));
                jv_release(x, pair);
            }
            jv_release(x, items);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (kw && kw[i]) jd_set(x, d, jv_cstr(x, kw[i]), jv_retain(args[i]));
    return d;
}

jv jj_call_func(jj_ctx *x, int fn, jv *args, const char **kw, size_t n) {
    switch (fn) {
    case JF_RANGE: {
        for (size_t i = 0; i < n; i++)
            if (kw && kw[i]) jj_raise(x, "TypeError: range() takes no keyword arguments");
        if (n < 1 || n > 3) jj_raise(x, "TypeError: range expected 1 to 3 arguments, got %zu", n);
        int64_t start = 0, stop, step = 1;
        if (n == 1) stop = want_int(x, args[0], "range");
        else {
            start = want_int(x, args[0], "range");
            stop = want_int(x, args[1], "range");
            if (n == 3) step = want_int(x, args[2], "range");
        }
        if (step == 0) jj_raise(x, "ValueError: range() arg 3 must not be zero");
        double len = 0;
        if (step > 0 && stop > start) len = ceil(((double)stop - (double)start) / (double)step);
        if (step < 0 && stop < start) len = ceil(((double)start - (double)stop) / -(double)step);
        if (len > JJ_MAX_RANGE)
            jj_raise(x, "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", JJ_MAX_RANGE);
        jv out = jv_list(x, JL_RANGE, (size_t)len);
        for (int64_t i = 0; i < (int64_t)len; i++) jl_push(x, out, jv_int(start + i * step));
        JL(out)->range[0] = start;
        JL(out)->range[1] = stop;
        JL(out)->range[2] = step;
        return out;
    }
    case JF_NAMESPACE: return make_mapping(x, JV_NS, args, kw, n, "namespace");
    case JF_DICT: return make_mapping(x, JV_DICT, args, kw, n, "dict");
    case JF_RAISE: {
        jsb b;
        jsb_init(x, &b);
        if (n >= 1) jv_write_str(x, &b, args[0]);
        else jj_raise(x, "TypeError: raise_exception() missing 1 required positional argument: 'message'");
        x->status = FM_ERR_INVALID_ARGUMENT;
        snprintf(x->msg, sizeof x->msg, "%s", b.p ? b.p : "");
        longjmp(x->jmp, 1);
    }
    case JF_STRFTIME: {
        if (n != 1 || (kw && kw[0])) jj_raise(x, "TypeError: strftime_now() takes 1 positional argument");
        const jstr *f = want_str(x, args[0], "strftime_now");
        time_t now = time(NULL);
        struct tm tm;
        if (!localtime_r(&now, &tm)) jj_raise(x, "OSError: localtime failed");
        if (f->len == 0) return jv_str(x, "", 0);
        size_t cap = 256 + f->len * 4;
        for (int attempt = 0; attempt < 6; attempt++, cap *= 4) {
            char *buf = jj_alloc(x, cap, JT_RAW);
            size_t k = strftime(buf, cap, f->s, &tm);
            if (k > 0) {
                jv r = jv_str(x, buf, k);
                jj_free(x, buf);
                return r;
            }
            jj_free(x, buf);
        }
        return jv_str(x, "", 0);
    }
    default: jj_unsup(x, "the global function '%s' is not supported", FUNCS[fn]);
    }
}
