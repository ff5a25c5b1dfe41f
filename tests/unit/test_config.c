/*
 * test_config.c — config validation: every invalid config is refused with
 * the file, the JSON path and what was expected; valid ones load with the
 * documented defaults.
 */
#include "config.h"
#include "tw_test.h"

#include <stdlib.h>
#include <unistd.h>

static char dir[] = "/tmp/tw_test_config_XXXXXX";
static char formats[512];

static char *write_config(const char *body)
{
    char *path = tw_xasprintf("%s/tokenwatch.json", dir);
    tw_err_t err;
    if (tw_write_file_atomic(path, body, strlen(body), 0600, &err) != 0)
        tw_die("%s", err.msg);
    return path;
}

/* Returns body with its one "%s" replaced by the formats dir. */
static char *with_formats(const char *body_fmt)
{
    const char *at = strstr(body_fmt, "%s");
    if (!at)
        return tw_xstrdup(body_fmt);
    return tw_xasprintf("%.*s%s%s", (int)(at - body_fmt), body_fmt, formats, at + 2);
}

/* Loads body (with %s replaced by the formats dir) and expects failure with
 * a message containing every needle. */
static void expect_error(const char *body_fmt, const char *needle1, const char *needle2)
{
    char *body = with_formats(body_fmt);
    char *path = write_config(body);
    tw_config_t *c = NULL;
    tw_err_t err = {{0}};
    int rc = tw_config_load(&c, path, &err);
    TW_CHECK_INT(rc, -1);
    if (rc == 0) {
        fprintf(stderr, "  accepted: %s\n", body);
        tw_config_free(c);
    } else {
        bool ok = strstr(err.msg, path) && strstr(err.msg, needle1) &&
                  (!needle2 || strstr(err.msg, needle2));
        TW_CHECK(ok);
        if (!ok)
            fprintf(stderr, "  message: %s\n  wanted: %s / %s\n", err.msg, needle1,
                    needle2 ? needle2 : "");
    }
    free(path);
    free(body);
}

static void test_errors(void)
{
    expect_error("{", "invalid JSON", "line 1");
    expect_error("[]", "expected an object", NULL);
    expect_error("{\"formats_dir\":\"%s\"}", "state_dir", "required");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"bogus\":1}", "bogus",
                 "unknown key");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"state_dir\":\"t\"}", "state_dir",
                 "twice");
    expect_error("{\"state_dir\":5,\"formats_dir\":\"%s\"}", "state_dir", "expected a string");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"log_level\":\"loud\"}",
                 "log_level", "\"loud\"");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"state_interval_ms\":1}",
                 "state_interval_ms", "expected an integer from 50");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"http\":{\"listen\":\"9477\"}}",
                 "http.listen", "address:port");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"http\":{\"listen\":\"localhost:9477\"}}",
                 "http.listen", "IP address");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"http\":{\"listen\":\"127.0.0.1:99999\"}}",
                 "http.listen", "port");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"http\":{\"max_connections\":0}}",
                 "http.max_connections", "expected an integer");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"http\":{\"port\":1}}",
                 "http.port", "unknown key");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"follow\":{\"max_line_bytes\":1.5}}",
                 "follow.max_line_bytes", "integer");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"follow\":{\"inotify\":\"yes\"}}",
                 "follow.inotify", "true or false");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"inputs\":{}}", "inputs",
                 "array");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"inputs\":[1]}", "inputs[0]",
                 "object");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"inputs\":[{\"name\":\"a\","
                 "\"path\":\"/x\",\"format\":\"generic-text\"},{\"name\":\"b\",\"path\":\"/y\","
                 "\"format\":\"nope\"}]}",
                 "inputs[1].format", "generic-text");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"inputs\":[{\"name\":\"a b\","
                 "\"path\":\"/x\",\"format\":\"generic-text\"}]}",
                 "inputs[0].name", "[A-Za-z0-9_.-]");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"inputs\":[{\"name\":\"a\","
                 "\"path\":\"/x\",\"format\":\"generic-text\"},{\"name\":\"a\",\"path\":\"/y\","
                 "\"format\":\"generic-text\"}]}",
                 "inputs[1].name", "unique");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"inputs\":[{\"name\":\"a\","
                 "\"path\":\"/x\",\"format\":\"generic-text\"},{\"name\":\"b\",\"path\":\"/x\","
                 "\"format\":\"generic-text\"}]}",
                 "inputs[1].path", "inputs[0].path");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"inputs\":[{\"name\":\"a\","
                 "\"path\":\"/x\",\"format\":\"generic-text\",\"start\":\"middle\"}]}",
                 "inputs[0].start", "\"beginning\"");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s\",\"inputs\":[{\"name\":\"a\","
                 "\"format\":\"generic-text\"}]}",
                 "inputs[0].path", "required");
    expect_error("{\"state_dir\":\"s\",\"formats_dir\":\"%s/nonexistent\"}", "nonexistent",
                 NULL);
}

static void test_valid(void)
{
    char *body = tw_xasprintf(
        "{\"state_dir\":\"state\",\"formats_dir\":\"%s\",\"http\":{\"listen\":\"[::1]:0\"},"
        "\"inputs\":[{\"name\":\"gw\",\"path\":\"logs/a.log\",\"format\":\"generic-text\"},"
        "{\"name\":\"v\",\"path\":\"/var/log/v.log\",\"format\":\"vault-audit\","
        "\"start\":\"beginning\"}]}",
        formats);
    char *path = write_config(body);
    tw_config_t *c = NULL;
    tw_err_t err = {{0}};
    int rc = tw_config_load(&c, path, &err);
    TW_CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  %s\n", err.msg);
    } else {
        char *want_state = tw_xasprintf("%s/state", dir);
        char *want_log = tw_xasprintf("%s/logs/a.log", dir);
        TW_CHECK_STR(c->state_dir, want_state);
        TW_CHECK_STR(c->http_address, "::1");
        TW_CHECK_INT(c->http_port, 0);
        TW_CHECK_INT(c->http_max_connections, 2048);
        TW_CHECK_INT(c->state_interval_ms, 5000);
        TW_CHECK_INT(c->follow.max_line, 64 * 1024);
        TW_CHECK_INT(c->ninputs, 2);
        TW_CHECK_STR(c->inputs[0].path, want_log);
        TW_CHECK_INT(c->inputs[0].from_start, 0);
        TW_CHECK_STR(c->inputs[1].path, "/var/log/v.log");
        TW_CHECK_INT(c->inputs[1].from_start, 1);
        TW_CHECK_STR(tw_format_name(c->inputs[1].format), "vault-audit");
        TW_CHECK(tw_config_input(c, "gw") == &c->inputs[0]);
        TW_CHECK(tw_config_input(c, "nope") == NULL);
        free(want_state);
        free(want_log);
        tw_config_free(c);
    }
    free(path);
    free(body);
}

static void test_listen(void)
{
    char *addr;
    uint16_t port;
    TW_CHECK_INT(tw_parse_listen("127.0.0.1:9477", &addr, &port, NULL), 0);
    TW_CHECK_STR(addr, "127.0.0.1");
    TW_CHECK_INT(port, 9477);
    free(addr);
    TW_CHECK_INT(tw_parse_listen("[::1]:80", &addr, &port, NULL), 0);
    TW_CHECK_STR(addr, "::1");
    free(addr);
    TW_CHECK_INT(tw_parse_listen("::1:80", &addr, &port, NULL), -1);
    TW_CHECK_INT(tw_parse_listen("1.2.3.4:", &addr, &port, NULL), -1);
    TW_CHECK_INT(tw_parse_listen("1.2.3.4:-1", &addr, &port, NULL), -1);
    TW_CHECK_INT(tw_parse_listen("[::1]80", &addr, &port, NULL), -1);
    TW_CHECK_INT(tw_parse_listen("127.0.0.1:+80", &addr, &port, NULL), -1);
    TW_CHECK_INT(tw_parse_listen("127.0.0.1: 80", &addr, &port, NULL), -1);
    TW_CHECK_INT(tw_parse_listen("127.0.0.1:080", &addr, &port, NULL), -1);
    TW_CHECK_INT(tw_parse_listen("127.0.0.1:65536", &addr, &port, NULL), -1);
    TW_CHECK_INT(tw_parse_listen("127.0.0.1:0", &addr, &port, NULL), 0);
    free(addr);
}

int main(void)
{
    const char *src = getenv("TW_SOURCE_DIR");
    snprintf(formats, sizeof formats, "%s/rules/formats", src ? src : ".");
    if (!mkdtemp(dir))
        tw_die("mkdtemp failed");
    test_errors();
    test_valid();
    test_listen();
    char *cfg = tw_xasprintf("%s/tokenwatch.json", dir);
    unlink(cfg);
    free(cfg);
    rmdir(dir);
    return tw_test_done();
}
