/*
 * pgd_store.c: portal-gated reads the store (see pgd.h).
 *
 * pgd_load() reads the whole store in one MULTI/EXEC, has pgd_compose()
 * turn whatever it holds into a snapshot that compiles, says once what the
 * edges get instead of what the store holds, and makes the result the
 * snapshot that pgd_edges.c pushes. pgd_tick() is the reconcile: Redis's
 * revision (one round trip) and each edge's (GET status, in the multi
 * handle); a store that moved without a change message is read again
 * (a delta when its change log says how).
 *
 * The environments read are those of the config, then those the store
 * records (pgd_envs), so that `portal-gatectl env add` reaches the edges
 * without a change of the config.
 *
 * The flags that are not valid on their own are left out of the read and
 * named (pgd_bad_flag); their values are then read in one more round trip
 * (pgd_bad_values), only when there are any, so that pgd_compose() can
 * push killed a value that says "enabled": false beside a typo, a key
 * written twice or text after the object (pgd_bad_value).
 *
 * A change message, or a reconcile that finds the store moved, is
 * followed by a delta (pgd_delta.c): only the flags the store's change
 * log names are read, and the result goes through pgd_made() as a whole
 * read's does. The store as last read is kept for that (d->stored,
 * d->stored_bad). Once deltas stop, the reconcile compares the store's
 * digest with what was read (pgd_digest.c), for values written without
 * a revision; the whole store is read only when that cannot say.
 */

#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* snprintf, vsnprintf */
#include <stdlib.h>             /* calloc, free */
#include <string.h>             /* strcmp, strncmp, strchr, strlen, memcpy */
#include "pgd.h"                /* pgd_t, the API this file implements */
#include "pg_redis.h"           /* pg_redis_strerror */


static void pgd_bad_env(const char *env, const char *why, void *data);
static int pgd_env_cmp(const void *a, const void *b);
static void pgd_envs_text(pgd_t *d, char *buf, size_t size);
static json_t *pgd_bad_value(const char *text, size_t len);
static int pgd_all_enabled_false(const char *text, size_t len);
static size_t pgd_json_skip(const char *text, size_t len, size_t i);
static void pgd_say_notes(pgd_t *d, json_t *notes, const json_t *store);
static void pgd_whole(pgd_t *d, int again);
static int pgd_same_revision(pgd_t *d, json_t *snap);


/* pg_store_snapshot() found a flag that is not valid on its own. */
void
pgd_bad_flag(const char *env, const char *flag, const char *why, void *data)
{
    char    key[2 * PG_NAME_MAX + 8];
    pgd_t  *d = data;

    snprintf(key, sizeof(key), "%s/%s", env, flag);
    json_object_set_new(d->bad_now, key, json_pack("{s:s}", "why", why));
}


/* pg_store_read() cannot read an environment's key (WRONGTYPE): that
 * environment keeps what the edges hold of it (pgd_compose()). */
static void
pgd_bad_env(const char *env, const char *why, void *data)
{
    pgd_t  *d = data;

    json_object_set_new(d->bad_now, env, json_pack("{s:s}", "why", why));
}


static int
pgd_env_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}


/* d->envs as "production staging eu", for the log. */
static void
pgd_envs_text(pgd_t *d, char *buf, size_t size)
{
    size_t  i, len;

    buf[0] = '\0';
    len = 0;

    for (i = 0; i < d->nenvs && len < size; i++) {
        len += (size_t) snprintf(buf + len, size - len, "%s%s",
                                 i ? " " : "", d->envs[i]);
    }
}


/*
 * The environments to read and push, into d->envs: those of the config,
 * then those the store records (P"environments", include/pg_store.h) in
 * name order. A store made before that key records none: then the
 * config's alone, as before. A recorded name that no edge takes (written
 * by hand) and any past PG_ENVS_MAX are left out, and said once. One
 * round trip. PG_ERR: Redis failed (said).
 */
int
pgd_envs(pgd_t *d)
{
    int           skip;
    char          key[PG_STORE_PREFIX_MAX + 16], why[600], text[160];
    char          said[sizeof(d->envs_said)];
    char          old[PG_ENVS_MAX * (PG_NAME_MAX + 1)];
    char          now[PG_ENVS_MAX * (PG_NAME_MAX + 1)];
    size_t        i, j, n, len, slen;
    const char   *argv[2], **names;
    redisReply   *reply;

    pgd_envs_text(d, old, sizeof(old));

    for (i = 0; i < d->conf.nenvs; i++) {
        memcpy(d->envs[i], d->conf.envs[i], sizeof(d->envs[i]));
    }

    d->nenvs = d->conf.nenvs;

    snprintf(key, sizeof(key), "%s%s", d->conf.prefix, PG_STORE_KEY_ENVS);
    argv[0] = "HKEYS";
    argv[1] = key;

    reply = redisCommandArgv(d->cmd, 2, argv, NULL);

    if (reply == NULL) {
        snprintf(why, sizeof(why), "%s: %s", d->where,
                 pg_redis_strerror(d->cmd, text, sizeof(text)));
        pgd_redis_down(d, why);
        return PG_ERR;
    }

    said[0] = '\0';
    slen = 0;
    n = reply->type == REDIS_REPLY_ARRAY ? reply->elements : 0;
    names = calloc(n ? n : 1, sizeof(char *));

    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(said, sizeof(said), "cannot read %s (%.200s)", key,
                 reply->str);
        n = 0;
    }

    for (i = 0; names != NULL && i < n; i++) {
        names[i] = reply->element[i]->type == REDIS_REPLY_STRING
                   ? reply->element[i]->str : "";
    }

    if (names != NULL) {
        qsort(names, n, sizeof(char *), pgd_env_cmp);
    }

    for (i = 0; names != NULL && i < n; i++) {
        len = strlen(names[i]);
        skip = 0;

        for (j = 0; j < d->nenvs && !skip; j++) {
            skip = strcmp(d->envs[j], names[i]) == 0;
        }

        if (skip) {
            continue;
        }

        if (pg_valid_name(names[i], len) && d->nenvs < PG_ENVS_MAX) {
            memcpy(d->envs[d->nenvs++], names[i], len + 1);

        } else if (slen < sizeof(said)) {
            slen += (size_t) snprintf(said + slen, sizeof(said) - slen,
                                      "%s\"%.64s\"%s", slen ? ", " : "",
                                      names[i], pg_valid_name(names[i], len)
                                      ? " (past the most an edge takes)"
                                      : " (not a name an edge takes)");
        }
    }

    free(names);
    freeReplyObject(reply);

    if (said[0] != '\0' && strcmp(said, d->envs_said) != 0) {
        pgd_log(d, PG_LOG_WARN, "environments of the store left out: %s; "
                "the others are pushed", said);
    }

    memcpy(d->envs_said, said, sizeof(said));

    /* which environments are pushed, when the store adds to the config's */
    pgd_envs_text(d, now, sizeof(now));

    if (d->nenvs > d->conf.nenvs && strcmp(now, old) != 0) {
        pgd_log(d, PG_LOG_NOTICE, "pushing the environments %s: those of "
                "the config, then those recorded in the store", now);
    }

    return PG_OK;
}


/*
 * The values in Redis of the flags in d->bad_now: each that is a JSON
 * object goes in as its "value", for pgd_compose(). One round trip, an
 * HMGET per environment, pipelined. They are read after the store's
 * MULTI/EXEC, not in it (pg_store_snapshot() gives names, not values): a
 * write in between comes with its own change log entry, and the read that
 * follows puts right what this one paired. PG_ERR: Redis failed (said).
 */
int
pgd_bad_values(pgd_t *d)
{
    int            rc;
    char           key[PG_STORE_PREFIX_MAX + PG_NAME_MAX + 16], why[600];
    char           text[160];
    size_t         i, j, n, len, sent[PG_ENVS_MAX];
    json_t        *entry, *value;
    const char    *name, **argv;
    redisReply    *reply, *r;

    n = json_object_size(d->bad_now);
    argv = calloc(n + 2, sizeof(char *));

    if (argv == NULL) {
        return PG_OK;       /* then they keep their good versions */
    }

    /* one HMGET per environment with bad flags, in the read's order */
    for (i = 0; i < d->nenvs; i++) {
        snprintf(key, sizeof(key), "%s%s%s", d->conf.prefix,
                 PG_STORE_KEY_FLAGS, d->envs[i]);
        len = strlen(d->envs[i]);
        argv[0] = "HMGET";
        argv[1] = key;
        j = 2;

        json_object_foreach(d->bad_now, name, entry) {
            if (strncmp(name, d->envs[i], len) == 0 && name[len] == '/')
            {
                argv[j++] = name + len + 1;
            }
        }

        sent[i] = j - 2;

        if (sent[i] > 0) {
            redisAppendCommandArgv(d->cmd, (int) j, argv, NULL);
        }
    }

    rc = PG_OK;

    for (i = 0; i < d->nenvs; i++) {
        if (sent[i] == 0) {
            continue;
        }

        if (redisGetReply(d->cmd, (void **) &reply) != REDIS_OK) {
            snprintf(why, sizeof(why), "%s: %s", d->where,
                     pg_redis_strerror(d->cmd, text, sizeof(text)));
            pgd_redis_down(d, why);
            rc = PG_ERR;
            break;
        }

        len = strlen(d->envs[i]);
        j = 0;

        json_object_foreach(d->bad_now, name, entry) {
            if (strncmp(name, d->envs[i], len) != 0 || name[len] != '/'
                || reply->type != REDIS_REPLY_ARRAY || j >= reply->elements)
            {
                continue;
            }

            r = reply->element[j++];

            if (r->type != REDIS_REPLY_STRING) {
                continue;           /* deleted since */
            }

            value = pgd_bad_value(r->str, r->len);

            if (value != NULL) {
                json_object_set_new(entry, "value", value);
            }
        }

        freeReplyObject(reply);
    }

    free(argv);

    return rc;
}


/*
 * A bad flag's value in Redis (text, len), as pgd_compose() takes it: the
 * JSON object it holds (new), or NULL. A value that is a JSON object only
 * once a key written twice is let pass, or once the text after it is
 * ignored, is taken only when it is a kill, that is when every "enabled"
 * in it says false: `{"enabled": false, "allow": [..], "allow": [..]}`
 * was meant off, `{"enabled": false, "enabled": true}` says both and is
 * not a kill.
 */
static json_t *
pgd_bad_value(const char *text, size_t len)
{
    json_t        *value;
    json_error_t   jerr;

    value = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);

    if (json_is_object(value)) {
        return value;
    }

    json_decref(value);
    value = json_loadb(text, len, JSON_DISABLE_EOF_CHECK, &jerr);

    if (json_is_object(value)
        && json_is_false(json_object_get(value, "enabled"))
        && pgd_all_enabled_false(text, len))
    {
        return value;
    }

    json_decref(value);

    return NULL;
}


/* Whether each "enabled" key of the JSON object at the start of text says
 * false, and the text after it (if any) names no "enabled" (nor hides one
 * behind an escape). text holds an object that jansson parsed
 * (JSON_DISABLE_EOF_CHECK): it is well formed up to its closing brace. */
static int
pgd_all_enabled_false(const char *text, size_t len)
{
    int            enabled;
    size_t         i, end;
    json_t        *key;
    json_error_t   jerr;

    i = pgd_json_skip(text, len, 0);        /* whitespace only */

    if (i >= len || text[i] != '{') {
        return 0;
    }

    i++;

    for ( ;; ) {
        i = pgd_json_skip(text, len, i);

        if (i >= len) {
            return 1;
        }

        if (text[i] == '}') {
            for (i++; i < len; i++) {
                if (text[i] == '\\'
                    || (len - i >= 7 && memcmp(text + i, "enabled", 7) == 0))
                {
                    return 0;
                }
            }

            return 1;
        }

        if (text[i] == ',') {
            i++;
            continue;
        }

        if (text[i] != '"') {
            return 0;
        }

        /* the key, decoded: "enabled" may be written with escapes */
        for (end = i + 1; end < len && text[end] != '"'; end++) {
            if (text[end] == '\\') {
                end++;
            }
        }

        if (end >= len) {
            return 0;
        }

        key = json_loadb(text + i, end + 1 - i, JSON_DECODE_ANY, &jerr);
        enabled = json_is_string(key)
                  && strcmp(json_string_value(key), "enabled") == 0;
        json_decref(key);

        i = pgd_json_skip(text, len, end + 1);

        if (i >= len || text[i] != ':') {
            return 0;
        }

        i = pgd_json_skip(text, len, i + 1);

        if (enabled
            && (len - i < 5 || memcmp(text + i, "false", 5) != 0))
        {
            return 0;
        }

        /* the value: to the next ',' or '}' outside strings and nesting */
        for (end = 0; i < len; i++) {
            if (text[i] == '"') {
                for (i++; i < len && text[i] != '"'; i++) {
                    if (text[i] == '\\') {
                        i++;
                    }
                }

            } else if (text[i] == '{' || text[i] == '[') {
                end++;

            } else if (text[i] == '}' || text[i] == ']') {
                if (end == 0) {
                    break;
                }
                end--;

            } else if (text[i] == ',' && end == 0) {
                break;
            }
        }
    }
}


/* The first byte of text at or after i that is not JSON whitespace. */
static size_t
pgd_json_skip(const char *text, size_t len, size_t i)
{
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n'
                       || text[i] == '\r'))
    {
        i++;
    }

    return i;
}


/* The store cannot be pushed as it is: say why, once per reason. */
void
pgd_store_trouble(pgd_t *d, int state, const char *fmt, ...)
{
    char     msg[sizeof(d->store_said)];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    if (d->store_state == state && strcmp(msg, d->store_said) == 0) {
        return;
    }

    pgd_log(d, PG_LOG_ERROR, "%s; nothing is pushed, the edges keep what "
            "they hold", msg);

    d->store_state = state;
    memcpy(d->store_said, msg, sizeof(d->store_said));
}


/* Another store (a reload changed redis, prefix or environments): what
 * the old one held is pushed nowhere, and nothing said of it stands. */
void
pgd_store_forget(pgd_t *d)
{
    pgd_body_release(d->body);
    pgd_body_release(d->patch);
    json_decref(d->good);
    json_decref(d->notes);
    json_decref(d->seed);
    json_decref(d->stored);
    json_decref(d->stored_bad);
    json_decref(d->digests);
    d->digests = NULL;
    d->body = NULL;
    d->patch = NULL;
    d->good = NULL;
    d->notes = NULL;
    d->seed = NULL;
    d->stored = NULL;
    d->stored_bad = NULL;
    d->stored_epoch[0] = '\0';
    d->seed_state = PGD_SEED_NONE;
    d->store_state = PGD_STORE_UNKNOWN;
    d->store_said[0] = '\0';
    d->envs_said[0] = '\0';
    d->delta_wanted = 0;
}


/*
 * Read the whole store: the environments (pgd_envs()), every flag in one
 * MULTI/EXEC, then the values of those that are not valid on their own.
 * On PG_OK *store is the read and *bad its bad flags (both new), and
 * *initialised says whether it has its marker (when it has not, *bad is
 * empty). PG_ERR: Redis failed or the store cannot be read, said. epoch
 * (NULL, or PG_STORE_EPOCH_MAX + 1 bytes) gets the marker's, read with it.
 */
int
pgd_read(pgd_t *d, json_t **store, json_t **bad, int *initialised,
    char *epoch)
{
    int           rc;
    size_t        i;
    const char   *names[PG_ENVS_MAX];

    if (pgd_envs(d) != PG_OK) {
        return PG_ERR;
    }

    for (i = 0; i < d->nenvs; i++) {
        names[i] = d->envs[i];
    }

    json_decref(d->bad_now);
    d->bad_now = json_object();

    if (d->bad_now == NULL) {
        pgd_log(d, PG_LOG_ERROR, "out of memory reading the store");
        return PG_ERR;
    }

    rc = pg_store_read(&d->store, names, d->nenvs, pgd_bad_flag, pgd_bad_env,
                       d, initialised, store, epoch);

    if (rc != PG_OK) {
        json_decref(d->bad_now);
        d->bad_now = NULL;

        if (d->store.code == PG_STORE_EREDIS) {
            pgd_redis_store_failed(d);
        } else {
            pgd_store_trouble(d, PGD_STORE_BROKEN, "%s", d->store.err.text);
        }

        return PG_ERR;
    }

    if (*initialised && json_object_size(d->bad_now) > 0
        && pgd_bad_values(d) != PG_OK)
    {
        json_decref(d->bad_now);
        d->bad_now = NULL;
        json_decref(*store);
        return PG_ERR;          /* Redis failed: said */
    }

    *bad = d->bad_now;
    d->bad_now = NULL;

    return PG_OK;
}


/*
 * Read the store and make what it holds the snapshot the edges get; when
 * that depends on what the edges hold and the daemon does not know it yet,
 * ask them first (the store is read again once one has answered). The
 * change messages that came so far are all covered by this read.
 */
void
pgd_load(pgd_t *d)
{
    pgd_whole(d, 0);
}


/*
 * pgd_load(); again: the read after deltas (pgd_tick()), for what was
 * written without a revision: a store that moved on meanwhile is left to
 * a delta (a write that lands between the tick's look at the revision and
 * this read must not turn its own delta into a whole PUT), and read again
 * at the next tick.
 */
static void
pgd_whole(pgd_t *d, int again)
{
    int              initialised, rc, wanted;
    char             epoch[PG_STORE_EPOCH_MAX + 1];
    double           since;
    json_t          *store, *bad, *snap, *notes;
    int64_t          revision;
    pg_error_t       err;

    if (d->cmd == NULL) {
        return;
    }

    since = pgd_now();

    if (!again) {
        d->load_wanted = 0;
        d->delta_wanted = 0;
    }

    if (pgd_read(d, &store, &bad, &initialised, epoch) != PG_OK) {
        return;
    }

    revision = json_integer_value(json_object_get(store, "revision"));

    /* another epoch is another store: no change log says how it moved */
    if (again && (!initialised || revision != d->store_revision)
        && strcmp(epoch, d->stored_epoch) == 0)
    {
        pgd_log(d, PG_LOG_DEBUG, "reconcile: the store moved on to revision "
                "%lld meanwhile: its change log says how",
                (long long) revision);
        d->whole_at = pgd_now();    /* tried: not again at every tick */
        d->delta_wanted = 1;
        json_decref(store);
        json_decref(bad);
        return;
    }

    d->deltas = 0;
    d->whole_at = pgd_now();
    d->store_revision = revision;
    memcpy(d->stored_epoch, epoch, sizeof(d->stored_epoch));

    if (!initialised) {
        json_decref(store);
        json_decref(bad);
        pgd_store_trouble(d, PGD_STORE_UNINIT, "the store at %s (prefix "
                          "\"%s\") is NOT INITIALISED: no marker, a flushed "
                          "or brand-new Redis. To rebuild it from the edges, "
                          "run `portal-gatectl init --from-edge URL`; for a "
                          "new deployment, `portal-gatectl init`",
                          d->where, d->conf.prefix);
        return;
    }

    notes = json_object();

    if (notes == NULL) {
        json_decref(store);
        json_decref(bad);
        pgd_log(d, PG_LOG_ERROR, "out of memory reading the store");
        return;
    }

    rc = pgd_compose(store, bad, d->good ? d->good : d->seed, &snap, notes,
                     &wanted, &err);

    if (d->good == NULL && wanted && d->seed_state != PGD_SEED_SETTLED) {
        /* nothing is said or pushed before the edges have answered */
        pgd_seed_ask(d);
        json_decref(snap);
        json_decref(notes);
        json_decref(store);
        json_decref(bad);
        return;
    }

    pgd_made(d, rc == PG_OK ? snap : NULL, notes, store, bad, &err, 0,
             since);
}


/*
 * What a read of the store (whole, or a delta's) composed to: snap, or
 * NULL with err when nothing can be pushed (pgd_compose()'s PG_ERR); its
 * notes; and the store and bad flags it was made from, kept for the next
 * delta. All four are taken. snap becomes the snapshot the edges get, a
 * body of its own; delta: it was made from the change log, so an edge
 * that holds what it took may get a patch to it. since: when the read
 * started (pgd_now()), for the log.
 */
void
pgd_made(pgd_t *d, json_t *snap, json_t *notes, json_t *store, json_t *bad,
    const pg_error_t *err, int delta, double since)
{
    char            *text;
    size_t           i, nflags;
    json_t          *envs, *flags, *before;
    const char      *key;
    pgd_body_t      *body;

    pgd_say_notes(d, notes, store);

    before = d->stored;
    json_decref(d->stored_bad);
    d->stored = NULL;
    d->stored_bad = NULL;

    if (snap == NULL) {
        json_decref(before);
        json_decref(store);
        json_decref(bad);
        pgd_digest_prune(d);        /* nothing held: none kept */
        pgd_store_trouble(d, PGD_STORE_BROKEN, "revision %lld of the store "
                          "is not valid: %s",
                          (long long) d->store_revision, err->text);
        return;
    }

    /*
     * What the edges took shares its flags with the store as read: a
     * read that found the same keeps those, so that the next patch finds
     * the unchanged flags by a pointer compare, not by comparing lists.
     */
    if (!delta && before != NULL && json_equal(before, store)) {
        json_decref(store);
        store = json_incref(before);
    }

    json_decref(before);
    d->stored = store;
    d->stored_bad = bad;

    /* a delta shares the flags it did not change, and keeps its own
     * hashes (pgd_digest_read()); a whole read replaced them */
    if (!delta) {
        pgd_digest_prune(d);
    }

    if (d->store_state != PGD_STORE_OK && d->store_state != PGD_STORE_UNKNOWN)
    {
        pgd_log(d, PG_LOG_NOTICE, "the store at %s is good again",
                d->where);
    }

    d->store_state = PGD_STORE_OK;
    d->store_said[0] = '\0';

    if (d->good && json_equal(d->good, snap)) {
        json_decref(snap);
        return;
    }

    /* a delta's text waits for a PUT that needs it: patches may do */
    text = delta ? NULL : json_dumps(snap, JSON_COMPACT | PG_JSON_REAL);
    body = calloc(1, sizeof(pgd_body_t));

    if ((text == NULL && !delta) || body == NULL) {
        pgd_log(d, PG_LOG_ERROR, "out of memory for revision %lld",
                (long long) d->store_revision);
        free(text);
        free(body);
        json_decref(snap);
        return;
    }

    body->refs = 1;
    body->revision = d->store_revision;
    body->data = text;
    body->len = text ? strlen(text) : 0;
    body->json = json_incref(snap);
    body->delta = delta;
    body->base = -1;

    if (pgd_same_revision(d, snap) != PG_OK) {
        pgd_body_release(body);
        json_decref(snap);
        return;
    }

    pgd_body_release(d->body);
    d->body = body;
    pgd_body_release(d->patch);
    d->patch = NULL;
    json_decref(d->good);
    d->good = snap;

    /* one try per revision: what failed is tried again with this one */
    for (i = 0; i < d->nedges; i++) {
        d->edges[i].held = 0;
    }

    /* the daemon's own snapshot is the last good one from now on */
    json_decref(d->seed);
    d->seed = NULL;
    d->seed_state = PGD_SEED_NONE;

    nflags = 0;
    envs = json_object_get(snap, "environments");

    json_object_foreach(envs, key, flags) {
        nflags += json_object_size(flags);
    }

    if (delta) {
        pgd_log(d, PG_LOG_INFO, "revision %lld read from the change log: "
                "%zu flags in %zu environments (%.1f ms)",
                (long long) body->revision, nflags, json_object_size(envs),
                pgd_now() - since);
    } else {
        pgd_log(d, PG_LOG_INFO, "revision %lld read: %zu flags in %zu "
                "environments, %zu bytes to push (%.1f ms)",
                (long long) body->revision, nflags, json_object_size(envs),
                body->len, pgd_now() - since);
    }
}


/*
 * A snapshot for the store's revision N is about to be pushed. If the
 * daemon made another one for N before (a reload that adds an environment,
 * a read against another last good snapshot, an environment added between
 * the environments' read and the flags'), the edges that took that one
 * answer 409 "in step" to this: raise the store's revision (with an audit
 * entry, action "revision") so that they take it, and read the store
 * again. Two snapshots are the same when they are equal documents: equal
 * documents compile alike. PG_ERR: the store was raised, do not push this
 * one.
 */
static int
pgd_same_revision(pgd_t *d, json_t *snap)
{
    char      reason[200];
    int64_t   now;

    if (d->made_revision == -1) {
        d->verify = d->store_revision;      /* the first since the start */
    }

    if (d->made_revision != d->store_revision || d->made == NULL
        || json_equal(d->made, snap))
    {
        d->made_revision = d->store_revision;
        json_decref(d->made);
        d->made = json_incref(snap);
        return PG_OK;
    }

    snprintf(reason, sizeof(reason), "portal-gated made another snapshot "
             "for revision %lld than the one it pushed",
             (long long) d->store_revision);

    if (d->store_revision >= PGD_RAISE_MAX
        || pg_store_raise_revision(&d->store, d->store_revision, PGD_ACTOR,
                                   reason, &now)
           != PG_OK)
    {
        if (d->store_revision < PGD_RAISE_MAX
            && d->store.code == PG_STORE_EREDIS)
        {
            pgd_redis_store_failed(d);
            return PG_ERR;
        }

        pgd_log(d, PG_LOG_ERROR, "revision %lld of the store gives the "
                "edges another snapshot than the one pushed for it, and "
                "the store's revision cannot be raised (%s): edges that "
                "took the first keep it until the next change",
                (long long) d->store_revision, d->store.err.text);
        json_decref(d->made);
        d->made = json_incref(snap);
        return PG_OK;
    }

    pgd_log(d, PG_LOG_WARN, "revision %lld of the store gives the edges "
            "another snapshot than the one pushed for it (the environments "
            "or the last good versions changed): raised the store's "
            "revision to %lld, so that the edges take it",
            (long long) d->store_revision, (long long) now);

    d->load_wanted = 1;

    return PG_ERR;
}


/*
 * Say each note that is new or changed (pgd_compose(): "env/flag", "env"
 * or "*" -> [level, text]), and what became of those that are gone: a
 * flag valid again, or deleted from the store (store: this read). notes
 * is taken.
 */
static void
pgd_say_notes(pgd_t *d, json_t *notes, const json_t *store)
{
    char         env[PG_NAME_MAX + 1];
    json_t      *note, *said;
    const char  *key, *flag;

    json_object_foreach(notes, key, note) {
        said = json_object_get(d->notes, key);

        if (said == NULL || !json_equal(said, note)) {
            pgd_log(d, (int) json_integer_value(json_array_get(note, 0)),
                    "%s", json_string_value(json_array_get(note, 1)));
        }
    }

    json_object_foreach(d->notes, key, note) {
        if (json_object_get(notes, key) != NULL) {
            continue;
        }

        flag = strchr(key, '/');

        if (flag != NULL) {
            snprintf(env, sizeof(env), "%.*s", (int) (flag - key), key);

            if (json_object_get(json_object_get(json_object_get(store,
                                    "environments"), env), flag + 1))
            {
                pgd_log(d, PG_LOG_NOTICE, "flag %s is valid again", key);
            } else {
                pgd_log(d, PG_LOG_NOTICE, "flag %s was deleted from the "
                        "store", key);
            }

        } else if (strcmp(key, "*") == 0) {
            pgd_log(d, PG_LOG_NOTICE, "the store compiles again");

        } else if (strncmp(key, PGD_NOTE_UNREAD, strlen(PGD_NOTE_UNREAD))
                   == 0)
        {
            pgd_log(d, PG_LOG_NOTICE, "environment %s can be read again: "
                    "the edges get it as the store has it",
                    key + strlen(PGD_NOTE_UNREAD));

        } else {
            pgd_log(d, PG_LOG_NOTICE, "environment %s: no flags are held "
                    "back any more", key);
        }
    }

    json_decref(d->notes);
    d->notes = notes;
}


/* The reconcile tick: Redis's revision and each edge's. */
void
pgd_tick(pgd_t *d)
{
    int       initialised, rebuilt;
    char      epoch[PG_STORE_EPOCH_MAX + 1];
    size_t    i;
    json_t   *snap;
    int64_t   revision;
    double    now;

    for (i = 0; i < d->nedges; i++) {
        d->edges[i].held = 0;
        d->edges[i].check = 1;
    }

    now = pgd_now();

    if (d->cmd == NULL) {
        if (d->redis_state == PGD_DOWN
            && now - d->stale_said >= PGD_STALE_EVERY_MS)
        {
            pgd_log(d, PG_LOG_WARN, "redis still unreachable after %.0f s; "
                    "the edges keep what they hold",
                    (now - d->redis_down_since) / 1000);
            d->stale_said = now;
        }

        return;
    }

    /* no environments: the marker, its epoch and the revision, in one
     * round trip */
    if (pg_store_read(&d->store, NULL, 0, NULL, NULL, NULL, &initialised,
                      &snap, epoch)
        != PG_OK)
    {
        if (d->store.code == PG_STORE_EREDIS) {
            pgd_redis_store_failed(d);
        } else {
            pgd_store_trouble(d, PGD_STORE_BROKEN, "%s", d->store.err.text);
        }
        return;
    }

    revision = json_integer_value(json_object_get(snap, "revision"));
    json_decref(snap);

    /*
     * Another epoch: the store was rebuilt (FLUSHDB and init, a restore)
     * since the daemon read it, and may stand at the very revision it
     * holds, with other flags: only a whole read tells. A rebuilt store
     * that passed that revision is read whole by the delta too (the log
     * script compares the epochs), but not a store at the same revision.
     */
    rebuilt = initialised && d->store_state == PGD_STORE_OK
              && strcmp(epoch, d->stored_epoch) != 0;

    /*
     * The store moved and the daemon has not read it: its change message
     * is in and not yet read (the tick comes first in the loop), on its
     * way, or missed, or there is none. The change log says what moved it,
     * so a delta reads it as it would have for the message; when the log
     * cannot say, the whole store is read.
     */
    if (initialised && d->store_state == PGD_STORE_OK && !d->load_wanted
        && !rebuilt && revision > d->store_revision)
    {
        pgd_log(d, PG_LOG_DEBUG, "reconcile: the store is at revision %lld: "
                "asking its change log", (long long) revision);
        pgd_delta(d);
        return;
    }

    if (rebuilt) {
        pgd_log(d, PG_LOG_INFO, "reconcile: the store was rebuilt (init or "
                "a restore: another epoch) since revision %lld was read: "
                "reading the whole store", (long long) d->store_revision);
        pgd_load(d);

    } else if ((initialised && d->store_state != PGD_STORE_OK)
        || (!initialised && d->store_state != PGD_STORE_UNINIT)
        || revision != d->store_revision)
    {
        pgd_log(d, PG_LOG_DEBUG, "reconcile: the store is at revision %lld",
                (long long) revision);
        pgd_load(d);

    } else if (d->deltas > 0
               && (pgd_now() - d->delta_at >= d->conf.reconcile_ms
                   || pgd_now() - d->whole_at
                      >= PGD_WHOLE_EVERY * d->conf.reconcile_ms))
    {
        /*
         * The flags the change log did not name were not read: a value
         * written into Redis by hand, without a revision, is found here
         * by the store's digest (pgd_digest.c: one script, a SHA-1 per
         * flag, against what the daemon read), which reads only the
         * flags that differ, as a delta; the whole store only when the
         * digest cannot say. The script hashes every value with Redis
         * blocked (a few ms at 100,000 ids), so it waits until the
         * changes have stopped for a whole interval, as the whole read
         * it replaces did (that one blocked this loop, 160 ms at 100,000
         * ids: bench/RESULTS.md, incremental sync). Under changes that
         * never stop, every PGD_WHOLE_EVERY intervals all the same, so
         * that such a hand edit waits no longer than that.
         */
        pgd_log(d, PG_LOG_DEBUG, "reconcile: the whole store, after %u "
                "changes read flag by flag: comparing its digest",
                d->deltas);

        if (pgd_digest_check(d) != PG_OK) {
            pgd_whole(d, 1);
        }
    }
}
