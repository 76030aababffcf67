/* file_util.c - whole-file reads and path joins used while loading a checkpoint. */
#define _DEFAULT_SOURCE /* madvise, MADV_DONTNEED */
#include "file_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

static pthread_mutex_t g_json_mu = PTHREAD_MUTEX_INITIALIZER;

struct cJSON *fm_json_parse(const char *text, size_t len, const char **end) {
    pthread_mutex_lock(&g_json_mu);
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, end, 0);
    pthread_mutex_unlock(&g_json_mu);
    return root;
}

int fm_only_whitespace(const char *end, const char *text, size_t len) {
    for (const char *p = end; p && p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\0') return 0;
    return 1;
}

fm_status fm_read_file(const char *path, size_t max_bytes, char **buf_out, size_t *len_out) {
    /* O_NONBLOCK: opening a FIFO must not hang; anything but a regular file is refused below. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return fm_error(FM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return fm_error(FM_ERR_IO, "%s: not a regular file", path);
    }
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        int err = errno;
        close(fd);
        return fm_error(err == ENOMEM ? FM_ERR_OUT_OF_MEMORY : FM_ERR_IO, "%s: cannot open: %s", path, strerror(err));
    }
    if ((unsigned long long)sb.st_size > max_bytes) {
        fclose(fp);
        return fm_error(FM_ERR_FORMAT, "%s: %lld bytes is larger than the %zu-byte limit for this file", path,
                        (long long)sb.st_size, max_bytes);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return fm_error(FM_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, n, fp);
    int err = ferror(fp);
    fclose(fp);
    if (got != n || err) {
        free(buf);
        return fm_error(FM_ERR_IO, "%s: read failed", path);
    }
    buf[n] = '\0';
    *buf_out = buf;
    *len_out = n;
    return FM_OK;
}

int fm_path_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

char *fm_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

void fm_release_mapped(const void *p, size_t n) {
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || n == 0) return;
    uintptr_t b = ((uintptr_t)p + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    uintptr_t e = ((uintptr_t)p + n) / (uintptr_t)page * (uintptr_t)page;
    if (e > b) madvise((void *)b, e - b, MADV_DONTNEED); /* advisory: a failure changes nothing */
}
