/*
 * test_state.c — the offsets snapshot round-trips exactly (64-bit values
 * included), a missing file is a first start, and a corrupt or newer file is
 * refused with a message naming the file.
 */
#include "state.h"
#include "tw_test.h"

#include <stdlib.h>
#include <unistd.h>

static char dir[] = "/tmp/tw_test_state_XXXXXX";

static void write_offsets(const char *text)
{
    char *path = tw_path_join(dir, TW_STATE_OFFSETS_FILE);
    if (tw_write_file_atomic(path, text, strlen(text), 0600, NULL) != 0)
        tw_die("cannot write %s", path);
    free(path);
}

static void test_roundtrip(void)
{
    static char gw[] = "gateway", gw_path[] = "/var/log/gw/auth.log";
    static char vault[] = "vault", vault_path[] = "/var/log/vault/audit.log";
    tw_state_input_t in[2];
    memset(in, 0, sizeof in);
    in[0].name = gw;
    in[0].path = gw_path;
    in[0].stats.lines = 12345678901234ULL;
    in[0].stats.checks = 9007199254740993ULL; /* 2^53 + 1: not a double */
    in[0].stats.rejected = 42;
    in[0].stats.parse_errors[TW_PERR_BAD_TIME] = 3;
    in[0].stats.skipped[TW_SKIPR_TOO_LONG] = 2;
    in[0].stats.rotations[TW_ROTATE_TRUNCATE] = 1;
    in[0].npos = 2;
    in[0].pos[0] = (tw_tail_pos_t){.dev = 2049, .ino = 18446744073709551557ULL,
                                   .offset = 1ULL << 40, .hash = 0xfedcba9876543210ULL,
                                   .hash_len = 4096, .current = true};
    in[0].pos[1] = (tw_tail_pos_t){.dev = 2049, .ino = 77, .offset = 10, .hash = 1,
                                   .hash_len = 10, .current = false};
    in[1].name = vault;
    in[1].path = vault_path;

    TW_CHECK_INT(tw_state_save(dir, in, 2, NULL), 0);
    tw_state_t *s = NULL;
    tw_err_t err;
    TW_CHECK_INT(tw_state_load(dir, &s, &err), 0);
    if (!s)
        return;
    TW_CHECK_INT(s->ninputs, 2);
    const tw_state_input_t *g = tw_state_find(s, "gateway");
    TW_CHECK(g != NULL);
    if (g) {
        TW_CHECK_STR(g->path, "/var/log/gw/auth.log");
        TW_CHECK(g->stats.lines == 12345678901234ULL);
        TW_CHECK(g->stats.checks == 9007199254740993ULL);
        TW_CHECK_INT(g->stats.rejected, 42);
        TW_CHECK_INT(g->stats.parse_errors[TW_PERR_BAD_TIME], 3);
        TW_CHECK_INT(g->stats.skipped[TW_SKIPR_TOO_LONG], 2);
        TW_CHECK_INT(g->stats.rotations[TW_ROTATE_TRUNCATE], 1);
        TW_CHECK_INT(g->npos, 2);
        TW_CHECK(g->pos[0].ino == 18446744073709551557ULL);
        TW_CHECK(g->pos[0].offset == (1ULL << 40));
        TW_CHECK(g->pos[0].hash == 0xfedcba9876543210ULL);
        TW_CHECK_INT(g->pos[0].hash_len, 4096);
        TW_CHECK(g->pos[0].current);
        TW_CHECK(!g->pos[1].current);
        TW_CHECK_INT(g->pos[1].ino, 77);
    }
    const tw_state_input_t *v = tw_state_find(s, "vault");
    TW_CHECK(v != NULL && v->npos == 0 && v->stats.checks == 0);
    TW_CHECK(tw_state_find(s, "other") == NULL);
    tw_state_free(s);
}

static void expect_refused(const char *text, const char *needle)
{
    write_offsets(text);
    tw_state_t *s = NULL;
    tw_err_t err = {{0}};
    TW_CHECK_INT(tw_state_load(dir, &s, &err), -1);
    TW_CHECK(s == NULL);
    bool ok = strstr(err.msg, TW_STATE_OFFSETS_FILE) && strstr(err.msg, needle);
    TW_CHECK(ok);
    if (!ok)
        fprintf(stderr, "  message: %s\n  wanted: %s\n", err.msg, needle);
}

static void test_refused(void)
{
    expect_refused("{\"version\":1,\"inputs\":[", "invalid JSON");
    expect_refused("", "invalid JSON");
    expect_refused("{\"version\":2,\"inputs\":[]}", "a newer tokenwatch");
    expect_refused("{\"inputs\":[]}", "version");
    expect_refused("{\"version\":1,\"inputs\":{}}", "inputs");
    expect_refused("{\"version\":1,\"inputs\":[{\"name\":\"a\",\"path\":\"/x\",\"files\":"
                   "[{\"offset\":12}]}]}",
                   "inputs[0].files[0].offset");
    expect_refused("{\"version\":1,\"inputs\":[{\"name\":\"a\",\"path\":\"/x\",\"files\":"
                   "[{\"offset\":\"-5\"}]}]}",
                   "decimal");
    expect_refused("{\"version\":1,\"inputs\":[{\"name\":\"a\",\"path\":\"/x\",\"files\":[],"
                   "\"counters\":{\"checks\":\"x1\"}}]}",
                   "inputs[0].counters.checks");
    /* strtoull leniencies a hand-edited file must not slip through. */
    static const char *const bad_numbers[] = {" -1", "+5", " 5", "5 ", "0x1f", "-0"};
    for (size_t i = 0; i < sizeof bad_numbers / sizeof bad_numbers[0]; i++) {
        char *doc = tw_xasprintf("{\"version\":1,\"inputs\":[{\"name\":\"a\",\"path\":\"/x\","
                                 "\"files\":[{\"offset\":\"%s\"}]}]}",
                                 bad_numbers[i]);
        expect_refused(doc, "inputs[0].files[0].offset");
        free(doc);
    }
    expect_refused("{\"version\":1,\"inputs\":[{\"name\":\"a\",\"path\":\"/x\",\"files\":"
                   "[{\"hash\":\"0x1f\"}]}]}",
                   "inputs[0].files[0].hash");
    expect_refused("{\"version\":1,\"inputs\":[{\"name\":\"a\",\"path\":\"/x\",\"files\":"
                   "[{\"offset\":\"18446744073709551616\"}]}]}",
                   "inputs[0].files[0].offset");
}

static void test_missing_is_fresh(void)
{
    char *path = tw_path_join(dir, TW_STATE_OFFSETS_FILE);
    unlink(path);
    free(path);
    tw_state_t *s = NULL;
    TW_CHECK_INT(tw_state_load(dir, &s, NULL), 0);
    TW_CHECK(s != NULL && s->ninputs == 0);
    tw_state_free(s);
}

int main(void)
{
    if (!mkdtemp(dir))
        tw_die("mkdtemp failed");
    TW_CHECK_INT(tw_state_prepare_dir(dir, NULL), 0);
    test_roundtrip();
    test_refused();
    test_missing_is_fresh();
    char *path = tw_path_join(dir, TW_STATE_OFFSETS_FILE);
    unlink(path);
    free(path);
    rmdir(dir);
    return tw_test_done();
}
