/* tok_pretokenize.c - tokenizer.json pre-tokenizers: ByteLevel, Split (String or Regex pattern,
   every behavior, invert), Digits, Punctuation, Whitespace, WhitespaceSplit, Metaspace,
   BertPreTokenizer, CharDelimiterSplit and Sequence.

   A pre-tokenizer turns a list of pieces into a finer list. As in the Rust crate, a pattern first
   cuts a piece into alternating "match" / "no match" spans covering it, the split behavior decides
   what to keep and what to glue together, and empty pieces are dropped. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

#define OOM() fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory")

typedef struct fm_match {
    size_t s, e;
    int m; /* 1 = the pattern matched this span */
} fm_match;

/* ---- parsing ---------------------------------------------------------------------------------------- */

static fm_status parse_behavior(const cJSON *j, const char *where, fm_split_behavior dflt, int required,
                                fm_split_behavior *out) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "behavior");
    if (!b || cJSON_IsNull(b)) {
        if (required) return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: 'behavior' is missing", where);
        *out = dflt;
        return FM_OK;
    }
    if (!cJSON_IsString(b)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: 'behavior' must be a string", where);
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(b->valuestring, names[i])) {
            *out = (fm_split_behavior)i;
            return FM_OK;
        }
    return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: unknown split behavior '%.64s'", where, b->valuestring);
}

fm_status fm_prepend_scheme_parse(const cJSON *j, const char *where, int *out) {
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
    *out = FM_PREPEND_ALWAYS;
    if (ps && !cJSON_IsNull(ps)) {
        if (!cJSON_IsString(ps)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: 'prepend_scheme' must be a string", where);
        if (!strcmp(ps->valuestring, "always")) *out = FM_PREPEND_ALWAYS;
        else if (!strcmp(ps->valuestring, "first")) *out = FM_PREPEND_FIRST;
        else if (!strcmp(ps->valuestring, "never")) *out = FM_PREPEND_NEVER;
        else return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: unknown prepend_scheme '%.64s'", where, ps->valuestring);
    }
    const cJSON *aps = cJSON_GetObjectItemCaseSensitive(j, "add_prefix_space");
    if (cJSON_IsFalse(aps)) {
        if (*out != FM_PREPEND_NEVER)
            return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: add_prefix_space does not match declared prepend_scheme", where);
    }
    return FM_OK;
}

fm_status fm_pretok_parse(const cJSON *j, const char *where, fm_pretok **out) {
    *out = NULL;
    if (!cJSON_IsObject(j)) return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s must be an object or null", where);
    const char *type;
    fm_status st = fm_json_string(j, "type", &type, where);
    if (st) return st;
    fm_pretok *pt = calloc(1, sizeof *pt);
    if (!pt) return OOM();
    if (!strcmp(type, "Sequence")) {
        pt->kind = FM_PT_SEQUENCE;
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        if (!cJSON_IsArray(arr)) {
            st = fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: Sequence needs a 'pretokenizers' array", where);
        } else {
            size_t n = (size_t)cJSON_GetArraySize(arr);
            pt->children = calloc(n ? n : 1, sizeof *pt->children);
            if (!pt->children) st = OOM();
            size_t i = 0;
            for (const cJSON *e = arr->child; e && !st; e = e->next, i++) {
                char w[256];
                snprintf(w, sizeof w, "%s.pretokenizers[%zu]", where, i);
                st = fm_pretok_parse(e, w, &pt->children[i]);
                if (!st) pt->n_children = i + 1;
            }
        }
    } else if (!strcmp(type, "ByteLevel")) {
        pt->kind = FM_PT_BYTELEVEL;
        if (!(st = fm_json_bool(j, "add_prefix_space", 1, &pt->add_prefix_space, where)) &&
            !(st = fm_json_bool(j, "use_regex", 1, &pt->use_regex, where)) && pt->use_regex)
            st = fm_regex_compile(fm_bytelevel_pattern, strlen(fm_bytelevel_pattern), 0, where, &pt->re);
    } else if (!strcmp(type, "Split")) {
        pt->kind = FM_PT_SPLIT;
        if (!(st = fm_pattern_parse(j, where, &pt->re)) && !(st = parse_behavior(j, where, FM_SPLIT_ISOLATED, 1, &pt->behavior)))
            st = fm_json_bool(j, "invert", 0, &pt->invert, where);
    } else if (!strcmp(type, "Digits")) {
        pt->kind = FM_PT_DIGITS;
        st = fm_json_bool(j, "individual_digits", 0, &pt->individual_digits, where);
    } else if (!strcmp(type, "Punctuation")) {
        pt->kind = FM_PT_PUNCTUATION;
        st = parse_behavior(j, where, FM_SPLIT_ISOLATED, 0, &pt->behavior);
    } else if (!strcmp(type, "Whitespace")) {
        pt->kind = FM_PT_WHITESPACE;
    } else if (!strcmp(type, "WhitespaceSplit")) {
        pt->kind = FM_PT_WHITESPACE_SPLIT;
    } else if (!strcmp(type, "BertPreTokenizer")) {
        pt->kind = FM_PT_BERT;
    } else if (!strcmp(type, "CharDelimiterSplit")) {
        pt->kind = FM_PT_CHAR_DELIMITER;
        st = fm_json_char(j, "delimiter", &pt->ch, where);
    } else if (!strcmp(type, "Metaspace")) {
        pt->kind = FM_PT_METASPACE;
        if (!(st = fm_json_char(j, "replacement", &pt->ch, where)) &&
            !(st = fm_prepend_scheme_parse(j, where, &pt->prepend_scheme)))
            st = fm_json_bool(j, "split", 1, &pt->split, where);
    } else {
        st = fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: %s: pre-tokenizer type '%.64s' is not supported", where, type);
    }
    if (st) {
        fm_pretok_free(pt);
        return st;
    }
    *out = pt;
    return FM_OK;
}

void fm_pretok_free(fm_pretok *pt) {
    if (!pt) return;
    for (size_t i = 0; i < pt->n_children; i++) fm_pretok_free(pt->children[i]);
    free(pt->children);
    fm_regex_free(pt->re);
    free(pt);
}

/* ---- splitting machinery ------------------------------------------------------------------------- */

static int match_push(fm_pt_scratch *sc, size_t s, size_t e, int m) {
    if (sc->n_matches == sc->cap_matches) {
        size_t cap = sc->cap_matches ? sc->cap_matches * 2 : 256;
        fm_match *p = realloc(sc->matches, cap * sizeof *p);
        if (!p) return 0;
        sc->matches = p;
        sc->cap_matches = cap;
    }
    sc->matches[sc->n_matches].s = s;
    sc->matches[sc->n_matches].e = e;
    sc->matches[sc->n_matches].m = m;
    sc->n_matches++;
    return 1;
}

/* Spans of a character predicate: each matching character alone, the runs between them. */
typedef int (*char_pred)(uint32_t c, uint32_t arg);

static fm_status pred_matches(fm_pt_scratch *sc, const char *s, size_t n, char_pred pred, uint32_t arg) {
    sc->n_matches = 0;
    if (n == 0) return match_push(sc, 0, 0, 0) ? FM_OK : OOM();
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint32_t c = fm_utf8_next(s, &j);
        if (pred(c, arg)) {
            if (last < i && !match_push(sc, last, i, 0)) return OOM();
            if (!match_push(sc, i, j, 1)) return OOM();
            last = j;
        }
        i = j;
    }
    if (last < n && !match_push(sc, last, n, 0)) return OOM();
    return FM_OK;
}

static fm_status regex_matches(fm_pt_scratch *sc, const fm_regex *re, const char *s, size_t n) {
    sc->n_matches = 0;
    if (n == 0) return match_push(sc, 0, 0, 0) ? FM_OK : OOM();
    sc->spans.n = 0;
    fm_status st = fm_regex_find_all(re, sc->rs, s, n, &sc->spans);
    if (st) return st;
    size_t prev = 0;
    for (size_t i = 0; i < sc->spans.n; i++) {
        fm_span m = sc->spans.v[i];
        if (prev != m.start && !match_push(sc, prev, m.start, 0)) return OOM();
        if (!match_push(sc, m.start, m.end, 1)) return OOM();
        prev = m.end;
    }
    if (prev != n && !match_push(sc, prev, n, 0)) return OOM();
    return FM_OK;
}

/* Apply the behavior to sc->matches over piece pc and append the kept pieces to out. */
static fm_status split_by(fm_pt_scratch *sc, const fm_piece *pc, fm_split_behavior b, fm_piecevec *out) {
    fm_match *m = sc->matches;
    size_t n = sc->n_matches, k = 0; /* the result is built in place in m[0..k) */
    switch (b) {
    case FM_SPLIT_ISOLATED:
        k = n;
        for (size_t i = 0; i < n; i++) m[i].m = 0;
        break;
    case FM_SPLIT_REMOVED:
        k = n;
        break;
    case FM_SPLIT_CONTIGUOUS: {
        int prev = 0;
        for (size_t i = 0; i < n; i++) {
            int im = m[i].m;
            if (im == prev && k > 0) m[k - 1].e = m[i].e;
            else m[k++] = (fm_match){m[i].s, m[i].e, 0};
            prev = im;
        }
        break;
    }
    case FM_SPLIT_MERGED_WITH_PREVIOUS: {
        int prev = 0;
        for (size_t i = 0; i < n; i++) {
            int im = m[i].m;
            if (im && !prev && k > 0) m[k - 1].e = m[i].e;
            else m[k++] = (fm_match){m[i].s, m[i].e, 0};
            prev = im;
        }
        break;
    }
    case FM_SPLIT_MERGED_WITH_NEXT: {
        /* fold from the right, keeping the result at the end of the array */
        int prev = 0;
        size_t w = n; /* result occupies m[w..n) in order */
        for (size_t i = n; i-- > 0;) {
            fm_match cur = m[i];
            if (cur.m && !prev && w < n) m[w].s = cur.s;
            else m[--w] = (fm_match){cur.s, cur.e, 0};
            prev = cur.m;
        }
        memmove(m, m + w, (n - w) * sizeof *m);
        k = n - w;
        break;
    }
    }
    for (size_t i = 0; i < k; i++) {
        if (m[i].m) continue; /* removed */
        if (m[i].e <= m[i].s) continue; /* empty pieces are dropped */
        if (!fm_piecevec_push(out, pc->p + m[i].s, m[i].e - m[i].s, pc->at_start && m[i].s == 0)) return OOM();
    }
    return FM_OK;
}

static int pred_numeric(uint32_t c, uint32_t a) {
    (void)a;
    return fm_uc_is_numeric(c);
}
static int pred_punct(uint32_t c, uint32_t a) {
    (void)a;
    return fm_uc_is_punct(c);
}
static int pred_space(uint32_t c, uint32_t a) {
    (void)a;
    return fm_uc_is_whitespace(c);
}
static int pred_eq(uint32_t c, uint32_t a) { return c == a; }

static fm_status split_pred(fm_pt_scratch *sc, const fm_piecevec *in, fm_piecevec *out, char_pred p, uint32_t arg,
                            fm_split_behavior b) {
    for (size_t i = 0; i < in->n; i++) {
        fm_status st = pred_matches(sc, in->v[i].p, in->v[i].len, p, arg);
        if (!st) st = split_by(sc, &in->v[i], b, out);
        if (st) return st;
    }
    return FM_OK;
}

static fm_status split_regex(fm_pt_scratch *sc, const fm_piecevec *in, fm_piecevec *out, const fm_regex *re,
                             int invert, fm_split_behavior b) {
    for (size_t i = 0; i < in->n; i++) {
        fm_status st = regex_matches(sc, re, in->v[i].p, in->v[i].len);
        if (st) return st;
        if (invert)
            for (size_t k = 0; k < sc->n_matches; k++) sc->matches[k].m = !sc->matches[k].m;
        if ((st = split_by(sc, &in->v[i], b, out))) return st;
    }
    return FM_OK;
}

/* Whitespace: the runs of \w+ and of [^\w\s]+ (regex \w+|[^\w\s]+, inverted, Removed). */
static fm_status split_whitespace(const fm_piecevec *in, fm_piecevec *out) {
    for (size_t k = 0; k < in->n; k++) {
        const fm_piece *pc = &in->v[k];
        const char *s = pc->p;
        size_t n = pc->len, i = 0;
        while (i < n) {
            size_t j = i;
            uint32_t c = fm_utf8_next(s, &j);
            int cls = fm_uc_is_word(c) ? 1 : fm_uc_is_whitespace(c) ? 0 : 2;
            if (cls == 0) {
                i = j;
                continue;
            }
            size_t start = i;
            i = j;
            while (i < n) {
                size_t q = i;
                uint32_t d = fm_utf8_next(s, &q);
                int dc = fm_uc_is_word(d) ? 1 : fm_uc_is_whitespace(d) ? 0 : 2;
                if (dc != cls) break;
                i = q;
            }
            if (!fm_piecevec_push(out, s + start, i - start, pc->at_start && start == 0)) return OOM();
        }
    }
    return FM_OK;
}

/* ByteLevel: optional prefix space, the GPT-2 regex (Isolated), then every byte -> its alphabet char. */
static fm_status bytelevel(const fm_pretok *pt, fm_pt_scratch *sc, const fm_piecevec *in, fm_piecevec *out) {
    for (size_t k = 0; k < in->n; k++) {
        fm_piece pc = in->v[k];
        if (pt->add_prefix_space && (pc.len == 0 || pc.p[0] != ' ')) {
            char *q = fm_arena_alloc(&sc->arena, pc.len + 1);
            if (!q) return OOM();
            q[0] = ' ';
            memcpy(q + 1, pc.p, pc.len);
            pc.p = q;
            pc.len++;
        }
        size_t first = out->n;
        if (pt->use_regex) {
            fm_status st = regex_matches(sc, pt->re, pc.p, pc.len);
            if (!st) st = split_by(sc, &pc, FM_SPLIT_ISOLATED, out);
            if (st) return st;
        } else if (pc.len && !fm_piecevec_push(out, pc.p, pc.len, pc.at_start)) {
            return OOM();
        }
        for (size_t i = first; i < out->n; i++) {
            fm_piece *o = &out->v[i];
            size_t extra = 0;
            for (size_t b = 0; b < o->len; b++) extra += fm_bytelevel_cp[(unsigned char)o->p[b]] >= 0x80;
            char *q = fm_arena_alloc(&sc->arena, o->len + extra);
            if (!q) return OOM();
            size_t w = 0;
            for (size_t b = 0; b < o->len; b++) {
                uint16_t cp = fm_bytelevel_cp[(unsigned char)o->p[b]];
                if (cp < 0x80) {
                    q[w++] = (char)cp;
                } else {
                    q[w++] = (char)(0xC0 | (cp >> 6));
                    q[w++] = (char)(0x80 | (cp & 0x3F));
                }
            }
            o->p = q;
            o->len = w;
        }
    }
    return FM_OK;
}

/* Metaspace: ' ' -> replacement, prepend it (always / first piece of the input), split before it. */
static fm_status metaspace(const fm_pretok *pt, fm_pt_scratch *sc, const fm_piecevec *in, fm_piecevec *out) {
    char rep[4];
    size_t rl = fm_utf8_put(pt->ch, rep);
    for (size_t k = 0; k < in->n; k++) {
        const fm_piece *pc = &in->v[k];
        size_t spaces = 0;
        for (size_t i = 0; i < pc->len; i++) spaces += pc->p[i] == ' ';
        char *q = fm_arena_alloc(&sc->arena, pc->len + spaces * rl + rl);
        if (!q) return OOM();
        size_t w = 0;
        for (size_t i = 0; i < pc->len; i++) {
            if (pc->p[i] == ' ') {
                memcpy(q + w, rep, rl);
                w += rl;
            } else {
                q[w++] = pc->p[i];
            }
        }
        int starts = w >= rl && !memcmp(q, rep, rl);
        int prepend = pt->prepend_scheme == FM_PREPEND_ALWAYS ? !starts
                      : pt->prepend_scheme == FM_PREPEND_FIRST ? !starts && pc->at_start
                                                               : 0;
        if (prepend && w > 0) { /* HF's prepend does nothing on an empty string */
            memmove(q + rl, q, w);
            memcpy(q, rep, rl);
            w += rl;
        }
        fm_piece np = {q, w, pc->at_start};
        if (pt->split) {
            fm_status st = pred_matches(sc, np.p, np.len, pred_eq, pt->ch);
            if (!st) st = split_by(sc, &np, FM_SPLIT_MERGED_WITH_NEXT, out);
            if (st) return st;
        } else if (w && !fm_piecevec_push(out, q, w, pc->at_start)) {
            return OOM();
        }
    }
    return FM_OK;
}

fm_status fm_pretok_apply(const fm_pretok *pt, fm_pt_scratch *sc, fm_piecevec *io) {
    if (pt->kind == FM_PT_SEQUENCE) {
        for (size_t i = 0; i < pt->n_children; i++) {
            fm_status st = fm_pretok_apply(pt->children[i], sc, io);
            if (st) return st;
        }
        return FM_OK;
    }
    fm_piecevec out = {0};
    /* reuse the spare vector's storage */
    out = sc->b;
    out.n = 0;
    fm_status st = FM_OK;
    switch (pt->kind) {
    case FM_PT_BYTELEVEL: st = bytelevel(pt, sc, io, &out); break;
    case FM_PT_SPLIT: st = split_regex(sc, io, &out, pt->re, pt->invert, pt->behavior); break;
    case FM_PT_DIGITS:
        st = split_pred(sc, io, &out, pred_numeric, 0, pt->individual_digits ? FM_SPLIT_ISOLATED : FM_SPLIT_CONTIGUOUS);
        break;
    case FM_PT_PUNCTUATION: st = split_pred(sc, io, &out, pred_punct, 0, pt->behavior); break;
    case FM_PT_WHITESPACE: st = split_whitespace(io, &out); break;
    case FM_PT_WHITESPACE_SPLIT: st = split_pred(sc, io, &out, pred_space, 0, FM_SPLIT_REMOVED); break;
    case FM_PT_CHAR_DELIMITER: st = split_pred(sc, io, &out, pred_eq, pt->ch, FM_SPLIT_REMOVED); break;
    case FM_PT_METASPACE: st = metaspace(pt, sc, io, &out); break;
    case FM_PT_BERT: {
        st = split_pred(sc, io, &out, pred_space, 0, FM_SPLIT_REMOVED);
        if (!st) {
            fm_piecevec tmp = *io;
            *io = out;
            out = tmp;
            out.n = 0;
            st = split_pred(sc, io, &out, pred_punct, 0, FM_SPLIT_ISOLATED);
        }
        break;
    }
    case FM_PT_SEQUENCE: break;
    }
    /* the result becomes io; io's storage becomes the spare */
    sc->b = *io;
    sc->b.n = 0;
    *io = out;
    return st;
}
