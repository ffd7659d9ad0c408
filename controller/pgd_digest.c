/*
 * pgd_digest.c: the reconcile's check after deltas (see pgd.h).
 *
 * Deltas read the flags the change log names; a value written into Redis
 * by hand, without a revision, is in no log. The reconcile used to read
 * the whole store once after deltas to find it, which blocks the loop for
 * as long as the store takes to read and compile (160 ms at 100,000 ids),
 * a kill that comes meanwhile included. Instead it asks the store for its
 * digest (pg_store_digest(): one script, each flag's SHA-1 as Redis
 * hashes it, 40 bytes a flag) and compares it with the SHA-1 of what the
 * daemon holds (d->digests). Nothing differs: done, the loop spent the
 * round trip. Flags differ, or are new or gone: only those are read
 * (pg_store_read_named(), at the digest's revision); those whose JSON is
 * not what the daemon holds are made revisions of their own in the store
 * (pg_store_note_unlogged(): a change log entry each, as their writes
 * should have made), said at warn, and applied as a delta
 * (pgd_delta_apply()): every edge gets them, as a patch where it can.
 * When the check cannot say (the environments changed, a field whose
 * name no flag can have, an environment's key of another type that was
 * not so, the script refused), the whole store is read, as before.
 *
 * What the daemon holds, hashed: the SHA-1 of a flag's bytes as read
 * by a delta (pg_store_read_changes() hashes them: pgd_digest_read()) or
 * by this file; otherwise (a flag from a whole read, whose bytes
 * pg_store_read() does not keep) the SHA-1 of the flag as
 * portal-gatectl writes it (json_dumps(), JSON_COMPACT | PG_JSON_REAL),
 * which is its bytes in Redis for every value a portal-gatectl wrote. A
 * value written by hand in another layout differs once: it is read, found
 * the same JSON, and its own hash kept. Each hash is kept with the flag
 * object it is of (d->digests: "env/flag" -> [SHA1HEX, flag]): store
 * documents are never changed and a delta shares the flags it did not
 * change, so a pointer compare says whether it still holds; a flag made
 * anew is hashed anew, once.
 */

#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* free */
#include <string.h>             /* strcmp, strchr, strlen, memcpy */
#include <openssl/sha.h>        /* SHA1 */
#include "pgd.h"                /* pgd_t, the API this file implements */


#define PGD_DIGEST_REASON  "changed in Redis without a revision: found by " \
                           "portal-gated's digest of the store"

static const char *pgd_digest_held(pgd_t *d, json_t *digests,
    const char *env, const char *flag, const json_t *of);
static int pgd_digest_odd(pgd_t *d, const char *env, const json_t *fields);
static int pgd_digest_name(json_t *names, const char *env, const char *flag);
static int pgd_digest_same(pgd_t *d, const char *env, const char *flag,
    const json_t *read, const json_t *bad_now);
static int pgd_digest_listed(const json_t *names, const char *env,
    const char *flag);
static void pgd_digest_keep(pgd_t *d, json_t *digests, const json_t *sha,
    const json_t *names);


/*
 * The check (pgd_tick(), after deltas). PG_OK: done, or left to the next
 * tick (the store moved meanwhile: a delta reads it first; Redis failed:
 * said). PG_ERR: the check cannot say; read the whole store.
 */
int
pgd_digest_check(pgd_t *d)
{
    int           initialised, rc, other;
    char          epoch[PG_STORE_EPOCH_MAX + 1], key[2 * PG_NAME_MAX + 8];
    char          before[PG_ENVS_MAX][PG_NAME_MAX + 1];
    size_t        i, nflags, nnames;
    json_t       *digest, *envs, *fields, *held, *heldflags, *v, *names;
    json_t       *digests, *read, *sha, *changed, *same, *renv;
    int64_t       rev, base;
    double        since;
    void         *tmp;
    const char   *flag, *want, *got, *list[PG_ENVS_MAX], *k, *slash;

    if (d->stored == NULL || d->store_state != PGD_STORE_OK) {
        return PG_ERR;
    }

    since = pgd_now();

    /* the environments, as the whole read takes them (one HKEYS): one
     * added or removed by hand is the whole read's to push */
    nnames = d->nenvs;

    for (i = 0; i < nnames; i++) {
        memcpy(before[i], d->envs[i], sizeof(before[i]));
    }

    if (pgd_envs(d) != PG_OK) {
        return PG_OK;                   /* Redis failed: said */
    }

    other = d->nenvs != nnames;

    for (i = 0; i < d->nenvs; i++) {
        list[i] = d->envs[i];
        other |= i < nnames && strcmp(before[i], d->envs[i]) != 0;
    }

    if (other) {
        pgd_log(d, PG_LOG_INFO, "reconcile: the store's environments "
                "changed without a revision: reading the whole store");
        return PG_ERR;
    }

    if (pg_store_digest(&d->store, list, d->nenvs, &initialised, &digest,
                        epoch)
        != PG_OK)
    {
        if (d->store.code == PG_STORE_EREDIS) {
            pgd_redis_store_failed(d);
            return PG_OK;
        }

        pgd_log(d, PG_LOG_INFO, "the store's digest cannot be read (%s): "
                "reading the whole store", d->store.err.text);
        return PG_ERR;
    }

    rev = json_integer_value(json_object_get(digest, "revision"));
    d->whole_at = pgd_now();            /* tried: not again at every tick */

    /* another revision or epoch: the tick's delta or whole read first */
    if (!initialised || rev != d->store_revision
        || strcmp(epoch, d->stored_epoch) != 0)
    {
        pgd_log(d, PG_LOG_DEBUG, "reconcile: the store moved on to revision "
                "%lld meanwhile: the digest waits", (long long) rev);
        json_decref(digest);
        return PG_OK;
    }

    /* the hashes of what the daemon holds, kept or made; what differs */
    digests = json_object();
    names = json_object();
    envs = json_object_get(digest, "environments");
    held = json_object_get(d->stored, "environments");
    nflags = 0;
    rc = digests && names ? PG_OK : PG_ERR;

    for (i = 0; rc == PG_OK && i < d->nenvs; i++) {
        fields = json_object_get(envs, d->envs[i]);
        heldflags = json_object_get(held, d->envs[i]);

        /* a key of another type: the environment the whole read left out
         * (pgd_compose() keeps what the edges hold) stays so */
        if (json_is_null(fields) || fields == NULL) {
            if (json_object_get(d->stored_bad, d->envs[i]) == NULL) {
                rc = PG_ERR;
            }
            continue;
        }

        if (json_object_get(d->stored_bad, d->envs[i]) != NULL
            || pgd_digest_odd(d, d->envs[i], fields) != PG_OK)
        {
            rc = PG_ERR;
            continue;
        }

        json_object_foreach(fields, flag, v) {
            if (!pg_valid_name(flag, strlen(flag))) {
                continue;                   /* pgd_digest_odd() */
            }

            nflags++;
            snprintf(key, sizeof(key), "%s/%s", d->envs[i], flag);
            want = pgd_digest_held(d, digests, d->envs[i], flag,
                                   json_object_get(heldflags, flag));
            got = json_string_value(v);

            if (want == NULL || strcmp(want, got) != 0) {
                rc = pgd_digest_name(names, d->envs[i], flag);
            }
        }

        /* gone from Redis: a flag held, or one held as not valid */
        json_object_foreach(heldflags, flag, v) {
            if (rc == PG_OK && json_object_get(fields, flag) == NULL) {
                rc = pgd_digest_name(names, d->envs[i], flag);
            }
        }

        json_object_foreach(d->stored_bad, k, v) {
            flag = strchr(k, '/');

            if (rc == PG_OK && flag != NULL
                && strncmp(k, d->envs[i], strlen(d->envs[i])) == 0
                && k[strlen(d->envs[i])] == '/'
                && pg_valid_name(flag + 1, strlen(flag + 1))
                && json_object_get(fields, flag + 1) == NULL)
            {
                rc = pgd_digest_name(names, d->envs[i], flag + 1);
            }
        }
    }

    json_decref(digest);

    if (rc != PG_OK) {
        json_decref(digests);
        json_decref(names);
        pgd_log(d, PG_LOG_INFO, "reconcile: the store's digest cannot say "
                "what changed (an environment's key, or a field no flag "
                "can be named): reading the whole store");
        return PG_ERR;
    }

    /* the hashes kept are those of what is held now, and no others */
    json_decref(d->digests);
    d->digests = digests;
    nnames = 0;

    json_object_foreach(names, k, v) {
        nnames += json_array_size(v);
    }

    if (nnames == 0) {
        json_decref(names);
        d->deltas = 0;
        pgd_log(d, PG_LOG_DEBUG, "reconcile: the store's digest at revision "
                "%lld is what was read (%zu flags, %.1f ms)",
                (long long) rev, nflags, pgd_now() - since);
        return PG_OK;
    }

    /* the flags that differ, read at that revision, with their hashes */
    json_decref(d->bad_now);
    d->bad_now = json_object();
    sha = json_object();

    if (d->bad_now == NULL || sha == NULL) {
        json_decref(names);
        json_decref(sha);
        return PG_ERR;
    }

    rc = pg_store_read_named(&d->store, rev, d->stored_epoch, list,
                             d->nenvs, names, pgd_bad_flag, d, &read, sha);

    if (rc != PG_OK || read == NULL
        || (json_object_size(d->bad_now) > 0 && pgd_bad_values(d) != PG_OK))
    {
        if (rc != PG_OK && d->store.code == PG_STORE_EREDIS) {
            pgd_redis_store_failed(d);
        } else if (rc != PG_OK) {
            pgd_log(d, PG_LOG_INFO, "the flags the store's digest names "
                    "cannot be read (%s): reading the whole store",
                    d->store.err.text);
        }

        json_decref(read);
        json_decref(names);
        json_decref(sha);
        json_decref(d->bad_now);
        d->bad_now = NULL;
        return rc == PG_OK || d->store.code == PG_STORE_EREDIS
               ? PG_OK : PG_ERR;      /* moved, or said: the next tick */
    }

    /* the same JSON in another layout: its own hash is kept, nothing else */
    changed = json_object();
    same = json_object();
    rc = changed && same ? PG_OK : PG_ERR;

    json_object_foreach(names, k, v) {
        for (i = 0; rc == PG_OK && i < json_array_size(v); i++) {
            flag = json_string_value(json_array_get(v, i));
            rc = pgd_digest_name(pgd_digest_same(d, k, flag, read,
                                                 d->bad_now)
                                 ? same : changed, k, flag);
        }
    }

    /*
     * Out of memory: no hash is kept of what was read (a NULL same would
     * be "all" to pgd_digest_keep(): the new bytes' hash kept against the
     * flag held would hide the hand edit for good). d->deltas stays: the
     * next tick's check reads these flags again.
     */
    if (rc != PG_OK) {
        pgd_log(d, PG_LOG_ERROR, "out of memory comparing %zu flags the "
                "store's digest names: the next check reads them again",
                nnames);
        json_decref(changed);
        json_decref(same);
        json_decref(names);
        json_decref(read);
        json_decref(sha);
        json_decref(d->bad_now);
        d->bad_now = NULL;
        return PG_OK;
    }

    pgd_digest_keep(d, d->digests, sha, same);
    json_decref(same);
    json_decref(names);

    if (json_object_size(changed) == 0) {
        pgd_log(d, PG_LOG_DEBUG, "reconcile: %zu flags of revision %lld are "
                "stored in another layout than the one read, with the same "
                "JSON: nothing changed", nnames, (long long) rev);
        json_decref(changed);
        json_decref(read);
        json_decref(sha);
        json_decref(d->bad_now);
        d->bad_now = NULL;
        d->deltas = 0;
        return PG_OK;
    }

    /* the others: revisions of their own, then applied as a delta */
    base = rev;
    rc = pg_store_note_unlogged(&d->store, base, d->stored_epoch, changed,
                                PGD_ACTOR, PGD_DIGEST_REASON, &rev);

    if (rc != PG_OK || rev < 0) {
        if (rc != PG_OK && d->store.code == PG_STORE_EREDIS) {
            pgd_redis_store_failed(d);
        } else if (rc != PG_OK) {
            pgd_log(d, PG_LOG_ERROR, "flags changed in Redis without a "
                    "revision cannot be made revisions (%s): reading the "
                    "whole store", d->store.err.text);
        }

        json_decref(changed);
        json_decref(read);
        json_decref(sha);
        json_decref(d->bad_now);
        d->bad_now = NULL;
        /* moved (-1): the next tick; refused (PG_ERR: a key of another
         * type, a revision past PG_REVISION_MAX): the whole read */
        return rc == PG_OK || d->store.code == PG_STORE_EREDIS
               ? PG_OK : PG_ERR;
    }

    /* the read holds what changed, and nothing else */
    envs = json_object_get(read, "environments");

    json_object_foreach(envs, k, renv) {
        json_object_foreach_safe(renv, tmp, flag, v) {
            if (!pgd_digest_listed(changed, k, flag)) {
                json_object_del(renv, flag);
            }
        }
    }

    json_object_foreach_safe(d->bad_now, tmp, k, v) {
        slash = strchr(k, '/');
        snprintf(key, sizeof(key), "%.*s", (int) (slash ? slash - k : 0), k);

        if (slash == NULL || !pgd_digest_listed(changed, key, slash + 1)) {
            json_object_del(d->bad_now, k);
        }
    }

    json_object_foreach(changed, k, v) {
        for (i = 0; i < json_array_size(v); i++) {
            pgd_log(d, PG_LOG_WARN, "flag %s/%s changed in Redis without a "
                    "revision: found by the reconcile's digest and made a "
                    "revision of its own (the store went from %lld to "
                    "%lld), for the edges to get it",
                    k, json_string_value(json_array_get(v, i)),
                    (long long) base, (long long) rev);
        }
    }

    json_object_set_new(read, "revision", json_integer(rev));
    json_decref(changed);
    d->deltas = 0;
    pgd_delta_apply(d, read, since);

    /* the hashes read are of the flags now held (unless the delta fell
     * back to a whole read, of bytes that may be others by now) */
    if (d->store_revision == rev) {
        pgd_digest_keep(d, d->digests, sha, NULL);
    }

    json_decref(sha);

    return PG_OK;
}


/* A delta read flags (sha: "env/flag" -> SHA1HEX of their bytes, as
 * pg_store_read_changes() gives it, borrowed): their hashes are kept
 * with the flags now held, so that the check hashes nothing itself. */
void
pgd_digest_read(pgd_t *d, const json_t *sha)
{
    if (d->digests == NULL) {
        d->digests = json_object();
    }

    if (d->digests != NULL && sha != NULL) {
        pgd_digest_keep(d, d->digests, sha, NULL);
    }
}


/*
 * d->stored or d->stored_bad was replaced (pgd_made(): a whole read, a
 * store rebuilt, an environment removed): each hash kept with a flag no
 * longer held goes, and its reference to that flag with it, which would
 * keep the store as read before in memory until the next check.
 */
void
pgd_digest_prune(pgd_t *d)
{
    char         env[PG_NAME_MAX + 1];
    void        *tmp;
    json_t      *v, *of;
    const char  *key, *slash;

    json_object_foreach_safe(d->digests, tmp, key, v) {
        slash = strchr(key, '/');
        of = NULL;

        if (slash != NULL && (size_t) (slash - key) <= PG_NAME_MAX) {
            snprintf(env, sizeof(env), "%.*s", (int) (slash - key), key);
            of = json_object_get(json_object_get(json_object_get(d->stored,
                                     "environments"), env), slash + 1);

            if (of == NULL) {
                of = json_object_get(d->stored_bad, key);
            }
        }

        if (of == NULL || json_array_get(v, 1) != of) {
            json_object_del(d->digests, key);
        }
    }
}


/*
 * The SHA-1 hex of what the daemon holds as env/flag (of: the flag in
 * d->stored, or NULL), kept in digests (new, for d->digests) from
 * d->digests when that is still of the same object, else made: of as
 * portal-gatectl writes it, or, for a flag held as not valid on its own
 * (d->stored_bad), only a hash kept of that very entry. NULL: none is
 * known (the flag is then read).
 */
static const char *
pgd_digest_held(pgd_t *d, json_t *digests, const char *env,
    const char *flag, const json_t *of)
{
    char            key[2 * PG_NAME_MAX + 8], hex[2 * SHA_DIGEST_LENGTH + 1];
    char           *text;
    size_t          i;
    json_t         *kept, *entry;
    unsigned char   md[SHA_DIGEST_LENGTH];

    snprintf(key, sizeof(key), "%s/%s", env, flag);

    if (of == NULL) {
        of = json_object_get(d->stored_bad, key);

        if (of == NULL) {
            return NULL;            /* new in Redis */
        }
    }

    kept = json_object_get(d->digests, key);

    if (kept != NULL && json_array_get(kept, 1) == of) {
        json_object_set(digests, key, kept);
        return json_string_value(json_array_get(kept, 0));
    }

    if (json_object_get(d->stored_bad, key) == of) {
        return NULL;
    }

    text = json_dumps(of, JSON_COMPACT | PG_JSON_REAL);

    if (text == NULL) {
        return NULL;
    }

    SHA1((const unsigned char *) text, strlen(text), md);
    free(text);

    for (i = 0; i < SHA_DIGEST_LENGTH; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }

    entry = json_pack("[sO]", hex, (json_t *) of);

    if (entry == NULL || json_object_set_new(digests, key, entry) != 0) {
        return NULL;
    }

    return json_string_value(json_array_get(entry, 0));
}


/*
 * Fields of env's hash whose names no flag can have (fields: the
 * digest's): the whole read leaves each out and names it in the bad
 * flags; the check follows them only by their number, which must be the
 * one held. PG_ERR when it is not.
 */
static int
pgd_digest_odd(pgd_t *d, const char *env, const json_t *fields)
{
    size_t        n, held, len;
    json_t       *v;
    const char   *name;

    n = 0;
    held = 0;
    len = strlen(env);

    json_object_foreach((json_t *) fields, name, v) {
        n += !pg_valid_name(name, strlen(name));
    }

    json_object_foreach(d->stored_bad, name, v) {
        if (strncmp(name, env, len) == 0 && name[len] == '/'
            && !pg_valid_name(name + len + 1, strlen(name + len + 1)))
        {
            held++;
        }
    }

    return n == held ? PG_OK : PG_ERR;
}


/* flag of env into names ({ENV: [FLAG]}), once; names NULL: nothing.
 * PG_ERR: out of memory. */
static int
pgd_digest_name(json_t *names, const char *env, const char *flag)
{
    json_t  *list;

    if (names == NULL) {
        return PG_OK;
    }

    if (pgd_digest_listed(names, env, flag)) {
        return PG_OK;
    }

    list = json_object_get(names, env);

    if (list == NULL) {
        list = json_array();

        if (list == NULL || json_object_set_new(names, env, list) != 0) {
            return PG_ERR;
        }
    }

    return json_array_append_new(list, json_string(flag)) == 0
           ? PG_OK : PG_ERR;
}


/* Whether names ({ENV: [FLAG]}) lists env/flag. */
static int
pgd_digest_listed(const json_t *names, const char *env, const char *flag)
{
    size_t   i;
    json_t  *list;

    list = json_object_get(names, env);

    for (i = 0; i < json_array_size(list); i++) {
        if (strcmp(json_string_value(json_array_get(list, i)), flag) == 0) {
            return 1;
        }
    }

    return 0;
}


/*
 * Whether env/flag as read (read's "environments", or in bad_now when it
 * is not valid on its own; neither: not in Redis) is what the daemon
 * holds (d->stored, d->stored_bad). 1 or 0.
 */
static int
pgd_digest_same(pgd_t *d, const char *env, const char *flag,
    const json_t *read, const json_t *bad_now)
{
    char     key[2 * PG_NAME_MAX + 8];
    json_t  *now, *was, *now_bad, *was_bad;

    snprintf(key, sizeof(key), "%s/%s", env, flag);
    now = json_object_get(json_object_get(json_object_get(read,
                              "environments"), env), flag);
    was = json_object_get(json_object_get(json_object_get(d->stored,
                              "environments"), env), flag);
    now_bad = json_object_get(bad_now, key);
    was_bad = json_object_get(d->stored_bad, key);

    if (json_is_null(now)) {
        now = NULL;
    }

    if (now != NULL || was != NULL) {
        return now != NULL && was != NULL && json_equal(now, was);
    }

    if (now_bad != NULL || was_bad != NULL) {
        return now_bad != NULL && was_bad != NULL
               && json_equal(now_bad, was_bad);
    }

    return 1;
}


/*
 * The hashes read (sha: "env/flag" -> SHA1HEX) kept in digests with the
 * flag now held for each (d->stored, d->stored_bad); names: only those
 * it names ({ENV: [FLAG]}), NULL: all. A flag not held keeps none.
 */
static void
pgd_digest_keep(pgd_t *d, json_t *digests, const json_t *sha,
    const json_t *names)
{
    char         env[PG_NAME_MAX + 1];
    json_t      *v, *of;
    const char  *key, *slash;

    json_object_foreach((json_t *) sha, key, v) {
        slash = strchr(key, '/');

        if (slash == NULL || (size_t) (slash - key) > PG_NAME_MAX) {
            continue;
        }

        snprintf(env, sizeof(env), "%.*s", (int) (slash - key), key);

        if (names != NULL && !pgd_digest_listed(names, env, slash + 1)) {
            continue;
        }

        of = json_object_get(json_object_get(json_object_get(d->stored,
                                 "environments"), env), slash + 1);

        if (of == NULL) {
            of = json_object_get(d->stored_bad, key);
        }

        if (of == NULL) {
            json_object_del(digests, key);
            continue;
        }

        json_object_set_new(digests, key, json_pack("[OO]", v, of));
    }
}
