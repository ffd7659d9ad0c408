/*
 * pg_edge.h: an edge's API (ngx_http_portal_gate_module's portal_gate_api)
 * as the controller talks to it, over HTTP or a unix socket, with libcurl.
 *
 * An edge is written as in DESIGN.md:
 *
 *   http://127.0.0.1:8081/portal-gate/          the API location's URL
 *   unix:/run/portal-gate/api.sock:/portal-gate/   socket path, then the
 *                                                   API location's path
 *
 * Errors: PG_OK or PG_ERR with a message in pg_error_t that names the edge.
 * Ownership: *json results are new references; an edge owns nothing.
 * The caller runs curl_global_init() once before any request.
 */

#ifndef PG_EDGE_H
#define PG_EDGE_H

#include <curl/curl.h>          /* CURL, CURLcode: a request in flight */
#include <jansson.h>            /* json_t */
#include "portal_gate.h"        /* pg_error_t, PG_OK, PG_ERR */

#define PG_EDGE_MAX   64        /* edges in a config or on a command line */

typedef struct {
    char   spec[512];           /* as written, for messages */
    char   base[512];           /* http://host:port/path/, ends with '/' */
    char   socket[108];         /* unix socket path, "" for TCP */
} pg_edge_t;

/* Parse one edge; refuse anything else with a message quoting it. */
int pg_edge_parse(const char *spec, pg_edge_t *edge, pg_error_t *err);

/*
 * One request to the API: method "GET" or "PUT", path "status",
 * "snapshot" or "eval?..."; body and len for a PUT. *status is the HTTP
 * status and *json the answer parsed (NULL if it is not JSON). PG_ERR only
 * when no answer came (refused, timed out), with err saying so.
 */
int pg_edge_request(const pg_edge_t *edge, const char *method,
    const char *path, const char *body, size_t len, long timeout_ms,
    long *status, json_t **json, pg_error_t *err);

/*
 * A request in flight, for a caller that runs many at once in a curl multi
 * handle of its own (portal-gated): pg_edge_req_init() makes req->curl, a
 * new easy handle to add to the multi handle; once curl says it is done
 * and the caller has removed it, pg_edge_req_done() gives the answer as
 * pg_edge_request() does and frees what the request holds;
 * pg_edge_req_free() does that for a request given up. The edge and the
 * body are borrowed until then; req must not move (curl points to it).
 */
typedef struct {
    const pg_edge_t    *edge;       /* borrowed */
    CURL               *curl;       /* new: freed by done or free */
    struct curl_slist  *headers;    /* new: the same */
    char               *data;       /* new: the answer so far, ends in NUL */
    size_t              len;
    int                 too_large;
    char                what[64];   /* "PUT snapshot", for messages */
} pg_edge_req_t;

int pg_edge_req_init(pg_edge_req_t *req, const pg_edge_t *edge,
    const char *method, const char *path, const char *body, size_t len,
    long timeout_ms, pg_error_t *err);
int pg_edge_req_done(pg_edge_req_t *req, CURLcode code, long *status,
    json_t **json, pg_error_t *err);
void pg_edge_req_free(pg_edge_req_t *req);

/* GET status: the edge's revision. */
int pg_edge_revision(const pg_edge_t *edge, long timeout_ms,
    int64_t *revision, pg_error_t *err);

#endif /* PG_EDGE_H */
