/* jinja_parse.c - tokens -> AST, a transcription of jinja2.parser.Parser for the statements and
   expressions chat templates use. Node fields per kind (see jinja.h):
     E_CONST cval | E_NAME name | E_NSREF name.attr | E_GETATTR a.name | E_GETITEM a[b]
     E_SLICE a:b:c (each may be NULL) | E_CALL a(args, kw) | E_FILTER a|name(args, kw)
     E_TEST a is name(args, kw) | E_BIN a op b | E_CONCAT args joined by ~ | E_NEG/E_POS/E_NOT a
     E_AND/E_OR a, b | E_CMP a (ops[i] args[i])... | E_COND b if a else c | E_LIST/E_TUPLE args
     E_DICT args = k0, v0, k1, v1, ...
     S_TEXT text | S_PRINT a | S_FOR for a in b [if c] body [else else_body] | S_IF a body else
     S_SET a = b | S_SETBLOCK a [| c] body | S_MACRO name(args = defs) body | S_BREAK | S_CONTINUE
     S_WITH args = defs body | S_FILTERBLOCK c body | S_BLOCK body */
#include "jinja.h"

#include <stdio.h>
#include <string.h>

typedef struct parser {
    jj_cctx *c;
    const jtok *t;
    size_t i, n;
    int loops; /* enclosing for-loops (break/continue validity) */
} parser;

typedef struct nvec {
    jnode **v;
    const char **kw;
    uint8_t *ops;
    size_t n, cap;
} nvec;

static void nv_push(parser *P, nvec *v, jnode *node, const char *kw, uint8_t op) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        jnode **nv = jj_calloc(P->c, cap * sizeof *nv);
        const char **nk = jj_calloc(P->c, cap * sizeof *nk);
        uint8_t *no = jj_calloc(P->c, cap);
        if (v->n) {
            memcpy(nv, v->v, v->n * sizeof *nv);
            memcpy(nk, v->kw, v->n * sizeof *nk);
            memcpy(no, v->ops, v->n);
        }
        v->v = nv;
        v->kw = nk;
        v->ops = no;
        v->cap = cap;
    }
    v->v[v->n] = node;
    v->kw[v->n] = kw;
    v->ops[v->n] = op;
    v->n++;
}

static const jtok *cur(parser *P) { return &P->t[P->i]; }
static const jtok *peek(parser *P) { return &P->t[P->i + 1 < P->n ? P->i + 1 : P->i]; }
static const jtok *next_tok(parser *P) {
    const jtok *t = &P->t[P->i];
    if (P->i + 1 < P->n) P->i++;
    return t;
}

static int is_name(const jtok *t, const char *name) { return t->type == TK_NAME && strcmp(t->s, name) == 0; }
static int is_op(const jtok *t, int op) { return t->type == TK_OP && t->op == op; }

static const char *describe(const jtok *t) {
    static const char *ops[] = {"", "+", "-", "*", "/", "//", "%", "**", "~", "[", "]", "(", ")", "{", "}",
                                "==", "!=", ">", ">=", "<", "<=", "=", ".", ":", "|", ",", ";"};
    switch (t->type) {
    case TK_EOF: return "end of template";
    case TK_DATA: return "template data";
    case TK_VAR_BEGIN: return "begin of print statement";
    case TK_VAR_END: return "end of print statement";
    case TK_BLOCK_BEGIN: return "begin of statement block";
    case TK_BLOCK_END: return "end of statement block";
    case TK_NAME: return t->s;
    case TK_STRING: return "string";
    case TK_INT: return "integer";
    case TK_FLOAT: return "float";
    case TK_OP: return t->op < sizeof ops / sizeof *ops ? ops[t->op] : "operator";
    }
    return "token";
}

static _Noreturn void fail_unexpected(parser *P, const char *wanted) {
    const jtok *t = cur(P);
    if (t->type == TK_EOF) jj_cfail(P->c, FM_ERR_FORMAT, t->line, "unexpected end of template, expected %s", wanted);
    jj_cfail(P->c, FM_ERR_FORMAT, t->line, "expected %s, got '%s'", wanted, describe(t));
}

static void expect_op(parser *P, int op, const char *what) {
    if (!is_op(cur(P), op)) fail_unexpected(P, what);
    next_tok(P);
}

static void expect_type(parser *P, int type, const char *what) {
    if (cur(P)->type != type) fail_unexpected(P, what);
    next_tok(P);
}

static const char *expect_name(parser *P) {
    if (cur(P)->type != TK_NAME) fail_unexpected(P, "a name");
    return next_tok(P)->s;
}

static jnode *mk(parser *P, int kind, int line) {
    jnode *n = jj_calloc(P->c, sizeof *n);
    n->kind = (uint8_t)kind;
    n->line = line;
    return n;
}

static void enter(parser *P) {
    if (++P->c->depth > JJ_MAX_NEST)
        jj_cfail(P->c, FM_ERR_UNSUPPORTED, cur(P)->line, "template nested too deeply (more than %d levels)", JJ_MAX_NEST);
}
static void leave(parser *P) { P->c->depth--; }

/* ---- expressions ----------------------------------------------------------------------------- */

static jnode *parse_expression(parser *P, int with_condexpr);
static jnode *parse_tuple(parser *P, int simplified, int with_condexpr, const char *extra_end,
                          int explicit_parens, int with_namespace);
static jnode *parse_unary(parser *P, int with_filter);
static jnode *parse_primary(parser *P, int with_namespace);

static void parse_call_args(parser *P, jnode *node) {
    int line = cur(P)->line;
    expect_op(P, OP_LPAREN, "'('");
    nvec v = {0};
    int require_comma = 0, have_kw = 0;
    while (!is_op(cur(P), OP_RPAREN)) {
        if (require_comma) {
            expect_op(P, OP_COMMA, "','");
            if (is_op(cur(P), OP_RPAREN)) break;
        }
        if (is_op(cur(P), OP_MUL) || is_op(cur(P), OP_POW))
            jj_cfail(P->c, FM_ERR_UNSUPPORTED, line, "*args / **kwargs in calls are not supported");
        if (cur(P)->type == TK_NAME && is_op(peek(P), OP_ASSIGN)) {
            const char *key = next_tok(P)->s;
            next_tok(P);
            nv_push(P, &v, parse_expression(P, 1), key, 0);
            have_kw = 1;
        } else {
            if (have_kw) jj_cfail(P->c, FM_ERR_FORMAT, line, "invalid syntax for function call expression");
            nv_push(P, &v, parse_expression(P, 1), NULL, 0);
        }
        require_comma = 1;
    }
    expect_op(P, OP_RPAREN, "')'");
    node->args = v.v;
    node->kw = v.kw;
    node->nargs = v.n;
}

static jnode *parse_call(parser *P, jnode *callee) {
    jnode *n = mk(P, E_CALL, cur(P)->line);
    n->a = callee;
    parse_call_args(P, n);
    return n;
}

static jnode *parse_subscribed(parser *P) {
    int line = cur(P)->line;
    jnode *start = NULL, *stop = NULL, *step = NULL;
    if (is_op(cur(P), OP_COLON)) {
        next_tok(P);
    } else {
        jnode *e = parse_expression(P, 1);
        if (!is_op(cur(P), OP_COLON)) return e;
        next_tok(P);
        start = e;
    }
    if (!is_op(cur(P), OP_COLON) && !is_op(cur(P), OP_RBRACKET) && !is_op(cur(P), OP_COMMA))
        stop = parse_expression(P, 1);
    if (is_op(cur(P), OP_COLON)) {
        next_tok(P);
        if (!is_op(cur(P), OP_RBRACKET) && !is_op(cur(P), OP_COMMA)) step = parse_expression(P, 1);
    }
    jnode *s = mk(P, E_SLICE, line);
    s->a = start;
    s->b = stop;
    s->c = step;
    return s;
}

static jnode *parse_subscript(parser *P, jnode *node) {
    const jtok *t = next_tok(P);
    if (t->type == TK_OP && t->op == OP_DOT) {
        const jtok *at = next_tok(P);
        if (at->type == TK_NAME) {
            jnode *g = mk(P, E_GETATTR, t->line);
            g->a = node;
            g->name = at->s;
            return g;
        }
        if (at->type != TK_INT) jj_cfail(P->c, FM_ERR_FORMAT, at->line, "expected name or number");
        jnode *k = mk(P, E_CONST, at->line);
        k->cval = at->val;
        jnode *g = mk(P, E_GETITEM, t->line);
        g->a = node;
        g->b = k;
        return g;
    }
    /* '[' */
    nvec v = {0};
    while (!is_op(cur(P), OP_RBRACKET)) {
        if (v.n) expect_op(P, OP_COMMA, "','");
        nv_push(P, &v, parse_subscribed(P), NULL, 0);
    }
    expect_op(P, OP_RBRACKET, "']'");
    jnode *g = mk(P, E_GETITEM, t->line);
    g->a = node;
    if (v.n == 1) g->b = v.v[0];
    else {
        jnode *tup = mk(P, E_TUPLE, t->line);
        tup->args = v.v;
        tup->nargs = v.n;
        g->b = tup;
    }
    return g;
}

static jnode *parse_postfix(parser *P, jnode *node) {
    int links = 0;
    for (;;) {
        if (links++) enter(P);
        if (is_op(cur(P), OP_DOT) || is_op(cur(P), OP_LBRACKET)) node = parse_subscript(P, node);
        else if (is_op(cur(P), OP_LPAREN)) node = parse_call(P, node);
        else {
            if (links > 1) P->c->depth -= links - 1;
            return node;
        }
    }
}

static const char *dotted_name(parser *P) {
    const char *name = expect_name(P);
    while (is_op(cur(P), OP_DOT)) {
        next_tok(P);
        const char *more = expect_name(P);
        size_t a = strlen(name), b = strlen(more);
        char *joined = jj_calloc(P->c, a + b + 2);
        memcpy(joined, name, a);
        joined[a] = '.';
        memcpy(joined + a + 1, more, b);
        name = joined;
    }
    return name;
}

static jnode *parse_filter(parser *P, jnode *node, int start_inline) {
    int links = 0;
    while (is_op(cur(P), OP_PIPE) || start_inline) {
        enter(P);
        links++;
        if (!start_inline) next_tok(P);
        int line = cur(P)->line;
        jnode *f = mk(P, E_FILTER, line);
        f->a = node;
        f->name = dotted_name(P);
        if (is_op(cur(P), OP_LPAREN)) parse_call_args(P, f);
        node = f;
        start_inline = 0;
    }
    P->c->depth -= links;
    return node;
}

static jnode *parse_test(parser *P, jnode *node) {
    int line = next_tok(P)->line; /* 'is' */
    int negated = 0;
    if (is_name(cur(P), "not")) {
        next_tok(P);
        negated = 1;
    }
    jnode *t = mk(P, E_TEST, line);
    t->a = node;
    t->name = dotted_name(P);
    const jtok *c = cur(P);
    if (is_op(c, OP_LPAREN)) {
        parse_call_args(P, t);
    } else if ((c->type == TK_NAME || c->type == TK_STRING || c->type == TK_INT || c->type == TK_FLOAT ||
                is_op(c, OP_LPAREN) || is_op(c, OP_LBRACKET) || is_op(c, OP_LBRACE)) &&
               !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is")) jj_cfail(P->c, FM_ERR_FORMAT, c->line, "You cannot chain multiple tests with is");
        jnode *arg = parse_postfix(P, parse_primary(P, 0));
        t->args = jj_calloc(P->c, sizeof(jnode *));
        t->kw = jj_calloc(P->c, sizeof(const char *));
        t->args[0] = arg;
        t->nargs = 1;
    }
    if (negated) {
        jnode *n = mk(P, E_NOT, line);
        n->a = t;
        return n;
    }
    return t;
}

static jnode *parse_filter_expr(parser *P, jnode *node) {
    int links = 0;
    for (;;) {
        if (links++) enter(P);
        if (is_op(cur(P), OP_PIPE)) node = parse_filter(P, node, 0);
        else if (is_name(cur(P), "is")) node = parse_test(P, node);
        else if (is_op(cur(P), OP_LPAREN)) node = parse_call(P, node);
        else {
            if (links > 1) P->c->depth -= links - 1;
            return node;
        }
    }
}

static jnode *parse_list(parser *P) {
    jnode *l = mk(P, E_LIST, cur(P)->line);
    expect_op(P, OP_LBRACKET, "'['");
    nvec v = {0};
    while (!is_op(cur(P), OP_RBRACKET)) {
        if (v.n) expect_op(P, OP_COMMA, "','");
        if (is_op(cur(P), OP_RBRACKET)) break;
        nv_push(P, &v, parse_expression(P, 1), NULL, 0);
    }
    expect_op(P, OP_RBRACKET, "']'");
    l->args = v.v;
    l->nargs = v.n;
    return l;
}

static jnode *parse_dict(parser *P) {
    jnode *d = mk(P, E_DICT, cur(P)->line);
    expect_op(P, OP_LBRACE, "'{'");
    nvec v = {0};
    while (!is_op(cur(P), OP_RBRACE)) {
        if (v.n) expect_op(P, OP_COMMA, "','");
        if (is_op(cur(P), OP_RBRACE)) break;
        jnode *k = parse_expression(P, 1);
        expect_op(P, OP_COLON, "':'");
        jnode *val = parse_expression(P, 1);
        nv_push(P, &v, k, NULL, 0);
        nv_push(P, &v, val, NULL, 0);
    }
    expect_op(P, OP_RBRACE, "'}'");
    d->args = v.v;
    d->nargs = v.n;
    return d;
}

static jnode *parse_primary(parser *P, int with_namespace) {
    const jtok *t = cur(P);
    jnode *node;
    enter(P);
    if (t->type == TK_NAME) {
        next_tok(P);
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True") || !strcmp(t->s, "false") || !strcmp(t->s, "False")) {
            node = mk(P, E_CONST, t->line);
            node->cval = jv_bool(t->s[0] == 't' || t->s[0] == 'T');
        } else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) {
            node = mk(P, E_CONST, t->line);
            node->cval = jv_none();
        } else if (with_namespace && is_op(cur(P), OP_DOT)) {
            next_tok(P);
            node = mk(P, E_NSREF, t->line);
            node->name = t->s;
            node->attr = expect_name(P);
        } else {
            node = mk(P, E_NAME, t->line);
            node->name = t->s;
        }
    } else if (t->type == TK_STRING) {
        next_tok(P);
        node = mk(P, E_CONST, t->line);
        if (cur(P)->type != TK_STRING) {
            node->cval = t->val;
        } else { /* adjacent literals concatenate */
            size_t total = JS(t->val)->len, k = P->i;
            while (P->t[k].type == TK_STRING) total += JS(P->t[k++].val)->len;
            char *buf = jj_calloc(P->c, total + 1);
            size_t o = JS(t->val)->len;
            memcpy(buf, JS(t->val)->s, o);
            while (cur(P)->type == TK_STRING) {
                jstr *s = JS(next_tok(P)->val);
                memcpy(buf + o, s->s, s->len);
                o += s->len;
            }
            node->cval = jv_str_immortal(P->c, buf, o);
        }
    } else if (t->type == TK_INT || t->type == TK_FLOAT) {
        next_tok(P);
        node = mk(P, E_CONST, t->line);
        node->cval = t->val;
    } else if (is_op(t, OP_LPAREN)) {
        next_tok(P);
        node = parse_tuple(P, 0, 1, NULL, 1, 0);
        expect_op(P, OP_RPAREN, "')'");
    } else if (is_op(t, OP_LBRACKET)) {
        node = parse_list(P);
    } else if (is_op(t, OP_LBRACE)) {
        node = parse_dict(P);
    } else {
        if (t->type == TK_EOF) fail_unexpected(P, "an expression");
        jj_cfail(P->c, FM_ERR_FORMAT, t->line, "unexpected '%s'", describe(t));
    }
    leave(P);
    return node;
}

static jnode *parse_unary(parser *P, int with_filter) {
    const jtok *t = cur(P);
    jnode *node;
    enter(P);
    if (is_op(t, OP_SUB) || is_op(t, OP_ADD)) {
        next_tok(P);
        node = mk(P, t->op == OP_SUB ? E_NEG : E_POS, t->line);
        node->a = parse_unary(P, 0);
    } else {
        node = parse_primary(P, 0);
    }
    node = parse_postfix(P, node);
    if (with_filter) node = parse_filter_expr(P, node);
    leave(P);
    return node;
}

static jnode *bin(parser *P, int op, jnode *a, jnode *b, int line) {
    jnode *n = mk(P, E_BIN, line);
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(parser *P) {
    jnode *left = parse_unary(P, 1);
    int links = 0;
    while (is_op(cur(P), OP_POW)) {
        enter(P);
        links++;
        int line = next_tok(P)->line;
        left = bin(P, OP_POW, left, parse_unary(P, 1), line);
    }
    P->c->depth -= links;
    return left;
}

static jnode *parse_math2(parser *P) {
    jnode *left = parse_pow(P);
    int links = 0;
    while (is_op(cur(P), OP_MUL) || is_op(cur(P), OP_DIV) || is_op(cur(P), OP_FLOORDIV) || is_op(cur(P), OP_MOD)) {
        enter(P);
        links++;
        const jtok *t = next_tok(P);
        left = bin(P, t->op, left, parse_pow(P), t->line);
    }
    P->c->depth -= links;
    return left;
}

static jnode *parse_concat(parser *P) {
    int line = cur(P)->line;
    jnode *first = parse_math2(P);
    if (!is_op(cur(P), OP_TILDE)) return first;
    nvec v = {0};
    nv_push(P, &v, first, NULL, 0);
    while (is_op(cur(P), OP_TILDE)) {
        next_tok(P);
        nv_push(P, &v, parse_math2(P), NULL, 0);
    }
    jnode *n = mk(P, E_CONCAT, line);
    n->args = v.v;
    n->nargs = v.n;
    return n;
}

static jnode *parse_math1(parser *P) {
    jnode *left = parse_concat(P);
    int links = 0;
    while (is_op(cur(P), OP_ADD) || is_op(cur(P), OP_SUB)) {
        enter(P);
        links++;
        const jtok *t = next_tok(P);
        left = bin(P, t->op, left, parse_concat(P), t->line);
    }
    P->c->depth -= links;
    return left;
}

static jnode *parse_compare(parser *P) {
    int line = cur(P)->line;
    jnode *expr = parse_math1(P);
    nvec v = {0};
    for (;;) {
        const jtok *t = cur(P);
        if (t->type == TK_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == OP_LT || t->op == OP_LTEQ ||
                                 t->op == OP_GT || t->op == OP_GTEQ)) {
            next_tok(P);
            nv_push(P, &v, parse_math1(P), NULL, t->op);
        } else if (is_name(t, "in")) {
            next_tok(P);
            nv_push(P, &v, parse_math1(P), NULL, OP_IN);
        } else if (is_name(t, "not") && is_name(peek(P), "in")) {
            next_tok(P);
            next_tok(P);
            nv_push(P, &v, parse_math1(P), NULL, OP_NOTIN);
        } else break;
    }
    if (!v.n) return expr;
    jnode *n = mk(P, E_CMP, line);
    n->a = expr;
    n->args = v.v;
    n->ops = v.ops;
    n->nargs = v.n;
    return n;
}

static jnode *parse_not(parser *P) {
    if (is_name(cur(P), "not")) {
        int line = next_tok(P)->line;
        enter(P);
        jnode *n = mk(P, E_NOT, line);
        n->a = parse_not(P);
        leave(P);
        return n;
    }
    return parse_compare(P);
}

static jnode *parse_and(parser *P) {
    jnode *left = parse_not(P);
    int links = 0;
    while (is_name(cur(P), "and")) {
        enter(P);
        links++;
        int line = next_tok(P)->line;
        jnode *n = mk(P, E_AND, line);
        n->a = left;
        n->b = parse_not(P);
        left = n;
    }
    P->c->depth -= links;
    return left;
}

static jnode *parse_or(parser *P) {
    jnode *left = parse_and(P);
    int links = 0;
    while (is_name(cur(P), "or")) {
        enter(P);
        links++;
        int line = next_tok(P)->line;
        jnode *n = mk(P, E_OR, line);
        n->a = left;
        n->b = parse_and(P);
        left = n;
    }
    P->c->depth -= links;
    return left;
}

static jnode *parse_condexpr(parser *P) {
    int line = cur(P)->line;
    jnode *expr1 = parse_or(P);
    int links = 0;
    while (is_name(cur(P), "if")) {
        enter(P);
        links++;
        next_tok(P);
        jnode *expr2 = parse_or(P);
        jnode *expr3 = NULL;
        if (is_name(cur(P), "else")) {
            next_tok(P);
            enter(P);
            expr3 = parse_condexpr(P);
            leave(P);
        }
        jnode *n = mk(P, E_COND, line);
        n->a = expr2;
        n->b = expr1;
        n->c = expr3;
        expr1 = n;
    }
    P->c->depth -= links;
    return expr1;
}

static jnode *parse_expression(parser *P, int with_condexpr) {
    enter(P);
    jnode *e = with_condexpr ? parse_condexpr(P) : parse_or(P);
    leave(P);
    return e;
}

static int is_tuple_end(parser *P, const char *extra_end) {
    const jtok *t = cur(P);
    if (t->type == TK_VAR_END || t->type == TK_BLOCK_END || is_op(t, OP_RPAREN)) return 1;
    return extra_end && is_name(t, extra_end);
}

static jnode *parse_tuple(parser *P, int simplified, int with_condexpr, const char *extra_end,
                          int explicit_parens, int with_namespace) {
    int line = cur(P)->line;
    nvec v = {0};
    int is_tuple = 0;
    for (;;) {
        if (v.n) expect_op(P, OP_COMMA, "','");
        if (is_tuple_end(P, extra_end)) break;
        nv_push(P, &v, simplified ? parse_primary(P, with_namespace) : parse_expression(P, with_condexpr), NULL, 0);
        if (is_op(cur(P), OP_COMMA)) is_tuple = 1;
        else break;
    }
    if (!is_tuple) {
        if (v.n) return v.v[0];
        if (!explicit_parens) {
            const jtok *t = cur(P);
            jj_cfail(P->c, FM_ERR_FORMAT, t->line, "Expected an expression, got '%s'", describe(t));
        }
    }
    jnode *n = mk(P, E_TUPLE, line);
    n->args = v.v;
    n->nargs = v.n;
    return n;
}

/* ---- statements ------------------------------------------------------------------------------ */

static void check_target(parser *P, jnode *t, int allow_ns) {
    if (t->kind == E_NAME) {
        if (!strcmp(t->name, "true") || !strcmp(t->name, "false") || !strcmp(t->name, "none"))
            jj_cfail(P->c, FM_ERR_FORMAT, t->line, "can't assign to '%s'", t->name);
        return;
    }
    if (t->kind == E_NSREF && allow_ns) return;
    if (t->kind == E_TUPLE) {
        for (size_t i = 0; i < t->nargs; i++) check_target(P, t->args[i], allow_ns);
        return;
    }
    jj_cfail(P->c, FM_ERR_FORMAT, t->line, "can't assign to this expression");
}

static jnode *parse_assign_target(parser *P, const char *extra_end, int with_namespace) {
    jnode *t = parse_tuple(P, 1, 1, extra_end, 0, with_namespace);
    check_target(P, t, with_namespace);
    return t;
}

static void subparse(parser *P, const char *const *end_tags, jnode ***body, size_t *nbody);

/* parse_statements: expects block_end, then a body up to one of end_tags; leaves the stream at
   the end tag's name (drop_needle skips it). */
static void parse_statements(parser *P, const char *const *end_tags, int drop_needle, jnode ***body, size_t *nbody) {
    if (is_op(cur(P), OP_COLON)) next_tok(P);
    expect_type(P, TK_BLOCK_END, "end of statement block");
    subparse(P, end_tags, body, nbody);
    if (cur(P)->type == TK_EOF) {
        char want[160] = "";
        for (int i = 0; end_tags[i]; i++) {
            size_t l = strlen(want);
            snprintf(want + l, sizeof want - l, "%s'%s'", i ? " or " : "", end_tags[i]);
        }
        jj_cfail(P->c, FM_ERR_FORMAT, cur(P)->line, "unexpected end of template, expected %s", want);
    }
    if (drop_needle) next_tok(P);
}

static jnode *parse_for(parser *P, int line) {
    jnode *n = mk(P, S_FOR, line);
    n->a = parse_assign_target(P, "in", 0);
    if (!is_name(cur(P), "in")) fail_unexpected(P, "'in'");
    next_tok(P);
    n->b = parse_tuple(P, 0, 0, "recursive", 0, 0);
    if (is_name(cur(P), "if")) {
        next_tok(P);
        n->c = parse_expression(P, 1);
    }
    if (is_name(cur(P), "recursive")) jj_cfail(P->c, FM_ERR_UNSUPPORTED, line, "recursive for-loops are not supported");
    static const char *const ends[] = {"endfor", "else", NULL};
    static const char *const ends2[] = {"endfor", NULL};
    P->loops++;
    parse_statements(P, ends, 0, &n->body, &n->nbody);
    P->loops--;
    if (is_name(next_tok(P), "else")) parse_statements(P, ends2, 1, &n->else_body, &n->nelse);
    return n;
}

static jnode *parse_if(parser *P, int line) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const ends2[] = {"endif", NULL};
    jnode *result = mk(P, S_IF, line), *node = result;
    int links = 0;
    for (;;) {
        node->a = parse_tuple(P, 0, 0, NULL, 0, 0);
        parse_statements(P, ends, 0, &node->body, &node->nbody);
        const jtok *t = next_tok(P);
        if (is_name(t, "elif")) {
            jnode *e = mk(P, S_IF, t->line);
            node->else_body = jj_calloc(P->c, sizeof(jnode *));
            node->else_body[0] = e;
            node->nelse = 1;
            node = e;
            enter(P);
            links++;
            continue;
        }
        if (is_name(t, "else")) parse_statements(P, ends2, 1, &node->else_body, &node->nelse);
        break;
    }
    P->c->depth -= links;
    return result;
}

static jnode *parse_set(parser *P, int line) {
    jnode *target = parse_assign_target(P, NULL, 1);
    if (is_op(cur(P), OP_ASSIGN)) {
        next_tok(P);
        jnode *n = mk(P, S_SET, line);
        n->a = target;
        n->b = parse_tuple(P, 0, 1, NULL, 0, 0);
        return n;
    }
    static const char *const ends[] = {"endset", NULL};
    jnode *n = mk(P, S_SETBLOCK, line);
    n->a = target;
    n->c = parse_filter(P, NULL, 0);
    parse_statements(P, ends, 1, &n->body, &n->nbody);
    return n;
}

/* Does the subtree read the variable `name`? (jinja2 gives a macro a varargs tuple / kwargs dict
   only when its body refers to them.) */
static int refers_to(const jnode *n, const char *name) {
    if (!n) return 0;
    if (n->kind == E_NAME && !strcmp(n->name, name)) return 1;
    if (refers_to(n->a, name) || refers_to(n->b, name) || refers_to(n->c, name) || refers_to(n->d, name)) return 1;
    for (size_t i = 0; i < n->nargs; i++)
        if (refers_to(n->args[i], name) || (n->defs && refers_to(n->defs[i], name))) return 1;
    for (size_t i = 0; i < n->nbody; i++)
        if (refers_to(n->body[i], name)) return 1;
    for (size_t i = 0; i < n->nelse; i++)
        if (refers_to(n->else_body[i], name)) return 1;
    return 0;
}

static jnode *parse_macro(parser *P, int line) {
    jnode *n = mk(P, S_MACRO, line);
    n->name = expect_name(P);
    expect_op(P, OP_LPAREN, "'('");
    nvec params = {0}, defs = {0};
    int have_default = 0;
    while (!is_op(cur(P), OP_RPAREN)) {
        if (params.n) expect_op(P, OP_COMMA, "','");
        int pl = cur(P)->line;
        jnode *p = mk(P, E_NAME, pl);
        p->name = expect_name(P);
        jnode *d = NULL;
        if (is_op(cur(P), OP_ASSIGN)) {
            next_tok(P);
            d = parse_expression(P, 1);
            have_default = 1;
        } else if (have_default) {
            jj_cfail(P->c, FM_ERR_FORMAT, pl, "non-default argument follows default argument");
        }
        nv_push(P, &params, p, NULL, 0);
        nv_push(P, &defs, d, NULL, 0);
    }
    expect_op(P, OP_RPAREN, "')'");
    n->args = params.v;
    n->nargs = params.n;
    n->defs = defs.v;
    static const char *const ends[] = {"endmacro", NULL};
    int saved = P->loops;
    P->loops = 0;
    parse_statements(P, ends, 1, &n->body, &n->nbody);
    P->loops = saved;
    for (size_t i = 0; i < n->nbody; i++) {
        if (refers_to(n->body[i], "varargs")) n->op |= 1;
        if (refers_to(n->body[i], "kwargs")) n->op |= 2;
        if (refers_to(n->body[i], "caller")) jj_cfail(P->c, FM_ERR_UNSUPPORTED, line, "macros using 'caller' are not supported");
    }
    return n;
}

static jnode *parse_with(parser *P, int line) {
    jnode *n = mk(P, S_WITH, line);
    nvec targets = {0}, values = {0};
    while (cur(P)->type != TK_BLOCK_END) {
        if (targets.n) expect_op(P, OP_COMMA, "','");
        jnode *t = parse_assign_target(P, NULL, 0);
        expect_op(P, OP_ASSIGN, "'='");
        nv_push(P, &targets, t, NULL, 0);
        nv_push(P, &values, parse_expression(P, 1), NULL, 0);
    }
    n->args = targets.v;
    n->nargs = targets.n;
    n->defs = values.v;
    static const char *const ends[] = {"endwith", NULL};
    parse_statements(P, ends, 1, &n->body, &n->nbody);
    return n;
}

static jnode *parse_statement(parser *P) {
    const jtok *t = cur(P);
    if (t->type != TK_NAME) jj_cfail(P->c, FM_ERR_FORMAT, t->line, "tag name expected");
    const char *tag = t->s;
    int line = t->line;
    enter(P);
    next_tok(P);
    jnode *n = NULL;
    if (!strcmp(tag, "for")) n = parse_for(P, line);
    else if (!strcmp(tag, "if")) n = parse_if(P, line);
    else if (!strcmp(tag, "set")) n = parse_set(P, line);
    else if (!strcmp(tag, "macro")) n = parse_macro(P, line);
    else if (!strcmp(tag, "with")) n = parse_with(P, line);
    else if (!strcmp(tag, "print")) {
        n = mk(P, S_PRINT, line);
        nvec v = {0};
        while (cur(P)->type != TK_BLOCK_END) {
            if (v.n) expect_op(P, OP_COMMA, "','");
            nv_push(P, &v, parse_expression(P, 1), NULL, 0);
        }
        /* {% print a, b %} prints each */
        n->args = v.v;
        n->nargs = v.n;
    } else if (!strcmp(tag, "filter")) {
        n = mk(P, S_FILTERBLOCK, line);
        n->c = parse_filter(P, NULL, 1);
        static const char *const ends[] = {"endfilter", NULL};
        parse_statements(P, ends, 1, &n->body, &n->nbody);
    } else if (!strcmp(tag, "generation")) { /* transformers' AssistantTracker extension */
        n = mk(P, S_BLOCK, line);
        static const char *const ends[] = {"endgeneration", NULL};
        parse_statements(P, ends, 1, &n->body, &n->nbody);
    } else if (!strcmp(tag, "break") || !strcmp(tag, "continue")) {
        if (!P->loops) jj_cfail(P->c, FM_ERR_FORMAT, line, "'%s' outside of a for-loop", tag);
        n = mk(P, tag[0] == 'b' ? S_BREAK : S_CONTINUE, line);
    } else if (!strcmp(tag, "block") || !strcmp(tag, "extends") || !strcmp(tag, "include") ||
               !strcmp(tag, "import") || !strcmp(tag, "from") || !strcmp(tag, "call") ||
               !strcmp(tag, "autoescape")) {
        jj_cfail(P->c, FM_ERR_UNSUPPORTED, line, "the '%s' tag is not supported", tag);
    } else {
        jj_cfail(P->c, FM_ERR_FORMAT, line, "Encountered unknown tag '%s'.", tag);
    }
    leave(P);
    return n;
}

static void subparse(parser *P, const char *const *end_tags, jnode ***body, size_t *nbody) {
    nvec v = {0};
    for (;;) {
        const jtok *t = cur(P);
        if (t->type == TK_EOF) break;
        if (t->type == TK_DATA) {
            jnode *n = mk(P, S_TEXT, t->line);
            n->text = t->s;
            n->text_len = t->len;
            nv_push(P, &v, n, NULL, 0);
            next_tok(P);
        } else if (t->type == TK_VAR_BEGIN) {
            next_tok(P);
            jnode *n = mk(P, S_PRINT, t->line);
            n->a = parse_tuple(P, 0, 1, NULL, 0, 0);
            nv_push(P, &v, n, NULL, 0);
            expect_type(P, TK_VAR_END, "end of print statement");
        } else if (t->type == TK_BLOCK_BEGIN) {
            next_tok(P);
            if (end_tags && cur(P)->type == TK_NAME) {
                int is_end = 0;
                for (int i = 0; end_tags[i]; i++)
                    if (!strcmp(cur(P)->s, end_tags[i])) is_end = 1;
                if (is_end) break;
            }
            nv_push(P, &v, parse_statement(P), NULL, 0);
            expect_type(P, TK_BLOCK_END, "end of statement block");
        } else {
            jj_cfail(P->c, FM_ERR_FORMAT, t->line, "unexpected '%s'", describe(t));
        }
    }
    *body = v.v;
    *nbody = v.n;
}

/* ---- constant folding -----------------------------------------------------------------------
   jinja2 evaluates constant subexpressions at compile time (nodes.as_const). That is invisible
   except for slices: a folded obj[a:b] goes through environment.getitem, where an error gives an
   undefined, while at run time jinja2 compiles slices to Python's own obj[a:b], which raises. The
   optimizer keeps a folded value only when it has a safe repr (not an undefined), but a parent
   such as `not`, a comparison, a test, `~` or a filter turns the undefined into a plain value, and
   a {{ }} output of a constant expression is folded whatever its value. */

static int foldable_filter(const char *name) {
    /* the @pass_context ones cannot be folded */
    static const char *const no[] = {"map", "random", "reject", "rejectattr", "select", "selectattr", NULL};
    for (int i = 0; no[i]; i++)
        if (!strcmp(no[i], name)) return 0;
    return 1;
}

/* Is the expression made of constants only (as_const could succeed)? */
static int is_const(const jnode *n) {
    if (!n) return 1;
    switch (n->kind) {
    case E_CONST: return 1;
    case E_LIST:
    case E_TUPLE:
    case E_DICT:
    case E_CONCAT:
        for (size_t i = 0; i < n->nargs; i++)
            if (!is_const(n->args[i])) return 0;
        return 1;
    case E_CMP:
        for (size_t i = 0; i < n->nargs; i++)
            if (!is_const(n->args[i])) return 0;
        return is_const(n->a);
    case E_FILTER:
        if (!n->a || !foldable_filter(n->name)) return 0;
        /* fall through */
    case E_TEST:
        for (size_t i = 0; i < n->nargs; i++)
            if (!is_const(n->args[i])) return 0;
        return is_const(n->a);
    case E_NOT:
    case E_NEG:
    case E_POS:
    case E_GETATTR: return is_const(n->a);
    case E_BIN:
    case E_AND:
    case E_OR:
    case E_GETITEM: return is_const(n->a) && is_const(n->b);
    case E_SLICE: return is_const(n->a) && is_const(n->b) && is_const(n->c);
    case E_COND: return is_const(n->a) && is_const(n->b) && is_const(n->c);
    default: return 0;
    }
}

static void mark_folds(jnode *n, int folded) {
    if (!n) return;
    int c = is_const(n);
    if (!c) folded = 0;
    if (n->kind == E_GETITEM && n->b && n->b->kind == E_SLICE) n->op = (uint8_t)folded;
    int child = folded || (c && (n->kind == E_NOT || n->kind == E_CMP || n->kind == E_TEST || n->kind == E_CONCAT ||
                                 n->kind == E_FILTER));
    mark_folds(n->a, child);
    mark_folds(n->b, child);
    mark_folds(n->c, child);
    mark_folds(n->d, child);
    for (size_t i = 0; i < n->nargs; i++) mark_folds(n->args[i], child);
}

static void fold_pass(jnode *n) {
    if (!n) return;
    if (n->kind < S_TEXT) {
        mark_folds(n, 0);
        return;
    }
    if (n->kind == S_PRINT) { /* output children: folded whatever the value */
        if (n->a) mark_folds(n->a, is_const(n->a));
        for (size_t i = 0; i < n->nargs; i++) mark_folds(n->args[i], is_const(n->args[i]));
        return;
    }
    fold_pass(n->a);
    fold_pass(n->b);
    fold_pass(n->c);
    fold_pass(n->d);
    for (size_t i = 0; i < n->nargs; i++) {
        fold_pass(n->args[i]);
        if (n->defs) fold_pass(n->defs[i]);
    }
    for (size_t i = 0; i < n->nbody; i++) fold_pass(n->body[i]);
    for (size_t i = 0; i < n->nelse; i++) fold_pass(n->else_body[i]);
}

void jj_parse(jj_cctx *c, const jtok *toks, size_t ntoks, jnode ***body, size_t *nbody) {
    parser P = {c, toks, 0, ntoks, 0};
    subparse(&P, NULL, body, nbody);
    for (size_t i = 0; i < *nbody; i++) fold_pass((*body)[i]);
}
