/*
 * tokenid.c — see tokenid.h. libsodium provides the keyed hash, the random
 * key and the wiping of the key from memory.
 */
#include "tokenid.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct tw_tokenid {
    unsigned char key[crypto_shorthash_KEYBYTES];
};

static int load_key(tw_tokenid_t *k, const char *path, tw_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return tw_err_set(err, "%s: cannot open key file: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tw_err_set(err, "%s: expected a regular file holding the token-id key", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return tw_err_set(err, "%s: expected mode 0600 (it is %03o); the key must stay secret",
                          path, (unsigned)(st.st_mode & 0777));
    }
    unsigned char extra;
    ssize_t n = read(fd, k->key, sizeof k->key);
    ssize_t more = read(fd, &extra, 1);
    close(fd);
    if (n != (ssize_t)sizeof k->key || more != 0)
        return tw_err_set(err, "%s: expected exactly %zu bytes of key", path, sizeof k->key);
    return 0;
}

static int create_key(tw_tokenid_t *k, const char *path, tw_err_t *err)
{
    crypto_shorthash_keygen(k->key);
    /* O_EXCL: two daemons starting at once must not end with two keys. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return load_key(k, path, err);
        return tw_err_set(err, "%s: cannot create key file: %s", path, strerror(errno));
    }
    ssize_t w = write(fd, k->key, sizeof k->key);
    int rc = (w == (ssize_t)sizeof k->key && fsync(fd) == 0) ? 0 : -1;
    if (close(fd) != 0)
        rc = -1;
    if (rc != 0) {
        unlink(path);
        return tw_err_set(err, "%s: cannot write key file: %s", path, strerror(errno));
    }
    return 0;
}

int tw_tokenid_open(tw_tokenid_t **out, const char *state_dir, tw_err_t *err)
{
    if (sodium_init() < 0)
        return tw_err_set(err, "libsodium failed to initialise");
    tw_tokenid_t *k = tw_xcalloc(1, sizeof *k);
    char *path = tw_path_join(state_dir, TW_TOKENID_KEY_FILE);
    int rc = access(path, F_OK) == 0 ? load_key(k, path, err) : create_key(k, path, err);
    free(path);
    if (rc != 0) {
        tw_tokenid_free(k);
        return -1;
    }
    *out = k;
    return 0;
}

void tw_tokenid_free(tw_tokenid_t *k)
{
    if (!k)
        return;
    sodium_memzero(k->key, sizeof k->key);
    free(k);
}

uint64_t tw_tokenid_of(const tw_tokenid_t *k, tw_slice_t token)
{
    unsigned char h[crypto_shorthash_BYTES];
    _Static_assert(sizeof h == sizeof(uint64_t), "SipHash-2-4 gives 8 bytes");
    crypto_shorthash(h, (const unsigned char *)token.p, token.n, k->key);
    uint64_t id;
    memcpy(&id, h, sizeof id);
    return be64toh(id);   /* the bytes read big-endian, as ids always were */
}

