/*
 * test_geo.c — GeoIP lookups against testdata/geoip.
 *
 * The main check is data-driven: every row of cities.csv and asn.csv is
 * looked up at the first and last address of its network and must come back
 * exactly as the CSV says, so adding a row to the CSV (and regenerating the
 * .mmdb) adds a test. A second data-driven check compares a cached tw_geo_t
 * (large, and tiny enough to evict constantly) against an uncached one on
 * the same addresses: the cache may only ever change the speed.
 *
 * TW_GEO_BENCH=1 additionally prints lookups per second (hot cache, no
 * cache, address spray); it asserts nothing about speed.
 */
#include "geo.h"
#include "tw_test.h"

#include <arpa/inet.h>
#include <maxminddb.h>
#include <stdlib.h>
#include <unistd.h>

static const char *src_dir;
static char *city_path, *asn_path;
static char tmpdir[] = "/tmp/tw_test_geo_XXXXXX";

/* ---- CSV ------------------------------------------------------------------ */

#define MAX_COLS 16
#define MAX_ROWS 512

typedef struct csv {
    char *text;
    size_t ncols, nrows;
    const char *head[MAX_COLS];
    const char *cell[MAX_ROWS][MAX_COLS];
} csv_t;

/* Splits the generator's quote-free CSV in place. */
static csv_t *csv_load(const char *name)
{
    char *path = tw_xasprintf("%s/testdata/geoip/%s", src_dir, name);
    csv_t *c = tw_xcalloc(1, sizeof *c);
    tw_err_t err;
    if (tw_read_file(path, &c->text, NULL, &err) != 0)
        tw_die("%s", err.msg);
    free(path);
    char *line = c->text;
    bool header = true;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (*line) {
            const char **dst = header ? c->head : c->cell[c->nrows];
            size_t n = 0;
            for (char *f = line;; n++) {
                if (n == MAX_COLS)
                    tw_die("%s: too many columns", name);
                char *comma = strchr(f, ',');
                dst[n] = f;
                if (!comma)
                    break;
                *comma = '\0';
                f = comma + 1;
            }
            n++;
            if (header) {
                c->ncols = n;
                header = false;
            } else {
                if (n != c->ncols)
                    tw_die("%s: row %zu has %zu fields", name, c->nrows + 2, n);
                if (++c->nrows == MAX_ROWS)
                    tw_die("%s: too many rows", name);
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    return c;
}

static const char *csv_get(const csv_t *c, size_t row, const char *col)
{
    for (size_t i = 0; i < c->ncols; i++)
        if (strcmp(c->head[i], col) == 0)
            return c->cell[row][i];
    tw_die("no column %s", col);
}

static void csv_free(csv_t *c)
{
    free(c->text);
    free(c);
}

/* ---- address helpers ------------------------------------------------------ */

typedef struct net {
    tw_geo_addr_t first, last;
    unsigned len;
} net_t;

static void parse_net(const char *cidr, net_t *n)
{
    const char *slash = strchr(cidr, '/');
    if (!slash)
        tw_die("network %s has no prefix length", cidr);
    if (tw_geo_addr_parse(cidr, (size_t)(slash - cidr), &n->first) != 0)
        tw_die("bad network %s", cidr);
    n->len = (unsigned)atoi(slash + 1);
    n->last = n->first;
    unsigned width = n->first.family == 4 ? 32 : 128;
    for (unsigned bit = n->len; bit < width; bit++)
        n->last.bytes[bit / 8] |= (uint8_t)(0x80u >> (bit % 8));
}

static bool net_contains(const net_t *n, const tw_geo_addr_t *a)
{
    return tw_geo_addr_same_prefix(&n->first, a, n->len);
}

static const char *addr_text(const tw_geo_addr_t *a, char *buf, size_t cap)
{
    if (!inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->bytes, buf, (socklen_t)cap))
        tw_die("inet_ntop failed");
    return buf;
}

static tw_geo_status_t look(tw_geo_t *g, const char *ip, tw_geo_result_t *r)
{
    return tw_geo_lookup(g, ip, strlen(ip), r);
}

static tw_geo_t *open_test_db(size_t cache, bool with_asn)
{
    tw_geo_t *g = NULL;
    tw_err_t err;
    if (tw_geo_open(&g, city_path, with_asn ? asn_path : NULL, cache, &err) != 0)
        tw_die("cannot open the test databases: %s", err.msg);
    return g;
}

/* ---- data-driven: every CSV row ------------------------------------------- */

static uint32_t expected_asn(const csv_t *cities, size_t row, const csv_t *asns,
                             const tw_geo_addr_t *a, const char **org)
{
    const char *asn = csv_get(cities, row, "asn");
    if (*asn) {
        *org = csv_get(cities, row, "asn_org");
        return (uint32_t)strtoul(asn, NULL, 10);
    }
    for (size_t i = 0; i < asns->nrows; i++) {
        net_t n;
        parse_net(csv_get(asns, i, "network"), &n);
        if (net_contains(&n, a)) {
            *org = csv_get(asns, i, "asn_org");
            return (uint32_t)strtoul(csv_get(asns, i, "asn"), NULL, 10);
        }
    }
    *org = "";
    return 0;
}

static void check_city_row(tw_geo_t *g, const csv_t *cities, size_t row, const csv_t *asns,
                           const tw_geo_addr_t *a, unsigned len)
{
    char ip[INET6_ADDRSTRLEN];
    tw_geo_result_t r;
    addr_text(a, ip, sizeof ip);
    tw_geo_status_t st = look(g, ip, &r);
    if (st != TW_GEO_FOUND)
        fprintf(stderr, "row %s: %s -> %s\n", csv_get(cities, row, "network"), ip,
                tw_geo_status_name(st));
    TW_CHECK_INT(st, TW_GEO_FOUND);
    TW_CHECK_STR(r.country, csv_get(cities, row, "country_iso"));
    TW_CHECK_STR(r.city, csv_get(cities, row, "city"));
    TW_CHECK_INT(r.prefix_len, len);
    TW_CHECK_INT(r.addr.family, a->family);
    const char *gid = csv_get(cities, row, "geoname_id");
    TW_CHECK_INT(r.geoname_id, *gid ? strtoul(gid, NULL, 10) : 0);
    const char *lat = csv_get(cities, row, "lat");
    TW_CHECK_INT(r.located, *lat != '\0');
    if (*lat) {
        /* Exact: the generator and strtod round the same decimal text. */
        TW_CHECK(r.lat == strtod(lat, NULL));
        TW_CHECK(r.lon == strtod(csv_get(cities, row, "lon"), NULL));
        TW_CHECK_INT(r.radius_km, strtoul(csv_get(cities, row, "radius_km"), NULL, 10));
    }
    TW_CHECK_STR(r.time_zone, csv_get(cities, row, "time_zone"));
    const char *org;
    TW_CHECK_INT(r.asn, expected_asn(cities, row, asns, a, &org));
    TW_CHECK_STR(r.asn_org, org);
}

static void test_every_csv_row(void)
{
    csv_t *cities = csv_load("cities.csv");
    csv_t *asns = csv_load("asn.csv");
    tw_geo_t *g = open_test_db(0, true);
    TW_CHECK(cities->nrows >= 40);

    for (size_t i = 0; i < cities->nrows; i++) {
        net_t n;
        parse_net(csv_get(cities, i, "network"), &n);
        check_city_row(g, cities, i, asns, &n.first, n.len);
        check_city_row(g, cities, i, asns, &n.last, n.len);
    }
    /* asn.csv rows: the ASN is there whether or not a city record is. */
    for (size_t i = 0; i < asns->nrows; i++) {
        net_t n;
        char ip[INET6_ADDRSTRLEN];
        tw_geo_result_t r;
        parse_net(csv_get(asns, i, "network"), &n);
        const tw_geo_addr_t *ends[2] = {&n.first, &n.last};
        for (int e = 0; e < 2; e++) {
            look(g, addr_text(ends[e], ip, sizeof ip), &r);
            TW_CHECK_INT(r.asn, strtoul(csv_get(asns, i, "asn"), NULL, 10));
            TW_CHECK_STR(r.asn_org, csv_get(asns, i, "asn_org"));
            bool in_city = false;
            for (size_t c = 0; c < cities->nrows; c++) {
                net_t cn;
                parse_net(csv_get(cities, c, "network"), &cn);
                in_city = in_city || net_contains(&cn, ends[e]);
            }
            TW_CHECK_INT(r.status, in_city ? TW_GEO_FOUND : TW_GEO_NOT_FOUND);
        }
    }
    tw_geo_close(g);
    csv_free(cities);
    csv_free(asns);
}

/* ---- cache ---------------------------------------------------------------- */

static bool same_result(const tw_geo_result_t *a, const tw_geo_result_t *b)
{
    return a->status == b->status && a->located == b->located &&
           strcmp(a->country, b->country) == 0 && a->prefix_len == b->prefix_len &&
           a->radius_km == b->radius_km && a->geoname_id == b->geoname_id && a->asn == b->asn &&
           a->lat == b->lat && a->lon == b->lon && strcmp(a->city, b->city) == 0 &&
           strcmp(a->time_zone, b->time_zone) == 0 && strcmp(a->asn_org, b->asn_org) == 0 &&
           a->addr.family == b->addr.family &&
           memcmp(a->addr.bytes, b->addr.bytes, sizeof a->addr.bytes) == 0;
}

/* Addresses around every network edge of both CSVs: first, last, the ones
 * just outside, and a pseudo-random few inside. */
static size_t edge_addresses(tw_geo_addr_t *out, size_t cap)
{
    static const char *const files[] = {"cities.csv", "asn.csv"};
    size_t n = 0;
    uint32_t rnd = 12345;
    for (int f = 0; f < 2; f++) {
        csv_t *c = csv_load(files[f]);
        for (size_t i = 0; i < c->nrows && n + 8 <= cap; i++) {
            net_t nt;
            parse_net(csv_get(c, i, "network"), &nt);
            out[n++] = nt.first;
            out[n++] = nt.last;
            tw_geo_addr_t before = nt.first, after = nt.last;
            size_t last = nt.first.family == 4 ? 3 : 15;
            for (size_t b = last + 1; b-- > 0;)
                if (before.bytes[b]-- != 0)
                    break;
            for (size_t b = last + 1; b-- > 0;)
                if (++after.bytes[b] != 0)
                    break;
            out[n++] = before;
            out[n++] = after;
            for (int k = 0; k < 4; k++) {
                tw_geo_addr_t a = nt.first;
                for (size_t b = 0; b <= last; b++) {
                    unsigned net_bits = nt.len > b * 8 ? (unsigned)(nt.len - b * 8) : 0;
                    unsigned host_mask = net_bits >= 8 ? 0 : 0xffu >> net_bits;
                    rnd = rnd * 1103515245u + 12345u;
                    a.bytes[b] |= (uint8_t)((rnd >> 16) & host_mask);
                }
                out[n++] = a;
            }
        }
        csv_free(c);
    }
    return n;
}

static void test_cache_is_transparent(void)
{
    static tw_geo_addr_t addrs[1024];
    size_t n = edge_addresses(addrs, sizeof addrs / sizeof addrs[0]);
    TW_CHECK(n > 400);
    tw_geo_t *plain = open_test_db(0, true);
    tw_geo_t *big = open_test_db(4096, true);
    tw_geo_t *tiny = open_test_db(4, true); /* one set: evicts all the time */
    tw_geo_t *byaddr = open_test_db(4096, true); /* tw_geo_prefetch + lookup_addr */
    size_t mismatches = 0;
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < n; i++) {
            char ip[INET6_ADDRSTRLEN];
            tw_geo_result_t r0, r1, r2;
            addr_text(&addrs[i], ip, sizeof ip);
            look(plain, ip, &r0);
            look(big, ip, &r1);
            look(tiny, ip, &r2);
            tw_geo_result_t r3;
            tw_geo_addr_t pa;
            TW_CHECK(tw_geo_addr_parse(ip, strlen(ip), &pa) == 0);
            tw_geo_prefetch(byaddr, &pa);
            TW_CHECK_INT(tw_geo_lookup_addr(byaddr, &pa, &r3), r3.status);
            if (!same_result(&r0, &r1) || !same_result(&r0, &r2) || !same_result(&r0, &r3)) {
                if (mismatches++ < 5)
                    fprintf(stderr, "cache changed the answer for %s (pass %d)\n", ip, pass);
            }
        }
    }
    TW_CHECK_INT(mismatches, 0);
    tw_geo_stats_t s;
    tw_geo_stats(big, &s);
    TW_CHECK(s.cache_hits > 0);
    tw_geo_stats(tiny, &s);
    TW_CHECK(s.cache_evictions > 0);
    tw_geo_close(plain);
    tw_geo_close(big);
    tw_geo_close(tiny);
    tw_geo_stats_t s1, s3;
    tw_geo_stats(byaddr, &s3);
    big = open_test_db(4096, true);
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < n; i++) {
            char ip[INET6_ADDRSTRLEN];
            tw_geo_result_t r;
            addr_text(&addrs[i], ip, sizeof ip);
            look(big, ip, &r);
        }
    }
    tw_geo_stats(big, &s1);
    /* Same counters either way: prefetching counts nothing. (Which lookups
     * hit depends on each instance's random set placement.) */
    TW_CHECK_INT(s3.lookups, s1.lookups);
    for (int k = 0; k < TW_GEO_STATUS_COUNT; k++)
        TW_CHECK_INT(s3.by_status[k], s1.by_status[k]);
    TW_CHECK_INT(s3.cache_hits + s3.tree_walks, s1.cache_hits + s1.tree_walks);
    tw_geo_close(big);
    tw_geo_close(byaddr);
}

/* Looks ip up and reports whether it was answered from the cache. */
static bool hit(tw_geo_t *g, const char *ip, tw_geo_result_t *r)
{
    tw_geo_stats_t before, after;
    tw_geo_stats(g, &before);
    look(g, ip, r);
    tw_geo_stats(g, &after);
    return after.cache_hits == before.cache_hits + 1;
}

static void test_cache_granularity(void)
{
    /* Large enough that no set of 4 overflows with these few dozen keys
     * whatever the random hash key is, so every expected hit is one. */
    tw_geo_t *g = open_test_db(TW_GEO_CACHE_DEFAULT, true);
    tw_geo_result_t r;

    /* Munich is a /20: one entry per /24, so the second address hits. */
    TW_CHECK(!hit(g, "5.145.128.1", &r));
    TW_CHECK(hit(g, "5.145.128.200", &r));
    TW_CHECK_STR(r.city, "Munich");
    TW_CHECK(!hit(g, "5.145.129.1", &r)); /* another /24 of the /20 */
    TW_CHECK(hit(g, "5.145.129.77", &r));

    /* Berlin is a /26, narrower than a /24: cached per address. */
    TW_CHECK(!hit(g, "192.0.2.1", &r));
    TW_CHECK(!hit(g, "192.0.2.2", &r));
    TW_CHECK(hit(g, "192.0.2.1", &r));
    TW_CHECK_STR(r.city, "Berlin");

    /* The IPv4-mapped spelling shares the IPv4 entry. */
    TW_CHECK(hit(g, "::ffff:192.0.2.1", &r));
    TW_CHECK_STR(r.city, "Berlin");
    TW_CHECK_INT(r.addr.family, 4);

    /* IPv6: /40 -> one entry per /48; /56 -> per /64; /120 -> per address. */
    TW_CHECK(!hit(g, "2001:db8:100::1", &r));
    TW_CHECK(hit(g, "2001:db8:100:ffff::2", &r));
    TW_CHECK_STR(r.city, "Berlin");
    TW_CHECK(!hit(g, "2001:db8:800::1", &r));
    TW_CHECK(hit(g, "2001:db8:800:0:aaaa::1", &r));
    TW_CHECK_STR(r.city, "S\xc3\xa3o Paulo");
    TW_CHECK(!hit(g, "2001:db8:800:1::1", &r));
    TW_CHECK(!hit(g, "2001:db8:a00::1", &r));
    TW_CHECK(!hit(g, "2001:db8:a00::2", &r));
    TW_CHECK_STR(r.city, "Nairobi");

    /* City and ASN networks differ: the entry covers their intersection.
     * 37.120.64.0/20 (DE, no city) holds ASN networks 37.120.64.0/24 and
     * 37.120.65.0/25. */
    TW_CHECK(!hit(g, "37.120.64.1", &r));
    TW_CHECK_INT(r.asn, 64496);
    TW_CHECK(hit(g, "37.120.64.250", &r));
    TW_CHECK_INT(r.asn, 64496);
    TW_CHECK(!hit(g, "37.120.65.1", &r));
    TW_CHECK_INT(r.asn, 64511);
    TW_CHECK(!hit(g, "37.120.65.200", &r)); /* must not reuse 37.120.65.1's ASN */
    TW_CHECK_INT(r.asn, 0);
    TW_CHECK_STR(r.country, "DE");
    TW_CHECK_INT(r.prefix_len, 20);

    /* Not-found answers are cached too (a /28 hole here: per address). */
    TW_CHECK(!hit(g, "192.0.2.241", &r));
    TW_CHECK_INT(r.status, TW_GEO_NOT_FOUND);
    TW_CHECK(hit(g, "192.0.2.241", &r));
    TW_CHECK_INT(r.status, TW_GEO_NOT_FOUND);

    /* Private and invalid addresses never touch the cache or the tree. */
    tw_geo_stats_t s0, s1;
    tw_geo_stats(g, &s0);
    look(g, "10.0.0.1", &r);
    look(g, "bogus", &r);
    tw_geo_stats(g, &s1);
    TW_CHECK_INT(s1.cache_hits, s0.cache_hits);
    TW_CHECK_INT(s1.tree_walks, s0.tree_walks);
    TW_CHECK_INT(s1.lookups, s0.lookups + 2);

    tw_geo_stats(g, &s1);
    uint64_t sum = 0;
    for (int i = 0; i < TW_GEO_STATUS_COUNT; i++)
        sum += s1.by_status[i];
    TW_CHECK_INT(sum, s1.lookups);
    TW_CHECK_INT(s1.cache_hits + s1.tree_walks, s1.by_status[TW_GEO_FOUND] +
                                                    s1.by_status[TW_GEO_NOT_FOUND] +
                                                    s1.by_status[TW_GEO_ERROR]);
    TW_CHECK_INT(s1.by_status[TW_GEO_PRIVATE], 1);
    TW_CHECK_INT(s1.by_status[TW_GEO_INVALID], 1);
    TW_CHECK_INT(s1.by_status[TW_GEO_ERROR], 0);
    TW_CHECK(s1.interned_bytes > 0);

    tw_geo_info_t info;
    tw_geo_info(g, &info);
    TW_CHECK_STR(info.city_type, "GeoLite2-City");
    TW_CHECK_STR(info.asn_type, "GeoLite2-ASN");
    TW_CHECK_INT(info.city_build_epoch, 1767225600);
    TW_CHECK_INT(info.cache_slots, TW_GEO_CACHE_DEFAULT);
    tw_geo_close(g);

    /* Sizes round up to a power of two; 0 turns the cache off. */
    g = open_test_db(1000, false);
    tw_geo_info(g, &info);
    TW_CHECK_INT(info.cache_slots, 1024);
    TW_CHECK(info.asn_type == NULL);
    tw_geo_close(g);
    g = open_test_db(0, false);
    TW_CHECK(!hit(g, "5.145.128.1", &r));
    TW_CHECK(!hit(g, "5.145.128.1", &r));
    TW_CHECK_STR(r.city, "Munich");
    TW_CHECK_INT(r.asn, 0); /* no ASN database */
    tw_geo_close(g);
}

/* ---- classification ------------------------------------------------------- */

/* The IPv4 fast path and inet_pton agree (the fast path must accept what
 * inet_pton accepts and reject the rest), and formatting round-trips. */
static void test_addr_text(void)
{
    static const char *const good[] = {"0.0.0.0", "1.2.3.4", "9.99.199.255", "255.255.255.255",
                                       "10.0.10.100", "203.0.113.7"};
    static const char *const bad[] = {"", "1", "1.2.3", "1.2.3.4.", ".1.2.3.4", "1..2.3",
                                      "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "1.2.3.999",
                                      "01.2.3.4", "1.2.3.04", "1.2.3.00", "1.2.3.1234",
                                      "1.2.3.4 ", " 1.2.3.4", "1.2.3.-4", "1.2.3.4x",
                                      "a.b.c.d", "1.2.3.4/24"};
    char text[64];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        tw_geo_addr_t a;
        uint8_t want[4];
        TW_CHECK_INT(tw_geo_addr_parse(good[i], strlen(good[i]), &a), 0);
        TW_CHECK_INT(a.family, 4);
        TW_CHECK_INT(inet_pton(AF_INET, good[i], want), 1);
        TW_CHECK(memcmp(a.bytes, want, 4) == 0);
        TW_CHECK_STR(tw_geo_addr_format(&a, text, sizeof text), good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tw_geo_addr_t a;
        TW_CHECK_INT(tw_geo_addr_parse(bad[i], strlen(bad[i]), &a), -1);
        TW_CHECK_INT(a.family, 0);
    }
    /* Not NUL-terminated: only the slice counts. */
    tw_geo_addr_t a;
    TW_CHECK_INT(tw_geo_addr_parse("1.2.3.45", 7, &a), 0);
    TW_CHECK_STR(tw_geo_addr_format(&a, text, sizeof text), "1.2.3.4");
    TW_CHECK_INT(tw_geo_addr_parse("2001:db8::1", 11, &a), 0);
    TW_CHECK_STR(tw_geo_addr_format(&a, text, sizeof text), "2001:db8::1");
    TW_CHECK_STR(tw_geo_addr_format(&a, text, 8), "");   /* too small for it */
    memset(&a, 0, sizeof a);
    TW_CHECK_STR(tw_geo_addr_format(&a, text, sizeof text), "");
}

/* Dotted quads with one to four digits an octet (leading zeros, values
 * past 255), then damaged at random: a byte changed to one of the bytes
 * that matter, cut short, lengthened. tw_geo_addr_parse must say exactly
 * what inet_pton says of each: its fast path takes the well-formed ones
 * and must neither accept more nor read other numbers. */
static void test_addr_text_random(void)
{
    static const char alphabet[] = "0123456789..........x -/+\0";
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    size_t accepted = 0;
    for (int i = 0; i < 300000; i++) {
        char s[40];
        size_t n = 0;
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        bool clean = x >> 63;   /* half are addresses as a log writes them */
        for (int k = 0; k < 4; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            unsigned v = (unsigned)(x >> 20) % 1000;
            char oct[8];
            if (clean || (x >> 50) % 2 == 0) {
                snprintf(oct, sizeof oct, "%u", clean ? v % 256 : v);
            } else {
                unsigned digits = 1 + (unsigned)(x >> 60) % 4;   /* leading zeros, 4 digits */
                snprintf(oct, sizeof oct, "%0*u", (int)digits, v % (digits == 1 ? 10 : 100));
            }
            n += (size_t)snprintf(s + n, sizeof s - n, "%s%s", k ? "." : "", oct);
        }
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        switch ((x >> 61) & 7) {
        case 0:
            s[(x >> 8) % n] = alphabet[(x >> 20) % (sizeof alphabet - 1)];
            break;
        case 1:
            n = (x >> 8) % (n + 1);
            break;
        case 2:
            s[n++] = alphabet[(x >> 20) % (sizeof alphabet - 1)];
            break;
        default:
            break;   /* most stay as made */
        }
        s[n] = '\0';
        if (memchr(s, '\0', n) || memchr(s, ':', n))
            continue;   /* NULs are refused, colons are IPv6's */
        uint8_t want[4];
        int ok = inet_pton(AF_INET, s, want) == 1;
        tw_geo_addr_t a;
        int rc = tw_geo_addr_parse(s, n, &a);
        if (rc != (ok ? 0 : -1) || (ok && (a.family != 4 || memcmp(a.bytes, want, 4) != 0))) {
            fprintf(stderr, "address text \"%s\": parse %d, inet_pton %d\n", s, rc, ok);
            TW_CHECK(!"tw_geo_addr_parse agrees with inet_pton");
            return;
        }
        accepted += ok;
    }
    fprintf(stderr, "random address texts: %zu of 300000 valid\n", accepted);
    TW_CHECK(accepted > 50000 && accepted < 250000);   /* both kinds, plenty of each */
}

static void test_special_addresses(void)
{
    static const char *const private_ips[] = {
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.255",
        "127.0.0.1",
        "127.255.255.254",
        "169.254.10.20",
        "0.0.0.0",
        "0.1.2.3",
        "192.0.0.9",
        "198.18.0.1",
        "198.19.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "fe80::1",
        "fe80::1%eth0",
        "febf:ffff::1",
        "fec0::1",
        "fc00::1",
        "fd12:3456:789a::1",
        "ff02::1",
        "ff05::1:3",
        "100::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "::FFFF:192.168.0.1",
        "::ffff:100.64.1.1",
    };
    tw_geo_t *g = open_test_db(64, true);
    tw_geo_result_t r;
    for (size_t i = 0; i < sizeof private_ips / sizeof private_ips[0]; i++) {
        tw_geo_status_t st = look(g, private_ips[i], &r);
        if (st != TW_GEO_PRIVATE)
            fprintf(stderr, "%s -> %s\n", private_ips[i], tw_geo_status_name(st));
        TW_CHECK_INT(st, TW_GEO_PRIVATE);
        TW_CHECK(!r.located);
        TW_CHECK_STR(r.country, "");
        TW_CHECK_STR(r.city, "");
        TW_CHECK_INT(r.asn, 0);
        TW_CHECK(r.addr.family == 4 || r.addr.family == 6);
    }

    /* Just outside the private blocks: public, and absent from the test db. */
    static const char *const public_ips[] = {
        "9.255.255.255",    "11.0.0.0",
        "100.63.255.255",   "100.128.0.0",
        "172.15.255.255",   "172.32.0.0",
        "192.167.255.255",  "192.169.0.0",
        "169.253.255.255",  "198.17.255.255",
        "198.20.0.0",       "223.255.255.255",
        "8.8.8.8",          "2001:4860:4860::8888",
        "2001:db8:7000::1", "fe00::1",
        "::1:0:0:0",        "101::1",
    };
    for (size_t i = 0; i < sizeof public_ips / sizeof public_ips[0]; i++) {
        tw_geo_status_t st = look(g, public_ips[i], &r);
        if (st != TW_GEO_NOT_FOUND)
            fprintf(stderr, "%s -> %s\n", public_ips[i], tw_geo_status_name(st));
        TW_CHECK_INT(st, TW_GEO_NOT_FOUND);
        TW_CHECK(!r.located);
    }

    /* The documentation ranges are public here: the test data lives there. */
    TW_CHECK_INT(look(g, "192.0.2.10", &r), TW_GEO_FOUND);
    TW_CHECK_STR(r.city, "Berlin");
    TW_CHECK_INT(look(g, "198.51.100.5", &r), TW_GEO_FOUND);
    TW_CHECK_STR(r.city, "New York");
    TW_CHECK_INT(look(g, "203.0.113.7", &r), TW_GEO_FOUND);
    TW_CHECK_STR(r.city, "Tokyo");
    TW_CHECK_STR(r.time_zone, "Asia/Tokyo");
    TW_CHECK_INT(look(g, "2001:db8:300::7", &r), TW_GEO_FOUND);
    TW_CHECK_STR(r.city, "New York");

    static const char *const invalid_ips[] = {
        "",
        "abc",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        "01.2.3.4",
        " 1.2.3.4",
        "1.2.3.4 ",
        "1.2.3.4/24",
        "1.2.3.4:80",
        "2001:db8::g",
        "fe80::1%",
        "[2001:db8::1]",
        "2001:db8:::1",
        "::ffff:1.2.3",
        "1:2:3:4:5:6:7:8:9",
        "0x7f.0.0.1",
        "-1.2.3.4",
        "1..2.3",
    };
    for (size_t i = 0; i < sizeof invalid_ips / sizeof invalid_ips[0]; i++) {
        TW_CHECK_INT(look(g, invalid_ips[i], &r), TW_GEO_INVALID);
        TW_CHECK_INT(r.addr.family, 0);
        TW_CHECK(!r.located);
        TW_CHECK_STR(r.city, "");
    }
    /* A NUL inside the slice, and text too long for any address. */
    TW_CHECK_INT(tw_geo_lookup(g, "1.2.3.4\0x", 9, &r), TW_GEO_INVALID);
    TW_CHECK_INT(tw_geo_lookup(g, "192.0.2.10", 9, &r), TW_GEO_FOUND); /* "192.0.2.1" */
    TW_CHECK_STR(r.city, "Berlin");
    char big[300];
    memset(big, '1', sizeof big);
    TW_CHECK_INT(tw_geo_lookup(g, big, sizeof big, &r), TW_GEO_INVALID);
    TW_CHECK_INT(
        tw_geo_lookup(g, "2001:0db8:0300:0000:0000:0000:0000:0001%abcdefghijklmnop", 55, &r),
        TW_GEO_FOUND);
    TW_CHECK_INT(
        tw_geo_lookup(g, "2001:0db8:0300:0000:0000:0000:0000:0001%abcdefghijklmnopqrstuvwxyz",
                      65, &r),
        TW_GEO_INVALID);

    tw_geo_stats_t s;
    tw_geo_stats(g, &s);
    TW_CHECK_INT(s.by_status[TW_GEO_PRIVATE], sizeof private_ips / sizeof private_ips[0]);
    TW_CHECK_INT(s.by_status[TW_GEO_INVALID], sizeof invalid_ips / sizeof invalid_ips[0] + 3);
    TW_CHECK_STR(tw_geo_status_name(TW_GEO_FOUND), "found");
    TW_CHECK_STR(tw_geo_status_name(TW_GEO_NOT_FOUND), "not_found");
    TW_CHECK_STR(tw_geo_status_name(TW_GEO_PRIVATE), "private");
    TW_CHECK_STR(tw_geo_status_name(TW_GEO_INVALID), "invalid");
    TW_CHECK_STR(tw_geo_status_name(TW_GEO_ERROR), "error");
    tw_geo_close(g);
}

static void test_records(void)
{
    tw_geo_t *g = open_test_db(256, true);
    tw_geo_result_t r, r2;

    /* IPv4, IPv6 and IPv4-mapped spellings. */
    TW_CHECK_INT(look(g, "198.51.100.130", &r), TW_GEO_FOUND);
    TW_CHECK_STR(r.city, "S\xc3\xa3o Paulo");
    TW_CHECK_STR(r.country, "BR");
    TW_CHECK_STR(r.time_zone, "America/Sao_Paulo");
    TW_CHECK_INT(r.asn, 64502);
    TW_CHECK_INT(r.prefix_len, 27);
    TW_CHECK_INT(look(g, "::ffff:198.51.100.130", &r2), TW_GEO_FOUND);
    TW_CHECK(same_result(&r, &r2));
    TW_CHECK_INT(look(g, "::ffff:c633:6482", &r2), TW_GEO_FOUND); /* hex spelling */
    TW_CHECK(same_result(&r, &r2));
    /* 6to4 (2002::/16) leads to the embedded IPv4 address, as in GeoLite2;
     * its network is the /27 seen through the /16 prefix. */
    TW_CHECK_INT(look(g, "2002:c633:6482::1", &r2), TW_GEO_FOUND);
    TW_CHECK_STR(r2.city, "S\xc3\xa3o Paulo");
    TW_CHECK_INT(r2.prefix_len, 16 + 27);
    TW_CHECK_INT(r2.addr.family, 6);
    TW_CHECK_INT(look(g, "2001:db8:601::42", &r), TW_GEO_FOUND);
    TW_CHECK_STR(r.city, "Singapore");
    TW_CHECK_INT(r.prefix_len, 48);
    TW_CHECK_INT(r.asn, 64500);
    TW_CHECK_STR(r.asn_org, "Example Cloud");
    TW_CHECK_INT(r.addr.family, 6);

    /* Interned: the same string is the same pointer, across records. */
    tw_geo_result_t a, b;
    look(g, "192.0.2.130", &a);
    look(g, "81.2.69.142", &b);
    TW_CHECK_STR(a.city, "London");
    TW_CHECK(a.city == b.city);
    TW_CHECK(a.time_zone == b.time_zone);
    TW_CHECK(a.asn_org == b.asn_org);
    TW_CHECK_INT(b.radius_km, 100);

    /* A country-level record: located, no city, a wide radius. */
    TW_CHECK_INT(look(g, "37.120.70.1", &r), TW_GEO_FOUND);
    TW_CHECK(r.located);
    TW_CHECK_STR(r.city, "");
    TW_CHECK_STR(r.country, "DE");
    TW_CHECK_INT(r.radius_km, 500);
    TW_CHECK_INT(r.geoname_id, 0);
    TW_CHECK_INT(look(g, "96.44.1.1", &r), TW_GEO_FOUND);
    TW_CHECK_INT(r.radius_km, 1000);
    TW_CHECK_STR(r.time_zone, "America/Chicago");

    /* A country-only record: found, but no location for velocity rules. */
    TW_CHECK_INT(look(g, "176.97.40.1", &r), TW_GEO_FOUND);
    TW_CHECK(!r.located);
    TW_CHECK_STR(r.country, "NL");
    TW_CHECK_STR(r.time_zone, "");
    TW_CHECK_INT(r.radius_km, 0);

    /* Holes: not found; the ASN database may still know the network. */
    TW_CHECK_INT(look(g, "192.0.2.240", &r), TW_GEO_NOT_FOUND);
    TW_CHECK_INT(r.prefix_len, 27); /* the City db's empty 192.0.2.224/27 */
    TW_CHECK_INT(r.asn, 0);
    TW_CHECK_INT(look(g, "192.0.2.225", &r), TW_GEO_NOT_FOUND);
    TW_CHECK_INT(r.asn, 64500);
    TW_CHECK_STR(r.country, "");

    /* Same-prefix helper, as geo_velocity uses it. */
    tw_geo_addr_t x, y, z;
    TW_CHECK_INT(tw_geo_addr_parse("203.0.113.7", 11, &x), 0);
    TW_CHECK_INT(tw_geo_addr_parse("203.0.113.250", 13, &y), 0);
    TW_CHECK_INT(tw_geo_addr_parse("::ffff:203.0.114.1", 18, &z), 0);
    TW_CHECK(tw_geo_addr_same_prefix(&x, &y, 24));
    TW_CHECK(!tw_geo_addr_same_prefix(&x, &z, 24));
    TW_CHECK(tw_geo_addr_same_prefix(&x, &z, 22));
    TW_CHECK(!tw_geo_addr_same_prefix(&x, &y, 32));
    TW_CHECK(tw_geo_addr_same_prefix(&x, &x, 200));
    TW_CHECK_INT(tw_geo_addr_parse("2001:db8:1:2::1", 15, &y), 0);
    TW_CHECK_INT(tw_geo_addr_parse("2001:db8:1:3::1", 15, &z), 0);
    TW_CHECK(tw_geo_addr_same_prefix(&y, &z, 48));
    TW_CHECK(!tw_geo_addr_same_prefix(&y, &z, 64));
    TW_CHECK(!tw_geo_addr_same_prefix(&x, &y, 0)); /* families differ */
    /* Against a bit-by-bit comparison: random pairs that share a random
     * number of leading bits, every prefix length (and past the width). */
    uint64_t rs = 0x243F6A8885A308D3ULL;
    for (int n = 0; n < 2000; n++) {
        tw_geo_addr_t p = {.family = n % 2 ? 6 : 4}, q;
        for (int i = 0; i < 16; i++) {
            rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
            p.bytes[i] = (uint8_t)(rs >> 56);
        }
        q = p;
        unsigned width = p.family == 4 ? 32 : 128;
        unsigned flip = (unsigned)(rs >> 20) % (width + 1);   /* width: no bit differs */
        if (flip < width)
            q.bytes[flip / 8] ^= (uint8_t)(0x80u >> (flip % 8));
        if (p.family == 4)   /* bytes past an IPv4 address must not matter */
            q.bytes[4 + n % 12] ^= 0xff;
        for (unsigned bits = 0; bits <= width + 8; bits++) {
            bool want = true;
            for (unsigned i = 0; i < bits && i < width; i++)
                if (((p.bytes[i / 8] ^ q.bytes[i / 8]) >> (7 - i % 8)) & 1)
                    want = false;
            if (tw_geo_addr_same_prefix(&p, &q, bits) != want) {
                TW_CHECK(tw_geo_addr_same_prefix(&p, &q, bits) == want);
                fprintf(stderr, "  family %d, bit %u flipped, prefix %u\n", p.family, flip, bits);
                n = 2000;
                break;
            }
        }
    }
    TW_CHECK(tw_geo_addr_is_private(&(tw_geo_addr_t){.family = 4, .bytes = {10, 9, 8, 7}}));
    tw_geo_close(g);

    /* Every IPv4 /16 (and a few addresses in each) against the special-
     * purpose blocks written out here: the first-octet shortcut in
     * v4_private must agree with its block list. */
    static const struct {
        uint8_t a, b, c;
        unsigned len;
    } special[] = {{0, 0, 0, 8},    {10, 0, 0, 8},   {100, 64, 0, 10}, {127, 0, 0, 8},
                   {169, 254, 0, 16}, {172, 16, 0, 12}, {192, 0, 0, 24},  {192, 168, 0, 16},
                   {198, 18, 0, 15}, {224, 0, 0, 4},  {240, 0, 0, 4}};
    int wrong = 0;
    for (unsigned o1 = 0; o1 < 256; o1++) {
        for (unsigned o2 = 0; o2 < 256; o2++) {
            for (unsigned o3 = 0; o3 < 256; o3 += 85) {
                uint32_t v = o1 << 24 | o2 << 16 | o3 << 8 | ((o1 * 7 + o2) & 0xff);
                bool want = false;
                for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
                    uint32_t net = (uint32_t)special[i].a << 24 | (uint32_t)special[i].b << 16 |
                                   (uint32_t)special[i].c << 8;
                    if (v >> (32 - special[i].len) == net >> (32 - special[i].len))
                        want = true;
                }
                tw_geo_addr_t ad = {.family = 4,
                                    .bytes = {(uint8_t)o1, (uint8_t)o2, (uint8_t)o3,
                                              (uint8_t)(v & 0xff)}};
                if (tw_geo_addr_is_private(&ad) != want && wrong++ < 5)
                    fprintf(stderr, "%u.%u.%u.%u: private %d, expected %d\n", o1, o2, o3,
                            v & 0xff, !want, want);
            }
        }
    }
    TW_CHECK_INT(wrong, 0);
}

/* ---- open errors ---------------------------------------------------------- */

static char *write_temp(const char *name, const void *data, size_t len)
{
    char *path = tw_path_join(tmpdir, name);
    if (tw_write_file_atomic(path, data, len, 0600, NULL) != 0)
        tw_die("cannot write %s", path);
    return path;
}

static void expect_open_error(const char *city, const char *asn, const char *needle1,
                              const char *needle2)
{
    tw_geo_t *g = (tw_geo_t *)&g; /* must be reset to NULL on failure */
    tw_err_t err;
    err.msg[0] = '\0';
    TW_CHECK_INT(tw_geo_open(&g, city, asn, 16, &err), -1);
    TW_CHECK(g == NULL);
    bool ok = strstr(err.msg, needle1) && (!needle2 || strstr(err.msg, needle2));
    if (!ok)
        fprintf(stderr, "unexpected error message: %s\n", err.msg);
    TW_CHECK(ok);
}

static void test_open_errors(void)
{
    char *missing = tw_path_join(tmpdir, "nope/GeoLite2-City.mmdb");
    expect_open_error(missing, NULL, missing, "No such file");
    expect_open_error(city_path, missing, missing, "ASN");

    char garbage[4096];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (char)(i * 7 + 3);
    char *junk = write_temp("junk.mmdb", garbage, sizeof garbage);
    expect_open_error(junk, NULL, junk, "not a usable GeoIP City database");
    char *empty = write_temp("empty.mmdb", "", 0);
    expect_open_error(empty, NULL, empty, "empty");
    expect_open_error(tmpdir, NULL, tmpdir, "directory");

    /* A download cut short: the metadata at the end is missing. */
    char *db;
    size_t len;
    tw_err_t err;
    if (tw_read_file(city_path, &db, &len, &err) != 0)
        tw_die("%s", err.msg);
    char *cut = write_temp("cut.mmdb", db, len / 2);
    expect_open_error(cut, NULL, cut, "invalid metadata");
    /* The search tree overwritten: node pointers lead outside the tree. */
    char *smashed_data = tw_xmalloc(len);
    memcpy(smashed_data, db, len);
    memset(smashed_data, 0xff, 1024);
    char *smashed = write_temp("smashed.mmdb", smashed_data, len);
    expect_open_error(smashed, NULL, smashed, "corrupt GeoIP City database");

    /* The right format, the wrong database. */
    expect_open_error(asn_path, NULL, asn_path, "not a City database");
    expect_open_error(city_path, city_path, city_path, "not an ASN database");

    tw_geo_t *g = NULL;
    TW_CHECK_INT(tw_geo_open(&g, city_path, NULL, (size_t)TW_GEO_CACHE_MAX + 1, &err), -1);
    TW_CHECK(strstr(err.msg, "maximum") != NULL);
    TW_CHECK_INT(tw_geo_open(&g, "", NULL, 16, NULL), -1);
    TW_CHECK_INT(tw_geo_open(&g, city_path, NULL, TW_GEO_CACHE_MAX, NULL), 0);
    tw_geo_close(g);
    tw_geo_close(NULL);

    const char *made[] = {junk, empty, cut, smashed};
    for (size_t i = 0; i < sizeof made / sizeof made[0]; i++)
        unlink(made[i]);
    free(db);
    free(smashed_data);
    free(missing);
    free(junk);
    free(empty);
    free(cut);
    free(smashed);
}

/* A record damaged after startup's checks: the lookup says "error", is
 * counted, is not cached (the next lookup tries again), and other records
 * still work. */
static void test_damaged_record(void)
{
    MMDB_s db;
    int gai = 0, merr = 0;
    if (MMDB_open(city_path, MMDB_MODE_MMAP, &db) != MMDB_SUCCESS)
        tw_die("cannot open %s", city_path);
    MMDB_lookup_result_s lr = MMDB_lookup_string(&db, "156.160.0.1", &gai, &merr);
    if (gai != 0 || merr != MMDB_SUCCESS || !lr.found_entry)
        tw_die("156.160.0.1 is not in %s", city_path);
    size_t off = (size_t)(db.data_section + lr.entry.offset - db.file_content);
    MMDB_close(&db);

    char *data;
    size_t len;
    tw_err_t err;
    if (tw_read_file(city_path, &data, &len, &err) != 0)
        tw_die("%s", err.msg);
    /* Control byte 0 is an extended type; 0xff makes it type 262, which
     * does not exist. */
    data[off] = 0x00;
    data[off + 1] = (char)0xff;
    char *path = write_temp("damaged.mmdb", data, len);

    tw_geo_t *g = NULL;
    TW_CHECK_INT(tw_geo_open(&g, path, asn_path, 64, &err), 0);
    if (g) {
        tw_geo_result_t r;
        TW_CHECK_INT(look(g, "156.160.0.1", &r), TW_GEO_ERROR);
        TW_CHECK(!r.located);
        TW_CHECK_INT(look(g, "156.160.0.2", &r), TW_GEO_ERROR);
        TW_CHECK_INT(look(g, "81.2.69.142", &r), TW_GEO_FOUND);
        TW_CHECK_STR(r.city, "London");
        tw_geo_stats_t s;
        tw_geo_stats(g, &s);
        TW_CHECK_INT(s.by_status[TW_GEO_ERROR], 2);
        TW_CHECK_INT(s.tree_walks, 3);
        TW_CHECK_INT(s.cache_hits, 0);
        tw_geo_close(g);
    }
    unlink(path);
    free(path);
    free(data);
}

/* ---- optional throughput -------------------------------------------------- */

static double now_s(void)
{
    return (double)tw_mono_ns() / 1e9;
}

static void bench_run(const char *what, tw_geo_t *g, char (*ips)[INET6_ADDRSTRLEN],
                      const size_t *lens, size_t nips, size_t total)
{
    tw_geo_result_t r;
    uint64_t sink = 0;
    double t0 = now_s();
    for (size_t i = 0; i < total; i++) {
        size_t k = i % nips;
        sink += (uint64_t)tw_geo_lookup(g, ips[k], lens[k], &r) + r.asn;
    }
    double dt = now_s() - t0;
    tw_geo_stats_t s;
    tw_geo_stats(g, &s);
    printf("bench %-34s %10.0f lookups/s  (%.0f ns each; hits %" PRIu64 ", walks %" PRIu64
           ", sink %" PRIu64 ")\n",
           what, (double)total / dt, dt * 1e9 / (double)total, s.cache_hits, s.tree_walks,
           sink % 10);
}

static void bench(void)
{
    enum { N = 1 << 16, TOTAL = 4000000 };
    static tw_geo_addr_t edges[1024];
    static char ips[N][INET6_ADDRSTRLEN];
    static size_t lens[N];
    size_t ne = edge_addresses(edges, 1024);
    uint32_t rnd = 99;

    /* Realistic mix: addresses inside the test networks, 1000 distinct. */
    for (size_t i = 0; i < 1000; i++) {
        addr_text(&edges[(i * 7) % ne], ips[i], sizeof ips[i]);
        lens[i] = strlen(ips[i]);
    }
    tw_geo_t *hot = open_test_db(TW_GEO_CACHE_DEFAULT, true);
    tw_geo_t *cold = open_test_db(0, true);
    bench_run("hot cache (1000 addresses)", hot, ips, lens, 1000, TOTAL);
    bench_run("no cache (same addresses)", cold, ips, lens, 1000, TOTAL / 4);
    tw_geo_close(hot);
    tw_geo_close(cold);

    /* Spray: 65536 random public IPv4 addresses, each seen ~once per pass. */
    for (size_t i = 0; i < N; i++) {
        rnd = rnd * 1103515245u + 12345u;
        uint32_t a = rnd ^ (rnd >> 13) * 2654435761u;
        snprintf(ips[i], sizeof ips[i], "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
                 a & 255);
        lens[i] = strlen(ips[i]);
    }
    tw_geo_t *spray = open_test_db(TW_GEO_CACHE_DEFAULT, true);
    bench_run("spray (65536 random IPv4, cached)", spray, ips, lens, N, N);
    tw_geo_close(spray);
}

int main(void)
{
    src_dir = getenv("TW_SOURCE_DIR");
    if (!src_dir || !*src_dir)
        src_dir = ".";
    city_path = tw_xasprintf("%s/testdata/geoip/GeoLite2-City-Test.mmdb", src_dir);
    asn_path = tw_xasprintf("%s/testdata/geoip/GeoLite2-ASN-Test.mmdb", src_dir);
    if (!mkdtemp(tmpdir))
        tw_die("mkdtemp failed");

    test_every_csv_row();
    test_cache_is_transparent();
    test_cache_granularity();
    test_addr_text();
    test_addr_text_random();
    test_special_addresses();
    test_records();
    test_open_errors();
    test_damaged_record();
    if (getenv("TW_GEO_BENCH"))
        bench();

    rmdir(tmpdir);
    free(city_path);
    free(asn_path);
    return tw_test_done();
}
