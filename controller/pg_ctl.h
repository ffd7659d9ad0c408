/*
 * pg_ctl.h: portal-gatectl's private header, what its files share.
 *
 *   portal-gatectl.c   options, the command table, main, and the checks
 *                      and error messages every command uses
 *   pg_ctl_change.c    the writing commands: create, on, off, kill,
 *                      rollout, allow, deny
 *   pg_ctl_read.c      list, show, explain, audit
 *   pg_ctl_edges.c     init (and init --from-edge), status, --wait
 *
 * Every command is a pg_ctl_run_pt: it prints what it did, and returns an
 * exit status (PG_CTL_OK, PG_CTL_FAILED or PG_CTL_USAGE), with its error
 * already said on stderr.
 */

#ifndef PG_CTL_H
#define PG_CTL_H

#include <stddef.h>             /* size_t */
#include <stdint.h>             /* int64_t */
#include "pg_ctl_store.h"       /* pg_store_t */
#include "pg_edge.h"            /* pg_edge_t, PG_EDGE_MAX */


#define PG_CTL_OK        0
#define PG_CTL_FAILED    1
#define PG_CTL_USAGE     2

#define PG_CTL_TIMEOUT_MS  5000
#define PG_CTL_EDGE_MS     2000     /* one request to an edge */
#define PG_CTL_WAIT_S      10       /* --wait without SECONDS */


typedef struct {
    const char   *redis_url;
    const char   *prefix;
    const char   *env;
    const char   *actor;
    const char   *reason;
    const char   *requires;
    const char   *description;
    int           json;
    size_t        count;
    double        wait;             /* seconds; < 0: no --wait */
    const char   *from_edge;
    const char   *conf;
    pg_edge_t     edges[PG_EDGE_MAX];
    size_t        nedges;
} pg_ctl_opts_t;


typedef int (*pg_ctl_run_pt)(pg_store_t *store, pg_ctl_opts_t *o,
    const char *cmd, int argc, char **argv);


/* portal-gatectl.c */
int pg_ctl_error(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int pg_ctl_store_error(pg_store_t *store);
int pg_ctl_check_flag(const char *flag);

/* pg_ctl_change.c */
int pg_ctl_change(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);
void pg_ctl_diff(const json_t *before, const json_t *after, char *buf,
    size_t size);

/* pg_ctl_read.c */
int pg_ctl_list(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);
int pg_ctl_show(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);
int pg_ctl_explain(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);
int pg_ctl_audit(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);

/* pg_ctl_edges.c */
int pg_ctl_init(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);
int pg_ctl_status(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);
int pg_ctl_wait(pg_store_t *store, pg_ctl_opts_t *o, int64_t revision);


#endif /* PG_CTL_H */
