/*
 * geo.c — see geo.h. libmaxminddb does the tree walk and decoding; this file
 * adds address classification, the seeded network cache and string interning.
 *
 * Invariants:
 * - A cache entry keyed at level L (a prefix length from levels4/levels6)
 *   was stored only because the database networks holding the address were
 *   at least as wide as L, so its result is exact for every address in that
 *   aligned /L block. A lookup probes each level once; at most one can hold
 *   the address while the databases do not change under an open tw_geo_t.
 * - Interned strings are never freed before tw_geo_close(), so pointers in
 *   results and cache entries stay valid.
 * - Counters have one writer (the owner thread); other threads only load them.
 */
#include "geo.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <math.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define WAYS 4
/* The longest IPv6 text is 45 characters; a zone id adds up to IFNAMSIZ. */
#define IP_TEXT_MAX 63
#define INTERN_CHUNK 16384

/* Cache granularities, coarsest first. IPv4: /24, the smallest block
 * routed between networks and a common GeoIP network size. IPv6: /48 for
 * site allocations, /64 so that a host changing its privacy address inside
 * one subnet still hits. The last level is the host. */
static const uint8_t levels4[] = {24, 32};
static const uint8_t levels6[] = {48, 64, 128};

/* Field paths, prepared once: MMDB_aget_value walks them without building
 * anything per call. City fields are read relative to their sub-map
 * ("location", then "latitude", "longitude", ...): every path from the
 * record's root would skip over the sorted keys before it ("city",
 * "continent", "country" and all they contain) again, which cost over a
 * third of a cold lookup when measured. */
static const char *const path_root[] = {NULL};
static const char *const path_country[] = {"country", NULL};
static const char *const path_iso_code[] = {"iso_code", NULL};
static const char *const path_city[] = {"city", NULL};
static const char *const path_name_en[] = {"names", "en", NULL};
static const char *const path_geoname_id[] = {"geoname_id", NULL};
static const char *const path_location[] = {"location", NULL};
static const char *const path_lat[] = {"latitude", NULL};
static const char *const path_lon[] = {"longitude", NULL};
static const char *const path_radius[] = {"accuracy_radius", NULL};
static const char *const path_tz[] = {"time_zone", NULL};
static const char *const path_asn[] = {"autonomous_system_number", NULL};
static const char *const path_asn_org[] = {"autonomous_system_organization", NULL};

typedef struct cache_key {
    uint64_t w0, w1; /* the address masked to `bits` */
    uint32_t meta;   /* family | bits << 8; 0 marks an empty slot */
} cache_key_t;

/*
 * The cache is split so that a hit touches two cache lines: the set's tag
 * line, then the one line holding the way's compact result.
 * - cache_set_t (one line per set): a 64-bit tag per way, 0 when empty. An
 *   IPv4 key fits its tag exactly (address bits in the top half, meta in
 *   the low 16 bits), so an IPv4 hit never reads anything else to confirm;
 *   an IPv6 tag is the key's hash with meta in the low 16 bits, a filter
 *   confirmed against the full key in keys6 (a separate array, untouched by
 *   IPv4). CLOCK reference bits and the hand live in the same line.
 * - cache_val_t (one line per way): the result's fields except addr, which
 *   the lookup fills from the query.
 */
typedef struct cache_set {
    uint64_t tag[WAYS];
    uint8_t ref[WAYS]; /* CLOCK reference bits */
    uint8_t hand;      /* CLOCK hand */
} __attribute__((aligned(64))) cache_set_t;

typedef struct cache_val {
    double lat, lon;
    const char *city, *time_zone, *asn_org;
    uint32_t geoname_id, asn;
    uint16_t radius_km;
    uint8_t status, located, prefix_len;
    char country[3];
} __attribute__((aligned(64))) cache_val_t;

_Static_assert(sizeof(cache_set_t) == 64, "a set's tags are one cache line");
_Static_assert(sizeof(cache_val_t) == 64, "a cached result is one cache line");

typedef struct intern_chunk {
    struct intern_chunk *next;
    size_t used, cap;
    char data[];
} intern_chunk_t;

typedef struct intern_slot {
    const char *s;
    uint32_t len, hash;
} intern_slot_t;

struct tw_geo {
    MMDB_s city, asn;
    bool has_asn;
    uint64_t hkey[2];

    void *cache_mem;    /* one allocation for the three arrays; NULL when off */
    cache_set_t *sets;  /* nsets */
    cache_val_t *vals;  /* nsets * WAYS */
    cache_key_t *keys6; /* nsets * WAYS, the full keys of IPv6 ways */
    size_t set_mask;    /* nsets - 1 */

    intern_slot_t *islots;
    size_t icap, icount;
    intern_chunk_t *chunks;

    _Atomic uint64_t n_lookups, n_status[TW_GEO_STATUS_COUNT], n_hits, n_walks, n_evictions,
        n_interned;
};

/* Single writer: a relaxed load and store is exact and needs no locked
 * instruction, while readers on other threads still see whole values. */
static inline void count(_Atomic uint64_t *c, uint64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

const char *tw_geo_status_name(tw_geo_status_t status)
{
    switch (status) {
    case TW_GEO_FOUND:
        return "found";
    case TW_GEO_NOT_FOUND:
        return "not_found";
    case TW_GEO_PRIVATE:
        return "private";
    case TW_GEO_INVALID:
        return "invalid";
    case TW_GEO_ERROR:
        return "error";
    }
    return "unknown";
}

/* ---- addresses ------------------------------------------------------------ */

/*
 * Dotted-quad IPv4 with exactly the rules of glibc's inet_pton4 (four
 * decimal octets 0..255, no leading zero, nothing else), straight from the
 * slice: the common case costs a tenth of copying the text and calling
 * inet_pton. Returns false for anything else, including text inet_pton
 * would accept if its rules ever differ, so the caller falls back to it.
 */
#ifdef __SSE2__
/*
 * The octets of real logs have one, two or three digits at random, and an
 * octet-by-octet loop mispredicts a branch at nearly every one of them
 * (about a tenth of the reader's time on text lines). Here the 7 to 15
 * bytes are classified at once, the three dots found by their bit
 * positions, and each octet's value and checks computed from its length
 * without branching on it.
 */
static inline uint32_t octet(const unsigned char *d, unsigned start, unsigned end,
                             unsigned *bad)
{
    /* The weights of an octet's first three digits, by its length. */
    static const uint8_t weight[4][3] = {{0, 0, 0}, {1, 0, 0}, {10, 1, 0}, {100, 10, 1}};
    unsigned len = end - start;   /* 1..3 when well formed */
    const uint8_t *w = weight[len & 3];
    uint32_t a = d[start];
    uint32_t v = a * w[0] + d[start + 1] * (uint32_t)w[1] + d[start + 2] * (uint32_t)w[2];
    *bad |= (unsigned)(len - 1 > 2) | ((unsigned)(len > 1) & (unsigned)(a == 0)) |
            (unsigned)(v > 255);
    return v;
}

static bool parse_v4_fast(const char *ip, size_t n, uint8_t out[4])
{
    if (n < 7 || n > 15)
        return false;
    /* The slice, zero-padded to 16 bytes, from two overlapping loads that
     * never read past its end (little-endian: byte i is bits 8i..8i+7). */
    uint64_t lo, hi;
    if (n >= 8) {
        memcpy(&lo, ip, 8);
        memcpy(&hi, ip + n - 8, 8);
        hi = n > 8 ? hi >> (8 * (16 - n)) : 0;   /* bytes 8..n-1 */
    } else {
        uint32_t l4, h4;
        memcpy(&l4, ip, 4);
        memcpy(&h4, ip + n - 4, 4);
        lo = l4 | (uint64_t)h4 << (8 * (n - 4));   /* the overlap ORs equal bytes */
        hi = 0;
    }
    __m128i v = _mm_set_epi64x((long long)hi, (long long)lo);
    __m128i d = _mm_sub_epi8(v, _mm_set1_epi8('0'));
    __m128i digit = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
    unsigned dots = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('.')));
    unsigned digits = (unsigned)_mm_movemask_epi8(digit);
    /* Digits and dots only, and exactly three dots. */
    unsigned dots2 = dots & (dots - 1), dots3 = dots2 & (dots2 - 1);
    if ((dots | digits) != (1u << n) - 1 || dots3 == 0 || (dots3 & (dots3 - 1)) != 0)
        return false;
    /* Digit values (the dots' do not matter), and zeros after them for the
     * last octet's reads past its end. */
    unsigned char buf[32];
    _mm_storeu_si128((__m128i *)buf, d);
    _mm_storeu_si128((__m128i *)(buf + 16), _mm_setzero_si128());
    unsigned p1 = (unsigned)__builtin_ctz(dots), p2 = (unsigned)__builtin_ctz(dots2),
             p3 = (unsigned)__builtin_ctz(dots3);
    unsigned bad = 0;
    uint32_t o0 = octet(buf, 0, p1, &bad), o1 = octet(buf, p1 + 1, p2, &bad),
             o2 = octet(buf, p2 + 1, p3, &bad), o3 = octet(buf, p3 + 1, (unsigned)n, &bad);
    if (bad)
        return false;
    out[0] = (uint8_t)o0;
    out[1] = (uint8_t)o1;
    out[2] = (uint8_t)o2;
    out[3] = (uint8_t)o3;
    return true;
}
#else
static bool parse_v4_fast(const char *ip, size_t n, uint8_t out[4])
{
    /* Octet by octet: one to three digits, then '.' (or the end after the
     * fourth); this is what keeps the per-byte cost low. */
    const unsigned char *p = (const unsigned char *)ip, *e = p + n;
    for (int k = 0; k < 4; k++) {
        if (p == e || (unsigned)(*p - '0') > 9)
            return false;
        unsigned v = (unsigned)(*p++ - '0');
        if (p < e && (unsigned)(*p - '0') <= 9) {
            if (v == 0)
                return false; /* leading zero */
            v = v * 10 + (unsigned)(*p++ - '0');
            if (p < e && (unsigned)(*p - '0') <= 9) {
                v = v * 10 + (unsigned)(*p++ - '0');
                if (v > 255)
                    return false;
            }
        }
        out[k] = (uint8_t)v;
        if (k < 3) {
            if (p == e || *p != '.')
                return false;
            p++;
        }
    }
    return p == e;
}
#endif

char *tw_geo_addr_format(const tw_geo_addr_t *a, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return buf;
    buf[0] = '\0';
    if (a->family == 4 && cap >= 16) {
        char *o = buf;
        for (int k = 0; k < 4; k++) {
            unsigned v = a->bytes[k];
            if (v >= 100)
                *o++ = (char)('0' + v / 100);
            if (v >= 10)
                *o++ = (char)('0' + v / 10 % 10);
            *o++ = (char)('0' + v % 10);
            *o++ = k < 3 ? '.' : '\0';
        }
    } else if (a->family == 6 && cap <= (size_t)INT32_MAX) {
        if (!inet_ntop(AF_INET6, a->bytes, buf, (socklen_t)cap))
            buf[0] = '\0';
    }
    return buf;
}

int tw_geo_addr_parse(const char *ip, size_t n, tw_geo_addr_t *out)
{
    static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char buf[IP_TEXT_MAX + 1];

    memset(out, 0, sizeof *out);
    if (n == 0 || n > IP_TEXT_MAX)
        return -1;
    if (parse_v4_fast(ip, n, out->bytes)) {
        out->family = 4;
        return 0;
    }
    memset(out->bytes, 0, 4);
    bool colon = false;
    for (size_t i = 0; i < n; i++) {
        /* A NUL inside the slice would end inet_pton's view early and let
         * "1.2.3.4\0junk" pass as an address. */
        if (ip[i] == '\0')
            return -1;
        colon |= ip[i] == ':';
        buf[i] = ip[i];
    }
    buf[n] = '\0';

    if (colon) {
        char *zone = strchr(buf, '%');
        if (zone) {
            if (zone[1] == '\0')
                return -1;
            *zone = '\0';
        }
        if (inet_pton(AF_INET6, buf, out->bytes) != 1)
            goto invalid;
        if (memcmp(out->bytes, mapped_prefix, sizeof mapped_prefix) == 0) {
            memmove(out->bytes, out->bytes + 12, 4);
            memset(out->bytes + 4, 0, 12);
            out->family = 4;
        } else {
            out->family = 6;
        }
        return 0;
    }
    if (inet_pton(AF_INET, buf, out->bytes) != 1)
        goto invalid;
    out->family = 4;
    return 0;
invalid:
    memset(out, 0, sizeof *out);
    return -1;
}

/* Bytes p[0..7] as a big-endian number. */
static inline uint64_t be64_at(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return be64toh(v);
}

bool tw_geo_addr_same_prefix(const tw_geo_addr_t *a, const tw_geo_addr_t *b, unsigned bits)
{
    if (a->family != b->family || (a->family != 4 && a->family != 6))
        return false;
    unsigned width = a->family == 4 ? 32 : 128;
    if (bits > width)
        bits = width;
    if (bits == 0)
        return true;
    /* The differing bits, 64 at a time; bytes past an IPv4 address's four
     * are shifted out (bits <= 32 there). */
    uint64_t hi = be64_at(a->bytes) ^ be64_at(b->bytes);
    if (bits <= 64)
        return hi >> (64 - bits) == 0;
    if (hi != 0)
        return false;
    uint64_t lo = be64_at(a->bytes + 8) ^ be64_at(b->bytes + 8);
    return lo >> (128 - bits) == 0;   /* 65 <= bits <= 128 */
}

static bool v4_in(uint32_t a, uint32_t net, unsigned len)
{
    return (a >> (32 - len)) == (net >> (32 - len));
}

/* IANA special-purpose IPv4 blocks that are not globally reachable, minus
 * the three documentation /24s, which tokenwatch's test data and demo use
 * as stand-ins for public addresses. */
static bool v4_private(const uint8_t *b)
{
    static const struct {
        uint32_t net;
        uint8_t len;
    } blocks[] = {
        {0x00000000u, 8},  /* 0.0.0.0/8 "this network", includes unspecified */
        {0x0a000000u, 8},  /* 10.0.0.0/8 */
        {0x64400000u, 10}, /* 100.64.0.0/10 shared address space (CGNAT) */
        {0x7f000000u, 8},  /* 127.0.0.0/8 loopback */
        {0xa9fe0000u, 16}, /* 169.254.0.0/16 link-local */
        {0xac100000u, 12}, /* 172.16.0.0/12 */
        {0xc0000000u, 24}, /* 192.0.0.0/24 IETF protocol assignments */
        {0xc0a80000u, 16}, /* 192.168.0.0/16 */
        {0xc6120000u, 15}, /* 198.18.0.0/15 benchmarking */
        {0xe0000000u, 4},  /* 224.0.0.0/4 multicast */
        {0xf0000000u, 4},  /* 240.0.0.0/4 reserved, and the broadcast address */
    };
    /* Most addresses start with an octet no block starts with (bit o of
     * firsts: o is 0, 10, 100, 127, 169, 172, 192, 198 or 224-255); they
     * are done here, without the loop. test_geo checks this against the
     * blocks for every first octet. */
    static const uint64_t firsts[4] = {
        0x0000000000000401ULL,   /*   0-63: 0, 10 */
        0x8000001000000000ULL,   /*  64-127: 100, 127 */
        0x0000120000000000ULL,   /* 128-191: 169, 172 */
        0xffffffff00000041ULL,   /* 192-255: 192, 198, 224-255 */
    };
    if (!(firsts[b[0] >> 6] >> (b[0] & 63) & 1))
        return false;
    uint32_t a = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
        if (v4_in(a, blocks[i].net, blocks[i].len))
            return true;
    return false;
}

static bool v6_private(const uint8_t *b)
{
    static const uint8_t zero[12];
    /* ::/96: unspecified, loopback and the deprecated IPv4-compatible form
     * (IPv4-mapped was turned into family 4 by the parser). */
    if (memcmp(b, zero, 12) == 0)
        return true;
    if (b[0] == 0x01 && b[1] == 0x00 && memcmp(b + 2, zero, 6) == 0)
        return true; /* 100::/64 discard-only */
    if ((b[0] & 0xfe) == 0xfc)
        return true; /* fc00::/7 unique local */
    if (b[0] == 0xfe && (b[1] & 0x80) == 0x80)
        return true;     /* fe80::/10 link-local and fec0::/10 old site-local */
    return b[0] == 0xff; /* ff00::/8 multicast */
}

bool tw_geo_addr_is_private(const tw_geo_addr_t *a)
{
    return a->family == 4 ? v4_private(a->bytes) : v6_private(a->bytes);
}

/* ---- cache ---------------------------------------------------------------- */

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint64_t high_bits(unsigned bits)
{
    return bits == 0 ? 0 : bits >= 64 ? ~0ULL : ~0ULL << (64 - bits);
}

/* IPv4 sits in the top half of w0, so one mask rule serves both families. */
static void make_key(const tw_geo_addr_t *a, unsigned bits, cache_key_t *k)
{
    k->meta = (uint32_t)a->family | (uint32_t)bits << 8;
    if (a->family == 4) {
        uint64_t v = (uint64_t)a->bytes[0] << 56 | (uint64_t)a->bytes[1] << 48 |
                     (uint64_t)a->bytes[2] << 40 | (uint64_t)a->bytes[3] << 32;
        k->w0 = v & high_bits(bits);
        k->w1 = 0;
    } else {
        k->w0 = load_be64(a->bytes) & high_bits(bits);
        k->w1 = bits > 64 ? load_be64(a->bytes + 8) & high_bits(bits - 64) : 0;
    }
}

/* 64x64 -> 128-bit multiply, folded: the mixing step of wyhash. */
static inline uint64_t mum(uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/*
 * The set index of a key: a keyed multiply-fold (wyhash's mixing) rather
 * than SipHash, which cost 40% of a cached lookup. This is enough here
 * because the key is random per process and never leaves it, and because
 * the worst an attacker who did find colliding addresses could do is evict
 * entries from one 4-way set, i.e. turn hits into tree walks (bounded
 * work per lookup): the cache has no chains to make long. One word for IPv4
 * (address and meta share it), two up to /64, three for IPv6 hosts.
 */
static uint64_t key_hash(const uint64_t key[2], const cache_key_t *k)
{
    if ((k->meta & 0xff) == 4)
        return mum((k->w0 | k->meta) ^ key[0], key[1] ^ 0x9E3779B97F4A7C15ULL);
    uint64_t h = mum(k->w0 ^ key[0], k->meta ^ key[1]);
    return mum(h ^ k->w1 ^ 0xe7037ed1a0b428dbULL, key[1] ^ 0x8ebc6af09c88c6e3ULL);
}

static bool key_eq(const cache_key_t *x, const cache_key_t *y)
{
    return x->w0 == y->w0 && x->w1 == y->w1 && x->meta == y->meta;
}

/* The tag of key k whose hash is h (never 0: meta is not). */
static inline uint64_t key_tag(const cache_key_t *k, uint64_t h)
{
    if ((k->meta & 0xff) == 4)
        return k->w0 | k->meta;
    return (h & ~0xffffULL) | k->meta;
}

static void levels_of(uint8_t family, const uint8_t **lv, size_t *n)
{
    if (family == 4) {
        *lv = levels4;
        *n = sizeof levels4;
    } else {
        *lv = levels6;
        *n = sizeof levels6;
    }
}

void tw_geo_prefetch(const tw_geo_t *g, const tw_geo_addr_t *a)
{
    if (!g->sets || (a->family != 4 && a->family != 6))
        return;
    cache_key_t k;
    make_key(a, a->family == 4 ? levels4[0] : levels6[0], &k);
    __builtin_prefetch(&g->sets[key_hash(g->hkey, &k) & g->set_mask], 1, 3);
}

/* The cached value for a, or NULL; marks the way referenced. */
static const cache_val_t *cache_get(tw_geo_t *g, const tw_geo_addr_t *a)
{
    const uint8_t *lv;
    size_t nlv;
    levels_of(a->family, &lv, &nlv);
    for (size_t i = 0; i < nlv; i++) {
        cache_key_t k;
        make_key(a, lv[i], &k);
        uint64_t h = key_hash(g->hkey, &k);
        uint64_t tag = key_tag(&k, h);
        size_t s = h & g->set_mask;
        cache_set_t *set = &g->sets[s];
        for (int w = 0; w < WAYS; w++) {
            if (set->tag[w] != tag)
                continue;
            size_t slot = s * WAYS + (size_t)w;
            if (a->family != 4 && !key_eq(&g->keys6[slot], &k))
                continue;
            set->ref[w] = 1;
            return &g->vals[slot];
        }
    }
    return NULL;
}

/* Stores res for the aligned block around a that `cover` (the longest prefix
 * of the networks that produced res) allows: the coarsest level >= cover. */
static void cache_put(tw_geo_t *g, const tw_geo_addr_t *a, unsigned cover,
                      const tw_geo_result_t *res)
{
    const uint8_t *lv;
    size_t nlv;
    levels_of(a->family, &lv, &nlv);
    size_t i = 0;
    while (i + 1 < nlv && lv[i] < cover)
        i++;
    cache_key_t k;
    make_key(a, lv[i], &k);
    uint64_t h = key_hash(g->hkey, &k);
    size_t s = h & g->set_mask;
    cache_set_t *set = &g->sets[s];

    int victim = -1;
    for (int w = 0; w < WAYS; w++) {
        if (set->tag[w] == 0) {
            victim = w;
            break;
        }
    }
    if (victim < 0) {
        /* CLOCK: spare entries used since the hand last passed. New entries
         * start unreferenced, so a spray of one-off addresses recycles its
         * own slots instead of pushing out the hot ones. */
        unsigned hd = set->hand;
        while (set->ref[hd]) {
            set->ref[hd] = 0;
            hd = (hd + 1) % WAYS;
        }
        victim = (int)hd;
        set->hand = (uint8_t)((hd + 1) % WAYS);
        count(&g->n_evictions, 1);
    }
    size_t slot = s * WAYS + (size_t)victim;
    set->tag[victim] = key_tag(&k, h);
    set->ref[victim] = 0;
    if (a->family != 4)
        g->keys6[slot] = k;
    cache_val_t *v = &g->vals[slot];
    v->lat = res->lat;
    v->lon = res->lon;
    v->city = res->city;
    v->time_zone = res->time_zone;
    v->asn_org = res->asn_org;
    v->geoname_id = res->geoname_id;
    v->asn = res->asn;
    v->radius_km = res->radius_km;
    v->status = (uint8_t)res->status;
    v->located = res->located;
    v->prefix_len = res->prefix_len;
    memcpy(v->country, res->country, sizeof v->country);
}

static void cache_fill(const cache_val_t *v, tw_geo_result_t *out)
{
    out->status = (tw_geo_status_t)v->status;
    out->located = v->located;
    memcpy(out->country, v->country, sizeof out->country);
    out->prefix_len = v->prefix_len;
    out->radius_km = v->radius_km;
    out->geoname_id = v->geoname_id;
    out->asn = v->asn;
    out->lat = v->lat;
    out->lon = v->lon;
    out->city = v->city;
    out->time_zone = v->time_zone;
    out->asn_org = v->asn_org;
}

/* ---- interning ------------------------------------------------------------ */

static char *arena_alloc(tw_geo_t *g, size_t n)
{
    intern_chunk_t *c = g->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > INTERN_CHUNK ? n : INTERN_CHUNK;
        c = tw_xmalloc(sizeof *c + cap);
        c->next = g->chunks;
        c->used = 0;
        c->cap = cap;
        g->chunks = c;
        count(&g->n_interned, sizeof *c + cap);
    }
    char *p = c->data + c->used;
    c->used += n;
    return p;
}

static void intern_grow(tw_geo_t *g)
{
    size_t ncap = g->icap ? g->icap * 2 : 256;
    intern_slot_t *ns = tw_xcalloc(ncap, sizeof *ns);
    for (size_t i = 0; i < g->icap; i++) {
        if (!g->islots[i].s)
            continue;
        size_t j = g->islots[i].hash & (ncap - 1);
        while (ns[j].s)
            j = (j + 1) & (ncap - 1);
        ns[j] = g->islots[i];
    }
    count(&g->n_interned, (ncap - g->icap) * sizeof *ns);
    free(g->islots);
    g->islots = ns;
    g->icap = ncap;
}

/* Returns the one stored copy of p[0..n), NUL-terminated. The keys are
 * strings from the database, which attackers cannot add to, so an unseeded
 * hash is enough here. */
static const char *intern(tw_geo_t *g, const char *p, size_t n)
{
    const char *nul = memchr(p, '\0', n);
    if (nul)
        n = (size_t)(nul - p);
    if (n > TW_GEO_STR_MAX) {
        n = TW_GEO_STR_MAX;
        while (n > 0 && ((unsigned char)p[n] & 0xc0) == 0x80)
            n--; /* do not split a UTF-8 sequence */
    }
    if (n == 0)
        return "";
    uint32_t h = (uint32_t)tw_hash64(TW_HASH_INIT, p, n);
    if ((g->icount + 1) * 2 > g->icap)
        intern_grow(g);
    size_t j = h & (g->icap - 1);
    for (; g->islots[j].s; j = (j + 1) & (g->icap - 1)) {
        const intern_slot_t *sl = &g->islots[j];
        if (sl->hash == h && sl->len == n && memcmp(sl->s, p, n) == 0)
            return sl->s;
    }
    char *s = arena_alloc(g, n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    g->islots[j] = (intern_slot_t){.s = s, .len = (uint32_t)n, .hash = h};
    g->icount++;
    return s;
}

/* ---- decoding ------------------------------------------------------------- */

/* 1: the path holds data; 0: absent or not the expected shape; -1: the
 * database itself is damaged. */
static int get_value(MMDB_entry_s *e, const char *const *path, MMDB_entry_data_s *d)
{
    int rc = MMDB_aget_value(e, d, path);
    if (rc == MMDB_SUCCESS)
        return d->has_data ? 1 : 0;
    if (rc == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR ||
        rc == MMDB_INVALID_LOOKUP_PATH_ERROR)
        return 0;
    return -1;
}

static int get_string(MMDB_entry_s *e, const char *const *path, const char **p, size_t *n)
{
    MMDB_entry_data_s d;
    int rc = get_value(e, path, &d);
    if (rc <= 0 || d.type != MMDB_DATA_TYPE_UTF8_STRING)
        return rc < 0 ? -1 : 0;
    *p = d.utf8_string;
    *n = d.data_size;
    return 1;
}

static int get_uint(MMDB_entry_s *e, const char *const *path, uint64_t *v)
{
    MMDB_entry_data_s d;
    int rc = get_value(e, path, &d);
    if (rc <= 0)
        return rc;
    switch (d.type) {
    case MMDB_DATA_TYPE_UINT16:
        *v = d.uint16;
        return 1;
    case MMDB_DATA_TYPE_UINT32:
        *v = d.uint32;
        return 1;
    case MMDB_DATA_TYPE_UINT64:
        *v = d.uint64;
        return 1;
    default:
        return 0;
    }
}

static int get_double(MMDB_entry_s *e, const char *const *path, double *v)
{
    MMDB_entry_data_s d;
    int rc = get_value(e, path, &d);
    if (rc <= 0)
        return rc;
    if (d.type == MMDB_DATA_TYPE_DOUBLE)
        *v = d.double_value;
    else if (d.type == MMDB_DATA_TYPE_FLOAT)
        *v = d.float_value;
    else
        return 0;
    return isfinite(*v) ? 1 : 0;
}

/* Every City and ASN record is a map. Checked first, because a missing
 * field and a record that is not a map at all look alike to aget_value
 * ("path does not match"), and only the second is a damaged database. */
static int check_record(MMDB_entry_s *e)
{
    MMDB_entry_data_s d;
    if (MMDB_aget_value(e, &d, path_root) != MMDB_SUCCESS || !d.has_data ||
        d.type != MMDB_DATA_TYPE_MAP)
        return -1;
    return 0;
}

/* IANA zone names are components of [A-Za-z0-9_+-] joined by '/'. Anything
 * else (a '.', a leading '/') is refused, since a caller may open the zone
 * as a file under /usr/share/zoneinfo. */
static bool tz_name_ok(const char *p, size_t n)
{
    char prev = '/'; /* so that a leading '/' counts as an empty component */
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

static int decode_country(MMDB_entry_s *country, tw_geo_result_t *out)
{
    const char *s;
    size_t n;
    int rc = get_string(country, path_iso_code, &s, &n);
    if (rc > 0 && n == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z') {
        out->country[0] = s[0];
        out->country[1] = s[1];
        out->country[2] = '\0';
    }
    return rc < 0 ? -1 : 0;
}

static int decode_cityname(tw_geo_t *g, MMDB_entry_s *city, tw_geo_result_t *out)
{
    const char *s;
    size_t n;
    uint64_t u;
    int rc = get_string(city, path_name_en, &s, &n);
    if (rc < 0)
        return -1;
    if (rc)
        out->city = intern(g, s, n);
    if ((rc = get_uint(city, path_geoname_id, &u)) < 0)
        return -1;
    if (rc && u <= UINT32_MAX)
        out->geoname_id = (uint32_t)u;
    return 0;
}

static int decode_location(tw_geo_t *g, MMDB_entry_s *loc, tw_geo_result_t *out)
{
    const char *s;
    size_t n;
    uint64_t u;
    double lat = 0, lon = 0;
    int has_lat = get_double(loc, path_lat, &lat);
    int has_lon = get_double(loc, path_lon, &lon);
    int rc;
    if (has_lat < 0 || has_lon < 0)
        return -1;
    if (has_lat && has_lon && fabs(lat) <= 90.0 && fabs(lon) <= 180.0) {
        out->located = true;
        out->lat = lat;
        out->lon = lon;
        if ((rc = get_uint(loc, path_radius, &u)) < 0)
            return -1;
        out->radius_km = rc ? (uint16_t)(u > UINT16_MAX ? UINT16_MAX : u)
                            : (uint16_t)TW_GEO_RADIUS_UNKNOWN_KM;
    }
    if ((rc = get_string(loc, path_tz, &s, &n)) < 0)
        return -1;
    if (rc && n <= TW_GEO_STR_MAX && tz_name_ok(s, n))
        out->time_zone = intern(g, s, n);
    return 0;
}

/* Makes *sub an entry for the map at path below e. Same returns as get_value;
 * a value that is not a map counts as absent. */
static int get_map(MMDB_entry_s *e, const char *const *path, MMDB_entry_s *sub)
{
    MMDB_entry_data_s d;
    int rc = get_value(e, path, &d);
    if (rc <= 0 || d.type != MMDB_DATA_TYPE_MAP)
        return rc < 0 ? -1 : 0;
    sub->mmdb = e->mmdb;
    sub->offset = d.offset;
    return 1;
}

static int decode_city(tw_geo_t *g, MMDB_entry_s *e, tw_geo_result_t *out)
{
    MMDB_entry_s sub;
    int rc;
    if (check_record(e) != 0)
        return -1;
    if ((rc = get_map(e, path_country, &sub)) < 0 || (rc && decode_country(&sub, out) != 0))
        return -1;
    if ((rc = get_map(e, path_city, &sub)) < 0 || (rc && decode_cityname(g, &sub, out) != 0))
        return -1;
    if ((rc = get_map(e, path_location, &sub)) < 0 ||
        (rc && decode_location(g, &sub, out) != 0))
        return -1;
    return 0;
}

static int decode_asn(tw_geo_t *g, MMDB_entry_s *e, tw_geo_result_t *out)
{
    const char *s;
    size_t n;
    uint64_t u;
    int rc;
    if (check_record(e) != 0)
        return -1;
    if ((rc = get_uint(e, path_asn, &u)) < 0)
        return -1;
    if (rc && u <= UINT32_MAX)
        out->asn = (uint32_t)u;
    if ((rc = get_string(e, path_asn_org, &s, &n)) < 0)
        return -1;
    if (rc)
        out->asn_org = intern(g, s, n);
    return 0;
}

/* The netmask libmaxminddb reports is a depth in the database's own tree:
 * an IPv4 address in an IPv6 database sits below ::/96, so its /24 is 120. */
static unsigned family_prefix(const MMDB_s *db, uint8_t family, unsigned netmask)
{
    if (family == 4) {
        if (db->metadata.ip_version == 6)
            netmask = netmask > 96 ? netmask - 96 : 0;
        return netmask > 32 ? 32 : netmask;
    }
    return netmask > 128 ? 128 : netmask;
}

typedef union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} sockaddr_any_t;

static void to_sockaddr(const tw_geo_addr_t *a, sockaddr_any_t *u)
{
    memset(u, 0, sizeof *u);
    if (a->family == 4) {
        u->in4.sin_family = AF_INET;
        memcpy(&u->in4.sin_addr, a->bytes, 4);
    } else {
        u->in6.sin6_family = AF_INET6;
        memcpy(&u->in6.sin6_addr, a->bytes, 16);
    }
}

/* Searches one database. Returns 1 found, 0 not found, -1 damaged (with
 * the libmaxminddb status in *merr); *prefix is the width of the network or
 * empty region holding the address. */
static int search(const MMDB_s *db, const tw_geo_addr_t *a, const sockaddr_any_t *u,
                  MMDB_lookup_result_s *r, unsigned *prefix, int *merr)
{
    *merr = MMDB_SUCCESS;
    *r = MMDB_lookup_sockaddr(db, &u->sa, merr);
    if (*merr == MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR) {
        *merr = MMDB_SUCCESS;
        *prefix = 0; /* an IPv4-only database knows no IPv6 address at all */
        return 0;
    }
    if (*merr != MMDB_SUCCESS)
        return -1;
    *prefix = family_prefix(db, a->family, r->netmask);
    return r->found_entry ? 1 : 0;
}

/* Fills out from the database(s); *cover is the longest prefix among the
 * networks consulted, i.e. the block over which out is valid. */
static void walk(tw_geo_t *g, const tw_geo_addr_t *a, tw_geo_result_t *out, unsigned *cover)
{
    sockaddr_any_t u;
    MMDB_lookup_result_s r;
    unsigned prefix = 0;
    int merr;
    to_sockaddr(a, &u);

    int rc = search(&g->city, a, &u, &r, &prefix, &merr);
    if (rc < 0) {
        out->status = TW_GEO_ERROR;
        return;
    }
    out->prefix_len = (uint8_t)prefix;
    *cover = prefix;
    out->status = rc ? TW_GEO_FOUND : TW_GEO_NOT_FOUND;
    if (rc && decode_city(g, &r.entry, out) != 0) {
        out->status = TW_GEO_ERROR;
        return;
    }
    if (!g->has_asn)
        return;
    rc = search(&g->asn, a, &u, &r, &prefix, &merr);
    if (rc < 0 || (rc && decode_asn(g, &r.entry, out) != 0)) {
        out->status = TW_GEO_ERROR;
        return;
    }
    if (prefix > *cover)
        *cover = prefix;
}

static void reset_result(tw_geo_result_t *out)
{
    memset(out, 0, sizeof *out);
    out->city = "";
    out->time_zone = "";
    out->asn_org = "";
}

tw_geo_status_t tw_geo_lookup_addr(tw_geo_t *g, const tw_geo_addr_t *a, tw_geo_result_t *out)
{
    count(&g->n_lookups, 1);
    if (tw_geo_addr_is_private(a)) {
        reset_result(out);
        out->status = TW_GEO_PRIVATE;
    } else {
        const cache_val_t *hit = g->sets ? cache_get(g, a) : NULL;
        if (hit) {
            cache_fill(hit, out);
            count(&g->n_hits, 1);
        } else {
            unsigned cover = 0;
            reset_result(out);
            count(&g->n_walks, 1);
            walk(g, a, out, &cover);
            if (g->sets && out->status != TW_GEO_ERROR)
                cache_put(g, a, cover, out);
        }
    }
    out->addr = *a;
    count(&g->n_status[out->status], 1);
    return out->status;
}

tw_geo_status_t tw_geo_lookup(tw_geo_t *g, const char *ip, size_t ip_len, tw_geo_result_t *out)
{
    tw_geo_addr_t a;
    if (tw_geo_addr_parse(ip, ip_len, &a) == 0)
        return tw_geo_lookup_addr(g, &a, out);
    reset_result(out);
    count(&g->n_lookups, 1);
    out->status = TW_GEO_INVALID;
    count(&g->n_status[out->status], 1);
    return out->status;
}

/* ---- open / close --------------------------------------------------------- */

static int open_db(MMDB_s *db, const char *path, const char *what, tw_err_t *err)
{
    /* libmaxminddb would report these as an mmap EINVAL or ENODEV. */
    struct stat st;
    if (stat(path, &st) != 0)
        return tw_err_set(err, "%s: cannot open GeoIP %s database: %s", path, what,
                          strerror(errno));
    if (S_ISDIR(st.st_mode))
        return tw_err_set(err, "%s: is a directory, not a GeoIP %s database file", path, what);
    if (st.st_size == 0)
        return tw_err_set(err, "%s: GeoIP %s database file is empty", path, what);
    errno = 0;
    int rc = MMDB_open(path, MMDB_MODE_MMAP, db);
    if (rc == MMDB_SUCCESS)
        return 0;
    int e = errno;
    if ((rc == MMDB_FILE_OPEN_ERROR || rc == MMDB_IO_ERROR) && e != 0)
        return tw_err_set(err, "%s: cannot open GeoIP %s database: %s", path, what,
                          strerror(e));
    return tw_err_set(err, "%s: not a usable GeoIP %s database: %s", path, what,
                      MMDB_strerror(rc));
}

static bool type_has(const MMDB_s *db, const char *a, const char *b)
{
    const char *t = db->metadata.database_type;
    return t && (strstr(t, a) || strstr(t, b));
}

/* MMDB_open checks the metadata and sizes only. Walking and fully decoding
 * a few records at startup turns a damaged tree or data section near the
 * top into a startup error naming the file, not a stream of lookup errors. */
static int probe_db(const MMDB_s *db, const char *path, const char *what, tw_err_t *err)
{
    static const char *const probes[] = {"1.1.1.1", "81.2.69.142", "203.0.113.1",
                                         "2001:4860:4860::8888", "2001:db8::1"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        tw_geo_addr_t a;
        sockaddr_any_t u;
        MMDB_lookup_result_s r;
        unsigned prefix;
        int merr;
        if (tw_geo_addr_parse(probes[i], strlen(probes[i]), &a) != 0)
            continue;
        if (a.family == 6 && db->metadata.ip_version != 6)
            continue;
        to_sockaddr(&a, &u);
        int rc = search(db, &a, &u, &r, &prefix, &merr);
        MMDB_entry_data_list_s *list = NULL;
        if (rc > 0)
            merr = MMDB_get_entry_data_list(&r.entry, &list);
        MMDB_free_entry_data_list(list);
        if (merr != MMDB_SUCCESS)
            return tw_err_set(err, "%s: corrupt GeoIP %s database: looking up %s: %s", path,
                              what, probes[i], MMDB_strerror(merr));
    }
    return 0;
}

static int get_seed(uint64_t key[2], tw_err_t *err)
{
    uint8_t *p = (uint8_t *)key;
    size_t got = 0;
    while (got < 2 * sizeof key[0]) {
        ssize_t r = getrandom(p + got, 2 * sizeof key[0] - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return tw_err_set(err, "geoip: cannot seed the cache hash: getrandom: %s",
                              strerror(errno));
        }
        got += (size_t)r;
    }
    return 0;
}

int tw_geo_open(tw_geo_t **out, const char *city_db, const char *asn_db, size_t cache_entries,
                tw_err_t *err)
{
    *out = NULL;
    if (!city_db || !city_db[0])
        return tw_err_set(err, "geoip: no City database path given");
    if (cache_entries > TW_GEO_CACHE_MAX)
        return tw_err_set(err, "geoip: cache of %zu entries is above the maximum of %u",
                          cache_entries, TW_GEO_CACHE_MAX);

    tw_geo_t *g = tw_xcalloc(1, sizeof *g);
    if (open_db(&g->city, city_db, "City", err) != 0) {
        free(g);
        return -1;
    }
    if (!type_has(&g->city, "City", "Enterprise")) {
        tw_err_set(err,
                   "%s: database type \"%s\" is not a City database (expected e.g. "
                   "GeoLite2-City or GeoIP2-City)",
                   city_db, g->city.metadata.database_type);
        goto fail;
    }
    if (probe_db(&g->city, city_db, "City", err) != 0)
        goto fail;
    if (asn_db) {
        if (open_db(&g->asn, asn_db, "ASN", err) != 0)
            goto fail;
        g->has_asn = true;
        if (!type_has(&g->asn, "ASN", "ISP")) {
            tw_err_set(err,
                       "%s: database type \"%s\" is not an ASN database (expected e.g. "
                       "GeoLite2-ASN)",
                       asn_db, g->asn.metadata.database_type);
            goto fail;
        }
        if (probe_db(&g->asn, asn_db, "ASN", err) != 0)
            goto fail;
    }
    if (get_seed(g->hkey, err) != 0)
        goto fail;

    if (cache_entries > 0) {
        size_t slots = WAYS;
        while (slots < cache_entries)
            slots *= 2;
        size_t nsets = slots / WAYS;
        g->cache_mem = tw_xcalloc_table(1, 63 + nsets * sizeof(cache_set_t) +
                                         slots * (sizeof(cache_val_t) + sizeof(cache_key_t)));
        uintptr_t p = ((uintptr_t)g->cache_mem + 63) & ~(uintptr_t)63;
        g->sets = (cache_set_t *)p;
        g->vals = (cache_val_t *)(g->sets + nsets);
        g->keys6 = (cache_key_t *)(g->vals + slots);
        g->set_mask = nsets - 1;
    }
    *out = g;
    return 0;
fail:
    tw_geo_close(g);
    return -1;
}

void tw_geo_close(tw_geo_t *g)
{
    if (!g)
        return;
    MMDB_close(&g->city);
    if (g->has_asn)
        MMDB_close(&g->asn);
    free(g->cache_mem);
    free(g->islots);
    while (g->chunks) {
        intern_chunk_t *next = g->chunks->next;
        free(g->chunks);
        g->chunks = next;
    }
    free(g);
}

void tw_geo_stats(const tw_geo_t *g, tw_geo_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->lookups = atomic_load_explicit(&g->n_lookups, memory_order_relaxed);
    for (int i = 0; i < TW_GEO_STATUS_COUNT; i++)
        out->by_status[i] = atomic_load_explicit(&g->n_status[i], memory_order_relaxed);
    out->cache_hits = atomic_load_explicit(&g->n_hits, memory_order_relaxed);
    out->tree_walks = atomic_load_explicit(&g->n_walks, memory_order_relaxed);
    out->cache_evictions = atomic_load_explicit(&g->n_evictions, memory_order_relaxed);
    out->interned_bytes = atomic_load_explicit(&g->n_interned, memory_order_relaxed);
}

void tw_geo_info(const tw_geo_t *g, tw_geo_info_t *out)
{
    memset(out, 0, sizeof *out);
    out->city_type = g->city.metadata.database_type;
    out->city_build_epoch = g->city.metadata.build_epoch;
    if (g->has_asn) {
        out->asn_type = g->asn.metadata.database_type;
        out->asn_build_epoch = g->asn.metadata.build_epoch;
    }
    out->cache_slots = g->sets ? (g->set_mask + 1) * WAYS : 0;
}

const char *tw_geo_intern(tw_geo_t *g, const char *s, size_t n) { return intern(g, s, n); }
