/*
 * fuzz_parse_vault_audit.c — libFuzzer target: log lines in the shipped format
 * "vault-audit" (rules/formats/vault-audit.json) through tw_parser_parse.
 *
 * Input: raw log bytes, split on '\n' (see fuzz_parse.h for the checks).
 * Seeds: tests/fuzz/corpus/parse_vault_audit/ (lines of testdata/formats/vault-audit*.log).
 */
#include "fuzz_parse.h"

FUZZ_SHIPPED_FORMAT_TARGET("vault-audit", 0)
