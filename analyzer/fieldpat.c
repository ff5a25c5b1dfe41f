/*
 * fieldpat.c — the matcher for field patterns (fieldpat.h).
 *
 * A pattern is parsed into a flat program, checked, then lowered:
 *   LIT    bytes that must follow
 *   RUN    \S+: the whole run of non-space bytes, at least one
 *   OPEN   / CLOSE k: group k starts / ends here
 *   OPT    an optional group; .arg is the instruction after its body
 *   OPT_END the end of that body (parsing only)
 *   END    '$', or ANY: the pattern ends without '$'
 * Lowering fuses the usual shapes (LIT, LIT RUN, [LIT] OPEN k RUN CLOSE k)
 * into one FIELD each and drops OPT_END, so the shipped generic-text runs
 * eleven instructions a line.
 *
 * The matcher walks the program in a loop. OPT pushes a choice point (go
 * on without the group from here) and enters the group; a failure pops the
 * latest one, unsets the captures inside that group and goes on after it.
 * That is PCRE2's order for a greedy '?'. Captures a failed path set after
 * the group need no undoing: the path that goes on sets each of them again
 * or, for those inside later optional groups it skips, unsets them.
 */
#include "fieldpat.h"

#include "common.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

_Static_assert(TW_FIELDPAT_UNSET == PCRE2_UNSET, "unset offsets as in PCRE2");

#define MAX_INSNS 256

typedef enum {
    OP_LIT, OP_RUN, OP_OPEN, OP_CLOSE, OP_OPT, OP_OPT_END, OP_END, OP_ANY, OP_FIELD
} op_t;

typedef struct insn {
    uint8_t op;
    uint8_t cap;      /* OPEN, CLOSE, FIELD (0: none); OPT: first capture inside */
    uint8_t cap_end;  /* OPT: one past the last capture inside */
    uint8_t run;      /* FIELD: a \S+ follows the literal */
    uint16_t len;     /* LIT, FIELD: literal bytes (FIELD: may be 0) */
    uint32_t arg;     /* LIT, FIELD: offset in fp->lit; OPT: index after the group */
    uint64_t head;    /* LIT, FIELD: first min(len, 8) bytes, as loaded from memory */
    uint64_t mask;    /* LIT, FIELD: the bits of head that count */
} insn_t;

struct tw_fieldpat {
    insn_t *prog;
    uint32_t n;
    uint32_t caps;
    unsigned char *lit;   /* literal bytes, LIT.arg indexes here */
};

/* --- whitespace ---------------------------------------------------------- */

static inline bool is_space(unsigned char c)
{
    return c == ' ' || (unsigned char)(c - 9) <= 4;   /* HT LF VT FF CR */
}

/* Whether PCRE2's \s (default tables, no UTF) is exactly is_space(): the
 * matcher's \S must be the library's. */
static bool pcre2_space_agrees(void)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR) "\\s", 2, PCRE2_NEVER_UTF | PCRE2_ANCHORED,
                                   &code, &off, NULL);
    if (!re)
        return false;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    bool ok = md != NULL;
    for (int c = 0; ok && c < 256; c++) {
        unsigned char b = (unsigned char)c;
        bool space = pcre2_match(re, &b, 1, 0, 0, md, NULL) == 1;
        ok = space == is_space(b);
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return ok;
}

/* --- compiling ----------------------------------------------------------- */

typedef struct builder {
    const unsigned char *pat;
    size_t pos;
    insn_t prog[MAX_INSNS];
    uint32_t n;
    uint32_t caps;
    uint32_t opts;
    unsigned char *lit;
    size_t nlit;
} builder_t;

static bool emit(builder_t *b, insn_t in)
{
    if (b->n >= MAX_INSNS)
        return false;
    b->prog[b->n++] = in;
    return true;
}

/* Characters that are never a literal by themselves. */
static bool is_meta(unsigned char c)
{
    return strchr("\\^$.[]|()?*+{}", c) != NULL && c != '\0';
}

static bool is_quantifier(unsigned char c)
{
    return c == '?' || c == '*' || c == '+' || c == '{';
}

static bool is_ascii_punct(unsigned char c)
{
    return c >= ' ' && c < 0x7f && !(c >= '0' && c <= '9') && !(c >= 'A' && c <= 'Z') &&
           !(c >= 'a' && c <= 'z');
}

/* Appends one literal byte, extending the LIT before it when there is one. */
static bool add_literal(builder_t *b, unsigned char c)
{
    insn_t *last = b->n ? &b->prog[b->n - 1] : NULL;
    b->lit[b->nlit] = c;
    if (last && last->op == OP_LIT && last->arg + last->len == b->nlit && last->len < 0xffff) {
        last->len++;
    } else if (!emit(b, (insn_t){.op = OP_LIT, .len = 1, .arg = (uint32_t)b->nlit})) {
        return false;
    }
    b->nlit++;
    return true;
}

/* item* up to ')' (depth > 0) or the end; returns false outside the subset. */
static bool parse_seq(builder_t *b, int depth)
{
    for (;;) {
        unsigned char c = b->pat[b->pos];
        if (c == '\0')
            return depth == 0;
        if (c == ')')
            return depth > 0;
        if (c == '$')
            return depth == 0 && b->pat[b->pos + 1] == '\0';   /* only last */
        if (c == '\\') {
            unsigned char e = b->pat[b->pos + 1];
            if (e == 'S' && b->pat[b->pos + 2] == '+') {
                b->pos += 3;
                if (is_quantifier(b->pat[b->pos]) || !emit(b, (insn_t){.op = OP_RUN}))
                    return false;
                continue;
            }
            if (!is_ascii_punct(e))
                return false;
            b->pos += 2;
            if (is_quantifier(b->pat[b->pos]) || !add_literal(b, e))
                return false;
            continue;
        }
        if (c == '(') {
            const unsigned char *g = b->pat + b->pos;
            if (g[1] != '?')
                return false;
            if (g[2] == ':') {
                if (++b->opts > TW_FIELDPAT_MAX_OPT)
                    return false;
                uint32_t at = b->n;
                b->pos += 3;
                if (!emit(b, (insn_t){.op = OP_OPT, .cap = (uint8_t)(b->caps + 1)}) ||
                    !parse_seq(b, depth + 1))
                    return false;
                b->prog[at].cap_end = (uint8_t)(b->caps + 1);
                /* at ')': exactly one '?' must follow, not '??', '?+' or another quantifier */
                if (b->pat[b->pos + 1] != '?' || is_quantifier(b->pat[b->pos + 2]))
                    return false;
                b->pos += 2;
                if (!emit(b, (insn_t){.op = OP_OPT_END}))
                    return false;
                b->prog[at].arg = b->n;
                continue;
            }
            if (g[2] != '<')
                return false;
            size_t i = 3;
            unsigned char f = g[i];
            if (!(f == '_' || (f >= 'A' && f <= 'Z') || (f >= 'a' && f <= 'z')))
                return false;   /* also excludes the look-behinds (?<= and (?<! */
            while (g[i] == '_' || (g[i] >= 'A' && g[i] <= 'Z') || (g[i] >= 'a' && g[i] <= 'z') ||
                   (g[i] >= '0' && g[i] <= '9'))
                i++;
            if (g[i] != '>' || b->caps >= TW_FIELDPAT_MAX_CAPS)
                return false;
            uint8_t cap = (uint8_t)++b->caps;
            b->pos += i + 1;
            if (!emit(b, (insn_t){.op = OP_OPEN, .cap = cap}) || !parse_seq(b, depth + 1))
                return false;
            b->pos++;   /* ')' */
            if (is_quantifier(b->pat[b->pos]) || !emit(b, (insn_t){.op = OP_CLOSE, .cap = cap}))
                return false;
            continue;
        }
        if (is_meta(c))
            return false;
        b->pos++;
        if (is_quantifier(b->pat[b->pos]) || !add_literal(b, c))
            return false;
    }
}

/* Whether every way on from instruction i, up to the next byte consumed,
 * meets a literal whitespace byte, '$' or the end (see fieldpat.h). */
static bool continues_with_space(const builder_t *b, uint32_t i)
{
    for (;;) {
        const insn_t *in = &b->prog[i];
        switch (in->op) {
        case OP_LIT:
            return is_space(b->lit[in->arg]);
        case OP_RUN:
            return false;
        case OP_OPT:
            if (!continues_with_space(b, in->arg))
                return false;
            i++;   /* and into the group */
            break;
        case OP_END:
        case OP_ANY:
            return true;
        default:   /* OPEN, CLOSE, OPT_END consume nothing */
            i++;
            break;
        }
    }
}

/* The parsed program b->prog[0 .. b->n) lowered into out (room for b->n):
 * FIELDs for the fused shapes, no OPT_END, OPT targets renumbered.
 * Returns the number of instructions. */
static uint32_t lower(const builder_t *b, insn_t *out)
{
    uint32_t map[MAX_INSNS + 1];   /* parsed index -> lowered index */
    uint32_t m = 0;
    for (uint32_t i = 0; i < b->n;) {
        const insn_t *in = &b->prog[i];
        map[i] = m;
        insn_t f = {.op = OP_FIELD};
        uint32_t next = i;
        if (in->op == OP_LIT) {
            f.len = in->len;
            f.arg = in->arg;
            next++;
        }
        const insn_t *r = &b->prog[next];
        if (r->op == OP_RUN) {
            f.run = 1;
            next++;
        } else if (r->op == OP_OPEN && next + 2 < b->n && r[1].op == OP_RUN &&
                   r[2].op == OP_CLOSE) {
            f.run = 1;
            f.cap = r->cap;
            next += 3;
        }
        if (next == i) {
            /* not a FIELD: OPEN, CLOSE, OPT, END, ANY as they are */
            if (in->op != OP_OPT_END)
                out[m++] = *in;
            i++;
            continue;
        }
        for (uint32_t k = i + 1; k < next; k++)
            map[k] = m;
        out[m++] = f;
        i = next;
    }
    map[b->n] = m;
    for (uint32_t k = 0; k < m; k++)
        if (out[k].op == OP_OPT)
            out[k].arg = map[out[k].arg];
    return m;
}

static void set_head(insn_t *in, const unsigned char *lit)
{
    size_t k = in->len < 8 ? in->len : 8;
    unsigned char w[8] = {0}, m[8] = {0};
    memcpy(w, lit + in->arg, k);
    memset(m, 0xff, k);
    memcpy(&in->head, w, 8);   /* byte order as a memcpy'd load sees it */
    memcpy(&in->mask, m, 8);
}

tw_fieldpat_t *tw_fieldpat_compile(const char *pattern)
{
    size_t plen = strlen(pattern);
    if (pattern[0] != '^' || plen > MAX_INSNS * 4 || !pcre2_space_agrees())
        return NULL;
    builder_t *b = tw_xcalloc(1, sizeof *b);
    b->pat = (const unsigned char *)pattern;
    b->pos = 1;
    b->lit = tw_xmalloc(plen + 1);
    tw_fieldpat_t *fp = NULL;
    if (!parse_seq(b, 0))
        goto out;
    bool dollar = b->pat[b->pos] == '$';
    if (!emit(b, (insn_t){.op = dollar ? OP_END : OP_ANY}))
        goto out;
    for (uint32_t i = 0; i < b->n; i++)
        if (b->prog[i].op == OP_RUN && !continues_with_space(b, i + 1))
            goto out;
    fp = tw_xcalloc(1, sizeof *fp);
    fp->prog = tw_xcalloc(b->n, sizeof *fp->prog);
    fp->n = lower(b, fp->prog);
    for (uint32_t i = 0; i < fp->n; i++)
        if (fp->prog[i].op == OP_FIELD)
            set_head(&fp->prog[i], b->lit);
    fp->caps = b->caps;
    fp->lit = b->lit;
    b->lit = NULL;
out:
    free(b->lit);
    free(b);
    return fp;
}

void tw_fieldpat_free(tw_fieldpat_t *fp)
{
    if (!fp)
        return;
    free(fp->prog);
    free(fp->lit);
    free(fp);
}

uint32_t tw_fieldpat_captures(const tw_fieldpat_t *fp)
{
    return fp->caps;
}

/* --- matching ------------------------------------------------------------ */

/* The first whitespace byte at or after s + i, or n. */
static inline size_t run_end(const unsigned char *s, size_t i, size_t n)
{
#ifdef __SSE2__
    const __m128i sp = _mm_set1_epi8(' '), nine = _mm_set1_epi8(9), four = _mm_set1_epi8(4);
    while (n - i >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i t = _mm_sub_epi8(x, nine);   /* 9..13 -> 0..4 */
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(x, sp),
                                   _mm_cmpeq_epi8(_mm_min_epu8(t, four), t));
        unsigned m = (unsigned)_mm_movemask_epi8(hit);
        if (m)
            return i + (size_t)__builtin_ctz(m);
        i += 16;
    }
#endif
    while (i < n && !is_space(s[i]))
        i++;
    return i;
}

static inline bool lit_at(const tw_fieldpat_t *fp, const insn_t *in, const unsigned char *s,
                          size_t i, size_t n)
{
    if (n - i < in->len)
        return false;
    if (in->len <= 8 && n - i >= 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        return ((w ^ in->head) & in->mask) == 0;
    }
    return memcmp(s + i, fp->lit + in->arg, in->len) == 0;
}

bool tw_fieldpat_match(const tw_fieldpat_t *fp, const char *str, size_t n, size_t *ov)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    if (!str)
        n = 0;
    size_t nov = 2 * ((size_t)fp->caps + 1);
    for (size_t k = 0; k < nov; k++)
        ov[k] = TW_FIELDPAT_UNSET;
    ov[0] = 0;
    struct {
        uint32_t pc;   /* the OPT */
        size_t i;      /* where its group would have started */
    } choice[TW_FIELDPAT_MAX_OPT];
    unsigned nchoice = 0;
    uint32_t pc = 0;
    size_t i = 0;
    for (;;) {
        const insn_t *in = &fp->prog[pc];
        switch ((op_t)in->op) {
        case OP_FIELD:
            if (in->len) {
                if (!lit_at(fp, in, s, i, n))
                    goto fail;
                i += in->len;
            }
            if (in->run) {
                size_t e = run_end(s, i, n);
                if (e == i)
                    goto fail;
                if (in->cap) {
                    ov[2 * in->cap] = i;
                    ov[2 * in->cap + 1] = e;
                }
                i = e;
            }
            pc++;
            continue;
        case OP_OPEN:
            ov[2 * in->cap] = i;
            pc++;
            continue;
        case OP_CLOSE:
            ov[2 * in->cap + 1] = i;
            pc++;
            continue;
        case OP_OPT:
            choice[nchoice].pc = pc;
            choice[nchoice].i = i;
            nchoice++;
            pc++;
            continue;
        case OP_END:
            if (i != n && !(i + 1 == n && s[i] == '\n'))
                goto fail;
            ov[1] = i;
            return true;
        case OP_ANY:
            ov[1] = i;
            return true;
        default:   /* LIT, RUN, OPT_END: lowered away */
            return false;
        }
    fail:
        if (nchoice == 0)
            return false;
        nchoice--;
        const insn_t *opt = &fp->prog[choice[nchoice].pc];
        for (unsigned k = opt->cap; k < opt->cap_end; k++)
            ov[2 * k] = ov[2 * k + 1] = TW_FIELDPAT_UNSET;
        i = choice[nchoice].i;
        pc = opt->arg;
    }
}
