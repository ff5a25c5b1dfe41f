/*
 * http.c — see http.h.
 *
 * One libmicrohttpd daemon with its own polling thread (epoll where the
 * library has it) serves three read-only routes. Invariants:
 *  - A request body is never read. A request that announces one
 *    (Content-Length > 0 or Transfer-Encoding) is answered on the handler's
 *    first call, when only its headers have been read; MHD then sends the
 *    answer and closes the connection instead of draining the body. Any
 *    other request is answered on the second call, once MHD has seen the
 *    (empty) request complete, because an answer queued earlier makes MHD
 *    close the connection and scrapers reuse theirs.
 *  - Unknown paths get 404 whatever the method; known paths accept GET and
 *    HEAD only (405 with an Allow header otherwise). HEAD is handled by MHD,
 *    which sends the headers of the GET answer without its body.
 *  - The fixed answers (probes, 404, 405) are built once at start and shared
 *    by all connections (MHD reference-counts them); /metrics renders the
 *    registry per request into a buffer that MHD frees after sending.
 *  - The only state shared with other threads is the ready flag (atomic) and
 *    the metrics registry (its own locking). MHD's error log goes through our
 *    rate-limited logger, so a flood of refused connections logs a handful of
 *    lines, not one per connection.
 */
#include "http.h"
#include "log.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DEFAULT_ADDRESS "127.0.0.1"
#define DEFAULT_MAX_CONNECTIONS 64
#define DEFAULT_TIMEOUT_S 10
/* One IP may hold half the connections, but never fewer than this, so a
 * Prometheus server with a few parallel scrapes is not refused. */
#define MIN_PER_IP_CONNECTIONS 8
/* Per-connection pool for the request line, headers and response headers;
 * bodies are sent from their own buffers. Far above what a scraper sends. */
#define CONNECTION_MEMORY_LIMIT ((size_t)16 * 1024)

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_CONTENT_TYPE "text/plain; charset=utf-8"
/* Longer MHD messages are cut; they are one-line diagnostics. */
#define LOG_MSG_MAX 512

struct tw_http {
    struct MHD_Daemon *daemon;
    tw_metrics_t *metrics; /* borrowed */
    atomic_bool ready;
    uint16_t port;

    struct MHD_Response *healthy;
    struct MHD_Response *ready_yes;
    struct MHD_Response *ready_no;
    struct MHD_Response *not_found;
    struct MHD_Response *not_allowed;

    /* MHD may log from the caller's thread (start, stop) and from its polling
     * thread, so the limiter and the start-up capture share a lock. */
    pthread_mutex_t log_lock;
    tw_log_limit_t log_limit;
    bool starting; /* capture messages into start_msg, do not log */
    char start_msg[LOG_MSG_MAX];
};

/* ---- logging ---- */

/* MHD hands over a printf format and its va_list; the attribute tells the
 * compiler the format is checked at MHD's call sites. */
static void mhd_logger(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    tw_http_t *h = cls;
    char msg[LOG_MSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';

    pthread_mutex_lock(&h->log_lock);
    if (h->starting) {
        /* The first message of a failed start names the cause (e.g. the
         * bind error); it goes into the caller's error instead of the log. */
        if (!h->start_msg[0])
            memcpy(h->start_msg, msg, n + 1);
    } else {
        tw_log_limited(&h->log_limit, TW_LOG_WARN, "http: %s", msg);
    }
    pthread_mutex_unlock(&h->log_lock);
}

/* ---- responses ---- */

static void add_header(struct MHD_Response *r, const char *name, const char *value)
{
    if (MHD_add_response_header(r, name, value) != MHD_YES)
        tw_die("http: cannot add response header %s", name);
}

/* A response over a string literal, reusable for any number of requests. */
static struct MHD_Response *fixed_response(const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        tw_die("http: cannot create a response");
    add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, TEXT_CONTENT_TYPE);
    return r;
}

static enum MHD_Result serve_metrics(tw_http_t *h, struct MHD_Connection *conn)
{
    size_t len;
    char *body = tw_metrics_render(h->metrics, &len);
    /* MUST_FREE: MHD calls free() on the buffer once the response is gone;
     * the render buffer comes from malloc. On failure MHD did not take it. */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static bool announces_body(struct MHD_Connection *conn)
{
    const char *te =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    /* MHD has already refused a malformed Content-Length with 400. */
    return te != NULL || (cl != NULL && strtoull(cl, NULL, 10) != 0);
}

typedef enum { ROUTE_NONE, ROUTE_METRICS, ROUTE_HEALTHY, ROUTE_READY } route_t;

static route_t route_of(const char *url)
{
    /* MHD has already split off the query string. */
    if (strcmp(url, "/metrics") == 0)
        return ROUTE_METRICS;
    if (strcmp(url, "/-/healthy") == 0)
        return ROUTE_HEALTHY;
    if (strcmp(url, "/-/ready") == 0)
        return ROUTE_READY;
    return ROUTE_NONE;
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    tw_http_t *h = cls;

    if (*req_cls == NULL && !announces_body(conn)) {
        *req_cls = h; /* marks the first call as done */
        return MHD_YES;
    }

    route_t route = route_of(url);
    if (route == ROUTE_NONE)
        return MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, h->not_found);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, h->not_allowed);

    switch (route) {
    case ROUTE_METRICS:
        return serve_metrics(h, conn);
    case ROUTE_HEALTHY:
        return MHD_queue_response(conn, MHD_HTTP_OK, h->healthy);
    case ROUTE_READY:
        if (atomic_load_explicit(&h->ready, memory_order_acquire))
            return MHD_queue_response(conn, MHD_HTTP_OK, h->ready_yes);
        return MHD_queue_response(conn, MHD_HTTP_SERVICE_UNAVAILABLE, h->ready_no);
    case ROUTE_NONE:
        break;
    }
    return MHD_NO;
}

/* ---- lifecycle ---- */

/* Parses an IPv4 or IPv6 literal (brackets around IPv6 tolerated) into ss.
 * Writes the address as it will appear in messages ("1.2.3.4:80",
 * "[::1]:80") into shown. */
static int parse_address(const char *address, uint16_t port, struct sockaddr_storage *ss,
                         bool *ipv6, char *shown, size_t shown_size, tw_err_t *err)
{
    char host[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(address);
    if (n >= 2 && address[0] == '[' && address[n - 1] == ']') {
        address++;
        n -= 2;
    }
    if (n >= sizeof host)
        return tw_err_set(err, "%s: not an IPv4 or IPv6 address", address);
    memcpy(host, address, n);
    host[n] = '\0';

    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *ipv6 = false;
        snprintf(shown, shown_size, "%s:%u", host, (unsigned)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *ipv6 = true;
        snprintf(shown, shown_size, "[%s]:%u", host, (unsigned)port);
        return 0;
    }
    return tw_err_set(err, "%s: not an IPv4 or IPv6 address", host);
}

static void free_server(tw_http_t *h)
{
    MHD_destroy_response(h->healthy);
    MHD_destroy_response(h->ready_yes);
    MHD_destroy_response(h->ready_no);
    MHD_destroy_response(h->not_found);
    MHD_destroy_response(h->not_allowed);
    pthread_mutex_destroy(&h->log_lock);
    free(h);
}

tw_http_t *tw_http_start(const tw_http_opts_t *opts, tw_metrics_t *metrics, tw_err_t *err)
{
    static const tw_http_opts_t defaults = {0};
    if (!opts)
        opts = &defaults;
    const char *address = opts->address && opts->address[0] ? opts->address : DEFAULT_ADDRESS;
    unsigned max_conn = opts->max_connections ? opts->max_connections : DEFAULT_MAX_CONNECTIONS;
    unsigned timeout_s = opts->timeout_s ? opts->timeout_s : DEFAULT_TIMEOUT_S;
    unsigned per_ip = max_conn / 2;
    if (per_ip < MIN_PER_IP_CONNECTIONS)
        per_ip = MIN_PER_IP_CONNECTIONS;

    struct sockaddr_storage ss;
    bool ipv6 = false;
    char shown[INET6_ADDRSTRLEN + 16];
    if (parse_address(address, opts->port, &ss, &ipv6, shown, sizeof shown, err) != 0)
        return NULL;

    tw_http_t *h = tw_xcalloc(1, sizeof *h);
    h->metrics = metrics;
    atomic_init(&h->ready, false);
    if (pthread_mutex_init(&h->log_lock, NULL) != 0)
        tw_die("http: pthread_mutex_init failed");
    h->healthy = fixed_response("tokenwatch is Healthy.\n");
    h->ready_yes = fixed_response("tokenwatch is Ready.\n");
    h->ready_no = fixed_response("tokenwatch is not ready.\n");
    h->not_found = fixed_response("404 page not found\n");
    h->not_allowed = fixed_response("405 method not allowed\n");
    add_header(h->not_allowed, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");

    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    flags |=
        MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_AUTO;
    if (ipv6)
        flags |= MHD_USE_IPv6;

    h->starting = true; /* no other thread can see h yet */
    /* The logger goes first so that MHD's start-up messages reach it. The
     * port argument is ignored when MHD_OPTION_SOCK_ADDR is given. MHD sets
     * SO_REUSEADDR on the listening socket by default (and no SO_REUSEPORT),
     * so a restart can rebind at once while a second live server cannot. */
    /* One option and its arguments per line. */
    /* clang-format off */
    h->daemon = MHD_start_daemon(
        flags, opts->port, NULL, NULL, handle_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)max_conn,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_MEMORY_LIMIT,
        MHD_OPTION_END);
    /* clang-format on */

    pthread_mutex_lock(&h->log_lock);
    h->starting = false;
    char start_msg[sizeof h->start_msg];
    memcpy(start_msg, h->start_msg, sizeof start_msg);
    pthread_mutex_unlock(&h->log_lock);

    if (!h->daemon) {
        tw_err_set(err, "%s: cannot listen (%s)", shown,
                   start_msg[0] ? start_msg : "address in use?");
        free_server(h);
        return NULL;
    }
    if (start_msg[0])
        tw_warn("http: %s", start_msg);

    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) {
        tw_err_set(err, "%s: cannot determine the bound port", shown);
        MHD_stop_daemon(h->daemon);
        free_server(h);
        return NULL;
    }
    h->port = info->port;
    return h;
}

uint16_t tw_http_port(const tw_http_t *h)
{
    return h->port;
}

void tw_http_set_ready(tw_http_t *h, bool ready)
{
    atomic_store_explicit(&h->ready, ready, memory_order_release);
}

void tw_http_stop(tw_http_t *h)
{
    if (!h)
        return;
    /* Joins the polling thread and closes every connection; after this no
     * callback can run, so the responses and h can go. */
    MHD_stop_daemon(h->daemon);
    free_server(h);
}
