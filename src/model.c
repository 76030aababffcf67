/* model.c - load the weights a config requires and run the layer graph of DESIGN.md section 1. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "file_util.h"
#include "half.h"
#include "hash.h"

/* ---- loading ---------------------------------------------------------------------------------- */

typedef struct loader {
    const fm_checkpoint *ck;
    fm_model *m;
    fm_dtype matrix_store; /* storage type of the matrices, unless as_stored */
    int as_stored;
    int quantized;         /* matrix_store is Q8_0/Q4_0: only for projections and an untied head */
    int persistent;        /* the checkpoint stays mapped (host-memory backend) */
} loader;

static int to_fm_dtype(fm_st_dtype t, fm_dtype *out) {
    switch (t) {
    case FM_ST_F32: *out = FM_DTYPE_F32; return 1;
    case FM_ST_F16: *out = FM_DTYPE_F16; return 1;
    case FM_ST_BF16: *out = FM_DTYPE_BF16; return 1;
    default: return 0;
    }
}

static void fingerprint_tensor(fm_model *m, const char *name, const fm_st_tensor *t) {
    uint64_t h = m->fingerprint;
    h = fm_fnv1a(h, name, strlen(name));
    h = fm_fnv1a(h, &t->dtype, sizeof t->dtype);
    h = fm_fnv1a(h, t->shape, sizeof t->shape[0] * (size_t)t->n_dims);
    size_t k = t->n_bytes < 256 ? (size_t)t->n_bytes : 256;
    h = fm_fnv1a(h, t->data, k);
    h = fm_fnv1a(h, t->data + t->n_bytes - k, k);
    m->fingerprint = h;
}

/* Find `name`, check dtype and shape (dims[0..nd-1]). */
static fm_status find_tensor(loader *L, const char *name, int nd, const int64_t *dims, const fm_st_tensor **out,
                             fm_dtype *dt) {
    const char *file = NULL;
    const fm_st_tensor *t = fm_checkpoint_find(L->ck, name, &file);
    if (!t) return fm_error(FM_ERR_FORMAT, "%s: required tensor '%s' is missing", L->ck->listing, name);
    if (!to_fm_dtype(t->dtype, dt))
        return fm_error(FM_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (supported: F32, F16, BF16)", file, name,
                        fm_st_dtype_name(t->dtype));
    int ok = t->n_dims == nd;
    for (int i = 0; ok && i < nd; i++) ok = t->shape[i] == dims[i];
    if (!ok) {
        char want[96] = "", got[96] = "";
        for (int i = 0; i < nd; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "", (long long)dims[i]);
        for (int i = 0; i < t->n_dims; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s' has shape [%s] but the config implies [%s]", file, name, got,
                        want);
    }
    fingerprint_tensor(L->m, name, t);
    L->m->n_params += t->n_elems;
    *out = t;
    return FM_OK;
}

/* persistent: data points into the checkpoint (not a temporary). */
static fm_status create(loader *L, const char *name, fm_dtype src, const void *data, int persistent, int64_t rows,
                        int64_t cols, fm_dtype store, fm_weight **out) {
    fm_weight_desc d = {name, src, data, rows, cols, store, persistent && L->persistent};
    fm_model *m = L->m;
    fm_status st = (fm_status)m->ops->weight_create(m->be, &d, out);
    if (st) return st;
    /* A converted (or device-resident) tensor no longer needs its mapped source pages. */
    if (persistent && !(d.persistent && store == src))
        fm_release_mapped(data, (size_t)rows * fm_dtype_row_bytes(src, (size_t)cols));
    m->weight_bytes += m->ops->weight_bytes(*out);
    return FM_OK;
}

/* A matrix [rows][cols], kept in the requested storage type. A quantized type applies only where
   quantizable is set and cols is a whole number of blocks (dt_proj of the 130m shape has 48); the
   others stay as stored. */
static fm_status load_matrix_q(loader *L, const char *name, int64_t rows, int64_t cols, int quantizable,
                               fm_weight **out) {
    const fm_st_tensor *t;
    fm_dtype dt;
    int64_t dims[2] = {rows, cols};
    fm_status st = find_tensor(L, name, 2, dims, &t, &dt);
    if (st) return st;
    fm_dtype store = L->as_stored ? dt : L->matrix_store;
    if (L->quantized && (!quantizable || cols % FM_QBLOCK != 0)) store = dt;
    return create(L, name, dt, t->data, 1, rows, cols, store, out);
}

static fm_status load_matrix(loader *L, const char *name, int64_t rows, int64_t cols, fm_weight **out) {
    return load_matrix_q(L, name, rows, cols, 1, out);
}

/* A small parameter kept in fp32, given with its exact checkpoint shape. */
static fm_status load_f32(loader *L, const char *name, int nd, const int64_t *dims, int64_t rows, int64_t cols,
                          fm_weight **out) {
    const fm_st_tensor *t;
    fm_dtype dt;
    fm_status st = find_tensor(L, name, nd, dims, &t, &dt);
    if (st) return st;
    return create(L, name, dt, t->data, 1, rows, cols, FM_DTYPE_F32, out);
}

static fm_status load_vector(loader *L, const char *name, int64_t n, fm_weight **out) {
    return load_f32(L, name, 1, &n, 1, n, out);
}

/* A = -exp(A_log), computed once at load. */
static fm_status load_A(loader *L, const char *name, int64_t di, int64_t ds, fm_weight **out) {
    const fm_st_tensor *t;
    fm_dtype dt;
    int64_t dims[2] = {di, ds};
    fm_status st = find_tensor(L, name, 2, dims, &t, &dt);
    if (st) return st;
    size_t n = (size_t)(di * ds);
    float *a = malloc(n * sizeof *a);
    if (!a) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory converting '%s'", name);
    for (size_t i = 0; i < n; i++) a[i] = -expf(fm_dtype_load_f32(t->data, dt, i));
    st = create(L, name, FM_DTYPE_F32, a, 0, di, ds, FM_DTYPE_F32, out);
    free(a);
    return st;
}

static fm_status load_layer(loader *L, int i, fm_layer *ly) {
    const fm_config *c = &L->m->cfg;
    char n[160];
    fm_status st;
    int64_t d = c->d_model, di = c->d_inner, ds = c->d_state, k = c->d_conv, r = c->dt_rank;
#define NAME(suffix) (snprintf(n, sizeof n, "backbone.layers.%d.%s", i, suffix), n)
    if ((st = load_vector(L, NAME("norm.weight"), d, &ly->norm))) return st;
    if ((st = load_matrix(L, NAME("mixer.in_proj.weight"), 2 * di, d, &ly->in_proj))) return st;
    if (c->use_bias && (st = load_vector(L, NAME("mixer.in_proj.bias"), 2 * di, &ly->in_proj_b))) return st;
    int64_t conv_dims[3] = {di, 1, k};
    if ((st = load_f32(L, NAME("mixer.conv1d.weight"), 3, conv_dims, di, k, &ly->conv_w))) return st;
    if (c->use_conv_bias && (st = load_vector(L, NAME("mixer.conv1d.bias"), di, &ly->conv_b))) return st;
    if ((st = load_matrix(L, NAME("mixer.x_proj.weight"), r + 2 * ds, di, &ly->x_proj))) return st;
    if ((st = load_matrix(L, NAME("mixer.dt_proj.weight"), di, r, &ly->dt_proj))) return st;
    if ((st = load_vector(L, NAME("mixer.dt_proj.bias"), di, &ly->dt_b))) return st;
    if ((st = load_A(L, NAME("mixer.A_log"), di, ds, &ly->A))) return st;
    if ((st = load_vector(L, NAME("mixer.D"), di, &ly->D))) return st;
    if ((st = load_matrix(L, NAME("mixer.out_proj.weight"), d, di, &ly->out_proj))) return st;
    if (c->use_bias && (st = load_vector(L, NAME("mixer.out_proj.bias"), d, &ly->out_proj_b))) return st;
#undef NAME
    return FM_OK;
}

static void free_w(fm_model *m, fm_weight *w) {
    if (w) m->ops->weight_free(m->be, w);
}

void fm_model_free(fm_model *m) {
    if (!m || !m->ops) return;
    if (m->layers) {
        for (int i = 0; i < m->cfg.n_layer; i++) {
            fm_layer *l = &m->layers[i];
            fm_weight *ws[] = {l->norm, l->in_proj, l->in_proj_b, l->conv_w, l->conv_b, l->x_proj,
                               l->dt_proj, l->dt_b, l->A, l->D, l->out_proj, l->out_proj_b};
            for (size_t j = 0; j < sizeof ws / sizeof ws[0]; j++) free_w(m, ws[j]);
        }
        free(m->layers);
    }
    if (m->lm_head != m->embed) free_w(m, m->lm_head);
    free_w(m, m->embed);
    free_w(m, m->norm_f);
    fm_checkpoint_close(m->mapped); /* after the weights that may point into it */
    memset(m, 0, sizeof *m);
}

static fm_status report(const fm_load_progress *p, float f) {
    if (p && p->fn && p->fn(f, p->user)) return fm_error(FM_ERR_CANCELLED, "fm_context_open: cancelled by the progress callback");
    return FM_OK;
}

fm_status fm_model_load(fm_checkpoint *ck, const fm_backend_ops *ops, void *be, fm_weight_type wt,
                        const fm_load_progress *progress, fm_model *m) {
    memset(m, 0, sizeof *m);
    m->cfg = ck->cfg;
    m->ops = ops;
    m->be = be;
    loader L = {ck, m, FM_DTYPE_F32, 0, 0, (ops->flags & FM_BE_FLAG_HOST_MEMORY) != 0};
    switch (wt) {
    case FM_WEIGHTS_AUTO: L.as_stored = 1; break;
    case FM_WEIGHTS_F32: L.matrix_store = FM_DTYPE_F32; break;
    case FM_WEIGHTS_BF16: L.matrix_store = FM_DTYPE_BF16; break;
    case FM_WEIGHTS_F16: L.matrix_store = FM_DTYPE_F16; break;
    case FM_WEIGHTS_Q8_0: L.matrix_store = FM_DTYPE_Q8_0; L.quantized = 1; break;
    case FM_WEIGHTS_Q4_0: L.matrix_store = FM_DTYPE_Q4_0; L.quantized = 1; break;
    default:
        fm_checkpoint_close(ck);
        return fm_error(FM_ERR_INVALID_ARGUMENT, "weight_type %d is not a valid fm_weight_type", (int)wt);
    }
    if (L.persistent) m->mapped = ck;
    const fm_config *c = &m->cfg;
    m->fingerprint = fm_fnv1a(FM_FNV_OFFSET, c, sizeof *c);
    m->state_floats = (size_t)c->n_layer * (size_t)c->d_inner * (size_t)(c->d_conv - 1 + c->d_state);
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    fm_status st = m->layers ? FM_OK : fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == FM_OK) st = report(progress, 0.0f);
    /* The embedding stays in high precision (also when it doubles as a tied head). */
    if (st == FM_OK)
        st = load_matrix_q(&L, "backbone.embeddings.weight", c->n_vocab, c->d_model, 0, &m->embed);
    for (int i = 0; st == FM_OK && i < c->n_layer; i++) {
        st = load_layer(&L, i, &m->layers[i]);
        if (st == FM_OK) st = report(progress, (float)(i + 1) / (float)(c->n_layer + 1));
    }
    if (st == FM_OK) st = load_vector(&L, "backbone.norm_f.weight", c->d_model, &m->norm_f);
    if (st == FM_OK) {
        if (c->tie_embeddings) m->lm_head = m->embed;
        else st = load_matrix(&L, "lm_head.weight", c->n_vocab, c->d_model, &m->lm_head);
    }
    if (st == FM_OK) st = report(progress, 1.0f);
    if (!L.persistent) fm_checkpoint_close(ck); /* the weights now live in the backend */
    if (st) fm_model_free(m);
    return st;
}

/* ---- workspace -------------------------------------------------------------------------------- */

void fm_workspace_free(const fm_model *m, fm_workspace *ws) {
    float **bufs[] = {&ws->x, &ws->h, &ws->xz, &ws->u, &ws->xdbl, &ws->y, &ws->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (*bufs[i]) m->ops->free(m->be, *bufs[i]);
        *bufs[i] = NULL;
    }
    ws->cap_rows = 0;
}

fm_status fm_workspace_reserve(const fm_model *m, fm_workspace *ws, size_t rows) {
    if (rows <= ws->cap_rows) return FM_OK;
    const fm_config *c = &m->cfg;
    size_t widths[] = {(size_t)c->d_model, (size_t)c->d_model, 2 * (size_t)c->d_inner, (size_t)c->d_inner,
                       (size_t)(c->dt_rank + 2 * c->d_state), (size_t)c->d_inner, (size_t)c->n_vocab};
    fm_workspace grown = {0};
    float **bufs[] = {&grown.x, &grown.h, &grown.xz, &grown.u, &grown.xdbl, &grown.y, &grown.logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (rows > SIZE_MAX / sizeof(float) / widths[i]) {
            fm_workspace_free(m, &grown);
            return fm_error(FM_ERR_OUT_OF_MEMORY, "workspace for %zu rows is too large", rows);
        }
        *bufs[i] = m->ops->alloc(m->be, rows * widths[i] * sizeof(float));
        if (!*bufs[i]) {
            fm_workspace_free(m, &grown);
            return FM_ERR_OUT_OF_MEMORY; /* the backend has set the message */
        }
    }
    grown.cap_rows = rows;
    fm_workspace_free(m, ws);
    *ws = grown;
    return FM_OK;
}

/* ---- forward ---------------------------------------------------------------------------------- */

#define TRY(call)                                                                                                     \
    do {                                                                                                              \
        int st_ = (call);                                                                                             \
        if (st_) {                                                                                                    \
            status = (fm_status)st_;                                                                                  \
            goto out;                                                                                                 \
        }                                                                                                             \
    } while (0)

/* A decode step's layers through the backend's decode_layers; *done = 0 when it declined. */
static int decode_layers(const fm_model *m, fm_workspace *ws, size_t n_seqs, float *const *states, int *done) {
    const fm_config *c = &m->cfg;
    fm_layer_weights *lw = malloc((size_t)c->n_layer * sizeof *lw);
    if (!lw) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    for (int l = 0; l < c->n_layer; l++) {
        const fm_layer *ly = &m->layers[l];
        fm_layer_weights w = {ly->norm, ly->in_proj, ly->in_proj_b, ly->conv_w, ly->conv_b, ly->x_proj,
                              ly->dt_proj, ly->dt_b, ly->A, ly->D, ly->out_proj, ly->out_proj_b};
        lw[l] = w;
    }
    fm_layers_args a = {lw,         c->n_layer, c->d_model, c->d_inner, c->d_state,
                        c->dt_rank, c->d_conv,  c->arch == FM_ARCH_FALCON_MAMBA, c->norm_eps,
                        c->mixer_eps, n_seqs,   states,     ws->x,      ws->xz,
                        ws->u,      ws->xdbl,   ws->y};
    int st = m->ops->decode_layers(m->be, &a, done);
    free(lw);
    return st;
}

fm_status fm_model_forward(const fm_model *m, fm_workspace *ws, const int32_t *tokens, size_t n_rows,
                           const fm_seq *seqs, size_t n_seqs, int all_logits, const float **logits) {
    const fm_config *c = &m->cfg;
    const fm_backend_ops *o = m->ops;
    void *be = m->be;
    if (n_rows > ws->cap_rows) return fm_error(FM_ERR_INTERNAL, "forward: workspace holds fewer rows than asked");
    fm_segment *segs = malloc(n_seqs * sizeof *segs);
    if (!segs) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    const size_t d = (size_t)c->d_model, di = (size_t)c->d_inner, km1 = (size_t)(c->d_conv - 1);
    const size_t conv_floats = di * km1, ssm_floats = di * (size_t)c->d_state;
    fm_status status = FM_OK;
    float **states = NULL;
    int stepping = 0; /* step_begin succeeded: step_end is owed */

    /* A decode step (every sequence one row) may be captured / replayed by the backend as a whole. */
    int decode_step = n_rows == n_seqs && FM_BACKEND_HAS(o, step_begin) && FM_BACKEND_HAS(o, step_end);
    for (size_t i = 0; decode_step && i < n_seqs; i++) decode_step = seqs[i].n_rows == 1;
    if (decode_step) {
        states = malloc(n_seqs * sizeof *states);
        if (!states) {
            free(segs);
            return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
        }
        for (size_t i = 0; i < n_seqs; i++) states[i] = seqs[i].state;
        fm_step_desc sd = {n_seqs, tokens, states,
                           {(uint64_t)n_seqs, (uint64_t)all_logits, (uint64_t)(uintptr_t)ws->x,
                            (uint64_t)(uintptr_t)ws->h, (uint64_t)(uintptr_t)ws->xz, (uint64_t)(uintptr_t)ws->u,
                            (uint64_t)(uintptr_t)ws->xdbl, (uint64_t)(uintptr_t)ws->y,
                            (uint64_t)(uintptr_t)ws->logits},
                           9};
        int replayed = 0;
        TRY(o->step_begin(be, &sd, &replayed));
        if (replayed) goto out; /* the whole step is enqueued; logits land in ws->logits */
        stepping = 1;
    }

    TRY(o->embed(be, m->embed, tokens, n_rows, ws->x));
    int layers_done = 0;
    if (decode_step && FM_BACKEND_HAS(o, decode_layers)) TRY(decode_layers(m, ws, n_seqs, states, &layers_done));
    for (int l = 0; l < c->n_layer && !layers_done; l++) {
        const fm_layer *ly = &m->layers[l];
        size_t row = 0;
        for (size_t i = 0; i < n_seqs; i++) {
            segs[i].row0 = (int32_t)row;
            segs[i].n_rows = (int32_t)seqs[i].n_rows;
            segs[i].conv_state = seqs[i].state + (size_t)l * conv_floats;
            segs[i].ssm_state = seqs[i].state + (size_t)c->n_layer * conv_floats + (size_t)l * ssm_floats;
            row += seqs[i].n_rows;
        }
        TRY(o->rmsnorm(be, ws->x, ly->norm, n_rows, d, c->norm_eps, ws->h));
        TRY(o->matmul(be, ly->in_proj, ly->in_proj_b, ws->h, n_rows, ws->xz, 0));
        fm_conv_args ca = {segs, n_seqs, ws->xz, 2 * di, ws->u, ly->conv_w, ly->conv_b, c->d_inner, c->d_conv};
        TRY(o->conv1d(be, &ca));
        TRY(o->matmul(be, ly->x_proj, NULL, ws->u, n_rows, ws->xdbl, 0));
        fm_ssm_args sa = {segs,       n_seqs,    ws->xdbl,   ws->u,      ws->xz + di, 2 * di,
                          ws->y,      ly->dt_proj, ly->dt_b, ly->A,      ly->D,       c->d_inner,
                          c->d_state, c->dt_rank, c->arch == FM_ARCH_FALCON_MAMBA, c->mixer_eps};
        TRY(o->ssm(be, &sa));
        /* The residual add is folded into the output projection (accumulate = 1). */
        TRY(o->matmul(be, ly->out_proj, ly->out_proj_b, ws->y, n_rows, ws->x, 1));
    }
    size_t out_rows = n_rows;
    const float *final_in = ws->x;
    float *normed = ws->h;
    if (!all_logits) {
        /* Only each sequence's last row goes through the head: gather those rows into ws->h. */
        size_t row = 0;
        for (size_t i = 0; i < n_seqs; i++) {
            row += seqs[i].n_rows;
            TRY(o->copy(be, ws->h + i * d, ws->x + (row - 1) * d, d * sizeof(float)));
        }
        out_rows = n_seqs;
        final_in = ws->h;
        normed = ws->x;
    }
    TRY(o->rmsnorm(be, final_in, m->norm_f, out_rows, d, c->norm_eps, normed));
    TRY(o->matmul(be, m->lm_head, NULL, normed, out_rows, ws->logits, 0));
out:
    if (stepping) {
        int st_end = o->step_end(be, (int)status);
        if (status == FM_OK) status = (fm_status)st_end;
    }
    free(segs);
    free(states);
    if (status == FM_OK) *logits = ws->logits;
    return status;
}
