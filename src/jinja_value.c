/* jinja_value.c - the chat-template engine's values: the compile arena, the render's tracked
   allocations, reference counting, and Python's semantics for str()/repr()/==/</json.dumps, plus
   the UTF-8 and Unicode helpers they need. */
#include "jinja.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================================================
 * Compile-time arena
 * ============================================================================================== */

struct jj_ablock {
    jj_ablock *next;
    size_t used, cap;
    /* data follows, 16-aligned */
};
#define JJ_ABLOCK_HDR ((sizeof(jj_ablock) + 15u) & ~(size_t)15u)

void *jj_arena_alloc(jj_arena *a, size_t n) {
    n = (n + 15u) & ~(size_t)15u;
    jj_ablock *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(JJ_ABLOCK_HDR + cap);
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = (char *)b + JJ_ABLOCK_HDR + b->used;
    b->used += n;
    return p;
}

void jj_arena_free(jj_arena *a) {
    jj_ablock *b = a->head;
    while (b) {
        jj_ablock *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

void jj_cfail(jj_cctx *c, fm_status st, int line, const char *fmt, ...) {
    char m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    c->status = st;
    if (line > 0)
        snprintf(c->msg, sizeof c->msg, "chat template line %d: %s", line, m);
    else
        snprintf(c->msg, sizeof c->msg, "chat template: %s", m);
    longjmp(c->jmp, 1);
}

void *jj_calloc(jj_cctx *c, size_t n) {
    void *p = jj_arena_alloc(c->arena, n ? n : 1);
    if (!p) jj_cfail(c, FM_ERR_OUT_OF_MEMORY, 0, "out of memory");
    memset(p, 0, n);
    return p;
}

const char *jj_cstrdup(jj_cctx *c, const char *s, size_t n) {
    char *p = jj_calloc(c, n + 1);
    memcpy(p, s, n);
    return p;
}

jv jv_str_immortal(jj_cctx *c, const char *s, size_t n) {
    char *blk = jj_calloc(c, JJ_HDR + sizeof(jstr) + n + 1);
    jhdr *h = (jhdr *)(void *)blk;
    h->rc = -1;
    h->tag = JT_STR;
    jstr *js = (jstr *)(void *)(blk + JJ_HDR);
    js->len = n;
    memcpy(js->s, s, n);
    js->s[n] = 0;
    jv v = {JV_STR, 0, {0}};
    v.u.p = js;
    return v;
}

/* ================================================================================================
 * Render context: tracked allocations, errors
 * ============================================================================================== */

void jj_ctx_init(jj_ctx *x) {
    memset(x, 0, sizeof *x);
    x->live.prev = x->live.next = &x->live;
    x->status = FM_OK;
}

void jj_ctx_free_all(jj_ctx *x) {
    jhdr *h = x->live.next;
    while (h != &x->live) {
        jhdr *next = h->next;
        free(h);
        h = next;
    }
    x->live.prev = x->live.next = &x->live;
}

void jj_fail(jj_ctx *x, fm_status st, const char *fmt, ...) {
    char m[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    x->status = st;
    if (x->line > 0)
        snprintf(x->msg, sizeof x->msg, "chat template line %d: %s", x->line, m);
    else
        snprintf(x->msg, sizeof x->msg, "chat template: %s", m);
    longjmp(x->jmp, 1);
}

void jj_step(jj_ctx *x, uint64_t n) {
    x->steps += n;
    if (x->steps > JJ_MAX_STEPS)
        jj_limit(x, "rendering exceeded the engine's work limit");
}

void *jj_alloc(jj_ctx *x, size_t n, uint8_t tag) {
    if (n > JJ_MAX_ALLOC || x->bytes + n > JJ_MAX_ALLOC)
        jj_limit(x, "rendering exceeded the engine's memory limit");
    jhdr *h = malloc(JJ_HDR + n);
    if (!h) jj_fail(x, FM_ERR_OUT_OF_MEMORY, "out of memory");
    x->bytes += n;
    jj_step(x, 1 + n / 256);
    h->size = n;
    h->rc = 1;
    h->tag = tag;
    h->next = x->live.next;
    h->prev = &x->live;
    x->live.next->prev = h;
    x->live.next = h;
    return (char *)h + JJ_HDR;
}

void *jj_realloc(jj_ctx *x, void *p, size_t n) {
    if (!p) return jj_alloc(x, n, JT_RAW);
    if (n > JJ_MAX_ALLOC) jj_limit(x, "rendering exceeded the engine's memory limit");
    jhdr *h = JJ_HDR_OF(p);
    if (n > h->size && x->bytes + (n - h->size) > JJ_MAX_ALLOC)
        jj_limit(x, "rendering exceeded the engine's memory limit");
    jhdr *prev = h->prev, *next = h->next;
    jhdr *nh = realloc(h, JJ_HDR + n);
    if (!nh) jj_fail(x, FM_ERR_OUT_OF_MEMORY, "out of memory");
    x->bytes = x->bytes - nh->size + n;
    nh->size = n;
    jj_step(x, 1 + n / 256);
    prev->next = nh;
    next->prev = nh;
    return (char *)nh + JJ_HDR;
}

void jj_free(jj_ctx *x, void *p) {
    if (!p) return;
    jhdr *h = JJ_HDR_OF(p);
    if (h->rc < 0) return;
    x->bytes -= h->size;
    h->prev->next = h->next;
    h->next->prev = h->prev;
    free(h);
}

/* ================================================================================================
 * String builder
 * ============================================================================================== */

void jsb_init(jj_ctx *x, jsb *b) {
    (void)x;
    b->p = NULL;
    b->n = b->cap = 0;
}

static void jsb_reserve(jj_ctx *x, jsb *b, size_t add) {
    if (add > JJ_MAX_STRING || b->n + add > JJ_MAX_STRING)
        jj_limit(x, "a string exceeds the engine's 64 MiB limit");
    size_t need = b->n + add + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    b->p = jj_realloc(x, b->p, cap);
    b->cap = cap;
}

void jsb_put(jj_ctx *x, jsb *b, const char *s, size_t n) {
    if (!n) return;
    jsb_reserve(x, b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jsb_putc(jj_ctx *x, jsb *b, char ch) { jsb_put(x, b, &ch, 1); }

void jsb_printf(jj_ctx *x, jsb *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k >= sizeof tmp) k = (int)sizeof tmp - 1;
    jsb_put(x, b, tmp, (size_t)k);
}

void jsb_put_cp(jj_ctx *x, jsb *b, uint32_t cp) {
    char u[4];
    int k = jj_utf8_put(u, cp);
    jsb_put(x, b, u, (size_t)k);
}

jv jsb_take(jj_ctx *x, jsb *b) {
    jv v = jv_str(x, b->p ? b->p : "", b->n);
    jsb_free(x, b);
    return v;
}

void jsb_free(jj_ctx *x, jsb *b) {
    jj_free(x, b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ================================================================================================
 * Constructors, reference counting
 * ============================================================================================== */

jv jv_str(jj_ctx *x, const char *s, size_t n) {
    if (n > JJ_MAX_STRING) jj_limit(x, "a string exceeds the engine's 64 MiB limit");
    jstr *js = jj_alloc(x, sizeof(jstr) + n + 1, JT_STR);
    js->len = n;
    if (n) memcpy(js->s, s, n);
    js->s[n] = 0;
    jv v = {JV_STR, 0, {0}};
    v.u.p = js;
    return v;
}

jv jv_cstr(jj_ctx *x, const char *s) { return jv_str(x, s, strlen(s)); }

jv jv_list(jj_ctx *x, int sub, size_t cap) {
    jlist *l = jj_alloc(x, sizeof(jlist), JT_LIST);
    l->sub = (uint8_t)sub;
    l->n = l->pos = 0;
    l->range[0] = l->range[1] = 0;
    l->range[2] = 1;
    l->err = jv_none();
    l->cap = 0;
    l->v = NULL;
    if (cap) {
        if (cap > JJ_MAX_ITEMS) jj_limit(x, "a list exceeds the engine's item limit");
        l->v = jj_alloc(x, cap * sizeof(jv), JT_RAW);
        l->cap = cap;
    }
    jv v = {JV_LIST, 0, {0}};
    v.u.p = l;
    return v;
}

jv jv_dict(jj_ctx *x, int kind) {
    jdict *d = jj_alloc(x, sizeof(jdict), JT_DICT);
    d->n = d->cap = 0;
    d->kv = NULL;
    jv v = {(uint8_t)kind, 0, {0}};
    v.u.p = d;
    return v;
}

jv jv_method(jj_ctx *x, jv self, const char *name) {
    jmeth *m = jj_alloc(x, sizeof(jmeth), JT_METH);
    m->self = jv_retain(self);
    m->name = name;
    jv v = {JV_METHOD, 0, {0}};
    v.u.p = m;
    return v;
}

jv jv_loop(jj_ctx *x, jv items) {
    jloop *l = jj_alloc(x, sizeof(jloop), JT_LOOP);
    l->items = jv_retain(items);
    l->i = 0;
    l->n = JL(items)->n;
    jv v = {JV_LOOP, 0, {0}};
    v.u.p = l;
    return v;
}

static int is_ref(jv v) {
    return v.kind == JV_STR || v.kind == JV_LIST || v.kind == JV_DICT || v.kind == JV_NS ||
           v.kind == JV_LOOP || v.kind == JV_METHOD;
}

jv jv_retain(jv v) {
    if (is_ref(v)) {
        jhdr *h = JJ_HDR_OF(v.u.p);
        if (h->rc >= 0) h->rc++;
    }
    return v;
}

static void release_depth(jj_ctx *x, jv v, int depth) {
    if (!is_ref(v)) return;
    jhdr *h = JJ_HDR_OF(v.u.p);
    if (h->rc < 0) return;
    if (--h->rc > 0) return;
    /* Past this depth the block stays on the live list; the final sweep frees it. This keeps a
       deeply nested structure from exhausting the C stack. */
    if (depth > 64) return;
    switch (v.kind) {
    case JV_LIST: {
        jlist *l = JL(v);
        for (size_t i = 0; i < l->n; i++) release_depth(x, l->v[i], depth + 1);
        release_depth(x, l->err, depth + 1);
        jj_free(x, l->v);
        break;
    }
    case JV_DICT:
    case JV_NS: {
        jdict *d = JD(v);
        for (size_t i = 0; i < 2 * d->n; i++) release_depth(x, d->kv[i], depth + 1);
        jj_free(x, d->kv);
        break;
    }
    case JV_LOOP: release_depth(x, ((jloop *)v.u.p)->items, depth + 1); break;
    case JV_METHOD: release_depth(x, ((jmeth *)v.u.p)->self, depth + 1); break;
    default: break;
    }
    jj_free(x, v.u.p);
}

void jv_release(jj_ctx *x, jv v) { release_depth(x, v, 0); }

void jl_push(jj_ctx *x, jv list, jv item) {
    jlist *l = JL(list);
    if (l->n == l->cap) {
        if (l->n >= JJ_MAX_ITEMS) {
            jv_release(x, item);
            jj_limit(x, "a list exceeds the engine's item limit");
        }
        size_t cap = l->cap ? l->cap * 2 : 8;
        l->v = jj_realloc(x, l->v, cap * sizeof(jv));
        l->cap = cap;
    }
    l->v[l->n++] = item;
}

jv *jd_find(jv dict, jv key) {
    jdict *d = JD(dict);
    for (size_t i = 0; i < d->n; i++) {
        jv k = d->kv[2 * i];
        /* keys are hashable scalars or tuples of them; a cheap structural compare suffices for
           the common cases, jv_eq (needs a ctx only for errors) for the rest */
        if (k.kind == JV_STR && key.kind == JV_STR) {
            if (JS(k)->len == JS(key)->len && memcmp(JS(k)->s, JS(key)->s, JS(k)->len) == 0)
                return &d->kv[2 * i + 1];
            continue;
        }
        if (k.kind == JV_STR || key.kind == JV_STR) continue;
        if ((k.kind == JV_INT || k.kind == JV_BOOL || k.kind == JV_FLOAT) &&
            (key.kind == JV_INT || key.kind == JV_BOOL || key.kind == JV_FLOAT)) {
            double a = k.kind == JV_FLOAT ? k.u.f : (double)k.u.i;
            double b = key.kind == JV_FLOAT ? key.u.f : (double)key.u.i;
            if (a == b) return &d->kv[2 * i + 1];
            continue;
        }
        if (k.kind == JV_NONE && key.kind == JV_NONE) return &d->kv[2 * i + 1];
        if (k.kind == JV_LIST && key.kind == JV_LIST && jv_eq(NULL, k, key)) return &d->kv[2 * i + 1];
    }
    return NULL;
}

jv *jd_find_str(jv dict, const char *key) {
    jdict *d = JD(dict);
    size_t n = strlen(key);
    for (size_t i = 0; i < d->n; i++) {
        jv k = d->kv[2 * i];
        if (k.kind == JV_STR && JS(k)->len == n && memcmp(JS(k)->s, key, n) == 0) return &d->kv[2 * i + 1];
    }
    return NULL;
}

void jd_set(jj_ctx *x, jv dict, jv key, jv val) {
    jv *slot = jd_find(dict, key);
    if (slot) {
        jv old = *slot;
        *slot = val;
        jv_release(x, key);
        jv_release(x, old);
        return;
    }
    jdict *d = JD(dict);
    if (d->n == d->cap) {
        if (d->n >= JJ_MAX_ITEMS) {
            jv_release(x, key);
            jv_release(x, val);
            jj_limit(x, "a dict exceeds the engine's item limit");
        }
        size_t cap = d->cap ? d->cap * 2 : 4;
        d->kv = jj_realloc(x, d->kv, 2 * cap * sizeof(jv));
        d->cap = cap;
    }
    d->kv[2 * d->n] = key;
    d->kv[2 * d->n + 1] = val;
    d->n++;
}

/* ================================================================================================
 * Python semantics
 * ============================================================================================== */

int jv_truthy(jv v) {
    switch (v.kind) {
    case JV_UNDEF:
    case JV_NONE: return 0;
    case JV_BOOL:
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return JS(v)->len != 0;
    case JV_LIST: return JL(v)->sub == JL_ITER ? 1 : JL(v)->n != 0;
    case JV_DICT: return JD(v)->n != 0;
    default: return 1;
    }
}

const char *jv_type_name(jv v) {
    switch (v.kind) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return (v.flags & JVF_MARKUP) ? "Markup" : "str";
    case JV_LIST:
        switch (JL(v)->sub) {
        case JL_TUPLE: return "tuple";
        case JL_ITER: return "generator";
        case JL_ITEMS: return "dict_items";
        case JL_KEYS: return "dict_keys";
        case JL_VALUES: return "dict_values";
        case JL_RANGE: return "range";
        default: return "list";
        }
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_LOOP: return "LoopContext";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "function";
    case JV_METHOD: return "builtin_function_or_method";
    }
    return "object";
}

int jv_hashable(jv v) {
    switch (v.kind) {
    case JV_NONE:
    case JV_BOOL:
    case JV_INT:
    case JV_FLOAT:
    case JV_STR:
    case JV_UNDEF: return 1;
    case JV_LIST:
        if (JL(v)->sub != JL_TUPLE) return JL(v)->sub == JL_ITER || JL(v)->sub == JL_RANGE;
        for (size_t i = 0; i < JL(v)->n; i++)
            if (!jv_hashable(JL(v)->v[i])) return 0;
        return 1;
    case JV_DICT: return 0;
    default: return 1;
    }
}

_Noreturn void jj_undefined_error(jj_ctx *x, jv u) {
    if (u.flags == JVF_U_MSG && u.u.s) jj_raise(x, "UndefinedError: %s", u.u.s);
    if (u.flags == JVF_U_ATTR && u.u.s) jj_raise(x, "UndefinedError: object has no attribute or key '%s'", u.u.s);
    if (u.u.s) jj_raise(x, "UndefinedError: '%s' is undefined", u.u.s);
    jj_raise(x, "UndefinedError: a value is undefined");
}

static int is_num(jv v) { return v.kind == JV_BOOL || v.kind == JV_INT || v.kind == JV_FLOAT; }

static int num_cmp(jv a, jv b) { /* -1, 0, 1; NaN -> 2 */
    if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) return a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
    double da = a.kind == JV_FLOAT ? a.u.f : (double)a.u.i;
    double db = b.kind == JV_FLOAT ? b.u.f : (double)b.u.i;
    if (da != da || db != db) return 2;
    return da < db ? -1 : da > db;
}

static int eq_depth(jj_ctx *x, jv a, jv b, int depth) {
    if (depth > JJ_MAX_REPR_DEPTH) {
        if (x) jj_raise(x, "RecursionError: maximum recursion depth exceeded in comparison");
        return 0;
    }
    if (is_num(a) && is_num(b)) return num_cmp(a, b) == 0;
    if (a.kind != b.kind) return 0;
    switch (a.kind) {
    case JV_UNDEF:
    case JV_NONE: return 1;
    case JV_STR: return JS(a)->len == JS(b)->len && memcmp(JS(a)->s, JS(b)->s, JS(a)->len) == 0;
    case JV_LIST: {
        jlist *la = JL(a), *lb = JL(b);
        if (la == lb) return 1;
        if (la->sub == JL_ITER || lb->sub == JL_ITER) return 0;
        int ta = la->sub == JL_TUPLE, tb = lb->sub == JL_TUPLE;
        if (ta != tb || (la->sub == JL_RANGE) != (lb->sub == JL_RANGE)) return 0;
        if ((la->sub >= JL_ITEMS && la->sub <= JL_VALUES) != (lb->sub >= JL_ITEMS && lb->sub <= JL_VALUES)) return 0;
        if (la->sub == JL_VALUES || lb->sub == JL_VALUES) return 0; /* dict_values: identity */
        if (la->n != lb->n) return 0;
        for (size_t i = 0; i < la->n; i++)
            if (!eq_depth(x, la->v[i], lb->v[i], depth + 1)) return 0;
        return 1;
    }
    case JV_DICT: {
        jdict *da = JD(a), *db = JD(b);
        if (da == db) return 1;
        if (da->n != db->n) return 0;
        for (size_t i = 0; i < da->n; i++) {
            jv *o = jd_find(b, da->kv[2 * i]);
            if (!o || !eq_depth(x, da->kv[2 * i + 1], *o, depth + 1)) return 0;
        }
        return 1;
    }
    case JV_FUNC: return a.u.i == b.u.i;
    default: return a.u.p == b.u.p;
    }
}

int jv_eq(jj_ctx *x, jv a, jv b) { return eq_depth(x, a, b, 0); }

static int lt_depth(jj_ctx *x, jv a, jv b, int depth) {
    if (depth > JJ_MAX_REPR_DEPTH) jj_raise(x, "RecursionError: maximum recursion depth exceeded in comparison");
    if (a.kind == JV_UNDEF) jj_undefined_error(x, a);
    if (b.kind == JV_UNDEF) jj_undefined_error(x, b);
    if (is_num(a) && is_num(b)) return num_cmp(a, b) == -1;
    if (a.kind == JV_STR && b.kind == JV_STR) {
        size_t n = JS(a)->len < JS(b)->len ? JS(a)->len : JS(b)->len;
        int c = memcmp(JS(a)->s, JS(b)->s, n);
        return c < 0 || (c == 0 && JS(a)->len < JS(b)->len);
    }
    if (a.kind == JV_LIST && b.kind == JV_LIST && JL(a)->sub == JL(b)->sub &&
        (JL(a)->sub == JL_LIST || JL(a)->sub == JL_TUPLE)) {
        jlist *la = JL(a), *lb = JL(b);
        size_t n = la->n < lb->n ? la->n : lb->n;
        for (size_t i = 0; i < n; i++) {
            if (eq_depth(x, la->v[i], lb->v[i], depth + 1)) continue;
            return lt_depth(x, la->v[i], lb->v[i], depth + 1);
        }
        return la->n < lb->n;
    }
    jj_raise(x, "TypeError: '<' not supported between instances of '%s' and '%s'", jv_type_name(a),
             jv_type_name(b));
}

int jv_lt(jj_ctx *x, jv a, jv b) { return lt_depth(x, a, b, 0); }

/* repr(float), Python's shortest round-trip form */
void jv_write_float(char *buf, size_t cap, double d) {
    if (d != d) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, cap, d < 0 ? "-inf" : "inf");
        return;
    }
    if (d == 0) {
        snprintf(buf, cap, signbit(d) ? "-0.0" : "0.0");
        return;
    }
    char tmp[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    /* tmp: [-]D[.DDD]e[+-]XX */
    char digits[32];
    size_t nd = 0;
    const char *p = tmp;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    while (*p && *p != 'e') {
        if (*p >= '0' && *p <= '9' && nd < sizeof digits - 1) digits[nd++] = *p;
        p++;
    }
    digits[nd] = 0;
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = 0;
    int decpt = exp10 + 1;
    char out[80];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (decpt <= -4 || decpt > 16) {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nd; i++) out[o++] = digits[i];
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    } else if (decpt <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -decpt; i++) out[o++] = '0';
        for (size_t i = 0; i < nd; i++) out[o++] = digits[i];
    } else if ((size_t)decpt >= nd) {
        for (size_t i = 0; i < nd; i++) out[o++] = digits[i];
        for (size_t i = nd; i < (size_t)decpt; i++) out[o++] = '0';
        out[o++] = '.';
        out[o++] = '0';
    } else {
        for (size_t i = 0; i < (size_t)decpt; i++) out[o++] = digits[i];
        out[o++] = '.';
        for (size_t i = (size_t)decpt; i < nd; i++) out[o++] = digits[i];
    }
    out[o] = 0;
    snprintf(buf, cap, "%s", out);
}

static void write_str_repr(jj_ctx *x, jsb *b, const char *s, size_t n) {
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    jsb_putc(x, b, q);
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        uint32_t cp = jj_utf8_next(s, n, &i);
        if (cp == (uint32_t)q || cp == '\\') {
            jsb_putc(x, b, '\\');
            jsb_putc(x, b, (char)cp);
        } else if (cp == '\n') jsb_put(x, b, "\\n", 2);
        else if (cp == '\r') jsb_put(x, b, "\\r", 2);
        else if (cp == '\t') jsb_put(x, b, "\\t", 2);
        else if (cp < 0x20 || cp == 0x7f) jsb_printf(x, b, "\\x%02x", cp);
        else if (cp < 0x7f) jsb_putc(x, b, (char)cp);
        else if (!jj_is_printable(cp)) {
            if (cp < 0x100) jsb_printf(x, b, "\\x%02x", cp);
            else if (cp < 0x10000) jsb_printf(x, b, "\\u%04x", cp);
            else jsb_printf(x, b, "\\U%08x", cp);
        } else jsb_put(x, b, s + start, i - start);
    }
    jsb_putc(x, b, q);
}

static void write_depth(jj_ctx *x, jsb *b, jv v, int repr, int depth);

static void write_seq(jj_ctx *x, jsb *b, jlist *l, const char *open, const char *close, int depth) {
    jsb_put(x, b, open, strlen(open));
    for (size_t i = 0; i < l->n; i++) {
        if (i) jsb_put(x, b, ", ", 2);
        write_depth(x, b, l->v[i], 1, depth + 1);
    }
    if (l->sub == JL_TUPLE && l->n == 1) jsb_putc(x, b, ',');
    jsb_put(x, b, close, strlen(close));
}

static void write_dict(jj_ctx *x, jsb *b, jdict *d, int depth) {
    jsb_putc(x, b, '{');
    for (size_t i = 0; i < d->n; i++) {
        if (i) jsb_put(x, b, ", ", 2);
        write_depth(x, b, d->kv[2 * i], 1, depth + 1);
        jsb_put(x, b, ": ", 2);
        write_depth(x, b, d->kv[2 * i + 1], 1, depth + 1);
    }
    jsb_putc(x, b, '}');
}

static void write_depth(jj_ctx *x, jsb *b, jv v, int repr, int depth) {
    if (depth > JJ_MAX_REPR_DEPTH) jj_raise(x, "RecursionError: maximum recursion depth exceeded while getting the repr of an object");
    char num[64];
    switch (v.kind) {
    case JV_UNDEF:
        if (repr) jsb_put(x, b, "Undefined", 9);
        return;
    case JV_NONE: jsb_put(x, b, "None", 4); return;
    case JV_BOOL: jsb_put(x, b, v.u.i ? "True" : "False", v.u.i ? 4 : 5); return;
    case JV_INT: jsb_printf(x, b, "%lld", (long long)v.u.i); return;
    case JV_FLOAT:
        jv_write_float(num, sizeof num, v.u.f);
        jsb_put(x, b, num, strlen(num));
        return;
    case JV_STR:
        if (!repr) {
            jsb_put(x, b, JS(v)->s, JS(v)->len);
        } else if (v.flags & JVF_MARKUP) {
            jsb_put(x, b, "Markup(", 7);
            write_str_repr(x, b, JS(v)->s, JS(v)->len);
            jsb_putc(x, b, ')');
        } else {
            write_str_repr(x, b, JS(v)->s, JS(v)->len);
        }
        return;
    case JV_LIST: {
        jlist *l = JL(v);
        switch (l->sub) {
        case JL_LIST: write_seq(x, b, l, "[", "]", depth); return;
        case JL_TUPLE: write_seq(x, b, l, "(", ")", depth); return;
        case JL_ITEMS: write_seq(x, b, l, "dict_items([", "])", depth); return;
        case JL_KEYS: write_seq(x, b, l, "dict_keys([", "])", depth); return;
        case JL_VALUES: write_seq(x, b, l, "dict_values([", "])", depth); return;
        case JL_RANGE:
            if (l->range[2] == 1) jsb_printf(x, b, "range(%lld, %lld)", (long long)l->range[0], (long long)l->range[1]);
            else jsb_printf(x, b, "range(%lld, %lld, %lld)", (long long)l->range[0], (long long)l->range[1], (long long)l->range[2]);
            return;
        default: jj_unsup(x, "printing a generator/iterator object is not supported (it shows a memory address)");
        }
    }
    case JV_DICT: write_dict(x, b, JD(v), depth); return;
    case JV_NS:
        jsb_put(x, b, "<Namespace ", 11);
        write_dict(x, b, JD(v), depth);
        jsb_putc(x, b, '>');
        return;
    case JV_LOOP: {
        jloop *l = v.u.p;
        jsb_printf(x, b, "<LoopContext %zu/%zu>", l->i + 1, l->n);
        return;
    }
    case JV_FUNC: {
        static const char *const reprs[] = {NULL /* sandbox safe_range */, "<class 'jinja2.utils.Namespace'>", "<class 'dict'>",
                                            NULL, NULL, NULL, "<class 'jinja2.utils.Cycler'>", "<class 'jinja2.utils.Joiner'>"};
        if (v.u.i >= 0 && v.u.i < (int64_t)(sizeof reprs / sizeof *reprs) && reprs[v.u.i]) {
            jsb_put(x, b, reprs[v.u.i], strlen(reprs[v.u.i]));
            return;
        }
        jj_unsup(x, "printing a function is not supported (it shows a memory address)");
    }
    case JV_MACRO: {
        const jnode *m = v.u.p;
        jsb_put(x, b, "<Macro ", 7);
        write_str_repr(x, b, m->name, strlen(m->name));
        jsb_putc(x, b, '>');
        return;
    }
    default: jj_unsup(x, "printing a %s object is not supported (it shows a memory address)", jv_type_name(v));
    }
}

void jv_write_str(jj_ctx *x, jsb *b, jv v) { write_depth(x, b, v, 0, 0); }
void jv_write_repr(jj_ctx *x, jsb *b, jv v) { write_depth(x, b, v, 1, 0); }

jv jv_to_str(jj_ctx *x, jv v) {
    if (v.kind == JV_STR) return jv_retain(v);
    jsb b;
    jsb_init(x, &b);
    jv_write_str(x, &b, v);
    return jsb_take(x, &b);
}

/* ---- json.dumps ------------------------------------------------------------------------------ */

typedef struct json_opts {
    int ensure_ascii;
    const char *indent; /* NULL = no indent */
    const char *item_sep, *key_sep;
    int sort_keys;
} json_opts;

static void json_str(jj_ctx *x, jsb *b, const char *s, size_t n, int ensure_ascii) {
    jsb_putc(x, b, '"');
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        uint32_t cp = jj_utf8_next(s, n, &i);
        switch (cp) {
        case '"': jsb_put(x, b, "\\\"", 2); continue;
        case '\\': jsb_put(x, b, "\\\\", 2); continue;
        case '\n': jsb_put(x, b, "\\n", 2); continue;
        case '\r': jsb_put(x, b, "\\r", 2); continue;
        case '\t': jsb_put(x, b, "\\t", 2); continue;
        case '\b': jsb_put(x, b, "\\b", 2); continue;
        case '\f': jsb_put(x, b, "\\f", 2); continue;
        default: break;
        }
        if (cp < 0x20) jsb_printf(x, b, "\\u%04x", cp);
        else if (ensure_ascii && cp >= 0x7f) {
            if (cp >= 0x10000) {
                uint32_t c = cp - 0x10000;
                jsb_printf(x, b, "\\u%04x\\u%04x", 0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
            } else jsb_printf(x, b, "\\u%04x", cp);
        } else jsb_put(x, b, s + start, i - start);
    }
    jsb_putc(x, b, '"');
}

static void json_float(jj_ctx *x, jsb *b, double d) {
    if (d != d) jsb_put(x, b, "NaN", 3);
    else if (isinf(d)) jsb_put(x, b, d < 0 ? "-Infinity" : "Infinity", d < 0 ? 9 : 8);
    else {
        char num[64];
        jv_write_float(num, sizeof num, d);
        jsb_put(x, b, num, strlen(num));
    }
}

static void json_newline(jj_ctx *x, jsb *b, const json_opts *o, int level) {
    jsb_putc(x, b, '\n');
    size_t il = strlen(o->indent);
    for (int i = 0; i < level; i++) jsb_put(x, b, o->indent, il);
}

static void json_value(jj_ctx *x, jsb *b, jv v, const json_opts *o, int level);

static void json_key(jj_ctx *x, jsb *b, jv k, const json_opts *o) {
    switch (k.kind) {
    case JV_STR: json_str(x, b, JS(k)->s, JS(k)->len, o->ensure_ascii); return;
    case JV_INT: jsb_printf(x, b, "\"%lld\"", (long long)k.u.i); return;
    case JV_FLOAT:
        jsb_putc(x, b, '"');
        json_float(x, b, k.u.f);
        jsb_putc(x, b, '"');
        return;
    case JV_BOOL: jsb_put(x, b, k.u.i ? "\"true\"" : "\"false\"", k.u.i ? 6 : 7); return;
    case JV_NONE: jsb_put(x, b, "\"null\"", 6); return;
    default: jj_raise(x, "TypeError: keys must be str, int, float, bool or None, not %s", jv_type_name(k));
    }
}

static void json_value(jj_ctx *x, jsb *b, jv v, const json_opts *o, int level) {
    if (level > JJ_MAX_REPR_DEPTH) jj_raise(x, "RecursionError: maximum recursion depth exceeded while encoding a JSON object");
    switch (v.kind) {
    case JV_NONE: jsb_put(x, b, "null", 4); return;
    case JV_BOOL: jsb_put(x, b, v.u.i ? "true" : "false", v.u.i ? 4 : 5); return;
    case JV_INT: jsb_printf(x, b, "%lld", (long long)v.u.i); return;
    case JV_FLOAT: json_float(x, b, v.u.f); return;
    case JV_STR: json_str(x, b, JS(v)->s, JS(v)->len, o->ensure_ascii); return;
    case JV_LIST: {
        jlist *l = JL(v);
        if (l->sub != JL_LIST && l->sub != JL_TUPLE)
            jj_raise(x, "TypeError: Object of type %s is not JSON serializable", jv_type_name(v));
        if (l->n == 0) {
            jsb_put(x, b, "[]", 2);
            return;
        }
        jsb_putc(x, b, '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i) jsb_put(x, b, o->item_sep, strlen(o->item_sep));
            if (o->indent) json_newline(x, b, o, level + 1);
            json_value(x, b, l->v[i], o, level + 1);
        }
        if (o->indent) json_newline(x, b, o, level);
        jsb_putc(x, b, ']');
        return;
    }
    case JV_DICT: {
        jdict *d = JD(v);
        if (d->n == 0) {
            jsb_put(x, b, "{}", 2);
            return;
        }
        size_t *order = jj_alloc(x, d->n * sizeof(size_t), JT_RAW);
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (o->sort_keys) { /* insertion sort, stable, Python's < on the keys */
            for (size_t i = 1; i < d->n; i++) {
                size_t cur = order[i], j = i;
                while (j > 0 && jv_lt(x, d->kv[2 * cur], d->kv[2 * order[j - 1]])) {
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = cur;
            }
        }
        jsb_putc(x, b, '{');
        for (size_t i = 0; i < d->n; i++) {
            if (i) jsb_put(x, b, o->item_sep, strlen(o->item_sep));
            if (o->indent) json_newline(x, b, o, level + 1);
            json_key(x, b, d->kv[2 * order[i]], o);
            jsb_put(x, b, o->key_sep, strlen(o->key_sep));
            json_value(x, b, d->kv[2 * order[i] + 1], o, level + 1);
        }
        jj_free(x, order);
        if (o->indent) json_newline(x, b, o, level);
        jsb_putc(x, b, '}');
        return;
    }
    default: jj_raise(x, "TypeError: Object of type %s is not JSON serializable", jv_type_name(v));
    }
}

void jv_write_json(jj_ctx *x, jsb *b, jv v, int ensure_ascii, const char *indent, int has_indent,
                   const char *item_sep, const char *key_sep, int sort_keys) {
    json_opts o;
    o.ensure_ascii = ensure_ascii;
    o.indent = has_indent ? indent : NULL;
    o.item_sep = item_sep ? item_sep : (has_indent ? "," : ", ");
    o.key_sep = key_sep ? key_sep : ": ";
    o.sort_keys = sort_keys;
    json_value(x, b, v, &o, 0);
}

/* ---- iteration, len ------------------------------------------------------------------------ */

jv jv_iterate(jj_ctx *x, jv v) {
    switch (v.kind) {
    case JV_UNDEF: return jv_list(x, JL_LIST, 0);
    case JV_STR: {
        jstr *s = JS(v);
        jv out = jv_list(x, JL_LIST, 0);
        size_t i = 0;
        while (i < s->len) {
            size_t start = i;
            jj_utf8_next(s->s, s->len, &i);
            jv ch = jv_str(x, s->s + start, i - start);
            ch.flags = v.flags;
            jl_push(x, out, ch);
        }
        return out;
    }
    case JV_LIST: {
        jlist *l = JL(v);
        size_t from = l->sub == JL_ITER ? l->pos : 0;
        jv out = jv_list(x, JL_LIST, l->n - from);
        for (size_t i = from; i < l->n; i++) jl_push(x, out, jv_retain(l->v[i]));
        if (l->sub == JL_ITER) {
            l->pos = l->n;
            jj_iter_exhausted(x, l);
        }
        return out;
    }
    case JV_DICT: {
        jdict *d = JD(v);
        jv out = jv_list(x, JL_LIST, d->n);
        for (size_t i = 0; i < d->n; i++) jl_push(x, out, jv_retain(d->kv[2 * i]));
        return out;
    }
    default: jj_raise(x, "TypeError: '%s' object is not iterable", jv_type_name(v));
    }
}

void jj_iter_exhausted(jj_ctx *x, jlist *l) {
    if (l->sub != JL_ITER || l->err.kind != JV_STR) return;
    x->status = FM_ERR_INVALID_ARGUMENT;
    snprintf(x->msg, sizeof x->msg, "%s", JS(l->err)->s);
    longjmp(x->jmp, 1);
}

size_t jv_len(jj_ctx *x, jv v) {
    switch (v.kind) {
    case JV_UNDEF: return 0;
    case JV_STR: return jj_utf8_len(JS(v)->s, JS(v)->len);
    case JV_LIST:
        if (JL(v)->sub == JL_ITER) jj_raise(x, "TypeError: object of type 'generator' has no len()");
        return JL(v)->n;
    case JV_DICT: return JD(v)->n;
    default: jj_raise(x, "TypeError: object of type '%s' has no len()", jv_type_name(v));
    }
}
