/*
 * pgd_http_private.h: what the files of portal-gated's HTTP endpoint share;
 * only controller/pgd_http*.c include it.
 *
 *   pgd_http.c          the endpoint: bind, MHD in the loop, the routes,
 *                       what it counts and watches (pushes, in step, audit)
 *   pgd_http_render.c   the answers: /metrics text, /healthz and
 *                       /status.json documents, from pgd_t
 *   pgd_http_page.html  the status page, built into the binary as is
 *
 * Everything here belongs to the loop's thread (see pgd_http.h).
 */

#ifndef PGD_HTTP_PRIVATE_H
#define PGD_HTTP_PRIVATE_H

#include <stdint.h>             /* uint64_t */
#include <jansson.h>            /* json_t */
#include "pgd_http.h"           /* pgd_t, the public half */


/* Push results, the pushes_total{result} label. */
#define PGD_HTTP_OK           0         /* 200: applied */
#define PGD_HTTP_CONFLICT     1         /* 409: the edge's revision differs */
#define PGD_HTTP_REFUSED      2         /* any other HTTP answer */
#define PGD_HTTP_TIMEOUT      3         /* no answer in time */
#define PGD_HTTP_FAILED       4         /* no answer: refused, reset, ... */
#define PGD_HTTP_RESULTS      5

/* push_duration_seconds: 0.5 ms .. 10 s, then +Inf */
#define PGD_HTTP_BUCKETS      14

#define PGD_HTTP_EDGES_MAX    (2 * PG_EDGE_MAX)     /* edges counted: the
                                                   configured ones, and
                                                   room for a HUP that
                                                   adds edges before
                                                   pgd_http_configure()
                                                   drops the gone ones */

typedef struct {
    char       spec[512];           /* pg_edge_t.spec */
    uint64_t   pushes[PGD_HTTP_RESULTS];
    uint64_t   le[PGD_HTTP_BUCKETS];    /* pushes per bucket, not
                                           cumulative: summed at render */
    uint64_t   count;
    double     sum;                 /* s, every push's duration */
    double     out_since;           /* ms (pgd_now()): first seen out of
                                       step; 0 while in step */
} pgd_http_edge_t;

typedef struct pgd_http_s {
    struct MHD_Daemon  *mhd;        /* NULL: no listen line */
    char                bound[PG_CONF_LISTEN_MAX];  /* the listen it has */
    char                csp[256];   /* the page's Content-Security-Policy */

    pgd_http_edge_t     edges[PGD_HTTP_EDGES_MAX];
    size_t              nedges;

    json_t             *audit;      /* the newest entries first, summed
                                       up: new; NULL before the first
                                       read */
    char                audit_id[64];   /* the stream id of audit[0]; "" */
    char                audit_error[256];   /* the last read's; "" */
    double              audit_at;   /* ms: read last */
    int64_t             audit_rev;  /* the store revision then */

    /*
     * /status.json, rendered once and shared by every connection that asks
     * within PGD_HTTP_STATUS_MS at the same revisions (MHD counts the
     * references; this one is ours): 32 clients cost one rendering, not
     * 32 in one turn of the loop.
     */
    struct MHD_Response *status;
    double              status_at;  /* ms: rendered */
    int64_t             status_rev; /* store revision then */
    int64_t             status_snap;    /* snapshot revision then; -1 */
    uint64_t            renders;    /* /status.json renderings, for the
                                       debug log */
} pgd_http_t;


/* pgd_http.c */
pgd_http_edge_t *pgd_http_edge(pgd_http_t *h, const char *spec);
int pgd_http_in_step(pgd_t *d, pgd_edge_t *e);
double pgd_http_lag_s(pgd_t *d, pgd_edge_t *e);
int64_t pgd_http_lag_revisions(pgd_t *d, pgd_edge_t *e);
extern const double pgd_http_buckets[PGD_HTTP_BUCKETS];
extern const char *const pgd_http_results[PGD_HTTP_RESULTS];

/* pgd_http_render.c: new text (*len bytes, NUL-terminated) or new JSON,
 * NULL out of memory. */
char *pgd_http_metrics(pgd_t *d, size_t *len);
json_t *pgd_http_health(pgd_t *d, int *code);
json_t *pgd_http_status(pgd_t *d);

/* text as valid UTF-8 (each invalid byte U+FFFD) with an edge URL's
 * user:password@ masked: what a label, a log or the page may show */
void pgd_http_clean(const char *s, char *buf, size_t size);

#endif /* PGD_HTTP_PRIVATE_H */
