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
 *   error_log          /var/log/portal-gate/portal-gated.log;  # default:
 *                                     # stderr; SIGUSR1 reopens it
 *   pid                /run/portal-gate/portal-gated.pid;  # default: none
 *   require_reason     kill off;      # portal-gatectl: these commands
 *                                     # refuse to run without --reason
 *   state_dir          /var/lib/portal-gate;
 *   nginx              conf=/etc/nginx/nginx.conf pid=/run/nginx.pid;
 *   certificate        staging.example.com { ... }   # pg_conf_cert.c
 *   listen             127.0.0.1:9145;    # portal-gated's own HTTP endpoint
 *                                     # (pgd_http.c); default: none
 *   server_name        status.example.com *.ops.example.com;
 *                                     # Host names its page answers to,
 *                                     # beside localhost and IP literals
 *   redis_replicas     1 1s;          # portal-gatectl: a write waits (WAIT)
 *                                     # until this many replicas have it,
 *                                     # at most this long; 0: no wait
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
#define PG_CONF_PATH_MAX     1024   /* bytes of a path in the file */
#define PG_CONF_NGINX_MAX    8      /* nginx lines */
#define PG_CONF_CERTS_MAX    16     /* certificate blocks */
#define PG_CONF_CERT_NAMES   100    /* names of one certificate */
#define PG_CONF_CONTACTS     4      /* contact URLs of one certificate */
#define PG_CONF_LISTEN_MAX   64     /* bytes of a listen value: "[v6]:port" */
#define PG_CONF_SERVER_NAMES 16     /* names of server_name */
#define PG_CONF_HOST_MAX     253    /* bytes of a DNS name */
#define PG_CONF_REPLICAS_MAX 100    /* redis_replicas' number */
#define PG_CONF_REPLICAS_MS  1000   /* redis_replicas' default timeout */

#define PG_CONF_STATE_DIR    "/var/lib/portal-gate"
#define PG_CONF_NGINX_BINARY "/usr/sbin/nginx"

#define PG_CONF_ISSUER_ACME  1
#define PG_CONF_ISSUER_LOCAL 2

/* nginx conf=PATH [pid=PATH] [binary=PATH] [prefix=DIR] [reload=on|off];
 * an nginx whose certificates portal-gated installs: `binary -t -c conf
 * [-p prefix]`, then, unless reload=off, SIGHUP to the pid in pid, or
 * without pid `binary -s reload -c conf [-p prefix]`. */
typedef struct {
    char   conf[PG_CONF_PATH_MAX];
    char   pid[PG_CONF_PATH_MAX];
    char   binary[PG_CONF_PATH_MAX];
    char   prefix[PG_CONF_PATH_MAX];    /* "" when not given */
    int    reload;                      /* 0: reload=off, no SIGHUP (nginx
                                           reads the pair at each
                                           handshake); pid "": by
                                           binary -s reload */
    int    line;
} pg_conf_nginx_t;

/* certificate NAME { ... }  (DESIGN.md, "Staging certificates"). */
typedef struct {
    char   name[256];                   /* the block's */
    char   names[4096];                 /* the names, space-separated:
                                           the block's name by default */
    size_t nnames;
    int    issuer;                      /* PG_CONF_ISSUER_* */
    char   acme[PG_CONF_PATH_MAX];      /* the directory URL */
    char   ca_cert[PG_CONF_PATH_MAX];   /* issuer local CERT KEY */
    char   ca_key[PG_CONF_PATH_MAX];
    char   acme_ca[PG_CONF_PATH_MAX];   /* "": the system's trust */
    char   contact[PG_CONF_CONTACTS][256];
    size_t ncontacts;
    int    key_type;                    /* 0 ecdsa, 1 rsa (PG_CERT_KEY_*) */
    char   profile[65];                 /* "" when not given */
    char   fullchain[PG_CONF_PATH_MAX];
    char   privkey[PG_CONF_PATH_MAX];
    int    line;                        /* of "certificate" */
} pg_conf_cert_t;

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
    char             error_log[PG_CONF_PATH_MAX];  /* absolute; "": stderr */
    char             pid[PG_CONF_PATH_MAX];     /* absolute; "": no file */
    char             require_reason[PG_CONF_REASON_MAX][16];
    size_t           nrequire_reason;
    int              require_reason_line;   /* where it is, for messages */
    char             state_dir[PG_CONF_PATH_MAX];
    pg_conf_nginx_t  nginx[PG_CONF_NGINX_MAX];
    size_t           nnginx;
    pg_conf_cert_t   certs[PG_CONF_CERTS_MAX];
    size_t           ncerts;
    char             listen[PG_CONF_LISTEN_MAX];   /* ADDR:PORT as written;
                                       "" when there is no listen line */
    char             listen_addr[PG_CONF_LISTEN_MAX];  /* the address alone,
                                       numeric: "127.0.0.1", "::1" */
    int              listen_v6;     /* listen_addr is IPv6 */
    int              listen_port;   /* 1..65535; 0 when no listen line */
    int              listen_line;
    char             server_names[PG_CONF_SERVER_NAMES][PG_CONF_HOST_MAX + 1];
                                    /* the Host names that listen's page
                                       and /status.json answer, beside
                                       localhost and IP literals:
                                       lowercase, no final dot;
                                       "*.example.com" any name under it */
    size_t           nserver_names;
    int              redis_replicas;    /* portal-gatectl's writes WAIT
                                       for this many replicas (when the
                                       master has one); 0: no WAIT */
    long             redis_replicas_ms; /* ... at most this long */
} pg_conf_t;

/* Defaults: redis://127.0.0.1:6379/0, "portal-gate:", production, no
 * edges, 2 s, info, the log on stderr, no pid file, PG_CONF_STATE_DIR, no
 * nginx, no certificates, redis_replicas 1 1s. */
void pg_conf_defaults(pg_conf_t *conf);

/*
 * Read path over the defaults already in *conf: a directive replaces its
 * value; the first `edge` line replaces the edges, the next ones add to
 * them. On PG_ERR *conf is untouched and err says "FILE:LINE: what"
 * ("cannot open FILE: reason" when there is no line). The grammar in
 * full: pg_conf.c.
 */
int pg_conf_load(const char *path, pg_conf_t *conf, pg_error_t *err);

/*
 * redis_replicas' values, for the file and for portal-gatectl's
 * --replicas: num "0".."100", timeout nginx's time (NULL: the default),
 * 1ms..1h, and none with 0. PG_ERR with why (a static text) when one is
 * bad; *bad says which: 1 num, 2 timeout.
 */
int pg_conf_parse_replicas(const char *num, const char *timeout, int *n,
    long *ms, const char **why, int *bad);

/* "debug" ... "error" and back. */
const char *pg_conf_log_level_name(int level);

#endif /* PG_CONF_H */
