/*
 * fuzz_state.c: the edge's state-file reader, pg_state_read(), with the
 * bytes as the file's content. The reader takes regular files only and
 * refuses symbolic links, so the bytes go to a real file in a folder of
 * this process's own (under $TMPDIR or /tmp, removed at exit).
 *
 * When it loads: the blob opens, the overrides are well-formed, the file
 * is refused when its size is over the cap, and what the module writes
 * back (pg_state_dump) reads again to the same blob and overrides. When
 * the snapshot is corrupt: no blob, a message, and the overrides that
 * could be read are well-formed.
 *
 * The bytes after a first "\0PGJ" are the journal beside the state file
 * (state.json.journal), replayed when the state file names it: whatever
 * it holds, the reader never fails for it, and what it loads opens.
 */

#define _GNU_SOURCE        /* memmem */
#include <fcntl.h>          /* open */
#include <stdio.h>          /* snprintf */
#include <stdlib.h>         /* atexit, free, getenv, mkdtemp */
#include <string.h>         /* memcmp, memmem, strlen */
#include <unistd.h>         /* pwrite, write, ftruncate, unlink, rmdir */
#include "fuzz.h"           /* FUZZ_CHECK, LLVMFuzzerTestOneInput */
#include "pg_state.h"       /* the API under test */


/* The cap the module passes: far above any input the fuzzer makes. */
#define STATE_MAX  (16 * 1024 * 1024)


static int   state_fd = -1;
static char  state_dir[256];
static char  state_path[300];
static char  journal_path[320];


static void
state_cleanup(void)
{
    (void) unlink(journal_path);
    (void) unlink(state_path);
    (void) rmdir(state_dir);
}


/* The journal holds len bytes of data, or is missing (data NULL). */
static void
journal_write(const void *data, size_t len)
{
    int  fd;

    (void) unlink(journal_path);

    if (data == NULL) {
        return;
    }

    fd = open(journal_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd != -1
               && (len == 0 || write(fd, data, len) == (ssize_t) len),
               "cannot write %s", journal_path);
    (void) close(fd);
}


/* Make the file hold len bytes of data. */
static void
state_write(const void *data, size_t len)
{
    const char  *tmp;

    if (state_fd == -1) {
        tmp = getenv("TMPDIR");
        snprintf(state_dir, sizeof(state_dir), "%s/pg-fuzz-state-XXXXXX",
                 tmp && tmp[0] ? tmp : "/tmp");
        FUZZ_CHECK(mkdtemp(state_dir) != NULL, "mkdtemp failed");
        snprintf(state_path, sizeof(state_path), "%s/state.json", state_dir);
        snprintf(journal_path, sizeof(journal_path), "%s" PG_JOURNAL_SUFFIX,
                 state_path);

        state_fd = open(state_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                        0600);
        FUZZ_CHECK(state_fd != -1, "cannot create %s", state_path);
        atexit(state_cleanup);
    }

    FUZZ_CHECK(ftruncate(state_fd, 0) == 0
               && (len == 0
                   || pwrite(state_fd, data, len, 0) == (ssize_t) len),
               "cannot write %s", state_path);
}


/* Overrides as pg_override_set() makes them. */
static void
state_check_overrides(const pg_state_t *state)
{
    size_t                i;
    const pg_override_t  *o;

    FUZZ_CHECK(state->noverrides <= PG_OVERRIDES_MAX, "too many overrides");

    for (i = 0; i < state->noverrides; i++) {
        o = &state->overrides[i];
        FUZZ_CHECK(pg_valid_name(o->env, strlen(o->env))
                   && pg_valid_name(o->flag, strlen(o->flag))
                   && o->since >= 0
                   && strlen(o->by) <= PG_OVERRIDE_BY_MAX
                   && strlen(o->reason) <= PG_OVERRIDE_REASON_MAX,
                   "override %zu is malformed", i);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 rc;
    char               *text;
    const uint8_t      *sep;
    pg_snap_t           snap;
    pg_error_t          err;
    pg_state_t          state, again;
    pg_state_result_t   res;

    sep = memmem(data, size, "\0PGJ", 4);

    state_write(data, sep ? (size_t) (sep - data) : size);

    if (sep != NULL) {
        journal_write(sep + 4, size - (size_t) (sep - data) - 4);
        size = (size_t) (sep - data);

    } else {
        journal_write(NULL, 0);
    }

    err.text[0] = '\0';
    res = pg_state_read(state_path, STATE_MAX, &state, &err);

    /* a corrupt snapshot keeps the overrides beside it (a break-glass
     * kill must survive it), but never a blob */
    if (res != PG_STATE_LOADED) {
        FUZZ_CHECK(res == PG_STATE_CORRUPT && err.text[0] != '\0'
                   && state.blob == NULL,
                   "a file refused as %d, or without a message", (int) res);
        state_check_overrides(&state);
        return 0;
    }

    rc = pg_snap_open(&snap, state.blob, state.size, &err);
    FUZZ_CHECK(rc == PG_OK, "a loaded snapshot does not open: %s", err.text);
    state_check_overrides(&state);

    /* one byte over the cap: refused before it is read */
    if (size > 0) {
        FUZZ_CHECK(pg_state_read(state_path, size - 1, &again, &err)
                   == PG_STATE_UNUSABLE, "a file over the cap was read");
    }

    /* what the module writes back reads as the same state */
    text = pg_state_dump(&snap, state.overrides, state.noverrides);
    FUZZ_CHECK(text != NULL, "pg_state_dump failed");
    state_write(text, strlen(text));

    res = pg_state_read(state_path, STATE_MAX, &again, &err);
    FUZZ_CHECK(res == PG_STATE_LOADED, "the dumped state is refused: %s",
               err.text);
    FUZZ_CHECK(again.size == state.size
               && memcmp(again.blob, state.blob, state.size) == 0
               && again.noverrides == state.noverrides
               && memcmp(again.overrides, state.overrides,
                         state.noverrides * sizeof(pg_override_t)) == 0,
               "the dumped state reads back as something else");

    free(text);
    free(again.blob);
    free(state.blob);

    return 0;
}
