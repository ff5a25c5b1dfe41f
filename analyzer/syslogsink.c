/*
 * syslogsink.c — see syslogsink.h.
 */
#include "syslogsink.h"
#include "detect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* The facilities accepted, in the order of facility_codes. */
static const char *const facility_names[] = {"auth",   "authpriv", "daemon", "user",
                                             "local0", "local1",   "local2", "local3",
                                             "local4", "local5",   "local6", "local7",
                                             NULL};
static const int facility_codes[] = {LOG_AUTH,   LOG_AUTHPRIV, LOG_DAEMON, LOG_USER,
                                     LOG_LOCAL0, LOG_LOCAL1,   LOG_LOCAL2, LOG_LOCAL3,
                                     LOG_LOCAL4, LOG_LOCAL5,   LOG_LOCAL6, LOG_LOCAL7};

/* Indexed by tw_severity_t. */
static const int severity_levels[] = {LOG_NOTICE, LOG_WARNING, LOG_ERR, LOG_CRIT};

int tw_syslog_facility_parse(const char *name)
{
    for (size_t i = 0; facility_names[i]; i++)
        if (strcmp(name, facility_names[i]) == 0)
            return facility_codes[i];
    return -1;
}

const char *tw_syslog_facility_name(int code)
{
    for (size_t i = 0; facility_names[i]; i++)
        if (facility_codes[i] == code)
            return facility_names[i];
    return "?";
}

int tw_syslog_severity_parse(const char *name)
{
    for (int s = TW_SEV_LOW; s <= TW_SEV_CRITICAL; s++)
        if (strcmp(name, tw_severity_name((tw_severity_t)s)) == 0)
            return s;
    return -1;
}

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

bool tw_syslog_conf_equal(const tw_syslog_conf_t *a, const tw_syslog_conf_t *b)
{
    if (!a->enabled || !b->enabled)
        return a->enabled == b->enabled;
    return str_eq(a->ident, b->ident) && a->facility == b->facility &&
           a->severity_min == b->severity_min && str_eq(a->socket, b->socket) &&
           a->max_per_round == b->max_per_round;
}

void tw_syslog_conf_free(tw_syslog_conf_t *c)
{
    free(c->ident);
    free(c->socket);
    c->ident = c->socket = NULL;
}

struct tw_syslog {
    tw_syslog_conf_t conf;      /* own copies of the strings */
    tw_syslog_cells_t cells;
    struct sockaddr_un addr;
    socklen_t addrlen;
    int fd;                     /* -1 while not connected */
    long pid;
    char *buf;                  /* queued datagrams back to back */
    size_t len, cap;
    size_t *lens;               /* length of each queued datagram */
    size_t n, lens_cap;
};

static void cell_add(tw_cell_t *c, uint64_t d)
{
    if (c && d)
        tw_cell_add(c, d);
}

static int connect_socket(tw_syslog_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -1;
    if (connect(s->fd, (const struct sockaddr *)&s->addr, s->addrlen) != 0) {
        int e = errno;
        close(s->fd);
        s->fd = -1;
        errno = e;
        return -1;
    }
    return 0;
}

tw_syslog_t *tw_syslog_new(const tw_syslog_conf_t *conf, const tw_syslog_cells_t *cells)
{
    tw_syslog_t *s = tw_xcalloc(1, sizeof *s);
    s->conf = *conf;
    s->conf.ident = tw_xstrdup(conf->ident);
    s->conf.socket = tw_xstrdup(conf->socket);
    if (s->conf.max_per_round == 0)
        s->conf.max_per_round = TW_SYSLOG_PER_ROUND_DEFAULT;
    if (cells)
        s->cells = *cells;
    s->addr.sun_family = AF_UNIX;
    size_t n = strlen(s->conf.socket);
    /* config.c refuses longer paths; cut rather than overflow if misused. */
    if (n >= sizeof s->addr.sun_path)
        n = sizeof s->addr.sun_path - 1;
    memcpy(s->addr.sun_path, s->conf.socket, n);
    s->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    s->fd = -1;
    s->pid = (long)getpid();
    connect_socket(s);   /* a failure is retried (and reported) at flush */
    return s;
}

/* The event's severity, read from its fixed place in the line: the key
 * `,"severity":"` cannot occur inside a string value (every '"' there is
 * escaped), so the first match is the event's own member. */
static int line_severity(const char *line, size_t len)
{
    static const char key[] = ",\"severity\":\"";
    const size_t klen = sizeof key - 1;
    for (const char *p = line; (size_t)(line + len - p) > klen;) {
        const char *q = memchr(p, ',', (size_t)(line + len - p));
        if (!q || (size_t)(line + len - q) <= klen)
            break;
        if (memcmp(q, key, klen) == 0) {
            const char *v = q + klen;
            const char *end = memchr(v, '"', (size_t)(line + len - v));
            if (!end)
                break;
            for (int sv = TW_SEV_LOW; sv <= TW_SEV_CRITICAL; sv++) {
                const char *name = tw_severity_name((tw_severity_t)sv);
                size_t n = (size_t)(end - v);
                if (strlen(name) == n && memcmp(v, name, n) == 0)
                    return sv;
            }
            break;
        }
        p = q + 1;
    }
    return -1;
}

static void reserve(tw_syslog_t *s, size_t more)
{
    if (s->len + more > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + more)
            cap *= 2;
        s->buf = tw_xrealloc(s->buf, cap);
        s->cap = cap;
    }
    if (s->n == s->lens_cap) {
        s->lens_cap = s->lens_cap ? s->lens_cap * 2 : 16;
        s->lens = tw_xrealloc(s->lens, s->lens_cap * sizeof *s->lens);
    }
}

void tw_syslog_append(tw_syslog_t *s, const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\n')
        len--;
    int sev = line_severity(line, len);
    /* An event without a known severity is sent as "low" would be: losing
     * it silently would be worse than a plain priority. */
    if (sev < 0)
        sev = TW_SEV_LOW;
    if (sev < s->conf.severity_min)
        return;
    if (s->n >= s->conf.max_per_round) {
        cell_add(s->cells.dropped_limit, 1);
        return;
    }
    char head[128], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    /* glibc's format: "%h %e %T", e.g. "Mar  7 09:05:01". */
    strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
    int hn = snprintf(head, sizeof head, "<%d>%s %s[%ld]: ",
                      s->conf.facility | severity_levels[sev], stamp, s->conf.ident, s->pid);
    if (hn < 0 || (size_t)hn >= sizeof head)
        hn = (int)strlen(head);   /* ident is at most 32 bytes: does not happen */
    reserve(s, (size_t)hn + len);
    memcpy(s->buf + s->len, head, (size_t)hn);
    memcpy(s->buf + s->len + (size_t)hn, line, len);
    s->len += (size_t)hn + len;
    s->lens[s->n++] = (size_t)hn + len;
}

/* Errors after which a new connection may help: the receiver went away or
 * was restarted (its socket file replaced). */
static bool reconnectable(int e)
{
    return e == ECONNREFUSED || e == ENOTCONN || e == ENOENT || e == EBADF ||
           e == EDESTADDRREQ;
}

static ssize_t send_one(tw_syslog_t *s, const char *p, size_t n)
{
    if (s->fd < 0) {
        errno = ENOTCONN;
        return -1;
    }
    ssize_t w;
    do
        w = send(s->fd, p, n, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    return w;
}

int tw_syslog_flush(tw_syslog_t *s, tw_err_t *err)
{
    if (s->n == 0)
        return 0;
    uint64_t sent = 0, failed = 0;
    int first_errno = 0;
    bool reconnected = false;
    size_t off = 0;
    for (size_t i = 0; i < s->n; off += s->lens[i], i++) {
        const char *p = s->buf + off;
        size_t n = s->lens[i];
        ssize_t w = send_one(s, p, n);
        if (w < 0 && reconnectable(errno) && !reconnected) {
            reconnected = true;   /* once per round: no reconnect storm */
            if (connect_socket(s) == 0)
                w = send_one(s, p, n);
        }
        if (w < 0) {
            if (!first_errno)
                first_errno = errno;
            failed++;
        } else {
            sent++;
        }
    }
    s->n = 0;
    s->len = 0;
    cell_add(s->cells.sent, sent);
    cell_add(s->cells.dropped_error, failed);
    if (failed)
        return tw_err_set(err, "%s: %llu of %llu messages dropped: %s", s->conf.socket,
                          (unsigned long long)failed, (unsigned long long)(failed + sent),
                          first_errno == EAGAIN || first_errno == EWOULDBLOCK
                              ? "the receiver's queue is full"
                              : strerror(first_errno));
    return 0;
}

void tw_syslog_free(tw_syslog_t *s)
{
    if (!s)
        return;
    tw_syslog_flush(s, NULL);
    if (s->fd >= 0)
        close(s->fd);
    free(s->buf);
    free(s->lens);
    tw_syslog_conf_free(&s->conf);
    free(s);
}
