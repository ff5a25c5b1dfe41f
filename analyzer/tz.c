/*
 * tz.c — see tz.h. Reads the version 2+ (64-bit) part of a TZif file when
 * present, else the version 1 part.
 */
#include "tz.h"

#include <stdlib.h>
#include <string.h>

#define SLOTS 256   /* zones cached; the world has about 600 */
#define TZ_FILE_MAX (1u << 20)

typedef struct zone {
    const char *key;       /* the pointer callers pass (fast path) */
    char *name;
    int64_t *trans;        /* transition times, ascending */
    int32_t *trans_off;    /* offset from each transition on */
    size_t ntrans;
    int32_t first_off;     /* before the first transition */
    bool bad;
    /* Last answer: offset `last_off` holds for t in [lo, hi). */
    int64_t lo, hi;
    int32_t last_off;
} zone_t;

struct tw_tz {
    char *dir;
    zone_t *slots[SLOTS];
    zone_t **extra;        /* overflow when more than SLOTS zones are seen */
    size_t nextra;
};

tw_tz_t *tw_tz_new(const char *dir)
{
    tw_tz_t *z = tw_xcalloc(1, sizeof *z);
    z->dir = tw_xstrdup(dir ? dir : "/usr/share/zoneinfo");
    return z;
}

static void zone_free(zone_t *zn)
{
    if (!zn)
        return;
    free(zn->name);
    free(zn->trans);
    free(zn->trans_off);
    free(zn);
}

void tw_tz_free(tw_tz_t *z)
{
    if (!z)
        return;
    for (size_t i = 0; i < SLOTS; i++)
        zone_free(z->slots[i]);
    for (size_t i = 0; i < z->nextra; i++)
        zone_free(z->extra[i]);
    free(z->extra);
    free(z->dir);
    free(z);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static bool name_ok(const char *n)
{
    if (!n[0] || n[0] == '/' || strstr(n, ".."))
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '/' || *p == '_' || *p == '-' || *p == '+'))
            return false;
    return true;
}

/* Parses one TZif data block at p (counts from hdr); v2 selects 8-byte times. */
static int parse_block(zone_t *zn, const unsigned char *hdr, const unsigned char *p,
                       const unsigned char *end, bool v2)
{
    uint32_t isutcnt = be32(hdr + 20), isstdcnt = be32(hdr + 24), leapcnt = be32(hdr + 28);
    uint32_t timecnt = be32(hdr + 32), typecnt = be32(hdr + 36), charcnt = be32(hdr + 40);
    (void)isutcnt;
    (void)isstdcnt;
    (void)leapcnt;
    (void)charcnt;
    size_t tsz = v2 ? 8 : 4;
    if (typecnt == 0 || typecnt > 256 || timecnt > 100000)
        return -1;
    size_t need = (size_t)timecnt * tsz + timecnt + (size_t)typecnt * 6;
    if ((size_t)(end - p) < need)
        return -1;
    const unsigned char *times = p, *idx = p + (size_t)timecnt * tsz, *types = idx + timecnt;
    zn->trans = tw_xcalloc(timecnt ? timecnt : 1, sizeof *zn->trans);
    zn->trans_off = tw_xcalloc(timecnt ? timecnt : 1, sizeof *zn->trans_off);
    for (uint32_t i = 0; i < timecnt; i++) {
        zn->trans[i] = v2 ? be64(times + (size_t)i * 8) : (int32_t)be32(times + (size_t)i * 4);
        unsigned ti = idx[i];
        if (ti >= typecnt)
            return -1;
        zn->trans_off[i] = (int32_t)be32(types + (size_t)ti * 6);
        if (i && zn->trans[i] < zn->trans[i - 1])
            return -1;
    }
    zn->ntrans = timecnt;
    /* RFC 8536: local time before the first transition uses type 0. */
    zn->first_off = (int32_t)be32(types);
    return 0;
}

static void zone_load(const tw_tz_t *z, zone_t *zn)
{
    zn->bad = true;
    if (strcmp(zn->name, "UTC") == 0 || strcmp(zn->name, "Etc/UTC") == 0) {
        zn->bad = false;
        return;
    }
    if (!name_ok(zn->name))
        return;
    char *path = tw_path_join(z->dir, zn->name);
    char *data;
    size_t len;
    int rc = tw_read_file(path, &data, &len, NULL);
    free(path);
    if (rc != 0)
        return;
    const unsigned char *d = (const unsigned char *)data, *end = d + len;
    if (len < 44 || memcmp(d, "TZif", 4) != 0 || len > TZ_FILE_MAX) {
        free(data);
        return;
    }
    bool ok;
    if (d[4] >= '2') {
        /* Skip the v1 block to reach the v2 header. */
        size_t v1 = (size_t)be32(d + 32) * 5 + (size_t)be32(d + 36) * 6 + be32(d + 40) +
                    (size_t)be32(d + 28) * 8 + be32(d + 24) + be32(d + 20);
        /* The counts come from the file: a v1 block claimed to reach past
         * the end must not move the pointer outside the buffer (found by
         * fuzz_tz, tests/fuzz/regressions/tz/tzif2-v1-block-past-end). */
        ok = v1 <= len - 44 && len - 44 - v1 >= 44;
        const unsigned char *h2 = ok ? d + 44 + v1 : NULL;
        ok = ok && memcmp(h2, "TZif", 4) == 0 &&
             parse_block(zn, h2, h2 + 44, end, true) == 0;
    } else {
        ok = parse_block(zn, d, d + 44, end, false) == 0;
    }
    free(data);
    if (ok)
        zn->bad = false;
    else {
        free(zn->trans);
        free(zn->trans_off);
        zn->trans = NULL;
        zn->trans_off = NULL;
        zn->ntrans = 0;
    }
}

static zone_t *zone_get(tw_tz_t *z, const char *name)
{
    uintptr_t h = (uintptr_t)name;
    h ^= h >> 17;
    h *= 0x9E3779B97F4A7C15ULL;
    size_t start = (size_t)(h >> 40) % SLOTS;
    for (size_t k = 0; k < SLOTS; k++) {
        zone_t *zn = z->slots[(start + k) % SLOTS];
        if (!zn)
            break;
        if (zn->key == name)
            return zn;
    }
    /* Slow path: another pointer to a zone already loaded (a caller that
     * does not intern), then a new zone. */
    for (size_t i = 0; i < SLOTS; i++)
        if (z->slots[i] && strcmp(z->slots[i]->name, name) == 0)
            return z->slots[i];
    for (size_t i = 0; i < z->nextra; i++)
        if (strcmp(z->extra[i]->name, name) == 0)
            return z->extra[i];
    zone_t *zn = tw_xcalloc(1, sizeof *zn);
    zn->key = name;
    zn->name = tw_xstrdup(name);
    zone_load(z, zn);
    zn->lo = zn->hi = 0;
    for (size_t k = 0; k < SLOTS; k++) {
        size_t i = (start + k) % SLOTS;
        if (!z->slots[i]) {
            z->slots[i] = zn;
            return zn;
        }
    }
    z->extra = tw_xrealloc(z->extra, (z->nextra + 1) * sizeof *z->extra);
    z->extra[z->nextra++] = zn;
    return zn;
}

int tw_tz_offset(tw_tz_t *z, const char *name, int64_t t_s, int32_t *off_s)
{
    *off_s = 0;
    if (!name || !name[0])
        return 0;
    zone_t *zn = zone_get(z, name);
    if (zn->bad)
        return -1;
    if (t_s >= zn->lo && t_s < zn->hi) {
        *off_s = zn->last_off;
        return 0;
    }
    if (zn->ntrans == 0 || t_s < zn->trans[0]) {
        *off_s = zn->first_off;
        zn->lo = INT64_MIN;
        zn->hi = zn->ntrans ? zn->trans[0] : INT64_MAX;
    } else {
        /* Last transition <= t_s. */
        size_t lo = 0, hi = zn->ntrans;
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (zn->trans[mid] <= t_s)
                lo = mid;
            else
                hi = mid;
        }
        *off_s = zn->trans_off[lo];
        zn->lo = zn->trans[lo];
        zn->hi = lo + 1 < zn->ntrans ? zn->trans[lo + 1] : INT64_MAX;
    }
    zn->last_off = *off_s;
    return 0;
}

int tw_tz_check(const char *dir, const char *name, tw_err_t *err)
{
    tw_tz_t *z = tw_tz_new(dir);
    int32_t off;
    int rc = tw_tz_offset(z, name, 0, &off);
    tw_tz_free(z);
    if (rc != 0)
        return tw_err_set(err, "expected an IANA time zone readable from %s, got \"%s\"",
                          dir ? dir : "/usr/share/zoneinfo", name);
    return 0;
}
