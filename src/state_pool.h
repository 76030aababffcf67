/* state_pool.h - recurrent-state slots of one context, allocated on its backend and recycled. */
#ifndef FM_STATE_POOL_H
#define FM_STATE_POOL_H

#include <pthread.h>
#include <stddef.h>

#include "backend.h"
#include "falconmamba.h"

typedef struct fm_state_pool {
    const fm_backend_ops *ops;
    void *be;
    size_t slot_bytes;
    pthread_mutex_t mu;
    void **free_slots; /* recycled slots, at most FM_STATE_POOL_KEEP */
    size_t n_free;
} fm_state_pool;

fm_status fm_state_pool_init(fm_state_pool *p, const fm_backend_ops *ops, void *be, size_t slot_bytes);
void fm_state_pool_destroy(fm_state_pool *p);

/* A zeroed slot. Thread-safe. */
fm_status fm_state_pool_acquire(fm_state_pool *p, float **slot);
void fm_state_pool_release(fm_state_pool *p, float *slot);

#endif
