/*
 * backend.h - the vtable between the core (model graph, state cache, API) and a compute backend.
 *
 * A backend (cpu/, later cuda/) includes only this header. It owns memory ("device pointers" that
 * the core never dereferences, only offsets) and implements a few coarse ops. Every op works on a
 * batch of rows; rows are grouped into segments, one per sequence, each segment being consecutive
 * time steps of one sequence with its own state slot. Prefill of one session is one segment of n
 * rows; a batched decode of N sessions is N segments of one row.
 */
#ifndef FM_BACKEND_H
#define FM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "half.h"  /* the storage types' conversions are part of the backend contract */
#include "quant.h" /* and so are the quantized block layouts */

#define FM_BACKEND_ABI_VERSION 2

/* Status values a backend returns; they equal the public fm_status codes of the same meaning
   (checked at compile time in backend_registry.c). */
enum {
    FM_BE_OK = 0,
    FM_BE_ERR_INVALID_ARGUMENT = -1,
    FM_BE_ERR_OUT_OF_MEMORY = -2,
    FM_BE_ERR_BACKEND = -6,
    FM_BE_ERR_INTERNAL = -11
};

/* Storage types a backend may hold weights in. The quantized ones (quant.h) are only ever requested
   as a store_dtype, for matrices whose cols are a multiple of FM_QBLOCK; sources are never quantized. */
typedef enum fm_dtype {
    FM_DTYPE_F32 = 0,
    FM_DTYPE_F16 = 1,
    FM_DTYPE_BF16 = 2,
    FM_DTYPE_Q8_0 = 3,
    FM_DTYPE_Q4_0 = 4
} fm_dtype;

/* Bytes of one row of `cols` elements stored as t. */
static inline size_t fm_dtype_row_bytes(fm_dtype t, size_t cols) {
    switch (t) {
    case FM_DTYPE_F32: return 4 * cols;
    case FM_DTYPE_F16:
    case FM_DTYPE_BF16: return 2 * cols;
    case FM_DTYPE_Q8_0: return cols / FM_QBLOCK * sizeof(fm_block_q8_0);
    case FM_DTYPE_Q4_0: return cols / FM_QBLOCK * sizeof(fm_block_q4_0);
    }
    return 0;
}

/* Element i of a (possibly unaligned) array of dtype t (F32, F16 or BF16), widened to fp32. */
static inline float fm_dtype_load_f32(const void *data, fm_dtype t, size_t i) {
    const unsigned char *p = (const unsigned char *)data;
    uint16_t h;
    float f;
    switch (t) {
    case FM_DTYPE_F32: memcpy(&f, p + 4 * i, 4); return f;
    case FM_DTYPE_F16: memcpy(&h, p + 2 * i, 2); return fm_f16_to_f32(h);
    case FM_DTYPE_BF16: memcpy(&h, p + 2 * i, 2); return fm_bf16_to_f32(h);
    default: break;
    }
    return 0.0f;
}

/* Backend-owned weight tensor (2-D, row-major: rows x cols; vectors have rows = 1). */
typedef struct fm_weight fm_weight;

/* Host data the core hands to weight_create. `data` may be unaligned (it points into a mapped
   safetensors file). */
typedef struct fm_weight_desc {
    const char *name;    /* for error messages */
    fm_dtype src_dtype;
    const void *data;
    int64_t rows, cols;
    fm_dtype store_dtype; /* what the backend should keep */
    /* Nonzero: `data` stays mapped and unchanged until weight_free, so when store_dtype == src_dtype
       a host-memory backend may use it in place instead of copying (it is only 2-byte aligned). */
    int32_t persistent;
} fm_weight_desc;

/* One sequence's rows within a batch and that sequence's state for the current layer. */
typedef struct fm_segment {
    int32_t row0;       /* first row of the segment in the batch */
    int32_t n_rows;     /* consecutive time steps */
    float *conv_state;  /* device pointer: [d_inner][d_conv - 1], oldest input first */
    float *ssm_state;   /* device pointer: [d_inner][d_state] */
} fm_segment;

/* conv1d: u[r] = silu(bias + sum_k w[c][k] * in[t - (K-1) + k]) per channel c, where inputs before
   the segment's first row come from conv_state; conv_state is updated to the last K-1 inputs. */
typedef struct fm_conv_args {
    const fm_segment *segs;
    size_t n_segs;
    const float *in;     /* [rows][ld_in], channels 0..d_inner-1 are the conv input */
    size_t ld_in;
    float *out;          /* [rows][d_inner] */
    const fm_weight *w;  /* f32 [d_inner][d_conv] */
    const fm_weight *b;  /* f32 [d_inner] or NULL */
    int32_t d_inner, d_conv;
} fm_conv_args;

/* ssm: from xdbl = [dt | B | C] (already x_proj'ed): optional weightless rmsnorm of dt, B and C
   (FalconMamba), delta = softplus(dt_proj(dt) + dt_bias), the selective scan over the segment's
   rows starting from ssm_state (updated), y = s.C + D*u, then y *= silu(z). */
typedef struct fm_ssm_args {
    const fm_segment *segs;
    size_t n_segs;
    const float *xdbl;   /* [rows][dt_rank + 2*d_state] */
    const float *u;      /* [rows][d_inner] */
    const float *z;      /* [rows][ld_z] gate */
    size_t ld_z;
    float *y;            /* [rows][d_inner] */
    const fm_weight *dt_w; /* [d_inner][dt_rank], storage type of the matrices */
    const fm_weight *dt_b; /* f32 [d_inner] */
    const fm_weight *A;    /* f32 [d_inner][d_state], already -exp(A_log) */
    const fm_weight *D;    /* f32 [d_inner] */
    int32_t d_inner, d_state, dt_rank;
    int32_t norm_dt_b_c;   /* 1 for FalconMamba, 0 for plain Mamba */
    float norm_eps;
} fm_ssm_args;

/* One layer's weights as fm_model holds them (biases NULL where the model has none). */
typedef struct fm_layer_weights {
    const fm_weight *norm, *in_proj, *in_proj_b, *conv_w, *conv_b, *x_proj, *dt_proj, *dt_b, *A, *D, *out_proj,
        *out_proj_b;
} fm_layer_weights;

/* Every layer of a decode step (n_seqs sequences of one row each) as one call: the same result as
   fm_model_forward's per-layer ops (rmsnorm, in_proj, conv1d, x_proj, ssm, out_proj + residual) on
   the same workspace buffers. */
typedef struct fm_layers_args {
    const fm_layer_weights *layers; /* n_layer entries */
    int32_t n_layer, d_model, d_inner, d_state, dt_rank, d_conv;
    int32_t norm_dt_b_c;              /* as fm_ssm_args */
    float norm_eps, mixer_eps;        /* the layer norms', the dt/B/C norms' */
    size_t n_seqs;
    float *const *states;             /* each sequence's slot: all layers' conv states, then their ssm states */
    float *x;                         /* [n_seqs][d_model]: the embeddings in, the residual stream out */
    float *xz, *u, *xdbl, *y;         /* workspace the ops would use, free to overwrite */
} fm_layers_args;

/* One decode step as step_begin sees it: n_seqs sequences of one row each. */
typedef struct fm_step_desc {
    size_t n_seqs;
    const int32_t *tokens;   /* host memory, n_seqs validated ids */
    float *const *states;    /* the state slot (device pointer) of each sequence */
    /* What a captured graph is specific to besides n_seqs: the workspace buffers and flags the
       step's ops will use. Equal keys mean the same op sequence on the same buffers. */
    uint64_t key[12];
    size_t n_key;
} fm_step_desc;

/* How the backend reports failures: the core passes this in at init. */
typedef struct fm_backend_host {
    void (*set_error)(int status, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 2, 3)))
#endif
        ;
} fm_backend_host;

typedef struct fm_backend_config {
    int32_t device;
    int32_t n_threads; /* 0 = all cores */
} fm_backend_config;

/* The backend's memory is host memory: the core keeps the checkpoint mapped for the model's life and
   marks weight descs persistent, so weights stored as on disk are used in place. */
#define FM_BE_FLAG_HOST_MEMORY 1u

/* Every function returning int returns an fm_status value (0 = ok) and has called host->set_error
   on failure. Pointers named "device" are the backend's; for the CPU backend they are host memory. */
typedef struct fm_backend_ops {
    uint32_t abi_version; /* FM_BACKEND_ABI_VERSION */
    size_t struct_size;   /* sizeof(fm_backend_ops) the backend was built with */
    const char *name;
    uint32_t flags;       /* FM_BE_FLAG_* */

    int (*init)(const fm_backend_host *host, const fm_backend_config *cfg, void **be_out);
    void (*shutdown)(void *be);

    /* Memory. alloc returns NULL (after set_error) on failure; sizes are in bytes. */
    void *(*alloc)(void *be, size_t bytes);
    void (*free)(void *be, void *ptr);
    int (*upload)(void *be, void *dst_device, const void *src_host, size_t bytes);
    int (*download)(void *be, void *dst_host, const void *src_device, size_t bytes);
    int (*copy)(void *be, void *dst_device, const void *src_device, size_t bytes);
    int (*zero)(void *be, void *dst_device, size_t bytes);

    /* Weights. */
    int (*weight_create)(void *be, const fm_weight_desc *desc, fm_weight **out);
    void (*weight_free)(void *be, fm_weight *w);
    size_t (*weight_bytes)(const fm_weight *w);

    /* Ops. All activations are fp32, row-major, device pointers. */
    /* x[r] = row tokens[r] of E (tokens are host memory, already validated). */
    int (*embed)(void *be, const fm_weight *E, const int32_t *tokens, size_t n, float *x);
    /* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w (w may be NULL = no weight). */
    int (*rmsnorm)(void *be, const float *x, const fm_weight *w, size_t n, size_t d, float eps, float *y);
    /* y[r] (+)= W x[r] + b: x is [n][W.cols], y is [n][W.rows]; b may be NULL. */
    int (*matmul)(void *be, const fm_weight *W, const fm_weight *b, const float *x, size_t n, float *y,
                  int accumulate);
    int (*conv1d)(void *be, const fm_conv_args *a);
    int (*ssm)(void *be, const fm_ssm_args *a);
    /* Wait until all submitted work has finished. */
    int (*sync)(void *be);

    /* ---- Optional entries, appended in ABI 2 (never reorder). A NULL entry, or one beyond the
       backend's struct_size (see FM_BACKEND_HAS), is absent and the core does without it. ---- */

    /* Before init: the number of usable devices (>= 0), or a negative value with `why` (cap bytes)
       saying what is missing (no driver, no device, driver too old). FM_BACKEND_AUTO picks a backend
       that has one only when this returns > 0. */
    int (*probe)(char *why, size_t cap);
    /* Decode-step capture (CUDA graphs). fm_model_forward calls step_begin before a forward whose
       sequences all have one row. With *replayed = 1 on return the backend has enqueued the whole
       step from a graph captured earlier for the same key (logits land in the same workspace) and
       the core issues no ops; otherwise the core issues the ops as usual and then always calls
       step_end with their status (the backend may have recorded them). */
    int (*step_begin)(void *be, const fm_step_desc *d, int *replayed);
    int (*step_end)(void *be, int status);
    /* Device memory: bytes this backend instance holds now and at most so far, and the device's
       free and total bytes (any pointer may be NULL). */
    int (*mem_info)(void *be, size_t *used, size_t *peak, size_t *dev_free, size_t *dev_total);
    /* All layers of a decode step at once (fm_layers_args). *done = 0 with FM_BE_OK when the backend
       does not take this step (shape, batch size, weight types): the core then issues the ops. */
    int (*decode_layers)(void *be, const fm_layers_args *a, int *done);
} fm_backend_ops;

/* Whether ops (of the backend's own struct_size) provides the optional entry `field`. */
#define FM_BACKEND_HAS(ops, field)                                                                                    \
    ((ops)->struct_size >= offsetof(fm_backend_ops, field) + sizeof((ops)->field) && (ops)->field != NULL)

#endif /* FM_BACKEND_H */
