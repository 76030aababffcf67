/* state_blob.h - the serialised form of a session's state (fm_session_state_save / _load).
 *
 * Layout, all little-endian:
 *   0  char[8] magic "FMSTATE\0"     8  u32 format version (1)   12 u32 header bytes (72)
 *   16 u64 model fingerprint         24 u32 n_layer  28 u32 d_inner  32 u32 d_conv  36 u32 d_state
 *   40 u32 n_vocab                   44 u32 flags (bit 0: logits follow the state; bit 1: RNG seeded)
 *   48 u64 tokens consumed           56 u64 payload bytes        64 u64 FNV-1a 64 of the payload
 *   72 u32 history tokens            76 u32 reserved (0)         80 u64 sampler seed
 *   88 u64[4] sampler RNG state
 *   120 payload: state floats (the slot as laid out by model.c), n_vocab logits if flagged, then the
 *       history token ids (int32, at most FM_HISTORY_MAX)
 */
#ifndef FM_STATE_BLOB_H
#define FM_STATE_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "falconmamba.h"
#include "model.h"

#define FM_STATE_HEADER_BYTES 120
#define FM_STATE_FORMAT_VERSION 1

typedef struct fm_state_header {
    uint64_t fingerprint;
    uint32_t n_layer, d_inner, d_conv, d_state, n_vocab, flags;
    uint64_t n_tokens;
    uint64_t payload_bytes;
    uint64_t checksum;
    uint32_t n_history;
    uint64_t rng_seed;
    uint64_t rng[4];
} fm_state_header;

#define FM_STATE_HAS_LOGITS 1u
#define FM_STATE_RNG_SEEDED 2u

/* Payload bytes for a session with these contents. */
uint64_t fm_state_payload_bytes(const fm_model *m, int has_logits, uint32_t n_history);

void fm_state_header_write(const fm_state_header *h, uint8_t *out);

/* Check a blob against the model: magic, version, header size, fingerprint, dimensions, payload
   size and checksum. On success *h is the parsed header. */
fm_status fm_state_header_check(const fm_model *m, const uint8_t *blob, size_t n, fm_state_header *h);

#endif
