/*
 * pg_build.c: a patch (the body of PATCH snapshot) applied to a compiled
 * snapshot's index, for the edge: pg_snap_build_patch().
 *
 * The old index is read back into the compiler's parsed form
 * (pg_csnap_t): every flag the patch does not name keeps its scalars,
 * names and metadata (borrowed from the index) and its lists as the
 * pieces they are (never read); the flags the patch names are parsed from
 * the patch as a whole snapshot's flags are. Then the same steps as a
 * whole snapshot: limits, `requires` resolved, cycles refused, with the
 * same messages (pg_snapshot.c), and the writer makes a new index plus
 * new pieces for the patched flags' lists only. The cost is the index's
 * flags and the patch's lists, whatever the other lists hold.
 */

#include <stdio.h>          /* snprintf */
#include <stdlib.h>         /* calloc, free, qsort */
#include <string.h>         /* memset */
#include "portal_gate.h"    /* the API this file implements */
#include "pg_blob.h"        /* the layout, to read the old index */
#include "pg_compile.h"     /* the parsed form and its steps */


static int pg_build_has_env(const pg_snap_t *old, const char *name,
    size_t len);
static void pg_build_flag_from_index(const pg_snap_t *old,
    const pg_blob_flag_t *flags, const pg_blob_flag_t *bf, pg_cflag_t *f);
static void pg_build_list_from_index(const pg_snap_t *old,
    const pg_blob_list_t *bl, pg_clist_t *list);
static int pg_build_env(const pg_snap_t *old, const pg_blob_env_t *be,
    const char *name, size_t name_len, const json_t *penv, pg_cenv_t *env,
    pg_error_t *err);


int
pg_snap_build_patch(const void *index, size_t index_size,
    const json_t *patch, uint64_t first_id, pg_build_t *out,
    pg_error_t *err)
{
    int                   rc;
    size_t                i, n, key_len;
    json_t               *penvs, *penv;
    int64_t               base, revision, current;
    pg_snap_t             old;
    pg_csnap_t            cs;
    const char           *key, *name;
    const pg_blob_env_t  *envs;

    memset(out, 0, sizeof(pg_build_t));
    memset(&cs, 0, sizeof(cs));

    /* the patch's form first: its 400s never depend on the edge */

    rc = pg_patch_form(patch, &base, &revision, &penvs, err);

    if (rc != PG_OK) {
        return rc;
    }

    old.base = NULL;
    old.size = 0;
    old.pieces = NULL;      /* never read: no list is */

    /* the index is the caller's (the edge's zone): not the patch's fault */

    if (index_size != 0) {
        if (pg_blob_check_index(index, index_size, err) != PG_OK) {
            return PG_FAULT;
        }

        if (((const pg_blob_hdr_t *) index)->size != index_size) {
            return pg_fault(err, "snapshot index says %u bytes, but has %zu",
                            (unsigned) ((const pg_blob_hdr_t *) index)->size,
                            index_size);
        }

        old.base = index;
        old.size = index_size;
    }

    current = pg_snap_revision(&old);

    if (current != base) {
        pg_fail(err, "base_revision %lld is not the snapshot's revision "
                "%lld", (long long) base, (long long) current);
        return PG_CONFLICT;
    }

    /* the environments: the old ones, then those the patch creates */

    n = pg_snap_env_count(&old);

    json_object_keylen_foreach(penvs, key, key_len, penv) {
        if (old.base == NULL || !pg_build_has_env(&old, key, key_len)) {
            n++;
        }
    }

    if (n > PG_ENVS_MAX) {
        return pg_fail(err, "environments: %zu environments, at most %d",
                       n, PG_ENVS_MAX);
    }

    cs.revision = revision;
    cs.envs = calloc(n ? n : 1, sizeof(pg_cenv_t));

    if (cs.envs == NULL) {
        return pg_fault(err, "environments: out of memory");
    }

    rc = PG_OK;
    envs = old.base ? pg_blob_at(&old, pg_blob_env_t,
                                 pg_blob_hdr(&old)->envs)
                    : NULL;

    for (i = 0; rc == PG_OK && i < pg_snap_env_count(&old); i++) {
        name = (const char *) old.base + envs[i].name.off;

        cs.count++;
        rc = pg_build_env(&old, &envs[i], name, envs[i].name.len,
                          json_object_getn(penvs, name, envs[i].name.len),
                          &cs.envs[cs.count - 1], err);
    }

    json_object_keylen_foreach(penvs, key, key_len, penv) {
        if (rc != PG_OK) {
            break;
        }

        if (old.base != NULL && pg_build_has_env(&old, key, key_len)) {
            continue;
        }

        cs.count++;
        rc = pg_build_env(&old, NULL, key, key_len, penv,
                          &cs.envs[cs.count - 1], err);
    }

    if (rc == PG_OK) {
        qsort(cs.envs, cs.count, sizeof(pg_cenv_t), pg_cenv_cmp);
    }

    for (i = 0; rc == PG_OK && i < cs.count; i++) {
        rc = pg_env_resolve(&cs.envs[i], err);
    }

    if (rc == PG_OK) {
        rc = pg_csnap_build(&cs, first_id, 0, out, err);
    }

    pg_csnap_free(&cs);

    return rc;
}


/* Has the old index an environment of this name? (At most 64.) */
static int
pg_build_has_env(const pg_snap_t *old, const char *name, size_t len)
{
    size_t       i, n;
    const char  *s;

    for (i = 0; i < pg_snap_env_count(old); i++) {
        s = pg_snap_env_name(old, i, &n);

        if (pg_blob_namecmp(s, n, name, len) == 0) {
            return 1;
        }
    }

    return 0;
}


/*
 * One environment of the result: be's flags (NULL: a new environment)
 * that the patch's penv (NULL: not named) does not name, and penv's
 * flags that are not null.
 */
static int
pg_build_env(const pg_snap_t *old, const pg_blob_env_t *be,
    const char *name, size_t name_len, const json_t *penv, pg_cenv_t *env,
    pg_error_t *err)
{
    int                    rc;
    char                   path[PG_PATH_LEN];
    size_t                 j, n, key_len;
    json_t                *v;
    const char            *key;
    const pg_blob_flag_t  *flags;

    env->name = name;
    env->name_len = name_len;

    flags = be ? pg_blob_at(old, pg_blob_flag_t, be->flags) : NULL;
    n = 0;

    for (j = 0; be != NULL && j < be->flag_count; j++) {
        if (penv == NULL
            || json_object_getn(penv,
                                (const char *) old->base
                                + flags[j].name.off,
                                flags[j].name.len) == NULL)
        {
            n++;
        }
    }

    if (penv != NULL) {
        json_object_keylen_foreach((json_t *) penv, key, key_len, v) {
            if (!json_is_null(v)) {
                n++;
            }
        }
    }

    if (n > PG_FLAGS_MAX) {
        return pg_fail(err, "environments.%.*s: %zu flags, at most %d",
                       (int) name_len, name, n, PG_FLAGS_MAX);
    }

    env->flags = calloc(n ? n : 1, sizeof(pg_cflag_t));

    if (env->flags == NULL) {
        return pg_fault(err, "environments.%.*s: out of memory",
                        (int) name_len, name);
    }

    for (j = 0; be != NULL && j < be->flag_count; j++) {
        if (penv == NULL
            || json_object_getn(penv,
                                (const char *) old->base
                                + flags[j].name.off,
                                flags[j].name.len) == NULL)
        {
            pg_build_flag_from_index(old, flags, &flags[j],
                                     &env->flags[env->count++]);
        }
    }

    if (penv != NULL) {
        json_object_keylen_foreach((json_t *) penv, key, key_len, v) {
            if (json_is_null(v)) {
                continue;
            }

            snprintf(path, sizeof(path), "environments.%.*s.%.*s",
                     (int) name_len, name, (int) key_len, key);

            /* counted first, so that a failed flag's lists are freed too */
            env->count++;

            rc = pg_flag_parse(path, key, key_len, v,
                               &env->flags[env->count - 1], err);

            if (rc != PG_OK) {
                return rc;
            }
        }
    }

    qsort(env->flags, env->count, sizeof(pg_cflag_t), pg_cflag_cmp);

    return PG_OK;
}


/* A flag the patch keeps, as the compiler would have parsed it. */
static void
pg_build_flag_from_index(const pg_snap_t *old, const pg_blob_flag_t *flags,
    const pg_blob_flag_t *bf, pg_cflag_t *f)
{
    const char            *base;
    const pg_blob_flag_t  *req;

    memset(f, 0, sizeof(pg_cflag_t));

    base = (const char *) old->base;

    f->name = base + bf->name.off;
    f->name_len = bf->name.len;

    if (bf->salt.off != bf->name.off) {
        f->salt.p = base + bf->salt.off;
        f->salt.len = bf->salt.len;
        f->salt.set = 1;
    }

    f->enabled = (int) bf->enabled;
    f->bp = bf->bp;

    if (bf->requires != 0) {
        req = &flags[bf->requires - 1];
        f->requires.p = base + req->name.off;
        f->requires.len = req->name.len;
        f->requires.set = 1;
    }

    if (bf->meta & PG_BLOB_META_VERSION) {
        f->has_version = 1;
        f->version = (int64_t) (((uint64_t) bf->version_hi << 32)
                                | bf->version_lo);
    }

    if (bf->meta & PG_BLOB_META_DESCRIPTION) {
        f->description.p = base + bf->description.off;
        f->description.len = bf->description.len;
        f->description.set = 1;
    }

    if (bf->meta & PG_BLOB_META_UPDATED_AT) {
        f->updated_at.p = base + bf->updated_at.off;
        f->updated_at.len = bf->updated_at.len;
        f->updated_at.set = 1;
    }

    if (bf->meta & PG_BLOB_META_UPDATED_BY) {
        f->updated_by.p = base + bf->updated_by.off;
        f->updated_by.len = bf->updated_by.len;
        f->updated_by.set = 1;
    }

    pg_build_list_from_index(old, &bf->allow, &f->allow);
    pg_build_list_from_index(old, &bf->deny, &f->deny);
}


/* A list kept as the piece it is. */
static void
pg_build_list_from_index(const pg_snap_t *old, const pg_blob_list_t *bl,
    pg_clist_t *list)
{
    const pg_blob_ref_t  *ref;

    if (bl->count == 0) {
        return;
    }

    ref = pg_blob_at(old, pg_blob_ref_t, pg_blob_hdr(old)->lists)
          + bl->piece - 1;

    list->count = bl->count;
    list->keep_id = ((uint64_t) ref->id_hi << 32) | ref->id_lo;
    list->keep_size = ref->size;
    list->keep_pos = bl->piece;
}
