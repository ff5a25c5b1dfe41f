/* test_tz.c — TZif offsets: DST transitions, southern hemisphere, caching
 * by pointer and by name, unknown and hostile zone names. */
#include "tz.h"
#include "tw_test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Hostile TZif files (a zoneinfo dir is not attacker-controlled, but a
 * broken tzdata install must not crash the daemon): each must load as an
 * unknown zone or a valid one, never read outside the file. Run under
 * ASan in CI. */
static void test_corrupt_files(void)
{
    char dir[] = "/tmp/tw_test_tz_XXXXXX";
    if (!mkdtemp(dir))
        tw_die("mkdtemp");
    /* tzif2-v1-block-past-end (found by fuzz_tz): v1 counts that claim a
     * block longer than the file. */
    static const unsigned char past_end[] = {
        'T', 'Z', 'i', 'f', '2', 0, 0, 'T', 'Z', 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 6, 0, 0, 0, 5, 0, 0, 5, 0, 0, 0};
    static const unsigned char huge_counts[] = {
        'T', 'Z', 'i', 'f', '2', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const unsigned char short_v1[] = {'T', 'Z', 'i', 'f', 0, 0, 0};
    const struct {
        const char *name;
        const unsigned char *data;
        size_t len;
    } cases[] = {
        {"past_end", past_end, sizeof past_end},
        {"huge_counts", huge_counts, sizeof huge_counts},
        {"short_v1", short_v1, sizeof short_v1},
    };
    tw_tz_t *z = tw_tz_new(dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = tw_path_join(dir, cases[i].name);
        TW_CHECK_INT(tw_write_file_atomic(path, cases[i].data, cases[i].len, 0644, NULL), 0);
        int32_t off = 12345;
        int rc = tw_tz_offset(z, cases[i].name, 1768478400, &off);
        TW_CHECK(rc == -1 || rc == 0);
        if (rc == -1)
            TW_CHECK_INT(off, 0);
        unlink(path);
        free(path);
    }
    tw_tz_free(z);
    rmdir(dir);
}

int main(void)
{
    test_corrupt_files();
    if (access("/usr/share/zoneinfo/Europe/Berlin", R_OK) != 0) {
        printf("no /usr/share/zoneinfo: skipped\n");
        return 77;
    }
    tw_tz_t *z = tw_tz_new(NULL);
    int32_t off;
    /* 2026-01-15 12:00Z: CET +1h; 2026-07-15: CEST +2h. */
    TW_CHECK_INT(tw_tz_offset(z, "Europe/Berlin", 1768478400, &off), 0);
    TW_CHECK_INT(off, 3600);
    TW_CHECK_INT(tw_tz_offset(z, "Europe/Berlin", 1784116800, &off), 0);
    TW_CHECK_INT(off, 7200);
    /* Around the 2026-03-29 01:00Z switch. */
    TW_CHECK_INT(tw_tz_offset(z, "Europe/Berlin", 1774746000 - 1, &off), 0);
    TW_CHECK_INT(off, 3600);
    TW_CHECK_INT(tw_tz_offset(z, "Europe/Berlin", 1774746000, &off), 0);
    TW_CHECK_INT(off, 7200);
    /* New York in November: EST -5h; Sydney in January: AEDT +11h. */
    TW_CHECK_INT(tw_tz_offset(z, "America/New_York", 1793880000, &off), 0);
    TW_CHECK_INT(off, -5 * 3600);
    TW_CHECK_INT(tw_tz_offset(z, "Australia/Sydney", 1768478400, &off), 0);
    TW_CHECK_INT(off, 11 * 3600);
    TW_CHECK_INT(tw_tz_offset(z, "Asia/Kolkata", 1768478400, &off), 0);
    TW_CHECK_INT(off, 19800);
    /* Same name through another pointer: same answer. */
    char name[] = "Europe/Berlin";
    TW_CHECK_INT(tw_tz_offset(z, name, 1784116800, &off), 0);
    TW_CHECK_INT(off, 7200);
    /* UTC and empty. */
    TW_CHECK_INT(tw_tz_offset(z, "UTC", 1784116800, &off), 0);
    TW_CHECK_INT(off, 0);
    TW_CHECK_INT(tw_tz_offset(z, "", 1784116800, &off), 0);
    /* Unknown and hostile names: -1, offset 0, no file outside the root. */
    TW_CHECK_INT(tw_tz_offset(z, "Mars/Olympus", 0, &off), -1);
    TW_CHECK_INT(off, 0);
    TW_CHECK_INT(tw_tz_offset(z, "../../etc/passwd", 0, &off), -1);
    TW_CHECK_INT(tw_tz_offset(z, "/etc/localtime", 0, &off), -1);
    tw_tz_free(z);

    tw_err_t err;
    TW_CHECK_INT(tw_tz_check(NULL, "Europe/Berlin", &err), 0);
    TW_CHECK_INT(tw_tz_check(NULL, "Nowhere/City", &err), -1);
    TW_CHECK(strstr(err.msg, "Nowhere/City") != NULL);
    return tw_test_done();
}
