/* test_events.c — JSON escaping (hostile bytes), number formatting, the
 * anomaly head's key order and omissions, the events file sink. */
#include "events.h"
#include "tokenid.h"
#include "tw_test.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

static const char *esc(tw_jw_t *w, const char *s, size_t n)
{
    tw_jw_reset(w);
    tw_json_escape(w, s, n);
    tw_jw_newline(w);
    w->buf[w->len - 1] = '\0';
    return w->buf;
}

/* One value written alone by the writer, as a C string. */
static const char *num_d(tw_jw_t *w, double v, int d)
{
    tw_jw_reset(w);
    tw_jw_double(w, v, d);
    tw_jw_newline(w);
    w->buf[w->len - 1] = '\0';
    return w->buf;
}

static const char *num_i(tw_jw_t *w, long long v)
{
    tw_jw_reset(w);
    tw_jw_int(w, v);
    tw_jw_newline(w);
    w->buf[w->len - 1] = '\0';
    return w->buf;
}

/* The documented contract is "%.*f" (glibc, round to nearest, ties to
 * even on the exact binary value) without "-0": the oracle. */
static const char *printf_d(char *b, size_t cap, double v, int d)
{
    int n = snprintf(b, cap, "%.*f", d, v);
    if (b[0] == '-' && strspn(b + 1, "0.") == (size_t)n - 1)
        memmove(b, b + 1, (size_t)n);
    return b;
}

/* A deterministic xorshift, so failures reproduce. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Every byte class at every offset of a longer string (the escaper reads
 * eight bytes at a time): compared with a byte-by-byte rendering. */
static void check_escape_offsets(tw_jw_t *w)
{
    static const struct { unsigned char c; const char *out; } cls[] = {
        {'"', "\\\""}, {'\\', "\\\\"}, {0x00, "\\u0000"}, {0x01, "\\u0001"},
        {0x1f, "\\u001f"}, {'\n', "\\n"}, {0x7f, "\\u007f"}, {0x80, "\\ufffd"},
        {0xff, "\\ufffd"}, {0x20, " "}, {0x7e, "~"}, {'!', "!"}, {'#', "#"},
        {'[', "["}, {']', "]"},
    };
    int bad = 0;
    for (size_t k = 0; k < sizeof cls / sizeof cls[0]; k++) {
        for (size_t len = 1; len <= 33; len++) {
            for (size_t at = 0; at < len; at++) {
                char in[40], want[80];
                memset(in, 'a', len);
                in[at] = (char)cls[k].c;
                size_t o = 0;
                memset(want, 'a', at);
                o = at;
                size_t el = strlen(cls[k].out);
                memcpy(want + o, cls[k].out, el);
                o += el;
                memset(want + o, 'a', len - at - 1);
                o += len - at - 1;
                want[o] = '\0';
                if (strcmp(esc(w, in, len), want) != 0 && bad++ < 5)
                    fprintf(stderr, "escape class %zu len %zu at %zu: %s\n", k, len, at, w->buf);
            }
        }
    }
    TW_CHECK_INT(bad, 0);
    /* A two-byte UTF-8 sequence straddling the eight-byte boundary. */
    TW_CHECK_STR(esc(w, "abcdefg\xc3\xa9hijklmnop", 18), "abcdefg\xc3\xa9hijklmnop");
}

/* A literal key writes what tw_jw_key() writes, separators included. */
static void check_key_lit(tw_jw_t *w)
{
    tw_jw_reset(w);
    tw_jw_obj_begin(w);
    tw_jw_key(w, "km");
    tw_jw_int(w, 1);
    tw_jw_key(w, "from");
    tw_jw_obj_begin(w);
    tw_jw_key(w, "ip");
    tw_jw_null(w);
    tw_jw_obj_end(w);
    tw_jw_obj_end(w);
    tw_jw_newline(w);
    w->buf[w->len - 1] = '\0';
    char *want = strdup(w->buf);
    tw_jw_reset(w);
    tw_jw_obj_begin(w);
    TW_JW_KEY_LIT(w, "km");
    tw_jw_int(w, 1);
    TW_JW_KEY_LIT(w, "from");
    tw_jw_obj_begin(w);
    TW_JW_KEY_LIT(w, "ip");
    tw_jw_null(w);
    tw_jw_obj_end(w);
    tw_jw_obj_end(w);
    tw_jw_newline(w);
    w->buf[w->len - 1] = '\0';
    TW_CHECK_STR(w->buf, want);
    TW_CHECK_STR(want, "{\"km\":1,\"from\":{\"ip\":null}}");
    free(want);
}

/* Token ids in events: tokenid.h's text, quoted. */
static void check_token_ids(tw_jw_t *w)
{
    const uint64_t ids[] = {0, 1, 0x3f9a1c2b7d4e5f60ULL, UINT64_MAX, 0x8000000000000000ULL};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char want[TW_TOKENID_STR_LEN + 3];
        want[0] = '"';
        tw_tokenid_format(ids[i], want + 1);
        strcat(want, "\"");
        tw_jw_reset(w);
        tw_jw_token_id(w, ids[i]);
        tw_jw_newline(w);
        w->buf[w->len - 1] = '\0';
        TW_CHECK_STR(w->buf, want);
    }
}

static void check_numbers(tw_jw_t *w)
{
    /* Integers by hand: the extremes and zero. */
    TW_CHECK_STR(num_i(w, 0), "0");
    TW_CHECK_STR(num_i(w, 7), "7");
    TW_CHECK_STR(num_i(w, -10), "-10");
    TW_CHECK_STR(num_i(w, LLONG_MAX), "9223372036854775807");
    TW_CHECK_STR(num_i(w, LLONG_MIN), "-9223372036854775808");

    /* Fixed point: rounding, ties to even, carries, negatives, zero. */
    TW_CHECK_STR(num_d(w, 0, 2), "0.00");
    TW_CHECK_STR(num_d(w, -0.0, 1), "0.0");
    TW_CHECK_STR(num_d(w, 0.5, 0), "0");
    TW_CHECK_STR(num_d(w, 1.5, 0), "2");
    TW_CHECK_STR(num_d(w, 2.5, 0), "2");
    TW_CHECK_STR(num_d(w, 0.125, 2), "0.12");
    TW_CHECK_STR(num_d(w, 0.375, 2), "0.38");
    TW_CHECK_STR(num_d(w, 2.675, 2), "2.67");   /* 2.67499999... in binary */
    TW_CHECK_STR(num_d(w, 9.96, 1), "10.0");
    TW_CHECK_STR(num_d(w, 999.9999, 3), "1000.000");
    TW_CHECK_STR(num_d(w, -0.004, 2), "0.00");
    TW_CHECK_STR(num_d(w, -0.006, 2), "-0.01");
    TW_CHECK_STR(num_d(w, -1234.5678, 4), "-1234.5678");
    TW_CHECK_STR(num_d(w, 52.52, 4), "52.5200");
    TW_CHECK_STR(num_d(w, 1e-300, 9), "0.000000000");
    TW_CHECK_STR(num_d(w, 4.9e-324, 3), "0.000");
    TW_CHECK_STR(num_d(w, 123456789.123456789, 9), "123456789.123456791");
    /* Around and beyond the fast range (2^52): printf takes over. */
    TW_CHECK_STR(num_d(w, 4503599627370495.5, 1), "4503599627370495.5");
    TW_CHECK_STR(num_d(w, 4503599627370496.0, 2), "4503599627370496.00");
    TW_CHECK_STR(num_d(w, -1e20, 0), "-100000000000000000000");
    /* Longer than the writer's buffer: the historic stand-in, 1e50. */
    TW_CHECK_STR(num_d(w, 1e300, 1), "100000000000000007629769841091887003294964970946560");
    TW_CHECK_STR(num_d(w, INFINITY, 2), "null");
    TW_CHECK_STR(num_d(w, -INFINITY, 2), "null");
    TW_CHECK_STR(num_d(w, NAN, 0), "null");
    TW_CHECK_STR(num_d(w, 3.14159, -1), "3");     /* decimals clamped to 0..9 */
    TW_CHECK_STR(num_d(w, 3.14159, 12), "3.141590000");

    /* Against the oracle: random bit patterns in the fast range, values
     * with few decimal digits (near ties), and exact ties k/2^j. */
    char want[400];
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    int bad = 0;
    for (int i = 0; i < 300000 && bad < 5; i++) {
        uint64_t r = rnd(&seed);
        double v;
        switch (i % 4) {
        case 0: {   /* any finite double below 2^60, either sign */
            memcpy(&v, &r, sizeof v);
            if (!isfinite(v) || fabs(v) > 1.2e18)
                continue;
            break;
        }
        case 1:     /* decimal-looking values: n / 10^k */
            v = (double)(int64_t)(r % 2000000001ULL - 1000000000) / (double)(1ULL << (r >> 60)) /
                1000.0;
            break;
        case 2:     /* exact binary ties and near ties */
            v = (double)(int64_t)(r % 200001 - 100000) / (double)(1ULL << ((r >> 40) % 12));
            break;
        default:    /* magnitudes across the whole fast range */
            v = ldexp((double)(r >> 11), (int)((r >> 3) % 110) - 105);
            if (r & 1)
                v = -v;
            break;
        }
        int d = (int)((r >> 20) % 10);
        const char *got = num_d(w, v, d);
        printf_d(want, sizeof want, v, d);
        if (strlen(want) >= 64)
            continue;   /* the writer's own cap applies there */
        if (strcmp(got, want) != 0) {
            bad++;
            fprintf(stderr, "tw_jw_double(%.17g, %d) = %s, printf says %s\n", v, d, got, want);
        }
    }
    TW_CHECK_INT(bad, 0);
}

int main(void)
{
    tw_jw_t w;
    tw_jw_init(&w);
    TW_CHECK_STR(esc(&w, "plain", 5), "plain");
    TW_CHECK_STR(esc(&w, "a\"b\\c", 5), "a\\\"b\\\\c");
    TW_CHECK_STR(esc(&w, "\n\r\t\b\f", 5), "\\n\\r\\t\\b\\f");
    TW_CHECK_STR(esc(&w, "\x01\x1f\x7f", 3), "\\u0001\\u001f\\u007f");
    TW_CHECK_STR(esc(&w, "a\0b", 3), "a\\u0000b");
    /* Valid UTF-8 is kept: é, €, 😀. */
    TW_CHECK_STR(esc(&w, "S\xc3\xa3o \xe2\x82\xac \xf0\x9f\x98\x80", 13),
                 "S\xc3\xa3o \xe2\x82\xac \xf0\x9f\x98\x80");
    /* Invalid: stray continuation, overlong, surrogate, truncated, > U+10FFFF. */
    TW_CHECK_STR(esc(&w, "\x80", 1), "\\ufffd");
    TW_CHECK_STR(esc(&w, "\xc0\xaf", 2), "\\ufffd\\ufffd");
    TW_CHECK_STR(esc(&w, "\xed\xa0\x80", 3), "\\ufffd\\ufffd\\ufffd");
    TW_CHECK_STR(esc(&w, "x\xe2\x82", 3), "x\\ufffd\\ufffd");
    TW_CHECK_STR(esc(&w, "\xf4\x90\x80\x80", 4), "\\ufffd\\ufffd\\ufffd\\ufffd");
    TW_CHECK_STR(esc(&w, "\xff", 1), "\\ufffd");

    /* Structure and numbers. */
    tw_jw_reset(&w);
    tw_jw_obj_begin(&w);
    tw_jw_key(&w, "a");
    tw_jw_int(&w, -3);
    tw_jw_key(&w, "b");
    tw_jw_double(&w, 1.25, 1);
    tw_jw_key(&w, "z");
    tw_jw_double(&w, -0.0001, 2);
    tw_jw_key(&w, "n");
    tw_jw_double(&w, NAN, 2);
    tw_jw_key(&w, "arr");
    tw_jw_arr_begin(&w);
    tw_jw_cstr(&w, "x");
    tw_jw_bool(&w, true);
    tw_jw_null(&w);
    tw_jw_obj_begin(&w);
    tw_jw_obj_end(&w);
    tw_jw_arr_end(&w);
    tw_jw_obj_end(&w);
    tw_jw_newline(&w);
    w.buf[w.len - 1] = '\0';
    TW_CHECK_STR(w.buf, "{\"a\":-3,\"b\":1.2,\"z\":0.00,\"n\":null,\"arr\":[\"x\",true,null,{}]}");

    /* The anomaly head: key order; country/city omitted without location. */
    tw_anomaly_head_t h = {
        .time_ns = 1795939073LL * 1000000000LL,
        .token_id = 0x3f9a1c2b7d4e5f60ULL,
        .token_hint = "at-\xe2\x80\xa6" "9f2c",
        .rule = "impossible_travel",
        .kind = "geo_velocity",
        .severity = "critical",
        .action = "freeze",
        .ip = {"203.0.113.7", 11},
        .country = "DE",
        .city = "Berlin",
        .input = "gateway",
    };
    tw_anomaly_begin(&w, &h);
    tw_jw_key(&w, "km");
    tw_jw_double(&w, 8915.46, 1);
    tw_anomaly_end(&w);
    const char *want =
        "{\"time\":\"2026-11-29T07:57:53Z\",\"token_id\":\"tw_3f9a1c2b7d4e5f60\","
        "\"token_hint\":\"at-\xe2\x80\xa6" "9f2c\",\"rule\":\"impossible_travel\","
        "\"kind\":\"geo_velocity\",\"severity\":\"critical\",\"action\":\"freeze\","
        "\"ip\":\"203.0.113.7\",\"country\":\"DE\",\"city\":\"Berlin\",\"input\":\"gateway\","
        "\"evidence\":{\"km\":8915.5}}\n";
    TW_CHECK_INT(w.len, strlen(want));
    TW_CHECK(w.len == strlen(want) && memcmp(w.buf, want, w.len) == 0);
    h.country = "";
    h.city = NULL;
    h.ip = (tw_slice_t){"1.2.3.4\xff", 8};
    tw_anomaly_begin(&w, &h);
    tw_anomaly_end(&w);
    TW_CHECK(memmem(w.buf, w.len, "\"ip\":\"1.2.3.4\\ufffd\",\"input\"", 27) != NULL);
    TW_CHECK(memmem(w.buf, w.len, "country", 7) == NULL);

    /* Events file: appended, flushed, O_APPEND keeps earlier content. */
    char path[] = "/tmp/tw-events-XXXXXX";
    int fd = mkstemp(path);
    TW_CHECK(fd >= 0);
    TW_CHECK(write(fd, "old\n", 4) == 4);
    close(fd);
    tw_events_file_t *f;
    tw_err_t err;
    TW_CHECK_INT(tw_events_file_open(&f, path, &err), 0);
    tw_events_file_append(f, "{\"a\":1}\n", 8);
    tw_events_file_append(f, "{\"b\":2}\n", 8);
    TW_CHECK_INT(tw_events_file_flush(f, &err), 0);
    tw_events_file_free(f);
    char *text;
    size_t len;
    TW_CHECK_INT(tw_read_file(path, &text, &len, &err), 0);
    TW_CHECK_STR(text, "old\n{\"a\":1}\n{\"b\":2}\n");
    free(text);
    unlink(path);
    TW_CHECK_INT(tw_events_file_open(&f, "/nonexistent-dir/x.jsonl", &err), -1);
    TW_CHECK(strstr(err.msg, "/nonexistent-dir/x.jsonl") != NULL);

    check_numbers(&w);
    check_escape_offsets(&w);
    check_token_ids(&w);
    check_key_lit(&w);

    tw_jw_free(&w);
    return tw_test_done();
}
