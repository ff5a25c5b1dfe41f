/*
 * cases.c — see cases.h.
 *
 * The index is open addressing with linear probing over a power-of-two table
 * at most half full, keyed by the token id (a keyed hash, uniformly
 * distributed, so its low bits are the slot); removal shifts the following
 * run back, so there are no tombstones. Cases are individually allocated:
 * they are few (max_cases, default 10,000) and live long.
 */
#include "cases.h"
#include "jsonv.h"
#include "tokenid.h"
#include "timeparse.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const state_names[TW_CASE__COUNT] = {
    "flagged", "freezing", "frozen", "unfreezing", "unfrozen", "acked", "confirmed", "dismissed",
};

const char *tw_case_state_name(tw_case_state_t s)
{
    return (unsigned)s < TW_CASE__COUNT ? state_names[s] : "unknown";
}

int tw_case_state_parse(const char *s)
{
    for (int i = 0; s && i < TW_CASE__COUNT; i++)
        if (strcmp(s, state_names[i]) == 0)
            return i;
    return -1;
}

struct tw_cases {
    size_t max;
    tw_case_t **slots;   /* index */
    size_t mask;
    size_t count;
    uint64_t refused;
};

tw_cases_t *tw_cases_new(size_t max_cases)
{
    tw_cases_t *s = tw_xcalloc(1, sizeof *s);
    s->max = max_cases ? max_cases : 1;
    size_t n = 16;
    while (n < 2 * s->max)
        n *= 2;
    s->slots = tw_xcalloc(n, sizeof *s->slots);
    s->mask = n - 1;
    return s;
}

static void case_free(tw_case_t *c)
{
    for (unsigned i = 0; i < TW_CASE_ANOMALIES; i++)
        free(c->recent[i].json);
    for (unsigned i = 0; i < TW_CASE_HISTORY; i++) {
        free(c->history[i].analyst);
        free(c->history[i].note);
    }
    free(c->job_json);
    if (c->raw)
        memset(c->raw, 0, c->raw_len);
    free(c->raw);
    free(c);
}

void tw_cases_free(tw_cases_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i <= s->mask; i++)
        if (s->slots[i])
            case_free(s->slots[i]);
    free(s->slots);
    free(s);
}

static size_t slot_of(const tw_cases_t *s, uint64_t id)
{
    size_t i = (size_t)id & s->mask;
    while (s->slots[i] && s->slots[i]->token_id != id)
        i = (i + 1) & s->mask;
    return i;
}

tw_case_t *tw_cases_find(tw_cases_t *s, uint64_t token_id)
{
    return s->slots[slot_of(s, token_id)];
}

static void remove_at(tw_cases_t *s, size_t i)
{
    case_free(s->slots[i]);
    s->slots[i] = NULL;
    s->count--;
    /* Backward shift: move every following entry of the run that is not in
     * its home slot's reach back into the hole. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & s->mask;
        if (!s->slots[j])
            return;
        size_t home = (size_t)s->slots[j]->token_id & s->mask;
        bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            s->slots[i] = s->slots[j];
            s->slots[j] = NULL;
            i = j;
        }
    }
}

static bool in_flight(const tw_case_t *c)
{
    return c->frozen || c->freeze_pending || c->unfreeze_pending;
}

/* The case idle the longest among the replaceable ones, or SIZE_MAX. */
static size_t victim(const tw_cases_t *s)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i <= s->mask; i++) {
        const tw_case_t *c = s->slots[i];
        if (c && !in_flight(c) && (best == SIZE_MAX || c->last_ns < s->slots[best]->last_ns))
            best = i;
    }
    return best;
}

tw_case_t *tw_cases_add(tw_cases_t *s, uint64_t token_id, bool *created)
{
    size_t i = slot_of(s, token_id);
    *created = false;
    if (s->slots[i])
        return s->slots[i];
    if (s->count >= s->max) {
        size_t v = victim(s);
        if (v == SIZE_MAX) {
            s->refused++;
            return NULL;
        }
        remove_at(s, v);
        i = slot_of(s, token_id);
    }
    tw_case_t *c = tw_xcalloc(1, sizeof *c);
    c->token_id = token_id;
    c->state = TW_CASE_FLAGGED;
    s->slots[i] = c;
    s->count++;
    *created = true;
    return c;
}

size_t tw_cases_count(const tw_cases_t *s) { return s->count; }
uint64_t tw_cases_refused(const tw_cases_t *s) { return s->refused; }

void tw_cases_each(tw_cases_t *s, bool (*fn)(void *ctx, tw_case_t *c), void *ctx)
{
    for (size_t i = 0; i <= s->mask; i++)
        if (s->slots[i] && !fn(ctx, s->slots[i]))
            return;
}

/* Copies at most cap-1 bytes of src as valid UTF-8: a byte that does not
 * start a well-formed sequence becomes '?', and the copy never ends inside
 * a sequence. So what is stored is exactly what cases.json holds and loads
 * back (log values may be any bytes; the JSON writer would otherwise turn
 * each bad byte into a 3-byte U+FFFD and overflow the field on reload). */
static void copy_str(char *dst, size_t cap, const char *src, size_t n)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t o = 0;
    while (n > 0) {
        size_t k = tw_utf8_seq_len(p, n);
        if (k == 0 || *p == '\0') {
            if (o + 1 >= cap)
                break;
            dst[o++] = '?';
            k = 1;
        } else {
            if (o + k >= cap)
                break;
            memcpy(dst + o, p, k);
            o += k;
        }
        p += k;
        n -= k;
    }
    dst[o] = '\0';
}

static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    while (n > 0) {
        size_t k = tw_utf8_seq_len(p, n);
        if (k == 0)
            return false;
        p += k;
        n -= k;
    }
    return true;
}

static void note_rule(tw_case_t *c, const char *rule)
{
    copy_str(c->rule, sizeof c->rule, rule, strlen(rule));
    for (unsigned i = 0; i < c->nrules; i++)
        if (strcmp(c->rules[i], c->rule) == 0)
            return;
    if (c->nrules == TW_CASE_RULES) {
        memmove(c->rules[0], c->rules[1], sizeof c->rules[0] * (TW_CASE_RULES - 1));
        c->nrules--;
    }
    memcpy(c->rules[c->nrules++], c->rule, sizeof c->rule);
}

void tw_case_note_anomaly(tw_case_t *c, const tw_anomaly_t *a)
{
    size_t len = a->len;
    if (len && a->line[len - 1] == '\n')
        len--;
    tw_case_anomaly_t *r = &c->recent[c->recent_head];
    free(r->json);
    r->json = tw_xmalloc(len + 1);
    memcpy(r->json, a->line, len);
    r->json[len] = '\0';
    r->time_ns = a->time_ns;
    r->severity = (uint8_t)a->rule->severity;
    copy_str(r->rule, sizeof r->rule, a->rule->id, strlen(a->rule->id));
    r->facts = a->facts;
    c->recent_head = (c->recent_head + 1) % TW_CASE_ANOMALIES;
    if (c->recent_n < TW_CASE_ANOMALIES)
        c->recent_n++;

    if (c->anomalies == 0 || a->time_ns < c->first_ns)
        c->first_ns = a->time_ns;
    if (a->time_ns > c->last_ns || c->anomalies == 0)
        c->last_ns = a->time_ns;
    c->anomalies++;
    if ((uint8_t)a->rule->severity > c->severity)
        c->severity = (uint8_t)a->rule->severity;
    note_rule(c, a->rule->id);
    copy_str(c->hint, sizeof c->hint, a->token_hint, strlen(a->token_hint));
    if (a->user.n)
        copy_str(c->principal, sizeof c->principal, a->user.p, a->user.n);
    copy_str(c->ip, sizeof c->ip, a->ip.p, a->ip.n);
    copy_str(c->country, sizeof c->country, a->country, strlen(a->country));
    copy_str(c->city, sizeof c->city, a->city, strlen(a->city));
    copy_str(c->input, sizeof c->input, a->input, strlen(a->input));
}

static char *dup_opt(const char *s)
{
    return s ? tw_xstrdup(s) : NULL;
}

void tw_case_log(tw_case_t *c, int64_t now_ns, const char *action, tw_case_state_t state,
                 const char *analyst, const char *note)
{
    tw_case_entry_t *e = &c->history[c->history_head];
    free(e->analyst);
    free(e->note);
    e->time_ns = now_ns;
    copy_str(e->action, sizeof e->action, action, strlen(action));
    e->state = state;
    e->analyst = dup_opt(analyst);
    e->note = note && note[0] ? tw_xstrdup(note) : NULL;
    c->history_head = (c->history_head + 1) % TW_CASE_HISTORY;
    if (c->history_n < TW_CASE_HISTORY)
        c->history_n++;
    c->state = state;
}

const tw_case_anomaly_t *tw_case_anomaly_at(const tw_case_t *c, unsigned i)
{
    if (i >= c->recent_n)
        return NULL;
    return &c->recent[(c->recent_head + TW_CASE_ANOMALIES - 1 - i) % TW_CASE_ANOMALIES];
}

const tw_case_entry_t *tw_case_entry_at(const tw_case_t *c, unsigned i)
{
    if (i >= c->history_n)
        return NULL;
    return &c->history[(c->history_head + TW_CASE_HISTORY - 1 - i) % TW_CASE_HISTORY];
}

void tw_case_set_job(tw_case_t *c, const char *json, size_t len)
{
    free(c->job_json);
    c->job_json = NULL;
    if (!json)
        return;
    c->job_json = tw_xmalloc(len + 1);
    memcpy(c->job_json, json, len);
    c->job_json[len] = '\0';
}

void tw_case_set_raw(tw_case_t *c, const char *raw, size_t len)
{
    if (!raw)
        return;
    if (c->raw) {
        memset(c->raw, 0, c->raw_len);
        free(c->raw);
    }
    c->raw = tw_xmalloc(len + 1);
    memcpy(c->raw, raw, len);
    c->raw[len] = '\0';
    c->raw_len = len;
}

/* ---- JSON ---------------------------------------------------------------- */

static void put_time(tw_jw_t *w, const char *key, int64_t ns)
{
    char buf[48];
    tw_jw_key(w, key);
    if (ns)
        tw_jw_cstr(w, tw_time_format_rfc3339(ns, buf, sizeof buf));
    else
        tw_jw_null(w);
}


void tw_case_item_json(const tw_case_t *c, tw_jw_t *w)
{
    tw_jw_obj_begin(w);
    tw_jw_key(w, "token_id");
    tw_jw_token_id(w, c->token_id);
    tw_jw_key(w, "token_hint");
    tw_jw_cstr(w, c->hint);
    tw_jw_key(w, "principal");
    if (c->principal[0])
        tw_jw_cstr(w, c->principal);
    else
        tw_jw_null(w);
    tw_jw_key(w, "state");
    tw_jw_cstr(w, tw_case_state_name(c->state));
    tw_jw_key(w, "frozen");
    tw_jw_bool(w, c->frozen);
    tw_jw_key(w, "severity");
    tw_jw_cstr(w, tw_severity_name((tw_severity_t)c->severity));
    tw_jw_key(w, "rule");
    tw_jw_cstr(w, c->rule);
    tw_jw_key(w, "rules");
    tw_jw_arr_begin(w);
    for (unsigned i = 0; i < c->nrules; i++)
        tw_jw_cstr(w, c->rules[i]);
    tw_jw_arr_end(w);
    put_time(w, "first_flagged", c->first_ns);
    put_time(w, "last_anomaly", c->last_ns);
    tw_jw_key(w, "anomalies");
    tw_jw_int(w, c->anomalies);
    tw_jw_key(w, "ip");
    tw_jw_cstr(w, c->ip);
    tw_jw_key(w, "country");
    tw_jw_cstr(w, c->country);
    tw_jw_key(w, "city");
    tw_jw_cstr(w, c->city);
    tw_jw_key(w, "input");
    tw_jw_cstr(w, c->input);
    put_time(w, "freeze_until", c->freeze_until_ns);
    tw_jw_key(w, "freezes");
    tw_jw_int(w, c->freezes);
    tw_jw_obj_end(w);
}

/* ---- persistence ---------------------------------------------------------- */

static void put_ns(tw_jw_t *w, const char *key, int64_t ns)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRId64, ns);
    tw_jw_key(w, key);
    tw_jw_cstr(w, buf);
}

static void put_opt(tw_jw_t *w, const char *key, const char *s)
{
    tw_jw_key(w, key);
    if (s)
        tw_jw_cstr(w, s);
    else
        tw_jw_null(w);
}

static void save_case(tw_jw_t *w, const tw_case_t *c)
{
    tw_jw_obj_begin(w);
    tw_jw_key(w, "token_id");
    tw_jw_token_id(w, c->token_id);
    tw_jw_key(w, "hint");
    tw_jw_cstr(w, c->hint);
    tw_jw_key(w, "principal");
    tw_jw_cstr(w, c->principal);
    tw_jw_key(w, "state");
    tw_jw_cstr(w, tw_case_state_name(c->state));
    tw_jw_key(w, "frozen");
    tw_jw_bool(w, c->frozen);
    tw_jw_key(w, "freeze_pending");
    tw_jw_bool(w, c->freeze_pending);
    tw_jw_key(w, "unfreeze_pending");
    tw_jw_bool(w, c->unfreeze_pending);
    tw_jw_key(w, "severity");
    tw_jw_int(w, c->severity);
    tw_jw_key(w, "anomalies");
    tw_jw_int(w, c->anomalies);
    tw_jw_key(w, "freezes");
    tw_jw_int(w, c->freezes);
    put_ns(w, "first_ns", c->first_ns);
    put_ns(w, "last_ns", c->last_ns);
    put_ns(w, "frozen_at_ns", c->frozen_at_ns);
    put_ns(w, "freeze_until_ns", c->freeze_until_ns);
    tw_jw_key(w, "rules");
    tw_jw_arr_begin(w);
    for (unsigned i = 0; i < c->nrules; i++)
        tw_jw_cstr(w, c->rules[i]);
    tw_jw_arr_end(w);
    tw_jw_key(w, "rule");
    tw_jw_cstr(w, c->rule);
    tw_jw_key(w, "ip");
    tw_jw_cstr(w, c->ip);
    tw_jw_key(w, "country");
    tw_jw_cstr(w, c->country);
    tw_jw_key(w, "city");
    tw_jw_cstr(w, c->city);
    tw_jw_key(w, "input");
    tw_jw_cstr(w, c->input);
    put_opt(w, "job", c->job_json);
    tw_jw_key(w, "recent");
    tw_jw_arr_begin(w);
    for (unsigned i = c->recent_n; i-- > 0;) {   /* oldest first */
        const tw_case_anomaly_t *a =
            &c->recent[(c->recent_head + TW_CASE_ANOMALIES - 1 - i) % TW_CASE_ANOMALIES];
        tw_jw_obj_begin(w);
        tw_jw_key(w, "json");
        tw_jw_cstr(w, a->json);
        put_ns(w, "time_ns", a->time_ns);
        tw_jw_key(w, "severity");
        tw_jw_int(w, a->severity);
        tw_jw_key(w, "rule");
        tw_jw_cstr(w, a->rule);
        tw_jw_key(w, "kind");
        tw_jw_int(w, a->facts.kind);
        tw_jw_key(w, "country");
        tw_jw_cstr(w, a->facts.country);
        tw_jw_key(w, "asn");
        tw_jw_int(w, a->facts.asn);
        tw_jw_key(w, "hour_of_week");
        tw_jw_int(w, a->facts.hour_of_week);
        tw_jw_key(w, "utc_offset_s");
        tw_jw_int(w, a->facts.utc_offset_s);
        tw_jw_key(w, "rate_count");
        tw_jw_int(w, a->facts.rate_count);
        tw_jw_obj_end(w);
    }
    tw_jw_arr_end(w);
    tw_jw_key(w, "history");
    tw_jw_arr_begin(w);
    for (unsigned i = c->history_n; i-- > 0;) {
        const tw_case_entry_t *e =
            &c->history[(c->history_head + TW_CASE_HISTORY - 1 - i) % TW_CASE_HISTORY];
        tw_jw_obj_begin(w);
        put_ns(w, "time_ns", e->time_ns);
        tw_jw_key(w, "action");
        tw_jw_cstr(w, e->action);
        tw_jw_key(w, "state");
        tw_jw_cstr(w, tw_case_state_name(e->state));
        put_opt(w, "analyst", e->analyst);
        put_opt(w, "note", e->note);
        tw_jw_obj_end(w);
    }
    tw_jw_arr_end(w);
    tw_jw_obj_end(w);
}

int tw_cases_save(tw_cases_t *s, const char *path, tw_err_t *err)
{
    tw_jw_t w;
    tw_jw_init(&w);
    tw_jw_obj_begin(&w);
    tw_jw_key(&w, "version");
    tw_jw_int(&w, TW_CASES_VERSION);
    tw_jw_key(&w, "cases");
    tw_jw_arr_begin(&w);
    for (size_t i = 0; i <= s->mask; i++)
        if (s->slots[i])
            save_case(&w, s->slots[i]);
    tw_jw_arr_end(&w);
    tw_jw_obj_end(&w);
    tw_jw_newline(&w);
    int rc = tw_write_file_atomic(path, w.buf, w.len, 0600, err);
    tw_jw_free(&w);
    return rc;
}

/* ---- loading ---------------------------------------------------------------- */

typedef struct loader {
    tw_jv_t jv;
    char p[TW_JV_PATH_MAX];
} loader_t;

static int get_str(loader_t *L, const cJSON *o, const char *prefix, const char *key, char *dst,
                   size_t cap, bool allow_empty)
{
    char p[TW_JV_PATH_MAX];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap ||
        (!allow_empty && !v->valuestring[0]) || !valid_utf8(v->valuestring))
        return tw_jv_fail(&L->jv, tw_jv_join(p, prefix, key),
                          "expected a UTF-8 string of %s1 to %zu bytes",
                          allow_empty ? "0 or " : "", cap - 1);
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static int get_ns(loader_t *L, const cJSON *o, const char *prefix, const char *key, int64_t *out)
{
    char p[TW_JV_PATH_MAX];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    char *end = NULL;
    long long x = 0;
    if (cJSON_IsString(v) && v->valuestring[0]) {
        errno = 0;
        x = strtoll(v->valuestring, &end, 10);
    }
    if (!end || *end || errno || x < 0)
        return tw_jv_fail(&L->jv, tw_jv_join(p, prefix, key),
                          "expected a string of decimal digits (nanoseconds)");
    *out = x;
    return 0;
}

static int get_state(loader_t *L, const cJSON *o, const char *prefix, tw_case_state_t *out)
{
    char p[TW_JV_PATH_MAX], buf[16];
    if (get_str(L, o, prefix, "state", buf, sizeof buf, false) != 0)
        return -1;
    int st = tw_case_state_parse(buf);
    if (st < 0)
        return tw_jv_fail(&L->jv, tw_jv_join(p, prefix, "state"),
                          "expected a case state (flagged, freezing, frozen, ...), got \"%s\"",
                          buf);
    *out = (tw_case_state_t)st;
    return 0;
}

static int get_opt_dup(loader_t *L, const cJSON *o, const char *prefix, const char *key,
                       size_t max, char **out)
{
    char p[TW_JV_PATH_MAX];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || strlen(v->valuestring) > max || !valid_utf8(v->valuestring))
        return tw_jv_fail(&L->jv, tw_jv_join(p, prefix, key),
                          "expected null or a UTF-8 string of at most %zu bytes", max);
    *out = tw_xstrdup(v->valuestring);
    return 0;
}


static const char *const case_fields[] = {
    "token_id", "hint",  "principal", "state",   "frozen",   "freeze_pending", "unfreeze_pending",
    "severity", "anomalies", "freezes", "first_ns", "last_ns", "frozen_at_ns", "freeze_until_ns",
    "rules",    "rule",  "ip",        "country", "city",     "input",          "job",
    "recent",   "history", NULL};
static const char *const recent_fields[] = {"json", "time_ns",  "severity", "rule",
                                          "kind", "country",  "asn",      "hour_of_week",
                                          "utc_offset_s", "rate_count", NULL};
static const char *const history_fields[] = {"time_ns", "action", "state", "analyst", "note",
                                           NULL};

static int load_recent(loader_t *L, const cJSON *arr, const char *prefix, tw_case_t *c)
{
    char p[TW_JV_PATH_MAX], q[TW_JV_PATH_MAX];
    tw_jv_join(p, prefix, "recent");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > TW_CASE_ANOMALIES)
        return tw_jv_fail(&L->jv, p, "expected an array of at most %d anomalies",
                          TW_CASE_ANOMALIES);
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        tw_jv_index(q, p, i);
        long long sev, kind, asn, how, off, rate;
        if (tw_jv_object(&L->jv, e, q, recent_fields) ||
            tw_jv_int(&L->jv, e, q, "severity", 0, 3, 0, &sev) ||
            tw_jv_int(&L->jv, e, q, "kind", 0, TW_KIND__COUNT - 1, 0, &kind) ||
            tw_jv_int(&L->jv, e, q, "asn", 0, UINT32_MAX, 0, &asn) ||
            tw_jv_int(&L->jv, e, q, "hour_of_week", -1, TW_BASELINE_HOURS - 1, -1, &how) ||
            tw_jv_int(&L->jv, e, q, "utc_offset_s", -86400, 86400, 0, &off) ||
            tw_jv_int(&L->jv, e, q, "rate_count", 0, UINT32_MAX, 0, &rate))
            return -1;
        tw_case_anomaly_t *a = &c->recent[c->recent_head];
        if (get_str(L, e, q, "rule", a->rule, sizeof a->rule, false) ||
            get_str(L, e, q, "country", a->facts.country, sizeof a->facts.country, true) ||
            get_ns(L, e, q, "time_ns", &a->time_ns) ||
            get_opt_dup(L, e, q, "json", 1 << 20, &a->json))
            return -1;
        if (!a->json)
            return tw_jv_fail(&L->jv, tw_jv_join(p, q, "json"), "expected the event line");
        a->severity = (uint8_t)sev;
        a->facts.kind = (tw_rule_kind_t)kind;
        a->facts.asn = (uint32_t)asn;
        a->facts.hour_of_week = (int)how;
        a->facts.utc_offset_s = (int32_t)off;
        a->facts.rate_count = (uint32_t)rate;
        c->recent_head = (c->recent_head + 1) % TW_CASE_ANOMALIES;
        c->recent_n++;
    }
    return 0;
}

static int load_history(loader_t *L, const cJSON *arr, const char *prefix, tw_case_t *c)
{
    char p[TW_JV_PATH_MAX], q[TW_JV_PATH_MAX];
    tw_jv_join(p, prefix, "history");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > TW_CASE_HISTORY)
        return tw_jv_fail(&L->jv, p, "expected an array of at most %d entries", TW_CASE_HISTORY);
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        tw_jv_index(q, p, i);
        tw_case_entry_t *h = &c->history[c->history_head];
        if (tw_jv_object(&L->jv, e, q, history_fields) ||
            get_ns(L, e, q, "time_ns", &h->time_ns) ||
            get_str(L, e, q, "action", h->action, sizeof h->action, false) ||
            get_state(L, e, q, &h->state) ||
            get_opt_dup(L, e, q, "analyst", 64, &h->analyst) ||
            get_opt_dup(L, e, q, "note", 4000, &h->note))
            return -1;
        c->history_head = (c->history_head + 1) % TW_CASE_HISTORY;
        c->history_n++;
    }
    return 0;
}

static int load_case(loader_t *L, const cJSON *e, const char *q, tw_case_t *c)
{
    char p[TW_JV_PATH_MAX], id[24];
    long long sev, anomalies, freezes;
    if (tw_jv_object(&L->jv, e, q, case_fields) ||
        get_str(L, e, q, "token_id", id, sizeof id, false))
        return -1;
    if (tw_tokenid_parse(id, strlen(id), &c->token_id) != 0)
        return tw_jv_fail(&L->jv, tw_jv_join(p, q, "token_id"),
                          "expected \"tw_\" and 16 lowercase hex digits");
    if (get_str(L, e, q, "hint", c->hint, sizeof c->hint, true) ||
        get_str(L, e, q, "principal", c->principal, sizeof c->principal, true) ||
        get_state(L, e, q, &c->state) ||
        tw_jv_bool(&L->jv, e, q, "frozen", false, &c->frozen) ||
        tw_jv_bool(&L->jv, e, q, "freeze_pending", false, &c->freeze_pending) ||
        tw_jv_bool(&L->jv, e, q, "unfreeze_pending", false, &c->unfreeze_pending) ||
        tw_jv_int(&L->jv, e, q, "severity", 0, 3, 0, &sev) ||
        tw_jv_int(&L->jv, e, q, "anomalies", 0, UINT32_MAX, 0, &anomalies) ||
        tw_jv_int(&L->jv, e, q, "freezes", 0, UINT32_MAX, 0, &freezes) ||
        get_ns(L, e, q, "first_ns", &c->first_ns) || get_ns(L, e, q, "last_ns", &c->last_ns) ||
        get_ns(L, e, q, "frozen_at_ns", &c->frozen_at_ns) ||
        get_ns(L, e, q, "freeze_until_ns", &c->freeze_until_ns) ||
        get_str(L, e, q, "rule", c->rule, sizeof c->rule, true) ||
        get_str(L, e, q, "ip", c->ip, sizeof c->ip, true) ||
        get_str(L, e, q, "country", c->country, sizeof c->country, true) ||
        get_str(L, e, q, "city", c->city, sizeof c->city, true) ||
        get_str(L, e, q, "input", c->input, sizeof c->input, true) ||
        get_opt_dup(L, e, q, "job", 1 << 20, &c->job_json))
        return -1;
    c->severity = (uint8_t)sev;
    c->anomalies = (uint32_t)anomalies;
    c->freezes = (uint32_t)freezes;
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(e, "rules");
    if (!cJSON_IsArray(rules) || cJSON_GetArraySize(rules) > TW_CASE_RULES)
        return tw_jv_fail(&L->jv, tw_jv_join(p, q, "rules"),
                          "expected an array of at most %d rule ids", TW_CASE_RULES);
    for (const cJSON *r = rules->child; r; r = r->next) {
        if (!cJSON_IsString(r) || !r->valuestring[0] || strlen(r->valuestring) >= 64 ||
            !valid_utf8(r->valuestring))
            return tw_jv_fail(&L->jv, tw_jv_join(p, q, "rules"),
                              "expected rule ids (UTF-8 strings of 1 to 63 bytes)");
        memcpy(c->rules[c->nrules++], r->valuestring, strlen(r->valuestring) + 1);
    }
    return load_recent(L, cJSON_GetObjectItemCaseSensitive(e, "recent"), q, c) ||
           load_history(L, cJSON_GetObjectItemCaseSensitive(e, "history"), q, c);
}

int tw_cases_load(tw_cases_t *s, const char *path, tw_err_t *err)
{
    char *text;
    size_t len;
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return 1;
    if (tw_read_file(path, &text, &len, err) != 0)
        return -1;
    loader_t L = {.jv = {.file = path, .err = err}};
    cJSON *root;
    int rc = tw_jv_parse(&L.jv, text, len, &root);
    free(text);
    if (rc != 0)
        return -1;
    static const char *const top[] = {"version", "cases", NULL};
    long long version;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "cases");
    rc = -1;
    if (tw_jv_object(&L.jv, root, "", top) != 0 ||
        tw_jv_int(&L.jv, root, "", "version", 1, INT32_MAX, 0, &version) != 0)
        goto out;
    if (version > TW_CASES_VERSION) {
        /* The daemon adds how to start afresh (--discard-state). */
        tw_err_set(err, "%s: written by a newer tokenwatch (version %lld, this build reads up "
                        "to %d)",
                   path, version, TW_CASES_VERSION);
        goto out;
    }
    if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) > s->max) {
        tw_jv_fail(&L.jv, "cases", "expected an array of at most max_cases (%zu) cases",
                   s->max);
        goto out;
    }
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char q[TW_JV_PATH_MAX];
        tw_jv_index(q, "cases", i);
        tw_case_t *c = tw_xcalloc(1, sizeof *c);
        if (load_case(&L, e, q, c) != 0) {
            case_free(c);
            goto out;
        }
        size_t slot = slot_of(s, c->token_id);
        if (s->slots[slot]) {
            case_free(c);
            tw_jv_fail(&L.jv, q, "expected each token_id once");
            goto out;
        }
        s->slots[slot] = c;
        s->count++;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc != 0) {
        for (size_t k = 0; k <= s->mask; k++)
            if (s->slots[k]) {
                case_free(s->slots[k]);
                s->slots[k] = NULL;
            }
        s->count = 0;
    }
    return rc;
}
