/*
 * pg_redis_sentinel.c: pg_redis_connect() for a redis-sentinel:// URL.
 * The sentinels are asked in turn (no AUTH: the URL's password is the
 * master's) SENTINEL get-master-addr-by-name; the answer is connected to
 * as a redis:// URL with the URL's user, password and db, and ROLE must
 * say "master" (a sentinel may not have seen a failover yet). Any failure
 * tries the next sentinel; when all fail, the error says each one's reason.
 * The whole discovery has one deadline: pg_redis_sentinel_connect().
 */

#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* strtol: the port a sentinel answers */
#include <string.h>             /* memcpy, memset, strcmp, strlen */
#include <sys/time.h>           /* struct timeval: hiredis timeouts */
#include <time.h>               /* clock_gettime: the deadline */
#include "pg_redis.h"           /* pg_redis_url_t, pg_redis_strerror */
#include "pg_redis_private.h"   /* the API this file implements */


static long pg_redis_now_ms(void);
static int pg_redis_left_ms(long deadline);
static redisContext *pg_redis_connect_master(const pg_redis_url_t *u,
    long deadline, int i, char *why, size_t size);
static int pg_redis_is_master(redisContext *c, char *why, size_t size);


/*
 * One budget for the whole discovery: timeout_ms for all the sentinels
 * together, so that hung ones (a sentinel that accepts and never answers)
 * cost the caller timeout_ms in all, not timeout_ms each: the daemon's
 * loop and its /healthz wait on this. Each sentinel's try (its question,
 * then its master's connect and ROLE) gets an equal share of what is
 * left, so a hung first sentinel leaves time for the next; a try that
 * ends early leaves its rest to the others.
 */
redisContext *
pg_redis_sentinel_connect(const pg_redis_url_t *u, int timeout_ms,
    pg_error_t *err)
{
    int            i, left;
    long           deadline, share;
    char           why[160];
    size_t         n;
    redisContext  *c;

    snprintf(err->text, sizeof(err->text), "redis-sentinel master \"%s\" "
             "not found:", u->master);

    deadline = timeout_ms > 0 ? pg_redis_now_ms() + timeout_ms : 0;

    for (i = 0; i < u->nsentinels; i++) {
        left = pg_redis_left_ms(deadline);
        c = NULL;

        if (left < 0) {
            snprintf(why, sizeof(why), "not asked: the %d ms for finding "
                     "the master were spent", timeout_ms);

        } else {
            share = left / (u->nsentinels - i);
            c = pg_redis_connect_master(u, deadline == 0 ? 0
                                        : pg_redis_now_ms()
                                          + (share > 0 ? share : 1),
                                        i, why, sizeof(why));
        }

        if (c != NULL) {
            return c;
        }

        /* every sentinel's reason, in one line */
        n = strlen(err->text);
        snprintf(err->text + n, sizeof(err->text) - n, "%s %s:%d: %s",
                 i ? ";" : "", u->sentinels[i].host, u->sentinels[i].port,
                 why);
    }

    return NULL;
}


/* The monotonic clock in ms: a deadline does not move with the date. */
static long
pg_redis_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}


/* The ms left until deadline: 0 when there is none, -1 once spent. */
static int
pg_redis_left_ms(long deadline)
{
    long  left;

    if (deadline == 0) {
        return 0;
    }

    left = deadline - pg_redis_now_ms();

    return left < 1 ? -1 : (left > 86400000L ? 86400000 : (int) left);
}


/*
 * Ask sentinel i where u->master is, connect to it as to a redis:// URL
 * with u's user, password and db, and check that it is a master, all
 * before deadline (0: no limit). NULL and why (the reason alone: the
 * caller names the sentinel) on any failure.
 */
static redisContext *
pg_redis_connect_master(const pg_redis_url_t *u, long deadline, int i,
    char *why, size_t size)
{
    int                     timeout_ms;
    long                    port;
    char                    text[128], *end;
    pg_error_t              err;
    redisReply             *r;
    redisContext           *s, *c;
    pg_redis_url_t          m;
    struct timeval          tv;
    const pg_redis_addr_t  *a;

    a = &u->sentinels[i];
    timeout_ms = pg_redis_left_ms(deadline);

    if (timeout_ms < 0) {
        snprintf(why, size, "not asked: no time left");
        return NULL;
    }

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;

    s = (timeout_ms > 0) ? redisConnectWithTimeout(a->host, a->port, tv)
                         : redisConnect(a->host, a->port);

    if (s == NULL) {
        snprintf(why, size, "cannot allocate a redis context");
        return NULL;
    }

    if (s->err || (timeout_ms > 0 && redisSetTimeout(s, tv) != REDIS_OK)) {
        snprintf(why, size, "%s", s->errstr);
        redisFree(s);
        return NULL;
    }

    r = redisCommand(s, "SENTINEL get-master-addr-by-name %s", u->master);
    c = NULL;
    m = *u;
    m.sentinel = 0;
    m.nsentinels = 0;

    if (r == NULL) {
        snprintf(why, size, "%s", pg_redis_strerror(s, text, sizeof(text)));

    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, size, "%.*s", (int) r->len, r->str);

    } else if (r->type == REDIS_REPLY_NIL) {
        snprintf(why, size, "no master named \"%s\"", u->master);

    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
               || r->element[0]->type != REDIS_REPLY_STRING
               || r->element[1]->type != REDIS_REPLY_STRING
               || r->element[0]->len == 0
               || r->element[0]->len >= sizeof(m.host))
    {
        snprintf(why, size, "unexpected reply to SENTINEL "
                 "get-master-addr-by-name");

    } else {
        memcpy(m.host, r->element[0]->str, r->element[0]->len + 1);
        port = strtol(r->element[1]->str, &end, 10);

        if (*end != '\0' || port < 1 || port > 65535) {
            snprintf(why, size, "bad master port \"%.16s\"",
                     r->element[1]->str);

        } else {
            m.port = (int) port;
            timeout_ms = pg_redis_left_ms(deadline);
            c = NULL;

            if (timeout_ms < 0) {
                snprintf(why, size, "no time left to connect to the master "
                         "at %.64s:%d", m.host, m.port);

            } else if ((c = pg_redis_connect_direct(&m, timeout_ms, &err))
                       == NULL)
            {
                /* names the master: redis://:***@host:port/db: reason */
                snprintf(why, size, "%.*s", (int) size - 1, err.text);

            } else if (!pg_redis_is_master(c, why, size)) {
                redisFree(c);
                c = NULL;
            }
        }
    }

    freeReplyObject(r);
    redisFree(s);

    /* the password does not linger on the stack */
    memset(&m, 0, sizeof(m));

    return c;
}


/* Does ROLE say c is a master? 0 and why if not. */
static int
pg_redis_is_master(redisContext *c, char *why, size_t size)
{
    int          ok;
    char         text[128];
    redisReply  *r;

    r = redisCommand(c, "ROLE");
    ok = 0;

    if (r == NULL) {
        snprintf(why, size, "ROLE failed: %s",
                 pg_redis_strerror(c, text, sizeof(text)));

    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, size, "ROLE failed: %.*s", (int) r->len, r->str);

    } else if (r->type != REDIS_REPLY_ARRAY || r->elements == 0
               || r->element[0]->type != REDIS_REPLY_STRING)
    {
        snprintf(why, size, "ROLE failed: unexpected reply");

    } else if (strcmp(r->element[0]->str, "master") != 0) {
        /* the sentinel has not seen a failover, or one is under way */
        snprintf(why, size, "%s:%d is a %.16s, not the master", c->tcp.host,
                 c->tcp.port, r->element[0]->str);

    } else {
        ok = 1;
    }

    freeReplyObject(r);

    return ok;
}
