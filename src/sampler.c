/* sampler.c - logits processors with the semantics of transformers' LogitsProcessor classes
 * (SequenceBias, RepetitionPenalty, Temperature, TopK, TopP, MinP, Typical), OpenAI-style presence
 * and frequency penalties, and the seeded draw.
 */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef struct scored {
    float score;
    int32_t id;
} scored;

/* Scratch layout: [scored x V][double x V][int32 x V]. */
size_t fm_sampler_work_bytes(int32_t n_vocab) {
    return (size_t)n_vocab * (sizeof(scored) + sizeof(double) + sizeof(int32_t));
}

fm_status fm_sampler_check(const fm_sampler_params *sp, int32_t n_vocab) {
    if (!(sp->temperature >= 0.0f) || isinf(sp->temperature))
        return fm_error(FM_ERR_INVALID_ARGUMENT, "sampler: temperature %g must be a finite number >= 0", sp->temperature);
    if (sp->top_k < 0) return fm_error(FM_ERR_INVALID_ARGUMENT, "sampler: top_k %d must be >= 0", sp->top_k);
    if (!(sp->top_p > 0.0f && sp->top_p <= 1.0f))
        return fm_error(FM_ERR_INVALID_ARGUMENT, "sampler: top_p %g must be in (0, 1]", sp->top_p);
    if (!(sp->min_p >= 0.0f && sp->min_p <= 1.0f))
        return fm_error(FM_ERR_INVALID_ARGUMENT, "sampler: min_p %g must be in [0, 1]", sp->min_p);
    if (!(sp->typical_p > 0.0f && sp->typical_p <= 1.0f))
        return fm_error(FM_ERR_INVALID_ARGUMENT, "sampler: typical_p %g must be in (0, 1]", sp->typical_p);
    if (!(sp->repeat_penalty > 0.0f) || isinf(sp->repeat_penalty))
        return fm_error(FM_ERR_INVALID_ARGUMENT, "sampler: repeat_penalty %g must be > 0", sp->repeat_penalty);
    if (sp->repeat_last_n < -1)
        return fm_error(FM_ERR_INVALID_ARGUMENT, "sampler: repeat_last_n %d must be >= -1", sp->repeat_last_n);
    if (!isfinite(sp->presence_penalty) || !isfinite(sp->frequency_penalty))
        return fm_error(FM_ERR_INVALID_ARGUMENT, "sampler: presence/frequency penalties must be finite");
    if (sp->n_logit_bias && !sp->logit_bias)
        return fm_error(FM_ERR_INVALID_ARGUMENT, "sampler: n_logit_bias is %zu but logit_bias is NULL", sp->n_logit_bias);
    for (size_t i = 0; i < sp->n_logit_bias; i++) {
        const fm_logit_bias *b = &sp->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return fm_error(FM_ERR_INVALID_TOKEN, "sampler: logit_bias[%zu] names token %d, outside [0, %d)", i, b->token,
                            n_vocab);
        if (isnan(b->bias) || b->bias == INFINITY)
            return fm_error(FM_ERR_INVALID_ARGUMENT, "sampler: logit_bias[%zu] must be a number or -INFINITY", i);
    }
    return FM_OK;
}

static int by_score_asc(const void *a, const void *b) {
    float x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    if (x != y) return x < y ? -1 : 1;
    int32_t i = ((const scored *)a)->id, j = ((const scored *)b)->id;
    return (i > j) - (i < j); /* ties: larger id first in descending order, a fixed rule */
}

/* Softmax over all scores in double (removed tokens are -inf and get 0). Returns the max. */
static double softmax_into(const float *scores, int32_t V, double *p) {
    double m = -INFINITY;
    for (int32_t i = 0; i < V; i++)
        if (scores[i] > m) m = scores[i];
    double sum = 0.0;
    for (int32_t i = 0; i < V; i++) sum += (p[i] = scores[i] == -INFINITY ? 0.0 : exp((double)scores[i] - m));
    for (int32_t i = 0; i < V; i++) p[i] /= sum;
    return m;
}

/* The finite scores sorted ascending into w; returns how many. */
static int32_t sort_finite(const float *scores, int32_t V, scored *w) {
    int32_t n = 0;
    for (int32_t i = 0; i < V; i++)
        if (scores[i] != -INFINITY) w[n++] = (scored){scores[i], i};
    qsort(w, (size_t)n, sizeof *w, by_score_asc);
    return n;
}

static void top_k(float *scores, int32_t V, int32_t k, scored *w) {
    int32_t n = sort_finite(scores, V, w);
    if (k >= n) return;
    float kth = w[n - k].score; /* HF removes scores < the k-th largest: ties with it stay */
    for (int32_t i = 0; i < V; i++)
        if (scores[i] < kth) scores[i] = -INFINITY;
}

static void top_p(float *scores, int32_t V, float p, scored *w) {
    int32_t n = sort_finite(scores, V, w);
    double m = w[n - 1].score, sum = 0.0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)w[i].score - m);
    /* Ascending cumulative mass; drop while it stays <= 1 - top_p, always keep the best token. */
    double cum = 0.0;
    for (int32_t i = 0; i < n - 1; i++) {
        cum += exp((double)w[i].score - m) / sum;
        if (cum <= 1.0 - (double)p) scores[w[i].id] = -INFINITY;
        else break;
    }
}

static void min_p(float *scores, int32_t V, float mp, double *prob) {
    softmax_into(scores, V, prob);
    double top = 0.0;
    for (int32_t i = 0; i < V; i++)
        if (prob[i] > top) top = prob[i];
    double cut = (double)mp * top;
    for (int32_t i = 0; i < V; i++)
        if (prob[i] < cut) scores[i] = -INFINITY;
}

/* Locally typical sampling (Meister et al.), as TypicalLogitsWarper: rank tokens by |-log p - H|,
   keep the smallest prefix of that ranking whose mass reaches typical_p. */
static void typical(float *scores, int32_t V, float mass, scored *w, double *prob) {
    softmax_into(scores, V, prob);
    double ent = 0.0;
    for (int32_t i = 0; i < V; i++)
        if (prob[i] > 0) ent -= prob[i] * log(prob[i]);
    int32_t n = 0;
    for (int32_t i = 0; i < V; i++)
        if (prob[i] > 0) w[n++] = (scored){(float)fabs(-log(prob[i]) - ent), i};
    qsort(w, (size_t)n, sizeof *w, by_score_asc);
    double cum = 0.0;
    int32_t last = 0;
    for (int32_t i = 0; i < n; i++) {
        cum += prob[w[i].id];
        if (cum < (double)mass) last = i + 1;
        else break;
    }
    if (last > n - 1) last = n - 1;
    float limit = w[last].score;
    for (int32_t i = 0; i < n; i++)
        if (w[i].score > limit) scores[w[i].id] = -INFINITY;
}

fm_status fm_sampler_process(const fm_sampler_params *sp, float *scores, int32_t V, const int32_t *history,
                             size_t n_history, void *work) {
    scored *w = work;
    double *prob = (double *)(void *)(w + V);
    int32_t *count = (int32_t *)(void *)(prob + V);
    for (size_t i = 0; i < sp->n_logit_bias; i++) scores[sp->logit_bias[i].token] += sp->logit_bias[i].bias;

    size_t window = sp->repeat_last_n < 0 ? n_history : (size_t)sp->repeat_last_n;
    if (window > n_history) window = n_history;
    int penalise = sp->repeat_penalty != 1.0f || sp->presence_penalty != 0.0f || sp->frequency_penalty != 0.0f;
    if (penalise && window) {
        const int32_t *h = history + (n_history - window);
        for (size_t i = 0; i < window; i++) count[h[i]] = 0;
        for (size_t i = 0; i < window; i++) count[h[i]]++;
        for (size_t i = 0; i < window; i++) {
            int32_t t = h[i];
            if (count[t] == 0) continue; /* already done: each distinct token once */
            float v = scores[t];
            if (sp->repeat_penalty != 1.0f) v = v < 0 ? v * sp->repeat_penalty : v / sp->repeat_penalty;
            v -= sp->presence_penalty + sp->frequency_penalty * (float)count[t];
            scores[t] = v;
            count[t] = 0;
        }
    }
    if (sp->temperature == 0.0f) return FM_OK; /* greedy: warpers do not apply */

    if (sp->temperature != 1.0f)
        for (int32_t i = 0; i < V; i++) scores[i] /= sp->temperature;
    if (sp->top_k > 0 && sp->top_k < V) top_k(scores, V, sp->top_k, w);
    if (sp->top_p < 1.0f) top_p(scores, V, sp->top_p, w);
    if (sp->min_p > 0.0f) min_p(scores, V, sp->min_p, prob);
    if (sp->typical_p < 1.0f) typical(scores, V, sp->typical_p, w, prob);
    return FM_OK;
}

int32_t fm_sampler_pick(const fm_sampler_params *sp, const float *scores, int32_t V, fm_rng *rng) {
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++)
        if (scores[i] > scores[best]) best = i;
    if (sp->temperature == 0.0f || scores[best] == -INFINITY) return best;
    double m = scores[best], total = 0.0;
    for (int32_t i = 0; i < V; i++)
        if (scores[i] != -INFINITY) total += exp((double)scores[i] - m);
    double u = fm_rng_uniform(rng) * total, cum = 0.0;
    int32_t last = best;
    for (int32_t i = 0; i < V; i++) {
        if (scores[i] == -INFINITY) continue;
        cum += exp((double)scores[i] - m);
        last = i;
        if (u < cum) return i;
    }
    return last;
}
