/*
 * baseline.c — see baseline.h. Pure arithmetic on plain structs: no
 * allocation, no clock, no I/O.
 */
#include "baseline.h"

#include <math.h>
#include <string.h>

#define NS_PER_S 1000000000LL

static uint32_t secs_u32(int64_t t_ns)
{
    if (t_ns <= 0)
        return 0;
    int64_t s = t_ns / NS_PER_S;
    return s > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

int64_t tw_baseline_touch(tw_baseline_t *b, int64_t t_ns)
{
    if (b->events == 0) {
        b->first_ns = b->last_ns = t_ns;
    } else if (t_ns < b->last_ns) {
        t_ns = b->last_ns;
    } else {
        b->last_ns = t_ns;
    }
    if (b->events != UINT32_MAX)
        b->events++;
    return t_ns;
}

bool tw_baseline_mature(tw_baseline_t *b, uint32_t min_events, uint32_t min_days)
{
    if (b->flags & TW_BL_MATURE)
        return true;
    if (b->events >= min_events && b->last_ns - b->first_ns >= (int64_t)min_days * 86400 * NS_PER_S) {
        b->flags |= TW_BL_MATURE;
        return true;
    }
    return false;
}

static void rate_fold(tw_baseline_t *b, float alpha)
{
    if (b->rate_count == 0 || (b->flags & TW_BL_RATE_EXCL))
        return;
    float x = (float)b->rate_count;
    if (b->rate_windows == 0) {
        b->rate_mean = x;
        b->rate_var = 0;
    } else {
        /* A running mean for the first 1/alpha windows, then the EWMA: the
         * baseline is right early instead of dragging its first value. */
        float a = 1.0f / (float)(b->rate_windows + 1);
        if (a < alpha)
            a = alpha;
        float d = x - b->rate_mean;
        float inc = a * d;
        b->rate_mean += inc;
        b->rate_var = (1.0f - a) * (b->rate_var + d * inc);
    }
    if (b->rate_windows != UINT16_MAX)
        b->rate_windows++;
}

uint32_t tw_baseline_rate_add(tw_baseline_t *b, int64_t t_ns, uint32_t window_s, float alpha)
{
    uint32_t w = tw_window_index(secs_u32(t_ns), window_s ? window_s : 1, b->rate_bucket);
    if (w != b->rate_bucket || b->rate_count == 0) {
        if (w != b->rate_bucket)
            rate_fold(b, alpha);
        b->rate_bucket = w;
        b->rate_count = 0;
        b->flags &= (uint8_t)~TW_BL_RATE_EXCL;
    }
    if (b->rate_count != UINT32_MAX)
        b->rate_count++;
    return b->rate_count;
}

void tw_baseline_rate_exclude(tw_baseline_t *b) { b->flags |= TW_BL_RATE_EXCL; }

float tw_baseline_rate_sd(const tw_baseline_t *b)
{
    return b->rate_var > 0 ? sqrtf(b->rate_var) : 0.0f;
}

static uint16_t sat16(uint32_t v) { return v > UINT16_MAX ? UINT16_MAX : (uint16_t)v; }

void tw_fail_window_add(tw_fail_window_t *w, int64_t t_ns, uint32_t window_s, bool rejected,
                        uint32_t *rejected_out, uint32_t *checks_out)
{
    if (window_s == 0)
        window_s = 1;
    uint32_t s = secs_u32(t_ns);
    uint32_t k = tw_window_index(s, window_s, w->bucket);
    if (k != w->bucket) {
        if (k == w->bucket + 1) {
            w->rej_prev = w->rej_cur;
            w->chk_prev = w->chk_cur;
        } else {
            w->rej_prev = w->chk_prev = 0;
        }
        w->rej_cur = w->chk_cur = 0;
        w->bucket = k;
    }
    w->chk_cur = sat16((uint32_t)w->chk_cur + 1);
    if (rejected)
        w->rej_cur = sat16((uint32_t)w->rej_cur + 1);
    *rejected_out = w->rej_cur;
    *checks_out = w->chk_cur;
    if (w->rej_prev | w->chk_prev) {
        /* Share of the previous bucket still inside [t - window, t]. */
        double into = (double)(s - k * window_s) / (double)window_s;
        double wprev = 1.0 - into;
        *rejected_out += (uint32_t)((double)w->rej_prev * wprev);
        *checks_out += (uint32_t)((double)w->chk_prev * wprev);
    }
}

unsigned tw_hour_of_week(int64_t local_s)
{
    /* 1970-01-01 00:00 was a Thursday: hour 0 since the epoch is hour
     * 3 * 24 of the week with Monday = 0. Hours are floored. */
    int64_t h = local_s >= 0 ? local_s / 3600 : (local_s - 3599) / 3600;
    int64_t w = (h + 72) % 168;
    return (unsigned)(w < 0 ? w + 168 : w);
}

static void hours_recount(tw_baseline_t *b)
{
    uint32_t t = 0;
    for (unsigned i = 0; i < TW_BASELINE_HOURS; i++)
        t += b->hours[i];
    b->hours_total = t;
}

void tw_baseline_hours_add(tw_baseline_t *b, unsigned how, int64_t local_s)
{
    if (how >= TW_BASELINE_HOURS)
        return;
    uint32_t week = local_s > 0 ? (uint32_t)((local_s / 86400 + 3) / 7) : 0;
    if (b->hours_total == 0) {
        b->hours_week = week;
    } else if (week > b->hours_week) {
        /* Decay: every week keeps 7/8 of each count (counts below 8 are kept,
         * so a rarely used token does not forget its few uses). */
        uint32_t k = week - b->hours_week;
        if (k > 32)
            k = 32;
        for (unsigned i = 0; i < TW_BASELINE_HOURS; i++) {
            unsigned v = b->hours[i];
            for (uint32_t j = 0; j < k && v >= 8; j++)
                v -= v >> 3;
            b->hours[i] = (uint8_t)v;
        }
        b->hours_week = week;
        hours_recount(b);
    }
    if (b->hours[how] == UINT8_MAX) {
        for (unsigned i = 0; i < TW_BASELINE_HOURS; i++)
            b->hours[i] = (uint8_t)((b->hours[i] + 1) >> 1);
        hours_recount(b);
    }
    b->hours[how]++;
    b->hours_total++;
}

/* Floor division: the local hour index; two times in one hour also share
 * the week tw_baseline_hours_add() derives (days and weeks are whole hours). */
static int32_t local_hour(int64_t local_s)
{
    int64_t h = local_s >= 0 ? local_s / 3600 : (local_s - 3599) / 3600;
    return h > INT32_MAX ? INT32_MAX : h < INT32_MIN ? INT32_MIN : (int32_t)h;
}

void tw_baseline_hours_flush(tw_baseline_t *b)
{
    if (!b->hours_pend)
        return;
    int64_t local_s = (int64_t)b->hours_pend_hour * 3600;
    for (unsigned i = 0; i < b->hours_pend; i++)
        tw_baseline_hours_add(b, b->hours_pend_how, local_s);
    b->hours_pend = 0;
}

void tw_baseline_hours_defer(tw_baseline_t *b, unsigned how, int64_t local_s)
{
    if (how >= TW_BASELINE_HOURS)
        return;
    int32_t hour = local_hour(local_s);
    /* The clamp above could merge distinct far-off hours: add those now. */
    if (hour == INT32_MAX || hour == INT32_MIN) {
        tw_baseline_hours_flush(b);
        tw_baseline_hours_add(b, how, local_s);
        return;
    }
    if (b->hours_pend &&
        (hour != b->hours_pend_hour || how != b->hours_pend_how || b->hours_pend == UINT16_MAX))
        tw_baseline_hours_flush(b);
    b->hours_pend_hour = hour;
    b->hours_pend_how = (uint8_t)how;
    b->hours_pend++;
}

double tw_baseline_hours_share(const tw_baseline_t *b, unsigned how, unsigned spread,
                               unsigned lookback, bool per_day)
{
    if (b->hours_total == 0 || how >= TW_BASELINE_HOURS)
        return 1.0;
    if (spread > 11)
        spread = 11;
    if (spread + lookback > 23)
        lookback = 23 - spread;
    uint32_t sum = 0;
    unsigned days = per_day ? 7 : 1;
    unsigned base = per_day ? how % 24 : how;
    for (unsigned d = 0; d < days; d++)
        for (int o = -(int)(spread + lookback); o <= (int)spread; o++) {
            int i = (int)(d * 24 + base) + o;
            i = ((i % TW_BASELINE_HOURS) + TW_BASELINE_HOURS) % TW_BASELINE_HOURS;
            sum += b->hours[i];
        }
    return (double)sum / (double)b->hours_total;
}

bool tw_baseline_country_known(const tw_baseline_t *b, const char *cc)
{
    for (unsigned i = 0; i < TW_BASELINE_COUNTRIES; i++)
        if (b->countries[i][0] == cc[0] && b->countries[i][1] == cc[1])
            return true;
    return false;
}

void tw_baseline_country_note(tw_baseline_t *b, const char *cc)
{
    unsigned i = 0;
    while (i < TW_BASELINE_COUNTRIES - 1 &&
           !(b->countries[i][0] == cc[0] && b->countries[i][1] == cc[1]) &&
           b->countries[i][0] != '\0')
        i++;
    /* i is the slot that holds cc, the first empty one, or the last one. */
    memmove(b->countries[1], b->countries[0], (size_t)i * 2);
    b->countries[0][0] = cc[0];
    b->countries[0][1] = cc[1];
}

bool tw_baseline_asn_known(const tw_baseline_t *b, uint32_t asn)
{
    for (unsigned i = 0; i < TW_BASELINE_ASNS; i++)
        if (b->asns[i] == asn)
            return true;
    return false;
}

void tw_baseline_asn_note(tw_baseline_t *b, uint32_t asn)
{
    unsigned i = 0;
    while (i < TW_BASELINE_ASNS - 1 && b->asns[i] != asn && b->asns[i] != 0)
        i++;
    memmove(&b->asns[1], &b->asns[0], (size_t)i * sizeof b->asns[0]);
    b->asns[0] = asn;
}

void tw_baseline_loc_set(tw_baseline_t *b, int64_t t_ns, const tw_geo_result_t *g)
{
    tw_baseline_loc_t *l = &b->loc;
    l->time_ns = t_ns;
    l->city = g->city;
    l->time_zone = g->time_zone;
    l->lat = (float)g->lat;
    l->lon = (float)g->lon;
    l->asn = g->asn;
    l->radius_km = g->radius_km;
    l->country[0] = g->country[0];
    l->country[1] = g->country[0] ? g->country[1] : '\0';
    l->addr = g->addr;
    b->flags |= TW_BL_HAS_LOC;
}

double tw_haversine_km(double lat1, double lon1, double lat2, double lon2)
{
    const double r = 6371.0088, rad = M_PI / 180.0;
    double dlat = (lat2 - lat1) * rad, dlon = (lon2 - lon1) * rad;
    double a = sin(dlat / 2) * sin(dlat / 2) +
               cos(lat1 * rad) * cos(lat2 * rad) * sin(dlon / 2) * sin(dlon / 2);
    if (a > 1.0)
        a = 1.0;
    return 2.0 * r * asin(sqrt(a));
}
