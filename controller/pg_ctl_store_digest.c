/*
 * pg_ctl_store_digest.c: the store's digest, what portal-gated's reconcile
 * compares after deltas instead of reading the whole store (a value
 * written into Redis by hand, without a revision, is in no change log):
 * one script hashes every flag's value in Redis (redis.sha1hex), so that
 * the daemon reads only the flags whose hash is not that of what it holds.
 * Then a second script reads those flags at the revision the digest had,
 * and a third makes each one that changed a revision of its own, with its
 * change log entry, so that every reader (this daemon, the others, the
 * edges) follows it as a delta. See pg_ctl_store.h for the API.
 */

#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* calloc, free */
#include <string.h>             /* strcmp, strlen */
#include "pg_ctl_store.h"       /* the API this file implements */
#include "pg_ctl_store_private.h"   /* keys, the revision parser */


/*
 * KEYS: marker, revision, then the flags hash of each environment asked
 *       for.
 *
 * Returns {marker exists (0 or 1), the revision as stored (or nil), the
 * marker's epoch ("" for none), then for each environment: {FIELD,
 * SHA1HEX, ...} of its hash ({} when it has none), or 0 when its key is
 * of another type}. HKEYS, then one HGET at a time: HGETALL of large
 * values into one Lua table costs ten times as much (pg_ctl_store.c).
 */
static const char  pg_store_digest_lua[] =
    "local out = {redis.call('EXISTS', KEYS[1]), redis.call('GET', KEYS[2]),"
    " ''}\n"
    "if out[1] == 1 and redis.call('TYPE', KEYS[1]).ok == 'hash' then\n"
    "  out[3] = redis.call('HGET', KEYS[1], 'epoch') or ''\n"
    "end\n"
    "for i = 3, #KEYS do\n"
    "  local t = redis.call('TYPE', KEYS[i]).ok\n"
    "  if t == 'hash' then\n"
    "    local all = {}\n"
    "    for _, f in ipairs(redis.call('HKEYS', KEYS[i])) do\n"
    "      table.insert(all, f)\n"
    "      table.insert(all, redis.sha1hex(redis.call('HGET', KEYS[i], f)))\n"
    "    end\n"
    "    table.insert(out, all)\n"
    "  elseif t == 'none' then\n"
    "    table.insert(out, {})\n"
    "  else\n"
    "    table.insert(out, 0)\n"
    "  end\n"
    "end\n"
    "return out\n";


/*
 * KEYS: marker, revision, then the flags hash of each environment named.
 * ARGV: the revision the reader holds (base), its epoch, then for each
 *       flag: the index of its environment's key in KEYS, the
 *       environment, the flag.
 *
 * Returns what pg_store_read_changes()'s script does for a delta: {marker
 * exists, the revision, "delta", ENV, FLAG, value (nil: none), ...}, or
 * {.., .., "moved"} when the store is not at base of that epoch any more
 * (or has no marker, or a key named is of another type): a delta or the
 * whole read will say what it is then.
 */
static const char  pg_store_named_lua[] =
    "local out = {redis.call('EXISTS', KEYS[1]), redis.call('GET', KEYS[2])}\n"
    "local epoch = ''\n"
    "if out[1] == 1 and redis.call('TYPE', KEYS[1]).ok == 'hash' then\n"
    "  epoch = redis.call('HGET', KEYS[1], 'epoch') or ''\n"
    "end\n"
    "out[3] = 'moved'\n"
    "if out[1] == 0 or epoch ~= ARGV[2] or (out[2] or '0') ~= ARGV[1] then\n"
    "  return out\n"
    "end\n"
    "for i = 3, #ARGV, 3 do\n"
    "  local t = redis.call('TYPE', KEYS[tonumber(ARGV[i])]).ok\n"
    "  if t ~= 'hash' and t ~= 'none' then return out end\n"
    "end\n"
    "out[3] = 'delta'\n"
    "for i = 3, #ARGV, 3 do\n"
    "  table.insert(out, ARGV[i + 1])\n"
    "  table.insert(out, ARGV[i + 2])\n"
    "  table.insert(out, redis.call('HGET', KEYS[tonumber(ARGV[i])],\n"
    "    ARGV[i + 2]))\n"
    "end\n"
    "return out\n";


/*
 * KEYS: marker, revision, audit stream, change log.
 * ARGV: base, epoch, ts, actor, audit cap, reason, channel,
 *       PG_STORE_CHANGELOG_MAX, then ENV, FLAG for each flag.
 *
 * When the store is still at base of that epoch: one revision per flag,
 * each with its audit entry (action "revision", env and flag, before and
 * after the revisions), its change log entry "REV ENV FLAG" and its
 * message, as a write of that flag would have; returns the new revision.
 * Otherwise -1 (nothing written: moved, the next tick). -2 (nothing
 * written) when the revisions cannot be counted: base is not one a Lua
 * number holds exactly, or base plus the flags passes PG_REVISION_MAX;
 * the whole read does then, as it must, or the check would find the same
 * flags at every tick. The audit stream and the revision key are checked
 * before the first write (Redis does not roll a script back: the XADD's
 * WRONGTYPE after the SET left the revision moved without its entry).
 */
static const char  pg_store_unlogged_lua[] =
    PG_STORE_LUA_LOG
    PG_STORE_LUA_WRONGTYPE
    PG_STORE_LUA_EXACT
    "local bad = pg_wrongtype(KEYS[3], 'stream')\n"
    "  or pg_wrongtype(KEYS[2], 'string')\n"
    "if bad then return bad end\n"
    "if redis.call('EXISTS', KEYS[1]) == 0\n"
    "   or redis.call('TYPE', KEYS[1]).ok ~= 'hash'\n"
    "   or (redis.call('HGET', KEYS[1], 'epoch') or '') ~= ARGV[2]\n"
    "   or (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then\n"
    "  return -1\n"
    "end\n"
    "if not string.match(ARGV[1], '^%d+$') or not pg_exact(ARGV[1])\n"
    "   or tonumber(ARGV[1]) + (#ARGV - 8) / 2 > " PG_STORE_LUA_REVISION_MAX
    "\n then\n"
    "  return -2\n"
    "end\n"
    "local rev = tonumber(ARGV[1])\n"
    "for i = 9, #ARGV, 2 do\n"
    "  rev = rev + 1\n"
    "  local r = string.format('%d', rev)\n"
    "  local entry = r .. ' ' .. ARGV[i] .. ' ' .. ARGV[i + 1]\n"
    "  redis.call('SET', KEYS[2], r)\n"
    "  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*',\n"
    "    'ts', ARGV[3], 'actor', ARGV[4], 'env', ARGV[i],\n"
    "    'flag', ARGV[i + 1], 'action', 'revision',\n"
    "    'before', string.format('%d', rev - 1), 'after', r,\n"
    "    'reason', ARGV[6], 'revision', r)\n"
    "  pg_log(KEYS[4], entry, ARGV[8])\n"
    "  redis.call('PUBLISH', ARGV[7], entry)\n"
    "end\n"
    "return rev\n";


static json_t *pg_store_digest_env(const redisReply *r);


int
pg_store_digest(pg_store_t *store, const char *const *envs, size_t nenvs,
    int *initialised, json_t **digest, char *epoch)
{
    int           rc;
    char         *keys, numkeys[16];
    size_t        i, argc;
    json_t       *all, *env;
    int64_t       rev;
    const char  **argv;
    redisReply   *reply, *r;

    *digest = NULL;
    argc = 3 + 2 + nenvs;
    argv = calloc(argc, sizeof(char *));
    keys = calloc(2 + nenvs, PG_STORE_KEY_MAX);

    if (argv == NULL || keys == NULL) {
        free(argv);
        free(keys);
        return pg_store_fail(store, PG_STORE_EFAILED, "out of memory");
    }

    pg_store_key(store, keys, PG_STORE_KEY_MARKER, NULL);
    pg_store_key(store, keys + PG_STORE_KEY_MAX, PG_STORE_KEY_REVISION, NULL);
    snprintf(numkeys, sizeof(numkeys), "%zu", 2 + nenvs);

    argv[0] = "EVAL";
    argv[1] = pg_store_digest_lua;
    argv[2] = numkeys;
    argv[3] = keys;
    argv[4] = keys + PG_STORE_KEY_MAX;

    for (i = 0; i < nenvs; i++) {
        pg_store_key(store, keys + (2 + i) * PG_STORE_KEY_MAX,
                     PG_STORE_KEY_FLAGS, envs[i]);
        argv[5 + i] = keys + (2 + i) * PG_STORE_KEY_MAX;
    }

    rc = pg_store_script_read(store, (int) argc, argv, 3 + nenvs,
                              "reading the store's digest", &reply);
    free(argv);
    free(keys);

    if (rc != PG_OK) {
        return rc;
    }

    if (reply->elements != 3 + nenvs) {
        freeReplyObject(reply);
        return pg_store_fail(store, PG_STORE_EFAILED, "%s: reading the "
                             "store's digest failed: unexpected reply",
                             store->where);
    }

    if (pg_store_parse_revision(store, reply->element[1], &rev) != PG_OK) {
        freeReplyObject(reply);
        return PG_ERR;
    }

    *initialised = reply->element[0]->integer == 1;
    snprintf(epoch, PG_STORE_EPOCH_MAX + 1, "%s", reply->element[2]->str);
    all = json_object();
    *digest = json_pack("{s:I,s:o}", "revision", (json_int_t) rev,
                        "environments", all);

    for (i = 0; *digest != NULL && i < nenvs; i++) {
        r = reply->element[3 + i];
        env = r->type == REDIS_REPLY_INTEGER ? json_null()
                                             : pg_store_digest_env(r);

        if (env == NULL || json_object_set_new(all, envs[i], env) != 0) {
            json_decref(*digest);
            *digest = NULL;
        }
    }

    freeReplyObject(reply);

    if (*digest == NULL) {
        return pg_store_fail(store, PG_STORE_EFAILED, "out of memory, or "
                             "an unexpected reply reading the store's "
                             "digest");
    }

    return PG_OK;
}


/* One environment's {FIELD, SHA1HEX, ...} (r, borrowed) as {FIELD:
 * SHA1HEX} (new), a field holding a NUL byte under PG_STORE_ODD_FIELD;
 * NULL when it is not that, or out of memory. */
static json_t *
pg_store_digest_env(const redisReply *r)
{
    size_t       i;
    json_t      *out;
    redisReply  *f, *h;

    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        return NULL;
    }

    out = json_object();

    for (i = 0; out != NULL && i < r->elements; i += 2) {
        f = r->element[i];
        h = r->element[i + 1];

        if (f->type != REDIS_REPLY_STRING || h->type != REDIS_REPLY_STRING
            || json_object_set_new(out, strlen(f->str) == f->len
                                        ? f->str : PG_STORE_ODD_FIELD,
                                   json_stringn(h->str, h->len))
               != 0)
        {
            json_decref(out);
            out = NULL;
        }
    }

    return out;
}


int
pg_store_read_named(pg_store_t *store, int64_t base, const char *epoch,
    const char *const *envs, size_t nenvs, const json_t *names,
    pg_store_bad_pt bad, void *data, json_t **read, json_t *sha)
{
    int           rc;
    char         *keys, *idx, numkeys[16], base_text[32];
    size_t        i, n, argc, k, e;
    json_t       *flags;
    const char   *env, **argv;
    redisReply   *reply;

    *read = NULL;
    n = 0;

    json_object_foreach((json_t *) names, env, flags) {
        n += json_array_size(flags);
    }

    argc = 3 + 2 + nenvs + 2 + 3 * n;
    argv = calloc(argc, sizeof(char *));
    keys = calloc(2 + nenvs, PG_STORE_KEY_MAX);
    idx = calloc(nenvs ? nenvs : 1, 16);

    if (argv == NULL || keys == NULL || idx == NULL) {
        free(argv);
        free(keys);
        free(idx);
        return pg_store_fail(store, PG_STORE_EFAILED, "out of memory");
    }

    pg_store_key(store, keys, PG_STORE_KEY_MARKER, NULL);
    pg_store_key(store, keys + PG_STORE_KEY_MAX, PG_STORE_KEY_REVISION, NULL);
    snprintf(numkeys, sizeof(numkeys), "%zu", 2 + nenvs);
    snprintf(base_text, sizeof(base_text), "%lld", (long long) base);

    argv[0] = "EVAL";
    argv[1] = pg_store_named_lua;
    argv[2] = numkeys;
    argv[3] = keys;
    argv[4] = keys + PG_STORE_KEY_MAX;

    for (i = 0; i < nenvs; i++) {
        pg_store_key(store, keys + (2 + i) * PG_STORE_KEY_MAX,
                     PG_STORE_KEY_FLAGS, envs[i]);
        argv[5 + i] = keys + (2 + i) * PG_STORE_KEY_MAX;
        snprintf(idx + 16 * i, 16, "%u", (unsigned) (3 + i));  /* KEYS[] */
    }

    k = 5 + nenvs;
    argv[k++] = base_text;
    argv[k++] = epoch;

    for (e = 0; e < nenvs; e++) {
        flags = json_object_get(names, envs[e]);

        for (i = 0; i < json_array_size(flags); i++) {
            argv[k++] = idx + 16 * e;
            argv[k++] = envs[e];
            argv[k++] = json_string_value(json_array_get(flags, i));
        }
    }

    rc = pg_store_script_read(store, (int) k, argv, 3, "reading flags",
                              &reply);
    free(argv);
    free(keys);
    free(idx);

    if (rc != PG_OK) {
        return rc;
    }

    if (strcmp(reply->element[2]->str, "moved") == 0) {
        freeReplyObject(reply);
        return PG_OK;
    }

    rc = pg_store_changes_parse(store, reply, bad, data, read, sha);
    freeReplyObject(reply);

    return rc;
}


int
pg_store_note_unlogged(pg_store_t *store, int64_t base, const char *epoch,
    const json_t *names, const char *actor, const char *reason,
    int64_t *revision)
{
    char         marker[PG_STORE_KEY_MAX], key[PG_STORE_KEY_MAX];
    char         audit[PG_STORE_KEY_MAX], channel[PG_STORE_KEY_MAX];
    char         log[PG_STORE_KEY_MAX], log_max[16];
    char         base_text[32], cap[16], ts[32];
    size_t       i, n, k;
    json_t      *flags;
    const char  *env, **argv;
    redisReply  *reply;

    n = 0;

    json_object_foreach((json_t *) names, env, flags) {
        n += json_array_size(flags);
    }

    argv = calloc(15 + 2 * n, sizeof(char *));

    if (argv == NULL) {
        return pg_store_fail(store, PG_STORE_EFAILED, "out of memory");
    }

    pg_store_key(store, marker, PG_STORE_KEY_MARKER, NULL);
    pg_store_key(store, key, PG_STORE_KEY_REVISION, NULL);
    pg_store_key(store, audit, PG_STORE_KEY_AUDIT, NULL);
    pg_store_key(store, channel, PG_STORE_CHANNEL, NULL);
    pg_store_key(store, log, PG_STORE_KEY_CHANGELOG, NULL);
    snprintf(base_text, sizeof(base_text), "%lld", (long long) base);
    snprintf(cap, sizeof(cap), "%d", PG_STORE_AUDIT_MAX);
    snprintf(log_max, sizeof(log_max), "%d", PG_STORE_CHANGELOG_MAX);
    pg_store_now(ts, sizeof(ts));

    k = 0;
    argv[k++] = "EVAL";
    argv[k++] = pg_store_unlogged_lua;
    argv[k++] = "4";
    argv[k++] = marker;
    argv[k++] = key;
    argv[k++] = audit;
    argv[k++] = log;
    argv[k++] = base_text;
    argv[k++] = epoch;
    argv[k++] = ts;
    argv[k++] = actor;
    argv[k++] = cap;
    argv[k++] = reason;
    argv[k++] = channel;
    argv[k++] = log_max;

    json_object_foreach((json_t *) names, env, flags) {
        for (i = 0; i < json_array_size(flags); i++) {
            argv[k++] = env;
            argv[k++] = json_string_value(json_array_get(flags, i));
        }
    }

    reply = redisCommandArgv(store->redis, (int) k, argv, NULL);
    free(argv);

    if (reply == NULL) {
        return pg_store_lost(store);
    }

    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == -2) {
        freeReplyObject(reply);
        return pg_store_fail(store, PG_STORE_EFAILED, "%s: revision %lld "
                             "and %zu more would pass %lld, the highest "
                             "revision followed", store->where,
                             (long long) base, n,
                             (long long) PG_REVISION_MAX);
    }

    if (reply->type == REDIS_REPLY_INTEGER) {
        *revision = reply->integer;
        freeReplyObject(reply);
        return PG_OK;
    }

    /* a WRONGTYPE says the key, its type and that nothing was written */
    pg_store_fail(store, PG_STORE_EFAILED, "%s: %s", store->where,
                  reply->type == REDIS_REPLY_ERROR ? reply->str
                                                   : "unexpected reply");
    freeReplyObject(reply);

    return PG_ERR;
}
