/*
 * format.c — log format definitions (rules/formats/NAME.json) and the per-thread
 * line parser. See format.h for the file schema.
 *
 * Load time does every expensive or fallible step once: the format file is
 * validated completely (unknown keys are errors, so a typo cannot silently
 * disable a rule), PCRE2 patterns are compiled and JIT-compiled, named groups
 * are resolved to numbers and dotted JSON paths are split into segments. A
 * loaded tw_format_t is never written again, so threads may share it.
 *
 * The hot path (tw_parser_parse) allocates nothing in steady state:
 *  - regex: patterns in fieldpat.h's subset (literal text and \S+ fields,
 *    some optional: the usual log line, and the shipped generic-text) run
 *    on fieldpat's matcher, which finds the match PCRE2 would; all others
 *    run pcre2_jit_match (or pcre2_match when the JIT is unavailable) into
 *    match data, a match context and a JIT stack owned by the parser.
 *    Either way captures are returned as slices of the line.
 *  - json: lines in a strict subset of JSON (the usual case) are read by a
 *    one-pass scanner that walks a trie of the configured paths and
 *    returns slices of the line ("json fast path" below); a line shaped like
 *    the last one the scanner took (the same bytes but for its string
 *    values) is read by that shape instead, a few memcmps and string scans
 *    ("json shapes"); every other line goes to cJSON, so odd input is
 *    judged exactly as before.
 *  - json via cJSON: cJSON allocates through process-wide hooks (installed once) that
 *    serve a thread-local bump arena while a parser is parsing on that
 *    thread, and plain malloc/free otherwise, so every other cJSON user in
 *    the process (config, HTTP API, other threads) is unaffected. The arena
 *    is reset per line; if a line overflows it, extra chunks are chained and
 *    at the next reset replaced by one chunk of their combined size, so the
 *    arena grows geometrically to the largest line seen and stays there.
 *    The hook's free ignores pointers inside the current thread's arena
 *    (cJSON frees partial trees on syntax errors) and free()s the rest.
 *
 * Subjects are matched as bytes: patterns are compiled without UTF (and with
 * PCRE2_NEVER_UTF so that "(*UTF)" in a pattern cannot turn it on), so NUL
 * bytes and invalid UTF-8 in a line can never make a match fail with an
 * error, and the JIT never sees invalid UTF. A match limit bounds the work
 * a hostile line can cause with a backtracking-prone pattern.
 *
 * Semantics the header leaves open, decided here:
 *  - Matching ("rejected", "filter") is exact and case-sensitive; an absent
 *    or empty value never matches. "rejected.field" defaults to "result";
 *    without a "rejected" object no line is a rejection. For regex formats
 *    any named group of the pattern may be used, for JSON formats an event
 *    field the format maps (its value, alternatives included) or else any
 *    dotted path. "equals"/"contains" take a string or an array of strings.
 *  - The filter runs before anything else, so a filtered-out line is
 *    "ignored" even when it would also be malformed.
 *  - JSON values: strings as is, numbers rendered in fixed point (at most 9
 *    decimals, no exponent, locale-independent), true/false as text; null,
 *    objects, arrays and non-finite numbers count as absent. Path segments
 *    name object members only (no array indexes; keys containing '.' are
 *    unreachable). cJSON keeps the first of duplicate keys.
 *  - A raw NUL byte anywhere in a JSON line makes it invalid_json (cJSON
 *    would cut the string there); regex formats see NUL as an ordinary byte.
 *  - Regex formats must produce a non-empty result group (missing_field
 *    "result" otherwise); for JSON formats the result is optional.
 *  - A format file may carry a "description" string for humans.
 *
 * Caveats of cJSON's global state: cJSON_InitHooks is process-wide. If other
 * code replaces the hooks later, parses still work (a tree that did not come
 * from our arena is kept for the event's lifetime and deleted on the next
 * parse) but allocate again. cJSON also writes a global error position on
 * every parse; concurrent parses on several threads race on it, harmlessly
 * for us because we never read it.
 *
 * Nothing here logs; errors go to tw_err_t and never quote line contents.
 */
#include "format.h"

#include "fieldpat.h"
#include "timeparse.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ------------------------------------------------------------------------ */
/* Event fields                                                             */

enum { F_TOKEN, F_IP, F_TIME, F_RESULT, F_USER, F_PATH, F_COUNT };

static const char *const field_names[F_COUNT] = {
    [F_TOKEN] = "token", [F_IP] = "ip",     [F_TIME] = "time",
    [F_RESULT] = "result", [F_USER] = "user", [F_PATH] = "path",
};

static int field_index(const char *name)
{
    for (int i = 0; i < F_COUNT; i++)
        if (strcmp(name, field_names[i]) == 0)
            return i;
    return -1;
}

static const char *const perr_names[TW_PERR__COUNT] = {
    [TW_PERR_NO_MATCH] = "no_match",
    [TW_PERR_INVALID_JSON] = "invalid_json",
    [TW_PERR_MISSING_FIELD] = "missing_field",
    [TW_PERR_BAD_TIME] = "bad_time",
};

const char *tw_parse_error_name(tw_parse_error_t e)
{
    if ((unsigned)e < TW_PERR__COUNT)
        return perr_names[e];
    return "unknown";
}

/* Bounds the backtracking one line can cause (PCRE2's default is 10 M);
 * sane patterns on log lines need a few hundred steps. */
#define MATCH_LIMIT 1000000u
#define JIT_STACK_START (32 * 1024)
#define JIT_STACK_MAX (1024 * 1024)
#define ARENA_FIRST_CHUNK (32 * 1024)
#define FORMAT_NAME_MAX 64

/* ------------------------------------------------------------------------ */
/* Definitions                                                              */

/* A dotted path ("auth.token") split once at load time. */
typedef struct jpath {
    char *buf;       /* the path with '.' replaced by NUL; seg[] points here */
    char **seg;
    size_t nseg;
    size_t head;     /* index of seg[0] in the format's heads[] */
} jpath_t;

/* One field: alternatives tried in order, first present non-empty wins.
 * nalt == 0 means "not configured". */
typedef struct jfield {
    jpath_t *alt;
    size_t nalt;
} jfield_t;

typedef struct strlist {
    char **s;
    size_t *len;
    size_t n;
} strlist_t;

/* A rejected/filter test: where the value comes from, and what it is
 * compared with. */
typedef struct matcher {
    bool on;
    int field;             /* json: event field it reads (reuse that slice), or -1 */
    uint32_t group;        /* regex: capture group number */
    const jfield_t *src;   /* json: an event field of the format or &own */
    jfield_t own;          /* json: a dotted path that is not an event field */
    strlist_t equals;
    strlist_t contains;
} matcher_t;

typedef enum { KIND_REGEX, KIND_JSON } kind_t;

struct tw_format {
    char *name;
    kind_t kind;
    tw_time_format_t time_format;
    /* regex */
    pcre2_code *re;
    bool jit;
    tw_fieldpat_t *fields;     /* the same pattern for fieldpat, or NULL */
    uint32_t group[F_COUNT];   /* 0 = the pattern has no such group */
    /* json */
    jfield_t field[F_COUNT];
    char **heads;    /* distinct top-level members any path starts with */
    size_t nheads;
    matcher_t rejected;
    matcher_t filter;
};

struct tw_formats {
    tw_format_t **v;
    char **files;   /* file each format came from, for duplicate errors */
    size_t n;
};

static void jfield_free(jfield_t *f)
{
    for (size_t i = 0; i < f->nalt; i++) {
        free(f->alt[i].buf);
        free(f->alt[i].seg);
    }
    free(f->alt);
    f->alt = NULL;
    f->nalt = 0;
}

static void strlist_free(strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->s[i]);
    free(l->s);
    free(l->len);
    memset(l, 0, sizeof *l);
}

static void matcher_free(matcher_t *m)
{
    jfield_free(&m->own);
    strlist_free(&m->equals);
    strlist_free(&m->contains);
}

void tw_format_free(tw_format_t *f)
{
    if (!f)
        return;
    free(f->name);
    pcre2_code_free(f->re);
    tw_fieldpat_free(f->fields);
    for (int i = 0; i < F_COUNT; i++)
        jfield_free(&f->field[i]);
    matcher_free(&f->rejected);
    matcher_free(&f->filter);
    free(f->heads);   /* the strings belong to the paths */
    free(f);
}

const char *tw_format_name(const tw_format_t *f)
{
    return f->name;
}

/* ------------------------------------------------------------------------ */
/* cJSON hooks: a thread-local bump arena for log lines, malloc otherwise    */

typedef struct chunk {
    struct chunk *next;
    size_t cap;    /* usable bytes after the header */
} chunk_t;

/* The arena only ever serves cJSON while it parses, and cJSON allocates
 * nothing there but cJSON nodes and char strings: their alignment is all
 * that is needed (8, where malloc's 16 would waste a quarter of the
 * arena on short strings). */
#define ARENA_ALIGN (alignof(cJSON))
#define CHUNK_HDR ((sizeof(chunk_t) + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1))

typedef struct arena {
    chunk_t *head;        /* chunk being filled; overflow chunks chain behind it */
    unsigned char *cur;   /* next free byte of head */
    unsigned char *end;   /* one past the last byte of head */
} arena_t;

/* The arena of the parser currently inside cJSON on this thread, or NULL. */
static _Thread_local arena_t *tl_arena;

static unsigned char *chunk_data(chunk_t *c)
{
    return (unsigned char *)c + CHUNK_HDR;
}

static void arena_use(arena_t *a, chunk_t *c)
{
    a->head = c;
    a->cur = chunk_data(c);
    a->end = a->cur + c->cap;
}

static chunk_t *chunk_new(size_t cap, chunk_t *next)
{
    chunk_t *c = tw_xmalloc(CHUNK_HDR + cap);
    c->next = next;
    c->cap = cap;
    return c;
}

static void arena_init(arena_t *a, size_t cap)
{
    arena_use(a, chunk_new(cap, NULL));
}

/* Out of line so that the per-allocation fast path in hook_malloc stays a
 * leaf function with no register saves. n is already rounded. */
__attribute__((noinline)) static void *arena_grow(arena_t *a, size_t n)
{
    size_t cap = a->head->cap * 2;
    while (cap < n)
        cap *= 2;
    arena_use(a, chunk_new(cap, a->head));
    void *p = a->cur;
    a->cur += n;
    return p;
}

static bool arena_owns(const arena_t *a, const void *p)
{
    uintptr_t u = (uintptr_t)p;
    for (chunk_t *c = a->head; c; c = c->next) {
        uintptr_t lo = (uintptr_t)chunk_data(c);
        if (u >= lo && u < lo + c->cap)
            return true;
    }
    return false;
}

static void arena_reset(arena_t *a)
{
    if (a->head->next) {
        size_t total = 0;
        for (chunk_t *c = a->head, *next; c; c = next) {
            next = c->next;
            total += c->cap;
            free(c);
        }
        arena_init(a, total);
    } else {
        a->cur = chunk_data(a->head);
    }
}

static void arena_free(arena_t *a)
{
    for (chunk_t *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    memset(a, 0, sizeof *a);
}

static void *hook_malloc(size_t n)
{
    arena_t *a = tl_arena;
    if (!a)
        return malloc(n);
    if (n > SIZE_MAX / 4)
        return NULL;   /* cJSON treats this as a parse failure */
    n = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (n > (size_t)(a->end - a->cur))
        return arena_grow(a, n);
    void *p = a->cur;
    a->cur += n;
    return p;
}

static void hook_free(void *p)
{
    arena_t *a = tl_arena;
    if (!p || (a && arena_owns(a, p)))
        return;
    free(p);
}

static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

static void hooks_install(void)
{
    cJSON_Hooks h = {.malloc_fn = hook_malloc, .free_fn = hook_free};
    cJSON_InitHooks(&h);
}

/* Called from format loading (early, normally before other threads use
 * cJSON) and from parser creation. With no arena active the hooks behave
 * exactly like malloc/free, so installing them under a running cJSON user
 * changes nothing for it. */
static void hooks_ensure(void)
{
    pthread_once(&hooks_once, hooks_install);
}

/* ------------------------------------------------------------------------ */
/* Loading and validation                                                   */

typedef struct loader {
    const char *file;
    tw_err_t *err;
} loader_t;

static int fail_at(loader_t *ld, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(loader_t *ld, const char *path, const char *fmt, ...)
{
    char msg[TW_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tw_err_set(ld->err, "%s: %s: %s", ld->file, path, msg);
}

#define PATH_MAX_LEN 256

/* JSON paths for messages. A path longer than the buffer (only possible with
 * absurd keys) ends in "..." rather than being cut silently. */
static void path_fix(char *out, int n)
{
    if (n < 0 || n >= PATH_MAX_LEN)
        memcpy(out + PATH_MAX_LEN - 4, "...", 4);
}

static void path_key(char *out, const char *prefix, const char *key)
{
    path_fix(out, prefix[0] ? snprintf(out, PATH_MAX_LEN, "%s.%s", prefix, key)
                            : snprintf(out, PATH_MAX_LEN, "%s", key));
}

static void path_index(char *out, const char *prefix, size_t i)
{
    path_fix(out, snprintf(out, PATH_MAX_LEN, "%s[%zu]", prefix, i));
}

/* Every key of obj must be in allowed[] and appear once. */
static int check_keys(loader_t *ld, const cJSON *obj, const char *prefix,
                      const char *const *allowed, size_t nallowed)
{
    for (const cJSON *c = obj->child; c; c = c->next) {
        char path[PATH_MAX_LEN];
        path_key(path, prefix, c->string);
        bool known = false;
        for (size_t i = 0; i < nallowed && !known; i++)
            known = strcmp(c->string, allowed[i]) == 0;
        if (!known) {
            char list[256] = "";
            size_t pos = 0;
            for (size_t i = 0; i < nallowed && pos < sizeof list; i++)
                pos += (size_t)snprintf(list + pos, sizeof list - pos, "%s%s",
                                        i ? ", " : "", allowed[i]);
            return fail_at(ld, path, "unknown key (expected one of %s)", list);
        }
        for (const cJSON *e = obj->child; e != c; e = e->next)
            if (strcmp(e->string, c->string) == 0)
                return fail_at(ld, path, "duplicate key");
    }
    return 0;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > FORMAT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static int split_path(loader_t *ld, const char *path, const char *text, jpath_t *out)
{
    size_t n = strlen(text);
    bool empty_seg = n == 0 || text[0] == '.' || text[n - 1] == '.' || strstr(text, "..");
    if (empty_seg)
        return fail_at(ld, path,
                       "expected a dotted path such as \"auth.token\" (got \"%s\", which "
                       "has an empty segment)",
                       text);
    out->buf = tw_xstrdup(text);
    out->nseg = 1;
    for (size_t i = 0; i < n; i++)
        out->nseg += text[i] == '.';
    out->seg = tw_xcalloc(out->nseg, sizeof *out->seg);
    size_t k = 0;
    out->seg[k++] = out->buf;
    for (size_t i = 0; i < n; i++) {
        if (out->buf[i] == '.') {
            out->buf[i] = '\0';
            out->seg[k++] = out->buf + i + 1;
        }
    }
    return 0;
}

/* A string or a non-empty array of strings, as dotted paths. */
static int read_jfield(loader_t *ld, const cJSON *node, const char *path, jfield_t *out)
{
    static const char expected[] = "expected a string or an array of strings (dotted path)";
    if (cJSON_IsString(node)) {
        out->alt = tw_xcalloc(1, sizeof *out->alt);
        out->nalt = 1;
        return split_path(ld, path, node->valuestring, &out->alt[0]);
    }
    if (!cJSON_IsArray(node))
        return fail_at(ld, path, "%s", expected);
    size_t n = (size_t)cJSON_GetArraySize(node);
    if (n == 0)
        return fail_at(ld, path, "%s; the array is empty", expected);
    out->alt = tw_xcalloc(n, sizeof *out->alt);
    size_t i = 0;
    for (const cJSON *e = node->child; e; e = e->next, i++) {
        char epath[PATH_MAX_LEN];
        path_index(epath, path, i);
        if (!cJSON_IsString(e))
            return fail_at(ld, epath, "expected a string (dotted path)");
        out->nalt = i + 1;   /* so that jfield_free sees what was built */
        if (split_path(ld, epath, e->valuestring, &out->alt[i]) != 0)
            return -1;
    }
    return 0;
}

/* A non-empty string or a non-empty array of non-empty strings. */
static int read_strlist(loader_t *ld, const cJSON *node, const char *path, strlist_t *out)
{
    static const char expected[] = "expected a non-empty string or an array of non-empty strings";
    const cJSON *items = NULL;
    size_t n;
    if (cJSON_IsString(node)) {
        n = 1;
    } else if (cJSON_IsArray(node)) {
        n = (size_t)cJSON_GetArraySize(node);
        items = node->child;
        if (n == 0)
            return fail_at(ld, path, "%s; the array is empty", expected);
    } else {
        return fail_at(ld, path, "%s", expected);
    }
    out->s = tw_xcalloc(n, sizeof *out->s);
    out->len = tw_xcalloc(n, sizeof *out->len);
    for (size_t i = 0; i < n; i++) {
        const cJSON *e = items ? items : node;
        char epath[PATH_MAX_LEN];
        if (items)
            path_index(epath, path, i);
        else
            path_fix(epath, snprintf(epath, sizeof epath, "%s", path));
        if (!cJSON_IsString(e) || e->valuestring[0] == '\0')
            return fail_at(ld, epath, "%s", items ? "expected a non-empty string" : expected);
        out->s[i] = tw_xstrdup(e->valuestring);
        out->len[i] = strlen(e->valuestring);
        out->n = i + 1;
        if (items)
            items = items->next;
    }
    return 0;
}

static int read_matcher(loader_t *ld, tw_format_t *f, const cJSON *node, const char *path,
                        bool field_required, matcher_t *m)
{
    static const char *const keys[] = {"field", "equals", "contains"};
    char p[PATH_MAX_LEN];
    if (!cJSON_IsObject(node))
        return fail_at(ld, path, "expected an object with \"field\" and \"equals\" and/or "
                                 "\"contains\"");
    if (check_keys(ld, node, path, keys, 3) != 0)
        return -1;

    const cJSON *field = cJSON_GetObjectItemCaseSensitive(node, "field");
    const char *name = "result";
    m->field = -1;
    path_key(p, path, "field");
    if (field) {
        if (!cJSON_IsString(field) || field->valuestring[0] == '\0')
            return fail_at(ld, p, "expected a non-empty string (a field name)");
        name = field->valuestring;
    } else if (field_required) {
        return fail_at(ld, p, "expected a non-empty string (a field name), but it is missing");
    }

    if (f->kind == KIND_REGEX) {
        int g = pcre2_substring_number_from_name(f->re, (PCRE2_SPTR)name);
        if (g == PCRE2_ERROR_NOUNIQUESUBSTRING)
            return fail_at(ld, p, "expected a named group of pattern; \"%s\" is not unique",
                           name);
        if (g <= 0)
            return fail_at(ld, p, "expected the name of a group in pattern (there is no "
                                  "group \"%s\")",
                           name);
        m->group = (uint32_t)g;
    } else {
        int fi = field_index(name);
        if (fi >= 0 && f->field[fi].nalt > 0) {
            m->src = &f->field[fi];
            m->field = fi;
        } else {
            m->own.alt = tw_xcalloc(1, sizeof *m->own.alt);
            m->own.nalt = 1;
            if (split_path(ld, p, name, &m->own.alt[0]) != 0)
                return -1;
            m->src = &m->own;
        }
    }

    const cJSON *eq = cJSON_GetObjectItemCaseSensitive(node, "equals");
    const cJSON *co = cJSON_GetObjectItemCaseSensitive(node, "contains");
    if (!eq && !co)
        return fail_at(ld, path, "expected \"equals\" and/or \"contains\" (a string or an "
                                 "array of strings)");
    if (eq) {
        path_key(p, path, "equals");
        if (read_strlist(ld, eq, p, &m->equals) != 0)
            return -1;
    }
    if (co) {
        path_key(p, path, "contains");
        if (read_strlist(ld, co, p, &m->contains) != 0)
            return -1;
    }
    m->on = true;
    return 0;
}

static int compile_pattern(loader_t *ld, tw_format_t *f, const cJSON *node)
{
    if (!cJSON_IsString(node) || node->valuestring[0] == '\0')
        return fail_at(ld, "pattern", "expected a non-empty string (a PCRE2 pattern)");
    int code;
    PCRE2_SIZE offset;
    f->re = pcre2_compile((PCRE2_SPTR)node->valuestring, PCRE2_ZERO_TERMINATED,
                          PCRE2_NEVER_UTF, &code, &offset, NULL);
    if (!f->re) {
        PCRE2_UCHAR msg[256];
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", code);
        return fail_at(ld, "pattern", "PCRE2 error at offset %zu: %s", (size_t)offset,
                       (const char *)msg);
    }
    for (int i = 0; i < F_COUNT; i++) {
        int g = pcre2_substring_number_from_name(f->re, (PCRE2_SPTR)field_names[i]);
        bool required = i == F_TOKEN || i == F_IP || i == F_TIME || i == F_RESULT;
        if (g == PCRE2_ERROR_NOUNIQUESUBSTRING)
            return fail_at(ld, "pattern", "expected one named group (?<%s>...); the name "
                                          "is used more than once",
                           field_names[i]);
        if (g <= 0 && required)
            return fail_at(ld, "pattern", "expected named groups token, ip, time and "
                                          "result; missing (?<%s>...)",
                           field_names[i]);
        f->group[i] = g > 0 ? (uint32_t)g : 0;
    }
    /* A pattern may disable the JIT with (*NO_JIT), and some platforms have
     * none: only use pcre2_jit_match when JIT code really exists. */
    size_t jit_size = 0;
    f->jit = pcre2_jit_compile(f->re, PCRE2_JIT_COMPLETE) == 0 &&
             pcre2_pattern_info(f->re, PCRE2_INFO_JITSIZE, &jit_size) == 0 && jit_size > 0;
    /* fieldpat numbers groups as PCRE2 does; a count that differs would
     * mean it read the pattern otherwise, so it is not used then. */
    uint32_t caps = 0;
    f->fields = tw_fieldpat_compile(node->valuestring);
    if (f->fields && (pcre2_pattern_info(f->re, PCRE2_INFO_CAPTURECOUNT, &caps) != 0 ||
                      caps != tw_fieldpat_captures(f->fields))) {
        tw_fieldpat_free(f->fields);
        f->fields = NULL;
    }
    return 0;
}

static int read_fields(loader_t *ld, tw_format_t *f, const cJSON *node)
{
    if (!cJSON_IsObject(node))
        return fail_at(ld, "fields", "expected an object mapping token, ip, time (required) "
                                     "and result, user, path to dotted paths");
    if (check_keys(ld, node, "fields", field_names, F_COUNT) != 0)
        return -1;
    for (int i = 0; i < F_COUNT; i++) {
        char p[PATH_MAX_LEN];
        path_key(p, "fields", field_names[i]);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, field_names[i]);
        if (!v) {
            if (i == F_TOKEN || i == F_IP || i == F_TIME)
                return fail_at(ld, p, "expected a string or an array of strings (dotted "
                                      "path), but it is missing");
            continue;
        }
        if (read_jfield(ld, v, p, &f->field[i]) != 0)
            return -1;
    }
    return 0;
}

/* Paths often share their first member ("auth.accessor", "auth.entity_id"):
 * numbering the distinct ones lets a parse look each up once per line. */
static void assign_heads(tw_format_t *f, jfield_t *jf)
{
    for (size_t i = 0; i < jf->nalt; i++) {
        jpath_t *jp = &jf->alt[i];
        size_t h = 0;
        while (h < f->nheads && strcmp(f->heads[h], jp->seg[0]) != 0)
            h++;
        if (h == f->nheads) {
            f->heads = tw_xrealloc(f->heads, (f->nheads + 1) * sizeof *f->heads);
            f->heads[f->nheads++] = jp->seg[0];
        }
        jp->head = h;
    }
}

static int build_format(loader_t *ld, const cJSON *root, tw_format_t *f)
{
    static const char *const keys[] = {"name",        "description", "type",   "pattern",
                                       "fields",      "time_format", "rejected", "filter"};
    if (!cJSON_IsObject(root))
        return fail_at(ld, "$", "expected an object (a format definition)");
    if (check_keys(ld, root, "", keys, sizeof keys / sizeof keys[0]) != 0)
        return -1;

    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    if (!cJSON_IsString(name) || !valid_name(name->valuestring))
        return fail_at(ld, "name", "expected a string of 1-%d characters [A-Za-z0-9_.-]%s",
                       FORMAT_NAME_MAX, name ? "" : ", but it is missing");
    f->name = tw_xstrdup(name->valuestring);

    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(root, "description");
    if (desc && !cJSON_IsString(desc))
        return fail_at(ld, "description", "expected a string");

    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "regex") == 0)
        f->kind = KIND_REGEX;
    else if (cJSON_IsString(type) && strcmp(type->valuestring, "json") == 0)
        f->kind = KIND_JSON;
    else
        return fail_at(ld, "type", "expected \"json\" or \"regex\"%s",
                       type ? "" : ", but it is missing");

    const cJSON *tf = cJSON_GetObjectItemCaseSensitive(root, "time_format");
    f->time_format = TW_TIME_AUTO;
    if (tf) {
        int v = cJSON_IsString(tf) ? tw_time_format_parse(tf->valuestring) : -1;
        if (v < 0)
            return fail_at(ld, "time_format",
                           "expected one of \"auto\", \"rfc3339\", \"epoch\", \"epoch_ms\", "
                           "\"syslog\"");
        f->time_format = (tw_time_format_t)v;
    }

    const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(root, "pattern");
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(root, "fields");
    if (f->kind == KIND_REGEX) {
        if (fields)
            return fail_at(ld, "fields", "only allowed when type is \"json\" (regex formats "
                                         "name their fields with groups in pattern)");
        if (!pattern)
            return fail_at(ld, "pattern", "expected a PCRE2 pattern string, but it is missing");
        if (compile_pattern(ld, f, pattern) != 0)
            return -1;
    } else {
        if (pattern)
            return fail_at(ld, "pattern", "only allowed when type is \"regex\"");
        if (!fields)
            return fail_at(ld, "fields", "expected an object mapping token, ip, time to "
                                         "dotted paths, but it is missing");
        if (read_fields(ld, f, fields) != 0)
            return -1;
    }

    const cJSON *rej = cJSON_GetObjectItemCaseSensitive(root, "rejected");
    if (rej && read_matcher(ld, f, rej, "rejected", false, &f->rejected) != 0)
        return -1;
    const cJSON *flt = cJSON_GetObjectItemCaseSensitive(root, "filter");
    if (flt && read_matcher(ld, f, flt, "filter", true, &f->filter) != 0)
        return -1;
    if (f->kind == KIND_JSON) {
        for (int i = 0; i < F_COUNT; i++)
            assign_heads(f, &f->field[i]);
        assign_heads(f, &f->rejected.own);
        assign_heads(f, &f->filter.own);
    }
    return 0;
}

/* 1-based line and column of byte offset `at` in text, for syntax errors. */
static void line_col(const char *text, size_t at, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static bool only_space(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return false;
    return true;
}

int tw_format_load_file(tw_format_t **out, const char *path, tw_err_t *err)
{
    hooks_ensure();
    *out = NULL;
    char *text;
    size_t len;
    if (tw_read_file(path, &text, &len, err) != 0)
        return -1;

    loader_t ld = {.file = path, .err = err};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root || !only_space(end, text + len)) {
        size_t line, col;
        size_t at = end ? (size_t)(end - text) : 0;
        line_col(text, at, &line, &col);
        tw_err_set(err, "%s: expected a JSON object (%s at line %zu, column %zu)", path,
                   root ? "unexpected content after it" : "syntax error", line, col);
        cJSON_Delete(root);
        free(text);
        return -1;
    }

    tw_format_t *f = tw_xcalloc(1, sizeof *f);
    int rc = build_format(&ld, root, f);
    cJSON_Delete(root);
    free(text);
    if (rc != 0) {
        tw_format_free(f);
        return -1;
    }
    *out = f;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int tw_formats_load_dir(tw_formats_t **out, const char *dir, tw_err_t *err)
{
    hooks_ensure();
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return tw_err_set(err, "%s: cannot open formats directory: %s", dir, strerror(errno));

    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        size_t l = strlen(de->d_name);
        /* Hidden files are editor and packaging leftovers, not formats. */
        if (de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            names = tw_xrealloc(names, cap * sizeof *names);
        }
        names[n++] = tw_xstrdup(de->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);

    tw_formats_t *fs = tw_xcalloc(1, sizeof *fs);
    fs->v = tw_xcalloc(n ? n : 1, sizeof *fs->v);
    fs->files = tw_xcalloc(n ? n : 1, sizeof *fs->files);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *path = tw_path_join(dir, names[i]);
        tw_format_t *f;
        if (tw_format_load_file(&f, path, err) != 0) {
            free(path);
            rc = -1;
            break;
        }
        for (size_t j = 0; j < fs->n; j++) {
            if (strcmp(fs->v[j]->name, f->name) == 0) {
                tw_err_set(err, "%s: name: expected a unique format name; \"%s\" is already "
                                "defined in %s",
                           path, f->name, fs->files[j]);
                rc = -1;
                break;
            }
        }
        if (rc != 0) {
            tw_format_free(f);
            free(path);
            break;
        }
        fs->v[fs->n] = f;
        fs->files[fs->n] = path;
        fs->n++;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc != 0) {
        tw_formats_free(fs);
        return -1;
    }
    *out = fs;
    return 0;
}

void tw_formats_free(tw_formats_t *fs)
{
    if (!fs)
        return;
    for (size_t i = 0; i < fs->n; i++) {
        tw_format_free(fs->v[i]);
        free(fs->files[i]);
    }
    free(fs->v);
    free(fs->files);
    free(fs);
}

const tw_format_t *tw_formats_find(const tw_formats_t *fs, const char *name)
{
    if (!fs || !name)
        return NULL;
    for (size_t i = 0; i < fs->n; i++)
        if (strcmp(fs->v[i]->name, name) == 0)
            return fs->v[i];
    return NULL;
}

size_t tw_formats_count(const tw_formats_t *fs)
{
    return fs ? fs->n : 0;
}

const tw_format_t *tw_formats_at(const tw_formats_t *fs, size_t i)
{
    return fs && i < fs->n ? fs->v[i] : NULL;
}

/* ------------------------------------------------------------------------ */
/* Parser                                                                   */

/* Scratch slots for numbers rendered as text: one per event field plus the
 * two matchers, so that every slice of one event can point at its own. */
enum { SLOT_REJECTED = F_COUNT, SLOT_FILTER, SLOT_COUNT };
#define NUM_SCRATCH 48

/* One member name on some configured path, and what this line holds there. */
typedef struct jnode {
    const char *name;
    size_t nlen;
    uint64_t head;         /* name's first min(nlen, 8) bytes, zero-padded (key_head) */
    int child, sibling;    /* first child, next sibling; -1 for none */
    uint32_t gen;          /* == parser's gen: seen on this line, fields valid */
    uint8_t type;          /* cJSON_String, cJSON_Number, ... (cJSON's bits) */
    const char *vp;        /* strings, numbers: the text in the line */
    size_t vn;
} jnode_t;

/* The shape of a line the json fast path read (see "json shapes"). */
#define TPL_HOLES 32    /* string values */
#define TPL_BYTES 1024  /* the line's bytes outside them */
#define TPL_WINDOW 64
#define TPL_WINDOW_MIN 16
#define TPL_PAUSE 1024
typedef struct json_tpl {
    bool valid;
    bool recording;               /* the scanner notes string values */
    bool overflow;                /* more than TPL_HOLES of them */
    /* Noted by the scanner: each string value's offset, length and node. */
    size_t nrec;
    uint32_t h_off[TPL_HOLES], h_len[TPL_HOLES];
    int h_node[TPL_HOLES];
    /* The shape: literal k is lit[l_off[k] .. + l_len[k]), before hole k
     * (the last one ends the line). */
    size_t nholes;
    uint64_t hits;                /* lines matched */
    /* Back-off: of every TPL_WINDOW lines tried, fewer than TPL_WINDOW_MIN
     * matched means the lines do not repeat a shape (a mix of kinds, as in
     * a Vault audit log): shapes are neither tried nor taught for the next
     * TPL_PAUSE lines, which then cost what they cost before shapes. */
    uint32_t win_tried, win_hits, pause;
    char lit[TPL_BYTES];
    uint16_t l_off[TPL_HOLES + 1], l_len[TPL_HOLES + 1];
    int hole_node[TPL_HOLES];     /* the node a hole's string fills, or -1 */
    size_t nmark;
    int *mark_node;               /* every other node the line sets, */
    uint8_t *mark_type;           /* and its type (nnodes of each) */
} json_tpl_t;

struct tw_parser {
    const tw_format_t *fmt;
    /* regex */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    size_t *ov;            /* fieldpat's ovector, when fmt->fields */
    /* json */
    arena_t arena;
    cJSON *foreign_root;   /* a tree not in our arena (see parse_json) */
    const cJSON *root;     /* this line's object */
    const cJSON **head_node;   /* per fmt->heads[i]: its member in root, once looked up */
    bool *head_done;
    char num[SLOT_COUNT][NUM_SCRATCH];
    /* json fast path (see "json fast path" below) */
    bool fast_on;              /* regex: fieldpat; json: the scanner */
    jnode_t *nodes;            /* the paths' trie; nodes[0] is the root object */
    size_t nnodes;
    uint32_t gen;              /* this line's mark in jnode_t.gen */
    int *alt_node[SLOT_COUNT]; /* per slot: the trie node of each alternative */
    const char *fpos, *fend;   /* scanner position and end */
    const char *tstart;        /* the line's start (hole offsets) */
    json_tpl_t *tpl;           /* the last line's shape (see "json shapes") */
};

/* --- json fast path: trie setup ------------------------------------------ */

/* A name's first min(n, 8) bytes as a word, the rest zero. avail is how
 * many bytes may be read at s (>= n): with 8 of them one load and a mask. */
static inline uint64_t key_head(const char *s, size_t n, size_t avail)
{
    uint64_t w = 0;
    if (avail >= 8) {
        memcpy(&w, s, 8);
        if (n < 8) {
            /* Keep the bytes at s[0..n): the low ones on a little-endian
             * machine, the high ones on a big-endian one. */
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            w = n ? w & ~0ULL << (64 - 8 * n) : 0;
#else
            w &= (1ULL << (8 * n)) - 1;
#endif
        }
    } else {
        memcpy(&w, s, n < 8 ? n : 8);
    }
    return w;
}

/* The child of node at named (name, nlen), or -1; head = key_head(name). */
static inline int trie_child(const tw_parser_t *p, int at, const char *name, size_t nlen,
                             uint64_t head)
{
    for (int c = p->nodes[at].child; c >= 0; c = p->nodes[c].sibling) {
        const jnode_t *n = &p->nodes[c];
        if (n->head == head && n->nlen == nlen &&
            (nlen <= 8 || memcmp(n->name + 8, name + 8, nlen - 8) == 0))
            return c;
    }
    return -1;
}

static int trie_add(tw_parser_t *p, const jpath_t *jp)
{
    int at = 0;
    for (size_t i = 0; i < jp->nseg; i++) {
        size_t nlen = strlen(jp->seg[i]);
        uint64_t head = key_head(jp->seg[i], nlen, nlen);
        int c = trie_child(p, at, jp->seg[i], nlen, head);
        if (c < 0) {
            p->nodes = tw_xrealloc(p->nodes, (p->nnodes + 1) * sizeof *p->nodes);
            c = (int)p->nnodes++;
            p->nodes[c] = (jnode_t){.name = jp->seg[i], .nlen = nlen, .head = head,
                                    .child = -1, .sibling = p->nodes[at].child};
            p->nodes[at].child = c;
        }
        at = c;
    }
    return at;
}

static void trie_slot(tw_parser_t *p, int slot, const jfield_t *jf)
{
    if (!jf || jf->nalt == 0)
        return;
    p->alt_node[slot] = tw_xcalloc(jf->nalt, sizeof *p->alt_node[slot]);
    for (size_t i = 0; i < jf->nalt; i++)
        p->alt_node[slot][i] = trie_add(p, &jf->alt[i]);
}

static void fast_init(tw_parser_t *p)
{
    const tw_format_t *f = p->fmt;
    p->nodes = tw_xcalloc(1, sizeof *p->nodes);
    p->nodes[0] = (jnode_t){.child = -1, .sibling = -1};
    p->nnodes = 1;
    for (int i = 0; i < F_COUNT; i++)
        trie_slot(p, i, &f->field[i]);
    if (f->rejected.on)
        trie_slot(p, SLOT_REJECTED, f->rejected.src);
    if (f->filter.on)
        trie_slot(p, SLOT_FILTER, f->filter.src);
    p->fast_on = true;
}

tw_parser_t *tw_parser_new(const tw_format_t *fmt)
{
    tw_parser_t *p = tw_xcalloc(1, sizeof *p);
    p->fmt = fmt;
    if (fmt->kind == KIND_REGEX) {
        p->md = pcre2_match_data_create_from_pattern(fmt->re, NULL);
        p->mctx = pcre2_match_context_create(NULL);
        if (!p->md || !p->mctx)
            tw_die("out of memory creating PCRE2 match data");
        pcre2_set_match_limit(p->mctx, MATCH_LIMIT);
        if (fmt->jit) {
            p->jit_stack = pcre2_jit_stack_create(JIT_STACK_START, JIT_STACK_MAX, NULL);
            if (!p->jit_stack)
                tw_die("out of memory creating a PCRE2 JIT stack");
            pcre2_jit_stack_assign(p->mctx, NULL, p->jit_stack);
        }
        if (fmt->fields) {
            p->ov = tw_xcalloc(2 * ((size_t)tw_fieldpat_captures(fmt->fields) + 1),
                               sizeof *p->ov);
            p->fast_on = true;
        }
    } else {
        hooks_ensure();
        arena_init(&p->arena, ARENA_FIRST_CHUNK);
        p->head_node = tw_xcalloc(fmt->nheads ? fmt->nheads : 1, sizeof *p->head_node);
        p->head_done = tw_xcalloc(fmt->nheads ? fmt->nheads : 1, sizeof *p->head_done);
        fast_init(p);
        p->tpl = tw_xcalloc(1, sizeof *p->tpl);
        p->tpl->mark_node = tw_xcalloc(p->nnodes, sizeof *p->tpl->mark_node);
        p->tpl->mark_type = tw_xcalloc(p->nnodes, sizeof *p->tpl->mark_type);
    }
    return p;
}

uint64_t tw_parser_shape_hits(const tw_parser_t *p) { return p->tpl ? p->tpl->hits : 0; }

bool tw_parser_fast(tw_parser_t *p, bool on)
{
    p->fast_on = on && (p->nodes || p->ov);
    return p->fast_on;
}

void tw_parser_free(tw_parser_t *p)
{
    if (!p)
        return;
    pcre2_match_data_free(p->md);
    pcre2_match_context_free(p->mctx);
    pcre2_jit_stack_free(p->jit_stack);
    free(p->ov);
    cJSON_Delete(p->foreign_root);
    arena_free(&p->arena);
    free(p->head_node);
    free(p->head_done);
    free(p->nodes);
    if (p->tpl) {
        free(p->tpl->mark_node);
        free(p->tpl->mark_type);
        free(p->tpl);
    }
    for (int i = 0; i < SLOT_COUNT; i++)
        free(p->alt_node[i]);
    free(p);
}

static tw_parse_status_t fail(tw_event_t *ev, tw_parse_error_t e, int field)
{
    ev->error = e;
    ev->error_field = field >= 0 ? field_names[field] : NULL;
    return TW_PARSE_ERROR;
}

static bool matcher_hit(const matcher_t *m, tw_slice_t v)
{
    if (v.n == 0)
        return false;   /* absent (or empty) never matches */
    for (size_t i = 0; i < m->equals.n; i++)
        if (v.n == m->equals.len[i] && memcmp(v.p, m->equals.s[i], v.n) == 0)
            return true;
    for (size_t i = 0; i < m->contains.n; i++)
        if (memmem(v.p, v.n, m->contains.s[i], m->contains.len[i]))
            return true;
    return false;
}

/* Required fields present, then the time, then the rejection. Shared by
 * both kinds once the event slices are filled in. */
static tw_parse_status_t finish(const tw_format_t *f, tw_event_t *ev, tw_slice_t time,
                                int64_t ref_ns, tw_slice_t rejected_value)
{
    if (ev->token.n == 0)
        return fail(ev, TW_PERR_MISSING_FIELD, F_TOKEN);
    if (ev->ip.n == 0)
        return fail(ev, TW_PERR_MISSING_FIELD, F_IP);
    if (time.n == 0)
        return fail(ev, TW_PERR_MISSING_FIELD, F_TIME);
    /* A regex format promises a result group; an empty one is a line that
     * does not say how the check ended. */
    if (f->kind == KIND_REGEX && ev->result.n == 0)
        return fail(ev, TW_PERR_MISSING_FIELD, F_RESULT);
    if (tw_time_parse(f->time_format, time.p, time.n, ref_ns, &ev->time_ns) != 0)
        return fail(ev, TW_PERR_BAD_TIME, F_TIME);
    ev->rejected = f->rejected.on && matcher_hit(&f->rejected, rejected_value);
    return TW_PARSE_OK;
}

/* --- regex --------------------------------------------------------------- */

static tw_slice_t group_slice(const PCRE2_SIZE *ov, int rc, uint32_t g, const char *line)
{
    tw_slice_t s = {NULL, 0};
    if (g == 0 || g >= (uint32_t)rc)
        return s;   /* no such group, or not set in this match */
    PCRE2_SIZE a = ov[2 * g], b = ov[2 * g + 1];
    if (a == PCRE2_UNSET || b < a)
        return s;
    s.p = line + a;
    s.n = b - a;
    return s;
}

static tw_parse_status_t parse_regex(tw_parser_t *p, const char *line, size_t len,
                                     int64_t ref_ns, tw_event_t *ev)
{
    const tw_format_t *f = p->fmt;
    const PCRE2_SIZE *ov;
    int rc;
    if (p->fast_on) {
        if (!tw_fieldpat_match(f->fields, line, len, p->ov))
            return fail(ev, TW_PERR_NO_MATCH, -1);
        ov = p->ov;   /* every group below rc; unset ones are PCRE2_UNSET */
        rc = (int)tw_fieldpat_captures(f->fields) + 1;
    } else {
        rc = f->jit ? pcre2_jit_match(f->re, (PCRE2_SPTR)line, len, 0, 0, p->md, p->mctx)
                    : pcre2_match(f->re, (PCRE2_SPTR)line, len, 0, 0, p->md, p->mctx);
        /* Any failure, including the match limit, is "this line is not one
         * of ours"; rc == 0 cannot happen with match data sized from the
         * pattern. */
        if (rc <= 0)
            return fail(ev, TW_PERR_NO_MATCH, -1);
        ov = pcre2_get_ovector_pointer(p->md);
    }

    if (f->filter.on && !matcher_hit(&f->filter, group_slice(ov, rc, f->filter.group, line)))
        return TW_PARSE_IGNORED;

    ev->token = group_slice(ov, rc, f->group[F_TOKEN], line);
    ev->ip = group_slice(ov, rc, f->group[F_IP], line);
    tw_slice_t time = group_slice(ov, rc, f->group[F_TIME], line);
    ev->result = group_slice(ov, rc, f->group[F_RESULT], line);
    ev->user = group_slice(ov, rc, f->group[F_USER], line);
    ev->path = group_slice(ov, rc, f->group[F_PATH], line);
    tw_slice_t rej = {NULL, 0};
    if (f->rejected.on)
        rej = group_slice(ov, rc, f->rejected.group, line);
    return finish(f, ev, time, ref_ns, rej);
}

/* --- json ---------------------------------------------------------------- */

static size_t put_u64(char *buf, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

/* Renders a JSON number as text without the locale: integers exactly,
 * other values as fixed point with at most 9 decimals (what the time
 * parser can use). Returns 0 for values that have no sane text form. */
static size_t format_number(double v, char *buf)
{
    if (!isfinite(v))
        return 0;
    double a = v < 0 ? -v : v;
    if (a >= 9.0e18) {
        int n = snprintf(buf, NUM_SCRATCH, "%.17g", v);
        return n > 0 && n < NUM_SCRATCH ? (size_t)n : 0;
    }
    uint64_t ip = (uint64_t)a;
    uint64_t frac = (uint64_t)((a - (double)ip) * 1e9 + 0.5);
    if (frac >= 1000000000u) {
        ip++;
        frac -= 1000000000u;
    }
    size_t n = 0;
    if (v < 0 && (ip || frac))
        buf[n++] = '-';
    n += put_u64(buf + n, ip);
    if (frac) {
        buf[n++] = '.';
        for (uint64_t div = 100000000u; div && frac; div /= 10) {
            buf[n++] = (char)('0' + frac / div);
            frac %= div;
        }
    }
    return n;
}

/* cJSON's type tests are out-of-line library calls; on the hot path the
 * same test (low byte of type) is done inline. */
static int node_type(const cJSON *node)
{
    return node ? node->type & 0xFF : cJSON_Invalid;
}

/* The text of a scalar node; numbers are rendered into scratch, booleans
 * read as "true"/"false". Objects, arrays and null count as absent. */
static tw_slice_t json_scalar(const cJSON *node, char *scratch)
{
    tw_slice_t s = {NULL, 0};
    switch (node_type(node)) {
    case cJSON_String:
        if (node->valuestring) {
            s.p = node->valuestring;
            s.n = strlen(node->valuestring);
        }
        break;
    case cJSON_Number:
        s.p = scratch;
        s.n = format_number(node->valuedouble, scratch);
        break;
    case cJSON_True:
        s.p = "true";
        s.n = 4;
        break;
    case cJSON_False:
        s.p = "false";
        s.n = 5;
        break;
    default:
        break;
    }
    return s;
}

/* Member lookup by name. Keys are short, so an inline loop beats a call to
 * strcmp for each member. */
static const cJSON *json_member(const cJSON *obj, const char *name)
{
    for (const cJSON *c = obj->child; c; c = c->next) {
        const char *k = c->string, *n = name;
        if (!k)
            continue;
        while (*k && *k == *n) {
            k++;
            n++;
        }
        if (*k == *n)
            return c;
    }
    return NULL;
}

static const cJSON *json_walk(tw_parser_t *p, const jpath_t *jp)
{
    const cJSON *node;
    if (p->head_done[jp->head]) {
        node = p->head_node[jp->head];
    } else {
        node = json_member(p->root, jp->seg[0]);
        p->head_node[jp->head] = node;
        p->head_done[jp->head] = true;
    }
    for (size_t i = 1; i < jp->nseg && node; i++) {
        if (node_type(node) != cJSON_Object)
            return NULL;
        node = json_member(node, jp->seg[i]);
    }
    return node;
}

static tw_slice_t json_field(tw_parser_t *p, const jfield_t *jf, char *scratch)
{
    for (size_t i = 0; i < jf->nalt; i++) {
        tw_slice_t s = json_scalar(json_walk(p, &jf->alt[i]), scratch);
        if (s.n > 0)
            return s;
    }
    tw_slice_t none = {NULL, 0};
    return none;
}

/*
 * The json fast path. cJSON builds a tree of the whole line (a node and a
 * copy per member) when an event needs five or six members of it. For
 * lines in a strict subset of JSON, whose tree cJSON would build without
 * any judgement call, one pass over the line finds the same members:
 *  - RFC 8259 grammar with whitespace ' ', \t, \n, \r only (cJSON takes any
 *    byte <= 32), no byte-order mark, nesting at most FAST_DEPTH;
 *  - strings without '\\' and without raw control bytes (so a string is
 *    its bytes as they stand in the line, which is what cJSON copies; bytes
 *    >= 0x80 pass unchecked in both);
 *  - numbers of at most 63 characters (cJSON's buffer), and no number
 *    where a field reads one (the text cJSON renders goes through strtod).
 * Anything else, valid or not, is handed to cJSON, which decides. The
 * trie of the configured paths is walked as members go by; the first of
 * duplicate keys is the one kept, as with cJSON. A line that passes is
 * read exactly as through cJSON (tests compare both paths).
 */
#define FAST_DEPTH 64
#define FAST_NUM_MAX 63

enum { FAST_OK = 0, FAST_NO = -1 };

static inline void fast_ws(tw_parser_t *p)
{
    const char *q = p->fpos, *e = p->fend;
    if (q == e || (unsigned char)*q > ' ')
        return;   /* compact JSON: nothing to skip */
    while (q < e && (unsigned char)*q <= ' ' &&
           (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
        q++;
    p->fpos = q;
}

/* 1 for the bytes a fast-path string may hold: not '"', '\\' or < 0x20. */
static const uint8_t str_plain[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),                                  /* 0x00-0x1F */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x20-0x2F: '"' */
    R16(1), R16(1),                                  /* 0x30-0x4F */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,  /* 0x50-0x5F: '\\' */
    R16(1), R16(1),                                  /* 0x60-0x7F */
    R16(1), R16(1), R16(1), R16(1), R16(1), R16(1), R16(1), R16(1),
#undef R16
};

/* The first byte of q[0..e) that a fast-path string may not hold (its
 * closing '"' if all is well), or e. */
static inline const unsigned char *plain_stop(const unsigned char *q, const unsigned char *e)
{
#ifdef __SSE2__
    /* Sixteen bytes at a time (SSE2 is in every x86-64): '"', '\\' and
     * bytes <= 0x1f (min(x, 0x1f) == x, unsigned) stop the run. */
    const __m128i v_dq = _mm_set1_epi8('"'), v_bs = _mm_set1_epi8('\\');
    const __m128i v_ctl = _mm_set1_epi8(0x1f);
    while (e - q >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)q);
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, v_dq), _mm_cmpeq_epi8(x, v_bs)),
                                   _mm_cmpeq_epi8(_mm_min_epu8(x, v_ctl), x));
        unsigned m = (unsigned)_mm_movemask_epi8(hit);
        if (m)
            return q + __builtin_ctz(m);
        q += 16;
    }
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Eight bytes at a time: the lowest byte flagged by the has-zero-byte
     * (for '"', '\\') and has-less-than (for < 0x20) bit tricks is exactly
     * the first byte that ends the plain run. */
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (e - q >= 8) {
        uint64_t x, dq, bs;
        memcpy(&x, q, 8);
        dq = x ^ (ones * '"');
        bs = x ^ (ones * '\\');
        uint64_t m = (((x - ones * 0x20) & ~x) | ((dq - ones) & ~dq) | ((bs - ones) & ~bs)) & highs;
        if (m)
            return q + (__builtin_ctzll(m) >> 3);
        q += 8;
    }
#endif
    while (q < e && str_plain[*q])
        q++;
    return q;
}

/* At the opening quote: sets *sp, *sn to the bytes between the quotes. */
static inline int fast_string(tw_parser_t *p, const char **sp, size_t *sn)
{
    const unsigned char *start = (const unsigned char *)p->fpos + 1;
    const unsigned char *e = (const unsigned char *)p->fend, *q = plain_stop(start, e);
    if (q == e || *q != '"')
        return FAST_NO;
    *sp = (const char *)start;
    *sn = (size_t)(q - start);
    p->fpos = (const char *)q + 1;
    return FAST_OK;
}

static inline bool is_digit(char c) { return (unsigned)(c - '0') < 10; }

static int fast_number(tw_parser_t *p)
{
    const char *q = p->fpos, *e = p->fend, *start = q;
    if (q < e && *q == '-')
        q++;
    if (q == e || !is_digit(*q))
        return FAST_NO;
    if (*q == '0') {
        q++;
    } else {
        while (q < e && is_digit(*q))
            q++;
    }
    if (q < e && *q == '.') {
        q++;
        if (q == e || !is_digit(*q))
            return FAST_NO;
        while (q < e && is_digit(*q))
            q++;
    }
    if (q < e && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < e && (*q == '+' || *q == '-'))
            q++;
        if (q == e || !is_digit(*q))
            return FAST_NO;
        while (q < e && is_digit(*q))
            q++;
    }
    if (q - start > FAST_NUM_MAX)
        return FAST_NO;
    p->fpos = q;
    return FAST_OK;
}

static int fast_literal(tw_parser_t *p, const char *word, size_t n)
{
    if ((size_t)(p->fend - p->fpos) < n || memcmp(p->fpos, word, n) != 0)
        return FAST_NO;
    p->fpos += n;
    return FAST_OK;
}

/* One value at p->fpos (whitespace skipped before it); node is its trie
 * node, or -1 when no configured path goes through it. */
static int fast_value(tw_parser_t *p, int node, int depth)
{
    if (p->fpos == p->fend)
        return FAST_NO;
    jnode_t *jn = node >= 0 ? &p->nodes[node] : NULL;
    const char *start = p->fpos;
    int type;
    switch (*p->fpos) {
    case '{': {
        if (depth >= FAST_DEPTH)
            return FAST_NO;
        if (jn) {
            jn->gen = p->gen;
            jn->type = cJSON_Object;
        }
        p->fpos++;
        fast_ws(p);
        if (p->fpos < p->fend && *p->fpos == '}') {
            p->fpos++;
            return FAST_OK;
        }
        for (;;) {
            const char *k;
            size_t kn;
            if (p->fpos == p->fend || *p->fpos != '"' || fast_string(p, &k, &kn) != FAST_OK)
                return FAST_NO;
            fast_ws(p);
            if (p->fpos == p->fend || *p->fpos != ':')
                return FAST_NO;
            p->fpos++;
            fast_ws(p);
            int c = -1;
            if (node >= 0 && p->nodes[node].child >= 0) {
                c = trie_child(p, node, k, kn, key_head(k, kn, (size_t)(p->fend - k)));
                if (c >= 0 && p->nodes[c].gen == p->gen)
                    c = -1;   /* a duplicate key: the first one counts */
            }
            if (fast_value(p, c, depth + 1) != FAST_OK)
                return FAST_NO;
            fast_ws(p);
            if (p->fpos == p->fend)
                return FAST_NO;
            char d = *p->fpos++;
            if (d == '}')
                return FAST_OK;
            if (d != ',')
                return FAST_NO;
            fast_ws(p);
        }
    }
    case '[': {
        if (depth >= FAST_DEPTH)
            return FAST_NO;
        if (jn) {
            jn->gen = p->gen;
            jn->type = cJSON_Array;
        }
        p->fpos++;
        fast_ws(p);
        if (p->fpos < p->fend && *p->fpos == ']') {
            p->fpos++;
            return FAST_OK;
        }
        for (;;) {
            if (fast_value(p, -1, depth + 1) != FAST_OK)
                return FAST_NO;
            fast_ws(p);
            if (p->fpos == p->fend)
                return FAST_NO;
            char d = *p->fpos++;
            if (d == ']')
                return FAST_OK;
            if (d != ',')
                return FAST_NO;
            fast_ws(p);
        }
    }
    case '"': {
        const char *v;
        size_t vn;
        if (fast_string(p, &v, &vn) != FAST_OK)
            return FAST_NO;
        if (jn) {
            jn->gen = p->gen;
            jn->type = cJSON_String;
            jn->vp = v;
            jn->vn = vn;
        }
        json_tpl_t *t = p->tpl;
        if (t->recording) {
            if (t->nrec == TPL_HOLES) {
                t->overflow = true;
            } else {
                t->h_off[t->nrec] = (uint32_t)(v - p->tstart);
                t->h_len[t->nrec] = (uint32_t)vn;
                t->h_node[t->nrec++] = node;
            }
        }
        return FAST_OK;
    }
    case 't':
        type = cJSON_True;
        if (fast_literal(p, "true", 4) != FAST_OK)
            return FAST_NO;
        break;
    case 'f':
        type = cJSON_False;
        if (fast_literal(p, "false", 5) != FAST_OK)
            return FAST_NO;
        break;
    case 'n':
        type = cJSON_NULL;
        if (fast_literal(p, "null", 4) != FAST_OK)
            return FAST_NO;
        break;
    default:
        type = cJSON_Number;
        if (fast_number(p) != FAST_OK)
            return FAST_NO;
        break;
    }
    if (jn) {
        jn->gen = p->gen;
        jn->type = (uint8_t)type;
        jn->vp = start;
        jn->vn = (size_t)(p->fpos - start);
    }
    return FAST_OK;
}

/*
 * json shapes. Lines from one producer differ only in their string values:
 * the keys, the punctuation, the whitespace and the other values stand in
 * the same bytes in the same order. After the scanner has read a line, its
 * shape is kept: the bytes outside its string values ("literals") and, for
 * each value, the trie node it fills. The next line matches the shape when
 * it is literal 0, a plain string body (no '"', '\\' or byte < 0x20, what
 * fast_string takes), literal 1, and so on to its end. The scanner would
 * then take exactly the same steps on it as on the line the shape came
 * from: every byte it branches on is in a literal (a string body only ends
 * at its '"', which is the next literal's first byte), so it would accept
 * the line and set the same nodes, to the same types, and the string nodes
 * to the new line's values. A match sets them directly; anything else goes
 * through the scanner (and teaches the shape anew when the scanner takes
 * the line). One comparison per literal and one string scan per value
 * instead of a walk over every byte: a generic-json line is 7 literals and
 * 6 values (callgrind, one thread with detection: 3,870 instructions a
 * line in all, 4,965 with the scanner alone). A line shaped like no line
 * before it, or like one before the last, pays a failed comparison and the
 * shape's copy on top of the scanner; where that is most lines (a log of
 * mixed kinds, like the Vault audit fixture: 1 line of 28 matches), the
 * back-off in json_tpl_t stops trying shapes for a while, so such a log
 * reads as fast as before shapes (measured: 845,000 against 849,000
 * lines/s).
 */

/* a[0..n) == b[0..n), for the short literals of a shape: eight bytes at a
 * time, the last eight overlapping (no call, no read outside either). */
static inline bool lit_eq(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i])
                return false;
        return true;
    }
    for (size_t i = 0; i + 8 <= n; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            return false;
    }
    memcpy(&x, a + n - 8, 8);
    memcpy(&y, b + n - 8, 8);
    return x == y;
}

static int tpl_match(tw_parser_t *p, const char *line, size_t len)
{
    const json_tpl_t *t = p->tpl;
    if (!t->valid)
        return FAST_NO;
    const char *q = line, *e = line + len;
    const char *hole[TPL_HOLES], *hole_end[TPL_HOLES];
    for (size_t k = 0;; k++) {
        size_t n = t->l_len[k];
        if ((size_t)(e - q) < n || !lit_eq(q, t->lit + t->l_off[k], n))
            return FAST_NO;
        q += n;
        if (k == t->nholes)
            break;
        const char *end = (const char *)plain_stop((const unsigned char *)q,
                                                   (const unsigned char *)e);
        if (end == e || *end != '"')
            return FAST_NO;
        hole[k] = q;
        hole_end[k] = end;
        q = end;   /* the '"' starts the next literal */
    }
    if (q != e)
        return FAST_NO;
    /* Matched: only now touch the nodes, so that a line that does not match
     * reaches the scanner with none of them marked for this line. */
    for (size_t k = 0; k < t->nholes; k++) {
        int node = t->hole_node[k];
        if (node < 0)
            continue;
        jnode_t *jn = &p->nodes[node];
        jn->gen = p->gen;
        jn->type = cJSON_String;
        jn->vp = hole[k];
        jn->vn = (size_t)(hole_end[k] - hole[k]);
    }
    for (size_t i = 0; i < t->nmark; i++) {
        jnode_t *jn = &p->nodes[t->mark_node[i]];
        jn->gen = p->gen;
        jn->type = t->mark_type[i];
    }
    p->tpl->hits++;
    p->tpl->win_hits++;
    return FAST_OK;
}

/* Keeps the shape of the line the scanner has just taken, when it fits and
 * every node it sets is a string, an object, an array, true, false or null
 * (a number node's text would not move with the values around it). */
static void tpl_learn(tw_parser_t *p, const char *line, size_t len)
{
    json_tpl_t *t = p->tpl;
    t->valid = false;
    if (t->overflow || len > UINT32_MAX)
        return;
    size_t lit_total = len;
    for (size_t k = 0; k < t->nrec; k++)
        lit_total -= t->h_len[k];
    if (lit_total > TPL_BYTES)
        return;
    t->nmark = 0;
    for (size_t i = 0; i < p->nnodes; i++) {
        const jnode_t *jn = &p->nodes[i];
        if (jn->gen != p->gen || jn->type == cJSON_String)
            continue;
        if (jn->type == cJSON_Number)
            return;
        t->mark_node[t->nmark] = (int)i;
        t->mark_type[t->nmark++] = jn->type;
    }
    size_t at = 0, used = 0;
    for (size_t k = 0; k <= t->nrec; k++) {
        size_t stop = k < t->nrec ? t->h_off[k] : len;
        t->l_off[k] = (uint16_t)used;
        t->l_len[k] = (uint16_t)(stop - at);
        memcpy(t->lit + used, line + at, stop - at);
        used += stop - at;
        if (k < t->nrec) {
            t->hole_node[k] = t->h_node[k];
            at = stop + t->h_len[k];
        }
    }
    t->nholes = t->nrec;
    t->valid = true;
}

/* json_field() on the fast path's findings: the first alternative that
 * holds a non-empty scalar. Returns FAST_NO when that would take a number
 * (rendered by the cJSON path, to keep one definition of it). */
static int fast_field(tw_parser_t *p, int slot, const jfield_t *jf, tw_slice_t *out)
{
    out->p = NULL;
    out->n = 0;
    for (size_t i = 0; i < jf->nalt; i++) {
        const jnode_t *jn = &p->nodes[p->alt_node[slot][i]];
        if (jn->gen != p->gen)
            continue;   /* absent on this line */
        switch (jn->type) {
        case cJSON_String:
            if (jn->vn == 0)
                continue;
            out->p = jn->vp;
            out->n = jn->vn;
            return FAST_OK;
        case cJSON_Number:
            return FAST_NO;
        case cJSON_True:
            out->p = "true";
            out->n = 4;
            return FAST_OK;
        case cJSON_False:
            out->p = "false";
            out->n = 5;
            return FAST_OK;
        default:
            continue;   /* null, object, array: absent */
        }
    }
    return FAST_OK;
}

/* Scans the line and fills the event's slices; FAST_NO leaves the line to
 * cJSON (ev untouched but for slices the cJSON path overwrites). */
static int fast_json(tw_parser_t *p, const char *line, size_t len, tw_event_t *ev,
                     tw_slice_t *time, tw_slice_t *rej, bool *ignored)
{
    const tw_format_t *f = p->fmt;
    if (++p->gen == 0) {
        for (size_t i = 0; i < p->nnodes; i++)
            p->nodes[i].gen = 0;
        p->gen = 1;
    }
    json_tpl_t *t = p->tpl;
    if (t->pause == 0 && t->win_tried == TPL_WINDOW) {
        if (t->win_hits < TPL_WINDOW_MIN)
            t->pause = TPL_PAUSE;
        t->win_tried = 0;
        t->win_hits = 0;
    }
    bool shapes = t->pause == 0;
    if (shapes)
        t->win_tried++;
    else
        t->pause--;
    if (!shapes || tpl_match(p, line, len) != FAST_OK) {
        t->recording = shapes;
        t->overflow = false;
        t->nrec = 0;
        p->tstart = line;
        p->fpos = line;
        p->fend = line + len;
        fast_ws(p);
        int rc = FAST_NO;
        if (p->fpos != p->fend && *p->fpos == '{' && fast_value(p, 0, 0) == FAST_OK) {
            fast_ws(p);
            rc = p->fpos == p->fend ? FAST_OK : FAST_NO;
        }
        t->recording = false;
        if (rc != FAST_OK)
            return FAST_NO;
        if (shapes)
            tpl_learn(p, line, len);
    }

    *ignored = false;
    if (f->filter.on) {
        tw_slice_t v;
        if (fast_field(p, SLOT_FILTER, f->filter.src, &v) != FAST_OK)
            return FAST_NO;
        if (!matcher_hit(&f->filter, v)) {
            *ignored = true;
            return FAST_OK;
        }
    }
    tw_slice_t *dst[F_COUNT] = {
        [F_TOKEN] = &ev->token, [F_IP] = &ev->ip,     [F_TIME] = time,
        [F_RESULT] = &ev->result, [F_USER] = &ev->user, [F_PATH] = &ev->path,
    };
    for (int i = 0; i < F_COUNT; i++)
        if (fast_field(p, i, &f->field[i], dst[i]) != FAST_OK)
            return FAST_NO;
    rej->p = NULL;
    rej->n = 0;
    if (f->rejected.on) {
        if (f->rejected.field >= 0)
            *rej = *dst[f->rejected.field];
        else if (fast_field(p, SLOT_REJECTED, f->rejected.src, rej) != FAST_OK)
            return FAST_NO;
    }
    return FAST_OK;
}

static tw_parse_status_t parse_json(tw_parser_t *p, const char *line, size_t len,
                                    int64_t ref_ns, tw_event_t *ev)
{
    const tw_format_t *f = p->fmt;
    /* The fast path takes no line with a NUL byte (nowhere in its grammar),
     * so the NUL test below is only needed when it declines. */
    if (p->fast_on) {
        tw_slice_t time, rej;
        bool ignored;
        if (fast_json(p, line, len, ev, &time, &rej, &ignored) == FAST_OK) {
            if (ignored)
                return TW_PARSE_IGNORED;
            return finish(f, ev, time, ref_ns, rej);
        }
        memset(ev, 0, sizeof *ev);
    }

    /* A raw NUL is never valid JSON (RFC 8259 allows no unescaped control
     * characters), and cJSON would silently cut a string at it. */
    if (len == 0 || memchr(line, '\0', len))
        return fail(ev, TW_PERR_INVALID_JSON, -1);

    /* The previous event's slices die here, as the header promises. */
    arena_reset(&p->arena);
    if (p->foreign_root) {
        cJSON_Delete(p->foreign_root);
        p->foreign_root = NULL;
    }
    arena_t *prev = tl_arena;
    tl_arena = &p->arena;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    tl_arena = prev;
    if (!root)
        return fail(ev, TW_PERR_INVALID_JSON, -1);
    /* If someone replaced cJSON's hooks after ours, the tree came from
     * their allocator: keep it alive for the event, delete it next time. */
    if (!arena_owns(&p->arena, root))
        p->foreign_root = root;
    if (!only_space(end, line + len) || node_type(root) != cJSON_Object)
        return fail(ev, TW_PERR_INVALID_JSON, -1);
    p->root = root;
    memset(p->head_done, 0, f->nheads * sizeof *p->head_done);

    if (f->filter.on &&
        !matcher_hit(&f->filter, json_field(p, f->filter.src, p->num[SLOT_FILTER])))
        return TW_PARSE_IGNORED;

    ev->token = json_field(p, &f->field[F_TOKEN], p->num[F_TOKEN]);
    ev->ip = json_field(p, &f->field[F_IP], p->num[F_IP]);
    tw_slice_t time = json_field(p, &f->field[F_TIME], p->num[F_TIME]);
    ev->result = json_field(p, &f->field[F_RESULT], p->num[F_RESULT]);
    ev->user = json_field(p, &f->field[F_USER], p->num[F_USER]);
    ev->path = json_field(p, &f->field[F_PATH], p->num[F_PATH]);
    tw_slice_t rej = {NULL, 0};
    if (f->rejected.on) {
        const tw_slice_t *by_field[F_COUNT] = {
            [F_TOKEN] = &ev->token, [F_IP] = &ev->ip,     [F_TIME] = &time,
            [F_RESULT] = &ev->result, [F_USER] = &ev->user, [F_PATH] = &ev->path,
        };
        rej = f->rejected.field >= 0 ? *by_field[f->rejected.field]
                                     : json_field(p, f->rejected.src, p->num[SLOT_REJECTED]);
    }
    return finish(f, ev, time, ref_ns, rej);
}

tw_parse_status_t tw_parser_parse(tw_parser_t *p, const char *line, size_t len,
                                  int64_t ref_ns, tw_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    if (!line)
        line = "";   /* only meaningful with len == 0 */
    if (p->fmt->kind == KIND_REGEX)
        return parse_regex(p, line, len, ref_ns, ev);
    return parse_json(p, line, len, ref_ns, ev);
}
