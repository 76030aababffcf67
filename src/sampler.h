/* sampler.h - logits processors with transformers' semantics, and the seeded draw. */
#ifndef FM_SAMPLER_H
#define FM_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "falconmamba.h"
#include "rng.h"

/* Validate sampler params (ranges, logit-bias ids). */
fm_status fm_sampler_check(const fm_sampler_params *sp, int32_t n_vocab);

/* Apply, in transformers' order, logit bias, repetition penalty (HF: positive scores divided,
   negative multiplied), presence/frequency penalties (over the last repeat_last_n tokens of
   history), then — when sampling (temperature > 0) — temperature, top-k, top-p, min-p and typical-p.
   scores: n_vocab floats, processed in place; removed tokens become -INFINITY. work: at least
   fm_sampler_work_bytes(n_vocab) bytes, 8-byte aligned. */
fm_status fm_sampler_process(const fm_sampler_params *sp, float *scores, int32_t n_vocab, const int32_t *history,
                             size_t n_history, void *work);

/* Scratch bytes fm_sampler_process needs. */
size_t fm_sampler_work_bytes(int32_t n_vocab);

/* Pick a token from processed scores: argmax when temperature == 0, else a draw from their softmax. */
int32_t fm_sampler_pick(const fm_sampler_params *sp, const float *scores, int32_t n_vocab, fm_rng *rng);

#endif
