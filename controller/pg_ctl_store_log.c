/*
 * pg_ctl_store_log.c: reading the store's change log (P changelog,
 * include/pg_store.h): what portal-gated's delta reads instead of
 * trusting the text of a change message. The scripts that write the log
 * are beside the writes they log (pg_ctl_store.c, pg_ctl_store_envs.c;
 * their shared Lua, PG_STORE_LUA_LOG, is in pg_ctl_store_private.h). See
 * pg_ctl_store.h for the API.
 */

#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* calloc, free */
#include <string.h>             /* strcmp, strlen */
#include <openssl/sha.h>        /* SHA1 */
#include "pg_ctl_store.h"       /* the API this file implements */
#include "pg_ctl_store_private.h"   /* keys, the revision and value parsers */


/*
 * KEYS: marker, revision, change log, then the flags hash of each
 *       environment asked for.
 * ARGV: the revision the reader holds (base), PG_STORE_CHANGELOG_MAX,
 *       the epoch of the store it read base from, then those
 *       environments, in KEYS' order.
 *
 * Returns {marker exists (0 or 1), the revision as stored (or nil),
 * "delta", then ENV, FLAG, value (nil: deleted) for each flag the writes
 * base+1 .. revision changed in an environment asked for, once each}, or
 * {.., .., "whole", why} when the log cannot say: the reader reads the
 * whole store. A marker whose epoch is not the reader's (a missing
 * field is "", as the reader's of a store from before epochs) is another
 * store, rebuilt since base (FLUSHDB and init, a restore): its log is of
 * another history, however its revision compares with base. The log is
 * read from its head down: entry i (from 1) must
 * be revision - i + 1 in the form "REV ENV FLAG". An entry below the one
 * wanted is a revision written without the log (by a portal-gatectl from
 * before it: INCR without LPUSH); a bare "REV" changed more than a flag.
 * A revision is followed up to PG_REVISION_MAX, 2^53 - 1: a Lua number
 * (a double) holds every integer up to it exactly; one past it, or of
 * more than 16 digits, is left to the whole read. It only reads,
 * and its keys of another type are a "whole", not an error, so that the
 * whole read says what is wrong.
 */
static const char  pg_store_changes_lua[] =
    PG_STORE_LUA_EXACT
    "local out = {redis.call('EXISTS', KEYS[1]), redis.call('GET', KEYS[2])}\n"
    "local function whole(why)\n"
    "  out[3] = 'whole'\n"
    "  out[4] = why\n"
    "  return out\n"
    "end\n"
    "if out[1] == 0 then return whole('the store is not initialised') end\n"
    "local epoch = ''\n"
    "if redis.call('TYPE', KEYS[1]).ok == 'hash' then\n"
    "  epoch = redis.call('HGET', KEYS[1], 'epoch') or ''\n"
    "end\n"
    "if epoch ~= ARGV[3] then\n"
    "  return whole('the store was rebuilt (init or a restore: another '\n"
    "    .. 'epoch) since revision ' .. ARGV[1])\n"
    "end\n"
    "local raw = out[2] or '0'\n"
    "if not string.match(raw, '^%d+$') or not pg_exact(raw) then\n"
    "  return whole('its revision is not one the change log follows')\n"
    "end\n"
    "local rev, base = tonumber(raw), tonumber(ARGV[1])\n"
    "out[3] = 'delta'\n"
    "if rev == base then return out end\n"
    "if rev < base then\n"
    "  return whole('the store is at revision ' .. raw .. ', below ' ..\n"
    "    ARGV[1] .. ' (a restore?)')\n"
    "end\n"
    "local lost = 'the change log does not reach back to revision ' ..\n"
    "  ARGV[1]\n"
    "if rev - base > tonumber(ARGV[2])\n"
    "   or redis.call('TYPE', KEYS[3]).ok ~= 'list' then\n"
    "  return whole(lost)\n"
    "end\n"
    "local log = redis.call('LRANGE', KEYS[3], 0, rev - base - 1)\n"
    "local hash, names, seen = {}, {}, {}\n"
    "for i = 4, #ARGV do hash[ARGV[i]] = KEYS[i] end\n"
    "for i = 1, rev - base do\n"
    "  local e, want = log[i], string.format('%d', rev - i + 1)\n"
    "  if e == nil then return whole(lost) end\n"
    "  local r = string.match(e, '^%d+')\n"
    "  if r ~= want then\n"
    "    if r ~= nil and pg_exact(r) and tonumber(r) < rev - i + 1 then\n"
    "      return whole('revision ' .. want .. ' was written without the '\n"
    "        .. 'change log (by a portal-gatectl from before it)')\n"
    "    end\n"
    "    return whole('the change log has \"' .. string.sub(e, 1, 80) ..\n"
    "      '\" where revision ' .. want .. ' should be')\n"
    "  end\n"
    "  if e == want then\n"
    "    return whole('revision ' .. want .. ' changed more than a flag')\n"
    "  end\n"
    "  local env, flag = string.match(e, '^%d+ ([a-z0-9_]+) ([a-z0-9_]+)$')\n"
    "  if env == nil or #env > 64 or #flag > 64 then\n"
    "    return whole('the change log has \"' .. string.sub(e, 1, 80) ..\n"
    "      '\" for revision ' .. want)\n"
    "  end\n"
    "  if hash[env] and not seen[env .. '/' .. flag] then\n"
    "    seen[env .. '/' .. flag] = true\n"
    "    table.insert(names, env)\n"
    "    table.insert(names, flag)\n"
    "  end\n"
    "end\n"
    "for i = 1, #names, 2 do\n"
    "  local t = redis.call('TYPE', hash[names[i]]).ok\n"
    "  if t ~= 'hash' and t ~= 'none' then\n"
    "    return whole(hash[names[i]] .. ' is not a hash')\n"
    "  end\n"
    "end\n"
    "for i = 1, #names, 2 do\n"
    "  table.insert(out, names[i])\n"
    "  table.insert(out, names[i + 1])\n"
    "  table.insert(out, redis.call('HGET', hash[names[i]], names[i + 1]))\n"
    "end\n"
    "return out\n";


int
pg_store_read_changes(pg_store_t *store, int64_t base, const char *epoch,
    const char *const *envs, size_t nenvs, pg_store_bad_pt bad, void *data,
    int *initialised, json_t **read, char *why, size_t size, json_t *sha)
{
    int           rc;
    char         *keys, numkeys[16], base_text[32], log_max[16];
    size_t        i, argc;
    const char  **argv;
    redisReply   *reply, *r;

    *read = NULL;
    why[0] = '\0';

    /* EVAL, script, numkeys, 3 keys and one per env, 3 args and the envs */
    argc = 3 + 3 + nenvs + 3 + nenvs;
    argv = calloc(argc, sizeof(char *));
    keys = calloc(3 + nenvs, PG_STORE_KEY_MAX);

    if (argv == NULL || keys == NULL) {
        free(argv);
        free(keys);
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    pg_store_key(store, keys, PG_STORE_KEY_MARKER, NULL);
    pg_store_key(store, keys + PG_STORE_KEY_MAX, PG_STORE_KEY_REVISION, NULL);
    pg_store_key(store, keys + 2 * PG_STORE_KEY_MAX, PG_STORE_KEY_CHANGELOG,
                 NULL);
    snprintf(numkeys, sizeof(numkeys), "%zu", 3 + nenvs);
    snprintf(base_text, sizeof(base_text), "%lld", (long long) base);
    snprintf(log_max, sizeof(log_max), "%d", PG_STORE_CHANGELOG_MAX);

    argv[0] = "EVAL";
    argv[1] = pg_store_changes_lua;
    argv[2] = numkeys;

    for (i = 0; i < 3; i++) {
        argv[3 + i] = keys + i * PG_STORE_KEY_MAX;
    }

    for (i = 0; i < nenvs; i++) {
        pg_store_key(store, keys + (3 + i) * PG_STORE_KEY_MAX,
                     PG_STORE_KEY_FLAGS, envs[i]);
        argv[6 + i] = keys + (3 + i) * PG_STORE_KEY_MAX;
        argv[6 + nenvs + 3 + i] = envs[i];
    }

    argv[6 + nenvs] = base_text;
    argv[6 + nenvs + 1] = log_max;
    argv[6 + nenvs + 2] = epoch;

    rc = pg_store_script_read(store, (int) argc, argv, 3,
                              "reading the change log", &reply);
    free(argv);
    free(keys);

    if (rc != PG_OK) {
        return rc;
    }

    *initialised = reply->element[0]->integer == 1;

    if (strcmp(reply->element[2]->str, "whole") == 0) {
        r = reply->elements > 3 ? reply->element[3] : NULL;
        snprintf(why, size, "%s", r && r->type == REDIS_REPLY_STRING
                                  ? r->str : "the change log says so");
        freeReplyObject(reply);
        return PG_OK;
    }

    rc = pg_store_changes_parse(store, reply, bad, data, read, sha);
    freeReplyObject(reply);

    return rc;
}


int
pg_store_script_read(pg_store_t *store, int argc, const char **argv,
    size_t min, const char *what, redisReply **reply)
{
    redisReply  *r;

    *reply = NULL;
    r = redisCommandArgv(store->redis, argc, argv, NULL);

    if (r == NULL) {
        return pg_store_lost(store);
    }

    if (r->type == REDIS_REPLY_ERROR) {
        pg_store_fail(store, PG_STORE_EFAILED, "%s: %s failed: %s",
                      store->where, what, r->str);
        freeReplyObject(r);
        return PG_ERR;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements < min
        || r->elements < 3
        || r->element[0]->type != REDIS_REPLY_INTEGER
        || r->element[2]->type != REDIS_REPLY_STRING)
    {
        freeReplyObject(r);
        return pg_store_fail(store, PG_STORE_EFAILED, "%s: %s failed: "
                             "unexpected reply", store->where, what);
    }

    *reply = r;

    return PG_OK;
}


/* The script's "delta" (reply, borrowed) as *read (new); the digest's
 * read of named flags (pg_ctl_store_digest.c) answers the same. */
int
pg_store_changes_parse(pg_store_t *store, const redisReply *reply,
    pg_store_bad_pt bad, void *data, json_t **read, json_t *sha)
{
    int            rc;
    char           key[PG_STORE_KEY_MAX], msg[PG_ERROR_LEN + 64];
    char           hex[2 * SHA_DIGEST_LENGTH + 1];
    size_t         i, j;
    unsigned char  md[SHA_DIGEST_LENGTH];
    json_t      *all, *flags, *flag;
    int64_t      rev;
    const char  *env, *name;
    redisReply  *e, *f;

    if (pg_store_parse_revision(store, reply->element[1], &rev) != PG_OK) {
        return PG_ERR;
    }

    if ((reply->elements - 3) % 3 != 0) {
        return pg_store_fail(store, PG_STORE_EFAILED, "%s: reading the "
                             "change log failed: unexpected reply",
                             store->where);
    }

    all = json_object();
    *read = json_pack("{s:I,s:o}", "revision", (json_int_t) rev,
                      "environments", all);

    if (*read == NULL) {
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    for (i = 3; i < reply->elements; i += 3) {
        e = reply->element[i];
        f = reply->element[i + 1];

        /* the script matched them to [a-z0-9_]{1,64} */
        if (e->type != REDIS_REPLY_STRING || f->type != REDIS_REPLY_STRING
            || !pg_valid_name(e->str, e->len)
            || !pg_valid_name(f->str, f->len))
        {
            pg_store_fail(store, PG_STORE_EFAILED, "%s: reading the change "
                          "log failed: unexpected reply", store->where);
            break;
        }

        env = e->str;
        name = f->str;
        flags = json_object_get(all, env);

        /* the bytes' hash, as the store's digest has it (SHA-1 of a
         * megabyte: about a millisecond) */
        if (sha != NULL && reply->element[i + 2]->type == REDIS_REPLY_STRING)
        {
            SHA1((const unsigned char *) reply->element[i + 2]->str,
                 reply->element[i + 2]->len, md);

            for (j = 0; j < SHA_DIGEST_LENGTH; j++) {
                snprintf(hex + 2 * j, 3, "%02x", md[j]);
            }

            snprintf(key, sizeof(key), "%s/%s", env, name);
            json_object_set_new(sha, key, json_string(hex));
        }

        if (flags == NULL) {
            flags = json_object();

            if (json_object_set_new(all, env, flags) != 0) {
                pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
                break;
            }
        }

        if (reply->element[i + 2]->type == REDIS_REPLY_NIL) {
            flag = json_null();

        } else {
            rc = pg_store_parse_value(name, reply->element[i + 2], &flag,
                                      msg, sizeof(msg));

            if (rc == PG_FAULT) {
                pg_store_key(store, key, PG_STORE_KEY_FLAGS, env);
                pg_store_fail(store, PG_STORE_EFAULT, "reading flag "
                              "\"%.64s\" in %s: %s", name, key, msg);
                break;
            }

            if (rc != PG_OK) {
                if (bad) {
                    bad(env, name, msg, data);
                    continue;
                }

                pg_store_key(store, key, PG_STORE_KEY_FLAGS, env);
                pg_store_fail(store, PG_STORE_EFAILED, "flag \"%.64s\" in "
                              "%s is %s", name, key, msg);
                break;
            }
        }

        if (json_object_set_new(flags, name, flag) != 0) {
            pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
            break;
        }
    }

    if (i < reply->elements) {
        json_decref(*read);
        *read = NULL;
        return PG_ERR;
    }

    return PG_OK;
}
