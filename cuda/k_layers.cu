/* k_layers.cu - every layer of a one-sequence decode step in one persistent kernel.
 *
 * At batch 1 a layer is six small dependent launches (rmsnorm, in_proj, conv, x_proj, SSM step,
 * out_proj); each boundary costs a drain, a launch and a ramp, several microseconds, which is why the
 * per-op step reached only ~56% of the read bandwidth (docs/PERFORMANCE.md). Here one cooperative
 * launch of one 256-thread block per SM (LK_MINB) runs all layers, with four grid-wide barriers per
 * layer (status: correct, but still slower than the per-op path, so opt-in; see PERFORMANCE.md):
 *   P1  each block normalises x into shared memory itself (no barrier), then in_proj; its epilogue
 *       does the conv step of the x half (state shift, bias, silu) and stores the z half;   barrier
 *   P2  x_proj on u;                                                                          barrier
 *   P3  the SSM step (as k_ssm.cu's decode kernel: dt/B/C norms per block, dt_proj, scan, D, gate);
 *                                                                                             barrier
 *   P4  out_proj + bias added into the residual stream x;                                    barrier
 * Every GEMV phase streams its weights with 128-bit loads, software-pipelined across a warp's rows
 * (the next batch in flight while one is multiplied), and the first batch of the next phase is issued
 * before each barrier, so the wait overlaps DRAM latency (what programmatic dependent launch does for
 * separate kernels). Rows go to blocks in units of (8 / KS) x RPW rows (each row's columns split KS ways over
 * the block's warps, reduced in shared memory in a fixed order: deterministic). Activations written
 * inside the kernel are read with L2-only loads (__ldcg): an SM's L1 may hold the previous layer's.
 * Conv and SSM states are read and written only by the thread that owns the channel.
 * Limits (cuk_layers_ok): d_conv <= 4, dt_rank <= 256, d_state <= 64, 16-byte granule alignment.
 */
#include "k_widen.cuh"

#define LK_THREADS 256
#define LK_WARPS (LK_THREADS / 32)
#define LK_MAXK 4       /* conv taps */
#define LK_G 4          /* lanes per channel in the SSM phase: 64 channels per block, one round on the 7B shape */
#define LK_CPB (LK_THREADS / LK_G)
#define LK_MAXJ 64      /* dt_proj elements per lane: dt_rank <= LK_G * LK_MAXJ */
#define LK_NJ 16        /* state elements per lane: d_state <= LK_G * LK_NJ */

/* Blocks per SM (the register budget: 1 = 255 registers per thread, 2 = 128, which spills); per
   type, rows per warp sharing each activation load (RPW) and granules per lane per batch (G = U x RPW,
   so G x 16 bytes of weights per lane in flight per batch, twice that with the next batch issued).
   Build-time knobs for A/B runs (-DLK_MINB=2 -DLK_GW=16 ...). */
#ifndef LK_MINB
#define LK_MINB 1
#endif
#ifndef LK_RPW_W /* 2-byte and 4-byte weights */
#define LK_RPW_W 2
#endif
#ifndef LK_GW
#define LK_GW 8
#endif
#ifndef LK_RPW_Q /* quantized weights */
#define LK_RPW_Q 2
#endif
#ifndef LK_GQ
#define LK_GQ 4
#endif
template <int WT> struct lk_u {
    enum {
        Q = WT == CU_Q8_0 || WT == CU_Q4_0,
        RPW = Q ? LK_RPW_Q : LK_RPW_W,
        U = (Q ? LK_GQ : LK_GW) / RPW
    };
};

__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* Grid-wide barrier (all blocks are resident: cooperative launch). *bar counts arrivals over the
   whole launch; target is this block's running count of arrivals to wait for. */
__device__ __forceinline__ void grid_sync(unsigned *bar, unsigned &target) {
    __syncthreads();
    target += gridDim.x;
    if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(bar, 1u);
        while (ld_acquire(bar) < target) {
        }
        __threadfence();
    }
    __syncthreads();
}

__device__ __forceinline__ double block_sum(double v, double *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); /* red may still be read from the previous use */
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    double t = 0;
    for (int i = 0; i < LK_WARPS; i++) t += red[i];
    return t;
}

/* ---- GEMV phases --------------------------------------------------------------------------------- */

/* How a matrix is cut: KS column slices per row (KS warps of a block share a row), RPW rows per warp,
   (8 / KS) x RPW rows per unit, units dealt to blocks round-robin. KS grows until there are two units
   per block, or to 8. */
template <int WT> struct lk_plan {
    int ks, ngran, slice, bpu, units, mine;
    __device__ __forceinline__ lk_plan(const cu_wview &W) {
        constexpr int E = wt_traits<WT>::E, U = lk_u<WT>::U, RPW = lk_u<WT>::RPW;
        ngran = (int)(W.cols / E);
        ks = 1;
        while (ks < 8 && (W.rows + (8 / ks) * RPW - 1) / ((8 / ks) * RPW) < 2 * (int64_t)gridDim.x &&
               ngran / (2 * ks) >= 32)
            ks *= 2;
        slice = (ngran + ks - 1) / ks;
        bpu = (slice + 32 * U - 1) / (32 * U);
        const int rpu = (8 / ks) * RPW;
        units = (int)((W.rows + rpu - 1) / rpu);
        mine = (int)blockIdx.x < units ? (units - 1 - (int)blockIdx.x) / (int)gridDim.x + 1 : 0;
    }
    /* the first of this warp's RPW rows in its unit-th unit */
    __device__ __forceinline__ int64_t row(int unit) const {
        return (((int64_t)blockIdx.x + (int64_t)unit * gridDim.x) * (8 / ks) + (threadIdx.x >> 5) / ks) *
               lk_u<WT>::RPW;
    }
    __device__ __forceinline__ int gbeg() const { return ((threadIdx.x >> 5) % ks) * slice; }
};

template <int WT> struct lk_regs {
    uint4 w[lk_u<WT>::U][lk_u<WT>::RPW];
    float sc[lk_u<WT>::U][lk_u<WT>::RPW];
};

template <int WT>
__device__ __forceinline__ void lk_load(const cu_wview &W, const lk_plan<WT> &pl, int it, lk_regs<WT> &b) {
    constexpr int U = lk_u<WT>::U, RPW = lk_u<WT>::RPW;
    const int unit = it / pl.bpu, batch = it - unit * pl.bpu;
    const int64_t r0 = pl.row(unit);
    const int gb = pl.gbeg(), ge = min(gb + pl.slice, pl.ngran);
    const int g0 = gb + batch * 32 * U + (threadIdx.x & 31);
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        const int64_t row = r0 + r < W.rows ? r0 + r : W.rows - 1;
        const unsigned char *wr = (const unsigned char *)W.data + (size_t)row * row_bytes<WT>(W.cols);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int g = g0 + 32 * u;
            if (g < ge) {
                b.w[u][r] = ld_stream(wr + (size_t)g * 16);
                if constexpr (wt_traits<WT>::GPB > 0)
                    b.sc[u][r] = f16_bits_to_f32(__ldg(W.scales + row * (W.cols / CU_QBLOCK) + g / wt_traits<WT>::GPB));
                else b.sc[u][r] = 1.0f;
            } else {
                b.w[u][r] = make_uint4(0, 0, 0, 0);
                b.sc[u][r] = 0.0f;
            }
        }
    }
}

/* The first batch of a phase, issued before the barrier that precedes it. */
template <int WT> __device__ __forceinline__ void lk_first(const cu_wview &W, lk_regs<WT> &b) {
    lk_plan<WT> pl(W);
    if (pl.mine) lk_load<WT>(W, pl, 0, b);
}

/* y[row] for this block's units: the dot of each row with xs (shared memory, cols floats as xs_at
   places them). Lane r of the warp that finishes row r0 + r calls epi.pre(row) at the unit's start
   and epi.put(row, v) at its end. a holds batch 0 (lk_first). */
template <int WT, class Epi>
__device__ __forceinline__ void lk_gemv(const cu_wview &W, const float *xs, lk_regs<WT> &a, float *part, Epi &epi) {
    constexpr int E = wt_traits<WT>::E, U = lk_u<WT>::U, RPW = lk_u<WT>::RPW;
    const lk_plan<WT> pl(W);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, kidx = warp % pl.ks;
    const int gb = pl.gbeg(), ge = min(gb + pl.slice, pl.ngran);
    const int total = pl.mine * pl.bpu;
    const bool owner = lane < RPW && kidx == 0; /* lane r finishes row r0 + r */
    float acc[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++) acc[r] = 0.0f;
    for (int it = 0; it < total; it++) {
        const int unit = it / pl.bpu, batch = it - unit * pl.bpu;
        const int64_t mine_row = pl.row(unit) + lane;
        if (batch == 0 && owner && mine_row < W.rows) epi.pre(mine_row);
        lk_regs<WT> nb;
        const bool more = it + 1 < total;
        if (more) lk_load<WT>(W, pl, it + 1, nb);
        const int g0 = gb + batch * 32 * U + lane;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int g = g0 + 32 * u;
            if (g < ge) {
                float xv[E];
#pragma unroll
                for (int j = 0; j < E / 4; j++) {
                    const float4 v = *reinterpret_cast<const float4 *>(xs + ((size_t)j * pl.ngran + g) * 4);
                    xv[4 * j] = v.x;
                    xv[4 * j + 1] = v.y;
                    xv[4 * j + 2] = v.z;
                    xv[4 * j + 3] = v.w;
                }
#pragma unroll
                for (int r = 0; r < RPW; r++) {
                    float w[E];
                    widen<WT>(a.w[u][r], w);
                    float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
                    for (int e = 0; e < E; e += 2) {
                        s0 = fmaf(w[e], xv[e], s0);
                        s1 = fmaf(w[e + 1], xv[e + 1], s1);
                    }
                    if constexpr (wt_traits<WT>::GPB > 0) acc[r] = fmaf(s0 + s1, a.sc[u][r], acc[r]);
                    else acc[r] += s0 + s1;
                }
            }
        }
        if (batch == pl.bpu - 1) {
#pragma unroll
            for (int r = 0; r < RPW; r++)
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
            float v = 0.0f; /* this lane's row, lane < RPW */
#pragma unroll
            for (int r = 0; r < RPW; r++)
                if (lane == r) v = acc[r];
            if (pl.ks > 1) {
                if (lane < RPW) part[warp * RPW + lane] = v;
                __syncthreads();
                if (owner) {
                    v = 0.0f;
                    for (int k = 0; k < pl.ks; k++) v += part[(warp + k) * RPW + lane];
                }
                __syncthreads();
            }
            if (owner && mine_row < W.rows) epi.put(mine_row, v);
#pragma unroll
            for (int r = 0; r < RPW; r++) acc[r] = 0.0f;
        }
        if (more) a = nb;
    }
}

/* in_proj's epilogue: rows < di are the conv input (the conv step of channel row, as k_conv.cu's
   decode kernel), rows >= di the gate z, stored. */
struct epi_in {
    const float *bias, *cw, *cb;
    float *cstate, *z, *u;
    int di, K;
    float wr[LK_MAXK], sv[LK_MAXK - 1], b;
    __device__ __forceinline__ void pre(int64_t row) {
        if (row >= di) return;
        const float *wc = cw + (size_t)row * K;
        const float *st = cstate + (size_t)row * (K - 1);
#pragma unroll
        for (int k = 0; k < LK_MAXK; k++) wr[k] = k < K ? wc[k] : 0.0f;
#pragma unroll
        for (int k = 0; k < LK_MAXK - 1; k++) sv[k] = k < K - 1 ? st[k] : 0.0f;
        b = cb ? cb[row] : 0.0f;
    }
    __device__ __forceinline__ void put(int64_t row, float v) {
        if (bias) v += bias[row];
        if (row >= di) {
            z[row - di] = v;
            return;
        }
        const int km1 = K - 1;
        float acc = b;
#pragma unroll
        for (int k = 0; k < LK_MAXK - 1; k++)
            if (k < km1) acc += wr[k] * sv[k];
        acc += wr[km1] * v;
        u[row] = silu_f(acc);
        float *st = cstate + (size_t)row * km1;
#pragma unroll
        for (int j = 0; j < LK_MAXK - 2; j++)
            if (j + 1 < km1) st[j] = sv[j + 1];
        if (km1 > 0) st[km1 - 1] = v;
    }
};

struct epi_store {
    float *y;
    __device__ __forceinline__ void pre(int64_t) {}
    __device__ __forceinline__ void put(int64_t row, float v) { y[row] = v; }
};

/* out_proj: y = x + (v + bias), the residual add (the per-op path's accumulate = 1). */
struct epi_residual {
    float *x;
    const float *bias;
    __device__ __forceinline__ void pre(int64_t) {}
    __device__ __forceinline__ void put(int64_t row, float v) {
        if (bias) v += bias[row];
        x[row] = __ldcg(x + row) + v;
    }
};

/* Activations in shared memory are stored "granule-major by quarter": float4 q of granule g (its
   elements 4q .. 4q + 3) at float4 index q * ngran + g, so the 32 lanes of a warp, which multiply 32
   consecutive granules, read 32 consecutive float4s (no bank conflicts; in natural order the lanes
   would be E floats apart). */
template <int E> __device__ __forceinline__ int xs_at(int i, int ngran) {
    const int g = i / E, e = i - g * E;
    return ((e >> 2) * ngran + g) * 4 + (e & 3);
}

/* Stage n floats (n % 4 == 0) written earlier in this launch into shared memory as xs_at places them,
   times scale * w[i] when w (the rmsnorm's last step): L2 loads, 8 float4s per thread in flight. */
#define LK_STAGE_Q 8
/* This thread's float4s q0, q0 + LK_THREADS, ... of src (zeros past nq), all loads in flight at once. */
__device__ __forceinline__ void load_quads(const float *src, int nq, int q0, float4 (&v)[LK_STAGE_Q]) {
#pragma unroll
    for (int k = 0; k < LK_STAGE_Q; k++) {
        const int q = q0 + k * LK_THREADS;
        v[k] = q < nq ? __ldcg(reinterpret_cast<const float4 *>(src) + q) : make_float4(0, 0, 0, 0);
    }
}
template <int E>
__device__ __forceinline__ void stage(float *xs, const float *src, int n, float scale = 1.0f, const float *w = nullptr) {
    const int nq = n / 4, ngran = n / E;
    for (int q0 = threadIdx.x; q0 < nq; q0 += LK_THREADS * LK_STAGE_Q) {
        float4 v[LK_STAGE_Q];
        load_quads(src, nq, q0, v);
#pragma unroll
        for (int k = 0; k < LK_STAGE_Q; k++) {
            const int q = q0 + k * LK_THREADS;
            if (q >= nq) break;
            float4 o = v[k];
            if (w) { /* as k_rmsnorm: (x * scale) * w */
                const float4 g = __ldg(reinterpret_cast<const float4 *>(w) + q);
                o = make_float4(o.x * scale * g.x, o.y * scale * g.y, o.z * scale * g.z, o.w * scale * g.w);
            } else if (scale != 1.0f) {
                o = make_float4(o.x * scale, o.y * scale, o.z * scale, o.w * scale);
            }
            *reinterpret_cast<float4 *>(xs + xs_at<E>(4 * q, ngran)) = o;
        }
    }
    __syncthreads();
}

/* The sum of squares of n floats (n % 4 == 0) written earlier in this launch, in double, block-wide. */
__device__ __forceinline__ double sum_squares(const float *src, int n, double *red) {
    const int nq = n / 4;
    double ss = 0;
    for (int q0 = threadIdx.x; q0 < nq; q0 += LK_THREADS * LK_STAGE_Q) {
        float4 v[LK_STAGE_Q];
        load_quads(src, nq, q0, v);
#pragma unroll
        for (int k = 0; k < LK_STAGE_Q; k++)
            ss += (double)v[k].x * v[k].x + (double)v[k].y * v[k].y + (double)v[k].z * v[k].z + (double)v[k].w * v[k].w;
    }
    return block_sum(ss, red);
}

/* ---- SSM phase ------------------------------------------------------------------------------------ */

struct lk_ssm_w {
    float wdt[LK_MAXJ], Ar[LK_NJ], dtb, Dc;
};

__device__ __forceinline__ void ssm_weights(const cu_layer &L, int R, int N, int di, int c, lk_ssm_w &w) {
    const int l = threadIdx.x % LK_G;
    const int cc = c < di ? c : di - 1;
#pragma unroll
    for (int i = 0; i < LK_MAXJ; i++) {
        const int j = l + LK_G * i;
        w.wdt[i] = j < R ? w_elem(L.dt_proj, cc, j) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < LK_NJ; i++) {
        const int k = l + LK_G * i;
        w.Ar[i] = k < N ? L.A[(size_t)cc * N + k] : 0.0f;
    }
    w.dtb = L.dt_b[cc];
    w.Dc = L.D[cc];
}

/* xdbl (written by P2) into sh, dt / B / C each rms-normalised (FalconMamba) or copied. */
__device__ void ssm_norm_row(const float *row, int R, int N, int norm, float eps, float *sh, double *red) {
    const int Lr = R + 2 * N;
    double a = 0, b = 0, c = 0;
    for (int j = threadIdx.x; j < Lr; j += LK_THREADS) {
        const float v = __ldcg(row + j);
        sh[j] = v;
        const double v2 = (double)v * v;
        if (j < R) a += v2;
        else if (j < R + N) b += v2;
        else c += v2;
    }
    if (!norm) {
        __syncthreads();
        return;
    }
    a = block_sum(a, red);
    b = block_sum(b, red);
    c = block_sum(c, red);
    const float sa = (float)(1.0 / sqrt(a / (double)R + (double)eps));
    const float sb = (float)(1.0 / sqrt(b / (double)N + (double)eps));
    const float scc = (float)(1.0 / sqrt(c / (double)N + (double)eps));
    for (int j = threadIdx.x; j < Lr; j += LK_THREADS) sh[j] *= j < R ? sa : j < R + N ? sb : scc;
    __syncthreads();
}

template <int G> __device__ __forceinline__ float lk_lanes_sum(float v) {
#pragma unroll
    for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, G);
    return v;
}

/* One channel's step (G lanes): the arithmetic of k_ssm.cu's k_ssm_decode. */
__device__ __forceinline__ void ssm_channel(const cu_layers_params &p, const lk_ssm_w &w, const float *sh,
                                            float *sstate, int c) {
    const int l = threadIdx.x % LK_G, R = p.R, N = p.N;
    const bool live = c < p.di;
    const int cc = live ? c : p.di - 1;
    float *st = sstate + (size_t)cc * N;
    float sv[LK_NJ];
#pragma unroll
    for (int i = 0; i < LK_NJ; i++) {
        const int k = l + LK_G * i;
        sv[i] = k < N ? st[k] : 0.0f;
    }
    const float u = __ldcg(p.u + cc), zv = __ldcg(p.xz + p.di + cc);
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < LK_MAXJ; i++) {
        const int j = l + LK_G * i;
        if (j < R) dot += w.wdt[i] * sh[j];
    }
    dot = lk_lanes_sum<LK_G>(dot);
    const float dl = softplus_f(dot + w.dtb);
    const float *B = sh + R, *C = sh + R + N;
    float yk = 0.0f;
#pragma unroll
    for (int i = 0; i < LK_NJ; i++) {
        const int k = l + LK_G * i;
        if (k < N) {
            const float v = expf(dl * w.Ar[i]) * sv[i] + dl * B[k] * u;
            if (live) st[k] = v;
            yk += v * C[k];
        }
    }
    yk = lk_lanes_sum<LK_G>(yk);
    if (l == 0 && live) p.y[cc] = (yk + w.Dc * u) * silu_f(zv);
}

/* ---- the kernel ----------------------------------------------------------------------------------- */

/* FM_CUDA_LAYERS_PROFILE: block 0 adds the nanoseconds since its previous mark to p.prof[i] (i < 0:
   only starts the clock). */
__device__ __forceinline__ void prof_mark(const cu_layers_params &p, int i, unsigned long long &t) {
    if (!p.prof || blockIdx.x != 0 || threadIdx.x != 0) return;
    unsigned long long now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    if (i >= 0) p.prof[i] += now - t;
    t = now;
}

template <int WT>
__global__ void __launch_bounds__(LK_THREADS, LK_MINB) k_layers(cu_layers_params p) {
    constexpr int E = wt_traits<WT>::E;
    extern __shared__ float xs[]; /* max(d, di) activations, then R + 2N normalised xdbl */
    __shared__ double red[LK_WARPS];
    __shared__ float part[LK_WARPS * lk_u<WT>::RPW];
    float *sh = xs + (p.d > p.di ? p.d : p.di);
    float *slot = p.bases ? p.bases[0] : p.state;
    const int km1 = p.K - 1;
    unsigned target = 0;
    unsigned long long t = 0;
    prof_mark(p, -1, t);
    lk_regs<WT> wa;
    lk_first<WT>(p.layers[0].in_proj, wa);
    for (int li = 0; li < p.n_layer; li++) {
        const cu_layer &L = p.layers[li];
        /* P1: rmsnorm (as k_rmsnorm: double sum of squares, then x * scale * w) and in_proj + conv */
        const double ss = sum_squares(p.x, p.d, red);
        const float scale = (float)(1.0 / sqrt(ss / (double)p.d + (double)p.eps));
        stage<E>(xs, p.x, p.d, scale, L.norm);
        prof_mark(p, 0, t);
        epi_in ein;
        ein.bias = L.in_b;
        ein.cw = L.conv_w;
        ein.cb = L.conv_b;
        ein.cstate = slot + (size_t)li * p.di * km1;
        ein.z = p.xz + p.di;
        ein.u = p.u;
        ein.di = p.di;
        ein.K = p.K;
        lk_gemv<WT>(L.in_proj, xs, wa, part, ein);
        lk_first<WT>(L.x_proj, wa);
        prof_mark(p, 1, t);
        grid_sync(p.bar, target);
        prof_mark(p, 2, t);

        /* P2: x_proj */
        stage<E>(xs, p.u, p.di);
        epi_store ex = {p.xdbl};
        lk_gemv<WT>(L.x_proj, xs, wa, part, ex);
        const int c0 = (int)blockIdx.x * LK_CPB + (int)threadIdx.x / LK_G;
        lk_ssm_w sw;
        if ((int)blockIdx.x * LK_CPB < p.di) ssm_weights(L, p.R, p.N, p.di, c0, sw);
        prof_mark(p, 3, t);
        grid_sync(p.bar, target);
        prof_mark(p, 4, t);

        /* P3: the SSM step, LK_CPB channels per unit */
        float *sstate = slot + (size_t)p.n_layer * p.di * km1 + (size_t)li * p.di * p.N;
        if ((int)blockIdx.x * LK_CPB < p.di) {
            ssm_norm_row(p.xdbl, p.R, p.N, p.norm_dt_b_c, p.mixer_eps, sh, red);
            for (int c = c0; c - (int)threadIdx.x / LK_G < p.di; c += (int)gridDim.x * LK_CPB) {
                if (c != c0) ssm_weights(L, p.R, p.N, p.di, c, sw);
                ssm_channel(p, sw, sh, sstate, c);
            }
        }
        lk_first<WT>(L.out_proj, wa);
        prof_mark(p, 5, t);
        grid_sync(p.bar, target);
        prof_mark(p, 6, t);

        /* P4: out_proj + residual */
        stage<E>(xs, p.y, p.di);
        epi_residual er = {p.x, L.out_b};
        lk_gemv<WT>(L.out_proj, xs, wa, part, er);
        if (li + 1 < p.n_layer) lk_first<WT>(p.layers[li + 1].in_proj, wa);
        prof_mark(p, 7, t);
        if (li + 1 < p.n_layer) grid_sync(p.bar, target);
        prof_mark(p, 8, t);
    }
}

extern "C" int cuk_layers_ok(const cu_layers_params *p, int wt) {
    const int E = wt == CU_F32 ? 4 : wt == CU_F16 || wt == CU_BF16 ? 8 : wt == CU_Q8_0 ? 16 : 32;
    if (wt < CU_F32 || wt > CU_Q4_0 || p->n_layer < 1 || p->K < 1 || p->K > LK_MAXK || p->R < 1 ||
        p->R > LK_G * LK_MAXJ || p->N < 1 || p->N > LK_G * LK_NJ || p->d % E || p->di % E)
        return 0;
    return 1;
}

template <int WT> static cudaError_t launch(cudaStream_t s, const cu_layers_params *p, int sm_count) {
    const size_t shm = ((size_t)(p->d > p->di ? p->d : p->di) + (size_t)(p->R + 2 * p->N)) * sizeof(float);
    if (shm > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(k_layers<WT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm);
        if (e != cudaSuccess) return e;
    }
    int per_sm = 0;
    cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k_layers<WT>, LK_THREADS, shm);
    if (e != cudaSuccess) return e;
    if (per_sm < 1) return cudaErrorInvalidConfiguration;
    if (per_sm > LK_MINB) per_sm = LK_MINB;
    e = cudaMemsetAsync(p->bar, 0, sizeof(unsigned), s);
    if (e != cudaSuccess) return e;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(per_sm * sm_count));
    cfg.blockDim = dim3(LK_THREADS);
    cfg.dynamicSmemBytes = shm;
    cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeCooperative;
    at[0].val.cooperative = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    e = cudaLaunchKernelEx(&cfg, k_layers<WT>, *p);
    return e != cudaSuccess ? e : cudaGetLastError();
}

extern "C" cudaError_t cuk_layers(cudaStream_t s, const cu_layers_params *p, int wt, int sm_count) {
    if (!cuk_layers_ok(p, wt)) return cudaErrorInvalidValue;
    switch (wt) {
    case CU_F32: return launch<CU_F32>(s, p, sm_count);
    case CU_F16: return launch<CU_F16>(s, p, sm_count);
    case CU_BF16: return launch<CU_BF16>(s, p, sm_count);
    case CU_Q8_0: return launch<CU_Q8_0>(s, p, sm_count);
    default: return launch<CU_Q4_0>(s, p, sm_count);
    }
}
