/*
 * common.h — error buffers, aborting allocators, byte slices, clocks and a
 * fast non-cryptographic hash shared by every tokenwatch module.
 *
 * Error convention (STYLE.md §4): a function that can fail returns 0 or -1
 * and, on -1, fills the caller's tw_err_t (which may be NULL). Allocation
 * failure is not an error that callers handle: tw_x* abort with a message.
 */
#ifndef TW_COMMON_H
#define TW_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TW_ERR_MAX 1024

typedef struct tw_err {
    char msg[TW_ERR_MAX];
} tw_err_t;

/* Formats a message into err (no-op when err is NULL). Returns -1 so that
 * callers can write `return tw_err_set(err, ...);`. */
int tw_err_set(tw_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "tokenwatch: fatal: ..." to stderr and aborts. */
_Noreturn void tw_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void *tw_xmalloc(size_t n);
void *tw_xcalloc(size_t n, size_t size);
void *tw_xrealloc(void *p, size_t n);
/* Zeroed memory for a table indexed at random on the hot path (freed with
 * free()). From 2 MiB up it is 2 MiB-aligned and advised for transparent
 * huge pages: with THP set to "madvise" (Debian's default) a plain calloc
 * gets 4 KiB pages, and nearly every probe of a table of several MiB would
 * miss the TLB as well as the cache. */
void *tw_xcalloc_table(size_t n, size_t size);
char *tw_xstrdup(const char *s);
char *tw_xstrndup(const char *s, size_t n);
/* printf into a fresh heap string. */
char *tw_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A view into bytes owned by someone else; not NUL-terminated. */
typedef struct tw_slice {
    const char *p;
    size_t n;
} tw_slice_t;

static inline bool tw_slice_eq(tw_slice_t s, const char *lit, size_t litn)
{
    return s.n == litn && (litn == 0 || memcmp(s.p, lit, litn) == 0);
}

/* Wall clock (CLOCK_REALTIME), monotonic clock and the calling thread's
 * CPU time, in nanoseconds. */
int64_t tw_now_ns(void);
int64_t tw_mono_ns(void);
int64_t tw_thread_cpu_ns(void);

/* Writes the decimal digits of v so that they end just before end (20
 * bytes before it suffice) and returns where they start. No NUL. */
char *tw_u64_digits(uint64_t v, char *end);

/* 64-bit FNV-1a over n bytes, continuing from h (start with TW_HASH_INIT).
 * Used for offset fingerprints, never for attacker-keyed tables. */
#define TW_HASH_INIT 0xcbf29ce484222325ULL
uint64_t tw_hash64(uint64_t h, const void *p, size_t n);

/* Writes a masked hint of a secret token into buf (cap >= 16): its first 3
 * and last 4 characters around "…" (e.g. "at-…9f2c"); tokens shorter than
 * 12 bytes show only their length ("(8 chars)"), since 7 of 8 characters
 * would reveal it. Non-printable bytes become '?'. Returns buf. */
char *tw_token_hint(tw_slice_t token, char *buf, size_t cap);

/* Length of the well-formed UTF-8 sequence at s (n > 0 bytes left), 1..4,
 * or 0 when the bytes there are not one (stray continuation, overlong form,
 * surrogate, beyond U+10FFFF, truncated). Accepts what Go's
 * utf8.ValidString accepts, so Prometheus and JSON consumers agree. */
size_t tw_utf8_seq_len(const unsigned char *s, size_t n);

/* Writes data to path atomically: path.tmp, fsync, rename, fsync(dir).
 * mode is the file mode (e.g. 0600). */
int tw_write_file_atomic(const char *path, const void *data, size_t len,
                         unsigned mode, tw_err_t *err);

/* Reads a whole file into a NUL-terminated heap buffer (*len excludes NUL). */
int tw_read_file(const char *path, char **out, size_t *len, tw_err_t *err);

/* Returns the directory part of path in a fresh string ("." when none). */
char *tw_dirname(const char *path);
/* Joins dir and rel unless rel is absolute. Fresh string. */
char *tw_path_join(const char *dir, const char *rel);

#endif
