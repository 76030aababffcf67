/* test_file_changes.c - checkpoint files that change on disk (docs/SECURITY.md):
   - truncated before fm_context_open, at every interesting cut: a clean FM_ERR_FORMAT / FM_ERR_IO;
   - unlinked, or replaced by rename (the safe way to update a model), while a context is open: the
     context keeps working on the data it opened (the mapping holds the old inode);
   - truncated in place while a context is open: cannot be detected by the library; a context that
     reads weights from the mapping gets SIGBUS (an OS limitation). Run in a child process; the test
     reports what happened and accepts a clean run with correct logits or a SIGBUS, nothing else.
   Uses tests/support/tiny_model. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "falconmamba.h"
#include "test_util.h"
#include "tiny_model.h"

static int g_bad;
#define CHECK(cond, ...)                                                                                \
    do {                                                                                                \
        if (!(cond)) {                                                                                  \
            fprintf(stderr, "FAIL line %d: ", __LINE__);                                                \
            fprintf(stderr, __VA_ARGS__);                                                               \
            fprintf(stderr, " [%s]\n", fm_last_error());                                                \
            g_bad = 1;                                                                                  \
        }                                                                                               \
    } while (0)

static const int32_t k_prompt[5] = {1, 5, 2, 7, 3};

/* Logits after k_prompt, into out (n_vocab floats). */
static fm_status run(fm_context *ctx, float *out) {
    fm_session *s;
    fm_status st = fm_session_open(ctx, NULL, &s);
    if (st) return st;
    st = fm_session_feed(s, k_prompt, 5, NULL);
    if (!st) memcpy(out, fm_session_logits(s), (size_t)fm_n_vocab(ctx) * sizeof(float));
    fm_session_close(s);
    return st;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

int main(void) {
    fm_tm_options o;
    fm_tm_options_init(&o);
    fm_tm_model *m = fm_tm_create(&o);
    char *dir = fm_tm_write_tmp(m);
    if (!dir) return 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t img_n;
    uint8_t *img = fm_tm_image(m, -1, &img_n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | img[i];

    fm_context *ctx;
    if (fm_context_open(dir, NULL, &ctx) != FM_OK) return 1;
    const size_t V = (size_t)fm_n_vocab(ctx);
    float *ref = malloc(V * sizeof(float)), *got = malloc(V * sizeof(float));
    CHECK(run(ctx, ref) == FM_OK, "reference run");
    fm_context_close(ctx);

    /* 1. truncated before open */
    size_t cuts[] = {0, 4, 8, 8 + (size_t)hlen / 2, 8 + (size_t)hlen, 8 + (size_t)hlen + 1, img_n / 2, img_n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        fm_test_write_file(dir, "model.safetensors", img, img_n);
        fm_tm_truncate(dir, "model.safetensors", cuts[i]);
        fm_context *c = (fm_context *)0x1;
        fm_status st = fm_context_open(dir, NULL, &c);
        CHECK(st == FM_ERR_FORMAT || st == FM_ERR_IO, "truncated to %zu bytes: %s", cuts[i], fm_status_string(st));
        CHECK(c == (fm_context *)0x1, "output changed");
        if (st == FM_OK) fm_context_close(c);
    }
    printf("truncated before open: %zu cuts refused\n", sizeof cuts / sizeof cuts[0]);

    /* 2. unlinked while open */
    fm_test_write_file(dir, "model.safetensors", img, img_n);
    CHECK(fm_context_open(dir, NULL, &ctx) == FM_OK, "open");
    unlink(path);
    CHECK(run(ctx, got) == FM_OK && memcmp(got, ref, V * sizeof(float)) == 0, "after unlink");
    fm_context_close(ctx);
    printf("unlinked while open: still serves the original weights\n");

    /* 3. replaced by rename while open (a different model of the same shape) */
    fm_test_write_file(dir, "model.safetensors", img, img_n);
    CHECK(fm_context_open(dir, NULL, &ctx) == FM_OK, "open");
    fm_tm_options o2 = o;
    o2.seed = 99;
    fm_tm_model *m2 = fm_tm_create(&o2);
    size_t img2_n;
    uint8_t *img2 = fm_tm_image(m2, -1, &img2_n);
    fm_test_write_file(dir, "model.new", img2, img2_n);
    char newpath[4096];
    snprintf(newpath, sizeof newpath, "%s/model.new", dir);
    CHECK(rename(newpath, path) == 0, "rename");
    CHECK(run(ctx, got) == FM_OK && memcmp(got, ref, V * sizeof(float)) == 0, "after replace-by-rename");
    fm_context_close(ctx);
    printf("replaced by rename while open: still serves the original weights\n");

    /* 4. truncated in place while open: child process */
    fm_test_write_file(dir, "model.safetensors", img, img_n);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        fm_context *c;
        if (fm_context_open(dir, NULL, &c) != FM_OK) _exit(3);
        fm_tm_truncate(dir, "model.safetensors", 8 + (size_t)hlen); /* header kept, data gone */
        if (file_size(path) != (long)(8 + hlen)) _exit(4);
        float *g = malloc(V * sizeof(float));
        if (!g || run(c, g) != FM_OK) _exit(5);
        const int same = memcmp(g, ref, V * sizeof(float)) == 0;
        free(g);
        fm_context_close(c); /* so that a leak checker in the child has nothing to report */
        _exit(same ? 0 : 6);
    }
    int wst = 0;
    waitpid(pid, &wst, 0);
    if (WIFEXITED(wst) && WEXITSTATUS(wst) == 0)
        printf("truncated while open: weights were copied at open, results unaffected\n");
    else if (WIFSIGNALED(wst) && WTERMSIG(wst) == SIGBUS)
        printf("truncated while open: SIGBUS (weights are read from the mapping; documented limitation)\n");
    else if (WIFEXITED(wst) && WEXITSTATUS(wst) == 1 &&
             (getenv("FM_UNDER_SANITIZER") || (getenv("LD_PRELOAD") && strstr(getenv("LD_PRELOAD"), "vgpreload"))))
        printf("truncated while open: the sanitizer reported the SIGBUS (documented limitation)\n");
    else
        CHECK(0, "truncated while open: child ended with status 0x%x", wst);

    free(img);
    free(img2);
    free(ref);
    free(got);
    fm_tm_free(m);
    fm_tm_free(m2);
    fm_test_rmtree(dir);
    free(dir);
    return g_bad;
}
