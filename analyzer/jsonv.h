/*
 * jsonv.h — validation helpers for JSON configuration (cJSON trees).
 *
 * Every failure produces "FILE: JSON.PATH: expected ..." in the context's
 * error buffer, the message format STYLE.md §6 asks for. Paths are built as
 * "http.listen" or "inputs[1].format". An absent key yields the default; a
 * present key of the wrong type or out of range is an error (never a silent
 * default).
 */
#ifndef TW_JSONV_H
#define TW_JSONV_H

#include "common.h"

#include <cjson/cJSON.h>

typedef struct tw_jv {
    const char *file;
    tw_err_t *err;
} tw_jv_t;

#define TW_JV_PATH_MAX 256

/* Writes "prefix.key" (or "key" when prefix is empty) into buf. */
const char *tw_jv_join(char *buf, const char *prefix, const char *key);
/* Writes "prefix[i]" into buf. */
const char *tw_jv_index(char *buf, const char *prefix, size_t i);

/* Error with a formatted "what was expected" part. Always returns -1. */
int tw_jv_fail(const tw_jv_t *jv, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* v must be an object whose keys are all in allowed (NULL-terminated). */
int tw_jv_object(const tw_jv_t *jv, const cJSON *v, const char *path,
                 const char *const *allowed);

/* Optional object member: *out is NULL when absent. */
int tw_jv_get_object(const tw_jv_t *jv, const cJSON *obj, const char *prefix,
                     const char *key, const char *const *allowed, const cJSON **out);

/* String member; *out borrowed from the tree (def when absent and not
 * required). Empty strings are refused. */
int tw_jv_string(const tw_jv_t *jv, const cJSON *obj, const char *prefix,
                 const char *key, bool required, const char *def, const char **out);

/* Integer member in [min, max]. */
int tw_jv_int(const tw_jv_t *jv, const cJSON *obj, const char *prefix, const char *key,
              long long min, long long max, long long def, long long *out);

/* Number member in [min, max]. */
int tw_jv_number(const tw_jv_t *jv, const cJSON *obj, const char *prefix, const char *key,
                 double min, double max, double def, double *out);

/* Optional array of 1..max non-empty strings: *out is a fresh NULL-terminated
 * copy (free with tw_strv_free), NULL when absent. */
int tw_jv_strv(const tw_jv_t *jv, const cJSON *obj, const char *prefix, const char *key,
               size_t max, char ***out);
void tw_strv_free(char **v);   /* NULL-safe */

int tw_jv_bool(const tw_jv_t *jv, const cJSON *obj, const char *prefix,
               const char *key, bool def, bool *out);

/* Parses text as JSON; on syntax error reports the line and column. */
int tw_jv_parse(const tw_jv_t *jv, const char *text, size_t len, cJSON **out);

#endif
