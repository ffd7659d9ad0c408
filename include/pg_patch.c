/*
 * pg_patch.c: a patch, the body of PATCH snapshot, applied to a snapshot
 * document (see pg_snap_patch_json() in portal_gate.h).
 *
 * The patch is checked whole before anything is built, so its errors do
 * not depend on the snapshot it meets; then its base; then the result is
 * made of shallow copies: a flag is never copied, only referenced, so a
 * patch of one flag costs the snapshot's environments, not their lists.
 */

#include <stdio.h>          /* snprintf */
#include "portal_gate.h"    /* the API this file implements */
#include "pg_compile.h"     /* pg_patch_form(), shared with pg_build.c;
                               pg_top_parse, pg_fail, pg_quote */


static int pg_patch_check_env(const char *env, size_t env_len,
    const json_t *flags, pg_error_t *err);
static int pg_patch_env(json_t *env, json_t *flags);
static json_t *pg_patch_copy(const json_t *obj);


/*
 * json_copy() of an object, checked: jansson's shallow copy leaves out,
 * and says nothing of, a member whose insertion ran out of memory (a
 * flag, an environment gone from the result). NULL when out of memory.
 */
static json_t *
pg_patch_copy(const json_t *obj)
{
    json_t  *copy;

    copy = json_copy((json_t *) obj);

    if (copy != NULL && json_object_size(copy) != json_object_size(obj)) {
        json_decref(copy);
        return NULL;
    }

    return copy;
}


int
pg_snap_patch_json(const json_t *snapshot, const json_t *patch,
    json_t **result, pg_error_t *err)
{
    int          rc;
    size_t       key_len;
    int64_t      base, revision, current;
    json_t      *root, *envs, *env, *penvs, *senvs, *senv, *flags, *v;
    const char  *key;

    *result = NULL;

    rc = pg_patch_form(patch, &base, &revision, &penvs, err);

    if (rc != PG_OK) {
        return rc;
    }

    v = json_object_get(snapshot, "revision");
    senvs = json_object_get(snapshot, "environments");

    if (!json_is_integer(v) || !json_is_object(senvs)) {
        return pg_fault(err, "the snapshot to patch has no revision "
                              "or no environments");
    }

    current = json_integer_value(v);

    if (current != base) {
        pg_fail(err, "base_revision %lld is not the snapshot's "
                      "revision %lld", (long long) base, (long long) current);
        return PG_CONFLICT;
    }

    /* new objects down to each environment named; flags are referenced */

    root = pg_patch_copy(snapshot);
    envs = pg_patch_copy(senvs);

    if (root == NULL) {
        json_decref(envs);
        goto nomem;
    }

    /* set_new() takes envs, or frees it when it fails */
    if (envs == NULL
        || json_object_set_new(root, "environments", envs) != 0
        || json_object_set_new(root, "revision", json_integer(revision)) != 0)
    {
        goto nomem;
    }

    json_object_keylen_foreach(penvs, key, key_len, flags) {
        senv = json_object_getn(senvs, key, key_len);

        if (senv != NULL && !json_is_object(senv)) {
            json_decref(root);
            return pg_fault(err, "the snapshot's environment \"%.*s\" "
                                  "is not an object", (int) key_len, key);
        }

        env = senv ? pg_patch_copy(senv) : json_object();

        /* setn_new() takes env, or frees it when it fails */
        if (json_object_setn_new(envs, key, key_len, env) != 0
            || pg_patch_env(env, flags) != PG_OK)
        {
            goto nomem;
        }
    }

    *result = root;

    return PG_OK;

nomem:

    json_decref(root);

    return pg_fault(err, "out of memory");
}



/* The patch's form, all of it; *envs is borrowed from the patch. Shared
 * with pg_build.c (pg_compile.h), which patches an index. */
int
pg_patch_form(const json_t *patch, int64_t *base, int64_t *revision,
    json_t **envs, pg_error_t *err)
{
    int          rc;
    char         q[PG_QUOTE_LEN];
    size_t       key_len;
    json_t      *v, *e;
    const char  *key;

    if (pg_top_parse(patch, "a patch", base, revision, &e, err) != PG_OK) {
        return PG_ERR;
    }

    json_object_keylen_foreach(e, key, key_len, v) {

        if (!pg_valid_name(key, key_len)) {
            return pg_fail(err, "environments: invalid environment "
                                 "name \"%s\"",
                                 pg_quote(q, key, key_len));
        }

        rc = pg_patch_check_env(key, key_len, v, err);

        if (rc != PG_OK) {
            return rc;
        }
    }

    *envs = e;

    return PG_OK;
}


/* One environment of the patch: flag names, each null or a flag object
 * checked as in a whole snapshot (its fields, its lists; its `requires`
 * only once the result is built), so that a bad flag is a 400 whatever
 * the edge's revision. */
static int
pg_patch_check_env(const char *env, size_t env_len, const json_t *flags,
    pg_error_t *err)
{
    int          rc;
    char         q[PG_QUOTE_LEN];
    char         path[PG_PATH_LEN];
    size_t       key_len;
    json_t      *v;
    pg_cflag_t   f;
    const char  *key;

    if (json_is_null(flags)) {
        return pg_fail(err, "environments.%.*s: a patch cannot delete "
                             "an environment; PUT the whole snapshot",
                             (int) env_len, env);
    }

    if (!json_is_object(flags)) {
        return pg_fail(err, "environments.%.*s: an environment must be "
                             "an object of flags", (int) env_len, env);
    }

    json_object_keylen_foreach((json_t *) flags, key, key_len, v) {

        if (!pg_valid_name(key, key_len)) {
            return pg_fail(err, "environments.%.*s: invalid flag name "
                                 "\"%s\"", (int) env_len, env,
                                 pg_quote(q, key, key_len));
        }

        if (json_is_null(v)) {
            continue;
        }

        if (!json_is_object(v)) {
            return pg_fail(err, "environments.%.*s.%.*s: a flag must "
                                 "be an object, or null to delete it",
                                 (int) env_len, env, (int) key_len, key);
        }

        snprintf(path, sizeof(path), "environments.%.*s.%.*s",
                 (int) env_len, env, (int) key_len, key);

        rc = pg_flag_parse(path, key, key_len, v, &f, err);
        pg_flag_free(&f);

        if (rc != PG_OK) {
            return rc;
        }
    }

    return PG_OK;
}


/* Replace or delete the flags named in one environment of the result. */
static int
pg_patch_env(json_t *env, json_t *flags)
{
    size_t       key_len;
    json_t      *flag;
    const char  *key;

    json_object_keylen_foreach(flags, key, key_len, flag) {

        if (json_is_null(flag)) {
            /* a flag already absent is no error: the delete is done */
            (void) json_object_deln(env, key, key_len);
            continue;
        }

        if (json_object_setn(env, key, key_len, flag) != 0) {
            return PG_ERR;
        }
    }

    return PG_OK;
}
