/*
 * pg_redis_sentinel.c: pg_redis_connect() for a redis-sentinel:// URL.
 * The sentinels are asked in turn SENTINEL get-master-addr-by-name (the
 * URL's password is the master's; a sentinel that answers NOAUTH is given
 * it too: pg_redis_sentinel_command()); the answer is connected to
 * as a redis:// URL with the URL's user, password and db, and must say it
 * is a master (a sentinel may not have seen a failover yet). Any failure
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


/*
 * One discovery: its deadline, the masters that failed in it, and what
 * the failures say about a try later (pg_redis_connect_retry()).
 */
typedef struct {
    long             deadline;   /* monotonic ms; 0: no limit */
    int              nfailed;
    pg_redis_addr_t  failed[PG_REDIS_SENTINELS_MAX];
    int              transient;  /* a master named did not answer, or
                                    is no master (yet), or time ran out */
    int              denied;     /* a master refused our credentials or
                                    db (AUTH, NOPERM, SELECT) */
} pg_redis_round_t;


static redisContext *pg_redis_sentinel_find(const pg_redis_url_t *u,
    int timeout_ms, char *found, size_t found_size, int *retry,
    pg_error_t *err);
static int pg_redis_left_until(redisContext *s, long deadline, char *why,
    size_t size);
static long pg_redis_now_ms(void);
static int pg_redis_left_ms(long deadline);
static void pg_redis_hostport(const char *host, int port, char *buf,
    size_t size);
static redisContext *pg_redis_connect_master(const pg_redis_url_t *u,
    pg_redis_round_t *round, long deadline, int i, char *why, size_t size);
static int pg_redis_is_master(redisContext *c, const char *at, char *why,
    size_t size, int *denied);
static int pg_redis_refused(const char *text);
static const char *pg_redis_role(redisReply *r, int hello);


/*
 * One budget for the whole discovery: timeout_ms for all the sentinels
 * together, so that hung ones (a sentinel that accepts and never answers)
 * cost the caller timeout_ms in all, not timeout_ms each: the daemon's
 * loop and its /healthz wait on this. Each sentinel's try (its question,
 * then its master's connect and role) gets an equal share of what is
 * left, so a hung first sentinel leaves time for the next; a try that
 * ends early leaves its rest to the others.
 */
redisContext *
pg_redis_sentinel_connect(const pg_redis_url_t *u, int timeout_ms,
    char *found, size_t found_size, pg_error_t *err)
{
    return pg_redis_sentinel_find(u, timeout_ms, found, found_size, NULL,
                                  err);
}


redisContext *
pg_redis_connect_retry(const pg_redis_url_t *u, int timeout_ms, int *retry,
    pg_error_t *err)
{
    *retry = 0;

    if (!u->sentinel) {
        return pg_redis_connect(u, timeout_ms, err);
    }

    return pg_redis_sentinel_find(u, timeout_ms, NULL, 0, retry, err);
}


redisContext *
pg_redis_connect_same(const pg_redis_url_t *u, const redisContext *c,
    int timeout_ms, pg_error_t *err)
{
    int              left, denied;
    long             deadline;
    char             why[PG_ERROR_LEN], at[128];
    pg_error_t       e;
    redisContext    *cc;
    pg_redis_url_t   m;

    if (!u->sentinel) {
        return pg_redis_connect_direct(u, timeout_ms, err);
    }

    if (c == NULL || c->connection_type != REDIS_CONN_TCP
        || c->tcp.host == NULL || c->tcp.host[0] == '\0'
        || strlen(c->tcp.host) >= sizeof(m.host))
    {
        /* no server to connect to again: find it */
        return pg_redis_sentinel_find(u, timeout_ms, NULL, 0, NULL, err);
    }

    deadline = timeout_ms > 0 ? pg_redis_now_ms() + timeout_ms : 0;

    m = *u;
    m.sentinel = 0;
    m.nsentinels = 0;
    snprintf(m.host, sizeof(m.host), "%s", c->tcp.host);
    m.port = c->tcp.port;
    pg_redis_hostport(m.host, m.port, at, sizeof(at));

    cc = pg_redis_connect_direct(&m, timeout_ms, &e);

    if (cc == NULL) {
        /* names the master: redis://:***@host:port/db: reason */
        snprintf(why, sizeof(why), "%s", e.text);

    } else if (!pg_redis_is_master(cc, at, e.text, sizeof(e.text),
                                   &denied))
    {
        /* "ROLE failed: ..." says no server: name it */
        snprintf(why, sizeof(why), "%.60s%s%.180s",
                 strstr(e.text, at) == e.text ? "" : at,
                 strstr(e.text, at) == e.text ? "" : ": ", e.text);
        redisFree(cc);
        cc = NULL;
    }

    /* the password does not linger on the stack */
    memset(&m, 0, sizeof(m));

    if (cc != NULL) {
        return cc;
    }

    /* gone or demoted since c was made: the sentinels know where to */
    left = pg_redis_left_ms(deadline);

    if (left < 0) {
        snprintf(err->text, sizeof(err->text), "%.*s; no time left to ask "
                 "the sentinels again", PG_ERROR_LEN - 48, why);
        return NULL;
    }

    return pg_redis_sentinel_find(u, left, NULL, 0, NULL, err);
}


/* pg_redis_sentinel_connect(), and *retry (when not NULL): see
 * pg_redis_connect_retry() in pg_redis.h */
static redisContext *
pg_redis_sentinel_find(const pg_redis_url_t *u, int timeout_ms, char *found,
    size_t found_size, int *retry, pg_error_t *err)
{
    int                i, left, room;
    long               share;
    char               why[PG_ERROR_LEN], at[128];
    size_t             n;
    redisContext      *c;
    pg_redis_round_t   round;

    snprintf(err->text, sizeof(err->text), "redis-sentinel master \"%s\" "
             "not found:", u->master);

    memset(&round, 0, sizeof(round));
    round.deadline = timeout_ms > 0 ? pg_redis_now_ms() + timeout_ms : 0;

    for (i = 0; i < u->nsentinels; i++) {
        left = pg_redis_left_ms(round.deadline);
        pg_redis_hostport(u->sentinels[i].host, u->sentinels[i].port, at,
                          sizeof(at));
        c = NULL;

        if (left < 0) {
            snprintf(why, sizeof(why), "not asked: the %d ms for finding "
                     "the master were spent", timeout_ms);
            round.transient = 1;

        } else {
            share = left / (u->nsentinels - i);
            c = pg_redis_connect_master(u, &round, round.deadline == 0 ? 0
                                        : pg_redis_now_ms()
                                          + (share > 0 ? share : 1),
                                        i, why, sizeof(why));
        }

        if (retry != NULL) {
            /* a sentinel that does not know the name, or none that
             * answers, or a master that refuses us: the same again */
            *retry = round.transient && !round.denied;
        }

        if (c != NULL) {
            if (found != NULL && found_size > 0) {
                /* "HOST:PORT (sentinel HOST:PORT)" */
                snprintf(found, found_size, "%s (sentinel %s)", why, at);
            }

            return c;
        }

        /*
         * every sentinel's reason, in one line: each gets an equal share
         * of the room left, so the last ones are not cut off by the first
         */
        n = strlen(err->text);
        room = (int) (sizeof(err->text) - n - 1) / (u->nsentinels - i)
               - (int) strlen(at) - 4;

        snprintf(err->text + n, sizeof(err->text) - n, "%s %s: %.*s%s",
                 i ? ";" : "", at, room > 3 ? room - 3 : 0, why,
                 (int) strlen(why) > room && room > 3 ? "..." : "");
    }

    return NULL;
}


redisReply *
pg_redis_sentinel_command(redisContext *s, const pg_redis_url_t *u,
    int timeout_ms, int argc, const char **argv, char *why, size_t size)
{
    int          n;
    long         deadline;
    char         text[128];
    const char  *auth[3];
    redisReply  *r;

    deadline = timeout_ms > 0 ? pg_redis_now_ms() + timeout_ms : 0;

    if (pg_redis_left_until(s, deadline, why, size) != PG_OK) {
        return NULL;
    }

    r = redisCommandArgv(s, argc, argv, NULL);

    if (r == NULL || r->type != REDIS_REPLY_ERROR
        || strncmp(r->str, "NOAUTH", 6) != 0 || u->pass[0] == '\0')
    {
        if (r == NULL) {
            snprintf(why, size, "%s", pg_redis_strerror(s, text,
                                                        sizeof(text)));
        }

        return r;
    }

    /* it asks for a password: the URL's, as the master gets it */
    freeReplyObject(r);

    n = 0;
    auth[n++] = "AUTH";

    if (u->user[0] != '\0') {
        auth[n++] = u->user;
    }

    auth[n++] = u->pass;

    if (pg_redis_left_until(s, deadline, why, size) != PG_OK) {
        return NULL;
    }

    r = redisCommandArgv(s, n, auth, NULL);

    /*
     * A user and its password refused: the password alone, the default
     * user's, which is what sentinel.conf's requirepass sets (a sentinel
     * knows no ACL user unless given one), while the master may well
     * have the URL's user.
     */
    if (n == 3 && r != NULL && r->type == REDIS_REPLY_ERROR
        && pg_redis_left_until(s, deadline, why, size) == PG_OK)
    {
        freeReplyObject(r);
        auth[1] = u->pass;
        r = redisCommandArgv(s, 2, auth, NULL);
    }

    if (r == NULL) {
        snprintf(why, size, "AUTH failed: %s", pg_redis_strerror(s, text,
                                                                 sizeof(text)));
        return NULL;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        /* WRONGPASS: Redis says nothing of the password it was given */
        snprintf(why, size, "AUTH failed: %.*s", (int) r->len, r->str);
        freeReplyObject(r);
        return NULL;
    }

    freeReplyObject(r);

    if (pg_redis_left_until(s, deadline, why, size) != PG_OK) {
        return NULL;
    }

    r = redisCommandArgv(s, argc, argv, NULL);

    if (r == NULL) {
        snprintf(why, size, "%s", pg_redis_strerror(s, text, sizeof(text)));
    }

    return r;
}


/*
 * s's command timeout: what is left until deadline (0: none, nothing to
 * set). PG_ERR and why when none is left, or it could not be set.
 */
static int
pg_redis_left_until(redisContext *s, long deadline, char *why, size_t size)
{
    int             left;
    struct timeval  tv;

    if (deadline == 0) {
        return PG_OK;
    }

    left = pg_redis_left_ms(deadline);

    if (left < 0) {
        snprintf(why, size, "timed out: no time left to ask");
        return PG_ERR;
    }

    tv.tv_sec = left / 1000;
    tv.tv_usec = (left % 1000) * 1000;

    if (redisSetTimeout(s, tv) != REDIS_OK) {
        snprintf(why, size, "%s", s->errstr);
        return PG_ERR;
    }

    return PG_OK;
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


/* "host:port", or "[v6]:port": an IPv6 address's colons are its own. */
static void
pg_redis_hostport(const char *host, int port, char *buf, size_t size)
{
    int  v6;

    v6 = (strchr(host, ':') != NULL);

    snprintf(buf, size, "%s%.100s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "",
             port);
}


/*
 * Ask sentinel i where u->master is, connect to it as to a redis:// URL
 * with u's user, password and db, and check that it is a master, all
 * before deadline (0: no limit). A master that failed already in this
 * round (another sentinel named it) is not tried again. NULL and why (the
 * reason alone: the caller names the sentinel) on any failure; the
 * context and the master's "host:port" in why on success.
 */
static redisContext *
pg_redis_connect_master(const pg_redis_url_t *u, pg_redis_round_t *round,
    long deadline, int i, char *why, size_t size)
{
    int                     timeout_ms, k, denied;
    long                    port;
    char                    at[128], *end;
    const char             *argv[3];
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
        round->transient = 1;
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

    /* a sentinel that asks for a password gets the URL's */
    argv[0] = "SENTINEL";
    argv[1] = "get-master-addr-by-name";
    argv[2] = u->master;
    timeout_ms = pg_redis_left_ms(deadline);
    c = NULL;
    m = *u;
    m.sentinel = 0;
    m.nsentinels = 0;

    r = timeout_ms < 0 ? NULL
        : pg_redis_sentinel_command(s, u, timeout_ms, 3, argv, why, size);

    if (timeout_ms < 0) {
        snprintf(why, size, "not asked: no time left");
        round->transient = 1;

    } else if (r == NULL) {
        /*
         * why is said: "AUTH failed: WRONGPASS ...", or a lost answer. A
         * refusal is that one sentinel's set-up, not the URL's: neither
         * transient nor denied, so the round is permanent only when no
         * other sentinel's answer was passing (one sentinel whose
         * password is being changed must not fail a write at once in a
         * failover that the others report).
         */

    } else if (r->type == REDIS_REPLY_ERROR
               && strncmp(r->str, "NOAUTH", 6) == 0)
    {
        /* the URL has no password to give it: the same next time */
        snprintf(why, size, "NOAUTH: it asks for a password, the URL has "
                 "none");

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
            goto done;
        }

        m.port = (int) port;
        pg_redis_hostport(m.host, m.port, at, sizeof(at));

        for (k = 0; k < round->nfailed; k++) {
            if (round->failed[k].port == m.port
                && strcmp(round->failed[k].host, m.host) == 0)
            {
                snprintf(why, size, "master %s: failed already, above",
                         at);
                goto done;
            }
        }

        timeout_ms = pg_redis_left_ms(deadline);

        if (timeout_ms < 0) {
            snprintf(why, size, "no time left to connect to the master "
                     "at %s", at);
            round->transient = 1;
            goto done;
        }

        c = pg_redis_connect_direct(&m, timeout_ms, &err);

        if (c == NULL) {
            /* names the master: redis://:***@host:port/db: reason */
            snprintf(why, size, "%s", err.text);

            if (pg_redis_refused(err.text)) {
                round->denied = 1;
            } else {
                round->transient = 1;
            }

        } else if (!pg_redis_is_master(c, at, why, size, &denied)) {
            redisFree(c);
            c = NULL;

            if (denied) {
                round->denied = 1;
            } else {
                round->transient = 1;
            }

        } else {
            snprintf(why, size, "%s", at);
        }

        if (c == NULL && round->nfailed < PG_REDIS_SENTINELS_MAX) {
            round->failed[round->nfailed].port = m.port;
            memcpy(round->failed[round->nfailed].host, m.host,
                   sizeof(m.host));
            round->nfailed++;
        }
    }

done:

    freeReplyObject(r);
    redisFree(s);

    /* the password does not linger on the stack */
    memset(&m, 0, sizeof(m));

    return c;
}


/*
 * Does c (the server at "host:port" at) say it is a master? ROLE asks; an
 * ACL user without @dangerous (ROLE's category, and INFO's) is refused it
 * (NOPERM), and HELLO 2 (@fast @connection, Redis 6+; the protocol stays
 * RESP2) says the role too. 0 and why if not a master, or if neither
 * could tell; *denied is 1 then when an ACL refused both (no try later
 * will do better), else 0.
 */
static int
pg_redis_is_master(redisContext *c, const char *at, char *why, size_t size,
    int *denied)
{
    int          ok, hello;
    char         text[128];
    const char  *role, *cmd;
    redisReply  *r;

    cmd = "ROLE";
    hello = 0;
    r = redisCommand(c, "ROLE");

    if (r != NULL && r->type == REDIS_REPLY_ERROR
        && strncmp(r->str, "NOPERM", 6) == 0)
    {
        freeReplyObject(r);
        cmd = "HELLO 2 (ROLE refused: NOPERM)";
        hello = 1;
        r = redisCommand(c, "HELLO 2");
    }

    ok = 0;
    *denied = 0;
    role = pg_redis_role(r, hello);

    if (r == NULL) {
        snprintf(why, size, "%s failed: %s", cmd,
                 pg_redis_strerror(c, text, sizeof(text)));

    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, size, "%s failed: %.*s", cmd, (int) r->len, r->str);
        *denied = pg_redis_refused(why);

    } else if (role == NULL) {
        snprintf(why, size, "%s failed: unexpected reply", cmd);

    } else if (strcmp(role, "master") != 0) {
        /* the sentinel has not seen a failover, or one is under way */
        snprintf(why, size, "%s is a %.16s, not the master", at, role);

    } else {
        ok = 1;
    }

    freeReplyObject(r);

    return ok;
}


/* The role in ROLE's reply (its first element), or in HELLO 2's (the
 * value after "role" in its flat map); NULL if none. Borrowed from r. */
static const char *
pg_redis_role(redisReply *r, int hello)
{
    size_t  i;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        return NULL;
    }

    if (!hello) {
        return r->element[0]->type == REDIS_REPLY_STRING
               ? r->element[0]->str : NULL;
    }

    for (i = 0; i + 1 < r->elements; i += 2) {
        if (r->element[i]->type == REDIS_REPLY_STRING
            && strcmp(r->element[i]->str, "role") == 0)
        {
            return r->element[i + 1]->type == REDIS_REPLY_STRING
                   ? r->element[i + 1]->str : NULL;
        }
    }

    return NULL;
}


/*
 * Does a connection's error (pg_redis_connect_direct()'s, "...: AUTH
 * failed: WRONGPASS ...", or a command's "X failed: NOPERM ...") say the
 * server refused us, which asking again will not change? A timeout, a
 * dropped connection or LOADING are not refusals. 1 or 0.
 */
static int
pg_redis_refused(const char *text)
{
    static const char  *refusals[] = {
        " failed: WRONGPASS", " failed: NOPERM", " failed: NOAUTH",
        " failed: ERR", NULL
    };
    int                 i;

    for (i = 0; refusals[i] != NULL; i++) {
        if (strstr(text, refusals[i]) != NULL) {
            return 1;
        }
    }

    return 0;
}
