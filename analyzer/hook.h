/*
 * hook.h — the freeze/unfreeze hook runner (DESIGN.md "Freeze hook", issue 4
 * point 1): runs external commands off the hot path, in its own thread,
 * with a deadline, bounded concurrency, a bounded queue and retries, and
 * reports every attempt. It knows nothing of tokens' lifecycle, the circuit
 * breaker or persistence: the caller decides what to submit and what a
 * report means.
 *
 * Spawning (STYLE.md §9), never through a shell:
 *  - argv, envp and every descriptor are prepared before fork(); the child
 *    only calls async-signal-safe functions: setpgid(0,0), every signal
 *    disposition back to SIG_DFL (the daemon ignores SIGPIPE; that must not
 *    reach the hook), dup2 of stdin (a pipe), stdout (/dev/null) and stderr
 *    (a pipe), close_range(3..) (or a close loop), signal mask emptied,
 *    execve(argv[0]). argv[0] is an absolute path: there is no PATH search.
 *  - The child reports a failed exec (or setup step) by writing its errno to
 *    a close-on-exec pipe: EOF means the exec succeeded. -> TW_HOOK_EXEC_ERROR.
 *  - Environment: the daemon's environ as it was at tw_hook_new() (so
 *    VAULT_ADDR / VAULT_TOKEN and a hook's own TOKENWATCH_* settings reach
 *    the hook), with any TOKENWATCH_ACTION, _TOKEN_ID and _RULE replaced by
 *    TOKENWATCH_ACTION=freeze|unfreeze, TOKENWATCH_TOKEN_ID=tw_<16 hex>,
 *    TOKENWATCH_RULE=<sanitised rule>. The stdin payload never goes into
 *    argv or the environment.
 *  - stdin gets the job's payload, written non-blocking from the runner
 *    thread, then closed; a hook that does not read it (EPIPE) is fine.
 *    stderr is read non-blocking and only its last stderr_max bytes are kept,
 *    so a chatty hook never blocks on a full pipe.
 *  - Deadline: timeout_ms after the start the hook's whole process group gets
 *    SIGTERM, kill_grace_ms later SIGKILL. A leader that exits after the
 *    SIGTERM is left a zombie (its pid, hence the group id, cannot be
 *    reused) until the rest of the group is done with stderr (EOF) or the
 *    grace period ends; the group then gets SIGKILL and the leader is
 *    reaped. So grandchildren get the hook's grace period, and none that
 *    ignores SIGTERM survives it.
 *  - Reaping never blocks: the thread sleeps in poll() on a pidfd per child
 *    (Linux >= 5.3; without pidfds it re-checks waitpid(WNOHANG) every
 *    50 ms while children run) with a timeout computed from the next
 *    deadline or retry; no busy loop.
 *  - Every descriptor the runner creates is close-on-exec; the runner thread
 *    blocks every signal, so SIGTERM/SIGHUP/SIGCHLD go to other threads.
 *
 * Queue and retries: a job is "accepted" from tw_hook_submit() until its
 * final report; at most queue_max jobs are accepted at once (waiting,
 * running or waiting for a retry) and submit fails instantly beyond that.
 * At most `concurrency` children are alive at once. Any outcome but
 * TW_HOOK_OK is retried until max_attempts, after backoff_ms * 2^(n-1)
 * (capped at backoff_max_ms) with full jitter in [d/2, d] (libsodium
 * randombytes_uniform). Jobs start earliest-due first.
 *
 * Reports: one per attempt, collected with tw_hook_poll() (oldest first);
 * tw_hook_wake_fd() is readable while any wait. The caller must poll: while
 * queue_max reports are waiting the runner starts no new attempt (running
 * ones still finish and report), so memory stays bounded if it does not.
 *
 * The daemon must not set SIGCHLD to SIG_IGN or SA_NOCLDWAIT (children
 * would reap themselves); tw_hook_new() refuses to start if it has.
 *
 * Threading: tw_hook_submit, tw_hook_poll, tw_hook_depth, tw_hook_wake_fd
 * and tw_hook_has_command may be called from any thread; tw_hook_new and
 * tw_hook_free from the owner only, and nothing may use the runner during
 * or after tw_hook_free.
 */
#ifndef TW_HOOK_H
#define TW_HOOK_H

#include "common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { TW_HOOK_FREEZE = 0, TW_HOOK_UNFREEZE = 1 } tw_hook_action_t;

typedef enum {
    TW_HOOK_OK = 0,     /* exit status 0 */
    TW_HOOK_FAILED,     /* exited non-zero or killed by a signal it did not get from us */
    TW_HOOK_TIMEOUT,    /* still running at the deadline: its process group was killed */
    TW_HOOK_EXEC_ERROR, /* could not be started (fork/pipe failure, exec failed: ENOENT,
                           EACCES...) */
    TW_HOOK_DRY_RUN,    /* dry_run: not run, recorded */
} tw_hook_outcome_t;

/* "freeze", "unfreeze"; "?" for any other value. Static strings. */
const char *tw_hook_action_name(tw_hook_action_t a);
/* "success", "failure", "timeout", "exec_error", "dry_run"; "?" for any
 * other value. Static strings. */
const char *tw_hook_outcome_name(tw_hook_outcome_t o);

#define TW_HOOK_STDERR_MAX 4096
#define TW_HOOK_RULE_MAX 63            /* bytes of rule kept (plus NUL) */
#define TW_HOOK_CONCURRENCY_MAX 1024   /* larger values are refused */
#define TW_HOOK_QUEUE_MAX (1u << 20)   /* idem */
#define TW_HOOK_ATTEMPTS_MAX 100       /* idem */

/* Every numeric 0 means "the default" written beside it. */
typedef struct tw_hook_opts {
    const char *const *freeze_argv;    /* NULL-terminated; copied; NULL = no freeze command */
    const char *const *unfreeze_argv;  /* idem */
    unsigned timeout_ms;               /* default 10000 */
    unsigned kill_grace_ms;            /* SIGTERM -> SIGKILL delay, default 2000 */
    unsigned concurrency;              /* children at once, default 4 */
    unsigned queue_max;                /* jobs accepted and not finished (waiting, running,
                                          waiting for a retry), default 256 */
    unsigned max_attempts;             /* default 5 (1 = no retry) */
    unsigned backoff_ms;               /* delay before attempt 2, default 1000; doubles each
                                          attempt, capped at backoff_max_ms, full jitter in
                                          [d/2, d] */
    unsigned backoff_max_ms;           /* default 60000 */
    bool dry_run;                      /* never fork: each job reports TW_HOOK_DRY_RUN, final */
    size_t stderr_max;                 /* bytes of the stderr TAIL kept, default 1024,
                                          <= TW_HOOK_STDERR_MAX */
} tw_hook_opts_t;

typedef struct tw_hook_report {
    uint64_t seq;                 /* from tw_hook_submit */
    uint64_t token_id;
    tw_hook_action_t action;
    tw_hook_outcome_t outcome;
    unsigned attempt;             /* 1-based */
    bool final;                   /* no further attempt will be made */
    int exit_status;              /* exit code, or -1 if it did not exit normally (also for
                                     TW_HOOK_EXEC_ERROR and TW_HOOK_DRY_RUN) */
    int term_signal;              /* signal that ended it, 0 if none */
    int error_no;                 /* TW_HOOK_EXEC_ERROR: the errno (ENOENT...); else 0 */
    double duration_s;            /* start to reap (0 for dry_run / exec errors before fork) */
    unsigned retry_in_ms;         /* !final: delay before the next attempt; else 0 */
    char rule[64];                /* copied from the job, NUL-terminated */
    size_t stderr_len;
    char stderr_tail[TW_HOOK_STDERR_MAX]; /* last stderr_len bytes of the hook's stderr, raw
                                             (may be invalid UTF-8; the caller escapes) */
} tw_hook_report_t;

typedef struct tw_hook tw_hook_t;

/* Validates opts (argv[0] must be an absolute path; a missing file is NOT an
 * error here, it is reported per call as EXEC_ERROR; numbers within the
 * TW_HOOK_*_MAX limits), snapshots the environment and starts the runner
 * thread. Everything in opts is copied. Returns 0 and *out, or -1 + err on
 * bad opts, a SIGCHLD disposition that reaps children by itself, or a
 * failure to create the thread or its descriptors. Owner thread. */
int tw_hook_new(tw_hook_t **out, const tw_hook_opts_t *o, tw_err_t *err);

/* Stops the thread: running hooks get SIGTERM to their process group, then
 * SIGKILL after kill_grace_ms; all are reaped (a child that does not die
 * within kill_grace_ms + 1 s of its SIGKILL is left behind with a warning
 * in the log); queued jobs and unread reports are discarded (the caller
 * persists what it needs). May block up to about kill_grace_ms + 1 s.
 * NULL-safe. Owner thread. */
void tw_hook_free(tw_hook_t *h);

/* True when a command is configured for a, and always in a dry run (which
 * records what would run for either action). Any thread. */
bool tw_hook_has_command(const tw_hook_t *h, tw_hook_action_t a);

/* Queues a job: stdin_json[0..len) is copied (NULL with len 0: empty stdin;
 * the copy is wiped when the job ends, as it may hold the raw token)
 * and written to the hook's stdin (then stdin is closed); rule is copied
 * (NULL = ""; truncated to 63 bytes; only [A-Za-z0-9_.-] kept, others
 * become '_'). Returns 0 and *seq (seq may be NULL; sequence numbers start
 * at 1), or -1 when the queue is full (nothing queued: the caller counts a
 * drop) or there is no command for the action. Never blocks on the runner
 * (a short mutex, never held across a fork or a syscall that can wait).
 * Any thread; the daemon calls it from the analysis thread. */
int tw_hook_submit(tw_hook_t *h, tw_hook_action_t a, uint64_t token_id, const char *rule,
                   const char *stdin_json, size_t len, uint64_t *seq);

/* Moves up to max finished-attempt reports into out (oldest first); returns
 * how many. Never blocks. Any thread (one consumer at a time makes sense). */
size_t tw_hook_poll(tw_hook_t *h, tw_hook_report_t *out, size_t max);

/* An eventfd that is readable while reports are waiting (level-triggered:
 * tw_hook_poll does the reading), for the daemon's poll/epoll set. Owned by
 * h: do not read or close it. Any thread. */
int tw_hook_wake_fd(const tw_hook_t *h);

/* Jobs accepted and not final yet (queued + running + waiting for retry).
 * Any thread. */
size_t tw_hook_depth(const tw_hook_t *h);

#endif
