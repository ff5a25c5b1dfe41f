/*
 * check.c — `tokenwatch check`: validates the config, its formats and
 * patterns exactly as a start would; with --sample, shows how a log's lines
 * parse (like fail2ban-regex). Line text is never printed: it may hold
 * tokens. Failures are reported by line number, reason and field.
 */
#include "cli.h"
#include "config.h"
#include "geo.h"
#include "linebuf.h"
#include "pipeline.h"
#include "timeparse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SHOWN 10

typedef struct sample_counts {
    unsigned long long lines, matched, rejected, ignored, unmatched, skipped, shown;
} sample_counts_t;

static void show_match(unsigned long long lineno, const tw_event_t *ev)
{
    char hint[32], when[40];
    tw_token_hint(ev->token, hint, sizeof hint);
    tw_time_format_rfc3339(ev->time_ns, when, sizeof when);
    printf("first match, line %llu: time=%s ip=%.*s token=%s", lineno, when,
           (int)ev->ip.n, ev->ip.p, hint);
    if (ev->user.n)
        printf(" user=%.*s", (int)ev->user.n, ev->user.p);
    printf(" rejected=%s\n", ev->rejected ? "yes" : "no");
}

static int run_sample(const tw_config_t *c, const tw_cli_t *cli)
{
    const tw_format_t *f = NULL;
    if (cli->format) {
        f = tw_formats_find(c->formats, cli->format);
        if (!f) {
            fprintf(stderr, "tokenwatch: --format %s: no such format in %s\n", cli->format,
                    c->formats_dir);
            return TW_EXIT_USAGE;
        }
    } else if (cli->input) {
        const tw_input_conf_t *ic = tw_config_input(c, cli->input);
        if (!ic) {
            fprintf(stderr, "tokenwatch: --input %s: no such input in %s\n", cli->input,
                    c->file);
            return TW_EXIT_USAGE;
        }
        f = ic->format;
    } else if (c->ninputs > 0) {
        f = c->inputs[0].format;
    } else {
        fprintf(stderr, "tokenwatch: --sample: the config has no inputs; name a format "
                        "with --format\n");
        return TW_EXIT_USAGE;
    }
    int fd = open(cli->sample, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "tokenwatch: %s: cannot open: %s\n", cli->sample, strerror(errno));
        return TW_EXIT_FAILURE;
    }
    printf("sample %s with format %s:\n", cli->sample, tw_format_name(f));
    tw_parser_t *p = tw_parser_new(f);
    tw_linebuf_t *lb = tw_linebuf_new(c->follow.max_line, c->follow.block);
    sample_counts_t n = {0};
    bool shown_match = false;
    int64_t ref = tw_now_ns();
    ssize_t r;
    while ((r = tw_linebuf_fill(lb, fd)) > 0) {
        const char *line;
        size_t len;
        tw_line_status_t st;
        while ((st = tw_linebuf_next(lb, &line, &len)) != TW_LINE_NONE) {
            n.lines++;
            if (st == TW_LINE_TOO_LONG) {
                n.skipped++;
                if (n.shown++ < MAX_SHOWN)
                    printf("  line %llu: too_long (over %zu bytes)\n", n.lines,
                           c->follow.max_line);
                continue;
            }
            if (tw_line_is_blank(line, len)) {
                n.skipped++;
                continue;
            }
            tw_event_t ev;
            switch (tw_parser_parse(p, line, len, ref, &ev)) {
            case TW_PARSE_OK:
                n.matched++;
                n.rejected += ev.rejected;
                if (!shown_match) {
                    show_match(n.lines, &ev);
                    shown_match = true;
                }
                break;
            case TW_PARSE_IGNORED:
                n.ignored++;
                break;
            case TW_PARSE_ERROR:
                n.unmatched++;
                if (n.shown++ < MAX_SHOWN) {
                    if (ev.error_field)
                        printf("  line %llu: %s (%s)\n", n.lines,
                               tw_parse_error_name(ev.error), ev.error_field);
                    else
                        printf("  line %llu: %s\n", n.lines, tw_parse_error_name(ev.error));
                }
                break;
            }
        }
    }
    int rc = TW_EXIT_OK;
    if (r < 0) {
        fprintf(stderr, "tokenwatch: %s: read failed: %s\n", cli->sample, strerror(errno));
        rc = TW_EXIT_FAILURE;
    } else if (tw_linebuf_pending(lb) > 0) {
        n.skipped++;
        printf("  the last line has no newline; the follower waits for it\n");
    }
    if (n.shown > MAX_SHOWN)
        printf("  (%llu more problem lines not shown)\n", n.shown - MAX_SHOWN);
    printf("sample: lines=%llu matched=%llu rejected=%llu ignored=%llu unmatched=%llu "
           "skipped=%llu\n",
           n.lines, n.matched, n.rejected, n.ignored, n.unmatched, n.skipped);
    tw_linebuf_free(lb);
    tw_parser_free(p);
    close(fd);
    return rc;
}

int tw_cmd_check(const tw_cli_t *cli)
{
    if (cli->nargs > 0) {
        fprintf(stderr, "tokenwatch: check takes no arguments (got \"%s\"); use --sample LOG\n",
                cli->args[0]);
        return TW_EXIT_USAGE;
    }
    tw_config_t *c = tw_cli_load_config(cli);
    if (!c)
        return TW_EXIT_USAGE;
    /* A start opens the GeoIP databases: so does check (a truncated or
     * wrong-type database must fail here, not at the next restart). */
    if (c->has_geoip) {
        tw_geo_t *g;
        tw_err_t err;
        if (tw_geo_open(&g, c->geo_city_db, c->geo_asn_db, 0, &err) != 0) {
            fprintf(stderr, "tokenwatch: %s: geoip: %s\n", c->file, err.msg);
            tw_config_free(c);
            return TW_EXIT_USAGE;
        }
        tw_geo_close(g);
    }
    printf("config OK: %zu inputs, %zu formats (%s)\n", c->ninputs,
           tw_formats_count(c->formats), c->formats_dir);
    if (c->ninputs == 0)
        printf("note: no inputs: replay and check --sample work, but run needs at least "
               "one input\n");
    int rc = cli->sample ? run_sample(c, cli) : TW_EXIT_OK;
    tw_config_free(c);
    return rc;
}
