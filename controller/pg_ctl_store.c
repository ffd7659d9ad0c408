/*
 * pg_ctl_store.c: the flag store in Redis: the store itself (init,
 * restore, the revision), reading flags and snapshots, writing, deleting
 * and noting a flag, and the audit log. See pg_ctl_store.h for the API
 * and include/pg_store.h for the key layout; pg_ctl_store_envs.c has the
 * environments and the controllers' beats, pg_ctl_store_log.c the reader
 * of the change log that every script here writes, and
 * pg_ctl_store_private.h what they share.
 */

#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* snprintf, sprintf */
#include <stdlib.h>             /* free, strtoll */
#include <string.h>             /* strcmp, strlen */
#include <time.h>               /* time, gmtime_r, strftime,
                                   clock_gettime */
#include <unistd.h>             /* getpid */
#include "pg_ctl_store.h"       /* the API this file implements */
#include "pg_ctl_store_private.h"   /* the helpers, the environments' Lua */
#include "pg_redis.h"           /* pg_redis_strerror: a timeout said so */


#define PG_STORE_TRIES     16           /* writes retried after CONFLICT */
#define PG_STORE_IDX_LEN   24           /* a KEYS index as text: any size_t */




/*
 * The write script's first and last steps when it carries a write id
 * (ARGV[17], KEYS[7] its P write:ID key, ARGV[18] the key's life in ms):
 * a resend of a write that was applied before its reply was lost finds
 * the key and answers {"APPLIED", revision} (pg_ctl_ha.c resends after a
 * failover); the write sets it, atomically with itself.
 */
#define PG_STORE_LUA_WRITE_ID_SEEN                                           \
    "if ARGV[17] ~= '' then\n"                                               \
    "  local done = redis.call('GET', KEYS[7])\n"                            \
    "  if done then return {'APPLIED', done} end\n"                          \
    "end\n"
#define PG_STORE_LUA_WRITE_ID_SET                                            \
    "if ARGV[17] ~= '' then\n"                                               \
    "  redis.call('SET', KEYS[7], string.format('%d', rev),\n"               \
    "    'PX', ARGV[18])\n"                                                  \
    "end\n"

/*
 * KEYS: marker, flags hash, revision, audit stream, environments, change
 *       log, the write id's key (P write:ID).
 * ARGV: flag, expected JSON ("" for none), new JSON ("" deletes the flag),
 *       channel, audit cap, ts, actor, env, action, reason, PG_FLAGS_MAX,
 *       PG_REVISION_MAX, the flag the new JSON requires when that changes
 *       ("" otherwise), PG_ENVS_MAX, the flags: hashes of a store made
 *       before P environments ("": not counted; the script asks, ENVCOUNT),
 *       PG_STORE_CHANGELOG_MAX, the write id ("": none), its key's life
 *       in ms.
 *
 * What a concurrent writer could break between the writer's read and
 * this script is checked here, where none can slip past: the
 * environment is one of the store's (NOENV); a flag is deleted only while
 * no other flag requires it (REQUIRED); a new requires names a flag that
 * exists and leads back to no cycle (NOREQ, CYCLE); and the limits of the
 * core that a write can pass without its own value being wrong (flags in
 * an environment, the revision): a store past them is one that no edge
 * would take. A write to a store that records its environments never adds
 * one (it goes only to one recorded; env add checks their limit); in a
 * store made before P environments, the first flag of production or
 * staging makes one more flags: hash, and the writer counts them with
 * SCAN, outside the script, only then: the script touches no key but its
 * KEYS and never walks the keyspace with Redis blocked (a walk of 2M keys
 * took seconds). What the value itself holds
 * (list sizes, names, texts) is checked before the script, and the script
 * writes only the value that was checked (the compare with ARGV[2] guards
 * the rest).
 */
static const char  pg_store_write_lua[] =
    PG_STORE_LUA_ENVS
    PG_STORE_LUA_LOG
    PG_STORE_LUA_WRITE_ID_SEEN
    "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  return redis.error_reply('UNINITIALISED')\n"
    "end\n"
    /* Redis does not roll a script back: fail before the first change */
    "local ft = redis.call('TYPE', KEYS[2]).ok\n"
    "local at = redis.call('TYPE', KEYS[4]).ok\n"
    "if (ft ~= 'hash' and ft ~= 'none') or (at ~= 'stream' and at ~= 'none')"
    " then\n"
    "  return redis.error_reply('WRONGTYPE flags or audit key')\n"
    "end\n"
    "local known = pg_envs_known(KEYS[5], KEYS[2], ARGV[8])\n"
    "if known == nil then\n"
    "  return redis.error_reply('WRONGTYPE environments key')\n"
    "elseif not known then\n"
    "  return redis.error_reply('NOENV')\n"
    "end\n"
    "local cur = redis.call('HGET', KEYS[2], ARGV[1])\n"
    "if cur == false then cur = '' end\n"
    "if cur ~= ARGV[2] then\n"
    "  return redis.error_reply('CONFLICT')\n"
    "end\n"
    /*
     * The flag a value requires, or nil, with one plain find: names are
     * [a-z0-9_], unescaped, and portal-gatectl writes values compact
     * (jansson), so '"requires":"NAME"' says it without decoding a list of
     * 100,000 ids ('"requires"' followed by ':"' is a key: in a JSON
     * string its quotes would be escaped). Only a value written otherwise
     * (by hand, with spaces) is decoded.
     */
    "local function pg_requires(v)\n"
    "  local p = string.find(v, '\"requires\"', 1, true)\n"
    "  if p == nil then return nil end\n"
    "  local r = string.match(v, '^:\"([a-z0-9_]*)\"', p + 10)\n"
    "  if r ~= nil then return r end\n"
    "  local ok, j = pcall(cjson.decode, v)\n"
    "  if ok and type(j) == 'table' and type(j.requires) == 'string' then\n"
    "    return j.requires\n"
    "  end\n"
    "  return nil\n"
    "end\n"
    /* a delete: refused while a flag requires this one. HKEYS, then one
     * HGET at a time: HGETALL of large values into one Lua table costs
     * ten times as much, all of it with Redis blocked */
    "if ARGV[3] == '' then\n"
    "  local names = redis.call('HKEYS', KEYS[2])\n"
    "  for _, f in ipairs(names) do\n"
    "    if f ~= ARGV[1]\n"
    "       and pg_requires(redis.call('HGET', KEYS[2], f)) == ARGV[1] then\n"
    "      return redis.error_reply('REQUIRED ' .. f)\n"
    "    end\n"
    "  end\n"
    "end\n"
    /* a new requires: the chain it starts must exist and not come back */
    "if ARGV[13] ~= '' then\n"
    "  local chain, r = {ARGV[1]}, ARGV[13]\n"
    "  for i = 1, tonumber(ARGV[11]) + 1 do\n"
    "    table.insert(chain, r)\n"
    "    if r == ARGV[1] then\n"
    "      return redis.error_reply('CYCLE ' .. table.concat(chain, ' -> '))\n"
    "    end\n"
    "    local v = redis.call('HGET', KEYS[2], r)\n"
    "    if v == false then\n"
    "      if i == 1 then return redis.error_reply('NOREQ ' .. r) end\n"
    "      break\n"
    "    end\n"
    "    r = pg_requires(v)\n"
    "    if r == nil then break end\n"
    "  end\n"
    "end\n"
    "if cur == '' then\n"
    "  local n = redis.call('HLEN', KEYS[2])\n"
    "  if n >= tonumber(ARGV[11]) then\n"
    "    return redis.error_reply('LIMIT it holds ' .. n ..\n"
    "      ' flags, the most an environment may hold')\n"
    "  end\n"
    /* the first flag of an environment of a store made before P
     * environments makes one more flags: hash: the writer counts them
     * (SCAN, outside the script) when asked to */
    "  if n == 0 and redis.call('TYPE', KEYS[5]).ok == 'none' then\n"
    "    if ARGV[15] == '' then return redis.error_reply('ENVCOUNT') end\n"
    "    if tonumber(ARGV[15]) >= tonumber(ARGV[14]) then\n"
    "      return redis.error_reply('LIMIT the store holds ' .. ARGV[15] ..\n"
    "        ' environments, the most it may hold')\n"
    "    end\n"
    "  end\n"
    "end\n"
    /* the revision as stored, not as a Lua number: 1e+19 says nothing */
    "local raw = redis.call('GET', KEYS[3]) or '0'\n"
    "local last = tonumber(raw)\n"
    "if last ~= nil and last >= tonumber(ARGV[12]) then\n"
    "  return redis.error_reply('LIMIT the store\\'s revision is ' .. raw ..\n"
    "    (last > tonumber(ARGV[12]) and (', past ' .. ARGV[12]) or '') ..\n"
    "    ', the highest an edge accepts')\n"
    "end\n"
    "local rev = redis.call('INCR', KEYS[3])\n"
    "if ARGV[3] == '' then\n"
    "  redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "else\n"
    "  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])\n"
    "end\n"
    "redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*',\n"
    "  'ts', ARGV[6], 'actor', ARGV[7], 'env', ARGV[8], 'flag', ARGV[1],\n"
    "  'action', ARGV[9], 'before', cur, 'after', ARGV[3],\n"
    "  'reason', ARGV[10], 'revision', rev)\n"
    /* "REV ENV FLAG" (include/pg_store.h): this flag alone changed, in
     * the log and on the channel; %d, not the .. of a Lua number, which
     * prints 1e+14 past 14 digits */
    "local entry = string.format('%d %s %s', rev, ARGV[8], ARGV[1])\n"
    "pg_log(KEYS[6], entry, ARGV[16])\n"
    "redis.call('PUBLISH', ARGV[4], entry)\n"
    PG_STORE_LUA_WRITE_ID_SET
    "return rev\n";

/*
 * KEYS: marker, flags hash, revision, audit stream, environments.
 * ARGV: flag, env, action, actor, reason, ts, audit cap, before, after.
 *
 * An audit entry alone, at the store's revision: what happened on the
 * edges and not in the store (release, a kill --direct of a flag that the
 * store has off already). Nothing changes, so nothing is published.
 */
static const char  pg_store_note_lua[] =
    PG_STORE_LUA_ENVS
    "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  return redis.error_reply('UNINITIALISED')\n"
    "end\n"
    "local at = redis.call('TYPE', KEYS[4]).ok\n"
    "if at ~= 'stream' and at ~= 'none' then\n"
    "  return redis.error_reply('WRONGTYPE audit key')\n"
    "end\n"
    "local known = pg_envs_known(KEYS[5], KEYS[2], ARGV[2])\n"
    "if known == nil then\n"
    "  return redis.error_reply('WRONGTYPE environments key')\n"
    "elseif not known then\n"
    "  return redis.error_reply('NOENV')\n"
    "end\n"
    "local rev = redis.call('GET', KEYS[3]) or '0'\n"
    "redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*',\n"
    "  'ts', ARGV[6], 'actor', ARGV[4], 'env', ARGV[2], 'flag', ARGV[1],\n"
    "  'action', ARGV[3], 'before', ARGV[8], 'after', ARGV[9],\n"
    "  'reason', ARGV[5], 'revision', rev)\n"
    "return tonumber(rev) or 0\n";

/*
 * KEYS: marker, revision, audit stream, environments, change log.
 * ARGV: format, ts, actor, audit cap, reason, channel, an environment's
 *       value ({"created_at", "created_by"}), the epoch, then the
 *       environments.
 * A new store: its change log starts with its revision, and its epoch is
 * new, so that no reader takes the log for the one of a store it read
 * before (pg_ctl_store_log.c).
 */
static const char  pg_store_init_lua[] =
    PG_STORE_LUA_WRONGTYPE
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "local bad = pg_wrongtype(KEYS[3], 'stream')\n"
    "  or pg_wrongtype(KEYS[2], 'string')\n"
    "if bad then return bad end\n"
    "redis.call('HSET', KEYS[1], 'format', ARGV[1], 'created_at', ARGV[2],\n"
    "  'created_by', ARGV[3], 'epoch', ARGV[8])\n"
    "redis.call('SETNX', KEYS[2], '0')\n"
    "redis.call('DEL', KEYS[4])\n"
    "for i = 9, #ARGV do\n"
    "  redis.call('HSET', KEYS[4], ARGV[i], ARGV[7])\n"
    "end\n"
    "local rev = redis.call('GET', KEYS[2])\n"
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*',\n"
    "  'ts', ARGV[2], 'actor', ARGV[3], 'env', '', 'flag', '',\n"
    "  'action', 'init', 'before', '', 'after', '', 'reason', ARGV[5],\n"
    "  'revision', rev)\n"
    "redis.call('DEL', KEYS[5])\n"
    "redis.call('LPUSH', KEYS[5], rev)\n"
    "redis.call('PUBLISH', ARGV[6], rev)\n"
    "return 1\n";


/*
 * KEYS: marker, revision, audit stream, environments, change log, then
 *       the flags hash of each environment of the snapshot.
 * ARGV: format, ts, actor, audit cap, reason, revision, epoch, channel,
 *       an environment's value, the number N of environments, the N
 *       environments, then (k, flag, JSON) triples, k the index in KEYS of
 *       the flag's flags hash: every key the script writes is in KEYS. A
 *       store at revision 0 was never written to: it is rebuilt too. The
 *       rebuilt store's change log starts with its revision, and its
 *       epoch is new (as init's).
 */
static const char  pg_store_restore_lua[] =
    PG_STORE_LUA_WRONGTYPE
    "if redis.call('EXISTS', KEYS[1]) == 1\n"
    "   and (redis.call('GET', KEYS[2]) or '0') ~= '0' then\n"
    "  return 0\n"
    "end\n"
    "local bad = pg_wrongtype(KEYS[3], 'stream')\n"
    "  or pg_wrongtype(KEYS[1], 'hash')\n"
    "if bad then return bad end\n"
    "local n = tonumber(ARGV[10])\n"
    "redis.call('DEL', KEYS[4])\n"
    "for i = 11, 10 + n do\n"
    "  redis.call('HSET', KEYS[4], ARGV[i], ARGV[9])\n"
    "end\n"
    "local seen = {}\n"
    "for i = 11 + n, #ARGV - 2, 3 do\n"
    "  local key = KEYS[tonumber(ARGV[i])]\n"
    "  if not seen[key] then redis.call('DEL', key); seen[key] = true end\n"
    "  redis.call('HSET', key, ARGV[i + 1], ARGV[i + 2])\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'format', ARGV[1], 'created_at', ARGV[2],\n"
    "  'created_by', ARGV[3], 'epoch', ARGV[7])\n"
    "redis.call('SET', KEYS[2], ARGV[6])\n"
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*',\n"
    "  'ts', ARGV[2], 'actor', ARGV[3], 'env', '', 'flag', '',\n"
    "  'action', 'init', 'before', '', 'after', '', 'reason', ARGV[5],\n"
    "  'revision', ARGV[6])\n"
    "redis.call('DEL', KEYS[5])\n"
    "redis.call('LPUSH', KEYS[5], ARGV[6])\n"
    "redis.call('PUBLISH', ARGV[8], ARGV[6])\n"
    "return 1\n";



/*
 * KEYS: marker, revision, audit stream, change log.
 * ARGV: the revision wanted, ts, actor, audit cap, reason, channel,
 *       PG_STORE_CHANGELOG_MAX.
 * Raises the revision to the one wanted unless it is there already.
 */
static const char  pg_store_raise_lua[] =
    PG_STORE_LUA_LOG
    PG_STORE_LUA_WRONGTYPE
    "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  return redis.error_reply('UNINITIALISED')\n"
    "end\n"
    "local cur = redis.call('GET', KEYS[2]) or '0'\n"
    "if tonumber(cur) ~= nil and tonumber(cur) >= tonumber(ARGV[1]) then\n"
    "  return tonumber(cur)\n"
    "end\n"
    "local bad = pg_wrongtype(KEYS[3], 'stream')\n"
    "if bad then return bad end\n"
    "redis.call('SET', KEYS[2], ARGV[1])\n"
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*',\n"
    "  'ts', ARGV[2], 'actor', ARGV[3], 'env', '', 'flag', '',\n"
    "  'action', 'revision', 'before', cur, 'after', ARGV[1],\n"
    "  'reason', ARGV[5], 'revision', ARGV[1])\n"
    "pg_log(KEYS[4], ARGV[1], ARGV[7])\n"
    "redis.call('PUBLISH', ARGV[6], ARGV[1])\n"
    "return tonumber(ARGV[1])\n";


static void pg_store_new_epoch(char *buf);
static int pg_store_check_env(pg_store_t *store, const char *env,
    const char *flag, json_t *after);
static json_t *pg_store_text(const char *s, size_t len);
static int pg_store_parse_flags(pg_store_t *store, const char *env,
    const redisReply *reply, pg_store_bad_pt bad, void *data,
    json_t **flags);
static const char *pg_store_field_name(const redisReply *name, char *buf,
    size_t size);


int
pg_store_fail(pg_store_t *store, int code, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    vsnprintf(store->err.text, sizeof(store->err.text), fmt, args);
    va_end(args);

    store->code = code;

    return PG_ERR;
}


/*
 * Redis gave no reply (an I/O error, or no answer within the timeout):
 * PG_STORE_EREDIS, worded as pg_redis words it, so that a stopped Redis
 * reads "timed out: no answer within 5000 ms", not hiredis's "Resource
 * temporarily unavailable".
 */
int
pg_store_lost(pg_store_t *store)
{
    char  text[128];

    return pg_store_fail(store, PG_STORE_EREDIS, "%s: %s", store->where,
                         pg_redis_strerror(store->redis, text,
                                           sizeof(text)));
}


/* A command with binary-safe arguments; NULL (and err) on Redis failure. */
redisReply *
pg_store_command(pg_store_t *store, int argc, const char **argv)
{
    redisReply  *reply;

    reply = redisCommandArgv(store->redis, argc, argv, NULL);

    if (reply == NULL) {
        pg_store_lost(store);
        return NULL;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        pg_store_fail(store, PG_STORE_EREDIS, "%s: %s failed: %s",
                      store->where, argv[0], reply->str);
        freeReplyObject(reply);
        return NULL;
    }

    return reply;
}


void
pg_store_key(const pg_store_t *store, char *buf, const char *name,
    const char *env)
{
    snprintf(buf, PG_STORE_KEY_MAX, "%s%s%s", store->prefix, name,
             env ? env : "");
}


void
pg_store_now(char *buf, size_t size)
{
    time_t     now;
    struct tm  tm;

    now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}


/*
 * A new store's epoch (P store's field, include/pg_store.h), into buf of
 * PG_STORE_EPOCH_LEN + 1 bytes: 16 bytes of /dev/urandom in hex. Without
 * /dev/urandom (a chroot), the clock in ns, the pid and a count: two inits
 * in one second still differ, and two hosts nearly always do. It only has
 * to differ from the epoch of every store a reader may hold.
 */
static void
pg_store_new_epoch(char *buf)
{
    FILE             *f;
    size_t            i, n;
    unsigned char     bytes[PG_STORE_EPOCH_LEN / 2];
    struct timespec   ts;
    static unsigned   count;

    n = 0;
    f = fopen("/dev/urandom", "rb");

    if (f != NULL) {
        n = fread(bytes, 1, sizeof(bytes), f);
        fclose(f);
    }

    if (n == sizeof(bytes)) {
        for (i = 0; i < n; i++) {
            sprintf(buf + 2 * i, "%02x", bytes[i]);
        }
        return;
    }

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, PG_STORE_EPOCH_LEN + 1, "%012llx%012llx%08x",
             (unsigned long long) ts.tv_sec & 0xffffffffffffULL,
             (unsigned long long) ts.tv_nsec
             ^ ((unsigned long long) getpid() << 30),
             ++count);
}


/*
 * Is reply the script's error_reply(word)? Redis may answer it as "word"
 * or, when it does not take the word for an error code, "ERR word".
 */
int
pg_store_script_error(const redisReply *reply, const char *word)
{
    const char  *s;
    size_t       len;

    if (reply->type != REDIS_REPLY_ERROR) {
        return 0;
    }

    s = reply->str;

    if (strncmp(s, "ERR ", 4) == 0) {
        s += 4;
    }

    len = strlen(word);

    return strncmp(s, word, len) == 0 && (s[len] == '\0' || s[len] == ' ');
}


/*
 * jansson's allocations, counted when they fail: jansson reports an
 * allocation that failed in the middle of a parse as a syntax error
 * ("string or '}' expected near ..."), so a read could not otherwise tell
 * out of memory from a bad value in Redis. pg_store_json_count() puts
 * this in front of whatever allocator jansson had, when the program
 * starts: before main(), so before any thread (portal-gated's
 * certificate worker) uses jansson; it is never undone. The reads compare
 * the count before and after a parse (a failure in another thread meanwhile
 * makes it out of memory too: out of memory all the same).
 */
static json_malloc_t  pg_store_json_next;
static unsigned long  pg_store_json_failed;

static void *pg_store_json_malloc(size_t size);


__attribute__((constructor)) static void
pg_store_json_count(void)
{
    json_free_t    free_fn;
    json_malloc_t  malloc_fn;

    json_get_alloc_funcs(&malloc_fn, &free_fn);

    if (malloc_fn != pg_store_json_malloc) {
        pg_store_json_next = malloc_fn;
        json_set_alloc_funcs(pg_store_json_malloc, free_fn);
    }
}


static void *
pg_store_json_malloc(size_t size)
{
    void  *p;

    p = pg_store_json_next(size);

    if (p == NULL) {
        __atomic_add_fetch(&pg_store_json_failed, 1, __ATOMIC_RELAXED);
    }

    return p;
}


static unsigned long
pg_store_json_failures(void)
{
    return __atomic_load_n(&pg_store_json_failed, __ATOMIC_RELAXED);
}


void
pg_store_setup(pg_store_t *store, redisContext *redis, const char *prefix,
    const char *where)
{
    memset(store, 0, sizeof(pg_store_t));

    store->redis = redis;
    snprintf(store->prefix, sizeof(store->prefix), "%s", prefix);
    snprintf(store->where, sizeof(store->where), "%s", where);
}


int
pg_store_initialised(pg_store_t *store, int *yes)
{
    char         marker[PG_STORE_KEY_MAX];
    const char  *argv[2];
    redisReply  *reply;

    pg_store_key(store, marker, PG_STORE_KEY_MARKER, NULL);

    argv[0] = "EXISTS";
    argv[1] = marker;

    reply = pg_store_command(store, 2, argv);
    if (reply == NULL) {
        return PG_ERR;
    }

    *yes = (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1);
    freeReplyObject(reply);

    return PG_OK;
}


int
pg_store_init(pg_store_t *store, const char *actor, const char *const *envs,
    size_t nenvs, int *created)
{
    int           rc;
    char          marker[PG_STORE_KEY_MAX], revision[PG_STORE_KEY_MAX];
    char          audit[PG_STORE_KEY_MAX], channel[PG_STORE_KEY_MAX];
    char          envs_key[PG_STORE_KEY_MAX], log[PG_STORE_KEY_MAX];
    char          format[16], cap[16], ts[32], *value;
    char          epoch[PG_STORE_EPOCH_LEN + 1];
    size_t        i;
    const char  **argv;
    redisReply   *reply;

    pg_store_new_epoch(epoch);
    pg_store_key(store, marker, PG_STORE_KEY_MARKER, NULL);
    pg_store_key(store, revision, PG_STORE_KEY_REVISION, NULL);
    pg_store_key(store, audit, PG_STORE_KEY_AUDIT, NULL);
    pg_store_key(store, channel, PG_STORE_CHANNEL, NULL);
    pg_store_key(store, envs_key, PG_STORE_KEY_ENVS, NULL);
    pg_store_key(store, log, PG_STORE_KEY_CHANGELOG, NULL);
    snprintf(format, sizeof(format), "%d", PG_STORE_FORMAT);
    snprintf(cap, sizeof(cap), "%d", PG_STORE_AUDIT_MAX);
    pg_store_now(ts, sizeof(ts));

    value = pg_store_env_value(ts, actor);
    argv = calloc(16 + nenvs, sizeof(char *));

    if (value == NULL || argv == NULL) {
        free(value);
        free(argv);
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    argv[0] = "EVAL";
    argv[1] = pg_store_init_lua;
    argv[2] = "5";
    argv[3] = marker;
    argv[4] = revision;
    argv[5] = audit;
    argv[6] = envs_key;
    argv[7] = log;
    argv[8] = format;
    argv[9] = ts;
    argv[10] = actor;
    argv[11] = cap;
    argv[12] = "initialised an empty store";
    argv[13] = channel;
    argv[14] = value;
    argv[15] = epoch;

    for (i = 0; i < nenvs; i++) {
        argv[16 + i] = envs[i];
    }

    rc = PG_OK;
    reply = pg_store_command(store, (int) (16 + nenvs), argv);

    if (reply == NULL) {
        rc = PG_ERR;

    } else {
        *created = (reply->type == REDIS_REPLY_INTEGER
                    && reply->integer == 1);
        freeReplyObject(reply);
    }

    free(value);
    free(argv);

    return rc;
}


int
pg_store_restore(pg_store_t *store, const json_t *snapshot,
    const char *const *more_envs, size_t nmore, const char *actor,
    const char *source, int *created)
{
    int            rc;
    char           marker[PG_STORE_KEY_MAX], revision[PG_STORE_KEY_MAX];
    char           audit[PG_STORE_KEY_MAX];
    char           channel[PG_STORE_KEY_MAX], envs_key[PG_STORE_KEY_MAX];
    char           log[PG_STORE_KEY_MAX], epoch[PG_STORE_EPOCH_LEN + 1];
    char           format[16], cap[16], ts[32], count[16];
    char           rev[32], reason[600], numkeys[16], *value, *keys, *idx;
    size_t         argc, n, i, j, k, nenvs, nkeys, first;
    json_t        *envs, *env_flags, *flag, *names;
    const char    *env, *name, **argv;
    redisReply    *reply;

    envs = json_object_get(snapshot, "environments");

    /* the store's environments: the snapshot's, then the others given */
    names = json_object();
    if (names == NULL) {
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    n = 0;
    json_object_foreach(envs, env, env_flags) {
        n += json_object_size(env_flags);
        json_object_set_new(names, env, json_true());
    }

    for (i = 0; i < nmore; i++) {
        json_object_set_new(names, more_envs[i], json_true());
    }

    nenvs = json_object_size(names);
    nkeys = 5 + json_object_size(envs);
    /* EVAL, script, numkeys, the keys, 10 args, the names, the triples */
    argc = 3 + nkeys + 10 + nenvs + 3 * n;

    pg_store_now(ts, sizeof(ts));
    value = pg_store_env_value(ts, actor);
    argv = calloc(argc, sizeof(char *));
    /* the flags keys, then the triples' indexes into KEYS, 12 bytes each */
    keys = calloc(nkeys - 5 + 1, PG_STORE_KEY_MAX);
    idx = calloc(nkeys - 5 + 1, PG_STORE_IDX_LEN);

    if (argv == NULL || value == NULL || keys == NULL || idx == NULL) {
        free(argv);
        free(value);
        free(keys);
        free(idx);
        json_decref(names);
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    pg_store_key(store, marker, PG_STORE_KEY_MARKER, NULL);
    pg_store_key(store, revision, PG_STORE_KEY_REVISION, NULL);
    pg_store_key(store, audit, PG_STORE_KEY_AUDIT, NULL);
    pg_store_key(store, envs_key, PG_STORE_KEY_ENVS, NULL);
    pg_store_key(store, log, PG_STORE_KEY_CHANGELOG, NULL);
    pg_store_key(store, channel, PG_STORE_CHANNEL, NULL);
    pg_store_new_epoch(epoch);
    snprintf(format, sizeof(format), "%d", PG_STORE_FORMAT);
    snprintf(cap, sizeof(cap), "%d", PG_STORE_AUDIT_MAX);
    snprintf(count, sizeof(count), "%zu", nenvs);
    snprintf(rev, sizeof(rev), "%" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(snapshot, "revision")));
    snprintf(reason, sizeof(reason), "rebuilt from the snapshot of %s",
             source);

    snprintf(numkeys, sizeof(numkeys), "%zu", nkeys);

    argv[0] = "EVAL";
    argv[1] = pg_store_restore_lua;
    argv[2] = numkeys;
    argv[3] = marker;
    argv[4] = revision;
    argv[5] = audit;
    argv[6] = envs_key;
    argv[7] = log;

    i = 8;
    k = 0;
    json_object_foreach(envs, env, env_flags) {
        pg_store_key(store, keys + k * PG_STORE_KEY_MAX, PG_STORE_KEY_FLAGS,
                     env);
        snprintf(idx + k * PG_STORE_IDX_LEN, PG_STORE_IDX_LEN, "%zu", 6 + k);
        argv[i++] = keys + k * PG_STORE_KEY_MAX;
        k++;
    }

    argv[i++] = format;
    argv[i++] = ts;
    argv[i++] = actor;
    argv[i++] = cap;
    argv[i++] = reason;
    argv[i++] = rev;
    argv[i++] = epoch;
    argv[i++] = channel;
    argv[i++] = value;
    argv[i++] = count;

    json_object_foreach(names, name, flag) {
        argv[i++] = name;
    }

    /* the flags' JSON texts, freed below */
    first = i;
    rc = PG_OK;
    k = 0;

    json_object_foreach(envs, env, env_flags) {
        json_object_foreach(env_flags, name, flag) {
            argv[i] = idx + k * PG_STORE_IDX_LEN;
            argv[i + 1] = name;
            argv[i + 2] = json_dumps(flag, JSON_COMPACT | PG_JSON_REAL);

            if (argv[i + 2] == NULL) {
                rc = pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
            }

            i += 3;
        }

        k++;
    }

    if (rc == PG_OK) {
        reply = pg_store_command(store, (int) i, argv);

        if (reply == NULL) {
            rc = PG_ERR;

        } else {
            *created = (reply->type == REDIS_REPLY_INTEGER
                        && reply->integer == 1);
            freeReplyObject(reply);
        }
    }

    for (j = first + 2; j < i; j += 3) {
        free((char *) argv[j]);
    }

    free(argv);
    free(value);
    free(keys);
    free(idx);
    json_decref(names);

    return rc;
}


int
pg_store_revision(pg_store_t *store, int64_t *revision)
{
    char         key[PG_STORE_KEY_MAX], *end;
    const char  *argv[2];
    redisReply  *reply;

    pg_store_key(store, key, PG_STORE_KEY_REVISION, NULL);

    argv[0] = "GET";
    argv[1] = key;

    reply = pg_store_command(store, 2, argv);
    if (reply == NULL) {
        return PG_ERR;
    }

    *revision = 0;

    if (reply->type == REDIS_REPLY_STRING) {
        *revision = strtoll(reply->str, &end, 10);

        if (*end != '\0' || *revision < 0) {
            pg_store_fail(store, PG_STORE_EFAILED,
                          "%s: %s holds \"%.32s\", not a revision",
                          store->where, key, reply->str);
            freeReplyObject(reply);
            return PG_ERR;
        }
    }

    freeReplyObject(reply);

    return PG_OK;
}


int
pg_store_flag(pg_store_t *store, const char *env, const char *name,
    json_t **flag)
{
    char          key[PG_STORE_KEY_MAX];
    const char   *argv[3];
    redisReply   *reply;
    json_error_t  jerr;
    unsigned long failed;

    pg_store_key(store, key, PG_STORE_KEY_FLAGS, env);

    argv[0] = "HGET";
    argv[1] = key;
    argv[2] = name;

    reply = pg_store_command(store, 3, argv);
    if (reply == NULL) {
        return PG_ERR;
    }

    *flag = NULL;

    if (reply->type == REDIS_REPLY_STRING) {
        failed = pg_store_json_failures();
        *flag = json_loadb(reply->str, reply->len, JSON_REJECT_DUPLICATES,
                           &jerr);

        /* a parse that succeeds may have run out of memory too */
        if (pg_store_json_failures() != failed) {
            freeReplyObject(reply);
            json_decref(*flag);
            *flag = NULL;
            return pg_store_fail(store, PG_STORE_EFAULT, "reading flag "
                                 "\"%s\" in %s: out of memory", name, key);
        }

        if (*flag == NULL || !json_is_object(*flag)) {
            freeReplyObject(reply);

            if (*flag == NULL) {
                return pg_store_fail(store, PG_STORE_EFAILED, "flag \"%s\" "
                                     "in %s is not valid JSON: %s (line %d, "
                                     "column %d)", name, key, jerr.text,
                                     jerr.line, jerr.column);
            }

            json_decref(*flag);
            *flag = NULL;
            return pg_store_fail(store, PG_STORE_EFAILED,
                                 "flag \"%s\" in %s is not a JSON object",
                                 name, key);
        }
    }

    freeReplyObject(reply);

    return PG_OK;
}


int
pg_store_env_flags(pg_store_t *store, const char *env, json_t **flags)
{
    int          rc;
    char         key[PG_STORE_KEY_MAX];
    const char  *argv[2];
    redisReply  *reply;

    pg_store_key(store, key, PG_STORE_KEY_FLAGS, env);

    argv[0] = "HGETALL";
    argv[1] = key;

    reply = pg_store_command(store, 2, argv);
    if (reply == NULL) {
        return PG_ERR;
    }

    rc = pg_store_parse_flags(store, env, reply, NULL, NULL, flags);
    freeReplyObject(reply);

    return rc;
}


/*
 * The flags of env from its HGETALL reply (borrowed), into a new object.
 * A flag that is not valid on its own fails the call, or with bad is
 * reported to it and left out.
 */
static int
pg_store_parse_flags(pg_store_t *store, const char *env,
    const redisReply *reply, pg_store_bad_pt bad, void *data, json_t **flags)
{
    int            rc;
    char           why[PG_ERROR_LEN + 64], key[PG_STORE_KEY_MAX];
    char           odd[4 * PG_NAME_MAX + 8];
    size_t         i;
    json_t        *all, *flag;
    redisReply    *name, *value;
    const char    *fname;

    all = json_object();
    if (all == NULL) {
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    for (i = 0; reply->type == REDIS_REPLY_ARRAY && i + 1 < reply->elements;
         i += 2)
    {
        name = reply->element[i];
        value = reply->element[i + 1];
        fname = pg_store_field_name(name, odd, sizeof(odd));

        /* "customer_portal\0x" is not customer_portal: C strings would
         * make it so, and let it stand in for the real one */
        if (fname != name->str) {
            flag = NULL;
            rc = PG_ERR;
            snprintf(why, sizeof(why), "not a name a flag can have: it holds "
                     "a NUL byte");

        } else {
            rc = pg_store_parse_value(name->str, value, &flag, why,
                                      sizeof(why));
        }

        /* out of memory is no bad value: never left out, always a failure */
        if (rc == PG_FAULT) {
            json_decref(all);
            pg_store_key(store, key, PG_STORE_KEY_FLAGS, env);
            return pg_store_fail(store, PG_STORE_EFAULT, "reading flag "
                                 "\"%.64s\" in %s: %s", fname, key, why);
        }

        if (rc != PG_OK) {
            if (bad) {
                bad(env, fname, why, data);
                continue;
            }

            json_decref(all);
            pg_store_key(store, key, PG_STORE_KEY_FLAGS, env);
            return pg_store_fail(store, PG_STORE_EFAILED,
                                 "flag \"%.64s\" in %s is %s", fname, key,
                                 why);
        }

        if (json_object_set_new(all, name->str, flag) != 0) {
            json_decref(all);
            return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
        }
    }

    *flags = all;

    return PG_OK;
}


int
pg_store_parse_value(const char *name, const redisReply *value, json_t **flag,
    char *why, size_t size)
{
    int            rc;
    pg_error_t     err;
    json_error_t   jerr;
    unsigned long  failed;

    *flag = NULL;

    if (value->type != REDIS_REPLY_STRING) {
        snprintf(why, size, "not a string");
        return PG_ERR;
    }

    failed = pg_store_json_failures();

    *flag = json_loadb(value->str, value->len, JSON_REJECT_DUPLICATES, &jerr);

    /* even a parse that succeeds may have run out of memory: jansson's
     * lexer cuts a string short when it cannot grow it */
    if (pg_store_json_failures() != failed) {
        json_decref(*flag);
        *flag = NULL;
        snprintf(why, size, "out of memory");
        return PG_FAULT;
    }

    if (*flag == NULL) {
        snprintf(why, size, "not JSON: %s", jerr.text);
        return PG_ERR;
    }

    rc = pg_flag_check_json(name, *flag, &err);

    if (rc != PG_OK) {
        json_decref(*flag);
        *flag = NULL;

        if (rc == PG_FAULT) {
            snprintf(why, size, "%s", err.text);
            return PG_FAULT;
        }

        snprintf(why, size, "invalid: %s", err.text);
        return PG_ERR;
    }

    return PG_OK;
}


/*
 * A hash field's name as C text: name->str itself when it holds no NUL
 * byte; else, in buf, the name with each NUL as "\\0" (and cut short),
 * which no real flag name can equal.
 */
static const char *
pg_store_field_name(const redisReply *name, char *buf, size_t size)
{
    size_t  i, n;

    if (name->type != REDIS_REPLY_STRING || strlen(name->str) == name->len) {
        return name->str;
    }

    n = 0;

    for (i = 0; i < name->len && n + 3 < size; i++) {
        if (name->str[i] == '\0') {
            buf[n++] = '\\';
            buf[n++] = '0';
        } else {
            buf[n++] = name->str[i];
        }
    }

    buf[n] = '\0';

    return buf;
}


int
pg_store_parse_revision(pg_store_t *store, const redisReply *value,
    int64_t *revision)
{
    char  key[PG_STORE_KEY_MAX], *end;

    *revision = 0;

    if (value->type != REDIS_REPLY_STRING) {
        return PG_OK;
    }

    *revision = strtoll(value->str, &end, 10);

    if (*end != '\0' || end == value->str || *revision < 0) {
        pg_store_key(store, key, PG_STORE_KEY_REVISION, NULL);
        return pg_store_fail(store, PG_STORE_EFAILED, "%s: %s holds "
                             "\"%.32s\", not a revision", store->where, key,
                             value->str);
    }

    return PG_OK;
}


int
pg_store_snapshot(pg_store_t *store, const char *const *envs, size_t nenvs,
    pg_store_bad_pt bad, void *data, int *initialised, json_t **snapshot)
{
    return pg_store_read(store, envs, nenvs, bad, NULL, data, initialised,
                         snapshot, NULL);
}


int
pg_store_read(pg_store_t *store, const char *const *envs, size_t nenvs,
    pg_store_bad_pt bad, pg_store_bad_env_pt bad_env, void *data,
    int *initialised, json_t **snapshot, char *epoch)
{
    int           rc;
    char          marker[PG_STORE_KEY_MAX], revision[PG_STORE_KEY_MAX];
    char          key[PG_STORE_KEY_MAX];
    size_t        i;
    json_t       *snap, *all, *flags;
    int64_t       rev;
    const char   *argv[3];
    redisReply   *reply, *exec, *e;

    pg_store_key(store, marker, PG_STORE_KEY_MARKER, NULL);
    pg_store_key(store, revision, PG_STORE_KEY_REVISION, NULL);

    /* one round trip: MULTI, EXISTS, GET, HGET epoch, HGETALL per env,
     * EXEC */

    argv[0] = "MULTI";
    redisAppendCommandArgv(store->redis, 1, argv, NULL);

    argv[0] = "EXISTS";
    argv[1] = marker;
    redisAppendCommandArgv(store->redis, 2, argv, NULL);

    argv[0] = "GET";
    argv[1] = revision;
    redisAppendCommandArgv(store->redis, 2, argv, NULL);

    argv[0] = "HGET";
    argv[1] = marker;
    argv[2] = "epoch";
    redisAppendCommandArgv(store->redis, 3, argv, NULL);

    for (i = 0; i < nenvs; i++) {
        pg_store_key(store, key, PG_STORE_KEY_FLAGS, envs[i]);
        argv[0] = "HGETALL";
        argv[1] = key;
        redisAppendCommandArgv(store->redis, 2, argv, NULL);
    }

    argv[0] = "EXEC";
    redisAppendCommandArgv(store->redis, 1, argv, NULL);

    /* MULTI and the queued commands answer +OK and +QUEUED */

    exec = NULL;
    rc = PG_OK;

    for (i = 0; i < nenvs + 5; i++) {
        if (redisGetReply(store->redis, (void **) &reply) != REDIS_OK) {
            freeReplyObject(exec);
            return pg_store_lost(store);
        }

        if (reply->type == REDIS_REPLY_ERROR && rc == PG_OK) {
            rc = pg_store_fail(store, PG_STORE_EREDIS, "%s: reading the "
                               "store failed: %s", store->where, reply->str);
        }

        if (i == nenvs + 4) {
            exec = reply;
        } else {
            freeReplyObject(reply);
        }
    }

    if (rc != PG_OK) {
        freeReplyObject(exec);
        return PG_ERR;
    }

    if (exec->type != REDIS_REPLY_ARRAY || exec->elements != nenvs + 3) {
        freeReplyObject(exec);
        return pg_store_fail(store, PG_STORE_EREDIS, "%s: reading the store "
                             "failed: unexpected EXEC reply", store->where);
    }

    /* a marker that is not a hash (WRONGTYPE at 2) has no epoch: as a
     * store from before epochs, it is the same store at every read */
    for (i = 0; i < exec->elements; i++) {
        if (exec->element[i]->type == REDIS_REPLY_ERROR && i != 2
            && (bad_env == NULL || i < 2))
        {
            pg_store_fail(store, PG_STORE_EFAILED, "%s: reading the store "
                          "failed: %s", store->where, exec->element[i]->str);
            freeReplyObject(exec);
            return PG_ERR;
        }
    }

    *initialised = (exec->element[0]->type == REDIS_REPLY_INTEGER
                    && exec->element[0]->integer == 1);

    if (pg_store_parse_revision(store, exec->element[1], &rev) != PG_OK) {
        freeReplyObject(exec);
        return PG_ERR;
    }

    if (epoch != NULL) {
        e = exec->element[2];
        snprintf(epoch, PG_STORE_EPOCH_MAX + 1, "%.*s",
                 e->type == REDIS_REPLY_STRING ? (int) e->len : 0,
                 e->type == REDIS_REPLY_STRING ? e->str : "");
    }

    all = json_object();
    snap = json_pack("{s:I,s:o}", "revision", (json_int_t) rev,
                     "environments", all);

    if (snap == NULL) {
        freeReplyObject(exec);
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    for (i = 0; i < nenvs; i++) {
        if (exec->element[i + 3]->type == REDIS_REPLY_ERROR) {
            bad_env(envs[i], exec->element[i + 3]->str, data);
            continue;
        }

        if (pg_store_parse_flags(store, envs[i], exec->element[i + 3], bad,
                                 data, &flags)
            != PG_OK)
        {
            freeReplyObject(exec);
            json_decref(snap);
            return PG_ERR;
        }

        if (json_object_set_new(all, envs[i], flags) != 0) {
            freeReplyObject(exec);
            json_decref(snap);
            return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
        }
    }

    freeReplyObject(exec);
    *snapshot = snap;

    return PG_OK;
}


int
pg_store_raise_revision(pg_store_t *store, int64_t above, const char *actor,
    const char *reason, int64_t *revision)
{
    char         marker[PG_STORE_KEY_MAX], key[PG_STORE_KEY_MAX];
    char         audit[PG_STORE_KEY_MAX], channel[PG_STORE_KEY_MAX];
    char         log[PG_STORE_KEY_MAX], log_max[16];
    char         want[32], cap[16], ts[32];
    const char  *argv[14];
    redisReply  *reply;

    /* a store above PG_REVISION_MAX would be one that no edge takes */
    if (above < 0 || above >= PG_REVISION_MAX) {
        return pg_store_fail(store, PG_STORE_EFAILED, "revision %lld cannot "
                             "be raised above: an edge accepts at most %lld",
                             (long long) above, (long long) PG_REVISION_MAX);
    }

    pg_store_key(store, marker, PG_STORE_KEY_MARKER, NULL);
    pg_store_key(store, key, PG_STORE_KEY_REVISION, NULL);
    pg_store_key(store, audit, PG_STORE_KEY_AUDIT, NULL);
    pg_store_key(store, channel, PG_STORE_CHANNEL, NULL);
    pg_store_key(store, log, PG_STORE_KEY_CHANGELOG, NULL);
    snprintf(want, sizeof(want), "%lld", (long long) above + 1);
    snprintf(cap, sizeof(cap), "%d", PG_STORE_AUDIT_MAX);
    snprintf(log_max, sizeof(log_max), "%d", PG_STORE_CHANGELOG_MAX);
    pg_store_now(ts, sizeof(ts));

    argv[0] = "EVAL";
    argv[1] = pg_store_raise_lua;
    argv[2] = "4";
    argv[3] = marker;
    argv[4] = key;
    argv[5] = audit;
    argv[6] = log;
    argv[7] = want;
    argv[8] = ts;
    argv[9] = actor;
    argv[10] = cap;
    argv[11] = reason;
    argv[12] = channel;
    argv[13] = log_max;

    reply = redisCommandArgv(store->redis, 14, argv, NULL);

    if (reply == NULL) {
        return pg_store_lost(store);
    }

    if (reply->type == REDIS_REPLY_INTEGER) {
        *revision = reply->integer;
        freeReplyObject(reply);
        return PG_OK;
    }

    if (pg_store_script_error(reply, "UNINITIALISED")) {
        freeReplyObject(reply);
        return pg_store_fail(store, PG_STORE_EUNINIT,
                             "the store at %s (prefix \"%s\") is not "
                             "initialised", store->where, store->prefix);
    }

    /* the store's fault, not Redis's: the daemon says it, not reconnects */
    if (pg_store_script_error(reply, "WRONGTYPE")) {
        pg_store_fail(store, PG_STORE_EFAILED, "%s: %s", store->where,
                      reply->str);
        freeReplyObject(reply);
        return PG_ERR;
    }

    pg_store_fail(store, PG_STORE_EREDIS, "%s: EVAL failed: %s",
                  store->where, reply->type == REDIS_REPLY_ERROR
                                ? reply->str : "unexpected reply");
    freeReplyObject(reply);

    return PG_ERR;
}


/* pg_store_check_env() leaves a broken sibling out, and says nothing. */
static void
pg_store_skip_bad(const char *env, const char *flag, const char *why,
    void *data)
{
    (void) env;
    (void) flag;
    (void) why;
    (void) data;
}


/*
 * Would env's flags, with flag as after, compile (requires, cycles)? A
 * sibling whose value is broken is left out: portal-gated keeps the last
 * good version of it and pushes the rest, so one broken value must not
 * block every create in its environment; what could race (limits,
 * requires, cycles) the write script checks again, atomically.
 */
static int
pg_store_check_env(pg_store_t *store, const char *env, const char *flag,
    json_t *after)
{
    int             rc;
    char            key[PG_STORE_KEY_MAX];
    size_t          size;
    json_t         *flags, *snap;
    const char     *argv[2];
    pg_error_t      err;
    redisReply     *reply;
    unsigned char  *blob;

    pg_store_key(store, key, PG_STORE_KEY_FLAGS, env);

    argv[0] = "HGETALL";
    argv[1] = key;

    reply = pg_store_command(store, 2, argv);
    if (reply == NULL) {
        return PG_ERR;
    }

    rc = pg_store_parse_flags(store, env, reply, pg_store_skip_bad, NULL,
                              &flags);
    freeReplyObject(reply);

    if (rc != PG_OK) {
        return PG_ERR;
    }

    /* the script says the same, atomically; this says it before a compile
     * would, in the core's words and with another exit status */
    if (json_object_get(flags, flag) == NULL
        && json_object_size(flags) >= PG_FLAGS_MAX)
    {
        json_decref(flags);
        return pg_store_fail(store, PG_STORE_EFAILED, "cannot create flag "
                             "\"%s\" in %s: it holds %d flags, the most an "
                             "environment may hold", flag, env, PG_FLAGS_MAX);
    }

    if (json_object_set(flags, flag, after) != 0) {
        json_decref(flags);
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    snap = json_pack("{s:i,s:{s:o}}", "revision", 1, "environments", env,
                     flags);
    if (snap == NULL) {
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    rc = pg_snap_compile_json(snap, &blob, &size, &err);
    json_decref(snap);

    if (rc != PG_OK) {
        return pg_store_fail(store, rc == PG_FAULT ? PG_STORE_EFAULT
                                                   : PG_STORE_EINVALID,
                             "%s", err.text);
    }

    free(blob);

    return PG_OK;
}


/* pg_store_eval_write(): another writer changed the flag first: retry. */
#define PG_STORE_CONFLICT  1


/*
 * The write script: flag in env from cur (its text as read, cur_len bytes,
 * "" for none) to text ("" deletes it), requires the flag that text newly
 * requires ("": no check). PG_OK with *revision, PG_STORE_CONFLICT, or
 * PG_ERR with the script's refusal in the store's words. cur goes with its
 * length: a value with a NUL byte (a hand edit) cut at the NUL would never
 * equal what the script reads, and could never be killed or deleted.
 */
static int
pg_store_eval_write(pg_store_t *store, const char *env, const char *flag,
    const char *cur, size_t cur_len, const char *text, const char *requires,
    const char *action, const char *actor, const char *reason,
    int64_t *revision)
{
    char          marker[PG_STORE_KEY_MAX], flags[PG_STORE_KEY_MAX];
    char          rev_key[PG_STORE_KEY_MAX], audit[PG_STORE_KEY_MAX];
    char          channel[PG_STORE_KEY_MAX], envs[PG_STORE_KEY_MAX];
    char          log[PG_STORE_KEY_MAX], log_max[16];
    char          cap[16], ts[32], flags_max[16], rev_max[32];
    char          envs_max[16], legacy[32], wkey[PG_STORE_KEY_MAX];
    char          id[PG_STORE_EPOCH_LEN + 1], ttl[32], why[300];
    char          io_why[300];
    int           i;
    size_t        argvlen[28], count;
    const char   *argv[28], *verb, *by;
    redisReply   *eval;

    pg_store_key(store, marker, PG_STORE_KEY_MARKER, NULL);
    pg_store_key(store, flags, PG_STORE_KEY_FLAGS, env);
    pg_store_key(store, rev_key, PG_STORE_KEY_REVISION, NULL);
    pg_store_key(store, audit, PG_STORE_KEY_AUDIT, NULL);
    pg_store_key(store, envs, PG_STORE_KEY_ENVS, NULL);
    pg_store_key(store, log, PG_STORE_KEY_CHANGELOG, NULL);
    pg_store_key(store, channel, PG_STORE_CHANNEL, NULL);
    snprintf(cap, sizeof(cap), "%d", PG_STORE_AUDIT_MAX);
    snprintf(log_max, sizeof(log_max), "%d", PG_STORE_CHANGELOG_MAX);
    snprintf(flags_max, sizeof(flags_max), "%d", PG_FLAGS_MAX);
    snprintf(envs_max, sizeof(envs_max), "%d", PG_ENVS_MAX);
    snprintf(rev_max, sizeof(rev_max), "%lld", (long long) PG_REVISION_MAX);
    snprintf(ttl, sizeof(ttl), "%lld", (long long) PG_STORE_WRITE_TTL_MS);
    pg_store_now(ts, sizeof(ts));

    /* a write that may be resent (store->reconnect) has an id of its own,
     * the same in each resend: the script applies it once */
    id[0] = '\0';

    if (store->reconnect) {
        pg_store_new_epoch(id);
    }

    pg_store_key(store, wkey, PG_STORE_KEY_WRITE, NULL);
    snprintf(wkey + strlen(wkey), sizeof(wkey) - strlen(wkey), "%s", id);

    argv[0] = "EVAL";
    argv[1] = pg_store_write_lua;
    argv[2] = "7";
    argv[3] = marker;
    argv[4] = flags;
    argv[5] = rev_key;
    argv[6] = audit;
    argv[7] = envs;
    argv[8] = log;
    argv[9] = wkey;
    argv[10] = flag;
    argv[11] = cur;
    argv[12] = text;
    argv[13] = channel;
    argv[14] = cap;
    argv[15] = ts;
    argv[16] = actor;
    argv[17] = env;
    argv[18] = action;
    argv[19] = reason ? reason : "";
    argv[20] = flags_max;
    argv[21] = rev_max;
    argv[22] = requires ? requires : "";
    argv[23] = envs_max;
    argv[24] = "";
    argv[25] = log_max;
    argv[26] = id;
    argv[27] = ttl;

    store->applied = 0;

    for ( ;; ) {
        for (i = 0; i < 28; i++) {
            argvlen[i] = strlen(argv[i]);
        }

        argvlen[11] = cur_len;

        eval = redisCommandArgv(store->redis, 28, argv, argvlen);

        /* the master went away mid-write: resend where it is now */
        if (store->reconnect && (eval == NULL || pg_redis_master_moved(eval))) {
            if (eval == NULL) {
                snprintf(why, sizeof(why), "%s",
                         pg_redis_strerror(store->redis, io_why,
                                           sizeof(io_why)));
            } else {
                snprintf(why, sizeof(why), "%.200s", eval->str);
                freeReplyObject(eval);
            }

            if (store->reconnect(store, why, store->reconnect_data)
                != PG_OK)
            {
                return PG_ERR;
            }

            continue;
        }

        if (eval == NULL || argv[24][0] != '\0'
            || !pg_store_script_error(eval, "ENVCOUNT"))
        {
            break;
        }

        /* a store made before P environments: count its flags: hashes */
        freeReplyObject(eval);

        if (pg_store_count_flag_envs(store, &count) != PG_OK) {
            return PG_ERR;
        }

        snprintf(legacy, sizeof(legacy), "%zu", count);
        argv[24] = legacy;
    }

    if (eval == NULL) {
        return pg_store_lost(store);
    }

    /* a resend of a write that was applied before its reply was lost */
    if (eval->type == REDIS_REPLY_ARRAY && eval->elements == 2
        && eval->element[0]->type == REDIS_REPLY_STRING
        && strcmp(eval->element[0]->str, "APPLIED") == 0
        && eval->element[1]->type == REDIS_REPLY_STRING)
    {
        *revision = strtoll(eval->element[1]->str, NULL, 10);
        store->applied = 1;
        freeReplyObject(eval);
        return PG_OK;
    }

    if (eval->type == REDIS_REPLY_INTEGER) {
        *revision = eval->integer;
        freeReplyObject(eval);
        return PG_OK;
    }

    verb = text[0] == '\0' ? "delete" : cur_len == 0 ? "create" : "change";

    if (pg_store_script_error(eval, "CONFLICT")) {
        freeReplyObject(eval);
        return PG_STORE_CONFLICT;
    }

    if (pg_store_script_error(eval, "LIMIT")) {
        pg_store_fail(store, PG_STORE_EFAILED, "cannot %s flag \"%s\" in %s: "
                      "%s", verb, flag, env, strstr(eval->str, "LIMIT ")
                      ? strstr(eval->str, "LIMIT ") + 6 : eval->str);

    } else if (pg_store_script_error(eval, "NOENV")) {
        snprintf(store->env, sizeof(store->env), "%s", env);
        pg_store_fail(store, PG_STORE_ENOENV, "no environment \"%s\" in the "
                      "store", env);

    } else if (pg_store_script_error(eval, "REQUIRED")) {
        by = strstr(eval->str, "REQUIRED ")
             ? strstr(eval->str, "REQUIRED ") + 9 : "?";
        pg_store_fail(store, PG_STORE_EFAILED, "cannot delete flag \"%s\" in "
                      "%s: flag \"%.64s\" requires it (delete %.64s first, "
                      "or drop its requires: portal-gatectl -e %s set %.64s "
                      "requires=)", flag, env, by, by, env, by);

    } else if (pg_store_script_error(eval, "NOREQ")) {
        pg_store_fail(store, PG_STORE_EINVALID, "flag \"%s\" in %s cannot "
                      "require \"%s\": there is no such flag in %s", flag,
                      env, requires, env);

    } else if (pg_store_script_error(eval, "CYCLE")) {
        pg_store_fail(store, PG_STORE_EINVALID, "flag \"%s\" in %s cannot "
                      "require \"%s\": that makes a cycle (%.160s)", flag,
                      env, requires, strstr(eval->str, "CYCLE ")
                      ? strstr(eval->str, "CYCLE ") + 6 : "?");

    } else if (pg_store_script_error(eval, "UNINITIALISED")) {
        pg_store_fail(store, PG_STORE_EUNINIT, "the store at %s (prefix "
                      "\"%s\") is not initialised", store->where,
                      store->prefix);

    } else {
        pg_store_fail(store, PG_STORE_EREDIS, "%s: EVAL failed: %s",
                      store->where, eval->type == REDIS_REPLY_ERROR
                                    ? eval->str : "unexpected reply");
    }

    freeReplyObject(eval);

    return PG_ERR;
}


/*
 * A write's read failed: when the connection dropped and the store may
 * reconnect (store->reconnect), do, and return PG_OK to read again;
 * otherwise PG_ERR with the read's error.
 */
static int
pg_store_resume(pg_store_t *store)
{
    pg_error_t  why;

    if (store->reconnect == NULL || store->redis == NULL
        || store->redis->err == 0)
    {
        return PG_ERR;
    }

    memcpy(&why, &store->err, sizeof(pg_error_t));

    return store->reconnect(store, why.text, store->reconnect_data);
}


/* The flag that after newly requires (not before): what the script
 * checks exists and makes no cycle. NULL when there is none. */
static const char *
pg_store_new_requires(const json_t *before, const json_t *after)
{
    const char  *was, *now;

    now = json_string_value(json_object_get(after, "requires"));
    was = before ? json_string_value(json_object_get(before, "requires"))
                 : NULL;

    if (now == NULL || (was && strcmp(was, now) == 0)) {
        return NULL;
    }

    return now;
}


int
pg_store_write(pg_store_t *store, const char *env, const char *flag,
    const char *action, const char *actor, const char *reason,
    int check_env, pg_store_edit_pt edit, void *data,
    pg_store_change_t *change)
{
    int            tries, code, rc;
    char           flags[PG_STORE_KEY_MAX], ts[32], *text, why[200];
    const char    *argv[3], *cur;
    json_int_t     version;
    json_t        *before, *after;
    pg_error_t     err;
    redisReply    *reply;
    json_error_t   jerr;
    unsigned long  failed;

    memset(change, 0, sizeof(pg_store_change_t));

    pg_store_key(store, flags, PG_STORE_KEY_FLAGS, env);

    for (tries = 0; tries < PG_STORE_TRIES; tries++) {

        argv[0] = "HGET";
        argv[1] = flags;
        argv[2] = flag;

        reply = pg_store_command(store, 3, argv);
        if (reply == NULL) {
            if (pg_store_resume(store) != PG_OK) {
                return PG_ERR;
            }

            tries--;            /* the read is asked again, where the
                                   master is now: no try of the write */
            continue;
        }

        before = NULL;

        if (reply->type == REDIS_REPLY_STRING) {
            failed = pg_store_json_failures();
            before = json_loadb(reply->str, reply->len,
                                JSON_REJECT_DUPLICATES, &jerr);

            /* not the value's fault: an edit (a kill) must not salvage it,
             * nor write what a parse short of memory cut short */
            if (pg_store_json_failures() != failed) {
                json_decref(before);
                freeReplyObject(reply);
                return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
            }

            if (before == NULL || !json_is_object(before)) {
                /*
                 * The edit sees a flag that no check passes, so that only
                 * off and kill go on (pg_ctl_salvage); the script still
                 * compares with the text as stored, and audits it.
                 */
                snprintf(why, sizeof(why), "the value in Redis is %s%s",
                         before ? "not a JSON object" : "not valid JSON: ",
                         before ? "" : jerr.text);
                json_decref(before);
                before = json_pack("{s:s}", PG_STORE_UNREADABLE, why);
                if (before == NULL) {
                    freeReplyObject(reply);
                    return pg_store_fail(store, PG_STORE_EFAULT,
                                         "out of memory");
                }
            }
        }

        code = PG_STORE_EFAILED;
        after = edit(before, data, &code, &err);

        if (after == NULL) {
            json_decref(before);
            freeReplyObject(reply);
            return pg_store_fail(store, code, "%s", err.text);
        }

        /* nothing to change: no write, no revision, no push */
        if (before && json_equal(before, after)) {
            freeReplyObject(reply);
            change->before = before;
            change->after = after;
            change->unchanged = 1;
            return pg_store_revision(store, &change->revision);
        }

        /* the flag's own version, and who changed it when */

        version = 0;

        if (before && json_is_integer(json_object_get(before, "version"))) {
            version = json_integer_value(json_object_get(before, "version"));
        }

        /* a version that cannot be raised (set by hand) starts again */
        if (version < 0 || version == INT64_MAX) {
            version = 0;
        }

        pg_store_now(ts, sizeof(ts));
        failed = pg_store_json_failures();

        if (json_object_set_new(after, "version", json_integer(version + 1))
            || json_object_set_new(after, "updated_at", json_string(ts))
            || json_object_set_new(after, "updated_by", json_string(actor)))
        {
            json_decref(before);
            json_decref(after);
            freeReplyObject(reply);

            if (pg_store_json_failures() != failed) {
                return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
            }

            return pg_store_fail(store, PG_STORE_EINVALID,
                                 "actor \"%.64s\" is not valid UTF-8", actor);
        }

        rc = pg_flag_check_json(flag, after, &err);

        if (rc != PG_OK) {
            json_decref(before);
            json_decref(after);
            freeReplyObject(reply);
            return pg_store_fail(store, rc == PG_FAULT ? PG_STORE_EFAULT
                                                       : PG_STORE_EINVALID,
                                 "%s", err.text);
        }

        if (check_env && pg_store_check_env(store, env, flag, after) != PG_OK)
        {
            json_decref(before);
            json_decref(after);
            freeReplyObject(reply);
            return PG_ERR;
        }

        text = json_dumps(after, JSON_COMPACT | PG_JSON_REAL);
        if (text == NULL) {
            json_decref(before);
            json_decref(after);
            freeReplyObject(reply);
            return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
        }

        cur = reply->type == REDIS_REPLY_STRING ? reply->str : "";

        rc = pg_store_eval_write(store, env, flag, cur,
                                 reply->type == REDIS_REPLY_STRING
                                 ? reply->len : 0, text,
                                 pg_store_new_requires(before, after),
                                 action, actor, reason, &change->revision);

        free(text);
        freeReplyObject(reply);

        if (rc == PG_OK) {
            change->before = before;
            change->after = after;
            return PG_OK;
        }

        json_decref(before);
        json_decref(after);

        if (rc != PG_STORE_CONFLICT) {
            return PG_ERR;
        }

        /* another writer changed the flag: read it again */
    }

    return pg_store_fail(store, PG_STORE_EFAILED,
                         "flag \"%s\" kept changing under %d tries: try again",
                         flag, PG_STORE_TRIES);
}


int
pg_store_delete(pg_store_t *store, const char *env, const char *flag,
    const char *actor, const char *reason, pg_store_change_t *change)
{
    int            tries, rc;
    char           flags[PG_STORE_KEY_MAX];
    const char    *argv[3];
    json_t        *before;
    redisReply    *reply;

    memset(change, 0, sizeof(pg_store_change_t));

    pg_store_key(store, flags, PG_STORE_KEY_FLAGS, env);

    for (tries = 0; tries < PG_STORE_TRIES; tries++) {

        argv[0] = "HGET";
        argv[1] = flags;
        argv[2] = flag;

        reply = pg_store_command(store, 3, argv);
        if (reply == NULL) {
            if (pg_store_resume(store) != PG_OK) {
                return PG_ERR;
            }

            tries--;            /* the read is asked again, where the
                                   master is now: no try of the write */
            continue;
        }

        if (reply->type != REDIS_REPLY_STRING) {
            freeReplyObject(reply);
            return pg_store_fail(store, PG_STORE_EFAILED, "no flag \"%s\" in "
                                 "%s", flag, env);
        }

        /* a value that is not JSON is deleted all the same: shown as text */
        before = json_loadb(reply->str, reply->len, JSON_REJECT_DUPLICATES,
                            NULL);

        if (before == NULL || !json_is_object(before)) {
            json_decref(before);
            before = json_pack("{s:s%}", PG_STORE_UNREADABLE, reply->str,
                               reply->len);
        }

        rc = pg_store_eval_write(store, env, flag, reply->str, reply->len,
                                 "", NULL,
                                 "delete", actor, reason, &change->revision);

        freeReplyObject(reply);

        if (rc == PG_OK) {
            change->before = before;
            return PG_OK;
        }

        json_decref(before);

        if (rc != PG_STORE_CONFLICT) {
            return PG_ERR;
        }
    }

    return pg_store_fail(store, PG_STORE_EFAILED,
                         "flag \"%s\" kept changing under %d tries: try again",
                         flag, PG_STORE_TRIES);
}


int
pg_store_note(pg_store_t *store, const char *env, const char *flag,
    const char *action, const char *actor, const char *reason,
    const char *before, const char *after, int64_t *revision)
{
    char          marker[PG_STORE_KEY_MAX], flags[PG_STORE_KEY_MAX];
    char          rev_key[PG_STORE_KEY_MAX], audit[PG_STORE_KEY_MAX];
    char          envs[PG_STORE_KEY_MAX], cap[16], ts[32];
    const char   *argv[17];
    redisReply   *reply;

    pg_store_key(store, marker, PG_STORE_KEY_MARKER, NULL);
    pg_store_key(store, flags, PG_STORE_KEY_FLAGS, env);
    pg_store_key(store, rev_key, PG_STORE_KEY_REVISION, NULL);
    pg_store_key(store, audit, PG_STORE_KEY_AUDIT, NULL);
    pg_store_key(store, envs, PG_STORE_KEY_ENVS, NULL);
    snprintf(cap, sizeof(cap), "%d", PG_STORE_AUDIT_MAX);
    pg_store_now(ts, sizeof(ts));

    argv[0] = "EVAL";
    argv[1] = pg_store_note_lua;
    argv[2] = "5";
    argv[3] = marker;
    argv[4] = flags;
    argv[5] = rev_key;
    argv[6] = audit;
    argv[7] = envs;
    argv[8] = flag;
    argv[9] = env;
    argv[10] = action;
    argv[11] = actor;
    argv[12] = reason ? reason : "";
    argv[13] = ts;
    argv[14] = cap;
    argv[15] = before;
    argv[16] = after;

    reply = redisCommandArgv(store->redis, 17, argv, NULL);

    if (reply == NULL) {
        return pg_store_lost(store);
    }

    if (reply->type == REDIS_REPLY_INTEGER) {
        *revision = reply->integer;
        freeReplyObject(reply);
        return PG_OK;
    }

    if (pg_store_script_error(reply, "NOENV")) {
        snprintf(store->env, sizeof(store->env), "%s", env);
        pg_store_fail(store, PG_STORE_ENOENV, "no environment \"%s\" in the "
                      "store", env);

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

    return PG_ERR;
}


/*
 * A text of the audit stream as a JSON string (a new reference): as it is
 * when it is UTF-8, else with each byte that is not written \xNN, so that
 * an entry written before portal-gatectl checked its texts, or by another
 * tool, still shows every field.
 */
static json_t *
pg_store_text(const char *s, size_t len)
{
    char     *buf;
    size_t    i, n;
    json_t   *text;

    text = json_stringn(s, len);
    if (text) {
        return text;
    }

    buf = malloc(len * 4 + 1);
    if (buf == NULL) {
        return NULL;
    }

    for (i = 0, n = 0; i < len; i++) {
        if ((unsigned char) s[i] < 0x80 && s[i] != '\0') {
            buf[n++] = s[i];
        } else {
            n += sprintf(buf + n, "\\x%02x", (unsigned char) s[i]);
        }
    }

    text = json_stringn(buf, n);
    free(buf);

    return text;
}


void
pg_store_change_free(pg_store_change_t *change)
{
    json_decref(change->before);
    json_decref(change->after);
    change->before = NULL;
    change->after = NULL;
}


int
pg_store_audit(pg_store_t *store, const char *flag, size_t count,
    json_t **entries)
{
    char         key[PG_STORE_KEY_MAX], end[64], page[16];
    size_t       i, j;
    json_t      *all, *entry;
    const char  *argv[6];
    redisReply  *reply, *item, *fields;

    pg_store_key(store, key, PG_STORE_KEY_AUDIT, NULL);

    all = json_array();
    if (all == NULL) {
        return pg_store_fail(store, PG_STORE_EFAULT, "out of memory");
    }

    snprintf(end, sizeof(end), "+");
    snprintf(page, sizeof(page), "%d", 500);

    /* newest first, page by page, until count entries of flag are found */

    for ( ;; ) {
        argv[0] = "XREVRANGE";
        argv[1] = key;
        argv[2] = end;
        argv[3] = "-";
        argv[4] = "COUNT";
        argv[5] = page;

        reply = pg_store_command(store, 6, argv);
        if (reply == NULL) {
            json_decref(all);
            return PG_ERR;
        }

        if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
            freeReplyObject(reply);
            break;
        }

        for (i = 0; i < reply->elements && json_array_size(all) < count; i++)
        {
            item = reply->element[i];

            if (item->type != REDIS_REPLY_ARRAY || item->elements != 2) {
                continue;
            }

            fields = item->element[1];
            entry = json_object();

            if (entry == NULL) {
                freeReplyObject(reply);
                json_decref(all);
                return pg_store_fail(store, PG_STORE_EFAULT,
                                     "out of memory");
            }

            json_object_set_new(entry, "id",
                                json_string(item->element[0]->str));

            for (j = 0; j + 1 < fields->elements; j += 2) {
                json_object_set_new(entry, fields->element[j]->str,
                    pg_store_text(fields->element[j + 1]->str,
                                  fields->element[j + 1]->len));
            }

            if (flag && strcmp(json_string_value(
                                   json_object_get(entry, "flag")) ?: "",
                               flag) != 0)
            {
                json_decref(entry);
                continue;
            }

            json_array_append_new(all, entry);
        }

        /* the next page ends just before the oldest entry of this one */
        item = reply->element[reply->elements - 1];
        snprintf(end, sizeof(end), "(%s", item->element[0]->str);

        i = reply->elements;
        freeReplyObject(reply);

        if (json_array_size(all) >= count || i < 500) {
            break;
        }
    }

    *entries = all;

    return PG_OK;
}
