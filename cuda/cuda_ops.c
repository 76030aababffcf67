/* cuda_ops.c - the ops of the vtable on a context's stream: dispatch to the kernels (k_*.cu) and
   cuBLAS. Matrix products: n <= 8 rows -> our GEMV (fp32 activations, any storage type); more ->
   cuBLAS: f32 weights through sgemm (fp32, TF32 off); f16/bf16 weights through GemmEx (tensor cores,
   fp32 accumulation) on the activations split into two terms of the weights' type, hi + lo, so the
   result is as precise as fp32 activations (FM_CUDA_FAST=1: hi only, one product, activations
   rounded); quantized weights dequantized to bf16 a chunk of rows at a time (FM_CUDA_DQ_CHUNK_MB of
   weights per chunk, default 64; the dequantized values rounded to bf16), activations split hi + lo
   as above, then GemmEx. Up to MM_STACK_MAX_N rows (decode batches) hi and lo go through one product
   as 2n stacked rows, so the weights are read once
   (FM_CUDA_STACK=0: two products). FM_CUDA_EXACT=1: every type widened to fp32 and sgemm. */
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

static int done(cu_backend *be, cudaError_t e, const char *what) {
    int st = cu_err(be, e, what);
    cu_leave(be);
    return st;
}

/* The staging buffers are only for loading: gone once the model runs. */
static void first_op(cu_backend *be) {
    if (be->stage_bytes && !be->capturing) cu_staging_release(be);
}

int cu_embed(void *vbe, const fm_weight *E, const int32_t *tokens, size_t n, float *x) {
    cu_backend *be = vbe;
    int st = cu_enter(be);
    if (st) return st;
    first_op(be);
    if (E->v.dtype != CU_F32 && E->v.dtype != CU_F16 && E->v.dtype != CU_BF16) {
        cu_leave(be);
        return cu_fail(be, FM_BE_ERR_INVALID_ARGUMENT, "cuda backend: the embedding must be f32, f16 or bf16");
    }
    /* In a capture the tokens come from the device copy step_begin uploaded. */
    const int32_t *dev = be->capturing ? be->step_tok_dev : NULL;
    return done(be, cuk_embed(be->stream, E->v, tokens, dev, (int)n, x), "embed");
}

int cu_rmsnorm(void *vbe, const float *x, const fm_weight *w, size_t n, size_t d, float eps, float *y) {
    cu_backend *be = vbe;
    int st = cu_enter(be);
    if (st) return st;
    return done(be, cuk_rmsnorm(be->stream, x, w ? (const float *)w->v.data : NULL, (int)n, (int)d, eps, y), "rmsnorm");
}

/* Up to this many rows the hi and lo activations share one product (stacked as 2n rows): there the
   product streams the weights rather than computes, so one pass over them instead of two. */
#define MM_STACK_MAX_N 256

static size_t round256(size_t b) { return (b + 255) / 256 * 256; }

int cu_reserve_rows(cu_backend *be, size_t rows, size_t max_cols) {
    /* narrowed activations (hi + lo) for rows x max_cols; a stacked product's output; a dequantized chunk */
    size_t mm = round256(2 * rows * max_cols * 2) + (rows <= MM_STACK_MAX_N ? round256(2 * rows * max_cols * 4) : 0) +
                be->mm_chunk + 256;
    return cu_reserve(be, &be->mm_scratch, &be->mm_scratch_bytes, mm, "matmul scratch");
}

static cudaDataType_t half_type(int dtype) { return dtype == CU_F16 ? CUDA_R_16F : CUDA_R_16BF; }

/* y[n][m] (+)= x[n][k] A^T with A = [m][k] row-major of type at; x already of type at. */
static int gemm(cu_backend *be, const void *A, cudaDataType_t at, const void *x, int m, int n, int k, float *y,
                int ldy, float beta) {
    const float alpha = 1.0f;
    cublasStatus_t s;
    if (at == CUDA_R_32F)
        s = cublasSgemm(be->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, A, k, x, k, &beta, y, ldy);
    else
        s = cublasGemmEx(be->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, A, at, k, x, at, k, &beta, y, CUDA_R_32F,
                         ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return cu_blas_err(be, s, "matmul (cuBLAS)");
}

/* y (+)= (hi + lo) A^T, hi and lo [n][k] of type at, lo right after hi (NULL: hi alone). With h
   (room for [2n][m] floats) one product over the 2n stacked rows, then its halves summed; else two
   products, the second accumulating. */
static int split_product(cu_backend *be, const void *A, cudaDataType_t at, const void *hi, const void *lo, int m,
                         int n, int k, float *y, int ldy, int accumulate, float *h) {
    if (lo && h) {
        int st = gemm(be, A, at, hi, m, 2 * n, k, h, m, 0.0f);
        return st ? st : cu_err(be, cuk_add_halves(be->stream, y, (size_t)ldy, h, n, m, accumulate), "matmul");
    }
    int st = gemm(be, A, at, hi, m, n, k, y, ldy, accumulate ? 1.0f : 0.0f);
    if (st == FM_BE_OK && lo) st = gemm(be, A, at, lo, m, n, k, y, ldy, 1.0f);
    return st;
}

int cu_matmul_locked(cu_backend *be, const fm_weight *W, const float *bias, const float *x, size_t n, float *y,
                     int accumulate) {
    const cu_wview *v = &W->v;
    if (n == 0) return FM_BE_OK;
    if (n <= CU_GEMV_MAX_N)
        return cu_err(be, cuk_gemv(be->stream, *v, bias, x, (int)n, y, accumulate, be->sm_count), "matmul (gemv)");
    const int m = (int)v->rows, k = (int)v->cols;
    int st;
    if (v->dtype == CU_F32) {
        st = gemm(be, v->data, CUDA_R_32F, x, m, (int)n, k, y, m, accumulate ? 1.0f : 0.0f);
    } else if (be->exact) {
        /* every type widened to fp32 a chunk of rows at a time, sgemm */
        if ((st = cu_reserve(be, &be->mm_scratch, &be->mm_scratch_bytes, be->mm_chunk + 256, "matmul scratch")))
            return st;
        size_t per = be->mm_chunk / ((size_t)k * 4);
        if (per < 1) per = 1;
        for (size_t r0 = 0; st == FM_BE_OK && r0 < (size_t)m; r0 += per) {
            size_t nr = (size_t)m - r0 < per ? (size_t)m - r0 : per;
            if ((st = cu_err(be, cuk_dequant(be->stream, *v, (int64_t)r0, (int64_t)nr, CU_F32, be->mm_scratch), "dequantize")))
                return st;
            st = gemm(be, be->mm_scratch, CUDA_R_32F, x, (int)nr, (int)n, k, y + r0, m, accumulate ? 1.0f : 0.0f);
        }
    } else {
        /* x = hi + lo in the weights' half type (bf16 for quantized weights, dequantized to bf16 a chunk
           of rows at a time): fp32-grade activations, the weights exact in that type; FM_CUDA_FAST=1
           keeps only hi (x rounded). */
        const int quant = v->dtype == CU_Q8_0 || v->dtype == CU_Q4_0;
        const size_t cnt = n * (size_t)k, act = round256(2 * cnt * 2);
        size_t per = quant ? be->mm_chunk / ((size_t)k * 2) : (size_t)m;
        if (per < 1) per = 1;
        if (per > (size_t)m) per = (size_t)m;
        const size_t hbytes = round256(2 * n * per * 4);
        const size_t base = act + (quant ? be->mm_chunk : 0) + 256;
        /* stacking needs room for the product's output; inside a capture the scratch cannot grow */
        int stack = !be->fast && be->stack_on && n <= MM_STACK_MAX_N &&
                    (!be->capturing || be->mm_scratch_bytes >= base + hbytes);
        if ((st = cu_reserve(be, &be->mm_scratch, &be->mm_scratch_bytes, base + (stack ? hbytes : 0), "matmul scratch")))
            return st;
        void *hi = be->mm_scratch, *lo = be->fast ? NULL : (char *)be->mm_scratch + cnt * 2;
        char *chunk = (char *)be->mm_scratch + act;
        float *h = stack ? (float *)(chunk + (quant ? be->mm_chunk : 0)) : NULL;
        const int ht = quant ? CU_BF16 : v->dtype;
        if ((st = cu_err(be, cuk_to_half(be->stream, x, cnt, ht, hi, lo), "matmul"))) return st;
        for (size_t r0 = 0; st == FM_BE_OK && r0 < (size_t)m; r0 += per) {
            size_t nr = (size_t)m - r0 < per ? (size_t)m - r0 : per;
            const void *A = v->data;
            if (quant) {
                if ((st = cu_err(be, cuk_dequant(be->stream, *v, (int64_t)r0, (int64_t)nr, CU_BF16, chunk), "dequantize")))
                    return st;
                A = chunk;
            }
            st = split_product(be, A, half_type(ht), hi, lo, (int)nr, (int)n, k, y + r0, m, accumulate, h);
        }
    }
    if (st == FM_BE_OK && bias) st = cu_err(be, cuk_add_bias(be->stream, y, bias, (int)n, m), "matmul bias");
    return st;
}

int cu_matmul(void *vbe, const fm_weight *W, const fm_weight *b, const float *x, size_t n, float *y, int accumulate) {
    cu_backend *be = vbe;
    int st = cu_enter(be);
    if (st) return st;
    st = cu_matmul_locked(be, W, b ? (const float *)b->v.data : NULL, x, n, y, accumulate);
    cu_leave(be);
    return st;
}

/* Fill a launch table with segments [s0, s0 + cnt). In a capture the state pointers become offsets
   from the step's slot bases (the same offset for every sequence: the slot layout is uniform). */
int cu_segtab_fill(cu_backend *be, const fm_segment *segs, size_t s0, size_t cnt, cu_segtab *t) {
    memset(t, 0, offsetof(cu_segtab, row0));
    t->n = (int32_t)cnt;
    t->first = (int32_t)s0;
    for (size_t i = 0; i < cnt; i++) {
        const fm_segment *sg = &segs[s0 + i];
        t->row0[i] = sg->row0;
        t->nrows[i] = sg->n_rows;
        t->conv[i] = sg->conv_state;
        t->ssm[i] = sg->ssm_state;
    }
    t->bases = NULL;
    t->conv_off = t->ssm_off = 0;
    if (be->capturing) {
        if (s0 + cnt > be->cap_n) return cu_fail(be, FM_BE_ERR_INTERNAL, "cuda backend: capture: more segments than sequences");
        float *b0 = be->cap_states[s0];
        t->bases = be->step_bases_dev;
        t->conv_off = segs[s0].conv_state - b0;
        t->ssm_off = segs[s0].ssm_state - b0;
        for (size_t i = 0; i < cnt; i++) {
            float *b = be->cap_states[s0 + i];
            if (segs[s0 + i].conv_state - b != t->conv_off || segs[s0 + i].ssm_state - b != t->ssm_off)
                return cu_fail(be, FM_BE_ERR_INTERNAL, "cuda backend: capture: state pointers outside their slots");
        }
    }
    return FM_BE_OK;
}

static int all_single(const fm_segment *segs, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (segs[i].n_rows != 1) return 0;
    return 1;
}

int cu_conv1d_locked(cu_backend *be, const fm_conv_args *a) {
    int st = FM_BE_OK;
    const int decode = all_single(a->segs, a->n_segs);
    cu_segtab t;
    for (size_t s0 = 0; st == FM_BE_OK && s0 < a->n_segs; s0 += CU_MAX_SEGS) {
        size_t cnt = a->n_segs - s0 < CU_MAX_SEGS ? a->n_segs - s0 : CU_MAX_SEGS;
        if ((st = cu_segtab_fill(be, a->segs, s0, cnt, &t))) break;
        st = cu_err(be,
                    cuk_conv(be->stream, &t, decode, 0, a->in, a->ld_in, a->out, a->w->v.data,
                             a->b ? (const float *)a->b->v.data : NULL, a->d_inner, a->d_conv),
                    "conv1d");
    }
    return st;
}

int cu_conv1d(void *vbe, const fm_conv_args *a) {
    cu_backend *be = vbe;
    int st = cu_enter(be);
    if (st) return st;
    st = cu_conv1d_locked(be, a);
    cu_leave(be);
    return st;
}

int cu_ssm_locked(cu_backend *be, const fm_ssm_args *a) {
    int st = FM_BE_OK;
    if (a->d_state > 64)
        return cu_fail(be, FM_BE_ERR_INVALID_ARGUMENT, "cuda backend: d_state %d > 64 is not supported", a->d_state);
    cu_ssm_params p = {a->xdbl, a->u, a->z, a->ld_z, a->y, a->dt_w->v, (const float *)a->dt_b->v.data,
                       (const float *)a->A->v.data, (const float *)a->D->v.data, a->d_inner, a->d_state,
                       a->dt_rank, a->norm_dt_b_c, a->norm_eps};
    cu_segtab t;
    /* One sequence: the fused step kernel (its dt_proj dot reads the matrix once). Several: the fused
       kernel would read dt_proj once per sequence, so delta comes from one matrix product for all
       rows, then the scan (below). */
    if (a->n_segs == 1 && all_single(a->segs, a->n_segs) && a->dt_rank <= 512) {
        for (size_t s0 = 0; st == FM_BE_OK && s0 < a->n_segs; s0 += CU_MAX_SEGS) {
            size_t cnt = a->n_segs - s0 < CU_MAX_SEGS ? a->n_segs - s0 : CU_MAX_SEGS;
            if ((st = cu_segtab_fill(be, a->segs, s0, cnt, &t))) break;
            st = cu_err(be, cuk_ssm_decode(be->stream, &t, &p), "ssm (decode)");
        }
        return st;
    }
    size_t rows = 0, chunks = 0;
    int longest = 0;
    for (size_t s = 0; s < a->n_segs; s++) {
        rows += (size_t)a->segs[s].n_rows;
        chunks += ((size_t)a->segs[s].n_rows + CU_SCAN_LC - 1) / CU_SCAN_LC;
        longest = a->segs[s].n_rows > longest ? a->segs[s].n_rows : longest;
    }
    /* The time-chunked scan (one thread per channel and chunk) unless FM_CUDA_SCAN=0, except for a
       single segment of at most one chunk (a short prompt), where k_ssm_scan's 16 lanes per channel
       give more threads: on the 7B shape (kernel_bench --scan) 1 x 64 rows 62 vs 70 us, while decode
       batches are faster chunked, 8 x 1 10.6 vs 17.5 us, 64 x 1 41 vs 97. FM_CUDA_SCAN=2: chunked
       for everything. */
    const int chunked = be->scan_chunked == 2 || (be->scan_chunked && (longest > CU_SCAN_LC || a->n_segs > 1));
    const size_t R = (size_t)a->dt_rank, N = (size_t)a->d_state, di = (size_t)a->d_inner;
    size_t off_bc = ((rows * R * 4 + 255) / 256) * 256, off_delta = off_bc + ((rows * 2 * N * 4 + 255) / 256) * 256;
    size_t off_scan = off_delta + ((rows * di * 4 + 255) / 256) * 256;
    /* the chunked scan's carries: only for segments of several chunks */
    size_t need = off_scan + (chunked && longest > CU_SCAN_LC ? chunks * di * (N + 1) * 4 : 0);
    if ((st = cu_reserve(be, &be->ssm_scratch, &be->ssm_scratch_bytes, need, "ssm scratch"))) return st;
    float *dtn = be->ssm_scratch, *bc = (float *)((char *)be->ssm_scratch + off_bc),
          *delta = (float *)((char *)be->ssm_scratch + off_delta), *scan = (float *)((char *)be->ssm_scratch + off_scan);
    st = cu_err(be, cuk_ssm_norm(be->stream, a->xdbl, (int)rows, (int)R, (int)N, a->norm_dt_b_c, a->norm_eps, dtn, bc),
                "ssm (norms)");
    if (!st) st = cu_matmul_locked(be, a->dt_w, (const float *)a->dt_b->v.data, dtn, rows, delta, 0);
    for (size_t s0 = 0; st == FM_BE_OK && s0 < a->n_segs; s0 += CU_MAX_SEGS) {
        size_t cnt = a->n_segs - s0 < CU_MAX_SEGS ? a->n_segs - s0 : CU_MAX_SEGS;
        if ((st = cu_segtab_fill(be, a->segs, s0, cnt, &t))) break;
        st = cu_err(be,
                    chunked ? cuk_scan_chunked(be->stream, &t, &p, delta, bc, scan)
                            : cuk_ssm_scan(be->stream, &t, &p, delta, bc),
                    "ssm (scan)");
    }
    return st;
}

int cu_ssm(void *vbe, const fm_ssm_args *a) {
    cu_backend *be = vbe;
    int st = cu_enter(be);
    if (st) return st;
    st = cu_ssm_locked(be, a);
    cu_leave(be);
    return st;
}
