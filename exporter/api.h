/*
 * api.h — the analyst API (/api/v1/...) and the access control in front of
 * it: request validation and routing over a backend the daemon provides,
 * and the credentials (bearer token, basic-auth users) the HTTP server
 * checks. The contract is docs/api.md; the HTTP plumbing is http.c.
 *
 * What this layer promises, whatever the backend does:
 *  - a backend callback is called only for a well-formed request: a known
 *    route and method, a valid token id ("tw_" + 16 lowercase hex digits),
 *    valid query parameters, and for actions a JSON object body with an
 *    analyst (1..64 characters, no control characters) and an optional note
 *    (at most 1000 characters);
 *  - every answer is a JSON document; errors are {"error":"<sentence>"}
 *    naming the parameter or member at fault;
 *  - credentials are compared in constant time over keyed digests of equal
 *    length, and no raw credential is kept in memory after loading: only
 *    digests (and argon2id hash strings from the basic-auth file).
 *
 * Threading: the backend, the request functions and tw_api_auth_check may
 * run on several HTTP threads at once; loading and freeing credentials is
 * for one thread while no check runs on that object.
 */
#ifndef TW_API_H
#define TW_API_H

#include "common.h"

#include <stdint.h>

/* ---- the backend interface (implemented by the daemon) ---- */

typedef struct tw_api_query {
    int min_severity;  /* -1 any, 0 low .. 3 critical */
    const char *state; /* NULL any; one of tw_api_state_names */
    const char *rule;  /* NULL any */
    int64_t since_ns;  /* INT64_MIN any */
    unsigned limit, offset;
} tw_api_query_t;

typedef enum { TW_API_ACK, TW_API_UNFREEZE, TW_API_CONFIRM, TW_API_DISMISS } tw_api_action_t;

/* Each callback runs on an HTTP thread, takes whatever lock it needs itself,
 * and returns a malloc'd NUL-terminated JSON document (the response body)
 * and sets *status (200, 404, 409, 503...; *status is 200 on entry).
 * Returning NULL means 500. The API layer frees the body. analyst and note
 * are borrowed for the call; note is "" when the request had none. */
typedef struct tw_api_backend {
    void *ctx;
    char *(*flagged)(void *ctx, const tw_api_query_t *q, int *status);
    char *(*token)(void *ctx, uint64_t token_id, int *status);
    char *(*action)(void *ctx, uint64_t token_id, tw_api_action_t a, const char *analyst,
                    const char *note, int *status);
    char *(*stats)(void *ctx, int *status);
} tw_api_backend_t;

/* ---- limits and names shared with the CLI ---- */

#define TW_API_BODY_MAX 8192  /* bytes of an action's JSON body */
#define TW_API_ANALYST_MAX 64 /* characters (code points) */
#define TW_API_NOTE_MAX 1000  /* characters (code points) */
#define TW_API_LIMIT_DEFAULT 50
#define TW_API_LIMIT_MAX 500
#define TW_API_OFFSET_MAX 1000000000u
#define TW_API_RULE_MAX 64

/* NULL-terminated: observed, flagged, freezing, frozen, unfreezing,
 * unfrozen, acked, confirmed, dismissed. */
extern const char *const tw_api_state_names[];
/* NULL-terminated: low, medium, high, critical (index = severity). */
extern const char *const tw_api_severity_names[];

/* 0..3 for a severity name, -1 for anything else. */
int tw_api_severity_parse(const char *s);
bool tw_api_state_valid(const char *s);
/* "ack", "unfreeze", "confirm", "dismiss"; -1 when s is none of them. */
int tw_api_action_parse(const char *s, size_t n);
const char *tw_api_action_name(tw_api_action_t a);

/* Parses "tw_" + exactly 16 lowercase hex digits. Returns 0 and *id, or -1. */
int tw_api_parse_token_id(const char *s, size_t n, uint64_t *id);

/* Parses an RFC 3339 time ("2026-11-29T07:57:53Z", fractions and numeric
 * offsets allowed, years 0001..9999) into ns since the epoch. 0 or -1. */
int tw_api_parse_time(const char *s, int64_t *ns);

/* ---- requests ---- */

typedef struct tw_api_request {
    const char *method; /* "GET", "HEAD", "POST", ... */
    const char *path;   /* URL path without the query, starts with "/api" */
    /* The value of a query parameter (already %-decoded), NULL when absent. */
    const char *(*query)(void *ctx, const char *name);
    void *query_ctx;
    const char *content_type; /* the Content-Type header, NULL when absent */
    const char *body;         /* the request body (not NUL-terminated), may be NULL */
    size_t body_len;
} tw_api_request_t;

typedef struct tw_api_response {
    int status;
    char *body;        /* malloc'd JSON document; the caller frees it */
    const char *allow; /* static; the Allow header of a 405, else NULL */
} tw_api_response_t;

/* Judges what the request line and headers alone decide: the route (404),
 * the method (405), the token id (400) and, for an action, the content
 * type (415). Returns true when the request may go on (an action's body
 * may then be read, at most TW_API_BODY_MAX bytes); false with *resp
 * filled. Does not call the backend. Any thread. */
bool tw_api_precheck(const tw_api_request_t *req, tw_api_response_t *resp);

/* Handles a request (precheck included): validates the query or the body,
 * calls the backend and fills *resp (always). b is borrowed. Any thread. */
void tw_api_handle(const tw_api_backend_t *b, const tw_api_request_t *req,
                   tw_api_response_t *resp);

/* {"error":"<msg>"} as a fresh string; msg is escaped as JSON. */
char *tw_api_error_json(const char *msg);

/* ---- access control ---- */

typedef struct tw_api_auth tw_api_auth_t;

typedef enum {
    TW_AUTH_OK = 0,
    TW_AUTH_MISSING, /* no (usable) Authorization header */
    TW_AUTH_INVALID, /* credentials given, and wrong */
} tw_auth_result_t;

/* Which credential kinds a check accepts. */
#define TW_AUTH_BEARER 1u
#define TW_AUTH_BASIC 2u

/* Loads the credentials: bearer_file holds one token (a trailing newline is
 * stripped); basic_file holds "user:password" or "user:$argon2id$..." lines
 * ('#' comments and blank lines ignored). Either may be NULL; both NULL
 * gives an object that accepts nothing (tw_api_auth_kinds() == 0). Both
 * files must be regular files readable by their owner only (no group or
 * other permission bits). On error returns -1 with err = "FILE: what is
 * wrong" (line numbers for the basic file) and never the secret itself. */
int tw_api_auth_load(tw_api_auth_t **out, const char *bearer_file, const char *basic_file,
                     tw_err_t *err);
void tw_api_auth_free(tw_api_auth_t *a); /* NULL-safe; wipes the digests */

/* TW_AUTH_BEARER | TW_AUTH_BASIC as configured. */
unsigned tw_api_auth_kinds(const tw_api_auth_t *a);

/* Checks an Authorization header value (NULL when absent) against the
 * credentials of the kinds in `accept` that are configured. An argon2id
 * basic password costs one verification (serialised: at most one runs at a
 * time) unless the same credentials succeeded recently. Any thread. */
tw_auth_result_t tw_api_auth_check(tw_api_auth_t *a, const char *authorization,
                                   unsigned accept);

/* Hashes a password for the basic-auth file (argon2id, libsodium's
 * "interactive" limits) into out (cap >= 128). 0, or -1 (out of memory). */
int tw_api_hash_password(const char *password, size_t len, char *out, size_t cap);

#endif
