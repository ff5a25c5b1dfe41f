/*
 * fuzz_timeparse.c — libFuzzer target: tw_time_parse in every format, plus
 * tw_time_format_rfc3339, tw_time_format_parse/name and tw_days_from_civil.
 *
 * Input: byte 0 selects the format (value % 6: the five formats and one
 * out-of-range enum value, which must fail cleanly); bytes 1..8 are ref_ns
 * (little endian int64, any value); the rest is the timestamp text. Short
 * inputs use ref 2027-01-01T00:00:00Z.
 *
 * Checks beyond "no sanitizer report":
 *  - the text is parsed from a copy ending at a PROT_NONE page (no over-read);
 *  - a parse is deterministic, and AUTO agrees with the specific format it
 *    dispatches to: RFC 3339 success => AUTO gives the same value; epoch
 *    seconds => same; syslog => same; and an AUTO success is
 *    reproduced by one of the specific formats;
 *  - syslog results are never more than one day after ref_ns;
 *  - every result prints as RFC 3339 and reads back to the same second;
 *  - tw_time_format_rfc3339 of the raw ref_ns bytes reads back too;
 *  - tw_time_format_parse on the text as a C string returns a valid format
 *    whose name maps back, or -1.
 */
#include "fuzz_common.h"

#include "timeparse.h"

#include <stdbool.h>

#define NS_PER_S 1000000000LL
#define DAY_NS (86400LL * NS_PER_S)
#define DEFAULT_REF_NS 1798761600000000000LL

static int64_t floor_sec(int64_t ns)
{
    return ns / NS_PER_S - (ns % NS_PER_S < 0);
}

static void check_roundtrip(int64_t ns)
{
    char buf[32];
    tw_time_format_rfc3339(ns, buf, sizeof buf);
    FUZZ_CHECK(strlen(buf) == 20);
    int64_t secs = floor_sec(ns);
    if (secs <= INT64_MIN / NS_PER_S)
        return;   /* prints as a second before the int64 ns range starts */
    int64_t back = 0;
    FUZZ_CHECK(tw_time_parse(TW_TIME_RFC3339, buf, 20, 0, &back) == 0);
    FUZZ_CHECK(back == secs * NS_PER_S);
    /* Too small a buffer is refused without writing past it. */
    char small[20];
    tw_time_format_rfc3339(ns, small, sizeof small);
    FUZZ_CHECK(small[0] == '\0');
}

static int parse(tw_time_format_t f, const char *s, size_t n, int64_t ref, int64_t *out)
{
    int64_t a = 0x5a5a5a5a5a5a5a5aLL, b = a;
    int rc = tw_time_parse(f, s, n, ref, &a);
    int rc2 = tw_time_parse(f, s, n, ref, &b);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(rc == rc2);
    if (rc == 0) {
        FUZZ_CHECK(a == b);
        check_roundtrip(a);
    }
    *out = a;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned sel = data[0] % 6;
    int64_t ref = DEFAULT_REF_NS;
    const uint8_t *text = data + 1;
    size_t n = size - 1;
    if (size >= 9) {
        uint64_t u = 0;
        for (int i = 0; i < 8; i++)
            u |= (uint64_t)data[1 + i] << (8 * i);
        memcpy(&ref, &u, sizeof ref);
        text = data + 9;
        n = size - 9;
        check_roundtrip(ref);
    }
    const char *s = fuzz_guarded_copy(text, n);

    int64_t v[5];
    int rc[5];
    for (int f = 0; f < 5; f++)
        rc[f] = parse((tw_time_format_t)f, s, n, ref, &v[f]);
    if (sel == 5) {
        int64_t out;
        FUZZ_CHECK(tw_time_parse((tw_time_format_t)(5 + data[0] % 7), s, n, ref, &out) == -1);
    }

    if (rc[TW_TIME_RFC3339] == 0)
        FUZZ_CHECK(rc[TW_TIME_AUTO] == 0 && v[TW_TIME_AUTO] == v[TW_TIME_RFC3339]);
    /* Any epoch in int64 ns is < 1e11 s, so AUTO reads it as seconds too. */
    if (rc[TW_TIME_EPOCH] == 0)
        FUZZ_CHECK(rc[TW_TIME_AUTO] == 0 && v[TW_TIME_AUTO] == v[TW_TIME_EPOCH]);
    if (rc[TW_TIME_SYSLOG] == 0) {
        FUZZ_CHECK(rc[TW_TIME_AUTO] == 0 && v[TW_TIME_AUTO] == v[TW_TIME_SYSLOG]);
        if (ref <= INT64_MAX - DAY_NS)
            FUZZ_CHECK(v[TW_TIME_SYSLOG] <= ref + DAY_NS);
    }
    if (rc[TW_TIME_AUTO] == 0) {
        bool found = false;
        for (int f = 1; f < 5; f++)
            found = found || (rc[f] == 0 && v[f] == v[TW_TIME_AUTO]);
        FUZZ_CHECK(found);
    }
    /* No format accepts surrounding spaces or an empty string. */
    if (n == 0 || s[0] == ' ' || s[n - 1] == ' ')
        for (int f = 0; f < 5; f++)
            FUZZ_CHECK(rc[f] == -1);

    /* Format names: whatever parses must name itself. */
    char *name = fuzz_strndup(text, n);
    int id = tw_time_format_parse(name);
    FUZZ_CHECK(id >= -1 && id < 5);
    if (id >= 0)
        FUZZ_CHECK(strcmp(tw_time_format_name((tw_time_format_t)id), name) == 0);
    FUZZ_CHECK(tw_time_format_name((tw_time_format_t)(5 + sel)) != NULL);
    free(name);

    /* Civil dates: consecutive days are consecutive, in any year a
     * timestamp can have (and well beyond). */
    if (n >= 4) {
        int64_t y = (int64_t)(int16_t)(text[0] | text[1] << 8) * 8;
        unsigned m = 1 + text[2] % 12, d = 1 + text[3] % 28;
        int64_t a = tw_days_from_civil(y, m, d);
        FUZZ_CHECK(tw_days_from_civil(y, m, d + 1) == a + 1);
        int64_t next_year = tw_days_from_civil(y + 1, m, d);
        FUZZ_CHECK(next_year - a == 365 || next_year - a == 366);
    }
    return 0;
}
