/*
 * main.c — command-line entry point: picks the command, parses options and
 * hands a tw_cli_t to it. Owns nothing else (STYLE.md: thin main).
 */
#include "cli.h"
#include "client.h"
#include "config.h"
#include "log.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: tokenwatch [run] [-c CONFIG] [--log-level LEVEL] [--log-format plain|json]\n"
    "                        [--discard-state]\n"
    "       tokenwatch replay [-c CONFIG] [--format NAME] [--no-detect] LOG...\n"
    "       tokenwatch check [-c CONFIG] [--sample LOG [--input NAME | --format NAME]]\n"
    "       tokenwatch flagged [-c CONFIG] [--url URL] [--token-file F] [--severity S]\n"
    "                          [--state S] [--rule ID] [--since T] [--limit N] [--json]\n"
    "       tokenwatch token ID [-c CONFIG] [--url URL] [--token-file F] [--json]\n"
    "       tokenwatch hash-password\n"
    "       tokenwatch --version | --help\n"
    "\n"
    "commands:\n"
    "  run      follow the configured inputs, serve /metrics, keep state (default)\n"
    "  replay   read whole LOG files from the start and print a summary on stderr\n"
    "  check    validate the config, rules and formats; with --sample, show how\n"
    "           a log's lines parse (matched, unmatched, first failures)\n"    "  flagged  list a running daemon's flagged tokens (its API; see flagged --help)\n"
    "  token    show one token's baseline, evidence and history from a running daemon\n"
    "  hash-password  read a password on stdin, print an argon2id hash for the\n"
    "           basic auth file (http.auth.basic_auth_file)\n"
    "\n"
    "options:\n"
    "  -c, --config FILE     config file (default " TW_DEFAULT_CONFIG ")\n"
    "  --format NAME         log format for replay or --sample\n"
    "  --input NAME          take the --sample format from this input\n"
    "  --no-detect           replay: parse and count only, no detection\n"
    "  --discard-state       run: move unreadable, corrupt or newer state files aside\n"
    "                        (FILE.discarded-TIME) and start afresh instead of refusing\n"
    "  --sample LOG          log file to test the format against (check)\n"
    "  --log-level LEVEL     debug, info, warn or error (default: the config's)\n"
    "  --log-format FORMAT   plain (default) or json\n"
    "  -h, --help            this text\n"
    "  -V, --version         print the version\n"
    "\n"
    "signals (run): SIGTERM/SIGINT save state and exit 0; SIGHUP reloads the config.\n"
    "exit codes: 0 ok, 1 runtime failure, 2 bad usage or invalid config.\n";

struct tw_config *tw_cli_load_config(const tw_cli_t *cli)
{
    tw_config_t *c;
    tw_err_t err;
    if (tw_config_load(&c, cli->config, &err) != 0) {
        /* With --log-format json a log shipper parses stderr: keep the
         * refusal a JSON record too. */
        if (cli->log_format == TW_LOG_JSON) {
            tw_log_setup(TW_LOG_INFO, TW_LOG_JSON);
            tw_error("%s", err.msg);
        } else {
            fprintf(stderr, "tokenwatch: %s\n", err.msg);
        }
        return NULL;
    }
    tw_log_setup((tw_log_level_t)(cli->log_level >= 0 ? cli->log_level : c->log_level),
                 (tw_log_format_t)cli->log_format);
    return c;
}

enum { OPT_FORMAT = 256, OPT_INPUT, OPT_SAMPLE, OPT_LOG_LEVEL, OPT_LOG_FORMAT, OPT_NO_DETECT,
       OPT_DISCARD_STATE };

int main(int argc, char **argv)
{
    tw_cli_t cli = {.config = TW_DEFAULT_CONFIG, .log_level = -1, .log_format = TW_LOG_PLAIN};
    int (*cmd)(const tw_cli_t *) = tw_cmd_run;
    const char *cmd_name = "run";
    if (argc > 1 && (strcmp(argv[1], "flagged") == 0 || strcmp(argv[1], "token") == 0 ||
                     strcmp(argv[1], "hash-password") == 0))
        return tw_client_main(argc - 1, argv + 1); /* its own options (client.c) */
    if (argc > 1 && argv[1][0] != '-') {
        cmd_name = argv[1];
        if (strcmp(argv[1], "run") == 0)
            cmd = tw_cmd_run;
        else if (strcmp(argv[1], "replay") == 0)
            cmd = tw_cmd_replay;
        else if (strcmp(argv[1], "check") == 0)
            cmd = tw_cmd_check;
        else {
            fprintf(stderr, "tokenwatch: unknown command \"%s\"\n\n%s", argv[1], usage);
            return TW_EXIT_USAGE;
        }
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"input", required_argument, NULL, OPT_INPUT},
        {"sample", required_argument, NULL, OPT_SAMPLE},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"no-detect", no_argument, NULL, OPT_NO_DETECT},
        {"discard-state", no_argument, NULL, OPT_DISCARD_STATE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cli.config = optarg;
            break;
        case OPT_FORMAT:
            cli.format = optarg;
            break;
        case OPT_INPUT:
            cli.input = optarg;
            break;
        case OPT_SAMPLE:
            cli.sample = optarg;
            break;
        case OPT_LOG_LEVEL:
            cli.log_level = tw_log_level_parse(optarg);
            if (cli.log_level < 0) {
                fprintf(stderr, "tokenwatch: --log-level: expected debug, info, warn or "
                                "error, got \"%s\"\n", optarg);
                return TW_EXIT_USAGE;
            }
            break;
        case OPT_LOG_FORMAT:
            if (strcmp(optarg, "plain") == 0)
                cli.log_format = TW_LOG_PLAIN;
            else if (strcmp(optarg, "json") == 0)
                cli.log_format = TW_LOG_JSON;
            else {
                fprintf(stderr, "tokenwatch: --log-format: expected plain or json, got "
                                "\"%s\"\n", optarg);
                return TW_EXIT_USAGE;
            }
            break;
        case OPT_NO_DETECT:
            cli.no_detect = true;
            break;
        case OPT_DISCARD_STATE:
            cli.discard_state = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return TW_EXIT_OK;
        case 'V':
            printf("tokenwatch %s\n", TW_VERSION);
            return TW_EXIT_OK;
        default:
            fprintf(stderr, "\n%s", usage);
            return TW_EXIT_USAGE;
        }
    }
    cli.args = argv + optind;
    cli.nargs = argc - optind;
    if ((cli.input || cli.sample) && cmd != tw_cmd_check) {
        fprintf(stderr, "tokenwatch: --sample and --input belong to check, not %s\n",
                cmd_name);
        return TW_EXIT_USAGE;
    }
    if (cli.no_detect && cmd != tw_cmd_replay) {
        fprintf(stderr, "tokenwatch: --no-detect belongs to replay, not %s\n", cmd_name);
        return TW_EXIT_USAGE;
    }
    if (cli.discard_state && cmd != tw_cmd_run) {
        fprintf(stderr, "tokenwatch: --discard-state belongs to run, not %s\n", cmd_name);
        return TW_EXIT_USAGE;
    }
    if (cli.input && cli.format) {
        fprintf(stderr, "tokenwatch: use either --input or --format, not both\n");
        return TW_EXIT_USAGE;
    }
    return cmd(&cli);
}
