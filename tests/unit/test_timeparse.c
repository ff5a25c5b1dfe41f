/*
 * test_timeparse.c — table-driven tests for timeparse.c.
 *
 * Expected values are literal nanoseconds computed independently (Python's
 * calendar.timegm), never with the code under test. Every table row is one
 * check; the calendar sweeps compare against a day-by-day counter and count
 * as one check each so the totals stay readable.
 */
#include "timeparse.h"
#include "tw_test.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define NS 1000000000LL
/* A string literal with its exact length, so rows can embed NUL bytes. */
#define S(lit) lit, sizeof(lit) - 1

#define REF_2026_11_30 1795996800000000000LL

typedef struct {
    tw_time_format_t fmt;
    const char *s;
    size_t n;
    int64_t ref;
    bool ok;
    int64_t want;
} tcase_t;

static const tcase_t cases[] = {
    /* RFC 3339: basics and the epoch itself */
    {TW_TIME_RFC3339, S("1970-01-01T00:00:00Z"), 0, true, 0},
    {TW_TIME_RFC3339, S("1970-01-01T00:00:00.000000001Z"), 0, true, 1},
    {TW_TIME_RFC3339, S("1969-12-31T23:59:59Z"), 0, true, -NS},
    {TW_TIME_RFC3339, S("1969-12-31T23:59:59.5Z"), 0, true, -NS / 2},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53Z"), 0, true, 1795939073000000000LL},
    {TW_TIME_RFC3339, S("2026-11-29t07:57:53z"), 0, true, 1795939073000000000LL},
    {TW_TIME_RFC3339, S("2026-11-29 07:57:53Z"), 0, true, 1795939073000000000LL},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53.1Z"), 0, true, 1795939073100000000LL},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53.123Z"), 0, true, 1795939073123000000LL},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53.123456Z"), 0, true, 1795939073123456000LL},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53.123456789Z"), 0, true, 1795939073123456789LL},
    /* more than 9 digits: truncated, never rounded into the next second */
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53.1234567891234Z"), 0, true, 1795939073123456789LL},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53.999999999999Z"), 0, true, 1795939073999999999LL},
    /* offsets */
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53+00:00"), 0, true, 1795939073000000000LL},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53-00:00"), 0, true, 1795939073000000000LL},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53+0000"), 0, true, 1795939073000000000LL},
    {TW_TIME_RFC3339, S("2026-11-29T09:57:53+02:00"), 0, true, 1795939073000000000LL},
    {TW_TIME_RFC3339, S("2026-11-29T09:57:53+0200"), 0, true, 1795939073000000000LL},
    {TW_TIME_RFC3339, S("2026-11-29T02:27:53-05:30"), 0, true, 1795939073000000000LL},
    {TW_TIME_RFC3339, S("2026-11-29T13:27:53.5+05:30"), 0, true, 1795939073500000000LL},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53+23:59"), 0, true, 1795852733000000000LL},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53-23:59"), 0, true, 1796025413000000000LL},
    /* negative offset crossing midnight, positive/negative crossing a year */
    {TW_TIME_RFC3339, S("2026-11-28T23:30:00-08:00"), 0, true, 1795937400000000000LL},
    {TW_TIME_RFC3339, S("2026-01-01T01:00:00+02:00"), 0, true, 1767222000000000000LL},
    {TW_TIME_RFC3339, S("2026-12-31T20:00:00-05:00"), 0, true, 1798765200000000000LL},
    /* leap years */
    {TW_TIME_RFC3339, S("2024-02-29T12:00:00Z"), 0, true, 1709208000000000000LL},
    {TW_TIME_RFC3339, S("2000-02-29T00:00:00Z"), 0, true, 951782400000000000LL},
    /* 2038 and beyond */
    {TW_TIME_RFC3339, S("2038-01-19T03:14:07Z"), 0, true, 2147483647LL * NS},
    {TW_TIME_RFC3339, S("2038-01-19T03:14:08Z"), 0, true, 2147483648LL * NS},
    {TW_TIME_RFC3339, S("2106-02-07T06:28:16Z"), 0, true, 4294967296LL * NS},
    /* the exact int64 nanosecond range, and one past each end */
    {TW_TIME_RFC3339, S("2262-04-11T23:47:16.854775807Z"), 0, true, INT64_MAX},
    {TW_TIME_RFC3339, S("2262-04-11T23:47:16.854775808Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("1677-09-21T00:12:43.145224192Z"), 0, true, INT64_MIN},
    {TW_TIME_RFC3339, S("1677-09-21T00:12:43.145224191Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("9999-12-31T23:59:59Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("0000-01-01T00:00:00Z"), 0, false, 0},
    /* leap second: only at 23:59:60 UTC, folded onto :59 */
    {TW_TIME_RFC3339, S("2016-12-31T23:59:60Z"), 0, true, 1483228799LL * NS},
    {TW_TIME_RFC3339, S("2016-12-31T23:59:60.5Z"), 0, true, 1483228799LL * NS + NS / 2},
    {TW_TIME_RFC3339, S("2017-01-01T05:29:60+05:30"), 0, true, 1483228799LL * NS},
    {TW_TIME_RFC3339, S("2016-12-31T18:59:60-05:00"), 0, true, 1483228799LL * NS},
    {TW_TIME_RFC3339, S("2016-12-31T23:59:60+01:00"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:60Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2016-12-31T23:58:60Z"), 0, false, 0},
    /* range errors */
    {TW_TIME_RFC3339, S("2026-13-01T00:00:00Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-00-10T00:00:00Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-00T00:00:00Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-31T00:00:00Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-04-31T00:00:00Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-02-29T00:00:00Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-02-30T00:00:00Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("1900-02-29T00:00:00Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-01-32T00:00:00Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T24:00:00Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:60:00Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:61Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53+24:00"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53+02:60"), 0, false, 0},
    /* shape errors */
    {TW_TIME_RFC3339, S(""), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53Z "), 0, false, 0},
    {TW_TIME_RFC3339, S(" 2026-11-29T07:57:53Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53ZZ"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53Zjunk"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53Z\0"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53\0Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53.Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53,5Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53.5"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53+2:00"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53+02:0"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53+020"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53+02"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53+02:00:00"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53+02-00"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-1-29T07:57:53Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("26-11-29T07:57:53Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026/11/29T07:57:53Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29X07:57:53Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07-57-53Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:5aZ"), 0, false, 0},
    {TW_TIME_RFC3339, S("-2026-11-29T07:57:53Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("+2026-11-29T07:57:53Z"), 0, false, 0},
    {TW_TIME_RFC3339, S("2026-11-29T07:57:53\xef\xbc\xba"), 0, false, 0},
    {TW_TIME_RFC3339, S("1764403073"), 0, false, 0},

    /* epoch seconds */
    {TW_TIME_EPOCH, S("0"), 0, true, 0},
    {TW_TIME_EPOCH, S("1"), 0, true, NS},
    {TW_TIME_EPOCH, S("0001"), 0, true, NS},
    {TW_TIME_EPOCH, S("1795939073"), 0, true, 1795939073000000000LL},
    {TW_TIME_EPOCH, S("1795939073.25"), 0, true, 1795939073250000000LL},
    {TW_TIME_EPOCH, S("1795939073.000000001"), 0, true, 1795939073000000001LL},
    {TW_TIME_EPOCH, S("1795939073.1234567899"), 0, true, 1795939073123456789LL},
    {TW_TIME_EPOCH, S("2147483648"), 0, true, 2147483648LL * NS},
    {TW_TIME_EPOCH, S("9223372036"), 0, true, 9223372036LL * NS},
    {TW_TIME_EPOCH, S("9223372036.854775807"), 0, true, INT64_MAX},
    {TW_TIME_EPOCH, S("9223372036.854775808"), 0, false, 0},
    {TW_TIME_EPOCH, S("9223372037"), 0, false, 0},
    {TW_TIME_EPOCH, S("18446744073709551616"), 0, false, 0},
    {TW_TIME_EPOCH, S("99999999999999999999999999"), 0, false, 0},
    {TW_TIME_EPOCH, S(""), 0, false, 0},
    {TW_TIME_EPOCH, S("-1"), 0, false, 0},
    {TW_TIME_EPOCH, S("+1"), 0, false, 0},
    {TW_TIME_EPOCH, S("1e9"), 0, false, 0},
    {TW_TIME_EPOCH, S("1."), 0, false, 0},
    {TW_TIME_EPOCH, S(".5"), 0, false, 0},
    {TW_TIME_EPOCH, S("1 "), 0, false, 0},
    {TW_TIME_EPOCH, S(" 1"), 0, false, 0},
    {TW_TIME_EPOCH, S("12a"), 0, false, 0},
    {TW_TIME_EPOCH, S("1.2.3"), 0, false, 0},
    {TW_TIME_EPOCH, S("1\0"), 0, false, 0},
    {TW_TIME_EPOCH, S("0x10"), 0, false, 0},

    /* epoch milliseconds */
    {TW_TIME_EPOCH_MS, S("0"), 0, true, 0},
    {TW_TIME_EPOCH_MS, S("1795939073123"), 0, true, 1795939073123000000LL},
    {TW_TIME_EPOCH_MS, S("1795939073123.456789"), 0, true, 1795939073123456789LL},
    {TW_TIME_EPOCH_MS, S("1795939073123.4567899"), 0, true, 1795939073123456789LL},
    {TW_TIME_EPOCH_MS, S("1795939073123.5"), 0, true, 1795939073123500000LL},
    {TW_TIME_EPOCH_MS, S("9223372036854"), 0, true, 9223372036854000000LL},
    {TW_TIME_EPOCH_MS, S("9223372036854.775807"), 0, true, INT64_MAX},
    {TW_TIME_EPOCH_MS, S("9223372036854.775808"), 0, false, 0},
    {TW_TIME_EPOCH_MS, S("9223372036855"), 0, false, 0},
    {TW_TIME_EPOCH_MS, S("1795939073123."), 0, false, 0},
    {TW_TIME_EPOCH_MS, S("-1795939073123"), 0, false, 0},
    {TW_TIME_EPOCH_MS, S("2026-11-29T07:57:53Z"), 0, false, 0},

    /* auto: shape decides, magnitude splits seconds from milliseconds */
    {TW_TIME_AUTO, S("2026-11-29T07:57:53Z"), 0, true, 1795939073000000000LL},
    {TW_TIME_AUTO, S("2026-11-29 07:57:53.5+00:00"), 0, true, 1795939073500000000LL},
    {TW_TIME_AUTO, S("1795939073"), 0, true, 1795939073000000000LL},
    {TW_TIME_AUTO, S("1795939073.5"), 0, true, 1795939073500000000LL},
    {TW_TIME_AUTO, S("1795939073123"), 0, true, 1795939073123000000LL},
    {TW_TIME_AUTO, S("1795939073123.5"), 0, true, 1795939073123500000LL},
    {TW_TIME_AUTO, S("99999999999"), 0, false, 0},
    {TW_TIME_AUTO, S("100000000000"), 0, true, 100000000000000000LL},
    {TW_TIME_AUTO, S("0"), 0, true, 0},
    {TW_TIME_AUTO, S("Nov 29 07:57:53"), REF_2026_11_30, true, 1795939073000000000LL},
    {TW_TIME_AUTO, S("2026-11-29T07:57:53"), 0, false, 0},
    {TW_TIME_AUTO, S("yesterday"), 0, false, 0},
    {TW_TIME_AUTO, S("-"), 0, false, 0},
    {TW_TIME_AUTO, S("2026-"), 0, false, 0},

    /* syslog, reference 2026-11-30T00:00:00Z */
    {TW_TIME_SYSLOG, S("Nov 29 07:57:53"), REF_2026_11_30, true, 1795939073000000000LL},
    {TW_TIME_SYSLOG, S("Nov  9 07:57:53"), REF_2026_11_30, true, 1794211073000000000LL},
    {TW_TIME_SYSLOG, S("Nov 09 07:57:53"), REF_2026_11_30, true, 1794211073000000000LL},
    /* exactly one day ahead is still this year; one second more is last year */
    {TW_TIME_SYSLOG, S("Dec  1 00:00:00"), REF_2026_11_30, true, 1796083200000000000LL},
    {TW_TIME_SYSLOG, S("Dec  1 00:00:01"), REF_2026_11_30, true, 1764547201000000000LL},
    {TW_TIME_SYSLOG, S("Jan 15 10:00:00"), REF_2026_11_30, true, 1768471200000000000LL},
    /* Dec 31 read just after New Year, Jan 1 read just before it */
    {TW_TIME_SYSLOG, S("Dec 31 23:59:59"), 1798761900000000000LL, true, 1798761599000000000LL},
    {TW_TIME_SYSLOG, S("Jan  1 00:04:00"), 1798761900000000000LL, true, 1798761840000000000LL},
    {TW_TIME_SYSLOG, S("Jan  1 00:00:30"), 1798761590000000000LL, true, 1798761630000000000LL},
    {TW_TIME_SYSLOG, S("Dec 31 23:59:49"), 1798761590000000000LL, true, 1798761589000000000LL},
    /* Feb 29 */
    {TW_TIME_SYSLOG, S("Feb 29 12:00:00"), 1835481600000000000LL, true, 1835438400000000000LL},
    {TW_TIME_SYSLOG, S("Feb 29 12:00:00"), 1862697600000000000LL, true, 1835438400000000000LL},
    {TW_TIME_SYSLOG, S("Feb 29 00:00:00"), 1835308800000000000LL, true, 1835395200000000000LL},
    {TW_TIME_SYSLOG, S("Feb 29 00:00:01"), 1835308800000000000LL, false, 0},
    {TW_TIME_SYSLOG, S("Feb 29 12:00:00"), 1772323200000000000LL, false, 0},
    /* 2038+ reference years */
    {TW_TIME_SYSLOG, S("Jun 15 12:00:00"), 2128680000000000000LL, true, 2128680000000000000LL},
    {TW_TIME_SYSLOG, S("Jun 15 12:00:00"), 2223374400000000000LL, true, 2223374400000000000LL},
    /* leap second */
    {TW_TIME_SYSLOG, S("Dec 31 23:59:60"), 1483228810000000000LL, true, 1483228799000000000LL},
    {TW_TIME_SYSLOG, S("Nov 29 07:57:60"), REF_2026_11_30, false, 0},
    /* invalid */
    {TW_TIME_SYSLOG, S("Nov 31 07:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Feb 30 07:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 32 07:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 00 07:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov  0 07:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Foo 29 07:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("nov 29 07:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("NOV 29 07:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 29 7:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 9 07:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov  29 07:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 29 07:57:53 "), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 29 07:57:53.123"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 29 24:00:00"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 29 07:60:00"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 29 07:57:61"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 29 07-57-53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 29 2026 07:57"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov\0" "29 07:57:53"), REF_2026_11_30, false, 0},
    {TW_TIME_SYSLOG, S("Nov 2\x80 07:57:53"), REF_2026_11_30, false, 0},
};

static void show(const tcase_t *c, char *buf, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n && k + 5 < cap; i++) {
        unsigned char ch = (unsigned char)c->s[i];
        if (ch >= 0x20 && ch < 0x7f)
            buf[k++] = (char)ch;
        else
            k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", ch);
    }
    buf[k] = '\0';
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const tcase_t *c = &cases[i];
        int64_t got = 12345;
        int rc = tw_time_parse(c->fmt, c->s, c->n, c->ref, &got);
        bool pass = c->ok ? (rc == 0 && got == c->want) : rc == -1;
        TW_CHECK(pass);
        if (!pass) {
            char shown[160];
            show(c, shown, sizeof shown);
            fprintf(stderr, "  row %zu: %s \"%s\": rc=%d got=%" PRId64 " want %s %" PRId64 "\n",
                    i, tw_time_format_name(c->fmt), shown, rc, got,
                    c->ok ? "ok" : "error", c->want);
        }
    }
}

/* RFC 3339 parsing remembers the last date and minute it read: every row
 * must give its result whatever row was parsed just before it, including a
 * row with the same first 16 bytes. */
static void test_after_every_row(void)
{
    size_t n = sizeof cases / sizeof cases[0];
    long bad = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            const tcase_t *a = &cases[i], *c = &cases[j];
            int64_t got = 12345;
            (void)tw_time_parse(a->fmt, a->s, a->n, a->ref, &got);
            int rc = tw_time_parse(c->fmt, c->s, c->n, c->ref, &got);
            if (c->ok ? (rc != 0 || got != c->want) : rc != -1) {
                if (bad++ < 5)
                    fprintf(stderr, "  row %zu after row %zu: rc=%d got=%" PRId64 "\n", j, i, rc,
                            got);
            }
        }
    }
    TW_CHECK_INT(bad, 0);
    /* A cached prefix does not vouch for the rest of the stamp. */
    int64_t ns;
    TW_CHECK_INT(tw_time_parse(TW_TIME_RFC3339, "2026-11-29T07:57:53Z", 20, 0, &ns), 0);
    TW_CHECK_INT(tw_time_parse(TW_TIME_RFC3339, "2026-11-29T07:57:61Z", 20, 0, &ns), -1);
    TW_CHECK_INT(tw_time_parse(TW_TIME_RFC3339, "2026-11-29T07:57:5xZ", 20, 0, &ns), -1);
    TW_CHECK_INT(tw_time_parse(TW_TIME_RFC3339, "2026-11-29T07:57:60Z", 20, 0, &ns), -1);
    TW_CHECK_INT(tw_time_parse(TW_TIME_RFC3339, "2026-11-29T07:57:59+01:00", 25, 0, &ns), 0);
    TW_CHECK_INT(ns, 1795935479 * NS);
    TW_CHECK_INT(tw_time_parse(TW_TIME_RFC3339, "2026-11-29 07:57:59Z", 20, 0, &ns), 0);
    TW_CHECK_INT(ns, 1795939079 * NS);
    TW_CHECK_INT(tw_time_parse(TW_TIME_RFC3339, "2026-02-29T07:57:59Z", 20, 0, &ns), -1);
    TW_CHECK_INT(tw_time_parse(TW_TIME_RFC3339, "2026-02-29T07:57:59Z", 20, 0, &ns), -1);
}

/* An independent oracle: walk the calendar day by day with the month
 * lengths written out, and compare every date with tw_days_from_civil and
 * with a parsed "YYYY-MM-DDT00:00:00Z". */
static void test_calendar_sweep(void)
{
    int64_t day = tw_days_from_civil(1678, 1, 1);
    long bad_days = 0, bad_parse = 0, bad_format = 0;
    for (int64_t y = 1678; y <= 2261; y++) {
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        static const unsigned len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        for (unsigned m = 1; m <= 12; m++) {
            unsigned dim = len[m - 1] + (m == 2 && leap);
            for (unsigned d = 1; d <= dim; d++, day++) {
                if (tw_days_from_civil(y, m, d) != day)
                    bad_days++;
                char s[32], back[32];
                snprintf(s, sizeof s, "%04d-%02u-%02uT00:00:00Z", (int)y, m, d);
                int64_t ns;
                if (tw_time_parse(TW_TIME_RFC3339, s, strlen(s), 0, &ns) != 0 ||
                    ns != day * 86400 * NS)
                    bad_parse++;
                tw_time_format_rfc3339(day * 86400 * NS + 86399 * NS, back, sizeof back);
                s[11] = '2';
                s[12] = '3';
                memcpy(s + 13, ":59:59Z", 8);
                if (strcmp(back, s) != 0)
                    bad_format++;
            }
            /* one past the end of the month is rejected */
            char s[32];
            snprintf(s, sizeof s, "%04d-%02u-%02uT00:00:00Z", (int)y, m, dim + 1);
            int64_t ns;
            if (tw_time_parse(TW_TIME_RFC3339, s, strlen(s), 0, &ns) != -1)
                bad_parse++;
        }
    }
    TW_CHECK_INT(day, tw_days_from_civil(2262, 1, 1));
    TW_CHECK_INT(bad_days, 0);
    TW_CHECK_INT(bad_parse, 0);
    TW_CHECK_INT(bad_format, 0);
    TW_CHECK_INT(tw_days_from_civil(1970, 1, 1), 0);
    TW_CHECK_INT(tw_days_from_civil(1969, 12, 31), -1);
    TW_CHECK_INT(tw_days_from_civil(2000, 3, 1), 11017);
    TW_CHECK_INT(tw_days_from_civil(-1, 12, 31), -719529);
}

/* Syslog year inference over a year's worth of reference times: the result
 * is never more than a day after ref and never more than a year before it. */
static void test_syslog_window(void)
{
    static const char *const mon[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    long bad = 0;
    int64_t ref0 = 1767225600LL * NS;   /* 2026-01-01T00:00:00Z */
    for (int step = 0; step < 365 * 4; step++) {
        int64_t ref = ref0 + (int64_t)step * 6 * 3600 * NS + 1234 * NS;
        for (int m = 0; m < 12; m++) {
            for (int d = 1; d <= 28; d += 9) {
                char s[32];
                snprintf(s, sizeof s, "%s %2d 12:34:56", mon[m], d);
                int64_t ns;
                if (tw_time_parse(TW_TIME_SYSLOG, s, strlen(s), ref, &ns) != 0 ||
                    ns > ref + 86400 * NS || ns < ref - 366 * 86400 * NS)
                    bad++;
            }
        }
    }
    TW_CHECK_INT(bad, 0);
}

static void test_format_rfc3339(void)
{
    char buf[32];
    TW_CHECK_STR(tw_time_format_rfc3339(0, buf, sizeof buf), "1970-01-01T00:00:00Z");
    TW_CHECK_STR(tw_time_format_rfc3339(-1, buf, sizeof buf), "1969-12-31T23:59:59Z");
    TW_CHECK_STR(tw_time_format_rfc3339(-NS, buf, sizeof buf), "1969-12-31T23:59:59Z");
    TW_CHECK_STR(tw_time_format_rfc3339(-NS - 1, buf, sizeof buf), "1969-12-31T23:59:58Z");
    TW_CHECK_STR(tw_time_format_rfc3339(1795939073123456789LL, buf, sizeof buf),
                 "2026-11-29T07:57:53Z");
    TW_CHECK_STR(tw_time_format_rfc3339(2147483648LL * NS, buf, sizeof buf),
                 "2038-01-19T03:14:08Z");
    TW_CHECK_STR(tw_time_format_rfc3339(INT64_MAX, buf, sizeof buf), "2262-04-11T23:47:16Z");
    TW_CHECK_STR(tw_time_format_rfc3339(INT64_MIN, buf, sizeof buf), "1677-09-21T00:12:43Z");
    char small[21];
    TW_CHECK_STR(tw_time_format_rfc3339(0, small, sizeof small), "1970-01-01T00:00:00Z");
    char tiny[20] = "x";
    TW_CHECK_STR(tw_time_format_rfc3339(0, tiny, sizeof tiny), "");
}

static void test_names(void)
{
    TW_CHECK_INT(tw_time_format_parse("auto"), TW_TIME_AUTO);
    TW_CHECK_INT(tw_time_format_parse("rfc3339"), TW_TIME_RFC3339);
    TW_CHECK_INT(tw_time_format_parse("epoch"), TW_TIME_EPOCH);
    TW_CHECK_INT(tw_time_format_parse("epoch_ms"), TW_TIME_EPOCH_MS);
    TW_CHECK_INT(tw_time_format_parse("syslog"), TW_TIME_SYSLOG);
    TW_CHECK_INT(tw_time_format_parse("RFC3339"), -1);
    TW_CHECK_INT(tw_time_format_parse(""), -1);
    TW_CHECK_INT(tw_time_format_parse(NULL), -1);
    for (int f = TW_TIME_AUTO; f <= TW_TIME_SYSLOG; f++)
        TW_CHECK_INT(tw_time_format_parse(tw_time_format_name((tw_time_format_t)f)), f);
    TW_CHECK_STR(tw_time_format_name((tw_time_format_t)99), "unknown");
    int64_t ns = 7;
    TW_CHECK_INT(tw_time_parse((tw_time_format_t)99, "0", 1, 0, &ns), -1);
    TW_CHECK_INT(tw_time_parse(TW_TIME_EPOCH, NULL, 0, 0, &ns), -1);
    TW_CHECK_INT(ns, 7);
}

int main(void)
{
    test_table();
    test_after_every_row();
    test_calendar_sweep();
    test_syslog_window();
    test_format_rfc3339();
    test_names();
    return tw_test_done();
}
