/*
 * tw_test.h — a minimal unit-test harness: checks count failures and keep
 * going; tw_test_done() prints "N passed, M failed" and returns the exit code.
 */
#ifndef TW_TEST_H
#define TW_TEST_H

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int tw_test_pass, tw_test_fail;

#define TW_CHECK(cond)                                                        \
    do {                                                                      \
        if (cond) {                                                           \
            tw_test_pass++;                                                   \
        } else {                                                              \
            tw_test_fail++;                                                   \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                     \
    } while (0)

#define TW_CHECK_INT(a, b)                                                    \
    do {                                                                      \
        long long tw_a_ = (long long)(a), tw_b_ = (long long)(b);             \
        if (tw_a_ == tw_b_) {                                                 \
            tw_test_pass++;                                                   \
        } else {                                                              \
            tw_test_fail++;                                                   \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, \
                    __LINE__, #a, #b, tw_a_, tw_b_);                          \
        }                                                                     \
    } while (0)

#define TW_CHECK_STR(a, b)                                                    \
    do {                                                                      \
        const char *tw_a_ = (a), *tw_b_ = (b);                                \
        if (tw_a_ && tw_b_ && strcmp(tw_a_, tw_b_) == 0) {                    \
            tw_test_pass++;                                                   \
        } else {                                                              \
            tw_test_fail++;                                                   \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n",     \
                    __FILE__, __LINE__, #a, #b, tw_a_ ? tw_a_ : "(null)",     \
                    tw_b_ ? tw_b_ : "(null)");                                \
        }                                                                     \
    } while (0)

/* Compares a slice (p, n) with a C string. */
#define TW_CHECK_SLICE(s, str)                                                \
    do {                                                                      \
        const char *tw_e_ = (str);                                            \
        if ((s).n == strlen(tw_e_) && ((s).n == 0 || memcmp((s).p, tw_e_, (s).n) == 0)) { \
            tw_test_pass++;                                                   \
        } else {                                                              \
            tw_test_fail++;                                                   \
            fprintf(stderr, "%s:%d: slice %s != \"%s\" (got \"%.*s\")\n",      \
                    __FILE__, __LINE__, #s, tw_e_, (int)(s).n, (s).p ? (s).p : ""); \
        }                                                                     \
    } while (0)

/* nftw callback of tw_test_rmtree(). */
static inline int tw_test_rm_entry(const char *path, const struct stat *st, int flag,
                                   struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes a test's temporary tree, without a shell. 0, or -1. */
static inline int tw_test_rmtree(const char *dir)
{
    return nftw(dir, tw_test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int tw_test_done(void)
{
    printf("%d passed, %d failed\n", tw_test_pass, tw_test_fail);
    return tw_test_fail == 0 ? 0 : 1;
}

#endif
