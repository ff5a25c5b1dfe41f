/*
 * test_tail.c — unit tests for the tail -F follower.
 *
 * Every scenario runs twice, with inotify and with stat polling only, in a
 * fresh mkdtemp directory under /tmp that is removed afterwards. Scenarios
 * count the exact lines delivered (joined into one string, so a lost,
 * duplicated, reordered or split line shows up as a text mismatch) and the
 * exact on_skip/on_rotate events.
 *
 * Waiting: tw_tail_poll is synchronous, so WAIT_FOR polls until a condition
 * holds or a deadline passes; SETTLE polls until a poll reads nothing, after
 * which counts are checked exactly (a late duplicate would have been read).
 * rotate_wait is kept small so drained files close quickly. No fixed sleep
 * decides correctness.
 */
#include "tail.h"

#include "log.h"
#include "tw_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEADLINE_NS (10LL * 1000000000LL)
#define MS 1000000LL

/* ---- what a handler saw -------------------------------------------------- */

typedef struct sink {
    char *text;   /* every line followed by '\n' */
    size_t len, cap;
    size_t lines;
    unsigned skips[TW_SKIP__COUNT];
    unsigned rotates[TW_ROTATE__COUNT];
    unsigned errors[TW_TAIL_ERR__COUNT];
    /* Lines handed out since the last on_lines_done, by pointer: they must
     * still hold their bytes (the copy at text + at) when it comes. */
    struct {
        const char *p;
        size_t len, at;
    } *pend;
    size_t npend, pend_cap;
    size_t done_calls;
} sink_t;

static void on_line(void *ctx, const char *line, size_t len)
{
    sink_t *s = ctx;
    TW_CHECK(line != NULL);
    if (s->len + len + 2 > s->cap) {
        s->cap = (s->len + len + 2) * 2;
        s->text = realloc(s->text, s->cap);
        if (!s->text)
            abort();
    }
    if (s->npend == s->pend_cap) {
        s->pend_cap = s->pend_cap ? 2 * s->pend_cap : 64;
        s->pend = realloc(s->pend, s->pend_cap * sizeof *s->pend);
        if (!s->pend)
            abort();
    }
    s->pend[s->npend].p = line;
    s->pend[s->npend].len = len;
    s->pend[s->npend++].at = s->len;
    memcpy(s->text + s->len, line, len);
    s->len += len;
    s->text[s->len++] = '\n';
    s->text[s->len] = '\0';
    s->lines++;
}

static void on_skip(void *ctx, tw_skip_t why)
{
    sink_t *s = ctx;
    TW_CHECK((int)why >= 0 && why < TW_SKIP__COUNT);
    s->skips[why]++;
}

static void on_rotate(void *ctx, tw_rotation_t kind)
{
    sink_t *s = ctx;
    TW_CHECK((int)kind >= 0 && kind < TW_ROTATE__COUNT);
    s->rotates[kind]++;
}

static void on_error(void *ctx, tw_tail_error_t kind)
{
    sink_t *s = ctx;
    TW_CHECK((int)kind >= 0 && kind < TW_TAIL_ERR__COUNT);
    s->errors[kind]++;
}

static void on_lines_done(void *ctx)
{
    sink_t *s = ctx;
    for (size_t i = 0; i < s->npend; i++)
        TW_CHECK(memcmp(s->pend[i].p, s->text + s->pend[i].at, s->pend[i].len) == 0);
    s->npend = 0;
    s->done_calls++;
}

static const tw_tail_handler_t handler = {on_line, on_skip, on_rotate, on_error, on_lines_done};

static const char *text(const sink_t *s)
{
    return s->text ? s->text : "";
}

static void sink_free(sink_t *s)
{
    /* Every line handed out was followed by on_lines_done (when the
     * handler has one) while its bytes were intact. */
    TW_CHECK(s->npend == 0 || s->done_calls == 0);
    free(s->text);
    free(s->pend);
    memset(s, 0, sizeof *s);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- files --------------------------------------------------------------- */

static char root[64];

static void path_of(char *out, const char *name)
{
    snprintf(out, PATH_MAX, "%s/%s", root, name);
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) {
            perror("write");
            exit(2);
        }
        s += w;
        n -= (size_t)w;
    }
}

static void write_file(const char *path, const char *s, int flags)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0600);
    if (fd < 0) {
        perror(path);
        exit(2);
    }
    write_all(fd, s, strlen(s));
    close(fd);
}

static void append(const char *path, const char *s)
{
    write_file(path, s, O_APPEND);
}

/* Replaces the content but keeps the inode (as copytruncate does). */
static void overwrite(const char *path, const char *s)
{
    write_file(path, s, O_TRUNC);
}

static int open_writer(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
        perror(path);
        exit(2);
    }
    return fd;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/tw_tail_test_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void teardown(void)
{
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- tail helpers -------------------------------------------------------- */

static tw_tail_t *make_tail(bool inotify, int rotate_wait_ms, size_t block, size_t budget,
                            size_t max_line)
{
    tw_tail_opts_t o;
    tw_tail_opts_default(&o);
    o.use_inotify = inotify;
    o.rotate_wait_ms = rotate_wait_ms;
    if (block)
        o.block = block;
    if (budget)
        o.poll_budget = budget;
    if (max_line)
        o.max_line = max_line;
    tw_err_t err;
    tw_tail_t *t = tw_tail_new(&o, &err);
    if (!t) {
        fprintf(stderr, "tw_tail_new: %s\n", err.msg);
        exit(2);
    }
    return t;
}

static void add(tw_tail_t *t, const char *name, const char *path, bool from_start,
                const tw_tail_pos_t *saved, size_t nsaved, sink_t *s)
{
    tw_err_t err;
    int rc = tw_tail_add(t, name, path, from_start, saved, nsaved, &handler, s, &err);
    TW_CHECK_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "tw_tail_add: %s\n", err.msg);
}

static size_t npos(tw_tail_t *t, const char *name)
{
    tw_tail_pos_t p[TW_TAIL_MAX_FILES];
    return tw_tail_positions(t, name, p, TW_TAIL_MAX_FILES);
}

/* Polls (sleeping in tw_tail_wait between idle polls) until cond holds. */
#define WAIT_FOR(t, cond)                                                     \
    do {                                                                      \
        int64_t dl_ = tw_mono_ns() + DEADLINE_NS;                             \
        bool ok_;                                                             \
        while (!(ok_ = (cond)) && tw_mono_ns() < dl_) {                       \
            if (tw_tail_poll(t) == 0)                                         \
                tw_tail_wait((t), 5);                                         \
        }                                                                     \
        if (!ok_)                                                             \
            fprintf(stderr, "%s:%d: timed out waiting for %s\n", __FILE__,   \
                    __LINE__, #cond);                                         \
        TW_CHECK(ok_);                                                        \
    } while (0)

/* Polls until a poll reads nothing: whatever was written has been read. */
static void settle(tw_tail_t *t)
{
    int64_t dl = tw_mono_ns() + DEADLINE_NS;
    while (tw_tail_poll(t) > 0 && tw_mono_ns() < dl)
        ;
}

/* Reads data written up to now, then checks the exact transcript. */
#define EXPECT_TEXT(t, s, expected)                                           \
    do {                                                                      \
        const char *e_ = (expected);                                          \
        WAIT_FOR(t, (s)->lines >= count_lines(e_));                           \
        settle(t);                                                            \
        TW_CHECK_STR(text(s), e_);                                            \
    } while (0)

#define EXPECT_EVENTS(s, ren, trunc, del, too_long, partial)                  \
    do {                                                                      \
        TW_CHECK_INT((s)->rotates[TW_ROTATE_RENAME], ren);                    \
        TW_CHECK_INT((s)->rotates[TW_ROTATE_TRUNCATE], trunc);                \
        TW_CHECK_INT((s)->rotates[TW_ROTATE_DELETE], del);                    \
        TW_CHECK_INT((s)->skips[TW_SKIP_TOO_LONG], too_long);                 \
        TW_CHECK_INT((s)->skips[TW_SKIP_PARTIAL], partial);                   \
    } while (0)

/* Everything written to stderr (the logger) between start and end. */
static int capture_start(const char *file)
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (saved < 0 || fd < 0) {
        perror("capture");
        exit(2);
    }
    dup2(fd, STDERR_FILENO);
    close(fd);
    return saved;
}

static char *capture_end(int saved, const char *file)
{
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *out = NULL;
    size_t n;
    if (tw_read_file(file, &out, &n, NULL) != 0)
        out = tw_xstrdup("");
    return out;
}

/* ---- scenarios ----------------------------------------------------------- */

/* Where reading starts for a file that exists when the input is added. */
static void test_start_positions(bool inotify)
{
    static char long_partial[64], long_line[80];
    snprintf(long_partial, sizeof long_partial, "ok\n%s",
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    snprintf(long_line, sizeof long_line, "a\n%s\nb\n", "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
    const struct {
        const char *name;
        const char *initial;
        bool from_start;
        const char *appended;
        const char *expect;
        unsigned too_long;
    } cases[] = {
        {"end", "l1\nl2\n", false, "l3\n", "l3\n", 0},
        {"beginning", "l1\nl2\n", true, "l3\n", "l1\nl2\nl3\n", 0},
        {"end, line being written is read whole", "l1\npar", false, "tial\n", "partial\n", 0},
        {"end, empty file", "", false, "x\n", "x\n", 0},
        {"end, no newline at all", "nonl", false, "\nnext\n", "nonl\nnext\n", 0},
        {"end, over-long line being written", long_partial, false, "\nafter\n", "after\n", 1},
        {"beginning, over-long line", long_line, true, "c\n", "a\nb\nc\n", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[PATH_MAX], name[32];
        snprintf(name, sizeof name, "start%zu.log", i);
        path_of(path, name);
        overwrite(path, cases[i].initial);
        tw_tail_t *t = make_tail(inotify, 50, 7, 0, 16);
        sink_t s = {0};
        add(t, "in", path, cases[i].from_start, NULL, 0, &s);
        settle(t);
        append(path, cases[i].appended);
        int before = tw_test_fail;
        EXPECT_TEXT(t, &s, cases[i].expect);
        EXPECT_EVENTS(&s, 0, 0, 0, cases[i].too_long, 0);
        TW_CHECK(s.done_calls > 0 && s.npend == 0);   /* every block's lines done */
        TW_CHECK_INT(tw_tail_lag_bytes(t, "in"), 0);
        if (tw_test_fail != before)
            fprintf(stderr, "  in case \"%s\"\n", cases[i].name);
        tw_tail_free(t);
        sink_free(&s);
    }
}

/* A missing file (and a missing directory) is picked up from 0. */
static void test_missing_appears(bool inotify)
{
    char path[PATH_MAX], sub[PATH_MAX], subpath[PATH_MAX];
    path_of(path, "late.log");
    path_of(sub, "sub");
    path_of(subpath, "sub/late.log");
    tw_tail_t *t = make_tail(inotify, 50, 0, 0, 0);
    sink_t a = {0}, b = {0};
    add(t, "a", path, false, NULL, 0, &a);
    add(t, "b", subpath, false, NULL, 0, &b);
    settle(t);
    TW_CHECK_INT(npos(t, "a"), 0);
    TW_CHECK_INT(npos(t, "b"), 0);

    append(path, "a1\na2\n");
    EXPECT_TEXT(t, &a, "a1\na2\n");

    TW_CHECK_INT(mkdir(sub, 0700), 0);
    append(subpath, "b1\n");
    EXPECT_TEXT(t, &b, "b1\n");

    if (inotify) {
        /* The directory that did not exist is watched now. */
        settle(t);
        append(subpath, "b2\n");
        TW_CHECK_INT(tw_tail_wait(t, 5000), 1);
    }
    append(subpath, "b3\n");
    EXPECT_TEXT(t, &b, inotify ? "b1\nb2\nb3\n" : "b1\nb3\n");
    EXPECT_EVENTS(&a, 0, 0, 0, 0, 0);
    EXPECT_EVENTS(&b, 0, 0, 0, 0, 0);
    tw_tail_free(t);
    sink_free(&a);
    sink_free(&b);
}

/* A path that is not a regular file (a FIFO here; an unreadable file is the
 * same for the daemon's metric, but root reads every file) is counted as an
 * error at every poll, and followed once a regular file takes its place. */
static void test_errors_counted(bool inotify)
{
    char path[PATH_MAX];
    path_of(path, "fifo.log");
    TW_CHECK_INT(mkfifo(path, 0600), 0);
    tw_tail_t *t = make_tail(inotify, 50, 0, 0, 0);
    sink_t a = {0};
    add(t, "a", path, false, NULL, 0, &a);
    for (int i = 0; i < 3; i++)
        tw_tail_poll(t);
    /* Found by stat (not_regular) or refused at open (open), by mode. */
    unsigned errs = a.errors[TW_TAIL_ERR_NOT_REGULAR] + a.errors[TW_TAIL_ERR_OPEN];
    TW_CHECK(errs >= 3);
    TW_CHECK_INT(a.lines, 0);
    TW_CHECK_INT(unlink(path), 0);
    append(path, "r1\n");
    EXPECT_TEXT(t, &a, "r1\n");
    TW_CHECK_INT(a.errors[TW_TAIL_ERR_READ], 0);
    tw_tail_free(t);
    sink_free(&a);
}

/* logrotate "create": the old file is drained (also lines written to it
 * after the rename was seen), the new one is read from 0. */
static void test_rename_rotation(bool inotify)
{
    char path[PATH_MAX], old[PATH_MAX];
    path_of(path, "auth.log");
    path_of(old, "auth.log.1");
    append(path, "o1\no2\n");
    tw_tail_t *t = make_tail(inotify, 200, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    EXPECT_TEXT(t, &s, "o1\no2\n");

    int writer = open_writer(path);   /* the application, not yet reopened */
    TW_CHECK_INT(rename(path, old), 0);
    append(path, "n1\n");
    write_all(writer, "o3\n", 3);
    /* The old file's lines come before the new file's. */
    EXPECT_TEXT(t, &s, "o1\no2\no3\nn1\n");
    EXPECT_EVENTS(&s, 1, 0, 0, 0, 0);

    /* Seen as rotated, still drained. */
    write_all(writer, "o4\n", 3);
    append(path, "n2\n");
    EXPECT_TEXT(t, &s, "o1\no2\no3\nn1\no4\nn2\n");

    /* Idle for rotate_wait: closed, and only the new file is left. */
    WAIT_FOR(t, npos(t, "in") == 1);
    tw_tail_pos_t p[2];
    TW_CHECK_INT(tw_tail_positions(t, "in", p, 2), 1);
    TW_CHECK(p[0].current);
    TW_CHECK_INT(p[0].offset, 6);
    struct stat st;
    TW_CHECK_INT(stat(path, &st), 0);
    TW_CHECK_INT(p[0].ino, st.st_ino);

    write_all(writer, "late\n", 5);   /* after the drain window: not followed */
    append(path, "n3\n");
    EXPECT_TEXT(t, &s, "o1\no2\no3\nn1\no4\nn2\nn3\n");
    EXPECT_EVENTS(&s, 1, 0, 0, 0, 0);
    close(writer);
    tw_tail_free(t);
    sink_free(&s);
}

/* A rotated file closed with an unterminated last line reports it. */
static void test_rotated_partial_tail(bool inotify)
{
    char path[PATH_MAX], old[PATH_MAX];
    path_of(path, "p.log");
    path_of(old, "p.log.1");
    append(path, "a\nunterminated");
    tw_tail_t *t = make_tail(inotify, 20, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    EXPECT_TEXT(t, &s, "a\n");
    TW_CHECK_INT(rename(path, old), 0);
    append(path, "b\n");
    EXPECT_TEXT(t, &s, "a\nb\n");
    WAIT_FOR(t, npos(t, "in") == 1);
    EXPECT_EVENTS(&s, 1, 0, 0, 0, 1);
    tw_tail_free(t);
    sink_free(&s);
}

/* copytruncate: size below the read position → restart at 0. */
static void test_copytruncate(bool inotify)
{
    const struct {
        const char *name;
        const char *initial;
        bool poll_between;   /* a poll sees the empty file before new data */
        unsigned partial;
    } cases[] = {
        {"clean", "l1\nl2\n", false, 0},
        {"pending partial dropped", "l1\nl2\npar", false, 1},
        {"seen empty first", "l1\nl2\n", true, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[PATH_MAX], name[32];
        snprintf(name, sizeof name, "trunc%zu.log", i);
        path_of(path, name);
        overwrite(path, cases[i].initial);
        tw_tail_t *t = make_tail(inotify, 50, 0, 0, 0);
        sink_t s = {0};
        add(t, "in", path, true, NULL, 0, &s);
        int before = tw_test_fail;
        EXPECT_TEXT(t, &s, "l1\nl2\n");
        TW_CHECK_INT(truncate(path, 0), 0);
        if (cases[i].poll_between) {
            WAIT_FOR(t, s.rotates[TW_ROTATE_TRUNCATE] == 1);
            settle(t);
        }
        append(path, "n1\n");
        EXPECT_TEXT(t, &s, "l1\nl2\nn1\n");
        EXPECT_EVENTS(&s, 0, 1, 0, 0, cases[i].partial);
        tw_tail_pos_t p;
        TW_CHECK_INT(tw_tail_positions(t, "in", &p, 1), 1);
        TW_CHECK_INT(p.offset, 3);
        TW_CHECK(p.hash == tw_hash64(TW_HASH_INIT, "n1\n", 3));
        if (tw_test_fail != before)
            fprintf(stderr, "  in case \"%s\"\n", cases[i].name);
        tw_tail_free(t);
        sink_free(&s);
    }
}

/* Deleted: drained through the open fd; a new file at the path is read
 * from 0; exactly one DELETE and no RENAME. */
static void test_delete_recreate(bool inotify)
{
    char path[PATH_MAX];
    path_of(path, "del.log");
    append(path, "l1\n");
    tw_tail_t *t = make_tail(inotify, 50, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    EXPECT_TEXT(t, &s, "l1\n");

    int writer = open_writer(path);
    TW_CHECK_INT(unlink(path), 0);
    write_all(writer, "l2\n", 3);
    WAIT_FOR(t, s.rotates[TW_ROTATE_DELETE] == 1 && s.lines == 2);
    EXPECT_TEXT(t, &s, "l1\nl2\n");

    append(path, "n1\n");
    EXPECT_TEXT(t, &s, "l1\nl2\nn1\n");
    WAIT_FOR(t, npos(t, "in") == 1);
    EXPECT_EVENTS(&s, 0, 0, 1, 0, 0);
    close(writer);
    tw_tail_free(t);
    sink_free(&s);
}

/* Deleted and recreated before the follower looks again: still a DELETE
 * (the old file has no name left), not a RENAME; both files fully read. */
static void test_delete_recreate_between_polls(bool inotify)
{
    char path[PATH_MAX];
    path_of(path, "delq.log");
    append(path, "l1\n");
    tw_tail_t *t = make_tail(inotify, 50, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    EXPECT_TEXT(t, &s, "l1\n");
    int writer = open_writer(path);
    TW_CHECK_INT(unlink(path), 0);
    write_all(writer, "l2\n", 3);
    append(path, "n1\n");
    EXPECT_TEXT(t, &s, "l1\nl2\nn1\n");
    WAIT_FOR(t, npos(t, "in") == 1);
    EXPECT_EVENTS(&s, 0, 0, 1, 0, 0);
    close(writer);
    tw_tail_free(t);
    sink_free(&s);
}

/* Moved away (a rename: the file keeps a name) and moved back: the draining
 * fd becomes current again; a second fd would re-read the file from 0. */
static void test_moved_away_and_back(bool inotify)
{
    char path[PATH_MAX], away[PATH_MAX];
    path_of(path, "back.log");
    path_of(away, "back.tmp");
    append(path, "a\n");
    tw_tail_t *t = make_tail(inotify, 60000, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    EXPECT_TEXT(t, &s, "a\n");
    TW_CHECK_INT(rename(path, away), 0);
    append(away, "b\n");
    EXPECT_TEXT(t, &s, "a\nb\n");
    TW_CHECK_INT(s.rotates[TW_ROTATE_RENAME], 1);
    TW_CHECK_INT(rename(away, path), 0);
    append(path, "c\n");
    EXPECT_TEXT(t, &s, "a\nb\nc\n");
    tw_tail_pos_t p[TW_TAIL_MAX_FILES];
    TW_CHECK_INT(tw_tail_positions(t, "in", p, TW_TAIL_MAX_FILES), 1);
    TW_CHECK(p[0].current && p[0].offset == 6);
    EXPECT_EVENTS(&s, 1, 0, 0, 0, 0);
    tw_tail_free(t);
    sink_free(&s);
}

/* Save positions (with a partial line pending), restart, resume: no line
 * lost or repeated, and the committed offset excludes the partial line. */
static void test_restore_resume(bool inotify)
{
    char path[PATH_MAX];
    path_of(path, "resume.log");
    append(path, "l1\nl2\n");
    tw_tail_t *t = make_tail(inotify, 50, 4, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    append(path, "l3\npar");
    EXPECT_TEXT(t, &s, "l1\nl2\nl3\n");
    tw_tail_pos_t p[TW_TAIL_MAX_FILES];
    size_t n = tw_tail_positions(t, "in", p, TW_TAIL_MAX_FILES);
    TW_CHECK_INT(n, 1);
    TW_CHECK(p[0].current);
    TW_CHECK_INT(p[0].offset, 9);
    TW_CHECK_INT(p[0].hash_len, 9);
    TW_CHECK(p[0].hash == tw_hash64(TW_HASH_INIT, "l1\nl2\nl3\n", 9));
    tw_tail_free(t);

    append(path, "tial\nl4\n");
    /* The same file listed twice (a corrupt snapshot) is opened once. */
    p[1] = p[0];
    p[1].current = false;
    sink_t s2 = {0};
    t = make_tail(inotify, 50, 4, 0, 0);
    add(t, "in", path, false, p, 2, &s2);   /* saved positions beat from_start */
    TW_CHECK_INT(npos(t, "in"), 1);
    EXPECT_TEXT(t, &s2, "partial\nl4\n");
    EXPECT_EVENTS(&s2, 0, 0, 0, 0, 0);
    tw_tail_free(t);
    sink_free(&s);
    sink_free(&s2);
}

/* Rotated while we were down: the saved file is found by inode in the
 * directory (auth.log.1) and drained; the new auth.log is read from 0. */
static void test_restore_rotated_by_scan(bool inotify)
{
    char path[PATH_MAX], old[PATH_MAX], other[PATH_MAX];
    path_of(path, "auth.log");
    path_of(old, "auth.log.1");
    path_of(other, "unrelated.log");
    append(other, "noise\n");
    append(path, "a1\na2\n");
    tw_tail_t *t = make_tail(inotify, 50, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    EXPECT_TEXT(t, &s, "a1\na2\n");
    tw_tail_pos_t p[TW_TAIL_MAX_FILES];
    size_t n = tw_tail_positions(t, "in", p, TW_TAIL_MAX_FILES);
    TW_CHECK_INT(n, 1);
    tw_tail_free(t);

    append(path, "a3\n");
    TW_CHECK_INT(rename(path, old), 0);
    append(old, "a4\n");
    append(path, "b1\nb2\n");

    sink_t s2 = {0};
    t = make_tail(inotify, 50, 0, 0, 0);
    add(t, "in", path, false, p, n, &s2);
    tw_tail_pos_t q[TW_TAIL_MAX_FILES];
    TW_CHECK_INT(tw_tail_positions(t, "in", q, TW_TAIL_MAX_FILES), 2);
    struct stat st;
    TW_CHECK_INT(stat(path, &st), 0);
    TW_CHECK(q[0].current && q[0].ino == (uint64_t)st.st_ino && q[0].offset == 0);
    TW_CHECK(!q[1].current && q[1].ino == p[0].ino && q[1].offset == 6);
    EXPECT_TEXT(t, &s2, "a3\na4\nb1\nb2\n");
    WAIT_FOR(t, npos(t, "in") == 1);
    EXPECT_EVENTS(&s2, 0, 0, 0, 0, 0);
    tw_tail_free(t);
    sink_free(&s);
    sink_free(&s2);
}

/* Saved while a rotated file was still draining: both files resume. */
static void test_restore_while_draining(bool inotify)
{
    char path[PATH_MAX], old[PATH_MAX];
    path_of(path, "d.log");
    path_of(old, "d.log.1");
    append(path, "a1\n");
    tw_tail_t *t = make_tail(inotify, 60000, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    EXPECT_TEXT(t, &s, "a1\n");
    int writer = open_writer(path);
    TW_CHECK_INT(rename(path, old), 0);
    append(path, "b1\n");
    EXPECT_TEXT(t, &s, "a1\nb1\n");
    EXPECT_EVENTS(&s, 1, 0, 0, 0, 0);
    tw_tail_pos_t p[TW_TAIL_MAX_FILES];
    size_t n = tw_tail_positions(t, "in", p, TW_TAIL_MAX_FILES);
    TW_CHECK_INT(n, 2);
    TW_CHECK(p[0].current && p[0].offset == 3);
    TW_CHECK(!p[1].current && p[1].offset == 3);
    tw_tail_free(t);

    write_all(writer, "a2\n", 3);
    append(path, "b2\n");
    sink_t s2 = {0};
    t = make_tail(inotify, 50, 0, 0, 0);
    add(t, "in", path, true, p, n, &s2);
    EXPECT_TEXT(t, &s2, "a2\nb2\n");
    WAIT_FOR(t, npos(t, "in") == 1);
    EXPECT_EVENTS(&s2, 0, 0, 0, 0, 0);
    close(writer);
    tw_tail_free(t);
    sink_free(&s);
    sink_free(&s2);
}

/*
 * Saved with a drainer, then rotated once more while we were down: both
 * saved files are found by inode under their new names and replayed oldest
 * first, then the new file at the path.
 */
static void test_restore_after_second_rotation(bool inotify)
{
    char path[PATH_MAX], r1[PATH_MAX], r2[PATH_MAX];
    path_of(path, "s.log");
    path_of(r1, "s.log.1");
    path_of(r2, "s.log.2");
    append(path, "a1\n");
    tw_tail_t *t = make_tail(inotify, 60000, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    EXPECT_TEXT(t, &s, "a1\n");
    TW_CHECK_INT(rename(path, r1), 0);
    append(path, "b1\n");
    EXPECT_TEXT(t, &s, "a1\nb1\n");
    tw_tail_pos_t p[TW_TAIL_MAX_FILES];
    size_t n = tw_tail_positions(t, "in", p, TW_TAIL_MAX_FILES);
    TW_CHECK_INT(n, 2);
    tw_tail_free(t);

    append(r1, "a2\n");
    append(path, "b2\n");
    TW_CHECK_INT(rename(r1, r2), 0);
    TW_CHECK_INT(rename(path, r1), 0);
    append(path, "c1\n");

    sink_t s2 = {0};
    t = make_tail(inotify, 50, 0, 0, 0);
    add(t, "in", path, false, p, n, &s2);
    TW_CHECK_INT(npos(t, "in"), 3);
    EXPECT_TEXT(t, &s2, "a2\nb2\nc1\n");
    WAIT_FOR(t, npos(t, "in") == 1);
    EXPECT_EVENTS(&s2, 0, 0, 0, 0, 0);
    tw_tail_free(t);
    sink_free(&s);
    sink_free(&s2);
}

/*
 * Same inode, other content (inode reuse, or a file rewritten in place while
 * we were down): the fingerprint or the size no longer matches, so the file
 * is read from 0 and a warning is logged — without any line content.
 */
static void test_restore_mismatch(bool inotify)
{
    const struct {
        const char *name;
        const char *now;
    } cases[] = {
        {"fingerprint differs", "NEW-1\nNEW-2\nNEW-3\n"},
        {"file now shorter", "NEW-\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[PATH_MAX], logf[PATH_MAX], name[32];
        snprintf(name, sizeof name, "reuse%zu.log", i);
        path_of(path, name);
        path_of(logf, "stderr.txt");
        overwrite(path, "old-1\nold-2\n");
        tw_tail_t *t = make_tail(inotify, 50, 0, 0, 0);
        sink_t s = {0};
        add(t, "in", path, true, NULL, 0, &s);
        int before = tw_test_fail;
        EXPECT_TEXT(t, &s, "old-1\nold-2\n");
        tw_tail_pos_t p[TW_TAIL_MAX_FILES];
        size_t n = tw_tail_positions(t, "in", p, TW_TAIL_MAX_FILES);
        tw_tail_free(t);

        struct stat st;
        overwrite(path, cases[i].now);
        TW_CHECK_INT(stat(path, &st), 0);
        TW_CHECK_INT(st.st_ino, p[0].ino);

        sink_t s2 = {0};
        t = make_tail(inotify, 50, 0, 0, 0);
        int saved_err = capture_start(logf);
        add(t, "in", path, false, p, n, &s2);
        char *log = capture_end(saved_err, logf);
        TW_CHECK(strstr(log, "does not match") != NULL);
        /* '-' never occurs in a mkdtemp name, so these can only be content. */
        TW_CHECK(strstr(log, "NEW-") == NULL && strstr(log, "old-") == NULL);
        free(log);
        EXPECT_TEXT(t, &s2, cases[i].now);
        if (tw_test_fail != before)
            fprintf(stderr, "  in case \"%s\"\n", cases[i].name);
        tw_tail_free(t);
        sink_free(&s);
        sink_free(&s2);
    }
}

/* The saved file is gone: the file now at the path is new, read from 0. */
static void test_restore_file_gone(bool inotify)
{
    char path[PATH_MAX];
    path_of(path, "gone.log");
    append(path, "x1\nx2\n");
    tw_tail_t *t = make_tail(inotify, 50, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    EXPECT_TEXT(t, &s, "x1\nx2\n");
    tw_tail_pos_t p[TW_TAIL_MAX_FILES];
    size_t n = tw_tail_positions(t, "in", p, TW_TAIL_MAX_FILES);
    tw_tail_free(t);

    TW_CHECK_INT(unlink(path), 0);
    append(path, "y1\n");
    sink_t s2 = {0};
    t = make_tail(inotify, 50, 0, 0, 0);
    add(t, "in", path, false, p, n, &s2);
    EXPECT_TEXT(t, &s2, "y1\n");
    tw_tail_free(t);
    sink_free(&s);
    sink_free(&s2);
}

/* An over-long line still being written when positions are saved: the
 * saved offset stays at its start, so after the restart it is skipped once,
 * never split into a false line. */
static void test_restore_mid_long_line(bool inotify)
{
    char path[PATH_MAX];
    path_of(path, "long.log");
    append(path, "short\nzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
    tw_tail_t *t = make_tail(inotify, 50, 8, 0, 16);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    EXPECT_TEXT(t, &s, "short\n");
    tw_tail_pos_t p[TW_TAIL_MAX_FILES];
    size_t n = tw_tail_positions(t, "in", p, TW_TAIL_MAX_FILES);
    TW_CHECK_INT(n, 1);
    TW_CHECK_INT(p[0].offset, 6);
    EXPECT_EVENTS(&s, 0, 0, 0, 0, 0);
    tw_tail_free(t);

    append(path, "zz\nafter\n");
    sink_t s2 = {0};
    t = make_tail(inotify, 50, 8, 0, 16);
    add(t, "in", path, false, p, n, &s2);
    EXPECT_TEXT(t, &s2, "after\n");
    EXPECT_EVENTS(&s2, 0, 0, 0, 1, 0);
    tw_tail_free(t);
    sink_free(&s);
    sink_free(&s2);
}

/* Several inputs in two directories, one removed midway. */
static void test_multiple_inputs(bool inotify)
{
    char sub[PATH_MAX], paths[4][PATH_MAX];
    const char *names[4] = {"a", "b", "c", "d"};
    path_of(sub, "other");
    TW_CHECK_INT(mkdir(sub, 0700), 0);
    path_of(paths[0], "a.log");
    path_of(paths[1], "b.log");
    path_of(paths[2], "c.log");
    path_of(paths[3], "other/d.log");
    for (int i = 0; i < 4; i++)
        append(paths[i], "first\n");

    tw_tail_t *t = make_tail(inotify, 50, 0, 0, 0);
    sink_t s[4] = {{0}};
    for (int i = 0; i < 4; i++)
        add(t, names[i], paths[i], i % 2 == 0, NULL, 0, &s[i]);
    tw_err_t err;
    TW_CHECK_INT(tw_tail_add(t, "b", paths[2], true, NULL, 0, &handler, &s[1], &err), -1);
    TW_CHECK(strstr(err.msg, "duplicate") != NULL);

    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 4; i++) {
            char line[32];
            snprintf(line, sizeof line, "%s-%d\n", names[i], round);
            append(paths[i], line);
        }
    }
    EXPECT_TEXT(t, &s[0], "first\na-0\na-1\na-2\n");
    EXPECT_TEXT(t, &s[1], "b-0\nb-1\nb-2\n");
    EXPECT_TEXT(t, &s[2], "first\nc-0\nc-1\nc-2\n");
    EXPECT_TEXT(t, &s[3], "d-0\nd-1\nd-2\n");

    /* "root/." is another spelling of root: the kernel hands back the same
     * watch descriptor, which must survive this input's removal. */
    char dotted[PATH_MAX];
    sink_t e = {0};
    snprintf(dotted, sizeof dotted, "%s/./e.log", root);
    add(t, "e", dotted, true, NULL, 0, &e);
    append(dotted, "e-0\n");
    EXPECT_TEXT(t, &e, "e-0\n");
    TW_CHECK_INT(tw_tail_remove(t, "e"), 0);
    sink_free(&e);

    /* Removing "a" must not take the shared directory watch from "b". */
    TW_CHECK_INT(tw_tail_remove(t, "a"), 0);
    TW_CHECK_INT(tw_tail_remove(t, "a"), -1);
    settle(t);
    append(paths[0], "ignored\n");
    append(paths[1], "b-3\n");
    if (inotify)
        TW_CHECK_INT(tw_tail_wait(t, 5000), 1);
    EXPECT_TEXT(t, &s[1], "b-0\nb-1\nb-2\nb-3\n");
    TW_CHECK_STR(text(&s[0]), "first\na-0\na-1\na-2\n");
    TW_CHECK_INT(npos(t, "a"), 0);
    for (int i = 0; i < 4; i++)
        EXPECT_EVENTS(&s[i], 0, 0, 0, 0, 0);
    tw_tail_free(t);
    for (int i = 0; i < 4; i++)
        sink_free(&s[i]);
}

/* poll_budget bounds each file's share of a poll, so all inputs progress;
 * the lag shows the rest; nothing is lost or reordered. */
static void test_budget_fairness(bool inotify)
{
    enum { NIN = 3, NLINES = 200, BLOCK = 64, BUDGET = 256 };
    char paths[NIN][PATH_MAX];
    char *expect[NIN];
    sink_t s[NIN] = {{0}};
    const char *names[NIN] = {"x", "y", "z"};
    for (int i = 0; i < NIN; i++) {
        char name[16];
        snprintf(name, sizeof name, "%s.log", names[i]);
        path_of(paths[i], name);
        size_t cap = NLINES * 32, len = 0;
        expect[i] = tw_xmalloc(cap);
        for (int l = 0; l < NLINES; l++)
            len += (size_t)snprintf(expect[i] + len, cap - len, "%s-line-%03d\n", names[i], l);
        append(paths[i], expect[i]);
    }
    tw_tail_t *t = make_tail(inotify, 50, BLOCK, BUDGET, 0);
    for (int i = 0; i < NIN; i++)
        add(t, names[i], paths[i], true, NULL, 0, &s[i]);

    uint64_t got = tw_tail_poll(t);
    TW_CHECK(got > 0 && got <= (uint64_t)NIN * BUDGET);
    for (int i = 0; i < NIN; i++) {
        TW_CHECK(s[i].lines > 0 && s[i].lines < NLINES);
        TW_CHECK(tw_tail_lag_bytes(t, names[i]) > 0);
    }
    /* Data is waiting, so wait must not sleep. */
    int64_t t0 = tw_mono_ns();
    TW_CHECK_INT(tw_tail_wait(t, 5000), 0);
    TW_CHECK(tw_mono_ns() - t0 < 1000 * MS);

    for (int i = 0; i < NIN; i++) {
        EXPECT_TEXT(t, &s[i], expect[i]);
        TW_CHECK_INT(tw_tail_lag_bytes(t, names[i]), 0);
        free(expect[i]);
    }
    tw_tail_free(t);
    for (int i = 0; i < NIN; i++)
        sink_free(&s[i]);
}

/* tw_tail_wait: woken promptly by a write with inotify, a plain timeout
 * without. */
static void test_wait(bool inotify)
{
    char path[PATH_MAX];
    path_of(path, "wait.log");
    append(path, "w0\n");
    tw_tail_t *t = make_tail(inotify, 50, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    EXPECT_TEXT(t, &s, "w0\n");

    TW_CHECK_INT(tw_tail_wait(t, 0), 0);
    int64_t t0 = tw_mono_ns();
    TW_CHECK_INT(tw_tail_wait(t, 30), 0);
    TW_CHECK(tw_mono_ns() - t0 >= 20 * MS);

    append(path, "w1\n");
    t0 = tw_mono_ns();
    int r = tw_tail_wait(t, inotify ? 5000 : 30);
    int64_t took = tw_mono_ns() - t0;
    if (inotify) {
        TW_CHECK_INT(r, 1);
        TW_CHECK(took < 1000 * MS);
    } else {
        TW_CHECK_INT(r, 0);
    }
    TW_CHECK(tw_tail_poll(t) > 0);
    TW_CHECK_STR(text(&s), "w0\nw1\n");
    tw_tail_free(t);
    sink_free(&s);
}

/* More rotations than TW_TAIL_MAX_FILES within rotate_wait: the oldest
 * drained file is closed early, after being read to its end. */
static void test_many_rotations(bool inotify)
{
    char path[PATH_MAX];
    path_of(path, "many.log");
    tw_tail_t *t = make_tail(inotify, 60000, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    char expect[512] = "";
    int writers[12];
    for (int i = 0; i < 12; i++) {
        char line[32], old[PATH_MAX], name[32];
        snprintf(line, sizeof line, "r%d-a\n", i);
        append(path, line);
        strcat(expect, line);
        EXPECT_TEXT(t, &s, expect);
        writers[i] = open_writer(path);
        snprintf(name, sizeof name, "many.log.%d", i);
        path_of(old, name);
        TW_CHECK_INT(rename(path, old), 0);
        /* The last line of each rotated file arrives after the rename. */
        snprintf(line, sizeof line, "r%d-b\n", i);
        write_all(writers[i], line, strlen(line));
        strcat(expect, line);
        TW_CHECK(npos(t, "in") <= TW_TAIL_MAX_FILES);
    }
    append(path, "final\n");
    strcat(expect, "final\n");
    EXPECT_TEXT(t, &s, expect);
    TW_CHECK_INT(npos(t, "in"), TW_TAIL_MAX_FILES);
    EXPECT_EVENTS(&s, 12, 0, 0, 0, 0);
    for (int i = 0; i < 12; i++)
        close(writers[i]);
    tw_tail_free(t);
    sink_free(&s);
}

#define MAX_FD_SEEN 4096

/* Marks the descriptors open in this process in seen[] and returns how
 * many there are. With base, an fd that is not in base (opened since) and
 * lacks FD_CLOEXEC clears *all_cloexec; descriptors inherited from whatever
 * started the test are not ours to judge. */
static int scan_fds(bool seen[MAX_FD_SEEN], const bool *base, bool *all_cloexec)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    memset(seen, 0, MAX_FD_SEEN * sizeof seen[0]);
    *all_cloexec = true;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        int fd = atoi(de->d_name);
        if (fd == dirfd(d) || fd < 0 || fd >= MAX_FD_SEEN)
            continue;
        n++;
        seen[fd] = true;
        int fl = fcntl(fd, F_GETFD);
        if (base && !base[fd] && fl >= 0 && !(fl & FD_CLOEXEC)) {
            fprintf(stderr, "fd %d lacks FD_CLOEXEC\n", fd);
            *all_cloexec = false;
        }
    }
    closedir(d);
    return n;
}

/* Every fd the follower opens (files, drainers, inotify) is close-on-exec
 * and tw_tail_free gives them all back. */
static void test_fd_hygiene(bool inotify)
{
    static bool base[MAX_FD_SEEN], now[MAX_FD_SEEN];
    char path[PATH_MAX], old[PATH_MAX];
    path_of(path, "fd.log");
    path_of(old, "fd.log.1");
    append(path, "a\n");
    bool cloexec;
    int before = scan_fds(base, NULL, &cloexec);
    TW_CHECK(before > 0);
    tw_tail_t *t = make_tail(inotify, 60000, 0, 0, 0);
    sink_t s = {0};
    add(t, "in", path, true, NULL, 0, &s);
    TW_CHECK_INT(rename(path, old), 0);
    append(path, "b\n");
    EXPECT_TEXT(t, &s, "a\nb\n");
    TW_CHECK_INT(npos(t, "in"), 2);
    int during = scan_fds(now, base, &cloexec);
    TW_CHECK(cloexec);
    TW_CHECK_INT(during, before + 2 + (inotify ? 1 : 0));
    tw_tail_free(t);
    TW_CHECK_INT(scan_fds(now, base, &cloexec), before);
    sink_free(&s);
}

/* Misuse and odd inputs fail cleanly. */
static void test_bad_input(bool inotify)
{
    char dirpath[PATH_MAX];
    path_of(dirpath, "adir");
    TW_CHECK_INT(mkdir(dirpath, 0700), 0);
    tw_tail_t *t = make_tail(inotify, 50, 0, 0, 0);
    sink_t s = {0};
    tw_err_t err;
    /* A directory at the path: followed (in case it becomes a file), no data. */
    add(t, "dir", dirpath, true, NULL, 0, &s);
    settle(t);
    TW_CHECK_INT(s.lines, 0);
    TW_CHECK_INT(npos(t, "dir"), 0);

    tw_tail_handler_t no_line = {NULL, on_skip, on_rotate, NULL, NULL};
    TW_CHECK_INT(tw_tail_add(t, "x", dirpath, true, NULL, 0, &no_line, &s, &err), -1);
    TW_CHECK_INT(tw_tail_add(t, "", dirpath, true, NULL, 0, &handler, &s, &err), -1);
    TW_CHECK_INT(tw_tail_add(t, "y", dirpath, true, NULL, 2, &handler, &s, NULL), -1);
    TW_CHECK_INT(tw_tail_remove(t, "nope"), -1);
    tw_tail_pos_t p;
    TW_CHECK_INT(tw_tail_positions(t, "nope", &p, 1), 0);
    TW_CHECK_INT(tw_tail_lag_bytes(t, "nope"), 0);

    /* on_skip, on_rotate and on_lines_done are optional. */
    char path[PATH_MAX], old[PATH_MAX];
    path_of(path, "quiet.log");
    path_of(old, "quiet.log.1");
    append(path, "q1\n");
    tw_tail_handler_t lines_only = {on_line, NULL, NULL, NULL, NULL};
    sink_t q = {0};
    TW_CHECK_INT(tw_tail_add(t, "quiet", path, true, NULL, 0, &lines_only, &q, &err), 0);
    EXPECT_TEXT(t, &q, "q1\n");
    TW_CHECK_INT(rename(path, old), 0);
    append(path, "q2\n");
    EXPECT_TEXT(t, &q, "q1\nq2\n");
    tw_tail_free(t);
    sink_free(&s);
    sink_free(&q);
}

static void test_api_basics(void)
{
    TW_CHECK_STR(tw_rotation_name(TW_ROTATE_RENAME), "rename");
    TW_CHECK_STR(tw_rotation_name(TW_ROTATE_TRUNCATE), "truncate");
    TW_CHECK_STR(tw_rotation_name(TW_ROTATE_DELETE), "delete");
    TW_CHECK_STR(tw_skip_name(TW_SKIP_TOO_LONG), "too_long");
    TW_CHECK_STR(tw_skip_name(TW_SKIP_PARTIAL), "partial");

    tw_tail_opts_t o;
    tw_tail_opts_default(&o);
    TW_CHECK_INT(o.max_line, 64 * 1024);
    TW_CHECK_INT(o.block, 256 * 1024);
    TW_CHECK_INT(o.rotate_wait_ms, 5000);
    TW_CHECK_INT(o.poll_budget, 4 * 1024 * 1024);
    TW_CHECK(o.use_inotify);

    o.rotate_wait_ms = -1;
    tw_err_t err;
    TW_CHECK(tw_tail_new(&o, &err) == NULL);
    TW_CHECK(strstr(err.msg, "rotate_wait_ms") != NULL);
    tw_tail_t *t = tw_tail_new(NULL, &err);
    TW_CHECK(t != NULL);
    TW_CHECK_INT(tw_tail_poll(t), 0);
    tw_tail_free(t);
    tw_tail_free(NULL);
}

int main(void)
{
    /* Info records (rotations, files opened) go to stderr only on request. */
    tw_log_setup(getenv("TW_TEST_VERBOSE") ? TW_LOG_DEBUG : TW_LOG_WARN, TW_LOG_PLAIN);

    static const struct {
        const char *name;
        void (*run)(bool inotify);
    } scenarios[] = {
        {"start positions", test_start_positions},
        {"missing file appears", test_missing_appears},
        {"rename rotation", test_rename_rotation},
        {"rotated partial tail", test_rotated_partial_tail},
        {"copytruncate", test_copytruncate},
        {"delete and recreate", test_delete_recreate},
        {"delete and recreate between polls", test_delete_recreate_between_polls},
        {"moved away and back", test_moved_away_and_back},
        {"restore and resume", test_restore_resume},
        {"restore rotated file by inode scan", test_restore_rotated_by_scan},
        {"restore while draining", test_restore_while_draining},
        {"restore after a second rotation", test_restore_after_second_rotation},
        {"restore with mismatching file", test_restore_mismatch},
        {"restore with file gone", test_restore_file_gone},
        {"restore inside an over-long line", test_restore_mid_long_line},
        {"multiple inputs", test_multiple_inputs},
        {"budget fairness", test_budget_fairness},
        {"wait", test_wait},
        {"many rotations", test_many_rotations},
        {"fd hygiene", test_fd_hygiene},
        {"bad input", test_bad_input},
        {"errors counted", test_errors_counted},
    };
    test_api_basics();
    for (int mode = 0; mode < 2; mode++) {
        bool inotify = mode == 0;
        for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
            int before = tw_test_fail;
            setup();
            scenarios[i].run(inotify);
            teardown();
            if (tw_test_fail != before)
                fprintf(stderr, "FAILED: %s (%s)\n", scenarios[i].name,
                        inotify ? "inotify" : "stat polling");
        }
    }
    return tw_test_done();
}
