/*
 * config.c — see config.h. Validation is strict and messages name the file
 * and JSON path; defaults are the ones documented in docs/configuration.md.
 */
#include "config.h"
#include "api.h"
#include "http.h"
#include "jsonv.h"
#include "log.h"
#include "tokens.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int tw_parse_listen(const char *s, char **addr, uint16_t *port, tw_err_t *err)
{
    const char *colon;
    char *host;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return tw_err_set(err, "expected \"[IPv6]:port\", got \"%s\"", s);
        host = tw_xstrndup(s + 1, (size_t)(close - s - 1));
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || strchr(s, ':') != colon)
            return tw_err_set(err, "expected \"address:port\" (e.g. 127.0.0.1:9477), got \"%s\"", s);
        host = tw_xstrndup(s, (size_t)(colon - s));
    }
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) {
        tw_err_set(err, "expected an IP address before the port, got \"%s\"", host);
        free(host);
        return -1;
    }
    /* Digits only: strtoul alone would take "+80", " 80" or "-1". */
    const char *digits = colon + 1;
    size_t ndigits = strspn(digits, "0123456789");
    unsigned long p = 0;
    for (size_t i = 0; i < ndigits && i < 6; i++)
        p = p * 10 + (unsigned long)(digits[i] - '0');
    if (ndigits == 0 || ndigits > 5 || digits[ndigits] != '\0' ||
        (ndigits > 1 && digits[0] == '0') || p > 65535) {
        free(host);
        return tw_err_set(err, "expected a port from 0 to 65535 after the address, got \"%s\"", s);
    }
    *addr = host;
    *port = (uint16_t)p;
    return 0;
}

/* 1 to max characters from [A-Za-z0-9_.-]: input names (max 64) and the
 * syslog ident (max 32: RFC 3164's TAG, which every syslog daemon in use
 * also takes with '_', '.' and '-'). */
static bool valid_name(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static const char *const top_keys[] = {"state_dir", "formats_dir", "log_level",
                                       "state_interval_ms", "http", "follow", "inputs",
                                       "geoip", "rules_file", "events_file", "max_tokens",
                                       "syslog", "freeze", "unfreeze", "max_cases",
                                       "baselines_interval_s", "threads", NULL};
static const char *const freeze_keys[] = {
    "command",  "pass_token",     "dry_run",        "timeout_s", "concurrency",
    "queue_size", "max_attempts", "backoff_ms",     "backoff_max_ms",
    "max_per_minute", "circuit_window_s", "ttl_s", "ttl_increment", "ttl_max_s", NULL};
static const char *const unfreeze_keys[] = {"command", NULL};
static const char *const geoip_keys[] = {"city_db", "asn_db", "cache_entries", NULL};
static const char *const http_keys[] = {"listen", "max_connections", "timeout_s", "auth",
                                        "metrics_auth", "tls", NULL};
static const char *const http_auth_keys[] = {"bearer_token_file", "basic_auth_file", NULL};
static const char *const http_tls_keys[] = {"cert_file", "key_file", NULL};
static const char *const follow_keys[] = {"max_line_bytes", "read_block_bytes",
                                          "rotate_wait_ms", "poll_interval_ms", "inotify",
                                          NULL};
static const char *const syslog_keys[] = {"enabled", "ident", "facility", "severity_min",
                                          "socket", "max_per_round", NULL};
static const char *const input_keys[] = {"name", "path", "format", "start", NULL};

/* http.auth, http.metrics_auth and http.tls. The credential files are
 * loaded once here (and dropped) so that a mode, syntax or hash error is a
 * config error naming the key, not a failed start. */
static int load_http_security(const tw_jv_t *jv, const cJSON *http, const char *dir,
                              tw_config_t *c)
{
    const cJSON *auth, *tls;
    const char *bearer = NULL, *basic = NULL, *cert, *key;
    if (tw_jv_get_object(jv, http, "http", "auth", http_auth_keys, &auth) != 0 ||
        tw_jv_get_object(jv, http, "http", "tls", http_tls_keys, &tls) != 0 ||
        tw_jv_bool(jv, http, "http", "metrics_auth", false, &c->http_metrics_auth))
        return -1;
    if (auth && (tw_jv_string(jv, auth, "http.auth", "bearer_token_file", false, NULL,
                              &bearer) ||
                 tw_jv_string(jv, auth, "http.auth", "basic_auth_file", false, NULL, &basic)))
        return -1;
    tw_err_t aerr;
    tw_api_auth_t *a;
    if (bearer) {
        c->http_bearer_token_file = tw_path_join(dir, bearer);
        if (tw_api_auth_load(&a, c->http_bearer_token_file, NULL, &aerr) != 0)
            return tw_jv_fail(jv, "http.auth.bearer_token_file", "%s", aerr.msg);
        tw_api_auth_free(a);
    }
    if (basic) {
        c->http_basic_auth_file = tw_path_join(dir, basic);
        if (tw_api_auth_load(&a, NULL, c->http_basic_auth_file, &aerr) != 0)
            return tw_jv_fail(jv, "http.auth.basic_auth_file", "%s", aerr.msg);
        tw_api_auth_free(a);
    }
    if (c->http_metrics_auth && !bearer && !basic)
        return tw_jv_fail(jv, "http.metrics_auth",
                          "expected false without http.auth.basic_auth_file or "
                          "http.auth.bearer_token_file (the credentials /metrics would need)");
    if (!tls)
        return 0;
    if (tw_jv_string(jv, tls, "http.tls", "cert_file", true, NULL, &cert) ||
        tw_jv_string(jv, tls, "http.tls", "key_file", true, NULL, &key))
        return -1;
    if (!tw_http_tls_supported())
        return tw_jv_fail(jv, "http.tls", "this libmicrohttpd was built without TLS support "
                                          "(Debian's libmicrohttpd12 has it, with GnuTLS)");
    c->http_tls_cert_file = tw_path_join(dir, cert);
    c->http_tls_key_file = tw_path_join(dir, key);
    if (tw_http_check_pem(c->http_tls_cert_file, false, &aerr) != 0)
        return tw_jv_fail(jv, "http.tls.cert_file", "%s", aerr.msg);
    if (tw_http_check_pem(c->http_tls_key_file, true, &aerr) != 0)
        return tw_jv_fail(jv, "http.tls.key_file", "%s", aerr.msg);
    return 0;
}

static int load_http(const tw_jv_t *jv, const cJSON *root, const char *dir, tw_config_t *c)
{
    const cJSON *http;
    if (tw_jv_get_object(jv, root, "", "http", http_keys, &http) != 0)
        return -1;
    const char *listen = TW_DEFAULT_LISTEN;
    long long maxc = 2048, tmo = 10;
    if (http && (tw_jv_string(jv, http, "http", "listen", false, TW_DEFAULT_LISTEN, &listen) ||
                 tw_jv_int(jv, http, "http", "max_connections", 1, 100000, 2048, &maxc) ||
                 tw_jv_int(jv, http, "http", "timeout_s", 1, 3600, 10, &tmo)))
        return -1;
    tw_err_t perr;
    if (tw_parse_listen(listen, &c->http_address, &c->http_port, &perr) != 0)
        return tw_jv_fail(jv, "http.listen", "%s", perr.msg);
    c->http_max_connections = (unsigned)maxc;
    c->http_timeout_s = (unsigned)tmo;
    return http ? load_http_security(jv, http, dir, c) : 0;
}

void tw_config_http_opts(const tw_config_t *c, tw_http_opts_t *o)
{
    o->address = c->http_address;
    o->port = c->http_port;
    o->max_connections = c->http_max_connections;
    o->timeout_s = c->http_timeout_s;
    o->bearer_token_file = c->http_bearer_token_file;
    o->basic_auth_file = c->http_basic_auth_file;
    o->metrics_auth = c->http_metrics_auth;
    o->tls_cert_file = c->http_tls_cert_file;
    o->tls_key_file = c->http_tls_key_file;
}

static int load_follow(const tw_jv_t *jv, const cJSON *root, tw_config_t *c)
{
    const cJSON *f;
    if (tw_jv_get_object(jv, root, "", "follow", follow_keys, &f) != 0)
        return -1;
    tw_tail_opts_default(&c->follow);
    c->poll_interval_ms = 1000;
    if (!f)
        return 0;
    long long max_line, block, rotate_wait, poll_ms;
    bool inotify;
    if (tw_jv_int(jv, f, "follow", "max_line_bytes", 256, 64LL << 20,
                  (long long)c->follow.max_line, &max_line) ||
        tw_jv_int(jv, f, "follow", "read_block_bytes", 4096, 64LL << 20,
                  (long long)c->follow.block, &block) ||
        tw_jv_int(jv, f, "follow", "rotate_wait_ms", 0, 3600000, c->follow.rotate_wait_ms,
                  &rotate_wait) ||
        tw_jv_int(jv, f, "follow", "poll_interval_ms", 10, 60000, 1000, &poll_ms) ||
        tw_jv_bool(jv, f, "follow", "inotify", true, &inotify))
        return -1;
    c->follow.max_line = (size_t)max_line;
    c->follow.block = (size_t)block;
    c->follow.rotate_wait_ms = (int)rotate_wait;
    c->follow.use_inotify = inotify;
    c->poll_interval_ms = (int)poll_ms;
    return 0;
}

/* Lists known format names for an error message. */
static void format_names(const tw_formats_t *fs, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < tw_formats_count(fs) && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "",
                              tw_format_name(tw_formats_at(fs, i)));
}

static int load_inputs(const tw_jv_t *jv, const cJSON *root, const char *dir,
                       tw_config_t *c)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    if (!arr)
        return 0;
    if (!cJSON_IsArray(arr))
        return tw_jv_fail(jv, "inputs", "expected an array of input objects");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    c->inputs = tw_xcalloc(n, sizeof *c->inputs);
    size_t i = 0;
    for (const cJSON *in = arr->child; in; in = in->next, i++) {
        char p[TW_JV_PATH_MAX], q[TW_JV_PATH_MAX];
        tw_jv_index(p, "inputs", i);
        if (tw_jv_object(jv, in, p, input_keys) != 0)
            return -1;
        const char *name, *path, *format, *start;
        if (tw_jv_string(jv, in, p, "name", true, NULL, &name) ||
            tw_jv_string(jv, in, p, "path", true, NULL, &path) ||
            tw_jv_string(jv, in, p, "format", true, NULL, &format) ||
            tw_jv_string(jv, in, p, "start", false, "end", &start))
            return -1;
        if (!valid_name(name, 64))
            return tw_jv_fail(jv, tw_jv_join(q, p, "name"),
                              "expected 1 to 64 characters from [A-Za-z0-9_.-], got \"%s\"",
                              name);
        bool from_start;
        if (strcmp(start, "end") == 0)
            from_start = false;
        else if (strcmp(start, "beginning") == 0)
            from_start = true;
        else
            return tw_jv_fail(jv, tw_jv_join(q, p, "start"),
                              "expected \"end\" or \"beginning\", got \"%s\"", start);
        const tw_format_t *fmt = tw_formats_find(c->formats, format);
        if (!fmt) {
            char names[512];
            format_names(c->formats, names, sizeof names);
            return tw_jv_fail(jv, tw_jv_join(q, p, "format"),
                              "expected one of the formats in %s (%s), got \"%s\"",
                              c->formats_dir, names, format);
        }
        char *resolved = tw_path_join(dir, path);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->inputs[j].name, name) == 0) {
                free(resolved);
                return tw_jv_fail(jv, tw_jv_join(q, p, "name"),
                                  "expected a unique name, \"%s\" is also inputs[%zu].name",
                                  name, j);
            }
            if (strcmp(c->inputs[j].path, resolved) == 0) {
                free(resolved);
                return tw_jv_fail(jv, tw_jv_join(q, p, "path"),
                                  "expected a path no other input follows, \"%s\" is also "
                                  "inputs[%zu].path",
                                  path, j);
            }
        }
        c->inputs[i].name = tw_xstrdup(name);
        c->inputs[i].path = resolved;
        c->inputs[i].format = fmt;
        c->inputs[i].from_start = from_start;
        c->ninputs = i + 1;
    }
    return 0;
}

/* A database path must name a readable file now: a typo is a start-up
 * error naming the path, not a silent loss of every geo rule. */
static int check_readable(const tw_jv_t *jv, const char *path, const char *resolved)
{
    struct stat st;
    if (stat(resolved, &st) != 0)
        return tw_jv_fail(jv, path, "expected a MaxMind DB file, \"%s\": %s", resolved,
                          strerror(errno));
    if (!S_ISREG(st.st_mode) || access(resolved, R_OK) != 0)
        return tw_jv_fail(jv, path, "expected a readable MaxMind DB file, \"%s\" is not one",
                          resolved);
    return 0;
}

static int load_syslog(const tw_jv_t *jv, const cJSON *root, const char *dir, tw_config_t *c)
{
    const cJSON *s;
    if (tw_jv_get_object(jv, root, "", "syslog", syslog_keys, &s) != 0)
        return -1;
    if (!s)
        return 0;
    bool enabled;
    const char *ident, *facility, *sev, *sock;
    long long per_round;
    if (tw_jv_bool(jv, s, "syslog", "enabled", true, &enabled) ||
        tw_jv_string(jv, s, "syslog", "ident", false, "tokenwatch", &ident) ||
        tw_jv_string(jv, s, "syslog", "facility", false, "authpriv", &facility) ||
        tw_jv_string(jv, s, "syslog", "severity_min", false, "low", &sev) ||
        tw_jv_string(jv, s, "syslog", "socket", false, TW_SYSLOG_DEFAULT_SOCKET, &sock) ||
        tw_jv_int(jv, s, "syslog", "max_per_round", 1, 1000000, TW_SYSLOG_PER_ROUND_DEFAULT,
                  &per_round))
        return -1;
    if (!valid_name(ident, 32))
        return tw_jv_fail(jv, "syslog.ident",
                          "expected 1 to 32 characters from [A-Za-z0-9_.-], got \"%s\"", ident);
    c->syslog.facility = tw_syslog_facility_parse(facility);
    if (c->syslog.facility < 0)
        return tw_jv_fail(jv, "syslog.facility",
                          "expected \"auth\", \"authpriv\", \"daemon\", \"user\" or "
                          "\"local0\" to \"local7\", got \"%s\"",
                          facility);
    c->syslog.severity_min = tw_syslog_severity_parse(sev);
    if (c->syslog.severity_min < 0)
        return tw_jv_fail(jv, "syslog.severity_min",
                          "expected \"low\", \"medium\", \"high\" or \"critical\", got \"%s\"",
                          sev);
    char *resolved = tw_path_join(dir, sock);
    if (strlen(resolved) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        tw_jv_fail(jv, "syslog.socket", "expected a socket path of at most %zu bytes, \"%s\" "
                   "is longer", sizeof(((struct sockaddr_un *)0)->sun_path) - 1, resolved);
        free(resolved);
        return -1;
    }
    c->syslog.enabled = enabled;
    c->syslog.ident = tw_xstrdup(ident);
    c->syslog.socket = resolved;
    c->syslog.max_per_round = (unsigned)per_round;
    return 0;
}

/* argv[0] of a hook must be an absolute path (no PATH search: what runs
 * is exactly what the config names). */
static int check_command(const tw_jv_t *jv, const char *path, char **argv)
{
    if (argv && argv[0][0] != '/')
        return tw_jv_fail(jv, path, "expected an absolute path as the first element, got \"%s\"",
                          argv[0]);
    return 0;
}

static int load_respond(const tw_jv_t *jv, const cJSON *root, tw_config_t *c)
{
    tw_respond_conf_t *r = &c->respond;
    const cJSON *f, *u;
    if (tw_jv_get_object(jv, root, "", "freeze", freeze_keys, &f) != 0 ||
        tw_jv_get_object(jv, root, "", "unfreeze", unfreeze_keys, &u) != 0)
        return -1;
    long long tmo, conc, queue, attempts, backoff, backoff_max, per_min, window, ttl, ttl_max;
    double incr;
    const cJSON *none = cJSON_CreateObject();   /* defaults when the section is absent */
    const cJSON *fs = f ? f : none;
    int rc = tw_jv_strv(jv, fs, "freeze", "command", 64, &r->freeze_argv) ||
             tw_jv_bool(jv, fs, "freeze", "pass_token", false, &r->pass_token) ||
             tw_jv_bool(jv, fs, "freeze", "dry_run", false, &r->dry_run) ||
             tw_jv_int(jv, fs, "freeze", "timeout_s", 1, 3600, 10, &tmo) ||
             tw_jv_int(jv, fs, "freeze", "concurrency", 1, 64, 4, &conc) ||
             tw_jv_int(jv, fs, "freeze", "queue_size", 1, 100000, 256, &queue) ||
             tw_jv_int(jv, fs, "freeze", "max_attempts", 1, 100, 5, &attempts) ||
             tw_jv_int(jv, fs, "freeze", "backoff_ms", 1, 3600000, 1000, &backoff) ||
             tw_jv_int(jv, fs, "freeze", "backoff_max_ms", 1, 86400000, 60000, &backoff_max) ||
             tw_jv_int(jv, fs, "freeze", "max_per_minute", 1, 100000, 10, &per_min) ||
             tw_jv_int(jv, fs, "freeze", "circuit_window_s", 1, 3600, 60, &window) ||
             tw_jv_int(jv, fs, "freeze", "ttl_s", 0, 366LL * 86400, 0, &ttl) ||
             tw_jv_number(jv, fs, "freeze", "ttl_increment", 1.0, 100.0, 2.0, &incr) ||
             tw_jv_int(jv, fs, "freeze", "ttl_max_s", 1, 3660LL * 86400, 30LL * 86400,
                       &ttl_max) ||
             (u && tw_jv_strv(jv, u, "unfreeze", "command", 64, &r->unfreeze_argv));
    cJSON_Delete((cJSON *)none);
    if (rc)
        return -1;
    if (f && !r->freeze_argv && !r->dry_run)
        return tw_jv_fail(jv, "freeze.command",
                          "expected the hook's argv array (or \"dry_run\": true)");
    if (u && !r->unfreeze_argv)
        return tw_jv_fail(jv, "unfreeze.command", "expected the hook's argv array");
    if (check_command(jv, "freeze.command", r->freeze_argv) ||
        check_command(jv, "unfreeze.command", r->unfreeze_argv))
        return -1;
    if (backoff_max < backoff)
        return tw_jv_fail(jv, "freeze.backoff_max_ms", "expected at least backoff_ms (%lld)",
                          backoff);
    if (ttl && !r->unfreeze_argv && !r->dry_run)
        return tw_jv_fail(jv, "freeze.ttl_s",
                          "expected 0 without an \"unfreeze\" command (a freeze that expires "
                          "needs a hook to undo it)");
    if (ttl && ttl_max < ttl)
        return tw_jv_fail(jv, "freeze.ttl_max_s", "expected at least ttl_s (%lld)", ttl);
    r->enabled = f != NULL;
    r->timeout_ms = (unsigned)tmo * 1000u;
    r->concurrency = (unsigned)conc;
    r->queue_size = (unsigned)queue;
    r->max_attempts = (unsigned)attempts;
    r->backoff_ms = (unsigned)backoff;
    r->backoff_max_ms = (unsigned)backoff_max;
    r->max_per_minute = (unsigned)per_min;
    r->circuit_window_s = (unsigned)window;
    r->ttl_s = (uint64_t)ttl;
    r->ttl_max_s = (uint64_t)ttl_max;
    r->ttl_increment = incr;
    return 0;
}

static int load_detection(const tw_jv_t *jv, const cJSON *root, const char *dir,
                          tw_config_t *c)
{
    const cJSON *geo;
    if (tw_jv_get_object(jv, root, "", "geoip", geoip_keys, &geo) != 0)
        return -1;
    if (geo) {
        const char *city, *asn;
        long long cache;
        if (tw_jv_string(jv, geo, "geoip", "city_db", true, NULL, &city) ||
            tw_jv_string(jv, geo, "geoip", "asn_db", false, NULL, &asn) ||
            tw_jv_int(jv, geo, "geoip", "cache_entries", 0, TW_GEO_CACHE_MAX,
                      TW_GEO_CACHE_DEFAULT, &cache))
            return -1;
        c->has_geoip = true;
        c->geo_city_db = tw_path_join(dir, city);
        if (check_readable(jv, "geoip.city_db", c->geo_city_db) != 0)
            return -1;
        if (asn) {
            c->geo_asn_db = tw_path_join(dir, asn);
            if (check_readable(jv, "geoip.asn_db", c->geo_asn_db) != 0)
                return -1;
        }
        c->geo_cache_entries = (size_t)cache;
    }
    const char *rules, *events;
    long long max_tokens;
    if (tw_jv_string(jv, root, "", "rules_file", false, NULL, &rules) ||
        tw_jv_string(jv, root, "", "events_file", false, NULL, &events) ||
        tw_jv_int(jv, root, "", "max_tokens", 1000, TW_TOKENS_MAX, 1000000, &max_tokens))
        return -1;
    c->max_tokens = (size_t)max_tokens;
    long long max_cases, bl_interval;
    if (tw_jv_int(jv, root, "", "max_cases", 10, 10000000, 100000, &max_cases) ||
        tw_jv_int(jv, root, "", "baselines_interval_s", 1, 86400, 300, &bl_interval))
        return -1;
    c->max_cases = (size_t)max_cases;
    c->baselines_interval_s = (unsigned)bl_interval;
    if (load_syslog(jv, root, dir, c) != 0 || load_respond(jv, root, c) != 0)
        return -1;
    c->events_file = events ? tw_path_join(dir, events)
                            : tw_path_join(c->state_dir, "events.jsonl");
    if (rules) {
        c->rules_file = tw_path_join(dir, rules);
    } else {
        c->rules_file = tw_xstrdup(TW_DEFAULT_RULES_FILE);
        if (access(c->rules_file, F_OK) != 0) {
            /* Not installed (a build tree): run without detection and say so
             * (replay and run warn), rather than refuse every config. */
            c->rules_missing = true;
            return 0;
        }
    }
    /* The rules file reports errors with its own name and JSON paths. */
    return tw_rules_load(&c->rules, c->rules_file, jv->err);
}

static int load_tree(const tw_jv_t *jv, const cJSON *root, const char *dir, tw_config_t *c)
{
    if (tw_jv_object(jv, root, "", top_keys) != 0)
        return -1;
    const char *state_dir, *formats_dir, *level;
    long long interval, threads;
    if (tw_jv_string(jv, root, "", "state_dir", true, NULL, &state_dir) ||
        tw_jv_string(jv, root, "", "formats_dir", false, TW_DEFAULT_FORMATS_DIR,
                     &formats_dir) ||
        tw_jv_string(jv, root, "", "log_level", false, "info", &level) ||
        tw_jv_int(jv, root, "", "state_interval_ms", 50, 3600000, 5000, &interval) ||
        tw_jv_int(jv, root, "", "threads", 1, 2, TW_THREADS_DEFAULT, &threads))
        return -1;
    c->log_level = tw_log_level_parse(level);
    if (c->log_level < 0)
        return tw_jv_fail(jv, "log_level",
                          "expected \"debug\", \"info\", \"warn\" or \"error\", got \"%s\"",
                          level);
    c->state_dir = tw_path_join(dir, state_dir);
    c->formats_dir = tw_path_join(dir, formats_dir);
    c->state_interval_ms = (int)interval;
    c->threads = (int)threads;
    if (load_http(jv, root, dir, c) != 0 || load_follow(jv, root, c) != 0)
        return -1;
    struct stat st;
    errno = 0;
    if (stat(c->formats_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return tw_jv_fail(jv, "formats_dir", "expected a directory of format files, \"%s\" %s",
                          c->formats_dir,
                          errno == ENOENT ? "does not exist" : "is not a readable directory");
    /* Formats are validated with their own file names in the messages. */
    if (tw_formats_load_dir(&c->formats, c->formats_dir, jv->err) != 0)
        return -1;
    if (load_inputs(jv, root, dir, c) != 0)
        return -1;
    return load_detection(jv, root, dir, c);
}

int tw_config_load(tw_config_t **out, const char *path, tw_err_t *err)
{
    char *text;
    size_t len;
    if (tw_read_file(path, &text, &len, err) != 0)
        return -1;
    tw_jv_t jv = {.file = path, .err = err};
    cJSON *root;
    if (tw_jv_parse(&jv, text, len, &root) != 0) {
        free(text);
        return -1;
    }
    free(text);
    tw_config_t *c = tw_xcalloc(1, sizeof *c);
    c->file = tw_xstrdup(path);
    char *dir = tw_dirname(path);
    int rc = load_tree(&jv, root, dir, c);
    free(dir);
    cJSON_Delete(root);
    if (rc != 0) {
        tw_config_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void tw_config_free(tw_config_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->ninputs; i++) {
        free(c->inputs[i].name);
        free(c->inputs[i].path);
    }
    free(c->inputs);
    tw_formats_free(c->formats);
    tw_rules_free(c->rules);
    free(c->geo_city_db);
    free(c->geo_asn_db);
    free(c->rules_file);
    free(c->events_file);
    tw_syslog_conf_free(&c->syslog);
    tw_strv_free(c->respond.freeze_argv);
    tw_strv_free(c->respond.unfreeze_argv);
    free(c->file);
    free(c->state_dir);
    free(c->formats_dir);
    free(c->http_address);
    free(c->http_bearer_token_file);
    free(c->http_basic_auth_file);
    free(c->http_tls_cert_file);
    free(c->http_tls_key_file);
    free(c);
}

const tw_input_conf_t *tw_config_input(const tw_config_t *c, const char *name)
{
    for (size_t i = 0; i < c->ninputs; i++)
        if (strcmp(c->inputs[i].name, name) == 0)
            return &c->inputs[i];
    return NULL;
}
