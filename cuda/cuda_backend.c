/* cuda_backend.c - the CUDA backend's vtable: devices, streams, memory with accounting, errors.
 *
 * One cu_backend per context: its own device, stream, cuBLAS handle, scratch and graphs, so contexts
 * on several devices (or several on one) coexist in a process. Every entry point takes the
 * context's (recursive) lock and makes its device current on the calling thread. The one piece of
 * process-wide state is the lock that keeps device-synchronising calls out of other threads' graph
 * captures (below). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

#define FM_CUDA_API __attribute__((visibility("default")))

int cu_fail(cu_backend *be, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    be->host->set_error(status, "%s", msg);
    return status;
}

int cu_err(cu_backend *be, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return FM_BE_OK;
    if (e == cudaErrorMemoryAllocation) {
        size_t fr = 0, tot = 0;
        cudaGetLastError();
        cudaMemGetInfo(&fr, &tot);
        return cu_fail(be, FM_BE_ERR_OUT_OF_MEMORY, "cuda backend: %s: out of device memory (%s; %zu of %zu bytes free)",
                       what, cudaGetErrorString(e), fr, tot);
    }
    (void)cudaGetLastError(); /* reported here: not again by the next call that checks the record */
    return cu_fail(be, FM_BE_ERR_BACKEND, "cuda backend: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

int cu_blas_err(cu_backend *be, cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return FM_BE_OK;
    if (s == CUBLAS_STATUS_ALLOC_FAILED)
        return cu_fail(be, FM_BE_ERR_OUT_OF_MEMORY, "cuda backend: %s: cuBLAS could not allocate device memory", what);
    return cu_fail(be, FM_BE_ERR_BACKEND, "cuda backend: %s: cuBLAS error %s (%s)", what, cublasGetStatusName(s),
                   cublasGetStatusString(s));
}

/* A call that synchronises the device (cudaFree, cudaFreeHost, cudaMallocHost, creating or destroying
   a cuBLAS handle or a stream) while another thread's stream captures a decode graph invalidates that
   capture, whatever its capture mode: two contexts stepping in two threads failed a step that way
   (cudaErrorStreamCaptureInvalidated). So a capture holds this process-wide lock shared from its begin
   to its end, and those calls hold it exclusively (cudaMalloc too, which may synchronise). Both nest
   per thread; a thread's own capture never waits for itself (such a call inside it is refused or
   fails the capture, as before). */
static pthread_rwlock_t g_sync_lock = PTHREAD_RWLOCK_INITIALIZER;
static __thread int t_sync_depth, t_capturing;

void cu_sync_begin(void) {
    if (!t_capturing && t_sync_depth++ == 0) pthread_rwlock_wrlock(&g_sync_lock);
}
void cu_sync_end(void) {
    if (!t_capturing && --t_sync_depth == 0) pthread_rwlock_unlock(&g_sync_lock);
}
void cu_capture_hold(void) {
    pthread_rwlock_rdlock(&g_sync_lock);
    t_capturing = 1;
}
void cu_capture_release(void) {
    t_capturing = 0;
    pthread_rwlock_unlock(&g_sync_lock);
}

int cu_enter(cu_backend *be) {
    pthread_mutex_lock(&be->lock);
    cudaError_t e = cudaSetDevice(be->device);
    if (e != cudaSuccess) {
        pthread_mutex_unlock(&be->lock);
        return cu_err(be, e, "cudaSetDevice");
    }
    /* Each op checks its own launches with cudaGetLastError(); an error an earlier, already reported
       call left in this thread's record (a failed open of another device, say) must not surface there. */
    (void)cudaGetLastError();
    return FM_BE_OK;
}

void cu_leave(cu_backend *be) { pthread_mutex_unlock(&be->lock); }

void *cu_malloc(cu_backend *be, size_t bytes, const char *what) {
    if (be->capturing) {
        cu_fail(be, FM_BE_ERR_INTERNAL, "cuda backend: %s: allocation of %zu bytes inside a graph capture", what, bytes);
        return NULL;
    }
    if (be->n_allocs == be->cap_allocs) {
        size_t cap = be->cap_allocs ? 2 * be->cap_allocs : 256;
        cu_alloc *a = realloc(be->allocs, cap * sizeof *a);
        if (!a) {
            cu_fail(be, FM_BE_ERR_OUT_OF_MEMORY, "cuda backend: out of host memory");
            return NULL;
        }
        be->allocs = a;
        be->cap_allocs = cap;
    }
    void *p = NULL;
    cu_sync_begin();
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    cu_sync_end();
    if (e != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaGetLastError();
        cudaMemGetInfo(&fr, &tot);
        if (e == cudaErrorMemoryAllocation)
            cu_fail(be, FM_BE_ERR_OUT_OF_MEMORY,
                    "cuda backend: out of device memory for %s: asked %zu bytes, %zu of %zu free on device %d", what,
                    bytes, fr, tot, be->device);
        else
            cu_err(be, e, what);
        return NULL;
    }
    be->allocs[be->n_allocs++] = (cu_alloc){p, bytes};
    be->used += bytes;
    if (be->used > be->peak) be->peak = be->used;
    return p;
}

void cu_free(cu_backend *be, void *p) {
    if (!p) return;
    for (size_t i = be->n_allocs; i-- > 0;)
        if (be->allocs[i].p == p) {
            be->used -= be->allocs[i].bytes;
            be->allocs[i] = be->allocs[--be->n_allocs];
            break;
        }
    cu_sync_begin();
    cudaFree(p);
    cu_sync_end();
}

int cu_reserve(cu_backend *be, void **buf, size_t *have, size_t bytes, const char *what) {
    if (*have >= bytes && *buf) return FM_BE_OK;
    if (be->capturing) /* keep the buffer (and the capture's other work) intact: this step fails, the next runs eagerly */
        return cu_fail(be, FM_BE_ERR_INTERNAL, "cuda backend: %s: growth to %zu bytes inside a graph capture", what, bytes);
    if (*buf) cu_graphs_destroy(be); /* captured graphs may point into the old buffer */
    cu_free(be, *buf);
    *buf = NULL;
    *have = 0;
    size_t want = bytes + bytes / 4; /* some headroom against repeated growth */
    void *p = cu_malloc(be, want, what);
    if (!p) return FM_BE_ERR_OUT_OF_MEMORY;
    *buf = p;
    *have = want;
    return FM_BE_OK;
}

/* ---- vtable entries ---------------------------------------------------------------------------- */

static int usable_device(int dev, char *why, size_t cap) {
    struct cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, dev);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (why) snprintf(why, cap, "device %d: %s", dev, cudaGetErrorString(e));
        return 0;
    }
    if (prop.major < 8) {
        if (why)
            snprintf(why, cap, "device %d (%.100s) has compute capability %d.%d; the CUDA backend needs 8.0 or later", dev,
                     prop.name, prop.major, prop.minor);
        return 0;
    }
    return 1;
}

static int cu_probe(char *why, size_t cap) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(why, cap, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
        cudaGetLastError();
        return -1;
    }
    if (n == 0) {
        snprintf(why, cap, "no CUDA device");
        return 0;
    }
    int usable = 0;
    for (int i = 0; i < n; i++) usable += usable_device(i, usable ? NULL : why, cap);
    return usable;
}

static const char *env_str(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static void cu_destroy(cu_backend *be) {
    cudaSetDevice(be->device);
    cu_sync_begin();
    if (be->layer_prof_steps) {
        static const char *names[CU_LAYERS_PHASES] = {"norm", "in_proj+conv", "wait", "x_proj", "wait",
                                                       "ssm", "wait", "out_proj", "wait"};
        const double per = 1e-3 / (double)be->layer_prof_steps / (double)be->layer_prof_nl;
        fprintf(stderr, "FM_CUDA_LAYERS_PROFILE: %zu steps, us per layer (block 0):", be->layer_prof_steps);
        for (int i = 0; i < CU_LAYERS_PHASES; i++) fprintf(stderr, " %s %.2f", names[i], be->layer_prof[i] * per);
        fprintf(stderr, "\n");
    }
    if (be->stream) cudaStreamSynchronize(be->stream);
    cu_graphs_destroy(be);
    cu_staging_release(be);
    if (be->step_pin) cudaFreeHost(be->step_pin);
    if (be->step_ev) cudaEventDestroy(be->step_ev);
    cu_free(be, be->step_tok_dev);
    cu_free(be, be->step_bases_dev);
    cu_free(be, be->mm_scratch);
    cu_free(be, be->ssm_scratch);
    cu_free(be, be->layer_tab);
    cu_free(be, be->layer_bar);
    cu_free(be, be->layer_prof_dev);
    free(be->layer_tab_host);
    if (be->blas) cublasDestroy(be->blas);
    cu_free(be, be->blas_ws);
    for (size_t i = 0; i < be->n_allocs; i++) cudaFree(be->allocs[i].p); /* anything the core leaked */
    if (be->stream) cudaStreamDestroy(be->stream);
    cu_sync_end();
    free(be->allocs);
    free(be->cap_states_buf);
    pthread_mutex_destroy(&be->lock);
    free(be);
}

static int cu_init(const fm_backend_host *host, const fm_backend_config *cfg, void **out) {
    cu_backend *be = calloc(1, sizeof *be);
    if (!be) {
        host->set_error(FM_BE_ERR_OUT_OF_MEMORY, "cuda backend: out of host memory");
        return FM_BE_ERR_OUT_OF_MEMORY;
    }
    be->host = host;
    be->device = cfg->device;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&be->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    const char *ex = env_str("FM_CUDA_EXACT");
    be->exact = ex && strcmp(ex, "0") != 0;
    const char *fa = env_str("FM_CUDA_FAST");
    be->fast = fa && strcmp(fa, "0") != 0;
    const char *gr = env_str("FM_CUDA_GRAPHS");
    be->graphs_on = !(gr && strcmp(gr, "0") == 0);
    const char *sk = env_str("FM_CUDA_STACK");
    be->stack_on = !(sk && strcmp(sk, "0") == 0);
    const char *sc = env_str("FM_CUDA_SCAN");
    be->scan_chunked = sc ? (atoi(sc) == 2 ? 2 : strcmp(sc, "0") != 0) : 1;
    const char *dq = env_str("FM_CUDA_DQ_CHUNK_MB");
    be->mm_chunk = (size_t)(dq && atoi(dq) > 0 && atoi(dq) <= 4096 ? atoi(dq) : 64) << 20;
    const char *la = env_str("FM_CUDA_LAYERS");
    /* off by default: slower than the per-op path so far (docs/PERFORMANCE.md) */
    be->layers_on = !la ? 0 : strcmp(la, "2") == 0 ? 2 : strcmp(la, "0") != 0;
    const char *fu = env_str("FM_CUDA_FUSED");
    be->fused_on = !(fu && strcmp(fu, "0") == 0);
    const char *lp = env_str("FM_CUDA_LAYERS_PROFILE");
    be->layer_profile = lp && strcmp(lp, "0") != 0;

    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    int st = FM_BE_OK;
    if (e != cudaSuccess) st = cu_err(be, e, "no usable CUDA driver or device");
    else if (cfg->device >= n)
        st = cu_fail(be, FM_BE_ERR_BACKEND, "cuda backend: device %d asked for, but %d CUDA device%s present",
                     cfg->device, n, n == 1 ? " is" : "s are");
    else {
        char why[200] = "";
        if (!usable_device(cfg->device, why, sizeof why)) st = cu_fail(be, FM_BE_ERR_BACKEND, "cuda backend: %s", why);
    }
    if (st == FM_BE_OK) st = cu_err(be, cudaSetDevice(be->device), "cudaSetDevice");
    if (st == FM_BE_OK)
        st = cu_err(be, cudaDeviceGetAttribute(&be->sm_count, cudaDevAttrMultiProcessorCount, be->device),
                    "cudaDeviceGetAttribute");
    if (st == FM_BE_OK) {
        /* Programmatic dependent launch: sm_90+ only; off for good once an older device is opened. */
        static int pdl_off;
        int major = 0;
        const char *pd = env_str("FM_CUDA_PDL");
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, be->device) != cudaSuccess || major < 9 ||
            (pd && strcmp(pd, "0") == 0))
            pdl_off = 1;
        cuk_set_pdl(!pdl_off);
        /* The decode GEMV's kernel choice (cuda_internal.h): tuning and A/B knobs, documented in CUDA.md. */
        const char *gv = env_str("FM_CUDA_GEMV"), *gt = env_str("FM_CUDA_GEMV_TC");
        cuk_set_gemv_variant(gv ? atoi(gv) : CU_GEMV_DEFAULT_VARIANT, gt ? atoi(gt) : 1);
        const char *qd = env_str("FM_CUDA_QDOT");
        cuk_set_qdot(!(qd && strcmp(qd, "0") == 0));
        const char *bm = env_str("FM_CUDA_BULK"), *bk = env_str("FM_CUDA_BULK_KB"), *bt = env_str("FM_CUDA_BULK_TILE_KB");
        int optin = 0;
        if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, be->device) != cudaSuccess) optin = 0;
        cuk_set_bulk(bm ? atoi(bm) : 1, major >= 9, (size_t)optin, bk ? atoi(bk) : 220, bt ? atoi(bt) : 96);
        const char *bw = env_str("FM_CUDA_BULK_WARPS");
        cuk_set_bulk_warps(bw ? atoi(bw) : 16);
        const char *bc = env_str("FM_CUDA_BULK_TC");
        cuk_set_bulk_tc(bc ? atoi(bc) : 2);
        const char *bs = env_str("FM_CUDA_BULK_STAGES");
        cuk_set_bulk_stages(bs ? atoi(bs) : 0);
        const char *pf = env_str("FM_CUDA_PREFETCH");
        cuk_set_prefetch(pf && strcmp(pf, "0") != 0);
    }
    cu_sync_begin(); /* the stream, the cuBLAS handle and the pinned buffer */
    if (st == FM_BE_OK) st = cu_err(be, cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    if (st == FM_BE_OK) st = cu_blas_err(be, cublasCreate(&be->blas), "cublasCreate");
    if (st == FM_BE_OK) st = cu_blas_err(be, cublasSetStream(be->blas, be->stream), "cublasSetStream");
    /* cuBLAS gets a workspace of ours, so its calls can be captured in graphs; TF32 stays off. */
    be->blas_ws_bytes = 32u << 20;
    if (st == FM_BE_OK && !(be->blas_ws = cu_malloc(be, be->blas_ws_bytes, "the cuBLAS workspace")))
        st = FM_BE_ERR_OUT_OF_MEMORY;
    if (st == FM_BE_OK) st = cu_blas_err(be, cublasSetWorkspace(be->blas, be->blas_ws, be->blas_ws_bytes), "cublasSetWorkspace");
    if (st == FM_BE_OK) st = cu_blas_err(be, cublasSetMathMode(be->blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    /* decode-step inputs: tokens and state pointers for up to CU_MAX_GRAPH_SEQS sequences */
    const size_t step_bytes = CU_MAX_GRAPH_SEQS * (sizeof(int32_t) + sizeof(float *));
    if (st == FM_BE_OK) st = cu_err(be, cudaMallocHost(&be->step_pin, step_bytes), "cudaMallocHost");
    if (st == FM_BE_OK) st = cu_err(be, cudaEventCreateWithFlags(&be->step_ev, cudaEventDisableTiming), "cudaEventCreate");
    if (st == FM_BE_OK && !(be->step_tok_dev = cu_malloc(be, CU_MAX_GRAPH_SEQS * sizeof(int32_t), "step tokens")))
        st = FM_BE_ERR_OUT_OF_MEMORY;
    if (st == FM_BE_OK && !(be->step_bases_dev = cu_malloc(be, CU_MAX_GRAPH_SEQS * sizeof(float *), "step states")))
        st = FM_BE_ERR_OUT_OF_MEMORY;
    if (st == FM_BE_OK && !(be->cap_states_buf = calloc(CU_MAX_GRAPH_SEQS, sizeof(float *))))
        st = cu_fail(be, FM_BE_ERR_OUT_OF_MEMORY, "cuda backend: out of host memory");
    cu_sync_end();
    if (st != FM_BE_OK) {
        cu_destroy(be);
        return st;
    }
    *out = be;
    return FM_BE_OK;
}

static void cu_shutdown(void *vbe) {
    if (vbe) cu_destroy(vbe);
}

static void *cu_alloc_op(void *vbe, size_t bytes) {
    cu_backend *be = vbe;
    if (cu_enter(be)) return NULL;
    void *p = cu_malloc(be, bytes, "a buffer");
    cu_leave(be);
    return p;
}

static void cu_free_op(void *vbe, void *p) {
    cu_backend *be = vbe;
    if (!p || cu_enter(be)) return;
    cudaStreamSynchronize(be->stream); /* work in flight may still use it */
    cu_free(be, p);
    cu_leave(be);
}

static int cu_upload(void *vbe, void *dst, const void *src, size_t bytes) {
    cu_backend *be = vbe;
    int st = cu_enter(be);
    if (st) return st;
    if (bytes) {
        st = cu_err(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, be->stream), "upload");
        if (!st) st = cu_err(be, cudaStreamSynchronize(be->stream), "upload");
    }
    cu_leave(be);
    return st;
}

static int cu_download(void *vbe, void *dst, const void *src, size_t bytes) {
    cu_backend *be = vbe;
    int st = cu_enter(be);
    if (st) return st;
    if (bytes) {
        st = cu_err(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, be->stream), "download");
        if (!st) st = cu_err(be, cudaStreamSynchronize(be->stream), "download");
    }
    cu_leave(be);
    return st;
}

static int cu_copy(void *vbe, void *dst, const void *src, size_t bytes) {
    cu_backend *be = vbe;
    int st = cu_enter(be);
    if (st) return st;
    if (bytes) st = cu_err(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, be->stream), "copy");
    cu_leave(be);
    return st;
}

static int cu_zero(void *vbe, void *dst, size_t bytes) {
    cu_backend *be = vbe;
    int st = cu_enter(be);
    if (st) return st;
    if (bytes) st = cu_err(be, cudaMemsetAsync(dst, 0, bytes, be->stream), "zero");
    cu_leave(be);
    return st;
}

static int cu_sync(void *vbe) {
    cu_backend *be = vbe;
    int st = cu_enter(be);
    if (st) return st;
    st = cu_err(be, cudaStreamSynchronize(be->stream), "sync");
    cu_leave(be);
    return st;
}

static int cu_mem_info(void *vbe, size_t *used, size_t *peak, size_t *dev_free, size_t *dev_total) {
    cu_backend *be = vbe;
    int st = cu_enter(be);
    if (st) return st;
    size_t fr = 0, tot = 0;
    if (dev_free || dev_total) st = cu_err(be, cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
    if (used) *used = be->used;
    if (peak) *peak = be->peak;
    if (dev_free) *dev_free = fr;
    if (dev_total) *dev_total = tot;
    cu_leave(be);
    return st;
}

static const fm_backend_ops k_cuda_ops = {
    .abi_version = FM_BACKEND_ABI_VERSION,
    .struct_size = sizeof(fm_backend_ops),
    .name = "cuda",
    .flags = 0,
    .init = cu_init,
    .shutdown = cu_shutdown,
    .alloc = cu_alloc_op,
    .free = cu_free_op,
    .upload = cu_upload,
    .download = cu_download,
    .copy = cu_copy,
    .zero = cu_zero,
    .weight_create = cu_weight_create,
    .weight_free = cu_weight_free,
    .weight_bytes = cu_weight_bytes,
    .embed = cu_embed,
    .rmsnorm = cu_rmsnorm,
    .matmul = cu_matmul,
    .conv1d = cu_conv1d,
    .ssm = cu_ssm,
    .sync = cu_sync,
    .probe = cu_probe,
    .step_begin = cu_step_begin,
    .step_end = cu_step_end,
    .mem_info = cu_mem_info,
    .decode_layers = cu_decode_layers,
};

/* The module's one entry point (dlsym'ed by src/backend_registry.c). */
FM_CUDA_API const fm_backend_ops *fm_backend_cuda_ops(void) { return &k_cuda_ops; }
