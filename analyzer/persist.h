/*
 * persist.h — the learned baselines on disk: every token and principal
 * baseline of a detector saved to state_dir/baselines.bin and loaded back at
 * start, so a restart keeps what was learned (no new learning period).
 *
 * What it promises:
 * - A save is atomic: the file is streamed to PATH.tmp (mode 0600) through a
 *   buffered writer (never a copy of the tables in memory), fsync'd, renamed
 *   over PATH, and the directory is fsync'd. A crash or an error at any
 *   point leaves the previous file as it was; on error the temp file is
 *   removed.
 * - The format (described in persist.c) is versioned, little-endian and
 *   encoded field by field, and ends with a BLAKE2b-256 checksum of
 *   everything before it (libsodium crypto_generichash). A load checks
 *   magic, version, length and checksum before it decodes anything, then
 *   validates every field, so neither a damaged file nor a hostile one
 *   with a valid checksum can put an impossible baseline in the tables.
 *   A load never allocates more than the file's size justifies.
 * - The recency (LRU) order of both tables and each token's principal link
 *   (tw_token_t.aux) are kept. When the file holds more entries than a
 *   table's bound (max_tokens was lowered), the most recently used ones are
 *   kept and a log line says how many were dropped.
 * - City and time-zone names are stored as strings (at most TW_GEO_STR_MAX
 *   bytes; time zones must be IANA-style names) and re-interned in the
 *   detector's GeoIP handle on load, so they compare by pointer as before;
 *   a detector without GeoIP stores and restores them as "".
 * - Raw tokens never reach the file: it holds token ids (keyed hashes).
 *
 * Threading: both calls run on the analysis thread, which owns the tables
 * (STYLE.md §7); the save blocks it for the duration (see the bench:
 * bench/state_save.c).
 */
#ifndef TW_PERSIST_H
#define TW_PERSIST_H

#include "common.h"
#include "detect.h"

#include <stdint.h>

#define TW_PERSIST_FILE "baselines.bin"   /* in state_dir */
#define TW_PERSIST_VERSION 1              /* format version written and read */

typedef struct tw_persist_stats {
    uint64_t tokens, principals;   /* entries written / put into the tables */
    uint64_t bytes;                /* size of the file written / read */
    double seconds;                /* wall time of the call (monotonic clock) */
} tw_persist_stats_t;

/*
 * Writes both tables of d to path atomically (mode 0600). The tables are
 * only read (pending hour counts are saved as they are, not flushed).
 * Returns 0, or -1 with err ("PATH.tmp: write failed: No space left on
 * device", ...): the previous file at path stays intact and the temp file is
 * removed. A baseline that the loader would refuse (an invariant broken in
 * memory) fails the save with an error naming its token id rather than
 * writing a file that would not load. st may be NULL.
 */
int tw_persist_save(tw_detect_t *d, const char *path, tw_persist_stats_t *st, tw_err_t *err);

/*
 * Loads path into d, whose tables must be empty (a fresh detector), then
 * recomputes d's flagged count. Returns 0 when loaded; 1 when path does not
 * exist (nothing loaded, first start); -1 with err "PATH: <what is wrong>
 * (...)" for an unreadable, truncated, corrupt (checksum mismatch),
 * foreign (bad magic) or newer-version file ("PATH: written by a newer
 * tokenwatch (format version N, this build reads up to 1)"), or one with an
 * impossible field value. On -1 the tables of d are left empty (and valid).
 * st may be NULL.
 */
int tw_persist_load(tw_detect_t *d, const char *path, tw_persist_stats_t *st, tw_err_t *err);

#endif
