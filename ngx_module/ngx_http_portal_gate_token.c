
/*
 * Trusted company identity: portal_gate_company_token VALUE keys=PATH
 * [claim=NAME] [leeway=TIME]. Where it applies, the company is the claim
 * of a token that the application signed (include/pg_token.h), and
 * nothing else: an invalid or missing token is no company.
 *
 * The keys are read when the configuration is (nginx -t refuses a bad
 * file, a reload reads it again). Each worker keeps the tokens it has
 * verified in a bounded LRU cache, keyed by the token's bytes and the
 * directive, with the company and exp: a hit costs a hash and a compare,
 * so ES256 is verified once per token per worker, and exp (with the
 * leeway) is checked again on every hit.
 */


#include "ngx_http_portal_gate_module.h"


/* Per worker: at most this many tokens, and this many bytes of them. */
#define NGX_HTTP_PORTAL_GATE_TOKEN_CACHE_MAX    4096
#define NGX_HTTP_PORTAL_GATE_TOKEN_CACHE_BYTES  (2 * 1024 * 1024)
#define NGX_HTTP_PORTAL_GATE_TOKEN_BUCKETS      4096     /* a power of 2 */


typedef struct ngx_http_portal_gate_token_entry_s
    ngx_http_portal_gate_token_entry_t;

struct ngx_http_portal_gate_token_entry_s {
    ngx_queue_t                          queue;   /* most recent first */
    ngx_http_portal_gate_token_entry_t  *next;    /* the bucket's chain */
    ngx_http_portal_gate_token_t        *token;   /* the directive that
                                                     verified it */
    time_t                               exp;
    uint32_t                             hash;
    size_t                               len;
    size_t                               company_len;
    u_char                               company[PG_ID_MAX];
    u_char                               data[1]; /* the token */
};


struct ngx_http_portal_gate_token_cache_s {
    ngx_queue_t                          lru;
    ngx_uint_t                           n;
    size_t                               bytes;
    uint32_t                             seed;
    ngx_http_portal_gate_token_entry_t  *buckets[
                                        NGX_HTTP_PORTAL_GATE_TOKEN_BUCKETS];
};


static pg_token_status_t ngx_http_portal_gate_token_check(
    ngx_http_request_t *r, ngx_http_portal_gate_token_t *token,
    ngx_str_t *value, ngx_str_t *company);
static ngx_http_portal_gate_token_cache_t *ngx_http_portal_gate_token_cache(
    ngx_http_request_t *r);
static ngx_http_portal_gate_token_entry_t *
    ngx_http_portal_gate_token_lookup(ngx_http_portal_gate_token_cache_t *c,
    ngx_http_portal_gate_token_t *token, ngx_str_t *value, uint32_t hash);
static void ngx_http_portal_gate_token_insert(ngx_http_request_t *r,
    ngx_http_portal_gate_token_cache_t *c,
    ngx_http_portal_gate_token_t *token, ngx_str_t *value, uint32_t hash,
    pg_token_result_t *res);
static void ngx_http_portal_gate_token_remove(
    ngx_http_portal_gate_token_cache_t *c,
    ngx_http_portal_gate_token_entry_t *e);
static void ngx_http_portal_gate_token_keys_cleanup(void *data);
static void ngx_http_portal_gate_token_cache_cleanup(void *data);


/*
 * portal_gate_company_token VALUE keys=PATH [claim=NAME] [leeway=TIME]
 * (http, server, location)
 */

char *
ngx_http_portal_gate_company_token(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_portal_gate_loc_conf_t *plcf = conf;

    size_t                             n;
    ngx_str_t                         *value, s;
    ngx_int_t                          leeway;
    ngx_uint_t                         i;
    pg_error_t                         err;
    pg_token_keys_t                   *keys;
    ngx_pool_cleanup_t                *cln;
    ngx_http_portal_gate_token_t      *token;
    ngx_http_portal_gate_main_conf_t  *pmcf;
    ngx_http_compile_complex_value_t   ccv;

    if (plcf->token != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty token value: expected a variable such as "
                           "$cookie_NAME or $http_NAME");
        return NGX_CONF_ERROR;
    }

    token = ngx_pcalloc(cf->pool, sizeof(ngx_http_portal_gate_token_t));
    if (token == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = &token->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&token->claim, PG_TOKEN_DEFAULT_CLAIM);
    token->leeway = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "keys=", 5) == 0) {

            if (token->keys_file.data) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "duplicate parameter \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            token->keys_file.data = value[i].data + 5;
            token->keys_file.len = value[i].len - 5;

            if (token->keys_file.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty keys file path in \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            /* relative to the configuration's folder, as ssl_certificate */
            if (ngx_conf_full_name(cf->cycle, &token->keys_file, 1)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "claim=", 6) == 0) {

            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            if (!pg_token_valid_claim((char *) s.data, s.len)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid claim \"%V\": expected 1 to %d "
                                   "printable characters without spaces or "
                                   "quotes, not exp, nbf or iat",
                                   &value[i], PG_TOKEN_CLAIM_MAX);
                return NGX_CONF_ERROR;
            }

            token->claim = s;       /* the argument ends with a NUL */

            continue;
        }

        if (ngx_strncmp(value[i].data, "leeway=", 7) == 0) {

            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            leeway = ngx_parse_time(&s, 1);

            if (leeway == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid leeway \"%V\": expected a time "
                                   "such as 30s or 2m", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (leeway > NGX_HTTP_PORTAL_GATE_TOKEN_LEEWAY_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "leeway \"%V\" is too large: at most "
                                   "%ds; it absorbs clock skew, the "
                                   "token's exp says how long it lives",
                                   &value[i],
                                   NGX_HTTP_PORTAL_GATE_TOKEN_LEEWAY_MAX);
                return NGX_CONF_ERROR;
            }

            token->leeway = (time_t) leeway;

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\": expected keys=PATH, "
                           "claim=NAME or leeway=TIME", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (token->keys_file.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"keys\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* read now: nginx -t refuses a bad file, and a reload reads it again */

    if (pg_token_keys_load((char *) token->keys_file.data, 0, &keys, &err)
        != PG_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid keys file \"%V\": %s",
                           &token->keys_file, err.text);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        pg_token_keys_free(keys);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_portal_gate_token_keys_cleanup;
    cln->data = keys;

    token->keys = keys;

    n = pg_token_keys_private(keys);

    if (n) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "keys file \"%V\" holds %uz ES256 private "
                           "key%s (\"d\"), which the edge does not use: "
                           "give it the public JWKS, so that it holds "
                           "nothing that can sign a token",
                           &token->keys_file, n, n == 1 ? "" : "s");
    }

    plcf->token = token;

    /* the first directive: the worker's cache goes with the cycle */

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_portal_gate_module);

    if (pmcf->tokens++ == 0) {
        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_http_portal_gate_token_cache_cleanup;
        cln->data = pmcf;
    }

    return NGX_CONF_OK;
}


/*
 * The request's company under token: "" when the token is missing or
 * invalid. The verdict is kept in the request's context, so that the
 * gate, $portal_flag_* and $portal_gate_token_error check it, and log a
 * rejection, once per request and location.
 */

pg_token_status_t
ngx_http_portal_gate_token_company(ngx_http_request_t *r,
    ngx_http_portal_gate_token_t *token, ngx_str_t *company)
{
    ngx_str_t                    value;
    pg_token_status_t            status;
    ngx_http_portal_gate_ctx_t  *ctx;

    ngx_str_null(company);

    if (ngx_http_complex_value(r, &token->value, &value) != NGX_OK) {
        return PG_TOKEN_MISSING;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_portal_gate_module);

    if (ctx && ctx->token == token && ctx->token_value.len == value.len
        && (value.len == 0
            || ngx_memcmp(ctx->token_value.data, value.data, value.len)
               == 0))
    {
        *company = ctx->token_company;
        return ctx->token_status;
    }

    status = ngx_http_portal_gate_token_check(r, token, &value, company);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_portal_gate_ctx_t));
        if (ctx == NULL) {
            return status;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_portal_gate_module);
    }

    ctx->token = token;
    ctx->token_value = value;
    ctx->token_company = *company;
    ctx->token_status = status;

    return status;
}


static pg_token_status_t
ngx_http_portal_gate_token_check(ngx_http_request_t *r,
    ngx_http_portal_gate_token_t *token, ngx_str_t *value,
    ngx_str_t *company)
{
    time_t                               now;
    uint32_t                             hash;
    pg_error_t                           err;
    pg_token_result_t                    res;
    ngx_http_portal_gate_token_entry_t  *e;
    ngx_http_portal_gate_token_cache_t  *c;

    /* an anonymous request is not a rejection: it is not logged */

    if (value->len == 0) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "portal gate token: missing");
        return PG_TOKEN_MISSING;
    }

    now = ngx_time();
    c = NULL;
    hash = 0;

    if (value->len <= PG_TOKEN_MAX) {
        c = ngx_http_portal_gate_token_cache(r);
    }

    if (c) {
        hash = pg_token_cache_hash((char *) value->data, value->len,
                                   c->seed);
        e = ngx_http_portal_gate_token_lookup(c, token, value, hash);

        if (e && now - token->leeway < e->exp) {
            ngx_queue_remove(&e->queue);
            ngx_queue_insert_head(&c->lru, &e->queue);

            /* a copy: the entry may be evicted before the request ends */
            company->data = ngx_pnalloc(r->pool, e->company_len);
            if (company->data == NULL) {
                return PG_TOKEN_MISSING;
            }

            ngx_memcpy(company->data, e->company, e->company_len);
            company->len = e->company_len;

            return PG_TOKEN_VALID;
        }

        if (e) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "portal gate token rejected: expired: expired at "
                          "%T, now %T, leeway %T s", e->exp, now,
                          token->leeway);

            ngx_http_portal_gate_token_remove(c, e);
            return PG_TOKEN_EXPIRED;
        }
    }

    if (pg_token_verify(token->keys, (char *) value->data, value->len,
                        (char *) token->claim.data, now, token->leeway, &res,
                        &err)
        != PG_OK)
    {
        /* the reason, never the token */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "portal gate token rejected: %s: %s",
                      pg_token_status_name(res.status), err.text);
        return res.status;
    }

    company->data = ngx_pnalloc(r->pool, res.company_len);
    if (company->data == NULL) {
        return PG_TOKEN_MISSING;
    }

    ngx_memcpy(company->data, res.company, res.company_len);
    company->len = res.company_len;

    if (c) {
        ngx_http_portal_gate_token_insert(r, c, token, value, hash, &res);
    }

    return PG_TOKEN_VALID;
}


/* This worker's cache, made at its first token. NULL: out of memory. */

static ngx_http_portal_gate_token_cache_t *
ngx_http_portal_gate_token_cache(ngx_http_request_t *r)
{
    ngx_http_portal_gate_token_cache_t  *c;
    ngx_http_portal_gate_main_conf_t    *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

    if (pmcf->token_cache) {
        return pmcf->token_cache;
    }

    c = ngx_calloc(sizeof(ngx_http_portal_gate_token_cache_t),
                   r->connection->log);
    if (c == NULL) {
        return NULL;
    }

    ngx_queue_init(&c->lru);

    /* a hash no client can aim at */
    c->seed = (uint32_t) ngx_random();

    pmcf->token_cache = c;

    return c;
}


static ngx_http_portal_gate_token_entry_t *
ngx_http_portal_gate_token_lookup(ngx_http_portal_gate_token_cache_t *c,
    ngx_http_portal_gate_token_t *token, ngx_str_t *value, uint32_t hash)
{
    ngx_http_portal_gate_token_entry_t  *e;

    for (e = c->buckets[hash & (NGX_HTTP_PORTAL_GATE_TOKEN_BUCKETS - 1)];
         e;
         e = e->next)
    {
        if (e->hash == hash && e->token == token && e->len == value->len
            && ngx_memcmp(e->data, value->data, value->len) == 0)
        {
            return e;
        }
    }

    return NULL;
}


static void
ngx_http_portal_gate_token_insert(ngx_http_request_t *r,
    ngx_http_portal_gate_token_cache_t *c,
    ngx_http_portal_gate_token_t *token, ngx_str_t *value, uint32_t hash,
    pg_token_result_t *res)
{
    size_t                               size;
    ngx_queue_t                         *q;
    ngx_http_portal_gate_token_entry_t  *e, **bucket;

    size = offsetof(ngx_http_portal_gate_token_entry_t, data) + value->len;

    /* make room: the least recently used go first */

    while (c->n >= NGX_HTTP_PORTAL_GATE_TOKEN_CACHE_MAX
           || (c->n
               && c->bytes + size > NGX_HTTP_PORTAL_GATE_TOKEN_CACHE_BYTES))
    {
        q = ngx_queue_last(&c->lru);
        e = ngx_queue_data(q, ngx_http_portal_gate_token_entry_t, queue);
        ngx_http_portal_gate_token_remove(c, e);
    }

    e = ngx_alloc(size, r->connection->log);
    if (e == NULL) {
        return;
    }

    e->token = token;
    e->exp = (time_t) res->exp;
    e->hash = hash;
    e->len = value->len;
    e->company_len = res->company_len;
    ngx_memcpy(e->company, res->company, res->company_len);
    ngx_memcpy(e->data, value->data, value->len);

    bucket = &c->buckets[hash & (NGX_HTTP_PORTAL_GATE_TOKEN_BUCKETS - 1)];
    e->next = *bucket;
    *bucket = e;

    ngx_queue_insert_head(&c->lru, &e->queue);

    c->n++;
    c->bytes += size;
}


static void
ngx_http_portal_gate_token_remove(ngx_http_portal_gate_token_cache_t *c,
    ngx_http_portal_gate_token_entry_t *e)
{
    ngx_http_portal_gate_token_entry_t  **p;

    for (p = &c->buckets[e->hash & (NGX_HTTP_PORTAL_GATE_TOKEN_BUCKETS - 1)];
         *p;
         p = &(*p)->next)
    {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }

    ngx_queue_remove(&e->queue);

    c->n--;
    c->bytes -= offsetof(ngx_http_portal_gate_token_entry_t, data) + e->len;

    ngx_free(e);
}


/*
 * $portal_gate_token_error: "" for a valid token, or why it was refused;
 * not found where no portal_gate_company_token applies.
 */

ngx_int_t
ngx_http_portal_gate_token_error_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char                       *name;
    ngx_str_t                         company;
    ngx_http_portal_gate_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_portal_gate_module);

    if (plcf->token == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    name = pg_token_status_name(
                ngx_http_portal_gate_token_company(r, plcf->token, &company));

    v->data = (u_char *) name;
    v->len = ngx_strlen(name);
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static void
ngx_http_portal_gate_token_keys_cleanup(void *data)
{
    pg_token_keys_free(data);
}


/* with the cycle: the worker's cache, if it made one */

static void
ngx_http_portal_gate_token_cache_cleanup(void *data)
{
    ngx_http_portal_gate_main_conf_t  *pmcf = data;

    ngx_queue_t                         *q;
    ngx_http_portal_gate_token_cache_t  *c;

    c = pmcf->token_cache;

    if (c == NULL) {
        return;
    }

    while (!ngx_queue_empty(&c->lru)) {
        q = ngx_queue_head(&c->lru);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_portal_gate_token_entry_t,
                                queue));
    }

    ngx_free(c);
    pmcf->token_cache = NULL;
}
