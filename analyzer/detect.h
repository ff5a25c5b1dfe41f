/*
 * detect.h — detection rules (rules/NAME.json) and the detector that applies
 * them to every parsed auth event (DESIGN.md "Detection"; docs/detection.md
 * documents every rule, parameter and default).
 *
 * A tw_rules_t is a validated, immutable rules file. A tw_detect_t owns the
 * token and principal tables (tokens.h), the per-source-IP failure tracker
 * and the metric counters; it borrows the rules, the GeoIP handle and the
 * token-id key. tw_detect_event() is the per-event hot path: one keyed hash
 * of the token (the principal's hash is kept in the token's entry), one
 * cached GeoIP lookup, O(1) updates, and no allocation in steady state
 * (the tables allocate a chunk every few thousand new tokens; the event
 * writer grows until it has seen its longest event).
 *
 * Anomalies are delivered as complete JSON lines (events.h) to the sink
 * callback; the line is valid only during the call.
 *
 * Threading: everything runs on the analysis thread, except that the
 * metric cells it publishes are read by the HTTP thread.
 */
#ifndef TW_DETECT_H
#define TW_DETECT_H

#include "baseline.h"
#include "common.h"
#include "format.h"
#include "geo.h"
#include "metrics.h"
#include "tokenid.h"

#define TW_DEFAULT_RULES_FILE "/usr/share/tokenwatch/rules/default.json"
#define TW_RULES_MAX TW_BASELINE_MAX_RULES

typedef enum {
    TW_KIND_RATE = 0,
    TW_KIND_FAILURES,
    TW_KIND_GEO_VELOCITY,
    TW_KIND_GEO_NEW,
    TW_KIND_OFF_HOURS,
    TW_KIND__COUNT
} tw_rule_kind_t;

typedef enum { TW_SEV_LOW = 0, TW_SEV_MEDIUM, TW_SEV_HIGH, TW_SEV_CRITICAL } tw_severity_t;
typedef enum { TW_ACT_FLAG = 0, TW_ACT_FREEZE } tw_action_t;

const char *tw_rule_kind_name(tw_rule_kind_t k);
const char *tw_severity_name(tw_severity_t s);
const char *tw_action_name(tw_action_t a);

/* One rule; only the fields of its kind are meaningful. */
typedef struct tw_rule {
    char *id;
    tw_rule_kind_t kind;
    tw_severity_t severity;
    tw_action_t action;
    uint32_t window_s;          /* rate, failures */
    /* rate */
    double multiplier, sigmas;
    uint32_t min_count, ceiling;
    double alpha;
    /* failures */
    bool scope_ip;
    uint32_t min_rejected, min_distinct_tokens;
    double min_ratio;
    /* geo_velocity */
    double max_kmh, min_km, min_hours, country_level_km;
    /* geo_new */
    bool countries, asns;
    /* off_hours */
    double max_share;
    uint32_t spread_hours, lookback_hours, min_profile;
    bool learned, policy;
} tw_rule_t;

typedef struct tw_cidr {
    tw_geo_addr_t addr;        /* masked */
    uint8_t bits;
} tw_cidr_t;

typedef struct tw_rules {
    char *file;
    uint32_t min_events, min_days, cooldown_s;
    tw_cidr_t *cidrs;
    size_t ncidrs;
    uint64_t *token_ids;       /* sorted */
    size_t ntoken_ids;
    bool has_business_hours;
    char *bh_time_zone;
    uint8_t bh_days;           /* bit d = weekday d (0 = Monday) is a business day */
    uint16_t bh_start_min, bh_end_min;   /* minutes after local midnight, start < end */
    tw_rule_t *rules;
    size_t nrules;
    /* Derived at load: the indices, in file order, of the rules that can
     * fire on an accepted check ([0]: all but failures) and on a rejected
     * one ([1]: rate and failures), so that judging skips the others. */
    uint8_t fires_on[2][TW_RULES_MAX];
    uint8_t nfires_on[2];
} tw_rules_t;

/* Loads and validates a rules file. Errors read "FILE: JSON.PATH: expected
 * ..." (STYLE.md §6). Unknown keys are errors. */
int tw_rules_load(tw_rules_t **out, const char *path, tw_err_t *err);
/* The same from text already in memory; file names the source in errors. */
int tw_rules_parse(tw_rules_t **out, const char *file, const char *text, size_t len,
                   tw_err_t *err);
void tw_rules_free(tw_rules_t *r);   /* NULL-safe */

/* Parses "10.8.0.0/16", "2001:db8::/32" or a bare address (a /32 or /128). */
int tw_cidr_parse(const char *s, tw_cidr_t *out);
bool tw_cidr_contains(const tw_cidr_t *c, const tw_geo_addr_t *a);

typedef struct tw_detect tw_detect_t;

/* What a dismissed anomaly teaches the token's baseline (tw_detect_learn):
 * the parts of the anomaly that the analyst declared normal. */
typedef struct tw_anomaly_facts {
    tw_rule_kind_t kind;
    char country[3];           /* geo_new, geo_velocity (where it went): "" none */
    uint32_t asn;              /* geo_new: 0 none */
    int hour_of_week;          /* off_hours: local hour of week, -1 none */
    int32_t utc_offset_s;      /* off_hours: the offset that hour was computed with */
    uint32_t rate_count;       /* rate: the count that fired, 0 none */
} tw_anomaly_facts_t;

/* One anomaly, as handed to the sink. Every pointer is valid only during the
 * call: line is the JSON object and its '\n' (len bytes); token is the RAW
 * token (a secret: only the freeze hook may see it, on its stdin); user is the
 * event's principal ("" none). */
typedef struct tw_anomaly {
    const char *line;
    size_t len;
    uint64_t token_id;
    tw_slice_t token;
    tw_slice_t user;
    const char *token_hint;
    const tw_rule_t *rule;
    int64_t time_ns;
    const char *input;
    tw_slice_t ip;
    const char *country, *city;  /* "" when unknown */
    tw_anomaly_facts_t facts;
} tw_anomaly_t;

/* Receives each anomaly event. */
typedef void (*tw_detect_sink_fn)(void *ctx, const tw_anomaly_t *a);

/* Called (before any rule judges the event) for an event whose token was
 * marked with tw_detect_want(); the mark is cleared first. token is raw. */
typedef void (*tw_detect_want_fn)(void *ctx, uint64_t token_id, tw_slice_t token);

typedef struct tw_detect_opts {
    const tw_rules_t *rules;     /* borrowed; must outlive the detector or be replaced */
    tw_geo_t *geo;               /* borrowed; NULL disables the geo rules */
    const tw_tokenid_t *key;     /* borrowed */
    size_t max_tokens;           /* token table bound (principals: the same bound) */
    size_t ip_entries;           /* per-IP failure tracker slots; 0 = 65536 */
    const char *zoneinfo_dir;    /* NULL = /usr/share/zoneinfo */
    tw_metrics_t *metrics;       /* NULL: no metric cells (replay) */
    tw_detect_sink_fn sink;
    void *sink_ctx;
    tw_detect_want_fn want;      /* NULL: tw_detect_want() marks are ignored */
} tw_detect_opts_t;

tw_detect_t *tw_detect_new(const tw_detect_opts_t *o);
void tw_detect_free(tw_detect_t *d);   /* NULL-safe */

/* Switches to new rules (SIGHUP) keeping every baseline; registers metric
 * series for new rules. Per-token cooldowns are kept by rule position. */
void tw_detect_set_rules(tw_detect_t *d, const tw_rules_t *rules);

/* The hot path: judges one parsed check of input `input` (a name that
 * outlives the call). */
void tw_detect_event(tw_detect_t *d, const char *input, const tw_event_t *ev);

/* What judging an event needs that depends only on the event, the token-id
 * key and the GeoIP database: the token id and the source address, parsed
 * (geo.addr; family 0: none, or not an address) and, when geo_done,
 * geolocated (the rest of geo). id is 0 when the event will not be judged
 * (no rules, no token). */
typedef struct tw_detect_pre {
    uint64_t id;
    bool geo_done;
    tw_geo_result_t geo;
} tw_detect_pre_t;

/* Fills *out for ev; looks the address up only when geo is true. With
 * "threads": 2 the reader thread calls this for every check it hands over,
 * so that the analysis thread has less to do; geo is true only while the
 * handoff queue says so (tw_handoff_reader_geo), so that one thread at a
 * time uses the detector's GeoIP handle (its cache and counters). Not
 * concurrently with tw_detect_set_rules, tw_detect_set_geo or
 * tw_detect_free. */
void tw_detect_enrich(tw_detect_t *d, const tw_event_t *ev, bool geo, tw_detect_pre_t *out);

/* Judges n events in order, exactly as n tw_detect_event() calls would,
 * but starts the memory loads of each (GeoIP cache and IP tracker sets,
 * token and principal index slots and entries) a few events before it is
 * judged, so that they overlap (detect.c, "prepare"). get fills event i
 * and sets *pre to its tw_detect_enrich() result, or to NULL to have it
 * done here; the slices must stay valid until this returns, and so must
 * *pre when it holds a GeoIP result (geo_done). One without is read at
 * once (its id and geo.addr, before the next get), so it may be scratch. */
typedef void (*tw_detect_get_fn)(void *ctx, size_t i, const char **input, tw_event_t *ev,
                                 const tw_detect_pre_t **pre);
void tw_detect_events(tw_detect_t *d, size_t n, tw_detect_get_fn get, void *ctx);

/* A queue in front of tw_detect_events() for one thread that parses and
 * judges. push queues the event; its token, ip, user and path slices that
 * lie inside line[0, len) are borrowed (the caller keeps those bytes as they
 * are until the next flush: a line buffer's block stays put until it is
 * refilled), the others are copied (a parser's scratch dies at its next
 * line; line NULL copies all). A full queue of TW_DETECT_QUEUE events is
 * judged, or a shorter one when TW_DETECT_QUEUE_BYTES (or the one event's
 * size, if larger) would be exceeded; flush judges what is queued. Until
 * then a pushed event has not been judged: call flush before the borrowed
 * bytes change, at the end of every read round, before reading the
 * detector's state, and before the input name is freed. set_rules, set_geo
 * and clear flush first. */
#define TW_DETECT_QUEUE 128
#define TW_DETECT_QUEUE_BYTES (64 * 1024)
void tw_detect_push(tw_detect_t *d, const char *input, const tw_event_t *ev, const char *line,
                    size_t len);
void tw_detect_flush(tw_detect_t *d);

/* Copies the counters into the metric cells (after each read round). */
void tw_detect_publish(tw_detect_t *d);

typedef struct tw_detect_stats {
    uint64_t events;
    uint64_t anomalies;
    uint64_t tokens_tracked;
    uint64_t tokens_flagged;
    uint64_t tokens_evicted;
    uint64_t principals_tracked;
    uint64_t ips_tracked;
    size_t memory_bytes;         /* token + principal tables + IP tracker */
} tw_detect_stats_t;

void tw_detect_stats(const tw_detect_t *d, tw_detect_stats_t *out);

/* The baseline of a token id, or NULL (tests, the API later). */
const tw_baseline_t *tw_detect_token(tw_detect_t *d, uint64_t token_id);

/* Switches to another GeoIP handle (SIGHUP after the database was replaced),
 * or to none. Every stored location's city and time zone are re-interned in
 * the new handle, so the caller may close the old one as soon as this
 * returns. The geoip_lookups counters continue. O(tracked tokens). */
void tw_detect_set_geo(tw_detect_t *d, tw_geo_t *geo);

/* The rate rule's window in seconds (0 without a rate rule). */
uint32_t tw_detect_rate_window(const tw_detect_t *d);

/* Marks a token so that its next event calls opts.want with the raw token
 * (the freeze hook needs it after a restart, and raw tokens are never
 * written to disk). An untracked token gets a blank entry to carry the mark. */
void tw_detect_want(tw_detect_t *d, uint64_t token_id);

/* Feedback from an analyst's "dismiss": makes what the anomaly found unusual
 * part of the token's baseline (its country/ASN known, its hour of week a
 * usual one, its rate within the learned mean). Returns false when the token
 * is not tracked. */
bool tw_detect_learn(tw_detect_t *d, uint64_t token_id, const tw_anomaly_facts_t *f);

/* ---- access for persistence (persist.h) ---------------------------------
 * Analysis thread only, like everything that touches the tables. */

typedef struct tw_tokens tw_tokens_t;   /* tokens.h */

/* The token and principal tables (owned by d; valid until tw_detect_clear()
 * or tw_detect_free()). Entries hold the token's principal id in aux. */
tw_tokens_t *tw_detect_tokens(tw_detect_t *d);
tw_tokens_t *tw_detect_principals(tw_detect_t *d);
/* The borrowed GeoIP handle, NULL without one: loc.city/time_zone of loaded
 * baselines must be interned there (tw_geo_intern) to compare by pointer. */
tw_geo_t *tw_detect_geo(const tw_detect_t *d);
/* Recomputes the tokens-flagged count from the TW_BL_FLAGGED flags (after
 * baselines were put into the tables from outside, e.g. a load). */
void tw_detect_recount(tw_detect_t *d);
/* Drops every token and principal baseline (new empty tables with the same
 * bounds; pointers into the old ones become invalid) and zeroes the flagged
 * count. Used to leave a detector empty after a failed load. */
void tw_detect_clear(tw_detect_t *d);

#endif
