/*
 * detect.c — see detect.h. Two halves: the rules file (parse + validate)
 * and the detector (state updates + rule evaluation per event).
 *
 * Order of work for one event (tw_detect_event):
 *   1. token id (SipHash), GeoIP lookup (cached), allowlist checks;
 *   2. token entry (created cold when its first check is rejected), and the
 *      principal entry when the token has one;
 *   3. counts that every check feeds: rate window, token failure window,
 *      the source IP's failure window;
 *   4. rules, in file order, each judged against the state *before* this
 *      event's location/country/hour is learned; per-token cooldowns;
 *   5. learning: location, countries, ASNs, hour-of-week profile — from
 *      accepted checks only, and location/countries not from allowlisted
 *      networks (a VPN egress is not where the person is).
 */
#include "detect.h"
#include "events.h"
#include "jsonv.h"
#include "timeparse.h"
#include "tokens.h"
#include "tz.h"

#include <ctype.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000LL

/* ======================================================================
 * Names
 * ====================================================================== */

static const char *const kind_names[TW_KIND__COUNT] = {"rate", "failures", "geo_velocity",
                                                       "geo_new", "off_hours"};
static const char *const sev_names[] = {"low", "medium", "high", "critical"};
static const char *const act_names[] = {"flag", "freeze"};

const char *tw_rule_kind_name(tw_rule_kind_t k)
{
    return (unsigned)k < TW_KIND__COUNT ? kind_names[k] : "unknown";
}
const char *tw_severity_name(tw_severity_t s) { return (unsigned)s < 4 ? sev_names[s] : "unknown"; }
const char *tw_action_name(tw_action_t a) { return (unsigned)a < 2 ? act_names[a] : "unknown"; }

/* ======================================================================
 * CIDRs
 * ====================================================================== */

static void mask_addr(tw_geo_addr_t *a, unsigned bits)
{
    unsigned total = a->family == 4 ? 32 : 128;
    for (unsigned i = 0; i < total / 8; i++) {
        unsigned lo = i * 8;
        if (bits >= lo + 8)
            continue;
        if (bits <= lo)
            a->bytes[i] = 0;
        else
            a->bytes[i] &= (uint8_t)(0xFF << (8 - (bits - lo)));
    }
}

int tw_cidr_parse(const char *s, tw_cidr_t *out)
{
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    memset(out, 0, sizeof *out);
    if (tw_geo_addr_parse(s, n, &out->addr) != 0)
        return -1;
    unsigned max = out->addr.family == 4 ? 32 : 128;
    unsigned bits = max;
    if (slash) {
        const char *p = slash + 1;
        if (!*p || strlen(p) > 3)
            return -1;
        bits = 0;
        for (; *p; p++) {
            if (!isdigit((unsigned char)*p))
                return -1;
            bits = bits * 10 + (unsigned)(*p - '0');
        }
        /* "::ffff:10.0.0.0/104" is an IPv4 range written as IPv6. */
        if (out->addr.family == 4 && memchr(s, ':', n)) {
            if (bits < 96)
                return -1;
            bits -= 96;
        }
        if (bits > max)
            return -1;
    }
    out->bits = (uint8_t)bits;
    mask_addr(&out->addr, bits);
    return 0;
}

bool tw_cidr_contains(const tw_cidr_t *c, const tw_geo_addr_t *a)
{
    return a->family == c->addr.family && tw_geo_addr_same_prefix(&c->addr, a, c->bits);
}

/* ======================================================================
 * Rules file
 * ====================================================================== */

static const char *const top_keys[] = {"description", "learning", "cooldown_s", "allowlist",
                                       "business_hours", "rules", NULL};
static const char *const learning_keys[] = {"min_events", "min_days", NULL};
static const char *const allow_keys[] = {"cidrs", "token_ids", NULL};
static const char *const bh_keys[] = {"time_zone", "days", "start", "end", NULL};
static const char *const rate_keys[] = {"id", "kind", "severity", "action", "description",
                                        "window_s", "multiplier", "sigmas", "min_count",
                                        "ceiling", "alpha", NULL};
static const char *const fail_keys[] = {"id", "kind", "severity", "action", "description",
                                        "scope", "window_s", "min_rejected", "min_ratio",
                                        "min_distinct_tokens", NULL};
static const char *const vel_keys[] = {"id", "kind", "severity", "action", "description",
                                       "max_kmh", "min_km", "epsilon_s", "country_level_km",
                                       NULL};
static const char *const new_keys[] = {"id", "kind", "severity", "action", "description",
                                       "countries", "asns", NULL};
static const char *const off_keys[] = {"id", "kind", "severity", "action", "description",
                                       "max_share", "spread_hours", "lookback_hours",
                                       "min_profile",
                                       "learned", "policy", NULL};
static const char *const *const kind_keys[TW_KIND__COUNT] = {rate_keys, fail_keys, vel_keys,
                                                             new_keys, off_keys};

/* A number member in [min, max]. */
static int jv_num(const tw_jv_t *jv, const cJSON *obj, const char *prefix, const char *key,
                  double min, double max, double def, double *out)
{
    char p[TW_JV_PATH_MAX];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max)
        return tw_jv_fail(jv, tw_jv_join(p, prefix, key), "expected a number from %g to %g",
                          min, max);
    *out = v->valuedouble;
    return 0;
}

static int jv_u32(const tw_jv_t *jv, const cJSON *obj, const char *prefix, const char *key,
                  long long min, long long max, long long def, uint32_t *out)
{
    long long v;
    if (tw_jv_int(jv, obj, prefix, key, min, max, def, &v) != 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int pick(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return (int)i;
    return -1;
}

static bool valid_rule_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

static int parse_hhmm(const char *s, uint16_t *out)
{
    if (strlen(s) != 5 || s[2] != ':' || !isdigit((unsigned char)s[0]) ||
        !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[3]) ||
        !isdigit((unsigned char)s[4]))
        return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (m > 59 || h > 24 || (h == 24 && m != 0))
        return -1;
    *out = (uint16_t)(h * 60 + m);
    return 0;
}

static const char *const day_names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

/* "mon-fri", "sat,sun", "mon-wed,fri" → bit mask (bit 0 = Monday). */
static int parse_days(const char *s, uint8_t *out)
{
    uint8_t m = 0;
    const char *p = s;
    for (;;) {
        if (strlen(p) < 3)
            return -1;
        char a[4] = {p[0], p[1], p[2], 0};
        int d1 = pick(a, day_names, 7), d2 = d1;
        p += 3;
        if (*p == '-') {
            if (strlen(p + 1) < 3)
                return -1;
            char b[4] = {p[1], p[2], p[3], 0};
            d2 = pick(b, day_names, 7);
            p += 4;
        }
        if (d1 < 0 || d2 < 0 || d2 < d1)
            return -1;
        for (int d = d1; d <= d2; d++)
            m |= (uint8_t)(1u << d);
        if (*p == '\0')
            break;
        if (*p != ',')
            return -1;
        p++;
    }
    *out = m;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int load_allowlist(const tw_jv_t *jv, const cJSON *root, tw_rules_t *r)
{
    const cJSON *al;
    if (tw_jv_get_object(jv, root, "", "allowlist", allow_keys, &al) != 0)
        return -1;
    if (!al)
        return 0;
    char p[TW_JV_PATH_MAX];
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(al, "cidrs");
    if (c) {
        if (!cJSON_IsArray(c))
            return tw_jv_fail(jv, "allowlist.cidrs", "expected an array of CIDR strings");
        r->cidrs = tw_xcalloc((size_t)cJSON_GetArraySize(c) + 1, sizeof *r->cidrs);
        size_t i = 0;
        for (const cJSON *e = c->child; e; e = e->next, i++) {
            tw_jv_index(p, "allowlist.cidrs", i);
            if (!cJSON_IsString(e) || tw_cidr_parse(e->valuestring, &r->cidrs[i]) != 0)
                return tw_jv_fail(jv, p,
                                  "expected a CIDR such as \"10.8.0.0/16\" or \"2001:db8::/32\"");
            r->ncidrs = i + 1;
        }
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(al, "token_ids");
    if (t) {
        if (!cJSON_IsArray(t))
            return tw_jv_fail(jv, "allowlist.token_ids", "expected an array of token ids");
        r->token_ids = tw_xcalloc((size_t)cJSON_GetArraySize(t) + 1, sizeof *r->token_ids);
        size_t i = 0;
        for (const cJSON *e = t->child; e; e = e->next, i++) {
            tw_jv_index(p, "allowlist.token_ids", i);
            if (!cJSON_IsString(e) ||
                tw_tokenid_parse(e->valuestring, strlen(e->valuestring), &r->token_ids[i]) != 0)
                return tw_jv_fail(jv, p,
                                  "expected a token id: \"tw_\" and 16 lowercase hex digits");
            r->ntoken_ids = i + 1;
        }
        qsort(r->token_ids, r->ntoken_ids, sizeof *r->token_ids, cmp_u64);
    }
    return 0;
}

static int load_business_hours(const tw_jv_t *jv, const cJSON *root, tw_rules_t *r)
{
    const cJSON *bh;
    if (tw_jv_get_object(jv, root, "", "business_hours", bh_keys, &bh) != 0)
        return -1;
    if (!bh)
        return 0;
    const char *tz, *days, *start, *end;
    if (tw_jv_string(jv, bh, "business_hours", "time_zone", true, NULL, &tz) ||
        tw_jv_string(jv, bh, "business_hours", "days", false, "mon-fri", &days) ||
        tw_jv_string(jv, bh, "business_hours", "start", true, NULL, &start) ||
        tw_jv_string(jv, bh, "business_hours", "end", true, NULL, &end))
        return -1;
    tw_err_t e;
    if (tw_tz_check(NULL, tz, &e) != 0)
        return tw_jv_fail(jv, "business_hours.time_zone", "%s", e.msg);
    if (parse_days(days, &r->bh_days) != 0)
        return tw_jv_fail(jv, "business_hours.days",
                          "expected days such as \"mon-fri\" or \"mon-thu,sat\", got \"%s\"",
                          days);
    if (parse_hhmm(start, &r->bh_start_min) != 0)
        return tw_jv_fail(jv, "business_hours.start", "expected \"HH:MM\" (00:00-24:00), got \"%s\"",
                          start);
    if (parse_hhmm(end, &r->bh_end_min) != 0 || r->bh_end_min <= r->bh_start_min)
        return tw_jv_fail(jv, "business_hours.end",
                          "expected \"HH:MM\" after start (windows do not span midnight), "
                          "got \"%s\"",
                          end);
    r->bh_time_zone = tw_xstrdup(tz);
    r->has_business_hours = true;
    return 0;
}

static int load_rule(const tw_jv_t *jv, const cJSON *e, const char *p, tw_rules_t *rs,
                     tw_rule_t *r)
{
    char q[TW_JV_PATH_MAX];
    if (!cJSON_IsObject(e))
        return tw_jv_fail(jv, p, "expected a rule object");
    const char *id, *kind, *sev, *act;
    if (tw_jv_string(jv, e, p, "id", true, NULL, &id) ||
        tw_jv_string(jv, e, p, "kind", true, NULL, &kind))
        return -1;
    if (!valid_rule_id(id))
        return tw_jv_fail(jv, tw_jv_join(q, p, "id"),
                          "expected 1 to 64 characters from [A-Za-z0-9_.-], got \"%s\"", id);
    for (size_t j = 0; j < rs->nrules; j++)
        if (strcmp(rs->rules[j].id, id) == 0)
            return tw_jv_fail(jv, tw_jv_join(q, p, "id"),
                              "expected a unique id, \"%s\" is also rules[%zu].id", id, j);
    int k = pick(kind, kind_names, TW_KIND__COUNT);
    if (k < 0)
        return tw_jv_fail(jv, tw_jv_join(q, p, "kind"),
                          "expected \"rate\", \"failures\", \"geo_velocity\", \"geo_new\" or "
                          "\"off_hours\", got \"%s\"",
                          kind);
    if (tw_jv_object(jv, e, p, kind_keys[k]) != 0)
        return -1;
    if (tw_jv_string(jv, e, p, "severity", true, NULL, &sev) ||
        tw_jv_string(jv, e, p, "action", false, "flag", &act))
        return -1;
    int s = pick(sev, sev_names, 4), a = pick(act, act_names, 2);
    if (s < 0)
        return tw_jv_fail(jv, tw_jv_join(q, p, "severity"),
                          "expected \"low\", \"medium\", \"high\" or \"critical\", got \"%s\"",
                          sev);
    if (a < 0)
        return tw_jv_fail(jv, tw_jv_join(q, p, "action"),
                          "expected \"flag\" or \"freeze\", got \"%s\"", act);
    r->kind = (tw_rule_kind_t)k;
    r->severity = (tw_severity_t)s;
    r->action = (tw_action_t)a;
    switch (r->kind) {
    case TW_KIND_RATE:
        if (jv_u32(jv, e, p, "window_s", 10, 3600, 60, &r->window_s) ||
            jv_num(jv, e, p, "multiplier", 1, 1e6, 10, &r->multiplier) ||
            jv_num(jv, e, p, "sigmas", 0, 1e3, 6, &r->sigmas) ||
            jv_u32(jv, e, p, "min_count", 1, 100000000, 30, &r->min_count) ||
            jv_u32(jv, e, p, "ceiling", 1, 100000000, 600, &r->ceiling) ||
            jv_num(jv, e, p, "alpha", 0.001, 1, 0.05, &r->alpha))
            return -1;
        break;
    case TW_KIND_FAILURES: {
        const char *scope;
        if (tw_jv_string(jv, e, p, "scope", false, "token", &scope))
            return -1;
        if (strcmp(scope, "token") != 0 && strcmp(scope, "ip") != 0)
            return tw_jv_fail(jv, tw_jv_join(q, p, "scope"),
                              "expected \"token\" or \"ip\", got \"%s\"", scope);
        r->scope_ip = strcmp(scope, "ip") == 0;
        if (!r->scope_ip && cJSON_GetObjectItemCaseSensitive(e, "min_distinct_tokens"))
            return tw_jv_fail(jv, tw_jv_join(q, p, "min_distinct_tokens"),
                              "expected no min_distinct_tokens with scope \"token\"");
        if (jv_u32(jv, e, p, "window_s", 10, 86400, r->scope_ip ? 600 : 300, &r->window_s) ||
            jv_u32(jv, e, p, "min_rejected", 1, 65535, r->scope_ip ? 30 : 20,
                   &r->min_rejected) ||
            jv_num(jv, e, p, "min_ratio", 0, 1, r->scope_ip ? 0 : 0.5, &r->min_ratio) ||
            jv_u32(jv, e, p, "min_distinct_tokens", 1, 200, 5, &r->min_distinct_tokens))
            return -1;
        break;
    }
    case TW_KIND_GEO_VELOCITY: {
        double eps = 60;
        if (jv_num(jv, e, p, "max_kmh", 1, 1e6, 900, &r->max_kmh) ||
            jv_num(jv, e, p, "min_km", 0, 20000, 100, &r->min_km) ||
            jv_num(jv, e, p, "epsilon_s", 1, 86400, 60, &eps) ||
            jv_num(jv, e, p, "country_level_km", 0, 20000, 500, &r->country_level_km))
            return -1;
        r->min_hours = eps / 3600.0;
        break;
    }
    case TW_KIND_GEO_NEW:
        if (tw_jv_bool(jv, e, p, "countries", true, &r->countries) ||
            tw_jv_bool(jv, e, p, "asns", false, &r->asns))
            return -1;
        if (!r->countries && !r->asns)
            return tw_jv_fail(jv, tw_jv_join(q, p, "countries"),
                              "expected countries or asns (or both) to be true");
        break;
    case TW_KIND_OFF_HOURS:
        if (jv_num(jv, e, p, "max_share", 0, 1, 0.01, &r->max_share) ||
            jv_u32(jv, e, p, "spread_hours", 0, 11, 2, &r->spread_hours) ||
            jv_u32(jv, e, p, "lookback_hours", 0, 12, 3, &r->lookback_hours) ||
            jv_u32(jv, e, p, "min_profile", 1, 1000000, 50, &r->min_profile) ||
            tw_jv_bool(jv, e, p, "learned", true, &r->learned) ||
            tw_jv_bool(jv, e, p, "policy", false, &r->policy))
            return -1;
        if (r->policy && !rs->has_business_hours)
            return tw_jv_fail(jv, tw_jv_join(q, p, "policy"),
                              "expected a top-level \"business_hours\" object when policy is "
                              "true");
        if (!r->policy && !r->learned)
            return tw_jv_fail(jv, tw_jv_join(q, p, "learned"),
                              "expected learned or policy (or both) to be true");
        break;
    default:
        break;
    }
    r->id = tw_xstrdup(id);
    return 0;
}

static int load_rules_tree(const tw_jv_t *jv, const cJSON *root, tw_rules_t *r)
{
    if (tw_jv_object(jv, root, "", top_keys) != 0)
        return -1;
    const cJSON *learn;
    if (tw_jv_get_object(jv, root, "", "learning", learning_keys, &learn) != 0)
        return -1;
    r->min_events = 10;
    r->min_days = 7;
    if (learn && (jv_u32(jv, learn, "learning", "min_events", 0, 1000000, 10, &r->min_events) ||
                  jv_u32(jv, learn, "learning", "min_days", 0, 365, 7, &r->min_days)))
        return -1;
    if (jv_u32(jv, root, "", "cooldown_s", 0, 30 * 86400, 3600, &r->cooldown_s) != 0)
        return -1;
    if (load_allowlist(jv, root, r) != 0 || load_business_hours(jv, root, r) != 0)
        return -1;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "rules");
    if (!arr || !cJSON_IsArray(arr))
        return tw_jv_fail(jv, "rules", "expected an array of rule objects");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n > TW_RULES_MAX)
        return tw_jv_fail(jv, "rules", "expected at most %d rules, got %zu", TW_RULES_MAX, n);
    r->rules = tw_xcalloc(n + 1, sizeof *r->rules);
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char p[TW_JV_PATH_MAX];
        tw_jv_index(p, "rules", i);
        if (load_rule(jv, e, p, r, &r->rules[i]) != 0)
            return -1;
        r->nrules = i + 1;
        tw_rule_kind_t k = r->rules[i].kind;
        if (k != TW_KIND_FAILURES)
            r->fires_on[0][r->nfires_on[0]++] = (uint8_t)i;
        if (k == TW_KIND_RATE || k == TW_KIND_FAILURES)
            r->fires_on[1][r->nfires_on[1]++] = (uint8_t)i;
    }
    return 0;
}

int tw_rules_parse(tw_rules_t **out, const char *file, const char *text, size_t len,
                   tw_err_t *err)
{
    tw_jv_t jv = {.file = file, .err = err};
    cJSON *root;
    if (tw_jv_parse(&jv, text, len, &root) != 0)
        return -1;
    tw_rules_t *r = tw_xcalloc(1, sizeof *r);
    r->file = tw_xstrdup(file);
    int rc = load_rules_tree(&jv, root, r);
    cJSON_Delete(root);
    if (rc != 0) {
        tw_rules_free(r);
        return -1;
    }
    *out = r;
    return 0;
}

int tw_rules_load(tw_rules_t **out, const char *path, tw_err_t *err)
{
    char *text;
    size_t len;
    if (tw_read_file(path, &text, &len, err) != 0)
        return -1;
    int rc = tw_rules_parse(out, path, text, len, err);
    free(text);
    return rc;
}

void tw_rules_free(tw_rules_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nrules; i++)
        free(r->rules[i].id);
    free(r->rules);
    free(r->cidrs);
    free(r->token_ids);
    free(r->bh_time_zone);
    free(r->file);
    free(r);
}

/* ======================================================================
 * Detector
 * ====================================================================== */

#define IP_WAYS 4

/* One source IP's failures: a sliding window of rejected/total checks and
 * a 64-bit linear-counting sketch of the distinct tokens it was rejected
 * for (current and previous window). */
typedef struct ip_entry {
    tw_geo_addr_t addr;        /* family 0 = empty slot */
    uint32_t last_s;           /* replacement: oldest in the set goes */
    uint32_t cool_until_s;
    tw_fail_window_t fw;
    uint64_t bits_cur, bits_prev;
} ip_entry_t;

struct tw_detect {
    const tw_rules_t *rules;
    tw_geo_t *geo;
    const tw_tokenid_t *key;
    tw_tokens_t *tokens, *principals;
    ip_entry_t *ips;
    size_t ip_sets;            /* power of two */
    uint64_t ip_seed;
    size_t ips_used;
    tw_tz_t *tz;
    tw_jw_t jw;
    tw_detect_sink_fn sink;
    void *sink_ctx;
    tw_detect_want_fn want;

    /* Derived from the rules. */
    uint32_t rate_window_s, fail_window_s, ip_window_s;
    float rate_alpha;

    uint64_t events, anomalies, flagged;

    tw_metrics_t *metrics;
    tw_cell_t *c_rule[TW_RULES_MAX];
    tw_cell_t *c_tracked, *c_flagged, *c_evicted;
    tw_cell_t *c_geo[5];
    uint64_t geo_base[5];      /* counts of GeoIP handles replaced by a reload */

    /* tw_detect_push()'s queue: the events and a copy of the bytes they
     * do not borrow. */
    tw_event_t q_ev[TW_DETECT_QUEUE];
    const char *q_input[TW_DETECT_QUEUE];
    size_t qn;
    char *q_data;
    size_t q_cap, q_used;
};

static void on_evict(void *ctx, const tw_token_t *victim)
{
    tw_detect_t *d = ctx;
    if (victim->b.flags & TW_BL_FLAGGED)
        d->flagged--;
}

static void register_rule_cells(tw_detect_t *d)
{
    if (!d->metrics)
        return;
    static const char *const labels[] = {"rule", "kind", "severity"};
    tw_family_t *f = tw_metrics_family(d->metrics, "tokenwatch_anomalies_total",
                                       "Anomaly events emitted, by rule.", TW_METRIC_COUNTER,
                                       3, labels);
    const tw_rules_t *R = d->rules;
    for (size_t i = 0; i < TW_RULES_MAX; i++) {
        if (!R || i >= R->nrules) {
            d->c_rule[i] = NULL;
            continue;
        }
        const char *v[] = {R->rules[i].id, tw_rule_kind_name(R->rules[i].kind),
                           tw_severity_name(R->rules[i].severity)};
        d->c_rule[i] = tw_family_cell(f, v);
    }
}

static void register_cells(tw_detect_t *d)
{
    tw_metrics_t *m = d->metrics;
    tw_family_t *f = tw_metrics_family(m, "tokenwatch_tokens_tracked",
                                       "Tokens with a baseline in memory.", TW_METRIC_GAUGE, 0,
                                       NULL);
    d->c_tracked = tw_family_cell(f, NULL);
    f = tw_metrics_family(m, "tokenwatch_tokens_flagged",
                          "Tracked tokens that some rule has flagged.", TW_METRIC_GAUGE, 0,
                          NULL);
    d->c_flagged = tw_family_cell(f, NULL);
    f = tw_metrics_family(m, "tokenwatch_tokens_evicted_total",
                          "Token baselines dropped to stay within max_tokens (longest idle "
                          "first).",
                          TW_METRIC_COUNTER, 0, NULL);
    d->c_evicted = tw_family_cell(f, NULL);
    static const char *const rl[] = {"result"};
    f = tw_metrics_family(m, "tokenwatch_geoip_lookups_total",
                          "GeoIP lookups: hit/miss = public addresses answered from the cache "
                          "or the database; not_found, private, invalid = outcomes.",
                          TW_METRIC_COUNTER, 1, rl);
    static const char *const names[5] = {"hit", "miss", "not_found", "private", "invalid"};
    for (int i = 0; i < 5; i++) {
        const char *v[] = {names[i]};
        d->c_geo[i] = tw_family_cell(f, v);
    }
}

static void derive(tw_detect_t *d)
{
    const tw_rules_t *R = d->rules;
    d->rate_window_s = d->fail_window_s = d->ip_window_s = 0;
    d->rate_alpha = 0.05f;
    for (size_t i = 0; R && i < R->nrules; i++) {
        const tw_rule_t *r = &R->rules[i];
        if (r->kind == TW_KIND_RATE && !d->rate_window_s) {
            d->rate_window_s = r->window_s;
            d->rate_alpha = (float)r->alpha;
        } else if (r->kind == TW_KIND_FAILURES && !r->scope_ip && !d->fail_window_s) {
            d->fail_window_s = r->window_s;
        } else if (r->kind == TW_KIND_FAILURES && r->scope_ip && !d->ip_window_s) {
            d->ip_window_s = r->window_s;
        }
    }
}

tw_detect_t *tw_detect_new(const tw_detect_opts_t *o)
{
    tw_detect_t *d = tw_xcalloc(1, sizeof *d);
    d->q_cap = TW_DETECT_QUEUE_BYTES;
    d->q_data = tw_xmalloc(d->q_cap);
    d->rules = o->rules;
    d->geo = o->geo;
    d->key = o->key;
    size_t max = o->max_tokens ? o->max_tokens : 1000000;
    d->tokens = tw_tokens_new(max, on_evict, d);
    d->principals = tw_tokens_new(max, NULL, NULL);
    size_t ipn = o->ip_entries ? o->ip_entries : 65536;
    size_t sets = 1;
    while (sets * IP_WAYS < ipn)
        sets *= 2;
    d->ip_sets = sets;
    d->ips = tw_xcalloc_table(sets * IP_WAYS, sizeof *d->ips);
    /* Seed derived from the fingerprint key: stable for one state_dir (so
     * replay is reproducible) and unknown to whoever chooses source IPs. */
    static const char seed_label[] = "tokenwatch/ip-tracker/v1";
    d->ip_seed = tw_tokenid_of(d->key, (tw_slice_t){seed_label, sizeof seed_label - 1});
    d->tz = tw_tz_new(o->zoneinfo_dir);
    tw_jw_init(&d->jw);
    d->sink = o->sink;
    d->sink_ctx = o->sink_ctx;
    d->want = o->want;
    d->metrics = o->metrics;
    if (d->metrics)
        register_cells(d);
    register_rule_cells(d);
    derive(d);
    return d;
}

void tw_detect_free(tw_detect_t *d)
{
    if (!d)
        return;
    tw_tokens_free(d->tokens);
    tw_tokens_free(d->principals);
    free(d->ips);
    tw_tz_free(d->tz);
    tw_jw_free(&d->jw);
    free(d->q_data);
    free(d);
}

void tw_detect_set_rules(tw_detect_t *d, const tw_rules_t *rules)
{
    tw_detect_flush(d);   /* queued events are judged by the rules they came under */
    d->rules = rules;
    register_rule_cells(d);
    derive(d);
}

/* ---- helpers ----------------------------------------------------------- */

static uint32_t secs_u32(int64_t t_ns)
{
    if (t_ns <= 0)
        return 0;
    int64_t s = t_ns / NS_PER_S;
    return s > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

static bool token_allowed(const tw_rules_t *R, uint64_t id)
{
    size_t lo = 0, hi = R->ntoken_ids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (R->token_ids[mid] == id)
            return true;
        if (R->token_ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static bool ip_allowed(const tw_rules_t *R, const tw_geo_addr_t *a)
{
    if (a->family == 0)
        return false;
    for (size_t i = 0; i < R->ncidrs; i++)
        if (tw_cidr_contains(&R->cidrs[i], a))
            return true;
    return false;
}

/* The lookup for an address parsed by the caller (a is NULL when the text
 * was empty or not an address). */
static void geo_of(tw_detect_t *d, const tw_geo_addr_t *a, tw_geo_result_t *g)
{
    if (d->geo && a) {
        tw_geo_lookup_addr(d->geo, a, g);
        return;
    }
    if (d->geo) {
        tw_geo_lookup(d->geo, "", 0, g);   /* counts the invalid address */
        return;
    }
    memset(g, 0, sizeof *g);
    g->city = g->time_zone = g->asn_org = "";
    if (!a) {
        g->addr.family = 0;
        g->status = TW_GEO_INVALID;
    } else {
        g->addr = *a;
        g->status = tw_geo_addr_is_private(&g->addr) ? TW_GEO_PRIVATE : TW_GEO_NOT_FOUND;
    }
}

static uint64_t ip_hash(const tw_detect_t *d, const tw_geo_addr_t *a)
{
    uint64_t w0, w1;
    memcpy(&w0, a->bytes, 8);
    memcpy(&w1, a->bytes + 8, 8);
    uint64_t h = (w0 ^ d->ip_seed) * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    h = (h ^ w1 ^ a->family ^ (d->ip_seed >> 7)) * 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 32;
    h *= 0x94D049BB133111EBULL;
    return h ^ (h >> 31);
}

static bool addr_eq(const tw_geo_addr_t *a, const tw_geo_addr_t *b)
{
    if (a->family != b->family)
        return false;
    if (a->family == 4) {
        uint32_t x, y;
        memcpy(&x, a->bytes, 4);
        memcpy(&y, b->bytes, 4);
        return x == y;
    }
    uint64_t x0, x1, y0, y1;
    memcpy(&x0, a->bytes, 8);
    memcpy(&x1, a->bytes + 8, 8);
    memcpy(&y0, b->bytes, 8);
    memcpy(&y1, b->bytes + 8, 8);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
}

/* The tracker entry for a, created (replacing the oldest in its set) when
 * create is set; NULL otherwise when absent. */
static ip_entry_t *ip_get(tw_detect_t *d, const tw_geo_addr_t *a, uint32_t now_s, bool create)
{
    ip_entry_t *set = &d->ips[(ip_hash(d, a) & (d->ip_sets - 1)) * IP_WAYS];
    ip_entry_t *victim = &set[0];
    for (int w = 0; w < IP_WAYS; w++) {
        if (set[w].addr.family && addr_eq(&set[w].addr, a)) {
            set[w].last_s = now_s;
            return &set[w];
        }
        if (victim->addr.family && (!set[w].addr.family || set[w].last_s < victim->last_s))
            victim = &set[w];
    }
    if (!create)
        return NULL;
    if (!victim->addr.family)
        d->ips_used++;
    memset(victim, 0, sizeof *victim);
    victim->addr = *a;
    victim->last_s = now_s;
    return victim;
}

static unsigned popcount64(uint64_t x) { return (unsigned)__builtin_popcountll(x); }

/* Linear counting: distinct items estimated from the empty bits of a
 * 64-bit sketch. Exact enough below ~30, saturates at 266. */
static uint32_t distinct_estimate(uint64_t bits)
{
    unsigned zeros = 64 - popcount64(bits);
    if (zeros == 0)
        return 266;
    return (uint32_t)lround(-64.0 * log((double)zeros / 64.0));
}

/* ---- event emission ---------------------------------------------------- */

typedef struct ctx {
    tw_detect_t *d;
    const char *input;
    const tw_event_t *ev;
    uint64_t id;
    tw_token_t *te;
    const tw_geo_result_t *g;
    uint32_t ts;
    tw_anomaly_facts_t facts;   /* filled by the rule before finish() */
    char hint[64];
} ctx_t;

static bool cooled(const ctx_t *c, size_t i, uint32_t *slot)
{
    uint32_t *cu = slot ? slot : &c->te->b.cool_until_s[i];
    if (c->ts < *cu)
        return false;
    uint64_t until = (uint64_t)c->ts + c->d->rules->cooldown_s;
    *cu = until > UINT32_MAX ? UINT32_MAX : (uint32_t)until;
    return true;
}

static tw_jw_t *begin(ctx_t *c, const tw_rule_t *r)
{
    const tw_geo_result_t *g = c->g;
    memset(&c->facts, 0, sizeof c->facts);
    c->facts.kind = r->kind;
    c->facts.hour_of_week = -1;
    bool geo = g->status == TW_GEO_FOUND;
    tw_anomaly_head_t h = {
        .time_ns = c->ev->time_ns,
        .token_id = c->id,
        .token_hint = tw_token_hint(c->ev->token, c->hint, sizeof c->hint),
        .rule = r->id,
        .kind = tw_rule_kind_name(r->kind),
        .severity = tw_severity_name(r->severity),
        .action = tw_action_name(r->action),
        .ip = c->ev->ip,
        .country = geo ? g->country : NULL,
        .city = geo ? g->city : NULL,
        .input = c->input,
    };
    tw_anomaly_begin(&c->d->jw, &h);
    return &c->d->jw;
}

static void finish(ctx_t *c, size_t i, const tw_rule_t *r)
{
    tw_detect_t *d = c->d;
    tw_anomaly_end(&d->jw);
    tw_baseline_t *b = &c->te->b;
    if (!(b->flags & TW_BL_FLAGGED)) {
        b->flags |= TW_BL_FLAGGED;
        d->flagged++;
    }
    if (b->top_severity < (uint8_t)(r->severity + 1))
        b->top_severity = (uint8_t)(r->severity + 1);
    d->anomalies++;
    if (d->c_rule[i])
        tw_cell_add(d->c_rule[i], 1);
    if (!d->sink)
        return;
    bool geo = c->g->status == TW_GEO_FOUND;
    tw_anomaly_t a = {
        .line = d->jw.buf,
        .len = d->jw.len,
        .token_id = c->id,
        .token = c->ev->token,
        .user = c->ev->user,
        .token_hint = c->hint,
        .rule = r,
        .time_ns = c->ev->time_ns,
        .input = c->input,
        .ip = c->ev->ip,
        .country = geo ? c->g->country : "",
        .city = geo ? c->g->city : "",
        .facts = c->facts,
    };
    d->sink(d->sink_ctx, &a);
}

static void loc_json(tw_jw_t *w, const tw_baseline_loc_t *l)
{
    char ip[64];
    tw_geo_addr_format(&l->addr, ip, sizeof ip);
    char cc[3] = {l->country[0], l->country[1], 0};
    char tbuf[40];
    tw_jw_obj_begin(w);
    TW_JW_KEY_LIT(w, "ip");
    tw_jw_cstr(w, ip);
    TW_JW_KEY_LIT(w, "country");
    tw_jw_cstr(w, cc);
    TW_JW_KEY_LIT(w, "city");
    tw_jw_cstr(w, l->city ? l->city : "");
    TW_JW_KEY_LIT(w, "lat");
    tw_jw_double(w, l->lat, 4);
    TW_JW_KEY_LIT(w, "lon");
    tw_jw_double(w, l->lon, 4);
    TW_JW_KEY_LIT(w, "radius_km");
    tw_jw_int(w, l->radius_km);
    TW_JW_KEY_LIT(w, "time");
    tw_jw_cstr(w, tw_time_format_rfc3339(l->time_ns, tbuf, sizeof tbuf));
    tw_jw_obj_end(w);
}

/* ---- the hot path ------------------------------------------------------ */

/*
 * Cache misses dominate the hot path (the token and principal entries, the
 * index slots that lead to them, the GeoIP cache set, the IP tracker set),
 * so the work that depends on nothing but the event comes first, in
 * prepare(): parse the address, hash the token, start loading the GeoIP
 * cache's set, the IP tracker's set and the token's index slot. In a batch
 * (tw_detect_events) later events are prepared while earlier ones are
 * judged, and the work that needs an earlier load to have arrived (GeoIP
 * lookup, entry, principal slot, principal entry) is started a few events
 * ahead too. An event may come with its enrichment done (tw_detect_enrich
 * on the reader thread): then only the table loads are left.
 */
typedef struct prep {
    const tw_detect_pre_t *pre;   /* &own, or the caller's */
    tw_detect_pre_t own;
    tw_geo_addr_t addr;           /* own: the parsed address until the lookup */
    bool has_addr;
    bool geo_pending;             /* own.geo not looked up yet */
    const tw_token_t *te;         /* batches: the entry when stage_entry() ran, a hint */
} prep_t;

/* Parses the address and hashes the token: false when the event is not
 * judged (no rules, no token). */
static bool enrich_begin(tw_detect_t *d, const tw_event_t *ev, tw_detect_pre_t *out,
                         tw_geo_addr_t *addr, bool *has_addr)
{
    out->id = 0;
    *has_addr = false;
    if (!d->rules || ev->token.n == 0)
        return false;
    *has_addr = ev->ip.n && tw_geo_addr_parse(ev->ip.p, ev->ip.n, addr) == 0;
    out->id = tw_tokenid_of(d->key, ev->token);
    return true;
}

void tw_detect_enrich(tw_detect_t *d, const tw_event_t *ev, bool geo, tw_detect_pre_t *out)
{
    tw_geo_addr_t addr;
    bool has_addr;
    bool judged = enrich_begin(d, ev, out, &addr, &has_addr);
    out->geo_done = judged && geo;
    if (out->geo_done) {
        geo_of(d, has_addr ? &addr : NULL, &out->geo);
        return;
    }
    memset(&out->geo, 0, sizeof out->geo);
    if (has_addr)
        out->geo.addr = addr;
}

static void prepare(tw_detect_t *d, const tw_event_t *ev, const tw_detect_pre_t *given,
                    prep_t *pp)
{
    pp->te = NULL;
    pp->geo_pending = false;
    const tw_geo_addr_t *a = NULL;
    if (given && given->geo_done) {
        pp->pre = given;
        if (!d->rules || ev->token.n == 0)
            return;
        if (given->geo.addr.family)
            a = &given->geo.addr;
    } else {
        /* The lookup (and without given, everything) is left to do here. */
        pp->pre = &pp->own;
        if (given) {
            /* copied now: without geo_done, *given may be scratch (detect.h) */
            pp->own.id = given->id;
            if (!d->rules || ev->token.n == 0)
                return;
            pp->has_addr = given->geo.addr.family != 0;
            pp->addr = given->geo.addr;
        } else if (!enrich_begin(d, ev, &pp->own, &pp->addr, &pp->has_addr)) {
            return;
        }
        pp->geo_pending = true;
        if (pp->has_addr) {
            a = &pp->addr;
            if (d->geo)
                tw_geo_prefetch(d->geo, a);
        }
    }
    if (a && d->ip_window_s) {
        const char *set = (const char *)&d->ips[(ip_hash(d, a) & (d->ip_sets - 1)) * IP_WAYS];
        for (size_t off = 0; off < IP_WAYS * sizeof *d->ips + 63; off += 64)
            __builtin_prefetch(set + off, 1, 3);
    }
    tw_tokens_prefetch(d->tokens, pp->pre->id);
}

static void stage_geo(tw_detect_t *d, prep_t *pp)
{
    if (!pp->geo_pending)
        return;
    geo_of(d, pp->has_addr ? &pp->addr : NULL, &pp->own.geo);
    pp->geo_pending = false;
}

/* The hot part of an entry (tokens.h: id, aux; baseline.h: up to and
 * including asns), up to four lines as entries are not line-aligned. */
static inline void prefetch_entry(const tw_token_t *te)
{
    for (size_t off = 0; off < offsetof(tw_token_t, b.hours) + 63; off += 64)
        __builtin_prefetch((const char *)te + off, 1, 3);
}

/* Prefetch stages of a batch. They only read: the entry found by
 * stage_entry() may be evicted and its memory reused (entries are never
 * freed while the table lives, tokens.h) before the later stages read its
 * aux or its event is judged; then a load was wasted, nothing else. */
static void stage_entry(tw_detect_t *d, prep_t *pp)
{
    pp->te = pp->pre->id ? tw_tokens_find(d->tokens, pp->pre->id) : NULL;
    if (pp->te)
        prefetch_entry(pp->te);
}

static void stage_principal_slot(tw_detect_t *d, const prep_t *pp)
{
    if (pp->te && pp->te->aux)
        tw_tokens_prefetch(d->principals, pp->te->aux);
}

static void stage_principal(tw_detect_t *d, const prep_t *pp)
{
    const tw_token_t *pe = pp->te && pp->te->aux ? tw_tokens_find(d->principals, pp->te->aux)
                                                 : NULL;
    if (pe)
        prefetch_entry(pe);
}

static void judge(tw_detect_t *d, const char *input, const tw_event_t *ev, prep_t *pp)
{
    const tw_rules_t *R = d->rules;
    if (!R || ev->token.n == 0)
        return;
    d->events++;
    stage_geo(d, pp);
    uint64_t id = pp->pre->id;
    const tw_geo_result_t *g = &pp->pre->geo;
    /* Recency at minute granularity (tokens.h): a token used again within
     * the minute of its last move to the front stays put. */
    uint32_t minute = (uint32_t)(ev->time_ns / (60 * (int64_t)1000000000));
    bool created;
    tw_token_t *te = tw_tokens_get_at(d->tokens, id, ev->rejected, minute, &created);
    prefetch_entry(te);
    /* The source IP's failure tracker (its own clock: the event's time). */
    uint32_t ip_s = secs_u32(ev->time_ns);
    ip_entry_t *ipe = NULL;
    uint32_t i_rej = 0, i_chk = 0, i_distinct = 0;
    if (d->ip_window_s && g->addr.family) {
        ipe = ip_get(d, &g->addr, ip_s, ev->rejected);
        if (ipe) {
            /* The distinct-token sketch turns over with the failure
             * window: the window index tw_fail_window_add moved to. */
            uint32_t before = ipe->fw.bucket;
            tw_fail_window_add(&ipe->fw, ev->time_ns, d->ip_window_s, ev->rejected, &i_rej, &i_chk);
            uint32_t k = ipe->fw.bucket;
            if (k != before) {
                ipe->bits_prev = k == before + 1 ? ipe->bits_cur : 0;
                ipe->bits_cur = 0;
            }
            if (ev->rejected) {
                ipe->bits_cur |= 1ULL << (id >> 58);
                i_distinct = distinct_estimate(ipe->bits_cur | ipe->bits_prev);
            }
        }
    }
    bool allow_tok = R->ntoken_ids && token_allowed(R, id);
    bool allow_ip = R->ncidrs && ip_allowed(R, &g->addr);
    bool judge = !allow_tok && !allow_ip;
    bool accepted = !ev->rejected;
    tw_baseline_t *b = &te->b;
    if (b->flags & TW_BL_WANTED) {
        b->flags &= (uint8_t)~TW_BL_WANTED;
        if (d->want)
            d->want(d->sink_ctx, id, ev->token);
    }
    int64_t t = tw_baseline_touch(b, ev->time_ns);
    uint32_t ts = secs_u32(t);

    tw_baseline_t *pb = NULL;
    if (te->aux == 0 && accepted && ev->user.n)
        te->aux = tw_tokenid_of(d->key, ev->user) | 1;   /* 0 means "none" */
    if (te->aux) {
        bool pc;
        pb = &tw_tokens_get_at(d->principals, te->aux, false, minute, &pc)->b;
        tw_baseline_touch(pb, t);
    }
    bool tmature = tw_baseline_mature(b, R->min_events, R->min_days);
    bool pmature = pb && tw_baseline_mature(pb, R->min_events, R->min_days);
    /* The baseline learned-behaviour rules judge against: the token's own
     * once it has learned, else its principal's (a rotated token of a known
     * user is judged from its first use), else none (still learning). */
    tw_baseline_t *ref = tmature ? b : (pmature ? pb : NULL);

    /* Field by field: facts and hint are filled by begin(), only for the
     * rare event that fires (a designated initializer would zero their
     * 88 bytes for every event). */
    ctx_t c;
    c.d = d;
    c.input = input;
    c.ev = ev;
    c.id = id;
    c.te = te;
    c.g = g;
    c.ts = ts;

    /* Counts every check feeds. */
    uint32_t rate_count = 0;
    if (d->rate_window_s) {
        rate_count = tw_baseline_rate_add(b, t, d->rate_window_s, d->rate_alpha);
        if (pb)
            tw_baseline_rate_add(pb, t, d->rate_window_s, d->rate_alpha);
    }
    uint32_t f_rej = 0, f_chk = 0;
    if (d->fail_window_s)
        tw_fail_window_add(&b->fail, t, d->fail_window_s, ev->rejected, &f_rej, &f_chk);

    /* Geo state before this event. */
    bool located = accepted && g->status == TW_GEO_FOUND && g->located;
    const tw_baseline_loc_t *prev = NULL;
    if (b->flags & TW_BL_HAS_LOC)
        prev = &b->loc;
    else if (pb && (pb->flags & TW_BL_HAS_LOC))
        prev = &pb->loc;
    bool has_cc = accepted && g->status == TW_GEO_FOUND && g->country[0];

    /* Local time: the zone where the token is now (travellers keep their
     * habits in local time), else where it was last seen, else UTC. */
    const char *tzname = "";
    if (g->status == TW_GEO_FOUND && g->time_zone[0])
        tzname = g->time_zone;
    else if (b->flags & TW_BL_HAS_LOC)
        tzname = b->loc.time_zone;
    int32_t off = 0;
    if (tzname[0])
        tw_tz_offset(d->tz, tzname, (int64_t)ts, &off);
    int64_t local_s = (int64_t)ts + off;
    unsigned how = tw_hour_of_week(local_s);

    /* Only the rules that can fire on this kind of check (fires_on); each
     * case below still checks what it needs. */
    const uint8_t *fire = R->fires_on[ev->rejected];
    for (size_t f = 0, nf = judge ? R->nfires_on[ev->rejected] : 0; f < nf; f++) {
        size_t i = fire[f];
        const tw_rule_t *r = &R->rules[i];
        switch (r->kind) {
        case TW_KIND_RATE: {
            if (!d->rate_window_s)
                break;
            double mean = 0, sd = 0, thr;
            if (ref && ref->rate_windows > 0) {
                mean = ref->rate_mean;
                sd = tw_baseline_rate_sd(ref);
                thr = fmax((double)r->min_count, fmax(mean * r->multiplier, mean + r->sigmas * sd));
            } else {
                thr = r->ceiling;
            }
            if ((double)rate_count <= thr || !cooled(&c, i, NULL))
                break;
            tw_baseline_rate_exclude(b);
            tw_jw_t *w = begin(&c, r);
            c.facts.rate_count = rate_count;
            TW_JW_KEY_LIT(w, "window_s");
            tw_jw_int(w, d->rate_window_s);
            TW_JW_KEY_LIT(w, "count");
            tw_jw_int(w, rate_count);
            TW_JW_KEY_LIT(w, "baseline_mean");
            tw_jw_double(w, mean, 2);
            TW_JW_KEY_LIT(w, "baseline_sd");
            tw_jw_double(w, sd, 2);
            TW_JW_KEY_LIT(w, "threshold");
            tw_jw_double(w, thr, 2);
            finish(&c, i, r);
            break;
        }
        case TW_KIND_FAILURES: {
            if (!ev->rejected)
                break;
            uint32_t rej = r->scope_ip ? i_rej : f_rej, chk = r->scope_ip ? i_chk : f_chk;
            if ((r->scope_ip ? !ipe : !d->fail_window_s) || rej < r->min_rejected ||
                (double)rej < r->min_ratio * (double)chk)
                break;
            if (r->scope_ip && i_distinct < r->min_distinct_tokens)
                break;
            if (!cooled(&c, i, r->scope_ip ? &ipe->cool_until_s : NULL))
                break;
            tw_jw_t *w = begin(&c, r);
            TW_JW_KEY_LIT(w, "scope");
            tw_jw_cstr(w, r->scope_ip ? "ip" : "token");
            TW_JW_KEY_LIT(w, "window_s");
            tw_jw_int(w, r->scope_ip ? d->ip_window_s : d->fail_window_s);
            TW_JW_KEY_LIT(w, "rejected");
            tw_jw_int(w, rej);
            TW_JW_KEY_LIT(w, "checks");
            tw_jw_int(w, chk);
            if (r->scope_ip) {
                TW_JW_KEY_LIT(w, "distinct_tokens");
                tw_jw_int(w, i_distinct);
            }
            finish(&c, i, r);
            break;
        }
        case TW_KIND_GEO_VELOCITY: {
            if (!located || !prev)
                break;
            /* Suppressions: the same address, the same /24 (/48 for IPv6),
             * the same ASN (when an ASN database answers for both). */
            if (tw_geo_addr_same_prefix(&prev->addr, &g->addr, g->addr.family == 4 ? 24 : 48))
                break;
            if (g->asn && prev->asn == g->asn)
                break;
            /* A country-level answer (the centroid, radius of hundreds of
             * km: a carrier or block GeoIP cannot place better) only says
             * "somewhere in XX"; inside that country it proves no travel. */
            if (r->country_level_km > 0 &&
                (prev->radius_km >= r->country_level_km || g->radius_km >= r->country_level_km) &&
                prev->country[0] && prev->country[0] == g->country[0] &&
                prev->country[1] == g->country[1])
                break;
            double km = tw_haversine_km(prev->lat, prev->lon, g->lat, g->lon);
            double after = km - prev->radius_km - g->radius_km;
            if (after <= 0 || after < r->min_km)
                break;
            double hours = (double)(t - prev->time_ns) / (3600.0 * NS_PER_S);
            if (hours < 0)
                hours = 0;
            double kmh = after / fmax(hours, r->min_hours);
            if (kmh <= r->max_kmh || !cooled(&c, i, NULL))
                break;
            tw_baseline_loc_t to;
            memset(&to, 0, sizeof to);
            to.time_ns = t;
            to.city = g->city;
            to.lat = (float)g->lat;
            to.lon = (float)g->lon;
            to.radius_km = g->radius_km;
            to.country[0] = g->country[0];
            to.country[1] = g->country[1];
            to.addr = g->addr;
            tw_jw_t *w = begin(&c, r);
            memcpy(c.facts.country, g->country, sizeof c.facts.country);
            TW_JW_KEY_LIT(w, "from");
            loc_json(w, prev);
            TW_JW_KEY_LIT(w, "to");
            loc_json(w, &to);
            TW_JW_KEY_LIT(w, "km");
            tw_jw_double(w, km, 1);
            TW_JW_KEY_LIT(w, "km_after_radii");
            tw_jw_double(w, after, 1);
            TW_JW_KEY_LIT(w, "hours");
            tw_jw_double(w, hours, 3);
            TW_JW_KEY_LIT(w, "kmh");
            tw_jw_double(w, kmh, 1);
            TW_JW_KEY_LIT(w, "max_kmh");
            tw_jw_double(w, r->max_kmh, 1);
            finish(&c, i, r);
            break;
        }
        case TW_KIND_GEO_NEW: {
            if (!has_cc || !ref)
                break;
            bool new_cc = r->countries && !tw_baseline_country_known(b, g->country) &&
                          !(pb && tw_baseline_country_known(pb, g->country));
            bool new_asn = r->asns && g->asn && !tw_baseline_asn_known(b, g->asn) &&
                           !(pb && tw_baseline_asn_known(pb, g->asn));
            if ((!new_cc && !new_asn) || !cooled(&c, i, NULL))
                break;
            tw_jw_t *w = begin(&c, r);
            if (new_cc)
                memcpy(c.facts.country, g->country, sizeof c.facts.country);
            if (new_asn)
                c.facts.asn = g->asn;
            TW_JW_KEY_LIT(w, "country");
            tw_jw_cstr(w, g->country);
            TW_JW_KEY_LIT(w, "asn");
            if (g->asn)
                tw_jw_int(w, g->asn);
            else
                tw_jw_null(w);
            TW_JW_KEY_LIT(w, "known_countries");
            tw_jw_arr_begin(w);
            for (int pass = 0; pass < 2; pass++) {
                const tw_baseline_t *src = pass == 0 ? b : pb;
                if (!src)
                    continue;
                for (unsigned k = 0; k < TW_BASELINE_COUNTRIES && src->countries[k][0]; k++) {
                    if (pass == 1 && tw_baseline_country_known(b, src->countries[k]))
                        continue;
                    tw_jw_str(w, src->countries[k], 2);
                }
            }
            tw_jw_arr_end(w);
            finish(&c, i, r);
            break;
        }
        case TW_KIND_OFF_HOURS: {
            if (!accepted)
                break;
            double share = 1.0;
            bool learned_hit = false, policy_hit = false;
            if (r->learned && ref)
                tw_baseline_hours_flush(ref);
            if (r->learned && ref && ref->hours_total >= r->min_profile) {
                share = tw_baseline_hours_share(ref, how, r->spread_hours, r->lookback_hours,
                                                true);
                learned_hit = share < r->max_share;
            }
            if (r->policy && R->has_business_hours) {
                int32_t boff = 0;
                tw_tz_offset(d->tz, R->bh_time_zone, (int64_t)ts, &boff);
                unsigned bhow = tw_hour_of_week((int64_t)ts + boff);
                int64_t bl = (int64_t)ts + boff;
                int64_t bmin = ((bl % 86400) + 86400) % 86400 / 60;
                unsigned wd = bhow / 24;
                policy_hit = !((R->bh_days >> wd) & 1) || bmin < R->bh_start_min ||
                             bmin >= R->bh_end_min;
            }
            if ((!learned_hit && !policy_hit) || !cooled(&c, i, NULL))
                break;
            tw_jw_t *w = begin(&c, r);
            c.facts.hour_of_week = (int)how;
            c.facts.utc_offset_s = off;
            TW_JW_KEY_LIT(w, "hour_of_week");
            tw_jw_int(w, how);
            TW_JW_KEY_LIT(w, "profile_share");
            tw_jw_double(w, share, 4);
            TW_JW_KEY_LIT(w, "policy");
            tw_jw_bool(w, policy_hit);
            TW_JW_KEY_LIT(w, "time_zone");
            tw_jw_cstr(w, tzname[0] ? tzname : "UTC");
            finish(&c, i, r);
            break;
        }
        default:
            break;
        }
    }

    /* Learning from accepted checks. */
    if (!accepted)
        return;
    tw_baseline_hours_defer(b, how, local_s);
    if (pb)
        tw_baseline_hours_defer(pb, how, local_s);
    if (allow_ip || g->status != TW_GEO_FOUND)
        return;
    if (g->located) {
        tw_baseline_loc_set(b, t, g);
        if (pb)
            tw_baseline_loc_set(pb, t, g);
    }
    if (g->country[0]) {
        tw_baseline_country_note(b, g->country);
        if (pb)
            tw_baseline_country_note(pb, g->country);
    }
    if (g->asn) {
        tw_baseline_asn_note(b, g->asn);
        if (pb)
            tw_baseline_asn_note(pb, g->asn);
    }
}

void tw_detect_event(tw_detect_t *d, const char *input, const tw_event_t *ev)
{
    prep_t p;
    prepare(d, ev, NULL, &p);
    judge(d, input, ev, &p);
}

/* How far ahead of the event being judged each stage works, in events. */
#define AHEAD_RING 16
enum { AHEAD_PREPARE = 12, AHEAD_ENTRY = 8, AHEAD_GEO = 6, AHEAD_PSLOT = 4, AHEAD_PENTRY = 2 };

void tw_detect_events(tw_detect_t *d, size_t n, tw_detect_get_fn get, void *ctx)
{
    struct {
        const char *input;
        tw_event_t ev;
        prep_t p;
    } r[AHEAD_RING];
    /* Step k judges event k - AHEAD_PREPARE (whose slot is then free),
     * prepares event k and runs the other stages on the events between. */
    for (size_t k = 0; k < n + AHEAD_PREPARE; k++) {
        if (k >= AHEAD_PREPARE) {
            size_t j = (k - AHEAD_PREPARE) % AHEAD_RING;
            judge(d, r[j].input, &r[j].ev, &r[j].p);
        }
        if (k < n) {
            size_t j = k % AHEAD_RING;
            const tw_detect_pre_t *given = NULL;
            get(ctx, k, &r[j].input, &r[j].ev, &given);
            prepare(d, &r[j].ev, given, &r[j].p);
        }
        size_t e;
        if (k >= AHEAD_PREPARE - AHEAD_ENTRY && (e = k - (AHEAD_PREPARE - AHEAD_ENTRY)) < n)
            stage_entry(d, &r[e % AHEAD_RING].p);
        if (k >= AHEAD_PREPARE - AHEAD_GEO && (e = k - (AHEAD_PREPARE - AHEAD_GEO)) < n)
            stage_geo(d, &r[e % AHEAD_RING].p);
        if (k >= AHEAD_PREPARE - AHEAD_PSLOT && (e = k - (AHEAD_PREPARE - AHEAD_PSLOT)) < n)
            stage_principal_slot(d, &r[e % AHEAD_RING].p);
        if (k >= AHEAD_PREPARE - AHEAD_PENTRY && (e = k - (AHEAD_PREPARE - AHEAD_PENTRY)) < n)
            stage_principal(d, &r[e % AHEAD_RING].p);
    }
}

/* ---- the queue of tw_detect_push() ---- */

static void queued_get(void *ctx, size_t i, const char **input, tw_event_t *ev,
                       const tw_detect_pre_t **pre)
{
    const tw_detect_t *d = ctx;
    *input = d->q_input[i];
    *ev = d->q_ev[i];
    *pre = NULL;
}

void tw_detect_flush(tw_detect_t *d)
{
    if (d->qn == 0)
        return;
    tw_detect_events(d, d->qn, queued_get, d);
    d->qn = 0;
    d->q_used = 0;
}

/* s itself when it lies inside the borrowed line [lo, lo + n), else a copy
 * in the queue's bytes. */
static inline tw_slice_t queue_keep(tw_detect_t *d, tw_slice_t s, uintptr_t lo, size_t n)
{
    if (s.n == 0)
        return (tw_slice_t){NULL, 0};
    uintptr_t off = (uintptr_t)s.p - lo;
    if (off < n && s.n <= n - off)
        return s;
    char *at = d->q_data + d->q_used;
    memcpy(at, s.p, s.n);
    d->q_used += s.n;
    return (tw_slice_t){at, s.n};
}

void tw_detect_push(tw_detect_t *d, const char *input, const tw_event_t *ev, const char *line,
                    size_t len)
{
    size_t need = ev->token.n + ev->ip.n + ev->user.n + ev->path.n;
    if (need > d->q_cap - d->q_used) {
        tw_detect_flush(d);
        if (need > d->q_cap) {
            /* Only with an empty queue: no queued slice points into it. */
            d->q_cap = need;
            d->q_data = tw_xrealloc(d->q_data, d->q_cap);
        }
    }
    uintptr_t lo = (uintptr_t)line;
    if (!line)
        len = 0;
    tw_event_t *q = &d->q_ev[d->qn];
    q->token = queue_keep(d, ev->token, lo, len);
    q->ip = queue_keep(d, ev->ip, lo, len);
    q->user = queue_keep(d, ev->user, lo, len);
    q->path = queue_keep(d, ev->path, lo, len);
    q->result = (tw_slice_t){NULL, 0};   /* judged by the parser already */
    q->time_ns = ev->time_ns;
    q->rejected = ev->rejected;
    q->error = 0;   /* unused: the event parsed */
    q->error_field = NULL;
    d->q_input[d->qn] = input;
    if (++d->qn == TW_DETECT_QUEUE)
        tw_detect_flush(d);
}

uint32_t tw_detect_rate_window(const tw_detect_t *d) { return d->rate_window_s; }

void tw_detect_want(tw_detect_t *d, uint64_t token_id)
{
    bool created;
    /* A cold insert when untracked: a blank baseline at the back of the
     * recency list, so the mark costs no tracked token its place. */
    tw_token_t *e = tw_tokens_get(d->tokens, token_id, true, &created);
    e->b.flags |= TW_BL_WANTED;
}

/* Adds uses in hour-of-week how until every learned off_hours rule would
 * find the hour usual (share >= twice its max_share), at most 255 uses. */
static void learn_hour(tw_detect_t *d, tw_baseline_t *b, unsigned how, int32_t off)
{
    const tw_rules_t *R = d->rules;
    int64_t local_s = b->last_ns / NS_PER_S + off;
    tw_baseline_hours_flush(b);
    for (size_t i = 0; R && i < R->nrules; i++) {
        const tw_rule_t *r = &R->rules[i];
        if (r->kind != TW_KIND_OFF_HOURS || !r->learned)
            continue;
        double want = fmin(0.9, 2.0 * r->max_share);
        for (int k = 0; k < 255; k++) {
            if (b->hours_total >= r->min_profile &&
                tw_baseline_hours_share(b, how, r->spread_hours, r->lookback_hours, true) >=
                    want)
                break;
            tw_baseline_hours_add(b, how, local_s);
        }
    }
}

bool tw_detect_learn(tw_detect_t *d, uint64_t token_id, const tw_anomaly_facts_t *f)
{
    tw_token_t *e = tw_tokens_find(d->tokens, token_id);
    if (!e)
        return false;
    tw_baseline_t *b = &e->b;
    if (f->country[0] && f->country[1])
        tw_baseline_country_note(b, f->country);
    if (f->asn)
        tw_baseline_asn_note(b, f->asn);
    if (f->hour_of_week >= 0 && f->hour_of_week < TW_BASELINE_HOURS)
        learn_hour(d, b, (unsigned)f->hour_of_week, f->utc_offset_s);
    if (f->rate_count > 0 && b->rate_mean < (float)f->rate_count) {
        /* The dismissed spike is the new normal: its count becomes the mean,
         * so the rule's multiplier puts the threshold above it. */
        b->rate_mean = (float)f->rate_count;
        if (b->rate_windows == 0)
            b->rate_windows = 1;
    }
    return true;
}

/* The five tokenwatch_geoip_lookups_total counts of one handle. */
static void geo_counts(const tw_geo_t *g, uint64_t v[5])
{
    tw_geo_stats_t s;
    tw_geo_stats(g, &s);
    v[0] = s.cache_hits;
    v[1] = s.tree_walks;
    v[2] = s.by_status[TW_GEO_NOT_FOUND];
    v[3] = s.by_status[TW_GEO_PRIVATE];
    v[4] = s.by_status[TW_GEO_INVALID];
}

typedef struct reintern_ctx {
    tw_geo_t *geo;
} reintern_ctx_t;

/* Points a stored location's strings into the new handle's interned set
 * (or at "" without one). tw_tokens_each hands out const entries; the
 * table owns them and this runs on the owner thread. */
static bool reintern(void *ctx, const tw_token_t *e)
{
    reintern_ctx_t *x = ctx;
    tw_baseline_loc_t *l = (tw_baseline_loc_t *)&e->b.loc;
    const char *city = l->city ? l->city : "", *tz = l->time_zone ? l->time_zone : "";
    l->city = x->geo ? tw_geo_intern(x->geo, city, strlen(city)) : "";
    l->time_zone = x->geo ? tw_geo_intern(x->geo, tz, strlen(tz)) : "";
    return true;
}

void tw_detect_set_geo(tw_detect_t *d, tw_geo_t *geo)
{
    tw_detect_flush(d);   /* with the handle the caller may close next */
    if (d->geo) {
        uint64_t v[5];
        geo_counts(d->geo, v);
        for (int i = 0; i < 5; i++)
            d->geo_base[i] += v[i];
    }
    reintern_ctx_t x = {.geo = geo};
    tw_tokens_each(d->tokens, reintern, &x);
    tw_tokens_each(d->principals, reintern, &x);
    d->geo = geo;
}

void tw_detect_publish(tw_detect_t *d)
{
    if (!d->metrics)
        return;
    tw_cell_set_gauge(d->c_tracked, (int64_t)tw_tokens_count(d->tokens));
    tw_cell_set_gauge(d->c_flagged, (int64_t)d->flagged);
    tw_cell_set(d->c_evicted, tw_tokens_evicted(d->tokens));
    if (d->geo) {
        tw_geo_stats_t s;
        tw_geo_stats(d->geo, &s);
        uint64_t v[5];
        geo_counts(d->geo, v);
        for (int i = 0; i < 5; i++)
            tw_cell_set(d->c_geo[i], d->geo_base[i] + v[i]);
    }
}

void tw_detect_stats(const tw_detect_t *d, tw_detect_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->events = d->events;
    out->anomalies = d->anomalies;
    out->tokens_tracked = tw_tokens_count(d->tokens);
    out->tokens_flagged = d->flagged;
    out->tokens_evicted = tw_tokens_evicted(d->tokens);
    out->principals_tracked = tw_tokens_count(d->principals);
    out->ips_tracked = d->ips_used;
    out->memory_bytes = tw_tokens_memory(d->tokens) + tw_tokens_memory(d->principals) +
                        d->ip_sets * IP_WAYS * sizeof *d->ips;
}

const tw_baseline_t *tw_detect_token(tw_detect_t *d, uint64_t token_id)
{
    tw_token_t *e = tw_tokens_find(d->tokens, token_id);
    if (!e)
        return NULL;
    tw_baseline_hours_flush(&e->b);
    return &e->b;
}

/* ---- access for persistence (persist.c) -------------------------------- */

tw_tokens_t *tw_detect_tokens(tw_detect_t *d) { return d->tokens; }
tw_tokens_t *tw_detect_principals(tw_detect_t *d) { return d->principals; }
tw_geo_t *tw_detect_geo(const tw_detect_t *d) { return d->geo; }

static bool count_flagged(void *ctx, const tw_token_t *e)
{
    if (e->b.flags & TW_BL_FLAGGED)
        (*(uint64_t *)ctx)++;
    return true;
}

void tw_detect_recount(tw_detect_t *d)
{
    uint64_t n = 0;
    tw_tokens_each(d->tokens, count_flagged, &n);
    d->flagged = n;
}

void tw_detect_clear(tw_detect_t *d)
{
    tw_detect_flush(d);
    size_t tmax = tw_tokens_capacity(d->tokens), pmax = tw_tokens_capacity(d->principals);
    tw_tokens_free(d->tokens);
    tw_tokens_free(d->principals);
    d->tokens = tw_tokens_new(tmax, on_evict, d);
    d->principals = tw_tokens_new(pmax, NULL, NULL);
    d->flagged = 0;
}
