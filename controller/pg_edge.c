/*
 * pg_edge.c: requests to an edge's API with libcurl. See pg_edge.h.
 */

#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* realloc, free */
#include <string.h>             /* strncmp, strstr, strlen, memcpy */
#include "pg_edge.h"            /* the API this file implements */


#define PG_EDGE_ANSWER_MAX   (64 * 1024 * 1024)    /* a snapshot, at most */


static size_t pg_edge_write(char *ptr, size_t size, size_t nmemb,
    void *userdata);


int
pg_edge_parse(const char *spec, pg_edge_t *edge, pg_error_t *err)
{
    size_t       len, n;
    const char  *host, *path, *sep;

    memset(edge, 0, sizeof(pg_edge_t));

    len = spec ? strlen(spec) : 0;

    if (len == 0 || len >= sizeof(edge->spec) - 2) {
        snprintf(err->text, sizeof(err->text), "invalid edge \"%.64s\": "
                 "empty or longer than %zu bytes", spec ? spec : "",
                 sizeof(edge->spec) - 3);
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

    req->curl = curl_easy_init();
    if (req->curl == NULL) {
        snprintf(err->text, sizeof(err->text), "edge %.128s: cannot start curl",
                 edge->spec);
        return PG_ERR;
    }

    curl_easy_setopt(req->curl, CURLOPT_URL, url);
    curl_easy_setopt(req->curl, CURLOPT_PRIVATE, req);
    curl_easy_setopt(req->curl, CURLOPT_NOSIGNAL, 1L);
    /* an edge is reached directly, never through $http_proxy */
    curl_easy_setopt(req->curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(req->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(req->curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(req->curl, CURLOPT_WRITEFUNCTION, pg_edge_write);
    curl_easy_setopt(req->curl, CURLOPT_WRITEDATA, req);

    if (edge->socket[0]) {
        curl_easy_setopt(req->curl, CURLOPT_UNIX_SOCKET_PATH, edge->socket);
    }

    if (strcmp(method, "PUT") == 0) {
        /* no "Expect: 100-continue" round trip for a large snapshot */
        req->headers = curl_slist_append(req->headers,
                                         "Content-Type: application/json");
        req->headers = curl_slist_append(req->headers, "Expect:");
        curl_easy_setopt(req->curl, CURLOPT_HTTPHEADER, req->headers);
        curl_easy_setopt(req->curl, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(req->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(req->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t) len);
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
                                : curl_easy_strerror(code));
        rc = PG_ERR;

    } else {
        curl_easy_getinfo(req->curl, CURLINFO_RESPONSE_CODE, status);

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
    curl_slist_free_all(req->headers);
    curl_easy_cleanup(req->curl);
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

    return pg_edge_req_done(&req, curl_easy_perform(req.curl), status, json,
                            err);
}


int
pg_edge_revision(const pg_edge_t *edge, long timeout_ms, int64_t *revision,
    pg_error_t *err)
{
    long     status;
    json_t  *json, *rev;

    if (pg_edge_request(edge, "GET", "status", NULL, 0, timeout_ms, &status,
                        &json, err)
        != PG_OK)
    {
        return PG_ERR;
    }

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
