/* test_detect.c — rules file validation and the detector's rule logic
 * (suppressions, learning, principal fallback, cooldowns, allowlists,
 * eviction), with the test GeoIP databases in testdata/geoip. */
#include "detect.h"
#include "tw_test.h"


#include <stdlib.h>
#include <unistd.h>

#define S 1000000000LL
#define MON 1793577600LL   /* 2026-11-02T00:00:00Z, Monday */

static char out[1 << 16];
static size_t outlen;
static int nevents;

static void sink(void *ctx, const tw_anomaly_t *a)
{
    (void)ctx;
    const char *line = a->line;
    size_t len = a->len;
    if (outlen + len < sizeof out) {
        memcpy(out + outlen, line, len);
        outlen += len;
        out[outlen] = '\0';
    }
    nevents++;
}

static void reset_out(void)
{
    outlen = 0;
    out[0] = '\0';
    nevents = 0;
}

static int count(const char *needle)
{
    int n = 0;
    for (const char *p = out; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void ev(tw_detect_t *d, int64_t t_s, const char *ip, const char *user, const char *tok,
               bool rejected)
{
    tw_event_t e;
    memset(&e, 0, sizeof e);
    e.token = (tw_slice_t){tok, strlen(tok)};
    e.ip = (tw_slice_t){ip, strlen(ip)};
    if (user)
        e.user = (tw_slice_t){user, strlen(user)};
    e.time_ns = t_s * S;
    e.rejected = rejected;
    tw_detect_event(d, "test", &e);
}

static tw_rules_t *rules_from(const char *text)
{
    tw_rules_t *r;
    tw_err_t err;
    if (tw_rules_parse(&r, "rules.json", text, strlen(text), &err) != 0) {
        fprintf(stderr, "rules: %s\n", err.msg);
        return NULL;
    }
    return r;
}

static void expect_error(const char *text, const char *want)
{
    tw_rules_t *r;
    tw_err_t err;
    int rc = tw_rules_parse(&r, "rules.json", text, strlen(text), &err);
    TW_CHECK_INT(rc, -1);
    if (rc == 0) {
        tw_rules_free(r);
        return;
    }
    if (!strstr(err.msg, want)) {
        fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err.msg, want);
        TW_CHECK(0);
    } else {
        TW_CHECK(1);
    }
}

/* Ten weekday office days from ip for token tok (principal user). */
static void learn_office(tw_detect_t *d, const char *ip, const char *user, const char *tok,
                         int utc_hour)
{
    for (int day = 0; day < 10; day++)
        for (int k = 0; k < 8; k++)
            ev(d, MON + day * 86400 + (utc_hour + k) * 3600, ip, user, tok, false);
}


int main(void)
{
    const char *src = getenv("TW_SOURCE_DIR");
    if (!src)
        src = ".";
    char city[1024], asn[1024], tmpl[] = "/tmp/tw-detect-XXXXXX";
    snprintf(city, sizeof city, "%s/testdata/geoip/GeoLite2-City-Test.mmdb", src);
    snprintf(asn, sizeof asn, "%s/testdata/geoip/GeoLite2-ASN-Test.mmdb", src);

    /* ---- rules validation ------------------------------------------- */
    expect_error("{\"rules\":[{\"id\":\"x\",\"kind\":\"speed\",\"severity\":\"low\"}]}",
                 "rules.json: rules[0].kind: expected \"rate\"");
    expect_error("{\"rules\":[{\"id\":\"x\",\"kind\":\"rate\",\"severity\":\"urgent\"}]}",
                 "rules[0].severity: expected");
    expect_error("{\"rules\":[{\"id\":\"x\",\"kind\":\"rate\",\"severity\":\"low\",\"max_kmh\":1}]}",
                 "rules[0].max_kmh");
    expect_error("{\"rules\":[{\"id\":\"x\",\"kind\":\"geo_velocity\",\"severity\":\"low\","
                 "\"max_kmh\":-5}]}",
                 "rules[0].max_kmh: expected a number");
    expect_error("{\"rules\":[{\"id\":\"x\",\"kind\":\"rate\",\"severity\":\"low\"},"
                 "{\"id\":\"x\",\"kind\":\"rate\",\"severity\":\"low\"}]}",
                 "rules[1].id: expected a unique id");
    expect_error("{\"rules\":[{\"id\":\"o\",\"kind\":\"off_hours\",\"severity\":\"low\","
                 "\"policy\":true}]}",
                 "rules[0].policy: expected a top-level \"business_hours\"");
    expect_error("{\"allowlist\":{\"cidrs\":[\"10.0.0.0/33\"]},\"rules\":[]}",
                 "allowlist.cidrs[0]: expected a CIDR");
    expect_error("{\"allowlist\":{\"token_ids\":[\"tw_XYZ\"]},\"rules\":[]}",
                 "allowlist.token_ids[0]: expected a token id");
    expect_error("{\"business_hours\":{\"time_zone\":\"Mars/Base\",\"start\":\"08:00\","
                 "\"end\":\"18:00\"},\"rules\":[]}",
                 "business_hours.time_zone: expected an IANA time zone");
    expect_error("{\"business_hours\":{\"time_zone\":\"Europe/Berlin\",\"start\":\"18:00\","
                 "\"end\":\"08:00\"},\"rules\":[]}",
                 "business_hours.end");
    expect_error("{\"learning\":{\"min_events\":\"10\"},\"rules\":[]}", "learning.min_events");
    expect_error("{\"rulez\":[]}", "rulez");
    expect_error("{\"rules\":[{\"id\":\"f\",\"kind\":\"failures\",\"scope\":\"host\","
                 "\"severity\":\"low\"}]}",
                 "rules[0].scope: expected \"token\" or \"ip\"");
    {
        char path[1024];
        snprintf(path, sizeof path, "%s/rules/default.json", src);
        tw_rules_t *r;
        tw_err_t err;
        TW_CHECK_INT(tw_rules_load(&r, path, &err), 0);
        if (r) {
            TW_CHECK_INT(r->nrules, 6);
            TW_CHECK_INT(r->min_events, 10);
            TW_CHECK_INT(r->min_days, 7);
            tw_rules_free(r);
        }
    }

    /* ---- CIDRs ------------------------------------------------------- */
    tw_cidr_t c;
    tw_geo_addr_t a;
    TW_CHECK_INT(tw_cidr_parse("10.8.0.0/16", &c), 0);
    tw_geo_addr_parse("10.8.200.1", 10, &a);
    TW_CHECK(tw_cidr_contains(&c, &a));
    tw_geo_addr_parse("10.9.0.1", 8, &a);
    TW_CHECK(!tw_cidr_contains(&c, &a));
    TW_CHECK_INT(tw_cidr_parse("2001:db8::/32", &c), 0);
    tw_geo_addr_parse("2001:db8:1::5", 13, &a);
    TW_CHECK(tw_cidr_contains(&c, &a));
    TW_CHECK_INT(tw_cidr_parse("10.8.0.1/24", &c), 0);   /* host bits are masked */
    tw_geo_addr_parse("10.8.0.77", 9, &a);
    TW_CHECK(tw_cidr_contains(&c, &a));
    TW_CHECK_INT(tw_cidr_parse("10.8.0.0/", &c), -1);
    TW_CHECK_INT(tw_cidr_parse("nonsense", &c), -1);
    TW_CHECK_INT(tw_cidr_parse("0.0.0.0/0", &c), 0);

    /* ---- detector ---------------------------------------------------- */
    if (!mkdtemp(tmpl))
        return 1;
    tw_err_t err;
    tw_tokenid_t *key;
    TW_CHECK_INT(tw_tokenid_open(&key, tmpl, &err), 0);
    tw_geo_t *geo = NULL, *geo_asn = NULL;
    if (tw_geo_open(&geo, city, NULL, 1024, &err) != 0 ||
        tw_geo_open(&geo_asn, city, asn, 1024, &err) != 0) {
        fprintf(stderr, "no test GeoIP db (%s): %s\n", city, err.msg);
        return 1;
    }
    tw_rules_t *R = rules_from(
        "{\"learning\":{\"min_events\":10,\"min_days\":7},\"cooldown_s\":3600,"
        "\"allowlist\":{\"cidrs\":[\"198.51.100.160/27\"]},"
        "\"rules\":["
        "{\"id\":\"rate\",\"kind\":\"rate\",\"severity\":\"high\"},"
        "{\"id\":\"fail\",\"kind\":\"failures\",\"severity\":\"medium\"},"
        "{\"id\":\"spray\",\"kind\":\"failures\",\"scope\":\"ip\",\"severity\":\"high\"},"
        "{\"id\":\"travel\",\"kind\":\"geo_velocity\",\"severity\":\"critical\",\"action\":\"freeze\"},"
        "{\"id\":\"newc\",\"kind\":\"geo_new\",\"severity\":\"low\"},"
        "{\"id\":\"off\",\"kind\":\"off_hours\",\"severity\":\"medium\"}]}");
    TW_CHECK(R != NULL);
    tw_detect_opts_t o = {.rules = R, .geo = geo, .key = key, .max_tokens = 1000, .sink = sink};
    tw_detect_t *d = tw_detect_new(&o);

    /* Same /24 (Berlin 192.0.2.10 and Paris 192.0.2.200): no travel. */
    reset_out();
    learn_office(d, "192.0.2.10", "u1", "tok-same24-000000001", 8);
    ev(d, MON + 10 * 86400 + 9 * 3600, "192.0.2.10", "u1", "tok-same24-000000001", false);
    ev(d, MON + 10 * 86400 + 9 * 3600 + 60, "192.0.2.200", "u1", "tok-same24-000000001", false);
    TW_CHECK_INT(count("\"rule\":\"travel\""), 0);
    TW_CHECK_INT(count("\"rule\":\"newc\""), 1);   /* FR is new all the same */

    /* Different /24, same ASN 64500 (Frankfurt DC → Singapore DC): flagged
     * without an ASN db (ASN unknown), suppressed with one. */
    reset_out();
    learn_office(d, "192.0.2.70", "u2", "tok-dc-0000000000002", 8);
    ev(d, MON + 9 * 86400 + 16 * 3600, "203.0.113.70", "u2", "tok-dc-0000000000002", false);
    TW_CHECK_INT(count("\"rule\":\"travel\""), 1);
    TW_CHECK(strstr(out, "\"from\":{\"ip\":\"192.0.2.70\",\"country\":\"DE\"") != NULL);
    TW_CHECK(strstr(out, "\"action\":\"freeze\"") != NULL);
    tw_detect_opts_t o2 = o;
    o2.geo = geo_asn;
    tw_detect_t *d2 = tw_detect_new(&o2);
    reset_out();
    learn_office(d2, "192.0.2.70", "u2", "tok-dc-0000000000002", 8);
    ev(d2, MON + 9 * 86400 + 16 * 3600, "203.0.113.70", "u2", "tok-dc-0000000000002", false);
    TW_CHECK_INT(count("\"rule\":\"travel\""), 0);
    tw_detect_free(d2);

    /* A real flight: Berlin → New York in 9 hours (~6,400 km): no travel. */
    reset_out();
    learn_office(d, "192.0.2.11", "u3", "tok-flyer-0000000003", 8);
    ev(d, MON + 10 * 86400 + 6 * 3600, "192.0.2.11", "u3", "tok-flyer-0000000003", false);
    ev(d, MON + 10 * 86400 + 15 * 3600, "198.51.100.5", "u3", "tok-flyer-0000000003", false);
    TW_CHECK_INT(count("\"rule\":\"travel\""), 0);

    /* Private and unlocatable addresses never fire geo rules. */
    reset_out();
    learn_office(d, "192.0.2.12", "u4", "tok-private-00000004", 8);
    ev(d, MON + 10 * 86400 + 9 * 3600, "10.1.2.3", "u4", "tok-private-00000004", false);
    ev(d, MON + 10 * 86400 + 9 * 3600 + 1, "not-an-ip", "u4", "tok-private-00000004", false);
    ev(d, MON + 10 * 86400 + 9 * 3600 + 2, "8.8.8.8", "u4", "tok-private-00000004", false);
    TW_CHECK_INT(count("\"kind\":\"geo_"), 0);

    /* Learning: a brand-new token (no principal) is not judged by geo_new. */
    reset_out();
    ev(d, MON + 9 * 86400, "192.0.2.13", NULL, "tok-fresh-0000000005", false);
    ev(d, MON + 9 * 86400 + 7200, "198.51.100.6", NULL, "tok-fresh-0000000005", false);
    TW_CHECK_INT(count("\"rule\":\"newc\""), 0);

    /* Principal fallback: a new token of a mature principal is judged from
     * its first use (new country; off-hours against the principal). */
    reset_out();
    learn_office(d, "192.0.2.14", "rotator", "tok-rot-day0-0000006", 8);
    ev(d, MON + 10 * 86400 + 10 * 3600, "198.51.100.7", "rotator", "tok-rot-day10-000006", false);
    TW_CHECK_INT(count("\"rule\":\"newc\""), 1);
    TW_CHECK(strstr(out, "\"known_countries\":[\"DE\"]") != NULL);

    /* Allowlisted VPN egress: no rule fires, and it does not move the
     * token's location (so the next home use is not travel either). */
    reset_out();
    learn_office(d, "192.0.2.130", "u7", "tok-vpn-000000000007", 8);
    ev(d, MON + 10 * 86400 + 9 * 3600, "198.51.100.170", "u7", "tok-vpn-000000000007", false);
    ev(d, MON + 10 * 86400 + 9 * 3600 + 60, "192.0.2.130", "u7", "tok-vpn-000000000007", false);
    TW_CHECK_INT(nevents, 0);

    /* Failures with cooldown: 100 rejections → one event. */
    reset_out();
    for (int i = 0; i < 100; i++)
        ev(d, MON + 11 * 86400 + i, "192.0.2.15", "u8", "tok-fail-00000000008", true);
    TW_CHECK_INT(count("\"rule\":\"fail\""), 1);
    TW_CHECK(strstr(out, "\"rejected\":20,\"checks\":20") != NULL);
    /* After the cooldown a continuing burst fires again. */
    for (int i = 0; i < 30; i++)
        ev(d, MON + 11 * 86400 + 3700 + i, "192.0.2.15", "u8", "tok-fail-00000000008", true);
    TW_CHECK_INT(count("\"rule\":\"fail\""), 2);

    /* Spraying: one IP, many tokens, one rejection each. */
    reset_out();
    char tok[64];
    for (int i = 0; i < 60; i++) {
        snprintf(tok, sizeof tok, "spray-%020d", i);
        ev(d, MON + 12 * 86400 + i, "198.51.100.9", NULL, tok, true);
    }
    TW_CHECK_INT(count("\"rule\":\"spray\""), 1);
    TW_CHECK(strstr(out, "\"scope\":\"ip\",\"window_s\":600,\"rejected\":30") != NULL);
    TW_CHECK_INT(count("\"rule\":\"fail\""), 0);

    /* Rate: ceiling for a new token, learned baseline for a mature one. */
    reset_out();
    for (int i = 0; i < 700; i++)
        ev(d, MON + 13 * 86400, "192.0.2.16", NULL, "tok-burst-new-000009", false);
    TW_CHECK_INT(count("\"rule\":\"rate\""), 1);
    TW_CHECK(strstr(out, "\"count\":601,\"baseline_mean\":0.00") != NULL);

    /* Off-hours: New York office hours, then 03:00 local. */
    reset_out();
    learn_office(d, "198.51.100.12", "u10", "tok-night-0000000010", 14);
    ev(d, MON + 10 * 86400 + 8 * 3600, "198.51.100.12", "u10", "tok-night-0000000010", false);
    TW_CHECK_INT(count("\"rule\":\"off\""), 1);
    TW_CHECK(strstr(out, "\"time_zone\":\"America/New_York\"") != NULL);
    /* ... and 10:00 local the next day is fine. */
    reset_out();
    ev(d, MON + 11 * 86400 + 15 * 3600, "198.51.100.12", "u10", "tok-night-0000000010", false);
    TW_CHECK_INT(nevents, 0);

    /* Raw tokens never appear in events. */
    TW_CHECK_INT(count("tok-"), 0);

    tw_detect_stats_t st;
    tw_detect_stats(d, &st);
    TW_CHECK(st.tokens_flagged >= 6);
    TW_CHECK(st.tokens_tracked > 60);
    tw_detect_free(d);

    /* Token allowlist, and eviction with the flagged gauge kept right. */
    tw_rules_free(R);
    R = rules_from("{\"allowlist\":{\"token_ids\":[]},\"rules\":[{\"id\":\"fail\","
                   "\"kind\":\"failures\",\"severity\":\"low\",\"min_rejected\":2}]}");
    tw_metrics_t *m = tw_metrics_new();
    tw_detect_opts_t o3 = {.rules = R, .geo = NULL, .key = key, .max_tokens = 10,
                           .metrics = m, .sink = sink};
    d = tw_detect_new(&o3);
    reset_out();
    ev(d, MON, "192.0.2.1", NULL, "flag-me-000000000000", true);
    ev(d, MON + 1, "192.0.2.1", NULL, "flag-me-000000000000", true);
    TW_CHECK_INT(nevents, 1);
    for (int i = 0; i < 20; i++) {
        snprintf(tok, sizeof tok, "filler-%020d", i);
        ev(d, MON + 10 + i, "192.0.2.1", NULL, tok, false);
    }
    tw_detect_stats(d, &st);
    TW_CHECK_INT(st.tokens_tracked, 10);
    TW_CHECK_INT(st.tokens_evicted, 11);
    TW_CHECK_INT(st.tokens_flagged, 0);
    tw_detect_publish(d);
    size_t len;
    char *text = tw_metrics_render(m, &len);
    TW_CHECK(strstr(text, "tokenwatch_anomalies_total{rule=\"fail\",kind=\"failures\","
                          "severity=\"low\"} 1") != NULL);
    TW_CHECK(strstr(text, "tokenwatch_tokens_evicted_total 11") != NULL);
    TW_CHECK(strstr(text, "tokenwatch_tokens_tracked 10") != NULL);
    free(text);
    /* Reload with a token allowlist: same baselines, the token is exempt. */
    char idtxt[TW_TOKENID_STR_LEN + 1], rtext[512];
    tw_tokenid_format(tw_tokenid_of(key, (tw_slice_t){"allow-me-00000000000", 20}), idtxt);
    snprintf(rtext, sizeof rtext,
             "{\"allowlist\":{\"token_ids\":[\"%s\"]},\"rules\":[{\"id\":\"fail\","
             "\"kind\":\"failures\",\"severity\":\"low\",\"min_rejected\":2}]}",
             idtxt);
    tw_rules_t *R2 = rules_from(rtext);
    tw_detect_set_rules(d, R2);
    reset_out();
    for (int i = 0; i < 5; i++)
        ev(d, MON + 100 + i, "192.0.2.1", NULL, "allow-me-00000000000", true);
    TW_CHECK_INT(nevents, 0);
    tw_detect_free(d);
    tw_metrics_free(m);
    tw_rules_free(R);
    tw_rules_free(R2);

    tw_geo_close(geo);
    tw_geo_close(geo_asn);
    tw_tokenid_free(key);
    if (tw_test_rmtree(tmpl) != 0)
        return 1;
    return tw_test_done();
}
