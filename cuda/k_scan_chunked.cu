/* k_scan_chunked.cu - the selective scan of prefill and decode batches, parallel over time chunks
 * (k_ssm.cu's k_ssm_scan is sequential over a segment's rows).
 *
 * One thread per channel holds all d_state elements of its state in registers, so each row costs one
 * softplus, one silu and no shuffles; the parallelism a single long prompt lacks (d_inner threads)
 * comes from splitting each segment's rows into chunks of SCAN_LC that run at once:
 *   1. chunk ends: every chunk but the last runs from a zero state, keeping its end state e_c and
 *      S_c = sum of its deltas (the chunk's decay is then exp(A S_c), one exp per state element);
 *   2. carries: per (channel, state element), sequential over the segment's chunks, h_0 = the slot's
 *      state, h_{c+1} = exp(A S_c) h_c + e_c (cheap: a few dozen chunks);
 *   3. outputs: every chunk reruns from its true initial state h_c, writing y, and the last chunk
 *      writes the final state back to the slot.
 * A segment of one chunk skips 1 and 2. The result equals the sequential scan up to rounding (the
 * chunk's decay is exp of a sum instead of a product of exps). Scratch: h_c and S_c per chunk.
 */
#include "k_common.cuh"

#define SCAN_TPB 128 /* channels per block */
#define SCAN_LC CU_SCAN_LC
/* exp(d A) as exp2(d A log2 e): A is scaled once per thread, and exp2f is one MUFU.EX2 where expf
   adds a range reduction (the scan's cost is these exponentials, d_state per row and channel). */
#define LOG2E 1.4426950408889634f

/* chunks of segment i, and the chunks of the segments before it (the scratch index base) */
__device__ __forceinline__ int seg_chunks(const cu_segtab &t, int i) { return (t.nrows[i] + SCAN_LC - 1) / SCAN_LC; }
__device__ __forceinline__ int chunk_base(const cu_segtab &t, int s) {
    int b = 0;
    for (int i = 0; i < s; i++) b += seg_chunks(t, i);
    return b;
}

/* Stage rows [r0, r0 + m) of bc's B (and C when BOTH) into sh, row-major [m][N or 2N]. */
template <bool BOTH>
__device__ __forceinline__ void stage_bc(float *sh, const float *bc, int r0, int m, int N) {
    const int w = BOTH ? 2 * N : N;
    __syncthreads();
    for (int i = threadIdx.x; i < m * w; i += blockDim.x) {
        const int row = i / w, k = i % w;
        sh[i] = bc[(size_t)(r0 + row) * 2 * N + k];
    }
    __syncthreads();
}

/* Pass 1: end states of every chunk but the last of each segment, from zero. */
template <int MAXN>
__global__ void __launch_bounds__(SCAN_TPB) k_scan_ends(cu_segtab t, cu_ssm_params p, const float *delta,
                                                         const float *bc, float *hs, float *sdl) {
    extern __shared__ float sB[]; /* SCAN_LC x N */
    const int s = blockIdx.z, c = blockIdx.y;
    const int nch = seg_chunks(t, s);
    if (c >= nch - 1) return; /* whole block: uniform */
    const int N = p.N, di = p.di;
    const int ch = blockIdx.x * SCAN_TPB + threadIdx.x;
    const int cc = ch < di ? ch : di - 1;
    const int r0 = t.row0[s] + c * SCAN_LC; /* a full chunk: not the last */
    float A[MAXN], h[MAXN];
#pragma unroll
    for (int k = 0; k < MAXN; k++) {
        A[k] = k < N ? p.A[(size_t)cc * N + k] * LOG2E : 0.0f;
        h[k] = 0.0f;
    }
    stage_bc<false>(sB, bc, r0, SCAN_LC, N);
    float sum = 0.0f;
#pragma unroll 4
    for (int i = 0; i < SCAN_LC; i++) {
        const size_t r = (size_t)(r0 + i);
        const float dl = softplus_f(delta[r * di + cc]);
        const float du = dl * p.u[r * di + cc];
        sum += dl;
        const float *B = sB + i * N;
#pragma unroll
        for (int k = 0; k < MAXN; k++)
            if (k < N) h[k] = exp2f(dl * A[k]) * h[k] + B[k] * du;
    }
    if (ch >= di) return;
    const int gc = chunk_base(t, s) + c;
    /* chunk c's end goes where chunk c + 1's initial state will be (pass 2 turns it into that) */
#pragma unroll
    for (int k = 0; k < MAXN; k++)
        if (k < N) hs[((size_t)(gc + 1) * N + k) * di + ch] = h[k];
    sdl[(size_t)gc * di + ch] = sum;
}

/* Pass 2: initial state of every chunk, per (channel, state element), for segments of >= 2 chunks. */
__global__ void k_scan_carry(cu_segtab t, cu_ssm_params p, float *hs, const float *sdl) {
    const int s = blockIdx.y, N = p.N, di = p.di;
    const int nch = seg_chunks(t, s);
    if (nch < 2) return;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; /* = k * di + ch */
    if (idx >= (int64_t)N * di) return;
    const int k = (int)(idx / di), ch = (int)(idx % di);
    const float A = p.A[(size_t)ch * N + k] * LOG2E;
    const int gb = chunk_base(t, s);
    float h = seg_ssm(t, s)[(size_t)ch * N + k];
    hs[((size_t)gb * N + k) * di + ch] = h;
    for (int c = 0; c + 1 < nch; c++) {
        float *e = hs + ((size_t)(gb + c + 1) * N + k) * di + ch;
        h = exp2f(A * sdl[(size_t)(gb + c) * di + ch]) * h + *e;
        *e = h;
    }
}

/* Pass 3: every chunk from its initial state: outputs, and the last chunk's state into the slot. */
template <int MAXN>
__global__ void __launch_bounds__(SCAN_TPB) k_scan_out(cu_segtab t, cu_ssm_params p, const float *delta,
                                                        const float *bc, const float *hs) {
    extern __shared__ float sBC[]; /* SCAN_LC x 2N */
    const int s = blockIdx.z, c = blockIdx.y;
    const int nch = seg_chunks(t, s);
    if (c >= nch) return;
    const int N = p.N, di = p.di;
    const int ch = blockIdx.x * SCAN_TPB + threadIdx.x;
    const int cc = ch < di ? ch : di - 1;
    const int r0 = t.row0[s] + c * SCAN_LC;
    const int m = t.nrows[s] - c * SCAN_LC < SCAN_LC ? t.nrows[s] - c * SCAN_LC : SCAN_LC;
    float *slot = seg_ssm(t, s) + (size_t)cc * N;
    const float *h0 = nch > 1 ? hs + (size_t)(chunk_base(t, s) + c) * N * di + cc : nullptr;
    /* A channel's slot state is d_state consecutive floats: whole 16-byte pieces when it can (one
       float4 per 4 elements instead of 4 scalar accesses, whose 64-byte stride across the warp made
       them most of the cost of a batch of single-row sequences) */
    const bool vec = N == MAXN && ((uintptr_t)slot & 15) == 0;
    float A[MAXN], h[MAXN];
#pragma unroll
    for (int k = 0; k < MAXN; k++) A[k] = k < N ? p.A[(size_t)cc * N + k] * LOG2E : 0.0f;
    if (h0) {
#pragma unroll
        for (int k = 0; k < MAXN; k++) h[k] = k < N ? h0[(size_t)k * di] : 0.0f;
    } else if (vec) {
#pragma unroll
        for (int k = 0; k < MAXN; k += 4) {
            const float4 v = *reinterpret_cast<const float4 *>(slot + k);
            h[k] = v.x;
            h[k + 1] = v.y;
            h[k + 2] = v.z;
            h[k + 3] = v.w;
        }
    } else {
#pragma unroll
        for (int k = 0; k < MAXN; k++) h[k] = k < N ? slot[k] : 0.0f;
    }
    const float Dc = p.D[cc];
    stage_bc<true>(sBC, bc, r0, m, N);
#pragma unroll 2
    for (int i = 0; i < m; i++) {
        const size_t r = (size_t)(r0 + i);
        const float dl = softplus_f(delta[r * di + cc]);
        const float u = p.u[r * di + cc];
        const float zv = p.z[r * p.ld_z + cc];
        const float du = dl * u;
        const float *B = sBC + i * 2 * N, *C = B + N;
        float y0 = 0.0f, y1 = 0.0f; /* two chains */
#pragma unroll
        for (int k = 0; k < MAXN; k += 2) {
            if (k < N) {
                h[k] = exp2f(dl * A[k]) * h[k] + B[k] * du;
                y0 = fmaf(h[k], C[k], y0);
            }
            if (k + 1 < N) {
                h[k + 1] = exp2f(dl * A[k + 1]) * h[k + 1] + B[k + 1] * du;
                y1 = fmaf(h[k + 1], C[k + 1], y1);
            }
        }
        if (ch < di) p.y[r * di + ch] = (y0 + y1 + Dc * u) * silu_f(zv);
    }
    if (ch < di && c == nch - 1) {
        if (vec) {
#pragma unroll
            for (int k = 0; k < MAXN; k += 4)
                *reinterpret_cast<float4 *>(slot + k) = make_float4(h[k], h[k + 1], h[k + 2], h[k + 3]);
        } else {
#pragma unroll
            for (int k = 0; k < MAXN; k++)
                if (k < N) slot[k] = h[k];
        }
    }
}

/* Decode batches (every segment one row) with d_state 16: four threads per channel, each holding four
   state elements, so the state, A, B and C move as float4s that are contiguous across the warp (one
   thread per channel reads 64 bytes with a 64-byte stride across the warp: four times the load
   instructions and, for A, 16 scalar loads 64 bytes apart). The four partial C contractions meet by
   two shuffles. k_scan_out's results up to rounding (its two chains become four partial sums). */
#define ROW1_N 16
#define ROW1_Q (ROW1_N / 4) /* threads per channel */
__global__ void __launch_bounds__(SCAN_TPB) k_scan_row1(cu_segtab t, cu_ssm_params p, const float *delta,
                                                         const float *bc) {
    const int s = blockIdx.y, di = p.di;
    const int g = blockIdx.x * SCAN_TPB + threadIdx.x, q = g % ROW1_Q;
    const int ch = g / ROW1_Q;
    const int cc = ch < di ? ch : di - 1; /* threads past the end compute a copy: whole groups shuffle */
    const size_t r = (size_t)t.row0[s];
    float4 *slot = reinterpret_cast<float4 *>(seg_ssm(t, s) + (size_t)cc * ROW1_N) + q;
    const float4 A = reinterpret_cast<const float4 *>(p.A + (size_t)cc * ROW1_N)[q];
    const float4 B = reinterpret_cast<const float4 *>(bc + r * 2 * ROW1_N)[q];
    const float4 C = reinterpret_cast<const float4 *>(bc + r * 2 * ROW1_N + ROW1_N)[q];
    const float dl = softplus_f(delta[r * di + cc]), u = p.u[r * di + cc], du = dl * u;
    float4 h = *slot;
    h.x = exp2f(dl * A.x * LOG2E) * h.x + B.x * du;
    h.y = exp2f(dl * A.y * LOG2E) * h.y + B.y * du;
    h.z = exp2f(dl * A.z * LOG2E) * h.z + B.z * du;
    h.w = exp2f(dl * A.w * LOG2E) * h.w + B.w * du;
    float y = fmaf(h.w, C.w, fmaf(h.z, C.z, fmaf(h.y, C.y, h.x * C.x)));
#pragma unroll
    for (int o = ROW1_Q / 2; o > 0; o /= 2) y += __shfl_xor_sync(0xffffffffu, y, o);
    if (ch >= di) return;
    *slot = h;
    if (q == 0) p.y[r * di + ch] = (y + p.D[ch] * u) * silu_f(p.z[r * p.ld_z + ch]);
}

/* Whether k_scan_row1 takes this launch: d_state 16, one row per segment, and every float4 it moves
   16-byte aligned (the slots' state, A, bc rows: 64-byte strides from their bases). */
static bool row1_ok(const cu_segtab *t, const cu_ssm_params *p, const float *bc) {
    if (p->N != ROW1_N || ((uintptr_t)p->A & 15) || ((uintptr_t)bc & 15)) return false;
    if (t->bases && (t->ssm_off & 3)) return false; /* in a capture: float offsets from 256-byte aligned slots */
    for (int i = 0; i < t->n; i++)
        if (t->nrows[i] != 1 || (!t->bases && ((uintptr_t)t->ssm[i] & 15))) return false;
    return true;
}

template <int MAXN>
static cudaError_t launch(cudaStream_t s, const cu_segtab *t, const cu_ssm_params *p, const float *delta,
                          const float *bc, float *scratch) {
    int maxch = 0, multi = 0;
    size_t chunks = 0;
    for (int i = 0; i < t->n; i++) {
        const int c = (t->nrows[i] + SCAN_LC - 1) / SCAN_LC;
        maxch = c > maxch ? c : maxch;
        multi |= c > 1;
        chunks += (size_t)c;
    }
    if (maxch == 0) return cudaSuccess;
    const unsigned xb = (unsigned)((p->di + SCAN_TPB - 1) / SCAN_TPB);
    float *hs = scratch; /* read only by segments of several chunks; may be NULL without them */
    if (multi) {
        float *sdl = scratch + chunks * (size_t)p->N * p->di;
        k_scan_ends<MAXN><<<dim3(xb, maxch - 1, t->n), SCAN_TPB, (size_t)SCAN_LC * p->N * sizeof(float), s>>>(
            *t, *p, delta, bc, hs, sdl);
        const int64_t cells = (int64_t)p->N * p->di;
        k_scan_carry<<<dim3((unsigned)((cells + 255) / 256), t->n), 256, 0, s>>>(*t, *p, hs, sdl);
    }
    k_scan_out<MAXN><<<dim3(xb, maxch, t->n), SCAN_TPB, (size_t)SCAN_LC * 2 * p->N * sizeof(float), s>>>(
        *t, *p, delta, bc, hs);
    return cudaGetLastError();
}

extern "C" cudaError_t cuk_scan_chunked(cudaStream_t s, const cu_segtab *t, const cu_ssm_params *p,
                                        const float *delta, const float *bc, float *scratch) {
    if (t->n <= 0) return cudaSuccess;
    if (row1_ok(t, p, bc)) {
        const unsigned blocks = (unsigned)(((size_t)p->di * ROW1_Q + SCAN_TPB - 1) / SCAN_TPB);
        k_scan_row1<<<dim3(blocks, t->n), SCAN_TPB, 0, s>>>(*t, *p, delta, bc);
        return cudaGetLastError();
    }
    if (p->N <= 16) return launch<16>(s, t, p, delta, bc, scratch);
    if (p->N <= 64) return launch<64>(s, t, p, delta, bc, scratch);
    return cudaErrorInvalidValue;
}
