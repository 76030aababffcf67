/* batch.c - several independent conversations advanced together: each step samples one token per
   session (each with its own seed), then fm_decode_batch feeds all of them in one pass over the
   weights, which costs about as much as one session's step while the batch is small. A session that
   reaches EOS leaves the batch. At the end, session 0 is checked against plain one-session decoding.
   usage: batch MODEL_DIR [N_STEPS] */
#include <falconmamba.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_SESSIONS 4
#define MAX_STEPS 256

static const char *prompts[N_SESSIONS] = {
    "The weather today is", "My favourite food is", "In the year 3000,", "Here is a short poem about the sea:"};

/* Tokenize text into a malloc'ed array; NULL on failure (the error is printed). */
static int32_t *encode(const fm_tokenizer *tok, const char *text, size_t *n) {
    size_t need = 0;
    fm_status st = fm_tokenizer_encode(tok, text, strlen(text), 1, NULL, 0, &need);
    int32_t *ids = NULL;
    if ((st == FM_OK || st == FM_ERR_BUFFER_TOO_SMALL) && (ids = malloc((need ? need : 1) * sizeof *ids)))
        st = fm_tokenizer_encode(tok, text, strlen(text), 1, ids, need, n);
    if (st != FM_OK || !ids) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        free(ids);
        return NULL;
    }
    return ids;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [N_STEPS]\n", argv[0]);
        return 2;
    }
    int n_steps = argc > 2 ? atoi(argv[2]) : 32;
    if (n_steps < 1 || n_steps > MAX_STEPS) n_steps = 32;

    fm_context *ctx = NULL;
    if (fm_context_open(argv[1], NULL, &ctx) != FM_OK) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        return 1;
    }
    const fm_tokenizer *tok = fm_context_tokenizer(ctx);
    if (!tok) {
        fprintf(stderr, "error: %s has no tokenizer.json\n", argv[1]);
        fm_context_close(ctx);
        return 1;
    }
    const int32_t eos = fm_token_eos(ctx), n_vocab = fm_n_vocab(ctx);

    int rc = 1;
    fm_session *sess[N_SESSIONS] = {0}, *ref = NULL;
    fm_detokenizer *detok[N_SESSIONS] = {0};
    char *text[N_SESSIONS] = {0};
    size_t text_len[N_SESSIONS] = {0};
    int done[N_SESSIONS] = {0};
    int32_t history0[MAX_STEPS]; /* the tokens session 0 was fed, to replay them on `ref` */
    size_t n_history0 = 0;
    fm_sampler_params sp[N_SESSIONS];

    /* Prefill each session with its own prompt (a prompt is fed in one call: that is batched already). */
    for (int i = 0; i < N_SESSIONS; i++) {
        size_t n = 0;
        int32_t *ids = encode(tok, prompts[i], &n);
        if (!ids) goto out;
        fm_status st = fm_session_open(ctx, NULL, &sess[i]);
        if (st == FM_OK) st = fm_session_feed(sess[i], ids, n, NULL);
        free(ids);
        if (st == FM_OK) st = fm_detokenizer_open(tok, 1, &detok[i]);
        if (st != FM_OK || !(text[i] = calloc(1, 1))) {
            fprintf(stderr, "error: %s\n", fm_last_error());
            goto out;
        }
        fm_sampler_params_init(&sp[i]);
        sp[i].temperature = 0.8f;
        sp[i].top_k = 40;
        sp[i].seed = 100 + (uint64_t)i; /* each session has its own generator */
    }
    /* A copy of session 0 after its prompt, decoded alone at the end for comparison. */
    if (fm_session_fork(sess[0], &ref) != FM_OK) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        goto out;
    }

    int step;
    for (step = 0; step < n_steps; step++) {
        fm_session *batch[N_SESSIONS];
        int32_t next[N_SESSIONS];
        size_t n = 0;
        for (int i = 0; i < N_SESSIONS; i++) {
            if (done[i]) continue;
            int32_t t;
            if (fm_session_sample(sess[i], &sp[i], &t) != FM_OK) {
                fprintf(stderr, "error: %s\n", fm_last_error());
                goto out;
            }
            if (t == eos) { /* finished: it leaves the batch */
                done[i] = 1;
                continue;
            }
            char piece[256];
            size_t len = 0;
            if (fm_detokenizer_push(detok[i], t, piece, sizeof piece, &len) == FM_OK && len) {
                char *g = realloc(text[i], text_len[i] + len + 1);
                if (!g) goto out;
                memcpy(g + text_len[i], piece, len);
                text_len[i] += len;
                g[text_len[i]] = '\0';
                text[i] = g;
            }
            if (i == 0) history0[n_history0++] = t;
            batch[n] = sess[i];
            next[n] = t;
            n++;
        }
        if (n == 0) break;
        if (fm_decode_batch(batch, next, n) != FM_OK) { /* one pass advances all n sessions */
            fprintf(stderr, "error: %s\n", fm_last_error());
            goto out;
        }
    }

    for (int i = 0; i < N_SESSIONS; i++) printf("[%d] %s%s%s\n", i, prompts[i], text[i], done[i] ? " <eos>" : "");

    /* Session 0 replayed alone must reach the same logits as it did inside the batch. */
    if (n_history0 && fm_session_feed(ref, history0, n_history0, NULL) != FM_OK) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        goto out;
    }
    const float *a = fm_session_logits(sess[0]), *b = fm_session_logits(ref);
    double max_diff = 0, max_ref = 0;
    for (int32_t v = 0; v < n_vocab; v++) {
        max_diff = fmax(max_diff, fabs((double)a[v] - (double)b[v]));
        max_ref = fmax(max_ref, fabs((double)b[v]));
    }
    if (max_diff > 1e-4 * fmax(1.0, max_ref)) {
        fprintf(stderr, "error: batched and single-session logits differ by %g\n", max_diff);
        goto out;
    }
    printf("batch OK: %d sessions, %d steps, batched = sequential (max |diff| %.2g)\n", N_SESSIONS, step, max_diff);
    rc = 0;

out:
    for (int i = 0; i < N_SESSIONS; i++) {
        fm_detokenizer_close(detok[i]);
        fm_session_close(sess[i]);
        free(text[i]);
    }
    fm_session_close(ref);
    fm_context_close(ctx);
    return rc;
}
