/* chat_template.c - the public face of the chat-template engine: compile a template (lex, parse,
   check that every filter and test it names is implemented), and render it over a conversation
   with the variables transformers' apply_chat_template passes: messages (a list of
   {"role", "content"} dicts), add_generation_prompt, bos_token / eos_token when the tokenizer has
   them, and tools = documents = None. */
#include "chat_template.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "jinja.h"

struct fm_chat_template {
    jj_arena arena;
    jnode **body;
    size_t nbody;
};

static void check_names(jj_cctx *c, const jnode *n) {
    if (!n) return;
    if (n->kind == E_FILTER && !jj_has_filter(n->name))
        jj_cfail(c, FM_ERR_UNSUPPORTED, n->line, "filter '%s' is not supported", n->name);
    if (n->kind == E_TEST && !jj_has_test(n->name))
        jj_cfail(c, FM_ERR_UNSUPPORTED, n->line, "test '%s' is not supported", n->name);
    check_names(c, n->a);
    check_names(c, n->b);
    check_names(c, n->c);
    check_names(c, n->d);
    for (size_t i = 0; i < n->nargs; i++) {
        check_names(c, n->args[i]);
        if (n->defs) check_names(c, n->defs[i]);
    }
    for (size_t i = 0; i < n->nbody; i++) check_names(c, n->body[i]);
    for (size_t i = 0; i < n->nelse; i++) check_names(c, n->else_body[i]);
}

fm_status fm_chat_template_compile(const char *src, size_t len, fm_chat_template **out) {
    if (!out || (!src && len)) return fm_error(FM_ERR_INVALID_ARGUMENT, "chat template: NULL argument");
    fm_chat_template *volatile t = calloc(1, sizeof *t);
    if (!t) return fm_error(FM_ERR_OUT_OF_MEMORY, "chat template: out of memory");
    jj_cctx *c = calloc(1, sizeof *c);
    if (!c) {
        free(t);
        return fm_error(FM_ERR_OUT_OF_MEMORY, "chat template: out of memory");
    }
    c->arena = &t->arena;
    if (setjmp(c->jmp)) {
        fm_status st = fm_error(c->status, "%s", c->msg);
        jj_arena_free(&t->arena);
        free(t);
        free(c);
        return st;
    }
    jtok *toks;
    size_t ntoks;
    jj_lex(c, src ? src : "", len, &toks, &ntoks);
    jj_parse(c, toks, ntoks, &t->body, &t->nbody);
    for (size_t i = 0; i < t->nbody; i++) check_names(c, t->body[i]);
    free(c);
    *out = t;
    return FM_OK;
}

void fm_chat_template_free(fm_chat_template *t) {
    if (!t) return;
    jj_arena_free(&t->arena);
    free(t);
}

static jv str_or_none(jj_ctx *x, const char *s) { return s ? jv_cstr(x, s) : jv_none(); }

fm_status fm_chat_template_render(const fm_chat_template *t, const fm_chat_vars *vars, char **out, size_t *out_len) {
    if (!t || !vars || !out || (!vars->messages && vars->n_messages))
        return fm_error(FM_ERR_INVALID_ARGUMENT, "chat template: NULL argument");
    jj_ctx *x = malloc(sizeof *x);
    if (!x) return fm_error(FM_ERR_OUT_OF_MEMORY, "chat template: out of memory");
    jj_ctx_init(x);
    if (setjmp(x->jmp)) {
        fm_status st = fm_error(x->status, "%s", x->msg);
        jj_ctx_free_all(x);
        free(x);
        return st;
    }
    jframe *g = jj_frame_new(x, NULL);
    jv msgs = jv_list(x, JL_LIST, vars->n_messages);
    for (size_t i = 0; i < vars->n_messages; i++) {
        jv m = jv_dict(x, JV_DICT);
        jd_set(x, m, jv_cstr(x, "role"), str_or_none(x, vars->messages[i].role));
        jd_set(x, m, jv_cstr(x, "content"), str_or_none(x, vars->messages[i].content));
        jl_push(x, msgs, m);
    }
    jj_frame_set(x, g, "messages", msgs);
    jj_frame_set(x, g, "tools", jv_none());
    jj_frame_set(x, g, "documents", jv_none());
    jj_frame_set(x, g, "add_generation_prompt", jv_bool(vars->add_generation_prompt));
    if (vars->bos_token) jj_frame_set(x, g, "bos_token", jv_cstr(x, vars->bos_token));
    if (vars->eos_token) jj_frame_set(x, g, "eos_token", jv_cstr(x, vars->eos_token));
    x->globals = g;
    x->root = x->frame = jj_frame_new(x, g);
    jsb buf;
    jsb_init(x, &buf);
    x->out = &buf;
    jj_exec_template(x, t->body, t->nbody);
    char *res = malloc(buf.n + 1);
    if (!res) jj_fail(x, FM_ERR_OUT_OF_MEMORY, "out of memory");
    if (buf.n) memcpy(res, buf.p, buf.n);
    res[buf.n] = 0;
    *out = res;
    if (out_len) *out_len = buf.n;
    jj_ctx_free_all(x);
    free(x);
    return FM_OK;
}
