/*
 * tail.c — see tail.h.
 *
 * Model. Each input owns up to TW_TAIL_MAX_FILES open files, kept in
 * chronological order in files[0 .. nfiles): the current file (the one at the
 * path) is last when has_cur is set; the files before it are older, rotated
 * files being drained ("drainers"). Every poll reads them in that order, so
 * the last lines of an old file reach the handler before the first lines of
 * its successor.
 *
 * Detection. Every poll stats every path, and that stat alone decides what
 * happened; inotify only cuts the wait short, so a lost, overflowed or
 * unsupported inotify event (or use_inotify=false) delays data, never loses
 * it:
 *   path names the current file, size < read position  -> truncation
 *   path names another file                            -> rename rotation
 *   path is gone (ENOENT/ENOTDIR)                      -> delete
 *   no current file and the path names a regular file  -> open it from 0
 * A drainer is closed once it has yielded no data for rotate_wait_ms; an
 * unterminated tail it still holds is reported as TW_SKIP_PARTIAL.
 *
 * Offsets. For each open file, base is the file offset at which its linebuf
 * started counting: base + consumed is the committed offset (whole lines
 * handed out or skipped), base + consumed + pending is the fd's read
 * position. Truncation is therefore "size < read position".
 *
 * Invariants: one input never holds two fds for the same dev/ino; every fd
 * is O_CLOEXEC; log records name inputs, paths and inodes, never line bytes
 * (lines carry secret tokens). Handlers run in the middle of a read with
 * pointers into the file table, so they must not call tw_tail_add, _remove
 * or _free on the same follower.
 *
 * Budget: each file reads at most poll_budget bytes per poll (raised to one
 * block if smaller, so every file progresses). The one exception is a
 * drained file closed early because TW_TAIL_MAX_FILES are open: it is read
 * to its end first, since closing it otherwise would lose lines.
 *
 * Known limits: a copytruncate whose file grows back past the old read
 * position between two polls is indistinguishable by size from an append, so
 * it is missed (the first bytes of the new content are skipped) — the same
 * limit as tail -F and Fluent Bit. A rotated file moved to another directory
 * is only found again on restore if it stays in the path's directory.
 */
#include "tail.h"

#include "linebuf.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define FINGERPRINT_MAX 4096u
#define NS_PER_MS 1000000LL
#define DEFAULT_ROTATE_WAIT_MS 5000
#define DEFAULT_POLL_BUDGET (4u * 1024 * 1024)

/* Directory events that may mean "a followed path changed". The SELF events
 * let a watch follow its directory being moved or removed (it is re-added by
 * path on the next poll). */
#define WATCH_MASK                                                                   \
    (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | \
     IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)

struct tfile {
    int fd;
    uint64_t dev, ino;
    uint64_t base;          /* file offset where lb started counting */
    uint64_t size;          /* st_size seen by the last poll (for lag) */
    int64_t last_data_ns;   /* drainers: rotation time or last read with data */
    tw_linebuf_t *lb;
};

struct input {
    char *name;
    char *path;
    char *dir;              /* parent directory: watch key and restore scan */
    const tw_tail_handler_t *h;
    void *ctx;
    struct tfile files[TW_TAIL_MAX_FILES];
    size_t nfiles;
    bool has_cur;           /* files[nfiles - 1] is the file at the path */
    tw_log_limit_t lim_io;  /* stat/open/read failures */
};

/* One inotify watch per directory, shared by the inputs that live there. */
struct watch {
    char *dir;
    int wd;                 /* -1 while not watched (missing dir, removed) */
    unsigned refs;
    bool warned;
};

struct tw_tail {
    tw_tail_opts_t o;
    int ifd;                /* inotify fd, -1 when polling only */
    struct input **inputs;
    size_t ninputs;
    struct watch *watches;
    size_t nwatches;
    bool backlog;           /* the last poll stopped a file at its budget */
};

typedef enum { READ_EOF, READ_BUDGET, READ_ERROR } read_end_t;

const char *tw_rotation_name(tw_rotation_t r)
{
    switch (r) {
    case TW_ROTATE_RENAME: return "rename";
    case TW_ROTATE_TRUNCATE: return "truncate";
    case TW_ROTATE_DELETE: return "delete";
    case TW_ROTATE__COUNT: break;
    }
    return "unknown";
}

const char *tw_skip_name(tw_skip_t s)
{
    switch (s) {
    case TW_SKIP_TOO_LONG: return "too_long";
    case TW_SKIP_PARTIAL: return "partial";
    case TW_SKIP__COUNT: break;
    }
    return "unknown";
}

void tw_tail_opts_default(tw_tail_opts_t *o)
{
    o->max_line = TW_LINEBUF_DEFAULT_MAX_LINE;
    o->block = TW_LINEBUF_DEFAULT_BLOCK;
    o->rotate_wait_ms = DEFAULT_ROTATE_WAIT_MS;
    o->poll_budget = DEFAULT_POLL_BUDGET;
    o->use_inotify = true;
}

/* ---- small helpers ------------------------------------------------------ */

static unsigned long long ull(uint64_t v)
{
    return (unsigned long long)v;
}

static void emit_skip(struct input *in, tw_skip_t why)
{
    if (in->h->on_skip)
        in->h->on_skip(in->ctx, why);
}

static void emit_rotate(struct input *in, tw_rotation_t kind)
{
    if (in->h->on_rotate)
        in->h->on_rotate(in->ctx, kind);
}

static const char *const error_names[TW_TAIL_ERR__COUNT] = {"open", "read", "stat",
                                                            "not_regular"};

const char *tw_tail_error_name(tw_tail_error_t e)
{
    return (unsigned)e < TW_TAIL_ERR__COUNT ? error_names[e] : "unknown";
}

static void report_error(struct input *in, tw_tail_error_t kind)
{
    if (in->h->on_error)
        in->h->on_error(in->ctx, kind);
}

static uint64_t committed_pos(const struct tfile *f)
{
    return f->base + tw_linebuf_consumed(f->lb);
}

static uint64_t read_pos(const struct tfile *f)
{
    return committed_pos(f) + tw_linebuf_pending(f->lb);
}

static bool same_file(const struct tfile *f, const struct stat *st)
{
    return f->dev == (uint64_t)st->st_dev && f->ino == (uint64_t)st->st_ino;
}

static ssize_t find_open(const struct input *in, uint64_t dev, uint64_t ino)
{
    for (size_t i = 0; i < in->nfiles; i++)
        if (in->files[i].dev == dev && in->files[i].ino == ino)
            return (ssize_t)i;
    return -1;
}

static struct input *find_input(const tw_tail_t *t, const char *name, size_t *idx)
{
    for (size_t i = 0; i < t->ninputs; i++) {
        if (strcmp(t->inputs[i]->name, name) == 0) {
            if (idx)
                *idx = i;
            return t->inputs[i];
        }
    }
    return NULL;
}

/*
 * Opens name (relative to dirfd) read-only and fills st from the open fd,
 * which is the authority: the path may be replaced between a stat and the
 * open. Non-regular files are refused with errno 0 (a FIFO or device would
 * block, never truncate and never rotate). O_NONBLOCK only keeps the open
 * itself from hanging on such a file.
 */
static int open_regular(int dirfd, const char *name, struct stat *st)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        errno = 0;
        return -1;
    }
    return fd;
}

static const char *open_error(void)
{
    return errno ? strerror(errno) : "not a regular file";
}

/*
 * tw_hash64 of the len bytes before offset, read with pread so the fd's
 * read position is untouched. Returns 0, or -1 when fewer bytes could be
 * read (file shrunk, I/O error); *out then covers what was read, which can
 * only fail to match a saved fingerprint — the safe outcome.
 */
static int fingerprint(int fd, uint64_t offset, uint32_t len, uint64_t *out)
{
    unsigned char buf[FINGERPRINT_MAX];
    size_t got = 0;
    if (len > FINGERPRINT_MAX || len > offset) {
        *out = TW_HASH_INIT;
        return -1;
    }
    while (got < len) {
        ssize_t r = pread(fd, buf + got, len - got, (off_t)(offset - len + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    *out = tw_hash64(TW_HASH_INIT, buf, got);
    return got == len ? 0 : -1;
}

/*
 * Where "start at the end" begins: just after the last newline, so a line
 * being written is read whole. Only the last max_line + 1 bytes are searched:
 * if they hold no newline, the line in progress is over-long anyway, and
 * starting max_line + 1 bytes before the end makes the linebuf drop it and
 * report it once, instead of delivering its tail as a false line.
 */
static uint64_t offset_after_last_newline(int fd, uint64_t size, size_t max_line)
{
    char buf[16384];
    uint64_t limit = size > (uint64_t)max_line + 1 ? size - max_line - 1 : 0;
    uint64_t pos = size;
    while (pos > limit) {
        size_t n = pos - limit < sizeof buf ? (size_t)(pos - limit) : sizeof buf;
        ssize_t r = pread(fd, buf, n, (off_t)(pos - n));
        if (r < 0 && errno == EINTR)
            continue;
        if (r != (ssize_t)n)
            return size;   /* unreadable or shrinking: the plain end will do */
        const char *nl = memrchr(buf, '\n', n);
        if (nl)
            return pos - n + (uint64_t)(nl - buf) + 1;
        pos -= n;
    }
    return limit;
}

/* ---- inotify watches ---------------------------------------------------- */

static void watch_try(tw_tail_t *t, struct watch *w)
{
    if (t->ifd < 0 || w->wd >= 0)
        return;
    int wd = inotify_add_watch(t->ifd, w->dir, WATCH_MASK);
    if (wd < 0) {
        /* Stat polling still covers this directory; say so once. */
        if (!w->warned && errno != ENOENT)
            tw_warn("tail: cannot watch directory %s (%s); polling it instead", w->dir,
                    strerror(errno));
        w->warned = true;
        return;
    }
    w->wd = wd;
    w->warned = false;
}

static void watch_acquire(tw_tail_t *t, const char *dir)
{
    for (size_t i = 0; i < t->nwatches; i++) {
        if (strcmp(t->watches[i].dir, dir) == 0) {
            t->watches[i].refs++;
            return;
        }
    }
    t->watches = tw_xrealloc(t->watches, (t->nwatches + 1) * sizeof *t->watches);
    struct watch *w = &t->watches[t->nwatches++];
    w->dir = tw_xstrdup(dir);
    w->wd = -1;
    w->refs = 1;
    w->warned = false;
    watch_try(t, w);
}

static void watch_release(tw_tail_t *t, const char *dir)
{
    for (size_t i = 0; i < t->nwatches; i++) {
        struct watch *w = &t->watches[i];
        if (strcmp(w->dir, dir) != 0 || --w->refs > 0)
            continue;
        /* Two spellings of one directory share a kernel wd; keep it while
         * another entry still uses it. */
        bool shared = false;
        for (size_t j = 0; j < t->nwatches; j++)
            if (j != i && w->wd >= 0 && t->watches[j].wd == w->wd)
                shared = true;
        if (w->wd >= 0 && !shared)
            inotify_rm_watch(t->ifd, w->wd);
        free(w->dir);
        t->watches[i] = t->watches[--t->nwatches];
        return;
    }
}

/* Empties the inotify queue; the events only matter as wake-ups, except
 * that a watch whose directory went away must be re-added later. */
static void drain_events(tw_tail_t *t)
{
    if (t->ifd < 0)
        return;
    char buf[8192];
    for (;;) {
        ssize_t r = read(t->ifd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return;   /* EAGAIN: empty */
        size_t off = 0;
        while (off + sizeof(struct inotify_event) <= (size_t)r) {
            struct inotify_event ev;
            memcpy(&ev, buf + off, sizeof ev);   /* buf has no alignment guarantee */
            if (ev.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
                for (size_t i = 0; i < t->nwatches; i++) {
                    if (t->watches[i].wd != ev.wd)
                        continue;
                    if (!(ev.mask & IN_IGNORED))
                        inotify_rm_watch(t->ifd, ev.wd);
                    t->watches[i].wd = -1;
                }
            }
            off += sizeof ev + ev.len;
        }
    }
}

/* ---- open files --------------------------------------------------------- */

/* Appends an open file positioned at offset; the caller has made room and
 * decides whether it is the current file. */
static struct tfile *file_add(tw_tail_t *t, struct input *in, int fd, const struct stat *st,
                              uint64_t offset)
{
    if (in->nfiles >= TW_TAIL_MAX_FILES)
        tw_die("tail: input %s: file table overflow", in->name);
    if (offset > 0 && lseek(fd, (off_t)offset, SEEK_SET) == (off_t)-1) {
        tw_warn("input %s: cannot seek %s (inode %llu) to %llu (%s); reading from 0",
                in->name, in->path, ull((uint64_t)st->st_ino), ull(offset), strerror(errno));
        offset = 0;
        lseek(fd, 0, SEEK_SET);
    }
    struct tfile *f = &in->files[in->nfiles++];
    f->fd = fd;
    f->dev = (uint64_t)st->st_dev;
    f->ino = (uint64_t)st->st_ino;
    f->base = offset;
    f->size = (uint64_t)st->st_size;
    f->last_data_ns = tw_mono_ns();
    f->lb = tw_linebuf_new(t->o.max_line, t->o.block);
    return f;
}

/* Closes files[i]. With callbacks, an unterminated tail that will never be
 * completed is reported; tw_tail_remove/free close silently. */
static void file_close(struct input *in, size_t i, bool callbacks)
{
    struct tfile *f = &in->files[i];
    if (callbacks && tw_linebuf_pending(f->lb) > 0)
        emit_skip(in, TW_SKIP_PARTIAL);
    close(f->fd);
    tw_linebuf_free(f->lb);
    if (in->has_cur && i + 1 == in->nfiles)
        in->has_cur = false;
    memmove(&in->files[i], &in->files[i + 1], (in->nfiles - i - 1) * sizeof *f);
    in->nfiles--;
}

/* Moves files[i] to the end and makes it the current file. */
static void make_current(struct input *in, size_t i)
{
    struct tfile f = in->files[i];
    memmove(&in->files[i], &in->files[i + 1], (in->nfiles - i - 1) * sizeof f);
    in->files[in->nfiles - 1] = f;
    in->has_cur = true;
}

static void hand_out_lines(struct input *in, struct tfile *f)
{
    const char *line;
    size_t len;
    tw_line_status_t s;
    while ((s = tw_linebuf_next(f->lb, &line, &len)) != TW_LINE_NONE) {
        if (s == TW_LINE_OK)
            in->h->on_line(in->ctx, line, len);
        else
            emit_skip(in, TW_SKIP_TOO_LONG);
    }
    if (in->h->on_lines_done)
        in->h->on_lines_done(in->ctx);
}

/*
 * Reads f in blocks and hands out its lines until EOF or until another block
 * could overshoot budget (a fill reads at most one block, so at most budget
 * bytes are read; budget >= block is guaranteed by tw_tail_new).
 */
static uint64_t file_read(const tw_tail_t *t, struct input *in, struct tfile *f,
                          uint64_t budget, read_end_t *end)
{
    uint64_t total = 0;
    *end = READ_BUDGET;
    while (budget - total >= t->o.block) {
        ssize_t r = tw_linebuf_fill(f->lb, f->fd);
        if (r == 0 || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
            *end = READ_EOF;
            break;
        }
        if (r < 0) {
            tw_log_limited(&in->lim_io, TW_LOG_WARN, "input %s: reading %s (inode %llu) failed: %s",
                           in->name, in->path, ull(f->ino), strerror(errno));
            report_error(in, TW_TAIL_ERR_READ);
            *end = READ_ERROR;
            break;
        }
        total += (uint64_t)r;
        hand_out_lines(in, f);
    }
    return total;
}

/* copytruncate (or any shrink below what was read): restart at 0. */
static void file_truncated(struct input *in, struct tfile *f)
{
    tw_info("input %s: %s (inode %llu) truncated from %llu to %llu bytes; reading from 0",
            in->name, in->path, ull(f->ino), ull(read_pos(f)), ull(f->size));
    if (tw_linebuf_pending(f->lb) > 0)
        emit_skip(in, TW_SKIP_PARTIAL);
    emit_rotate(in, TW_ROTATE_TRUNCATE);
    tw_linebuf_reset(f->lb);
    f->base = 0;
    if (lseek(f->fd, 0, SEEK_SET) == (off_t)-1)
        tw_log_limited(&in->lim_io, TW_LOG_WARN, "input %s: cannot rewind %s (inode %llu): %s",
                       in->name, in->path, ull(f->ino), strerror(errno));
}

/*
 * Makes room for one more file: the oldest drainer is read to its end, past
 * the budget, and closed early. Only reached when rotations outpace
 * rotate_wait_ms by TW_TAIL_MAX_FILES.
 */
static void make_room(tw_tail_t *t, struct input *in)
{
    while (in->nfiles >= TW_TAIL_MAX_FILES) {
        tw_warn("input %s: %d files open; closing the oldest rotated one (inode %llu) early",
                in->name, TW_TAIL_MAX_FILES, ull(in->files[0].ino));
        read_end_t end;
        file_read(t, in, &in->files[0], UINT64_MAX, &end);
        file_close(in, 0, true);
    }
}

/* Opens the file now at the path as the current file. at_end: start after
 * its last newline (first sight of a pre-existing file), else at 0. */
static void open_current(tw_tail_t *t, struct input *in, bool at_end)
{
    struct stat st;
    int fd = open_regular(AT_FDCWD, in->path, &st);
    if (fd < 0) {
        if (errno != ENOENT && errno != ENOTDIR) {
            tw_log_limited(&in->lim_io, TW_LOG_WARN, "input %s: cannot open %s: %s", in->name,
                           in->path, open_error());
            report_error(in, TW_TAIL_ERR_OPEN);
        }
        return;
    }
    ssize_t k = find_open(in, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
    if (k >= 0) {
        /* A drainer came back to the path (or the path was swapped under the
         * stat): keep the fd we have, never a second one. */
        close(fd);
        make_current(in, (size_t)k);
        return;
    }
    make_room(t, in);
    uint64_t off = at_end ? offset_after_last_newline(fd, (uint64_t)st.st_size, t->o.max_line)
                          : 0;
    file_add(t, in, fd, &st, off);
    in->has_cur = true;
    tw_info("input %s: following %s (inode %llu) from offset %llu", in->name, in->path,
            ull((uint64_t)st.st_ino), ull(off));
}

/* The current file stops being current: it drains from now on. */
static void demote_current(struct input *in, int64_t now, tw_rotation_t why)
{
    struct tfile *cur = &in->files[in->nfiles - 1];
    in->has_cur = false;
    cur->last_data_ns = now;
    tw_info("input %s: %s rotated (%s); draining inode %llu", in->name, in->path,
            tw_rotation_name(why), ull(cur->ino));
    emit_rotate(in, why);
}

/* Applies what stat(path) says to the current file (see the table above). */
/* How the current file left the path: if it still has a name somewhere it
 * was renamed (logrotate's create mode, whether or not the new file exists
 * yet); with no name left it was deleted (and maybe recreated). */
static tw_rotation_t departure_kind(const struct input *in)
{
    struct stat st;
    const struct tfile *cur = &in->files[in->nfiles - 1];
    if (fstat(cur->fd, &st) == 0 && st.st_nlink == 0)
        return TW_ROTATE_DELETE;
    return TW_ROTATE_RENAME;
}

static void check_path(tw_tail_t *t, struct input *in, int64_t now)
{
    struct stat st;
    if (stat(in->path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            if (in->has_cur)
                demote_current(in, now, departure_kind(in));
        } else {
            tw_log_limited(&in->lim_io, TW_LOG_WARN, "input %s: cannot stat %s: %s", in->name,
                           in->path, strerror(errno));
            report_error(in, TW_TAIL_ERR_STAT);
        }
        return;
    }
    if (in->has_cur) {
        struct tfile *cur = &in->files[in->nfiles - 1];
        if (same_file(cur, &st)) {
            cur->size = (uint64_t)st.st_size;
            if (cur->size < read_pos(cur))
                file_truncated(in, cur);
            return;
        }
        demote_current(in, now, departure_kind(in));
    }
    if (!S_ISREG(st.st_mode)) {
        tw_log_limited(&in->lim_io, TW_LOG_WARN, "input %s: %s is not a regular file", in->name,
                       in->path);
        report_error(in, TW_TAIL_ERR_NOT_REGULAR);
        return;
    }
    open_current(t, in, false);
}

static uint64_t poll_input(tw_tail_t *t, struct input *in)
{
    int64_t now = tw_mono_ns();
    int64_t wait_ns = (int64_t)t->o.rotate_wait_ms * NS_PER_MS;
    uint64_t total = 0;

    check_path(t, in, now);
    size_t i = 0;
    while (i < in->nfiles) {
        struct tfile *f = &in->files[i];
        bool is_cur = in->has_cur && i + 1 == in->nfiles;
        if (!is_cur) {
            struct stat st;
            if (fstat(f->fd, &st) == 0) {
                f->size = (uint64_t)st.st_size;
                if (f->size < read_pos(f))
                    file_truncated(in, f);
            }
        }
        uint64_t n = 0;
        /* Idle files cost one stat per poll, no read. */
        if (f->size > read_pos(f)) {
            read_end_t end;
            n = file_read(t, in, f, t->o.poll_budget, &end);
            if (end == READ_BUDGET)
                t->backlog = true;
        }
        total += n;
        if (n > 0) {
            f->last_data_ns = now;
        } else if (!is_cur && now - f->last_data_ns >= wait_ns) {
            tw_info("input %s: closing drained rotated file (inode %llu) at offset %llu",
                    in->name, ull(f->ino), ull(read_pos(f)));
            file_close(in, i, true);
            continue;
        }
        i++;
    }
    return total;
}

/* ---- restore ------------------------------------------------------------ */

/* Finds a regular file with dev/ino in dir (rotated away from the path, e.g.
 * auth.log -> auth.log.1). Every entry is fstatat'ed: readdir's d_ino is not
 * the st_ino on every filesystem (overlayfs). dirp is opened on first use and
 * shared by the saved positions of one restore. */
static int find_in_dir(const char *dir, DIR **dirp, uint64_t dev, uint64_t ino,
                       struct stat *st)
{
    if (!*dirp) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return -1;
        *dirp = fdopendir(dfd);
        if (!*dirp) {
            close(dfd);
            return -1;
        }
    } else {
        rewinddir(*dirp);
    }
    int dfd = dirfd(*dirp);
    struct dirent *de;
    while ((de = readdir(*dirp)) != NULL) {
        if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
            continue;
        struct stat s;
        if (fstatat(dfd, de->d_name, &s, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(s.st_mode) ||
            (uint64_t)s.st_dev != dev || (uint64_t)s.st_ino != ino)
            continue;
        int fd = open_regular(dfd, de->d_name, st);
        if (fd >= 0 && (uint64_t)st->st_dev == dev && (uint64_t)st->st_ino == ino)
            return fd;
        if (fd >= 0)
            close(fd);
    }
    return -1;
}

/* Resumes one saved file if it can be found; returns its index or -1. */
static ssize_t restore_one(tw_tail_t *t, struct input *in, const tw_tail_pos_t *sp,
                           const struct stat *at_path, DIR **dirp)
{
    if (find_open(in, sp->dev, sp->ino) >= 0)
        return -1;   /* listed twice: one fd per file */
    bool is_at_path = at_path && (uint64_t)at_path->st_dev == sp->dev &&
                      (uint64_t)at_path->st_ino == sp->ino;
    /* The last slot is kept for the file at the path. */
    if (!is_at_path && in->nfiles + 1 >= TW_TAIL_MAX_FILES) {
        tw_warn("input %s: too many saved files; not resuming inode %llu", in->name,
                ull(sp->ino));
        return -1;
    }
    struct stat st;
    int fd = -1;
    if (is_at_path) {
        fd = open_regular(AT_FDCWD, in->path, &st);
        if (fd >= 0 && ((uint64_t)st.st_dev != sp->dev || (uint64_t)st.st_ino != sp->ino)) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0)
        fd = find_in_dir(in->dir, dirp, sp->dev, sp->ino, &st);
    if (fd < 0) {
        tw_warn("input %s: saved file (inode %llu) is neither at %s nor in %s; its unread "
                "lines cannot be recovered", in->name, ull(sp->ino), in->path, in->dir);
        return -1;
    }
    uint64_t off = sp->offset;
    uint64_t h;
    bool matches = (uint64_t)st.st_size >= off &&
                   fingerprint(fd, off, sp->hash_len, &h) == 0 && h == sp->hash;
    if (!matches && !is_at_path) {
        /* Found only by inode number elsewhere in the directory: with other
         * bytes it is an unrelated file that reuses the inode, not our
         * rotated log. Reading it would count foreign lines. */
        tw_warn("input %s: a file in %s reuses the saved inode %llu but not its content; "
                "ignoring it (the saved file's unread lines cannot be recovered)",
                in->name, in->dir, ull(sp->ino));
        close(fd);
        return -1;
    }
    if (!matches) {
        tw_warn("input %s: saved offset %llu of %s (inode %llu) does not match the file any "
                "more (size %llu or fingerprint differs); reading it from 0", in->name,
                ull(off), is_at_path ? in->path : in->dir, ull(sp->ino),
                ull((uint64_t)st.st_size));
        off = 0;
    }
    file_add(t, in, fd, &st, off);
    tw_info("input %s: resuming inode %llu at offset %llu", in->name, ull(sp->ino), ull(off));
    return (ssize_t)in->nfiles - 1;
}

/*
 * Saved drainers are older than the saved current file, so they are
 * restored first, each in the given (oldest first) order. Whichever restored
 * file is at the path now becomes current; if none is, the file at the path
 * appeared while we were down and is read from 0.
 */
static void restore(tw_tail_t *t, struct input *in, const tw_tail_pos_t *saved, size_t nsaved)
{
    struct stat pst;
    bool path_ok = stat(in->path, &pst) == 0 && S_ISREG(pst.st_mode);
    DIR *dirp = NULL;
    ssize_t cur = -1;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < nsaved; i++) {
            if (saved[i].current != (pass == 1))
                continue;
            ssize_t k = restore_one(t, in, &saved[i], path_ok ? &pst : NULL, &dirp);
            if (k >= 0 && path_ok && same_file(&in->files[k], &pst))
                cur = k;
        }
    }
    if (dirp)
        closedir(dirp);
    int64_t now = tw_mono_ns();
    for (size_t i = 0; i < in->nfiles; i++)
        in->files[i].last_data_ns = now;
    if (cur >= 0)
        make_current(in, (size_t)cur);
    else
        open_current(t, in, false);
}

/* ---- public API --------------------------------------------------------- */

tw_tail_t *tw_tail_new(const tw_tail_opts_t *opts, tw_err_t *err)
{
    tw_tail_opts_t o;
    tw_tail_opts_default(&o);
    if (opts) {
        o = *opts;
        /* Zero sizes mean "default", so a zeroed struct is usable. */
        if (o.max_line == 0)
            o.max_line = TW_LINEBUF_DEFAULT_MAX_LINE;
        if (o.block == 0)
            o.block = TW_LINEBUF_DEFAULT_BLOCK;
        if (o.poll_budget == 0)
            o.poll_budget = DEFAULT_POLL_BUDGET;
    }
    if (o.rotate_wait_ms < 0) {
        tw_err_set(err, "tail: rotate_wait_ms must be >= 0, got %d", o.rotate_wait_ms);
        return NULL;
    }
    if (o.max_line > SIZE_MAX - o.block) {
        tw_err_set(err, "tail: max_line %zu + block %zu is too large", o.max_line, o.block);
        return NULL;
    }
    /* A file must be able to make progress: at least one block per poll. */
    if (o.poll_budget < o.block)
        o.poll_budget = o.block;

    tw_tail_t *t = tw_xcalloc(1, sizeof *t);
    t->o = o;
    t->ifd = -1;
    if (o.use_inotify) {
        t->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (t->ifd < 0)
            tw_warn("tail: inotify unavailable (%s); following files by polling only",
                    strerror(errno));
    }
    return t;
}

static void input_free(tw_tail_t *t, struct input *in)
{
    while (in->nfiles > 0)
        file_close(in, in->nfiles - 1, false);
    watch_release(t, in->dir);
    free(in->name);
    free(in->path);
    free(in->dir);
    free(in);
}

void tw_tail_free(tw_tail_t *t)
{
    if (!t)
        return;
    while (t->ninputs > 0)
        input_free(t, t->inputs[--t->ninputs]);
    free(t->inputs);
    for (size_t i = 0; i < t->nwatches; i++)
        free(t->watches[i].dir);
    free(t->watches);
    if (t->ifd >= 0)
        close(t->ifd);
    free(t);
}

int tw_tail_add(tw_tail_t *t, const char *name, const char *path, bool from_start,
                const tw_tail_pos_t *saved, size_t nsaved, const tw_tail_handler_t *handler,
                void *ctx, tw_err_t *err)
{
    if (!t || !name || !name[0] || !path || !path[0])
        return tw_err_set(err, "tail: an input needs a name and a path");
    if (!handler || !handler->on_line)
        return tw_err_set(err, "tail: input %s: no line handler", name);
    if (nsaved > 0 && !saved)
        return tw_err_set(err, "tail: input %s: %zu saved positions but no array", name,
                          nsaved);
    if (find_input(t, name, NULL))
        return tw_err_set(err, "tail: duplicate input name %s", name);

    struct input *in = tw_xcalloc(1, sizeof *in);
    in->name = tw_xstrdup(name);
    in->path = tw_xstrdup(path);
    in->dir = tw_dirname(path);
    in->h = handler;
    in->ctx = ctx;
    watch_acquire(t, in->dir);

    if (nsaved > 0)
        restore(t, in, saved, nsaved);
    else
        open_current(t, in, !from_start);

    t->inputs = tw_xrealloc(t->inputs, (t->ninputs + 1) * sizeof *t->inputs);
    t->inputs[t->ninputs++] = in;
    return 0;
}

int tw_tail_remove(tw_tail_t *t, const char *name)
{
    size_t idx = 0;
    struct input *in = t && name ? find_input(t, name, &idx) : NULL;
    if (!in)
        return -1;
    memmove(&t->inputs[idx], &t->inputs[idx + 1], (t->ninputs - idx - 1) * sizeof *t->inputs);
    t->ninputs--;
    input_free(t, in);
    return 0;
}

uint64_t tw_tail_poll(tw_tail_t *t)
{
    if (!t)
        return 0;
    /* Drain before stat'ing: an event arriving after this point stays queued
     * and wakes the next tw_tail_wait, so no wake-up is lost. */
    drain_events(t);
    for (size_t i = 0; i < t->nwatches; i++)
        watch_try(t, &t->watches[i]);
    t->backlog = false;
    uint64_t total = 0;
    for (size_t i = 0; i < t->ninputs; i++)
        total += poll_input(t, t->inputs[i]);
    return total;
}

/*
 * When the last poll left a file at its budget there is data to read right
 * now, so this does not sleep (returns 0): a caller that alternates
 * poll/wait keeps up with a busy file instead of reading one budget per
 * timeout. A negative timeout is treated as 0.
 */
int tw_tail_wait(tw_tail_t *t, int timeout_ms) { return tw_tail_wait_fd(t, timeout_ms, -1); }

int tw_tail_wait_fd(tw_tail_t *t, int timeout_ms, int extra_fd)
{
    if (!t || t->backlog)
        return 0;
    if (timeout_ms < 0)
        timeout_ms = 0;
    /* Level-triggered and not drained here: the next tw_tail_poll drains, so
     * calling wait twice without a poll cannot sleep through an event. */
    struct pollfd p[2] = {{.fd = t->ifd, .events = POLLIN, .revents = 0},
                          {.fd = extra_fd, .events = POLLIN, .revents = 0}};
    int r = poll(p, 2, timeout_ms);   /* a negative fd is ignored by poll */
    if (r <= 0)
        return 0;
    return (p[0].revents & POLLIN) ? 1 : (p[1].revents & POLLIN) ? 2 : 0;
}

size_t tw_tail_positions(tw_tail_t *t, const char *name, tw_tail_pos_t *out, size_t max)
{
    struct input *in = t && name ? find_input(t, name, NULL) : NULL;
    if (!in || !out)
        return 0;
    size_t n = 0;
    for (size_t k = 0; k < in->nfiles && n < max; k++) {
        /* Current first, then drainers oldest first. */
        size_t i = in->has_cur ? (k == 0 ? in->nfiles - 1 : k - 1) : k;
        const struct tfile *f = &in->files[i];
        tw_tail_pos_t *p = &out[n++];
        p->dev = f->dev;
        p->ino = f->ino;
        p->offset = committed_pos(f);
        p->hash_len = p->offset < FINGERPRINT_MAX ? (uint32_t)p->offset : FINGERPRINT_MAX;
        fingerprint(f->fd, p->offset, p->hash_len, &p->hash);
        p->current = in->has_cur && i + 1 == in->nfiles;
    }
    return n;
}

uint64_t tw_tail_lag_bytes(const tw_tail_t *t, const char *name)
{
    const struct input *in = t && name ? find_input(t, name, NULL) : NULL;
    if (!in)
        return 0;
    uint64_t lag = 0;
    for (size_t i = 0; i < in->nfiles; i++) {
        const struct tfile *f = &in->files[i];
        uint64_t pos = read_pos(f);
        if (f->size > pos)
            lag += f->size - pos;
    }
    return lag;
}
