/*
 * pgd_redis.c: portal-gated's two Redis connections (see pgd.h): one for
 * commands, one SUBSCRIBEd to the change channel, both through
 * pg_redis_connect() (AUTH, SELECT) again after every failure, with a
 * backoff of 250 ms doubling to 5 s, each wait shortened at random by up
 * to a quarter so that many daemons do not reconnect in step. Redis going
 * and coming back is said once each.
 *
 * Under Sentinel (a redis-sentinel:// URL) every connect asks the
 * sentinels where the master is, so a reconnect follows a failover: the
 * pub/sub connection asks, and the command connection goes to the server
 * it reached (pg_redis_connect_same()), so that a reconnect waits on one
 * discovery, not two, and both are on one master even mid-failover. A
 * failover drops the old master's connections (the sentinels' CLIENT
 * KILL, or its death); a READONLY answer, should one come, is a lost
 * connection too: a store call's error is PG_STORE_EREDIS, and every
 * write of the daemon's own (the beat, each tick; a certificate's status;
 * a challenge token's removal) asks pgd_redis_moved().
 */

#include <poll.h>               /* poll: a message waiting */
#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* rand */
#include <string.h>             /* strcmp */
#include "pgd.h"                /* pgd_t, the API this file implements */
#include "pg_redis.h"           /* pg_redis_connect_same, ... */


void
pgd_redis_close(pgd_t *d)
{
    if (d->cmd) {
        redisFree(d->cmd);
        d->cmd = NULL;
    }

    if (d->sub) {
        redisFree(d->sub);
        d->sub = NULL;
    }
}


void
pgd_redis_down(pgd_t *d, const char *why)
{
    double    now, delay;
    unsigned  shift;

    pgd_redis_close(d);
    now = pgd_now();

    if (d->redis_state != PGD_DOWN) {
        pgd_log(d, PG_LOG_ERROR, "redis unreachable: %s; the edges keep what "
                "they hold, reconnecting", why);

        d->redis_state = PGD_DOWN;
        d->redis_down_since = now;
        d->stale_said = now;
        d->redis_attempts = 0;

    } else {
        pgd_log(d, PG_LOG_DEBUG, "redis still unreachable: %s", why);
    }

    /* 250 ms, doubling to 5 s, each less up to a quarter at random */
    shift = d->redis_attempts < 5 ? d->redis_attempts : 5;
    delay = PGD_BACKOFF_MIN_MS * (double) (1u << shift);
    delay = delay < PGD_BACKOFF_MAX_MS ? delay : PGD_BACKOFF_MAX_MS;
    delay -= delay * 0.25 * (rand() / (double) RAND_MAX);

    d->redis_attempts++;
    d->redis_retry_at = now + delay;
}


/*
 * A store call on d->cmd failed with PG_STORE_EREDIS. A command that timed
 * out is said so, with the timeout: hiredis leaves "Resource temporarily
 * unavailable" (the socket's EAGAIN) in the store's message then.
 */
void
pgd_redis_store_failed(pgd_t *d)
{
    char  why[600], text[160];

    if (d->cmd != NULL && pg_redis_timed_out(d->cmd, NULL)) {
        snprintf(why, sizeof(why), "%s: %s", d->where,
                 pg_redis_strerror(d->cmd, text, sizeof(text)));
        pgd_redis_down(d, why);
        return;
    }

    pgd_redis_down(d, d->store.err.text);
}


/*
 * A reply on d->cmd that says the master moved (pg_redis_master_moved():
 * READONLY, wrapped or not) is a lost connection: d->cmd is closed and
 * the reconnect asks the sentinels again. 1 then (d->cmd is NULL: the
 * caller stops using it), else 0. r stays the caller's.
 */
int
pgd_redis_moved(pgd_t *d, const redisReply *r)
{
    char  why[600];

    if (!pg_redis_master_moved(r)) {
        return 0;
    }

    snprintf(why, sizeof(why), "%s: %.200s", d->where, r->str);
    pgd_redis_down(d, why);

    return 1;
}


/* Subscribe first, then read the store: no change slips between them. */
void
pgd_redis_connect(pgd_t *d)
{
    char         text[160], found[PG_ERROR_LEN];
    pg_error_t   err;
    redisReply  *reply;

    pg_redis_url_format(&d->conf.redis, d->where, sizeof(d->where));
    snprintf(d->channel, sizeof(d->channel), "%s%s", d->conf.prefix,
             PG_STORE_CHANNEL);

    d->sub = pg_redis_connect_found(&d->conf.redis, PGD_REDIS_TIMEOUT_MS,
                                    found, sizeof(found), &err);
    if (d->sub == NULL) {
        pgd_redis_down(d, err.text);
        return;
    }

    if (found[0] != '\0') {
        pgd_log(d, PG_LOG_INFO, "redis: master %s is at %s",
                d->conf.redis.master, found);
    }

    reply = redisCommand(d->sub, "SUBSCRIBE %s", d->channel);

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        snprintf(err.text, sizeof(err.text), "%.120s: SUBSCRIBE failed: %.100s",
                 d->where, reply == NULL
                           ? pg_redis_strerror(d->sub, text, sizeof(text))
                           : reply->type == REDIS_REPLY_ERROR ? reply->str
                           : "unexpected reply");
        freeReplyObject(reply);
        pgd_redis_down(d, err.text);
        return;
    }

    freeReplyObject(reply);

    /* a connection that dies silently (a NAT, a firewall) is noticed */
    redisEnableKeepAlive(d->sub);

    /* the master sub reached, without asking the sentinels again */
    d->cmd = pg_redis_connect_same(&d->conf.redis, d->sub,
                                   PGD_REDIS_TIMEOUT_MS, &err);
    if (d->cmd == NULL) {
        pgd_redis_down(d, err.text);
        return;
    }

    pg_store_setup(&d->store, d->cmd, d->conf.prefix, d->where);

    /*
     * Up only once the store could be read: a Redis that accepts
     * connections but answers LOADING or MASTERDOWN stays down, and the
     * backoff goes on.
     */
    pgd_load(d);

    if (d->cmd == NULL) {
        return;
    }

    if (d->redis_state == PGD_DOWN) {
        pgd_log(d, PG_LOG_NOTICE, "redis %s reachable again after %.1f s",
                d->where, (pgd_now() - d->redis_down_since) / 1000);
    } else {
        pgd_log(d, PG_LOG_NOTICE, "connected to redis %s, following %s",
                d->where, d->channel);
    }

    d->redis_state = PGD_UP;
    d->redis_attempts = 0;

    /* alive from now, not from the next tick */
    pgd_beat(d);
}


/* The pub/sub connection is readable: change messages, or its end. Returns
 * how many flag change messages were read (pgd_http_run() answers no HTTP
 * request in a turn that read one: the change goes out first). */
int
pgd_redis_read(pgd_t *d)
{
    int          changes;
    char         why[600], text[160];
    const char  *msg;
    redisReply  *reply;

    changes = 0;

    if (redisBufferRead(d->sub) != REDIS_OK) {
        snprintf(why, sizeof(why), "%s: %s", d->where,
                 pg_redis_strerror(d->sub, text, sizeof(text)));
        pgd_redis_down(d, why);
        return changes;
    }

    for ( ;; ) {
        reply = NULL;

        if (redisGetReplyFromReader(d->sub, (void **) &reply) != REDIS_OK) {
            snprintf(why, sizeof(why), "%s: %s", d->where,
                     pg_redis_strerror(d->sub, text, sizeof(text)));
            pgd_redis_down(d, why);
            return changes;
        }

        if (reply == NULL) {
            return changes;
        }

        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
            && reply->element[0]->type == REDIS_REPLY_STRING
            && strcmp(reply->element[0]->str, "message") == 0)
        {
            msg = reply->element[2]->str ? reply->element[2]->str : "?";

            /* the certificates' messages change no flag */
            if (strcmp(msg, PG_STORE_MSG_CHALLENGES) == 0) {
                d->chal_wanted = 1;

            } else if (strcmp(msg, PG_STORE_MSG_CERT_RENEW) == 0) {
                d->renew_wanted = 1;

            } else {
                pgd_change(d, msg);
                changes++;
            }
        }

        freeReplyObject(reply);
    }
}


/* Is the pub/sub connection readable (a change message waits), within
 * wait_ms (0: now)? */
int
pgd_redis_pending(pgd_t *d, double wait_ms)
{
    struct pollfd  pfd;

    if (d->sub == NULL) {
        return 0;
    }

    pfd.fd = d->sub->fd;
    pfd.events = POLLIN;
    pfd.revents = 0;

    return poll(&pfd, 1, wait_ms > 0 ? (int) wait_ms : 0) == 1
           && (pfd.revents & POLLIN);
}
