/*
 * daemon.c — `tokenwatch run`: owns every module and runs the analysis loop.
 *
 * One thread (this one) follows the inputs, parses, counts and snapshots;
 * libmicrohttpd's thread serves /metrics from the registry's atomic cells.
 * Signal handlers only set flags (STYLE.md §3); the loop acts on them:
 * SIGTERM/SIGINT save a final snapshot and exit 0, SIGHUP reloads the config
 * and formats (an invalid new config is refused and the old one kept).
 *
 * Snapshots are taken between read rounds, when every input's counters
 * correspond exactly to the committed file offsets.
 *
 * Two threads ("threads": 2, the default, with detection on): this thread
 * becomes the reader R — it follows the inputs, reads, splits, parses and
 * counts, hands every parsed check to the analysis thread A in batches
 * (handoff.h), publishes the input counters, takes the state snapshots and
 * handles SIGHUP and SIGTERM. A owns everything that hangs off detection:
 * the detector, the events file, syslog, the respond module (hook reports,
 * freeze TTLs, the flagged store), the detection metrics and the baselines
 * timer; it holds the analysis lock per batch (never per event) and while
 * it does that housekeeping, and yields it to a waiting API call between
 * batches. R never touches A's structures without first draining the queue
 * and then taking the lock ("quiesce"): so it does a reload (rules, GeoIP,
 * syslog, events file reopen, inputs whose names the queued events carry).
 * The inputs and the tail follower are R's alone; the API reads the input
 * counters from a copy R refreshes after each round (snap_lock).
 *
 * Snapshot vs. detection: R drains the queue before each state snapshot, so
 * a saved offset never covers a line whose check A has not judged (and
 * whose anomaly events A has not flushed to the events file). A kill -9
 * therefore loses no detection of lines before the saved offsets; lines
 * after them are read again. The wait costs at most the few queued batches
 * once per state_interval_ms. SIGTERM closes the queue, joins A (which
 * judges what is queued and flushes), then saves the offsets and baselines.
 * With one thread ("threads": 1, or detection off) none of this exists: the
 * loop below does everything as before.
 *
 * Detection: one detector (detect.h) judges every input's checks; its
 * anomaly events are appended to events_file and flushed once per read
 * round. Baselines are saved to state_dir/baselines.bin (persist.h) every
 * baselines_interval_s and at shutdown, and loaded at start; a reload
 * switches rules and keeps every baseline. With a "syslog" section
 * the same lines also go to syslog (syslogsink.h), queued by the same sink
 * callback and sent at the same flush; a reload that changes the section
 * replaces the syslog sink, and never touches the events file's behaviour.
 */
#include "api.h"
#include "assets.h"
#include "cli.h"
#include "config.h"
#include "detect.h"
#include "events.h"
#include "geo.h"
#include "handoff.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "persist.h"
#include "pipeline.h"
#include "respond.h"
#include "timeparse.h"
#include "state.h"
#include "syslogsink.h"
#include "tail.h"
#include "tokenid.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t g_stop;
static volatile sig_atomic_t g_reload;

static void on_stop_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void on_hup_signal(int sig)
{
    (void)sig;
    g_reload = 1;
}

/* Blocks the signals the loop acts on in this thread (the old mask in *old):
 * threads created meanwhile inherit the mask, so SIGTERM, SIGINT and SIGHUP
 * are delivered to the main thread and interrupt its wait. */
static void block_signals(sigset_t *old)
{
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, old);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a signal must interrupt the wait so the loop sees it. */
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup_signal;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

typedef struct daemon_input {
    tw_input_t *input;
    char *path;
} daemon_input_t;

/* An input's counters as the API's stats call shows them. */
typedef struct input_snap {
    char *name;
    uint64_t checks, rejected, lines, parse_errors;
} input_snap_t;

typedef struct tw_daemon {
    tw_config_t *cfg;
    char *state_dir;            /* fixed at start: moving state needs a restart */
    tw_metrics_t *metrics;
    tw_tail_t *tail;
    tw_http_t *http;
    /* pace_http: when a poll round last came back empty, and whether the
     * HTTP threads are told to yield (they start so). */
    int64_t idle_at;
    bool http_yield;
    daemon_input_t *inputs;
    size_t ninputs;
    tw_cell_t *c_saves, *c_save_failures;
    tw_log_limit_t save_limit;
    tw_state_input_t *retired;  /* counters of inputs dropped by a reload */
    size_t nretired;
    tw_tokenid_t *key;          /* detection: NULL when the config has no rules */
    tw_geo_t *geo;
    char geo_id[2 * 4096 + 256];   /* identity of the open GeoIP files (reload_geo) */
    tw_detect_t *det;
    tw_events_file_t *events;
    tw_log_limit_t events_limit;
    tw_syslog_t *syslog;        /* NULL unless detection is on and syslog enabled */
    tw_syslog_cells_t syslog_cells;
    tw_log_limit_t syslog_limit;
    int cli_log_level;          /* -1: the config's */
    int log_format;
    bool discard_state;         /* --discard-state */
    tw_respond_t *resp;         /* NULL when detection is off */
    char *baselines_path;
    tw_cell_t *c_bl_seconds, *c_bl_bytes, *c_bl_tokens;
    int64_t started_ns;
    /* The analysis lock: held by the loop while it reads, detects and
     * responds; taken by the HTTP API for each call. api_waiting makes the
     * loop yield between rounds when an API call waits, so a busy loop
     * cannot starve the API. */
    pthread_mutex_t lock;
    atomic_int api_waiting;
    tw_api_backend_t api;
    /* "threads": 2 — the queue to the analysis thread; NULL with one thread. */
    tw_handoff_t *ho;
    pthread_t analysis;
    /* Input counters for api_stats, refreshed by the loop after each round
     * (with two threads the reader does not hold the analysis lock). */
    pthread_mutex_t snap_lock;
    input_snap_t *snap;
    size_t nsnap;
} tw_daemon_t;

static int add_input(tw_daemon_t *d, const tw_input_conf_t *ic, const tw_state_input_t *saved)
{
    tw_input_t *in = tw_input_new(ic->name, ic->format, d->metrics);
    if (d->ho)
        tw_input_set_handoff(in, d->ho, d->det);
    else
        tw_input_set_detector(in, d->det);
    tw_input_set_future_limit(in, TW_FUTURE_LIMIT_NS);
    const tw_tail_pos_t *pos = NULL;
    size_t npos = 0;
    if (saved && strcmp(saved->path, ic->path) == 0) {
        *tw_input_stats(in) = saved->stats;
        pos = saved->pos;
        npos = saved->npos;
    } else if (saved) {
        /* Another file now: its counters continue, its offsets do not apply. */
        *tw_input_stats(in) = saved->stats;
        tw_warn("input %s: path changed from %s to %s; its counters continue and the new "
                "path is read per its \"start\" setting",
                ic->name, saved->path, ic->path);
    }
    tw_err_t err;
    if (tw_tail_add(d->tail, ic->name, ic->path, ic->from_start, pos, npos,
                    &tw_input_tail_handler, in, &err) != 0) {
        tw_error("input %s: %s", ic->name, err.msg);
        tw_input_free(in);
        return -1;
    }
    d->inputs = tw_xrealloc(d->inputs, (d->ninputs + 1) * sizeof *d->inputs);
    d->inputs[d->ninputs].input = in;
    d->inputs[d->ninputs].path = tw_xstrdup(ic->path);
    d->ninputs++;
    tw_input_publish(in, tw_tail_lag_bytes(d->tail, ic->name));
    return 0;
}

/* Stops input i, keeping its counters in d->retired. */
static void retire_input(tw_daemon_t *d, size_t i)
{
    tw_input_t *in = d->inputs[i].input;
    tw_state_input_t *r = NULL;
    for (size_t k = 0; k < d->nretired && !r; k++)
        if (strcmp(d->retired[k].name, tw_input_name(in)) == 0)
            r = &d->retired[k];
    if (!r) {
        d->retired = tw_xrealloc(d->retired, (d->nretired + 1) * sizeof *d->retired);
        r = &d->retired[d->nretired++];
        memset(r, 0, sizeof *r);
        r->name = tw_xstrdup(tw_input_name(in));
    }
    free(r->path);
    r->path = d->inputs[i].path;   /* ownership moves */
    r->stats = *tw_input_stats(in);
    r->npos = 0;                   /* its files are closed: no offsets to resume */
    tw_tail_remove(d->tail, tw_input_name(in));
    tw_input_free(in);
    d->inputs[i] = d->inputs[--d->ninputs];
}

static const tw_state_input_t *find_retired(const tw_daemon_t *d, const char *name)
{
    for (size_t k = 0; k < d->nretired; k++)
        if (strcmp(d->retired[k].name, name) == 0)
            return &d->retired[k];
    return NULL;
}

static int save_state(tw_daemon_t *d)
{
    tw_state_input_t *snap = tw_xcalloc(d->ninputs, sizeof *snap);
    for (size_t i = 0; i < d->ninputs; i++) {
        tw_input_t *in = d->inputs[i].input;
        snap[i].name = (char *)tw_input_name(in);
        snap[i].path = d->inputs[i].path;
        snap[i].stats = *tw_input_stats(in);
        snap[i].npos = tw_tail_positions(d->tail, snap[i].name, snap[i].pos,
                                         TW_TAIL_MAX_FILES);
    }
    tw_err_t err;
    int rc = tw_state_save(d->state_dir, snap, d->ninputs, &err);
    free(snap);
    if (rc != 0) {
        tw_cell_add(d->c_save_failures, 1);
        tw_log_limited(&d->save_limit, TW_LOG_ERROR, "saving state failed: %s", err.msg);
        return -1;
    }
    tw_cell_add(d->c_saves, 1);
    return 0;
}

static void on_anomaly(void *ctx, const tw_anomaly_t *a)
{
    tw_daemon_t *d = ctx;
    tw_events_file_append(d->events, a->line, a->len);
    if (d->syslog)
        tw_syslog_append(d->syslog, a->line, a->len);
    if (d->resp)
        tw_respond_anomaly(d->resp, a);
}

static void on_want(void *ctx, uint64_t token_id, tw_slice_t token)
{
    tw_daemon_t *d = ctx;
    if (d->resp)
        tw_respond_want(d->resp, token_id, token);
}

/* --discard-state: moves a state file aside (never deletes it: an operator
 * may want to look at it) so the start can go on afresh. */
static int discard_aside(const char *path, tw_err_t *err)
{
    char aside[4096];
    snprintf(aside, sizeof aside, "%s.discarded-%lld", path, (long long)(tw_now_ns() / 1000000000));
    if (rename(path, aside) != 0)
        return tw_err_set(err, "%s: cannot move it aside to %s: %s", path, aside,
                          strerror(errno));
    tw_warn("--discard-state: %s moved aside to %s; starting afresh", path, aside);
    return 0;
}

/* Appends the way out to a state file error. Returns -1. */
static int discard_hint(tw_err_t *err)
{
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return tw_err_set(err, "%s (start with --discard-state to move it aside and start afresh)",
                      msg);
}

static int save_baselines(tw_daemon_t *d)
{
    if (!d->det)
        return 0;
    tw_persist_stats_t st;
    tw_err_t err;
    if (tw_persist_save(d->det, d->baselines_path, &st, &err) != 0) {
        tw_cell_add(d->c_save_failures, 1);
        tw_log_limited(&d->save_limit, TW_LOG_ERROR, "saving baselines failed: %s", err.msg);
        return -1;
    }
    tw_cell_set(d->c_bl_seconds, (uint64_t)(st.seconds * 1e6));
    tw_cell_set_gauge(d->c_bl_bytes, (int64_t)st.bytes);
    tw_cell_set_gauge(d->c_bl_tokens, (int64_t)(st.tokens + st.principals));
    tw_debug("baselines saved: %llu tokens, %llu principals, %llu bytes in %.3f s",
             (unsigned long long)st.tokens, (unsigned long long)st.principals,
             (unsigned long long)st.bytes, st.seconds);
    return 0;
}

static int load_baselines(tw_daemon_t *d, tw_err_t *err)
{
    tw_persist_stats_t st;
    int rc = tw_persist_load(d->det, d->baselines_path, &st, err);
    if (rc < 0 && d->discard_state) {
        tw_warn("%s", err->msg);
        if (discard_aside(d->baselines_path, err) != 0)
            return -1;
        return 0;
    }
    if (rc < 0)
        return discard_hint(err);
    if (rc == 0)
        tw_info("baselines loaded from %s: %llu tokens, %llu principals (%.2f s)",
                d->baselines_path, (unsigned long long)st.tokens,
                (unsigned long long)st.principals, st.seconds);
    return 0;
}

static int start_respond(tw_daemon_t *d, tw_err_t *err)
{
    const tw_config_t *c = d->cfg;
    char *cases = tw_path_join(d->state_dir, TW_CASES_FILE);
    tw_respond_opts_t ro = {
        .conf = &c->respond,
        .max_cases = c->max_cases,
        .cases_path = cases,
        .det = d->det,
        .events = d->events,
        .metrics = d->metrics,
    };
    d->resp = tw_respond_new(&ro, err);
    if (!d->resp && d->discard_state) {
        tw_warn("%s", err->msg);
        if (discard_aside(cases, err) == 0)
            d->resp = tw_respond_new(&ro, err);
    } else if (!d->resp) {
        discard_hint(err);
    }
    free(cases);
    if (!d->resp)
        return -1;
    if (c->respond.enabled)
        tw_info("freeze hook %s: at most %u per minute, %u at once, queue %u%s",
                c->respond.dry_run ? "in dry run" : "on", c->respond.max_per_minute,
                c->respond.concurrency, c->respond.queue_size,
                c->respond.pass_token ? ", raw token on its stdin (pass_token)" : "");
    tw_respond_resume(d->resp);
    return 0;
}

static void flush_events(tw_daemon_t *d)
{
    if (!d->events)
        return;
    tw_err_t err;
    if (tw_events_file_flush(d->events, &err) != 0)
        tw_log_limited(&d->events_limit, TW_LOG_ERROR, "events file: %s", err.msg);
    if (d->syslog && tw_syslog_flush(d->syslog, &err) != 0)
        tw_log_limited(&d->syslog_limit, TW_LOG_WARN, "syslog: %s", err.msg);
}

/* Makes the syslog sink match conf: started, replaced or stopped. Called at
 * start and on each reload (detection on only: without it there are no
 * events). Whatever is queued goes out through the old sink first. */
static void apply_syslog(tw_daemon_t *d, const tw_syslog_conf_t *old,
                         const tw_syslog_conf_t *conf)
{
    if (d->syslog && old && tw_syslog_conf_equal(old, conf))
        return;
    if (d->syslog) {
        tw_syslog_free(d->syslog);   /* flushes */
        d->syslog = NULL;
        if (!conf->enabled)
            tw_info("syslog output off");
    }
    if (!conf->enabled)
        return;
    d->syslog = tw_syslog_new(conf, &d->syslog_cells);
    tw_info("syslog output on: %s, ident %s, facility %s, severity %s and above",
            conf->socket, conf->ident, tw_syslog_facility_name(conf->facility),
            tw_severity_name((tw_severity_t)conf->severity_min));
}

/* Paths, devices, inodes, sizes and mtimes of the configured GeoIP files:
 * a reload reopens the databases when this changes (a new GeoLite2 release
 * written over the old file, or moved into place, or another path). */
static void geo_identity(const tw_config_t *c, char *out, size_t cap)
{
    out[0] = '\0';
    if (!c->has_geoip)
        return;
    const char *paths[2] = {c->geo_city_db, c->geo_asn_db};
    size_t n = 0;
    for (int i = 0; i < 2 && paths[i] && n < cap; i++) {
        struct stat st;
        memset(&st, 0, sizeof st);
        stat(paths[i], &st);
        n += (size_t)snprintf(out + n, cap - n, "%s:%llx:%llx:%llx:%lld.%09ld;", paths[i],
                              (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
                              (unsigned long long)st.st_size, (long long)st.st_mtim.tv_sec,
                              st.st_mtim.tv_nsec);
    }
}

static bool rules_use_geo(const tw_rules_t *r)
{
    for (size_t i = 0; r && i < r->nrules; i++)
        if (r->rules[i].kind == TW_KIND_GEO_VELOCITY || r->rules[i].kind == TW_KIND_GEO_NEW)
            return true;
    return false;
}

/* Builds the detector when the config has rules. */
static int start_detection(tw_daemon_t *d, tw_err_t *err)
{
    const tw_config_t *c = d->cfg;
    if (!c->rules) {
        if (c->rules_missing)
            tw_warn("rules file %s not found: detection is off (set \"rules_file\")",
                    c->rules_file);
        return 0;
    }
    if (tw_tokenid_open(&d->key, d->state_dir, err) != 0)
        return -1;
    if (c->has_geoip) {
        if (tw_geo_open(&d->geo, c->geo_city_db, c->geo_asn_db, c->geo_cache_entries, err) != 0)
            return -1;
        geo_identity(c, d->geo_id, sizeof d->geo_id);
    } else if (rules_use_geo(c->rules)) {
        tw_warn("%s has no \"geoip\" section: the geo rules are disabled", c->file);
    }
    if (tw_events_file_open(&d->events, c->events_file, err) != 0)
        return -1;
    tw_detect_opts_t o = {
        .rules = c->rules,
        .geo = d->geo,
        .key = d->key,
        .max_tokens = c->max_tokens,
        .metrics = d->metrics,
        .sink = on_anomaly,
        .sink_ctx = d,
        .want = on_want,
    };
    d->det = tw_detect_new(&o);
    d->baselines_path = tw_path_join(d->state_dir, TW_PERSIST_FILE);
    if (load_baselines(d, err) != 0 || start_respond(d, err) != 0)
        return -1;
    apply_syslog(d, NULL, &c->syslog);
    tw_info("detection on: %zu rules from %s, events to %s%s", c->rules->nrules,
            c->rules_file, c->events_file, d->geo ? "" : ", no GeoIP");
    return 0;
}

/* The input counters into their metric cells and the API's copy (the
 * thread that reads the inputs, after each round). */
static void publish_inputs(tw_daemon_t *d)
{
    for (size_t i = 0; i < d->ninputs; i++) {
        tw_input_t *in = d->inputs[i].input;
        tw_input_publish(in, tw_tail_lag_bytes(d->tail, tw_input_name(in)));
    }
    pthread_mutex_lock(&d->snap_lock);
    if (d->nsnap != d->ninputs) {
        for (size_t i = d->ninputs; i < d->nsnap; i++)
            free(d->snap[i].name);
        d->snap = tw_xrealloc(d->snap, (d->ninputs ? d->ninputs : 1) * sizeof *d->snap);
        for (size_t i = d->nsnap; i < d->ninputs; i++)
            d->snap[i].name = NULL;
        d->nsnap = d->ninputs;
    }
    for (size_t i = 0; i < d->ninputs; i++) {
        tw_input_t *in = d->inputs[i].input;
        input_snap_t *sn = &d->snap[i];
        if (!sn->name || strcmp(sn->name, tw_input_name(in)) != 0) {
            free(sn->name);
            sn->name = tw_xstrdup(tw_input_name(in));
        }
        const tw_input_stats_t *st = tw_input_stats(in);
        sn->checks = st->checks;
        sn->rejected = st->rejected;
        sn->lines = st->lines;
        sn->parse_errors = 0;
        for (int k = 0; k < TW_PERR__COUNT; k++)
            sn->parse_errors += st->parse_errors[k];
    }
    pthread_mutex_unlock(&d->snap_lock);
}

static void publish_all(tw_daemon_t *d)
{
    if (d->det)
        tw_detect_publish(d->det);
    publish_inputs(d);
}

static void set_ref_time(tw_daemon_t *d, int64_t now)
{
    for (size_t i = 0; i < d->ninputs; i++)
        tw_input_set_ref_time(d->inputs[i].input, now);
}

static bool strv_equal(char **a, char **b)
{
    for (; a && b && *a && *b; a++, b++)
        if (strcmp(*a, *b) != 0)
            return false;
    return (!a || !*a) && (!b || !*b);
}

static bool respond_conf_equal(const tw_respond_conf_t *a, const tw_respond_conf_t *b)
{
    return a->enabled == b->enabled && strv_equal(a->freeze_argv, b->freeze_argv) &&
           strv_equal(a->unfreeze_argv, b->unfreeze_argv) && a->pass_token == b->pass_token &&
           a->dry_run == b->dry_run && a->timeout_ms == b->timeout_ms &&
           a->concurrency == b->concurrency && a->queue_size == b->queue_size &&
           a->max_attempts == b->max_attempts && a->backoff_ms == b->backoff_ms &&
           a->backoff_max_ms == b->backoff_max_ms && a->max_per_minute == b->max_per_minute &&
           a->circuit_window_s == b->circuit_window_s && a->ttl_s == b->ttl_s &&
           a->ttl_max_s == b->ttl_max_s && a->ttl_increment == b->ttl_increment;
}

static void warn_restart_only(const tw_config_t *o, const tw_config_t *n)
{
    if (strcmp(o->http_address, n->http_address) != 0 || o->http_port != n->http_port ||
        o->http_max_connections != n->http_max_connections ||
        o->http_timeout_s != n->http_timeout_s)
        tw_warn("reload: http settings changed; they take effect after a restart");
    if (strcmp(o->state_dir, n->state_dir) != 0)
        tw_warn("reload: state_dir changed; it takes effect after a restart");
    if (strcmp(o->events_file, n->events_file) != 0 || o->max_tokens != n->max_tokens)
        tw_warn("reload: events_file or max_tokens changed; they take effect after a restart");
    if (!respond_conf_equal(&o->respond, &n->respond) || o->max_cases != n->max_cases)
        tw_warn("reload: freeze, unfreeze or max_cases changed; they take effect after a "
                "restart");
    if ((o->rules == NULL) != (n->rules == NULL))
        tw_warn("reload: detection %s; that takes effect after a restart",
                n->rules ? "enabled" : "disabled");
    if (o->threads != n->threads)
        tw_warn("reload: threads changed; it takes effect after a restart");
    if (o->follow.max_line != n->follow.max_line || o->follow.block != n->follow.block ||
        o->follow.rotate_wait_ms != n->follow.rotate_wait_ms ||
        o->follow.use_inotify != n->follow.use_inotify)
        tw_warn("reload: follow settings changed; they take effect after a restart");
}

/* SIGHUP: reopens the GeoIP databases when the files or the section
 * changed; a database that fails to open keeps the running one. */
static void reload_geo(tw_daemon_t *d, const tw_config_t *nc)
{
    if (!d->det)
        return;
    char id[sizeof d->geo_id];
    geo_identity(nc, id, sizeof id);
    if (strcmp(id, d->geo_id) == 0)
        return;
    tw_geo_t *g = NULL;
    tw_err_t err;
    if (nc->has_geoip &&
        tw_geo_open(&g, nc->geo_city_db, nc->geo_asn_db, nc->geo_cache_entries, &err) != 0) {
        tw_error("reload: keeping the running GeoIP databases: %s", err.msg);
        return;
    }
    tw_detect_set_geo(d->det, g);
    tw_geo_close(d->geo);
    d->geo = g;
    memcpy(d->geo_id, id, sizeof id);
    if (g) {
        tw_geo_info_t gi;
        tw_geo_info(g, &gi);
        tw_info("reload: GeoIP database %s (%s, built %llu) opened", nc->geo_city_db,
                gi.city_type, (unsigned long long)gi.city_build_epoch);
    } else {
        tw_warn("reload: no \"geoip\" section any more: the geo rules are disabled");
    }
}

static void reload(tw_daemon_t *d)
{
    tw_err_t err;
    tw_config_t *nc;
    /* SIGHUP is also logrotate's "reopen your output": do it first, so it
     * happens even when the new config is refused. */
    if (d->events) {
        flush_events(d);
        if (tw_events_file_reopen(d->events, &err) != 0)
            tw_error("%s", err.msg);
    }
    if (tw_config_load(&nc, d->cfg->file, &err) != 0) {
        tw_error("reload refused, keeping the running configuration: %s", err.msg);
        return;
    }
    warn_restart_only(d->cfg, nc);
    if (tw_http_reload_auth(d->http, nc->http_bearer_token_file, nc->http_basic_auth_file,
                            &err) != 0)
        tw_error("reload: keeping the previous HTTP credentials: %s", err.msg);
    /* Drop inputs that are gone or now follow another path. Their counters
     * are kept aside: an input that comes back under the same name (or
     * follows a new path) continues its totals, as it would after a restart,
     * so no counter ever goes down within one process. */
    for (size_t i = d->ninputs; i-- > 0;) {
        const tw_input_conf_t *ic = tw_config_input(nc, tw_input_name(d->inputs[i].input));
        if (!ic || strcmp(ic->path, d->inputs[i].path) != 0) {
            tw_info("reload: input %s %s", tw_input_name(d->inputs[i].input),
                    ic ? "changes path" : "removed");
            retire_input(d, i);
        }
    }
    /* Switch kept inputs to the new formats; start new inputs. */
    for (size_t j = 0; j < nc->ninputs; j++) {
        const tw_input_conf_t *ic = &nc->inputs[j];
        bool found = false;
        for (size_t i = 0; i < d->ninputs; i++)
            if (strcmp(tw_input_name(d->inputs[i].input), ic->name) == 0) {
                tw_input_set_format(d->inputs[i].input, ic->format);
                found = true;
            }
        if (!found && add_input(d, ic, find_retired(d, ic->name)) == 0)
            tw_info("reload: input %s added (%s)", ic->name, ic->path);
    }
    reload_geo(d, nc);
    /* New rules, same baselines. (Turning detection on or off needs a
     * restart: the detector and its key are built at start.) */
    if (d->det && nc->rules)
        tw_detect_set_rules(d->det, nc->rules);
    if (d->det)
        apply_syslog(d, &d->cfg->syslog, &nc->syslog);
    tw_config_free(d->cfg);   /* its formats and rules are no longer referenced */
    d->cfg = nc;
    tw_log_setup((tw_log_level_t)(d->cli_log_level >= 0 ? d->cli_log_level : nc->log_level),
                 (tw_log_format_t)d->log_format);
    tw_info("configuration reloaded: %zu inputs", d->ninputs);
    save_state(d);
}

static void register_daemon_metrics(tw_daemon_t *d)
{
    static const char *const version_label[] = {"version"};
    tw_family_t *bi = tw_metrics_family(d->metrics, "tokenwatch_build_info",
                                        "A constant 1, labelled with the build's version.",
                                        TW_METRIC_GAUGE, 1, version_label);
    const char *version[] = {TW_VERSION};
    tw_cell_set_gauge(tw_family_cell(bi, version), 1);
    tw_family_t *f = tw_metrics_family(d->metrics, "tokenwatch_state_saves_total",
                                       "State snapshots written.", TW_METRIC_COUNTER, 0,
                                       NULL);
    d->c_saves = tw_family_cell(f, NULL);
    f = tw_metrics_family(d->metrics, "tokenwatch_state_save_failures_total",
                          "State snapshots that could not be written.", TW_METRIC_COUNTER,
                          0, NULL);
    d->c_save_failures = tw_family_cell(f, NULL);
    f = tw_metrics_family_fixed(d->metrics, "tokenwatch_state_save_seconds",
                                "Duration of the last baselines save (state_dir/baselines.bin).",
                                TW_METRIC_GAUGE, 6, 0, NULL);
    d->c_bl_seconds = tw_family_cell(f, NULL);
    f = tw_metrics_family(d->metrics, "tokenwatch_state_baselines_bytes",
                          "Size of the last baselines file written.", TW_METRIC_GAUGE, 0, NULL);
    d->c_bl_bytes = tw_family_cell(f, NULL);
    f = tw_metrics_family(d->metrics, "tokenwatch_state_baselines_saved",
                          "Token and principal baselines in the last baselines file written.",
                          TW_METRIC_GAUGE, 0, NULL);
    d->c_bl_tokens = tw_family_cell(f, NULL);
    f = tw_metrics_family(d->metrics, "tokenwatch_syslog_sent_total",
                          "Anomaly events sent to syslog.", TW_METRIC_COUNTER, 0, NULL);
    d->syslog_cells.sent = tw_family_cell(f, NULL);
    static const char *const reason_label[] = {"reason"};
    f = tw_metrics_family(d->metrics, "tokenwatch_syslog_dropped_total",
                          "Anomaly events not sent to syslog: reason=\"limit\" beyond "
                          "syslog.max_per_round in one read round, reason=\"error\" when the "
                          "send failed (no receiver, its queue full).",
                          TW_METRIC_COUNTER, 1, reason_label);
    const char *limit[] = {"limit"}, *error[] = {"error"};
    d->syslog_cells.dropped_limit = tw_family_cell(f, limit);
    d->syslog_cells.dropped_error = tw_family_cell(f, error);
}

/* ---- the analyst API (exporter/api.h), on HTTP threads ---------------------- */

static void api_lock(tw_daemon_t *d)
{
    atomic_fetch_add_explicit(&d->api_waiting, 1, memory_order_relaxed);
    pthread_mutex_lock(&d->lock);
    atomic_fetch_sub_explicit(&d->api_waiting, 1, memory_order_relaxed);
}

static char *empty_list(const tw_api_query_t *q, int *status)
{
    char buf[128];
    snprintf(buf, sizeof buf, "{\"total\":0,\"offset\":%u,\"limit\":%u,\"items\":[]}", q->offset,
             q->limit);
    *status = 200;
    return tw_xstrdup(buf);
}

static char *api_flagged(void *ctx, const tw_api_query_t *q, int *status)
{
    tw_daemon_t *d = ctx;
    api_lock(d);
    char *r = d->resp ? tw_respond_api_flagged(d->resp, q, status) : empty_list(q, status);
    pthread_mutex_unlock(&d->lock);
    return r;
}

static char *no_detection(int *status)
{
    *status = 404;
    return tw_xstrdup("{\"error\":\"detection is off (no rules): no token is tracked\"}");
}

static char *api_token(void *ctx, uint64_t token_id, int *status)
{
    tw_daemon_t *d = ctx;
    api_lock(d);
    char *r = d->resp ? tw_respond_api_token(d->resp, token_id, status) : no_detection(status);
    pthread_mutex_unlock(&d->lock);
    return r;
}

static char *api_action(void *ctx, uint64_t token_id, tw_api_action_t a, const char *analyst,
                        const char *note, int *status)
{
    tw_daemon_t *d = ctx;
    api_lock(d);
    char *r = d->resp ? tw_respond_api_action(d->resp, token_id, a, analyst, note, tw_now_ns(),
                                              status)
                      : no_detection(status);
    /* The audit record and any hook request are written now, not at the
     * next round, so the analyst's action is on disk when the call returns. */
    if (d->resp && *status == 200) {
        flush_events(d);
        tw_err_t err;
        if (tw_respond_save(d->resp, &err) != 0)
            tw_error("saving the flagged store: %s", err.msg);
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}

typedef struct count_ctx {
    uint64_t by_state[TW_CASE__COUNT], by_sev[4];
} count_ctx_t;

static bool count_case(void *ctx, tw_case_t *c)
{
    count_ctx_t *x = ctx;
    x->by_state[c->state]++;
    x->by_sev[c->severity & 3]++;
    return true;
}

static char *api_stats(void *ctx, int *status)
{
    tw_daemon_t *d = ctx;
    tw_jw_t w;
    tw_jw_init(&w);
    api_lock(d);
    tw_detect_stats_t ds = {0};
    if (d->det)
        tw_detect_stats(d->det, &ds);
    count_ctx_t cc = {{0}, {0}};
    if (d->resp)
        tw_cases_each(tw_respond_cases(d->resp), count_case, &cc);
    tw_jw_obj_begin(&w);
    tw_jw_key(&w, "version");
    tw_jw_cstr(&w, TW_VERSION);
    tw_jw_key(&w, "uptime_s");
    tw_jw_int(&w, (tw_now_ns() - d->started_ns) / 1000000000);
    tw_jw_key(&w, "detection");
    tw_jw_bool(&w, d->det != NULL);
    tw_jw_key(&w, "tokens_tracked");
    tw_jw_int(&w, (long long)ds.tokens_tracked);
    tw_jw_key(&w, "tokens_flagged");
    tw_jw_int(&w, d->resp ? (long long)tw_cases_count(tw_respond_cases(d->resp)) : 0);
    tw_jw_key(&w, "tokens_frozen");
    tw_jw_int(&w, d->resp ? (long long)tw_respond_frozen(d->resp) : 0);
    tw_jw_key(&w, "flagged_by_state");
    tw_jw_obj_begin(&w);
    for (int s = 0; s < TW_CASE__COUNT; s++) {
        tw_jw_key(&w, tw_case_state_name((tw_case_state_t)s));
        tw_jw_int(&w, (long long)cc.by_state[s]);
    }
    tw_jw_obj_end(&w);
    tw_jw_key(&w, "flagged_by_severity");
    tw_jw_obj_begin(&w);
    for (int s = 0; s < 4; s++) {
        tw_jw_key(&w, tw_severity_name((tw_severity_t)s));
        tw_jw_int(&w, (long long)cc.by_sev[s]);
    }
    tw_jw_obj_end(&w);
    tw_jw_key(&w, "anomalies_total");
    tw_jw_int(&w, (long long)ds.anomalies);
    tw_jw_key(&w, "freeze_circuit_open");
    tw_jw_bool(&w, d->resp && tw_respond_circuit_open(d->resp));
    tw_jw_key(&w, "freeze_queue_depth");
    tw_jw_int(&w, d->resp ? (long long)tw_respond_queue_depth(d->resp) : 0);
    tw_jw_key(&w, "inputs");
    tw_jw_arr_begin(&w);
    pthread_mutex_lock(&d->snap_lock);
    for (size_t i = 0; i < d->nsnap; i++) {
        const input_snap_t *sn = &d->snap[i];
        tw_jw_obj_begin(&w);
        tw_jw_key(&w, "name");
        tw_jw_cstr(&w, sn->name);
        tw_jw_key(&w, "checks");
        tw_jw_int(&w, (long long)sn->checks);
        tw_jw_key(&w, "rejected");
        tw_jw_int(&w, (long long)sn->rejected);
        tw_jw_key(&w, "lines");
        tw_jw_int(&w, (long long)sn->lines);
        tw_jw_key(&w, "parse_errors");
        tw_jw_int(&w, (long long)sn->parse_errors);
        tw_jw_obj_end(&w);
    }
    pthread_mutex_unlock(&d->snap_lock);
    tw_jw_arr_end(&w);
    tw_jw_obj_end(&w);
    pthread_mutex_unlock(&d->lock);
    char *r = tw_xmalloc(w.len + 1);
    memcpy(r, w.buf, w.len);
    r[w.len] = '\0';
    tw_jw_free(&w);
    *status = 200;
    return r;
}

/* ---- two threads: the analysis thread ----------------------------------- */

/* A's part of a round, with the analysis lock held: detection metrics, hook
 * reports and freeze TTLs, the events file and syslog, the baselines timer. */
static void analysis_round(tw_daemon_t *d, int64_t *next_bl)
{
    tw_detect_publish(d->det);
    if (d->resp)
        tw_respond_tick(d->resp, tw_now_ns());
    flush_events(d);
    int64_t now = tw_mono_ns();
    if (now >= *next_bl) {
        save_baselines(d);
        *next_bl = tw_mono_ns() + (int64_t)d->cfg->baselines_interval_s * 1000000000;
    }
}

/* While batches keep coming, the analysis round runs at least this often
 * (about as often as a busy one-thread loop finishes a read round). */
#define ANALYSIS_ROUND_MS 100

static bool readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return fd >= 0 && poll(&p, 1, 0) > 0;
}

/* The analysis thread: judges each batch under the analysis lock, in queue
 * order. Its round (analysis_round) runs when the queue runs empty — before
 * the last batch is released, so a drained queue also means flushed events —
 * every ANALYSIS_ROUND_MS while batches keep coming, as soon as a hook
 * reports, and every poll interval when idle (freeze TTLs). */
static void *analysis_main(void *arg)
{
    tw_daemon_t *d = arg;
    pthread_mutex_lock(&d->lock);
    int64_t next_bl = tw_mono_ns() + (int64_t)d->cfg->baselines_interval_s * 1000000000;
    int64_t last_round = tw_mono_ns();
    int wake_fd = d->resp ? tw_respond_wake_fd(d->resp) : -1;
    for (;;) {
        tw_handoff_batch_t *b = tw_handoff_take(d->ho);
        if (b) {
            tw_input_detect_batch(d->det, b);
            int64_t now = tw_mono_ns();
            if (tw_handoff_ready(d->ho) == 0 ||
                now - last_round >= (int64_t)ANALYSIS_ROUND_MS * 1000000 ||
                readable(wake_fd)) {
                analysis_round(d, &next_bl);
                last_round = now;
            }
            tw_handoff_release(d->ho, b);
            if (atomic_load_explicit(&d->api_waiting, memory_order_relaxed)) {
                pthread_mutex_unlock(&d->lock);
                while (atomic_load_explicit(&d->api_waiting, memory_order_relaxed))
                    sched_yield();
                pthread_mutex_lock(&d->lock);
            }
            continue;
        }
        if (tw_handoff_finished(d->ho))
            break;
        /* d->cfg changes only under the lock (reload): read it before
         * letting go. */
        int wait = d->cfg->poll_interval_ms;
        pthread_mutex_unlock(&d->lock);
        int why = tw_handoff_wait(d->ho, wait, wake_fd);
        pthread_mutex_lock(&d->lock);
        if (why != 1) {
            analysis_round(d, &next_bl);
            last_round = tw_mono_ns();
        }
    }
    analysis_round(d, &next_bl);
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Creates the queue and starts the analysis thread (before the inputs are
 * added, so they hand their checks over). Signals stay with the main
 * thread: its waits must be the ones they interrupt. On failure the daemon
 * runs on one thread. */
static void start_analysis(tw_daemon_t *d)
{
    if (!d->det || d->cfg->threads < 2)
        return;
    d->ho = tw_handoff_new(0, 0, 0);
    sigset_t old;
    block_signals(&old);
    int e = pthread_create(&d->analysis, NULL, analysis_main, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        tw_warn("cannot start the analysis thread (%s): running on one thread", strerror(e));
        tw_handoff_free(d->ho);
        d->ho = NULL;
        return;
    }
    pthread_setname_np(d->analysis, "tw-analysis");   /* top -H, perf */
    tw_info("two threads: reading and parsing on one, detection on the other");
}

/* Lets the analysis thread judge what is queued, flush, and exit. */
static void stop_analysis(tw_daemon_t *d)
{
    if (!d->ho)
        return;
    tw_handoff_close(d->ho);
    pthread_join(d->analysis, NULL);
    tw_handoff_stats_t hs;
    tw_handoff_stats(d->ho, &hs);
    tw_debug("handoff: %llu events in %llu batches; the reader waited %llu times for a "
             "free batch, the analysis thread %llu times for work",
             (unsigned long long)hs.events, (unsigned long long)hs.batches,
             (unsigned long long)hs.producer_waits, (unsigned long long)hs.consumer_waits);
    /* The inputs keep a pointer to the queue but push nothing any more. */
    for (size_t i = 0; i < d->ninputs; i++)
        tw_input_set_handoff(d->inputs[i].input, NULL, NULL);
    tw_handoff_free(d->ho);
    d->ho = NULL;
}

/* Waits until A has judged every queued check and is outside the lock, then
 * takes the lock: the reader may touch A's structures until unquiesce. */
static void quiesce(tw_daemon_t *d)
{
    tw_handoff_drain(d->ho);
    pthread_mutex_lock(&d->lock);
}

static int start(tw_daemon_t *d, tw_err_t *err)
{
    const tw_config_t *c = d->cfg;
    if (tw_state_prepare_dir(d->state_dir, err) != 0)
        return -1;
    tw_state_t *saved;
    if (tw_state_load(d->state_dir, &saved, err) != 0) {
        char *off = tw_path_join(d->state_dir, TW_STATE_OFFSETS_FILE);
        int rc = -1;
        if (d->discard_state) {
            tw_warn("%s", err->msg);
            rc = discard_aside(off, err);
            if (rc == 0)
                rc = tw_state_load(d->state_dir, &saved, err);
        } else {
            discard_hint(err);
        }
        free(off);
        if (rc != 0)
            return -1;
    }
    d->metrics = tw_metrics_new();
    register_daemon_metrics(d);
    if (start_detection(d, err) != 0) {
        tw_state_free(saved);
        return -1;
    }
    d->tail = tw_tail_new(&c->follow, err);
    if (!d->tail) {
        tw_state_free(saved);
        return -1;
    }
    start_analysis(d);
    for (size_t i = 0; i < c->ninputs; i++) {
        if (add_input(d, &c->inputs[i], tw_state_find(saved, c->inputs[i].name)) != 0) {
            tw_state_free(saved);
            return tw_err_set(err, "input %s could not be started", c->inputs[i].name);
        }
    }
    tw_state_free(saved);
    publish_inputs(d);
    tw_http_opts_t ho = {0};
    tw_config_http_opts(c, &ho);
    d->api = (tw_api_backend_t){
        .ctx = d,
        .flagged = api_flagged,
        .token = api_token,
        .action = api_action,
        .stats = api_stats,
    };
    ho.api = &d->api;
    ho.assets = tw_page_assets;
    ho.nassets = tw_page_nassets;
    sigset_t old;
    block_signals(&old);   /* libmicrohttpd's threads: no signals */
    d->http = tw_http_start(&ho, d->metrics, err);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!d->http)
        return -1;
    bool v6 = strchr(c->http_address, ':') != NULL;
    char addr[128];
    snprintf(addr, sizeof addr, "%s%s%s:%u", v6 ? "[" : "", c->http_address, v6 ? "]" : "",
             (unsigned)tw_http_port(d->http));
    tw_info("listening on http://%s (%zu inputs, state in %s)", addr, d->ninputs,
            d->state_dir);
    d->http_yield = true;   /* as tw_http_start leaves it */
    d->idle_at = tw_mono_ns();
    tw_http_set_ready(d->http, true);
    return 0;
}

static void stop(tw_daemon_t *d)
{
    tw_http_stop(d->http);
    for (size_t i = 0; i < d->nsnap; i++)
        free(d->snap[i].name);
    free(d->snap);
    tw_respond_free(d->resp);   /* saves the store; kills running hooks */
    free(d->baselines_path);
    for (size_t i = 0; i < d->ninputs; i++) {
        tw_input_free(d->inputs[i].input);
        free(d->inputs[i].path);
    }
    free(d->inputs);
    for (size_t k = 0; k < d->nretired; k++) {
        free(d->retired[k].name);
        free(d->retired[k].path);
    }
    free(d->retired);
    tw_tail_free(d->tail);
    tw_events_file_free(d->events);   /* flushes */
    tw_syslog_free(d->syslog);        /* flushes */
    tw_detect_free(d->det);
    tw_geo_close(d->geo);
    tw_tokenid_free(d->key);
    tw_metrics_free(d->metrics);
    tw_config_free(d->cfg);
    free(d->state_dir);
}

/* Ingestion is behind once no poll round has come back empty for this
 * long: the reader always found more to read (or, with two threads, waited
 * for the analysis thread). Long against a poll round, short against a
 * scrape interval. */
#define BEHIND_NS ((int64_t)500 * 1000000)

/* After each poll round (now: tw_mono_ns): HTTP threads run 10 nice
 * levels lower while ingestion is behind, at the daemon's priority
 * otherwise (tw_http_set_yield), so scrapes never slow a reader that has
 * work and are not kept waiting when it has none. */
static void pace_http(tw_daemon_t *d, uint64_t got, int64_t now)
{
    if (got == 0)
        d->idle_at = now;
    bool behind = now - d->idle_at >= BEHIND_NS;
    if (behind != d->http_yield) {
        d->http_yield = behind;
        tw_http_set_yield(d->http, behind);
        tw_debug("ingestion %s: HTTP threads at %s priority", behind ? "behind" : "caught up",
                 behind ? "lower" : "the daemon's");
    }
}

/* One thread: reads, detects and responds, holding the analysis lock except
 * while it waits for data or yields to a waiting API call. */
static void loop_one(tw_daemon_t *d)
{
    int64_t next_save = tw_mono_ns() + (int64_t)d->cfg->state_interval_ms * 1000000;
    int64_t next_bl = tw_mono_ns() + (int64_t)d->cfg->baselines_interval_s * 1000000000;
    pthread_mutex_lock(&d->lock);
    while (!g_stop) {
        if (g_reload) {
            g_reload = 0;
            reload(d);
        }
        set_ref_time(d, tw_now_ns());
        uint64_t got = tw_tail_poll(d->tail);
        if (d->det)
            tw_detect_flush(d->det);   /* the end of a round: every counted check judged */
        publish_all(d);
        if (d->resp)
            tw_respond_tick(d->resp, tw_now_ns());
        flush_events(d);
        int64_t now = tw_mono_ns();
        pace_http(d, got, now);
        if (now >= next_save) {
            save_state(d);
            next_save = now + (int64_t)d->cfg->state_interval_ms * 1000000;
        }
        if (now >= next_bl) {
            save_baselines(d);
            next_bl = tw_mono_ns() + (int64_t)d->cfg->baselines_interval_s * 1000000000;
        }
        if (got == 0 && !g_stop && !g_reload) {
            int64_t until_save = (next_save - now) / 1000000;
            int wait = d->cfg->poll_interval_ms;
            if (until_save < wait)
                wait = until_save > 0 ? (int)until_save : 0;
            pthread_mutex_unlock(&d->lock);
            tw_tail_wait_fd(d->tail, wait, d->resp ? tw_respond_wake_fd(d->resp) : -1);
            pthread_mutex_lock(&d->lock);
        } else if (atomic_load_explicit(&d->api_waiting, memory_order_relaxed)) {
            pthread_mutex_unlock(&d->lock);
            while (atomic_load_explicit(&d->api_waiting, memory_order_relaxed))
                sched_yield();
            pthread_mutex_lock(&d->lock);
        }
    }
    pthread_mutex_unlock(&d->lock);
}

/* ---- two threads: the reader (this thread) ------------------------------ */

static void loop_reader(tw_daemon_t *d)
{
    int64_t next_save = tw_mono_ns() + (int64_t)d->cfg->state_interval_ms * 1000000;
    while (!g_stop) {
        if (g_reload) {
            g_reload = 0;
            quiesce(d);
            reload(d);
            pthread_mutex_unlock(&d->lock);
        }
        set_ref_time(d, tw_now_ns());
        uint64_t got = tw_tail_poll(d->tail);
        tw_handoff_flush(d->ho);   /* the end of a round: no check waits for more */
        publish_inputs(d);
        int64_t now = tw_mono_ns();
        pace_http(d, got, now);
        if (now >= next_save) {
            tw_handoff_drain(d->ho);   /* the offsets claim only judged lines */
            save_state(d);
            next_save = now + (int64_t)d->cfg->state_interval_ms * 1000000;
        }
        if (got == 0 && !g_stop && !g_reload) {
            int64_t until_save = (next_save - now) / 1000000;
            int wait = d->cfg->poll_interval_ms;
            if (until_save < wait)
                wait = until_save > 0 ? (int)until_save : 0;
            tw_tail_wait_fd(d->tail, wait, -1);
        }
    }
}

static void loop(tw_daemon_t *d)
{
    if (d->ho)
        loop_reader(d);
    else
        loop_one(d);
}

int tw_cmd_run(const tw_cli_t *cli)
{
    if (cli->nargs > 0) {
        fprintf(stderr, "tokenwatch: run takes no arguments (got \"%s\"); see --help\n",
                cli->args[0]);
        return TW_EXIT_USAGE;
    }
    tw_daemon_t d = {.cli_log_level = cli->log_level,
                     .log_format = cli->log_format,
                     .discard_state = cli->discard_state,
                     .started_ns = tw_now_ns()};
    pthread_mutex_init(&d.lock, NULL);
    pthread_mutex_init(&d.snap_lock, NULL);
    atomic_init(&d.api_waiting, 0);
    d.cfg = tw_cli_load_config(cli);
    if (!d.cfg)
        return TW_EXIT_USAGE;
    if (d.cfg->ninputs == 0) {
        fprintf(stderr, "tokenwatch: %s: inputs: expected at least one input to follow\n",
                cli->config);
        tw_config_free(d.cfg);
        return TW_EXIT_USAGE;
    }
    tw_err_t err;
    d.state_dir = tw_xstrdup(d.cfg->state_dir);
    install_signals();
    int rc = TW_EXIT_OK;
    if (start(&d, &err) != 0) {
        tw_error("%s", err.msg);
        rc = TW_EXIT_FAILURE;
    } else {
        loop(&d);
        stop_analysis(&d);   /* every queued check judged, events flushed */
        tw_info("stopping: saving state");
        /* The API still answers until stop(): keep it off the detector. */
        pthread_mutex_lock(&d.lock);
        if (save_state(&d) != 0 || save_baselines(&d) != 0)
            rc = TW_EXIT_FAILURE;
        pthread_mutex_unlock(&d.lock);
    }
    stop_analysis(&d);   /* a start that failed after the thread began */
    stop(&d);
    pthread_mutex_destroy(&d.snap_lock);
    pthread_mutex_destroy(&d.lock);
    return rc;
}
