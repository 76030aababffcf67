/* tokenizer.h - internals of the HuggingFace tokenizer.json implementation (fm_tokenizer).

   Pipeline of one encode, as in the Rust `tokenizers` crate (0.22):
     text -> split on added tokens that are not `normalized` (tok_added.c)
          -> each remaining piece: normalizer (tok_normalize.c)
          -> split on `normalized` added tokens (tok_added.c)
          -> each remaining piece: pre-tokenizer (tok_pretokenize.c) -> pieces
          -> each piece: BPE model (bpe.c) -> ids
          -> truncation, post-processor, padding (tok_post.c)
   Decoding: ids -> token strings -> decoder chain (tok_decode.c).
   Only ids are produced; offsets and alignments are not tracked. Everything in fm_tokenizer is
   read-only after open except the BPE word cache, which is guarded by per-shard mutexes. */
#ifndef FM_TOKENIZER_H
#define FM_TOKENIZER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "falconmamba.h"

struct cJSON;
struct fm_chat_template;

/* ---- small utilities (tok_util.c) ------------------------------------------------------------ */

typedef struct fm_buf {
    char *p;
    size_t n, cap;
} fm_buf;

int fm_buf_reserve(fm_buf *b, size_t extra); /* 1 ok, 0 out of memory */
int fm_buf_append(fm_buf *b, const void *s, size_t n);
void fm_buf_free(fm_buf *b);

typedef struct fm_i32vec {
    int32_t *v;
    size_t n, cap;
} fm_i32vec;
int fm_i32vec_push(fm_i32vec *v, int32_t x);
int fm_i32vec_append(fm_i32vec *v, const int32_t *x, size_t n);
void fm_i32vec_free(fm_i32vec *v);

/* An allocator whose blocks never move until fm_arena_reset / fm_arena_free. */
typedef struct fm_arena_block fm_arena_block;
typedef struct fm_arena {
    fm_arena_block *head;
} fm_arena;
void *fm_arena_alloc(fm_arena *a, size_t n);
void fm_arena_reset(fm_arena *a); /* keeps the first block */
void fm_arena_free(fm_arena *a);

/* Length of the longest valid UTF-8 prefix (n if s is valid: no overlongs, surrogates, > U+10FFFF). */
size_t fm_utf8_valid_prefix(const char *s, size_t n);
/* Decode one code point of VALID UTF-8 at s[*i], advance *i. */
static inline uint32_t fm_utf8_next(const char *s, size_t *i) {
    const unsigned char *p = (const unsigned char *)s + *i;
    uint32_t c = p[0];
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    if (c < 0xE0) {
        *i += 2;
        return ((c & 0x1F) << 6) | (p[1] & 0x3F);
    }
    if (c < 0xF0) {
        *i += 3;
        return ((c & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    }
    *i += 4;
    return ((c & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) | ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}
/* Byte length of the UTF-8 sequence starting with lead byte c (valid UTF-8 assumed). */
static inline size_t fm_utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }
size_t fm_utf8_put(uint32_t cp, char *out); /* writes 1..4 bytes */
/* Code point ending at s[end) (valid UTF-8), and where it starts. */
uint32_t fm_utf8_prev(const char *s, size_t end, size_t *start);
/* Append s as Rust's String::from_utf8_lossy would: each maximal invalid subsequence -> U+FFFD. */
int fm_utf8_lossy_append(fm_buf *out, const char *s, size_t n);

/* Character classes, as the Rust crate defines them. */
int fm_uc_is_whitespace(uint32_t c); /* char::is_whitespace (White_Space) */
int fm_uc_is_numeric(uint32_t c);    /* char::is_numeric (Nd, Nl, No) */
int fm_uc_is_punct(uint32_t c);      /* is_ascii_punctuation || Unicode P* */
int fm_uc_is_word(uint32_t c);       /* regex-crate \w: Alphabetic, M, Nd, Pc, Join_Control */
int fm_uc_is_mark(uint32_t c);       /* M* */
int fm_uc_is_mark_nonspacing(uint32_t c); /* Mn */
int fm_uc_is_other(uint32_t c);      /* C* */
int fm_uc_is_chinese(uint32_t c);    /* BERT's CJK ranges */

/* Tables probed from the reference (tok_unicode.c). */
int fm_uc_punct_table(uint32_t c);
int fm_uc_numeric_table(uint32_t c);
int fm_uc_word_table(uint32_t c);
int fm_uc_mark_table(uint32_t c);         /* StripAccents' combining marks */
int fm_uc_mn_table(uint32_t c);           /* BertNormalizer's nonspacing marks */
int fm_uc_bert_removed_table(uint32_t c); /* removed by BertNormalizer clean_text */
/* For one general category X: PCRE2 class ranges to add to / remove from PCRE2's \p{X}. */
typedef struct fm_re_delta {
    const char *name, *add, *remove;
} fm_re_delta;
extern const fm_re_delta fm_re_deltas[]; /* ends with a NULL name */
extern const char fm_re_word_add[], fm_re_word_remove[], fm_re_digit_add[];
/* Per-code-point replacements (sorted by cp) where utf8proc's Unicode differs from the reference's. */
typedef struct fm_uc_map {
    uint32_t cp;
    const char *to;
} fm_uc_map;
extern const fm_uc_map fm_uc_lower_extra[];
extern const size_t fm_uc_lower_extra_n;
/* Sorted code points the reference's normalizer does not decompose (utf8proc does). */
extern const uint32_t fm_uc_keep_nfd[], fm_uc_keep_nfkd[];
extern const size_t fm_uc_keep_nfd_n, fm_uc_keep_nfkd_n;
int fm_uc_in_list(const uint32_t *v, size_t n, uint32_t cp);
const char *fm_uc_map_find(const fm_uc_map *m, size_t n, uint32_t cp); /* NULL if absent */

/* GPT-2 byte <-> unicode alphabet. */
extern const uint16_t fm_bytelevel_cp[256];
int fm_bytelevel_byte(uint32_t cp); /* -1 if cp is not in the alphabet */

/* 64-bit string hash (FNV-1a variant with a final mix). */
uint64_t fm_tok_hash(const void *s, size_t n);

/* Open-addressing map from byte strings to int32 ids. Keys are copied into an internal blob. */
typedef struct fm_strmap {
    uint32_t *slots; /* entry index + 1; 0 = empty */
    size_t mask;
    struct fm_strmap_entry *e;
    size_t n, cap;
    fm_buf blob;
} fm_strmap;
typedef struct fm_strmap_entry {
    size_t off;
    uint32_t len;
    int32_t val;
    uint64_t hash;
} fm_strmap_entry;
/* Insert or overwrite. 1 ok, 0 out of memory. */
int fm_strmap_put(fm_strmap *m, const char *k, size_t n, int32_t val);
/* -1 if absent (values are >= 0). */
int32_t fm_strmap_get(const fm_strmap *m, const char *k, size_t n);
void fm_strmap_free(fm_strmap *m);

/* JSON helpers for the loaders: optional typed fields. */
fm_status fm_json_bool(const struct cJSON *obj, const char *key, int dflt, int *out, const char *where);
fm_status fm_json_string(const struct cJSON *obj, const char *key, const char **out, const char *where);
/* The single character of a one-char string field. */
fm_status fm_json_char(const struct cJSON *obj, const char *key, uint32_t *out, const char *where);

/* ---- regular expressions (tok_regex.c): Oniguruma semantics on PCRE2 ------------------------- */

typedef struct fm_regex fm_regex;
typedef struct fm_span {
    size_t start, end;
} fm_span;
typedef struct fm_spanvec {
    fm_span *v;
    size_t n, cap;
} fm_spanvec;
int fm_spanvec_push(fm_spanvec *v, size_t start, size_t end);

/* Per-call matching state (PCRE2 match data and JIT stack). Not shared between threads. */
typedef struct fm_re_scratch fm_re_scratch;
fm_re_scratch *fm_re_scratch_new(void);
void fm_re_scratch_free(fm_re_scratch *s);

/* Compile an Oniguruma-syntax pattern (literal = 1: match the text exactly). `what` names the
   component in errors. */
fm_status fm_regex_compile(const char *pat, size_t len, int literal, const char *what, fm_regex **out);
void fm_regex_free(fm_regex *re);
/* The "pattern" field of Split / Replace: {"String": s} (a literal) or {"Regex": r}. */
fm_status fm_pattern_parse(const struct cJSON *j, const char *where, fm_regex **out);
/* All matches in s[0..n) as Oniguruma's find_iter yields them (empty matches right after a match
   are skipped). Appends to *out. */
fm_status fm_regex_find_all(const fm_regex *re, fm_re_scratch *rs, const char *s, size_t n, fm_spanvec *out);

/* ---- normalizers (tok_normalize.c) -------------------------------------------------------- */

typedef enum fm_norm_kind {
    FM_NORM_SEQUENCE,
    FM_NORM_NFC,
    FM_NORM_NFD,
    FM_NORM_NFKC,
    FM_NORM_NFKD,
    FM_NORM_LOWERCASE,
    FM_NORM_REPLACE,
    FM_NORM_PREPEND,
    FM_NORM_STRIP,
    FM_NORM_STRIP_ACCENTS,
    FM_NORM_BYTELEVEL,
    FM_NORM_NMT,
    FM_NORM_BERT
} fm_norm_kind;

typedef struct fm_normalizer {
    fm_norm_kind kind;
    struct fm_normalizer **children;
    size_t n_children;
    fm_regex *re;        /* Replace */
    char *str;           /* Replace content / Prepend string */
    size_t str_len;
    int left, right;     /* Strip */
    int clean_text, chinese, strip_accents, lowercase; /* Bert */
} fm_normalizer;

fm_status fm_normalizer_parse(const struct cJSON *j, const char *where, fm_normalizer **out);
void fm_normalizer_free(fm_normalizer *n);
/* Normalize s[0..n) into *out (replacing its contents). */
fm_status fm_normalizer_apply(const fm_normalizer *nz, fm_re_scratch *rs, const char *s, size_t n, fm_buf *out);

/* ---- pre-tokenizers (tok_pretokenize.c) ----------------------------------------------------- */

typedef enum fm_split_behavior {
    FM_SPLIT_REMOVED,
    FM_SPLIT_ISOLATED,
    FM_SPLIT_MERGED_WITH_PREVIOUS,
    FM_SPLIT_MERGED_WITH_NEXT,
    FM_SPLIT_CONTIGUOUS
} fm_split_behavior;

typedef enum fm_pretok_kind {
    FM_PT_SEQUENCE,
    FM_PT_BYTELEVEL,
    FM_PT_SPLIT,
    FM_PT_DIGITS,
    FM_PT_PUNCTUATION,
    FM_PT_WHITESPACE,
    FM_PT_WHITESPACE_SPLIT,
    FM_PT_METASPACE,
    FM_PT_BERT,
    FM_PT_CHAR_DELIMITER
} fm_pretok_kind;

enum { FM_PREPEND_ALWAYS, FM_PREPEND_FIRST, FM_PREPEND_NEVER };

typedef struct fm_pretok {
    fm_pretok_kind kind;
    struct fm_pretok **children;
    size_t n_children;
    int add_prefix_space, use_regex; /* ByteLevel */
    fm_regex *re;                    /* Split (String patterns are compiled as literals) */
    int invert;
    fm_split_behavior behavior;      /* Split, Punctuation */
    int individual_digits;           /* Digits */
    uint32_t ch;                     /* Metaspace replacement, CharDelimiterSplit delimiter */
    int prepend_scheme, split;       /* Metaspace */
} fm_pretok;

/* A piece of text during pre-tokenization. p points into the input or into an arena. */
typedef struct fm_piece {
    const char *p;
    size_t len;
    int at_start; /* the piece begins at offset 0 of the original input (Metaspace "first") */
} fm_piece;
typedef struct fm_piecevec {
    fm_piece *v;
    size_t n, cap;
} fm_piecevec;
int fm_piecevec_push(fm_piecevec *v, const char *p, size_t len, int at_start);

typedef struct fm_pt_scratch {
    fm_re_scratch *rs;
    fm_arena arena;
    fm_piecevec a, b;
    fm_spanvec spans;
    struct fm_match *matches;
    size_t n_matches, cap_matches;
} fm_pt_scratch;

fm_status fm_pretok_parse(const struct cJSON *j, const char *where, fm_pretok **out);
void fm_pretok_free(fm_pretok *pt);
/* Pre-tokenize the pieces in *io (replaced by the result). */
fm_status fm_pretok_apply(const fm_pretok *pt, fm_pt_scratch *sc, fm_piecevec *io);
/* Metaspace's prepend_scheme (+ legacy add_prefix_space), shared with the Metaspace decoder. */
fm_status fm_prepend_scheme_parse(const struct cJSON *j, const char *where, int *out);
/* The GPT-2 ByteLevel pattern, compiled once per tokenizer that needs it. */
extern const char fm_bytelevel_pattern[];

/* ---- BPE model (bpe.c) ------------------------------------------------------------------------ */

#define FM_BPE_CACHE_SHARDS 64
#define FM_BPE_CACHE_SHARD_SLOTS 2048 /* power of two */
#define FM_BPE_CACHE_MAX_WORD 4096    /* bytes; longer words are not cached */

typedef struct fm_bpe_cache_shard {
    pthread_mutex_t lock;
    uint64_t *hash;    /* 0 = empty slot */
    uint32_t *key_off; /* into blob */
    uint16_t *key_len;
    uint32_t *n_ids;
    size_t count;
    fm_buf blob;       /* key bytes followed by the ids (int32, aligned) */
} fm_bpe_cache_shard;

/* Ids are indices into per-id tables, so an id bounds memory: ids past this (16M, far beyond any real
   vocabulary) are refused at load rather than allocated for. */
#define FM_TOKENIZER_MAX_ID ((1 << 24) - 1)

typedef struct fm_bpe {
    fm_strmap vocab;           /* token string -> id */
    size_t vocab_size;         /* distinct tokens (HF's get_vocab_size) */
    int32_t max_id;            /* highest id in vocab, -1 if empty */
    const char **id_str;       /* id -> token string (into vocab.blob), NULL if none */
    uint32_t *id_len;
    /* merges: (left id, right id) -> (rank, new id), open addressing */
    uint64_t *mkeys;           /* (a << 32 | b) + 1; 0 = empty */
    uint32_t *mrank;
    int32_t *mnew;
    size_t mmask;
    int32_t unk_id;            /* -1 if no unk_token */
    int fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix;     /* continuing_subword_prefix / end_of_word_suffix, NULL if none */
    size_t prefix_len, suffix_len;
    int32_t byte_ids[256];     /* byte_fallback "<0xXX>" ids, -1 if absent */
    fm_bpe_cache_shard *cache; /* FM_BPE_CACHE_SHARDS shards */
} fm_bpe;

typedef struct fm_bpe_scratch {
    struct fm_bpe_sym *sym;
    size_t cap_sym;
    struct fm_bpe_merge *heap;
    size_t cap_heap;
    fm_buf tmp;
    fm_i32vec ids;
} fm_bpe_scratch;

fm_status fm_bpe_parse(const struct cJSON *model, fm_bpe *bpe);
void fm_bpe_free(fm_bpe *bpe);
int32_t fm_bpe_token_to_id(const fm_bpe *bpe, const char *s, size_t n);
/* Tokenize one pre-tokenized word; appends ids to *out. */
fm_status fm_bpe_tokenize(const fm_bpe *bpe, fm_bpe_scratch *sc, const char *w, size_t n, fm_i32vec *out);
void fm_bpe_scratch_free(fm_bpe_scratch *sc);

/* ---- added tokens (tok_added.c) ------------------------------------------------------------- */

typedef struct fm_added_token {
    char *content;
    size_t len;
    int32_t id;
    int single_word, lstrip, rstrip, normalized, special;
} fm_added_token;

/* A byte trie over token contents, matched leftmost-longest like HF's Aho-Corasick. */
typedef struct fm_trie_node {
    int32_t first_child; /* index into nodes, -1 none */
    int32_t next_sibling;
    int32_t token;       /* index into fm_added.tokens of the pattern ending here, -1 none */
    unsigned char byte;
} fm_trie_node;

typedef struct fm_trie {
    fm_trie_node *nodes;
    size_t n, cap;
    int32_t root_child[256]; /* first level, direct-indexed */
    size_t n_patterns;
} fm_trie;

typedef struct fm_added {
    fm_added_token *tokens; /* as listed in tokenizer.json, ids as HF assigns them */
    size_t n;
    fm_strmap by_content;   /* content -> id */
    fm_trie raw;            /* patterns with normalized = false, matched on the input */
    fm_trie norm;           /* patterns with normalized = true, matched after normalization (their
                               content normalized too) */
    fm_strmap special;      /* contents of the special tokens (decode's skip_special test) */
    int32_t max_id;         /* highest added id, -1 if none */
} fm_added;

/* One segment of a split: either an added token or a span of text. */
typedef struct fm_seg {
    size_t start, end;
    int32_t id; /* -1 = text */
} fm_seg;
typedef struct fm_segvec {
    fm_seg *v;
    size_t n, cap;
} fm_segvec;

/* Parse "added_tokens" (arr may be NULL) and build the match sets. */
fm_status fm_added_build(fm_added *a, const struct cJSON *arr, const fm_bpe *bpe, const fm_normalizer *nz,
                         fm_re_scratch *rs);
void fm_added_free(fm_added *a);
/* Split s on the trie's tokens (HF find_matches): appends segments covering s (empty text
   segments are left out). */
fm_status fm_added_split(const fm_added *a, const fm_trie *t, const char *s, size_t n, fm_segvec *out);
fm_status fm_trie_add(fm_trie *t, const char *s, size_t n, int32_t token_index);
void fm_trie_free(fm_trie *t);

/* ---- post-processing (tok_post.c) ----------------------------------------------------------- */

typedef enum fm_post_kind {
    FM_POST_SEQUENCE,
    FM_POST_TEMPLATE,
    FM_POST_BYTELEVEL,
    FM_POST_ROBERTA,
    FM_POST_BERT
} fm_post_kind;

typedef struct fm_post {
    fm_post_kind kind;
    struct fm_post **children;
    size_t n_children;
    int32_t cls_id, sep_id;   /* Roberta / Bert */
    int32_t *tmpl;            /* Template single: id >= 0 = special id, -1 = the sequence */
    size_t n_tmpl;
    size_t added_single;      /* number of ids the processor adds to a single sequence */
} fm_post;

fm_status fm_post_parse(const struct cJSON *j, const char *where, fm_post **out);
void fm_post_free(fm_post *p);
size_t fm_post_added(const fm_post *p);
/* The largest id the post-processor can insert (-1 when none), so the loader can bound it. */
int32_t fm_post_max_id(const fm_post *p);
/* Apply to *ids (single sequence). */
fm_status fm_post_apply(const fm_post *p, int add_special, fm_i32vec *ids);

typedef struct fm_truncation {
    int enabled;
    size_t max_length;
    int left;          /* direction Left: keep the end */
    int only_second;   /* strategy OnlySecond: error when truncation is needed */
} fm_truncation;

typedef struct fm_padding {
    int enabled;
    size_t fixed;      /* 0 = BatchLongest */
    size_t multiple;   /* pad_to_multiple_of, 0 = none */
    int left;
    int32_t pad_id;
} fm_padding;

fm_status fm_truncation_parse(const struct cJSON *j, fm_truncation *t);
fm_status fm_padding_parse(const struct cJSON *j, fm_padding *p);

/* ---- decoders (tok_decode.c) ----------------------------------------------------------------- */

typedef enum fm_dec_kind {
    FM_DEC_SEQUENCE,
    FM_DEC_BYTELEVEL,
    FM_DEC_METASPACE,
    FM_DEC_BYTE_FALLBACK,
    FM_DEC_FUSE,
    FM_DEC_STRIP,
    FM_DEC_REPLACE,
    FM_DEC_BPE
} fm_dec_kind;

typedef struct fm_decoder {
    fm_dec_kind kind;
    struct fm_decoder **children;
    size_t n_children;
    uint32_t ch;         /* Metaspace replacement, Strip content */
    int prepend_scheme;  /* Metaspace */
    size_t start, stop;  /* Strip */
    fm_regex *re;        /* Replace */
    char *str;           /* Replace content, BPEDecoder suffix */
    size_t str_len;
} fm_decoder;

fm_status fm_decoder_parse(const struct cJSON *j, const char *where, fm_decoder **out);
void fm_decoder_free(fm_decoder *d);

/* ---- the tokenizer ------------------------------------------------------------------------------ */

struct fm_tokenizer {
    fm_bpe bpe;
    fm_added added;
    fm_normalizer *normalizer; /* NULL = none */
    fm_pretok *pretok;         /* NULL = none */
    fm_post *post;             /* NULL = none */
    fm_decoder *decoder;       /* NULL = join tokens with " " */
    fm_truncation trunc;
    fm_padding pad;

    int32_t n_vocab;           /* highest id + 1 */
    const char **id_str;       /* id -> token string (added tokens override the model) */
    uint32_t *id_len;
    unsigned char *special;    /* id -> 1 if its string is a special added token */

    int32_t bos_id, eos_id;
    char *bos_token, *eos_token; /* strings from tokenizer_config.json, NULL if none */
    char *chat_src;              /* chat template source, NULL if none */
    struct fm_chat_template *chat;
    fm_status chat_status;       /* compile result when chat is NULL but chat_src is set */
    char *chat_error;
};

/* Per-call scratch for encode. */
typedef struct fm_enc_scratch {
    fm_pt_scratch pt;
    fm_bpe_scratch bpe;
    fm_buf norm;
    fm_segvec seg1, seg2;
} fm_enc_scratch;

fm_status fm_tokenizer_load_json(fm_tokenizer *tok, const char *json, size_t len, const char *path);
fm_status fm_tokenizer_load_config(fm_tokenizer *tok, const char *config_path, const char *stm_path);
fm_status fm_tokenizer_encode_ids(const fm_tokenizer *tok, const char *text, size_t len, int add_special,
                                  fm_i32vec *out);
/* Decode to *out (appends). Ids must be in [0, n_vocab). */
fm_status fm_tokenizer_decode_buf(const fm_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                                  fm_buf *out);
void fm_tokenizer_free_parts(fm_tokenizer *tok);
int32_t fm_tokenizer_token_to_id(const fm_tokenizer *tok, const char *s, size_t n);

#endif
