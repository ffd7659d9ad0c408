/*
 * pg_state.h: the edge's own state: its state file and kill overrides.
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
#include <stdint.h>         /* int64_t */
#include <time.h>           /* time_t */
#include <jansson.h>        /* json_t */
#include "portal_gate.h"    /* pg_error_t */


#define PG_OVERRIDES_MAX       32       /* kill overrides on one edge */
#define PG_OVERRIDE_BY_MAX     64       /* who set it, in bytes */
#define PG_OVERRIDE_REASON_MAX 256      /* why, in bytes */


/*
 * A kill override: flag is off in env on this edge, whatever the snapshots
 * pushed to it say, until it is released. Set by `portal-gatectl kill
 * --direct` when Redis or the controller is down; kept in the zone and in
 * the state file. Plain bytes, NUL-terminated, so it can live in shared
 * memory.
 */
typedef struct {
    char      env[PG_NAME_MAX + 1];
    char      flag[PG_NAME_MAX + 1];
    int64_t   since;                            /* epoch seconds */
    char      by[PG_OVERRIDE_BY_MAX + 1];       /* may be empty */
    char      reason[PG_OVERRIDE_REASON_MAX + 1];
} pg_override_t;


/* What the state file holds. */
typedef struct {
    unsigned char  *blob;       /* new, malloc()ed, the caller's; NULL
                                   unless PG_STATE_LOADED */
    size_t          size;
    time_t          mtime;      /* the file's */
    pg_override_t   overrides[PG_OVERRIDES_MAX];
    size_t          noverrides;
} pg_state_t;


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
 * must be a regular file of at most max bytes, and holds a snapshot, as
 * the API takes it, plus an optional "overrides" list; all of it is
 * checked as the API checks it.
 *
 * On PG_STATE_LOADED, state is filled (state->blob is the caller's to
 * free()). On any other answer state->blob is NULL and err names the
 * path's problem (MISSING too); on PG_STATE_CORRUPT the overrides are
 * there all the same when they could be read: a break-glass kill must not
 * vanish because the snapshot beside it is refused (a stricter check in a
 * newer version, say).
 */
pg_state_result_t pg_state_read(const char *path, size_t max,
    pg_state_t *state, pg_error_t *err);

/*
 * The state file's text: the snapshot's JSON plus "overrides" when there
 * are any. A new malloc()ed, NUL-terminated string, or NULL when out of
 * memory.
 */
char *pg_state_dump(const pg_snap_t *snap, const pg_override_t *overrides,
    size_t n);

/*
 * Fill one override, checking every field: env and flag are names
 * ([a-z0-9_]{1,64}); by and reason are UTF-8 without control characters,
 * at most PG_OVERRIDE_BY_MAX and PG_OVERRIDE_REASON_MAX bytes. by and
 * reason may be NULL (empty).
 */
int pg_override_set(pg_override_t *o, const char *env, size_t env_len,
    const char *flag, size_t flag_len, int64_t since, const char *by,
    size_t by_len, const char *reason, size_t reason_len, pg_error_t *err);

/* One override as JSON: env, flag, since, by, reason. A new reference. */
json_t *pg_override_to_json(const pg_override_t *o);


#endif /* PG_STATE_H */
