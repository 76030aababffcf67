/* checkpoint.h - a HuggingFace checkpoint directory: config.json + one or more safetensors files. */
#ifndef FM_CHECKPOINT_H
#define FM_CHECKPOINT_H

#include "config.h"
#include "safetensors.h"

typedef struct fm_ckpt_entry {
    char *name;
    size_t shard;
} fm_ckpt_entry;

typedef struct fm_checkpoint {
    fm_config cfg;
    fm_st_file **shards;
    size_t n_shards;
    fm_ckpt_entry *index; /* sorted by name; NULL for a single-file checkpoint */
    size_t n_index;
    char *listing; /* the file that lists the tensors (model.safetensors or the index), for messages */
} fm_checkpoint;

/* Open dir/config.json and dir/model.safetensors, or dir/model.safetensors.index.json and every
   shard it names. Files stay mapped until fm_checkpoint_close. */
fm_status fm_checkpoint_open(const char *dir, fm_checkpoint **out);

/* The tensor called name, or NULL; *file_out (if not NULL) gets the path of the file holding it. */
const fm_st_tensor *fm_checkpoint_find(const fm_checkpoint *c, const char *name, const char **file_out);

void fm_checkpoint_close(fm_checkpoint *c);

#endif
