/*
 * pgd_delta.c: portal-gated follows the store's changes flag by flag (see
 * pgd.h).
 *
 * A change message (pgd_redis.c) is only a trigger: anyone can publish on
 * the channel, so its text is not trusted. What changed since the
 * revision the daemon read is asked of the store's change log (P
 * changelog, include/pg_store.h) in one script (pg_store_read_changes()),
 * which gives the flags the writes since then changed, with their values,
 * or says the whole store must be read (pgd_load(), pgd_store.c). The
 * flags read are applied to the store as last read (d->stored,
 * d->stored_bad) and composed into exactly the snapshot a whole read
 * would give (pgd_made()); its edges may then get a patch (pgd_edges.c).
 * The reconcile (pgd_tick()) reads a delta too when the store moved
 * without a message. At log level debug every delta is checked against a
 * whole read (pgd_delta_check()).
 */

#include <stdio.h>              /* snprintf */
#include <string.h>             /* strchr */
#include "pgd.h"                /* pgd_t, the API this file implements */


static json_t *pgd_delta_bad(const json_t *bad, const json_t *read,
    const json_t *read_bad);
static void pgd_delta_check(pgd_t *d, const json_t *good, const json_t *snap);


/*
 * A change message came (pgd_redis.c): the certificates' are not for this
 * file. Its text is only a trigger: anyone can publish on the channel (a
 * stray PUBLISH, another deployment with the same prefix in another db),
 * so what changed is asked of the store's change log (pgd_delta()), never
 * taken from the message; not even its revision, to skip one the daemon
 * has read: after a restore from an older backup (no message says it) the
 * store's next writes come again with revisions the daemon has read, and
 * a kill among them must not wait for the reconcile. A message whose
 * change a read covered already costs a round trip that finds nothing
 * new; several messages before the loop comes round make one read.
 */
void
pgd_change(pgd_t *d, const char *msg)
{
    pgd_log(d, PG_LOG_DEBUG, "change message \"%.140s\": asking the change "
            "log", msg);
    d->delta_wanted = 1;
}


/* The loop: what the change messages ask for, if anything. */
void
pgd_follow(pgd_t *d)
{
    if (d->load_wanted) {
        pgd_load(d);

    } else if (d->delta_wanted) {
        pgd_delta(d);
    }
}


/*
 * Read what changed since the store's revision the daemon holds, as the
 * store's change log says (pg_store_read_changes(): one script, one round
 * trip, with the marker and the revision), and make the snapshot of the
 * store's new revision from the flags it names and the store as last
 * read (d->stored), exactly as a read of the whole store would make it.
 * Read the whole store instead (pgd_load()) when:
 *
 *   - the daemon has no snapshot of its own made from the store as it was
 *     (it just started, the store was not initialised or not valid);
 *   - the log cannot say (it does not reach back, a revision changed more
 *     than one flag or was written without the log, the store went back:
 *     a restore, or is another: its epoch is not d->stored_epoch, it was
 *     rebuilt since the daemon read it, and its log is of another
 *     history), or cannot be read, or the marker is gone.
 *
 * Nothing new (a message that was not this store's, or whose change a read
 * covered already) costs this one round trip.
 *
 * The new snapshot: when the store composed as it was and the changed
 * flags are valid and keep it so (pgd_compose_fast()), the store itself;
 * otherwise pgd_compose() of the whole, in memory, against the same last
 * good snapshot as a whole read. At log level debug, the whole store is
 * read after each delta and compared (pgd_delta_check()).
 */
void
pgd_delta(pgd_t *d)
{
    int           initialised, rc;
    char          why[300];
    size_t        i;
    json_t       *read, *sha;
    int64_t       rev;
    double        since;
    const char   *names[PG_ENVS_MAX];

    if (d->cmd == NULL) {
        return;
    }

    d->delta_wanted = 0;
    since = pgd_now();

    if (d->good == NULL || d->stored == NULL
        || d->store_state != PGD_STORE_OK
        || json_integer_value(json_object_get(d->stored, "revision"))
           != d->store_revision)
    {
        pgd_load(d);
        return;
    }

    json_decref(d->bad_now);
    d->bad_now = json_object();

    if (d->bad_now == NULL) {
        pgd_load(d);
        return;
    }

    /* the environments pushed; the others' flags change nothing */
    for (i = 0; i < d->nenvs; i++) {
        names[i] = d->envs[i];
    }

    sha = json_object();
    rc = pg_store_read_changes(&d->store, d->store_revision,
                               d->stored_epoch, names, d->nenvs,
                               pgd_bad_flag, d, &initialised, &read, why,
                               sizeof(why), sha);

    if (rc != PG_OK) {
        json_decref(d->bad_now);
        d->bad_now = NULL;
        json_decref(sha);

        if (d->store.code == PG_STORE_EREDIS) {
            pgd_redis_store_failed(d);
            return;
        }

        pgd_log(d, PG_LOG_INFO, "the change log cannot be read (%s): "
                "reading the whole store", d->store.err.text);
        pgd_load(d);
        return;
    }

    if (read == NULL) {
        json_decref(d->bad_now);
        d->bad_now = NULL;
        json_decref(sha);
        pgd_log(d, initialised ? PG_LOG_INFO : PG_LOG_DEBUG, "reading the "
                "whole store after revision %lld: %s",
                (long long) d->store_revision, why);
        pgd_load(d);
        return;
    }

    rev = json_integer_value(json_object_get(read, "revision"));

    if (rev == d->store_revision) {
        pgd_log(d, PG_LOG_DEBUG, "the change log: nothing new since "
                "revision %lld", (long long) rev);
        json_decref(read);
        json_decref(d->bad_now);
        d->bad_now = NULL;
        json_decref(sha);
        return;
    }

    /* what a whole read would have: the values of the flags not valid */
    if (json_object_size(d->bad_now) > 0 && pgd_bad_values(d) != PG_OK) {
        json_decref(read);
        json_decref(d->bad_now);
        d->bad_now = NULL;
        json_decref(sha);
        return;                 /* Redis failed: said */
    }

    pgd_delta_apply(d, read, since);

    /* the hashes of the flags read, for the reconcile's digest */
    pgd_digest_read(d, sha);
    json_decref(sha);
}


/*
 * The flags read (read: {"revision": R, "environments": {ENV: {FLAG:
 * value or null}}}, taken; those not valid on their own in d->bad_now,
 * with their values, taken too) applied to the store as last read, and
 * composed into exactly the snapshot a whole read of revision R would
 * give (see pgd_delta()), which goes through pgd_made(). since: when the
 * read started (pgd_now()).
 */
void
pgd_delta_apply(pgd_t *d, json_t *read, double since)
{
    int           rc, wanted;
    char          env[PG_NAME_MAX + 1];
    json_t       *patch, *envs, *flags, *v, *store, *bad, *snap;
    json_t       *notes, *good;
    int64_t       rev;
    pg_error_t    err;
    double        checked;
    const char   *key, *slash;

    rev = json_integer_value(json_object_get(read, "revision"));

    /* the read as a patch of the store as it was: a flag not valid on its
     * own is out of the store, and in bad */
    envs = json_object_get(read, "environments");

    json_object_foreach(d->bad_now, key, v) {
        slash = strchr(key, '/');
        snprintf(env, sizeof(env), "%.*s", (int) (slash - key), key);
        flags = json_object_get(envs, env);

        if (flags == NULL) {
            flags = json_object();
            json_object_set_new(envs, env, flags);
        }

        json_object_set_new(flags, slash + 1, json_null());
    }

    patch = json_pack("{s:I,s:I,s:O}", "base_revision",
                      (json_int_t) d->store_revision, "revision",
                      (json_int_t) rev, "environments", envs);
    store = NULL;
    bad = pgd_delta_bad(d->stored_bad, envs, d->bad_now);
    json_decref(d->bad_now);
    d->bad_now = NULL;

    if (patch == NULL || bad == NULL
        || pg_snap_patch_json(d->stored, patch, &store, &err) != PG_OK)
    {
        pgd_log(d, PG_LOG_ERROR, "the changed flags cannot be applied to "
                "the store as last read (%s): reading the whole store",
                patch && bad ? err.text : "out of memory");
        json_decref(patch);
        json_decref(bad);
        json_decref(read);
        pgd_load(d);
        return;
    }

    json_decref(read);
    d->store_revision = rev;
    notes = json_object();
    good = json_incref(d->good);
    snap = NULL;

    if (notes == NULL) {
        rc = PG_ERR;
        snprintf(err.text, sizeof(err.text), "out of memory");

    } else if (json_object_size(d->notes) == 0
               && json_object_size(d->stored_bad) == 0
               && json_object_size(bad) == 0
               && pgd_compose_fast(store,
                                   json_object_get(patch, "environments")))
    {
        /* what pgd_compose() gives a store that compiles as it is */
        snap = json_pack("{s:I,s:O}", "revision", (json_int_t) rev,
                         "environments",
                         json_object_get(store, "environments"));
        rc = snap ? PG_OK : PG_ERR;
        snprintf(err.text, sizeof(err.text), "out of memory");

    } else {
        rc = pgd_compose(store, bad, d->good, &snap, notes, &wanted, &err);
    }

    json_decref(patch);

    /* the check's time is not the delta's */
    if (d->conf.log_level <= PG_LOG_DEBUG && rc == PG_OK) {
        checked = pgd_now();
        pgd_delta_check(d, good, snap);
        since += pgd_now() - checked;
    }

    json_decref(good);

    if (notes == NULL) {
        json_decref(store);
        json_decref(bad);
        pgd_log(d, PG_LOG_ERROR, "out of memory for revision %lld",
                (long long) rev);
        d->load_wanted = 1;
        return;
    }

    d->deltas++;
    d->delta_at = pgd_now();
    pgd_made(d, rc == PG_OK ? snap : NULL, notes, store, bad, &err, 1,
             since);
}


/*
 * The bad flags after a delta: bad (the store's as last read, borrowed)
 * less each flag the read named (read: {ENV: {FLAG: ...}}, a flag not
 * valid there as null), plus the read's own (read_bad, "env/flag" ->
 * {"why", "value"}). New, or NULL.
 */
static json_t *
pgd_delta_bad(const json_t *bad, const json_t *read, const json_t *read_bad)
{
    char          key[2 * PG_NAME_MAX + 8];
    json_t       *out, *flags, *v;
    const char   *env, *flag;

    out = bad ? json_copy((json_t *) bad) : json_object();

    if (out == NULL) {
        return NULL;
    }

    json_object_foreach((json_t *) read, env, flags) {
        json_object_foreach(flags, flag, v) {
            snprintf(key, sizeof(key), "%s/%s", env, flag);
            json_object_del(out, key);
        }
    }

    if (json_object_update(out, (json_t *) read_bad) != 0) {
        json_decref(out);
        return NULL;
    }

    return out;
}


/*
 * Log level debug: the delta that made snap against good must give what a
 * read of the whole store gives. Read it, compose it against the same
 * good, compare; a difference is said at error, and the whole store is
 * read at once (it is what the edges must get). A store that moved on
 * meanwhile compares nothing.
 */
static void
pgd_delta_check(pgd_t *d, const json_t *good, const json_t *snap)
{
    int          initialised, rc, wanted;
    json_t      *store, *bad, *whole, *notes;
    pg_error_t   err;

    if (pgd_read(d, &store, &bad, &initialised, NULL) != PG_OK) {
        return;
    }

    if (!initialised
        || !json_equal(json_object_get(store, "revision"),
                       json_object_get(snap, "revision")))
    {
        pgd_log(d, PG_LOG_DEBUG, "delta check: the store moved on, nothing "
                "to compare");
        json_decref(store);
        json_decref(bad);
        return;
    }

    notes = json_object();
    rc = pgd_compose(store, bad, good, &whole, notes, &wanted, &err);

    if (rc == PG_OK && json_equal(whole, snap)) {
        pgd_log(d, PG_LOG_DEBUG, "delta check: revision %lld is what the "
                "whole store gives",
                (long long) json_integer_value(json_object_get(snap,
                                                               "revision")));
    } else {
        pgd_log(d, PG_LOG_ERROR, "delta check FAILED: the snapshot made from "
                "the change log for revision %lld is not what the whole "
                "store gives; reading the whole store",
                (long long) json_integer_value(json_object_get(snap,
                                                               "revision")));
        d->load_wanted = 1;
    }

    json_decref(whole);
    json_decref(notes);
    json_decref(store);
    json_decref(bad);
}
