/* fuzz_tokenizer_config.c - tokenizer_config.json (chat_template as a string or a named list,
   bos_token / eos_token as strings or AddedToken objects) through fm_tokenizer_load_config, after the
   tiny test tokenizer.json; a template that compiles is then rendered through
   fm_tokenizer_chat_format. */
#include <string.h>

#include "falconmamba.h"
#include "fuzz_common.h"
#include "test_util.h"
#include "tokenizer.h"

#ifndef FM_SOURCE_DIR
#error FM_SOURCE_DIR must name the source tree
#endif

static char *g_json;
static size_t g_json_len;
static char g_cfg[1024];

static void free_json(void) { free(g_json); }

static void setup(void) {
    g_json = fm_test_read_file(FM_SOURCE_DIR "/tests/data/tiny_tokenizer/tokenizer.json", &g_json_len);
    FUZZ_CHECK(g_json != NULL);
    atexit(free_json);
    snprintf(g_cfg, sizeof g_cfg, "%s/tokenizer_config.json", fuzz_tmpdir());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FUZZ_ONCE(setup);
    fuzz_write(g_cfg, data, size);
    fm_tokenizer *tok = calloc(1, sizeof *tok);
    FUZZ_CHECK(tok != NULL);
    tok->bos_id = tok->eos_id = -1;
    FUZZ_CHECK(fm_tokenizer_load_json(tok, g_json, g_json_len, "tokenizer.json") == FM_OK);
    if (fm_tokenizer_load_config(tok, g_cfg, NULL) == FM_OK) {
        FUZZ_CHECK(tok->bos_id >= -1 && tok->bos_id < tok->n_vocab);
        FUZZ_CHECK(tok->eos_id >= -1 && tok->eos_id < tok->n_vocab);
        fm_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hello"}, {"assistant", "Hi"}, {"user", "Bye"}};
        char buf[256];
        size_t len = 0;
        (void)fm_tokenizer_chat_format(tok, msgs, 4, 1, buf, sizeof buf, &len);
    }
    fm_tokenizer_free_parts(tok);
    free(tok);
    return 0;
}
