/* quant.h - the Q8_0 / Q4_0 block formats and their scalar reference (de)quantizers.
 *
 * Part of the backend contract (backend.h includes it): every backend stores quantized rows in these
 * exact layouts, which are llama.cpp's, so numbers compare one to one. A row of `cols` elements
 * (cols a multiple of 32) is cols/32 consecutive blocks.
 *   Q8_0: fp16 scale d, then 32 int8 q;            x[i] = d * q[i]
 *   Q4_0: fp16 scale d, then 16 bytes of nibbles;  x[i] = d * ((nibble i) - 8), where byte j holds
 *         element j in its low nibble and element j + 16 in its high nibble.
 * The scales use the element of largest magnitude: Q8_0 d = amax / 127; Q4_0 d = max / -8 where max is
 * that element with its sign, so it maps exactly to -8 (the format's extra negative level).
 */
#ifndef FM_QUANT_H
#define FM_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "half.h"

#define FM_QBLOCK 32

typedef struct fm_block_q8_0 {
    uint16_t d; /* fp16 */
    int8_t q[FM_QBLOCK];
} fm_block_q8_0;

typedef struct fm_block_q4_0 {
    uint16_t d; /* fp16 */
    uint8_t qs[FM_QBLOCK / 2];
} fm_block_q4_0;

_Static_assert(sizeof(fm_block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(fm_block_q4_0) == 18, "Q4_0 block is 18 bytes");

static inline void fm_quantize_row_q8_0(const float *x, fm_block_q8_0 *out, size_t cols) {
    for (size_t b = 0; b < cols / FM_QBLOCK; b++) {
        const float *v = x + b * FM_QBLOCK;
        float amax = 0.0f;
        for (int i = 0; i < FM_QBLOCK; i++) amax = fmaxf(amax, fabsf(v[i]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        out[b].d = fm_f32_to_f16(d);
        for (int i = 0; i < FM_QBLOCK; i++) out[b].q[i] = (int8_t)roundf(v[i] * id);
    }
}

static inline void fm_quantize_row_q4_0(const float *x, fm_block_q4_0 *out, size_t cols) {
    for (size_t b = 0; b < cols / FM_QBLOCK; b++) {
        const float *v = x + b * FM_QBLOCK;
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < FM_QBLOCK; i++)
            if (fabsf(v[i]) > amax) {
                amax = fabsf(v[i]);
                max = v[i];
            }
        const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        out[b].d = fm_f32_to_f16(d);
        for (int j = 0; j < FM_QBLOCK / 2; j++) {
            int lo = (int)(v[j] * id + 8.5f), hi = (int)(v[j + FM_QBLOCK / 2] * id + 8.5f);
            lo = lo > 15 ? 15 : lo;
            hi = hi > 15 ? 15 : hi;
            out[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static inline void fm_dequantize_row_q8_0(const fm_block_q8_0 *in, float *y, size_t cols) {
    for (size_t b = 0; b < cols / FM_QBLOCK; b++) {
        const float d = fm_f16_to_f32(in[b].d);
        for (int i = 0; i < FM_QBLOCK; i++) y[b * FM_QBLOCK + i] = d * (float)in[b].q[i];
    }
}

static inline void fm_dequantize_row_q4_0(const fm_block_q4_0 *in, float *y, size_t cols) {
    for (size_t b = 0; b < cols / FM_QBLOCK; b++) {
        const float d = fm_f16_to_f32(in[b].d);
        for (int j = 0; j < FM_QBLOCK / 2; j++) {
            y[b * FM_QBLOCK + j] = d * (float)((in[b].qs[j] & 0x0f) - 8);
            y[b * FM_QBLOCK + j + FM_QBLOCK / 2] = d * (float)((in[b].qs[j] >> 4) - 8);
        }
    }
}

#endif /* FM_QUANT_H */
