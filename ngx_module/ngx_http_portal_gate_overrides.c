
/*
 * Kill overrides: the break-glass kill of `portal-gatectl kill --direct`.
 *
 * An override turns one flag off in one environment on this edge, whatever
 * the snapshots pushed to it say, until it is released. It works with Redis
 * and the controller down: the CLI talks to the API straight. The zone
 * keeps the overrides beside the snapshot, the state file keeps them across
 * restarts, and each worker applies them to its copy of the snapshot when
 * the generation moves (ngx_http_portal_gate_zone.c), so a request pays
 * nothing for them.
 *
 *   GET    overrides                       the list
 *   PUT    overrides?env=E&flag=F          kill; body {"by", "reason"},
 *                                          both optional; idempotent
 *   DELETE overrides?env=E&flag=F          release
 */


#include "ngx_http_portal_gate_module.h"


static void ngx_http_portal_gate_overrides_put(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_overrides_delete(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_overrides_target(
    ngx_http_request_t *r, ngx_str_t *env, ngx_str_t *flag, u_char *error);
static ngx_int_t ngx_http_portal_gate_overrides_retired(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_overrides_find(
    ngx_http_portal_gate_shctx_t *sh, ngx_str_t *env, ngx_str_t *flag);


ngx_int_t
ngx_http_portal_gate_api_overrides(ngx_http_request_t *r, ngx_str_t *path)
{
    ngx_int_t  rc;

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_portal_gate_api_send(r, NGX_HTTP_OK,
                   json_pack("{s:o}", "overrides",
                             ngx_http_portal_gate_overrides_json(r)));
    }

    if (r->method == NGX_HTTP_DELETE) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_portal_gate_overrides_delete(r);
    }

    if (r->method != NGX_HTTP_PUT) {
        return ngx_http_portal_gate_api_not_allowed(r,
                                                    "GET, HEAD, PUT, DELETE",
                                                    path);
    }

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_portal_gate_overrides_put);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* The zone's overrides as a JSON array. A new reference, NULL on ENOMEM. */

json_t *
ngx_http_portal_gate_overrides_json(ngx_http_request_t *r)
{
    ngx_uint_t                         i;
    json_t                            *list;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    list = json_array();
    if (list == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (i = 0; i < ngx_min(sh->noverrides, PG_OVERRIDES_MAX); i++) {
        if (json_array_append_new(list,
                                  pg_override_to_json(&sh->overrides[i])))
        {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            json_decref(list);
            return NULL;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return list;
}


static void
ngx_http_portal_gate_overrides_put(ngx_http_request_t *r)
{
    u_char                            *body;
    u_char                             error[NGX_MAX_ERROR_STR];
    size_t                             len;
    json_t                            *json, *by, *reason, *v;
    ngx_int_t                          rc;
    ngx_str_t                          env, flag;
    pg_error_t                         err;
    const char                        *key;
    pg_override_t                      o;
    json_error_t                       jerr;
    ngx_atomic_uint_t                  generation;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    rc = ngx_http_portal_gate_overrides_target(r, &env, &flag, error);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc == NGX_ABORT
                                     ? NGX_HTTP_INTERNAL_SERVER_ERROR
                                     : ngx_http_portal_gate_api_error(r,
                                           NGX_HTTP_BAD_REQUEST, "%s",
                                           error));
        return;
    }

    rc = ngx_http_portal_gate_api_read_body(r, &body, &len);
    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* the body is optional: who and why, for the on-call record */

    by = NULL;
    reason = NULL;
    json = NULL;

    if (len) {
        json = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);
        ngx_free(body);

        if (json == NULL || !json_is_object(json)) {
            json_decref(json);
            ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                      NGX_HTTP_BAD_REQUEST,
                                      "the body must be a JSON object with "
                                      "\"by\" and \"reason\""));
            return;
        }

        json_object_foreach(json, key, v) {
            if (ngx_strcmp(key, "by") == 0 && json_is_string(v)) {
                by = v;

            } else if (ngx_strcmp(key, "reason") == 0 && json_is_string(v)) {
                reason = v;

            } else {
                json_decref(json);
                ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(
                                          r, NGX_HTTP_BAD_REQUEST,
                                          "the body takes \"by\" and "
                                          "\"reason\", both strings"));
                return;
            }
        }
    }

    rc = pg_override_set(&o, (char *) env.data, env.len,
                         (char *) flag.data, flag.len, ngx_time(),
                         by ? json_string_value(by) : NULL,
                         by ? json_string_length(by) : 0,
                         reason ? json_string_value(reason) : NULL,
                         reason ? json_string_length(reason) : 0, &err);

    json_decref(json);

    if (rc != PG_OK) {
        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                  NGX_HTTP_BAD_REQUEST, "%s", err.text));
        return;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (sh->retired) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        ngx_http_finalize_request(r, ngx_http_portal_gate_overrides_retired(r));
        return;
    }

    if (ngx_http_portal_gate_overrides_find(sh, &env, &flag) != NGX_ERROR) {

        /*
         * Killed already: the first override's who and why stay. The state
         * file is written again all the same, so that a retry heals a kill
         * whose first write failed.
         */

        generation = sh->generation;
        ngx_shmtx_unlock(&ctx->shpool->mutex);

        ngx_http_portal_gate_state_write(r, generation, NGX_HTTP_OK,
                                         json_pack("{s:s%,s:s%,s:b}",
                                                   "env", env.data, env.len,
                                                   "flag", flag.data,
                                                   flag.len, "created", 0), 1);
        return;
    }

    if (sh->noverrides >= PG_OVERRIDES_MAX) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);

        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                  NGX_HTTP_INSUFFICIENT_STORAGE,
                                  "this edge holds %d overrides, the most "
                                  "it can; release one first",
                                  PG_OVERRIDES_MAX));
        return;
    }

    sh->overrides[sh->noverrides] = o;
    sh->noverrides++;
    sh->generation++;
    generation = sh->generation;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "portal_gate: flag \"%V\" killed in \"%V\" by override "
                  "(by \"%s\": \"%s\")", &flag, &env, o.by, o.reason);

    ngx_http_portal_gate_state_write(r, generation, NGX_HTTP_OK,
                                     json_pack("{s:s%,s:s%,s:b}",
                                               "env", env.data, env.len,
                                               "flag", flag.data, flag.len,
                                               "created", 1), 1);
}


static ngx_int_t
ngx_http_portal_gate_overrides_delete(ngx_http_request_t *r)
{
    u_char                             error[NGX_MAX_ERROR_STR];
    ngx_int_t                          i, rc;
    ngx_str_t                          env, flag;
    ngx_atomic_uint_t                  generation;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    rc = ngx_http_portal_gate_overrides_target(r, &env, &flag, error);

    if (rc != NGX_OK) {
        return rc == NGX_ABORT ? NGX_HTTP_INTERNAL_SERVER_ERROR
                               : ngx_http_portal_gate_api_error(r,
                                     NGX_HTTP_BAD_REQUEST, "%s", error);
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (sh->retired) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return ngx_http_portal_gate_overrides_retired(r);
    }

    i = ngx_http_portal_gate_overrides_find(sh, &env, &flag);

    if (i == NGX_ERROR) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);

        return ngx_http_portal_gate_api_error(r, NGX_HTTP_NOT_FOUND,
                                              "no override for flag \"%V\" "
                                              "in \"%V\"", &flag, &env);
    }

    sh->noverrides--;
    sh->overrides[i] = sh->overrides[sh->noverrides];
    sh->generation++;
    generation = sh->generation;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "portal_gate: override of flag \"%V\" in \"%V\" released",
                  &flag, &env);

    r->main->count++;

    ngx_http_portal_gate_state_write(r, generation, NGX_HTTP_OK,
                                     json_pack("{s:s%,s:s%,s:b}",
                                               "env", env.data, env.len,
                                               "flag", flag.data, flag.len,
                                               "released", 1), 1);
    return NGX_DONE;
}


/*
 * ?env=E&flag=F: both required, both names. NGX_ERROR with why in error,
 * NGX_ABORT when out of memory.
 */

static ngx_int_t
ngx_http_portal_gate_overrides_target(ngx_http_request_t *r, ngx_str_t *env,
    ngx_str_t *flag, u_char *error)
{
    u_char  *last;

    ngx_str_null(env);
    ngx_str_null(flag);

    last = error + NGX_MAX_ERROR_STR - 1;

    if (ngx_http_portal_gate_api_arg(r, "env", env) != NGX_OK
        || ngx_http_portal_gate_api_arg(r, "flag", flag) != NGX_OK)
    {
        return NGX_ABORT;
    }

    if (env->len == 0 || flag->len == 0) {
        *ngx_slprintf(error, last, "an override needs \"env\" and "
                      "\"flag\" arguments") = '\0';
        return NGX_ERROR;
    }

    if (!pg_valid_name((char *) env->data, env->len)) {
        *ngx_slprintf(error, last, "invalid environment name \"%V\": "
                      "expected [a-z0-9_]{1,64}", env) = '\0';
        return NGX_ERROR;
    }

    if (!pg_valid_name((char *) flag->data, flag->len)) {
        *ngx_slprintf(error, last, "invalid flag name \"%V\": expected "
                      "[a-z0-9_]{1,64}", flag) = '\0';
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* The override's index, or NGX_ERROR; under the zone's lock. */

static ngx_int_t
ngx_http_portal_gate_overrides_find(ngx_http_portal_gate_shctx_t *sh,
    ngx_str_t *env, ngx_str_t *flag)
{
    ngx_int_t       i;
    pg_override_t  *o;

    for (i = 0; i < (ngx_int_t) ngx_min(sh->noverrides, PG_OVERRIDES_MAX);
         i++)
    {
        o = &sh->overrides[i];

        if (ngx_strlen(o->env) == env->len
            && ngx_strncmp(o->env, env->data, env->len) == 0
            && ngx_strlen(o->flag) == flag->len
            && ngx_strncmp(o->flag, flag->data, flag->len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


/* An old worker after a resizing reload: the client must try again. */

static ngx_int_t
ngx_http_portal_gate_overrides_retired(ngx_http_request_t *r)
{
    return ngx_http_portal_gate_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                          "nginx is reloading with a "
                                          "resized zone: send the request "
                                          "again");
}
