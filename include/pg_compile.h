/*
 * pg_compile.h: what the core's compiler files share (private to the
 * core): the parsed form of a snapshot (pg_csnap_t, borrowing its JSON or
 * an old index), the checks that both a whole snapshot and a patch go
 * through, and the writer of the pieces form.
 *
 *   pg_snapshot.c    JSON -> pg_csnap_t -> index and pieces; accessors
 *   pg_build.c       an old index + a patch -> pg_csnap_t -> the same
 *   pg_blob_check.c  the checks of an index and of a piece
 */

#ifndef PG_COMPILE_H
#define PG_COMPILE_H

#include <stddef.h>         /* size_t */
#include <stdint.h>         /* uint32_t, uint64_t */
#include <jansson.h>        /* json_t */
#include "portal_gate.h"    /* pg_error_t, pg_build_t */


/* Room for "environments." ENV "." FLAG and a NUL. */
#define PG_PATH_LEN   (sizeof("environments..") + PG_NAME_MAX * 2)

/* Room for a quoted value in a message: 48 bytes escaped, "...", NUL. */
#define PG_QUOTE_LEN  (48 * 4 + 4)

/* Bigger than any decimal json_int_t, sign and NUL included. */
#define PG_INT_LEN    24


typedef struct {
    const char  *p;
    size_t       len;
    int          set;
} pg_text_t;


typedef struct {
    uint32_t  index;            /* position in the JSON array */
    uint32_t  hash;             /* set hash of the id */
    uint32_t  len;              /* length of the id */
} pg_citem_t;


/* A list: parsed from JSON (array set), or an old index's piece kept as
 * it is (array NULL, count set: pg_build.c). */
typedef struct {
    const json_t  *array;       /* borrowed */
    pg_citem_t    *items;       /* the distinct ids, in input order */
    uint32_t       count;
    uint64_t       bytes;       /* the entries' size in the piece */
    uint64_t       keep_id;     /* a kept piece: its id, */
    uint32_t       keep_size;   /* its size */
    uint32_t       keep_pos;    /* and the old index's reference + 1 */
} pg_clist_t;


typedef struct {
    const char  *name;          /* borrowed from the JSON */
    size_t       name_len;
    pg_text_t    salt;          /* set only when it differs from the name */
    int          enabled;
    uint32_t     bp;
    pg_text_t    requires;
    uint32_t     requires_idx;  /* index + 1 once resolved; 0: none */
    int          has_version;
    int64_t      version;
    pg_text_t    description;
    pg_text_t    updated_at;
    pg_text_t    updated_by;
    pg_clist_t   allow;
    pg_clist_t   deny;
} pg_cflag_t;


typedef struct {
    const char  *name;          /* borrowed from the JSON */
    size_t       name_len;
    pg_cflag_t  *flags;         /* sorted by name once parsed */
    size_t       count;
} pg_cenv_t;


typedef struct {
    int64_t      revision;
    pg_cenv_t   *envs;          /* sorted by name once parsed */
    size_t       count;
} pg_csnap_t;


/* pg_snapshot.c: err's text, and PG_ERR (the input is wrong) or
 * PG_FAULT (it is not: out of memory, a corrupt index) */
int pg_fail(pg_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int pg_fault(pg_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *pg_quote(char *buf, const char *s, size_t len);
int pg_key_is(const char *key, size_t key_len, const char *name);

/* The top level of a snapshot, {"revision", "environments"}, or, with
 * base not NULL, of a patch, which adds "base_revision" (what: "a
 * snapshot" or "a patch", for the messages): no other key, each revision
 * an integer from 0 to PG_REVISION_MAX, a patch's revision above its
 * base, environments an object (*envs borrowed from root). */
int pg_top_parse(const json_t *root, const char *what, int64_t *base,
    int64_t *revision, json_t **envs, pg_error_t *err);

/* Check one flag object; f is zeroed first and freed by the caller
 * (pg_flag_free()). path is "environments.ENV.FLAG", for messages. */
int pg_flag_parse(const char *path, const char *name, size_t name_len,
    const json_t *obj, pg_cflag_t *f, pg_error_t *err);
void pg_flag_free(pg_cflag_t *f);
int pg_cflag_cmp(const void *a, const void *b);
int pg_cenv_cmp(const void *a, const void *b);

/* Turn each `requires` of a sorted environment into an index; refuse
 * missing flags and cycles. */
int pg_env_resolve(pg_cenv_t *env, pg_error_t *err);
void pg_csnap_free(pg_csnap_t *cs);

/* The table's slots: the smallest power of two >= 2 * count. */
uint32_t pg_slot_count(uint32_t count);

/* Write a parsed and resolved snapshot in the pieces form: new pieces
 * numbered from first_id, kept ones named. out is zeroed first. packed:
 * in one buffer, the index then its pieces (out->packed; only when every
 * piece is new). */
int pg_csnap_build(const pg_csnap_t *cs, uint64_t first_id, int packed,
    pg_build_t *out, pg_error_t *err);

/* pg_blob_check.c: an index's header and own bytes (not its pieces);
 * size may be more than the index's (the packed form). */
int pg_blob_check_index(const void *blob, size_t size, pg_error_t *err);

/* pg_patch.c: a patch's form, all of it (see pg_snap_patch_json());
 * *envs is borrowed from the patch. */
int pg_patch_form(const json_t *patch, int64_t *base, int64_t *revision,
    json_t **envs, pg_error_t *err);


#endif /* PG_COMPILE_H */
