/*
 * pg_ctl_store.h: the flag store in Redis (layout: include/pg_store.h), as
 * portal-gatectl and portal-gated use it.
 *
 * Errors: functions return PG_OK or PG_ERR and leave a message in
 * store->err. store->code tells the kind of failure, for exit statuses:
 * PG_STORE_EREDIS (Redis unreachable or erring), PG_STORE_EUNINIT (no
 * marker: a flushed or brand-new store), PG_STORE_EFAILED (the operation
 * cannot be done: a flag exists or is missing, a value in Redis is bad, a
 * limit of the store would be passed), PG_STORE_EINVALID (the change would
 * make the flags invalid), PG_STORE_ENOENV (the environment is not one
 * of the store's; store->env names it) and PG_STORE_EFAULT (out of
 * memory: the controller's failure, never the store's nor the input's; a
 * read fails whole with it, never leaving a flag out as a bad value).
 *
 * Ownership: json_t results are new references for the caller to
 * json_decref(). The store borrows its redisContext.
 */

#ifndef PG_CTL_STORE_H
#define PG_CTL_STORE_H

#include <stdint.h>             /* int64_t */
#include <hiredis/hiredis.h>    /* redisContext */
#include <jansson.h>            /* json_t */
#include "portal_gate.h"        /* pg_error_t, PG_OK, PG_ERR */
#include "pg_store.h"           /* the key layout */

#define PG_STORE_EREDIS     1
#define PG_STORE_EUNINIT    2
#define PG_STORE_EFAILED    3
#define PG_STORE_EINVALID   4
#define PG_STORE_ENOENV     5
#define PG_STORE_EFAULT     6

/* The one key of the flag that pg_store_write() gives an edit when the
 * value in Redis is not a JSON object: no flag check passes it. */
#define PG_STORE_UNREADABLE "(unreadable)"

/* The longest epoch (P store's field, include/pg_store.h) a read keeps;
 * a longer one is cut there, and then never matches the change log's
 * (pg_store_read_changes(): the whole store is read every time). */
#define PG_STORE_EPOCH_MAX  64

typedef struct pg_store_s  pg_store_t;

/*
 * Called when a write script got no reply (the connection dropped) or a
 * READONLY one (the master went away: the server is a replica now), with
 * why: reconnect (store->redis replaced) and return PG_OK to send the same
 * script again, with the same write id (P write:ID: it is applied once),
 * or PG_ERR with store->err set to give up.
 */
typedef int (*pg_store_reconnect_pt)(pg_store_t *store, const char *why,
    void *data);

struct pg_store_s {
    redisContext  *redis;                       /* borrowed */
    char           prefix[PG_STORE_PREFIX_MAX + 1];
    char           where[300];                  /* for messages: the URL */
    int            code;                        /* PG_STORE_E* after ERR */
    pg_error_t     err;
    char           env[PG_NAME_MAX + 1];        /* PG_STORE_ENOENV: which */
    pg_store_reconnect_pt  reconnect;           /* NULL: no retry */
    void                  *reconnect_data;
    int            applied;     /* the last write was found applied by
                                   its resend (P write:ID), not made by it */
};

/*
 * An edit of one flag: given the flag as it is (NULL when it does not
 * exist; borrowed), return the flag as it should be (a new reference), or
 * NULL with err filled and *code set to PG_STORE_EFAILED or
 * PG_STORE_EINVALID. It may be called again if another writer got there
 * first, with what that writer left.
 */
typedef json_t *(*pg_store_edit_pt)(const json_t *before, void *data,
    int *code, pg_error_t *err);

/* What a write did. before and after are new references (before may be
 * NULL); the caller releases them with pg_store_change_free(). */
typedef struct {
    json_t   *before;
    json_t   *after;
    int64_t   revision;     /* the store's, after */
    int       unchanged;    /* 1: the flag was so already; nothing written */
} pg_store_change_t;

void pg_store_setup(pg_store_t *store, redisContext *redis,
    const char *prefix, const char *where);

/* Is there a marker? *yes is 1 or 0. */
int pg_store_initialised(pg_store_t *store, int *yes);

/*
 * Create the marker, the revision and the environments (the nenvs envs),
 * in one script. *created is 0 if the marker existed: then nothing changes.
 */
int pg_store_init(pg_store_t *store, const char *actor,
    const char *const *envs, size_t nenvs, int *created);

/*
 * Rebuild a lost store from a snapshot (DESIGN.md's JSON, an edge's): every
 * flag of every environment as it is, the snapshot's revision, and the
 * marker, in one script, and only if there is no marker or the store was
 * never written to (revision 0: a plain `init` after Redis lost its data).
 * The store's environments are the snapshot's and the nenvs envs.
 * *created is 0 when the store holds writes already; source says where the
 * snapshot came from, for the audit log.
 */
int pg_store_restore(pg_store_t *store, const json_t *snapshot,
    const char *const *envs, size_t nenvs, const char *actor,
    const char *source, int *created);

/* The store's revision (0 when it has none yet). */
int pg_store_revision(pg_store_t *store, int64_t *revision);

/*
 * One flag of env (NULL when it does not exist), without reading its
 * siblings. A value that is not a JSON object fails with PG_STORE_EFAILED.
 */
int pg_store_flag(pg_store_t *store, const char *env, const char *name,
    json_t **flag);

/*
 * Every flag of env as an object, name -> flag JSON. A value that is not a
 * valid flag fails the call with PG_STORE_EFAILED naming the flag.
 */
int pg_store_env_flags(pg_store_t *store, const char *env, json_t **flags);

/* pg_store_snapshot() reports a flag that is not valid to this, with why,
 * and leaves it out. */
typedef void (*pg_store_bad_pt)(const char *env, const char *flag,
    const char *why, void *data);

/*
 * The store as a snapshot in DESIGN.md's JSON form, read in one MULTI/EXEC
 * so that the revision and the flags belong together: {"revision": R,
 * "environments": {ENV: {FLAG: {...}}}} for each of the nenvs envs (an
 * environment without flags is {}), and *initialised: 1 when the store
 * has its marker, 0 for a flushed or brand-new one. A flag that is not
 * valid on its own fails the call with PG_STORE_EFAILED naming it, or,
 * when bad is not NULL, is given to bad and left out; so is a hash field
 * whose name holds a NUL byte, under a printable name (with "\\0") that no
 * real flag can have, so that it never stands in for one. Out of memory
 * reading a flag is no bad value: it fails the call (PG_STORE_EFAULT),
 * bad or not. `requires` is not checked here: compile the snapshot.
 */
int pg_store_snapshot(pg_store_t *store, const char *const *envs,
    size_t nenvs, pg_store_bad_pt bad, void *data, int *initialised,
    json_t **snapshot);

/* pg_store_read() reports an environment whose key cannot be read (a key
 * of another type: WRONGTYPE) to this, with Redis's error, and leaves it
 * out of the snapshot. */
typedef void (*pg_store_bad_env_pt)(const char *env, const char *why,
    void *data);

/*
 * pg_store_snapshot(), where one environment's key that Redis cannot read
 * as a hash is that environment's problem, not the read's: with bad_env
 * not NULL, it is given to bad_env and left out, and the others are read
 * (portal-gated: a broken staging key must not hold back a kill in
 * production). With bad_env NULL it is pg_store_snapshot(). When epoch is
 * not NULL (PG_STORE_EPOCH_MAX + 1 bytes), it gets the marker's epoch,
 * read in the same MULTI: which store this is (a new one after every init
 * and restore), "" for a store from before epochs or without a marker;
 * what pg_store_read_changes() is given with the revision.
 */
int pg_store_read(pg_store_t *store, const char *const *envs, size_t nenvs,
    pg_store_bad_pt bad, pg_store_bad_env_pt bad_env, void *data,
    int *initialised, json_t **snapshot, char *epoch);

/*
 * What changed since revision base of the store whose epoch is epoch (as
 * pg_store_read() gave it with base), as the store's change log says (P
 * changelog, include/pg_store.h; controller/pg_ctl_store_log.c), decided
 * in Redis by one script, so that the log, the marker, the revision and
 * the flags belong together: what portal-gated reads on a change message,
 * whose text it does not trust. *initialised as pg_store_read() gives it.
 * When the log says which flags the writes base+1 .. R changed, *read is
 * {"revision": R, "environments": {ENV: {FLAG: {...} or null}}}: each of
 * them in the nenvs envs as it is at R, null when deleted (no flag when
 * R is base: nothing new). Otherwise *read is NULL and why (size bytes)
 * says why the whole store must be read: it is not initialised, or
 * another store (another epoch: it was rebuilt, by init or a restore,
 * since base was read), or below base (a restore); the log does not
 * reach back to base; a revision
 * changed more than one flag, or was written without the log (by a
 * portal-gatectl from before it). A flag that is not valid on its own
 * fails the call with PG_STORE_EFAILED naming it, or, when bad is not
 * NULL, is given to bad and left out. PG_ERR: Redis failed
 * (PG_STORE_EREDIS), or refused the script or answered what it cannot
 * have (PG_STORE_EFAILED: the whole read says what is wrong). sha (NULL:
 * none) gets "ENV/FLAG" -> the SHA-1 hex of each value read, its bytes
 * as stored: what the store's digest has (pg_store_digest()).
 */
int pg_store_read_changes(pg_store_t *store, int64_t base,
    const char *epoch, const char *const *envs, size_t nenvs,
    pg_store_bad_pt bad, void *data, int *initialised, json_t **read,
    char *why, size_t size, json_t *sha);

/*
 * The store's digest (controller/pg_ctl_store_digest.c), one script:
 * *digest is {"revision": R, "environments": {ENV: {FIELD: SHA1HEX} or
 * null}} for each of the nenvs envs: each field of its flags hash with
 * the SHA-1 of its value as stored (the bytes, not the JSON), {} for an
 * environment without a hash, null for a key of another type; a field
 * holding a NUL byte is named PG_STORE_ODD_FIELD. *initialised and epoch
 * (PG_STORE_EPOCH_MAX + 1 bytes) as pg_store_read() gives them. Redis
 * hashes every value (a few ms for megabytes); the reader gets 40 bytes
 * a flag. PG_ERR: Redis failed (PG_STORE_EREDIS), or refused the script
 * (PG_STORE_EFAILED).
 */
#define PG_STORE_ODD_FIELD  "(a field name with a NUL byte)"

int pg_store_digest(pg_store_t *store, const char *const *envs,
    size_t nenvs, int *initialised, json_t **digest, char *epoch);

/*
 * The flags names ({ENV: [FLAG, ...]}, valid names of the nenvs envs) as
 * they are while the store is at revision base of epoch, in one script:
 * *read as pg_store_read_changes() gives it for a delta (R is base; a
 * flag not there is null; one not valid on its own goes to bad), and
 * sha gets "ENV/FLAG" -> the SHA-1 hex of each value read (as the
 * digest's). *read is NULL when the store is not at base of that epoch
 * any more, or a key is of another type. PG_ERR as
 * pg_store_read_changes().
 */
int pg_store_read_named(pg_store_t *store, int64_t base, const char *epoch,
    const char *const *envs, size_t nenvs, const json_t *names,
    pg_store_bad_pt bad, void *data, json_t **read, json_t *sha);

/*
 * Flags changed in Redis without a revision (names: {ENV: [FLAG, ...]})
 * made revisions: while the store is at base of epoch, one revision per
 * flag, each with an audit entry (action "revision", env and flag, the
 * reason), its change log entry "REV ENV FLAG" and its message, so that
 * every reader follows them as the writes they should have been; one
 * script. *revision is the store's after, or -1 when it was not at base
 * (nothing written).
 */
int pg_store_note_unlogged(pg_store_t *store, int64_t base,
    const char *epoch, const json_t *names, const char *actor,
    const char *reason, int64_t *revision);

/*
 * Raise the store's revision to above + 1 unless it is that high already,
 * with an audit entry (action "revision", the reason given) and a change
 * message: what portal-gated does when an edge is ahead of a store restored
 * from an older backup. *revision is the store's revision after. above
 * must be below PG_REVISION_MAX, the highest revision an edge accepts.
 */
int pg_store_raise_revision(pg_store_t *store, int64_t above,
    const char *actor, const char *reason, int64_t *revision);

/*
 * The store's environments: *envs is a new object, name -> {"created_at",
 * "created_by", "flags": how many it holds}, and *recorded 1 when the store
 * has P environments, 0 when it was made before that key: then they are
 * those of its flags: hashes plus production and staging, with no
 * created_at or created_by (include/pg_store.h).
 */
int pg_store_envs(pg_store_t *store, json_t **envs, int *recorded);

/*
 * Add env to the store's environments, with an audit entry (action
 * "env"), a revision and a change message, in one script; a store made
 * before P environments gets those it had recorded first. *revision is the
 * new revision, or 0 when env was there already (nothing changed).
 */
int pg_store_env_add(pg_store_t *store, const char *env, const char *actor,
    const char *reason, int64_t *revision);

/*
 * How many P flags: hashes the store holds, by one walk of the keys (SCAN,
 * outside any script): the environments of a store made before P
 * environments, less production and staging when they hold no flag.
 */
int pg_store_count_flag_envs(pg_store_t *store, size_t *count);

/*
 * Change one flag atomically: read it, edit it, check the result (alone,
 * and with check_env also with the other flags of env: requires, cycles;
 * a change that cannot touch them, such as a kill, skips that so that a
 * bad sibling never blocks it), raise its version, stamp updated_at and
 * updated_by, then write it with the audit entry and the change message in
 * one script, if nobody changed it meanwhile; otherwise read again and
 * retry. An edit that changes nothing writes nothing (change->unchanged).
 * The script refuses, with PG_STORE_EFAILED, a write that would take the
 * store past a limit of the core: a flag beyond PG_FLAGS_MAX in env, an
 * environment beyond PG_ENVS_MAX, a revision beyond PG_REVISION_MAX; with
 * PG_STORE_ENOENV a write to an environment the store does not have; and
 * with PG_STORE_EINVALID a new `requires` of a flag that does not exist,
 * or that makes a cycle: checked there, no concurrent writer can get
 * past them.
 */
int pg_store_write(pg_store_t *store, const char *env, const char *flag,
    const char *action, const char *actor, const char *reason,
    int check_env, pg_store_edit_pt edit, void *data,
    pg_store_change_t *change);

/*
 * Delete one flag, in one script with its audit entry (action "delete")
 * and change message, if nobody changed it meanwhile (else read again and
 * retry) and while no other flag of env requires it (PG_STORE_EFAILED,
 * naming that flag). change->before is the flag as it was, after NULL.
 */
int pg_store_delete(pg_store_t *store, const char *env, const char *flag,
    const char *actor, const char *reason, pg_store_change_t *change);

/*
 * An audit entry alone, at the store's revision, for what changed on the
 * edges and not in the store (action "release"; a kill --direct of a flag
 * that is off in the store already): before and after are flag JSON or
 * "". Nothing is published. The environment must be one of the store's.
 * *revision is the store's.
 */
int pg_store_note(pg_store_t *store, const char *env, const char *flag,
    const char *action, const char *actor, const char *reason,
    const char *before, const char *after, int64_t *revision);

void pg_store_change_free(pg_store_change_t *change);

/*
 * The controllers' beats (P controllers): *beats is a new object, "HOST:PID"
 * -> the beat's JSON (a beat that is not a JSON object is {"invalid": why}),
 * and *now_ms Redis's clock (TIME), in epoch ms, read in the same round
 * trip, so that ages are measured on the clock the beats were written on.
 */
int pg_store_controllers(pg_store_t *store, json_t **beats,
    int64_t *now_ms);

/*
 * How old a beat is at now_ms (*age_ms, 0 for a beat from the future) and
 * how old it may be while its controller is alive (*limit_ms: 3 of its
 * reconcile intervals, at least PG_STORE_ALIVE_MIN_MS). Returns 1 alive, 0
 * not, -1 for a beat without a beat_at (then *age_ms is -1).
 */
int pg_store_beat_alive(const json_t *beat, int64_t now_ms, int64_t *age_ms,
    int64_t *limit_ms);

/*
 * The newest audit entries first, at most count, only those of flag when
 * flag is not NULL: an array of objects with ts, actor, env, flag, action,
 * before, after, reason and revision (strings as stored).
 */
int pg_store_audit(pg_store_t *store, const char *flag, size_t count,
    json_t **entries);

#endif /* PG_CTL_STORE_H */
