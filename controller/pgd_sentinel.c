/*
 * pgd_sentinel.c: under a redis-sentinel:// URL, portal-gated follows a
 * failover as soon as the sentinels make it: a third connection, to one
 * sentinel, SUBSCRIBEd to +switch-master. A message for our master name
 * closes the two Redis connections and reconnects at once (pgd_redis.c:
 * the sentinels are asked again, the change channel re-SUBSCRIBEd, the
 * store reloaded, the edges pushed if the revision moved), instead of
 * waiting for the backoff of a connection the dead master dropped.
 *
 * Any sentinel will do: the URL's first, and on its loss (or refusal) the
 * next, round the list. Never long in the loop: the connect and the
 * SUBSCRIBE share one PGD_SENTINEL_TIMEOUT_MS, one sentinel per try, and a
 * failed try waits PGD_SENTINEL_RETRY_MS before the next, twice that
 * after each further one up to PGD_SENTINEL_RETRY_MAX_MS (hung sentinels
 * would otherwise cost the loop half of each second), back to the first
 * wait once one answers. A sentinel that asks for a password (NOAUTH)
 * is given the URL's, as discovery gives it. Messages are
 * read only when poll() says the socket is readable. Without it (all
 * sentinels down) the daemon still rediscovers on a lost connection or
 * READONLY: this only makes it faster.
 */

#include <stdio.h>              /* snprintf, sscanf */
#include <string.h>             /* strcmp, strlen, strncmp */
#include <sys/time.h>           /* struct timeval: hiredis timeouts */
#include "pgd.h"                /* pgd_t, the API this file implements */
#include "pg_redis.h"           /* pg_redis_strerror, pg_redis_url_format */


#define PGD_SENTINEL_CHANNEL  "+switch-master"


static void pgd_sentinel_lost(pgd_t *d, const char *why);
static void pgd_sentinel_message(pgd_t *d, const char *msg);


void
pgd_sentinel_close(pgd_t *d)
{
    if (d->sentinel != NULL) {
        redisFree(d->sentinel);
        d->sentinel = NULL;
    }
}


/*
 * Called each turn of the loop: (re)connects the watch when it is due,
 * and drops it when the URL changed (SIGHUP) or is no sentinel URL.
 */
void
pgd_sentinel_watch(pgd_t *d)
{
    int                     left;
    char                    url[sizeof(d->sentinel_url)], text[160];
    char                    io[160];
    const char             *argv[2];
    double                  start;
    redisReply             *r;
    struct timeval          tv;
    const pg_redis_addr_t  *a;
    const pg_redis_url_t   *u;

    u = &d->conf.redis;

    if (!u->sentinel) {
        pgd_sentinel_close(d);
        d->sentinel_url[0] = '\0';
        return;
    }

    pg_redis_url_format(u, url, sizeof(url));

    if (strcmp(url, d->sentinel_url) != 0) {
        /* a new URL (start, SIGHUP): its first sentinel, now */
        pgd_sentinel_close(d);
        snprintf(d->sentinel_url, sizeof(d->sentinel_url), "%s", url);
        d->sentinel_next = 0;
        d->sentinel_retry_at = 0;
        d->sentinel_backoff_ms = 0;
    }

    if (d->sentinel != NULL || pgd_now() < d->sentinel_retry_at) {
        return;
    }

    a = &u->sentinels[d->sentinel_next % u->nsentinels];
    snprintf(d->sentinel_at, sizeof(d->sentinel_at), "%s%.100s%s:%d",
             strchr(a->host, ':') ? "[" : "", a->host,
             strchr(a->host, ':') ? "]" : "", a->port);

    /* one budget: what the connect leaves is the SUBSCRIBE's */
    start = pgd_now();
    tv.tv_sec = PGD_SENTINEL_TIMEOUT_MS / 1000;
    tv.tv_usec = (PGD_SENTINEL_TIMEOUT_MS % 1000) * 1000;

    d->sentinel = redisConnectWithTimeout(a->host, a->port, tv);

    if (d->sentinel == NULL || d->sentinel->err) {
        pgd_sentinel_lost(d, d->sentinel ? d->sentinel->errstr
                                         : "cannot allocate a context");
        return;
    }

    left = PGD_SENTINEL_TIMEOUT_MS - (int) (pgd_now() - start);

    if (left < 1) {
        pgd_sentinel_lost(d, "connected, with no time left to SUBSCRIBE");
        return;
    }

    tv.tv_sec = left / 1000;
    tv.tv_usec = (left % 1000) * 1000;

    if (redisSetTimeout(d->sentinel, tv) != REDIS_OK) {
        pgd_sentinel_lost(d, d->sentinel->errstr);
        return;
    }

    /* a sentinel that asks for a password gets the URL's, as discovery
     * gives it (pg_redis_sentinel_command()) */
    argv[0] = "SUBSCRIBE";
    argv[1] = PGD_SENTINEL_CHANNEL;
    r = pg_redis_sentinel_command(d->sentinel, u, left, 2, argv, io,
                                  sizeof(io));

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        /* io, not text: the reason is read while text is written */
        snprintf(text, sizeof(text), "SUBSCRIBE failed: %.100s",
                 r == NULL ? io
                 : r->type == REDIS_REPLY_ERROR ? r->str
                 : "unexpected reply");
        freeReplyObject(r);
        pgd_sentinel_lost(d, text);
        return;
    }

    freeReplyObject(r);

    /* a sentinel that dies silently (a NAT, a firewall) is noticed */
    redisEnableKeepAlive(d->sentinel);
    d->sentinel_failing = 0;
    d->sentinel_backoff_ms = 0;

    pgd_log(d, PG_LOG_INFO, "redis: following %s of master %s on sentinel "
            "%s", PGD_SENTINEL_CHANNEL, u->master, d->sentinel_at);
}


/* The watch is gone or was never made: the next sentinel, after a wait. */
static void
pgd_sentinel_lost(pgd_t *d, const char *why)
{
    char  text[160];

    /* why may be the context's errstr, which closing it frees */
    snprintf(text, sizeof(text), "%s", why);
    pgd_sentinel_close(d);

    /* said once until one answers again: all down is not a log a second */
    if (d->sentinel_backoff_ms < PGD_SENTINEL_RETRY_MS) {
        d->sentinel_backoff_ms = PGD_SENTINEL_RETRY_MS;
    }

    pgd_log(d, d->sentinel_failing ? PG_LOG_DEBUG : PG_LOG_INFO,
            "redis: sentinel %s: %s; %s from the next one in %ld ms",
            d->sentinel_at, text, PGD_SENTINEL_CHANNEL,
            d->sentinel_backoff_ms);

    d->sentinel_failing = 1;

    d->sentinel_next++;
    d->sentinel_retry_at = pgd_now() + d->sentinel_backoff_ms;

    /* while they fail, each wait twice the last */
    d->sentinel_backoff_ms = d->sentinel_backoff_ms * 2
                             > PGD_SENTINEL_RETRY_MAX_MS
                             ? PGD_SENTINEL_RETRY_MAX_MS
                             : d->sentinel_backoff_ms * 2;
}


/* The watch's socket is readable: messages, or its end. */
void
pgd_sentinel_read(pgd_t *d)
{
    char         text[160];
    redisReply  *r;

    if (redisBufferRead(d->sentinel) != REDIS_OK) {
        pgd_sentinel_lost(d, pg_redis_strerror(d->sentinel, text,
                                               sizeof(text)));
        return;
    }

    for ( ;; ) {
        r = NULL;

        if (redisGetReplyFromReader(d->sentinel, (void **) &r) != REDIS_OK) {
            pgd_sentinel_lost(d, pg_redis_strerror(d->sentinel, text,
                                                   sizeof(text)));
            return;
        }

        if (r == NULL) {
            return;
        }

        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3
            && r->element[0]->type == REDIS_REPLY_STRING
            && strcmp(r->element[0]->str, "message") == 0
            && r->element[2]->type == REDIS_REPLY_STRING)
        {
            pgd_sentinel_message(d, r->element[2]->str);
        }

        freeReplyObject(r);

        if (d->sentinel == NULL) {
            return;
        }
    }
}


/*
 * "+switch-master NAME OLDHOST OLDPORT NEWHOST NEWPORT": for our master,
 * reconnect now (the loop's next turn: redis_retry_at is now).
 */
static void
pgd_sentinel_message(pgd_t *d, const char *msg)
{
    int     oldport, newport;
    char    name[128], oldhost[256], newhost[256];

    if (sscanf(msg, "%127s %255s %d %255s %d", name, oldhost, &oldport,
               newhost, &newport) != 5
        || strcmp(name, d->conf.redis.master) != 0)
    {
        return;
    }

    pgd_log(d, PG_LOG_NOTICE, "redis: followed %s from sentinel %s: master "
            "%s moved from %s:%d to %s:%d, reconnecting", PGD_SENTINEL_CHANNEL,
            d->sentinel_at, name, oldhost, oldport, newhost, newport);

    pgd_redis_close(d);
    d->redis_retry_at = 0;
    d->redis_attempts = 0;
}
