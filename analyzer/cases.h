/*
 * cases.h — the flagged/frozen store: one case per token that a rule has
 * flagged, with its lifecycle state, its recent anomalies (the evidence an
 * analyst reviews), and its history (lifecycle changes and analyst actions).
 *
 * What it promises:
 * - At most max_cases cases. When full, a new case replaces the case idle the
 *   longest among those with nothing in flight (not frozen, no freeze or
 *   unfreeze pending); when every case is frozen or pending, the new one is
 *   refused (tw_cases_add returns NULL, the caller counts it).
 * - A case keeps its last TW_CASE_ANOMALIES anomaly events (exact JSON lines)
 *   and its last TW_CASE_HISTORY history entries.
 * - The raw token (raw, raw_len) lives in memory only: tw_cases_save never
 *   writes it, so after a restart it is known again only when the token is
 *   next seen.
 * - tw_cases_save writes state_dir/cases.json atomically (temp, fsync,
 *   rename) with a "version"; tw_cases_load refuses a newer version or a
 *   malformed file with "PATH: JSON.PATH: expected ...", never half-loads.
 *
 * Threading: a store belongs to one thread at a time; the daemon guards it
 * with its analysis lock (the HTTP API reads it under the same lock).
 */
#ifndef TW_CASES_H
#define TW_CASES_H

#include "common.h"
#include "detect.h"
#include "events.h"

#include <stdbool.h>
#include <stdint.h>

#define TW_CASES_VERSION 1
#define TW_CASES_FILE "cases.json"
#define TW_CASE_ANOMALIES 10
#define TW_CASE_HISTORY 32
#define TW_CASE_RULES 8

typedef enum {
    TW_CASE_FLAGGED = 0,   /* a rule fired; nothing else happened yet */
    TW_CASE_FREEZING,      /* a freeze is queued, running or waiting for a retry */
    TW_CASE_FROZEN,        /* the freeze hook succeeded */
    TW_CASE_UNFREEZING,    /* an unfreeze is queued, running or retrying */
    TW_CASE_UNFROZEN,      /* the unfreeze hook succeeded */
    TW_CASE_ACKED,         /* an analyst reviewed it and left it as it is */
    TW_CASE_CONFIRMED,     /* an analyst confirmed the compromise */
    TW_CASE_DISMISSED,     /* an analyst declared it a false positive */
    TW_CASE__COUNT
} tw_case_state_t;

const char *tw_case_state_name(tw_case_state_t s);
/* -1 when s names no state. */
int tw_case_state_parse(const char *s);

typedef struct tw_case_anomaly {
    char *json;                /* the event line without its '\n'; owned */
    int64_t time_ns;
    uint8_t severity;          /* tw_severity_t */
    char rule[64];
    tw_anomaly_facts_t facts;
} tw_case_anomaly_t;

typedef struct tw_case_entry {
    int64_t time_ns;           /* wall clock */
    char action[24];           /* "flagged", "freeze", "freeze_failed", "ack", ... */
    tw_case_state_t state;     /* the state after it */
    char *analyst;             /* owned; NULL for tokenwatch's own changes */
    char *note;                /* owned; NULL when none */
} tw_case_entry_t;

typedef struct tw_case {
    uint64_t token_id;
    char hint[32];
    char principal[65];        /* "" when the format gives none */
    tw_case_state_t state;
    bool frozen;               /* frozen now in the system the hook talks to */
    bool freeze_pending;       /* a freeze job is owed (queued, running, retrying,
                                  or waiting for the raw token after a restart) */
    bool unfreeze_pending;
    uint8_t severity;          /* highest so far (tw_severity_t) */
    uint32_t anomalies;        /* anomaly events in all */
    uint32_t freezes;          /* successful freezes (escalates the freeze TTL) */
    int64_t first_ns, last_ns; /* event time of the first and latest anomaly */
    int64_t frozen_at_ns;      /* wall clock of the last successful freeze, 0 none */
    int64_t freeze_until_ns;   /* wall clock of the automatic unfreeze, 0 none */
    char rule[64];             /* latest rule */
    char rules[TW_CASE_RULES][64];   /* distinct rules seen, oldest first */
    unsigned nrules;
    char ip[64], country[3], city[96], input[65];   /* of the latest anomaly */
    char *job_json;            /* stdin of the owed hook call, without "token"; owned */
    char *raw;                 /* the raw token, memory only; owned; NULL unknown */
    size_t raw_len;
    tw_case_anomaly_t recent[TW_CASE_ANOMALIES];   /* ring, newest at recent_head-1 */
    unsigned recent_head, recent_n;
    tw_case_entry_t history[TW_CASE_HISTORY];       /* ring */
    unsigned history_head, history_n;
} tw_case_t;

typedef struct tw_cases tw_cases_t;

tw_cases_t *tw_cases_new(size_t max_cases);
void tw_cases_free(tw_cases_t *s);   /* NULL-safe */

tw_case_t *tw_cases_find(tw_cases_t *s, uint64_t token_id);
/* Finds or creates the case of token_id (state FLAGGED, *created = true).
 * NULL when the store is full of cases that cannot be replaced. */
tw_case_t *tw_cases_add(tw_cases_t *s, uint64_t token_id, bool *created);
size_t tw_cases_count(const tw_cases_t *s);
uint64_t tw_cases_refused(const tw_cases_t *s);
/* Visits every case (no particular order); stops when fn returns false. */
void tw_cases_each(tw_cases_t *s, bool (*fn)(void *ctx, tw_case_t *c), void *ctx);

/* Appends an anomaly to the case's evidence ring (copies line[0..len),
 * dropping a final '\n') and updates severity, counts, rule, place. */
void tw_case_note_anomaly(tw_case_t *c, const tw_anomaly_t *a);
/* Appends a history entry (analyst and note may be NULL) and sets state. */
void tw_case_log(tw_case_t *c, int64_t now_ns, const char *action, tw_case_state_t state,
                 const char *analyst, const char *note);
/* The i-th most recent anomaly (0 = newest), NULL past the end. */
const tw_case_anomaly_t *tw_case_anomaly_at(const tw_case_t *c, unsigned i);
const tw_case_entry_t *tw_case_entry_at(const tw_case_t *c, unsigned i);
/* Replaces the owed job's stdin (NULL clears) and the raw token (NULL keeps
 * the current one). */
void tw_case_set_job(tw_case_t *c, const char *json, size_t len);
void tw_case_set_raw(tw_case_t *c, const char *raw, size_t len);

/* Writes the list item of the API (api_contract: ITEM) as one object. */
void tw_case_item_json(const tw_case_t *c, tw_jw_t *w);

int tw_cases_save(tw_cases_t *s, const char *path, tw_err_t *err);
/* Loads path into an empty store. A missing file returns 1 (nothing
 * loaded). Returns -1 with err on a malformed, newer or oversized file. */
int tw_cases_load(tw_cases_t *s, const char *path, tw_err_t *err);

#endif
