/* test_detect_batch.c — tw_detect_events() (with or without events enriched
 * beforehand by tw_detect_enrich) and the tw_detect_push() queue judge a
 * stream exactly as tw_detect_event() one by one: same anomaly lines
 * in the same order, same counters, same baseline for every token. The
 * stream mixes every rule's triggers (the shipped rules/default.json and
 * the test GeoIP database), evictions (a small table), tokens far larger
 * than the queue's byte budget, and flushes at random points. */
#include "detect.h"
#include "tokens.h"
#include "tw_test.h"

#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#define S 1000000000LL
#define NEV 60000
#define NTOK 700
#define NUSER 90

typedef struct outbuf {
    char *p;
    size_t n, cap;
    int events;
} outbuf_t;

static void sink(void *ctx, const tw_anomaly_t *a)
{
    outbuf_t *o = ctx;
    if (o->n + a->len > o->cap) {
        o->cap = (o->n + a->len) * 2;
        o->p = realloc(o->p, o->cap);
        if (!o->p)
            abort();
    }
    memcpy(o->p + o->n, a->line, a->len);
    o->n += a->len;
    o->events++;
}

/* A small deterministic generator (xorshift64*). */
static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint64_t next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
}

/* Addresses in the test database (cities.csv) and a few outside it. */
static const char *const ips[] = {
    "192.0.2.10",    "192.0.2.70",    "192.0.2.130",   "192.0.2.200",  "198.51.100.10",
    "198.51.100.70", "198.51.100.170", "203.0.113.10", "203.0.113.100", "203.0.113.200",
    "10.1.2.3",      "8.8.8.8",       "2001:db8::1",   "::ffff:192.0.2.10",
};

typedef struct stream {
    tw_event_t ev[NEV];
    char *tok[NTOK];
    char user[NUSER][16];
} stream_t;

static void make_stream(stream_t *s)
{
    for (int i = 0; i < NTOK; i++) {
        /* Every 97th token is huge: 20 KB (three overflow the 64 KiB queue
         * budget together) or, for one, 100 KB (larger than the budget). */
        size_t len = i == 194 ? 100000 : (i % 97 == 0 ? 20000 : 24);
        s->tok[i] = malloc(len + 1);
        if (!s->tok[i])
            abort();
        for (size_t k = 0; k < len; k++)
            s->tok[i][k] = (char)('a' + (i + k * 7) % 26);
        char head[16];
        int hn = snprintf(head, sizeof head, "tok%06d", i);
        memcpy(s->tok[i], head, (size_t)hn);
        s->tok[i][len] = '\0';
    }
    for (int u = 0; u < NUSER; u++)
        snprintf(s->user[u], sizeof s->user[u], "user%03d", u);
    int64_t t = 1793577600LL * S;   /* 2026-11-02, a Monday */
    for (int i = 0; i < NEV; i++) {
        uint64_t r = next();
        /* Mostly seconds apart, sometimes hours (off-hours, learning days). */
        t += (r % 100 == 0) ? (int64_t)(r % 7) * 3600 * S : (int64_t)(r % 40) * S / 4;
        int tok = (int)((r >> 8) % NTOK);
        if (i >= 40000 && i < 42000)
            tok = (int)((r >> 8) % 5);   /* a burst on five tokens: rate, failures */
        tw_event_t *e = &s->ev[i];
        memset(e, 0, sizeof *e);
        e->token = (tw_slice_t){s->tok[tok], strlen(s->tok[tok])};
        /* A token mostly keeps to two addresses, sometimes jumps (travel). */
        size_t nip = sizeof ips / sizeof ips[0];
        size_t ip = (r >> 20) % 10 ? ((size_t)tok + ((r >> 24) & 1)) % nip : (r >> 28) % nip;
        e->ip = (tw_slice_t){ips[ip], strlen(ips[ip])};
        if (tok % 3)
            e->user = (tw_slice_t){s->user[tok % NUSER], strlen(s->user[tok % NUSER])};
        e->path = (tw_slice_t){"/v1/x", 5};
        e->rejected = (r >> 40) % 100 < ((i >= 40000 && i < 42000) ? 70u : 8u);
        e->time_ns = t;
    }
}

typedef struct run {
    tw_detect_t *d;
    outbuf_t out;
} run_t;

/* The runs share one GeoIP handle (its interned city and zone names are
 * compared by pointer inside baselines); they run one after the other. */
static void run_open(run_t *r, tw_geo_t *geo, const tw_rules_t *R, const tw_tokenid_t *key)
{
    memset(r, 0, sizeof *r);
    tw_detect_opts_t o = {.rules = R, .geo = geo, .key = key, .max_tokens = 400,
                          .sink = sink, .sink_ctx = &r->out};
    r->d = tw_detect_new(&o);
}

static void run_close(run_t *r)
{
    tw_detect_free(r->d);
    free(r->out.p);
}

static void stream_get(void *ctx, size_t i, const char **input, tw_event_t *ev,
                       const tw_detect_pre_t **pre)
{
    const tw_event_t *base = ctx;
    *input = "test";
    *ev = base[i];
    *pre = NULL;
}

/* Events enriched beforehand, as the reader thread does with two threads. */
typedef struct enriched {
    const tw_event_t *ev;
    const tw_detect_pre_t *pre;
} enriched_t;

static void enriched_get(void *ctx, size_t i, const char **input, tw_event_t *ev,
                         const tw_detect_pre_t **pre)
{
    const enriched_t *e = ctx;
    *input = "test";
    *ev = e->ev[i];
    *pre = &e->pre[i];
}

typedef struct cmp_ctx {
    tw_detect_t *other;
    long differ, seen;
} cmp_ctx_t;

static bool same_baseline(void *ctx, const tw_token_t *e)
{
    cmp_ctx_t *c = ctx;
    const tw_token_t *o = tw_tokens_find(tw_detect_tokens(c->other), e->id);
    c->seen++;
    if (!o || o->aux != e->aux || memcmp(&o->b, &e->b, sizeof e->b) != 0)
        c->differ++;
    return true;
}

static void compare(const char *what, run_t *ref, run_t *r)
{
    TW_CHECK_INT(r->out.events, ref->out.events);
    bool same_out = r->out.n == ref->out.n && memcmp(r->out.p, ref->out.p, r->out.n) == 0;
    TW_CHECK(same_out);
    if (!same_out)
        fprintf(stderr, "  %s: anomaly lines differ (%zu vs %zu bytes)\n", what, r->out.n,
                ref->out.n);
    tw_detect_stats_t a, b;
    tw_detect_stats(ref->d, &a);
    tw_detect_stats(r->d, &b);
    TW_CHECK_INT(b.events, a.events);
    TW_CHECK_INT(b.anomalies, a.anomalies);
    TW_CHECK_INT(b.tokens_tracked, a.tokens_tracked);
    TW_CHECK_INT(b.tokens_flagged, a.tokens_flagged);
    TW_CHECK_INT(b.tokens_evicted, a.tokens_evicted);
    TW_CHECK_INT(b.principals_tracked, a.principals_tracked);
    TW_CHECK_INT(b.ips_tracked, a.ips_tracked);
    cmp_ctx_t c = {.other = r->d};
    tw_tokens_each(tw_detect_tokens(ref->d), same_baseline, &c);
    TW_CHECK_INT(c.seen, (long)a.tokens_tracked);
    TW_CHECK_INT(c.differ, 0);
}

int main(void)
{
    const char *src = getenv("TW_SOURCE_DIR");
    if (!src)
        src = ".";
    char city[1024], rules[1024], tmpl[] = "/tmp/tw-detect-batch-XXXXXX";
    snprintf(city, sizeof city, "%s/testdata/geoip/GeoLite2-City-Test.mmdb", src);
    snprintf(rules, sizeof rules, "%s/rules/default.json", src);
    if (!mkdtemp(tmpl))
        return 1;
    tw_err_t err;
    tw_tokenid_t *key;
    TW_CHECK_INT(tw_tokenid_open(&key, tmpl, &err), 0);
    tw_rules_t *R;
    if (tw_rules_load(&R, rules, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    tw_geo_t *geo;
    if (tw_geo_open(&geo, city, NULL, 256, &err) != 0) {
        fprintf(stderr, "no test GeoIP db (%s): %s\n", city, err.msg);
        return 1;
    }
    static stream_t s;
    make_stream(&s);

    /* The reference: one event at a time. */
    run_t ref;
    run_open(&ref, geo, R, key);
    for (int i = 0; i < NEV; i++)
        tw_detect_event(ref.d, "test", &s.ev[i]);
    /* The stream must exercise the rules, or the comparison proves little. */
    TW_CHECK(ref.out.events >= 50);
    tw_detect_stats_t st;
    tw_detect_stats(ref.d, &st);
    TW_CHECK(st.tokens_evicted > 0);
    fprintf(stderr, "reference: %d anomalies, %" PRIu64 " evictions, %zu bytes\n",
            ref.out.events, st.tokens_evicted, ref.out.n);

    /* Batches of random sizes, including 0, 1 and more than the lookahead. */
    run_t b;
    run_open(&b, geo, R, key);
    for (size_t i = 0; i < NEV;) {
        size_t n = (size_t)(next() % 40);
        if (n > NEV - i)
            n = NEV - i;
        tw_detect_events(b.d, n, stream_get, &s.ev[i]);
        i += n;
    }
    compare("tw_detect_events", &ref, &b);

    /* Batches of events enriched (token id, address, GeoIP) a whole batch
     * ahead of their judging, as handed over by a reader thread. */
    run_t pr;
    run_open(&pr, geo, R, key);
    static tw_detect_pre_t pres[4096];
    for (size_t i = 0; i < NEV;) {
        size_t n = 1 + (size_t)(next() % 4096);
        if (n > NEV - i)
            n = NEV - i;
        /* With and without the GeoIP lookup, as the reader switches. */
        bool with_geo = next() & 1;
        for (size_t k = 0; k < n; k++)
            tw_detect_enrich(pr.d, &s.ev[i + k], with_geo, &pres[k]);
        enriched_t e = {.ev = &s.ev[i], .pre = pres};
        tw_detect_events(pr.d, n, enriched_get, &e);
        i += n;
    }
    compare("tw_detect_enrich + tw_detect_events", &ref, &pr);

    /* The queue, flushed at random points; the slices it was given are
     * overwritten right after each push, as a parser's are. */
    run_t q;
    run_open(&q, geo, R, key);
    static char scratch[100001 + 64];
    for (int i = 0; i < NEV; i++) {
        tw_event_t e = s.ev[i];
        memcpy(scratch, e.token.p, e.token.n);
        e.token.p = scratch;
        tw_detect_push(q.d, "test", &e, NULL, 0);
        memset(scratch, '#', e.token.n);
        if (next() % 500 == 0)
            tw_detect_flush(q.d);
    }
    /* Before the last flush some events wait: fewer judged than pushed. */
    tw_detect_stats_t before;
    tw_detect_stats(q.d, &before);
    TW_CHECK(before.events < (uint64_t)NEV);
    tw_detect_flush(q.d);
    compare("tw_detect_push", &ref, &q);

    /* The queue borrowing from a line buffer: each event's ip, user and
     * path are in its line of a block, which is overwritten (refilled)
     * after a flush; tokens are sometimes in the block and sometimes in a
     * scratch buffer outside the line, which dies right after the push. */
    run_t lq;
    run_open(&lq, geo, R, key);
    static char block[256 * 1024];
    size_t used = 0;
    for (int i = 0; i < NEV; i++) {
        tw_event_t e = s.ev[i];
        bool token_inside = i % 3 != 0;
        size_t need = (token_inside ? e.token.n : 0) + e.ip.n + e.user.n + e.path.n;
        if (need > sizeof block - used) {
            tw_detect_flush(lq.d);
            memset(block, '#', used);
            used = 0;
        }
        char *line = block + used;
        size_t len = 0;
        tw_slice_t *in_line[] = {token_inside ? &e.token : NULL, &e.ip, &e.user, &e.path};
        for (size_t k = 0; k < sizeof in_line / sizeof in_line[0]; k++) {
            if (!in_line[k] || in_line[k]->n == 0)
                continue;
            memcpy(line + len, in_line[k]->p, in_line[k]->n);
            in_line[k]->p = line + len;
            len += in_line[k]->n;
        }
        if (!token_inside) {
            memcpy(scratch, e.token.p, e.token.n);
            e.token.p = scratch;
        }
        tw_detect_push(lq.d, "test", &e, line, len);
        if (!token_inside)
            memset(scratch, '#', e.token.n);
        used += len;
    }
    tw_detect_flush(lq.d);
    compare("tw_detect_push borrowing a line buffer", &ref, &lq);

    run_close(&ref);
    run_close(&b);
    run_close(&pr);
    run_close(&q);
    run_close(&lq);
    tw_geo_close(geo);
    for (int i = 0; i < NTOK; i++)
        free(s.tok[i]);
    tw_rules_free(R);
    tw_tokenid_free(key);
    if (tw_test_rmtree(tmpl) != 0)
        return 1;
    return tw_test_done();
}
