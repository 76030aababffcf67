/* fuzz_config.c - config.json text through fm_config_parse. On success the dimensions must be the
   validated, positive, bounded values the rest of the loader relies on. */
#include "config.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fm_config c;
    if (fm_config_parse((const char *)data, size, "config.json", &c) != FM_OK) return 0;
    FUZZ_CHECK(c.d_model > 0 && c.d_inner > 0 && c.d_state > 0 && c.d_conv > 0 && c.dt_rank > 0);
    FUZZ_CHECK(c.n_layer > 0 && c.n_vocab > 0);
    FUZZ_CHECK(c.norm_eps > 0.0f && c.norm_eps <= 1.0f);
    FUZZ_CHECK(c.bos_id >= -1 && c.bos_id < c.n_vocab);
    FUZZ_CHECK(c.eos_id >= -1 && c.eos_id < c.n_vocab);
    return 0;
}
