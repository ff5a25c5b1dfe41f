/*
 * client.h — the analyst commands that talk to a running daemon's API
 * (docs/api.md): `tokenwatch flagged`, `tokenwatch token ID`, and
 * `tokenwatch hash-password` for the basic-auth file.
 *
 * HTTP goes through libcurl (TLS, certificate checks, proxies and chunked
 * answers handled by a well-kept library). The bearer token is read from a
 * file and sent in a header: never in argv, the environment or output.
 * Everything printed for a terminal passes through a filter that replaces
 * control characters and malformed UTF-8, since principals, cities and
 * notes come from logs and analysts and could carry terminal escapes.
 */
#ifndef TW_CLIENT_H
#define TW_CLIENT_H

#include <stdio.h>

/* Runs one command: argv[0] is "flagged", "token" or "hash-password",
 * followed by its options (parsed here, not by main). Returns the exit
 * code: 0 ok, 1 daemon unreachable or HTTP error (message on stderr), 2
 * bad usage or an unreadable config. Main thread. */
int tw_client_main(int argc, char **argv);

/* The terminal views of an API answer, written to out. Return 0, or -1
 * when json is not the shape docs/api.md describes (then out may hold a
 * partial view). Exposed for tests. */
int tw_client_print_flagged(FILE *out, const char *json);
int tw_client_print_token(FILE *out, const char *json);

#endif
