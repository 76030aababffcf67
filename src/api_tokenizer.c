/* api_tokenizer.c - the public fm_tokenizer_* functions: open (a tokenizer.json file or a directory),
   close, getters, encode and chat formatting. Decoding and streaming are in tok_decode.c. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat_template.h"
#include "error.h"
#include "file_util.h"
#include "tokenizer.h"

#define FM_TOKENIZER_JSON_MAX ((size_t)1 << 30)

FM_API fm_status fm_tokenizer_open(const char *path, fm_tokenizer **out) {
    fm_error_clear();
    if (!path || !out) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_tokenizer_open: path and out must not be NULL");
    struct stat sb;
    if (stat(path, &sb) != 0) return fm_error(FM_ERR_IO, "%s: no such file or directory", path);
    char *json_path = NULL, *cfg_path = NULL, *stm_path = NULL;
    if (S_ISDIR(sb.st_mode)) {
        json_path = fm_path_join(path, "tokenizer.json");
        cfg_path = fm_path_join(path, "tokenizer_config.json");
        stm_path = fm_path_join(path, "special_tokens_map.json");
    } else {
        json_path = strdup(path);
        const char *slash = strrchr(path, '/');
        char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup("./");
        if (dir) {
            cfg_path = fm_path_join(dir, "tokenizer_config.json");
            stm_path = fm_path_join(dir, "special_tokens_map.json");
            free(dir);
        }
    }
    fm_status st = FM_OK;
    char *json = NULL;
    size_t len = 0;
    fm_tokenizer *tok = NULL;
    if (!json_path || !cfg_path || !stm_path) st = fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    if (!st) st = fm_read_file(json_path, FM_TOKENIZER_JSON_MAX, &json, &len);
    if (!st && !(tok = calloc(1, sizeof *tok))) st = fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    if (!st) {
        tok->bos_id = tok->eos_id = -1;
        st = fm_tokenizer_load_json(tok, json, len, json_path);
    }
    free(json);
    if (!st) st = fm_tokenizer_load_config(tok, cfg_path, stm_path);
    free(json_path);
    free(cfg_path);
    free(stm_path);
    if (st) {
        if (tok) {
            fm_tokenizer_free_parts(tok);
            free(tok);
        }
        return st;
    }
    *out = tok;
    return FM_OK;
}

FM_API void fm_tokenizer_close(fm_tokenizer *tok) {
    if (!tok) return;
    fm_tokenizer_free_parts(tok);
    free(tok);
}

FM_API int32_t fm_tokenizer_n_vocab(const fm_tokenizer *tok) { return tok ? tok->n_vocab : 0; }
FM_API int32_t fm_tokenizer_bos(const fm_tokenizer *tok) { return tok ? tok->bos_id : -1; }
FM_API int32_t fm_tokenizer_eos(const fm_tokenizer *tok) { return tok ? tok->eos_id : -1; }

FM_API int fm_tokenizer_is_special(const fm_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->n_vocab) return 0;
    return tok->special[id];
}

FM_API fm_status fm_tokenizer_encode(const fm_tokenizer *tok, const char *text, size_t len, int add_special,
                                     int32_t *tokens, size_t cap, size_t *n_out) {
    fm_error_clear();
    if (!tok || (!text && len) || (cap && !tokens) || !n_out)
        return fm_error(FM_ERR_INVALID_ARGUMENT,
                        "fm_tokenizer_encode: tok, n_out, text (when len > 0) and tokens (when cap > 0) must not be NULL");
    if (!text) text = "";
    size_t valid = fm_utf8_valid_prefix(text, len);
    if (valid != len) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_tokenizer_encode: text is not valid UTF-8 at byte %zu", valid);
    fm_i32vec ids = {0};
    fm_status st = fm_tokenizer_encode_ids(tok, text, len, add_special, &ids);
    if (!st) {
        *n_out = ids.n;
        if (ids.n > cap) st = fm_error(FM_ERR_BUFFER_TOO_SMALL, "fm_tokenizer_encode: %zu tokens, buffer holds %zu", ids.n, cap);
        else if (ids.n) memcpy(tokens, ids.v, ids.n * sizeof *tokens);
    }
    fm_i32vec_free(&ids);
    return st;
}

FM_API fm_status fm_tokenizer_chat_format(const fm_tokenizer *tok, const fm_chat_message *msgs, size_t n,
                                          int add_generation_prompt, char *buf, size_t cap, size_t *len_out) {
    fm_error_clear();
    if (!tok || (n && !msgs) || (cap && !buf) || !len_out)
        return fm_error(FM_ERR_INVALID_ARGUMENT,
                        "fm_tokenizer_chat_format: tok, len_out, msgs (when n > 0) and buf (when cap > 0) must not be NULL");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_tokenizer_chat_format: message %zu has a NULL role or content", i);
    if (!tok->chat_src) return fm_error(FM_ERR_UNSUPPORTED, "fm_tokenizer_chat_format: the tokenizer has no chat template");
    if (!tok->chat)
        return fm_error(tok->chat_status ? tok->chat_status : FM_ERR_UNSUPPORTED, "%s",
                        tok->chat_error ? tok->chat_error : "chat template: not supported");
    fm_chat_vars vars = {msgs, n, add_generation_prompt != 0, tok->bos_token, tok->eos_token};
    char *text = NULL;
    size_t len = 0;
    fm_status st = fm_chat_template_render(tok->chat, &vars, &text, &len);
    if (st) {
        free(text);
        return st;
    }
    *len_out = len;
    if (len > cap) st = fm_error(FM_ERR_BUFFER_TOO_SMALL, "fm_tokenizer_chat_format: needs %zu bytes, buffer holds %zu", len, cap);
    else {
        if (len) memcpy(buf, text, len);
        if (len < cap) buf[len] = '\0';
    }
    free(text);
    return st;
}
