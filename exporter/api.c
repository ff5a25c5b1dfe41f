/*
 * api.c — see api.h. The contract is docs/api.md.
 *
 * Routing is a handful of string comparisons on the decoded URL path; no
 * part of a path or query is ever echoed into an answer (an analyst who
 * pastes a raw token where an id belongs must not see it in an error, nor
 * anyone else in a proxy log of error bodies).
 *
 * Credentials. At load, a random 32-byte key is drawn and every secret is
 * reduced to keyed BLAKE2b digests (crypto_generichash) of fixed length:
 * the bearer token, and each basic-auth user name and plain password. A
 * presented credential is digested with the same key and compared with
 * sodium_memcmp, so neither the comparison time nor a length difference
 * says anything about the secret, and the raw secrets are wiped from memory
 * right after loading. argon2id entries ("$argon2id$...", made by
 * `tokenwatch hash-password`) are verified with crypto_pwhash_str_verify,
 * one at a time (each may take tens of MiB for tens of ms); a successful
 * verification is remembered as the keyed digest of "user:password" in a
 * small cache, so a browser or a scraper sending the same credentials every
 * few seconds costs one verification, not one per request. An unknown user
 * name costs one verification too, so timing does not reveal user names.
 */
#include "api.h"
#include "tokenid.h"
#include "log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Names                                                                    */

const char *const tw_api_state_names[] = {
    "observed", "flagged", "freezing",  "frozen",    "unfreezing",
    "unfrozen", "acked",   "confirmed", "dismissed", NULL,
};

const char *const tw_api_severity_names[] = {"low", "medium", "high", "critical", NULL};

static const char *const action_names[] = {"ack", "unfreeze", "confirm", "dismiss"};

int tw_api_severity_parse(const char *s)
{
    for (int i = 0; tw_api_severity_names[i]; i++)
        if (strcmp(s, tw_api_severity_names[i]) == 0)
            return i;
    return -1;
}

bool tw_api_state_valid(const char *s)
{
    for (int i = 0; tw_api_state_names[i]; i++)
        if (strcmp(s, tw_api_state_names[i]) == 0)
            return true;
    return false;
}

int tw_api_action_parse(const char *s, size_t n)
{
    for (int i = 0; i < 4; i++)
        if (strlen(action_names[i]) == n && memcmp(s, action_names[i], n) == 0)
            return i;
    return -1;
}

const char *tw_api_action_name(tw_api_action_t a)
{
    return (unsigned)a < 4 ? action_names[a] : "?";
}

int tw_api_parse_token_id(const char *s, size_t n, uint64_t *id)
{
    return tw_tokenid_parse(s, n, id);
}

/* ------------------------------------------------------------------------ */
/* RFC 3339                                                                 */

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

int tw_api_parse_time(const char *s, int64_t *ns)
{
    int y, mo, d, h, mi, sec;
    size_t n = strlen(s);
    if (n < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
        return -1;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        sec > 60)
        return -1;
    if (sec == 60)
        sec = 59; /* a leap second is the last second of its minute */
    const char *p = s + 19;
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        while (*p >= '0' && *p <= '9') {
            if (nd < 9) {
                frac = frac * 10 + (*p - '0');
                nd++;
            }
            p++;
        }
        if (nd == 0)
            return -1;
        while (nd++ < 9)
            frac *= 10;
    }
    int64_t off_s = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        off_s = 0;
    } else if ((*p == '+' || *p == '-' || *p == ' ') && strlen(p) == 6 && p[3] == ':') {
        /* ' ': a '+' that a form encoder turned into a space. */
        int oh, om;
        if (!digits(p + 1, 2, &oh) || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off_s = (int64_t)oh * 3600 + om * 60;
        if (*p == '-')
            off_s = -off_s;
    } else {
        return -1;
    }
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off_s;
    /* int64 nanoseconds reach 292 years either side of 1970; a filter time
     * beyond that is clamped (it then matches everything or nothing, as
     * it would unclamped). */
    if (t > INT64_MAX / 1000000000LL - 1)
        t = INT64_MAX / 1000000000LL - 1;
    if (t < INT64_MIN / 1000000000LL + 1)
        t = INT64_MIN / 1000000000LL + 1;
    *ns = t * 1000000000LL + frac;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Answers                                                                  */

char *tw_api_error_json(const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "error", msg))
        tw_die("api: out of memory building an error");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        tw_die("api: out of memory building an error");
    /* cJSON's allocation is malloc (its hooks fall back to malloc outside
     * the parser's arena), but hand back a tw_x copy so callers free() one
     * kind of buffer whatever the hooks are. */
    char *out = tw_xstrdup(s);
    cJSON_free(s);
    return out;
}

static bool fail(tw_api_response_t *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(tw_api_response_t *resp, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    resp->status = status;
    resp->body = tw_api_error_json(msg);
    resp->allow = NULL;
    return false;
}

/* ------------------------------------------------------------------------ */
/* Routing                                                                  */

typedef enum { EP_NONE, EP_FLAGGED, EP_STATS, EP_TOKEN, EP_ACTION } endpoint_t;

typedef struct route {
    endpoint_t ep;
    const char *id;
    size_t id_len;
    tw_api_action_t action;
} route_t;

static void parse_route(const char *path, route_t *r)
{
    memset(r, 0, sizeof *r);
    static const char prefix[] = "/api/v1/";
    if (strncmp(path, prefix, sizeof prefix - 1) != 0)
        return;
    const char *p = path + sizeof prefix - 1;
    if (strcmp(p, "flagged") == 0) {
        r->ep = EP_FLAGGED;
    } else if (strcmp(p, "stats") == 0) {
        r->ep = EP_STATS;
    } else if (strncmp(p, "tokens/", 7) == 0) {
        p += 7;
        const char *slash = strchr(p, '/');
        r->id = p;
        if (!slash) {
            r->id_len = strlen(p);
            if (r->id_len > 0)
                r->ep = EP_TOKEN;
            return;
        }
        r->id_len = (size_t)(slash - p);
        const char *act = slash + 1;
        int a = tw_api_action_parse(act, strlen(act));
        if (r->id_len > 0 && a >= 0) {
            r->ep = EP_ACTION;
            r->action = (tw_api_action_t)a;
        }
    }
}

static bool is_get(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

/* "application/json", any case, optionally followed by parameters; a
 * charset parameter, if any, must be utf-8. */
static bool json_content_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof want - 1) != 0)
        return false;
    const char *p = ct + sizeof want - 1;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return true;
    if (*p != ';')
        return false;
    const char *cs = strcasestr(p, "charset=");
    if (!cs)
        return true;
    cs += 8;
    if (*cs == '"')
        cs++;
    return strncasecmp(cs, "utf-8", 5) == 0 &&
           (cs[5] == '\0' || cs[5] == '"' || cs[5] == ';' || cs[5] == ' ');
}

#define ID_EXPECTED "token id: expected \"tw_\" followed by 16 lowercase hex digits"

bool tw_api_precheck(const tw_api_request_t *req, tw_api_response_t *resp)
{
    route_t r;
    parse_route(req->path, &r);
    switch (r.ep) {
    case EP_NONE:
        return fail(resp, 404, "no such endpoint (see docs/api.md)");
    case EP_FLAGGED:
    case EP_STATS:
    case EP_TOKEN:
        if (!is_get(req->method)) {
            fail(resp, 405, "method not allowed: use GET");
            resp->allow = "GET, HEAD";
            return false;
        }
        break;
    case EP_ACTION:
        if (strcmp(req->method, "POST") != 0) {
            fail(resp, 405, "method not allowed: use POST with a JSON body");
            resp->allow = "POST";
            return false;
        }
        break;
    }
    uint64_t id;
    if (r.id && tw_api_parse_token_id(r.id, r.id_len, &id) != 0)
        return fail(resp, 400, ID_EXPECTED);
    if (r.ep == EP_ACTION && !json_content_type(req->content_type))
        return fail(resp, 415, "Content-Type: expected application/json");
    return true;
}

/* ------------------------------------------------------------------------ */
/* Query and body validation                                                */

static const char *query(const tw_api_request_t *req, const char *name)
{
    if (!req->query)
        return NULL;
    const char *v = req->query(req->query_ctx, name);
    /* An empty value is no filter: a form submits "severity=" for "any". */
    return v && v[0] ? v : NULL;
}

static bool parse_count(const char *s, unsigned long max, unsigned long *out)
{
    size_t n = strspn(s, "0123456789");
    if (n == 0 || s[n] != '\0' || n > 10)
        return false;
    unsigned long v = strtoul(s, NULL, 10);
    if (v > max)
        return false;
    *out = v;
    return true;
}

static bool valid_rule(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TW_API_RULE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool parse_query(const tw_api_request_t *req, tw_api_query_t *q, tw_api_response_t *resp)
{
    q->min_severity = -1;
    q->state = NULL;
    q->rule = NULL;
    q->since_ns = INT64_MIN;
    q->limit = TW_API_LIMIT_DEFAULT;
    q->offset = 0;
    const char *v;
    if ((v = query(req, "severity")) && (q->min_severity = tw_api_severity_parse(v)) < 0)
        return fail(resp, 400, "severity: expected low, medium, high or critical");
    if ((v = query(req, "state"))) {
        if (!tw_api_state_valid(v))
            return fail(resp, 400,
                        "state: expected observed, flagged, freezing, frozen, unfreezing, "
                        "unfrozen, acked, confirmed or dismissed");
        q->state = v;
    }
    if ((v = query(req, "rule"))) {
        if (!valid_rule(v))
            return fail(resp, 400,
                        "rule: expected a rule id (1 to 64 characters from [A-Za-z0-9_.-])");
        q->rule = v;
    }
    if ((v = query(req, "since")) && tw_api_parse_time(v, &q->since_ns) != 0)
        return fail(resp, 400, "since: expected an RFC 3339 time such as 2026-11-29T07:57:53Z");
    unsigned long n;
    if ((v = query(req, "limit"))) {
        if (!parse_count(v, TW_API_LIMIT_MAX, &n) || n < 1)
            return fail(resp, 400, "limit: expected an integer from 1 to %d", TW_API_LIMIT_MAX);
        q->limit = (unsigned)n;
    }
    if ((v = query(req, "offset"))) {
        if (!parse_count(v, TW_API_OFFSET_MAX, &n))
            return fail(resp, 400, "offset: expected an integer from 0 to %u",
                        TW_API_OFFSET_MAX);
        q->offset = (unsigned)n;
    }
    return true;
}

/* Counts the characters of s if it is well-formed UTF-8 without control
 * characters (C0, DEL, C1); newline and tab pass when allow_lines. Returns
 * -1 otherwise. */
static long text_chars(const char *s, bool allow_lines)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    long chars = 0;
    for (size_t i = 0; i < n;) {
        size_t len = tw_utf8_seq_len(p + i, n - i);
        if (len == 0)
            return -1;
        if (len == 1 && (p[i] < 0x20 || p[i] == 0x7f) &&
            !(allow_lines && (p[i] == '\n' || p[i] == '\t')))
            return -1;
        if (len == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0)
            return -1; /* U+0080..U+009F */
        i += len;
        chars++;
    }
    return chars;
}

static bool blank(const char *s)
{
    return s[strspn(s, " \t\n")] == '\0';
}

/* True when a JSON text holds the escape \u0000, which cJSON would turn
 * into a NUL that silently cuts the string short ("a\u0000b" -> "a"). */
static bool has_nul_escape(const char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '\\')
            continue;
        if (p[i + 1] == 'u' && i + 5 < n && memcmp(p + i + 2, "0000", 4) == 0)
            return true;
        i++; /* skip the escaped character (e.g. the second of "\\") */
    }
    return false;
}

/* Parses an action body into analyst and note (borrowed from *tree). */
static bool parse_body(const tw_api_request_t *req, cJSON **tree, const char **analyst,
                       const char **note, tw_api_response_t *resp)
{
    *tree = NULL;
    if (req->body_len > TW_API_BODY_MAX)
        return fail(resp, 413, "request body too large: at most %d bytes", TW_API_BODY_MAX);
    if (req->body_len == 0)
        return fail(
            resp, 400,
            "body: expected a JSON object such as {\"analyst\":\"...\",\"note\":\"...\"}");
    if (memchr(req->body, '\0', req->body_len))
        return fail(resp, 400, "body: not valid JSON (NUL byte)");
    if (has_nul_escape(req->body, req->body_len))
        return fail(resp, 400, "body: strings must not contain \\u0000");
    char buf[TW_API_BODY_MAX + 1];
    memcpy(buf, req->body, req->body_len);
    buf[req->body_len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 1);
    if (!root) {
        return fail(resp, 400, "body: not valid JSON (at byte %zu)",
                    end && end >= buf ? (size_t)(end - buf) : (size_t)0);
    }
    *tree = root;
    if (!cJSON_IsObject(root))
        return fail(resp, 400, "body: expected a JSON object with \"analyst\" and \"note\"");
    const cJSON *a = NULL, *nt = NULL;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "analyst") == 0 && !a)
            a = c;
        else if (strcmp(c->string, "note") == 0 && !nt)
            nt = c;
        else if (strcmp(c->string, "analyst") == 0 || strcmp(c->string, "note") == 0)
            return fail(resp, 400, "body: member \"%s\" appears twice", c->string);
        else
            return fail(resp, 400, "body: unknown member (expected \"analyst\" and \"note\")");
    }
    if (!a)
        return fail(resp, 400, "analyst: required (who takes this action)");
    long chars;
    if (!cJSON_IsString(a) || (chars = text_chars(a->valuestring, false)) < 1 ||
        chars > TW_API_ANALYST_MAX || blank(a->valuestring))
        return fail(resp, 400, "analyst: expected a string of 1 to %d printable characters",
                    TW_API_ANALYST_MAX);
    *analyst = a->valuestring;
    *note = "";
    if (nt && !cJSON_IsNull(nt)) {
        if (!cJSON_IsString(nt) || (chars = text_chars(nt->valuestring, true)) < 0 ||
            chars > TW_API_NOTE_MAX)
            return fail(resp, 400,
                        "note: expected a string of at most %d characters (no control "
                        "characters besides newline and tab)",
                        TW_API_NOTE_MAX);
        *note = nt->valuestring;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                 */

#define NO_BACKEND "not available: this daemon serves no analyst data"

static void take_backend(tw_api_response_t *resp, char *body, int status)
{
    if (!body || status < 100 || status > 599) {
        if (body)
            tw_log(TW_LOG_ERROR, "api: backend answered with HTTP status %d", status);
        free(body);
        fail(resp, 500, "internal error (see the daemon's log)");
        return;
    }
    resp->status = status;
    resp->body = body;
    resp->allow = NULL;
}

void tw_api_handle(const tw_api_backend_t *b, const tw_api_request_t *req,
                   tw_api_response_t *resp)
{
    memset(resp, 0, sizeof *resp);
    if (!tw_api_precheck(req, resp))
        return;
    route_t r;
    parse_route(req->path, &r);
    uint64_t id = 0;
    if (r.id)
        tw_api_parse_token_id(r.id, r.id_len, &id); /* valid: precheck passed */
    int status = 200;
    char *body = NULL;
    switch (r.ep) {
    case EP_FLAGGED: {
        tw_api_query_t q;
        if (!parse_query(req, &q, resp))
            return;
        if (!b || !b->flagged)
            break;
        body = b->flagged(b->ctx, &q, &status);
        take_backend(resp, body, status);
        return;
    }
    case EP_STATS:
        if (!b || !b->stats)
            break;
        body = b->stats(b->ctx, &status);
        take_backend(resp, body, status);
        return;
    case EP_TOKEN:
        if (!b || !b->token)
            break;
        body = b->token(b->ctx, id, &status);
        take_backend(resp, body, status);
        return;
    case EP_ACTION: {
        cJSON *tree;
        const char *analyst, *note;
        if (parse_body(req, &tree, &analyst, &note, resp)) {
            if (b && b->action) {
                body = b->action(b->ctx, id, r.action, analyst, note, &status);
                take_backend(resp, body, status);
            } else {
                fail(resp, 503, NO_BACKEND);
            }
        }
        cJSON_Delete(tree);
        return;
    }
    case EP_NONE:
        break;
    }
    fail(resp, 503, NO_BACKEND);
}

/* ------------------------------------------------------------------------ */
/* Credentials                                                              */

#define DIGEST_LEN crypto_generichash_BYTES /* 32 */
#define SECRET_FILE_MAX 65536
#define CACHE_SLOTS 8

typedef struct basic_user {
    unsigned char user[DIGEST_LEN];
    unsigned char pass[DIGEST_LEN]; /* plain entries */
    char *hash;                     /* argon2id entries: the hash string */
} basic_user_t;

struct tw_api_auth {
    unsigned char key[crypto_generichash_KEYBYTES];
    bool has_bearer;
    unsigned char bearer[DIGEST_LEN];
    basic_user_t *users;
    size_t nusers;

    pthread_mutex_t verify_lock; /* one argon2 verification at a time */
    pthread_mutex_t cache_lock;
    unsigned char cache[CACHE_SLOTS][DIGEST_LEN];
    bool cache_used[CACHE_SLOTS];
    unsigned cache_next;
};

static void digest(const tw_api_auth_t *a, const void *p, size_t n, unsigned char *out)
{
    crypto_generichash(out, DIGEST_LEN, p, n, a->key, sizeof a->key);
}

/* Reads a secret file: a regular file with no group/other permissions, at
 * most SECRET_FILE_MAX bytes. The buffer is the caller's to wipe. */
static int read_secret_file(const char *path, char **out, size_t *len, tw_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return tw_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tw_err_set(err, "%s: expected a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return tw_err_set(err,
                          "%s: expected a file readable by its owner only (mode 0600 or "
                          "0400), it has mode %04o: chmod go= %s",
                          path, (unsigned)(st.st_mode & 07777), path);
    }
    if (st.st_size > SECRET_FILE_MAX) {
        close(fd);
        return tw_err_set(err, "%s: expected at most %d bytes", path, SECRET_FILE_MAX);
    }
    char *buf = tw_xmalloc(SECRET_FILE_MAX + 1);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, SECRET_FILE_MAX - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            tw_err_set(err, "%s: read failed: %s", path, strerror(errno));
            sodium_memzero(buf, SECRET_FILE_MAX + 1);
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0 || n + (size_t)r >= SECRET_FILE_MAX) {
            n += (size_t)r;
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static void wipe_free(char *buf)
{
    if (buf) {
        sodium_memzero(buf, SECRET_FILE_MAX + 1);
        free(buf);
    }
}

static int load_bearer(tw_api_auth_t *a, const char *path, tw_err_t *err)
{
    char *buf;
    size_t n;
    if (read_secret_file(path, &buf, &n, err) != 0)
        return -1;
    /* One trailing newline (LF or CRLF), as editors and `echo` leave it. */
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    int rc = 0;
    if (n == 0) {
        rc = tw_err_set(err, "%s: expected a bearer token, the file is empty", path);
    } else {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)buf[i];
            if (c <= 0x20 || c >= 0x7f) {
                /* RFC 6750 b64token characters are printable ASCII without
                 * spaces; anything else could never be sent in a header. */
                rc = tw_err_set(err,
                                "%s: expected one line of printable ASCII without spaces "
                                "(the bearer token), found a byte 0x%02x at offset %zu",
                                path, c, i);
                break;
            }
        }
    }
    if (rc == 0) {
        digest(a, buf, n, a->bearer);
        a->has_bearer = true;
    }
    wipe_free(buf);
    return rc;
}

static int load_basic(tw_api_auth_t *a, const char *path, tw_err_t *err)
{
    char *buf;
    size_t n;
    if (read_secret_file(path, &buf, &n, err) != 0)
        return -1;
    int rc = 0;
    size_t lineno = 0;
    for (char *line = buf; line && *line && rc == 0;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        char *next = nl ? nl + 1 : NULL;
        if (len == 0 || line[strspn(line, " \t")] == '#' || line[strspn(line, " \t")] == '\0') {
            line = next;
            continue;
        }
        char *colon = strchr(line, ':');
        if (!colon || colon == line || colon[1] == '\0') {
            rc = tw_err_set(err,
                            "%s: line %zu: expected \"user:password\" or "
                            "\"user:$argon2id$...\" (see tokenwatch hash-password)",
                            path, lineno);
            break;
        }
        size_t ulen = (size_t)(colon - line);
        const char *pass = colon + 1;
        for (size_t i = 0; i < ulen; i++) {
            unsigned char c = (unsigned char)line[i];
            if (c < 0x20 || c == 0x7f) {
                rc = tw_err_set(err, "%s: line %zu: the user name has a control character",
                                path, lineno);
                break;
            }
        }
        if (rc != 0)
            break;
        basic_user_t u;
        memset(&u, 0, sizeof u);
        digest(a, line, ulen, u.user);
        for (size_t i = 0; i < a->nusers; i++) {
            if (sodium_memcmp(a->users[i].user, u.user, DIGEST_LEN) == 0) {
                rc = tw_err_set(err, "%s: line %zu: user \"%.*s\" is listed twice", path,
                                lineno, (int)ulen, line);
                break;
            }
        }
        if (rc != 0)
            break;
        if (strncmp(pass, "$argon2", 7) == 0) {
            if (strncmp(pass, "$argon2id$", 10) != 0 ||
                crypto_pwhash_str_needs_rehash(pass, crypto_pwhash_OPSLIMIT_MIN,
                                               crypto_pwhash_MEMLIMIT_MIN) < 0) {
                rc = tw_err_set(err,
                                "%s: line %zu: expected an argon2id hash as printed by "
                                "`tokenwatch hash-password` (\"$argon2id$v=19$m=...\")",
                                path, lineno);
                break;
            }
            u.hash = tw_xstrdup(pass);
        } else {
            digest(a, pass, strlen(pass), u.pass);
        }
        a->users = tw_xrealloc(a->users, (a->nusers + 1) * sizeof *a->users);
        a->users[a->nusers++] = u;
        line = next;
    }
    if (rc == 0 && a->nusers == 0)
        rc = tw_err_set(err, "%s: expected at least one \"user:password\" line", path);
    wipe_free(buf);
    return rc;
}

int tw_api_auth_load(tw_api_auth_t **out, const char *bearer_file, const char *basic_file,
                     tw_err_t *err)
{
    if (sodium_init() < 0)
        return tw_err_set(err, "libsodium failed to initialise");
    tw_api_auth_t *a = tw_xcalloc(1, sizeof *a);
    randombytes_buf(a->key, sizeof a->key);
    if (pthread_mutex_init(&a->verify_lock, NULL) != 0 ||
        pthread_mutex_init(&a->cache_lock, NULL) != 0)
        tw_die("api: pthread_mutex_init failed");
    if ((bearer_file && load_bearer(a, bearer_file, err) != 0) ||
        (basic_file && load_basic(a, basic_file, err) != 0)) {
        tw_api_auth_free(a);
        return -1;
    }
    *out = a;
    return 0;
}

void tw_api_auth_free(tw_api_auth_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nusers; i++)
        free(a->users[i].hash);
    free(a->users);
    pthread_mutex_destroy(&a->verify_lock);
    pthread_mutex_destroy(&a->cache_lock);
    sodium_memzero(a, sizeof *a);
    free(a);
}

unsigned tw_api_auth_kinds(const tw_api_auth_t *a)
{
    if (!a)
        return 0;
    return (a->has_bearer ? TW_AUTH_BEARER : 0u) | (a->nusers ? TW_AUTH_BASIC : 0u);
}

/* Matches an auth scheme name (case-insensitive) followed by spaces;
 * returns the credentials after them, or NULL. */
static const char *scheme(const char *h, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(h, name, n) != 0 || (h[n] != ' ' && h[n] != '\t'))
        return NULL;
    h += n;
    while (*h == ' ' || *h == '\t')
        h++;
    return h;
}

static size_t trimmed_len(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return n;
}

static tw_auth_result_t check_bearer(const tw_api_auth_t *a, const char *cred)
{
    size_t n = trimmed_len(cred);
    if (n == 0)
        return TW_AUTH_MISSING;
    unsigned char d[DIGEST_LEN];
    digest(a, cred, n, d);
    return sodium_memcmp(d, a->bearer, DIGEST_LEN) == 0 ? TW_AUTH_OK : TW_AUTH_INVALID;
}

static bool cache_hit(tw_api_auth_t *a, const unsigned char *d)
{
    bool hit = false;
    pthread_mutex_lock(&a->cache_lock);
    for (unsigned i = 0; i < CACHE_SLOTS; i++)
        hit |= a->cache_used[i] && sodium_memcmp(a->cache[i], d, DIGEST_LEN) == 0;
    pthread_mutex_unlock(&a->cache_lock);
    return hit;
}

static void cache_put(tw_api_auth_t *a, const unsigned char *d)
{
    pthread_mutex_lock(&a->cache_lock);
    unsigned i = a->cache_next++ % CACHE_SLOTS;
    memcpy(a->cache[i], d, DIGEST_LEN);
    a->cache_used[i] = true;
    pthread_mutex_unlock(&a->cache_lock);
}

static tw_auth_result_t check_basic(tw_api_auth_t *a, const char *cred)
{
    size_t n = trimmed_len(cred);
    if (n == 0)
        return TW_AUTH_MISSING;
    /* user:password in base64; 512 decoded bytes is far beyond any sane pair. */
    unsigned char raw[513];
    size_t rawlen = 0;
    if (n > 700 || sodium_base642bin(raw, sizeof raw - 1, cred, n, NULL, &rawlen, NULL,
                                     sodium_base64_VARIANT_ORIGINAL) != 0)
        return TW_AUTH_INVALID;
    raw[rawlen] = '\0';
    unsigned char *colon = memchr(raw, ':', rawlen);
    tw_auth_result_t res = TW_AUTH_INVALID;
    if (!colon)
        goto out;
    size_t ulen = (size_t)(colon - raw);
    const char *pass = (const char *)colon + 1;
    size_t plen = rawlen - ulen - 1;
    unsigned char du[DIGEST_LEN], dp[DIGEST_LEN], dpair[DIGEST_LEN];
    digest(a, raw, ulen, du);
    digest(a, pass, plen, dp);
    digest(a, raw, rawlen, dpair);
    const basic_user_t *match = NULL;
    for (size_t i = 0; i < a->nusers; i++)
        if (sodium_memcmp(a->users[i].user, du, DIGEST_LEN) == 0)
            match = &a->users[i];
    if (!match) {
        /* An unknown user costs what a known one does: where argon2id
         * hashes are in use, one verification (its result ignored), so the
         * answer time does not tell which user names exist. */
        for (size_t i = 0; i < a->nusers; i++) {
            if (a->users[i].hash) {
                pthread_mutex_lock(&a->verify_lock);
                int ignored = crypto_pwhash_str_verify(a->users[i].hash, pass, plen);
                (void)ignored;
                pthread_mutex_unlock(&a->verify_lock);
                break;
            }
        }
        goto out;
    }
    if (!match->hash) {
        if (sodium_memcmp(match->pass, dp, DIGEST_LEN) == 0)
            res = TW_AUTH_OK;
        goto out;
    }
    if (cache_hit(a, dpair)) {
        res = TW_AUTH_OK;
        goto out;
    }
    pthread_mutex_lock(&a->verify_lock);
    int v = crypto_pwhash_str_verify(match->hash, pass, plen);
    pthread_mutex_unlock(&a->verify_lock);
    if (v == 0) {
        cache_put(a, dpair);
        res = TW_AUTH_OK;
    }
out:
    sodium_memzero(raw, sizeof raw);
    return res;
}

tw_auth_result_t tw_api_auth_check(tw_api_auth_t *a, const char *authorization, unsigned accept)
{
    if (!a || !authorization)
        return TW_AUTH_MISSING;
    const char *h = authorization;
    while (*h == ' ' || *h == '\t')
        h++;
    const char *cred;
    if ((accept & TW_AUTH_BEARER) && a->has_bearer && (cred = scheme(h, "Bearer")))
        return check_bearer(a, cred);
    if ((accept & TW_AUTH_BASIC) && a->nusers && (cred = scheme(h, "Basic")))
        return check_basic(a, cred);
    /* Another scheme, or one that is not configured here. */
    return TW_AUTH_MISSING;
}

int tw_api_hash_password(const char *password, size_t len, char *out, size_t cap)
{
    if (sodium_init() < 0 || cap < crypto_pwhash_STRBYTES)
        return -1;
    return crypto_pwhash_str(out, password, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                             crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0
               ? 0
               : -1;
}
