/*
 * snap_walk.c: read an opened snapshot the way its users do, and compare
 * pg_eval() with a slow oracle that follows DESIGN.md's table literally
 * (linear scans of the lists, recursion for `requires`). The hash tables,
 * the binary searches and the requires walk of pg_eval.c are what the
 * oracle does not share with it.
 *
 * The walk reads the blob's records through pg_blob.h, as the core's own
 * readers do, and only after pg_snap_open() said PG_OK: whatever it
 * reads, pg_snap_open() has promised is inside the blob.
 */

#include <string.h>         /* memcmp, strlen */
#include "fuzz.h"           /* FUZZ_CHECK */
#include "pg_blob.h"        /* the records the walk reads */
#include "snap_walk.h"      /* the API this file implements */


/* Companies every flag is evaluated for, valid or not. */
static const char  *walk_companies[] = {
    NULL, "", "42", "1001", "a b", "\xc3\xa9",
    "0123456789012345678901234567890123456789012345678901234567890123",
    "0123456789012345678901234567890123456789012345678901234567890123x"
};

#define WALK_COMPANIES  (sizeof(walk_companies) / sizeof(walk_companies[0]))

/* Ids taken from each list and evaluated: enough to reach collisions. */
#define WALK_LIST_IDS   8


typedef struct {
    int          on;
    pg_reason_t  reason;
} walk_answer_t;


static int walk_list_scan(const pg_snap_t *snap, const pg_blob_list_t *bl,
    const char *id, size_t len);
static walk_answer_t walk_oracle(const pg_snap_t *snap,
    const pg_blob_env_t *env, const pg_blob_flag_t *f, const char *id,
    size_t len, uint32_t depth);
static void walk_eval(const pg_snap_t *snap, const pg_blob_env_t *env,
    const pg_blob_flag_t *f, const char *id, size_t len);
static void walk_list_ids(const pg_snap_t *snap, const pg_blob_env_t *env,
    const pg_blob_flag_t *f, const pg_blob_list_t *bl);


/* Is id in the list? Entry by entry, without the table. */
static int
walk_list_scan(const pg_snap_t *snap, const pg_blob_list_t *bl,
    const char *id, size_t len)
{
    uint32_t              i;
    const unsigned char  *e;

    if (bl->count == 0) {
        return 0;
    }

    e = pg_blob_piece(snap, bl->piece);
    e += pg_blob_entries(e);

    for (i = 0; i < bl->count; i++) {
        if (e[4] == len && memcmp(e + PG_BLOB_ENTRY_HEAD, id, len) == 0) {
            return 1;
        }

        e += PG_BLOB_ENTRY_HEAD + e[4];
    }

    return 0;
}


/* DESIGN.md's evaluation table, rule by rule, for a known flag. */
static walk_answer_t
walk_oracle(const pg_snap_t *snap, const pg_blob_env_t *env,
    const pg_blob_flag_t *f, const char *id, size_t len, uint32_t depth)
{
    int                    bucket;
    walk_answer_t          a, req;
    const pg_blob_flag_t  *flags;

    FUZZ_CHECK(depth <= env->flag_count, "a requires cycle was accepted");

    a.on = 0;

    if (!f->enabled) {
        a.reason = PG_REASON_KILLED;
        return a;
    }

    if (f->requires != 0) {
        flags = pg_blob_at(snap, pg_blob_flag_t, env->flags);
        req = walk_oracle(snap, env, &flags[f->requires - 1], id, len,
                          depth + 1);

        if (!req.on) {
            a.reason = PG_REASON_REQUIRES;
            return a;
        }
    }

    if (!pg_valid_company(id, len)) {
        a.on = f->bp == PG_BP_MAX;
        a.reason = a.on ? PG_REASON_ROLLOUT : PG_REASON_NO_COMPANY;
        return a;
    }

    if (walk_list_scan(snap, &f->deny, id, len)) {
        a.reason = PG_REASON_DENIED;
        return a;
    }

    if (walk_list_scan(snap, &f->allow, id, len)) {
        a.on = 1;
        a.reason = PG_REASON_ALLOWED;
        return a;
    }

    bucket = pg_bucket((const char *) snap->base + f->salt.off, f->salt.len,
                       id, len);
    a.on = bucket >= 0 && (uint32_t) bucket < f->bp;
    a.reason = PG_REASON_ROLLOUT;

    return a;
}


/* pg_eval() of one flag for one company, against the oracle. */
static void
walk_eval(const pg_snap_t *snap, const pg_blob_env_t *env,
    const pg_blob_flag_t *f, const char *id, size_t len)
{
    int                   bucket;
    pg_result_t           res;
    walk_answer_t         want;
    const unsigned char  *base;

    base = snap->base;

    pg_eval(snap, (const char *) base + env->name.off, env->name.len,
            (const char *) base + f->name.off, f->name.len, id, len, &res);

    want = walk_oracle(snap, env, f, id, len, 0);
    bucket = pg_valid_company(id, len)
             ? pg_bucket((const char *) base + f->salt.off, f->salt.len,
                         id, len)
             : -1;

    FUZZ_CHECK(res.on == want.on && res.reason == want.reason
               && res.bucket == bucket,
               "%.*s/%.*s for \"%.*s\": pg_eval says %d %s %d, the table "
               "says %d %s %d", (int) env->name.len,
               (const char *) base + env->name.off, (int) f->name.len,
               (const char *) base + f->name.off, (int) len,
               id ? id : "", res.on, pg_reason_name(res.reason), res.bucket,
               want.on, pg_reason_name(want.reason), bucket);
}


/* Evaluate the first ids of a list: each must be found by its table. */
static void
walk_list_ids(const pg_snap_t *snap, const pg_blob_env_t *env,
    const pg_blob_flag_t *f, const pg_blob_list_t *bl)
{
    uint32_t              i;
    const unsigned char  *e;

    if (bl->count == 0) {
        return;
    }

    e = pg_blob_piece(snap, bl->piece);
    e += pg_blob_entries(e);

    for (i = 0; i < bl->count && i < WALK_LIST_IDS; i++) {
        walk_eval(snap, env, f, (const char *) e + PG_BLOB_ENTRY_HEAD, e[4]);
        e += PG_BLOB_ENTRY_HEAD + e[4];
    }
}


json_t *
snap_walk(const pg_snap_t *snap)
{
    size_t                 i, j, k, n, len, id_len;
    pg_result_t            res;
    const char            *name, *id;
    const pg_blob_env_t   *envs, *env;
    const pg_blob_flag_t  *flags, *f;

    (void) pg_snap_revision(snap);

    n = pg_snap_env_count(snap);

    FUZZ_CHECK(pg_snap_env_name(snap, n, &len) == NULL && len == 0
               && pg_snap_env_flag_count(snap, n) == 0,
               "an environment past the end exists");

    for (i = 0; i < n; i++) {
        name = pg_snap_env_name(snap, i, &len);

        FUZZ_CHECK(name != NULL && strlen(name) == len
                   && pg_valid_name(name, len),
                   "environment %zu has a bad name", i);

        /* not a valid name, so no blob that opens can hold it */
        pg_eval(snap, name, len, "no-such-flag", 12, "42", 2, &res);
        FUZZ_CHECK(!res.on && res.reason == PG_REASON_UNKNOWN
                   && res.bucket == -1, "an unknown flag is not unknown");
    }

    pg_eval(snap, "no-such-env", 11, "f", 1, "42", 2, &res);
    FUZZ_CHECK(!res.on && res.reason == PG_REASON_UNKNOWN,
               "an unknown environment is not unknown");

    envs = n ? pg_blob_at(snap, pg_blob_env_t, pg_blob_hdr(snap)->envs)
             : NULL;

    for (i = 0; i < n; i++) {
        env = &envs[i];
        flags = pg_blob_at(snap, pg_blob_flag_t, env->flags);

        FUZZ_CHECK(pg_snap_env_flag_count(snap, i) == env->flag_count,
                   "env_flag_count disagrees with the blob");

        for (j = 0; j < env->flag_count; j++) {
            f = &flags[j];

            name = (const char *) snap->base + f->name.off;
            FUZZ_CHECK(strlen(name) == f->name.len
                       && pg_valid_name(name, f->name.len),
                       "flag %zu of environment %zu has a bad name", j, i);

            for (k = 0; k < WALK_COMPANIES; k++) {
                id = walk_companies[k];
                id_len = id ? strlen(id) : 0;
                walk_eval(snap, env, f, id, id_len);
            }

            walk_list_ids(snap, env, f, &f->deny);
            walk_list_ids(snap, env, f, &f->allow);
        }
    }

    return pg_snap_to_json(snap);
}


int
snap_recompile(const json_t *root, unsigned char **blob, size_t *size,
    pg_error_t *err)
{
    int    rc;
    char  *text;

    text = json_dumps(root, JSON_COMPACT | PG_JSON_REAL);
    FUZZ_CHECK(text != NULL, "json_dumps failed");

    rc = pg_snap_compile(text, strlen(text), blob, size, err);

    free(text);

    return rc;
}
