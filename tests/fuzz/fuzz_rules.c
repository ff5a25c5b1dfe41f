/*
 * fuzz_rules.c — libFuzzer target: detection rules files (rules/NAME.json,
 * the config's "rules_file") through tw_rules_parse, the in-memory half of
 * tw_rules_load: jsonv validation, rule kinds and their ranges, allowlist
 * CIDRs and token ids, business hours (days, HH:MM, time zone check against
 * /usr/share/zoneinfo).
 *
 * Input: the file's bytes, handed over in an exactly-sized buffer that is
 * not NUL-terminated (the header promises "text already in memory" with a
 * length).
 *
 * Checks: a failure leaves *out alone and names the file; a success keeps
 * what detect.h promises: at most TW_RULES_MAX rules,
 * ids valid and unique, kinds/severities/actions with names, token ids sorted,
 * CIDR prefixes within the address size, business hours with start < end and
 * at least one day, policy rules only with business hours.
 */
#include "fuzz_common.h"

#include "detect.h"

#define FILE_NAME "fuzz-rules.json"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tw_rules_t *r = (tw_rules_t *)1;
    tw_err_t err;
    err.msg[0] = '\0';
    if (tw_rules_parse(&r, FILE_NAME, (const char *)data, size, &err) != 0) {
        FUZZ_CHECK(r == (tw_rules_t *)1);
        FUZZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
        FUZZ_CHECK(strncmp(err.msg, FILE_NAME ": ", strlen(FILE_NAME) + 2) == 0);
        return 0;
    }
    FUZZ_CHECK(r != NULL && r != (tw_rules_t *)1);
    FUZZ_CHECK(r->file && strcmp(r->file, FILE_NAME) == 0);
    FUZZ_CHECK(r->nrules <= TW_RULES_MAX);
    for (size_t i = 0; i < r->nrules; i++) {
        const tw_rule_t *ru = &r->rules[i];
        size_t n = strlen(ru->id);
        FUZZ_CHECK(n >= 1 && n <= 64);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(r->rules[j].id, ru->id) != 0);
        FUZZ_CHECK(strcmp(tw_rule_kind_name(ru->kind), "unknown") != 0);
        FUZZ_CHECK(strcmp(tw_severity_name(ru->severity), "unknown") != 0);
        FUZZ_CHECK(strcmp(tw_action_name(ru->action), "unknown") != 0);
        if (ru->kind == TW_KIND_OFF_HOURS) {
            FUZZ_CHECK(ru->learned || ru->policy);
            FUZZ_CHECK(!ru->policy || r->has_business_hours);
        }
        if (ru->kind == TW_KIND_GEO_NEW)
            FUZZ_CHECK(ru->countries || ru->asns);
    }
    for (size_t i = 1; i < r->ntoken_ids; i++)
        FUZZ_CHECK(r->token_ids[i - 1] <= r->token_ids[i]);
    for (size_t i = 0; i < r->ncidrs; i++) {
        const tw_cidr_t *c = &r->cidrs[i];
        FUZZ_CHECK(c->bits <= (c->addr.family == 4 ? 32 : 128));
        FUZZ_CHECK(tw_cidr_contains(c, &c->addr));   /* stored masked, so inside itself */
    }
    if (r->has_business_hours) {
        FUZZ_CHECK(r->bh_time_zone && r->bh_time_zone[0]);
        FUZZ_CHECK(r->bh_start_min < r->bh_end_min && r->bh_end_min <= 24 * 60);
        FUZZ_CHECK(r->bh_days != 0 && r->bh_days < 0x80);
    }
    tw_rules_free(r);
    return 0;
}
