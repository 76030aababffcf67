/* cpu_backend.c - the CPU backend's vtable: host memory, weight storage and conversion. */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

void *cpu_aligned_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

static int cpu_init(const fm_backend_host *host, const fm_backend_config *cfg, void **out) {
    cpu_backend *be = calloc(1, sizeof *be);
    if (!be) {
        host->set_error(CPU_ERR_OOM, "cpu backend: out of memory");
        return CPU_ERR_OOM;
    }
    be->host = host;
    be->n_threads = cfg->n_threads;
    *out = be;
    return CPU_OK;
}

static void cpu_shutdown(void *be) { free(be); }

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

static size_t dtype_size(fm_dtype t) { return t == FM_DTYPE_F32 ? 4 : 2; }

static int cpu_weight_create(void *vbe, const fm_weight_desc *d, fm_weight **out) {
    cpu_backend *be = vbe;
    if (d->rows <= 0 || d->cols <= 0)
        return CPU_ERR(be, CPU_ERR_ARG, "cpu backend: tensor '%s' has an empty shape", d->name);
    size_t n = (size_t)d->rows * (size_t)d->cols;
    fm_weight *w = calloc(1, sizeof *w);
    if (!w) return CPU_ERR(be, CPU_ERR_OOM, "cpu backend: out of memory for '%s'", d->name);
    w->dtype = d->store_dtype;
    w->rows = d->rows;
    w->cols = d->cols;
    w->bytes = n * dtype_size(w->dtype);
    w->data = cpu_aligned_alloc(w->bytes);
    if (!w->data) {
        free(w);
        return CPU_ERR(be, CPU_ERR_OOM, "cpu backend: cannot allocate %zu bytes for '%s'", n * 4, d->name);
    }
    const unsigned char *src = d->data;
    if (d->src_dtype == w->dtype) {
        memcpy(w->data, src, w->bytes); /* the source may be unaligned; memcpy is fine */
    } else if (w->dtype == FM_DTYPE_F32) {
        float *o = w->data;
        for (size_t i = 0; i < n; i++) o[i] = fm_dtype_load_f32(src, d->src_dtype, i);
    } else {
        uint16_t *o = w->data;
        for (size_t i = 0; i < n; i++) {
            float f = fm_dtype_load_f32(src, d->src_dtype, i);
            o[i] = w->dtype == FM_DTYPE_BF16 ? fm_f32_to_bf16(f) : fm_f32_to_f16(f);
        }
    }
    *out = w;
    return CPU_OK;
}

static void cpu_weight_free(void *be, fm_weight *w) {
    (void)be;
    if (!w) return;
    free(w->data);
    free(w);
}

static size_t cpu_weight_bytes(const fm_weight *w) { return w->bytes; }

void cpu_weight_row_f32(const fm_weight *W, int64_t r, float *dst) {
    size_t cols = (size_t)W->cols;
    switch (W->dtype) {
    case FM_DTYPE_F32: memcpy(dst, (const float *)W->data + (size_t)r * cols, cols * sizeof(float)); break;
    case FM_DTYPE_BF16: {
        const uint16_t *p = (const uint16_t *)W->data + (size_t)r * cols;
        for (size_t i = 0; i < cols; i++) dst[i] = fm_bf16_to_f32(p[i]);
        break;
    }
    case FM_DTYPE_F16: {
        const uint16_t *p = (const uint16_t *)W->data + (size_t)r * cols;
        for (size_t i = 0; i < cols; i++) dst[i] = fm_f16_to_f32(p[i]);
        break;
    }
    }
}

static int cpu_sync(void *be) {
    (void)be;
    return CPU_OK;
}

static const fm_backend_ops k_cpu_ops = {
    .abi_version = FM_BACKEND_ABI_VERSION,
    .struct_size = sizeof(fm_backend_ops),
    .name = "cpu",
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
