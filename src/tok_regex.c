/* tok_regex.c - tokenizer.json regular expressions on PCRE2, behaving like the Oniguruma engine
   (Oniguruma syntax, UTF-8, Unicode classes) that the Rust `tokenizers` crate uses.

   Differences between the two engines are removed by rewriting the pattern before compiling:
     \s \S (outside a class)   -> an explicit White_Space class (PCRE2's \s also takes U+180E)
     \w \W (outside a class)   -> Oniguruma's Unicode word: [\p{L}\p{M}\p{Nd}\p{Pc}\p{Nl}] + extras
     \p{X} \P{X} \d           -> PCRE2's class plus the code points the reference's newer Unicode (16.0)
                                 assigns to X (tok_unicode.c); PCRE2 10.42 knows Unicode 14
     \h \H                     -> hex digits (Oniguruma) rather than horizontal space (PCRE2)
     \uHHHH                    -> \x{HHHH}
     (?m) / (?m:...)           -> (?s) : in Oniguruma 'm' makes '.' match a newline
     ^ $                       -> line anchors (PCRE2_MULTILINE), as in Oniguruma
   A class set operation (&&), which PCRE2 lacks, is FM_ERR_UNSUPPORTED. Subjects are always
   valid UTF-8 (checked once on input), so matching runs with PCRE2_NO_UTF_CHECK. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

struct fm_regex {
    pcre2_code *code;
};

struct fm_re_scratch {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
};

fm_re_scratch *fm_re_scratch_new(void) {
    fm_re_scratch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->md = pcre2_match_data_create(1, NULL);
    if (!s->md) {
        free(s);
        return NULL;
    }
    return s;
}

void fm_re_scratch_free(fm_re_scratch *s) {
    if (!s) return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit);
    free(s);
}

#define WS_RANGES "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
#define HEX_RANGES "0-9a-fA-F"

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}


static const char *const long_names[][2] = {
    {"letter", "L"}, {"uppercaseletter", "Lu"}, {"lowercaseletter", "Ll"}, {"titlecaseletter", "Lt"},
    {"modifierletter", "Lm"}, {"otherletter", "Lo"}, {"mark", "M"}, {"combiningmark", "M"}, {"nonspacingmark", "Mn"},
    {"spacingmark", "Mc"}, {"enclosingmark", "Me"}, {"number", "N"}, {"decimalnumber", "Nd"}, {"digit", "Nd"},
    {"letternumber", "Nl"}, {"othernumber", "No"}, {"punctuation", "P"}, {"punct", "P"},
    {"connectorpunctuation", "Pc"}, {"dashpunctuation", "Pd"}, {"openpunctuation", "Ps"},
    {"closepunctuation", "Pe"}, {"initialpunctuation", "Pi"}, {"finalpunctuation", "Pf"},
    {"otherpunctuation", "Po"}, {"symbol", "S"}, {"mathsymbol", "Sm"}, {"currencysymbol", "Sc"},
    {"modifiersymbol", "Sk"}, {"othersymbol", "So"}, {"separator", "Z"}, {"spaceseparator", "Zs"},
    {"lineseparator", "Zl"}, {"paragraphseparator", "Zp"}, {"other", "C"}, {"control", "Cc"}, {"cntrl", "Cc"},
    {"format", "Cf"}, {"privateuse", "Co"}, {"unassigned", "Cn"}};

/* The delta entry for a general-category name (short or long, Oniguruma's loose matching), or NULL. */
static const fm_re_delta *find_delta(const char *name, size_t n) {
    char norm[48];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < sizeof norm; i++) {
        char c = name[i];
        if (c == ' ' || c == '_' || c == '-') continue;
        norm[k++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    norm[k] = 0;
    const char *shortname = NULL;
    for (size_t i = 0; i < sizeof long_names / sizeof *long_names; i++)
        if (!strcmp(norm, long_names[i][0])) shortname = long_names[i][1];
    for (const fm_re_delta *d = fm_re_deltas; d->name; d++) {
        if (shortname ? !strcmp(d->name, shortname) : (strlen(d->name) == k && tolower((unsigned char)d->name[0]) == norm[0] &&
                                                         (k == 1 || tolower((unsigned char)d->name[1]) == norm[1])))
            return d;
    }
    return NULL;
}

/* Emit \p{X} (negated: \P{X}) with the reference's Unicode version. */
static int emit_property(fm_buf *out, const fm_re_delta *d, int negated, int in_class) {
    char base[16];
    snprintf(base, sizeof base, "\\p{%s}", d->name);
    int ok = 1;
    int has_rm = d->remove[0] != 0;
    if (in_class) {
        if (negated) {
            base[1] = 'P';
            return fm_buf_append(out, base, strlen(base)); /* approximation: no set difference in PCRE2 */
        }
        return fm_buf_append(out, base, strlen(base)) && fm_buf_append(out, d->add, strlen(d->add));
    }
    if (!negated) {
        if (has_rm) ok = ok && fm_buf_append(out, "(?:(?![", 7) && fm_buf_append(out, d->remove, strlen(d->remove)) &&
                         fm_buf_append(out, "])", 2);
        ok = ok && fm_buf_append(out, "[", 1) && fm_buf_append(out, base, strlen(base)) &&
             fm_buf_append(out, d->add, strlen(d->add)) && fm_buf_append(out, "]", 1);
        if (has_rm) ok = ok && fm_buf_append(out, ")", 1);
        return ok;
    }
    if (has_rm) ok = ok && fm_buf_append(out, "(?:", 3);
    ok = ok && fm_buf_append(out, "[^", 2) && fm_buf_append(out, base, strlen(base)) &&
         fm_buf_append(out, d->add, strlen(d->add)) && fm_buf_append(out, "]", 1);
    if (has_rm) ok = ok && fm_buf_append(out, "|[", 2) && fm_buf_append(out, d->remove, strlen(d->remove)) &&
                     fm_buf_append(out, "])", 2);
    return ok;
}

#define WORD_BASE "\\p{L}\\p{M}\\p{Nd}\\p{Pc}\\p{Nl}"

/* Rewrite an Oniguruma pattern for PCRE2 (see the file comment). */
static fm_status translate(const char *p, size_t n, const char *what, fm_buf *out) {
    int in_class = 0;     /* nesting depth of [...] */
    int class_start = 0;  /* just after '[' or '[^': a ']' here is literal */
#define PUT(s, len)                                                                        \
    do {                                                                                   \
        if (!fm_buf_append(out, (s), (len))) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory"); \
    } while (0)
#define PUTS(s) PUT((s), strlen(s))
    for (size_t i = 0; i < n;) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            class_start = 0;
            switch (e) {
            case 's':
                PUTS(in_class ? WS_RANGES : "[" WS_RANGES "]");
                i += 2;
                continue;
            case 'S':
                PUTS(in_class ? "\\S" : "[^" WS_RANGES "]");
                i += 2;
                continue;
            case 'w':
                PUTS(in_class ? "" : "[");
                PUTS(WORD_BASE);
                PUTS(fm_re_word_add);
                PUTS(in_class ? "" : "]");
                i += 2;
                continue;
            case 'W':
                if (in_class) {
                    PUTS("\\W");
                } else {
                    PUTS("[^" WORD_BASE);
                    PUTS(fm_re_word_add);
                    PUTS("]");
                }
                i += 2;
                continue;
            case 'd':
                PUTS(in_class ? "\\p{Nd}" : "[\\p{Nd}");
                PUTS(fm_re_digit_add);
                PUTS(in_class ? "" : "]");
                i += 2;
                continue;
            case 'D':
                if (in_class) {
                    PUTS("\\D");
                } else {
                    PUTS("[^\\p{Nd}");
                    PUTS(fm_re_digit_add);
                    PUTS("]");
                }
                i += 2;
                continue;
            case 'p':
            case 'P': {
                /* \p{Name}, \p{^Name}, \P{Name}, \pL */
                const char *name = NULL;
                size_t nl = 0, adv = 0;
                int neg = e == 'P';
                if (i + 2 < n && p[i + 2] == '{') {
                    const char *close = memchr(p + i + 3, '}', n - i - 3);
                    if (close) {
                        name = p + i + 3;
                        nl = (size_t)(close - name);
                        adv = (size_t)(close - (p + i)) + 1;
                        if (nl && name[0] == '^') {
                            neg = !neg;
                            name++;
                            nl--;
                        }
                    }
                } else if (i + 2 < n && ((p[i + 2] >= 'A' && p[i + 2] <= 'Z') || (p[i + 2] >= 'a' && p[i + 2] <= 'z'))) {
                    name = p + i + 2;
                    nl = 1;
                    adv = 3;
                }
                const fm_re_delta *d = name ? find_delta(name, nl) : NULL;
                if (d && (d->add[0] || d->remove[0])) {
                    if (!emit_property(out, d, neg, in_class)) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
                    class_start = 0;
                    i += adv;
                    continue;
                }
                break;
            }
            case 'h':
                PUTS(in_class ? HEX_RANGES : "[" HEX_RANGES "]");
                i += 2;
                continue;
            case 'H':
                if (in_class)
                    return fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: %s: regex: \\H inside a character class is not supported", what);
                PUTS("[^" HEX_RANGES "]");
                i += 2;
                continue;
            case 'u':
                if (i + 5 < n && hexval(p[i + 2]) >= 0 && hexval(p[i + 3]) >= 0 &&
                    hexval(p[i + 4]) >= 0 && hexval(p[i + 5]) >= 0) {
                    PUTS("\\x{");
                    PUT(p + i + 2, 4);
                    PUTS("}");
                    i += 6;
                    continue;
                }
                break;
            default:
                break;
            }
            /* any other escape: copy the backslash and the next (whole UTF-8) character */
            size_t k = fm_utf8_len((unsigned char)e);
            if (i + 1 + k > n) k = n - i - 1;
            PUT(p + i, 1 + k);
            i += 1 + k;
            continue;
        }
        if (in_class) {
            if (c == '[' && i + 1 < n && p[i + 1] == ':') {
                /* POSIX bracket [:name:] or [:^name:] */
                const char *end = NULL;
                for (size_t j = i + 2; j + 1 < n; j++)
                    if (p[j] == ':' && p[j + 1] == ']') {
                        end = p + j + 2;
                        break;
                    }
                if (end) {
                    PUT(p + i, (size_t)(end - (p + i)));
                    i = (size_t)(end - p);
                    class_start = 0;
                    continue;
                }
            }
            if (c == '[') {
                return fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: %s: regex: nested character classes are not supported", what);
            }
            if (c == '&' && i + 1 < n && p[i + 1] == '&')
                return fm_error(FM_ERR_UNSUPPORTED, "tokenizer.json: %s: regex: character class intersection (&&) is not supported", what);
            if (c == ']' && !class_start) {
                in_class = 0;
                PUT(p + i, 1);
                i++;
                continue;
            }
            class_start = 0;
            size_t k = fm_utf8_len((unsigned char)c);
            if (i + k > n) k = n - i;
            PUT(p + i, k);
            i += k;
            continue;
        }
        if (c == '[') {
            in_class = 1;
            class_start = 1;
            PUT(p + i, 1);
            i++;
            if (i < n && p[i] == '^') {
                PUT(p + i, 1);
                i++;
            }
            continue;
        }
        if (c == '(' && i + 2 < n && p[i + 1] == '?') {
            /* option group (?imx-imx) or (?imx-imx:...): Oniguruma's m is PCRE2's s */
            size_t j = i + 2;
            while (j < n && (p[j] == 'i' || p[j] == 'm' || p[j] == 'x' || p[j] == '-')) j++;
            if (j > i + 2 && j < n && (p[j] == ')' || p[j] == ':')) {
                PUTS("(?");
                for (size_t k = i + 2; k < j; k++) PUT(p[k] == 'm' ? "s" : p + k, 1);
                i = j;
                continue;
            }
        }
        size_t k = fm_utf8_len((unsigned char)c);
        if (i + k > n) k = n - i;
        PUT(p + i, k);
        i += k;
    }
    return FM_OK;
#undef PUT
#undef PUTS
}

fm_status fm_regex_compile(const char *pat, size_t len, int literal, const char *what, fm_regex **out) {
    if (fm_utf8_valid_prefix(pat, len) != len)
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: pattern is not valid UTF-8", what);
    fm_buf t = {0};
    const char *src = pat;
    size_t srclen = len;
    uint32_t opts = PCRE2_UTF | PCRE2_NO_UTF_CHECK;
    if (literal) {
        opts |= PCRE2_LITERAL;
    } else {
        opts |= PCRE2_UCP;
        fm_status st = translate(pat, len, what, &t);
        if (st) {
            fm_buf_free(&t);
            return st;
        }
        src = t.p ? t.p : "";
        srclen = t.n;
        opts |= PCRE2_MULTILINE;
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc) {
        fm_buf_free(&t);
        return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int err;
    PCRE2_SIZE erroff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)src, srclen, opts, &err, &erroff, cc);
    pcre2_compile_context_free(cc);
    fm_buf_free(&t);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return fm_error(FM_ERR_FORMAT, "tokenizer.json: %s: regex '%.*s' does not compile: %s", what,
                        (int)(len > 200 ? 200 : len), pat, (const char *)msg);
    }
#ifndef FM_NO_PCRE2_JIT /* -DFM_NO_PCRE2_JIT for valgrind runs: JIT code confuses memcheck */
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
#endif
    fm_regex *re = malloc(sizeof *re);
    if (!re) {
        pcre2_code_free(code);
        return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    re->code = code;
    *out = re;
    return FM_OK;
}

void fm_regex_free(fm_regex *re) {
    if (!re) return;
    pcre2_code_free(re->code);
    free(re);
}

static int match_at(const fm_regex *re, fm_re_scratch *rs, const char *s, size_t n, size_t from) {
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, rs->md, rs->mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !rs->jit) {
        /* deep backtracking: retry with a large JIT stack */
        rs->mctx = pcre2_match_context_create(NULL);
        rs->jit = pcre2_jit_stack_create(1 << 16, 64 << 20, NULL);
        if (!rs->mctx || !rs->jit) return PCRE2_ERROR_NOMEMORY;
        pcre2_jit_stack_assign(rs->mctx, NULL, rs->jit);
        rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, rs->md, rs->mctx);
    }
    return rc;
}

fm_status fm_regex_find_all(const fm_regex *re, fm_re_scratch *rs, const char *s, size_t n, fm_spanvec *out) {
    size_t last_end = 0;
    int have_last = 0;
    size_t last_match_end = 0;
    while (last_end <= n) {
        int rc = match_at(re, rs, s, n, last_end);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            if (rc == PCRE2_ERROR_NOMEMORY) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return fm_error(FM_ERR_UNSUPPORTED, "tokenizer: regex matching failed on this input: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(rs->md);
        size_t ms = ov[0], me = ov[1];
        if (me < ms) me = ms; /* \K tricks; keep spans sane */
        if (me == ms && have_last && last_match_end == me) {
            /* an empty match right after the previous one: step one character (Oniguruma's find_iter) */
            if (last_end >= n) break;
            last_end += fm_utf8_len((unsigned char)s[last_end]);
            continue;
        }
        last_end = me;
        have_last = 1;
        last_match_end = me;
        if (!fm_spanvec_push(out, ms, me)) return fm_error(FM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    return FM_OK;
}

/* The regex the ByteLevel pre-tokenizer uses (GPT-2's). */
const char fm_bytelevel_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
