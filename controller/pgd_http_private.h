/*
 * pgd_http_private.h: what the files of portal-gated's HTTP endpoint share;
 * only controller/pgd_http*.c include it.
 *
 *   pgd_http.c          the endpoint: bind, MHD in the loop, the routes,
 *                       what it counts and watches (pushes, in step, audit)
 *   pgd_http_conn.c     its connections: deadlines, slots kept free; the
 *                       lines clients make it log, limited
 *   pgd_http_render.c   the answers: /metrics text, /healthz and
 *                       /status.json documents, from pgd_t
 *   pgd_http_page.html  the status page, built into the binary as is
 *
 * Everything here belongs to the loop's thread (see pgd_http.h).
 */

#ifndef PGD_HTTP_PRIVATE_H
#define PGD_HTTP_PRIVATE_H

#include <stdarg.h>             /* va_list */
#include <stdint.h>             /* uint64_t */
#include <jansson.h>            /* json_t */
#include <microhttpd.h>         /* struct MHD_Connection, its callbacks */
#include "pgd_http.h"           /* pgd_t, the public half */


/* Push results, the pushes_total{result} label. */
#define PGD_HTTP_OK           0         /* 200: applied */
#define PGD_HTTP_CONFLICT     1         /* 409: the edge's revision differs */
#define PGD_HTTP_REFUSED      2         /* any other HTTP answer */
#define PGD_HTTP_TIMEOUT      3         /* no answer in time */
#define PGD_HTTP_FAILED       4         /* no answer: refused, reset, ... */
#define PGD_HTTP_RESULTS      5

#define PGD_HTTP_LOG_BURST    10        /* client-caused lines .. */
#define PGD_HTTP_LOG_WINDOW_MS 60000    /* .. per this long (ms) */

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

/* A listen address: the config's, or the one bound (to bind it again). */
typedef struct {
    char                text[PG_CONF_LISTEN_MAX];   /* ADDR:PORT as written;
                                                       "": none */
    char                addr[PG_CONF_LISTEN_MAX];   /* numeric */
    int                 v6;
    int                 port;       /* 0: none */
    int                 line;       /* of the listen line */
} pgd_http_addr_t;

/* A connection of the endpoint (pgd_http_conn.c). */
typedef struct pgd_http_conn_s  pgd_http_conn_t;

struct pgd_http_conn_s {
    pgd_http_conn_t    *next;
    pgd_http_conn_t    *prev;
    int                 fd;         /* MHD's; -1 when unknown */
    double              since;      /* ms (pgd_now()): connected, or its
                                       last answer was done */
    double              born;       /* ms: connected */
    unsigned            answered;   /* answers done on it */
    unsigned            busy:1;     /* a request of it is being answered */
    unsigned            closing:1;  /* shut down here; MHD has yet to see
                                       it (not in nconns) */
    char                peer[64];   /* the client's address, for the log */
};

typedef struct pgd_http_s {
    struct MHD_Daemon  *mhd;        /* NULL: no listen line */
    pgd_http_addr_t     bound;      /* the listen it has */
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

    pgd_http_conn_t    *conns;      /* every connection MHD holds */
    size_t              nconns;     /* those not closing */

    double              log_window; /* ms: the client-caused lines' window
                                       began */
    unsigned            log_lines;  /* logged in it */
    unsigned            log_dropped;    /* not logged in it */
} pgd_http_t;


/* pgd_http.c */
pgd_http_edge_t *pgd_http_edge(pgd_http_t *h, const char *spec);
int pgd_http_in_step(pgd_t *d, pgd_edge_t *e);
double pgd_http_lag_s(pgd_t *d, pgd_edge_t *e);
int64_t pgd_http_lag_revisions(pgd_t *d, pgd_edge_t *e);
extern const double pgd_http_buckets[PGD_HTTP_BUCKETS];
extern const char *const pgd_http_results[PGD_HTTP_RESULTS];

/* pgd_http_conn.c: MHD's callbacks (cls: the pgd_t), and the loop's */
void pgd_http_conn_notify(void *cls, struct MHD_Connection *c, void **ctx,
    enum MHD_ConnectionNotificationCode code);
void pgd_http_conn_done(void *cls, struct MHD_Connection *c, void **req,
    enum MHD_RequestTerminationCode code);
void pgd_http_mhd_log(void *cls, const char *fmt, va_list ap);
void pgd_http_conn_busy(struct MHD_Connection *c);
void pgd_http_conn_sweep(pgd_t *d, double now);
long pgd_http_conn_wait_ms(pgd_t *d, double now);

/* A line a client caused (an event of its connection), limited in rate;
 * and the limit's window closed when over. */
void pgd_http_log(pgd_t *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pgd_http_log_window(pgd_t *d, double now);

/* pgd_http_render.c: new text (*len bytes, NUL-terminated) or new JSON,
 * NULL out of memory. */
char *pgd_http_metrics(pgd_t *d, size_t *len);
json_t *pgd_http_health(pgd_t *d, int *code);
json_t *pgd_http_status(pgd_t *d);

/* text as valid UTF-8 (each invalid byte U+FFFD) with an edge URL's
 * user:password@ masked: what a label, a log or the page may show */
void pgd_http_clean(const char *s, char *buf, size_t size);

#endif /* PGD_HTTP_PRIVATE_H */
