/*
 * fuzz_tz.c — libFuzzer target: TZif zone files (RFC 8536) through tw_tz,
 * the reader behind business hours (rules file, tw_tz_check) and the
 * hour-of-week profiles (tw_tz_offset per event).
 *
 * Input: the bytes of a zone file, written as ZONEINFO/Fuzz/Zone in a
 * private temp dir used as the zoneinfo root.
 *
 * Checks: tw_tz_check and tw_tz_offset agree on whether the zone loads; an
 * unknown zone answers -1 with offset 0; the offset cached for the interval
 * of the previous answer never differs from what a fresh tw_tz_t computes
 * for the same instant (a run of queries over many instants, in an order
 * that moves back and forth across transitions).
 */
#include "fuzz_common.h"

#include "tz.h"

static char zdir[512], zfile[600];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char sub[560];
    snprintf(zdir, sizeof zdir, "%s/zoneinfo", fuzz_tmpdir());
    snprintf(sub, sizeof sub, "%s/Fuzz", zdir);
    snprintf(zfile, sizeof zfile, "%s/Zone", sub);
    FUZZ_SETUP(mkdir(zdir, 0700) == 0 || errno == EEXIST, "mkdir %s", zdir);
    FUZZ_SETUP(mkdir(sub, 0700) == 0 || errno == EEXIST, "mkdir %s", sub);
    return 0;
}

static const int64_t instants[] = {
    INT64_MIN, -4000000000LL, -2147483648LL, -1, 0, 1, 946684800, 1711846800,
    1711850400, 1729990800, 1798761600, 2147483647, 2147483648LL, 4102444800LL, INT64_MAX,
};
#define NINSTANTS (sizeof instants / sizeof instants[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!zdir[0])
        LLVMFuzzerInitialize(NULL, NULL);
    fuzz_write_file(zfile, data, size);

    tw_err_t err;
    int ok = tw_tz_check(zdir, "Fuzz/Zone", &err) == 0;

    tw_tz_t *cached = tw_tz_new(zdir);
    /* Forward, backward, then alternating ends: each step may hit or miss
     * the interval cached by the step before. */
    size_t order[3 * NINSTANTS];
    size_t k = 0;
    for (size_t i = 0; i < NINSTANTS; i++)
        order[k++] = i;
    for (size_t i = NINSTANTS; i-- > 0;)
        order[k++] = i;
    for (size_t i = 0; i < NINSTANTS; i++)
        order[k++] = i % 2 ? NINSTANTS - 1 - i / 2 : i / 2;

    for (size_t s = 0; s < k; s++) {
        int64_t t = instants[order[s]];
        int32_t off = 12345, fresh_off = 54321;
        int rc = tw_tz_offset(cached, "Fuzz/Zone", t, &off);
        FUZZ_CHECK(rc == (ok ? 0 : -1));
        if (rc != 0) {
            FUZZ_CHECK(off == 0);
            continue;
        }
        tw_tz_t *fresh = tw_tz_new(zdir);
        FUZZ_CHECK(tw_tz_offset(fresh, "Fuzz/Zone", t, &fresh_off) == 0);
        tw_tz_free(fresh);
        FUZZ_CHECK(off == fresh_off);
        /* One second later: inside the same interval or the next one. */
        if (t < INT64_MAX) {
            int32_t next;
            FUZZ_CHECK(tw_tz_offset(cached, "Fuzz/Zone", t + 1, &next) == 0);
        }
    }
    /* Names that must never reach the file system. */
    int32_t off;
    FUZZ_CHECK(tw_tz_offset(cached, "../zoneinfo/Fuzz/Zone", 0, &off) == -1 && off == 0);
    FUZZ_CHECK(tw_tz_offset(cached, "", 0, &off) == 0 && off == 0);
    tw_tz_free(cached);
    return 0;
}
