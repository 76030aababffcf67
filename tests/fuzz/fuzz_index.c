/* fuzz_index.c - model.safetensors.index.json through fm_checkpoint_open. A tiny two-shard checkpoint
   (tests/support/tiny_model) is written once into a private temp directory; each input replaces its
   index file. On success every tensor the index lists must be found in the shard it names. */
#include <string.h>

#include "checkpoint.h"
#include "fuzz_common.h"
#include "tiny_model.h"

static char g_index[1024];
static char *g_dir;

static void setup(void) {
    fm_tm_options o;
    fm_tm_options_init(&o);
    o.n_layer = 1;
    o.n_shards = 2;
    fm_tm_model *m = fm_tm_create(&o);
    FUZZ_CHECK(m != NULL);
    g_dir = fuzz_tmpdir();
    FUZZ_CHECK(fm_tm_write(m, g_dir) == 0);
    fm_tm_free(m);
    snprintf(g_index, sizeof g_index, "%s/model.safetensors.index.json", g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FUZZ_ONCE(setup);
    fuzz_write(g_index, data, size);
    fm_checkpoint *c = NULL;
    if (fm_checkpoint_open(g_dir, &c) != FM_OK) return 0;
    for (size_t i = 0; i < c->n_index; i++) {
        const char *file = NULL;
        const fm_st_tensor *t = fm_checkpoint_find(c, c->index[i].name, &file);
        FUZZ_CHECK(t != NULL && file != NULL);
        FUZZ_CHECK(c->index[i].shard < c->n_shards);
    }
    fm_checkpoint_close(c);
    return 0;
}
