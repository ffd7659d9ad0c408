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
#include <stdint.h>         /* int64_t, uint64_t */
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


/*
 * The journal of patches beside the state file (PATH".journal"): a patch
 * does not rewrite the state file, it appends its body, as accepted, to
 * the journal that follows the state file; a restart reads the state file
 * and replays the journal's records in order. The journal names the state
 * file it follows by an id (the state file's "journal" key), so a journal
 * left from an older state file is never replayed on a newer one. A state
 * file written whole removes the journal; the next patch creates one.
 *
 *   "PGJ1 " 16 hex digits (the id) "\n"                  the header
 *   "R " 10 digits (len) " " 8 hex (checksum) "\n" body "\n"  each record
 *
 * The checksum is pg_murmur3_32(body, len, PG_JOURNAL_SEED). A record cut
 * short (a write torn by a crash) or that does not check ends the replay:
 * it was never acknowledged, and nothing after it can apply.
 */
#define PG_JOURNAL_SUFFIX      ".journal"
#define PG_JOURNAL_HEADER_LEN  22
#define PG_JOURNAL_HEAD_LEN    22
#define PG_JOURNAL_SEED        0x4a524e4cu


/* What the state file holds. */
typedef struct {
    unsigned char  *blob;       /* new, malloc()ed, the caller's; NULL
                                   unless PG_STATE_LOADED */
    size_t          size;
    time_t          mtime;      /* the file's */
    pg_override_t   overrides[PG_OVERRIDES_MAX];
    size_t          noverrides;

    /* its journal (PG_STATE_LOADED only) */
    uint64_t        journal_id;         /* the state file's; 0: none */
    size_t          journal_records;    /* replayed */
    size_t          journal_bytes;      /* the journal's bytes replayed,
                                           header included */
    int             journal_clean;      /* 1: the journal was replayed
                                           whole, or there is none yet:
                                           records may be appended */
    char            journal_note[PG_ERROR_LEN];  /* not empty: what was
                                           ignored, and why (a warning) */
} pg_state_t;


typedef enum {
    PG_STATE_LOADED = 0,    /* *blob is the snapshot the file holds */
    PG_STATE_MISSING,       /* no file at the path: a first start */
    PG_STATE_UNUSABLE,      /* not a regular file, a symbolic link, larger
                               than max, or unreadable; or out of memory
                               reading it or replaying its journal (never
                               a part of it restored): err says which */
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
 * path's problem (MISSING too); on PG_STATE_CORRUPT, and on
 * PG_STATE_UNUSABLE for out of memory after they were parsed (replaying
 * the journal), the overrides are there all the same when they could be
 * read: a break-glass kill must not vanish because the snapshot beside it
 * is refused (a stricter check in a newer version, say) or could not be
 * made.
 */
pg_state_result_t pg_state_read(const char *path, size_t max,
    pg_state_t *state, pg_error_t *err);

/*
 * The state file's text: the snapshot's JSON plus "overrides" when there
 * are any, and "journal" (the id of the journal that follows it) when
 * journal_id is not 0. A new malloc()ed, NUL-terminated string, or NULL
 * when out of memory.
 */
char *pg_state_dump(const pg_snap_t *snap, const pg_override_t *overrides,
    size_t n);
char *pg_state_dump_journal(const pg_snap_t *snap,
    const pg_override_t *overrides, size_t n, uint64_t journal_id);

/* A journal's header, PG_JOURNAL_HEADER_LEN bytes and a NUL, in buf. */
void pg_journal_header(char *buf, uint64_t id);

/* A record's head for body, PG_JOURNAL_HEAD_LEN bytes and a NUL, in buf;
 * the record is the head, the body, then "\n". */
void pg_journal_record_head(char *buf, const char *body, size_t len);

/*
 * Replay the journal at path (at most max bytes, opened as the state
 * file is) onto *doc, a snapshot document: each record must follow id's
 * header and apply on the revision before it (pg_snap_patch_json()).
 * *doc is replaced by the patched document (a new reference; the old one
 * is released). Fills state's journal_* fields. PG_OK: what cannot be
 * replayed (a torn or corrupt record, one that does not apply) is said in
 * state->journal_note and ends the replay, with the records before it.
 * PG_FAULT: out of memory (the note says where); a good record would be
 * lost, so nothing of the journal may be restored: the caller fails the
 * whole read.
 */
int pg_journal_replay(const char *path, size_t max, uint64_t id,
    json_t **doc, pg_state_t *state);

/*
 * jansson's failed allocations, counted (pg_journal.c): _on() puts the
 * counter in front of jansson's allocator unless it is there already, and
 * returns what to give _off(), which puts the allocator back. A caller
 * compares pg_state_json_failures() before and after a parse to tell out
 * of memory from bad input (jansson says both as a syntax error).
 */
int pg_state_json_count_on(void);
void pg_state_json_count_off(int on);
size_t pg_state_json_failures(void);

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
