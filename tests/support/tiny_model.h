/*
 * tiny_model.h - writes small but complete FalconMamba / Mamba checkpoint directories for tests
 * (config.json + model.safetensors, or model.safetensors.index.json + shards), with deterministic
 * pseudo-random weights, and hooks to break them in controlled ways.
 *
 * Usage:
 *   fm_tm_options o;
 *   fm_tm_options_init(&o);            // 2 layers, d_model 16, F32, tied, falcon_mamba ...
 *   o.dtype = "BF16";
 *   fm_tm_model *m = fm_tm_create(&o);  // the tensor list + an editable config tree
 *   fm_tm_remove(m, "backbone.layers.1.mixer.A_log");          // break it ...
 *   cJSON_DeleteItemFromObject(m->config, "hidden_size");      // ... or its config
 *   char *dir = fm_tm_write_tmp(m);     // a fresh temp dir holding the checkpoint
 *   ... fm_context_open(dir, ...) ...
 *   fm_test_rmtree(dir); free(dir); fm_tm_free(m);
 *
 * Weights are a function of (seed, tensor name) only, so removing or editing one tensor leaves every
 * other tensor's bytes unchanged. Values are scaled like a real initialisation (A_log = log(1..d_state),
 * D ~ 1, dt bias ~ softplus^-1(0.001..0.1), projections ~ 1/sqrt(fan_in)) so the model's logits are
 * finite and input-dependent.
 */
#ifndef FM_TINY_MODEL_H
#define FM_TINY_MODEL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define FM_TM_MAX_DIMS 16 /* more than safetensors.h allows, to write ">8 dims" files */

typedef struct fm_tm_options {
    int32_t d_model, n_layer, d_inner, d_state, d_conv, dt_rank, vocab;
    int tied;               /* tie_word_embeddings; untied models get lm_head.weight */
    int use_bias;           /* in_proj / out_proj biases */
    int use_conv_bias;
    const char *model_type; /* "falcon_mamba" or "mamba" (also picks the architectures entry) */
    const char *dtype;      /* "F32", "BF16" or "F16": the storage of every tensor */
    uint32_t seed;
    int n_shards;           /* 0 = single model.safetensors; N >= 1 = index + N shard files */
} fm_tm_options;

/* Defaults: d_model 16, n_layer 2, d_inner 32, d_state 4, d_conv 4, dt_rank 1 (= ceil(16/16)),
   vocab 24, tied, no bias, conv bias, "falcon_mamba", "F32", seed 1, single file. */
void fm_tm_options_init(fm_tm_options *o);

typedef struct fm_tm_tensor {
    char *name;
    char dtype[24];          /* dtype string written to the header (may be anything) */
    int n_dims;
    int64_t shape[FM_TM_MAX_DIMS];
    uint8_t *data;           /* bytes written to the data section */
    size_t n_bytes;
    int shard;               /* sharded form: index of the shard file holding it */
    int omit_from_file;      /* 1: not written to its file (still listed in the index) */
    int omit_from_index;     /* 1: written to its shard but not listed in the index's weight_map */
    int override_offsets;    /* 1: write data_offsets [begin, end] instead of the real ones */
    uint64_t begin, end;
    char *raw_entry;         /* if set (malloc'ed), written verbatim as the entry's JSON value */
} fm_tm_tensor;

typedef struct fm_tm_model {
    fm_tm_options opt;
    fm_tm_tensor *tensors;
    size_t n_tensors, cap_tensors;
    cJSON *config;           /* config.json as an editable tree (owned) */
    char *config_text;       /* if set (malloc'ed), written verbatim instead of `config` */
    int write_config;        /* 0: write no config.json (default 1) */
    int write_weights;       /* 0: write neither model.safetensors nor index/shards (default 1) */
    char *index_text;        /* sharded: if set (malloc'ed), written verbatim as the index */
    char *header_text;       /* if set (malloc'ed), the JSON header of every safetensors file written
                                verbatim (the data section is still the tensors' bytes) */
    char *metadata_json;     /* JSON value of "__metadata__" (malloc'ed); NULL = none.
                                Default {"format":"pt"} */
} fm_tm_model;

/* Build the tensor list and config for o (NULL = defaults). NULL on out of memory or bad options. */
fm_tm_model *fm_tm_create(const fm_tm_options *o);
void fm_tm_free(fm_tm_model *m);

/* Element size of a safetensors dtype string; 0 if unknown. */
size_t fm_tm_dtype_size(const char *dtype);

fm_tm_tensor *fm_tm_find(fm_tm_model *m, const char *name);
/* Remove a tensor from the file and the index. 0 if it existed. */
int fm_tm_remove(fm_tm_model *m, const char *name);
/* Append a tensor with deterministic data sized for dtype x shape (element size 4 for unknown
   dtypes); in the sharded form it goes to the last shard. A tensor of the same name may already
   exist (to write duplicates). NULL on failure. */
fm_tm_tensor *fm_tm_add(fm_tm_model *m, const char *name, const char *dtype, int n_dims, const int64_t *shape);
/* Give t a new shape and/or dtype (dtype NULL = keep) with fresh data of the matching byte size
   (generated with seed 1). 0 on success. To make the bytes disagree with the header, edit t->dtype / t->shape directly. */
int fm_tm_retype(fm_tm_tensor *t, const char *dtype, int n_dims, const int64_t *shape);
/* Set t->raw_entry to a copy of json. 0 on success. */
int fm_tm_set_raw_entry(fm_tm_tensor *t, const char *json);
/* Replace one of the malloc'ed text hooks (config_text, index_text, header_text, metadata_json)
   with a copy of s (NULL clears it). 0 on success. */
int fm_tm_set_text(char **slot, const char *s);

/* Shard file name, "model-00001-of-00003.safetensors" style (k from 0). */
void fm_tm_shard_name(const fm_tm_model *m, int k, char *buf, size_t cap);

/* The safetensors image (8-byte length + header padded with spaces to a multiple of 8 + data) of
   shard k, or of all tensors when k < 0. malloc'ed, exactly *size bytes; NULL on out of memory. */
uint8_t *fm_tm_image(const fm_tm_model *m, int k, size_t *size);
/* An image from a raw header: 8-byte little-endian strlen(header), header bytes, then data. */
uint8_t *fm_tm_raw_image(const char *header, const void *data, size_t data_len, size_t *size);
/* The config / index JSON text that fm_tm_write would write (malloc'ed). */
char *fm_tm_config_json(const fm_tm_model *m);
char *fm_tm_index_json(const fm_tm_model *m);

/* Write the checkpoint into an existing directory. 0 on success. */
int fm_tm_write(const fm_tm_model *m, const char *dir);
/* Write the checkpoint of o (config.json + a single model.safetensors; o->n_shards must be 0) into an
   existing directory without holding the weights in memory: each tensor is generated and written
   in pieces. The files are byte-identical to fm_tm_write(fm_tm_create(o), dir), so shapes as large
   as falcon-mamba-7b can be written (tests/bench/make_bench_model). 0 on success. */
int fm_tm_write_streamed(const fm_tm_options *o, const char *dir);
/* fm_test_mkdtemp + fm_tm_write; the new directory (malloc'ed) or NULL. */
char *fm_tm_write_tmp(const fm_tm_model *m);
/* Cut dir/name down to its first `size` bytes. 0 on success. */
int fm_tm_truncate(const char *dir, const char *name, size_t size);

#endif
