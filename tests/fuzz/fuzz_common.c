/* fuzz_common.c - helpers for the fuzz targets (see fuzz_common.h). */
#include "fuzz_common.h"

#include <string.h>
#include <unistd.h>

#include "test_util.h"

static char *g_dir;

static void remove_dir(void) {
    if (g_dir) fm_test_rmtree(g_dir);
}

char *fuzz_tmpdir(void) {
    if (g_dir) return g_dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NULL;
    char tmpl[512];
    if (base) {
        snprintf(tmpl, sizeof tmpl, "%s/fm_fuzz_XXXXXX", base);
        if (mkdtemp(tmpl)) g_dir = strdup(tmpl);
    }
    if (!g_dir) g_dir = fm_test_mkdtemp();
    FUZZ_CHECK(g_dir != NULL);
    atexit(remove_dir);
    return g_dir;
}

void fuzz_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(n == 0 || fwrite(data, 1, n, f) == n);
    FUZZ_CHECK(fclose(f) == 0);
}
