
/*
 * ACME http-01 challenges, answered at the edge.
 *
 * portal-gated obtains the staging certificates; the CA checks that it
 * controls a name by fetching /.well-known/acme-challenge/TOKEN from it,
 * that is from any edge. The daemon puts the set of pending challenges in
 * every edge's zone through the API, and a server with
 * `portal_gate_acme_challenge on` answers them:
 *
 *   GET    challenges        {"challenges": {"TOKEN": "KEY_AUTH", ...}}
 *   PUT    challenges        the whole set, replaced at once: a JSON object
 *                            {"TOKEN": "KEY_AUTH", ...}; {} clears it
 *
 * The answer must win over whatever the server does with other requests (a
 * `return 301 https://...`, a `rewrite`, a gate), so the handler runs in
 * the server-rewrite phase, before the rewrite module's server-level
 * directives (a dynamic module's handler of a phase runs first) and before
 * any location is chosen. A request for another path costs one prefix
 * compare, on the servers with the directive on only.
 *
 * Challenge requests are rare (a few per issuance), so the handler looks
 * the token up in the zone under the slab pool's mutex rather than keep a
 * per-worker copy. The set lives in the zone, so it survives a reload;
 * a resizing reload carries it over; a restart loses it, and the daemon
 * pushes it again while an order is pending.
 */


#include "ngx_http_portal_gate_module.h"


#define NGX_HTTP_PORTAL_GATE_ACME_PREFIX  "/.well-known/acme-challenge/"

/* how much of a bad token an error message quotes */
#define NGX_HTTP_PORTAL_GATE_QUOTE_MAX    64


/* a challenge of a PUT body; the strings point into the parsed JSON */
typedef struct {
    ngx_str_t                    token;
    ngx_str_t                    key_auth;
} ngx_http_portal_gate_challenge_t;


static ngx_int_t ngx_http_portal_gate_acme_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_acme_not_found(ngx_http_request_t *r);
static void ngx_http_portal_gate_challenges_put(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_challenges_parse(ngx_http_request_t *r,
    u_char *body, size_t len, ngx_http_portal_gate_challenges_t **set,
    u_char *error);
static ngx_int_t ngx_http_portal_gate_challenges_store(ngx_http_request_t *r,
    ngx_http_portal_gate_challenges_t *set);
static json_t *ngx_http_portal_gate_challenges_json(ngx_http_request_t *r);
static int ngx_libc_cdecl ngx_http_portal_gate_challenge_cmp(const void *one,
    const void *two);
static ngx_uint_t ngx_http_portal_gate_acme_valid(u_char *s, size_t len,
    size_t max, ngx_uint_t dot);
static u_char *ngx_http_portal_gate_acme_quote(u_char *buf, u_char *s,
    size_t len);
static ngx_int_t ngx_http_portal_gate_challenges_check(
    ngx_http_portal_gate_challenges_t *set, u_char *start, u_char *end);


/* installed by the module's postconfiguration, when a server may use it */

ngx_int_t
ngx_http_portal_gate_acme_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt               *h;
    ngx_http_core_main_conf_t         *cmcf;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_portal_gate_module);

    if (pmcf->acme == 0) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_SERVER_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_portal_gate_acme_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_portal_gate_acme_handler(ngx_http_request_t *r)
{
    u_char                             *p, *last;
    size_t                              len;
    ngx_int_t                           rc;
    ngx_str_t                           token;
    ngx_buf_t                          *b;
    ngx_uint_t                          i;
    ngx_chain_t                         out;
    ngx_http_portal_gate_shctx_t       *sh;
    ngx_http_portal_gate_srv_conf_t    *pscf;
    ngx_http_portal_gate_zone_ctx_t    *ctx;
    ngx_http_portal_gate_main_conf_t   *pmcf;
    ngx_http_portal_gate_challenges_t  *set;

    pscf = ngx_http_get_module_srv_conf(r, ngx_http_portal_gate_module);

    if (!pscf->acme_challenge
        || r->uri.len <= sizeof(NGX_HTTP_PORTAL_GATE_ACME_PREFIX) - 1
        || ngx_strncmp(r->uri.data, NGX_HTTP_PORTAL_GATE_ACME_PREFIX,
                       sizeof(NGX_HTTP_PORTAL_GATE_ACME_PREFIX) - 1)
           != 0)
    {
        return NGX_DECLINED;
    }

    /* the client's own request only: not a subrequest, not a redirect */

    if (r != r->main || r->internal
        || !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)))
    {
        return NGX_DECLINED;
    }

    token.data = r->uri.data + sizeof(NGX_HTTP_PORTAL_GATE_ACME_PREFIX) - 1;
    token.len = r->uri.len - (sizeof(NGX_HTTP_PORTAL_GATE_ACME_PREFIX) - 1);

    if (!ngx_http_portal_gate_acme_valid(token.data, token.len,
                                         NGX_HTTP_PORTAL_GATE_TOKEN_MAX, 0))
    {
        return ngx_http_portal_gate_acme_not_found(r);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, NGX_HTTP_PORTAL_GATE_KEY_AUTH_MAX);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    set = sh->challenges;

    if (set) {
        p = set->data;
        last = set->data + set->size;

        for (i = 0; i < set->n && p < last; i++) {
            len = ngx_strlen(p);

            if (len == token.len && ngx_strncmp(p, token.data, len) == 0) {
                p += len + 1;
                len = ngx_min(ngx_strlen(p),
                              NGX_HTTP_PORTAL_GATE_KEY_AUTH_MAX);
                b->last = ngx_cpymem(b->last, p, len);
                break;
            }

            p += len + 1;
            p += ngx_strlen(p) + 1;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (b->last == b->pos) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "portal gate: no acme challenge \"%V\"", &token);
        return ngx_http_portal_gate_acme_not_found(r);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "portal gate: acme challenge \"%V\" answered", &token);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/octet-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * Our own 404 for a token we do not have. A plain NGX_HTTP_NOT_FOUND goes
 * through the server's error_page: with `error_page 404 /404.html;` it
 * becomes an internal redirect, which this handler leaves alone (not the
 * client's request), so the server's `return 301` or `rewrite` answers
 * it, and the CA sees a redirect or a page instead of a 404. Marking the
 * request as served by an error page already makes nginx send its plain
 * 404 page.
 */

static ngx_int_t
ngx_http_portal_gate_acme_not_found(ngx_http_request_t *r)
{
    r->error_page = 1;

    return NGX_HTTP_NOT_FOUND;
}


/* the API's challenges resource */

ngx_int_t
ngx_http_portal_gate_api_challenges(ngx_http_request_t *r, ngx_str_t *path)
{
    ngx_int_t  rc;

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_portal_gate_api_send(r, NGX_HTTP_OK,
                   json_pack("{s:o}", "challenges",
                             ngx_http_portal_gate_challenges_json(r)));
    }

    if (r->method != NGX_HTTP_PUT) {
        return ngx_http_portal_gate_api_not_allowed(r, "GET, HEAD, PUT",
                                                    path);
    }

    rc = ngx_http_read_client_request_body(r,
                                        ngx_http_portal_gate_challenges_put);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* How many challenges the zone holds; under the zone's lock. */

ngx_uint_t
ngx_http_portal_gate_challenges_count(ngx_http_portal_gate_shctx_t *sh)
{
    return sh->challenges ? sh->challenges->n : 0;
}


static void
ngx_http_portal_gate_challenges_put(ngx_http_request_t *r)
{
    u_char                             *body;
    u_char                              error[NGX_MAX_ERROR_STR];
    size_t                              len;
    ngx_int_t                           rc;
    ngx_uint_t                          n;
    ngx_http_portal_gate_challenges_t  *set;

    rc = ngx_http_portal_gate_api_read_body(r, &body, &len);
    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* parse and validate outside the lock */

    rc = ngx_http_portal_gate_challenges_parse(r, body, len, &set, error);

    if (body) {
        ngx_free(body);
    }

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                  NGX_HTTP_BAD_REQUEST, "%s", error));
        return;
    }

    n = set->n;

    rc = ngx_http_portal_gate_challenges_store(r, set);

    ngx_free(set);

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_ABORT) {
        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                  NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "nginx is reloading with a resized zone: "
                                  "send the challenges again"));
        return;
    }

    if (rc == NGX_BUSY) {
        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                  NGX_HTTP_INSUFFICIENT_STORAGE,
                                  "the zone has no room for %ui challenges; "
                                  "enlarge portal_gate_zone", n));
        return;
    }

    ngx_http_finalize_request(r, ngx_http_portal_gate_api_send(r,
                              NGX_HTTP_OK,
                              json_pack("{s:I}", "challenges",
                                        (json_int_t) n)));
}


/*
 * The body as a set for the zone, sorted by token, in one ngx_alloc()ed
 * block. NGX_DECLINED with why in error (a NUL-terminated string), or
 * NGX_ERROR when out of memory.
 */

static ngx_int_t
ngx_http_portal_gate_challenges_parse(ngx_http_request_t *r, u_char *body,
    size_t len, ngx_http_portal_gate_challenges_t **set, u_char *error)
{
    u_char                             *p, *last;
    u_char                              quote[NGX_HTTP_PORTAL_GATE_QUOTE_MAX
                                              + sizeof("...")];
    size_t                              size;
    json_t                             *json, *v;
    ngx_uint_t                          i, n;
    const char                         *key;
    json_error_t                        jerr;
    ngx_http_portal_gate_challenge_t   *c;
    ngx_http_portal_gate_challenges_t  *s;

    last = error + NGX_MAX_ERROR_STR - 1;

    if (len == 0) {
        *ngx_slprintf(error, last, "empty body: expected a JSON object of "
                      "tokens to key authorizations ({} clears them)")
            = '\0';
        return NGX_DECLINED;
    }

    json = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (json == NULL) {
        *ngx_slprintf(error, last, "invalid JSON: %s, at line %d, "
                      "column %d", jerr.text, jerr.line, jerr.column) = '\0';
        return NGX_DECLINED;
    }

    if (!json_is_object(json)) {
        json_decref(json);
        *ngx_slprintf(error, last, "the body must be a JSON object of "
                      "tokens to key authorizations") = '\0';
        return NGX_DECLINED;
    }

    n = json_object_size(json);

    if (n > NGX_HTTP_PORTAL_GATE_CHALLENGES_MAX) {
        json_decref(json);
        *ngx_slprintf(error, last, "%ui challenges: at most %d at once", n,
                      NGX_HTTP_PORTAL_GATE_CHALLENGES_MAX) = '\0';
        return NGX_DECLINED;
    }

    c = ngx_palloc(r->pool, (n ? n : 1) * sizeof(*c));
    if (c == NULL) {
        json_decref(json);
        return NGX_ERROR;
    }

    i = 0;
    size = 0;

    json_object_foreach(json, key, v) {
        c[i].token.data = (u_char *) key;
        c[i].token.len = ngx_strlen(key);

        if (!ngx_http_portal_gate_acme_valid(c[i].token.data, c[i].token.len,
                                             NGX_HTTP_PORTAL_GATE_TOKEN_MAX,
                                             0))
        {
            *ngx_http_portal_gate_acme_quote(quote, c[i].token.data,
                                             c[i].token.len) = '\0';
            json_decref(json);
            *ngx_slprintf(error, last, "invalid token \"%s\" (%uz bytes): "
                          "expected [A-Za-z0-9_-]{1,%d}", quote,
                          c[i].token.len, NGX_HTTP_PORTAL_GATE_TOKEN_MAX)
                = '\0';
            return NGX_DECLINED;
        }

        *ngx_http_portal_gate_acme_quote(quote, c[i].token.data,
                                         c[i].token.len) = '\0';

        if (!json_is_string(v)) {
            json_decref(json);
            *ngx_slprintf(error, last, "the key authorization of token "
                          "\"%s\" is not a string", quote) = '\0';
            return NGX_DECLINED;
        }

        c[i].key_auth.data = (u_char *) json_string_value(v);
        c[i].key_auth.len = json_string_length(v);

        if (!ngx_http_portal_gate_acme_valid(c[i].key_auth.data,
                                             c[i].key_auth.len,
                                             NGX_HTTP_PORTAL_GATE_KEY_AUTH_MAX,
                                             1))
        {
            json_decref(json);
            *ngx_slprintf(error, last, "invalid key authorization of token "
                          "\"%s\" (%uz bytes): expected "
                          "[A-Za-z0-9_.-]{1,%d}", quote, c[i].key_auth.len,
                          NGX_HTTP_PORTAL_GATE_KEY_AUTH_MAX) = '\0';
            return NGX_DECLINED;
        }

        size += c[i].token.len + 1 + c[i].key_auth.len + 1;
        i++;
    }

    /* sorted, so that the same set is the same bytes whatever its order */

    ngx_qsort(c, n, sizeof(*c), ngx_http_portal_gate_challenge_cmp);

    s = ngx_alloc(offsetof(ngx_http_portal_gate_challenges_t, data) + size,
                  r->connection->log);
    if (s == NULL) {
        json_decref(json);
        return NGX_ERROR;
    }

    s->n = n;
    s->size = size;

    p = s->data;

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, c[i].token.data, c[i].token.len);
        *p++ = '\0';
        p = ngx_cpymem(p, c[i].key_auth.data, c[i].key_auth.len);
        *p++ = '\0';
    }

    json_decref(json);

    *set = s;

    return NGX_OK;
}


/*
 * Put the set in the zone in place of the old one, under the slab pool's
 * mutex. The new set goes beside the old one; when the zone has no room
 * for both, the old one is freed first, and put back if the new one still
 * does not fit. The zone holds the old set, the new one or none at every
 * step: a worker that dies in the gap leaves none, which the daemon's next
 * push mends.
 *
 *   NGX_OK     stored (or the zone had this very set already);
 *   NGX_BUSY   the zone has no room for it; the old set stays;
 *   NGX_ABORT  a resizing reload retired this zone: try again.
 */

static ngx_int_t
ngx_http_portal_gate_challenges_store(ngx_http_request_t *r,
    ngx_http_portal_gate_challenges_t *set)
{
    size_t                              size, old_size;
    ngx_uint_t                          logged;
    ngx_slab_pool_t                    *shpool;
    ngx_http_portal_gate_shctx_t       *sh;
    ngx_http_portal_gate_zone_ctx_t    *ctx;
    ngx_http_portal_gate_main_conf_t   *pmcf;
    ngx_http_portal_gate_challenges_t  *old, *p, *copy;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;
    shpool = ctx->shpool;

    size = offsetof(ngx_http_portal_gate_challenges_t, data) + set->size;

    ngx_shmtx_lock(&shpool->mutex);

    if (sh->retired) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_ABORT;
    }

    old = sh->challenges;

    /* the daemon sends the set again at every tick: most PUTs change none */

    if (old == NULL ? set->n == 0
                    : (old->n == set->n && old->size == set->size
                       && ngx_memcmp(old->data, set->data, set->size) == 0))
    {
        sh->challenges_nomem = 0;
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_OK;
    }

    p = NULL;

    if (set->n) {
        p = ngx_slab_alloc_locked(shpool, size);

        if (p == NULL && old) {
            old_size = offsetof(ngx_http_portal_gate_challenges_t, data)
                       + old->size;

            copy = ngx_alloc(old_size, r->connection->log);
            if (copy == NULL) {
                ngx_shmtx_unlock(&shpool->mutex);
                return NGX_ERROR;
            }

            ngx_memcpy(copy, old, old_size);

            /* the zone forgets the old set before its pages go */
            sh->challenges = NULL;
            ngx_slab_free_locked(shpool, old);
            old = NULL;

            p = ngx_slab_alloc_locked(shpool, size);

            if (p == NULL) {
                sh->challenges = ngx_slab_alloc_locked(shpool, old_size);

                if (sh->challenges) {
                    ngx_memcpy(sh->challenges, copy, old_size);

                } else {
                    /* cannot happen: the pages were just freed */
                    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                                  "portal_gate zone \"%V\" lost its acme "
                                  "challenges", &pmcf->shm_zone->shm.name);
                }
            }

            ngx_free(copy);
        }

        if (p == NULL) {
            logged = sh->challenges_nomem;
            sh->challenges_nomem = 1;
            ngx_shmtx_unlock(&shpool->mutex);

            /* once, not at every retry */

            if (!logged) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "portal_gate zone \"%V\" has no room for %ui "
                              "acme challenges (%uz bytes); enlarge "
                              "portal_gate_zone", &pmcf->shm_zone->shm.name,
                              set->n, size);
            }

            return NGX_BUSY;
        }

        ngx_memcpy(p, set, size);
    }

    sh->challenges = p;
    sh->challenges_nomem = 0;

    if (old) {
        ngx_slab_free_locked(shpool, old);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "portal_gate: acme challenges replaced, %ui now",
                  set->n);

    return NGX_OK;
}


/* The zone's challenges as a JSON object. A new reference, NULL on ENOMEM. */

static json_t *
ngx_http_portal_gate_challenges_json(ngx_http_request_t *r)
{
    u_char                             *p, *last;
    size_t                              size;
    json_t                             *json;
    ngx_uint_t                          i;
    ngx_http_portal_gate_shctx_t       *sh;
    ngx_http_portal_gate_zone_ctx_t    *ctx;
    ngx_http_portal_gate_main_conf_t   *pmcf;
    ngx_http_portal_gate_challenges_t  *set;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    json = json_object();
    if (json == NULL) {
        return NULL;
    }

    set = NULL;

    /* a copy, so that the lock is not held while the JSON is built */

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (sh->challenges) {
        size = offsetof(ngx_http_portal_gate_challenges_t, data)
               + sh->challenges->size;

        set = ngx_alloc(size, r->connection->log);

        if (set == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            json_decref(json);
            return NULL;
        }

        ngx_memcpy(set, sh->challenges, size);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (set == NULL) {
        return json;
    }

    p = set->data;
    last = set->data + set->size;

    for (i = 0; i < set->n && p < last; i++) {
        if (json_object_set_new(json, (char *) p,
                                json_string((char *) p + ngx_strlen(p) + 1))
            != 0)
        {
            ngx_free(set);
            json_decref(json);
            return NULL;
        }

        p += ngx_strlen(p) + 1;
        p += ngx_strlen(p) + 1;
    }

    ngx_free(set);

    return json;
}


static int ngx_libc_cdecl
ngx_http_portal_gate_challenge_cmp(const void *one, const void *two)
{
    int                                      rc;
    const ngx_http_portal_gate_challenge_t  *a, *b;

    a = one;
    b = two;

    rc = ngx_memcmp(a->token.data, b->token.data,
                    ngx_min(a->token.len, b->token.len));

    if (rc != 0) {
        return rc;
    }

    return (a->token.len > b->token.len) - (a->token.len < b->token.len);
}


/*
 * A token is [A-Za-z0-9_-] (base64url), a key authorization the token,
 * "." and a thumbprint, so also ".".
 */

static ngx_uint_t
ngx_http_portal_gate_acme_valid(u_char *s, size_t len, size_t max,
    ngx_uint_t dot)
{
    u_char  c;
    size_t  i;

    if (len == 0 || len > max) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '_' || c == '-'
            || (dot && c == '.'))
        {
            continue;
        }

        return 0;
    }

    return 1;
}


/*
 * At most NGX_HTTP_PORTAL_GATE_QUOTE_MAX bytes of s for an error message,
 * printable ASCII only (a byte outside it becomes "?"), "..." when cut.
 */

static u_char *
ngx_http_portal_gate_acme_quote(u_char *buf, u_char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < ngx_min(len, NGX_HTTP_PORTAL_GATE_QUOTE_MAX); i++) {
        *buf++ = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
    }

    if (len > NGX_HTTP_PORTAL_GATE_QUOTE_MAX) {
        buf = ngx_cpymem(buf, "...", 3);
    }

    return buf;
}


/*
 * A resizing reload: copy the old zone's challenges into the new one, in
 * place of what an earlier copy put there. The caller holds the old zone's
 * lock; no worker of the new cycle runs yet. The master does not trust
 * memory that workers write: the set must lie in the old zone and hold
 * what a PUT would store. Losing it is no error: the daemon pushes again.
 */

void
ngx_http_portal_gate_challenges_carry(ngx_shm_zone_t *shm_zone,
    ngx_http_portal_gate_zone_ctx_t *octx)
{
    size_t                              size;
    ngx_slab_pool_t                    *opool;
    ngx_http_portal_gate_shctx_t       *sh;
    ngx_http_portal_gate_zone_ctx_t    *ctx;
    ngx_http_portal_gate_challenges_t  *set, *p;

    ctx = shm_zone->data;
    sh = ctx->sh;
    opool = octx->shpool;
    set = octx->sh->challenges;

    if (sh->challenges) {
        ngx_slab_free(ctx->shpool, sh->challenges);
        sh->challenges = NULL;
    }

    if (set == NULL) {
        return;
    }

    if (ngx_http_portal_gate_challenges_check(set, opool->start, opool->end)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" resized, but the old zone's "
                      "acme challenges are bad: they are dropped",
                      &shm_zone->shm.name);
        return;
    }

    size = offsetof(ngx_http_portal_gate_challenges_t, data) + set->size;

    p = ngx_slab_alloc(ctx->shpool, size);

    if (p == NULL) {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" of %uz bytes has no room for "
                      "the %ui acme challenges of the old zone: they are "
                      "dropped until the controller sends them again",
                      &shm_zone->shm.name, shm_zone->shm.size, set->n);
        return;
    }

    ngx_memcpy(p, set, size);

    sh->challenges = p;
}


/* Is the set in [start, end) and as a PUT stores it? */

static ngx_int_t
ngx_http_portal_gate_challenges_check(ngx_http_portal_gate_challenges_t *set,
    u_char *start, u_char *end)
{
    u_char      *p, *last, *nul;
    ngx_uint_t   i, k;

    if ((u_char *) set < start
        || (u_char *) set >= end
        || (size_t) (end - (u_char *) set)
           < offsetof(ngx_http_portal_gate_challenges_t, data)
        || set->n == 0
        || set->n > NGX_HTTP_PORTAL_GATE_CHALLENGES_MAX
        || set->size > (size_t) (end - set->data))
    {
        return NGX_ERROR;
    }

    p = set->data;
    last = set->data + set->size;

    for (i = 0; i < set->n; i++) {
        for (k = 0; k < 2; k++) {
            nul = ngx_strlchr(p, last, '\0');

            if (nul == NULL
                || !ngx_http_portal_gate_acme_valid(p, nul - p,
                                      k ? NGX_HTTP_PORTAL_GATE_KEY_AUTH_MAX
                                        : NGX_HTTP_PORTAL_GATE_TOKEN_MAX, k))
            {
                return NGX_ERROR;
            }

            p = nul + 1;
        }
    }

    return p == last ? NGX_OK : NGX_ERROR;
}
