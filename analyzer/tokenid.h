/*
 * tokenid.h — token identity: a keyed hash that names a token without
 * revealing it (DESIGN.md "Token identity and secrecy").
 *
 * token id = SipHash-2-4 (libsodium crypto_shorthash) of the raw token under
 * a 128-bit key generated on first start and kept in state_dir/fingerprint.key
 * (mode 0600). It is shown as "tw_" + 16 hex digits. Without the key an
 * attacker can neither recover a token from its id nor predict ids, so ids
 * are also safe keys for hash tables fed by attacker-chosen tokens.
 *
 * Threading: the key is immutable after open; tw_tokenid_of() is thread-safe.
 */
#ifndef TW_TOKENID_H
#define TW_TOKENID_H

#include "common.h"

#define TW_TOKENID_KEY_FILE "fingerprint.key"
#define TW_TOKENID_STR_LEN 19   /* "tw_" + 16 hex digits */

typedef struct tw_tokenid tw_tokenid_t;

/* Loads state_dir/fingerprint.key, creating it (0600, random) when absent.
 * A key file of the wrong size or with group/other permissions is refused
 * (err names the file). state_dir must exist. */
int tw_tokenid_open(tw_tokenid_t **out, const char *state_dir, tw_err_t *err);
void tw_tokenid_free(tw_tokenid_t *k);   /* NULL-safe; wipes the key */

/* The 64-bit id of a raw token. */
uint64_t tw_tokenid_of(const tw_tokenid_t *k, tw_slice_t token);

/* Writes "tw_%016llx" (TW_TOKENID_STR_LEN chars + NUL) into buf. */
char *tw_tokenid_format(uint64_t id, char buf[TW_TOKENID_STR_LEN + 1]);
/* Parses "tw_" + exactly 16 lowercase hex digits; -1 otherwise. */
int tw_tokenid_parse(const char *s, size_t n, uint64_t *id);

#endif
