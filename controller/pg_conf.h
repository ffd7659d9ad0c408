/*
 * pg_conf.h: portal-gated's configuration file, also read by
 * `portal-gatectl -c FILE` for its edges. nginx-like lines, `name value...;`,
 * `#` starts a comment (DESIGN.md):
 *
 *   redis              redis://127.0.0.1:6379/0;
 *   prefix             portal-gate:;
 *   environments       production staging;
 *   edge               http://127.0.0.1:8081/portal-gate/;     # repeatable
 *   edge               unix:/run/portal-gate/api.sock:/portal-gate/;
 *   reconcile_interval 2s;
 *   log_level          info;          # debug|info|notice|warn|error
 *   require_reason     kill off;      # portal-gatectl: these commands
 *                                     # refuse to run without --reason
 *
 * Errors: PG_OK or PG_ERR; the message names the file and the line, as
 * nginx does: "portal-gated.conf:4: unknown directive \"edges\"".
 * Ownership: a pg_conf_t owns nothing outside itself.
 */

#ifndef PG_CONF_H
#define PG_CONF_H

#include "portal_gate.h"        /* pg_error_t, PG_ENVS_MAX, PG_NAME_MAX */
#include "pg_edge.h"            /* pg_edge_t, PG_EDGE_MAX */
#include "pg_redis.h"           /* pg_redis_url_t */
#include "pg_store.h"           /* PG_STORE_PREFIX_MAX */

#define PG_LOG_DEBUG    0
#define PG_LOG_INFO     1
#define PG_LOG_NOTICE   2
#define PG_LOG_WARN     3
#define PG_LOG_ERROR    4

#define PG_CONF_REASON_MAX   16     /* commands in require_reason */

typedef struct {
    char             redis_url[1024];
    pg_redis_url_t   redis;
    char             prefix[PG_STORE_PREFIX_MAX + 1];
    char             envs[PG_ENVS_MAX][PG_NAME_MAX + 1];
    size_t           nenvs;
    pg_edge_t        edges[PG_EDGE_MAX];
    size_t           nedges;
    long             reconcile_ms;
    int              log_level;
    char             require_reason[PG_CONF_REASON_MAX][16];
    size_t           nrequire_reason;
    int              require_reason_line;   /* where it is, for messages */
} pg_conf_t;

/* Defaults: redis://127.0.0.1:6379/0, "portal-gate:", production, no
 * edges, 2 s, info. */
void pg_conf_defaults(pg_conf_t *conf);

/*
 * Read path over the defaults already in *conf: a directive replaces its
 * value; the first `edge` line replaces the edges, the next ones add to
 * them. On PG_ERR *conf is untouched and err says "FILE:LINE: what"
 * ("cannot open FILE: reason" when there is no line). The grammar in
 * full: pg_conf.c.
 */
int pg_conf_load(const char *path, pg_conf_t *conf, pg_error_t *err);

/* "debug" ... "error" and back. */
const char *pg_conf_log_level_name(int level);

#endif /* PG_CONF_H */
