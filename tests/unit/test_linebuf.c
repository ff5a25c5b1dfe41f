/*
 * test_linebuf.c — unit tests for the block reader / in-place line splitter.
 *
 * Most cases are a table: an input, a max_line, and the expected transcript
 * of what the linebuf yields ("L:<bytes>" per line, non-printable bytes as
 * \xNN, "TOO_LONG" per dropped line), plus the final consumed/pending
 * counters. Each row runs with many block sizes, from 1 byte (every line
 * split across fills) to larger than the input, and must give the same
 * answer every time. The remaining tests step through fills by hand to check
 * the counters in between.
 */
#include "linebuf.h"
#include "tw_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* An anonymous file holding data, positioned at 0. */
static int mem_file(const char *data, size_t n)
{
    int fd = memfd_create("linebuf-test", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        exit(2);
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w <= 0) {
            perror("write");
            exit(2);
        }
        off += (size_t)w;
    }
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static void put_str(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = realloc(*buf, *cap);
        if (!*buf)
            exit(2);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void put_escaped(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            put_str(buf, len, cap, s + i, 1);
        } else {
            char esc[8];
            snprintf(esc, sizeof esc, "\\x%02x", c);
            put_str(buf, len, cap, esc, 4);
        }
    }
}

/* Reads the whole input through a linebuf and returns the transcript (heap). */
static char *transcript(const char *data, size_t n, size_t max_line, size_t block,
                        uint64_t *consumed, uint64_t *pending, int *fill_errors)
{
    int fd = mem_file(data, n);
    tw_linebuf_t *lb = tw_linebuf_new(max_line, block);
    char *out = NULL;
    size_t len = 0, cap = 0;
    put_str(&out, &len, &cap, "", 0);
    *fill_errors = 0;
    for (;;) {
        ssize_t r = tw_linebuf_fill(lb, fd);
        if (r < 0)
            (*fill_errors)++;
        if (r <= 0)
            break;
        const char *line;
        size_t ll;
        tw_line_status_t s;
        while ((s = tw_linebuf_next(lb, &line, &ll)) != TW_LINE_NONE) {
            if (s == TW_LINE_OK) {
                put_str(&out, &len, &cap, "L:", 2);
                put_escaped(&out, &len, &cap, line, ll);
                put_str(&out, &len, &cap, "\n", 1);
            } else {
                put_str(&out, &len, &cap, "TOO_LONG\n", 9);
            }
        }
    }
    *consumed = tw_linebuf_consumed(lb);
    *pending = tw_linebuf_pending(lb);
    tw_linebuf_free(lb);
    close(fd);
    return out;
}

struct split_case {
    const char *name;
    const char *input;
    size_t input_len;     /* 0: strlen(input) */
    size_t max_line;
    const char *expect;
    uint64_t consumed;
    uint64_t pending;
};

static void test_split_table(void)
{
    static char long_line[2000];
    memset(long_line, 'x', 1000);
    memcpy(long_line + 1000, "\nok\nyes\n", 9);

    const struct split_case cases[] = {
        {"empty input", "", 0, 64, "", 0, 0},
        {"simple", "a\nbb\nccc\n", 0, 64, "L:a\nL:bb\nL:ccc\n", 9, 0},
        {"crlf stripped", "a\r\nb\r\n", 0, 64, "L:a\nL:b\n", 6, 0},
        {"only one cr stripped", "a\r\r\n", 0, 64, "L:a\\x0d\n", 4, 0},
        {"inner cr kept", "a\rb\n", 0, 64, "L:a\\x0db\n", 4, 0},
        {"blank lines", "\n\n\r\nx\n\n", 0, 64, "L:\nL:\nL:\nL:x\nL:\n", 7, 0},
        {"nul bytes pass through", "a\0b\n\0\n", 6, 64, "L:a\\x00b\nL:\\x00\n", 6, 0},
        {"invalid utf-8 passes through", "\xff\xfe\xc3(\n", 0, 64, "L:\\xff\\xfe\\xc3(\n", 5,
         0},
        {"partial last line stays pending", "a\nbc", 0, 64, "L:a\n", 2, 2},
        {"exactly max_line accepted", "12345678\n", 0, 8, "L:12345678\n", 9, 0},
        {"max_line + 1 dropped", "123456789\nok\n", 0, 8, "TOO_LONG\nL:ok\n", 13, 0},
        {"cr counts toward max_line", "1234567\r\n12345678\r\nok\n", 0, 8,
         "L:1234567\nTOO_LONG\nL:ok\n", 22, 0},
        {"over-long unterminated tail", "ok\n123456789", 0, 4, "L:ok\n", 3, 9},
        {"two over-long lines in a row", "aaaaaaa\nbbbbbbbbbbbb\nc\n", 0, 4,
         "TOO_LONG\nTOO_LONG\nL:c\n", 23, 0},
        {"over-long line over many fills", long_line, 1008, 16, "TOO_LONG\nL:ok\nL:yes\n", 1008,
         0},
        {"max_line 1", "a\nbb\n\n", 0, 1, "L:a\nTOO_LONG\nL:\n", 6, 0},
    };
    const size_t blocks[] = {1, 2, 3, 5, 8, 13, 64, 4096};

    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const struct split_case *tc = &cases[c];
        size_t n = tc->input_len ? tc->input_len : strlen(tc->input);
        for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
            uint64_t consumed, pending;
            int errs;
            char *got = transcript(tc->input, n, tc->max_line, blocks[b], &consumed, &pending,
                                   &errs);
            int before = tw_test_fail;
            TW_CHECK_STR(got, tc->expect);
            TW_CHECK_INT(consumed, tc->consumed);
            TW_CHECK_INT(pending, tc->pending);
            TW_CHECK_INT(errs, 0);
            if (tw_test_fail != before)
                fprintf(stderr, "  in case \"%s\" with block %zu\n", tc->name, blocks[b]);
            free(got);
        }
    }
}

/* A partial line written in two pieces, read from a non-blocking pipe. */
static void test_partial_across_writes(void)
{
    int p[2];
    TW_CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    tw_linebuf_t *lb = tw_linebuf_new(64, 16);
    const char *line;
    size_t len;

    TW_CHECK_INT(write(p[1], "first\npar", 9), 9);
    TW_CHECK_INT(tw_linebuf_fill(lb, p[0]), 9);
    TW_CHECK_INT(tw_linebuf_next(lb, &line, &len), TW_LINE_OK);
    TW_CHECK(len == 5 && memcmp(line, "first", 5) == 0);
    TW_CHECK_INT(tw_linebuf_next(lb, &line, &len), TW_LINE_NONE);
    TW_CHECK_INT(tw_linebuf_consumed(lb), 6);
    TW_CHECK_INT(tw_linebuf_pending(lb), 3);

    /* Nothing to read yet: the error comes from read(2), nothing changes. */
    errno = 0;
    TW_CHECK_INT(tw_linebuf_fill(lb, p[0]), -1);
    TW_CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    TW_CHECK_INT(tw_linebuf_pending(lb), 3);

    TW_CHECK_INT(write(p[1], "tial\r\n", 6), 6);
    TW_CHECK_INT(tw_linebuf_fill(lb, p[0]), 6);
    TW_CHECK_INT(tw_linebuf_next(lb, &line, &len), TW_LINE_OK);
    TW_CHECK(len == 7 && memcmp(line, "partial", 7) == 0);
    TW_CHECK_INT(tw_linebuf_next(lb, &line, &len), TW_LINE_NONE);
    TW_CHECK_INT(tw_linebuf_consumed(lb), 15);
    TW_CHECK_INT(tw_linebuf_pending(lb), 0);

    close(p[1]);
    TW_CHECK_INT(tw_linebuf_fill(lb, p[0]), 0);   /* EOF */
    close(p[0]);
    tw_linebuf_free(lb);
}

/*
 * consumed() stays at the start of a line being dropped while pending()
 * grows with every fill; the buffer never fills up (every fill reads a whole
 * block); the line is reported once when its newline arrives.
 */
static void test_consumed_while_dropping(void)
{
    const size_t max_line = 16, block = 8;
    char data[600];
    memcpy(data, "head\n", 5);
    memset(data + 5, 'y', 500);
    memcpy(data + 505, "\ntail\n", 6);
    const size_t n = 511;
    int fd = mem_file(data, n);
    tw_linebuf_t *lb = tw_linebuf_new(max_line, block);
    const char *line;
    size_t len;

    uint64_t read_total = 0;
    int too_long = 0, ok = 0;
    bool stayed_at_start = true, pending_bounded = true;
    for (;;) {
        ssize_t r = tw_linebuf_fill(lb, fd);
        TW_CHECK(r >= 0);
        if (r <= 0)
            break;
        /* A fill always gets a whole block until the data runs out. */
        if ((uint64_t)r != block && read_total + (uint64_t)r != n)
            TW_CHECK_INT(r, block);
        read_total += (uint64_t)r;
        tw_line_status_t s;
        while ((s = tw_linebuf_next(lb, &line, &len)) != TW_LINE_NONE) {
            if (s == TW_LINE_TOO_LONG) {
                too_long++;
                TW_CHECK_INT(tw_linebuf_consumed(lb), 506);
            } else {
                ok++;
            }
        }
        TW_CHECK_INT(tw_linebuf_consumed(lb) + tw_linebuf_pending(lb), read_total);
        if (too_long == 0 && read_total > 5 + max_line + block &&
            tw_linebuf_consumed(lb) != 5)
            stayed_at_start = false;
        if (too_long == 0 && read_total > 5 + max_line + block &&
            tw_linebuf_pending(lb) != read_total - 5)
            pending_bounded = false;
    }
    TW_CHECK(stayed_at_start);
    TW_CHECK(pending_bounded);
    TW_CHECK_INT(read_total, n);
    TW_CHECK_INT(too_long, 1);
    TW_CHECK_INT(ok, 2);
    TW_CHECK_INT(tw_linebuf_consumed(lb), n);
    TW_CHECK_INT(tw_linebuf_pending(lb), 0);
    tw_linebuf_free(lb);
    close(fd);
}

/* Filling without draining: the buffer fills up, fill says ENOBUFS instead
 * of pretending EOF, and no byte is lost once lines are taken out. */
static void test_full_buffer(void)
{
    const char *data = "a\nb\nc\nd\ne\nf\n";
    int fd = mem_file(data, strlen(data));
    tw_linebuf_t *lb = tw_linebuf_new(4, 4);   /* 8-byte buffer */
    const char *line;
    size_t len;

    TW_CHECK_INT(tw_linebuf_fill(lb, fd), 4);
    TW_CHECK_INT(tw_linebuf_fill(lb, fd), 4);
    errno = 0;
    TW_CHECK_INT(tw_linebuf_fill(lb, fd), -1);
    TW_CHECK_INT(errno, ENOBUFS);

    char got[16] = {0};
    size_t ng = 0;
    for (;;) {
        tw_line_status_t s;
        while ((s = tw_linebuf_next(lb, &line, &len)) == TW_LINE_OK && ng < sizeof got - 1)
            if (len == 1)
                got[ng++] = line[0];
        TW_CHECK(s != TW_LINE_TOO_LONG);
        if (tw_linebuf_fill(lb, fd) <= 0)
            break;
    }
    TW_CHECK_STR(got, "abcdef");
    TW_CHECK_INT(tw_linebuf_consumed(lb), 12);
    tw_linebuf_free(lb);
    close(fd);
}

static void test_reset_and_errors(void)
{
    const char *data = "one\ntwo\nthr";
    int fd = mem_file(data, strlen(data));
    tw_linebuf_t *lb = tw_linebuf_new(0, 0);   /* defaults */
    const char *line;
    size_t len;

    TW_CHECK_INT(tw_linebuf_fill(lb, fd), 11);
    TW_CHECK_INT(tw_linebuf_next(lb, &line, &len), TW_LINE_OK);
    TW_CHECK_INT(tw_linebuf_consumed(lb), 4);
    TW_CHECK_INT(tw_linebuf_pending(lb), 7);

    tw_linebuf_reset(lb);
    TW_CHECK_INT(tw_linebuf_consumed(lb), 0);
    TW_CHECK_INT(tw_linebuf_pending(lb), 0);
    TW_CHECK_INT(tw_linebuf_next(lb, &line, &len), TW_LINE_NONE);
    TW_CHECK(line == NULL && len == 0);

    /* After a reset the buffer reads a new file (here: the same one again). */
    lseek(fd, 0, SEEK_SET);
    TW_CHECK_INT(tw_linebuf_fill(lb, fd), 11);
    TW_CHECK_INT(tw_linebuf_next(lb, &line, &len), TW_LINE_OK);
    TW_CHECK(len == 3 && memcmp(line, "one", 3) == 0);
    TW_CHECK_INT(tw_linebuf_next(lb, &line, &len), TW_LINE_OK);
    TW_CHECK(len == 3 && memcmp(line, "two", 3) == 0);
    close(fd);

    /* A bad descriptor is an error with errno, not a crash or an EOF. */
    errno = 0;
    TW_CHECK_INT(tw_linebuf_fill(lb, -1), -1);
    TW_CHECK_INT(errno, EBADF);
    TW_CHECK_INT(tw_linebuf_pending(lb), 3);

    tw_linebuf_free(lb);
    tw_linebuf_free(NULL);
}

int main(void)
{
    test_split_table();
    test_partial_across_writes();
    test_consumed_while_dropping();
    test_full_buffer();
    test_reset_and_errors();
    return tw_test_done();
}
