/* cuda_graph.c - decode steps captured in CUDA graphs and replayed.
 *
 * fm_model_forward brackets a decode step (every sequence one row) with step_begin / step_end. The
 * first step with a given key (sequence count, workspace buffers, flags) runs eagerly; the second is
 * captured while it runs its ops (then launched); later ones replay the graph. A graph does not
 * depend on the sessions' state slots: before each launch the step's tokens and slot pointers are
 * copied (one pinned-memory upload) into device arrays the captured kernels read. At most
 * CU_MAX_GRAPHS graphs are kept (least recently used goes). FM_CUDA_GRAPHS=0 turns this off. */
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

void cu_graphs_destroy(cu_backend *be) {
    for (int i = 0; i < CU_MAX_GRAPHS; i++) {
        if (be->graphs[i].exec) cudaGraphExecDestroy(be->graphs[i].exec);
        memset(&be->graphs[i], 0, sizeof be->graphs[i]);
    }
}

static cu_graph *lookup(cu_backend *be, const fm_step_desc *d) {
    cu_graph *free_slot = NULL, *oldest = NULL;
    for (int i = 0; i < CU_MAX_GRAPHS; i++) {
        cu_graph *g = &be->graphs[i];
        if (g->n_key == d->n_key && g->n_key && !memcmp(g->key, d->key, d->n_key * sizeof d->key[0])) return g;
        if (!g->n_key && !free_slot) free_slot = g;
        if (g->n_key && (!oldest || g->last_use < oldest->last_use)) oldest = g;
    }
    cu_graph *g = free_slot ? free_slot : oldest;
    if (g->exec) cudaGraphExecDestroy(g->exec);
    memset(g, 0, sizeof *g);
    memcpy(g->key, d->key, d->n_key * sizeof d->key[0]);
    g->n_key = d->n_key;
    return g;
}

/* Tokens and slot pointers into the device arrays the graph reads (stream-ordered). */
static int upload_step(cu_backend *be, const fm_step_desc *d) {
    int st = cu_err(be, cudaEventSynchronize(be->step_ev), "decode step upload"); /* the pinned buffer is free */
    if (st) return st;
    const size_t n = d->n_seqs;
    int32_t *tok = be->step_pin;
    float **bases = (float **)((char *)be->step_pin + CU_MAX_GRAPH_SEQS * sizeof(int32_t));
    memcpy(tok, d->tokens, n * sizeof *tok);
    memcpy(bases, d->states, n * sizeof *bases);
    st = cu_err(be, cudaMemcpyAsync(be->step_tok_dev, tok, n * sizeof *tok, cudaMemcpyHostToDevice, be->stream),
                "decode step upload");
    if (!st)
        st = cu_err(be, cudaMemcpyAsync(be->step_bases_dev, bases, n * sizeof *bases, cudaMemcpyHostToDevice, be->stream),
                    "decode step upload");
    if (!st) st = cu_err(be, cudaEventRecord(be->step_ev, be->stream), "cudaEventRecord");
    return st;
}

int cu_step_begin(void *vbe, const fm_step_desc *d, int *replayed) {
    cu_backend *be = vbe;
    *replayed = 0;
    int st = cu_enter(be); /* held until step_end (or released here when replayed / failed) */
    if (st) return st;
    if (!be->graphs_on || d->n_seqs == 0 || d->n_seqs > CU_MAX_GRAPH_SEQS || d->n_key == 0 ||
        d->n_key > sizeof d->key / sizeof d->key[0])
        return FM_BE_OK; /* run eagerly; step_end releases the lock */
    cu_graph *g = lookup(be, d);
    g->last_use = ++be->use_clock;
    if (g->exec) {
        st = upload_step(be, d);
        if (!st) st = cu_err(be, cudaGraphLaunch(g->exec, be->stream), "cudaGraphLaunch");
        if (!st) *replayed = 1;
        cu_leave(be); /* no step_end follows a replay or an error */
        return st;
    }
    if (g->seen++ == 0) return FM_BE_OK; /* first time: eager */
    /* capture this one */
    if ((st = cu_reserve_rows(be, d->n_seqs, 65536))) goto fail;
    if ((st = upload_step(be, d))) goto fail;
    memcpy(be->cap_states_buf, d->states, d->n_seqs * sizeof *d->states);
    be->cap_states = be->cap_states_buf;
    be->cap_n = d->n_seqs;
    be->cap_graph = g;
    cu_capture_hold(); /* no other thread's device-synchronising call until the capture ends */
    st = cu_err(be, cudaStreamBeginCapture(be->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    if (st) {
        cu_capture_release();
        goto fail;
    }
    be->capturing = 1;
    return FM_BE_OK;
fail:
    cu_leave(be);
    return st;
}

int cu_step_end(void *vbe, int status) {
    cu_backend *be = vbe;
    int st = status;
    if (be->capturing) {
        cudaGraph_t graph = NULL;
        cudaError_t e = cudaStreamEndCapture(be->stream, &graph);
        be->capturing = 0;
        cu_capture_release();
        if (st == FM_BE_OK) st = cu_err(be, e, "cudaStreamEndCapture");
        cudaGraphExec_t exec = NULL;
        if (st == FM_BE_OK) st = cu_err(be, cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
        if (graph) cudaGraphDestroy(graph);
        if (st == FM_BE_OK) {
            be->cap_graph->exec = exec;
            st = cu_err(be, cudaGraphLaunch(exec, be->stream), "cudaGraphLaunch");
        } else {
            cudaGetLastError();
            if (be->cap_graph) be->cap_graph->seen = 0;
        }
        be->cap_graph = NULL;
        be->cap_states = NULL;
        be->cap_n = 0;
    }
    cu_leave(be);
    return st;
}
