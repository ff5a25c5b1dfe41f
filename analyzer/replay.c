/*
 * replay.c — `tokenwatch replay`: reads whole log files from the start, in
 * big blocks, through the same line handler as the daemon, prints anomaly
 * events as JSON lines on stdout and a summary on stderr. Event times come
 * from the lines themselves and the token-id key from state_dir, so the
 * same input gives byte-identical stdout on every run.
 *
 * With detection on and "threads": 2 (the default), this thread reads,
 * parses and counts, and an analysis thread runs the detector on the checks
 * handed over in batches (handoff.h). One FIFO queue and one consumer keep
 * the events in line order, so stdout is byte-identical to the one-thread
 * run. The analysis thread owns the detector, the GeoIP handle and stdout
 * until it is joined; the queue is drained before each file's input is
 * freed (the events carry its name). Without detection (--no-detect, no
 * rules) there is nothing to hand over and one thread does everything.
 */
#include "cli.h"
#include "config.h"
#include "linebuf.h"
#include "log.h"
#include "pipeline.h"
#include "state.h"
#include "tokenid.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Chooses the format for one file: --format, else the input whose path is
 * this file, else the only format the config's inputs use. */
static const tw_format_t *pick_format(const tw_config_t *c, const tw_cli_t *cli,
                                      const char *file, const char **input_name)
{
    *input_name = NULL;
    if (cli->format) {
        const tw_format_t *f = tw_formats_find(c->formats, cli->format);
        if (!f)
            fprintf(stderr, "tokenwatch: --format %s: no such format in %s\n", cli->format,
                    c->formats_dir);
        return f;
    }
    char *want = realpath(file, NULL);
    for (size_t i = 0; want && i < c->ninputs; i++) {
        char *have = realpath(c->inputs[i].path, NULL);
        bool same = have && strcmp(have, want) == 0;
        free(have);
        if (same) {
            *input_name = c->inputs[i].name;
            free(want);
            return c->inputs[i].format;
        }
    }
    free(want);
    const tw_format_t *only = NULL;
    for (size_t i = 0; i < c->ninputs; i++) {
        if (only && only != c->inputs[i].format) {
            only = NULL;
            break;
        }
        only = c->inputs[i].format;
    }
    if (!only)
        fprintf(stderr,
                "tokenwatch: %s: cannot tell its format (no input follows it and the config "
                "uses %s); name one with --format\n",
                file, c->ninputs ? "several formats" : "no format");
    return only;
}

/* Feeds one file through in; returns bytes read or -1. */
static long long replay_file(const char *file, tw_input_t *in, const tw_config_t *c)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "tokenwatch: %s: cannot open: %s\n", file, strerror(errno));
        return -1;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    tw_linebuf_t *lb = tw_linebuf_new(c->follow.max_line, c->follow.block);
    long long total = 0;
    for (;;) {
        ssize_t r = tw_linebuf_fill(lb, fd);
        if (r < 0) {
            fprintf(stderr, "tokenwatch: %s: read failed: %s\n", file, strerror(errno));
            total = -1;
            break;
        }
        if (r == 0) {
            /* A replayed file is complete: an unterminated last line is
             * counted as skipped, exactly as the follower would at rotation. */
            if (tw_linebuf_pending(lb) > 0)
                tw_input_tail_handler.on_skip(in, TW_SKIP_PARTIAL);
            break;
        }
        total += r;
        const char *line;
        size_t len;
        tw_line_status_t st;
        while ((st = tw_linebuf_next(lb, &line, &len)) != TW_LINE_NONE) {
            if (st == TW_LINE_OK)
                tw_input_line(in, line, len);
            else
                tw_input_tail_handler.on_skip(in, TW_SKIP_TOO_LONG);
        }
        tw_input_lines_done(in);   /* before the next fill overwrites them */
    }
    tw_linebuf_free(lb);
    close(fd);
    return total;
}

static void to_stdout(void *ctx, const tw_anomaly_t *a)
{
    (void)ctx;
    fwrite(a->line, 1, a->len, stdout);
}

/* Detection for replay: the key from state_dir, GeoIP when configured;
 * with two threads, the queue and the analysis thread. */
typedef struct replay_det {
    tw_tokenid_t *key;
    tw_geo_t *geo;
    tw_detect_t *det;
    tw_handoff_t *ho;          /* NULL: detection (if any) on this thread */
    pthread_t analysis;
    int64_t reader_cpu0;       /* this thread's CPU time when the analysis began */
    int64_t reader_cpu_ns, analysis_cpu_ns;   /* each thread's CPU time, at the end */
    tw_handoff_stats_t hs;
} replay_det_t;

/* The analysis thread: every batch, in order, until the reader closes. */
static void *analysis_main(void *arg)
{
    replay_det_t *rd = arg;
    tw_handoff_batch_t *b;
    while ((b = tw_handoff_next(rd->ho))) {
        tw_input_detect_batch(rd->det, b);
        tw_handoff_release(rd->ho, b);
    }
    rd->analysis_cpu_ns = tw_thread_cpu_ns();
    return NULL;
}

/* Starts the analysis thread when the config asks for two threads. */
static void replay_threads_start(replay_det_t *rd, const tw_config_t *c)
{
    if (!rd->det || c->threads < 2)
        return;
    rd->ho = tw_handoff_new(0, 0, 0);
    rd->reader_cpu0 = tw_thread_cpu_ns();
    int e = pthread_create(&rd->analysis, NULL, analysis_main, rd);
    if (e != 0) {
        tw_warn("cannot start the analysis thread (%s): detecting on one thread",
                strerror(e));
        tw_handoff_free(rd->ho);
        rd->ho = NULL;
        return;
    }
    pthread_setname_np(rd->analysis, "tw-analysis");   /* top -H, perf */
}

/* Closes the queue and joins the analysis thread: afterwards every check
 * has been through the detector and stdout has every anomaly. */
static void replay_threads_stop(replay_det_t *rd)
{
    if (!rd->ho)
        return;
    tw_handoff_close(rd->ho);
    rd->reader_cpu_ns = tw_thread_cpu_ns() - rd->reader_cpu0;
    pthread_join(rd->analysis, NULL);
    tw_handoff_stats(rd->ho, &rd->hs);
    tw_handoff_free(rd->ho);
    rd->ho = NULL;
}

static bool rules_use_geo(const tw_rules_t *r)
{
    for (size_t i = 0; i < r->nrules; i++)
        if (r->rules[i].kind == TW_KIND_GEO_VELOCITY || r->rules[i].kind == TW_KIND_GEO_NEW)
            return true;
    return false;
}

static int replay_det_open(replay_det_t *rd, const tw_config_t *c, bool no_detect)
{
    memset(rd, 0, sizeof *rd);
    if (no_detect)
        return 0;   /* parse and count only (--no-detect) */
    if (!c->rules) {
        if (c->rules_missing)
            tw_warn("rules file %s not found: detection is off (set \"rules_file\")",
                    c->rules_file);
        return 0;
    }
    tw_err_t err;
    if (tw_state_prepare_dir(c->state_dir, &err) != 0 ||
        tw_tokenid_open(&rd->key, c->state_dir, &err) != 0) {
        fprintf(stderr, "tokenwatch: %s\n", err.msg);
        return -1;
    }
    if (c->has_geoip) {
        if (tw_geo_open(&rd->geo, c->geo_city_db, c->geo_asn_db, c->geo_cache_entries, &err) != 0) {
            fprintf(stderr, "tokenwatch: %s\n", err.msg);
            return -1;
        }
    } else if (rules_use_geo(c->rules)) {
        tw_warn("%s has no \"geoip\" section: the geo rules are disabled", c->file);
    }
    tw_detect_opts_t o = {
        .rules = c->rules,
        .geo = rd->geo,
        .key = rd->key,
        .max_tokens = c->max_tokens,
        .sink = to_stdout,
    };
    rd->det = tw_detect_new(&o);
    return 0;
}

static void replay_det_close(replay_det_t *rd)
{
    replay_threads_stop(rd);
    tw_detect_free(rd->det);
    tw_geo_close(rd->geo);
    tw_tokenid_free(rd->key);
}

int tw_cmd_replay(const tw_cli_t *cli)
{
    if (cli->nargs == 0) {
        fprintf(stderr, "tokenwatch: replay needs at least one LOG file; see --help\n");
        return TW_EXIT_USAGE;
    }
    tw_config_t *c = tw_cli_load_config(cli);
    if (!c)
        return TW_EXIT_USAGE;
    replay_det_t rd;
    if (replay_det_open(&rd, c, cli->no_detect) != 0) {
        replay_det_close(&rd);
        tw_config_free(c);
        return TW_EXIT_FAILURE;
    }
    tw_input_stats_t sum = {0};
    long long bytes = 0;
    int rc = TW_EXIT_OK;
    int64_t t0 = tw_mono_ns();
    replay_threads_start(&rd, c);
    for (int i = 0; i < cli->nargs && rc == TW_EXIT_OK; i++) {
        const char *name;
        const tw_format_t *f = pick_format(c, cli, cli->args[i], &name);
        if (!f) {
            rc = TW_EXIT_USAGE;
            break;
        }
        tw_input_t *in = tw_input_new(name ? name : "replay", f, NULL);
        if (rd.ho)
            tw_input_set_handoff(in, rd.ho, rd.det);
        else
            tw_input_set_detector(in, rd.det);
        long long n = replay_file(cli->args[i], in, c);
        if (rd.ho)
            tw_handoff_drain(rd.ho);   /* its events carry its name */
        else if (rd.det)
            tw_detect_flush(rd.det);
        if (n < 0) {
            rc = TW_EXIT_FAILURE;
        } else {
            bytes += n;
            const tw_input_stats_t *s = tw_input_stats(in);
            sum.lines += s->lines;
            sum.checks += s->checks;
            sum.rejected += s->rejected;
            for (int r = 0; r < TW_PERR__COUNT; r++)
                sum.parse_errors[r] += s->parse_errors[r];
            for (int r = 0; r < TW_SKIPR__COUNT; r++)
                sum.skipped[r] += s->skipped[r];
        }
        tw_input_free(in);
    }
    bool threaded = rd.ho != NULL;
    replay_threads_stop(&rd);   /* the rate includes the analysis thread's tail */
    double secs = (double)(tw_mono_ns() - t0) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    uint64_t perr = 0, skipped = 0;
    for (int r = 0; r < TW_PERR__COUNT; r++)
        perr += sum.parse_errors[r];
    for (int r = 0; r < TW_SKIPR__COUNT; r++)
        if (r != TW_SKIPR_FILTERED)
            skipped += sum.skipped[r];
    fflush(stdout);
    fprintf(stderr,
            "replay: lines=%llu checks=%llu rejected=%llu ignored=%llu parse_errors=%llu "
            "skipped=%llu seconds=%.3f lines_per_s=%.0f mb_per_s=%.1f\n",
            (unsigned long long)sum.lines, (unsigned long long)sum.checks,
            (unsigned long long)sum.rejected,
            (unsigned long long)sum.skipped[TW_SKIPR_FILTERED], (unsigned long long)perr,
            (unsigned long long)skipped, secs, (double)sum.lines / secs,
            (double)bytes / secs / 1e6);
    if (rd.det) {
        tw_detect_stats_t ds;
        tw_detect_stats(rd.det, &ds);
        fprintf(stderr,
                "detect: events=%llu anomalies=%llu tokens=%llu flagged=%llu evicted=%llu "
                "principals=%llu memory_mb=%.1f\n",
                (unsigned long long)ds.events, (unsigned long long)ds.anomalies,
                (unsigned long long)ds.tokens_tracked, (unsigned long long)ds.tokens_flagged,
                (unsigned long long)ds.tokens_evicted,
                (unsigned long long)ds.principals_tracked, (double)ds.memory_bytes / 1048576.0);
    }
    if (threaded) {
        /* Where the time went: the busier thread bounds the rate; a reader
         * that waits for free batches means detection is the bottleneck. */
        fprintf(stderr,
                "threads: 2 reader_cpu_s=%.3f analysis_cpu_s=%.3f batches=%llu big_batches=%llu "
                "reader_waits=%llu analysis_waits=%llu geo_moves=%llu enrich_moves=%llu\n",
                (double)rd.reader_cpu_ns / 1e9, (double)rd.analysis_cpu_ns / 1e9,
                (unsigned long long)rd.hs.batches, (unsigned long long)rd.hs.big_batches,
                (unsigned long long)rd.hs.producer_waits,
                (unsigned long long)rd.hs.consumer_waits, (unsigned long long)rd.hs.geo_moves,
                (unsigned long long)rd.hs.enrich_moves);
    }
    replay_det_close(&rd);
    tw_config_free(c);
    return rc;
}
