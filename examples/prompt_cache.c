/* prompt_cache.c - pay for a long system prompt once. The system prompt is prefilled a single time
   and the session's state saved to a blob (a few hundred KB for a 7B model, whatever the prompt's
   length: a Mamba state does not grow). Each new conversation then starts from fm_session_state_load
   and feeds only its own user turn. The blob could as well be written to disk and loaded by another
   process running the same model (fm_session_state_load refuses a blob from another model).
   usage: prompt_cache MODEL_DIR */
#include <ctype.h>
#include <falconmamba.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *system_prompt =
    "You are the help desk of the Grand Hotel. Check-in is from 3 pm, check-out until 11 am. Breakfast is "
    "served from 7 to 10 in the garden room. The pool is on the roof and open from 8 am to 8 pm. Answer in "
    "one short sentence.";
static const char *questions[] = {"When is breakfast?", "Where is the pool?", "Can I check out at noon?"};
#define N_QUESTIONS (sizeof questions / sizeof questions[0])

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int print_piece(const char *piece, size_t len, int32_t token, void *user) {
    (void)token;
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* Render msgs with the chat template (malloc'ed). Without a template, a plain-text layout. */
static char *render(const fm_tokenizer *tok, const fm_chat_message *msgs, size_t n, int add_gen) {
    size_t len = 0;
    fm_status st = fm_tokenizer_chat_format(tok, msgs, n, add_gen, NULL, 0, &len);
    if (st == FM_ERR_UNSUPPORTED) { /* no chat template: "System: ...\nUser: ...\nAssistant:" */
        size_t cap = 64;
        for (size_t i = 0; i < n; i++) cap += strlen(msgs[i].role) + strlen(msgs[i].content) + 4;
        char *text = malloc(cap), *p = text;
        if (!text) return NULL;
        *p = '\0';
        for (size_t i = 0; i < n; i++) p += sprintf(p, "%c%s: %s\n", toupper((unsigned char)msgs[i].role[0]), msgs[i].role[0] ? msgs[i].role + 1 : "",
                         msgs[i].content);
        if (add_gen) strcpy(p, "Assistant:");
        return text;
    }
    char *text = NULL;
    if ((st == FM_OK || st == FM_ERR_BUFFER_TOO_SMALL) && (text = malloc(len + 1)) &&
        fm_tokenizer_chat_format(tok, msgs, n, add_gen, text, len + 1, &len) == FM_OK)
        return text;
    free(text);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    fm_context *ctx = NULL;
    fm_session *s = NULL;
    if (fm_context_open(argv[1], NULL, &ctx) != FM_OK || fm_session_open(ctx, NULL, &s) != FM_OK) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        fm_context_close(ctx);
        return 1;
    }
    const fm_tokenizer *tok = fm_context_tokenizer(ctx);
    if (!tok) {
        fprintf(stderr, "error: %s has no tokenizer.json\n", argv[1]);
        fm_session_close(s);
        fm_context_close(ctx);
        return 1;
    }
    int rc = 1;
    char *sys_text = NULL, *full = NULL;
    void *blob = NULL;

    /* 1. Prefill the system prompt once: fm_generate with max_new_tokens = 0 only feeds the prompt. */
    fm_chat_message msgs[2] = {{"system", system_prompt}, {"user", ""}};
    if (!(sys_text = render(tok, msgs, 1, 0))) goto fail;
    fm_generate_params prefill;
    fm_generate_params_init(&prefill);
    prefill.max_new_tokens = 0;
    double t0 = now();
    if (fm_generate(s, sys_text, &prefill, NULL, NULL) != FM_OK) goto fail;
    double t_prefill = now() - t0;
    uint64_t n_sys = fm_session_n_tokens(s);

    /* 2. Save the state. */
    size_t blob_size = fm_session_state_size(s);
    if (!(blob = malloc(blob_size)) || fm_session_state_save(s, blob, blob_size, &blob_size) != FM_OK) goto fail;
    printf("system prompt: %llu tokens prefilled in %.1f ms, state blob %zu bytes\n", (unsigned long long)n_sys,
           1e3 * t_prefill, blob_size);

    /* 3. Each conversation starts from the blob and feeds only the text after the system prompt. */
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.temperature = 0.7f;
    sp.seed = 3;
    const char *stop[] = {"<|im_end|>", "\nUser:"};
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    gp.max_new_tokens = 40;
    gp.sampler = &sp;
    gp.stop = stop;
    gp.n_stop = 2;
    gp.skip_special = 0; /* so that the ChatML end tag can match as a stop string */
    size_t n_sys_text = strlen(sys_text);
    for (size_t q = 0; q < N_QUESTIONS; q++) {
        t0 = now();
        if (fm_session_state_load(s, blob, blob_size) != FM_OK) goto fail;
        double t_load = now() - t0;
        if (fm_session_n_tokens(s) != n_sys) {
            fprintf(stderr, "error: the loaded state has %llu tokens, expected %llu\n",
                    (unsigned long long)fm_session_n_tokens(s), (unsigned long long)n_sys);
            goto fail;
        }
        msgs[1].content = questions[q];
        free(full);
        if (!(full = render(tok, msgs, 2, 1))) goto fail;
        if (strncmp(full, sys_text, n_sys_text) != 0) {
            fprintf(stderr, "error: the template does not render the system prompt as a prefix\n");
            goto fail;
        }
        printf("Q: %s\nA:", questions[q]);
        fflush(stdout);
        sp.seed = 3 + q; /* a changed seed reseeds the session's generator */
        if (fm_generate(s, full + n_sys_text, &gp, print_piece, NULL) != FM_OK) goto fail;
        printf("\n   (state restored in %.3f ms instead of re-reading %llu tokens)\n", 1e3 * t_load,
               (unsigned long long)n_sys);
    }
    printf("prompt_cache OK: %zu conversations from one prefill\n", N_QUESTIONS);
    rc = 0;
fail:
    if (rc) {
        const char *e = fm_last_error();
        fprintf(stderr, "error: %s\n", e[0] ? e : "out of memory");
    }
    free(full);
    free(blob);
    free(sys_text);
    fm_session_close(s);
    fm_context_close(ctx);
    return rc;
}
