/*
 * fuzz_parse_generic_text.c — libFuzzer target: log lines in the shipped format
 * "generic-text" (rules/formats/generic-text.json) through tw_parser_parse.
 *
 * Input: raw log bytes, split on '\n' (see fuzz_parse.h for the checks).
 * Seeds: tests/fuzz/corpus/parse_generic_text/ (lines of testdata/formats/generic-text*.log).
 */
#include "fuzz_parse.h"

static tw_format_t *fmt;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char path[1024];
    tw_err_t err;
    snprintf(path, sizeof path, "%s/rules/formats/generic-text.json", fuzz_source_dir());
    FUZZ_SETUP(tw_format_load_file(&fmt, path, &err) == 0, "%s (set TW_SOURCE_DIR)", err.msg);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parse_lines(fmt, 1, data, size);
    return 0;
}
