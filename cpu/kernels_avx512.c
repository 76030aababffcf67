/* kernels_avx512.c - AVX-512 (F/BW/VL/DQ + VNNI) kernels. Compiled with those -m flags for this
   file only; cpu_dispatch.c calls into it only after cpuid says the CPU and OS support them.
   Float activations stay fp32 against widened weights (bf16 by a shift, f16 by vcvtph2ps), so these
   match the reference path to rounding; Q8_0/Q4_0 use int8 activations and VNNI integer dots. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"

#define AINLINE static inline __attribute__((always_inline))
/* Loops over the rows of a register tile (r < NR / MR, compile-time constants after inlining) carry
   _Pragma("GCC unroll 8") so that the accumulators stay in registers. */

/* Software prefetch this many bytes ahead of the weight stream: the hardware prefetchers alone
   leave a single-thread GEMV well short of the memory bandwidth (rows are short streams). */
#define PF_AHEAD 2048

/* ---- float-weight GEMV -------------------------------------------------------------------------- */

AINLINE __m512 load16_bf16(const unsigned char *p, __mmask16 m) {
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
AINLINE __m512 load16_f16(const unsigned char *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
AINLINE __m512 load16_f32(const unsigned char *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }

AINLINE void finish(const cpu_gemv_args *a, size_t i, size_t j, float v) {
    float *o = a->y + i * a->ldy + j;
    if (a->bias) v += a->bias[j];
    *o = a->accumulate ? *o + v : v;
}

/* rows3 (below) only above this many bytes of activations: cpu_gemv_bench, one thread, 3072 rows x
   768 columns at batch 8 (24 KB) 0.64-0.73 ms with it against 0.60-0.63 without, x 1536 at batch 4
   (24 KB) 1.19-1.30 against 0.93-1.08, x 1536 at batch 8 (48 KB) 1.60-1.63 against 1.83-1.91. */
#define ROWS3_MIN_X_BYTES (24u << 10)

/* One weight row against NR <= 8 activation rows, two accumulators each (K unrolled by 32): the
   weight vector is loaded and widened once for all rows of a batched decode. */
#define DEF_FLOAT_ROWS(SUFFIX, ESZ, DT)                                                                            \
    AINLINE void rows_##SUFFIX(const unsigned char *w, const float *x, size_t K, const int NR, float *out) {    \
        __m512 acc[8][2];                                                                                        \
        _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();                               \
        size_t k = 0;                                                                                            \
        for (; k + 32 <= K; k += 32) {                                                                           \
            _mm_prefetch((const char *)(w + ESZ * k) + PF_AHEAD, _MM_HINT_T0);                                   \
            if (ESZ == 4) _mm_prefetch((const char *)(w + ESZ * k) + PF_AHEAD + 64, _MM_HINT_T0);                \
            __m512 w0 = load16_##SUFFIX(w + ESZ * k, 0xffff), w1 = load16_##SUFFIX(w + ESZ * (k + 16), 0xffff); \
            _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) {                                                                       \
                acc[r][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + r * K + k), acc[r][0]);                    \
                acc[r][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + r * K + k + 16), acc[r][1]);               \
            }                                                                                                    \
        }                                                                                                        \
        for (; k < K; k += 16) {                                                                                 \
            __mmask16 m = K - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1);                    \
            __m512 w0 = load16_##SUFFIX(w + ESZ * k, m);                                                         \
            _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++)                                                                         \
                acc[r][0] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x + r * K + k), acc[r][0]);           \
        }                                                                                                        \
        _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));       \
    }                                                                                                            \
    /* Three weight rows against NR activation rows, 16 columns a step: each activation load serves    \
       three rows. For batches of 3-8 (the activations outgrow L1 and their L2 reloads, one per FMA,     \
       were the limit): 1.3-1.75x faster on the 1.4b shapes' matrices (tests/bench/cpu_gemv_bench,      \
       docs/PERFORMANCE.md); at batch 2, or while the activations fit in L1 beside the weight stream     \
       (ROWS3_MIN_X_BYTES), one row at a time is faster. out[r * 8 + i] = row r . x row i. */            \
    AINLINE void rows3_##SUFFIX(const unsigned char *w, size_t rb, const float *x, size_t K, const int NR,       \
                                float *out) {                                                               \
        __m512 acc[3][8];                                                                                    \
        _Pragma("GCC unroll 8") for (int r = 0; r < 3; r++) _Pragma("GCC unroll 8") for (int i = 0; i < NR; i++) \
            acc[r][i] = _mm512_setzero_ps();                                                                 \
        const size_t K16 = K & ~(size_t)15; /* whole steps; a last partial one in scalar */              \
        for (size_t k = 0; k < K16; k += 16) {                                                               \
            __m512 wv[3];                                                                                    \
            _Pragma("GCC unroll 3") for (int r = 0; r < 3; r++) {                                            \
                if (((k * ESZ) & 63) == 0) _mm_prefetch((const char *)(w + r * rb + ESZ * k) + PF_AHEAD, _MM_HINT_T0); \
                wv[r] = load16_##SUFFIX(w + r * rb + ESZ * k, (__mmask16)0xffff);                            \
            }                                                                                                \
            _Pragma("GCC unroll 8") for (int i = 0; i < NR; i++) {                                           \
                const __m512 xv = _mm512_loadu_ps(x + i * K + k);                                            \
                _Pragma("GCC unroll 3") for (int r = 0; r < 3; r++) acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]); \
            }                                                                                                \
        }                                                                                                    \
        _Pragma("GCC unroll 8") for (int r = 0; r < 3; r++) _Pragma("GCC unroll 8") for (int i = 0; i < NR; i++) { \
            float v = _mm512_reduce_add_ps(acc[r][i]);                                                       \
            for (size_t k = K16; k < K; k++) v += fm_dtype_load_f32(w + r * rb, DT, k) * x[i * K + k];       \
            out[r * 8 + i] = v;                                                                              \
        }                                                                                                    \
    }                                                                                                        \
    static void gemv_##SUFFIX(const cpu_gemv_args *a) {                                                          \
        const size_t K = (size_t)a->W->cols;                                                                     \
        float out[24];                                                                                           \
        size_t j = a->j0;                                                                                        \
        if (a->n >= 3 && a->n <= 8 && a->n * K * sizeof(float) > ROWS3_MIN_X_BYTES)                             \
            for (; j + 3 <= a->j1; j += 3) {                                                                     \
                const unsigned char *w = (const unsigned char *)a->W->data + j * a->W->row_bytes;                \
                switch (a->n) {                                                                                  \
                case 3: rows3_##SUFFIX(w, a->W->row_bytes, a->x, K, 3, out); break;                              \
                case 4: rows3_##SUFFIX(w, a->W->row_bytes, a->x, K, 4, out); break;                              \
                case 5: rows3_##SUFFIX(w, a->W->row_bytes, a->x, K, 5, out); break;                              \
                case 6: rows3_##SUFFIX(w, a->W->row_bytes, a->x, K, 6, out); break;                              \
                case 7: rows3_##SUFFIX(w, a->W->row_bytes, a->x, K, 7, out); break;                              \
                default: rows3_##SUFFIX(w, a->W->row_bytes, a->x, K, 8, out); break;                             \
                }                                                                                                \
                for (size_t r = 0; r < 3; r++)                                                                   \
                    for (size_t i = 0; i < a->n; i++) finish(a, i, j + r, out[r * 8 + i]);                       \
            }                                                                                                    \
        for (; j < a->j1; j++) {                                                                                 \
            const unsigned char *w = (const unsigned char *)a->W->data + j * a->W->row_bytes;                    \
            for (size_t i = 0; i < a->n; i += 8) {                                                               \
                const float *x = a->x + i * K;                                                                   \
                size_t nr = a->n - i < 8 ? a->n - i : 8;                                                         \
                switch (nr) {                                                                                    \
                case 1: rows_##SUFFIX(w, x, K, 1, out); break;                                                   \
                case 2: rows_##SUFFIX(w, x, K, 2, out); break;                                                   \
                case 3: rows_##SUFFIX(w, x, K, 3, out); break;                                                   \
                case 4: rows_##SUFFIX(w, x, K, 4, out); break;                                                   \
                case 5: rows_##SUFFIX(w, x, K, 5, out); break;                                                   \
                case 6: rows_##SUFFIX(w, x, K, 6, out); break;                                                   \
                case 7: rows_##SUFFIX(w, x, K, 7, out); break;                                                   \
                default: rows_##SUFFIX(w, x, K, 8, out); break;                                                  \
                }                                                                                                \
                for (size_t r = 0; r < nr; r++) finish(a, i + r, j, out[r]);                                     \
            }                                                                                                    \
        }                                                                                                        \
    }

DEF_FLOAT_ROWS(f32, 4, FM_DTYPE_F32)
DEF_FLOAT_ROWS(bf16, 2, FM_DTYPE_BF16)
DEF_FLOAT_ROWS(f16, 2, FM_DTYPE_F16)

/* ---- quantized GEMV (the grouped kernel serves Q4_0; Q8_0 uses the per-pair one further down) ----
   The activations are first rearranged (pack_x) into groups that line up with the weight bytes as
   they sit in the blocks, each group carrying its own int32 offset correction and fp32 scales, so
   that a group of weight blocks costs: two loads, one vpermt2w (the quant bytes of every block of the
   group into one register), one vpermw (each block's fp16 scale copied over that block's lanes),
   then per activation row the VNNI dots, one convert, one multiply and one FMA. Per-row results stay
   in a vector accumulator until the row ends.

   vpdpbusd multiplies unsigned bytes by signed bytes, so the weights go in as unsigned nibbles
   n = w + 8 (0..15): sum n*x = sum w*x + 8 sum x, and the group's int32 lanes start from the
   correction -8 * the lane's sum of x (its 8 elements), which depends on the activations only
   (computed once, in pack_x). The integer lane sums cannot overflow: |x| <= 127, so a lane holds at
   most 8 * 15 * 127 + 8 * 8 * 127 in magnitude. */

/* Q4_0: 4 blocks (72 weight bytes, 128 values) per group. lo[16i + j] = x[32i + j] and
   hi[16i + j] = x[32i + 16 + j] of block i of the group: the low and high nibbles of that block's
   byte j. Lane 4i + l (bytes 16i + 4l .. +3) holds block i's elements 4l..4l+3 and 16+4l..16+4l+3. */
typedef struct xgroup_q4 {
    int8_t lo[64], hi[64];
    int32_t corr[16]; /* -8 * the lane's sum of x */
    float d[16];      /* the block's activation scale, on each of its 4 lanes */
} xgroup_q4;

#define Q4_GROUP 4

/* Only Q4_0 has a packed layout; 0 for every other type (gemv_q8_0 reads xq). */
static size_t pack_x_bytes(fm_dtype t, size_t K) {
    const size_t nb = K / FM_QBLOCK;
    return t == FM_DTYPE_Q4_0 ? (nb + Q4_GROUP - 1) / Q4_GROUP * sizeof(xgroup_q4) : 0;
}

/* Blocks past the row's end (a partial last group) are zero: no products, no correction, scale 0. */
static void pack_x(fm_dtype t, const cpu_xblock *xq, size_t K, void *out) {
    if (t != FM_DTYPE_Q4_0) return; /* pack_x_bytes is 0: nothing to pack */
    const size_t nb = K / FM_QBLOCK;
    memset(out, 0, pack_x_bytes(t, K));
    for (size_t b = 0; b < nb; b++) {
        const cpu_xblock *x = xq + b;
        xgroup_q4 *g = (xgroup_q4 *)out + b / Q4_GROUP;
        const size_t i = b % Q4_GROUP;
        memcpy(g->lo + 16 * i, x->q, 16);
        memcpy(g->hi + 16 * i, x->q + 16, 16);
        for (int l = 0; l < 4; l++) {
            int32_t s = 0;
            for (int e = 4 * l; e < 4 * l + 4; e++) s += x->q[e] + x->q[16 + e];
            g->corr[4 * i + l] = -8 * s;
            g->d[4 * i + l] = x->d;
        }
    }
}

/* Word indices into (A = the group's first 64 bytes, B = its bytes from 8 on) for vpermt2w, where
   index 32 + k is word k of B: the quant bytes of each block (every field of the block starts at an
   even offset), and each block's scale repeated over its lanes. */
typedef struct perm_idx {
    __m512i q, d;
} perm_idx;

static perm_idx make_idx(void) {
    uint16_t q[32], d[32] = {0};
    const size_t bsz = sizeof(fm_block_q4_0), qlen = bsz - 2, bofs = 8, lanes = 4;
    for (size_t k = 0; k < 64; k += 2) {
        const size_t off = (k / qlen) * bsz + 2 + k % qlen;
        q[k / 2] = (uint16_t)(off < 64 ? off / 2 : 32 + (off - bofs) / 2);
    }
    for (size_t p = 0; p < 16; p++) d[p] = (uint16_t)((p / lanes) * bsz / 2);
    perm_idx r = {_mm512_loadu_si512(q), _mm512_loadu_si512(d)};
    return r;
}

/* The weight side of one group: quant bytes (as unsigned) and the blocks' fp32 scales. m = number of
   valid blocks (< group size only at the row's end: masked loads, zeros past it). */
AINLINE void load_group(const unsigned char *p, size_t m, const perm_idx *ix, __m512i *wq_lo, __m512i *wq_hi,
                        __m512 *wd) {
    const size_t bsz = sizeof(fm_block_q4_0), bofs = 8;
    __m512i A, B;
    if (m == Q4_GROUP) {
        A = _mm512_loadu_si512(p);
        B = _mm512_loadu_si512(p + bofs);
    } else { /* m * bsz <= 54 < 64 bytes: all in A */
        A = _mm512_maskz_loadu_epi8(((__mmask64)1 << (m * bsz)) - 1, p);
        B = _mm512_setzero_si512();
    }
    const __m512i q = _mm512_permutex2var_epi16(A, ix->q, B);
    *wd = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(ix->d, A)));
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    *wq_lo = _mm512_and_si512(q, m4);
    *wq_hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
}

/* One weight row (ng groups, the last with m_last blocks) against NR packed activation rows
   (xstride bytes apart). */
AINLINE void rows_q4_0(const unsigned char *w, size_t ng, size_t m_last, const unsigned char *x, size_t xstride,
                       const perm_idx *ix, const int NR, float *out) {
    const size_t gbytes = Q4_GROUP * sizeof(fm_block_q4_0);
    __m512 acc[CPU_GEMV_MAX_ROWS];
    _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) acc[r] = _mm512_setzero_ps();
    for (size_t g = 0; g < ng; g++) {
        const unsigned char *p = w + g * gbytes;
        _mm_prefetch((const char *)p + PF_AHEAD, _MM_HINT_T0);
        __m512i lo, hi;
        __m512 wd;
        load_group(p, g + 1 == ng ? m_last : Q4_GROUP, ix, &lo, &hi, &wd);
        _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) {
            const xgroup_q4 *G = (const xgroup_q4 *)(x + (size_t)r * xstride + g * sizeof(xgroup_q4));
            __m512i dot = _mm512_dpbusd_epi32(_mm512_loadu_si512(G->corr), lo, _mm512_loadu_si512(G->lo));
            dot = _mm512_dpbusd_epi32(dot, hi, _mm512_loadu_si512(G->hi));
            const __m512 xd = _mm512_loadu_ps(G->d);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(wd, xd), acc[r]);
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) out[r] = _mm512_reduce_add_ps(acc[r]);
}

/* Two weight rows (rb bytes apart) against NR packed activation rows: each activation load serves
   both. The one-row kernel issues four 64-byte activation loads per group and sequence beside its
   five vector operations, which bounds it at batches even with everything in cache.
   out[r * 8 + i] = weight row r . activation row i. */
AINLINE void rows2_q4_0(const unsigned char *w, size_t rb, size_t ng, size_t m_last, const unsigned char *x,
                        size_t xstride, const perm_idx *ix, const int NR, float *out) {
    const size_t gbytes = Q4_GROUP * sizeof(fm_block_q4_0);
    __m512 acc[2][CPU_GEMV_MAX_ROWS];
    _Pragma("GCC unroll 8") for (int i = 0; i < NR; i++) acc[0][i] = acc[1][i] = _mm512_setzero_ps();
    for (size_t g = 0; g < ng; g++) {
        __m512i lo[2], hi[2];
        __m512 wd[2];
        _Pragma("GCC unroll 2") for (int r = 0; r < 2; r++) {
            const unsigned char *p = w + r * rb + g * gbytes;
            _mm_prefetch((const char *)p + PF_AHEAD, _MM_HINT_T0);
            load_group(p, g + 1 == ng ? m_last : Q4_GROUP, ix, &lo[r], &hi[r], &wd[r]);
        }
        _Pragma("GCC unroll 8") for (int i = 0; i < NR; i++) {
            const xgroup_q4 *G = (const xgroup_q4 *)(x + (size_t)i * xstride + g * sizeof(xgroup_q4));
            __m512i corr = _mm512_loadu_si512(G->corr), xlo = _mm512_loadu_si512(G->lo);
            __m512i xhi = _mm512_loadu_si512(G->hi);
            __m512 xd = _mm512_loadu_ps(G->d);
            /* Keep the loaded activations in registers: left alone, the compiler folds each load into
               both rows' instructions as a memory operand, loading everything twice. */
            __asm__("" : "+v"(xd), "+v"(xlo), "+v"(xhi), "+v"(corr));
            _Pragma("GCC unroll 2") for (int r = 0; r < 2; r++) {
                const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(corr, lo[r], xlo), hi[r], xhi);
                acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(wd[r], xd), acc[r][i]);
            }
        }
    }
    _Pragma("GCC unroll 2") for (int r = 0; r < 2; r++) _Pragma("GCC unroll 8") for (int i = 0; i < NR; i++)
        out[r * 8 + i] = _mm512_reduce_add_ps(acc[r][i]);
}

/* Batches from this size take two weight rows at a time: cpu_gemv_bench --dtype q4_0, one thread,
   8192 x 2048 ms per matrix, one row / two rows: batch 4 0.95 / 1.04-1.12, batch 5 1.29-1.35 /
   1.13-1.18, batch 8 1.79-2.09 / 1.41-1.67; 4096 x 4096 batch 8 3.16 / 2.30 (two weight streams cost more
   than the shared activation loads save while the batch is small). */
#define Q4_ROWS2_MIN_BATCH 5 /* gemv_q4_0_pairs has cases 5 .. 8 */

/* Rows [j0, j1) two at a time (a last odd one left to the caller); returns where it stopped. Kept out of
   gemv_q4_0 so that the batch-1 loop there compiles as before. */
__attribute__((noinline)) static size_t gemv_q4_0_pairs(const cpu_gemv_args *a) {
    const size_t K = (size_t)a->W->cols, nb = K / FM_QBLOCK;
    const size_t ng = (nb + Q4_GROUP - 1) / Q4_GROUP, m_last = nb - (ng - 1) * Q4_GROUP;
    const size_t xstride = pack_x_bytes(FM_DTYPE_Q4_0, K);
    const perm_idx ix = make_idx();
    float out[2 * CPU_GEMV_MAX_ROWS];
    size_t j = a->j0;
    const size_t rb = a->W->row_bytes;
    for (; j + 2 <= a->j1; j += 2) {
        const unsigned char *w = (const unsigned char *)a->W->data + j * rb, *x = a->xp;
        switch (a->n) { /* Q4_ROWS2_MIN_BATCH .. 8 */
        case 5: rows2_q4_0(w, rb, ng, m_last, x, xstride, &ix, 5, out); break;
        case 6: rows2_q4_0(w, rb, ng, m_last, x, xstride, &ix, 6, out); break;
        case 7: rows2_q4_0(w, rb, ng, m_last, x, xstride, &ix, 7, out); break;
        default: rows2_q4_0(w, rb, ng, m_last, x, xstride, &ix, 8, out); break;
        }
        for (size_t r = 0; r < 2; r++)
            for (size_t i = 0; i < a->n; i++) finish(a, i, j + r, out[r * 8 + i]);
    }
    return j;
}

static void gemv_q4_0(const cpu_gemv_args *a) {
    const size_t K = (size_t)a->W->cols, nb = K / FM_QBLOCK;
    const size_t ng = (nb + Q4_GROUP - 1) / Q4_GROUP, m_last = nb - (ng - 1) * Q4_GROUP;
    const size_t xstride = pack_x_bytes(FM_DTYPE_Q4_0, K);
    const perm_idx ix = make_idx();
    float out[CPU_GEMV_MAX_ROWS];
    size_t j = a->n >= Q4_ROWS2_MIN_BATCH && a->n <= 8 ? gemv_q4_0_pairs(a) : a->j0;
    for (; j < a->j1; j++) {
        const unsigned char *w = (const unsigned char *)a->W->data + j * a->W->row_bytes;
        for (size_t i = 0; i < a->n; i += 8) {
            const unsigned char *x = (const unsigned char *)a->xp + i * xstride;
            size_t nr = a->n - i < 8 ? a->n - i : 8;
            switch (nr) {
            case 1: rows_q4_0(w, ng, m_last, x, xstride, &ix, 1, out); break;
            case 2: rows_q4_0(w, ng, m_last, x, xstride, &ix, 2, out); break;
            case 3: rows_q4_0(w, ng, m_last, x, xstride, &ix, 3, out); break;
            case 4: rows_q4_0(w, ng, m_last, x, xstride, &ix, 4, out); break;
            case 5: rows_q4_0(w, ng, m_last, x, xstride, &ix, 5, out); break;
            case 6: rows_q4_0(w, ng, m_last, x, xstride, &ix, 6, out); break;
            case 7: rows_q4_0(w, ng, m_last, x, xstride, &ix, 7, out); break;
            default: rows_q4_0(w, ng, m_last, x, xstride, &ix, 8, out); break;
            }
            for (size_t r = 0; r < nr; r++) finish(a, i + r, j, out[r]);
        }
    }
}

/* Q8_0 keeps the earlier kernel over the plain cpu_xblock rows: at 2 threads it runs at the memory
   bandwidth either way, and a grouped Q8_0 variant of the kernel above measured 5-15% slower on it
   (its 64-byte line-crossing loads; interleaved runs in docs/PERFORMANCE.md) and was removed.
   pack_x_bytes is 0 for Q8_0. */
AINLINE __m512i xq_pair(const cpu_xblock *x) { /* q of blocks b and b+1 side by side */
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x[0].q)),
                              _mm256_loadu_si256((const __m256i *)x[1].q), 1);
}
AINLINE __m512 scale_pair(float s0, float s1) {
    return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
}

/* Q8_0: |w| (unsigned) . x*sign(w) with vpdpbusd; no offset to correct. */
AINLINE void rows_q8_0(const fm_block_q8_0 *w, const cpu_xblock *x, size_t nb, const int NR, float *out) {
    __m512 acc[CPU_GEMV_MAX_ROWS];
    float tail[CPU_GEMV_MAX_ROWS] = {0};
    _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) acc[r] = _mm512_setzero_ps();
    size_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char *)(w + b) + PF_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)(w + b) + PF_AHEAD + 64, _MM_HINT_T0);
        __m512i wq = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[b].q)),
                                        _mm256_loadu_si256((const __m256i *)w[b + 1].q), 1);
        __mmask64 neg = _mm512_movepi8_mask(wq);
        __m512i wabs = _mm512_abs_epi8(wq);
        const float d0 = _cvtsh_ss(w[b].d), d1 = _cvtsh_ss(w[b + 1].d);
        _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) {
            const cpu_xblock *xr = x + (size_t)r * nb + b;
            __m512i xv = xq_pair(xr);
            xv = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
            __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wabs, xv);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale_pair(d0 * xr[0].d, d1 * xr[1].d), acc[r]);
        }
    }
    for (; b < nb; b++) /* an odd last block */
        _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) {
            const cpu_xblock *xr = x + (size_t)r * nb + b;
            int32_t dot = 0;
            for (int l = 0; l < FM_QBLOCK; l++) dot += (int32_t)w[b].q[l] * xr->q[l];
            tail[r] += _cvtsh_ss(w[b].d) * xr->d * (float)dot;
        }
    _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) out[r] = _mm512_reduce_add_ps(acc[r]) + tail[r];
}

static void gemv_q8_0(const cpu_gemv_args *a) {
    const size_t nb = (size_t)a->W->cols / FM_QBLOCK;
    float out[CPU_GEMV_MAX_ROWS];
    for (size_t j = a->j0; j < a->j1; j++) {
        const fm_block_q8_0 *w = (const fm_block_q8_0 *)((const unsigned char *)a->W->data + j * a->W->row_bytes);
        for (size_t i = 0; i < a->n; i += 8) {
            const cpu_xblock *x = a->xq + i * nb;
            size_t nr = a->n - i < 8 ? a->n - i : 8;
            switch (nr) {
            case 1: rows_q8_0(w, x, nb, 1, out); break;
            case 2: rows_q8_0(w, x, nb, 2, out); break;
            case 3: rows_q8_0(w, x, nb, 3, out); break;
            case 4: rows_q8_0(w, x, nb, 4, out); break;
            case 5: rows_q8_0(w, x, nb, 5, out); break;
            case 6: rows_q8_0(w, x, nb, 6, out); break;
            case 7: rows_q8_0(w, x, nb, 7, out); break;
            default: rows_q8_0(w, x, nb, 8, out); break;
            }
            for (size_t r = 0; r < nr; r++) finish(a, i + r, j, out[r]);
        }
    }
}

/* roundf (half away from zero), exactly: truncate, then step away from zero when the dropped
   fraction is at least 0.5. (Adding copysign(0.5) first is wrong for 0.49999997.) */
AINLINE __m512i round_away(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 one = _mm512_or_ps(_mm512_and_ps(v, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(1.0f));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, one));
}

static void quantize_x(const float *x, size_t K, cpu_xblock *out) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (size_t b = 0; b < K / FM_QBLOCK; b++) {
        __m512 v0 = _mm512_loadu_ps(x + b * FM_QBLOCK), v1 = _mm512_loadu_ps(x + b * FM_QBLOCK + 16);
        __m512 m = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
        const float amax = _mm512_reduce_max_ps(m);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m512i q0 = round_away(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
        __m512i q1 = round_away(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
        _mm_storeu_si128((__m128i *)out[b].q, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(out[b].q + 16), _mm512_cvtepi32_epi8(q1));
        out[b].d = d;
        out[b].sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/* Weight rows to Q8_0 / Q4_0 with quant.h's arithmetic (multiply then add, no fused ops, the same
   scale selection), so the blocks are bit-identical to the reference. The block maxima of 16 blocks
   at a time are reduced together (below) and their scales computed and converted to fp16 in one
   vector each (vcvtps2ph rounds to nearest even, as fm_f32_to_f16 does). */

/* One block's values from its scale's inverse id (and, for Q4_0, the fp16 scale dh). */
AINLINE void quant_block(fm_dtype t, const float *v, float id, uint16_t dh, void *out, size_t b) {
    const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16), vid = _mm512_set1_ps(id);
    if (t == FM_DTYPE_Q8_0) {
        fm_block_q8_0 *o = (fm_block_q8_0 *)out + b;
        o->d = dh;
        _mm_storeu_si128((__m128i *)o->q, _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(v0, vid))));
        _mm_storeu_si128((__m128i *)(o->q + 16), _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(v1, vid))));
    } else {
        fm_block_q4_0 *o = (fm_block_q4_0 *)out + b;
        const __m512 h = _mm512_set1_ps(8.5f);
        const __m512i lim = _mm512_set1_epi32(15);
        __m512i q0 = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(v0, vid), h)), lim);
        __m512i q1 = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(v1, vid), h)), lim);
        __m128i lo = _mm512_cvtepi32_epi8(q0), hi = _mm512_cvtepi32_epi8(q1);
        o->d = dh;
        _mm_storeu_si128((__m128i *)o->qs, _mm_or_si128(lo, _mm_slli_epi16(hi, 4)));
    }
}

/* Q4_0's max: the first element of largest magnitude amax, with its sign. */
AINLINE float signed_max(const float *v, float amax) {
    const __m512 sign = _mm512_set1_ps(-0.0f), m = _mm512_set1_ps(amax);
    const __mmask16 e0 = _mm512_cmp_ps_mask(_mm512_andnot_ps(sign, _mm512_loadu_ps(v)), m, _CMP_EQ_OQ);
    const __mmask16 e1 = _mm512_cmp_ps_mask(_mm512_andnot_ps(sign, _mm512_loadu_ps(v + 16)), m, _CMP_EQ_OQ);
    return amax == 0.0f ? 0.0f : e0 ? v[__builtin_ctz(e0)] : v[16 + __builtin_ctz(e1)];
}

AINLINE __m512 block_absmax(const float *v) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    return _mm512_max_ps(_mm512_andnot_ps(sign, _mm512_loadu_ps(v)), _mm512_andnot_ps(sign, _mm512_loadu_ps(v + 16)));
}

static void quantize_row(fm_dtype t, const float *x, void *out, size_t cols) {
    const size_t nb = cols / FM_QBLOCK;
    size_t b = 0;
    if (nb >= 16) {
        /* Merge step s: vectors holding 16/g blocks of g lanes each, pairwise, into 32/g blocks of
           g/2 lanes (the max of each block's two halves); four steps from g = 16 leave block k's
           maximum in lane k. */
        __m512i lo_idx[4], hi_idx[4];
        for (int st = 0, g = 16; st < 4; st++, g /= 2) {
            int32_t lo[16], hi[16];
            const int n = 16 / g, h = g / 2;
            for (int L = 0; L < 16; L++) {
                const int k = L / h, o = L % h;
                lo[L] = (k < n ? 0 : 16) + (k % n) * g + o;
                hi[L] = lo[L] + h;
            }
            lo_idx[st] = _mm512_loadu_si512(lo);
            hi_idx[st] = _mm512_loadu_si512(hi);
        }
        for (; b + 16 <= nb; b += 16) {
            const float *v = x + b * FM_QBLOCK;
            __m512 m[16];
            for (int k = 0; k < 16; k++) m[k] = block_absmax(v + k * FM_QBLOCK);
            for (int st = 0, n = 16; st < 4; st++, n /= 2)
                for (int k = 0; k < n / 2; k++)
                    m[k] = _mm512_max_ps(_mm512_permutex2var_ps(m[2 * k], lo_idx[st], m[2 * k + 1]),
                                         _mm512_permutex2var_ps(m[2 * k], hi_idx[st], m[2 * k + 1]));
            __m512 d;
            if (t == FM_DTYPE_Q8_0) {
                d = _mm512_div_ps(m[0], _mm512_set1_ps(127.0f));
            } else {
                float amax[16], mx[16];
                _mm512_storeu_ps(amax, m[0]);
                for (int k = 0; k < 16; k++) mx[k] = signed_max(v + k * FM_QBLOCK, amax[k]);
                d = _mm512_div_ps(_mm512_loadu_ps(mx), _mm512_set1_ps(-8.0f));
            }
            const __mmask16 nz = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_UQ);
            float id[16];
            uint16_t dh[16];
            _mm512_storeu_ps(id, _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), d));
            _mm256_storeu_si256((__m256i *)dh, _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            for (int k = 0; k < 16; k++) quant_block(t, v + k * FM_QBLOCK, id[k], dh[k], out, b + k);
        }
    }
    for (; b < nb; b++) { /* the last nb % 16 blocks one at a time */
        const float *v = x + b * FM_QBLOCK;
        const float amax = _mm512_reduce_max_ps(block_absmax(v));
        const float d = t == FM_DTYPE_Q8_0 ? amax / 127.0f : signed_max(v, amax) / -8.0f;
        quant_block(t, v, d != 0.0f ? 1.0f / d : 0.0f, fm_f32_to_f16(d), out, b);
    }
}

/* Load-time widening of float rows (bf16 by a shift, f16 by vcvtph2ps). */
static void widen(fm_dtype t, const void *src, float *dst, size_t n) {
    const unsigned char *p = src;
    if (t == FM_DTYPE_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, m, t == FM_DTYPE_BF16 ? load16_bf16(p + 2 * i, m) : load16_f16(p + 2 * i, m));
    }
}

/* ---- panel-packed GEMM for prefill ----------------------------------------------------------------- */

/* MR activation rows x 32 output columns, accumulated over kb values of k. */
AINLINE void micro(const float *panel, size_t kb, const float *x, size_t ldx, float *c, size_t ldc, __mmask16 m0,
                   __mmask16 m1, int load_c, const float *bias, const int MR) {
    __m512 acc[8][2];
    _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++) {
        acc[r][0] = load_c ? _mm512_maskz_loadu_ps(m0, c + r * ldc) : _mm512_setzero_ps();
        acc[r][1] = load_c ? _mm512_maskz_loadu_ps(m1, c + r * ldc + 16) : _mm512_setzero_ps();
    }
    for (size_t k = 0; k < kb; k++) {
        __m512 w0 = _mm512_load_ps(panel + k * CPU_GEMM_NB), w1 = _mm512_load_ps(panel + k * CPU_GEMM_NB + 16);
        _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++) {
            __m512 xb = _mm512_set1_ps(x[r * ldx + k]);
            acc[r][0] = _mm512_fmadd_ps(xb, w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(xb, w1, acc[r][1]);
        }
    }
    if (bias) {
        __m512 b0 = _mm512_maskz_loadu_ps(m0, bias), b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
        _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++) {
            acc[r][0] = _mm512_add_ps(acc[r][0], b0);
            acc[r][1] = _mm512_add_ps(acc[r][1], b1);
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][1]);
    }
}

/* r[c] <- column c of the 16 x 16 block r (rows in, columns out), in registers. */
AINLINE void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) { /* u[4g + m], 128-bit lane L: rows 4g .. 4g+3 of column 4L + m */
        const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int m = 0; m < 4; m++) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88), v4 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xdd);
        const __m512 v8 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88);
        const __m512 v12 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xdd);
        r[m] = _mm512_shuffle_f32x4(v0, v8, 0x88);
        r[8 + m] = _mm512_shuffle_f32x4(v0, v8, 0xdd);
        r[4 + m] = _mm512_shuffle_f32x4(v4, v12, 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(v4, v12, 0xdd);
    }
}

/* panel[k][jj] = W[j0 + jj][k0 + k] for k < kb, jj < 32 (zero for jj >= nj): 16 x 16 blocks widened
   and transposed in registers. Float types load straight from the weights; quantized rows are widened
   into rowbuf (32 x CPU_GEMM_KB floats) first. */
static void pack_panel(const fm_weight *W, size_t j0, size_t nj, size_t k0, size_t kb, float *panel, float *rowbuf) {
    const size_t K = (size_t)W->cols;
    const int quant = W->dtype == FM_DTYPE_Q8_0 || W->dtype == FM_DTYPE_Q4_0;
    const size_t esz = W->dtype == FM_DTYPE_F32 ? 4 : 2;
    if (quant)
        for (size_t jj = 0; jj < nj; jj++) cpu_weight_slice_f32(W, j0 + jj, k0, kb, rowbuf + jj * CPU_GEMM_KB);
    for (size_t jg = 0; jg < CPU_GEMM_NB; jg += 16)
        for (size_t kc = 0; kc < kb; kc += 16) {
            const size_t kn = kb - kc < 16 ? kb - kc : 16;
            const __mmask16 m = kn == 16 ? (__mmask16)0xffff : (__mmask16)((1u << kn) - 1);
            __m512 r[16];
            for (size_t i = 0; i < 16; i++) {
                const size_t jj = jg + i;
                if (jj >= nj) {
                    r[i] = _mm512_setzero_ps();
                } else if (quant) {
                    r[i] = _mm512_maskz_loadu_ps(m, rowbuf + jj * CPU_GEMM_KB + kc);
                } else {
                    const unsigned char *p = (const unsigned char *)W->data + ((j0 + jj) * K + k0 + kc) * esz;
                    r[i] = W->dtype == FM_DTYPE_BF16  ? load16_bf16(p, m)
                           : W->dtype == FM_DTYPE_F16 ? load16_f16(p, m)
                                                      : load16_f32(p, m);
                }
            }
            transpose16(r);
            for (size_t k = 0; k < kn; k++) _mm512_store_ps(panel + (kc + k) * CPU_GEMM_NB + jg, r[k]);
        }
}

static void gemm(const cpu_gemv_args *a, float *scratch) {
    const fm_weight *W = a->W;
    const size_t K = (size_t)W->cols, n = a->n;
    float *panel = scratch, *rowbuf = scratch + CPU_GEMM_KB * CPU_GEMM_NB;
    for (size_t j0 = a->j0; j0 < a->j1; j0 += CPU_GEMM_NB) {
        const size_t nj = a->j1 - j0 < CPU_GEMM_NB ? a->j1 - j0 : CPU_GEMM_NB;
        const __mmask16 m0 = nj >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nj) - 1);
        const __mmask16 m1 = nj <= 16 ? (__mmask16)0 : nj >= 32 ? (__mmask16)0xffff : (__mmask16)((1u << (nj - 16)) - 1);
        for (size_t k0 = 0; k0 < K; k0 += CPU_GEMM_KB) {
            const size_t kb = K - k0 < CPU_GEMM_KB ? K - k0 : CPU_GEMM_KB;
            pack_panel(W, j0, nj, k0, kb, panel, rowbuf);
            const int load_c = k0 > 0 || a->accumulate;
            const float *bias = a->bias && k0 + kb == K ? a->bias + j0 : NULL;
            for (size_t i = 0; i < n; i += 8) {
                const float *x = a->x + i * K + k0;
                float *c = a->y + i * a->ldy + j0;
                switch (n - i < 8 ? n - i : 8) {
                case 1: micro(panel, kb, x, K, c, a->ldy, m0, m1, load_c, bias, 1); break;
                case 2: micro(panel, kb, x, K, c, a->ldy, m0, m1, load_c, bias, 2); break;
                case 3: micro(panel, kb, x, K, c, a->ldy, m0, m1, load_c, bias, 3); break;
                case 4: micro(panel, kb, x, K, c, a->ldy, m0, m1, load_c, bias, 4); break;
                case 5: micro(panel, kb, x, K, c, a->ldy, m0, m1, load_c, bias, 5); break;
                case 6: micro(panel, kb, x, K, c, a->ldy, m0, m1, load_c, bias, 6); break;
                case 7: micro(panel, kb, x, K, c, a->ldy, m0, m1, load_c, bias, 7); break;
                default: micro(panel, kb, x, K, c, a->ldy, m0, m1, load_c, bias, 8); break;
                }
            }
        }
    }
}

/* ---- transcendental helpers ------------------------------------------------------------------------ */

/* exp with range reduction to [-ln2/2, ln2/2] and a degree-7 Taylor polynomial (~1 ulp). */
AINLINE __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.72f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* log for x > 0: x = m * 2^e with m in [0.75, 1.5), log m = 2 atanh((m-1)/(m+1)) by its series. */
AINLINE __m512 log16(__m512 x) {
    __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_zero);
    __m512 e = _mm512_getexp_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.0f / 0.75f)));
    __m512 z = _mm512_div_ps(_mm512_sub_ps(m, _mm512_set1_ps(1.0f)), _mm512_add_ps(m, _mm512_set1_ps(1.0f)));
    __m512 z2 = _mm512_mul_ps(z, z);
    __m512 p = _mm512_set1_ps(2.0f / 11);
    p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(2.0f / 9));
    p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(2.0f / 7));
    p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(2.0f / 5));
    p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(2.0f / 3));
    p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(2.0f));
    return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693147180559945f), _mm512_mul_ps(p, z));
}

static void softplus(float *v, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(v + i);
        __m512 e = exp16(x), u = _mm512_add_ps(_mm512_set1_ps(1.0f), e);
        /* log1p(e) = log(u) * e / (u - 1), exact where u rounds to 1 (then it is e) */
        __m512 um1 = _mm512_sub_ps(u, _mm512_set1_ps(1.0f));
        __mmask16 tiny = _mm512_cmp_ps_mask(um1, _mm512_setzero_ps(), _CMP_EQ_OQ);
        __m512 l = _mm512_mask_blend_ps(tiny, _mm512_div_ps(_mm512_mul_ps(log16(u), e), um1), e);
        __mmask16 big = _mm512_cmp_ps_mask(x, _mm512_set1_ps(20.0f), _CMP_GT_OQ);
        _mm512_storeu_ps(v + i, _mm512_mask_blend_ps(big, l, x));
    }
    for (; i < n; i++) v[i] = v[i] > 20.0f ? v[i] : log1pf(expf(v[i]));
}

static void silu(float *v, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(v + i);
        __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), x)));
        _mm512_storeu_ps(v + i, _mm512_div_ps(x, d));
    }
    for (; i < n; i++) v[i] = v[i] / (1.0f + expf(-v[i]));
}

/* ---- selective scan: one channel's 16 states in one register ---------------------------------------- */

static void scan(const cpu_scan_args *a, size_t c0, size_t c1) {
    if (a->d_state != 16) {
        cpu_kernels_scalar()->scan(a, c0, c1);
        return;
    }
    for (size_t c = c0; c < c1; c++) {
        __m512 s = _mm512_loadu_ps(a->state + c * 16), A = _mm512_loadu_ps(a->A + c * 16);
        const float D = a->D[c];
        for (size_t t = 0; t < a->n_rows; t++) {
            const float dl = a->delta[t * a->ld + c], u = a->u[t * a->ld + c];
            __m512 B = _mm512_loadu_ps(a->B + t * a->ldbc), C = _mm512_loadu_ps(a->C + t * a->ldbc);
            __m512 dA = exp16(_mm512_mul_ps(_mm512_set1_ps(dl), A));
            s = _mm512_fmadd_ps(dA, s, _mm512_mul_ps(_mm512_set1_ps(dl * u), B));
            const float y = _mm512_reduce_add_ps(_mm512_mul_ps(s, C));
            a->y[t * a->ld + c] = (y + D * u) * a->gate[t * a->ld + c];
        }
        _mm512_storeu_ps(a->state + c * 16, s);
    }
}

static const cpu_kernels k_avx512 = {
    .name = "avx512",
    .gemv = {gemv_f32, gemv_f16, gemv_bf16, gemv_q8_0, gemv_q4_0},
    .quantize_x = quantize_x,
    .pack_x_bytes = pack_x_bytes,
    .pack_x = pack_x,
    .quantize_row = quantize_row,
    .widen = widen,
    .gemm = gemm,
    .scan = scan,
    .softplus = softplus,
    .silu = silu,
};

const cpu_kernels *cpu_kernels_avx512(void) { return &k_avx512; }
