/*
 * tail.h — follows many log files with tail -F semantics, losslessly.
 *
 * For each input (a name and a path) the follower keeps the file currently
 * at the path open, reads it in big blocks through a linebuf and hands each
 * complete line to the input's handler. It detects:
 *   - rename rotation: the path now names another file (dev/ino differ). The
 *     old file is kept open and drained; it is closed once it has yielded no
 *     data for rotate_wait_ms. The new file is read from its start.
 *   - copytruncate: the open file's size dropped below what was read. The
 *     pending partial line (if any) is dropped and reading restarts at 0.
 *   - delete (+ recreate): the path is gone; the old file is drained as for
 *     a rename; a file that later appears at the path is read from 0.
 *   - a path that does not exist yet: picked up from 0 when it appears.
 * inotify watches the parent directories for prompt wake-ups; every wake-up
 * and every poll interval re-stats all paths, so a lost or unsupported
 * inotify event only delays, never loses, data.
 *
 * Positions: tw_tail_positions() describes, for one input, every open file
 * (device, inode, committed offset and a fingerprint of the bytes before
 * the offset). The committed offset is always at a line boundary and covers
 * exactly the lines already handed to the handler, so the caller can save
 * positions and the counters derived from the lines in one snapshot. Giving
 * those positions back to tw_tail_add() after a restart resumes each file
 * where it stopped; a saved file that is found (at the path, or renamed in
 * the same directory) with a matching fingerprint is resumed (a renamed one
 * is drained), one whose fingerprint or size no longer matches restarts at 0.
 *
 * Threading: all calls, and all handler callbacks, happen on the caller's
 * thread (the analysis thread).
 */
#ifndef TW_TAIL_H
#define TW_TAIL_H

#include "common.h"

typedef enum {
    TW_ROTATE_RENAME = 0,    /* "rename" */
    TW_ROTATE_TRUNCATE,      /* "truncate" (copytruncate) */
    TW_ROTATE_DELETE,        /* "delete" (path removed) */
    TW_ROTATE__COUNT
} tw_rotation_t;

/* File access failures, reported each time they happen (a file that stays
 * unreadable is retried, and counted, at every poll). */
typedef enum {
    TW_TAIL_ERR_OPEN = 0,    /* "open": the path exists but cannot be opened (EACCES...) */
    TW_TAIL_ERR_READ,        /* "read": read(2) failed */
    TW_TAIL_ERR_STAT,        /* "stat": stat(2) of the path failed other than ENOENT */
    TW_TAIL_ERR_NOT_REGULAR, /* "not_regular": the path is not a regular file */
    TW_TAIL_ERR__COUNT
} tw_tail_error_t;

const char *tw_tail_error_name(tw_tail_error_t e);

typedef enum {
    TW_SKIP_TOO_LONG = 0,    /* "too_long": a line over max_line bytes */
    TW_SKIP_PARTIAL,         /* "partial": an unterminated tail dropped at
                                truncation or when a drained file was closed */
    TW_SKIP__COUNT
} tw_skip_t;

const char *tw_rotation_name(tw_rotation_t r);
const char *tw_skip_name(tw_skip_t s);

typedef struct tw_tail_handler {
    /* A complete line without its '\n' (and without a trailing '\r'). */
    void (*on_line)(void *ctx, const char *line, size_t len);
    void (*on_skip)(void *ctx, tw_skip_t reason);
    void (*on_rotate)(void *ctx, tw_rotation_t kind);
    void (*on_error)(void *ctx, tw_tail_error_t kind);   /* may be NULL */
    /* The lines handed out since the last call die now: called after each
     * block's lines, before the buffer is refilled, reset or freed. Until
     * then a line's bytes stay as they were. May be NULL. */
    void (*on_lines_done)(void *ctx);
} tw_tail_handler_t;

typedef struct tw_tail_opts {
    size_t max_line;          /* default TW_LINEBUF_DEFAULT_MAX_LINE */
    size_t block;             /* read size, default TW_LINEBUF_DEFAULT_BLOCK */
    int rotate_wait_ms;       /* drain time for rotated files, default 5000 */
    size_t poll_budget;       /* max bytes per file per tw_tail_poll, default 4 MiB */
    bool use_inotify;         /* default true; false = stat polling only */
} tw_tail_opts_t;

/* Fills o with the defaults above. */
void tw_tail_opts_default(tw_tail_opts_t *o);

/* A file position as saved in the state snapshot. */
typedef struct tw_tail_pos {
    uint64_t dev;
    uint64_t ino;
    uint64_t offset;      /* committed: at a line boundary */
    uint64_t hash;        /* tw_hash64 of the hash_len bytes before offset */
    uint32_t hash_len;    /* min(offset, 4096) */
    bool current;         /* true for the file at the path, false if draining */
} tw_tail_pos_t;

#define TW_TAIL_MAX_FILES 8   /* per input: 1 current + draining rotations */

typedef struct tw_tail tw_tail_t;

tw_tail_t *tw_tail_new(const tw_tail_opts_t *opts, tw_err_t *err);
void tw_tail_free(tw_tail_t *t);   /* NULL-safe; closes every file */

/*
 * Starts following path under the unique input name. handler and ctx are
 * borrowed and must outlive the input. saved/nsaved: positions from a
 * previous run (may be NULL/0). With no saved positions, an existing file
 * starts at its beginning (from_start) or at the end — the end meaning just
 * after its last newline, so a line being written is read whole.
 * Returns -1 only for invalid arguments (duplicate name); a missing file is
 * not an error.
 */
int tw_tail_add(tw_tail_t *t, const char *name, const char *path, bool from_start,
                const tw_tail_pos_t *saved, size_t nsaved,
                const tw_tail_handler_t *handler, void *ctx, tw_err_t *err);

/* Stops following an input and closes its files (no callbacks). Returns -1
 * if unknown. */
int tw_tail_remove(tw_tail_t *t, const char *name);

/*
 * One round over all inputs: detect rotation/truncation/appearance, read
 * available data (at most poll_budget bytes per file), invoke callbacks,
 * close drained rotated files whose rotate_wait has expired. Returns the
 * number of bytes read (0 when every file is idle).
 */
uint64_t tw_tail_poll(tw_tail_t *t);

/* Sleeps until an inotify event arrives or timeout_ms passes (or a signal
 * interrupts). Returns 1 if woken by inotify, 0 otherwise. */
int tw_tail_wait(tw_tail_t *t, int timeout_ms);
/* tw_tail_wait() that also wakes when extra_fd (-1: none) is readable;
 * returns 2 then. */
int tw_tail_wait_fd(tw_tail_t *t, int timeout_ms, int extra_fd);

/* Fills out[0..max) with the input's open files' positions (the current
 * file first, if any) and returns how many. Computes fingerprints with
 * pread. Returns 0 for an unknown input or one with no open file. */
size_t tw_tail_positions(tw_tail_t *t, const char *name, tw_tail_pos_t *out, size_t max);

/* Bytes written to the input's files but not yet read (sum over its open
 * files, as of the last poll). */
uint64_t tw_tail_lag_bytes(const tw_tail_t *t, const char *name);

#endif
