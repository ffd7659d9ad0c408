/*
 * pg_ctl.h: portal-gatectl's private header, what its files share.
 *
 *   portal-gatectl.c   options, the command table, main, and the checks
 *                      and error messages every command uses
 *   pg_ctl_change.c    the writing commands: create, on, off, kill,
 *                      rollout, allow, deny, unallow, undeny, set, delete,
 *                      and env (list, add)
 *   pg_ctl_read.c      list, show, explain, audit
 *   pg_ctl_edges.c     the commands that ask the edges: init (and init
 *                      --from-edge), status (with the controllers' beats),
 *                      --wait
 *   pg_ctl_direct.c    the break-glass kill --direct and release, which
 *                      reach the edges without Redis
 *   pg_ctl_ha.c        a write's WAIT for replicas (redis_replicas,
 *                      --replicas) and its retry after a failover
 *
 * Every command is a pg_ctl_run_pt: it prints what it did, and returns an
 * exit status (PG_CTL_OK, PG_CTL_FAILED or PG_CTL_USAGE), with its error
 * already said on stderr.
 */

#ifndef PG_CTL_H
#define PG_CTL_H

#include <stddef.h>             /* size_t */
#include <stdint.h>             /* int64_t */
#include "pg_conf.h"            /* pg_conf_t: -c FILE */
#include "pg_ctl_store.h"       /* pg_store_t */
#include "pg_edge.h"            /* pg_edge_t, PG_EDGE_MAX */
#include "pg_redis.h"           /* pg_redis_url_t */


#define PG_CTL_OK        0
#define PG_CTL_FAILED    1
#define PG_CTL_USAGE     2

#define PG_CTL_TIMEOUT_MS  5000
#define PG_CTL_EDGE_MS     2000     /* one request to an edge */
#define PG_CTL_WAIT_S      10       /* --wait without SECONDS */
#define PG_CTL_STATUS_MS   2000     /* status: Redis, when it is down */
#define PG_CTL_DIRECT_MS   2000     /* kill --direct, release: the edges */
#define PG_CTL_AFTER_MS    1000     /* ... then Redis, if it answers */

/* -c's default, after $PORTAL_GATE_CONF: used when it exists */
#define PG_CTL_CONF_DEFAULT  "/etc/portal-gate/portal-gated.conf"


typedef struct {
    const char      *redis_url;
    const char      *prefix;
    const char      *env;
    const char      *actor;
    const char      *actor_from;    /* where the actor came from */
    const char      *reason;
    const char      *requires;
    const char      *description;
    int              json;
    int              direct;        /* kill --direct, release --direct */
    size_t           count;
    double           wait;          /* seconds; < 0: no --wait */
    const char      *from_edge;
    const char      *cmd;           /* the command, and its flag operand */
    const char      *flag;          /* (or NULL): what --wait checks */
    const char      *conf;          /* -c FILE or its default; NULL: none */
    const pg_conf_t *cf;            /* its config (borrowed), or NULL; with
                                       nenvs 0 when it has no environments
                                       line */
    pg_edge_t        edges[PG_EDGE_MAX];
    size_t           nedges;
    int              edges_given;   /* 1: by --edge, 0: -c's (or none) */
    pg_redis_url_t   url;           /* the store's Redis */
    char             where[300];    /* the same, for messages */
    int              replicas;      /* a write WAITs for these (when the
                                       master has a replica); 0: none */
    long             replicas_ms;   /* ... at most this long */
    int              replicas_given;    /* by --replicas, not -c's */
    int              ha_tries;      /* the master was found again so often
                                       (pg_ctl_ha.c) */
    double           ha_start_ms;   /* since the first time it went away */
} pg_ctl_opts_t;


typedef int (*pg_ctl_run_pt)(pg_store_t *store, pg_ctl_opts_t *o,
    const char *cmd, int argc, char **argv);


/* portal-gatectl.c */
int pg_ctl_error(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int pg_ctl_store_error(pg_store_t *store);
int pg_ctl_check_flag(const char *flag);
int pg_ctl_check_text(const char *what, const char *hint, const char *text);
const char *pg_ctl_closest(const char *word, const json_t *names);
int pg_ctl_connect(pg_store_t *store, pg_ctl_opts_t *o, int timeout_ms,
    pg_error_t *err);
void pg_ctl_warn_env(pg_store_t *store, const pg_ctl_opts_t *o);
size_t pg_ctl_utf8_cut(const char *text, size_t max);
void pg_ctl_shell_quote(const char *s, char *buf, size_t size);
void pg_ctl_hint_direct(const pg_store_t *store, const pg_ctl_opts_t *o,
    const char *cmd, const char *flag);

/* pg_ctl_change.c */
int pg_ctl_change(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);
int pg_ctl_delete(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);
int pg_ctl_cert(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);

/* pg_ctl_token.c: `portal-gatectl token ...` (argv[0] "token") */
int pg_ctl_token(int argc, char **argv);
int pg_ctl_env(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);
int pg_ctl_store_kill(pg_store_t *store, pg_ctl_opts_t *o, const char *flag,
    const char *reason, pg_store_change_t *change);
void pg_ctl_print_change(pg_ctl_opts_t *o, const char *cmd,
    const char *flag, pg_store_change_t *ch);
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
double pg_ctl_now_ms(void);
int pg_ctl_init(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);
int pg_ctl_status(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);
int pg_ctl_wait(pg_store_t *store, pg_ctl_opts_t *o, int64_t revision);

/* pg_ctl_ha.c */
int pg_ctl_ha_replicas(pg_store_t *store, pg_ctl_opts_t *o);
/* "replicas: 1 connected; writes wait for 1 within 1s", for status */
void pg_ctl_ha_describe(pg_store_t *store, const pg_ctl_opts_t *o,
    char *buf, size_t size);
void pg_ctl_ha_setup(pg_store_t *store, pg_ctl_opts_t *o);
int pg_ctl_ha_connect(pg_store_t *store, pg_ctl_opts_t *o, pg_error_t *err);
void pg_ctl_ha_applied(const pg_store_t *store);
int pg_ctl_ha_option(pg_ctl_opts_t *o, const char *arg);

/* pg_ctl_direct.c */
int pg_ctl_direct_kill(pg_store_t *store, pg_ctl_opts_t *o,
    const char *flag);
int pg_ctl_release(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv);


#endif /* PG_CTL_H */
