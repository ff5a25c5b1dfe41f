/*
 * state.c — see state.h.
 */
#include "state.h"
#include "jsonv.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tw_state_prepare_dir(const char *state_dir, tw_err_t *err)
{
    /* Create missing parents too: state_dir is often /var/lib/tokenwatch. */
    char *p = tw_xstrdup(state_dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            tw_err_set(err, "%s: cannot create directory: %s", p, strerror(errno));
            free(p);
            return -1;
        }
        *s = '/';
    }
    free(p);
    if (mkdir(state_dir, 0700) != 0 && errno != EEXIST)
        return tw_err_set(err, "%s: cannot create state directory: %s", state_dir,
                          strerror(errno));
    if (access(state_dir, W_OK | X_OK) != 0)
        return tw_err_set(err, "%s: state directory is not writable: %s", state_dir,
                          strerror(errno));
    return 0;
}

static void add_u64(cJSON *obj, const char *key, uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    cJSON_AddStringToObject(obj, key, buf);
}

static cJSON *stats_json(const tw_input_stats_t *s)
{
    cJSON *o = cJSON_CreateObject();
    add_u64(o, "lines", s->lines);
    add_u64(o, "checks", s->checks);
    add_u64(o, "rejected", s->rejected);
    cJSON *pe = cJSON_AddObjectToObject(o, "parse_errors");
    for (int r = 0; r < TW_PERR__COUNT; r++)
        add_u64(pe, tw_parse_error_name((tw_parse_error_t)r), s->parse_errors[r]);
    cJSON *sk = cJSON_AddObjectToObject(o, "skipped");
    for (int r = 0; r < TW_SKIPR__COUNT; r++)
        add_u64(sk, tw_skip_reason_name((tw_skip_reason_t)r), s->skipped[r]);
    cJSON *ro = cJSON_AddObjectToObject(o, "rotations");
    for (int k = 0; k < TW_ROTATE__COUNT; k++)
        add_u64(ro, tw_rotation_name((tw_rotation_t)k), s->rotations[k]);
    return o;
}

int tw_state_save(const char *state_dir, const tw_state_input_t *inputs, size_t n,
                  tw_err_t *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "version", TW_STATE_VERSION);
    cJSON *arr = cJSON_AddArrayToObject(root, "inputs");
    for (size_t i = 0; i < n; i++) {
        const tw_state_input_t *in = &inputs[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", in->name);
        cJSON_AddStringToObject(o, "path", in->path);
        cJSON *files = cJSON_AddArrayToObject(o, "files");
        for (size_t j = 0; j < in->npos; j++) {
            const tw_tail_pos_t *p = &in->pos[j];
            cJSON *f = cJSON_CreateObject();
            add_u64(f, "dev", p->dev);
            add_u64(f, "ino", p->ino);
            add_u64(f, "offset", p->offset);
            char hex[24];
            snprintf(hex, sizeof hex, "%016" PRIx64, p->hash);
            cJSON_AddStringToObject(f, "hash", hex);
            cJSON_AddNumberToObject(f, "hash_len", p->hash_len);
            cJSON_AddBoolToObject(f, "current", p->current);
            cJSON_AddItemToArray(files, f);
        }
        cJSON_AddItemToObject(o, "counters", stats_json(&in->stats));
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        tw_die("cJSON_Print failed while saving state");
    char *path = tw_path_join(state_dir, TW_STATE_OFFSETS_FILE);
    size_t len = strlen(text);
    text[len] = '\0';
    int rc = tw_write_file_atomic(path, text, len, 0600, err);
    free(path);
    cJSON_free(text);
    return rc;
}

/* Reads a decimal uint64 string member. */
static int get_u64(const tw_jv_t *jv, const cJSON *obj, const char *prefix,
                   const char *key, bool hex, uint64_t *out)
{
    char p[TW_JV_PATH_MAX];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        *out = 0;
        return 0;
    }
    const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
    /* Digits only: strtoull alone would take " -1", "+5" or "0x1f". */
    const char *digits = hex ? "0123456789abcdef" : "0123456789";
    bool ok = s && s[0] && s[strspn(s, digits)] == '\0';
    char *end = NULL;
    errno = 0;
    unsigned long long x = ok ? strtoull(s, &end, hex ? 16 : 10) : 0;
    if (!ok || *end != '\0' || errno != 0)
        return tw_jv_fail(jv, tw_jv_join(p, prefix, key),
                          hex ? "expected a hexadecimal string"
                              : "expected a decimal integer string");
    *out = (uint64_t)x;
    return 0;
}

static int load_named(const tw_jv_t *jv, const cJSON *o, const char *prefix,
                      const char *key, uint64_t *vals, int n, const char *(*name)(int))
{
    const cJSON *sub;
    char p[TW_JV_PATH_MAX];
    if (tw_jv_get_object(jv, o, prefix, key, NULL, &sub) != 0)
        return -1;
    if (!sub)
        return 0;
    tw_jv_join(p, prefix, key);
    for (int i = 0; i < n; i++)
        if (get_u64(jv, sub, p, name(i), false, &vals[i]) != 0)
            return -1;
    return 0;
}

static const char *perr_name(int i) { return tw_parse_error_name((tw_parse_error_t)i); }
static const char *skip_name(int i) { return tw_skip_reason_name((tw_skip_reason_t)i); }
static const char *rot_name(int i) { return tw_rotation_name((tw_rotation_t)i); }

static int load_input(const tw_jv_t *jv, const cJSON *o, const char *p,
                      tw_state_input_t *in)
{
    const char *name, *path;
    if (tw_jv_object(jv, o, p, NULL) != 0 ||
        tw_jv_string(jv, o, p, "name", true, NULL, &name) ||
        tw_jv_string(jv, o, p, "path", true, NULL, &path))
        return -1;
    in->name = tw_xstrdup(name);
    in->path = tw_xstrdup(path);
    char q[TW_JV_PATH_MAX], r[TW_JV_PATH_MAX];
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files");
    if (!cJSON_IsArray(files))
        return tw_jv_fail(jv, tw_jv_join(q, p, "files"), "expected an array");
    size_t j = 0;
    for (const cJSON *f = files->child; f; f = f->next, j++) {
        tw_jv_index(r, tw_jv_join(q, p, "files"), j);
        if (j >= TW_TAIL_MAX_FILES)
            return tw_jv_fail(jv, r, "expected at most %d files", TW_TAIL_MAX_FILES);
        tw_tail_pos_t *pos = &in->pos[j];
        long long hash_len;
        bool current;
        if (tw_jv_object(jv, f, r, NULL) != 0 || get_u64(jv, f, r, "dev", false, &pos->dev) ||
            get_u64(jv, f, r, "ino", false, &pos->ino) ||
            get_u64(jv, f, r, "offset", false, &pos->offset) ||
            get_u64(jv, f, r, "hash", true, &pos->hash) ||
            tw_jv_int(jv, f, r, "hash_len", 0, 1 << 20, 0, &hash_len) ||
            tw_jv_bool(jv, f, r, "current", false, &current))
            return -1;
        pos->hash_len = (uint32_t)hash_len;
        pos->current = current;
        in->npos = j + 1;
    }
    const cJSON *c;
    if (tw_jv_get_object(jv, o, p, "counters", NULL, &c) != 0)
        return -1;
    if (!c)
        return 0;
    tw_jv_join(q, p, "counters");
    tw_input_stats_t *s = &in->stats;
    if (get_u64(jv, c, q, "lines", false, &s->lines) ||
        get_u64(jv, c, q, "checks", false, &s->checks) ||
        get_u64(jv, c, q, "rejected", false, &s->rejected) ||
        load_named(jv, c, q, "parse_errors", s->parse_errors, TW_PERR__COUNT, perr_name) ||
        load_named(jv, c, q, "skipped", s->skipped, TW_SKIPR__COUNT, skip_name) ||
        load_named(jv, c, q, "rotations", s->rotations, TW_ROTATE__COUNT, rot_name))
        return -1;
    return 0;
}

int tw_state_load(const char *state_dir, tw_state_t **out, tw_err_t *err)
{
    tw_state_t *s = tw_xcalloc(1, sizeof *s);
    char *path = tw_path_join(state_dir, TW_STATE_OFFSETS_FILE);
    char *text = NULL;
    size_t len;
    cJSON *root = NULL;
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        free(path);
        *out = s;
        return 0;
    }
    tw_err_t why;
    tw_jv_t jv = {.file = path, .err = &why};
    int rc = -1;
    if (tw_read_file(path, &text, &len, &why) != 0 || tw_jv_parse(&jv, text, len, &root) != 0)
        goto done;
    long long version;
    if (tw_jv_object(&jv, root, "", NULL) != 0 ||
        tw_jv_int(&jv, root, "", "version", 0, 1000000, -1, &version) != 0)
        goto done;
    if (version != TW_STATE_VERSION) {
        tw_jv_fail(&jv, "version", "expected %d, got %lld (written by %s tokenwatch)",
                   TW_STATE_VERSION, version,
                   version > TW_STATE_VERSION ? "a newer" : "an unknown");
        goto done;
    }
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    if (!cJSON_IsArray(arr)) {
        tw_jv_fail(&jv, "inputs", "expected an array");
        goto done;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
    s->inputs = tw_xcalloc(n, sizeof *s->inputs);
    for (const cJSON *o = arr->child; o; o = o->next, i++) {
        char p[TW_JV_PATH_MAX];
        s->ninputs = i + 1;
        if (load_input(&jv, o, tw_jv_index(p, "inputs", i), &s->inputs[i]) != 0)
            goto done;
    }
    rc = 0;
done:
    if (rc != 0) {
        tw_err_set(err, "state file is unreadable or corrupt: %s (move it away to start "
                        "over, which re-reads inputs per their \"start\" setting)",
                   why.msg);
        tw_state_free(s);
        s = NULL;
    }
    cJSON_Delete(root);
    free(text);
    free(path);
    *out = s;
    return rc;
}

void tw_state_free(tw_state_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ninputs; i++) {
        free(s->inputs[i].name);
        free(s->inputs[i].path);
    }
    free(s->inputs);
    free(s);
}

const tw_state_input_t *tw_state_find(const tw_state_t *s, const char *name)
{
    for (size_t i = 0; s && i < s->ninputs; i++)
        if (s->inputs[i].name && strcmp(s->inputs[i].name, name) == 0)
            return &s->inputs[i];
    return NULL;
}
