/*
 * linebuf.h — block reads from a file descriptor and in-place line splitting.
 *
 * The buffer holds at most max_line + block bytes. Lines are found with
 * memchr and returned as pointers into the buffer (valid until the next
 * fill). A trailing '\r' is stripped. A partial last line stays pending until
 * its newline arrives. A line longer than max_line bytes (without its
 * newline) is dropped as it streams past, never split: it is reported once,
 * as TW_LINE_TOO_LONG, when its newline is finally seen.
 *
 * Offsets: tw_linebuf_consumed() counts the bytes of whole lines handed out
 * or skipped since creation/reset, i.e. the file offset of the first byte not
 * yet accounted for is base + consumed. While a too-long line is being
 * dropped, consumed stays at that line's start, so a restart from a saved
 * offset re-reads and re-skips the whole line instead of starting mid-line.
 *
 * Not thread-safe; one linebuf per open file.
 */
#ifndef TW_LINEBUF_H
#define TW_LINEBUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct tw_linebuf tw_linebuf_t;

typedef enum {
    TW_LINE_NONE = 0,      /* no complete line buffered: fill again */
    TW_LINE_OK = 1,        /* *line, *len set */
    TW_LINE_TOO_LONG = 2,  /* an over-long line ended here and was dropped */
} tw_line_status_t;

#define TW_LINEBUF_DEFAULT_MAX_LINE (64 * 1024)
#define TW_LINEBUF_DEFAULT_BLOCK (256 * 1024)

tw_linebuf_t *tw_linebuf_new(size_t max_line, size_t block);
void tw_linebuf_free(tw_linebuf_t *lb);   /* NULL-safe */

/* One read(2) of up to `block` bytes (or less if the buffer is fuller).
 * Returns bytes read, 0 at EOF, -1 on error with errno set (EINTR retried). */
ssize_t tw_linebuf_fill(tw_linebuf_t *lb, int fd);

/* Hands out the next complete line, if any. */
tw_line_status_t tw_linebuf_next(tw_linebuf_t *lb, const char **line, size_t *len);

/* Bytes accounted for as whole (or skipped) lines since creation/reset. */
uint64_t tw_linebuf_consumed(const tw_linebuf_t *lb);
/* Bytes read but not yet part of a complete line (includes bytes of an
 * over-long line being dropped). */
uint64_t tw_linebuf_pending(const tw_linebuf_t *lb);

/* Drops all buffered bytes and zeroes the counters (after truncation or when
 * switching to another file). */
void tw_linebuf_reset(tw_linebuf_t *lb);

#endif
