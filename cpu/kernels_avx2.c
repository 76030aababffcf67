/* kernels_avx2.c - AVX2 + FMA + F16C kernels: the baseline table for x86-64 CPUs without AVX-512.
   Compiled with -mavx2 -mfma -mf16c for this file only; cpu_dispatch.c calls into it only after
   cpuid says the CPU and OS support them.
   Float activations stay fp32 against widened weights (bf16 by a shift, f16 by vcvtph2ps), so these
   match the reference path to rounding; Q8_0/Q4_0 use int8 activations and exact integer dots
   (vpmaddubsw + vpmaddwd), scaled in fp32 per block. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"

#define AINLINE static inline __attribute__((always_inline))
/* GEMV weight streams are prefetched this many bytes ahead (rows are contiguous, so past a row's
   end is the next row's start): measured ~2x over the hardware prefetchers alone on one thread. */
#define PF_AHEAD 2048

/* ---- small helpers ---------------------------------------------------------------------------------- */

AINLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AINLINE int32_t hsum8_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Lanes [0, r) all ones (r in 0..8), for vmaskmovps. */
AINLINE __m256i lane_mask(size_t r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AINLINE void finish(const cpu_gemv_args *a, size_t i, size_t j, float v) {
    float *o = a->y + i * a->ldy + j;
    if (a->bias) v += a->bias[j];
    *o = a->accumulate ? *o + v : v;
}

/* ---- float-weight GEMV -------------------------------------------------------------------------- */

/* 8 weights at p widened to fp32 (p only 2-byte aligned: the mapped checkpoint). */
AINLINE __m256 load8_f32(const unsigned char *p) { return _mm256_loadu_ps((const float *)p); }
AINLINE __m256 load8_bf16(const unsigned char *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
AINLINE __m256 load8_f16(const unsigned char *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* The last r < 8 weights, zero-filled above, never reading past them. */
AINLINE __m256 tail8_f32(const unsigned char *p, size_t r) { return _mm256_maskload_ps((const float *)p, lane_mask(r)); }
/* The r < 8 halves at p in the low lanes, zeros above: whole dwords by vpmaskmovd, an odd last one
   blended in from a 16-bit load. */
AINLINE __m128i tail8_u16(const unsigned char *p, size_t r) {
    const __m128i lanes = _mm_setr_epi32(0, 1, 2, 3);
    __m128i v = _mm_maskload_epi32((const int *)p, _mm_cmpgt_epi32(_mm_set1_epi32((int)(r / 2)), lanes));
    if (r & 1) {
        uint16_t last;
        memcpy(&last, p + 2 * (r - 1), 2);
        const __m128i at = _mm_cmpeq_epi16(_mm_set1_epi16((short)(r - 1)), _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7));
        v = _mm_blendv_epi8(v, _mm_set1_epi16((short)last), at);
    }
    return v;
}
AINLINE __m256 tail8_bf16(const unsigned char *p, size_t r) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(tail8_u16(p, r)), 16));
}
AINLINE __m256 tail8_f16(const unsigned char *p, size_t r) { return _mm256_cvtph_ps(tail8_u16(p, r)); }

/* One weight row against NR activation rows. U vectors of 8 per step, one accumulator each per row:
   4 for one or two rows (latency), 2 for three or four (16 ymm registers). */
#define DEF_FLOAT_ROWS(SUFFIX, ESZ)                                                                              \
    AINLINE void rows_##SUFFIX(const unsigned char *w, const float *x, size_t K, const int NR, float *out) {    \
        const int U = NR <= 2 ? 4 : 2;                                                                           \
        __m256 acc[4][4];                                                                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                                     \
            _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) acc[r][u] = _mm256_setzero_ps();                \
        size_t k = 0;                                                                                            \
        for (; k + 8 * (size_t)U <= K; k += 8 * (size_t)U) {                                                     \
            _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) {                                                \
                if ((ESZ * 8 * u) % 64 == 0) /* one prefetch per cache line */                                   \
                    _mm_prefetch((const char *)(w + ESZ * (k + 8 * (size_t)u)) + PF_AHEAD, _MM_HINT_T0);        \
                __m256 wv = load8_##SUFFIX(w + ESZ * (k + 8 * (size_t)u));                                       \
                _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++) acc[r][u] =                                 \
                    _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * K + k + 8 * (size_t)u), acc[r][u]);             \
            }                                                                                                    \
        }                                                                                                        \
        for (; k + 8 <= K; k += 8) {                                                                             \
            __m256 wv = load8_##SUFFIX(w + ESZ * k);                                                             \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++) acc[r][0] =                                     \
                _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * K + k), acc[r][0]);                                 \
        }                                                                                                        \
        if (k < K) {                                                                                             \
            const __m256i m = lane_mask(K - k);                                                                  \
            __m256 wv = tail8_##SUFFIX(w + ESZ * k, K - k);                                                      \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++) acc[r][1] =                                     \
                _mm256_fmadd_ps(wv, _mm256_maskload_ps(x + r * K + k, m), acc[r][1]);                           \
        }                                                                                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++) {                                                   \
            __m256 s = _mm256_add_ps(acc[r][0], acc[r][1]);                                                      \
            if (U == 4) s = _mm256_add_ps(s, _mm256_add_ps(acc[r][2], acc[r][3]));                               \
            out[r] = hsum8(s);                                                                                   \
        }                                                                                                        \
    }                                                                                                            \
    static void gemv_##SUFFIX(const cpu_gemv_args *a) {                                                          \
        const size_t K = (size_t)a->W->cols;                                                                     \
        float out[4];                                                                                            \
        for (size_t j = a->j0; j < a->j1; j++) {                                                                 \
            const unsigned char *w = (const unsigned char *)a->W->data + j * a->W->row_bytes;                    \
            for (size_t i = 0; i < a->n; i += 4) {                                                               \
                const float *x = a->x + i * K;                                                                   \
                size_t nr = a->n - i < 4 ? a->n - i : 4;                                                         \
                switch (nr) {                                                                                    \
                case 1: rows_##SUFFIX(w, x, K, 1, out); break;                                                   \
                case 2: rows_##SUFFIX(w, x, K, 2, out); break;                                                   \
                case 3: rows_##SUFFIX(w, x, K, 3, out); break;                                                   \
                default: rows_##SUFFIX(w, x, K, 4, out); break;                                                  \
                }                                                                                                \
                for (size_t r = 0; r < nr; r++) finish(a, i + r, j, out[r]);                                     \
            }                                                                                                    \
        }                                                                                                        \
    }

DEF_FLOAT_ROWS(f32, 4)
DEF_FLOAT_ROWS(bf16, 2)
DEF_FLOAT_ROWS(f16, 2)

/* ---- quantized GEMV: one block per 256-bit integer dot ---------------------------------------------- */

/* 16-bit pair sums of u8 x s8 (no saturation here: |products| <= 128 * 127), widened to int32. */
AINLINE __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* Q8_0: |w| (unsigned) . x*sign(w); w = -128 gives |w| = 128 as an unsigned byte, still exact. */
AINLINE void step_q8_0(const fm_block_q8_0 *w, const cpu_xblock *x, size_t nb, const int NR, __m256 *acc) {
    const __m256i wq = _mm256_loadu_si256((const __m256i *)w->q);
    const __m256i wabs = _mm256_sign_epi8(wq, wq);
    const float dw = _cvtsh_ss(w->d);
    _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++) {
        const cpu_xblock *xr = x + (size_t)r * nb;
        const __m256i xs = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xr->q), wq);
        const __m256 dot = _mm256_cvtepi32_ps(dot_u8s8(wabs, xs));
        acc[2 * r] = _mm256_fmadd_ps(dot, _mm256_set1_ps(dw * xr->d), acc[2 * r]);
    }
}
AINLINE void rows_q8_0(const fm_block_q8_0 *w, const cpu_xblock *x, size_t nb, const int NR, float *out) {
    __m256 acc[8]; /* [row][even/odd block] */
    _Pragma("GCC unroll 8") for (int r = 0; r < 2 * NR; r++) acc[r] = _mm256_setzero_ps();
    size_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char *)(w + b) + PF_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)(w + b + 1) + PF_AHEAD, _MM_HINT_T0);
        step_q8_0(w + b, x + b, nb, NR, acc);
        step_q8_0(w + b + 1, x + b + 1, nb, NR, acc + 1);
    }
    if (b < nb) step_q8_0(w + b, x + b, nb, NR, acc);
    _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++) out[r] = hsum8(_mm256_add_ps(acc[2 * r], acc[2 * r + 1]));
}

/* Q4_0: nibbles (unsigned 0..15; low nibbles are elements 0..15, high ones 16..31) . x, minus
   8 * sum(x) folded into lane 0 of the block's int32 sums, so each block's total stays exact. */
AINLINE __m256i unpack_q4(const fm_block_q4_0 *w) {
    const __m128i qs = _mm_loadu_si128((const __m128i *)w->qs), m4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), _mm_and_si128(qs, m4));
}
AINLINE void step_q4_0(const fm_block_q4_0 *w, const cpu_xblock *x, size_t nb, const int NR, __m256 *acc) {
    const __m256i wq = unpack_q4(w);
    const float dw = _cvtsh_ss(w->d);
    _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++) {
        const cpu_xblock *xr = x + (size_t)r * nb;
        __m256i dot = dot_u8s8(wq, _mm256_loadu_si256((const __m256i *)xr->q));
        dot = _mm256_sub_epi32(dot, _mm256_castsi128_si256(_mm_cvtsi32_si128(8 * xr->sum)));
        acc[2 * r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw * xr->d), acc[2 * r]);
    }
}
AINLINE void rows_q4_0(const fm_block_q4_0 *w, const cpu_xblock *x, size_t nb, const int NR, float *out) {
    __m256 acc[8]; /* [row][even/odd block] */
    _Pragma("GCC unroll 8") for (int r = 0; r < 2 * NR; r++) acc[r] = _mm256_setzero_ps();
    size_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char *)(w + b) + PF_AHEAD, _MM_HINT_T0);
        step_q4_0(w + b, x + b, nb, NR, acc);
        step_q4_0(w + b + 1, x + b + 1, nb, NR, acc + 1);
    }
    if (b < nb) step_q4_0(w + b, x + b, nb, NR, acc);
    _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++) out[r] = hsum8(_mm256_add_ps(acc[2 * r], acc[2 * r + 1]));
}

#define DEF_QUANT_GEMV(SUFFIX, BLOCK)                                                                           \
    static void gemv_##SUFFIX(const cpu_gemv_args *a) {                                                         \
        const size_t nb = (size_t)a->W->cols / FM_QBLOCK;                                                       \
        float out[4];                                                                                           \
        for (size_t j = a->j0; j < a->j1; j++) {                                                                \
            const BLOCK *w = (const BLOCK *)((const unsigned char *)a->W->data + j * a->W->row_bytes);          \
            for (size_t i = 0; i < a->n; i += 4) {                                                              \
                const cpu_xblock *x = a->xq + i * nb;                                                           \
                size_t nr = a->n - i < 4 ? a->n - i : 4;                                                        \
                switch (nr) {                                                                                   \
                case 1: rows_##SUFFIX(w, x, nb, 1, out); break;                                                 \
                case 2: rows_##SUFFIX(w, x, nb, 2, out); break;                                                 \
                case 3: rows_##SUFFIX(w, x, nb, 3, out); break;                                                 \
                default: rows_##SUFFIX(w, x, nb, 4, out); break;                                                \
                }                                                                                               \
                for (size_t r = 0; r < nr; r++) finish(a, i + r, j, out[r]);                                    \
            }                                                                                                   \
        }                                                                                                       \
    }

DEF_QUANT_GEMV(q8_0, fm_block_q8_0)
DEF_QUANT_GEMV(q4_0, fm_block_q4_0)

/* roundf (half away from zero), exactly: t = trunc(v) and v - t is exact, so |v - t| >= 0.5 picks
   the next integer away from zero. (trunc(v + copysign(0.5, v)) is not: 0.49999997 + 0.5 rounds up.) */
AINLINE __m256i round_away(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 up = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 one = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f)); /* copysign(1, v) */
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, one)));
}

static void quantize_x(const float *x, size_t K, cpu_xblock *out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (size_t b = 0; b < K / FM_QBLOCK; b++) {
        const float *p = x + b * FM_QBLOCK;
        __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8), v2 = _mm256_loadu_ps(p + 16),
               v3 = _mm256_loadu_ps(p + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q0 = round_away(_mm256_mul_ps(v0, vid)), q1 = round_away(_mm256_mul_ps(v1, vid));
        __m256i q2 = round_away(_mm256_mul_ps(v2, vid)), q3 = round_away(_mm256_mul_ps(v3, vid));
        /* int32 -> int8 (values within +-127, no saturation); packs work per 128-bit lane, so the
           dwords come out as q0[0:4] q1[0:4] q2[0:4] q3[0:4] q0[4:8] ... and one permute fixes it */
        __m256i pk = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        pk = _mm256_permutevar8x32_epi32(pk, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)out[b].q, pk);
        out[b].d = d;
        out[b].sum = hsum8_epi32(_mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3)));
    }
}

/* ---- panel-packed GEMM for prefill ----------------------------------------------------------------- */

/* The CPU_GEMM_NB = 32 columns of a panel are packed as two halves of 16, each [kb][16], so the
   micro-kernel streams one contiguous half: MR (<= 6) activation rows x 16 columns in 12 ymm. */
#define HALF 16

AINLINE void micro(const float *panel, size_t kb, const float *x, size_t ldx, float *c, size_t ldc, __m256i m0,
                   __m256i m1, int full, int load_c, const float *bias, const int MR) {
    __m256 acc[6][2];
    _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
        if (!load_c) {
            acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        } else if (full) {
            acc[r][0] = _mm256_loadu_ps(c + r * ldc);
            acc[r][1] = _mm256_loadu_ps(c + r * ldc + 8);
        } else {
            acc[r][0] = _mm256_maskload_ps(c + r * ldc, m0);
            acc[r][1] = _mm256_maskload_ps(c + r * ldc + 8, m1);
        }
    }
    for (size_t k = 0; k < kb; k++) {
        const __m256 w0 = _mm256_load_ps(panel + k * HALF), w1 = _mm256_load_ps(panel + k * HALF + 8);
        _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
            const __m256 xb = _mm256_broadcast_ss(x + r * ldx + k);
            acc[r][0] = _mm256_fmadd_ps(xb, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xb, w1, acc[r][1]);
        }
    }
    if (bias) {
        const __m256 b0 = full ? _mm256_loadu_ps(bias) : _mm256_maskload_ps(bias, m0);
        const __m256 b1 = full ? _mm256_loadu_ps(bias + 8) : _mm256_maskload_ps(bias + 8, m1);
        _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
            acc[r][0] = _mm256_add_ps(acc[r][0], b0);
            acc[r][1] = _mm256_add_ps(acc[r][1], b1);
        }
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
        if (full) {
            _mm256_storeu_ps(c + r * ldc, acc[r][0]);
            _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
        } else {
            _mm256_maskstore_ps(c + r * ldc, m0, acc[r][0]);
            _mm256_maskstore_ps(c + r * ldc + 8, m1, acc[r][1]);
        }
    }
}

/* Elements [k, k+8) of one weight row widened to fp32 (k a multiple of 8; r < 8 of them at the end
   of a float row, zero above). Dequantized values are d * q in one multiply, as in quant.h. */
AINLINE __m256 col8(const unsigned char *src, fm_dtype t, size_t k, size_t r) {
    switch (t) {
    case FM_DTYPE_F32: return r < 8 ? tail8_f32(src + 4 * k, r) : load8_f32(src + 4 * k);
    case FM_DTYPE_F16: return r < 8 ? tail8_f16(src + 2 * k, r) : load8_f16(src + 2 * k);
    case FM_DTYPE_BF16: return r < 8 ? tail8_bf16(src + 2 * k, r) : load8_bf16(src + 2 * k);
    case FM_DTYPE_Q8_0: {
        const fm_block_q8_0 *bl = (const fm_block_q8_0 *)src + k / FM_QBLOCK;
        const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(bl->q + k % FM_QBLOCK)));
        return _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(bl->d)), _mm256_cvtepi32_ps(q));
    }
    default: { /* Q4_0: elements o < 16 in the low nibbles of qs[o], the rest in the high ones */
        const fm_block_q4_0 *bl = (const fm_block_q4_0 *)src + k / FM_QBLOCK;
        const size_t o = k % FM_QBLOCK;
        __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(bl->qs + o % 16)));
        q = _mm256_and_si256(_mm256_srlv_epi32(q, _mm256_set1_epi32(o < 16 ? 0 : 4)), _mm256_set1_epi32(0x0f));
        q = _mm256_sub_epi32(q, _mm256_set1_epi32(8));
        return _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(bl->d)), _mm256_cvtepi32_ps(q));
    }
    }
}

/* Widen and transpose W[j0 .. j0+nj)[k0 .. k0+kb) into the two half panels (missing columns
   zero): 8 columns x 8 k at a time through an in-register 8x8 transpose. */
static void pack_panel(const fm_weight *W, size_t j0, size_t nj, size_t k0, size_t kb, float *panel) {
    const fm_dtype t = W->dtype;
    for (size_t jg = 0; jg < CPU_GEMM_NB; jg += 8) {
        float *dst = panel + (jg / HALF) * CPU_GEMM_KB * HALF + jg % HALF;
        if (jg >= nj) {
            for (size_t k = 0; k < kb; k++) _mm256_store_ps(dst + k * HALF, _mm256_setzero_ps());
            continue;
        }
        const unsigned char *src[8];
        for (int c = 0; c < 8; c++) src[c] = jg + c < nj ? (const unsigned char *)W->data + (j0 + jg + c) * W->row_bytes : NULL;
        for (size_t k = 0; k < kb; k += 8) {
            const size_t r = kb - k < 8 ? kb - k : 8;
            __m256 v[8];
            for (int c = 0; c < 8; c++) v[c] = src[c] ? col8(src[c], t, k0 + k, r) : _mm256_setzero_ps();
            /* transpose: v[c][l] (column c, k + l) -> row l of the panel */
            __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
            __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
            __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
            __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
            __m256 o[8] = {
                _mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31),
            };
            for (size_t l = 0; l < r; l++) _mm256_store_ps(dst + (k + l) * HALF, o[l]);
        }
    }
}

static void gemm(const cpu_gemv_args *a, float *scratch) {
    const fm_weight *W = a->W;
    const size_t K = (size_t)W->cols, n = a->n;
    float *panel = scratch; /* two half panels: CPU_GEMM_KB * CPU_GEMM_NB of the scratch floats */
    for (size_t j0 = a->j0; j0 < a->j1; j0 += CPU_GEMM_NB) {
        const size_t nj = a->j1 - j0 < CPU_GEMM_NB ? a->j1 - j0 : CPU_GEMM_NB;
        for (size_t k0 = 0; k0 < K; k0 += CPU_GEMM_KB) {
            const size_t kb = K - k0 < CPU_GEMM_KB ? K - k0 : CPU_GEMM_KB;
            pack_panel(W, j0, nj, k0, kb, panel);
            const int load_c = k0 > 0 || a->accumulate;
            const int last = k0 + kb == K;
            for (size_t h = 0; h * HALF < nj; h++) {
                const size_t jh = j0 + h * HALF, nh = nj - h * HALF < HALF ? nj - h * HALF : HALF;
                const int full = nh == HALF;
                const __m256i m0 = lane_mask(nh < 8 ? nh : 8), m1 = lane_mask(nh > 8 ? nh - 8 : 0);
                const float *bias = a->bias && last ? a->bias + jh : NULL;
                const float *ph = panel + h * CPU_GEMM_KB * HALF;
                for (size_t i = 0; i < n; i += 6) {
                    const float *x = a->x + i * K + k0;
                    float *c = a->y + i * a->ldy + jh;
                    switch (n - i < 6 ? n - i : 6) {
                    case 1: micro(ph, kb, x, K, c, a->ldy, m0, m1, full, load_c, bias, 1); break;
                    case 2: micro(ph, kb, x, K, c, a->ldy, m0, m1, full, load_c, bias, 2); break;
                    case 3: micro(ph, kb, x, K, c, a->ldy, m0, m1, full, load_c, bias, 3); break;
                    case 4: micro(ph, kb, x, K, c, a->ldy, m0, m1, full, load_c, bias, 4); break;
                    case 5: micro(ph, kb, x, K, c, a->ldy, m0, m1, full, load_c, bias, 5); break;
                    default: micro(ph, kb, x, K, c, a->ldy, m0, m1, full, load_c, bias, 6); break;
                    }
                }
            }
        }
    }
}

/* ---- transcendental helpers ------------------------------------------------------------------------ */

/* 2^n for integer-valued n in [-126, 127], built in the exponent field. */
AINLINE __m256 pow2i(__m256i n) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23)); }

/* exp: x = n ln2 + r with |r| <= ln2/2 (two-constant Cody-Waite), e^r by its degree-7 Taylor
   polynomial (~1 ulp), times 2^n applied in two halves so results down in the subnormals round
   once, as expf's do. Clamped to [-104, 88.72]: 0 below, finite above. */
AINLINE __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(88.72f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    return _mm256_mul_ps(_mm256_mul_ps(p, pow2i(n1)), pow2i(n2));
}

/* log for normal x > 0: x = m * 2^e with m in [0.75, 1.5) (from the bits: subtracting 0.75's
   pattern makes the exponent field e exactly), log m = 2 atanh((m-1)/(m+1)) by its series. */
AINLINE __m256 log8(__m256 x) {
    const __m256i bits = _mm256_castps_si256(x);
    const __m256i e = _mm256_srai_epi32(_mm256_sub_epi32(bits, _mm256_set1_epi32(0x3f400000)), 23);
    const __m256 m = _mm256_castsi256_ps(_mm256_sub_epi32(bits, _mm256_slli_epi32(e, 23)));
    const __m256 z = _mm256_div_ps(_mm256_sub_ps(m, _mm256_set1_ps(1.0f)), _mm256_add_ps(m, _mm256_set1_ps(1.0f)));
    const __m256 z2 = _mm256_mul_ps(z, z);
    __m256 p = _mm256_set1_ps(2.0f / 11);
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(2.0f / 9));
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(2.0f / 7));
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(2.0f / 5));
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(2.0f / 3));
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(2.0f));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(e), _mm256_set1_ps(0.693147180559945f), _mm256_mul_ps(p, z));
}

AINLINE __m256 softplus8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 e = exp8(x), u = _mm256_add_ps(one, e), um1 = _mm256_sub_ps(u, one);
    /* log1p(e) = log(u) * e / (u - 1), exact where u rounds to 1 (then it is e): accurate for very
       negative x, where log(1 + e) alone would lose everything */
    const __m256 tiny = _mm256_cmp_ps(um1, _mm256_setzero_ps(), _CMP_EQ_OQ);
    const __m256 l = _mm256_blendv_ps(_mm256_div_ps(_mm256_mul_ps(log8(u), e), um1), e, tiny);
    return _mm256_blendv_ps(l, x, _mm256_cmp_ps(x, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
}

/* silu(x) = x * sigmoid(x) with e = exp(-|x|): x / (1 + e) for x >= 0, x * e / (1 + e) below, so
   large negative x keeps its (tiny) value instead of dividing by an overflowed exp. */
AINLINE __m256 silu8(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 e = exp8(_mm256_or_ps(x, sign)); /* exp(-|x|) */
    const __m256 num = _mm256_blendv_ps(x, _mm256_mul_ps(x, e), x); /* sign bit of x selects */
    return _mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

static void softplus(float *v, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, softplus8(_mm256_loadu_ps(v + i)));
    if (i < n) {
        const __m256i m = lane_mask(n - i);
        _mm256_maskstore_ps(v + i, m, softplus8(_mm256_maskload_ps(v + i, m)));
    }
}

static void silu(float *v, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, silu8(_mm256_loadu_ps(v + i)));
    if (i < n) {
        const __m256i m = lane_mask(n - i);
        _mm256_maskstore_ps(v + i, m, silu8(_mm256_maskload_ps(v + i, m)));
    }
}

/* ---- selective scan: one channel's 16 states in two registers --------------------------------------- */

static void scan(const cpu_scan_args *a, size_t c0, size_t c1) {
    if (a->d_state != 16) {
        cpu_kernels_scalar()->scan(a, c0, c1);
        return;
    }
    for (size_t c = c0; c < c1; c++) {
        __m256 s0 = _mm256_loadu_ps(a->state + c * 16), s1 = _mm256_loadu_ps(a->state + c * 16 + 8);
        const __m256 A0 = _mm256_loadu_ps(a->A + c * 16), A1 = _mm256_loadu_ps(a->A + c * 16 + 8);
        const float D = a->D[c];
        for (size_t t = 0; t < a->n_rows; t++) {
            const float dl = a->delta[t * a->ld + c], u = a->u[t * a->ld + c];
            const float *B = a->B + t * a->ldbc, *C = a->C + t * a->ldbc;
            const __m256 vdl = _mm256_set1_ps(dl), vdu = _mm256_set1_ps(dl * u);
            const __m256 dA0 = exp8(_mm256_mul_ps(vdl, A0)), dA1 = exp8(_mm256_mul_ps(vdl, A1));
            s0 = _mm256_fmadd_ps(dA0, s0, _mm256_mul_ps(vdu, _mm256_loadu_ps(B)));
            s1 = _mm256_fmadd_ps(dA1, s1, _mm256_mul_ps(vdu, _mm256_loadu_ps(B + 8)));
            const float y = hsum8(_mm256_fmadd_ps(s0, _mm256_loadu_ps(C), _mm256_mul_ps(s1, _mm256_loadu_ps(C + 8))));
            a->y[t * a->ld + c] = (y + D * u) * a->gate[t * a->ld + c];
        }
        _mm256_storeu_ps(a->state + c * 16, s0);
        _mm256_storeu_ps(a->state + c * 16 + 8, s1);
    }
}

static const cpu_kernels k_avx2 = {
    .name = "avx2",
    .gemv = {gemv_f32, gemv_f16, gemv_bf16, gemv_q8_0, gemv_q4_0},
    .quantize_x = quantize_x,
    .gemm = gemm,
    .scan = scan,
    .softplus = softplus,
    .silu = silu,
};

const cpu_kernels *cpu_kernels_avx2(void) { return &k_avx2; }
