/*
 * pg_ctl_edges.c: the portal-gatectl commands that ask the edges: init
 * (and init --from-edge, which rebuilds a lost store from an edge), status
 * and --wait.
 */

#include <stdio.h>              /* printf */
#include <stdlib.h>             /* free */
#include <time.h>               /* clock_gettime */
#include "pg_ctl.h"             /* the options, the errors */


int
pg_ctl_init(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    int             created, rc;
    long            status;
    size_t          size;
    json_t         *snap;
    pg_edge_t       edge;
    pg_error_t      err;
    unsigned char  *blob;

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

        rc = pg_store_restore(store, snap, o->actor, edge.spec, &created);

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

    if (pg_store_init(store, o->actor, &created) != PG_OK) {
        return pg_ctl_store_error(store);
    }

    if (!created) {
        return pg_ctl_error(PG_CTL_FAILED, "the store at %s (prefix \"%s\") "
                            "is initialised already", store->where,
                            store->prefix);
    }

    printf("initialised an empty store at %s (prefix \"%s\")\n",
           store->where, store->prefix);

    return PG_CTL_OK;
}


static double
pg_ctl_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
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

    if (pg_edge_poll_init(&p, &err) != PG_OK) {
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
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
            return PG_CTL_OK;
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

        rev[slot] = answer.revision;

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

    return pg_ctl_error(PG_CTL_FAILED, "revision %lld is not on every edge "
                        "after %g s; lagging: %s", (long long) revision,
                        o->wait, lag);
}


int
pg_ctl_status(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv)
{
    int                init, behind;
    size_t             i;
    json_t            *all, *edges, *e;
    int64_t            revision, rev;
    pg_error_t         err;
    pg_edge_answer_t   answers[PG_EDGE_MAX];

    if (pg_store_initialised(store, &init) != PG_OK
        || pg_store_revision(store, &revision) != PG_OK)
    {
        return pg_ctl_store_error(store);
    }

    /* every edge at once: hung edges cost one timeout, not one each */
    if (pg_edge_revisions(o->edges, o->nedges, PG_CTL_EDGE_MS, answers, &err)
        != PG_OK)
    {
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
    }

    edges = json_array();
    behind = !init;

    for (i = 0; i < o->nedges; i++) {
        rev = answers[i].revision;

        if (rev < 0) {
            e = json_pack("{s:s,s:n,s:n,s:s}", "edge", o->edges[i].spec,
                          "revision", "lag", "error", answers[i].err.text);
            behind = 1;

        } else {
            e = json_pack("{s:s,s:I,s:I,s:n}", "edge", o->edges[i].spec,
                          "revision", (json_int_t) rev, "lag",
                          (json_int_t) (revision - rev), "error");
            behind |= (rev != revision);
        }

        json_array_append_new(edges, e);
    }

    if (o->json) {
        all = json_pack("{s:{s:s,s:s,s:b,s:I},s:o}",
                        "store", "redis", store->where, "prefix",
                        store->prefix, "initialised", init, "revision",
                        (json_int_t) revision, "edges", edges);
        json_dumpf(all, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(all);

        return behind ? PG_CTL_FAILED : PG_CTL_OK;
    }

    printf("store %s (prefix \"%s\"): %s, revision %lld\n", store->where,
           store->prefix, init ? "initialised" : "NOT INITIALISED (run init)",
           (long long) revision);

    if (o->nedges == 0) {
        printf("no edges: give --edge URL or -c FILE\n");
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
               rev == revision ? "in step"
               : rev < revision ? "BEHIND"
               : "AHEAD of the store (was it restored from a backup?)");
    }

    json_decref(edges);

    return behind ? PG_CTL_FAILED : PG_CTL_OK;
}
