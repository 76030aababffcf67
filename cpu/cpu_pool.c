/* cpu_pool.c - see cpu_pool.h. One generation counter under a mutex wakes the workers for a job,
   an atomic counter hands out its chunks, a counter of finished workers wakes the caller. */
#define _GNU_SOURCE /* sched_getaffinity */
#include "cpu_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cpu_pool {
    int n_threads;
    pthread_t *threads;
    int n_started;
    pthread_mutex_t run_lock; /* held by the caller of the job in flight */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    unsigned long generation; /* bumped for each job; read without the lock while polling */
    unsigned long n_done;     /* workers finished with the current job */
    int stop;
    /* the job */
    size_t n, grain, chunk;
    size_t next; /* the next unclaimed item (atomic) */
    cpu_task_fn fn;
    void *ctx;
};

typedef struct worker_arg {
    cpu_pool *pool;
    int tid;
} worker_arg;

/* Threads claim chunks of the job in order from one atomic counter until none is left, so a thread
   that was held up (a preempted vCPU, a core shared with the application) leaves its unclaimed
   chunks to the others instead of making them all wait. A chunk is a multiple of grain items, about
   an eighth of a thread's even share: long enough that each thread still streams contiguous weight
   rows. */
#define CHUNKS_PER_THREAD 8

static int sched_static = -1; /* FM_CPU_SCHED=static: one contiguous share per thread (A/B runs) */

static void run_share(cpu_pool *p, int tid) {
    if (sched_static) {
        size_t units = (p->n + p->grain - 1) / p->grain;
        size_t per = units / (size_t)p->n_threads, extra = units % (size_t)p->n_threads, t = (size_t)tid;
        size_t u0 = t * per + (t < extra ? t : extra), u1 = u0 + per + (t < extra ? 1 : 0);
        size_t b = u0 * p->grain < p->n ? u0 * p->grain : p->n, e = u1 * p->grain < p->n ? u1 * p->grain : p->n;
        if (b < e) p->fn(p->ctx, b, e, tid);
        return;
    }
    for (;;) {
        const size_t b = __atomic_fetch_add(&p->next, p->chunk, __ATOMIC_RELAXED);
        if (b >= p->n) return;
        p->fn(p->ctx, b, p->n - b < p->chunk ? p->n : b + p->chunk, tid);
    }
}

/* A forward pass is a burst of short jobs (a few per layer); waking a sleeping thread costs tens of
   microseconds, so between jobs a thread polls for up to SPIN_NS before it sleeps. Idle longer than
   that (between tokens, or when the library is not in use), every worker is asleep. */
#define SPIN_NS 50000

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Poll until *word != value or SPIN_NS pass. */
static void spin_while_equal(const unsigned long *word, unsigned long value) {
    const uint64_t t0 = now_ns();
    for (int i = 0; __atomic_load_n(word, __ATOMIC_ACQUIRE) == value; i++) {
        cpu_relax();
        if ((i & 63) == 63 && now_ns() - t0 > SPIN_NS) return;
    }
}

/* Poll until *word >= target or SPIN_NS pass. */
static void spin_until_at_least(const unsigned long *word, unsigned long target) {
    const uint64_t t0 = now_ns();
    for (int i = 0; __atomic_load_n(word, __ATOMIC_ACQUIRE) < target; i++) {
        cpu_relax();
        if ((i & 63) == 63 && now_ns() - t0 > SPIN_NS) return;
    }
}

static void *worker_main(void *v) {
    worker_arg *a = v;
    cpu_pool *p = a->pool;
    const int tid = a->tid;
    free(a);
    unsigned long seen = 0;
    for (;;) {
        spin_while_equal(&p->generation, seen);
        pthread_mutex_lock(&p->mu);
        while (p->generation == seen && !p->stop) pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_share(p, tid);
        pthread_mutex_lock(&p->mu);
        if (__atomic_add_fetch(&p->n_done, 1, __ATOMIC_RELEASE) == (unsigned long)p->n_threads - 1)
            pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int cpu_pool_default_threads(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    return 1;
}

int cpu_pool_threads(const cpu_pool *p) { return p->n_threads; }

void cpu_pool_destroy(cpu_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_lock);
    free(p->threads);
    free(p);
}

int cpu_pool_create(int n_threads, cpu_pool **out) {
    cpu_pool *p = calloc(1, sizeof *p);
    if (!p) return -1;
    p->n_threads = n_threads < 1 ? 1 : n_threads;
    if (sched_static < 0) {
        const char *e = getenv("FM_CPU_SCHED");
        sched_static = e && strcmp(e, "static") == 0;
    }
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (p->n_threads > 1) {
        p->threads = calloc((size_t)p->n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            cpu_pool_destroy(p);
            return -1;
        }
    }
    for (int i = 1; i < p->n_threads; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (a) {
            a->pool = p;
            a->tid = i;
        }
        if (!a || pthread_create(&p->threads[i - 1], NULL, worker_main, a) != 0) {
            free(a);
            cpu_pool_destroy(p);
            return -1;
        }
        p->n_started++;
    }
    *out = p;
    return 0;
}

void cpu_pool_run(cpu_pool *p, size_t n, size_t grain, cpu_task_fn fn, void *ctx) {
    if (n == 0) return;
    if (grain == 0) grain = 1;
    /* Inline when alone, when there is at most one grain of work, or when another caller has the pool. */
    if (p->n_threads == 1 || n <= grain || pthread_mutex_trylock(&p->run_lock) != 0) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->n = n;
    p->grain = grain;
    const size_t units = (n + grain - 1) / grain, per = (size_t)p->n_threads * CHUNKS_PER_THREAD;
    p->chunk = (units + per - 1) / per * grain;
    p->next = 0;
    p->fn = fn;
    p->ctx = ctx;
    p->n_done = 0;
    __atomic_add_fetch(&p->generation, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_share(p, 0);
    spin_until_at_least(&p->n_done, (unsigned long)p->n_threads - 1);
    pthread_mutex_lock(&p->mu);
    while (p->n_done < (unsigned long)p->n_threads - 1) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->run_lock);
}
