/* test_cpu_kernels - every CPU kernel table this machine runs, against double-precision references
 * and against the scalar table: GEMV for each weight type, batch sizes and K tails; the GEMM; the
 * Q8_0/Q4_0 block formats; activation quantization; the scan; softplus/silu; the worker pool.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h> /* cmocka needs these first */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "cpu_kernels.h"
#include "cpu_pool.h"

static uint64_t g_rng = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static const cpu_kernels *g_tables[3];
static size_t g_n_tables;

static int setup_tables(void **state) {
    (void)state;
    const cpu_kernels *all[] = {cpu_kernels_scalar(), cpu_kernels_avx2(), cpu_kernels_avx512()};
    for (size_t i = 0; i < 3; i++)
        if (cpu_kernels_supported(all[i])) {
            g_tables[g_n_tables++] = all[i];
            printf("table %s: supported\n", all[i]->name);
        } else {
            printf("table %s: %s\n", i == 1 ? "avx2" : "avx512", all[i] ? "not supported by this CPU" : "not built");
        }
    return 0;
}

/* A weight of `rows` x `cols` in dtype t from random floats, made through the backend's own
   weight_create (owned copy) so quantized rows are laid out exactly as at load. */
typedef struct test_weight {
    fm_weight w;
    void *data;
} test_weight;

static void make_weight(test_weight *tw, fm_dtype t, size_t rows, size_t cols, float scale) {
    float *f = malloc(rows * cols * sizeof *f);
    for (size_t i = 0; i < rows * cols; i++) f[i] = frand() * scale;
    tw->w.dtype = t;
    tw->w.rows = (int64_t)rows;
    tw->w.cols = (int64_t)cols;
    tw->w.row_bytes = fm_dtype_row_bytes(t, cols);
    tw->w.bytes = rows * tw->w.row_bytes;
    tw->w.owned = 1;
    tw->data = cpu_aligned_alloc(tw->w.bytes);
    tw->w.data = tw->data;
    for (size_t r = 0; r < rows; r++) {
        unsigned char *dst = (unsigned char *)tw->data + r * tw->w.row_bytes;
        const float *src = f + r * cols;
        switch (t) {
        case FM_DTYPE_F32: memcpy(dst, src, cols * 4); break;
        case FM_DTYPE_BF16:
            for (size_t i = 0; i < cols; i++) ((uint16_t *)dst)[i] = fm_f32_to_bf16(src[i]);
            break;
        case FM_DTYPE_F16:
            for (size_t i = 0; i < cols; i++) ((uint16_t *)dst)[i] = fm_f32_to_f16(src[i]);
            break;
        case FM_DTYPE_Q8_0: fm_quantize_row_q8_0(src, (fm_block_q8_0 *)dst, cols); break;
        case FM_DTYPE_Q4_0: fm_quantize_row_q4_0(src, (fm_block_q4_0 *)dst, cols); break;
        }
    }
    free(f);
}

/* y_ref = acc ? y0 : 0 + W x + b, in double from the widened weights (and, for quantized W, from
   the dequantized activations the integer kernels actually multiply). */
static void reference(const fm_weight *W, const float *x, const cpu_xblock *xq, size_t n, const float *bias,
                      int accumulate, const float *y0, double *out) {
    const size_t rows = (size_t)W->rows, K = (size_t)W->cols;
    float *wr = malloc(K * sizeof *wr);
    for (size_t j = 0; j < rows; j++) {
        cpu_weight_row_f32(W, (int64_t)j, wr);
        for (size_t i = 0; i < n; i++) {
            double s = 0;
            for (size_t k = 0; k < K; k++) {
                double xv = xq ? (double)xq[i * (K / 32) + k / 32].d * xq[i * (K / 32) + k / 32].q[k % 32] : x[i * K + k];
                s += (double)wr[k] * xv;
            }
            if (bias) s += bias[j];
            if (accumulate) s += y0[i * rows + j];
            out[i * rows + j] = s;
        }
    }
    free(wr);
}

/* max |y - ref| / max(1, max |ref|) */
static double rel_err(const float *y, const double *ref, size_t n) {
    double e = 0, m = 1;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)y[i] - ref[i]));
        m = fmax(m, fabs(ref[i]));
    }
    return e / m;
}

static void check_product(const cpu_kernels *k, fm_dtype t, size_t rows, size_t K, size_t n, int accumulate,
                          int with_bias, int use_gemm) {
    test_weight tw;
    make_weight(&tw, t, rows, K, 1.0f);
    float *x = malloc(n * K * sizeof *x), *y = malloc(n * rows * sizeof *y), *y0 = malloc(n * rows * sizeof *y0);
    float *bias = malloc(rows * sizeof *bias);
    double *ref = malloc(n * rows * sizeof *ref);
    for (size_t i = 0; i < n * K; i++) x[i] = frand();
    for (size_t i = 0; i < n * rows; i++) y0[i] = y[i] = frand();
    for (size_t j = 0; j < rows; j++) bias[j] = frand();
    const int quant = t == FM_DTYPE_Q8_0 || t == FM_DTYPE_Q4_0;
    cpu_xblock *xq = NULL;
    if (quant && !use_gemm) {
        xq = malloc(n * (K / 32) * sizeof *xq);
        for (size_t i = 0; i < n; i++) k->quantize_x(x + i * K, K, xq + i * (K / 32));
    }
    unsigned char *xp = NULL;
    const size_t pb = xq && k->pack_x ? k->pack_x_bytes(t, K) : 0;
    if (pb) { /* the table's own activation layout, as cpu_matmul makes it */
        assert_int_equal(pb % 64, 0);
        xp = cpu_aligned_alloc(n * pb);
        for (size_t i = 0; i < n; i++) k->pack_x(t, xq + i * (K / 32), K, xp + i * pb);
    }
    cpu_gemv_args a = {&tw.w, 0, rows, x, xq, n, y, rows, with_bias ? bias : NULL, accumulate, xp};
    if (use_gemm) {
        float *scratch = cpu_aligned_alloc(CPU_GEMM_SCRATCH_FLOATS * sizeof(float));
        /* split the columns in two calls, as the pool does, at a panel boundary */
        cpu_gemv_args b = a;
        size_t mid = rows > CPU_GEMM_NB ? CPU_GEMM_NB : rows;
        a.j1 = mid;
        b.j0 = mid;
        k->gemm(&a, scratch);
        if (mid < rows) k->gemm(&b, scratch);
        free(scratch);
    } else {
        k->gemv[t](&a);
    }
    reference(&tw.w, x, xq, n, with_bias ? bias : NULL, accumulate, y0, ref);
    double e = rel_err(y, ref, n * rows);
    /* fp32 accumulation over K terms of size ~1: a few ulps of sqrt(K)-sized partial sums */
    const double tol = 2e-6 * sqrt((double)K) + 1e-6;
    if (e > tol)
        fail_msg("%s %s dtype %d rows %zu K %zu n %zu acc %d bias %d: rel error %.3g > %.3g", k->name,
                 use_gemm ? "gemm" : "gemv", (int)t, rows, K, n, accumulate, with_bias, e, tol);
    free(x);
    free(y);
    free(y0);
    free(bias);
    free(ref);
    free(xq);
    free(xp);
    free(tw.data);
}

static void test_gemv_float(void **state) {
    (void)state;
    /* 768 and 1100: batches take the column-chunked path (chunks of 512, a ragged last one); 37 rows:
       more than one group of 16 weight rows, the last partial */
    const size_t Ks[] = {1, 3, 15, 16, 17, 31, 33, 40, 64, 100, 768, 1100};
    const fm_dtype ts[] = {FM_DTYPE_F32, FM_DTYPE_F16, FM_DTYPE_BF16};
    for (size_t ti = 0; ti < g_n_tables; ti++)
        for (size_t d = 0; d < 3; d++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
                for (size_t n = 1; n <= CPU_GEMV_MAX_ROWS; n++)
                    check_product(g_tables[ti], ts[d], Ks[ki] > 512 ? 37 : 13, Ks[ki], n, (int)(n & 1),
                                  (int)((n >> 1) & 1), 0);
}

static void test_gemv_quant(void **state) {
    (void)state;
    const size_t Ks[] = {32, 64, 96, 256, 800};
    for (size_t ti = 0; ti < g_n_tables; ti++)
        for (fm_dtype t = FM_DTYPE_Q8_0; t <= FM_DTYPE_Q4_0; t++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
                for (size_t n = 1; n <= CPU_GEMV_MAX_ROWS; n++)
                    check_product(g_tables[ti], t, 11, Ks[ki], n, (int)(n & 1), (int)((n >> 1) & 1), 0);
}

static void test_gemm(void **state) {
    (void)state;
    const size_t shapes[][3] = {{1, 16, 9}, {31, 40, 17}, {33, 300, 9}, {80, 513, 64}, {64, 256, 23}, {45, 1, 12}};
    const fm_dtype ts[] = {FM_DTYPE_F32, FM_DTYPE_F16, FM_DTYPE_BF16, FM_DTYPE_Q8_0, FM_DTYPE_Q4_0};
    int ran = 0;
    for (size_t ti = 0; ti < g_n_tables; ti++) {
        if (!g_tables[ti]->gemm) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t d = 0; d < 5; d++) {
                if (d >= 3 && shapes[s][1] % 32) continue;
                for (int acc = 0; acc < 2; acc++)
                    check_product(g_tables[ti], ts[d], shapes[s][0], shapes[s][1], shapes[s][2], acc, !acc, 1);
            }
        ran++;
    }
    printf("gemm checked for %d table(s)\n", ran);
}

/* The block layouts are llama.cpp's: a hand-made Q4_0 block and Q8_0 block decode as documented. */
static void test_quant_formats(void **state) {
    (void)state;
    float x[32], y[32];
    for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) / 4.0f; /* -4 .. 3.75: max |.| is -4 */
    fm_block_q4_0 b4;
    fm_quantize_row_q4_0(x, &b4, 32);
    assert_float_equal(fm_f16_to_f32(b4.d), 0.5f, 0); /* d = max / -8 = -4 / -8 */
    /* element 0 (-4) -> -4/0.5 + 8 = 0 in the low nibble of byte 0; element 16 (0) -> 8 in its high nibble */
    assert_int_equal(b4.qs[0], 0x80);
    fm_dequantize_row_q4_0(&b4, y, 32);
    for (int i = 0; i < 32; i++) assert_true(fabsf(y[i] - x[i]) <= 0.25f + 1e-6f);
    fm_block_q8_0 b8;
    fm_quantize_row_q8_0(x, &b8, 32);
    assert_float_equal(fm_f16_to_f32(b8.d), fm_f16_to_f32(fm_f32_to_f16(4.0f / 127.0f)), 0);
    assert_int_equal(b8.q[0], -127);
    assert_int_equal(b8.q[16], 0);
    fm_dequantize_row_q8_0(&b8, y, 32);
    for (int i = 0; i < 32; i++) assert_true(fabsf(y[i] - x[i]) <= 4.0f / 127.0f * 0.5f + 1e-3f);
    /* an all-zero block has scale 0 and decodes to zeros */
    memset(x, 0, sizeof x);
    fm_quantize_row_q4_0(x, &b4, 32);
    fm_dequantize_row_q4_0(&b4, y, 32);
    for (int i = 0; i < 32; i++) assert_float_equal(y[i], 0.0f, 0);
}

/* Every table's quantize_row of x equals quant.h's reference, byte for byte, both types. */
static void check_quantize_row(const float *x, size_t cols) {
    const size_t nb = cols / 32;
    fm_block_q8_0 *r8 = malloc(nb * sizeof *r8), *g8 = malloc(nb * sizeof *g8);
    fm_block_q4_0 *r4 = malloc(nb * sizeof *r4), *g4 = malloc(nb * sizeof *g4);
    assert_non_null(r8);
    assert_non_null(g8);
    assert_non_null(r4);
    assert_non_null(g4);
    fm_quantize_row_q8_0(x, r8, cols);
    fm_quantize_row_q4_0(x, r4, cols);
    for (size_t ti = 0; ti < g_n_tables; ti++) {
        if (!g_tables[ti]->quantize_row) continue;
        g_tables[ti]->quantize_row(FM_DTYPE_Q8_0, x, g8, cols);
        g_tables[ti]->quantize_row(FM_DTYPE_Q4_0, x, g4, cols);
        assert_memory_equal(g8, r8, nb * sizeof *r8);
        assert_memory_equal(g4, r4, nb * sizeof *r4);
    }
    free(r8);
    free(g8);
    free(r4);
    free(g4);
}

/* Weight quantization at load is bit-identical to quant.h in every table. */
static void test_quantize_row(void **state) {
    (void)state;
    const size_t cols = 32 * 24;
    float *x = malloc(cols * sizeof *x);
    for (size_t i = 0; i < cols; i++) x[i] = frand() * (i % 96 == 5 ? 30.0f : 1.0f);
    for (size_t i = 64; i < 96; i++) x[i] = 0.0f;             /* all-zero block */
    x[100] = 2.0f, x[101] = -2.0f, x[102] = 2.0f;             /* ties for the largest magnitude */
    x[140] = -3.0f, x[150] = 3.0f;
    for (size_t i = 192; i < 224; i++) x[i] = (float)(int)(i % 17) - 8.0f; /* exact halves after scaling */
    check_quantize_row(x, cols);
    free(x);
}

/* The same over 57 blocks (three groups of 16 reduced together, then 9 one at a time) with block
   magnitudes from 1e-9 to 6e4 (scales from zero through fp16 subnormals to the thousands). */
static void test_quantize_row_ranges(void **state) {
    (void)state;
    const size_t nb = 57, cols = 32 * nb;
    float *x = malloc(cols * sizeof *x);
    for (size_t b = 0; b < nb; b++) {
        const float mag = powf(10.0f, -9.0f + 13.8f * (float)((b * 37) % nb) / (float)(nb - 1));
        for (size_t i = 0; i < 32; i++) x[b * 32 + i] = frand() * mag;
    }
    for (size_t i = 0; i < 32; i++) x[20 * 32 + i] = 0.0f;           /* all-zero block in a group */
    x[50 * 32 + 3] = 5.0f, x[50 * 32 + 30] = -5.0f;                   /* a tie in the tail */
    x[33 * 32 + 7] = -7.0f, x[33 * 32 + 9] = 7.0f;                    /* a tie in a group */
    check_quantize_row(x, cols);
    free(x);
}

/* The load-time widening, where a table has one, equals cpu_weight_slice_f32 bit for bit. */
static void test_widen(void **state) {
    (void)state;
    const size_t ns[] = {1, 15, 16, 17, 100, 2048};
    const fm_dtype ts[] = {FM_DTYPE_F32, FM_DTYPE_F16, FM_DTYPE_BF16};
    for (size_t ti = 0; ti < g_n_tables; ti++) {
        if (!g_tables[ti]->widen) continue;
        for (size_t d = 0; d < 3; d++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                test_weight tw;
                make_weight(&tw, ts[d], 1, ns[ni], 3.0f);
                float *want = malloc(ns[ni] * sizeof *want), *got = malloc((ns[ni] + 16) * sizeof *got);
                for (size_t i = 0; i < ns[ni] + 16; i++) got[i] = 12345.0f;
                cpu_weight_slice_f32(&tw.w, 0, 0, ns[ni], want);
                g_tables[ti]->widen(ts[d], tw.data, got, ns[ni]);
                assert_memory_equal(got, want, ns[ni] * sizeof *want);
                for (size_t i = ns[ni]; i < ns[ni] + 16; i++) assert_float_equal(got[i], 12345.0f, 0); /* no overrun */
                free(want);
                free(got);
                free(tw.data);
            }
    }
}

/* Activation quantization is bit-identical across tables (the integer dots depend on it). */
static void test_quantize_x(void **state) {
    (void)state;
    const size_t K = 32 * 40;
    float *x = malloc(K * sizeof *x);
    for (size_t i = 0; i < K; i++) x[i] = frand() * (i % 64 == 0 ? 10.0f : 1.0f);
    x[5] = 0.5f * (x[0] / 127.0f); /* ties and exact halves exercise the rounding */
    /* a block whose scaled values sit one ulp below and above k + 0.5 (roundf must not round up) */
    x[32 * 5] = 127.0f;
    for (int l = 1; l < 32; l++) {
        const float half = (float)(l % 60) + 0.5f;
        x[32 * 5 + l] = l & 1 ? nextafterf(half, 0.0f) : nextafterf(half, 100.0f);
    }
    x[32 * 5 + 30] = nextafterf(0.5f, 0.0f); /* 0.49999997: + 0.5 would round to 1 in float */
    x[32 * 5 + 31] = -nextafterf(0.5f, 0.0f);
    for (size_t i = 32 * 3; i < 32 * 4; i++) x[i] = 0.0f; /* an all-zero block */
    cpu_xblock ref[40], got[40];
    cpu_kernels_scalar()->quantize_x(x, K, ref);
    for (size_t ti = 0; ti < g_n_tables; ti++) {
        memset(got, 0xab, sizeof got);
        g_tables[ti]->quantize_x(x, K, got);
        for (size_t b = 0; b < 40; b++) {
            assert_float_equal(got[b].d, ref[b].d, 0);
            assert_int_equal(got[b].sum, ref[b].sum);
            assert_memory_equal(got[b].q, ref[b].q, 32);
        }
    }
    free(x);
}

static void test_scan(void **state) {
    (void)state;
    const size_t dstates[] = {16, 8, 5};
    const size_t di = 40, T = 7;
    for (size_t si = 0; si < 3; si++) {
        const size_t N = dstates[si], ldbc = 2 * N + 3;
        float *delta = malloc(T * di * 4), *u = malloc(T * di * 4), *gate = malloc(T * di * 4);
        float *bc = malloc(T * ldbc * 4), *A = malloc(di * N * 4), *D = malloc(di * 4);
        float *s0 = malloc(di * N * 4), *s_ref = malloc(di * N * 4), *s = malloc(di * N * 4);
        float *y_ref = malloc(T * di * 4), *y = malloc(T * di * 4);
        for (size_t i = 0; i < T * di; i++) {
            delta[i] = 0.5f * (frand() + 1.0f) * (i % 7 == 0 ? 10.0f : 1.0f);
            u[i] = frand();
            gate[i] = frand();
        }
        for (size_t i = 0; i < T * ldbc; i++) bc[i] = frand();
        for (size_t i = 0; i < di * N; i++) {
            A[i] = -(float)(1 + i % N) * (i % 3 == 0 ? 20.0f : 1.0f); /* some decays underflow */
            s0[i] = frand();
        }
        for (size_t i = 0; i < di; i++) D[i] = frand();
        memcpy(s_ref, s0, di * N * 4);
        cpu_scan_args a = {T, N, delta, u, gate, di, bc + 3, bc + 3 + N, ldbc, A, D, s_ref, y_ref};
        cpu_kernels_scalar()->scan(&a, 0, di);
        for (size_t ti = 0; ti < g_n_tables; ti++) {
            memcpy(s, s0, di * N * 4);
            a.state = s;
            a.y = y;
            /* two channel ranges, as two threads would */
            g_tables[ti]->scan(&a, 0, 16);
            g_tables[ti]->scan(&a, 16, di);
            for (size_t i = 0; i < di * N; i++) assert_true(fabsf(s[i] - s_ref[i]) <= 1e-5f * (1 + fabsf(s_ref[i])));
            for (size_t i = 0; i < T * di; i++) assert_true(fabsf(y[i] - y_ref[i]) <= 1e-5f * (1 + fabsf(y_ref[i])));
        }
        free(delta), free(u), free(gate), free(bc), free(A), free(D), free(s0), free(s_ref), free(s), free(y_ref),
            free(y);
    }
}

/* The backend's conv1d (time-major, channel blocks split over a pool) against the reference, per
   table: segments longer than the kernel, shorter than its history (state carried through), and
   single rows; channel counts that leave partial blocks; with and without bias. */
static void test_conv1d(void **state) {
    (void)state;
    cpu_pool *pool = NULL;
    assert_int_equal(cpu_pool_create(2, &pool), 0);
    const size_t dis[] = {40, 300, 517};
    const int32_t Ks[] = {4, 2, 1};
    const int32_t seg_rows[] = {9, 2, 1, 5};
    const size_t nseg = 4, rows = 9 + 2 + 1 + 5;
    for (size_t di_i = 0; di_i < 3; di_i++)
        for (size_t ki = 0; ki < 3; ki++)
            for (int with_b = 0; with_b < 2; with_b++) {
                const size_t di = dis[di_i], K = (size_t)Ks[ki], km1 = K - 1, ld = 2 * di + 3;
                float *in = malloc(rows * ld * 4), *w = malloc(di * K * 4), *b = malloc(di * 4);
                float *st0 = malloc(nseg * di * (km1 + 1) * 4), *st_ref = malloc(nseg * di * (km1 + 1) * 4);
                float *st = malloc(nseg * di * (km1 + 1) * 4);
                float *y_ref = malloc(rows * di * 4), *y = malloc(rows * di * 4);
                for (size_t i = 0; i < rows * ld; i++) in[i] = 2.0f * frand();
                for (size_t i = 0; i < di * K; i++) w[i] = frand();
                for (size_t i = 0; i < di; i++) b[i] = frand();
                for (size_t i = 0; i < nseg * di * (km1 + 1); i++) st0[i] = frand();
                fm_weight wv = {0}, bv = {0};
                wv.data = w;
                wv.dtype = FM_DTYPE_F32;
                wv.rows = (int64_t)di;
                wv.cols = (int64_t)K;
                bv.data = b;
                bv.dtype = FM_DTYPE_F32;
                bv.rows = 1;
                bv.cols = (int64_t)di;
                fm_segment segs[4];
                int32_t r0 = 0;
                for (size_t sgi = 0; sgi < nseg; sgi++) {
                    segs[sgi].row0 = r0;
                    segs[sgi].n_rows = seg_rows[sgi];
                    r0 += seg_rows[sgi];
                    segs[sgi].ssm_state = NULL;
                }
                fm_conv_args a = {segs, nseg, in, ld, y_ref, &wv, with_b ? &bv : NULL, (int32_t)di, (int32_t)K};
                memcpy(st_ref, st0, nseg * di * (km1 + 1) * 4);
                for (size_t sgi = 0; sgi < nseg; sgi++) segs[sgi].conv_state = st_ref + sgi * di * (km1 + 1);
                assert_int_equal(cpu_conv1d_reference(NULL, &a), 0);
                for (size_t ti = 0; ti < g_n_tables; ti++) {
                    memcpy(st, st0, nseg * di * (km1 + 1) * 4);
                    for (size_t sgi = 0; sgi < nseg; sgi++) segs[sgi].conv_state = st + sgi * di * (km1 + 1);
                    a.out = y;
                    cpu_conv1d_run(pool, g_tables[ti], &a);
                    a.out = y_ref;
                    for (size_t i = 0; i < nseg * di * (km1 + 1); i++) assert_true(st[i] == st_ref[i]);
                    for (size_t i = 0; i < rows * di; i++)
                        if (!(fabsf(y[i] - y_ref[i]) <= 1e-6f * (1 + fabsf(y_ref[i]))))
                            fail_msg("%s conv1d di %zu K %zu bias %d: y[%zu] %g vs %g", g_tables[ti]->name, di, K, with_b,
                                     i, y[i], y_ref[i]);
                }
                free(in), free(w), free(b), free(st0), free(st_ref), free(st), free(y_ref), free(y);
            }
    cpu_pool_destroy(pool);
}

static void test_activations(void **state) {
    (void)state;
    const size_t n = 2003;
    float *v = malloc(n * 4), *w = malloc(n * 4);
    for (size_t ti = 0; ti < g_n_tables; ti++) {
        for (size_t i = 0; i < n; i++) v[i] = w[i] = -60.0f + 90.0f * (float)i / (float)n;
        g_tables[ti]->softplus(v, n);
        g_tables[ti]->silu(w, n);
        for (size_t i = 0; i < n; i++) {
            const double x = -60.0f + 90.0f * (float)i / (float)n; /* the float input, exactly */
            double sp = x > 20 ? x : log1p(exp(x)), si = x / (1 + exp(-x));
            if (fabs(v[i] - sp) > 4e-7 * fabs(sp) + 1e-30)
                fail_msg("%s softplus(%g) = %.9g, want %.9g", g_tables[ti]->name, x, v[i], sp);
            if (fabs(w[i] - si) > 4e-7 * fabs(si) + 1e-30)
                fail_msg("%s silu(%g) = %.9g, want %.9g", g_tables[ti]->name, x, w[i], si);
        }
    }
    free(v);
    free(w);
}

/* ---- pool ---------------------------------------------------------------------------------------- */

typedef struct pool_check {
    int *hits;
    size_t grain, n;
    int bad;
} pool_check;

static void pool_task(void *v, size_t b, size_t e, int tid) {
    pool_check *c = v;
    (void)tid;
    if (b % c->grain != 0 || e > c->n || b >= e) c->bad = 1;
    for (size_t i = b; i < e; i++) __atomic_add_fetch(&c->hits[i], 1, __ATOMIC_RELAXED);
}

static void run_cover(cpu_pool *p, size_t n, size_t grain) {
    pool_check c = {calloc(n + 1, sizeof(int)), grain, n, 0};
    cpu_pool_run(p, n, grain, pool_task, &c);
    for (size_t i = 0; i < n; i++)
        if (c.hits[i] != 1) fail_msg("pool n %zu grain %zu: item %zu ran %d times", n, grain, i, c.hits[i]);
    assert_false(c.bad);
    free(c.hits);
}

static void *pool_hammer(void *v) {
    for (int i = 0; i < 200; i++) run_cover(v, 1000 + (size_t)i, 16);
    return NULL;
}

static void test_pool(void **state) {
    (void)state;
    const int threads[] = {1, 2, 3, 8};
    for (size_t t = 0; t < 4; t++) {
        cpu_pool *p;
        assert_int_equal(cpu_pool_create(threads[t], &p), 0);
        assert_int_equal(cpu_pool_threads(p), threads[t]);
        const size_t ns[] = {1, 2, 7, 16, 17, 100, 1023};
        const size_t grains[] = {1, 4, 16, 32};
        for (size_t a = 0; a < 7; a++)
            for (size_t g = 0; g < 4; g++) run_cover(p, ns[a], grains[g]);
        /* several callers at once: each call still covers its range exactly once */
        pthread_t th[3];
        for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, pool_hammer, p);
        for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
        cpu_pool_destroy(p);
    }
    assert_true(cpu_pool_default_threads() >= 1);
}

/* Every supported table is reachable through FM_CPU_ISA; without it the best one is chosen. */
static void test_select(void **state) {
    (void)state;
    for (size_t ti = 0; ti < g_n_tables; ti++) {
        setenv("FM_CPU_ISA", g_tables[ti]->name, 1);
        assert_ptr_equal(cpu_kernels_select(), g_tables[ti]);
    }
    setenv("FM_CPU_ISA", "no-such-isa", 1);
    assert_ptr_equal(cpu_kernels_select(), cpu_kernels_scalar());
    unsetenv("FM_CPU_ISA");
    assert_ptr_equal(cpu_kernels_select(), g_tables[g_n_tables - 1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quant_formats), cmocka_unit_test(test_quantize_x), cmocka_unit_test(test_quantize_row), cmocka_unit_test(test_quantize_row_ranges), cmocka_unit_test(test_widen), cmocka_unit_test(test_gemv_float),
        cmocka_unit_test(test_gemv_quant),    cmocka_unit_test(test_gemm),       cmocka_unit_test(test_scan), cmocka_unit_test(test_conv1d),
        cmocka_unit_test(test_activations),   cmocka_unit_test(test_pool),       cmocka_unit_test(test_select),
    };
    return cmocka_run_group_tests(tests, setup_tables, NULL);
}
