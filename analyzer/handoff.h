/*
 * handoff.h — parsed auth events from the reader thread to the analysis
 * thread ("threads": 2), in batches, through a bounded single-producer
 * single-consumer queue.
 *
 * The reader (R) reads, splits, parses and counts; for every parsed check
 * it calls tw_handoff_push(), which COPIES the event's token, ip, user and
 * path bytes and its scalars (time, rejected, input name pointer) into the
 * batch being filled: a fixed arena plus a fixed array of records, so the
 * hot path allocates nothing (the parser's slices die at its next line, the
 * copies live until the consumer releases the batch). A full batch, or the
 * partial one at tw_handoff_flush() (end of a read round: latency stays
 * low), is published to the analysis thread (A), which takes batches in
 * FIFO order, rebuilds each tw_event_t and releases the batch for reuse.
 *
 * What it promises:
 * - Order: A sees events exactly in the order R pushed them (one queue, one
 *   consumer), so replay's output is the same as with one thread.
 * - Bounded memory: nbatches batches exist, allocated at creation; when all
 *   of them are published and not yet released, push blocks R until A
 *   releases one (backpressure: R never reads unboundedly ahead).
 * - Big events: an event whose bytes do not fit in an empty arena gets a
 *   one-off heap buffer of its own size in a batch of its own (tokens can be
 *   10 KB+; follow.max_line_bytes bounds them); the buffer is freed when the
 *   producer reuses that batch.
 * - Drain: tw_handoff_drain() returns once A has released every published
 *   batch, so R can take a snapshot knowing that every line it counted has
 *   been through detection.
 *
 * Synchronisation is per batch (a mutex and two condition variables, plus an
 * eventfd so A can wait for batches and other file descriptors in one
 * poll()); nothing per event.
 *
 * Threading: exactly one producer thread calls push, flush, drain and close;
 * exactly one consumer thread calls take, release and wait. tw_handoff_new,
 * tw_handoff_free and tw_handoff_stats may be called by either while the
 * other does not use the queue (new/free), or at any time (stats).
 */
#ifndef TW_HANDOFF_H
#define TW_HANDOFF_H

#include "common.h"
#include "detect.h"
#include "format.h"

#define TW_HANDOFF_DEFAULT_BATCHES 4
#define TW_HANDOFF_DEFAULT_ARENA (256 * 1024)
#define TW_HANDOFF_DEFAULT_EVENTS 4096

typedef struct tw_handoff tw_handoff_t;
typedef struct tw_handoff_batch tw_handoff_batch_t;

/* nbatches >= 2 batches of arena_bytes (>= 64) and max_events (>= 1)
 * records each; 0 picks the defaults above. Aborts on allocation failure
 * or when no eventfd can be created. */
tw_handoff_t *tw_handoff_new(size_t nbatches, size_t arena_bytes, size_t max_events);
/* NULL-safe. Nothing may be outstanding (call after close and the
 * consumer's last release, or drain). */
void tw_handoff_free(tw_handoff_t *h);

/* ---- producer (reader thread) ---- */

/* Copies one parsed check into the batch being filled, with its
 * enrichment (tw_detect_enrich; NULL: none, the consumer does it); may
 * block while every batch is outstanding. input must stay valid until the
 * consumer has released the batch (drain before freeing it). The event's
 * result slice and error fields are not carried (detection does not read
 * them). */
void tw_handoff_push(tw_handoff_t *h, const char *input, const tw_event_t *ev,
                     const tw_detect_pre_t *pre);
/* Publishes the batch being filled, if it holds any event. Never blocks. */
void tw_handoff_flush(tw_handoff_t *h);
/* Whether the producer should enrich the event it is about to push
 * (tw_detect_enrich: token id and address) or push it without (NULL, the
 * consumer does it); ask before each. True at first; the queue turns it
 * off while the reader is the bottleneck and on again when it is not
 * (handoff.c, "What the reader does"). Either way the events come out the
 * same. */
bool tw_handoff_reader_enrich(tw_handoff_t *h);
/* Whether the producer should also do the GeoIP lookup of the event it is
 * about to enrich (tw_detect_enrich(..., true)); ask before each, only when
 * tw_handoff_reader_enrich() said yes. False at first.
 * The queue decides from the two threads' CPU time, per 16 published
 * batches: lookups move to the reader when the analysis thread is the
 * busier by a margin and back when the reader is (handoff.c, "What the
 * reader does"). The call that turns it true first drains the queue
 * (blocks until the consumer has judged every event pushed so far), so the
 * consumer is not looking anything up when the producer starts. */
bool tw_handoff_reader_geo(tw_handoff_t *h);
/* Flushes, then waits until the consumer has released every published
 * batch. Returns at once when nothing is outstanding. */
void tw_handoff_drain(tw_handoff_t *h);
/* Flushes and marks the end: once it has taken every published batch, the
 * consumer sees tw_handoff_finished(). No push after close. */
void tw_handoff_close(tw_handoff_t *h);

/* ---- consumer (analysis thread) ---- */

/* The oldest published batch not yet taken, or NULL (never blocks). Batches
 * must be released in the order they were taken. */
tw_handoff_batch_t *tw_handoff_take(tw_handoff_t *h);
/* Gives a taken batch back to the producer. */
void tw_handoff_release(tw_handoff_t *h, tw_handoff_batch_t *b);
/* True once the producer has closed and every batch has been taken. */
bool tw_handoff_finished(tw_handoff_t *h);
/* Published batches not yet taken. */
size_t tw_handoff_ready(tw_handoff_t *h);
/* Sleeps until a batch is ready or the queue is closed (returns 1), extra_fd
 * (-1: none) is readable (2), timeout_ms passes (0; < 0 waits without
 * limit), or a signal interrupts (0). */
int tw_handoff_wait(tw_handoff_t *h, int timeout_ms, int extra_fd);
/* take, waiting as long as it takes: the oldest published batch not yet
 * taken, or NULL once tw_handoff_finished() (for a consumer that waits on
 * nothing else). */
tw_handoff_batch_t *tw_handoff_next(tw_handoff_t *h);

/* Events in a taken batch. */
size_t tw_handoff_batch_len(const tw_handoff_batch_t *b);
/* Rebuilds event i of a taken batch: slices point into the batch and stay
 * valid until it is released; *input is the pointer given to push. *pre
 * is the enrichment given to push, or NULL. With a GeoIP result (geo_done)
 * all of it comes through and stays valid until the release; without one
 * only its id and geo.addr come through (all that detection reads of it
 * then, and at once), rebuilt in a ring of the batch that the
 * TW_HANDOFF_PRE_RING-th next call on the batch overwrites. */
#define TW_HANDOFF_PRE_RING 32
void tw_handoff_batch_get(tw_handoff_batch_t *b, size_t i, const char **input,
                          tw_event_t *ev, const tw_detect_pre_t **pre);

/* Counters for the benchmark and tests (any thread; a consistent copy). */
typedef struct tw_handoff_stats {
    uint64_t events;         /* pushed */
    uint64_t batches;        /* published */
    uint64_t big_batches;    /* of which carried a one-off big buffer */
    uint64_t producer_waits; /* pushes that found every batch outstanding */
    uint64_t consumer_waits; /* tw_handoff_wait calls that slept */
    uint64_t geo_moves;      /* times tw_handoff_reader_geo() changed */
    uint64_t enrich_moves;   /* times tw_handoff_reader_enrich() changed */
} tw_handoff_stats_t;

void tw_handoff_stats(tw_handoff_t *h, tw_handoff_stats_t *out);

#endif
