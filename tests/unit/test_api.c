/*
 * test_api.c — the analyst API layer, access control, TLS and the CLI
 * client, over real loopback sockets against a fake backend:
 *  - every endpoint without credentials configured, and with a bearer token
 *    and basic auth configured: missing / wrong / right bearer, right and
 *    wrong basic (plain and argon2id), the WWW-Authenticate challenges, and
 *    that the backend is never called for a refused request;
 *  - routing: unknown paths and actions (404), wrong methods (405 + Allow),
 *    bad token ids (400), bad and good query parameters (parsed values
 *    checked at the backend), bodies: size limit (413 before reading, and
 *    for chunked bodies), malformed JSON, wrong members, wrong content type
 *    (415); backend statuses passed through, a NULL body becoming 500;
 *  - response headers of the API and the page (CSP, no framing), the page
 *    with basic auth and with a bearer token only, no page without an API;
 *  - /metrics behind credentials only with metrics_auth; probes never;
 *  - a slow backend call does not delay a /metrics scrape;
 *  - credential files: modes, empty files, bad lines and hashes, reload;
 *    secrets never reach the log;
 *  - TLS with a self-signed certificate made by openssl or certtool (the
 *    TLS part is skipped, with a message, when neither is installed);
 *  - the config's http section (auth, metrics_auth, tls) and its errors;
 *  - the CLI: the views of the flagged list and a token (travel legs, heat
 *    map, terminal-escape filtering) and its exit codes against the server.
 *
 * Waiting is done by polling with a deadline, never by fixed sleeps.
 */
#include "api.h"
#include "client.h"
#include "common.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "tw_test.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define CLIENT_TIMEOUT_S 10
#define BEARER "s3cr3t-bearer-7f2c9a41d0e8b6a3"
#define BASIC_PLAIN_PASS "plain-pass-41aa"
#define BASIC_HASH_PASS "argon-pass-93bd"
#define ID_OK "tw_3f9a1c2b7d4e5f60"
#define ID_UNKNOWN "tw_00000000000000ff"

/* ------------------------------------------------------------------------ */
/* A tiny blocking HTTP client                                              */

typedef struct {
    int status; /* -1: no status line (connection failed or closed) */
    char *raw;  /* whole response, NUL-terminated */
    size_t raw_len;
    const char *body; /* into raw */
    size_t body_len;
} resp_t;

static void resp_free(resp_t *r)
{
    free(r->raw);
    memset(r, 0, sizeof *r);
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Sends request (n bytes) and reads the response until the server closes. */
static void exchange_n(uint16_t port, const char *request, size_t n, resp_t *r)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    size_t cap = 8192;
    r->raw = tw_xmalloc(cap);
    r->raw[0] = '\0';
    int fd = connect_to(port);
    if (fd < 0)
        return;
    send_all(fd, request, n); /* the server may answer before taking it all */
    for (;;) {
        if (cap - r->raw_len < 4096) {
            cap *= 2;
            r->raw = tw_xrealloc(r->raw, cap);
        }
        ssize_t got = recv(fd, r->raw + r->raw_len, cap - r->raw_len - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        r->raw_len += (size_t)got;
    }
    close(fd);
    r->raw[r->raw_len] = '\0';
    int status;
    if (sscanf(r->raw, "HTTP/1.%*d %3d ", &status) == 1)
        r->status = status;
    const char *end = strstr(r->raw, "\r\n\r\n");
    if (end) {
        r->body = end + 4;
        r->body_len = r->raw_len - (size_t)(r->body - r->raw);
    }
}

/* method path with extra header lines (each ending in \r\n) and a body. */
static void http(uint16_t port, const char *method, const char *path, const char *headers,
                 const char *body, resp_t *r)
{
    char *req;
    if (body)
        req = tw_xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                           "Content-Length: %zu\r\n\r\n%s",
                           method, path, headers ? headers : "", strlen(body), body);
    else
        req = tw_xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n",
                           method, path, headers ? headers : "");
    exchange_n(port, req, strlen(req), r);
    free(req);
}

static void get(uint16_t port, const char *path, const char *headers, resp_t *r)
{
    http(port, "GET", path, headers, NULL, r);
}

/* The value of the n-th (0-based) header called name (fresh), or NULL. */
static char *header_n(const resp_t *r, const char *name, int nth)
{
    const char *end = strstr(r->raw, "\r\n\r\n");
    size_t nlen = strlen(name);
    for (const char *p = strstr(r->raw, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':' && nth-- == 0) {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            return tw_xstrndup(v, (size_t)(strstr(v, "\r\n") - v));
        }
    }
    return NULL;
}

static char *header(const resp_t *r, const char *name)
{
    return header_n(r, name, 0);
}

static void check_header(const resp_t *r, const char *name, const char *want)
{
    char *v = header(r, name);
    TW_CHECK_STR(v, want);
    free(v);
}

static bool body_has(const resp_t *r, const char *needle)
{
    return r->body && strstr(r->body, needle) != NULL;
}

#define CHECK_BODY_HAS(r, needle)                                                              \
    do {                                                                                       \
        bool has_ = body_has(r, needle);                                                       \
        TW_CHECK(has_);                                                                        \
        if (!has_)                                                                             \
            fprintf(stderr, "  body: %s\n  wanted: %s\n", (r)->body ? (r)->body : "(none)",    \
                    needle);                                                                   \
    } while (0)

static void check_json_headers(const resp_t *r)
{
    check_header(r, "Content-Type", "application/json; charset=utf-8");
    check_header(r, "Cache-Control", "no-store");
    check_header(r, "X-Content-Type-Options", "nosniff");
}

/* ------------------------------------------------------------------------ */
/* A fake backend                                                           */

typedef struct fake {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_int calls;
    tw_api_query_t q;
    char q_state[32], q_rule[80];
    uint64_t id;
    tw_api_action_t action;
    char analyst[512], note[8192];
    bool null_body; /* the next answer is NULL */
    bool slow;      /* stats waits for release */
    bool in_slow, release;
} fake_t;

static char *fake_flagged(void *ctx, const tw_api_query_t *q, int *status)
{
    fake_t *f = ctx;
    atomic_fetch_add(&f->calls, 1);
    pthread_mutex_lock(&f->lock);
    f->q = *q;
    snprintf(f->q_state, sizeof f->q_state, "%s", q->state ? q->state : "(any)");
    snprintf(f->q_rule, sizeof f->q_rule, "%s", q->rule ? q->rule : "(any)");
    f->q.state = f->q_state;
    f->q.rule = f->q_rule;
    bool null_body = f->null_body;
    pthread_mutex_unlock(&f->lock);
    *status = 200;
    if (null_body)
        return NULL;
    return tw_xasprintf("{\"total\":0,\"offset\":%u,\"limit\":%u,\"items\":[]}", q->offset,
                        q->limit);
}

static char *fake_token(void *ctx, uint64_t id, int *status)
{
    fake_t *f = ctx;
    atomic_fetch_add(&f->calls, 1);
    pthread_mutex_lock(&f->lock);
    f->id = id;
    pthread_mutex_unlock(&f->lock);
    if (id == 0xff) {
        *status = 404;
        return tw_xstrdup("{\"error\":\"no such token\"}");
    }
    return tw_xasprintf("{\"token_id\":\"tw_%016llx\",\"state\":\"flagged\"}",
                        (unsigned long long)id);
}

static char *fake_action(void *ctx, uint64_t id, tw_api_action_t a, const char *analyst,
                         const char *note, int *status)
{
    fake_t *f = ctx;
    atomic_fetch_add(&f->calls, 1);
    pthread_mutex_lock(&f->lock);
    f->id = id;
    f->action = a;
    snprintf(f->analyst, sizeof f->analyst, "%s", analyst);
    snprintf(f->note, sizeof f->note, "%s", note);
    pthread_mutex_unlock(&f->lock);
    if (a == TW_API_UNFREEZE) {
        *status = 409;
        return tw_xstrdup("{\"error\":\"the token is not frozen\"}");
    }
    return tw_xasprintf("{\"token_id\":\"tw_%016llx\",\"state\":\"%s\"}",
                        (unsigned long long)id, a == TW_API_ACK ? "acked" : "other");
}

static char *fake_stats(void *ctx, int *status)
{
    fake_t *f = ctx;
    atomic_fetch_add(&f->calls, 1);
    pthread_mutex_lock(&f->lock);
    if (f->slow) {
        f->in_slow = true;
        pthread_cond_broadcast(&f->cond);
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 20;
        while (!f->release)
            if (pthread_cond_timedwait(&f->cond, &f->lock, &dl) != 0)
                break;
        f->in_slow = false;
    }
    pthread_mutex_unlock(&f->lock);
    *status = 200;
    return tw_xstrdup("{\"version\":\"test\",\"tokens_tracked\":3}");
}

static fake_t fake;
static const tw_api_backend_t backend = {
    .ctx = &fake,
    .flagged = fake_flagged,
    .token = fake_token,
    .action = fake_action,
    .stats = fake_stats,
};

static int calls(void)
{
    return atomic_load(&fake.calls);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */

static char tmpdir[] = "/tmp/tw_test_api.XXXXXX";

static char *tmp_path(const char *name)
{
    return tw_xasprintf("%s/%s", tmpdir, name);
}

static char *write_file(const char *name, const char *content, mode_t mode)
{
    char *p = tmp_path(name);
    unlink(p);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        tw_die("cannot create %s: %s", p, strerror(errno));
    size_t n = strlen(content);
    if (write(fd, content, n) != (ssize_t)n)
        tw_die("cannot write %s", p);
    close(fd);
    chmod(p, mode);
    return p;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char *basic_header(const char *user, const char *pass)
{
    char *pair = tw_xasprintf("%s:%s", user, pass);
    size_t cap = sodium_base64_ENCODED_LEN(strlen(pair), sodium_base64_VARIANT_ORIGINAL);
    char *b64 = tw_xmalloc(cap);
    sodium_bin2base64(b64, cap, (const unsigned char *)pair, strlen(pair),
                      sodium_base64_VARIANT_ORIGINAL);
    char *h = tw_xasprintf("Authorization: Basic %s\r\n", b64);
    free(pair);
    free(b64);
    return h;
}

/* Runs argv (no shell), output to /dev/null; returns the exit status or -1. */
static int run(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ------------------------------------------------------------------------ */
/* Servers                                                                  */

static tw_metrics_t *registry(void)
{
    tw_metrics_t *m = tw_metrics_new();
    const char *in[] = {"input"};
    const char *gw[] = {"gateway"};
    tw_cell_add(
        tw_family_cell(
            tw_metrics_family(m, "auth_token_check", "Checks.", TW_METRIC_COUNTER, 1, in), gw),
        7);
    return m;
}

static const unsigned char page_html[] = "<!doctype html><title>tw</title>";
static const unsigned char page_js[] = "console.log(1);";
static const tw_asset_t test_assets[] = {
    {"/", "text/html; charset=utf-8", page_html, sizeof page_html - 1},
    {"/static/app.js", "text/javascript; charset=utf-8", page_js, sizeof page_js - 1},
};

static tw_http_t *start(tw_metrics_t *m, tw_http_opts_t *o)
{
    o->address = "127.0.0.1";
    o->timeout_s = 2;
    if (!o->assets) {
        o->assets = test_assets;
        o->nassets = 2;
    }
    tw_err_t err = {{0}};
    tw_http_t *h = tw_http_start(o, m, &err);
    if (!h)
        fprintf(stderr, "start failed: %s\n", err.msg);
    return h;
}

/* ------------------------------------------------------------------------ */
/* Pure functions                                                           */

static void test_parsers(void)
{
    uint64_t id;
    TW_CHECK_INT(tw_api_parse_token_id(ID_OK, 19, &id), 0);
    TW_CHECK(id == 0x3f9a1c2b7d4e5f60ULL);
    const char *bad[] = {"tw_3f9a1c2b7d4e5f6",  "tw_3f9a1c2b7d4e5f600",
                         "tw_3F9A1C2B7D4E5F60", "TW_3f9a1c2b7d4e5f60",
                         "tx_3f9a1c2b7d4e5f60", "tw_3f9a1c2b7d4e5f6g",
                         "tw-3f9a1c2b7d4e5f60", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        TW_CHECK_INT(tw_api_parse_token_id(bad[i], strlen(bad[i]), &id), -1);

    int64_t ns;
    TW_CHECK_INT(tw_api_parse_time("2026-11-29T07:57:53Z", &ns), 0);
    TW_CHECK(ns == 1795939073LL * 1000000000LL);
    TW_CHECK_INT(tw_api_parse_time("2026-11-29T08:57:53.5+01:00", &ns), 0);
    TW_CHECK(ns == 1795939073LL * 1000000000LL + 500000000);
    TW_CHECK_INT(tw_api_parse_time("2026-11-29t07:57:53z", &ns), 0);
    TW_CHECK_INT(tw_api_parse_time("2026-11-29T02:57:53-05:00", &ns), 0);
    TW_CHECK(ns == 1795939073LL * 1000000000LL);
    TW_CHECK_INT(tw_api_parse_time("2026-11-29T08:57:53 01:00", &ns), 0); /* form '+' */
    TW_CHECK(ns == 1795939073LL * 1000000000LL);
    TW_CHECK_INT(tw_api_parse_time("1970-01-01T00:00:00Z", &ns), 0);
    TW_CHECK(ns == 0);
    TW_CHECK_INT(tw_api_parse_time("2024-02-29T00:00:00Z", &ns), 0);
    const char *badt[] = {"2026-11-29",
                          "2026-11-29 07:57:53Z",
                          "2026-13-01T00:00:00Z",
                          "2025-02-29T00:00:00Z",
                          "2026-11-29T24:00:00Z",
                          "2026-11-29T07:57:53",
                          "2026-11-29T07:57:53.Z",
                          "2026-11-29T07:57:53+0100",
                          "yesterday",
                          "2026-11-29T07:57:53Zx",
                          "0000-01-01T00:00:00Z"};
    for (size_t i = 0; i < sizeof badt / sizeof *badt; i++) {
        TW_CHECK_INT(tw_api_parse_time(badt[i], &ns), -1);
    }
    TW_CHECK_INT(tw_api_severity_parse("critical"), 3);
    TW_CHECK_INT(tw_api_severity_parse("Critical"), -1);
    TW_CHECK(tw_api_state_valid("dismissed"));
    TW_CHECK(!tw_api_state_valid("frozen "));
    TW_CHECK_INT(tw_api_action_parse("dismiss", 7), TW_API_DISMISS);
    TW_CHECK_INT(tw_api_action_parse("freeze", 6), -1);

    char *e = tw_api_error_json("a \"quoted\"\nline");
    TW_CHECK_STR(e, "{\"error\":\"a \\\"quoted\\\"\\nline\"}");
    free(e);
}

/* ------------------------------------------------------------------------ */
/* Without credentials                                                      */

static void test_open_api(uint16_t port)
{
    resp_t r;
    int c0 = calls();
    get(port, "/api/v1/stats", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    check_json_headers(&r);
    CHECK_BODY_HAS(&r, "\"tokens_tracked\":3");
    resp_free(&r);
    get(port, "/api/v1/flagged", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    CHECK_BODY_HAS(&r, "\"limit\":50");
    resp_free(&r);
    get(port, "/api/v1/tokens/" ID_OK, NULL, &r);
    TW_CHECK_INT(r.status, 200);
    CHECK_BODY_HAS(&r, ID_OK);
    resp_free(&r);
    TW_CHECK(fake.id == 0x3f9a1c2b7d4e5f60ULL);
    http(port, "HEAD", "/api/v1/stats", NULL, NULL, &r);
    TW_CHECK_INT(r.status, 200);
    TW_CHECK_INT(r.body_len, 0);
    resp_free(&r);
    http(port, "POST", "/api/v1/tokens/" ID_OK "/ack", "Content-Type: application/json\r\n",
         "{\"analyst\":\"alice\",\"note\":\"seen\"}", &r);
    TW_CHECK_INT(r.status, 200);
    check_json_headers(&r);
    CHECK_BODY_HAS(&r, "\"state\":\"acked\"");
    resp_free(&r);
    TW_CHECK_INT(fake.action, TW_API_ACK);
    TW_CHECK_STR(fake.analyst, "alice");
    TW_CHECK_STR(fake.note, "seen");
    TW_CHECK_INT(calls() - c0, 5);

    /* The page. */
    get(port, "/", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    check_header(&r, "Content-Type", "text/html; charset=utf-8");
    check_header(&r, "X-Frame-Options", "DENY");
    check_header(&r, "X-Content-Type-Options", "nosniff");
    char *csp = header(&r, "Content-Security-Policy");
    TW_CHECK(csp && strncmp(csp, "default-src 'self';", 19) == 0);
    TW_CHECK(csp && strstr(csp, "script-src 'self';") && !strstr(csp, "unsafe-inline"));
    TW_CHECK(csp && strstr(csp, "frame-ancestors 'none'"));
    free(csp);
    TW_CHECK(r.body_len == sizeof page_html - 1 && memcmp(r.body, page_html, r.body_len) == 0);
    resp_free(&r);
    get(port, "/static/app.js", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    check_header(&r, "Content-Type", "text/javascript; charset=utf-8");
    resp_free(&r);
    get(port, "/static/nope.js", NULL, &r);
    TW_CHECK_INT(r.status, 404);
    resp_free(&r);
    http(port, "POST", "/", NULL, "x", &r);
    TW_CHECK_INT(r.status, 405);
    check_header(&r, "Allow", "GET, HEAD");
    resp_free(&r);
    http(port, "DELETE", "/static/app.js", NULL, NULL, &r);
    TW_CHECK_INT(r.status, 405);
    resp_free(&r);
}

static void test_routing(uint16_t port)
{
    resp_t r;
    int c0 = calls();
    const char *missing[] = {"/api",
                             "/api/",
                             "/api/v1",
                             "/api/v1/",
                             "/api/v2/stats",
                             "/api/v1/flagged/",
                             "/api/v1/tokens",
                             "/api/v1/tokens/",
                             "/api/v1/tokens/" ID_OK "/",
                             "/api/v1/tokens/" ID_OK "/freeze",
                             "/api/v1/tokens/" ID_OK "/ack/x",
                             "/api/v1/token/" ID_OK,
                             "/api/v1/STATS"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        get(port, missing[i], NULL, &r);
        TW_CHECK_INT(r.status, 404);
        check_json_headers(&r);
        CHECK_BODY_HAS(&r, "{\"error\":\"no such endpoint");
        resp_free(&r);
    }
    http(port, "POST", "/api/v1/tokens/" ID_OK "/freeze", "Content-Type: application/json\r\n",
         "{\"analyst\":\"a\"}", &r);
    TW_CHECK_INT(r.status, 404);
    resp_free(&r);

    /* Wrong methods. */
    const char *gets[] = {"/api/v1/stats", "/api/v1/flagged", "/api/v1/tokens/" ID_OK};
    for (size_t i = 0; i < 3; i++) {
        http(port, "POST", gets[i], "Content-Type: application/json\r\n", "{}", &r);
        TW_CHECK_INT(r.status, 405);
        check_header(&r, "Allow", "GET, HEAD");
        check_json_headers(&r);
        resp_free(&r);
        http(port, "DELETE", gets[i], NULL, NULL, &r);
        TW_CHECK_INT(r.status, 405);
        resp_free(&r);
    }
    const char *acts[] = {"ack", "unfreeze", "confirm", "dismiss"};
    for (size_t i = 0; i < 4; i++) {
        char *p = tw_xasprintf("/api/v1/tokens/%s/%s", ID_OK, acts[i]);
        get(port, p, NULL, &r);
        TW_CHECK_INT(r.status, 405);
        check_header(&r, "Allow", "POST");
        resp_free(&r);
        http(port, "PUT", p, "Content-Type: application/json\r\n", "{\"analyst\":\"a\"}", &r);
        TW_CHECK_INT(r.status, 405);
        resp_free(&r);
        free(p);
    }

    /* Bad ids: 400, never echoed. */
    const char *bad_ids[] = {"tw_3F9A1C2B7D4E5F60", "tw_123", "at-rawtoken-1234567890abcdef",
                             "tw_3f9a1c2b7d4e5f60a", "%74w_3f9a1c2b7d4e5f6z"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
        char *p = tw_xasprintf("/api/v1/tokens/%s", bad_ids[i]);
        get(port, p, NULL, &r);
        TW_CHECK_INT(r.status, 400);
        CHECK_BODY_HAS(&r, "token id: expected \\\"tw_\\\" followed by 16 lowercase hex");
        TW_CHECK(!body_has(&r, "rawtoken"));
        resp_free(&r);
        char *pa = tw_xasprintf("%s/dismiss", p);
        http(port, "POST", pa, "Content-Type: application/json\r\n", "{\"analyst\":\"a\"}", &r);
        TW_CHECK_INT(r.status, 400);
        resp_free(&r);
        free(pa);
        free(p);
    }
    TW_CHECK_INT(calls() - c0, 0);

    /* Backend statuses pass through; a NULL body is a 500. */
    get(port, "/api/v1/tokens/" ID_UNKNOWN, NULL, &r);
    TW_CHECK_INT(r.status, 404);
    CHECK_BODY_HAS(&r, "no such token");
    check_json_headers(&r);
    resp_free(&r);
    http(port, "POST", "/api/v1/tokens/" ID_OK "/unfreeze",
         "Content-Type: application/json\r\n", "{\"analyst\":\"bob\"}", &r);
    TW_CHECK_INT(r.status, 409);
    CHECK_BODY_HAS(&r, "not frozen");
    resp_free(&r);
    TW_CHECK_STR(fake.note, "");
    pthread_mutex_lock(&fake.lock);
    fake.null_body = true;
    pthread_mutex_unlock(&fake.lock);
    get(port, "/api/v1/flagged", NULL, &r);
    TW_CHECK_INT(r.status, 500);
    CHECK_BODY_HAS(&r, "{\"error\":\"internal error");
    resp_free(&r);
    pthread_mutex_lock(&fake.lock);
    fake.null_body = false;
    pthread_mutex_unlock(&fake.lock);
}

static void test_query(uint16_t port)
{
    resp_t r;
    struct {
        const char *query, *param;
    } bad[] = {
        {"severity=urgent", "severity: expected low, medium, high or critical"},
        {"severity=HIGH", "severity:"},
        {"state=bogus", "state: expected observed"},
        {"rule=a%20b", "rule: expected a rule id"},
        {"since=yesterday", "since: expected an RFC 3339 time"},
        {"since=2026-13-01T00:00:00Z", "since:"},
        {"limit=0", "limit: expected an integer from 1 to 500"},
        {"limit=501", "limit:"},
        {"limit=abc", "limit:"},
        {"limit=-1", "limit:"},
        {"limit=%2B5", "limit:"},
        {"offset=-1", "offset: expected an integer from 0"},
        {"offset=99999999999", "offset:"},
        {"offset=1.5", "offset:"},
    };
    int c0 = calls();
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *p = tw_xasprintf("/api/v1/flagged?%s", bad[i].query);
        get(port, p, NULL, &r);
        TW_CHECK_INT(r.status, 400);
        CHECK_BODY_HAS(&r, bad[i].param);
        resp_free(&r);
        free(p);
    }
    TW_CHECK_INT(calls() - c0, 0);

    get(port,
        "/api/v1/flagged?severity=high&state=frozen&rule=impossible_travel"
        "&since=2026-11-29T07%3A57%3A53Z&limit=10&offset=20&unknown=1",
        NULL, &r);
    TW_CHECK_INT(r.status, 200);
    CHECK_BODY_HAS(&r, "\"offset\":20,\"limit\":10");
    resp_free(&r);
    TW_CHECK_INT(fake.q.min_severity, 2);
    TW_CHECK_STR(fake.q.state, "frozen");
    TW_CHECK_STR(fake.q.rule, "impossible_travel");
    TW_CHECK(fake.q.since_ns == 1795939073LL * 1000000000LL);
    TW_CHECK_INT(fake.q.limit, 10);
    TW_CHECK_INT(fake.q.offset, 20);

    /* Empty values mean "any", as a form sends them. */
    get(port, "/api/v1/flagged?severity=&state=&rule=&since=&limit=&offset=", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    TW_CHECK_INT(fake.q.min_severity, -1);
    TW_CHECK_STR(fake.q.state, "(any)");
    TW_CHECK_STR(fake.q.rule, "(any)");
    TW_CHECK(fake.q.since_ns == INT64_MIN);
    TW_CHECK_INT(fake.q.limit, 50);
    TW_CHECK_INT(fake.q.offset, 0);
    get(port, "/api/v1/flagged?severity=low&limit=500&since=2026-11-29T08:57:53%2B01:00", NULL,
        &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    TW_CHECK_INT(fake.q.min_severity, 0);
    TW_CHECK_INT(fake.q.limit, 500);
    TW_CHECK(fake.q.since_ns == 1795939073LL * 1000000000LL);
}

static void post_body(uint16_t port, const char *ctype, const char *body, resp_t *r)
{
    char *h = ctype ? tw_xasprintf("Content-Type: %s\r\n", ctype) : tw_xstrdup("");
    http(port, "POST", "/api/v1/tokens/" ID_OK "/dismiss", h, body, r);
    free(h);
}

static void test_bodies(uint16_t port)
{
    resp_t r;
    int c0 = calls();
    struct {
        const char *ctype, *body;
        int status;
        const char *msg;
    } cases[] = {
        {"text/plain", "{\"analyst\":\"a\"}", 415, "Content-Type: expected application/json"},
        {NULL, "{\"analyst\":\"a\"}", 415, "Content-Type"},
        {"application/jsonx", "{\"analyst\":\"a\"}", 415, "Content-Type"},
        {"application/json; charset=latin1", "{\"analyst\":\"a\"}", 415, "Content-Type"},
        {"application/x-www-form-urlencoded", "analyst=a", 415, "Content-Type"},
        {"application/json", "", 400, "body: expected a JSON object"},
        {"application/json", "{\"analyst\":", 400, "body: not valid JSON"},
        {"application/json", "{\"analyst\":\"a\"} x", 400, "body: not valid JSON"},
        {"application/json", "[\"analyst\"]", 400, "body: expected a JSON object"},
        {"application/json", "\"analyst\"", 400, "body: expected a JSON object"},
        {"application/json", "{}", 400, "analyst: required"},
        {"application/json", "{\"note\":\"x\"}", 400, "analyst: required"},
        {"application/json", "{\"analyst\":\"\"}", 400,
         "analyst: expected a string of 1 to 64"},
        {"application/json", "{\"analyst\":\"   \"}", 400, "analyst:"},
        {"application/json", "{\"analyst\":42}", 400, "analyst:"},
        {"application/json", "{\"analyst\":null}", 400, "analyst:"},
        {"application/json", "{\"analyst\":\"a\\u001bb\"}", 400, "analyst:"},
        {"application/json", "{\"analyst\":\"a\\nb\"}", 400, "analyst:"},
        {"application/json", "{\"analyst\":\"a\xff\"}", 400, "analyst:"},
        {"application/json", "{\"analyst\":\"a\\u0085\"}", 400, "analyst:"},
        {"application/json", "{\"analyst\":\"a\\u0000b\"}", 400, "\\\\u0000"},
        {"application/json", "{\"analyst\":\"a\",\"note\":\"x\\u0000\"}", 400, "u0000"},
        {"application/json", "{\"analyst\":\"a\",\"note\":5}", 400, "note: expected a string"},
        {"application/json", "{\"analyst\":\"a\",\"note\":\"\\u0007\"}", 400, "note:"},
        {"application/json", "{\"analyst\":\"a\",\"notes\":\"x\"}", 400, "unknown member"},
        {"application/json", "{\"analyst\":\"a\",\"analyst\":\"b\"}", 400, "appears twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        post_body(port, cases[i].ctype, cases[i].body, &r);
        TW_CHECK_INT(r.status, cases[i].status);
        if (r.status != cases[i].status)
            fprintf(stderr, "  case %zu: %s\n", i, cases[i].body);
        CHECK_BODY_HAS(&r, cases[i].msg);
        check_json_headers(&r);
        resp_free(&r);
    }
    /* A NUL byte inside the body. */
    static const char nul_req[] = "POST /api/v1/tokens/" ID_OK "/ack HTTP/1.1\r\nHost: x\r\n"
                                  "Connection: close\r\nContent-Type: application/json\r\n"
                                  "Content-Length: 16\r\n\r\n{\"analyst\":\"a\0\"}";
    exchange_n(port, nul_req, sizeof nul_req - 1, &r);
    TW_CHECK_INT(r.status, 400);
    resp_free(&r);
    /* Lengths: analyst 65 characters no, 64 two-byte characters yes; note
     * 1001 no, 1000 with newlines yes. */
    char analyst[200], note[1100];
    memset(analyst, 'a', 65);
    analyst[65] = '\0';
    char *b = tw_xasprintf("{\"analyst\":\"%s\"}", analyst);
    post_body(port, "application/json", b, &r);
    TW_CHECK_INT(r.status, 400);
    resp_free(&r);
    free(b);
    TW_CHECK_INT(calls() - c0, 0);
    analyst[0] = '\0';
    for (int i = 0; i < 64; i++)
        strcat(analyst, "\xc3\xa9");
    memset(note, 'n', 1001);
    note[1001] = '\0';
    b = tw_xasprintf("{\"analyst\":\"%s\",\"note\":\"%s\"}", analyst, note);
    post_body(port, "application/json", b, &r);
    TW_CHECK_INT(r.status, 400);
    CHECK_BODY_HAS(&r, "note: expected a string of at most 1000");
    resp_free(&r);
    free(b);
    TW_CHECK_INT(calls() - c0, 0);
    note[998] = '\0';
    b = tw_xasprintf("{\"analyst\":\"%s\",\"note\":\"%s\\n\\t\"}", analyst, note);
    post_body(port, "Application/JSON; charset=UTF-8", b, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    free(b);
    TW_CHECK_INT(calls() - c0, 1);
    TW_CHECK_STR(fake.analyst, analyst);
    TW_CHECK_INT(strlen(fake.note), 1000);
    TW_CHECK_INT(fake.action, TW_API_DISMISS);
    post_body(port, "application/json", "{\"analyst\":\"a\",\"note\":null}", &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    /* An escaped backslash before "u0000" is just text. */
    post_body(port, "application/json", "{\"analyst\":\"a\",\"note\":\"C:\\\\u0000\"}", &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    TW_CHECK_STR(fake.note, "C:\\u0000");

    /* Exactly 8192 bytes: accepted. */
    char *big = tw_xmalloc(TW_API_BODY_MAX + 2);
    const char *head = "{\"analyst\":\"carol\",\"note\":\"";
    size_t hl = strlen(head);
    memcpy(big, head, hl);
    memset(big + hl, ' ', TW_API_BODY_MAX - hl - 2);
    memcpy(big + TW_API_BODY_MAX - 2, "\"}", 3);
    TW_CHECK_INT(strlen(big), TW_API_BODY_MAX);
    /* The note would be 8163 spaces: too long, but the body was read and
     * judged (400, not 413). */
    post_body(port, "application/json", big, &r);
    TW_CHECK_INT(r.status, 400);
    CHECK_BODY_HAS(&r, "note:");
    resp_free(&r);
    memcpy(big, "{\"analyst\":\"carol\"}", 19);
    memset(big + 19, ' ', TW_API_BODY_MAX - 19);
    big[TW_API_BODY_MAX] = '\0';
    post_body(port, "application/json", big, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    TW_CHECK_STR(fake.analyst, "carol");
    /* 8193 bytes: 413. */
    big[TW_API_BODY_MAX] = ' ';
    big[TW_API_BODY_MAX + 1] = '\0';
    int c1 = calls();
    post_body(port, "application/json", big, &r);
    TW_CHECK_INT(r.status, 413);
    CHECK_BODY_HAS(&r, "request body too large: at most 8192 bytes");
    check_json_headers(&r);
    resp_free(&r);
    free(big);

    /* A huge announced body is refused from the headers, before any of it
     * is sent (a server waiting for it would hit the 2 s idle timeout and
     * close without an answer). */
    static const char huge[] = "POST /api/v1/tokens/" ID_OK "/ack HTTP/1.1\r\nHost: x\r\n"
                               "Content-Type: application/json\r\n"
                               "Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n";
    exchange_n(port, huge, sizeof huge - 1, &r);
    TW_CHECK_INT(r.status, 413);
    TW_CHECK(strstr(r.raw, "100 Continue") == NULL);
    resp_free(&r);

    /* A chunked body that grows past the limit is cut off with 413 (or,
     * if the server could not answer in the middle of the body, with a
     * closed connection), never handed to the backend. */
    size_t cap = 64 * 1024;
    char *chunked = tw_xmalloc(cap);
    int n = snprintf(chunked, cap,
                     "POST /api/v1/tokens/" ID_OK "/ack HTTP/1.1\r\nHost: x\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    size_t len = (size_t)n;
    for (int i = 0; i < 10; i++) {
        len += (size_t)snprintf(chunked + len, cap - len, "400\r\n");
        memset(chunked + len, ' ', 0x400);
        len += 0x400;
        len += (size_t)snprintf(chunked + len, cap - len, "\r\n");
    }
    len += (size_t)snprintf(chunked + len, cap - len, "0\r\n\r\n");
    exchange_n(port, chunked, len, &r);
    TW_CHECK(r.status == 413 || r.status == -1);
    printf("chunked body past the limit: %s\n",
           r.status == 413 ? "413" : "connection closed without an answer");
    resp_free(&r);
    free(chunked);
    TW_CHECK_INT(calls() - c1, 0);

    /* A small chunked body is fine. */
    static const char small_chunked[] =
        "POST /api/v1/tokens/" ID_OK "/confirm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\n{\"ana\r\nd\r\nlyst\":\"dave\"}\r\n0\r\n\r\n";
    exchange_n(port, small_chunked, sizeof small_chunked - 1, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    TW_CHECK_STR(fake.analyst, "dave");
    TW_CHECK_INT(fake.action, TW_API_CONFIRM);

    /* The server carries on. */
    get(port, "/-/healthy", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
}

/* ------------------------------------------------------------------------ */
/* With credentials                                                         */

typedef struct creds {
    char *bearer_file, *basic_file;
    char *bearer_ok, *bearer_bad, *basic_plain, *basic_hash, *basic_bad, *basic_unknown;
} creds_t;

static void make_creds(creds_t *c)
{
    c->bearer_file = write_file("bearer", BEARER "\n", 0600);
    char hash[crypto_pwhash_STRBYTES];
    TW_CHECK_INT(
        tw_api_hash_password(BASIC_HASH_PASS, strlen(BASIC_HASH_PASS), hash, sizeof hash), 0);
    TW_CHECK(strncmp(hash, "$argon2id$", 10) == 0);
    char *basic = tw_xasprintf("# analysts\n\nalice:" BASIC_PLAIN_PASS "\r\nbob:%s\n"
                               "prom:scrape:with:colons\n",
                               hash);
    c->basic_file = write_file("basic", basic, 0400);
    free(basic);
    c->bearer_ok = tw_xstrdup("Authorization: Bearer " BEARER "\r\n");
    c->bearer_bad = tw_xstrdup("Authorization: Bearer " BEARER "x\r\n");
    c->basic_plain = basic_header("alice", BASIC_PLAIN_PASS);
    c->basic_hash = basic_header("bob", BASIC_HASH_PASS);
    c->basic_bad = basic_header("alice", BASIC_HASH_PASS);
    c->basic_unknown = basic_header("mallory", BASIC_PLAIN_PASS);
}

static void free_creds(creds_t *c)
{
    free(c->bearer_file);
    free(c->basic_file);
    free(c->bearer_ok);
    free(c->bearer_bad);
    free(c->basic_plain);
    free(c->basic_hash);
    free(c->basic_bad);
    free(c->basic_unknown);
}

static void check_challenges(const resp_t *r, bool bearer, bool basic, bool invalid_token)
{
    char *h0 = header_n(r, "WWW-Authenticate", 0), *h1 = header_n(r, "WWW-Authenticate", 1);
    const char *want_bearer = invalid_token
                                  ? "Bearer realm=\"tokenwatch\", error=\"invalid_token\""
                                  : "Bearer realm=\"tokenwatch\"";
    const char *want_basic = "Basic realm=\"tokenwatch\", charset=\"UTF-8\"";
    if (bearer && basic) {
        TW_CHECK_STR(h0, want_bearer);
        TW_CHECK_STR(h1, want_basic);
    } else {
        TW_CHECK_STR(h0, bearer ? want_bearer : want_basic);
        TW_CHECK(h1 == NULL);
    }
    free(h0);
    free(h1);
}

static void test_auth(uint16_t port, const creds_t *c)
{
    resp_t r;
    const char *endpoints[] = {"/api/v1/stats", "/api/v1/flagged?severity=high",
                               "/api/v1/tokens/" ID_OK, "/api/v1/nope",
                               "/api/v1/tokens/not-an-id"};
    int c0 = calls();
    for (size_t i = 0; i < sizeof endpoints / sizeof *endpoints; i++) {
        get(port, endpoints[i], NULL, &r);
        TW_CHECK_INT(r.status, 401);
        check_challenges(&r, true, true, false);
        check_json_headers(&r);
        CHECK_BODY_HAS(&r, "{\"error\":\"credentials required: send Authorization: Bearer");
        resp_free(&r);
        get(port, endpoints[i], c->bearer_bad, &r);
        TW_CHECK_INT(r.status, 401);
        check_challenges(&r, true, true, true);
        CHECK_BODY_HAS(&r, "wrong credentials");
        resp_free(&r);
        const char *wrong[] = {c->basic_bad,
                               c->basic_unknown,
                               "Authorization: Bearer\r\n",
                               "Authorization: Digest x=1\r\n",
                               "Authorization: Basic ***\r\n",
                               "Authorization: Basic bm9jb2xvbg==\r\n"};
        for (size_t k = 0; k < sizeof wrong / sizeof *wrong; k++) {
            get(port, endpoints[i], wrong[k], &r);
            TW_CHECK_INT(r.status, 401);
            resp_free(&r);
        }
    }
    TW_CHECK_INT(calls() - c0, 0);

    const char *good[] = {c->bearer_ok, c->basic_plain, c->basic_hash, c->basic_hash,
                          "authorization: bearer " BEARER "\r\n"};
    for (size_t k = 0; k < sizeof good / sizeof *good; k++) {
        get(port, "/api/v1/stats", good[k], &r);
        TW_CHECK_INT(r.status, 200);
        resp_free(&r);
        get(port, "/api/v1/tokens/" ID_OK, good[k], &r);
        TW_CHECK_INT(r.status, 200);
        resp_free(&r);
        get(port, "/api/v1/flagged?limit=3", good[k], &r);
        TW_CHECK_INT(r.status, 200);
        resp_free(&r);
        /* Past authentication, the usual checks. */
        get(port, "/api/v1/tokens/not-an-id", good[k], &r);
        TW_CHECK_INT(r.status, 400);
        resp_free(&r);
    }
    TW_CHECK_INT(calls() - c0, 15);

    /* Actions: credentials are checked before the body is read. */
    char *h = tw_xasprintf("Content-Type: application/json\r\n%s", c->bearer_ok);
    http(port, "POST", "/api/v1/tokens/" ID_OK "/ack", h, "{\"analyst\":\"erin\"}", &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    free(h);
    TW_CHECK_STR(fake.analyst, "erin");
    h = tw_xasprintf("Content-Type: application/json\r\n%s", c->bearer_bad);
    http(port, "POST", "/api/v1/tokens/" ID_OK "/ack", h, "{\"analyst\":\"eve\"}", &r);
    TW_CHECK_INT(r.status, 401);
    resp_free(&r);
    free(h);
    static const char huge[] = "POST /api/v1/tokens/" ID_OK "/ack HTTP/1.1\r\nHost: x\r\n"
                               "Content-Type: application/json\r\n"
                               "Content-Length: 100000000\r\n\r\n";
    exchange_n(port, huge, sizeof huge - 1, &r);
    TW_CHECK_INT(r.status, 401);
    resp_free(&r);
    TW_CHECK_STR(fake.analyst, "erin");

    /* The page wants basic credentials (a browser can send them). */
    get(port, "/", NULL, &r);
    TW_CHECK_INT(r.status, 401);
    check_challenges(&r, true, true, false);
    check_header(&r, "Content-Type", "text/plain; charset=utf-8");
    resp_free(&r);
    get(port, "/static/app.js", NULL, &r);
    TW_CHECK_INT(r.status, 401);
    resp_free(&r);
    get(port, "/", c->basic_plain, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    get(port, "/static/app.js", c->bearer_ok, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);

    /* Probes never, /metrics not without metrics_auth. */
    get(port, "/-/healthy", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    get(port, "/-/ready", c->bearer_bad, &r);
    TW_CHECK_INT(r.status, 503);
    resp_free(&r);
    get(port, "/metrics", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    /* Unknown paths: 404 without asking for credentials. */
    get(port, "/nope", NULL, &r);
    TW_CHECK_INT(r.status, 404);
    resp_free(&r);
}

/* The log gets the failed attempts, never a credential. */
static void test_auth_log(uint16_t port, const creds_t *c)
{
    char *logp = tmp_path("stderr.log");
    fflush(stderr);
    int saved = dup(2);
    int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    dup2(fd, 2);
    close(fd);
    resp_t r;
    get(port, "/api/v1/stats", c->bearer_bad, &r);
    resp_free(&r);
    get(port, "/api/v1/stats", c->basic_bad, &r);
    resp_free(&r);
    get(port, "/api/v1/stats", c->bearer_ok, &r);
    resp_free(&r);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *text;
    size_t len;
    TW_CHECK_INT(tw_read_file(logp, &text, &len, NULL), 0);
    if (text) {
        TW_CHECK(strstr(text, "wrong credentials for the API from 127.0.0.1") != NULL);
        TW_CHECK(strstr(text, BEARER) == NULL);
        TW_CHECK(strstr(text, BASIC_HASH_PASS) == NULL);
        TW_CHECK(strstr(text, BASIC_PLAIN_PASS) == NULL);
        TW_CHECK(strstr(text, "Authorization") == NULL);
        free(text);
    }
    free(logp);
}

static void test_bearer_only(tw_metrics_t *m, const creds_t *c)
{
    tw_http_opts_t o = {.api = &backend, .bearer_token_file = c->bearer_file};
    tw_http_t *h = start(m, &o);
    TW_CHECK(h != NULL);
    if (!h)
        return;
    uint16_t port = tw_http_port(h);
    resp_t r;
    get(port, "/api/v1/stats", c->basic_plain, &r);
    TW_CHECK_INT(r.status, 401);
    check_challenges(&r, true, false, false);
    resp_free(&r);
    get(port, "/api/v1/stats", c->bearer_ok, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    /* The page's files are public: its data calls carry the token. */
    get(port, "/", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    get(port, "/static/app.js", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);

    /* Reload: the new token works, the old one no longer. */
    char *newf = write_file("bearer2", "another-token-for-reload\r\n", 0600);
    tw_err_t err = {{0}};
    TW_CHECK_INT(tw_http_reload_auth(h, newf, NULL, &err), 0);
    get(port, "/api/v1/stats", c->bearer_ok, &r);
    TW_CHECK_INT(r.status, 401);
    resp_free(&r);
    get(port, "/api/v1/stats", "Authorization: Bearer another-token-for-reload\r\n", &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    /* A bad file is refused and the running credentials stay. */
    chmod(newf, 0644);
    TW_CHECK_INT(tw_http_reload_auth(h, newf, NULL, &err), -1);
    TW_CHECK(strstr(err.msg, "mode 0644") != NULL);
    get(port, "/api/v1/stats", "Authorization: Bearer another-token-for-reload\r\n", &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    free(newf);
    tw_http_stop(h);
}

static void test_metrics_auth(tw_metrics_t *m, const creds_t *c)
{
    tw_err_t err = {{0}};
    tw_http_opts_t bad = {.address = "127.0.0.1", .metrics_auth = true};
    TW_CHECK(tw_http_start(&bad, m, &err) == NULL);
    TW_CHECK(strstr(err.msg, "/metrics behind authentication needs") != NULL);

    /* Without an API: only /metrics is guarded, with basic credentials. */
    tw_http_opts_t o = {.basic_auth_file = c->basic_file, .metrics_auth = true};
    tw_http_t *h = start(m, &o);
    TW_CHECK(h != NULL);
    if (!h)
        return;
    uint16_t port = tw_http_port(h);
    resp_t r;
    get(port, "/metrics", NULL, &r);
    TW_CHECK_INT(r.status, 401);
    check_challenges(&r, false, true, false);
    TW_CHECK(!body_has(&r, "auth_token_check"));
    resp_free(&r);
    get(port, "/metrics", c->basic_bad, &r);
    TW_CHECK_INT(r.status, 401);
    resp_free(&r);
    get(port, "/metrics", c->basic_plain, &r);
    TW_CHECK_INT(r.status, 200);
    CHECK_BODY_HAS(&r, "auth_token_check{input=\"gateway\"} 7");
    resp_free(&r);
    /* A colon inside the password. */
    char *prom = basic_header("prom", "scrape:with:colons");
    get(port, "/metrics", prom, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    free(prom);
    get(port, "/-/healthy", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    /* No API: /api and / are unknown, not guarded. */
    get(port, "/api/v1/stats", NULL, &r);
    TW_CHECK_INT(r.status, 404);
    resp_free(&r);
    get(port, "/", NULL, &r);
    TW_CHECK_INT(r.status, 404);
    resp_free(&r);
    tw_http_stop(h);
}

/* ------------------------------------------------------------------------ */
/* Credential files                                                         */

static void expect_load_error(const char *bearer, const char *basic, const char *want)
{
    tw_api_auth_t *a = NULL;
    tw_err_t err = {{0}};
    TW_CHECK_INT(tw_api_auth_load(&a, bearer, basic, &err), -1);
    TW_CHECK(a == NULL);
    TW_CHECK(strstr(err.msg, want) != NULL);
    if (!strstr(err.msg, want))
        fprintf(stderr, "  error: %s\n  wanted: %s\n", err.msg, want);
    TW_CHECK(strstr(err.msg, "hunter2") == NULL);
}

static void test_credential_files(void)
{
    char *p = write_file("t1", "hunter2-token\n", 0640);
    expect_load_error(p, NULL, "expected a file readable by its owner only");
    expect_load_error(p, NULL, "mode 0640");
    chmod(p, 0604);
    expect_load_error(p, NULL, "mode 0604");
    free(p);
    p = write_file("t2", "\n", 0600);
    expect_load_error(p, NULL, "the file is empty");
    free(p);
    p = write_file("t3", "hunter2 token\n", 0600);
    expect_load_error(p, NULL, "expected one line of printable ASCII without spaces");
    free(p);
    p = write_file("t4", "hunter2\nsecond\n", 0600);
    expect_load_error(p, NULL, "found a byte 0x0a");
    free(p);
    char *missing = tmp_path("does-not-exist");
    expect_load_error(missing, NULL, "cannot open");
    free(missing);
    expect_load_error(tmpdir, NULL, "expected a regular file");

    p = write_file("b1", "alice:hunter2\nbroken line\n", 0600);
    expect_load_error(NULL, p, "line 2: expected \"user:password\"");
    free(p);
    p = write_file("b2", "alice:hunter2\nalice:other\n", 0600);
    expect_load_error(NULL, p, "line 2: user \"alice\" is listed twice");
    free(p);
    p = write_file("b3", ":hunter2\n", 0600);
    expect_load_error(NULL, p, "line 1:");
    free(p);
    p = write_file("b4", "alice:\n", 0600);
    expect_load_error(NULL, p, "line 1:");
    free(p);
    p = write_file("b5", "alice:$argon2id$v=19$m=65536,t=2,p=1$hunter2\n", 0600);
    expect_load_error(NULL, p, "line 1: expected an argon2id hash");
    free(p);
    p = write_file("b6", "alice:$argon2i$v=19$m=4096,t=3,p=1$c2FsdA$aGFzaA\n", 0600);
    expect_load_error(NULL, p, "line 1: expected an argon2id hash");
    free(p);
    p = write_file("b7", "# nobody\n\n", 0600);
    expect_load_error(NULL, p, "expected at least one");
    free(p);
    p = write_file("b8", "alice:hunter2\n", 0644);
    expect_load_error(NULL, p, "mode 0644");
    free(p);

    /* Nothing configured accepts nothing. */
    tw_api_auth_t *a;
    TW_CHECK_INT(tw_api_auth_load(&a, NULL, NULL, NULL), 0);
    TW_CHECK_INT(tw_api_auth_kinds(a), 0);
    TW_CHECK_INT(tw_api_auth_check(a, "Bearer x", TW_AUTH_BEARER | TW_AUTH_BASIC),
                 TW_AUTH_MISSING);
    tw_api_auth_free(a);
    tw_api_auth_free(NULL);
    /* Without a trailing newline, and with CRLF. */
    p = write_file("t5", "tok-without-newline", 0600);
    TW_CHECK_INT(tw_api_auth_load(&a, p, NULL, NULL), 0);
    TW_CHECK_INT(tw_api_auth_check(a, "Bearer tok-without-newline", TW_AUTH_BEARER),
                 TW_AUTH_OK);
    TW_CHECK_INT(tw_api_auth_check(a, "Bearer tok-without-newlin", TW_AUTH_BEARER),
                 TW_AUTH_INVALID);
    TW_CHECK_INT(tw_api_auth_check(a, "Bearer tok-without-newline", TW_AUTH_BASIC),
                 TW_AUTH_MISSING);
    TW_CHECK_INT(tw_api_auth_check(a, NULL, TW_AUTH_BEARER), TW_AUTH_MISSING);
    tw_api_auth_free(a);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* A slow backend call and a scrape                                         */

typedef struct {
    uint16_t port;
    int status;
} slow_call_t;

static void *slow_call(void *p)
{
    slow_call_t *s = p;
    resp_t r;
    get(s->port, "/api/v1/stats", NULL, &r);
    s->status = r.status;
    resp_free(&r);
    return NULL;
}

static void test_slow_backend(uint16_t port)
{
    pthread_mutex_lock(&fake.lock);
    fake.slow = true;
    fake.release = false;
    pthread_mutex_unlock(&fake.lock);
    slow_call_t s = {port, 0};
    pthread_t t;
    TW_CHECK_INT(pthread_create(&t, NULL, slow_call, &s), 0);
    /* Wait (deadline 10 s) until the backend is inside the slow call. */
    pthread_mutex_lock(&fake.lock);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    while (!fake.in_slow)
        if (pthread_cond_timedwait(&fake.cond, &fake.lock, &dl) != 0)
            break;
    bool inside = fake.in_slow;
    pthread_mutex_unlock(&fake.lock);
    TW_CHECK(inside);

    /* Scrapes, probes and other API calls are served meanwhile. */
    resp_t r;
    for (int i = 0; i < 3; i++) {
        get(port, "/metrics", NULL, &r);
        TW_CHECK_INT(r.status, 200);
        resp_free(&r);
    }
    get(port, "/-/healthy", NULL, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    get(port, "/api/v1/tokens/" ID_OK, NULL, &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
    pthread_mutex_lock(&fake.lock);
    bool still = fake.in_slow;
    fake.release = true;
    fake.slow = false;
    pthread_cond_broadcast(&fake.cond);
    pthread_mutex_unlock(&fake.lock);
    TW_CHECK(still); /* the scrapes did not wait for the slow call */
    pthread_join(t, NULL);
    TW_CHECK_INT(s.status, 200);
}

/* ------------------------------------------------------------------------ */
/* TLS                                                                      */

static int cli(char **argv, int argc, char **out);

static bool make_cert(const char *cert, const char *key)
{
    char *openssl[] = {(char *)"openssl",
                       (char *)"req",
                       (char *)"-x509",
                       (char *)"-newkey",
                       (char *)"ec",
                       (char *)"-pkeyopt",
                       (char *)"ec_paramgen_curve:prime256v1",
                       (char *)"-nodes",
                       (char *)"-keyout",
                       (char *)key,
                       (char *)"-out",
                       (char *)cert,
                       (char *)"-days",
                       (char *)"2",
                       (char *)"-subj",
                       (char *)"/CN=localhost",
                       (char *)"-addext",
                       (char *)"subjectAltName=IP:127.0.0.1,DNS:localhost",
                       NULL};
    if (run(openssl) == 0)
        return true;
    char *tmpl = write_file("cert.tmpl",
                            "cn = localhost\nip_address = 127.0.0.1\ndns_name = localhost\n"
                            "expiration_days = 2\ntls_www_server\nsigning_key\n",
                            0600);
    char *genkey[] = {(char *)"certtool",
                      (char *)"--generate-privkey",
                      (char *)"--key-type=ecdsa",
                      (char *)"--outfile",
                      (char *)key,
                      NULL};
    char *gencert[] = {(char *)"certtool",
                       (char *)"--generate-self-signed",
                       (char *)"--load-privkey",
                       (char *)key,
                       (char *)"--template",
                       tmpl,
                       (char *)"--outfile",
                       (char *)cert,
                       NULL};
    bool ok = run(genkey) == 0 && run(gencert) == 0;
    free(tmpl);
    return ok;
}

static size_t sink(char *d, size_t s, size_t n, void *u)
{
    char **out = u;
    size_t len = *out ? strlen(*out) : 0;
    *out = tw_xrealloc(*out, len + s * n + 1);
    memcpy(*out + len, d, s * n);
    (*out)[len + s * n] = '\0';
    return s * n;
}

/* GET over HTTPS with libcurl, trusting cacert. Returns the status, or -1
 * (then *err_out has curl's message). */
static long tls_get(uint16_t port, const char *path, const char *cacert, const char *auth,
                    char **body, char *errbuf)
{
    CURL *c = curl_easy_init();
    char *url = tw_xasprintf("https://127.0.0.1:%u%s", (unsigned)port, path);
    struct curl_slist *h = auth ? curl_slist_append(NULL, auth) : NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(url);
    return status;
}

static void test_tls(tw_metrics_t *m, const creds_t *c)
{
    if (!tw_http_tls_supported()) {
        printf("libmicrohttpd without TLS: TLS checks skipped\n");
        return;
    }
    char *cert = tmp_path("cert.pem"), *key = tmp_path("key.pem");
    if (!make_cert(cert, key)) {
        printf("neither openssl nor certtool (Debian: openssl or gnutls-bin) made a "
               "certificate: TLS checks skipped\n");
        free(cert);
        free(key);
        return;
    }
    chmod(key, 0600);
    tw_err_t err = {{0}};
    TW_CHECK_INT(tw_http_check_pem(cert, false, &err), 0);
    TW_CHECK_INT(tw_http_check_pem(key, true, &err), 0);
    tw_http_opts_t o = {.api = &backend,
                        .bearer_token_file = c->bearer_file,
                        .tls_cert_file = cert,
                        .tls_key_file = key};
    tw_http_t *h = start(m, &o);
    TW_CHECK(h != NULL);
    if (h) {
        uint16_t port = tw_http_port(h);
        char errbuf[CURL_ERROR_SIZE] = "";
        char *body = NULL;
        TW_CHECK_INT(tls_get(port, "/-/healthy", cert, NULL, &body, errbuf), 200);
        TW_CHECK_STR(body, "tokenwatch is Healthy.\n");
        if (!body)
            fprintf(stderr, "  curl: %s\n", errbuf);
        free(body);
        body = NULL;
        TW_CHECK_INT(tls_get(port, "/api/v1/stats", cert, NULL, &body, errbuf), 401);
        free(body);
        body = NULL;
        TW_CHECK_INT(tls_get(port, "/api/v1/stats", cert, "Authorization: Bearer " BEARER,
                             &body, errbuf),
                     200);
        TW_CHECK(body && strstr(body, "tokens_tracked"));
        free(body);
        body = NULL;
        /* Plain HTTP to the TLS port gets no HTTP answer. */
        resp_t r;
        get(port, "/-/healthy", NULL, &r);
        TW_CHECK(r.status != 200);
        resp_free(&r);
        /* The CLI against it, trusting the certificate from the config. */
        char *cfg_text = tw_xasprintf(
            "{\"state_dir\":\"s\",\"http\":{\"listen\":\"127.0.0.1:%u\",\"auth\":"
            "{\"bearer_token_file\":\"bearer\"},\"tls\":{\"cert_file\":\"cert.pem\","
            "\"key_file\":\"key.pem\"}}}",
            (unsigned)port);
        char *cfg = write_file("tls-config.json", cfg_text, 0644);
        free(cfg_text);
        char *argv[] = {(char *)"token",  (char *)ID_OK, (char *)"-c", cfg,
                        (char *)"--json", NULL};
        char *out = NULL;
        TW_CHECK_INT(cli(argv, 5, &out), 0);
        TW_CHECK(out && strstr(out, "\"token_id\":\"" ID_OK "\""));
        free(out);
        /* Without the certificate as trust anchor the check fails: exit 1. */
        char *argv2[] = {
            (char *)"token", (char *)ID_OK, (char *)"--url", NULL, (char *)"--token-file",
            c->bearer_file,  NULL};
        char *https = tw_xasprintf("https://127.0.0.1:%u", (unsigned)port);
        argv2[3] = https; /* getopt_long may permute argv2 */
        TW_CHECK_INT(cli(argv2, 6, &out), 1);
        TW_CHECK(out && strstr(out, "cannot reach the daemon at https://127.0.0.1:"));
        free(out);
        free(https);
        free(cfg);
        tw_http_stop(h);
    }
    /* Start errors. */
    chmod(key, 0644);
    err.msg[0] = '\0';
    TW_CHECK(tw_http_start(&o, m, &err) == NULL);
    TW_CHECK(strstr(err.msg, "the private key is readable by others (mode 0644)") != NULL);
    chmod(key, 0640); /* group access is fine */
    TW_CHECK_INT(tw_http_check_pem(key, true, &err), 0);
    tw_http_opts_t half = {.address = "127.0.0.1", .tls_cert_file = cert};
    TW_CHECK(tw_http_start(&half, m, &err) == NULL);
    TW_CHECK(strstr(err.msg, "both a certificate file and a key file") != NULL);
    char *notpem = write_file("notpem", "hello\n", 0600);
    TW_CHECK_INT(tw_http_check_pem(notpem, false, &err), -1);
    TW_CHECK(strstr(err.msg, "expected PEM") != NULL);
    free(notpem);
    /* A certificate that does not match the key: a start error. */
    char *cert2 = tmp_path("cert2.pem"), *key2 = tmp_path("key2.pem");
    if (make_cert(cert2, key2)) {
        tw_http_opts_t mismatch = {
            .address = "127.0.0.1", .tls_cert_file = cert2, .tls_key_file = key};
        err.msg[0] = '\0';
        tw_http_t *hm = tw_http_start(&mismatch, m, &err);
        TW_CHECK(hm == NULL);
        TW_CHECK(strstr(err.msg, "cannot serve HTTPS") != NULL);
        printf("mismatched certificate and key: %s\n", err.msg);
        tw_http_stop(hm);
    }
    free(cert2);
    free(key2);
    free(cert);
    free(key);
}

/* ------------------------------------------------------------------------ */
/* The config's http section                                                */

static void test_config(const creds_t *c)
{
    /* ctest sets TW_SOURCE_DIR; run by hand, this file's own path tells. */
    const char *src = getenv("TW_SOURCE_DIR");
    char *formats =
        src ? tw_xasprintf("%s/rules/formats", src)
            : tw_xasprintf("%.*s/rules/formats",
                           (int)(strlen(__FILE__) - strlen("/tests/unit/test_api.c")),
                           __FILE__);
    char *cert = tmp_path("cfg-cert.pem"), *key = tmp_path("cfg-key.pem");
    bool have_cert = tw_http_tls_supported() && make_cert(cert, key);
    if (have_cert)
        chmod(key, 0600);
    struct {
        const char *http;
        const char *want; /* NULL: loads */
    } cases[] = {
        {"{\"auth\":{\"bearer_token_file\":\"bearer\"}}", NULL},
        {"{\"auth\":{\"basic_auth_file\":\"basic\"},\"metrics_auth\":true}", NULL},
        {"{\"auth\":{}}", NULL},
        {"{\"metrics_auth\":false}", NULL},
        {"{\"metrics_auth\":true}", "http.metrics_auth: expected false without"},
        {"{\"auth\":{},\"metrics_auth\":true}", "http.metrics_auth:"},
        {"{\"metrics_auth\":\"yes\"}", "http.metrics_auth:"},
        {"{\"auth\":\"bearer\"}", "http.auth:"},
        {"{\"auth\":{\"token_file\":\"bearer\"}}", "http.auth.token_file:"},
        {"{\"auth\":{\"bearer_token_file\":\"\"}}", "http.auth.bearer_token_file:"},
        {"{\"auth\":{\"bearer_token_file\":\"missing\"}}", "http.auth.bearer_token_file: /"},
        {"{\"auth\":{\"bearer_token_file\":\"loose\"}}", "http.auth.bearer_token_file: /"},
        {"{\"auth\":{\"basic_auth_file\":\"badbasic\"}}", "http.auth.basic_auth_file: /"},
        {"{\"tls\":{}}", "http.tls.cert_file:"},
        {"{\"tls\":{\"cert_file\":\"cfg-cert.pem\"}}", "http.tls.key_file:"},
        {"{\"tls\":{\"cert_file\":\"nope.pem\",\"key_file\":\"nope.pem\"}}",
         "http.tls.cert_file: /"},
        {"{\"tls\":{\"cert_file\":\"cfg-cert.pem\",\"key_file\":\"cfg-key.pem\","
         "\"ca\":1}}",
         "http.tls.ca:"},
    };
    char *loose = write_file("loose", "tok\n", 0644);
    char *badbasic = write_file("badbasic", "nocolon\n", 0600);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = tw_xasprintf("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"http\":%s}",
                                  formats, cases[i].http);
        char *cfg = write_file("config.json", text, 0644);
        tw_config_t *conf = NULL;
        tw_err_t err = {{0}};
        int rc = tw_config_load(&conf, cfg, &err);
        if (cases[i].want) {
            TW_CHECK_INT(rc, -1);
            char *want = tw_xasprintf("%s: %s", cfg, cases[i].want);
            TW_CHECK(strstr(err.msg, want) != NULL);
            if (!strstr(err.msg, want))
                fprintf(stderr, "  case %zu: %s\n  wanted: %s\n", i, err.msg, want);
            free(want);
        } else {
            TW_CHECK_INT(rc, 0);
            if (rc != 0)
                fprintf(stderr, "  case %zu: %s\n", i, err.msg);
        }
        tw_config_free(conf);
        free(cfg);
        free(text);
    }
    /* Every key, resolved against the config's directory, into the opts. */
    if (have_cert) {
        char *text = tw_xasprintf(
            "{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"http\":{\"listen\":\"127.0.0.1:0\","
            "\"auth\":{\"bearer_token_file\":\"bearer\",\"basic_auth_file\":\"%s\"},"
            "\"metrics_auth\":true,\"tls\":{\"cert_file\":\"cfg-cert.pem\","
            "\"key_file\":\"cfg-key.pem\"}}}",
            formats, c->basic_file);
        char *cfg = write_file("config.json", text, 0644);
        tw_config_t *conf = NULL;
        tw_err_t err = {{0}};
        TW_CHECK_INT(tw_config_load(&conf, cfg, &err), 0);
        if (conf) {
            tw_http_opts_t o = {0};
            tw_config_http_opts(conf, &o);
            TW_CHECK_STR(o.bearer_token_file, c->bearer_file);
            TW_CHECK_STR(o.basic_auth_file, c->basic_file);
            TW_CHECK(o.metrics_auth);
            TW_CHECK_STR(o.tls_cert_file, cert);
            TW_CHECK_STR(o.tls_key_file, key);
            TW_CHECK_STR(o.address, "127.0.0.1");
            TW_CHECK_INT(o.port, 0);
            TW_CHECK_INT(o.max_connections, 2048);
            tw_config_free(conf);
        } else {
            fprintf(stderr, "  %s\n", err.msg);
        }
        chmod(key, 0604);
        TW_CHECK_INT(tw_config_load(&conf, cfg, &err), -1);
        TW_CHECK(strstr(err.msg, "http.tls.key_file: ") != NULL &&
                 strstr(err.msg, "readable by others"));
        free(cfg);
        free(text);
    } else {
        printf("no certificate tool: the config's http.tls checks with real files skipped\n");
    }
    free(loose);
    free(badbasic);
    free(formats);
    free(cert);
    free(key);
}

/* ------------------------------------------------------------------------ */
/* The CLI                                                                  */

static char *render(int (*fn)(FILE *, const char *), const char *json, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    *rc = fn(f, json);
    fclose(f);
    return buf;
}

#define CHECK_HAS(text, needle)                                                                \
    do {                                                                                       \
        bool has_ = (text) && strstr((text), (needle)) != NULL;                                \
        TW_CHECK(has_);                                                                        \
        if (!has_)                                                                             \
            fprintf(stderr, "  wanted: %s\n  in:\n%s\n", (needle), (text) ? (text) : "");      \
    } while (0)

static const char flagged_json[] =
    "{\"total\":3,\"offset\":0,\"limit\":2,\"items\":["
    "{\"token_id\":\"tw_3f9a1c2b7d4e5f60\",\"token_hint\":\"at-\xe2\x80\xa6"
    "9f2c\","
    "\"principal\":\"alice\\u001b[31m\",\"state\":\"acked\",\"frozen\":true,"
    "\"severity\":\"critical\",\"rule\":\"impossible_travel\",\"rules\":[\"impossible_travel\"]"
    ","
    "\"first_flagged\":\"2026-11-29T07:57:53Z\",\"last_anomaly\":\"2026-11-29T07:57:53Z\","
    "\"anomalies\":3,\"ip\":\"203.0.113.7\",\"country\":\"AU\",\"city\":\"Sydney\","
    "\"input\":\"gateway\",\"freeze_until\":null},"
    "{\"token_id\":\"tw_00000000000000aa\",\"token_hint\":\"xy-\xe2\x80\xa6"
    "0000\","
    "\"principal\":null,\"state\":\"flagged\",\"frozen\":false,\"severity\":\"low\","
    "\"rule\":\"rate_spike\",\"rules\":[],\"first_flagged\":\"2026-11-28T01:00:00Z\","
    "\"last_anomaly\":\"2026-11-28T01:00:00Z\",\"anomalies\":1,\"ip\":\"10.0.0.1\","
    "\"country\":\"\",\"city\":\"\",\"input\":\"vault\",\"freeze_until\":null}]}";

static void test_cli_views(void)
{
    int rc;
    char *out = render(tw_client_print_flagged, flagged_json, &rc);
    TW_CHECK_INT(rc, 0);
    CHECK_HAS(out, "LAST ANOMALY");
    CHECK_HAS(out, "tw_3f9a1c2b7d4e5f60");
    CHECK_HAS(out, "acked (frozen)");
    CHECK_HAS(out, "Sydney, AU");
    CHECK_HAS(out, "10.0.0.1"); /* no location: the address */
    CHECK_HAS(out, "alice?[31m");
    TW_CHECK(out && !strchr(out, '\x1b'));
    CHECK_HAS(out, "2 of 3 flagged tokens (1-2); next page: --offset 2");
    free(out);
    out = render(tw_client_print_flagged, "{\"total\":0,\"offset\":0,\"items\":[]}", &rc);
    TW_CHECK_INT(rc, 0);
    CHECK_HAS(out, "no flagged tokens match");
    free(out);
    out = render(tw_client_print_flagged, "{\"error\":\"x\"}", &rc);
    TW_CHECK_INT(rc, -1);
    free(out);
    out = render(tw_client_print_flagged, "not json", &rc);
    TW_CHECK_INT(rc, -1);
    free(out);

    char hours[2048] = "[";
    for (int i = 0; i < 168; i++) {
        /* Mondays 09-17 busy, 09:00 the busiest, the rest empty. */
        int v = (i >= 9 && i <= 17) ? (i == 9 ? 80 : 10) : 0;
        snprintf(hours + strlen(hours), sizeof hours - strlen(hours), "%s%d", i ? "," : "", v);
    }
    strcat(hours, "]");
    char *token_json = tw_xasprintf(
        "{\"token_id\":\"tw_3f9a1c2b7d4e5f60\",\"token_hint\":\"at-\xe2\x80\xa6"
        "9f2c\","
        "\"principal\":\"alice\",\"state\":\"frozen\",\"frozen\":true,\"tracked\":true,"
        "\"learning\":false,\"first_seen\":\"2026-11-01T08:00:00Z\","
        "\"last_seen\":\"2026-11-29T07:57:53Z\",\"events\":1234,"
        "\"rate\":{\"window_s\":60,\"mean\":3.2,\"sd\":1.1,\"current\":45,"
        "\"baseline_windows\":1000},\"countries\":[\"DE\",\"AU\"],\"asns\":[3320],"
        "\"last_location\":{\"ip\":\"203.0.113.7\",\"country\":\"AU\",\"city\":\"Sydney\","
        "\"lat\":-33.8,\"lon\":151.2,\"radius_km\":20,\"time\":\"2026-11-29T07:57:53Z\"},"
        "\"time_zone\":\"Europe/Berlin\",\"hours\":%s,"
        "\"anomalies\":[{\"time\":\"2026-11-29T07:57:53Z\",\"token_id\":\"tw_"
        "3f9a1c2b7d4e5f60\","
        "\"token_hint\":\"at-\xe2\x80\xa6"
        "9f2c\",\"rule\":\"impossible_travel\","
        "\"kind\":\"geo_velocity\",\"severity\":\"critical\",\"action\":\"freeze\","
        "\"ip\":\"203.0.113.7\",\"country\":\"AU\",\"city\":\"Sydney\",\"input\":\"gateway\","
        "\"evidence\":{\"from\":{\"ip\":\"198.51.100.4\",\"country\":\"DE\",\"city\":"
        "\"Berlin\","
        "\"lat\":52.5,\"lon\":13.4,\"radius_km\":10,\"time\":\"2026-11-29T07:40:00Z\"},"
        "\"to\":{\"ip\":\"203.0.113.7\",\"country\":\"AU\",\"city\":\"Sydney\",\"lat\":-33.8,"
        "\"lon\":151.2,\"radius_km\":20,\"time\":\"2026-11-29T07:57:53Z\"},\"km\":16012.4,"
        "\"hours\":0.298,\"kmh\":53733.0,\"max_kmh\":900,\"extra_key\":\"shown\"}},"
        "{\"time\":\"2026-11-28T07:00:00Z\",\"rule\":\"rate_spike\",\"kind\":\"rate\","
        "\"severity\":\"medium\",\"action\":\"flag\",\"ip\":\"198.51.100.4\",\"input\":"
        "\"gateway\","
        "\"evidence\":{\"window_s\":60,\"count\":61,\"baseline_mean\":3.2,\"baseline_sd\":1.1,"
        "\"threshold\":32}},"
        "{\"time\":\"2026-11-27T08:00:00Z\",\"rule\":\"failure_burst\",\"kind\":\"failures\","
        "\"severity\":\"medium\",\"action\":\"flag\",\"ip\":\"198.51.100.4\",\"input\":"
        "\"gateway\","
        "\"evidence\":{\"scope\":\"token\",\"window_s\":300,\"rejected\":15,\"checks\":20}},"
        "{\"time\":\"2026-11-27T07:00:00Z\",\"rule\":\"new_kind\",\"kind\":\"mystery\","
        "\"severity\":\"low\",\"action\":\"flag\",\"ip\":\"198.51.100.4\",\"input\":"
        "\"gateway\","
        "\"evidence\":{\"zeta\":\"\\u001b]0;pwned\\u0007\",\"n\":5}}],"
        "\"history\":[{\"time\":\"2026-11-29T07:58:00Z\",\"action\":\"freeze\","
        "\"state\":\"frozen\",\"analyst\":\"tokenwatch\",\"note\":\"\"}],"
        "\"freeze_until\":null,\"freezes\":1}",
        hours);
    out = render(tw_client_print_token, token_json, &rc);
    TW_CHECK_INT(rc, 0);
    CHECK_HAS(out, "Token       tw_3f9a1c2b7d4e5f60  at-\xe2\x80\xa6"
                   "9f2c");
    CHECK_HAS(out, "Berlin, DE -> Sydney, AU  16,012 km in 0.3 h = 53,733 km/h (max 900 km/h)");
    CHECK_HAS(out, "extra_key: shown");
    CHECK_HAS(out, "61 checks in 60 s; baseline 3.20 per window (sd 1.10); threshold 32");
    CHECK_HAS(out, "15 of 20 checks rejected in 300 s (75%), scope token\n");
    CHECK_HAS(out, "zeta: ?]0;pwned?");
    CHECK_HAS(out, "n: 5");
    CHECK_HAS(out, "Countries   DE, AU");
    CHECK_HAS(out, "ASNs        3320");
    CHECK_HAS(out, "local time, Europe/Berlin");
    CHECK_HAS(out, "    00 01 02 03 04 05 06 07 08 09 10");
    CHECK_HAS(
        out, "\nMon .. .. .. .. .. .. .. .. .. @@ :: :: :: :: :: :: :: :: .. .. .. .. .. ..\n");
    CHECK_HAS(out, "\nSun .. .. ..");
    CHECK_HAS(out, "(80 checks)");
    CHECK_HAS(out, "from 203.0.113.7  Sydney, AU\n");
    CHECK_HAS(out, "from 198.51.100.4\n"); /* no location known */
    TW_CHECK(out && !strstr(out, " \n"));  /* no trailing blanks */
    CHECK_HAS(out, "freeze     -> frozen     by tokenwatch");
    TW_CHECK(out && !strchr(out, '\x1b') && !strchr(out, '\x07'));
    free(out);
    free(token_json);
    out = render(tw_client_print_token, "{\"error\":\"no\"}", &rc);
    TW_CHECK_INT(rc, -1);
    free(out);
}

/* Runs the CLI with stdout and stderr captured into *out. */
static int cli(char **argv, int argc, char **out)
{
    char *path = tmp_path("cli.out");
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    int rc = tw_client_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    *out = NULL;
    tw_read_file(path, out, NULL, NULL);
    free(path);
    return rc;
}

static void test_cli_commands(uint16_t port, const creds_t *c)
{
    char *url = tw_xasprintf("http://127.0.0.1:%u", (unsigned)port);
    char *out;
    {
        char *argv[] = {(char *)"flagged",
                        (char *)"--url",
                        url,
                        (char *)"--token-file",
                        c->bearer_file,
                        (char *)"--severity",
                        (char *)"high",
                        (char *)"--since",
                        (char *)"2026-11-29T07:57:53+00:00",
                        (char *)"--limit",
                        (char *)"7",
                        (char *)"--offset",
                        (char *)"3",
                        (char *)"--json",
                        NULL};
        TW_CHECK_INT(cli(argv, 14, &out), 0);
        CHECK_HAS(out, "{\"total\":0,\"offset\":3,\"limit\":7,\"items\":[]}");
        free(out);
        TW_CHECK_INT(fake.q.min_severity, 2);
        TW_CHECK(fake.q.since_ns == 1795939073LL * 1000000000LL);
    }
    {
        char *argv[] = {(char *)"flagged",      (char *)"--url", url,
                        (char *)"--token-file", c->bearer_file,  NULL};
        TW_CHECK_INT(cli(argv, 5, &out), 0);
        CHECK_HAS(out, "no flagged tokens match");
        free(out);
    }
    {
        /* The URL and token from a config. */
        char *text = tw_xasprintf("{\"state_dir\":\"s\",\"http\":{\"listen\":\"0.0.0.0:%u\","
                                  "\"auth\":{\"bearer_token_file\":\"bearer\"}}}",
                                  (unsigned)port);
        char *cfg = write_file("cli-config.json", text, 0644);
        char *argv[] = {(char *)"token",  (char *)ID_OK, (char *)"-c", cfg,
                        (char *)"--json", NULL};
        TW_CHECK_INT(cli(argv, 5, &out), 0);
        CHECK_HAS(out, "\"token_id\":\"" ID_OK "\"");
        TW_CHECK(out && !strstr(out, BEARER));
        free(out);
        char *argv2[] = {(char *)"token", (char *)ID_UNKNOWN, (char *)"-c", cfg, NULL};
        TW_CHECK_INT(cli(argv2, 4, &out), 1);
        CHECK_HAS(out, "/api/v1/tokens/" ID_UNKNOWN ": HTTP 404: no such token");
        free(out);
        free(cfg);
        free(text);
    }
    {
        /* No token: 401, exit 1, a hint. */
        char *argv[] = {(char *)"flagged",
                        (char *)"--url",
                        url,
                        (char *)"-c",
                        (char *)"/nonexistent/tw.json",
                        NULL};
        TW_CHECK_INT(cli(argv, 5, &out), 2);
        CHECK_HAS(out, "/nonexistent/tw.json: cannot open");
        free(out);
        char *nofile = write_file("empty-config.json", "{\"state_dir\":\"s\"}", 0644);
        char *argv2[] = {(char *)"flagged", (char *)"--url", url, (char *)"-c", nofile, NULL};
        TW_CHECK_INT(cli(argv2, 5, &out), 1);
        CHECK_HAS(out, "HTTP 401: credentials required");
        CHECK_HAS(out, "give --token-file");
        free(out);
        free(nofile);
    }
    {
        char *wrong = write_file("wrong-token", "not-the-token\n", 0600);
        char *argv[] = {(char *)"flagged",      (char *)"--url", url,
                        (char *)"--token-file", wrong,           NULL};
        TW_CHECK_INT(cli(argv, 5, &out), 1);
        CHECK_HAS(out, "HTTP 401: wrong credentials");
        TW_CHECK(out && !strstr(out, "not-the-token"));
        free(out);
        free(wrong);
    }
    /* Usage errors: 2, before any request. */
    int c0 = calls();
    const char *usage[][8] = {
        {"flagged", "--severity", "urgent"},
        {"flagged", "--state", "gone"},
        {"flagged", "--since", "yesterday"},
        {"flagged", "--limit", "0"},
        {"flagged", "--limit", "501"},
        {"flagged", "--offset", "-3"},
        {"flagged", "extra"},
        {"flagged", "--url", "ftp://x"},
        {"flagged", "--bogus"},
        {"token"},
        {"token", "tw_ABC"},
        {"token", ID_OK, "--state", "frozen"},
        {"hash-password", "x"},
    };
    for (size_t i = 0; i < sizeof usage / sizeof *usage; i++) {
        char *argv[10] = {0};
        int argc = 0;
        for (; argc < 8 && usage[i][argc]; argc++)
            argv[argc] = (char *)usage[i][argc];
        argv[argc++] = (char *)"--token-file";
        argv[argc++] = c->bearer_file;
        int rc = cli(argv, argc, &out);
        TW_CHECK_INT(rc, 2);
        if (rc != 2)
            fprintf(stderr, "  usage case %zu: %s\n", i, out ? out : "");
        free(out);
    }
    TW_CHECK_INT(calls() - c0, 0);
    {
        /* Unreachable: exit 1. */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof a;
        bind(fd, (struct sockaddr *)&a, sl);
        getsockname(fd, (struct sockaddr *)&a, &sl);
        char *dead = tw_xasprintf("http://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
        close(fd); /* bound, never listening, now closed: nothing answers */
        char *argv[] = {(char *)"flagged",      (char *)"--url", dead,
                        (char *)"--token-file", c->bearer_file,  NULL};
        TW_CHECK_INT(cli(argv, 5, &out), 1);
        CHECK_HAS(out, "cannot reach the daemon at");
        free(out);
        free(dead);
    }
    free(url);
}

/* ------------------------------------------------------------------------ */

int main(void)
{
    tw_log_setup(TW_LOG_INFO, TW_LOG_PLAIN);
    if (!mkdtemp(tmpdir))
        tw_die("mkdtemp: %s", strerror(errno));
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        tw_die("library init failed");
    pthread_mutex_init(&fake.lock, NULL);
    pthread_cond_init(&fake.cond, NULL);
    tw_metrics_t *m = registry();
    creds_t c;
    make_creds(&c);

    test_parsers();
    test_credential_files();

    tw_http_opts_t open_opts = {.api = &backend};
    tw_http_t *h = start(m, &open_opts);
    TW_CHECK(h != NULL);
    if (h) {
        uint16_t port = tw_http_port(h);
        test_open_api(port);
        test_routing(port);
        test_query(port);
        test_bodies(port);
        test_slow_backend(port);
        tw_http_stop(h);
    }

    tw_http_opts_t auth_opts = {
        .api = &backend, .bearer_token_file = c.bearer_file, .basic_auth_file = c.basic_file};
    h = start(m, &auth_opts);
    TW_CHECK(h != NULL);
    if (h) {
        uint16_t port = tw_http_port(h);
        test_auth_log(port, &c); /* first: the log limiter is per server */
        test_auth(port, &c);
        test_cli_commands(port, &c);
        tw_http_stop(h);
    }
    test_bearer_only(m, &c);
    test_metrics_auth(m, &c);
    test_tls(m, &c);
    test_config(&c);
    test_cli_views();

    free_creds(&c);
    tw_metrics_free(m);
    curl_global_cleanup();
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return tw_test_done();
}
