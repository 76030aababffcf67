/* rng.h - xoshiro256** seeded through splitmix64: the same seed gives the same stream on every
   machine, so a seeded generation is reproducible everywhere. */
#ifndef FM_RNG_H
#define FM_RNG_H

#include <stdint.h>

typedef struct fm_rng {
    uint64_t s[4];
} fm_rng;

static inline uint64_t fm_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void fm_rng_seed(fm_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = fm_splitmix64(&seed);
}

static inline uint64_t fm_rng_next(fm_rng *r) {
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t out = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return out;
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double fm_rng_uniform(fm_rng *r) { return (double)(fm_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

#endif
