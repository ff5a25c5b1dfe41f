/* test_events.c — JSON escaping (hostile bytes), number formatting, the
 * anomaly head's key order and omissions, the events file sink. */
#include "events.h"
#include "tw_test.h"

#include <fcntl.h>
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

    tw_jw_free(&w);
    return tw_test_done();
}
