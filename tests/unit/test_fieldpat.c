/*
 * test_fieldpat.c — fieldpat (analyzer/fieldpat.h) against PCRE2 itself.
 *
 *  - which patterns are in the subset, and which are left to PCRE2 (the
 *    ones where \S+ could stop early, quantifiers, classes, options, ...);
 *  - for each accepted pattern, hundreds of thousands of lines built from
 *    its own literals, runs of random bytes (all 256 values), every
 *    whitespace byte and a trailing newline, matched by fieldpat and by
 *    PCRE2 (interpreter and JIT, compiled as format.c does): the same
 *    verdict and every offset of the ovector the same;
 *  - runs of every length around the 16-byte blocks the matcher scans.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>

#include "fieldpat.h"
#include "tw_test.h"

typedef struct {
    pcre2_code *re;
    pcre2_match_data *md;
    bool jit;
    uint32_t caps;
} pcre_t;

static bool pcre_open(pcre_t *r, const char *pattern, bool jit)
{
    int code;
    PCRE2_SIZE off;
    r->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_NEVER_UTF, &code,
                          &off, NULL);
    if (!r->re)
        return false;
    r->md = pcre2_match_data_create_from_pattern(r->re, NULL);
    r->jit = jit && pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE) == 0;
    pcre2_pattern_info(r->re, PCRE2_INFO_CAPTURECOUNT, &r->caps);
    return true;
}

static void pcre_close(pcre_t *r)
{
    pcre2_match_data_free(r->md);
    pcre2_code_free(r->re);
}

/* The ovector PCRE2 gives, groups past rc as unset: what format.c reads. */
static bool pcre_match(pcre_t *r, const char *s, size_t n, size_t *ov)
{
    int rc = r->jit ? pcre2_jit_match(r->re, (PCRE2_SPTR)s, n, 0, 0, r->md, NULL)
                    : pcre2_match(r->re, (PCRE2_SPTR)s, n, 0, 0, r->md, NULL);
    if (rc <= 0)
        return false;
    const PCRE2_SIZE *v = pcre2_get_ovector_pointer(r->md);
    for (uint32_t k = 0; k <= r->caps; k++) {
        bool set = k < (uint32_t)rc && v[2 * k] != PCRE2_UNSET;
        ov[2 * k] = set ? v[2 * k] : TW_FIELDPAT_UNSET;
        ov[2 * k + 1] = set ? v[2 * k + 1] : TW_FIELDPAT_UNSET;
    }
    return true;
}

static void test_subset(void)
{
    static const struct {
        const char *pattern;
        int caps;   /* -1: outside the subset */
    } cases[] = {
        {"^(?<time>\\S+) ip=(?<ip>\\S+)(?: user=(?<user>\\S+))? token=(?<token>\\S+)"
         "(?: path=(?<path>\\S+))? result=(?<result>\\S+)$", 6},
        {"^a", 0},
        {"^", 0},
        {"^$", 0},
        {"^(?<x>\\S+)$", 1},
        {"^(?<x>\\S+)", 1},
        {"^\\S+ (?<a_1>\\S+)\\ \\S+$", 1},
        {"^(?<a>\\S+)\\t(?<b>\\S+)$", -1},   /* \t: an escape we leave to PCRE2 */
        {"^\\[(?<t>[^]]+)\\] (?<x>\\S+)$", -1},
        {"^(?<t>\\S+)\\[x\\]$", -1},   /* \S+ then '[': could stop early */
        {"^(?<x>\\S+)x", -1},
        {"^\\S+\\S+", -1},
        {"^\\S+(?<a>\\S+)", -1},
        {"^\\S+(?:x)? y", -1},
        {"^\\S+(?: x)?y", -1},
        {"^\\S+(?: x)? y$", 0},
        {"^\\S+(?: (?: x)?)? y$", 0},
        {"^\\S+(?:(?: x)? z)? y$", 0},
        {"^\\S+(?:(?:x)? z)? y$", -1},
        {"^(?<o>(?<i>\\S+) \\S+) (?<z>\\S+)", 3},
        {"^x(?:)?$", 0},
        {"^\xc3\xa9 (?<x>\\S+)$", 1},
        {"^a\\.b\\-c\\/d\\:e\\%", 0},
        /* outside: no anchor, quantifiers, classes, alternatives, options */
        {"a", -1},
        {"^a+", -1},
        {"^a*", -1},
        {"^a?", -1},
        {"^a{2}", -1},
        {"^a{", -1},
        {"^a}", -1},
        {"^.", -1},
        {"^[ab]", -1},
        {"^a|b", -1},
        {"^(a)", -1},
        {"^(?i)a", -1},
        {"^(?<=a)b", -1},
        {"^(?<!a)b", -1},
        {"^(?=a)", -1},
        {"^(?'x'\\S+)", -1},
        {"^(?P<x>\\S+)", -1},
        {"^(?<x>\\S+)?", -1},
        {"^(?<x>\\S+)+", -1},
        {"^(?: a)", -1},
        {"^(?: a)??", -1},
        {"^(?: a)?+", -1},
        {"^(?: a)*", -1},
        {"^\\S*", -1},
        {"^\\S", -1},
        {"^\\S+?", -1},
        {"^\\S++", -1},
        {"^\\s+", -1},
        {"^\\d", -1},
        {"^\\w+", -1},
        {"^\\Qa\\E", -1},
        {"^\\x41", -1},
        {"^\\", -1},
        {"^a$b", -1},
        {"^a$$", -1},
        {"^(?: a$)?", -1},
        {"^^a", -1},
        {"(*NO_JIT)^a", -1},
        {"^(*CR)a", -1},
        {"^(?: a)?(?: b)?(?: c)?(?: d)?", 0},
        {"^(?: a)?(?: b)?(?: c)?(?: d)?(?: e)?", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tw_fieldpat_t *fp = tw_fieldpat_compile(cases[i].pattern);
        if ((fp != NULL) != (cases[i].caps >= 0))
            fprintf(stderr, "pattern %s: %s\n", cases[i].pattern,
                    fp ? "accepted, expected PCRE2" : "left to PCRE2, expected accepted");
        TW_CHECK((fp != NULL) == (cases[i].caps >= 0));
        if (fp) {
            TW_CHECK_INT(tw_fieldpat_captures(fp), cases[i].caps);
            pcre_t r;
            TW_CHECK(pcre_open(&r, cases[i].pattern, false));
            TW_CHECK_INT(r.caps, tw_fieldpat_captures(fp));
            pcre_close(&r);
        }
        tw_fieldpat_free(fp);
    }
    /* Thirty-two captures fit, thirty-three do not. */
    char big[32 * 16 + 8];
    for (int caps = 32; caps <= 33; caps++) {
        size_t at = 0;
        big[at++] = '^';
        for (int k = 0; k < caps; k++)
            at += (size_t)snprintf(big + at, sizeof big - at, " (?<g%d>\\S+)", k);
        tw_fieldpat_t *fp = tw_fieldpat_compile(big);
        TW_CHECK((fp != NULL) == (caps == 32));
        tw_fieldpat_free(fp);
    }
}

/* --- differential -------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static const char spaces[] = {' ', '\t', '\n', '\v', '\f', '\r'};

/* A line made of pieces: the pattern's literals (most often), runs of
 * printable or arbitrary bytes, single whitespace bytes. */
static size_t make_line(char *buf, size_t cap, const char *const *lits, size_t nlits)
{
    size_t n = 0;
    int pieces = 1 + (int)rnd(12);
    for (int i = 0; i < pieces && n < cap - 64; i++) {
        switch (rnd(8)) {
        case 0: case 1: case 2: {
            const char *l = lits[rnd((uint32_t)nlits)];
            size_t k = strlen(l);
            memcpy(buf + n, l, k);
            n += k;
            break;
        }
        case 3: case 4: {
            size_t k = rnd(40);
            for (size_t j = 0; j < k; j++)
                buf[n++] = (char)('!' + rnd(94));
            break;
        }
        case 5: {
            size_t k = 1 + rnd(20);
            for (size_t j = 0; j < k; j++)
                buf[n++] = (char)rnd(256);
            break;
        }
        case 6:
            buf[n++] = spaces[rnd(sizeof spaces)];
            break;
        default:
            break;
        }
    }
    if (rnd(16) == 0)
        buf[n++] = '\n';
    return n;
}

static int compare(const tw_fieldpat_t *fp, pcre_t *r, const char *s, size_t n)
{
    size_t a[2 * (TW_FIELDPAT_MAX_CAPS + 1)], b[2 * (TW_FIELDPAT_MAX_CAPS + 1)];
    bool ma = tw_fieldpat_match(fp, s, n, a);
    bool mb = pcre_match(r, s, n, b);
    bool same = ma == mb;
    for (uint32_t k = 0; same && ma && k < 2 * (r->caps + 1); k++)
        same = a[k] == b[k];
    if (!same) {
        fprintf(stderr, "fieldpat (%s) and PCRE2%s (%s) differ on \"",
                ma ? "match" : "no match", r->jit ? " JIT" : "", mb ? "match" : "no match");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, (unsigned char)s[i] >= ' ' && s[i] < 0x7f ? "%c" : "\\x%02x",
                    (unsigned char)s[i]);
        fprintf(stderr, "\"\n");
    }
    return !same;
}

typedef struct {
    const char *pattern;
    const char *lits[8];
} diff_case_t;

static void test_differential(void)
{
    static const diff_case_t cases[] = {
        {"^(?<time>\\S+) ip=(?<ip>\\S+)(?: user=(?<user>\\S+))? token=(?<token>\\S+)"
         "(?: path=(?<path>\\S+))? result=(?<result>\\S+)$",
         {"2026-11-29T00:00:00Z", " ip=", " user=", " token=", " path=", " result=", "ok"}},
        {"^(?<a>\\S+) (?<b>\\S+)", {" ", "x", "yy"}},
        {"^(?<a>\\S+)(?: (?<b>\\S+))?(?: (?<c>\\S+))?$", {" ", "a", "bb"}},
        /* the group matches, what follows it does not: back out, unset b */
        {"^(?<a>\\S+)(?: (?<b>\\S+))? (?<c>\\S+)$", {" ", "a", "bb"}},
        {"^\\S+(?: (?<u>\\S+) u)? (?<v>\\S+)$", {" u", " ", "x", "u"}},
        {"^\\S+(?: (?: x)?)? y$", {" x", " y", " ", "x", "y"}},
        {"^\\S+(?:(?: x)? z)? y$", {" x", " y", " z", " "}},
        {"^(?<o>(?<i>\\S+) \\S+) (?<z>\\S+)", {" ", "ab", "c"}},
        {"^key=(?<v>\\S+)(?: k2=(?<w>\\S+))?", {"key=", " k2=", " ", "key=k2="}},
        {"^(?: a)?(?: b)?(?: c)?(?: d)?$", {" a", " b", " c", " d", " "}},
        {"^a long literal prefix, longer than eight bytes: (?<x>\\S+) tail$",
         {"a long literal prefix, longer than eight bytes: ", " tail", "a long", " "}},
        {"^\xc3\xa9 (?<x>\\S+)$", {"\xc3\xa9 ", "\xc3", " "}},
        {"^x(?:)?(?<e>)$", {"x", ""}},
    };
    static char line[4096];
    int bad = 0;
    long lines = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tw_fieldpat_t *fp = tw_fieldpat_compile(cases[i].pattern);
        TW_CHECK(fp != NULL);
        if (!fp)
            continue;
        size_t nlits = 0;
        while (nlits < 8 && cases[i].lits[nlits])
            nlits++;
        for (int jit = 0; jit <= 1; jit++) {
            pcre_t r;
            if (!pcre_open(&r, cases[i].pattern, jit)) {
                TW_CHECK(!"PCRE2 compiles the pattern");
                continue;
            }
            int matched = 0;
            for (int k = 0; k < 100000 && bad < 20; k++, lines++) {
                size_t n = make_line(line, sizeof line, cases[i].lits, nlits);
                bad += compare(fp, &r, line, n);
                size_t ov[2 * (TW_FIELDPAT_MAX_CAPS + 1)];
                matched += tw_fieldpat_match(fp, line, n, ov);
            }
            /* the lines reach both verdicts */
            if (matched == 0 || matched == 100000)
                fprintf(stderr, "%s: %d of 100000 matched\n", cases[i].pattern, matched);
            TW_CHECK(matched > 0 && matched < 100000);
            pcre_close(&r);
        }
        tw_fieldpat_free(fp);
    }
    TW_CHECK_INT(bad, 0);
    TW_CHECK(lines >= 2000000);
}

/* Every byte value in a field and around it, fields of every length from 0
 * to 40 (the 16-byte blocks and the bytewise tail), with the field at the
 * end of the line and in its middle, and a NULL line. */
static void test_bytes_and_lengths(void)
{
    const char *pattern = "^(?<a>\\S+) (?<b>\\S+)$";
    tw_fieldpat_t *fp = tw_fieldpat_compile(pattern);
    TW_CHECK(fp != NULL);
    if (!fp)
        return;
    int bad = 0;
    for (int jit = 0; jit <= 1; jit++) {
        pcre_t r;
        TW_CHECK(pcre_open(&r, pattern, jit));
        char line[128];
        for (size_t len = 0; len <= 40; len++) {
            for (size_t at = 0; at <= len; at++) {
                for (int c = 0; c < 256; c++) {
                    /* "x...x y": byte c at offset at of the first field */
                    memset(line, 'x', len);
                    line[len] = ' ';
                    line[len + 1] = 'y';
                    if (at < len)
                        line[at] = (char)c;
                    bad += compare(fp, &r, line, len + 2);
                    /* "y x...x": the field ends the line (the tail loop) */
                    line[0] = 'y';
                    line[1] = ' ';
                    memset(line + 2, 'x', len);
                    if (at < len)
                        line[2 + at] = (char)c;
                    bad += compare(fp, &r, line, len + 2);
                    if (at == len)
                        break;   /* c does not appear: once is enough */
                }
            }
        }
        pcre_close(&r);
    }
    size_t ov[6];
    TW_CHECK(!tw_fieldpat_match(fp, NULL, 0, ov));
    TW_CHECK(tw_fieldpat_match(fp, "a b\n", 4, ov));
    TW_CHECK_INT(ov[1], 3);
    TW_CHECK_INT(ov[4], 2);
    TW_CHECK_INT(ov[5], 3);
    TW_CHECK(!tw_fieldpat_match(fp, "a b\n\n", 5, ov));
    TW_CHECK(!tw_fieldpat_match(fp, "a b\r", 4, ov));
    TW_CHECK_INT(bad, 0);
    tw_fieldpat_free(fp);
}

int main(void)
{
    test_subset();
    test_differential();
    test_bytes_and_lengths();
    return tw_test_done();
}
