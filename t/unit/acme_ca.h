/*
 * acme_ca.h: a CA inside t/unit/test_acme.c, for what a real CA will not
 * do on demand: hostile or odd answers (too many authorizations, an order
 * valid at once, a Retry-After past the deadline, a hung download, no
 * answer at all).
 *
 * pg_acme.c calls libcurl through the pg_curl table (pg_curl.h); after
 * pg_curl_load(), ca_install() puts fakes in place of its easy calls, so
 * that each request the client makes is answered by a C function of the
 * test, with no network, and recorded: a test counts what was asked
 * (ca_count), reads the payloads, sees the timeout each transfer was
 * given. ca_remove() puts libcurl back. The slist and strerror calls stay
 * libcurl's. Header-only, like tap.h: one translation unit, one thread.
 *
 * The default CA (ca_default) issues for "a.test": directory, nonce,
 * account, order, one authorization whose http-01 challenge is pending
 * until it is answered, ready, finalize, valid, then ca.chain. A test's
 * CA answers what it changes and hands the rest to ca_default.
 */

#ifndef ACME_CA_H
#define ACME_CA_H

#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* snprintf, vsnprintf */
#include <string.h>             /* memset, strlen, strncmp, strcmp */
#include <time.h>               /* nanosleep */
#include <jansson.h>            /* json_loads: the JWS */
#include "pg_b64.h"             /* pg_b64url_decode */
#include "pg_curl.h"            /* pg_curl: what is replaced */


#define CA_URL      "https://ca.test"
#define CA_LOG_MAX  256


/* A request as the CA sees it. */
typedef struct {
    const char  *method;        /* "GET", "HEAD", "POST" */
    const char  *url;
    const char  *path;          /* url past CA_URL (the url when not) */
    const char  *payload;       /* a POST's JWS payload, decoded: "" for
                                   POST-as-GET; NULL for GET and HEAD */
    long         timeout_ms;    /* the transfer's CURLOPT_TIMEOUT_MS */
} ca_req_t;

/* Its answer: 200 with a fresh Replay-Nonce and no body, unless set. */
typedef struct {
    long         status;
    char         headers[1024]; /* more lines, each "Name: value\r\n" */
    char         body[16384];
    const char  *text;          /* a body too long for body, or NULL */
    CURLcode     rc;            /* not CURLE_OK: no answer, this error */
    double       hang;          /* seconds the answer takes; past the
                                   transfer's timeout: timed out */
    int          at_timeout;    /* the answer comes as the transfer's
                                   timeout ends, just in time */
} ca_ans_t;

typedef void (*ca_pt)(const ca_req_t *q, ca_ans_t *s);

static struct {
    ca_pt        answer;

    /* what was asked: "METHOD PATH" per request, and its timeout */
    unsigned     n;
    char         log[CA_LOG_MAX][200];
    long         log_timeout_ms[CA_LOG_MAX];

    /* the transfer being set up */
    char         url[4096];
    const char  *post;
    long         nobody;
    long         timeout_ms;
    long         status;
    curl_write_callback  write;
    curl_write_callback  header;
    void        *write_data;
    void        *header_data;

    /* an option pg_acme sets that "libcurl" refuses */
    CURLoption   refuse;
    CURLcode     refuse_rc;

    /* the default CA */
    int          challenged;
    int          finalized;
    int          ari;           /* the directory lists renewalInfo */
    const char  *chain;         /* what it issues */

    pg_curl_t    real;
} ca;


static void ca_default(const ca_req_t *q, ca_ans_t *s)
    __attribute__((unused));


/* Print into the answer's body. */
static void __attribute__((format(printf, 2, 3), unused))
ca_printf(ca_ans_t *s, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    vsnprintf(s->body, sizeof(s->body), fmt, args);
    va_end(args);
}


/* Add a header line ("Name: value") to the answer. */
static void __attribute__((unused))
ca_header(ca_ans_t *s, const char *line)
{
    size_t  used;

    used = strlen(s->headers);
    snprintf(s->headers + used, sizeof(s->headers) - used, "%s\r\n", line);
}


static int __attribute__((unused))
ca_is(const ca_req_t *q, const char *method, const char *path)
{
    return strcmp(q->method, method) == 0 && strcmp(q->path, path) == 0;
}


/* How many requests began with "METHOD PATH" prefix ("POST /authz/"). */
static unsigned __attribute__((unused))
ca_count(const char *prefix)
{
    unsigned  i, k;

    k = 0;

    for (i = 0; i < ca.n && i < CA_LOG_MAX; i++) {
        if (strncmp(ca.log[i], prefix, strlen(prefix)) == 0) {
            k++;
        }
    }

    return k;
}


/* A problem document answer (RFC 8555 6.7). */
static void __attribute__((unused))
ca_problem(ca_ans_t *s, long status, const char *type, const char *detail)
{
    s->status = status;
    ca_header(s, "Content-Type: application/problem+json");
    ca_printf(s, "{\"type\": \"urn:ietf:params:acme:error:%s\", "
              "\"detail\": \"%s\"}", type, detail);
}


/* The default CA's order, as it is now. */
static void __attribute__((unused))
ca_order(ca_ans_t *s)
{
    const char  *status;

    status = ca.finalized ? "valid" : ca.challenged ? "ready" : "pending";

    ca_printf(s, "{\"status\": \"%s\", \"expires\": \"2030-01-01T00:00:00Z\","
              " \"identifiers\": [{\"type\": \"dns\", \"value\": \"a.test\"}],"
              " \"authorizations\": [\"" CA_URL "/authz/1\"],"
              " \"finalize\": \"" CA_URL "/finalize/1\"%s}", status,
              ca.finalized ? ", \"certificate\": \"" CA_URL "/cert/1\"" : "");
}


static void
ca_default(const ca_req_t *q, ca_ans_t *s)
{
    if (ca_is(q, "GET", "/dir")) {
        ca_printf(s, "{\"newNonce\": \"" CA_URL "/nonce\","
                  " \"newAccount\": \"" CA_URL "/acct\","
                  " \"newOrder\": \"" CA_URL "/new-order\"%s}",
                  ca.ari ? ", \"renewalInfo\": \"" CA_URL "/ari\"" : "");

    } else if (ca_is(q, "HEAD", "/nonce")) {
        s->status = 200;

    } else if (ca_is(q, "POST", "/acct")) {
        s->status = 201;
        ca_header(s, "Location: " CA_URL "/acct/1");
        ca_printf(s, "{\"status\": \"valid\"}");

    } else if (ca_is(q, "POST", "/new-order")) {
        s->status = 201;
        ca_header(s, "Location: " CA_URL "/order/1");
        ca_order(s);

    } else if (ca_is(q, "POST", "/order/1")) {
        ca_order(s);

    } else if (ca_is(q, "POST", "/authz/1")) {
        ca_printf(s, "{\"status\": \"%s\", \"identifier\": {\"type\": \"dns\","
                  " \"value\": \"a.test\"}, \"challenges\": [{\"type\": "
                  "\"http-01\", \"url\": \"" CA_URL "/chall/1\", \"token\": "
                  "\"tok1\", \"status\": \"%s\"}]}",
                  ca.challenged ? "valid" : "pending",
                  ca.challenged ? "valid" : "pending");

    } else if (ca_is(q, "POST", "/chall/1")) {
        ca.challenged = 1;
        ca_printf(s, "{\"type\": \"http-01\", \"url\": \"" CA_URL
                  "/chall/1\", \"token\": \"tok1\", \"status\": "
                  "\"processing\"}");

    } else if (ca_is(q, "POST", "/finalize/1")) {
        ca.finalized = 1;
        ca_order(s);

    } else if (ca_is(q, "POST", "/cert/1")) {
        ca_header(s, "Content-Type: application/pem-certificate-chain");
        s->text = ca.chain;

    } else if (strcmp(q->method, "GET") == 0
               && strncmp(q->path, "/ari/", 5) == 0)
    {
        ca_printf(s, "{\"suggestedWindow\": {\"start\": "
                  "\"2025-01-02T04:00:00Z\", \"end\": "
                  "\"2025-01-03T04:00:00Z\"}}");

    } else {
        ca_problem(s, 404, "malformed", "no such resource");
    }
}


/* --- libcurl's easy calls, answered by ca.answer ------------------------ */

static CURL *
ca_easy_init(void)
{
    return (CURL *) &ca;
}


static void
ca_easy_reset(CURL *c)
{
    (void) c;

    ca.url[0] = '\0';
    ca.post = NULL;
    ca.nobody = 0;
    ca.timeout_ms = 0;
    ca.write = NULL;
    ca.header = NULL;
}


static void
ca_easy_cleanup(CURL *c)
{
    (void) c;
}


static CURLcode
ca_easy_setopt(CURL *c, CURLoption opt, ...)
{
    long                 l;
    void                *p;
    va_list              args;
    curl_write_callback  f;

    (void) c;

    l = 0;
    p = NULL;
    f = NULL;

    va_start(args, opt);

    if (opt < CURLOPTTYPE_OBJECTPOINT) {
        l = va_arg(args, long);

    } else if (opt < CURLOPTTYPE_FUNCTIONPOINT) {
        p = va_arg(args, void *);

    } else if (opt < CURLOPTTYPE_OFF_T) {
        f = va_arg(args, curl_write_callback);

    } else if (opt < CURLOPTTYPE_BLOB) {
        (void) va_arg(args, curl_off_t);
    }

    va_end(args);

    if (ca.refuse != 0 && opt == ca.refuse) {
        return ca.refuse_rc;
    }

    switch (opt) {
    case CURLOPT_URL:
        snprintf(ca.url, sizeof(ca.url), "%s", (const char *) p);
        break;
    case CURLOPT_POSTFIELDS:
        ca.post = p;
        break;
    case CURLOPT_NOBODY:
        ca.nobody = l;
        break;
    case CURLOPT_TIMEOUT:
        ca.timeout_ms = l * 1000;
        break;
    case CURLOPT_TIMEOUT_MS:
        ca.timeout_ms = l;
        break;
    case CURLOPT_WRITEFUNCTION:
        ca.write = f;
        break;
    case CURLOPT_HEADERFUNCTION:
        ca.header = f;
        break;
    case CURLOPT_WRITEDATA:
        ca.write_data = p;
        break;
    case CURLOPT_HEADERDATA:
        ca.header_data = p;
        break;
    default:
        break;
    }

    return CURLE_OK;
}


static CURLcode
ca_easy_getinfo(CURL *c, CURLINFO info, ...)
{
    long     *status;
    va_list   args;

    (void) c;

    va_start(args, info);

    if (info == CURLINFO_RESPONSE_CODE) {
        status = va_arg(args, long *);
        *status = ca.status;
    }

    va_end(args);

    return CURLE_OK;
}


/* A POST's JWS payload, decoded into buf ("" for POST-as-GET). */
static const char *
ca_payload(const char *jws, char *buf, size_t size)
{
    size_t       n;
    json_t      *j;
    const char  *p64;

    buf[0] = '\0';
    j = json_loads(jws, 0, NULL);
    p64 = json_string_value(json_object_get(j, "payload"));

    if (p64 != NULL) {
        n = pg_b64url_decode(p64, strlen(p64), (unsigned char *) buf,
                             size - 1);
        buf[n == (size_t) -1 ? 0 : n] = '\0';
    }

    json_decref(j);

    return buf;
}


static CURLcode
ca_easy_perform(CURL *c)
{
    char             line[1200], payload[8192];
    size_t           len;
    double           hang;
    ca_ans_t        *s;
    ca_req_t         q;
    const char      *h, *e, *body;
    struct timespec  ts;

    static ca_ans_t  ans;       /* 17 KiB: off the stack */

    (void) c;

    memset(&q, 0, sizeof(q));
    q.method = ca.post ? "POST" : ca.nobody ? "HEAD" : "GET";
    q.url = ca.url;
    q.path = strncmp(ca.url, CA_URL, sizeof(CA_URL) - 1) == 0
             ? ca.url + sizeof(CA_URL) - 1 : ca.url;
    q.payload = ca.post ? ca_payload(ca.post, payload, sizeof(payload))
                        : NULL;
    q.timeout_ms = ca.timeout_ms;

    if (ca.n < CA_LOG_MAX) {
        snprintf(ca.log[ca.n], sizeof(ca.log[0]), "%s %s", q.method, q.path);
        ca.log_timeout_ms[ca.n] = ca.timeout_ms;
    }

    ca.n++;

    /* as libcurl: a URL with a control character is no URL */
    for (h = ca.url; *h != '\0'; h++) {
        if ((unsigned char) *h < ' ' || *h == 0x7f) {
            return CURLE_URL_MALFORMAT;
        }
    }

    s = &ans;
    memset(s, 0, sizeof(ca_ans_t));
    s->status = 200;
    s->rc = CURLE_OK;

    ca.answer(&q, s);

    if (s->at_timeout) {
        s->hang = (double) ca.timeout_ms / 1000;
    }

    if (s->hang > 0) {
        hang = s->hang;

        if (!s->at_timeout && ca.timeout_ms > 0
            && hang * 1000 > (double) ca.timeout_ms)
        {
            hang = (double) ca.timeout_ms / 1000;
            s->rc = CURLE_OPERATION_TIMEDOUT;
        }

        ts.tv_sec = (time_t) hang;
        ts.tv_nsec = (long) ((hang - (double) ts.tv_sec) * 1e9);
        nanosleep(&ts, NULL);
    }

    if (s->rc != CURLE_OK) {
        return s->rc;
    }

    ca.status = s->status;

    snprintf(line, sizeof(line), "HTTP/1.1 %ld X\r\n", s->status);
    ca.header(line, 1, strlen(line), ca.header_data);
    snprintf(line, sizeof(line), "Replay-Nonce: nonce%u\r\n", ca.n);
    ca.header(line, 1, strlen(line), ca.header_data);

    for (h = s->headers; *h != '\0'; h = e + 2) {
        e = strstr(h, "\r\n");

        if (e == NULL) {
            break;
        }

        len = (size_t) (e - h) + 2;
        ca.header((char *) h, 1, len, ca.header_data);
    }

    ca.header("\r\n", 1, 2, ca.header_data);

    body = s->text ? s->text : s->body;
    len = strlen(body);

    if (!ca.nobody && len > 0
        && ca.write((char *) body, 1, len, ca.write_data) != len)
    {
        return CURLE_WRITE_ERROR;
    }

    return CURLE_OK;
}


/* The CA answers from now on, with a fresh state and log. */
static void __attribute__((unused))
ca_install(ca_pt answer)
{
    if (ca.real.easy_init == NULL) {
        ca.real = pg_curl;
    }

    ca.answer = answer;
    ca.n = 0;
    ca.challenged = 0;
    ca.finalized = 0;
    ca.ari = 0;
    ca.refuse = 0;

    pg_curl.easy_init = ca_easy_init;
    pg_curl.easy_reset = ca_easy_reset;
    pg_curl.easy_cleanup = ca_easy_cleanup;
    pg_curl.easy_setopt = ca_easy_setopt;
    pg_curl.easy_getinfo = ca_easy_getinfo;
    pg_curl.easy_perform = ca_easy_perform;
}


/* libcurl again. */
static void __attribute__((unused))
ca_remove(void)
{
    if (ca.real.easy_init != NULL) {
        pg_curl = ca.real;
    }
}

#endif /* ACME_CA_H */
