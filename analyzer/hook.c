/*
 * hook.c — see hook.h.
 *
 * Shape: tw_hook_submit() appends jobs to `incoming` under `mu`; the runner
 * thread moves them to its private `pending` list, starts the earliest-due
 * ones while a child slot is free, and sleeps in poll() on its wake eventfd
 * and, per child, a pidfd, the stdin pipe (while payload remains) and the
 * stderr pipe. A finished attempt becomes a report in a ring under `mu`;
 * the report eventfd is non-zero exactly while that ring is not empty.
 *
 * Invariants: `mu` is never held across fork(), poll() or a read/write that
 * can wait, so submitters never wait for a child. Every fd created here is
 * close-on-exec. The fds handed to a child (stdin read end, stderr write
 * end, exec-status write end, /dev/null) are all >= 3, so the child's dup2
 * onto 0..3 can never clobber one it still needs.
 */
#include "hook.h"
#include "log.h"
#include "tokenid.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MS 1000000LL
#define DEFAULT_TIMEOUT_MS 10000u
#define DEFAULT_GRACE_MS 2000u
#define DEFAULT_CONCURRENCY 4u
#define DEFAULT_QUEUE_MAX 256u
#define DEFAULT_ATTEMPTS 5u
#define DEFAULT_BACKOFF_MS 1000u
#define DEFAULT_BACKOFF_MAX_MS 60000u
#define DEFAULT_STDERR_MAX 1024u
/* Without pidfds a child's exit is noticed by re-checking this often. */
#define NO_PIDFD_RECHECK_MS 50
/* stderr: bytes per read() and reads per wake-up, so one chatty hook
 * cannot monopolise the runner. */
#define READ_CHUNK 16384
#define READS_PER_WAKE 16
/* At shutdown, how long a SIGKILLed child may take to die before it is
 * left behind. */
#define SHUTDOWN_GIVEUP_MS 1000
/* Upper bound of the close() loop used when close_range() is missing. */
#define CLOSE_LOOP_MAX (1L << 20)
#define ENV_PREFIX "TOKENWATCH_"

typedef struct job {
    struct job *next;
    uint64_t seq, token_id;
    tw_hook_action_t action;
    unsigned attempts;          /* attempts started so far */
    int64_t due_ns;             /* monotonic: earliest start of the next attempt */
    char rule[TW_HOOK_RULE_MAX + 1];
    char *in;                   /* stdin payload; NULL when in_len is 0 */
    size_t in_len;
} job_t;

typedef struct child {
    job_t *job;                 /* NULL: free slot */
    pid_t pid;
    int pidfd, in_fd, err_fd, exec_fd;   /* -1 when closed / unavailable */
    int pi_pid, pi_in, pi_err;  /* their index in the poll set this round, or -1 */
    size_t in_off;
    int64_t start_ns, deadline_ns, kill_ns, giveup_ns;
    bool term_sent, kill_sent;
    bool exited;                /* the leader has exited, not yet reaped */
    char *tail;                 /* stderr_max bytes */
    size_t tail_len;
} child_t;

/* What the child needs, prepared before fork() (it must not allocate). */
typedef struct spawn {
    char *const *argv;
    char *const *envp;
    int in_r, err_w, exec_w, devnull;
    long open_max;
} spawn_t;

struct tw_hook {
    /* Immutable after tw_hook_new. */
    char **argv[2];             /* per action; NULL = no command */
    unsigned timeout_ms, grace_ms, concurrency, queue_max, max_attempts;
    unsigned backoff_ms, backoff_max_ms;
    bool dry_run;
    size_t stderr_max;
    long open_max;
    int devnull;                /* /dev/null, O_WRONLY: the hooks' stdout */
    int run_fd;                 /* eventfd: wakes the runner */
    int rep_fd;                 /* eventfd: non-zero while reports wait */
    pthread_t thread;
    bool started;               /* thread running: tw_hook_free joins it */

    /* Shared, under mu (depth and stop are also read without it). */
    pthread_mutex_t mu;
    job_t *in_head, *in_tail;   /* submitted, not yet taken by the runner */
    uint64_t last_seq;
    tw_hook_report_t *rep;      /* ring of waiting reports */
    size_t rep_head, rep_n, rep_cap;
    bool runner_blocked;        /* runner waits for rep_n < queue_max */
    atomic_size_t depth;
    atomic_bool stop;

    /* Runner thread only. */
    job_t *pending;             /* accepted, waiting for their due time and a slot */
    child_t *kids;              /* concurrency slots */
    unsigned active;            /* slots in use */
    bool stopping;
    struct pollfd *pfd;         /* 1 + 3 * concurrency */
    char **envp;                /* environ snapshot (no TOKENWATCH_*) + 3 + NULL */
    size_t env_base;
    char env_action[48], env_id[48], env_rule[32 + TW_HOOK_RULE_MAX];
    char *scratch;              /* READ_CHUNK bytes */
};

const char *tw_hook_action_name(tw_hook_action_t a)
{
    switch (a) {
    case TW_HOOK_FREEZE:
        return "freeze";
    case TW_HOOK_UNFREEZE:
        return "unfreeze";
    }
    return "?";
}

const char *tw_hook_outcome_name(tw_hook_outcome_t o)
{
    switch (o) {
    case TW_HOOK_OK:
        return "success";
    case TW_HOOK_FAILED:
        return "failure";
    case TW_HOOK_TIMEOUT:
        return "timeout";
    case TW_HOOK_EXEC_ERROR:
        return "exec_error";
    case TW_HOOK_DRY_RUN:
        return "dry_run";
    }
    return "?";
}

/* ---- small fd helpers --------------------------------------------------- */

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Moves fd to a number >= 3 (keeping O_CLOEXEC): a daemon started with 0..2
 * closed would otherwise hand out pipe ends the child's dup2 clobbers. */
static int lift_fd(int fd)
{
    if (fd < 0 || fd >= 3)
        return fd;
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int e = errno;
    close(fd);
    errno = e;
    return nfd;
}

static int make_pipe(int p[2])
{
    p[0] = p[1] = -1;
    int q[2];
    if (pipe2(q, O_CLOEXEC) != 0)
        return -1;
    p[0] = lift_fd(q[0]);
    p[1] = lift_fd(q[1]);
    if (p[0] < 0 || p[1] < 0) {
        int e = errno;
        close_fd(&p[0]);
        close_fd(&p[1]);
        errno = e;
        return -1;
    }
    return 0;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void event_signal(int fd)
{
    uint64_t one = 1;
    /* Cannot block (O_NONBLOCK) and cannot overflow in practice. */
    if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN)
        tw_warn("hook: eventfd write: %s", strerror(errno));
}

static void event_clear(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) < 0 && errno == EINTR)
        ;
}

static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);   /* always O_CLOEXEC */
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/* A write to a closed pipe raised SIGPIPE at this (signal-blocking)
 * thread: take it back so it does not stay pending forever. */
static void consume_sigpipe(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&s, NULL, &zero) < 0 && errno == EINTR)
        ;
}

/* ---- options ------------------------------------------------------------ */

static char **copy_argv(const char *const *argv)
{
    size_t n = 0;
    while (argv[n])
        n++;
    char **v = tw_xcalloc(n + 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = tw_xstrdup(argv[i]);
    return v;
}

static void free_argv(char **v)
{
    if (!v)
        return;
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

static int check_argv(const char *what, const char *const *argv, tw_err_t *err)
{
    if (!argv)
        return 0;
    if (!argv[0] || !argv[0][0])
        return tw_err_set(err, "%s command: expected a non-empty argv array", what);
    if (argv[0][0] != '/')
        return tw_err_set(err,
                          "%s command: argv[0] must be an absolute path (no PATH search, "
                          "no shell), got \"%s\"",
                          what, argv[0]);
    return 0;
}

static unsigned or_default(unsigned v, unsigned def)
{
    return v ? v : def;
}

static int check_opts(const tw_hook_opts_t *o, tw_err_t *err)
{
    if (check_argv("freeze", o->freeze_argv, err) != 0 ||
        check_argv("unfreeze", o->unfreeze_argv, err) != 0)
        return -1;
    if (o->concurrency > TW_HOOK_CONCURRENCY_MAX)
        return tw_err_set(err, "hook concurrency: expected 1..%u, got %u",
                          TW_HOOK_CONCURRENCY_MAX, o->concurrency);
    if (o->queue_max > TW_HOOK_QUEUE_MAX)
        return tw_err_set(err, "hook queue_max: expected 1..%u, got %u", TW_HOOK_QUEUE_MAX,
                          o->queue_max);
    if (o->max_attempts > TW_HOOK_ATTEMPTS_MAX)
        return tw_err_set(err, "hook max_attempts: expected 1..%u, got %u",
                          TW_HOOK_ATTEMPTS_MAX, o->max_attempts);
    if (o->stderr_max > TW_HOOK_STDERR_MAX)
        return tw_err_set(err, "hook stderr_max: expected 1..%u bytes, got %zu",
                          TW_HOOK_STDERR_MAX, o->stderr_max);
    struct sigaction sa;
    if (sigaction(SIGCHLD, NULL, &sa) == 0 &&
        ((!(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_IGN) ||
         (sa.sa_flags & SA_NOCLDWAIT)))
        return tw_err_set(err, "hook runner: SIGCHLD is ignored (or SA_NOCLDWAIT): hooks "
                               "would reap themselves and their exit status would be lost");
    return 0;
}

/* The environment every hook inherits: environ now, minus TOKENWATCH_*,
 * with three slots for the per-call variables and the terminating NULL. */
static void snapshot_env(tw_hook_t *h)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    h->envp = tw_xcalloc(n + 4, sizeof *h->envp);
    /* Only the three per-call names are replaced; other TOKENWATCH_* settings
     * (a hook's own, e.g. TOKENWATCH_WEBHOOK_URL) pass through. */
    static const char *const own[] = {ENV_PREFIX "ACTION=", ENV_PREFIX "TOKEN_ID=",
                                       ENV_PREFIX "RULE="};
    for (char **e = environ; e && *e; e++) {
        bool ours = false;
        for (size_t k = 0; k < sizeof own / sizeof own[0]; k++)
            ours |= strncmp(*e, own[k], strlen(own[k])) == 0;
        if (!ours)
            h->envp[h->env_base++] = tw_xstrdup(*e);
    }
}

static void *runner_main(void *arg);

int tw_hook_new(tw_hook_t **out, const tw_hook_opts_t *o, tw_err_t *err)
{
    *out = NULL;
    if (check_opts(o, err) != 0)
        return -1;
    if (sodium_init() < 0)
        return tw_err_set(err, "hook runner: libsodium failed to initialise");

    tw_hook_t *h = tw_xcalloc(1, sizeof *h);
    h->argv[TW_HOOK_FREEZE] = o->freeze_argv ? copy_argv(o->freeze_argv) : NULL;
    h->argv[TW_HOOK_UNFREEZE] = o->unfreeze_argv ? copy_argv(o->unfreeze_argv) : NULL;
    h->timeout_ms = or_default(o->timeout_ms, DEFAULT_TIMEOUT_MS);
    h->grace_ms = or_default(o->kill_grace_ms, DEFAULT_GRACE_MS);
    h->concurrency = or_default(o->concurrency, DEFAULT_CONCURRENCY);
    h->queue_max = or_default(o->queue_max, DEFAULT_QUEUE_MAX);
    h->max_attempts = or_default(o->max_attempts, DEFAULT_ATTEMPTS);
    h->backoff_ms = or_default(o->backoff_ms, DEFAULT_BACKOFF_MS);
    h->backoff_max_ms = or_default(o->backoff_max_ms, DEFAULT_BACKOFF_MAX_MS);
    h->dry_run = o->dry_run;
    h->stderr_max = o->stderr_max ? o->stderr_max : DEFAULT_STDERR_MAX;
    long om = sysconf(_SC_OPEN_MAX);
    h->open_max = om <= 0 ? 1024 : om > CLOSE_LOOP_MAX ? CLOSE_LOOP_MAX : om;
    h->devnull = h->run_fd = h->rep_fd = -1;
    pthread_mutex_init(&h->mu, NULL);
    atomic_init(&h->depth, 0);
    atomic_init(&h->stop, false);

    h->kids = tw_xcalloc(h->concurrency, sizeof *h->kids);
    for (unsigned i = 0; i < h->concurrency; i++)
        h->kids[i].tail = tw_xmalloc(h->stderr_max);
    h->pfd = tw_xcalloc(1 + 3 * (size_t)h->concurrency, sizeof *h->pfd);
    h->scratch = tw_xmalloc(READ_CHUNK);
    snapshot_env(h);

    h->devnull = lift_fd(open("/dev/null", O_WRONLY | O_CLOEXEC));
    h->run_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    h->rep_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->devnull < 0 || h->run_fd < 0 || h->rep_fd < 0) {
        tw_err_set(err, "hook runner: cannot open its descriptors: %s", strerror(errno));
        tw_hook_free(h);
        return -1;
    }

    /* The thread inherits this mask: blocking here leaves no window in
     * which a process signal could be delivered to it. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&h->thread, NULL, runner_main, h);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        pthread_setname_np(h->thread, "tw-hook");   /* visible in ps, top, /proc */
    if (rc != 0) {
        tw_err_set(err, "hook runner: cannot start its thread: %s", strerror(rc));
        tw_hook_free(h);
        return -1;
    }
    h->started = true;
    *out = h;
    return 0;
}

/* The payload may carry the raw token (pass_token): wiped, not just freed. */
static void free_job(job_t *j)
{
    if (j->in)
        sodium_memzero(j->in, j->in_len);
    free(j->in);
    free(j);
}

static void free_jobs(job_t *j)
{
    while (j) {
        job_t *next = j->next;
        free_job(j);
        j = next;
    }
}

void tw_hook_free(tw_hook_t *h)
{
    if (!h)
        return;
    if (h->started) {
        atomic_store(&h->stop, true);
        event_signal(h->run_fd);
        pthread_join(h->thread, NULL);
    }
    free_jobs(h->in_head);
    free_jobs(h->pending);
    if (h->kids)
        for (unsigned i = 0; i < h->concurrency; i++)
            free(h->kids[i].tail);
    free(h->kids);
    free(h->pfd);
    free(h->scratch);
    free(h->rep);
    if (h->envp)
        for (size_t i = 0; i < h->env_base; i++)
            free(h->envp[i]);
    free(h->envp);
    free_argv(h->argv[0]);
    free_argv(h->argv[1]);
    close_fd(&h->devnull);
    close_fd(&h->run_fd);
    close_fd(&h->rep_fd);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

bool tw_hook_has_command(const tw_hook_t *h, tw_hook_action_t a)
{
    /* A dry run records what would run for either action, command or not. */
    return (a == TW_HOOK_FREEZE || a == TW_HOOK_UNFREEZE) && (h->dry_run || h->argv[a] != NULL);
}

int tw_hook_wake_fd(const tw_hook_t *h)
{
    return h->rep_fd;
}

size_t tw_hook_depth(const tw_hook_t *h)
{
    return atomic_load_explicit(&((tw_hook_t *)h)->depth, memory_order_relaxed);
}

/* ---- submit / poll (any thread) ----------------------------------------- */

static void sanitize_rule(char dst[TW_HOOK_RULE_MAX + 1], const char *rule)
{
    size_t n = 0;
    for (; rule && rule[n] && n < TW_HOOK_RULE_MAX; n++) {
        unsigned char c = (unsigned char)rule[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        dst[n] = ok ? (char)c : '_';
    }
    dst[n] = '\0';
}

int tw_hook_submit(tw_hook_t *h, tw_hook_action_t a, uint64_t token_id, const char *rule,
                   const char *stdin_json, size_t len, uint64_t *seq)
{
    if (!tw_hook_has_command(h, a))
        return -1;
    /* A flood is refused before anything is allocated. */
    if (atomic_load(&h->depth) >= h->queue_max)
        return -1;
    job_t *j = tw_xcalloc(1, sizeof *j);
    j->action = a;
    j->token_id = token_id;
    sanitize_rule(j->rule, rule);
    if (len > 0) {
        j->in = tw_xmalloc(len);
        memcpy(j->in, stdin_json, len);
        j->in_len = len;
    }

    pthread_mutex_lock(&h->mu);
    if (atomic_load(&h->depth) >= h->queue_max) {
        pthread_mutex_unlock(&h->mu);
        free_job(j);
        return -1;
    }
    uint64_t s = j->seq = ++h->last_seq;
    if (h->in_tail)
        h->in_tail->next = j;
    else
        h->in_head = j;
    h->in_tail = j;
    atomic_fetch_add(&h->depth, 1);
    pthread_mutex_unlock(&h->mu);

    event_signal(h->run_fd);
    if (seq)
        *seq = s;
    return 0;
}

size_t tw_hook_poll(tw_hook_t *h, tw_hook_report_t *out, size_t max)
{
    pthread_mutex_lock(&h->mu);
    size_t n = max < h->rep_n ? max : h->rep_n;
    for (size_t i = 0; i < n; i++) {
        out[i] = h->rep[h->rep_head];
        h->rep_head = (h->rep_head + 1) % h->rep_cap;
    }
    h->rep_n -= n;
    if (n > 0 && h->rep_n == 0)
        event_clear(h->rep_fd);
    bool wake = n > 0 && h->runner_blocked && h->rep_n < h->queue_max;
    if (wake)
        h->runner_blocked = false;
    pthread_mutex_unlock(&h->mu);
    if (wake)
        event_signal(h->run_fd);
    return n;
}

/* mu held. */
static void push_report(tw_hook_t *h, const tw_hook_report_t *r)
{
    if (h->rep_n == h->rep_cap) {
        size_t cap = h->rep_cap ? h->rep_cap * 2 : 16;
        tw_hook_report_t *nr = tw_xmalloc(cap * sizeof *nr);
        for (size_t i = 0; i < h->rep_n; i++)
            nr[i] = h->rep[(h->rep_head + i) % h->rep_cap];
        free(h->rep);
        h->rep = nr;
        h->rep_cap = cap;
        h->rep_head = 0;
    }
    h->rep[(h->rep_head + h->rep_n) % h->rep_cap] = *r;
    if (h->rep_n++ == 0)
        event_signal(h->rep_fd);
}

/* ---- runner: attempts --------------------------------------------------- */

/* Delay before the attempt after `done` attempts: backoff_ms doubled per
 * earlier retry, capped, then drawn uniformly from [d/2, d]. */
static unsigned backoff_delay(const tw_hook_t *h, unsigned done)
{
    uint64_t d = h->backoff_ms;
    for (unsigned i = 1; i < done && d < h->backoff_max_ms; i++)
        d *= 2;
    if (d > h->backoff_max_ms)
        d = h->backoff_max_ms;
    uint32_t lo = (uint32_t)(d / 2);
    return lo + randombytes_uniform((uint32_t)(d - lo + 1));
}

static void report_init(tw_hook_report_t *r, const job_t *j)
{
    /* Only the header: the 4 KB tail is copied by length. */
    memset(r, 0, offsetof(tw_hook_report_t, stderr_tail));
    r->seq = j->seq;
    r->token_id = j->token_id;
    r->action = j->action;
    r->attempt = j->attempts;
    r->exit_status = -1;
    memcpy(r->rule, j->rule, sizeof j->rule);
}

/* Publishes the report of j's latest attempt; schedules a retry or retires
 * the job (r->final, depth). Runner thread. */
static void complete_attempt(tw_hook_t *h, job_t *j, tw_hook_report_t *r)
{
    bool retry = r->outcome != TW_HOOK_OK && r->outcome != TW_HOOK_DRY_RUN &&
                 j->attempts < h->max_attempts;
    if (retry) {
        r->retry_in_ms = backoff_delay(h, j->attempts);
        r->final = false;
        j->due_ns = tw_mono_ns() + (int64_t)r->retry_in_ms * MS;
        j->next = h->pending;
        h->pending = j;
    } else {
        r->final = true;
        r->retry_in_ms = 0;
    }
    pthread_mutex_lock(&h->mu);
    push_report(h, r);
    if (!retry)
        atomic_fetch_sub(&h->depth, 1);
    pthread_mutex_unlock(&h->mu);
    if (!retry)
        free_job(j);
}

static void exec_error(tw_hook_t *h, job_t *j, int e)
{
    tw_hook_report_t r;
    report_init(&r, j);
    r.outcome = TW_HOOK_EXEC_ERROR;
    r.error_no = e;
    complete_attempt(h, j, &r);
}

/* The child, between fork and exec: async-signal-safe calls only, no
 * allocation, no locks, no return. */
static _Noreturn void child_exec(const spawn_t *s)
{
    int exfd = s->exec_w;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigset_t none;
    sigemptyset(&none);

    if (setpgid(0, 0) != 0)
        goto fail;
    /* The mask is still full (inherited from the runner thread), so no
     * daemon handler can run here while dispositions are reset. SIGKILL,
     * SIGSTOP and glibc's internal signals refuse; that is fine. */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    if (dup2(s->in_r, STDIN_FILENO) < 0 || dup2(s->devnull, STDOUT_FILENO) < 0 ||
        dup2(s->err_w, STDERR_FILENO) < 0)
        goto fail;
    if (exfd != 3) {
        if (dup3(exfd, 3, O_CLOEXEC) < 0)
            goto fail;
        exfd = 3;
    }
    if (close_range(4, ~0U, 0) != 0)
        for (long fd = 4; fd < s->open_max; fd++)
            (void)close((int)fd);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        goto fail;
    execve(s->argv[0], s->argv, s->envp);
fail:;
    int e = errno;
    ssize_t w = write(exfd, &e, sizeof e);
    (void)w;
    _exit(127);
}

static child_t *free_slot(tw_hook_t *h)
{
    for (unsigned i = 0; i < h->concurrency; i++)
        if (!h->kids[i].job)
            return &h->kids[i];
    return NULL;
}

/* Starts the next attempt of j (removed from pending): a dry run, a child,
 * or an immediate EXEC_ERROR report. Runner thread. */
static void start_attempt(tw_hook_t *h, job_t *j)
{
    j->attempts++;
    if (h->dry_run) {
        tw_hook_report_t r;
        report_init(&r, j);
        r.outcome = TW_HOOK_DRY_RUN;
        complete_attempt(h, j, &r);
        return;
    }
    child_t *c = free_slot(h);   /* the caller checked active < concurrency */
    int in[2] = {-1, -1}, er[2] = {-1, -1}, ex[2] = {-1, -1};
    /* Our ends are non-blocking; the child's stay blocking, as hooks expect. */
    if (make_pipe(in) != 0 || make_pipe(er) != 0 || make_pipe(ex) != 0 ||
        set_nonblock(in[1]) != 0 || set_nonblock(er[0]) != 0 || set_nonblock(ex[0]) != 0) {
        int e = errno;
        int *fds[] = {&in[0], &in[1], &er[0], &er[1], &ex[0], &ex[1]};
        for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
            close_fd(fds[i]);
        tw_warn("hook: %s job %" PRIu64 " attempt %u: cannot create pipes: %s",
                tw_hook_action_name(j->action), j->seq, j->attempts, strerror(e));
        exec_error(h, j, e);
        return;
    }

    /* Per-call environment, in buffers that outlive the fork. */
    char id[TW_TOKENID_STR_LEN + 1];
    tw_tokenid_format(j->token_id, id);
    snprintf(h->env_action, sizeof h->env_action, ENV_PREFIX "ACTION=%s",
             tw_hook_action_name(j->action));
    snprintf(h->env_id, sizeof h->env_id, ENV_PREFIX "TOKEN_ID=%s", id);
    snprintf(h->env_rule, sizeof h->env_rule, ENV_PREFIX "RULE=%s", j->rule);
    h->envp[h->env_base] = h->env_action;
    h->envp[h->env_base + 1] = h->env_id;
    h->envp[h->env_base + 2] = h->env_rule;
    h->envp[h->env_base + 3] = NULL;

    spawn_t s = {.argv = h->argv[j->action],
                 .envp = h->envp,
                 .in_r = in[0],
                 .err_w = er[1],
                 .exec_w = ex[1],
                 .devnull = h->devnull,
                 .open_max = h->open_max};
    int64_t start = tw_mono_ns();
    pid_t pid = fork();
    if (pid == 0)
        child_exec(&s);
    int e = errno;
    close_fd(&in[0]);
    close_fd(&er[1]);
    close_fd(&ex[1]);
    if (pid < 0) {
        close_fd(&in[1]);
        close_fd(&er[0]);
        close_fd(&ex[0]);
        tw_warn("hook: %s job %" PRIu64 " attempt %u: fork: %s",
                tw_hook_action_name(j->action), j->seq, j->attempts, strerror(e));
        exec_error(h, j, e);
        return;
    }
    /* The child does the same; whichever runs first closes the race in
     * which a deadline would signal a group that does not exist yet. After
     * the exec this fails with EACCES, harmlessly. */
    (void)setpgid(pid, pid);

    c->job = j;
    c->pid = pid;
    c->pidfd = open_pidfd(pid);
    c->in_fd = in[1];
    c->err_fd = er[0];
    c->exec_fd = ex[0];
    c->in_off = 0;
    c->start_ns = start;
    c->deadline_ns = start + (int64_t)h->timeout_ms * MS;
    c->kill_ns = c->giveup_ns = 0;
    c->term_sent = c->kill_sent = c->exited = false;
    c->tail_len = 0;
    if (j->in_len == 0)
        close_fd(&c->in_fd);
    h->active++;
    tw_debug("hook: %s job %" PRIu64 " attempt %u: started pid %ld",
             tw_hook_action_name(j->action), j->seq, j->attempts, (long)pid);
}

/* Earliest-due pending job that is due at `now` (ties: lowest seq), or
 * NULL; *next_due gets the earliest due time of all (INT64_MAX if none). */
static job_t **pick_due(tw_hook_t *h, int64_t now, int64_t *next_due)
{
    job_t **best = NULL;
    int64_t min = INT64_MAX;
    for (job_t **pp = &h->pending; *pp; pp = &(*pp)->next) {
        job_t *j = *pp;
        if (!best || j->due_ns < (*best)->due_ns ||
            (j->due_ns == (*best)->due_ns && j->seq < (*best)->seq))
            best = pp;
        if (j->due_ns < min)
            min = j->due_ns;
    }
    if (next_due)
        *next_due = min;
    return best && (*best)->due_ns <= now ? best : NULL;
}

static void take_incoming(tw_hook_t *h)
{
    pthread_mutex_lock(&h->mu);
    job_t *in = h->in_head;
    h->in_head = h->in_tail = NULL;
    pthread_mutex_unlock(&h->mu);
    int64_t now = tw_mono_ns();
    while (in) {
        job_t *next = in->next;
        in->due_ns = now;
        in->next = h->pending;
        h->pending = in;
        in = next;
    }
}

/* Starts due jobs while a slot is free and the report ring is not full
 * (when it is, runner_blocked asks tw_hook_poll to wake the runner). */
static void start_due(tw_hook_t *h)
{
    for (;;) {
        if (!h->dry_run && h->active >= h->concurrency)
            return;
        pthread_mutex_lock(&h->mu);
        bool full = h->rep_n >= h->queue_max;
        h->runner_blocked = full;
        pthread_mutex_unlock(&h->mu);
        if (full)
            return;
        job_t **pp = pick_due(h, tw_mono_ns(), NULL);
        if (!pp)
            return;
        job_t *j = *pp;
        *pp = j->next;
        j->next = NULL;
        start_attempt(h, j);
    }
}

/* ---- runner: children --------------------------------------------------- */

static void signal_group(child_t *c, int sig)
{
    /* Falls back to the leader alone should neither setpgid have won. */
    if (kill(-c->pid, sig) != 0 && errno == ESRCH)
        (void)kill(c->pid, sig);
}

static void tail_add(child_t *c, size_t max, const char *p, size_t n)
{
    if (n >= max) {
        memcpy(c->tail, p + n - max, max);
        c->tail_len = max;
        return;
    }
    size_t keep = c->tail_len + n > max ? max - n : c->tail_len;
    memmove(c->tail, c->tail + c->tail_len - keep, keep);
    memcpy(c->tail + keep, p, n);
    c->tail_len = keep + n;
}

static void read_stderr(tw_hook_t *h, child_t *c, int max_reads)
{
    for (int i = 0; c->err_fd >= 0 && i < max_reads; i++) {
        ssize_t n = read(c->err_fd, h->scratch, READ_CHUNK);
        if (n > 0) {
            tail_add(c, h->stderr_max, h->scratch, (size_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return;
        } else {
            close_fd(&c->err_fd);   /* EOF (or an error: nothing more to read) */
        }
    }
}

static void write_stdin(child_t *c)
{
    const job_t *j = c->job;
    while (c->in_off < j->in_len) {
        ssize_t n = write(c->in_fd, j->in + c->in_off, j->in_len - c->in_off);
        if (n > 0) {
            c->in_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        /* EPIPE: the hook does not read its stdin, which is its right. */
        if (n < 0 && errno == EPIPE)
            consume_sigpipe();
        break;
    }
    close_fd(&c->in_fd);
}

static void release_slot(tw_hook_t *h, child_t *c)
{
    close_fd(&c->pidfd);
    close_fd(&c->in_fd);
    close_fd(&c->err_fd);
    close_fd(&c->exec_fd);
    c->job = NULL;
    h->active--;
}

/* The child has been reaped (have_status) or lost (!have_status, e.g.
 * someone else reaped it: e is the errno). Reports, frees the slot. */
static void finish(tw_hook_t *h, child_t *c, bool have_status, int status, int e)
{
    job_t *j = c->job;
    int64_t end = tw_mono_ns();
    if (h->stopping) {
        release_slot(h, c);
        free_job(j);
        return;
    }
    read_stderr(h, c, READS_PER_WAKE);
    int exec_errno = 0;
    ssize_t n;
    do
        n = read(c->exec_fd, &exec_errno, sizeof exec_errno);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof exec_errno)
        exec_errno = 0;   /* EOF: the exec succeeded */

    tw_hook_report_t r;
    report_init(&r, j);
    r.duration_s = (double)(end - c->start_ns) / 1e9;
    if (have_status && WIFEXITED(status))
        r.exit_status = WEXITSTATUS(status);
    if (have_status && WIFSIGNALED(status))
        r.term_signal = WTERMSIG(status);
    if (exec_errno) {
        r.outcome = TW_HOOK_EXEC_ERROR;
        r.error_no = exec_errno;
        r.exit_status = -1;
    } else if (c->term_sent) {
        r.outcome = TW_HOOK_TIMEOUT;
    } else if (have_status && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        r.outcome = TW_HOOK_OK;
    } else {
        r.outcome = TW_HOOK_FAILED;
        if (!have_status)
            r.error_no = e;
    }
    r.stderr_len = c->tail_len;
    memcpy(r.stderr_tail, c->tail, c->tail_len);
    tw_debug("hook: %s job %" PRIu64 " attempt %u: %s", tw_hook_action_name(j->action),
             j->seq, j->attempts, tw_hook_outcome_name(r.outcome));
    release_slot(h, c);
    complete_attempt(h, j, &r);
}

/* Reaps c once its leader has exited; never blocks.
 *
 * The exit is noticed with WNOWAIT, leaving a zombie: while it exists its
 * pid, hence the process group id, cannot be reused, so signalling the
 * group stays safe. A leader that exits after our SIGTERM is reaped only
 * when the rest of its group looks done too (the stderr pipe reached EOF:
 * nobody holds it any more) or at the SIGKILL after the grace period,
 * whichever comes first; either way the group gets a SIGKILL just before
 * the reap, for members that ignore SIGTERM and closed their stderr. So
 * grandchildren get the same grace period as the hook, and none survives. */
static void try_reap(tw_hook_t *h, child_t *c)
{
    if (!c->exited) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
            if (errno == EINTR)
                return;
            int e = errno;
            tw_warn("hook: pid %ld vanished before it was reaped: %s", (long)c->pid,
                    strerror(e));
            finish(h, c, false, 0, e);
            return;
        }
        if (si.si_pid == 0)
            return;
        c->exited = true;   /* its pidfd stays readable: no longer polled */
    }
    if (c->term_sent && !c->kill_sent && c->err_fd >= 0)
        return;
    if (c->term_sent)
        (void)kill(-c->pid, SIGKILL);
    int status = 0;
    pid_t r;
    do
        r = waitpid(c->pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == c->pid)
        finish(h, c, true, status, 0);
    else if (r < 0)
        finish(h, c, false, 0, errno);
}

static void check_deadlines(tw_hook_t *h)
{
    int64_t now = tw_mono_ns();
    for (unsigned i = 0; i < h->concurrency; i++) {
        child_t *c = &h->kids[i];
        if (!c->job)
            continue;
        if (!c->term_sent && now >= c->deadline_ns) {
            signal_group(c, SIGTERM);
            c->term_sent = true;
            c->kill_ns = now + (int64_t)h->grace_ms * MS;
        } else if (c->term_sent && !c->kill_sent && now >= c->kill_ns) {
            signal_group(c, SIGKILL);
            c->kill_sent = true;
            c->giveup_ns = now + SHUTDOWN_GIVEUP_MS * MS;
            if (c->exited)
                try_reap(h, c);
        } else if (h->stopping && c->kill_sent && now >= c->giveup_ns) {
            tw_warn("hook: pid %ld survived SIGKILL for %d ms; left unreaped at shutdown",
                    (long)c->pid, SHUTDOWN_GIVEUP_MS);
            job_t *j = c->job;
            release_slot(h, c);
            free_job(j);
        }
    }
}

/* Shutdown: no new attempts; every child's group gets SIGTERM now and
 * SIGKILL after the grace period. */
static void begin_stop(tw_hook_t *h)
{
    h->stopping = true;
    int64_t now = tw_mono_ns();
    for (unsigned i = 0; i < h->concurrency; i++) {
        child_t *c = &h->kids[i];
        if (!c->job)
            continue;
        close_fd(&c->in_fd);
        if (!c->term_sent) {
            signal_group(c, SIGTERM);
            c->term_sent = true;
            c->kill_ns = now + (int64_t)h->grace_ms * MS;
        }
    }
}

static nfds_t build_pollset(tw_hook_t *h)
{
    nfds_t n = 0;
    h->pfd[n++] = (struct pollfd){.fd = h->run_fd, .events = POLLIN};
    for (unsigned i = 0; i < h->concurrency; i++) {
        child_t *c = &h->kids[i];
        c->pi_pid = c->pi_in = c->pi_err = -1;
        if (!c->job)
            continue;
        if (c->pidfd >= 0 && !c->exited) {
            c->pi_pid = (int)n;
            h->pfd[n++] = (struct pollfd){.fd = c->pidfd, .events = POLLIN};
        }
        if (c->in_fd >= 0) {
            c->pi_in = (int)n;
            h->pfd[n++] = (struct pollfd){.fd = c->in_fd, .events = POLLOUT};
        }
        if (c->err_fd >= 0) {
            c->pi_err = (int)n;
            h->pfd[n++] = (struct pollfd){.fd = c->err_fd, .events = POLLIN};
        }
    }
    return n;
}

static int poll_timeout_ms(tw_hook_t *h)
{
    int64_t now = tw_mono_ns(), next = INT64_MAX;
    for (unsigned i = 0; i < h->concurrency; i++) {
        const child_t *c = &h->kids[i];
        if (!c->job)
            continue;
        int64_t t = !c->term_sent ? c->deadline_ns
                    : !c->kill_sent ? c->kill_ns
                    : h->stopping   ? c->giveup_ns
                                    : INT64_MAX;
        if (c->pidfd < 0 && !c->exited && now + NO_PIDFD_RECHECK_MS * MS < t)
            t = now + NO_PIDFD_RECHECK_MS * MS;
        if (t < next)
            next = t;
    }
    bool can_start = !h->stopping && (h->dry_run || h->active < h->concurrency);
    if (can_start) {
        pthread_mutex_lock(&h->mu);
        can_start = !h->runner_blocked;
        pthread_mutex_unlock(&h->mu);
    }
    if (can_start) {
        int64_t due;
        pick_due(h, now, &due);
        if (due < next)
            next = due;
    }
    if (next == INT64_MAX)
        return -1;
    if (next <= now)
        return 0;
    int64_t ms = (next - now + MS - 1) / MS;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void service_children(tw_hook_t *h)
{
    for (unsigned i = 0; i < h->concurrency; i++) {
        child_t *c = &h->kids[i];
        if (!c->job)
            continue;
        if (c->pi_in >= 0 && h->pfd[c->pi_in].revents)
            write_stdin(c);
        if (c->pi_err >= 0 && h->pfd[c->pi_err].revents)
            read_stderr(h, c, READS_PER_WAKE);
        /* An exited leader is re-examined each round: stderr may have
         * just reached EOF. */
        if ((c->pi_pid >= 0 && h->pfd[c->pi_pid].revents) || c->pidfd < 0 || c->exited)
            try_reap(h, c);
    }
}

static void *runner_main(void *arg)
{
    tw_hook_t *h = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);   /* already inherited; stated again */

    for (;;) {
        if (!h->stopping && atomic_load(&h->stop))
            begin_stop(h);
        if (h->stopping && h->active == 0)
            break;
        if (!h->stopping) {
            take_incoming(h);
            start_due(h);
        }
        nfds_t n = build_pollset(h);
        int rc = poll(h->pfd, n, poll_timeout_ms(h));
        if (rc < 0 && errno != EINTR) {
            tw_error("hook runner: poll: %s", strerror(errno));
            struct timespec ts = {0, 10 * MS};   /* ENOMEM: do not spin */
            nanosleep(&ts, NULL);
            continue;
        }
        if (rc > 0 && h->pfd[0].revents)
            event_clear(h->run_fd);
        service_children(h);
        check_deadlines(h);
    }
    return NULL;
}
