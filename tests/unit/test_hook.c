/* test_hook.c — the hook runner: outcomes, retries and backoff, deadlines
 * that kill the whole process group, exec errors, the bounded queue and
 * concurrency, dry runs, the hook's environment, descriptors and signal
 * state, hostile stdin, the stderr tail, and shutdown with hooks running.
 *
 * The hooks are /bin/sh scripts written into a mkdtemp directory (the
 * runner execs them by path, never through `sh -c`); they leave evidence in
 * files there (TW_TEST_KEEP=1 keeps the directory for a post-mortem). Waits
 * poll with a deadline (a hang guard, not a speed check).
 */
#include "hook.h"
#include "log.h"
#include "tw_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/tw-hook-XXXXXX";
static tw_hook_report_t reps[64];

/* ---- helpers -------------------------------------------------------------- */

static char *tpath(const char *name)
{
    return tw_xasprintf("%s/%s", dir, name);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len || close(fd) != 0)
        tw_die("cannot write %s: %s", path, strerror(errno));
    if (chmod(path, mode) != 0)
        tw_die("chmod %s: %s", path, strerror(errno));
}

/* Writes an executable /bin/sh script whose $D is the temp dir. Scripts are
 * written while no runner is forking, so no child can hold a write
 * descriptor on one while it is exec'd (ETXTBSY). Returns the path. */
static char *script(const char *name, const char *body)
{
    char *p = tpath(name);
    char *text = tw_xasprintf("#!/bin/sh\nD='%s'\n%s\n", dir, body);
    write_file(p, text, strlen(text), 0755);
    free(text);
    return p;
}

static char *slurp(const char *name, size_t *len)
{
    char *p = tpath(name), *buf = NULL;
    size_t n = 0;
    if (tw_read_file(p, &buf, &n, NULL) != 0)
        buf = NULL;
    free(p);
    if (len)
        *len = n;
    return buf;
}

static bool exists(const char *name)
{
    char *p = tpath(name);
    bool ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static bool wait_file(const char *name, double max_s)
{
    int64_t end = tw_mono_ns() + (int64_t)(max_s * 1e9);
    while (!exists(name)) {
        if (tw_mono_ns() > end)
            return false;
        sleep_ms(5);
    }
    return true;
}

static pid_t read_pid(const char *name)
{
    if (!wait_file(name, 10))
        return -1;
    char *s = NULL;
    /* The file exists once the shell opened it; wait for the number. */
    for (int i = 0; i < 1000; i++) {
        s = slurp(name, NULL);
        if (s && strchr(s, '\n'))
            break;
        free(s);
        s = NULL;
        sleep_ms(5);
    }
    long pid = s ? strtol(s, NULL, 10) : -1;
    free(s);
    return pid > 0 ? (pid_t)pid : -1;
}

/* Dead: no such process, or a zombie waiting for a reaper that is not us
 * (orphaned grandchildren go to PID 1, which may not reap in a container). */
static bool pid_gone(pid_t pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    char p[64], *s = NULL;
    size_t n;
    snprintf(p, sizeof p, "/proc/%ld/stat", (long)pid);
    if (tw_read_file(p, &s, &n, NULL) != 0)
        return true;
    const char *q = strrchr(s, ')');
    bool dead = q && q[1] == ' ' && (q[2] == 'Z' || q[2] == 'X');
    free(s);
    return dead;
}

static bool wait_gone(pid_t pid, double max_s)
{
    int64_t end = tw_mono_ns() + (int64_t)(max_s * 1e9);
    while (!pid_gone(pid)) {
        if (tw_mono_ns() > end)
            return false;
        sleep_ms(5);
    }
    return true;
}

/* Collects reports through the wake fd until `want` arrived or max_s. */
static size_t collect(tw_hook_t *h, tw_hook_report_t *out, size_t want, double max_s)
{
    size_t got = 0;
    int64_t end = tw_mono_ns() + (int64_t)(max_s * 1e9);
    for (;;) {
        got += tw_hook_poll(h, out + got, want - got);
        int64_t left = end - tw_mono_ns();
        if (got >= want || left <= 0)
            return got;
        struct pollfd p = {.fd = tw_hook_wake_fd(h), .events = POLLIN};
        int ms = (int)(left / 1000000 + 1);
        poll(&p, 1, ms > 1000 ? 1000 : ms);
    }
}

static bool readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static tw_hook_opts_t opts_for(const char *const *argv)
{
    tw_hook_opts_t o;
    memset(&o, 0, sizeof o);
    o.freeze_argv = argv;
    o.unfreeze_argv = argv;
    o.backoff_ms = 10;
    o.backoff_max_ms = 40;
    return o;
}

static tw_hook_t *start(const tw_hook_opts_t *o)
{
    tw_hook_t *h = NULL;
    tw_err_t err;
    if (tw_hook_new(&h, o, &err) != 0) {
        fprintf(stderr, "tw_hook_new: %s\n", err.msg);
        tw_die("cannot start the hook runner");
    }
    return h;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, line, n) == 0)
            return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

/* Counts NUL-separated entries of an environ dump that start with prefix. */
static int env_count(const char *env, size_t len, const char *prefix)
{
    int n = 0;
    for (size_t i = 0; i < len; i += strlen(env + i) + 1)
        if (strncmp(env + i, prefix, strlen(prefix)) == 0)
            n++;
    return n;
}

static bool env_has(const char *env, size_t len, const char *entry)
{
    for (size_t i = 0; i < len; i += strlen(env + i) + 1)
        if (strcmp(env + i, entry) == 0)
            return true;
    return false;
}

/* The tw-hook thread's utime+stime in clock ticks, or -1. */
static long runner_ticks(void)
{
    DIR *d = opendir("/proc/self/task");
    long ticks = -1;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[320], *s = NULL;
        size_t n;
        snprintf(p, sizeof p, "/proc/self/task/%s/comm", e->d_name);
        if (tw_read_file(p, &s, &n, NULL) != 0)
            continue;
        bool ours = strcmp(s, "tw-hook\n") == 0;
        free(s);
        if (!ours)
            continue;
        snprintf(p, sizeof p, "/proc/self/task/%s/stat", e->d_name);
        if (tw_read_file(p, &s, &n, NULL) != 0)
            continue;
        /* Fields after "(comm) ": state is 3rd, utime 14th, stime 15th. */
        const char *q = strrchr(s, ')');
        unsigned long ut = 0, st = 0;
        if (q &&
            sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            ticks = (long)(ut + st);
        free(s);
    }
    if (d)
        closedir(d);
    return ticks;
}

/* The tw-hook thread's blocked-signal mask (SigBlk), or 0. */
static unsigned long long runner_sigblk(void)
{
    DIR *d = opendir("/proc/self/task");
    unsigned long long mask = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[320], *s = NULL;
        size_t n;
        snprintf(p, sizeof p, "/proc/self/task/%s/status", e->d_name);
        if (tw_read_file(p, &s, &n, NULL) != 0)
            continue;
        const char *blk = strstr(s, "\nSigBlk:");
        if (strstr(s, "Name:\ttw-hook\n") && blk)
            mask = strtoull(blk + 8, NULL, 16);
        free(s);
    }
    if (d)
        closedir(d);
    return mask;
}

static unsigned long long sigbit(int sig)
{
    return 1ULL << (sig - 1);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_names_and_opts(void)
{
    TW_CHECK_STR(tw_hook_action_name(TW_HOOK_FREEZE), "freeze");
    TW_CHECK_STR(tw_hook_action_name(TW_HOOK_UNFREEZE), "unfreeze");
    TW_CHECK_STR(tw_hook_outcome_name(TW_HOOK_OK), "success");
    TW_CHECK_STR(tw_hook_outcome_name(TW_HOOK_FAILED), "failure");
    TW_CHECK_STR(tw_hook_outcome_name(TW_HOOK_TIMEOUT), "timeout");
    TW_CHECK_STR(tw_hook_outcome_name(TW_HOOK_EXEC_ERROR), "exec_error");
    TW_CHECK_STR(tw_hook_outcome_name(TW_HOOK_DRY_RUN), "dry_run");

    tw_hook_t *h = NULL;
    tw_err_t err;
    const char *rel[] = {"bin/hook", NULL};
    tw_hook_opts_t o = opts_for(rel);
    TW_CHECK_INT(tw_hook_new(&h, &o, &err), -1);
    TW_CHECK(strstr(err.msg, "absolute path") != NULL);
    TW_CHECK(h == NULL);

    const char *empty[] = {NULL};
    o = opts_for(empty);
    TW_CHECK_INT(tw_hook_new(&h, &o, &err), -1);
    TW_CHECK(strstr(err.msg, "non-empty argv") != NULL);

    const char *ok[] = {"/nonexistent/is/fine/here", NULL};
    o = opts_for(ok);
    o.stderr_max = TW_HOOK_STDERR_MAX + 1;
    TW_CHECK_INT(tw_hook_new(&h, &o, &err), -1);
    TW_CHECK(strstr(err.msg, "stderr_max") != NULL);
    o = opts_for(ok);
    o.concurrency = TW_HOOK_CONCURRENCY_MAX + 1;
    TW_CHECK_INT(tw_hook_new(&h, &o, &err), -1);

    /* Children that reap themselves would lose their exit status. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGCHLD, &ign, &old);
    o = opts_for(ok);
    TW_CHECK_INT(tw_hook_new(&h, &o, &err), -1);
    TW_CHECK(strstr(err.msg, "SIGCHLD") != NULL);
    sigaction(SIGCHLD, &old, NULL);

    /* A missing file is not an error here; a missing command is per action. */
    o = opts_for(ok);
    o.unfreeze_argv = NULL;
    TW_CHECK_INT(tw_hook_new(&h, &o, &err), 0);
    TW_CHECK(tw_hook_has_command(h, TW_HOOK_FREEZE));
    TW_CHECK(!tw_hook_has_command(h, TW_HOOK_UNFREEZE));
    uint64_t seq = 99;
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_UNFREEZE, 1, "r", "{}", 2, &seq), -1);
    TW_CHECK_INT(seq, 99);
    TW_CHECK_INT(tw_hook_depth(h), 0);
    tw_hook_free(h);
    tw_hook_free(NULL);
}

static void test_success(void)
{
    char *p = script("ok.sh", "cat > \"$D/ok.in\"; echo 'to stderr' >&2; exit 0");
    const char *argv[] = {p, NULL};
    tw_hook_opts_t o = opts_for(argv);
    tw_hook_t *h = start(&o);
    TW_CHECK(!readable(tw_hook_wake_fd(h)));

    const char payload[] = "{\"token_id\":\"tw_0000000000001234\",\"action\":\"freeze\"}";
    uint64_t seq = 0;
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 0x1234, "impossible_travel", payload,
                                strlen(payload), &seq),
                 0);
    TW_CHECK_INT(seq, 1);
    TW_CHECK_INT(collect(h, reps, 1, 10), 1);
    const tw_hook_report_t *r = &reps[0];
    TW_CHECK_INT(r->seq, seq);
    TW_CHECK_INT(r->token_id, 0x1234);
    TW_CHECK_INT(r->action, TW_HOOK_FREEZE);
    TW_CHECK_INT(r->outcome, TW_HOOK_OK);
    TW_CHECK_INT(r->attempt, 1);
    TW_CHECK(r->final);
    TW_CHECK_INT(r->exit_status, 0);
    TW_CHECK_INT(r->term_signal, 0);
    TW_CHECK_INT(r->error_no, 0);
    TW_CHECK_INT(r->retry_in_ms, 0);
    TW_CHECK(r->duration_s > 0 && r->duration_s < 10);
    TW_CHECK_STR(r->rule, "impossible_travel");
    TW_CHECK_INT(r->stderr_len, 10);
    TW_CHECK(r->stderr_len == 10 && memcmp(r->stderr_tail, "to stderr\n", 10) == 0);
    TW_CHECK_INT(tw_hook_depth(h), 0);
    /* Level-triggered wake fd: clear once the reports are taken. */
    TW_CHECK(!readable(tw_hook_wake_fd(h)));

    size_t n;
    char *in = slurp("ok.in", &n);
    TW_CHECK(in && n == strlen(payload) && memcmp(in, payload, n) == 0);
    free(in);

    /* Two at once: the wake fd stays readable until both are taken. */
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_UNFREEZE, 7, NULL, NULL, 0, &seq), 0);
    TW_CHECK_INT(seq, 2);
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 8, "", "x", 1, &seq), 0);
    TW_CHECK_INT(seq, 3);
    int64_t end = tw_mono_ns() + 10000000000LL;
    while (tw_hook_depth(h) > 0 && tw_mono_ns() < end)
        sleep_ms(5);
    TW_CHECK(readable(tw_hook_wake_fd(h)));
    TW_CHECK_INT(tw_hook_poll(h, reps, 1), 1);
    TW_CHECK(readable(tw_hook_wake_fd(h)));
    TW_CHECK_INT(tw_hook_poll(h, reps + 1, 8), 1);
    TW_CHECK(!readable(tw_hook_wake_fd(h)));
    TW_CHECK(reps[0].outcome == TW_HOOK_OK && reps[1].outcome == TW_HOOK_OK);
    TW_CHECK_INT(reps[0].seq + reps[1].seq, 5);
    TW_CHECK_STR(reps[0].seq == 2 ? reps[0].rule : reps[1].rule, "");
    tw_hook_free(h);
    free(p);
}

static void test_retry_then_success(void)
{
    char *p = script("once.sh", "if [ -e \"$D/once.mark\" ]; then exit 0; fi\n"
                                "touch \"$D/once.mark\"; echo 'first try fails' >&2; exit 3");
    const char *argv[] = {p, NULL};
    tw_hook_opts_t o = opts_for(argv);
    o.backoff_ms = 20;
    tw_hook_t *h = start(&o);
    uint64_t seq;
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 42, "failures", "{}", 2, &seq), 0);
    TW_CHECK_INT(collect(h, reps, 2, 10), 2);
    TW_CHECK_INT(reps[0].seq, seq);
    TW_CHECK_INT(reps[0].outcome, TW_HOOK_FAILED);
    TW_CHECK_INT(reps[0].exit_status, 3);
    TW_CHECK_INT(reps[0].term_signal, 0);
    TW_CHECK_INT(reps[0].attempt, 1);
    TW_CHECK(!reps[0].final);
    TW_CHECK(reps[0].retry_in_ms >= 10 && reps[0].retry_in_ms <= 20);
    TW_CHECK(reps[0].stderr_len == 16 &&
             memcmp(reps[0].stderr_tail, "first try fails\n", 16) == 0);
    TW_CHECK_INT(reps[1].seq, seq);
    TW_CHECK_INT(reps[1].outcome, TW_HOOK_OK);
    TW_CHECK_INT(reps[1].attempt, 2);
    TW_CHECK(reps[1].final);
    TW_CHECK_INT(reps[1].stderr_len, 0);
    TW_CHECK_INT(tw_hook_depth(h), 0);
    TW_CHECK_INT(tw_hook_poll(h, reps, 8), 0);
    tw_hook_free(h);
    free(p);
}

static void test_always_failing(void)
{
    char *p = script("fail.sh", "exit 7");
    char *k = script("selfkill.sh", "kill -KILL $$");
    const char *argv[] = {p, NULL}, *kargv[] = {k, NULL};
    tw_hook_opts_t o = opts_for(argv);
    o.unfreeze_argv = kargv;
    o.max_attempts = 3;
    o.backoff_ms = 10;
    o.backoff_max_ms = 15;
    tw_hook_t *h = start(&o);
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 1, "r", NULL, 0, NULL), 0);
    TW_CHECK_INT(tw_hook_depth(h), 1);
    TW_CHECK_INT(collect(h, reps, 1, 10), 1);
    /* Waiting for its retry: still accepted. */
    TW_CHECK_INT(tw_hook_depth(h), 1);
    TW_CHECK_INT(collect(h, reps + 1, 2, 10), 2);
    for (unsigned i = 0; i < 3; i++) {
        TW_CHECK_INT(reps[i].outcome, TW_HOOK_FAILED);
        TW_CHECK_INT(reps[i].exit_status, 7);
        TW_CHECK_INT(reps[i].attempt, i + 1);
        TW_CHECK_INT(reps[i].final, i == 2);
        TW_CHECK_INT(reps[i].seq, 1);
    }
    /* 10 ms, then 20 ms capped at 15, each drawn from [d/2, d]. */
    TW_CHECK(reps[0].retry_in_ms >= 5 && reps[0].retry_in_ms <= 10);
    TW_CHECK(reps[1].retry_in_ms >= 7 && reps[1].retry_in_ms <= 15);
    TW_CHECK_INT(reps[2].retry_in_ms, 0);
    TW_CHECK_INT(tw_hook_depth(h), 0);
    TW_CHECK_INT(collect(h, reps, 1, 0.05), 0); /* nothing after the final one */

    /* Killed by a signal we did not send: a failure, not a timeout. */
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_UNFREEZE, 2, "r", NULL, 0, NULL), 0);
    TW_CHECK_INT(collect(h, reps, 3, 10), 3);
    TW_CHECK_INT(reps[0].outcome, TW_HOOK_FAILED);
    TW_CHECK_INT(reps[0].exit_status, -1);
    TW_CHECK_INT(reps[0].term_signal, SIGKILL);
    TW_CHECK(reps[2].final && reps[2].attempt == 3);
    tw_hook_free(h);
    free(p);
    free(k);
}

static void test_timeout(void)
{
    /* hang1: the hook and its grandchild obey SIGTERM; the grandchild gets
     * its grace period too (it takes 0.1 s to clean up) and says so. hang2: both ignore
     * SIGTERM, only the SIGKILL after the grace period ends them. hang3: the hook dies on
     * SIGTERM, its grandchild ignores it and closed stderr: the SIGKILL sent
     * to the group before the leader is reaped ends it. */
    char *g1 = script("gc1.sh", "trap 'sleep 0.1; echo term > \"$D/gc1.term\"; exit 0' TERM\n"
                                "echo $$ > \"$D/gc1.pid\"\nsleep 1000 &\nwait");
    char *p1 = script("hang1.sh", "\"$D/gc1.sh\" &\necho $$ > \"$D/h1.pid\"\nwait");
    char *p2 = script("hang2.sh", "trap '' TERM\nsleep 1000 & echo $! > \"$D/gc2.pid\"\n"
                                  "echo $$ > \"$D/h2.pid\"\nwait");
    char *p3 = script("hang3.sh", "(trap '' TERM; exec sleep 1000) 2>/dev/null &\n"
                                  "echo $! > \"$D/gc3.pid\"\necho $$ > \"$D/h3.pid\"\nwait");
    const char *a1[] = {p1, NULL}, *a2[] = {p2, NULL}, *a3[] = {p3, NULL};
    tw_hook_opts_t o = opts_for(a1);
    o.unfreeze_argv = a2;
    o.timeout_ms = 500;
    o.kill_grace_ms = 300;
    o.max_attempts = 1;
    tw_hook_t *h = start(&o);

    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 1, "t", NULL, 0, NULL), 0);
    pid_t hook1 = read_pid("h1.pid"), gc1 = read_pid("gc1.pid");
    TW_CHECK(hook1 > 0 && gc1 > 0);
    /* While the hook hangs the runner sleeps in poll(): no busy loop. */
    long t0 = runner_ticks();
    sleep_ms(300);
    long t1 = runner_ticks();
    TW_CHECK(t0 >= 0 && t1 >= 0);
    TW_CHECK(t1 - t0 <= 5);
    TW_CHECK_INT(collect(h, reps, 1, 10), 1);
    TW_CHECK_INT(reps[0].outcome, TW_HOOK_TIMEOUT);
    TW_CHECK_INT(reps[0].term_signal, SIGTERM);
    TW_CHECK_INT(reps[0].exit_status, -1);
    TW_CHECK(reps[0].final);
    TW_CHECK(reps[0].duration_s >= 0.5);
    TW_CHECK(hook1 > 0 && wait_gone(hook1, 5));
    TW_CHECK(gc1 > 0 && wait_gone(gc1, 5));
    TW_CHECK(exists("gc1.term"));

    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_UNFREEZE, 2, "t", NULL, 0, NULL), 0);
    pid_t hook2 = read_pid("h2.pid"), gc2 = read_pid("gc2.pid");
    TW_CHECK(hook2 > 0 && gc2 > 0);
    TW_CHECK_INT(collect(h, reps, 1, 10), 1);
    TW_CHECK_INT(reps[0].outcome, TW_HOOK_TIMEOUT);
    TW_CHECK_INT(reps[0].term_signal, SIGKILL);
    TW_CHECK(reps[0].duration_s >= 0.8);
    TW_CHECK(hook2 > 0 && wait_gone(hook2, 5));
    TW_CHECK(gc2 > 0 && wait_gone(gc2, 5));
    tw_hook_free(h);

    o = opts_for(a3);
    o.timeout_ms = 300;
    o.kill_grace_ms = 10000; /* the test would notice waiting for this */
    o.max_attempts = 1;
    h = start(&o);
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 3, "t", NULL, 0, NULL), 0);
    pid_t hook3 = read_pid("h3.pid"), gc3 = read_pid("gc3.pid");
    TW_CHECK(hook3 > 0 && gc3 > 0);
    TW_CHECK_INT(collect(h, reps, 1, 5), 1);
    TW_CHECK_INT(reps[0].outcome, TW_HOOK_TIMEOUT);
    TW_CHECK_INT(reps[0].term_signal, SIGTERM);
    TW_CHECK(hook3 > 0 && wait_gone(hook3, 5));
    TW_CHECK(gc3 > 0 && wait_gone(gc3, 5));
    tw_hook_free(h);
    free(g1);
    free(p1);
    free(p2);
    free(p3);
}

static void test_exec_error(void)
{
    char *missing = tpath("no-such-hook");
    char *noexec = tpath("not-executable.sh");
    write_file(noexec, "#!/bin/sh\nexit 0\n", 17, 0644);
    const char *a1[] = {missing, NULL}, *a2[] = {noexec, NULL};
    tw_hook_opts_t o = opts_for(a1);
    o.unfreeze_argv = a2;
    o.max_attempts = 2;
    tw_hook_t *h = start(&o);
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 1, "e", "{}", 2, NULL), 0);
    TW_CHECK_INT(collect(h, reps, 2, 10), 2);
    for (int i = 0; i < 2; i++) {
        TW_CHECK_INT(reps[i].outcome, TW_HOOK_EXEC_ERROR);
        TW_CHECK_INT(reps[i].error_no, ENOENT);
        TW_CHECK_INT(reps[i].exit_status, -1);
        TW_CHECK_INT(reps[i].term_signal, 0);
        TW_CHECK_INT(reps[i].attempt, i + 1);
    }
    TW_CHECK(!reps[0].final && reps[1].final);
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_UNFREEZE, 2, "e", NULL, 0, NULL), 0);
    TW_CHECK_INT(collect(h, reps, 2, 10), 2);
    TW_CHECK_INT(reps[0].outcome, TW_HOOK_EXEC_ERROR);
    TW_CHECK_INT(reps[0].error_no, EACCES);
    TW_CHECK(reps[1].final);
    TW_CHECK_INT(tw_hook_depth(h), 0);
    tw_hook_free(h);
    free(missing);
    free(noexec);
}

static void test_flood(void)
{
    char *p = script("slow.sh", "touch \"$D/started.$TOKENWATCH_TOKEN_ID\"\n"
                                "while [ ! -e \"$D/release\" ]; do sleep 0.02; done");
    const char *argv[] = {p, NULL};
    tw_hook_opts_t o = opts_for(argv);
    o.queue_max = 8;
    o.concurrency = 2;
    tw_hook_t *h = start(&o);
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 1, "f", "{}", 2, NULL), 0);
    TW_CHECK(wait_file("started.tw_0000000000000001", 10));
    /* The first hook runs (and cannot finish before "release"): every
     * further submit returns at once, accepted or refused. */
    int accepted = 1, refused = 0;
    for (uint64_t i = 2; i <= 3 * 8; i++) {
        if (tw_hook_submit(h, TW_HOOK_FREEZE, i, "f", "{}", 2, NULL) == 0)
            accepted++;
        else
            refused++;
    }
    TW_CHECK_INT(accepted, 8);
    TW_CHECK_INT(refused, 16);
    TW_CHECK_INT(tw_hook_depth(h), 8);
    TW_CHECK_INT(tw_hook_poll(h, reps, 64), 0);
    TW_CHECK(!exists("release"));
    char *rel = tpath("release");
    write_file(rel, "", 0, 0644);
    TW_CHECK_INT(collect(h, reps, 8, 20), 8);
    uint64_t seqsum = 0;
    int ok = 0;
    for (int i = 0; i < 8; i++) {
        seqsum += reps[i].seq;
        ok += reps[i].outcome == TW_HOOK_OK;
    }
    TW_CHECK_INT(ok, 8);
    TW_CHECK_INT(seqsum, 36); /* 1..8: the refused ones took no number */
    TW_CHECK_INT(tw_hook_depth(h), 0);
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 99, "f", "{}", 2, NULL), 0);
    TW_CHECK_INT(collect(h, reps, 1, 10), 1);
    tw_hook_free(h);
    free(rel);
    free(p);
}

static void test_concurrency(void)
{
    char *p =
        script("conc.sh", "echo S >> \"$D/conc.log\"; sleep 0.2; echo E >> \"$D/conc.log\"");
    const char *argv[] = {p, NULL};
    tw_hook_opts_t o = opts_for(argv);
    o.concurrency = 2;
    tw_hook_t *h = start(&o);
    for (uint64_t i = 1; i <= 6; i++)
        TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, i, "c", NULL, 0, NULL), 0);
    TW_CHECK_INT(collect(h, reps, 6, 20), 6);
    char *log = slurp("conc.log", NULL);
    int live = 0, max = 0, starts = 0, ends = 0;
    for (const char *q = log; q && *q; q++) {
        if (*q == 'S') {
            starts++;
            if (++live > max)
                max = live;
        } else if (*q == 'E') {
            ends++;
            live--;
        }
    }
    TW_CHECK_INT(starts, 6);
    TW_CHECK_INT(ends, 6);
    TW_CHECK_INT(max, 2); /* never more than the limit, and the limit is used */
    free(log);
    tw_hook_free(h);
    free(p);
}

static void test_dry_run(void)
{
    char *p = script("dry.sh", "touch \"$D/dry.ran\"");
    const char *argv[] = {p, NULL};
    tw_hook_opts_t o = opts_for(argv);
    o.unfreeze_argv = NULL;
    o.dry_run = true;
    o.queue_max = 4;
    tw_hook_t *h = start(&o);
    TW_CHECK(tw_hook_has_command(h, TW_HOOK_FREEZE));
    /* A dry run records either action, configured or not. */
    TW_CHECK(tw_hook_has_command(h, TW_HOOK_UNFREEZE));
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_UNFREEZE, 99, "d", "{}", 2, NULL), 0);
    int64_t until = tw_mono_ns() + 10000000000LL;
    while (tw_hook_depth(h) > 0 && tw_mono_ns() < until)
        sleep_ms(2);
    tw_hook_report_t ur;
    TW_CHECK_INT(tw_hook_poll(h, &ur, 1), 1);
    TW_CHECK(ur.action == TW_HOOK_UNFREEZE && ur.outcome == TW_HOOK_DRY_RUN && ur.final);
    TW_CHECK_INT(ur.token_id, 99);
    for (uint64_t i = 1; i <= 4; i++)
        TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, i, "dry rule", "{}", 2, NULL), 0);
    int64_t end = tw_mono_ns() + 10000000000LL;
    while (tw_hook_depth(h) > 0 && tw_mono_ns() < end)
        sleep_ms(2);
    TW_CHECK_INT(tw_hook_depth(h), 0);
    /* queue_max reports wait unread: the next job is accepted but not
     * run until the caller polls, so memory stays bounded. */
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 5, "dry rule", "{}", 2, NULL), 0);
    sleep_ms(100);
    TW_CHECK_INT(tw_hook_depth(h), 1);
    TW_CHECK_INT(tw_hook_poll(h, reps, 64), 4);
    TW_CHECK_INT(collect(h, reps + 4, 1, 10), 1);
    for (int i = 0; i < 5; i++) {
        TW_CHECK_INT(reps[i].outcome, TW_HOOK_DRY_RUN);
        TW_CHECK(reps[i].final);
        TW_CHECK_INT(reps[i].attempt, 1);
        TW_CHECK_INT(reps[i].seq, i + 2);   /* seq 1 was the unfreeze */
        TW_CHECK_INT(reps[i].token_id, i + 1);
        TW_CHECK_INT(reps[i].exit_status, -1);
        TW_CHECK(reps[i].duration_s == 0);
        TW_CHECK_STR(reps[i].rule, "dry_rule");
    }
    tw_hook_free(h);
    TW_CHECK(!exists("dry.ran"));
    free(p);
}

static void test_env(void)
{
    char *p = script("env.sh", "cat /proc/$$/environ > \"$D/env.bin\"");
    const char *argv[] = {p, NULL};
    tw_hook_opts_t o = opts_for(argv);
    setenv("VAULT_ADDR", "http://127.0.0.1:8200", 1);
    setenv("VAULT_TOKEN", "s.vault-token-for-the-hook", 1);
    setenv("TOKENWATCH_ACTION", "bogus", 1);
    setenv("TOKENWATCH_WEBHOOK_URL", "http://passes.example/", 1);
    tw_hook_t *h = start(&o);
    unsetenv("VAULT_ADDR");
    unsetenv("VAULT_TOKEN");
    unsetenv("TOKENWATCH_ACTION");
    unsetenv("TOKENWATCH_WEBHOOK_URL");

    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_UNFREEZE, 0xdeadbeefULL, "geo new;rm -rf /\n$(x)",
                                "{}", 2, NULL),
                 0);
    TW_CHECK_INT(collect(h, reps, 1, 10), 1);
    TW_CHECK_INT(reps[0].outcome, TW_HOOK_OK);
    TW_CHECK_STR(reps[0].rule, "geo_new_rm_-rf_____x_");
    size_t n;
    char *env = slurp("env.bin", &n);
    TW_CHECK(env != NULL);
    if (env) {
        TW_CHECK(env_has(env, n, "VAULT_ADDR=http://127.0.0.1:8200"));
        TW_CHECK(env_has(env, n, "VAULT_TOKEN=s.vault-token-for-the-hook"));
        TW_CHECK(env_has(env, n, "TOKENWATCH_ACTION=unfreeze"));
        TW_CHECK(env_has(env, n, "TOKENWATCH_TOKEN_ID=tw_00000000deadbeef"));
        TW_CHECK(env_has(env, n, "TOKENWATCH_RULE=geo_new_rm_-rf_____x_"));
        TW_CHECK_INT(env_count(env, n, "TOKENWATCH_ACTION="), 1);
        /* The three per-call names are replaced; a hook's own setting passes. */
        TW_CHECK_INT(env_count(env, n, "TOKENWATCH_"), 4);
        TW_CHECK(env_has(env, n, "TOKENWATCH_WEBHOOK_URL=http://passes.example/"));
    }
    free(env);

    char long_rule[101];
    memset(long_rule, 'a', 100);
    long_rule[100] = '\0';
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 1, long_rule, NULL, 0, NULL), 0);
    TW_CHECK_INT(collect(h, reps, 1, 10), 1);
    TW_CHECK_INT(strlen(reps[0].rule), 63);
    env = slurp("env.bin", &n);
    TW_CHECK(env && env_has(env, n, "TOKENWATCH_ACTION=freeze"));
    TW_CHECK(env && env_count(env, n,
                              "TOKENWATCH_RULE=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                              "aaaaaaaaaaaaaaaaaaaa") == 1);
    free(env);
    tw_hook_free(h);
    free(p);
}

static void test_fd_hygiene(void)
{
    /* $(...): dash applies a redirection in the shell itself, around the command. */
    char *p = script("fds.sh", "X=$(readlink /proc/$$/fd/1); echo \"$X\" > \"$D/stdout.txt\"\n"
                               "ls /proc/self/fd > \"$D/fds.txt\"");
    const char *argv[] = {p, NULL};
    /* Descriptors the test process holds without O_CLOEXEC. */
    int leak = open("/dev/null", O_RDONLY);
    int pfd[2];
    TW_CHECK_INT(pipe(pfd), 0);
    TW_CHECK_INT(dup2(leak, 40), 40);
    TW_CHECK_INT(fcntl(40, F_GETFD) & FD_CLOEXEC, 0);
    tw_hook_opts_t o = opts_for(argv);
    tw_hook_t *h = start(&o);
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 1, "fd", "{}", 2, NULL), 0);
    TW_CHECK_INT(collect(h, reps, 1, 10), 1);
    TW_CHECK_INT(reps[0].outcome, TW_HOOK_OK);
    char *fds = slurp("fds.txt", NULL);
    /* 0, 1, 2 and the directory ls itself opened (the lowest free: 3). */
    TW_CHECK_STR(fds, "0\n1\n2\n3\n");
    free(fds);
    char *out = slurp("stdout.txt", NULL);
    TW_CHECK_STR(out, "/dev/null\n");
    free(out);
    tw_hook_free(h);
    close(40);
    close(leak);
    close(pfd[0]);
    close(pfd[1]);
    free(p);
}

static void test_signal_state(void)
{
    /* Builtins only: dash blocks every signal of its own while it vforks a
     * command, so the shell reads its own status without starting one. */
    char *p =
        script("sig.sh", "while IFS= read -r l; do case \"$l\" in Sig*) echo \"$l\";; esac\n"
                         "done < /proc/$$/status > \"$D/sig.txt\"");
    const char *argv[] = {p, NULL};
    /* What a daemon does: SIGPIPE ignored, SIGUSR1 ignored, SIGUSR2 blocked. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe, old_usr1;
    sigaction(SIGPIPE, &ign, &old_pipe);
    sigaction(SIGUSR1, &ign, &old_usr1);
    sigset_t usr2, old_mask;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, &old_mask);
    tw_hook_opts_t o = opts_for(argv);
    tw_hook_t *h = start(&o);

    /* The runner thread blocks every signal the daemon handles. */
    unsigned long long blk = runner_sigblk();
    int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE, SIGUSR1, SIGALRM, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        TW_CHECK(blk & sigbit(sigs[i]));

    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 1, "s", NULL, 0, NULL), 0);
    TW_CHECK_INT(collect(h, reps, 1, 10), 1);
    TW_CHECK_INT(reps[0].outcome, TW_HOOK_OK);
    char *s = slurp("sig.txt", NULL);
    TW_CHECK(s && has_line(s, "SigBlk:\t0000000000000000"));
    TW_CHECK(s && has_line(s, "SigIgn:\t0000000000000000"));
    free(s);
    tw_hook_free(h);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    free(p);
}

static void test_hostile_stdin(void)
{
    char *p = script("hostile.sh", "cat > \"$D/stdin.bin\"\n"
                                   "cat /proc/$$/cmdline > \"$D/cmdline.bin\"\n"
                                   "cat /proc/$$/environ > \"$D/environ.bin\"");
    char *q = script("noread.sh", "exit 0");
    const char *argv[] = {p, NULL}, *qargv[] = {q, NULL};
    tw_hook_opts_t o = opts_for(argv);
    o.unfreeze_argv = qargv;
    tw_hook_t *h = start(&o);

    char *pwn = tw_xasprintf("%s/pwned", dir);
    char *head = tw_xasprintf("{\"token\":\"HOSTILE_MARK a\\\"b\\\\c $(touch %s) `touch %s2`"
                              " ; rm -rf / #\\n\nline2 \xff\xfe\xc0\x80 \x01\"",
                              pwn, pwn);
    size_t len = strlen(head) + 10 * 1024 + 3;
    char *payload = tw_xmalloc(len);
    memcpy(payload, head, strlen(head));
    for (size_t i = strlen(head); i < len - 3; i++)
        payload[i] = (char)('A' + i % 26);
    memcpy(payload + len - 3, "\0}\n", 3); /* even a NUL byte goes through */

    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 5, "rule $(touch x)", payload, len, NULL),
                 0);
    TW_CHECK_INT(collect(h, reps, 1, 10), 1);
    TW_CHECK_INT(reps[0].outcome, TW_HOOK_OK);
    size_t n;
    char *got = slurp("stdin.bin", &n);
    TW_CHECK_INT(n, len);
    TW_CHECK(got && n == len && memcmp(got, payload, len) == 0);
    free(got);
    const char *dumps[] = {"cmdline.bin", "environ.bin"};
    for (int i = 0; i < 2; i++) {
        char *d = slurp(dumps[i], &n);
        TW_CHECK(d != NULL && n > 0);
        if (d) {
            TW_CHECK(memmem(d, n, "HOSTILE_MARK", 12) == NULL);
            TW_CHECK(memmem(d, n, "$(touch", 7) == NULL);
            TW_CHECK(memmem(d, n, "`touch", 6) == NULL);
            TW_CHECK(memmem(d, n, "rm -rf", 6) == NULL);
            TW_CHECK(memmem(d, n, "\xff\xfe", 2) == NULL);
            TW_CHECK(memmem(d, n, "ABCDEFGHIJ", 10) == NULL);
        }
        free(d);
    }
    TW_CHECK(!exists("pwned") && !exists("pwned2"));

    /* A hook that never reads its stdin (1 MB, more than a pipe holds):
     * EPIPE is not an error, and SIGPIPE (default here) kills nobody. */
    size_t big = 1 << 20;
    char *blob = tw_xcalloc(1, big);
    TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_UNFREEZE, 6, "n", blob, big, NULL), 0);
    TW_CHECK_INT(collect(h, reps, 1, 10), 1);
    TW_CHECK_INT(reps[0].outcome, TW_HOOK_OK);
    free(blob);
    tw_hook_free(h);
    free(payload);
    free(head);
    free(pwn);
    free(p);
    free(q);
}

static void test_stderr_tail(void)
{
    size_t len = 100 * 1024;
    char *pat = tw_xmalloc(len);
    for (size_t i = 0; i < len; i++)
        pat[i] = (char)((i * 7 + i / 251) & 0xff); /* raw bytes, not text */
    char *pp = tpath("pattern.bin");
    write_file(pp, pat, len, 0644);
    char *p = script("chatty.sh", "cat \"$D/pattern.bin\" >&2; cat \"$D/pattern.bin\" >&2\n"
                                  "cat \"$D/pattern.bin\" >&2; echo done > \"$D/chatty.done\"");
    const char *argv[] = {p, NULL};
    size_t maxes[] = {0, 1000, TW_HOOK_STDERR_MAX};
    size_t want[] = {1024, 1000, TW_HOOK_STDERR_MAX};
    for (int i = 0; i < 3; i++) {
        tw_hook_opts_t o = opts_for(argv);
        o.stderr_max = maxes[i];
        o.timeout_ms = 10000;
        tw_hook_t *h = start(&o);
        TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, 1, "e", NULL, 0, NULL), 0);
        TW_CHECK_INT(collect(h, reps, 1, 15), 1);
        /* 300 KB through a 64 KB pipe: it finished, so it never blocked. */
        TW_CHECK_INT(reps[0].outcome, TW_HOOK_OK);
        TW_CHECK_INT(reps[0].stderr_len, want[i]);
        TW_CHECK(reps[0].stderr_len == want[i] &&
                 memcmp(reps[0].stderr_tail, pat + len - want[i], want[i]) == 0);
        tw_hook_free(h);
    }
    TW_CHECK(exists("chatty.done"));
    free(pat);
    free(pp);
    free(p);
}

static void test_free_kills_running(void)
{
    char *p = script("stuck.sh",
                     "[ \"$TOKENWATCH_TOKEN_ID\" = tw_0000000000000002 ] && trap '' TERM\n"
                     "sleep 1000 & echo $! > \"$D/fgc.$TOKENWATCH_TOKEN_ID\"\n"
                     "echo $$ > \"$D/fh.$TOKENWATCH_TOKEN_ID\"\nwait");
    const char *argv[] = {p, NULL};
    tw_hook_opts_t o = opts_for(argv);
    o.concurrency = 2;
    o.kill_grace_ms = 300;
    tw_hook_t *h = start(&o);
    for (uint64_t i = 1; i <= 3; i++) /* the third waits for a slot */
        TW_CHECK_INT(tw_hook_submit(h, TW_HOOK_FREEZE, i, "k", "{}", 2, NULL), 0);
    pid_t h1 = read_pid("fh.tw_0000000000000001"), g1 = read_pid("fgc.tw_0000000000000001");
    pid_t h2 = read_pid("fh.tw_0000000000000002"), g2 = read_pid("fgc.tw_0000000000000002");
    TW_CHECK(h1 > 0 && g1 > 0 && h2 > 0 && g2 > 0);
    TW_CHECK_INT(tw_hook_depth(h), 3);
    tw_hook_free(h);
    /* Every hook was reaped by the runner: no child of ours is left,
     * zombie or not, and neither hook nor grandchild lives on. */
    int st;
    errno = 0;
    TW_CHECK_INT(waitpid(-1, &st, WNOHANG), -1);
    TW_CHECK_INT(errno, ECHILD);
    TW_CHECK(h1 > 0 && kill(h1, 0) != 0 && errno == ESRCH);
    TW_CHECK(h2 > 0 && kill(h2, 0) != 0 && errno == ESRCH);
    TW_CHECK(g1 > 0 && wait_gone(g1, 5));
    TW_CHECK(g2 > 0 && wait_gone(g2, 5));
    TW_CHECK(!exists("fh.tw_0000000000000003"));
    free(p);
}

int main(void)
{
    tw_log_setup(getenv("TW_TEST_VERBOSE") ? TW_LOG_DEBUG : TW_LOG_WARN, TW_LOG_PLAIN);
    if (!mkdtemp(dir))
        tw_die("mkdtemp: %s", strerror(errno));

    test_names_and_opts();
    test_success();
    test_retry_then_success();
    test_always_failing();
    test_timeout();
    test_exec_error();
    test_flood();
    test_concurrency();
    test_dry_run();
    test_env();
    test_fd_hygiene();
    test_signal_state();
    test_hostile_stdin();
    test_stderr_tail();
    test_free_kills_running();

    if (!getenv("TW_TEST_KEEP") && tw_test_rmtree(dir) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return tw_test_done();
}
