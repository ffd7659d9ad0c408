/*
 * pg_edge.c: requests to an edge's API with libcurl. See pg_edge.h.
 */

#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* realloc, free */
#include <string.h>             /* strncmp, strstr, strlen, memcpy */
#include <curl/curl.h>          /* the HTTP client */
#include "pg_edge.h"            /* the API this file implements */


#define PG_EDGE_ANSWER_MAX   (64 * 1024 * 1024)    /* a snapshot, at most */


/* The answer's body, as it arrives. */
typedef struct {
    char    *data;
    size_t   len;
    int      too_large;
} pg_edge_body_t;


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
    char            *p;
    size_t           n;
    pg_edge_body_t  *body = userdata;

    n = size * nmemb;

    if (body->len + n > PG_EDGE_ANSWER_MAX) {
        body->too_large = 1;
        return 0;                       /* curl stops with an error */
    }

    p = realloc(body->data, body->len + n + 1);
    if (p == NULL) {
        return 0;
    }

    memcpy(p + body->len, ptr, n);
    body->data = p;
    body->len += n;
    body->data[body->len] = '\0';

    return n;
}


int
pg_edge_request(const pg_edge_t *edge, const char *method, const char *path,
    const char *body, size_t len, long timeout_ms, long *status,
    json_t **json, pg_error_t *err)
{
    int                 rc;
    char                url[1024];
    CURL               *curl;
    CURLcode            code;
    pg_edge_body_t      answer;
    struct curl_slist  *headers;

    *status = 0;
    *json = NULL;

    snprintf(url, sizeof(url), "%s%s", edge->base, path);

    curl = curl_easy_init();
    if (curl == NULL) {
        snprintf(err->text, sizeof(err->text), "edge %.128s: cannot start curl",
                 edge->spec);
        return PG_ERR;
    }

    memset(&answer, 0, sizeof(answer));
    headers = NULL;

    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    /* an edge is reached directly, never through $http_proxy */
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, pg_edge_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);

    if (edge->socket[0]) {
        curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, edge->socket);
    }

    if (strcmp(method, "PUT") == 0) {
        /* no "Expect: 100-continue" round trip for a large snapshot */
        headers = curl_slist_append(headers,
                                    "Content-Type: application/json");
        headers = curl_slist_append(headers, "Expect:");
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t) len);
    }

    code = curl_easy_perform(curl);

    rc = PG_OK;

    if (code != CURLE_OK) {
        snprintf(err->text, sizeof(err->text), "edge %.128s: %s %s: %s",
                 edge->spec, method, path,
                 answer.too_large ? "the answer is too large"
                                  : curl_easy_strerror(code));
        rc = PG_ERR;

    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);

        if (answer.data) {
            *json = json_loadb(answer.data, answer.len, 0, NULL);
        }
    }

    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    free(answer.data);

    return rc;
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
