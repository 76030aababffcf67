/* api_context.c - fm_context_*: open a checkpoint on a backend, getters, params handling. */
#include <stdlib.h>
#include <string.h>

#include "backend_registry.h"
#include "checkpoint.h"
#include "error.h"
#include "file_util.h"
#include "internal.h"

fm_status fm_params_copy(void *defaults, size_t our_size, const void *theirs, const char *what) {
    if (!theirs) return FM_OK;
    size_t their_size;
    memcpy(&their_size, theirs, sizeof their_size);
    if (their_size < sizeof(size_t))
        return fm_error(FM_ERR_INVALID_ARGUMENT, "%s: struct_size %zu is too small (call %s_init first)", what,
                        their_size, what);
    if (their_size > our_size) {
        /* A newer caller: accept only if the fields this version does not know are all zero. */
        const unsigned char *extra = (const unsigned char *)theirs + our_size;
        for (size_t i = 0; i < their_size - our_size; i++)
            if (extra[i])
                return fm_error(FM_ERR_UNSUPPORTED, "%s: sets fields unknown to libfalconmamba %s", what, fm_version());
    }
    size_t n = their_size < our_size ? their_size : our_size;
    memcpy((unsigned char *)defaults + sizeof(size_t), (const unsigned char *)theirs + sizeof(size_t),
           n - sizeof(size_t));
    return FM_OK;
}

FM_API void fm_context_params_init(fm_context_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->backend = FM_BACKEND_AUTO;
    p->device = 0;
    p->n_threads = 0;
    p->weight_type = FM_WEIGHTS_AUTO;
}

FM_API fm_status fm_context_open(const char *model_path, const fm_context_params *params, fm_context **out) {
    fm_error_clear();
    if (!model_path || !out) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_context_open: model_path and out must not be NULL");
    fm_context_params p;
    fm_context_params_init(&p);
    fm_status st = fm_params_copy(&p, sizeof p, params, "fm_context_params");
    if (st) return st;
    if (p.n_threads < 0) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_context_params: n_threads %d < 0", p.n_threads);
    if (p.device < 0) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_context_params: device %d < 0", p.device);

    const fm_backend_ops *ops;
    if ((st = fm_backend_find(p.backend, &ops))) return st;
    /* The checkpoint's tokenizer.json, if it has one (a malformed one fails the open). */
    fm_tokenizer *tok = NULL;
    char *tok_path = fm_path_join(model_path, "tokenizer.json");
    if (!tok_path) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    int has_tok = fm_path_exists(tok_path);
    free(tok_path);
    if (has_tok && (st = fm_tokenizer_open(model_path, &tok))) return st;
    fm_checkpoint *ck;
    if ((st = fm_checkpoint_open(model_path, &ck))) {
        fm_tokenizer_close(tok);
        return st;
    }

    fm_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        fm_checkpoint_close(ck);
        fm_tokenizer_close(tok);
        return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    ctx->tokenizer = tok;
    fm_backend_config bc = {p.device, p.n_threads};
    st = (fm_status)ops->init(fm_backend_host_callbacks(), &bc, &ctx->be);
    if (st) {
        fm_checkpoint_close(ck);
        fm_tokenizer_close(tok);
        free(ctx);
        return st;
    }
    ctx->ops = ops;
    fm_load_progress progress = {p.progress, p.progress_user};
    st = fm_model_load(ck, ops, ctx->be, p.weight_type, &progress, &ctx->model); /* takes ck */
    if (st == FM_OK) st = fm_state_pool_init(&ctx->pool, ops, ctx->be, ctx->model.state_floats * sizeof(float));
    if (st) {
        fm_model_free(&ctx->model);
        ops->shutdown(ctx->be);
        fm_tokenizer_close(tok);
        free(ctx);
        return st;
    }
    ctx->model_type = ctx->model.cfg.arch == FM_ARCH_FALCON_MAMBA ? "falcon_mamba" : "mamba";
    *out = ctx;
    return FM_OK;
}

FM_API void fm_context_close(fm_context *ctx) {
    if (!ctx) return;
    fm_state_pool_destroy(&ctx->pool);
    fm_model_free(&ctx->model);
    ctx->ops->shutdown(ctx->be);
    fm_tokenizer_close(ctx->tokenizer);
    free(ctx);
}

FM_API const fm_tokenizer *fm_context_tokenizer(const fm_context *ctx) { return ctx ? ctx->tokenizer : NULL; }

FM_API int32_t fm_n_vocab(const fm_context *ctx) { return ctx ? ctx->model.cfg.n_vocab : 0; }
FM_API int32_t fm_token_eos(const fm_context *ctx) { return ctx ? ctx->model.cfg.eos_id : -1; }
FM_API int32_t fm_token_bos(const fm_context *ctx) { return ctx ? ctx->model.cfg.bos_id : -1; }

FM_API fm_status fm_context_info(const fm_context *ctx, fm_model_info *info) {
    if (!ctx || !info) return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_context_info: ctx and info must not be NULL");
    size_t size = info->struct_size;
    if (size < sizeof(size_t))
        return fm_error(FM_ERR_INVALID_ARGUMENT, "fm_context_info: set info->struct_size = sizeof(fm_model_info)");
    const fm_config *c = &ctx->model.cfg;
    fm_model_info full = {sizeof full, ctx->model_type, c->n_layer, c->d_model, c->d_inner, c->d_state, c->d_conv,
                          c->dt_rank, c->n_vocab, c->tie_embeddings, ctx->model.n_params, ctx->model.weight_bytes,
                          ctx->model.state_floats * sizeof(float), ctx->ops->name};
    /* Write only as much as the caller's (possibly older, shorter) struct holds. */
    memcpy((unsigned char *)info + sizeof(size_t), (unsigned char *)&full + sizeof(size_t),
           (size < sizeof full ? size : sizeof full) - sizeof(size_t));
    return FM_OK;
}
