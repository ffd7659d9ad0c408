/*
 * pg_ctl_edges.c: the portal-gatectl commands that ask the edges: init
 * (and init --from-edge, which rebuilds a lost store from an edge),
 * status (the store, the controllers' beats, each edge's revision and
 * overrides), and --wait (and, when it times out, the likely cause). The
 * break-glass kill --direct and release: pg_ctl_direct.c.
 */

#include <stdio.h>              /* printf */
#include <stdlib.h>             /* free */
#include <string.h>             /* strcmp, strncmp */
#include <sys/time.h>           /* struct timeval: the causes' timeout */
#include <time.h>               /* clock_gettime, gmtime_r, strftime */
#include "pg_ctl.h"             /* the options, the errors */


/* The environments init records: -c's environments line, else these. */
static const char  *pg_ctl_default_envs[] = { "production", "staging" };

/* --wait timed out: how long the likely cause may take to read Redis */
#define PG_CTL_CAUSES_MS  1000


static const json_t *pg_ctl_beat_edge(const json_t *beat,
    const pg_edge_t *edge);
static json_t *pg_ctl_controllers(const json_t *beats, int64_t now_ms,
    size_t *alive, int64_t *youngest_ms);
static json_t *pg_ctl_json_text(const char *text);
static int pg_ctl_wait_overrides(pg_ctl_opts_t *o, int64_t revision);
static void pg_ctl_problem(json_t *problems, int *n, const char *text);


int
pg_ctl_init(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    int             created, rc;
    long            status;
    size_t          size, i, nenvs;
    json_t         *snap;
    pg_edge_t       edge;
    pg_error_t      err;
    const char     *envs[PG_ENVS_MAX];
    unsigned char  *blob;

    /* the environments: -c's, else production and staging */
    if (o->cf && o->cf->nenvs) {
        for (i = 0; i < o->cf->nenvs; i++) {
            envs[i] = o->cf->envs[i];
        }
        nenvs = o->cf->nenvs;

    } else {
        envs[0] = pg_ctl_default_envs[0];
        envs[1] = pg_ctl_default_envs[1];
        nenvs = 2;
    }

    if (o->from_edge) {
        if (pg_edge_parse(o->from_edge, &edge, &err) != PG_OK) {
            return pg_ctl_error(PG_CTL_USAGE, "%s", err.text);
        }

        if (pg_edge_request(&edge, "GET", "snapshot", NULL, 0,
                            10 * PG_CTL_EDGE_MS, &status, &snap, &err)
            != PG_OK)
        {
            return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
        }

        if (status != 200 || snap == NULL) {
            json_decref(snap);
            return pg_ctl_error(PG_CTL_FAILED, "edge %s: GET snapshot "
                                "answered %ld", edge.spec, status);
        }

        /* the edge's snapshot must be one the edges accept */
        rc = pg_snap_compile_json(snap, &blob, &size, &err);

        if (rc != PG_OK) {
            json_decref(snap);
            return pg_ctl_error(PG_CTL_FAILED, "edge %s: its snapshot is "
                                "invalid: %s", edge.spec, err.text);
        }

        free(blob);

        if (json_integer_value(json_object_get(snap, "revision")) == 0) {
            json_decref(snap);
            return pg_ctl_error(PG_CTL_FAILED, "edge %s has no snapshot "
                                "(revision 0): nothing to rebuild from; "
                                "`portal-gatectl init` makes an empty store",
                                edge.spec);
        }

        rc = pg_store_restore(store, snap, envs, nenvs, o->actor, edge.spec,
                              &created);

        if (rc != PG_OK) {
            json_decref(snap);
            return pg_ctl_store_error(store);
        }

        if (!created) {
            json_decref(snap);
            return pg_ctl_error(PG_CTL_FAILED, "the store at %s (prefix "
                                "\"%s\") holds changes already: "
                                "--from-edge only rebuilds a lost store",
                                store->where, store->prefix);
        }

        printf("rebuilt the store at %s (prefix \"%s\") from %s: revision "
               "%" JSON_INTEGER_FORMAT "\n", store->where, store->prefix,
               edge.spec,
               json_integer_value(json_object_get(snap, "revision")));
        json_decref(snap);

        return PG_CTL_OK;
    }

    if (pg_store_init(store, o->actor, envs, nenvs, &created) != PG_OK) {
        return pg_ctl_store_error(store);
    }

    if (!created) {
        return pg_ctl_error(PG_CTL_FAILED, "the store at %s (prefix \"%s\") "
                            "is initialised already", store->where,
                            store->prefix);
    }

    printf("initialised an empty store at %s (prefix \"%s\"), with the "
           "environments", store->where, store->prefix);

    for (i = 0; i < nenvs; i++) {
        printf("%s %s", i ? "," : "", envs[i]);
    }

    printf("%s\n", o->cf && o->cf->nenvs ? " (from -c's config)" : "");

    return PG_CTL_OK;
}


double
pg_ctl_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}


/*
 * After --wait timed out: the likely cause, from the controllers' beats
 * and what the lagging edges answered here, one line each on stderr. A
 * controller that does not beat is the first suspect; then one that beats
 * but says it cannot reach the edge; then an edge that does not answer
 * here either.
 */
static void
pg_ctl_wait_causes(pg_store_t *store, pg_ctl_opts_t *o, int64_t revision,
    const int *confirmed, const int64_t *rev, char why[][PG_ERROR_LEN + 16])
{
    int            seen, reaches;
    size_t         i, j, alive;
    json_t        *beats, *list, *c, *be;
    int64_t        now_ms, youngest, read;
    const char    *id, *blocked, *refused, *error, *said;
    struct timeval tv;

    /* the wait is over: a Redis that hangs now gets a second, not the
     * command timeout (PG_CTL_TIMEOUT_MS) on top of --wait */
    tv.tv_sec = PG_CTL_CAUSES_MS / 1000;
    tv.tv_usec = (PG_CTL_CAUSES_MS % 1000) * 1000;

    if (store->redis && redisSetTimeout(store->redis, tv) == REDIS_OK
        && store->redis->timeout)
    {
        /* hiredis keeps the connect timeout apart, and pg_redis_strerror()
         * says it of a timed-out command: keep the two alike */
        *store->redis->timeout = tv;
    }

    if (pg_store_controllers(store, &beats, &now_ms) != PG_OK) {
        pg_ctl_error(PG_CTL_FAILED, "likely cause: unknown; the "
                     "controllers' beats cannot be read: %s",
                     store->err.text);
        return;
    }

    list = pg_ctl_controllers(beats, now_ms, &alive, &youngest);
    json_decref(beats);

    if (alive == 0) {
        if (youngest < 0) {
            pg_ctl_error(PG_CTL_FAILED, "likely cause: no portal-gated has "
                         "ever beaten in this store (%s, prefix \"%s\"): is "
                         "it running, on this Redis and prefix?",
                         store->where, store->prefix);
        } else {
            pg_ctl_error(PG_CTL_FAILED, "likely cause: no portal-gated has "
                         "beaten in Redis for %.0f s: is it running?",
                         youngest / 1000.0);
        }

        json_decref(list);
        return;
    }

    for (i = 0; i < o->nedges; i++) {
        if (confirmed[i]) {
            continue;
        }

        /* what the live controllers say of this edge: a null revision
         * is an edge they cannot reach, an error beside a revision is
         * its refusal (pgd_beat.c) */
        seen = 0;
        reaches = 0;
        blocked = NULL;
        refused = NULL;
        error = NULL;
        read = -1;

        json_array_foreach(list, j, c) {
            if (!json_is_true(json_object_get(c, "alive"))) {
                continue;
            }

            be = (json_t *) pg_ctl_beat_edge(c, &o->edges[i]);
            if (be == NULL) {
                continue;
            }

            seen++;
            id = json_string_value(json_object_get(c, "id"));
            said = json_string_value(json_object_get(be, "error"));

            if (!json_is_integer(json_object_get(be, "revision"))) {
                if (blocked == NULL) {
                    blocked = id;
                    error = said;
                }
                continue;
            }

            reaches++;
            read = json_integer_value(json_object_get(c, "store_revision"));

            if (said && said[0] && refused == NULL) {
                refused = id;
                error = said;
            }
        }

        if (rev[i] < 0 && reaches == 0 && blocked) {
            pg_ctl_error(PG_CTL_FAILED, "likely cause: %s does not answer "
                         "from here (%s), and portal-gated %s cannot reach "
                         "it either (%s): is it up?", o->edges[i].spec,
                         why[i], blocked, error ? error : "?");

        } else if (rev[i] < 0) {
            pg_ctl_error(PG_CTL_FAILED, "likely cause: %s does not answer "
                         "from here (%s)%s", o->edges[i].spec, why[i],
                         reaches ? "; portal-gated reaches it: is the "
                                   "way from here to it blocked?" : "");

        } else if (seen == 0) {
            pg_ctl_error(PG_CTL_FAILED, "likely cause: no live portal-gated "
                         "pushes to %s: it is in none of their configs",
                         o->edges[i].spec);

        } else if (reaches == 0) {
            pg_ctl_error(PG_CTL_FAILED, "likely cause: portal-gated %s is "
                         "alive but cannot reach %s: %s", blocked,
                         o->edges[i].spec, error ? error : "?");

        } else if (refused) {
            pg_ctl_error(PG_CTL_FAILED, "likely cause: portal-gated %s "
                         "reaches %s, and says: %s", refused,
                         o->edges[i].spec, error);

        } else if (read >= 0 && read < revision) {
            pg_ctl_error(PG_CTL_FAILED, "likely cause: the live portal-gated "
                         "had read revision %lld of the store at its last "
                         "beat, before this change (%lld): it has not seen "
                         "it yet", (long long) read, (long long) revision);

        } else {
            pg_ctl_error(PG_CTL_FAILED, "likely cause: unknown: portal-gated "
                         "reaches %s, which is at revision %lld (see "
                         "portal-gated's log)", o->edges[i].spec,
                         (long long) rev[i]);
        }
    }

    json_decref(list);
}


/*
 * --wait: until every edge reports revision, or a later one that the store
 * has too (another change may follow), or the limit passes; then say how
 * long it took, or which edges lag (exit 1). An edge ahead of the store
 * (Redis restored from an older backup) has not confirmed anything.
 *
 * Every edge is asked at once (pg_edge_poll_t), and asked again 10 ms
 * after each answer that does not confirm, while the others' requests are
 * in flight: a hung edge holds back no other, and no request outlasts the
 * limit, so --wait=1 returns after about 1 s, however many edges hang.
 */
int
pg_ctl_wait(pg_store_t *store, pg_ctl_opts_t *o, int64_t revision)
{
    int               all, confirmed[PG_EDGE_MAX];
    char              lag[2048], why[PG_EDGE_MAX][PG_ERROR_LEN + 16];
    long              slot, timeout, wait;
    size_t            i, used;
    double            start, now, deadline, retry[PG_EDGE_MAX];
    int64_t           rev[PG_EDGE_MAX], store_rev;
    pg_error_t        err;
    pg_edge_poll_t    p;
    pg_edge_answer_t  answer;

    /* kill --wait without edges: the kill is made, the wait cannot be */
    if (o->nedges == 0) {
        return pg_ctl_error(PG_CTL_FAILED, "the change is made (revision "
                            "%lld), but --wait has no edges to ask: give "
                            "--edge URL or -c FILE", (long long) revision);
    }

    /* libcurl missing: a kill is made without it (portal-gatectl.c) */
    if (pg_edge_poll_init(&p, &err) != PG_OK) {
        return pg_ctl_error(PG_CTL_FAILED, "the change is made (revision "
                            "%lld), but --wait cannot ask the edges: %s",
                            (long long) revision, err.text);
    }

    store_rev = revision;
    start = pg_ctl_now_ms();
    deadline = start + o->wait * 1000;

    for (i = 0; i < o->nedges; i++) {
        rev[i] = -1;
        confirmed[i] = 0;
        retry[i] = start;
        snprintf(why[i], sizeof(why[i]), "no answer");
    }

    for ( ;; ) {
        now = pg_ctl_now_ms();
        all = 1;
        wait = (long) (deadline - now);

        for (i = 0; i < o->nedges; i++) {
            if (confirmed[i]) {
                continue;
            }

            all = 0;

            if (pg_edge_poll_busy(&p, i)) {
                continue;
            }

            if (retry[i] > now) {
                wait = retry[i] - now < wait ? (long) (retry[i] - now) : wait;
                continue;
            }

            /* one request never outlasts what is left of the wait */
            timeout = (long) (deadline - now);
            timeout = timeout < 1 ? 1
                      : timeout > PG_CTL_EDGE_MS ? PG_CTL_EDGE_MS : timeout;

            if (pg_edge_poll_start(&p, i, &o->edges[i], timeout, &err)
                != PG_OK)
            {
                snprintf(why[i], sizeof(why[i]), "unreachable: %s",
                         err.text);
                retry[i] = now + 10;
            }
        }

        if (all) {
            pg_edge_poll_free(&p);
            printf("every edge (%zu) has revision %lld, after %.1f ms\n",
                   o->nedges, (long long) revision, now - start);
            return pg_ctl_wait_overrides(o, revision);
        }

        if (now >= deadline) {
            break;
        }

        if (pg_edge_poll_next(&p, wait < 0 ? 0 : wait, &slot, &answer)
            != PG_OK)
        {
            pg_edge_poll_free(&p);
            return pg_ctl_error(PG_CTL_FAILED, "%s", answer.err.text);
        }

        if (slot < 0) {
            continue;
        }

        /* a request cut short by the limit itself says nothing new: keep
         * the revision the edge gave before */
        if (answer.revision >= 0 || !answer.timed_out || rev[slot] < 0) {
            rev[slot] = answer.revision;
        }

        if (answer.revision < 0 && rev[slot] >= 0) {
            retry[slot] = pg_ctl_now_ms() + 10;
            continue;
        }

        /* an edge past what the store had: has the store moved on? */
        if (rev[slot] > store_rev
            && pg_store_revision(store, &store_rev) != PG_OK)
        {
            pg_edge_poll_free(&p);
            return pg_ctl_store_error(store);
        }

        if (rev[slot] >= revision && rev[slot] <= store_rev) {
            confirmed[slot] = 1;
            continue;
        }

        snprintf(why[slot], sizeof(why[slot]), "%s%s",
                 answer.timed_out ? "no answer" : "unreachable: ",
                 answer.timed_out ? "" : answer.why);
        retry[slot] = pg_ctl_now_ms() + 10;
    }

    pg_edge_poll_free(&p);

    used = 0;
    lag[0] = '\0';

    for (i = 0; i < o->nedges && used < sizeof(lag); i++) {
        if (confirmed[i]) {
            continue;
        }

        if (rev[i] < 0) {
            used += snprintf(lag + used, sizeof(lag) - used, "%s%s (%s)",
                             used ? ", " : "", o->edges[i].spec, why[i]);
        } else {
            used += snprintf(lag + used, sizeof(lag) - used,
                             "%s%s (revision %lld%s)", used ? ", " : "",
                             o->edges[i].spec, (long long) rev[i],
                             rev[i] > store_rev ? ", AHEAD of the store"
                                                : "");
        }
    }

    pg_ctl_error(PG_CTL_FAILED, "revision %lld is not on every edge after "
                 "%g s; lagging: %s", (long long) revision, o->wait, lag);

    pg_ctl_wait_causes(store, o, revision, confirmed, rev, why);

    return PG_CTL_FAILED;
}


/*
 * After --wait of a change that lets F on (on, rollout, allow, undeny):
 * an edge that holds a kill override of F serves it off whatever its
 * revision, so "every edge has revision N" is not F on. Say which edges
 * hold one, exit 1. An edge that does not answer now is not held against
 * the change: it confirmed the revision a moment ago.
 */
static int
pg_ctl_wait_overrides(pg_ctl_opts_t *o, int64_t revision)
{
    int              held;
    char             line[1024];
    size_t           i, j, used;
    json_t          *ov;
    pg_error_t       err;
    const char      *e, *f;
    pg_edge_call_t   calls[PG_EDGE_MAX];

    if (o->flag == NULL || o->cmd == NULL
        || (strcmp(o->cmd, "on") != 0 && strcmp(o->cmd, "rollout") != 0
            && strcmp(o->cmd, "allow") != 0 && strcmp(o->cmd, "undeny") != 0))
    {
        return PG_CTL_OK;
    }

    for (i = 0; i < o->nedges; i++) {
        calls[i].edge = &o->edges[i];
        calls[i].method = "GET";
        snprintf(calls[i].path, sizeof(calls[i].path), "status");
        calls[i].body = NULL;
        calls[i].len = 0;
    }

    if (pg_edge_calls(calls, o->nedges, PG_CTL_EDGE_MS, &err) != PG_OK) {
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
    }

    used = 0;
    line[0] = '\0';
    held = 0;

    for (i = 0; i < o->nedges; i++) {
        json_array_foreach(json_object_get(calls[i].json, "overrides"), j,
                           ov)
        {
            e = json_string_value(json_object_get(ov, "env"));
            f = json_string_value(json_object_get(ov, "flag"));

            if (e && f && strcmp(e, o->env) == 0
                && strcmp(f, o->flag) == 0)
            {
                held++;

                if (used < sizeof(line)) {
                    used += snprintf(line + used, sizeof(line) - used,
                                     "%s%s", used ? ", " : "",
                                     o->edges[i].spec);
                }
                break;
            }
        }
    }

    pg_edge_calls_free(calls, o->nedges);

    if (held == 0) {
        return PG_CTL_OK;
    }

    return pg_ctl_error(PG_CTL_FAILED, "but %s is still OFF on %d of %zu "
                        "edges: %s hold%s a kill override of it in %s "
                        "(kill --direct), which wins over revision %lld; "
                        "`portal-gatectl -e %s release %s` lifts it",
                        o->flag, held, o->nedges, line, held == 1 ? "s" : "",
                        o->env, (long long) revision, o->env, o->flag);
}


/* An epoch time in seconds as ISO 8601 UTC, into buf. */
static void
pg_ctl_iso_time(int64_t epoch, char *buf, size_t size)
{
    time_t     t;
    struct tm  tm;

    t = (time_t) epoch;

    if (gmtime_r(&t, &tm) == NULL
        || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    {
        snprintf(buf, size, "%lld", (long long) epoch);
    }
}


/* What a beat says of edge (borrowed), or NULL: the beat names its edges
 * as its config writes them, and an edge is the same API however written. */
static const json_t *
pg_ctl_beat_edge(const json_t *beat, const pg_edge_t *edge)
{
    json_t      *edges, *v;
    pg_edge_t    e;
    pg_error_t   err;
    const char  *url;

    edges = json_object_get(beat, "edges");

    json_object_foreach(edges, url, v) {
        if (strcmp(url, edge->spec) == 0
            || (pg_edge_parse(url, &e, &err) == PG_OK
                && strcmp(e.base, edge->base) == 0
                && strcmp(e.socket, edge->socket) == 0))
        {
            return v;
        }
    }

    return NULL;
}


/*
 * The controllers as status shows them: an array of their beats, in id
 * order, each with "id", "age_ms", "limit_ms" and "alive" added (a new
 * reference). *alive counts the live ones, *youngest_ms is the age of the
 * youngest beat (-1: none).
 */
static json_t *
pg_ctl_controllers(const json_t *beats, int64_t now_ms, size_t *alive,
    int64_t *youngest_ms)
{
    int          live;
    size_t       i, j, n;
    json_t      *list, *beat, *c;
    int64_t      age, limit, ahead;
    const char  *id, *t;

    list = json_array();
    *alive = 0;
    *youngest_ms = -1;

    json_object_foreach((json_t *) beats, id, beat) {
        c = json_deep_copy(beat);

        if (c == NULL) {
            continue;
        }

        live = pg_store_beat_alive(beat, now_ms, &age, &limit);

        /* a beat stamped ahead of Redis's clock by more than the limit
         * (a wrong clock, a hand-written beat) proves nothing alive: it
         * would read "beat 0.0 s ago" for as long as it stays ahead */
        ahead = json_is_integer(json_object_get(beat, "beat_at"))
                ? json_integer_value(json_object_get(beat, "beat_at"))
                  - now_ms
                : 0;

        if (live == 1 && ahead > limit) {
            live = 0;
            json_object_set_new(c, "ahead_ms", json_integer(ahead));
        }

        json_object_set_new(c, "id", json_string(id));
        json_object_set_new(c, "age_ms", age >= 0 ? json_integer(age)
                                                   : json_null());
        json_object_set_new(c, "limit_ms", json_integer(limit));
        json_object_set_new(c, "alive", json_boolean(live == 1));

        *alive += (live == 1);

        if (age >= 0 && (*youngest_ms < 0 || age < *youngest_ms)) {
            *youngest_ms = age;
        }

        /* in id order: insert where it belongs */
        n = json_array_size(list);

        for (i = 0; i < n; i++) {
            t = json_string_value(json_object_get(json_array_get(list, i),
                                                  "id"));
            if (strcmp(id, t) < 0) {
                break;
            }
        }

        j = i;
        json_array_insert_new(list, j, c);
    }

    return list;
}


/* An edge's overrides (from GET status) for the terminal. */
static void
pg_ctl_print_overrides(const json_t *overrides)
{
    char         since[32];
    size_t       i;
    json_t      *ov;
    const char  *by, *reason;

    json_array_foreach(overrides, i, ov) {
        pg_ctl_iso_time(json_integer_value(json_object_get(ov, "since")),
                        since, sizeof(since));
        by = json_string_value(json_object_get(ov, "by"));
        reason = json_string_value(json_object_get(ov, "reason"));

        printf("      KILL OVERRIDE: %s in %s, since %s%s%s%s%s "
               "(portal-gatectl -e %s release %s)\n",
               json_string_value(json_object_get(ov, "flag")) ?: "?",
               json_string_value(json_object_get(ov, "env")) ?: "?", since,
               by && by[0] ? " by " : "", by && by[0] ? by : "",
               reason && reason[0] ? ": " : "",
               reason && reason[0] ? reason : "",
               json_string_value(json_object_get(ov, "env")) ?: "?",
               json_string_value(json_object_get(ov, "flag")) ?: "?");
    }
}


/*
 * status: the store, every controller's last beat (on Redis's clock), and
 * every edge's revision and kill overrides, asked from here at once. It
 * shows what it can when Redis is down: the edges answer all the same.
 * Exit 1 unless the store is reachable and initialised, a controller is
 * alive and every edge is in step.
 */
int
pg_ctl_status(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv)
{
    int               reachable, init, nproblems;
    char              line[640], why[400];
    size_t            i, alive;
    json_t           *beats, *controllers, *edges, *problems, *all, *e, *c;
    json_t           *v, *be, *ov, *sf;
    int64_t           revision, rev, now_ms, youngest, age;
    pg_error_t        err, rerr;
    const char       *url, *error;
    pg_edge_call_t    calls[PG_EDGE_MAX];

    problems = json_array();
    nproblems = 0;
    beats = NULL;
    init = 0;
    revision = -1;
    now_ms = 0;

    reachable = (pg_ctl_connect(store, o, PG_CTL_STATUS_MS, &rerr) == PG_OK);

    if (reachable
        && (pg_store_initialised(store, &init) != PG_OK
            || pg_store_revision(store, &revision) != PG_OK
            || pg_store_controllers(store, &beats, &now_ms) != PG_OK))
    {
        reachable = 0;
        rerr = store->err;
    }

    if (!reachable) {
        snprintf(line, sizeof(line), "Redis is unreachable: %s", rerr.text);
        pg_ctl_problem(problems, &nproblems, line);
        revision = -1;

    } else if (!init) {
        pg_ctl_problem(problems, &nproblems, "the store is not initialised "
                       "(portal-gatectl init)");
    }

    if (o->nedges == 0) {
        /* nothing asked is nothing in step */
        pg_ctl_problem(problems, &nproblems, "no edges to ask: give --edge "
                       "URL or -c FILE");
    }

    /* every edge at once: hung edges cost one timeout, not one each */
    for (i = 0; i < o->nedges; i++) {
        calls[i].edge = &o->edges[i];
        calls[i].method = "GET";
        snprintf(calls[i].path, sizeof(calls[i].path), "status");
        calls[i].body = NULL;
        calls[i].len = 0;
    }

    if (pg_edge_calls(calls, o->nedges, PG_CTL_EDGE_MS, &err) != PG_OK) {
        json_decref(beats);
        json_decref(problems);
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
    }

    /* the controllers */

    alive = 0;
    youngest = -1;
    controllers = reachable ? pg_ctl_controllers(beats, now_ms, &alive,
                                                 &youngest)
                            : json_array();

    if (reachable && alive == 0) {
        if (youngest < 0) {
            snprintf(line, sizeof(line), "no portal-gated has ever beaten "
                     "in this store: is it running, on this Redis and "
                     "prefix?");
        } else {
            snprintf(line, sizeof(line), "no portal-gated has beaten in "
                     "Redis for %.0f s: is it running?", youngest / 1000.0);
        }

        pg_ctl_problem(problems, &nproblems, line);
    }

    /* the edges */

    edges = json_array();

    for (i = 0; i < o->nedges; i++) {
        v = calls[i].answered ? json_object_get(calls[i].json, "revision")
                              : NULL;
        ov = json_object_get(calls[i].json, "overrides");

        if (!json_is_integer(v) || calls[i].status != 200) {
            if (calls[i].answered) {
                snprintf(why, sizeof(why), "GET status answered %ld%s",
                         calls[i].status,
                         calls[i].json ? "" : " without JSON");
            } else {
                snprintf(why, sizeof(why), "%s", calls[i].why);
            }

            e = json_pack("{s:o,s:n,s:n,s:o,s:[]}", "edge",
                          pg_ctl_json_text(o->edges[i].spec), "revision",
                          "lag", "error", pg_ctl_json_text(why),
                          "overrides");

            snprintf(line, sizeof(line), "%.*s is unreachable: %.*s",
                     (int) pg_ctl_utf8_cut(o->edges[i].spec, 200),
                     o->edges[i].spec, (int) pg_ctl_utf8_cut(why, 200), why);
            pg_ctl_problem(problems, &nproblems, line);

        } else {
            rev = json_integer_value(v);
            e = json_pack("{s:o,s:I,s:o,s:n,s:o}", "edge",
                          pg_ctl_json_text(o->edges[i].spec),
                          "revision", (json_int_t) rev, "lag",
                          revision >= 0 ? json_integer(revision - rev)
                                        : json_null(),
                          "error",
                          "overrides", json_is_array(ov) ? json_incref(ov)
                                                         : json_array());

            if (revision >= 0 && rev != revision) {
                snprintf(line, sizeof(line), "%.*s is %s the store "
                         "(revision %lld, the store's %lld)",
                         (int) pg_ctl_utf8_cut(o->edges[i].spec, 200),
                         o->edges[i].spec, rev < revision ? "behind"
                                                          : "AHEAD of",
                         (long long) rev, (long long) revision);
                pg_ctl_problem(problems, &nproblems, line);
            }

            /* an edge that cannot write its state file loses its kill
             * overrides and its snapshot when it restarts */
            sf = json_object_get(calls[i].json, "state_file");

            if (json_is_false(json_object_get(sf, "ok"))) {
                snprintf(line, sizeof(line), "%.*s cannot write its state "
                         "file: %.*s (its overrides and snapshot are lost "
                         "when it restarts)",
                         (int) pg_ctl_utf8_cut(o->edges[i].spec, 200),
                         o->edges[i].spec,
                         (int) pg_ctl_utf8_cut(json_string_value(
                             json_object_get(sf, "error")) ?: "?", 300),
                         json_string_value(json_object_get(sf, "error"))
                         ?: "?");
                pg_ctl_problem(problems, &nproblems, line);
                json_object_set(e, "state_file", sf);
            }
        }

        json_array_append_new(edges, e);
    }

    pg_edge_calls_free(calls, o->nedges);

    if (o->json) {
        all = json_pack("{s:{s:s,s:s,s:b,s:s?,s:b,s:o},s:O,s:O,s:b,s:O}",
                        "store", "redis", store->where[0] ? store->where
                                                          : o->where,
                        "prefix", o->prefix, "reachable", reachable,
                        "error", reachable ? NULL : rerr.text,
                        "initialised", init,
                        "revision", revision >= 0
                                    ? json_integer(revision) : json_null(),
                        "controllers", controllers, "edges", edges,
                        "ok", nproblems == 0,
                        "problems", problems);
        json_dumpf(all, stdout, JSON_INDENT(2) | PG_JSON_REAL);
        printf("\n");
        json_decref(all);
        goto done;
    }

    /* the store */

    if (!reachable) {
        printf("store %s (prefix \"%s\"): UNREACHABLE: %s\n", o->where,
               o->prefix, rerr.text);
    } else {
        printf("store %s (prefix \"%s\"): %s, revision %lld\n", store->where,
               store->prefix,
               init ? "initialised" : "NOT INITIALISED (run init)",
               (long long) revision);
        pg_ctl_ha_describe(store, o, why, sizeof(why));
        printf("  %s\n", why);
    }

    /* the controllers, by their beats */

    if (reachable && json_array_size(controllers) == 0) {
        printf("controllers: none has ever beaten in this store\n");

    } else if (reachable) {
        printf("controllers (their last beat, on Redis's clock):\n");
    }

    json_array_foreach(controllers, i, c) {
        age = json_integer_value(json_object_get(c, "age_ms"));

        printf("  %-28s portal-gated %-8s ",
               json_string_value(json_object_get(c, "id")),
               json_string_value(json_object_get(c, "version")) ?: "?");

        if (json_is_null(json_object_get(c, "age_ms"))) {
            printf("INVALID BEAT: %s\n",
                   json_string_value(json_object_get(c, "invalid"))
                   ?: "no beat_at");
            continue;
        }

        if (json_is_true(json_object_get(c, "alive"))) {
            printf("alive, beat %.1f s ago", age / 1000.0);
        } else if (json_is_integer(json_object_get(c, "ahead_ms"))) {
            printf("NOT ALIVE: its beat is stamped %.1f s ahead of Redis's "
                   "clock (is its clock wrong?)",
                   json_integer_value(json_object_get(c, "ahead_ms"))
                   / 1000.0);
        } else {
            printf("NOT ALIVE: last beat %.1f s ago (alive within %.1f s)",
                   age / 1000.0,
                   json_integer_value(json_object_get(c, "limit_ms"))
                   / 1000.0);
        }

        v = json_object_get(c, "store_revision");

        if (json_is_integer(v)) {
            printf(", had read revision %" JSON_INTEGER_FORMAT,
                   json_integer_value(v));
        }

        printf("\n");

        /* what it says of each edge (pgd_beat.c): ok is in step with
         * what it pushes; a null revision with an error: unreachable */
        json_object_foreach(json_object_get(c, "edges"), url, be) {
            v = json_object_get(be, "revision");
            error = json_string_value(json_object_get(be, "error"));

            if (!json_is_integer(v)) {
                printf("      %-50s  it cannot reach it: %s\n", url,
                       error ? error : "?");
            } else if (error && error[0]) {
                printf("      %-50s  revision %" JSON_INTEGER_FORMAT
                       ", it says: %s\n", url, json_integer_value(v),
                       error);
            } else {
                printf("      %-50s  revision %" JSON_INTEGER_FORMAT "%s\n",
                       url, json_integer_value(v),
                       json_is_true(json_object_get(be, "ok"))
                       ? ", in step" : ", not in step yet");
            }
        }
    }

    /* the edges, asked from here */

    if (o->nedges == 0) {
        printf("no edges: give --edge URL or -c FILE\n");
    } else {
        printf("edges (asked from here):\n");
    }

    json_array_foreach(edges, i, e) {
        if (json_is_null(json_object_get(e, "revision"))) {
            printf("  %-52s  unreachable: %s\n",
                   json_string_value(json_object_get(e, "edge")),
                   json_string_value(json_object_get(e, "error")));
            continue;
        }

        rev = json_integer_value(json_object_get(e, "revision"));

        printf("  %-52s  revision %-8lld %s\n",
               json_string_value(json_object_get(e, "edge")),
               (long long) rev,
               revision < 0 ? "(the store's is unknown)"
               : rev == revision ? "in step"
               : rev < revision ? "BEHIND"
               : "AHEAD of the store (was it restored from a backup?)");

        pg_ctl_print_overrides(json_object_get(e, "overrides"));
    }

    if (nproblems == 0) {
        printf("all well: %zu portal-gated alive, %zu edge%s in step\n",
               alive, o->nedges, o->nedges == 1 ? "" : "s");
    } else {
        printf("NOT WELL:\n");

        json_array_foreach(problems, i, v) {
            printf("  - %s\n", json_string_value(v));
        }
    }

done:

    json_decref(controllers);
    json_decref(edges);
    json_decref(problems);
    json_decref(beats);

    return nproblems ? PG_CTL_FAILED : PG_CTL_OK;
}


/* text as a JSON string; a byte that is not UTF-8 (an edge's URL, an
 * error quoting one) shown as '?', so that the text is never lost */
static json_t *
pg_ctl_json_text(const char *text)
{
    char    *copy, *p;
    json_t  *s;

    s = json_string(text);

    if (s != NULL || text == NULL) {
        return s ? s : json_null();
    }

    copy = strdup(text);

    if (copy == NULL) {
        return json_string("?");
    }

    for (p = copy; *p; p++) {
        if ((unsigned char) *p >= 0x80) {
            *p = '?';
        }
    }

    s = json_string(copy);
    free(copy);

    return s ? s : json_string("?");
}


/* One problem of status: counted here, whatever its text holds (the exit
 * status must never depend on whether the text could be kept). */
static void
pg_ctl_problem(json_t *problems, int *n, const char *text)
{
    (*n)++;
    json_array_append_new(problems, pg_ctl_json_text(text));
}
