/* internal.h - the structs behind the public opaque handles. */
#ifndef FM_INTERNAL_H
#define FM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "falconmamba.h"
#include "model.h"
#include "rng.h"
#include "state_pool.h"

struct fm_context {
    fm_model model;
    const fm_backend_ops *ops;
    void *be;
    fm_state_pool pool;
    const char *model_type;
    atomic_long n_sessions;
    fm_tokenizer *tokenizer; /* the checkpoint's tokenizer.json, NULL if it has none */
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
    /* Tokens seen, for the repetition penalties: the last FM_HISTORY_MAX at least, kept in a
       linear buffer of up to 2 * FM_HISTORY_MAX that is compacted when full. */
    int32_t *history;
    size_t n_history, history_cap;
    /* Sampler: the generator, the seed it was last seeded with, scratch. */
    fm_rng rng;
    uint64_t rng_seed;
    int rng_seeded;
    void *sample_work;
    float *sample_scores;
};

/* Validate a caller's params struct and copy it over defaults (which hold the defaults on entry).
   Shorter structs (older callers) keep the defaults for the missing fields. */
fm_status fm_params_copy(void *defaults, size_t our_size, const void *theirs, const char *what);

#endif
