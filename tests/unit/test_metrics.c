/*
 * test_metrics.c — the metrics registry: exact exposition text, escaping,
 * stable cell pointers, programming errors that abort, exact totals under
 * concurrent updates and scrapes, and `promtool check metrics` on the
 * foundation metric set (skipped with a note when promtool is missing).
 */
#include "common.h"
#include "metrics.h"
#include "tw_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *render(tw_metrics_t *m)
{
    size_t len;
    char *s = tw_metrics_render(m, &len);
    TW_CHECK_INT(strlen(s), len);
    return s;
}

static void test_golden(void)
{
    tw_metrics_t *m = tw_metrics_new();

    const char *one[] = {"path"};
    tw_family_t *req = tw_metrics_family(m, "test_requests_total", "Requests handled.",
                                         TW_METRIC_COUNTER, 1, one);
    const char *two[] = {"kind", "code"};
    tw_family_t *err = tw_metrics_family(m, "test_errors_total",
                                         "Errors by kind\\code \"quoted\".\nSecond line.",
                                         TW_METRIC_COUNTER, 2, two);
    tw_family_t *temp = tw_metrics_family(m, "test_temperature_celsius", "Temperature.",
                                          TW_METRIC_GAUGE, 0, NULL);
    const char *zone[] = {"zone"};
    tw_family_t *lag = tw_metrics_family(m, "test_lag_bytes", "Lag.", TW_METRIC_GAUGE, 1, zone);
    tw_metrics_family(m, "test_empty_total", "Declared, no series yet.", TW_METRIC_COUNTER, 1,
                      one);

    const char *pa[] = {"/a"}, *pb[] = {"/b"};
    tw_cell_add(tw_family_cell(req, pa), 3);
    tw_family_cell(req, pb); /* exported at 0 */
    tw_cell_add(tw_family_cell(req, pa), 2);

    const char *e1[] = {"io", "5"};
    const char *e2[] = {"a\"b\\c\nd", "x"};
    const char *e3[] = {"bad\xff utf8", "\xc3\xa9t\xc3\xa9"};
    tw_cell_add(tw_family_cell(err, e1), 7);
    tw_cell_set(tw_family_cell(err, e2), UINT64_MAX);
    tw_cell_add(tw_family_cell(err, e3), 1);

    tw_cell_set_gauge(tw_family_cell(temp, NULL), -40);
    const char *z1[] = {"min"}, *z2[] = {"max"};
    tw_cell_set_gauge(tw_family_cell(lag, z1), INT64_MIN);
    tw_cell_set_gauge(tw_family_cell(lag, z2), INT64_MAX);

    char *text = render(m);
    TW_CHECK_STR(
        text, "# HELP test_requests_total Requests handled.\n"
              "# TYPE test_requests_total counter\n"
              "test_requests_total{path=\"/a\"} 5\n"
              "test_requests_total{path=\"/b\"} 0\n"
              "# HELP test_errors_total Errors by kind\\\\code \"quoted\".\\nSecond line.\n"
              "# TYPE test_errors_total counter\n"
              "test_errors_total{kind=\"io\",code=\"5\"} 7\n"
              "test_errors_total{kind=\"a\\\"b\\\\c\\nd\",code=\"x\"} 18446744073709551615\n"
              "test_errors_total{kind=\"bad\xef\xbf\xbd utf8\",code=\"\xc3\xa9t\xc3\xa9\"} 1\n"
              "# HELP test_temperature_celsius Temperature.\n"
              "# TYPE test_temperature_celsius gauge\n"
              "test_temperature_celsius -40\n"
              "# HELP test_lag_bytes Lag.\n"
              "# TYPE test_lag_bytes gauge\n"
              "test_lag_bytes{zone=\"min\"} -9223372036854775808\n"
              "test_lag_bytes{zone=\"max\"} 9223372036854775807\n"
              "# HELP test_empty_total Declared, no series yet.\n"
              "# TYPE test_empty_total counter\n");
    free(text);
    tw_metrics_free(m);
}

static void test_empty_registry(void)
{
    tw_metrics_t *m = tw_metrics_new();
    size_t len = 99;
    char *text = tw_metrics_render(m, &len);
    TW_CHECK_INT(len, 0);
    TW_CHECK_STR(text, "");
    free(text);
    tw_metrics_free(m);
    tw_metrics_free(NULL);
}

static void test_relookup(void)
{
    tw_metrics_t *m = tw_metrics_new();
    const char *names[] = {"input", "reason"};
    tw_family_t *f = tw_metrics_family(m, "x_total", "X.", TW_METRIC_COUNTER, 2, names);
    /* Same name and shape, different help and different name storage. */
    char n0[] = "input", n1[] = "reason";
    const char *names2[] = {n0, n1};
    TW_CHECK(tw_metrics_family(m, "x_total", "Other help.", TW_METRIC_COUNTER, 2, names2) == f);

    const char *v[] = {"gw", "no_match"};
    tw_cell_t *c = tw_family_cell(f, v);
    /* Force many later allocations; the first cell must not move. */
    tw_cell_t *cells[200];
    for (int i = 0; i < 200; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "in%d", i);
        const char *vi[] = {buf, "no_match"};
        cells[i] = tw_family_cell(f, vi);
    }
    char gw[] = "gw";
    const char *v2[] = {gw, "no_match"};
    TW_CHECK(tw_family_cell(f, v2) == c);
    int same = 0;
    for (int i = 0; i < 200; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "in%d", i);
        const char *vi[] = {buf, "no_match"};
        same += tw_family_cell(f, vi) == cells[i];
    }
    TW_CHECK_INT(same, 200);
    const char *other[] = {"gw", "bad_time"};
    TW_CHECK(tw_family_cell(f, other) != c);

    tw_family_t *g = tw_metrics_family(m, "y", "Y.", TW_METRIC_GAUGE, 0, NULL);
    TW_CHECK(tw_family_cell(g, NULL) == tw_family_cell(g, NULL));
    tw_metrics_free(m);
}

/* Runs fn in a child with stderr silenced; true if the child aborted. */
static bool aborts(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        fn();
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return false;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void redeclare_type(void)
{
    tw_metrics_t *m = tw_metrics_new();
    tw_metrics_family(m, "a", "A.", TW_METRIC_COUNTER, 0, NULL);
    tw_metrics_family(m, "a", "A.", TW_METRIC_GAUGE, 0, NULL);
}

static void redeclare_labels(void)
{
    tw_metrics_t *m = tw_metrics_new();
    const char *l1[] = {"input"}, *l2[] = {"path"};
    tw_metrics_family(m, "a", "A.", TW_METRIC_COUNTER, 1, l1);
    tw_metrics_family(m, "a", "A.", TW_METRIC_COUNTER, 1, l2);
}

static void bad_metric_name(void)
{
    tw_metrics_family(tw_metrics_new(), "1abc", "A.", TW_METRIC_COUNTER, 0, NULL);
}

static void bad_label_name(void)
{
    const char *l[] = {"__reserved"};
    tw_metrics_family(tw_metrics_new(), "a", "A.", TW_METRIC_COUNTER, 1, l);
}

static void missing_help(void)
{
    tw_metrics_family(tw_metrics_new(), "a", "", TW_METRIC_COUNTER, 0, NULL);
}

static void valid_family(void)
{
    tw_metrics_t *m = tw_metrics_new();
    const char *l[] = {"in_put", "x2"};
    tw_metrics_family(m, "ns:sub_name_total", "A.", TW_METRIC_COUNTER, 2, l);
    tw_metrics_free(m);
}

static void test_programming_errors(void)
{
    TW_CHECK(aborts(redeclare_type));
    TW_CHECK(aborts(redeclare_labels));
    TW_CHECK(aborts(bad_metric_name));
    TW_CHECK(aborts(bad_label_name));
    TW_CHECK(aborts(missing_help));
    TW_CHECK(!aborts(valid_family));
}

/* ---- concurrency ---- */

#define ADDS_PER_WRITER 200000
#define NEW_SERIES_EVERY 10000

typedef struct {
    tw_family_t *f;
    tw_cell_t *shared;
    int id;
} writer_arg_t;

static atomic_int writers_running;

static void *writer(void *p)
{
    writer_arg_t *a = p;
    for (int i = 1; i <= ADDS_PER_WRITER; i++) {
        tw_cell_add(a->shared, 1);
        /* Creation under the lock while the renderer holds it too. */
        if (i % NEW_SERIES_EVERY == 0) {
            char buf[32];
            snprintf(buf, sizeof buf, "w%d-%d", a->id, i / NEW_SERIES_EVERY);
            const char *v[] = {buf};
            tw_cell_add(tw_family_cell(a->f, v), (uint64_t)i);
        }
    }
    atomic_fetch_sub(&writers_running, 1);
    return NULL;
}

/* The value of the series line starting with prefix, or -1. */
static long long value_of(const char *text, const char *prefix)
{
    const char *p = strstr(text, prefix);
    return p ? strtoll(p + strlen(prefix), NULL, 10) : -1;
}

typedef struct {
    tw_metrics_t *m;
    int renders;
    int went_backwards;
} reader_arg_t;

static void *reader(void *p)
{
    reader_arg_t *a = p;
    long long last = 0;
    do {
        char *text = tw_metrics_render(a->m, NULL);
        long long v = value_of(text, "conc_total{who=\"shared\"} ");
        if (v < last)
            a->went_backwards++;
        last = v;
        a->renders++;
        free(text);
    } while (atomic_load(&writers_running) > 0);
    return NULL;
}

static void test_concurrency(void)
{
    tw_metrics_t *m = tw_metrics_new();
    const char *l[] = {"who"};
    tw_family_t *f = tw_metrics_family(m, "conc_total", "C.", TW_METRIC_COUNTER, 1, l);
    const char *v[] = {"shared"};
    tw_cell_t *shared = tw_family_cell(f, v);

    atomic_store(&writers_running, 2);
    writer_arg_t w[2] = {{f, shared, 0}, {f, shared, 1}};
    reader_arg_t r = {m, 0, 0};
    pthread_t tw[2], tr;
    TW_CHECK_INT(pthread_create(&tr, NULL, reader, &r), 0);
    TW_CHECK_INT(pthread_create(&tw[0], NULL, writer, &w[0]), 0);
    TW_CHECK_INT(pthread_create(&tw[1], NULL, writer, &w[1]), 0);
    pthread_join(tw[0], NULL);
    pthread_join(tw[1], NULL);
    pthread_join(tr, NULL);

    printf("concurrency: %d renders during %d updates\n", r.renders, 2 * ADDS_PER_WRITER);
    TW_CHECK(r.renders > 0);
    TW_CHECK_INT(r.went_backwards, 0);
    TW_CHECK(tw_family_cell(f, v) == shared);
    char *text = render(m);
    TW_CHECK_INT(value_of(text, "conc_total{who=\"shared\"} "), 2 * ADDS_PER_WRITER);
    TW_CHECK_INT(value_of(text, "conc_total{who=\"w0-1\"} "), NEW_SERIES_EVERY);
    TW_CHECK_INT(value_of(text, "conc_total{who=\"w1-20\"} "), ADDS_PER_WRITER);
    /* 1 shared + 2 writers x 20 new series, each on one line. */
    int lines = 0;
    for (const char *p = text; (p = strstr(p, "\nconc_total{")); p++)
        lines++;
    TW_CHECK_INT(lines, 1 + 2 * (ADDS_PER_WRITER / NEW_SERIES_EVERY));
    free(text);
    tw_metrics_free(m);
}

/* ---- promtool ---- */

/* Declares a family and creates one series per row of values (nrows rows
 * of nlabels values each), every series at value v. */
static void declare(tw_metrics_t *m, const char *name, const char *help, tw_metric_type_t type,
                    size_t nlabels, const char *const *labels, size_t nrows,
                    const char *const *values, uint64_t v)
{
    tw_family_t *f = tw_metrics_family(m, name, help, type, nlabels, labels);
    for (size_t i = 0; i < nrows; i++)
        tw_cell_set(tw_family_cell(f, nlabels ? values + i * nlabels : NULL), v);
}

/* The foundation metrics of docs/internal-contract.md, as the daemon will
 * declare them, plus one family that has no series yet. */
static tw_metrics_t *foundation_registry(void)
{
    tw_metrics_t *m = tw_metrics_new();
    const tw_metric_type_t C = TW_METRIC_COUNTER, G = TW_METRIC_GAUGE;
    const char *in[] = {"input"};
    const char *in_reason[] = {"input", "reason"};
    const char *in_kind[] = {"input", "kind"};
    const char *gw[] = {"gateway"};
    const char *errors[] = {"gateway", "no_match",      "gateway", "invalid_json",
                            "gateway", "missing_field", "gateway", "bad_time"};
    const char *skips[] = {"gateway", "too_long", "gateway", "partial",
                           "gateway", "blank",    "gateway", "filtered"};
    const char *rotations[] = {"gateway", "rename", "gateway", "truncate", "gateway", "delete"};
    const char *version[] = {"version"}, *v010[] = {"0.1.0"};
    const char *rule_sev[] = {"rule", "severity"};

    declare(m, "auth_token_check", "Authentication checks parsed.", C, 1, in, 1, gw, 10);
    declare(m, "auth_token_rejected", "Authentication checks rejected.", C, 1, in, 1, gw, 2);
    declare(m, "tokenwatch_lines_total", "Complete lines read.", C, 1, in, 1, gw, 12);
    declare(m, "tokenwatch_parse_errors_total", "Lines that did not parse, by reason.", C, 2,
            in_reason, 4, errors, 0);
    declare(m, "tokenwatch_lines_skipped_total", "Lines skipped, by reason.", C, 2, in_reason,
            4, skips, 0);
    declare(m, "tokenwatch_rotations_total", "Log rotations seen, by kind.", C, 2, in_kind, 3,
            rotations, 0);
    declare(m, "tokenwatch_input_lag_bytes", "Bytes written but not yet read.", G, 1, in, 1, gw,
            0);
    declare(m, "tokenwatch_state_saves_total", "State snapshots written.", C, 0, NULL, 1, NULL,
            3);
    declare(m, "tokenwatch_state_save_failures_total", "State snapshots that failed.", C, 0,
            NULL, 1, NULL, 0);
    declare(m, "tokenwatch_build_info", "Build information.", G, 1, version, 1, v010, 1);
    declare(m, "tokenwatch_anomalies_total", "Anomalies, by rule and severity.", C, 2, rule_sev,
            0, NULL, 0);
    return m;
}

static void test_promtool(void)
{
    const char *promtool = getenv("TW_PROMTOOL");
    if (!promtool)
        promtool = "/usr/bin/promtool";
    if (access(promtool, X_OK) != 0) {
        printf("promtool not found at %s: lint check skipped\n", promtool);
        return;
    }

    tw_metrics_t *m = foundation_registry();
    size_t len;
    char *text = tw_metrics_render(m, &len);
    char path[] = "/tmp/tw_test_metrics_XXXXXX";
    int fd = mkstemp(path);
    TW_CHECK(fd >= 0);
    if (fd < 0) {
        free(text);
        tw_metrics_free(m);
        return;
    }
    TW_CHECK_INT(write(fd, text, len), len);
    close(fd);

    char *cmd = tw_xasprintf("'%s' check metrics < '%s' 2>&1", promtool, path);
    FILE *p = popen(cmd, "r");
    TW_CHECK(p != NULL);
    char out[4096] = "";
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    int status = p ? pclose(p) : -1;
    unlink(path);
    free(cmd);

    /* promtool exits 3 when it only has lint findings (1 would mean the text
     * did not parse). The two names are mandated without _total. */
    TW_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 3);
    TW_CHECK_STR(out, "auth_token_check counter metrics should have \"_total\" suffix\n"
                      "auth_token_rejected counter metrics should have \"_total\" suffix\n");
    free(text);
    tw_metrics_free(m);
}

/* Histograms and fixed-point series: exact exposition, cumulative buckets,
 * "le" after the series' own labels, bounds without trailing zeros. */
static void test_histogram_and_fixed(void)
{
    tw_metrics_t *m = tw_metrics_new();
    static const uint64_t bounds[] = {100000, 500000, 2000000};
    static const char *const al[] = {"action"};
    tw_family_t *h = tw_metrics_histogram(m, "hook_seconds", "Hook durations.", 6, bounds, 3,
                                          1, al);
    const char *fz[] = {"freeze"};
    tw_hist_t *hf = tw_family_hist(h, fz);
    tw_hist_observe(hf, 50000);     /* 0.05 s */
    tw_hist_observe(hf, 100000);    /* on a bound: counted in it (le) */
    tw_hist_observe(hf, 900000);
    tw_hist_observe(hf, 7000000);   /* above every bound: +Inf only */
    TW_CHECK(tw_family_hist(h, fz) == hf);
    tw_family_t *n = tw_metrics_histogram(m, "plain", "No labels.", 0, bounds, 1, 0, NULL);
    tw_hist_observe(tw_family_hist(n, NULL), 3);
    tw_family_t *g = tw_metrics_family_fixed(m, "save_seconds", "Last save.", TW_METRIC_GAUGE,
                                             6, 0, NULL);
    tw_cell_set(tw_family_cell(g, NULL), 1234567);
    size_t len;
    char *text = tw_metrics_render(m, &len);
    TW_CHECK_STR(text, "# HELP hook_seconds Hook durations.\n"
                       "# TYPE hook_seconds histogram\n"
                       "hook_seconds_bucket{action=\"freeze\",le=\"0.1\"} 2\n"
                       "hook_seconds_bucket{action=\"freeze\",le=\"0.5\"} 2\n"
                       "hook_seconds_bucket{action=\"freeze\",le=\"2\"} 3\n"
                       "hook_seconds_bucket{action=\"freeze\",le=\"+Inf\"} 4\n"
                       "hook_seconds_sum{action=\"freeze\"} 8.050000\n"
                       "hook_seconds_count{action=\"freeze\"} 4\n"
                       "# HELP plain No labels.\n"
                       "# TYPE plain histogram\n"
                       "plain_bucket{le=\"100000\"} 1\n"
                       "plain_bucket{le=\"+Inf\"} 1\n"
                       "plain_sum 3\n"
                       "plain_count 1\n"
                       "# HELP save_seconds Last save.\n"
                       "# TYPE save_seconds gauge\n"
                       "save_seconds 1.234567\n");
    TW_CHECK(strlen(text) == len);
    free(text);
    tw_metrics_free(m);
}

int main(void)
{
    test_histogram_and_fixed();
    test_golden();
    test_empty_registry();
    test_relookup();
    test_programming_errors();
    test_concurrency();
    test_promtool();
    return tw_test_done();
}
