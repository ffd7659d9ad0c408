
/*
 * ngx_http_portal_gate_module: gate and route requests by a per-company
 * feature flag, read from a shared-memory zone.
 *
 * The zone holds the compiled snapshot (include/portal_gate.h): an index
 * and one piece per allow/deny list, with no pointers in them. Each worker
 * keeps its own copy: per request it compares the zone's generation with
 * its copy's in one load, and copies the index and the pieces it does not
 * hold yet, under the slab pool's mutex, only when the generation has
 * moved. The API's PUT and PATCH compile and validate outside the lock,
 * then swap the new index in under it, so readers see the old snapshot or
 * the new one, never a mix.
 */


#include "ngx_http_portal_gate_module.h"


static ngx_int_t ngx_http_portal_gate_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_off(ngx_http_request_t *r,
    ngx_http_portal_gate_gate_t *gate);
static void *ngx_http_portal_gate_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_portal_gate_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_portal_gate_create_srv_conf(ngx_conf_t *cf);
static char *ngx_http_portal_gate_merge_srv_conf(ngx_conf_t *cf,
    void *parent, void *child);
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
static char *ngx_http_portal_gate_acme_challenge(ngx_conf_t *cf, void *post,
    void *data);
static void ngx_http_portal_gate_cleanup(void *data);
static ngx_int_t ngx_http_portal_gate_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_portal_gate_init(ngx_conf_t *cf);


static ngx_conf_post_t  ngx_http_portal_gate_acme_challenge_post =
    { ngx_http_portal_gate_acme_challenge };


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

    { ngx_string("portal_gate_company_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1234,
      ngx_http_portal_gate_company_token,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
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

    { ngx_string("portal_gate_acme_challenge"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_portal_gate_srv_conf_t, acme_challenge),
      &ngx_http_portal_gate_acme_challenge_post },

    { ngx_string("portal_gate_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_portal_gate_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("portal_gate_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_portal_gate_health,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_portal_gate_module_ctx = {
    ngx_http_portal_gate_add_variables,    /* preconfiguration */
    ngx_http_portal_gate_init,             /* postconfiguration */

    ngx_http_portal_gate_create_main_conf, /* create main configuration */
    ngx_http_portal_gate_init_main_conf,   /* init main configuration */

    ngx_http_portal_gate_create_srv_conf,  /* create server configuration */
    ngx_http_portal_gate_merge_srv_conf,   /* merge server configuration */

    ngx_http_portal_gate_create_loc_conf,  /* create location configuration */
    ngx_http_portal_gate_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_portal_gate_module = {
    NGX_MODULE_V1,
    &ngx_http_portal_gate_module_ctx,      /* module context */
    ngx_http_portal_gate_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_portal_gate_init_module,      /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * $portal_gate_decision's value, "off", as the gate leaves it just before its
 * own off=@named redirect: a marker told apart by its address.
 */
static u_char  ngx_http_portal_gate_fallback_off[] = "off";



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

    /* the controller must always reach the API, and a scrape or a check
     * its answer: a gate inherited there is not run */

    if (gate == NULL || plcf->api || plcf->observe) {
        return NGX_DECLINED;
    }

    ngx_http_portal_gate_decide(r, &gate->flag, &d);
    ngx_http_portal_gate_set_variables(r, &gate->flag, &d);
    ngx_http_portal_gate_metrics_count(r, &gate->flag, &d, gate);

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
 * from the current location's portal_gate_env and portal_gate_company, or,
 * where portal_gate_company_token applies, from the token alone.
 */

void
ngx_http_portal_gate_decide(ngx_http_request_t *r, ngx_str_t *flag,
    ngx_http_portal_gate_decision_t *d)
{
    pg_snap_t                        *snap;
    ngx_str_t                         env, company;
    ngx_http_portal_gate_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_portal_gate_module);

    ngx_str_set(&env, NGX_HTTP_PORTAL_GATE_DEFAULT_ENV);

    if (plcf->env
        && ngx_http_complex_value(r, plcf->env, &env) != NGX_OK)
    {
        ngx_str_null(&env);
    }

    ngx_str_null(&company);

    if (plcf->token) {
        (void) ngx_http_portal_gate_token_company(r, plcf->token, &company);

    } else if (plcf->company
               && ngx_http_complex_value(r, plcf->company, &company)
                  != NGX_OK)
    {
        ngx_str_null(&company);
    }

    snap = ngx_http_portal_gate_snapshot(r);

    pg_eval(snap, (char *) env.data, env.len, (char *) flag->data, flag->len,
            (char *) company.data, company.len, &d->result);

    d->env = env;

    if (pg_valid_company((char *) company.data, company.len)) {
        d->company = company;

    } else {
        ngx_str_null(&d->company);
    }
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

    if (pmcf->shm_zone == NULL && (pmcf->gates || pmcf->apis || pmcf->acme))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" is used, but no \"portal_gate_zone\" is "
                           "defined in the http block",
                           pmcf->gates ? "portal_gate"
                           : pmcf->apis ? "portal_gate_api"
                           : "portal_gate_acme_challenge");
        return NGX_CONF_ERROR;
    }

    return ngx_http_portal_gate_metrics_init_conf(cf, pmcf);
}


static void *
ngx_http_portal_gate_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_portal_gate_srv_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_portal_gate_srv_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->acme_challenge = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_portal_gate_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_portal_gate_srv_conf_t  *prev = parent;
    ngx_http_portal_gate_srv_conf_t  *conf = child;

    ngx_conf_merge_value(conf->acme_challenge, prev->acme_challenge, 0);

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
    conf->token = NGX_CONF_UNSET_PTR;
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
    ngx_conf_merge_ptr_value(conf->token, prev->token, NULL);
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

    if (plcf->observe) {
        return "cannot be used in a portal_gate_metrics or "
               "portal_gate_health location";
    }

    plcf->api = 1;

    /* the merge sets the handler, here and in a limit_except block */

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_portal_gate_module);
    pmcf->apis++;

    return NGX_CONF_OK;
}


/*
 * portal_gate_acme_challenge on: counted, so that the challenge handler is
 * installed only when some server may use it, and the zone is required.
 */

static char *
ngx_http_portal_gate_acme_challenge(ngx_conf_t *cf, void *post, void *data)
{
    ngx_flag_t  *fp = data;

    ngx_http_portal_gate_main_conf_t  *pmcf;

    if (*fp) {
        pmcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_portal_gate_module);
        pmcf->acme++;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_portal_gate_cleanup(void *data)
{
    ngx_http_portal_gate_main_conf_t  *pmcf = data;

    ngx_http_portal_gate_worker_snapshot_free(pmcf);
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

    if (ngx_http_portal_gate_acme_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_portal_gate_metrics_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* every answer of the API is JSON, nginx's own error pages too */

    return ngx_http_portal_gate_api_filter_init(cf);
}


/* in the master, once a new cycle is committed */

static ngx_int_t
ngx_http_portal_gate_init_module(ngx_cycle_t *cycle)
{
    ngx_http_portal_gate_metrics_check_slots(cycle);

    return ngx_http_portal_gate_retire(cycle);
}
