/*
 * format.h — log format definitions (rules/formats/NAME.json) and the line
 * parser that turns one log line into one auth event.
 *
 * A format is loaded once (JSON file → validated definition, PCRE2 pattern
 * compiled with JIT) and is immutable afterwards, so it may be shared by
 * threads. A parser (tw_parser_t) holds the per-thread scratch state: PCRE2
 * match data and the cJSON arena. A parser is used by one thread at a time.
 *
 * Format file schema (see docs and rules/formats/):
 *   {
 *     "name":   "generic-json",            required, [A-Za-z0-9_.-]+
 *     "type":   "json" | "regex",          required
 *     "pattern": "...",                    regex only: PCRE2 with named groups
 *                                          token, ip, time, result (required)
 *                                          and optionally path, user
 *     "fields": {                          json only: dotted paths into the
 *        "token": "auth.token" | ["a.b", "c"],   object; an array lists
 *        "ip": ..., "time": ..., "result": ...,  alternatives, first present
 *        "user": ..., "path": ... },             non-empty wins. token, ip,
 *                                                time required; result optional
 *     "time_format": "auto"|"rfc3339"|"epoch"|"epoch_ms"|"syslog", default auto
 *     "rejected": {                        how a rejection is recognised
 *        "field": "result",                one of the event fields (json: or
 *                                          any dotted path)
 *        "equals": ["denied", "401"],      exact match on any of these, or
 *        "contains": ["permission denied"] substring match on any of these
 *     },                                   a missing field counts as "not rejected"
 *     "filter": {"field": "type", "equals": ["response"]}
 *                                          optional: lines whose field does not
 *                                          match are ignored (not checks, not errors)
 *   }
 * JSON number values are accepted for time (epoch) and result (e.g. 401).
 */
#ifndef TW_FORMAT_H
#define TW_FORMAT_H

#include "common.h"

typedef enum {
    TW_PARSE_OK = 0,       /* ev holds one auth check */
    TW_PARSE_IGNORED = 1,  /* filtered out by the format (e.g. Vault "request") */
    TW_PARSE_ERROR = 2,    /* malformed: ev->error says why */
} tw_parse_status_t;

typedef enum {
    TW_PERR_NO_MATCH = 0,      /* regex did not match */
    TW_PERR_INVALID_JSON,      /* not a JSON object */
    TW_PERR_MISSING_FIELD,     /* a required field is absent or empty */
    TW_PERR_BAD_TIME,          /* time field does not parse */
    TW_PERR__COUNT
} tw_parse_error_t;

/* Stable metric label values: "no_match", "invalid_json", "missing_field",
 * "bad_time". */
const char *tw_parse_error_name(tw_parse_error_t e);

/* One parsed auth check. Slices point into the line or the parser's scratch
 * and stay valid until the next tw_parser_parse() on the same parser. Absent
 * optional fields have n == 0. */
typedef struct tw_event {
    tw_slice_t token;
    tw_slice_t ip;
    tw_slice_t user;
    tw_slice_t path;
    tw_slice_t result;
    int64_t time_ns;
    bool rejected;
    tw_parse_error_t error;    /* valid when status is TW_PARSE_ERROR */
    const char *error_field;   /* field name for MISSING_FIELD/BAD_TIME, else NULL;
                                  static or owned by the format */
} tw_event_t;

typedef struct tw_format tw_format_t;
typedef struct tw_formats tw_formats_t;

/* Loads every *.json in dir (sorted by file name) into a set. Any invalid
 * file fails the whole load with "FILE: JSON.PATH: expected ..." in err.
 * Duplicate names are an error. */
int tw_formats_load_dir(tw_formats_t **out, const char *dir, tw_err_t *err);
/* Loads a single format file; same validation. */
int tw_format_load_file(tw_format_t **out, const char *path, tw_err_t *err);
void tw_format_free(tw_format_t *f);
void tw_formats_free(tw_formats_t *fs);   /* NULL-safe; frees its formats */

/* Borrowed pointer owned by fs, or NULL. */
const tw_format_t *tw_formats_find(const tw_formats_t *fs, const char *name);
size_t tw_formats_count(const tw_formats_t *fs);
const tw_format_t *tw_formats_at(const tw_formats_t *fs, size_t i);
const char *tw_format_name(const tw_format_t *f);

typedef struct tw_parser tw_parser_t;

/* fmt must outlive the parser. */
tw_parser_t *tw_parser_new(const tw_format_t *fmt);
void tw_parser_free(tw_parser_t *p);   /* NULL-safe */

/* Parses line[0..len) (no newline; may contain NUL bytes or invalid UTF-8).
 * ref_ns: see tw_time_parse. Allocates nothing per call in steady state. */
tw_parse_status_t tw_parser_parse(tw_parser_t *p, const char *line, size_t len,
                                  int64_t ref_ns, tw_event_t *ev);

/* The fast paths, on by default, with the same results as the general
 * ones: JSON formats read lines in a strict subset of JSON with a scanner
 * of their own and leave every other line to cJSON (format.c, "json fast
 * path"), and a line shaped like the one before it (only its string values
 * differ) in one pass over that shape ("json shapes"); regex formats whose pattern is in fieldpat.h's subset match on
 * fieldpat instead of PCRE2. on == false sends every line through cJSON
 * or PCRE2; for tests and measurements. Returns whether a fast path is
 * now on (false for patterns outside the subset). Same thread rules as
 * tw_parser_parse(). */
bool tw_parser_fast(tw_parser_t *p, bool on);

/* Lines a JSON parser has read by the previous line's shape (format.c,
 * "json shapes"), since it was made; 0 for regex formats. For tests and
 * measurements. */
uint64_t tw_parser_shape_hits(const tw_parser_t *p);

#endif
