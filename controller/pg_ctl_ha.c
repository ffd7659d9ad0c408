/*
 * pg_ctl_ha.c: portal-gatectl's writes when Redis has replicas and fails
 * over (issue 13; README, "portal-gatectl", and DESIGN.md, "High
 * availability"):
 *
 *   - pg_ctl_ha_replicas(): after a write, WAIT until `redis_replicas`
 *     replicas (the config line, or --replicas) have it, when the master
 *     has a replica at all: a write acknowledged without one could be lost
 *     in a failover. When fewer confirm in time, the change is still made
 *     (on the master): say so, exit 1, as --wait does for a lagging edge.
 *     A master without replicas is a normal set-up: no wait, no word;
 *     with fewer connected than asked for, wait for those (said once).
 *     ROLE refused (an ACL user without @dangerous): WAIT all the same,
 *     and a 0 is exit 1, saying ROLE was refused.
 *   - pg_ctl_ha_setup(): the store's reconnect hook (pg_store_t), which
 *     pg_store_write() and pg_store_delete() call when the connection
 *     drops mid-write or the server answers READONLY (the master went
 *     away): find the master again (a sentinel URL asks the sentinels)
 *     within the time limit (--wait's, else PG_CTL_HA_RETRY_S) and resend
 *     (a resend that fails again past the limit is not sent again; what
 *     asking again cannot change, pg_redis_connect_retry(), fails at once);
 *     the write carries its own id (P write:ID, include/pg_store.h), so a
 *     write whose reply was lost after it was applied is not applied
 *     twice. A plain redis:// or unix:// URL is retried once, on the same
 *     server, after a dropped connection (a restart); a READONLY there is
 *     a replica named by mistake, not a failover: no retry.
 *   - pg_ctl_ha_connect(): a write's first connect, through sentinels that
 *     still name a dead master, asks them again within the same limit;
 *     what asking again cannot change fails at once.
 *   - pg_ctl_ha_describe(): status's line on the replicas;
 *     pg_ctl_ha_option(): --replicas NUM[,TIME].
 *
 * Messages go to stderr, one line each, prefixed "portal-gatectl: ".
 */

#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* fprintf, snprintf, vsnprintf */
#include <string.h>             /* strcmp, strncmp, strchr, memcpy */
#include <sys/time.h>           /* struct timeval */
#include <unistd.h>             /* usleep */
#include <hiredis/hiredis.h>    /* redisCommand, redisReply */
#include "pg_ctl.h"             /* pg_ctl_opts_t, the API */


#define PG_CTL_HA_RETRY_S      10      /* s: finding the master again,
                                          without --wait */
#define PG_CTL_HA_CONNECT_MS   1000    /* each try of it */
#define PG_CTL_HA_PAUSE_US     200000  /* between tries */


static void pg_ctl_ha_time(long ms, char *buf, size_t size);
static int pg_ctl_ha_fail(pg_store_t *store, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void pg_ctl_ha_text(pg_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));


/* err's text, cut to its size */
static void
pg_ctl_ha_text(pg_error_t *err, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    vsnprintf(err->text, sizeof(err->text), fmt, args);
    va_end(args);
}


/* The write failed for good: store->err (cut to its size); PG_ERR. */
static int
pg_ctl_ha_fail(pg_store_t *store, const char *fmt, ...)
{
    va_list  args;

    store->code = PG_STORE_EREDIS;

    va_start(args, fmt);
    vsnprintf(store->err.text, sizeof(store->err.text), fmt, args);
    va_end(args);

    return PG_ERR;
}


/* 500 -> "500ms", 2000 -> "2s": as the config line writes it */
static void
pg_ctl_ha_time(long ms, char *buf, size_t size)
{
    if (ms % 1000 == 0) {
        snprintf(buf, size, "%lds", ms / 1000);
    } else {
        snprintf(buf, size, "%ldms", ms);
    }
}


int
pg_ctl_ha_replicas(pg_store_t *store, pg_ctl_opts_t *o)
{
    int              want;
    char             limit[32], why[300], io[300], refused[200];
    long long        acked;
    redisReply      *role, *wait;
    struct timeval   tv;
    static int       said_fewer;

    if (o->replicas == 0 || store->redis == NULL) {
        return PG_CTL_OK;
    }

    /* ROLE: "master", its offset, and one entry per connected replica */
    role = redisCommand(store->redis, "ROLE");
    refused[0] = '\0';
    want = o->replicas;

    if (role != NULL && role->type == REDIS_REPLY_ERROR) {
        /* an ACL user without @dangerous is refused ROLE, not WAIT: wait
         * all the same, and say what a 0 then means */
        snprintf(refused, sizeof(refused), "%.150s", role->str);

    } else if (role == NULL || role->type != REDIS_REPLY_ARRAY
               || role->elements < 3
               || role->element[0]->type != REDIS_REPLY_STRING
               || strcmp(role->element[0]->str, "master") != 0
               || role->element[2]->type != REDIS_REPLY_ARRAY
               || role->element[2]->elements == 0)
    {
        /* no replica (a single Redis is a normal set-up): nothing to wait
         * for */
        if (role) {
            freeReplyObject(role);
        }
        return PG_CTL_OK;

    } else if (role->element[2]->elements < (size_t) o->replicas) {
        /* fewer connected than asked for: those there are can confirm it
         * (a down replica is status's to show, not every write's to fail) */
        want = (int) role->element[2]->elements;

        if (!said_fewer) {
            said_fewer = 1;
            fprintf(stderr, "portal-gatectl: %d of the %d replicas "
                    "redis_replicas asks for %s connected: waited for %s\n",
                    want, o->replicas, want == 1 ? "is" : "are",
                    want == 1 ? "it" : "them");
        }
    }

    if (role) {
        freeReplyObject(role);
    }

    pg_ctl_ha_time(o->replicas_ms, limit, sizeof(limit));

    /* WAIT answers at its timeout: the command's must be longer */
    tv.tv_sec = (o->replicas_ms + PG_CTL_TIMEOUT_MS) / 1000;
    tv.tv_usec = ((o->replicas_ms + PG_CTL_TIMEOUT_MS) % 1000) * 1000;
    redisSetTimeout(store->redis, tv);

    wait = redisCommand(store->redis, "WAIT %d %ld", want, o->replicas_ms);

    tv.tv_sec = PG_CTL_TIMEOUT_MS / 1000;
    tv.tv_usec = (PG_CTL_TIMEOUT_MS % 1000) * 1000;
    redisSetTimeout(store->redis, tv);

    if (wait == NULL || wait->type != REDIS_REPLY_INTEGER) {
        snprintf(why, sizeof(why), "%s", wait == NULL
                 ? pg_redis_strerror(store->redis, io, sizeof(io))
                 : wait->type == REDIS_REPLY_ERROR ? wait->str
                 : "an unexpected reply to WAIT");
        if (wait) {
            freeReplyObject(wait);
        }

        fprintf(stderr, "portal-gatectl: the change is applied on the "
                "master, but whether a replica has it is unknown (WAIT: "
                "%s): a failover now could lose it\n", why);
        fflush(stdout);
        return PG_CTL_FAILED;
    }

    acked = wait->integer;
    freeReplyObject(wait);

    if (acked >= want) {
        return PG_CTL_OK;
    }

    if (refused[0] != '\0' && acked == 0) {
        /* a single Redis answers 0 too: it cannot be told from a master
         * whose replicas lag, so it is no success (the README's table) */
        fprintf(stderr, "portal-gatectl: the change is applied on the "
                "master, but no replica confirmed it within %s, and "
                "whether the master has replicas could not be told (ROLE "
                "refused: %s): if it has, a failover now could lose it; "
                "grant the user +role, or set redis_replicas 0 for a Redis "
                "without replicas\n", limit, refused);

    } else if (acked == 0) {
        fprintf(stderr, "portal-gatectl: the change is applied on the "
                "master, but no replica confirmed it within %s: a failover "
                "now could lose it\n", limit);
    } else {
        fprintf(stderr, "portal-gatectl: the change is applied on the "
                "master and on %lld replica%s, but not on %d within %s as "
                "asked: a failover to a replica without it could lose it\n",
                acked, acked == 1 ? "" : "s", want, limit);
    }

    return PG_CTL_FAILED;
}


void
pg_ctl_ha_describe(pg_store_t *store, const pg_ctl_opts_t *o, char *buf,
    size_t size)
{
    char         limit[32];
    size_t       n;
    redisReply  *role;

    role = store->redis ? redisCommand(store->redis, "ROLE") : NULL;

    if (role == NULL || role->type != REDIS_REPLY_ARRAY
        || role->elements < 3
        || role->element[2]->type != REDIS_REPLY_ARRAY)
    {
        snprintf(buf, size, "replicas: unknown (ROLE: %s)", role == NULL
                 ? "no answer" : role->type == REDIS_REPLY_ERROR
                 ? role->str : "not a master's answer");
        if (role) {
            freeReplyObject(role);
        }
        return;
    }

    n = role->element[2]->elements;
    freeReplyObject(role);

    pg_ctl_ha_time(o->replicas_ms, limit, sizeof(limit));

    if (o->replicas == 0) {
        snprintf(buf, size, "replicas: %zu connected; writes do not wait "
                 "for them (redis_replicas 0)", n);
    } else if (n == 0) {
        snprintf(buf, size, "replicas: none connected; writes do not wait "
                 "(they would wait for %d within %s)", o->replicas, limit);
    } else if (n < (size_t) o->replicas) {
        /* as pg_ctl_ha_replicas() does: those there are */
        snprintf(buf, size, "replicas: %zu connected; writes wait for %zu "
                 "within %s (redis_replicas asks for %d)", n, n, limit,
                 o->replicas);
    } else {
        snprintf(buf, size, "replicas: %zu connected; writes wait for %d "
                 "within %s", n, o->replicas, limit);
    }
}


/*
 * The store's reconnect hook (pg_store_reconnect_pt): find the master
 * again within the limit and put its connection in store->redis. why is
 * what happened to the write ("Connection reset by peer", "READONLY ...").
 */
static int
pg_ctl_ha_reconnect(pg_store_t *store, const char *why, void *data)
{
    int             readonly, retry;
    char            where[300];
    double          now, limit_s;
    pg_error_t      err;
    struct timeval  tv;
    redisContext   *redis;
    pg_ctl_opts_t  *o;

    o = data;
    /* as pg_redis_master_moved() tells it, Redis 6's script-wrapped form
     * included */
    readonly = strncmp(why, "READONLY ", 9) == 0
               || strstr(why, "-READONLY ") != NULL;
    limit_s = o->wait >= 0 ? o->wait : PG_CTL_HA_RETRY_S;
    now = pg_ctl_now_ms();

    if (!o->url.sentinel && (readonly || o->ha_tries > 0)) {
        return pg_ctl_ha_fail(store, "%s: %s%s", o->where, why, readonly
                              ? " (a replica: -r must name the master, or "
                                "the sentinels with redis-sentinel://)"
                              : "");
    }

    if (o->ha_tries == 0) {
        o->ha_start_ms = now;

    } else if (now - o->ha_start_ms >= limit_s * 1000) {
        /* resent already, and it failed again (the master found holds
         * writes, or drops them): once past the limit, no more resends,
         * however fast each connect is */
        return pg_ctl_ha_fail(store, "the master went away (%s) and the "
                              "write was resent %d time%s within %.1f s, "
                              "past the limit of %.0f s: the change may or "
                              "may not be applied: check with "
                              "`portal-gatectl show%s%s` or `audit`", why,
                              o->ha_tries, o->ha_tries == 1 ? "" : "s",
                              (now - o->ha_start_ms) / 1000, limit_s,
                              o->flag ? " " : "", o->flag ? o->flag : "");
    }

    o->ha_tries++;

    for ( ;; ) {
        redis = pg_redis_connect_retry(&o->url, PG_CTL_HA_CONNECT_MS,
                                       &retry, &err);

        if (redis != NULL) {
            break;
        }

        now = pg_ctl_now_ms();

        if (o->url.sentinel && !retry) {
            /* no sentinel answers, none knows the name, or the master
             * refuses us: the rest of the limit would not change it */
            /* what to do first: the sentinels' answers may be cut */
            return pg_ctl_ha_fail(store, "the master went away (%s); the "
                                  "change may or may not be applied "
                                  "(`portal-gatectl show%s%s` or `audit` "
                                  "tells): %s", why,
                                  o->flag ? " " : "", o->flag ? o->flag : "",
                                  err.text);
        }

        if (!o->url.sentinel || now - o->ha_start_ms >= limit_s * 1000) {
            return pg_ctl_ha_fail(store, "the master went away (%s) and %s "
                                  "within %.1f s: %s; the change may or "
                                  "may not be applied: check with "
                                  "`portal-gatectl show` or `audit`", why,
                                  o->url.sentinel ? "no master was found"
                                                  : "it did not come back",
                                  (now - o->ha_start_ms) / 1000, err.text);
        }

        usleep(PG_CTL_HA_PAUSE_US);
    }

    if (redis->connection_type == REDIS_CONN_UNIX) {
        snprintf(where, sizeof(where), "%s", redis->unix_sock.path);
    } else {
        snprintf(where, sizeof(where), "%s:%d", redis->tcp.host,
                 redis->tcp.port);
    }

    /* the tries' short timeout was for finding the master; the write
     * and what follows get the command's usual one */
    tv.tv_sec = PG_CTL_TIMEOUT_MS / 1000;
    tv.tv_usec = (PG_CTL_TIMEOUT_MS % 1000) * 1000;
    redisSetTimeout(redis, tv);

    redisFree(store->redis);
    store->redis = redis;

    fprintf(stderr, "portal-gatectl: the master went away (%s): retried on "
            "%s after %.1f s\n", why, where,
            (pg_ctl_now_ms() - o->ha_start_ms) / 1000);

    return PG_OK;
}


/*
 * A write's first connect, through the sentinels: while they name a master
 * that does not answer (it died, and they have not failed over yet) or is
 * no master any more, ask again within the limit, and say so when that
 * found it. What asking again will not change (no sentinel answers, none
 * knows the master name, the master refuses our password: see
 * pg_redis_connect_retry()) fails at once, with what is wrong. Another
 * URL, or a read, is connected once (pg_ctl_connect).
 */
int
pg_ctl_ha_connect(pg_store_t *store, pg_ctl_opts_t *o, pg_error_t *err)
{
    int             retry, tries;
    char            where[300];
    double          start, limit_s;
    pg_error_t      first;
    struct timeval  tv;
    redisContext   *redis;

    if (!o->url.sentinel) {
        return pg_ctl_connect(store, o, PG_CTL_TIMEOUT_MS, err);
    }

    limit_s = o->wait >= 0 ? o->wait : PG_CTL_HA_RETRY_S;
    start = pg_ctl_now_ms();

    for (tries = 0; ; tries++) {
        redis = pg_redis_connect_retry(&o->url, tries ? PG_CTL_HA_CONNECT_MS
                                                      : PG_CTL_TIMEOUT_MS,
                                       &retry, err);

        if (redis != NULL) {
            break;
        }

        if (tries == 0) {
            memcpy(&first, err, sizeof(pg_error_t));
        }

        if (!retry) {
            /* err says what is wrong, each sentinel's answer */
            return PG_ERR;
        }

        if (pg_ctl_now_ms() - start >= limit_s * 1000) {
            memcpy(&first, err, sizeof(pg_error_t));
            pg_ctl_ha_text(err, "no master within %.1f s: %s", limit_s,
                           first.text);
            return PG_ERR;
        }

        usleep(PG_CTL_HA_PAUSE_US);
    }

    pg_store_setup(store, redis, o->prefix, o->where);

    if (tries == 0) {
        return PG_OK;
    }

    tv.tv_sec = PG_CTL_TIMEOUT_MS / 1000;
    tv.tv_usec = (PG_CTL_TIMEOUT_MS % 1000) * 1000;
    redisSetTimeout(store->redis, tv);

    if (store->redis->connection_type == REDIS_CONN_UNIX) {
        snprintf(where, sizeof(where), "%s", store->redis->unix_sock.path);
    } else {
        snprintf(where, sizeof(where), "%s:%d", store->redis->tcp.host,
                 store->redis->tcp.port);
    }

    fprintf(stderr, "portal-gatectl: no master answered at first (%s): "
            "found %s after %.1f s\n", first.text, where,
            (pg_ctl_now_ms() - start) / 1000);

    return PG_OK;
}


void
pg_ctl_ha_setup(pg_store_t *store, pg_ctl_opts_t *o)
{
    store->reconnect = pg_ctl_ha_reconnect;
    store->reconnect_data = o;
}


/* After a write: "found applied" when the resend found it so. */
void
pg_ctl_ha_applied(const pg_store_t *store)
{
    if (store->applied) {
        fprintf(stderr, "portal-gatectl: the write had reached the master "
                "before it went away: it was kept, not applied again\n");
    }
}


/* --replicas NUM[,TIME]: redis_replicas' values on the command line */
int
pg_ctl_ha_option(pg_ctl_opts_t *o, const char *arg)
{
    int          n, bad;
    long         ms;
    char         num[16];
    const char  *comma, *why;

    comma = strchr(arg, ',');

    if ((comma ? (size_t) (comma - arg) : strlen(arg)) >= sizeof(num)) {
        return pg_ctl_error(PG_CTL_USAGE, "invalid --replicas \"%s\": "
                            "expected NUM or NUM,TIME (2,500ms)", arg);
    }

    snprintf(num, sizeof(num), "%.*s",
             (int) (comma ? (size_t) (comma - arg) : strlen(arg)), arg);

    if (pg_conf_parse_replicas(num, comma ? comma + 1 : NULL, &n, &ms, &why,
                               &bad)
        != PG_OK)
    {
        return pg_ctl_error(PG_CTL_USAGE, "invalid --replicas \"%s\": %s",
                            arg, why);
    }

    o->replicas = n;
    o->replicas_ms = ms;
    o->replicas_given = 1;

    return PG_CTL_OK;
}
