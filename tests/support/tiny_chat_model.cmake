# tiny_chat_model.cmake - the tiny chat model that the examples' and the Python binding's tests run on:
# the make_tiny_chat_model program and a ctest fixture "fm_tiny_chat_model" that writes the model into
# ${FM_TINY_CHAT_MODEL} (in the build tree) before any test that lists it in FIXTURES_REQUIRED.
# Included by examples/examples.cmake.txt and bindings/python/tests.cmake.txt; defined once.
include_guard(GLOBAL)

set(FM_TINY_CHAT_MODEL ${CMAKE_BINARY_DIR}/tiny_chat_model CACHE INTERNAL "directory of the tiny chat test model")

add_executable(make_tiny_chat_model
  ${PROJECT_SOURCE_DIR}/tests/support/make_tiny_chat_model.c
  ${PROJECT_SOURCE_DIR}/tests/support/tiny_model.c
  ${PROJECT_SOURCE_DIR}/tests/support/test_util.c)
target_include_directories(make_tiny_chat_model PRIVATE ${PROJECT_SOURCE_DIR}/tests/support)
target_compile_definitions(make_tiny_chat_model PRIVATE
  FM_TINY_TOKENIZER_DIR="${PROJECT_SOURCE_DIR}/tests/data/tiny_tokenizer")
target_link_libraries(make_tiny_chat_model PRIVATE PkgConfig::CJSON m)

enable_testing()
add_test(NAME make_tiny_chat_model COMMAND make_tiny_chat_model ${FM_TINY_CHAT_MODEL})
set_tests_properties(make_tiny_chat_model PROPERTIES FIXTURES_SETUP fm_tiny_chat_model)
