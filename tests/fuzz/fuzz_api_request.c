/*
 * fuzz_api_request.c — libFuzzer target: the analyst API's request handling
 * (exporter/api.h tw_api_precheck and tw_api_handle: routing, methods, token
 * ids, query parameters, content type, action bodies) over a fake backend
 * that answers with canned JSON.
 *
 * Input: an HTTP/1.1 request as text, the way http.c hands it over after
 * libmicrohttpd has parsed it:
 *
 *     METHOD SP TARGET [SP VERSION] LF      (CR before LF dropped)
 *     Name: value LF ...                    header lines up to an empty line
 *     LF
 *     body                                  every remaining byte, NULs included
 *
 * The path (TARGET before '?') is %XX-decoded and cut at a decoded NUL, as
 * MHD does; the query is split on '&' into name=value pairs, '+' becomes a
 * space and %XX is decoded, and a lookup gives the first pair of that name.
 * Content-Type is the first header of that name (any case). A header
 * "X-Fuzz-Backend" picks the backend: "full" (the default: every callback,
 * status 200), "none" (no backend), "empty" (no callbacks), "null" (the
 * callbacks return NULL) or "status N" (they answer with status N).
 *
 * Checks (api.h's promises):
 *  - a callback is called at most once, only for the route the path names
 *    (the id it gets is the one in the path, the action the one in the
 *    path), only with a valid method, valid query values (severity, state,
 *    rule, limit, offset exactly as the query says, or their defaults) and,
 *    for an action, a JSON Content-Type, a body of at most TW_API_BODY_MAX
 *    bytes, an analyst of 1..64 code points of well-formed UTF-8 without
 *    control characters and not blank, a note of at most 1000 code points
 *    without control characters other than newline and tab;
 *  - the backend's body is handed back untouched with its status when that
 *    is 100..599; otherwise (and for a NULL body) the answer is 500;
 *  - every other answer is 400/404/405/413/415/500/503 with a body that is
 *    exactly {"error":"<message>"}, the message printable ASCII without any
 *    of the characters that no message of api.c contains (so no part of the
 *    path, query or body is echoed into it), an Allow header exactly for
 *    405 ("GET, HEAD" or "POST");
 *  - a reference model of the routing decides 404 / 405 / 400 (token id) /
 *    415 as tw_api_precheck does, and tw_api_handle answers exactly what
 *    tw_api_precheck answered when that refused the request;
 *  - handling the same request twice gives the same answer.
 *
 * TW_FUZZ_VERBOSE=1 prints each request's answer (for replays).
 */
#include "fuzz_common.h"

#include "api.h"
#include "timeparse.h"
#include "tokenid.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <strings.h>

/* ---- the request, as MHD would hand it over ------------------------------ */

#define MAX_ARGS 64

typedef struct fuzz_req {
    char *method, *path, *content_type, *backend;
    char *names[MAX_ARGS], *values[MAX_ARGS];
    size_t nargs;
    const char *body;
    size_t body_len;
} fuzz_req_t;

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* %XX-decodes s[0..n) (and '+' to a space when plus) into a fresh string,
 * which a decoded NUL cuts short, as it does a C string in MHD. */
static char *unescape(const char *s, size_t n, bool plus)
{
    char *out = malloc(n + 1);
    FUZZ_SETUP(out != NULL, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n &&
            (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)s[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (plus && s[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* The next line of [*p, end): returns its start and length without the LF
 * (and a CR before it); advances *p past the LF. */
static const char *next_line(const char **p, const char *end, size_t *len)
{
    const char *start = *p;
    const char *nl = memchr(start, '\n', (size_t)(end - start));
    const char *stop = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    *len = (size_t)(stop - start);
    if (*len > 0 && start[*len - 1] == '\r')
        (*len)--;
    return start;
}

static void parse_query_string(fuzz_req_t *r, const char *q, size_t n)
{
    const char *end = q + n;
    while (q < end && r->nargs < MAX_ARGS) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        if (stop > q) {
            const char *eq = memchr(q, '=', (size_t)(stop - q));
            const char *kend = eq ? eq : stop;
            r->names[r->nargs] = unescape(q, (size_t)(kend - q), true);
            /* "name" without '=' is present with an empty value (MHD gives
             * NULL; the API treats NULL and "" alike: no filter). */
            r->values[r->nargs] = eq ? unescape(eq + 1, (size_t)(stop - eq - 1), true)
                                     : unescape("", 0, false);
            r->nargs++;
        }
        q = amp ? amp + 1 : end;
    }
}

static void parse_request(fuzz_req_t *r, const char *data, size_t size)
{
    memset(r, 0, sizeof *r);
    const char *p = data, *end = data + size;
    size_t len;
    const char *line = next_line(&p, end, &len);
    const char *sp = memchr(line, ' ', len);
    size_t mlen = sp ? (size_t)(sp - line) : len;
    r->method = fuzz_strndup(line, strnlen(line, mlen));
    const char *target = sp ? sp + 1 : line + len;
    size_t tlen = (size_t)(line + len - target);
    const char *sp2 = memchr(target, ' ', tlen);
    if (sp2)
        tlen = (size_t)(sp2 - target);
    const char *qm = memchr(target, '?', tlen);
    r->path = unescape(target, qm ? (size_t)(qm - target) : tlen, false);
    if (qm)
        parse_query_string(r, qm + 1, (size_t)(target + tlen - qm - 1));
    while (p < end) {
        line = next_line(&p, end, &len);
        if (len == 0)
            break;
        const char *colon = memchr(line, ':', len);
        if (!colon)
            continue;
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vlen = (size_t)(line + len - v);
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        char **slot = NULL;
        if (nlen == 12 && strncasecmp(line, "Content-Type", 12) == 0)
            slot = &r->content_type;
        else if (nlen == 14 && strncasecmp(line, "X-Fuzz-Backend", 14) == 0)
            slot = &r->backend;
        if (slot && !*slot)
            *slot = fuzz_strndup(v, strnlen(v, vlen));
    }
    r->body = p;
    r->body_len = (size_t)(end - p);
}

static void free_request(fuzz_req_t *r)
{
    free(r->method);
    free(r->path);
    free(r->content_type);
    free(r->backend);
    for (size_t i = 0; i < r->nargs; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
}

static const char *query_arg(void *ctx, const char *name)
{
    const fuzz_req_t *r = ctx;
    for (size_t i = 0; i < r->nargs; i++)
        if (strcmp(r->names[i], name) == 0)
            return r->values[i];
    return NULL;
}

/* ---- the fake backend ------------------------------------------------------ */

typedef enum { BE_FULL, BE_NONE, BE_EMPTY, BE_NULL, BE_STATUS } be_mode_t;

typedef enum { CALL_NONE, CALL_FLAGGED, CALL_TOKEN, CALL_ACTION, CALL_STATS } call_t;

typedef struct fake {
    be_mode_t mode;
    int status;              /* BE_STATUS */
    const fuzz_req_t *req;
    int calls;
    call_t last;
    char *answer;            /* the body handed to the API layer */
} fake_t;

static char *canned(fake_t *f, const char *json, int *status)
{
    f->calls++;
    if (f->mode == BE_NULL) {
        f->answer = NULL;
        return NULL;
    }
    if (f->mode == BE_STATUS)
        *status = f->status;
    f->answer = fuzz_strndup(json, strlen(json));
    return f->answer;
}

/* The id in the path must be the one the backend gets. */
static void check_path_id(const char *path, uint64_t id, const char *suffix)
{
    char want[128], ids[TW_TOKENID_STR_LEN + 1];
    snprintf(want, sizeof want, "/api/v1/tokens/%s%s", tw_tokenid_format(id, ids), suffix);
    FUZZ_CHECK(strcmp(path, want) == 0);
}

static bool is_get(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

/* The value of a query parameter as the API reads it: NULL when absent or
 * empty. */
static const char *param(const fuzz_req_t *r, const char *name)
{
    const char *v = query_arg((void *)r, name);
    return v && v[0] ? v : NULL;
}

static char *fake_flagged(void *ctx, const tw_api_query_t *q, int *status)
{
    fake_t *f = ctx;
    const fuzz_req_t *r = f->req;
    FUZZ_CHECK(f->calls == 0 && *status == 200);
    f->last = CALL_FLAGGED;
    FUZZ_CHECK(strcmp(r->path, "/api/v1/flagged") == 0 && is_get(r->method));
    const char *v;
    FUZZ_CHECK(q->min_severity == ((v = param(r, "severity")) ? tw_api_severity_parse(v) : -1));
    FUZZ_CHECK(q->min_severity >= -1 && q->min_severity <= 3);
    v = param(r, "state");
    FUZZ_CHECK(v ? q->state && strcmp(q->state, v) == 0 && tw_api_state_valid(v) : !q->state);
    v = param(r, "rule");
    FUZZ_CHECK(v ? q->rule && strcmp(q->rule, v) == 0 : !q->rule);
    if (q->rule) {
        size_t n = strlen(q->rule);
        FUZZ_CHECK(n >= 1 && n <= TW_API_RULE_MAX);
        FUZZ_CHECK(strspn(q->rule, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789_.-") == n);
    }
    v = param(r, "since");
    if (!v) {
        FUZZ_CHECK(q->since_ns == INT64_MIN);
    } else {
        int64_t again;
        FUZZ_CHECK(tw_api_parse_time(v, &again) == 0 && again == q->since_ns);
        /* A plain UTC second that int64 nanoseconds can hold prints back
         * as itself. */
        if (strlen(v) == 20 && v[19] == 'Z' && v[10] == 'T' && v[17] != '6' &&
            strncmp(v, "1970", 4) >= 0 && strncmp(v, "2262", 4) < 0) {
            char buf[48];
            FUZZ_CHECK(strcmp(tw_time_format_rfc3339(q->since_ns, buf, sizeof buf), v) == 0);
        }
    }
    v = param(r, "limit");
    FUZZ_CHECK(q->limit == (v ? strtoul(v, NULL, 10) : TW_API_LIMIT_DEFAULT));
    FUZZ_CHECK(q->limit >= 1 && q->limit <= TW_API_LIMIT_MAX);
    v = param(r, "offset");
    FUZZ_CHECK(q->offset == (v ? strtoul(v, NULL, 10) : 0));
    FUZZ_CHECK(q->offset <= TW_API_OFFSET_MAX);
    if (v)
        FUZZ_CHECK(strspn(v, "0123456789") == strlen(v));
    if ((v = param(r, "limit")))
        FUZZ_CHECK(strspn(v, "0123456789") == strlen(v));
    return canned(f, "{\"total\":0,\"offset\":0,\"limit\":50,\"items\":[]}", status);
}

static char *fake_token(void *ctx, uint64_t id, int *status)
{
    fake_t *f = ctx;
    FUZZ_CHECK(f->calls == 0 && *status == 200);
    f->last = CALL_TOKEN;
    FUZZ_CHECK(is_get(f->req->method));
    check_path_id(f->req->path, id, "");
    return canned(f, "{\"token_id\":\"tw_0000000000000000\",\"state\":\"flagged\"}", status);
}

/* Code points of s if it is well-formed UTF-8 (tw_utf8_seq_len), else -1;
 * *ctrl is set when it holds a control character (C0, DEL, C1) other than
 * those in allowed. */
static long code_points(const char *s, const char *allowed, bool *ctrl)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    long cps = 0;
    *ctrl = false;
    for (size_t i = 0; i < n; cps++) {
        size_t l = tw_utf8_seq_len(p + i, n - i);
        if (l == 0)
            return -1;
        if (l == 1 && (p[i] < 0x20 || p[i] == 0x7f) && !strchr(allowed, p[i]))
            *ctrl = true;
        if (l == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0)
            *ctrl = true;
        i += l;
    }
    return cps;
}

static char *fake_action(void *ctx, uint64_t id, tw_api_action_t a, const char *analyst,
                         const char *note, int *status)
{
    fake_t *f = ctx;
    const fuzz_req_t *r = f->req;
    FUZZ_CHECK(f->calls == 0 && *status == 200);
    f->last = CALL_ACTION;
    FUZZ_CHECK(strcmp(r->method, "POST") == 0);
    FUZZ_CHECK((unsigned)a < 4);
    char suffix[32];
    snprintf(suffix, sizeof suffix, "/%s", tw_api_action_name(a));
    check_path_id(r->path, id, suffix);
    FUZZ_CHECK(r->content_type != NULL);
    const char *ct = r->content_type + strspn(r->content_type, " \t");
    FUZZ_CHECK(strncasecmp(ct, "application/json", 16) == 0);
    FUZZ_CHECK(r->body_len >= 1 && r->body_len <= TW_API_BODY_MAX);
    FUZZ_CHECK(memchr(r->body, '\0', r->body_len) == NULL);
    bool ctrl;
    long n = code_points(analyst, "", &ctrl);
    FUZZ_CHECK(n >= 1 && n <= TW_API_ANALYST_MAX && !ctrl);
    FUZZ_CHECK(analyst[strspn(analyst, " \t\n")] != '\0');
    n = code_points(note, "\n\t", &ctrl);
    FUZZ_CHECK(n >= 0 && n <= TW_API_NOTE_MAX && !ctrl);
    /* Both strings are in the body (the API does not invent them). */
    FUZZ_CHECK(strlen(analyst) <= r->body_len && strlen(note) <= r->body_len);
    return canned(f, "{\"token_id\":\"tw_0000000000000000\",\"state\":\"acked\"}", status);
}

static char *fake_stats(void *ctx, int *status)
{
    fake_t *f = ctx;
    FUZZ_CHECK(f->calls == 0 && *status == 200);
    f->last = CALL_STATS;
    FUZZ_CHECK(strcmp(f->req->path, "/api/v1/stats") == 0 && is_get(f->req->method));
    return canned(f, "{\"tracked\":0,\"flagged\":0,\"frozen\":0}", status);
}

/* ---- a reference model of the routing -------------------------------------- */

typedef enum { REF_PASS, REF_404, REF_405_GET, REF_405_POST, REF_400_ID, REF_415 } ref_t;

static bool json_type(const char *ct)
{
    /* The plain forms must pass; anything not starting with the media type
     * must not. Parameters in between are the API's to judge. */
    return ct && (strcasecmp(ct, "application/json") == 0 ||
                  strcasecmp(ct, "application/json; charset=utf-8") == 0);
}

static bool not_json_type(const char *ct)
{
    return !ct || strncasecmp(ct + strspn(ct, " \t"), "application/json", 16) != 0;
}

/* What tw_api_precheck must decide; *unsure for a content type between the
 * two plain cases. */
static ref_t reference(const fuzz_req_t *r, call_t *route, bool *unsure)
{
    static const char prefix[] = "/api/v1/";
    *unsure = false;
    *route = CALL_NONE;
    if (strncmp(r->path, prefix, sizeof prefix - 1) != 0)
        return REF_404;
    const char *p = r->path + sizeof prefix - 1;
    const char *id = NULL;
    size_t idn = 0;
    if (strcmp(p, "flagged") == 0) {
        *route = CALL_FLAGGED;
    } else if (strcmp(p, "stats") == 0) {
        *route = CALL_STATS;
    } else if (strncmp(p, "tokens/", 7) == 0) {
        id = p + 7;
        const char *slash = strchr(id, '/');
        idn = slash ? (size_t)(slash - id) : strlen(id);
        if (idn == 0)
            return REF_404;
        if (!slash) {
            *route = CALL_TOKEN;
        } else {
            const char *act = slash + 1;
            if (strcmp(act, "ack") && strcmp(act, "unfreeze") && strcmp(act, "confirm") &&
                strcmp(act, "dismiss"))
                return REF_404;
            *route = CALL_ACTION;
        }
    } else {
        return REF_404;
    }
    if (*route == CALL_ACTION ? strcmp(r->method, "POST") != 0 : !is_get(r->method))
        return *route == CALL_ACTION ? REF_405_POST : REF_405_GET;
    if (id) {
        bool ok = idn == TW_TOKENID_STR_LEN && strncmp(id, "tw_", 3) == 0 &&
                  strspn(id + 3, "0123456789abcdef") >= 16;
        if (!ok)
            return REF_400_ID;
    }
    if (*route == CALL_ACTION) {
        if (not_json_type(r->content_type))
            return REF_415;
        if (!json_type(r->content_type))
            *unsure = true;
    }
    return REF_PASS;
}

/* ---- the answer ----------------------------------------------------------- */

/* Characters that no message of api.c contains: finding one means a part of
 * the request was echoed. */
static const char never_in_messages[] = "<>@#$%&*+=?`|~^!;";

static void check_error_body(const tw_api_response_t *resp)
{
    cJSON *root = cJSON_Parse(resp->body);
    FUZZ_CHECK(cJSON_IsObject(root));
    FUZZ_CHECK(cJSON_GetArraySize(root) == 1);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    FUZZ_CHECK(cJSON_IsString(e));
    const char *m = e->valuestring;
    size_t n = strlen(m);
    FUZZ_CHECK(n > 0 && n < 512);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)m[i];
        FUZZ_CHECK(c >= 0x20 && c < 0x7f && !strchr(never_in_messages, c));
    }
    cJSON_Delete(root);
}

static void handle(const fuzz_req_t *r, fake_t *f, tw_api_response_t *resp)
{
    static const tw_api_backend_t full = {NULL, fake_flagged, fake_token, fake_action,
                                          fake_stats};
    tw_api_backend_t b = full;
    b.ctx = f;
    if (f->mode == BE_EMPTY)
        b.flagged = NULL, b.token = NULL, b.action = NULL, b.stats = NULL;
    f->calls = 0;
    f->last = CALL_NONE;
    f->answer = NULL;
    tw_api_request_t req = {
        .method = r->method,
        .path = r->path,
        .query = query_arg,
        .query_ctx = (void *)r,
        .content_type = r->content_type,
        .body = r->body_len ? r->body : NULL,
        .body_len = r->body_len,
    };
    memset(resp, 0x5a, sizeof *resp);
    tw_api_handle(f->mode == BE_NONE ? NULL : &b, &req, resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_req_t r;
    parse_request(&r, (const char *)data, size);

    fake_t f = {.mode = BE_FULL, .req = &r};
    if (r.backend) {
        if (strcmp(r.backend, "none") == 0)
            f.mode = BE_NONE;
        else if (strcmp(r.backend, "empty") == 0)
            f.mode = BE_EMPTY;
        else if (strcmp(r.backend, "null") == 0)
            f.mode = BE_NULL;
        else if (strncmp(r.backend, "status ", 7) == 0)
            f.mode = BE_STATUS, f.status = atoi(r.backend + 7);
    }

    /* The precheck alone, against the reference model. */
    tw_api_request_t pre = {.method = r.method, .path = r.path, .query = query_arg,
                            .query_ctx = &r, .content_type = r.content_type};
    tw_api_response_t pr;
    memset(&pr, 0, sizeof pr);
    bool passed = tw_api_precheck(&pre, &pr);
    call_t route;
    bool unsure;
    ref_t want = reference(&r, &route, &unsure);
    if (passed) {
        FUZZ_CHECK(want == REF_PASS || (want == REF_415 && unsure));
    } else {
        FUZZ_CHECK(pr.body != NULL);
        check_error_body(&pr);
        FUZZ_CHECK((pr.status == 405) == (pr.allow != NULL));
        switch (want) {
        case REF_404: FUZZ_CHECK(pr.status == 404); break;
        case REF_405_GET: FUZZ_CHECK(pr.status == 405 && strcmp(pr.allow, "GET, HEAD") == 0); break;
        case REF_405_POST: FUZZ_CHECK(pr.status == 405 && strcmp(pr.allow, "POST") == 0); break;
        case REF_400_ID: FUZZ_CHECK(pr.status == 400); break;
        case REF_415: FUZZ_CHECK(pr.status == 415); break;
        case REF_PASS: FUZZ_CHECK(unsure && pr.status == 415); break;
        }
    }

    tw_api_response_t resp;
    handle(&r, &f, &resp);
    FUZZ_CHECK(resp.body != NULL);
    FUZZ_CHECK(resp.status >= 100 && resp.status <= 599);
    FUZZ_CHECK(f.calls <= 1);
    if (!passed) {
        /* The whole answer is the precheck's. */
        FUZZ_CHECK(f.calls == 0);
        FUZZ_CHECK(resp.status == pr.status && strcmp(resp.body, pr.body) == 0);
        FUZZ_CHECK(resp.allow == pr.allow);
    } else if (f.calls == 1) {
        FUZZ_CHECK(f.last == route);
        bool good = f.mode != BE_NULL && (f.mode != BE_STATUS || (f.status >= 100 && f.status <= 599));
        if (good) {
            FUZZ_CHECK(resp.body == f.answer);
            FUZZ_CHECK(resp.status == (f.mode == BE_STATUS ? f.status : 200));
            FUZZ_CHECK(resp.allow == NULL);
        } else {
            FUZZ_CHECK(resp.status == 500);
            check_error_body(&resp);
        }
    } else {
        /* Refused after the precheck (query, body) or no backend. */
        FUZZ_CHECK(resp.status == 400 || resp.status == 413 || resp.status == 503);
        FUZZ_CHECK(resp.allow == NULL);
        check_error_body(&resp);
        if (resp.status == 503)
            FUZZ_CHECK(f.mode == BE_NONE || f.mode == BE_EMPTY);
        if (resp.status == 413)
            FUZZ_CHECK(route == CALL_ACTION && r.body_len > TW_API_BODY_MAX);
        if (route == CALL_ACTION && r.body_len == 0)
            FUZZ_CHECK(resp.status == 400);
        if (route == CALL_ACTION && r.body_len > TW_API_BODY_MAX)
            FUZZ_CHECK(resp.status == 413);
        if (route == CALL_TOKEN || route == CALL_STATS)
            FUZZ_CHECK(resp.status == 503); /* nothing to refuse after the precheck */
    }

    if (getenv("TW_FUZZ_VERBOSE"))
        fprintf(stderr, "  %s %s -> %d %s\n", r.method, r.path, resp.status,
                f.calls ? "(backend)" : resp.body);

    /* The same request again: the same answer. */
    tw_api_response_t again;
    handle(&r, &f, &again);
    FUZZ_CHECK(again.status == resp.status && again.allow == resp.allow);
    FUZZ_CHECK(again.body && strcmp(again.body, resp.body) == 0);

    free(again.body);
    free(resp.body);
    free(pr.body);
    free_request(&r);
    return 0;
}
