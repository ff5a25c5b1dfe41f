/*
 * test_format.c — format loading, validation messages and the line parser.
 *
 *  - Golden fixtures: every line of every testdata/formats/NAME.log is parsed with the
 *    shipped format it names and compared with the matching line of the
 *    .expected file (layout in testdata/formats/README.md). Data-driven:
 *    new cases need no C.
 *  - Invalid format files (written to a temp dir): each error names the
 *    file and the JSON path of the mistake.
 *  - Custom formats exercising what the shipped ones do not (alternatives,
 *    numbers, filters on regex groups, syslog time, the PCRE2 interpreter).
 *  - Steady-state parsing calls malloc zero times (counted by interposing
 *    malloc; skipped under AddressSanitizer, which owns malloc there).
 *  - Parsers on several threads next to plain cJSON use on another.
 *
 * Source tree: $TW_SOURCE_DIR (default ".").
 */
#include "common.h"
#include "format.h"
#include "timeparse.h"
#include "tw_test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define TW_HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TW_HAVE_ASAN 1
#endif
#endif

/* 2027-01-01T00:00:00Z: "now" for every fixture line (README.md). */
#define FIXTURE_REF_NS 1798761600000000000LL

/* ------------------------------------------------------------------------ */
/* malloc counting (glibc; not under ASan)                                  */

#ifndef TW_HAVE_ASAN
extern void *__libc_malloc(size_t n);
static atomic_size_t malloc_calls;

void *malloc(size_t n)
{
    atomic_fetch_add_explicit(&malloc_calls, 1, memory_order_relaxed);
    return __libc_malloc(n);
}
#endif

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */

static const char *source_dir(void)
{
    const char *d = getenv("TW_SOURCE_DIR");
    return d && d[0] ? d : ".";
}

typedef struct lines {
    char *buf;
    char **p;
    size_t *n;
    size_t count;
} lines_t;

/* Splits a whole file on '\n', skipping empty lines (the caller of the
 * parser never passes blank lines). Lines keep embedded NUL bytes. */
static int read_lines(const char *path, lines_t *out)
{
    memset(out, 0, sizeof *out);
    size_t len;
    tw_err_t err;
    if (tw_read_file(path, &out->buf, &len, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    size_t cap = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(out->buf + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - out->buf) : len;
        if (end > i) {
            if (out->count == cap) {
                cap = cap ? cap * 2 : 64;
                out->p = tw_xrealloc(out->p, cap * sizeof *out->p);
                out->n = tw_xrealloc(out->n, cap * sizeof *out->n);
            }
            out->p[out->count] = out->buf + i;
            out->n[out->count] = end - i;
            out->count++;
        }
        i = end + 1;
    }
    return 0;
}

static void lines_free(lines_t *l)
{
    free(l->buf);
    free(l->p);
    free(l->n);
    memset(l, 0, sizeof *l);
}

/* The README's rendering: printable ASCII but '\\' as is, else \xHH. */
static char *render(const char *p, size_t n)
{
    char *out = tw_xmalloc(n * 4 + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out[k++] = (char)c;
        } else {
            static const char hex[] = "0123456789abcdef";
            out[k++] = '\\';
            out[k++] = 'x';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    out[k] = '\0';
    return out;
}

/* A parse on an exact-size heap copy, so ASan sees any read past the end. */
static tw_parse_status_t parse_copy(tw_parser_t *p, const char *line, size_t len,
                                    int64_t ref_ns, tw_event_t *ev, char **copy)
{
    free(*copy);
    *copy = tw_xmalloc(len ? len : 1);
    memcpy(*copy, line, len);
    return tw_parser_parse(p, *copy, len, ref_ns, ev);
}

static const char *status_name(tw_parse_status_t s)
{
    return s == TW_PARSE_OK ? "ok" : s == TW_PARSE_IGNORED ? "ignored" : "error";
}

/* Slice comparison. (tw_test.h's TW_CHECK_SLICE trips GCC 12's
 * -Wstringop-overread at -O1 and above through its "" fallback.) */
#define CHECK_SLICE(s, str) check_slice(__LINE__, #s, (s), (str))

static void check_slice(int line, const char *what, tw_slice_t s, const char *want)
{
    size_t n = strlen(want);
    bool ok = s.n == n && (n == 0 || memcmp(s.p, want, n) == 0);
    TW_CHECK(ok);
    if (!ok)
        fprintf(stderr, "  line %d: %s: expected \"%s\" got \"%.*s\"\n", line, what, want,
                (int)s.n, s.p ? s.p : "");
}

/* ------------------------------------------------------------------------ */
/* golden fixtures                                                          */

typedef struct cmp {
    const char *where;   /* "file.log:12" */
    bool ok;
} cmp_t;

static void mismatch(cmp_t *c, const char *what, const char *want, const char *got)
{
    c->ok = false;
    fprintf(stderr, "%s: %s: expected \"%.200s\" got \"%.200s\"\n", c->where, what,
            want ? want : "(none)", got ? got : "(none)");
}

/* Compares one optional/required string key of the expected object with a
 * slice. Absent in expected means the slice must be empty. */
static void cmp_slice(cmp_t *c, const cJSON *exp, const char *key, tw_slice_t s, bool required)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(exp, key);
    char *got = s.n ? render(s.p, s.n) : NULL;
    if (!v) {
        if (required) {
            c->ok = false;
            fprintf(stderr, "%s: fixture lacks required key \"%s\"\n", c->where, key);
        } else if (got) {
            mismatch(c, key, NULL, got);
        }
    } else if (!cJSON_IsString(v)) {
        c->ok = false;
        fprintf(stderr, "%s: fixture key \"%s\" must be a string\n", c->where, key);
    } else if (!got || strcmp(got, v->valuestring) != 0) {
        mismatch(c, key, v->valuestring, got);
    }
    free(got);
}

static void compare_event(cmp_t *c, const cJSON *exp, tw_parse_status_t st, const tw_event_t *ev)
{
    static const char *const keys[] = {"status", "token", "ip",     "time",  "time_ns", "rejected",
                                       "user",   "path",  "result", "error", "field"};
    for (const cJSON *k = exp->child; k; k = k->next) {
        bool known = false;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            known |= strcmp(k->string, keys[i]) == 0;
        if (!known) {
            c->ok = false;
            fprintf(stderr, "%s: fixture has unknown key \"%s\"\n", c->where, k->string);
        }
    }
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(exp, "status");
    if (!cJSON_IsString(status)) {
        c->ok = false;
        fprintf(stderr, "%s: fixture lacks \"status\"\n", c->where);
        return;
    }
    if (strcmp(status->valuestring, status_name(st)) != 0) {
        char got[64];
        snprintf(got, sizeof got, "%s%s%s", status_name(st), st == TW_PARSE_ERROR ? " " : "",
                 st == TW_PARSE_ERROR ? tw_parse_error_name(ev->error) : "");
        mismatch(c, "status", status->valuestring, got);
        return;
    }
    if (st == TW_PARSE_ERROR) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(exp, "error");
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(exp, "field");
        if (!cJSON_IsString(e) || strcmp(e->valuestring, tw_parse_error_name(ev->error)) != 0)
            mismatch(c, "error", cJSON_IsString(e) ? e->valuestring : NULL,
                     tw_parse_error_name(ev->error));
        const char *want_field = cJSON_IsString(f) ? f->valuestring : NULL;
        if ((want_field == NULL) != (ev->error_field == NULL) ||
            (want_field && strcmp(want_field, ev->error_field) != 0))
            mismatch(c, "field", want_field, ev->error_field);
        return;
    }
    if (st == TW_PARSE_IGNORED)
        return;

    cmp_slice(c, exp, "token", ev->token, true);
    cmp_slice(c, exp, "ip", ev->ip, true);
    cmp_slice(c, exp, "user", ev->user, false);
    cmp_slice(c, exp, "path", ev->path, false);
    cmp_slice(c, exp, "result", ev->result, false);

    char tbuf[32];
    tw_time_format_rfc3339(ev->time_ns, tbuf, sizeof tbuf);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(exp, "time");
    if (!cJSON_IsString(t) || strcmp(t->valuestring, tbuf) != 0)
        mismatch(c, "time", cJSON_IsString(t) ? t->valuestring : NULL, tbuf);
    const cJSON *tns = cJSON_GetObjectItemCaseSensitive(exp, "time_ns");
    if (tns) {
        char nbuf[32];
        snprintf(nbuf, sizeof nbuf, "%" PRId64, ev->time_ns);
        if (!cJSON_IsString(tns) || strcmp(tns->valuestring, nbuf) != 0)
            mismatch(c, "time_ns", cJSON_IsString(tns) ? tns->valuestring : NULL, nbuf);
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(exp, "rejected");
    if (!cJSON_IsBool(r) || cJSON_IsTrue(r) != ev->rejected)
        mismatch(c, "rejected", cJSON_IsBool(r) ? (cJSON_IsTrue(r) ? "true" : "false") : NULL,
                 ev->rejected ? "true" : "false");
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The shipped format a fixture file belongs to (README.md), or NULL. */
static const tw_format_t *fixture_format(const tw_formats_t *fs, const char *file)
{
    const tw_format_t *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < tw_formats_count(fs); i++) {
        const tw_format_t *f = tw_formats_at(fs, i);
        const char *name = tw_format_name(f);
        size_t n = strlen(name);
        if (strncmp(file, name, n) == 0 && file[n] == '.' && n > best_len) {
            best = f;
            best_len = n;
        }
    }
    return best;
}

static void run_fixture(const tw_format_t *f, const char *dir, const char *logname)
{
    char *log_path = tw_xasprintf("%s/%s", dir, logname);
    char *exp_path = tw_xasprintf("%s/%.*s.expected", dir, (int)(strlen(logname) - 4), logname);
    lines_t log, exp;
    int rl = read_lines(log_path, &log);
    int re = read_lines(exp_path, &exp);
    TW_CHECK(rl == 0 && re == 0);
    if (rl == 0 && re == 0) {
        if (log.count != exp.count)
            fprintf(stderr, "%s: %zu lines but %s has %zu\n", log_path, log.count, exp_path,
                    exp.count);
        TW_CHECK_INT(log.count, exp.count);
        TW_CHECK(log.count > 0);
        tw_parser_t *p = tw_parser_new(f);
        char *copy = NULL;
        size_t n = log.count < exp.count ? log.count : exp.count;
        for (size_t i = 0; i < n; i++) {
            char where[512];
            snprintf(where, sizeof where, "%s:%zu", logname, i + 1);
            cmp_t c = {.where = where, .ok = true};
            cJSON *e = cJSON_ParseWithLength(exp.p[i], exp.n[i]);
            if (!cJSON_IsObject(e)) {
                c.ok = false;
                fprintf(stderr, "%s: expected line %zu is not a JSON object\n", exp_path, i + 1);
            } else {
                tw_event_t ev;
                tw_parse_status_t st = parse_copy(p, log.p[i], log.n[i], FIXTURE_REF_NS, &ev, &copy);
                compare_event(&c, e, st, &ev);
            }
            cJSON_Delete(e);
            TW_CHECK(c.ok);
        }
        free(copy);
        tw_parser_free(p);
    }
    if (rl == 0)
        lines_free(&log);
    if (re == 0)
        lines_free(&exp);
    free(log_path);
    free(exp_path);
}

static tw_formats_t *load_shipped(void)
{
    char *dir = tw_xasprintf("%s/rules/formats", source_dir());
    tw_formats_t *fs = NULL;
    tw_err_t err = {{0}};
    int rc = tw_formats_load_dir(&fs, dir, &err);
    if (rc != 0)
        fprintf(stderr, "loading %s: %s\n", dir, err.msg);
    TW_CHECK_INT(rc, 0);
    free(dir);
    return fs;
}

static void test_golden(const tw_formats_t *fs)
{
    char *dir = tw_xasprintf("%s/testdata/formats", source_dir());
    DIR *d = opendir(dir);
    TW_CHECK(d != NULL);
    if (!d) {
        free(dir);
        return;
    }
    char **names = NULL;
    size_t n = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".log") == 0) {
            names = tw_xrealloc(names, (n + 1) * sizeof *names);
            names[n++] = tw_xstrdup(de->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_name);

    /* every shipped format has a fixture */
    for (size_t i = 0; i < tw_formats_count(fs); i++) {
        const char *name = tw_format_name(tw_formats_at(fs, i));
        bool found = false;
        for (size_t j = 0; j < n; j++) {
            size_t l = strlen(name);
            found |= strncmp(names[j], name, l) == 0 && strcmp(names[j] + l, ".log") == 0;
        }
        if (!found)
            fprintf(stderr, "format %s has no testdata/formats/%s.log\n", name, name);
        TW_CHECK(found);
    }
    for (size_t j = 0; j < n; j++) {
        const tw_format_t *f = fixture_format(fs, names[j]);
        if (!f)
            fprintf(stderr, "%s: no shipped format of that name\n", names[j]);
        TW_CHECK(f != NULL);
        if (f)
            run_fixture(f, dir, names[j]);
        free(names[j]);
    }
    free(names);
    free(dir);
}

static void test_shipped_set(const tw_formats_t *fs)
{
    TW_CHECK(tw_formats_count(fs) >= 3);
    static const char *const names[] = {"generic-json", "generic-text", "vault-audit"};
    for (size_t i = 0; i < 3; i++) {
        const tw_format_t *f = tw_formats_find(fs, names[i]);
        TW_CHECK(f != NULL);
        if (f)
            TW_CHECK_STR(tw_format_name(f), names[i]);
    }
    /* sorted by file name */
    TW_CHECK_STR(tw_format_name(tw_formats_at(fs, 0)), "generic-json");
    TW_CHECK(tw_formats_find(fs, "nope") == NULL);
    TW_CHECK(tw_formats_find(NULL, "generic-json") == NULL);
    TW_CHECK(tw_formats_at(fs, 999) == NULL);
    TW_CHECK_INT(tw_formats_count(NULL), 0);
    TW_CHECK_STR(tw_parse_error_name(TW_PERR_NO_MATCH), "no_match");
    TW_CHECK_STR(tw_parse_error_name(TW_PERR_INVALID_JSON), "invalid_json");
    TW_CHECK_STR(tw_parse_error_name(TW_PERR_MISSING_FIELD), "missing_field");
    TW_CHECK_STR(tw_parse_error_name(TW_PERR_BAD_TIME), "bad_time");
    TW_CHECK_STR(tw_parse_error_name(TW_PERR__COUNT), "unknown");
}

/* ------------------------------------------------------------------------ */
/* temp files                                                               */

static char tmpdir[64];

static char *write_tmp(const char *name, const char *text)
{
    char *path = tw_xasprintf("%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "w");
    TW_CHECK(fp != NULL);
    if (fp) {
        fputs(text, fp);
        fclose(fp);
    }
    return path;
}

static void rm_tmp(const char *name)
{
    char *path = tw_xasprintf("%s/%s", tmpdir, name);
    unlink(path);
    free(path);
}

/* ------------------------------------------------------------------------ */
/* invalid format files                                                     */

#define RE_OK "\"^(?<time>\\\\S+) (?<ip>\\\\S+) (?<token>\\\\S+) (?<result>\\\\S+)$\""
#define FIELDS_OK "\"fields\":{\"token\":\"t\",\"ip\":\"i\",\"time\":\"ts\"}"

typedef struct bad {
    const char *json;
    const char *want;   /* substring of the message after "FILE: " */
} bad_t;

static const bad_t bad_formats[] = {
    {"", "expected a JSON object (syntax error at line 1, column 1)"},
    {"{\"name\": \"x\",\n  \"type\": }", "syntax error at line 2, column 11"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK "} {}", "unexpected content after it"},
    {"[]", "$: expected an object"},
    {"\"json\"", "$: expected an object"},
    {"{\"type\":\"json\"," FIELDS_OK "}", "name: expected a string of 1-64 characters [A-Za-z0-9_.-], but it is missing"},
    {"{\"name\":42,\"type\":\"json\"," FIELDS_OK "}", "name: expected a string"},
    {"{\"name\":\"a b\",\"type\":\"json\"," FIELDS_OK "}", "name: expected a string of 1-64 characters"},
    {"{\"name\":\"\",\"type\":\"json\"," FIELDS_OK "}", "name: expected"},
    {"{\"name\":\"x/y\",\"type\":\"json\"," FIELDS_OK "}", "name: expected"},
    {"{\"name\":\"a123456789b123456789c123456789d123456789e123456789f123456789g1234\","
     "\"type\":\"json\"," FIELDS_OK "}",
     "name: expected a string of 1-64"},
    {"{\"name\":\"x\"," FIELDS_OK "}", "type: expected \"json\" or \"regex\", but it is missing"},
    {"{\"name\":\"x\",\"type\":\"xml\"," FIELDS_OK "}", "type: expected \"json\" or \"regex\""},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"fieldz\":{}}",
     "fieldz: unknown key (expected one of name, description, type, pattern, fields, "
     "time_format, rejected, filter)"},
    {"{\"name\":\"x\",\"name\":\"y\",\"type\":\"json\"," FIELDS_OK "}", "name: duplicate key"},
    {"{\"name\":\"x\",\"description\":1,\"type\":\"json\"," FIELDS_OK "}",
     "description: expected a string"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"time_format\":\"iso\"}",
     "time_format: expected one of \"auto\", \"rfc3339\""},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"time_format\":3}", "time_format: expected one of"},
    /* regex */
    {"{\"name\":\"x\",\"type\":\"regex\"}", "pattern: expected a PCRE2 pattern string, but it is missing"},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":\"\"}", "pattern: expected a non-empty string"},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":[\"a\"]}", "pattern: expected a non-empty string"},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":\"(?<token>\\\\S+) (?<ip>a\"}",
     "pattern: PCRE2 error at offset 21: missing closing parenthesis"},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":\"(?<time>a)(?<ip>b)(?<token>c)\"}",
     "pattern: expected named groups token, ip, time and result; missing (?<result>...)"},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":\"(?<time>a)(?<ip>b)(?<result>c)\"}",
     "missing (?<token>...)"},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":\"(?<time>a)(?<token>b)(?<result>c)\"}",
     "missing (?<ip>...)"},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":\"(?<Token>a)(?<ip>b)(?<time>c)(?<result>d)\"}",
     "missing (?<token>...)"},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":\"(?J)(?<token>a)(?<ip>b)(?<time>c)"
     "(?<result>d)|(?<token>e)\"}",
     "pattern: expected one named group (?<token>...); the name is used more than once"},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":\"(*UTF)(?<token>a)(?<ip>b)(?<time>c)"
     "(?<result>d)\"}",
     "pattern: PCRE2 error at offset"},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":" RE_OK "," FIELDS_OK "}",
     "fields: only allowed when type is \"json\""},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":" RE_OK ",\"rejected\":{\"field\":\"status\","
     "\"equals\":\"x\"}}",
     "rejected.field: expected the name of a group in pattern (there is no group \"status\")"},
    {"{\"name\":\"x\",\"type\":\"regex\",\"pattern\":" RE_OK ",\"filter\":{\"field\":\"path\","
     "\"equals\":\"x\"}}",
     "filter.field: expected the name of a group in pattern"},
    /* json fields */
    {"{\"name\":\"x\",\"type\":\"json\"}", "fields: expected an object mapping token, ip, time to dotted paths, but it is missing"},
    {"{\"name\":\"x\",\"type\":\"json\",\"pattern\":\"a\"," FIELDS_OK "}",
     "pattern: only allowed when type is \"regex\""},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":[]}", "fields: expected an object"},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":{\"token\":5,\"ip\":\"i\",\"time\":\"t\"}}",
     "fields.token: expected a string or an array of strings (dotted path)"},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":{\"token\":[],\"ip\":\"i\",\"time\":\"t\"}}",
     "fields.token: expected a string or an array of strings (dotted path); the array is empty"},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":{\"token\":[\"a\",3],\"ip\":\"i\",\"time\":\"t\"}}",
     "fields.token[1]: expected a string (dotted path)"},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":{\"token\":\"a..b\",\"ip\":\"i\",\"time\":\"t\"}}",
     "fields.token: expected a dotted path such as \"auth.token\" (got \"a..b\""},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":{\"token\":[\"a\",\".b\"],\"ip\":\"i\",\"time\":\"t\"}}",
     "fields.token[1]: expected a dotted path"},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":{\"token\":\"a\",\"ip\":\"i.\",\"time\":\"t\"}}",
     "fields.ip: expected a dotted path"},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":{\"token\":\"a\",\"ip\":\"i\",\"time\":\"\"}}",
     "fields.time: expected a dotted path"},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":{\"tokn\":\"a\",\"ip\":\"i\",\"time\":\"t\"}}",
     "fields.tokn: unknown key (expected one of token, ip, time, result, user, path)"},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":{\"token\":\"a\",\"ip\":\"i\"}}",
     "fields.time: expected a string or an array of strings (dotted path), but it is missing"},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":{\"ip\":\"i\",\"time\":\"t\"}}",
     "fields.token: expected"},
    {"{\"name\":\"x\",\"type\":\"json\",\"fields\":{\"token\":\"a\",\"ip\":\"i\",\"time\":\"t\","
     "\"user\":{\"path\":\"u\"}}}",
     "fields.user: expected a string or an array of strings (dotted path)"},
    /* rejected / filter */
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"rejected\":\"denied\"}",
     "rejected: expected an object with \"field\""},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"rejected\":{\"field\":\"r\"}}",
     "rejected: expected \"equals\" and/or \"contains\""},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"rejected\":{\"field\":\"r\",\"equals\":[]}}",
     "rejected.equals: expected a non-empty string or an array of non-empty strings; the array is empty"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"rejected\":{\"field\":\"r\",\"equals\":[\"\"]}}",
     "rejected.equals[0]: expected a non-empty string"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"rejected\":{\"field\":\"r\",\"equals\":[\"a\",401]}}",
     "rejected.equals[1]: expected a non-empty string"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"rejected\":{\"field\":\"r\",\"contains\":5}}",
     "rejected.contains: expected a non-empty string or an array"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"rejected\":{\"field\":\"r\",\"contains\":\"\"}}",
     "rejected.contains: expected a non-empty string"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"rejected\":{\"field\":7,\"equals\":\"a\"}}",
     "rejected.field: expected a non-empty string (a field name)"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"rejected\":{\"field\":\"a..b\",\"equals\":\"a\"}}",
     "rejected.field: expected a dotted path"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"rejected\":{\"field\":\"r\",\"equal\":\"a\"}}",
     "rejected.equal: unknown key (expected one of field, equals, contains)"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"rejected\":{\"field\":\"r\",\"equals\":\"a\","
     "\"equals\":\"b\"}}",
     "rejected.equals: duplicate key"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"filter\":{\"equals\":\"response\"}}",
     "filter.field: expected a non-empty string (a field name), but it is missing"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"filter\":{\"field\":\"type\",\"equals\":[1]}}",
     "filter.equals[0]: expected a non-empty string"},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"filter\":{\"field\":\"type\"}}",
     "filter: expected \"equals\" and/or \"contains\""},
    {"{\"name\":\"x\",\"type\":\"json\"," FIELDS_OK ",\"filter\":{\"field\":\"type\",\"equals\":\"a\","
     "\"regex\":\"b\"}}",
     "filter.regex: unknown key"},
};

static void test_invalid_formats(void)
{
    for (size_t i = 0; i < sizeof bad_formats / sizeof bad_formats[0]; i++) {
        char *path = write_tmp("bad.json", bad_formats[i].json);
        tw_format_t *f = (tw_format_t *)1;
        tw_err_t err = {{0}};
        int rc = tw_format_load_file(&f, path, &err);
        char *prefix = tw_xasprintf("%s: ", path);
        bool pass = rc == -1 && f == NULL && strncmp(err.msg, prefix, strlen(prefix)) == 0 &&
                    strstr(err.msg + strlen(prefix), bad_formats[i].want) != NULL;
        TW_CHECK(pass);
        if (!pass)
            fprintf(stderr, "  bad format %zu: rc=%d message \"%s\"\n    wanted \"%s\"\n", i, rc,
                    err.msg, bad_formats[i].want);
        if (rc == 0)
            tw_format_free(f);
        free(prefix);
        free(path);
    }
    rm_tmp("bad.json");

    /* missing file; NULL error buffer is allowed */
    tw_format_t *f = NULL;
    tw_err_t err = {{0}};
    char *missing = tw_xasprintf("%s/none.json", tmpdir);
    TW_CHECK_INT(tw_format_load_file(&f, missing, &err), -1);
    TW_CHECK(strstr(err.msg, "none.json") != NULL);
    TW_CHECK_INT(tw_format_load_file(&f, missing, NULL), -1);
    free(missing);
}

/* ------------------------------------------------------------------------ */
/* directories                                                              */

static void test_load_dir(void)
{
    static const char ok_a[] =
        "{\"name\":\"a\",\"type\":\"json\"," FIELDS_OK "}";
    static const char ok_b[] =
        "{\"name\":\"b\",\"type\":\"regex\",\"pattern\":" RE_OK "}";
    char *pa = write_tmp("20-a.json", ok_a);
    char *pb = write_tmp("10-b.json", ok_b);
    char *ph = write_tmp(".hidden.json", "not json");
    char *pt = write_tmp("notes.txt", "not json");
    tw_formats_t *fs = NULL;
    tw_err_t err = {{0}};
    TW_CHECK_INT(tw_formats_load_dir(&fs, tmpdir, &err), 0);
    TW_CHECK_INT(tw_formats_count(fs), 2);
    if (tw_formats_count(fs) == 2) {
        TW_CHECK_STR(tw_format_name(tw_formats_at(fs, 0)), "b");   /* 10-b.json first */
        TW_CHECK_STR(tw_format_name(tw_formats_at(fs, 1)), "a");
    }
    tw_formats_free(fs);

    /* duplicate names: the message names both files */
    char *pc = write_tmp("30-a-again.json", ok_a);
    fs = (tw_formats_t *)1;
    TW_CHECK_INT(tw_formats_load_dir(&fs, tmpdir, &err), -1);
    TW_CHECK(fs == NULL);
    TW_CHECK(strstr(err.msg, "30-a-again.json: name: expected a unique format name") != NULL);
    TW_CHECK(strstr(err.msg, "20-a.json") != NULL);

    /* one broken file fails the whole set, naming that file */
    rm_tmp("30-a-again.json");
    char *pd = write_tmp("40-broken.json", "{\"name\":\"d\",\"type\":\"json\",\"fields\":{}}");
    TW_CHECK_INT(tw_formats_load_dir(&fs, tmpdir, &err), -1);
    TW_CHECK(strstr(err.msg, "40-broken.json: fields.token: expected") != NULL);
    rm_tmp("40-broken.json");

    char *nodir = tw_xasprintf("%s/nodir", tmpdir);
    TW_CHECK_INT(tw_formats_load_dir(&fs, nodir, &err), -1);
    TW_CHECK(strstr(err.msg, "nodir") != NULL);
    tw_formats_free(NULL);
    tw_format_free(NULL);
    tw_parser_free(NULL);

    rm_tmp("20-a.json");
    rm_tmp("10-b.json");
    rm_tmp(".hidden.json");
    rm_tmp("notes.txt");
    free(pa);
    free(pb);
    free(pc);
    free(pd);
    free(ph);
    free(pt);
    free(nodir);
}

/* ------------------------------------------------------------------------ */
/* custom formats                                                           */

static tw_format_t *load_text(const char *json)
{
    char *path = write_tmp("custom.json", json);
    tw_format_t *f = NULL;
    tw_err_t err = {{0}};
    if (tw_format_load_file(&f, path, &err) != 0)
        fprintf(stderr, "custom format: %s\n", err.msg);
    TW_CHECK(f != NULL);
    rm_tmp("custom.json");
    free(path);
    return f;
}

static tw_parse_status_t parse_str(tw_parser_t *p, const char *line, tw_event_t *ev,
                                   char **copy)
{
    return parse_copy(p, line, strlen(line), FIXTURE_REF_NS, ev, copy);
}

static void test_custom_json(void)
{
    tw_format_t *f = load_text(
        "{\"name\":\"custom-json\",\"type\":\"json\",\n"
        " \"fields\":{\"token\":[\"a.t\",\"b.t\"],\"ip\":\"ip\",\"time\":\"ts\","
        "\"result\":\"outcome.ok\",\"user\":\"u\"},\n"
        " \"time_format\":\"epoch_ms\",\n"
        " \"rejected\":{\"field\":\"result\",\"equals\":\"false\"},\n"
        " \"filter\":{\"field\":\"kind\",\"contains\":[\"auth\"]}}");
    if (!f)
        return;
    tw_parser_t *p = tw_parser_new(f);
    tw_event_t ev;
    char *copy = NULL;

    TW_CHECK_INT(parse_str(p, "{\"kind\":\"authn\",\"a\":{\"t\":\"\"},\"b\":{\"t\":\"tok2\"},"
                              "\"ip\":\"10.0.0.1\",\"ts\":1795939073123,\"outcome\":{\"ok\":false}}",
                           &ev, &copy),
                 TW_PARSE_OK);
    CHECK_SLICE(ev.token, "tok2");
    CHECK_SLICE(ev.result, "false");
    TW_CHECK(ev.rejected);
    TW_CHECK_INT(ev.time_ns, 1795939073123000000LL);
    TW_CHECK_INT(ev.user.n, 0);
    TW_CHECK_INT(ev.path.n, 0);

    TW_CHECK_INT(parse_str(p, "{\"kind\":\"reauth\",\"a\":{\"t\":\"tok1\"},\"b\":{\"t\":\"tok2\"},"
                              "\"ip\":\"10.0.0.1\",\"ts\":\"1795939073123.5\",\"outcome\":{\"ok\":true},"
                              "\"u\":7}",
                           &ev, &copy),
                 TW_PARSE_OK);
    CHECK_SLICE(ev.token, "tok1");
    CHECK_SLICE(ev.user, "7");
    TW_CHECK(!ev.rejected);
    TW_CHECK_INT(ev.time_ns, 1795939073123500000LL);

    /* numbers as text: negatives, fractions, integers past 2^32 */
    TW_CHECK_INT(parse_str(p, "{\"kind\":\"auth\",\"a\":{\"t\":-12.25},\"ip\":4294967296,"
                              "\"ts\":1795939073123,\"u\":0.000000001}",
                           &ev, &copy),
                 TW_PARSE_OK);
    CHECK_SLICE(ev.token, "-12.25");
    CHECK_SLICE(ev.ip, "4294967296");
    CHECK_SLICE(ev.user, "0.000000001");
    TW_CHECK_INT(ev.result.n, 0);
    TW_CHECK(!ev.rejected);

    TW_CHECK_INT(parse_str(p, "{\"kind\":\"metrics\",\"a\":{\"t\":\"x\"}}", &ev, &copy),
                 TW_PARSE_IGNORED);
    TW_CHECK_INT(parse_str(p, "{\"a\":{\"t\":\"x\"}}", &ev, &copy), TW_PARSE_IGNORED);
    TW_CHECK_INT(parse_str(p, "{\"kind\":5}", &ev, &copy), TW_PARSE_IGNORED);
    /* filtering happens before required fields are looked at */
    TW_CHECK_INT(parse_str(p, "{\"kind\":\"auth\",\"ip\":\"1\",\"ts\":1}", &ev, &copy),
                 TW_PARSE_ERROR);
    TW_CHECK_INT(ev.error, TW_PERR_MISSING_FIELD);
    TW_CHECK_STR(ev.error_field, "token");
    /* epoch_ms is strict: an RFC 3339 string is a bad time here */
    TW_CHECK_INT(parse_str(p, "{\"kind\":\"auth\",\"a\":{\"t\":\"x\"},\"ip\":\"1\","
                              "\"ts\":\"2026-11-29T07:57:53Z\"}",
                           &ev, &copy),
                 TW_PARSE_ERROR);
    TW_CHECK_INT(ev.error, TW_PERR_BAD_TIME);
    TW_CHECK_STR(ev.error_field, "time");
    /* invalid JSON: error_field stays NULL */
    TW_CHECK_INT(parse_str(p, "{\"kind\":", &ev, &copy), TW_PARSE_ERROR);
    TW_CHECK_INT(ev.error, TW_PERR_INVALID_JSON);
    TW_CHECK(ev.error_field == NULL);
    TW_CHECK_INT(tw_parser_parse(p, "", 0, FIXTURE_REF_NS, &ev), TW_PARSE_ERROR);
    TW_CHECK_INT(ev.error, TW_PERR_INVALID_JSON);
    TW_CHECK_INT(tw_parser_parse(p, NULL, 0, FIXTURE_REF_NS, &ev), TW_PARSE_ERROR);
    TW_CHECK_INT(ev.error, TW_PERR_INVALID_JSON);

    free(copy);
    tw_parser_free(p);
    tw_format_free(f);

    /* rejected.field naming an event field that the format does not map is
     * a plain dotted path; one that it maps uses the mapped value */
    f = load_text("{\"name\":\"j2\",\"type\":\"json\",\"fields\":{\"token\":\"t\",\"ip\":\"i\","
                  "\"time\":\"ts\",\"result\":\"outcome.status\"},"
                  "\"rejected\":{\"field\":\"path\",\"contains\":[\"deny\",\"block\"]}}");
    if (f) {
        p = tw_parser_new(f);
        copy = NULL;
        TW_CHECK_INT(parse_str(p, "{\"t\":\"a\",\"i\":\"b\",\"ts\":\"2026-11-29T07:57:53Z\","
                                  "\"path\":\"/waf/blocked\"}",
                               &ev, &copy),
                     TW_PARSE_OK);
        TW_CHECK(ev.rejected);
        TW_CHECK_INT(ev.path.n, 0);
        TW_CHECK_INT(parse_str(p, "{\"t\":\"a\",\"i\":\"b\",\"ts\":\"2026-11-29T07:57:53Z\","
                                  "\"path\":\"/ok\",\"outcome\":{\"status\":\"deny\"}}",
                               &ev, &copy),
                     TW_PARSE_OK);
        TW_CHECK(!ev.rejected);
        CHECK_SLICE(ev.result, "deny");
        free(copy);
        tw_parser_free(p);
        tw_format_free(f);
    }
    f = load_text("{\"name\":\"j3\",\"type\":\"json\",\"fields\":{\"token\":\"t\",\"ip\":\"i\","
                  "\"time\":\"ts\",\"result\":\"outcome.status\"},"
                  "\"rejected\":{\"equals\":\"deny\"}}");
    if (f) {
        p = tw_parser_new(f);
        copy = NULL;
        TW_CHECK_INT(parse_str(p, "{\"t\":\"a\",\"i\":\"b\",\"ts\":\"2026-11-29T07:57:53Z\","
                                  "\"outcome\":{\"status\":\"deny\"}}",
                               &ev, &copy),
                     TW_PARSE_OK);
        TW_CHECK(ev.rejected);
        free(copy);
        tw_parser_free(p);
        tw_format_free(f);
    }
}

static void test_custom_regex(void)
{
    /* sshd: the key fingerprint is the token, syslog time, custom result */
    tw_format_t *f = load_text(
        "{\"name\":\"sshd-publickey\",\"type\":\"regex\",\n"
        " \"pattern\":\"^(?<time>\\\\w{3} [ \\\\d]\\\\d \\\\d\\\\d:\\\\d\\\\d:\\\\d\\\\d) (?<host>\\\\S+) "
        "sshd\\\\[\\\\d+\\\\]: (?<result>Accepted|Failed) publickey for (?<user>\\\\S+) from "
        "(?<ip>\\\\S+) port \\\\d+ ssh2: (?<token>\\\\S+ \\\\S+)$\",\n"
        " \"time_format\":\"syslog\",\n"
        " \"rejected\":{\"field\":\"result\",\"equals\":\"Failed\"},\n"
        " \"filter\":{\"field\":\"host\",\"equals\":[\"bastion\",\"bastion-2\"]}}");
    if (!f)
        return;
    tw_parser_t *p = tw_parser_new(f);
    tw_event_t ev;
    char *copy = NULL;
    TW_CHECK_INT(parse_str(p, "Nov 29 07:57:53 bastion sshd[4242]: Failed publickey for alice "
                              "from 203.0.113.7 port 51514 ssh2: ED25519 SHA256:Yk3v9Qf",
                           &ev, &copy),
                 TW_PARSE_OK);
    CHECK_SLICE(ev.token, "ED25519 SHA256:Yk3v9Qf");
    CHECK_SLICE(ev.user, "alice");
    CHECK_SLICE(ev.ip, "203.0.113.7");
    TW_CHECK(ev.rejected);
    TW_CHECK_INT(ev.time_ns, 1795939073000000000LL);
    /* Dec 31 read on Jan 1 of the reference year is last year's */
    TW_CHECK_INT(parse_str(p, "Dec 31 23:59:59 bastion-2 sshd[1]: Accepted publickey for bob "
                              "from 198.51.100.1 port 2 ssh2: RSA SHA256:abc",
                           &ev, &copy),
                 TW_PARSE_OK);
    TW_CHECK(!ev.rejected);
    TW_CHECK_INT(ev.time_ns, 1798761599000000000LL);
    TW_CHECK_INT(parse_str(p, "Nov 29 07:57:53 db1 sshd[4242]: Failed publickey for alice "
                              "from 203.0.113.7 port 51514 ssh2: ED25519 SHA256:Yk3v9Qf",
                           &ev, &copy),
                 TW_PARSE_IGNORED);
    TW_CHECK_INT(parse_str(p, "Feb 30 07:57:53 bastion sshd[4242]: Failed publickey for alice "
                              "from 203.0.113.7 port 51514 ssh2: ED25519 SHA256:Yk3v9Qf",
                           &ev, &copy),
                 TW_PARSE_ERROR);
    TW_CHECK_INT(ev.error, TW_PERR_BAD_TIME);
    TW_CHECK_INT(parse_str(p, "Nov 29 07:57:53 bastion sshd[4242]: Connection closed", &ev,
                           &copy),
                 TW_PARSE_ERROR);
    TW_CHECK_INT(ev.error, TW_PERR_NO_MATCH);
    TW_CHECK(ev.error_field == NULL);
    free(copy);
    tw_parser_free(p);
    tw_format_free(f);

    /* (*NO_JIT) forces the interpreter; an optional result group that did
     * not take part is a missing field */
    f = load_text("{\"name\":\"nojit\",\"type\":\"regex\",\"pattern\":\"(*NO_JIT)^(?<time>\\\\S+) "
                  "(?<ip>\\\\S+) (?<token>\\\\S+)(?: (?<result>\\\\S+))?$\","
                  "\"rejected\":{\"field\":\"result\",\"contains\":\"den\"}}");
    if (!f)
        return;
    p = tw_parser_new(f);
    copy = NULL;
    TW_CHECK_INT(parse_str(p, "2026-11-29T07:57:53Z 10.0.0.1 tok denied", &ev, &copy),
                 TW_PARSE_OK);
    TW_CHECK(ev.rejected);
    CHECK_SLICE(ev.token, "tok");
    TW_CHECK_INT(parse_str(p, "2026-11-29T07:57:53Z 10.0.0.1 tok", &ev, &copy), TW_PARSE_ERROR);
    TW_CHECK_INT(ev.error, TW_PERR_MISSING_FIELD);
    TW_CHECK_STR(ev.error_field, "result");
    /* bytes the interpreter must not choke on */
    static const char nul_line[] = "2026-11-29T07:57:53Z 10.0.0.1 t\0k\xff ok";
    TW_CHECK_INT(parse_copy(p, nul_line, sizeof nul_line - 1, FIXTURE_REF_NS, &ev, &copy),
                 TW_PARSE_OK);
    TW_CHECK_INT(ev.token.n, 4);
    TW_CHECK_INT(tw_parser_parse(p, NULL, 0, FIXTURE_REF_NS, &ev), TW_PARSE_ERROR);
    TW_CHECK_INT(ev.error, TW_PERR_NO_MATCH);
    free(copy);
    tw_parser_free(p);
    tw_format_free(f);

    /* Catastrophic backtracking: the match limit turns an exponential
     * search into a quick no_match, with the JIT and without it. */
    static const char *const evil[] = {
        "{\"name\":\"evil\",\"type\":\"regex\",\"pattern\":\"^(?<token>(?:a+)+)x"
        "(?<ip>)(?<time>)(?<result>)$\"}",
        "{\"name\":\"evil\",\"type\":\"regex\",\"pattern\":\"(*NO_JIT)^(?<token>(?:a+)+)x"
        "(?<ip>)(?<time>)(?<result>)$\"}",
    };
    for (size_t i = 0; i < 2; i++) {
        f = load_text(evil[i]);
        if (!f)
            continue;
        p = tw_parser_new(f);
        copy = NULL;
        TW_CHECK_INT(parse_str(p, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaay", &ev, &copy),
                     TW_PARSE_ERROR);
        TW_CHECK_INT(ev.error, TW_PERR_NO_MATCH);
        free(copy);
        tw_parser_free(p);
        tw_format_free(f);
    }
}

/* ------------------------------------------------------------------------ */
/* zero allocations in steady state                                         */

typedef struct corpus {
    const tw_format_t *f;
    lines_t lines;
} corpus_t;

static void test_no_malloc(const tw_formats_t *fs)
{
#ifdef TW_HAVE_ASAN
    (void)fs;
    printf("note: malloc counting skipped under AddressSanitizer\n");
#else
    static const char *const files[] = {"generic-text.log", "generic-text.malformed.log",
                                        "generic-json.log", "generic-json.malformed.log",
                                        "vault-audit.log",  "vault-audit.malformed.log"};
    enum { NFILES = sizeof files / sizeof files[0] };
    corpus_t c[NFILES];
    tw_parser_t *p[NFILES];
    for (size_t i = 0; i < NFILES; i++) {
        char *path = tw_xasprintf("%s/testdata/formats/%s", source_dir(), files[i]);
        c[i].f = fixture_format(fs, files[i]);
        TW_CHECK(c[i].f != NULL && read_lines(path, &c[i].lines) == 0);
        p[i] = c[i].f ? tw_parser_new(c[i].f) : NULL;
        free(path);
    }
    tw_format_t *nojit = load_text(
        "{\"name\":\"nojit\",\"type\":\"regex\",\"pattern\":\"(*NO_JIT)^(?<time>\\\\S+) "
        "ip=(?<ip>\\\\S+)(?: user=(?<user>\\\\S+))? token=(?<token>\\\\S+)(?: path=(?<path>\\\\S+))? "
        "result=(?<result>\\\\S+)$\"}");
    tw_parser_t *pn = nojit ? tw_parser_new(nojit) : NULL;

    size_t before = 0, lines = 0;
    tw_event_t ev;
    /* pass 0 and 1 warm up (arena growth, then its consolidation) */
    for (int pass = 0; pass < 4; pass++) {
        if (pass == 2)
            before = atomic_load(&malloc_calls);
        for (size_t i = 0; i < NFILES; i++) {
            if (!p[i])
                continue;
            for (size_t j = 0; j < c[i].lines.count; j++) {
                tw_parser_parse(p[i], c[i].lines.p[j], c[i].lines.n[j], FIXTURE_REF_NS, &ev);
                if (pn && i < 2)
                    tw_parser_parse(pn, c[i].lines.p[j], c[i].lines.n[j], FIXTURE_REF_NS, &ev);
                lines += pass >= 2;
            }
        }
    }
    size_t calls = atomic_load(&malloc_calls) - before;
    if (calls)
        fprintf(stderr, "%zu malloc calls while parsing %zu lines\n", calls, lines);
    TW_CHECK_INT(calls, 0);
    TW_CHECK(lines > 500);

    for (size_t i = 0; i < NFILES; i++) {
        tw_parser_free(p[i]);
        lines_free(&c[i].lines);
    }
    tw_parser_free(pn);
    tw_format_free(nojit);
#endif
}

/* ------------------------------------------------------------------------ */
/* threads                                                                  */

typedef struct worker {
    const tw_format_t *f;
    const lines_t *lines;
    long ok, errors, ignored, bad;
    long want_ok, want_errors, want_ignored;
} worker_t;

static void *parse_worker(void *arg)
{
    worker_t *w = arg;
    tw_parser_t *p = tw_parser_new(w->f);
    tw_event_t ev;
    for (int round = 0; round < 20; round++) {
        long ok = 0, er = 0, ig = 0;
        for (size_t j = 0; j < w->lines->count; j++) {
            tw_parse_status_t st =
                tw_parser_parse(p, w->lines->p[j], w->lines->n[j], FIXTURE_REF_NS, &ev);
            ok += st == TW_PARSE_OK;
            er += st == TW_PARSE_ERROR;
            ig += st == TW_PARSE_IGNORED;
        }
        if (round == 0) {
            w->ok = ok;
            w->errors = er;
            w->ignored = ig;
        } else if (ok != w->ok || er != w->errors || ig != w->ignored) {
            w->bad++;
        }
    }
    tw_parser_free(p);
    return NULL;
}

/* cJSON used the ordinary way on another thread while parsers run. */
static atomic_int plain_stop;
static void *plain_cjson(void *arg)
{
    long *bad = arg;
    while (!atomic_load(&plain_stop)) {
        cJSON *o = cJSON_Parse("{\"http\":{\"listen\":\"127.0.0.1:9477\",\"max\":64},"
                               "\"inputs\":[{\"name\":\"gw\"}]}");
        char *s = o ? cJSON_PrintUnformatted(o) : NULL;
        if (!s || strcmp(s, "{\"http\":{\"listen\":\"127.0.0.1:9477\",\"max\":64},"
                            "\"inputs\":[{\"name\":\"gw\"}]}") != 0)
            (*bad)++;
        cJSON_free(s);
        cJSON_Delete(o);
    }
    return NULL;
}

static void test_threads(const tw_formats_t *fs)
{
    static const char *const files[] = {"generic-json.log", "vault-audit.log",
                                        "generic-json.malformed.log", "generic-text.log"};
    enum { N = sizeof files / sizeof files[0] };
    lines_t lines[N];
    worker_t w[N];
    pthread_t t[N], tp;
    long plain_bad = 0;
    atomic_store(&plain_stop, 0);
    pthread_create(&tp, NULL, plain_cjson, &plain_bad);
    for (size_t i = 0; i < N; i++) {
        char *path = tw_xasprintf("%s/testdata/formats/%s", source_dir(), files[i]);
        memset(&w[i], 0, sizeof w[i]);
        w[i].f = fixture_format(fs, files[i]);
        w[i].lines = &lines[i];
        TW_CHECK(read_lines(path, &lines[i]) == 0 && w[i].f);
        free(path);
        pthread_create(&t[i], NULL, parse_worker, &w[i]);
    }
    for (size_t i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        TW_CHECK_INT(w[i].bad, 0);
        TW_CHECK(w[i].ok > 0);
        lines_free(&lines[i]);
    }
    atomic_store(&plain_stop, 1);
    pthread_join(tp, NULL);
    TW_CHECK_INT(plain_bad, 0);
}

/* Someone else resets cJSON's hooks: parsing must still be right and must
 * not leak (LeakSanitizer checks the latter). Runs last: it cannot undo. */
static void test_foreign_hooks(const tw_formats_t *fs)
{
    cJSON_InitHooks(NULL);
    tw_parser_t *p = tw_parser_new(tw_formats_find(fs, "generic-json"));
    tw_event_t ev;
    char *copy = NULL;
    for (int i = 0; i < 3; i++) {
        TW_CHECK_INT(parse_str(p, "{\"time\":\"2026-11-29T07:57:53Z\",\"client\":{\"ip\":\"1.2.3.4\"},"
                                  "\"auth\":{\"token\":\"at-x\"},\"result\":\"denied\"}",
                               &ev, &copy),
                     TW_PARSE_OK);
        CHECK_SLICE(ev.token, "at-x");
        TW_CHECK(ev.rejected);
    }
    TW_CHECK_INT(parse_str(p, "{\"a\":", &ev, &copy), TW_PARSE_ERROR);
    TW_CHECK_INT(parse_str(p, "[1]", &ev, &copy), TW_PARSE_ERROR);
    free(copy);
    tw_parser_free(p);
}

/* ---- the json fast path agrees with cJSON ------------------------------- */

static bool same_slice(tw_slice_t a, tw_slice_t b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* Parses one line with the fast path on and off; any difference in the
 * outcome is a failure. Returns 1 when they differ. */
static int fast_vs_slow(tw_parser_t *fast, tw_parser_t *slow, const char *line, size_t len)
{
    tw_event_t a, b;
    char *ca = NULL, *cb = NULL;
    tw_parse_status_t sa = parse_copy(fast, line, len, FIXTURE_REF_NS, &a, &ca);
    tw_parse_status_t sb = parse_copy(slow, line, len, FIXTURE_REF_NS, &b, &cb);
    bool same = sa == sb;
    if (same && sa == TW_PARSE_ERROR)
        same = a.error == b.error && a.error_field == b.error_field;
    if (same && sa == TW_PARSE_OK)
        same = same_slice(a.token, b.token) && same_slice(a.ip, b.ip) &&
               same_slice(a.user, b.user) && same_slice(a.path, b.path) &&
               same_slice(a.result, b.result) && a.time_ns == b.time_ns &&
               a.rejected == b.rejected;
    if (!same) {
        char *r = render(line, len);
        fprintf(stderr, "fast path differs from cJSON/PCRE2 (%s vs %s) on: %s\n", status_name(sa),
                status_name(sb), r);
        free(r);
    }
    free(ca);
    free(cb);
    return !same;
}

/* fast_vs_slow on every line of the fixtures files[] and on every input of
 * the fuzz corpora corpora[] (NULL-terminated lists); adds to *n. */
static int fast_vs_slow_files(tw_parser_t *fast, tw_parser_t *slow, const char *const *files,
                              const char *const *corpora, size_t *n)
{
    int bad = 0;
    for (size_t i = 0; files[i]; i++) {
        char *path = tw_xasprintf("%s/%s", source_dir(), files[i]);
        lines_t l;
        TW_CHECK(read_lines(path, &l) == 0);
        for (size_t j = 0; j < l.count; j++, (*n)++)
            bad += fast_vs_slow(fast, slow, l.p[j], l.n[j]);
        lines_free(&l);
        free(path);
    }
    for (size_t i = 0; corpora[i]; i++) {
        char *dir = tw_xasprintf("%s/tests/fuzz/corpus/%s", source_dir(), corpora[i]);
        DIR *d = opendir(dir);
        TW_CHECK(d != NULL);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char *path = tw_xasprintf("%s/%s", dir, de->d_name);
            char *text;
            size_t len;
            tw_err_t err;
            if (tw_read_file(path, &text, &len, &err) == 0) {
                (*n)++;
                bad += fast_vs_slow(fast, slow, text, len);
                /* and line by line, as the harness splits them */
                for (const char *q = text, *e = text + len; q < e;) {
                    const char *nl = memchr(q, '\n', (size_t)(e - q));
                    size_t ll = nl ? (size_t)(nl - q) : (size_t)(e - q);
                    bad += fast_vs_slow(fast, slow, q, ll);
                    (*n)++;
                    q += ll + 1;
                }
                free(text);
            }
            free(path);
        }
        if (d)
            closedir(d);
        free(dir);
    }
    return bad;
}

/* A parser of format name on the fast paths and one on cJSON/PCRE2 only;
 * false (a failed check) when the format is missing. */
static bool parser_pair(const tw_formats_t *fs, const char *name, tw_parser_t **fast,
                        tw_parser_t **slow)
{
    const tw_format_t *f = tw_formats_find(fs, name);
    TW_CHECK(f != NULL);
    if (!f)
        return false;
    *fast = tw_parser_new(f);
    *slow = tw_parser_new(f);
    tw_parser_fast(*slow, false);
    return true;
}

static void test_fast_json(const tw_formats_t *fs)
{
    static const char *const tricky[] = {
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"},\"result\":\"ok\"}",
        " \t{\"time\":\"2027-01-01T00:00:00Z\" , \"client\" : { \"ip\" : \"1.2.3.4\" } ,\"auth\":{\"token\":\"t\"}}\r\n ",
        /* duplicates: the first wins, also when it is not an object */
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.1.1.1\",\"ip\":\"2.2.2.2\"},\"auth\":{\"token\":\"t\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":\"x\",\"client\":{\"ip\":\"2.2.2.2\"},\"auth\":{\"token\":\"t\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.1.1.1\"},\"client\":{\"ip\":\"2.2.2.2\"},\"auth\":{\"token\":\"t\",\"token\":\"u\"}}",
        /* numbers, booleans, null, empty strings where fields are read */
        "{\"time\":1798761600,\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"},\"result\":401}",
        "{\"time\":1798761600.5e0,\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"},\"result\":-0}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":true,\"user\":false},\"result\":null}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"\"},\"auth\":{\"token\":\"t\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":[\"1.2.3.4\"]},\"auth\":{\"token\":{}}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"},\"x\":[1,-2.5,3e+7,0.0E-1,[],{},[[{\"a\":[null,true,false]}]]]}",
        /* escapes, control bytes, non-ASCII: cJSON decides */
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"a\\\"b\\u00e9\\n\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"a\tb\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"\xc3\xa9\xff\xfe\"}}",
        "{\"ti\\u006de\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"}}",
        "\xef\xbb\xbf{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"}}",
        "\x0b{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"}}\x0c",
        /* the same in longer strings (the scanner reads eight bytes at a time) */
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"abcdefghi\\\"jklmnopqrstuvwxyz\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"abcdefghijklmnopq\x01rstuvwxyz\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"abcdefgh\xc3\xa9ijklmnop\x7f\xffqrstuvwxyz\"}}",
        /* strings ending at and around the 16-byte block boundary */
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"abcdefghijklmno\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"abcdefghijklmnop\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"abcdefghijklmnopq\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"abcdefghijklmnop\\u0041\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"abcdefghijklmno\x1f\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"abcdefghijklmnop\x80\x9f\xa0\xe0\"}}",
        /* keys that share their first bytes with a configured name */
        "{\"tim\":\"x\",\"timex\":\"y\",\"time\":\"2027-01-01T00:00:00Z\",\"clientt\":{\"ip\":\"9.9.9.9\"},\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"}}",
        "{\"type\":\"response\",\"time\":\"2027-01-01T00:00:00Z\",\"auth\":{\"accessor\":\"a\"},\"request\":{\"remote_addresx\":\"9.9.9.9\",\"remote_addr\":\"8.8.8.8\",\"remote_address\":\"10.0.0.1\",\"remote_address_\":\"7.7.7.7\"}}",
        "{\"type\":\"response\",\"time\":\"2027-01-01T00:00:00Z\",\"auth\":{\"accessoR\":\"x\",\"accessor\":\"a\"},\"requesT\":{\"remote_address\":\"9.9.9.9\"},\"request\":{\"remote_address\":\"10.0.0.1\"}}",
        /* what strict JSON rejects and cJSON takes, or neither takes */
        "{\"time\":01,\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"}}",
        "{\"time\":1.,\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"},\"n\":-}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"},\"n\":+1}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"},\"n\":1e}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"},\"n\":1234567890123456789012345678901234567890123456789012345678901234567890}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"},}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"},\"a\":[1,]}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"}} x",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"}}{}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":tru}}",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":nulll}}",
        "{\"time\" \"x\"}", "{\"time\":}", "{,}", "{", "}", "{}", "[]", "\"x\"", "1", "",
        "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"},\"result\":\"rejected\"}",
        "{\"time\":\"not a time\",\"client\":{\"ip\":\"1.2.3.4\"},\"auth\":{\"token\":\"t\"}}",
        /* vault-audit shapes: filter, alternatives, "error" */
        "{\"type\":\"response\",\"time\":\"2027-01-01T00:00:00.123456Z\",\"auth\":{\"accessor\":\"hmac-sha256:ab\",\"display_name\":\"d\"},\"request\":{\"remote_address\":\"10.0.0.1\",\"path\":\"secret/x\"},\"error\":\"1 error occurred: permission denied\"}",
        "{\"type\":\"request\",\"time\":\"2027-01-01T00:00:00Z\",\"auth\":{\"accessor\":\"a\"},\"request\":{\"remote_address\":\"10.0.0.1\"}}",
        "{\"type\":\"response\",\"time\":\"2027-01-01T00:00:00Z\",\"auth\":{\"accessor\":\"\",\"client_token\":\"c\",\"entity_id\":\"e\"},\"request\":{\"remote_address\":\"10.0.0.1\",\"client_token_accessor\":\"r\"}}",
        "{\"type\":[\"response\"],\"time\":\"2027-01-01T00:00:00Z\",\"auth\":{\"accessor\":\"a\"},\"request\":{\"remote_address\":\"10.0.0.1\"}}",
    };
    static const char *const fmts[] = {"generic-json", "vault-audit"};
    /* NUL bytes (the fast path declines them; cJSON's path says invalid). */
    static const char nul_line[] = "{\"time\":\"2027-01-01T00:00:00Z\",\"client\":{\"ip\":"
                                   "\"1.2.3.4\"},\"auth\":{\"token\":\"abcdefghijk\0lmnop\"}}";
    int bad = 0;
    size_t n = 0;
    for (size_t k = 0; k < sizeof fmts / sizeof fmts[0]; k++) {
        tw_parser_t *fast, *slow;
        if (!parser_pair(fs, fmts[k], &fast, &slow))
            continue;
        for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++, n++)
            bad += fast_vs_slow(fast, slow, tricky[i], strlen(tricky[i]));
        for (size_t at = 0; at + 1 < sizeof nul_line; at++, n++) {
            char l[sizeof nul_line];
            memcpy(l, nul_line, sizeof l);
            l[at] = '\0';   /* one NUL at every offset, the real one too */
            bad += fast_vs_slow(fast, slow, l, sizeof l - 1);
            tw_event_t ev;
            char *copy = NULL;
            TW_CHECK_INT(parse_copy(fast, l, sizeof l - 1, FIXTURE_REF_NS, &ev, &copy),
                         TW_PARSE_ERROR);
            TW_CHECK_INT(ev.error, TW_PERR_INVALID_JSON);
            free(copy);
        }
        /* Every prefix of every tricky line (truncated input). */
        for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++)
            for (size_t len = 0; len < strlen(tricky[i]); len++, n++)
                bad += fast_vs_slow(fast, slow, tricky[i], len);
        /* The fixtures and the fuzz corpora, line by line. */
        const char *files[] = {"testdata/formats/generic-json.log",
                               "testdata/formats/generic-json.malformed.log",
                               "testdata/formats/vault-audit.log",
                               "testdata/formats/vault-audit.malformed.log", NULL};
        const char *corpora[] = {"parse_generic_json", "parse_vault_audit", NULL};
        bad += fast_vs_slow_files(fast, slow, files, corpora, &n);
        tw_parser_free(fast);
        tw_parser_free(slow);
    }
    TW_CHECK(n > 500);
    TW_CHECK_INT(bad, 0);
}

/* Lines of a few shapes with random values, one after another through one
 * parser, as a producer writes them: most are read by the previous line's
 * shape ("json shapes" in format.c), and every one gives what cJSON's path
 * gives. Some values break the shape's rules (an escape, a raw control
 * byte, a NUL, a quote) or its literals (a number, a key, whitespace), so
 * the line must go the long way; some lines are cut short. */
static uint64_t shape_rng = 0x9E3779B97F4A7C15ULL;
static uint32_t shape_next(void)
{
    shape_rng ^= shape_rng << 13;
    shape_rng ^= shape_rng >> 7;
    shape_rng ^= shape_rng << 17;
    return (uint32_t)(shape_rng >> 11);
}

/* A string value: mostly plain, sometimes with what the shape path must
 * not take (or may take: non-ASCII bytes, an empty value). */
static size_t shape_value(char *out, bool plain_only)
{
    static const char *const odd[] = {"\\\"", "\\\\", "\\u00e9", "\\n", "\x01", "\x1f", "\t",
                                      "\xc3\xa9", "\xff"};
    size_t n = 0, len = shape_next() % 40;
    if (!plain_only && shape_next() % 9 == 0)
        len = 0;
    for (size_t i = 0; i < len; i++) {
        if (!plain_only && shape_next() % 60 == 0) {
            const char *o = odd[shape_next() % (sizeof odd / sizeof odd[0])];
            memcpy(out + n, o, strlen(o));
            n += strlen(o);
        } else {
            out[n++] = "abcdefghijklmnopqrstuvwxyz0123456789-._:/ "[shape_next() % 42];
        }
    }
    return n;
}

/* Writes shape sh (see test_json_shapes) into out: each '$' is the next of
 * v[] (vn[] bytes), each '#' is digit, or a random digit when digit is 0.
 * Returns the length; *nv is how many of v[] it used. */
static size_t fill_shape(const char *sh, char *out, const char *const *v, const size_t *vn,
                         char digit, size_t *nv)
{
    size_t len = 0, vi = 0;
    for (const char *c = sh; *c; c++) {
        if (*c == '$') {
            memcpy(out + len, v[vi], vn[vi]);
            len += vn[vi++];
        } else if (*c == '#') {
            out[len++] = digit ? digit : (char)('0' + shape_next() % 10);
        } else {
            out[len++] = *c;
        }
    }
    *nv = vi;
    return len;
}

static void test_json_shapes(const tw_formats_t *fs)
{
    /* $: a string value, #: a number; the rest is the shape. */
    static const char *const shapes[] = {
        "{\"time\":\"2027-01-01T00:00:0#Z\",\"client\":{\"ip\":\"1.2.3.#\"},\"auth\":{\"token\":\"$\",\"user\":\"$\"},\"request\":{\"path\":\"$\"},\"result\":\"$\"}",
        "{\"time\":\"2027-01-01T00:00:0#Z\",\"n\":200,\"ok\":true,\"z\":null,\"client\":{\"ip\":\"1.2.3.#\",\"ip\":\"9.9.9.9\"},\"auth\":{\"token\":\"$\"},\"tags\":[\"$\",{\"k\":\"$\"}],\"result\":\"$\"}",
        " {\"time\" : \"2027-01-01T00:00:0#Z\", \"client\":{\"ip\":\"1.2.3.#\"}, \"auth\":{\"token\":\"$\"}, \"x\":\"$\", \"y\":\"$\", \"result\":\"$\"}\r",
        "{\"type\":\"response\",\"time\":\"2027-01-01T00:00:0#Z\",\"auth\":{\"accessor\":\"1.2.3.#\",\"display_name\":\"$\"},\"request\":{\"remote_address\":\"$\",\"path\":\"$\"},\"error\":\"$\"}",
    };
    static const char *const fmts[] = {"generic-json", "vault-audit"};
    int bad = 0;
    size_t lines = 0;
    for (size_t k = 0; k < sizeof fmts / sizeof fmts[0]; k++) {
        tw_parser_t *fast, *slow;
        if (!parser_pair(fs, fmts[k], &fast, &slow))
            continue;
        size_t shape = 0;
        for (int i = 0; i < 20000; i++, lines++) {
            if (shape_next() % 50 == 0)
                shape = shape_next() % (sizeof shapes / sizeof shapes[0]);
            bool plain = shape_next() % 4 != 0;
            char v[4][200];
            size_t vn[4];
            for (int j = 0; j < 4; j++) {
                vn[j] = shape_value(v[j], plain);
                v[j][vn[j]] = '\0';
            }
            char line[2048];
            const char *vp[4] = {v[0], v[1], v[2], v[3]};
            size_t vi;
            size_t len = fill_shape(shapes[shape], line, vp, vn, 0, &vi);
            TW_CHECK(vi == 4 && len < sizeof line);
            /* A NUL inside, a literal changed, the line cut short or longer. */
            uint32_t r = shape_next() % 100;
            if (r == 0)
                line[shape_next() % len] = '\0';
            else if (r == 1)
                line[shape_next() % len] = "{}[]:,\" 0tn"[shape_next() % 11];
            else if (r == 2)
                len = shape_next() % len;
            else if (r == 3)
                line[len++] = "}] x\n"[shape_next() % 5];   /* past the shape's end */
            bad += fast_vs_slow(fast, slow, line, len);
        }
        /* Most lines came by the shape; none through the general parser. */
        uint64_t hits = tw_parser_shape_hits(fast);
        TW_CHECK(hits > 20000 / 3);
        TW_CHECK_INT(tw_parser_shape_hits(slow), 0);
        fprintf(stderr, "%s: %llu of 20000 lines read by their shape\n", fmts[k],
                (unsigned long long)hits);
        /* Every byte of a shaped line changed in turn, each time on a new
         * parser that has just learned the shape from the line itself: a
         * changed literal byte must send the line the long way (so every
         * byte of every literal is compared), a changed value byte may
         * not. */
        const tw_format_t *f = tw_formats_find(fs, fmts[k]);
        static const char *const one_v[4] = {"v", "v", "v", "v"};
        static const size_t one_n[4] = {1, 1, 1, 1};
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            char base[512];
            size_t nv;
            size_t bn = fill_shape(shapes[si], base, one_v, one_n, '7', &nv);
            for (size_t at = 0; at < bn; at++) {
                for (int m = 0; m < 2; m++, lines++) {
                    tw_parser_t *fresh = tw_parser_new(f);
                    bad += fast_vs_slow(fresh, slow, base, bn);
                    bad += fast_vs_slow(fresh, slow, base, bn);
                    TW_CHECK_INT(tw_parser_shape_hits(fresh), 1);
                    char l[512];
                    memcpy(l, base, bn);
                    l[at] = m == 0 ? (l[at] == '"' ? '\'' : '"') : (char)(base[at] ^ 0x20);
                    bad += fast_vs_slow(fresh, slow, l, bn);
                    tw_parser_free(fresh);
                }
            }
        }
        /* Back-off: lines that never repeat the shape before them (the
         * shapes in turn) pause shapes for TPL_PAUSE (1,024) lines, after
         * which a run of one shape is read by it again. */
        tw_parser_t *mixed = tw_parser_new(f);
        size_t nshapes = sizeof shapes / sizeof shapes[0];
        for (size_t i = 0; i < 3000; i++, lines++) {
            bool one = i >= 200;
            const char *sh = shapes[one ? 0 : i % nshapes];
            char l[512], letter[1] = {(char)('a' + i % 26)};
            const char *vl[4] = {letter, letter, letter, letter};
            size_t nv;
            size_t ln = fill_shape(sh, l, vl, one_n, (char)('0' + i % 10), &nv);
            bad += fast_vs_slow(mixed, slow, l, ln);
            if (i == 199)
                TW_CHECK_INT(tw_parser_shape_hits(mixed), 0);
            if (i == 1000)
                TW_CHECK_INT(tw_parser_shape_hits(mixed), 0);   /* still paused */
        }
        TW_CHECK(tw_parser_shape_hits(mixed) > 1500);
        tw_parser_free(mixed);
        tw_parser_free(fast);
        tw_parser_free(slow);
    }
    TW_CHECK_INT(bad, 0);
    TW_CHECK(lines > 40000);
}

/* generic-text's pattern is in fieldpat's subset: its parser matches on
 * fieldpat, with the same results as PCRE2 on the fixtures and the corpus,
 * and on lines with every whitespace byte and optional fields moved. */
static void test_fast_regex(const tw_formats_t *fs)
{
    const tw_format_t *f = tw_formats_find(fs, "generic-text");
    TW_CHECK(f != NULL);
    if (!f)
        return;
    tw_parser_t *fast = tw_parser_new(f), *slow = tw_parser_new(f);
    TW_CHECK(tw_parser_fast(fast, true));
    TW_CHECK(!tw_parser_fast(slow, false));
    static const char *const tricky[] = {
        "2027-01-01T00:00:00Z ip=1.2.3.4 token=t result=ok",
        "2027-01-01T00:00:00Z ip=1.2.3.4 user=u token=t path=/p result=denied",
        "2027-01-01T00:00:00Z ip=1.2.3.4 path=/p token=t user=u result=ok",
        "2027-01-01T00:00:00Z ip=1.2.3.4 user=u user=v token=t result=ok",
        "2027-01-01T00:00:00Z ip=1.2.3.4 user=token=t token=t result=ok",
        "2027-01-01T00:00:00Z ip=1.2.3.4 user= token=t result=ok",
        "2027-01-01T00:00:00Z ip=1.2.3.4 token=t result=ok ",
        "2027-01-01T00:00:00Z ip=1.2.3.4 token=t result=ok\r",
        "2027-01-01T00:00:00Z ip=1.2.3.4 token=t result=ok\n",
        "2027-01-01T00:00:00Z ip=1.2.3.4 token=t\tresult=ok",
        "2027-01-01T00:00:00Z  ip=1.2.3.4 token=t result=ok",
        "2027-01-01T00:00:00Z ip=1.2.3.4\vtoken=t result=ok",
        "2027-01-01T00:00:00Z ip=1.2.3.4 token=t\x85\xa0 result=ok",
        "2027-01-01T00:00:00Z ip=1.2.3.4 token=t path=result=ok result=ok",
        "2027-01-01T00:00:00Z ip=1.2.3.4 token=t path= result=ok",
        "ip=1.2.3.4 token=t result=ok",
        " ip=1.2.3.4 token=t result=ok",
        "",
    };
    size_t n = 0;
    int bad = 0;
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++, n++)
        bad += fast_vs_slow(fast, slow, tricky[i], strlen(tricky[i]));
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++)
        for (size_t len = 0; len < strlen(tricky[i]); len++, n++)
            bad += fast_vs_slow(fast, slow, tricky[i], len);
    const char *files[] = {"testdata/formats/generic-text.log",
                           "testdata/formats/generic-text.malformed.log", NULL};
    const char *corpora[] = {"parse_generic_text", NULL};
    bad += fast_vs_slow_files(fast, slow, files, corpora, &n);
    TW_CHECK(n > 300);
    TW_CHECK_INT(bad, 0);
    tw_parser_free(fast);
    tw_parser_free(slow);

    /* Outside the subset, there is no fast path to turn on. */
    tw_format_t *g = load_text("{\"name\":\"pcre\",\"type\":\"regex\",\"pattern\":"
                               "\"^(?<time>\\\\S+) (?<ip>[0-9.]+) (?<token>\\\\S+) "
                               "(?<result>\\\\S+)$\"}");
    if (g) {
        tw_parser_t *p = tw_parser_new(g);
        TW_CHECK(!tw_parser_fast(p, true));
        tw_parser_free(p);
        tw_format_free(g);
    }
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tw_test_format.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    tw_formats_t *fs = load_shipped();
    if (fs) {
        test_shipped_set(fs);
        test_golden(fs);
    }
    test_invalid_formats();
    test_load_dir();
    test_custom_json();
    test_custom_regex();
    if (fs) {
        test_no_malloc(fs);
        test_threads(fs);
        test_foreign_hooks(fs);
        test_fast_json(fs);
        test_json_shapes(fs);
        test_fast_regex(fs);
    }
    tw_formats_free(fs);
    rmdir(tmpdir);
    return tw_test_done();
}
