/* internal.h - the structs behind the public opaque handles. */
#ifndef FM_INTERNAL_H
#define FM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "falconmamba.h"
#include "model.h"
#include "state_pool.h"

struct fm_context {
    fm_model model;
    const fm_backend_ops *ops;
    void *be;
    fm_state_pool pool;
    const char *model_type;
    atomic_long n_sessions;
};

struct fm_session {
    fm_context *ctx;
    float *state;      /* slot in the context's pool (device memory) */
    float *logits;     /* host, n_vocab floats */
    int has_logits;
    uint64_t n_tokens;
    size_t chunk;      /* rows per prefill pass */
    fm_workspace ws;
    atomic_int cancel;
};

/* Validate a caller's params struct and copy it over defaults (which hold the defaults on entry).
   Shorter structs (older callers) keep the defaults for the missing fields. */
fm_status fm_params_copy(void *defaults, size_t our_size, const void *theirs, const char *what);

#endif
