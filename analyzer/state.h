/*
 * state.h — the offsets snapshot: per input, the positions of its open files
 * and the exact counters the lines before those positions produced.
 *
 * Saved as one JSON document (state_dir/offsets.json, mode 0600) written
 * atomically (temp file, fsync, rename), so a crash at any instant leaves
 * either the previous or the new snapshot, never a mix: a restart resumes
 * every file at its saved offset with the counters that go with it, and no
 * line is lost or counted twice.
 *
 * 64-bit values that JSON numbers cannot hold exactly (device, inode,
 * offset, fingerprint) are stored as decimal or hex strings. The document
 * carries a "version"; a newer version or a malformed file is refused with a
 * clear error instead of being silently discarded.
 */
#ifndef TW_STATE_H
#define TW_STATE_H

#include "common.h"
#include "pipeline.h"
#include "tail.h"

#define TW_STATE_VERSION 1
#define TW_STATE_OFFSETS_FILE "offsets.json"

typedef struct tw_state_input {
    char *name;
    char *path;
    tw_input_stats_t stats;
    size_t npos;
    tw_tail_pos_t pos[TW_TAIL_MAX_FILES];
} tw_state_input_t;

typedef struct tw_state {
    size_t ninputs;
    tw_state_input_t *inputs;
} tw_state_t;

/* Loads state_dir/offsets.json. A missing file yields an empty state (first
 * start). Returns -1 with err naming the file and the problem otherwise. */
int tw_state_load(const char *state_dir, tw_state_t **out, tw_err_t *err);
void tw_state_free(tw_state_t *s);   /* NULL-safe */
const tw_state_input_t *tw_state_find(const tw_state_t *s, const char *name);

/* Writes the snapshot atomically. Names and paths are borrowed. */
int tw_state_save(const char *state_dir, const tw_state_input_t *inputs, size_t n,
                  tw_err_t *err);

/* Creates state_dir (mode 0700) if needed and checks it is writable. */
int tw_state_prepare_dir(const char *state_dir, tw_err_t *err);

#endif
