/* test_tokens.c — the token table: find/insert, exact LRU eviction, cold
 * inserts, removal with backward-shift deletion, pointer stability. */
#include "tokens.h"
#include "tw_test.h"

#include <stdlib.h>

static uint64_t evicted_ids[64];
static int nevicted;

static void on_evict(void *ctx, const tw_token_t *v)
{
    (void)ctx;
    if (nevicted < 64)
        evicted_ids[nevicted++] = v->id;
}

/* Ids that all share the same home slot, to exercise probe runs. */
static uint64_t colliding(unsigned i) { return ((uint64_t)(i + 1) << 40) | 0x5; }

int main(void)
{
    bool created;
    /* Basic insert/find and recency order. */
    tw_tokens_t *t = tw_tokens_new(3, on_evict, NULL);
    tw_token_t *a = tw_tokens_get(t, 100, false, &created);
    TW_CHECK(created);
    a->b.events = 7;
    tw_tokens_get(t, 200, false, &created);
    tw_tokens_get(t, 300, false, &created);
    TW_CHECK_INT(tw_tokens_count(t), 3);
    TW_CHECK(tw_tokens_find(t, 100) == a);
    TW_CHECK_INT(tw_tokens_oldest(t)->id, 100);
    TW_CHECK_INT(tw_tokens_newest(t)->id, 300);
    /* Touching 100 makes 200 the longest idle. */
    TW_CHECK(tw_tokens_get(t, 100, false, &created) == a);
    TW_CHECK(!created);
    TW_CHECK_INT(a->b.events, 7);
    tw_tokens_get(t, 400, false, &created);
    TW_CHECK_INT(nevicted, 1);
    TW_CHECK_INT(evicted_ids[0], 200);
    TW_CHECK(tw_tokens_find(t, 200) == NULL);
    TW_CHECK_INT(tw_tokens_evicted(t), 1);
    TW_CHECK_INT(tw_tokens_count(t), 3);
    /* A cold insert goes to the back and is the next victim. */
    tw_tokens_get(t, 500, true, &created);   /* evicts 300 (oldest) */
    TW_CHECK_INT(evicted_ids[1], 300);
    TW_CHECK_INT(tw_tokens_oldest(t)->id, 500);
    tw_tokens_get(t, 600, false, &created);
    TW_CHECK_INT(evicted_ids[2], 500);
    /* A recycled entry starts zeroed. */
    tw_token_t *n = tw_tokens_find(t, 600);
    TW_CHECK(n && n->b.events == 0 && n->aux == 0);
    tw_tokens_free(t);

    /* Collisions: one probe run, removals from its middle keep the rest
     * findable (backward-shift deletion). */
    t = tw_tokens_new(1000, NULL, NULL);
    for (unsigned i = 0; i < 200; i++)
        tw_tokens_get(t, colliding(i), false, &created)->b.events = i;
    for (unsigned i = 0; i < 200; i += 3)
        tw_tokens_remove(t, colliding(i));
    int ok = 1;
    for (unsigned i = 0; i < 200; i++) {
        tw_token_t *e = tw_tokens_find(t, colliding(i));
        if ((i % 3 == 0) != (e == NULL) || (e && e->b.events != i))
            ok = 0;
    }
    TW_CHECK(ok);
    TW_CHECK_INT(tw_tokens_count(t), 200 - 67);
    tw_tokens_free(t);

    /* Many entries, a bound, pointer stability, and exact LRU order under
     * a long random workload checked against a model (timestamps). */
    enum { MAX = 5000, KEYS = 20000, OPS = 200000 };
    t = tw_tokens_new(MAX, NULL, NULL);
    uint64_t *last = calloc(KEYS, sizeof *last);
    srand(7);
    int lru_ok = 1, stable_ok = 1;
    tw_token_t *pinned = tw_tokens_get(t, 1ULL << 50, false, &created);
    for (uint64_t op = 1; op <= OPS; op++) {
        unsigned k = (unsigned)rand() % KEYS;
        uint64_t id = ((uint64_t)k * 0x9E3779B97F4A7C15ULL) | 1;
        tw_token_t *e = tw_tokens_get(t, id, false, &created);
        e->b.last_ns = (int64_t)op;
        last[k] = op;
        if (op % 997 == 0) {
            /* Keep the pinned entry alive; its address must not change. */
            if (tw_tokens_get(t, 1ULL << 50, false, &created) != pinned || created)
                stable_ok = 0;
            pinned->b.last_ns = (int64_t)op;
        }
        if (op % 10007 == 0) {
            /* The oldest entry must be the one with the smallest stamp. */
            const tw_token_t *o = tw_tokens_oldest(t);
            int64_t min = INT64_MAX;
            for (unsigned j = 0; j < KEYS; j++) {
                uint64_t jid = ((uint64_t)j * 0x9E3779B97F4A7C15ULL) | 1;
                const tw_token_t *x = tw_tokens_find(t, jid);
                if (x && x->b.last_ns < min)
                    min = x->b.last_ns;
            }
            if (pinned->b.last_ns < min)
                min = pinned->b.last_ns;
            if (!o || o->b.last_ns != min)
                lru_ok = 0;
        }
    }
    TW_CHECK(lru_ok);
    TW_CHECK(stable_ok);
    TW_CHECK_INT(tw_tokens_count(t), MAX);
    TW_CHECK(tw_tokens_evicted(t) > 0);
    TW_CHECK(tw_tokens_memory(t) / MAX < 1024);
    free(last);
    tw_tokens_free(t);
    tw_tokens_free(NULL);

    /* tw_tokens_get_at(): recency at the granularity of the stamp. */
    nevicted = 0;
    t = tw_tokens_new(3, on_evict, NULL);
    tw_tokens_get_at(t, 1, false, 10, &created);
    tw_tokens_get_at(t, 2, false, 10, &created);
    tw_tokens_get_at(t, 3, false, 10, &created);
    /* Same minute: 1 stays where its first use put it (the back). */
    TW_CHECK(tw_tokens_get_at(t, 1, false, 10, &created) == tw_tokens_find(t, 1));
    TW_CHECK(!created);
    TW_CHECK_INT(tw_tokens_oldest(t)->id, 1);
    TW_CHECK_INT(tw_tokens_newest(t)->id, 3);
    /* A later minute moves it to the front: 2 is now the longest idle. */
    tw_tokens_get_at(t, 1, false, 11, &created);
    TW_CHECK_INT(tw_tokens_newest(t)->id, 1);
    TW_CHECK_INT(tw_tokens_oldest(t)->id, 2);
    tw_tokens_get_at(t, 4, false, 11, &created);
    TW_CHECK_INT(nevicted, 1);
    TW_CHECK_INT(evicted_ids[0], 2);
    /* A cold insert goes to the back and moves to the front at its next use,
     * even within the minute it was inserted in. */
    tw_tokens_get_at(t, 5, true, 11, &created);
    TW_CHECK(created);
    TW_CHECK_INT(evicted_ids[1], 3);
    TW_CHECK_INT(tw_tokens_oldest(t)->id, 5);
    tw_tokens_get_at(t, 5, false, 11, &created);
    TW_CHECK(!created);
    TW_CHECK_INT(tw_tokens_newest(t)->id, 5);
    TW_CHECK_INT(tw_tokens_oldest(t)->id, 1);
    /* A stamp that goes back (out-of-order input) still relinks. */
    tw_tokens_get_at(t, 1, false, 9, &created);
    TW_CHECK_INT(tw_tokens_newest(t)->id, 1);
    /* The reserved stamp is accepted (treated as one less). */
    tw_tokens_get_at(t, 4, false, TW_TOKENS_STAMP_NONE, &created);
    TW_CHECK_INT(tw_tokens_newest(t)->id, 4);
    tw_tokens_get_at(t, 5, false, TW_TOKENS_STAMP_NONE - 1, &created);
    TW_CHECK_INT(tw_tokens_newest(t)->id, 5);
    tw_tokens_get_at(t, 4, false, TW_TOKENS_STAMP_NONE - 1, &created);
    TW_CHECK_INT(tw_tokens_newest(t)->id, 5);
    /* tw_tokens_get() always relinks, and so does the next get_at. */
    tw_tokens_get_at(t, 1, false, 30, &created);
    tw_tokens_get(t, 1, false, &created);
    TW_CHECK_INT(tw_tokens_newest(t)->id, 1);
    tw_tokens_get_at(t, 5, false, 30, &created);
    TW_CHECK_INT(tw_tokens_newest(t)->id, 5);
    tw_tokens_get_at(t, 1, false, 30, &created);
    TW_CHECK_INT(tw_tokens_newest(t)->id, 1);
    /* Stamps survive the backward shift of deletion: colliding ids. */
    tw_tokens_free(t);
    t = tw_tokens_new(8, NULL, NULL);
    for (unsigned i = 0; i < 4; i++)
        tw_tokens_get_at(t, colliding(i), false, 20, &created);
    tw_tokens_remove(t, colliding(0));
    tw_tokens_get_at(t, colliding(1), false, 20, &created);   /* stays at the back */
    TW_CHECK_INT(tw_tokens_oldest(t)->id, colliding(1));
    tw_tokens_get_at(t, colliding(1), false, 21, &created);
    TW_CHECK_INT(tw_tokens_newest(t)->id, colliding(1));
    TW_CHECK_INT(tw_tokens_oldest(t)->id, colliding(2));
    tw_tokens_free(t);

    printf("test_tokens: sizeof(tw_token_t)=%zu\n", sizeof(tw_token_t));
    return tw_test_done();
}
