/*
 * tokens.h — the token table: one tw_baseline_t per token id (or per
 * principal id), bounded by max_entries with exact least-recently-used
 * eviction.
 *
 * What it promises:
 * - Keys are 64-bit keyed hashes (tokenid.h), uniformly distributed and
 *   unpredictable to an attacker, so the index uses their bits directly.
 * - Entries live in chunks of TW_TOKENS_CHUNK that are allocated when needed
 *   and never moved or freed while the table lives: a tw_token_t pointer
 *   stays valid until that entry is evicted (its memory is then reused for
 *   another key). Only the index (16 bytes per slot, open addressing with
 *   linear probing, load factor at most 1/2) is ever reallocated.
 * - Eviction is exact longest-idle (with tw_tokens_get_at(): exact at the
 *   granularity of the caller's stamp, e.g. the minute): the entries form an intrusive
 *   doubly-linked recency list with 32-bit indices (kept in one array
 *   beside the entries, 8 bytes each, so moving an entry to the front touches
 *   its neighbours' links, not their cache lines); every tw_tokens_get()
 *   moves its entry to the front, and inserting into a full table recycles
 *   the entry at the back. A "cold" insert (an unknown token seen only in a
 *   rejected check) goes to the back instead, so a spray of random tokens
 *   evicts its own entries before any token that was ever used successfully.
 * - Every operation is O(1) (amortised over index growth); nothing is
 *   allocated except a new chunk every TW_TOKENS_CHUNK inserts and the index
 *   doubling.
 * - Finding an entry touches only the index (16 bytes per slot: the whole
 *   id and the entry index) and the links, never another entry; a lookup
 *   hit does not touch its own entry either, so callers can prefetch it.
 *
 * Threading: one thread (the analysis thread) owns a table; the counters
 * are plain fields read by that thread when publishing metrics.
 */
#ifndef TW_TOKENS_H
#define TW_TOKENS_H

#include "baseline.h"

#include <stddef.h>
#include <stdint.h>

/* A chunk is one 2 MiB huge page where the kernel allows (tokens.c). */
#define TW_TOKENS_CHUNK_BYTES ((size_t)2 << 20)
#define TW_TOKENS_CHUNK (TW_TOKENS_CHUNK_BYTES / sizeof(tw_token_t))
#define TW_TOKENS_MAX (1u << 28)   /* max_entries limit: 32-bit indices with room */

typedef struct tw_token {
    uint64_t id;
    uint64_t aux;                  /* the owner's (detect: principal id, 0 = none) */
    tw_baseline_t b;
} tw_token_t;

typedef struct tw_tokens tw_tokens_t;

/* Called with an entry just before it is evicted (its memory is reused). */
typedef void (*tw_tokens_evict_fn)(void *ctx, const tw_token_t *victim);

/* max_entries in [1, TW_TOKENS_MAX]. evict may be NULL. */
tw_tokens_t *tw_tokens_new(size_t max_entries, tw_tokens_evict_fn evict, void *ctx);
void tw_tokens_free(tw_tokens_t *t);   /* NULL-safe */

/* The entry for id, or NULL. Does not change recency. */
tw_token_t *tw_tokens_find(tw_tokens_t *t, uint64_t id);

/*
 * The entry for id, created (zeroed baseline, *created = true) if absent —
 * evicting the least recently used entry when the table is full. An existing
 * entry moves to the front of the recency list; a new one goes to the front,
 * or to the back when cold is true. Never NULL.
 */
tw_token_t *tw_tokens_get(tw_tokens_t *t, uint64_t id, bool cold, bool *created);

/*
 * tw_tokens_get() with recency kept at the granularity of a caller's clock:
 * stamp is the time of the use in coarse units (detect: the event's minute).
 * An existing entry moves to the front only when stamp differs from the one
 * it was last moved with; uses within one unit leave it where its first use
 * in that unit put it. Relinking touches two random neighbours' links, the
 * costliest part of a hit, and most uses of a busy token fall in the minute
 * of its previous one.
 * With stamps that never decrease the list stays ordered by the unit of
 * the last use, so the entry evicted is one whose last use lies in the
 * oldest unit of all entries: longest-idle exactly at that granularity
 * (ties within a unit are broken by the first use in it, not the last).
 * A new entry takes the stamp, except a cold one, which moves to the front
 * at its next use whatever the stamp. TW_TOKENS_STAMP_NONE is reserved (a
 * stamp equal to it is treated as one less).
 * tw_tokens_get() always relinks and clears the stamp, so the next
 * tw_tokens_get_at() of that entry relinks too.
 */
#define TW_TOKENS_STAMP_NONE UINT32_MAX
tw_token_t *tw_tokens_get_at(tw_tokens_t *t, uint64_t id, bool cold, uint32_t stamp,
                             bool *created);

/* Starts loading the index slot where id lives (no effect on state), so a
 * tw_tokens_get() after some unrelated work finds it in cache. */
void tw_tokens_prefetch(const tw_tokens_t *t, uint64_t id);

/* Removes id if present (its entry is reused by later inserts). */
void tw_tokens_remove(tw_tokens_t *t, uint64_t id);

size_t tw_tokens_count(const tw_tokens_t *t);
size_t tw_tokens_capacity(const tw_tokens_t *t);   /* max_entries */
uint64_t tw_tokens_evicted(const tw_tokens_t *t);
/* Bytes held by the table: chunks, chunk directory, index and header. */
size_t tw_tokens_memory(const tw_tokens_t *t);

/* Oldest (least recently used) and newest entries, NULL when empty; for
 * tests and diagnostics. */
const tw_token_t *tw_tokens_oldest(const tw_tokens_t *t);
const tw_token_t *tw_tokens_newest(const tw_tokens_t *t);

/* Visits every entry from newest to oldest; stops early when fn returns
 * false. */
void tw_tokens_each(const tw_tokens_t *t, bool (*fn)(void *ctx, const tw_token_t *e),
                    void *ctx);

#endif
