/*
 * fuzz_config.c — libFuzzer target: the daemon's configuration file through
 * tw_config_load (jsonv validation, listen address parsing, input checks,
 * format directory loading).
 *
 * Input: the bytes of tokenwatch.json, written to a private temp dir that
 * also holds "formats", a symlink to the source tree's rules/formats (so a
 * config saying "formats_dir": "formats" loads the shipped formats, as the
 * seeds do), "rules" and "testdata", links to those trees (rules_file,
 * geoip databases). Relative paths resolve against that temp dir.
 *
 * Checks: a failure returns -1 with a non-empty message and no config; a
 * success keeps what config.h promises: state_dir and formats_dir set,
 * ranges respected, every input named validly and uniquely, with a format
 * that belongs to the loaded set and a path no other input has; tw_config_input
 * finds each input by name.
 */
#include "fuzz_common.h"

#include "config.h"
#include "log.h"

static char path[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = fuzz_tmpdir();
    snprintf(path, sizeof path, "%s/tokenwatch.json", dir);
    /* "formats" for the shipped formats, "rules" for the rules/ tree (rules
     * files), "testdata" for the test GeoIP databases; all relative to the
     * config, as a config's own paths are. */
    static const char *const links[][2] = {
        {"formats", "rules/formats"}, {"rules", "rules"}, {"testdata", "testdata"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        char link[512], target[1024];
        snprintf(link, sizeof link, "%s/%s", dir, links[i][0]);
        snprintf(target, sizeof target, "%s/%s", fuzz_source_dir(), links[i][1]);
        struct stat st;
        FUZZ_SETUP(stat(target, &st) == 0 && S_ISDIR(st.st_mode),
                   "%s is not a directory (set TW_SOURCE_DIR)", target);
        FUZZ_SETUP(symlink(target, link) == 0 || errno == EEXIST, "symlink %s: %s", link,
                   strerror(errno));
    }
    /* Format loading never logs, but keep a stray message off the fuzzer's
     * output should that change. */
    tw_log_setup(TW_LOG_ERROR, TW_LOG_PLAIN);
    return 0;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 64 &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        LLVMFuzzerInitialize(NULL, NULL);
    fuzz_write_file(path, data, size);

    tw_config_t *c = NULL;
    tw_err_t err;
    err.msg[0] = '\0';
    if (tw_config_load(&c, path, &err) != 0) {
        FUZZ_CHECK(c == NULL);
        FUZZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
        FUZZ_CHECK(err.msg[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(c != NULL);
    FUZZ_CHECK(c->file && strcmp(c->file, path) == 0);
    FUZZ_CHECK(c->state_dir && c->state_dir[0]);
    FUZZ_CHECK(c->formats_dir && c->formats_dir[0]);
    FUZZ_CHECK(c->formats != NULL);
    FUZZ_CHECK(c->log_level >= 0);
    FUZZ_CHECK(c->state_interval_ms >= 50 && c->state_interval_ms <= 3600000);
    FUZZ_CHECK(c->http_address != NULL);
    FUZZ_CHECK(c->http_max_connections >= 1 && c->http_max_connections <= 100000);
    FUZZ_CHECK(c->http_timeout_s >= 1 && c->http_timeout_s <= 3600);
    FUZZ_CHECK(c->follow.max_line >= 256 && c->follow.max_line <= (64u << 20));
    FUZZ_CHECK(c->follow.block >= 4096 && c->follow.block <= (64u << 20));
    FUZZ_CHECK(c->poll_interval_ms >= 10 && c->poll_interval_ms <= 60000);

    /* The listen address round-trips through the same parser. */
    char listen[128];
    bool v6 = strchr(c->http_address, ':') != NULL;
    snprintf(listen, sizeof listen, v6 ? "[%s]:%u" : "%s:%u", c->http_address,
             (unsigned)c->http_port);
    char *addr = NULL;
    uint16_t port = 0;
    FUZZ_CHECK(tw_parse_listen(listen, &addr, &port, NULL) == 0);
    FUZZ_CHECK(strcmp(addr, c->http_address) == 0 && port == c->http_port);
    free(addr);

    for (size_t i = 0; i < c->ninputs; i++) {
        const tw_input_conf_t *in = &c->inputs[i];
        FUZZ_CHECK(in->name && valid_name(in->name));
        FUZZ_CHECK(in->path && in->path[0]);
        FUZZ_CHECK(in->format != NULL);
        FUZZ_CHECK(tw_formats_find(c->formats, tw_format_name(in->format)) == in->format);
        FUZZ_CHECK(tw_config_input(c, in->name) == in);
        for (size_t j = 0; j < i; j++) {
            FUZZ_CHECK(strcmp(c->inputs[j].name, in->name) != 0);
            FUZZ_CHECK(strcmp(c->inputs[j].path, in->path) != 0);
        }
    }
    FUZZ_CHECK(tw_config_input(c, "") == NULL);
    tw_config_free(c);
    return 0;
}
