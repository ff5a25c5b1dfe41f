/*
 * fuzz_parse.h — the line-parsing harness shared by fuzz_parse_*.c (one per
 * shipped format) and fuzz_format_file.c (any format the fuzzer writes).
 *
 * The input is split on '\n' like the line reader does, and every line goes
 * through one parser in order, so that state carried between lines (the
 * cJSON arena growing, chaining and being reset; the per-line member cache)
 * is exercised as in production. The parser is made fresh per input so that
 * a saved crash input reproduces on its own.
 *
 * Each line is parsed twice: once from a copy that ends at a PROT_NONE page
 * (an over-read by libcjson or the PCRE2 JIT faults even though they are not
 * instrumented) and once from an exactly-sized heap copy (ASan sees over-
 * and under-reads in our code and through interceptors). The first parse
 * takes the fast paths (the JSON scanner, fieldpat), the second the general
 * ones (cJSON, PCRE2). Both parses must agree, and each result must keep
 * the header's promises:
 *  - OK: token and ip non-empty; every slice readable (ASan: not dangling)
 *    and NUL-free; for regex formats every slice lies inside the line; the
 *    time survives a round trip through tw_time_format_rfc3339 and
 *    tw_time_parse(RFC3339); tw_token_hint fits in 16 bytes.
 *  - ERROR: a known error code, and error_field set exactly for
 *    missing_field / bad_time.
 */
#ifndef TW_FUZZ_PARSE_H
#define TW_FUZZ_PARSE_H

#include "fuzz_common.h"

#include "common.h"
#include "format.h"
#include "timeparse.h"

/* 2027-01-01T00:00:00Z, the reference time of testdata/formats/. */
#define FUZZ_REF_NS 1798761600000000000LL

#define NS_PER_S 1000000000LL

typedef struct fuzz_result {
    tw_parse_status_t status;
    tw_event_t ev;
    /* heap copies of the slices of ev, so they outlive the next parse */
    char *s[5];
} fuzz_result_t;

static inline tw_slice_t *fuzz_slot(tw_event_t *ev, int i)
{
    tw_slice_t *slots[5] = {&ev->token, &ev->ip, &ev->user, &ev->path, &ev->result};
    return slots[i];
}

static inline void fuzz_check_event(tw_parse_status_t st, tw_event_t *ev, const char *line,
                                    size_t len, int is_regex)
{
    FUZZ_CHECK(st == TW_PARSE_OK || st == TW_PARSE_IGNORED || st == TW_PARSE_ERROR);
    if (st == TW_PARSE_ERROR) {
        FUZZ_CHECK((unsigned)ev->error < TW_PERR__COUNT);
        FUZZ_CHECK(strcmp(tw_parse_error_name(ev->error), "unknown") != 0);
        int named = ev->error == TW_PERR_MISSING_FIELD || ev->error == TW_PERR_BAD_TIME;
        FUZZ_CHECK(named == (ev->error_field != NULL));
        if (ev->error == TW_PERR_BAD_TIME)
            FUZZ_CHECK(strcmp(ev->error_field, "time") == 0);
        FUZZ_CHECK(!ev->rejected);
        return;
    }
    if (st == TW_PARSE_IGNORED)
        return;

    FUZZ_CHECK(ev->token.n > 0 && ev->token.p != NULL);
    FUZZ_CHECK(ev->ip.n > 0 && ev->ip.p != NULL);
    for (int i = 0; i < 5; i++) {
        tw_slice_t *s = fuzz_slot(ev, i);
        if (s->n == 0)
            continue;
        FUZZ_CHECK(s->p != NULL);
        fuzz_touch(s->p, s->n);
        if (is_regex == 1)
            FUZZ_CHECK(s->p >= line && s->p + s->n <= line + len);
        if (is_regex == 0)
            FUZZ_CHECK(memchr(s->p, '\0', s->n) == NULL);
    }

    /* The event time prints as RFC 3339 and reads back to the same second. */
    char buf[32];
    tw_time_format_rfc3339(ev->time_ns, buf, sizeof buf);
    FUZZ_CHECK(strlen(buf) == 20);
    int64_t secs = ev->time_ns / NS_PER_S - (ev->time_ns % NS_PER_S < 0);
    /* The first 0.85 s of the int64 range print as a second that int64
     * nanoseconds cannot hold; everything else must read back. */
    if (secs > INT64_MIN / NS_PER_S) {
        int64_t back;
        FUZZ_CHECK(tw_time_parse(TW_TIME_RFC3339, buf, 20, 0, &back) == 0);
        FUZZ_CHECK(back == secs * NS_PER_S);
    }

    char hint[16];
    tw_token_hint(ev->token, hint, sizeof hint);
    FUZZ_CHECK(strlen(hint) < sizeof hint);
}

static inline void fuzz_result_save(fuzz_result_t *r, tw_parse_status_t st,
                                    const tw_event_t *ev)
{
    r->status = st;
    r->ev = *ev;
    for (int i = 0; i < 5; i++) {
        tw_slice_t *s = fuzz_slot(&r->ev, i);
        r->s[i] = s->n ? fuzz_strndup(s->p, s->n) : NULL;
    }
}

static inline void fuzz_result_free(fuzz_result_t *r)
{
    for (int i = 0; i < 5; i++)
        free(r->s[i]);
}

/* The second parse of the same bytes must say exactly the same. */
static inline void fuzz_result_compare(const fuzz_result_t *a, tw_parse_status_t st,
                                       tw_event_t *ev)
{
    FUZZ_CHECK(a->status == st);
    if (st == TW_PARSE_ERROR) {
        FUZZ_CHECK(a->ev.error == ev->error);
        FUZZ_CHECK((a->ev.error_field == NULL) == (ev->error_field == NULL));
        if (ev->error_field)
            FUZZ_CHECK(strcmp(a->ev.error_field, ev->error_field) == 0);
        return;
    }
    if (st != TW_PARSE_OK)
        return;
    FUZZ_CHECK(a->ev.time_ns == ev->time_ns);
    FUZZ_CHECK(a->ev.rejected == ev->rejected);
    tw_event_t first = a->ev;
    for (int i = 0; i < 5; i++) {
        tw_slice_t *s = fuzz_slot(ev, i);
        FUZZ_CHECK(fuzz_slot(&first, i)->n == s->n);
        if (s->n)
            FUZZ_CHECK(memcmp(a->s[i], s->p, s->n) == 0);
    }
}

/* is_regex: 1 regex, 0 json, -1 unknown. */
static inline void fuzz_parse_lines(const tw_format_t *fmt, int is_regex,
                                    const uint8_t *data, size_t size)
{
    tw_parser_t *p = tw_parser_new(fmt);
    FUZZ_CHECK(p != NULL);
    /* Differential: the second parse goes through cJSON or PCRE2 only. */
    tw_parser_t *slow = tw_parser_new(fmt);
    tw_parser_fast(slow, false);
    const char *text = (const char *)data;
    const char *end = text + size;
    for (const char *line = text; line <= end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t len = nl ? (size_t)(nl - line) : (size_t)(end - line);

        tw_event_t ev;
        const char *g = fuzz_guarded_copy(line, len);
        tw_parse_status_t st = tw_parser_parse(p, g, len, FUZZ_REF_NS, &ev);
        fuzz_check_event(st, &ev, g, len, is_regex);
        fuzz_result_t first;
        fuzz_result_save(&first, st, &ev);

        char *h = malloc(len ? len : 1);
        FUZZ_SETUP(h != NULL, "out of memory");
        if (len)
            memcpy(h, line, len);
        st = tw_parser_parse(slow, h, len, FUZZ_REF_NS, &ev);
        fuzz_check_event(st, &ev, h, len, is_regex);
        fuzz_result_compare(&first, st, &ev);
        fuzz_result_free(&first);
        free(h);

        if (!nl)
            break;
        line = nl + 1;
    }
    /* The header allows a NULL line with len 0. */
    tw_event_t ev;
    fuzz_check_event(tw_parser_parse(p, NULL, 0, FUZZ_REF_NS, &ev), &ev, "", 0, -1);
    tw_parser_free(p);
    tw_parser_free(slow);
}

/* The whole target for one shipped format: loads rules/formats/NAME.json at
 * start-up and feeds every input through fuzz_parse_lines (IS_REGEX as there). */
#define FUZZ_SHIPPED_FORMAT_TARGET(NAME, IS_REGEX)                                        \
    static tw_format_t *fmt;                                                     \
    int LLVMFuzzerInitialize(int *argc, char ***argv)                            \
    {                                                                            \
        (void)argc;                                                              \
        (void)argv;                                                              \
        char path[1024];                                                         \
        tw_err_t err;                                                            \
        snprintf(path, sizeof path, "%s/rules/formats/" NAME ".json",            \
                 fuzz_source_dir());                                             \
        FUZZ_SETUP(tw_format_load_file(&fmt, path, &err) == 0,                   \
                   "%s (set TW_SOURCE_DIR)", err.msg);                           \
        return 0;                                                                \
    }                                                                            \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)                 \
    {                                                                            \
        fuzz_parse_lines(fmt, IS_REGEX, data, size);                             \
        return 0;                                                                \
    }

#endif
