/*
 * metrics.c — see metrics.h.
 *
 * Layout and invariants:
 *  - The registry owns a list of families in creation order; each family owns
 *    a list of series in creation order. Both lists only grow, and only under
 *    m->lock. Rendering walks them under the same lock, so the list links need
 *    no atomics; the cells are the only memory touched outside the lock, and
 *    only through relaxed atomic operations.
 *  - A series is a single allocation (cell, link, escaped label block) that is
 *    never moved or freed before tw_metrics_free, so the cell pointer handed
 *    out by tw_family_cell stays valid for the registry's lifetime.
 *  - Everything a scrape prints except the numbers is validated and escaped
 *    once, at creation: the "# HELP/# TYPE" header of a family and the label
 *    block `{a="x",b="y"}` of a series. A series is identified by its label
 *    block, so two label sets that would print the same are the same series
 *    and the exposition never holds a duplicate.
 *  - m->render_bound is the worst-case size of a full render (every value at
 *    its widest), kept up to date at creation, so a scrape sizes its buffer
 *    once and performs no per-series allocation.
 *  - Exposition text is valid UTF-8 whatever the callers pass: invalid bytes
 *    in help texts and label values become U+FFFD, because one bad byte in a
 *    label value makes Prometheus reject the whole scrape.
 *
 * Lookups are linear scans. They happen only when a module creates its series
 * (start-up, reload), never on the update path, and families hold tens to a
 * few hundred series.
 */
#include "metrics.h"
#include "common.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Widest printed value: 18446744073709551615 or -9223372036854775808. */
#define VALUE_MAX_CHARS 20

typedef struct series {
    tw_cell_t cell; /* the only field used outside the registry lock */
    struct series *next;
    struct tw_hist *hist; /* histograms: the buckets, sum and count */
    size_t block_len;
    char block[]; /* escaped `{k="v",...}`, empty when no labels */
} series_t;

struct tw_hist {
    size_t nbounds;
    const uint64_t *bounds;     /* the family's */
    tw_cell_t count, sum;
    tw_cell_t buckets[TW_METRICS_MAX_BUCKETS + 1];   /* not cumulative; last = +Inf */
};

struct tw_family {
    tw_metrics_t *m;
    struct tw_family *next;
    tw_metric_type_t type;
    unsigned decimals;          /* fixed point: printed as v / 10^decimals */
    size_t nbounds;
    uint64_t bounds[TW_METRICS_MAX_BUCKETS];
    size_t nlabels;
    char *label_names[TW_METRICS_MAX_LABELS];
    char *name;
    size_t name_len;
    char *header; /* "# HELP ...\n# TYPE ...\n", escaped */
    size_t header_len;
    series_t *head, *tail;
};

struct tw_metrics {
    pthread_mutex_t lock;
    tw_family_t *head, *tail;
    size_t render_bound;
};

/* ---- a growable byte buffer: doubling growth, aborts on exhaustion ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2)
            tw_die("metrics: buffer size overflow");
        cap *= 2;
    }
    b->p = tw_xrealloc(b->p, cap);
    b->cap = cap;
}

static void buf_put(buf_t *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void buf_putc(buf_t *b, char c)
{
    buf_reserve(b, 1);
    b->p[b->len++] = c;
}

static void buf_puts(buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* ---- validation and escaping (creation time only) ---- */


/* Appends s escaped for the exposition format: backslash and newline always,
 * the double quote too inside label values (escape_quote). */
static void put_escaped(buf_t *b, const char *s, bool escape_quote)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    while (n > 0) {
        size_t k = tw_utf8_seq_len(p, n);
        if (k == 0) {
            buf_put(b, "\xEF\xBF\xBD", 3);
            k = 1;
        } else if (*p == '\\') {
            buf_put(b, "\\\\", 2);
        } else if (*p == '\n') {
            buf_put(b, "\\n", 2);
        } else if (*p == '"' && escape_quote) {
            buf_put(b, "\\\"", 2);
        } else {
            buf_put(b, (const char *)p, k);
        }
        p += k;
        n -= k;
    }
}

static bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
static bool valid_metric_name(const char *s)
{
    if (!s || !(is_alpha_(*s) || *s == ':'))
        return false;
    for (s++; *s; s++)
        if (!(is_alpha_(*s) || is_digit(*s) || *s == ':'))
            return false;
    return true;
}

/* [a-zA-Z_][a-zA-Z0-9_]*, and not the "__" prefix Prometheus reserves. */
static bool valid_label_name(const char *s)
{
    if (!s || !is_alpha_(*s) || strncmp(s, "__", 2) == 0)
        return false;
    for (s++; *s; s++)
        if (!(is_alpha_(*s) || is_digit(*s)))
            return false;
    return true;
}

/* ---- registry ---- */

tw_metrics_t *tw_metrics_new(void)
{
    tw_metrics_t *m = tw_xcalloc(1, sizeof *m);
    if (pthread_mutex_init(&m->lock, NULL) != 0)
        tw_die("metrics: pthread_mutex_init failed");
    return m;
}

void tw_metrics_free(tw_metrics_t *m)
{
    if (!m)
        return;
    tw_family_t *f = m->head;
    while (f) {
        tw_family_t *fnext = f->next;
        series_t *s = f->head;
        while (s) {
            series_t *snext = s->next;
            free(s->hist);
            free(s);
            s = snext;
        }
        for (size_t i = 0; i < f->nlabels; i++)
            free(f->label_names[i]);
        free(f->name);
        free(f->header);
        free(f);
        f = fnext;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void validate_family(const char *name, const char *help, tw_metric_type_t type,
                            size_t nlabels, const char *const *label_names)
{
    if (!valid_metric_name(name))
        tw_die("metrics: invalid metric name \"%s\"", name ? name : "(null)");
    if (!help || !help[0])
        tw_die("metrics: %s: a help text is required", name);
    if (type != TW_METRIC_COUNTER && type != TW_METRIC_GAUGE && type != TW_METRIC_HISTOGRAM)
        tw_die("metrics: %s: unknown metric type %d", name, (int)type);
    if (nlabels > TW_METRICS_MAX_LABELS)
        tw_die("metrics: %s: %zu labels, at most %d supported", name, nlabels,
               TW_METRICS_MAX_LABELS);
    if (nlabels > 0 && !label_names)
        tw_die("metrics: %s: label names missing", name);
    for (size_t i = 0; i < nlabels; i++) {
        if (!valid_label_name(label_names[i]))
            tw_die("metrics: %s: invalid label name \"%s\"", name,
                   label_names[i] ? label_names[i] : "(null)");
        for (size_t j = 0; j < i; j++)
            if (strcmp(label_names[i], label_names[j]) == 0)
                tw_die("metrics: %s: duplicate label name \"%s\"", name, label_names[i]);
    }
}

static bool same_shape(const tw_family_t *f, tw_metric_type_t type, size_t nlabels,
                       const char *const *label_names)
{
    if (f->type != type || f->nlabels != nlabels)
        return false;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(f->label_names[i], label_names[i]) != 0)
            return false;
    return true;
}

static tw_family_t *family(tw_metrics_t *m, const char *name, const char *help,
                           tw_metric_type_t type, unsigned decimals, const uint64_t *bounds,
                           size_t nbounds, size_t nlabels, const char *const *label_names)
{
    validate_family(name, help, type, nlabels, label_names);
    if (decimals > 9)
        tw_die("metrics: %s: at most 9 decimals", name);
    if (nbounds > TW_METRICS_MAX_BUCKETS)
        tw_die("metrics: %s: at most %d buckets", name, TW_METRICS_MAX_BUCKETS);
    for (size_t i = 0; i < nlabels; i++)
        if (type == TW_METRIC_HISTOGRAM && strcmp(label_names[i], "le") == 0)
            tw_die("metrics: %s: \"le\" is reserved in histograms", name);
    for (size_t i = 1; i < nbounds; i++)
        if (bounds[i] <= bounds[i - 1])
            tw_die("metrics: %s: bucket bounds must increase", name);

    pthread_mutex_lock(&m->lock);
    for (tw_family_t *f = m->head; f; f = f->next) {
        if (strcmp(f->name, name) != 0)
            continue;
        if (!same_shape(f, type, nlabels, label_names) || f->decimals != decimals)
            tw_die("metrics: %s re-declared with another type or label set", name);
        pthread_mutex_unlock(&m->lock);
        return f;
    }

    tw_family_t *f = tw_xcalloc(1, sizeof *f);
    f->m = m;
    f->type = type;
    f->decimals = decimals;
    f->nbounds = nbounds;
    if (nbounds)
        memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
    f->nlabels = nlabels;
    for (size_t i = 0; i < nlabels; i++)
        f->label_names[i] = tw_xstrdup(label_names[i]);
    f->name = tw_xstrdup(name);
    f->name_len = strlen(name);

    buf_t h = {0};
    buf_puts(&h, "# HELP ");
    buf_puts(&h, name);
    buf_putc(&h, ' ');
    put_escaped(&h, help, false);
    buf_puts(&h, "\n# TYPE ");
    buf_puts(&h, name);
    buf_puts(&h, type == TW_METRIC_COUNTER ? " counter\n"
                 : type == TW_METRIC_GAUGE ? " gauge\n"
                                           : " histogram\n");
    f->header = h.p;
    f->header_len = h.len;

    if (m->tail)
        m->tail->next = f;
    else
        m->head = f;
    m->tail = f;
    m->render_bound += f->header_len;
    pthread_mutex_unlock(&m->lock);
    return f;
}

tw_family_t *tw_metrics_family(tw_metrics_t *m, const char *name, const char *help,
                               tw_metric_type_t type, size_t nlabels,
                               const char *const *label_names)
{
    if (type == TW_METRIC_HISTOGRAM)
        tw_die("metrics: %s: histograms are created with tw_metrics_histogram", name);
    return family(m, name, help, type, 0, NULL, 0, nlabels, label_names);
}

tw_family_t *tw_metrics_family_fixed(tw_metrics_t *m, const char *name, const char *help,
                                     tw_metric_type_t type, unsigned decimals, size_t nlabels,
                                     const char *const *label_names)
{
    if (type == TW_METRIC_HISTOGRAM || decimals == 0)
        tw_die("metrics: %s: fixed-point counters and gauges need 1..9 decimals", name);
    return family(m, name, help, type, decimals, NULL, 0, nlabels, label_names);
}

tw_family_t *tw_metrics_histogram(tw_metrics_t *m, const char *name, const char *help,
                                  unsigned decimals, const uint64_t *bounds, size_t nbounds,
                                  size_t nlabels, const char *const *label_names)
{
    if (nbounds == 0)
        tw_die("metrics: %s: a histogram needs at least one bucket bound", name);
    return family(m, name, help, TW_METRIC_HISTOGRAM, decimals, bounds, nbounds, nlabels,
                  label_names);
}

static series_t *get_series(tw_family_t *f, const char *const *label_values)
{
    if (f->nlabels > 0 && !label_values)
        tw_die("metrics: %s: label values missing", f->name);

    /* The label block is the series' identity (see the file header); build
     * it before taking the lock. */
    buf_t key = {0};
    if (f->nlabels > 0) {
        buf_putc(&key, '{');
        for (size_t i = 0; i < f->nlabels; i++) {
            if (!label_values[i])
                tw_die("metrics: %s: value of label %s missing", f->name, f->label_names[i]);
            if (i > 0)
                buf_putc(&key, ',');
            buf_puts(&key, f->label_names[i]);
            buf_put(&key, "=\"", 2);
            put_escaped(&key, label_values[i], true);
            buf_putc(&key, '"');
        }
        buf_putc(&key, '}');
    }

    tw_metrics_t *m = f->m;
    pthread_mutex_lock(&m->lock);
    series_t *s;
    for (s = f->head; s; s = s->next)
        if (s->block_len == key.len && (key.len == 0 || memcmp(s->block, key.p, key.len) == 0))
            break;
    if (!s) {
        s = tw_xmalloc(sizeof *s + key.len);
        atomic_init(&s->cell.v, 0);
        s->next = NULL;
        s->hist = NULL;
        size_t lines = 1, extra = 0;
        if (f->type == TW_METRIC_HISTOGRAM) {
            s->hist = tw_xcalloc(1, sizeof *s->hist);
            s->hist->nbounds = f->nbounds;
            s->hist->bounds = f->bounds;
            /* nbounds + 1 bucket lines, _sum and _count; each bucket line
             * adds _bucket, ,le="" and a bound of at most 21 characters. */
            lines = f->nbounds + 3;
            extra = (f->nbounds + 1) * (7 + 6 + 21 + 2) + 2 * 6;
        }
        s->block_len = key.len;
        if (key.len > 0)
            memcpy(s->block, key.p, key.len);
        if (f->tail)
            f->tail->next = s;
        else
            f->head = s;
        f->tail = s;
        /* name, labels, space, value (and a decimal point), newline */
        m->render_bound += lines * (f->name_len + key.len + 1 + VALUE_MAX_CHARS + 2) + extra;
    }
    pthread_mutex_unlock(&m->lock);
    free(key.p);
    return s;
}

tw_cell_t *tw_family_cell(tw_family_t *f, const char *const *label_values)
{
    if (f->type == TW_METRIC_HISTOGRAM)
        tw_die("metrics: %s: a histogram has no single cell", f->name);
    return &get_series(f, label_values)->cell;
}

tw_hist_t *tw_family_hist(tw_family_t *f, const char *const *label_values)
{
    if (f->type != TW_METRIC_HISTOGRAM)
        tw_die("metrics: %s is not a histogram", f->name);
    return get_series(f, label_values)->hist;
}

void tw_hist_observe(tw_hist_t *h, uint64_t v)
{
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    tw_cell_add(&h->buckets[i], 1);
    tw_cell_add(&h->sum, v);
    tw_cell_add(&h->count, 1);
}

/* ---- rendering ---- */

/* v / 10^decimals with exactly that many decimals (decimals >= 1). */
static void put_fixed(buf_t *b, uint64_t v, unsigned decimals)
{
    uint64_t scale = 1;
    for (unsigned i = 0; i < decimals; i++)
        scale *= 10;
    char tmp[VALUE_MAX_CHARS];
    char *end = tmp + sizeof tmp;
    char *p = tw_u64_digits(v / scale, end);
    buf_put(b, p, (size_t)(end - p));
    buf_putc(b, '.');
    char frac[10];
    uint64_t r = v % scale;
    for (unsigned i = decimals; i-- > 0;) {
        frac[i] = (char)('0' + r % 10);
        r /= 10;
    }
    buf_put(b, frac, decimals);
}

static void put_value(buf_t *b, tw_metric_type_t type, uint64_t raw);

static void put_fixed_or_int(buf_t *b, uint64_t v, unsigned decimals)
{
    if (decimals)
        put_fixed(b, v, decimals);
    else
        put_value(b, TW_METRIC_COUNTER, v);
}

static void put_value(buf_t *b, tw_metric_type_t type, uint64_t raw)
{
    char tmp[VALUE_MAX_CHARS];
    char *end = tmp + sizeof tmp;
    char *p;
    /* A gauge cell holds int64 bits; the sign bit is tested and the
     * magnitude negated in unsigned arithmetic, so INT64_MIN is exact and no
     * implementation-defined conversion is involved. */
    if (type == TW_METRIC_GAUGE && (raw >> 63)) {
        p = tw_u64_digits(~raw + 1, end);
        *--p = '-';
    } else {
        p = tw_u64_digits(raw, end);
    }
    buf_put(b, p, (size_t)(end - p));
}

/* One histogram series: cumulative buckets, then _sum and _count. The count
 * is read first and the buckets after, so under concurrent observations the
 * +Inf bucket (the count) may trail the finite ones by the few in flight;
 * it is printed as the larger of the two so buckets never decrease. */
static void put_hist(buf_t *b, const tw_family_t *f, const series_t *s)
{
    const tw_hist_t *h = s->hist;
    uint64_t count = tw_cell_get(&h->count), cum = 0;
    /* The label block without its closing brace, to append le. */
    size_t open = s->block_len ? s->block_len - 1 : 0;
    for (size_t i = 0; i <= h->nbounds; i++) {
        cum += tw_cell_get(&h->buckets[i]);
        buf_put(b, f->name, f->name_len);
        buf_puts(b, "_bucket");
        if (open) {
            buf_put(b, s->block, open);
            buf_puts(b, ",le=\"");
        } else {
            buf_puts(b, "{le=\"");
        }
        if (i < h->nbounds) {
            /* Bounds print like Prometheus' own clients: "0.25", not "0.250000". */
            size_t at = b->len;
            put_fixed_or_int(b, h->bounds[i], f->decimals);
            while (f->decimals && b->len > at && b->p[b->len - 1] == '0')
                b->len--;
            if (f->decimals && b->p[b->len - 1] == '.')
                b->len--;
        } else
            buf_puts(b, "+Inf");
        buf_puts(b, "\"} ");
        put_value(b, TW_METRIC_COUNTER, i < h->nbounds ? cum : (cum > count ? cum : count));
        buf_putc(b, '\n');
    }
    buf_put(b, f->name, f->name_len);
    buf_puts(b, "_sum");
    buf_put(b, s->block, s->block_len);
    buf_putc(b, ' ');
    put_fixed_or_int(b, tw_cell_get(&h->sum), f->decimals);
    buf_putc(b, '\n');
    buf_put(b, f->name, f->name_len);
    buf_puts(b, "_count");
    buf_put(b, s->block, s->block_len);
    buf_putc(b, ' ');
    put_value(b, TW_METRIC_COUNTER, cum > count ? cum : count);
    buf_putc(b, '\n');
}

/* The returned buffer is also NUL-terminated (not counted in *len), which
 * lets tests and debug code treat it as a string. */
char *tw_metrics_render(tw_metrics_t *m, size_t *len)
{
    buf_t b = {0};
    pthread_mutex_lock(&m->lock);
    /* The bound is exact for the worst case, so the buffer never grows
     * below; the +1 is the terminating NUL. */
    buf_reserve(&b, m->render_bound + 1);
    for (const tw_family_t *f = m->head; f; f = f->next) {
        buf_put(&b, f->header, f->header_len);
        for (const series_t *s = f->head; s; s = s->next) {
            if (s->hist) {
                put_hist(&b, f, s);
                continue;
            }
            buf_put(&b, f->name, f->name_len);
            buf_put(&b, s->block, s->block_len);
            buf_putc(&b, ' ');
            if (f->decimals)
                put_fixed(&b, tw_cell_get(&s->cell), f->decimals);
            else
                put_value(&b, f->type, tw_cell_get(&s->cell));
            buf_putc(&b, '\n');
        }
    }
    pthread_mutex_unlock(&m->lock);
    buf_putc(&b, '\0');
    if (len)
        *len = b.len - 1;
    return b.p;
}
