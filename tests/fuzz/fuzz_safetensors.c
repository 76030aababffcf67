/* fuzz_safetensors.c - one .safetensors image (8-byte length, JSON header, data) through the strict
   parser fm_st_parse. On success every tensor must lie inside the buffer, be sized by its dtype and
   shape, and be findable by name. */
#include <string.h>

#include "fuzz_common.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fm_st_file *f = NULL;
    if (fm_st_parse(data, size, "fuzz.safetensors", &f) != FM_OK) return 0;
    unsigned sum = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const fm_st_tensor *t = &f->tensors[i];
        FUZZ_CHECK(t->name != NULL);
        FUZZ_CHECK(t->n_dims >= 0 && t->n_dims <= FM_ST_MAX_DIMS);
        FUZZ_CHECK(t->data >= data && t->data <= data + size);
        FUZZ_CHECK(t->n_bytes <= (uint64_t)(data + size - t->data));
        if (t->n_bytes) sum += t->data[0] + t->data[t->n_bytes - 1]; /* touch both ends */
        FUZZ_CHECK(fm_st_find(f, t->name) != NULL);
        FUZZ_CHECK(fm_st_dtype_name(t->dtype) != NULL);
    }
    (void)fm_st_find(f, "backbone.embeddings.weight");
    fm_st_close(f);
    return (int)(sum & 0); /* always 0; sum keeps the reads */
}
