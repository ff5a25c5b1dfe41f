/* test_persist.c — the baselines file (persist.h): exact round trip of every
 * field and of the LRU order, with and without GeoIP; capacity smaller than
 * the file; missing, truncated (at every offset), bit-flipped, foreign and
 * newer-version files; hostile files with a valid checksum; save failures
 * that must leave the previous file intact; and a restored detector that
 * judges from its first event (no new learning period). Uses the test GeoIP
 * databases in testdata/geoip. */
#include "persist.h"
#include "tokens.h"
#include "tw_test.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define S 1000000000LL
#define MON 1793577600LL   /* 2026-11-02T00:00:00Z, Monday */

static tw_geo_t *geo;
static const tw_tokenid_t *key;
static const tw_rules_t *rules;

static tw_detect_t *new_det(tw_geo_t *g, size_t max)
{
    tw_detect_opts_t o = {.rules = rules, .geo = g, .key = key, .max_tokens = max};
    return tw_detect_new(&o);
}

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
    tw_detect_event(d, "test", &e);
}

/* Ten weekday office days from ip (eight uses a day from utc_hour). */
static void learn_office(tw_detect_t *d, const char *ip, const char *user, const char *tok,
                         int utc_hour)
{
    for (int day = 0; day < 10; day++)
        for (int k = 0; k < 8; k++)
            ev(d, MON + day * 86400 + (utc_hour + k) * 3600, ip, user, tok, false);
}

static uint64_t tid(const char *tok) { return tw_tokenid_of(key, (tw_slice_t){tok, strlen(tok)}); }

static size_t ntok(tw_detect_t *d) { return tw_tokens_count(tw_detect_tokens(d)); }
static size_t nprin(tw_detect_t *d) { return tw_tokens_count(tw_detect_principals(d)); }

static uint64_t nflagged(const tw_detect_t *d)
{
    tw_detect_stats_t s;
    tw_detect_stats(d, &s);
    return s.tokens_flagged;
}

static uint64_t nanomalies(const tw_detect_t *d)
{
    tw_detect_stats_t s;
    tw_detect_stats(d, &s);
    return s.anomalies;
}

/* ---- entries in LRU order ------------------------------------------------ */

typedef struct list {
    tw_token_t *e;
    size_t n, cap;
} list_t;

static bool collect(void *ctx, const tw_token_t *e)
{
    list_t *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->e = realloc(l->e, l->cap * sizeof *l->e);
    }
    l->e[l->n++] = *e;
    return true;
}

static list_t entries(tw_tokens_t *t)
{
    list_t l = {0};
    tw_tokens_each(t, collect, &l);
    return l;
}

static bool fbits_eq(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static const char *str0(const char *s) { return s ? s : ""; }

/* Every field equal. Strings: the same pointer when both sides use the same
 * GeoIP handle (interned), equal text otherwise; "" on b's side when b was
 * loaded without GeoIP (geo_b false). Prints the first difference. */
static bool same_entry(const tw_token_t *a, const tw_token_t *b, bool same_geo, bool geo_b)
{
    const tw_baseline_t *x = &a->b, *y = &b->b;
#define FIELD(f)                                                                           \
    if (!(f)) {                                                                            \
        fprintf(stderr, "entry %016" PRIx64 ": %s differs\n", a->id, #f);                  \
        return false;                                                                      \
    }
    FIELD(a->id == b->id);
    FIELD(a->aux == b->aux);
    FIELD(x->first_ns == y->first_ns && x->last_ns == y->last_ns);
    FIELD(x->events == y->events);
    FIELD(x->flags == y->flags && x->top_severity == y->top_severity);
    FIELD(x->rate_windows == y->rate_windows && x->rate_bucket == y->rate_bucket &&
          x->rate_count == y->rate_count);
    FIELD(fbits_eq(x->rate_mean, y->rate_mean) && fbits_eq(x->rate_var, y->rate_var));
    FIELD(memcmp(&x->fail, &y->fail, sizeof x->fail) == 0);
    FIELD(x->hours_pend_hour == y->hours_pend_hour && x->hours_pend == y->hours_pend &&
          x->hours_pend_how == y->hours_pend_how);
    FIELD(x->hours_week == y->hours_week && x->hours_total == y->hours_total);
    FIELD(memcmp(x->hours, y->hours, sizeof x->hours) == 0);
    FIELD(x->loc.time_ns == y->loc.time_ns);
    if (same_geo) {
        FIELD(x->loc.city == y->loc.city && x->loc.time_zone == y->loc.time_zone);
    } else if (geo_b) {
        FIELD(strcmp(str0(x->loc.city), str0(y->loc.city)) == 0);
        FIELD(strcmp(str0(x->loc.time_zone), str0(y->loc.time_zone)) == 0);
    } else {
        FIELD(str0(y->loc.city)[0] == '\0' && str0(y->loc.time_zone)[0] == '\0');
    }
    FIELD(fbits_eq(x->loc.lat, y->loc.lat) && fbits_eq(x->loc.lon, y->loc.lon));
    FIELD(x->loc.asn == y->loc.asn && x->loc.radius_km == y->loc.radius_km);
    FIELD(memcmp(x->loc.country, y->loc.country, 2) == 0);
    FIELD(x->loc.addr.family == y->loc.addr.family &&
          memcmp(x->loc.addr.bytes, y->loc.addr.bytes, 16) == 0);
    FIELD(memcmp(x->countries, y->countries, sizeof x->countries) == 0);
    FIELD(memcmp(x->asns, y->asns, sizeof x->asns) == 0);
    FIELD(memcmp(x->cool_until_s, y->cool_until_s, sizeof x->cool_until_s) == 0);
#undef FIELD
    return true;
}

/* Both tables of b hold the first n (tokens) / m (principals) entries of a,
 * in a's order. */
static void check_same(tw_detect_t *a, tw_detect_t *b, size_t n, size_t m, bool same_geo,
                       bool geo_b)
{
    for (int k = 0; k < 2; k++) {
        list_t la = entries(k ? tw_detect_principals(a) : tw_detect_tokens(a));
        list_t lb = entries(k ? tw_detect_principals(b) : tw_detect_tokens(b));
        size_t want = k ? m : n;
        TW_CHECK_INT(lb.n, want);
        size_t bad = 0;
        for (size_t i = 0; i < want && i < la.n && i < lb.n; i++)
            if (!same_entry(&la.e[i], &lb.e[i], same_geo, geo_b))
                bad++;
        TW_CHECK_INT(bad, 0);
        free(la.e);
        free(lb.e);
    }
}

/* ---- files ----------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *n)
{
    char *buf;
    tw_err_t err;
    if (tw_read_file(path, &buf, n, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        *n = 0;
        return NULL;
    }
    return (unsigned char *)buf;
}

static void spit(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, p, n) != (ssize_t)n)
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

/* Recomputes the trailer checksum, as a forger would. */
static void rehash(unsigned char *buf, size_t n)
{
    if (buf && n >= 84)
        crypto_generichash(buf + n - 32, 32, buf, n - 32, NULL, 0);
}

static unsigned char *find(unsigned char *buf, size_t n, const void *needle, size_t k)
{
    return memmem(buf, n, needle, k);
}

/* Loads path into a fresh detector: returns rc; on -1 checks the error names
 * the file and contains want (when not NULL), and that d is left empty. */
static int load_expect(const char *path, int want_rc, const char *want, tw_geo_t *g)
{
    tw_detect_t *d = new_det(g, 1000);
    tw_err_t err;
    err.msg[0] = '\0';
    int rc = tw_persist_load(d, path, NULL, &err);
    TW_CHECK_INT(rc, want_rc);
    if (rc == -1) {
        TW_CHECK(strncmp(err.msg, path, strlen(path)) == 0);
        TW_CHECK(ntok(d) == 0 && nprin(d) == 0 && nflagged(d) == 0);
        if (want && !strstr(err.msg, want)) {
            fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err.msg, want);
            TW_CHECK(0);
        }
    } else if (rc == 0 && want_rc == -1) {
        fprintf(stderr, "%s loaded, expected \"%s\"\n", path, want ? want : "an error");
    }
    tw_detect_free(d);
    return rc;
}

static tw_token_t *put(tw_detect_t *d, uint64_t id)
{
    bool created;
    return tw_tokens_get(tw_detect_tokens(d), id, false, &created);
}

/* A token with every group of the format filled, hour profile in the
 * bit-set form (more than 20 nonzero hours), an IPv6 location. */
static void fill_everything(tw_detect_t *d, uint64_t id)
{
    tw_token_t *e = put(d, id);
    tw_baseline_t *b = &e->b;
    e->aux = 0x1234567890abcdefULL | 1;
    b->first_ns = -5 * S - 123;   /* before the epoch: zigzag */
    b->last_ns = 1900000000LL * S + 999;
    b->events = UINT32_MAX;
    b->flags = TW_BL_MATURE | TW_BL_FLAGGED | TW_BL_FROZEN | TW_BL_HAS_LOC | TW_BL_RATE_EXCL;
    b->top_severity = 4;
    b->rate_windows = UINT16_MAX;
    b->rate_bucket = UINT32_MAX;
    b->rate_count = 77;
    b->rate_mean = 12.625f;
    b->rate_var = 3.0e-7f;
    b->fail = (tw_fail_window_t){.bucket = 31666666, .rej_cur = 5, .rej_prev = 65535,
                                 .chk_cur = 9, .chk_prev = 65535};
    b->hours_pend_hour = -7;
    b->hours_pend = 65535;
    b->hours_pend_how = 167;
    b->hours_week = 2900;
    for (unsigned i = 0; i < TW_BASELINE_HOURS; i += 3) {
        b->hours[i] = (uint8_t)(1 + i);
        b->hours_total += b->hours[i];
    }
    b->loc.time_ns = b->last_ns - 3600 * S;
    b->loc.city = tw_geo_intern(geo, "S\xc3\xa3o Paulo", 10);
    b->loc.time_zone = tw_geo_intern(geo, "America/Sao_Paulo", 17);
    b->loc.lat = -23.5475f;
    b->loc.lon = -46.6361f;
    b->loc.asn = 64502;
    b->loc.radius_km = 20;
    b->loc.country[0] = 'B';
    b->loc.country[1] = 'R';
    tw_geo_addr_parse("2001:db8:800::17", 16, &b->loc.addr);
    static const char cc[8][2] = {{'B', 'R'}, {'D', 'E'}, {'F', 'R'}, {'U', 'S'},
                                  {'G', 'B'}, {'J', 'P'}, {'A', 'U'}, {'I', 'N'}};
    memcpy(b->countries, cc, sizeof cc);
    b->asns[0] = 64502;
    b->asns[1] = 64496;
    b->asns[2] = UINT32_MAX;
    b->asns[3] = 1;
    for (unsigned i = 0; i < TW_BASELINE_MAX_RULES; i++)
        b->cool_until_s[i] = i == 3 ? 0 : 1793577600u + i;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const char *src = getenv("TW_SOURCE_DIR");
    if (!src)
        src = ".";
    char city[1024], asn[1024], tmpl[] = "/tmp/tw-persist-XXXXXX";
    snprintf(city, sizeof city, "%s/testdata/geoip/GeoLite2-City-Test.mmdb", src);
    snprintf(asn, sizeof asn, "%s/testdata/geoip/GeoLite2-ASN-Test.mmdb", src);
    if (!mkdtemp(tmpl))
        return 1;
    const char *dir = tmpl;
    char path[1100], path2[1100], cut[1100], tmp[1200];
    snprintf(path, sizeof path, "%s/%s", dir, TW_PERSIST_FILE);
    snprintf(path2, sizeof path2, "%s/small.bin", dir);
    snprintf(cut, sizeof cut, "%s/cut.bin", dir);

    tw_err_t err;
    tw_tokenid_t *k;
    if (tw_tokenid_open(&k, dir, &err) != 0 || tw_geo_open(&geo, city, asn, 1024, &err) != 0) {
        fprintf(stderr, "set-up: %s\n", err.msg);
        return 1;
    }
    key = k;
    tw_geo_t *geo2;   /* another handle: strings compare by text, not pointer */
    if (tw_geo_open(&geo2, city, NULL, 1024, &err) != 0)
        return 1;
    static const char rules_text[] =
        "{\"learning\":{\"min_events\":10,\"min_days\":7},\"cooldown_s\":3600,"
        "\"rules\":["
        "{\"id\":\"rate\",\"kind\":\"rate\",\"severity\":\"high\"},"
        "{\"id\":\"fail\",\"kind\":\"failures\",\"severity\":\"medium\",\"min_rejected\":3},"
        "{\"id\":\"spray\",\"kind\":\"failures\",\"scope\":\"ip\",\"severity\":\"high\"},"
        "{\"id\":\"travel\",\"kind\":\"geo_velocity\",\"severity\":\"critical\"},"
        "{\"id\":\"newc\",\"kind\":\"geo_new\",\"severity\":\"low\"},"
        "{\"id\":\"off\",\"kind\":\"off_hours\",\"severity\":\"medium\"}]}";
    static const char newc_text[] =
        "{\"learning\":{\"min_events\":10,\"min_days\":7},"
        "\"rules\":[{\"id\":\"newc\",\"kind\":\"geo_new\",\"severity\":\"low\"}]}";
    tw_rules_t *R, *Rnew;
    if (tw_rules_parse(&R, "rules.json", rules_text, strlen(rules_text), &err) != 0 ||
        tw_rules_parse(&Rnew, "newc.json", newc_text, strlen(newc_text), &err) != 0) {
        fprintf(stderr, "rules: %s\n", err.msg);
        return 1;
    }
    rules = R;

    /* ---- tw_geo_intern: the lookup's own pointers ------------------------ */
    {
        tw_geo_result_t g;
        TW_CHECK_INT(tw_geo_lookup(geo, "192.0.2.10", 10, &g), TW_GEO_FOUND);
        TW_CHECK(tw_geo_intern(geo, "Berlin", 6) == g.city);
        TW_CHECK(tw_geo_intern(geo, "Europe/Berlin!", 13) == g.time_zone);
        TW_CHECK_STR(tw_geo_intern(geo, "", 0), "");
        TW_CHECK(tw_geo_intern(geo, "Nowhere", 7) == tw_geo_intern(geo, "Nowhere\0x", 9));
    }

    /* ---- a detector with learned, flagged and odd baselines -------------- */
    tw_detect_t *d1 = new_det(geo, 1000);
    learn_office(d1, "192.0.2.10", "alice", "tok-alice-000000000001", 8);
    learn_office(d1, "198.51.100.5", "bob", "tok-bob-00000000000002", 13);
    learn_office(d1, "2001:db8:100::7", NULL, "tok-v6-000000000000003", 9);
    learn_office(d1, "10.1.2.3", "carol", "tok-private-0000000004", 9);  /* no location */
    /* Impossible travel: flagged, a cooldown, top severity critical. */
    ev(d1, MON + 9 * 86400 + 16 * 3600, "203.0.113.5", "alice", "tok-alice-000000000001", false);
    /* Rejected checks only: a cold token with a failure window, no principal. */
    for (int i = 0; i < 5; i++)
        ev(d1, MON + 10 * 86400 + i, "192.0.2.77", NULL, "tok-guess-000000000005", true);
    /* A rotated token of a known principal. */
    ev(d1, MON + 10 * 86400 + 10 * 3600, "192.0.2.11", "bob", "tok-bob-rotated-000006", false);
    fill_everything(d1, 0xfeedfacecafebeefULL);
    /* A learned profile with 20 and one with 21 nonzero hours: both forms. */
    for (int n = 20; n <= 21; n++) {
        tw_baseline_t *b = &put(d1, 0x1000u + (unsigned)n)->b;
        b->first_ns = b->last_ns = MON * S;
        b->events = 1;
        for (int i = 0; i < n; i++) {
            b->hours[i * 8] = 255;
            b->hours_total += 255;
        }
    }
    /* The detector counted the tokens its rules flagged; fill_everything()
     * flagged one more behind its back. */
    uint64_t flagged1 = 0;
    {
        list_t l = entries(tw_detect_tokens(d1));
        for (size_t i = 0; i < l.n; i++)
            flagged1 += (l.e[i].b.flags & TW_BL_FLAGGED) != 0;
        free(l.e);
    }
    TW_CHECK_INT(nflagged(d1) + 1, flagged1);
    TW_CHECK(flagged1 >= 3);
    TW_CHECK(ntok(d1) == 9 && nprin(d1) == 3);

    tw_persist_stats_t st;
    memset(&st, 0, sizeof st);
    TW_CHECK_INT(tw_persist_save(d1, path, &st, &err), 0);
    TW_CHECK_INT(st.tokens, 9);
    TW_CHECK_INT(st.principals, 3);
    struct stat sb;
    TW_CHECK(stat(path, &sb) == 0 && (uint64_t)sb.st_size == st.bytes);
    TW_CHECK_INT(sb.st_mode & 0777, 0600);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    TW_CHECK(access(tmp, F_OK) != 0);

    /* Round trip, same GeoIP handle: every field, the order, the flags. */
    tw_detect_t *d2 = new_det(geo, 1000);
    memset(&st, 0, sizeof st);
    TW_CHECK_INT(tw_persist_load(d2, path, &st, &err), 0);
    TW_CHECK_INT(st.tokens, 9);
    TW_CHECK_INT(st.principals, 3);
    TW_CHECK(st.bytes == (uint64_t)sb.st_size && st.seconds >= 0);
    check_same(d1, d2, 9, 3, true, true);
    TW_CHECK_INT(nflagged(d2), flagged1);
    if (ntok(d2) == 9) {   /* (the checks above said why not) */
        TW_CHECK(tw_tokens_newest(tw_detect_tokens(d2))->id ==
                 tw_tokens_newest(tw_detect_tokens(d1))->id);
        TW_CHECK(tw_tokens_oldest(tw_detect_tokens(d2))->id ==
                 tw_tokens_oldest(tw_detect_tokens(d1))->id);
        const tw_token_t *ea = tw_tokens_find(tw_detect_tokens(d2), tid("tok-alice-000000000001"));
        const tw_token_t *ev6 = tw_tokens_find(tw_detect_tokens(d2), tid("tok-v6-000000000000003"));
        TW_CHECK(ea && ea->aux == (tid("alice") | 1));   /* the principal link */
        TW_CHECK(ev6 && ev6->aux == 0);
    }
    /* Loading into a detector that already holds baselines is refused. */
    TW_CHECK_INT(tw_persist_load(d2, path, NULL, &err), -1);
    TW_CHECK(strstr(err.msg, "already holds baselines") != NULL);
    TW_CHECK_INT(ntok(d2), 9);
    /* A save of what was loaded is byte-identical but for the save time. */
    TW_CHECK_INT(tw_persist_save(d2, path2, NULL, &err), 0);
    {
        size_t n1, n2;
        unsigned char *a = slurp(path, &n1), *b = slurp(path2, &n2);
        TW_CHECK(a && b && n1 == n2 && memcmp(a, b, 32) == 0 &&
                 memcmp(a + 40, b + 40, n1 - 40 - 32) == 0);
        free(a);
        free(b);
    }

    /* Another GeoIP handle: strings re-interned there, equal as text. */
    tw_detect_t *d3 = new_det(geo2, 1000);
    TW_CHECK_INT(tw_persist_load(d3, path, NULL, &err), 0);
    check_same(d1, d3, 9, 3, false, true);
    const tw_token_t *e3 = tw_tokens_find(tw_detect_tokens(d3), tid("tok-alice-000000000001"));
    TW_CHECK(e3 && e3->b.loc.time_zone == tw_geo_intern(geo2, "Asia/Tokyo", 10));
    TW_CHECK(tw_tokens_find(tw_detect_principals(d3), tid("alice") | 1) != NULL);
    tw_detect_free(d3);

    /* No GeoIP: the numbers are kept, the names become "". */
    d3 = new_det(NULL, 1000);
    TW_CHECK_INT(tw_persist_load(d3, path, NULL, &err), 0);
    check_same(d1, d3, 9, 3, false, false);
    TW_CHECK_INT(tw_persist_save(d3, path2, NULL, &err), 0);
    tw_detect_free(d3);
    TW_CHECK_INT(load_expect(path2, 0, NULL, geo), 0);

    /* ---- a restored detector needs no new learning period ---------------- */
    {
        /* Alice learned Germany (and went to Japan): a first use from the US
         * a month later is new for her... */
        tw_detect_set_rules(d2, Rnew);
        uint64_t before = nanomalies(d2);
        ev(d2, MON + 40 * 86400 + 10 * 3600, "198.51.100.33", "alice", "tok-alice-000000000001",
           false);
        TW_CHECK_INT(nanomalies(d2) - before, 1);
        /* ...and so is one of her brand-new tokens (her principal's baseline). */
        ev(d2, MON + 41 * 86400 + 10 * 3600, "203.0.113.130", "alice", "tok-alice-new-00000007",
           false);
        TW_CHECK_INT(nanomalies(d2) - before, 2);
        /* Without the load the same events find a token still learning. */
        rules = Rnew;
        tw_detect_t *fresh = new_det(geo, 1000);
        rules = R;
        ev(fresh, MON + 40 * 86400 + 10 * 3600, "198.51.100.33", "alice",
           "tok-alice-000000000001", false);
        TW_CHECK_INT(nanomalies(fresh), 0);
        tw_detect_free(fresh);
    }
    tw_detect_free(d2);

    /* ---- capacity smaller than the file: the most recently used kept ----- */
    {
        tw_detect_t *dc = new_det(geo, 3);
        memset(&st, 0, sizeof st);
        TW_CHECK_INT(tw_persist_load(dc, path, &st, &err), 0);
        TW_CHECK_INT(st.tokens, 3);
        TW_CHECK_INT(st.principals, 3);
        check_same(d1, dc, 3, 3, true, true);
        tw_detect_free(dc);
        dc = new_det(geo, 1);
        TW_CHECK_INT(tw_persist_load(dc, path, &st, &err), 0);
        check_same(d1, dc, 1, 1, true, true);
        tw_detect_free(dc);
    }

    /* ---- missing file, empty detector ------------------------------------ */
    {
        char missing[1200];
        snprintf(missing, sizeof missing, "%s/none.bin", dir);
        TW_CHECK_INT(load_expect(missing, 1, NULL, geo), 1);
        tw_detect_t *de = new_det(geo, 10);
        TW_CHECK_INT(tw_persist_save(de, path2, &st, &err), 0);
        TW_CHECK(st.tokens == 0 && st.principals == 0 && st.bytes == 84);
        TW_CHECK_INT(tw_persist_load(de, path2, &st, &err), 0);
        TW_CHECK(ntok(de) == 0 && st.tokens == 0);
        tw_detect_free(de);
        /* A directory is not a baselines file. */
        TW_CHECK_INT(load_expect(dir, -1, "not a regular file", geo), -1);
    }

    /* ---- truncated at every offset, every byte flipped -------------------- */
    {
        tw_detect_t *ds = new_det(geo, 100);
        learn_office(ds, "192.0.2.10", "dave", "tok-dave-0000000000008", 8);
        ev(ds, MON + 10 * 86400, "203.0.113.5", "dave", "tok-dave-0000000000008", false);
        ev(ds, MON + 10 * 86400, "192.0.2.99", NULL, "tok-once-0000000000009", true);
        TW_CHECK_INT(tw_persist_save(ds, path2, NULL, &err), 0);
        tw_detect_free(ds);
        size_t n;
        unsigned char *buf = slurp(path2, &n);
        TW_CHECK(buf && n > 100);
        if (!buf || n <= 100) {
            free(buf);
            goto hostile;   /* nothing to cut */
        }
        TW_CHECK_INT(load_expect(path2, 0, NULL, geo), 0);
        int bad_trunc = 0, bad_flip = 0;
        for (size_t i = 0; buf && i < n; i++) {
            spit(cut, buf, i);
            if (load_expect(cut, -1, i < 84 ? "truncated" : NULL, geo) != -1)
                bad_trunc++;
        }
        for (size_t i = 0; buf && i < n; i++) {
            buf[i] ^= (unsigned char)(1u << (i % 8));
            spit(cut, buf, n);
            const char *want = i >= 40 && i < n - 44 ? "checksum mismatch" : NULL;
            if (load_expect(cut, -1, want, geo) != -1)
                bad_flip++;
            buf[i] ^= (unsigned char)(1u << (i % 8));
        }
        TW_CHECK_INT(bad_trunc, 0);
        TW_CHECK_INT(bad_flip, 0);
        /* Trailing garbage. */
        unsigned char *longer = malloc(n + 1);
        memcpy(longer, buf, n);
        longer[n] = '\n';
        spit(cut, longer, n + 1);
        TW_CHECK_INT(load_expect(cut, -1, "no end marker", geo), -1);
        free(longer);

        /* Newer version, wrong magic, unknown header flags. */
        char want[1400];
        buf[4] = 2;
        spit(cut, buf, n);
        snprintf(want, sizeof want,
                 "%s: written by a newer tokenwatch (format version 2, this build reads up to 1)",
                 cut);
        tw_detect_t *dv = new_det(geo, 10);
        TW_CHECK_INT(tw_persist_load(dv, cut, NULL, &err), -1);
        TW_CHECK_STR(err.msg, want);
        tw_detect_free(dv);
        buf[4] = 1;
        memcpy(buf, "{\"ve", 4);
        spit(cut, buf, n);
        TW_CHECK_INT(load_expect(cut, -1, "not a tokenwatch baselines file", geo), -1);
        memcpy(buf, "TWBL", 4);
        buf[8] = 1;
        rehash(buf, n);
        spit(cut, buf, n);
        TW_CHECK_INT(load_expect(cut, -1, "unknown header flags", geo), -1);
        buf[8] = 0;
        /* Counts that do not match the records, with a valid checksum. */
        buf[16] = 200;
        rehash(buf, n);
        spit(cut, buf, n);
        TW_CHECK_INT(load_expect(cut, -1, "cannot fit", geo), -1);
        buf[16] = 1;   /* one token record fewer: the rest is left over */
        rehash(buf, n);
        spit(cut, buf, n);
        TW_CHECK_INT(load_expect(cut, -1, NULL, geo), -1);
        buf[16] = 3;   /* one more: the principals are read as tokens, then run out */
        rehash(buf, n);
        spit(cut, buf, n);
        TW_CHECK_INT(load_expect(cut, -1, NULL, geo), -1);
        buf[16] = 2;
        rehash(buf, n);
        spit(cut, buf, n);
        TW_CHECK_INT(load_expect(cut, 0, NULL, geo), 0);
        free(buf);
    }
hostile:

    /* ---- hostile files with a valid checksum ------------------------------ */
    {
        /* One token with only the pending-hours group: its last byte (just
         * before the trailer) is hours_pend_how; flags and top_severity are
         * at bytes 52 and 53 (id 40-47, groups 48, last 49, span 50, events 51). */
        tw_detect_t *dh = new_det(NULL, 10);
        tw_baseline_t *b = &put(dh, 0xabcdef)->b;
        b->events = 1;
        b->hours_pend = 1;
        b->hours_pend_how = 5;
        TW_CHECK_INT(tw_persist_save(dh, path2, NULL, &err), 0);
        size_t n;
        unsigned char *buf = slurp(path2, &n);
        TW_CHECK(buf && n == 40 + 17 + 44 && buf[n - 45] == 5 && buf[48] == 4);
        if (buf && n == 40 + 17 + 44) {
            buf[n - 45] = 200;
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, -1, "hours_pend_how 200", geo), -1);
            buf[n - 45] = 5;
            buf[52] = 0x80;
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, -1, "unknown bits", geo), -1);
            buf[52] = TW_BL_HAS_LOC;   /* the flag without a location */
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, -1, "TW_BL_HAS_LOC", geo), -1);
            buf[52] = 0;
            buf[53] = 9;
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, -1, "top_severity 9", geo), -1);
            buf[53] = 0;
            buf[48] = 0x80 | 4;   /* a varint that is not minimal */
            buf[49] = 0;
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, -1, NULL, geo), -1);
            buf[48] = 4;
            buf[49] = 0;
            buf[48] = 0x0c;   /* claims hours too: runs out of bytes */
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, -1, NULL, geo), -1);
            buf[48] = 4;
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, 0, NULL, geo), 0);
        }
        free(buf);
        tw_detect_free(dh);

        /* A location: its zone becomes a path under the zoneinfo root, so a
         * traversal is refused even by a detector without GeoIP. */
        dh = new_det(geo, 10);
        fill_everything(dh, 0xfeedfacecafebeefULL);
        b = &put(dh, 0x77)->b;
        b->events = 1;
        b->rate_mean = 3.5f;
        b->rate_windows = 1;
        b->countries[0][0] = 'D';
        b->countries[0][1] = 'E';
        b->countries[1][0] = 'F';
        b->countries[1][1] = 'R';
        TW_CHECK_INT(tw_persist_save(dh, path2, NULL, &err), 0);
        buf = slurp(path2, &n);
        unsigned char *p = buf ? find(buf, n, "America/Sao_Paulo", 17) : NULL;
        TW_CHECK(p != NULL);
        if (p) {
            memcpy(p, "../../../../etc", 15);
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, -1, "time zone", geo), -1);
            TW_CHECK_INT(load_expect(cut, -1, "time zone", NULL), -1);
            memcpy(p, "America/Sao_Paulo", 17);
        }
        float mean = 3.5f, nan = NAN;
        p = buf ? find(buf, n, &mean, 4) : NULL;
        TW_CHECK(p != NULL);
        if (p) {
            memcpy(p, &nan, 4);
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, -1, "rate mean", geo), -1);
            memcpy(p, &mean, 4);
        }
        p = buf ? find(buf, n, "\x02" "DEFR", 5) : NULL;
        TW_CHECK(p != NULL);
        if (p) {
            memcpy(p + 1, "DEDE", 4);
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, -1, "DE listed twice", geo), -1);
            memcpy(p + 1, "DEf", 3);
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, -1, "two letters", geo), -1);
            memcpy(p + 1, "DEFR", 4);
        }
        /* Two records with one id: the first is in the table when the
         * second is refused, and the table must end up empty. */
        uint64_t id = 0x77;
        unsigned char le[8];
        memcpy(le, &id, 8);
        p = buf ? find(buf, n, le, 8) : NULL;
        TW_CHECK(p != NULL);
        if (p) {
            uint64_t other = 0xfeedfacecafebeefULL;
            memcpy(p, &other, 8);
            rehash(buf, n);
            spit(cut, buf, n);
            TW_CHECK_INT(load_expect(cut, -1, "appears twice", geo), -1);
            memcpy(p, le, 8);
        }
        rehash(buf, n);
        spit(cut, buf, n);
        TW_CHECK_INT(load_expect(cut, 0, NULL, geo), 0);
        free(buf);

        /* The writer refuses what the loader would refuse, before touching
         * the previous file. */
        size_t n0;
        unsigned char *before = slurp(path2, &n0);
        b->hours_pend_how = 168;
        TW_CHECK_INT(tw_persist_save(dh, path2, NULL, &err), -1);
        TW_CHECK(strstr(err.msg, "hours_pend_how 168") && strstr(err.msg, "tw_0000000000000077"));
        b->hours_pend_how = 0;
        b->hours[3] = 1;   /* hours_total not updated */
        TW_CHECK_INT(tw_persist_save(dh, path2, NULL, &err), -1);
        TW_CHECK(strstr(err.msg, "hours_total") != NULL);
        b->hours[3] = 0;
        b->loc.time_zone = "../etc";
        TW_CHECK_INT(tw_persist_save(dh, path2, NULL, &err), 0);   /* no TW_BL_HAS_LOC */
        b->flags |= TW_BL_HAS_LOC;
        TW_CHECK_INT(tw_persist_save(dh, path2, NULL, &err), -1);
        TW_CHECK(strstr(err.msg, "time zone") != NULL);
        b->flags &= (uint8_t)~TW_BL_HAS_LOC;
        b->loc.time_zone = NULL;
        size_t n1;
        unsigned char *after = slurp(path2, &n1);
        TW_CHECK(before && after && n0 == n1 && memcmp(before + 40, after + 40, n0 - 40 - 32) == 0);
        free(before);
        free(after);
        tw_detect_free(dh);
    }

    /* ---- save failures keep the previous file ----------------------------- */
    {
        size_t n0;
        unsigned char *prev = slurp(path, &n0);
        char bad[1200];
        snprintf(bad, sizeof bad, "%s/no/such/dir/%s", dir, TW_PERSIST_FILE);
        TW_CHECK_INT(tw_persist_save(d1, bad, NULL, &err), -1);
        TW_CHECK(strstr(err.msg, "cannot create") != NULL);

        /* A file size limit: the write fails half-way (EFBIG, as ENOSPC would). */
        struct rlimit old, lim;
        getrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, SIG_IGN);
        lim = old;
        lim.rlim_cur = n0 / 2;
        TW_CHECK_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
        int rc = tw_persist_save(d1, path, NULL, &err);
        setrlimit(RLIMIT_FSIZE, &old);
        TW_CHECK_INT(rc, -1);
        TW_CHECK(strstr(err.msg, "write failed") != NULL);
        size_t n1;
        unsigned char *now = slurp(path, &n1);
        TW_CHECK(prev && now && n0 == n1 && memcmp(prev, now, n0) == 0);
        free(now);
        TW_CHECK(access(tmp, F_OK) != 0);   /* the temp file is gone */

        /* A read-only directory. Root ignores the mode, so as root the save
         * runs in a child that has become nobody. */
        TW_CHECK_INT(chmod(dir, 0555), 0);
        if (geteuid() != 0) {
            TW_CHECK_INT(tw_persist_save(d1, path, NULL, &err), -1);
            TW_CHECK(strstr(err.msg, "cannot create") != NULL);
        } else {
            fflush(NULL);
            pid_t pid = fork();
            if (pid == 0) {
                if (setgid(65534) != 0 || setuid(65534) != 0)
                    _exit(2);
                int crc = tw_persist_save(d1, path, NULL, &err);
                _exit(crc == -1 && strstr(err.msg, "cannot create") ? 0 : 1);
            }
            int status = -1;
            TW_CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
            TW_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        chmod(dir, 0700);
        now = slurp(path, &n1);
        TW_CHECK(prev && now && n0 == n1 && memcmp(prev, now, n0) == 0);
        free(now);

        /* A stale temp file (a crash mid-save, another mode) is replaced. */
        spit(tmp, "junk", 4);
        chmod(tmp, 0644);
        TW_CHECK_INT(tw_persist_save(d1, path, NULL, &err), 0);
        TW_CHECK(access(tmp, F_OK) != 0);
        TW_CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
        TW_CHECK_INT(load_expect(path, 0, NULL, geo), 0);
        free(prev);
    }

    tw_detect_free(d1);
    tw_rules_free(R);
    tw_rules_free(Rnew);
    tw_geo_close(geo);
    tw_geo_close(geo2);
    tw_tokenid_free(k);
    tw_test_rmtree(dir);
    return tw_test_done();
}
