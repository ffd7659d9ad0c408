
/*
 * ngx_http_portal_gate_module: gate and route requests by a per-company
 * feature flag, read from a shared-memory zone.
 *
 * The zone holds the compiled snapshot (include/portal_gate.h), a blob with
 * no pointers in it. Each worker keeps its own copy: per request it compares
 * the zone's generation with its copy's in one load, and copies the blob
 * again, under the slab pool's mutex, only when the generation has moved.
 * The API's PUT compiles and validates outside the lock, then swaps the blob
 * in under it, so readers see the old snapshot or the new one, never a mix.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <portal_gate.h>


#define NGX_HTTP_PORTAL_GATE_MAGIC     0x50475a4e   /* "PGZN" */
#define NGX_HTTP_PORTAL_GATE_LAYOUT    1

#define NGX_HTTP_PORTAL_GATE_OFF_STATUS  0
#define NGX_HTTP_PORTAL_GATE_OFF_NAMED   1
#define NGX_HTTP_PORTAL_GATE_OFF_URL     2

#define NGX_HTTP_PORTAL_GATE_VAR_COMPANY   0
#define NGX_HTTP_PORTAL_GATE_VAR_DECISION  1
#define NGX_HTTP_PORTAL_GATE_VAR_REASON    2
#define NGX_HTTP_PORTAL_GATE_VAR_FLAG      3
#define NGX_HTTP_PORTAL_GATE_NVARS         4

#define NGX_HTTP_PORTAL_GATE_ERR_LEN   256


/* The zone's contents: shpool->data points here. */
typedef struct {
    ngx_uint_t                   magic;
    ngx_uint_t                   layout;
    ngx_atomic_t                 generation;    /* >= 1, bumped per swap */
    u_char                      *blob;          /* NULL: empty snapshot */
    size_t                       blob_size;
    int64_t                      revision;
    time_t                       applied_at;    /* 0: never */
    ngx_uint_t                   restored;      /* from the state file */
    ngx_uint_t                   state_corrupt; /* not read: keep it */
    ngx_uint_t                   state_failed;
    time_t                       state_written_at;
    u_char                       state_error[NGX_HTTP_PORTAL_GATE_ERR_LEN];
} ngx_http_portal_gate_shctx_t;


/* shm_zone->data */
typedef struct {
    ngx_http_portal_gate_shctx_t  *sh;
    ngx_slab_pool_t               *shpool;
    ngx_str_t                      state;       /* "" without state= */
#if (NGX_THREADS)
    ngx_thread_pool_t             *thread_pool; /* writes the state file */
#endif
} ngx_http_portal_gate_zone_ctx_t;


/* One write of the state file; in r->pool, which the write outlives not. */
typedef struct {
    ngx_http_request_t               *request;
    ngx_http_portal_gate_zone_ctx_t  *ctx;
    ngx_log_t                        *log;
    int64_t                           revision;
    char                             *text;     /* malloc()ed JSON */
    size_t                            len;
    u_char                           *tmp;      /* the paths, NUL-ended */
    u_char                           *dir;
    u_char                           *corrupt;

    /* what _save() did, logged by _report() on the event loop */
    const char                       *failed;   /* the step, or NULL */
    u_char                           *path;
    ngx_err_t                         err;
    ngx_uint_t                        kept;     /* the corrupt file */
    ngx_err_t                         dir_err;  /* fsync of the folder */
    const char                       *dir_what;

#if (NGX_THREADS)
    /* a graceful shutdown waits for timers: the answer is still to go */
    ngx_event_t                       wait;
#endif
} ngx_http_portal_gate_state_t;


typedef struct {
    ngx_shm_zone_t               *shm_zone;

    /* this worker's copy of the snapshot */
    ngx_atomic_uint_t             generation;
    u_char                       *blob;
    pg_snap_t                     snap;

    ngx_int_t                     index[NGX_HTTP_PORTAL_GATE_NVARS];

    ngx_uint_t                    gates;        /* portal_gate directives */
    ngx_uint_t                    apis;         /* portal_gate_api */
} ngx_http_portal_gate_main_conf_t;


typedef struct {
    ngx_str_t                     flag;
    ngx_uint_t                    off;          /* NGX_HTTP_PORTAL_GATE_OFF_* */
    ngx_uint_t                    status;
    ngx_str_t                     named;
    ngx_http_complex_value_t      url;
} ngx_http_portal_gate_gate_t;


typedef struct {
    ngx_http_portal_gate_gate_t  *gate;         /* NULL: no gate */
    ngx_http_complex_value_t     *env;          /* NULL: "production" */
    ngx_http_complex_value_t     *company;      /* NULL: no company */
    ngx_flag_t                    api;
    size_t                        api_max_body_size;
} ngx_http_portal_gate_loc_conf_t;


/* A request to the API. */
typedef struct {
    ngx_uint_t                    answered;     /* the API sent this answer */
    ngx_buf_t                    *error;        /* JSON for nginx's own page */
} ngx_http_portal_gate_api_ctx_t;


typedef struct {
    pg_result_t                   result;
    ngx_str_t                     company;      /* "" when no company */
} ngx_http_portal_gate_decision_t;


static ngx_int_t ngx_http_portal_gate_handler(ngx_http_request_t *r);
static void ngx_http_portal_gate_decide(ngx_http_request_t *r,
    ngx_str_t *flag, ngx_http_portal_gate_decision_t *d);
static pg_snap_t *ngx_http_portal_gate_snapshot(ngx_http_request_t *r);
static void ngx_http_portal_gate_set_variables(ngx_http_request_t *r,
    ngx_str_t *flag, ngx_http_portal_gate_decision_t *d);
static void ngx_http_portal_gate_values(ngx_str_t *flag,
    ngx_http_portal_gate_decision_t *d, ngx_str_t *values);
static ngx_int_t ngx_http_portal_gate_off(ngx_http_request_t *r,
    ngx_http_portal_gate_gate_t *gate);

static ngx_int_t ngx_http_portal_gate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_portal_gate_flag_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_portal_gate_api_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_api_status(ngx_http_request_t *r);
static json_t *ngx_http_portal_gate_json_time(time_t t);
static ngx_int_t ngx_http_portal_gate_api_get_snapshot(ngx_http_request_t *r);
static void ngx_http_portal_gate_api_put_snapshot(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_api_eval(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_api_arg(ngx_http_request_t *r,
    char *name, ngx_str_t *value);
static ngx_int_t ngx_http_portal_gate_api_unknown(ngx_http_request_t *r,
    ngx_str_t *path);
static ngx_int_t ngx_http_portal_gate_api_not_allowed(ngx_http_request_t *r,
    char *allow, ngx_str_t *path);
static ngx_int_t ngx_http_portal_gate_api_read_body(ngx_http_request_t *r,
    u_char **body, size_t *len);
static ngx_int_t ngx_http_portal_gate_api_send(ngx_http_request_t *r,
    ngx_uint_t status, json_t *json);
static ngx_int_t ngx_http_portal_gate_api_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *fmt, ...);

static ngx_int_t ngx_http_portal_gate_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);

static ngx_int_t ngx_http_portal_gate_apply(ngx_http_request_t *r,
    unsigned char *blob, size_t size, int64_t *current);
static ngx_http_portal_gate_state_t *ngx_http_portal_gate_state_prepare(
    ngx_http_request_t *r, int64_t revision, unsigned char *blob,
    size_t size);
static void ngx_http_portal_gate_state_save(ngx_http_portal_gate_state_t *st);
static void ngx_http_portal_gate_state_report(
    ngx_http_portal_gate_state_t *st);
static void ngx_http_portal_gate_state_fail(ngx_http_portal_gate_state_t *st,
    ngx_err_t err, const char *what, u_char *path);
#if (NGX_THREADS)
static ngx_int_t ngx_http_portal_gate_state_post(
    ngx_http_portal_gate_state_t *st);
static void ngx_http_portal_gate_state_thread(void *data, ngx_log_t *log);
static void ngx_http_portal_gate_state_done(ngx_event_t *ev);
static void ngx_http_portal_gate_state_wait(ngx_event_t *ev);
#endif
static void ngx_http_portal_gate_put_done(ngx_http_request_t *r,
    int64_t revision);
static void ngx_http_portal_gate_state_failed(
    ngx_http_portal_gate_zone_ctx_t *ctx, ngx_log_t *log, int64_t revision,
    ngx_err_t err, const char *what, u_char *path);
static ngx_int_t ngx_http_portal_gate_resized(ngx_shm_zone_t *shm_zone);
static ngx_int_t ngx_http_portal_gate_restore(ngx_shm_zone_t *shm_zone);

static ngx_int_t ngx_http_portal_gate_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_portal_gate_add_variables(ngx_conf_t *cf);
static void *ngx_http_portal_gate_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_portal_gate_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_portal_gate_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_portal_gate_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_portal_gate_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_portal_gate_env(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_portal_gate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_portal_gate_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_portal_gate_cleanup(void *data);
static ngx_int_t ngx_http_portal_gate_init(ngx_conf_t *cf);


static ngx_command_t  ngx_http_portal_gate_commands[] = {

    { ngx_string("portal_gate_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_portal_gate_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("portal_gate_env"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_portal_gate_env,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_portal_gate_loc_conf_t, env),
      NULL },

    { ngx_string("portal_gate_company"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_portal_gate_loc_conf_t, company),
      NULL },

    { ngx_string("portal_gate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_portal_gate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("portal_gate_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_portal_gate_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("portal_gate_api_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_portal_gate_loc_conf_t, api_max_body_size),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_portal_gate_module_ctx = {
    ngx_http_portal_gate_add_variables,    /* preconfiguration */
    ngx_http_portal_gate_init,             /* postconfiguration */

    ngx_http_portal_gate_create_main_conf, /* create main configuration */
    ngx_http_portal_gate_init_main_conf,   /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_portal_gate_create_loc_conf,  /* create location configuration */
    ngx_http_portal_gate_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_portal_gate_module = {
    NGX_MODULE_V1,
    &ngx_http_portal_gate_module_ctx,      /* module context */
    ngx_http_portal_gate_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_portal_gate_vars[] = {

    { ngx_string("portal_gate_company"), NULL,
      ngx_http_portal_gate_variable, NGX_HTTP_PORTAL_GATE_VAR_COMPANY, 0, 0 },

    { ngx_string("portal_gate_decision"), NULL,
      ngx_http_portal_gate_variable, NGX_HTTP_PORTAL_GATE_VAR_DECISION, 0, 0 },

    { ngx_string("portal_gate_reason"), NULL,
      ngx_http_portal_gate_variable, NGX_HTTP_PORTAL_GATE_VAR_REASON, 0, 0 },

    { ngx_string("portal_gate_flag"), NULL,
      ngx_http_portal_gate_variable, NGX_HTTP_PORTAL_GATE_VAR_FLAG, 0, 0 },

    { ngx_string("portal_flag_"), NULL,
      ngx_http_portal_gate_flag_variable, 0,
      NGX_HTTP_VAR_PREFIX|NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/*
 * $portal_gate_decision's value, "off", as the gate leaves it just before its
 * own off=@named redirect: a marker told apart by its address.
 */
static u_char  ngx_http_portal_gate_fallback_off[] = "off";

static ngx_str_t  ngx_http_portal_gate_default_env = ngx_string("production");
static ngx_str_t  ngx_http_portal_gate_flag_prefix =
    ngx_string("portal_flag_");


/* the gate: a rewrite-phase handler, so it runs before `return` */

static ngx_int_t
ngx_http_portal_gate_handler(ngx_http_request_t *r)
{
    ngx_http_variable_value_t         *vv;
    ngx_http_portal_gate_gate_t       *gate;
    ngx_http_portal_gate_decision_t    d;
    ngx_http_portal_gate_loc_conf_t   *plcf;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_portal_gate_module);
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

    gate = plcf->gate;

    /*
     * The first run after the gate's own off=@named redirect is in the
     * fallback location, gate or no gate there. The marker lets this one
     * request through a gate on the same flag (a fallback that inherits
     * the gate must not loop) and is consumed here, so any later internal
     * redirect into a location gated by that flag is gated again.
     */

    vv = &r->variables[pmcf->index[NGX_HTTP_PORTAL_GATE_VAR_DECISION]];

    if (vv->data == ngx_http_portal_gate_fallback_off) {
        vv->data = (u_char *) "off";

        vv = &r->variables[pmcf->index[NGX_HTTP_PORTAL_GATE_VAR_FLAG]];

        if (gate && vv->len == gate->flag.len
            && ngx_strncmp(vv->data, gate->flag.data, vv->len) == 0)
        {
            return NGX_DECLINED;
        }
    }

    /* the controller must always reach the API: it is never gated */

    if (gate == NULL || plcf->api) {
        return NGX_DECLINED;
    }

    ngx_http_portal_gate_decide(r, &gate->flag, &d);
    ngx_http_portal_gate_set_variables(r, &gate->flag, &d);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "portal gate \"%V\" company \"%V\": %s (%s)",
                   &gate->flag, &d.company, d.result.on ? "on" : "off",
                   pg_reason_name(d.result.reason));

    if (d.result.on) {
        return NGX_DECLINED;
    }

    return ngx_http_portal_gate_off(r, gate);
}


static ngx_int_t
ngx_http_portal_gate_off(ngx_http_request_t *r,
    ngx_http_portal_gate_gate_t *gate)
{
    ngx_str_t                          url;
    ngx_http_variable_value_t         *vv;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    switch (gate->off) {

    case NGX_HTTP_PORTAL_GATE_OFF_NAMED:
        pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

        r->variables[pmcf->index[NGX_HTTP_PORTAL_GATE_VAR_DECISION]].data =
                                              ngx_http_portal_gate_fallback_off;

        /* as try_files does: named_location takes a reference */
        (void) ngx_http_named_location(r, &gate->named);

        /*
         * Found, the fallback's first phase has consumed the marker; not
         * found (a 500), it must not be left for a later subrequest.
         */
        vv = &r->variables[pmcf->index[NGX_HTTP_PORTAL_GATE_VAR_DECISION]];

        if (vv->data == ngx_http_portal_gate_fallback_off) {
            vv->data = (u_char *) "off";
        }

        ngx_http_finalize_request(r, NGX_DONE);
        return NGX_DONE;

    case NGX_HTTP_PORTAL_GATE_OFF_URL:
        if (ngx_http_complex_value(r, &gate->url, &url) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_clear_location(r);

        r->headers_out.location = ngx_list_push(&r->headers_out.headers);
        if (r->headers_out.location == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        r->headers_out.location->hash = 1;
        ngx_str_set(&r->headers_out.location->key, "Location");
        r->headers_out.location->value = url;

        return NGX_HTTP_MOVED_TEMPORARILY;

    default: /* NGX_HTTP_PORTAL_GATE_OFF_STATUS */
        return gate->status;
    }
}


/*
 * Evaluate a flag for this request: the environment and the company come
 * from the current location's portal_gate_env and portal_gate_company.
 */

static void
ngx_http_portal_gate_decide(ngx_http_request_t *r, ngx_str_t *flag,
    ngx_http_portal_gate_decision_t *d)
{
    pg_snap_t                        *snap;
    ngx_str_t                         env, company;
    ngx_http_portal_gate_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_portal_gate_module);

    env = ngx_http_portal_gate_default_env;

    if (plcf->env
        && ngx_http_complex_value(r, plcf->env, &env) != NGX_OK)
    {
        ngx_str_null(&env);
    }

    ngx_str_null(&company);

    if (plcf->company
        && ngx_http_complex_value(r, plcf->company, &company) != NGX_OK)
    {
        ngx_str_null(&company);
    }

    snap = ngx_http_portal_gate_snapshot(r);

    pg_eval(snap, (char *) env.data, env.len, (char *) flag->data, flag->len,
            (char *) company.data, company.len, &d->result);

    if (pg_valid_company((char *) company.data, company.len)) {
        d->company = company;

    } else {
        ngx_str_null(&d->company);
    }
}


/*
 * This worker's copy of the snapshot, refreshed when the zone's generation
 * has moved. The copy is taken under the slab pool's mutex, which the
 * writer holds while it frees the old blob. If the copy fails, the worker
 * keeps serving its previous snapshot.
 */

static pg_snap_t *
ngx_http_portal_gate_snapshot(ngx_http_request_t *r)
{
    u_char                            *blob;
    size_t                             size;
    pg_snap_t                          snap;
    pg_error_t                         err;
    ngx_atomic_uint_t                  generation;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

    if (pmcf->shm_zone == NULL) {
        return &pmcf->snap;
    }

    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    if (sh->generation == pmcf->generation) {
        return &pmcf->snap;
    }

    blob = NULL;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    generation = sh->generation;
    size = sh->blob ? sh->blob_size : 0;

    if (size) {
        blob = ngx_alloc(size, r->connection->log);
        if (blob == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return &pmcf->snap;
        }

        ngx_memcpy(blob, sh->blob, size);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (pg_snap_open(&snap, blob, size, &err) != PG_OK) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "portal_gate zone \"%V\" holds a bad snapshot: %s",
                      &pmcf->shm_zone->shm.name, err.text);
        ngx_free(blob);
        pmcf->generation = generation;
        return &pmcf->snap;
    }

    if (pmcf->blob) {
        ngx_free(pmcf->blob);
    }

    pmcf->blob = blob;
    pmcf->snap = snap;
    pmcf->generation = generation;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "portal gate: copied snapshot generation %uA, %uz bytes",
                   generation, size);

    return &pmcf->snap;
}


/*
 * The gate stores its decision in the request's variables, which (unlike
 * module contexts) survive the internal redirect to an off=@named location,
 * so the fallback's access log still says why the request landed there.
 */

static void
ngx_http_portal_gate_set_variables(ngx_http_request_t *r, ngx_str_t *flag,
    ngx_http_portal_gate_decision_t *d)
{
    ngx_str_t                          values[NGX_HTTP_PORTAL_GATE_NVARS];
    ngx_uint_t                         i;
    ngx_http_variable_value_t         *vv;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

    ngx_http_portal_gate_values(flag, d, values);

    for (i = 0; i < NGX_HTTP_PORTAL_GATE_NVARS; i++) {
        vv = &r->variables[pmcf->index[i]];

        vv->data = values[i].data;
        vv->len = values[i].len;
        vv->valid = 1;
        vv->no_cacheable = 0;
        vv->not_found = 0;
    }
}


static void
ngx_http_portal_gate_values(ngx_str_t *flag,
    ngx_http_portal_gate_decision_t *d, ngx_str_t *values)
{
    const char  *reason;

    reason = pg_reason_name(d->result.reason);

    values[NGX_HTTP_PORTAL_GATE_VAR_COMPANY] = d->company;

    if (d->result.on) {
        ngx_str_set(&values[NGX_HTTP_PORTAL_GATE_VAR_DECISION], "on");

    } else {
        ngx_str_set(&values[NGX_HTTP_PORTAL_GATE_VAR_DECISION], "off");
    }

    values[NGX_HTTP_PORTAL_GATE_VAR_REASON].data = (u_char *) reason;
    values[NGX_HTTP_PORTAL_GATE_VAR_REASON].len = ngx_strlen(reason);

    values[NGX_HTTP_PORTAL_GATE_VAR_FLAG] = *flag;
}


/*
 * $portal_gate_company, $portal_gate_decision, $portal_gate_reason and
 * $portal_gate_flag: the gate sets them when it runs. Read before the gate
 * (or in a location that has none) they evaluate the current location's
 * gate themselves; without a gate they are not found.
 */

static ngx_int_t
ngx_http_portal_gate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                         values[NGX_HTTP_PORTAL_GATE_NVARS];
    ngx_http_portal_gate_decision_t   d;
    ngx_http_portal_gate_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_portal_gate_module);

    if (plcf->gate == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_portal_gate_decide(r, &plcf->gate->flag, &d);
    ngx_http_portal_gate_values(&plcf->gate->flag, &d, values);

    v->data = values[data].data;
    v->len = values[data].len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * $portal_flag_NAME: "1" or "0" for flag NAME, evaluated on its own with
 * the current location's environment and company, gate or no gate.
 */

static ngx_int_t
ngx_http_portal_gate_flag_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                       *name = (ngx_str_t *) data;

    ngx_str_t                        flag;
    ngx_http_portal_gate_decision_t  d;

    flag.data = name->data + ngx_http_portal_gate_flag_prefix.len;
    flag.len = name->len - ngx_http_portal_gate_flag_prefix.len;

    ngx_http_portal_gate_decide(r, &flag, &d);

    v->data = (u_char *) (d.result.on ? "1" : "0");
    v->len = 1;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/* the API */

static ngx_int_t
ngx_http_portal_gate_api_handler(ngx_http_request_t *r)
{
    u_char                    *p, *last;
    ngx_int_t                  rc;
    ngx_str_t                  path;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    /*
     * The path under the API location: "status", "snapshot" or "eval".
     * Under a prefix location it is the rest of the URI; under an exact,
     * regex or named location, the URI's last segment.
     */

    path = r->uri;

    if (!clcf->named && !clcf->exact_match
#if (NGX_PCRE)
        && clcf->regex == NULL
#endif
        && path.len > clcf->name.len
        && ngx_strncmp(path.data, clcf->name.data, clcf->name.len) == 0)
    {
        /* under "location /pg", "/pgstatus" is not "status" */

        if (clcf->name.len && clcf->name.data[clcf->name.len - 1] != '/'
            && path.len > clcf->name.len
            && path.data[clcf->name.len] != '/')
        {
            return ngx_http_portal_gate_api_unknown(r, &path);
        }

        path.data += clcf->name.len;
        path.len -= clcf->name.len;

    } else {
        last = path.data + path.len;
        p = ngx_strlchr(path.data, last, '/');

        while (p) {
            path.len = last - (p + 1);
            path.data = p + 1;
            p = ngx_strlchr(p + 1, last, '/');
        }
    }

    while (path.len && path.data[0] == '/') {
        path.data++;
        path.len--;
    }

    if (path.len == 6 && ngx_strncmp(path.data, "status", 6) == 0) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_http_portal_gate_api_not_allowed(r, "GET, HEAD",
                                                        &path);
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_portal_gate_api_status(r);
    }

    if (path.len == 4 && ngx_strncmp(path.data, "eval", 4) == 0) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_http_portal_gate_api_not_allowed(r, "GET, HEAD",
                                                        &path);
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_portal_gate_api_eval(r);
    }

    if (path.len == 8 && ngx_strncmp(path.data, "snapshot", 8) == 0) {

        if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
            rc = ngx_http_discard_request_body(r);
            if (rc != NGX_OK) {
                return rc;
            }

            return ngx_http_portal_gate_api_get_snapshot(r);
        }

        if (r->method != NGX_HTTP_PUT) {
            return ngx_http_portal_gate_api_not_allowed(r, "GET, HEAD, PUT",
                                                        &path);
        }

        /*
         * nginx enforces portal_gate_api_max_body_size (it is this
         * location's client_max_body_size) while it reads, chunked bodies
         * included; the header filter turns its 413 page into JSON.
         */

        rc = ngx_http_read_client_request_body(r,
                                        ngx_http_portal_gate_api_put_snapshot);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    return ngx_http_portal_gate_api_unknown(r, &path);
}


static ngx_int_t
ngx_http_portal_gate_api_unknown(ngx_http_request_t *r, ngx_str_t *path)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_portal_gate_api_error(r, NGX_HTTP_NOT_FOUND,
                                          "unknown API path \"%V\"; "
                                          "try status, snapshot or eval",
                                          path);
}


static ngx_int_t
ngx_http_portal_gate_api_not_allowed(ngx_http_request_t *r, char *allow,
    ngx_str_t *path)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *h;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Allow");
    h->value.data = (u_char *) allow;
    h->value.len = ngx_strlen(allow);

    return ngx_http_portal_gate_api_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "method %V is not allowed on "
                                          "\"%V\"", &r->method_name, path);
}


static ngx_int_t
ngx_http_portal_gate_api_status(ngx_http_request_t *r)
{
    size_t                             i, n, total, used;
    json_t                            *json, *flags, *zone, *state;
    pg_snap_t                         *snap;
    const char                        *name;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    snap = ngx_http_portal_gate_snapshot(r);

    json = json_object();
    flags = json_object();
    zone = json_object();
    state = json_object();

    if (json == NULL || flags == NULL || zone == NULL || state == NULL) {
        goto failed;
    }

    for (i = 0; i < pg_snap_env_count(snap); i++) {
        name = pg_snap_env_name(snap, i, &n);

        if (json_object_setn_new(flags, name, n,
                        json_integer(pg_snap_env_flag_count(snap, i))) != 0)
        {
            goto failed;
        }
    }

    total = pmcf->shm_zone->shm.size;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    used = total - ctx->shpool->pfree * ngx_pagesize;

    if (json_object_set_new(json, "revision", json_integer(sh->revision))
        || json_object_set_new(json, "generation",
                               json_integer(sh->generation))
        || json_object_set_new(json, "applied_at",
                               ngx_http_portal_gate_json_time(sh->applied_at))
        || json_object_set_new(json, "restored_from_state",
                               json_boolean(sh->restored))
        || json_object_set_new(zone, "name",
               json_stringn((char *) pmcf->shm_zone->shm.name.data,
                            pmcf->shm_zone->shm.name.len))
        || json_object_set_new(zone, "size", json_integer(total))
        || json_object_set_new(zone, "used", json_integer(used))
        || json_object_set_new(zone, "snapshot_bytes",
                               json_integer(sh->blob_size))
        || json_object_set_new(state, "path",
               ctx->state.len
               ? json_stringn((char *) ctx->state.data, ctx->state.len)
               : json_null())
        || json_object_set_new(state, "ok",
                               json_boolean(!sh->state_failed))
        || json_object_set_new(state, "error",
               sh->state_failed ? json_string((char *) sh->state_error)
                                : json_null())
        || json_object_set_new(state, "written_at",
                        ngx_http_portal_gate_json_time(sh->state_written_at)))
    {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        goto failed;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (json_object_set_new(json, "flags", flags)) {
        flags = NULL;
        goto failed;
    }

    flags = NULL;

    if (json_object_set_new(json, "zone", zone)) {
        zone = NULL;
        goto failed;
    }

    zone = NULL;

    if (json_object_set_new(json, "state_file", state)) {
        state = NULL;
        goto failed;
    }

    return ngx_http_portal_gate_api_send(r, NGX_HTTP_OK, json);

failed:

    json_decref(json);
    json_decref(flags);
    json_decref(zone);
    json_decref(state);

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* A time as an ISO 8601 UTC string, or null for 0 ("never"). New ref. */

static json_t *
ngx_http_portal_gate_json_time(time_t t)
{
    u_char     buf[sizeof("1970-01-01T00:00:00Z")];
    ngx_tm_t   tm;

    if (t == 0) {
        return json_null();
    }

    ngx_gmtime(t, &tm);

    (void) ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    return json_stringn((char *) buf, sizeof(buf) - 1);
}


static ngx_int_t
ngx_http_portal_gate_api_get_snapshot(ngx_http_request_t *r)
{
    json_t  *json;

    json = pg_snap_to_json(ngx_http_portal_gate_snapshot(r));
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_portal_gate_api_send(r, NGX_HTTP_OK, json);
}


static void
ngx_http_portal_gate_api_put_snapshot(ngx_http_request_t *r)
{
    u_char                           *body;
    size_t                            len, size;
    int64_t                           current, revision;
    ngx_int_t                         rc;
    pg_snap_t                         snap;
    pg_error_t                        err;
    unsigned char                    *blob;
    ngx_http_portal_gate_state_t     *st;

    rc = ngx_http_portal_gate_api_read_body(r, &body, &len);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (len == 0) {
        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                         NGX_HTTP_BAD_REQUEST,
                                         "empty body: expected a snapshot"));
        return;
    }

    /* parse and validate outside the lock */

    rc = pg_snap_compile((char *) body, len, &blob, &size, &err);

    ngx_free(body);

    if (rc != PG_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "portal_gate api: snapshot refused: %s", err.text);

        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                        NGX_HTTP_BAD_REQUEST, "%s", err.text));
        return;
    }

    (void) pg_snap_open(&snap, blob, size, &err);
    revision = pg_snap_revision(&snap);

    rc = ngx_http_portal_gate_apply(r, blob, size, &current);

    if (rc == NGX_DECLINED) {
        free(blob);
        ngx_http_finalize_request(r, ngx_http_portal_gate_api_send(r,
                          NGX_HTTP_CONFLICT,
                          json_pack("{s:s,s:I}",
                                    "error", "revision is not newer than "
                                             "the edge's current revision",
                                    "revision", (json_int_t) current)));
        return;
    }

    if (rc == NGX_BUSY) {
        free(blob);
        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                   NGX_HTTP_INSUFFICIENT_STORAGE,
                                   "zone is too small for a snapshot of %uz "
                                   "bytes; enlarge portal_gate_zone", size));
        return;
    }

    if (rc != NGX_OK) {
        free(blob);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "portal_gate: snapshot revision %L applied, %uz bytes",
                  revision, size);

    st = ngx_http_portal_gate_state_prepare(r, revision, blob, size);

    free(blob);

    if (st != NULL) {
#if (NGX_THREADS)
        /* the fsync()s off the event loop: this worker keeps serving */
        if (ngx_http_portal_gate_state_post(st) == NGX_OK) {
            return;
        }
#endif
        ngx_http_portal_gate_state_save(st);
        ngx_http_portal_gate_state_report(st);
    }

    ngx_http_portal_gate_put_done(r, revision);
}


/* The answer to a PUT that was applied, once its state file is written. */

static void
ngx_http_portal_gate_put_done(ngx_http_request_t *r, int64_t revision)
{
    ngx_http_finalize_request(r, ngx_http_portal_gate_api_send(r,
                                 NGX_HTTP_OK,
                                 json_pack("{s:I}", "revision",
                                           (json_int_t) revision)));
}


/* The whole body in one ngx_alloc()ed buffer, from memory or temp file. */

static ngx_int_t
ngx_http_portal_gate_api_read_body(ngx_http_request_t *r, u_char **body,
    size_t *len)
{
    u_char       *p;
    size_t        size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    *body = NULL;
    *len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        size += b->in_file ? (size_t) (b->file_last - b->file_pos)
                           : (size_t) (b->last - b->pos);
    }

    if (size == 0) {
        return NGX_OK;
    }

    p = ngx_alloc(size, r->connection->log);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *body = p;
    *len = size;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);

            if (n != b->file_last - b->file_pos) {
                ngx_free(*body);
                *body = NULL;
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_portal_gate_api_eval(ngx_http_request_t *r)
{
    ngx_str_t                         env, flag, company;
    pg_snap_t                        *snap;
    pg_result_t                       res;
    const char                       *reason;

    env = ngx_http_portal_gate_default_env;
    ngx_str_null(&flag);
    ngx_str_null(&company);

    if (ngx_http_portal_gate_api_arg(r, "env", &env) != NGX_OK
        || ngx_http_portal_gate_api_arg(r, "flag", &flag) != NGX_OK
        || ngx_http_portal_gate_api_arg(r, "company", &company) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (flag.len == 0) {
        return ngx_http_portal_gate_api_error(r, NGX_HTTP_BAD_REQUEST,
                                              "missing \"flag\" argument");
    }

    if (!pg_valid_name((char *) flag.data, flag.len)) {
        return ngx_http_portal_gate_api_error(r, NGX_HTTP_BAD_REQUEST,
                                   "invalid flag name \"%V\": expected "
                                   "[a-z0-9_]{1,64}", &flag);
    }

    if (!pg_valid_name((char *) env.data, env.len)) {
        return ngx_http_portal_gate_api_error(r, NGX_HTTP_BAD_REQUEST,
                                   "invalid environment name \"%V\": "
                                   "expected [a-z0-9_]{1,64}", &env);
    }

    snap = ngx_http_portal_gate_snapshot(r);

    pg_eval(snap, (char *) env.data, env.len, (char *) flag.data, flag.len,
            (char *) company.data, company.len, &res);

    reason = pg_reason_name(res.reason);

    return ngx_http_portal_gate_api_send(r, NGX_HTTP_OK,
               json_pack("{s:s,s:s,s:o,s:I,s:s%,s:s%,s:o}",
                   "decision", res.on ? "on" : "off",
                   "reason", reason,
                   "bucket", res.bucket >= 0 ? json_integer(res.bucket)
                                             : json_null(),
                   "revision", (json_int_t) pg_snap_revision(snap),
                   "env", (char *) env.data, env.len,
                   "flag", (char *) flag.data, flag.len,
                   "company",
                   pg_valid_company((char *) company.data, company.len)
                       ? json_stringn((char *) company.data, company.len)
                       : json_null()));
}


/*
 * The unescaped value of a query argument; value is left as it is when
 * the argument is absent. NGX_ERROR only when out of memory.
 */

static ngx_int_t
ngx_http_portal_gate_api_arg(ngx_http_request_t *r, char *name,
    ngx_str_t *value)
{
    u_char     *p;
    ngx_str_t   arg;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &arg) != NGX_OK) {
        return NGX_OK;
    }

    value->data = ngx_pnalloc(r->pool, arg.len);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    p = value->data;
    ngx_unescape_uri(&p, &arg.data, arg.len, NGX_UNESCAPE_URI);
    value->len = p - value->data;

    return NGX_OK;
}


/* Send a JSON answer; json is a new reference, stolen (NULL: out of memory) */

static ngx_int_t
ngx_http_portal_gate_api_send(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json)
{
    char                            *text;
    size_t                           len;
    ngx_int_t                        rc;
    ngx_buf_t                       *b;
    ngx_chain_t                      out;
    ngx_http_portal_gate_api_ctx_t  *ctx;

    if (json == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "portal_gate api: cannot build the JSON answer");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text = json_dumps(json, JSON_COMPACT | PG_JSON_REAL);
    json_decref(json);

    if (text == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "portal_gate api: cannot serialise the JSON answer");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, text, len);
    *b->last++ = LF;

    free(text);

    ctx = ngx_http_get_module_ctx(r, ngx_http_portal_gate_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_portal_gate_api_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_portal_gate_module);
    }

    /* the header filter leaves this answer alone */
    ctx->answered = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len + 1;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_portal_gate_api_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *fmt, ...)
{
    u_char   *p;
    u_char    text[NGX_MAX_ERROR_STR];
    json_t   *json;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(text, text + sizeof(text), fmt, args);
    va_end(args);

    json = json_pack("{s:s%}", "error", (char *) text, (size_t) (p - text));

    if (json == NULL) {
        /* the message quotes the request's bytes, which are not UTF-8 */
        json = json_pack("{s:s}", "error", "the request is not valid UTF-8");
    }

    return ngx_http_portal_gate_api_send(r, status, json);
}


/*
 * Every answer of the API is JSON, also the error pages that nginx makes
 * itself in the API location: the 413 of portal_gate_api_max_body_size,
 * the 403 of `deny`, a 400 or a 500. The header filter swaps the page's
 * headers, the body filter its body.
 */

static ngx_int_t
ngx_http_portal_gate_header_filter(ngx_http_request_t *r)
{
    char                             *json;
    u_char                           *p;
    u_char                            text[NGX_MAX_ERROR_STR];
    size_t                            len;
    json_t                           *error;
    ngx_buf_t                        *b;
    ngx_http_portal_gate_api_ctx_t   *ctx;
    ngx_http_portal_gate_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_portal_gate_module);

    if (!plcf->api || r != r->main || r->headers_out.status < 400) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_portal_gate_module);

    if (ctx && ctx->answered) {
        return ngx_http_next_header_filter(r);
    }

    switch (r->headers_out.status) {

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        p = ngx_snprintf(text, sizeof(text),
                         "snapshot is larger than %uz bytes "
                         "(portal_gate_api_max_body_size)",
                         plcf->api_max_body_size);
        break;

    case NGX_HTTP_FORBIDDEN:
        p = ngx_snprintf(text, sizeof(text),
                         "access to the API is forbidden");
        break;

    default:
        p = ngx_snprintf(text, sizeof(text),
                         "request failed with status %ui, see the error log",
                         r->headers_out.status);
        break;
    }

    error = json_pack("{s:s%}", "error", text, (size_t) (p - text));
    json = error ? json_dumps(error, JSON_COMPACT) : NULL;
    json_decref(error);

    if (json == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(json);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        free(json);
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, json, len);
    *b->last++ = LF;

    free(json);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_portal_gate_api_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_portal_gate_module);
    }

    ctx->error = b;

    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    ngx_str_null(&r->headers_out.charset);

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_portal_gate_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_uint_t                       last;
    ngx_chain_t                     *cl, out;
    ngx_http_portal_gate_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_portal_gate_module);

    if (ctx == NULL || ctx->error == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* consume nginx's page, then send the JSON in its place */

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    ctx->error->last_buf = 1;
    ctx->error->last_in_chain = 1;

    out.buf = ctx->error;
    out.next = NULL;

    ctx->error = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/*
 * Swap the blob into the zone: NGX_OK, NGX_DECLINED when the revision is
 * not newer (*current is the zone's), NGX_BUSY when the zone is too small.
 */

static ngx_int_t
ngx_http_portal_gate_apply(ngx_http_request_t *r, unsigned char *blob,
    size_t size, int64_t *current)
{
    u_char                            *p, *old;
    size_t                             old_size;
    int64_t                            revision;
    pg_snap_t                          snap;
    pg_error_t                         err;
    ngx_slab_pool_t                   *shpool;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;
    shpool = ctx->shpool;

    if (pg_snap_open(&snap, blob, size, &err) != PG_OK) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "portal_gate: compiled snapshot is bad: %s", err.text);
        return NGX_ERROR;
    }

    revision = pg_snap_revision(&snap);

    ngx_shmtx_lock(&shpool->mutex);

    *current = sh->revision;

    if (revision <= sh->revision) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_DECLINED;
    }

    p = ngx_slab_alloc_locked(shpool, size);

    if (p == NULL && sh->blob) {

        /*
         * No room for the old and the new snapshot side by side: free the
         * old one first. Readers copy under this same lock, so none of them
         * sees the gap; if the new one still does not fit, the old one goes
         * back from the writer's copy.
         */

        old_size = sh->blob_size;
        old = ngx_alloc(old_size, r->connection->log);

        if (old == NULL) {
            ngx_shmtx_unlock(&shpool->mutex);
            return NGX_ERROR;
        }

        ngx_memcpy(old, sh->blob, old_size);
        ngx_slab_free_locked(shpool, sh->blob);

        /* consistent even if this worker dies before the lock is freed */
        sh->blob = NULL;
        sh->blob_size = 0;

        p = ngx_slab_alloc_locked(shpool, size);

        if (p == NULL) {
            sh->blob = ngx_slab_alloc_locked(shpool, old_size);

            if (sh->blob == NULL) {
                /* cannot happen: the pages were just freed */
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              "portal_gate zone \"%V\" lost its snapshot",
                              &pmcf->shm_zone->shm.name);
                sh->blob_size = 0;
                sh->revision = 0;
                sh->generation++;

            } else {
                ngx_memcpy(sh->blob, old, old_size);
                sh->blob_size = old_size;
            }

            ngx_shmtx_unlock(&shpool->mutex);
            ngx_free(old);

            goto nomem;
        }

        ngx_free(old);
    }

    if (p == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        goto nomem;
    }

    ngx_memcpy(p, blob, size);

    old = sh->blob;

    sh->blob = p;
    sh->blob_size = size;
    sh->revision = revision;
    sh->applied_at = ngx_time();
    sh->restored = 0;
    sh->generation++;

    if (old) {
        ngx_slab_free_locked(shpool, old);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;

nomem:

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "portal_gate zone \"%V\" is too small for a snapshot of "
                  "%uz bytes", &pmcf->shm_zone->shm.name, size);

    return NGX_BUSY;
}


/*
 * The state file: written to a temp file named per pid in the same folder,
 * fsync()ed, then renamed under the zone's lock only if this revision is
 * still the zone's, so an older snapshot never wins the race; then the
 * folder is fsync()ed. A failure is logged and reported by GET status; the
 * snapshot stays applied.
 *
 * _prepare() runs on the event loop: the paths and the JSON text, or NULL
 * without state= (or when that fails, logged). _save() does the file work
 * with no pool and no request: in a thread of the pool when nginx has
 * threads, so that the fsync()s never stall the worker's other requests.
 */

static ngx_http_portal_gate_state_t *
ngx_http_portal_gate_state_prepare(ngx_http_request_t *r, int64_t revision,
    unsigned char *blob, size_t size)
{
    json_t                            *json;
    pg_snap_t                          snap;
    pg_error_t                         perr;
    ngx_http_portal_gate_state_t      *st;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;

    if (ctx->state.len == 0) {
        return NULL;
    }

    st = ngx_pcalloc(r->pool, sizeof(ngx_http_portal_gate_state_t));
    if (st == NULL) {
        return NULL;
    }

    st->request = r;
    st->ctx = ctx;
    st->log = r->connection->log;
    st->revision = revision;

    st->tmp = ngx_pnalloc(r->pool, ctx->state.len + sizeof(".tmp..") - 1
                                   + 2 * NGX_INT64_LEN + 1);
    st->dir = ngx_pnalloc(r->pool, ctx->state.len + 2);
    st->corrupt = ngx_pnalloc(r->pool, ctx->state.len + sizeof(".corrupt"));

    if (st->tmp == NULL || st->dir == NULL || st->corrupt == NULL) {
        return NULL;
    }

    /* per pid and revision: two writes may run at once in threads */
    ngx_sprintf(st->tmp, "%V.tmp.%P.%L%Z", &ctx->state, ngx_pid, revision);
    ngx_sprintf(st->corrupt, "%V.corrupt%Z", &ctx->state);

    (void) pg_snap_open(&snap, blob, size, &perr);

    json = pg_snap_to_json(&snap);
    st->text = json ? json_dumps(json, JSON_COMPACT | PG_JSON_REAL) : NULL;
    json_decref(json);

    if (st->text == NULL) {
        ngx_http_portal_gate_state_failed(ctx, st->log, revision, 0,
                                          "serialising", st->tmp);
        return NULL;
    }

    st->len = ngx_strlen(st->text);

    return st;
}


#if (NGX_THREADS)

static ngx_int_t
ngx_http_portal_gate_state_post(ngx_http_portal_gate_state_t *st)
{
    ngx_thread_task_t  *task;

    if (st->ctx->thread_pool == NULL) {
        return NGX_DECLINED;
    }

    task = ngx_thread_task_alloc(st->request->pool, 0);
    if (task == NULL) {
        return NGX_ERROR;
    }

    task->ctx = st;
    task->handler = ngx_http_portal_gate_state_thread;
    task->event.handler = ngx_http_portal_gate_state_done;
    task->event.data = st;

    if (ngx_thread_task_post(st->ctx->thread_pool, task) != NGX_OK) {
        return NGX_ERROR;
    }

    /* as nginx's own aio: nothing frees the request while the task runs */
    st->request->main->blocked++;
    st->request->aio = 1;

    st->wait.handler = ngx_http_portal_gate_state_wait;
    st->wait.data = st;
    st->wait.log = st->log;
    ngx_add_timer(&st->wait, 3600000);

    return NGX_OK;
}


static void
ngx_http_portal_gate_state_wait(ngx_event_t *ev)
{
    /* the timer only keeps a shutting down worker until the answer */
}


static void
ngx_http_portal_gate_state_thread(void *data, ngx_log_t *log)
{
    ngx_http_portal_gate_state_save(data);
}


/* Back on the event loop: answer the PUT. */

static void
ngx_http_portal_gate_state_done(ngx_event_t *ev)
{
    ngx_connection_t              *c;
    ngx_http_request_t            *r;
    ngx_http_portal_gate_state_t  *st;

    st = ev->data;
    r = st->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    if (st->wait.timer_set) {
        ngx_del_timer(&st->wait);
    }

    r->main->blocked--;
    r->aio = 0;

    ngx_http_portal_gate_state_report(st);
    ngx_http_portal_gate_put_done(r, st->revision);
    ngx_http_run_posted_requests(c);
}

#endif


static void
ngx_http_portal_gate_state_save(ngx_http_portal_gate_state_t *st)
{
    u_char                           *p, *tmp, *dir, *corrupt;
    size_t                            len;
    ssize_t                           n;
    ngx_fd_t                          fd;
    ngx_err_t                         err;
    ngx_uint_t                        renamed, kept;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    ctx = st->ctx;
    tmp = st->tmp;
    dir = st->dir;
    corrupt = st->corrupt;
    len = st->len;

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_http_portal_gate_state_fail(st, ngx_errno, ngx_open_file_n,
                                        tmp);
        free(st->text);
        st->text = NULL;
        return;
    }

    p = (u_char *) st->text;
    err = 0;

    while (p < (u_char *) st->text + len) {
        n = ngx_write_fd(fd, p, (u_char *) st->text + len - p);

        if (n == -1) {
            err = ngx_errno;

            if (err == NGX_EINTR) {
                continue;
            }

            break;
        }

        if (n == 0) {
            break;
        }

        p += n;
    }

    n = p - (u_char *) st->text;

    free(st->text);
    st->text = NULL;

    if ((size_t) n != len) {
        ngx_http_portal_gate_state_fail(st, err, ngx_write_fd_n, tmp);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(tmp);
        return;
    }

    if (fsync(fd) == -1) {
        ngx_http_portal_gate_state_fail(st, ngx_errno, "fsync()", tmp);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(tmp);
        return;
    }

    (void) ngx_close_file(fd);

    renamed = 0;
    kept = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->revision == st->revision) {

        /* nothing lost on bad input: the unreadable file is kept aside */

        if (ctx->sh->state_corrupt) {
            if (ngx_rename_file(ctx->state.data, corrupt) != NGX_FILE_ERROR) {
                kept = 1;

            } else {
                err = ngx_errno;

                if (err != NGX_ENOENT) {
                    /* never overwrite the corrupt file unkept */
                    ngx_shmtx_unlock(&ctx->shpool->mutex);
                    ngx_http_portal_gate_state_fail(st, err,
                                                    "keeping the corrupt "
                                                    "file, " ngx_rename_file_n,
                                                    corrupt);
                    (void) ngx_delete_file(tmp);
                    return;
                }
            }

            ctx->sh->state_corrupt = 0;
        }

        if (ngx_rename_file(tmp, ctx->state.data) == NGX_FILE_ERROR) {
            err = ngx_errno;
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            ngx_http_portal_gate_state_fail(st, err, ngx_rename_file_n,
                                            ctx->state.data);
            (void) ngx_delete_file(tmp);
            return;
        }

        renamed = 1;
        ctx->sh->state_failed = 0;
        ctx->sh->state_error[0] = '\0';
        ctx->sh->state_written_at = ngx_time();
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    st->kept = kept;

    if (!renamed) {
        /* a newer snapshot arrived meanwhile; its writer saves it */
        (void) ngx_delete_file(tmp);
        return;
    }

    /* fsync the folder, so that the rename itself is durable */

    p = (u_char *) ngx_strlchr(ctx->state.data,
                               ctx->state.data + ctx->state.len, '/');
    len = 0;

    while (p) {
        len = p - ctx->state.data;
        p = ngx_strlchr(p + 1, ctx->state.data + ctx->state.len, '/');
    }

    if (len == 0) {
        len = 1;
        dir[0] = ctx->state.data[0] == '/' ? '/' : '.';

    } else {
        ngx_memcpy(dir, ctx->state.data, len);
    }

    dir[len] = '\0';

    fd = ngx_open_file(dir, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        st->dir_err = ngx_errno;
        st->dir_what = ngx_open_file_n;
        return;
    }

    if (fsync(fd) == -1) {
        st->dir_err = ngx_errno;
        st->dir_what = "fsync()";
    }

    (void) ngx_close_file(fd);
}


/* Set what failed, for _report(); no log and no lock in a thread. */

static void
ngx_http_portal_gate_state_fail(ngx_http_portal_gate_state_t *st,
    ngx_err_t err, const char *what, u_char *path)
{
    st->failed = what;
    st->err = err;
    st->path = path;
}


/* Back on the event loop: say what the write of the state file did. */

static void
ngx_http_portal_gate_state_report(ngx_http_portal_gate_state_t *st)
{
    if (st->kept) {
        ngx_log_error(NGX_LOG_NOTICE, st->log, 0,
                      "portal_gate: the corrupt state file is kept as "
                      "\"%s\"", st->corrupt);
    }

    if (st->failed) {
        ngx_http_portal_gate_state_failed(st->ctx, st->log, st->revision,
                                          st->err, st->failed, st->path);
    }

    if (st->dir_what) {
        ngx_log_error(NGX_LOG_WARN, st->log, st->dir_err,
                      "%s \"%s\" failed", st->dir_what, st->dir);
    }
}


/*
 * Log a failed write of the state file, and report it in GET status unless
 * a newer snapshot has been applied meanwhile: its writer has the say.
 */

static void
ngx_http_portal_gate_state_failed(ngx_http_portal_gate_zone_ctx_t *ctx,
    ngx_log_t *log, int64_t revision, ngx_err_t err, const char *what,
    u_char *path)
{
    u_char  *p, *last;

    ngx_log_error(NGX_LOG_ERR, log, err,
                  "portal_gate: state file not written for revision %L: "
                  "%s \"%s\" failed", revision, what, path);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->revision != revision) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return;
    }

    p = ctx->sh->state_error;
    last = p + NGX_HTTP_PORTAL_GATE_ERR_LEN - 1;

    p = ngx_slprintf(p, last, "%s \"%s\" failed", what, path);

    if (err) {
        p = ngx_slprintf(p, last, " (%d: ", err);
        p = ngx_strerror(err, p, last - p);
        p = ngx_slprintf(p, last, ")");
    }

    *p = '\0';
    ctx->sh->state_failed = 1;

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * Fill a fresh zone from the state file. Runs in the master at start and
 * when a reload changes the zone's size; it only reads. A missing file is
 * normal on a first start; a corrupt one is logged and nginx starts empty.
 */

static ngx_int_t
ngx_http_portal_gate_restore(ngx_shm_zone_t *shm_zone)
{
    u_char                           *text, *p;
    size_t                            size;
    ssize_t                           n;
    ngx_fd_t                          fd;
    pg_snap_t                         snap;
    pg_error_t                        err;
    ngx_file_info_t                   fi;
    unsigned char                    *blob;
    ngx_http_portal_gate_shctx_t     *sh;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    ctx = shm_zone->data;
    sh = ctx->sh;

    if (ctx->state.len == 0) {
        return NGX_OK;
    }

    fd = ngx_open_file(ctx->state.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        if (ngx_errno == NGX_ENOENT) {
            ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                          "portal_gate state file \"%V\" does not exist yet, "
                          "zone \"%V\" starts empty",
                          &ctx->state, &shm_zone->shm.name);
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, ngx_errno,
                      ngx_open_file_n " \"%V\" failed, zone \"%V\" starts "
                      "empty", &ctx->state, &shm_zone->shm.name);
        return NGX_OK;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, ngx_errno,
                      ngx_fd_info_n " \"%V\" failed, zone \"%V\" starts "
                      "empty", &ctx->state, &shm_zone->shm.name);
        (void) ngx_close_file(fd);
        return NGX_OK;
    }

    size = (size_t) ngx_file_size(&fi);

    text = ngx_alloc(size ? size : 1, shm_zone->shm.log);
    if (text == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    p = text;

    while (p < text + size) {
        n = ngx_read_fd(fd, p, text + size - p);

        if (n <= 0) {
            break;
        }

        p += n;
    }

    (void) ngx_close_file(fd);

    if (pg_snap_compile((char *) text, p - text, &blob, &size, &err) != PG_OK)
    {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate state file \"%V\" is corrupt, zone \"%V\" "
                      "starts empty (the next write keeps it as "
                      "\"%V.corrupt\"): %s",
                      &ctx->state, &shm_zone->shm.name, &ctx->state,
                      err.text);
        sh->state_corrupt = 1;
        ngx_free(text);
        return NGX_OK;
    }

    ngx_free(text);

    (void) pg_snap_open(&snap, blob, size, &err);

    sh->blob = ngx_slab_alloc(ctx->shpool, size);

    if (sh->blob == NULL) {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" is too small for the %uz-byte "
                      "snapshot in \"%V\", it starts empty",
                      &shm_zone->shm.name, size, &ctx->state);
        free(blob);
        return NGX_OK;
    }

    ngx_memcpy(sh->blob, blob, size);
    sh->blob_size = size;
    sh->revision = pg_snap_revision(&snap);
    sh->applied_at = ngx_file_mtime(&fi);
    sh->restored = 1;
    sh->generation++;

    free(blob);

    ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                  "portal_gate zone \"%V\" restored revision %L from \"%V\"",
                  &shm_zone->shm.name, sh->revision, &ctx->state);

    return NGX_OK;
}


static ngx_int_t
ngx_http_portal_gate_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_portal_gate_zone_ctx_t  *octx = data;

    size_t                            len;
    ngx_http_portal_gate_shctx_t     *sh;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* a reload with the same name and size: keep the contents */

        if (octx->sh->magic != NGX_HTTP_PORTAL_GATE_MAGIC
            || octx->sh->layout != NGX_HTTP_PORTAL_GATE_LAYOUT)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "portal_gate zone \"%V\" has layout %ui, this "
                          "module needs %d: restart nginx",
                          &shm_zone->shm.name, octx->sh->layout,
                          NGX_HTTP_PORTAL_GATE_LAYOUT);
            return NGX_ERROR;
        }

        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;

        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(ctx->shpool, sizeof(ngx_http_portal_gate_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    sh->magic = NGX_HTTP_PORTAL_GATE_MAGIC;
    sh->layout = NGX_HTTP_PORTAL_GATE_LAYOUT;
    sh->generation = 1;     /* a new worker's copy starts at 0 */

    ctx->sh = sh;
    ctx->shpool->data = sh;

    len = sizeof(" in portal_gate zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in portal_gate zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is answered with 507, not logged by the allocator */
    ctx->shpool->log_nomem = 0;

    if (ngx_http_portal_gate_resized(shm_zone) == NGX_OK) {
        return NGX_OK;
    }

    /* a first start, or the old zone could not be copied */

    return ngx_http_portal_gate_restore(shm_zone);
}


/*
 * A reload that changes the zone's size hands over a fresh zone while the
 * old one is still mapped: carry its snapshot over, which needs no state
 * file and is never staler than one. NGX_DECLINED when there is no old
 * zone (a first start, nginx -t), or its snapshot is locked, bad or does
 * not fit.
 */

static ngx_int_t
ngx_http_portal_gate_resized(ngx_shm_zone_t *shm_zone)
{
    ngx_uint_t                        i;
    pg_snap_t                         snap;
    pg_error_t                        err;
    ngx_list_part_t                  *part;
    ngx_shm_zone_t                   *zone;
    ngx_http_portal_gate_shctx_t     *sh, *osh;
    ngx_http_portal_gate_zone_ctx_t  *ctx, *octx;

    ctx = shm_zone->data;
    sh = ctx->sh;

    /* during a reload, ngx_cycle is still the old cycle */

    part = &((ngx_cycle_t *) ngx_cycle)->shared_memory.part;
    zone = part->elts;
    octx = NULL;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            zone = part->elts;
            i = 0;
        }

        if (zone[i].tag == &ngx_http_portal_gate_module
            && zone[i].shm.name.len == shm_zone->shm.name.len
            && ngx_strncmp(zone[i].shm.name.data, shm_zone->shm.name.data,
                           shm_zone->shm.name.len) == 0
            && zone[i].data != NULL)
        {
            octx = zone[i].data;
            break;
        }
    }

    if (octx == NULL || octx->sh == NULL
        || octx->sh->magic != NGX_HTTP_PORTAL_GATE_MAGIC
        || octx->sh->layout != NGX_HTTP_PORTAL_GATE_LAYOUT)
    {
        return NGX_DECLINED;
    }

    osh = octx->sh;

    /*
     * SIGCHLD is blocked while the master reloads, so a worker that died
     * holding the lock would not be unlocked: try for a second, then fall
     * back to the state file rather than hang the master.
     */

    for (i = 0; i < 1000; i++) {
        if (ngx_shmtx_trylock(&octx->shpool->mutex)) {
            break;
        }

        ngx_msleep(1);
    }

    if (i == 1000) {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" resized, but the old zone "
                      "stays locked: restoring from the state file",
                      &shm_zone->shm.name);
        return NGX_DECLINED;
    }

    /* the master does not trust memory that workers write */

    if (osh->blob_size
        && (osh->blob == NULL
            || pg_snap_open(&snap, osh->blob, osh->blob_size, &err) != PG_OK))
    {
        ngx_shmtx_unlock(&octx->shpool->mutex);

        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" resized, but the old zone's "
                      "snapshot is bad: restoring from the state file",
                      &shm_zone->shm.name);
        return NGX_DECLINED;
    }

    if (osh->blob && osh->blob_size) {
        sh->blob = ngx_slab_alloc(ctx->shpool, osh->blob_size);

        if (sh->blob == NULL) {
            ngx_shmtx_unlock(&octx->shpool->mutex);

            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "portal_gate zone \"%V\" of %uz bytes cannot hold "
                          "the %uz-byte snapshot of the old zone",
                          &shm_zone->shm.name, shm_zone->shm.size,
                          osh->blob_size);
            return NGX_DECLINED;
        }

        ngx_memcpy(sh->blob, osh->blob, osh->blob_size);
        sh->blob_size = osh->blob_size;
    }

    sh->revision = osh->revision;
    sh->applied_at = osh->applied_at;
    sh->restored = osh->restored;
    sh->state_corrupt = osh->state_corrupt;
    sh->state_failed = osh->state_failed;
    sh->state_written_at = osh->state_written_at;
    ngx_memcpy(sh->state_error, osh->state_error, sizeof(sh->state_error));
    sh->generation++;

    ngx_shmtx_unlock(&octx->shpool->mutex);

    ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                  "portal_gate zone \"%V\" resized to %uz bytes, revision %L "
                  "carried over", &shm_zone->shm.name, shm_zone->shm.size,
                  sh->revision);

    return NGX_OK;
}


static ngx_int_t
ngx_http_portal_gate_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_portal_gate_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_portal_gate_create_main_conf(ngx_conf_t *cf)
{
    ngx_pool_cleanup_t                *cln;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_portal_gate_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    /* frees this worker's copy of the snapshot with the cycle */

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_portal_gate_cleanup;
    cln->data = pmcf;

    return pmcf;
}


static char *
ngx_http_portal_gate_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_portal_gate_main_conf_t  *pmcf = conf;

    if (pmcf->shm_zone == NULL && (pmcf->gates || pmcf->apis)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" is used, but no \"portal_gate_zone\" is "
                           "defined in the http block",
                           pmcf->gates ? "portal_gate" : "portal_gate_api");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_portal_gate_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_portal_gate_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_portal_gate_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->gate = NGX_CONF_UNSET_PTR;
    conf->env = NGX_CONF_UNSET_PTR;
    conf->company = NGX_CONF_UNSET_PTR;
    conf->api = NGX_CONF_UNSET;
    conf->api_max_body_size = NGX_CONF_UNSET_SIZE;

    return conf;
}


static char *
ngx_http_portal_gate_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_portal_gate_loc_conf_t  *prev = parent;
    ngx_http_portal_gate_loc_conf_t  *conf = child;

    ngx_http_core_loc_conf_t         *clcf;

    ngx_conf_merge_ptr_value(conf->gate, prev->gate, NULL);
    ngx_conf_merge_ptr_value(conf->env, prev->env, NULL);
    ngx_conf_merge_ptr_value(conf->company, prev->company, NULL);
    ngx_conf_merge_size_value(conf->api_max_body_size,
                              prev->api_max_body_size, 16 * 1024 * 1024);

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /*
     * Not inherited: a location nested in the API location is not the API.
     * The block of a limit_except in it is: nginx switches a request to
     * that block's configuration for the methods it does not list.
     */

    if (conf->api == NGX_CONF_UNSET) {
        conf->api = (clcf->lmt_excpt && prev->api == 1);
    }

    if (conf->api) {
        clcf->handler = ngx_http_portal_gate_api_handler;

        /*
         * The API location's own limit, so that nginx enforces it while
         * reading, chunked bodies included. The core module has merged
         * this location already.
         */
        clcf->client_max_body_size = conf->api_max_body_size;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_portal_gate_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_portal_gate_main_conf_t *pmcf = conf;

    u_char                           *p;
    ssize_t                           size;
    ngx_str_t                        *value, name, s, state;
    ngx_uint_t                        i;
    ngx_shm_zone_t                   *shm_zone;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    if (pmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_str_null(&name);
    ngx_str_null(&state);
    size = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            name.data = value[i].data + 5;

            p = (u_char *) ngx_strchr(name.data, ':');

            if (p == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone \"%V\": expected "
                                   "zone=NAME:SIZE", &value[i]);
                return NGX_CONF_ERROR;
            }

            name.len = p - name.data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (size < (ssize_t) (16 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zone \"%V\" is too small: at least "
                                   "%uzk", &name,
                                   16 * ngx_pagesize / 1024);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "state=", 6) == 0) {

            state.data = value[i].data + 6;
            state.len = value[i].len - 6;

            if (state.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty state file path in \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            if (ngx_conf_full_name(cf->cycle, &state, 0) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_portal_gate_zone_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    ctx->state = state;

#if (NGX_THREADS)
    /* nginx's default pool (`thread_pool default` sets its size) */
    if (state.len) {
        ctx->thread_pool = ngx_thread_pool_add(cf, NULL);
        if (ctx->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
    }
#endif

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_portal_gate_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_portal_gate_init_zone;
    shm_zone->data = ctx;

    pmcf->shm_zone = shm_zone;

    return NGX_CONF_OK;
}


/* portal_gate_env: a complex value; a literal must be a valid name */

static char *
ngx_http_portal_gate_env(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_portal_gate_loc_conf_t *plcf = conf;

    char       *rv;
    ngx_str_t  *value;

    rv = ngx_http_set_complex_value_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    value = cf->args->elts;

    if (plcf->env->lengths == NULL
        && !pg_valid_name((char *) value[1].data, value[1].len))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid environment name \"%V\": expected "
                           "[a-z0-9_]{1,64}", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_portal_gate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_portal_gate_loc_conf_t *plcf = conf;

    ngx_str_t                         *value, s;
    ngx_int_t                          status;
    ngx_http_portal_gate_gate_t       *gate;
    ngx_http_portal_gate_main_conf_t  *pmcf;
    ngx_http_compile_complex_value_t   ccv;

    if (plcf->gate != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts != 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"portal_gate off\" takes no parameters");
            return NGX_CONF_ERROR;
        }

        plcf->gate = NULL;
        return NGX_CONF_OK;
    }

    if (plcf->api == 1) {
        return "cannot gate a portal_gate_api location";
    }

    if (!pg_valid_name((char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid flag name \"%V\": expected "
                           "[a-z0-9_]{1,64}", &value[1]);
        return NGX_CONF_ERROR;
    }

    gate = ngx_pcalloc(cf->pool, sizeof(ngx_http_portal_gate_gate_t));
    if (gate == NULL) {
        return NGX_CONF_ERROR;
    }

    gate->flag = value[1];
    gate->off = NGX_HTTP_PORTAL_GATE_OFF_STATUS;
    gate->status = NGX_HTTP_NOT_FOUND;

    if (cf->args->nelts == 3) {

        if (ngx_strncmp(value[2].data, "off=", 4) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": expected "
                               "off=CODE, off=@named or off=URL", &value[2]);
            return NGX_CONF_ERROR;
        }

        s.data = value[2].data + 4;
        s.len = value[2].len - 4;

        if (s.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty action in \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        if (s.data[0] == '@') {
            if (s.len == 1) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty location name in \"%V\"",
                                   &value[2]);
                return NGX_CONF_ERROR;
            }

            gate->off = NGX_HTTP_PORTAL_GATE_OFF_NAMED;
            gate->named = s;

        } else if (s.data[0] >= '0' && s.data[0] <= '9') {
            status = ngx_atoi(s.data, s.len);

            /* 408 and 494-499 are nginx's own: they send no answer */

            if (status < 400 || status > 599
                || status == NGX_HTTP_REQUEST_TIME_OUT
                || (status >= NGX_HTTP_REQUEST_HEADER_TOO_LARGE
                    && status <= NGX_HTTP_CLIENT_CLOSED_REQUEST))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid status \"%V\": off=CODE takes "
                                   "400 to 599 but 408 and 494 to 499; "
                                   "use off=URL to redirect", &value[2]);
                return NGX_CONF_ERROR;
            }

            gate->status = status;

        } else {
            if (ngx_strncmp(s.data, "http://", 7) != 0
                && ngx_strncmp(s.data, "https://", 8) != 0
                && s.data[0] != '/' && s.data[0] != '$')
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid action \"%V\": expected a "
                                   "status, @named location or URL "
                                   "(http://, https:// or /)", &value[2]);
                return NGX_CONF_ERROR;
            }

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

            ccv.cf = cf;
            ccv.value = &s;
            ccv.complex_value = &gate->url;

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            gate->off = NGX_HTTP_PORTAL_GATE_OFF_URL;
        }
    }

    plcf->gate = gate;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_portal_gate_module);
    pmcf->gates++;

    return NGX_CONF_OK;
}


static char *
ngx_http_portal_gate_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_portal_gate_loc_conf_t *plcf = conf;

    ngx_http_portal_gate_main_conf_t  *pmcf;

    if (plcf->api != NGX_CONF_UNSET) {
        return "is duplicate";
    }


    if (plcf->gate != NGX_CONF_UNSET_PTR && plcf->gate != NULL) {
        return "cannot be used in a location with portal_gate";
    }

    plcf->api = 1;

    /* the merge sets the handler, here and in a limit_except block */

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_portal_gate_module);
    pmcf->apis++;

    return NGX_CONF_OK;
}


static void
ngx_http_portal_gate_cleanup(void *data)
{
    ngx_http_portal_gate_main_conf_t  *pmcf = data;

    if (pmcf->blob) {
        ngx_free(pmcf->blob);
        pmcf->blob = NULL;
    }
}


static ngx_int_t
ngx_http_portal_gate_init(ngx_conf_t *cf)
{
    ngx_str_t                          name;
    ngx_uint_t                         i;
    ngx_http_handler_pt               *h;
    ngx_http_core_main_conf_t         *cmcf;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    static const char  *names[NGX_HTTP_PORTAL_GATE_NVARS] = {
        "portal_gate_company",
        "portal_gate_decision",
        "portal_gate_reason",
        "portal_gate_flag"
    };

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_portal_gate_module);

    /* the gate sets these four directly in r->variables */

    for (i = 0; i < NGX_HTTP_PORTAL_GATE_NVARS; i++) {
        name.data = (u_char *) names[i];
        name.len = ngx_strlen(names[i]);

        pmcf->index[i] = ngx_http_get_variable_index(cf, &name);
        if (pmcf->index[i] == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    /*
     * The rewrite phase, not the access phase: `return` and `rewrite` run
     * there and would skip an access-phase gate. Handlers of a phase run
     * in reverse order of registration, and a dynamic module registers
     * after the rewrite module, so the gate runs before `return`.
     */

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_portal_gate_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_portal_gate_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_portal_gate_body_filter;

    return NGX_OK;
}
