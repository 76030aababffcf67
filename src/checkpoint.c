/* checkpoint.c - find and open the files of a checkpoint directory, single-file or sharded. */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "file_util.h"

#define MAX_JSON_BYTES (64u * 1024u * 1024u)

void fm_checkpoint_close(fm_checkpoint *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_shards; i++) fm_st_close(c->shards[i]);
    free(c->shards);
    for (size_t i = 0; i < c->n_index; i++) free(c->index[i].name);
    free(c->index);
    free(c->listing);
    free(c);
}

static fm_status load_config(const char *dir, fm_config *cfg) {
    char *path = fm_path_join(dir, "config.json");
    if (!path) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    char *text;
    size_t len;
    fm_status st = fm_read_file(path, MAX_JSON_BYTES, &text, &len);
    if (st == FM_OK) {
        st = fm_config_parse(text, len, path, cfg);
        free(text);
    }
    free(path);
    return st;
}

static fm_status add_shard(fm_checkpoint *c, const char *dir, const char *file, size_t *idx_out) {
    for (size_t i = 0; i < c->n_shards; i++) {
        const char *p = strrchr(c->shards[i]->path, '/');
        if (strcmp(p ? p + 1 : c->shards[i]->path, file) == 0) {
            *idx_out = i;
            return FM_OK;
        }
    }
    fm_st_file **grown = realloc(c->shards, (c->n_shards + 1) * sizeof *grown);
    if (!grown) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    c->shards = grown;
    char *path = fm_path_join(dir, file);
    if (!path) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    fm_status st = fm_st_open(path, &c->shards[c->n_shards]);
    free(path);
    if (st) return st;
    *idx_out = c->n_shards++;
    return FM_OK;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const fm_ckpt_entry *)a)->name, ((const fm_ckpt_entry *)b)->name);
}

/* A shard name from the index must be a plain file name in the checkpoint directory. */
static int is_plain_file_name(const char *s) {
    return s[0] && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") && strcmp(s, "..");
}

static fm_status load_index(fm_checkpoint *c, const char *dir, const char *index_path) {
    const char *kname = index_path;
    char *text;
    size_t len;
    fm_status st = fm_read_file(index_path, MAX_JSON_BYTES, &text, &len);
    if (st) return st;
    const char *end = NULL;
    cJSON *root = fm_json_parse(text, len, &end);
    int trailing = root && !fm_only_whitespace(end, text, len);
    free(text);
    if (!root) return fm_error(FM_ERR_FORMAT, "%s: malformed JSON", index_path);
    if (trailing) {
        cJSON_Delete(root);
        return fm_error(FM_ERR_FORMAT, "%s: trailing bytes after the JSON value", index_path);
    }
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return fm_error(FM_ERR_FORMAT, "%s: 'weight_map' missing or not an object", kname);
    }
    size_t n = (size_t)cJSON_GetArraySize(map);
    c->index = calloc(n ? n : 1, sizeof *c->index);
    if (!c->index) {
        cJSON_Delete(root);
        return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e)) {
            st = fm_error(FM_ERR_FORMAT, "%s: weight_map['%s'] is not a file name", kname, e->string);
            break;
        }
        if (!is_plain_file_name(e->valuestring)) {
            st = fm_error(FM_ERR_FORMAT, "%s: weight_map['%s'] = '%s' is not a file in the checkpoint directory",
                          kname, e->string, e->valuestring);
            break;
        }
        size_t shard;
        if ((st = add_shard(c, dir, e->valuestring, &shard))) break;
        if (!fm_st_find(c->shards[shard], e->string)) {
            st = fm_error(FM_ERR_FORMAT, "%s: tensor '%s' is listed in %s but that file does not contain it", kname,
                          e->string, e->valuestring);
            break;
        }
        fm_ckpt_entry *ent = &c->index[c->n_index];
        if (!(ent->name = strdup(e->string))) {
            st = fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
            break;
        }
        ent->shard = shard;
        c->n_index++;
    }
    cJSON_Delete(root);
    if (st) return st;
    qsort(c->index, c->n_index, sizeof *c->index, cmp_entry);
    for (size_t i = 1; i < c->n_index; i++)
        if (strcmp(c->index[i - 1].name, c->index[i].name) == 0)
            return fm_error(FM_ERR_FORMAT, "%s: tensor '%s' listed twice", kname, c->index[i].name);
    return FM_OK;
}

fm_status fm_checkpoint_open(const char *dir, fm_checkpoint **out) {
    if (!dir[0]) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_context_open: model_path is empty");
    fm_checkpoint *c = calloc(1, sizeof *c);
    if (!c) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    fm_status st = load_config(dir, &c->cfg);
    char *single = fm_path_join(dir, "model.safetensors");
    char *index = fm_path_join(dir, "model.safetensors.index.json");
    if (st == FM_OK && (!single || !index)) st = fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == FM_OK) {
        if (fm_path_exists(single)) {
            size_t idx;
            st = add_shard(c, dir, "model.safetensors", &idx);
            c->listing = single;
            single = NULL;
        } else if (fm_path_exists(index)) {
            st = load_index(c, dir, index);
            c->listing = index;
            index = NULL;
        } else {
            st = fm_error(FM_ERR_IO, "%s: neither model.safetensors nor model.safetensors.index.json found", dir);
        }
    }
    free(single);
    free(index);
    if (st) {
        fm_checkpoint_close(c);
        return st;
    }
    *out = c;
    return FM_OK;
}

const fm_st_tensor *fm_checkpoint_find(const fm_checkpoint *c, const char *name, const char **file_out) {
    size_t shard = 0;
    if (c->index) {
        fm_ckpt_entry key = {(char *)name, 0};
        const fm_ckpt_entry *e = bsearch(&key, c->index, c->n_index, sizeof key, cmp_entry);
        if (!e) return NULL;
        shard = e->shard;
    } else if (c->n_shards == 0) {
        return NULL;
    }
    const fm_st_tensor *t = fm_st_find(c->shards[shard], name);
    if (t && file_out) *file_out = c->shards[shard]->path;
    return t;
}
