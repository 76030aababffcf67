/* jinja_lex.c - template source -> tokens, following jinja2.lexer.Lexer.tokeniter with
   trim_blocks=True and lstrip_blocks=True: newlines normalised to \n and a single trailing
   newline dropped; "{%- / -%}" strip all whitespace on that side; "%}" and "#}" eat one following
   newline; a block/comment tag alone on its line after spaces/tabs has those stripped, unless it
   is written "{%+". Expression tokens: names, strings (Python unicode-escape), ints, floats and
   operators, with bracket balancing so "}}" inside a dict literal does not end a variable tag. */
#include "jinja.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lexer {
    jj_cctx *c;
    const char *s;
    size_t n;
    int line;
    jtok *toks;
    size_t ntoks, cap;
} lexer;

static jtok *push(lexer *L, uint8_t type, int line) {
    if (L->ntoks == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jtok *t = jj_calloc(L->c, cap * sizeof(jtok));
        if (L->ntoks) memcpy(t, L->toks, L->ntoks * sizeof(jtok));
        L->toks = t;
        L->cap = cap;
    }
    jtok *t = &L->toks[L->ntoks++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->line = line;
    return t;
}

static int count_nl(const char *s, size_t a, size_t b) {
    int k = 0;
    for (size_t i = a; i < b; i++) k += s[i] == '\n';
    return k;
}

/* length of the run of Python whitespace at s[i..] */
static size_t space_run(const char *s, size_t n, size_t i) {
    size_t p = i;
    while (p < n) {
        size_t q = p;
        uint32_t cp = jj_utf8_next(s, n, &q);
        if (!jj_is_space(cp)) break;
        p = q;
    }
    return p - i;
}

/* text[0..len) with trailing Python whitespace removed (str.rstrip()) */
static size_t rstrip_len(const char *s, size_t len) {
    size_t end = len;
    while (end > 0) {
        /* step back one code point */
        size_t st = end - 1;
        while (st > 0 && ((unsigned char)s[st] & 0xc0) == 0x80 && end - st < 4) st--;
        size_t q = st;
        uint32_t cp = jj_utf8_next(s, len, &q);
        if (q != end || !jj_is_space(cp)) break;
        end = st;
    }
    return end;
}

static int all_space(const char *s, size_t a, size_t b) {
    return a < b && space_run(s, b, a) == b - a;
}

/* The OptionalLStrip rule for text before a tag. */
static size_t strip_text(const char *text, size_t len, char sign, int is_variable, int line_starting) {
    if (sign == '-') return rstrip_len(text, len);
    if (sign == '+' || is_variable) return len;
    size_t lp = 0;
    for (size_t i = len; i > 0; i--)
        if (text[i - 1] == '\n') {
            lp = i;
            break;
        }
    if ((lp > 0 || line_starting) && all_space(text, lp, len)) return lp;
    return len;
}

static void emit_data(lexer *L, const char *p, size_t len, int line) {
    if (!len) return;
    jtok *t = push(L, TK_DATA, line);
    t->s = p;
    t->len = len;
}

static int starts(const char *s, size_t n, size_t i, const char *lit) {
    size_t k = strlen(lit);
    return i + k <= n && memcmp(s + i, lit, k) == 0;
}

/* ---- string literals: Python's .encode("ascii", "backslashreplace").decode("unicode-escape") */

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static jv decode_string(lexer *L, const char *s, size_t n, int line) {
    char *out = jj_calloc(L->c, n * 4 + 1); /* escapes never grow more than this */
    size_t o = 0, i = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)s[i];
        if (ch != '\\') {
            out[o++] = (char)ch;
            i++;
            continue;
        }
        i++;
        if (i >= n) { /* cannot happen: the literal regex needs a char after '\' */
            out[o++] = '\\';
            break;
        }
        unsigned char d = (unsigned char)s[i];
        uint32_t cp = 0;
        int nhex = 0;
        switch (d) {
        case '\n': i++; continue;
        case '\\': case '\'': case '"': out[o++] = (char)d; i++; continue;
        case 'a': out[o++] = 7; i++; continue;
        case 'b': out[o++] = 8; i++; continue;
        case 'f': out[o++] = 12; i++; continue;
        case 'n': out[o++] = 10; i++; continue;
        case 'r': out[o++] = 13; i++; continue;
        case 't': out[o++] = 9; i++; continue;
        case 'v': out[o++] = 11; i++; continue;
        case 'x': nhex = 2; break;
        case 'u': nhex = 4; break;
        case 'U': nhex = 8; break;
        case 'N': jj_cfail(L->c, FM_ERR_UNSUPPORTED, line, "\\N{...} escapes in string literals are not supported");
        default: break;
        }
        if (d >= '0' && d <= '7') {
            int k = 0;
            while (k < 3 && i < n && s[i] >= '0' && s[i] <= '7') {
                cp = cp * 8 + (uint32_t)(s[i] - '0');
                i++;
                k++;
            }
            o += (size_t)jj_utf8_put(out + o, cp);
            continue;
        }
        if (nhex) {
            i++;
            for (int k = 0; k < nhex; k++) {
                int h = i < n ? hexval(s[i]) : -1;
                if (h < 0)
                    jj_cfail(L->c, FM_ERR_FORMAT, line, "truncated \\%cXX escape in a string literal", d);
                cp = cp * 16 + (uint32_t)h;
                i++;
            }
            if (cp > 0x10ffff) jj_cfail(L->c, FM_ERR_FORMAT, line, "illegal Unicode character in a string literal");
            if (cp >= 0xd800 && cp <= 0xdfff)
                jj_cfail(L->c, FM_ERR_UNSUPPORTED, line, "surrogate escapes in string literals are not supported");
            o += (size_t)jj_utf8_put(out + o, cp);
            continue;
        }
        if (d >= 0x80) {
            /* "\" before a non-ASCII char: backslashreplace turned the char into an escape that
               the doubled backslash now keeps literal */
            size_t q = i;
            cp = jj_utf8_next(s, n, &q);
            i = q;
            char tmp[16];
            int k;
            if (cp < 0x100) k = snprintf(tmp, sizeof tmp, "\\x%02x", cp);
            else if (cp < 0x10000) k = snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            else k = snprintf(tmp, sizeof tmp, "\\U%08x", cp);
            memcpy(out + o, tmp, (size_t)k);
            o += (size_t)k;
            continue;
        }
        /* unknown escape: kept as written */
        out[o++] = '\\';
        out[o++] = (char)d;
        i++;
    }
    return jv_str_immortal(L->c, out, o);
}

/* ---- numbers ------------------------------------------------------------------------------- */

static int isdig(char ch) { return ch >= '0' && ch <= '9'; }

/* (\d+_)*\d+ at i; returns end or 0 if no match */
static size_t digits(const char *s, size_t n, size_t i) {
    if (i >= n || !isdig(s[i])) return 0;
    size_t p = i;
    while (p < n) {
        if (isdig(s[p])) p++;
        else if (s[p] == '_' && p + 1 < n && isdig(s[p + 1])) p++;
        else break;
    }
    return p;
}

static size_t exponent(const char *s, size_t n, size_t i) {
    if (i >= n || (s[i] != 'e' && s[i] != 'E')) return 0;
    size_t p = i + 1;
    if (p < n && (s[p] == '+' || s[p] == '-')) p++;
    return digits(s, n, p);
}

static size_t float_match(const char *s, size_t n, size_t i) {
    if (i > 0 && s[i - 1] == '.') return 0;
    size_t q = digits(s, n, i);
    if (!q) return 0;
    size_t frac = (q < n && s[q] == '.') ? digits(s, n, q + 1) : 0;
    if (frac) {
        size_t e = exponent(s, n, frac);
        if (e) return e;
    }
    size_t e = exponent(s, n, q);
    if (e) return e;
    return frac;
}

static size_t int_match(const char *s, size_t n, size_t i, int *base) {
    if (i >= n || !isdig(s[i])) return 0;
    if (s[i] == '0' && i + 1 < n) {
        char b = s[i + 1];
        int bs = (b == 'b' || b == 'B') ? 2 : (b == 'o' || b == 'O') ? 8 : (b == 'x' || b == 'X') ? 16 : 0;
        if (bs) {
            size_t p = i + 2, cnt = 0;
            for (;;) {
                size_t q = p;
                if (q < n && s[q] == '_') q++;
                int h = q < n ? hexval(s[q]) : -1;
                if (h < 0 || h >= bs) break;
                p = q + 1;
                cnt++;
            }
            if (cnt) {
                *base = bs;
                return p;
            }
        }
    }
    *base = 10;
    size_t p = i + 1;
    char want0 = s[i] == '0';
    for (;;) {
        size_t q = p;
        if (q < n && s[q] == '_') q++;
        if (q >= n || !isdig(s[q]) || (want0 && s[q] != '0')) break;
        p = q + 1;
    }
    return p;
}

static int64_t parse_int(lexer *L, const char *s, size_t a, size_t b, int base, int line) {
    size_t p = a;
    if (base != 10) p += 2;
    uint64_t v = 0;
    for (; p < b; p++) {
        if (s[p] == '_') continue;
        int h = hexval(s[p]);
        if (v > (UINT64_C(0x7fffffffffffffff) - (uint64_t)h) / (uint64_t)base)
            jj_cfail(L->c, FM_ERR_UNSUPPORTED, line, "integer literal out of the 64-bit range");
        v = v * (uint64_t)base + (uint64_t)h;
    }
    return (int64_t)v;
}

/* ---- operators ------------------------------------------------------------------------------- */

static int op_match(const char *s, size_t n, size_t i, uint8_t *op) {
    static const struct { const char *t; uint8_t op; } two[] = {
        {"//", OP_FLOORDIV}, {"**", OP_POW}, {"==", OP_EQ}, {"!=", OP_NE}, {">=", OP_GTEQ}, {"<=", OP_LTEQ}};
    for (size_t k = 0; k < sizeof two / sizeof *two; k++)
        if (starts(s, n, i, two[k].t)) {
            *op = two[k].op;
            return 2;
        }
    switch (s[i]) {
    case '+': *op = OP_ADD; return 1;
    case '-': *op = OP_SUB; return 1;
    case '/': *op = OP_DIV; return 1;
    case '*': *op = OP_MUL; return 1;
    case '%': *op = OP_MOD; return 1;
    case '~': *op = OP_TILDE; return 1;
    case '[': *op = OP_LBRACKET; return 1;
    case ']': *op = OP_RBRACKET; return 1;
    case '(': *op = OP_LPAREN; return 1;
    case ')': *op = OP_RPAREN; return 1;
    case '{': *op = OP_LBRACE; return 1;
    case '}': *op = OP_RBRACE; return 1;
    case '>': *op = OP_GT; return 1;
    case '<': *op = OP_LT; return 1;
    case '=': *op = OP_ASSIGN; return 1;
    case '.': *op = OP_DOT; return 1;
    case ':': *op = OP_COLON; return 1;
    case '|': *op = OP_PIPE; return 1;
    case ',': *op = OP_COMMA; return 1;
    case ';': *op = OP_SEMICOLON; return 1;
    default: return 0;
    }
}

/* Lex the inside of a {% %} (kind '%') or {{ }} (kind '{') tag starting at p. Returns the
   position after the end tag and sets *last_nl (the end match finished with a newline). */
static size_t lex_tag(lexer *L, size_t p, char kind, int *last_nl) {
    const char *s = L->s;
    size_t n = L->n;
    char stack[JJ_MAX_NEST];
    int bal = 0;
    for (;;) {
        if (p >= n) jj_cfail(L->c, FM_ERR_FORMAT, L->line, "unexpected end of template inside a %s tag", kind == '%' ? "{% %}" : "{{ }}");
        if (bal == 0) {
            size_t end = 0;
            if (kind == '%') {
                if (starts(s, n, p, "+%}")) end = p + 3;
                else if (starts(s, n, p, "-%}")) end = p + 3 + space_run(s, n, p + 3);
                else if (starts(s, n, p, "%}")) end = p + 2 + (p + 2 < n && s[p + 2] == '\n');
            } else {
                if (starts(s, n, p, "-}}")) end = p + 3 + space_run(s, n, p + 3);
                else if (starts(s, n, p, "}}")) end = p + 2;
            }
            if (end) {
                push(L, kind == '%' ? TK_BLOCK_END : TK_VAR_END, L->line);
                L->line += count_nl(s, p, end);
                *last_nl = s[end - 1] == '\n';
                return end;
            }
        }
        size_t ws = space_run(s, n, p);
        if (ws) {
            L->line += count_nl(s, p, p + ws);
            p += ws;
            continue;
        }
        size_t q;
        int base;
        if ((q = float_match(s, n, p)) != 0) {
            char buf[128];
            size_t k = 0;
            for (size_t i = p; i < q && k < sizeof buf - 1; i++)
                if (s[i] != '_') buf[k++] = s[i];
            buf[k] = 0;
            jtok *t = push(L, TK_FLOAT, L->line);
            t->val = jv_float(strtod(buf, NULL));
            p = q;
            continue;
        }
        if ((q = int_match(s, n, p, &base)) != 0) {
            jtok *t = push(L, TK_INT, L->line);
            t->val = jv_int(parse_int(L, s, p, q, base, L->line));
            p = q;
            continue;
        }
        char ch = s[p];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_') {
            q = p + 1;
            while (q < n && ((s[q] >= 'a' && s[q] <= 'z') || (s[q] >= 'A' && s[q] <= 'Z') || s[q] == '_' || isdig(s[q]))) q++;
            jtok *t = push(L, TK_NAME, L->line);
            t->s = jj_cstrdup(L->c, s + p, q - p);
            t->len = q - p;
            p = q;
            continue;
        }
        if (ch == '\'' || ch == '"') {
            q = p + 1;
            int closed = 0;
            while (q < n) {
                if (s[q] == '\\' && q + 1 < n) {
                    q += 2;
                    continue;
                }
                if (s[q] == ch) {
                    closed = 1;
                    break;
                }
                q++;
            }
            if (!closed) jj_cfail(L->c, FM_ERR_FORMAT, L->line, "unexpected char %c (an unterminated string)", ch);
            jtok *t = push(L, TK_STRING, L->line);
            t->val = decode_string(L, s + p + 1, q - p - 1, L->line);
            L->line += count_nl(s, p, q);
            p = q + 1;
            continue;
        }
        uint8_t op;
        int k = op_match(s, n, p, &op);
        if (k) {
            if (op == OP_LBRACE || op == OP_LPAREN || op == OP_LBRACKET) {
                if (bal >= JJ_MAX_NEST) jj_cfail(L->c, FM_ERR_UNSUPPORTED, L->line, "brackets nested too deeply");
                stack[bal++] = op == OP_LBRACE ? '}' : op == OP_LPAREN ? ')' : ']';
            } else if (op == OP_RBRACE || op == OP_RPAREN || op == OP_RBRACKET) {
                char want = op == OP_RBRACE ? '}' : op == OP_RPAREN ? ')' : ']';
                if (!bal) jj_cfail(L->c, FM_ERR_FORMAT, L->line, "unexpected '%c'", want);
                if (stack[bal - 1] != want)
                    jj_cfail(L->c, FM_ERR_FORMAT, L->line, "unexpected '%c', expected '%c'", want, stack[bal - 1]);
                bal--;
            }
            jtok *t = push(L, TK_OP, L->line);
            t->op = op;
            p += (size_t)k;
            continue;
        }
        if ((unsigned char)ch >= 0x20 && (unsigned char)ch < 0x7f)
            jj_cfail(L->c, FM_ERR_FORMAT, L->line, "unexpected char '%c' at %zu", ch, p);
        jj_cfail(L->c, FM_ERR_FORMAT, L->line, "unexpected char (byte 0x%02x) at %zu", (unsigned char)ch, p);
    }
}

void jj_lex(jj_cctx *c, const char *src, size_t len, jtok **toks, size_t *ntoks) {
    /* normalise newlines; drop one trailing newline (keep_trailing_newline=False) */
    char *s = jj_calloc(c, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else s[n++] = src[i];
    }
    if (n > 0 && s[n - 1] == '\n') n--;
    s[n] = 0;

    lexer L = {c, s, n, 1, NULL, 0, 0};
    size_t pos = 0;
    int line_starting = 1;
    while (pos < n) {
        size_t i = pos;
        int found = 0;
        for (; i + 1 < n; i++)
            if (s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')) {
                found = 1;
                break;
            }
        if (!found) {
            emit_data(&L, s + pos, n - pos, L.line);
            break;
        }
        char kind = s[i + 1];
        size_t p = i + 2;
        char sign = 0;
        if (p < n && (s[p] == '-' || s[p] == '+')) sign = s[p++];

        /* {% raw %} */
        size_t raw_end = 0;
        if (kind == '%') {
            size_t q = p + space_run(s, n, p);
            if (starts(s, n, q, "raw")) {
                q += 3;
                q += space_run(s, n, q);
                if (starts(s, n, q, "-%}")) raw_end = q + 3 + space_run(s, n, q + 3);
                else if (starts(s, n, q, "%}")) raw_end = q + 2;
            }
        }

        size_t tlen = strip_text(s + pos, i - pos, sign, kind == '{', line_starting);
        emit_data(&L, s + pos, tlen, L.line);
        L.line += count_nl(s, pos, i);

        if (raw_end) {
            int tag_line = L.line;
            L.line += count_nl(s, i, raw_end);
            int ls = s[raw_end - 1] == '\n';
            size_t j = raw_end, end = 0;
            char sign2 = 0;
            for (; j + 1 < n; j++) {
                if (s[j] != '{' || s[j + 1] != '%') continue;
                size_t q = j + 2;
                char sg = 0;
                if (q < n && (s[q] == '-' || s[q] == '+')) sg = s[q++];
                q += space_run(s, n, q);
                if (!starts(s, n, q, "endraw")) continue;
                q += 6;
                q += space_run(s, n, q);
                if (starts(s, n, q, "+%}")) end = q + 3;
                else if (starts(s, n, q, "-%}")) end = q + 3 + space_run(s, n, q + 3);
                else if (starts(s, n, q, "%}")) end = q + 2 + (q + 2 < n && s[q + 2] == '\n');
                if (end) {
                    sign2 = sg;
                    break;
                }
            }
            if (!end) jj_cfail(c, FM_ERR_FORMAT, tag_line, "missing end of raw directive");
            size_t clen = strip_text(s + raw_end, j - raw_end, sign2, 0, ls);
            emit_data(&L, s + raw_end, clen, L.line);
            L.line += count_nl(s, raw_end, end);
            line_starting = s[end - 1] == '\n';
            pos = end;
            continue;
        }

        if (kind == '#') {
            size_t j = p, end = 0;
            for (; j < n; j++) {
                if (starts(s, n, j, "+#}")) end = j + 3;
                else if (starts(s, n, j, "-#}")) end = j + 3 + space_run(s, n, j + 3);
                else if (starts(s, n, j, "#}")) end = j + 2 + (j + 2 < n && s[j + 2] == '\n');
                if (end) break;
            }
            if (!end) jj_cfail(c, FM_ERR_FORMAT, L.line, "missing end of comment tag");
            L.line += count_nl(s, i, end);
            line_starting = s[end - 1] == '\n';
            pos = end;
            continue;
        }

        push(&L, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, L.line);
        int last_nl = 0;
        pos = lex_tag(&L, p, kind, &last_nl);
        line_starting = last_nl;
    }
    push(&L, TK_EOF, L.line);
    *toks = L.toks;
    *ntoks = L.ntoks;
}
