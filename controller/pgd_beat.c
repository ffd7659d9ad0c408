/*
 * pgd_beat.c: portal-gated says in Redis that it is alive, and what it
 * last saw (include/pg_store.h, P"controllers"), so that `portal-gatectl
 * status` can tell a running controller from a dead or hung one from any
 * host.
 *
 * At every reconcile tick, and as soon as Redis is reachable, one EVAL on
 * the command connection (with its timeout, as every other call of the
 * daemon) writes the field "HOST:PID" of P"controllers": the beat JSON,
 * stamped with Redis's TIME so that every reader measures ages on one
 * clock. The same script removes the beats of controllers that have not
 * beaten for PG_STORE_BEAT_FORGET_MS (killed with SIGKILL, a host gone).
 * A clean exit (SIGTERM, SIGINT) removes the daemon's own field; so does a
 * reload that points it at another Redis or prefix.
 *
 * Redis down means no beat, nothing more: the loop never waits for one,
 * and Redis going is logged by pgd_redis.c already. A beat that Redis
 * refuses (OOM, READONLY, NOPERM) is said once, at warn.
 *
 * The beat (keys in this order; beat_at is added by the script, last, so
 * that the script finds it at the end of any beat of this form):
 *
 *   {"host": "edge-1", "pid": 4711, "version": "0.8.0",
 *    "started_at": "2026-11-25T14:03:07Z", "interval_ms": 2000,
 *    "store_revision": 42,
 *    "edges": {"http://127.0.0.1:8081/portal-gate/": {"revision": 42,
 *              "ok": true, "error": null,
 *              "overrides": [{"env": "production",
 *                             "flag": "customer_portal"}]}},
 *    "beat_at": 1795615387123}
 *
 * An edge is "ok" when it answered and holds what the daemon pushes;
 * "error" says why not when the daemon knows (unreachable, or the edge's
 * refusal); "overrides" are the kill overrides its GET status last listed
 * (null before it has said).
 */

#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* strtoll */
#include <string.h>             /* strlen, memcpy */
#include <time.h>               /* time, gmtime_r, strftime */
#include <unistd.h>             /* gethostname, getpid */
#include "pgd.h"                /* pgd_t, the API this file implements */
#include "pg_redis.h"           /* pg_redis_strerror */


/*
 * KEYS[1] the controllers hash; ARGV[1] the field, ARGV[2] the beat
 * without its closing brace, ARGV[3] PG_STORE_BEAT_FORGET_MS. Returns
 * {beat_at, forgotten}. TIME before a write needs effects replication on
 * Redis 3.2 to 4 (replicate_commands); from 5 on it is the default.
 */
static const char  pgd_beat_script[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local ms = math.floor(tonumber(t[2]) / 1000)\n"
    "local now = tonumber(t[1]) * 1000 + ms\n"
    "local at = t[1] .. string.format('%03d', ms)\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ',\"beat_at\":' .. at"
        " .. '}')\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "local gone = 0\n"
    "for i = 1, #all, 2 do\n"
    "  if all[i] ~= ARGV[1] then\n"
    "    local b = tonumber(string.match(all[i + 1],"
        " '\"beat_at\":(%d+)}$'))\n"
    "    if b == nil then\n"
    "      local ok, v = pcall(cjson.decode, all[i + 1])\n"
    "      if ok and type(v) == 'table' then b = tonumber(v.beat_at) end\n"
    "    end\n"
    "    if b ~= nil and now - b > tonumber(ARGV[3]) then\n"
    "      redis.call('HDEL', KEYS[1], all[i])\n"
    "      gone = gone + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {at, gone}\n";


static const char *pgd_beat_utf8(const char *s, char *buf, size_t size);
static json_t *pgd_beat_text(const char *s);
static json_t *pgd_beat_edges(pgd_t *d);
static char *pgd_beat_json(pgd_t *d);
static void pgd_beat_refused(pgd_t *d, const char *what, const char *why);


/* Who and since when: once the daemon runs as itself (after -d's fork). */
void
pgd_beat_start(pgd_t *d)
{
    char       *p;
    time_t      now;
    struct tm   tm;

    if (gethostname(d->host, sizeof(d->host)) != 0) {
        snprintf(d->host, sizeof(d->host), "unknown");
    }

    d->host[sizeof(d->host) - 1] = '\0';

    /* the field and the JSON are text: a strange byte is not worth a beat */
    for (p = d->host; *p; p++) {
        if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f) {
            *p = '?';
        }
    }

    now = time(NULL);
    d->started = now;
    gmtime_r(&now, &tm);
    strftime(d->started_at, sizeof(d->started_at), "%Y-%m-%dT%H:%M:%SZ",
             &tm);

    snprintf(d->beat_field, sizeof(d->beat_field), "%s:%ld", d->host,
             (long) getpid());
}


/* s when it is UTF-8, else buf: s with every byte outside printable
 * ASCII made '?' (a message cut inside a character, a Latin-1 socket
 * path), which JSON can carry. */
static const char *
pgd_beat_utf8(const char *s, char *buf, size_t size)
{
    size_t   i;
    json_t  *v;

    v = json_string(s);

    if (v != NULL) {
        json_decref(v);
        return s;
    }

    for (i = 0; s[i] != '\0' && i < size - 1; i++) {
        buf[i] = (unsigned char) s[i] < ' ' || (unsigned char) s[i] >= 0x7f
                 ? '?' : s[i];
    }

    buf[i] = '\0';

    return buf;
}


/* A JSON string of s, as pgd_beat_utf8() makes it; null for "". */
static json_t *
pgd_beat_text(const char *s)
{
    char  buf[1024];

    if (s == NULL || s[0] == '\0') {
        return json_null();
    }

    return json_string(pgd_beat_utf8(s, buf, sizeof(buf)));
}


/* {URL: {"revision", "ok", "error", "overrides"}}: new, or NULL. */
static json_t *
pgd_beat_edges(pgd_t *d)
{
    int          ok;
    char         key[sizeof(((pgd_edge_t *) 0)->edge.spec)];
    size_t       i;
    json_t      *edges, *edge;
    pgd_edge_t  *e;

    edges = json_object();
    if (edges == NULL) {
        return NULL;
    }

    for (i = 0; i < d->nedges; i++) {
        e = &d->edges[i];

        ok = e->state == PGD_UP && e->error[0] == '\0'
             && (d->body == NULL || e->revision == d->body->revision);

        edge = json_pack("{s:o,s:b,s:o,s:o}",
                         "revision", e->revision >= 0
                                     ? json_integer(e->revision)
                                     : json_null(),
                         "ok", ok,
                         "error", pgd_beat_text(e->error),
                         "overrides", e->overrides
                                      ? json_incref(e->overrides)
                                      : json_null());

        if (edge == NULL
            || json_object_set_new(edges, pgd_beat_utf8(e->edge.spec, key,
                                                        sizeof(key)),
                                   edge) != 0)
        {
            json_decref(edges);
            return NULL;
        }
    }

    return edges;
}


/* The beat without beat_at and its closing brace: new, or NULL. */
static char *
pgd_beat_json(pgd_t *d)
{
    char    *text;
    size_t   len;
    json_t  *beat, *edges;

    edges = pgd_beat_edges(d);
    if (edges == NULL) {
        return NULL;
    }

    beat = json_pack("{s:s,s:I,s:s,s:s,s:I,s:I,s:o}",
                     "host", d->host,
                     "pid", (json_int_t) getpid(),
                     "version", PG_VERSION,
                     "started_at", d->started_at,
                     "interval_ms", (json_int_t) d->conf.reconcile_ms,
                     "store_revision", (json_int_t) d->store_revision,
                     "edges", edges);

    if (beat == NULL) {
        return NULL;
    }

    text = json_dumps(beat, JSON_COMPACT);
    json_decref(beat);

    if (text == NULL || (len = strlen(text)) < 2 || text[len - 1] != '}') {
        free(text);
        return NULL;
    }

    text[len - 1] = '\0';

    return text;
}


/* Redis answered the beat with an error: said once until a beat goes
 * through again. */
static void
pgd_beat_refused(pgd_t *d, const char *what, const char *why)
{
    if (!d->beat_failed) {
        pgd_log(d, PG_LOG_WARN, "cannot %s in redis %s: %s; `portal-gatectl "
                "status` does not see this controller", what, d->where, why);
    }

    d->beat_failed = 1;
}


void
pgd_beat(pgd_t *d)
{
    char         forget[32], why[600], text[160], *json;
    const char  *argv[7];
    redisReply  *reply;

    if (d->cmd == NULL) {
        return;
    }

    json = pgd_beat_json(d);
    if (json == NULL) {
        pgd_beat_refused(d, "beat", "out of memory");
        return;
    }

    snprintf(d->beat_key, sizeof(d->beat_key), "%s%s", d->conf.prefix,
             PG_STORE_KEY_CONTROLLERS);
    snprintf(forget, sizeof(forget), "%lld",
             (long long) PG_STORE_BEAT_FORGET_MS);

    argv[0] = "EVAL";
    argv[1] = pgd_beat_script;
    argv[2] = "1";
    argv[3] = d->beat_key;
    argv[4] = d->beat_field;
    argv[5] = json;
    argv[6] = forget;

    reply = redisCommandArgv(d->cmd, 7, argv, NULL);
    free(json);

    if (reply == NULL) {
        snprintf(why, sizeof(why), "%s: %s", d->where,
                 pg_redis_strerror(d->cmd, text, sizeof(text)));
        pgd_redis_down(d, why);
        return;
    }

    if (pgd_redis_moved(d, reply)) {
        freeReplyObject(reply);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[1]->type != REDIS_REPLY_INTEGER)
    {
        pgd_beat_refused(d, "beat", reply->type == REDIS_REPLY_ERROR
                                    ? reply->str : "unexpected reply");
        freeReplyObject(reply);
        return;
    }

    if (d->beat_failed) {
        pgd_log(d, PG_LOG_NOTICE, "beating in redis %s again", d->where);
        d->beat_failed = 0;
    }

    if (reply->element[1]->integer > 0) {
        pgd_log(d, PG_LOG_INFO, "forgot %lld controllers that had not beaten "
                "for a day (%s)", reply->element[1]->integer, d->beat_key);
    }

    pgd_log(d, PG_LOG_DEBUG, "beat %s at %s", d->beat_field,
            reply->element[0]->type == REDIS_REPLY_STRING
            ? reply->element[0]->str : "?");

    d->beat_sent = 1;
    freeReplyObject(reply);
}


/* The daemon stops, or leaves this Redis or prefix: its beat goes. */
void
pgd_beat_end(pgd_t *d)
{
    char         why[600], text[160];
    const char  *argv[3];
    redisReply  *reply;

    if (d->cmd == NULL || !d->beat_sent) {
        return;
    }

    argv[0] = "HDEL";
    argv[1] = d->beat_key;
    argv[2] = d->beat_field;

    reply = redisCommandArgv(d->cmd, 3, argv, NULL);
    d->beat_sent = 0;

    if (reply == NULL) {
        snprintf(why, sizeof(why), "%s: %s", d->where,
                 pg_redis_strerror(d->cmd, text, sizeof(text)));
        pgd_log(d, PG_LOG_WARN, "cannot remove its beat %s from %s (%s): "
                "it is taken for dead once it is %d intervals old",
                d->beat_field, d->beat_key, why, PG_STORE_ALIVE_INTERVALS);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        pgd_log(d, PG_LOG_WARN, "cannot remove its beat %s from %s: %s; "
                "it is taken for dead once it is %d intervals old",
                d->beat_field, d->beat_key, reply->str,
                PG_STORE_ALIVE_INTERVALS);
    }

    freeReplyObject(reply);
}
