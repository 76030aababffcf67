/* game_loop.c - an NPC that talks inside a game's frame loop without ever stalling a frame.

   The session belongs to a worker thread; the frame thread only posts requests ("say this", "one more
   token") and picks up finished tokens, each under a mutex held for a few instructions, never while
   the model runs. Each frame asks for at most one token, and only when the previous one is done, so a
   slow token just spreads over several frames. When the player walks away mid-sentence the frame
   thread calls fm_session_cancel (the one call allowed from another thread): the step in flight
   returns FM_ERR_CANCELLED and the worker rewinds the NPC to its saved "idle" state.

   usage: game_loop MODEL_DIR [FRAMES] */
#include <falconmamba.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FRAME_MS 16.0 /* the frame budget: ~60 frames per second */

typedef enum { CMD_NONE, CMD_PROMPT, CMD_STEP, CMD_REWIND, CMD_QUIT } command;

/* Everything the two threads share; guarded by mu. */
typedef struct npc {
    pthread_mutex_t mu;
    pthread_cond_t wake;   /* the worker waits here for a command */
    command cmd;           /* posted by the frame thread, taken by the worker */
    char prompt[512];      /* for CMD_PROMPT */
    int busy;              /* the worker is running a command */
    int has_result;        /* a finished command's result is waiting for the frame thread */
    command done;          /* ... which command it was */
    fm_status result;
    int32_t token;         /* CMD_STEP: the token sampled and fed */
    char error[256];
    fm_session *s;         /* used by the worker only (the frame thread may only cancel it) */
} npc;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void sleep_ms(double ms) {
    if (ms <= 0) return;
    struct timespec ts = {(time_t)(ms / 1e3), (long)((ms - 1e3 * (double)(time_t)(ms / 1e3)) * 1e6)};
    nanosleep(&ts, NULL);
}

/* ---- the worker thread: owns the session ---------------------------------------------------------- */

typedef struct worker_args {
    npc *n;
    const fm_tokenizer *tok;
    const void *idle_state; /* the NPC's state before it says anything */
    size_t idle_size;
} worker_args;

static void *worker(void *arg) {
    worker_args *w = arg;
    npc *n = w->n;
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.temperature = 0.9f;
    sp.top_k = 40;
    sp.seed = 7;
    int32_t ids[512];
    for (;;) {
        pthread_mutex_lock(&n->mu);
        while (n->cmd == CMD_NONE) pthread_cond_wait(&n->wake, &n->mu);
        command c = n->cmd;
        char prompt[sizeof n->prompt];
        memcpy(prompt, n->prompt, sizeof prompt);
        n->cmd = CMD_NONE;
        n->busy = 1;
        pthread_mutex_unlock(&n->mu);
        if (c == CMD_QUIT) break;

        /* The model runs here, with no lock held. */
        fm_status st = FM_OK;
        int32_t t = -1;
        if (c == CMD_PROMPT) {
            size_t k = 0;
            st = fm_tokenizer_encode(w->tok, prompt, strlen(prompt), 0, ids, sizeof ids / sizeof ids[0], &k);
            if (st == FM_OK && k) st = fm_session_feed(n->s, ids, k, NULL);
        } else if (c == CMD_STEP) {
            st = fm_session_sample(n->s, &sp, &t);
            if (st == FM_OK) st = fm_session_feed(n->s, &t, 1, NULL);
        } else if (c == CMD_REWIND) {
            /* fm_session_reset drops a cancel that arrived after the step finished; then restore. */
            st = fm_session_reset(n->s);
            if (st == FM_OK) st = fm_session_state_load(n->s, w->idle_state, w->idle_size);
        }

        pthread_mutex_lock(&n->mu);
        n->busy = 0;
        n->has_result = 1;
        n->done = c;
        n->result = st;
        n->token = t;
        snprintf(n->error, sizeof n->error, "%s", st == FM_OK ? "" : fm_last_error());
        pthread_mutex_unlock(&n->mu);
    }
    return NULL;
}

/* ---- the frame thread -------------------------------------------------------------------------- */

/* Post a command if the worker is free; 1 if posted. Never waits for the model. */
static int post(npc *n, command c, const char *prompt) {
    int ok = 0;
    pthread_mutex_lock(&n->mu);
    if (!n->busy && n->cmd == CMD_NONE && !n->has_result) {
        n->cmd = c;
        if (prompt) snprintf(n->prompt, sizeof n->prompt, "%s", prompt);
        pthread_cond_signal(&n->wake);
        ok = 1;
    }
    pthread_mutex_unlock(&n->mu);
    return ok;
}

/* Take a finished command's result, if any; 1 if there was one. */
static int poll_result(npc *n, command *done, fm_status *st, int32_t *token, char *err, size_t cap) {
    int got = 0;
    pthread_mutex_lock(&n->mu);
    if (n->has_result) {
        *done = n->done;
        *st = n->result;
        *token = n->token;
        snprintf(err, cap, "%s", n->error);
        n->has_result = 0;
        got = 1;
    }
    pthread_mutex_unlock(&n->mu);
    return got;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [FRAMES]\n", argv[0]);
        return 2;
    }
    int frames = argc > 2 ? atoi(argv[2]) : 120;
    if (frames < 10) frames = 10;

    fm_context *ctx = NULL;
    npc n = {.cmd = CMD_NONE};
    if (fm_context_open(argv[1], NULL, &ctx) != FM_OK || fm_session_open(ctx, NULL, &n.s) != FM_OK) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        fm_context_close(ctx);
        return 1;
    }
    const fm_tokenizer *tok = fm_context_tokenizer(ctx);
    fm_detokenizer *dt = NULL;
    if (!tok || fm_detokenizer_open(tok, 1, &dt) != FM_OK) {
        fprintf(stderr, "error: %s\n", tok ? fm_last_error() : "the model has no tokenizer.json");
        fm_session_close(n.s);
        fm_context_close(ctx);
        return 1;
    }

    /* The NPC's persona, prefilled once at load time (not in the loop), and saved as its idle state. */
    const char *persona = "You are Bram, the blacksmith of Oakvale. You speak briefly.\n";
    int32_t ids[512];
    size_t k = 0;
    void *idle = NULL;
    size_t idle_size = 0;
    if (fm_tokenizer_encode(tok, persona, strlen(persona), 1, ids, 512, &k) != FM_OK ||
        fm_session_feed(n.s, ids, k, NULL) != FM_OK || !(idle = malloc(idle_size = fm_session_state_size(n.s))) ||
        fm_session_state_save(n.s, idle, idle_size, &idle_size) != FM_OK) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        free(idle);
        fm_detokenizer_close(dt);
        fm_session_close(n.s);
        fm_context_close(ctx);
        return 1;
    }

    pthread_mutex_init(&n.mu, NULL);
    pthread_cond_init(&n.wake, NULL);
    worker_args wa = {&n, tok, idle, idle_size};
    pthread_t th;
    if (pthread_create(&th, NULL, worker, &wa) != 0) {
        fprintf(stderr, "error: cannot start the worker thread\n");
        return 1;
    }

    /* The game: the player talks to Bram from frame 5 on, one question after another, and walks away
       at 60% of the frames, most likely while Bram is still talking. */
    static const char *questions[] = {"Good morning, Bram! Is my sword ready?", "How much do I owe you?",
                                      "Can you also mend my shield?"};
    const int n_questions = (int)(sizeof questions / sizeof questions[0]);
    enum { IDLE, LISTENING, TALKING, INTERRUPTED } mode = IDLE;
    const int first_frame = 5, leave_frame = frames * 6 / 10, max_line_tokens = 24;
    char line[1024] = "";
    size_t line_len = 0;
    int tokens = 0, line_tokens = 0, cancelled = 0, lines = 0, asked = 0, rc = 0;
    double worst_frame = 0;
    command done;
    fm_status st;
    int32_t t;
    char err[256];

    for (int f = 0; f < frames && rc == 0; f++) {
        double t0 = now_ms();

        /* 1. Pick up what the worker finished since the last frame. */
        if (poll_result(&n, &done, &st, &t, err, sizeof err)) {
            if (st == FM_ERR_CANCELLED) {
                cancelled++; /* the call in flight was stopped; the rewind follows */
            } else if (st != FM_OK) {
                fprintf(stderr, "error: %s\n", err);
                rc = 1;
                break;
            } else if (done == CMD_PROMPT && mode == LISTENING) {
                mode = TALKING; /* the question is in; Bram starts answering */
            } else if (done == CMD_STEP && mode == TALKING) {
                tokens++;
                line_tokens++;
                char piece[256];
                size_t len = 0;
                int end = t == fm_token_eos(ctx);
                if (!end && fm_detokenizer_push(dt, t, piece, sizeof piece, &len) == FM_OK && len) {
                    if (memchr(piece, '\n', len)) end = 1; /* a new line: his turn is over */
                    else if (line_len + len < sizeof line) {
                        memcpy(line + line_len, piece, len);
                        line_len += len;
                        line[line_len] = '\0';
                    }
                }
                if (end || line_tokens >= max_line_tokens) {
                    printf("frame %3d  Bram:%s\n", f, line);
                    lines++;
                    line_len = 0;
                    line[0] = '\0';
                    line_tokens = 0;
                    fm_detokenizer_reset(dt);
                    mode = IDLE; /* finished his sentence */
                }
            } else if (done == CMD_REWIND) {
                mode = IDLE; /* back to the saved idle state */
            }
            /* (a step that finished just as the player left is dropped: mode is INTERRUPTED) */
        }

        /* 2. Game logic: at most one request to the NPC per frame, and only if the worker is free. */
        if (f == leave_frame && mode != IDLE) {
            fm_session_cancel(n.s); /* from this thread, while the worker may be inside a call */
            printf("frame %3d  (the player walks away) Bram:%s...\n", f, line);
            mode = INTERRUPTED;
            /* The next thing the worker takes is the rewind. A cancel that found the worker idle is
               still pending then, and fm_session_reset inside the rewind drops it. */
        } else if (mode == IDLE && f >= first_frame && f < leave_frame && asked < n_questions) {
            char prompt[256];
            snprintf(prompt, sizeof prompt, "\nPlayer: %s\nBram:", questions[asked]);
            if (post(&n, CMD_PROMPT, prompt)) {
                printf("frame %3d  Player: %s\n", f, questions[asked]);
                asked++;
                mode = LISTENING;
            }
        } else if (mode == TALKING) {
            post(&n, CMD_STEP, NULL); /* one more token, computed in the background */
        } else if (mode == INTERRUPTED) {
            if (post(&n, CMD_REWIND, NULL)) {
                line_len = 0;
                line[0] = '\0';
                line_tokens = 0;
                fm_detokenizer_reset(dt);
            }
        }

        /* 3. Render, etc. Then wait for the end of the frame. */
        double used = now_ms() - t0;
        if (used > worst_frame) worst_frame = used;
        sleep_ms(FRAME_MS - used);
    }

    while (!post(&n, CMD_QUIT, NULL)) { /* shut down: the worker may still be finishing a command */
        poll_result(&n, &done, &st, &t, err, sizeof err);
        sleep_ms(1);
    }
    pthread_join(th, NULL);
    printf("game_loop OK: %d frames, %d NPC tokens, %d lines, %d call(s) cancelled in flight, worst frame %.2f ms "
           "of %.0f\n", frames, tokens, lines, cancelled, worst_frame, FRAME_MS);

    pthread_cond_destroy(&n.wake);
    pthread_mutex_destroy(&n.mu);
    free(idle);
    fm_detokenizer_close(dt);
    fm_session_close(n.s);
    fm_context_close(ctx);
    return rc;
}
