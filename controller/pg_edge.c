/*
 * pg_edge.c: requests to an edge's API with libcurl, which the first
 * request loads (pg_curl.h). See pg_edge.h.
 */

#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* realloc, free */
#include <string.h>             /* strncmp, strstr, strlen, memcpy */
#include <time.h>               /* clock_gettime */
#include "pg_edge.h"            /* the API this file implements */


#define PG_EDGE_ANSWER_MAX   (64 * 1024 * 1024)    /* a snapshot, at most */


static size_t pg_edge_write(char *ptr, size_t size, size_t nmemb,
    void *userdata);


int
pg_edge_check_url(const char *spec, pg_error_t *err)
{
    const char  *url, *p;

    url = spec;

    if (strncmp(url, "unix:", 5) == 0 && (p = strstr(url + 5, ":/")) != NULL)
    {
        url = p + 1;
    }

    for (p = url; *p != '\0'; p++) {
        if ((unsigned char) *p <= ' ' || *p == 0x7f) {
            snprintf(err->text, sizeof(err->text), "an edge's URL has no "
                     "spaces: write a space as %%20");
            return PG_ERR;
        }

        if (*p == '?') {
            snprintf(err->text, sizeof(err->text), "an edge's URL has no "
                     "query (\"?...\"): the API's paths are appended to "
                     "it");
            return PG_ERR;
        }

        if (*p == '#') {
            snprintf(err->text, sizeof(err->text), "an edge's URL has no "
                     "fragment (\"#...\"): the API's paths are appended to "
                     "it");
            return PG_ERR;
        }
    }

    return PG_OK;
}


int
pg_edge_parse(const char *spec, pg_edge_t *edge, pg_error_t *err)
{
    char         shown[101];
    size_t       len, n, i;
    const char  *host, *path, *sep;
    pg_error_t   why;

    memset(edge, 0, sizeof(pg_edge_t));

    len = spec ? strlen(spec) : 0;

    if (len == 0 || len >= sizeof(edge->spec) - 2) {
        snprintf(err->text, sizeof(err->text), "invalid edge \"%.64s\": "
                 "empty or longer than %zu bytes", spec ? spec : "",
                 sizeof(edge->spec) - 3);
        return PG_ERR;
    }

    if (pg_edge_check_url(spec, &why) != PG_OK) {
        /* shown without its control characters: a message may reach a
         * terminal */
        for (i = 0; i < len && i < sizeof(shown) - 1; i++) {
            shown[i] = (unsigned char) spec[i] < ' ' || spec[i] == 0x7f
                       ? '?' : spec[i];
        }

        shown[i] = '\0';

        snprintf(err->text, sizeof(err->text), "invalid edge \"%s%s\": "
                 "%.120s", shown, i < len ? "..." : "", why.text);
        return PG_ERR;
    }

    memcpy(edge->spec, spec, len + 1);

    if (strncmp(spec, "http://", 7) == 0 || strncmp(spec, "https://", 8) == 0)
    {
        host = spec + (spec[4] == 's' ? 8 : 7);

        if (host[0] == '\0' || host[0] == '/') {
            snprintf(err->text, sizeof(err->text), "invalid edge \"%.128s\": "
                     "no host", spec);
            return PG_ERR;
        }

        /* the API's paths are appended: the base ends with '/' */
        snprintf(edge->base, sizeof(edge->base), "%s%s", spec,
                 spec[len - 1] == '/' ? "" : "/");

        return PG_OK;
    }

    if (strncmp(spec, "unix:", 5) == 0) {
        /* unix:/run/portal-gate/api.sock:/portal-gate/ */
        path = spec + 5;
        sep = strstr(path, ":/");

        if (path[0] != '/' || sep == NULL || sep == path) {
            snprintf(err->text, sizeof(err->text), "invalid edge \"%.128s\": "
                     "expected unix:/path/to/api.sock:/api/location/", spec);
            return PG_ERR;
        }

        n = sep - path;

        if (n >= sizeof(edge->socket)) {
            snprintf(err->text, sizeof(err->text), "invalid edge \"%.128s\": "
                     "the socket path is longer than %zu bytes", spec,
                     sizeof(edge->socket) - 1);
            return PG_ERR;
        }

        memcpy(edge->socket, path, n);
        edge->socket[n] = '\0';

        /* curl wants a URL; the host is not used over a unix socket */
        snprintf(edge->base, sizeof(edge->base), "http://localhost%s%s",
                 sep + 1, spec[len - 1] == '/' ? "" : "/");

        return PG_OK;
    }

    snprintf(err->text, sizeof(err->text), "invalid edge \"%.128s\": expected "
             "http://host:port/path/ or unix:/path.sock:/path/", spec);

    return PG_ERR;
}


static size_t
pg_edge_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    char           *p;
    size_t          n;
    pg_edge_req_t  *req = userdata;

    n = size * nmemb;

    if (req->len + n > PG_EDGE_ANSWER_MAX) {
        req->too_large = 1;
        return 0;                       /* curl stops with an error */
    }

    p = realloc(req->data, req->len + n + 1);
    if (p == NULL) {
        return 0;
    }

    memcpy(p + req->len, ptr, n);
    req->data = p;
    req->len += n;
    req->data[req->len] = '\0';

    return n;
}


int
pg_edge_req_init(pg_edge_req_t *req, const pg_edge_t *edge,
    const char *method, const char *path, const char *body, size_t len,
    long timeout_ms, pg_error_t *err)
{
    char  url[1024];

    memset(req, 0, sizeof(pg_edge_req_t));

    req->edge = edge;
    snprintf(req->what, sizeof(req->what), "%s %s", method, path);
    snprintf(url, sizeof(url), "%s%s", edge->base, path);

    if (pg_curl_load(err) != PG_OK) {
        return PG_ERR;
    }

    req->curl = pg_curl.easy_init();
    if (req->curl == NULL) {
        snprintf(err->text, sizeof(err->text), "edge %.128s: cannot start "
                 "curl", edge->spec);
        return PG_ERR;
    }

    pg_curl.easy_setopt(req->curl, CURLOPT_URL, url);
    pg_curl.easy_setopt(req->curl, CURLOPT_PRIVATE, req);
    pg_curl.easy_setopt(req->curl, CURLOPT_NOSIGNAL, 1L);
    /* an edge is reached directly, never through $http_proxy */
    pg_curl.easy_setopt(req->curl, CURLOPT_NOPROXY, "*");
    pg_curl.easy_setopt(req->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    pg_curl.easy_setopt(req->curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    pg_curl.easy_setopt(req->curl, CURLOPT_WRITEFUNCTION, pg_edge_write);
    pg_curl.easy_setopt(req->curl, CURLOPT_WRITEDATA, req);

    if (edge->socket[0]) {
        pg_curl.easy_setopt(req->curl, CURLOPT_UNIX_SOCKET_PATH, edge->socket);
    }

    if (strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0) {
        /* no "Expect: 100-continue" round trip for a large snapshot */
        req->headers = pg_curl.slist_append(req->headers,
                                         "Content-Type: application/json");
        req->headers = pg_curl.slist_append(req->headers, "Expect:");
        pg_curl.easy_setopt(req->curl, CURLOPT_HTTPHEADER, req->headers);
        pg_curl.easy_setopt(req->curl, CURLOPT_CUSTOMREQUEST, method);
        pg_curl.easy_setopt(req->curl, CURLOPT_POSTFIELDS, body);
        pg_curl.easy_setopt(req->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t) len);

    } else if (strcmp(method, "DELETE") == 0) {
        pg_curl.easy_setopt(req->curl, CURLOPT_CUSTOMREQUEST, "DELETE");
    }

    return PG_OK;
}


int
pg_edge_req_done(pg_edge_req_t *req, CURLcode code, long *status,
    json_t **json, pg_error_t *err)
{
    int  rc;

    *status = 0;
    *json = NULL;
    rc = PG_OK;

    if (code != CURLE_OK) {
        snprintf(err->text, sizeof(err->text), "edge %.128s: %s: %s",
                 req->edge->spec, req->what,
                 req->too_large ? "the answer is too large"
                                : pg_curl.easy_strerror(code));
        rc = PG_ERR;

    } else {
        pg_curl.easy_getinfo(req->curl, CURLINFO_RESPONSE_CODE, status);

        if (req->data) {
            *json = json_loadb(req->data, req->len, 0, NULL);
        }
    }

    pg_edge_req_free(req);

    return rc;
}


void
pg_edge_req_free(pg_edge_req_t *req)
{
    /* NULL for a request that never started: libcurl may not be loaded */
    if (req->headers) {
        pg_curl.slist_free_all(req->headers);
    }

    if (req->curl) {
        pg_curl.easy_cleanup(req->curl);
    }

    free(req->data);

    req->headers = NULL;
    req->curl = NULL;
    req->data = NULL;
    req->len = 0;
}


int
pg_edge_request(const pg_edge_t *edge, const char *method, const char *path,
    const char *body, size_t len, long timeout_ms, long *status,
    json_t **json, pg_error_t *err)
{
    pg_edge_req_t  req;

    *status = 0;
    *json = NULL;

    if (pg_edge_req_init(&req, edge, method, path, body, len, timeout_ms,
                         err)
        != PG_OK)
    {
        return PG_ERR;
    }

    return pg_edge_req_done(&req, pg_curl.easy_perform(req.curl), status, json,
                            err);
}


/* The revision in a GET status answer (json is released), or PG_ERR. */
static int
pg_edge_status_revision(const pg_edge_t *edge, long status, json_t *json,
    int64_t *revision, pg_error_t *err)
{
    json_t  *rev;

    rev = json_object_get(json, "revision");

    if (status != 200 || !json_is_integer(rev)) {
        snprintf(err->text, sizeof(err->text), "edge %.128s: GET status "
                 "answered %ld%s", edge->spec, status,
                 json ? "" : " without JSON");
        json_decref(json);
        return PG_ERR;
    }

    *revision = json_integer_value(rev);
    json_decref(json);

    return PG_OK;
}


int
pg_edge_revision(const pg_edge_t *edge, long timeout_ms, int64_t *revision,
    pg_error_t *err)
{
    long     status;
    json_t  *json;

    if (pg_edge_request(edge, "GET", "status", NULL, 0, timeout_ms, &status,
                        &json, err)
        != PG_OK)
    {
        return PG_ERR;
    }

    return pg_edge_status_revision(edge, status, json, revision, err);
}


static double
pg_edge_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}


int
pg_edge_poll_init(pg_edge_poll_t *p, pg_error_t *err)
{
    memset(p, 0, sizeof(pg_edge_poll_t));

    if (pg_curl_load(err) != PG_OK) {
        return PG_ERR;
    }

    p->multi = pg_curl.multi_init();

    if (p->multi == NULL) {
        snprintf(err->text, sizeof(err->text), "cannot start curl");
        return PG_ERR;
    }

    return PG_OK;
}


int
pg_edge_poll_start(pg_edge_poll_t *p, size_t slot, const pg_edge_t *edge,
    long timeout_ms, pg_error_t *err)
{
    pg_edge_req_t  *req;

    req = &p->req[slot];

    if (pg_edge_req_init(req, edge, "GET", "status", NULL, 0, timeout_ms,
                         err)
        != PG_OK)
    {
        return PG_ERR;
    }

    if (pg_curl.multi_add_handle(p->multi, req->curl) != CURLM_OK) {
        snprintf(err->text, sizeof(err->text), "edge %.128s: cannot start "
                 "curl", edge->spec);
        pg_edge_req_free(req);
        return PG_ERR;
    }

    p->busy[slot] = 1;

    return PG_OK;
}


int
pg_edge_poll_busy(const pg_edge_poll_t *p, size_t slot)
{
    return p->busy[slot];
}


int
pg_edge_poll_next(pg_edge_poll_t *p, long wait_ms, long *slot,
    pg_edge_answer_t *answer)
{
    int              running, queued;
    char            *priv;
    long             status;
    double           deadline, left;
    json_t          *json;
    const char      *failed;
    CURLMsg         *msg;
    CURLcode         code;
    CURLMcode        mc;
    pg_edge_req_t   *req;

    *slot = -1;
    deadline = pg_edge_now_ms() + wait_ms;

    for ( ;; ) {
        pg_curl.multi_perform(p->multi, &running);

        while ((msg = pg_curl.multi_info_read(p->multi, &queued)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }

            pg_curl.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            req = (pg_edge_req_t *) priv;
            code = msg->data.result;
            pg_curl.multi_remove_handle(p->multi, req->curl);

            *slot = req - p->req;
            p->busy[*slot] = 0;

            memset(answer, 0, sizeof(pg_edge_answer_t));
            answer->revision = -1;
            answer->timed_out = (code == CURLE_OPERATION_TIMEDOUT);
            failed = req->too_large ? "the answer is too large"
                                    : pg_curl.easy_strerror(code);

            if (pg_edge_req_done(req, code, &status, &json, &answer->err)
                != PG_OK)
            {
                snprintf(answer->why, sizeof(answer->why), "%s", failed);

            } else {
                snprintf(answer->why, sizeof(answer->why), "answered %ld%s",
                         status, json ? "" : " without JSON");

                if (pg_edge_status_revision(req->edge, status, json,
                                            &answer->revision, &answer->err)
                    == PG_OK)
                {
                    answer->why[0] = '\0';
                }
            }

            return PG_OK;
        }

        left = deadline - pg_edge_now_ms();

        if (left <= 0) {
            return PG_OK;
        }

        /* curl shortens the wait to its own next timeout; with nothing in
         * flight it sleeps the whole wait */
        mc = pg_curl.multi_poll(p->multi, NULL, 0, (int) left + 1, NULL);

        if (mc != CURLM_OK) {
            snprintf(answer->err.text, sizeof(answer->err.text),
                     "curl_multi_poll: %s", pg_curl.multi_strerror(mc));
            return PG_ERR;
        }
    }
}


void
pg_edge_poll_free(pg_edge_poll_t *p)
{
    size_t  i;

    for (i = 0; i < PG_EDGE_MAX; i++) {
        if (p->busy[i]) {
            pg_curl.multi_remove_handle(p->multi, p->req[i].curl);
            pg_edge_req_free(&p->req[i]);
            p->busy[i] = 0;
        }
    }

    if (p->multi) {
        pg_curl.multi_cleanup(p->multi);
        p->multi = NULL;
    }
}


int
pg_edge_revisions(const pg_edge_t *edges, size_t n, long timeout_ms,
    pg_edge_answer_t *answers, pg_error_t *err)
{
    int               rc;
    long              slot;
    size_t            i, busy;
    double            deadline;
    pg_edge_poll_t    p;
    pg_edge_answer_t  answer;

    if (n == 0) {
        return PG_OK;                   /* and libcurl is not loaded */
    }

    if (pg_edge_poll_init(&p, err) != PG_OK) {
        return PG_ERR;
    }

    busy = 0;

    for (i = 0; i < n; i++) {
        memset(&answers[i], 0, sizeof(pg_edge_answer_t));
        answers[i].revision = -1;

        if (pg_edge_poll_start(&p, i, &edges[i], timeout_ms, &answers[i].err)
            != PG_OK)
        {
            snprintf(answers[i].why, sizeof(answers[i].why), "cannot start "
                     "curl");
            continue;
        }

        busy++;
    }

    /* curl ends each request at its timeout; the deadline is a safety */
    deadline = pg_edge_now_ms() + timeout_ms + 1000;
    rc = PG_OK;

    while (busy > 0 && pg_edge_now_ms() < deadline) {
        if (pg_edge_poll_next(&p, (long) (deadline - pg_edge_now_ms()),
                              &slot, &answer)
            != PG_OK)
        {
            *err = answer.err;
            rc = PG_ERR;
            break;
        }

        if (slot >= 0) {
            answers[slot] = answer;
            busy--;
        }
    }

    for (i = 0; i < n; i++) {
        if (pg_edge_poll_busy(&p, i)) {
            answers[i].timed_out = 1;
            snprintf(answers[i].why, sizeof(answers[i].why), "no answer");
            snprintf(answers[i].err.text, sizeof(answers[i].err.text),
                     "edge %.128s: GET status: no answer", edges[i].spec);
        }
    }

    pg_edge_poll_free(&p);

    return rc;
}


int
pg_edge_calls(pg_edge_call_t *calls, size_t n, long timeout_ms,
    pg_error_t *err)
{
    int              running, queued, rc;
    char            *priv;
    size_t           i, busy;
    double           start, deadline;
    CURLM           *multi;
    CURLMsg         *msg;
    CURLcode         code;
    CURLMcode        mc;
    pg_edge_req_t   *reqs, *req;
    pg_edge_call_t  *c;

    if (n == 0) {
        return PG_OK;                   /* and libcurl is not loaded */
    }

    if (pg_curl_load(err) != PG_OK) {
        return PG_ERR;
    }

    multi = pg_curl.multi_init();
    reqs = calloc(n ? n : 1, sizeof(pg_edge_req_t));

    if (multi == NULL || reqs == NULL) {
        pg_curl.multi_cleanup(multi);
        free(reqs);
        snprintf(err->text, sizeof(err->text), "cannot start curl");
        return PG_ERR;
    }

    start = pg_edge_now_ms();
    busy = 0;

    for (i = 0; i < n; i++) {
        c = &calls[i];
        c->answered = 0;
        c->timed_out = 0;
        c->status = 0;
        c->json = NULL;
        c->ms = 0;
        c->why[0] = '\0';
        c->err.text[0] = '\0';

        if (pg_edge_req_init(&reqs[i], c->edge, c->method, c->path, c->body,
                             c->body ? c->len : 0, timeout_ms, &c->err)
            != PG_OK)
        {
            snprintf(c->why, sizeof(c->why), "cannot start curl");
            continue;
        }

        if (pg_curl.multi_add_handle(multi, reqs[i].curl) != CURLM_OK) {
            snprintf(c->why, sizeof(c->why), "cannot start curl");
            snprintf(c->err.text, sizeof(c->err.text), "edge %.128s: "
                     "cannot start curl", c->edge->spec);
            pg_edge_req_free(&reqs[i]);
            continue;
        }

        busy++;
    }

    /* curl ends each request at its timeout; the deadline is a safety */
    deadline = start + timeout_ms + 1000;
    rc = PG_OK;

    while (busy > 0) {
        pg_curl.multi_perform(multi, &running);

        while ((msg = pg_curl.multi_info_read(multi, &queued)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }

            pg_curl.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            req = (pg_edge_req_t *) priv;
            code = msg->data.result;
            pg_curl.multi_remove_handle(multi, req->curl);

            c = &calls[req - reqs];
            c->ms = pg_edge_now_ms() - start;
            c->timed_out = (code == CURLE_OPERATION_TIMEDOUT);

            if (code == CURLE_OPERATION_TIMEDOUT) {
                snprintf(c->why, sizeof(c->why), "no answer within %ld ms",
                         timeout_ms);
            } else {
                snprintf(c->why, sizeof(c->why), "%s",
                         req->too_large ? "the answer is too large"
                                        : pg_curl.easy_strerror(code));
            }

            c->answered = (pg_edge_req_done(req, code, &c->status, &c->json,
                                            &c->err)
                           == PG_OK);

            if (c->answered) {
                c->why[0] = '\0';
            }

            busy--;
        }

        if (busy == 0) {
            break;
        }

        if (pg_edge_now_ms() > deadline) {
            break;
        }

        mc = pg_curl.multi_poll(multi, NULL, 0, 100, NULL);

        if (mc != CURLM_OK) {
            snprintf(err->text, sizeof(err->text), "curl_multi_poll: %s",
                     pg_curl.multi_strerror(mc));
            rc = PG_ERR;
            break;
        }
    }

    /* what is still in flight is given up: no answer */
    for (i = 0; i < n; i++) {
        if (reqs[i].curl == NULL) {
            continue;
        }

        c = &calls[i];
        pg_curl.multi_remove_handle(multi, reqs[i].curl);
        pg_edge_req_free(&reqs[i]);

        c->timed_out = 1;
        c->ms = pg_edge_now_ms() - start;
        snprintf(c->why, sizeof(c->why), "no answer within %ld ms",
                 timeout_ms);
        snprintf(c->err.text, sizeof(c->err.text), "edge %.128s: %.8s "
                 "%.48s: %.60s", c->edge->spec, c->method, c->path, c->why);
    }

    pg_curl.multi_cleanup(multi);
    free(reqs);

    return rc;
}


void
pg_edge_calls_free(pg_edge_call_t *calls, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        json_decref(calls[i].json);
        calls[i].json = NULL;
    }
}
