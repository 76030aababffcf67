/* tiny_model.c - small deterministic FalconMamba / Mamba checkpoints for tests (see tiny_model.h). */
#include "tiny_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* ---- small helpers ------------------------------------------------------------------------------ */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

int fm_tm_set_text(char **slot, const char *s) {
    char *p = NULL;
    if (s && !(p = dup_str(s))) return -1;
    free(*slot);
    *slot = p;
    return 0;
}

static const struct {
    const char *name;
    size_t size;
} k_dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
    {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8},
};

size_t fm_tm_dtype_size(const char *dtype) {
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (strcmp(k_dtypes[i].name, dtype) == 0) return k_dtypes[i].size;
    return 0;
}

/* splitmix64: a good stream from any seed. */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static float next_uniform(uint64_t *s) { return (float)((double)(next_u64(s) >> 11) / 4503599627370496.0 - 1.0); }

static uint64_t name_seed(uint32_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Test-data encoders (round half up; values here are finite and moderate). */
static uint16_t enc_bf16(float f) { return (uint16_t)((f32_bits(f) + 0x8000u) >> 16); }

static uint16_t enc_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    int exp = (int)((u >> 23) & 0xff) - 127 + 15;
    if (exp <= 0) return sign; /* tiny: flush to zero */
    uint32_t man = ((u & 0x7fffffu) + 0x1000u) >> 13;
    if (man == 0x400u) {
        man = 0;
        exp++;
    }
    if (exp >= 31) return (uint16_t)(sign | 0x7bffu);
    return (uint16_t)(sign | (uint32_t)exp << 10 | man);
}

/* Store n floats as dtype into out (which holds n * size bytes). Non-float dtypes get integers. */
static void encode(const float *v, size_t n, const char *dtype, uint8_t *out) {
    size_t es = fm_tm_dtype_size(dtype);
    int kind = strcmp(dtype, "F32") == 0 ? 0 : strcmp(dtype, "BF16") == 0 ? 1 : strcmp(dtype, "F16") == 0 ? 2
             : strcmp(dtype, "F64") == 0 ? 3 : 4; /* tested once, not per element (large checkpoints) */
    for (size_t i = 0; i < n; i++) {
        if (kind == 0) {
            memcpy(out + 4 * i, &v[i], 4);
        } else if (kind == 1) {
            uint16_t h = enc_bf16(v[i]);
            memcpy(out + 2 * i, &h, 2);
        } else if (kind == 2) {
            uint16_t h = enc_f16(v[i]);
            memcpy(out + 2 * i, &h, 2);
        } else if (kind == 3) {
            double d = v[i];
            memcpy(out + 8 * i, &d, 8);
        } else {
            int64_t k = (int64_t)lrintf(v[i] * 100.0f);
            size_t s = es ? es : 4;
            for (size_t b = 0; b < s; b++) out[s * i + b] = (uint8_t)((uint64_t)k >> (8 * b)); /* little-endian */
        }
    }
}

/* ---- weight values ------------------------------------------------------------------------------ */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Values i0 .. i0+n-1 of a tensor, chosen by its name like a real initialisation would. *s is the
   tensor's random stream (name_seed(seed, name) at i0 = 0), advanced by one draw per value, so a
   tensor filled in consecutive pieces gets the same values as one filled at once. */
static void fill_values_at(const char *name, const int64_t *shape, int n_dims, uint64_t *sp, size_t i0,
                           float *v, size_t n) {
    uint64_t s = *sp;
    int64_t last = n_dims > 0 ? shape[n_dims - 1] : 1;
    if (ends_with(name, "mixer.A_log")) {
        for (size_t i = 0; i < n; i++) v[i] = logf((float)((i0 + i) % (size_t)(last > 0 ? last : 1) + 1)) + 0.05f * next_uniform(&s);
    } else if (ends_with(name, "mixer.D")) {
        for (size_t i = 0; i < n; i++) v[i] = 1.0f + 0.1f * next_uniform(&s);
    } else if (ends_with(name, "dt_proj.bias")) {
        /* softplus^-1 of dt in ~[0.001, 0.1] */
        for (size_t i = 0; i < n; i++) v[i] = -4.5f + 2.2f * next_uniform(&s);
    } else if (ends_with(name, "norm.weight") || ends_with(name, "norm_f.weight")) {
        for (size_t i = 0; i < n; i++) v[i] = 1.0f + 0.2f * next_uniform(&s);
    } else if (ends_with(name, ".bias")) {
        for (size_t i = 0; i < n; i++) v[i] = 0.1f * next_uniform(&s);
    } else if (ends_with(name, "conv1d.weight")) {
        for (size_t i = 0; i < n; i++) v[i] = 0.5f * next_uniform(&s);
    } else if (ends_with(name, "embeddings.weight")) {
        for (size_t i = 0; i < n; i++) v[i] = next_uniform(&s);
    } else {
        /* matrices [out][in]: ~ 1/sqrt(fan_in) */
        float scale = 1.0f / sqrtf((float)(last > 0 ? last : 1));
        for (size_t i = 0; i < n; i++) v[i] = scale * next_uniform(&s);
    }
    *sp = s;
}

/* Values for a whole tensor. */
static void fill_values(const fm_tm_options *o, const char *name, const int64_t *shape, int n_dims, float *v,
                        size_t n) {
    uint64_t s = name_seed(o->seed, name);
    fill_values_at(name, shape, n_dims, &s, 0, v, n);
}

static size_t n_elems(int n_dims, const int64_t *shape) {
    size_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= (size_t)(shape[i] < 0 ? 0 : shape[i]);
    return n;
}

/* (Re)generate t's bytes for its dtype and shape. opt supplies the seed. */
static int regen(const fm_tm_options *opt, fm_tm_tensor *t) {
    size_t n = n_elems(t->n_dims, t->shape);
    size_t es = fm_tm_dtype_size(t->dtype);
    if (!es) es = 4;
    float *v = malloc((n ? n : 1) * sizeof *v);
    uint8_t *d = malloc(n * es > 0 ? n * es : 1);
    if (!v || !d) {
        free(v);
        free(d);
        return -1;
    }
    fill_values(opt, t->name, t->shape, t->n_dims, v, n);
    encode(v, n, t->dtype, d);
    free(v);
    free(t->data);
    t->data = d;
    t->n_bytes = n * es;
    return 0;
}

/* ---- the model ---------------------------------------------------------------------------------- */

void fm_tm_options_init(fm_tm_options *o) {
    memset(o, 0, sizeof *o);
    o->d_model = 16;
    o->n_layer = 2;
    o->d_inner = 32;
    o->d_state = 4;
    o->d_conv = 4;
    o->dt_rank = 1;
    o->vocab = 24;
    o->tied = 1;
    o->use_bias = 0;
    o->use_conv_bias = 1;
    o->model_type = "falcon_mamba";
    o->dtype = "F32";
    o->seed = 1;
    o->n_shards = 0;
}

static void free_tensor(fm_tm_tensor *t) {
    free(t->name);
    free(t->data);
    free(t->raw_entry);
    memset(t, 0, sizeof *t);
}

void fm_tm_free(fm_tm_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_tensors; i++) free_tensor(&m->tensors[i]);
    free(m->tensors);
    cJSON_Delete(m->config);
    free(m->config_text);
    free(m->index_text);
    free(m->header_text);
    free(m->metadata_json);
    free(m);
}

fm_tm_tensor *fm_tm_find(fm_tm_model *m, const char *name) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

int fm_tm_remove(fm_tm_model *m, const char *name) {
    fm_tm_tensor *t = fm_tm_find(m, name);
    if (!t) return -1;
    size_t i = (size_t)(t - m->tensors);
    free_tensor(t);
    memmove(&m->tensors[i], &m->tensors[i + 1], (m->n_tensors - i - 1) * sizeof *m->tensors);
    m->n_tensors--;
    return 0;
}

/* with_data 0: only the entry (name, dtype, shape, n_bytes), data NULL, for fm_tm_write_streamed. */
static fm_tm_tensor *add_tensor(fm_tm_model *m, const char *name, const char *dtype, int n_dims,
                                const int64_t *shape, int with_data) {
    if (n_dims < 0 || n_dims > FM_TM_MAX_DIMS || strlen(dtype) >= sizeof m->tensors[0].dtype) return NULL;
    if (m->n_tensors == m->cap_tensors) {
        size_t cap = m->cap_tensors ? 2 * m->cap_tensors : 32;
        fm_tm_tensor *g = realloc(m->tensors, cap * sizeof *g);
        if (!g) return NULL;
        m->tensors = g;
        m->cap_tensors = cap;
    }
    fm_tm_tensor *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = dup_str(name))) return NULL;
    strcpy(t->dtype, dtype);
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->shape[i] = shape[i];
    t->shard = m->opt.n_shards > 0 ? m->opt.n_shards - 1 : 0;
    if (with_data) {
        if (regen(&m->opt, t)) {
            free_tensor(t);
            return NULL;
        }
    } else {
        size_t es = fm_tm_dtype_size(t->dtype);
        t->n_bytes = n_elems(t->n_dims, t->shape) * (es ? es : 4);
    }
    m->n_tensors++;
    return t;
}

fm_tm_tensor *fm_tm_add(fm_tm_model *m, const char *name, const char *dtype, int n_dims, const int64_t *shape) {
    return add_tensor(m, name, dtype, n_dims, shape, 1);
}

int fm_tm_retype(fm_tm_tensor *t, const char *dtype, int n_dims, const int64_t *shape) {
    if (n_dims < 0 || n_dims > FM_TM_MAX_DIMS) return -1;
    if (dtype) {
        if (strlen(dtype) >= sizeof t->dtype) return -1;
        strcpy(t->dtype, dtype);
    }
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->shape[i] = shape[i];
    fm_tm_options o;
    fm_tm_options_init(&o);
    return regen(&o, t);
}

int fm_tm_set_raw_entry(fm_tm_tensor *t, const char *json) { return fm_tm_set_text(&t->raw_entry, json); }

static cJSON *make_config(const fm_tm_options *o) {
    int falcon = strcmp(o->model_type, "mamba") != 0;
    cJSON *c = cJSON_CreateObject();
    cJSON *arch = cJSON_CreateArray();
    if (!c || !arch) {
        cJSON_Delete(c);
        cJSON_Delete(arch);
        return NULL;
    }
    cJSON_AddItemToArray(arch, cJSON_CreateString(falcon ? "FalconMambaForCausalLM" : "MambaForCausalLM"));
    cJSON_AddItemToObject(c, "architectures", arch);
    cJSON_AddStringToObject(c, "model_type", o->model_type);
    cJSON_AddNumberToObject(c, "bos_token_id", 1);
    cJSON_AddNumberToObject(c, "eos_token_id", 2);
    cJSON_AddNumberToObject(c, "pad_token_id", 0);
    cJSON_AddNumberToObject(c, "conv_kernel", o->d_conv);
    cJSON_AddNumberToObject(c, "expand", 2);
    cJSON_AddStringToObject(c, "hidden_act", "silu");
    cJSON_AddNumberToObject(c, "hidden_size", o->d_model);
    cJSON_AddNumberToObject(c, "intermediate_size", o->d_inner);
    cJSON_AddNumberToObject(c, "layer_norm_epsilon", 1e-5);
    if (falcon) cJSON_AddNumberToObject(c, "mixer_rms_eps", 1e-6);
    cJSON_AddNumberToObject(c, "num_hidden_layers", o->n_layer);
    cJSON_AddBoolToObject(c, "residual_in_fp32", 1);
    cJSON_AddNumberToObject(c, "state_size", o->d_state);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", o->tied);
    cJSON_AddNumberToObject(c, "time_step_rank", o->dt_rank);
    cJSON_AddBoolToObject(c, "use_bias", o->use_bias);
    cJSON_AddBoolToObject(c, "use_conv_bias", o->use_conv_bias);
    cJSON_AddNumberToObject(c, "vocab_size", o->vocab);
    return c;
}

static fm_tm_model *create(const fm_tm_options *opt, int with_data) {
    fm_tm_options o;
    if (opt) o = *opt;
    else fm_tm_options_init(&o);
    if (!o.model_type) o.model_type = "falcon_mamba";
    if (!o.dtype) o.dtype = "F32";
    if (o.d_model < 1 || o.n_layer < 1 || o.d_inner < 1 || o.d_state < 1 || o.d_conv < 1 || o.dt_rank < 1 ||
        o.vocab < 1 || o.n_shards < 0 || !fm_tm_dtype_size(o.dtype))
        return NULL;
    fm_tm_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->opt = o;
    m->write_config = 1;
    m->write_weights = 1;
    if (!(m->config = make_config(&o)) || fm_tm_set_text(&m->metadata_json, "{\"format\":\"pt\"}")) {
        fm_tm_free(m);
        return NULL;
    }
    const char *dt = o.dtype;
    int64_t d = o.d_model, di = o.d_inner, ds = o.d_state, k = o.d_conv, r = o.dt_rank, v = o.vocab;
    int ok = 1;
#define ADD(nm, nd, ...)                                                                                              \
    do {                                                                                                              \
        int64_t sh_[] = {__VA_ARGS__};                                                                                \
        ok = ok && add_tensor(m, nm, dt, nd, sh_, with_data) != NULL;                                                 \
    } while (0)
    ADD("backbone.embeddings.weight", 2, v, d);
    char n[160];
    for (int i = 0; i < o.n_layer; i++) {
#define NM(suffix) (snprintf(n, sizeof n, "backbone.layers.%d.%s", i, suffix), n)
        ADD(NM("norm.weight"), 1, d);
        ADD(NM("mixer.in_proj.weight"), 2, 2 * di, d);
        if (o.use_bias) ADD(NM("mixer.in_proj.bias"), 1, 2 * di);
        ADD(NM("mixer.conv1d.weight"), 3, di, 1, k);
        if (o.use_conv_bias) ADD(NM("mixer.conv1d.bias"), 1, di);
        ADD(NM("mixer.x_proj.weight"), 2, r + 2 * ds, di);
        ADD(NM("mixer.dt_proj.weight"), 2, di, r);
        ADD(NM("mixer.dt_proj.bias"), 1, di);
        ADD(NM("mixer.A_log"), 2, di, ds);
        ADD(NM("mixer.D"), 1, di);
        ADD(NM("mixer.out_proj.weight"), 2, d, di);
        if (o.use_bias) ADD(NM("mixer.out_proj.bias"), 1, d);
#undef NM
    }
    ADD("backbone.norm_f.weight", 1, d);
    if (!o.tied) ADD("lm_head.weight", 2, v, d);
#undef ADD
    if (!ok) {
        fm_tm_free(m);
        return NULL;
    }
    /* Contiguous groups, one per shard, every shard non-empty when there are enough tensors. */
    if (o.n_shards > 0)
        for (size_t i = 0; i < m->n_tensors; i++) m->tensors[i].shard = (int)(i * (size_t)o.n_shards / m->n_tensors);
    return m;
}

fm_tm_model *fm_tm_create(const fm_tm_options *opt) { return create(opt, 1); }

/* ---- serialising -------------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void sb_add(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap <= b->n + (size_t)k) cap *= 2;
        char *g = realloc(b->p, cap);
        if (!g) {
            b->oom = 1;
            return;
        }
        b->p = g;
        b->cap = cap;
    }
}

static void sb_json_string(sbuf *b, const char *s) {
    sb_add(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') sb_add(b, "\\%c", *p);
        else if (*p < 0x20) sb_add(b, "\\u%04x", *p);
        else sb_add(b, "%c", *p);
    }
    sb_add(b, "\"");
}

static int in_file(const fm_tm_tensor *t, int k) { return !t->omit_from_file && (k < 0 || t->shard == k); }

/* The JSON header of shard k (all tensors when k < 0), padded; h->oom on failure. */
static void image_header(const fm_tm_model *m, int k, sbuf *h_) {
    sbuf h = *h_;
    if (m->header_text) {
        sb_add(&h, "%s", m->header_text);
    } else {
        sb_add(&h, "{");
        int first = 1;
        if (m->metadata_json) {
            sb_add(&h, "\"__metadata__\":%s", m->metadata_json);
            first = 0;
        }
        size_t off = 0;
        for (size_t i = 0; i < m->n_tensors; i++) {
            const fm_tm_tensor *t = &m->tensors[i];
            if (!in_file(t, k)) continue;
            if (!first) sb_add(&h, ",");
            first = 0;
            sb_json_string(&h, t->name);
            sb_add(&h, ":");
            if (t->raw_entry) {
                sb_add(&h, "%s", t->raw_entry);
            } else {
                sb_add(&h, "{\"dtype\":");
                sb_json_string(&h, t->dtype);
                sb_add(&h, ",\"shape\":[");
                for (int j = 0; j < t->n_dims; j++) sb_add(&h, "%s%lld", j ? "," : "", (long long)t->shape[j]);
                uint64_t b = t->override_offsets ? t->begin : off, e = t->override_offsets ? t->end : off + t->n_bytes;
                sb_add(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)b, (unsigned long long)e);
            }
            off += t->n_bytes;
        }
        sb_add(&h, "}");
        while (!h.oom && h.n % 8) sb_add(&h, " "); /* as the reference writer pads */
    }
    *h_ = h;
}

uint8_t *fm_tm_image(const fm_tm_model *m, int k, size_t *size) {
    size_t data_len = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (in_file(&m->tensors[i], k)) data_len += m->tensors[i].n_bytes;
    sbuf h = {0};
    image_header(m, k, &h);
    if (h.oom) {
        free(h.p);
        return NULL;
    }
    size_t total = 8 + h.n + data_len;
    uint8_t *img = malloc(total ? total : 1);
    if (!img) {
        free(h.p);
        return NULL;
    }
    for (int i = 0; i < 8; i++) img[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    memcpy(img + 8, h.p, h.n);
    free(h.p);
    size_t pos = 8 + h.n;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const fm_tm_tensor *t = &m->tensors[i];
        if (!in_file(t, k)) continue;
        memcpy(img + pos, t->data, t->n_bytes);
        pos += t->n_bytes;
    }
    *size = total;
    return img;
}

uint8_t *fm_tm_raw_image(const char *header, const void *data, size_t data_len, size_t *size) {
    size_t hl = strlen(header);
    uint8_t *img = malloc(8 + hl + data_len);
    if (!img) return NULL;
    for (int i = 0; i < 8; i++) img[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(img + 8, header, hl);
    if (data_len) memcpy(img + 8 + hl, data, data_len);
    *size = 8 + hl + data_len;
    return img;
}

char *fm_tm_config_json(const fm_tm_model *m) {
    if (m->config_text) return dup_str(m->config_text);
    return cJSON_Print(m->config);
}

void fm_tm_shard_name(const fm_tm_model *m, int k, char *buf, size_t cap) {
    snprintf(buf, cap, "model-%05d-of-%05d.safetensors", k + 1, m->opt.n_shards);
}

char *fm_tm_index_json(const fm_tm_model *m) {
    if (m->index_text) return dup_str(m->index_text);
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *map = cJSON_CreateObject();
    if (!root || !meta || !map) {
        cJSON_Delete(root);
        cJSON_Delete(meta);
        cJSON_Delete(map);
        return NULL;
    }
    double total = 0;
    char name[96];
    for (size_t i = 0; i < m->n_tensors; i++) {
        const fm_tm_tensor *t = &m->tensors[i];
        total += (double)t->n_bytes;
        if (t->omit_from_index) continue;
        fm_tm_shard_name(m, t->shard, name, sizeof name);
        cJSON_AddItemToObject(map, t->name, cJSON_CreateString(name));
    }
    cJSON_AddNumberToObject(meta, "total_size", total);
    cJSON_AddItemToObject(root, "metadata", meta);
    cJSON_AddItemToObject(root, "weight_map", map);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

static int write_text(const char *dir, const char *name, char *text) {
    if (!text) return -1;
    int rc = fm_test_write_file(dir, name, text, strlen(text));
    free(text);
    return rc;
}

static int write_image(const fm_tm_model *m, const char *dir, const char *name, int k) {
    size_t n;
    uint8_t *img = fm_tm_image(m, k, &n);
    if (!img) return -1;
    int rc = fm_test_write_file(dir, name, img, n);
    free(img);
    return rc;
}

int fm_tm_write(const fm_tm_model *m, const char *dir) {
    if (m->write_config && write_text(dir, "config.json", fm_tm_config_json(m))) return -1;
    if (!m->write_weights) return 0;
    if (m->opt.n_shards == 0) return write_image(m, dir, "model.safetensors", -1);
    char name[96];
    for (int k = 0; k < m->opt.n_shards; k++) {
        fm_tm_shard_name(m, k, name, sizeof name);
        if (write_image(m, dir, name, k)) return -1;
    }
    return write_text(dir, "model.safetensors.index.json", fm_tm_index_json(m));
}

char *fm_tm_write_tmp(const fm_tm_model *m) {
    char *dir = fm_test_mkdtemp();
    if (!dir) return NULL;
    if (fm_tm_write(m, dir)) {
        fm_test_rmtree(dir);
        free(dir);
        return NULL;
    }
    return dir;
}

int fm_tm_truncate(const char *dir, const char *name, size_t size) {
    size_t plen = strlen(dir) + strlen(name) + 2;
    char *path = malloc(plen);
    if (!path) return -1;
    snprintf(path, plen, "%s/%s", dir, name);
    size_t n = 0;
    void *data = fm_test_read_file(path, &n);
    free(path);
    if (!data) return -1;
    int rc = size > n ? -1 : fm_test_write_file(dir, name, data, size);
    free(data);
    return rc;
}

int fm_tm_write_streamed(const fm_tm_options *o, const char *dir) {
    if (!o || o->n_shards != 0) return -1;
    fm_tm_model *m = create(o, 0);
    if (!m) return -1;
    int rc = -1;
    FILE *f = NULL;
    float *v = NULL;
    uint8_t *bytes = NULL;
    sbuf h = {0};
    char path[2048];
    const size_t chunk = (size_t)1 << 20; /* values per piece: 4 MiB of floats */
    if (write_text(dir, "config.json", fm_tm_config_json(m))) goto out;
    image_header(m, -1, &h);
    if (h.oom) goto out;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!(f = fopen(path, "wb")) || !(v = malloc(chunk * sizeof *v)) || !(bytes = malloc(chunk * 8))) goto out;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    if (fwrite(len, 1, 8, f) != 8 || fwrite(h.p, 1, h.n, f) != h.n) goto out;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const fm_tm_tensor *t = &m->tensors[i];
        size_t n = n_elems(t->n_dims, t->shape), es = fm_tm_dtype_size(t->dtype);
        uint64_t s = name_seed(m->opt.seed, t->name);
        for (size_t i0 = 0; i0 < n; i0 += chunk) {
            size_t k = n - i0 < chunk ? n - i0 : chunk;
            fill_values_at(t->name, t->shape, t->n_dims, &s, i0, v, k);
            encode(v, k, t->dtype, bytes);
            if (fwrite(bytes, es, k, f) != k) goto out;
        }
    }
    rc = 0;
out:
    if (f && fclose(f) != 0) rc = -1;
    free(h.p);
    free(v);
    free(bytes);
    fm_tm_free(m);
    return rc;
}
