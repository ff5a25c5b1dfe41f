/*
 * geo.h — IP geolocation from MaxMind DB files: a GeoLite2/GeoIP2 City
 * database and, optionally, an ASN database, behind a bounded result cache.
 *
 * What it promises:
 * - Databases are opened once and memory-mapped; a missing, unreadable or
 *   corrupt file, or a file of the wrong kind (an ASN database given as the
 *   City database), is an error from tw_geo_open() that names the path.
 * - Addresses that are not on the public Internet — private (RFC 1918),
 *   shared (CGNAT 100.64.0.0/10), loopback, link-local, unique-local,
 *   multicast, reserved, unspecified — are never looked up and come back as
 *   TW_GEO_PRIVATE, so no geo rule can fire on them. The documentation ranges
 *   (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are looked
 *   up like public addresses: the test database and the demo live there.
 * - IPv4-mapped IPv6 text (::ffff:203.0.113.7) is treated as the IPv4
 *   address, so both spellings of one client share a result and a cache entry.
 * - A lookup allocates nothing once its strings have been seen: results are
 *   cached per database network (see "Cache" below) and strings are interned.
 *
 * Cache: a fixed array of cache_entries slots (4-way set associative, CLOCK
 * replacement within a set), indexed by a keyed multiply-fold hash with a
 * random key drawn at open — the keys are attacker-chosen IPs, so collisions
 * cannot be aimed, and one that was found could only evict within one set.
 * An entry covers the whole aligned block around the address that the
 * database network contains: the /24 (IPv4) or /48 or /64 (IPv6) when the
 * database network (intersected with the ASN network) is at least that wide,
 * as it usually is, and otherwise the single address.
 * So every address of a /20 shares one entry per /24 it touches, and a hot
 * address costs no tree walk. Results that came from a database error are
 * not cached.
 *
 * Threading: a tw_geo_t belongs to one thread (the analysis thread); only
 * tw_geo_stats() and tw_geo_info() may be called from other threads (the
 * metrics exporter).
 */
#ifndef TW_GEO_H
#define TW_GEO_H

#include "common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tw_geo tw_geo_t;

/* A slot takes 104 bytes (a 64-byte result line, 16 bytes of its set's tag
 * line, 24 bytes of IPv6 key): 65536 slots are 6.5 MiB, room for the
 * networks of a busy gateway's clients. */
#define TW_GEO_CACHE_DEFAULT 65536
#define TW_GEO_CACHE_MAX (1u << 24)

/* accuracy_radius used when a database gives a location without one (some
 * third-party City databases omit it). 100 km is wider than a city-level
 * GeoLite2 answer usually claims, so neighbouring cities do not look like
 * travel, and far below the distances impossible travel is about. */
#define TW_GEO_RADIUS_UNKNOWN_KM 100

/* Longest string kept from a record (city, time zone, AS organisation), in
 * bytes; longer values are cut at a UTF-8 character boundary. */
#define TW_GEO_STR_MAX 255

typedef enum {
    TW_GEO_FOUND = 0, /* the City database has a record for the address */
    TW_GEO_NOT_FOUND, /* a public address the City database does not know */
    TW_GEO_PRIVATE,   /* not a public address (see the file comment) */
    TW_GEO_INVALID,   /* not an IPv4 or IPv6 address */
    TW_GEO_ERROR,     /* the database could not be read (corrupt tree/data) */
} tw_geo_status_t;
#define TW_GEO_STATUS_COUNT 5

/* "found", "not_found", "private", "invalid", "error": the values of the
 * result label of tokenwatch_geoip_lookups_total. */
const char *tw_geo_status_name(tw_geo_status_t status);

/* A parsed address. IPv4 (and IPv4-mapped IPv6) is family 4 with the address
 * in bytes[0..3]; IPv6 is family 6 with all 16 bytes. */
typedef struct tw_geo_addr {
    uint8_t family; /* 4 or 6 */
    uint8_t bytes[16];
} tw_geo_addr_t;

/*
 * Parses IPv4 dotted-quad or IPv6 text ip[0..n) (not NUL-terminated; no
 * brackets, no port; an IPv6 zone "%eth0" is accepted and ignored) without
 * allocating. Returns 0, or -1 if the text is not an address (including
 * embedded NULs, surrounding spaces, and IPv4 with leading zeros). Pure.
 */
int tw_geo_addr_parse(const char *ip, size_t n, tw_geo_addr_t *out);

/*
 * Writes the address as text into buf (cap bytes; 16 hold any IPv4, 46 any
 * IPv6): dotted quad by hand, IPv6 via inet_ntop. Writes "" for family 0 or
 * when cap is too small. Returns buf. Pure.
 */
char *tw_geo_addr_format(const tw_geo_addr_t *a, char *buf, size_t cap);

/* True if a and b are the same family and agree in their first `bits` bits
 * (capped at 32 for IPv4, 128 for IPv6): e.g. bits 24 asks "same /24?". */
bool tw_geo_addr_same_prefix(const tw_geo_addr_t *a, const tw_geo_addr_t *b, unsigned bits);

/* True if the address is not on the public Internet (TW_GEO_PRIVATE). */
bool tw_geo_addr_is_private(const tw_geo_addr_t *a);

/*
 * One lookup's answer. Every field is written on every call.
 *
 * city, time_zone and asn_org are never NULL ("" when absent). They point to
 * NUL-terminated strings owned by the tw_geo_t and valid until
 * tw_geo_close(); equal strings are the same pointer (they are interned), so
 * a token's state may keep the pointer instead of a copy and compare by
 * pointer. Whoever reopens the databases (a reload) must keep the old
 * tw_geo_t open for as long as stored pointers may refer to it, or copy them;
 * pointers from two different tw_geo_t are not comparable.
 *
 * Strings are bytes from the database (UTF-8 by the MMDB spec): escape them
 * when writing JSON. time_zone is either "" or an IANA-style name of
 * [A-Za-z0-9_+-] components joined by '/' (checked here, since callers may
 * use it to open a tz file).
 */
typedef struct tw_geo_result {
    tw_geo_status_t status;
    /* lat, lon and radius_km are valid: the record has a location. A found
     * record may lack one (a country-only record, an anonymous proxy), and
     * geo_velocity needs one. */
    bool located;
    char country[3]; /* ISO 3166-1 alpha-2 of country.iso_code, or "" */
    /* Prefix length of the City database network holding the address (of the
     * empty region when not found), in the address's own family: 0..32 for
     * IPv4. 0 for private and invalid addresses. */
    uint8_t prefix_len;
    uint16_t radius_km;  /* location.accuracy_radius, km */
    uint32_t geoname_id; /* city.geoname_id, 0 if none */
    uint32_t asn;        /* autonomous_system_number from the ASN db, 0 if none;
                            filled whether or not the City db knows the address */
    double lat, lon;     /* degrees */
    const char *city;
    const char *time_zone;
    const char *asn_org;
    tw_geo_addr_t addr; /* the parsed address; family 0 when invalid */
} tw_geo_result_t;

/*
 * Opens city_db (required) and asn_db (NULL for none) with MMDB_MODE_MMAP and
 * allocates a cache of cache_entries slots (rounded up to a power of two;
 * 0 disables the cache, > TW_GEO_CACHE_MAX is an error).
 * The City database's metadata database_type must contain "City" or
 * "Enterprise" (GeoLite2-City, GeoIP2-City, DBIP-City-Lite, GeoIP2-Enterprise);
 * the ASN database's must contain "ASN" or "ISP" (GeoLite2-ASN, GeoIP2-ISP).
 * Returns 0 and sets *out, or -1 with err naming the path and the problem.
 */
int tw_geo_open(tw_geo_t **out, const char *city_db, const char *asn_db, size_t cache_entries,
                tw_err_t *err);

/* Unmaps the databases and frees everything, including interned strings.
 * NULL-safe. Owner thread only. */
void tw_geo_close(tw_geo_t *g);

/*
 * Looks up the address text ip[0..ip_len) and fills *out. Returns
 * out->status, so `tw_geo_lookup(...) == 0` means "found". Allocates only
 * the first time a record's string is seen. Owner thread only.
 */
tw_geo_status_t tw_geo_lookup(tw_geo_t *g, const char *ip, size_t ip_len, tw_geo_result_t *out);

/*
 * tw_geo_lookup() for an address already parsed by tw_geo_addr_parse()
 * (family 4 or 6): the same answer and counters, without parsing again.
 */
tw_geo_status_t tw_geo_lookup_addr(tw_geo_t *g, const tw_geo_addr_t *a, tw_geo_result_t *out);

/* Starts loading the cache line a lookup of the parsed address a would read
 * first (no effect on state or counters), so a tw_geo_lookup_addr() after
 * some unrelated work finds it in cache. Owner thread only. */
void tw_geo_prefetch(const tw_geo_t *g, const tw_geo_addr_t *a);

/* Counters since open. lookups == sum of by_status; cache_hits + tree_walks
 * == by_status[FOUND] + [NOT_FOUND] + [ERROR]. */
typedef struct tw_geo_stats {
    uint64_t lookups;
    uint64_t by_status[TW_GEO_STATUS_COUNT];
    uint64_t cache_hits;
    uint64_t tree_walks; /* lookups that searched the database(s) */
    uint64_t cache_evictions;
    uint64_t interned_bytes; /* memory held by interned strings */
} tw_geo_stats_t;

/* Copies the counters. Any thread: each counter is read atomically (relaxed;
 * the counters are not a consistent snapshot of one instant). */
void tw_geo_stats(const tw_geo_t *g, tw_geo_stats_t *out);

/* Database identity for the startup log and build-info style metrics. */
typedef struct tw_geo_info {
    const char *city_type; /* metadata database_type, e.g. "GeoLite2-City" */
    uint64_t city_build_epoch;
    const char *asn_type; /* NULL without an ASN database */
    uint64_t asn_build_epoch;
    size_t cache_slots; /* after rounding; 0 when the cache is off */
} tw_geo_info_t;

/* Fills *out; the strings live as long as g. Any thread (immutable after open). */
void tw_geo_info(const tw_geo_t *g, tw_geo_info_t *out);

/*
 * Interns s[0..n) in g's string table, the one lookup results point into,
 * and returns the stored NUL-terminated copy: equal strings give the same
 * pointer, also as the city/time_zone of lookups (persist.c re-interns the
 * strings of saved baselines with it). Cut at an embedded NUL and at
 * TW_GEO_STR_MAX bytes (at a UTF-8 boundary), as lookups cut; "" (a static
 * string) when that leaves nothing. Allocates only for a string not seen
 * before; the copy lives until tw_geo_close(). Owner thread only.
 */
const char *tw_geo_intern(tw_geo_t *g, const char *s, size_t n);

#endif
