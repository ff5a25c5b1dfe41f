/*
 * timeparse.h — allocation-free timestamp parsing for log lines.
 *
 * Results are nanoseconds since the Unix epoch (UTC). All functions are pure
 * and thread-safe (RFC 3339 parsing keeps a per-thread cache of the last
 * date and minute it read, which changes no result); none calls
 * strptime/mktime or touches the locale or TZ.
 */
#ifndef TW_TIMEPARSE_H
#define TW_TIMEPARSE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    TW_TIME_AUTO = 0,   /* try rfc3339, then epoch (s or ms by magnitude), then syslog */
    TW_TIME_RFC3339,    /* 2026-11-29T07:57:53Z, .123456789 fraction, Z or ±hh:mm / ±hhmm;
                           a space instead of 'T' is accepted */
    TW_TIME_EPOCH,      /* seconds, optional fraction: 1764403073 or 1764403073.25 */
    TW_TIME_EPOCH_MS,   /* milliseconds, optional fraction */
    TW_TIME_SYSLOG,     /* "Nov 29 07:57:53" or "Nov  9 07:57:53" (RFC 3164), UTC */
} tw_time_format_t;

/* Parses "auto", "rfc3339", "epoch", "epoch_ms", "syslog"; -1 if unknown. */
int tw_time_format_parse(const char *name);
const char *tw_time_format_name(tw_time_format_t f);

/*
 * Parses s[0..n) (surrounding spaces not allowed) into *out_ns.
 * ref_ns is "now" for syslog stamps, which carry no year: the year is that of
 * ref_ns, or the previous one if that would put the stamp more than one day
 * after ref_ns (a log never comes from the future; Dec 31 read on Jan 1).
 * Returns 0, or -1 if the text is not a valid time in that format (including
 * out-of-range fields such as month 13, Feb 30, hour 24 or offset > 23:59).
 */
int tw_time_parse(tw_time_format_t fmt, const char *s, size_t n, int64_t ref_ns,
                  int64_t *out_ns);

/* Days since 1970-01-01 for a proleptic Gregorian civil date. */
int64_t tw_days_from_civil(int64_t y, unsigned m, unsigned d);

/* Formats ns as RFC 3339 UTC with second precision ("2026-11-29T07:57:53Z")
 * into buf (at least 21 bytes). Returns buf. */
char *tw_time_format_rfc3339(int64_t ns, char *buf, size_t cap);

#endif
