/*
 * handoff.c — see handoff.h. A ring of nb batches: the producer fills
 * b[put % nb] and publishes it; the consumer takes b[take % nb] and releases
 * batches in the same order. "outstanding" counts published batches not yet
 * released; the slot the producer fills next is free exactly when
 * outstanding < nb, because releases come back in ring order.
 *
 * The mutex orders every byte the producer wrote into a batch before the
 * consumer's take, and every read of the consumer before the producer
 * reuses it, so the batch contents themselves need no atomics.
 */
#include "handoff.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum { F_TOKEN = 0, F_IP, F_USER, F_PATH, F__COUNT };

/* What a record carries of the reader's enrichment (tw_detect_pre_t). */
enum { PRE_NONE = 0, PRE_ID_ADDR, PRE_FULL };

/* The placement margins (decide_placement_locked). */
#define GEO_WINDOW 16
#define ENRICH_PCT 125
#define GEO_ON_PCT 125
#define GEO_OFF_PCT 125
#define GEO_ON_PCT_MAX 400

/* One event: its byte fields, one after the other from off in the
 * batch's data. One cache line, because every record moves from the
 * reader's core to the analysis thread's: the enrichment is the token id
 * and the parsed address here, and a whole tw_detect_pre_t (GeoIP result
 * included, 160 bytes) in the batch's pres[] only when the reader did the
 * lookup too. Records of 168 bytes (the whole tw_detect_pre_t inline) made
 * two threads 10-15% slower (alternating runs, 1,000,000 lines, text and
 * JSON). */
typedef struct rec {
    const char *input;
    int64_t time_ns;
    uint64_t id;            /* PRE_ID_ADDR */
    uint32_t off;           /* token, ip, user, path from here */
    uint32_t len[F__COUNT];
    bool rejected;
    uint8_t pre;            /* PRE_* */
    tw_geo_addr_t addr;     /* PRE_ID_ADDR */
} rec_t;
_Static_assert(sizeof(rec_t) == 64, "a record is one cache line");

struct tw_handoff_batch {
    char *data; /* arena, or big while the batch carries a big event */
    size_t cap, used;
    size_t n;
    rec_t *recs;
    tw_detect_pre_t *pres; /* per record: PRE_FULL's */
    /* PRE_ID_ADDR's rebuilt by batch_get, a small ring that stays in the
     * consumer's cache (handoff.h: valid for TW_HANDOFF_PRE_RING gets) */
    tw_detect_pre_t ring[TW_HANDOFF_PRE_RING];
    char *arena;
    char *big; /* one-off buffer, freed when the producer reuses the batch */
};

struct tw_handoff {
    pthread_mutex_t mu;
    pthread_cond_t room; /* a batch was released (producer waits when all are out) */
    pthread_cond_t idle; /* nothing outstanding (drain) */
    int efd;             /* eventfd: wakes a consumer sleeping in tw_handoff_wait */
    tw_handoff_batch_t *b;
    size_t nb, arena_cap, max_events;

    /* Under mu. */
    size_t outstanding; /* published, not yet released */
    size_t ready;       /* published, not yet taken */
    size_t take_i;
    bool closed;
    bool sleeping; /* the consumer is (about to be) in poll() */
    tw_handoff_stats_t st;
    int64_t consumer_cpu;    /* CPU time the consumer spent between take and release */

    /* Producer only. */
    size_t put_i;
    tw_handoff_batch_t *cur; /* being filled, NULL when none is acquired */
    bool reader_enrich;      /* tw_handoff_reader_enrich() */
    bool reader_geo;         /* tw_handoff_reader_geo() */
    bool geo_turn_on;        /* decided, applied once nothing is outstanding */
    int64_t geo_on_pct;      /* the margin for moving the lookups to the reader */
    size_t win_batches;      /* batches published in the current window */
    int64_t win_prod_cpu;    /* the producer's CPU time when the window began */
    int64_t win_cons_cpu;    /* consumer_cpu then */

    /* Consumer only. */
    size_t rel_i;
    size_t held;             /* taken, not yet released */
    int64_t busy_mark;       /* its CPU time at the last take (of none held) or release */
};

tw_handoff_t *tw_handoff_new(size_t nbatches, size_t arena_bytes, size_t max_events)
{
    tw_handoff_t *h = tw_xcalloc(1, sizeof *h);
    h->nb = nbatches ? nbatches : TW_HANDOFF_DEFAULT_BATCHES;
    h->arena_cap = arena_bytes ? arena_bytes : TW_HANDOFF_DEFAULT_ARENA;
    h->max_events = max_events ? max_events : TW_HANDOFF_DEFAULT_EVENTS;
    h->reader_enrich = true;
    h->geo_on_pct = GEO_ON_PCT;
    if (h->nb < 2 || h->arena_cap < 64 || h->arena_cap > UINT32_MAX)
        tw_die("tw_handoff_new: %zu batches of %zu bytes", h->nb, h->arena_cap);
    h->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->efd < 0)
        tw_die("tw_handoff_new: eventfd: %s", strerror(errno));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->room, NULL);
    pthread_cond_init(&h->idle, NULL);
    h->b = tw_xcalloc(h->nb, sizeof *h->b);
    for (size_t i = 0; i < h->nb; i++) {
        tw_handoff_batch_t *b = &h->b[i];
        b->arena = tw_xmalloc(h->arena_cap);
        b->recs = aligned_alloc(64, h->max_events * sizeof *b->recs);
        if (!b->recs)
            tw_die("out of memory allocating handoff records");
        b->pres = tw_xmalloc(h->max_events * sizeof *b->pres);
        b->data = b->arena;
        b->cap = h->arena_cap;
    }
    return h;
}

void tw_handoff_free(tw_handoff_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->nb; i++) {
        free(h->b[i].arena);
        free(h->b[i].big);
        free(h->b[i].recs);
        free(h->b[i].pres);
    }
    free(h->b);
    close(h->efd);
    pthread_cond_destroy(&h->idle);
    pthread_cond_destroy(&h->room);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

static void wake_consumer(tw_handoff_t *h)
{
    uint64_t one = 1;
    /* EAGAIN would mean the counter is near overflow: it is awake anyway. */
    ssize_t r = write(h->efd, &one, sizeof one);
    (void)r;
}

/*
 * What the reader does beside reading and parsing (handoff.h,
 * tw_handoff_reader_enrich and tw_handoff_reader_geo), in three levels:
 * nothing; token ids and addresses (the start); those and the GeoIP
 * lookups. Over each window of GEO_WINDOW published batches the queue
 * compares the CPU time the producer spent (reading, parsing, enriching)
 * with the time the consumer spent on the batches it took (judging), and
 * moves one level up when the consumer's is the larger by the level's
 * margin, one level down when the producer's is:
 *  - ids and addresses, a tenth of the work: on at ENRICH_PCT % (the
 *    consumer's against the producer's), off at ENRICH_PCT % the other way;
 *  - GeoIP lookups, about a fifth of the analysis thread's work with a
 *    GeoLite2-sized database (1,000,000 text lines: 0.235 CPU s without
 *    them, 0.193 with; the reader 0.182 and 0.225): on at GEO_ON_PCT %,
 *    off at GEO_OFF_PCT % the other way. Each move off raises the margin
 *    for the next move on by a quarter, so that work whose lookups
 *    outweigh the difference between the threads settles instead of
 *    moving back and forth.
 * Between the margins nothing changes. Moves down are immediate (the
 * analysis thread does what comes without it). Moving ids is immediate
 * too: both threads may hash and parse. Moving the lookups to the reader
 * waits, at the reader's next tw_handoff_reader_geo() call, until every
 * event pushed without a lookup has been handed over and released, so
 * that the two threads never use the GeoIP handle at the same time.
 * (The margins are defined at the top.)
 */

static void decide_placement_locked(tw_handoff_t *h)
{
    if (++h->win_batches < GEO_WINDOW)
        return;
    int64_t now = tw_thread_cpu_ns();
    int64_t prod = now - h->win_prod_cpu, cons = h->consumer_cpu - h->win_cons_cpu;
    h->win_batches = 0;
    h->win_prod_cpu = now;
    h->win_cons_cpu = h->consumer_cpu;
    if (h->reader_geo) {
        if (prod * 100 >= cons * GEO_OFF_PCT) {
            h->reader_geo = false;
            h->st.geo_moves++;
            h->geo_on_pct += h->geo_on_pct / 4;
            if (h->geo_on_pct > GEO_ON_PCT_MAX)
                h->geo_on_pct = GEO_ON_PCT_MAX;
        }
    } else if (!h->reader_enrich) {
        if (cons * 100 >= prod * ENRICH_PCT) {
            h->reader_enrich = true;
            h->st.enrich_moves++;
        }
    } else if (!h->geo_turn_on) {
        if (cons * 100 >= prod * h->geo_on_pct) {
            h->geo_turn_on = true;
        } else if (prod * 100 >= cons * ENRICH_PCT) {
            h->reader_enrich = false;
            h->st.enrich_moves++;
        }
    }
}

/* Publishes h->cur (mu held). Returns true when the consumer must be woken
 * (done after unlocking, to keep the syscall out of the critical section). */
static bool publish_locked(tw_handoff_t *h)
{
    tw_handoff_batch_t *b = h->cur;
    h->cur = NULL;
    h->put_i++;
    h->outstanding++;
    h->ready++;
    h->st.batches++;
    h->st.events += b->n;
    if (b->big)
        h->st.big_batches++;
    decide_placement_locked(h);
    bool wake = h->sleeping;
    h->sleeping = false;
    return wake;
}

void tw_handoff_flush(tw_handoff_t *h)
{
    if (!h->cur || h->cur->n == 0)
        return;
    pthread_mutex_lock(&h->mu);
    bool wake = publish_locked(h);
    pthread_mutex_unlock(&h->mu);
    if (wake)
        wake_consumer(h);
}

bool tw_handoff_reader_enrich(tw_handoff_t *h) { return h->reader_enrich; }

bool tw_handoff_reader_geo(tw_handoff_t *h)
{
    if (h->geo_turn_on) {
        /* Events pushed without a lookup may wait in the batch being
         * filled or in published ones: hand them all over and wait until
         * they are judged, so that the consumer's last lookup happens
         * before the producer's first. */
        tw_handoff_drain(h);
        h->geo_turn_on = false;
        h->reader_geo = true;
        pthread_mutex_lock(&h->mu);
        h->st.geo_moves++;
        pthread_mutex_unlock(&h->mu);
    }
    return h->reader_geo;
}

/* Waits for the next free slot (mu held) and returns it, not yet reset. */
static tw_handoff_batch_t *acquire_locked(tw_handoff_t *h)
{
    if (h->outstanding == h->nb) {
        h->st.producer_waits++;
        while (h->outstanding == h->nb)
            pthread_cond_wait(&h->room, &h->mu);
    }
    return &h->b[h->put_i % h->nb];
}

static void reset(tw_handoff_t *h, tw_handoff_batch_t *b)
{
    free(b->big);
    b->big = NULL;
    b->data = b->arena;
    b->cap = h->arena_cap;
    b->used = 0;
    b->n = 0;
}

/* Makes h->cur a batch with room for one more event of need bytes:
 * publishes a non-empty current batch first; gives an empty one a big
 * buffer when the arena is too small. */
static tw_handoff_batch_t *next_batch(tw_handoff_t *h, size_t need)
{
    tw_handoff_batch_t *b = h->cur;
    if (!b || b->n > 0) {
        /* Publish (and wake the consumer) before possibly waiting for a
         * free batch: the consumer must be awake to free one. */
        tw_handoff_flush(h);
        pthread_mutex_lock(&h->mu);
        b = acquire_locked(h);
        pthread_mutex_unlock(&h->mu);
        reset(h, b);
        h->cur = b;
    }
    if (need > b->cap) {
        if (need > UINT32_MAX)
            tw_die("tw_handoff_push: an event of %zu bytes", need);
        b->big = tw_xmalloc(need);
        b->data = b->big;
        b->cap = need;
    }
    return b;
}

static inline void put(tw_handoff_batch_t *b, rec_t *r, int f, tw_slice_t s)
{
    r->len[f] = (uint32_t)s.n;
    if (s.n) {
        memcpy(b->data + b->used, s.p, s.n);
        b->used += s.n;
    }
}

void tw_handoff_push(tw_handoff_t *h, const char *input, const tw_event_t *ev,
                     const tw_detect_pre_t *pre)
{
    size_t need = ev->token.n + ev->ip.n + ev->user.n + ev->path.n;
    tw_handoff_batch_t *b = h->cur;
    if (!b || b->n == h->max_events || need > b->cap - b->used)
        b = next_batch(h, need);
    size_t i = b->n++;
    rec_t *r = &b->recs[i];
    r->input = input;
    r->time_ns = ev->time_ns;
    r->rejected = ev->rejected;
    if (!pre) {
        r->pre = PRE_NONE;
    } else if (pre->geo_done) {
        r->pre = PRE_FULL;
        b->pres[i] = *pre;
    } else {
        r->pre = PRE_ID_ADDR;
        r->id = pre->id;
        r->addr = pre->geo.addr;
    }
    r->off = (uint32_t)b->used;
    put(b, r, F_TOKEN, ev->token);
    put(b, r, F_IP, ev->ip);
    put(b, r, F_USER, ev->user);
    put(b, r, F_PATH, ev->path);
    if (b->big)
        tw_handoff_flush(h); /* hand the big buffer over (and back) promptly */
}

void tw_handoff_drain(tw_handoff_t *h)
{
    tw_handoff_flush(h);
    pthread_mutex_lock(&h->mu);
    while (h->outstanding > 0)
        pthread_cond_wait(&h->idle, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

void tw_handoff_close(tw_handoff_t *h)
{
    tw_handoff_flush(h);
    pthread_mutex_lock(&h->mu);
    h->closed = true;
    bool wake = h->sleeping;
    h->sleeping = false;
    pthread_mutex_unlock(&h->mu);
    if (wake)
        wake_consumer(h);
}

tw_handoff_batch_t *tw_handoff_take(tw_handoff_t *h)
{
    tw_handoff_batch_t *b = NULL;
    pthread_mutex_lock(&h->mu);
    if (h->ready > 0) {
        b = &h->b[h->take_i % h->nb];
        h->take_i++;
        h->ready--;
    }
    pthread_mutex_unlock(&h->mu);
    if (b && h->held++ == 0)
        h->busy_mark = tw_thread_cpu_ns();
    return b;
}

void tw_handoff_release(tw_handoff_t *h, tw_handoff_batch_t *b)
{
    if (b != &h->b[h->rel_i % h->nb])
        tw_die("tw_handoff_release: batches released out of order");
    h->rel_i++;
    int64_t now = tw_thread_cpu_ns(), busy = now - h->busy_mark;
    h->busy_mark = now;
    h->held--;
    pthread_mutex_lock(&h->mu);
    h->consumer_cpu += busy;
    h->outstanding--;
    pthread_cond_signal(&h->room);
    if (h->outstanding == 0)
        pthread_cond_broadcast(&h->idle);
    pthread_mutex_unlock(&h->mu);
}

bool tw_handoff_finished(tw_handoff_t *h)
{
    pthread_mutex_lock(&h->mu);
    bool r = h->closed && h->ready == 0;
    pthread_mutex_unlock(&h->mu);
    return r;
}

size_t tw_handoff_ready(tw_handoff_t *h)
{
    pthread_mutex_lock(&h->mu);
    size_t r = h->ready;
    pthread_mutex_unlock(&h->mu);
    return r;
}

int tw_handoff_wait(tw_handoff_t *h, int timeout_ms, int extra_fd)
{
    pthread_mutex_lock(&h->mu);
    if (h->ready > 0 || h->closed) {
        pthread_mutex_unlock(&h->mu);
        return 1;
    }
    h->sleeping = true;
    h->st.consumer_waits++;
    pthread_mutex_unlock(&h->mu);

    struct pollfd p[2] = {{.fd = h->efd, .events = POLLIN}, {.fd = extra_fd, .events = POLLIN}};
    int n = poll(p, extra_fd >= 0 ? 2 : 1, timeout_ms);
    if (n > 0 && (p[0].revents & POLLIN)) {
        uint64_t v;
        ssize_t r = read(h->efd, &v, sizeof v); /* resets the counter */
        (void)r;
    }
    pthread_mutex_lock(&h->mu);
    h->sleeping = false;
    bool got = h->ready > 0 || h->closed;
    pthread_mutex_unlock(&h->mu);
    if (got)
        return 1;
    return n > 0 && extra_fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) ? 2 : 0;
}

tw_handoff_batch_t *tw_handoff_next(tw_handoff_t *h)
{
    for (;;) {
        tw_handoff_batch_t *b = tw_handoff_take(h);
        if (b || tw_handoff_finished(h))
            return b;
        tw_handoff_wait(h, -1, -1);
    }
}

size_t tw_handoff_batch_len(const tw_handoff_batch_t *b)
{
    return b->n;
}

void tw_handoff_batch_get(tw_handoff_batch_t *b, size_t i, const char **input,
                          tw_event_t *ev, const tw_detect_pre_t **pre)
{
    const rec_t *r = &b->recs[i];
    *input = r->input;
    if (r->pre == PRE_ID_ADDR) {
        /* what tw_detect_events reads of an enrichment without a lookup */
        tw_detect_pre_t *p = &b->ring[i % TW_HANDOFF_PRE_RING];
        p->id = r->id;
        p->geo_done = false;
        p->geo.addr = r->addr;
        *pre = p;
    } else {
        *pre = r->pre == PRE_FULL ? &b->pres[i] : NULL;
    }
    const char *p = b->data + r->off;
    ev->token = (tw_slice_t){p, r->len[F_TOKEN]};
    p += r->len[F_TOKEN];
    ev->ip = (tw_slice_t){p, r->len[F_IP]};
    p += r->len[F_IP];
    ev->user = (tw_slice_t){p, r->len[F_USER]};
    p += r->len[F_USER];
    ev->path = (tw_slice_t){p, r->len[F_PATH]};
    ev->result = (tw_slice_t){NULL, 0};
    ev->time_ns = r->time_ns;
    ev->rejected = r->rejected;
    ev->error = TW_PERR_NO_MATCH;
    ev->error_field = NULL;
}

void tw_handoff_stats(tw_handoff_t *h, tw_handoff_stats_t *out)
{
    pthread_mutex_lock(&h->mu);
    *out = h->st;
    pthread_mutex_unlock(&h->mu);
}
