/*
 * fuzz_api_auth.c — libFuzzer target: the API's credentials (exporter/api.h):
 * tw_api_auth_load on a bearer token file and a basic-auth file, then
 * tw_api_auth_check on Authorization header values.
 *
 * Input, sections separated by 0x1E:
 *
 *     FLAGS LF BEARER-FILE 0x1E BASIC-FILE 0x1E HEADER LF HEADER LF ...
 *
 * FLAGS (the first line) is a set of letters: 'B' writes the bearer file and
 * passes it to the loader, 'U' the basic-auth file; 'b' and 'u' put
 * TW_AUTH_BEARER and TW_AUTH_BASIC in the checks' `accept`; 'g' gives the
 * files group read permission (the loader must refuse them). Every header
 * line is checked as an Authorization value (cut at a NUL, as a C string).
 *
 * argon2id entries: a password "$argon2id$@N" (N a digit) in the basic file
 * is replaced by a hash of the password "pwN" made at start-up with
 * libsodium's minimum cost, so that checks stay fast. Any other "$argon2"
 * text is given to the loader as it is, but then no basic check runs (a
 * hash string chooses its own memory and time cost: up to 4 TiB).
 *
 * Checks: a load succeeds exactly when a reference model of the two file
 * formats says it should (bearer: one line of printable ASCII without
 * spaces, one trailing LF or CRLF; basic: "user:password" lines, CR
 * dropped, blank and '#' lines skipped, user names without control
 * characters and unique, argon2 strings well-formed, at least one user; both
 * cut at a NUL), and a refusal's message names the file and never holds
 * the bearer token; tw_api_auth_kinds says what was configured; every check
 * answers what the model answers (MISSING for no header, an unknown or
 * unconfigured scheme or empty credentials; OK for the configured bearer
 * token or a user's password; INVALID otherwise); and for each of the first
 * users and the bearer token, the right credentials built by the harness
 * pass and slightly wrong ones (one byte more) do not.
 *
 * TW_FUZZ_VERBOSE=1 prints each load's and check's result (for replays).
 */
#include "fuzz_common.h"

#include "api.h"

#include <sodium.h>
#include <strings.h>
#include <sys/stat.h>

#define HASHES 4
static char hashes[HASHES][crypto_pwhash_STRBYTES];
static char bearer_path[600], basic_path[600];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_SETUP(sodium_init() >= 0, "sodium_init");
    const char *dir = fuzz_tmpdir();
    snprintf(bearer_path, sizeof bearer_path, "%s/bearer", dir);
    snprintf(basic_path, sizeof basic_path, "%s/basic", dir);
    for (int i = 0; i < HASHES; i++) {
        char pw[4] = {'p', 'w', (char)('0' + i), '\0'};
        FUZZ_SETUP(crypto_pwhash_str(hashes[i], pw, 3, crypto_pwhash_OPSLIMIT_MIN,
                                     crypto_pwhash_MEMLIMIT_MIN) == 0,
                   "crypto_pwhash_str");
    }
    return 0;
}

/* ---- the reference model ---------------------------------------------------- */

/* More than a 4 KiB input can hold ("a:b\n" is 4 bytes). */
#define MODEL_USERS 1100

typedef struct model {
    bool bearer_ok;
    char *bearer;  /* the token, NUL-free */
    size_t bearer_len;
    bool basic_ok;
    size_t nusers;
    struct {
        char *user, *pass; /* pass is "pwN" for a substituted hash */
        size_t ulen, plen;
        bool hashed;
    } users[MODEL_USERS];
    bool too_many;   /* more users than the model keeps: it cannot judge */
    bool raw_argon2; /* "$argon2" text that is not one of hashes[] */
} model_t;

static bool model_bearer(model_t *m, const char *file, size_t n)
{
    if (n > 0 && file[n - 1] == '\n')
        n--;
    if (n > 0 && file[n - 1] == '\r')
        n--;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)file[i];
        if (c <= 0x20 || c >= 0x7f)
            return false;
    }
    m->bearer = fuzz_strndup(file, n);
    m->bearer_len = n;
    return true;
}

/* The basic-auth file as the model reads it (text is the file as written,
 * after the argon2 substitution); plain[] holds, per substituted hash, its
 * password. */
static bool model_basic(model_t *m, char *text)
{
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char *next = nl ? nl + 1 : NULL;
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        size_t lead = strspn(line, " \t");
        if (len == 0 || line[lead] == '#' || line[lead] == '\0') {
            line = next;
            continue;
        }
        char *colon = strchr(line, ':');
        if (!colon || colon == line || colon[1] == '\0')
            return false;
        size_t ulen = (size_t)(colon - line);
        for (size_t i = 0; i < ulen; i++)
            if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
                return false;
        for (size_t i = 0; i < m->nusers; i++)
            if (m->users[i].ulen == ulen && memcmp(m->users[i].user, line, ulen) == 0)
                return false;
        const char *pass = colon + 1;
        bool hashed = false;
        char pw[4];
        if (strncmp(pass, "$argon2", 7) == 0) {
            int k = -1;
            for (int i = 0; i < HASHES; i++)
                if (strcmp(pass, hashes[i]) == 0)
                    k = i;
            if (k < 0) {
                /* Raw argon2 text: the loader judges it with libsodium;
                 * the model cannot, so the caller skips the comparison. */
                m->raw_argon2 = true;
                return false;
            }
            pw[0] = 'p', pw[1] = 'w', pw[2] = (char)('0' + k), pw[3] = '\0';
            pass = pw;
            hashed = true;
        }
        if (m->nusers == MODEL_USERS) {
            m->too_many = true;
        } else {
            m->users[m->nusers].user = fuzz_strndup(line, ulen);
            m->users[m->nusers].ulen = ulen;
            m->users[m->nusers].pass = fuzz_strndup(pass, strlen(pass));
            m->users[m->nusers].plen = strlen(pass);
            m->users[m->nusers].hashed = hashed;
        }
        m->nusers++;
        line = next;
    }
    return m->nusers > 0;
}

static void model_free(model_t *m)
{
    free(m->bearer);
    for (size_t i = 0; i < m->nusers && i < MODEL_USERS; i++) {
        free(m->users[i].user);
        free(m->users[i].pass);
    }
}

static const char *scheme(const char *h, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(h, name, n) != 0 || (h[n] != ' ' && h[n] != '\t'))
        return NULL;
    h += n;
    return h + strspn(h, " \t");
}

static size_t trimmed(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return n;
}

static tw_auth_result_t model_check(const model_t *m, const char *h, unsigned accept)
{
    if (!h)
        return TW_AUTH_MISSING;
    h += strspn(h, " \t");
    const char *cred;
    if ((accept & TW_AUTH_BEARER) && m->bearer && (cred = scheme(h, "Bearer"))) {
        size_t n = trimmed(cred);
        if (n == 0)
            return TW_AUTH_MISSING;
        return n == m->bearer_len && memcmp(cred, m->bearer, n) == 0 ? TW_AUTH_OK
                                                                      : TW_AUTH_INVALID;
    }
    if ((accept & TW_AUTH_BASIC) && m->nusers && (cred = scheme(h, "Basic"))) {
        size_t n = trimmed(cred);
        if (n == 0)
            return TW_AUTH_MISSING;
        unsigned char raw[513];
        size_t rawlen;
        if (n > 700 || sodium_base642bin(raw, sizeof raw - 1, cred, n, NULL, &rawlen, NULL,
                                         sodium_base64_VARIANT_ORIGINAL) != 0)
            return TW_AUTH_INVALID;
        const unsigned char *colon = memchr(raw, ':', rawlen);
        if (!colon)
            return TW_AUTH_INVALID;
        size_t ulen = (size_t)(colon - raw), plen = rawlen - ulen - 1;
        for (size_t i = 0; i < m->nusers; i++) {
            if (m->users[i].ulen != ulen || memcmp(m->users[i].user, raw, ulen) != 0)
                continue;
            return m->users[i].plen == plen && memcmp(m->users[i].pass, colon + 1, plen) == 0
                       ? TW_AUTH_OK
                       : TW_AUTH_INVALID;
        }
        return TW_AUTH_INVALID;
    }
    return TW_AUTH_MISSING;
}

/* ---- the harness ----------------------------------------------------------- */

/* Replaces every "$argon2id$@N" password with hashes[N]; *raw_argon2 when
 * other "$argon2" text remains. Returns a fresh NUL-terminated string cut at
 * the first NUL (the loader reads the file as a C string). */
static char *substitute(const char *p, size_t n, bool *raw_argon2)
{
    n = strnlen(p, n);
    static const char mark[] = "$argon2id$@";
    size_t cap = n * (crypto_pwhash_STRBYTES / 4 + 1) + 1;
    char *out = malloc(cap), *o = out;
    FUZZ_SETUP(out != NULL, "out of memory");
    *raw_argon2 = false;
    for (size_t i = 0; i < n;) {
        if (n - i >= sizeof mark && memcmp(p + i, mark, sizeof mark - 1) == 0 &&
            p[i + sizeof mark - 1] >= '0' && p[i + sizeof mark - 1] < '0' + HASHES) {
            const char *h = hashes[p[i + sizeof mark - 1] - '0'];
            memcpy(o, h, strlen(h));
            o += strlen(h);
            i += sizeof mark;
            continue;
        }
        if (n - i >= 7 && memcmp(p + i, "$argon2", 7) == 0)
            *raw_argon2 = true;
        *o++ = p[i++];
    }
    *o = '\0';
    return out;
}

static void basic_header(char *out, size_t cap, const char *user, size_t ulen, const char *pass,
                         size_t plen, bool wrong)
{
    unsigned char pair[600];
    size_t n = 0;
    memcpy(pair, user, ulen);
    n += ulen;
    pair[n++] = ':';
    memcpy(pair + n, pass, plen);
    n += plen;
    if (wrong)
        pair[n++] = 'x';
    memcpy(out, "Basic ", 6);
    sodium_bin2base64(out + 6, cap - 6, pair, n, sodium_base64_VARIANT_ORIGINAL);
}

static void check_one(tw_api_auth_t *a, const model_t *m, const char *h, unsigned accept)
{
    tw_auth_result_t got = tw_api_auth_check(a, h, accept);
    tw_auth_result_t want = model_check(m, h, accept);
    if (getenv("TW_FUZZ_VERBOSE"))
        fprintf(stderr, "  check \"%.60s\" accept %u -> %d\n", h ? h : "(null)", accept, got);
    if (got != want)
        fprintf(stderr, "header \"%s\" accept %u: got %d, want %d\n", h ? h : "(null)", accept,
                got, want);
    FUZZ_CHECK(got == want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!bearer_path[0])
        LLVMFuzzerInitialize(NULL, NULL);
    const char *p = (const char *)data, *end = p + size;
    const char *nl = memchr(p, '\n', size);
    const char *flags_end = nl ? nl : end;
    bool use_bearer = false, use_basic = false, group = false;
    unsigned accept = 0;
    for (const char *f = p; f < flags_end; f++) {
        use_bearer |= *f == 'B';
        use_basic |= *f == 'U';
        group |= *f == 'g';
        accept |= *f == 'b' ? TW_AUTH_BEARER : *f == 'u' ? TW_AUTH_BASIC : 0u;
    }
    p = nl ? nl + 1 : end;
    const char *rs1 = memchr(p, 0x1e, (size_t)(end - p));
    const char *bearer = p;
    size_t bearer_len = (size_t)((rs1 ? rs1 : end) - p);
    p = rs1 ? rs1 + 1 : end;
    const char *rs2 = memchr(p, 0x1e, (size_t)(end - p));
    const char *basic = p;
    size_t basic_len = (size_t)((rs2 ? rs2 : end) - p);
    const char *headers = rs2 ? rs2 + 1 : end;

    model_t m;
    memset(&m, 0, sizeof m);
    bool raw_argon2 = false;
    char *basic_text = substitute(basic, basic_len, &raw_argon2);
    bool want_ok = true;
    if (use_bearer) {
        fuzz_write_file(bearer_path, bearer, bearer_len);
        FUZZ_SETUP(chmod(bearer_path, group ? 0640 : 0600) == 0, "chmod");
        m.bearer_ok = model_bearer(&m, bearer, bearer_len);
        want_ok &= m.bearer_ok;
    }
    if (use_basic) {
        fuzz_write_file(basic_path, basic_text, strlen(basic_text));
        FUZZ_SETUP(chmod(basic_path, group ? 0640 : 0600) == 0, "chmod");
        char *copy = fuzz_strndup(basic_text, strlen(basic_text));
        m.basic_ok = model_basic(&m, copy);
        free(copy);
        raw_argon2 |= m.raw_argon2;
        /* Raw argon2 text: whether libsodium takes it is not the model's
         * to say (and if it loads, no basic check runs); nor is a file of
         * more users than the model keeps. */
        raw_argon2 |= m.too_many;
        if (!raw_argon2)
            want_ok &= m.basic_ok;
    }
    if (group && (use_bearer || use_basic))
        want_ok = false;

    tw_api_auth_t *a = NULL;
    tw_err_t err;
    err.msg[0] = '\0';
    int rc = tw_api_auth_load(&a, use_bearer ? bearer_path : NULL,
                              use_basic ? basic_path : NULL, &err);
    if (getenv("TW_FUZZ_VERBOSE"))
        fprintf(stderr, "  load -> %d %s\n", rc, rc ? err.msg : "");
    if (rc != 0) {
        FUZZ_CHECK(a == NULL);
        FUZZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
        FUZZ_CHECK(strncmp(err.msg, bearer_path, strlen(bearer_path)) == 0 ||
                   strncmp(err.msg, basic_path, strlen(basic_path)) == 0);
        /* A secret never goes into a message (a short one could occur in
         * it by chance). */
        if (m.bearer && m.bearer_len >= 8 &&
            strncmp(err.msg, bearer_path, strlen(bearer_path)) == 0)
            FUZZ_CHECK(strstr(err.msg + strlen(bearer_path), m.bearer) == NULL);
        FUZZ_CHECK(!want_ok || (use_basic && raw_argon2));
        goto out;
    }
    FUZZ_CHECK(a != NULL);
    FUZZ_CHECK(want_ok);
    FUZZ_CHECK(tw_api_auth_kinds(a) ==
               ((use_bearer ? TW_AUTH_BEARER : 0u) | (use_basic ? TW_AUTH_BASIC : 0u)));
    unsigned all = TW_AUTH_BEARER | TW_AUTH_BASIC;
    if (raw_argon2 || m.too_many) {
        /* The model does not know the users (and a raw hash string may ask
         * for any cost): keep basic credentials out of the checks. */
        accept &= ~TW_AUTH_BASIC;
        all = TW_AUTH_BEARER;
        for (size_t i = 0; i < m.nusers && i < MODEL_USERS; i++) {
            free(m.users[i].user);
            free(m.users[i].pass);
        }
        m.nusers = 0;
    }

    check_one(a, &m, NULL, accept);
    for (const char *h = headers; h < end;) {
        const char *e = memchr(h, '\n', (size_t)(end - h));
        size_t n = (size_t)((e ? e : end) - h);
        char *hdr = fuzz_strndup(h, n);
        check_one(a, &m, hdr, accept);
        check_one(a, &m, hdr, all);
        free(hdr);
        h = e ? e + 1 : end;
    }

    /* The right credentials pass, one byte more does not. */
    char hdr[1024];
    if (m.bearer && m.bearer_len < 900) {
        snprintf(hdr, sizeof hdr, "Bearer %s", m.bearer);
        FUZZ_CHECK(tw_api_auth_check(a, hdr, TW_AUTH_BEARER) == TW_AUTH_OK);
        snprintf(hdr, sizeof hdr, "bearer\t %sx ", m.bearer);
        FUZZ_CHECK(tw_api_auth_check(a, hdr, TW_AUTH_BEARER | TW_AUTH_BASIC) ==
                   TW_AUTH_INVALID);
        FUZZ_CHECK(tw_api_auth_check(a, hdr, TW_AUTH_BASIC) == TW_AUTH_MISSING);
    }
    for (size_t i = 0; i < m.nusers && i < 4; i++) {
        if (m.users[i].ulen + m.users[i].plen + 2 > 512)
            continue;
        basic_header(hdr, sizeof hdr, m.users[i].user, m.users[i].ulen, m.users[i].pass,
                     m.users[i].plen, false);
        FUZZ_CHECK(tw_api_auth_check(a, hdr, TW_AUTH_BASIC) == TW_AUTH_OK);
        /* A second time: a hashed password may now come from the cache. */
        FUZZ_CHECK(tw_api_auth_check(a, hdr, TW_AUTH_BASIC | TW_AUTH_BEARER) == TW_AUTH_OK);
        FUZZ_CHECK(tw_api_auth_check(a, hdr, TW_AUTH_BEARER) == TW_AUTH_MISSING);
        basic_header(hdr, sizeof hdr, m.users[i].user, m.users[i].ulen, m.users[i].pass,
                     m.users[i].plen, true);
        FUZZ_CHECK(tw_api_auth_check(a, hdr, TW_AUTH_BASIC) == TW_AUTH_INVALID);
    }
    tw_api_auth_free(a);
out:
    free(basic_text);
    model_free(&m);
    return 0;
}
