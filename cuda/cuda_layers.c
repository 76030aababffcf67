/* cuda_layers.c - the decode_layers entry: a one-sequence decode step's layers as one persistent
   kernel (k_layers.cu) instead of six launches per layer. Taken when the step has one sequence, every
   in/x/out projection has one storage type and cuk_layers_ok accepts the shapes; otherwise declined
   (the core issues the ops). Off unless FM_CUDA_LAYERS=1 (it is still slower than the per-op path on
   the H200, docs/PERFORMANCE.md); =2 also makes declining an error (tests). The per-layer weight
   table lives on the device and is rebuilt (outside graph captures) whenever the weights it would
   hold differ. Without FM_CUDA_LAYERS the entry goes to cu_fused_layers (cuda_fused.c). */
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

static const float *fdata(const fm_weight *w) { return w ? (const float *)w->v.data : NULL; }

/* The table for a's layers into be->layer_tab (device), if not there already; 0 = declined. */
static int layer_table(cu_backend *be, const fm_layers_args *a, int *wt, int *st) {
    const size_t n = (size_t)a->n_layer, bytes = n * sizeof(cu_layer);
    cu_layer *t = calloc(n, sizeof *t);
    if (!t) {
        *st = cu_fail(be, FM_BE_ERR_OUT_OF_MEMORY, "cuda backend: out of host memory");
        return 0;
    }
    *wt = a->layers[0].in_proj->v.dtype;
    for (size_t l = 0; l < n; l++) {
        const fm_layer_weights *w = &a->layers[l];
        if (w->in_proj->v.dtype != *wt || w->x_proj->v.dtype != *wt || w->out_proj->v.dtype != *wt) {
            free(t);
            return 0;
        }
        cu_layer c = {w->in_proj->v, w->x_proj->v, w->out_proj->v, w->dt_proj->v,
                      fdata(w->norm), fdata(w->in_proj_b), fdata(w->conv_w), fdata(w->conv_b),
                      fdata(w->dt_b), fdata(w->A), fdata(w->D), fdata(w->out_proj_b)};
        t[l] = c;
    }
    if (be->layer_tab && be->layer_tab_n == n && !memcmp(be->layer_tab_host, t, bytes)) {
        free(t);
        return 1;
    }
    if (be->capturing) { /* no allocation or synchronous copy inside a capture: the ops instead */
        free(t);
        return 0;
    }
    /* graphs captured with the old table read it: they go with it */
    if (be->layer_tab) cu_graphs_destroy(be);
    if (be->layer_tab) cu_free(be, be->layer_tab);
    free(be->layer_tab_host);
    be->layer_tab = NULL;
    be->layer_tab_host = NULL;
    be->layer_tab_n = 0;
    if (!be->layer_bar && !(be->layer_bar = cu_malloc(be, sizeof(unsigned), "the layers kernel's barrier"))) {
        free(t);
        *st = FM_BE_ERR_OUT_OF_MEMORY;
        return 0;
    }
    if (!(be->layer_tab = cu_malloc(be, bytes, "the layer table"))) {
        free(t);
        *st = FM_BE_ERR_OUT_OF_MEMORY;
        return 0;
    }
    /* stream-ordered before the kernel; t stays alive as layer_tab_host */
    *st = cu_err(be, cudaMemcpyAsync(be->layer_tab, t, bytes, cudaMemcpyHostToDevice, be->stream), "layer table upload");
    if (*st) {
        free(t);
        return 0;
    }
    be->layer_tab_host = t;
    be->layer_tab_n = n;
    return 1;
}

/* Declining is not an error, except with FM_CUDA_LAYERS=2 (tests: the kernel must run). */
static int declined(cu_backend *be, const char *why) {
    if (be->layers_on != 2) return FM_BE_OK;
    return cu_fail(be, FM_BE_ERR_BACKEND, "cuda backend: FM_CUDA_LAYERS=2, but the layers kernel declined this step (%s)",
                   why);
}

int cu_decode_layers(void *vbe, const fm_layers_args *a, int *done) {
    cu_backend *be = vbe;
    *done = 0;
    int st = cu_enter(be);
    if (st) return st;
    if (!be->layers_on) {
        st = cu_fused_layers(be, a, done);
        cu_leave(be);
        return st;
    }
    int wt = 0;
    const char *why = !be->layers_on ? "off" : a->n_seqs != 1 ? "more than one sequence" : NULL;
    if (!why && !layer_table(be, a, &wt, &st) && !st) why = "mixed weight types, or a graph capture before the first step";
    if (st || why) {
        cu_leave(be);
        return st ? st : declined(be, why);
    }
    cu_layers_params p = {be->layer_tab, a->n_layer, a->d_model, a->d_inner, a->d_state, a->dt_rank, a->d_conv,
                          a->norm_dt_b_c, a->norm_eps, a->mixer_eps, a->x, a->xz, a->u, a->xdbl, a->y,
                          /* in a capture the slot comes from the step's uploaded pointers (cuda_graph.c) */
                          be->capturing ? NULL : a->states[0], be->capturing ? be->step_bases_dev : NULL,
                          be->layer_bar, NULL};
    if (!cuk_layers_ok(&p, wt)) {
        cu_leave(be);
        return declined(be, "shapes it does not take");
    }
    const int prof = be->layer_profile && !be->capturing;
    if (prof && !be->layer_prof_dev &&
        !(be->layer_prof_dev = cu_malloc(be, CU_LAYERS_PHASES * sizeof(unsigned long long), "layer profile")))
        st = FM_BE_ERR_OUT_OF_MEMORY;
    if (!st && prof) {
        p.prof = be->layer_prof_dev;
        st = cu_err(be, cudaMemsetAsync(p.prof, 0, CU_LAYERS_PHASES * sizeof(unsigned long long), be->stream),
                    "layer profile");
    }
    if (!st) st = cu_err(be, cuk_layers(be->stream, &p, wt, be->sm_count), "decode layers");
    if (!st && prof) {
        unsigned long long t[CU_LAYERS_PHASES];
        st = cu_err(be, cudaMemcpyAsync(t, p.prof, sizeof t, cudaMemcpyDeviceToHost, be->stream), "layer profile");
        if (!st) st = cu_err(be, cudaStreamSynchronize(be->stream), "layer profile");
        for (int i = 0; !st && i < CU_LAYERS_PHASES; i++) be->layer_prof[i] += t[i];
        be->layer_prof_steps += !st;
        be->layer_prof_nl = a->n_layer;
    }
    if (!st) *done = 1;
    cu_leave(be);
    return st;
}
