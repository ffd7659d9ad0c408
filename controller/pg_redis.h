/*
 * pg_redis.h: where Redis is and how to reach it, for portal-gatectl and
 * portal-gated. hiredis 0.14.1 has no URL parser, no TLS and no RESP3:
 * this parses the three URL forms of DESIGN.md and opens a connection that
 * has authenticated and selected its db.
 *
 *   redis://[user:pass@]host:port[/db]    (user may be empty: ":pass@")
 *   unix:///path/redis.sock               (db and password: not in this form)
 *   redis-sentinel://[user:pass@]host[:port][,host[:port]...][/db]#master
 *                                         (port 26379; the master is asked
 *                                          of the sentinels at each connect)
 *
 * Errors: PG_OK or PG_ERR, with a message in the caller's pg_error_t.
 * Ownership: pg_redis_connect() returns a new redisContext that the caller
 * frees with redisFree(); a pg_redis_url_t owns nothing outside itself.
 */

#ifndef PG_REDIS_H
#define PG_REDIS_H

#include <hiredis/hiredis.h>    /* redisContext */
#include "portal_gate.h"        /* PG_OK, PG_ERR, pg_error_t */

#define PG_REDIS_URL_DEFAULT   "redis://127.0.0.1:6379/0"
#define PG_REDIS_SENTINELS_MAX 8     /* sentinels one URL may name */

typedef struct {
    char   host[256];
    int    port;                 /* 1..65535 */
} pg_redis_addr_t;

typedef struct {
    int    unix_socket;          /* 1: path is set, host/port are not */
    int    sentinel;             /* 1: sentinels and master are set,
                                    host/port are not */
    char   host[256];
    int    port;                 /* 1..65535 */
    char   path[108];            /* sun_path */
    char   user[128];            /* "" for none */
    char   pass[256];            /* "" for none */
    int    db;                   /* 0.. */
    int              nsentinels; /* 1..PG_REDIS_SENTINELS_MAX */
    pg_redis_addr_t  sentinels[PG_REDIS_SENTINELS_MAX];
    char             master[128];  /* the name sentinels monitor it by */
} pg_redis_url_t;

/*
 * Parse url into *u. Refuses anything else with a message naming it, its
 * password masked (`invalid redis url "redis://:***@h:0": bad port ...`);
 * *u is left untouched then. The grammar in full: pg_redis.c.
 */
int pg_redis_url_parse(const char *url, pg_redis_url_t *u, pg_error_t *err);

/* The URL again, with the password masked, for messages and logs:
 * "redis://user:***@host:port/db", "redis://[::1]:6379/0", "unix:///p",
 * "redis-sentinel://:***@h1:26379,h2:26379/0#mymaster". */
void pg_redis_url_format(const pg_redis_url_t *u, char *buf, size_t size);

/*
 * Connect within timeout_ms (connect and each command; <= 0: no timeout),
 * then AUTH (user and password, or password alone) and SELECT the db
 * unless it is 0. NULL on failure, with err saying where and why
 * ("redis://127.0.0.1:6379/0: Connection refused", "redis://:***@h:6379/0:
 * AUTH failed: WRONGPASS ..."). A reconnect must go through this again:
 * SELECT is per connection, and a sentinel URL's master may have moved.
 *
 * A sentinel URL: each sentinel in turn is asked SENTINEL
 * get-master-addr-by-name (the URL's password is the master's; it is given
 * to a sentinel that asks for one: pg_redis_sentinel_command()), the
 * answer is connected
 * to as above, and ROLE (HELLO 2 when an ACL refuses ROLE) must say
 * "master" (a sentinel may not have seen a failover yet); any failure
 * tries the next sentinel. When all fail, err
 * says each one's reason: `redis-sentinel master "m" not found: h1:26379:
 * Connection refused; h2:26379: no master named "m"`. timeout_ms bounds
 * the whole discovery, all sentinels together.
 */
redisContext *pg_redis_connect(const pg_redis_url_t *u, int timeout_ms,
    pg_error_t *err);

/*
 * pg_redis_connect(), and for a sentinel URL where the master was found,
 * for a log line: found gets "HOST:PORT (sentinel HOST:PORT)" ("" for
 * another URL). found may be NULL.
 */
redisContext *pg_redis_connect_found(const pg_redis_url_t *u,
    int timeout_ms, char *found, size_t found_size, pg_error_t *err);

/*
 * Another connection to the server c reached: c is a connection
 * pg_redis_connect() or pg_redis_connect_found() made with u (borrowed; it
 * stays the caller's and is not used for commands). For a redis:// or
 * unix:// URL this is pg_redis_connect(u, timeout_ms, err). For a sentinel
 * URL the sentinels are not asked again: the master c is connected to
 * (hiredis's c->tcp.host and c->tcp.port) is connected to as a redis://
 * URL with u's user, password and db, and ROLE (HELLO 2) must still say
 * "master", so that two connections made one after the other are on one
 * server even when a failover starts between them, and a daemon's
 * reconnect waits on one discovery, not two. Only when that fails (the
 * master went away or was demoted meanwhile) is the master found again
 * as pg_redis_connect() does, within what is left of timeout_ms; that one
 * may then be another server than c's, which the caller sees as a master
 * that moved (READONLY, a dropped connection) and connects again.
 * A new context (the caller redisFree()s it) or NULL with err: the
 * discovery's error when it came to that, else why c's master failed and
 * that no time was left ("redis://:***@h:6379/0: Connection refused; no
 * time left to ask the sentinels again").
 */
redisContext *pg_redis_connect_same(const pg_redis_url_t *u,
    const redisContext *c, int timeout_ms, pg_error_t *err);

/*
 * pg_redis_connect(), and on failure whether a try later may succeed:
 * *retry is 1 when it failed for something passing (a sentinel named a
 * master that refused the connection, timed out or is a replica, not the
 * master: a failover under way; or the time ran out), and 0 when asking
 * again would fail the same (every sentinel that answered does not know
 * the master name, refuses the password or asks for one the URL does not
 * have, no sentinel answered at all, or a master refused AUTH, the db or a
 * command with WRONGPASS, NOPERM, NOAUTH or ERR). A master's refusal makes
 * it 0 even when another sentinel's answer was passing; a sentinel's does
 * not (it is that sentinel's set-up, not the URL's).
 * Another URL than a sentinel one: always 0 (there is nothing to look
 * for again). *retry is set on success too (meaningless then).
 */
redisContext *pg_redis_connect_retry(const pg_redis_url_t *u,
    int timeout_ms, int *retry, pg_error_t *err);

/*
 * Ask a sentinel (s, a connection to it) a command (argc, argv: binary
 * safe, as redisCommandArgv()). Sentinels may require a password (Redis
 * 5.0.1+ sentinel.conf requirepass); the URL has one, the master's, which
 * most deployments give the sentinels too (a sentinel password of its
 * own is not supported): a NOAUTH answer is met with AUTH of it (user and
 * password when u has a user, as for the master; refused, the password
 * alone, the default user's, which requirepass sets), and the command is
 * asked again on the same connection. timeout_ms (<= 0: none) bounds it
 * all, AUTH and the second question included: each waits only what is
 * left (s's command timeout is set so). A new reply (the caller frees it
 * with freeReplyObject(); it may be an error reply, a NOAUTH one when u
 * has no password), or NULL with why (the reason alone, no password:
 * "AUTH failed: WRONGPASS ...", "timed out: no answer within 500 ms").
 */
redisReply *pg_redis_sentinel_command(redisContext *s,
    const pg_redis_url_t *u, int timeout_ms, int argc, const char **argv,
    char *why, size_t size);

/*
 * Did the last command on c fail because Redis did not answer within the
 * command timeout? hiredis says "Resource temporarily unavailable" then
 * (the socket's EAGAIN), which reads like a fault of the client, not a
 * slow or stopped Redis. Returns 1 or 0; *timeout_ms (when not NULL) gets
 * the timeout, 0 when it cannot be told.
 */
int pg_redis_timed_out(const redisContext *c, long *timeout_ms);

/*
 * c->errstr as a message should say it: "timed out: no answer within
 * 1000 ms" after a timeout, "no reply" when hiredis left it empty. The
 * result is buf or c->errstr (borrowed).
 */
const char *pg_redis_strerror(const redisContext *c, char *buf,
    size_t size);

/*
 * Does reply r say the master moved: a write answered by a replica?
 * Under Sentinel a failover demoted the server this connection holds: the
 * caller treats it as a lost connection, whose reconnect asks the
 * sentinels again. Redis answers READONLY; Redis 6 wraps it in a script's
 * error ("ERR Error running script ...: -READONLY You can't write ...")
 * when EVAL's script wrote. 1 or 0; r may be NULL.
 */
int pg_redis_master_moved(const redisReply *r);

#endif /* PG_REDIS_H */
