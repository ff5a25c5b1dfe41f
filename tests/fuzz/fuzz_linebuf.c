/*
 * fuzz_linebuf.c — libFuzzer target: tw_linebuf (block reads and in-place
 * line splitting) against a byte-at-a-time reference model.
 *
 * Input layout:
 *   bytes 0-1  max_line: 0 = the default (64 KiB), else 1 + v % 512
 *   bytes 2-3  block:    0 = the default (256 KiB), else 1 + v % 512
 *   then       the stream, from the front, and the schedule, two bytes per
 *              step taken from the back (so mutations of one rarely shift
 *              the other): step byte A sets how many stream bytes are
 *              written to the pipe next (1-128, or 8x that when A & 0x80),
 *              byte B what happens then: B % 16 == 0 resets the linebuf
 *              (after draining), B % 4 == 1 fills twice before draining
 *              (the second fill may meet a full buffer: ENOBUFS), else fill
 *              and drain until the pipe is empty. Without schedule bytes
 *              left, 64-byte steps.
 * Small max_line/block values (far below what the config allows) put every
 * boundary case — a line split over many fills, a line exactly max_line
 * long, a CR at a fill boundary, dropping a long line across fills — within
 * a few hundred bytes of input.
 *
 * The stream goes through a non-blocking pipe, so each read(2) returns
 * whatever the pipe holds up to the block size. Checks after every call:
 *  - every line handed out is exactly the model's next line: no '\n', at
 *    most max_line bytes, one trailing '\r' stripped; every TOO_LONG is the
 *    model's next over-long line; TW_LINE_NONE only when the model has no
 *    complete line waiting;
 *  - consumed == the model's count of whole-line bytes handed out or
 *    skipped, and consumed + pending == bytes read since creation/reset;
 *  - fill never stalls: ENOBUFS is cured by draining.
 */
#include "fuzz_common.h"

#include "linebuf.h"

#include <stdbool.h>

typedef struct expect {
    bool too_long;
    size_t len;   /* raw length, before CR stripping */
    size_t off;   /* of its bytes in model.lines (OK lines only) */
} expect_t;

typedef struct model {
    size_t max_line;
    char *cur;           /* the current partial line, up to max_line + 1 bytes kept */
    size_t cur_len;      /* its full length */
    expect_t *q;         /* complete lines not yet handed out */
    size_t qhead, qn, qcap;
    char *lines;         /* bytes of the queued OK lines */
    size_t lines_len, lines_cap;
    uint64_t read;       /* bytes fed since creation/reset */
    uint64_t consumed;   /* bytes of the lines handed out since creation/reset */
} model_t;

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    p = realloc(p, c * elem);
    FUZZ_SETUP(p != NULL, "out of memory");
    *cap = c;
    return p;
}

static void model_feed(model_t *m, const char *p, size_t n)
{
    m->read += n;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            if (m->cur_len <= m->max_line)
                m->cur[m->cur_len] = p[i];
            m->cur_len++;
            continue;
        }
        m->q = grow(m->q, &m->qcap, m->qn + 1, sizeof *m->q);
        expect_t *e = &m->q[m->qn++];
        e->too_long = m->cur_len > m->max_line;
        e->len = m->cur_len;
        e->off = m->lines_len;
        if (!e->too_long) {
            m->lines = grow(m->lines, &m->lines_cap, m->lines_len + m->cur_len + 1, 1);
            memcpy(m->lines + m->lines_len, m->cur, m->cur_len);
            m->lines_len += m->cur_len;
        }
        m->cur_len = 0;
    }
}

static void model_reset(model_t *m)
{
    FUZZ_CHECK(m->qhead == m->qn);
    m->qhead = m->qn = 0;
    m->lines_len = 0;
    m->cur_len = 0;
    m->read = 0;
    m->consumed = 0;
}

static void check_counters(const tw_linebuf_t *lb, const model_t *m)
{
    FUZZ_CHECK(tw_linebuf_consumed(lb) == m->consumed);
    FUZZ_CHECK(tw_linebuf_consumed(lb) + tw_linebuf_pending(lb) == m->read);
}

/* Takes every complete line out of lb and matches it against the model. */
static void drain(tw_linebuf_t *lb, model_t *m)
{
    for (;;) {
        const char *line = (const char *)1;
        size_t len = 99;
        tw_line_status_t st = tw_linebuf_next(lb, &line, &len);
        if (st == TW_LINE_NONE) {
            FUZZ_CHECK(line == NULL && len == 0);
            FUZZ_CHECK(m->qhead == m->qn);   /* nothing complete left behind */
            m->qhead = m->qn = 0;
            m->lines_len = 0;
            check_counters(lb, m);
            return;
        }
        FUZZ_CHECK(m->qhead < m->qn);
        const expect_t *e = &m->q[m->qhead++];
        m->consumed += e->len + 1;
        if (st == TW_LINE_TOO_LONG) {
            FUZZ_CHECK(e->too_long);
            FUZZ_CHECK(line == NULL && len == 0);
        } else {
            FUZZ_CHECK(st == TW_LINE_OK);
            FUZZ_CHECK(!e->too_long);
            size_t want = e->len;
            if (want > 0 && m->lines[e->off + want - 1] == '\r')
                want--;
            FUZZ_CHECK(len == want);
            FUZZ_CHECK(len <= m->max_line);
            FUZZ_CHECK(line != NULL);
            FUZZ_CHECK(memchr(line, '\n', len) == NULL);
            FUZZ_CHECK(memcmp(line, m->lines + e->off, len) == 0);
        }
        check_counters(lb, m);
    }
}

/* One fill; feeds what was read to the model. Returns bytes read, 0 at EOF,
 * -1 when the pipe is empty for now, -2 when the buffer is full. */
static ssize_t fill(tw_linebuf_t *lb, int fd, model_t *m, const char *stream,
                    size_t *read_pos)
{
    errno = 0;
    ssize_t r = tw_linebuf_fill(lb, fd);
    if (r < 0) {
        FUZZ_CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS);
        check_counters(lb, m);
        return errno == ENOBUFS ? -2 : -1;
    }
    model_feed(m, stream + *read_pos, (size_t)r);
    *read_pos += (size_t)r;
    check_counters(lb, m);
    return r;
}

/* Reads until the pipe is empty (or at EOF), draining as it goes. */
static void pump(tw_linebuf_t *lb, int fd, model_t *m, const char *stream, size_t *read_pos,
                 bool twice)
{
    int stalls = 0;
    for (;;) {
        ssize_t r = fill(lb, fd, m, stream, read_pos);
        if (r > 0 && twice)
            r = fill(lb, fd, m, stream, read_pos) == 0 ? 0 : r;
        drain(lb, m);
        if (r == -2) {
            /* Full buffer: draining must make room at once. */
            FUZZ_CHECK(++stalls < 2);
            continue;
        }
        stalls = 0;
        if (r == -1 || r == 0)
            return;
    }
}

static size_t param(const uint8_t *d)
{
    unsigned v = d[0] | (unsigned)d[1] << 8;
    return v == 0 ? 0 : 1 + v % 512;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    size_t max_line = param(data), block = param(data + 2);
    const char *stream = (const char *)data + 4;
    size_t stream_len = size - 4;   /* shrinks as schedule bytes are taken */

    tw_linebuf_t *lb = tw_linebuf_new(max_line, block);
    model_t m = {.max_line = max_line ? max_line : TW_LINEBUF_DEFAULT_MAX_LINE};
    m.cur = malloc(m.max_line + 1);
    FUZZ_SETUP(m.cur != NULL, "out of memory");
    int fds[2];
    FUZZ_SETUP(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));

    size_t written = 0, read_pos = 0;
    while (written < stream_len) {
        size_t chunk = 64;
        unsigned mode = 2;
        if (stream_len - written >= 2 + 1) {
            unsigned a = (unsigned char)stream[stream_len - 1];
            mode = (unsigned char)stream[stream_len - 2];
            stream_len -= 2;
            chunk = (1 + (a & 0x7f)) * ((a & 0x80) ? 8 : 1);
        }
        if (chunk > stream_len - written)
            chunk = stream_len - written;
        /* The pipe is empty here (pump read it dry), and 64 KiB holds any chunk. */
        ssize_t w = write(fds[1], stream + written, chunk);
        FUZZ_SETUP(w == (ssize_t)chunk, "write to pipe: %s", strerror(errno));
        written += chunk;
        pump(lb, fds[0], &m, stream, &read_pos, mode % 4 == 1);
        FUZZ_CHECK(read_pos == written);
        if (mode % 16 == 0) {
            tw_linebuf_reset(lb);
            model_reset(&m);
            check_counters(lb, &m);
        }
    }
    close(fds[1]);
    pump(lb, fds[0], &m, stream, &read_pos, false);
    FUZZ_CHECK(read_pos == written);
    /* At EOF only the unterminated tail is pending. */
    FUZZ_CHECK(tw_linebuf_pending(lb) == m.cur_len);
    close(fds[0]);

    free(m.cur);
    free(m.q);
    free(m.lines);
    tw_linebuf_free(lb);
    return 0;
}
