/*
 * config.c — see config.h. Validation is strict and messages name the file
 * and JSON path; defaults are the ones documented in docs/configuration.md.
 */
#include "config.h"
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
                                       "syslog", NULL};
static const char *const geoip_keys[] = {"city_db", "asn_db", "cache_entries", NULL};
static const char *const http_keys[] = {"listen", "max_connections", "timeout_s", NULL};
static const char *const follow_keys[] = {"max_line_bytes", "read_block_bytes",
                                          "rotate_wait_ms", "poll_interval_ms", "inotify",
                                          NULL};
static const char *const syslog_keys[] = {"enabled", "ident", "facility", "severity_min",
                                          "socket", "max_per_round", NULL};
static const char *const input_keys[] = {"name", "path", "format", "start", NULL};

static int load_http(const tw_jv_t *jv, const cJSON *root, tw_config_t *c)
{
    const cJSON *http;
    if (tw_jv_get_object(jv, root, "", "http", http_keys, &http) != 0)
        return -1;
    const char *listen = TW_DEFAULT_LISTEN;
    long long maxc = 64, tmo = 10;
    if (http && (tw_jv_string(jv, http, "http", "listen", false, TW_DEFAULT_LISTEN, &listen) ||
                 tw_jv_int(jv, http, "http", "max_connections", 1, 100000, 64, &maxc) ||
                 tw_jv_int(jv, http, "http", "timeout_s", 1, 3600, 10, &tmo)))
        return -1;
    tw_err_t perr;
    if (tw_parse_listen(listen, &c->http_address, &c->http_port, &perr) != 0)
        return tw_jv_fail(jv, "http.listen", "%s", perr.msg);
    c->http_max_connections = (unsigned)maxc;
    c->http_timeout_s = (unsigned)tmo;
    return 0;
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
    if (load_syslog(jv, root, dir, c) != 0)
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
    long long interval;
    if (tw_jv_string(jv, root, "", "state_dir", true, NULL, &state_dir) ||
        tw_jv_string(jv, root, "", "formats_dir", false, TW_DEFAULT_FORMATS_DIR,
                     &formats_dir) ||
        tw_jv_string(jv, root, "", "log_level", false, "info", &level) ||
        tw_jv_int(jv, root, "", "state_interval_ms", 50, 3600000, 5000, &interval))
        return -1;
    c->log_level = tw_log_level_parse(level);
    if (c->log_level < 0)
        return tw_jv_fail(jv, "log_level",
                          "expected \"debug\", \"info\", \"warn\" or \"error\", got \"%s\"",
                          level);
    c->state_dir = tw_path_join(dir, state_dir);
    c->formats_dir = tw_path_join(dir, formats_dir);
    c->state_interval_ms = (int)interval;
    if (load_http(jv, root, c) != 0 || load_follow(jv, root, c) != 0)
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
    free(c->file);
    free(c->state_dir);
    free(c->formats_dir);
    free(c->http_address);
    free(c);
}

const tw_input_conf_t *tw_config_input(const tw_config_t *c, const char *name)
{
    for (size_t i = 0; i < c->ninputs; i++)
        if (strcmp(c->inputs[i].name, name) == 0)
            return &c->inputs[i];
    return NULL;
}
