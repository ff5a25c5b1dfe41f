/*
 * pipeline.h — one input's line handler: parse → count → detect.
 *
 * A tw_input_t owns the parser for its format and the exact counters its
 * lines produced. Counters are plain integers owned by the analysis thread
 * (the hot path does no atomic operation per line); tw_input_publish()
 * copies them into the metrics registry's cells after each read round, and
 * the state snapshot saves them together with the file offsets they belong
 * to, so totals stay exact across restarts.
 *
 * With "threads": 2 (handoff.h) the parsed checks go to the analysis thread
 * instead of a detector: tw_input_set_handoff() makes tw_input_line() copy
 * each counted check into the handoff queue. The input, its parser and its
 * counters still belong to one thread, the reader.
 *
 * Threading: everything here runs on the thread that reads the input (the
 * analysis thread with one thread, the reader thread with two).
 */
#ifndef TW_PIPELINE_H
#define TW_PIPELINE_H

#include "detect.h"
#include "format.h"
#include "handoff.h"
#include "metrics.h"
#include "tail.h"

typedef enum {
    TW_SKIPR_TOO_LONG = 0,   /* "too_long" */
    TW_SKIPR_PARTIAL,        /* "partial" */
    TW_SKIPR_BLANK,          /* "blank": empty or whitespace-only line */
    TW_SKIPR_FILTERED,       /* "filtered": the format ignores it (Vault requests) */
    TW_SKIPR__COUNT
} tw_skip_reason_t;

const char *tw_skip_reason_name(tw_skip_reason_t r);

typedef struct tw_input_stats {
    uint64_t lines;          /* every complete line, whatever became of it */
    uint64_t checks;         /* auth_token_check */
    uint64_t rejected;       /* auth_token_rejected */
    uint64_t parse_errors[TW_PERR__COUNT];
    uint64_t skipped[TW_SKIPR__COUNT];
    uint64_t rotations[TW_ROTATE__COUNT];
    uint64_t io_errors[TW_TAIL_ERR__COUNT];   /* not kept across restarts */
    uint64_t future;         /* checks stamped past the clock limit; not kept */
} tw_input_stats_t;

typedef struct tw_input tw_input_t;

/* Creates the input and registers all its series (at 0) in m, which may be
 * NULL (replay/check keep counts only). fmt is borrowed. */
tw_input_t *tw_input_new(const char *name, const tw_format_t *fmt, tw_metrics_t *m);
void tw_input_free(tw_input_t *in);   /* NULL-safe */

const char *tw_input_name(const tw_input_t *in);
/* Swaps the format (config reload); counters are kept. */
void tw_input_set_format(tw_input_t *in, const tw_format_t *fmt);

/* Reference time for year-less timestamps; set once per read round. */
void tw_input_set_ref_time(tw_input_t *in, int64_t ref_ns);

/* The daemon's guard against producer clocks far ahead (`run` only; replay
 * reads history and has no "now"): a check stamped more than ahead_ns past
 * the reference time is counted as usual and in stats.future, but not
 * handed to detection, so one bad stamp cannot drag a token's windows,
 * cooldowns and learning period into the future (baselines treat an event
 * older than the last one seen as happening at that last time). 0 (the
 * default) turns the guard off. */
#define TW_FUTURE_LIMIT_NS (15LL * 60 * 1000000000LL)
void tw_input_set_future_limit(tw_input_t *in, int64_t ahead_ns);

/* True for an empty or spaces/tabs-only line (skipped as "blank"). */
bool tw_line_is_blank(const char *line, size_t len);

/* Attaches a detector (borrowed; NULL detaches): every parsed check is
 * passed to tw_detect_push() after it is counted (see tw_input_line and
 * tw_input_lines_done); the caller also flushes the
 * detector (tw_detect_flush) at the end of each read round and before it
 * frees the input (queued events carry its name). */
void tw_input_set_detector(tw_input_t *in, tw_detect_t *det);

/* Attaches a handoff queue (borrowed; NULL detaches): every parsed check is
 * counted, enriched with tw_detect_enrich(enrich, ...) when enrich is not
 * NULL (the token id and the GeoIP lookup move to this thread), then pushed
 * to h with the input's name, for the analysis thread. A detector set with
 * tw_input_set_detector() takes precedence. The name stays valid until
 * tw_input_free(): drain h before freeing the input. */
void tw_input_set_handoff(tw_input_t *in, tw_handoff_t *h, tw_detect_t *enrich);

/* The analysis thread's half of tw_input_line() with "threads": 2: judges
 * every event of a taken batch, in order (tw_detect_events). */
void tw_input_detect_batch(tw_detect_t *det, const tw_handoff_batch_t *b);

/* The hot path: one complete line. With a detector attached, the event's
 * slices into line are queued without a copy (tw_detect_push): line's bytes
 * must stay as they are until tw_input_lines_done(). */
void tw_input_line(tw_input_t *in, const char *line, size_t len);

/* The lines given so far die: judges what the detector has queued. Called
 * after each block of lines (the tail handler's on_lines_done). */
void tw_input_lines_done(tw_input_t *in);

/* Exact counters (read/write: the state module restores them at start). */
tw_input_stats_t *tw_input_stats(tw_input_t *in);

/* Copies counters (and the lag gauge) into the metric cells. */
void tw_input_publish(tw_input_t *in, uint64_t lag_bytes);

/* Callbacks for tw_tail_add with the tw_input_t as ctx. */
extern const tw_tail_handler_t tw_input_tail_handler;

#endif
