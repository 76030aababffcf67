/* header_consumer.c - compiled as C99, C11, C++11 and C++17 by header_compile.sh with every
   warning an error: the public header must be clean in all of them. */
#include "falconmamba.h"

#ifdef __cplusplus
static_assert(sizeof(fm_status) == sizeof(int), "fm_status is an int-sized enum");
#endif

int header_consumer(void);
int header_consumer(void) {
    fm_context_params cp;
    fm_context_params_init(&cp);
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    gp.sampler = &sp;
    fm_chat_message m = {"user", "hi"};
    fm_logit_bias b = {1, -1.0f};
    (void)m;
    (void)b;
    fm_status st = FM_ERR_FORMAT;
    return st == FM_OK && cp.backend == FM_BACKEND_AUTO && fm_status_string(st) != 0;
}
