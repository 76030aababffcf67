/*
 * falconmamba.h - the public interface of libfalconmamba.
 *
 * libfalconmamba runs FalconMamba (and plain Mamba-1) language models from HuggingFace checkpoint
 * directories. This header is the whole contract: every item here is documented here, and nothing
 * else in the source tree is public.
 *
 * Conventions
 *   - Objects are opaque handles created by *_open and destroyed by *_close. Closing NULL is a no-op.
 *   - Every function that can fail returns fm_status: FM_OK (0) on success, a negative code on
 *     failure. After a failure, fm_last_error() returns a human-readable message for the calling
 *     thread (e.g. "config.json: field 'hidden_size' missing"). On failure, output arguments are
 *     left untouched unless documented otherwise, and objects the caller owns stay usable.
 *   - The library never aborts, never exits and never prints.
 *   - Every params struct begins with `size_t struct_size`, which the caller sets to sizeof the struct
 *     it was compiled with (the *_params_init functions do this). Fields may be appended in later
 *     minor versions; a library reading an older, shorter struct uses defaults for the missing
 *     fields. Passing NULL params means "all defaults". Always fill a params struct with its
 *     *_params_init function (it zeroes the padding too) before setting fields.
 *
 * Thread rules
 *   A context may be shared by any number of threads. A session must be used by one thread at a
 *   time, except fm_session_cancel, which may be called from any thread.
 *
 * ABI
 *   The shared library's SONAME is libfalconmamba.so.<FM_VERSION_MAJOR>. Within a major version,
 *   functions, enum values and trailing struct fields are only ever added.
 */
#ifndef FALCONMAMBA_H
#define FALCONMAMBA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FM_API __declspec(dllexport)
#elif defined(__GNUC__)
#define FM_API __attribute__((visibility("default")))
#else
#define FM_API
#endif

/* ---------------------------------------------------------------------------------------------
 * Version and errors
 * ------------------------------------------------------------------------------------------- */

#define FM_VERSION_MAJOR 1
#define FM_VERSION_MINOR 0
#define FM_VERSION_PATCH 0

/* Status codes. Values are stable; new codes may be added. */
typedef enum fm_status {
    FM_OK = 0,
    FM_ERR_INVALID_ARGUMENT = -1, /* NULL where an object is required, bad size, bad enum value */
    FM_ERR_OUT_OF_MEMORY = -2,    /* host or device allocation failed */
    FM_ERR_IO = -3,               /* a file could not be opened, mapped or read */
    FM_ERR_FORMAT = -4,           /* a file is malformed: bad JSON, bad safetensors, bad config */
    FM_ERR_UNSUPPORTED = -5,      /* well-formed but not supported (model type, dtype, option) */
    FM_ERR_BACKEND = -6,          /* the requested backend is unavailable or failed */
    FM_ERR_BUFFER_TOO_SMALL = -7, /* an output buffer is too small; the needed size is reported */
    FM_ERR_STATE_MISMATCH = -8,   /* a state blob is truncated, corrupt or from another model */
    FM_ERR_CANCELLED = -9,        /* fm_session_cancel stopped the call */
    FM_ERR_INVALID_TOKEN = -10,   /* a token id outside [0, n_vocab) */
    FM_ERR_INTERNAL = -11         /* a bug in the library; please report it */
} fm_status;

/* Library version as "MAJOR.MINOR.PATCH". Never NULL. */
FM_API const char *fm_version(void);

/* Message describing the most recent failure on the calling thread. Never NULL; "" if none. The
   pointer stays valid until the next libfalconmamba call on the same thread. */
FM_API const char *fm_last_error(void);

/* Short constant name of a status ("FM_ERR_FORMAT"); "FM_STATUS_UNKNOWN" for unknown values. */
FM_API const char *fm_status_string(fm_status s);

/* ---------------------------------------------------------------------------------------------
 * Context: one loaded model on one backend
 * ------------------------------------------------------------------------------------------- */

typedef struct fm_context fm_context;
typedef struct fm_session fm_session;

typedef enum fm_backend_kind {
    FM_BACKEND_AUTO = 0, /* the best available backend (today: CPU) */
    FM_BACKEND_CPU = 1,
    FM_BACKEND_CUDA = 2  /* not available in this version: FM_ERR_BACKEND */
} fm_backend_kind;

/* How matrix weights are kept in memory. Norm weights, conv weights, A, D and biases are always
   kept in fp32. */
typedef enum fm_weight_type {
    FM_WEIGHTS_AUTO = 0, /* as stored in the checkpoint */
    FM_WEIGHTS_F32 = 1,
    FM_WEIGHTS_BF16 = 2,
    FM_WEIGHTS_F16 = 3,
    FM_WEIGHTS_Q8_0 = 4, /* 8-bit blocks of 32 (projections and an untied head; docs/API.md) */
    FM_WEIGHTS_Q4_0 = 5  /* 4-bit blocks of 32, same tensors as Q8_0 */
} fm_weight_type;

typedef struct fm_context_params {
    size_t struct_size;         /* sizeof(fm_context_params) as compiled by the caller */
    fm_backend_kind backend;    /* default FM_BACKEND_AUTO */
    int32_t device;             /* device index for GPU backends; default 0 */
    int32_t n_threads;          /* CPU threads; 0 = all cores (default) */
    fm_weight_type weight_type; /* default FM_WEIGHTS_AUTO */
    /* Called during fm_context_open with the fraction of weights loaded (0..1), from the opening
       thread; return nonzero to abort the open (FM_ERR_CANCELLED). NULL = no reports. */
    int (*progress)(float fraction, void *user);
    void *progress_user;
} fm_context_params;

/* Fill *p with defaults (struct_size included). */
FM_API void fm_context_params_init(fm_context_params *p);

/* Load a HuggingFace FalconMamba / Mamba checkpoint directory: config.json plus model.safetensors
   or model.safetensors.index.json with its shards. On the CPU backend, tensors already stored in
   the requested type are used in place from the read-only memory-mapped files, which then stay
   mapped until fm_context_close (do not rewrite them meanwhile); everything else is converted into
   backend memory and its file pages released. p may be NULL (defaults). On success *out owns the
   model. */
FM_API fm_status fm_context_open(const char *model_path, const fm_context_params *p, fm_context **out);

/* Free the context. All its sessions must be closed first. NULL is fine. */
FM_API void fm_context_close(fm_context *ctx);

/* Vocabulary size (rows of the logits). 0 if ctx is NULL. */
FM_API int32_t fm_n_vocab(const fm_context *ctx);
/* Token ids from config.json; -1 if none (or ctx is NULL). */
FM_API int32_t fm_token_eos(const fm_context *ctx);
FM_API int32_t fm_token_bos(const fm_context *ctx);

/* Model dimensions, for display and for sizing buffers. */
typedef struct fm_model_info {
    size_t struct_size;         /* set by the caller, like a params struct */
    const char *model_type;     /* "falcon_mamba" or "mamba"; owned by the context */
    int32_t n_layer;
    int32_t d_model;
    int32_t d_inner;
    int32_t d_state;
    int32_t d_conv;
    int32_t dt_rank;
    int32_t n_vocab;
    int32_t tied_embeddings;    /* 1 if lm_head shares the embedding matrix */
    uint64_t n_params;          /* parameters as stored (tied weights counted once) */
    uint64_t weight_bytes;      /* bytes of weights held by the backend */
    uint64_t state_bytes;       /* bytes of recurrent state per session */
    const char *backend_name;   /* "cpu"; owned by the context */
} fm_model_info;

/* Fill *info (whose struct_size the caller sets) with the model's dimensions. */
FM_API fm_status fm_context_info(const fm_context *ctx, fm_model_info *info);

/* ---------------------------------------------------------------------------------------------
 * Session: one sequence's recurrent state plus its latest logits
 * ------------------------------------------------------------------------------------------- */

typedef struct fm_session_params {
    size_t struct_size;     /* sizeof(fm_session_params) as compiled by the caller */
    uint32_t prefill_chunk; /* tokens processed per pass in fm_session_feed; 0 = default (256) */
} fm_session_params;

FM_API void fm_session_params_init(fm_session_params *p);

/* Open a session on ctx with an empty state. p may be NULL. */
FM_API fm_status fm_session_open(fm_context *ctx, const fm_session_params *p, fm_session **out);

/* Free the session and its state slot. NULL is fine. */
FM_API void fm_session_close(fm_session *s);

/* Back to the empty state (no tokens seen, no logits, no history); drops a pending cancel. */
FM_API fm_status fm_session_reset(fm_session *s);

/* Advance the state over n tokens (n >= 1). If logits_out is not NULL it receives n * n_vocab
   floats (row i = logits after token i). The last row is always available from fm_session_logits.
   All token ids are checked first: an id outside [0, n_vocab) fails with FM_ERR_INVALID_TOKEN and
   leaves the session unchanged. If fm_session_cancel stops the call, it returns FM_ERR_CANCELLED
   with the state advanced over a prefix of the tokens (fm_session_n_tokens says how far); rows of
   logits_out beyond that prefix are unspecified. */
FM_API fm_status fm_session_feed(fm_session *s, const int32_t *tokens, size_t n, float *logits_out);

/* The n_vocab logits after the last token fed, or NULL before the first feed (and after reset).
   Valid until the next call that changes the session. */
FM_API const float *fm_session_logits(const fm_session *s);

/* Number of tokens the state has consumed since open/reset (restored by state load). */
FM_API uint64_t fm_session_n_tokens(const fm_session *s);

/* A new session with a copy of s's state and logits. */
FM_API fm_status fm_session_fork(const fm_session *s, fm_session **out);

/* Bytes fm_session_state_save writes for this session (header + state + logits). */
FM_API size_t fm_session_state_size(const fm_session *s);

/* Serialise the state (with a header naming the model, its dimensions and the token count) into
   buf. If cap is too small, returns FM_ERR_BUFFER_TOO_SMALL and sets *written (if not NULL) to the
   size needed. */
FM_API fm_status fm_session_state_save(const fm_session *s, void *buf, size_t cap, size_t *written);

/* Restore a blob written by fm_session_state_save. A truncated or corrupt blob, or one from a
   model with another fingerprint, fails with FM_ERR_STATE_MISMATCH and leaves s unchanged. */
FM_API fm_status fm_session_state_load(fm_session *s, const void *buf, size_t n);

/* Advance n distinct sessions of the same context by one token each (tokens[i] for sessions[i]) in
   one pass over the weights. Afterwards each session's fm_session_logits holds its next-token
   logits. Validates everything before changing any session. */
FM_API fm_status fm_decode_batch(fm_session *const *sessions, const int32_t *tokens, size_t n);

/* Ask the call in progress on s (or the next one, if none is running) to stop with
   FM_ERR_CANCELLED. Callable from any thread. NULL is fine. */
FM_API void fm_session_cancel(fm_session *s);

/* ---------------------------------------------------------------------------------------------
 * Sampling
 * ------------------------------------------------------------------------------------------- */

typedef struct fm_logit_bias {
    int32_t token;
    float bias; /* added to the token's logit; -INFINITY bans it */
} fm_logit_bias;

/* Processors run in transformers' order: logit bias, repetition penalty, presence/frequency
   penalties, then (when temperature > 0) temperature, top-k, top-p, min-p, typical-p, and a draw.
   With temperature == 0 the result is the argmax after bias and penalties (greedy). */
typedef struct fm_sampler_params {
    size_t struct_size;
    float temperature;      /* 0 = greedy; default 1.0 */
    int32_t top_k;          /* keep the k best (ties at the k-th kept, as HF); 0 = off; default 50 */
    float top_p;            /* nucleus mass in (0, 1]; 1 = off (default) */
    float min_p;            /* drop tokens with p < min_p * p_max; 0 = off (default) */
    float repeat_penalty;   /* HF repetition_penalty; 1 = off (default) */
    int32_t repeat_last_n;  /* history the penalties look at: -1 = all the session has seen (up to
                               FM_HISTORY_MAX, as HF), 0 = none; default -1 */
    uint64_t seed;          /* the session's generator is (re)seeded whenever this value changes;
                               FM_SEED_RANDOM = a seed from the OS; default 0 */
    float typical_p;        /* locally typical sampling mass; 1 = off (default) */
    float presence_penalty; /* subtracted once from each token seen in the history; default 0 */
    float frequency_penalty;/* subtracted per occurrence in the history; default 0 */
    const fm_logit_bias *logit_bias; /* n_logit_bias entries, or NULL */
    size_t n_logit_bias;
} fm_sampler_params;

#define FM_SEED_RANDOM UINT64_MAX
#define FM_HISTORY_MAX 65536

FM_API void fm_sampler_params_init(fm_sampler_params *p);

/* Choose the next token from the session's current logits (after a feed). sp NULL = defaults.
   The token is NOT fed back: call fm_session_feed (or fm_decode_batch) with it. Fails with
   FM_ERR_INVALID_ARGUMENT before the first feed or on out-of-range parameters. */
FM_API fm_status fm_session_sample(fm_session *s, const fm_sampler_params *sp, int32_t *token_out);

/* ---------------------------------------------------------------------------------------------
 * Generation: text in, streamed text out
 * ------------------------------------------------------------------------------------------- */

/* Why fm_generate stopped. */
typedef enum fm_stop_reason {
    FM_STOP_NONE = 0,       /* still running, or failed */
    FM_STOP_EOS = 1,        /* the model produced its end-of-sequence token */
    FM_STOP_MAX_TOKENS = 2, /* max_new_tokens reached */
    FM_STOP_STRING = 3,     /* one of the stop strings appeared (it is not emitted) */
    FM_STOP_CALLBACK = 4,   /* the callback returned nonzero */
    FM_STOP_CANCELLED = 5   /* fm_session_cancel */
} fm_stop_reason;

typedef struct fm_generate_stats {
    size_t struct_size;
    uint64_t n_prompt_tokens;
    uint64_t n_generated_tokens;
    double prompt_seconds;   /* tokenizing + prefill */
    double generate_seconds; /* sampling + decoding */
    fm_stop_reason stop_reason;
} fm_generate_stats;

typedef struct fm_generate_params {
    size_t struct_size;
    int32_t max_new_tokens;              /* default 128 */
    const fm_sampler_params *sampler;    /* NULL = fm_sampler_params_init defaults */
    const char *const *stop;             /* n_stop stop strings, or NULL */
    size_t n_stop;
    int32_t add_special;                 /* post-processor (e.g. BOS) on the prompt: 1 yes, 0 no,
                                            -1 (default) only when the session is empty */
    int32_t skip_special;                /* leave special tokens out of the streamed text; default 1 */
    int32_t ignore_eos;                  /* keep going past EOS; default 0 */
    fm_generate_stats *stats;            /* filled on return if not NULL (set its struct_size) */
} fm_generate_params;

/* Receives each piece of generated text (complete UTF-8, possibly empty when a token only starts a
   multi-byte character or is held back while it may begin a stop string) and the token that
   produced it (-1 for text released at the end). Return nonzero to stop. */
typedef int (*fm_token_callback)(const char *piece, size_t len, int32_t token, void *user);

FM_API void fm_generate_params_init(fm_generate_params *p);

/* Tokenize prompt (may be "" to continue from the session's state), feed it, then sample and feed
   up to max_new_tokens tokens, streaming text to cb (may be NULL). Generation continues from the
   session's state, so a chat appends only the new turn. Stops at EOS, max_new_tokens, a stop
   string, a nonzero callback return (all FM_OK) or fm_session_cancel (FM_ERR_CANCELLED). Every
   sampled token, EOS and a stop string's token included, is fed back, so afterwards the session's
   state covers the prompt and everything generated. FM_ERR_UNSUPPORTED if the model has no
   tokenizer. */
FM_API fm_status fm_generate(fm_session *s, const char *prompt, const fm_generate_params *gp, fm_token_callback cb,
                             void *user);

/* ---------------------------------------------------------------------------------------------
 * Tokenizer: a component of its own, usable without weights (token counting, tests)
 * ------------------------------------------------------------------------------------------- */

typedef struct fm_tokenizer fm_tokenizer;

/* Load a HuggingFace tokenizer. path = a tokenizer.json file, or a directory holding tokenizer.json
   (and optionally tokenizer_config.json, which supplies the chat template and bos/eos tokens; for a
   file path, a tokenizer_config.json beside it is read too). Anything the file asks for that is not
   supported fails with FM_ERR_UNSUPPORTED naming the component. */
FM_API fm_status fm_tokenizer_open(const char *path, fm_tokenizer **out);
FM_API void fm_tokenizer_close(fm_tokenizer *tok);

/* The tokenizer loaded with a model (from the checkpoint directory), or NULL if it has none. Owned
   by the context. */
FM_API const fm_tokenizer *fm_context_tokenizer(const fm_context *ctx);

/* Number of ids (highest id + 1, added tokens included). 0 if tok is NULL. */
FM_API int32_t fm_tokenizer_n_vocab(const fm_tokenizer *tok);
/* bos/eos token ids as tokenizer_config.json names them; -1 if none. */
FM_API int32_t fm_tokenizer_bos(const fm_tokenizer *tok);
FM_API int32_t fm_tokenizer_eos(const fm_tokenizer *tok);
/* 1 if id is a special added token, 0 otherwise (also for invalid ids). */
FM_API int fm_tokenizer_is_special(const fm_tokenizer *tok, int32_t id);

/* Encode len bytes of UTF-8 text (may contain NUL). add_special: apply the post-processor (e.g. a
   BOS token); special tokens written literally in the text are always recognised, as in HF.
   Writes up to cap ids; if cap is too small returns FM_ERR_BUFFER_TOO_SMALL and sets *n_out to the
   count needed (tokens may be NULL when cap is 0). */
FM_API fm_status fm_tokenizer_encode(const fm_tokenizer *tok, const char *text, size_t len, int add_special,
                                     int32_t *tokens, size_t cap, size_t *n_out);

/* Decode ids to UTF-8 (not NUL-terminated unless room remains; *len_out excludes any NUL). Invalid
   UTF-8 produced by byte-level tokens becomes U+FFFD, as in HF. skip_special drops special tokens.
   FM_ERR_BUFFER_TOO_SMALL sets *len_out to the bytes needed. */
FM_API fm_status fm_tokenizer_decode(const fm_tokenizer *tok, const int32_t *tokens, size_t n, int skip_special,
                                     char *buf, size_t cap, size_t *len_out);

/* Incremental decoding for streaming: push one id at a time; only complete UTF-8 sequences are
   emitted, a partial multi-byte character is held back until a later token completes it. */
typedef struct fm_detokenizer fm_detokenizer;
FM_API fm_status fm_detokenizer_open(const fm_tokenizer *tok, int skip_special, fm_detokenizer **out);
FM_API void fm_detokenizer_close(fm_detokenizer *d);
FM_API void fm_detokenizer_reset(fm_detokenizer *d);
/* Append the text that token completes to buf (*len_out bytes, possibly 0). On
   FM_ERR_BUFFER_TOO_SMALL nothing is consumed and *len_out is the size needed. */
FM_API fm_status fm_detokenizer_push(fm_detokenizer *d, int32_t token, char *buf, size_t cap, size_t *len_out);
/* Emit whatever is held back (an incomplete sequence becomes U+FFFD) and reset. */
FM_API fm_status fm_detokenizer_flush(fm_detokenizer *d, char *buf, size_t cap, size_t *len_out);

/* One chat turn. role is "system", "user", "assistant" (or whatever the template understands). */
typedef struct fm_chat_message {
    const char *role;
    const char *content;
} fm_chat_message;

/* Render the tokenizer's chat template (tokenizer_config.json "chat_template") over msgs, as
   transformers' apply_chat_template(tokenize=False) does. FM_ERR_UNSUPPORTED if the tokenizer has
   no template or the template uses a construct this engine does not implement (the message names
   it). FM_ERR_BUFFER_TOO_SMALL sets *len_out to the bytes needed. */
FM_API fm_status fm_tokenizer_chat_format(const fm_tokenizer *tok, const fm_chat_message *msgs, size_t n,
                                          int add_generation_prompt, char *buf, size_t cap, size_t *len_out);

#ifdef __cplusplus
}
#endif

#endif /* FALCONMAMBA_H */
