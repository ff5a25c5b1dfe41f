/*
 * respond.h — what tokenwatch does about a flagged token: the token
 * lifecycle (cases.h), the freeze and unfreeze hooks (hook.h) with their
 * safety rails, and the analyst actions of the API.
 *
 * What it promises (DESIGN.md "Freeze hook", issue 4):
 * - Exactly once per token: a freeze is requested only when the token is not
 *   frozen, has no freeze owed, and is not confirmed; a token that keeps
 *   misbehaving meanwhile gets anomaly events, not more hook calls.
 * - Circuit breaker: at most max_per_minute freezes admitted in any 60 s
 *   (monotonic clock); past it a freeze is not requested (the token stays
 *   flagged), a "freeze_suppressed" record goes to the events file, and
 *   tokenwatch_freeze_circuit_open is 1 until the window holds fewer. Analyst
 *   requests and freezes resumed after a restart bypass it.
 * - Every hook attempt, queue overflow, suppression and analyst action is one
 *   JSON line in the events file ("type": "hook_call", "freeze_suppressed",
 *   "analyst_action"), next to the anomaly events.
 * - Freeze TTL: with ttl_s, a successful freeze is undone by the unfreeze
 *   hook after ttl_s * ttl_increment^(n-1) seconds (n = the token's
 *   successful freezes so far, capped at ttl_max_s); a confirmed token stays
 *   frozen.
 * - The raw token is kept in memory only, and handed to a hook only on its
 *   stdin and only with pass_token. After a restart a freeze that was owed is
 *   submitted again at once without pass_token, or at the token's next use
 *   with it (tw_detect_want), since the raw token was never written down.
 * - The store (state_dir/cases.json) is saved by tw_respond_tick: at once
 *   after a hook outcome (a successful freeze is on disk milliseconds after
 *   its report) and after analyst actions, at most once a second for new
 *   evidence; tw_respond_new refuses a corrupt or newer file.
 *
 * Threading: every function runs on the analysis thread or under the
 * daemon's analysis lock (the HTTP API's calls); the hook runner has its own
 * thread and talks back through tw_respond_wake_fd / tw_respond_tick.
 */
#ifndef TW_RESPOND_H
#define TW_RESPOND_H

#include "api.h"
#include "cases.h"
#include "config.h"
#include "detect.h"
#include "events.h"
#include "metrics.h"

typedef struct tw_respond tw_respond_t;

typedef struct tw_respond_opts {
    const tw_respond_conf_t *conf;  /* copied */
    size_t max_cases;
    const char *cases_path;         /* state_dir/cases.json */
    tw_detect_t *det;               /* borrowed; NULL only in tests without detection */
    tw_events_file_t *events;       /* borrowed; lifecycle records go there */
    tw_metrics_t *metrics;          /* NULL: no metric cells */
} tw_respond_opts_t;

/* Loads the store, starts the hook runner (when the config has a "freeze"
 * section). Returns NULL with err filled when cases.json is unreadable,
 * corrupt or newer, or the hook options are invalid. */
tw_respond_t *tw_respond_new(const tw_respond_opts_t *o, tw_err_t *err);
/* Saves the store if it changed, stops the runner (killing running hooks;
 * owed jobs stay owed in the saved store). NULL-safe. */
void tw_respond_free(tw_respond_t *r);

/* Resubmits what was owed when the process stopped (call once, after the
 * baselines are loaded). */
void tw_respond_resume(tw_respond_t *r);

/* The detector's sink and want callbacks (detect.h). */
void tw_respond_anomaly(tw_respond_t *r, const tw_anomaly_t *a);
void tw_respond_want(tw_respond_t *r, uint64_t token_id, tw_slice_t token);

/* Housekeeping after each read round: hook reports, freeze TTLs, gauges,
 * saving the store when it changed. now_ns is the wall clock. */
void tw_respond_tick(tw_respond_t *r, int64_t now_ns);
/* Readable while hook reports wait (-1 without a runner). */
int tw_respond_wake_fd(const tw_respond_t *r);
/* Saves the store now. */
int tw_respond_save(tw_respond_t *r, tw_err_t *err);

size_t tw_respond_frozen(const tw_respond_t *r);
bool tw_respond_circuit_open(const tw_respond_t *r);
size_t tw_respond_queue_depth(const tw_respond_t *r);
tw_cases_t *tw_respond_cases(tw_respond_t *r);

/* The API's answers (api_contract; exporter/api.h): a malloc'd JSON
 * document and an HTTP status. */
char *tw_respond_api_flagged(tw_respond_t *r, const tw_api_query_t *q, int *status);
char *tw_respond_api_token(tw_respond_t *r, uint64_t token_id, int *status);
char *tw_respond_api_action(tw_respond_t *r, uint64_t token_id, tw_api_action_t a,
                            const char *analyst, const char *note, int64_t now_ns,
                            int *status);

#endif
