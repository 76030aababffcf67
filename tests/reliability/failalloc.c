/* failalloc.c - an LD_PRELOAD allocator shim for failure-injection tests. It forwards malloc,
   calloc, realloc, free and the aligned allocators to glibc's __libc_* entry points, counts live
   blocks, and when armed makes exactly the k-th allocation after arming return NULL (errno ENOMEM).
   glibc routes its own internal allocations (strdup, fopen buffers, pthread bookkeeping) through
   the interposed malloc, so those fail too. The test finds the control functions with dlsym; if the
   shim is not preloaded they are absent and the test skips.
   Single counter, no per-block table: the live count is exact as long as every block is allocated
   and freed through this shim, which holds for a preloaded shim (it sees the process from start). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

static atomic_long g_live;      /* blocks allocated and not yet freed */
static atomic_long g_countdown; /* > 0: armed; the allocation that brings it to 0 fails */
static atomic_long g_seen;      /* allocations since arming */
static atomic_int g_failed;     /* 1 once the armed failure happened */

/* Arm: the k-th allocation from now fails (k >= 1); k = 0 disarms (seen/failed keep their values). */
void fm_failalloc_arm(long k) {
    atomic_store(&g_countdown, 0);
    if (k <= 0) return; /* disarm: keep seen/failed for the caller to read */
    atomic_store(&g_seen, 0);
    atomic_store(&g_failed, 0);
    atomic_store(&g_countdown, k);
}
/* Allocations made since the last arm (whether or not the failure happened). */
long fm_failalloc_seen(void) { return atomic_load(&g_seen); }
/* 1 if the armed failure has happened. */
int fm_failalloc_failed(void) { return atomic_load(&g_failed); }
/* Live blocks right now. */
long fm_failalloc_live(void) { return atomic_load(&g_live); }

static int should_fail(void) {
    if (atomic_load_explicit(&g_countdown, memory_order_relaxed) <= 0) return 0;
    atomic_fetch_add(&g_seen, 1);
    if (atomic_fetch_sub(&g_countdown, 1) == 1) {
        atomic_store(&g_failed, 1);
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

static void *counted(void *p) {
    if (p) atomic_fetch_add_explicit(&g_live, 1, memory_order_relaxed);
    return p;
}

void *malloc(size_t n) { return should_fail() ? NULL : counted(__libc_malloc(n)); }

void *calloc(size_t a, size_t b) { return should_fail() ? NULL : counted(__libc_calloc(a, b)); }

void free(void *p) {
    if (!p) return;
    atomic_fetch_sub_explicit(&g_live, 1, memory_order_relaxed);
    __libc_free(p);
}

void *realloc(void *p, size_t n) {
    if (!p) return malloc(n);
    if (n == 0) { /* glibc: frees and returns NULL */
        free(p);
        return NULL;
    }
    if (should_fail()) return NULL; /* p stays valid, as realloc promises */
    return __libc_realloc(p, n);    /* the block count is unchanged */
}

void *memalign(size_t align, size_t n) { return should_fail() ? NULL : counted(__libc_memalign(align, n)); }

void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
    void *p = memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(size_t n) { return memalign(4096, n); }

void *pvalloc(size_t n) { return memalign(4096, (n + 4095) & ~(size_t)4095); }
