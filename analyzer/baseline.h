/*
 * baseline.h — what tokenwatch remembers about one token (or one principal):
 * its request rate, its hours of activity, where it was last used, the
 * countries and networks it uses, its recent failures, whether it is still
 * learning, and per-rule cooldowns.
 *
 * A tw_baseline_t is plain data of fixed size (no pointers it owns), so the
 * token table (tokens.h) can keep millions of them in chunked pools and
 * recycle them without any free. Every update is O(1) except the rare
 * hour-profile decay (168 bytes, once per week of event time per token).
 *
 * Time is always the event's own time (nanoseconds since the epoch), never
 * the wall clock, so replay is deterministic. Events are expected in roughly
 * increasing time; an event older than the last one seen is treated as
 * happening at the last time (clock skew between sources must not make
 * windows run backwards).
 *
 * Threading: baselines belong to the analysis thread.
 */
#ifndef TW_BASELINE_H
#define TW_BASELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "geo.h"

#define TW_BASELINE_HOURS 168       /* hours in a week: the activity profile */
#define TW_BASELINE_COUNTRIES 8     /* recent countries remembered */
#define TW_BASELINE_ASNS 4          /* recent ASNs remembered */
#define TW_BASELINE_MAX_RULES 16    /* rules with a per-token cooldown slot */

/* Flags in tw_baseline_t.flags. */
enum {
    TW_BL_MATURE = 1 << 0,   /* learning period over */
    TW_BL_FLAGGED = 1 << 1,  /* some rule fired for it */
    TW_BL_FROZEN = 1 << 2,   /* reserved for the freeze hook (issue 4) */
    TW_BL_HAS_LOC = 1 << 3,  /* loc holds a geolocated use */
    TW_BL_RATE_EXCL = 1 << 4, /* the current rate window is kept out of the EWMA */
    TW_BL_WANTED = 1 << 5,   /* tw_detect_want(): report the raw token at the next use */
};

/* Failures: two fixed buckets (current, previous) of window_s; the sliding
 * count is cur + prev * (share of the previous window still inside the
 * sliding window). Counts saturate at 65535. Shared with the per-IP tracker. */
typedef struct tw_fail_window {
    uint32_t bucket;            /* window index of the *_cur counts */
    uint16_t rej_cur, rej_prev, chk_cur, chk_prev;
} tw_fail_window_t;

/* s / w (w > 0) for a time s in the window after window index prev, or in
 * window prev itself, without a division: the common case for a token or
 * address used again within a window or two. Exact for any s and prev. */
static inline uint32_t tw_window_index(uint32_t s, uint32_t w, uint32_t prev)
{
    uint64_t base = (uint64_t)prev * w;
    if (s >= base) {
        uint64_t into = s - base;
        if (into < w)
            return prev;
        if (into < 2 * (uint64_t)w)
            return prev + 1;
    }
    return s / w;
}

/* Counts one check at t and returns the sliding rejected and check counts
 * (rounded down). */
void tw_fail_window_add(tw_fail_window_t *w, int64_t t_ns, uint32_t window_s, bool rejected,
                        uint32_t *rejected_out, uint32_t *checks_out);

/* Last geolocated use. */
typedef struct tw_baseline_loc {
    int64_t time_ns;
    const char *city;        /* interned by tw_geo_t (valid while it is open) */
    const char *time_zone;   /* interned, "" when unknown */
    float lat, lon;
    uint32_t asn;            /* 0 when unknown */
    uint16_t radius_km;
    char country[2];         /* ISO code, not NUL-terminated; "\0\0" when none */
    tw_geo_addr_t addr;
} tw_baseline_loc_t;

typedef struct tw_baseline {
    int64_t first_ns, last_ns;
    uint32_t events;               /* saturates at UINT32_MAX */
    uint8_t flags;
    uint8_t top_severity;          /* highest severity flagged (tw_severity_t + 1), 0 none */

    /* Rate: requests per rate window (bucket of rate_window_s), EWMA of the
     * counts of windows with at least one request, and its variance. */
    uint16_t rate_windows;         /* active windows folded into the EWMA (saturates) */
    uint32_t rate_bucket;          /* window index of rate_count */
    uint32_t rate_count;
    float rate_mean, rate_var;

    tw_fail_window_t fail;

    /* Uses deferred by tw_baseline_hours_defer(): hours_pend uses in local
     * hour hours_pend_hour (hour-of-week hours_pend_how), not yet in hours[].
     * They live here, beside the fields every event touches, so a token
     * busy within one hour touches its profile once per hour, not per use. */
    int32_t hours_pend_hour;
    uint16_t hours_pend;
    uint8_t hours_pend_how;

    /* Hour-of-week profile (0 = Monday 00:00 local), uint8 counts; halved
     * when one saturates and at each new week (decay). */
    uint32_t hours_week;           /* week index of the last decay */
    uint32_t hours_total;          /* sum of hours[] (pending uses not included) */

    /* Fields above and the next three are the hot part: read or written
     * by most events. The profile and the cooldowns below are colder. */
    tw_baseline_loc_t loc;

    char countries[TW_BASELINE_COUNTRIES][2];   /* most recent first; "\0\0" empty */
    uint32_t asns[TW_BASELINE_ASNS];            /* most recent first; 0 empty */

    uint8_t hours[TW_BASELINE_HOURS];

    /* Per rule index: event time (seconds) before which the rule stays
     * quiet for this token. */
    uint32_t cool_until_s[TW_BASELINE_MAX_RULES];
} tw_baseline_t;

/* Counts one use at time t: first/last seen and the event count. Returns the
 * event time clamped to be no earlier than the previous one. */
int64_t tw_baseline_touch(tw_baseline_t *b, int64_t t_ns);

/* Learning period: true once the baseline has min_events events spanning at
 * least min_days days (whichever comes later). Sets TW_BL_MATURE once true;
 * a mature baseline stays mature. */
bool tw_baseline_mature(tw_baseline_t *b, uint32_t min_events, uint32_t min_days);

/*
 * Rate. tw_baseline_rate_add() counts one request in the window of t (of
 * window_s seconds) and returns the count so far in that window. When a new
 * window starts, the finished one is folded into the EWMA (alpha) unless
 * `exclude` is set on it by tw_baseline_rate_exclude() (a window that fired
 * the rate rule must not teach the baseline that bursts are normal).
 */
uint32_t tw_baseline_rate_add(tw_baseline_t *b, int64_t t_ns, uint32_t window_s, float alpha);
/* Drops the current window from the EWMA (it is reset to count 0 at the
 * boundary but keeps counting for the rule). */
void tw_baseline_rate_exclude(tw_baseline_t *b);
float tw_baseline_rate_sd(const tw_baseline_t *b);

/* Hour of week (0..167, Monday 00:00 = 0) of a local time given as seconds
 * since the epoch already shifted by the UTC offset. */
unsigned tw_hour_of_week(int64_t local_s);

/* Adds one use in hour-of-week `how` (local), decaying by half for every
 * week (of local time) since the last decay and whenever a count saturates. */
void tw_baseline_hours_add(tw_baseline_t *b, unsigned how, int64_t local_s);

/* Same as tw_baseline_hours_add(), but a use in the same local hour as the
 * previous deferred one is only counted in the hot fields; the profile is
 * updated (with exactly the adds the eager calls would have made, in order)
 * when the hour changes or by tw_baseline_hours_flush(). Readers of hours[]
 * or hours_total must flush first. */
void tw_baseline_hours_defer(tw_baseline_t *b, unsigned how, int64_t local_s);
void tw_baseline_hours_flush(tw_baseline_t *b);

/* Share (0..1) of the profile from spread + lookback hours before `how` to
 * spread hours after it, summed over every day of the week when per_day is
 * true (hour-of-day view), or only around that hour of that day otherwise.
 * 1.0 when the profile is empty. lookback widens the window backwards only:
 * a working day runs late (an evening session follows the day's work) far
 * more often than it starts in the small hours. */
double tw_baseline_hours_share(const tw_baseline_t *b, unsigned how, unsigned spread,
                               unsigned lookback, bool per_day);

/* Countries/ASNs: true if known; tw_baseline_*_note moves it to the front
 * (inserting it, dropping the oldest if full). cc is two bytes. */
bool tw_baseline_country_known(const tw_baseline_t *b, const char *cc);
void tw_baseline_country_note(tw_baseline_t *b, const char *cc);
bool tw_baseline_asn_known(const tw_baseline_t *b, uint32_t asn);
void tw_baseline_asn_note(tw_baseline_t *b, uint32_t asn);

/* Stores a geolocated use as the last location. */
void tw_baseline_loc_set(tw_baseline_t *b, int64_t t_ns, const tw_geo_result_t *g);

/* Great-circle distance in km (haversine, mean Earth radius 6371.0088 km). */
double tw_haversine_km(double lat1, double lon1, double lat2, double lon2);

#endif
