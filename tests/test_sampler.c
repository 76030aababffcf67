/* test_sampler.c - the logits processors against transformers' (tests/reference/sampler_expected.json,
   from make_sampler_fixtures.py), the processing order, the seeded draw, and fm_session_sample. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "falconmamba.h"
#include "sampler.h"
#include "test_util.h"

#define OK(call)                                                                                                      \
    do {                                                                                                              \
        fm_status st_ = (call);                                                                                       \
        if (st_ != FM_OK) fail_msg("%s -> %s: %s", #call, fm_status_string(st_), fm_last_error());                  \
    } while (0)

static cJSON *g_fix;

static int setup(void **state) {
    (void)state;
    char path[2048];
    snprintf(path, sizeof path, "%s/../sampler_expected.json", fm_test_fixtures_dir());
    char *text = fm_test_read_file(path, NULL);
    if (!text) return -1;
    g_fix = cJSON_Parse(text);
    free(text);
    return g_fix ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    cJSON_Delete(g_fix);
    return 0;
}

static float num(const cJSON *o, const char *k, float dflt) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? (float)v->valuedouble : dflt;
}

/* Our processing must keep exactly transformers' tokens with the same probabilities. */
static void test_processors_match_transformers(void **state) {
    (void)state;
    const int32_t V = (int32_t)cJSON_GetObjectItem(g_fix, "n_vocab")->valuedouble;
    void *work = malloc(fm_sampler_work_bytes(V));
    float *scores = malloc((size_t)V * sizeof *scores);
    double *probs = malloc((size_t)V * sizeof *probs);
    const cJSON *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g_fix, "cases")) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const cJSON *p = cJSON_GetObjectItem(c, "params");
        fm_sampler_params sp;
        fm_sampler_params_init(&sp);
        sp.temperature = num(p, "temperature", 1.0f);
        sp.top_k = (int32_t)num(p, "top_k", 0);
        sp.top_p = num(p, "top_p", 1.0f);
        sp.min_p = num(p, "min_p", 0.0f);
        sp.typical_p = num(p, "typical_p", 1.0f);
        sp.repeat_penalty = num(p, "repeat_penalty", 1.0f);
        fm_logit_bias bias[8];
        const cJSON *lb = cJSON_GetObjectItem(p, "logit_bias"), *e;
        cJSON_ArrayForEach(e, lb) {
            bias[sp.n_logit_bias].token = (int32_t)cJSON_GetArrayItem(e, 0)->valuedouble;
            bias[sp.n_logit_bias++].bias = (float)cJSON_GetArrayItem(e, 1)->valuedouble;
        }
        sp.logit_bias = bias;
        OK(fm_sampler_check(&sp, V));
        int32_t hist[64];
        size_t nh = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(c, "history")) hist[nh++] = (int32_t)e->valuedouble;
        int32_t i = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(c, "logits")) scores[i++] = (float)e->valuedouble;
        OK(fm_sampler_process(&sp, scores, V, hist, nh, work));

        double m = -INFINITY, sum = 0;
        for (i = 0; i < V; i++)
            if (scores[i] > m) m = scores[i];
        for (i = 0; i < V; i++) sum += (probs[i] = scores[i] == -INFINITY ? 0 : exp(scores[i] - m));
        const cJSON *ep = cJSON_GetObjectItem(c, "probs"), *ek = cJSON_GetObjectItem(c, "kept");
        for (i = 0; i < V; i++) {
            int kept = cJSON_IsTrue(cJSON_GetArrayItem(ek, i));
            if (kept != (scores[i] != -INFINITY))
                fail_msg("%s: token %d is %s by us but %s by transformers", name, i, kept ? "removed" : "kept",
                         kept ? "kept" : "removed");
            double want = cJSON_GetArrayItem(ep, i)->valuedouble, got = probs[i] / sum;
            if (fabs(want - got) > 1e-5) fail_msg("%s: p[%d] = %.7f, transformers %.7f", name, i, got, want);
        }
        if (sp.temperature == 0.0f) {
            fm_rng rng;
            fm_rng_seed(&rng, 1);
            assert_int_equal(fm_sampler_pick(&sp, scores, V, &rng),
                             (int)cJSON_GetObjectItem(c, "greedy")->valuedouble);
        }
        n_cases++;
    }
    assert_true(n_cases >= 20);
    free(work);
    free(scores);
    free(probs);
}

/* Our fixed order is the order transformers' generate() builds its processor list in. */
static void test_order_is_transformers_order(void **state) {
    (void)state;
    static const char *ours[] = {"SequenceBiasLogitsProcessor", "RepetitionPenaltyLogitsProcessor",
                                 "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper",
                                 "MinPLogitsWarper", "TypicalLogitsWarper"};
    const cJSON *order = cJSON_GetObjectItem(g_fix, "generate_order");
    assert_int_equal(cJSON_GetArraySize(order), 7);
    for (int i = 0; i < 7; i++) assert_string_equal(cJSON_GetArrayItem(order, i)->valuestring, ours[i]);
}

/* The draw follows the distribution: 200k draws over 8 tokens, each frequency within 5 sigma. */
static void test_draw_distribution(void **state) {
    (void)state;
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    float scores[8] = {0.0f, 1.0f, 2.0f, -1.0f, -INFINITY, 0.5f, 3.0f, -2.0f};
    double p[8], sum = 0;
    for (int i = 0; i < 8; i++) sum += (p[i] = scores[i] == -INFINITY ? 0 : exp(scores[i]));
    fm_rng rng;
    fm_rng_seed(&rng, 42);
    int counts[8] = {0};
    const int N = 200000;
    for (int k = 0; k < N; k++) counts[fm_sampler_pick(&sp, scores, 8, &rng)]++;
    assert_int_equal(counts[4], 0);
    for (int i = 0; i < 8; i++) {
        double q = p[i] / sum, sd = sqrt(N * q * (1 - q));
        if (fabs(counts[i] - N * q) > 5 * sd + 1) fail_msg("token %d drawn %d times, expected %.0f", i, counts[i], N * q);
    }
}

static void test_param_validation(void **state) {
    (void)state;
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.temperature = -1;
    assert_int_equal(fm_sampler_check(&sp, 10), FM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(fm_last_error(), "temperature"));
    fm_sampler_params_init(&sp);
    sp.top_p = 0;
    assert_int_equal(fm_sampler_check(&sp, 10), FM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(fm_last_error(), "top_p"));
    fm_sampler_params_init(&sp);
    sp.min_p = 1.5f;
    assert_int_equal(fm_sampler_check(&sp, 10), FM_ERR_INVALID_ARGUMENT);
    fm_sampler_params_init(&sp);
    sp.typical_p = NAN;
    assert_int_equal(fm_sampler_check(&sp, 10), FM_ERR_INVALID_ARGUMENT);
    fm_sampler_params_init(&sp);
    sp.repeat_penalty = 0;
    assert_int_equal(fm_sampler_check(&sp, 10), FM_ERR_INVALID_ARGUMENT);
    fm_sampler_params_init(&sp);
    sp.repeat_last_n = -2;
    assert_int_equal(fm_sampler_check(&sp, 10), FM_ERR_INVALID_ARGUMENT);
    fm_sampler_params_init(&sp);
    sp.top_k = -3;
    assert_int_equal(fm_sampler_check(&sp, 10), FM_ERR_INVALID_ARGUMENT);
    fm_sampler_params_init(&sp);
    sp.n_logit_bias = 1;
    assert_int_equal(fm_sampler_check(&sp, 10), FM_ERR_INVALID_ARGUMENT);
    fm_logit_bias lb = {10, 1.0f};
    sp.logit_bias = &lb;
    assert_int_equal(fm_sampler_check(&sp, 10), FM_ERR_INVALID_TOKEN);
    assert_non_null(strstr(fm_last_error(), "token 10"));
    lb.token = 3;
    lb.bias = -INFINITY; /* banning is allowed */
    assert_int_equal(fm_sampler_check(&sp, 10), FM_OK);
}

/* Presence/frequency penalties (no transformers counterpart): the formula, over the window. */
static void test_presence_frequency(void **state) {
    (void)state;
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.temperature = 0;
    sp.presence_penalty = 0.5f;
    sp.frequency_penalty = 0.25f;
    sp.repeat_last_n = 4;
    float s[6] = {1, 1, 1, 1, 1, 1};
    int32_t hist[6] = {5, 5, 1, 2, 2, 2}; /* window = last 4: {1, 2, 2, 2} */
    void *work = malloc(fm_sampler_work_bytes(6));
    OK(fm_sampler_process(&sp, s, 6, hist, 6, work));
    free(work);
    assert_float_equal(s[0], 1.0f, 1e-6);
    assert_float_equal(s[1], 1.0f - 0.5f - 0.25f, 1e-6);
    assert_float_equal(s[2], 1.0f - 0.5f - 0.75f, 1e-6);
    assert_float_equal(s[5], 1.0f, 1e-6); /* outside the window */
}

/* fm_session_sample: greedy = argmax, same seed = same tokens, state blobs carry the generator. */
static void test_session_sample(void **state) {
    (void)state;
    fm_ref_case ref;
    assert_int_equal(fm_test_load_case("falcon_f32_untied", &ref), 0);
    fm_context *ctx = NULL;
    OK(fm_context_open(ref.dir, NULL, &ctx));
    const int32_t V = fm_n_vocab(ctx);
    fm_session *a = NULL, *b = NULL;
    OK(fm_session_open(ctx, NULL, &a));
    OK(fm_session_open(ctx, NULL, &b));
    int32_t tok;
    assert_int_equal(fm_session_sample(a, NULL, &tok), FM_ERR_INVALID_ARGUMENT);
    OK(fm_session_feed(a, ref.prompts[1].tokens, ref.prompts[1].n, NULL));
    OK(fm_session_feed(b, ref.prompts[1].tokens, ref.prompts[1].n, NULL));

    fm_sampler_params greedy;
    fm_sampler_params_init(&greedy);
    greedy.temperature = 0;
    OK(fm_session_sample(a, &greedy, &tok));
    assert_int_equal(tok, fm_test_argmax(fm_session_logits(a), (size_t)V));
    assert_int_equal(tok, ref.greedy[0]);

    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.temperature = 1.5f;
    sp.top_k = 0;
    sp.seed = 1234;
    int32_t ta[16], tb[16];
    size_t blob_n = 0;
    unsigned char *blob = NULL;
    fm_session *c = NULL;
    for (int k = 0; k < 16; k++) {
        OK(fm_session_sample(a, &sp, &ta[k]));
        OK(fm_session_sample(b, &sp, &tb[k]));
        assert_int_equal(ta[k], tb[k]);
        if (k == 7) { /* snapshot mid-stream: the copy must continue the same stream */
            blob_n = fm_session_state_size(a);
            blob = malloc(blob_n);
            OK(fm_session_state_save(a, blob, blob_n, NULL));
        }
        OK(fm_session_feed(a, &ta[k], 1, NULL));
        OK(fm_session_feed(b, &tb[k], 1, NULL));
    }
    OK(fm_session_open(ctx, NULL, &c));
    OK(fm_session_state_load(c, blob, blob_n));
    OK(fm_session_feed(c, &ta[7], 1, NULL));
    for (int k = 8; k < 16; k++) {
        int32_t t;
        OK(fm_session_sample(c, &sp, &t));
        assert_int_equal(t, ta[k]);
        OK(fm_session_feed(c, &t, 1, NULL));
    }
    /* The stream is not constant: 16 draws at temperature 1.5 are not all one token. */
    int varied = 0;
    for (int k = 1; k < 16; k++) varied |= ta[k] != ta[0];
    assert_true(varied);
    /* A different seed gives a different stream. */
    OK(fm_session_reset(b));
    OK(fm_session_feed(b, ref.prompts[1].tokens, ref.prompts[1].n, NULL));
    sp.seed = 99;
    int differs = 0;
    for (int k = 0; k < 16 && !differs; k++) {
        OK(fm_session_sample(b, &sp, &tb[k]));
        differs = tb[k] != ta[k];
        OK(fm_session_feed(b, &tb[k], 1, NULL));
    }
    assert_true(differs);
    free(blob);
    fm_session_close(a);
    fm_session_close(b);
    fm_session_close(c);
    fm_context_close(ctx);
    fm_test_free_case(&ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_processors_match_transformers), cmocka_unit_test(test_order_is_transformers_order),
        cmocka_unit_test(test_draw_distribution),             cmocka_unit_test(test_param_validation),
        cmocka_unit_test(test_presence_frequency),            cmocka_unit_test(test_session_sample),
    };
    return cmocka_run_group_tests_name("sampler", tests, setup, teardown);
}
