/* hash.h - FNV-1a 64, used for the model fingerprint and the state blob checksum. */
#ifndef FM_HASH_H
#define FM_HASH_H

#include <stddef.h>
#include <stdint.h>

#define FM_FNV_OFFSET 0xcbf29ce484222325ull

static inline uint64_t fm_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#endif
