/* jinja_eval.c - runs a parsed template: statements, expressions, scoping, operators, attribute
   and item access, calls and macros, with jinja2's semantics (sandboxed environment, default
   Undefined).

   Scoping as jinja2 compiles it: the template's top level is one frame; each for-loop iteration,
   macro call, {% with %} and {% generation %} body gets a fresh frame whose reads fall through to
   the enclosing frames, and whose {% set %}s vanish with it (hence namespace()). A for-loop's
   frame is emptied at the start of every iteration, so a variable set in one iteration is gone in
   the next one. Macros see the template's top-level frame, not the caller's. */
#include "jinja.h"

#include <math.h>
#include <string.h>

enum { SIG_NONE, SIG_BREAK, SIG_CONTINUE };

/* ---- frames ---------------------------------------------------------------------------------- */

jframe *jj_frame_new(jj_ctx *x, jframe *parent) {
    jframe *f = jj_alloc(x, sizeof *f, JT_RAW);
    f->parent = parent;
    f->n = f->cap = 0;
    f->names = NULL;
    f->vals = NULL;
    return f;
}

static jv *frame_find(jframe *f, const char *name) {
    for (size_t i = 0; i < f->n; i++)
        if (f->names[i] == name || strcmp(f->names[i], name) == 0) return &f->vals[i];
    return NULL;
}

void jj_frame_set(jj_ctx *x, jframe *f, const char *name, jv v) {
    jv *slot = frame_find(f, name);
    if (slot) {
        jv old = *slot;
        *slot = v;
        jv_release(x, old);
        return;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        f->names = jj_realloc(x, (void *)f->names, cap * sizeof *f->names);
        f->vals = jj_realloc(x, f->vals, cap * sizeof *f->vals);
        f->cap = cap;
    }
    f->names[f->n] = name;
    f->vals[f->n] = v;
    f->n++;
}

static void frame_clear(jj_ctx *x, jframe *f) {
    for (size_t i = 0; i < f->n; i++) jv_release(x, f->vals[i]);
    f->n = 0;
}

static void frame_free(jj_ctx *x, jframe *f) {
    frame_clear(x, f);
    jj_free(x, (void *)f->names);
    jj_free(x, f->vals);
    jj_free(x, f);
}

jv jj_lookup(jj_ctx *x, const char *name) {
    for (jframe *f = x->frame; f; f = f->parent) {
        jv *v = frame_find(f, name);
        if (v) return jv_retain(*v);
    }
    int fn = jj_func_id(name);
    if (fn >= 0) {
        jv v = {JV_FUNC, 0, {0}};
        v.u.i = fn;
        return v;
    }
    return jv_undef(name, JVF_U_NAME);
}

/* ---- attribute / item access -------------------------------------------------------------- */

static jv loop_attr(jj_ctx *x, jv obj, const char *attr) {
    jloop *l = obj.u.p;
    jlist *items = JL(l->items);
    if (!strcmp(attr, "index")) return jv_int((int64_t)l->i + 1);
    if (!strcmp(attr, "index0")) return jv_int((int64_t)l->i);
    if (!strcmp(attr, "revindex")) return jv_int((int64_t)(l->n - l->i));
    if (!strcmp(attr, "revindex0")) return jv_int((int64_t)(l->n - l->i - 1));
    if (!strcmp(attr, "first")) return jv_bool(l->i == 0);
    if (!strcmp(attr, "last")) return jv_bool(l->i + 1 == l->n);
    if (!strcmp(attr, "length")) return jv_int((int64_t)l->n);
    if (!strcmp(attr, "depth")) return jv_int(1);
    if (!strcmp(attr, "depth0")) return jv_int(0);
    if (!strcmp(attr, "previtem"))
        return l->i > 0 ? jv_retain(items->v[l->i - 1]) : jv_undef("there is no previous item", JVF_U_MSG);
    if (!strcmp(attr, "nextitem"))
        return l->i + 1 < l->n ? jv_retain(items->v[l->i + 1]) : jv_undef("there is no next item", JVF_U_MSG);
    const char *m = jj_method_name(obj, attr);
    if (m) return jv_method(x, obj, m);
    return jv_undef(attr, JVF_U_ATTR);
}

/* modifying methods of list/dict: the immutable sandbox hands back an undefined for them */
static int unsafe_method(jv obj, const char *a) {
    if (obj.kind == JV_LIST && JL(obj)->sub == JL_LIST) {
        static const char *const m[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort", NULL};
        for (int i = 0; m[i]; i++)
            if (!strcmp(a, m[i])) return 1;
    }
    if (obj.kind == JV_DICT) {
        static const char *const m[] = {"clear", "pop", "popitem", "setdefault", "update", NULL};
        for (int i = 0; m[i]; i++)
            if (!strcmp(a, m[i])) return 1;
    }
    return 0;
}

jv jj_getattr(jj_ctx *x, jv obj, const char *attr) {
    if (obj.kind == JV_UNDEF) jj_undefined_error(x, obj);
    if (attr[0] == '_' && attr[1] == '_') return jv_undef(attr, JVF_U_ATTR);
    if (unsafe_method(obj, attr)) return jv_undef(attr, JVF_U_ATTR);
    const char *m = jj_method_name(obj, attr);
    switch (obj.kind) {
    case JV_DICT: {
        if (m) return jv_method(x, obj, m);
        jv *v = jd_find_str(obj, attr);
        return v ? jv_retain(*v) : jv_undef(attr, JVF_U_ATTR);
    }
    case JV_NS: {
        jv *v = jd_find_str(obj, attr);
        return v ? jv_retain(*v) : jv_undef(attr, JVF_U_ATTR);
    }
    case JV_LOOP: return loop_attr(x, obj, attr);
    case JV_STR:
    case JV_LIST:
        if (m) return jv_method(x, obj, m);
        return jv_undef(attr, JVF_U_ATTR);
    case JV_INT:
    case JV_BOOL:
    case JV_FLOAT:
        if (m)
            jj_unsup(x, "attribute '%s' of a number is not supported", attr);
        return jv_undef(attr, JVF_U_ATTR);
    default: return jv_undef(attr, JVF_U_ATTR);
    }
}

static int as_index(jv k, int64_t *out) {
    if (k.kind == JV_INT || k.kind == JV_BOOL) {
        *out = k.u.i;
        return 1;
    }
    return 0;
}

jv jj_getitem(jj_ctx *x, jv obj, jv key) {
    if (obj.kind == JV_UNDEF) jj_undefined_error(x, obj);
    int64_t idx;
    switch (obj.kind) {
    case JV_LIST: {
        jlist *l = JL(obj);
        if ((l->sub == JL_LIST || l->sub == JL_TUPLE || l->sub == JL_RANGE) && as_index(key, &idx)) {
            if (idx < 0) idx += (int64_t)l->n;
            if (idx < 0 || (uint64_t)idx >= l->n) return jv_undef("list index out of range", JVF_U_MSG);
            return jv_retain(l->v[idx]);
        }
        break;
    }
    case JV_STR:
        if (as_index(key, &idx)) {
            jstr *s = JS(obj);
            size_t len = jj_utf8_len(s->s, s->len);
            if (idx < 0) idx += (int64_t)len;
            if (idx < 0 || (uint64_t)idx >= len) return jv_undef("string index out of range", JVF_U_MSG);
            size_t a = jj_utf8_offset(s->s, s->len, (size_t)idx), b = a;
            jj_utf8_next(s->s, s->len, &b);
            jv r = jv_str(x, s->s + a, b - a);
            r.flags = obj.flags;
            return r;
        }
        break;
    case JV_DICT:
        if (jv_hashable(key)) {
            jv *v = jd_find(obj, key);
            if (v) return jv_retain(*v);
        }
        break;
    default: break;
    }
    if (key.kind == JV_STR) {
        jv r = jj_getattr(x, obj, JS(key)->s);
        /* an undefined's hint would point into the key, which the caller frees */
        if (r.kind == JV_UNDEF) r = jv_undef("key", JVF_U_ATTR);
        return r;
    }
    return jv_undef("item", JVF_U_ATTR);
}

/* Python slice index normalisation */
static int slice_arg(jv v, int64_t *out) {
    if (v.kind == JV_NONE) return 0;
    if (v.kind == JV_INT || v.kind == JV_BOOL) {
        *out = v.u.i;
        return 1;
    }
    return -1;
}

static jv do_slice(jj_ctx *x, jv obj, jv vs, jv ve, jv vt, int folded) {
    if (obj.kind == JV_UNDEF) jj_undefined_error(x, obj);
    if (folded) { /* environment.getitem semantics: TypeError -> undefined */
        int ok = obj.kind == JV_STR || (obj.kind == JV_LIST && (JL(obj)->sub == JL_LIST || JL(obj)->sub == JL_TUPLE || JL(obj)->sub == JL_RANGE));
        int64_t t;
        if (!ok || slice_arg(vs, &t) < 0 || slice_arg(ve, &t) < 0 || slice_arg(vt, &t) < 0)
            return jv_undef("object is not subscriptable", JVF_U_MSG);
    }
    int64_t start = 0, stop = 0, step = 1;
    /* jinja2 compiles slices to Python's own obj[a:b:c], bypassing environment.getitem, so
       errors propagate instead of becoming undefined */
    int is_str = obj.kind == JV_STR;
    if (!is_str && !(obj.kind == JV_LIST && (JL(obj)->sub == JL_LIST || JL(obj)->sub == JL_TUPLE || JL(obj)->sub == JL_RANGE))) {
        if (obj.kind == JV_DICT) jj_raise(x, "TypeError: unhashable type: 'slice'");
        jj_raise(x, "TypeError: '%s' object is not subscriptable", jv_type_name(obj));
    }
    int hs = slice_arg(vs, &start), he = slice_arg(ve, &stop), ht = slice_arg(vt, &step);
    if (hs < 0 || he < 0 || ht < 0)
        jj_raise(x, "TypeError: slice indices must be integers or None or have an __index__ method");
    if (!ht) step = 1;
    if (step == 0) jj_raise(x, "ValueError: slice step cannot be zero");
    size_t *offs = NULL;
    int64_t len;
    if (is_str) {
        jstr *s = JS(obj);
        size_t ncp = jj_utf8_len(s->s, s->len);
        offs = jj_alloc(x, (ncp + 1) * sizeof(size_t), JT_RAW);
        size_t i = 0, k = 0;
        while (i < s->len) {
            offs[k++] = i;
            jj_utf8_next(s->s, s->len, &i);
        }
        offs[k] = s->len;
        len = (int64_t)ncp;
    } else len = (int64_t)JL(obj)->n;
    if (!hs) start = step < 0 ? len - 1 : 0;
    else if (start < 0) {
        start += len;
        if (start < 0) start = step < 0 ? -1 : 0;
    } else if (start >= len) start = step < 0 ? len - 1 : len;
    if (!he) stop = step < 0 ? -1 : len;
    else if (stop < 0) {
        stop += len;
        if (stop < 0) stop = step < 0 ? -1 : 0;
    } else if (stop >= len) stop = step < 0 ? len - 1 : len;
    if (is_str) {
        jstr *s = JS(obj);
        jsb b;
        jsb_init(x, &b);
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
            jsb_put(x, &b, s->s + offs[i], offs[i + 1] - offs[i]);
        jj_free(x, offs);
        jv r = jsb_take(x, &b);
        r.flags = obj.flags;
        return r;
    }
    jlist *l = JL(obj);
    jv out = jv_list(x, l->sub, 0);
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) jl_push(x, out, jv_retain(l->v[i]));
    if (l->sub == JL_RANGE) { /* range(a, b, s)[i:j:k] == range(a + i*s, a + j*s, s*k) */
        int64_t a = l->range[0], s = l->range[2];
        JL(out)->range[0] = a + start * s;
        JL(out)->range[1] = a + stop * s;
        JL(out)->range[2] = s * step;
    }
    return out;
}

/* ---- operators ------------------------------------------------------------------------------- */

static int is_num(jv v) { return v.kind == JV_BOOL || v.kind == JV_INT || v.kind == JV_FLOAT; }
static double num_f(jv v) { return v.kind == JV_FLOAT ? v.u.f : (double)v.u.i; }

static const char *op_sym(int op) {
    switch (op) {
    case OP_ADD: return "+";
    case OP_SUB: return "-";
    case OP_MUL: return "*";
    case OP_DIV: return "/";
    case OP_FLOORDIV: return "//";
    case OP_MOD: return "%";
    case OP_POW: return "** or pow()";
    default: return "?";
    }
}

static _Noreturn void overflow(jj_ctx *x) {
    jj_unsup(x, "integer overflow (Python integers are unbounded; this engine uses 64 bits)");
}

static void html_escape_into(jj_ctx *x, jsb *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '&': jsb_put(x, b, "&amp;", 5); break;
        case '<': jsb_put(x, b, "&lt;", 4); break;
        case '>': jsb_put(x, b, "&gt;", 4); break;
        case '"': jsb_put(x, b, "&#34;", 5); break;
        case '\'': jsb_put(x, b, "&#39;", 5); break;
        default: jsb_putc(x, b, s[i]);
        }
    }
}

static jv repeat(jj_ctx *x, jv seq, int64_t k) {
    if (k < 0) k = 0;
    if (seq.kind == JV_STR) {
        jstr *s = JS(seq);
        if (k && s->len && (uint64_t)k > JJ_MAX_STRING / s->len)
            jj_limit(x, "a string exceeds the engine's 64 MiB limit");
        jsb b;
        jsb_init(x, &b);
        for (int64_t i = 0; i < k; i++) jsb_put(x, &b, s->s, s->len);
        jv r = jsb_take(x, &b);
        r.flags = seq.flags;
        return r;
    }
    jlist *l = JL(seq);
    if (k && l->n && (uint64_t)k > JJ_MAX_ITEMS / l->n) jj_limit(x, "a list exceeds the engine's item limit");
    jv out = jv_list(x, l->sub, (size_t)k * l->n);
    for (int64_t i = 0; i < k; i++)
        for (size_t j = 0; j < l->n; j++) jl_push(x, out, jv_retain(l->v[j]));
    return out;
}

static int is_seq_list(jv v) { return v.kind == JV_LIST && (JL(v)->sub == JL_LIST || JL(v)->sub == JL_TUPLE); }

static double py_fmod(double a, double b, double *div_out) {
    double mod = fmod(a, b);
    double div = (a - mod) / b;
    if (mod != 0) {
        if ((b < 0) != (mod < 0)) {
            mod += b;
            div -= 1.0;
        }
    } else mod = copysign(0.0, b);
    if (div_out) {
        double fl;
        if (div != 0) {
            fl = floor(div);
            if (div - fl > 0.5) fl += 1.0;
        } else fl = copysign(0.0, a / b);
        *div_out = fl;
    }
    return mod;
}

jv jj_binop(jj_ctx *x, int op, jv a, jv b) {
    if (a.kind == JV_UNDEF) jj_undefined_error(x, a);
    if (b.kind == JV_UNDEF) jj_undefined_error(x, b);
    if (is_num(a) && is_num(b)) {
        int fl = a.kind == JV_FLOAT || b.kind == JV_FLOAT;
        int64_t ia = a.u.i, ib = b.u.i, ir;
        double fa = num_f(a), fb = num_f(b);
        switch (op) {
        case OP_ADD:
            if (fl) return jv_float(fa + fb);
            if (__builtin_add_overflow(ia, ib, &ir)) overflow(x);
            return jv_int(ir);
        case OP_SUB:
            if (fl) return jv_float(fa - fb);
            if (__builtin_sub_overflow(ia, ib, &ir)) overflow(x);
            return jv_int(ir);
        case OP_MUL:
            if (fl) return jv_float(fa * fb);
            if (__builtin_mul_overflow(ia, ib, &ir)) overflow(x);
            return jv_int(ir);
        case OP_DIV:
            if (fb == 0) jj_raise(x, "ZeroDivisionError: division by zero");
            return jv_float(fa / fb);
        case OP_FLOORDIV:
            if (fl) {
                if (fb == 0) jj_raise(x, "ZeroDivisionError: float floor division by zero");
                double d;
                py_fmod(fa, fb, &d);
                return jv_float(d);
            }
            if (ib == 0) jj_raise(x, "ZeroDivisionError: integer division or modulo by zero");
            if (ia == INT64_MIN && ib == -1) overflow(x);
            {
                int64_t q = ia / ib;
                if ((ia % ib != 0) && ((ia < 0) != (ib < 0))) q--;
                return jv_int(q);
            }
        case OP_MOD:
            if (fl) {
                if (fb == 0) jj_raise(x, "ZeroDivisionError: float modulo");
                return jv_float(py_fmod(fa, fb, NULL));
            }
            if (ib == 0) jj_raise(x, "ZeroDivisionError: integer division or modulo by zero");
            if (ib == -1) return jv_int(0);
            {
                int64_t m = ia % ib;
                if (m != 0 && ((m < 0) != (ib < 0))) m += ib;
                return jv_int(m);
            }
        case OP_POW:
            if (!fl && ib >= 0) {
                int64_t r = 1, base = ia, e = ib;
                while (e > 0) {
                    if (e & 1)
                        if (__builtin_mul_overflow(r, base, &r)) overflow(x);
                    e >>= 1;
                    if (e && __builtin_mul_overflow(base, base, &base)) overflow(x);
                }
                return jv_int(r);
            }
            if (fa == 0 && fb < 0) jj_raise(x, "ZeroDivisionError: 0.0 cannot be raised to a negative power");
            if (fa < 0 && fb != floor(fb)) jj_unsup(x, "complex results of ** are not supported");
            return jv_float(pow(fa, fb));
        default: break;
        }
    }
    if (op == OP_ADD) {
        if (a.kind == JV_STR && b.kind == JV_STR) {
            jsb sb;
            jsb_init(x, &sb);
            int am = a.flags & JVF_MARKUP, bm = b.flags & JVF_MARKUP;
            if (bm && !am) html_escape_into(x, &sb, JS(a)->s, JS(a)->len);
            else jsb_put(x, &sb, JS(a)->s, JS(a)->len);
            if (am && !bm) html_escape_into(x, &sb, JS(b)->s, JS(b)->len);
            else jsb_put(x, &sb, JS(b)->s, JS(b)->len);
            jv r = jsb_take(x, &sb);
            r.flags = (uint8_t)((am || bm) ? JVF_MARKUP : 0);
            return r;
        }
        if (is_seq_list(a) && is_seq_list(b) && JL(a)->sub == JL(b)->sub) {
            jlist *la = JL(a), *lb = JL(b);
            if (la->n + lb->n > JJ_MAX_ITEMS) jj_limit(x, "a list exceeds the engine's item limit");
            jv out = jv_list(x, la->sub, la->n + lb->n);
            for (size_t i = 0; i < la->n; i++) jl_push(x, out, jv_retain(la->v[i]));
            for (size_t i = 0; i < lb->n; i++) jl_push(x, out, jv_retain(lb->v[i]));
            return out;
        }
        if (a.kind == JV_STR) jj_raise(x, "TypeError: can only concatenate str (not \"%s\") to str", jv_type_name(b));
        if (is_seq_list(a))
            jj_raise(x, "TypeError: can only concatenate %s (not \"%s\") to %s", jv_type_name(a), jv_type_name(b), jv_type_name(a));
    }
    if (op == OP_MUL) {
        if ((a.kind == JV_STR || is_seq_list(a)) && (b.kind == JV_INT || b.kind == JV_BOOL)) return repeat(x, a, b.u.i);
        if ((b.kind == JV_STR || is_seq_list(b)) && (a.kind == JV_INT || a.kind == JV_BOOL)) return repeat(x, b, a.u.i);
    }
    if (op == OP_MOD && a.kind == JV_STR) jj_unsup(x, "printf-style '%%' string formatting is not supported");
    jj_raise(x, "TypeError: unsupported operand type(s) for %s: '%s' and '%s'", op_sym(op), jv_type_name(a), jv_type_name(b));
}

static int contains(jj_ctx *x, jv container, jv item) {
    switch (container.kind) {
    case JV_STR:
        if (item.kind == JV_UNDEF) jj_undefined_error(x, item);
        if (item.kind != JV_STR)
            jj_raise(x, "TypeError: 'in <string>' requires string as left operand, not %s", jv_type_name(item));
        if (JS(item)->len == 0) return 1;
        if (JS(item)->len > JS(container)->len) return 0;
        {
            const char *h = JS(container)->s, *nd = JS(item)->s;
            size_t hn = JS(container)->len, nn = JS(item)->len;
            for (size_t i = 0; i + nn <= hn; i++)
                if (h[i] == nd[0] && memcmp(h + i, nd, nn) == 0) return 1;
            return 0;
        }
    case JV_LIST: {
        jlist *l = JL(container);
        size_t from = l->sub == JL_ITER ? l->pos : 0;
        for (size_t i = from; i < l->n; i++) {
            if (jv_eq(x, l->v[i], item)) {
                if (l->sub == JL_ITER) l->pos = i + 1;
                return 1;
            }
        }
        if (l->sub == JL_ITER) {
            l->pos = l->n;
            jj_iter_exhausted(x, l);
        }
        return 0;
    }
    case JV_DICT:
        if (!jv_hashable(item)) jj_raise(x, "TypeError: unhashable type: '%s'", jv_type_name(item));
        return jd_find(container, item) != NULL;
    case JV_UNDEF: return 0;
    default: jj_raise(x, "TypeError: argument of type '%s' is not iterable", jv_type_name(container));
    }
}

static int compare(jj_ctx *x, int op, jv a, jv b) {
    switch (op) {
    case OP_EQ: return jv_eq(x, a, b);
    case OP_NE: return !jv_eq(x, a, b);
    case OP_IN: return contains(x, b, a);
    case OP_NOTIN: return !contains(x, b, a);
    default: break;
    }
    if (is_num(a) && is_num(b)) {
        double fa = num_f(a), fb = num_f(b);
        if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) {
            switch (op) {
            case OP_LT: return a.u.i < b.u.i;
            case OP_LTEQ: return a.u.i <= b.u.i;
            case OP_GT: return a.u.i > b.u.i;
            default: return a.u.i >= b.u.i;
            }
        }
        switch (op) {
        case OP_LT: return fa < fb;
        case OP_LTEQ: return fa <= fb;
        case OP_GT: return fa > fb;
        default: return fa >= fb;
        }
    }
    switch (op) {
    case OP_LT: return jv_lt(x, a, b);
    case OP_GT: return jv_lt(x, b, a);
    case OP_LTEQ: return jv_lt(x, a, b) || jv_eq(x, a, b);
    default: return jv_lt(x, b, a) || jv_eq(x, a, b);
    }
}

/* ---- calls ----------------------------------------------------------------------------------- */

static int exec_body(jj_ctx *x, jnode *const *body, size_t n);

static jv call_macro(jj_ctx *x, const jnode *m, jv *args, const char **kw, size_t n) {
    if (x->macro_depth >= JJ_MAX_MACRO_DEPTH)
        jj_limit(x, "macro calls nested too deeply (more than %d)", JJ_MAX_MACRO_DEPTH);
    size_t np = m->nargs;
    int catch_varargs = m->op & 1, catch_kwargs = m->op & 2;
    jv *bound = jj_alloc(x, (np + 1) * sizeof(jv), JT_RAW);
    for (size_t i = 0; i < np; i++) bound[i] = jv_undef(NULL, JVF_U_MISSING);
    jframe *f = jj_frame_new(x, x->root);
    jv varargs = catch_varargs ? jv_list(x, JL_TUPLE, 0) : jv_none();
    jv kwargs = catch_kwargs ? jv_dict(x, JV_DICT) : jv_none();
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (!kw[i]) {
            if (pos < np) bound[pos++] = args[i];
            else if (catch_varargs) jl_push(x, varargs, jv_retain(args[i]));
            else jj_raise(x, "TypeError: macro '%s' takes not more than %zu argument(s)", m->name, np);
            continue;
        }
        size_t k;
        for (k = 0; k < np; k++)
            if (!strcmp(m->args[k]->name, kw[i])) break;
        if (k == np) {
            if (catch_kwargs) {
                jd_set(x, kwargs, jv_cstr(x, kw[i]), jv_retain(args[i]));
                continue;
            }
            jj_raise(x, "TypeError: macro '%s' takes no keyword argument '%s'", m->name, kw[i]);
        }
        if (!jv_missing(bound[k])) jj_raise(x, "TypeError: macro '%s' got multiple values for argument '%s'", m->name, kw[i]);
        bound[k] = args[i];
    }
    jframe *saved_frame = x->frame;
    jsb *saved_out = x->out;
    x->frame = f;
    if (catch_varargs) jj_frame_set(x, f, "varargs", varargs);
    if (catch_kwargs) jj_frame_set(x, f, "kwargs", kwargs);
    for (size_t i = 0; i < np; i++) {
        jv v;
        if (!jv_missing(bound[i])) v = jv_retain(bound[i]);
        else if (m->defs[i]) v = jj_eval(x, m->defs[i]);
        else v = jv_undef(m->args[i]->name, JVF_U_NAME);
        jj_frame_set(x, f, m->args[i]->name, v);
    }
    jj_free(x, bound);
    jsb out;
    jsb_init(x, &out);
    x->out = &out;
    x->macro_depth++;
    exec_body(x, m->body, m->nbody);
    x->macro_depth--;
    x->out = saved_out;
    x->frame = saved_frame;
    frame_free(x, f);
    return jsb_take(x, &out);
}

jv jj_call_value(jj_ctx *x, jv callee, jv *args, const char **kw, size_t n, int line) {
    (void)line;
    switch (callee.kind) {
    case JV_MACRO: return call_macro(x, callee.u.p, args, kw, n);
    case JV_FUNC: return jj_call_func(x, (int)callee.u.i, args, kw, n);
    case JV_METHOD: {
        jmeth *m = callee.u.p;
        return jj_call_method(x, m->self, m->name, args, kw, n);
    }
    case JV_UNDEF: jj_undefined_error(x, callee);
    default: jj_raise(x, "TypeError: '%s' object is not callable", jv_type_name(callee));
    }
}

/* evaluate call arguments into a tracked array */
static jv *eval_args(jj_ctx *x, const jnode *e) {
    jv *args = jj_alloc(x, (e->nargs + 1) * sizeof(jv), JT_RAW);
    for (size_t i = 0; i < e->nargs; i++) args[i] = jv_none();
    for (size_t i = 0; i < e->nargs; i++) args[i] = jj_eval(x, e->args[i]);
    return args;
}

static void free_args(jj_ctx *x, jv *args, size_t n) {
    for (size_t i = 0; i < n; i++) jv_release(x, args[i]);
    jj_free(x, args);
}

/* Apply the filter node f; where the chain bottoms out with no operand ({% filter %} and
   {% set x | f %} blocks) the operand is seed (owned). */
static jv apply_filter_chain(jj_ctx *x, const jnode *f, jv seed) {
    jv v;
    if (!f->a) v = seed;
    else if (f->a->kind == E_FILTER) v = apply_filter_chain(x, f->a, seed);
    else {
        jv_release(x, seed);
        v = jj_eval(x, f->a);
    }
    jv *args = eval_args(x, f);
    int saved = x->line;
    x->line = f->line;
    jv r = jj_filter(x, f->name, v, args, f->kw, f->nargs);
    x->line = saved;
    free_args(x, args, f->nargs);
    jv_release(x, v);
    return r;
}

/* ---- expressions ----------------------------------------------------------------------------- */

jv jj_eval(jj_ctx *x, const jnode *e) {
    if (++x->depth > JJ_MAX_EVAL_DEPTH) jj_limit(x, "evaluation nested too deeply");
    jj_step(x, 1);
    int saved_line = x->line;
    x->line = e->line;
    jv r;
    switch (e->kind) {
    case E_CONST: r = jv_retain(e->cval); break;
    case E_NAME: r = jj_lookup(x, e->name); break;
    case E_GETATTR: {
        jv o = jj_eval(x, e->a);
        r = jj_getattr(x, o, e->name);
        jv_release(x, o);
        break;
    }
    case E_GETITEM: {
        jv o = jj_eval(x, e->a);
        if (e->b->kind == E_SLICE) {
            const jnode *s = e->b;
            jv a = s->a ? jj_eval(x, s->a) : jv_none();
            jv b = s->b ? jj_eval(x, s->b) : jv_none();
            jv c = s->c ? jj_eval(x, s->c) : jv_none();
            x->line = e->line;
            r = do_slice(x, o, a, b, c, e->op == 1);
            jv_release(x, a);
            jv_release(x, b);
            jv_release(x, c);
        } else {
            jv k = jj_eval(x, e->b);
            x->line = e->line;
            r = jj_getitem(x, o, k);
            jv_release(x, k);
        }
        jv_release(x, o);
        break;
    }
    case E_CALL: {
        if (e->a->kind == E_GETATTR) {
            jv o = jj_eval(x, e->a->a);
            if (o.kind != JV_UNDEF && !unsafe_method(o, e->a->name) && jj_method_name(o, e->a->name)) {
                jv *args = eval_args(x, e);
                x->line = e->line;
                r = jj_call_method(x, o, e->a->name, args, e->kw, e->nargs);
                free_args(x, args, e->nargs);
                jv_release(x, o);
                break;
            }
            jv callee = jj_getattr(x, o, e->a->name);
            jv_release(x, o);
            jv *args = eval_args(x, e);
            x->line = e->line;
            r = jj_call_value(x, callee, args, e->kw, e->nargs, e->line);
            free_args(x, args, e->nargs);
            jv_release(x, callee);
            break;
        }
        jv callee = jj_eval(x, e->a);
        jv *args = eval_args(x, e);
        x->line = e->line;
        r = jj_call_value(x, callee, args, e->kw, e->nargs, e->line);
        free_args(x, args, e->nargs);
        jv_release(x, callee);
        break;
    }
    case E_FILTER: r = apply_filter_chain(x, e, jv_none()); break;
    case E_TEST: {
        jv v = jj_eval(x, e->a);
        jv *args = eval_args(x, e);
        x->line = e->line;
        r = jv_bool(jj_test(x, e->name, v, args, e->kw, e->nargs));
        free_args(x, args, e->nargs);
        jv_release(x, v);
        break;
    }
    case E_BIN: {
        jv a = jj_eval(x, e->a);
        jv b = jj_eval(x, e->b);
        x->line = e->line;
        r = jj_binop(x, e->op, a, b);
        jv_release(x, a);
        jv_release(x, b);
        break;
    }
    case E_CONCAT: {
        jsb b;
        jsb_init(x, &b);
        for (size_t i = 0; i < e->nargs; i++) {
            jv v = jj_eval(x, e->args[i]);
            jv_write_str(x, &b, v);
            jv_release(x, v);
        }
        r = jsb_take(x, &b);
        break;
    }
    case E_NEG:
    case E_POS: {
        jv v = jj_eval(x, e->a);
        x->line = e->line;
        if (v.kind == JV_UNDEF) jj_undefined_error(x, v);
        if (v.kind == JV_FLOAT) r = jv_float(e->kind == E_NEG ? -v.u.f : v.u.f);
        else if (v.kind == JV_INT || v.kind == JV_BOOL) {
            if (e->kind == E_NEG && v.u.i == INT64_MIN) overflow(x);
            r = jv_int(e->kind == E_NEG ? -v.u.i : v.u.i);
        } else
            jj_raise(x, "TypeError: bad operand type for unary %c: '%s'", e->kind == E_NEG ? '-' : '+', jv_type_name(v));
        jv_release(x, v);
        break;
    }
    case E_NOT: {
        jv v = jj_eval(x, e->a);
        r = jv_bool(!jv_truthy(v));
        jv_release(x, v);
        break;
    }
    case E_AND:
    case E_OR: {
        jv a = jj_eval(x, e->a);
        int t = jv_truthy(a);
        if ((e->kind == E_AND) ? !t : t) {
            r = a;
            break;
        }
        jv_release(x, a);
        r = jj_eval(x, e->b);
        break;
    }
    case E_CMP: {
        jv left = jj_eval(x, e->a);
        int ok = 1;
        for (size_t i = 0; i < e->nargs && ok; i++) {
            jv right = jj_eval(x, e->args[i]);
            x->line = e->line;
            ok = compare(x, e->ops[i], left, right);
            jv_release(x, left);
            left = right;
        }
        jv_release(x, left);
        r = jv_bool(ok);
        break;
    }
    case E_COND: {
        jv t = jj_eval(x, e->a);
        int yes = jv_truthy(t);
        jv_release(x, t);
        if (yes) r = jj_eval(x, e->b);
        else if (e->c) r = jj_eval(x, e->c);
        else r = jv_undef("the inline if-expression evaluated to false and no else section was defined.", JVF_U_MSG);
        break;
    }
    case E_LIST:
    case E_TUPLE: {
        r = jv_list(x, e->kind == E_LIST ? JL_LIST : JL_TUPLE, e->nargs);
        for (size_t i = 0; i < e->nargs; i++) jl_push(x, r, jj_eval(x, e->args[i]));
        break;
    }
    case E_DICT: {
        r = jv_dict(x, JV_DICT);
        for (size_t i = 0; i + 1 < e->nargs; i += 2) {
            jv k = jj_eval(x, e->args[i]);
            if (!jv_hashable(k)) {
                x->line = e->line;
                jj_raise(x, "TypeError: unhashable type: '%s'", jv_type_name(k));
            }
            jv v = jj_eval(x, e->args[i + 1]);
            jd_set(x, r, k, v);
        }
        break;
    }
    case E_NSREF: jj_raise(x, "a namespace reference can only be assigned to");
    default: jj_fail(x, FM_ERR_INTERNAL, "unknown expression node %d", e->kind);
    }
    x->line = saved_line;
    x->depth--;
    return r;
}

/* ---- statements ------------------------------------------------------------------------------ */

static void assign(jj_ctx *x, const jnode *t, jv v /* owned */) {
    if (t->kind == E_NAME) {
        jj_frame_set(x, x->frame, t->name, v);
        return;
    }
    if (t->kind == E_NSREF) {
        jv ns = jj_lookup(x, t->name);
        if (ns.kind != JV_NS) {
            jv_release(x, ns);
            jv_release(x, v);
            jj_raise(x, "TemplateRuntimeError: cannot assign attribute on non-namespace object");
        }
        jd_set(x, ns, jv_cstr(x, t->attr), v);
        jv_release(x, ns);
        return;
    }
    /* tuple unpacking */
    jv items = jv_iterate(x, v);
    jv_release(x, v);
    jlist *l = JL(items);
    if (l->n != t->nargs) {
        size_t got = l->n;
        jv_release(x, items);
        if (got > t->nargs) jj_raise(x, "ValueError: too many values to unpack (expected %zu)", t->nargs);
        jj_raise(x, "ValueError: not enough values to unpack (expected %zu, got %zu)", t->nargs, got);
    }
    for (size_t i = 0; i < t->nargs; i++) assign(x, t->args[i], jv_retain(l->v[i]));
    jv_release(x, items);
}

static void write_value(jj_ctx *x, jv v) { jv_write_str(x, x->out, v); }

static jv capture(jj_ctx *x, jnode *const *body, size_t n) {
    jsb *saved = x->out;
    jsb b;
    jsb_init(x, &b);
    x->out = &b;
    exec_body(x, body, n);
    x->out = saved;
    return jsb_take(x, &b);
}

static int exec_for(jj_ctx *x, const jnode *s) {
    jv it = jj_eval(x, s->b);
    x->line = s->line;
    jv items = jv_iterate(x, it);
    jv_release(x, it);
    jframe *outer = x->frame;
    if (s->c) { /* {% for x in xs if cond %} */
        jv kept = jv_list(x, JL_LIST, 0);
        jframe *f = jj_frame_new(x, outer);
        x->frame = f;
        for (size_t i = 0; i < JL(items)->n; i++) {
            frame_clear(x, f);
            assign(x, s->a, jv_retain(JL(items)->v[i]));
            jv c = jj_eval(x, s->c);
            if (jv_truthy(c)) jl_push(x, kept, jv_retain(JL(items)->v[i]));
            jv_release(x, c);
        }
        x->frame = outer;
        frame_free(x, f);
        jv_release(x, items);
        items = kept;
    }
    size_t n = JL(items)->n;
    if (n == 0) {
        jv_release(x, items);
        if (s->nelse) {
            jframe *f = jj_frame_new(x, outer);
            x->frame = f;
            int sig = exec_body(x, s->else_body, s->nelse);
            x->frame = outer;
            frame_free(x, f);
            return sig;
        }
        return SIG_NONE;
    }
    jv loop = jv_loop(x, items);
    jloop *lp = loop.u.p;
    jframe *f = jj_frame_new(x, outer);
    x->frame = f;
    /* jinja2 clears its "no iteration" flag at the end of the body, so the else block also runs
       when every iteration left early through break/continue */
    int completed = 0;
    for (size_t i = 0; i < n; i++) {
        jj_step(x, 1);
        frame_clear(x, f);
        lp->i = i;
        assign(x, s->a, jv_retain(JL(items)->v[i]));
        jj_frame_set(x, f, "loop", jv_retain(loop));
        int sig = exec_body(x, s->body, s->nbody);
        if (sig == SIG_NONE) completed = 1;
        if (sig == SIG_BREAK) break;
    }
    x->frame = outer;
    frame_free(x, f);
    jv_release(x, loop);
    jv_release(x, items);
    if (!completed && s->nelse) {
        jframe *e = jj_frame_new(x, outer);
        x->frame = e;
        exec_body(x, s->else_body, s->nelse);
        x->frame = outer;
        frame_free(x, e);
    }
    return SIG_NONE;
}

static int exec_stmt(jj_ctx *x, const jnode *s) {
    if (++x->depth > JJ_MAX_EVAL_DEPTH) jj_limit(x, "evaluation nested too deeply");
    jj_step(x, 1);
    x->line = s->line;
    int sig = SIG_NONE;
    switch (s->kind) {
    case S_TEXT: jsb_put(x, x->out, s->text, s->text_len); break;
    case S_PRINT:
        if (s->a) {
            jv v = jj_eval(x, s->a);
            write_value(x, v);
            jv_release(x, v);
        } else {
            for (size_t i = 0; i < s->nargs; i++) {
                jv v = jj_eval(x, s->args[i]);
                write_value(x, v);
                jv_release(x, v);
            }
        }
        break;
    case S_IF: {
        jv t = jj_eval(x, s->a);
        int yes = jv_truthy(t);
        jv_release(x, t);
        sig = yes ? exec_body(x, s->body, s->nbody) : exec_body(x, s->else_body, s->nelse);
        break;
    }
    case S_FOR: sig = exec_for(x, s); break;
    case S_SET: {
        jv v = jj_eval(x, s->b);
        x->line = s->line;
        assign(x, s->a, v);
        break;
    }
    case S_SETBLOCK: {
        jv v = capture(x, s->body, s->nbody);
        if (s->c) v = apply_filter_chain(x, s->c, v);
        x->line = s->line;
        assign(x, s->a, v);
        break;
    }
    case S_MACRO: {
        jv m = {JV_MACRO, 0, {0}};
        m.u.p = (void *)s;
        jj_frame_set(x, x->frame, s->name, m);
        break;
    }
    case S_BREAK: sig = SIG_BREAK; break;
    case S_CONTINUE: sig = SIG_CONTINUE; break;
    case S_WITH: {
        jv *vals = jj_alloc(x, (s->nargs + 1) * sizeof(jv), JT_RAW);
        for (size_t i = 0; i < s->nargs; i++) vals[i] = jv_none();
        for (size_t i = 0; i < s->nargs; i++) vals[i] = jj_eval(x, s->defs[i]);
        jframe *outer = x->frame;
        jframe *f = jj_frame_new(x, outer);
        x->frame = f;
        for (size_t i = 0; i < s->nargs; i++) {
            assign(x, s->args[i], vals[i]);
            vals[i] = jv_none();
        }
        jj_free(x, vals);
        sig = exec_body(x, s->body, s->nbody);
        x->frame = outer;
        frame_free(x, f);
        break;
    }
    case S_FILTERBLOCK: {
        jv v = capture(x, s->body, s->nbody);
        v = apply_filter_chain(x, s->c, v);
        write_value(x, v);
        jv_release(x, v);
        break;
    }
    case S_BLOCK: {
        jframe *outer = x->frame;
        jframe *f = jj_frame_new(x, outer);
        x->frame = f;
        sig = exec_body(x, s->body, s->nbody);
        x->frame = outer;
        frame_free(x, f);
        break;
    }
    default: jj_fail(x, FM_ERR_INTERNAL, "unknown statement node %d", s->kind);
    }
    x->depth--;
    return sig;
}

static int exec_body(jj_ctx *x, jnode *const *body, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int sig = exec_stmt(x, body[i]);
        if (sig != SIG_NONE) return sig;
    }
    return SIG_NONE;
}

/* ---- entry ----------------------------------------------------------------------------------- */

void jj_exec_template(jj_ctx *x, jnode *const *body, size_t n) { exec_body(x, body, n); }
