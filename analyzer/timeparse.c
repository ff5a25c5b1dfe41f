/*
 * timeparse.c — see timeparse.h.
 *
 * Every parser here reads fixed positions or digit runs, validates each
 * field's range before combining them, and rejects anything left over: a
 * stamp is either exactly one valid time or an error. Arithmetic is done in
 * int64 seconds first (no overflow possible for 4-digit years) and only the
 * final conversion to nanoseconds is overflow-checked, so the accepted range
 * is exactly what int64 nanoseconds can hold (1677-09-21 .. 2262-04-11).
 *
 * Policy choices (documented here because the header leaves them open):
 *  - Leap seconds. ":60" is accepted only where one can exist, i.e. when the
 *    stamp is 23:59:60 in UTC once its offset is applied, and it is folded
 *    onto :59 (fraction kept). Unix time has no leap seconds, and folding
 *    keeps the event inside the right minute and day.
 *  - RFC 3339. "T", "t" or a space between date and time; "Z", "z", ±hh:mm or
 *    ±hhmm required (a stamp without an offset is local time, which we do not
 *    guess). "-00:00" means UTC. Fraction digits past the ninth are read and
 *    dropped (truncation, never rounding into the next second).
 *  - Syslog (RFC 3164). Exactly "Mmm dd hh:mm:ss" with an English,
 *    capitalised month; the day may be space- or zero-padded. The year is
 *    the latest of ref's year + 1, ref's year and ref's year - 1 that does
 *    not put the stamp more than one day after ref_ns. That is the header's
 *    rule (ref's year, or the previous one for "Dec 31" read on Jan 1), plus
 *    its mirror image: "Jan 1 00:00:30" read at Dec 31 23:59:50 (a sender's
 *    clock slightly ahead) is next year's, not last January's. Feb 29 gets
 *    no special search: it is valid only if one of those candidate years is
 *    a leap year, and otherwise rejected rather than moved several years
 *    back, which would throw one line far away from its neighbours.
 *  - Epoch. Unsigned decimal only (no sign, exponent or spaces). In auto
 *    mode an integer part >= 1e11 is milliseconds (1e11 s is past year
 *    5000, while 1e11 ms is 1973), anything smaller is seconds.
 */
#include "timeparse.h"

#include <stdbool.h>
#include <string.h>

#define NS_PER_SEC 1000000000LL
#define SEC_PER_DAY 86400LL
#define AUTO_MS_THRESHOLD 100000000000ULL

static const char *const format_names[] = {
    [TW_TIME_AUTO] = "auto",       [TW_TIME_RFC3339] = "rfc3339",
    [TW_TIME_EPOCH] = "epoch",     [TW_TIME_EPOCH_MS] = "epoch_ms",
    [TW_TIME_SYSLOG] = "syslog",
};
#define N_FORMATS (sizeof format_names / sizeof format_names[0])

int tw_time_format_parse(const char *name)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < N_FORMATS; i++)
        if (strcmp(name, format_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *tw_time_format_name(tw_time_format_t f)
{
    if ((unsigned)f < N_FORMATS)
        return format_names[f];
    return "unknown";
}

/* Howard Hinnant's days_from_civil: exact for the proleptic Gregorian
 * calendar, no loops, no tables. */
int64_t tw_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Inverse of tw_days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Reads exactly k digits at s; false if any is not a digit. */
static bool read_digits(const char *s, size_t k, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < k; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Reads a '.'-introduced fraction at s[*i] (the caller saw the dot) into
 * nanoseconds scaled to `keep` significant digits (9 for seconds, 6 for
 * milliseconds); extra digits are consumed and dropped. */
static bool read_fraction(const char *s, size_t n, size_t *i, unsigned keep,
                          int64_t *out)
{
    size_t j = *i + 1;
    int64_t v = 0;
    unsigned used = 0;
    while (j < n && is_digit(s[j])) {
        if (used < keep) {
            v = v * 10 + (s[j] - '0');
            used++;
        }
        j++;
    }
    if (j == *i + 1)
        return false;   /* a dot needs at least one digit */
    for (; used < keep; used++)
        v *= 10;
    *i = j;
    *out = v;
    return true;
}

/* sec * 1e9 + frac_ns, or false if that leaves int64; frac_ns in [0, 1e9). */
static bool to_ns(int64_t sec, int64_t frac_ns, int64_t *out)
{
    int64_t ns;
    /* Borrow a second for negative times so that the very first nanosecond
     * of the range (INT64_MIN) does not overflow on the way. */
    if (sec < 0 && frac_ns > 0) {
        sec += 1;
        frac_ns -= NS_PER_SEC;
    }
    if (__builtin_mul_overflow(sec, NS_PER_SEC, &ns) ||
        __builtin_add_overflow(ns, frac_ns, &ns))
        return false;
    *out = ns;
    return true;
}

/* A ":60" second is valid only at 23:59:60 UTC; fold it onto :59.
 * sod is the local second of day with the 60 already replaced by 59. */
static bool leap_second_ok(int64_t sod_local, int64_t offset_s)
{
    int64_t sod_utc = ((sod_local - offset_s) % SEC_PER_DAY + SEC_PER_DAY) % SEC_PER_DAY;
    return sod_utc == SEC_PER_DAY - 1;
}

/*
 * The stamps of a log share their first 16 bytes ("YYYY-MM-DDTHH:MM") for a
 * minute at a time, so each thread keeps the last valid such prefix and what
 * it means; a line that repeats it byte for byte skips the date arithmetic.
 */
#define RFC3339_PREFIX 16
static _Thread_local struct {
    char text[RFC3339_PREFIX];
    bool valid;
    int64_t days;          /* tw_days_from_civil() of the date */
    int64_t sod_minute;    /* h * 3600 + mi * 60 */
} rfc3339_last;

/* Reads and checks "YYYY-MM-DDTHH:MM" at s (at least 16 bytes). */
static bool rfc3339_prefix(const char *s, int64_t *days, int64_t *sod_minute)
{
    if (rfc3339_last.valid && memcmp(s, rfc3339_last.text, RFC3339_PREFIX) == 0) {
        *days = rfc3339_last.days;
        *sod_minute = rfc3339_last.sod_minute;
        return true;
    }
    unsigned y, mo, d, h, mi;
    if (!read_digits(s, 4, &y) || s[4] != '-' || !read_digits(s + 5, 2, &mo) ||
        s[7] != '-' || !read_digits(s + 8, 2, &d) ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !read_digits(s + 11, 2, &h) || s[13] != ':' || !read_digits(s + 14, 2, &mi))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59)
        return false;
    memcpy(rfc3339_last.text, s, RFC3339_PREFIX);
    rfc3339_last.days = tw_days_from_civil(y, mo, d);
    rfc3339_last.sod_minute = (int64_t)h * 3600 + mi * 60;
    rfc3339_last.valid = true;
    *days = rfc3339_last.days;
    *sod_minute = rfc3339_last.sod_minute;
    return true;
}

static int parse_rfc3339(const char *s, size_t n, int64_t *out_ns)
{
    unsigned sec;
    int64_t days, sod_minute;
    /* Shortest valid form: YYYY-MM-DDTHH:MM:SSZ (20 bytes). */
    if (n < 20)
        return -1;
    if (!rfc3339_prefix(s, &days, &sod_minute) || s[16] != ':' ||
        !read_digits(s + 17, 2, &sec) || sec > 60)
        return -1;

    size_t i = 19;
    int64_t frac = 0;
    if (s[i] == '.' && !read_fraction(s, n, &i, 9, &frac))
        return -1;
    if (i >= n)
        return -1;   /* the offset is mandatory */

    int64_t offset_s = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        unsigned oh, om;
        int sign = s[i] == '-' ? -1 : 1;
        if (n - i == 6 && read_digits(s + i + 1, 2, &oh) && s[i + 3] == ':' &&
            read_digits(s + i + 4, 2, &om)) {
            i += 6;
        } else if (n - i == 5 && read_digits(s + i + 1, 2, &oh) &&
                   read_digits(s + i + 3, 2, &om)) {
            i += 5;
        } else {
            return -1;
        }
        if (oh > 23 || om > 59)
            return -1;
        offset_s = sign * (int64_t)(oh * 3600 + om * 60);
    } else {
        return -1;
    }
    if (i != n)
        return -1;

    int64_t sod = sod_minute + (sec == 60 ? 59 : sec);
    if (sec == 60 && !leap_second_ok(sod, offset_s))
        return -1;
    int64_t secs = days * SEC_PER_DAY + sod - offset_s;
    return to_ns(secs, frac, out_ns) ? 0 : -1;
}

/* Unsigned decimal with optional fraction. *int_part gets the integer part
 * (false on overflow), *frac the fraction scaled to `keep` digits. */
static bool parse_decimal(const char *s, size_t n, unsigned keep, uint64_t *int_part,
                          int64_t *frac)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < n && is_digit(s[i])) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
        i++;
    }
    if (i == 0)
        return false;
    *frac = 0;
    if (i < n && s[i] == '.' && !read_fraction(s, n, &i, keep, frac))
        return false;
    if (i != n)
        return false;
    *int_part = v;
    return true;
}

static int epoch_seconds(uint64_t secs, int64_t frac_ns, int64_t *out_ns)
{
    if (secs > (uint64_t)INT64_MAX)
        return -1;
    return to_ns((int64_t)secs, frac_ns, out_ns) ? 0 : -1;
}

static int epoch_millis(uint64_t ms, int64_t frac_ns, int64_t *out_ns)
{
    /* frac_ns here is the sub-millisecond part in nanoseconds (6 digits). */
    if (ms > (uint64_t)INT64_MAX)
        return -1;
    int64_t ns;
    if (__builtin_mul_overflow((int64_t)ms, (int64_t)1000000, &ns) ||
        __builtin_add_overflow(ns, frac_ns, &ns))
        return -1;
    *out_ns = ns;
    return 0;
}

static int parse_epoch(const char *s, size_t n, int64_t *out_ns)
{
    uint64_t v;
    int64_t frac;
    if (!parse_decimal(s, n, 9, &v, &frac))
        return -1;
    return epoch_seconds(v, frac, out_ns);
}

static int parse_epoch_ms(const char *s, size_t n, int64_t *out_ns)
{
    uint64_t v;
    int64_t frac;
    if (!parse_decimal(s, n, 6, &v, &frac))
        return -1;
    return epoch_millis(v, frac, out_ns);
}

static int parse_epoch_auto(const char *s, size_t n, int64_t *out_ns)
{
    /* Parse once at nanosecond precision; for milliseconds the fraction has
     * to be re-read at 6 digits, which only happens for ms with a fraction. */
    uint64_t v;
    int64_t frac;
    if (!parse_decimal(s, n, 9, &v, &frac))
        return -1;
    if (v < AUTO_MS_THRESHOLD)
        return epoch_seconds(v, frac, out_ns);
    return parse_epoch_ms(s, n, out_ns);
}

static int syslog_month(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int m = 0; m < 12; m++)
        if (memcmp(s, months + 3 * m, 3) == 0)
            return m + 1;
    return -1;
}

static int parse_syslog(const char *s, size_t n, int64_t ref_ns, int64_t *out_ns)
{
    unsigned d, h, mi, sec;
    if (n != 15 || s[3] != ' ' || s[6] != ' ')
        return -1;
    int mo = syslog_month(s);
    if (mo < 0)
        return -1;
    if (s[4] == ' ') {
        if (!read_digits(s + 5, 1, &d))
            return -1;
    } else if (!read_digits(s + 4, 2, &d)) {
        return -1;
    }
    if (!read_digits(s + 7, 2, &h) || s[9] != ':' || !read_digits(s + 10, 2, &mi) ||
        s[12] != ':' || !read_digits(s + 13, 2, &sec))
        return -1;
    if (d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    int64_t sod = (int64_t)h * 3600 + mi * 60 + (sec == 60 ? 59 : sec);
    if (sec == 60 && !leap_second_ok(sod, 0))
        return -1;

    int64_t ref_year;
    unsigned ref_m, ref_d;
    civil_from_days(floor_div(floor_div(ref_ns, NS_PER_SEC), SEC_PER_DAY), &ref_year,
                    &ref_m, &ref_d);
    int64_t horizon;
    if (__builtin_add_overflow(ref_ns, SEC_PER_DAY * NS_PER_SEC, &horizon))
        horizon = INT64_MAX;

    for (int64_t y = ref_year + 1; y >= ref_year - 1; y--) {
        if (d > days_in_month(y, (unsigned)mo))
            continue;
        int64_t ns;
        if (!to_ns(tw_days_from_civil(y, (unsigned)mo, d) * SEC_PER_DAY + sod, 0, &ns))
            continue;
        if (ns > horizon)
            continue;
        *out_ns = ns;
        return 0;
    }
    return -1;
}

int tw_time_parse(tw_time_format_t fmt, const char *s, size_t n, int64_t ref_ns,
                  int64_t *out_ns)
{
    if (!s || n == 0)
        return -1;
    switch (fmt) {
    case TW_TIME_RFC3339:
        return parse_rfc3339(s, n, out_ns);
    case TW_TIME_EPOCH:
        return parse_epoch(s, n, out_ns);
    case TW_TIME_EPOCH_MS:
        return parse_epoch_ms(s, n, out_ns);
    case TW_TIME_SYSLOG:
        return parse_syslog(s, n, ref_ns, out_ns);
    case TW_TIME_AUTO:
        /* Each parser validates completely, so dispatching on the shape is
         * the same as trying them in order, without the failed attempts. */
        if (n >= 5 && s[4] == '-')
            return parse_rfc3339(s, n, out_ns);
        if (is_digit(s[0]))
            return parse_epoch_auto(s, n, out_ns);
        return parse_syslog(s, n, ref_ns, out_ns);
    }
    return -1;
}

static void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

char *tw_time_format_rfc3339(int64_t ns, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return buf;
    if (cap < 21) {
        buf[0] = '\0';
        return buf;
    }
    int64_t secs = floor_div(ns, NS_PER_SEC);
    int64_t days = floor_div(secs, SEC_PER_DAY);
    unsigned sod = (unsigned)(secs - days * SEC_PER_DAY);
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    /* int64 nanoseconds only span years 1677..2262: always four digits. */
    put2(buf, (unsigned)(y / 100));
    put2(buf + 2, (unsigned)(y % 100));
    buf[4] = '-';
    put2(buf + 5, m);
    buf[7] = '-';
    put2(buf + 8, d);
    buf[10] = 'T';
    put2(buf + 11, sod / 3600);
    buf[13] = ':';
    put2(buf + 14, sod / 60 % 60);
    buf[16] = ':';
    put2(buf + 17, sod % 60);
    buf[19] = 'Z';
    buf[20] = '\0';
    return buf;
}
