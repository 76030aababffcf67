/* cpu_pool.h - the CPU backend's worker threads: a parallel-for over [0, n) that sleeps when idle.
 *
 * n_threads - 1 workers are started at init (none for n_threads = 1); the calling thread does the
 * first share itself. Workers wait on a condition variable between calls, so an idle library uses no
 * CPU. Several threads may call cpu_pool_run at once (sessions of one context on different threads):
 * whoever finds the pool busy runs its own work inline, single-threaded, instead of waiting.
 */
#ifndef FM_CPU_POOL_H
#define FM_CPU_POOL_H

#include <stddef.h>

typedef struct cpu_pool cpu_pool;

/* Work on items [begin, end); tid is 0 .. n_threads-1 (0 = the caller), for per-thread scratch. */
typedef void (*cpu_task_fn)(void *ctx, size_t begin, size_t end, int tid);

/* Returns 0, or -1 when threads or memory are not available (nothing is left running). */
int cpu_pool_create(int n_threads, cpu_pool **out);
void cpu_pool_destroy(cpu_pool *p);
int cpu_pool_threads(const cpu_pool *p);

/* Run fn over [0, n) on the pool's threads and return when all of it is done. The threads claim
   consecutive chunks (multiples of grain items, about n_threads * 8 of them) until none is left, so
   fn sees several ranges per thread, in no fixed assignment; FM_CPU_SCHED=static (read at pool
   creation) gives each thread one contiguous share instead. Empty ranges are not run. */
void cpu_pool_run(cpu_pool *p, size_t n, size_t grain, cpu_task_fn fn, void *ctx);

/* Cores this process may run on (sched_getaffinity), at least 1. */
int cpu_pool_default_threads(void);

#endif
