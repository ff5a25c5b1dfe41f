/*
 * tz.h — UTC offsets of IANA time zones, read from TZif files
 * (/usr/share/zoneinfo, RFC 8536), for hour-of-week profiles in local time
 * and the business-hours policy. No TZ environment, no localtime(): the
 * answer depends only on the zone files, so replay stays deterministic.
 *
 * A tw_tz_t caches every zone it has loaded (by name) and, per zone, the
 * interval of the last answer, so the steady-state cost of an offset is a
 * pointer-hash probe and two compares. Times after the zone's last listed
 * transition use the offset in force after it (Debian ships "fat" TZif files
 * listing transitions to 2037; the POSIX footer rule is not evaluated).
 * An unknown or unreadable zone answers offset 0 (UTC) and is remembered as
 * such, so a bad name costs one failed open, not one per event.
 *
 * Threading: a tw_tz_t belongs to one thread.
 */
#ifndef TW_TZ_H
#define TW_TZ_H

#include "common.h"

#include <stdint.h>

typedef struct tw_tz tw_tz_t;

/* dir: the zoneinfo root; NULL means /usr/share/zoneinfo. */
tw_tz_t *tw_tz_new(const char *dir);
void tw_tz_free(tw_tz_t *z);   /* NULL-safe */

/*
 * Offset east of UTC in seconds of zone `name` (an IANA name such as
 * "Europe/Berlin"; "" and "UTC" are UTC) at t_s seconds since the epoch.
 * Returns 0 and sets *off_s, or -1 (and *off_s = 0) for an unknown zone.
 * Names are compared by pointer first: pass interned strings (geo.h) for
 * the fast path; other strings work too.
 */
int tw_tz_offset(tw_tz_t *z, const char *name, int64_t t_s, int32_t *off_s);

/* Checks that name is a loadable zone (config validation). */
int tw_tz_check(const char *dir, const char *name, tw_err_t *err);

#endif
