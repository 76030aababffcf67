/* test_abi_layout.c - the public structs' layout and the enum values of libfalconmamba 1.0.0 (as
   lib/abi/libfalconmamba.so.1.abi records them), compiled against today's header. Within ABI major
   1 every member keeps its offset and size, a struct_size struct only grows at the end, the two
   plain structs (fm_logit_bias, fm_chat_message) never change, and enum values never change.
   abidiff (.ci/run) checks the same for the library binary, but its suppression for "members
   appended at the end" of the struct_size structs would also hide a retyped member inside them;
   this test closes that gap. Table generated on x86-64 (LP64) from the 1.0.0 header; other ABIs
   only check the size relations. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "falconmamba.h"

typedef struct member { const char *name; size_t off, size, want_off, want_size; } member;
typedef struct total { const char *name; size_t size, want; int growable; } total;
typedef struct value { const char *name; long v, want; } value;

#define L(S, F, O, Z) {#S "." #F, offsetof(S, F), sizeof(((S *)0)->F), O, Z}
#define Z(S, W) {#S, sizeof(S), W, strcmp(#S, "fm_logit_bias") && strcmp(#S, "fm_chat_message")}
#define E(X, W) {#X, (long)(X), W}

static const member k_members[] = {
    L(fm_context_params, struct_size, 0, 8),
    L(fm_context_params, backend, 8, 4),
    L(fm_context_params, device, 12, 4),
    L(fm_context_params, n_threads, 16, 4),
    L(fm_context_params, weight_type, 20, 4),
    L(fm_context_params, progress, 24, 8),
    L(fm_context_params, progress_user, 32, 8),
    L(fm_model_info, struct_size, 0, 8),
    L(fm_model_info, model_type, 8, 8),
    L(fm_model_info, n_layer, 16, 4),
    L(fm_model_info, d_model, 20, 4),
    L(fm_model_info, d_inner, 24, 4),
    L(fm_model_info, d_state, 28, 4),
    L(fm_model_info, d_conv, 32, 4),
    L(fm_model_info, dt_rank, 36, 4),
    L(fm_model_info, n_vocab, 40, 4),
    L(fm_model_info, tied_embeddings, 44, 4),
    L(fm_model_info, n_params, 48, 8),
    L(fm_model_info, weight_bytes, 56, 8),
    L(fm_model_info, state_bytes, 64, 8),
    L(fm_model_info, backend_name, 72, 8),
    L(fm_session_params, struct_size, 0, 8),
    L(fm_session_params, prefill_chunk, 8, 4),
    L(fm_logit_bias, token, 0, 4),
    L(fm_logit_bias, bias, 4, 4),
    L(fm_sampler_params, struct_size, 0, 8),
    L(fm_sampler_params, temperature, 8, 4),
    L(fm_sampler_params, top_k, 12, 4),
    L(fm_sampler_params, top_p, 16, 4),
    L(fm_sampler_params, min_p, 20, 4),
    L(fm_sampler_params, repeat_penalty, 24, 4),
    L(fm_sampler_params, repeat_last_n, 28, 4),
    L(fm_sampler_params, seed, 32, 8),
    L(fm_sampler_params, typical_p, 40, 4),
    L(fm_sampler_params, presence_penalty, 44, 4),
    L(fm_sampler_params, frequency_penalty, 48, 4),
    L(fm_sampler_params, logit_bias, 56, 8),
    L(fm_sampler_params, n_logit_bias, 64, 8),
    L(fm_generate_stats, struct_size, 0, 8),
    L(fm_generate_stats, n_prompt_tokens, 8, 8),
    L(fm_generate_stats, n_generated_tokens, 16, 8),
    L(fm_generate_stats, prompt_seconds, 24, 8),
    L(fm_generate_stats, generate_seconds, 32, 8),
    L(fm_generate_stats, stop_reason, 40, 4),
    L(fm_generate_params, struct_size, 0, 8),
    L(fm_generate_params, max_new_tokens, 8, 4),
    L(fm_generate_params, sampler, 16, 8),
    L(fm_generate_params, stop, 24, 8),
    L(fm_generate_params, n_stop, 32, 8),
    L(fm_generate_params, add_special, 40, 4),
    L(fm_generate_params, skip_special, 44, 4),
    L(fm_generate_params, ignore_eos, 48, 4),
    L(fm_generate_params, stats, 56, 8),
    L(fm_chat_message, role, 0, 8),
    L(fm_chat_message, content, 8, 8),
};
static const total k_totals[] = {
    Z(fm_context_params, 40),
    Z(fm_model_info, 80),
    Z(fm_session_params, 16),
    Z(fm_logit_bias, 8),
    Z(fm_sampler_params, 72),
    Z(fm_generate_stats, 48),
    Z(fm_generate_params, 64),
    Z(fm_chat_message, 16),
};
static const value k_values[] = {
    E(FM_OK, 0),
    E(FM_ERR_INVALID_ARGUMENT, -1),
    E(FM_ERR_OUT_OF_MEMORY, -2),
    E(FM_ERR_IO, -3),
    E(FM_ERR_FORMAT, -4),
    E(FM_ERR_UNSUPPORTED, -5),
    E(FM_ERR_BACKEND, -6),
    E(FM_ERR_BUFFER_TOO_SMALL, -7),
    E(FM_ERR_STATE_MISMATCH, -8),
    E(FM_ERR_CANCELLED, -9),
    E(FM_ERR_INVALID_TOKEN, -10),
    E(FM_ERR_INTERNAL, -11),
    E(FM_BACKEND_AUTO, 0),
    E(FM_BACKEND_CPU, 1),
    E(FM_BACKEND_CUDA, 2),
    E(FM_WEIGHTS_AUTO, 0),
    E(FM_WEIGHTS_F32, 1),
    E(FM_WEIGHTS_BF16, 2),
    E(FM_WEIGHTS_F16, 3),
    E(FM_WEIGHTS_Q8_0, 4),
    E(FM_WEIGHTS_Q4_0, 5),
    E(FM_STOP_NONE, 0),
    E(FM_STOP_EOS, 1),
    E(FM_STOP_MAX_TOKENS, 2),
    E(FM_STOP_STRING, 3),
    E(FM_STOP_CALLBACK, 4),
    E(FM_STOP_CANCELLED, 5),
    E(FM_HISTORY_MAX, 65536),
    E(FM_VERSION_MAJOR, 1),
};

int main(void) {
    int bad = 0;
#if defined(__x86_64__) && defined(__LP64__)
    for (size_t i = 0; i < sizeof k_members / sizeof k_members[0]; i++) {
        const member *m = &k_members[i];
        if (m->off != m->want_off || m->size != m->want_size) {
            fprintf(stderr, "%s: offset %zu size %zu, ABI 1.0 has offset %zu size %zu\n", m->name, m->off, m->size,
                    m->want_off, m->want_size);
            bad = 1;
        }
    }
#endif
    for (size_t i = 0; i < sizeof k_totals / sizeof k_totals[0]; i++) {
        const total *t = &k_totals[i];
#if defined(__x86_64__) && defined(__LP64__)
        int ok = t->growable ? t->size >= t->want : t->size == t->want;
#else
        int ok = 1;
#endif
        if (!ok) {
            fprintf(stderr, "sizeof(%s) = %zu, ABI 1.0 has %zu (%s)\n", t->name, t->size, t->want,
                    t->growable ? "may only grow" : "must not change");
            bad = 1;
        }
    }
    for (size_t i = 0; i < sizeof k_values / sizeof k_values[0]; i++)
        if (k_values[i].v != k_values[i].want) {
            fprintf(stderr, "%s = %ld, ABI 1.0 has %ld\n", k_values[i].name, k_values[i].v, k_values[i].want);
            bad = 1;
        }
    printf("%zu members, %zu structs, %zu constants checked\n", sizeof k_members / sizeof k_members[0],
           sizeof k_totals / sizeof k_totals[0], sizeof k_values / sizeof k_values[0]);
    return bad;
}
