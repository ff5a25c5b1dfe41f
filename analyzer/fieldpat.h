/*
 * fieldpat.h — a matcher of its own for the PCRE2 patterns that log formats
 * usually are: anchored sequences of literal text and whitespace-delimited
 * fields, some of them optional, e.g. the shipped generic-text
 *   ^(?<time>\S+) ip=(?<ip>\S+)(?: user=(?<user>\S+))? token=(?<token>\S+)...$
 *
 * Such a pattern has exactly one way to match a line: every \S+ must take
 * the whole run of non-space bytes, because what may follow it begins with
 * whitespace or is the end. The only choices are the optional groups, and
 * this matcher takes them in PCRE2's order (the group first, then without
 * it), so it finds the same match with the same captures, at a fraction of
 * the cost of the JIT (fields are found sixteen bytes at a time).
 *
 * The subset (anything else: NULL, and the format runs PCRE2 as before):
 *   pattern  := '^' item* ['$']
 *   item     := literal byte | '\' ASCII punctuation | '\S+'
 *             | '(?<' name '>' item* ')' | '(?:' item* ')?'
 * where a literal byte is any byte but \ ^ $ . [ ] | ( ) ? * + { }, a name
 * is [A-Za-z_][A-Za-z0-9_]*, and, for the single-match argument, whatever
 * may come right after a \S+ (entering or skipping optional groups) is a
 * literal whitespace byte, the '$' or the pattern's end. At most
 * TW_FIELDPAT_MAX_OPT optional groups (bounding the backtracking to
 * 2^TW_FIELDPAT_MAX_OPT paths) and TW_FIELDPAT_MAX_CAPS captures.
 *
 * Semantics are PCRE2's for a pattern compiled with only PCRE2_NEVER_UTF
 * (format.c): bytes, case-sensitive; \S is any byte but the six of \s in
 * PCRE2's default tables (HT, LF, VT, FF, CR, space; tw_fieldpat_compile
 * checks the linked library agrees); '$' matches at the end or before a
 * final newline. Groups are numbered by their opening parenthesis, as PCRE2
 * does; format.c also checks the capture count against PCRE2's.
 *
 * Threading: a compiled pattern is immutable; tw_fieldpat_match is
 * thread-safe and allocates nothing.
 */
#ifndef TW_FIELDPAT_H
#define TW_FIELDPAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TW_FIELDPAT_MAX_CAPS 32
#define TW_FIELDPAT_MAX_OPT 4
#define TW_FIELDPAT_UNSET SIZE_MAX   /* == PCRE2_UNSET */

typedef struct tw_fieldpat tw_fieldpat_t;

/* The pattern (NUL-terminated) compiled for this matcher, or NULL when it is
 * outside the subset above. The pattern should already have compiled with
 * PCRE2: this does not report syntax errors. */
tw_fieldpat_t *tw_fieldpat_compile(const char *pattern);
void tw_fieldpat_free(tw_fieldpat_t *fp);   /* NULL-safe */

/* Number of capture groups (PCRE2_INFO_CAPTURECOUNT). */
uint32_t tw_fieldpat_captures(const tw_fieldpat_t *fp);

/* Matches s[0..n). On a match returns true and fills ov[0 .. 2*(captures+1))
 * like PCRE2's ovector: ov[0], ov[1] the whole match, ov[2k], ov[2k+1]
 * group k, or TW_FIELDPAT_UNSET for groups not set. */
bool tw_fieldpat_match(const tw_fieldpat_t *fp, const char *s, size_t n, size_t *ov);

#endif
