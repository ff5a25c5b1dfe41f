/*
 * test_tokenid.c — token ids are stable under one key, differ under
 * another, round-trip through their text form, and the key file is created
 * 0600, reused, and refused when unsafe or malformed; SipHash-2-4's
 * published test vector gives the same id as in every earlier version.
 */
#include "tokenid.h"
#include "tw_test.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/tw_test_tokenid_XXXXXX";
static char dir2[] = "/tmp/tw_test_tokenid2_XXXXXX";
static char dir3[] = "/tmp/tw_test_tokenid3_XXXXXX";

static tw_slice_t S(const char *s) { return (tw_slice_t){s, strlen(s)}; }

static void cleanup(const char *d)
{
    char *p = tw_path_join(d, TW_TOKENID_KEY_FILE);
    unlink(p);
    free(p);
    rmdir(d);
}

int main(void)
{
    if (!mkdtemp(dir) || !mkdtemp(dir2) || !mkdtemp(dir3))
        tw_die("mkdtemp");
    tw_tokenid_t *a = NULL, *a2 = NULL, *b = NULL;
    tw_err_t err;
    TW_CHECK_INT(tw_tokenid_open(&a, dir, &err), 0);
    char *key = tw_path_join(dir, TW_TOKENID_KEY_FILE);
    struct stat st;
    TW_CHECK_INT(stat(key, &st), 0);
    TW_CHECK_INT(st.st_mode & 0777, 0600);
    TW_CHECK_INT(st.st_size, 16);

    /* Same key file → same ids; another key → other ids. */
    TW_CHECK_INT(tw_tokenid_open(&a2, dir, &err), 0);
    TW_CHECK_INT(tw_tokenid_open(&b, dir2, &err), 0);
    uint64_t x = tw_tokenid_of(a, S("at-3f9a1c2b7d4e9f2c"));
    TW_CHECK(x == tw_tokenid_of(a2, S("at-3f9a1c2b7d4e9f2c")));
    TW_CHECK(x != tw_tokenid_of(b, S("at-3f9a1c2b7d4e9f2c")));
    TW_CHECK(x != tw_tokenid_of(a, S("at-3f9a1c2b7d4e9f2d")));
    TW_CHECK(tw_tokenid_of(a, S("")) != tw_tokenid_of(a, S("a")));

    /* Ids are SipHash-2-4's 8 bytes read big-endian, and persisted: the
     * published test vector (key 00..0f, message 00..0e, output bytes
     * e5 45 be 49 61 ca 29 a1) must give the same id in every version. */
    {
        char *kp = tw_path_join(dir3, TW_TOKENID_KEY_FILE);
        int kfd = open(kp, O_WRONLY | O_CREAT | O_EXCL, 0600);
        unsigned char kb[16], msg[15];
        for (int i = 0; i < 16; i++)
            kb[i] = (unsigned char)i;
        for (int i = 0; i < 15; i++)
            msg[i] = (unsigned char)i;
        TW_CHECK(kfd >= 0 && write(kfd, kb, sizeof kb) == (ssize_t)sizeof kb);
        close(kfd);
        free(kp);
        tw_tokenid_t *v = NULL;
        TW_CHECK_INT(tw_tokenid_open(&v, dir3, &err), 0);
        TW_CHECK(tw_tokenid_of(v, (tw_slice_t){(const char *)msg, sizeof msg}) ==
                 0xe545be4961ca29a1ULL);
        tw_tokenid_free(v);
    }

    char buf[TW_TOKENID_STR_LEN + 1];
    tw_tokenid_format(0x3f9a1c2b7d4e5f60ULL, buf);
    TW_CHECK_STR(buf, "tw_3f9a1c2b7d4e5f60");
    uint64_t back;
    TW_CHECK_INT(tw_tokenid_parse(buf, strlen(buf), &back), 0);
    TW_CHECK(back == 0x3f9a1c2b7d4e5f60ULL);
    tw_tokenid_format(x, buf);
    TW_CHECK_INT(tw_tokenid_parse(buf, strlen(buf), &back), 0);
    TW_CHECK(back == x);
    static const char *const bad[] = {"tw_3f9a1c2b7d4e5f6", "tw_3f9a1c2b7d4e5f600",
                                      "tw_3F9A1C2B7D4E5F60", "tx_3f9a1c2b7d4e5f60",
                                      "tw_3f9a1c2b7d4e5f6g", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        TW_CHECK_INT(tw_tokenid_parse(bad[i], strlen(bad[i]), &back), -1);

    /* Unsafe permissions and a wrong size are refused, naming the file. */
    tw_tokenid_t *c = NULL;
    chmod(key, 0644);
    TW_CHECK_INT(tw_tokenid_open(&c, dir, &err), -1);
    TW_CHECK(strstr(err.msg, key) && strstr(err.msg, "0600"));
    chmod(key, 0600);
    int fd = open(key, O_WRONLY | O_APPEND);
    TW_CHECK(write(fd, "x", 1) == 1);
    close(fd);
    TW_CHECK_INT(tw_tokenid_open(&c, dir, &err), -1);
    TW_CHECK(strstr(err.msg, "exactly 16 bytes") != NULL);
    TW_CHECK(c == NULL);

    tw_tokenid_free(a);
    tw_tokenid_free(a2);
    tw_tokenid_free(b);
    free(key);
    cleanup(dir);
    cleanup(dir2);
    cleanup(dir3);
    return tw_test_done();
}
