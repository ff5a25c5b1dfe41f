/*
 * tokens.c — see tokens.h.
 *
 * Index slots hold the whole id and the entry index + 1 (0 = empty slot),
 * 16 bytes, so a probe never touches an entry: the caller gets the entry's
 * address and can prefetch it while it does other work (the entry is the
 * one cache miss per event that a big table cannot avoid). The home slot
 * is the id's low bits. Deletion shifts later members of the probe run back
 * (no tombstones), so lookups stay short however many evictions happen.
 */
#include "tokens.h"
#include "common.h"

#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX
#define INDEX_MIN 1024

typedef struct slot {
    uint64_t id;
    uint32_t idx1;          /* entry index + 1; 0 = empty */
    uint32_t stamp;         /* tw_tokens_get_at()'s stamp at the last relink */
} slot_t;

struct tw_tokens {
    size_t max;
    size_t count;
    uint64_t evicted;
    tw_token_t **chunks;
    uint32_t (*links)[2];   /* [i][0] = prev, [i][1] = next; grows with chunks */
    size_t nchunks, chunks_cap;
    uint32_t used;          /* entries ever handed out (bump allocator) */
    uint32_t free_head;     /* removed entries, linked by .next */
    uint32_t head, tail;    /* newest, oldest */
    slot_t *index;
    size_t index_cap;       /* power of two */
    tw_tokens_evict_fn evict;
    void *evict_ctx;
};

/*
 * Entries are reached at random (one per event, by token id), so with a
 * big table nearly every event misses the TLB as well as the cache; in a
 * virtual machine a TLB miss walks two page tables. A chunk is therefore
 * one 2 MiB-aligned block marked for transparent huge pages, as the index
 * is (tw_xcalloc_table).
 */
static tw_token_t *chunk_new(void)
{
    return tw_xcalloc_table(1, TW_TOKENS_CHUNK_BYTES);
}

/*
 * An entry's index is its chunk's number times SLOTS_PER_CHUNK plus its
 * place in the chunk, so that finding it takes a shift and a mask rather
 * than a division by TW_TOKENS_CHUNK (several times an event). The links
 * array is indexed the same way: SLOTS_PER_CHUNK - TW_TOKENS_CHUNK of its
 * slots per chunk are never used.
 */
#define CHUNK_SHIFT 13
#define SLOTS_PER_CHUNK ((uint32_t)1 << CHUNK_SHIFT)
_Static_assert(TW_TOKENS_CHUNK <= SLOTS_PER_CHUNK, "a chunk's entries fit its index range");
_Static_assert((uint64_t)(TW_TOKENS_MAX / TW_TOKENS_CHUNK + 1) * SLOTS_PER_CHUNK < UINT32_MAX,
               "indices of TW_TOKENS_MAX entries fit 32 bits, NIL aside");

static inline tw_token_t *at(const tw_tokens_t *t, uint32_t i)
{
    return &t->chunks[i >> CHUNK_SHIFT][i & (SLOTS_PER_CHUNK - 1)];
}

tw_tokens_t *tw_tokens_new(size_t max_entries, tw_tokens_evict_fn evict, void *ctx)
{
    if (max_entries < 1 || max_entries > TW_TOKENS_MAX)
        tw_die("tw_tokens_new: max_entries %zu out of range", max_entries);
    tw_tokens_t *t = tw_xcalloc(1, sizeof *t);
    t->max = max_entries;
    t->head = t->tail = t->free_head = NIL;
    t->index_cap = INDEX_MIN;
    t->index = tw_xcalloc_table(t->index_cap, sizeof *t->index);
    t->evict = evict;
    t->evict_ctx = ctx;
    return t;
}

void tw_tokens_free(tw_tokens_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nchunks; i++)
        free(t->chunks[i]);
    free(t->chunks);
    free(t->links);
    free(t->index);
    free(t);
}

/* Slot position holding id, or the empty position where it would go. */
static size_t probe(const tw_tokens_t *t, uint64_t id, bool *found)
{
    size_t mask = t->index_cap - 1;
    size_t pos = (size_t)id & mask;
    for (;;) {
        const slot_t *s = &t->index[pos];
        if (s->idx1 == 0) {
            *found = false;
            return pos;
        }
        if (s->id == id) {
            *found = true;
            return pos;
        }
        pos = (pos + 1) & mask;
    }
}

static void index_grow(tw_tokens_t *t)
{
    size_t old_cap = t->index_cap;
    slot_t *old = t->index;
    t->index_cap = old_cap * 2;
    t->index = tw_xcalloc_table(t->index_cap, sizeof *t->index);
    size_t mask = t->index_cap - 1;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].idx1)
            continue;
        size_t pos = (size_t)old[i].id & mask;
        while (t->index[pos].idx1)
            pos = (pos + 1) & mask;
        t->index[pos] = old[i];
    }
    free(old);
}

/* Backward-shift deletion of the slot at pos. */
static void index_delete(tw_tokens_t *t, size_t pos)
{
    size_t mask = t->index_cap - 1;
    size_t hole = pos;
    size_t i = pos;
    for (;;) {
        i = (i + 1) & mask;
        slot_t s = t->index[i];
        if (!s.idx1)
            break;
        size_t home = (size_t)s.id & mask;
        /* Move s into the hole unless its home lies cyclically in (hole, i]. */
        bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!stays) {
            t->index[hole] = s;
            hole = i;
        }
    }
    t->index[hole] = (slot_t){0};
}

#define PREV(t, i) ((t)->links[i][0])
#define NEXT(t, i) ((t)->links[i][1])

static void unlink_entry(tw_tokens_t *t, uint32_t i)
{
    uint32_t p = PREV(t, i), n = NEXT(t, i);
    if (p != NIL)
        NEXT(t, p) = n;
    else
        t->head = n;
    if (n != NIL)
        PREV(t, n) = p;
    else
        t->tail = p;
    PREV(t, i) = NEXT(t, i) = NIL;
}

static void link_front(tw_tokens_t *t, uint32_t i)
{
    PREV(t, i) = NIL;
    NEXT(t, i) = t->head;
    if (t->head != NIL)
        PREV(t, t->head) = i;
    t->head = i;
    if (t->tail == NIL)
        t->tail = i;
}

static void link_back(tw_tokens_t *t, uint32_t i)
{
    NEXT(t, i) = NIL;
    PREV(t, i) = t->tail;
    if (t->tail != NIL)
        NEXT(t, t->tail) = i;
    t->tail = i;
    if (t->head == NIL)
        t->head = i;
}

tw_token_t *tw_tokens_find(tw_tokens_t *t, uint64_t id)
{
    bool found;
    size_t pos = probe(t, id, &found);
    return found ? at(t, t->index[pos].idx1 - 1) : NULL;
}

static uint32_t alloc_entry(tw_tokens_t *t)
{
    if (t->free_head != NIL) {
        uint32_t i = t->free_head;
        t->free_head = NEXT(t, i);
        return i;
    }
    if (t->used % TW_TOKENS_CHUNK == 0) {
        if (t->nchunks == t->chunks_cap) {
            t->chunks_cap = t->chunks_cap ? t->chunks_cap * 2 : 16;
            t->chunks = tw_xrealloc(t->chunks, t->chunks_cap * sizeof *t->chunks);
            t->links = tw_xrealloc(t->links, t->chunks_cap * SLOTS_PER_CHUNK * sizeof *t->links);
        }
        t->chunks[t->nchunks++] = chunk_new();
    }
    uint32_t n = t->used++;
    return (n / (uint32_t)TW_TOKENS_CHUNK) << CHUNK_SHIFT | n % (uint32_t)TW_TOKENS_CHUNK;
}

static tw_token_t *get(tw_tokens_t *t, uint64_t id, bool cold, bool force, uint32_t stamp,
                       bool *created)
{
    bool found;
    size_t pos = probe(t, id, &found);
    if (found) {
        slot_t *s = &t->index[pos];
        uint32_t i = s->idx1 - 1;
        if (!force && s->stamp == stamp) {
            *created = false;
            return at(t, i);
        }
        s->stamp = stamp;
        if (t->head != i) {
            unlink_entry(t, i);
            link_front(t, i);
        }
        *created = false;
        return at(t, i);
    }
    uint32_t i;
    if (t->count >= t->max) {
        i = t->tail;
        tw_token_t *victim = at(t, i);
        if (t->evict)
            t->evict(t->evict_ctx, victim);
        bool vf;
        size_t vpos = probe(t, victim->id, &vf);
        if (vf)
            index_delete(t, vpos);
        unlink_entry(t, i);
        t->count--;
        t->evicted++;
        pos = probe(t, id, &found);   /* the deletion may have moved slots */
    } else {
        if ((t->count + 1) * 2 > t->index_cap) {
            index_grow(t);
            pos = probe(t, id, &found);
        }
        i = alloc_entry(t);
    }
    tw_token_t *e = at(t, i);
    memset(e, 0, sizeof *e);
    e->id = id;
    t->index[pos].id = id;
    t->index[pos].idx1 = i + 1;
    /* A cold entry sits at the back until its next use, whatever the stamp. */
    t->index[pos].stamp = cold ? TW_TOKENS_STAMP_NONE : stamp;
    t->count++;
    if (cold)
        link_back(t, i);
    else
        link_front(t, i);
    *created = true;
    return e;
}

tw_token_t *tw_tokens_get(tw_tokens_t *t, uint64_t id, bool cold, bool *created)
{
    return get(t, id, cold, true, TW_TOKENS_STAMP_NONE, created);
}

tw_token_t *tw_tokens_get_at(tw_tokens_t *t, uint64_t id, bool cold, uint32_t stamp,
                             bool *created)
{
    if (stamp == TW_TOKENS_STAMP_NONE)
        stamp--;
    return get(t, id, cold, false, stamp, created);
}

void tw_tokens_prefetch(const tw_tokens_t *t, uint64_t id)
{
    __builtin_prefetch(&t->index[(size_t)id & (t->index_cap - 1)], 0, 3);
}

void tw_tokens_remove(tw_tokens_t *t, uint64_t id)
{
    bool found;
    size_t pos = probe(t, id, &found);
    if (!found)
        return;
    uint32_t i = t->index[pos].idx1 - 1;
    index_delete(t, pos);
    unlink_entry(t, i);
    NEXT(t, i) = t->free_head;
    t->free_head = i;
    t->count--;
}

size_t tw_tokens_count(const tw_tokens_t *t) { return t->count; }
size_t tw_tokens_capacity(const tw_tokens_t *t) { return t->max; }
uint64_t tw_tokens_evicted(const tw_tokens_t *t) { return t->evicted; }

size_t tw_tokens_memory(const tw_tokens_t *t)
{
    return sizeof *t + t->chunks_cap * (sizeof *t->chunks + SLOTS_PER_CHUNK * sizeof *t->links) +
           t->nchunks * TW_TOKENS_CHUNK * sizeof(tw_token_t) +
           t->index_cap * sizeof *t->index;
}

const tw_token_t *tw_tokens_oldest(const tw_tokens_t *t)
{
    return t->tail == NIL ? NULL : at(t, t->tail);
}

const tw_token_t *tw_tokens_newest(const tw_tokens_t *t)
{
    return t->head == NIL ? NULL : at(t, t->head);
}

void tw_tokens_each(const tw_tokens_t *t, bool (*fn)(void *ctx, const tw_token_t *e),
                    void *ctx)
{
    for (uint32_t i = t->head; i != NIL;) {
        const tw_token_t *e = at(t, i);
        uint32_t next = NEXT(t, i);
        if (!fn(ctx, e))
            return;
        i = next;
    }
}
