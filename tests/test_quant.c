/* test_quant - Q8_0 / Q4_0 weights on the bundled trained model (models/kjv-mamba): which tensors
 * shrink, and the held-out negative log-likelihood against bf16 through both quantized paths:
 * prefill (dequantized tiles, fp32 activations) and single-token decode (int8 activations, integer
 * dot products). Measured on the AVX-512 and scalar tables: q8_0 +0.011% (prefill) / +0.09% (decode),
 * q4_0 +0.24% / +1.4%. The bounds (0.2%, 3%) leave room for summation order on other CPUs but fail
 * on a wrong block layout, scale or offset.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <falconmamba.h>

#include "test_util.h"

#define N_PREFILL 512
#define N_DECODE 96

static const char *g_dir;
static int32_t g_ids[N_PREFILL];

static fm_context *open_with(fm_weight_type t) {
    fm_context_params p;
    fm_context_params_init(&p);
    p.weight_type = t;
    p.backend = FM_BACKEND_CPU;
    fm_context *ctx = NULL;
    if (fm_context_open(g_dir, &p, &ctx) != FM_OK) fail_msg("open: %s", fm_last_error());
    return ctx;
}

static double nll_of(const float *logits, int32_t nv, int32_t next) {
    double mx = logits[0];
    for (int32_t v = 1; v < nv; v++) mx = fmax(mx, logits[v]);
    double z = 0;
    for (int32_t v = 0; v < nv; v++) z += exp(logits[v] - mx);
    return log(z) + mx - logits[next];
}

/* Mean NLL of the held-out tokens fed in one call (all-position logits). */
static double nll_prefill(fm_context *ctx) {
    const int32_t nv = fm_n_vocab(ctx);
    float *logits = malloc((size_t)N_PREFILL * (size_t)nv * sizeof *logits);
    fm_session *s;
    assert_int_equal(fm_session_open(ctx, NULL, &s), FM_OK);
    assert_int_equal(fm_session_feed(s, g_ids, N_PREFILL, logits), FM_OK);
    double sum = 0;
    for (int i = 0; i + 1 < N_PREFILL; i++) sum += nll_of(logits + (size_t)i * (size_t)nv, nv, g_ids[i + 1]);
    fm_session_close(s);
    free(logits);
    return sum / (N_PREFILL - 1);
}

/* Mean NLL fed one token at a time (the decode kernels). */
static double nll_decode(fm_context *ctx) {
    const int32_t nv = fm_n_vocab(ctx);
    fm_session *s;
    assert_int_equal(fm_session_open(ctx, NULL, &s), FM_OK);
    double sum = 0;
    for (int i = 0; i + 1 < N_DECODE; i++) {
        assert_int_equal(fm_session_feed(s, &g_ids[i], 1, NULL), FM_OK);
        sum += nll_of(fm_session_logits(s), nv, g_ids[i + 1]);
    }
    fm_session_close(s);
    return sum / (N_DECODE - 1);
}

static void test_quantized_nll(void **state) {
    (void)state;
    fm_context *ref = open_with(FM_WEIGHTS_BF16);
    fm_model_info ri = {.struct_size = sizeof ri};
    assert_int_equal(fm_context_info(ref, &ri), FM_OK);
    const double ref_pre = nll_prefill(ref), ref_dec = nll_decode(ref);
    fm_context_close(ref);
    printf("bf16: %.2f MB, NLL prefill %.6f decode %.6f\n", (double)ri.weight_bytes / 1e6, ref_pre, ref_dec);

    const struct {
        fm_weight_type t;
        const char *name;
        double max_bytes_ratio, max_rel_nll;
    } cases[] = {
        /* the tied embedding (2.6 MB of 10.7) stays bf16, so the ratios are above 34/64 and 18/64 */
        {FM_WEIGHTS_Q8_0, "q8_0", 0.70, 0.002},
        {FM_WEIGHTS_Q4_0, "q4_0", 0.50, 0.03},
    };
    for (size_t c = 0; c < 2; c++) {
        fm_context *ctx = open_with(cases[c].t);
        fm_model_info qi = {.struct_size = sizeof qi};
        assert_int_equal(fm_context_info(ctx, &qi), FM_OK);
        const double pre = nll_prefill(ctx), dec = nll_decode(ctx);
        const double ratio = (double)qi.weight_bytes / (double)ri.weight_bytes;
        printf("%s: %.2f MB (%.3f of bf16), NLL prefill %.6f (%+.3f%%) decode %.6f (%+.3f%%)\n", cases[c].name,
               (double)qi.weight_bytes / 1e6, ratio, pre, 100 * (pre / ref_pre - 1), dec, 100 * (dec / ref_dec - 1));
        assert_true(ratio < cases[c].max_bytes_ratio);
        assert_true(fabs(pre / ref_pre - 1) < cases[c].max_rel_nll);
        assert_true(fabs(dec / ref_dec - 1) < cases[c].max_rel_nll);
        /* and it is really quantized: not bit-identical to bf16 */
        assert_true(pre != ref_pre);
        fm_context_close(ctx);
    }
}

int main(void) {
    g_dir = getenv("FM_BUNDLED_MODEL");
    if (!g_dir) {
        fprintf(stderr, "FM_BUNDLED_MODEL is not set\n");
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/heldout.txt", g_dir);
    size_t len = 0;
    char *text = fm_test_read_file(path, &len);
    fm_context *ctx = NULL;
    size_t n = 0;
    int32_t *ids = NULL;
    if (text && fm_context_open(g_dir, NULL, &ctx) == FM_OK)
        fm_tokenizer_encode(fm_context_tokenizer(ctx), text, len, 0, NULL, 0, &n); /* count */
    if (n >= N_PREFILL && (ids = malloc(n * sizeof *ids)) != NULL &&
        fm_tokenizer_encode(fm_context_tokenizer(ctx), text, len, 0, ids, n, &n) == FM_OK) {
        memcpy(g_ids, ids, sizeof g_ids);
    } else {
        fprintf(stderr, "cannot tokenize %d tokens of %s: %s\n", N_PREFILL, path, fm_last_error());
        return 1;
    }
    free(ids);
    fm_context_close(ctx);
    free(text);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_quantized_nll)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
