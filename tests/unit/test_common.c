/*
 * test_common.c — token hints never reveal more than 7 characters, atomic
 * writes replace files whole, path helpers, log level names, hot-path tables
 * are zeroed and advised for huge pages.
 */
#include "common.h"
#include "log.h"
#include "tw_test.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_hint(void)
{
    static const struct {
        const char *token;
        const char *hint;
    } cases[] = {
        {"at-3f9a1c2b7d4e9f2c", "at-\xe2\x80\xa6" "9f2c"},
        {"abcdefghijkl", "abc\xe2\x80\xa6" "ijkl"},
        {"abcdefghijk", "(11 chars)"},
        {"", "(0 chars)"},
        /* Control bytes and DEL are not printed. */
        {"a\x01" "cdefghij\n\x7f" "yz", "a?c\xe2\x80\xa6" "??yz"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        tw_slice_t s = {cases[i].token, strlen(cases[i].token)};
        TW_CHECK_STR(tw_token_hint(s, buf, sizeof buf), cases[i].hint);
    }
}

static void test_atomic_write(void)
{
    char dir[] = "/tmp/tw_test_common_XXXXXX";
    if (!mkdtemp(dir))
        tw_die("mkdtemp");
    char *path = tw_path_join(dir, "f.json");
    TW_CHECK_INT(tw_write_file_atomic(path, "first", 5, 0600, NULL), 0);
    TW_CHECK_INT(tw_write_file_atomic(path, "second!", 7, 0600, NULL), 0);
    char *text;
    size_t len;
    TW_CHECK_INT(tw_read_file(path, &text, &len, NULL), 0);
    TW_CHECK_STR(text, "second!");
    TW_CHECK_INT(len, 7);
    free(text);
    struct stat st;
    TW_CHECK_INT(stat(path, &st), 0);
    TW_CHECK_INT(st.st_mode & 0777, 0600);
    char *tmp = tw_xasprintf("%s.tmp", path);
    TW_CHECK(access(tmp, F_OK) != 0);
    tw_err_t err;
    char *bad = tw_path_join(dir, "missing/f.json");
    TW_CHECK_INT(tw_write_file_atomic(bad, "x", 1, 0600, &err), -1);
    TW_CHECK(strstr(err.msg, "missing/f.json.tmp") != NULL);
    TW_CHECK_INT(tw_read_file(bad, &text, &len, &err), -1);
    TW_CHECK(strstr(err.msg, "cannot open") != NULL);
    unlink(path);
    rmdir(dir);
    free(bad);
    free(tmp);
    free(path);
}

static void test_paths(void)
{
    char *s;
    TW_CHECK_STR(s = tw_dirname("/etc/tokenwatch/x.json"), "/etc/tokenwatch");
    free(s);
    TW_CHECK_STR(s = tw_dirname("x.json"), ".");
    free(s);
    TW_CHECK_STR(s = tw_dirname("/x.json"), "/");
    free(s);
    TW_CHECK_STR(s = tw_path_join("/etc", "a/b"), "/etc/a/b");
    free(s);
    TW_CHECK_STR(s = tw_path_join("/etc", "/abs"), "/abs");
    free(s);
}

static void test_misc(void)
{
    TW_CHECK_INT(tw_log_level_parse("debug"), TW_LOG_DEBUG);
    TW_CHECK_INT(tw_log_level_parse("warning"), TW_LOG_WARN);
    TW_CHECK_INT(tw_log_level_parse("loud"), -1);
    /* FNV-1a reference values. */
    TW_CHECK(tw_hash64(TW_HASH_INIT, "", 0) == 0xcbf29ce484222325ULL);
    TW_CHECK(tw_hash64(TW_HASH_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    TW_CHECK(tw_hash64(tw_hash64(TW_HASH_INIT, "fo", 2), "obar", 4) ==
             tw_hash64(TW_HASH_INIT, "foobar", 6));
}

/* True when the mapping holding p carries VmFlags "hg" (MADV_HUGEPAGE). */
static bool advised_huge(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return false;
    char line[512];
    bool inside = false, hg = false;
    uintptr_t a = (uintptr_t)p;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = a >= lo && a < hi;
        else if (inside && strncmp(line, "VmFlags:", 8) == 0)
            hg = strstr(line, " hg") != NULL;
    }
    fclose(f);
    return hg;
}

static void test_table_alloc(void)
{
    /* Small: plain zeroed memory. */
    uint64_t *s = tw_xcalloc_table(1000, sizeof *s);
    bool zero = true;
    for (size_t i = 0; i < 1000; i++)
        zero &= s[i] == 0;
    TW_CHECK(zero);
    s[999] = 1;
    free(s);

    /* Big: zeroed to the last byte, 2 MiB-aligned, advised for huge pages
     * when this kernel has transparent huge pages at all. */
    size_t n = (3u << 20) / sizeof(uint64_t) + 1;
    uint64_t *b = tw_xcalloc_table(n, sizeof *b);
    TW_CHECK(((uintptr_t)b & ((2u << 20) - 1)) == 0);
    zero = true;
    for (size_t i = 0; i < n; i++)
        zero &= b[i] == 0;
    TW_CHECK(zero);
    b[n - 1] = 1;
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0)
        TW_CHECK(advised_huge(b));
    free(b);
}

static void test_utf8(void)
{
    static const struct {
        const char *s;
        size_t n, want;
    } cases[] = {
        {"a", 1, 1},
        {"\xc3\xa9", 2, 2},             /* é */
        {"\xe2\x80\xa6", 3, 3},         /* … */
        {"\xf0\x9f\x94\x91", 4, 4},     /* U+1F511 */
        {"\xc3", 1, 0},                 /* truncated */
        {"\x80", 1, 0},                 /* stray continuation */
        {"\xc0\xaf", 2, 0},             /* overlong '/' */
        {"\xe0\x80\xaf", 3, 0},         /* overlong */
        {"\xed\xa0\x80", 3, 0},         /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, 0},     /* beyond U+10FFFF */
        {"\xff", 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        TW_CHECK_INT(tw_utf8_seq_len((const unsigned char *)cases[i].s, cases[i].n),
                     cases[i].want);
}

int main(void)
{
    test_utf8();
    test_hint();
    test_atomic_write();
    test_paths();
    test_misc();
    test_table_alloc();
    return tw_test_done();
}
