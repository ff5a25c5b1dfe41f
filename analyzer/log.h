/*
 * log.h — leveled logging to stderr, plain (journald-friendly) or JSON lines.
 *
 * The level is checked before any formatting, so disabled levels cost one
 * branch. tw_log_limited() rate-limits a message per call site key so that a
 * malformed line repeated a million times logs a handful of times (the exact
 * number lives in metrics). Thread-safe: one write(2) per record.
 * Never pass a raw token to these functions.
 */
#ifndef TW_LOG_H
#define TW_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    TW_LOG_DEBUG = 0,
    TW_LOG_INFO = 1,
    TW_LOG_WARN = 2,
    TW_LOG_ERROR = 3,
} tw_log_level_t;

typedef enum { TW_LOG_PLAIN = 0, TW_LOG_JSON = 1 } tw_log_format_t;

void tw_log_setup(tw_log_level_t min_level, tw_log_format_t format);
bool tw_log_enabled(tw_log_level_t level);
/* Parses "debug", "info", "warn", "error"; returns -1 if unknown. */
int tw_log_level_parse(const char *s);

void tw_log_write(tw_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A per-call-site rate limiter: at most `burst` records per 10 s window;
 * the first record after a suppressed run says how many were dropped. */
typedef struct tw_log_limit {
    int64_t window_start_ns;
    uint32_t in_window;
    uint64_t suppressed;
} tw_log_limit_t;

void tw_log_limited(tw_log_limit_t *lim, tw_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define tw_log(level, ...)                                                    \
    do {                                                                      \
        if (tw_log_enabled(level))                                            \
            tw_log_write(level, __VA_ARGS__);                                 \
    } while (0)
#define tw_debug(...) tw_log(TW_LOG_DEBUG, __VA_ARGS__)
#define tw_info(...) tw_log(TW_LOG_INFO, __VA_ARGS__)
#define tw_warn(...) tw_log(TW_LOG_WARN, __VA_ARGS__)
#define tw_error(...) tw_log(TW_LOG_ERROR, __VA_ARGS__)

#endif
