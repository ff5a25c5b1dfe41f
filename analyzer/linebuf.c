/*
 * linebuf.c — see linebuf.h.
 *
 * One buffer of cap = max_line + block bytes, allocated once:
 *
 *   buf[0 .. start)      lines already handed out (dead, reclaimed on fill)
 *   buf[start .. scan)   start of the pending line, known to hold no '\n'
 *   buf[scan .. end)     read but not yet searched for '\n'
 *   buf[end .. cap)      free
 *
 * Invariants:
 *   - consumed + pending == bytes read since creation/reset.
 *   - Once next() has returned TW_LINE_NONE outside a drop, the pending line
 *     is at most max_line bytes, so moving it to the front leaves at least
 *     `block` bytes free: every fill reads a whole block and a long line can
 *     never stall the input.
 *   - While an over-long line is being dropped, the buffer holds only the
 *     bytes of it read by the latest fill; earlier ones are discarded at once
 *     and only counted (dropped), so memory stays bounded however long the
 *     line is.
 *   - scan only saves re-searching bytes already known to hold no newline;
 *     it never changes what is returned.
 *
 * max_line counts the raw bytes before '\n', a '\r' included: a limit on
 * memory, not on the text after CR stripping.
 */
#include "linebuf.h"

#include "common.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tw_linebuf {
    char *buf;
    size_t cap;
    size_t block;
    size_t max_line;
    size_t start, scan, end;
    bool dropping;      /* inside an over-long line, waiting for its '\n' */
    uint64_t dropped;   /* bytes of that line already discarded */
    uint64_t consumed;
};

/* A zero size means "use the default", so a zeroed options struct works. */
tw_linebuf_t *tw_linebuf_new(size_t max_line, size_t block)
{
    if (max_line == 0)
        max_line = TW_LINEBUF_DEFAULT_MAX_LINE;
    if (block == 0)
        block = TW_LINEBUF_DEFAULT_BLOCK;
    if (max_line > SIZE_MAX - block)
        tw_die("linebuf: max_line %zu + block %zu overflows", max_line, block);
    tw_linebuf_t *lb = tw_xcalloc(1, sizeof *lb);
    lb->cap = max_line + block;
    lb->block = block;
    lb->max_line = max_line;
    lb->buf = tw_xmalloc(lb->cap);
    return lb;
}

void tw_linebuf_free(tw_linebuf_t *lb)
{
    if (!lb)
        return;
    free(lb->buf);
    free(lb);
}

/*
 * Fails with ENOBUFS only when the buffer is completely full, which happens
 * only if the caller fills repeatedly without draining next() in between;
 * nothing is lost then, the caller just has to take lines out first.
 */
ssize_t tw_linebuf_fill(tw_linebuf_t *lb, int fd)
{
    if (lb->start == lb->end) {
        lb->start = lb->scan = lb->end = 0;
    } else if (lb->start > 0 && lb->cap - lb->end < lb->block) {
        /* Rare: only when the tail of the buffer is reached, so the copy of
         * at most max_line bytes is amortised over a whole buffer of lines. */
        size_t n = lb->end - lb->start;
        memmove(lb->buf, lb->buf + lb->start, n);
        lb->scan -= lb->start;
        lb->end = n;
        lb->start = 0;
    }
    size_t room = lb->cap - lb->end;
    if (room == 0) {
        errno = ENOBUFS;
        return -1;
    }
    size_t want = room < lb->block ? room : lb->block;
    for (;;) {
        ssize_t r = read(fd, lb->buf + lb->end, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0)
            lb->end += (size_t)r;
        return r;
    }
}

tw_line_status_t tw_linebuf_next(tw_linebuf_t *lb, const char **line, size_t *len)
{
    *line = NULL;
    *len = 0;
    if (lb->dropping) {
        char *nl = memchr(lb->buf + lb->start, '\n', lb->end - lb->start);
        if (!nl) {
            lb->dropped += lb->end - lb->start;
            lb->start = lb->scan = lb->end = 0;
            return TW_LINE_NONE;
        }
        size_t n = (size_t)(nl - (lb->buf + lb->start));
        lb->consumed += lb->dropped + n + 1;
        lb->dropped = 0;
        lb->dropping = false;
        lb->start = lb->scan = lb->start + n + 1;
        return TW_LINE_TOO_LONG;
    }

    char *nl = memchr(lb->buf + lb->scan, '\n', lb->end - lb->scan);
    if (!nl) {
        if (lb->end - lb->start > lb->max_line) {
            /* Already too long without its newline: stop keeping it. consumed
             * stays at its first byte (see linebuf.h). */
            lb->dropping = true;
            lb->dropped = lb->end - lb->start;
            lb->start = lb->scan = lb->end = 0;
        } else {
            lb->scan = lb->end;
        }
        return TW_LINE_NONE;
    }

    const char *p = lb->buf + lb->start;
    size_t n = (size_t)(nl - p);
    lb->consumed += n + 1;
    lb->start = lb->scan = lb->start + n + 1;
    /* Whole line with its newline in one buffer, but still over the limit. */
    if (n > lb->max_line)
        return TW_LINE_TOO_LONG;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    *line = p;
    *len = n;
    return TW_LINE_OK;
}

uint64_t tw_linebuf_consumed(const tw_linebuf_t *lb)
{
    return lb->consumed;
}

uint64_t tw_linebuf_pending(const tw_linebuf_t *lb)
{
    return lb->dropped + (lb->end - lb->start);
}

void tw_linebuf_reset(tw_linebuf_t *lb)
{
    lb->start = lb->scan = lb->end = 0;
    lb->dropping = false;
    lb->dropped = 0;
    lb->consumed = 0;
}
