/*
 * pgd_challenges.c: the ACME http-01 tokens, from Redis to every edge.
 *
 * The tokens live in Redis (P"acme:challenges", token -> key
 * authorization), so that every portal-gated sharing the store pushes
 * them to its own edges: the CA may connect to any of them. The worker
 * that runs an order writes a token there, then publishes
 * PG_STORE_MSG_CHALLENGES and raises worker.chal_want; a loop that sees either
 * reads the whole hash and PUTs it to each edge (`PUT challenges`, the
 * whole set at once), in a request of its own beside the snapshot's, so
 * a token never waits behind a push and a kill never behind a token.
 * Once every edge has answered (or failed), worker.chal_done says so and
 * the worker tells the CA to look.
 *
 * While the set is not empty it is pushed again at every tick: an edge
 * that restarted, or whose zone a resizing reload replaced, gets it back;
 * so is it at the tick after an edge did not take it, and once at the
 * start (an edge may hold tokens of an order cut short by a restart).
 *
 * Each value in Redis is "EXPIRES KEY_AUTHORIZATION" (EXPIRES in epoch
 * seconds): a token that an order could not withdraw (Redis down then,
 * the daemon killed) is removed by the first controller that reads it
 * past its time. The edge holds at most PGD_CHALLENGES_MAX: past that,
 * the newest are sent.
 */

#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* free, calloc, qsort, strtoll */
#include <string.h>             /* strcmp, strlen, strdup */
#include <time.h>               /* time */
#include "pgd.h"                /* the daemon */


/* One token of the set in Redis, borrowed from the reply. */
typedef struct {
    const char  *token;
    const char  *key_authorization;
    long long    expires;
} pgd_token_t;


static int pgd_challenges_read(pgd_t *d, char **body, int *count);
static void pgd_challenges_round_end(pgd_t *d);
static int pgd_challenges_cmp(const void *a, const void *b);
static void pgd_challenges_settle(pgd_t *d);


/*
 * Start a round when one is wanted: the worker changed the set, a message
 * says another controller did, or (tick) the set pushed last was not
 * empty. A round in flight finishes first; the next one reads the set
 * again.
 */
void
pgd_challenges_kick(pgd_t *d, int tick)
{
    int          count;
    char        *body;
    size_t       i;
    uint64_t     want;
    pgd_edge_t  *e;
    pg_error_t   err;

    if (d->chal_pending > 0) {
        return;
    }

    pthread_mutex_lock(&d->worker.lock);
    want = d->worker.chal_want;
    pthread_mutex_unlock(&d->worker.lock);

    if (want == d->chal_round && !d->chal_wanted
        && !(tick && d->chal_live && d->chal_retry)
        && !(d->chal_again_at > 0 && pgd_now() >= d->chal_again_at))
    {
        return;
    }

    d->chal_again_at = 0;
    d->chal_failed = 0;

    if (d->cmd == NULL) {
        /* no set to read: a waiting worker goes on (the CA will say what
         * it saw), and the round is for when Redis is back */
        d->chal_round = want;
        d->chal_wanted = 1;
        pgd_challenges_settle(d);
        return;
    }

    d->chal_wanted = 0;
    d->chal_retry = 0;
    d->chal_round = want;

    if (pgd_challenges_read(d, &body, &count) != PG_OK) {
        pgd_challenges_settle(d);
        return;
    }

    d->chal_live = count > 0;

    for (i = 0; i < d->nedges; i++) {
        e = &d->edges[i];

        if (e->acme_busy) {
            continue;
        }

        /* the request borrows its body until it is done: a copy each */
        e->acme_body = strdup(body);

        if (e->acme_body == NULL
            || pg_edge_req_init(&e->acme_req, &e->edge, "PUT", "challenges",
                                e->acme_body, strlen(e->acme_body),
                                PGD_CHALLENGE_TIMEOUT_MS, &err) != PG_OK)
        {
            pgd_log(d, PG_LOG_WARN, "acme: %s", e->acme_body ? err.text
                                                 : "out of memory");
            free(e->acme_body);
            e->acme_body = NULL;
            continue;
        }

        if (pg_curl.multi_add_handle(d->multi, e->acme_req.curl) != 0) {
            pg_edge_req_free(&e->acme_req);
            free(e->acme_body);
            e->acme_body = NULL;
            continue;
        }

        e->acme_busy = 1;
        d->chal_pending++;
    }

    free(body);

    if (d->chal_pending == 0) {
        pgd_challenges_settle(d);
    }
}


/* curl is done with req: 1 if it was a PUT challenges (handled), else 0. */
int
pgd_challenges_done(pgd_t *d, pg_edge_req_t *req, CURLcode code)
{
    long         status;
    size_t       i;
    json_t      *json;
    pgd_edge_t  *e;
    pg_error_t   err;

    e = NULL;

    for (i = 0; i < d->nedges; i++) {
        if (&d->edges[i].acme_req == req && d->edges[i].acme_busy) {
            e = &d->edges[i];
            break;
        }
    }

    if (e == NULL) {
        return 0;
    }

    pg_curl.multi_remove_handle(d->multi, req->curl);
    json = NULL;

    if (pg_edge_req_done(req, code, &status, &json, &err) != PG_OK) {
        /* said once: an edge that is down fails every round */
        /* said once; and not at all for an empty set (no token owed:
         * the edge's own failure is said by the snapshot's side) */
        pgd_log(d, e->acme_failing || strcmp(e->acme_body, "{}") == 0
                   ? PG_LOG_DEBUG : PG_LOG_WARN, "acme: "
                "edge %s did not take the challenge tokens: %s",
                e->edge.spec, err.text);
        d->chal_failed++;
        e->acme_failing = 1;
        d->chal_retry = 1;

    } else if ((status == 404 || status == 405)
               && strcmp(e->acme_body, "{}") == 0)
    {
        /* a module before portal_gate_acme_challenge, told that there is
         * no token: nothing lost, nothing to say again */
        pgd_log(d, PG_LOG_DEBUG, "acme: edge %s has no challenges "
                "resource (%ld)", e->edge.spec, status);

    } else if (status != 200) {
        /* 404, 405: an API without the resource, a module before it */
        pgd_log(d, e->acme_failing ? PG_LOG_DEBUG : PG_LOG_WARN, "acme: "
                "edge %s refused the challenge tokens: %ld %s%s",
                e->edge.spec, status,
                json && json_is_string(json_object_get(json, "error"))
                ? json_string_value(json_object_get(json, "error")) : "",
                status == 404 || status == 405
                ? " (is the module older than portal_gate_acme_challenge?)"
                : "");
        d->chal_failed++;
        e->acme_failing = 1;
        d->chal_retry = 1;

    } else {
        if (e->acme_failing) {
            pgd_log(d, PG_LOG_INFO, "acme: edge %s takes the challenge "
                    "tokens again", e->edge.spec);
            e->acme_failing = 0;
        }

        pgd_log(d, PG_LOG_DEBUG, "acme: edge %s holds %lld challenge tokens",
                e->edge.spec,
                (long long) json_integer_value(json_object_get(json,
                                                          "challenges")));
    }

    json_decref(json);
    free(e->acme_body);
    e->acme_body = NULL;
    e->acme_busy = 0;

    if (d->chal_pending > 0 && --d->chal_pending == 0) {
        pgd_challenges_round_end(d);
    }

    return 1;
}


/*
 * e goes (a reload changed the edges, or the daemon ends): its PUT with
 * it. The round is not settled by that: a worker waiting for it would
 * tell the CA to look before the new edges have the set; a new round
 * sends it to them, and settles.
 */
void
pgd_challenges_cancel(pgd_t *d, pgd_edge_t *e)
{
    if (!e->acme_busy) {
        return;
    }

    pg_curl.multi_remove_handle(d->multi, e->acme_req.curl);
    pg_edge_req_free(&e->acme_req);
    free(e->acme_body);
    e->acme_body = NULL;
    e->acme_busy = 0;

    if (d->chal_pending > 0 && --d->chal_pending == 0) {
        d->chal_wanted = 1;
        d->chal_round = 0;
    }
}


/*
 * Every edge of the round answered. While a worker waits for its token to
 * be out and an edge did not take it (an nginx that comes up just after
 * the daemon, as at a first start), the round is sent again shortly, until
 * all take it or the worker's wait runs out (one wait per order: an edge
 * that stays down costs an order 10 s, not 10 s per token); otherwise, and
 * once no worker waits, it is settled. An edge that is reachable again
 * gets the set then (pgd_edge_up()).
 */
static void
pgd_challenges_round_end(pgd_t *d)
{
    int  waiting;

    if (d->chal_failed > 0) {
        pthread_mutex_lock(&d->worker.lock);
        waiting = d->worker.chal_waiting != 0
                  && d->worker.chal_waiting > d->worker.chal_done;
        pthread_mutex_unlock(&d->worker.lock);

        if (waiting) {
            d->chal_again_at = pgd_now() + PGD_CHALLENGE_AGAIN_MS;
            return;
        }
    }

    pgd_challenges_settle(d);
}


/* The round is over: a worker waiting for it goes on. */
static void
pgd_challenges_settle(pgd_t *d)
{
    pthread_mutex_lock(&d->worker.lock);

    if (d->worker.chal_done < d->chal_round) {
        d->worker.chal_done = d->chal_round;
    }

    pthread_cond_broadcast(&d->worker.cond);
    pthread_mutex_unlock(&d->worker.lock);
}


/* Newest first, for the cap. */
static int
pgd_challenges_cmp(const void *a, const void *b)
{
    long long  x, y;

    x = ((const pgd_token_t *) a)->expires;
    y = ((const pgd_token_t *) b)->expires;

    return (x < y) - (x > y);
}


/*
 * The set in Redis as the body of PUT challenges: *body new, *count the
 * tokens in it. A value past its time is removed from Redis; one that is
 * not "EXPIRES KEY_AUTHORIZATION" is left out (the edge would refuse the
 * whole set for it); past PGD_CHALLENGES_MAX, the newest are kept.
 */
static int
pgd_challenges_read(pgd_t *d, char **body, int *count)
{
    char          key[PG_STORE_PREFIX_MAX + 32], *end;
    size_t        i, n, max;
    time_t        now;
    json_t       *set;
    long long     expires;
    redisReply   *r, *del;
    pgd_token_t  *tokens;

    snprintf(key, sizeof(key), "%s%s", d->conf.prefix, PG_STORE_KEY_CHALLENGES);

    r = redisCommand(d->cmd, "HGETALL %s", key);

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        pgd_log(d, PG_LOG_WARN, "acme: cannot read the challenge tokens "
                "from redis %s: %s", d->where,
                r ? (r->str ? r->str : "unexpected reply") : d->cmd->errstr);

        if (r == NULL) {
            pgd_redis_down(d, "reading the challenge tokens");
        }

        freeReplyObject(r);
        return PG_ERR;
    }

    now = time(NULL);
    n = 0;
    tokens = calloc(r->elements / 2 + 1, sizeof(pgd_token_t));

    for (i = 0; tokens != NULL && d->cmd != NULL && i + 1 < r->elements;
         i += 2)
    {
        if (r->element[i]->type != REDIS_REPLY_STRING
            || r->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        expires = strtoll(r->element[i + 1]->str, &end, 10);

        if (end == r->element[i + 1]->str || *end != ' ') {
            continue;
        }

        if (expires < now) {
            del = redisCommand(d->cmd, "HDEL %s %s", key,
                               r->element[i]->str);

            if (del == NULL) {
                pgd_redis_down(d, "removing a challenge token");

            } else if (!pgd_redis_moved(d, del)) {
                /* (a replica's answer: removed from the new master later) */
                pgd_log(d, PG_LOG_NOTICE, "acme: a challenge token no "
                        "order withdrew is past its time: removed");
            }

            freeReplyObject(del);
            continue;
        }

        tokens[n].token = r->element[i]->str;
        tokens[n].key_authorization = end + 1;
        tokens[n].expires = expires;
        n++;
    }

    max = n;

    if (n > PGD_CHALLENGES_MAX) {
        qsort(tokens, n, sizeof(pgd_token_t), pgd_challenges_cmp);
        max = PGD_CHALLENGES_MAX;
        pgd_log(d, PG_LOG_WARN, "acme: %zu challenge tokens are pending, "
                "an edge holds %d: the newest are sent", n,
                PGD_CHALLENGES_MAX);
    }

    set = tokens ? json_object() : NULL;

    for (i = 0; set != NULL && i < max; i++) {
        json_object_set_new(set, tokens[i].token,
                            json_string(tokens[i].key_authorization));
    }

    *body = set ? json_dumps(set, JSON_COMPACT) : NULL;
    *count = set ? (int) json_object_size(set) : 0;
    json_decref(set);
    free(tokens);
    freeReplyObject(r);

    if (*body == NULL) {
        pgd_log(d, PG_LOG_ERROR, "acme: out of memory");
        return PG_ERR;
    }

    return PG_OK;
}
