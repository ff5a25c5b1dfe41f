/* test_tz.c — TZif offsets: DST transitions, southern hemisphere, caching
 * by pointer and by name, unknown and hostile zone names. */
#include "tz.h"
#include "tw_test.h"

#include <unistd.h>

int main(void)
{
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
