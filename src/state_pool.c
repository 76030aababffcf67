/* state_pool.c - a mutex-guarded cache of state slots so that session open/close does not hit the
   backend allocator every time. */
#include "state_pool.h"

#include <stdlib.h>

#include "error.h"

#define FM_STATE_POOL_KEEP 8

fm_status fm_state_pool_init(fm_state_pool *p, const fm_backend_ops *ops, void *be, size_t slot_bytes) {
    p->ops = ops;
    p->be = be;
    p->slot_bytes = slot_bytes;
    p->n_free = 0;
    p->free_slots = calloc(FM_STATE_POOL_KEEP, sizeof *p->free_slots);
    if (!p->free_slots) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p->free_slots);
        p->free_slots = NULL;
        return fm_error(FM_ERR_INTERNAL, "pthread_mutex_init failed");
    }
    return FM_OK;
}

void fm_state_pool_destroy(fm_state_pool *p) {
    if (!p->free_slots) return;
    for (size_t i = 0; i < p->n_free; i++) p->ops->free(p->be, p->free_slots[i]);
    free(p->free_slots);
    p->free_slots = NULL;
    pthread_mutex_destroy(&p->mu);
}

fm_status fm_state_pool_acquire(fm_state_pool *p, float **slot) {
    void *s = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n_free) s = p->free_slots[--p->n_free];
    pthread_mutex_unlock(&p->mu);
    if (!s) {
        s = p->ops->alloc(p->be, p->slot_bytes);
        if (!s) return FM_ERR_OUT_OF_MEMORY;
    }
    int st = p->ops->zero(p->be, s, p->slot_bytes);
    if (st) {
        p->ops->free(p->be, s);
        return (fm_status)st;
    }
    *slot = s;
    return FM_OK;
}

void fm_state_pool_release(fm_state_pool *p, float *slot) {
    if (!slot) return;
    pthread_mutex_lock(&p->mu);
    int kept = p->n_free < FM_STATE_POOL_KEEP;
    if (kept) p->free_slots[p->n_free++] = slot;
    pthread_mutex_unlock(&p->mu);
    if (!kept) p->ops->free(p->be, slot);
}
