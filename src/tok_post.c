/* tok_post.c - what happens to the ids after the model, for a single sequence: truncation
   (tokenizer.json "truncation"), the post-processor (TemplateProcessing, RobertaProcessing,
   BertProcessing, ByteLevel, Sequence) and padding ("padding"), as TokenizerImpl::post_process
   orders them. Only ids are produced, so ByteLevel's offset trimming has nothing to do. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

#define OOM() fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory")

static int json_uint(const cJSON *v, double max, size_t *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max || v->valuedouble != floor(v->valuedouble))
        return 0;
    *out = (size_t)v->valuedouble;
    return 1;
}

/* ["<s>", 0] */
static fm_status token_pair(const cJSON *j, const char *key, const char *where, int32_t *id) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    size_t x;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsString(v->child) ||
        !json_uint(v->child->next, (double)INT32_MAX - 1, &x))
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: '%s' must be [token, id]", where, key);
    *id = (int32_t)x;
    return FM_OK;
}

static fm_status tmpl_push(fm_post *p, int32_t id) {
    int32_t *t = realloc(p->tmpl, (p->n_tmpl + 1) * sizeof *t);
    if (!t) return OOM();
    p->tmpl = t;
    p->tmpl[p->n_tmpl++] = id;
    return FM_OK;
}

/* One template piece naming a special token (id) or a sequence ("A", "B"). */
static fm_status tmpl_piece(fm_post *p, const cJSON *special, const char *where, int is_seq, const char *name) {
    if (is_seq) {
        if (strcmp(name, "A") != 0)
            return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: the single template can only use sequence A", where);
        return tmpl_push(p, -1);
    }
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(special, name);
    const cJSON *ids = tok ? cJSON_GetObjectItemCaseSensitive(tok, "ids") : NULL;
    if (!cJSON_IsArray(ids))
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: missing special token '%.64s' in special_tokens", where, name);
    for (const cJSON *e = ids->child; e; e = e->next) {
        size_t x;
        if (!json_uint(e, (double)INT32_MAX - 1, &x))
            return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: special token '%.64s' has a bad id", where, name);
        fm_status st = tmpl_push(p, (int32_t)x);
        if (st) return st;
        p->added_single++;
    }
    return FM_OK;
}

static fm_status parse_template(fm_post *p, const cJSON *j, const char *where) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
    const cJSON *special = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    if (special && !cJSON_IsObject(special))
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: 'special_tokens' must be an object", where);
    fm_status st = FM_OK;
    if (cJSON_IsString(single)) {
        /* "$A:0 <s>:1" form */
        char *s = strdup(single->valuestring), *save = NULL;
        if (!s) return OOM();
        for (char *tk = strtok_r(s, " ", &save); tk && !st; tk = strtok_r(NULL, " ", &save)) {
            char *colon = strchr(tk, ':');
            if (colon) *colon = '\0';
            if (tk[0] == '$') {
                const char *r = tk + 1;
                int is_b = !strcmp(r, "B") || !strcmp(r, "b");
                st = tmpl_piece(p, special, where, 1, is_b ? "B" : "A");
            } else {
                st = tmpl_piece(p, special, where, 0, tk);
            }
        }
        free(s);
        return st;
    }
    if (!cJSON_IsArray(single)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: 'single' must be an array", where);
    for (const cJSON *e = single->child; e && !st; e = e->next) {
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(sq ? sq : sp, "id");
        if ((!sq && !sp) || !cJSON_IsString(id))
            return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: a template piece must be {\"Sequence\": {...}} or {\"SpecialToken\": {...}}", where);
        st = tmpl_piece(p, special, where, sq != NULL, id->valuestring);
    }
    return st;
}

fm_status fm_post_parse(const cJSON *j, const char *where, fm_post **out) {
    *out = NULL;
    if (!cJSON_IsObject(j)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s must be an object or null", where);
    const char *type;
    fm_status st = fm_json_string(j, "type", &type, where);
    if (st) return st;
    fm_post *p = calloc(1, sizeof *p);
    if (!p) return OOM();
    if (!strcmp(type, "Sequence")) {
        p->kind = FM_POST_SEQUENCE;
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "processors");
        if (!cJSON_IsArray(arr)) {
            st = fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: Sequence needs a 'processors' array", where);
        } else {
            size_t n = (size_t)cJSON_GetArraySize(arr);
            p->children = calloc(n ? n : 1, sizeof *p->children);
            if (!p->children) st = OOM();
            size_t i = 0;
            for (const cJSON *e = arr->child; e && !st; e = e->next, i++) {
                char w[256];
                snprintf(w, sizeof w, "%s.processors[%zu]", where, i);
                st = fm_post_parse(e, w, &p->children[i]);
                if (!st) {
                    p->n_children = i + 1;
                    p->added_single += p->children[i]->added_single;
                }
            }
        }
    } else if (!strcmp(type, "TemplateProcessing")) {
        p->kind = FM_POST_TEMPLATE;
        st = parse_template(p, j, where);
    } else if (!strcmp(type, "ByteLevel")) {
        p->kind = FM_POST_BYTELEVEL;
    } else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        p->kind = type[0] == 'R' ? FM_POST_ROBERTA : FM_POST_BERT;
        if (!(st = token_pair(j, "cls", where, &p->cls_id))) st = token_pair(j, "sep", where, &p->sep_id);
        p->added_single = 2;
    } else {
        st = fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: %s: post-processor type '%.64s' is not supported", where, type);
    }
    if (st) {
        fm_post_free(p);
        return st;
    }
    *out = p;
    return FM_OK;
}

void fm_post_free(fm_post *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_children; i++) fm_post_free(p->children[i]);
    free(p->children);
    free(p->tmpl);
    free(p);
}

size_t fm_post_added(const fm_post *p) { return p ? p->added_single : 0; }

int32_t fm_post_max_id(const fm_post *p) {
    int32_t m = -1;
    if (!p) return m;
    for (size_t i = 0; i < p->n_children; i++) {
        int32_t c = fm_post_max_id(p->children[i]);
        if (c > m) m = c;
    }
    if (p->kind == FM_POST_ROBERTA || p->kind == FM_POST_BERT) {
        if (p->cls_id > m) m = p->cls_id;
        if (p->sep_id > m) m = p->sep_id;
    }
    for (size_t i = 0; i < p->n_tmpl; i++)
        if (p->tmpl[i] > m) m = p->tmpl[i];
    return m;
}

fm_status fm_post_apply(const fm_post *p, int add_special, fm_i32vec *ids) {
    switch (p->kind) {
    case FM_POST_SEQUENCE:
        for (size_t i = 0; i < p->n_children; i++) {
            fm_status st = fm_post_apply(p->children[i], add_special, ids);
            if (st) return st;
        }
        return FM_OK;
    case FM_POST_BYTELEVEL: return FM_OK;
    case FM_POST_ROBERTA:
    case FM_POST_BERT: {
        if (!add_special) return FM_OK;
        if (!fm_i32vec_push(ids, 0)) return OOM();
        memmove(ids->v + 1, ids->v, (ids->n - 1) * sizeof *ids->v);
        ids->v[0] = p->cls_id;
        return fm_i32vec_push(ids, p->sep_id) ? FM_OK : OOM();
    }
    case FM_POST_TEMPLATE: {
        fm_i32vec r = {0};
        for (size_t i = 0; i < p->n_tmpl; i++) {
            int ok = p->tmpl[i] < 0 ? fm_i32vec_append(&r, ids->v, ids->n)
                                    : (!add_special || fm_i32vec_push(&r, p->tmpl[i]));
            if (!ok) {
                fm_i32vec_free(&r);
                return OOM();
            }
        }
        fm_i32vec_free(ids);
        *ids = r;
        return FM_OK;
    }
    }
    return FM_OK;
}

/* ---- truncation and padding ---------------------------------------------------------------------- */

static int dir_left(const cJSON *j, const char *key) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(d) && !strcmp(d->valuestring, "Left");
}

fm_status fm_truncation_parse(const cJSON *j, fm_truncation *t) {
    memset(t, 0, sizeof *t);
    if (!j || cJSON_IsNull(j)) return FM_OK;
    if (!cJSON_IsObject(j)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: 'truncation' must be an object or null");
    if (!json_uint(cJSON_GetObjectItemCaseSensitive(j, "max_length"), 9e15, &t->max_length))
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: truncation: 'max_length' must be a non-negative integer");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "strategy");
    if (s && !cJSON_IsString(s)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: truncation: 'strategy' must be a string");
    if (s && strcmp(s->valuestring, "LongestFirst") && strcmp(s->valuestring, "OnlyFirst") &&
        strcmp(s->valuestring, "OnlySecond"))
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: truncation: unknown strategy '%.64s'", s->valuestring);
    t->only_second = s && !strcmp(s->valuestring, "OnlySecond");
    t->left = dir_left(j, "direction");
    t->enabled = 1;
    return FM_OK;
}

fm_status fm_padding_parse(const cJSON *j, fm_padding *p) {
    memset(p, 0, sizeof *p);
    if (!j || cJSON_IsNull(j)) return FM_OK;
    if (!cJSON_IsObject(j)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: 'padding' must be an object or null");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "strategy");
    if (cJSON_IsObject(s)) {
        if (!json_uint(cJSON_GetObjectItemCaseSensitive(s, "Fixed"), 9e15, &p->fixed))
            return fm_error(FM_ERR_FORMAT, "tokenizer.json: padding: strategy must be \"BatchLongest\" or {\"Fixed\": n}");
    } else if (!cJSON_IsString(s) || strcmp(s->valuestring, "BatchLongest") != 0) {
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: padding: strategy must be \"BatchLongest\" or {\"Fixed\": n}");
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "pad_to_multiple_of");
    if (m && !cJSON_IsNull(m) && !json_uint(m, 9e15, &p->multiple))
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: padding: 'pad_to_multiple_of' must be an integer or null");
    size_t id = 0;
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(j, "pad_id");
    if (pid && !json_uint(pid, (double)INT32_MAX - 1, &id))
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: padding: 'pad_id' must be an id");
    p->pad_id = (int32_t)id;
    p->left = dir_left(j, "direction");
    p->enabled = 1;
    return FM_OK;
}
