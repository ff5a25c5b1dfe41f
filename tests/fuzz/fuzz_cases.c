/*
 * fuzz_cases.c — libFuzzer target: the flagged/frozen store (state_dir/
 * cases.json) through tw_cases_load, and what loads back through
 * tw_cases_save + tw_cases_load.
 *
 * Input: the bytes of cases.json, written into a private temp dir.
 *
 * Checks (cases.h's promises):
 *  - the file exists, so the answer is 0 or -1, never 1; a refusal leaves
 *    the store empty ("never half-loads") with a message that starts with
 *    the path;
 *  - a loaded store holds at most max_cases cases, each findable by its
 *    token id, with a known state, a severity 0..3, at most TW_CASE_RULES
 *    rules, TW_CASE_ANOMALIES anomalies (each with its event line) and
 *    TW_CASE_HISTORY history entries, and every fixed-size string
 *    NUL-terminated inside its buffer; every anomaly and entry is reachable
 *    through tw_case_anomaly_at / tw_case_entry_at and no more;
 *  - the API's list item (tw_case_item_json) of every case is a JSON
 *    object whose token_id is the case's;
 *  - the same file into a store of 2 cases loads exactly when the big load
 *    did and found at most 2 cases;
 *  - save, then load: what a load accepted, a save writes in a form the
 *    next load accepts, and it gives back the same cases field by field
 *    (the daemon would otherwise refuse to start after its own save).
 *
 * TW_FUZZ_VERBOSE=1 prints each load's result (for replays).
 */
#include "fuzz_common.h"

#include "cases.h"
#include "events.h"
#include "tokenid.h"

#include <cjson/cJSON.h>

#define MAX_CASES 64

static char load_path[600], save_path[600];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = fuzz_tmpdir();
    snprintf(load_path, sizeof load_path, "%s/%s", dir, TW_CASES_FILE);
    snprintf(save_path, sizeof save_path, "%s/saved.json", dir);
    return 0;
}

#define TERMINATED(buf) FUZZ_CHECK(memchr((buf), '\0', sizeof(buf)) != NULL)

typedef struct visit {
    tw_cases_t *s;
    size_t n;
    tw_jw_t w;
} visit_t;

static bool check_case(void *ctx, tw_case_t *c)
{
    visit_t *v = ctx;
    v->n++;
    FUZZ_CHECK(tw_cases_find(v->s, c->token_id) == c);
    FUZZ_CHECK((unsigned)c->state < TW_CASE__COUNT);
    FUZZ_CHECK(c->severity <= 3);
    FUZZ_CHECK(c->nrules <= TW_CASE_RULES);
    FUZZ_CHECK(c->recent_n <= TW_CASE_ANOMALIES && c->history_n <= TW_CASE_HISTORY);
    FUZZ_CHECK(c->recent_head < TW_CASE_ANOMALIES && c->history_head < TW_CASE_HISTORY);
    TERMINATED(c->hint);
    TERMINATED(c->principal);
    TERMINATED(c->rule);
    TERMINATED(c->ip);
    TERMINATED(c->country);
    TERMINATED(c->city);
    TERMINATED(c->input);
    for (unsigned i = 0; i < c->nrules; i++) {
        TERMINATED(c->rules[i]);
        FUZZ_CHECK(c->rules[i][0] != '\0');
    }
    if (c->job_json)
        fuzz_touch(c->job_json, strlen(c->job_json));
    for (unsigned i = 0; i < c->recent_n; i++) {
        const tw_case_anomaly_t *a = tw_case_anomaly_at(c, i);
        FUZZ_CHECK(a != NULL && a->json != NULL);
        fuzz_touch(a->json, strlen(a->json));
        TERMINATED(a->rule);
        FUZZ_CHECK(a->rule[0] != '\0' && a->severity <= 3);
    }
    FUZZ_CHECK(tw_case_anomaly_at(c, c->recent_n) == NULL);
    for (unsigned i = 0; i < c->history_n; i++) {
        const tw_case_entry_t *e = tw_case_entry_at(c, i);
        FUZZ_CHECK(e != NULL && (unsigned)e->state < TW_CASE__COUNT);
        TERMINATED(e->action);
        if (e->analyst)
            fuzz_touch(e->analyst, strlen(e->analyst));
        if (e->note)
            fuzz_touch(e->note, strlen(e->note));
    }
    FUZZ_CHECK(tw_case_entry_at(c, c->history_n) == NULL);

    tw_jw_reset(&v->w);
    tw_case_item_json(c, &v->w);
    cJSON *item = cJSON_ParseWithLength(v->w.buf, v->w.len);
    FUZZ_CHECK(cJSON_IsObject(item));
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "token_id");
    char ids[TW_TOKENID_STR_LEN + 1];
    FUZZ_CHECK(cJSON_IsString(id) &&
               strcmp(id->valuestring, tw_tokenid_format(c->token_id, ids)) == 0);
    cJSON_Delete(item);
    return true;
}

static void same_str(const char *a, const char *b)
{
    FUZZ_CHECK((a == NULL) == (b == NULL));
    FUZZ_CHECK(!a || strcmp(a, b) == 0);
}

static void same_case(const tw_case_t *a, const tw_case_t *b)
{
    FUZZ_CHECK(a->token_id == b->token_id);
    FUZZ_CHECK(strcmp(a->hint, b->hint) == 0 && strcmp(a->principal, b->principal) == 0);
    FUZZ_CHECK(a->state == b->state && a->frozen == b->frozen);
    FUZZ_CHECK(a->freeze_pending == b->freeze_pending &&
               a->unfreeze_pending == b->unfreeze_pending);
    FUZZ_CHECK(a->severity == b->severity && a->anomalies == b->anomalies &&
               a->freezes == b->freezes);
    FUZZ_CHECK(a->first_ns == b->first_ns && a->last_ns == b->last_ns);
    FUZZ_CHECK(a->frozen_at_ns == b->frozen_at_ns && a->freeze_until_ns == b->freeze_until_ns);
    FUZZ_CHECK(strcmp(a->rule, b->rule) == 0 && a->nrules == b->nrules);
    for (unsigned i = 0; i < a->nrules; i++)
        FUZZ_CHECK(strcmp(a->rules[i], b->rules[i]) == 0);
    FUZZ_CHECK(strcmp(a->ip, b->ip) == 0 && strcmp(a->country, b->country) == 0);
    FUZZ_CHECK(strcmp(a->city, b->city) == 0 && strcmp(a->input, b->input) == 0);
    same_str(a->job_json, b->job_json);
    FUZZ_CHECK(a->recent_n == b->recent_n && a->history_n == b->history_n);
    for (unsigned i = 0; i < a->recent_n; i++) {
        const tw_case_anomaly_t *x = tw_case_anomaly_at(a, i), *y = tw_case_anomaly_at(b, i);
        same_str(x->json, y->json);
        FUZZ_CHECK(x->time_ns == y->time_ns && x->severity == y->severity);
        FUZZ_CHECK(strcmp(x->rule, y->rule) == 0);
        FUZZ_CHECK(x->facts.kind == y->facts.kind && x->facts.asn == y->facts.asn);
        FUZZ_CHECK(strcmp(x->facts.country, y->facts.country) == 0);
        FUZZ_CHECK(x->facts.hour_of_week == y->facts.hour_of_week &&
                   x->facts.utc_offset_s == y->facts.utc_offset_s &&
                   x->facts.rate_count == y->facts.rate_count);
    }
    for (unsigned i = 0; i < a->history_n; i++) {
        const tw_case_entry_t *x = tw_case_entry_at(a, i), *y = tw_case_entry_at(b, i);
        FUZZ_CHECK(x->time_ns == y->time_ns && x->state == y->state);
        FUZZ_CHECK(strcmp(x->action, y->action) == 0);
        same_str(x->analyst, y->analyst);
        same_str(x->note, y->note);
    }
}

typedef struct pair {
    tw_cases_t *other;
    size_t n;
} pair_t;

static bool compare_case(void *ctx, tw_case_t *c)
{
    pair_t *p = ctx;
    const tw_case_t *d = tw_cases_find(p->other, c->token_id);
    FUZZ_CHECK(d != NULL);
    same_case(c, d);
    p->n++;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!load_path[0])
        LLVMFuzzerInitialize(NULL, NULL);
    fuzz_write_file(load_path, data, size);

    tw_cases_t *s = tw_cases_new(MAX_CASES);
    tw_err_t err;
    err.msg[0] = '\0';
    int rc = tw_cases_load(s, load_path, &err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (getenv("TW_FUZZ_VERBOSE"))
        fprintf(stderr, "  load -> %d, %zu cases %s\n", rc, tw_cases_count(s), rc ? err.msg : "");

    /* The same file into a store of 2. */
    tw_cases_t *small = tw_cases_new(2);
    tw_err_t err2;
    int rc_small = tw_cases_load(small, load_path, &err2);
    FUZZ_CHECK(rc_small == 0 || rc_small == -1);
    FUZZ_CHECK((rc_small == 0) == (rc == 0 && tw_cases_count(s) <= 2));
    FUZZ_CHECK(tw_cases_count(small) == (rc_small == 0 ? tw_cases_count(s) : 0));
    tw_cases_free(small);

    if (rc != 0) {
        FUZZ_CHECK(tw_cases_count(s) == 0);
        FUZZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
        FUZZ_CHECK(strncmp(err.msg, load_path, strlen(load_path)) == 0);
        visit_t v = {.s = s};
        tw_jw_init(&v.w);
        tw_cases_each(s, check_case, &v);
        FUZZ_CHECK(v.n == 0);
        tw_jw_free(&v.w);
        tw_cases_free(s);
        return 0;
    }

    FUZZ_CHECK(tw_cases_count(s) <= MAX_CASES);
    visit_t v = {.s = s};
    tw_jw_init(&v.w);
    tw_cases_each(s, check_case, &v);
    FUZZ_CHECK(v.n == tw_cases_count(s));
    tw_jw_free(&v.w);

    /* Save and load again: nothing lost, nothing refused. */
    FUZZ_CHECK(tw_cases_save(s, save_path, &err) == 0);
    tw_cases_t *t = tw_cases_new(MAX_CASES);
    if (tw_cases_load(t, save_path, &err) != 0) {
        fprintf(stderr, "a saved store does not load: %s\n", err.msg);
        FUZZ_CHECK(!"a store that loaded, saved, loads again");
    }
    FUZZ_CHECK(tw_cases_count(t) == tw_cases_count(s));
    pair_t p = {.other = t};
    tw_cases_each(s, compare_case, &p);
    FUZZ_CHECK(p.n == tw_cases_count(s));
    tw_cases_free(t);
    tw_cases_free(s);
    return 0;
}
