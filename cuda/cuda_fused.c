/* cuda_fused.c - a one-sequence decode step's layers as four launches per layer instead of the core's
   six: the layer's rmsnorm and its conv1d step ride in the in_proj GEMV (cuk_gemv_bulk_fused: every
   block normalises the residual row itself while its first weight tiles stream in, and the rows that
   feed the conv finish their channel's conv step in the epilogue), then x_proj, the SSM step and
   out_proj + residual as the ops would issue them. Where the bulk-copy GEMV does not take a layer's
   in_proj (older GPUs, shapes, FM_CUDA_BULK=0) that layer runs the separate kernels, so the result is
   the same either way. FM_CUDA_FUSED=0: declined, the core issues the ops. */
#include "cuda_backend.h"

static const float *fdata(const fm_weight *w) { return w ? (const float *)w->v.data : NULL; }

/* in_proj with the norm before and the conv after it: fused where the bulk-copy GEMV takes it. h
   (d_model floats) is scratch for the separate kernels. */
static int in_proj_conv(cu_backend *be, const fm_layers_args *a, const fm_layer_weights *w, const fm_segment *sg,
                        float *h) {
    cu_segtab t;
    int st = cu_segtab_fill(be, sg, 0, 1, &t);
    if (st) return st;
    cu_bulk_fuse f = {.norm = 1,
                      .eps = a->norm_eps,
                      .norm_w = fdata(w->norm),
                      .conv_di = a->d_inner,
                      .conv_k = a->d_conv,
                      .conv_w = fdata(w->conv_w),
                      .conv_b = fdata(w->conv_b),
                      .u = a->u,
                      .conv_state = t.conv[0],
                      .bases = t.bases ? t.bases + t.first : NULL,
                      .conv_off = t.conv_off};
    int taken = 0;
    st = cu_err(be, cuk_gemv_bulk_fused(be->stream, w->in_proj->v, fdata(w->in_proj_b), a->x, a->xz, be->sm_count, &f,
                                        &taken),
                "in_proj (with the norm and conv)");
    if (st || taken) return st;
    st = cu_err(be, cuk_rmsnorm(be->stream, a->x, fdata(w->norm), 1, a->d_model, a->norm_eps, h), "rmsnorm");
    if (!st) st = cu_matmul_locked(be, w->in_proj, fdata(w->in_proj_b), h, 1, a->xz, 0);
    const size_t di = (size_t)a->d_inner;
    fm_conv_args ca = {sg, 1, a->xz, 2 * di, a->u, w->conv_w, w->conv_b, a->d_inner, a->d_conv};
    if (!st) st = cu_conv1d_locked(be, &ca);
    return st;
}

int cu_fused_layers(cu_backend *be, const fm_layers_args *a, int *done) {
    *done = 0;
    /* y (d_inner floats) is free until the SSM step writes it: the separate rmsnorm's output */
    if (!be->fused_on || a->n_seqs != 1 || a->d_inner < a->d_model || a->d_conv < 1 || a->d_conv > 16) return FM_BE_OK;
    const size_t di = (size_t)a->d_inner, conv_floats = di * (size_t)(a->d_conv - 1);
    float *slot = a->states[0];
    int st = FM_BE_OK;
    for (int l = 0; st == FM_BE_OK && l < a->n_layer; l++) {
        const fm_layer_weights *w = &a->layers[l];
        /* the slot's layout: every layer's conv state, then every layer's ssm state (model.c) */
        fm_segment sg = {0, 1, slot + (size_t)l * conv_floats,
                         slot + (size_t)a->n_layer * conv_floats + (size_t)l * di * (size_t)a->d_state};
        st = in_proj_conv(be, a, w, &sg, a->y);
        if (!st) st = cu_matmul_locked(be, w->x_proj, NULL, a->u, 1, a->xdbl, 0);
        fm_ssm_args sa = {.segs = &sg,
                          .n_segs = 1,
                          .xdbl = a->xdbl,
                          .u = a->u,
                          .z = a->xz + di,
                          .ld_z = 2 * di,
                          .y = a->y,
                          .dt_w = w->dt_proj,
                          .dt_b = w->dt_b,
                          .A = w->A,
                          .D = w->D,
                          .d_inner = a->d_inner,
                          .d_state = a->d_state,
                          .dt_rank = a->dt_rank,
                          .norm_dt_b_c = a->norm_dt_b_c,
                          .norm_eps = a->mixer_eps};
        if (!st) st = cu_ssm_locked(be, &sa);
        /* the residual add folded into the output projection, as model.c does */
        if (!st) st = cu_matmul_locked(be, w->out_proj, fdata(w->out_proj_b), a->y, 1, a->x, 1);
    }
    if (!st) *done = 1;
    return st;
}
