/*
 * fuzz_state.c — libFuzzer target: the offsets snapshot (state_dir/
 * offsets.json) through tw_state_load, and what loads back through
 * tw_state_save + tw_state_load.
 *
 * Input: the bytes of offsets.json, written into a private temp dir used as
 * state_dir.
 *
 * Checks: a failure returns -1 with NULL and a message; a success has at most
 * TW_TAIL_MAX_FILES positions per input, non-empty names and paths, and
 * tw_state_find finds the first input of each name. The loaded state, saved
 * and loaded again, is identical field by field (a save never loses what a
 * load accepted).
 */
#include "fuzz_common.h"

#include "state.h"

static char load_dir[512], save_dir[512], path[600];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = fuzz_tmpdir();
    snprintf(load_dir, sizeof load_dir, "%s/load", dir);
    snprintf(save_dir, sizeof save_dir, "%s/save", dir);
    snprintf(path, sizeof path, "%s/%s", load_dir, TW_STATE_OFFSETS_FILE);
    FUZZ_SETUP(mkdir(load_dir, 0700) == 0 || errno == EEXIST, "mkdir %s", load_dir);
    FUZZ_SETUP(mkdir(save_dir, 0700) == 0 || errno == EEXIST, "mkdir %s", save_dir);
    return 0;
}

static void same_input(const tw_state_input_t *a, const tw_state_input_t *b)
{
    FUZZ_CHECK(strcmp(a->name, b->name) == 0);
    FUZZ_CHECK(strcmp(a->path, b->path) == 0);
    FUZZ_CHECK(a->npos == b->npos);
    for (size_t j = 0; j < a->npos; j++) {
        const tw_tail_pos_t *p = &a->pos[j], *q = &b->pos[j];
        FUZZ_CHECK(p->dev == q->dev && p->ino == q->ino && p->offset == q->offset);
        FUZZ_CHECK(p->hash == q->hash && p->hash_len == q->hash_len);
        FUZZ_CHECK(p->current == q->current);
    }
    FUZZ_CHECK(memcmp(&a->stats, &b->stats, sizeof a->stats) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        LLVMFuzzerInitialize(NULL, NULL);
    fuzz_write_file(path, data, size);

    tw_state_t *s = (tw_state_t *)1;
    tw_err_t err;
    err.msg[0] = '\0';
    if (tw_state_load(load_dir, &s, &err) != 0) {
        FUZZ_CHECK(s == NULL);
        FUZZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
        FUZZ_CHECK(err.msg[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(s != NULL);
    for (size_t i = 0; i < s->ninputs; i++) {
        const tw_state_input_t *in = &s->inputs[i];
        FUZZ_CHECK(in->name && in->name[0] && in->path && in->path[0]);
        FUZZ_CHECK(in->npos <= TW_TAIL_MAX_FILES);
        const tw_state_input_t *found = tw_state_find(s, in->name);
        FUZZ_CHECK(found && found <= in && strcmp(found->name, in->name) == 0);
    }

    FUZZ_CHECK(tw_state_save(save_dir, s->inputs, s->ninputs, &err) == 0);
    tw_state_t *t = NULL;
    FUZZ_CHECK(tw_state_load(save_dir, &t, &err) == 0);
    FUZZ_CHECK(t->ninputs == s->ninputs);
    for (size_t i = 0; i < s->ninputs; i++)
        same_input(&s->inputs[i], &t->inputs[i]);
    tw_state_free(t);
    tw_state_free(s);
    return 0;
}
