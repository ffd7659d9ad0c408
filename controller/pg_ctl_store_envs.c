/*
 * pg_ctl_store_envs.c: the flag store's environments (P environments:
 * list, add) and the controllers' beats (P controllers: read, alive or
 * not). See pg_ctl_store.h for the API and include/pg_store.h for the
 * keys; pg_ctl_store_private.h has the helpers shared with pg_ctl_store.c.
 */

#include <stdint.h>             /* int64_t, INT64_MAX */
#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* free, strtoll */
#include <string.h>             /* strcmp, strchr, strlen, strstr */
#include "pg_ctl_store.h"       /* the API this file implements */
#include "pg_ctl_store_private.h"   /* the helpers, the environments' Lua */


/*
 * KEYS: marker, environments, revision, audit stream, change log.
 * ARGV: env, its value, ts, actor, audit cap, reason, channel,
 *       PG_ENVS_MAX, PG_REVISION_MAX, PG_STORE_CHANGELOG_MAX, then, for a
 *       store made before P environments, "had" and the environments of
 *       its flags: hashes.
 *
 * A store made before P environments existed has its environments
 * recorded first, as old as the store (its marker's created_at and
 * created_by), so that adding one never drops those it had. The writer
 * lists its flags: hashes (SCAN, outside the script: a script walks no
 * keys but its KEYS) when the script asks (LEGACY). Returns the new
 * revision, or 0 when env was there already.
 */
static const char  pg_store_env_add_lua[] =
    PG_STORE_LUA_ENVS
    PG_STORE_LUA_LOG
    "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  return redis.error_reply('UNINITIALISED')\n"
    "end\n"
    "local et = redis.call('TYPE', KEYS[2]).ok\n"
    "local at = redis.call('TYPE', KEYS[4]).ok\n"
    "if (et ~= 'hash' and et ~= 'none') or (at ~= 'stream' and at ~= 'none')"
    " then\n"
    "  return redis.error_reply('WRONGTYPE environments or audit key')\n"
    "end\n"
    /* what the store had before the key: its flags: hashes, production
     * and staging; nothing is written before every check has passed */
    "local had, n = {}, 0\n"
    "if et == 'none' then\n"
    "  if ARGV[11] ~= 'had' then return redis.error_reply('LEGACY') end\n"
    "  local l = {'production', 'staging'}\n"
    "  for i = 12, #ARGV do table.insert(l, ARGV[i]) end\n"
    "  for _, e in ipairs(l) do\n"
    "    if not had[e] then had[e] = true; n = n + 1 end\n"
    "  end\n"
    "  if had[ARGV[1]] then return 0 end\n"
    "else\n"
    "  if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end\n"
    "  n = redis.call('HLEN', KEYS[2])\n"
    "end\n"
    "if n >= tonumber(ARGV[8]) then\n"
    "  return redis.error_reply('LIMIT the store holds ' .. n ..\n"
    "    ' environments, the most it may hold')\n"
    "end\n"
    /* the revision as stored, not as a Lua number: 1e+19 says nothing */
    "local raw = redis.call('GET', KEYS[3]) or '0'\n"
    "local last = tonumber(raw)\n"
    "if last ~= nil and last >= tonumber(ARGV[9]) then\n"
    "  return redis.error_reply('LIMIT the store\\'s revision is ' .. raw ..\n"
    "    (last > tonumber(ARGV[9]) and (', past ' .. ARGV[9]) or '') ..\n"
    "    ', the highest an edge accepts')\n"
    "end\n"
    "if et == 'none' then\n"
    "  local m = redis.call('HMGET', KEYS[1], 'created_at', 'created_by')\n"
    "  local old = cjson.encode({created_at = m[1] or '',\n"
    "                            created_by = m[2] or ''})\n"
    "  for e in pairs(had) do redis.call('HSET', KEYS[2], e, old) end\n"
    "end\n"
    "local rev = redis.call('INCR', KEYS[3])\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*',\n"
    "  'ts', ARGV[3], 'actor', ARGV[4], 'env', ARGV[1], 'flag', '',\n"
    "  'action', 'env', 'before', '', 'after', ARGV[2],\n"
    "  'reason', ARGV[6], 'revision', rev)\n"
    /* "REV": the edges get an environment more, not one flag */
    "pg_log(KEYS[5], rev, ARGV[10])\n"
    "redis.call('PUBLISH', ARGV[7], rev)\n"
    "return rev\n";


/* An environment's value in P environments, a new string: free() it. */
char *
pg_store_env_value(const char *ts, const char *actor)
{
    char    *text;
    json_t  *value;

    value = json_pack("{s:s,s:s}", "created_at", ts, "created_by", actor);
    if (value == NULL) {
        return NULL;
    }

    text = json_dumps(value, JSON_COMPACT);
    json_decref(value);

    return text;
}


/*
 * The environments of the P flags: hashes, into envs as name -> {}: one
 * walk of the keys (SCAN), for a store made before P environments.
 */
static int
pg_store_flag_envs(pg_store_t *store, json_t *envs)
{
    char          prefix[PG_STORE_KEY_MAX], pattern[2 * PG_STORE_KEY_MAX];
    char          cursor[32];
    size_t        i, n, plen;
    const char   *argv[7], *name;
    redisReply   *reply, *keys, *type;

    pg_store_key(store, prefix, PG_STORE_KEY_FLAGS, NULL);
    plen = strlen(prefix);

    /* the prefix as a glob that matches only itself */
    for (i = 0, n = 0; prefix[i]; i++) {
        if (strchr("*?[]\\", prefix[i])) {
            pattern[n++] = '\\';
        }
        pattern[n++] = prefix[i];
    }

    pattern[n++] = '*';
    pattern[n] = '\0';

    snprintf(cursor, sizeof(cursor), "0");

    do {
        argv[0] = "SCAN";
        argv[1] = cursor;
        argv[2] = "MATCH";
        argv[3] = pattern;
        argv[4] = "COUNT";
        argv[5] = "1000";

        reply = pg_store_command(store, 6, argv);
        if (reply == NULL) {
            return PG_ERR;
        }

        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
            freeReplyObject(reply);
            return pg_store_fail(store, PG_STORE_EREDIS, "%s: SCAN: "
                                 "unexpected reply", store->where);
        }

        snprintf(cursor, sizeof(cursor), "%s", reply->element[0]->str);
        keys = reply->element[1];

        for (i = 0; i < keys->elements; i++) {
            name = keys->element[i]->str + plen;

            if (!pg_valid_name(name, strlen(name))) {
                continue;
            }

            argv[0] = "TYPE";
            argv[1] = keys->element[i]->str;

            type = pg_store_command(store, 2, argv);
            if (type == NULL) {
                freeReplyObject(reply);
                return PG_ERR;
            }

            if (type->type == REDIS_REPLY_STATUS
                && strcmp(type->str, "hash") == 0)
            {
                json_object_set_new(envs, name, json_object());
            }

            freeReplyObject(type);
        }

        freeReplyObject(reply);

    } while (strcmp(cursor, "0") != 0);

    return PG_OK;
}


int
pg_store_count_flag_envs(pg_store_t *store, size_t *count)
{
    json_t  *envs;

    envs = json_object();
    if (envs == NULL) {
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    if (pg_store_flag_envs(store, envs) != PG_OK) {
        json_decref(envs);
        return PG_ERR;
    }

    *count = json_object_size(envs);
    json_decref(envs);

    return PG_OK;
}


int
pg_store_envs(pg_store_t *store, json_t **envs, int *recorded)
{
    char           key[PG_STORE_KEY_MAX];
    size_t         i;
    json_t        *all, *value;
    const char    *argv[2], *name;
    redisReply    *reply, *count;
    json_error_t   jerr;

    all = json_object();
    if (all == NULL) {
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    pg_store_key(store, key, PG_STORE_KEY_ENVS, NULL);

    argv[0] = "HGETALL";
    argv[1] = key;

    reply = pg_store_command(store, 2, argv);
    if (reply == NULL) {
        json_decref(all);
        return PG_ERR;
    }

    for (i = 0; reply->type == REDIS_REPLY_ARRAY && i + 1 < reply->elements;
         i += 2)
    {
        value = json_loadb(reply->element[i + 1]->str,
                           reply->element[i + 1]->len, 0, &jerr);

        if (!json_is_object(value)) {
            json_decref(value);
            value = json_object();      /* shown without its dates */
        }

        json_object_set_new(all, reply->element[i]->str, value);
    }

    *recorded = (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0);
    freeReplyObject(reply);

    /* a store made before the key: its flags: hashes, production, staging */
    if (!*recorded) {
        if (pg_store_flag_envs(store, all) != PG_OK) {
            json_decref(all);
            return PG_ERR;
        }

        if (json_object_get(all, "production") == NULL) {
            json_object_set_new(all, "production", json_object());
        }

        if (json_object_get(all, "staging") == NULL) {
            json_object_set_new(all, "staging", json_object());
        }
    }

    /* how many flags each holds */
    json_object_foreach(all, name, value) {
        pg_store_key(store, key, PG_STORE_KEY_FLAGS, name);

        argv[0] = "HLEN";
        argv[1] = key;

        count = redisCommandArgv(store->redis, 2, argv, NULL);
        if (count == NULL) {
            json_decref(all);
            return pg_store_lost(store);
        }

        json_object_set_new(value, "flags",
                            count->type == REDIS_REPLY_INTEGER
                            ? json_integer(count->integer) : json_null());
        freeReplyObject(count);
    }

    *envs = all;

    return PG_OK;
}


int
pg_store_env_add(pg_store_t *store, const char *env, const char *actor,
    const char *reason, int64_t *revision)
{
    int           rc;
    char          marker[PG_STORE_KEY_MAX], envs[PG_STORE_KEY_MAX];
    char          rev_key[PG_STORE_KEY_MAX], audit[PG_STORE_KEY_MAX];
    char          channel[PG_STORE_KEY_MAX], log[PG_STORE_KEY_MAX];
    char          cap[16], ts[32], envs_max[16], rev_max[32], *value;
    char          log_max[16];
    size_t        argc, i;
    json_t       *had, *v;
    const char   *argv[19 + PG_ENVS_MAX + 1], *name;
    redisReply   *reply;

    pg_store_key(store, marker, PG_STORE_KEY_MARKER, NULL);
    pg_store_key(store, envs, PG_STORE_KEY_ENVS, NULL);
    pg_store_key(store, rev_key, PG_STORE_KEY_REVISION, NULL);
    pg_store_key(store, audit, PG_STORE_KEY_AUDIT, NULL);
    pg_store_key(store, channel, PG_STORE_CHANNEL, NULL);
    pg_store_key(store, log, PG_STORE_KEY_CHANGELOG, NULL);
    snprintf(cap, sizeof(cap), "%d", PG_STORE_AUDIT_MAX);
    snprintf(log_max, sizeof(log_max), "%d", PG_STORE_CHANGELOG_MAX);
    snprintf(envs_max, sizeof(envs_max), "%d", PG_ENVS_MAX);
    snprintf(rev_max, sizeof(rev_max), "%lld", (long long) PG_REVISION_MAX);
    pg_store_now(ts, sizeof(ts));

    value = pg_store_env_value(ts, actor);
    if (value == NULL) {
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    argv[0] = "EVAL";
    argv[1] = pg_store_env_add_lua;
    argv[2] = "5";
    argv[3] = marker;
    argv[4] = envs;
    argv[5] = rev_key;
    argv[6] = audit;
    argv[7] = log;
    argv[8] = env;
    argv[9] = value;
    argv[10] = ts;
    argv[11] = actor;
    argv[12] = cap;
    argv[13] = reason ? reason : "";
    argv[14] = channel;
    argv[15] = envs_max;
    argv[16] = rev_max;
    argv[17] = log_max;
    argc = 18;

    had = NULL;
    reply = redisCommandArgv(store->redis, (int) argc, argv, NULL);

    if (reply && pg_store_script_error(reply, "LEGACY")) {
        /* a store made before P environments: what it had, listed here;
         * past the limit, one more than it takes says so all the same */
        freeReplyObject(reply);
        reply = NULL;

        had = json_object();
        if (had == NULL || pg_store_flag_envs(store, had) != PG_OK) {
            free(value);
            json_decref(had);
            return had ? PG_ERR
                       : pg_store_fail(store, PG_STORE_EFAULT,
                                       "out of memory");
        }

        argv[argc++] = "had";
        i = 0;

        json_object_foreach(had, name, v) {
            if (i++ > PG_ENVS_MAX) {
                break;
            }

            argv[argc++] = name;
        }

        reply = redisCommandArgv(store->redis, (int) argc, argv, NULL);
    }

    free(value);
    json_decref(had);

    if (reply == NULL) {
        return pg_store_lost(store);
    }

    rc = PG_ERR;

    if (reply->type == REDIS_REPLY_INTEGER) {
        *revision = reply->integer;
        rc = PG_OK;

    } else if (pg_store_script_error(reply, "LIMIT")) {
        pg_store_fail(store, PG_STORE_EFAILED, "cannot add environment "
                      "\"%s\": %s", env, strstr(reply->str, "LIMIT ")
                      ? strstr(reply->str, "LIMIT ") + 6 : reply->str);

    } else if (pg_store_script_error(reply, "UNINITIALISED")) {
        pg_store_fail(store, PG_STORE_EUNINIT, "the store at %s (prefix "
                      "\"%s\") is not initialised", store->where,
                      store->prefix);

    } else {
        pg_store_fail(store, PG_STORE_EREDIS, "%s: EVAL failed: %s",
                      store->where, reply->type == REDIS_REPLY_ERROR
                                    ? reply->str : "unexpected reply");
    }

    freeReplyObject(reply);

    return rc;
}


/* --- controllers' beats ------------------------------------------------- */

int
pg_store_controllers(pg_store_t *store, json_t **beats, int64_t *now_ms)
{
    int            rc;
    char           key[PG_STORE_KEY_MAX];
    size_t         i;
    json_t        *all, *beat;
    const char    *argv[2];
    redisReply    *time_reply, *reply, *f, *v;
    json_error_t   jerr;

    pg_store_key(store, key, PG_STORE_KEY_CONTROLLERS, NULL);

    /* one round trip: the clock and the beats */
    argv[0] = "TIME";
    redisAppendCommandArgv(store->redis, 1, argv, NULL);
    argv[0] = "HGETALL";
    argv[1] = key;
    redisAppendCommandArgv(store->redis, 2, argv, NULL);

    time_reply = NULL;
    reply = NULL;

    if (redisGetReply(store->redis, (void **) &time_reply) != REDIS_OK
        || redisGetReply(store->redis, (void **) &reply) != REDIS_OK)
    {
        freeReplyObject(time_reply);
        return pg_store_lost(store);
    }

    rc = PG_OK;

    if (time_reply->type != REDIS_REPLY_ARRAY || time_reply->elements != 2
        || reply->type == REDIS_REPLY_ERROR)
    {
        rc = pg_store_fail(store, PG_STORE_EREDIS, "%s: reading %s failed: "
                           "%s", store->where, key,
                           reply->type == REDIS_REPLY_ERROR
                           ? reply->str : "TIME gave an unexpected reply");
    }

    all = rc == PG_OK ? json_object() : NULL;

    if (rc == PG_OK && all == NULL) {
        rc = pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    if (rc == PG_OK) {
        *now_ms = strtoll(time_reply->element[0]->str, NULL, 10) * 1000
                  + strtoll(time_reply->element[1]->str, NULL, 10) / 1000;

        for (i = 0; reply->type == REDIS_REPLY_ARRAY
                    && i + 1 < reply->elements; i += 2)
        {
            f = reply->element[i];
            v = reply->element[i + 1];

            beat = json_loadb(v->str, v->len, 0, &jerr);

            if (!json_is_object(beat)) {
                json_decref(beat);
                beat = json_pack("{s:s}", "invalid", "not a JSON object");
            }

            if (beat) {
                json_object_set_new(all, f->str, beat);
            }
        }

        *beats = all;
    }

    freeReplyObject(time_reply);
    freeReplyObject(reply);

    return rc;
}


int
pg_store_beat_alive(const json_t *beat, int64_t now_ms, int64_t *age_ms,
    int64_t *limit_ms)
{
    json_t   *at, *interval;
    int64_t   every;

    at = json_object_get(beat, "beat_at");
    interval = json_object_get(beat, "interval_ms");

    every = json_is_integer(interval) ? json_integer_value(interval) : 0;
    *limit_ms = every > 0 && every < INT64_MAX / PG_STORE_ALIVE_INTERVALS
                ? every * PG_STORE_ALIVE_INTERVALS : 0;

    if (*limit_ms < PG_STORE_ALIVE_MIN_MS) {
        *limit_ms = PG_STORE_ALIVE_MIN_MS;
    }

    if (!json_is_integer(at)) {
        *age_ms = -1;
        return -1;
    }

    *age_ms = now_ms - json_integer_value(at);

    if (*age_ms < 0) {
        *age_ms = 0;
    }

    return *age_ms < *limit_ms;
}
