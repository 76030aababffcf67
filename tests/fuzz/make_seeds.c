/* make_seeds.c - writes the generated part of the seed corpora (tests/fuzz/corpus/): safetensors
   images, an index and configs of the tiny models the fuzz targets use, and saved state blobs of the
   fuzz_state_blob model (fingerprint and checksum fields zeroed, so they stay valid seeds when the
   fingerprint's definition changes: the target fills zeros in). Run once by hand:
     build/tests/fuzz/fuzz_make_seeds tests/fuzz/corpus
   The hand-written seeds (tokenizers, templates, texts) are plain files in the corpus directories. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "falconmamba.h"
#include "test_util.h"
#include "tiny_model.h"

static void put(const char *root, const char *target, const char *name, const void *data, size_t n) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/%s", root, target);
    mkdir(dir, 0755);
    if (fm_test_write_file(dir, name, data, n) != 0) {
        fprintf(stderr, "cannot write %s/%s\n", dir, name);
        exit(1);
    }
}

static void put_str(const char *root, const char *target, const char *name, const char *s) {
    put(root, target, name, s, strlen(s));
}

static fm_tm_model *model(int n_layer, int n_shards, const char *dtype, int tied) {
    fm_tm_options o;
    fm_tm_options_init(&o);
    o.n_layer = n_layer;
    o.n_shards = n_shards;
    o.dtype = dtype;
    o.tied = tied;
    fm_tm_model *m = fm_tm_create(&o);
    if (!m) exit(1);
    return m;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    const char *root = argv[1];
    size_t n;

    /* safetensors: whole tiny models (f32 tied, bf16 untied) and edge cases */
    fm_tm_model *m = model(1, 0, "F32", 1);
    uint8_t *img = fm_tm_image(m, -1, &n);
    put(root, "safetensors", "tiny_f32.safetensors", img, n);
    free(img);
    char *cfg = fm_tm_config_json(m);
    put_str(root, "config", "tiny_falcon.json", cfg);
    free(cfg);
    fm_tm_free(m);
    m = model(1, 0, "BF16", 0);
    cJSON_ReplaceItemInObject(m->config, "model_type", cJSON_CreateString("mamba"));
    img = fm_tm_image(m, -1, &n);
    put(root, "safetensors", "tiny_bf16_untied.safetensors", img, n);
    free(img);
    cfg = fm_tm_config_json(m);
    put_str(root, "config", "tiny_mamba_untied.json", cfg);
    free(cfg);
    fm_tm_free(m);
    const char *hdrs[][2] = {
        {"empty.safetensors", "{}"},
        {"metadata_only.safetensors", "{\"__metadata__\":{\"format\":\"pt\"}}"},
        {"zero_size.safetensors", "{\"a\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[0,0]},"
                                  "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}"},
    };
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        img = fm_tm_raw_image(hdrs[i][1], "\1\2\3\4\5\6\7\10", 8, &n);
        put(root, "safetensors", hdrs[i][0], img, n);
        free(img);
    }

    /* index: the two-shard model fuzz_index writes (n_layer 1, 2 shards) */
    m = model(1, 2, "F32", 1);
    char *idx = fm_tm_index_json(m);
    put_str(root, "index", "tiny_2shards.json", idx);
    free(idx);
    fm_tm_free(m);

    /* state blobs of the fuzz_state_blob model: empty-ish, with logits + history, with RNG seeded */
    m = model(1, 0, "F32", 1);
    char *dir = fm_tm_write_tmp(m);
    fm_tm_free(m);
    fm_context *ctx;
    fm_session *s;
    if (!dir || fm_context_open(dir, NULL, &ctx) || fm_session_open(ctx, NULL, &s)) return 1;
    for (int k = 0; k < 3; k++) {
        if (k == 1) {
            int32_t t[4] = {3, 1, 4, 1};
            fm_session_feed(s, t, 4, NULL);
        }
        if (k == 2) {
            fm_sampler_params sp;
            fm_sampler_params_init(&sp);
            sp.seed = 7;
            int32_t tok;
            fm_session_sample(s, &sp, &tok);
        }
        size_t sz = fm_session_state_size(s);
        uint8_t *b = calloc(1, sz);
        fm_session_state_save(s, b, sz, &sz);
        memset(b + 16, 0, 8); /* fingerprint: filled in by the target */
        memset(b + 64, 0, 8); /* checksum: ditto */
        char name[64];
        snprintf(name, sizeof name, "state_%d.bin", k);
        put(root, "state_blob", name, b, sz);
        free(b);
    }
    fm_session_close(s);
    fm_context_close(ctx);
    fm_test_rmtree(dir);
    free(dir);
    return 0;
}
