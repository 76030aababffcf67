/* fuzz_chat_template.c - a chat template (Jinja subset) compiled and rendered over messages. Input:
   template source, then optionally a NUL byte and up to 8 (role NUL content NUL) pairs; without a
   NUL the template renders over a fixed four-turn conversation. The low bit of the size picks
   add_generation_prompt. Errors are fine; crashes, leaks and runaway renders (the engine's step,
   memory and depth limits) are not. */
#include <string.h>

#include "chat_template.h"
#include "fuzz_common.h"

static const fm_chat_message k_default[] = {
    {"system", "You are terse."},
    {"user", "Hi! <b>caf\xc3\xa9</b>"},
    {"assistant", "Hello."},
    {"user", "2 + 2?"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *src = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t src_len = nul ? (size_t)(nul - data) : size;

    /* Messages point into one NUL-terminated copy of the tail. */
    fm_chat_message msgs[8];
    size_t n_msgs = 0;
    char *tail = NULL;
    if (nul) {
        size_t tn = size - src_len - 1;
        tail = malloc(tn + 2);
        FUZZ_CHECK(tail != NULL);
        memcpy(tail, nul + 1, tn);
        tail[tn] = tail[tn + 1] = '\0';
        char *p = tail, *end = tail + tn;
        while (n_msgs < 8 && p < end) {
            char *role = p;
            p += strlen(p) + 1;
            char *content = p <= end ? p : end;
            p = content + strlen(content) + 1;
            msgs[n_msgs++] = (fm_chat_message){role, content};
        }
    } else {
        memcpy(msgs, k_default, sizeof k_default);
        n_msgs = 4;
    }

    fm_chat_template *t = NULL;
    if (fm_chat_template_compile(src, src_len, &t) == FM_OK) {
        fm_chat_vars v = {msgs, n_msgs, (int)(size & 1), "<s>", "</s>"};
        char *out = NULL;
        size_t out_len = 0;
        if (fm_chat_template_render(t, &v, &out, &out_len) == FM_OK) {
            FUZZ_CHECK(out != NULL);
            FUZZ_CHECK(strlen(out) <= out_len); /* NUL-terminated; content may hold NULs only via escapes */
        }
        free(out);
        fm_chat_template_free(t);
    }
    free(tail);
    return 0;
}
