/*
 * respond.c — see respond.h.
 *
 * The hook's stdin is the anomaly event as written to the events file with
 * its "action" member set to the hook's action, plus "reason" (and
 * "analyst", "note" for analyst requests), plus "token" last when
 * pass_token is set. The event is our own writer's output (events.h): keys
 * in a fixed order, every '"' inside a string escaped, so the first
 * `"action":"` in it is the top-level member and is rewritten by plain text
 * surgery, without re-parsing (and re-formatting) the numbers.
 */
#include "respond.h"
#include "hook.h"
#include "log.h"
#include "timeparse.h"
#include "tokenid.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000LL
#define REPORTS_PER_TICK 64

enum { R_OK = 0, R_FAILED, R_TIMEOUT, R_DROPPED, R_DRY_RUN, R_SUPPRESSED, R__COUNT };
static const char *const result_names[R__COUNT] = {"ok",      "failed",  "timeout",
                                                   "dropped", "dry_run", "suppressed"};
/* tokenwatch_hook_calls_total outcomes (docs/internal-contract.md). */
enum { O_SUCCESS = 0, O_FAILURE, O_TIMEOUT, O_EXEC_ERROR, O_DROPPED, O__COUNT };
static const char *const outcome_names[O__COUNT] = {"success", "failure", "timeout",
                                                    "exec_error", "dropped"};

struct tw_respond {
    tw_respond_conf_t conf;      /* argv pointers borrowed from the caller's config */
    char *cases_path;
    tw_detect_t *det;
    tw_events_file_t *events;
    tw_hook_t *hook;             /* NULL without a "freeze" section */
    tw_cases_t *cases;
    bool dirty;                  /* the store changed since the last save */
    bool urgent;                 /* ... by a hook outcome: save at this tick */
    int64_t last_save_ns;        /* wall clock */
    tw_jw_t jw;                  /* records and job bodies */
    tw_jw_t body;                /* API answers (under the lock, one at a time) */
    int64_t *admitted;           /* breaker: monotonic times of the last admissions (ring) */
    unsigned admitted_head, admitted_n;
    uint64_t suppressed;
    size_t frozen;
    tw_log_limit_t drop_limit, save_limit;
    tw_hook_report_t reports[REPORTS_PER_TICK];

    tw_cell_t *c_result[R__COUNT];
    tw_cell_t *c_calls[2][O__COUNT];
    tw_hist_t *h_duration[2];
    tw_cell_t *c_depth, *c_frozen, *c_open, *c_state[TW_CASE__COUNT], *c_refused;
};

/* ---- metrics -------------------------------------------------------------- */

static void register_cells(tw_respond_t *r, tw_metrics_t *m)
{
    static const char *const rl[] = {"result"};
    tw_family_t *f = tw_metrics_family(
        m, "tokenwatch_freeze_total",
        "Freezes requested by rules, by final result: ok, failed (the hook failed every "
        "attempt), timeout (the last attempt timed out), dropped (queue full), dry_run, "
        "suppressed (circuit breaker open).",
        TW_METRIC_COUNTER, 1, rl);
    for (int i = 0; i < R__COUNT; i++) {
        const char *v[] = {result_names[i]};
        r->c_result[i] = tw_family_cell(f, v);
    }
    static const char *const al[] = {"action", "outcome"};
    f = tw_metrics_family(m, "tokenwatch_hook_calls_total",
                          "Freeze and unfreeze hook attempts by outcome (dropped: not queued, "
                          "the queue was full).",
                          TW_METRIC_COUNTER, 2, al);
    for (int a = 0; a < 2; a++)
        for (int o = 0; o < O__COUNT; o++) {
            const char *v[] = {a ? "unfreeze" : "freeze", outcome_names[o]};
            r->c_calls[a][o] = tw_family_cell(f, v);
        }
    static const uint64_t bounds[] = {10000,   50000,   100000,  250000,   500000,  1000000,
                                      2500000, 5000000, 10000000, 30000000, 60000000};
    static const char *const actl[] = {"action"};
    f = tw_metrics_histogram(m, "tokenwatch_freeze_hook_duration_seconds",
                             "Duration of freeze and unfreeze hook attempts that ran.", 6,
                             bounds, sizeof bounds / sizeof bounds[0], 1, actl);
    const char *fz[] = {"freeze"}, *ufz[] = {"unfreeze"};
    r->h_duration[0] = tw_family_hist(f, fz);
    r->h_duration[1] = tw_family_hist(f, ufz);
    f = tw_metrics_family(m, "tokenwatch_freeze_queue_depth",
                          "Hook jobs accepted and not finished (queued, running, waiting for "
                          "a retry).",
                          TW_METRIC_GAUGE, 0, NULL);
    r->c_depth = tw_family_cell(f, NULL);
    f = tw_metrics_family(m, "tokenwatch_tokens_frozen", "Tokens frozen now.", TW_METRIC_GAUGE,
                          0, NULL);
    r->c_frozen = tw_family_cell(f, NULL);
    f = tw_metrics_family(m, "tokenwatch_freeze_circuit_open",
                          "1 while the freeze circuit breaker is open (freeze.max_per_minute "
                          "reached in the last 60 s).",
                          TW_METRIC_GAUGE, 0, NULL);
    r->c_open = tw_family_cell(f, NULL);
    static const char *const sl[] = {"state"};
    f = tw_metrics_family(m, "tokenwatch_cases", "Flagged tokens in the store, by state.",
                          TW_METRIC_GAUGE, 1, sl);
    for (int s = 0; s < TW_CASE__COUNT; s++) {
        const char *v[] = {tw_case_state_name((tw_case_state_t)s)};
        r->c_state[s] = tw_family_cell(f, v);
    }
    f = tw_metrics_family(m, "tokenwatch_cases_refused_total",
                          "Flagged tokens not stored: max_cases reached and every case frozen "
                          "or with a hook call owed.",
                          TW_METRIC_COUNTER, 0, NULL);
    r->c_refused = tw_family_cell(f, NULL);
}

/* ---- records in the events file ------------------------------------------------ */


static void record_begin(tw_jw_t *w, int64_t now_ns, const char *type, const tw_case_t *c,
                         uint64_t token_id)
{
    char tbuf[48];
    tw_jw_reset(w);
    tw_jw_obj_begin(w);
    tw_jw_key(w, "time");
    tw_jw_cstr(w, tw_time_format_rfc3339(now_ns, tbuf, sizeof tbuf));
    tw_jw_key(w, "type");
    tw_jw_cstr(w, type);
    tw_jw_key(w, "token_id");
    tw_jw_token_id(w, token_id);
    tw_jw_key(w, "token_hint");
    tw_jw_cstr(w, c ? c->hint : "");
}

static void record_end(tw_respond_t *r)
{
    tw_jw_obj_end(&r->jw);
    tw_jw_newline(&r->jw);
    if (r->events)
        tw_events_file_append(r->events, r->jw.buf, r->jw.len);
}

/* ---- hook jobs -------------------------------------------------------------- */

static int64_t mono_now(void) { return tw_mono_ns(); }

/* Builds the job body (without the raw token) from the case's latest
 * anomaly into r->jw. */
static void job_body(tw_respond_t *r, const tw_case_t *c, const char *action,
                     const char *reason, const char *analyst, const char *note)
{
    tw_jw_t *w = &r->jw;
    tw_jw_reset(w);
    const tw_case_anomaly_t *a = tw_case_anomaly_at(c, 0);
    const char *ev = a ? a->json : NULL;
    size_t evlen = ev ? strlen(ev) : 0;
    static const char key[] = "\"action\":\"";
    const char *at = ev ? strstr(ev, key) : NULL;
    /* Rewrite the event's top-level action: copy up to its value, the new
     * value, then the rest from the closing quote on, without the final '}'. */
    if (ev && at && evlen >= 2 && ev[evlen - 1] == '}') {
        const char *v = at + sizeof key - 1;
        const char *endq = strchr(v, '"');
        if (endq) {
            tw_jw_raw(w, ev, (size_t)(v - ev));
            tw_jw_raw(w, action, strlen(action));
            tw_jw_raw(w, endq, (size_t)(ev + evlen - 1 - endq));   /* without the final '}' */
        }
    }
    if (w->len == 0) {
        /* No event to build on (a case loaded without evidence). */
        char tbuf[48];
        tw_jw_raw(w, "{\"time\":\"", 9);
        const char *t = tw_time_format_rfc3339(c->last_ns, tbuf, sizeof tbuf);
        tw_jw_raw(w, t, strlen(t));
        tw_jw_raw(w, "\",\"token_id\":", 13);
        char id[24];
        int n = snprintf(id, sizeof id, "\"tw_%016" PRIx64 "\"", c->token_id);
        tw_jw_raw(w, id, (size_t)n);
        tw_jw_raw(w, ",\"action\":\"", 11);
        tw_jw_raw(w, action, strlen(action));
        tw_jw_raw(w, "\"", 1);
    }
    tw_jw_raw(w, ",\"reason\":", 10);
    tw_jw_raw(w, "\"", 1);
    tw_json_escape(w, reason, strlen(reason));
    tw_jw_raw(w, "\"", 1);
    if (analyst) {
        tw_jw_raw(w, ",\"analyst\":\"", 12);
        tw_json_escape(w, analyst, strlen(analyst));
        tw_jw_raw(w, "\"", 1);
        tw_jw_raw(w, ",\"note\":\"", 9);
        tw_json_escape(w, note ? note : "", note ? strlen(note) : 0);
        tw_jw_raw(w, "\"", 1);
    }
}

/* Submits the case's owed job (c->job_json) for action, adding the raw
 * token when configured. Returns 0, or -1 when the queue was full. */
static int submit(tw_respond_t *r, tw_case_t *c, tw_hook_action_t action)
{
    tw_jw_t *w = &r->jw;
    tw_jw_reset(w);
    tw_jw_raw(w, c->job_json, strlen(c->job_json));
    if (r->conf.pass_token && c->raw) {
        tw_jw_raw(w, ",\"token\":\"", 10);
        tw_json_escape(w, c->raw, c->raw_len);
        tw_jw_raw(w, "\"", 1);
    }
    tw_jw_raw(w, "}\n", 2);
    uint64_t seq;
    int rc = tw_hook_submit(r->hook, action, c->token_id, c->rule, w->buf, w->len, &seq);
    /* The body may hold the raw token: do not leave it in the buffer. */
    memset(w->buf, 0, w->len);
    tw_jw_reset(w);
    return rc;
}

static void note_dropped(tw_respond_t *r, tw_case_t *c, tw_hook_action_t action, int64_t now)
{
    tw_cell_add(r->c_calls[action][O_DROPPED], 1);
    if (action == TW_HOOK_FREEZE)
        tw_cell_add(r->c_result[R_DROPPED], 1);
    tw_log_limited(&r->drop_limit, TW_LOG_ERROR,
                   "%s hook queue full (%u jobs): %s of tw_%016" PRIx64 " dropped",
                   tw_hook_action_name(action), r->conf.queue_size, tw_hook_action_name(action),
                   c->token_id);
    record_begin(&r->jw, now, "hook_call", c, c->token_id);
    tw_jw_key(&r->jw, "action");
    tw_jw_cstr(&r->jw, tw_hook_action_name(action));
    tw_jw_key(&r->jw, "rule");
    tw_jw_cstr(&r->jw, c->rule);
    tw_jw_key(&r->jw, "outcome");
    tw_jw_cstr(&r->jw, "dropped");
    tw_jw_key(&r->jw, "attempt");
    tw_jw_int(&r->jw, 0);
    tw_jw_key(&r->jw, "final");
    tw_jw_bool(&r->jw, true);
    record_end(r);
}

/* Queues a freeze of c. analyst NULL: requested by a rule. */
static bool request_freeze(tw_respond_t *r, tw_case_t *c, int64_t now, const char *reason,
                           const char *analyst, const char *note)
{
    job_body(r, c, "freeze", reason, analyst, note);
    tw_case_set_job(c, r->jw.buf, r->jw.len);
    if (submit(r, c, TW_HOOK_FREEZE) != 0) {
        tw_case_set_job(c, NULL, 0);
        note_dropped(r, c, TW_HOOK_FREEZE, now);
        tw_case_log(c, now, "freeze_dropped", c->state, NULL, NULL);
        r->dirty = true;
        return false;
    }
    c->freeze_pending = true;
    tw_case_log(c, now, "freeze_requested",
                c->state == TW_CASE_CONFIRMED ? TW_CASE_CONFIRMED : TW_CASE_FREEZING, analyst,
                NULL);
    r->dirty = true;
    return true;
}

static bool request_unfreeze(tw_respond_t *r, tw_case_t *c, int64_t now, const char *reason,
                             const char *analyst, const char *note, tw_case_state_t state)
{
    job_body(r, c, "unfreeze", reason, analyst, note);
    tw_case_set_job(c, r->jw.buf, r->jw.len);
    if (submit(r, c, TW_HOOK_UNFREEZE) != 0) {
        tw_case_set_job(c, NULL, 0);
        note_dropped(r, c, TW_HOOK_UNFREEZE, now);
        r->dirty = true;
        return false;
    }
    c->unfreeze_pending = true;
    tw_case_log(c, now, "unfreeze_requested", state, analyst, note);
    r->dirty = true;
    return true;
}

/* ---- the breaker ------------------------------------------------------------ */

static bool breaker_open(const tw_respond_t *r, int64_t mono)
{
    if (r->admitted_n < r->conf.max_per_minute)
        return false;
    /* The oldest of the last max_per_minute admissions. */
    int64_t oldest = r->admitted[r->admitted_head];
    return mono - oldest < (int64_t)r->conf.circuit_window_s * NS_PER_S;
}

static void breaker_admit(tw_respond_t *r, int64_t mono)
{
    r->admitted[r->admitted_head] = mono;
    r->admitted_head = (r->admitted_head + 1) % r->conf.max_per_minute;
    if (r->admitted_n < r->conf.max_per_minute)
        r->admitted_n++;
}

/* ---- lifecycle ----------------------------------------------------------------- */

static bool can_freeze(const tw_respond_t *r, const tw_case_t *c)
{
    return r->hook && tw_hook_has_command(r->hook, TW_HOOK_FREEZE) && !c->frozen &&
           !c->freeze_pending && c->state != TW_CASE_CONFIRMED;
}

void tw_respond_anomaly(tw_respond_t *r, const tw_anomaly_t *a)
{
    bool created;
    tw_case_t *c = tw_cases_add(r->cases, a->token_id, &created);
    if (!c) {
        tw_cell_set(r->c_refused, tw_cases_refused(r->cases));
        return;
    }
    int64_t now = tw_now_ns();
    tw_case_note_anomaly(c, a);
    r->dirty = true;
    if (created) {
        tw_case_log(c, now, "flagged", TW_CASE_FLAGGED, NULL, NULL);
    } else if (!c->frozen && !c->freeze_pending && !c->unfreeze_pending &&
               c->state != TW_CASE_CONFIRMED && c->state != TW_CASE_FLAGGED) {
        /* New evidence after a review: back to the queue of things to look at. */
        tw_case_log(c, now, "flagged", TW_CASE_FLAGGED, NULL, NULL);
    } else if (c->frozen && c->state == TW_CASE_ACKED) {
        tw_case_log(c, now, "flagged", TW_CASE_FROZEN, NULL, NULL);
    }
    if (r->conf.pass_token && (c->frozen || a->rule->action == TW_ACT_FREEZE))
        tw_case_set_raw(c, a->token.p, a->token.n);
    if (a->rule->action != TW_ACT_FREEZE || !can_freeze(r, c))
        return;
    int64_t mono = mono_now();
    if (breaker_open(r, mono)) {
        r->suppressed++;
        tw_cell_add(r->c_result[R_SUPPRESSED], 1);
        tw_cell_set_gauge(r->c_open, 1);
        tw_log_limited(&r->drop_limit, TW_LOG_WARN,
                       "freeze circuit breaker open (%u freezes in the last minute): "
                       "tw_%016" PRIx64 " flagged, not frozen",
                       r->conf.max_per_minute, a->token_id);
        record_begin(&r->jw, now, "freeze_suppressed", c, c->token_id);
        tw_jw_key(&r->jw, "rule");
        tw_jw_cstr(&r->jw, a->rule->id);
        tw_jw_key(&r->jw, "reason");
        tw_jw_cstr(&r->jw, "circuit_open");
        tw_jw_key(&r->jw, "max_per_minute");
        tw_jw_int(&r->jw, r->conf.max_per_minute);
        record_end(r);
        tw_case_log(c, now, "freeze_suppressed", c->state, NULL, NULL);
        return;
    }
    if (request_freeze(r, c, now, "rule", NULL, NULL))
        breaker_admit(r, mono);
}

void tw_respond_want(tw_respond_t *r, uint64_t token_id, tw_slice_t token)
{
    tw_case_t *c = tw_cases_find(r->cases, token_id);
    if (!c)
        return;
    tw_case_set_raw(c, token.p, token.n);
    if (c->freeze_pending && c->job_json && r->hook) {
        tw_info("tw_%016" PRIx64 ": token seen again, resubmitting its owed freeze", token_id);
        if (submit(r, c, TW_HOOK_FREEZE) != 0) {
            c->freeze_pending = false;
            tw_case_set_job(c, NULL, 0);
            note_dropped(r, c, TW_HOOK_FREEZE, tw_now_ns());
            tw_case_log(c, tw_now_ns(), "freeze_dropped", TW_CASE_FLAGGED, NULL, NULL);
            r->dirty = true;
        }
    }
}

static uint64_t ttl_for(const tw_respond_t *r, uint32_t freezes)
{
    double s = (double)r->conf.ttl_s;
    for (uint32_t i = 1; i < freezes && s < (double)r->conf.ttl_max_s; i++)
        s *= r->conf.ttl_increment;
    if (s > (double)r->conf.ttl_max_s)
        s = (double)r->conf.ttl_max_s;
    return (uint64_t)s;
}

/* The hook's stderr tail, with every copy of the raw token the hook may have
 * echoed (it got it on stdin) replaced by "[token]": raw tokens never reach
 * the events file. */
static void put_stderr(tw_jw_t *w, const tw_hook_report_t *rep, const tw_case_t *c)
{
    const char *p = rep->stderr_tail, *end = p + rep->stderr_len;
    tw_jw_raw(w, "\"", 1);   /* right after its key: no separator needed */
    while (p < end) {
        const char *hit = NULL;
        if (c && c->raw && c->raw_len >= 4)
            hit = memmem(p, (size_t)(end - p), c->raw, c->raw_len);
        size_t n = hit ? (size_t)(hit - p) : (size_t)(end - p);
        tw_json_escape(w, p, n);
        p += n;
        if (hit) {
            tw_jw_raw(w, "[token]", 7);
            p += c->raw_len;
        }
    }
    tw_jw_raw(w, "\"", 1);
}

static void on_report(tw_respond_t *r, const tw_hook_report_t *rep, int64_t now)
{
    tw_case_t *c = tw_cases_find(r->cases, rep->token_id);
    int act = rep->action == TW_HOOK_UNFREEZE ? 1 : 0;
    if (rep->outcome != TW_HOOK_DRY_RUN) {
        static const int map[] = {[TW_HOOK_OK] = O_SUCCESS,
                                  [TW_HOOK_FAILED] = O_FAILURE,
                                  [TW_HOOK_TIMEOUT] = O_TIMEOUT,
                                  [TW_HOOK_EXEC_ERROR] = O_EXEC_ERROR};
        tw_cell_add(r->c_calls[act][map[rep->outcome]], 1);
        if (rep->outcome != TW_HOOK_EXEC_ERROR)
            tw_hist_observe(r->h_duration[act], (uint64_t)llround(rep->duration_s * 1e6));
    }
    record_begin(&r->jw, now, "hook_call", c, rep->token_id);
    tw_jw_t *w = &r->jw;
    tw_jw_key(w, "action");
    tw_jw_cstr(w, tw_hook_action_name(rep->action));
    tw_jw_key(w, "rule");
    tw_jw_cstr(w, rep->rule);
    tw_jw_key(w, "outcome");
    tw_jw_cstr(w, tw_hook_outcome_name(rep->outcome));
    tw_jw_key(w, "attempt");
    tw_jw_int(w, rep->attempt);
    tw_jw_key(w, "final");
    tw_jw_bool(w, rep->final);
    tw_jw_key(w, "duration_s");
    tw_jw_double(w, rep->duration_s, 3);
    tw_jw_key(w, "exit_status");
    if (rep->exit_status >= 0)
        tw_jw_int(w, rep->exit_status);
    else
        tw_jw_null(w);
    tw_jw_key(w, "signal");
    if (rep->term_signal)
        tw_jw_int(w, rep->term_signal);
    else
        tw_jw_null(w);
    if (rep->outcome == TW_HOOK_EXEC_ERROR) {
        tw_jw_key(w, "error");
        tw_jw_cstr(w, strerror(rep->error_no));
    }
    if (!rep->final) {
        tw_jw_key(w, "retry_in_ms");
        tw_jw_int(w, rep->retry_in_ms);
    }
    tw_jw_key(w, "stderr");
    put_stderr(w, rep, c);
    record_end(r);
    if (rep->outcome != TW_HOOK_OK && rep->outcome != TW_HOOK_DRY_RUN)
        tw_log_limited(&r->drop_limit, TW_LOG_WARN,
                       "%s hook for tw_%016" PRIx64 ": %s (attempt %u%s)",
                       tw_hook_action_name(rep->action), rep->token_id,
                       rep->outcome == TW_HOOK_EXEC_ERROR ? strerror(rep->error_no)
                                                          : tw_hook_outcome_name(rep->outcome),
                       rep->attempt, rep->final ? ", giving up" : ", will retry");
    if (!rep->final || !c)
        return;
    r->dirty = true;
    r->urgent = true;   /* a freeze that succeeded must be on disk before a crash */
    bool ok = rep->outcome == TW_HOOK_OK;
    if (rep->action == TW_HOOK_FREEZE) {
        c->freeze_pending = false;
        tw_case_set_job(c, NULL, 0);
        int res = ok ? R_OK
                  : rep->outcome == TW_HOOK_DRY_RUN ? R_DRY_RUN
                  : rep->outcome == TW_HOOK_TIMEOUT ? R_TIMEOUT
                                                    : R_FAILED;
        tw_cell_add(r->c_result[res], 1);
        if (ok) {
            c->frozen = true;
            c->freezes++;
            c->frozen_at_ns = now;
            c->freeze_until_ns = 0;
            if (r->conf.ttl_s && c->state != TW_CASE_CONFIRMED)
                c->freeze_until_ns = now + (int64_t)ttl_for(r, c->freezes) * NS_PER_S;
            tw_case_log(c, now, "frozen",
                        c->state == TW_CASE_CONFIRMED ? TW_CASE_CONFIRMED : TW_CASE_FROZEN, NULL,
                        NULL);
        } else {
            tw_case_log(c, now, res == R_DRY_RUN ? "freeze_dry_run" : "freeze_failed",
                        c->state == TW_CASE_CONFIRMED ? TW_CASE_CONFIRMED : TW_CASE_FLAGGED,
                        NULL, NULL);
        }
        if (!r->conf.pass_token || !c->frozen) {
            /* The raw token is kept only while it may be needed. */
            free(c->raw);
            c->raw = NULL;
            c->raw_len = 0;
        }
    } else {
        c->unfreeze_pending = false;
        tw_case_set_job(c, NULL, 0);
        if (ok || rep->outcome == TW_HOOK_DRY_RUN) {
            c->frozen = ok ? false : c->frozen;
            if (ok)
                c->freeze_until_ns = 0;
            tw_case_log(c, now, ok ? "unfrozen" : "unfreeze_dry_run",
                        c->state == TW_CASE_DISMISSED ? TW_CASE_DISMISSED
                        : ok                          ? TW_CASE_UNFROZEN
                                                      : c->state,
                        NULL, NULL);
        } else {
            /* Still frozen; the TTL (if any) tries again at the next tick
             * unless an analyst acts first. Back off: one TTL period. */
            if (c->freeze_until_ns)
                c->freeze_until_ns = now + (int64_t)r->conf.ttl_s * NS_PER_S;
            tw_case_log(c, now, "unfreeze_failed",
                        c->state == TW_CASE_DISMISSED ? TW_CASE_DISMISSED : TW_CASE_FROZEN, NULL,
                        NULL);
        }
    }
}

typedef struct tick_ctx {
    tw_respond_t *r;
    int64_t now;
    size_t frozen;
    uint64_t states[TW_CASE__COUNT];
} tick_ctx_t;

static bool tick_case(void *ctx, tw_case_t *c)
{
    tick_ctx_t *t = ctx;
    t->frozen += c->frozen;
    t->states[c->state]++;
    if (c->frozen && c->freeze_until_ns && t->now >= c->freeze_until_ns &&
        !c->unfreeze_pending && c->state != TW_CASE_CONFIRMED && t->r->hook &&
        tw_hook_has_command(t->r->hook, TW_HOOK_UNFREEZE)) {
        c->freeze_until_ns = 0;
        request_unfreeze(t->r, c, t->now, "ttl_expired", NULL, NULL, TW_CASE_UNFREEZING);
    }
    return true;
}

void tw_respond_tick(tw_respond_t *r, int64_t now_ns)
{
    if (r->hook) {
        size_t n;
        while ((n = tw_hook_poll(r->hook, r->reports, REPORTS_PER_TICK)) > 0)
            for (size_t i = 0; i < n; i++)
                on_report(r, &r->reports[i], now_ns);
        tw_cell_set_gauge(r->c_depth, (int64_t)tw_hook_depth(r->hook));
    }
    tick_ctx_t t = {.r = r, .now = now_ns};
    tw_cases_each(r->cases, tick_case, &t);
    r->frozen = t.frozen;
    if (r->c_frozen) {
        tw_cell_set_gauge(r->c_frozen, (int64_t)t.frozen);
        tw_cell_set_gauge(r->c_open, breaker_open(r, mono_now()) ? 1 : 0);
        for (int s = 0; s < TW_CASE__COUNT; s++)
            tw_cell_set_gauge(r->c_state[s], (int64_t)t.states[s]);
        tw_cell_set(r->c_refused, tw_cases_refused(r->cases));
    }
    /* The store is rewritten whole, so new evidence is saved at most once a
     * second (a flood of anomalies over many cases must not rewrite a large
     * file per round); hook outcomes are saved at once. */
    if (r->dirty && (r->urgent || now_ns - r->last_save_ns >= NS_PER_S)) {
        tw_err_t err;
        if (tw_respond_save(r, &err) != 0)
            tw_log_limited(&r->save_limit, TW_LOG_ERROR, "saving the flagged store: %s",
                           err.msg);
    }
}

int tw_respond_save(tw_respond_t *r, tw_err_t *err)
{
    r->last_save_ns = tw_now_ns();
    if (tw_cases_save(r->cases, r->cases_path, err) != 0)
        return -1;
    r->dirty = r->urgent = false;
    return 0;
}

int tw_respond_wake_fd(const tw_respond_t *r) { return r->hook ? tw_hook_wake_fd(r->hook) : -1; }
size_t tw_respond_frozen(const tw_respond_t *r) { return r->frozen; }
bool tw_respond_circuit_open(const tw_respond_t *r) { return breaker_open(r, mono_now()); }
size_t tw_respond_queue_depth(const tw_respond_t *r) { return r->hook ? tw_hook_depth(r->hook) : 0; }
tw_cases_t *tw_respond_cases(tw_respond_t *r) { return r->cases; }

/* ---- construction ----------------------------------------------------------- */

tw_respond_t *tw_respond_new(const tw_respond_opts_t *o, tw_err_t *err)
{
    tw_respond_t *r = tw_xcalloc(1, sizeof *r);
    r->conf = *o->conf;
    if (r->conf.max_per_minute == 0)
        r->conf.max_per_minute = 10;
    if (r->conf.circuit_window_s == 0)
        r->conf.circuit_window_s = 60;
    r->cases_path = tw_xstrdup(o->cases_path);
    r->det = o->det;
    r->events = o->events;
    r->admitted = tw_xcalloc(r->conf.max_per_minute, sizeof *r->admitted);
    tw_jw_init(&r->jw);
    tw_jw_init(&r->body);
    r->cases = tw_cases_new(o->max_cases);
    if (o->metrics)
        register_cells(r, o->metrics);
    if (tw_cases_load(r->cases, r->cases_path, err) < 0) {
        tw_respond_free(r);
        return NULL;
    }
    if (r->conf.enabled) {
        tw_hook_opts_t ho = {
            .freeze_argv = (const char *const *)r->conf.freeze_argv,
            .unfreeze_argv = (const char *const *)r->conf.unfreeze_argv,
            .timeout_ms = r->conf.timeout_ms,
            .concurrency = r->conf.concurrency,
            .queue_max = r->conf.queue_size,
            .max_attempts = r->conf.max_attempts,
            .backoff_ms = r->conf.backoff_ms,
            .backoff_max_ms = r->conf.backoff_max_ms,
            .dry_run = r->conf.dry_run,
        };
        if (tw_hook_new(&r->hook, &ho, err) != 0) {
            tw_respond_free(r);
            return NULL;
        }
    }
    /* The argv arrays belong to the caller's config, which a reload frees:
     * the runner has its own copies, keep no pointer. */
    r->conf.freeze_argv = r->conf.unfreeze_argv = NULL;
    return r;
}

typedef struct resume_ctx {
    tw_respond_t *r;
    size_t freezes, waiting, unfreezes;
} resume_ctx_t;

static bool resume_case(void *ctx, tw_case_t *c)
{
    resume_ctx_t *x = ctx;
    tw_respond_t *r = x->r;
    int64_t now = tw_now_ns();
    if (c->freeze_pending && (!c->job_json || !r->hook)) {
        c->freeze_pending = false;
        tw_case_log(c, now, "freeze_abandoned", TW_CASE_FLAGGED, NULL, NULL);
        r->dirty = true;
    } else if (c->freeze_pending && r->conf.pass_token) {
        /* The raw token was never written down: wait for its next use. */
        if (r->det)
            tw_detect_want(r->det, c->token_id);
        x->waiting++;
    } else if (c->freeze_pending) {
        if (submit(r, c, TW_HOOK_FREEZE) == 0) {
            x->freezes++;
        } else {
            c->freeze_pending = false;
            tw_case_set_job(c, NULL, 0);
            note_dropped(r, c, TW_HOOK_FREEZE, now);
            r->dirty = true;
        }
    }
    if (c->unfreeze_pending) {
        if (c->job_json && r->hook && submit(r, c, TW_HOOK_UNFREEZE) == 0) {
            x->unfreezes++;
        } else {
            c->unfreeze_pending = false;
            tw_case_log(c, now, "unfreeze_abandoned", c->state, NULL, NULL);
            r->dirty = true;
        }
    }
    return true;
}

void tw_respond_resume(tw_respond_t *r)
{
    resume_ctx_t x = {.r = r};
    tw_cases_each(r->cases, resume_case, &x);
    if (tw_cases_count(r->cases))
        tw_info("flagged store: %zu tokens; resumed %zu freezes and %zu unfreezes owed at the "
                "last stop, %zu freezes wait for their token's next use (pass_token)",
                tw_cases_count(r->cases), x.freezes, x.unfreezes, x.waiting);
}

void tw_respond_free(tw_respond_t *r)
{
    if (!r)
        return;
    tw_hook_free(r->hook);
    if (r->dirty) {
        tw_err_t err;
        if (tw_respond_save(r, &err) != 0)
            tw_error("saving the flagged store: %s", err.msg);
    }
    tw_cases_free(r->cases);
    tw_jw_free(&r->jw);
    tw_jw_free(&r->body);
    free(r->admitted);
    free(r->cases_path);
    free(r);
}

/* ---- the API ------------------------------------------------------------------ */

static char *body_take(tw_respond_t *r)
{
    char *s = tw_xmalloc(r->body.len + 1);
    memcpy(s, r->body.buf, r->body.len);
    s[r->body.len] = '\0';
    return s;
}

static char *api_error(tw_respond_t *r, int status, int *out_status, const char *msg)
{
    tw_jw_reset(&r->body);
    tw_jw_obj_begin(&r->body);
    tw_jw_key(&r->body, "error");
    tw_jw_cstr(&r->body, msg);
    tw_jw_obj_end(&r->body);
    *out_status = status;
    return body_take(r);
}

typedef struct list_ctx {
    const tw_api_query_t *q;
    tw_case_t **v;
    size_t n, cap;
} list_ctx_t;

static bool case_matches(const tw_case_t *c, const tw_api_query_t *q)
{
    if (q->min_severity >= 0 && c->severity < q->min_severity)
        return false;
    if (q->state && strcmp(q->state, tw_case_state_name(c->state)) != 0)
        return false;
    if (q->since_ns != INT64_MIN && c->last_ns < q->since_ns)
        return false;
    if (q->rule) {
        for (unsigned i = 0; i < c->nrules; i++)
            if (strcmp(c->rules[i], q->rule) == 0)
                return true;
        return false;
    }
    return true;
}

static bool collect(void *ctx, tw_case_t *c)
{
    list_ctx_t *l = ctx;
    if (!case_matches(c, l->q))
        return true;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = tw_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = c;
    return true;
}

static int newest_first(const void *a, const void *b)
{
    const tw_case_t *x = *(tw_case_t *const *)a, *y = *(tw_case_t *const *)b;
    if (x->last_ns != y->last_ns)
        return x->last_ns > y->last_ns ? -1 : 1;
    return x->token_id < y->token_id ? -1 : x->token_id > y->token_id;
}

char *tw_respond_api_flagged(tw_respond_t *r, const tw_api_query_t *q, int *status)
{
    list_ctx_t l = {.q = q};
    tw_cases_each(r->cases, collect, &l);
    if (l.n > 1)   /* l.v is NULL when nothing matched: qsort's pointer must not be */
        qsort(l.v, l.n, sizeof *l.v, newest_first);
    tw_jw_t *w = &r->body;
    tw_jw_reset(w);
    tw_jw_obj_begin(w);
    tw_jw_key(w, "total");
    tw_jw_int(w, (long long)l.n);
    tw_jw_key(w, "offset");
    tw_jw_int(w, q->offset);
    tw_jw_key(w, "limit");
    tw_jw_int(w, q->limit);
    tw_jw_key(w, "items");
    tw_jw_arr_begin(w);
    for (size_t i = q->offset; i < l.n && i < (size_t)q->offset + q->limit; i++)
        tw_case_item_json(l.v[i], w);
    tw_jw_arr_end(w);
    tw_jw_obj_end(w);
    free(l.v);
    *status = 200;
    return body_take(r);
}

static void put_time_key(tw_jw_t *w, const char *key, int64_t ns)
{
    char buf[48];
    tw_jw_key(w, key);
    if (ns)
        tw_jw_cstr(w, tw_time_format_rfc3339(ns, buf, sizeof buf));
    else
        tw_jw_null(w);
}

static void baseline_json(tw_respond_t *r, tw_jw_t *w, const tw_baseline_t *b)
{
    put_time_key(w, "first_seen", b ? b->first_ns : 0);
    put_time_key(w, "last_seen", b ? b->last_ns : 0);
    tw_jw_key(w, "events");
    tw_jw_int(w, b ? b->events : 0);
    tw_jw_key(w, "learning");
    tw_jw_bool(w, !b || !(b->flags & TW_BL_MATURE));
    tw_jw_key(w, "rate");
    tw_jw_obj_begin(w);
    tw_jw_key(w, "window_s");
    tw_jw_int(w, r->det ? tw_detect_rate_window(r->det) : 0);
    tw_jw_key(w, "mean");
    tw_jw_double(w, b ? b->rate_mean : 0, 2);
    tw_jw_key(w, "sd");
    tw_jw_double(w, b ? tw_baseline_rate_sd(b) : 0, 2);
    tw_jw_key(w, "current");
    tw_jw_int(w, b ? b->rate_count : 0);
    tw_jw_key(w, "baseline_windows");
    tw_jw_int(w, b ? b->rate_windows : 0);
    tw_jw_obj_end(w);
    tw_jw_key(w, "countries");
    tw_jw_arr_begin(w);
    for (unsigned k = 0; b && k < TW_BASELINE_COUNTRIES && b->countries[k][0]; k++)
        tw_jw_str(w, b->countries[k], 2);
    tw_jw_arr_end(w);
    tw_jw_key(w, "asns");
    tw_jw_arr_begin(w);
    for (unsigned k = 0; b && k < TW_BASELINE_ASNS && b->asns[k]; k++)
        tw_jw_int(w, b->asns[k]);
    tw_jw_arr_end(w);
    tw_jw_key(w, "last_location");
    if (b && (b->flags & TW_BL_HAS_LOC)) {
        const tw_baseline_loc_t *l = &b->loc;
        char ip[64] = "";
        if (l->addr.family == 4)
            inet_ntop(AF_INET, l->addr.bytes, ip, sizeof ip);
        else if (l->addr.family == 6)
            inet_ntop(AF_INET6, l->addr.bytes, ip, sizeof ip);
        tw_jw_obj_begin(w);
        tw_jw_key(w, "ip");
        tw_jw_cstr(w, ip);
        tw_jw_key(w, "country");
        tw_jw_str(w, l->country, l->country[0] ? 2 : 0);
        tw_jw_key(w, "city");
        tw_jw_cstr(w, l->city ? l->city : "");
        tw_jw_key(w, "lat");
        tw_jw_double(w, l->lat, 4);
        tw_jw_key(w, "lon");
        tw_jw_double(w, l->lon, 4);
        tw_jw_key(w, "radius_km");
        tw_jw_int(w, l->radius_km);
        put_time_key(w, "time", l->time_ns);
        tw_jw_obj_end(w);
    } else {
        tw_jw_null(w);
    }
    tw_jw_key(w, "time_zone");
    tw_jw_cstr(w, b && (b->flags & TW_BL_HAS_LOC) && b->loc.time_zone ? b->loc.time_zone : "");
    tw_jw_key(w, "hours");
    tw_jw_arr_begin(w);
    for (unsigned h = 0; h < TW_BASELINE_HOURS; h++)
        tw_jw_int(w, b ? b->hours[h] : 0);
    tw_jw_arr_end(w);
}

char *tw_respond_api_token(tw_respond_t *r, uint64_t token_id, int *status)
{
    const tw_case_t *c = tw_cases_find(r->cases, token_id);
    const tw_baseline_t *b = r->det ? tw_detect_token(r->det, token_id) : NULL;
    if (!c && !b)
        return api_error(r, 404, status, "no such token: it is neither tracked nor flagged");
    tw_jw_t *w = &r->body;
    tw_jw_reset(w);
    tw_jw_obj_begin(w);
    tw_jw_key(w, "token_id");
    tw_jw_token_id(w, token_id);
    tw_jw_key(w, "token_hint");
    tw_jw_cstr(w, c ? c->hint : "");
    tw_jw_key(w, "principal");
    if (c && c->principal[0])
        tw_jw_cstr(w, c->principal);
    else
        tw_jw_null(w);
    tw_jw_key(w, "state");
    tw_jw_cstr(w, c ? tw_case_state_name(c->state) : "observed");
    tw_jw_key(w, "frozen");
    tw_jw_bool(w, c && c->frozen);
    tw_jw_key(w, "tracked");
    tw_jw_bool(w, b != NULL);
    baseline_json(r, w, b);
    tw_jw_key(w, "anomalies");
    tw_jw_arr_begin(w);
    for (unsigned i = 0; c && i < c->recent_n; i++) {
        const tw_case_anomaly_t *a = tw_case_anomaly_at(c, i);
        if (a && a->json) {
            if (i > 0)
                tw_jw_raw(w, ",", 1);
            tw_jw_raw(w, a->json, strlen(a->json));
        }
    }
    tw_jw_arr_end(w);
    tw_jw_key(w, "history");
    tw_jw_arr_begin(w);
    for (unsigned i = 0; c && i < c->history_n; i++) {
        const tw_case_entry_t *e = tw_case_entry_at(c, i);
        if (!e)
            break;
        tw_jw_obj_begin(w);
        put_time_key(w, "time", e->time_ns);
        tw_jw_key(w, "action");
        tw_jw_cstr(w, e->action);
        tw_jw_key(w, "state");
        tw_jw_cstr(w, tw_case_state_name(e->state));
        tw_jw_key(w, "analyst");
        tw_jw_cstr(w, e->analyst ? e->analyst : "tokenwatch");
        tw_jw_key(w, "note");
        if (e->note)
            tw_jw_cstr(w, e->note);
        else
            tw_jw_null(w);
        tw_jw_obj_end(w);
    }
    tw_jw_arr_end(w);
    put_time_key(w, "freeze_until", c ? c->freeze_until_ns : 0);
    tw_jw_key(w, "freezes");
    tw_jw_int(w, c ? c->freezes : 0);
    tw_jw_obj_end(w);
    *status = 200;
    return body_take(r);
}

static void audit(tw_respond_t *r, const tw_case_t *c, int64_t now, const char *action,
                  const char *analyst, const char *note)
{
    record_begin(&r->jw, now, "analyst_action", c, c->token_id);
    tw_jw_key(&r->jw, "action");
    tw_jw_cstr(&r->jw, action);
    tw_jw_key(&r->jw, "analyst");
    tw_jw_cstr(&r->jw, analyst);
    tw_jw_key(&r->jw, "note");
    tw_jw_cstr(&r->jw, note ? note : "");
    tw_jw_key(&r->jw, "state");
    tw_jw_cstr(&r->jw, tw_case_state_name(c->state));
    tw_jw_key(&r->jw, "frozen");
    tw_jw_bool(&r->jw, c->frozen);
    record_end(r);
}

static bool has_unfreeze(const tw_respond_t *r)
{
    return r->hook && tw_hook_has_command(r->hook, TW_HOOK_UNFREEZE);
}

char *tw_respond_api_action(tw_respond_t *r, uint64_t token_id, tw_api_action_t a,
                            const char *analyst, const char *note, int64_t now, int *status)
{
    tw_case_t *c = tw_cases_find(r->cases, token_id);
    if (!c) {
        bool tracked = r->det && tw_detect_token(r->det, token_id);
        return api_error(r, tracked ? 409 : 404, status,
                         tracked ? "this token has not been flagged: there is nothing to review"
                                 : "no such token: it is neither tracked nor flagged");
    }
    const char *name = tw_api_action_name(a);
    switch (a) {
    case TW_API_ACK:
        tw_case_log(c, now, "ack", c->state == TW_CASE_CONFIRMED ? TW_CASE_CONFIRMED
                                                                 : TW_CASE_ACKED,
                    analyst, note);
        break;
    case TW_API_UNFREEZE:
        if (!c->frozen || c->unfreeze_pending)
            return api_error(r, 409, status,
                             c->unfreeze_pending ? "an unfreeze of this token is already running"
                                                 : "this token is not frozen");
        if (!has_unfreeze(r))
            return api_error(r, 409, status,
                             "no unfreeze hook is configured (\"unfreeze\": {\"command\": ...})");
        c->freeze_until_ns = 0;
        if (!request_unfreeze(r, c, now, "analyst", analyst, note, TW_CASE_UNFREEZING))
            return api_error(r, 503, status, "the hook queue is full; try again shortly");
        break;
    case TW_API_CONFIRM:
        c->freeze_until_ns = 0;
        tw_case_log(c, now, "confirm", TW_CASE_CONFIRMED, analyst, note);
        if (r->hook && tw_hook_has_command(r->hook, TW_HOOK_FREEZE) && !c->frozen &&
            !c->freeze_pending)
            request_freeze(r, c, now, "analyst_confirmed", analyst, note);
        break;
    case TW_API_DISMISS: {
        /* What each anomaly found unusual becomes normal for this token. */
        for (unsigned i = 0; r->det && i < c->recent_n; i++) {
            const tw_case_anomaly_t *an = tw_case_anomaly_at(c, i);
            if (an)
                tw_detect_learn(r->det, token_id, &an->facts);
        }
        tw_case_log(c, now, "dismiss", TW_CASE_DISMISSED, analyst, note);
        if (c->frozen && !c->unfreeze_pending && has_unfreeze(r))
            request_unfreeze(r, c, now, "dismissed", analyst, note, TW_CASE_DISMISSED);
        break;
    }
    }
    r->dirty = true;
    audit(r, c, now, name, analyst, note);
    tw_jw_reset(&r->body);
    tw_case_item_json(c, &r->body);
    *status = 200;
    return body_take(r);
}
