/* make_tiny_chat_model.c - writes a small random-weight FalconMamba checkpoint that can talk: its
   vocabulary is exactly the tiny byte-level BPE tokenizer of tests/data/tiny_tokenizer, whose
   tokenizer.json and tokenizer_config.json (ChatML template) are copied beside the weights. The
   examples and the Python binding tests run on it; it produces gibberish, but every code path that
   needs text in and out (tokenize, chat template, generate, stream, stop strings) can run.

   usage: make_tiny_chat_model OUTDIR [TOKENIZER_DIR]
   OUTDIR is created if missing (its parent must exist). TOKENIZER_DIR defaults to the source tree's
   tests/data/tiny_tokenizer (compiled in as FM_TINY_TOKENIZER_DIR). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_util.h"
#include "tiny_model.h"

#ifndef FM_TINY_TOKENIZER_DIR
#define FM_TINY_TOKENIZER_DIR "tests/data/tiny_tokenizer"
#endif

static char *read_in(const char *dir, const char *name, size_t *n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = fm_test_read_file(path, n);
    if (!text) fprintf(stderr, "make_tiny_chat_model: cannot read %s\n", path);
    return text;
}

/* Highest id + 1 over model.vocab and added_tokens; the id of `special` in *special_id (or -1). */
static int vocab_size(const char *json, const char *special, int *special_id) {
    cJSON *root = cJSON_Parse(json);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    int n = 0;
    const cJSON *e;
    *special_id = -1;
    cJSON_ArrayForEach(e, vocab) {
        if (cJSON_IsNumber(e) && e->valueint + 1 > n) n = e->valueint + 1;
        if (cJSON_IsNumber(e) && !strcmp(e->string, special)) *special_id = e->valueint;
    }
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id)) continue;
        if (id->valueint + 1 > n) n = id->valueint + 1;
        if (cJSON_IsString(content) && !strcmp(content->valuestring, special)) *special_id = id->valueint;
    }
    cJSON_Delete(root);
    return n;
}

static void set_number(cJSON *obj, const char *key, double v) {
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    cJSON_AddNumberToObject(obj, key, v);
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s OUTDIR [TOKENIZER_DIR]\n", argv[0]);
        return 2;
    }
    const char *out = argv[1], *tokdir = argc > 2 ? argv[2] : FM_TINY_TOKENIZER_DIR;
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_tiny_chat_model: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    size_t n_json = 0, n_cfg = 0;
    char *json = read_in(tokdir, "tokenizer.json", &n_json);
    char *cfg = json ? read_in(tokdir, "tokenizer_config.json", &n_cfg) : NULL;
    if (!json || !cfg) {
        free(json);
        return 1;
    }
    int eos = -1;
    int n_vocab = vocab_size(json, "<|endoftext|>", &eos);
    if (n_vocab <= 0 || eos < 0) {
        fprintf(stderr, "make_tiny_chat_model: %s/tokenizer.json: no vocabulary or no <|endoftext|>\n", tokdir);
        free(json);
        free(cfg);
        return 1;
    }

    fm_tm_options o;
    fm_tm_options_init(&o);
    o.d_model = 64;
    o.n_layer = 2;
    o.d_inner = 128;
    o.d_state = 8;
    o.d_conv = 4;
    o.dt_rank = 4; /* ceil(64 / 16), as transformers' "auto" */
    o.vocab = n_vocab;
    o.tied = 0; /* a separate lm_head: tied random embeddings make the model repeat its last token forever */
    o.seed = 7;
    fm_tm_model *m = fm_tm_create(&o);
    int rc = 1;
    if (m) {
        /* Special ids as the tokenizer numbers them (GPT-2 style: one <|endoftext|> for all three). */
        set_number(m->config, "bos_token_id", eos);
        set_number(m->config, "eos_token_id", eos);
        set_number(m->config, "pad_token_id", eos);
        if (fm_tm_write(m, out) == 0 && fm_test_write_file(out, "tokenizer.json", json, n_json) == 0 &&
            fm_test_write_file(out, "tokenizer_config.json", cfg, n_cfg) == 0)
            rc = 0;
    }
    if (rc) fprintf(stderr, "make_tiny_chat_model: cannot write the checkpoint into %s\n", out);
    else printf("make_tiny_chat_model: %s (vocab %d, d_model %d, %d layers, eos %d)\n", out, n_vocab, o.d_model, o.n_layer, eos);
    fm_tm_free(m);
    free(json);
    free(cfg);
    return rc;
}
