
/*
 * The module's variables: $portal_gate_company, $portal_gate_decision,
 * $portal_gate_reason and $portal_gate_flag, which the gate sets, and the
 * prefix variable $portal_flag_NAME, which evaluates NAME on its own.
 * $portal_gate_token_error's getter is in ngx_http_portal_gate_token.c.
 */


#include "ngx_http_portal_gate_module.h"


static void ngx_http_portal_gate_values(ngx_str_t *flag,
    ngx_http_portal_gate_decision_t *d, ngx_str_t *values);
static ngx_int_t ngx_http_portal_gate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_portal_gate_flag_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_portal_gate_vars[] = {

    { ngx_string("portal_gate_company"), NULL,
      ngx_http_portal_gate_variable, NGX_HTTP_PORTAL_GATE_VAR_COMPANY, 0, 0 },

    { ngx_string("portal_gate_decision"), NULL,
      ngx_http_portal_gate_variable, NGX_HTTP_PORTAL_GATE_VAR_DECISION, 0, 0 },

    { ngx_string("portal_gate_reason"), NULL,
      ngx_http_portal_gate_variable, NGX_HTTP_PORTAL_GATE_VAR_REASON, 0, 0 },

    { ngx_string("portal_gate_flag"), NULL,
      ngx_http_portal_gate_variable, NGX_HTTP_PORTAL_GATE_VAR_FLAG, 0, 0 },

    { ngx_string("portal_gate_token_error"), NULL,
      ngx_http_portal_gate_token_error_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("portal_flag_"), NULL,
      ngx_http_portal_gate_flag_variable, 0,
      NGX_HTTP_VAR_PREFIX|NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_portal_gate_flag_prefix =
    ngx_string("portal_flag_");


ngx_int_t
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


/*
 * The gate stores its decision in the request's variables, which (unlike
 * module contexts) survive the internal redirect to an off=@named location,
 * so the fallback's access log still says why the request landed there.
 */

void
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

    /* not cacheable: each read answers for the environment and company it
     * sees now; the metrics count a decision once per client request */
    ngx_http_portal_gate_metrics_count(r, &flag, &d, NULL);

    v->data = (u_char *) (d.result.on ? "1" : "0");
    v->len = 1;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
