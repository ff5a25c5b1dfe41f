/*
 * test_cases.c — the flagged/frozen store (cases.h): index, eviction that
 * never drops a frozen or pending case, evidence and history rings, and the
 * cases.json round trip with its refusals (corrupt, truncated, newer,
 * duplicate, out of range).
 */
#include "cases.h"
#include "tw_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char id_a[] = "failure_burst", id_b[] = "new_country";
static tw_rule_t rule_a = {.id = id_a, .kind = TW_KIND_FAILURES,
                           .severity = TW_SEV_HIGH, .action = TW_ACT_FREEZE};
static tw_rule_t rule_b = {.id = id_b, .kind = TW_KIND_GEO_NEW,
                           .severity = TW_SEV_LOW, .action = TW_ACT_FLAG};

static tw_anomaly_t anomaly(const tw_rule_t *r, int64_t t, const char *line)
{
    tw_anomaly_t a = {
        .line = line,
        .len = strlen(line),
        .token = {"at-secret-raw-0001", 18},
        .user = {"alice", 5},
        .token_hint = "at-…0001",
        .rule = r,
        .time_ns = t,
        .input = "gw",
        .ip = {"203.0.113.7", 11},
        .country = "DE",
        .city = "Berlin",
    };
    a.facts.kind = r->kind;
    a.facts.hour_of_week = 27;
    a.facts.utc_offset_s = 3600;
    memcpy(a.facts.country, "DE", 3);
    a.facts.asn = 3320;
    return a;
}

static void test_index_and_eviction(void)
{
    tw_cases_t *s = tw_cases_new(10);
    bool created;
    /* Many ids in a small table: probing, then removal by eviction with the
     * backward shift, must keep every remaining id findable. */
    for (uint64_t id = 1; id <= 10; id++) {
        tw_case_t *c = tw_cases_add(s, id * 0x10, &created);   /* same home slot bits */
        TW_CHECK(c && created);
        c->last_ns = (int64_t)id;
        if (id <= 3)
            c->frozen = true;          /* never evicted */
        if (id == 4)
            c->freeze_pending = true;  /* never evicted */
    }
    TW_CHECK_INT(tw_cases_count(s), 10);
    TW_CHECK(tw_cases_add(s, 0x10, &created) && !created);
    /* Full: the idle-longest replaceable case (id 5) goes. */
    tw_case_t *c = tw_cases_add(s, 0x999, &created);
    TW_CHECK(c && created);
    c->last_ns = 100;
    TW_CHECK(tw_cases_find(s, 0x50) == NULL);
    for (uint64_t id = 1; id <= 10; id++)
        if (id != 5)
            TW_CHECK(tw_cases_find(s, id * 0x10) != NULL);
    TW_CHECK(tw_cases_find(s, 0x999) != NULL);
    /* Make every case frozen: a new one is refused and counted. */
    for (uint64_t id = 1; id <= 10; id++) {
        tw_case_t *k = tw_cases_find(s, id * 0x10);
        if (k)
            k->frozen = true;
    }
    c->frozen = true;
    TW_CHECK(tw_cases_add(s, 0x777, &created) == NULL);
    TW_CHECK_INT(tw_cases_refused(s), 1);
    tw_cases_free(s);
}

static void test_rings(void)
{
    tw_cases_t *s = tw_cases_new(10);
    bool created;
    tw_case_t *c = tw_cases_add(s, 42, &created);
    char line[128];
    for (int i = 0; i < TW_CASE_ANOMALIES + 3; i++) {
        snprintf(line, sizeof line, "{\"n\":%d}\n", i);
        tw_anomaly_t a = anomaly(i % 2 ? &rule_b : &rule_a, 1000 + i, line);
        tw_case_note_anomaly(c, &a);
    }
    TW_CHECK_INT(c->anomalies, TW_CASE_ANOMALIES + 3);
    TW_CHECK_INT(c->recent_n, TW_CASE_ANOMALIES);
    snprintf(line, sizeof line, "{\"n\":%d}", TW_CASE_ANOMALIES + 2);
    TW_CHECK_STR(tw_case_anomaly_at(c, 0)->json, line);   /* newest, without '\n' */
    TW_CHECK_STR(tw_case_anomaly_at(c, TW_CASE_ANOMALIES - 1)->json, "{\"n\":3}");
    TW_CHECK(tw_case_anomaly_at(c, TW_CASE_ANOMALIES) == NULL);
    TW_CHECK_INT(c->severity, TW_SEV_HIGH);
    TW_CHECK_INT(c->first_ns, 1000);
    TW_CHECK_INT(c->last_ns, 1000 + TW_CASE_ANOMALIES + 2);
    TW_CHECK_INT(c->nrules, 2);
    TW_CHECK_STR(c->principal, "alice");
    TW_CHECK_STR(c->city, "Berlin");
    for (int i = 0; i < TW_CASE_HISTORY + 5; i++)
        tw_case_log(c, i, i % 2 ? "ack" : "flagged", i % 2 ? TW_CASE_ACKED : TW_CASE_FLAGGED,
                    i % 2 ? "bob" : NULL, i % 2 ? "looked" : NULL);
    TW_CHECK_INT(c->history_n, TW_CASE_HISTORY);
    TW_CHECK_INT(tw_case_entry_at(c, 0)->time_ns, TW_CASE_HISTORY + 4);
    TW_CHECK_STR(tw_case_entry_at(c, 0)->action, "flagged");
    TW_CHECK(tw_case_entry_at(c, 0)->analyst == NULL);
    TW_CHECK_INT(c->state, TW_CASE_FLAGGED);
    tw_cases_free(s);
}

static char dir[64];

static char *path_in(const char *name)
{
    static char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static void write_text(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    TW_CHECK(f != NULL);
    if (f) {
        fwrite(text, 1, len, f);
        fclose(f);
    }
}

static void test_round_trip_and_refusals(void)
{
    tw_cases_t *s = tw_cases_new(100);
    bool created;
    tw_case_t *c = tw_cases_add(s, 0xabcdef0123456789ULL, &created);
    tw_anomaly_t a = anomaly(&rule_a, 1764403073000000000LL,
                             "{\"rule\":\"q\\\"uote\",\"x\":\"\\u00e9\"}\n");
    tw_case_note_anomaly(c, &a);
    tw_case_set_raw(c, "at-secret-raw-0001", 18);
    tw_case_set_job(c, "{\"action\":\"freeze\"", 18);
    c->freeze_pending = true;
    c->freezes = 3;
    c->frozen_at_ns = 1764403074000000000LL;
    c->freeze_until_ns = 1764403080000000000LL;
    tw_case_log(c, 5, "freeze_requested", TW_CASE_FREEZING, NULL, NULL);
    tw_case_log(c, 6, "ack", TW_CASE_ACKED, "bob \"the\" analyst", "note\nwith newline");
    tw_cases_add(s, 7, &created);
    tw_err_t err;
    TW_CHECK_INT(tw_cases_save(s, path_in("cases.json"), &err), 0);

    /* The raw token is never written. */
    char *text;
    size_t len;
    TW_CHECK_INT(tw_read_file(path_in("cases.json"), &text, &len, &err), 0);
    TW_CHECK(strstr(text, "at-secret-raw") == NULL);

    tw_cases_t *t = tw_cases_new(100);
    TW_CHECK_INT(tw_cases_load(t, path_in("cases.json"), &err), 0);
    TW_CHECK_INT(tw_cases_count(t), 2);
    tw_case_t *d = tw_cases_find(t, 0xabcdef0123456789ULL);
    TW_CHECK(d != NULL);
    if (d) {
        TW_CHECK_INT(d->state, TW_CASE_ACKED);
        TW_CHECK(d->freeze_pending && !d->frozen);
        TW_CHECK_INT(d->freezes, 3);
        TW_CHECK_INT(d->frozen_at_ns, 1764403074000000000LL);
        TW_CHECK_INT(d->freeze_until_ns, 1764403080000000000LL);
        TW_CHECK_STR(d->job_json, "{\"action\":\"freeze\"");
        TW_CHECK(d->raw == NULL);
        TW_CHECK_STR(tw_case_anomaly_at(d, 0)->json, "{\"rule\":\"q\\\"uote\",\"x\":\"\\u00e9\"}");
        TW_CHECK_INT(tw_case_anomaly_at(d, 0)->facts.hour_of_week, 27);
        TW_CHECK_INT(tw_case_anomaly_at(d, 0)->facts.asn, 3320);
        TW_CHECK_STR(tw_case_anomaly_at(d, 0)->facts.country, "DE");
        TW_CHECK_STR(tw_case_entry_at(d, 0)->analyst, "bob \"the\" analyst");
        TW_CHECK_STR(tw_case_entry_at(d, 0)->note, "note\nwith newline");
        TW_CHECK_STR(d->hint, "at-…0001");
        TW_CHECK_STR(d->rules[0], "failure_burst");
    }
    tw_cases_free(t);

    /* Missing file: nothing loaded. */
    t = tw_cases_new(100);
    TW_CHECK_INT(tw_cases_load(t, path_in("absent.json"), &err), 1);
    tw_cases_free(t);

    /* Every truncation is refused and leaves the store empty. */
    for (size_t cut = 0; cut < len; cut += (len / 60) + 1) {
        write_text(path_in("cut.json"), text, cut);
        t = tw_cases_new(100);
        TW_CHECK_INT(tw_cases_load(t, path_in("cut.json"), &err), -1);
        TW_CHECK_INT(tw_cases_count(t), 0);
        tw_cases_free(t);
    }
    /* Newer version. */
    const char *newer = "{\"version\":99,\"cases\":[]}";
    write_text(path_in("newer.json"), newer, strlen(newer));
    t = tw_cases_new(100);
    TW_CHECK_INT(tw_cases_load(t, path_in("newer.json"), &err), -1);
    TW_CHECK(strstr(err.msg, "newer tokenwatch") != NULL);
    TW_CHECK(strstr(err.msg, "newer.json") != NULL);
    tw_cases_free(t);
    /* More cases than max_cases. */
    t = tw_cases_new(1);
    TW_CHECK_INT(tw_cases_load(t, path_in("cases.json"), &err), -1);
    TW_CHECK(strstr(err.msg, "max_cases") != NULL);
    tw_cases_free(t);
    /* A bad state name and a bad id, with the JSON path. */
    const char *bad = "{\"version\":1,\"cases\":[{\"token_id\":\"tw_zz\"}]}";
    write_text(path_in("bad.json"), bad, strlen(bad));
    t = tw_cases_new(10);
    TW_CHECK_INT(tw_cases_load(t, path_in("bad.json"), &err), -1);
    TW_CHECK(strstr(err.msg, "cases[0]") != NULL);
    tw_cases_free(t);
    free(text);
    unlink(path_in("cases.json"));
    unlink(path_in("cut.json"));
    unlink(path_in("newer.json"));
    unlink(path_in("bad.json"));
    tw_cases_free(s);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/tw_test_cases_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_index_and_eviction();
    test_rings();
    test_round_trip_and_refusals();
    rmdir(dir);
    return tw_test_done();
}
