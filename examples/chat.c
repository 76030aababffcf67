/* chat.c - a multi-turn chat. The conversation is rendered with the model's chat template
   (fm_tokenizer_chat_format), but the session is never re-fed from the start: a Mamba state already
   holds everything said so far, so each turn feeds only the text the template added since the last
   turn (the previous answer's closing tag and the new user message).

   usage: chat MODEL_DIR [USER_MESSAGE...]
   With messages on the command line they are the user's turns (scripted, as the tests run it);
   otherwise lines are read from stdin: /reset starts over, /exit (or end of input) quits. */
#include <falconmamba.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGES 256
/* ChatML closes every turn with this tag; stopping on it (and feeding it, which fm_generate does
   for the token that completed it) leaves the session exactly at the end of the assistant's turn. */
#define END_OF_TURN "<|im_end|>"

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static int buf_add(buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Print each piece as it comes and keep the whole answer. */
static int on_piece(const char *piece, size_t len, int32_t token, void *user) {
    (void)token;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return buf_add(user, piece, len) != 0;
}

/* The rendered conversation (malloc'ed, NUL-terminated), or NULL with the error printed. */
static char *render(const fm_tokenizer *tok, const fm_chat_message *msgs, size_t n, int add_gen, size_t *len) {
    fm_status st = fm_tokenizer_chat_format(tok, msgs, n, add_gen, NULL, 0, len); /* ask for the size */
    if (st != FM_OK && st != FM_ERR_BUFFER_TOO_SMALL) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        return NULL;
    }
    char *text = malloc(*len + 1);
    if (text && fm_tokenizer_chat_format(tok, msgs, n, add_gen, text, *len + 1, len) != FM_OK) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        free(text);
        return NULL;
    }
    return text;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [USER_MESSAGE...]\n", argv[0]);
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

    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.temperature = 0.7f;
    sp.top_p = 0.9f;
    sp.repeat_penalty = 1.1f;
    sp.seed = 1234;
    const char *stop[] = {END_OF_TURN};
    fm_generate_stats stats = {.struct_size = sizeof stats};
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    gp.max_new_tokens = 64;
    gp.sampler = &sp;
    gp.stop = stop;
    gp.n_stop = 1;
    gp.skip_special = 0; /* keep special tokens in the text, so that END_OF_TURN can match */
    gp.stats = &stats;

    /* The conversation. msgs[0] is the system message; strings we own are in owned[]. */
    fm_chat_message msgs[MAX_MESSAGES];
    char *owned[MAX_MESSAGES] = {0};
    size_t n_msgs = 0;
    msgs[n_msgs++] = (fm_chat_message){"system", "You are a helpful assistant."};
    char *seen = NULL;   /* the rendered conversation the session has consumed a prefix of ... */
    size_t n_seen = 0;   /* ... and that prefix's length */
    int rc = 0, scripted = argc > 2, turn = 0;
    char line[4096];

    for (;;) {
        /* The user's next message. */
        const char *user;
        if (scripted) {
            if (2 + turn >= argc) break;
            user = argv[2 + turn];
            printf("> %s\n", user);
        } else {
            printf("> ");
            fflush(stdout);
            if (!fgets(line, sizeof line, stdin)) break;
            line[strcspn(line, "\r\n")] = '\0';
            if (!strcmp(line, "/exit")) break;
            if (!strcmp(line, "/reset")) { /* forget everything: empty state, system message only */
                fm_session_reset(s);
                for (size_t i = 0; i < n_msgs; i++) free(owned[i]), owned[i] = NULL;
                n_msgs = 1;
                n_seen = 0;
                printf("(conversation reset)\n");
                continue;
            }
            if (!line[0]) continue;
            user = line;
        }
        turn++;
        if (n_msgs + 2 > MAX_MESSAGES) {
            fprintf(stderr, "error: conversation too long for this example\n");
            rc = 1;
            break;
        }
        owned[n_msgs] = strdup(user);
        msgs[n_msgs] = (fm_chat_message){"user", owned[n_msgs]};
        n_msgs++;

        /* Render everything with the assistant's header at the end, and feed only what is new. */
        size_t n_full;
        char *full = render(tok, msgs, n_msgs, 1, &n_full);
        if (!full) {
            rc = 1;
            break;
        }
        if (n_seen > n_full || (seen && memcmp(seen, full, n_seen) != 0)) {
            /* The template rewrote earlier turns (some do): start the state over from the full text. */
            fm_session_reset(s);
            n_seen = 0;
        }
        buf answer = {0};
        fm_status st = fm_generate(s, full + n_seen, &gp, on_piece, &answer);
        printf("\n");
        if (st != FM_OK) {
            fprintf(stderr, "error: %s\n", fm_last_error());
            free(full);
            free(answer.p);
            rc = 1;
            break;
        }

        /* The session has now consumed the prompt, the answer and, if the model closed its turn,
           END_OF_TURN. What the template will render next time for this turn starts the same way. */
        owned[n_msgs] = answer.p ? answer.p : strdup("");
        msgs[n_msgs] = (fm_chat_message){"assistant", owned[n_msgs]};
        n_msgs++;
        n_seen = n_full + answer.len + (stats.stop_reason == FM_STOP_STRING ? strlen(END_OF_TURN) : 0);
        free(seen);
        size_t n_rendered;
        seen = render(tok, msgs, n_msgs, 0, &n_rendered);
        free(full);
        if (!seen) {
            rc = 1;
            break;
        }
        fprintf(stderr, "[turn %d: fed %llu new prompt tokens, %llu generated, session at %llu tokens]\n", turn,
                (unsigned long long)stats.n_prompt_tokens, (unsigned long long)stats.n_generated_tokens,
                (unsigned long long)fm_session_n_tokens(s));
    }

    free(seen);
    for (size_t i = 0; i < n_msgs; i++) free(owned[i]);
    fm_session_close(s);
    fm_context_close(ctx);
    return rc;
}
