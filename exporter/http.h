/*
 * http.h — the HTTP server (libmicrohttpd): /metrics, /-/healthy, /-/ready.
 *
 * Runs libmicrohttpd's own polling thread (epoll on Linux). Limits are always
 * on: a connection cap, a per-IP cap, a per-connection idle timeout, and only
 * GET/HEAD on these paths (405 otherwise, 404 for unknown paths). /-/ready
 * answers 503 until tw_http_set_ready(h, true).
 */
#ifndef TW_HTTP_H
#define TW_HTTP_H

#include "common.h"
#include "metrics.h"

typedef struct tw_http_opts {
    const char *address;       /* IPv4 or IPv6 literal, default "127.0.0.1" */
    uint16_t port;             /* 0 = pick a free port (see tw_http_port) */
    unsigned max_connections;  /* default 64 */
    unsigned timeout_s;        /* idle timeout per connection, default 10 */
} tw_http_opts_t;

typedef struct tw_http tw_http_t;

/* Starts serving; metrics is borrowed and must outlive the server.
 * Returns NULL and fills err (e.g. "127.0.0.1:9477: cannot listen (Failed to bind to port 9477: Address already in use)"). */
tw_http_t *tw_http_start(const tw_http_opts_t *opts, tw_metrics_t *metrics,
                         tw_err_t *err);
/* The bound port (useful with port 0). */
uint16_t tw_http_port(const tw_http_t *h);
/* Thread-safe. */
void tw_http_set_ready(tw_http_t *h, bool ready);
/* Stops the server and frees it (NULL-safe). */
void tw_http_stop(tw_http_t *h);

#endif
