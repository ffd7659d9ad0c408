/*
 * pgd_edges.c: portal-gated's requests to its edges (see pgd.h).
 *
 * Every request to an edge is an easy handle in the daemon's curl multi
 * handle, one at a time per edge, so an edge that is slow, down, or
 * accepts connections and never answers holds back nothing but itself:
 *
 *   PUT snapshot    when the edge's revision is not the snapshot's;
 *   PATCH snapshot  instead, with the flags that changed, when the
 *                   snapshot was made from the change log (a delta) and
 *                   the edge is known to hold exactly what it took from
 *                   this daemon (pgd_patchable()); anything but a 200 and
 *                   it gets the PUT at once;
 *   GET status      once per reconcile tick (and after a reload);
 *   GET snapshot    the seed: only while the daemon has no snapshot of its
 *                   own yet (it just started) and what the edges hold
 *                   decides what it pushes (pgd_compose()'s *wanted): of
 *                   the edges that answer, the one at the highest revision
 *                   gives it (an edge that restarted empty, only if no
 *                   other answers), once all have answered or
 *                   PGD_SEED_WAIT_MS after the first; its flags that this
 *                   core refuses are dropped; the store is read again then.
 *
 * A failed request holds an edge back until the next tick or the next
 * snapshot, whichever comes first: one try per revision. A 503 (an old
 * nginx worker after a resizing reload) is tried again at once, once. An
 * edge that cannot hold the store's snapshot (507, 413) gets what it last
 * took with the store's kills applied, at the store's revision (own), and
 * is offered the whole snapshot again (?force=1) at each tick.
 *
 * An edge found at the first revision the daemon pushes after its start,
 * without having taken it from this daemon, is asked for its snapshot
 * (GET snapshot), once: if it holds another one for that revision (this
 * daemon's before a restart with other environments, or another
 * controller's), the store's revision is raised so that it takes this one;
 * if it holds the same, it may get the next change as a patch, as if it
 * had taken it from this daemon.
 *
 * A 409 from an edge ahead of the store is answered by raising the
 * store's revision above the edge's; an edge pinned so high that the
 * store could not go on from there (PGD_RAISE_MAX) gets the snapshot with
 * ?force=1 instead.
 *
 * GET status also lists the edge's kill overrides (the break-glass kill of
 * `portal-gatectl kill --direct`): they make the edge serve a flag off
 * whatever the store says, so the log says so, at warn, each time the
 * list changes (pgd_overrides()); the beat carries the list.
 */

#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* snprintf, vsnprintf */
#include <stdlib.h>             /* calloc, free */
#include <string.h>             /* strcmp, memcpy */
#include "pgd.h"                /* pgd_t, the API this file implements */
#include "pgd_http.h"           /* pgd_http_done: pushes counted */


static void pgd_start(pgd_t *d, pgd_edge_t *e, int kind, pgd_body_t *body,
    int force);
static void pgd_seed_check(pgd_t *d);
static json_t *pgd_seed_clean(pgd_t *d, pgd_edge_t *e, json_t *json);
static int pgd_seed_better(const json_t *a, const json_t *b);
static int pgd_partial(pgd_t *d, pgd_edge_t *e, long status,
    const char *error);
static void pgd_verified(pgd_t *d, pgd_edge_t *e, long status,
    json_t *json);
static int pgd_same_snapshot(const json_t *a, const json_t *b);
static void pgd_seeded(pgd_t *d, pgd_edge_t *e, long status, json_t *json);
static void pgd_edge_down(pgd_t *d, pgd_edge_t *e, const char *why);
static void pgd_edge_up(pgd_t *d, pgd_edge_t *e);
static void pgd_refused(pgd_t *d, pgd_edge_t *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pgd_raise(pgd_t *d, pgd_edge_t *e, int64_t above);
static void pgd_force(pgd_t *d, pgd_edge_t *e, int64_t theirs,
    int64_t pushed, int forced);
static void pgd_overrides(pgd_t *d, pgd_edge_t *e, const json_t *status);
static const char *pgd_in_store(pgd_t *d, const char *env,
    const char *flag);
static int pgd_patchable(pgd_t *d, pgd_edge_t *e);
static pgd_body_t *pgd_patch_for(pgd_t *d, pgd_edge_t *e);
static void pgd_patched(pgd_t *d, pgd_edge_t *e, long status, json_t *json,
    pgd_body_t *body);


void
pgd_body_release(pgd_body_t *body)
{
    if (body != NULL && --body->refs == 0) {
        free(body->data);
        json_decref(body->json);
        json_decref(body->from);
        free(body);
    }
}


/* A whole snapshot's text, made the first time a PUT needs it; NULL when
 * out of memory. */
const char *
pgd_body_text(pgd_body_t *body)
{
    if (body->data == NULL) {
        body->data = json_dumps(body->json, JSON_COMPACT | PG_JSON_REAL);
        body->len = body->data ? strlen(body->data) : 0;
    }

    return body->data;
}


/* What the daemon holds of an edge, request in flight included: freed. */
void
pgd_edge_forget(pgd_edge_t *e)
{
    json_decref(e->overrides);
    json_decref(e->accepted);
    pgd_body_release(e->own);
    e->overrides = NULL;
    e->accepted = NULL;
    e->own = NULL;
}


/* The edges of the config, none of them known yet. */
int
pgd_edges_set(pgd_t *d)
{
    size_t  i;

    d->edges = calloc(d->conf.nedges, sizeof(pgd_edge_t));
    if (d->edges == NULL) {
        d->nedges = 0;
        return PG_ERR;
    }

    d->nedges = d->conf.nedges;

    for (i = 0; i < d->nedges; i++) {
        d->edges[i].edge = d->conf.edges[i];
        d->edges[i].revision = -1;
        d->edges[i].retried = -1;
        d->edges[i].partial = -1;
        d->edges[i].verified = -1;
        d->edges[i].check = 1;
    }

    return PG_OK;
}


void
pgd_edges_free(pgd_t *d)
{
    size_t  i;

    for (i = 0; i < d->nedges; i++) {
        pgd_cancel(d, &d->edges[i]);
        pgd_edge_forget(&d->edges[i]);
    }

    free(d->edges);
    d->edges = NULL;
    d->nedges = 0;
}


/* Start what an idle edge needs: the seed, the snapshot, or a look at its
 * revision. */
void
pgd_kick(pgd_t *d)
{
    size_t       i;
    pgd_body_t  *body;
    pgd_edge_t  *e;

    for (i = 0; i < d->nedges; i++) {
        e = &d->edges[i];

        if (e->kind != PGD_REQ_NONE) {
            continue;
        }

        /* asked once per seeding, held or not: it costs nothing to wait */
        if (d->seed_state == PGD_SEED_ASKING && !e->seed_asked) {
            e->seed_asked = 1;
            pgd_start(d, e, PGD_REQ_SEED, NULL, 0);
            continue;
        }

        /* at the first revision since the start, not from this daemon: is
         * what it holds this daemon's snapshot? (held or not: a 409 holds) */
        if (d->body && d->verify == d->body->revision && e->own == NULL
            && e->revision == d->verify && e->verified != d->verify)
        {
            e->verified = d->verify;        /* asked once */
            pgd_start(d, e, PGD_REQ_VERIFY, NULL, 0);
            continue;
        }

        if (e->held) {
            continue;
        }

        /* what it could not hold was another snapshot: the whole first */
        if (e->own && (d->body == NULL
                       || e->own->revision != d->body->revision))
        {
            pgd_body_release(e->own);
            e->own = NULL;
        }

        body = e->own ? e->own : d->body;

        if (body && e->revision != body->revision) {
            if (body == d->body && pgd_patchable(d, e)
                && (body = pgd_patch_for(d, e)) != NULL)
            {
                pgd_start(d, e, PGD_REQ_PATCH, body, 0);
                continue;
            }

            body = e->own ? e->own : d->body;
            pgd_start(d, e, PGD_REQ_PUT, body, e->force);

        } else if (body && e->check && e->partial == d->body->revision) {
            /* it holds the kills only: offer the whole again, over them */
            pgd_start(d, e, PGD_REQ_PUT, d->body, 1);

        } else if (e->check) {
            pgd_start(d, e, PGD_REQ_STATUS, NULL, 0);
        }
    }

    pgd_seed_check(d);
}


/* Start a request of e; a PUT sends body (borrowed: the request takes a
 * reference), with ?force=1 when force is set. */
static void
pgd_start(pgd_t *d, pgd_edge_t *e, int kind, pgd_body_t *body, int force)
{
    int         rc;
    char        status[64];
    pg_error_t  err;

    if (kind == PGD_REQ_PUT && pgd_body_text(body) == NULL) {
        snprintf(err.text, sizeof(err.text), "out of memory for revision "
                 "%lld", (long long) body->revision);
        rc = PG_ERR;

    } else if (kind == PGD_REQ_PUT) {
        rc = pg_edge_req_init(&e->req, &e->edge, "PUT",
                              force ? "snapshot?force=1" : "snapshot",
                              body->data, body->len,
                              PGD_PUT_TIMEOUT_MS, &err);

    } else if (kind == PGD_REQ_PATCH) {
        rc = pg_edge_req_init(&e->req, &e->edge, "PATCH", "snapshot",
                              body->data, body->len,
                              PGD_PUT_TIMEOUT_MS, &err);

    } else if (kind == PGD_REQ_SEED || kind == PGD_REQ_VERIFY) {
        rc = pg_edge_req_init(&e->req, &e->edge, "GET", "snapshot", NULL, 0,
                              PGD_SEED_TIMEOUT_MS, &err);

    } else {
        /* the reconcile says at which revision the store is, while it is
         * read: an edge holding it counts itself confirmed in step (an old
         * edge ignores the argument) */
        snprintf(status, sizeof(status), "status?in_step=%lld",
                 (d->body && d->redis_state == PGD_UP)
                 ? (long long) d->body->revision : 0LL);

        rc = pg_edge_req_init(&e->req, &e->edge, "GET", status, NULL, 0,
                              PGD_STATUS_TIMEOUT_MS, &err);
    }

    if (rc != PG_OK || pg_curl.multi_add_handle(d->multi, e->req.curl) != 0) {
        if (rc == PG_OK) {
            pg_edge_req_free(&e->req);
            snprintf(err.text, sizeof(err.text), "edge %.128s: cannot start "
                     "a request", e->edge.spec);
        }

        pgd_log(d, PG_LOG_ERROR, "%s", err.text);
        e->held = 1;
        return;
    }

    e->kind = kind;
    e->started = pgd_now();

    if (kind != PGD_REQ_SEED && kind != PGD_REQ_VERIFY) {
        e->check = 0;
    }

    if (kind == PGD_REQ_PUT || kind == PGD_REQ_PATCH) {
        e->body = body;
        e->body->refs++;
        e->forcing = force;
    }
}


void
pgd_cancel(pgd_t *d, pgd_edge_t *e)
{
    pgd_challenges_cancel(d, e);

    if (e->kind == PGD_REQ_NONE) {
        return;
    }

    pg_curl.multi_remove_handle(d->multi, e->req.curl);
    pg_edge_req_free(&e->req);
    pgd_body_release(e->body);
    e->body = NULL;
    e->kind = PGD_REQ_NONE;
}


/* --- the seed ----------------------------------------------------------- */

/* What the edges hold is wanted: ask each of them (pgd_kick() sends). */
void
pgd_seed_ask(pgd_t *d)
{
    size_t  i;

    if (d->seed_state != PGD_SEED_NONE) {
        return;
    }

    d->seed_state = PGD_SEED_ASKING;
    d->seed_until = 0;
    d->seed_from[0] = '\0';
    json_decref(d->seed);
    d->seed = NULL;

    for (i = 0; i < d->nedges; i++) {
        d->edges[i].seed_asked = 0;
    }

    pgd_log(d, PG_LOG_INFO, "no snapshot of its own yet: asking the edges "
            "what they hold, for the last good versions of the flags that "
            "cannot be pushed as the store has them");
}


/*
 * Settle the seed once every edge asked has answered, or PGD_SEED_WAIT_MS
 * after the first usable answer (a hung edge must not keep the others'
 * answers waiting): the best answer so far is the seed, or none.
 */
static void
pgd_seed_check(pgd_t *d)
{
    int     waiting;
    size_t  i;

    if (d->seed_state != PGD_SEED_ASKING) {
        return;
    }

    waiting = 0;

    for (i = 0; i < d->nedges; i++) {
        if (!d->edges[i].seed_asked || d->edges[i].kind == PGD_REQ_SEED) {
            waiting = 1;
        }
    }

    if (waiting && (d->seed == NULL || pgd_now() < d->seed_until)) {
        return;
    }

    if (d->seed == NULL) {
        pgd_log(d, PG_LOG_WARN, "no edge gave its snapshot: flags that "
                "cannot be pushed as the store has them are left out");
    } else {
        pgd_log(d, PG_LOG_INFO, "edge %s holds revision %lld: its flags are "
                "the last good versions", d->seed_from,
                (long long) json_integer_value(json_object_get(d->seed,
                                                               "revision")));
    }

    d->seed_state = PGD_SEED_SETTLED;
    d->load_wanted = 1;
}


/* Is snapshot a better seed than b (NULL: none)? A snapshot with flags
 * before an empty one (an edge that restarted empty), then the higher
 * revision. */
static int
pgd_seed_better(const json_t *a, const json_t *b)
{
    int            fa, fb;
    json_t        *flags;
    const char    *env;

    if (b == NULL) {
        return 1;
    }

    fa = 0;
    fb = 0;

    json_object_foreach(json_object_get(a, "environments"), env, flags) {
        fa |= json_object_size(flags) > 0;
    }

    json_object_foreach(json_object_get(b, "environments"), env, flags) {
        fb |= json_object_size(flags) > 0;
    }

    if (fa != fb) {
        return fa > fb;
    }

    return json_integer_value(json_object_get(a, "revision"))
           > json_integer_value(json_object_get(b, "revision"));
}


/*
 * json (an edge's snapshot, taken) without what this core refuses: an
 * environment whose name no edge takes, a flag not valid on its own (a
 * newer module's key, a broken or hostile endpoint), said once per edge
 * and seeding. Restoring such a flag would make nothing compile. Returns
 * json.
 */
static json_t *
pgd_seed_clean(pgd_t *d, pgd_edge_t *e, json_t *json)
{
    char          dropped[400];
    void         *tmp, *tmp2;
    size_t        n, len;
    json_t       *envs, *flags, *flag;
    pg_error_t    err;
    const char   *env, *name;

    envs = json_object_get(json, "environments");
    n = 0;
    len = 0;
    dropped[0] = '\0';

    json_object_foreach_safe(envs, tmp, env, flags) {
        if (!pg_valid_name(env, strlen(env)) || !json_is_object(flags)) {
            json_object_del(envs, env);
            n++;
            continue;
        }

        json_object_foreach_safe(flags, tmp2, name, flag) {
            if (pg_flag_check_json(name, flag, &err) == PG_OK) {
                continue;
            }

            if (len < sizeof(dropped)) {
                len += (size_t) snprintf(dropped + len, sizeof(dropped) - len,
                                         "%s%.64s/%.64s (%.100s)",
                                         len ? ", " : "", env, name,
                                         err.text);
            }

            json_object_del(flags, name);
            n++;
        }
    }

    if (n > 0) {
        pgd_log(d, PG_LOG_WARN, "edge %s serves %zu flag%s or environment%s "
                "that this daemon refuses, not taken as last good versions: "
                "%s", e->edge.spec, n, n == 1 ? "" : "s", n == 1 ? "" : "s",
                dropped[0] ? dropped : "environments with a bad name");
    }

    return json;
}


/* An edge answered GET snapshot: the best answer is the seed (see
 * pgd_seed_check()). json is a new reference, taken. */
static void
pgd_seeded(pgd_t *d, pgd_edge_t *e, long status, json_t *json)
{
    json_t  *rev;

    pgd_edge_up(d, e);
    rev = json_object_get(json, "revision");

    if (status != 200 || !json_is_integer(rev)
        || !json_is_object(json_object_get(json, "environments")))
    {
        pgd_log(d, PG_LOG_DEBUG, "edge %s: GET snapshot answered %ld, not "
                "a snapshot", e->edge.spec, status);
        json_decref(json);
        return;
    }

    e->revision = json_integer_value(rev);

    if (d->seed_state != PGD_SEED_ASKING) {
        json_decref(json);
        return;
    }

    json = pgd_seed_clean(d, e, json);

    if (!pgd_seed_better(json, d->seed)) {
        json_decref(json);
        return;
    }

    if (d->seed == NULL) {
        d->seed_until = pgd_now() + PGD_SEED_WAIT_MS;
    }

    pgd_log(d, PG_LOG_DEBUG, "edge %s holds revision %lld: the best seed so "
            "far", e->edge.spec, (long long) e->revision);

    json_decref(d->seed);
    d->seed = json;
    snprintf(d->seed_from, sizeof(d->seed_from), "%s", e->edge.spec);
}


/* --- answers ------------------------------------------------------------ */

/* A request of e has ended: what did the edge say? */
void
pgd_done(pgd_t *d, pgd_edge_t *e, CURLcode code)
{
    int          kind, forced;
    long         status;
    json_t      *json, *rev, *error;
    int64_t      pushed, theirs;
    pg_error_t   err;
    pgd_body_t  *body;

    pgd_http_done(d, e, code);          /* counted before it is read */

    kind = e->kind;
    body = e->body;
    forced = e->forcing;
    pushed = body ? body->revision : -1;

    pg_curl.multi_remove_handle(d->multi, e->req.curl);
    e->kind = PGD_REQ_NONE;
    e->body = NULL;
    e->forcing = 0;

    if (pg_edge_req_done(&e->req, code, &status, &json, &err) != PG_OK) {
        pgd_body_release(body);
        pgd_edge_down(d, e, err.text);
        pgd_seed_check(d);
        return;
    }

    if (kind == PGD_REQ_SEED) {
        pgd_seeded(d, e, status, json);
        pgd_seed_check(d);
        return;
    }

    if (kind == PGD_REQ_VERIFY) {
        pgd_verified(d, e, status, json);
        return;
    }

    if (kind == PGD_REQ_PATCH) {
        pgd_patched(d, e, status, json, body);
        return;
    }

    rev = json_object_get(json, "revision");
    error = json_object_get(json, "error");
    theirs = json_is_integer(rev) ? json_integer_value(rev) : -1;

    if (kind == PGD_REQ_PUT && status == 200) {
        pgd_edge_up(d, e);
        e->revision = pushed;
        e->verified = pushed;
        e->force = 0;
        json_decref(e->accepted);
        e->accepted = json_incref(body->json);
        e->patch_ok = body != e->own;

        if (body == e->own) {
            /* it took the kills: its refusal of the whole still stands */
            e->partial = pushed;
        } else {
            e->partial = -1;
            e->said[0] = '\0';
            e->error[0] = '\0';
            pgd_body_release(e->own);
            e->own = NULL;
        }

        pgd_log(d, PG_LOG_INFO, "edge %s: revision %lld applied in %.1f ms%s",
                e->edge.spec, (long long) pushed, pgd_now() - e->started,
                e->partial == pushed ? " (only the store's kills over what "
                "it held)" : forced ? " (forced)" : "");

    } else if ((kind == PGD_REQ_PUT && status == 409 && theirs >= 0)
               || (kind == PGD_REQ_STATUS && status == 200 && theirs >= 0))
    {
        /* 409: the edge has this revision or a newer one already */
        pgd_edge_up(d, e);
        e->revision = theirs;

        /* a patch goes only to an edge still at what it took from us */
        if (e->accepted == NULL
            || theirs != json_integer_value(json_object_get(e->accepted,
                                                            "revision")))
        {
            e->patch_ok = 0;
        }

        if (d->body != NULL && theirs == d->body->revision) {
            e->error[0] = '\0';        /* in step: nothing stands */
        }

        if (kind == PGD_REQ_STATUS) {
            pgd_overrides(d, e, json);
        }

        if (kind == PGD_REQ_PUT && theirs > pushed && theirs > PGD_RAISE_MAX
            && d->store_revision != 0)
        {
            pgd_force(d, e, theirs, pushed, forced);

        } else if (kind == PGD_REQ_PUT && theirs != pushed) {
            if (theirs > pushed) {
                pgd_raise(d, e, theirs);
            }

            /* not pushed again until there is another snapshot to push */
            if (d->body == NULL || d->body->revision == pushed) {
                e->held = 1;
            }
        }

    } else if (kind == PGD_REQ_PUT && status == 503 && e->retried != pushed) {
        /* an old worker after a resizing reload: a new one takes it */
        pgd_edge_up(d, e);
        pgd_log(d, PG_LOG_INFO, "edge %s: PUT snapshot answered 503 (%.96s): "
                "tried again at once", e->edge.spec, json_is_string(error)
                ? json_string_value(error) : "not the API's JSON");
        e->retried = pushed;
        e->revision = -1;
        e->patch_ok = 0;

    } else if (kind == PGD_REQ_PUT && (status == 507 || status == 413)
               && body != e->own
               && pgd_partial(d, e, status, json_string_value(error))
                  == PG_OK)
    {
        pgd_edge_up(d, e);

    } else {
        pgd_edge_up(d, e);
        pgd_refused(d, e, "edge %.100s: %s answered %ld: %.96s", e->edge.spec,
                    kind == PGD_REQ_PUT ? (forced ? "PUT snapshot?force=1"
                                                  : "PUT snapshot")
                                        : "GET status",
                    status, json_is_string(error) ? json_string_value(error)
                                                  : "not the API's JSON");
        e->revision = -1;
        e->held = 1;
        e->patch_ok = 0;
    }

    json_decref(json);
    pgd_body_release(body);
}


static void
pgd_edge_down(pgd_t *d, pgd_edge_t *e, const char *why)
{
    snprintf(e->error, sizeof(e->error), "%s", why);

    if (e->state != PGD_DOWN) {
        pgd_log(d, PG_LOG_WARN, "%s; it keeps what it has, and is tried "
                "again every %ld ms", why, d->conf.reconcile_ms);
        e->state = PGD_DOWN;
    }

    e->revision = -1;
    e->held = 1;
    e->patch_ok = 0;        /* it may have restarted: the whole, first */
}


static void
pgd_edge_up(pgd_t *d, pgd_edge_t *e)
{
    if (e->state == PGD_DOWN) {
        pgd_log(d, PG_LOG_NOTICE, "edge %s: reachable again", e->edge.spec);
        e->error[0] = '\0';
    }

    /* the challenge tokens it did not take: sent again now */
    if (e->acme_failing) {
        d->chal_wanted = 1;
    }

    e->state = PGD_UP;
}


/* Why an edge does not take the snapshot: said once per reason, as it is
 * tried again every tick. */
static void
pgd_refused(pgd_t *d, pgd_edge_t *e, const char *fmt, ...)
{
    char     msg[sizeof(e->said)];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    memcpy(e->error, msg, sizeof(e->error));

    if (strcmp(msg, e->said) != 0) {
        pgd_log(d, PG_LOG_ERROR, "%s", msg);
        memcpy(e->said, msg, sizeof(e->said));
    }
}


/*
 * An edge is at a revision above the store's: the store was restored from
 * an older backup. Raise the store's revision above the edge's, so that
 * the next push wins, and read it again.
 */
static void
pgd_raise(pgd_t *d, pgd_edge_t *e, int64_t above)
{
    char     reason[700];
    int64_t  now;

    /* the store is ahead already: the next push wins */
    if (d->cmd == NULL || d->store_state != PGD_STORE_OK
        || d->store_revision > above)
    {
        return;
    }

    /*
     * Revision 0 is a store that was never written to: `init` after Redis
     * lost its data, not an older backup. Raising would empty the edges.
     */
    if (d->store_revision == 0) {
        pgd_refused(d, e, "the store at %s was initialised empty (revision "
                    "0) but edge %s holds revision %lld: the edges are not "
                    "emptied. To rebuild the store from them, run "
                    "`portal-gatectl init --from-edge URL`", d->where,
                    e->edge.spec, (long long) above);
        return;
    }

    snprintf(reason, sizeof(reason), "edge %s was at revision %lld, above "
             "the store's %lld", e->edge.spec, (long long) above,
             (long long) d->store_revision);

    if (pg_store_raise_revision(&d->store, above, PGD_ACTOR, reason, &now)
        != PG_OK)
    {
        if (d->store.code == PG_STORE_EREDIS) {
            pgd_redis_store_failed(d);
        } else {
            pgd_refused(d, e, "cannot raise the store's revision above edge "
                        "%s's %lld: %s", e->edge.spec, (long long) above,
                        d->store.err.text);
        }
        return;
    }

    e->said[0] = '\0';

    pgd_log(d, PG_LOG_WARN, "edge %s is at revision %lld, above the store's "
            "%lld (a store restored from an older backup?): raised the "
            "store's revision to %lld, so the edges take what the store "
            "holds", e->edge.spec, (long long) above,
            (long long) d->store_revision, (long long) now);

    pgd_load(d);
}


/*
 * An edge answered 409 with a revision so high that the store's cannot be
 * raised above it and still take writes: the edge was pinned (a PUT of a
 * huge revision, or a state file from before revisions were bounded), and
 * would ignore every change, a kill included, for good. Push what the
 * store holds with ?force=1, which replaces the snapshot whatever its
 * revision. forced: this 409 answered a forced PUT already.
 */
static void
pgd_force(pgd_t *d, pgd_edge_t *e, int64_t theirs, int64_t pushed,
    int forced)
{
    if (forced) {
        pgd_refused(d, e, "edge %s is pinned at revision %lld and refused "
                    "PUT snapshot?force=1 too (an nginx module from before "
                    "?force=1?): it ignores the store's revision %lld and "
                    "every change until it is cleared", e->edge.spec,
                    (long long) theirs, (long long) pushed);
        e->held = 1;
        return;
    }

    pgd_log(d, PG_LOG_WARN, "edge %s is at revision %lld, which the store's "
            "revision %lld cannot be raised above (at most %lld: the store "
            "would have no revisions left to write with): pushing revision "
            "%lld to it with ?force=1", e->edge.spec, (long long) theirs,
            (long long) pushed, (long long) PGD_RAISE_MAX, (long long) pushed);

    e->force = 1;
    e->held = 0;
}


/* --- is what an edge holds at the revision this daemon's? ----------------- */

/*
 * e answered GET snapshot (status; json taken) while it was at d->verify,
 * the first revision pushed since the start, not from this daemon. The
 * same snapshot compiles to the same blob, whatever the edge adds to its
 * JSON; another one means the edge holds another snapshot for this
 * revision, which it would keep (409 "in step"): raise the store's
 * revision above it, once, and read the store again.
 */
static void
pgd_verified(pgd_t *d, pgd_edge_t *e, long status, json_t *json)
{
    int       same;
    char      reason[700];
    int64_t   rev, now;

    pgd_edge_up(d, e);
    rev = json_integer_value(json_object_get(json, "revision"));

    if (status != 200 || d->body == NULL || d->verify != d->body->revision
        || rev != d->body->revision)
    {
        /* it moved on, or so did the store: nothing to compare */
        json_decref(json);
        return;
    }

    same = pgd_same_snapshot(json, d->body->json);
    json_decref(json);

    if (same) {
        /*
         * It holds what a PUT of this snapshot would have left: the same
         * blob, metadata included. A patch from this snapshot applies to
         * it as to one it took, so the first change after a restart of
         * the daemon need not be a whole PUT; everything that clears
         * patch_ok after a PUT (a failure, another revision) clears it
         * from here on too.
         */
        e->verified = rev;
        json_decref(e->accepted);
        e->accepted = json_incref(d->body->json);
        e->patch_ok = 1;
        pgd_log(d, PG_LOG_INFO, "edge %s holds this daemon's snapshot of "
                "revision %lld: the next change may go as a patch",
                e->edge.spec, (long long) rev);
        return;
    }

    d->verify = -1;
    snprintf(reason, sizeof(reason), "edge %s held another snapshot for "
             "revision %lld than portal-gated's", e->edge.spec,
             (long long) rev);

    if (d->cmd == NULL || rev >= PGD_RAISE_MAX
        || pg_store_raise_revision(&d->store, rev, PGD_ACTOR, reason, &now)
           != PG_OK)
    {
        pgd_log(d, PG_LOG_ERROR, "edge %s holds another snapshot for "
                "revision %lld than this daemon's, and the store's revision "
                "cannot be raised (%s): it keeps it until the next change",
                e->edge.spec, (long long) rev,
                d->cmd ? d->store.err.text : "no redis");
        return;
    }

    pgd_log(d, PG_LOG_WARN, "edge %s holds another snapshot for revision "
            "%lld than this daemon's (pushed before a restart with another "
            "config, or by another controller): raised the store's revision "
            "to %lld, so that the edges take this one", e->edge.spec,
            (long long) rev, (long long) now);

    pgd_load(d);
}


/*
 * Do snapshots a and b (borrowed) gate alike? The same compiles to the
 * same blob, whatever an edge adds to its JSON (defaults, metadata); an
 * environment without flags is left out of both first: it gates as one
 * that is not there (a store rebuilt from an edge with `init --from-edge`
 * has the config's environments besides the edge's).
 */
static int
pgd_same_snapshot(const json_t *a, const json_t *b)
{
    int              same, i;
    void            *tmp;
    size_t           size[2];
    json_t          *copy[2], *envs, *flags;
    pg_error_t       err;
    const char      *env;
    const json_t    *from[2];
    unsigned char   *blob[2];

    from[0] = a;
    from[1] = b;
    same = 1;

    for (i = 0; i < 2; i++) {
        blob[i] = NULL;
        copy[i] = json_copy((json_t *) from[i]);
        envs = json_copy(json_object_get(from[i], "environments"));

        if (copy[i] == NULL || envs == NULL) {
            json_decref(envs);
            same = 0;
            continue;
        }

        /* the copy owns envs from here, set or not */
        if (json_object_set_new(copy[i], "environments", envs) != 0) {
            same = 0;
            continue;
        }

        json_object_foreach_safe(envs, tmp, env, flags) {
            if (json_object_size(flags) == 0) {
                json_object_del(envs, env);
            }
        }

        if (pg_snap_compile_json(copy[i], &blob[i], &size[i], &err)
            != PG_OK)
        {
            same = 0;
        }
    }

    same = same && size[0] == size[1]
           && memcmp(blob[0], blob[1], size[0]) == 0;

    for (i = 0; i < 2; i++) {
        free(blob[i]);
        json_decref(copy[i]);
    }

    return same;
}


/* --- an edge that cannot hold the store's snapshot ------------------------ */

/*
 * e refused d->body with 507 (its zone is too small) or 413 (its body
 * limit): make e->own, what it last took with the store's kills applied,
 * at the store's revision, so that a kill still reaches it; said once per
 * reason. PG_ERR when there is nothing to offer (it never took a snapshot
 * from this daemon, or it holds that already): the refusal stands.
 */
static int
pgd_partial(pgd_t *d, pgd_edge_t *e, long status, const char *error)
{
    char            *text;
    size_t           size;
    json_t          *snap;
    pg_error_t       err;
    pgd_body_t      *own;
    unsigned char   *blob;

    if (d->body == NULL || e->accepted == NULL) {
        return PG_ERR;
    }

    snap = pgd_kills_only(d->body->json, NULL, e->accepted);

    if (snap == NULL
        || pg_snap_compile_json(snap, &blob, &size, &err) != PG_OK)
    {
        json_decref(snap);
        return PG_ERR;
    }

    free(blob);

    /* it took exactly that at this revision already: nothing new */
    if (e->partial == d->body->revision) {
        json_object_set_new(snap, "revision", json_integer(e->partial));

        if (json_equal(snap, e->accepted)) {
            json_decref(snap);
            e->held = 1;
            return PG_OK;
        }
    }

    text = json_dumps(snap, JSON_COMPACT | PG_JSON_REAL);
    own = calloc(1, sizeof(pgd_body_t));

    if (text == NULL || own == NULL) {
        free(text);
        free(own);
        json_decref(snap);
        return PG_ERR;
    }

    own->refs = 1;
    own->revision = d->body->revision;
    own->data = text;
    own->len = strlen(text);
    own->json = snap;
    own->base = -1;

    pgd_body_release(e->own);
    e->own = own;
    e->revision = -1;
    e->patch_ok = 0;

    pgd_refused(d, e, "edge %.100s: PUT snapshot answered %ld: %.96s; it "
                "gets only the store's kills over what it holds, at the "
                "store's revision, until it can hold the store's snapshot",
                e->edge.spec, status, error ? error : "not the API's JSON");

    return PG_OK;
}


/* --- kill overrides ----------------------------------------------------- */

/*
 * The edge answered GET status (status, borrowed): keep the kill overrides
 * it lists as [{"env", "flag"}], and say so when they changed: at warn
 * while it holds any (it serves those flags off, whatever the store says),
 * at notice once it holds none again. An edge whose status has no
 * "overrides" (a module from before them) is left as it was.
 */
static void
pgd_overrides(pgd_t *d, pgd_edge_t *e, const json_t *status)
{
    char          list[700];
    size_t        i, len;
    json_t       *given, *o, *now;
    const char   *env, *flag, *by, *reason;

    given = json_object_get(status, "overrides");

    if (!json_is_array(given)) {
        return;
    }

    now = json_array();
    if (now == NULL) {
        return;
    }

    list[0] = '\0';
    len = 0;

    json_array_foreach(given, i, o) {
        env = json_string_value(json_object_get(o, "env"));
        flag = json_string_value(json_object_get(o, "flag"));

        if (env == NULL || flag == NULL
            || json_array_append_new(now, json_pack("{s:s,s:s}", "env", env,
                                                    "flag", flag)) != 0)
        {
            continue;
        }

        by = json_string_value(json_object_get(o, "by"));
        reason = json_string_value(json_object_get(o, "reason"));

        if (len < sizeof(list)) {
            len += (size_t) snprintf(list + len, sizeof(list) - len,
                                     "%s%.64s/%.64s (%s; by %.32s%s%.64s%s)",
                                     len ? ", " : "", env, flag,
                                     pgd_in_store(d, env, flag),
                                     by && by[0] ? by : "?",
                                     reason && reason[0] ? ": \"" : "",
                                     reason ? reason : "",
                                     reason && reason[0] ? "\"" : "");
        }
    }

    if (e->overrides == NULL ? json_array_size(now) == 0
                             : json_equal(e->overrides, now))
    {
        json_decref(e->overrides);
        e->overrides = now;
        return;
    }

    if (json_array_size(now) > 0) {
        pgd_log(d, PG_LOG_WARN, "edge %s holds %zu kill override%s: %s; it "
                "serves %s off whatever the store says, until `portal-gatectl "
                "release FLAG`", e->edge.spec, json_array_size(now),
                json_array_size(now) == 1 ? "" : "s", list,
                json_array_size(now) == 1 ? "that flag" : "those flags");
    } else {
        pgd_log(d, PG_LOG_NOTICE, "edge %s holds no kill overrides any more: "
                "it serves what the store says", e->edge.spec);
    }

    json_decref(e->overrides);
    e->overrides = now;
}


/* What the snapshot the edges get says of flag, for the log. Static. */
static const char *
pgd_in_store(pgd_t *d, const char *env, const char *flag)
{
    json_t  *f;

    if (d->good == NULL) {
        return "the store not read yet";
    }

    f = json_object_get(json_object_get(json_object_get(d->good,
                            "environments"), env), flag);

    if (f == NULL) {
        return "not in the store";
    }

    return json_is_false(json_object_get(f, "enabled"))
           ? "off in the store too" : "on in the store";
}


/* --- patches ------------------------------------------------------------ */

/*
 * May e get a patch to d->body rather than the whole? Only when d->body
 * was made from the change log (a delta: after a whole read, every edge
 * gets the whole) and e is known to hold exactly e->accepted: it took it
 * from this daemon (200), has answered every request since (a failure, a
 * restart, a refusal, another revision in its status clear patch_ok), and
 * is still at its revision; not an edge that holds the store's kills only
 * (own, partial), nor one pinned (force), nor one that refused a PATCH
 * lately. The edge checks the base itself (409), so an edge that moved
 * since its last answer costs a round trip, never a wrong snapshot.
 */
static int
pgd_patchable(pgd_t *d, pgd_edge_t *e)
{
    return d->body->delta && e->patch_ok && e->accepted != NULL
           && e->own == NULL && e->partial == -1 && !e->force
           && e->revision < d->body->revision
           && e->revision == json_integer_value(json_object_get(e->accepted,
                                                                "revision"))
           && pgd_now() >= e->patch_again;
}


/*
 * The patch from what e holds (e->accepted) to d->body: d->patch when it
 * is that one (the edges that took the same snapshot share one), else a
 * new one, kept in d->patch. Borrowed; NULL when no patch says it (an
 * environment gone), or out of memory: the whole goes then. A patch is
 * checked to make, applied as the edge applies it (pg_snap_patch_json()),
 * exactly the daemon's snapshot, or it does not go.
 */
static pgd_body_t *
pgd_patch_for(pgd_t *d, pgd_edge_t *e)
{
    char         *text;
    size_t        nflags;
    json_t       *envs, *doc, *result;
    pg_error_t    err;
    pgd_body_t   *patch;

    patch = d->patch;

    if (patch != NULL && patch->from == e->accepted
        && patch->json == d->body->json)
    {
        return patch;
    }

    envs = pgd_patch_of(e->accepted, d->body->json, &nflags);

    if (envs == NULL) {
        pgd_log(d, PG_LOG_DEBUG, "edge %s: no patch from revision %lld to "
                "%lld (an environment is gone): the whole goes",
                e->edge.spec, (long long) e->revision,
                (long long) d->body->revision);
        return NULL;
    }

    doc = json_pack("{s:I,s:I,s:o}", "base_revision",
                    (json_int_t) e->revision, "revision",
                    (json_int_t) d->body->revision, "environments", envs);
    result = NULL;

    if (doc == NULL
        || pg_snap_patch_json(e->accepted, doc, &result, &err) != PG_OK
        || !json_equal(result, d->body->json))
    {
        pgd_log(d, PG_LOG_ERROR, "edge %s: the patch from revision %lld to "
                "%lld does not make the daemon's snapshot (%s): the whole "
                "goes", e->edge.spec, (long long) e->revision,
                (long long) d->body->revision,
                doc == NULL ? "out of memory"
                : result == NULL ? err.text : "another document");
        json_decref(doc);
        json_decref(result);
        return NULL;
    }

    json_decref(result);
    text = json_dumps(doc, JSON_COMPACT | PG_JSON_REAL);
    json_decref(doc);
    patch = calloc(1, sizeof(pgd_body_t));

    if (text == NULL || patch == NULL) {
        free(text);
        free(patch);
        return NULL;
    }

    patch->refs = 1;
    patch->revision = d->body->revision;
    patch->data = text;
    patch->len = strlen(text);
    patch->json = json_incref(d->body->json);
    patch->base = e->revision;
    patch->from = json_incref(e->accepted);
    patch->nflags = nflags;

    pgd_body_release(d->patch);
    d->patch = patch;

    return patch;
}


/*
 * e answered PATCH snapshot (status; json and body taken). 200: it holds
 * the patch's snapshot, as after a PUT. Anything else changed nothing on
 * the edge (a patch never half-applies): it gets the whole at once, by
 * the PUT's rules (409s, 503, 507...). One that does not take PATCH at all
 * (405, 501: a module from before it; 400) gets PUTs for
 * PGD_PATCH_AGAIN_MS, then a patch is tried again (it may be upgraded).
 */
static void
pgd_patched(pgd_t *d, pgd_edge_t *e, long status, json_t *json,
    pgd_body_t *body)
{
    json_t       *rev, *error;
    const char   *why;

    pgd_edge_up(d, e);
    rev = json_object_get(json, "revision");
    error = json_object_get(json, "error");
    why = json_is_string(error) ? json_string_value(error)
                                : "not the API's JSON";

    if (status == 200) {
        e->revision = body->revision;
        e->verified = body->revision;
        e->force = 0;
        e->partial = -1;
        e->patch_ok = 1;
        e->said[0] = '\0';
        e->error[0] = '\0';
        json_decref(e->accepted);
        e->accepted = json_incref(body->json);

        /* "applied", as after a PUT: what the log's readers look for */
        pgd_log(d, PG_LOG_INFO, "edge %s: revision %lld applied in %.1f ms "
                "(patched: %zu flag%s from revision %lld)", e->edge.spec,
                (long long) body->revision, pgd_now() - e->started,
                body->nflags, body->nflags == 1 ? "" : "s",
                (long long) body->base);

    } else if (status == 409 && json_is_integer(rev)) {
        e->patch_ok = 0;
        e->revision = json_integer_value(rev);

        pgd_log(d, PG_LOG_INFO, "edge %s: PATCH snapshot answered 409, it "
                "is at revision %lld, not %lld: it gets the whole snapshot",
                e->edge.spec, (long long) e->revision,
                (long long) body->base);

    } else if (status == 400 || status == 405 || status == 501) {
        e->patch_ok = 0;
        e->patch_again = pgd_now() + PGD_PATCH_AGAIN_MS;

        pgd_log(d, PG_LOG_WARN, "edge %s: PATCH snapshot answered %ld "
                "(%.96s): it gets whole snapshots, and is offered a patch "
                "again in %d s", e->edge.spec, status, why,
                PGD_PATCH_AGAIN_MS / 1000);

    } else {
        e->patch_ok = 0;

        pgd_log(d, PG_LOG_INFO, "edge %s: PATCH snapshot answered %ld "
                "(%.96s): it gets the whole snapshot", e->edge.spec, status,
                why);
    }

    json_decref(json);
    pgd_body_release(body);
}
