/* fuzz_tokenizer_encode.c - arbitrary bytes through fm_tokenizer_encode on fixed tokenizers (the
   bundled kjv-mamba byte-level BPE and the tiny test tokenizer with added/special tokens). The first
   byte picks the tokenizer and add_special; the rest is the text. Checks: invalid UTF-8 is refused
   with FM_ERR_INVALID_ARGUMENT, ids are in range, the size query agrees with the real call, and
   streaming detokenization reproduces fm_tokenizer_decode. */
#include <string.h>

#include "falconmamba.h"
#include "fuzz_common.h"

#ifndef FM_SOURCE_DIR
#error FM_SOURCE_DIR must name the source tree
#endif

static fm_tokenizer *g_tok[2];

static void setup(void) {
    FUZZ_CHECK(fm_tokenizer_open(FM_SOURCE_DIR "/models/kjv-mamba/tokenizer.json", &g_tok[0]) == FM_OK);
    FUZZ_CHECK(fm_tokenizer_open(FM_SOURCE_DIR "/tests/data/tiny_tokenizer", &g_tok[1]) == FM_OK);
}

static void teardown(void) {
    fm_tokenizer_close(g_tok[0]);
    fm_tokenizer_close(g_tok[1]);
}

static void setup_all(void) {
    setup();
    atexit(teardown);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FUZZ_ONCE(setup_all);
    if (size < 1) return 0;
    const fm_tokenizer *tok = g_tok[data[0] & 1];
    int add_special = (data[0] >> 1) & 1;
    int skip_special = (data[0] >> 2) & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    size_t need = 0;
    fm_status st = fm_tokenizer_encode(tok, text, len, add_special, NULL, 0, &need);
    if (st == FM_ERR_INVALID_ARGUMENT) return 0; /* not UTF-8 */
    FUZZ_CHECK(st == FM_OK || st == FM_ERR_BUFFER_TOO_SMALL);
    int32_t *ids = malloc((need ? need : 1) * sizeof *ids);
    FUZZ_CHECK(ids != NULL);
    size_t n = 0;
    FUZZ_CHECK(fm_tokenizer_encode(tok, text, len, add_special, ids, need, &n) == FM_OK);
    FUZZ_CHECK(n == need);
    int32_t nv = fm_tokenizer_n_vocab(tok);
    for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < nv);

    size_t dlen = 0;
    st = fm_tokenizer_decode(tok, ids, n, skip_special, NULL, 0, &dlen);
    FUZZ_CHECK(st == FM_OK || st == FM_ERR_BUFFER_TOO_SMALL);
    char *full = malloc(dlen + 1);
    FUZZ_CHECK(full != NULL);
    FUZZ_CHECK(fm_tokenizer_decode(tok, ids, n, skip_special, full, dlen + 1, &dlen) == FM_OK);

    /* Streaming: the pieces concatenated equal the one-shot decode. */
    fm_detokenizer *d = NULL;
    FUZZ_CHECK(fm_detokenizer_open(tok, skip_special, &d) == FM_OK);
    char *stream = malloc(dlen + 64);
    size_t at = 0, cap = dlen + 64;
    FUZZ_CHECK(stream != NULL);
    for (size_t i = 0; i <= n; i++) {
        size_t plen = 0;
        st = i < n ? fm_detokenizer_push(d, ids[i], stream + at, cap - at, &plen)
                   : fm_detokenizer_flush(d, stream + at, cap - at, &plen);
        if (st == FM_ERR_BUFFER_TOO_SMALL) { /* nothing consumed: grow and retry */
            cap = at + plen + 64;
            stream = realloc(stream, cap);
            FUZZ_CHECK(stream != NULL);
            st = i < n ? fm_detokenizer_push(d, ids[i], stream + at, cap - at, &plen)
                       : fm_detokenizer_flush(d, stream + at, cap - at, &plen);
        }
        FUZZ_CHECK(st == FM_OK);
        at += plen;
    }
    if (at != dlen || memcmp(stream, full, dlen) != 0) {
        fprintf(stderr, "stream decode '%.*s' != decode '%.*s'\n", (int)at, stream, (int)dlen, full);
        abort();
    }
    fm_detokenizer_close(d);
    free(stream);
    free(full);
    free(ids);
    return 0;
}
