/*
 * pg_ctl_store_private.h: what the flag store's files share
 * (pg_ctl_store.c: the store, its flags and the audit log;
 * pg_ctl_store_envs.c: the environments and the controllers' beats;
 * pg_ctl_store_log.c: reading the change log). Only they include it;
 * everyone else uses pg_ctl_store.h.
 */

#ifndef PG_CTL_STORE_PRIVATE_H
#define PG_CTL_STORE_PRIVATE_H

#include <stddef.h>             /* size_t */
#include <stdint.h>             /* int64_t */
#include <hiredis/hiredis.h>    /* redisReply */
#include "pg_ctl_store.h"       /* pg_store_t, PG_STORE_E* */

#define PG_STORE_KEY_MAX   (PG_STORE_PREFIX_MAX + 80)
#define PG_STORE_EPOCH_LEN 32   /* a new epoch: 16 random bytes in hex */


/*
 * Lua that the scripts of the files share (write, note; env add).
 *
 * pg_envs_known(envs, flags, env): is env one of the store's environments?
 * They are the fields of P environments; a store made before that key
 * existed has none, and then they are its P flags: hashes plus production
 * and staging (include/pg_store.h). nil when the key has the wrong type.
 *
 * pg_flag_envs(p): the environments of the P flags: hashes, p being the
 * flags keys' prefix ("portal-gate:flags:"), the glob escaped: one walk of
 * the keys with SCAN.
 */
#define PG_STORE_LUA_ENVS                                                    \
    "local function pg_envs_known(envs, flags, env)\n"                       \
    "  local t = redis.call('TYPE', envs).ok\n"                              \
    "  if t == 'hash' then\n"                                                \
    "    return redis.call('HEXISTS', envs, env) == 1\n"                     \
    "  end\n"                                                                \
    "  if t ~= 'none' then return nil end\n"                                 \
    "  return env == 'production' or env == 'staging'\n"                     \
    "    or redis.call('TYPE', flags).ok == 'hash'\n"                        \
    "end\n"                                                                  \
    "local function pg_flag_envs(p)\n"                                       \
    "  local pat = string.gsub(p, '[%*%?%[%]\\\\]', '\\\\%0') .. '*'\n"      \
    "  local envs, c = {}, '0'\n"                                            \
    "  repeat\n"                                                             \
    "    local r = redis.call('SCAN', c, 'MATCH', pat, 'COUNT', 1000)\n"     \
    "    c = r[1]\n"                                                         \
    "    for _, k in ipairs(r[2]) do\n"                                      \
    "      local e = string.sub(k, #p + 1)\n"                                \
    "      if #e <= 64 and string.find(e, '^[a-z0-9_]+$')\n"                 \
    "         and redis.call('TYPE', k).ok == 'hash' then\n"                 \
    "        table.insert(envs, e)\n"                                        \
    "      end\n"                                                            \
    "    end\n"                                                              \
    "  until c == '0'\n"                                                     \
    "  return envs\n"                                                        \
    "end\n"


/*
 * pg_log(key, entry, cap): push entry at the head of the change log (P
 * changelog, include/pg_store.h) and trim it to cap entries: every
 * script that moves the revision calls it, after its last check (Redis
 * does not roll a script back). A key of another type is replaced rather
 * than refused: the log only lets a reader skip the whole read, and a
 * kill must never fail on it.
 */
#define PG_STORE_LUA_LOG                                                     \
    "local function pg_log(key, entry, cap)\n"                               \
    "  if redis.call('TYPE', key).ok ~= 'list' then\n"                       \
    "    redis.call('DEL', key)\n"                                           \
    "  end\n"                                                                \
    "  redis.call('LPUSH', key, entry)\n"                                    \
    "  redis.call('LTRIM', key, 0, tonumber(cap) - 1)\n"                     \
    "end\n"


/*
 * pg_wrongtype(key, want): nil when key is of type want or does not
 * exist; else the error a script returns before its first write (Redis
 * does not roll a script back: a WRONGTYPE in the middle leaves half a
 * change), "WRONGTYPE KEY is a T, not a WANT: nothing was written".
 * (init, restore, raise; the writes check their keys the same way.)
 */
#define PG_STORE_LUA_WRONGTYPE                                               \
    "local function pg_wrongtype(key, want)\n"                               \
    "  local t = redis.call('TYPE', key).ok\n"                               \
    "  if t == want or t == 'none' then return nil end\n"                    \
    "  return redis.error_reply('WRONGTYPE ' .. key .. ' is a ' .. t ..\n"   \
    "    ', not a ' .. want .. ': nothing was written')\n"                   \
    "end\n"


/*
 * pg_exact(s): whether the digits s (a revision as stored) are a number
 * a Lua number (a double) holds exactly, up to PG_REVISION_MAX, 2^53 - 1,
 * spelt out in PG_STORE_LUA_REVISION_MAX: past it, a script's + 1 is not
 * the next revision. (The change log's reader, the digest's revisions.)
 */
#define PG_STORE_LUA_REVISION_MAX  "9007199254740991"

#define PG_STORE_LUA_EXACT                                                   \
    "local function pg_exact(s)\n"                                           \
    "  return #s < 16 or (#s == 16 and s <= '"                               \
    PG_STORE_LUA_REVISION_MAX "')\n"                                         \
    "end\n"

_Static_assert(PG_REVISION_MAX == 9007199254740991LL,
               "PG_STORE_LUA_REVISION_MAX spells PG_REVISION_MAX out");


/* Fail with code and a message in store->err; returns PG_ERR. */
int pg_store_fail(pg_store_t *store, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Redis gave no reply (I/O error, timeout): PG_STORE_EREDIS; PG_ERR. */
int pg_store_lost(pg_store_t *store);

/* A command with binary-safe arguments; NULL (and err) on Redis failure,
 * an error reply included. The reply is new: freeReplyObject() it. */
redisReply *pg_store_command(pg_store_t *store, int argc, const char **argv);

/* The prefix, name and env (NULL: none) as a key, into buf of
 * PG_STORE_KEY_MAX bytes. */
void pg_store_key(const pg_store_t *store, char *buf, const char *name,
    const char *env);

/* Now in ISO 8601 UTC, for the audit log and created_at. */
void pg_store_now(char *buf, size_t size);

/* Is reply a script's error_reply(word)? 1 or 0. */
int pg_store_script_error(const redisReply *reply, const char *word);

/* The store's revision from the reply to GET P revision (borrowed): 0
 * when it has none; PG_ERR (PG_STORE_EFAILED) when it holds no revision. */
int pg_store_parse_revision(pg_store_t *store, const redisReply *value,
    int64_t *revision);

/*
 * Flag name's value in Redis (a string reply, borrowed) as a flag that is
 * valid on its own: PG_OK and *flag a new reference; PG_ERR when the
 * value is bad (not JSON, not a valid flag), PG_FAULT when out of memory
 * (not the value's fault: never report it as a bad value), each with why
 * in size bytes of why and *flag NULL.
 */
int pg_store_parse_value(const char *name, const redisReply *value,
    json_t **flag, char *why, size_t size);

/*
 * Run a read script of the store (argc, argv: EVAL and its arguments) and
 * check the shape its answer has: an array of at least min elements, the
 * marker first (an integer) and a word third (a string: the epoch, "delta",
 * "whole", "moved"). PG_OK with *reply new; otherwise the error, in the
 * words "<where>: WHAT failed: <why>", *reply NULL. A refusal (a Redis that
 * runs no script, a memory limit) is PG_STORE_EFAILED: the whole read does
 * without scripts. (pg_ctl_store_log.c; the digest's scripts too)
 */
int pg_store_script_read(pg_store_t *store, int argc, const char **argv,
    size_t min, const char *what, redisReply **reply);

/* A change log script's "delta" reply ({marker exists, revision, "delta",
 * ENV, FLAG, value or nil, ...}, borrowed) as pg_store_read_changes()'s
 * *read (new), and sha (NULL: none) as it gives it. (pg_ctl_store_log.c;
 * the digest's named read answers the same) */
int pg_store_changes_parse(pg_store_t *store, const redisReply *reply,
    pg_store_bad_pt bad, void *data, json_t **read, json_t *sha);

/* An environment's value in P environments, a new string to free(); NULL
 * when out of memory. (pg_ctl_store_envs.c; init writes it too) */
char *pg_store_env_value(const char *ts, const char *actor);

#endif /* PG_CTL_STORE_PRIVATE_H */
