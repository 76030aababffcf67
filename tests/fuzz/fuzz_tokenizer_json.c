/* fuzz_tokenizer_json.c - tokenizer.json text through the loader (fm_tokenizer_load_json). A loaded
   tokenizer then encodes and decodes a fixed text and decodes every id, through the public API, so
   that whatever the loader accepted is also exercised. */
#include <string.h>

#include "fuzz_common.h"
#include "tokenizer.h"

static const char k_text[] = "Hello, world! It's 2024: caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87  tabs\tand\nnewlines <s> </s> 12345";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fm_tokenizer *tok = calloc(1, sizeof *tok);
    FUZZ_CHECK(tok != NULL);
    tok->bos_id = tok->eos_id = -1;
    if (fm_tokenizer_load_json(tok, (const char *)data, size, "tokenizer.json") == FM_OK) {
        int32_t ids[512];
        size_t n = 0;
        fm_status st = fm_tokenizer_encode(tok, k_text, sizeof k_text - 1, 1, ids, 512, &n);
        char buf[4096];
        size_t len;
        if (st == FM_OK) {
            for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < fm_tokenizer_n_vocab(tok));
            (void)fm_tokenizer_decode(tok, ids, n, 0, buf, sizeof buf, &len);
            (void)fm_tokenizer_decode(tok, ids, n, 1, buf, sizeof buf, &len);
        }
        int32_t nv = fm_tokenizer_n_vocab(tok);
        for (int32_t id = 0; id < nv && id < 4096; id++) (void)fm_tokenizer_decode(tok, &id, 1, 0, buf, sizeof buf, &len);
    }
    fm_tokenizer_free_parts(tok);
    free(tok);
    return 0;
}
