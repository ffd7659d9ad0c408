/*
 * test_state.c: the edge's state-file reader (include/pg_state.c) against
 * what a broken or hostile folder can hold at the state file's path.
 */

#include <fcntl.h>          /* open */
#include <signal.h>         /* alarm: a hang fails the test */
#include <stdio.h>          /* snprintf */
#include <stdlib.h>         /* mkdtemp, free */
#include <string.h>         /* strstr, strlen */
#include <sys/stat.h>       /* mkfifo, mkdir */
#include <unistd.h>         /* symlink, unlink, rmdir, ftruncate, alarm */
#include "pg_state.h"       /* what is tested */
#include "tap.h"            /* t_ok */


#define T_SNAPSHOT  "{\"revision\":7,\"environments\":{\"production\":" \
                    "{\"customer_portal\":{\"rollout\":12.5}}}}"


static char  t_dir[64];


static void
t_write(const char *path, const char *text)
{
    int  fd;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t) strlen(text))
    {
        t_diag("cannot write %s", path);
    }

    if (fd != -1) {
        (void) close(fd);
    }
}


static void
t_expect(const char *path, size_t max, pg_state_result_t want,
    const char *text, const char *desc)
{
    size_t              size;
    time_t              mtime;
    pg_error_t          err;
    unsigned char      *blob;
    pg_state_result_t   rc;

    err.text[0] = '\0';

    rc = pg_state_read(path, max, &blob, &size, &mtime, &err);

    if (!t_ok(rc == want && (rc == PG_STATE_LOADED || blob == NULL)
              && (text == NULL || strstr(err.text, text) != NULL), "%s",
              desc))
    {
        t_diag("result %d (want %d), error: %s", (int) rc, (int) want,
               err.text);
    }

    free(blob);
}


int
main(void)
{
    int             fd;
    char            path[128], link[128];
    size_t          size;
    time_t          mtime;
    pg_snap_t       snap;
    pg_error_t      err;
    unsigned char  *blob;

    /* a reader that blocks fails the whole program, not just one test */
    alarm(20);

    snprintf(t_dir, sizeof(t_dir), "/tmp/pg-state-XXXXXX");

    if (mkdtemp(t_dir) == NULL) {
        printf("Bail out! mkdtemp failed\n");
        return 1;
    }

    snprintf(path, sizeof(path), "%s/state.json", t_dir);
    snprintf(link, sizeof(link), "%s/link.json", t_dir);

    t_expect(path, 1 << 20, PG_STATE_MISSING, "does not exist yet",
             "a missing file is MISSING: a first start");

    t_write(path, T_SNAPSHOT);

    if (t_ok(pg_state_read(path, 1 << 20, &blob, &size, &mtime, &err)
             == PG_STATE_LOADED, "a valid snapshot is LOADED"))
    {
        t_ok(pg_snap_open(&snap, blob, size, &err) == PG_OK
             && pg_snap_revision(&snap) == 7 && mtime > 0,
             "the loaded blob opens with the file's revision and mtime");
        free(blob);
    }

    t_expect(path, strlen(T_SNAPSHOT) - 1, PG_STATE_UNUSABLE,
             "more than the", "a file one byte over max is UNUSABLE");
    t_expect(path, strlen(T_SNAPSHOT), PG_STATE_LOADED, NULL,
             "a file of exactly max bytes is LOADED");

    t_write(path, "{\"revision\":7,");
    t_expect(path, 1 << 20, PG_STATE_CORRUPT, "invalid JSON",
             "truncated JSON is CORRUPT, with the parser's message");

    t_write(path, "{\"revision\":7,\"environments\":{\"production\":"
                  "{\"f\":{\"rolout\":1}}}}");
    t_expect(path, 1 << 20, PG_STATE_CORRUPT, "rolout",
             "a snapshot the core refuses is CORRUPT and names the key");

    t_write(path, "");
    t_expect(path, 1 << 20, PG_STATE_CORRUPT, NULL,
             "an empty file is CORRUPT");

    /* a FIFO with no writer: open() would block without O_NONBLOCK */
    (void) unlink(path);
    if (mkfifo(path, 0600) == 0) {
        t_expect(path, 1 << 20, PG_STATE_UNUSABLE, "FIFO",
                 "a FIFO is UNUSABLE at once, it does not hang");
    } else {
        t_ok(0, "mkfifo");
    }
    (void) unlink(path);

    if (mkdir(path, 0700) == 0) {
        t_expect(path, 1 << 20, PG_STATE_UNUSABLE, "directory",
                 "a directory is UNUSABLE and said to be one, not "
                 "\"invalid JSON\"");
        (void) rmdir(path);
    } else {
        t_ok(0, "mkdir");
    }

    /* a 200 GB sparse file: refused by size, nothing is allocated */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd != -1 && ftruncate(fd, 200LL * 1024 * 1024 * 1024) == 0) {
        t_expect(path, 16 << 20, PG_STATE_UNUSABLE, "214748364800 bytes",
                 "a 200 GB sparse file is UNUSABLE, not a malloc failure");
    } else {
        t_ok(0, "ftruncate to 200 GB");
    }
    if (fd != -1) {
        (void) close(fd);
    }
    (void) unlink(path);

    /* the master reads as root: it must not follow a planted link */
    t_write(link, T_SNAPSHOT);
    if (symlink(link, path) == 0) {
        t_expect(path, 1 << 20, PG_STATE_UNUSABLE, "symbolic link",
                 "a symbolic link is UNUSABLE, never followed");
    } else {
        t_ok(0, "symlink");
    }
    (void) unlink(path);
    (void) unlink(link);

    if (symlink("/dev/zero", path) == 0) {
        t_expect(path, 1 << 20, PG_STATE_UNUSABLE, NULL,
                 "a link to /dev/zero is UNUSABLE");
    }
    (void) unlink(path);

    (void) rmdir(t_dir);

    printf("1..%d\n", t_count);

    if (t_failed) {
        printf("# failed %d of %d tests\n", t_failed, t_count);
    }

    return t_failed ? 1 : 0;
}
