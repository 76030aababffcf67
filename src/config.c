/* config.c - config.json -> fm_config, with every field that changes the math validated. */
#include "config.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "error.h"
#include "file_util.h"

/* Upper bounds keep every size product far from overflow and refuse absurd files early. */
#define MAX_D_MODEL (1 << 16)
#define MAX_D_INNER (1 << 18)
#define MAX_D_STATE 1024
#define MAX_D_CONV 64
#define MAX_LAYERS 1024
#define MAX_VOCAB (1 << 24)

typedef struct parse_ctx {
    const cJSON *root;
    const char *file;
} parse_ctx;

/* Integer field: *out is set from the field, or left at its default when absent (if optional). */
static fm_status get_int(const parse_ctx *p, const char *key, int required, int64_t lo, int64_t hi,
                         int32_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->root, key);
    if (!v) {
        if (required) return fm_error(FM_ERR_FORMAT, "%s: field '%s' missing", p->file, key);
        return FM_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return fm_error(FM_ERR_FORMAT, "%s: field '%s' must be an integer", p->file, key);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return fm_error(FM_ERR_FORMAT, "%s: field '%s' = %.0f is out of range [%lld, %lld]", p->file, key,
                        v->valuedouble, (long long)lo, (long long)hi);
    *out = (int32_t)v->valuedouble;
    return FM_OK;
}

static fm_status get_bool(const parse_ctx *p, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->root, key);
    if (!v) return FM_OK;
    if (!cJSON_IsBool(v)) return fm_error(FM_ERR_FORMAT, "%s: field '%s' must be true or false", p->file, key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return FM_OK;
}

static fm_status get_eps(const parse_ctx *p, const char *key, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->root, key);
    if (!v) return FM_OK;
    /* checked after the conversion: a tiny double (1e-85) would become a float 0 (or a denormal) */
    if (!cJSON_IsNumber(v) || !((float)v->valuedouble >= FLT_MIN) || v->valuedouble > 1.0)
        return fm_error(FM_ERR_FORMAT, "%s: field '%s' must be a number in (0, 1] (at least %g)", p->file, key,
                        (double)FLT_MIN);
    *out = (float)v->valuedouble;
    return FM_OK;
}

/* Token ids may be an integer, null (none) or absent (default). A list takes its first entry, as
   generation configs sometimes list several eos ids. */
static fm_status get_token_id(const parse_ctx *p, const char *key, int32_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->root, key);
    if (!v) return FM_OK;
    if (cJSON_IsNull(v)) {
        *out = -1;
        return FM_OK;
    }
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!v || !cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > MAX_VOCAB)
        return fm_error(FM_ERR_FORMAT, "%s: field '%s' must be a token id or null", p->file, key);
    *out = (int32_t)v->valuedouble;
    return FM_OK;
}

static fm_status detect_arch(const parse_ctx *p, fm_arch *arch) {
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(p->root, "model_type");
    if (mt) {
        if (!cJSON_IsString(mt)) return fm_error(FM_ERR_FORMAT, "%s: field 'model_type' must be a string", p->file);
        if (strcmp(mt->valuestring, "falcon_mamba") == 0) *arch = FM_ARCH_FALCON_MAMBA;
        else if (strcmp(mt->valuestring, "mamba") == 0) *arch = FM_ARCH_MAMBA;
        else
            return fm_error(FM_ERR_UNSUPPORTED,
                            "%s: model_type '%s' is not supported (expected 'falcon_mamba' or 'mamba')", p->file,
                            mt->valuestring);
        return FM_OK;
    }
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(p->root, "architectures");
    const cJSON *a;
    cJSON_ArrayForEach(a, archs) {
        if (!cJSON_IsString(a)) continue;
        if (strcmp(a->valuestring, "FalconMambaForCausalLM") == 0) {
            *arch = FM_ARCH_FALCON_MAMBA;
            return FM_OK;
        }
        if (strcmp(a->valuestring, "MambaForCausalLM") == 0) {
            *arch = FM_ARCH_MAMBA;
            return FM_OK;
        }
    }
    return fm_error(FM_ERR_UNSUPPORTED, "%s: neither 'model_type' nor a known 'architectures' entry "
                                        "(FalconMambaForCausalLM, MambaForCausalLM) is present", p->file);
}

static fm_status parse_root(const parse_ctx *p, fm_config *c) {
    fm_status st;
    memset(c, 0, sizeof *c);
    if ((st = detect_arch(p, &c->arch))) return st;

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(p->root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return fm_error(FM_ERR_UNSUPPORTED, "%s: hidden_act must be \"silu\"", p->file);

    if ((st = get_int(p, "hidden_size", 1, 1, MAX_D_MODEL, &c->d_model))) return st;
    if ((st = get_int(p, "num_hidden_layers", 1, 1, MAX_LAYERS, &c->n_layer))) return st;
    if ((st = get_int(p, "vocab_size", 1, 1, MAX_VOCAB, &c->n_vocab))) return st;
    c->d_state = 16;
    if ((st = get_int(p, "state_size", 0, 1, MAX_D_STATE, &c->d_state))) return st;
    c->d_conv = 4;
    if ((st = get_int(p, "conv_kernel", 0, 1, MAX_D_CONV, &c->d_conv))) return st;

    /* intermediate_size wins over expand, as in transformers. */
    if (cJSON_GetObjectItemCaseSensitive(p->root, "intermediate_size")) {
        if ((st = get_int(p, "intermediate_size", 1, 1, MAX_D_INNER, &c->d_inner))) return st;
    } else {
        int32_t expand = 2;
        if ((st = get_int(p, "expand", 0, 1, 64, &expand))) return st;
        if ((int64_t)expand * c->d_model > MAX_D_INNER)
            return fm_error(FM_ERR_FORMAT, "%s: expand * hidden_size = %lld is too large", p->file,
                            (long long)expand * c->d_model);
        c->d_inner = expand * c->d_model;
    }

    const cJSON *tsr = cJSON_GetObjectItemCaseSensitive(p->root, "time_step_rank");
    if (!tsr || (cJSON_IsString(tsr) && strcmp(tsr->valuestring, "auto") == 0)) {
        c->dt_rank = (c->d_model + 15) / 16;
    } else if (cJSON_IsString(tsr)) {
        return fm_error(FM_ERR_FORMAT, "%s: field 'time_step_rank' must be an integer or \"auto\"", p->file);
    } else if ((st = get_int(p, "time_step_rank", 1, 1, MAX_D_INNER, &c->dt_rank))) {
        return st;
    }

    c->norm_eps = 1e-5f;
    if ((st = get_eps(p, "layer_norm_epsilon", &c->norm_eps))) return st;
    c->mixer_eps = 1e-6f;
    if ((st = get_eps(p, "mixer_rms_eps", &c->mixer_eps))) return st;

    c->use_bias = 0;
    c->use_conv_bias = 1;
    c->residual_in_fp32 = 1;
    c->tie_embeddings = 1; /* the transformers default */
    if ((st = get_bool(p, "use_bias", &c->use_bias))) return st;
    if ((st = get_bool(p, "use_conv_bias", &c->use_conv_bias))) return st;
    if ((st = get_bool(p, "residual_in_fp32", &c->residual_in_fp32))) return st;
    if ((st = get_bool(p, "tie_word_embeddings", &c->tie_embeddings))) return st;

    c->bos_id = 0;
    c->eos_id = 0;
    c->pad_id = 0;
    if ((st = get_token_id(p, "bos_token_id", &c->bos_id))) return st;
    if ((st = get_token_id(p, "eos_token_id", &c->eos_id))) return st;
    if ((st = get_token_id(p, "pad_token_id", &c->pad_id))) return st;
    if (c->bos_id >= c->n_vocab) c->bos_id = -1;
    if (c->eos_id >= c->n_vocab) c->eos_id = -1;
    if (c->pad_id >= c->n_vocab) c->pad_id = -1;
    return FM_OK;
}

fm_status fm_config_parse(const char *json, size_t len, const char *file, fm_config *out) {
    const char *end = NULL;
    cJSON *root = fm_json_parse(json, len, &end);
    if (!root) {
        size_t off = end && end >= json ? (size_t)(end - json) : 0;
        return fm_error(FM_ERR_FORMAT, "%s: malformed JSON near byte %zu", file, off);
    }
    if (!fm_only_whitespace(end, json, len)) {
        cJSON_Delete(root);
        return fm_error(FM_ERR_FORMAT, "%s: trailing bytes after the JSON value", file);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fm_error(FM_ERR_FORMAT, "%s: top level must be a JSON object", file);
    }
    parse_ctx p = {root, file};
    fm_config c;
    fm_status st = parse_root(&p, &c);
    cJSON_Delete(root);
    if (st == FM_OK) *out = c;
    return st;
}
