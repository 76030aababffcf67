/* test_old_structs.c - a program built against an older header: its params structs are shorter
   (copies of today's prefixes, as an earlier minor version would have declared them) and it sets
   struct_size to their sizeof. The library must use defaults for the fields it does not pass, and
   must not write past the end of the output structs it fills (fm_model_info, fm_generate_stats).
   A newer, longer struct is accepted when the unknown tail is zero and refused otherwise.
   Model: $FM_TEST_MODEL (the tiny chat model). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "falconmamba.h"

typedef struct ctx_params_v0 { /* before the progress callback */
    size_t struct_size;
    fm_backend_kind backend;
    int32_t device;
    int32_t n_threads;
    fm_weight_type weight_type;
} ctx_params_v0;

typedef struct sampler_params_v0 { /* the fields ../shared/DESIGN.md fixes */
    size_t struct_size;
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    int32_t repeat_last_n;
    uint64_t seed;
} sampler_params_v0;

typedef struct gen_params_v0 {
    size_t struct_size;
    int32_t max_new_tokens;
} gen_params_v0;

typedef struct info_v0 {
    size_t struct_size;
    const char *model_type;
    int32_t n_layer;
    int32_t d_model;
} info_v0;

typedef struct stats_v0 {
    size_t struct_size;
    uint64_t n_prompt_tokens;
} stats_v0;

static int g_bad;
#define CHECK(cond, ...)                                                                                \
    do {                                                                                                \
        if (!(cond)) {                                                                                  \
            fprintf(stderr, "FAIL line %d: ", __LINE__);                                                \
            fprintf(stderr, __VA_ARGS__);                                                               \
            fprintf(stderr, " (%s)\n", fm_last_error());                                                \
            g_bad = 1;                                                                                  \
        }                                                                                               \
    } while (0)

static int count_pieces(const char *piece, size_t len, int32_t token, void *user) {
    (void)piece;
    (void)len;
    (void)token;
    ++*(int *)user;
    return 0;
}

int main(void) {
    const char *dir = getenv("FM_TEST_MODEL");
    if (!dir) {
        fprintf(stderr, "FM_TEST_MODEL is not set\n");
        return 1;
    }
    /* context params v0 */
    ctx_params_v0 cp;
    memset(&cp, 0, sizeof cp);
    cp.struct_size = sizeof cp;
    cp.backend = FM_BACKEND_CPU;
    cp.n_threads = 1;
    cp.weight_type = FM_WEIGHTS_F32;
    fm_context *ctx = NULL;
    CHECK(fm_context_open(dir, (const fm_context_params *)&cp, &ctx) == FM_OK, "open with a v0 fm_context_params");
    if (!ctx) return 1;

    /* model info v0, followed by a canary the library must not touch */
    struct {
        info_v0 info;
        unsigned char canary[64];
    } iw;
    memset(&iw, 0xA5, sizeof iw);
    iw.info.struct_size = sizeof iw.info;
    CHECK(fm_context_info(ctx, (fm_model_info *)&iw.info) == FM_OK, "fm_context_info v0");
    fm_model_info full = {.struct_size = sizeof full};
    fm_context_info(ctx, &full);
    CHECK(iw.info.n_layer == full.n_layer && iw.info.d_model == full.d_model &&
              strcmp(iw.info.model_type, full.model_type) == 0, "v0 info fields");
    for (size_t i = 0; i < sizeof iw.canary; i++) CHECK(iw.canary[i] == 0xA5, "fm_context_info wrote past a v0 struct");

    /* session params: only struct_size (the smallest legal struct) */
    size_t sp_min = sizeof(size_t);
    fm_session *s = NULL, *s2 = NULL;
    CHECK(fm_session_open(ctx, (const fm_session_params *)&sp_min, &s) == FM_OK, "session with struct_size only");
    CHECK(fm_session_open(ctx, NULL, &s2) == FM_OK, "session");
    int32_t prompt[4] = {1, 2, 3, 4};
    CHECK(fm_session_feed(s, prompt, 4, NULL) == FM_OK, "feed");
    CHECK(fm_session_feed(s2, prompt, 4, NULL) == FM_OK, "feed");

    /* sampler v0 vs today's struct with the same fields: same tokens (the missing fields default) */
    sampler_params_v0 sv;
    memset(&sv, 0, sizeof sv);
    sv.struct_size = sizeof sv;
    sv.temperature = 0.8f;
    sv.top_k = 10;
    sv.top_p = 0.95f;
    sv.min_p = 0.0f;
    sv.repeat_penalty = 1.1f;
    sv.repeat_last_n = -1;
    sv.seed = 99;
    fm_sampler_params sf;
    fm_sampler_params_init(&sf);
    sf.temperature = 0.8f;
    sf.top_k = 10;
    sf.top_p = 0.95f;
    sf.repeat_penalty = 1.1f;
    sf.seed = 99;
    for (int i = 0; i < 16; i++) {
        int32_t a = -1, b = -2;
        CHECK(fm_session_sample(s, (const fm_sampler_params *)&sv, &a) == FM_OK, "sample v0");
        CHECK(fm_session_sample(s2, &sf, &b) == FM_OK, "sample");
        CHECK(a == b, "step %d: v0 sampler picked %d, full struct %d", i, a, b);
        fm_session_feed(s, &a, 1, NULL);
        fm_session_feed(s2, &b, 1, NULL);
    }

    /* generate params v0: max_new_tokens only; the sampler defaults */
    gen_params_v0 gv = {sizeof gv, 3};
    int pieces = 0;
    CHECK(fm_generate(s, "hello", (const fm_generate_params *)&gv, count_pieces, &pieces) == FM_OK, "generate v0");
    CHECK(pieces >= 1 && pieces <= 3, "generate v0 produced %d pieces for max_new_tokens 3", pieces);

    /* stats v0 behind a full fm_generate_params: filled up to its struct_size only */
    struct {
        stats_v0 st;
        unsigned char canary[64];
    } sw;
    memset(&sw, 0xA5, sizeof sw);
    sw.st.struct_size = sizeof sw.st;
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    gp.max_new_tokens = 2;
    gp.stats = (fm_generate_stats *)&sw.st;
    CHECK(fm_generate(s, " again", &gp, NULL, NULL) == FM_OK, "generate with v0 stats");
    CHECK(sw.st.n_prompt_tokens >= 1 && sw.st.n_prompt_tokens < 100, "v0 stats n_prompt_tokens %llu",
          (unsigned long long)sw.st.n_prompt_tokens);
    for (size_t i = 0; i < sizeof sw.canary; i++) CHECK(sw.canary[i] == 0xA5, "fm_generate wrote past v0 stats");

    /* a newer caller: a longer struct, with the unknown tail zero (fine) or set (refused) */
    struct {
        fm_session_params p;
        uint64_t future;
    } nw;
    memset(&nw, 0, sizeof nw);
    fm_session_params_init(&nw.p);
    nw.p.struct_size = sizeof nw;
    fm_session *s3 = NULL;
    CHECK(fm_session_open(ctx, &nw.p, &s3) == FM_OK, "newer struct with a zero tail");
    fm_session_close(s3);
    nw.future = 1;
    s3 = NULL;
    CHECK(fm_session_open(ctx, &nw.p, &s3) == FM_ERR_UNSUPPORTED && s3 == NULL, "newer struct with a set tail");
    size_t too_small = sizeof(size_t) - 1;
    CHECK(fm_session_open(ctx, (const fm_session_params *)&too_small, &s3) == FM_ERR_INVALID_ARGUMENT,
          "struct_size below sizeof(size_t)");

    fm_session_close(s);
    fm_session_close(s2);
    fm_context_close(ctx);
    printf(g_bad ? "old-struct checks FAILED\n" : "old-struct checks passed\n");
    return g_bad;
}
