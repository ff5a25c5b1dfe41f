/*
 * persist.c — see persist.h.
 *
 * File format, version 1. Integers are little-endian; "uv" is an unsigned
 * LEB128 varint (minimal form, at most 10 bytes), "zz" a zigzag-mapped
 * signed one; f32 is an IEEE 754 float's bits as a u32.
 *
 *   header, 40 bytes
 *      0  "TWBL"
 *      4  u32 format version (1)
 *      8  u32 flags (none defined: a set bit is refused)
 *     12  u32 reserved (0)
 *     16  u64 token records
 *     24  u64 principal records
 *     32  i64 saved at: wall clock, ns since the epoch (informative only)
 *   the token records, most recently used first (tw_tokens_each order)
 *   the principal records, most recently used first
 *   trailer, 44 bytes
 *      "TWBE", u64 bytes before the trailer,
 *      BLAKE2b-256 (unkeyed crypto_generichash) of every byte before it.
 *
 * A record is the id, a bit set of the groups that follow, the fields every
 * baseline has, and then only the groups that are not all zero — most
 * baselines have no cooldowns, a handful of active hours, one or two
 * countries, so a fixed layout (about 430 bytes) would be mostly zeros.
 * Fields marked "d" are zz deltas from the same field in the last record of
 * the same table that had it (0 before the first): records come in recency
 * order, so last uses and the window indices derived from them are close
 * to their neighbours' (a byte or two instead of four to nine). last_ns
 * wraps modulo 2^64, so every value is representable; the others must land
 * in their field's range.
 *
 *   u64 id
 *   uv  groups (G_* below; an unknown bit is refused)
 *   d   last_ns   uv last_ns - first_ns   uv events   u8 flags   u8 top_severity
 *   G_RATE  uv rate_windows  d rate_bucket  uv rate_count  f32 rate_mean  f32 rate_var
 *   G_FAIL  d bucket  uv rej_cur  uv rej_prev  uv chk_cur  uv chk_prev
 *   G_PEND  d hours_pend_hour  uv hours_pend  u8 hours_pend_how
 *   G_HOURS d hours_week  uv hours_total  u8 n (hours with a nonzero count),
 *           then n (u8 hour, u8 count) pairs, hours increasing, when n <= 20;
 *           else a 21-byte bit set of those hours followed by their n counts
 *   G_LOC   zz last_ns - loc.time_ns  str city  str time_zone  f32 lat  f32 lon
 *           uv asn  uv radius_km  2 bytes country  u8 family (0, 4 or 6) and
 *           0, 4 or 16 address bytes.  Present exactly when TW_BL_HAS_LOC is set.
 *   G_CC    u8 n (1..8), n two-letter codes (the recent-countries list)
 *   G_AUX   u64 principal id (token records only)
 *   G_ASN   u8 n (1..4), n uv (the recent-ASNs list)
 *   G_COOL  u16 bit set of rule slots (nonzero), one uv cool_until_s per bit
 *
 *   str: uv 0 = "";  1 = a new string: u8 length (1..255) and its bytes (no
 *   NUL), numbered 0, 1, 2, ... in file order;  k >= 2 = string number k - 2.
 *   Every distinct city and zone name is written once, at its first use, so
 *   the table needs neither a pre-pass when saving nor a second pass when
 *   loading.
 *
 * Loading reads the file twice through one descriptor (a replacement by
 * rename cannot change what it reads): first the checksum over everything,
 * then the records, each decoded straight into a new table entry and
 * validated there (check_baseline(), the same function that vets every
 * baseline before a save). Nothing is decoded before the checksum matched;
 * a record that fails validation after others were put in the tables (only
 * possible in a file with a valid checksum that tokenwatch did not write)
 * empties them.
 */
#include "persist.h"
#include "log.h"
#include "tokenid.h"
#include "tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_LEN 40
#define TRAILER_LEN 44
#define HASH_LEN 32
#define IO_BUF (1u << 20)
#define RECORD_MAX 2048      /* bound on one encoded record (about 1,200) */
#define RECORD_MIN 14        /* id + groups + last + span + events + flags + sev */
#define PAIRS_MAX 20         /* hour profiles with more nonzero hours use the bit set */
#define STR_MAX TW_GEO_STR_MAX

/* Format version 1 encodes these sizes: changing one needs a new version. */
_Static_assert(TW_BASELINE_HOURS == 168 && TW_BASELINE_COUNTRIES == 8 &&
                   TW_BASELINE_ASNS == 4 && TW_BASELINE_MAX_RULES == 16 && STR_MAX == 255,
               "the baselines file format (version 1) depends on these sizes");

static const char magic[4] = {'T', 'W', 'B', 'L'};
static const char end_magic[4] = {'T', 'W', 'B', 'E'};

enum {
    G_RATE = 1 << 0,
    G_FAIL = 1 << 1,
    G_PEND = 1 << 2,
    G_HOURS = 1 << 3,
    G_LOC = 1 << 4,
    G_CC = 1 << 5,
    G_AUX = 1 << 6,
    G_ASN = 1 << 7,
    G_COOL = 1 << 8,
    G_ALL = (1 << 9) - 1,
};

#define KNOWN_FLAGS                                                                        \
    (TW_BL_MATURE | TW_BL_FLAGGED | TW_BL_FROZEN | TW_BL_HAS_LOC | TW_BL_RATE_EXCL |       \
     TW_BL_WANTED)
#define SEVERITY_MAX 4       /* top_severity is tw_severity_t + 1 */

/* ======================================================================
 * Validation shared by save and load
 * ====================================================================== */

/* The names geo.c accepts from a database: [A-Za-z0-9_+-] components
 * joined by single '/' (the name becomes a path under the zoneinfo root). */
static bool tz_name_ok(const char *p, size_t n)
{
    char prev = '/';
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '+' || c == '-' || (c == '/' && prev != '/');
        if (!ok)
            return false;
        prev = c;
    }
    return n > 0 && prev != '/';
}

static bool cc_ok(const char c[2]) { return c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z'; }
static bool cc_zero(const char c[2]) { return c[0] == '\0' && c[1] == '\0'; }
static bool finite_nonneg(float f) { return isfinite(f) && f >= 0.0f; }

#define BAD(...) (snprintf(why, cap, __VA_ARGS__), -1)

/* 0 when b is a baseline the detector could have built; else -1 with what is
 * wrong in why. Strings: city at most STR_MAX bytes, time_zone "" or a
 * valid name (NULL counts as ""). */
static int check_baseline(const tw_baseline_t *b, char *why, size_t cap)
{
    if (b->flags & ~KNOWN_FLAGS)
        return BAD("flags 0x%02x has unknown bits", b->flags);
    if (b->top_severity > SEVERITY_MAX)
        return BAD("top_severity %u (expected 0-%d)", b->top_severity, SEVERITY_MAX);
    if (b->last_ns < b->first_ns)
        return BAD("last use before first use");
    if (!finite_nonneg(b->rate_mean) || !finite_nonneg(b->rate_var))
        return BAD("rate mean or variance is not a finite number >= 0");
    if (b->fail.rej_cur > b->fail.chk_cur || b->fail.rej_prev > b->fail.chk_prev)
        return BAD("more rejected checks than checks in the failure window");
    if (b->hours_pend_how >= TW_BASELINE_HOURS)
        return BAD("hours_pend_how %u (expected 0-%d)", b->hours_pend_how, TW_BASELINE_HOURS - 1);
    uint32_t sum = 0;
    for (unsigned i = 0; i < TW_BASELINE_HOURS; i++)
        sum += b->hours[i];
    if (sum != b->hours_total)
        return BAD("hours_total %" PRIu32 " but the hour profile sums to %" PRIu32,
                   b->hours_total, sum);
    bool empty = false;
    for (unsigned i = 0; i < TW_BASELINE_COUNTRIES; i++) {
        const char *c = b->countries[i];
        if (cc_zero(c)) {
            empty = true;
            continue;
        }
        if (empty)
            return BAD("recent countries: a code after an empty slot");
        if (!cc_ok(c))
            return BAD("recent countries: a code that is not two letters A-Z");
        for (unsigned j = 0; j < i; j++)
            if (memcmp(b->countries[j], c, 2) == 0)
                return BAD("recent countries: %c%c listed twice", c[0], c[1]);
    }
    empty = false;
    for (unsigned i = 0; i < TW_BASELINE_ASNS; i++) {
        if (b->asns[i] == 0) {
            empty = true;
            continue;
        }
        if (empty)
            return BAD("recent ASNs: an ASN after an empty slot");
        for (unsigned j = 0; j < i; j++)
            if (b->asns[j] == b->asns[i])
                return BAD("recent ASNs: AS%" PRIu32 " listed twice", b->asns[i]);
    }
    if (!(b->flags & TW_BL_HAS_LOC))
        return 0;
    const tw_baseline_loc_t *l = &b->loc;
    int64_t age;
    if (__builtin_sub_overflow(b->last_ns, l->time_ns, &age))
        return BAD("location time out of range");
    if (!isfinite(l->lat) || !isfinite(l->lon) || fabsf(l->lat) > 90.0f ||
        fabsf(l->lon) > 180.0f)
        return BAD("location latitude/longitude out of range");
    if (!cc_zero(l->country) && !cc_ok(l->country))
        return BAD("location country is not two letters A-Z");
    static const uint8_t zero[16];
    if (!(l->addr.family == 0 && memcmp(l->addr.bytes, zero, 16) == 0) &&
        !(l->addr.family == 4 && memcmp(l->addr.bytes + 4, zero, 12) == 0) &&
        l->addr.family != 6)
        return BAD("location address family %u (expected 0, 4 or 6)", l->addr.family);
    if (l->city && strlen(l->city) > STR_MAX)
        return BAD("location city longer than %d bytes", STR_MAX);
    if (l->time_zone && l->time_zone[0] && !tz_name_ok(l->time_zone, strlen(l->time_zone)))
        return BAD("location time zone is not an IANA-style name");
    return 0;
}

/* The previous values of the delta-coded fields (see the file comment). */
typedef struct seq {
    int64_t last_ns, rate_bucket, fail_bucket, pend_hour, hours_week;
} seq_t;

/* ======================================================================
 * Saving
 * ====================================================================== */

/* Distinct string pointers written so far -> their number. Cities and zones
 * are interned (geo.h), so one pointer per distinct name. */
typedef struct str_slot {
    const char *p;
    uint32_t idx1;   /* number + 1; 0 = empty */
} str_slot_t;

typedef struct wr {
    int fd;
    const char *tmp;
    unsigned char *buf;
    size_t len;
    uint64_t total;              /* bytes written (flushed) so far */
    crypto_generichash_state h;
    tw_err_t *err;
    bool failed;
    str_slot_t *strs;
    size_t strs_cap, nstrs;
    const char *path;
    bool principals;             /* which table the records come from */
    uint64_t written;            /* records of that table */
    seq_t prev;
} wr_t;

static int write_all(wr_t *w, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            w->failed = true;
            return tw_err_set(w->err, "%s: write failed: %s", w->tmp, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int wr_flush(wr_t *w)
{
    if (w->failed)
        return -1;
    crypto_generichash_update(&w->h, w->buf, w->len);
    if (write_all(w, w->buf, w->len) != 0)
        return -1;
    w->total += w->len;
    w->len = 0;
    return 0;
}

static inline unsigned char *put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

static inline unsigned char *put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}

static inline unsigned char *put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 8;
}

static inline unsigned char *put_f32(unsigned char *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    return put_u32(p, v);
}

static inline unsigned char *put_uv(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

static inline uint64_t zz_enc(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

static inline unsigned char *put_zz(unsigned char *p, int64_t v) { return put_uv(p, zz_enc(v)); }

static inline size_t ptr_hash(const char *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ULL;
    return (size_t)(x ^ (x >> 29));
}

static void strs_grow(wr_t *w)
{
    size_t ncap = w->strs_cap ? w->strs_cap * 2 : 1024;
    str_slot_t *ns = tw_xcalloc(ncap, sizeof *ns);
    for (size_t i = 0; i < w->strs_cap; i++) {
        if (!w->strs[i].idx1)
            continue;
        size_t j = ptr_hash(w->strs[i].p) & (ncap - 1);
        while (ns[j].idx1)
            j = (j + 1) & (ncap - 1);
        ns[j] = w->strs[i];
    }
    free(w->strs);
    w->strs = ns;
    w->strs_cap = ncap;
}

/* Writes a str (see the file comment): a reference to the string's number
 * when it was written before, else its definition. */
static unsigned char *put_str(wr_t *w, unsigned char *p, const char *s)
{
    if (!s || !s[0])
        return put_uv(p, 0);
    if ((w->nstrs + 1) * 2 > w->strs_cap)
        strs_grow(w);
    size_t j = ptr_hash(s) & (w->strs_cap - 1);
    for (; w->strs[j].idx1; j = (j + 1) & (w->strs_cap - 1))
        if (w->strs[j].p == s)
            return put_uv(p, (uint64_t)w->strs[j].idx1 + 1);
    w->strs[j] = (str_slot_t){.p = s, .idx1 = (uint32_t)++w->nstrs};
    size_t n = strlen(s);   /* <= STR_MAX: check_baseline() */
    p = put_uv(p, 1);
    *p++ = (unsigned char)n;
    memcpy(p, s, n);
    return p + n;
}

static unsigned groups_of(const tw_token_t *e)
{
    const tw_baseline_t *b = &e->b;
    unsigned g = 0;
    uint32_t mb, vb;
    memcpy(&mb, &b->rate_mean, 4);
    memcpy(&vb, &b->rate_var, 4);
    if (b->rate_windows || b->rate_bucket || b->rate_count || mb || vb)
        g |= G_RATE;
    const tw_fail_window_t *f = &b->fail;
    if (f->bucket || f->rej_cur || f->rej_prev || f->chk_cur || f->chk_prev)
        g |= G_FAIL;
    if (b->hours_pend || b->hours_pend_hour || b->hours_pend_how)
        g |= G_PEND;
    if (b->hours_week || b->hours_total)   /* total == sum: check_baseline() */
        g |= G_HOURS;
    if (b->flags & TW_BL_HAS_LOC)
        g |= G_LOC;
    if (b->countries[0][0])
        g |= G_CC;
    if (e->aux)
        g |= G_AUX;
    if (b->asns[0])
        g |= G_ASN;
    for (unsigned i = 0; i < TW_BASELINE_MAX_RULES; i++)
        if (b->cool_until_s[i]) {
            g |= G_COOL;
            break;
        }
    return g;
}

/* The delta from *prev, which becomes v. */
static inline unsigned char *put_d(unsigned char *p, int64_t v, int64_t *prev)
{
    p = put_zz(p, v - *prev);   /* |v|, |*prev| < 2^32: no overflow */
    *prev = v;
    return p;
}

static unsigned char *put_hours(wr_t *w, unsigned char *p, const tw_baseline_t *b)
{
    p = put_d(p, b->hours_week, &w->prev.hours_week);
    p = put_uv(p, b->hours_total);
    /* The nonzero hours, eight at a time: most profiles are mostly zeros. */
    uint8_t idx[TW_BASELINE_HOURS];
    unsigned n = 0;
    for (unsigned k = 0; k < TW_BASELINE_HOURS; k += 8) {
        uint64_t x;
        memcpy(&x, b->hours + k, 8);
        if (!x)
            continue;
        for (unsigned i = k; i < k + 8; i++)
            if (b->hours[i])
                idx[n++] = (uint8_t)i;
    }
    *p++ = (unsigned char)n;
    if (n <= PAIRS_MAX) {
        for (unsigned j = 0; j < n; j++) {
            *p++ = idx[j];
            *p++ = b->hours[idx[j]];
        }
        return p;
    }
    unsigned char *bits = p;
    memset(bits, 0, TW_BASELINE_HOURS / 8);
    p += TW_BASELINE_HOURS / 8;
    for (unsigned j = 0; j < n; j++) {
        bits[idx[j] / 8] |= (unsigned char)(1u << (idx[j] % 8));
        *p++ = b->hours[idx[j]];
    }
    return p;
}

static unsigned char *put_loc(wr_t *w, unsigned char *p, const tw_baseline_t *b)
{
    const tw_baseline_loc_t *l = &b->loc;
    /* Usually a small positive number. */
    p = put_zz(p, b->last_ns - l->time_ns);   /* no overflow: check_baseline() */
    p = put_str(w, p, l->city);
    p = put_str(w, p, l->time_zone);
    p = put_f32(p, l->lat);
    p = put_f32(p, l->lon);
    p = put_uv(p, l->asn);
    p = put_uv(p, l->radius_km);
    *p++ = (unsigned char)l->country[0];
    *p++ = (unsigned char)l->country[1];
    *p++ = l->addr.family;
    size_t an = l->addr.family == 4 ? 4 : l->addr.family == 6 ? 16 : 0;
    memcpy(p, l->addr.bytes, an);
    return p + an;
}

/* check_baseline() and the principal link: a token's is 0 or odd (the
 * detector sets the low bit), a principal has none; principal ids are odd. */
static int check_entry(const tw_token_t *e, bool principal, char *why, size_t cap)
{
    if (principal && !(e->id & 1))
        return BAD("principal id is even (principal ids are odd)");
    if (principal && e->aux)
        return BAD("a principal with a principal");
    if (e->aux && !(e->aux & 1))
        return BAD("principal id is even (principal ids are odd)");
    return check_baseline(&e->b, why, cap);
}

static bool put_record(void *ctx, const tw_token_t *e)
{
    wr_t *w = ctx;
    const tw_baseline_t *b = &e->b;
    char why[160];
    char idbuf[TW_TOKENID_STR_LEN + 1];
    const char *what = w->principals ? "principal" : "token";
    if (check_entry(e, w->principals, why, sizeof why) != 0) {
        w->failed = true;
        tw_err_set(w->err, "%s: %s %s: %s (not saved: the file would not load)", w->path, what,
                   tw_tokenid_format(e->id, idbuf), why);
        return false;
    }
    if (IO_BUF - w->len < RECORD_MAX && wr_flush(w) != 0)
        return false;
    unsigned char *p = w->buf + w->len;
    unsigned g = groups_of(e);
    p = put_u64(p, e->id);
    p = put_uv(p, g);
    /* Modulo 2^64 both ways: exact for any last_ns. */
    p = put_zz(p, (int64_t)((uint64_t)b->last_ns - (uint64_t)w->prev.last_ns));
    w->prev.last_ns = b->last_ns;
    p = put_uv(p, (uint64_t)b->last_ns - (uint64_t)b->first_ns);
    p = put_uv(p, b->events);
    *p++ = b->flags;
    *p++ = b->top_severity;
    if (g & G_RATE) {
        p = put_uv(p, b->rate_windows);
        p = put_d(p, b->rate_bucket, &w->prev.rate_bucket);
        p = put_uv(p, b->rate_count);
        p = put_f32(p, b->rate_mean);
        p = put_f32(p, b->rate_var);
    }
    if (g & G_FAIL) {
        p = put_d(p, b->fail.bucket, &w->prev.fail_bucket);
        p = put_uv(p, b->fail.rej_cur);
        p = put_uv(p, b->fail.rej_prev);
        p = put_uv(p, b->fail.chk_cur);
        p = put_uv(p, b->fail.chk_prev);
    }
    if (g & G_PEND) {
        p = put_d(p, b->hours_pend_hour, &w->prev.pend_hour);
        p = put_uv(p, b->hours_pend);
        *p++ = b->hours_pend_how;
    }
    if (g & G_HOURS)
        p = put_hours(w, p, b);
    if (g & G_LOC)
        p = put_loc(w, p, b);
    if (g & G_CC) {
        unsigned n = 0;
        while (n < TW_BASELINE_COUNTRIES && b->countries[n][0])
            n++;
        *p++ = (unsigned char)n;
        memcpy(p, b->countries, 2 * n);
        p += 2 * n;
    }
    if (g & G_AUX)
        p = put_u64(p, e->aux);
    if (g & G_ASN) {
        unsigned n = 0;
        while (n < TW_BASELINE_ASNS && b->asns[n])
            n++;
        *p++ = (unsigned char)n;
        for (unsigned i = 0; i < n; i++)
            p = put_uv(p, b->asns[i]);
    }
    if (g & G_COOL) {
        uint16_t bits = 0;
        for (unsigned i = 0; i < TW_BASELINE_MAX_RULES; i++)
            if (b->cool_until_s[i])
                bits |= (uint16_t)(1u << i);
        p = put_u16(p, bits);
        for (unsigned i = 0; i < TW_BASELINE_MAX_RULES; i++)
            if (b->cool_until_s[i])
                p = put_uv(p, b->cool_until_s[i]);
    }
    w->len = (size_t)(p - w->buf);
    w->written++;
    return true;
}

static int write_tables(wr_t *w, tw_detect_t *d, uint64_t nt, uint64_t np)
{
    unsigned char *p = w->buf;
    memcpy(p, magic, 4);
    p = put_u32(p + 4, TW_PERSIST_VERSION);
    p = put_u32(p, 0);
    p = put_u32(p, 0);
    p = put_u64(p, nt);
    p = put_u64(p, np);
    p = put_u64(p, (uint64_t)tw_now_ns());
    w->len = HEADER_LEN;
    w->principals = false;
    tw_tokens_each(tw_detect_tokens(d), put_record, w);
    if (w->failed)
        return -1;
    if (w->written != nt)
        return tw_err_set(w->err, "%s: the token table changed during the save", w->path);
    w->principals = true;
    w->written = 0;
    memset(&w->prev, 0, sizeof w->prev);
    tw_tokens_each(tw_detect_principals(d), put_record, w);
    if (w->failed)
        return -1;
    if (w->written != np)
        return tw_err_set(w->err, "%s: the principal table changed during the save", w->path);
    if (IO_BUF - w->len < 12 && wr_flush(w) != 0)
        return -1;
    memcpy(w->buf + w->len, end_magic, 4);
    put_u64(w->buf + w->len + 4, w->total + w->len);
    w->len += 12;
    if (wr_flush(w) != 0)
        return -1;
    unsigned char hash[HASH_LEN];
    crypto_generichash_final(&w->h, hash, sizeof hash);
    if (write_all(w, hash, sizeof hash) != 0)
        return -1;
    w->total += sizeof hash;
    return 0;
}

int tw_persist_save(tw_detect_t *d, const char *path, tw_persist_stats_t *st, tw_err_t *err)
{
    int64_t t0 = tw_mono_ns();
    if (sodium_init() < 0)
        return tw_err_set(err, "%s: libsodium could not be initialised", path);
    tw_tokens_t *tt = tw_detect_tokens(d), *pt = tw_detect_principals(d);
    uint64_t nt = tw_tokens_count(tt), np = tw_tokens_count(pt);
    char *tmp = tw_xasprintf("%s.tmp", path);
    /* A fixed name: a temp file left by a crash is replaced by the next save
     * instead of piling up. O_NOFOLLOW: never write through a planted link. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        tw_err_set(err, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    wr_t w = {.fd = fd, .tmp = tmp, .err = err, .path = path};
    w.buf = tw_xmalloc(IO_BUF);
    crypto_generichash_init(&w.h, NULL, 0, HASH_LEN);
    int rc = -1;
    if (fchmod(fd, 0600) != 0) {   /* an old temp file may have had another mode */
        tw_err_set(err, "%s: chmod failed: %s", tmp, strerror(errno));
        goto out;
    }
    if (write_tables(&w, d, nt, np) != 0)
        goto out;
    if (fsync(fd) != 0) {
        tw_err_set(err, "%s: fsync failed: %s", tmp, strerror(errno));
        goto out;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0) {
        tw_err_set(err, "%s: close failed: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        tw_err_set(err, "%s: rename to %s failed: %s", tmp, path, strerror(errno));
        goto out;
    }
    rc = 0;
    /* Make the rename durable. The new file is in place either way, so a
     * failure here is worth a warning, not a failed save. */
    char *dir = tw_dirname(path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0)
        tw_warn("%s: fsync of the directory failed: %s", dir, strerror(errno));
    if (dfd >= 0)
        close(dfd);
    free(dir);
    if (st) {
        st->tokens = nt;
        st->principals = np;
        st->bytes = w.total;
        st->seconds = (double)(tw_mono_ns() - t0) / 1e9;
    }
out:
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    free(w.buf);
    free(w.strs);
    return rc;
}

/* ======================================================================
 * Loading
 * ====================================================================== */

typedef struct str_ent {
    const char *s;   /* interned (or "" without GeoIP) */
    bool tz_ok;      /* the bytes in the file form a valid zone name */
} str_ent_t;

typedef struct rd {
    int fd;
    const char *path;
    tw_err_t *err;
    unsigned char *buf;
    size_t pos, len;             /* buf[pos..len) not yet decoded */
    uint64_t next;               /* file offset of buf[len] */
    uint64_t end;                /* file offset where the records end */
    tw_geo_t *geo;
    str_ent_t *strs;
    size_t nstrs, strs_cap;
    seq_t prev;
    /* the record being decoded, for messages */
    const char *kind;
    uint64_t index, rec_off;
} rd_t;

static uint64_t rd_offset(const rd_t *r) { return r->next - (r->len - r->pos); }

__attribute__((format(printf, 2, 3))) static int rd_fail(rd_t *r, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tw_err_set(r->err, "%s: invalid %s record %" PRIu64 " (at byte %" PRIu64 "): %s",
                      r->path, r->kind, r->index, r->rec_off, msg);
}

static ssize_t pread_full(int fd, unsigned char *p, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, p + got, n - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* Makes n bytes (<= IO_BUF) available at buf[pos]. */
static int rd_fill(rd_t *r, size_t n)
{
    size_t have = r->len - r->pos;
    memmove(r->buf, r->buf + r->pos, have);
    r->pos = 0;
    r->len = have;
    uint64_t left = r->end - r->next;
    size_t want = IO_BUF - have < left ? IO_BUF - have : (size_t)left;
    if (want > 0) {
        ssize_t k = pread_full(r->fd, r->buf + have, want, r->next);
        if (k < 0)
            return tw_err_set(r->err, "%s: read failed: %s", r->path, strerror(errno));
        if ((size_t)k != want)
            return tw_err_set(r->err, "%s: the file shrank while it was read", r->path);
        r->len += want;
        r->next += want;
    }
    if (r->len < n)
        return rd_fail(r, "it runs past the end of the records");
    return 0;
}

static inline int need(rd_t *r, size_t n) { return r->len - r->pos >= n ? 0 : rd_fill(r, n); }

static int get_u8(rd_t *r, uint8_t *v)
{
    if (need(r, 1))
        return -1;
    *v = r->buf[r->pos++];
    return 0;
}

static int get_bytes(rd_t *r, void *out, size_t n)
{
    if (need(r, n))
        return -1;
    memcpy(out, r->buf + r->pos, n);
    r->pos += n;
    return 0;
}

static int get_u64(rd_t *r, uint64_t *v)
{
    unsigned char b[8];
    if (get_bytes(r, b, 8))
        return -1;
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = (x << 8) | b[i];
    *v = x;
    return 0;
}

static int get_u16(rd_t *r, uint16_t *v)
{
    unsigned char b[2];
    if (get_bytes(r, b, 2))
        return -1;
    *v = (uint16_t)(b[0] | (unsigned)b[1] << 8);
    return 0;
}

static int get_f32(rd_t *r, float *f)
{
    unsigned char b[4];
    if (get_bytes(r, b, 4))
        return -1;
    uint32_t x = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    memcpy(f, &x, 4);
    return 0;
}

static int get_uv(rd_t *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (need(r, 1))
            return -1;
        unsigned b = r->buf[r->pos++];
        if (i == 9 && b > 1)
            return rd_fail(r, "a varint overflows 64 bits");
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (b == 0 && i > 0)
                return rd_fail(r, "a varint is not in minimal form");
            *v = x;
            return 0;
        }
    }
    return rd_fail(r, "a varint is longer than 10 bytes");
}

/* An unsigned varint of at most max; name is the field for the message. */
static int get_uvm(rd_t *r, uint64_t max, const char *name, uint64_t *v)
{
    if (get_uv(r, v))
        return -1;
    if (*v > max)
        return rd_fail(r, "%s %" PRIu64 " (expected at most %" PRIu64 ")", name, *v, max);
    return 0;
}

static int get_u32v(rd_t *r, const char *name, uint32_t *v)
{
    uint64_t x;
    if (get_uvm(r, UINT32_MAX, name, &x))
        return -1;
    *v = (uint32_t)x;
    return 0;
}

static int get_u16v(rd_t *r, const char *name, uint16_t *v)
{
    uint64_t x;
    if (get_uvm(r, UINT16_MAX, name, &x))
        return -1;
    *v = (uint16_t)x;
    return 0;
}

static int get_zz(rd_t *r, int64_t *v)
{
    uint64_t x;
    if (get_uv(r, &x))
        return -1;
    *v = (int64_t)(x >> 1) ^ -(int64_t)(x & 1);
    return 0;
}

/* A "d" field (see the file comment) that must lie in [min, max]. */
static int get_d(rd_t *r, int64_t *prev, int64_t min, int64_t max, const char *name, int64_t *v)
{
    int64_t delta;
    if (get_zz(r, &delta))
        return -1;
    if (__builtin_add_overflow(*prev, delta, v) || *v < min || *v > max)
        return rd_fail(r, "%s out of range (expected %" PRId64 " to %" PRId64 ")", name, min,
                       max);
    *prev = *v;
    return 0;
}

static int get_d32(rd_t *r, int64_t *prev, const char *name, uint32_t *v)
{
    int64_t x;
    if (get_d(r, prev, 0, UINT32_MAX, name, &x))
        return -1;
    *v = (uint32_t)x;
    return 0;
}

/* base - delta, refused when it leaves int64_t. */
static int sub_time(rd_t *r, int64_t base, int64_t delta, const char *name, int64_t *out)
{
    if (__builtin_sub_overflow(base, delta, out))
        return rd_fail(r, "%s out of range", name);
    return 0;
}

static int get_str(rd_t *r, const char **s, bool *tz_ok)
{
    uint64_t code;
    if (get_uv(r, &code))
        return -1;
    if (code == 0) {
        *s = "";
        *tz_ok = true;
        return 0;
    }
    if (code >= 2) {
        if (code - 2 >= r->nstrs)
            return rd_fail(r, "string number %" PRIu64 " not defined yet (%zu so far)", code - 2,
                           r->nstrs);
        *s = r->strs[code - 2].s;
        *tz_ok = r->strs[code - 2].tz_ok;
        return 0;
    }
    uint8_t n;
    char text[STR_MAX];
    if (get_u8(r, &n) || (n == 0 && rd_fail(r, "an empty string defined")) ||
        get_bytes(r, text, n))
        return -1;
    if (memchr(text, '\0', n))
        return rd_fail(r, "a string contains a NUL byte");
    /* At most one definition per 3 bytes of the file: bounded by its size. */
    if (r->nstrs == r->strs_cap) {
        r->strs_cap = r->strs_cap ? r->strs_cap * 2 : 256;
        r->strs = tw_xrealloc(r->strs, r->strs_cap * sizeof *r->strs);
    }
    str_ent_t *e = &r->strs[r->nstrs++];
    e->s = r->geo ? tw_geo_intern(r->geo, text, n) : "";
    e->tz_ok = tz_name_ok(text, n);
    *s = e->s;
    *tz_ok = e->tz_ok;
    return 0;
}

static int get_hours(rd_t *r, tw_baseline_t *b)
{
    uint8_t n;
    if (get_d32(r, &r->prev.hours_week, "hours_week", &b->hours_week) ||
        get_u32v(r, "hours_total", &b->hours_total) || get_u8(r, &n))
        return -1;
    if (n > TW_BASELINE_HOURS)
        return rd_fail(r, "%u nonzero hours in a %d-hour profile", n, TW_BASELINE_HOURS);
    if (n <= PAIRS_MAX) {
        int prev = -1;
        for (unsigned k = 0; k < n; k++) {
            uint8_t h, c;
            if (get_u8(r, &h) || get_u8(r, &c))
                return -1;
            if (h >= TW_BASELINE_HOURS || (int)h <= prev || c == 0)
                return rd_fail(r, "hour profile entry %u: hour %u count %u", k, h, c);
            b->hours[h] = c;
            prev = h;
        }
        return 0;
    }
    unsigned char bits[TW_BASELINE_HOURS / 8];
    if (get_bytes(r, bits, sizeof bits))
        return -1;
    unsigned set = 0;
    for (unsigned i = 0; i < sizeof bits; i++)
        set += (unsigned)__builtin_popcount(bits[i]);
    if (set != n)
        return rd_fail(r, "hour profile bit set has %u hours, expected %u", set, n);
    for (unsigned i = 0; i < TW_BASELINE_HOURS; i++) {
        if (!(bits[i / 8] >> (i % 8) & 1))
            continue;
        uint8_t c;
        if (get_u8(r, &c))
            return -1;
        if (c == 0)
            return rd_fail(r, "hour profile: hour %u listed with count 0", i);
        b->hours[i] = c;
    }
    return 0;
}

static int get_loc(rd_t *r, tw_baseline_t *b)
{
    tw_baseline_loc_t *l = &b->loc;
    int64_t delta;
    bool city_tz_ok, tz_ok;   /* a city needs no zone-name syntax */
    uint8_t cc[2];
    if (get_zz(r, &delta) || sub_time(r, b->last_ns, delta, "location time", &l->time_ns) ||
        get_str(r, &l->city, &city_tz_ok) || get_str(r, &l->time_zone, &tz_ok))
        return -1;
    if (!tz_ok)
        return rd_fail(r, "location time zone is not an IANA-style name");
    uint64_t asn, radius;
    if (get_f32(r, &l->lat) || get_f32(r, &l->lon) || get_uvm(r, UINT32_MAX, "asn", &asn) ||
        get_uvm(r, UINT16_MAX, "radius_km", &radius) || get_bytes(r, cc, 2) ||
        get_u8(r, &l->addr.family))
        return -1;
    l->asn = (uint32_t)asn;
    l->radius_km = (uint16_t)radius;
    l->country[0] = (char)cc[0];
    l->country[1] = (char)cc[1];
    if (l->addr.family != 0 && l->addr.family != 4 && l->addr.family != 6)
        return rd_fail(r, "location address family %u (expected 0, 4 or 6)", l->addr.family);
    return get_bytes(r, l->addr.bytes, l->addr.family == 4 ? 4 : l->addr.family == 6 ? 16 : 0);
}

/* Decodes one record and validates it: into a new entry of t, appended at
 * the back (records come newest first), or into *scratch when t is NULL (a
 * record the table has no room for). On -1 the entry may hold a partial,
 * invalid baseline: the caller empties the tables. */
static int get_record(rd_t *r, bool principal, tw_tokens_t *t, tw_token_t *scratch)
{
    r->rec_off = rd_offset(r);
    uint64_t id;
    if (get_u64(r, &id))
        return -1;
    tw_token_t *e = scratch;
    if (t) {
        bool created;
        e = tw_tokens_get(t, id, true, &created);   /* zeroed when created */
        if (!created) {
            char idbuf[TW_TOKENID_STR_LEN + 1];
            return rd_fail(r, "%s id %s appears twice", r->kind, tw_tokenid_format(id, idbuf));
        }
    } else {
        memset(e, 0, sizeof *e);
        e->id = id;
    }
    tw_baseline_t *b = &e->b;
    uint64_t g, span;
    int64_t dl;
    if (get_uvm(r, G_ALL, "group bit set", &g) || get_zz(r, &dl) || get_uv(r, &span) ||
        get_u32v(r, "events", &b->events) || get_u8(r, &b->flags) ||
        get_u8(r, &b->top_severity))
        return -1;
    /* Modulo 2^64, as written; first = last - span exactly (every first <=
     * last has a span). */
    b->last_ns = (int64_t)((uint64_t)r->prev.last_ns + (uint64_t)dl);
    r->prev.last_ns = b->last_ns;
    b->first_ns = (int64_t)((uint64_t)b->last_ns - span);
    if (b->first_ns > b->last_ns || (uint64_t)b->last_ns - (uint64_t)b->first_ns != span)
        return rd_fail(r, "first use out of range");
    if (!!(g & G_LOC) != !!(b->flags & TW_BL_HAS_LOC))
        return rd_fail(r, "location present and TW_BL_HAS_LOC flag disagree");
    if (g & G_RATE) {
        if (get_u16v(r, "rate_windows", &b->rate_windows) ||
            get_d32(r, &r->prev.rate_bucket, "rate_bucket", &b->rate_bucket) ||
            get_u32v(r, "rate_count", &b->rate_count) || get_f32(r, &b->rate_mean) ||
            get_f32(r, &b->rate_var))
            return -1;
    }
    if (g & G_FAIL) {
        tw_fail_window_t *f = &b->fail;
        if (get_d32(r, &r->prev.fail_bucket, "failure bucket", &f->bucket) ||
            get_u16v(r, "rej_cur", &f->rej_cur) ||
            get_u16v(r, "rej_prev", &f->rej_prev) || get_u16v(r, "chk_cur", &f->chk_cur) ||
            get_u16v(r, "chk_prev", &f->chk_prev))
            return -1;
    }
    if (g & G_PEND) {
        int64_t hour;
        if (get_d(r, &r->prev.pend_hour, INT32_MIN, INT32_MAX, "hours_pend_hour", &hour) ||
            get_u16v(r, "hours_pend", &b->hours_pend) || get_u8(r, &b->hours_pend_how))
            return -1;
        b->hours_pend_hour = (int32_t)hour;
    }
    if ((g & G_HOURS) && get_hours(r, b))
        return -1;
    if ((g & G_LOC) && get_loc(r, b))
        return -1;
    if (g & G_CC) {
        uint8_t n;
        if (get_u8(r, &n))
            return -1;
        if (n < 1 || n > TW_BASELINE_COUNTRIES)
            return rd_fail(r, "%u recent countries (expected 1-%d)", n, TW_BASELINE_COUNTRIES);
        if (get_bytes(r, b->countries, 2 * (size_t)n))
            return -1;
        for (unsigned i = 0; i < n; i++)
            if (!cc_ok(b->countries[i]))
                return rd_fail(r, "recent country %u is not two letters A-Z", i);
    }
    if ((g & G_AUX) && get_u64(r, &e->aux))
        return -1;
    if (g & G_ASN) {
        uint8_t n;
        if (get_u8(r, &n))
            return -1;
        if (n < 1 || n > TW_BASELINE_ASNS)
            return rd_fail(r, "%u recent ASNs (expected 1-%d)", n, TW_BASELINE_ASNS);
        for (unsigned i = 0; i < n; i++) {
            if (get_u32v(r, "asn", &b->asns[i]))
                return -1;
            if (b->asns[i] == 0)
                return rd_fail(r, "recent ASN %u is 0", i);
        }
    }
    if (g & G_COOL) {
        uint16_t bits;
        if (get_u16(r, &bits))
            return -1;
        if (bits == 0)
            return rd_fail(r, "an empty cooldown set");
        for (unsigned i = 0; i < TW_BASELINE_MAX_RULES; i++) {
            if (!(bits >> i & 1))
                continue;
            if (get_u32v(r, "cool_until_s", &b->cool_until_s[i]))
                return -1;
            if (b->cool_until_s[i] == 0)
                return rd_fail(r, "cooldown %u listed as 0", i);
        }
    }
    char why[160];
    if ((g & G_AUX) && !e->aux)
        return rd_fail(r, "principal link present but 0");
    if (check_entry(e, principal, why, sizeof why) != 0)
        return rd_fail(r, "%s", why);
    return 0;
}

/* Decodes n records into table t (keeping the first `cap` of them, in order
 * from newest to oldest). Returns the number put in the table, or -1. */
static int64_t get_table(rd_t *r, tw_tokens_t *t, uint64_t n, bool principal)
{
    size_t cap = tw_tokens_capacity(t);
    uint64_t kept = 0;
    tw_token_t scratch;
    r->kind = principal ? "principal" : "token";
    memset(&r->prev, 0, sizeof r->prev);
    for (uint64_t i = 0; i < n; i++) {
        r->index = i;
        /* Past the bound: older than the table can hold, validated, dropped. */
        bool keep = kept < cap;
        if (get_record(r, principal, keep ? t : NULL, &scratch) != 0)
            return -1;
        kept += keep;
    }
    return (int64_t)kept;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

/* Magic, version, flags, length and checksum: everything that does not need
 * the records decoded. Fills *nt and *np. */
static int check_file(rd_t *r, uint64_t size, uint64_t *nt, uint64_t *np)
{
    const char *path = r->path;
    unsigned char h[HEADER_LEN], t[TRAILER_LEN];
    size_t hn = size < HEADER_LEN ? (size_t)size : HEADER_LEN;
    if (pread_full(r->fd, h, hn, 0) != (ssize_t)hn)
        return tw_err_set(r->err, "%s: read failed: %s", path, strerror(errno));
    if (hn >= 4 && memcmp(h, magic, 4) != 0)
        return tw_err_set(r->err,
                          "%s: not a tokenwatch baselines file (magic %02x%02x%02x%02x, "
                          "expected \"TWBL\")",
                          path, h[0], h[1], h[2], h[3]);
    if (hn >= 8) {
        uint32_t v = le32(h + 4);
        if (v > TW_PERSIST_VERSION)
            return tw_err_set(r->err,
                              "%s: written by a newer tokenwatch (format version %" PRIu32
                              ", this build reads up to %d)",
                              path, v, TW_PERSIST_VERSION);
        if (v == 0)
            return tw_err_set(r->err, "%s: corrupt header (format version 0)", path);
    }
    if (size < HEADER_LEN + TRAILER_LEN)
        return tw_err_set(r->err,
                          "%s: truncated (%" PRIu64 " bytes, a baselines file has at least %d)",
                          path, size, HEADER_LEN + TRAILER_LEN);
    if (pread_full(r->fd, t, TRAILER_LEN, size - TRAILER_LEN) != TRAILER_LEN)
        return tw_err_set(r->err, "%s: read failed: %s", path, strerror(errno));
    if (memcmp(t, end_magic, 4) != 0)
        return tw_err_set(r->err,
                          "%s: truncated or damaged (no end marker in the last %d bytes of %" PRIu64
                          ")",
                          path, TRAILER_LEN, size);
    if (le64(t + 4) != size - TRAILER_LEN)
        return tw_err_set(r->err,
                          "%s: truncated or damaged (the trailer says %" PRIu64
                          " bytes precede it, the file has %" PRIu64 ")",
                          path, le64(t + 4), size - TRAILER_LEN);
    /* The checksum, before anything in the records is trusted. */
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, HASH_LEN);
    uint64_t covered = size - HASH_LEN;
    for (uint64_t off = 0; off < covered;) {
        size_t n = covered - off < IO_BUF ? (size_t)(covered - off) : IO_BUF;
        if (pread_full(r->fd, r->buf, n, off) != (ssize_t)n)
            return tw_err_set(r->err, "%s: read failed: %s", path,
                              errno ? strerror(errno) : "the file shrank");
        crypto_generichash_update(&hs, r->buf, n);
        off += n;
    }
    unsigned char sum[HASH_LEN];
    crypto_generichash_final(&hs, sum, sizeof sum);
    if (sodium_memcmp(sum, t + 12, HASH_LEN) != 0)
        return tw_err_set(r->err,
                          "%s: checksum mismatch (BLAKE2b-256 of its first %" PRIu64
                          " bytes differs from the trailer: the file is corrupt)",
                          path, covered);
    uint32_t flags = le32(h + 8), reserved = le32(h + 12);
    if (flags != 0 || reserved != 0)
        return tw_err_set(r->err,
                          "%s: unknown header flags (0x%08" PRIx32 ", 0x%08" PRIx32
                          "; this build knows none)",
                          path, flags, reserved);
    *nt = le64(h + 16);
    *np = le64(h + 24);
    uint64_t body = size - HEADER_LEN - TRAILER_LEN;
    if (*nt > TW_TOKENS_MAX || *np > TW_TOKENS_MAX || (*nt + *np) * RECORD_MIN > body)
        return tw_err_set(r->err,
                          "%s: corrupt header (%" PRIu64 " token and %" PRIu64
                          " principal records cannot fit in %" PRIu64 " bytes)",
                          path, *nt, *np, body);
    return 0;
}

int tw_persist_load(tw_detect_t *d, const char *path, tw_persist_stats_t *st, tw_err_t *err)
{
    int64_t t0 = tw_mono_ns();
    tw_tokens_t *tt = tw_detect_tokens(d), *pt = tw_detect_principals(d);
    if (tw_tokens_count(tt) || tw_tokens_count(pt))
        return tw_err_set(err, "%s: cannot load into a detector that already holds baselines",
                          path);
    if (sodium_init() < 0)
        return tw_err_set(err, "%s: libsodium could not be initialised", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 1;
    if (fd < 0)
        return tw_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        tw_err_set(err, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        tw_err_set(err, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    uint64_t size = (uint64_t)sb.st_size, nt = 0, np = 0;
    rd_t r = {.fd = fd, .path = path, .err = err, .geo = tw_detect_geo(d)};
    r.buf = tw_xmalloc(IO_BUF);
    int rc = -1;
    int64_t kt = 0, kp = 0;
    if (check_file(&r, size, &nt, &np) != 0)
        goto out;
    r.next = HEADER_LEN;
    r.end = size - TRAILER_LEN;
    if ((kt = get_table(&r, tt, nt, false)) < 0 || (kp = get_table(&r, pt, np, true)) < 0)
        goto out;
    if (rd_offset(&r) != r.end) {
        tw_err_set(err, "%s: corrupt (%" PRIu64 " bytes after the last record)", path,
                   r.end - rd_offset(&r));
        goto out;
    }
    rc = 0;
    tw_detect_recount(d);
    if ((uint64_t)kt < nt || (uint64_t)kp < np)
        tw_warn("%s: %" PRIu64 " token and %" PRIu64
                " principal baselines saved, max_tokens is %zu: kept the %" PRId64
                " tokens and %" PRId64 " principals used most recently, dropped %" PRIu64
                " and %" PRIu64,
                path, nt, np, tw_tokens_capacity(tt), kt, kp, nt - (uint64_t)kt,
                np - (uint64_t)kp);
    if (st) {
        st->tokens = (uint64_t)kt;
        st->principals = (uint64_t)kp;
        st->bytes = size;
        st->seconds = (double)(tw_mono_ns() - t0) / 1e9;
    }
out:
    if (rc != 0 && (tw_tokens_count(tt) || tw_tokens_count(pt)))
        tw_detect_clear(d);
    close(fd);
    free(r.buf);
    free(r.strs);
    return rc;
}
