/* test_config.c - fm_config_parse (src/config.h): derived fields, defaults, architecture detection
   and every validation error with its status and message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define FILE_NAME "cfg.json"

/* The smallest accepted config; tests patch it. */
static const char *k_base = "{\"model_type\":\"falcon_mamba\",\"hidden_size\":40,\"num_hidden_layers\":2,"
                            "\"vocab_size\":100}";

/* base with each key of patch (a JSON object) replaced; the string "__DELETE__" deletes the key. */
static char *patched(const char *base, const char *patch) {
    cJSON *b = cJSON_Parse(base), *p = cJSON_Parse(patch);
    assert_non_null(b);
    if (!p) fail_msg("test bug: patch is not JSON: %s", patch);
    const cJSON *e;
    cJSON_ArrayForEach(e, p) {
        cJSON_DeleteItemFromObjectCaseSensitive(b, e->string);
        if (cJSON_IsString(e) && strcmp(e->valuestring, "__DELETE__") == 0) continue;
        cJSON_AddItemToObject(b, e->string, cJSON_Duplicate(e, 1));
    }
    char *s = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    cJSON_Delete(p);
    assert_non_null(s);
    return s;
}

static fm_status parse_text(const char *json, fm_config *c) {
    return fm_config_parse(json, strlen(json), FILE_NAME, c);
}

static fm_config parse_ok(const char *patch) {
    char *s = patched(k_base, patch);
    fm_config c;
    memset(&c, 0xab, sizeof c);
    fm_status st = parse_text(s, &c);
    if (st != FM_OK) fail_msg("%s: expected FM_OK, got %s: %s", s, fm_status_string(st), fm_last_error());
    free(s);
    return c;
}

/* Parse text, expect status and a message that starts with the file name and contains want;
   the output must be left untouched. */
static void expect_error_text(const char *text, fm_status want_st, const char *want) {
    fm_config c, before;
    memset(&c, 0x5a, sizeof c);
    before = c;
    fm_status st = parse_text(text, &c);
    const char *msg = fm_last_error();
    if (st != want_st)
        fail_msg("%s: expected %s, got %s (\"%s\")", text, fm_status_string(want_st), fm_status_string(st), msg);
    if (strncmp(msg, FILE_NAME ": ", strlen(FILE_NAME) + 2) != 0)
        fail_msg("%s: message does not start with the file name: \"%s\"", text, msg);
    if (!strstr(msg, want)) fail_msg("%s: message \"%s\" lacks \"%s\"", text, msg, want);
    if (memcmp(&c, &before, sizeof c) != 0) fail_msg("%s: output modified on failure", text);
}

static void expect_error(const char *patch, fm_status want_st, const char *want) {
    char *s = patched(k_base, patch);
    expect_error_text(s, want_st, want);
    free(s);
}

/* ---- derived fields and defaults --------------------------------------------------------------- */

static void test_defaults(void **state) {
    (void)state;
    fm_config c = parse_ok("{}");
    assert_int_equal(c.arch, FM_ARCH_FALCON_MAMBA);
    assert_int_equal(c.d_model, 40);
    assert_int_equal(c.n_layer, 2);
    assert_int_equal(c.n_vocab, 100);
    assert_int_equal(c.d_inner, 80); /* expand defaults to 2 */
    assert_int_equal(c.dt_rank, 3);  /* auto */
    assert_int_equal(c.d_state, 16);
    assert_int_equal(c.d_conv, 4);
    assert_true(c.norm_eps == 1e-5f);
    assert_true(c.mixer_eps == 1e-6f);
    assert_int_equal(c.use_conv_bias, 1);
    assert_int_equal(c.use_bias, 0);
    assert_int_equal(c.residual_in_fp32, 1);
    assert_int_equal(c.tie_embeddings, 1);
    assert_int_equal(c.bos_id, 0);
    assert_int_equal(c.eos_id, 0);
    assert_int_equal(c.pad_id, 0);
}

static void test_explicit_fields(void **state) {
    (void)state;
    fm_config c = parse_ok("{\"state_size\":8,\"conv_kernel\":3,\"layer_norm_epsilon\":1e-6,\"mixer_rms_eps\":1e-5,"
                           "\"use_bias\":true,\"use_conv_bias\":false,\"residual_in_fp32\":false,"
                           "\"tie_word_embeddings\":false,\"bos_token_id\":1,\"eos_token_id\":2,\"pad_token_id\":3,"
                           "\"hidden_act\":\"silu\",\"some_unknown_field\":[1,2,{}]}");
    assert_int_equal(c.d_state, 8);
    assert_int_equal(c.d_conv, 3);
    assert_true(c.norm_eps == 1e-6f);
    assert_true(c.mixer_eps == 1e-5f);
    assert_int_equal(c.use_bias, 1);
    assert_int_equal(c.use_conv_bias, 0);
    assert_int_equal(c.residual_in_fp32, 0);
    assert_int_equal(c.tie_embeddings, 0);
    assert_int_equal(c.bos_id, 1);
    assert_int_equal(c.eos_id, 2);
    assert_int_equal(c.pad_id, 3);
    c = parse_ok("{\"layer_norm_epsilon\":1}"); /* the upper bound is inclusive */
    assert_true(c.norm_eps == 1.0f);
}

static void test_time_step_rank_auto(void **state) {
    (void)state;
    static const struct {
        int hidden, rank;
    } cases[] = {{40, 3}, {4096, 256}, {16, 1}, {17, 2}, {1, 1}, {15, 1}, {32, 2}, {33, 3}, {65536, 4096}};
    char patch[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(patch, sizeof patch, "{\"hidden_size\":%d,\"time_step_rank\":\"auto\",\"intermediate_size\":64}",
                 cases[i].hidden);
        fm_config c = parse_ok(patch);
        assert_int_equal(c.d_model, cases[i].hidden);
        if (c.dt_rank != cases[i].rank)
            fail_msg("hidden %d: dt_rank %d, expected %d", cases[i].hidden, c.dt_rank, cases[i].rank);
        /* absent means auto too */
        snprintf(patch, sizeof patch, "{\"hidden_size\":%d,\"intermediate_size\":64}", cases[i].hidden);
        assert_int_equal(parse_ok(patch).dt_rank, cases[i].rank);
    }
}

static void test_time_step_rank_integer(void **state) {
    (void)state;
    assert_int_equal(parse_ok("{\"time_step_rank\":7}").dt_rank, 7);
    assert_int_equal(parse_ok("{\"time_step_rank\":7.0}").dt_rank, 7);
    assert_int_equal(parse_ok("{\"time_step_rank\":1}").dt_rank, 1);
    assert_int_equal(parse_ok("{\"hidden_size\":4096,\"time_step_rank\":128}").dt_rank, 128);
}

static void test_intermediate_and_expand(void **state) {
    (void)state;
    /* intermediate_size wins over expand (falcon-mamba-7b ships expand 16 with intermediate_size 8192) */
    fm_config c = parse_ok("{\"intermediate_size\":100,\"expand\":4}");
    assert_int_equal(c.d_inner, 100);
    assert_int_equal(parse_ok("{\"expand\":3}").d_inner, 120);
    assert_int_equal(parse_ok("{\"expand\":1}").d_inner, 40);
    assert_int_equal(parse_ok("{\"intermediate_size\":7}").d_inner, 7);
    /* a bad expand is irrelevant when intermediate_size is given */
    assert_int_equal(parse_ok("{\"intermediate_size\":64,\"expand\":\"x\"}").d_inner, 64);
}

static void test_falcon_mamba_7b_config(void **state) {
    (void)state;
    const char *cfg =
        "{\"architectures\":[\"FalconMambaForCausalLM\"],\"bos_token_id\":0,\"conv_kernel\":4,\"eos_token_id\":11,"
        "\"expand\":16,\"hidden_act\":\"silu\",\"hidden_size\":4096,\"initializer_range\":0.1,"
        "\"intermediate_size\":8192,\"layer_norm_epsilon\":1e-05,\"mixer_rms_eps\":1e-06,"
        "\"model_type\":\"falcon_mamba\",\"num_hidden_layers\":64,\"pad_token_id\":11,"
        "\"rescale_prenorm_residual\":false,\"residual_in_fp32\":true,\"state_size\":16,\"tie_word_embeddings\":false,"
        "\"time_step_floor\":0.0001,\"time_step_init_scheme\":\"random\",\"time_step_max\":0.1,"
        "\"time_step_min\":0.001,\"time_step_rank\":256,\"time_step_scale\":1.0,\"torch_dtype\":\"bfloat16\","
        "\"use_bias\":false,\"use_cache\":true,\"use_conv_bias\":true,\"use_mambapy\":false,\"vocab_size\":65024}";
    fm_config c;
    assert_int_equal(parse_text(cfg, &c), FM_OK);
    assert_int_equal(c.arch, FM_ARCH_FALCON_MAMBA);
    assert_int_equal(c.d_model, 4096);
    assert_int_equal(c.d_inner, 8192);
    assert_int_equal(c.d_state, 16);
    assert_int_equal(c.d_conv, 4);
    assert_int_equal(c.dt_rank, 256);
    assert_int_equal(c.n_layer, 64);
    assert_int_equal(c.n_vocab, 65024);
    assert_int_equal(c.tie_embeddings, 0);
    assert_int_equal(c.bos_id, 0);
    assert_int_equal(c.eos_id, 11);
    assert_int_equal(c.pad_id, 11);
}

static void test_token_ids(void **state) {
    (void)state;
    fm_config c = parse_ok("{\"eos_token_id\":null}");
    assert_int_equal(c.eos_id, -1);
    assert_int_equal(c.bos_id, 0);
    c = parse_ok("{\"bos_token_id\":null,\"pad_token_id\":null}");
    assert_int_equal(c.bos_id, -1);
    assert_int_equal(c.pad_id, -1);
    c = parse_ok("{\"eos_token_id\":[11,12]}"); /* a list: its first entry */
    assert_int_equal(c.eos_id, 11);
    c = parse_ok("{\"eos_token_id\":100,\"bos_token_id\":99}"); /* vocab 100: 100 is outside */
    assert_int_equal(c.eos_id, -1);
    assert_int_equal(c.bos_id, 99);
    c = parse_ok("{\"pad_token_id\":16777216}");
    assert_int_equal(c.pad_id, -1);
}

static void test_model_type(void **state) {
    (void)state;
    assert_int_equal(parse_ok("{\"model_type\":\"mamba\"}").arch, FM_ARCH_MAMBA);
    assert_int_equal(parse_ok("{\"model_type\":\"falcon_mamba\"}").arch, FM_ARCH_FALCON_MAMBA);
    /* model_type wins over architectures */
    assert_int_equal(parse_ok("{\"model_type\":\"mamba\",\"architectures\":[\"FalconMambaForCausalLM\"]}").arch,
                     FM_ARCH_MAMBA);
}

static void test_architectures_fallback(void **state) {
    (void)state;
    assert_int_equal(parse_ok("{\"model_type\":\"__DELETE__\",\"architectures\":[\"MambaForCausalLM\"]}").arch,
                     FM_ARCH_MAMBA);
    assert_int_equal(
        parse_ok("{\"model_type\":\"__DELETE__\",\"architectures\":[\"FalconMambaForCausalLM\"]}").arch,
        FM_ARCH_FALCON_MAMBA);
    /* the first known entry counts; non-strings are skipped */
    assert_int_equal(parse_ok("{\"model_type\":\"__DELETE__\",\"architectures\":[3,\"Other\",\"MambaForCausalLM\","
                              "\"FalconMambaForCausalLM\"]}")
                         .arch,
                     FM_ARCH_MAMBA);
}

static void test_length_is_respected(void **state) {
    (void)state;
    /* A valid object followed by bytes outside len: only len bytes are parsed. */
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s", k_base, "GARBAGE");
    fm_config c;
    assert_int_equal(fm_config_parse(buf, strlen(k_base), FILE_NAME, &c), FM_OK);
    assert_int_equal(c.d_model, 40);
    /* A len that cuts the object short is malformed. */
    fm_config before;
    memset(&c, 0x11, sizeof c);
    before = c;
    assert_int_equal(fm_config_parse(k_base, strlen(k_base) - 1, FILE_NAME, &c), FM_ERR_FORMAT);
    assert_non_null(strstr(fm_last_error(), FILE_NAME ": malformed JSON near byte"));
    assert_memory_equal(&c, &before, sizeof c);
    assert_int_equal(fm_config_parse(k_base, 0, FILE_NAME, &c), FM_ERR_FORMAT);
    assert_non_null(strstr(fm_last_error(), "malformed JSON"));
}

/* ---- errors ------------------------------------------------------------------------------------ */

static void test_malformed_json(void **state) {
    (void)state;
    expect_error_text("{", FM_ERR_FORMAT, "malformed JSON near byte");
    expect_error_text("", FM_ERR_FORMAT, "malformed JSON");
    expect_error_text("{\"hidden_size\": 40,}", FM_ERR_FORMAT, "malformed JSON near byte");
    expect_error_text("not json at all", FM_ERR_FORMAT, "malformed JSON near byte 0");
    expect_error_text("[1, 2]", FM_ERR_FORMAT, "top level must be a JSON object");
    expect_error_text("\"falcon_mamba\"", FM_ERR_FORMAT, "top level must be a JSON object");
    expect_error_text("null", FM_ERR_FORMAT, "top level must be a JSON object");
    expect_error_text("42", FM_ERR_FORMAT, "top level must be a JSON object");
}

static void test_model_type_errors(void **state) {
    (void)state;
    expect_error("{\"model_type\":\"llama\"}", FM_ERR_UNSUPPORTED,
                 "model_type 'llama' is not supported (expected 'falcon_mamba' or 'mamba')");
    expect_error("{\"model_type\":\"Mamba\"}", FM_ERR_UNSUPPORTED, "model_type 'Mamba' is not supported");
    expect_error("{\"model_type\":\"mamba2\"}", FM_ERR_UNSUPPORTED, "model_type 'mamba2' is not supported");
    expect_error("{\"model_type\":\"\"}", FM_ERR_UNSUPPORTED, "model_type '' is not supported");
    expect_error("{\"model_type\":5}", FM_ERR_FORMAT, "field 'model_type' must be a string");
    expect_error("{\"model_type\":null}", FM_ERR_FORMAT, "field 'model_type' must be a string");
    expect_error("{\"model_type\":\"__DELETE__\"}", FM_ERR_UNSUPPORTED,
                 "neither 'model_type' nor a known 'architectures' entry");
    expect_error("{\"model_type\":\"__DELETE__\",\"architectures\":[\"LlamaForCausalLM\"]}", FM_ERR_UNSUPPORTED,
                 "neither 'model_type' nor a known 'architectures' entry");
    expect_error("{\"model_type\":\"__DELETE__\",\"architectures\":\"MambaForCausalLM\"}", FM_ERR_UNSUPPORTED,
                 "neither 'model_type' nor a known 'architectures' entry");
}

static void test_hidden_act_errors(void **state) {
    (void)state;
    expect_error("{\"hidden_act\":\"gelu\"}", FM_ERR_UNSUPPORTED, "hidden_act must be \"silu\"");
    expect_error("{\"hidden_act\":\"SiLU\"}", FM_ERR_UNSUPPORTED, "hidden_act must be \"silu\"");
    expect_error("{\"hidden_act\":1}", FM_ERR_UNSUPPORTED, "hidden_act must be \"silu\"");
}

static void test_integer_field_errors(void **state) {
    (void)state;
    static const struct {
        const char *patch, *msg;
    } cases[] = {
        {"{\"hidden_size\":\"__DELETE__\"}", "field 'hidden_size' missing"},
        {"{\"hidden_size\":\"40\"}", "field 'hidden_size' must be an integer"},
        {"{\"hidden_size\":40.5}", "field 'hidden_size' must be an integer"},
        {"{\"hidden_size\":true}", "field 'hidden_size' must be an integer"},
        {"{\"hidden_size\":null}", "field 'hidden_size' must be an integer"},
        {"{\"hidden_size\":[40]}", "field 'hidden_size' must be an integer"},
        {"{\"hidden_size\":-3}", "field 'hidden_size' = -3 is out of range [1, 65536]"},
        {"{\"hidden_size\":0}", "field 'hidden_size' = 0 is out of range [1, 65536]"},
        {"{\"hidden_size\":65537}", "field 'hidden_size' = 65537 is out of range [1, 65536]"},
        {"{\"hidden_size\":1e12}", "field 'hidden_size' = 1000000000000 is out of range [1, 65536]"},
        {"{\"hidden_size\":4294967336}", "field 'hidden_size' = 4294967336 is out of range"}, /* 2^32 + 40 */
        {"{\"num_hidden_layers\":\"__DELETE__\"}", "field 'num_hidden_layers' missing"},
        {"{\"num_hidden_layers\":0}", "field 'num_hidden_layers' = 0 is out of range [1, 1024]"},
        {"{\"num_hidden_layers\":1025}", "field 'num_hidden_layers' = 1025 is out of range [1, 1024]"},
        {"{\"num_hidden_layers\":2.5}", "field 'num_hidden_layers' must be an integer"},
        {"{\"vocab_size\":\"__DELETE__\"}", "field 'vocab_size' missing"},
        {"{\"vocab_size\":16777217}", "field 'vocab_size' = 16777217 is out of range [1, 16777216]"},
        {"{\"vocab_size\":\"100\"}", "field 'vocab_size' must be an integer"},
        {"{\"state_size\":0}", "field 'state_size' = 0 is out of range [1, 1024]"},
        {"{\"state_size\":1025}", "field 'state_size' = 1025 is out of range [1, 1024]"},
        {"{\"state_size\":\"16\"}", "field 'state_size' must be an integer"},
        {"{\"conv_kernel\":0}", "field 'conv_kernel' = 0 is out of range [1, 64]"},
        {"{\"conv_kernel\":65}", "field 'conv_kernel' = 65 is out of range [1, 64]"},
        {"{\"conv_kernel\":null}", "field 'conv_kernel' must be an integer"},
        {"{\"intermediate_size\":0}", "field 'intermediate_size' = 0 is out of range [1, 262144]"},
        {"{\"intermediate_size\":262145}", "field 'intermediate_size' = 262145 is out of range [1, 262144]"},
        {"{\"intermediate_size\":\"x\"}", "field 'intermediate_size' must be an integer"},
        {"{\"intermediate_size\":null}", "field 'intermediate_size' must be an integer"},
        {"{\"expand\":0}", "field 'expand' = 0 is out of range [1, 64]"},
        {"{\"expand\":65}", "field 'expand' = 65 is out of range [1, 64]"},
        {"{\"expand\":1.5}", "field 'expand' must be an integer"},
        {"{\"hidden_size\":65536,\"expand\":8}", "expand * hidden_size = 524288 is too large"},
        {"{\"time_step_rank\":\"big\"}", "field 'time_step_rank' must be an integer or \"auto\""},
        {"{\"time_step_rank\":\"AUTO\"}", "field 'time_step_rank' must be an integer or \"auto\""},
        {"{\"time_step_rank\":0}", "field 'time_step_rank' = 0 is out of range [1, 262144]"},
        {"{\"time_step_rank\":-1}", "field 'time_step_rank' = -1 is out of range"},
        {"{\"time_step_rank\":2.5}", "field 'time_step_rank' must be an integer"},
        {"{\"time_step_rank\":null}", "field 'time_step_rank' must be an integer"},
        {"{\"time_step_rank\":[]}", "field 'time_step_rank' must be an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_error(cases[i].patch, FM_ERR_FORMAT, cases[i].msg);
}

static void test_eps_errors(void **state) {
    (void)state;
    const char *keys[] = {"layer_norm_epsilon", "mixer_rms_eps"};
    const char *bad[] = {"0", "-1e-5", "1.5", "\"1e-5\"", "null", "true"};
    char patch[128], msg[128];
    for (size_t k = 0; k < 2; k++)
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            snprintf(patch, sizeof patch, "{\"%s\":%s}", keys[k], bad[b]);
            snprintf(msg, sizeof msg, "field '%s' must be a number in (0, 1]", keys[k]);
            expect_error(patch, FM_ERR_FORMAT, msg);
        }
}

static void test_bool_errors(void **state) {
    (void)state;
    const char *keys[] = {"use_bias", "use_conv_bias", "residual_in_fp32", "tie_word_embeddings"};
    const char *bad[] = {"1", "0", "\"true\"", "null", "[]"};
    char patch[128], msg[128];
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            snprintf(patch, sizeof patch, "{\"%s\":%s}", keys[k], bad[b]);
            snprintf(msg, sizeof msg, "field '%s' must be true or false", keys[k]);
            expect_error(patch, FM_ERR_FORMAT, msg);
        }
}

static void test_token_id_errors(void **state) {
    (void)state;
    const char *keys[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
    const char *bad[] = {"-1", "1.5", "\"1\"", "[]", "{}", "16777217", "[-1]", "[\"x\"]", "true"};
    char patch[128], msg[128];
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            snprintf(patch, sizeof patch, "{\"%s\":%s}", keys[k], bad[b]);
            snprintf(msg, sizeof msg, "field '%s' must be a token id or null", keys[k]);
            expect_error(patch, FM_ERR_FORMAT, msg);
        }
}

/* Errors are reported in a fixed order: architecture first, then hidden_act, then the sizes. */
static void test_first_error_wins(void **state) {
    (void)state;
    expect_error("{\"model_type\":\"llama\",\"hidden_size\":\"__DELETE__\"}", FM_ERR_UNSUPPORTED, "model_type 'llama'");
    expect_error("{\"hidden_act\":\"gelu\",\"hidden_size\":\"__DELETE__\"}", FM_ERR_UNSUPPORTED, "hidden_act");
    expect_error("{\"hidden_size\":\"__DELETE__\",\"vocab_size\":\"__DELETE__\"}", FM_ERR_FORMAT,
                 "field 'hidden_size' missing");
}

/* config.c accepted bytes after the JSON object (cJSON_ParseWithLengthOpts without a trailing check),
   unlike safetensors.c, which refuses them. Python's json.load refuses them too. */
static void test_trailing_garbage(void **state) {
    (void)state;
    char buf[256];
    snprintf(buf, sizeof buf, "%s garbage", k_base);
    expect_error_text(buf, FM_ERR_FORMAT, "trailing");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_explicit_fields),
        cmocka_unit_test(test_time_step_rank_auto),
        cmocka_unit_test(test_time_step_rank_integer),
        cmocka_unit_test(test_intermediate_and_expand),
        cmocka_unit_test(test_falcon_mamba_7b_config),
        cmocka_unit_test(test_token_ids),
        cmocka_unit_test(test_model_type),
        cmocka_unit_test(test_architectures_fallback),
        cmocka_unit_test(test_length_is_respected),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_model_type_errors),
        cmocka_unit_test(test_hidden_act_errors),
        cmocka_unit_test(test_integer_field_errors),
        cmocka_unit_test(test_eps_errors),
        cmocka_unit_test(test_bool_errors),
        cmocka_unit_test(test_token_id_errors),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_trailing_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
