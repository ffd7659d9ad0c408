
/*
 * Private header of ngx_http_portal_gate_module: what its files share.
 *
 *   ngx_http_portal_gate_module.c     directives, configuration, the gate
 *   ngx_http_portal_gate_variables.c  $portal_gate_* and $portal_flag_NAME
 *   ngx_http_portal_gate_api.c        the JSON API (portal_gate_api)
 *   ngx_http_portal_gate_patch.c      the API's PATCH snapshot: a patch of
 *                                     flags merged into the zone's snapshot
 *   ngx_http_portal_gate_overrides.c  kill overrides (the API's overrides)
 *   ngx_http_portal_gate_acme.c       ACME http-01 challenges: answered at
 *                                     the edge, set by the API's challenges
 *   ngx_http_portal_gate_token.c      trusted company identity: the company
 *                                     from a signed token, each worker's
 *                                     cache of verified tokens
 *   ngx_http_portal_gate_zone.c       the shared zone: init, reload, resize
 *   ngx_http_portal_gate_pieces.c     the zone's snapshot, an index and its
 *                                     pieces: the swap, each worker's copy
 *                                     of what changed, whole copies
 *   ngx_http_portal_gate_state.c      the state file: read at start,
 *                                     written after each accepted snapshot
 *   ngx_http_portal_gate_journal.c    the journal of patches beside it
 *   ngx_http_portal_gate_metrics.c    portal_gate_metrics (Prometheus) and
 *                                     portal_gate_health: per-worker
 *                                     counters in a zone of their own
 */


#ifndef _NGX_HTTP_PORTAL_GATE_MODULE_H_INCLUDED_
#define _NGX_HTTP_PORTAL_GATE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <portal_gate.h>
#include <pg_state.h>
#include <pg_token.h>


#define NGX_HTTP_PORTAL_GATE_MAGIC     0x50475a4e   /* "PGZN" */
#define NGX_HTTP_PORTAL_GATE_LAYOUT    6

#define NGX_HTTP_PORTAL_GATE_OFF_STATUS  0
#define NGX_HTTP_PORTAL_GATE_OFF_NAMED   1
#define NGX_HTTP_PORTAL_GATE_OFF_URL     2

#define NGX_HTTP_PORTAL_GATE_VAR_COMPANY   0
#define NGX_HTTP_PORTAL_GATE_VAR_DECISION  1
#define NGX_HTTP_PORTAL_GATE_VAR_REASON    2
#define NGX_HTTP_PORTAL_GATE_VAR_FLAG      3
#define NGX_HTTP_PORTAL_GATE_NVARS         4

#define NGX_HTTP_PORTAL_GATE_ERR_LEN   256

#define NGX_HTTP_PORTAL_GATE_DEFAULT_ENV  "production"

/* ACME http-01 challenges: the limits of the API's PUT challenges */
#define NGX_HTTP_PORTAL_GATE_CHALLENGES_MAX    128
#define NGX_HTTP_PORTAL_GATE_TOKEN_MAX         128
#define NGX_HTTP_PORTAL_GATE_KEY_AUTH_MAX      256

/* The most leeway=: it absorbs clock skew, it does not extend tokens */
#define NGX_HTTP_PORTAL_GATE_TOKEN_LEEWAY_MAX  3600

/*
 * The largest state file read at start: eight times the zone, never less
 * than 1m. The module writes compact JSON, about the blob's size; the
 * writer refuses to write a larger file than a restart would read.
 */
#define NGX_HTTP_PORTAL_GATE_STATE_MAX(zone)                                  \
    ngx_max((size_t) (zone) * 8, (size_t) 1024 * 1024)


/*
 * The journal of patches (ngx_http_portal_gate_journal.c): past this many
 * records, or more bytes than the last state file and at least _MIN, the
 * next change writes the state file whole (the compaction).
 */
#define NGX_HTTP_PORTAL_GATE_JOURNAL_RECORDS  1000
#define NGX_HTTP_PORTAL_GATE_JOURNAL_MIN      (64 * 1024)


/*
 * The zone's set of ACME challenges, one slab allocation replaced whole:
 * n pairs "TOKEN\0KEY_AUTHORIZATION\0", sorted by token.
 */
typedef struct {
    ngx_uint_t                   n;
    size_t                       size;          /* of data */
    u_char                       data[1];
} ngx_http_portal_gate_challenges_t;


/* One piece of a snapshot (include/pg_blob.h): in the zone, a slab
 * allocation never written once in; in a worker, its own copy. */
typedef struct {
    uint64_t                     id;            /* never reused in a zone */
    u_char                      *data;
    size_t                       size;
    ngx_uint_t                   kept;          /* a worker's, during a
                                                   refresh: held already */
} ngx_http_portal_gate_piece_t;


/*
 * The start of the contents of each of the module's zones (the snapshot
 * zone, the metrics zone): what wrote them, checked when a reload hands
 * a zone over (ngx_http_portal_gate_zone_shared()).
 */
typedef struct {
    ngx_uint_t                   magic;
    ngx_uint_t                   layout;
} ngx_http_portal_gate_zone_header_t;


/* The zone's contents: shpool->data points here. */
typedef struct {
    ngx_http_portal_gate_zone_header_t  header;
    ngx_atomic_t                 generation;    /* >= 1, bumped per swap */
    u_char                      *index;         /* NULL: empty snapshot */
    size_t                       index_size;
    ngx_http_portal_gate_piece_t  *pieces;      /* [npieces], in the
                                                   index's order */
    ngx_uint_t                   npieces;
    size_t                       blob_size;     /* index and pieces */
    uint64_t                     piece_serial;  /* the next piece id, under
                                                   the lock: 64 bits on
                                                   every platform */
    int64_t                      revision;
    time_t                       applied_at;    /* 0: never */
    ngx_uint_t                   restored;      /* from the state file */
    ngx_uint_t                   swapping;      /* old snapshot freed, new not
                                                   yet in: set only while
                                                   a writer holds the lock,
                                                   or if it died there */
    ngx_uint_t                   retired;       /* a resize handed the
                                                   snapshot to a new zone */
    int64_t                      nomem_revision; /* the last 507, logged */
    ngx_atomic_uint_t            carried_generation; /* the old zone's, at
                                                        a resize's copy */
    ngx_uint_t                   noverrides;
    pg_override_t                overrides[PG_OVERRIDES_MAX];
    ngx_uint_t                   state_corrupt; /* not read: keep it */
    ngx_uint_t                   state_failed;
    time_t                       state_written_at;
    u_char                       state_error[NGX_HTTP_PORTAL_GATE_ERR_LEN];
    size_t                       state_bytes;   /* the last whole file's */
    uint64_t                     journal_id;    /* the state file's */
    ngx_atomic_uint_t            journal_generation; /* the generation the
                                                   state file and its
                                                   journal hold; 0: none,
                                                   the next change writes
                                                   the file whole */
    ngx_atomic_uint_t            state_generation; /* the newest
                                                   generation the state
                                                   file or its journal
                                                   holds, written if not
                                                   yet synced: an older
                                                   file never replaces it */
    ngx_atomic_uint_t            durable_generation; /* the newest known
                                                   synced, file and
                                                   folder */
    ngx_uint_t                   journal_named; /* the journal's name is
                                                   synced (its folder) */
    ngx_uint_t                   journal_records;
    size_t                       journal_bytes;
    ngx_uint_t                   journal_serial;
    ngx_http_portal_gate_challenges_t  *challenges;  /* NULL: none */
    ngx_uint_t                   challenges_nomem; /* a 507 was logged */
} ngx_http_portal_gate_shctx_t;


/* shm_zone->data */
typedef struct ngx_http_portal_gate_zone_ctx_s
    ngx_http_portal_gate_zone_ctx_t;

struct ngx_http_portal_gate_zone_ctx_s {
    ngx_http_portal_gate_shctx_t     *sh;
    ngx_slab_pool_t                  *shpool;
    ngx_http_portal_gate_zone_ctx_t  *old;      /* the zone a resize copied,
                                                   until it is retired */
    ngx_str_t                         state;    /* "" without state= */
#if (NGX_THREADS)
    ngx_thread_pool_t                *thread_pool; /* writes the state
                                                      file */
#endif
};


/* portal_gate_company_token: one per directive */
typedef struct {
    ngx_http_complex_value_t      value;
    pg_token_keys_t              *keys;         /* freed with the cycle */
    ngx_str_t                     keys_file;
    ngx_str_t                     claim;        /* NUL-terminated */
    time_t                        leeway;
} ngx_http_portal_gate_token_t;


typedef struct ngx_http_portal_gate_token_cache_s
    ngx_http_portal_gate_token_cache_t;


typedef struct {
    ngx_shm_zone_t               *shm_zone;

    /* this worker's copy of the snapshot: the index and its pieces */
    ngx_atomic_uint_t             generation;
    u_char                       *snap_index;
    ngx_http_portal_gate_piece_t *pieces;
    const unsigned char         **piece_ptrs;
    ngx_uint_t                    npieces;
    pg_snap_t                     snap;

    /* what its last refresh copied, for GET status */
    size_t                        copied_bytes;
    ngx_uint_t                    copied_pieces;
    ngx_uint_t                    kept_pieces;

    ngx_int_t                     index[NGX_HTTP_PORTAL_GATE_NVARS];

    ngx_uint_t                    gates;        /* portal_gate directives */
    ngx_uint_t                    apis;         /* portal_gate_api */
    ngx_uint_t                    acme;         /* ..._acme_challenge on */

    /* this worker's verified company tokens (made at first use) */
    ngx_http_portal_gate_token_cache_t  *token_cache;
    ngx_uint_t                    tokens;       /* ..._company_token */

    ngx_uint_t                    metrics;      /* portal_gate_metrics */
    ngx_uint_t                    health;       /* portal_gate_health */
    ngx_shm_zone_t               *metrics_zone; /* NULL: neither is used */
} ngx_http_portal_gate_main_conf_t;


typedef struct {
    ngx_flag_t                    acme_challenge;
} ngx_http_portal_gate_srv_conf_t;


/*
 * The metrics' pair a gate last counted under, in this worker (the conf's
 * pages are the worker's own after fork): a pair keeps its position for
 * the metrics zone's life, so the environment, which may come from a
 * variable, is the only key. Spares each request the pair table's hash.
 */
typedef struct {
    ngx_uint_t                    set;
    ngx_uint_t                    pair;
    size_t                        env_len;
    u_char                        env[PG_NAME_MAX];
} ngx_http_portal_gate_metrics_cache_t;


typedef struct {
    ngx_str_t                     flag;
    ngx_uint_t                    off;          /* NGX_HTTP_PORTAL_GATE_OFF_* */
    ngx_uint_t                    status;
    ngx_str_t                     named;
    ngx_http_complex_value_t      url;
    ngx_http_portal_gate_metrics_cache_t  metrics;
} ngx_http_portal_gate_gate_t;


typedef struct {
    ngx_http_portal_gate_gate_t  *gate;         /* NULL: no gate */
    ngx_http_complex_value_t     *env;          /* NULL: "production" */
    ngx_http_complex_value_t     *company;      /* NULL: no company */
    ngx_http_portal_gate_token_t *token;        /* NULL: none; when set,
                                                   the only source of the
                                                   company */
    ngx_flag_t                    api;
    size_t                        api_max_body_size;
    time_t                        health_stale; /* portal_gate_health
                                                   stale=; 0: none */
    ngx_uint_t                    observe;      /* portal_gate_metrics or
                                                   _health here: a gate
                                                   inherited is not run */
} ngx_http_portal_gate_loc_conf_t;


typedef struct {
    pg_result_t                   result;
    ngx_str_t                     company;      /* "" when no company */
    ngx_str_t                     env;          /* as evaluated */
} ngx_http_portal_gate_decision_t;


/* The module's request context, made by whichever part needs it first. */
typedef struct {
    /* the API */
    ngx_uint_t                    answered;     /* the API sent this answer */
    ngx_buf_t                    *error;        /* JSON for nginx's own page */

    /* the company token's verdict for this request, so that the gate,
     * $portal_flag_* and $portal_gate_token_error verify (and log) it once */
    ngx_http_portal_gate_token_t *token;        /* NULL: none yet */
    ngx_str_t                     token_value;
    ngx_str_t                     token_company;
    pg_token_status_t             token_status;
} ngx_http_portal_gate_ctx_t;


/* ngx_http_portal_gate_module.c */
void ngx_http_portal_gate_decide(ngx_http_request_t *r,
    ngx_str_t *flag, ngx_http_portal_gate_decision_t *d);

/* ngx_http_portal_gate_variables.c */
ngx_int_t ngx_http_portal_gate_add_variables(ngx_conf_t *cf);
void ngx_http_portal_gate_set_variables(ngx_http_request_t *r,
    ngx_str_t *flag, ngx_http_portal_gate_decision_t *d);

/* ngx_http_portal_gate_api.c */
ngx_int_t ngx_http_portal_gate_api_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_portal_gate_api_send(ngx_http_request_t *r,
    ngx_uint_t status, json_t *json);
ngx_int_t ngx_http_portal_gate_send(ngx_http_request_t *r,
    ngx_uint_t status, char *type, ngx_buf_t *b);
ngx_uint_t ngx_http_portal_gate_json_failed(json_error_t *jerr);
ngx_int_t ngx_http_portal_gate_api_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *fmt, ...);
ngx_int_t ngx_http_portal_gate_api_not_allowed(ngx_http_request_t *r,
    char *allow, ngx_str_t *path);
ngx_int_t ngx_http_portal_gate_api_arg(ngx_http_request_t *r, char *name,
    ngx_str_t *value);
ngx_int_t ngx_http_portal_gate_api_read_body(ngx_http_request_t *r,
    u_char **body, size_t *len);
json_t *ngx_http_portal_gate_api_zone_json(ngx_http_request_t *r,
    ngx_atomic_uint_t *generation);
ngx_int_t ngx_http_portal_gate_api_commit(ngx_http_request_t *r,
    pg_build_t *b, ngx_uint_t force, ngx_atomic_uint_t base, u_char *record,
    size_t record_len);

uint64_t ngx_http_portal_gate_piece_ids(ngx_http_request_t *r);

ngx_int_t ngx_http_portal_gate_api_filter_init(ngx_conf_t *cf);

/* ngx_http_portal_gate_patch.c */
void ngx_http_portal_gate_api_patch_snapshot(ngx_http_request_t *r);

/* ngx_http_portal_gate_overrides.c */
ngx_int_t ngx_http_portal_gate_api_overrides(ngx_http_request_t *r,
    ngx_str_t *path);
json_t *ngx_http_portal_gate_overrides_json(ngx_http_request_t *r);

/* ngx_http_portal_gate_acme.c */
ngx_int_t ngx_http_portal_gate_acme_init(ngx_conf_t *cf);
ngx_int_t ngx_http_portal_gate_api_challenges(ngx_http_request_t *r,
    ngx_str_t *path);
ngx_uint_t ngx_http_portal_gate_challenges_count(
    ngx_http_portal_gate_shctx_t *sh);
void ngx_http_portal_gate_challenges_carry(ngx_shm_zone_t *shm_zone,
    ngx_http_portal_gate_zone_ctx_t *octx);

/* ngx_http_portal_gate_token.c */
char *ngx_http_portal_gate_company_token(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
pg_token_status_t ngx_http_portal_gate_token_company(ngx_http_request_t *r,
    ngx_http_portal_gate_token_t *token, ngx_str_t *company);
ngx_int_t ngx_http_portal_gate_token_error_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

/* ngx_http_portal_gate_zone.c */
ngx_int_t ngx_http_portal_gate_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
void *ngx_http_portal_gate_zone_shared(ngx_shm_zone_t *shm_zone, void *osh,
    ngx_uint_t magic, ngx_uint_t layout, size_t size, char *what,
    ngx_uint_t *fresh);
ngx_int_t ngx_http_portal_gate_retire(ngx_cycle_t *cycle);

/* ngx_http_portal_gate_pieces.c */
pg_snap_t *ngx_http_portal_gate_snapshot(ngx_http_request_t *r);
void ngx_http_portal_gate_worker_snapshot_free(
    ngx_http_portal_gate_main_conf_t *pmcf);
ngx_int_t ngx_http_portal_gate_apply(ngx_http_request_t *r, pg_build_t *b,
    ngx_uint_t force, ngx_atomic_uint_t base, int64_t *current,
    ngx_atomic_uint_t *generation);
ngx_int_t ngx_http_portal_gate_zone_index(ngx_http_request_t *r,
    u_char **index, size_t *size, ngx_atomic_uint_t *generation,
    int64_t *revision);
ngx_int_t ngx_http_portal_gate_zone_packed_locked(
    ngx_http_portal_gate_shctx_t *sh, ngx_slab_pool_t *pool, ngx_log_t *log,
    u_char **blob, size_t *size);
void ngx_http_portal_gate_zone_free_locked(ngx_http_portal_gate_shctx_t *sh,
    ngx_slab_pool_t *pool);
ngx_int_t ngx_http_portal_gate_zone_store_locked(
    ngx_http_portal_gate_shctx_t *sh, ngx_slab_pool_t *pool,
    const pg_snap_t *snap);

/* ngx_http_portal_gate_state.c */
void ngx_http_portal_gate_state_write(ngx_http_request_t *r,
    ngx_atomic_uint_t generation, ngx_uint_t status, json_t *answer,
    ngx_uint_t persisted);
ngx_int_t ngx_http_portal_gate_state_restore(ngx_shm_zone_t *shm_zone);

/* ngx_http_portal_gate_journal.c */
uint64_t ngx_http_portal_gate_journal_id(ngx_http_portal_gate_shctx_t *sh);
ngx_int_t ngx_http_portal_gate_journal_append(ngx_http_request_t *r,
    ngx_atomic_uint_t base, ngx_atomic_uint_t generation, u_char *body,
    size_t len, json_t *answer);

/* ngx_http_portal_gate_metrics.c */
char *ngx_http_portal_gate_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_portal_gate_health(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_portal_gate_metrics_init_conf(ngx_conf_t *cf,
    ngx_http_portal_gate_main_conf_t *pmcf);
ngx_int_t ngx_http_portal_gate_metrics_init(ngx_conf_t *cf);
void ngx_http_portal_gate_metrics_count(ngx_http_request_t *r,
    ngx_str_t *flag, ngx_http_portal_gate_decision_t *d,
    ngx_http_portal_gate_gate_t *gate);
void ngx_http_portal_gate_metrics_confirm(ngx_http_request_t *r);
void ngx_http_portal_gate_metrics_check_slots(ngx_cycle_t *cycle);


extern ngx_module_t  ngx_http_portal_gate_module;


#endif /* _NGX_HTTP_PORTAL_GATE_MODULE_H_INCLUDED_ */
