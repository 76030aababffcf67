/* config.h - the validated model configuration read from a checkpoint's config.json. */
#ifndef FM_CONFIG_H
#define FM_CONFIG_H

#include <stdint.h>

#include "falconmamba.h"

typedef enum fm_arch {
    FM_ARCH_FALCON_MAMBA = 0, /* Mamba-1 blocks with weightless rmsnorm on dt, B and C */
    FM_ARCH_MAMBA = 1         /* plain Mamba-1 (MambaForCausalLM) */
} fm_arch;

typedef struct fm_config {
    fm_arch arch;
    int32_t d_model;     /* hidden_size */
    int32_t d_inner;     /* intermediate_size, else expand * hidden_size */
    int32_t d_state;     /* state_size */
    int32_t d_conv;      /* conv_kernel */
    int32_t dt_rank;     /* time_step_rank, "auto" = ceil(hidden_size / 16) */
    int32_t n_layer;     /* num_hidden_layers */
    int32_t n_vocab;     /* vocab_size */
    float norm_eps;      /* layer_norm_epsilon */
    float mixer_eps;     /* mixer_rms_eps (FalconMamba only) */
    int use_bias;        /* in_proj / out_proj bias */
    int use_conv_bias;
    int residual_in_fp32;/* recorded; the library always keeps the residual in fp32 */
    int tie_embeddings;  /* tie_word_embeddings */
    int32_t bos_id, eos_id, pad_id; /* -1 = none */
} fm_config;

/* Parse and validate config.json text. `file` names the file in error messages. */
fm_status fm_config_parse(const char *json, size_t len, const char *file, fm_config *out);

#endif
