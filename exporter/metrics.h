/*
 * metrics.h — a small Prometheus metrics registry with lock-free cells.
 *
 * Families (name, help, type, label names) and their series (label values)
 * are created under a mutex, at start-up or reload; a series' cell pointer is
 * stable for the registry's lifetime, so the hot path updates it with one
 * relaxed atomic operation and no lookup. tw_metrics_render() may run on any
 * thread (the HTTP threads) concurrently with updates.
 *
 * Exposition: text format 0.0.4, families in creation order, series in
 * creation order, every family with # HELP and # TYPE. Label values are
 * escaped (\\, \", \n). Names are not altered: callers choose them (the
 * mandated counters auth_token_check / auth_token_rejected have no _total).
 */
#ifndef TW_METRICS_H
#define TW_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    TW_METRIC_COUNTER = 0,
    TW_METRIC_GAUGE = 1,
    TW_METRIC_HISTOGRAM = 2,   /* created with tw_metrics_histogram() only */
} tw_metric_type_t;

/* Counters hold a uint64; gauges hold an int64 stored in the same cell. */
typedef struct tw_cell {
    _Atomic uint64_t v;
} tw_cell_t;

typedef struct tw_metrics tw_metrics_t;
typedef struct tw_family tw_family_t;

#define TW_METRICS_MAX_LABELS 4

tw_metrics_t *tw_metrics_new(void);
void tw_metrics_free(tw_metrics_t *m);   /* NULL-safe */

/* Returns the family with this name, creating it if needed. Re-declaring a
 * name with another type or label set aborts (a programming error). */
tw_family_t *tw_metrics_family(tw_metrics_t *m, const char *name, const char *help,
                               tw_metric_type_t type, size_t nlabels,
                               const char *const *label_names);

/* Returns the series' cell for these label values (nlabels of them),
 * creating it at 0. The pointer stays valid until tw_metrics_free. */
tw_cell_t *tw_family_cell(tw_family_t *f, const char *const *label_values);

static inline void tw_cell_add(tw_cell_t *c, uint64_t d)
{
    atomic_fetch_add_explicit(&c->v, d, memory_order_relaxed);
}
static inline void tw_cell_set(tw_cell_t *c, uint64_t v)
{
    atomic_store_explicit(&c->v, v, memory_order_relaxed);
}
static inline void tw_cell_set_gauge(tw_cell_t *c, int64_t v)
{
    atomic_store_explicit(&c->v, (uint64_t)v, memory_order_relaxed);
}
static inline uint64_t tw_cell_get(const tw_cell_t *c)
{
    return atomic_load_explicit(&((tw_cell_t *)c)->v, memory_order_relaxed);
}

/*
 * Fixed-point families: values are stored as integers and printed divided by
 * 10^decimals with that many decimals (decimals 1..9), e.g. a duration kept
 * in microseconds is printed in seconds with decimals = 6. The family's
 * values must then be non-negative. Otherwise like tw_metrics_family().
 */
tw_family_t *tw_metrics_family_fixed(tw_metrics_t *m, const char *name, const char *help,
                                     tw_metric_type_t type, unsigned decimals, size_t nlabels,
                                     const char *const *label_names);

/*
 * Histograms (Prometheus type "histogram"): observations in fixed point
 * (decimals as above), nbounds increasing upper bounds in the same unit
 * (at most TW_METRICS_MAX_BUCKETS; "+Inf" is implicit). Rendered as
 * NAME_bucket{...,le="B"} (cumulative), NAME_sum and NAME_count.
 */
#define TW_METRICS_MAX_BUCKETS 16
typedef struct tw_hist tw_hist_t;
tw_family_t *tw_metrics_histogram(tw_metrics_t *m, const char *name, const char *help,
                                  unsigned decimals, const uint64_t *bounds, size_t nbounds,
                                  size_t nlabels, const char *const *label_names);
/* The series for these label values, created at 0. Stable pointer. */
tw_hist_t *tw_family_hist(tw_family_t *f, const char *const *label_values);
/* Records one observation (fixed point). Any thread, lock-free. */
void tw_hist_observe(tw_hist_t *h, uint64_t v);

/* Renders the whole registry; returns a heap buffer (caller frees), *len
 * set to its length. */
char *tw_metrics_render(tw_metrics_t *m, size_t *len);

#endif
