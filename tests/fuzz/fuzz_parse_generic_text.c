/*
 * fuzz_parse_generic_text.c — libFuzzer target: log lines in the shipped format
 * "generic-text" (rules/formats/generic-text.json) through tw_parser_parse.
 *
 * Input: raw log bytes, split on '\n' (see fuzz_parse.h for the checks).
 * Seeds: tests/fuzz/corpus/parse_generic_text/ (lines of testdata/formats/generic-text*.log).
 */
#include "fuzz_parse.h"

FUZZ_SHIPPED_FORMAT_TARGET("generic-text", 1)
