/* falconmamba - the command-line tool: generate, chat, info, perplexity, bench. Uses only the public API.
 *
 *   falconmamba generate -m DIR -p TEXT [-n N] [sampling options] [--threads N] [--backend cpu|cuda]
 *                        [--weights f32|bf16|f16|q8_0|q4_0]
 *   falconmamba chat -m DIR [--system TEXT] [sampling options]
 *   falconmamba info -m DIR
 *   falconmamba perplexity -m DIR -f FILE [--chunk N]
 *   falconmamba bench -m DIR [-p 512] [-n 128] [-b 1,8] [-r 3] [--json]   (bench.c)
 */
#include <falconmamba.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

typedef struct options {
    const char *model, *prompt, *file, *system;
    int32_t n_new;
    int32_t chunk;
    fm_context_params cp;
    fm_sampler_params sp;
} options;

static int fail(const char *what) {
    fprintf(stderr, "falconmamba: %s\n", what);
    return 1;
}

static int fail_api(const char *what) {
    fprintf(stderr, "falconmamba: %s: %s\n", what, fm_last_error());
    return 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *k_common_help =
    "  -m, --model DIR         checkpoint directory (config.json, *.safetensors, tokenizer.json)\n"
    "      --threads N         CPU threads (default: all cores)\n"
    "      --backend B         cpu | cuda | auto (default auto)\n"
    "      --weights W         f32 | bf16 | f16 | q8_0 | q4_0 (default: as stored)\n";
static const char *k_sampling_help =
    "      --temperature T     0 = greedy (default 0.8)\n"
    "      --top-k K           default 40; 0 = off\n"
    "      --top-p P           default 0.95\n"
    "      --min-p M           default 0.05\n"
    "      --repeat-penalty R  default 1.1 (1 = off)\n"
    "      --seed S            default 0\n";

static void usage(const char *cmd) {
    if (!cmd) {
        printf("usage: falconmamba COMMAND [options]\n\n"
               "commands:\n"
               "  generate    continue a prompt\n"
               "  chat        interactive chat using the model's chat template\n"
               "  info        model configuration, parameter count, memory\n"
               "  perplexity  perplexity of a text file\n"
               "  bench       prefill and decode speed against the measured memory bandwidth\n\n"
               "falconmamba COMMAND --help shows the options of a command.\n");
    } else if (!strcmp(cmd, "generate")) {
        printf("usage: falconmamba generate -m DIR -p TEXT [-n N] [options]\n\n"
               "  -p, --prompt TEXT       the prompt\n"
               "  -n, --n-predict N       tokens to generate (default 128)\n%s%s",
               k_common_help, k_sampling_help);
    } else if (!strcmp(cmd, "chat")) {
        printf("usage: falconmamba chat -m DIR [--system TEXT] [options]\n\n"
               "Reads one user message per line from standard input (a terminal or a script).\n"
               "Commands: /reset  /save FILE  /load FILE  /exit\n\n"
               "      --system TEXT       system message\n"
               "  -n, --n-predict N       max tokens per reply (default 512)\n%s%s",
               k_common_help, k_sampling_help);
    } else if (!strcmp(cmd, "info")) {
        printf("usage: falconmamba info -m DIR\n\n%s", k_common_help);
    } else if (!strcmp(cmd, "perplexity")) {
        printf("usage: falconmamba perplexity -m DIR -f FILE [--chunk N]\n\n"
               "  -f, --file FILE         UTF-8 text\n"
               "      --chunk N           tokens scored per pass (default 512)\n%s",
               k_common_help);
    }
}

static int parse_num(const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    return *s && !*end;
}

/* Returns 0 on success, 1 on error (message printed), 2 for --help. */
static int parse(int argc, char **argv, const char *cmd, options *o) {
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double num = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return 2;
#define NEED_VALUE()                                                                                                  \
    do {                                                                                                              \
        if (!v) {                                                                                                     \
            fprintf(stderr, "falconmamba: option %s needs a value\n", a);                                           \
            return 1;                                                                                                 \
        }                                                                                                             \
        i++;                                                                                                          \
    } while (0)
#define NEED_NUMBER()                                                                                                 \
    do {                                                                                                              \
        NEED_VALUE();                                                                                                 \
        if (!parse_num(v, &num)) {                                                                                    \
            fprintf(stderr, "falconmamba: option %s: '%s' is not a number\n", a, v);                                \
            return 1;                                                                                                 \
        }                                                                                                             \
    } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED_VALUE(); o->model = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { NEED_VALUE(); o->prompt = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { NEED_VALUE(); o->file = v; }
        else if (!strcmp(a, "--system")) { NEED_VALUE(); o->system = v; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { NEED_NUMBER(); o->n_new = (int32_t)num; }
        else if (!strcmp(a, "--chunk")) { NEED_NUMBER(); o->chunk = (int32_t)num; }
        else if (!strcmp(a, "--temperature")) { NEED_NUMBER(); o->sp.temperature = (float)num; }
        else if (!strcmp(a, "--top-k")) { NEED_NUMBER(); o->sp.top_k = (int32_t)num; }
        else if (!strcmp(a, "--top-p")) { NEED_NUMBER(); o->sp.top_p = (float)num; }
        else if (!strcmp(a, "--min-p")) { NEED_NUMBER(); o->sp.min_p = (float)num; }
        else if (!strcmp(a, "--repeat-penalty")) { NEED_NUMBER(); o->sp.repeat_penalty = (float)num; }
        else if (!strcmp(a, "--seed")) { NEED_NUMBER(); o->sp.seed = (uint64_t)num; }
        else if (!strcmp(a, "--threads")) { NEED_NUMBER(); o->cp.n_threads = (int32_t)num; }
        else if (!strcmp(a, "--backend")) {
            NEED_VALUE();
            if (!strcmp(v, "cpu")) o->cp.backend = FM_BACKEND_CPU;
            else if (!strcmp(v, "cuda")) o->cp.backend = FM_BACKEND_CUDA;
            else if (!strcmp(v, "auto")) o->cp.backend = FM_BACKEND_AUTO;
            else return fprintf(stderr, "falconmamba: unknown backend '%s' (cpu, cuda, auto)\n", v), 1;
        } else if (!strcmp(a, "--weights")) {
            NEED_VALUE();
            static const struct {
                const char *name;
                fm_weight_type t;
            } w[] = {{"f32", FM_WEIGHTS_F32}, {"bf16", FM_WEIGHTS_BF16}, {"f16", FM_WEIGHTS_F16},
                     {"q8_0", FM_WEIGHTS_Q8_0}, {"q4_0", FM_WEIGHTS_Q4_0}};
            size_t k = 0;
            while (k < 5 && strcmp(w[k].name, v)) k++;
            if (k == 5) return fprintf(stderr, "falconmamba: unknown weight type '%s'\n", v), 1;
            o->cp.weight_type = w[k].t;
        } else {
            fprintf(stderr, "falconmamba %s: unknown option '%s' (see --help)\n", cmd, a);
            return 1;
        }
    }
    if (!o->model) return fprintf(stderr, "falconmamba %s: -m DIR is required (see --help)\n", cmd), 1;
    return 0;
}

static int progress_bar(float f, void *user) {
    (void)user;
    int w = 40, k = (int)(f * (float)w + 0.5f);
    fprintf(stderr, "\rloading [%.*s%*s] %3d%%", k, "========================================", w - k, "", (int)(f * 100));
    if (f >= 1.0f) fprintf(stderr, "\r%*s\r", w + 20, "");
    return 0;
}

static fm_status open_model(options *o, fm_context **ctx) {
    if (isatty(2)) o->cp.progress = progress_bar;
    return fm_context_open(o->model, &o->cp, ctx);
}

static int print_piece(const char *piece, size_t len, int32_t token, void *user) {
    (void)token;
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static void print_stats(const fm_generate_stats *st) {
    fprintf(stderr, "\n[prompt: %llu tokens in %.2f s (%.1f tok/s) | generated: %llu tokens in %.2f s (%.1f tok/s)]\n",
            (unsigned long long)st->n_prompt_tokens, st->prompt_seconds,
            st->prompt_seconds > 0 ? (double)st->n_prompt_tokens / st->prompt_seconds : 0.0,
            (unsigned long long)st->n_generated_tokens, st->generate_seconds,
            st->generate_seconds > 0 ? (double)st->n_generated_tokens / st->generate_seconds : 0.0);
}

static int cmd_generate(options *o) {
    if (!o->prompt) return fail("generate: -p TEXT is required (see --help)");
    fm_context *ctx;
    if (open_model(o, &ctx)) return fail_api("cannot load the model");
    fm_session *s;
    if (fm_session_open(ctx, NULL, &s)) {
        fm_context_close(ctx);
        return fail_api("cannot open a session");
    }
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    fm_generate_stats stats = {sizeof stats, 0, 0, 0, 0, FM_STOP_NONE};
    gp.max_new_tokens = o->n_new;
    gp.sampler = &o->sp;
    gp.stats = &stats;
    fputs(o->prompt, stdout);
    fm_status st = fm_generate(s, o->prompt, &gp, print_piece, NULL);
    int rc = st == FM_OK ? 0 : fail_api("generation failed");
    if (st == FM_OK) print_stats(&stats);
    fm_session_close(s);
    fm_context_close(ctx);
    return rc;
}

/* ---- chat ------------------------------------------------------------------------------------ */

typedef struct chat {
    fm_chat_message *msgs;
    size_t n, cap;
    char *fed;          /* exactly the text the session has consumed (template renders + replies) */
    size_t fed_len;
    char *reply;        /* the reply being streamed */
    size_t reply_len, reply_cap;
} chat;

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int chat_push(chat *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        fm_chat_message *m = realloc(c->msgs, cap * sizeof *m);
        if (!m) return -1;
        c->msgs = m;
        c->cap = cap;
    }
    c->msgs[c->n].role = dup_str(role);
    c->msgs[c->n].content = dup_str(content);
    c->n++;
    return 0;
}

static void chat_clear(chat *c, const char *system) {
    for (size_t i = 0; i < c->n; i++) {
        free((char *)c->msgs[i].role);
        free((char *)c->msgs[i].content);
    }
    c->n = 0;
    free(c->fed);
    c->fed = NULL;
    c->fed_len = 0;
    if (system) chat_push(c, "system", system);
}

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + n + 1) nc *= 2;
        char *b = realloc(*buf, nc);
        if (!b) return -1;
        *buf = b;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

static int on_reply(const char *piece, size_t len, int32_t token, void *user) {
    chat *c = user;
    (void)token;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return append(&c->reply, &c->reply_len, &c->reply_cap, piece, len) != 0;
}

static char *render(const fm_tokenizer *tok, const chat *c, int gen_prompt, size_t *len) {
    size_t need = 0;
    fm_status st = fm_tokenizer_chat_format(tok, c->msgs, c->n, gen_prompt, NULL, 0, &need);
    if (st != FM_OK && st != FM_ERR_BUFFER_TOO_SMALL) return NULL;
    char *buf = malloc(need + 1);
    if (!buf || fm_tokenizer_chat_format(tok, c->msgs, c->n, gen_prompt, buf, need + 1, len) != FM_OK) {
        free(buf);
        return NULL;
    }
    buf[*len] = 0;
    return buf;
}

static int save_state(const fm_session *s, const char *path) {
    size_t n = fm_session_state_size(s);
    void *buf = malloc(n);
    FILE *f = NULL;
    int ok = buf && fm_session_state_save(s, buf, n, &n) == FM_OK && (f = fopen(path, "wb")) && fwrite(buf, 1, n, f) == n;
    if (f && fclose(f)) ok = 0;
    free(buf);
    return ok ? 0 : -1;
}

static int load_state(fm_session *s, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = n > 0 ? malloc((size_t)n) : NULL;
    int ok = buf && fread(buf, 1, (size_t)n, f) == (size_t)n && fm_session_state_load(s, buf, (size_t)n) == FM_OK;
    fclose(f);
    free(buf);
    return ok ? 0 : -1;
}

static int cmd_chat(options *o) {
    fm_context *ctx;
    if (open_model(o, &ctx)) return fail_api("cannot load the model");
    const fm_tokenizer *tok = fm_context_tokenizer(ctx);
    fm_session *s;
    if (!tok) {
        fm_context_close(ctx);
        return fail("chat: the model directory has no tokenizer.json");
    }
    if (fm_session_open(ctx, NULL, &s)) {
        fm_context_close(ctx);
        return fail_api("cannot open a session");
    }
    int interactive = isatty(0);
    chat c = {0};
    chat_clear(&c, o->system);
    char line[8192];
    int rc = 0;
    if (interactive) fprintf(stderr, "chat with %s — /reset, /save FILE, /load FILE, /exit\n", o->model);
    for (;;) {
        if (interactive) fputs("> ", stdout), fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            fm_session_reset(s);
            chat_clear(&c, o->system);
            printf("[conversation reset]\n");
            continue;
        }
        if (!strncmp(line, "/save ", 6) || !strncmp(line, "/load ", 6)) {
            int save = line[1] == 's';
            int r = save ? save_state(s, line + 6) : load_state(s, line + 6);
            if (r) fprintf(stderr, "falconmamba: %s %s failed: %s\n", save ? "save" : "load", line + 6, fm_last_error());
            else printf("[%s %s]\n", save ? "saved state to" : "loaded state from", line + 6);
            /* A loaded state carries no transcript: continue without template history. */
            if (!save && !r) chat_clear(&c, NULL), c.fed = dup_str(""), c.fed_len = 0;
            continue;
        }
        if (chat_push(&c, "user", line)) {
            rc = fail("out of memory");
            break;
        }
        size_t len;
        char *full = render(tok, &c, 1, &len);
        if (!full) {
            rc = fail_api("chat template");
            break;
        }
        /* Feed only what the session has not consumed yet; if the template rewrote the past,
           start over from the full render (exact, just slower). */
        const char *delta = full;
        if (c.fed && len >= c.fed_len && !memcmp(full, c.fed, c.fed_len)) delta = full + c.fed_len;
        else if (c.fed_len) fm_session_reset(s);
        fm_generate_params gp;
        fm_generate_params_init(&gp);
        fm_generate_stats stats = {sizeof stats, 0, 0, 0, 0, FM_STOP_NONE};
        gp.max_new_tokens = o->n_new;
        gp.sampler = &o->sp;
        gp.stats = &stats;
        gp.add_special = 0; /* the template places special tokens itself */
        c.reply_len = 0;
        if (c.reply) c.reply[0] = 0;
        fm_status st = fm_generate(s, delta, &gp, on_reply, &c);
        printf("\n");
        if (st != FM_OK) {
            free(full);
            rc = fail_api("generation failed");
            break;
        }
        if (interactive) print_stats(&stats);
        chat_push(&c, "assistant", c.reply ? c.reply : "");
        free(c.fed);
        c.fed = full;
        c.fed_len = len;
        size_t fed_cap = len + 1;
        append(&c.fed, &c.fed_len, &fed_cap, c.reply ? c.reply : "", c.reply_len);
        if (stats.stop_reason == FM_STOP_EOS) { /* the session consumed the EOS token too */
            int32_t eos = fm_tokenizer_eos(tok) >= 0 ? fm_tokenizer_eos(tok) : fm_token_eos(ctx);
            char piece[256];
            size_t pl = 0;
            if (fm_tokenizer_decode(tok, &eos, 1, 0, piece, sizeof piece, &pl) == FM_OK)
                append(&c.fed, &c.fed_len, &fed_cap, piece, pl);
        }
    }
    chat_clear(&c, NULL);
    free(c.msgs);
    free(c.reply);
    fm_session_close(s);
    fm_context_close(ctx);
    return rc;
}

/* ---- info / perplexity ------------------------------------------------------------------------ */

static int cmd_info(options *o) {
    fm_context *ctx;
    if (open_model(o, &ctx)) return fail_api("cannot load the model");
    fm_model_info mi;
    memset(&mi, 0, sizeof mi);
    mi.struct_size = sizeof mi;
    fm_context_info(ctx, &mi);
    printf("model type      %s\n", mi.model_type);
    printf("layers          %d\n", mi.n_layer);
    printf("d_model         %d\n", mi.d_model);
    printf("d_inner         %d\n", mi.d_inner);
    printf("d_state         %d\n", mi.d_state);
    printf("conv kernel     %d\n", mi.d_conv);
    printf("dt_rank         %d\n", mi.dt_rank);
    printf("vocabulary      %d\n", mi.n_vocab);
    printf("tied head       %s\n", mi.tied_embeddings ? "yes" : "no");
    printf("parameters      %llu (%.2f B)\n", (unsigned long long)mi.n_params, (double)mi.n_params / 1e9);
    printf("weight memory   %.1f MB\n", (double)mi.weight_bytes / 1e6);
    printf("state/session   %.2f MB\n", (double)mi.state_bytes / 1e6);
    printf("backend         %s\n", mi.backend_name);
    printf("bos / eos       %d / %d\n", fm_token_bos(ctx), fm_token_eos(ctx));
    const fm_tokenizer *tok = fm_context_tokenizer(ctx);
    printf("tokenizer       %s\n", tok ? "tokenizer.json" : "none");
    fm_context_close(ctx);
    return 0;
}

static int cmd_perplexity(options *o) {
    if (!o->file) return fail("perplexity: -f FILE is required (see --help)");
    FILE *f = fopen(o->file, "rb");
    if (!f) return fail("perplexity: cannot open the file");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(text);
        return fail("perplexity: cannot read the file");
    }
    fclose(f);
    fm_context *ctx;
    if (open_model(o, &ctx)) {
        free(text);
        return fail_api("cannot load the model");
    }
    const fm_tokenizer *tok = fm_context_tokenizer(ctx);
    size_t nt = 0;
    int32_t *ids = NULL;
    fm_session *s = NULL;
    int rc = 1;
    if (!tok) {
        fail("perplexity: the model directory has no tokenizer.json");
        goto out;
    }
    fm_tokenizer_encode(tok, text, (size_t)n, 0, NULL, 0, &nt);
    ids = malloc((nt ? nt : 1) * sizeof *ids);
    if (!ids || fm_tokenizer_encode(tok, text, (size_t)n, 0, ids, nt, &nt) != FM_OK) {
        fail_api("tokenize");
        goto out;
    }
    if (nt < 2) {
        fail("perplexity: the text has fewer than 2 tokens");
        goto out;
    }
    if (fm_session_open(ctx, NULL, &s)) {
        fail_api("session");
        goto out;
    }
    size_t V = (size_t)fm_n_vocab(ctx), chunk = o->chunk > 0 ? (size_t)o->chunk : 512;
    float *lg = malloc(chunk * V * sizeof *lg);
    double nll = 0, t0 = now_s();
    size_t scored = 0;
    for (size_t at = 0; lg && at + 1 < nt; at += chunk) {
        size_t m = nt - 1 - at < chunk ? nt - 1 - at : chunk;
        if (fm_session_feed(s, ids + at, m, lg)) {
            fail_api("feed");
            break;
        }
        for (size_t i = 0; i < m; i++) { /* row i predicts token at + i + 1 */
            const float *row = lg + i * V;
            double mx = row[0], sum = 0;
            for (size_t v = 1; v < V; v++)
                if (row[v] > mx) mx = row[v];
            for (size_t v = 0; v < V; v++) sum += exp((double)row[v] - mx);
            nll += log(sum) + mx - (double)row[ids[at + i + 1]];
        }
        scored += m;
    }
    free(lg);
    if (scored == nt - 1) {
        double dt = now_s() - t0;
        printf("tokens %zu  mean NLL %.6f  perplexity %.4f  (%.1f tokens/s)\n", scored, nll / (double)scored,
               exp(nll / (double)scored), (double)scored / dt);
        rc = 0;
    }
out:
    fm_session_close(s);
    free(ids);
    free(text);
    fm_context_close(ctx);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(NULL);
        return argc < 2 ? 1 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "bench")) return falconmamba_bench(argc, argv);
    options o = {0};
    fm_context_params_init(&o.cp);
    fm_sampler_params_init(&o.sp);
    o.sp.temperature = 0.8f; /* the CLI's defaults, as llama.cpp's */
    o.sp.top_k = 40;
    o.sp.top_p = 0.95f;
    o.sp.min_p = 0.05f;
    o.sp.repeat_penalty = 1.1f;
    o.sp.repeat_last_n = 64;
    o.n_new = !strcmp(cmd, "chat") ? 512 : 128;
    int (*run)(options *) = NULL;
    if (!strcmp(cmd, "generate")) run = cmd_generate;
    else if (!strcmp(cmd, "chat")) run = cmd_chat;
    else if (!strcmp(cmd, "info")) run = cmd_info;
    else if (!strcmp(cmd, "perplexity")) run = cmd_perplexity;
    else {
        fprintf(stderr, "falconmamba: unknown command '%s' (generate, chat, info, perplexity, bench)\n", cmd);
        return 1;
    }
    int p = parse(argc, argv, cmd, &o);
    if (p == 2) {
        usage(cmd);
        return 0;
    }
    return p ? 1 : run(&o);
}
