/*
 * cli.h — the tokenwatch commands, called by main() after option parsing.
 * Each returns the process exit code: 0 ok, 1 runtime failure, 2 bad usage
 * or invalid configuration (DESIGN.md "Commands").
 */
#ifndef TW_CLI_H
#define TW_CLI_H

#include <stdbool.h>

enum { TW_EXIT_OK = 0, TW_EXIT_FAILURE = 1, TW_EXIT_USAGE = 2 };

typedef struct tw_cli {
    const char *config;      /* -c, default TW_DEFAULT_CONFIG */
    const char *format;      /* --format (replay, check --sample) */
    const char *input;       /* --input (check --sample) */
    const char *sample;      /* --sample LOG (check) */
    int log_level;           /* --log-level, or -1 for the config's */
    int log_format;          /* tw_log_format_t */
    bool no_detect;          /* --no-detect (replay): parse and count only */
    bool discard_state;      /* --discard-state (run): start afresh from bad state files */
    char **args;             /* positional arguments after the command */
    int nargs;
} tw_cli_t;

/* Loads cli->config and sets up logging from it (the CLI's --log-level
 * wins). On error prints "tokenwatch: FILE: PATH: expected ..." and returns
 * NULL; the caller exits with TW_EXIT_USAGE. */
struct tw_config *tw_cli_load_config(const tw_cli_t *cli);

int tw_cmd_run(const tw_cli_t *cli);
int tw_cmd_replay(const tw_cli_t *cli);
int tw_cmd_check(const tw_cli_t *cli);

#endif
