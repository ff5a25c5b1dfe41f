/*
 * state_save.c — how long saving and loading the baselines file takes, and
 * how big it is, at 1,000,000 tokens (issue 4 point 5). Not a timed test:
 * it prints numbers, and fails only if the load does not give back what was
 * saved.
 *
 *   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
 *   cmake --build build-bench --target tw_analyzer
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I analyzer -I exporter bench/state_save.c \
 *      build-bench/libtw_analyzer.a build-bench/libtw_exporter.a build-bench/libtw_common.a \
 *      $(pkg-config --libs libsodium libmaxminddb libcjson libpcre2-8 libmicrohttpd) \
 *      -lm -lpthread -o /tmp/state_save
 *   /tmp/state_save [N [DIR]]
 *
 * Fills a detector bounded at N (default 1,000,000) tokens through
 * tw_detect_event, as a busy deployment would: rules/default.json, the test
 * GeoIP City and ASN databases (testdata/geoip; the source tree is
 * $TW_SOURCE_DIR, else the current directory), three accepted checks per
 * token over a day from one of 20 located networks (or a private address),
 * every tenth token a regular user with 40 checks over ten days (a mature
 * baseline with a real hour profile), three in four tokens with one of
 * 50,000 principals, one in twenty with a rejected check first. Then saves
 * to DIR/baselines.bin (DIR default: a new directory under $TMPDIR or /tmp,
 * removed at the end: put it on the disk that will hold state_dir, since
 * the save includes its fsync), loads it into a fresh detector and checks
 * counts and recency order. Prints
 *
 *   tokens=N bytes=B save_s=S load_s=L
 *
 * and a second line with the principals, bytes per token and fill time.
 */
#include "persist.h"
#include "tokens.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S 1000000000LL
#define MON 1793577600LL   /* 2026-11-02T00:00:00Z, a Monday */

static const char *const ips[] = {
    "192.0.2.10",   "192.0.2.70",     "192.0.2.140",   "192.0.2.200",     "198.51.100.5",
    "198.51.100.40", "198.51.100.70", "198.51.100.100", "198.51.100.140", "198.51.100.200",
    "203.0.113.10", "203.0.113.70",   "203.0.113.140", "203.0.113.200",   "81.2.69.160",
    "5.145.130.1",  "62.72.33.4",     "83.96.1.2",     "2001:db8:100::5", "2001:db8:300::9",
    "10.20.30.40",
};
#define NIPS (sizeof ips / sizeof ips[0])

static void ev(tw_detect_t *d, int64_t t_s, const char *ip, const char *user, const char *tok,
               bool rejected)
{
    tw_event_t e;
    memset(&e, 0, sizeof e);
    e.token = (tw_slice_t){tok, strlen(tok)};
    e.ip = (tw_slice_t){ip, strlen(ip)};
    if (user)
        e.user = (tw_slice_t){user, strlen(user)};
    e.time_ns = t_s * S;
    e.rejected = rejected;
    tw_detect_event(d, "bench", &e);
}

/* CPU time of the process (user + system): on a busy machine the wall times
 * also count waiting for a core. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool first_ids(void *ctx, const tw_token_t *e)
{
    uint64_t **p = ctx;
    *(*p)++ = e->id;
    return **p != 1;   /* the array ends with a 1 sentinel */
}

static int die(const char *what, const tw_err_t *err)
{
    fprintf(stderr, "state_save: %s: %s\n", what, err->msg);
    return 1;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    const char *src = getenv("TW_SOURCE_DIR");
    if (!src || !src[0])
        src = ".";
    char dirbuf[512];
    const char *dir = argc > 2 ? argv[2] : NULL;
    if (!dir) {
        const char *t = getenv("TMPDIR");
        snprintf(dirbuf, sizeof dirbuf, "%s/tw-state-save-XXXXXX", t && t[0] ? t : "/tmp");
        if (!mkdtemp(dirbuf)) {
            perror("mkdtemp");
            return 1;
        }
        dir = dirbuf;
    }
    char city[1024], asn[1024], rules_path[1024], path[1024], tmp[1100];
    snprintf(city, sizeof city, "%s/testdata/geoip/GeoLite2-City-Test.mmdb", src);
    snprintf(asn, sizeof asn, "%s/testdata/geoip/GeoLite2-ASN-Test.mmdb", src);
    snprintf(rules_path, sizeof rules_path, "%s/rules/default.json", src);
    snprintf(path, sizeof path, "%s/%s", dir, TW_PERSIST_FILE);

    tw_err_t err;
    tw_tokenid_t *key;
    tw_geo_t *geo;
    tw_rules_t *rules;
    if (tw_tokenid_open(&key, dir, &err) != 0)
        return die("key", &err);
    if (tw_geo_open(&geo, city, asn, TW_GEO_CACHE_DEFAULT, &err) != 0)
        return die("geoip (set TW_SOURCE_DIR to the source tree)", &err);
    if (tw_rules_load(&rules, rules_path, &err) != 0)
        return die("rules", &err);
    tw_detect_opts_t o = {.rules = rules, .geo = geo, .key = key, .max_tokens = n};
    tw_detect_t *d = tw_detect_new(&o);

    int64_t t0 = tw_mono_ns();
    char tok[64], user[32];
    for (size_t i = 0; i < n; i++) {
        /* Tokens appear over 30 days; a regular one stays for ten. */
        int64_t start = MON + (int64_t)(i * 30 * 86400 / (n ? n : 1));
        snprintf(tok, sizeof tok, "bench-token-%012zu-%08zx", i, i * 2654435761u);
        const char *u = NULL;
        if (i % 4) {
            snprintf(user, sizeof user, "user-%05zu", (i * 7919) % 50000);
            u = user;
        }
        const char *ip = ips[(i * 31 + i / 7) % NIPS];
        if (i % 20 == 0)
            ev(d, start, ip, u, tok, true);
        if (i % 10 == 0) {
            for (int k = 0; k < 40; k++)
                ev(d, start + (k / 4) * 86400 + (8 + (k % 4) * 2) * 3600, ip, u, tok, false);
        } else {
            for (int k = 0; k < 3; k++)
                ev(d, start + k * 4 * 3600 + (int64_t)(i % 3600), ip, u, tok, false);
        }
    }
    double fill_s = (double)(tw_mono_ns() - t0) / 1e9;

    tw_persist_stats_t sv, ld;
    double c0 = cpu_s();
    if (tw_persist_save(d, path, &sv, &err) != 0)
        return die("save", &err);
    double c1 = cpu_s();
    tw_detect_t *d2 = tw_detect_new(&o);
    if (tw_persist_load(d2, path, &ld, &err) != 0)
        return die("load", &err);
    double c2 = cpu_s();

    int bad = 0;
    tw_tokens_t *a = tw_detect_tokens(d), *b = tw_detect_tokens(d2);
    if (tw_tokens_count(a) != tw_tokens_count(b) ||
        tw_tokens_count(tw_detect_principals(d)) != tw_tokens_count(tw_detect_principals(d2)) ||
        ld.tokens != sv.tokens || ld.principals != sv.principals || ld.bytes != sv.bytes) {
        fprintf(stderr, "state_save: the load did not give back the counts saved\n");
        bad = 1;
    }
    /* Recency order: the first 1,000 ids, and the oldest. */
    enum { K = 1000 };
    static uint64_t ia[K + 1], ib[K + 1];
    uint64_t *pa = ia, *pb = ib;
    ia[K] = ib[K] = 1;
    tw_tokens_each(a, first_ids, &pa);
    tw_tokens_each(b, first_ids, &pb);
    if (memcmp(ia, ib, sizeof ia) != 0 ||
        (n && tw_tokens_oldest(a)->id != tw_tokens_oldest(b)->id)) {
        fprintf(stderr, "state_save: the load did not keep the recency order\n");
        bad = 1;
    }

    printf("tokens=%" PRIu64 " bytes=%" PRIu64 " save_s=%.3f load_s=%.3f\n", sv.tokens, sv.bytes,
           sv.seconds, ld.seconds);
    tw_detect_stats_t ds;
    tw_detect_stats(d, &ds);
    uint64_t entries = sv.tokens + sv.principals;
    printf("principals=%" PRIu64 " bytes_per_entry=%.1f save_cpu_s=%.3f load_cpu_s=%.3f"
           " flagged=%" PRIu64 " table_memory_mb=%.1f fill_s=%.1f dir=%s\n",
           sv.principals, (double)sv.bytes / (double)(entries ? entries : 1), c1 - c0, c2 - c1,
           ds.tokens_flagged, (double)ds.memory_bytes / 1048576.0, fill_s, dir);

    tw_detect_free(d);
    tw_detect_free(d2);
    tw_rules_free(rules);
    tw_geo_close(geo);
    tw_tokenid_free(key);
    if (argc <= 2) {
        unlink(path);
        snprintf(tmp, sizeof tmp, "%s/%s", dir, TW_TOKENID_KEY_FILE);
        unlink(tmp);
        rmdir(dir);
    }
    return bad;
}
