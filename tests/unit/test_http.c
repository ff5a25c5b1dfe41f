/*
 * test_http.c — the HTTP server, driven over real loopback sockets by a tiny
 * blocking HTTP/1.0 client: routes, status codes and headers, bodies that must
 * not be read, bind errors, IPv6 (skipped when the kernel has none), the
 * connection limit and idle timeout, a stalled client beside served ones
 * (poll threads: a quiet connection holds nothing else up), concurrent
 * scrapes, the HTTP threads' priority following tw_http_set_yield, and a
 * clean stop. The API,
 * the page, credentials and TLS are tested in test_api.c; here the server
 * runs without an API, so /api/... and / are unknown paths.
 *
 * Servers listen on 127.0.0.1 / ::1 on kernel-chosen ports. Waiting is done
 * by blocking reads with a deadline, never by fixed sleeps.
 */
#include "common.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "tw_test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLIENT_TIMEOUT_S 10

/* ---- a tiny blocking client ---- */

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

/* A connected blocking socket with send/receive timeouts, or -1. */
static int connect_to(int family, uint16_t port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        a->sin6_addr = in6addr_loopback;
        sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof *a;
    }
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
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

/* Sends request and reads the response until the server closes. */
static void exchange(int family, uint16_t port, const char *request, resp_t *r)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    size_t cap = 4096;
    r->raw = tw_xmalloc(cap);
    r->raw[0] = '\0';
    int fd = connect_to(family, port);
    if (fd < 0)
        return;
    if (send_all(fd, request, strlen(request))) {
        for (;;) {
            if (cap - r->raw_len < 2048) {
                cap *= 2;
                r->raw = tw_xrealloc(r->raw, cap);
            }
            ssize_t n = recv(fd, r->raw + r->raw_len, cap - r->raw_len - 1, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            r->raw_len += (size_t)n;
        }
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

static void request(uint16_t port, const char *method, const char *path, resp_t *r)
{
    char *req = tw_xasprintf("%s %s HTTP/1.0\r\nHost: localhost\r\n\r\n", method, path);
    exchange(AF_INET, port, req, r);
    free(req);
}

/* The value of a response header (fresh string), or NULL. */
static char *header(const resp_t *r, const char *name)
{
    const char *end = strstr(r->raw, "\r\n\r\n");
    size_t nlen = strlen(name);
    for (const char *p = strstr(r->raw, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            return tw_xstrndup(v, (size_t)(strstr(v, "\r\n") - v));
        }
    }
    return NULL;
}

static void check_header(const resp_t *r, const char *name, const char *want)
{
    char *v = header(r, name);
    TW_CHECK_STR(v, want);
    free(v);
}

static void check_body(const resp_t *r, const char *want)
{
    TW_CHECK(r->body != NULL);
    TW_CHECK_STR(r->body ? r->body : NULL, want);
}

/* ---- fixtures ---- */

static tw_metrics_t *test_registry(tw_cell_t **counter)
{
    tw_metrics_t *m = tw_metrics_new();
    const char *in[] = {"input"};
    const char *gw[] = {"gateway"};
    tw_family_t *f =
        tw_metrics_family(m, "auth_token_check", "Checks.", TW_METRIC_COUNTER, 1, in);
    *counter = tw_family_cell(f, gw);
    tw_cell_add(*counter, 42);
    tw_cell_set_gauge(tw_family_cell(tw_metrics_family(m, "tokenwatch_input_lag_bytes", "Lag.",
                                                       TW_METRIC_GAUGE, 1, in),
                                     gw),
                      -7);
    return m;
}

static tw_http_t *start_local(tw_metrics_t *m, uint16_t port, tw_err_t *err)
{
    tw_http_opts_t o = {
        .address = "127.0.0.1", .port = port, .max_connections = 8, .timeout_s = 1};
    return tw_http_start(&o, m, err);
}

/* ---- tests ---- */

static void test_routes(uint16_t port, tw_http_t *h, tw_metrics_t *m)
{
    resp_t r;

    request(port, "GET", "/metrics", &r);
    TW_CHECK_INT(r.status, 200);
    check_header(&r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    size_t len;
    char *want = tw_metrics_render(m, &len);
    TW_CHECK_INT(r.body_len, len);
    check_body(&r, want);
    char *cl = header(&r, "Content-Length");
    TW_CHECK(cl && strtoul(cl, NULL, 10) == len);
    free(cl);
    resp_free(&r);

    request(port, "HEAD", "/metrics", &r);
    TW_CHECK_INT(r.status, 200);
    check_header(&r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    TW_CHECK_INT(r.body_len, 0);
    resp_free(&r);
    free(want);

    request(port, "GET", "/metrics?format=text", &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);

    request(port, "GET", "/-/healthy", &r);
    TW_CHECK_INT(r.status, 200);
    check_body(&r, "tokenwatch is Healthy.\n");
    check_header(&r, "Content-Type", "text/plain; charset=utf-8");
    check_header(&r, "X-Content-Type-Options", "nosniff");
    resp_free(&r);

    request(port, "GET", "/-/ready", &r);
    TW_CHECK_INT(r.status, 503);
    check_body(&r, "tokenwatch is not ready.\n");
    resp_free(&r);
    tw_http_set_ready(h, true);
    request(port, "GET", "/-/ready", &r);
    TW_CHECK_INT(r.status, 200);
    check_body(&r, "tokenwatch is Ready.\n");
    resp_free(&r);
    request(port, "HEAD", "/-/ready", &r);
    TW_CHECK_INT(r.status, 200);
    TW_CHECK_INT(r.body_len, 0);
    resp_free(&r);
    tw_http_set_ready(h, false);
    request(port, "GET", "/-/ready", &r);
    TW_CHECK_INT(r.status, 503);
    resp_free(&r);

    const char *missing[] = {"/",
                             "/nope",
                             "/metrics/",
                             "/-/healthyx",
                             "/METRICS",
                             "/api/v1/stats",
                             "/static/app.js",
                             "/api",
                             "/api/v1/flagged"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        request(port, "GET", missing[i], &r);
        TW_CHECK_INT(r.status, 404);
        resp_free(&r);
    }
    request(port, "DELETE", "/nope", &r);
    TW_CHECK_INT(r.status, 404);
    resp_free(&r);

    const char *methods[] = {"PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        request(port, methods[i], "/-/healthy", &r);
        TW_CHECK_INT(r.status, 405);
        check_header(&r, "Allow", "GET, HEAD");
        resp_free(&r);
    }
}

/* Two requests on one HTTP/1.1 connection, headers as Prometheus sends
 * them: both answered, the connection closed after the second. */
static void test_keep_alive(uint16_t port)
{
    resp_t r;
    exchange(AF_INET, port,
             "GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: Prometheus/2.42.0\r\n"
             "Accept: application/openmetrics-text;version=1.0.0,application/"
             "openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/"
             "*;q=0.1\r\nAccept-Encoding: gzip\r\n"
             "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
             "GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             &r);
    TW_CHECK_INT(r.status, 200);
    const char *second = strstr(r.raw + 1, "HTTP/1.1 200 OK\r\n");
    TW_CHECK(second != NULL);
    const char *close_hdr = strstr(r.raw, "Connection: close");
    TW_CHECK(close_hdr != NULL && second != NULL && close_hdr > second);
    TW_CHECK(r.raw_len > strlen("tokenwatch is Healthy.\n"));
    TW_CHECK(strcmp(r.raw + r.raw_len - strlen("tokenwatch is Healthy.\n"),
                    "tokenwatch is Healthy.\n") == 0);
    resp_free(&r);
}

static void test_bodies(uint16_t port)
{
    resp_t r;
    exchange(AF_INET, port,
             "POST /metrics HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", &r);
    TW_CHECK_INT(r.status, 405);
    check_header(&r, "Allow", "GET, HEAD");
    resp_free(&r);

    /* A body that never comes: answered at once from the headers. Had the
     * server waited for the body, the 1 s idle timeout would have closed the
     * connection without any answer. */
    exchange(AF_INET, port,
             "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
             "Expect: 100-continue\r\n\r\n",
             &r);
    TW_CHECK_INT(r.status, 405);
    TW_CHECK(strstr(r.raw, "100 Continue") == NULL);
    resp_free(&r);

    exchange(AF_INET, port,
             "POST /-/ready HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", &r);
    TW_CHECK_INT(r.status, 405);
    resp_free(&r);

    /* A GET with a body is answered the same way. */
    exchange(AF_INET, port,
             "GET /-/healthy HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n", &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);

    /* Headers beyond the per-connection memory limit are refused, and the
     * server carries on. */
    size_t big = 64 * 1024;
    char *req = tw_xmalloc(big + 128);
    int n = snprintf(req, 128, "GET /metrics HTTP/1.0\r\nX-Big: ");
    memset(req + n, 'a', big);
    strcpy(req + n + big, "\r\n\r\n");
    exchange(AF_INET, port, req, &r);
    free(req);
    TW_CHECK(r.status == -1 || r.status >= 400);
    resp_free(&r);
    request(port, "GET", "/-/healthy", &r);
    TW_CHECK_INT(r.status, 200);
    resp_free(&r);
}

static void test_bind_errors(uint16_t port, tw_metrics_t *m)
{
    tw_err_t err = {{0}};
    tw_http_t *h2 = start_local(m, port, &err);
    TW_CHECK(h2 == NULL);
    char *want = tw_xasprintf("127.0.0.1:%u: cannot listen", (unsigned)port);
    TW_CHECK(strncmp(err.msg, want, strlen(want)) == 0);
    printf("second server on the same port: %s\n", err.msg);
    free(want);
    tw_http_stop(h2);

    tw_http_opts_t o = {.address = "localhost"};
    err.msg[0] = '\0';
    TW_CHECK(tw_http_start(&o, m, &err) == NULL);
    TW_CHECK_STR(err.msg, "localhost: not an IPv4 or IPv6 address");
    o.address = "127.0.0.1:80";
    TW_CHECK(tw_http_start(&o, m, NULL) == NULL);
}

static bool have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void test_ipv6(tw_metrics_t *m)
{
    if (!have_ipv6_loopback()) {
        printf("no IPv6 loopback: IPv6 checks skipped\n");
        return;
    }
    const char *forms[] = {"::1", "[::1]"};
    for (int i = 0; i < 2; i++) {
        tw_http_opts_t o = {.address = forms[i], .timeout_s = 1};
        tw_err_t err = {{0}};
        tw_http_t *h = tw_http_start(&o, m, &err);
        TW_CHECK(h != NULL);
        if (!h) {
            fprintf(stderr, "IPv6 start failed: %s\n", err.msg);
            continue;
        }
        uint16_t port = tw_http_port(h);
        TW_CHECK(port != 0);
        resp_t r;
        exchange(AF_INET6, port, "GET /-/healthy HTTP/1.0\r\n\r\n", &r);
        TW_CHECK_INT(r.status, 200);
        check_body(&r, "tokenwatch is Healthy.\n");
        resp_free(&r);
        /* Bound to ::1 only: nothing listens on 127.0.0.1 at that port. */
        int fd = connect_to(AF_INET, port);
        TW_CHECK(fd < 0);
        if (fd >= 0)
            close(fd);

        tw_err_t err2 = {{0}};
        tw_http_opts_t o2 = {.address = "::1", .port = port};
        TW_CHECK(tw_http_start(&o2, m, &err2) == NULL);
        char *want = tw_xasprintf("[::1]:%u: cannot listen", (unsigned)port);
        TW_CHECK(strncmp(err2.msg, want, strlen(want)) == 0);
        free(want);
        tw_http_stop(h);
    }
}

/* True once the server has closed fd (EOF or reset), false at the deadline. */
static bool closed_by_server(int fd, int deadline_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, deadline_ms) != 1)
        return false;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* A request answered 200 within deadline_ms, retried every 20 ms: a slot
 * comes back once the server's poll thread has seen its connection close, a
 * moment after the client sees it; until then a new connection is refused
 * (closed at once), never queued. */
static bool served_within(uint16_t port, int deadline_ms)
{
    int64_t deadline = tw_mono_ns() + (int64_t)deadline_ms * 1000000;
    for (;;) {
        resp_t r;
        request(port, "GET", "/-/healthy", &r);
        bool ok = r.status == 200;
        resp_free(&r);
        if (ok)
            return true;
        if (tw_mono_ns() > deadline)
            return false;
        poll(NULL, 0, 20);
    }
}

static void test_connection_limit(uint16_t port, unsigned max_connections)
{
    int idle[64];
    TW_CHECK(max_connections <= 64);

    /* Fill every slot with idle connections, give them back, serve again. */
    for (unsigned i = 0; i < max_connections; i++)
        idle[i] = connect_to(AF_INET, port);
    for (unsigned i = 0; i < max_connections; i++) {
        TW_CHECK(idle[i] >= 0);
        if (idle[i] >= 0)
            close(idle[i]);
    }
    TW_CHECK(served_within(port, 5000));

    /* Fill them again and keep them: a further connection is refused, and
     * the idle timeout (1 s) must reclaim the slots, so a request is served
     * again soon and every idle connection is closed by the server. */
    for (unsigned i = 0; i < max_connections; i++)
        idle[i] = connect_to(AF_INET, port);
    int64_t t0 = tw_mono_ns();
    TW_CHECK(served_within(port, 5000));
    printf("request with %u idle connections held: served after %.2f s\n", max_connections,
           (double)(tw_mono_ns() - t0) / 1e9);
    unsigned reclaimed = 0;
    for (unsigned i = 0; i < max_connections; i++) {
        if (idle[i] < 0)
            continue;
        reclaimed += closed_by_server(idle[i], 5000);
        close(idle[i]);
    }
    TW_CHECK_INT(reclaimed, max_connections);
}

/* A client that sent half a request and went quiet holds its own
 * connection only: scrapes on other connections are answered meanwhile. */
static void test_stalled_client(uint16_t port)
{
    int fd = connect_to(AF_INET, port);
    TW_CHECK(fd >= 0);
    if (fd < 0)
        return;
    static const char half[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    TW_CHECK(send_all(fd, half, sizeof half - 1));
    for (int i = 0; i < 5; i++) {
        resp_t r;
        request(port, "GET", "/metrics", &r);
        TW_CHECK_INT(r.status, 200);
        resp_free(&r);
    }
    /* The stalled connection is still open (its idle timeout is 1 s and
     * the scrapes above take milliseconds), then gets closed by it. */
    TW_CHECK(closed_by_server(fd, 5000));
    close(fd);
}

typedef struct {
    uint16_t port;
    int ok;
} scraper_t;

#define SCRAPES_PER_THREAD 25

static void *scraper(void *p)
{
    scraper_t *s = p;
    for (int i = 0; i < SCRAPES_PER_THREAD; i++) {
        resp_t r;
        request(s->port, "GET", "/metrics", &r);
        s->ok += r.status == 200 && r.body && strncmp(r.body, "# HELP ", 7) == 0;
        resp_free(&r);
    }
    return NULL;
}

static atomic_bool stop_updates;

static void *updater(void *p)
{
    tw_cell_t *c = p;
    while (!atomic_load(&stop_updates))
        tw_cell_add(c, 1);
    return NULL;
}

static void test_concurrent_scrapes(uint16_t port, tw_cell_t *counter)
{
    enum { NSCRAPERS = 4 };
    scraper_t s[NSCRAPERS];
    pthread_t t[NSCRAPERS], u;
    atomic_store(&stop_updates, false);
    TW_CHECK_INT(pthread_create(&u, NULL, updater, counter), 0);
    for (int i = 0; i < NSCRAPERS; i++) {
        s[i] = (scraper_t){port, 0};
        TW_CHECK_INT(pthread_create(&t[i], NULL, scraper, &s[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < NSCRAPERS; i++) {
        pthread_join(t[i], NULL);
        ok += s[i].ok;
    }
    atomic_store(&stop_updates, true);
    pthread_join(u, NULL);
    TW_CHECK_INT(ok, NSCRAPERS * SCRAPES_PER_THREAD);
}

/* ---- thread priority ---- */

/* The nice values of this process' threads whose name starts with prefix
 * (from /proc/self/task/TID/stat); returns how many, at most cap. */
static size_t thread_nices(const char *prefix, int *out, size_t cap)
{
    size_t n = 0;
    DIR *dir = opendir("/proc/self/task");
    struct dirent *de;
    while (dir && (de = readdir(dir)) && n < cap) {
        if (de->d_name[0] == '.')
            continue;
        char path[300], stat[512];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;   /* the thread has ended */
        size_t len = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[len] = '\0';
        char *open = strchr(stat, '('), *close = strrchr(stat, ')');
        if (!open || !close || close < open)
            continue;
        if (strncmp(open + 1, prefix, strlen(prefix)) != 0)
            continue;
        /* After ") " come fields 3, 4, ...: nice is field 19. */
        char *q = close + 2;
        for (int field = 3; field < 19 && q; field++) {
            q = strchr(q, ' ');
            if (q)
                q++;
        }
        if (q)
            out[n++] = atoi(q);
    }
    if (dir)
        closedir(dir);
    return n;
}

/* True when every thread named prefix (at least min of them) has nice want. */
static bool all_nice(const char *prefix, size_t min, int want)
{
    int v[64];
    size_t n = thread_nices(prefix, v, 64);
    for (size_t i = 0; i < n; i++)
        if (v[i] != want)
            return false;
    return n >= min;
}

/* all_nice, given up to 2 s: a new thread may show its creator's name
 * for a moment, until it is named. */
static bool all_nice_soon(const char *prefix, size_t min, int want)
{
    for (int i = 0; i < 2000; i++) {
        if (all_nice(prefix, min, want))
            return true;
        usleep(1000);
    }
    return false;
}

/* Whether this process may lower a nice value it raised (CAP_SYS_NICE or
 * RLIMIT_NICE): asked of a child, which tries. */
static bool may_raise_priority(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        int base = getpriority(PRIO_PROCESS, 0);
        if (setpriority(PRIO_PROCESS, 0, base + 10 > 19 ? 19 : base + 10) != 0)
            _exit(2);
        _exit(setpriority(PRIO_PROCESS, 0, base) == 0 ? 0 : 1);
    }
    int st = 0;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Requests on 16 connections opened at once, so that each poll thread
 * accepts some (whichever is awake takes a new connection), until every
 * poll thread ("MHD-...") has nice want; false when 100 rounds did not
 * get there. */
static bool scrape_until_nice(uint16_t port, int want)
{
    static const char req[] = "GET /-/healthy HTTP/1.0\r\n\r\n";
    for (int round = 0; round < 100; round++) {
        if (all_nice("MHD-", 2, want))
            return true;
        int fds[16];
        for (size_t i = 0; i < 16; i++)
            fds[i] = connect_to(AF_INET, port);
        for (size_t i = 0; i < 16; i++) {
            if (fds[i] < 0)
                continue;
            char buf[512];
            if (send_all(fds[i], req, sizeof req - 1))
                while (recv(fds[i], buf, sizeof buf, 0) > 0)
                    ;
            close(fds[i]);
        }
    }
    return all_nice("MHD-", 2, want);
}

static void test_priority(tw_metrics_t *m)
{
    errno = 0;
    int base = getpriority(PRIO_PROCESS, (id_t)gettid());
    TW_CHECK(!(base == -1 && errno != 0));
    int lowered = base + 10 > 19 ? 19 : base + 10;
    tw_err_t err;
    tw_http_t *h = start_local(m, 0, &err);
    TW_CHECK(h != NULL);
    if (!h)
        return;
    uint16_t port = tw_http_port(h);
    /* Started yielding: every HTTP thread, MHD's and ours, is lowered,
     * and this thread (the caller) is not. */
    TW_CHECK(all_nice_soon("MHD-", 2, lowered));
    TW_CHECK(all_nice_soon("tw-http-slow", 2, lowered));
    TW_CHECK_INT(getpriority(PRIO_PROCESS, (id_t)gettid()), base);
    /* Caught up: back to the daemon's priority with the next requests,
     * where this process may raise a priority; else they stay lowered. */
    tw_http_set_yield(h, false);
    if (may_raise_priority()) {
        TW_CHECK(scrape_until_nice(port, base));
    } else {
        fprintf(stderr, "test_priority: this process may not raise a priority: the threads "
                        "must stay lowered\n");
        for (int i = 0; i < 50; i++) {
            resp_t r;
            request(port, "GET", "/-/healthy", &r);
            resp_free(&r);
        }
        TW_CHECK(all_nice("MHD-", 2, lowered));
    }
    /* Behind again: lowered again. */
    tw_http_set_yield(h, true);
    TW_CHECK(scrape_until_nice(port, lowered));
    /* Thread priorities are per thread: the caller's never moved. */
    TW_CHECK_INT(getpriority(PRIO_PROCESS, (id_t)gettid()), base);
    tw_http_stop(h);
}

int main(void)
{
    tw_cell_t *counter;
    tw_metrics_t *m = test_registry(&counter);
    tw_err_t err = {{0}};

    tw_http_t *h = start_local(m, 0, &err);
    TW_CHECK(h != NULL);
    if (!h) {
        fprintf(stderr, "start failed: %s\n", err.msg);
        tw_metrics_free(m);
        return tw_test_done();
    }
    uint16_t port = tw_http_port(h);
    TW_CHECK(port != 0);

    test_routes(port, h, m);
    test_keep_alive(port);
    test_bodies(port);
    test_bind_errors(port, m);
    test_connection_limit(port, 8);
    test_stalled_client(port);
    test_concurrent_scrapes(port, counter);
    test_ipv6(m);

    tw_http_stop(h);
    /* Stopped means gone: the port no longer accepts. */
    int fd = connect_to(AF_INET, port);
    TW_CHECK(fd < 0);
    if (fd >= 0)
        close(fd);
    tw_http_stop(NULL);

    test_priority(m);

    /* Defaults (NULL opts): 127.0.0.1, a free port. */
    h = tw_http_start(NULL, m, &err);
    TW_CHECK(h != NULL);
    if (h) {
        resp_t r;
        request(tw_http_port(h), "GET", "/-/healthy", &r);
        TW_CHECK_INT(r.status, 200);
        resp_free(&r);
        tw_http_stop(h);
    }

    tw_metrics_free(m);
    return tw_test_done();
}
