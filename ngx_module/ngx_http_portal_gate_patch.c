
/*
 * PATCH snapshot: the controller's deltas. The body names the flags that
 * changed, each given whole or null (deleted), and the revision it applies
 * on:
 *
 *   {"base_revision": 41, "revision": 42,
 *    "environments": {"production": {"customer_portal": {...},
 *                                    "old_flag": null}}}
 *
 * The patch is applied to the zone's index (pg_snap_build_patch()): only
 * the flags it names are compiled, each into new pieces; the new index
 * names every other flag's pieces as they are, and is checked exactly as
 * a whole snapshot is (the same checks, limits and messages). The swap
 * allocates only the new index and pieces; the answers are PUT's. A
 * patch applies only on the index it was built from: the swap checks,
 * under the zone's lock, that the zone's generation is still the one
 * read, so two patches on one base never both apply, whichever workers
 * take them. When the generation has moved but not the revision (an
 * override was set), the patch is built again.
 *
 * A 400 is the patch's fault; a 500 the edge's (out of memory, a zone
 * whose index does not check), said at alert: the patch may be good, and
 * a PUT of the whole snapshot replaces a damaged index.
 */


#include "ngx_http_portal_gate_module.h"


/* merges of one patch while overrides keep moving the generation */
#define NGX_HTTP_PORTAL_GATE_PATCH_TRIES  8


static void ngx_http_portal_gate_patch_refused(ngx_http_request_t *r,
    const char *text);
static void ngx_http_portal_gate_patch_failed(ngx_http_request_t *r,
    const char *text);
static void ngx_http_portal_gate_patch_conflict(ngx_http_request_t *r,
    json_t *patch, int64_t current);


void
ngx_http_portal_gate_api_patch_snapshot(ngx_http_request_t *r)
{
    u_char             *p, *body, *index;
    size_t              len, size;
    json_t             *patch;
    ngx_str_t           arg;
    int64_t             current;
    ngx_int_t           rc;
    ngx_uint_t          tries;
    pg_build_t          b;
    pg_error_t          err;
    json_error_t        jerr;
    ngx_atomic_uint_t   generation;

    rc = ngx_http_portal_gate_api_read_body(r, &body, &len);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* a patch applies on its base only: nothing to force */

    if (ngx_http_arg(r, (u_char *) "force", 5, &arg) == NGX_OK) {
        if (body) {
            ngx_free(body);
        }

        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                         NGX_HTTP_BAD_REQUEST,
                                         "force is for PUT snapshot: a patch "
                                         "applies only on its base_revision"));
        return;
    }

    if (len == 0) {
        ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                         NGX_HTTP_BAD_REQUEST,
                                         "empty body: expected a patch"));
        return;
    }

    ngx_memzero(&jerr, sizeof(json_error_t));

    patch = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (patch == NULL) {
        ngx_free(body);

        if (ngx_http_portal_gate_json_failed(&jerr)) {
            ngx_http_portal_gate_patch_failed(r, "out of memory");
            return;
        }

        p = ngx_snprintf((u_char *) err.text, sizeof(err.text) - 1,
                         "invalid JSON at line %d column %d: %s",
                         jerr.line, jerr.column, jerr.text);
        *p = '\0';

        ngx_http_portal_gate_patch_refused(r, err.text);
        return;
    }

    for (tries = 0; tries < NGX_HTTP_PORTAL_GATE_PATCH_TRIES; tries++) {

        /* built outside the lock, as a PUT's body, from a copy of the
         * index: no list is copied or read */

        rc = ngx_http_portal_gate_zone_index(r, &index, &size, &generation,
                                             &current);

        if (rc != NGX_OK) {
            ngx_http_portal_gate_patch_failed(r, rc == NGX_DECLINED
                                 ? "the zone's index lies outside the zone"
                                 : "out of memory");
            goto done;
        }

        rc = pg_snap_build_patch(index, size, patch,
                                 ngx_http_portal_gate_piece_ids(r), &b,
                                 &err);

        if (index) {
            ngx_free(index);
        }

        if (rc == PG_CONFLICT) {
            ngx_http_portal_gate_patch_conflict(r, patch, current);
            goto done;
        }

        if (rc == PG_FAULT) {
            ngx_http_portal_gate_patch_failed(r, err.text);
            goto done;
        }

        if (rc != PG_OK) {
            ngx_http_portal_gate_patch_refused(r, err.text);
            goto done;
        }

        /* the body, as accepted, is the journal's record */

        if (ngx_http_portal_gate_api_commit(r, &b, 0, generation, body, len)
            != NGX_AGAIN)
        {
            goto done;
        }
    }

    json_decref(patch);
    ngx_free(body);

    /* the revision, as PUT's 503 gives it */
    ngx_http_finalize_request(r, ngx_http_portal_gate_api_send(r,
                      NGX_HTTP_SERVICE_UNAVAILABLE,
                      json_pack("{s:s,s:I}",
                                "error", "the zone kept changing while the "
                                         "patch was applied: send it again",
                                "revision", (json_int_t) current)));
    return;

done:

    json_decref(patch);
    ngx_free(body);
}


/* 400, said in the error log as a refused PUT is */

static void
ngx_http_portal_gate_patch_refused(ngx_http_request_t *r, const char *text)
{
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "portal_gate api: patch refused: %s", text);

    ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                         NGX_HTTP_BAD_REQUEST, "%s", text));
}


/* 500: the edge's fault, not the patch's; the zone is as it was */

static void
ngx_http_portal_gate_patch_failed(ngx_http_request_t *r, const char *text)
{
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "portal_gate zone \"%V\": a patch could not be applied: "
                  "%s", &pmcf->shm_zone->shm.name, text);

    ngx_http_finalize_request(r, ngx_http_portal_gate_api_error(r,
                                  NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "the edge failed, not the patch: %s; "
                                  "the snapshot is unchanged", text));
}


/* 409: the edge is not at the patch's base, whatever its revision is */

static void
ngx_http_portal_gate_patch_conflict(ngx_http_request_t *r, json_t *patch,
    int64_t current)
{
    u_char   *p;
    u_char    text[NGX_MAX_ERROR_STR];
    int64_t   base;

    base = json_integer_value(json_object_get(patch, "base_revision"));

    p = ngx_snprintf(text, sizeof(text), "base_revision %L is not the "
                     "edge's revision %L", base, current);

    ngx_http_finalize_request(r, ngx_http_portal_gate_api_send(r,
                      NGX_HTTP_CONFLICT,
                      json_pack("{s:s%,s:I}",
                                "error", (char *) text, (size_t) (p - text),
                                "revision", (json_int_t) current)));
}
