/*
 * http.c — see http.h.
 *
 * One libmicrohttpd daemon with POLL_THREADS poll threads (a thread pool,
 * epoll each), so an idle connection costs a few KiB and no thread, plus
 * SLOW_THREADS threads of our own for whatever may block: a credential
 * check (argon2id) or the API backend (its lock). Such a request, once
 * complete, is suspended on its poll thread and queued (req_t); a slow
 * thread does the work and resumes it, and the poll thread sends the
 * answer. So a slow API call never holds up a scrape or a probe. Two
 * exceptions run on the poll thread: the credential check of an API
 * action (before its body is read, a state MHD cannot resume into) and
 * the answer to another request that announces a body; with bearer
 * tokens, or basic-auth entries already verified once (api.c caches them),
 * that check is a keyed hash. While the daemon says ingestion is behind
 * (tw_http_set_yield), every HTTP thread runs HTTP_NICE_DELTA nicer than
 * the daemon, so scrapes yield the CPU to the ingest threads; otherwise
 * they run at the daemon's priority, so a scrape is not kept waiting by
 * other work on the host (see sync_priority).
 * Invariants:
 *  - A request body is read only for an API action (POST /api/v1/tokens/
 *    {id}/{action}) that has passed authentication, routing, id and
 *    content-type checks, and only up to TW_API_BODY_MAX bytes: a larger
 *    Content-Length is refused (413) before any byte of the body is read,
 *    and a chunked body that grows past the limit ends the connection as
 *    soon as it does. Any other request that announces a body (Content-Length > 0 or
 *    Transfer-Encoding) is answered on the handler's first call, when only
 *    its headers have been read; MHD then sends the answer and closes the
 *    connection instead of draining the body. Requests without a body are
 *    answered on the second call, once MHD has seen the (empty) request
 *    complete, because an answer queued earlier makes MHD close the
 *    connection and scrapers reuse theirs.
 *  - Unknown paths get 404 whatever the method (and without asking for
 *    credentials); known paths answer 405 with an Allow header for other
 *    methods. HEAD is handled by MHD, which sends the headers of the GET
 *    answer without its body.
 *  - Where credentials are needed they are checked before anything else
 *    about the request is judged, so an unauthenticated client learns only
 *    "401". Failed attempts are logged (rate-limited) with the client
 *    address and the area, never with the URL or the credentials.
 *  - The fixed answers (probes, 404, 405, page files) are built once at
 *    start and shared by all connections (MHD reference-counts them);
 *    /metrics renders the registry into a response shared the same way by
 *    the requests that may reuse it (see serve_metrics: the first on a
 *    connection never does, later ones for METRICS_CACHE_NS); API answers
 *    are the backend's buffers, freed by MHD after sending.
 *  - State shared with other threads: the ready flag (atomic), the metrics
 *    registry (its own locking) and its last answer (metrics_lock), the
 *    slow queue (slow_lock), the
 *    credentials (a rwlock, swapped by tw_http_reload_auth) and the
 *    backend (its own locking). MHD's error
 *    log goes through our rate-limited logger, so a flood of refused
 *    connections logs a handful of lines, not one per connection.
 */
#include "http.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_ADDRESS "127.0.0.1"
/* Idle connections cost a few KiB each (no thread), so the default is far
 * above what 1,000 held-open connections need. */
#define DEFAULT_MAX_CONNECTIONS 2048
#define DEFAULT_TIMEOUT_S 10
/* One IP may hold a quarter of the connections, but never fewer than this,
 * so a Prometheus server with a few parallel scrapes is not refused, and
 * one address alone cannot fill the table. */
#define PER_IP_DIVISOR 4
#define MIN_PER_IP_CONNECTIONS 8
/* MHD's poll threads (epoll each): they accept, parse, and send every
 * answer, and serve /metrics, the probes and the page's files themselves. */
#define POLL_THREADS 2
/* Threads for what may block: credential checks (argon2id) and the API
 * backend (its lock). A request for them is suspended on its poll thread
 * and resumed when one of these has its answer ready. */
#define SLOW_THREADS 2
/* Added to the nice value of every HTTP thread while ingestion is behind,
 * so that a flood of scrapes cannot take the CPU from the ingest threads
 * (Linux nice is per thread). */
#define HTTP_NICE_DELTA 10
/* A /metrics body may be reused for this long by a request that is not
 * the first on its connection; see serve_metrics. */
#define METRICS_CACHE_NS ((int64_t)10 * 1000 * 1000)
/* File descriptors kept for everything but HTTP connections. */
#define FD_RESERVE 128
/* Per-connection pool for the request line, headers and response headers;
 * bodies are sent from their own buffers. Far above what a scraper or a
 * browser sends, and an action's body (8 KiB) fits beside the headers. */
#define CONNECTION_MEMORY_LIMIT ((size_t)32 * 1024)
/* Longest PEM file accepted for the certificate chain or the key. */
#define PEM_MAX ((size_t)1 << 20)
/* TLS 1.2 and 1.3 only, GnuTLS's normal cipher choice otherwise. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_CONTENT_TYPE "text/plain; charset=utf-8"
#define JSON_CONTENT_TYPE "application/json; charset=utf-8"
/* The page: its own files only, no inline script or style attribute, no
 * framing, no plugins, no form posts or base changes. */
#define PAGE_CSP                                                                               \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "                \
    "form-action 'self'; frame-ancestors 'none'"
#define REALM "realm=\"tokenwatch\""
/* Longer MHD messages are cut; they are one-line diagnostics. */
#define LOG_MSG_MAX 512

/* The body of an API action, collected while MHD reads it. */
typedef struct upload {
    size_t len;
    char data[TW_API_BODY_MAX];
} upload_t;

/* Per connection (MHD's socket context), from accept to close. */
typedef struct conn_ctx {
    unsigned long metrics_requests; /* /metrics requests answered so far */
} conn_ctx_t;

/* Routes; see route_of. */
typedef enum {
    ROUTE_NONE,
    ROUTE_METRICS,
    ROUTE_HEALTHY,
    ROUTE_READY,
    ROUTE_API,
    ROUTE_PAGE,
} route_t;

/* A request that is (or will be) handed to a slow thread: an API action
 * collecting its body, or any request that needs a credential check or the
 * backend. Owned by MHD's request context (freed by request_completed);
 * while queued, the connection is suspended and only the slow thread
 * touches the fields from `done` on. url and method point into MHD's
 * connection, valid until the request completes; the slow thread reads the
 * connection's headers and query only, which nothing changes meanwhile. */
typedef struct req {
    struct req *next; /* the slow queue */
    struct MHD_Connection *conn;
    const char *url, *method;
    route_t route;
    upload_t *up;    /* an action's body (authenticated already), or NULL */
    bool queued;     /* handed over; the connection is suspended */
    bool done;       /* the slow thread has filled what follows */
    bool authorized; /* else: kinds and res say what the 401 offers */
    unsigned kinds;
    tw_auth_result_t res;
    bool has_resp; /* resp holds the backend's answer (ROUTE_API) */
    tw_api_response_t resp;
} req_t;

struct tw_http {
    struct MHD_Daemon *daemon;
    tw_metrics_t *metrics; /* borrowed */

    /* The last /metrics answer (one reference ours; connections sending it
     * hold theirs) and when its rendering began (tw_mono_ns). */
    pthread_mutex_t metrics_lock;
    struct MHD_Response *metrics_resp;
    int64_t metrics_at;

    /* Slow threads and their queue (FIFO). */
    pthread_mutex_t slow_lock;
    pthread_cond_t slow_cond;
    req_t *slow_head, *slow_tail;
    bool slow_stop; /* no more queueing: requests are then handled inline */
    pthread_t slow[SLOW_THREADS];
    size_t nslow;

    atomic_bool ready;
    uint16_t port;

    /* Thread priority (sync_priority): the nice value HTTP threads should
     * have now, and whether raising it back failed (then they stay where
     * they are: no privilege to lower a nice value). */
    int nice_base;          /* the starting thread's nice value */
    atomic_int nice_want;   /* nice_base or nice_base + HTTP_NICE_DELTA */
    atomic_bool nice_stuck;

    const tw_api_backend_t *api; /* borrowed; NULL: no API, no page */
    const tw_asset_t *assets;    /* borrowed */
    size_t nassets;
    struct MHD_Response **asset_resp; /* one per asset */

    pthread_rwlock_t auth_lock;
    tw_api_auth_t *auth; /* never NULL; accepts nothing when nothing is configured */
    bool metrics_auth;
    tw_log_limit_t auth_limit; /* under log_lock */

    char *tls_cert; /* PEM contents while MHD runs; the key is wiped at stop */
    char *tls_key;
    size_t tls_key_len;

    struct MHD_Response *healthy;
    struct MHD_Response *ready_yes;
    struct MHD_Response *ready_no;
    struct MHD_Response *not_found;
    struct MHD_Response *not_allowed; /* Allow: GET, HEAD */

    /* MHD may log from the caller's thread (start, stop) and from its
     * threads, so the limiters and the start-up capture share a lock. */
    pthread_mutex_t log_lock;
    tw_log_limit_t log_limit;
    bool starting; /* capture messages into start_msg, do not log */
    char start_msg[LOG_MSG_MAX];
};

static void sync_priority(tw_http_t *h);

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
    add_header(r, "X-Content-Type-Options", "nosniff");
    return r;
}

/* Queues a one-off response and drops our reference to it. */
static enum MHD_Result queue_once(struct MHD_Connection *conn, unsigned status,
                                  struct MHD_Response *r)
{
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* A malloc'd body that MHD frees (MUST_FREE) once sent; on failure to
 * create the response we free it. */
static struct MHD_Response *malloced_response(char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r)
        free(body);
    return r;
}

static void add_json_headers(struct MHD_Response *r)
{
    add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_CONTENT_TYPE);
    add_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    add_header(r, "X-Content-Type-Options", "nosniff");
}

static enum MHD_Result queue_json(struct MHD_Connection *conn, unsigned status, char *body,
                                  const char *allow)
{
    struct MHD_Response *r = malloced_response(body, strlen(body));
    if (!r)
        return MHD_NO;
    add_json_headers(r);
    if (allow)
        add_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    return queue_once(conn, status, r);
}

/* The first /metrics request on a connection is always rendered afresh,
 * so a client that sees an event (in the events file, the API) and then
 * scrapes sees the counters behind it. Later requests on a kept-alive
 * connection share the last rendering when it began less than
 * METRICS_CACHE_NS ago: a flood of scrapes (wrk, a misconfigured scraper)
 * then costs at most 100 renderings a second, and the poll threads answer
 * more of it (wrk against the idle daemon: 77,000 requests/s, 48,000
 * rendering each). (What protects ingestion
 * from such a flood is the threads' priority; sharing for 10 ms, 250 ms or
 * not at all made no measurable difference to it: bench/stress/README.md.)
 * A body is only ever replaced by a later one, so counters stay monotonic. */
static enum MHD_Result serve_metrics(tw_http_t *h, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_ctx_t *cc = ci ? ci->socket_context : NULL;
    bool may_share = cc && cc->metrics_requests > 0;
    if (cc)
        cc->metrics_requests++;

    enum MHD_Result ret = MHD_NO;
    pthread_mutex_lock(&h->metrics_lock);
    int64_t now = tw_mono_ns();
    if (!may_share || !h->metrics_resp || now - h->metrics_at >= METRICS_CACHE_NS) {
        size_t len;
        char *body = tw_metrics_render(h->metrics, &len);
        struct MHD_Response *r = malloced_response(body, len);
        if (!r)
            goto out;
        add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
        if (h->metrics_resp)
            MHD_destroy_response(h->metrics_resp);
        h->metrics_resp = r;
        h->metrics_at = now;
    }
    /* Under the lock: another thread may replace (and unreference) it. */
    ret = MHD_queue_response(conn, MHD_HTTP_OK, h->metrics_resp);
out:
    pthread_mutex_unlock(&h->metrics_lock);
    return ret;
}

static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    (void)conn;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = tw_xcalloc(1, sizeof(conn_ctx_t));
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        free(*socket_context);
        *socket_context = NULL;
    }
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

static bool is_get(const char *method)
{
    return strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
           strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* ---- routing ---- */

static route_t route_of(const tw_http_t *h, const char *url)
{
    /* MHD has already split off the query string and decoded %XX. */
    if (strcmp(url, "/metrics") == 0)
        return ROUTE_METRICS;
    if (strcmp(url, "/-/healthy") == 0)
        return ROUTE_HEALTHY;
    if (strcmp(url, "/-/ready") == 0)
        return ROUTE_READY;
    if (!h->api)
        return ROUTE_NONE;
    if (strcmp(url, "/api") == 0 || strncmp(url, "/api/", 5) == 0)
        return ROUTE_API;
    if (h->nassets > 0 && (strcmp(url, "/") == 0 || strncmp(url, "/static/", 8) == 0))
        return ROUTE_PAGE;
    return ROUTE_NONE;
}

static const char *route_area(route_t route)
{
    switch (route) {
    case ROUTE_METRICS:
        return "/metrics";
    case ROUTE_API:
        return "the API";
    case ROUTE_PAGE:
        return "the page";
    default:
        return "?";
    }
}

/* ---- access control ---- */

/* The credential kinds a route needs under the current credentials (0:
 * none). Caller holds auth_lock. */
static unsigned needed_kinds(const tw_http_t *h, route_t route)
{
    unsigned kinds = tw_api_auth_kinds(h->auth);
    switch (route) {
    case ROUTE_API:
        return kinds;
    case ROUTE_PAGE:
        /* Browsers send basic credentials on navigation but never a bearer
         * token: with a bearer token only, the page's files are public and
         * its API calls carry the token. */
        return (kinds & TW_AUTH_BASIC) ? kinds : 0;
    case ROUTE_METRICS:
        return h->metrics_auth ? kinds : 0;
    default:
        return 0;
    }
}

static void client_address(struct MHD_Connection *conn, char *buf, size_t cap)
{
    snprintf(buf, cap, "?");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf,
                  (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf,
                  (socklen_t)cap);
}

/* Checks the request's credentials for route. Returns true when it may go
 * on; otherwise *kinds says which kinds a 401 should offer and *res why. */
static bool authorized(tw_http_t *h, struct MHD_Connection *conn, route_t route,
                       unsigned *kinds, tw_auth_result_t *res)
{
    const char *hdr =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    pthread_rwlock_rdlock(&h->auth_lock);
    *kinds = needed_kinds(h, route);
    *res = *kinds ? tw_api_auth_check(h->auth, hdr, *kinds) : TW_AUTH_OK;
    pthread_rwlock_unlock(&h->auth_lock);
    if (*res == TW_AUTH_INVALID) {
        char addr[INET6_ADDRSTRLEN];
        client_address(conn, addr, sizeof addr);
        pthread_mutex_lock(&h->log_lock);
        tw_log_limited(&h->auth_limit, TW_LOG_WARN, "http: wrong credentials for %s from %s",
                       route_area(route), addr);
        pthread_mutex_unlock(&h->log_lock);
    }
    return *res == TW_AUTH_OK;
}

static enum MHD_Result send_unauthorized(struct MHD_Connection *conn, route_t route,
                                         unsigned kinds, tw_auth_result_t res)
{
    const char *why = res == TW_AUTH_INVALID ? "wrong credentials" : "credentials required";
    struct MHD_Response *r;
    if (route == ROUTE_API) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: send Authorization: %s", why,
                 (kinds & TW_AUTH_BEARER) ? "Bearer <token>" : "Basic <user:password>");
        char *body = tw_api_error_json(msg);
        r = malloced_response(body, strlen(body));
        if (!r)
            return MHD_NO;
        add_json_headers(r);
    } else {
        char *body = tw_xasprintf("401 %s\n", why);
        r = malloced_response(body, strlen(body));
        if (!r)
            return MHD_NO;
        add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, TEXT_CONTENT_TYPE);
        add_header(r, "X-Content-Type-Options", "nosniff");
    }
    /* One challenge per configured kind (RFC 7235 allows several headers);
     * RFC 6750 asks for error="invalid_token" when a token was wrong. */
    if (kinds & TW_AUTH_BEARER)
        add_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                   res == TW_AUTH_INVALID ? "Bearer " REALM ", error=\"invalid_token\""
                                          : "Bearer " REALM);
    if (kinds & TW_AUTH_BASIC)
        add_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Basic " REALM ", charset=\"UTF-8\"");
    return queue_once(conn, MHD_HTTP_UNAUTHORIZED, r);
}

/* ---- the API and the page ---- */

static const char *query_arg(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, name);
}

static void api_request(struct MHD_Connection *conn, const char *url, const char *method,
                        const upload_t *up, tw_api_request_t *req)
{
    memset(req, 0, sizeof *req);
    req->method = method;
    req->path = url;
    req->query = query_arg;
    req->query_ctx = conn;
    req->content_type =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (up) {
        req->body = up->data;
        req->body_len = up->len;
    }
}

static enum MHD_Result serve_page(tw_http_t *h, struct MHD_Connection *conn, const char *url,
                                  const char *method)
{
    for (size_t i = 0; i < h->nassets; i++) {
        if (strcmp(url, h->assets[i].path) != 0)
            continue;
        if (!is_get(method))
            return MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, h->not_allowed);
        return MHD_queue_response(conn, MHD_HTTP_OK, h->asset_resp[i]);
    }
    return MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, h->not_found);
}

/* ---- the slow threads ---- */

/* True when answering route may block: the backend, or a credential
 * check (an argon2id verification takes tens of milliseconds). */
static bool may_block(tw_http_t *h, route_t route)
{
    if (route == ROUTE_API)
        return true;
    pthread_rwlock_rdlock(&h->auth_lock);
    unsigned kinds = needed_kinds(h, route);
    pthread_rwlock_unlock(&h->auth_lock);
    return kinds != 0;
}

static req_t *new_req(struct MHD_Connection *conn, const char *url, const char *method,
                      route_t route)
{
    req_t *r = tw_xcalloc(1, sizeof *r);
    r->conn = conn;
    r->url = url;
    r->method = method;
    r->route = route;
    return r;
}

/* What may block, on whichever thread runs it: the credential check
 * (already done for an action's body) and the backend. */
static void slow_work(tw_http_t *h, req_t *r)
{
    r->authorized = r->up ? true : authorized(h, r->conn, r->route, &r->kinds, &r->res);
    if (r->authorized && r->route == ROUTE_API) {
        tw_api_request_t q;
        api_request(r->conn, r->url, r->method, r->up, &q);
        tw_api_handle(h->api, &q, &r->resp);
        r->has_resp = true;
    }
    r->done = true;
}

/* Suspends r's connection and queues r for a slow thread (called from
 * MHD's access handler). False when the server is stopping: the caller
 * then does the work itself. */
static bool hand_over(tw_http_t *h, req_t *r)
{
    pthread_mutex_lock(&h->slow_lock);
    if (h->slow_stop) {
        pthread_mutex_unlock(&h->slow_lock);
        return false;
    }
    MHD_suspend_connection(r->conn);
    r->queued = true;
    r->next = NULL;
    if (h->slow_tail)
        h->slow_tail->next = r;
    else
        h->slow_head = r;
    h->slow_tail = r;
    pthread_cond_signal(&h->slow_cond);
    pthread_mutex_unlock(&h->slow_lock);
    return true;
}

/* A slow thread: until stopped and the queue is empty, does a request's
 * work and resumes its connection; MHD then calls the access handler
 * again, which sends the answer. r is not touched after the resume: the
 * request may complete (and r be freed) at once. */
static void *slow_main(void *arg)
{
    tw_http_t *h = arg;
    pthread_mutex_lock(&h->slow_lock);
    for (;;) {
        while (!h->slow_head && !h->slow_stop)
            pthread_cond_wait(&h->slow_cond, &h->slow_lock);
        req_t *r = h->slow_head;
        if (!r)
            break;
        h->slow_head = r->next;
        if (!h->slow_head)
            h->slow_tail = NULL;
        pthread_mutex_unlock(&h->slow_lock);
        sync_priority(h);
        struct MHD_Connection *conn = r->conn;
        slow_work(h, r);
        MHD_resume_connection(conn);
        pthread_mutex_lock(&h->slow_lock);
    }
    pthread_mutex_unlock(&h->slow_lock);
    return NULL;
}

/* The whole answer to a request whose body, if any, has been dealt with
 * (*req_cls: h, or a req_t with an action's body, already authenticated).
 * What may block is handed to a slow thread when can_suspend (the request
 * is complete), else done here. */
static enum MHD_Result respond(tw_http_t *h, struct MHD_Connection *conn, const char *url,
                               const char *method, void **req_cls, bool can_suspend)
{
    route_t route = route_of(h, url);
    if (route == ROUTE_NONE)
        return MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, h->not_found);
    req_t *r = *req_cls != h ? *req_cls : NULL;
    if (!r && may_block(h, route)) {
        r = new_req(conn, url, method, route);
        *req_cls = r; /* freed by request_completed */
    }
    if (r && !r->done) {
        if (can_suspend && hand_over(h, r))
            return MHD_YES;
        slow_work(h, r);
    }
    if (r) {
        if (!r->authorized)
            return send_unauthorized(conn, route, r->kinds, r->res);
        if (r->has_resp) {
            r->has_resp = false; /* the body now belongs to MHD */
            return queue_json(conn, (unsigned)r->resp.status, r->resp.body, r->resp.allow);
        }
    }
    switch (route) {
    case ROUTE_PAGE:
        return serve_page(h, conn, url, method);
    default:
        break;
    }
    if (!is_get(method))
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
    default:
        break;
    }
    return MHD_NO;
}

static enum MHD_Result too_large(struct MHD_Connection *conn)
{
    char msg[64];
    snprintf(msg, sizeof msg, "request body too large: at most %d bytes", TW_API_BODY_MAX);
    return queue_json(conn, MHD_HTTP_CONTENT_TOO_LARGE, tw_api_error_json(msg), NULL);
}

/* First call of an API POST: everything the headers decide. Returns true
 * (with *ret unset) when the body should be read. */
static bool gate_upload(tw_http_t *h, struct MHD_Connection *conn, const char *url,
                        const char *method, enum MHD_Result *ret)
{
    unsigned kinds;
    tw_auth_result_t res;
    if (!authorized(h, conn, ROUTE_API, &kinds, &res)) {
        *ret = send_unauthorized(conn, ROUTE_API, kinds, res);
        return false;
    }
    tw_api_request_t req;
    api_request(conn, url, method, NULL, &req);
    tw_api_response_t resp;
    if (!tw_api_precheck(&req, &resp)) {
        *ret = queue_json(conn, (unsigned)resp.status, resp.body, resp.allow);
        return false;
    }
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > TW_API_BODY_MAX) {
        *ret = too_large(conn);
        return false;
    }
    return true;
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls)
{
    (void)version;
    tw_http_t *h = cls;
    sync_priority(h);

    if (*req_cls == NULL) {
        /* First call: only the headers have been read. */
        if (route_of(h, url) == ROUTE_API && strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
            enum MHD_Result ret = MHD_NO;
            if (!gate_upload(h, conn, url, method, &ret))
                return ret;
            req_t *r = new_req(conn, url, method, ROUTE_API);
            r->up = tw_xmalloc(sizeof *r->up);
            r->up->len = 0;
            *req_cls = r; /* freed by request_completed */
            return MHD_YES;
        }
        /* Answered now, before the body: MHD cannot resume a connection
         * into this state, so what may block runs on this thread. */
        if (announces_body(conn)) {
            *req_cls = h;
            return respond(h, conn, url, method, req_cls, false);
        }
        *req_cls = h; /* marks the first call as done */
        return MHD_YES;
    }
    if (*req_cls == h)
        return respond(h, conn, url, method, req_cls, true);

    req_t *r = *req_cls;
    if (r->queued) /* resumed: the slow thread's answer is ready */
        return respond(h, conn, url, method, req_cls, true);
    upload_t *up = r->up;
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        if (n > sizeof up->data - up->len) {
            /* A chunked body past the limit. Nothing more is read: MHD
             * (0.9.75) cannot queue an answer in the middle of a body, so
             * the 413 is refused and MHD closes the connection (it logs
             * "Application reported internal error"); a later MHD that
             * can send it, sends it and closes. */
            return too_large(conn);
        }
        memcpy(up->data + up->len, upload_data, n);
        up->len += n;
        *upload_data_size = 0;
        return MHD_YES;
    }
    return respond(h, conn, url, method, req_cls, true);
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    tw_http_t *h = cls;
    if (*req_cls && *req_cls != h) {
        req_t *r = *req_cls;
        if (r->has_resp)
            free(r->resp.body);
        free(r->up);
        free(r);
    }
    *req_cls = NULL;
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

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)(const void *)ss)->sin_addr.s_addr) >> 24) ==
               127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a);
}

/* Reads a PEM file for MHD. A key must not be readable by others (group
 * access is common for keys shared through a group such as ssl-cert). */
static int read_pem(const char *path, bool key, char **out, size_t *len, tw_err_t *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return tw_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_size == 0 || (size_t)st.st_size > PEM_MAX)
        return tw_err_set(err, "%s: expected a PEM file of 1 byte to 1 MiB", path);
    if (key && (st.st_mode & 007))
        return tw_err_set(err,
                          "%s: the private key is readable by others (mode %04o): chmod o= %s",
                          path, (unsigned)(st.st_mode & 07777), path);
    if (tw_read_file(path, out, len, err) != 0)
        return -1;
    if (!strstr(*out, "-----BEGIN ")) {
        if (key)
            sodium_memzero(*out, *len);
        free(*out);
        *out = NULL;
        return tw_err_set(err, "%s: expected PEM (\"-----BEGIN ...\"), found none", path);
    }
    return 0;
}

int tw_http_check_pem(const char *path, bool key, tw_err_t *err)
{
    char *pem;
    size_t len;
    if (read_pem(path, key, &pem, &len, err) != 0)
        return -1;
    sodium_memzero(pem, len);
    free(pem);
    return 0;
}

static void free_server(tw_http_t *h)
{
    if (h->metrics_resp)
        MHD_destroy_response(h->metrics_resp);
    pthread_mutex_destroy(&h->metrics_lock);
    pthread_mutex_destroy(&h->slow_lock);
    pthread_cond_destroy(&h->slow_cond);
    MHD_destroy_response(h->healthy);
    MHD_destroy_response(h->ready_yes);
    MHD_destroy_response(h->ready_no);
    MHD_destroy_response(h->not_found);
    MHD_destroy_response(h->not_allowed);
    for (size_t i = 0; h->asset_resp && i < h->nassets; i++)
        MHD_destroy_response(h->asset_resp[i]);
    free(h->asset_resp);
    tw_api_auth_free(h->auth);
    pthread_rwlock_destroy(&h->auth_lock);
    free(h->tls_cert);
    if (h->tls_key) {
        sodium_memzero(h->tls_key, h->tls_key_len);
        free(h->tls_key);
    }
    pthread_mutex_destroy(&h->log_lock);
    free(h);
}

static void build_page(tw_http_t *h, const tw_http_opts_t *opts)
{
    if (!h->api || !opts->assets)
        return;
    h->assets = opts->assets;
    h->nassets = opts->nassets;
    h->asset_resp = tw_xcalloc(h->nassets, sizeof *h->asset_resp);
    for (size_t i = 0; i < h->nassets; i++) {
        const tw_asset_t *a = &h->assets[i];
        struct MHD_Response *r =
            MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
        if (!r)
            tw_die("http: cannot create a response");
        add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type);
        add_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        add_header(r, "X-Content-Type-Options", "nosniff");
        add_header(r, "X-Frame-Options", "DENY");
        add_header(r, "Referrer-Policy", "no-referrer");
        add_header(r, "Content-Security-Policy", PAGE_CSP);
        h->asset_resp[i] = r;
    }
}

static int setup_security(tw_http_t *h, const tw_http_opts_t *opts, tw_err_t *err)
{
    if (pthread_rwlock_init(&h->auth_lock, NULL) != 0)
        tw_die("http: pthread_rwlock_init failed");
    if (tw_api_auth_load(&h->auth, opts->bearer_token_file, opts->basic_auth_file, err) != 0)
        return -1;
    h->metrics_auth = opts->metrics_auth;
    if (h->metrics_auth && tw_api_auth_kinds(h->auth) == 0)
        return tw_err_set(err, "/metrics behind authentication needs a bearer token file "
                               "or a basic auth file");
    bool cert = opts->tls_cert_file && opts->tls_cert_file[0];
    bool key = opts->tls_key_file && opts->tls_key_file[0];
    if (cert != key)
        return tw_err_set(err, "TLS needs both a certificate file and a key file");
    if (!cert)
        return 0;
    if (!tw_http_tls_supported())
        return tw_err_set(err, "TLS is configured, but this libmicrohttpd was built without "
                               "TLS support (Debian's is built with GnuTLS)");
    size_t len;
    if (read_pem(opts->tls_cert_file, false, &h->tls_cert, &len, err) != 0 ||
        read_pem(opts->tls_key_file, true, &h->tls_key, &h->tls_key_len, err) != 0)
        return -1;
    return 0;
}

/* The nice value of HTTP threads: base, or HTTP_NICE_DELTA more (at most 19). */
static int nice_of(int base, bool yield)
{
    int n = yield ? base + HTTP_NICE_DELTA : base;
    return n > 19 ? 19 : n;
}

/* The nice value this thread last set for itself; INT_MIN: not yet. */
static _Thread_local int tls_nice = INT_MIN;

/* Gives the calling HTTP thread the nice value the server wants now (Linux
 * nice is per thread, and threads inherit it from their creator). Called
 * at each request, so a change reaches a thread with its next request;
 * one relaxed load when nothing changed. Lowering the priority needs no
 * privilege; raising it back needs CAP_SYS_NICE or an RLIMIT_NICE that
 * allows it (the systemd unit's LimitNICE=+0). Without, the first refusal
 * is logged and the threads keep the lower priority, so a failure only
 * ever costs scrapes some latency, never the ingest threads CPU. */
static void sync_priority(tw_http_t *h)
{
    int want = atomic_load_explicit(&h->nice_want, memory_order_relaxed);
    if (want == tls_nice)
        return;
    id_t tid = (id_t)gettid();
    if (tls_nice == INT_MIN) {
        errno = 0;
        int cur = getpriority(PRIO_PROCESS, tid);
        tls_nice = cur == -1 && errno != 0 ? want : cur;
        if (want == tls_nice)
            return;
    }
    bool raise = want < tls_nice;
    if (raise && atomic_load_explicit(&h->nice_stuck, memory_order_relaxed))
        return;
    if (setpriority(PRIO_PROCESS, tid, want) == 0) {
        tls_nice = want;
        return;
    }
    int e = errno;
    if (raise) {
        /* The usual reason is no right to (EACCES, EPERM): said in words,
         * so that the line does not read like a file permission problem. */
        if (!atomic_exchange(&h->nice_stuck, true))
            tw_info("http: cannot raise the HTTP threads' priority back to nice %d (%s): "
                    "they stay up to %d nicer than the ingest threads (CAP_SYS_NICE or "
                    "LimitNICE=+0 allows it)",
                    want,
                    e == EACCES || e == EPERM ? "RLIMIT_NICE does not allow it" : strerror(e),
                    HTTP_NICE_DELTA);
        return;
    }
    tw_debug("http: cannot lower the HTTP threads' priority: %s", strerror(e));
    tls_nice = want;   /* do not try again until the wish changes */
}

/* Every connection holds a descriptor: the soft RLIMIT_NOFILE is raised
 * towards the hard one when max_conn would not fit under it. */
static void raise_nofile(unsigned max_conn)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t need = (rlim_t)max_conn + FD_RESERVE;
    if (rl.rlim_cur >= need)
        return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
    if (rl.rlim_cur > old && setrlimit(RLIMIT_NOFILE, &rl) == 0)
        tw_info("http: open files limit raised from %llu to %llu for %u connections",
                (unsigned long long)old, (unsigned long long)rl.rlim_cur, max_conn);
    else
        rl.rlim_cur = old;
    if (rl.rlim_cur < need)
        tw_warn("http: open files limit %llu (hard %llu) is below http.max_connections %u + "
                "%d: connections past it are refused",
                (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, max_conn,
                FD_RESERVE);
}

/* MHD_start_daemon runs on a thread of its own whose priority is lowered
 * first, so MHD's threads and the slow threads, all created here, inherit
 * it and the caller's thread keeps its own. */
typedef struct starter {
    tw_http_t *h;
    unsigned flags;
    uint16_t port;
    struct sockaddr_storage *ss;
    unsigned max_conn, per_ip, timeout_s;
} starter_t;

static void *start_main(void *arg)
{
    starter_t *st = arg;
    tw_http_t *h = st->h;
    /* MHD's threads and ours inherit this thread's priority. */
    sync_priority(h);
    /* The logger goes first so that MHD's start-up messages reach it. The
     * port argument is ignored when MHD_OPTION_SOCK_ADDR is given. MHD sets
     * SO_REUSEADDR on the listening socket by default (and no SO_REUSEPORT),
     * so a restart can rebind at once while a second live server cannot.
     * The TLS options come last: MHD_OPTION_END in their place ends the
     * list for plain HTTP. */
    /* One option and its arguments per line. */
    /* clang-format off */
    h->daemon = MHD_start_daemon(
        st->flags, st->port, NULL, NULL, handle_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)st->ss,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)POLL_THREADS,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)st->max_conn,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)st->per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)st->timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_MEMORY_LIMIT,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, notify_connection, h,
        h->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, h->tls_cert,
        MHD_OPTION_HTTPS_MEM_KEY, h->tls_key,
        MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES,
        MHD_OPTION_END);
    /* clang-format on */
    if (!h->daemon)
        return NULL;
    for (size_t i = 0; i < SLOW_THREADS; i++) {
        if (pthread_create(&h->slow[i], NULL, slow_main, h) != 0)
            tw_die("http: cannot create a thread");
        pthread_setname_np(h->slow[i], "tw-http-slow");   /* top -H; MHD names its own */
        h->nslow++;
    }
    return NULL;
}

/* Stops the slow threads once they have emptied the queue (every
 * suspended connection is resumed: MHD must not stop with one). */
static void stop_slow(tw_http_t *h)
{
    pthread_mutex_lock(&h->slow_lock);
    h->slow_stop = true;
    pthread_cond_broadcast(&h->slow_cond);
    pthread_mutex_unlock(&h->slow_lock);
    for (size_t i = 0; i < h->nslow; i++)
        pthread_join(h->slow[i], NULL);
    h->nslow = 0;
}

bool tw_http_tls_supported(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

tw_http_t *tw_http_start(const tw_http_opts_t *opts, tw_metrics_t *metrics, tw_err_t *err)
{
    static const tw_http_opts_t defaults = {0};
    if (!opts)
        opts = &defaults;
    const char *address = opts->address && opts->address[0] ? opts->address : DEFAULT_ADDRESS;
    unsigned max_conn = opts->max_connections ? opts->max_connections : DEFAULT_MAX_CONNECTIONS;
    unsigned timeout_s = opts->timeout_s ? opts->timeout_s : DEFAULT_TIMEOUT_S;
    unsigned per_ip = max_conn / PER_IP_DIVISOR;
    if (per_ip < MIN_PER_IP_CONNECTIONS)
        per_ip = MIN_PER_IP_CONNECTIONS;

    struct sockaddr_storage ss;
    bool ipv6 = false;
    char shown[INET6_ADDRSTRLEN + 16];
    if (parse_address(address, opts->port, &ss, &ipv6, shown, sizeof shown, err) != 0)
        return NULL;

    tw_http_t *h = tw_xcalloc(1, sizeof *h);
    h->metrics = metrics;
    h->api = opts->api;
    atomic_init(&h->ready, false);
    /* Until the daemon says otherwise, ingestion may be behind (start-up
     * often catches up on a backlog): HTTP threads start nicer. */
    errno = 0;
    h->nice_base = getpriority(PRIO_PROCESS, (id_t)gettid());
    if (h->nice_base == -1 && errno != 0)
        h->nice_base = 0;
    atomic_init(&h->nice_want, nice_of(h->nice_base, true));
    atomic_init(&h->nice_stuck, false);
    if (pthread_mutex_init(&h->log_lock, NULL) != 0 ||
        pthread_mutex_init(&h->metrics_lock, NULL) != 0 ||
        pthread_mutex_init(&h->slow_lock, NULL) != 0 ||
        pthread_cond_init(&h->slow_cond, NULL) != 0)
        tw_die("http: pthread_mutex_init failed");
    h->healthy = fixed_response("tokenwatch is Healthy.\n");
    h->ready_yes = fixed_response("tokenwatch is Ready.\n");
    h->ready_no = fixed_response("tokenwatch is not ready.\n");
    h->not_found = fixed_response("404 page not found\n");
    h->not_allowed = fixed_response("405 method not allowed\n");
    add_header(h->not_allowed, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    build_page(h, opts);
    if (setup_security(h, opts, err) != 0) {
        free_server(h);
        return NULL;
    }

    /* A few poll threads (epoll each) for every connection; what may
     * block is suspended and handed to the slow threads. */
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_AUTO |
                         MHD_ALLOW_SUSPEND_RESUME;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    if (h->tls_cert)
        flags |= MHD_USE_TLS;
    raise_nofile(max_conn);

    h->starting = true; /* no MHD thread can see h yet */
    starter_t st = {h, flags, opts->port, &ss, max_conn, per_ip, timeout_s};
    pthread_t starter;
    if (pthread_create(&starter, NULL, start_main, &st) != 0)
        tw_die("http: cannot create a thread");
    pthread_join(starter, NULL);

    pthread_mutex_lock(&h->log_lock);
    h->starting = false;
    char start_msg[sizeof h->start_msg];
    memcpy(start_msg, h->start_msg, sizeof start_msg);
    pthread_mutex_unlock(&h->log_lock);

    if (!h->daemon) {
        if (h->tls_cert)
            tw_err_set(err, "%s: cannot serve HTTPS (%s; check %s and %s)", shown,
                       start_msg[0] ? start_msg : "address in use?", opts->tls_cert_file,
                       opts->tls_key_file);
        else
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
        stop_slow(h);
        MHD_stop_daemon(h->daemon);
        free_server(h);
        return NULL;
    }
    h->port = info->port;
    if (h->api && tw_api_auth_kinds(h->auth) == 0 && !is_loopback(&ss))
        tw_warn("http: the analyst API on %s, port %u, has no credentials (http.auth): "
                "whoever reaches it can read flagged tokens and act on them",
                address, (unsigned)h->port);
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

void tw_http_set_yield(tw_http_t *h, bool yield)
{
    atomic_store_explicit(&h->nice_want, nice_of(h->nice_base, yield), memory_order_relaxed);
}

int tw_http_reload_auth(tw_http_t *h, const char *bearer_token_file,
                        const char *basic_auth_file, tw_err_t *err)
{
    tw_api_auth_t *fresh;
    if (tw_api_auth_load(&fresh, bearer_token_file, basic_auth_file, err) != 0)
        return -1;
    if (h->metrics_auth && tw_api_auth_kinds(fresh) == 0) {
        tw_api_auth_free(fresh);
        return tw_err_set(err, "/metrics behind authentication needs a bearer token file or "
                               "a basic auth file");
    }
    pthread_rwlock_wrlock(&h->auth_lock);
    tw_api_auth_t *old = h->auth;
    h->auth = fresh;
    pthread_rwlock_unlock(&h->auth_lock);
    tw_api_auth_free(old);
    return 0;
}

void tw_http_stop(tw_http_t *h)
{
    if (!h)
        return;
    /* The slow threads first: they resume what they hold, and requests
     * that need them from now on are handled on the poll threads. Then MHD
     * joins its threads and closes every connection; after this no
     * callback can run, so the responses and h can go. */
    stop_slow(h);
    MHD_stop_daemon(h->daemon);
    free_server(h);
}
