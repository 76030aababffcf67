/* backend_registry.c - maps fm_backend_kind to a backend's ops table. Adding a backend = one folder
   plus one line in k_backends (compiled in) or one loadable module (CUDA: libfalconmamba-cuda.so).

   The CUDA backend is a separate shared module so that the core loads and runs on machines with no
   CUDA driver or libraries at all. It is dlopen()ed on the first request for FM_BACKEND_CUDA (or
   FM_BACKEND_AUTO), searching in order:
     1. $FM_CUDA_BACKEND: the module's path (or "none"/"off"/"0": never load it);
     2. the directory of the file holding this code (libfalconmamba.so, or the executable a static
        libfalconmamba.a is linked into), found with dladdr;
     3. the install libdir (FM_INSTALL_LIBDIR, compiled in);
     4. the plain name, through the dynamic linker's own search (LD_LIBRARY_PATH, runpath, ld.so.cache).
   The result, success or the reasons of failure, is kept for the life of the process (the handle is
   never closed: contexts may be open on it). */
#define _GNU_SOURCE /* dladdr */
#include "backend_registry.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

_Static_assert(FM_BE_OK == (int)FM_OK && FM_BE_ERR_INVALID_ARGUMENT == (int)FM_ERR_INVALID_ARGUMENT &&
                   FM_BE_ERR_OUT_OF_MEMORY == (int)FM_ERR_OUT_OF_MEMORY && FM_BE_ERR_BACKEND == (int)FM_ERR_BACKEND &&
                   FM_BE_ERR_INTERNAL == (int)FM_ERR_INTERNAL,
               "backend status codes must equal fm_status");

#ifndef FM_INSTALL_LIBDIR
#define FM_INSTALL_LIBDIR ""
#endif
#define FM_CUDA_MODULE "libfalconmamba-cuda.so"
#define FM_CUDA_ENTRY "fm_backend_cuda_ops"

/* Each compiled-in backend exports one entry point returning its static ops table. */
const fm_backend_ops *fm_backend_cpu(void);

static const struct {
    fm_backend_kind kind;
    const fm_backend_ops *(*get)(void);
} k_backends[] = {
    {FM_BACKEND_CPU, fm_backend_cpu},
};

static const fm_backend_host k_host = {fm_error_from_backend};

const fm_backend_host *fm_backend_host_callbacks(void) { return &k_host; }

/* The required part of the table: up to and including sync (optional entries follow it). */
static int usable(const fm_backend_ops *ops) {
    return ops && ops->abi_version == FM_BACKEND_ABI_VERSION &&
           ops->struct_size >= offsetof(fm_backend_ops, sync) + sizeof ops->sync;
}

/* ---- the CUDA module ---------------------------------------------------------------------------- */

static pthread_mutex_t g_cuda_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_cuda_tried;                /* the module search ran */
static const fm_backend_ops *g_cuda_ops; /* its table, or NULL */
static char g_cuda_why[2048];            /* why it is not there */
static int g_cuda_devices = -1;          /* probe result, once loaded: < 0 unknown/failed */
static char g_cuda_probe_why[512];

static void why_append(const char *fmt, const char *a, const char *b) {
    size_t len = strlen(g_cuda_why);
    if (len + 8 >= sizeof g_cuda_why) return;
    snprintf(g_cuda_why + len, sizeof g_cuda_why - len, "%s", len ? "; " : "");
    len = strlen(g_cuda_why);
    snprintf(g_cuda_why + len, sizeof g_cuda_why - len, fmt, a, b);
}

/* dlopen path; on success set g_cuda_ops and return 1. */
static int try_module(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        why_append("%s%s", "", e ? e : path);
        return 0;
    }
    const fm_backend_ops *(*get)(void) = NULL;
    void *sym = dlsym(h, FM_CUDA_ENTRY);
    memcpy(&get, &sym, sizeof get); /* object pointer -> function pointer without a pedantic warning */
    const fm_backend_ops *ops = get ? get() : NULL;
    if (!ops) {
        why_append("%s: no entry point %s", path, FM_CUDA_ENTRY);
        dlclose(h);
        return 0;
    }
    if (!usable(ops)) {
        char v[64];
        snprintf(v, sizeof v, "ABI %u, struct %zu", (unsigned)ops->abi_version, ops->struct_size);
        why_append("%s: built for another backend ABI (%s)", path, v);
        dlclose(h);
        return 0;
    }
    g_cuda_ops = ops;
    return 1;
}

static int try_dir(const char *dir) {
    if (!dir || !*dir) return 0;
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", dir, FM_CUDA_MODULE);
    if (n < 0 || (size_t)n >= sizeof path) return 0;
    return try_module(path);
}

static void load_cuda_locked(void) {
    if (g_cuda_tried) return;
    g_cuda_tried = 1;
    g_cuda_why[0] = 0;
    const char *env = getenv("FM_CUDA_BACKEND");
    if (env && *env) {
        if (!strcmp(env, "none") || !strcmp(env, "off") || !strcmp(env, "0")) {
            why_append("%s%s", "disabled by FM_CUDA_BACKEND=", env);
            return;
        }
        try_module(env);
        return; /* an explicit path is the only place looked at */
    }
    Dl_info info;
    if (dladdr((void *)&g_cuda_tried, &info) && info.dli_fname && strchr(info.dli_fname, '/')) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", info.dli_fname);
        char *slash = strrchr(dir, '/');
        *slash = 0;
        if (try_dir(dir[0] ? dir : "/")) return;
    }
    if (strcmp(FM_INSTALL_LIBDIR, "") && try_dir(FM_INSTALL_LIBDIR)) return;
    try_module(FM_CUDA_MODULE);
}

/* The CUDA table, or NULL with *why set. With probe, also how many devices it can use. */
static const fm_backend_ops *cuda_ops(const char **why, int *devices) {
    pthread_mutex_lock(&g_cuda_lock);
    load_cuda_locked();
    const fm_backend_ops *ops = g_cuda_ops;
    if (ops && g_cuda_devices < 0) {
        g_cuda_probe_why[0] = 0;
        if (FM_BACKEND_HAS(ops, probe)) {
            int n = ops->probe(g_cuda_probe_why, sizeof g_cuda_probe_why);
            g_cuda_devices = n < 0 ? 0 : n;
            if (n <= 0 && !g_cuda_probe_why[0]) snprintf(g_cuda_probe_why, sizeof g_cuda_probe_why, "no CUDA device");
        } else {
            g_cuda_devices = 1; /* a module without probe: its init will tell */
        }
    }
    *devices = ops ? g_cuda_devices : 0;
    *why = ops ? g_cuda_probe_why : g_cuda_why;
    pthread_mutex_unlock(&g_cuda_lock);
    return ops;
}

fm_status fm_backend_find(fm_backend_kind kind, const fm_backend_ops **out) {
    if (kind != FM_BACKEND_AUTO && kind != FM_BACKEND_CPU && kind != FM_BACKEND_CUDA)
        return fm_error(FM_ERR_INVALID_ARGUMENT, "backend %d is not a valid fm_backend_kind", (int)kind);
    if (kind == FM_BACKEND_CUDA || kind == FM_BACKEND_AUTO) {
        const char *why;
        int devices;
        const fm_backend_ops *ops = cuda_ops(&why, &devices);
        if (ops && devices > 0) {
            *out = ops;
            return FM_OK;
        }
        if (kind == FM_BACKEND_CUDA) {
            if (!ops)
                return fm_error(FM_ERR_BACKEND, "the CUDA backend (%s) could not be loaded: %s", FM_CUDA_MODULE, why);
            return fm_error(FM_ERR_BACKEND, "the CUDA backend has no usable device: %s", why);
        }
    }
    for (size_t i = 0; i < sizeof k_backends / sizeof k_backends[0]; i++) {
        if (kind != FM_BACKEND_AUTO && k_backends[i].kind != kind) continue;
        const fm_backend_ops *ops = k_backends[i].get();
        if (!usable(ops)) continue;
        *out = ops;
        return FM_OK;
    }
    return fm_error(FM_ERR_BACKEND, "no usable backend for kind %d", (int)kind);
}
