/* model.h - FalconMamba weights on a backend and the forward graph over a batch of rows. */
#ifndef FM_MODEL_H
#define FM_MODEL_H

#include "backend.h"
#include "checkpoint.h"
#include "config.h"

typedef struct fm_layer {
    fm_weight *norm;                 /* [d_model] */
    fm_weight *in_proj, *in_proj_b;  /* [2*d_inner][d_model], bias or NULL */
    fm_weight *conv_w, *conv_b;      /* [d_inner][d_conv], bias or NULL */
    fm_weight *x_proj;               /* [dt_rank + 2*d_state][d_inner] */
    fm_weight *dt_proj, *dt_b;       /* [d_inner][dt_rank], [d_inner] */
    fm_weight *A, *D;                /* -exp(A_log) [d_inner][d_state], [d_inner] */
    fm_weight *out_proj, *out_proj_b;/* [d_model][d_inner], bias or NULL */
} fm_layer;

typedef struct fm_model {
    fm_config cfg;
    const fm_backend_ops *ops;
    void *be;
    fm_weight *embed;   /* [n_vocab][d_model] */
    fm_weight *norm_f;  /* [d_model] */
    fm_weight *lm_head; /* == embed when tied */
    fm_layer *layers;
    uint64_t fingerprint; /* hash of the config and of every tensor's name, shape and sampled bytes */
    uint64_t n_params;
    uint64_t weight_bytes;
    size_t state_floats;  /* floats of recurrent state per sequence */
    fm_checkpoint *mapped; /* kept open while weights may point into it (host-memory backends) */
} fm_model;

/* Hand every tensor the config requires from the checkpoint to the backend, validating names,
   dtypes and shapes. weight_type applies to the matrices (embeddings, projections, head; the
   quantized types to the projections and an untied head whose inner dimension allows it). The model
   takes ownership of ck: it closes it at once, or at fm_model_free when weights point into it. */
typedef struct fm_load_progress {
    int (*fn)(float fraction, void *user); /* nonzero return aborts the load */
    void *user;
} fm_load_progress;

fm_status fm_model_load(fm_checkpoint *ck, const fm_backend_ops *ops, void *be, fm_weight_type weight_type,
                        const fm_load_progress *progress, fm_model *m);
void fm_model_free(fm_model *m);

/* Scratch activations for up to cap_rows rows (device memory), grown on demand. */
typedef struct fm_workspace {
    size_t cap_rows;
    float *x, *h, *xz, *u, *xdbl, *y, *logits;
} fm_workspace;

fm_status fm_workspace_reserve(const fm_model *m, fm_workspace *ws, size_t rows);
void fm_workspace_free(const fm_model *m, fm_workspace *ws);

/* One sequence in a forward batch: its state slot and how many consecutive rows it owns. */
typedef struct fm_seq {
    float *state; /* device pointer to state_floats floats */
    size_t n_rows;
} fm_seq;

/* Run the model over n_rows tokens (host memory, validated) split into sequences. With all_logits
   the result has n_rows rows of logits; otherwise one row per sequence (its last token). *logits
   receives the device pointer (inside ws). */
fm_status fm_model_forward(const fm_model *m, fm_workspace *ws, const int32_t *tokens, size_t n_rows,
                           const fm_seq *seqs, size_t n_seqs, int all_logits, const float **logits);

#endif
