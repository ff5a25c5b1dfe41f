/*
 * jsonv.c — see jsonv.h.
 */
#include "jsonv.h"

#include <stdlib.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

const char *tw_jv_join(char *buf, const char *prefix, const char *key)
{
    if (prefix && prefix[0])
        snprintf(buf, TW_JV_PATH_MAX, "%s.%s", prefix, key);
    else
        snprintf(buf, TW_JV_PATH_MAX, "%s", key);
    return buf;
}

const char *tw_jv_index(char *buf, const char *prefix, size_t i)
{
    snprintf(buf, TW_JV_PATH_MAX, "%s[%zu]", prefix ? prefix : "", i);
    return buf;
}

int tw_jv_fail(const tw_jv_t *jv, const char *path, const char *fmt, ...)
{
    char what[TW_ERR_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (path && path[0])
        return tw_err_set(jv->err, "%s: %s: %s", jv->file, path, what);
    return tw_err_set(jv->err, "%s: %s", jv->file, what);
}

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsObject(v))
        return "an object";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNull(v))
        return "null";
    return "an invalid value";
}

int tw_jv_object(const tw_jv_t *jv, const cJSON *v, const char *path,
                 const char *const *allowed)
{
    if (!cJSON_IsObject(v))
        return tw_jv_fail(jv, path, "expected an object, got %s", type_name(v));
    if (!allowed)
        return 0;
    for (const cJSON *c = v->child; c; c = c->next) {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, c->string) == 0)
                ok = true;
        if (!ok) {
            char p[TW_JV_PATH_MAX];
            char known[512];
            size_t n = 0;
            known[0] = '\0';
            for (const char *const *a = allowed; *a && n < sizeof known; a++)
                n += (size_t)snprintf(known + n, sizeof known - n, "%s%s",
                                      n ? ", " : "", *a);
            return tw_jv_fail(jv, tw_jv_join(p, path, c->string),
                              "unknown key (expected one of: %s)", known);
        }
        /* Duplicate keys would make the effective value ambiguous. */
        for (const cJSON *d = c->next; d; d = d->next)
            if (strcmp(d->string, c->string) == 0) {
                char p[TW_JV_PATH_MAX];
                return tw_jv_fail(jv, tw_jv_join(p, path, c->string),
                                  "key appears twice (expected it once)");
            }
    }
    return 0;
}

int tw_jv_get_object(const tw_jv_t *jv, const cJSON *obj, const char *prefix,
                     const char *key, const char *const *allowed, const cJSON **out)
{
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return 0;
    char p[TW_JV_PATH_MAX];
    if (tw_jv_object(jv, v, tw_jv_join(p, prefix, key), allowed) != 0)
        return -1;
    *out = v;
    return 0;
}

int tw_jv_string(const tw_jv_t *jv, const cJSON *obj, const char *prefix,
                 const char *key, bool required, const char *def, const char **out)
{
    char p[TW_JV_PATH_MAX];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        if (required)
            return tw_jv_fail(jv, tw_jv_join(p, prefix, key),
                              "expected a string (this key is required)");
        *out = def;
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return tw_jv_fail(jv, tw_jv_join(p, prefix, key), "expected a string, got %s",
                          type_name(v));
    if (v->valuestring[0] == '\0')
        return tw_jv_fail(jv, tw_jv_join(p, prefix, key),
                          "expected a non-empty string");
    *out = v->valuestring;
    return 0;
}

int tw_jv_int(const tw_jv_t *jv, const cJSON *obj, const char *prefix, const char *key,
              long long min, long long max, long long def, long long *out)
{
    char p[TW_JV_PATH_MAX];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!cJSON_IsNumber(v) || d != floor(d) || d < (double)min || d > (double)max)
        return tw_jv_fail(jv, tw_jv_join(p, prefix, key),
                          "expected an integer from %lld to %lld", min, max);
    *out = (long long)d;
    return 0;
}

int tw_jv_bool(const tw_jv_t *jv, const cJSON *obj, const char *prefix,
               const char *key, bool def, bool *out)
{
    char p[TW_JV_PATH_MAX];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return tw_jv_fail(jv, tw_jv_join(p, prefix, key),
                          "expected true or false, got %s", type_name(v));
    *out = cJSON_IsTrue(v);
    return 0;
}

int tw_jv_number(const tw_jv_t *jv, const cJSON *obj, const char *prefix, const char *key,
                 double min, double max, double def, double *out)
{
    char p[TW_JV_PATH_MAX];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max))
        return tw_jv_fail(jv, tw_jv_join(p, prefix, key), "expected a number from %g to %g",
                          min, max);
    *out = v->valuedouble;
    return 0;
}

int tw_jv_strv(const tw_jv_t *jv, const cJSON *obj, const char *prefix, const char *key,
               size_t max, char ***out)
{
    char p[TW_JV_PATH_MAX];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v)
        return 0;
    tw_jv_join(p, prefix, key);
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 1 || (size_t)n > max)
        return tw_jv_fail(jv, p, "expected an array of 1 to %zu strings", max);
    char **r = tw_xcalloc((size_t)n + 1, sizeof *r);
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsString(e) || !e->valuestring[0]) {
            tw_strv_free(r);
            return tw_jv_fail(jv, p, "expected a non-empty string at index %d", i);
        }
        r[i] = tw_xstrdup(e->valuestring);
    }
    *out = r;
    return 0;
}

void tw_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

int tw_jv_parse(const tw_jv_t *jv, const char *text, size_t len, cJSON **out)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (root && end) {
        /* Only white space may follow the value. */
        while (end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
            end++;
        if (end < text + len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        /* cJSON reports where it stopped; translate that to line:column. */
        const char *at = end ? end : cJSON_GetErrorPtr();
        size_t line = 1, col = 1;
        if (at && at >= text && at <= text + len)
            for (const char *q = text; q < at; q++) {
                if (*q == '\n') {
                    line++;
                    col = 1;
                } else {
                    col++;
                }
            }
        return tw_jv_fail(jv, NULL, "invalid JSON near line %zu, column %zu", line, col);
    }
    *out = root;
    return 0;
}
