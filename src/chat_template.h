/* chat_template.h - a Jinja-subset engine for HuggingFace chat templates (tokenizer_config.json
   "chat_template"), rendering the way transformers' apply_chat_template(tokenize=False) does. */
#ifndef FM_CHAT_TEMPLATE_H
#define FM_CHAT_TEMPLATE_H

#include <stddef.h>

#include "falconmamba.h"

typedef struct fm_chat_template fm_chat_template;

/* Parse a template. A syntax error or an unsupported construct fails with FM_ERR_FORMAT /
   FM_ERR_UNSUPPORTED and a message naming the construct and its line. */
fm_status fm_chat_template_compile(const char *src, size_t len, fm_chat_template **out);
void fm_chat_template_free(fm_chat_template *t);

typedef struct fm_chat_vars {
    const fm_chat_message *messages;
    size_t n_messages;
    int add_generation_prompt;
    const char *bos_token; /* NULL = undefined */
    const char *eos_token; /* NULL = undefined */
} fm_chat_vars;

/* Render; *out is malloc'ed (NUL-terminated), *out_len its length. raise_exception in the template
   gives FM_ERR_INVALID_ARGUMENT with the template's message. */
fm_status fm_chat_template_render(const fm_chat_template *t, const fm_chat_vars *vars, char **out, size_t *out_len);

#endif
