/*
 * mem_tokens.c — memory per tracked token at 1,000,000 tokens (issue 3:
 * at most 512 bytes per token, table overhead included). Not a timed test.
 *
 *   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I analyzer -I exporter bench/mem_tokens.c \
 *      build/libtw_analyzer.a build/libtw_common.a -lm -o /tmp/mem_tokens
 *   /tmp/mem_tokens [N]
 *
 * Inserts N (default 1,000,000) distinct token ids into a table bounded at
 * N, fills every baseline as a busy token would (location, countries, hour
 * profile), then reports: bytes the table accounts for / N, and the growth
 * of the process's resident set (VmRSS) / N, which also counts allocator
 * overhead and page rounding. The exit status is 1 if either exceeds 512.
 */
#include "tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    long before = rss_kb();
    tw_tokens_t *t = tw_tokens_new(n, NULL, NULL);
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < n; i++) {
        /* splitmix64: ids as uniform as keyed SipHash output. */
        uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        bool created;
        tw_token_t *e = tw_tokens_get(t, z, false, &created);
        tw_baseline_t *b = &e->b;
        b->events = 100;
        b->loc.lat = 52.5f;
        b->countries[0][0] = 'D';
        b->countries[0][1] = 'E';
        for (unsigned h = 0; h < TW_BASELINE_HOURS; h++)
            b->hours[h] = (uint8_t)h;
    }
    long after = rss_kb();
    double acct = (double)tw_tokens_memory(t) / (double)n;
    double rss = (double)(after - before) * 1024.0 / (double)n;
    printf("tokens=%zu sizeof(tw_token_t)=%zu table_bytes_per_token=%.1f "
           "rss_bytes_per_token=%.1f table_mib=%.1f rss_growth_mib=%.1f\n",
           tw_tokens_count(t), sizeof(tw_token_t), acct, rss,
           (double)tw_tokens_memory(t) / 1048576.0, (double)(after - before) / 1024.0);
    tw_tokens_free(t);
    return acct <= 512 && rss <= 512 ? 0 : 1;
}
