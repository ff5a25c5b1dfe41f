/*
 * fuzz_common.h — helpers shared by the libFuzzer targets in tests/fuzz/.
 *
 * Each fuzz_*.c defines LLVMFuzzerTestOneInput (and, when it needs set-up,
 * LLVMFuzzerInitialize). The same source links either with libFuzzer
 * (-fsanitize=fuzzer, TW_FUZZ=ON) or with replay_main.c, which feeds it every
 * file of the committed corpus and regressions in a normal ctest run.
 *
 * Invariant violations call FUZZ_CHECK, which prints the condition and
 * aborts: libFuzzer then saves the input as a crash, exactly as for a
 * sanitizer report.
 *
 * Everything is static inline so that each target stays one file and
 * unused helpers cost nothing (and raise no -Wunused-function).
 */
#ifndef TW_FUZZ_COMMON_H
#define TW_FUZZ_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__,      \
                    #cond);                                                                \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Set-up failures (not findings): say so and exit without a crash report. */
#define FUZZ_SETUP(cond, ...)                                                              \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz set-up failed: " __VA_ARGS__);                           \
            fputc('\n', stderr);                                                           \
            exit(2);                                                                       \
        }                                                                                  \
    } while (0)

#ifndef TW_FUZZ_SOURCE_DIR
#define TW_FUZZ_SOURCE_DIR "."
#endif

/* The source tree (for rules/formats): $TW_SOURCE_DIR, else the path
 * compiled in by tests/fuzz/CMakeLists.txt. */
static inline const char *fuzz_source_dir(void)
{
    const char *d = getenv("TW_SOURCE_DIR");
    return d && d[0] ? d : TW_FUZZ_SOURCE_DIR;
}

/* A private scratch directory for the process, removed at exit; one left
 * behind by a process that died on a finding is removed by the next start.
 * tmpfs (/dev/shm) is preferred: some targets write files per input and
 * tw_write_file_atomic fsyncs. */
static char fuzz_tmp[256];

static inline void fuzz_tmpdir_remove(void)
{
    char cmd[300];
    if (!fuzz_tmp[0])
        return;
    /* Only our own mkdtemp result, never a caller-supplied path. */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", fuzz_tmp);
}

/* Directories left by fuzz processes that died on a finding (in -fork mode,
 * one per crash): twfuzz.PID.* whose PID no longer exists. */
static inline void fuzz_tmpdir_sweep(const char *base)
{
    DIR *d = opendir(base);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        int pid;
        if (sscanf(de->d_name, "twfuzz.%d.", &pid) != 1 || pid <= 0)
            continue;
        if (kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s/%s'", base, de->d_name);
        if (strchr(de->d_name, '\'') == NULL && system(cmd) != 0)
            fprintf(stderr, "fuzz: could not remove %s/%s\n", base, de->d_name);
    }
    closedir(d);
}

static inline const char *fuzz_tmpdir(void)
{
    if (fuzz_tmp[0])
        return fuzz_tmp;
    const char *base = getenv("TW_FUZZ_TMPDIR");
    if (!base || !base[0])
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    fuzz_tmpdir_sweep(base);
    snprintf(fuzz_tmp, sizeof fuzz_tmp, "%s/twfuzz.%d.XXXXXX", base, (int)getpid());
    FUZZ_SETUP(mkdtemp(fuzz_tmp) != NULL, "mkdtemp %s: %s", fuzz_tmp, strerror(errno));
    atexit(fuzz_tmpdir_remove);
    return fuzz_tmp;
}

/* Replaces path with exactly data[0..n). */
static inline void fuzz_write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_SETUP(fd >= 0, "open %s: %s", path, strerror(errno));
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        FUZZ_SETUP(w > 0, "write %s: %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

/*
 * A copy of data whose last byte sits just before a PROT_NONE page, so that
 * reading even one byte past the end faults, also inside libraries that are
 * not instrumented (libcjson, libpcre2's JIT). ASan only sees such reads when
 * they go through an interceptor. The mapping is made once and reused; the
 * returned pointer is valid until the next call.
 */
#define FUZZ_GUARD_MAX (1u << 20)

static inline const char *fuzz_guarded_copy(const void *data, size_t n)
{
    static char *region;
    static size_t page, usable;
    if (!region) {
        page = (size_t)sysconf(_SC_PAGESIZE);
        usable = (FUZZ_GUARD_MAX + page - 1) / page * page;
        void *m = mmap(NULL, usable + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        FUZZ_SETUP(m != MAP_FAILED, "mmap: %s", strerror(errno));
        region = m;
        FUZZ_SETUP(mprotect(region + usable, page, PROT_NONE) == 0, "mprotect: %s",
                   strerror(errno));
    }
    FUZZ_SETUP(n <= usable, "input of %zu bytes is larger than the guard region", n);
    char *p = region + usable - n;
    if (n)
        memcpy(p, data, n);
    return p;
}

/* A NUL-terminated heap copy (caller frees). */
static inline char *fuzz_strndup(const void *data, size_t n)
{
    char *s = malloc(n + 1);
    FUZZ_SETUP(s != NULL, "out of memory");
    if (n)
        memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* Reads every byte of s[0..n) so that ASan reports a slice that points at
 * freed or foreign memory where it is produced, not where it is used. */
static inline unsigned fuzz_touch(const void *s, size_t n)
{
    const volatile unsigned char *p = s;
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += p[i];
    return sum;
}

#endif
