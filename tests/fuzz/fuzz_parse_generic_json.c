/*
 * fuzz_parse_generic_json.c — libFuzzer target: log lines in the shipped format
 * "generic-json" (rules/formats/generic-json.json) through tw_parser_parse.
 *
 * Input: raw log bytes, split on '\n' (see fuzz_parse.h for the checks).
 * Seeds: tests/fuzz/corpus/parse_generic_json/ (lines of testdata/formats/generic-json*.log).
 */
#include "fuzz_parse.h"

FUZZ_SHIPPED_FORMAT_TARGET("generic-json", 0)
