/* tok_util.c - buffers, an arena, UTF-8 helpers, Unicode character classes, the GPT-2 byte alphabet,
   a string -> id hash map and JSON field helpers, shared by the tokenizer files. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "error.h"
#include "tokenizer.h"

/* ---- growable buffers ---------------------------------------------------------------------------- */

int fm_buf_reserve(fm_buf *b, size_t extra) {
    if (extra > SIZE_MAX / 2 - b->n) return 0;
    size_t need = b->n + extra + 1; /* room for a terminating NUL */
    if (need <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return 0;
    b->p = p;
    b->cap = cap;
    return 1;
}

int fm_buf_append(fm_buf *b, const void *s, size_t n) {
    if (!fm_buf_reserve(b, n)) return 0;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 1;
}

void fm_buf_free(fm_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

int fm_i32vec_push(fm_i32vec *v, int32_t x) { return fm_i32vec_append(v, &x, 1); }

int fm_i32vec_append(fm_i32vec *v, const int32_t *x, size_t n) {
    if (v->n + n > v->cap) {
        size_t cap = v->cap ? v->cap : 16;
        while (cap < v->n + n) {
            if (cap > SIZE_MAX / 8) return 0;
            cap *= 2;
        }
        int32_t *p = realloc(v->v, cap * sizeof *p);
        if (!p) return 0;
        v->v = p;
        v->cap = cap;
    }
    if (n) memcpy(v->v + v->n, x, n * sizeof *x);
    v->n += n;
    return 1;
}

void fm_i32vec_free(fm_i32vec *v) {
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
}

int fm_spanvec_push(fm_spanvec *v, size_t start, size_t end) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        fm_span *p = realloc(v->v, cap * sizeof *p);
        if (!p) return 0;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n].start = start;
    v->v[v->n].end = end;
    v->n++;
    return 1;
}

int fm_piecevec_push(fm_piecevec *v, const char *p, size_t len, int at_start) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        fm_piece *q = realloc(v->v, cap * sizeof *q);
        if (!q) return 0;
        v->v = q;
        v->cap = cap;
    }
    v->v[v->n].p = p;
    v->v[v->n].len = len;
    v->v[v->n].at_start = at_start;
    v->n++;
    return 1;
}

/* ---- arena ------------------------------------------------------------------------------------------ */

struct fm_arena_block {
    fm_arena_block *next;
    size_t used, cap;
    max_align_t data[];
};

void *fm_arena_alloc(fm_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    fm_arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = 1 << 16;
        if (b && b->cap > cap) cap = b->cap * 2 > (1u << 26) ? b->cap : b->cap * 2;
        if (cap < n) cap = n;
        fm_arena_block *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->next = b;
        nb->used = 0;
        nb->cap = cap;
        a->head = b = nb;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

void fm_arena_reset(fm_arena *a) {
    fm_arena_block *b = a->head;
    if (!b) return;
    /* keep the newest (largest) block */
    fm_arena_block *rest = b->next;
    while (rest) {
        fm_arena_block *nx = rest->next;
        free(rest);
        rest = nx;
    }
    b->next = NULL;
    b->used = 0;
}

void fm_arena_free(fm_arena *a) {
    fm_arena_block *b = a->head;
    while (b) {
        fm_arena_block *nx = b->next;
        free(b);
        b = nx;
    }
    a->head = NULL;
}

/* ---- UTF-8 ----------------------------------------------------------------------------------------- */

/* Length of the valid sequence at s[i] (1..4), or 0 if invalid; *maximal gets the length of the
   maximal valid prefix of a sequence (at least 1) when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t i, size_t *maximal) {
    unsigned char c = s[i];
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *maximal = 1;
        return 0;
    }
    size_t k = 1;
    while (k < need) {
        if (i + k >= n) break;
        unsigned char d = s[i + k];
        if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) break;
        k++;
    }
    if (k == need) return need;
    *maximal = k;
    return 0;
}

size_t fm_utf8_valid_prefix(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t mx, k = utf8_seq(s, n, i, &mx);
        if (!k) return i;
        i += k;
    }
    return n;
}

size_t fm_utf8_put(uint32_t c, char *o) {
    unsigned char *out = (unsigned char *)o;
    if (c < 0x80) {
        out[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (unsigned char)(0xC0 | (c >> 6));
        out[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (c >> 12));
        out[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (c >> 18));
    out[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

uint32_t fm_utf8_prev(const char *s, size_t end, size_t *start) {
    size_t i = end;
    do {
        i--;
    } while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    *start = i;
    size_t j = i;
    return fm_utf8_next(s, &j);
}

int fm_utf8_lossy_append(fm_buf *out, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    if (!fm_buf_reserve(out, n + 16)) return 0;
    size_t i = 0, run = 0; /* run: start of the pending valid stretch */
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t mx, k = utf8_seq(s, n, i, &mx);
        if (k) {
            i += k;
            continue;
        }
        if (!fm_buf_append(out, s + run, i - run) || !fm_buf_append(out, "\xEF\xBF\xBD", 3)) return 0;
        i += mx;
        run = i;
    }
    return fm_buf_append(out, s + run, n - run);
}

/* ---- character classes --------------------------------------------------------------------------- */

int fm_uc_is_whitespace(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
    switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return 1;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

int fm_uc_is_numeric(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    return fm_uc_numeric_table(c);
}

int fm_uc_is_punct(uint32_t c) {
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
               (c >= 0x7B && c <= 0x7E);
    return fm_uc_punct_table(c);
}

int fm_uc_is_word(uint32_t c) {
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    return fm_uc_word_table(c);
}

int fm_uc_is_mark(uint32_t c) { return c >= 0x300 && fm_uc_mark_table(c); }

int fm_uc_is_mark_nonspacing(uint32_t c) { return c >= 0x300 && fm_uc_mn_table(c); }

int fm_uc_is_other(uint32_t c) { return fm_uc_bert_removed_table(c); }

int fm_uc_is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* ---- GPT-2 byte alphabet --------------------------------------------------------------------------- */

/* Bytes ! .. ~, 0xA1 .. 0xAC and 0xAE .. 0xFF map to themselves; the other 68 bytes map, in
   increasing order, to U+0100 .. U+0143 (GPT-2's bytes_to_unicode). */
const uint16_t fm_bytelevel_cp[256] = {
    0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109, 0x10A, 0x10B, 0x10C, 0x10D, 0x10E, 0x10F,
    0x110, 0x111, 0x112, 0x113, 0x114, 0x115, 0x116, 0x117, 0x118, 0x119, 0x11A, 0x11B, 0x11C, 0x11D, 0x11E, 0x11F,
    0x120, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F,
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F,
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
    0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F,
    0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F,
    0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x7B, 0x7C, 0x7D, 0x7E, 0x121,
    0x122, 0x123, 0x124, 0x125, 0x126, 0x127, 0x128, 0x129, 0x12A, 0x12B, 0x12C, 0x12D, 0x12E, 0x12F, 0x130, 0x131,
    0x132, 0x133, 0x134, 0x135, 0x136, 0x137, 0x138, 0x139, 0x13A, 0x13B, 0x13C, 0x13D, 0x13E, 0x13F, 0x140, 0x141,
    0x142, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0x143, 0xAE, 0xAF,
    0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xBB, 0xBC, 0xBD, 0xBE, 0xBF,
    0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF,
    0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF,
    0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xEB, 0xEC, 0xED, 0xEE, 0xEF,
    0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF,
};

int fm_bytelevel_byte(uint32_t cp) {
    if (cp < 0x100) {
        if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || cp >= 0xAE) return (int)cp;
        return -1;
    }
    if (cp > 0x143) return -1;
    /* inverse of the table for U+0100..U+0143 */
    static const unsigned char inv[68] = {
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10,
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x7F,
        0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90,
        0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xAD};
    return inv[cp - 0x100];
}

/* ---- hashing and the string map -------------------------------------------------------------------- */

uint64_t fm_tok_hash(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w ^ ((uint64_t)n << 56)) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return h;
}

static int strmap_grow(fm_strmap *m) {
    size_t nslots = m->mask ? (m->mask + 1) * 2 : 1024;
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots) return 0;
    size_t mask = nslots - 1;
    for (size_t i = 0; i < m->n; i++) {
        size_t j = m->e[i].hash & mask;
        while (slots[j]) j = (j + 1) & mask;
        slots[j] = (uint32_t)(i + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->mask = mask;
    return 1;
}

static size_t strmap_find(const fm_strmap *m, const char *k, size_t n, uint64_t h) {
    size_t j = h & m->mask;
    while (m->slots[j]) {
        const fm_strmap_entry *e = &m->e[m->slots[j] - 1];
        if (e->hash == h && e->len == n && memcmp(m->blob.p + e->off, k, n) == 0) return j;
        j = (j + 1) & m->mask;
    }
    return j;
}

int fm_strmap_put(fm_strmap *m, const char *k, size_t n, int32_t val) {
    if (n > UINT32_MAX || m->n >= UINT32_MAX - 1) return 0;
    if ((m->n + 1) * 2 > (m->mask ? m->mask + 1 : 0) && !strmap_grow(m)) return 0;
    uint64_t h = fm_tok_hash(k, n);
    size_t j = strmap_find(m, k, n, h);
    if (m->slots[j]) {
        m->e[m->slots[j] - 1].val = val;
        return 1;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        fm_strmap_entry *e = realloc(m->e, cap * sizeof *e);
        if (!e) return 0;
        m->e = e;
        m->cap = cap;
    }
    size_t off = m->blob.n;
    if (!fm_buf_append(&m->blob, k, n) || !fm_buf_append(&m->blob, "", 1)) return 0; /* NUL after each key */
    fm_strmap_entry *e = &m->e[m->n];
    e->off = off;
    e->len = (uint32_t)n;
    e->val = val;
    e->hash = h;
    m->slots[j] = (uint32_t)(++m->n);
    return 1;
}

int32_t fm_strmap_get(const fm_strmap *m, const char *k, size_t n) {
    if (!m->mask) return -1;
    uint64_t h = fm_tok_hash(k, n);
    size_t j = strmap_find(m, k, n, h);
    return m->slots[j] ? m->e[m->slots[j] - 1].val : -1;
}

void fm_strmap_free(fm_strmap *m) {
    free(m->slots);
    free(m->e);
    fm_buf_free(&m->blob);
    memset(m, 0, sizeof *m);
}

/* ---- JSON helpers ------------------------------------------------------------------------------------ */

fm_status fm_json_bool(const cJSON *obj, const char *key, int dflt, int *out, const char *where) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return FM_OK;
    }
    if (!cJSON_IsBool(v)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: '%s' must be true or false", where, key);
    *out = cJSON_IsTrue(v);
    return FM_OK;
}

fm_status fm_json_string(const cJSON *obj, const char *key, const char **out, const char *where) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || !cJSON_IsString(v) || !v->valuestring)
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: '%s' must be a string", where, key);
    *out = v->valuestring;
    return FM_OK;
}

fm_status fm_json_char(const cJSON *obj, const char *key, uint32_t *out, const char *where) {
    const char *s;
    fm_status st = fm_json_string(obj, key, &s, where);
    if (st) return st;
    size_t n = strlen(s);
    if (n == 0 || fm_utf8_valid_prefix(s, n) != n || fm_utf8_len((unsigned char)s[0]) != n)
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: '%s' must be a single character", where, key);
    size_t i = 0;
    *out = fm_utf8_next(s, &i);
    return FM_OK;
}
