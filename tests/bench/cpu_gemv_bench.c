/* cpu_gemv_bench - one thread's GEMV of each CPU kernel table this machine runs, timed alone: GB/s
 * of weights streamed per batch size. Not a test; figures go to docs/PERFORMANCE.md.
 *
 *   cpu_gemv_bench [--rows R] [--cols K] [--dtype bf16|f16|f32|q8_0|q4_0] [--batches 1,8] [--reps N]
 *
 * For Q8_0/Q4_0 the activations are quantized (and packed, where the table packs) once, outside the
 * timing, as cpu_matmul does once per call.
 *
 * It cycles through enough R x K matrices (huge-page memory, as the backend allocates weights) that
 * none is still cached when its turn comes again, and reports the best of N passes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu_kernels.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    size_t rows = 8192, cols = 2048;
    int reps = 5;
    const char *dname = "bf16", *batches = "1,8";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rows")) rows = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--cols")) cols = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--dtype")) dname = argv[i + 1];
        else if (!strcmp(argv[i], "--batches")) batches = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    const fm_dtype t = !strcmp(dname, "f32")    ? FM_DTYPE_F32
                       : !strcmp(dname, "f16")  ? FM_DTYPE_F16
                       : !strcmp(dname, "q8_0") ? FM_DTYPE_Q8_0
                       : !strcmp(dname, "q4_0") ? FM_DTYPE_Q4_0
                                                : FM_DTYPE_BF16;
    const int quant = t == FM_DTYPE_Q8_0 || t == FM_DTYPE_Q4_0;
    if (rows == 0 || cols == 0 || reps < 1 || (t == FM_DTYPE_BF16 && strcmp(dname, "bf16")) ||
        (quant && cols % FM_QBLOCK)) {
        fprintf(stderr, "usage: cpu_gemv_bench [--rows R] [--cols K] [--dtype bf16|f16|f32|q8_0|q4_0] [--batches 1,8] "
                        "[--reps N] (quantized: K a multiple of 32)\n");
        return 2;
    }
    const size_t row_bytes = fm_dtype_row_bytes(t, cols), bytes = rows * row_bytes;
    const size_t nmats = bytes >= (256u << 20) ? 2 : (512u << 20) / bytes + 1; /* about 512 MB in all */
    fm_weight *W = calloc(nmats, sizeof *W);
    float *x = cpu_aligned_alloc(CPU_GEMV_MAX_ROWS * cols * sizeof(float)),
          *y = cpu_aligned_alloc(CPU_GEMV_MAX_ROWS * rows * sizeof(float));
    if (!W || !x || !y) return 1;
    for (size_t m = 0; m < nmats; m++) {
        W[m] = (fm_weight){.dtype = t, .rows = (int64_t)rows, .cols = (int64_t)cols, .row_bytes = row_bytes,
                           .bytes = bytes, .data = cpu_aligned_alloc(bytes)};
        if (!W[m].data) return 1;
        if (quant) { /* quantize a varied float row into every row */
            float *row = malloc(cols * sizeof *row);
            if (!row) return 1;
            for (size_t r = 0; r < rows; r++) {
                for (size_t k = 0; k < cols; k++) row[k] = 1e-2f * (float)((r * 31 + k * 7) % 211) - 1.0f;
                cpu_kernels_scalar()->quantize_row(t, row, (unsigned char *)W[m].data + r * row_bytes, cols);
            }
            free(row);
            continue;
        }
        uint16_t *h = W[m].data;
        for (size_t i = 0; i < bytes / 2; i++) h[i] = (uint16_t)(t == FM_DTYPE_BF16 ? 0x3c00 + i % 509 : 0x2c00 + i % 509);
    }
    for (size_t i = 0; i < CPU_GEMV_MAX_ROWS * cols; i++) x[i] = 1e-3f * (float)(i % 97);
    const size_t nb = cols / FM_QBLOCK;
    cpu_xblock *xq = quant ? malloc(CPU_GEMV_MAX_ROWS * nb * sizeof *xq) : NULL;
    if (quant && !xq) return 1;
    printf("%zu x %zu %s (%.1f MB), %zu matrices, one thread, best of %d\n\n| table | batch | ms per matrix | GB/s |\n"
           "|---|---|---|---|\n", rows, cols, dname, bytes / 1e6, nmats, reps);
    const cpu_kernels *tables[] = {cpu_kernels_scalar(), cpu_kernels_avx2(), cpu_kernels_avx512()};
    for (size_t ti = 0; ti < 3; ti++) {
        if (!cpu_kernels_supported(tables[ti])) continue;
        char list[64];
        snprintf(list, sizeof list, "%s", batches);
        for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
            const size_t n = (size_t)atoi(tok);
            if (n < 1 || n > CPU_GEMV_MAX_ROWS) continue;
            const cpu_kernels *k = tables[ti];
            unsigned char *xp = NULL;
            if (quant) {
                for (size_t i = 0; i < n; i++) k->quantize_x(x + i * cols, cols, xq + i * nb);
                const size_t pb = k->pack_x ? k->pack_x_bytes(t, cols) : 0;
                if (pb && !(xp = cpu_aligned_alloc(n * pb))) return 1;
                for (size_t i = 0; i < n && pb; i++) k->pack_x(t, xq + i * nb, cols, xp + i * pb);
            }
            double best = 1e30;
            for (int r = 0; r < reps; r++) {
                const double t0 = now_s();
                for (size_t m = 0; m < nmats; m++) {
                    cpu_gemv_args a = {.W = &W[m], .j0 = 0, .j1 = rows, .x = x, .xq = xq, .xp = xp, .n = n, .y = y,
                                       .ldy = rows};
                    k->gemv[t](&a);
                }
                const double dt = (now_s() - t0) / (double)nmats;
                if (dt < best) best = dt;
            }
            printf("| %s | %zu | %.3f | %.2f |\n", k->name, n, best * 1e3, bytes / best / 1e9);
            free(xp);
        }
    }
    free(xq);
    return 0;
}
