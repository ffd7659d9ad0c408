/*
 * pg_state.h: reading the edge's state file.
 *
 * The module writes its snapshot to the state file after every accepted
 * change and reads it back when nginx starts, so that a restart gates as
 * before while the controller is down. The master reads it as root, before
 * it serves anything, so the reader trusts nothing about the path: a FIFO
 * must not hang it, a huge or sparse file must not exhaust memory, and a
 * file that is not a snapshot must not stop nginx from starting. Each of
 * these is an answer below, never a failure of the caller.
 *
 * POSIX only, no nginx dependency: the unit tests and the fuzz target call
 * it as the module does.
 */

#ifndef PG_STATE_H
#define PG_STATE_H

#include <stddef.h>         /* size_t */
#include <time.h>           /* time_t */
#include "portal_gate.h"    /* pg_error_t */


typedef enum {
    PG_STATE_LOADED = 0,    /* *blob is the snapshot the file holds */
    PG_STATE_MISSING,       /* no file at the path: a first start */
    PG_STATE_UNUSABLE,      /* not a regular file, a symbolic link, larger
                               than max, or unreadable: err says which */
    PG_STATE_CORRUPT        /* read whole, but not a valid snapshot: err
                               says why; the writer keeps it aside */
} pg_state_result_t;


/*
 * Read and compile the state file at path. The file is opened without
 * blocking (a FIFO answers at once) and without following a symbolic link,
 * must be a regular file of at most max bytes, and is compiled as any
 * snapshot is.
 *
 * On PG_STATE_LOADED, *blob is a new malloc()ed blob of *size bytes, owned
 * by the caller, and *mtime is the file's modification time. On any other
 * answer *blob is NULL, and err names the path's problem (MISSING too).
 */
pg_state_result_t pg_state_read(const char *path, size_t max,
    unsigned char **blob, size_t *size, time_t *mtime, pg_error_t *err);


#endif /* PG_STATE_H */
