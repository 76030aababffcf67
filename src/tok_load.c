/* tok_load.c - tokenizer.json and tokenizer_config.json -> fm_tokenizer: the top-level fields,
   dispatch to the component parsers, the id -> string table used by decoding, bos/eos and the
   chat template. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "error.h"
#include "file_util.h"
#include "tokenizer.h"

#define OOM() fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory")

/* cJSON strings are NUL-terminated, so a \u0000 escape would silently cut a token short. */
static int has_nul_escape(const char *s, size_t n) {
    for (size_t i = 0; i + 6 <= n; i++) {
        if (s[i] != '\\' || memcmp(s + i + 1, "u0000", 5) != 0) continue;
        size_t bs = 0; /* backslashes before this one: an odd total means a real escape */
        while (bs < i && s[i - 1 - bs] == '\\') bs++;
        if (bs % 2 == 0) return 1;
    }
    return 0;
}

static fm_status parse_root(const char *json, size_t len, const char *name, cJSON **out) {
    if (fm_utf8_valid_prefix(json, len) != len)
        return fm_error(FM_ERR_FORMAT, "%s: not valid UTF-8 at byte %zu", name, fm_utf8_valid_prefix(json, len));
    const char *end = NULL;
    cJSON *root = fm_json_parse(json, len, &end);
    if (!root) {
        size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        return fm_error(FM_ERR_FORMAT, "%s: invalid JSON near byte %zu", name, at);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fm_error(FM_ERR_FORMAT, "%s: the top level must be an object", name);
    }
    *out = root;
    return FM_OK;
}

int32_t fm_tokenizer_token_to_id(const fm_tokenizer *tok, const char *s, size_t n) {
    int32_t id = fm_strmap_get(&tok->added.by_content, s, n);
    return id >= 0 ? id : fm_bpe_token_to_id(&tok->bpe, s, n);
}

static fm_status build_id_tables(fm_tokenizer *tok) {
    int32_t max = tok->bpe.max_id > tok->added.max_id ? tok->bpe.max_id : tok->added.max_id;
    tok->n_vocab = max + 1;
    size_t n = (size_t)tok->n_vocab;
    tok->id_str = calloc(n ? n : 1, sizeof *tok->id_str);
    tok->id_len = calloc(n ? n : 1, sizeof *tok->id_len);
    tok->special = calloc(n ? n : 1, 1);
    if (!tok->id_str || !tok->id_len || !tok->special) return OOM();
    for (int32_t i = 0; i <= tok->bpe.max_id; i++) {
        tok->id_str[i] = tok->bpe.id_str[i];
        tok->id_len[i] = tok->bpe.id_len[i];
    }
    /* added tokens override the model (simple_id_to_token first); the last definition of an id wins */
    for (size_t i = 0; i < tok->added.n; i++) {
        const fm_added_token *t = &tok->added.tokens[i];
        if (!t->len || t->id < 0) continue;
        tok->id_str[t->id] = t->content;
        tok->id_len[t->id] = (uint32_t)t->len;
    }
    for (size_t i = 0; i < n; i++)
        if (tok->id_str[i] && tok->added.special.n && fm_strmap_get(&tok->added.special, tok->id_str[i], tok->id_len[i]) >= 0)
            tok->special[i] = 1;
    return FM_OK;
}

fm_status fm_tokenizer_load_json(fm_tokenizer *tok, const char *json, size_t len, const char *path) {
    (void)path;
    if (has_nul_escape(json, len))
        return fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: strings containing U+0000 are not supported");
    cJSON *root;
    fm_status st = parse_root(json, len, "tokenizer.json", &root);
    if (st) return st;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "1.0") != 0)) {
        st = fm_error(FM_ERR_FORMAT, "tokenizer.json: unknown tokenizer version (expected \"1.0\")");
        goto done;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) {
        st = fm_error(FM_ERR_FORMAT, "tokenizer.json: 'model' is missing or not an object");
        goto done;
    }
    if ((st = fm_bpe_parse(model, &tok->bpe))) goto done;

    const cJSON *j;
    if ((j = cJSON_GetObjectItemCaseSensitive(root, "normalizer")) && !cJSON_IsNull(j) &&
        (st = fm_normalizer_parse(j, "normalizer", &tok->normalizer)))
        goto done;
    if ((j = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")) && !cJSON_IsNull(j) &&
        (st = fm_pretok_parse(j, "pre_tokenizer", &tok->pretok)))
        goto done;
    if ((j = cJSON_GetObjectItemCaseSensitive(root, "post_processor")) && !cJSON_IsNull(j) &&
        (st = fm_post_parse(j, "post_processor", &tok->post)))
        goto done;
    if ((j = cJSON_GetObjectItemCaseSensitive(root, "decoder")) && !cJSON_IsNull(j) &&
        (st = fm_decoder_parse(j, "decoder", &tok->decoder)))
        goto done;
    if ((st = fm_truncation_parse(cJSON_GetObjectItemCaseSensitive(root, "truncation"), &tok->trunc)) ||
        (st = fm_padding_parse(cJSON_GetObjectItemCaseSensitive(root, "padding"), &tok->pad)))
        goto done;

    fm_re_scratch *rs = fm_re_scratch_new();
    if (!rs) {
        st = OOM();
        goto done;
    }
    st = fm_added_build(&tok->added, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), &tok->bpe, tok->normalizer, rs);
    fm_re_scratch_free(rs);
    if (st) goto done;
    if ((st = build_id_tables(tok))) goto done;
    /* HF would emit these ids as given; an id past the vocabulary would only fail later, inside the
       model, so it is refused here with the tokenizer named. */
    int32_t post_max = fm_post_max_id(tok->post);
    if (post_max >= tok->n_vocab)
        st = fm_error(FM_ERR_FORMAT, "tokenizer.json: post_processor: special token id %d is outside the vocabulary (%d ids)",
                      post_max, tok->n_vocab);
    else if (tok->pad.enabled && tok->pad.pad_id >= tok->n_vocab)
        st = fm_error(FM_ERR_FORMAT, "tokenizer.json: padding: pad_id %d is outside the vocabulary (%d ids)", tok->pad.pad_id,
                      tok->n_vocab);
done:
    cJSON_Delete(root);
    return st;
}

/* bos_token / eos_token: a string, {"content": ...} (AddedToken), or null. */
static fm_status special_string(const cJSON *root, const char *key, const char *name, char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v) || *out) return FM_OK;
    const char *s = NULL;
    if (cJSON_IsString(v)) s = v->valuestring;
    else if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) s = c->valuestring;
    }
    if (!s) return fm_error(FM_ERR_FORMAT, "%s: '%s' must be a string, {\"content\": ...} or null", name, key);
    if (!(*out = strdup(s))) return OOM();
    return FM_OK;
}

static fm_status read_json_file(const char *path, const char *name, cJSON **out) {
    char *buf;
    size_t len;
    *out = NULL;
    fm_status st = fm_read_file(path, (size_t)64 << 20, &buf, &len);
    if (st) return st;
    st = parse_root(buf, len, name, out);
    free(buf);
    return st;
}

fm_status fm_tokenizer_load_config(fm_tokenizer *tok, const char *config_path, const char *stm_path) {
    fm_status st = FM_OK;
    cJSON *cfg = NULL, *stm = NULL;
    if (config_path && fm_path_exists(config_path)) {
        if ((st = read_json_file(config_path, "tokenizer_config.json", &cfg))) return st;
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
        const char *src = NULL;
        if (cJSON_IsString(ct)) {
            src = ct->valuestring;
        } else if (cJSON_IsArray(ct)) {
            for (const cJSON *e = ct->child; e; e = e->next) {
                const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
                const cJSON *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
                if (cJSON_IsString(nm) && cJSON_IsString(tp) && !strcmp(nm->valuestring, "default")) src = tp->valuestring;
            }
        } else if (ct && !cJSON_IsNull(ct)) {
            st = fm_error(FM_ERR_FORMAT, "tokenizer_config.json: 'chat_template' must be a string or a list of {name, template}");
        }
        if (!st && src && !(tok->chat_src = strdup(src))) st = OOM();
        if (!st) st = special_string(cfg, "bos_token", "tokenizer_config.json", &tok->bos_token);
        if (!st) st = special_string(cfg, "eos_token", "tokenizer_config.json", &tok->eos_token);
    }
    if (!st && (!tok->bos_token || !tok->eos_token) && stm_path && fm_path_exists(stm_path)) {
        if (!(st = read_json_file(stm_path, "special_tokens_map.json", &stm))) {
            st = special_string(stm, "bos_token", "special_tokens_map.json", &tok->bos_token);
            if (!st) st = special_string(stm, "eos_token", "special_tokens_map.json", &tok->eos_token);
        }
    }
    cJSON_Delete(cfg);
    cJSON_Delete(stm);
    if (st) return st;
    tok->bos_id = tok->bos_token ? fm_tokenizer_token_to_id(tok, tok->bos_token, strlen(tok->bos_token)) : -1;
    tok->eos_id = tok->eos_token ? fm_tokenizer_token_to_id(tok, tok->eos_token, strlen(tok->eos_token)) : -1;
    if (tok->chat_src) {
        /* compiled once here so that fm_tokenizer stays read-only; a template this engine cannot
           handle is not an open error, fm_tokenizer_chat_format reports it */
        fm_status cst = fm_chat_template_compile(tok->chat_src, strlen(tok->chat_src), &tok->chat);
        if (cst) {
            tok->chat = NULL;
            tok->chat_status = cst;
            tok->chat_error = strdup(fm_last_error());
            fm_error_clear();
        }
    }
    return FM_OK;
}

void fm_tokenizer_free_parts(fm_tokenizer *tok) {
    fm_bpe_free(&tok->bpe);
    fm_added_free(&tok->added);
    fm_normalizer_free(tok->normalizer);
    fm_pretok_free(tok->pretok);
    fm_post_free(tok->post);
    fm_decoder_free(tok->decoder);
    free(tok->id_str);
    free(tok->id_len);
    free(tok->special);
    free(tok->bos_token);
    free(tok->eos_token);
    free(tok->chat_src);
    if (tok->chat) fm_chat_template_free(tok->chat);
    free(tok->chat_error);
}
