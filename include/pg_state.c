/*
 * pg_state.c: the edge's state file, read without trusting the path.
 */

#include <errno.h>          /* errno, ENOENT, ELOOP */
#include <fcntl.h>          /* open, O_* */
#include <stdarg.h>         /* va_list */
#include <stdio.h>          /* vsnprintf */
#include <stdlib.h>         /* malloc, free */
#include <string.h>         /* strerror */
#include <sys/stat.h>       /* fstat, S_ISREG */
#include <unistd.h>         /* read, close */
#include "pg_state.h"       /* the API this file implements */


static pg_state_result_t pg_state_fail(pg_error_t *err,
    pg_state_result_t result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


static pg_state_result_t
pg_state_fail(pg_error_t *err, pg_state_result_t result, const char *fmt,
    ...)
{
    va_list  args;

    va_start(args, fmt);
    (void) vsnprintf(err->text, sizeof(err->text), fmt, args);
    va_end(args);

    return result;
}


pg_state_result_t
pg_state_read(const char *path, size_t max, unsigned char **blob,
    size_t *size, time_t *mtime, pg_error_t *err)
{
    int           fd, e;
    char         *text;
    size_t        len, got;
    ssize_t       n;
    struct stat   st;

    *blob = NULL;
    *size = 0;
    *mtime = 0;

    /* O_NONBLOCK: opening a FIFO with no writer would wait for one */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY
                    | O_CLOEXEC);

    if (fd == -1) {
        e = errno;

        if (e == ENOENT) {
            return pg_state_fail(err, PG_STATE_MISSING,
                                 "it does not exist yet");
        }

        if (e == ELOOP) {
            return pg_state_fail(err, PG_STATE_UNUSABLE,
                                 "it is a symbolic link");
        }

        return pg_state_fail(err, PG_STATE_UNUSABLE, "open() failed: %s",
                             strerror(e));
    }

    if (fstat(fd, &st) == -1) {
        e = errno;
        (void) close(fd);
        return pg_state_fail(err, PG_STATE_UNUSABLE, "fstat() failed: %s",
                             strerror(e));
    }

    if (!S_ISREG(st.st_mode)) {
        (void) close(fd);
        return pg_state_fail(err, PG_STATE_UNUSABLE,
                             "it is not a regular file but a %s",
                             S_ISDIR(st.st_mode) ? "directory"
                             : S_ISFIFO(st.st_mode) ? "FIFO"
                             : S_ISSOCK(st.st_mode) ? "socket"
                             : S_ISCHR(st.st_mode) ? "character device"
                             : S_ISBLK(st.st_mode) ? "block device"
                             : "special file");
    }

    if (st.st_size < 0 || (unsigned long long) st.st_size > max) {
        (void) close(fd);
        return pg_state_fail(err, PG_STATE_UNUSABLE,
                             "it has %lld bytes, more than the %zu a "
                             "snapshot for this zone can take",
                             (long long) st.st_size, max);
    }

    len = (size_t) st.st_size;

    text = malloc(len ? len : 1);
    if (text == NULL) {
        (void) close(fd);
        return pg_state_fail(err, PG_STATE_UNUSABLE,
                             "out of memory for its %zu bytes", len);
    }

    /* a file that grows meanwhile is read up to its size at fstat() */

    got = 0;

    while (got < len) {
        n = read(fd, text + got, len - got);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n == -1) {
            e = errno;
            free(text);
            (void) close(fd);
            return pg_state_fail(err, PG_STATE_UNUSABLE,
                                 "read() failed: %s", strerror(e));
        }

        if (n == 0) {
            break;
        }

        got += (size_t) n;
    }

    (void) close(fd);

    if (pg_snap_compile(text, got, blob, size, err) != PG_OK) {
        free(text);
        *blob = NULL;
        *size = 0;
        return PG_STATE_CORRUPT;
    }

    free(text);

    *mtime = st.st_mtime;

    return PG_STATE_LOADED;
}
