/* bpe.c - the BPE model of tokenizer.json: vocab and merges loading, the merge loop (a min-heap of
   candidate merges over a linked list of symbols, O(n log n) per word, the same order and the same
   stale-entry rule as the Rust crate's Word::merge_all), unk / byte_fallback / prefix / suffix
   handling, and a word -> ids cache shared between threads (sharded, trylock: a busy shard is
   simply bypassed). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

typedef struct fm_bpe_sym {
    int32_t c;
    int32_t prev, next; /* -1 none */
    uint32_t len;       /* bytes; 0 = merged away */
} fm_bpe_sym;

typedef struct fm_bpe_merge {
    uint64_t key; /* rank << 32 | pos: the heap order (lowest rank, then leftmost) */
    int32_t new_id;
} fm_bpe_merge;
#define MKEY(rank, pos) (((uint64_t)(rank) << 32) | (uint32_t)(pos))
#define MPOS(m) ((uint32_t)((m).key & 0xFFFFFFFFu))

/* ---- merges map ---------------------------------------------------------------------------------- */

static inline uint64_t pair_key(int32_t a, int32_t b) { return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1; }

static inline size_t pair_slot(uint64_t k, size_t mask) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k & mask;
}

/* 1 and (rank, new id) if the pair merges. */
static inline int merge_get(const fm_bpe *b, int32_t l, int32_t r, uint32_t *rank, int32_t *new_id) {
    if (!b->mkeys) return 0;
    uint64_t k = pair_key(l, r);
    size_t j = pair_slot(k, b->mmask);
    while (b->mkeys[j]) {
        if (b->mkeys[j] == k) {
            *rank = b->mrank[j];
            *new_id = b->mnew[j];
            return 1;
        }
        j = (j + 1) & b->mmask;
    }
    return 0;
}

static void merge_put(fm_bpe *b, int32_t l, int32_t r, uint32_t rank, int32_t new_id) {
    uint64_t k = pair_key(l, r);
    size_t j = pair_slot(k, b->mmask);
    while (b->mkeys[j] && b->mkeys[j] != k) j = (j + 1) & b->mmask;
    b->mkeys[j] = k; /* a repeated pair keeps the later rank, as HF's HashMap collect does */
    b->mrank[j] = rank;
    b->mnew[j] = new_id;
}

/* ---- loading ---------------------------------------------------------------------------------------- */

static fm_status opt_string(const cJSON *m, const char *key, char **out, size_t *len) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);
    *out = NULL;
    if (len) *len = 0;
    if (!v || cJSON_IsNull(v)) return FM_OK;
    if (!cJSON_IsString(v) || !v->valuestring)
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: model: '%s' must be a string or null", key);
    *out = strdup(v->valuestring);
    if (!*out) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    if (len) *len = strlen(*out);
    return FM_OK;
}

static fm_status token_id(const fm_bpe *b, const char *s, size_t n, size_t rank, int32_t *id) {
    *id = fm_strmap_get(&b->vocab, s, n);
    if (*id < 0)
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: model: merge %zu names '%.*s', which is not in the vocab", rank,
                        (int)(n > 100 ? 100 : n), s);
    return FM_OK;
}

static fm_status add_merge(fm_bpe *b, const char *a, size_t na, const char *c, size_t nc, size_t rank, fm_buf *tmp) {
    int32_t ia, ic, inew;
    fm_status st;
    if ((st = token_id(b, a, na, rank, &ia)) || (st = token_id(b, c, nc, rank, &ic))) return st;
    if (nc < b->prefix_len || (nc > b->prefix_len && ((unsigned char)c[b->prefix_len] & 0xC0) == 0x80))
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: model: merge %zu: '%.*s' does not start with the continuing_subword_prefix",
                        rank, (int)(nc > 100 ? 100 : nc), c);
    tmp->n = 0;
    if (!fm_buf_append(tmp, a, na) || !fm_buf_append(tmp, c + b->prefix_len, nc - b->prefix_len))
        return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    if ((st = token_id(b, tmp->p, tmp->n, rank, &inew))) return st;
    merge_put(b, ia, ic, (uint32_t)rank, inew);
    return FM_OK;
}

fm_status fm_bpe_parse(const cJSON *m, fm_bpe *b) {
    fm_status st;
    b->unk_id = -1;
    b->max_id = -1;
    for (int i = 0; i < 256; i++) b->byte_ids[i] = -1;

    const cJSON *type = cJSON_GetObjectItemCaseSensitive(m, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (type) {
        if (!cJSON_IsString(type)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: model: 'type' must be a string");
        if (strcmp(type->valuestring, "BPE") != 0) {
            if (!strcmp(type->valuestring, "WordPiece") || !strcmp(type->valuestring, "WordLevel") ||
                !strcmp(type->valuestring, "Unigram"))
                return fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: model type '%s' is not supported (only BPE)",
                                type->valuestring);
            return fm_error(FM_ERR_FORMAT, "tokenizer.json: unknown model type '%.100s'", type->valuestring);
        }
    } else if (!merges) {
        return fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: model without 'type' and without merges is not supported (only BPE)");
    }
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: model: 'vocab' must be an object and 'merges' an array");

    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (dropout && !cJSON_IsNull(dropout)) {
        if (!cJSON_IsNumber(dropout)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: model: 'dropout' must be a number or null");
        if (!(dropout->valuedouble >= 0.0 && dropout->valuedouble <= 1.0))
            return fm_error(FM_ERR_FORMAT, "tokenizer.json: model: dropout must be between 0 and 1");
        if (dropout->valuedouble != 0.0)
            return fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: model: BPE dropout %g is not supported (it makes encoding random)",
                            dropout->valuedouble);
    }
    char *unk = NULL;
    if ((st = opt_string(m, "unk_token", &unk, NULL))) return st;
    if ((st = opt_string(m, "continuing_subword_prefix", &b->prefix, &b->prefix_len)) ||
        (st = opt_string(m, "end_of_word_suffix", &b->suffix, &b->suffix_len)) ||
        (st = fm_json_bool(m, "fuse_unk", 0, &b->fuse_unk, "model")) ||
        (st = fm_json_bool(m, "byte_fallback", 0, &b->byte_fallback, "model")) ||
        (st = fm_json_bool(m, "ignore_merges", 0, &b->ignore_merges, "model"))) {
        free(unk);
        return st;
    }

    /* vocab */
    size_t nv = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || !e->string || e->valuedouble < 0 || e->valuedouble > (double)INT32_MAX - 1 ||
            e->valuedouble != floor(e->valuedouble)) {
            free(unk);
            return fm_error(FM_ERR_FORMAT, "tokenizer.json: model: vocab entry '%.100s' must map to an id in [0, 2^31-1)",
                            e->string ? e->string : "?");
        }
        if (e->valuedouble > FM_TOKENIZER_MAX_ID) {
            free(unk);
            return fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: model: vocab entry '%.100s' has id %.0f; ids up to %d are supported",
                            e->string, e->valuedouble, FM_TOKENIZER_MAX_ID);
        }
        int32_t id = (int32_t)e->valuedouble;
        if (!fm_strmap_put(&b->vocab, e->string, strlen(e->string), id)) {
            free(unk);
            return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
        }
        if (id > b->max_id) b->max_id = id;
        nv++;
    }
    b->vocab_size = b->vocab.n;
    size_t nid = (size_t)(b->max_id + 1);
    b->id_str = calloc(nid ? nid : 1, sizeof *b->id_str);
    b->id_len = calloc(nid ? nid : 1, sizeof *b->id_len);
    if (!b->id_str || !b->id_len) {
        free(unk);
        return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < b->vocab.n; i++) {
        const fm_strmap_entry *e = &b->vocab.e[i];
        b->id_str[e->val] = b->vocab.blob.p + e->off;
        b->id_len[e->val] = e->len;
    }
    if (unk) {
        b->unk_id = fm_strmap_get(&b->vocab, unk, strlen(unk));
        if (b->unk_id < 0) b->unk_id = -2; /* named but absent: an error only when it is needed (as in HF) */
        free(unk);
    }
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        b->byte_ids[i] = fm_strmap_get(&b->vocab, name, 6);
    }

    /* merges */
    size_t nm = (size_t)cJSON_GetArraySize(merges);
    size_t slots = 16;
    while (slots < nm * 2 + 2) slots *= 2;
    b->mkeys = calloc(slots, sizeof *b->mkeys);
    b->mrank = malloc(slots * sizeof *b->mrank);
    b->mnew = malloc(slots * sizeof *b->mnew);
    if (!b->mkeys || !b->mrank || !b->mnew) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    b->mmask = slots - 1;
    int kind = 0; /* 1 = "a b" strings, 2 = [a, b] pairs */
    size_t rank = 0;
    fm_buf tmp = {0};
    st = FM_OK;
    for (const cJSON *e = merges->child; e && !st; e = e->next) {
        if (cJSON_IsString(e) && e->valuestring && kind != 2) {
            kind = 1;
            const char *s = e->valuestring;
            if (!strncmp(s, "#version", 8)) continue;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = fm_error(FM_ERR_FORMAT, "tokenizer.json: model: merge %zu ('%.100s') is not two tokens separated by one space",
                              rank + 1, s);
                break;
            }
            st = add_merge(b, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), rank, &tmp);
        } else if (cJSON_IsArray(e) && kind != 1 && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            kind = 2;
            const char *x = e->child->valuestring, *y = e->child->next->valuestring;
            st = add_merge(b, x, strlen(x), y, strlen(y), rank, &tmp);
        } else {
            st = fm_error(FM_ERR_FORMAT, "tokenizer.json: model: merge %zu must be a \"a b\" string or a [\"a\", \"b\"] pair (one form for all)",
                          rank + 1);
        }
        rank++;
    }
    fm_buf_free(&tmp);
    if (st) return st;

    b->cache = calloc(FM_BPE_CACHE_SHARDS, sizeof *b->cache);
    if (!b->cache) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < FM_BPE_CACHE_SHARDS; i++) pthread_mutex_init(&b->cache[i].lock, NULL);
    return FM_OK;
}

void fm_bpe_free(fm_bpe *b) {
    fm_strmap_free(&b->vocab);
    free(b->id_str);
    free(b->id_len);
    free(b->mkeys);
    free(b->mrank);
    free(b->mnew);
    free(b->prefix);
    free(b->suffix);
    if (b->cache) {
        for (int i = 0; i < FM_BPE_CACHE_SHARDS; i++) {
            fm_bpe_cache_shard *s = &b->cache[i];
            pthread_mutex_destroy(&s->lock);
            free(s->hash);
            free(s->key_off);
            free(s->key_len);
            free(s->n_ids);
            fm_buf_free(&s->blob);
        }
        free(b->cache);
    }
    memset(b, 0, sizeof *b);
}

int32_t fm_bpe_token_to_id(const fm_bpe *b, const char *s, size_t n) { return fm_strmap_get(&b->vocab, s, n); }

/* ---- cache ------------------------------------------------------------------------------------------ */

#define CACHE_MAX_ENTRIES (FM_BPE_CACHE_SHARD_SLOTS / 2)
#define CACHE_MAX_BLOB (512u << 10)

static int cache_get(const fm_bpe *b, const char *w, size_t n, uint64_t h, fm_i32vec *out, int *hit) {
    fm_bpe_cache_shard *s = &b->cache[h % FM_BPE_CACHE_SHARDS];
    *hit = 0;
    if (pthread_mutex_trylock(&s->lock) != 0) return 1;
    int ok = 1;
    if (s->hash) {
        size_t j = (h >> 8) & (FM_BPE_CACHE_SHARD_SLOTS - 1);
        while (s->hash[j]) {
            if (s->hash[j] == h && s->key_len[j] == n && memcmp(s->blob.p + s->key_off[j], w, n) == 0) {
                size_t ids_off = (s->key_off[j] + n + 3) & ~(size_t)3;
                ok = fm_i32vec_append(out, (const int32_t *)(const void *)(s->blob.p + ids_off), s->n_ids[j]);
                *hit = ok;
                break;
            }
            j = (j + 1) & (FM_BPE_CACHE_SHARD_SLOTS - 1);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static void cache_put(const fm_bpe *b, const char *w, size_t n, uint64_t h, const int32_t *ids, size_t k) {
    fm_bpe_cache_shard *s = &b->cache[h % FM_BPE_CACHE_SHARDS];
    if (k > UINT16_MAX || pthread_mutex_trylock(&s->lock) != 0) return;
    if (!s->hash) {
        s->hash = calloc(FM_BPE_CACHE_SHARD_SLOTS, sizeof *s->hash);
        s->key_off = malloc(FM_BPE_CACHE_SHARD_SLOTS * sizeof *s->key_off);
        s->key_len = malloc(FM_BPE_CACHE_SHARD_SLOTS * sizeof *s->key_len);
        s->n_ids = malloc(FM_BPE_CACHE_SHARD_SLOTS * sizeof *s->n_ids);
        if (!s->hash || !s->key_off || !s->key_len || !s->n_ids) {
            free(s->hash);
            free(s->key_off);
            free(s->key_len);
            free(s->n_ids);
            s->hash = NULL;
            s->key_off = NULL;
            s->key_len = NULL;
            s->n_ids = NULL;
            pthread_mutex_unlock(&s->lock);
            return;
        }
    }
    if (s->count < CACHE_MAX_ENTRIES && s->blob.n + n + k * sizeof(int32_t) <= CACHE_MAX_BLOB) {
        size_t j = (h >> 8) & (FM_BPE_CACHE_SHARD_SLOTS - 1);
        int dup = 0;
        while (s->hash[j]) {
            if (s->hash[j] == h && s->key_len[j] == n && memcmp(s->blob.p + s->key_off[j], w, n) == 0) {
                dup = 1;
                break;
            }
            j = (j + 1) & (FM_BPE_CACHE_SHARD_SLOTS - 1);
        }
        size_t off = s->blob.n;
        size_t pad = (4 - ((off + n) & 3)) & 3;
        if (!dup && fm_buf_append(&s->blob, w, n) && fm_buf_append(&s->blob, "\0\0\0", pad) &&
            fm_buf_append(&s->blob, ids, k * sizeof(int32_t))) {
            s->hash[j] = h;
            s->key_off[j] = (uint32_t)off;
            s->key_len[j] = (uint16_t)n;
            s->n_ids[j] = (uint32_t)k;
            s->count++;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

/* ---- the merge loop ------------------------------------------------------------------------------- */

static inline int merge_less(const fm_bpe_merge *x, const fm_bpe_merge *y) { return x->key < y->key; }

static void heap_push(fm_bpe_merge *h, size_t *n, fm_bpe_merge m) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&m, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static fm_bpe_merge heap_pop(fm_bpe_merge *h, size_t *n) {
    fm_bpe_merge top = h[0];
    fm_bpe_merge last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= m) break;
        size_t c = l;
        if (l + 1 < m && merge_less(&h[l + 1], &h[l])) c = l + 1;
        if (!merge_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

static int sym_add(fm_bpe_scratch *sc, size_t *ns, int32_t c, uint32_t len) {
    if (*ns == sc->cap_sym) {
        size_t cap = sc->cap_sym ? sc->cap_sym * 2 : 64;
        fm_bpe_sym *p = realloc(sc->sym, cap * sizeof *p);
        if (!p) return 0;
        sc->sym = p;
        sc->cap_sym = cap;
    }
    size_t i = (*ns)++;
    sc->sym[i].c = c;
    sc->sym[i].len = len;
    sc->sym[i].prev = (int32_t)i - 1;
    sc->sym[i].next = -1;
    if (i > 0) sc->sym[i - 1].next = (int32_t)i;
    return 1;
}

static fm_status merge_all(const fm_bpe *b, fm_bpe_scratch *sc, size_t ns) {
    /* each symbol takes part in at most 2 pushes per merge plus the initial pairs: 3n bounds the heap */
    size_t need = 3 * ns + 4;
    if (sc->cap_heap < need) {
        fm_bpe_merge *h = realloc(sc->heap, need * sizeof *h);
        if (!h) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
        sc->heap = h;
        sc->cap_heap = need;
    }
    fm_bpe_sym *s = sc->sym;
    fm_bpe_merge *h = sc->heap;
    size_t nh = 0;
    uint32_t rank;
    int32_t nid;
    for (size_t i = 0; i + 1 < ns; i++)
        if (merge_get(b, s[i].c, s[i + 1].c, &rank, &nid)) heap_push(h, &nh, (fm_bpe_merge){MKEY(rank, i), nid});
    while (nh) {
        fm_bpe_merge top = heap_pop(h, &nh);
        uint32_t pos = MPOS(top);
        fm_bpe_sym *cur = &s[pos];
        if (cur->len == 0 || cur->next < 0) continue;
        size_t next_pos = (size_t)cur->next;
        fm_bpe_sym right = s[next_pos];
        if (!merge_get(b, cur->c, right.c, &rank, &nid) || nid != top.new_id) continue; /* stale entry */
        cur->c = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        s[next_pos].len = 0;
        if (right.next >= 0 && (size_t)right.next < ns) s[right.next].prev = (int32_t)pos;
        if (cur->prev >= 0 && merge_get(b, s[cur->prev].c, cur->c, &rank, &nid)) {
            if (nh + 2 > sc->cap_heap) break; /* cannot happen: see the bound above */
            heap_push(h, &nh, (fm_bpe_merge){MKEY(rank, cur->prev), nid});
        }
        if (cur->next >= 0 && (size_t)cur->next < ns && merge_get(b, cur->c, s[cur->next].c, &rank, &nid)) {
            if (nh + 2 > sc->cap_heap) break;
            heap_push(h, &nh, (fm_bpe_merge){MKEY(rank, pos), nid});
        }
    }
    return FM_OK;
}

fm_status fm_bpe_tokenize(const fm_bpe *b, fm_bpe_scratch *sc, const char *w, size_t n, fm_i32vec *out) {
    if (n == 0) return FM_OK;
    if (b->ignore_merges) {
        int32_t id = fm_strmap_get(&b->vocab, w, n);
        if (id >= 0) return fm_i32vec_push(out, id) ? FM_OK : fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    uint64_t h = 0;
    int cacheable = n < FM_BPE_CACHE_MAX_WORD && b->cache;
    if (cacheable) {
        h = fm_tok_hash(w, n) | 1;
        int hit;
        if (!cache_get(b, w, n, h, out, &hit)) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
        if (hit) return FM_OK;
    }

    size_t ns = 0;
    int32_t unk_id = -1;
    uint32_t unk_len = 0;
    int have_unk = 0;
    for (size_t i = 0; i < n;) {
        size_t cl = fm_utf8_len((unsigned char)w[i]);
        if (i + cl > n) cl = n - i;
        int first = i == 0, last = i + cl >= n;
        const char *s = w + i;
        size_t sl = cl;
        if ((!first && b->prefix) || (last && b->suffix)) {
            sc->tmp.n = 0;
            if ((!first && b->prefix && !fm_buf_append(&sc->tmp, b->prefix, b->prefix_len)) ||
                !fm_buf_append(&sc->tmp, w + i, cl) ||
                (last && b->suffix && !fm_buf_append(&sc->tmp, b->suffix, b->suffix_len)))
                return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
            s = sc->tmp.p;
            sl = sc->tmp.n;
        }
        int32_t id = fm_strmap_get(&b->vocab, s, sl);
        if (id >= 0) {
            if (have_unk) {
                if (!sym_add(sc, &ns, unk_id, unk_len)) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
                have_unk = 0;
            }
            if (!sym_add(sc, &ns, id, (uint32_t)cl)) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
        } else {
            int done = 0;
            if (b->byte_fallback) {
                int all = 1;
                for (size_t k = 0; k < sl; k++)
                    if (b->byte_ids[(unsigned char)s[k]] < 0) all = 0;
                if (all) {
                    for (size_t k = 0; k < sl; k++)
                        if (!sym_add(sc, &ns, b->byte_ids[(unsigned char)s[k]], 1))
                            return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
                    done = 1; /* a pending unk stays pending, as in HF */
                }
            }
            if (!done && b->unk_id != -1) {
                if (b->unk_id == -2)
                    return fm_error(FM_ERR_FORMAT, "tokenizer.json: model: unk_token is not in the vocab");
                if (have_unk && b->fuse_unk) {
                    unk_len += (uint32_t)cl;
                } else {
                    if (have_unk && !sym_add(sc, &ns, unk_id, unk_len))
                        return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
                    unk_id = b->unk_id;
                    unk_len = (uint32_t)cl;
                    have_unk = 1;
                }
            }
            /* no unk token: the character is dropped, as in HF */
        }
        i += cl;
    }
    if (have_unk && !sym_add(sc, &ns, unk_id, unk_len)) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");

    fm_status st = merge_all(b, sc, ns);
    if (st) return st;
    size_t start = out->n;
    for (size_t i = 0; i < ns; i++)
        if (sc->sym[i].len && !fm_i32vec_push(out, sc->sym[i].c)) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    if (cacheable) cache_put(b, w, n, h, out->v ? out->v + start : NULL, out->n - start); /* no ids yet: v is NULL */
    return FM_OK;
}

void fm_bpe_scratch_free(fm_bpe_scratch *sc) {
    free(sc->sym);
    free(sc->heap);
    fm_buf_free(&sc->tmp);
    fm_i32vec_free(&sc->ids);
    memset(sc, 0, sizeof *sc);
}
