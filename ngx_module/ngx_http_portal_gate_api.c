
/*
 * The JSON API (portal_gate_api): GET status, GET and PUT snapshot, GET
 * eval; PATCH snapshot, overrides and challenges have files of their own.
 * Every answer is JSON, nginx's own error pages in the API location
 * included (the header and body filters below).
 */


#include "ngx_http_portal_gate_module.h"


/* A request to the API. */
static ngx_int_t ngx_http_portal_gate_api_unknown(ngx_http_request_t *r,
    ngx_str_t *path);
static ngx_int_t ngx_http_portal_gate_api_status(ngx_http_request_t *r);
static json_t *ngx_http_portal_gate_json_time(time_t t);
static ngx_int_t ngx_http_portal_gate_api_get_snapshot(ngx_http_request_t *r);
static void ngx_http_portal_gate_api_put_snapshot(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_api_eval(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* the API */

ngx_int_t
ngx_http_portal_gate_api_handler(ngx_http_request_t *r)
{
    u_char                    *p, *last;
    ngx_int_t                  rc;
    ngx_str_t                  path;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    /*
     * The path under the API location: "status", "snapshot", "eval",
     * "overrides" or "challenges".
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

    if (path.len == 9 && ngx_strncmp(path.data, "overrides", 9) == 0) {
        return ngx_http_portal_gate_api_overrides(r, &path);
    }

    if (path.len == 10 && ngx_strncmp(path.data, "challenges", 10) == 0) {
        return ngx_http_portal_gate_api_challenges(r, &path);
    }

    if (path.len == 8 && ngx_strncmp(path.data, "snapshot", 8) == 0) {

        if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
            rc = ngx_http_discard_request_body(r);
            if (rc != NGX_OK) {
                return rc;
            }

            return ngx_http_portal_gate_api_get_snapshot(r);
        }

        if (!(r->method & (NGX_HTTP_PUT|NGX_HTTP_PATCH))) {
            return ngx_http_portal_gate_api_not_allowed(r,
                                                 "GET, HEAD, PUT, PATCH",
                                                 &path);
        }

        /*
         * nginx enforces portal_gate_api_max_body_size (it is this
         * location's client_max_body_size) while it reads, chunked bodies
         * included; the header filter turns its 413 page into JSON.
         */

        rc = ngx_http_read_client_request_body(r,
                                   r->method == NGX_HTTP_PUT
                                   ? ngx_http_portal_gate_api_put_snapshot
                                   : ngx_http_portal_gate_api_patch_snapshot);

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
                                          "unknown API path \"%V\"; try "
                                          "status, snapshot, eval, "
                                          "overrides or challenges", path);
}


ngx_int_t
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
    off_t                              in_step;
    ngx_str_t                          arg;
    const char                        *name;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    /*
     * ?in_step=REV: portal-gated's reconcile, whose store holds REV, says
     * so; it confirms the edge when the edge holds REV too. A plain GET
     * status (an operator, portal-gatectl status) confirms nothing.
     */

    if (ngx_http_arg(r, (u_char *) "in_step", 7, &arg) == NGX_OK) {
        in_step = ngx_atoof(arg.data, arg.len);

        if (in_step > 0 && (int64_t) in_step == sh->revision) {
            ngx_http_portal_gate_metrics_confirm(r);
        }
    }

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
        || json_object_set_new(json, "challenges",
               json_integer(ngx_http_portal_gate_challenges_count(sh)))
        || json_object_set_new(zone, "name",
               json_stringn((char *) pmcf->shm_zone->shm.name.data,
                            pmcf->shm_zone->shm.name.len))
        || json_object_set_new(zone, "size", json_integer(total))
        || json_object_set_new(zone, "used", json_integer(used))
        || json_object_set_new(zone, "snapshot_bytes",
                               json_integer(sh->blob_size))
        || json_object_set_new(zone, "index_bytes",
                               json_integer(sh->index ? sh->index_size : 0))
        || json_object_set_new(zone, "pieces",
                               json_integer(sh->index ? sh->npieces : 0))
        || json_object_set_new(zone, "piece_serial",
                               json_integer(sh->piece_serial))
        || json_object_set_new(zone, "swap_interrupted",
                               json_boolean(sh->swapping))
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
                        ngx_http_portal_gate_json_time(sh->state_written_at))
        || json_object_set_new(state, "journal_records",
                               json_integer(sh->journal_records))
        || json_object_set_new(state, "journal_bytes",
                               json_integer(sh->journal_bytes))
        || json_object_set_new(state, "journal_current",
                               json_boolean(sh->journal_generation != 0
                                            && sh->journal_generation
                                               == sh->generation)))
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

    state = NULL;

    if (json_object_set_new(json, "overrides",
                            ngx_http_portal_gate_overrides_json(r)))
    {
        goto failed;
    }

    /* what the answering worker's last refresh copied: a patch of one
     * flag copies the index and that flag's pieces, not the others */

    if (json_object_set_new(json, "worker",
            json_pack("{s:i,s:I,s:I,s:i,s:i}",
                      "pid", (int) ngx_pid,
                      "generation", (json_int_t) pmcf->generation,
                      "copied_bytes", (json_int_t) pmcf->copied_bytes,
                      "copied_pieces", (int) pmcf->copied_pieces,
                      "kept_pieces", (int) pmcf->kept_pieces)))
    {
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
    json_t             *json;
    ngx_atomic_uint_t   generation;

    json = ngx_http_portal_gate_api_zone_json(r, &generation);

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_portal_gate_api_send(r, NGX_HTTP_OK, json);
}


/*
 * The snapshot as it was pushed, from the zone (this worker's copy has the
 * kill overrides applied: GET snapshot must give revision N's snapshot, and
 * a patch applies to it), with the zone's generation when it was read. A
 * new reference; NULL when out of memory.
 */

json_t *
ngx_http_portal_gate_api_zone_json(ngx_http_request_t *r,
    ngx_atomic_uint_t *generation)
{
    u_char                            *blob;
    size_t                             size;
    json_t                            *json;
    ngx_int_t                          rc;
    pg_snap_t                          snap;
    pg_error_t                         err;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    *generation = sh->generation;

    rc = ngx_http_portal_gate_zone_packed_locked(sh, ctx->shpool,
                                                 r->connection->log,
                                                 &blob, &size);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (rc != NGX_OK) {
        return NULL;
    }

    json = NULL;

    if (pg_snap_open(&snap, blob, size, &err) == PG_OK) {
        json = pg_snap_to_json(&snap);
    }

    if (blob) {
        ngx_free(blob);
    }

    return json;
}


static void
ngx_http_portal_gate_api_put_snapshot(ngx_http_request_t *r)
{
    u_char                            *body, *p;
    size_t                             len;
    json_t                            *root;
    ngx_int_t                          rc;
    ngx_str_t                          arg;
    ngx_uint_t                         force;
    pg_build_t                         b;
    pg_error_t                         err;
    json_error_t                       jerr;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    rc = ngx_http_portal_gate_api_read_body(r, &body, &len);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* ?force=1: the way out of an edge pinned above the store's revision */

    force = 0;

    if (ngx_http_arg(r, (u_char *) "force", 5, &arg) == NGX_OK) {
        if (arg.len == 1 && (arg.data[0] == '0' || arg.data[0] == '1')) {
            force = (arg.data[0] == '1');

        } else {
            ngx_free(body);
            ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                        NGX_HTTP_BAD_REQUEST,
                                        "invalid force \"%V\": expected 1 "
                                        "or 0", &arg));
            return;
        }
    }

    if (len == 0) {
        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                         NGX_HTTP_BAD_REQUEST,
                                         "empty body: expected a snapshot"));
        return;
    }

    /* parse and validate outside the lock; the pieces take ids the zone
     * never gives again */

    ngx_memzero(&jerr, sizeof(json_error_t));

    root = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);

    ngx_free(body);

    if (root == NULL && ngx_http_portal_gate_json_failed(&jerr)) {
        ngx_cpystrn((u_char *) err.text, (u_char *) "out of memory",
                    sizeof(err.text));
        rc = PG_FAULT;

    } else if (root == NULL) {
        p = ngx_snprintf((u_char *) err.text, sizeof(err.text) - 1,
                         "invalid JSON at line %d column %d: %s",
                         jerr.line, jerr.column, jerr.text);
        *p = '\0';
        rc = PG_ERR;

    } else {
        rc = pg_snap_build_json(root, ngx_http_portal_gate_piece_ids(r), &b,
                                &err);
        json_decref(root);
    }

    if (rc == PG_FAULT) {
        /* out of memory: the edge's failure, not the snapshot's */

        pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "portal_gate zone \"%V\": a snapshot could not be "
                      "applied: %s", &pmcf->shm_zone->shm.name, err.text);

        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                      NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "the edge failed, not the snapshot: "
                                      "%s; the snapshot is unchanged",
                                      err.text));
        return;
    }

    if (rc != PG_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "portal_gate api: snapshot refused: %s", err.text);

        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                        NGX_HTTP_BAD_REQUEST, "%s", err.text));
        return;
    }

    (void) ngx_http_portal_gate_api_commit(r, &b, force, 0, NULL, 0);
}


/*
 * json_loadb() failed for want of memory, not for the body: jansson 2.14's
 * parser leaves the error text empty when an allocation fails (and sets
 * json_error_out_of_memory only in some paths); jerr zeroed before.
 */

ngx_uint_t
ngx_http_portal_gate_json_failed(json_error_t *jerr)
{
    return json_error_code(jerr) == json_error_out_of_memory
           || jerr->text[0] == '\0';
}


/* The first of PG_BUILD_IDS piece ids, for one build: never given again
 * in this zone (2^45 builds). */

uint64_t
ngx_http_portal_gate_piece_ids(ngx_http_request_t *r)
{
    uint64_t                           first;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    first = ctx->sh->piece_serial;
    ctx->sh->piece_serial += PG_BUILD_IDS;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return first;
}


/*
 * Swap a built snapshot into the zone and answer the request: 200
 * {"revision": M} once the state file is written, or 409, 503 or 507
 * (NGX_DONE). The build is freed.
 *
 * base is 0 for PUT snapshot. PATCH snapshot gives the zone's generation
 * its build was made from: when the zone has moved since, nothing is
 * swapped nor answered (NGX_AGAIN), and the caller builds again. A patch
 * also gives its body (record), which the journal takes instead of a
 * whole state file when it can.
 */

ngx_int_t
ngx_http_portal_gate_api_commit(ngx_http_request_t *r, pg_build_t *b,
    ngx_uint_t force, ngx_atomic_uint_t base, u_char *record,
    size_t record_len)
{
    json_t             *answer;
    size_t              size, fresh;
    int64_t             current, revision;
    ngx_int_t           rc;
    ngx_atomic_uint_t   generation;

    revision = b->revision;
    size = b->bytes;
    fresh = b->new_bytes;

    rc = ngx_http_portal_gate_apply(r, b, force, base, &current,
                                    &generation);

    pg_build_free(b);

    switch (rc) {

    case NGX_OK:
        /* a push applied: the controller's snapshot is the edge's */
        ngx_http_portal_gate_metrics_confirm(r);
        break;

    case NGX_AGAIN:
        return NGX_AGAIN;

    case NGX_ABORT:
        ngx_http_finalize_request(r, ngx_http_portal_gate_api_send(r,
                          NGX_HTTP_SERVICE_UNAVAILABLE,
                          json_pack("{s:s,s:I}",
                                    "error", "nginx is reloading with a "
                                             "resized zone: send the "
                                             "snapshot again",
                                    "revision", (json_int_t) current)));
        return NGX_DONE;

    case NGX_DECLINED:

        /* a PUT of the very revision the edge holds: it is there already
         * (a PATCH's 409 says it is elsewhere) */

        if (base == 0 && revision == current) {
            ngx_http_portal_gate_metrics_confirm(r);
        }

        ngx_http_finalize_request(r, ngx_http_portal_gate_api_send(r,
                          NGX_HTTP_CONFLICT,
                          json_pack("{s:s,s:I}",
                                    "error", "revision is not newer than "
                                             "the edge's current revision",
                                    "revision", (json_int_t) current)));
        return NGX_DONE;

    case NGX_BUSY:
        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                   NGX_HTTP_INSUFFICIENT_STORAGE,
                                   "zone is too small for a snapshot of %uz "
                                   "bytes; enlarge portal_gate_zone", size));
        return NGX_DONE;

    default:
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    if (base) {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "portal_gate: snapshot revision %L applied, patched "
                      "from revision %L, %uz bytes, %uz of them new",
                      revision, current, size, fresh);

    } else if (force && revision <= current) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "portal_gate: snapshot revision %L forced over "
                      "revision %L, %uz bytes", revision, current, size);

    } else {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "portal_gate: snapshot revision %L applied, %uz bytes",
                      revision, size);
    }

    answer = json_pack("{s:I}", "revision", (json_int_t) revision);

    if (record != NULL
        && ngx_http_portal_gate_journal_append(r, base, generation, record,
                                               record_len, answer)
           == NGX_OK)
    {
        return NGX_DONE;
    }

    ngx_http_portal_gate_state_write(r, generation, NGX_HTTP_OK, answer, 0);
    return NGX_DONE;
}


/* The whole body in one ngx_alloc()ed buffer, from memory or temp file. */

ngx_int_t
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

    ngx_str_set(&env, NGX_HTTP_PORTAL_GATE_DEFAULT_ENV);
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

ngx_int_t
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

ngx_int_t
ngx_http_portal_gate_api_send(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json)
{
    char                        *text;
    size_t                       len;
    ngx_buf_t                   *b;
    ngx_http_portal_gate_ctx_t  *ctx;

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
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_portal_gate_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_portal_gate_module);
    }

    /* the header filter leaves this answer alone */
    ctx->answered = 1;

    return ngx_http_portal_gate_send(r, status, "application/json", b);
}


/*
 * Send a whole answer held in one buffer: the API's, portal_gate_metrics'
 * and portal_gate_health's. type is a literal.
 */

ngx_int_t
ngx_http_portal_gate_send(ngx_http_request_t *r, ngx_uint_t status,
    char *type, ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type.data = (u_char *) type;
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


ngx_int_t
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
    ngx_http_portal_gate_ctx_t       *ctx;
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
                         "request body is larger than %uz bytes "
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
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_portal_gate_ctx_t));
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
    ngx_uint_t                   last;
    ngx_chain_t                 *cl, out;
    ngx_http_portal_gate_ctx_t  *ctx;

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


ngx_int_t
ngx_http_portal_gate_api_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_portal_gate_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_portal_gate_body_filter;

    return NGX_OK;
}
