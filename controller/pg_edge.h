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
 * libcurl is not linked: the first request loads it (pg_curl_load()), and
 * a libcurl that cannot be loaded is that request's error. Only
 * pg_edge_parse() works without it.
 */

#ifndef PG_EDGE_H
#define PG_EDGE_H

#include <stdint.h>             /* int64_t */
#include <jansson.h>            /* json_t */
#include "portal_gate.h"        /* pg_error_t, PG_OK, PG_ERR */
#include "pg_curl.h"            /* CURL, CURLM: requests in flight */

#define PG_EDGE_MAX   64        /* edges in a config or on a command line */

typedef struct {
    char   spec[512];           /* as written, for messages */
    char   base[512];           /* http://host:port/path/, ends with '/' */
    char   socket[108];         /* unix socket path, "" for TCP */
} pg_edge_t;

/*
 * Parse one edge; refuse anything else with a message quoting it
 * ("invalid edge \"...\": ..."), pg_edge_check_url()'s refusals included.
 */
int pg_edge_parse(const char *spec, pg_edge_t *edge, pg_error_t *err);

/*
 * The rule for the URL part of an edge, the one place for it: the API's
 * paths ("status", "snapshot?force=1") are appended to it, so it holds no
 * space or control character (it would reach the request line as is), no
 * query and no fragment (either would swallow the path). For
 * unix:/path.sock:/location/ only the location is checked: a socket is a
 * file name and may hold anything. PG_ERR with why alone in err ("an
 * edge's URL has no query (...)"), for a caller that words its own
 * refusal (pg_conf: FILE:LINE: invalid value ... in "edge": why).
 */
int pg_edge_check_url(const char *spec, pg_error_t *err);

/*
 * One request to the API: method "GET", "PUT", "PATCH" or "DELETE", path
 * "status", "snapshot", "eval?..." or "overrides?..."; body and len for a
 * PUT or a PATCH. *status is the HTTP
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


/*
 * GET status of many edges at once, for a caller that must not ask them
 * one after another (portal-gatectl status and --wait): in one curl multi
 * handle, a hung edge costs one timeout, not one per edge, and never holds
 * back the answers of the others.
 *
 *   pg_edge_poll_init(&p, &err);
 *   pg_edge_poll_start(&p, i, &edges[i], timeout_ms, &err);   each slot i
 *   pg_edge_poll_next(&p, wait_ms, &slot, &answer);           each answer
 *   pg_edge_poll_free(&p);                gives up what is still in flight
 *
 * A slot is an index below PG_EDGE_MAX, the caller's (its edge's, say),
 * busy from its start until pg_edge_poll_next() gives its answer; it may
 * be started again then. The edges are borrowed until then; p must not
 * move while a request is in flight (curl points into it).
 */
typedef struct {
    int64_t      revision;      /* the edge's; -1 when it did not say */
    int          timed_out;     /* -1 because no answer came in time */
    char         why[128];      /* when -1: "Couldn't connect to server",
                                   "answered 404", ... */
    pg_error_t   err;           /* the same, naming the edge */
} pg_edge_answer_t;

typedef struct {
    CURLM          *multi;
    pg_edge_req_t   req[PG_EDGE_MAX];
    int             busy[PG_EDGE_MAX];
} pg_edge_poll_t;

int pg_edge_poll_init(pg_edge_poll_t *p, pg_error_t *err);

/* Start GET status of edge in slot (which must not be busy). */
int pg_edge_poll_start(pg_edge_poll_t *p, size_t slot, const pg_edge_t *edge,
    long timeout_ms, pg_error_t *err);

/*
 * Wait until a request ends, at most wait_ms: *slot is the one that ended,
 * with its answer, or -1 when none did in that time (with none in flight,
 * that is a sleep of wait_ms). PG_ERR (err in answer) only when curl
 * itself fails.
 */
int pg_edge_poll_next(pg_edge_poll_t *p, long wait_ms, long *slot,
    pg_edge_answer_t *answer);

int pg_edge_poll_busy(const pg_edge_poll_t *p, size_t slot);

void pg_edge_poll_free(pg_edge_poll_t *p);

/*
 * Every edge's revision at once: answers[i] for edges[i], n at most
 * PG_EDGE_MAX; it returns within about timeout_ms, however many hang.
 * PG_ERR (err) only when curl itself fails.
 */
int pg_edge_revisions(const pg_edge_t *edges, size_t n, long timeout_ms,
    pg_edge_answer_t *answers, pg_error_t *err);


/*
 * Any requests at once, one per call, in one curl multi handle, for a
 * caller that must reach every edge as fast as the slowest one answers
 * (portal-gatectl kill --direct, release, status): a dead or hung edge
 * costs one timeout, and never holds back the others. The caller fills
 * edge, method, path, body and len; pg_edge_calls() fills the rest and
 * returns once every request has ended, within about timeout_ms.
 * PG_ERR (err) only when curl itself fails; an edge that did not answer
 * is a call with answered 0 and err saying why.
 * Ownership: the edges and bodies are borrowed; each json is new, for the
 * caller to release with pg_edge_calls_free().
 */
typedef struct {
    const pg_edge_t  *edge;         /* borrowed */
    const char       *method;       /* "GET", "PUT" or "DELETE" */
    char              path[512];    /* "overrides?env=E&flag=F" */
    const char       *body;         /* borrowed; NULL: none */
    size_t            len;

    int               answered;     /* 1: an HTTP answer came, any status */
    int               timed_out;    /* no answer within timeout_ms */
    long              status;       /* the HTTP status when answered */
    json_t           *json;         /* new: the answer, NULL if not JSON */
    double            ms;           /* from the start until it ended */
    char              why[128];     /* not answered: "Couldn't connect to
                                       server", "no answer within 2000 ms" */
    pg_error_t        err;          /* the same, naming the edge */
} pg_edge_call_t;

int pg_edge_calls(pg_edge_call_t *calls, size_t n, long timeout_ms,
    pg_error_t *err);
void pg_edge_calls_free(pg_edge_call_t *calls, size_t n);

#endif /* PG_EDGE_H */
