/* backend_registry.c - maps fm_backend_kind to a backend's ops table. Adding a backend = one folder
   plus one line in k_backends. */
#include "backend_registry.h"

#include <stddef.h>

#include "error.h"

_Static_assert(FM_BE_OK == (int)FM_OK && FM_BE_ERR_INVALID_ARGUMENT == (int)FM_ERR_INVALID_ARGUMENT &&
                   FM_BE_ERR_OUT_OF_MEMORY == (int)FM_ERR_OUT_OF_MEMORY && FM_BE_ERR_BACKEND == (int)FM_ERR_BACKEND &&
                   FM_BE_ERR_INTERNAL == (int)FM_ERR_INTERNAL,
               "backend status codes must equal fm_status");

/* Each backend exports one entry point returning its static ops table. */
const fm_backend_ops *fm_backend_cpu(void);

static const struct {
    fm_backend_kind kind;
    const fm_backend_ops *(*get)(void);
} k_backends[] = {
    {FM_BACKEND_CPU, fm_backend_cpu},
};

static const fm_backend_host k_host = {fm_error_from_backend};

const fm_backend_host *fm_backend_host_callbacks(void) { return &k_host; }

static int usable(const fm_backend_ops *ops) {
    return ops && ops->abi_version == FM_BACKEND_ABI_VERSION && ops->struct_size >= sizeof(fm_backend_ops);
}

fm_status fm_backend_find(fm_backend_kind kind, const fm_backend_ops **out) {
    if (kind != FM_BACKEND_AUTO && kind != FM_BACKEND_CPU && kind != FM_BACKEND_CUDA)
        return fm_error(FM_ERR_INVALID_ARGUMENT, "backend %d is not a valid fm_backend_kind", (int)kind);
    for (size_t i = 0; i < sizeof k_backends / sizeof k_backends[0]; i++) {
        if (kind != FM_BACKEND_AUTO && k_backends[i].kind != kind) continue;
        const fm_backend_ops *ops = k_backends[i].get();
        if (!usable(ops)) continue;
        *out = ops;
        return FM_OK;
    }
    if (kind == FM_BACKEND_CUDA)
        return fm_error(FM_ERR_BACKEND, "the CUDA backend is not available in this build of libfalconmamba");
    return fm_error(FM_ERR_BACKEND, "no usable backend for kind %d", (int)kind);
}
