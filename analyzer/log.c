/*
 * log.c — see log.h. Records are built in a stack buffer and written with a
 * single write(2) so that concurrent threads never interleave within a line.
 */
#include "log.h"
#include "common.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int min_level = TW_LOG_INFO;
static _Atomic int log_format = TW_LOG_PLAIN;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Under systemd (JOURNAL_STREAM names our stderr), plain records start with
 * an sd-daemon "<N>" priority so `journalctl -p err` filters by level, and
 * drop the program name that the journal already records. */
static _Atomic int journald;

void tw_log_setup(tw_log_level_t lvl, tw_log_format_t fmt)
{
    atomic_store(&min_level, (int)lvl);
    atomic_store(&log_format, (int)fmt);
    const char *js = getenv("JOURNAL_STREAM");
    atomic_store(&journald, js != NULL && js[0] != '\0');
}

bool tw_log_enabled(tw_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

int tw_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return TW_LOG_WARN;
    return -1;
}

/* Appends s to buf as JSON string content. */
static size_t json_escape(char *buf, size_t cap, size_t pos, const char *s)
{
    for (; *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)c;
        } else if (c < 0x20) {
            pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
        } else {
            buf[pos++] = (char)c;
        }
    }
    return pos;
}

__attribute__((format(printf, 2, 0)))
static void vwrite_record(tw_log_level_t level, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* One record is one line whatever the message contains. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';

    char out[4096];
    size_t n;
    if (atomic_load_explicit(&log_format, memory_order_relaxed) == TW_LOG_JSON) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        n = (size_t)snprintf(out, sizeof out,
                             "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\","
                             "\"level\":\"%s\",\"msg\":\"",
                             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                             level_names[level]);
        n = json_escape(out, sizeof out, n, msg);
        n += (size_t)snprintf(out + n, sizeof out - n, "\"}\n");
    } else {
        /* Plain: "tokenwatch: <level>: message"; journald adds its own
         * timestamp. Syslog priorities: debug 7, info 6, warning 4, err 3. */
        static const int prio[] = {7, 6, 4, 3};
        if (atomic_load_explicit(&journald, memory_order_relaxed))
            n = (size_t)snprintf(out, sizeof out, "<%d>%s: %s\n", prio[level],
                                 level_names[level], msg);
        else
            n = (size_t)snprintf(out, sizeof out, "tokenwatch: %s: %s\n",
                                 level_names[level], msg);
    }
    if (n >= sizeof out) {
        n = sizeof out - 1;
        out[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, out, n);
    (void)w;
}

void tw_log_write(tw_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwrite_record(level, fmt, ap);
    va_end(ap);
}

#define LIMIT_WINDOW_NS (10LL * 1000000000LL)
#define LIMIT_BURST 5

void tw_log_limited(tw_log_limit_t *lim, tw_log_level_t level, const char *fmt, ...)
{
    if (!tw_log_enabled(level))
        return;
    int64_t now = tw_mono_ns();
    if (now - lim->window_start_ns >= LIMIT_WINDOW_NS) {
        if (lim->suppressed > 0)
            tw_log_write(level, "(%llu similar messages suppressed in the last 10 s)",
                         (unsigned long long)lim->suppressed);
        lim->window_start_ns = now;
        lim->in_window = 0;
        lim->suppressed = 0;
    }
    if (lim->in_window >= LIMIT_BURST) {
        lim->suppressed++;
        return;
    }
    lim->in_window++;
    va_list ap;
    va_start(ap, fmt);
    vwrite_record(level, fmt, ap);
    va_end(ap);
}
