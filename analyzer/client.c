/*
 * client.c — see client.h.
 *
 * Where the daemon is: --url, else the config's http.listen (an unspecified
 * listen address such as 0.0.0.0 means this host: 127.0.0.1 or ::1), with
 * https when the config has an http.tls section; the certificate file named
 * there is then also the trust anchor, so a self-signed certificate works
 * without --cacert. The bearer token: --token-file, else the config's
 * http.auth.bearer_token_file. The config is only read for these keys (it
 * is the daemon's to validate: an analyst need not be able to read the
 * GeoIP database to list flagged tokens), and not at all when --url and
 * --token-file are both given.
 *
 * Views: one line per flagged token, columns sized to their content; a
 * token's detail view with travel legs, rate and failure numbers, the hour-
 * of-week profile as a 7x24 text heat map, and its history. Evidence keys
 * this build does not know are shown as "key: value".
 */
#include "client.h"
#include "api.h"
#include "cli.h"
#include "config.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define RESPONSE_MAX ((size_t)64 << 20)
#define CONNECT_TIMEOUT_S 5L
#define TOTAL_TIMEOUT_S 30L

/* ------------------------------------------------------------------------ */
/* Safe text for a terminal                                                 */

/* Copies s into a fresh string of at most max_cols characters (0: no
 * limit), replacing control characters (C0, DEL, C1) and every byte of
 * malformed UTF-8 with '?', and ending a cut string with "…". */
static char *clean(const char *s, size_t max_cols)
{
    if (!s)
        s = "";
    size_t n = strlen(s), cols = 0;
    char *out = tw_xmalloc(n + 4);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (max_cols && cols == max_cols) {
            if (o > 0) {
                /* Replace the last character by the ellipsis. */
                while (o > 0 && ((unsigned char)out[o - 1] & 0xC0) == 0x80)
                    o--;
                o--;
            }
            memcpy(out + o, "\xe2\x80\xa6", 3);
            o += 3;
            break;
        }
        const unsigned char *p = (const unsigned char *)s + i;
        size_t len = tw_utf8_seq_len(p, n - i);
        if (len == 0 || (len == 1 && (p[0] < 0x20 || p[0] == 0x7f)) ||
            (len == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
            out[o++] = '?';
            i += len ? len : 1;
        } else {
            memcpy(out + o, p, len);
            o += len;
            i += len;
        }
        cols++;
    }
    out[o] = '\0';
    return out;
}

/* Display columns of a cleaned string (one per code point). */
static size_t cols_of(const char *s)
{
    size_t c = 0;
    for (; *s; s++)
        c += ((unsigned char)*s & 0xC0) != 0x80;
    return c;
}

static void put_padded(FILE *out, const char *s, size_t width)
{
    fputs(s, out);
    for (size_t c = cols_of(s); c < width; c++)
        fputc(' ', out);
}

/* ------------------------------------------------------------------------ */
/* JSON access                                                              */

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jnum(const cJSON *o, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        return false;
    *out = v->valuedouble;
    return true;
}

static double jnum0(const cJSON *o, const char *key)
{
    double v = 0;
    jnum(o, key, &v);
    return v;
}

static bool jtrue(const cJSON *o, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* "16,000" style: v rounded to an integer with thousands separators. */
static void thousands(double v, char *buf, size_t cap)
{
    char digits[32];
    bool neg = v < 0;
    snprintf(digits, sizeof digits, "%.0f", fabs(v));
    size_t n = strlen(digits), o = 0;
    if (neg && cap > 1)
        buf[o++] = '-';
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
}

/* A compact number: integers without decimals, others with up to two. */
static void number(double v, char *buf, size_t cap)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, cap, "%.0f", v);
    else if (fabs(v) >= 100)
        snprintf(buf, cap, "%.0f", v);
    else
        snprintf(buf, cap, "%.2f", v);
}

/* "Berlin, DE", "DE", or the fallback. Fresh, cleaned. */
static char *place(const cJSON *o, const char *fallback)
{
    const char *city = jstr(o, "city"), *country = jstr(o, "country");
    char *c1 = clean(city, 40), *c2 = clean(country, 8);
    char *s;
    if (c1[0] && c2[0])
        s = tw_xasprintf("%s, %s", c1, c2);
    else if (c1[0] || c2[0])
        s = tw_xstrdup(c1[0] ? c1 : c2);
    else
        s = clean(fallback ? fallback : "unknown", 40);
    free(c1);
    free(c2);
    return s;
}

/* Prints a JSON value compactly and cleaned (for generic evidence). */
static void put_value(FILE *out, const cJSON *v)
{
    char *raw = cJSON_IsString(v) ? tw_xstrdup(v->valuestring) : cJSON_PrintUnformatted(v);
    char *c = clean(raw ? raw : "?", 200);
    fputs(c, out);
    free(c);
    if (cJSON_IsString(v))
        free(raw);
    else
        cJSON_free(raw);
}

static void put_list(FILE *out, const cJSON *arr)
{
    if (!cJSON_IsArray(arr) || !arr->child) {
        fputs("none", out);
        return;
    }
    for (const cJSON *e = arr->child; e; e = e->next) {
        if (e != arr->child)
            fputs(", ", out);
        put_value(out, e);
    }
}

/* ------------------------------------------------------------------------ */
/* The flagged list                                                         */

enum {
    COL_TIME,
    COL_SEV,
    COL_STATE,
    COL_RULE,
    COL_ID,
    COL_HINT,
    COL_PRINCIPAL,
    COL_PLACE,
    COL_INPUT,
    COL_N,
    NCOLS
};

static const char *const col_names[NCOLS] = {
    "LAST ANOMALY", "SEVERITY",  "STATE",    "RULE",  "TOKEN ID",
    "HINT",         "PRINCIPAL", "LOCATION", "INPUT", "ANOMALIES"};

int tw_client_print_flagged(FILE *out, const char *json)
{
    cJSON *root = cJSON_Parse(json);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "items");
    double total, offset;
    if (!cJSON_IsObject(root) || !cJSON_IsArray(items) || !jnum(root, "total", &total) ||
        !jnum(root, "offset", &offset)) {
        cJSON_Delete(root);
        return -1;
    }
    size_t n = (size_t)cJSON_GetArraySize(items);
    if (n == 0) {
        fprintf(out, "no flagged tokens match (%.0f in total, offset %.0f)\n", total, offset);
        cJSON_Delete(root);
        return 0;
    }
    char *(*cells)[NCOLS] = tw_xcalloc(n, sizeof *cells);
    size_t width[NCOLS];
    for (int c = 0; c < NCOLS; c++)
        width[c] = strlen(col_names[c]);
    size_t i = 0;
    for (const cJSON *it = items->child; it; it = it->next, i++) {
        char **row = cells[i];
        row[COL_TIME] = clean(jstr(it, "last_anomaly"), 25);
        row[COL_SEV] = clean(jstr(it, "severity"), 10);
        const char *state = jstr(it, "state");
        bool frozen = jtrue(it, "frozen");
        char *st = (frozen && state && strcmp(state, "frozen") != 0)
                       ? tw_xasprintf("%s (frozen)", state)
                       : tw_xstrdup(state ? state : "?");
        row[COL_STATE] = clean(st, 24);
        free(st);
        row[COL_RULE] = clean(jstr(it, "rule"), 32);
        row[COL_ID] = clean(jstr(it, "token_id"), 19);
        row[COL_HINT] = clean(jstr(it, "token_hint"), 16);
        const char *pr = jstr(it, "principal");
        row[COL_PRINCIPAL] = clean(pr ? pr : "-", 24);
        char *pl = place(it, jstr(it, "ip"));
        row[COL_PLACE] = clean(pl, 32);
        free(pl);
        row[COL_INPUT] = clean(jstr(it, "input"), 16);
        row[COL_N] = tw_xasprintf("%.0f", jnum0(it, "anomalies"));
        for (int c = 0; c < NCOLS; c++)
            if (cols_of(row[c]) > width[c])
                width[c] = cols_of(row[c]);
    }
    for (int c = 0; c < NCOLS; c++) {
        put_padded(out, col_names[c], c + 1 < NCOLS ? width[c] + 2 : 0);
    }
    fputc('\n', out);
    for (i = 0; i < n; i++) {
        for (int c = 0; c < NCOLS; c++) {
            if (c == COL_N)
                fprintf(out, "%*s", (int)width[c], cells[i][c]);
            else
                put_padded(out, cells[i][c], width[c] + 2);
            free(cells[i][c]);
        }
        fputc('\n', out);
    }
    free(cells);
    double shown_to = offset + (double)n;
    fprintf(out, "\n%zu of %.0f flagged tokens (%.0f-%.0f)", n, total, offset + 1, shown_to);
    if (shown_to < total)
        fprintf(out, "; next page: --offset %.0f", shown_to);
    fputc('\n', out);
    cJSON_Delete(root);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* One token                                                                */

static bool is_known(const char *key, const char *const *known)
{
    for (; *known; known++)
        if (strcmp(key, *known) == 0)
            return true;
    return false;
}

/* The evidence members not in known, as "key: value" lines. */
static void put_other_evidence(FILE *out, const cJSON *ev, const char *const *known)
{
    for (const cJSON *c = ev ? ev->child : NULL; c; c = c->next) {
        if (!c->string || is_known(c->string, known))
            continue;
        char *k = clean(c->string, 40);
        fprintf(out, "      %s: ", k);
        free(k);
        put_value(out, c);
        fputc('\n', out);
    }
}

static void put_hours(FILE *out, double h)
{
    if (h < 0.1)
        fprintf(out, "%.2f h", h);
    else if (h < 10)
        fprintf(out, "%.1f h", h);
    else
        fprintf(out, "%.0f h", h);
}

static void print_evidence(FILE *out, const char *kind, const cJSON *ev)
{
    static const char *const none[] = {NULL};
    if (!cJSON_IsObject(ev))
        return;
    char a[32], b[32], c[32];
    if (kind && strcmp(kind, "geo_velocity") == 0) {
        static const char *const known[] = {"from", "to",      "km", "hours",
                                            "kmh",  "max_kmh", NULL};
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(ev, "from");
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(ev, "to");
        char *p1 = place(from, jstr(from, "ip")), *p2 = place(to, jstr(to, "ip"));
        thousands(jnum0(ev, "km"), a, sizeof a);
        thousands(jnum0(ev, "kmh"), b, sizeof b);
        fprintf(out, "      %s -> %s  %s km in ", p1, p2, a);
        put_hours(out, jnum0(ev, "hours"));
        fprintf(out, " = %s km/h", b);
        double max;
        if (jnum(ev, "max_kmh", &max)) {
            thousands(max, c, sizeof c);
            fprintf(out, " (max %s km/h)", c);
        }
        fputc('\n', out);
        for (int k = 0; k < 2; k++) {
            const cJSON *leg = k ? to : from;
            if (!cJSON_IsObject(leg))
                continue;
            char *ip = clean(jstr(leg, "ip"), 45), *t = clean(jstr(leg, "time"), 25);
            fprintf(out, "        %s %s  %s  %s", k ? "to  " : "from", ip, k ? p2 : p1, t);
            double r;
            if (jnum(leg, "radius_km", &r))
                fprintf(out, "  (+/- %.0f km)", r);
            fputc('\n', out);
            free(ip);
            free(t);
        }
        free(p1);
        free(p2);
        put_other_evidence(out, ev, known);
    } else if (kind && strcmp(kind, "rate") == 0) {
        static const char *const known[] = {"window_s",    "count",     "baseline_mean",
                                            "baseline_sd", "threshold", NULL};
        number(jnum0(ev, "baseline_mean"), a, sizeof a);
        number(jnum0(ev, "baseline_sd"), b, sizeof b);
        number(jnum0(ev, "threshold"), c, sizeof c);
        fprintf(out,
                "      %.0f checks in %.0f s; baseline %s per window (sd %s); threshold %s\n",
                jnum0(ev, "count"), jnum0(ev, "window_s"), a, b, c);
        put_other_evidence(out, ev, known);
    } else if (kind && strcmp(kind, "failures") == 0) {
        static const char *const known[] = {"window_s", "rejected",        "checks", "ratio",
                                            "scope",    "distinct_tokens", NULL};
        char *scope = clean(jstr(ev, "scope"), 8);
        double rej = jnum0(ev, "rejected"), checks = jnum0(ev, "checks"), ratio;
        if (!jnum(ev, "ratio", &ratio))
            ratio = checks > 0 ? rej / checks : 0;
        fprintf(out, "      %.0f of %.0f checks rejected in %.0f s (%.0f%%), scope %s", rej,
                checks, jnum0(ev, "window_s"), ratio * 100, scope[0] ? scope : "?");
        double d;
        if (jnum(ev, "distinct_tokens", &d))
            fprintf(out, ", %.0f distinct tokens", d);
        fputc('\n', out);
        free(scope);
        put_other_evidence(out, ev, known);
    } else if (kind && strcmp(kind, "geo_new") == 0) {
        static const char *const known[] = {"country", "asn", "known", NULL};
        const cJSON *country = cJSON_GetObjectItemCaseSensitive(ev, "country");
        const cJSON *asn = cJSON_GetObjectItemCaseSensitive(ev, "asn");
        fprintf(out, "      new %s ", country ? "country" : "ASN");
        put_value(out, country ? country : asn);
        fputs(" (known: ", out);
        put_list(out, cJSON_GetObjectItemCaseSensitive(ev, "known"));
        fputs(")\n", out);
        put_other_evidence(out, ev, known);
    } else if (kind && strcmp(kind, "off_hours") == 0) {
        static const char *const known[] = {"hour_of_week", "local_time", "time_zone",
                                            "share",        "policy",     NULL};
        char *lt = clean(jstr(ev, "local_time"), 40), *tz = clean(jstr(ev, "time_zone"), 40);
        fprintf(
            out, "      local time %s (%s), hour of week %.0f; share of past use %.2f%%%s\n",
            lt[0] ? lt : "?", tz[0] ? tz : "UTC", jnum0(ev, "hour_of_week"),
            jnum0(ev, "share") * 100, jtrue(ev, "policy") ? "; outside business hours" : "");
        free(lt);
        free(tz);
        put_other_evidence(out, ev, known);
    } else {
        put_other_evidence(out, ev, none);
    }
}

static void print_heat_map(FILE *out, const cJSON *hours, const char *tz)
{
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    /* '.' none, then eight steps up to the busiest hour. */
    static const char levels[] = ":-=+*#%@";
    double v[168] = {0}, max = 0;
    int k = 0;
    for (const cJSON *e = cJSON_IsArray(hours) ? hours->child : NULL; e && k < 168;
         e = e->next, k++) {
        v[k] = cJSON_IsNumber(e) && e->valuedouble > 0 ? e->valuedouble : 0;
        if (v[k] > max)
            max = v[k];
    }
    if (k != 168) {
        fputs("\nHour-of-week profile: not available\n", out);
        return;
    }
    char *z = clean(tz && tz[0] ? tz : "UTC", 40);
    fprintf(out, "\nHour-of-week profile (local time, %s; checks per hour of the week):\n   ",
            z);
    free(z);
    for (int h = 0; h < 24; h++)
        fprintf(out, " %02d", h);
    fputc('\n', out);
    for (int d = 0; d < 7; d++) {
        fputs(days[d], out);
        for (int h = 0; h < 24; h++) {
            double x = v[d * 24 + h];
            char ch = '.';
            if (x > 0 && max > 0) {
                int lvl = (int)ceil(x / max * 8) - 1;
                ch = levels[lvl < 0 ? 0 : lvl > 7 ? 7 : lvl];
            }
            fprintf(out, " %c%c", ch, ch);
        }
        fputc('\n', out);
    }
    fprintf(out, "    scale: . none, then %s up to the busiest hour (%.0f checks)\n",
            ": - = + * # % @", max);
}

int tw_client_print_token(FILE *out, const char *json)
{
    cJSON *root = cJSON_Parse(json);
    const char *id = jstr(root, "token_id");
    if (!cJSON_IsObject(root) || !id) {
        cJSON_Delete(root);
        return -1;
    }
    char *cid = clean(id, 19), *hint = clean(jstr(root, "token_hint"), 16);
    const char *pr = jstr(root, "principal");
    char *cpr = clean(pr ? pr : "-", 64), *state = clean(jstr(root, "state"), 16);
    fprintf(out, "Token       %s  %s\n", cid, hint);
    fprintf(out, "Principal   %s\n", cpr);
    fprintf(out, "State       %s%s", state[0] ? state : "?",
            jtrue(root, "frozen") ? ", frozen now" : "");
    const char *fu = jstr(root, "freeze_until");
    if (fu) {
        char *c = clean(fu, 25);
        fprintf(out, " (until %s)", c);
        free(c);
    }
    fprintf(out, "; %.0f successful freezes\n", jnum0(root, "freezes"));
    free(cid);
    free(hint);
    free(cpr);
    free(state);
    char *first = clean(jstr(root, "first_seen"), 25),
         *last = clean(jstr(root, "last_seen"), 25);
    fprintf(out, "Baseline    %s, %s; %.0f events, first %s, last %s\n",
            jtrue(root, "tracked") ? "in memory" : "not in memory",
            jtrue(root, "learning") ? "still learning" : "learned", jnum0(root, "events"),
            first[0] ? first : "-", last[0] ? last : "-");
    free(first);
    free(last);
    const cJSON *rate = cJSON_GetObjectItemCaseSensitive(root, "rate");
    if (cJSON_IsObject(rate)) {
        char m[32], sd[32];
        number(jnum0(rate, "mean"), m, sizeof m);
        number(jnum0(rate, "sd"), sd, sizeof sd);
        fprintf(out, "Rate        %s per %.0f s window (sd %s) over %.0f windows; now %.0f\n",
                m, jnum0(rate, "window_s"), sd, jnum0(rate, "baseline_windows"),
                jnum0(rate, "current"));
    }
    fputs("Countries   ", out);
    put_list(out, cJSON_GetObjectItemCaseSensitive(root, "countries"));
    fputs("\nASNs        ", out);
    put_list(out, cJSON_GetObjectItemCaseSensitive(root, "asns"));
    fputc('\n', out);
    const cJSON *loc = cJSON_GetObjectItemCaseSensitive(root, "last_location");
    if (cJSON_IsObject(loc)) {
        char *p = place(loc, NULL), *ip = clean(jstr(loc, "ip"), 45);
        char *t = clean(jstr(loc, "time"), 25);
        fprintf(out, "Last seen   %s  %s  %s\n", ip, p, t);
        free(p);
        free(ip);
        free(t);
    }
    print_heat_map(out, cJSON_GetObjectItemCaseSensitive(root, "hours"),
                   jstr(root, "time_zone"));

    const cJSON *an = cJSON_GetObjectItemCaseSensitive(root, "anomalies");
    fprintf(out, "\nAnomalies (newest first):%s\n",
            cJSON_IsArray(an) && an->child ? "" : " none");
    for (const cJSON *e = cJSON_IsArray(an) ? an->child : NULL; e; e = e->next) {
        char *t = clean(jstr(e, "time"), 25), *sev = clean(jstr(e, "severity"), 10);
        char *rule = clean(jstr(e, "rule"), 40), *kind = clean(jstr(e, "kind"), 20);
        char *act = clean(jstr(e, "action"), 10), *in = clean(jstr(e, "input"), 32);
        char *ip = clean(jstr(e, "ip"), 45), *p = place(e, "");
        fprintf(out, "  %s  %-8s  %s (%s, %s)  input %s  from %s%s%s\n", t, sev, rule, kind,
                act, in, ip, p[0] ? "  " : "", p);
        print_evidence(out, jstr(e, "kind"), cJSON_GetObjectItemCaseSensitive(e, "evidence"));
        free(t);
        free(sev);
        free(rule);
        free(kind);
        free(act);
        free(in);
        free(ip);
        free(p);
    }
    const cJSON *hist = cJSON_GetObjectItemCaseSensitive(root, "history");
    fprintf(out, "\nHistory (newest first):%s\n",
            cJSON_IsArray(hist) && hist->child ? "" : " none");
    for (const cJSON *e = cJSON_IsArray(hist) ? hist->child : NULL; e; e = e->next) {
        char *t = clean(jstr(e, "time"), 25), *a = clean(jstr(e, "action"), 16);
        char *s = clean(jstr(e, "state"), 16), *who = clean(jstr(e, "analyst"), 64);
        char *note = clean(jstr(e, "note"), 200);
        fprintf(out, "  %s  %-10s -> %-10s by %s%s%s%s\n", t, a, s, who[0] ? who : "?",
                note[0] ? "  \"" : "", note, note[0] ? "\"" : "");
        free(t);
        free(a);
        free(s);
        free(who);
        free(note);
    }
    cJSON_Delete(root);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Talking to the daemon                                                    */

typedef struct buf {
    char *p;
    size_t len, cap;
    bool too_big;
} buf_t;

static size_t on_data(char *data, size_t size, size_t nmemb, void *userp)
{
    buf_t *b = userp;
    size_t n = size * nmemb;
    if (b->len + n > RESPONSE_MAX) {
        b->too_big = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = tw_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

typedef struct target {
    char *base;   /* "http://127.0.0.1:9477" */
    char *token;  /* the bearer token, or NULL; wiped at the end */
    char *cacert; /* CA file, or NULL for the system's */
} target_t;

static void target_free(target_t *t)
{
    free(t->base);
    if (t->token) {
        sodium_memzero(t->token, strlen(t->token));
        free(t->token);
    }
    free(t->cacert);
}

/* GETs base+path. Returns the HTTP status (and the body), or -1 with a
 * message printed when the daemon could not be reached. */
static long get(const target_t *t, const char *path, buf_t *body)
{
    CURL *c = curl_easy_init();
    if (!c)
        tw_die("curl_easy_init failed");
    char *url = tw_xasprintf("%s%s", t->base, path);
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
    char *auth = NULL;
    if (t->token) {
        auth = tw_xasprintf("Authorization: Bearer %s", t->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tokenwatch/" TW_VERSION);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, TOTAL_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    if (t->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, t->cacert);
    CURLcode rc = curl_easy_perform(c);
    long status = -1;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    } else if (body->too_big) {
        fprintf(stderr, "tokenwatch: %s: the answer exceeds %zu MiB\n", url,
                RESPONSE_MAX >> 20);
    } else {
        fprintf(stderr, "tokenwatch: cannot reach the daemon at %s: %s\n", url,
                errbuf[0] ? errbuf : curl_easy_strerror(rc));
        if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE)
            fprintf(stderr, "tokenwatch: check --cacert, or give --url with the host name "
                            "the certificate is for\n");
    }
    curl_slist_free_all(hdrs);
    if (auth) {
        sodium_memzero(auth, strlen(auth));
        free(auth);
    }
    curl_easy_cleanup(c);
    free(url);
    return status;
}

/* Reads a bearer token file (trailing newline stripped). */
static char *read_token(const char *path)
{
    char *s;
    size_t n;
    tw_err_t err;
    if (tw_read_file(path, &s, &n, &err) != 0) {
        fprintf(stderr, "tokenwatch: %s\n", err.msg);
        return NULL;
    }
    if (n > 0 && s[n - 1] == '\n')
        s[--n] = '\0';
    if (n > 0 && s[n - 1] == '\r')
        s[--n] = '\0';
    if (n == 0 || strcspn(s, " \t\r\n") != n) {
        fprintf(stderr, "tokenwatch: %s: expected one line holding the bearer token\n", path);
        sodium_memzero(s, n);
        free(s);
        return NULL;
    }
    return s;
}

/* Fills what --url / --token-file left open from the config file. */
static int from_config(const char *path, bool need_url, bool need_token, target_t *t)
{
    char *text;
    size_t len;
    tw_err_t err;
    if (tw_read_file(path, &text, &len, &err) != 0) {
        fprintf(stderr, "tokenwatch: %s (give --url and --token-file to do without a config)\n",
                err.msg);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        fprintf(stderr, "tokenwatch: %s: not a JSON object (run tokenwatch check -c %s)\n",
                path, path);
        cJSON_Delete(root);
        return -1;
    }
    const cJSON *http = cJSON_GetObjectItemCaseSensitive(root, "http");
    const cJSON *tls = cJSON_GetObjectItemCaseSensitive(http, "tls");
    const cJSON *auth = cJSON_GetObjectItemCaseSensitive(http, "auth");
    char *dir = tw_dirname(path);
    int rc = 0;
    if (need_url) {
        const char *listen = jstr(http, "listen");
        char *addr;
        uint16_t port;
        if (tw_parse_listen(listen ? listen : TW_DEFAULT_LISTEN, &addr, &port, &err) != 0) {
            fprintf(stderr, "tokenwatch: %s: http.listen: %s\n", path, err.msg);
            rc = -1;
        } else {
            /* A wildcard listener is reached on this host's loopback. */
            const char *host = addr;
            if (strcmp(addr, "0.0.0.0") == 0)
                host = "127.0.0.1";
            else if (strcmp(addr, "::") == 0)
                host = "::1";
            bool v6 = strchr(host, ':') != NULL;
            t->base = tw_xasprintf("%s://%s%s%s:%u", cJSON_IsObject(tls) ? "https" : "http",
                                   v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)port);
            const char *cert = jstr(tls, "cert_file");
            if (cert && !t->cacert)
                t->cacert = tw_path_join(dir, cert);
            free(addr);
        }
    }
    const char *tf = jstr(auth, "bearer_token_file");
    if (rc == 0 && need_token && tf) {
        char *p = tw_path_join(dir, tf);
        t->token = read_token(p);
        if (!t->token) {
            fprintf(stderr, "tokenwatch: (the config's http.auth.bearer_token_file; give "
                            "--token-file with a copy you can read)\n");
            rc = -1;
        }
        free(p);
    }
    free(dir);
    cJSON_Delete(root);
    return rc;
}

/* Prints the error of a non-200 answer. */
static void report_http_error(const target_t *t, const char *path, long status, const buf_t *b)
{
    cJSON *root = b->p ? cJSON_Parse(b->p) : NULL;
    const char *msg = jstr(root, "error");
    char *c = clean(msg ? msg : "(no error message)", 300);
    fprintf(stderr, "tokenwatch: %s%s: HTTP %ld: %s\n", t->base, path, status, c);
    if (status == 401 && !t->token)
        fprintf(stderr, "tokenwatch: the daemon wants credentials: give --token-file, or a "
                        "config whose http.auth.bearer_token_file you can read\n");
    free(c);
    cJSON_Delete(root);
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                 */

static const char client_usage[] =
    "usage: tokenwatch flagged [-c CONFIG] [--url URL] [--token-file FILE] [--cacert FILE]\n"
    "                          [--severity S] [--state S] [--rule ID] [--since TIME]\n"
    "                          [--limit N] [--offset N] [--json]\n"
    "       tokenwatch token ID [-c CONFIG] [--url URL] [--token-file FILE] [--cacert FILE]\n"
    "                          [--json]\n"
    "       tokenwatch hash-password   (reads a password on stdin, prints its argon2id hash)\n"
    "\n"
    "  -c, --config FILE   daemon config: the URL from http.listen (https with http.tls)\n"
    "                      and the token from http.auth.bearer_token_file\n"
    "                      (default " TW_DEFAULT_CONFIG ")\n"
    "  --url URL           the daemon, e.g. https://tokenwatch.example:9477\n"
    "  --token-file FILE   a file holding the bearer token\n"
    "  --cacert FILE       CA certificate(s) to check the daemon's certificate with\n"
    "  --severity S        low, medium, high or critical: that severity or higher\n"
    "  --state S           observed, flagged, freezing, frozen, unfreezing, unfrozen,\n"
    "                      acked, confirmed or dismissed\n"
    "  --rule ID           only tokens flagged by this rule\n"
    "  --since TIME        RFC 3339, e.g. 2026-11-29T07:00:00Z: last anomaly at or after\n"
    "  --limit N           1 to 500 (default 50);  --offset N  skip the first N\n"
    "  --json              print the API's JSON answer as it is\n"
    "exit codes: 0 ok, 1 daemon unreachable or HTTP error, 2 bad usage or config.\n";

enum {
    OPT_URL = 256,
    OPT_TOKEN_FILE,
    OPT_CACERT,
    OPT_SEVERITY,
    OPT_STATE,
    OPT_RULE,
    OPT_SINCE,
    OPT_LIMIT,
    OPT_OFFSET,
    OPT_JSON
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tokenwatch: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n\n", stderr);
    fputs(client_usage, stderr);
    return TW_EXIT_USAGE;
}

/* Appends "&name=value" (value URL-escaped) to *q. */
static void add_param(CURL *c, char **q, const char *name, const char *value)
{
    char *esc = curl_easy_escape(c, value, 0);
    if (!esc)
        tw_die("curl_easy_escape failed");
    char *n = tw_xasprintf("%s%s%s=%s", *q, (*q)[0] ? "&" : "?", name, esc);
    curl_free(esc);
    free(*q);
    *q = n;
}

static int hash_password(void)
{
    char a[1024], b[1024];
    bool tty = isatty(STDIN_FILENO);
    struct termios old, noecho;
    if (tty) {
        tcgetattr(STDIN_FILENO, &old);
        noecho = old;
        noecho.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
        fputs("Password: ", stderr);
    }
    bool ok = fgets(a, sizeof a, stdin) != NULL;
    if (ok && tty) {
        fputs("\nAgain: ", stderr);
        ok = fgets(b, sizeof b, stdin) != NULL;
    }
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    int rc = TW_EXIT_OK;
    a[strcspn(a, "\r\n")] = '\0';
    if (ok && tty) {
        b[strcspn(b, "\r\n")] = '\0';
        if (strcmp(a, b) != 0) {
            fputs("tokenwatch: the passwords differ\n", stderr);
            rc = TW_EXIT_USAGE;
        }
    }
    if (rc == TW_EXIT_OK && (!ok || a[0] == '\0')) {
        fputs("tokenwatch: expected a password (one line) on standard input\n", stderr);
        rc = TW_EXIT_USAGE;
    }
    if (rc == TW_EXIT_OK) {
        char hash[crypto_pwhash_STRBYTES];
        if (tw_api_hash_password(a, strlen(a), hash, sizeof hash) != 0) {
            fputs("tokenwatch: hashing failed (out of memory?)\n", stderr);
            rc = TW_EXIT_FAILURE;
        } else {
            printf("%s\n", hash);
        }
    }
    sodium_memzero(a, sizeof a);
    sodium_memzero(b, sizeof b);
    return rc;
}

int tw_client_main(int argc, char **argv)
{
    const char *cmd = argv[0];
    bool token_cmd = strcmp(cmd, "token") == 0;
    if (strcmp(cmd, "hash-password") == 0) {
        if (argc > 1)
            return usage_error("hash-password takes no arguments (the password is read "
                               "from standard input)");
        return hash_password();
    }
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"url", required_argument, NULL, OPT_URL},
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
        {"cacert", required_argument, NULL, OPT_CACERT},
        {"severity", required_argument, NULL, OPT_SEVERITY},
        {"state", required_argument, NULL, OPT_STATE},
        {"rule", required_argument, NULL, OPT_RULE},
        {"since", required_argument, NULL, OPT_SINCE},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"offset", required_argument, NULL, OPT_OFFSET},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *url = NULL, *token_file = NULL, *cacert = NULL;
    const char *severity = NULL, *state = NULL, *rule = NULL, *since = NULL;
    const char *limit = NULL, *offset = NULL;
    bool json = false;
    int c;
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case OPT_URL:
            url = optarg;
            break;
        case OPT_TOKEN_FILE:
            token_file = optarg;
            break;
        case OPT_CACERT:
            cacert = optarg;
            break;
        case OPT_SEVERITY:
            severity = optarg;
            break;
        case OPT_STATE:
            state = optarg;
            break;
        case OPT_RULE:
            rule = optarg;
            break;
        case OPT_SINCE:
            since = optarg;
            break;
        case OPT_LIMIT:
            limit = optarg;
            break;
        case OPT_OFFSET:
            offset = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case 'h':
            fputs(client_usage, stdout);
            return TW_EXIT_OK;
        default:
            fprintf(stderr, "\n%s", client_usage);
            return TW_EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    const char *id = NULL;
    uint64_t idv;
    if (token_cmd) {
        if (nargs != 1)
            return usage_error("token: expected one token id (tw_ and 16 hex digits)");
        id = argv[optind];
        if (tw_api_parse_token_id(id, strlen(id), &idv) != 0)
            return usage_error("token: \"%s\" is not a token id (tw_ and 16 lowercase hex "
                               "digits, as `tokenwatch flagged` shows them)",
                               id);
        if (severity || state || rule || since || limit || offset)
            return usage_error("token: --severity, --state, --rule, --since, --limit and "
                               "--offset belong to flagged");
    } else if (nargs != 0) {
        return usage_error("flagged: unexpected argument \"%s\"", argv[optind]);
    }
    if (severity && tw_api_severity_parse(severity) < 0)
        return usage_error("--severity: expected low, medium, high or critical, got \"%s\"",
                           severity);
    if (state && !tw_api_state_valid(state))
        return usage_error("--state: expected observed, flagged, freezing, frozen, "
                           "unfreezing, unfrozen, acked, confirmed or dismissed, got \"%s\"",
                           state);
    int64_t ns;
    if (since && tw_api_parse_time(since, &ns) != 0)
        return usage_error("--since: expected an RFC 3339 time such as "
                           "2026-11-29T07:00:00Z, got \"%s\"",
                           since);
    char *end;
    if (limit && (strtol(limit, &end, 10) < 1 || strtol(limit, NULL, 10) > TW_API_LIMIT_MAX ||
                  *end || !limit[0] || limit[0] == '+' || limit[0] == ' '))
        return usage_error("--limit: expected an integer from 1 to 500, got \"%s\"", limit);
    if (offset &&
        (strspn(offset, "0123456789") != strlen(offset) || !offset[0] || strlen(offset) > 9))
        return usage_error("--offset: expected an integer from 0 to 999999999, got \"%s\"",
                           offset);
    if (url && strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return usage_error("--url: expected http://HOST:PORT or https://HOST:PORT, got \"%s\"",
                           url);

    target_t t = {0};
    if (cacert)
        t.cacert = tw_xstrdup(cacert);
    if (url) {
        t.base = tw_xstrdup(url);
        size_t n = strlen(t.base);
        while (n > 0 && t.base[n - 1] == '/')
            t.base[--n] = '\0';
    }
    if (token_file && !(t.token = read_token(token_file))) {
        target_free(&t);
        return TW_EXIT_USAGE;
    }
    if ((config || !url || !token_file) &&
        from_config(config ? config : TW_DEFAULT_CONFIG, !url, !token_file, &t) != 0) {
        target_free(&t);
        return TW_EXIT_USAGE;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        tw_die("curl_global_init failed");
    CURL *esc = curl_easy_init();
    if (!esc)
        tw_die("curl_easy_init failed");
    char *path;
    if (token_cmd) {
        path = tw_xasprintf("/api/v1/tokens/%s", id);
    } else {
        char *q = tw_xstrdup("");
        if (severity)
            add_param(esc, &q, "severity", severity);
        if (state)
            add_param(esc, &q, "state", state);
        if (rule)
            add_param(esc, &q, "rule", rule);
        if (since)
            add_param(esc, &q, "since", since);
        if (limit)
            add_param(esc, &q, "limit", limit);
        if (offset)
            add_param(esc, &q, "offset", offset);
        path = tw_xasprintf("/api/v1/flagged%s", q);
        free(q);
    }
    curl_easy_cleanup(esc);

    buf_t body = {0};
    long status = get(&t, path, &body);
    int rc = TW_EXIT_FAILURE;
    if (status == 200 && body.p) {
        if (json) {
            fwrite(body.p, 1, body.len, stdout);
            if (body.len == 0 || body.p[body.len - 1] != '\n')
                fputc('\n', stdout);
            rc = TW_EXIT_OK;
        } else if ((token_cmd ? tw_client_print_token(stdout, body.p)
                              : tw_client_print_flagged(stdout, body.p)) == 0) {
            rc = TW_EXIT_OK;
        } else {
            fprintf(stderr,
                    "tokenwatch: %s%s: the answer is not the JSON this version "
                    "expects (try --json)\n",
                    t.base, path);
        }
    } else if (status >= 0) {
        report_http_error(&t, path, status, &body);
    }
    if (fflush(stdout) != 0 && rc == TW_EXIT_OK)
        rc = TW_EXIT_FAILURE;
    free(body.p);
    free(path);
    target_free(&t);
    curl_global_cleanup();
    return rc;
}
