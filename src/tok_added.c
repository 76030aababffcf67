/* tok_added.c - added tokens (tokenizer.json "added_tokens"): id assignment as the Rust crate's
   AddedVocabulary::add_tokens does it, the two match sets (tokens matched on the raw input and
   tokens matched after normalization), leftmost-longest matching with a byte trie, and the
   single_word / lstrip / rstrip rules of AddedVocabulary::find_matches. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

/* ---- trie -------------------------------------------------------------------------------------------- */

static int32_t trie_node(fm_trie *t, unsigned char byte) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        fm_trie_node *p = realloc(t->nodes, cap * sizeof *p);
        if (!p) return -1;
        t->nodes = p;
        t->cap = cap;
    }
    fm_trie_node *nd = &t->nodes[t->n];
    nd->first_child = nd->next_sibling = nd->token = -1;
    nd->byte = byte;
    return (int32_t)t->n++;
}

static void trie_init(fm_trie *t) {
    if (t->root_child[0] == 0 && t->n == 0 && t->n_patterns == 0)
        for (int i = 0; i < 256; i++) t->root_child[i] = -1;
}

/* Add a pattern; a pattern already present keeps its first token. */
fm_status fm_trie_add(fm_trie *t, const char *s, size_t n, int32_t token) {
    trie_init(t);
    if (n == 0) return FM_OK;
    const unsigned char *p = (const unsigned char *)s;
    int32_t cur = t->root_child[p[0]];
    if (cur < 0) {
        if ((cur = trie_node(t, p[0])) < 0) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
        t->root_child[p[0]] = cur;
    }
    for (size_t i = 1; i < n; i++) {
        int32_t c = t->nodes[cur].first_child, prev = -1;
        while (c >= 0 && t->nodes[c].byte != p[i]) {
            prev = c;
            c = t->nodes[c].next_sibling;
        }
        if (c < 0) {
            if ((c = trie_node(t, p[i])) < 0) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
            if (prev < 0) t->nodes[cur].first_child = c;
            else t->nodes[prev].next_sibling = c;
        }
        cur = c;
    }
    if (t->nodes[cur].token < 0) {
        t->nodes[cur].token = token;
        t->n_patterns++;
    }
    return FM_OK;
}

void fm_trie_free(fm_trie *t) {
    free(t->nodes);
    memset(t, 0, sizeof *t);
}

/* Longest pattern starting at s[i]: its length (0 if none), *token its token index. */
static size_t trie_longest(const fm_trie *t, const unsigned char *s, size_t n, size_t i, int32_t *token) {
    int32_t cur = t->root_child[s[i]];
    size_t best = 0, k = i;
    while (cur >= 0) {
        k++;
        if (t->nodes[cur].token >= 0) {
            best = k - i;
            *token = t->nodes[cur].token;
        }
        if (k >= n) break;
        int32_t c = t->nodes[cur].first_child;
        while (c >= 0 && t->nodes[c].byte != s[k]) c = t->nodes[c].next_sibling;
        cur = c;
    }
    return best;
}

/* ---- matching -------------------------------------------------------------------------------------- */

static int seg_push(fm_segvec *v, size_t start, size_t end, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        fm_seg *p = realloc(v->v, cap * sizeof *p);
        if (!p) return 0;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n].start = start;
    v->v[v->n].end = end;
    v->v[v->n].id = id;
    v->n++;
    return 1;
}

fm_status fm_added_split(const fm_added *a, const fm_trie *t, const char *str, size_t n, fm_segvec *out) {
    const unsigned char *s = (const unsigned char *)str;
    size_t start_offset = 0;
    if (t->n_patterns && n) {
        size_t i = 0;
        while (i < n) {
            if (t->root_child[s[i]] < 0) {
                i++;
                continue;
            }
            int32_t ti = -1;
            size_t len = trie_longest(t, s, n, i, &ti);
            if (!len) {
                i++;
                continue;
            }
            size_t start = i, stop = i + len;
            i = stop; /* the next search starts after this match, used or not (Aho-Corasick find_iter) */
            const fm_added_token *tk = &a->tokens[ti];
            if (tk->single_word) {
                int start_space = 1, stop_space = 1;
                if (start > 0) {
                    size_t ps;
                    start_space = !fm_uc_is_word(fm_utf8_prev(str, start, &ps));
                }
                if (stop < n) {
                    size_t q = stop;
                    stop_space = !fm_uc_is_word(fm_utf8_next(str, &q));
                }
                if (!start_space || !stop_space) continue;
            }
            if (tk->lstrip) {
                size_t ns = start;
                while (ns > 0) {
                    size_t ps;
                    uint32_t c = fm_utf8_prev(str, ns, &ps);
                    if (!fm_uc_is_whitespace(c)) break;
                    ns = ps;
                }
                start = ns > start_offset ? ns : start_offset;
            }
            if (tk->rstrip) {
                size_t q = stop;
                while (q < n) {
                    size_t q2 = q;
                    if (!fm_uc_is_whitespace(fm_utf8_next(str, &q2))) break;
                    q = q2;
                }
                stop = q;
            }
            if (start_offset < start && !seg_push(out, start_offset, start, -1))
                return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
            if (!seg_push(out, start, stop, tk->id)) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
            start_offset = stop;
        }
    }
    if (start_offset < n && !seg_push(out, start_offset, n, -1)) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    return FM_OK;
}

void fm_added_free(fm_added *a) {
    for (size_t i = 0; i < a->n; i++) free(a->tokens[i].content);
    free(a->tokens);
    fm_strmap_free(&a->by_content);
    fm_trie_free(&a->raw);
    fm_trie_free(&a->norm);
    fm_strmap_free(&a->special);
    memset(a, 0, sizeof *a);
}

/* ---- loading ------------------------------------------------------------------------------------------ */

static int same_def(const fm_added_token *x, const fm_added_token *y) {
    return x->len == y->len && !memcmp(x->content, y->content, x->len) && x->single_word == y->single_word &&
           x->lstrip == y->lstrip && x->rstrip == y->rstrip && x->normalized == y->normalized &&
           x->special == y->special;
}

fm_status fm_added_build(fm_added *a, const cJSON *arr, const fm_bpe *bpe, const fm_normalizer *nz, fm_re_scratch *rs) {
    fm_status st = FM_OK;
    a->max_id = -1;
    trie_init(&a->raw);
    trie_init(&a->norm);
    if (!arr || cJSON_IsNull(arr)) return FM_OK;
    if (!cJSON_IsArray(arr)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: 'added_tokens' must be an array");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    a->tokens = calloc(n ? n : 1, sizeof *a->tokens);
    unsigned char *skip = calloc(n ? n : 1, 1);
    int32_t *order = malloc((n ? n : 1) * sizeof *order);
    fm_strmap def_of = {0}; /* id (4 bytes) -> index of the last definition of that id */
    fm_buf tmp = {0};
    if (!a->tokens || !skip || !order) {
        st = fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char where[48];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!cJSON_IsObject(e)) {
            st = fm_error(FM_ERR_FORMAT, "tokenizer.json: %s must be an object", where);
            goto done;
        }
        const char *content;
        if ((st = fm_json_string(e, "content", &content, where))) goto done;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > (double)INT32_MAX - 1) {
            st = fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: 'id' must be an integer in [0, 2^31-1)", where);
            goto done;
        }
        if (id->valuedouble > FM_TOKENIZER_MAX_ID) {
            st = fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: %s: id %.0f; ids up to %d are supported", where, id->valuedouble,
                          FM_TOKENIZER_MAX_ID);
            goto done;
        }
        fm_added_token *t = &a->tokens[i];
        t->len = strlen(content);
        t->content = malloc(t->len + 1);
        if (!t->content) {
            st = fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
            a->n = i;
            goto done;
        }
        memcpy(t->content, content, t->len + 1);
        a->n = i + 1;
        if ((st = fm_json_bool(e, "special", 0, &t->special, where)) ||
            (st = fm_json_bool(e, "single_word", 0, &t->single_word, where)) ||
            (st = fm_json_bool(e, "lstrip", 0, &t->lstrip, where)) ||
            (st = fm_json_bool(e, "rstrip", 0, &t->rstrip, where)) ||
            (st = fm_json_bool(e, "normalized", !t->special, &t->normalized, where)))
            goto done;
        if (t->special && t->len && fm_strmap_get(&a->special, t->content, t->len) < 0 &&
            !fm_strmap_put(&a->special, t->content, t->len, (int32_t)i)) {
            st = fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
    }

    /* ids as AddedVocabulary::add_tokens assigns them: an existing token keeps its id, a new one
       takes the next id after the model's vocabulary */
    int64_t next_id = (int64_t)bpe->vocab_size;
    size_t n_classic = 0;
    for (i = 0; i < n; i++) {
        fm_added_token *t = &a->tokens[i];
        if (!t->len) {
            skip[i] = 1;
            continue;
        }
        int32_t known = fm_strmap_get(&a->by_content, t->content, t->len);
        if (known >= 0)
            for (size_t j = 0; j < i; j++)
                if (!skip[j] && same_def(&a->tokens[j], t)) {
                    skip[i] = 1;
                    break;
                }
        if (skip[i]) {
            t->id = known;
            continue;
        }
        int32_t id = known >= 0 ? known : fm_bpe_token_to_id(bpe, t->content, t->len);
        if (id < 0) {
            if (next_id > INT32_MAX - 1) {
                st = fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: too many added tokens");
                goto done;
            }
            id = (int32_t)next_id++;
        }
        t->id = id;
        if (id > a->max_id) a->max_id = id;
        if (!fm_strmap_put(&a->by_content, t->content, t->len, id) ||
            !fm_strmap_put(&def_of, (const char *)&id, sizeof id, (int32_t)i)) {
            st = fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
        if (fm_strmap_get(&a->special, t->content, t->len) < 0) order[n_classic++] = (int32_t)i;
    }

    /* match sets: the special tokens (first definition of each), then the others, in file order */
    size_t n_order = 0;
    int32_t *all = malloc((a->special.n + n_classic + 1) * sizeof *all);
    if (!all) {
        st = fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < a->special.n; k++) all[n_order++] = a->special.e[k].val;
    for (size_t k = 0; k < n_classic; k++) all[n_order++] = order[k];
    for (size_t k = 0; k < n_order && !st; k++) {
        const fm_added_token *t = &a->tokens[all[k]];
        int32_t id = fm_strmap_get(&a->by_content, t->content, t->len);
        int32_t def = fm_strmap_get(&def_of, (const char *)&id, sizeof id);
        if (def < 0) def = all[k];
        if (!t->normalized) {
            st = fm_trie_add(&a->raw, t->content, t->len, def);
        } else if (nz) {
            if (!(st = fm_normalizer_apply(nz, rs, t->content, t->len, &tmp)))
                st = fm_trie_add(&a->norm, tmp.p ? tmp.p : "", tmp.n, def);
        } else {
            st = fm_trie_add(&a->norm, t->content, t->len, def);
        }
    }
    free(all);
done:
    free(skip);
    free(order);
    fm_strmap_free(&def_of);
    fm_buf_free(&tmp);
    return st;
}
