/*
 * events.c — see events.h.
 */
#include "events.h"
#include "timeparse.h"
#include "tokenid.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SINK_MAX (16u << 20)

static void reserve(tw_jw_t *w, size_t more)
{
    if (w->len + more <= w->cap)
        return;
    size_t cap = w->cap ? w->cap : 512;
    while (cap < w->len + more)
        cap *= 2;
    w->buf = tw_xrealloc(w->buf, cap);
    w->cap = cap;
}

static inline void put(tw_jw_t *w, const char *s, size_t n)
{
    reserve(w, n);
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static inline void putc1(tw_jw_t *w, char c)
{
    reserve(w, 1);
    w->buf[w->len++] = c;
}

void tw_jw_init(tw_jw_t *w)
{
    memset(w, 0, sizeof *w);
    w->first[0] = true;
}

void tw_jw_free(tw_jw_t *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
}

void tw_jw_reset(tw_jw_t *w)
{
    w->len = 0;
    w->depth = 0;
    w->first[0] = true;
}

/* Separator before a value in an array or before a key in an object. */
static void sep(tw_jw_t *w)
{
    if (!w->first[w->depth])
        putc1(w, ',');
    w->first[w->depth] = false;
}

static bool after_key(const tw_jw_t *w)
{
    return w->len > 0 && w->buf[w->len - 1] == ':';
}

static void value_start(tw_jw_t *w)
{
    if (w->depth > 0 && !after_key(w))
        sep(w);
}

static void open_(tw_jw_t *w, char c)
{
    value_start(w);
    putc1(w, c);
    if (w->depth >= TW_JW_DEPTH)
        tw_die("tw_jw: nesting deeper than %d", TW_JW_DEPTH);
    w->first[++w->depth] = true;
}

void tw_jw_obj_begin(tw_jw_t *w) { open_(w, '{'); }
void tw_jw_arr_begin(tw_jw_t *w) { open_(w, '['); }

void tw_jw_obj_end(tw_jw_t *w)
{
    putc1(w, '}');
    if (w->depth)
        w->depth--;
}

void tw_jw_arr_end(tw_jw_t *w)
{
    putc1(w, ']');
    if (w->depth)
        w->depth--;
}

/* 1 for the bytes copied as they are: printable ASCII except '"' and '\\'. */
static const uint8_t plain[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),                                  /* 0x00-0x1F */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x20-0x2F: '"' */
    R16(1), R16(1),                                  /* 0x30-0x4F */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,  /* 0x50-0x5F: '\\' */
    R16(1),                                          /* 0x60-0x6F */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,  /* 0x70-0x7F: DEL */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0),
#undef R16
};

void tw_jw_key(tw_jw_t *w, const char *key)
{
    /* Keys are nearly always short plain ASCII: copy them here and leave
     * only what needs escaping to tw_json_escape(). */
    size_t n = strlen(key);
    sep(w);
    reserve(w, n + 3);
    char *o = w->buf + w->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n && plain[(unsigned char)key[i]]) {
        o[i] = key[i];
        i++;
    }
    w->len = (size_t)(o + i - w->buf);
    if (i < n)
        tw_json_escape(w, key + i, n - i);
    put(w, "\":", 2);
}


void tw_jw_key_raw(tw_jw_t *w, const char *quoted, size_t n)
{
    sep(w);
    put(w, quoted, n);
}

/* Room for n bytes escaped (at worst 6 output bytes each: \\u00XX or
 * \\ufffd) plus extra. */
static inline void reserve_escaped(tw_jw_t *w, size_t n, size_t extra)
{
    if (n > (SIZE_MAX - w->len - extra) / 6)
        tw_die("tw_json_escape: string too long");
    reserve(w, 6 * n + extra);
}

/* Writes s[0..n) escaped at o, which has room for 6 * n bytes; returns
 * the new end. */
static inline char *escape_into(char *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (i < n) {
        /* Copy the run that needs no escaping: eight bytes at a time while
         * none of them is < 0x20, '"', '\\' or >= 0x7F (the usual
         * has-zero-byte / has-less-than bit tricks, exact as a yes/no for
         * the word), then byte by byte. Stores go straight to the buffer:
         * the caller's reservation (6 * n) covers them, whole words too. */
        while (i + 8 <= n) {
            uint64_t x, q, b;
            memcpy(&x, p + i, 8);
            q = x ^ (ones * '"');
            b = x ^ (ones * '\\');
            uint64_t bad = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) |
                           x | (x + ones);
            if (bad & highs) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                /* The lowest flagged byte is exact: copy what precedes it. */
                unsigned k = (unsigned)__builtin_ctzll(bad & highs) >> 3;
                memcpy(o, &x, 8);   /* covered by the reservation; only k count */
                o += k;
                i += k;
#endif
                break;
            }
            memcpy(o, &x, 8);
            o += 8;
            i += 8;
        }
        while (i < n && plain[p[i]])
            *o++ = s[i++];
        if (i == n)
            break;
        unsigned char c = p[i];
        char e = 0;
        switch (c) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '\b': e = 'b'; break;
        case '\f': e = 'f'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        case '\t': e = 't'; break;
        default: break;
        }
        if (e) {
            o[0] = '\\';
            o[1] = e;
            o += 2;
            i++;
            continue;
        }
        if (c < 0x20 || c == 0x7F) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
            i++;
            continue;
        }
        size_t l = tw_utf8_seq_len(p + i, n - i);
        if (l == 0) {
            memcpy(o, "\\ufffd", 6);
            o += 6;
            i++;
        } else {
            memcpy(o, s + i, l);
            o += l;
            i += l;
        }
    }
    return o;
}

void tw_json_escape(tw_jw_t *out, const char *s, size_t n)
{
    reserve_escaped(out, n, 0);
    char *o = escape_into(out->buf + out->len, s, n);
    out->len = (size_t)(o - out->buf);
}

void tw_jw_str(tw_jw_t *w, const char *s, size_t n)
{
    value_start(w);
    reserve_escaped(w, n, 2);
    char *o = w->buf + w->len;
    *o++ = '"';
    o = escape_into(o, s, n);
    *o++ = '"';
    w->len = (size_t)(o - w->buf);
}

void tw_jw_cstr(tw_jw_t *w, const char *s) { tw_jw_str(w, s, strlen(s)); }

void tw_jw_int(tw_jw_t *w, long long v)
{
    char b[24], *end = b + sizeof b;
    /* Negate in unsigned arithmetic: LLONG_MIN has no positive twin. */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char *q = tw_u64_digits(u, end);
    if (v < 0)
        *--q = '-';
    value_start(w);
    put(w, q, (size_t)(end - q));
}

__extension__ typedef unsigned __int128 u128;

static const uint64_t pow10_u64[10] = {1,      10,      100,      1000,      10000,
                                       100000, 1000000, 10000000, 100000000, 1000000000};

/*
 * "%.*f" without printf, for |v| < 2^52 (about 4.5e15) and decimals 0..9:
 * writes the text into b (at least 40 bytes) and returns its length, or 0
 * when v is out of that range. The result is the one glibc prints in the
 * default rounding mode: the exact binary value of v (m * 2^-s, m < 2^53)
 * rounded to d decimals, ties to even. The integer part is m >> s; the
 * fraction's bits times 10^d (< 2^83, so 128-bit arithmetic is exact) give
 * the decimals and the remainder that decides the rounding. "-" only when
 * the rounded value is not zero (so never "-0.00").
 */
static size_t fixed_digits(double v, int d, char *b)
{
    double a = fabs(v);
    if (!(a < 4503599627370496.0))   /* 2^52; also false for NaN */
        return 0;
    uint64_t ip = 0, fq = 0;
    if (a != 0) {
        /* IEEE 754 binary64: a = m * 2^-s exactly, read from the bits. */
        uint64_t bits;
        memcpy(&bits, &a, sizeof bits);
        unsigned be = (unsigned)(bits >> 52) & 0x7FF;
        uint64_t m = bits & ((1ULL << 52) - 1);
        int s;
        if (be == 0) {
            s = 1074;                              /* subnormal */
        } else {
            m |= 1ULL << 52;
            s = 1075 - (int)be;                    /* >= 1 as a < 2^52 */
        }
        if (s <= 120) {
            u128 mask = ((u128)1 << s) - 1;
            ip = s >= 64 ? 0 : m >> s;
            u128 num = ((u128)m & mask) * pow10_u64[d];
            fq = (uint64_t)(num >> s);
            u128 r = num & mask, half = (u128)1 << (s - 1);
            /* The parity of the last digit written: fq's, or ip's at d == 0. */
            uint64_t last = d > 0 ? fq : ip;
            if (r > half || (r == half && (last & 1)))
                fq++;
            if (fq == pow10_u64[d]) {
                fq = 0;
                ip++;
            }
        }
        /* s > 120: a < 2^-67, which rounds to zero at 9 decimals. */
    }
    char tmp[40], *end = tmp + sizeof tmp, *q = end;
    if (d > 0) {
        for (int k = 0; k < d; k++) {
            *--q = (char)('0' + fq % 10);
            fq /= 10;
        }
        *--q = '.';
    }
    q = tw_u64_digits(ip, q);
    bool zero = ip == 0;
    for (const char *z = q; zero && z < end; z++)
        zero = *z == '0' || *z == '.';
    if (v < 0 && !zero)
        *--q = '-';
    size_t n = (size_t)(end - q);
    memcpy(b, q, n);
    return n;
}

void tw_jw_double(tw_jw_t *w, double v, int decimals)
{
    value_start(w);
    if (!isfinite(v)) {
        put(w, "null", 4);
        return;
    }
    if (decimals < 0)
        decimals = 0;
    if (decimals > 9)
        decimals = 9;
    char b[64];
    size_t fast = fixed_digits(v, decimals, b);
    if (fast) {
        put(w, b, fast);
        return;
    }
    int n = snprintf(b, sizeof b, "%.*f", decimals, v);
    if (n <= 0 || (size_t)n >= sizeof b) {
        /* Beyond 1e50 nothing here is meaningful; keep the line valid. */
        n = snprintf(b, sizeof b, "%.0f", v > 0 ? 1e50 : -1e50);
    }
    /* "-0.000" is a rounding artefact: write it as zero. (Unreachable for
     * the values that get here, which are at least 2^52, but cheap.) */
    if (b[0] == '-') {
        bool zero = true;
        for (int i = 1; i < n; i++)
            if (b[i] != '0' && b[i] != '.')
                zero = false;
        if (zero) {
            put(w, b + 1, (size_t)n - 1);
            return;
        }
    }
    put(w, b, (size_t)n);
}

void tw_jw_bool(tw_jw_t *w, bool v)
{
    value_start(w);
    if (v)
        put(w, "true", 4);
    else
        put(w, "false", 5);
}

void tw_jw_null(tw_jw_t *w)
{
    value_start(w);
    put(w, "null", 4);
}

void tw_jw_newline(tw_jw_t *w) { putc1(w, '\n'); }

void tw_jw_raw(tw_jw_t *w, const char *s, size_t n) { put(w, s, n); }

void tw_jw_token_id(tw_jw_t *w, uint64_t id)
{
    char buf[TW_TOKENID_STR_LEN + 1];
    tw_jw_str(w, tw_tokenid_format(id, buf), TW_TOKENID_STR_LEN);
}

void tw_anomaly_begin(tw_jw_t *w, const tw_anomaly_head_t *h)
{
    char tbuf[40];
    tw_jw_reset(w);
    tw_jw_obj_begin(w);
    TW_JW_KEY_LIT(w, "time");
    tw_jw_cstr(w, tw_time_format_rfc3339(h->time_ns, tbuf, sizeof tbuf));
    TW_JW_KEY_LIT(w, "token_id");
    tw_jw_token_id(w, h->token_id);
    TW_JW_KEY_LIT(w, "token_hint");
    tw_jw_cstr(w, h->token_hint ? h->token_hint : "");
    TW_JW_KEY_LIT(w, "rule");
    tw_jw_cstr(w, h->rule);
    TW_JW_KEY_LIT(w, "kind");
    tw_jw_cstr(w, h->kind);
    TW_JW_KEY_LIT(w, "severity");
    tw_jw_cstr(w, h->severity);
    TW_JW_KEY_LIT(w, "action");
    tw_jw_cstr(w, h->action);
    TW_JW_KEY_LIT(w, "ip");
    tw_jw_str(w, h->ip.p ? h->ip.p : "", h->ip.n);
    if (h->country && h->country[0]) {
        TW_JW_KEY_LIT(w, "country");
        tw_jw_cstr(w, h->country);
    }
    if (h->city && h->city[0]) {
        TW_JW_KEY_LIT(w, "city");
        tw_jw_cstr(w, h->city);
    }
    TW_JW_KEY_LIT(w, "input");
    tw_jw_cstr(w, h->input ? h->input : "");
    TW_JW_KEY_LIT(w, "evidence");
    tw_jw_obj_begin(w);
}

void tw_anomaly_end(tw_jw_t *w)
{
    tw_jw_obj_end(w);
    tw_jw_obj_end(w);
    tw_jw_newline(w);
}

/* ---- events file ------------------------------------------------------ */

struct tw_events_file {
    char *path;
    int fd;
    char *buf;
    size_t len, cap;
    uint64_t dropped;
};

int tw_events_file_open(tw_events_file_t **out, const char *path, tw_err_t *err)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return tw_err_set(err, "%s: cannot open the events file: %s", path, strerror(errno));
    tw_events_file_t *f = tw_xcalloc(1, sizeof *f);
    f->path = tw_xstrdup(path);
    f->fd = fd;
    *out = f;
    return 0;
}

void tw_events_file_append(tw_events_file_t *f, const char *line, size_t len)
{
    if (f->len + len > SINK_MAX) {
        f->dropped++;
        return;
    }
    if (f->len + len > f->cap) {
        size_t cap = f->cap ? f->cap : 4096;
        while (cap < f->len + len)
            cap *= 2;
        f->buf = tw_xrealloc(f->buf, cap);
        f->cap = cap;
    }
    memcpy(f->buf + f->len, line, len);
    f->len += len;
}

int tw_events_file_reopen(tw_events_file_t *f, tw_err_t *err)
{
    int fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return tw_err_set(err, "%s: cannot reopen the events file: %s", f->path,
                          strerror(errno));
    close(f->fd);
    f->fd = fd;
    return 0;
}

/* True when the path no longer names the open file (renamed or deleted by
 * logrotate): the next events must go to a new file at the path. */
static bool moved_away(const tw_events_file_t *f)
{
    struct stat at_path, open_st;
    if (fstat(f->fd, &open_st) != 0)
        return false;
    if (stat(f->path, &at_path) != 0)
        return errno == ENOENT;
    return at_path.st_dev != open_st.st_dev || at_path.st_ino != open_st.st_ino;
}

int tw_events_file_flush(tw_events_file_t *f, tw_err_t *err)
{
    /* One stat per round with events to write: rotation without a SIGHUP
     * (a rename or delete by logrotate) is followed as well. */
    if (f->len > 0 && moved_away(f) && tw_events_file_reopen(f, err) != 0)
        return -1;
    size_t off = 0;
    while (off < f->len) {
        ssize_t w = write(f->fd, f->buf + off, f->len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            memmove(f->buf, f->buf + off, f->len - off);
            f->len -= off;
            return tw_err_set(err, "%s: write failed: %s", f->path, strerror(e));
        }
        off += (size_t)w;
    }
    f->len = 0;
    return 0;
}

uint64_t tw_events_file_dropped(const tw_events_file_t *f) { return f->dropped; }
const char *tw_events_file_path(const tw_events_file_t *f) { return f->path; }

void tw_events_file_free(tw_events_file_t *f)
{
    if (!f)
        return;
    tw_events_file_flush(f, NULL);
    close(f->fd);
    free(f->buf);
    free(f->path);
    free(f);
}
