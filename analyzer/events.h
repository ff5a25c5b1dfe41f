/*
 * events.h — anomaly events as JSON lines (DESIGN.md "Anomaly event"), a
 * small hand-written JSON writer for them, and the events file sink.
 *
 * Output is deterministic: keys in a fixed order, numbers with a fixed
 * number of decimals ("%.*f", never exponent notation, never "-0"), no
 * whitespace, one object per line ending in '\n'. Numbers are written
 * without printf (exactly glibc's "%.*f" text below 2^52, printf beyond).
 *
 * String escaping (every value, whatever its source): '"' and '\\' are
 * escaped; \b \f \n \r \t use their short forms; other control bytes
 * (0x00-0x1F, 0x7F) become \u00XX; well-formed UTF-8 is copied as is;
 * every byte that is not part of a well-formed UTF-8 sequence (stray
 * continuation bytes, overlong forms, surrogates, > U+10FFFF, truncated
 * sequences) becomes \ufffd, one per byte. So any input yields valid UTF-8
 * JSON, and a SIEM sees where bytes were replaced.
 *
 * Threading: a writer or a sink belongs to one thread.
 */
#ifndef TW_EVENTS_H
#define TW_EVENTS_H

#include "common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TW_JW_DEPTH 8

/* A growable JSON writer. The buffer is reused across tw_jw_reset(), so a
 * writer allocates only until it has seen its longest line. */
typedef struct tw_jw {
    char *buf;
    size_t len, cap;
    unsigned depth;
    bool first[TW_JW_DEPTH + 1];  /* no member written yet at this depth */
} tw_jw_t;

void tw_jw_init(tw_jw_t *w);
void tw_jw_free(tw_jw_t *w);
void tw_jw_reset(tw_jw_t *w);

void tw_jw_obj_begin(tw_jw_t *w);
void tw_jw_obj_end(tw_jw_t *w);
void tw_jw_arr_begin(tw_jw_t *w);
void tw_jw_arr_end(tw_jw_t *w);
/* Writes a member name (inside an object); the next value is its value. */
void tw_jw_key(tw_jw_t *w, const char *key);
/* tw_jw_key() for a key that is a string literal of plain ASCII (no '"',
 * '\\' or control bytes, so nothing to escape): one copy of the quoted key
 * and its colon, which the macro builds at compile time. */
#define TW_JW_KEY_LIT(w, lit) tw_jw_key_raw((w), "\"" lit "\":", sizeof("\"" lit "\":") - 1)
/* Writes quoted[0..n) (a member name in quotes and ':') after the
 * separator; for TW_JW_KEY_LIT. */
void tw_jw_key_raw(tw_jw_t *w, const char *quoted, size_t n);
void tw_jw_str(tw_jw_t *w, const char *s, size_t n);
void tw_jw_cstr(tw_jw_t *w, const char *s);
void tw_jw_int(tw_jw_t *w, long long v);
/* decimals in 0..9; NaN and infinities are written as null. */
void tw_jw_double(tw_jw_t *w, double v, int decimals);
void tw_jw_bool(tw_jw_t *w, bool v);
void tw_jw_null(tw_jw_t *w);
void tw_jw_newline(tw_jw_t *w);
/* Appends n bytes as they are (the caller guarantees they are valid JSON
 * in context); the writer's separators are not updated. */
void tw_jw_raw(tw_jw_t *w, const char *s, size_t n);
/* Writes a token id as its string "tw_" + 16 hex digits. */
void tw_jw_token_id(tw_jw_t *w, uint64_t id);

/* Appends s[0..n) to out as the body of a JSON string (no quotes), escaped
 * as described above. Exposed for tests. */
void tw_json_escape(tw_jw_t *out, const char *s, size_t n);

/* The fields every anomaly event starts with, in this order. country and
 * city are omitted when NULL or "". */
typedef struct tw_anomaly_head {
    int64_t time_ns;
    uint64_t token_id;
    const char *token_hint;
    const char *rule;
    const char *kind;
    const char *severity;
    const char *action;
    tw_slice_t ip;
    const char *country;
    const char *city;
    const char *input;
} tw_anomaly_head_t;

/* Resets w and writes {"time":…,…,"input":…,"evidence":{ — the caller then
 * writes the evidence members and calls tw_anomaly_end(). */
void tw_anomaly_begin(tw_jw_t *w, const tw_anomaly_head_t *h);
/* Closes evidence and the event and appends '\n'. */
void tw_anomaly_end(tw_jw_t *w);

/*
 * The daemon's events file: JSON lines appended with O_APPEND (so a
 * collector tailing it never sees a partial rewrite) and mode 0640. Lines
 * are buffered in memory and written by tw_events_file_flush() (once per
 * read round) with write(2) loops; a failed write keeps the buffer (bounded
 * at 16 MiB, beyond which new lines are dropped and counted)
 * and is retried at the next flush.
 */
typedef struct tw_events_file tw_events_file_t;

int tw_events_file_open(tw_events_file_t **out, const char *path, tw_err_t *err);
void tw_events_file_free(tw_events_file_t *f);   /* flushes; NULL-safe */
void tw_events_file_append(tw_events_file_t *f, const char *line, size_t len);
/* Returns 0, or -1 (err filled) when the write failed. */
int tw_events_file_flush(tw_events_file_t *f, tw_err_t *err);
/* Closes the file and opens its path again (SIGHUP after logrotate). A flush
 * also reopens by itself when the path no longer names the open file. */
int tw_events_file_reopen(tw_events_file_t *f, tw_err_t *err);
uint64_t tw_events_file_dropped(const tw_events_file_t *f);
const char *tw_events_file_path(const tw_events_file_t *f);

#endif
