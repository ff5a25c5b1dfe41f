/*
 * config.h — the daemon's JSON configuration: parsing, validation, defaults.
 *
 * tw_config_load() validates everything a start would (the config file, the
 * format files it references and their patterns) and fails with one message
 * naming the file, the JSON path and what was expected, e.g.
 *   "/etc/tokenwatch/tokenwatch.json: inputs[1].format: expected one of the
 *    formats in /usr/share/tokenwatch/formats (generic-json, ...), got \"x\"".
 * Unknown keys are errors, so a typo never silently falls back to a default.
 * Relative paths are resolved against the config file's directory.
 * A loaded config is immutable; SIGHUP builds a new one and swaps it in.
 */
#ifndef TW_CONFIG_H
#define TW_CONFIG_H

#include "common.h"
#include "detect.h"
#include "format.h"
#include "syslogsink.h"
#include "tail.h"

#define TW_DEFAULT_CONFIG "/etc/tokenwatch/tokenwatch.json"
#define TW_DEFAULT_FORMATS_DIR "/usr/share/tokenwatch/formats"
#define TW_DEFAULT_LISTEN "127.0.0.1:9477"
/* "threads": 1 (one thread reads, parses and detects) or 2 (a reader thread
 * and an analysis thread, handoff.h). A build may change the default
 * (-DTW_THREADS_DEFAULT=1) to run the whole test suite on the other path. */
#ifndef TW_THREADS_DEFAULT
#define TW_THREADS_DEFAULT 2
#endif

typedef struct tw_input_conf {
    char *name;
    char *path;                  /* absolute or relative to the cwd after resolution */
    const tw_format_t *format;   /* owned by the config's format set */
    bool from_start;             /* "start": "beginning" */
} tw_input_conf_t;

/* The "freeze" and "unfreeze" sections (respond.h; docs/configuration.md). */
typedef struct tw_respond_conf {
    bool enabled;                /* a "freeze" section is present */
    char **freeze_argv;          /* NULL-terminated; NULL = no freeze command */
    char **unfreeze_argv;        /* NULL = no unfreeze command */
    bool pass_token, dry_run;
    unsigned timeout_ms, concurrency, queue_size, max_attempts, backoff_ms, backoff_max_ms;
    unsigned max_per_minute;     /* circuit breaker: freezes admitted per window */
    unsigned circuit_window_s;   /* its window, default 60 */
    uint64_t ttl_s, ttl_max_s;   /* 0 = frozen until an analyst unfreezes */
    double ttl_increment;        /* each repeat freeze lasts this many times longer */
} tw_respond_conf_t;

typedef struct tw_config {
    char *file;                  /* the config file as given */
    char *state_dir;
    char *formats_dir;
    int log_level;               /* tw_log_level_t */
    int state_interval_ms;
    int threads;                 /* 1 or 2, see TW_THREADS_DEFAULT */

    char *http_address;          /* IP literal */
    uint16_t http_port;
    unsigned http_max_connections;
    unsigned http_timeout_s;
    /* Access control and TLS of the HTTP server (docs/api.md); paths are
     * resolved, NULL when not configured. Checked at load (modes, syntax). */
    char *http_bearer_token_file;
    char *http_basic_auth_file;
    bool http_metrics_auth;
    char *http_tls_cert_file;
    char *http_tls_key_file;

    tw_tail_opts_t follow;
    int poll_interval_ms;

    size_t ninputs;
    tw_input_conf_t *inputs;
    tw_formats_t *formats;       /* owned */

    /* Detection (docs/detection-design.md). */
    bool has_geoip;              /* a "geoip" section: geo rules enabled */
    char *geo_city_db;           /* resolved against the config's directory */
    char *geo_asn_db;            /* NULL without an ASN database */
    size_t geo_cache_entries;
    char *rules_file;            /* resolved; the default when not given */
    tw_rules_t *rules;           /* owned; NULL when the default rules file is
                                    absent (detection off, see rules_missing) */
    bool rules_missing;          /* rules_file not given and the default absent */
    char *events_file;           /* default STATE_DIR/events.jsonl */
    size_t max_tokens;
    tw_syslog_conf_t syslog;     /* enabled false without a "syslog" section */
    tw_respond_conf_t respond;
    size_t max_cases;            /* flagged/frozen store bound */
    unsigned baselines_interval_s;   /* baselines.bin save period */
} tw_config_t;

/* Loads and validates path. Returns 0 and *out, or -1 with err filled. */
int tw_config_load(tw_config_t **out, const char *path, tw_err_t *err);
void tw_config_free(tw_config_t *c);   /* NULL-safe */

/* Finds an input by name; NULL if absent. */
const tw_input_conf_t *tw_config_input(const tw_config_t *c, const char *name);

/* Fills the listener, limit, credential and TLS fields of *o from c (the
 * API backend and page assets are the caller's). Strings are borrowed from
 * c, which must outlive the server's start. */
struct tw_http_opts;
void tw_config_http_opts(const tw_config_t *c, struct tw_http_opts *o);

/* Splits "host:port" / "[v6]:port" into a fresh address string and a port.
 * Returns -1 (err: what was expected) on malformed input. */
int tw_parse_listen(const char *s, char **addr, uint16_t *port, tw_err_t *err);

#endif
