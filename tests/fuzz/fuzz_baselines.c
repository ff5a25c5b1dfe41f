/*
 * fuzz_baselines.c — libFuzzer target: the baselines file (state_dir/
 * baselines.bin) through tw_persist_load, and what loads back through
 * tw_persist_save + tw_persist_load.
 *
 * Input: byte 0 chooses how, the rest is the file.
 *   bit 0  the rest is the file without its trailer: the target appends a
 *          valid one ("TWBE", length, BLAKE2b-256), so that the fuzzer gets
 *          past the checksum and reaches the record decoder (a forged file
 *          with a valid checksum is exactly what validation is for);
 *          otherwise the rest is written as it is (header/trailer checks)
 *   bit 1  load into a detector without GeoIP (strings become "")
 *   bit 2  load into a detector bounded at 4 entries (capacity smaller than
 *          the file: the newest are kept)
 *
 * Checks: the file exists, so never 1; a failure leaves both tables empty and
 * the flagged count 0, with a message that starts with the path; a success
 * keeps at most the table bound, reports what it put in the tables, counts
 * the flagged tokens exactly, and saves (a loaded baseline is always
 * savable); that file loads into a twin detector and saves again to the
 * same bytes (except the save time in the header and the checksum): the
 * round trip loses nothing.
 */
#include "fuzz_common.h"

#include "persist.h"
#include "tokenid.h"
#include "tokens.h"

#include <sodium.h>

static char path[600], path2[600], path3[600];
static tw_tokenid_t *key;
static tw_geo_t *geo;
static tw_detect_t *dets[3], *twins[3];   /* geo/64, no geo/64, geo/4 */
static unsigned long runs;
static unsigned char *file_buf;

/* (Re)creates the GeoIP handle and the detectors: every fuzzed string a load
 * accepts stays interned until tw_geo_close(), so start afresh now and then
 * to keep the process's memory flat over a long campaign. */
static void setup(void)
{
    for (int i = 0; i < 3; i++) {
        tw_detect_free(dets[i]);
        tw_detect_free(twins[i]);
    }
    tw_geo_close(geo);
    tw_err_t err;
    char city[1024];
    snprintf(city, sizeof city, "%s/testdata/geoip/GeoLite2-City-Test.mmdb", fuzz_source_dir());
    FUZZ_SETUP(tw_geo_open(&geo, city, NULL, 64, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 3; i++) {
        tw_detect_opts_t o = {.geo = i == 1 ? NULL : geo, .key = key, .max_tokens = i == 2 ? 4 : 64};
        dets[i] = tw_detect_new(&o);
        twins[i] = tw_detect_new(&o);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = fuzz_tmpdir();
    snprintf(path, sizeof path, "%s/%s", dir, TW_PERSIST_FILE);
    snprintf(path2, sizeof path2, "%s/again.bin", dir);
    snprintf(path3, sizeof path3, "%s/twice.bin", dir);
    FUZZ_SETUP(sodium_init() >= 0, "sodium_init");
    tw_err_t err;
    FUZZ_SETUP(tw_tokenid_open(&key, dir, &err) == 0, "%s", err.msg);
    setup();
    return 0;
}

static bool count_flagged(void *ctx, const tw_token_t *e)
{
    if (e->b.flags & TW_BL_FLAGGED)
        (*(uint64_t *)ctx)++;
    return true;
}

static void check_empty(tw_detect_t *d)
{
    tw_detect_stats_t s;
    tw_detect_stats(d, &s);
    FUZZ_CHECK(s.tokens_tracked == 0 && s.principals_tracked == 0 && s.tokens_flagged == 0);
}

/* The two files are equal but for the save time (header bytes 32-39) and the
 * checksum (the last 32 bytes). */
static void same_files(const char *a, const char *b)
{
    char *x, *y;
    size_t nx, ny;
    tw_err_t err;
    FUZZ_CHECK(tw_read_file(a, &x, &nx, &err) == 0 && tw_read_file(b, &y, &ny, &err) == 0);
    FUZZ_CHECK(nx == ny && nx >= 84);
    FUZZ_CHECK(memcmp(x, y, 32) == 0 && memcmp(x + 40, y + 40, nx - 40 - 32) == 0);
    free(x);
    free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        LLVMFuzzerInitialize(NULL, NULL);
    if (size < 1)
        return 0;
    if (++runs % 4096 == 0)
        setup();
    unsigned mode = data[0];
    data++;
    size--;
    if (mode & 1) {
        file_buf = realloc(file_buf, size + 44);
        FUZZ_SETUP(file_buf != NULL, "out of memory");
        if (size)
            memcpy(file_buf, data, size);
        uint64_t len = size;
        memcpy(file_buf + size, "TWBE", 4);
        for (int i = 0; i < 8; i++)
            file_buf[size + 4 + i] = (unsigned char)(len >> (8 * i));
        crypto_generichash(file_buf + size + 12, 32, file_buf, size + 12, NULL, 0);
        fuzz_write_file(path, file_buf, size + 44);
    } else {
        fuzz_write_file(path, data, size);
    }
    int which = mode & 2 ? 1 : mode & 4 ? 2 : 0;
    tw_detect_t *d = dets[which], *twin = twins[which];

    tw_err_t err;
    err.msg[0] = '\0';
    tw_persist_stats_t st;
    memset(&st, 0, sizeof st);
    int rc = tw_persist_load(d, path, &st, &err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == -1) {
        FUZZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
        FUZZ_CHECK(strncmp(err.msg, path, strlen(path)) == 0);
        check_empty(d);
        return 0;
    }
    tw_tokens_t *tt = tw_detect_tokens(d), *pt = tw_detect_principals(d);
    FUZZ_CHECK(tw_tokens_count(tt) <= tw_tokens_capacity(tt));
    FUZZ_CHECK(tw_tokens_count(pt) <= tw_tokens_capacity(pt));
    FUZZ_CHECK(st.tokens == tw_tokens_count(tt) && st.principals == tw_tokens_count(pt));
    uint64_t flagged = 0;
    tw_tokens_each(tt, count_flagged, &flagged);
    tw_detect_stats_t s;
    tw_detect_stats(d, &s);
    FUZZ_CHECK(s.tokens_flagged == flagged);

    FUZZ_CHECK(tw_persist_save(d, path2, NULL, &err) == 0);
    FUZZ_CHECK(tw_persist_load(twin, path2, &st, &err) == 0);
    FUZZ_CHECK(st.tokens == tw_tokens_count(tt) && st.principals == tw_tokens_count(pt));
    FUZZ_CHECK(tw_persist_save(twin, path3, NULL, &err) == 0);
    same_files(path2, path3);

    tw_detect_clear(d);
    tw_detect_clear(twin);
    return 0;
}
