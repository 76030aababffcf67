/* cuda_weights.c - weights onto the GPU: the host source (possibly unaligned, in a mapped file) is
   copied through two alternating pinned buffers, and converted on the device when the storage type
   differs (bf16/f16/f32 narrowing with round-to-nearest-even, Q8_0/Q4_0 quantization with exactly
   quant.h's arithmetic: cuk_convert). The staging buffers are released when the first op runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

#define STAGE_BYTES (64u << 20)

static size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

void cu_staging_release(cu_backend *be) {
    cu_sync_begin();
    for (int i = 0; i < 2; i++) {
        if (be->stage_ev[i]) {
            cudaEventSynchronize(be->stage_ev[i]);
            cudaEventDestroy(be->stage_ev[i]);
        }
        if (be->pin[i]) cudaFreeHost(be->pin[i]);
        cu_free(be, be->stage[i]);
        be->stage_ev[i] = NULL;
        be->pin[i] = be->stage[i] = NULL;
    }
    be->stage_bytes = 0;
    cu_sync_end();
}

static int staging(cu_backend *be, size_t need) {
    if (be->stage_bytes >= need) return FM_BE_OK;
    cu_staging_release(be);
    size_t bytes = need > STAGE_BYTES ? need : STAGE_BYTES;
    for (int i = 0; i < 2; i++) {
        cu_sync_begin();
        int st = cu_err(be, cudaMallocHost(&be->pin[i], bytes), "pinned staging buffer");
        cu_sync_end();
        if (!st) st = cu_err(be, cudaEventCreateWithFlags(&be->stage_ev[i], cudaEventDisableTiming), "cudaEventCreate");
        if (!st && !(be->stage[i] = cu_malloc(be, bytes, "weight staging"))) st = FM_BE_ERR_OUT_OF_MEMORY;
        if (st) {
            cu_staging_release(be);
            return st;
        }
    }
    be->stage_bytes = bytes;
    return FM_BE_OK;
}

static size_t elem_size(fm_dtype t) { return t == FM_DTYPE_F32 ? 4 : 2; }

int cu_weight_create(void *vbe, const fm_weight_desc *d, fm_weight **out) {
    cu_backend *be = vbe;
    if (d->rows <= 0 || d->cols <= 0)
        return cu_fail(be, FM_BE_ERR_INVALID_ARGUMENT, "cuda backend: tensor '%s' has an empty shape", d->name);
    const int quant = d->store_dtype == FM_DTYPE_Q8_0 || d->store_dtype == FM_DTYPE_Q4_0;
    if (quant && d->cols % FM_QBLOCK != 0)
        return cu_fail(be, FM_BE_ERR_INVALID_ARGUMENT, "cuda backend: tensor '%s' has %lld columns, not a multiple of %d",
                       d->name, (long long)d->cols, FM_QBLOCK);
    if (d->src_dtype != FM_DTYPE_F32 && d->src_dtype != FM_DTYPE_F16 && d->src_dtype != FM_DTYPE_BF16)
        return cu_fail(be, FM_BE_ERR_INVALID_ARGUMENT, "cuda backend: tensor '%s' has a source dtype it cannot read",
                       d->name);
    int st = cu_enter(be);
    if (st) return st;
    fm_weight *w = calloc(1, sizeof *w);
    if (!w) {
        cu_leave(be);
        return cu_fail(be, FM_BE_ERR_OUT_OF_MEMORY, "cuda backend: out of host memory for '%s'", d->name);
    }
    const size_t rows = (size_t)d->rows, cols = (size_t)d->cols;
    w->v.dtype = (int32_t)d->store_dtype;
    w->v.rows = d->rows;
    w->v.cols = d->cols;
    w->bytes = rows * fm_dtype_row_bytes(d->store_dtype, cols);
    size_t data_bytes, total;
    if (quant) {
        data_bytes = round_up(rows * (d->store_dtype == FM_DTYPE_Q8_0 ? cols : cols / 2), 256);
        total = data_bytes + rows * (cols / FM_QBLOCK) * sizeof(uint16_t);
    } else {
        data_bytes = total = rows * cols * elem_size(d->store_dtype);
    }
    char what[256];
    snprintf(what, sizeof what, "weight '%s'", d->name);
    w->alloc = cu_malloc(be, total, what);
    if (!w->alloc) {
        free(w);
        cu_leave(be);
        return FM_BE_ERR_OUT_OF_MEMORY;
    }
    w->v.data = w->alloc;
    w->v.scales = quant ? (const uint16_t *)((const char *)w->alloc + data_bytes) : NULL;

    const size_t src_row = cols * elem_size(d->src_dtype);
    const int direct = d->src_dtype == d->store_dtype; /* bytes as they are */
    st = staging(be, src_row);
    size_t rows_per = st ? 0 : be->stage_bytes / src_row;
    for (size_t r0 = 0; st == FM_BE_OK && r0 < rows; r0 += rows_per) {
        const size_t nr = rows - r0 < rows_per ? rows - r0 : rows_per;
        const int i = be->stage_i;
        be->stage_i ^= 1;
        st = cu_err(be, cudaEventSynchronize(be->stage_ev[i]), "weight upload");
        if (st) break;
        memcpy(be->pin[i], (const char *)d->data + r0 * src_row, nr * src_row);
        void *dst = direct ? (char *)w->alloc + r0 * src_row : be->stage[i];
        st = cu_err(be, cudaMemcpyAsync(dst, be->pin[i], nr * src_row, cudaMemcpyHostToDevice, be->stream),
                    "weight upload");
        if (!st && !direct)
            st = cu_err(be, cuk_convert(be->stream, be->stage[i], (int)d->src_dtype, w->v, (int64_t)r0, (int64_t)nr),
                        "weight conversion");
        if (!st) st = cu_err(be, cudaEventRecord(be->stage_ev[i], be->stream), "cudaEventRecord");
    }
    if (st) {
        cudaStreamSynchronize(be->stream);
        cu_free(be, w->alloc);
        free(w);
        cu_leave(be);
        return st;
    }
    *out = w;
    cu_leave(be);
    return FM_BE_OK;
}

void cu_weight_free(void *vbe, fm_weight *w) {
    cu_backend *be = vbe;
    if (!w) return;
    if (cu_enter(be) == FM_BE_OK) {
        cudaStreamSynchronize(be->stream);
        cu_free(be, w->alloc);
        cu_leave(be);
    }
    free(w);
}

size_t cu_weight_bytes(const fm_weight *w) { return w->bytes; }
