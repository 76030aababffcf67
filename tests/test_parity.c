/* test_parity.c - libfalconmamba against transformers' FalconMambaForCausalLM / MambaForCausalLM.
 *
 * For every case in tests/reference/cases (made by tests/reference/make_fixtures.py): all-position
 * logits of each prompt, token-by-token feeding, chunked prefill, the 24-token greedy continuation,
 * fork, state save/load and fm_decode_batch, each held to max|err| <= 1e-4 * max|logit|.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "falconmamba.h"
#include "test_util.h"

#define REL_TOL 1e-4
#define MAX_CASES 32

typedef struct parity {
    fm_ref_case ref;
    fm_context *ctx;
    size_t V;
    double worst_rel;
} parity;

#define OK(call)                                                                                                      \
    do {                                                                                                              \
        fm_status st_ = (call);                                                                                       \
        if (st_ != FM_OK) fail_msg("%s -> %s: %s", #call, fm_status_string(st_), fm_last_error());                  \
    } while (0)

/* Check got against ref (V floats) and remember the worst relative error. */
static void expect_close(parity *p, const float *got, const float *ref, size_t n, const char *what, size_t idx) {
    double err, mx;
    fm_test_compare(got, ref, n, &err, &mx);
    double rel = err / (mx > 0 ? mx : 1);
    if (rel > p->worst_rel) p->worst_rel = rel;
    if (!(rel <= REL_TOL))
        fail_msg("%s: %s[%zu]: max abs error %.3g vs max |logit| %.3g (rel %.3g > %.0e)", p->ref.name, what, idx, err,
                 mx, rel, REL_TOL);
}

static fm_session *open_session(parity *p, uint32_t chunk) {
    fm_session_params sp;
    fm_session_params_init(&sp);
    sp.prefill_chunk = chunk;
    fm_session *s = NULL;
    OK(fm_session_open(p->ctx, &sp, &s));
    return s;
}

static void check_prefill_all_positions(parity *p) {
    for (size_t i = 0; i < p->ref.n_prompts; i++) {
        const fm_ref_prompt *rp = &p->ref.prompts[i];
        uint32_t chunks[] = {0, 5};
        for (size_t c = 0; c < 2; c++) {
            fm_session *s = open_session(p, chunks[c]);
            float *lg = malloc(rp->n * p->V * sizeof(float));
            OK(fm_session_feed(s, rp->tokens, rp->n, lg));
            for (size_t t = 0; t < rp->n; t++)
                expect_close(p, lg + t * p->V, rp->logits + t * p->V, p->V, chunks[c] ? "chunked prefill" : "prefill", t);
            expect_close(p, fm_session_logits(s), rp->logits + (rp->n - 1) * p->V, p->V, "session logits", i);
            assert_int_equal(fm_session_n_tokens(s), rp->n);
            free(lg);
            fm_session_close(s);
        }
    }
}

static void check_token_by_token(parity *p) {
    for (size_t i = 0; i < p->ref.n_prompts; i++) {
        const fm_ref_prompt *rp = &p->ref.prompts[i];
        fm_session *s = open_session(p, 0);
        assert_null(fm_session_logits(s));
        for (size_t t = 0; t < rp->n; t++) {
            OK(fm_session_feed(s, &rp->tokens[t], 1, NULL));
            expect_close(p, fm_session_logits(s), rp->logits + t * p->V, p->V, "single-step", t);
        }
        fm_session_close(s);
    }
}

static void check_greedy(parity *p) {
    const fm_ref_prompt *rp = &p->ref.prompts[p->ref.greedy_prompt];
    fm_session *s = open_session(p, 0);
    OK(fm_session_feed(s, rp->tokens, rp->n, NULL));
    for (size_t k = 0; k < p->ref.n_greedy; k++) {
        int32_t tok = fm_test_argmax(fm_session_logits(s), p->V);
        if (tok != p->ref.greedy[k])
            fail_msg("%s: greedy token %zu is %d, transformers chose %d", p->ref.name, k, tok, p->ref.greedy[k]);
        OK(fm_session_feed(s, &tok, 1, NULL));
    }
    fm_session_close(s);
}

/* Fork and save/load at the middle of the longest prompt, then finish the prompt from the copy. */
static void check_fork_and_state(parity *p) {
    const fm_ref_prompt *rp = &p->ref.prompts[p->ref.n_prompts - 1];
    size_t half = rp->n / 2;
    const float *want = rp->logits + (rp->n - 1) * p->V;
    fm_session *a = open_session(p, 0);
    OK(fm_session_feed(a, rp->tokens, half, NULL));

    fm_session *f = NULL;
    OK(fm_session_fork(a, &f));
    assert_int_equal(fm_session_n_tokens(f), half);
    expect_close(p, fm_session_logits(f), rp->logits + (half - 1) * p->V, p->V, "fork logits", half);

    size_t size = fm_session_state_size(a);
    unsigned char *blob = malloc(size);
    size_t written = 0;
    OK(fm_session_state_save(a, blob, size, &written));
    assert_int_equal(written, size);

    /* Disturb the original after the copies were taken: neither copy may see it. */
    int32_t other = (rp->tokens[half] + 1) % (int32_t)p->V;
    OK(fm_session_feed(a, &other, 1, NULL));

    OK(fm_session_feed(f, rp->tokens + half, rp->n - half, NULL));
    expect_close(p, fm_session_logits(f), want, p->V, "forked continuation", rp->n - 1);

    fm_session *l = open_session(p, 0);
    OK(fm_session_feed(l, rp->tokens, 3, NULL)); /* a history that the load must replace */
    OK(fm_session_state_load(l, blob, written));
    assert_int_equal(fm_session_n_tokens(l), half);
    expect_close(p, fm_session_logits(l), rp->logits + (half - 1) * p->V, p->V, "loaded logits", half);
    OK(fm_session_feed(l, rp->tokens + half, rp->n - half, NULL));
    expect_close(p, fm_session_logits(l), want, p->V, "loaded continuation", rp->n - 1);

    free(blob);
    fm_session_close(a);
    fm_session_close(f);
    fm_session_close(l);
}

/* Sessions with different histories advanced together must match transformers' last rows. */
static void check_decode_batch(parity *p) {
    size_t n = p->ref.n_prompts;
    fm_session **ss = calloc(n, sizeof *ss);
    int32_t *next = calloc(n, sizeof *next);
    for (size_t i = 0; i < n; i++) {
        const fm_ref_prompt *rp = &p->ref.prompts[i];
        ss[i] = open_session(p, 0);
        if (rp->n > 1) OK(fm_session_feed(ss[i], rp->tokens, rp->n - 1, NULL));
        next[i] = rp->tokens[rp->n - 1];
    }
    OK(fm_decode_batch(ss, next, n));
    for (size_t i = 0; i < n; i++) {
        const fm_ref_prompt *rp = &p->ref.prompts[i];
        expect_close(p, fm_session_logits(ss[i]), rp->logits + (rp->n - 1) * p->V, p->V, "decode_batch", i);
        assert_int_equal(fm_session_n_tokens(ss[i]), rp->n);
    }
    /* A second batched step equals the same step taken alone on a fork. */
    fm_session *solo = NULL;
    OK(fm_session_fork(ss[n - 1], &solo));
    for (size_t i = 0; i < n; i++) next[i] = (int32_t)((7 * i + 3) % p->V);
    OK(fm_session_feed(solo, &next[n - 1], 1, NULL));
    OK(fm_decode_batch(ss, next, n));
    expect_close(p, fm_session_logits(ss[n - 1]), fm_session_logits(solo), p->V, "decode_batch step 2", n - 1);
    fm_session_close(solo);
    for (size_t i = 0; i < n; i++) fm_session_close(ss[i]);
    free(ss);
    free(next);
}

static void run_case(void **state) {
    const char *name = *state;
    parity p = {0};
    if (fm_test_load_case(name, &p.ref) != 0) fail_msg("cannot load fixture %s", name);
    OK(fm_context_open(p.ref.dir, NULL, &p.ctx));
    p.V = (size_t)fm_n_vocab(p.ctx);
    assert_int_equal(p.V, p.ref.n_vocab);
    check_prefill_all_positions(&p);
    check_token_by_token(&p);
    check_greedy(&p);
    check_fork_and_state(&p);
    check_decode_batch(&p);
    print_message("%-22s dtype %-9s worst relative logit error %.3g\n", name, p.ref.dtype, p.worst_rel);
    fm_context_close(p.ctx);
    fm_test_free_case(&p.ref);
}

int main(void) {
    static char names[MAX_CASES][64];
    static const char *ptrs[MAX_CASES];
    size_t n = fm_test_list_cases(names, MAX_CASES);
    if (n == 0) {
        fprintf(stderr, "no reference cases found under %s\n", fm_test_fixtures_dir());
        return 1;
    }
    struct CMUnitTest tests[MAX_CASES];
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = names[i];
        tests[i] = (struct CMUnitTest){names[i], run_case, NULL, NULL, (void *)ptrs[i]};
    }
    return _cmocka_run_group_tests("parity", tests, n, NULL, NULL);
}
