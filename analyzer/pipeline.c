/*
 * pipeline.c — see pipeline.h. tw_input_line() is the per-line hot path:
 * no allocation, no syscalls, and no locking (with a handoff queue, a lock
 * once per batch of a few thousand events, inside handoff.c).
 */
#include "pipeline.h"
#include "common.h"
#include "log.h"

#include <inttypes.h>
#include <stdlib.h>

struct tw_input {
    char *name;
    const tw_format_t *format;
    tw_parser_t *parser;
    int64_t ref_ns;
    int64_t future_ns;        /* 0: no guard (tw_input_set_future_limit) */
    tw_log_limit_t future_log;
    tw_input_stats_t stats;
    tw_event_t ev;
    tw_detect_t *det;         /* borrowed, may be NULL */
    tw_handoff_t *handoff;    /* borrowed, may be NULL ("threads": 2) */
    tw_detect_t *enrich;      /* borrowed, may be NULL: tw_detect_enrich() before push */

    /* Metric cells, NULL when there is no registry. */
    tw_cell_t *c_check, *c_rejected, *c_lines, *c_lag;
    tw_cell_t *c_perr[TW_PERR__COUNT];
    tw_cell_t *c_skip[TW_SKIPR__COUNT];
    tw_cell_t *c_rot[TW_ROTATE__COUNT];
    tw_cell_t *c_ioerr[TW_TAIL_ERR__COUNT];
    tw_cell_t *c_future;
};

static const char *const skip_names[TW_SKIPR__COUNT] = {"too_long", "partial", "blank",
                                                        "filtered"};

const char *tw_skip_reason_name(tw_skip_reason_t r)
{
    return (unsigned)r < TW_SKIPR__COUNT ? skip_names[r] : "unknown";
}

static tw_cell_t *cell1(tw_metrics_t *m, const char *name, const char *help,
                        tw_metric_type_t type, const char *input)
{
    static const char *const labels[] = {"input"};
    tw_family_t *f = tw_metrics_family(m, name, help, type, 1, labels);
    const char *values[] = {input};
    return tw_family_cell(f, values);
}

static tw_cell_t *cell2(tw_metrics_t *m, const char *name, const char *help,
                        const char *label2, const char *input, const char *value2)
{
    const char *labels[] = {"input", label2};
    tw_family_t *f = tw_metrics_family(m, name, help, TW_METRIC_COUNTER, 2, labels);
    const char *values[] = {input, value2};
    return tw_family_cell(f, values);
}

static void register_metrics(tw_input_t *in, tw_metrics_t *m)
{
    const char *n = in->name;
    in->c_check = cell1(m, "auth_token_check",
                        "Authentication checks parsed from the input's log.",
                        TW_METRIC_COUNTER, n);
    in->c_rejected = cell1(m, "auth_token_rejected",
                           "Authentication checks that the log reports as rejected.",
                           TW_METRIC_COUNTER, n);
    in->c_lines = cell1(m, "tokenwatch_lines_total",
                        "Complete lines read from the input, whatever became of them.",
                        TW_METRIC_COUNTER, n);
    for (int r = 0; r < TW_PERR__COUNT; r++)
        in->c_perr[r] = cell2(m, "tokenwatch_parse_errors_total",
                              "Lines that did not parse as an auth event, by reason.",
                              "reason", n, tw_parse_error_name((tw_parse_error_t)r));
    for (int r = 0; r < TW_SKIPR__COUNT; r++)
        in->c_skip[r] = cell2(m, "tokenwatch_lines_skipped_total",
                              "Lines skipped without parsing or ignored by the format, "
                              "by reason.",
                              "reason", n, skip_names[r]);
    for (int k = 0; k < TW_ROTATE__COUNT; k++)
        in->c_rot[k] = cell2(m, "tokenwatch_rotations_total",
                             "Rotations of the input's file seen, by kind.", "kind", n,
                             tw_rotation_name((tw_rotation_t)k));
    for (int k = 0; k < TW_TAIL_ERR__COUNT; k++)
        in->c_ioerr[k] = cell2(m, "tokenwatch_input_errors_total",
                               "Failures to open, stat or read the input's file (retried at "
                               "every poll: an unreadable file counts up until it is fixed).",
                               "reason", n, tw_tail_error_name((tw_tail_error_t)k));
    in->c_future = cell1(m, "tokenwatch_future_stamps_total",
                         "Checks stamped more than 15 minutes ahead of the daemon's clock: "
                         "counted in auth_token_check, not judged by detection.",
                         TW_METRIC_COUNTER, n);
    in->c_lag = cell1(m, "tokenwatch_input_lag_bytes",
                      "Bytes written to the input's files but not read yet.",
                      TW_METRIC_GAUGE, n);
}

tw_input_t *tw_input_new(const char *name, const tw_format_t *fmt, tw_metrics_t *m)
{
    tw_input_t *in = tw_xcalloc(1, sizeof *in);
    in->name = tw_xstrdup(name);
    in->format = fmt;
    in->parser = tw_parser_new(fmt);
    in->ref_ns = tw_now_ns();
    if (m)
        register_metrics(in, m);
    return in;
}

void tw_input_free(tw_input_t *in)
{
    if (!in)
        return;
    tw_parser_free(in->parser);
    free(in->name);
    free(in);
}

const char *tw_input_name(const tw_input_t *in) { return in->name; }

void tw_input_set_format(tw_input_t *in, const tw_format_t *fmt)
{
    tw_parser_t *p = tw_parser_new(fmt);
    tw_parser_free(in->parser);
    in->parser = p;
    in->format = fmt;
}

void tw_input_set_detector(tw_input_t *in, tw_detect_t *det) { in->det = det; }

void tw_input_set_handoff(tw_input_t *in, tw_handoff_t *h, tw_detect_t *enrich)
{
    in->handoff = h;
    in->enrich = h ? enrich : NULL;
}

void tw_input_set_ref_time(tw_input_t *in, int64_t ref_ns) { in->ref_ns = ref_ns; }

void tw_input_set_future_limit(tw_input_t *in, int64_t ahead_ns) { in->future_ns = ahead_ns; }

tw_input_stats_t *tw_input_stats(tw_input_t *in) { return &in->stats; }

bool tw_line_is_blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t')
            return false;
    return true;
}

void tw_input_line(tw_input_t *in, const char *line, size_t len)
{
    in->stats.lines++;
    if (tw_line_is_blank(line, len)) {
        in->stats.skipped[TW_SKIPR_BLANK]++;
        return;
    }
    switch (tw_parser_parse(in->parser, line, len, in->ref_ns, &in->ev)) {
    case TW_PARSE_OK:
        in->stats.checks++;
        in->stats.rejected += in->ev.rejected;
        if (in->future_ns > 0 && in->ev.time_ns - in->ref_ns > in->future_ns) {
            in->stats.future++;   /* counted above, never judged */
            tw_log_limited(&in->future_log, TW_LOG_WARN,
                           "input %s: a check stamped %.0f s ahead of this host's clock is not "
                           "judged (%" PRIu64 " so far; check the producer's clock)",
                           in->name, (double)(in->ev.time_ns - in->ref_ns) / 1e9,
                           in->stats.future);
            break;
        }
        if (in->det) {
            tw_detect_push(in->det, in->name, &in->ev, line, len);
        } else if (in->handoff) {
            tw_detect_pre_t pre;
            bool enrich = in->enrich && tw_handoff_reader_enrich(in->handoff);
            if (enrich)
                tw_detect_enrich(in->enrich, &in->ev, tw_handoff_reader_geo(in->handoff), &pre);
            tw_handoff_push(in->handoff, in->name, &in->ev, enrich ? &pre : NULL);
        }
        break;
    case TW_PARSE_IGNORED:
        in->stats.skipped[TW_SKIPR_FILTERED]++;
        break;
    case TW_PARSE_ERROR:
        if ((unsigned)in->ev.error < TW_PERR__COUNT)
            in->stats.parse_errors[in->ev.error]++;
        break;
    }
}

static void batch_get(void *ctx, size_t i, const char **input, tw_event_t *ev,
                      const tw_detect_pre_t **pre)
{
    tw_handoff_batch_get(ctx, i, input, ev, pre);
}

void tw_input_detect_batch(tw_detect_t *det, const tw_handoff_batch_t *b)
{
    tw_detect_events(det, tw_handoff_batch_len(b), batch_get, (void *)b);
}

void tw_input_publish(tw_input_t *in, uint64_t lag_bytes)
{
    if (!in->c_check)
        return;
    const tw_input_stats_t *s = &in->stats;
    tw_cell_set(in->c_check, s->checks);
    tw_cell_set(in->c_rejected, s->rejected);
    tw_cell_set(in->c_lines, s->lines);
    for (int r = 0; r < TW_PERR__COUNT; r++)
        tw_cell_set(in->c_perr[r], s->parse_errors[r]);
    for (int r = 0; r < TW_SKIPR__COUNT; r++)
        tw_cell_set(in->c_skip[r], s->skipped[r]);
    for (int k = 0; k < TW_ROTATE__COUNT; k++)
        tw_cell_set(in->c_rot[k], s->rotations[k]);
    for (int k = 0; k < TW_TAIL_ERR__COUNT; k++)
        tw_cell_set(in->c_ioerr[k], s->io_errors[k]);
    tw_cell_set(in->c_future, s->future);
    tw_cell_set_gauge(in->c_lag, (int64_t)lag_bytes);
}

static void on_line(void *ctx, const char *line, size_t len)
{
    tw_input_line(ctx, line, len);
}

static void on_skip(void *ctx, tw_skip_t reason)
{
    tw_input_t *in = ctx;
    /* An over-long line is a complete line; a dropped partial tail is not. */
    if (reason == TW_SKIP_TOO_LONG) {
        in->stats.lines++;
        in->stats.skipped[TW_SKIPR_TOO_LONG]++;
    } else {
        in->stats.skipped[TW_SKIPR_PARTIAL]++;
    }
}

void tw_input_lines_done(tw_input_t *in)
{
    if (in->det)
        tw_detect_flush(in->det);   /* it may borrow the lines' bytes */
}

static void on_lines_done(void *ctx)
{
    tw_input_lines_done(ctx);
}

static void on_rotate(void *ctx, tw_rotation_t kind)
{
    tw_input_t *in = ctx;
    if ((unsigned)kind < TW_ROTATE__COUNT)
        in->stats.rotations[kind]++;
}

static void on_error(void *ctx, tw_tail_error_t kind)
{
    tw_input_t *in = ctx;
    if ((unsigned)kind < TW_TAIL_ERR__COUNT)
        in->stats.io_errors[kind]++;
}

const tw_tail_handler_t tw_input_tail_handler = {
    .on_line = on_line,
    .on_skip = on_skip,
    .on_rotate = on_rotate,
    .on_error = on_error,
    .on_lines_done = on_lines_done,
};
