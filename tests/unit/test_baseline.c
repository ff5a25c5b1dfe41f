/* test_baseline.c — rate EWMA, failure windows, hour-of-week profile with
 * decay, country/ASN memory, learning, haversine. */
#include "baseline.h"
#include "tw_test.h"

#include <math.h>

#define S 1000000000LL
/* 2026-11-02T00:00:00Z, a Monday. */
#define MON 1793577600LL

/* tw_window_index() is s / w whatever the previous index: near it (the
 * cases it answers without dividing), far from it, and at the edges of
 * 32 bits. */
static void test_window_index(void)
{
    static const uint32_t ws[] = {1, 2, 7, 60, 300, 3600, 86400, 1u << 31, UINT32_MAX};
    uint64_t x = 88172645463325252ULL;
    size_t wrong = 0;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t w = i % 3 ? ws[x % (sizeof ws / sizeof ws[0])] : (uint32_t)(x >> 40) + 1;
        uint32_t s = (uint32_t)(x >> 8);
        if (i % 5 == 0)
            s = UINT32_MAX - (uint32_t)(x % 4);
        uint32_t q = s / w;
        int64_t off = (int64_t)((x >> 33) % 7) - 3;   /* prev within 3 windows of s's */
        uint32_t prev = i % 4 == 0 ? (uint32_t)(x >> 20)
                                   : (uint32_t)((int64_t)q + off < 0 ? 0 : (int64_t)q + off);
        wrong += tw_window_index(s, w, prev) != q;
    }
    TW_CHECK_INT(wrong, 0);
    TW_CHECK_INT(tw_window_index(599, 300, 1), 1);
    TW_CHECK_INT(tw_window_index(600, 300, 1), 2);
    TW_CHECK_INT(tw_window_index(900, 300, 1), 3);
    TW_CHECK_INT(tw_window_index(299, 300, 1), 0);
    TW_CHECK_INT(tw_window_index(UINT32_MAX, 1, UINT32_MAX - 1), UINT32_MAX);
}

int main(void)
{
    test_window_index();
    tw_baseline_t b;
    memset(&b, 0, sizeof b);

    /* Learning: N events and D days, whichever is later. */
    for (int i = 0; i < 10; i++)
        tw_baseline_touch(&b, (MON + i * 60) * S);
    TW_CHECK(!tw_baseline_mature(&b, 10, 7));   /* 10 events, but 9 minutes */
    tw_baseline_touch(&b, (MON + 7 * 86400) * S);
    TW_CHECK(tw_baseline_mature(&b, 10, 7));
    /* Time never runs backwards. */
    TW_CHECK_INT(tw_baseline_touch(&b, MON * S), (MON + 7 * 86400) * S);

    /* Rate: 5 per minute for 20 minutes → mean 5, sd 0; a busy minute
     * counts up; an excluded window does not enter the EWMA. */
    memset(&b, 0, sizeof b);
    for (int m = 0; m < 20; m++)
        for (int k = 0; k < 5; k++)
            tw_baseline_rate_add(&b, (MON + m * 60 + k) * S, 60, 0.05f);
    tw_baseline_rate_add(&b, (MON + 20 * 60) * S, 60, 0.05f);   /* closes minute 19 */
    TW_CHECK(fabsf(b.rate_mean - 5.0f) < 1e-4f);
    TW_CHECK(tw_baseline_rate_sd(&b) < 1e-3f);
    TW_CHECK_INT(b.rate_windows, 20);
    uint32_t c = 0;
    for (int k = 0; k < 99; k++)
        c = tw_baseline_rate_add(&b, (MON + 20 * 60 + 1) * S, 60, 0.05f);
    TW_CHECK_INT(c, 100);
    tw_baseline_rate_exclude(&b);
    tw_baseline_rate_add(&b, (MON + 21 * 60) * S, 60, 0.05f);
    TW_CHECK(fabsf(b.rate_mean - 5.0f) < 1e-4f);
    TW_CHECK_INT(b.rate_windows, 20);

    /* Failures: a sliding two-bucket window. */
    tw_fail_window_t w;
    memset(&w, 0, sizeof w);
    uint32_t rej, chk;
    for (int i = 0; i < 10; i++)
        tw_fail_window_add(&w, (MON + i) * S, 300, true, &rej, &chk);
    TW_CHECK_INT(rej, 10);
    TW_CHECK_INT(chk, 10);
    tw_fail_window_add(&w, (MON + 20) * S, 300, false, &rej, &chk);
    TW_CHECK_INT(rej, 10);
    TW_CHECK_INT(chk, 11);
    /* Half-way through the next window, half of the previous one counts. */
    tw_fail_window_add(&w, (MON + 450) * S, 300, true, &rej, &chk);
    TW_CHECK_INT(rej, 1 + 5);
    /* Two windows later nothing of the old ones remains. */
    tw_fail_window_add(&w, (MON + 1200) * S, 300, false, &rej, &chk);
    TW_CHECK_INT(rej, 0);
    TW_CHECK_INT(chk, 1);

    /* Hour of week: Monday 00:00 = 0, Sunday 23:00 = 167. */
    TW_CHECK_INT(tw_hour_of_week(MON), 0);
    TW_CHECK_INT(tw_hour_of_week(MON + 3600 * 9 + 59), 9);
    TW_CHECK_INT(tw_hour_of_week(MON - 1), 167);
    TW_CHECK_INT(tw_hour_of_week(MON + 86400 * 2 + 3600 * 14), 62);
    /* Against day and hour arithmetic, across the epoch and far from it. */
    static const int64_t starts[] = {-400LL * 86400 - 7, -3 * 3600, MON - 90 * 86400,
                                     4102444800LL - 12345};
    for (size_t k = 0; k < sizeof starts / sizeof starts[0]; k++)
        for (int64_t s = starts[k]; s < starts[k] + 9 * 86400; s += 1799) {
            int64_t days = s >= 0 ? s / 86400 : (s - 86399) / 86400;   /* floored */
            int64_t sod = s - days * 86400;
            int64_t wd = ((days % 7) + 7 + 3) % 7;   /* 1970-01-01 was a Thursday */
            if (tw_hour_of_week(s) != (unsigned)(wd * 24 + sod / 3600)) {
                TW_CHECK_INT(tw_hour_of_week(s), (unsigned)(wd * 24 + sod / 3600));
                break;
            }
        }

    /* Profile: office hours; a 03:00 use has a tiny share, 10:00 a big one. */
    memset(&b, 0, sizeof b);
    TW_CHECK(tw_baseline_hours_share(&b, 3, 2, 0, true) == 1.0);   /* empty: no opinion */
    for (int d = 0; d < 5; d++)
        for (int h = 9; h < 17; h++) {
            int64_t s = MON + d * 86400 + h * 3600;
            tw_baseline_hours_add(&b, tw_hour_of_week(s), s);
        }
    TW_CHECK_INT(b.hours_total, 40);
    TW_CHECK(tw_baseline_hours_share(&b, tw_hour_of_week(MON + 3 * 3600), 2, 0, true) == 0.0);
    TW_CHECK(tw_baseline_hours_share(&b, tw_hour_of_week(MON + 10 * 3600), 2, 0, true) >= 0.5);
    /* Spread: 07:00 sees 09:00 with spread 2, not with spread 1. */
    TW_CHECK(tw_baseline_hours_share(&b, 7, 2, 0, true) > 0);
    TW_CHECK(tw_baseline_hours_share(&b, 7, 1, 0, true) == 0);
    /* Saturation halves everything and keeps the total consistent. */
    for (int i = 0; i < 300; i++)
        tw_baseline_hours_add(&b, 10, MON + 10 * 3600);
    uint32_t sum = 0;
    for (int i = 0; i < TW_BASELINE_HOURS; i++)
        sum += b.hours[i];
    TW_CHECK_INT(sum, b.hours_total);
    TW_CHECK(b.hours[10] < 255);
    /* Weekly decay: large counts shrink by 1/8 per week, small ones stay. */
    uint8_t before10 = b.hours[10], before9 = b.hours[9];
    tw_baseline_hours_add(&b, 0, MON + 7 * 86400);
    TW_CHECK_INT(b.hours[10], before10 - (before10 >> 3));
    TW_CHECK_INT(b.hours[9], before9 >= 8 ? before9 - (before9 >> 3) : before9);

    /* Countries: most recent first, bounded, known test. */
    memset(&b, 0, sizeof b);
    tw_baseline_country_note(&b, "DE");
    tw_baseline_country_note(&b, "FR");
    tw_baseline_country_note(&b, "DE");
    TW_CHECK(b.countries[0][0] == 'D' && b.countries[1][0] == 'F' && b.countries[2][0] == 0);
    TW_CHECK(tw_baseline_country_known(&b, "FR"));
    TW_CHECK(!tw_baseline_country_known(&b, "JP"));
    const char *many[] = {"AA", "BB", "CC", "DD", "EE", "FF", "GG", "HH", "II"};
    for (int i = 0; i < 9; i++)
        tw_baseline_country_note(&b, many[i]);
    TW_CHECK(tw_baseline_country_known(&b, "II"));
    TW_CHECK(!tw_baseline_country_known(&b, "AA"));   /* the oldest went */
    tw_baseline_asn_note(&b, 64496);
    tw_baseline_asn_note(&b, 64497);
    TW_CHECK(tw_baseline_asn_known(&b, 64496) && !tw_baseline_asn_known(&b, 1));

    /* Haversine: Berlin–Tokyo about 8,920 km; a point to itself 0. */
    double km = tw_haversine_km(52.5244, 13.4105, 35.6895, 139.6917);
    TW_CHECK(km > 8880 && km < 8950);
    TW_CHECK(tw_haversine_km(10, 20, 10, 20) == 0.0);
    TW_CHECK(fabs(tw_haversine_km(0, 0, 0, 180) - M_PI * 6371.0088) < 1e-6);

    printf("sizeof(tw_baseline_t)=%zu\n", sizeof(tw_baseline_t));
    return tw_test_done();
}
