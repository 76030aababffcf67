/* jinja_unicode.c - UTF-8 decoding/encoding and the Unicode data behind Python's str methods:
   per-character properties (isspace, isprintable, cased, case-ignorable, ...) and full case
   mappings (lower/upper/title/casefold, possibly several code points), looked up in tables
   generated from Python itself (jinja_unicode_tables.h). */
#include "jinja.h"

#include "jinja_unicode_tables.h"

uint32_t jj_utf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s;
    size_t p = *i;
    unsigned c = u[p];
    if (c < 0x80) {
        *i = p + 1;
        return c;
    }
    int len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
    else {
        *i = p + 1;
        return 0xfffd;
    }
    if (p + (size_t)len > n) {
        *i = p + 1;
        return 0xfffd;
    }
    for (int k = 1; k < len; k++) {
        unsigned d = u[p + (size_t)k];
        if ((d & 0xc0) != 0x80) {
            *i = p + 1;
            return 0xfffd;
        }
        cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        *i = p + 1;
        return 0xfffd;
    }
    *i = p + (size_t)len;
    return cp;
}

size_t jj_utf8_len(const char *s, size_t n) {
    size_t i = 0, k = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) i++;
        else jj_utf8_next(s, n, &i);
        k++;
    }
    return k;
}

size_t jj_utf8_offset(const char *s, size_t n, size_t cp) {
    size_t i = 0, k = 0;
    while (i < n && k < cp) {
        jj_utf8_next(s, n, &i);
        k++;
    }
    return i;
}

int jj_utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

unsigned jj_uprops(uint32_t cp) {
    if (cp > 0x10ffff) return 0;
    size_t lo = 0, hi = JJ_PROP_RUNS; /* last run starting <= cp */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (jj_prop_start[mid] <= cp) lo = mid;
        else hi = mid;
    }
    return jj_prop_flags[lo];
}

int jj_is_space(uint32_t c) {
    if (c < 0x80) return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
    return (jj_uprops(c) & JU_SPACE) != 0;
}

int jj_is_printable(uint32_t c) {
    if (c < 0x80) return c >= 0x20 && c < 0x7f;
    return (jj_uprops(c) & JU_PRINTABLE) != 0;
}

int jj_is_cased(uint32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    return (jj_uprops(c) & JU_CASED) != 0;
}

int jj_case(uint32_t cp, int which, uint32_t out[3]) {
    if (cp < 0x80) {
        uint32_t r = cp;
        if (which == JC_UPPER || which == JC_TITLE) {
            if (cp >= 'a' && cp <= 'z') r = cp - 32;
        } else if (cp >= 'A' && cp <= 'Z') r = cp + 32;
        out[0] = r;
        return 1;
    }
    size_t lo = 0, hi = JJ_CASE_N;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (jj_case_cp[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < JJ_CASE_N && jj_case_cp[lo] == cp) {
        uint16_t off = jj_case_map[lo][which];
        if (off != 0xffff) {
            int n = (int)jj_case_pool[off];
            for (int i = 0; i < n && i < 3; i++) out[i] = jj_case_pool[off + 1 + (size_t)i];
            return n < 3 ? n : 3;
        }
    }
    out[0] = cp;
    return 1;
}

const char *jj_unicode_version(void) { return JJ_UNICODE_VERSION; }
