/* cpu_backend.c - the CPU backend's vtable: host memory, weight storage and conversion. */
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <string.h>

#include "cpu_internal.h"
#include "cpu_kernels.h"
#include "cpu_pool.h"

/* Large blocks (weights) are 2 MiB aligned and marked for transparent huge pages: streaming them
   at decode then costs far fewer TLB misses than 4 KiB pages. */
#define HUGE_PAGE ((size_t)2 << 20)

void *cpu_aligned_alloc(size_t bytes) {
    void *p = NULL;
    const size_t align = bytes >= 2 * HUGE_PAGE ? HUGE_PAGE : 64;
    if (posix_memalign(&p, align, bytes ? bytes : 64) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE_PAGE) madvise(p, bytes / HUGE_PAGE * HUGE_PAGE, MADV_HUGEPAGE);
#endif
    return p;
}

static int cpu_init(const fm_backend_host *host, const fm_backend_config *cfg, void **out) {
    cpu_backend *be = calloc(1, sizeof *be);
    if (!be) {
        host->set_error(CPU_ERR_OOM, "cpu backend: out of memory");
        return CPU_ERR_OOM;
    }
    be->host = host;
    be->n_threads = cfg->n_threads > 0 ? cfg->n_threads : cpu_pool_default_threads();
    be->k = cpu_kernels_select();
    /* Weights stored as asked are copied into huge-page memory by default: decode streams them ~40%
       faster than from the page cache's 4 KiB pages (docs/PERFORMANCE.md). FM_CPU_WEIGHTS_IN_PLACE=1
       uses the mapping instead: instant loads and memory shared between processes. */
    const char *in_place = getenv("FM_CPU_WEIGHTS_IN_PLACE");
    be->weights_in_place = in_place && *in_place == '1';
    if (cpu_pool_create(be->n_threads, &be->pool) != 0) {
        const int workers = (int)be->n_threads - 1;
        free(be);
        host->set_error(CPU_ERR_OOM, "cpu backend: cannot start %d worker threads", workers);
        return CPU_ERR_OOM;
    }
    *out = be;
    return CPU_OK;
}

static void cpu_shutdown(void *vbe) {
    cpu_backend *be = vbe;
    if (!be) return;
    cpu_pool_destroy(be->pool);
    free(be);
}

static void *cpu_alloc(void *vbe, size_t bytes) {
    cpu_backend *be = vbe;
    void *p = cpu_aligned_alloc(bytes);
    if (!p) be->host->set_error(CPU_ERR_OOM, "cpu backend: cannot allocate %zu bytes", bytes);
    return p;
}

static void cpu_free(void *be, void *p) {
    (void)be;
    free(p);
}

static int cpu_memcpy(void *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memmove(dst, src, bytes);
    return CPU_OK;
}

static int cpu_download(void *be, void *dst, const void *src, size_t bytes) { return cpu_memcpy(be, dst, src, bytes); }
static int cpu_upload(void *be, void *dst, const void *src, size_t bytes) { return cpu_memcpy(be, dst, src, bytes); }

static int cpu_zero(void *be, void *dst, size_t bytes) {
    (void)be;
    if (bytes) memset(dst, 0, bytes);
    return CPU_OK;
}

typedef struct convert_job {
    void (*quantize_row)(fm_dtype t, const float *x, void *out, size_t cols);
    void (*widen)(fm_dtype t, const void *src, float *dst, size_t n); /* NULL: cpu_weight_slice_f32 */
    const fm_weight_desc *d;
    fm_weight *w;
    int failed;
} convert_job;

/* Widen row `r` of a source tensor to fp32 (the table's widening, or through a weight view). */
static void widen_row(const convert_job *j, size_t r, float *dst) {
    const fm_weight_desc *d = j->d;
    const size_t row_bytes = fm_dtype_row_bytes(d->src_dtype, (size_t)d->cols);
    if (j->widen) {
        j->widen(d->src_dtype, (const unsigned char *)d->data + r * row_bytes, dst, (size_t)d->cols);
        return;
    }
    const fm_weight src = {d->src_dtype, d->rows, d->cols, (void *)d->data, 0, row_bytes, 0};
    cpu_weight_slice_f32(&src, r, 0, (size_t)d->cols, dst);
}

/* Rows [r0, r1): widen, then narrow into the storage type (bf16/f16 round to nearest even,
   Q8_0/Q4_0 by the kernel table's quantizer, bit-identical to quant.h). */
static void convert_task(void *v, size_t r0, size_t r1, int tid) {
    (void)tid;
    convert_job *j = v;
    const size_t cols = (size_t)j->w->cols;
    if (j->d->src_dtype == j->w->dtype) { /* a plain copy (the source may be unaligned) */
        memcpy((unsigned char *)j->w->data + r0 * j->w->row_bytes,
               (const unsigned char *)j->d->data + r0 * j->w->row_bytes, (r1 - r0) * j->w->row_bytes);
        return;
    }
    float *f = malloc(cols * sizeof *f);
    if (!f) {
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    for (size_t r = r0; r < r1; r++) {
        unsigned char *dst = (unsigned char *)j->w->data + r * j->w->row_bytes;
        widen_row(j, r, f);
        switch (j->w->dtype) {
        case FM_DTYPE_F32: memcpy(dst, f, cols * sizeof(float)); break;
        case FM_DTYPE_BF16:
            for (size_t i = 0; i < cols; i++) ((uint16_t *)dst)[i] = fm_f32_to_bf16(f[i]);
            break;
        case FM_DTYPE_F16:
            for (size_t i = 0; i < cols; i++) ((uint16_t *)dst)[i] = fm_f32_to_f16(f[i]);
            break;
        case FM_DTYPE_Q8_0:
        case FM_DTYPE_Q4_0: j->quantize_row(j->w->dtype, f, dst, cols); break;
        }
    }
    free(f);
}

/* A persistent source lives in the read-only mapped checkpoint: once copied, drop its pages from the
   resident set (the core does this itself for converted tensors, but cannot know that a tensor of
   the stored type was copied rather than used in place). Loading a bf16 model then never holds the
   file and the copy at once. */
static void release_source(const fm_weight_desc *d) {
    const long pg = sysconf(_SC_PAGESIZE);
    const uintptr_t page = pg > 0 ? (uintptr_t)pg : 4096, p = (uintptr_t)d->data;
    const size_t n = (size_t)d->rows * fm_dtype_row_bytes(d->src_dtype, (size_t)d->cols);
    const uintptr_t b = (p + page - 1) / page * page, e = (p + n) / page * page;
    if (e > b) madvise((void *)b, e - b, MADV_DONTNEED);
}

static int cpu_weight_create(void *vbe, const fm_weight_desc *d, fm_weight **out) {
    cpu_backend *be = vbe;
    if (d->rows <= 0 || d->cols <= 0)
        return CPU_ERR(be, CPU_ERR_ARG, "cpu backend: tensor '%s' has an empty shape", d->name);
    const int quant = d->store_dtype == FM_DTYPE_Q8_0 || d->store_dtype == FM_DTYPE_Q4_0;
    if (quant && d->cols % FM_QBLOCK != 0)
        return CPU_ERR(be, CPU_ERR_ARG, "cpu backend: tensor '%s' has %lld columns, not a multiple of %d", d->name,
                       (long long)d->cols, FM_QBLOCK);
    if (d->src_dtype != FM_DTYPE_F32 && d->src_dtype != FM_DTYPE_F16 && d->src_dtype != FM_DTYPE_BF16)
        return CPU_ERR(be, CPU_ERR_ARG, "cpu backend: tensor '%s' has a source dtype it cannot read", d->name);
    fm_weight *w = calloc(1, sizeof *w);
    if (!w) return CPU_ERR(be, CPU_ERR_OOM, "cpu backend: out of memory for '%s'", d->name);
    const size_t rows = (size_t)d->rows, cols = (size_t)d->cols;
    w->dtype = d->store_dtype;
    w->rows = d->rows;
    w->cols = d->cols;
    w->row_bytes = fm_dtype_row_bytes(w->dtype, cols);
    w->bytes = rows * w->row_bytes;
    const size_t elem = w->dtype == FM_DTYPE_F32 ? 4 : 2;
    if (be->weights_in_place && d->persistent && d->src_dtype == w->dtype && (uintptr_t)d->data % elem == 0) {
        /* use the mapped bytes in place */
        w->data = (void *)d->data;
        *out = w;
        return CPU_OK;
    }
    w->owned = 1;
    w->data = cpu_aligned_alloc(w->bytes);
    if (!w->data) {
        const size_t bytes = w->bytes;
        free(w);
        return CPU_ERR(be, CPU_ERR_OOM, "cpu backend: cannot allocate %zu bytes for '%s'", bytes, d->name);
    }
    {
        convert_job job = {be->k->quantize_row ? be->k->quantize_row : cpu_kernels_scalar()->quantize_row,
                           be->k->widen, d, w, 0};
        cpu_pool_run(be->pool, rows, 16, convert_task, &job);
        if (job.failed) {
            free(w->data);
            free(w);
            return CPU_ERR(be, CPU_ERR_OOM, "cpu backend: out of memory converting '%s'", d->name);
        }
        if (d->persistent && d->src_dtype == w->dtype) release_source(d);
    }
    *out = w;
    return CPU_OK;
}

static void cpu_weight_free(void *be, fm_weight *w) {
    (void)be;
    if (!w) return;
    if (w->owned) free(w->data);
    free(w);
}

static size_t cpu_weight_bytes(const fm_weight *w) { return w->bytes; }

void cpu_weight_row_f32(const fm_weight *W, int64_t r, float *dst) {
    cpu_weight_slice_f32(W, (size_t)r, 0, (size_t)W->cols, dst); /* the whole row */
}

static int cpu_sync(void *be) {
    (void)be;
    return CPU_OK;
}

static const fm_backend_ops k_cpu_ops = {
    .abi_version = FM_BACKEND_ABI_VERSION,
    .struct_size = sizeof(fm_backend_ops),
    .name = "cpu",
    .flags = FM_BE_FLAG_HOST_MEMORY,
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .weight_create = cpu_weight_create,
    .weight_free = cpu_weight_free,
    .weight_bytes = cpu_weight_bytes,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .conv1d = cpu_conv1d,
    .ssm = cpu_ssm,
    .sync = cpu_sync,
};

const fm_backend_ops *fm_backend_cpu(void) { return &k_cpu_ops; }
