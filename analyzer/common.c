/*
 * common.c — see common.h. Nothing here knows about tokens or logs.
 */
#include "common.h"
#include "tokenid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int tw_err_set(tw_err_t *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

_Noreturn void tw_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tokenwatch: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void *tw_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        tw_die("out of memory allocating %zu bytes", n);
    return p;
}

void *tw_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        tw_die("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

#define HUGE_PAGE ((size_t)2 << 20)

void *tw_xcalloc_table(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        tw_die("out of memory allocating %zu x %zu bytes", n, size);
    size_t bytes = n * size;
    if (bytes < HUGE_PAGE)
        return tw_xcalloc(n, size);
    size_t whole = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, whole) != 0)
        tw_die("out of memory allocating %zu x %zu bytes", n, size);
#ifdef MADV_HUGEPAGE
    (void)madvise(p, whole, MADV_HUGEPAGE);   /* advice; failure is harmless */
#endif
    memset(p, 0, bytes);
    return p;
}

void *tw_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        tw_die("out of memory reallocating %zu bytes", n);
    return q;
}

char *tw_xstrdup(const char *s)
{
    return tw_xstrndup(s, strlen(s));
}

char *tw_xstrndup(const char *s, size_t n)
{
    char *p = tw_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *tw_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        tw_die("vsnprintf failed for format %s", fmt);
    char *p = tw_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t tw_now_ns(void) { return clock_ns(CLOCK_REALTIME); }
int64_t tw_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
int64_t tw_thread_cpu_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

char *tw_u64_digits(uint64_t v, char *end)
{
    char *p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

uint64_t tw_hash64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int tw_write_file_atomic(const char *path, const void *data, size_t len,
                         unsigned mode, tw_err_t *err)
{
    char *tmp = tw_xasprintf("%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        tw_err_set(err, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            tw_err_set(err, "%s: write failed: %s", tmp, strerror(errno));
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        tw_err_set(err, "%s: fsync failed: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        tw_err_set(err, "%s: close failed: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        tw_err_set(err, "%s: rename to %s failed: %s", tmp, path, strerror(errno));
        goto fail;
    }
    /* Make the rename itself durable. */
    char *dir = tw_dirname(path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
    free(tmp);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    return -1;
}

int tw_read_file(const char *path, char **out, size_t *len, tw_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tw_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = tw_xmalloc(cap);
    for (;;) {
        if (cap - n < 2) {
            cap *= 2;
            buf = tw_xrealloc(buf, cap);
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            tw_err_set(err, "%s: read failed: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

char *tw_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return tw_xstrdup(".");
    if (slash == path)
        return tw_xstrdup("/");
    return tw_xstrndup(path, (size_t)(slash - path));
}

char *tw_path_join(const char *dir, const char *rel)
{
    if (rel[0] == '/' || !dir || !dir[0])
        return tw_xstrdup(rel);
    return tw_xasprintf("%s/%s", dir, rel);
}

char *tw_token_hint(tw_slice_t token, char *buf, size_t cap)
{
    if (token.n < 12) {
        snprintf(buf, cap, "(%zu chars)", token.n);
        return buf;
    }
    char head[4], tail[5];
    for (int i = 0; i < 3; i++) {
        unsigned char c = (unsigned char)token.p[i];
        head[i] = (c > 0x20 && c < 0x7f) ? (char)c : '?';
    }
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)token.p[token.n - 4 + (size_t)i];
        tail[i] = (c > 0x20 && c < 0x7f) ? (char)c : '?';
    }
    head[3] = '\0';
    tail[4] = '\0';
    snprintf(buf, cap, "%s\xe2\x80\xa6%s", head, tail);
    return buf;
}

size_t tw_utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Token ids (tokenid.h): here, not in tokenid.c, because the exporter
 * parses ids too and links only this library, not libsodium's users. */
char *tw_tokenid_format(uint64_t id, char buf[TW_TOKENID_STR_LEN + 1])
{
    /* By hand, not snprintf: anomaly events write one per line. */
    static const char hex[] = "0123456789abcdef";
    memcpy(buf, "tw_", 3);
    for (int k = 15; k >= 0; k--) {
        buf[3 + k] = hex[id & 15];
        id >>= 4;
    }
    buf[TW_TOKENID_STR_LEN] = '\0';
    return buf;
}

int tw_tokenid_parse(const char *s, size_t n, uint64_t *id)
{
    if (n != TW_TOKENID_STR_LEN || memcmp(s, "tw_", 3) != 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = 3; i < n; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return -1;
        v = (v << 4) | d;
    }
    *id = v;
    return 0;
}
