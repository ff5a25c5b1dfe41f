/*
 * replay_main.c — runs a fuzz target's LLVMFuzzerTestOneInput over files,
 * without libFuzzer, so that the committed corpus and every regression input
 * are replayed by ctest in every build (plain, ASan+UBSan) and with any
 * compiler.
 *
 * Usage: fuzz_replay_TARGET PATH...
 * Each PATH is a file or a directory whose regular files (not recursive,
 * names sorted, hidden files skipped) are run in order. A missing directory
 * is skipped (a target may have no regressions yet), but running no input
 * at all is a failure, so a mistyped path cannot pass silently. Each input
 * is handed over in an exactly-sized heap buffer, as libFuzzer does, so ASan
 * sees one-byte over-reads. A finding aborts the process (FUZZ_CHECK or a
 * sanitizer), after the file's name has been printed.
 */
#include "fuzz_common.h"

#include <dirent.h>

/* Optional in a target; weak so that targets without set-up link too. */
#pragma weak LLVMFuzzerInitialize

static size_t replayed;

static void run_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    FUZZ_SETUP(fd >= 0, "%s: %s", path, strerror(errno));
    struct stat st;
    FUZZ_SETUP(fstat(fd, &st) == 0, "%s: %s", path, strerror(errno));
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    FUZZ_SETUP(buf != NULL, "out of memory");
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        FUZZ_SETUP(r > 0, "%s: short read", path);
        got += (size_t)r;
    }
    close(fd);
    fprintf(stderr, "replay %s (%zu bytes)\n", path, n);
    /* libFuzzer passes a non-NULL pointer even for an empty input. */
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    replayed++;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: skipping %s: %s\n", dir, strerror(errno));
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof *names);
            FUZZ_SETUP(names != NULL, "out of memory");
        }
        names[n] = malloc(strlen(dir) + strlen(de->d_name) + 2);
        FUZZ_SETUP(names[n] != NULL, "out of memory");
        sprintf(names[n], "%s/%s", dir, de->d_name);
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
            run_file(names[i]);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISREG(st.st_mode))
            run_file(argv[i]);
        else
            run_dir(argv[i]);
    }
    if (replayed == 0) {
        fprintf(stderr, "replay: no input found in the given paths\n");
        return 1;
    }
    printf("replayed %zu inputs without a finding\n", replayed);
    return 0;
}
