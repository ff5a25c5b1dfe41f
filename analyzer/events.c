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

void tw_jw_key(tw_jw_t *w, const char *key)
{
    sep(w);
    putc1(w, '"');
    tw_json_escape(w, key, strlen(key));
    put(w, "\":", 2);
}


void tw_json_escape(tw_jw_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* Copy the longest run that needs no escaping in one go. */
        size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] < 0x7F && p[j] != '"' && p[j] != '\\')
            j++;
        if (j > i) {
            put(out, s + i, j - i);
            i = j;
            continue;
        }
        unsigned char c = p[i];
        switch (c) {
        case '"': put(out, "\\\"", 2); i++; continue;
        case '\\': put(out, "\\\\", 2); i++; continue;
        case '\b': put(out, "\\b", 2); i++; continue;
        case '\f': put(out, "\\f", 2); i++; continue;
        case '\n': put(out, "\\n", 2); i++; continue;
        case '\r': put(out, "\\r", 2); i++; continue;
        case '\t': put(out, "\\t", 2); i++; continue;
        default: break;
        }
        if (c < 0x20 || c == 0x7F) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(out, u, 6);
            i++;
            continue;
        }
        size_t l = tw_utf8_seq_len(p + i, n - i);
        if (l == 0) {
            put(out, "\\ufffd", 6);
            i++;
        } else {
            put(out, s + i, l);
            i += l;
        }
    }
}

void tw_jw_str(tw_jw_t *w, const char *s, size_t n)
{
    value_start(w);
    putc1(w, '"');
    tw_json_escape(w, s, n);
    putc1(w, '"');
}

void tw_jw_cstr(tw_jw_t *w, const char *s) { tw_jw_str(w, s, strlen(s)); }

void tw_jw_int(tw_jw_t *w, long long v)
{
    char b[32];
    int n = snprintf(b, sizeof b, "%lld", v);
    value_start(w);
    put(w, b, (size_t)n);
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
    int n = snprintf(b, sizeof b, "%.*f", decimals, v);
    if (n <= 0 || (size_t)n >= sizeof b) {
        /* Beyond 1e50 nothing here is meaningful; keep the line valid. */
        n = snprintf(b, sizeof b, "%.0f", v > 0 ? 1e50 : -1e50);
    }
    /* "-0.000" is a rounding artefact: write it as zero. */
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
    tw_jw_cstr(w, tw_tokenid_format(id, buf));
}

void tw_anomaly_begin(tw_jw_t *w, const tw_anomaly_head_t *h)
{
    char tbuf[40], idbuf[TW_TOKENID_STR_LEN + 1];
    tw_jw_reset(w);
    tw_jw_obj_begin(w);
    tw_jw_key(w, "time");
    tw_jw_cstr(w, tw_time_format_rfc3339(h->time_ns, tbuf, sizeof tbuf));
    tw_jw_key(w, "token_id");
    tw_jw_cstr(w, tw_tokenid_format(h->token_id, idbuf));
    tw_jw_key(w, "token_hint");
    tw_jw_cstr(w, h->token_hint ? h->token_hint : "");
    tw_jw_key(w, "rule");
    tw_jw_cstr(w, h->rule);
    tw_jw_key(w, "kind");
    tw_jw_cstr(w, h->kind);
    tw_jw_key(w, "severity");
    tw_jw_cstr(w, h->severity);
    tw_jw_key(w, "action");
    tw_jw_cstr(w, h->action);
    tw_jw_key(w, "ip");
    tw_jw_str(w, h->ip.p ? h->ip.p : "", h->ip.n);
    if (h->country && h->country[0]) {
        tw_jw_key(w, "country");
        tw_jw_cstr(w, h->country);
    }
    if (h->city && h->city[0]) {
        tw_jw_key(w, "city");
        tw_jw_cstr(w, h->city);
    }
    tw_jw_key(w, "input");
    tw_jw_cstr(w, h->input ? h->input : "");
    tw_jw_key(w, "evidence");
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
