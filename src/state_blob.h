/* state_blob.h - the serialised form of a session's state (fm_session_state_save / _load).
 *
 * Layout, all little-endian:
 *   0  char[8] magic "FMSTATE\0"     8  u32 format version (1)   12 u32 header bytes (72)
 *   16 u64 model fingerprint         24 u32 n_layer  28 u32 d_inner  32 u32 d_conv  36 u32 d_state
 *   40 u32 n_vocab                   44 u32 flags (bit 0: logits follow the state)
 *   48 u64 tokens consumed           56 u64 payload bytes        64 u64 FNV-1a 64 of the payload
 *   72 payload: state floats (the slot as laid out by model.c), then n_vocab logits if flagged
 */
#ifndef FM_STATE_BLOB_H
#define FM_STATE_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "falconmamba.h"
#include "model.h"

#define FM_STATE_HEADER_BYTES 72
#define FM_STATE_FORMAT_VERSION 1

typedef struct fm_state_header {
    uint64_t fingerprint;
    uint32_t n_layer, d_inner, d_conv, d_state, n_vocab, flags;
    uint64_t n_tokens;
    uint64_t payload_bytes;
    uint64_t checksum;
} fm_state_header;

void fm_state_header_write(const fm_state_header *h, uint8_t *out);

/* Check a blob against the model: magic, version, header size, fingerprint, dimensions, payload
   size and checksum. On success *h is the parsed header. */
fm_status fm_state_header_check(const fm_model *m, const uint8_t *blob, size_t n, fm_state_header *h);

#endif
