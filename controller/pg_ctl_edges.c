/*
 * pg_ctl_edges.c: the portal-gatectl commands that ask the edges: init
 * (and init --from-edge, which rebuilds a lost store from an edge), status
 * and --wait.
 */

#include <stdio.h>              /* printf */
#include <stdlib.h>             /* free */
#include <time.h>               /* clock_gettime, nanosleep */
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
 */
int
pg_ctl_wait(pg_store_t *store, pg_ctl_opts_t *o, int64_t revision)
{
    int              all;
    char             lag[2048];
    long             timeout;
    size_t           i, used;
    double           start, elapsed;
    int64_t          rev[PG_EDGE_MAX], now;
    pg_error_t       err;
    struct timespec  pause = { 0, 10 * 1000 * 1000 };

    for (i = 0; i < o->nedges; i++) {
        rev[i] = -1;
    }

    now = revision;
    start = pg_ctl_now_ms();

    for ( ;; ) {
        if (pg_store_revision(store, &now) != PG_OK) {
            return pg_ctl_store_error(store);
        }

        all = 1;
        elapsed = pg_ctl_now_ms() - start;

        /* one request never outlasts what is left of the wait */
        timeout = (long) (o->wait * 1000 - elapsed);
        timeout = timeout < 100 ? 100
                  : timeout > PG_CTL_EDGE_MS ? PG_CTL_EDGE_MS : timeout;

        for (i = 0; i < o->nedges; i++) {
            if (rev[i] >= revision && rev[i] <= now) {
                continue;
            }

            if (pg_edge_revision(&o->edges[i], timeout, &rev[i], &err)
                != PG_OK)
            {
                rev[i] = -1;
            }

            if (rev[i] < revision || rev[i] > now) {
                all = 0;
            }
        }

        elapsed = pg_ctl_now_ms() - start;

        if (all) {
            printf("every edge (%zu) has revision %lld, after %.1f ms\n",
                   o->nedges, (long long) revision, elapsed);
            return PG_CTL_OK;
        }

        if (elapsed >= o->wait * 1000) {
            break;
        }

        nanosleep(&pause, NULL);
    }

    used = 0;
    lag[0] = '\0';

    for (i = 0; i < o->nedges && used < sizeof(lag); i++) {
        if (rev[i] >= revision && rev[i] <= now) {
            continue;
        }

        if (rev[i] < 0) {
            used += snprintf(lag + used, sizeof(lag) - used,
                             "%s%s (unreachable)", used ? ", " : "",
                             o->edges[i].spec);
        } else {
            used += snprintf(lag + used, sizeof(lag) - used,
                             "%s%s (revision %lld%s)", used ? ", " : "",
                             o->edges[i].spec, (long long) rev[i],
                             rev[i] > now ? ", AHEAD of the store" : "");
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
    int          init, behind;
    size_t       i;
    json_t      *all, *edges, *e;
    int64_t      revision, rev;
    pg_error_t   err;

    if (pg_store_initialised(store, &init) != PG_OK
        || pg_store_revision(store, &revision) != PG_OK)
    {
        return pg_ctl_store_error(store);
    }

    edges = json_array();
    behind = !init;

    for (i = 0; i < o->nedges; i++) {
        if (pg_edge_revision(&o->edges[i], PG_CTL_EDGE_MS, &rev, &err)
            != PG_OK)
        {
            e = json_pack("{s:s,s:n,s:n,s:s}", "edge", o->edges[i].spec,
                          "revision", "lag", "error", err.text);
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
