/*
 * fuzz_format_file.c — libFuzzer target: format definitions
 * (rules/formats/NAME.json) through tw_format_load_file, and, when one loads,
 * log lines through a parser built from it.
 *
 * Input: the format file's bytes, then optionally one 0x1E byte (ASCII record
 * separator, which cannot appear in JSON outside strings) followed by log
 * lines split on '\n'. Everything before the first 0x1E is written to a
 * file in a private temp dir and loaded by path, as the daemon does.
 *
 * Checks: a failed load leaves *out NULL and an error message that names
 * the file (format.h: "FILE: JSON.PATH: expected ..."); a loaded format has
 * a name of 1-64 [A-Za-z0-9_.-] and parses lines under the same checks as
 * the shipped formats (fuzz_parse.h) — which reaches parser paths the
 * shipped formats do not (filters and rejections on any dotted path,
 * (*NO_JIT) patterns, numbers and booleans as fields, shared path heads).
 */
#include "fuzz_parse.h"

#include <cjson/cJSON.h>

#define SEPARATOR 0x1e

static char path[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(path, sizeof path, "%s/format.json", fuzz_tmpdir());
    return 0;
}

/* 1 for "type": "regex", 0 for json, -1 when the file says neither. */
static int format_kind(const char *text, size_t n)
{
    int kind = -1;
    cJSON *root = cJSON_ParseWithLength(text, n);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (cJSON_IsString(type))
        kind = strcmp(type->valuestring, "regex") == 0 ? 1
               : strcmp(type->valuestring, "json") == 0 ? 0
                                                         : -1;
    cJSON_Delete(root);
    return kind;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        LLVMFuzzerInitialize(NULL, NULL);
    const uint8_t *sep = memchr(data, SEPARATOR, size);
    size_t def_len = sep ? (size_t)(sep - data) : size;
    fuzz_write_file(path, data, def_len);

    tw_format_t *f = (tw_format_t *)1;
    tw_err_t err;
    err.msg[0] = '\0';
    if (tw_format_load_file(&f, path, &err) != 0) {
        FUZZ_CHECK(f == NULL);
        FUZZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
        FUZZ_CHECK(strncmp(err.msg, path, strlen(path)) == 0);
        FUZZ_CHECK(strlen(err.msg) > strlen(path) + 2);
        return 0;
    }
    FUZZ_CHECK(f != NULL);
    const char *name = tw_format_name(f);
    size_t nlen = strlen(name);
    FUZZ_CHECK(nlen >= 1 && nlen <= 64);
    FUZZ_CHECK(strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                            "0123456789_.-") == nlen);

    if (sep) {
        char *text = fuzz_strndup(data, def_len);
        int kind = format_kind(text, def_len);
        free(text);
        fuzz_parse_lines(f, kind, sep + 1, size - def_len - 1);
    }
    tw_format_free(f);
    return 0;
}
