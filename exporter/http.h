/*
 * http.h — the HTTP server (libmicrohttpd): /metrics, /-/healthy, /-/ready,
 * and with an API backend the analyst API (/api/v1/..., api.h) and the
 * analyst page (/ and /static/<name>, assets.h).
 *
 * A few poll threads serve every connection (an idle one costs no
 * thread); credential checks and API calls, which may block, run on
 * separate threads, so a slow API call never delays a /metrics scrape or
 * a probe. /metrics is rendered afresh for the first request on a
 * connection; later ones on it may share a rendering up to 10 ms old. All
 * HTTP threads run at a lower priority (nice +10) than the daemon's
 * others. Limits are always on: a connection cap, a per-IP cap (a quarter
 * of the connections), a
 * per-connection idle timeout, a 16 KiB budget for request headers, and
 * request bodies only where one is expected (an API action, at most
 * TW_API_BODY_MAX bytes: 413 beyond, without reading the rest). /-/ready
 * answers 503 until tw_http_set_ready(h, true).
 *
 * Access control (docs/api.md "Access control"): with credentials
 * configured, /api/... needs them (401 with WWW-Authenticate otherwise); so
 * does the page when basic auth is configured (a browser can send basic
 * credentials on navigation, not a bearer token: with a bearer token only,
 * the page's static files are public and its data calls carry the token);
 * /metrics needs them only with metrics_auth; /-/healthy and /-/ready
 * never. With a certificate and key, the server speaks HTTPS only.
 */
#ifndef TW_HTTP_H
#define TW_HTTP_H

#include "api.h"
#include "assets.h"
#include "common.h"
#include "metrics.h"

typedef struct tw_http_opts {
    const char *address;      /* IPv4 or IPv6 literal, default "127.0.0.1" */
    uint16_t port;            /* 0 = pick a free port (see tw_http_port) */
    unsigned max_connections; /* default 2048; the soft RLIMIT_NOFILE is raised to fit */
    unsigned timeout_s;       /* idle timeout per connection, default 10 */

    /* The analyst API; NULL: no API, and /api/... and / answer 404.
     * Borrowed: it must outlive the server. */
    const tw_api_backend_t *api;
    /* The page's files (tw_page_assets, tw_page_nassets); borrowed. NULL or
     * an empty table: / answers 404 even with an API. */
    const tw_asset_t *assets;
    size_t nassets;

    /* Credential files (api.h tw_api_auth_load); NULL: not configured. */
    const char *bearer_token_file;
    const char *basic_auth_file;
    bool metrics_auth; /* /metrics needs credentials (one file must be set) */

    /* PEM files; both or neither. With them the server speaks HTTPS only. */
    const char *tls_cert_file;
    const char *tls_key_file;
} tw_http_opts_t;

typedef struct tw_http tw_http_t;

/* True when this libmicrohttpd was built with TLS (GnuTLS). */
bool tw_http_tls_supported(void);
/* Checks a PEM file as tw_http_start will read it: a regular file of at
 * most 1 MiB holding "-----BEGIN ", and for a key (key true) not readable
 * by others (group access is fine: keys are often shared through a group
 * such as ssl-cert). 0, or -1 with err = "PATH: what is wrong". */
int tw_http_check_pem(const char *path, bool key, tw_err_t *err);

/* Starts serving; metrics is borrowed and must outlive the server.
 * Returns NULL and fills err, e.g. "127.0.0.1:9477: cannot listen (Failed
 * to bind to port 9477: Address already in use)", or a credential or TLS
 * file's problem ("FILE: ..."). Call from the thread that will stop it.
 * Side effect on the process: the soft RLIMIT_NOFILE is raised (up to the
 * hard limit, logged) when max_connections would not fit under it. */
tw_http_t *tw_http_start(const tw_http_opts_t *opts, tw_metrics_t *metrics, tw_err_t *err);
/* The bound port (useful with port 0). */
uint16_t tw_http_port(const tw_http_t *h);
/* Thread-safe. */
void tw_http_set_ready(tw_http_t *h, bool ready);
/* Thread-safe. yield true: ingestion is behind, HTTP threads should run
 * 10 nice levels below the daemon (the state at start); false: at the
 * daemon's priority. Each HTTP thread applies it at its next request;
 * raising the priority back needs CAP_SYS_NICE or RLIMIT_NICE >= 20 - nice
 * (without, the threads stay nicer and one line is logged). */
void tw_http_set_yield(tw_http_t *h, bool yield);
/* Replaces the credentials (SIGHUP) with those of these files. On error
 * returns -1 with err filled and keeps the old credentials. Requests
 * being checked finish with the old ones. The caller's thread (not MHD's);
 * metrics_auth keeps its start-up value. */
int tw_http_reload_auth(tw_http_t *h, const char *bearer_token_file,
                        const char *basic_auth_file, tw_err_t *err);
/* Stops the server and frees it (NULL-safe): requests waiting for the API
 * or a credential check are finished first. */
void tw_http_stop(tw_http_t *h);

#endif
