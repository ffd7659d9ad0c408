/*
 * pg_acme.c: the ACME client (RFC 8555, RFC 9773's renewalInfo); see
 * pg_acme.h for the API and the threading rules.
 *
 * One call is one conversation (pg_acme_t): a curl easy handle of its own,
 * reused for every request of the call (so one TLS connection serves the
 * whole issuance), the directory, the account key, the nonce the next
 * POST spends. Nothing outlives the call; nothing is global. What the
 * messages hold (JWS, problem documents) is pg_acme_msg.c.
 */

#include <errno.h>              /* errno, ENOENT */
#include <stdarg.h>             /* va_list: pg_acme_log() */
#include <stdio.h>              /* snprintf, vsnprintf */
#include <stdlib.h>             /* malloc, realloc, calloc, free */
#include <string.h>             /* memcpy, memchr, strlen, strcmp, strchr,
                                   strerror */
#include <strings.h>            /* strncasecmp */
#include <sys/stat.h>           /* lstat: is the account key there */
#include <time.h>               /* clock_gettime, nanosleep, time */
#include <openssl/bio.h>        /* BIO_new_mem_buf: the leaf's key */
#include <openssl/crypto.h>     /* OPENSSL_cleanse */
#include <openssl/err.h>        /* ERR_clear_error */
#include <openssl/pem.h>        /* PEM_read_bio_X509 */
#include <openssl/x509.h>       /* X509_get0_pubkey */
#include "pg_acme.h"            /* the API this file implements */
#include "pg_acme_private.h"    /* JWS, problems, directory: pg_acme_msg.c */
#include "pg_cert.h"            /* keys, CSR, files, ARI's answer */
#include "pg_curl.h"            /* pg_curl: libcurl's functions */


#define PG_ACME_ANSWER_MAX   (1024 * 1024)  /* bytes of an answer: a chain
                                               is a few KiB */
#define PG_ACME_NONCE_MAX    256            /* bytes of a Replay-Nonce */
#define PG_ACME_BAD_NONCES   10             /* badNonce retries of a POST */
#define PG_ACME_POLL_MAX     10             /* seconds between polls, at
                                               most, whatever Retry-After */
#define PG_ACME_SLICE_MS     100            /* waits check cancel this often */
#define PG_ACME_SHOWN        160            /* bytes of a URL in a message */

/* PG_LOG_* of pg_conf.h, whose header needs hiredis */
#define PG_ACME_DEBUG        0
#define PG_ACME_INFO         1
#define PG_ACME_WARN         3

#define PG_ACME_ERROR_NS     "urn:ietf:params:acme:error:"


/* One call's conversation with the CA. */
typedef struct {
    const pg_acme_conf_t  *conf;        /* borrowed */
    CURL                  *curl;        /* new */
    json_t                *dir;         /* the directory, new */
    EVP_PKEY              *key;         /* the account key, new */
    json_t                *jwk;         /* its public JWK, new */
    char                   thumb[PG_ACME_THUMB_LEN];
    char                  *kid;         /* the account URL, new */
    char                   nonce[PG_ACME_NONCE_MAX + 1];  /* "": none */
    int                    cancelled;   /* the transfer stopped for it */
    double                 deadline;    /* pg_acme_now() the call must end
                                           by (pg_acme_issue), or 0 */

    /* the last answer */
    long                   status;
    char                  *body;        /* new, NUL-terminated */
    size_t                 len;
    int                    too_large;
    char                  *location;    /* new, or NULL */
    long                   retry_after; /* -1: none */

    long                   failed_retry_after;  /* that of the last answer
                                                   when it failed, for the
                                                   caller; 0 after any
                                                   other request */
} pg_acme_t;

/* One authorization of the order, and its http-01 challenge. */
typedef struct {
    char   *url;                        /* new, all of them */
    char   *name;
    char   *token;
    char   *challenge;
    char   *key_authorization;
    int     published;                  /* the callback was called with
                                           add 1, whatever it returned */
} pg_acme_authz_t;


static void pg_acme_log(pg_acme_t *a, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int pg_acme_is_cancelled(pg_acme_t *a);
static int pg_acme_cancel_error(pg_acme_t *a, pg_error_t *err);
static double pg_acme_now(void);
static int pg_acme_sleep(pg_acme_t *a, double seconds, pg_error_t *err);
static int pg_acme_open(pg_acme_t *a, const pg_acme_conf_t *conf,
    pg_error_t *err);
static void pg_acme_close(pg_acme_t *a);
static size_t pg_acme_on_body(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t pg_acme_on_header(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static int pg_acme_on_progress(void *clientp, curl_off_t dltotal,
    curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);
static int pg_acme_http(pg_acme_t *a, const char *method, const char *url,
    const char *body, const char *accept, pg_error_t *err);
static json_t *pg_acme_json(pg_acme_t *a, const char *what,
    pg_error_t *err);
static int pg_acme_directory(pg_acme_t *a, pg_error_t *err);
static const char *pg_acme_dir_url(pg_acme_t *a, const char *name,
    pg_error_t *err);
static int pg_acme_new_nonce(pg_acme_t *a, pg_error_t *err);
static int pg_acme_post(pg_acme_t *a, const char *url, const json_t *payload,
    const char *accept, pg_error_t *err);
static int pg_acme_account_key(pg_acme_t *a, pg_error_t *err);
static int pg_acme_account(pg_acme_t *a, pg_error_t *err);
static void pg_acme_account_gone(pg_acme_t *a, pg_error_t *err);
static json_t *pg_acme_new_order(pg_acme_t *a, char *const *names, size_t n,
    char **order_url, pg_error_t *err);
static int pg_acme_authz_read(pg_acme_t *a, pg_acme_authz_t *az,
    int *pending, pg_error_t *err);
static double pg_acme_poll_delay(pg_acme_t *a, unsigned polls);
static int pg_acme_authz_wait(pg_acme_t *a, pg_acme_authz_t *az,
    double deadline, pg_error_t *err);
static void pg_acme_authz_invalid(pg_acme_t *a, pg_acme_authz_t *az,
    const json_t *authz, pg_error_t *err);
static int pg_acme_authorize(pg_acme_t *a, const json_t *order,
    size_t names, pg_error_t *err);
static long pg_acme_wait(pg_acme_t *a);
static double pg_acme_step_deadline(pg_acme_t *a);
static int pg_acme_late(pg_acme_t *a, pg_error_t *err);
static json_t *pg_acme_order_wait(pg_acme_t *a, const char *order_url,
    json_t *order, const char *until, pg_error_t *err);
static int pg_acme_finalize(pg_acme_t *a, const char *order_url,
    json_t *order, EVP_PKEY *cert_key, char *const *names, size_t n,
    char **chain, size_t *len, pg_error_t *err);
static int pg_acme_download(pg_acme_t *a, json_t *order,
    EVP_PKEY *cert_key, char **chain, size_t *len, pg_error_t *err);
static int pg_acme_fail(pg_acme_t *a, const char *what, char *type,
    size_t size, pg_error_t *err);
static char *pg_acme_strdup(const char *s);


/* --- errors, logs, time ------------------------------------------------- */

static void
pg_acme_log(pg_acme_t *a, int level, const char *fmt, ...)
{
    char     line[512];
    va_list  args;

    if (a->conf->log == NULL) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(line, sizeof(line), fmt, args);
    va_end(args);

    /* one line, though it quotes the CA's words */
    pg_acme_oneline(line);

    a->conf->log(a->conf->ctx, level, "%s", line);
}


static int
pg_acme_is_cancelled(pg_acme_t *a)
{
    return a->conf->cancel != NULL
           && __atomic_load_n(a->conf->cancel, __ATOMIC_RELAXED) != 0;
}


static int
pg_acme_cancel_error(pg_acme_t *a, pg_error_t *err)
{
    (void) a;

    snprintf(err->text, sizeof(err->text), "cancelled");

    return PG_ERR;
}


static double
pg_acme_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


/* The seconds one wait may take: conf->wait, or its default. */
static long
pg_acme_wait(pg_acme_t *a)
{
    return a->conf->wait > 0 ? a->conf->wait : PG_ACME_WAIT;
}


/* When a wait that starts now must end: wait seconds from now, and never
 * past the call's deadline. */
static double
pg_acme_step_deadline(pg_acme_t *a)
{
    double  end;

    end = pg_acme_now() + (double) pg_acme_wait(a);

    return (a->deadline > 0 && a->deadline < end) ? a->deadline : end;
}


/* The call's deadline is past. */
static int
pg_acme_late(pg_acme_t *a, pg_error_t *err)
{
    snprintf(err->text, sizeof(err->text), "the ACME server did not "
             "complete the issuance within %ld s (%d times the wait of "
             "%ld s)", PG_ACME_ISSUE_WAITS * pg_acme_wait(a),
             PG_ACME_ISSUE_WAITS, pg_acme_wait(a));

    return PG_ERR;
}


/* Sleep, in slices short enough that a cancel is seen at once. */
static int
pg_acme_sleep(pg_acme_t *a, double seconds, pg_error_t *err)
{
    double           end, left;
    struct timespec  ts;

    end = pg_acme_now() + seconds;

    for ( ;; ) {
        if (pg_acme_is_cancelled(a)) {
            return pg_acme_cancel_error(a, err);
        }

        left = end - pg_acme_now();

        if (left <= 0) {
            return PG_OK;
        }

        if (left > PG_ACME_SLICE_MS / 1000.0) {
            left = PG_ACME_SLICE_MS / 1000.0;
        }

        ts.tv_sec = 0;
        ts.tv_nsec = (long) (left * 1e9);
        nanosleep(&ts, NULL);
    }
}


/* A copy of s, or NULL (for s NULL, or out of memory). */
static char *
pg_acme_strdup(const char *s)
{
    char    *p;
    size_t   n;

    if (s == NULL) {
        return NULL;
    }

    n = strlen(s) + 1;
    p = malloc(n);

    if (p != NULL) {
        memcpy(p, s, n);
    }

    return p;
}


/* --- HTTP --------------------------------------------------------------- */

static int
pg_acme_open(pg_acme_t *a, const pg_acme_conf_t *conf, pg_error_t *err)
{
    memset(a, 0, sizeof(pg_acme_t));
    a->conf = conf;
    a->retry_after = -1;

    if (pg_curl.easy_init == NULL) {
        /* pg_curl_load() is not thread-safe: the main thread's job */
        snprintf(err->text, sizeof(err->text), "libcurl is not loaded: "
                 "pg_curl_load() must run before an ACME call");
        return PG_ERR;
    }

    if (conf->directory == NULL
        || strncasecmp(conf->directory, "https://", 8) != 0)
    {
        snprintf(err->text, sizeof(err->text), "the ACME directory must be "
                 "an https:// URL, not \"%.*s\"", PG_ACME_SHOWN,
                 conf->directory ? conf->directory : "");
        return PG_ERR;
    }

    a->curl = pg_curl.easy_init();

    if (a->curl == NULL) {
        snprintf(err->text, sizeof(err->text), "cannot start libcurl: "
                 "curl_easy_init() failed");
        return PG_ERR;
    }

    return PG_OK;
}


static void
pg_acme_close(pg_acme_t *a)
{
    if (a->curl != NULL) {
        pg_curl.easy_cleanup(a->curl);
    }

    json_decref(a->dir);
    json_decref(a->jwk);
    EVP_PKEY_free(a->key);
    free(a->kid);
    free(a->body);
    free(a->location);
}


static size_t
pg_acme_on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    char       *p;
    size_t      n;
    pg_acme_t  *a;

    a = userdata;
    n = size * nmemb;

    if (a->len + n > PG_ACME_ANSWER_MAX) {
        a->too_large = 1;
        return 0;
    }

    p = realloc(a->body, a->len + n + 1);

    if (p == NULL) {
        return 0;
    }

    memcpy(p + a->len, ptr, n);
    a->body = p;
    a->len += n;
    a->body[a->len] = '\0';

    return n;
}


/* The headers the conversation needs: Replay-Nonce, Location,
 * Retry-After. A line is not NUL-terminated and ends with CRLF. */
static size_t
pg_acme_on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    char        value[2048];
    size_t      n, vlen, i;
    pg_acme_t  *a;
    const char *v;

    a = userdata;
    n = size * nmemb;

    v = memchr(ptr, ':', n);

    if (v == NULL) {
        return n;
    }

    v++;

    while (v < ptr + n && (*v == ' ' || *v == '\t')) {
        v++;
    }

    vlen = (size_t) (ptr + n - v);

    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'
                        || v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
    {
        vlen--;
    }

    if (vlen >= sizeof(value)) {
        return n;
    }

    memcpy(value, v, vlen);
    value[vlen] = '\0';

    if (n > 13 && strncasecmp(ptr, "Replay-Nonce:", 13) == 0) {
        /* RFC 8555 6.5.1: base64url; anything else is not used */
        for (i = 0; i < vlen; i++) {
            if (!((value[i] >= 'A' && value[i] <= 'Z')
                  || (value[i] >= 'a' && value[i] <= 'z')
                  || (value[i] >= '0' && value[i] <= '9')
                  || value[i] == '-' || value[i] == '_'))
            {
                return n;
            }
        }

        if (vlen > 0 && vlen <= PG_ACME_NONCE_MAX) {
            memcpy(a->nonce, value, vlen + 1);
        }

    } else if (n > 9 && strncasecmp(ptr, "Location:", 9) == 0) {
        free(a->location);
        a->location = pg_acme_strdup(value);

    } else if (n > 12 && strncasecmp(ptr, "Retry-After:", 12) == 0) {
        a->retry_after = pg_acme_retry_after(value, time(NULL));
    }

    return n;
}


/* Stops a transfer once the call is cancelled. */
static int
pg_acme_on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
    curl_off_t ultotal, curl_off_t ulnow)
{
    pg_acme_t  *a;

    (void) dltotal;
    (void) dlnow;
    (void) ultotal;
    (void) ulnow;

    a = clientp;

    if (pg_acme_is_cancelled(a)) {
        a->cancelled = 1;
        return 1;
    }

    return 0;
}


/*
 * One request: method "GET", "HEAD" or "POST" (body, a JWS). PG_OK when
 * an answer came, whatever its status (a->status, a->body, ...); PG_ERR
 * when none did (refused, timed out, TLS, cancelled).
 */
static int
pg_acme_http(pg_acme_t *a, const char *method, const char *url,
    const char *body, const char *accept, pg_error_t *err)
{
    int                 capped;
    long                timeout;
    char                hdr[128];
    CURL               *c;
    double              left;
    CURLcode            rc;
    const char         *why, *bad;
    struct curl_slist  *headers, *h;

    /* the last answer is forgotten first, even when no request goes out:
     * the callers read a->status to tell a refusal from no answer */
    free(a->body);
    free(a->location);
    a->body = NULL;
    a->len = 0;
    a->too_large = 0;
    a->location = NULL;
    a->status = 0;
    a->retry_after = -1;
    a->cancelled = 0;

    /* only the answer the call fails on says when to try again: an
     * earlier refusal that was got past (a badNonce, replaces refused)
     * must not speak for a later failure */
    a->failed_retry_after = 0;

    if (pg_acme_is_cancelled(a)) {
        return pg_acme_cancel_error(a, err);
    }

    c = a->curl;
    timeout = (a->conf->timeout > 0 ? a->conf->timeout : PG_ACME_TIMEOUT)
              * 1000;
    capped = 0;

    /* the issuance's deadline bounds every transfer: a CA answering each
     * request just before its timeout cannot stretch the call */
    if (a->deadline > 0) {
        left = a->deadline - pg_acme_now();

        if (left <= 0) {
            return pg_acme_late(a, err);
        }

        if (left * 1000 < (double) timeout) {
            timeout = (long) (left * 1000) + 1;
            capped = 1;
        }
    }

    /* a reset keeps the connection and the TLS session for the next */
    pg_curl.easy_reset(c);

    /*
     * Every option is checked: one refused (a libcurl too old for
     * CURLOPT_PROTOCOLS_STR, out of memory) would have the request go out
     * without it, over http:// or to a redirect target, or trusting the
     * system's CAs instead of acme_ca.
     */
    bad = NULL;

#define pg_acme_setopt(opt, value)                                            \
    if (bad == NULL                                                           \
        && (rc = pg_curl.easy_setopt(c, opt, value)) != CURLE_OK)             \
    {                                                                         \
        bad = #opt;                                                           \
    }

    pg_acme_setopt(CURLOPT_PROTOCOLS_STR, "https");
    pg_acme_setopt(CURLOPT_URL, url);
    pg_acme_setopt(CURLOPT_NOSIGNAL, 1L);
    pg_acme_setopt(CURLOPT_TIMEOUT_MS, timeout);
    pg_acme_setopt(CURLOPT_CONNECTTIMEOUT_MS,
                   timeout < 10000 ? timeout : 10000L);
    pg_acme_setopt(CURLOPT_USERAGENT, "portal-gated/" PG_VERSION);
    pg_acme_setopt(CURLOPT_WRITEFUNCTION, pg_acme_on_body);
    pg_acme_setopt(CURLOPT_WRITEDATA, a);
    pg_acme_setopt(CURLOPT_HEADERFUNCTION, pg_acme_on_header);
    pg_acme_setopt(CURLOPT_HEADERDATA, a);
    pg_acme_setopt(CURLOPT_NOPROGRESS, 0L);
    pg_acme_setopt(CURLOPT_XFERINFOFUNCTION, pg_acme_on_progress);
    pg_acme_setopt(CURLOPT_XFERINFODATA, a);

    if (a->conf->ca_file != NULL && a->conf->ca_file[0] != '\0') {
        pg_acme_setopt(CURLOPT_CAINFO, a->conf->ca_file);
    }

    headers = NULL;

    if (accept != NULL) {
        snprintf(hdr, sizeof(hdr), "Accept: %s", accept);
        headers = pg_curl.slist_append(headers, hdr);
    }

    if (strcmp(method, "HEAD") == 0) {
        pg_acme_setopt(CURLOPT_NOBODY, 1L);

    } else if (strcmp(method, "POST") == 0) {
        h = pg_curl.slist_append(headers,
                                 "Content-Type: application/jose+json");
        headers = h ? h : headers;
        pg_acme_setopt(CURLOPT_POSTFIELDS, body);
        pg_acme_setopt(CURLOPT_POSTFIELDSIZE_LARGE,
                       (curl_off_t) strlen(body));
    }

    if (headers != NULL) {
        pg_acme_setopt(CURLOPT_HTTPHEADER, headers);
    }

#undef pg_acme_setopt

    if (bad != NULL) {
        pg_curl.easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
        pg_curl.slist_free_all(headers);
        snprintf(err->text, sizeof(err->text), "libcurl refused %s (%s): "
                 "no ACME request is made without it", bad,
                 pg_curl.easy_strerror(rc));
        return PG_ERR;
    }

    rc = pg_curl.easy_perform(c);

    pg_curl.easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    pg_curl.slist_free_all(headers);

    if (a->cancelled) {
        return pg_acme_cancel_error(a, err);
    }

    if (rc == CURLE_OPERATION_TIMEDOUT && capped) {
        return pg_acme_late(a, err);
    }

    if (rc != CURLE_OK) {
        why = a->too_large ? "the answer is over 1 MiB"
                           : pg_curl.easy_strerror(rc);
        snprintf(err->text, sizeof(err->text), "cannot reach the ACME "
                 "server: %s %.*s: %s", method, PG_ACME_SHOWN, url, why);
        return PG_ERR;
    }

    pg_curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);

    pg_acme_log(a, PG_ACME_DEBUG, "acme: %s %s: %ld", method, url,
                a->status);

    return PG_OK;
}


/* The answer's body as JSON (new), or PG_ERR naming what it was for. */
static json_t *
pg_acme_json(pg_acme_t *a, const char *what, pg_error_t *err)
{
    json_t        *json;
    json_error_t   jerr;

    json = a->body != NULL ? json_loadb(a->body, a->len, 0, &jerr) : NULL;

    if (!json_is_object(json)) {
        snprintf(err->text, sizeof(err->text), "the ACME server's answer to "
                 "%s is not a JSON object", what);
        json_decref(json);
        return NULL;
    }

    return json;
}


/* The failure of an answer as err, and its Retry-After kept. */
static int
pg_acme_fail(pg_acme_t *a, const char *what, char *type, size_t size,
    pg_error_t *err)
{
    pg_acme_problem(a->body, a->len, a->status, what, type, size, err);
    a->failed_retry_after = a->retry_after;

    return PG_ERR;
}


static int
pg_acme_directory(pg_acme_t *a, pg_error_t *err)
{
    const char  *dir;

    dir = a->conf->directory;

    if (pg_acme_http(a, "GET", dir, NULL, NULL, err) != PG_OK) {
        return PG_ERR;
    }

    if (a->status != 200) {
        return pg_acme_fail(a, dir, NULL, 0, err);
    }

    a->dir = pg_acme_json(a, "the directory", err);

    if (a->dir == NULL
        || pg_acme_dir_url(a, "newNonce", err) == NULL
        || pg_acme_dir_url(a, "newAccount", err) == NULL
        || pg_acme_dir_url(a, "newOrder", err) == NULL)
    {
        snprintf(err->text, sizeof(err->text), "%.*s is not an ACME "
                 "directory (%s)", PG_ACME_SHOWN, dir,
                 a->dir == NULL ? "not a JSON object"
                                : "no newNonce, newAccount or newOrder");
        return PG_ERR;
    }

    return PG_OK;
}


static const char *
pg_acme_dir_url(pg_acme_t *a, const char *name, pg_error_t *err)
{
    const char  *url;

    url = json_string_value(json_object_get(a->dir, name));

    if (url == NULL) {
        snprintf(err->text, sizeof(err->text), "the ACME directory has no "
                 "%s", name);
    }

    return url;
}


static int
pg_acme_new_nonce(pg_acme_t *a, pg_error_t *err)
{
    const char  *url;

    url = pg_acme_dir_url(a, "newNonce", err);

    if (url == NULL || pg_acme_http(a, "HEAD", url, NULL, NULL, err) != PG_OK)
    {
        return PG_ERR;
    }

    if (a->status != 200 && a->status != 204) {
        return pg_acme_fail(a, url, NULL, 0, err);
    }

    if (a->nonce[0] == '\0') {
        snprintf(err->text, sizeof(err->text), "the ACME server gave no "
                 "Replay-Nonce at %.*s", PG_ACME_SHOWN, url);
        return PG_ERR;
    }

    return PG_OK;
}


/*
 * POST a JWS of payload (NULL: POST-as-GET) to url. PG_OK with a 2xx
 * answer; PG_ERR with the problem. A badNonce is retried at once with the
 * nonce its answer brought (RFC 8555 6.5), PG_ACME_BAD_NONCES times.
 */
static int
pg_acme_post(pg_acme_t *a, const char *url, const json_t *payload,
    const char *accept, pg_error_t *err)
{
    int    tries, rc;
    char  *text, *jws, type[128];

    text = NULL;

    if (payload != NULL) {
        text = json_dumps(payload, JSON_COMPACT);

        if (text == NULL) {
            snprintf(err->text, sizeof(err->text), "out of memory");
            return PG_ERR;
        }
    }

    for (tries = 0; ; tries++) {
        if (a->nonce[0] == '\0' && pg_acme_new_nonce(a, err) != PG_OK) {
            free(text);
            return PG_ERR;
        }

        jws = pg_acme_jws(a->key, a->jwk, a->kid, a->nonce, url, text, err);

        if (jws == NULL) {
            free(text);
            return PG_ERR;
        }

        /* spent; the answer brings the next one */
        a->nonce[0] = '\0';

        rc = pg_acme_http(a, "POST", url, jws, accept, err);
        free(jws);

        if (rc != PG_OK) {
            free(text);
            return PG_ERR;
        }

        if (a->status >= 200 && a->status < 300) {
            free(text);
            return PG_OK;
        }

        pg_acme_fail(a, url, type, sizeof(type), err);

        if (strcmp(type, PG_ACME_ERROR_NS "badNonce") != 0
            || tries + 1 >= PG_ACME_BAD_NONCES)
        {
            free(text);
            return PG_ERR;
        }

        pg_acme_log(a, PG_ACME_DEBUG, "acme: badNonce at %s, again with "
                    "the new nonce", url);
    }
}


/* --- the account -------------------------------------------------------- */

/* The account key: read, or made once (0600) when the file is absent. */
static int
pg_acme_account_key(pg_acme_t *a, pg_error_t *err)
{
    int           rc;
    char         *pem;
    size_t        len;
    const char   *path;
    struct stat   st;

    path = a->conf->account_key;

    if (path == NULL || path[0] == '\0') {
        snprintf(err->text, sizeof(err->text), "no account key path");
        return PG_ERR;
    }

    if (lstat(path, &st) == 0) {
        /* a FIFO would block the read (the worker, and the daemon's exit
         * waiting for it); a symlink is not a key portal-gated made */
        if (!S_ISREG(st.st_mode)) {
            snprintf(err->text, sizeof(err->text), "account key %.*s is %s, "
                     "not a regular file: remove it to have one made",
                     PG_ACME_SHOWN, path,
                     S_ISLNK(st.st_mode) ? "a symlink"
                     : S_ISFIFO(st.st_mode) ? "a FIFO"
                     : S_ISDIR(st.st_mode) ? "a folder"
                     : S_ISSOCK(st.st_mode) ? "a socket" : "a device");
            return PG_ERR;
        }

        a->key = pg_cert_key_load(path, err);

    } else if (errno != ENOENT) {
        snprintf(err->text, sizeof(err->text), "cannot read account key "
                 "%.*s: %s", PG_ACME_SHOWN, path, strerror(errno));
        return PG_ERR;

    } else {
        a->key = pg_cert_key_new(PG_CERT_KEY_ECDSA, err);

        if (a->key == NULL) {
            return PG_ERR;
        }

        if (pg_cert_key_pem(a->key, &pem, &len, err) != PG_OK) {
            return PG_ERR;
        }

        rc = pg_cert_write_file(path, pem, len, 0600, err);
        OPENSSL_cleanse(pem, len);
        free(pem);

        if (rc != PG_OK) {
            return PG_ERR;
        }

        pg_acme_log(a, PG_ACME_INFO, "acme: made account key %s", path);
    }

    if (a->key == NULL) {
        return PG_ERR;
    }

    a->jwk = pg_acme_jwk_new(a->key, err);

    if (a->jwk == NULL) {
        snprintf(err->text, sizeof(err->text), "account key %.120s is not an "
                 "ECDSA P-256 key (ES256 signs ACME requests here): remove "
                 "it to have one made", path);
        return PG_ERR;
    }

    return pg_acme_thumbprint(a->jwk, a->thumb, err);
}


/* The account of the key is no more: err says what to do about it. */
static void
pg_acme_account_gone(pg_acme_t *a, pg_error_t *err)
{
    int         room;
    char        hint[PG_ACME_SHOWN + 64];
    pg_error_t  why;

    /* the hint whole, the CA's words cut if need be */
    snprintf(hint, sizeof(hint), "; remove the account key %.*s to have a "
             "new account made", PG_ACME_SHOWN, a->conf->account_key);
    why = *err;
    room = (int) (sizeof(err->text) - strlen(hint) - 1);
    snprintf(err->text, sizeof(err->text), "%.*s%s", room, why.text, hint);
}


/* newAccount: the account of the key, made if the CA has none (201), the
 * existing one otherwise (200). */
static int
pg_acme_account(pg_acme_t *a, pg_error_t *err)
{
    json_t      *req, *contact, *acct;
    size_t       i;
    const char  *url, *status;

    url = pg_acme_dir_url(a, "newAccount", err);

    if (url == NULL) {
        return PG_ERR;
    }

    req = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    contact = json_array();

    for (i = 0; i < a->conf->ncontact; i++) {
        json_array_append_new(contact, json_string(a->conf->contact[i]));
    }

    if (req == NULL || contact == NULL) {
        json_decref(req);
        json_decref(contact);
        snprintf(err->text, sizeof(err->text), "out of memory");
        return PG_ERR;
    }

    if (json_array_size(contact) > 0) {
        json_object_set_new(req, "contact", contact);

    } else {
        json_decref(contact);
    }

    if (pg_acme_post(a, url, req, NULL, err) != PG_OK) {
        json_decref(req);

        /* RFC 8555 7.3.6: a deactivated (or revoked) account's key is
         * refused for good; only a new key makes a new account */
        if (a->status >= 400 && strncmp(err->text, PG_ACME_ERROR_NS
                                        "unauthorized", 39) == 0)
        {
            pg_acme_account_gone(a, err);
        }

        return PG_ERR;
    }

    json_decref(req);

    if (a->location == NULL) {
        snprintf(err->text, sizeof(err->text), "the ACME server's answer to "
                 "newAccount has no Location");
        return PG_ERR;
    }

    acct = pg_acme_json(a, "newAccount", err);

    if (acct == NULL) {
        return PG_ERR;
    }

    status = json_string_value(json_object_get(acct, "status"));

    if (status != NULL && strcmp(status, "valid") != 0) {
        snprintf(err->text, sizeof(err->text), "the ACME account %.*s is "
                 "%.16s", PG_ACME_SHOWN, a->location, status);

        if (strcmp(status, "deactivated") == 0
            || strcmp(status, "revoked") == 0)
        {
            pg_acme_account_gone(a, err);
        }

        json_decref(acct);
        return PG_ERR;
    }

    json_decref(acct);

    a->kid = a->location;
    a->location = NULL;

    pg_acme_log(a, PG_ACME_INFO, "acme: account %s (%s)", a->kid,
                a->status == 201 ? "new" : "existing");

    return PG_OK;
}


/* --- the order ---------------------------------------------------------- */

static json_t *
pg_acme_new_order(pg_acme_t *a, char *const *names, size_t n,
    char **order_url, pg_error_t *err)
{
    int          rc;
    char         type[128];
    json_t      *req, *ids, *order;
    size_t       i;
    const char  *url, *profile, *replaces;

    url = pg_acme_dir_url(a, "newOrder", err);

    if (url == NULL
        || pg_acme_dir_profile(a->dir, a->conf->profile, &profile, err)
           != PG_OK)
    {
        return NULL;
    }

    if (profile == NULL && a->conf->profile != NULL
        && a->conf->profile[0] != '\0')
    {
        pg_acme_log(a, PG_ACME_INFO, "acme: the server lists no profiles: "
                    "profile %s not sent", a->conf->profile);
    }

    replaces = NULL;

    if (a->conf->replaces != NULL && a->conf->replaces[0] != '\0'
        && pg_acme_dir_renewal_info(a->dir) != NULL)
    {
        replaces = a->conf->replaces;
    }

    ids = json_array();

    for (i = 0; ids != NULL && i < n; i++) {
        json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "dns",
                                             "value", names[i]));
    }

    req = ids ? json_pack("{s:o}", "identifiers", ids) : NULL;

    if (req == NULL || json_array_size(ids) != n) {
        json_decref(req);
        snprintf(err->text, sizeof(err->text), "out of memory");
        return NULL;
    }

    if (profile != NULL) {
        json_object_set_new(req, "profile", json_string(profile));
    }

    if (replaces != NULL) {
        json_object_set_new(req, "replaces", json_string(replaces));
    }

    rc = pg_acme_post(a, url, req, NULL, err);

    if (rc != PG_OK && replaces != NULL && a->status >= 400) {
        /* RFC 9773 5: a CA may refuse "replaces" (the certificate was
         * replaced already, or is not this account's): the order is still
         * wanted, without it. Only a refusal says so: with no answer
         * (unreachable, timed out, cancelled) err keeps what happened */
        pg_acme_problem(a->body, a->len, a->status, url, type, sizeof(type),
                        err);

        if (a->status == 409 || a->status == 403
            || strcmp(type, PG_ACME_ERROR_NS "alreadyReplaced") == 0
            || strcmp(type, PG_ACME_ERROR_NS "malformed") == 0)
        {
            pg_acme_log(a, PG_ACME_WARN, "acme: order refused with replaces "
                        "%s (%s): ordering without it", replaces, err->text);
            json_object_del(req, "replaces");
            rc = pg_acme_post(a, url, req, NULL, err);
        }
    }

    json_decref(req);

    if (rc != PG_OK) {
        return NULL;
    }

    if (a->location == NULL) {
        snprintf(err->text, sizeof(err->text), "the ACME server's answer to "
                 "newOrder has no Location");
        return NULL;
    }

    order = pg_acme_json(a, "newOrder", err);

    if (order == NULL) {
        return NULL;
    }

    *order_url = a->location;
    a->location = NULL;

    pg_acme_log(a, PG_ACME_INFO, "acme: order %s for %s%s%s%s%s", *order_url,
                names[0], n > 1 ? " and others" : "",
                profile ? ", profile " : "", profile ? profile : "",
                replaces ? ", replacing the last" : "");

    return order;
}


/*
 * Read an authorization: *pending 1 with its http-01 challenge in az when
 * it waits for one, 0 when it is valid already (a CA may reuse a valid
 * authorization, RFC 8555 7.1.3); PG_ERR for any other state.
 */
static int
pg_acme_authz_read(pg_acme_t *a, pg_acme_authz_t *az, int *pending,
    pg_error_t *err)
{
    int          n, rc;
    char         offered[128];
    json_t      *authz, *ch;
    size_t       i, used;
    const char  *status, *type, *token, *url;

    *pending = 0;

    if (pg_acme_post(a, az->url, NULL, NULL, err) != PG_OK) {
        return PG_ERR;
    }

    authz = pg_acme_json(a, "an authorization", err);

    if (authz == NULL) {
        return PG_ERR;
    }

    az->name = pg_acme_strdup(json_string_value(
                   json_object_get(json_object_get(authz, "identifier"),
                                   "value")));
    status = json_string_value(json_object_get(authz, "status"));

    if (az->name == NULL || status == NULL) {
        snprintf(err->text, sizeof(err->text), "the ACME authorization "
                 "%.*s has no identifier or status", PG_ACME_SHOWN, az->url);
        json_decref(authz);
        return PG_ERR;
    }

    if (strcmp(status, "valid") == 0) {
        pg_acme_log(a, PG_ACME_DEBUG, "acme: %s is authorized already",
                    az->name);
        json_decref(authz);
        return PG_OK;
    }

    if (strcmp(status, "pending") != 0) {
        pg_acme_authz_invalid(a, az, authz, err);
        json_decref(authz);
        return PG_ERR;
    }

    used = 0;
    offered[0] = '\0';
    rc = PG_ERR;

    json_array_foreach(json_object_get(authz, "challenges"), i, ch) {
        type = json_string_value(json_object_get(ch, "type"));
        token = json_string_value(json_object_get(ch, "token"));
        url = json_string_value(json_object_get(ch, "url"));

        if (type == NULL) {
            continue;
        }

        if (strcmp(type, "http-01") == 0 && token != NULL && url != NULL) {
            az->token = pg_acme_strdup(token);
            az->challenge = pg_acme_strdup(url);
            rc = PG_OK;
            break;
        }

        if (used < sizeof(offered)) {
            n = snprintf(offered + used, sizeof(offered) - used, "%s%s",
                         used ? ", " : "", type);
            used += n < 0 ? 0 : (size_t) n;
        }
    }

    json_decref(authz);

    if (rc != PG_OK) {
        snprintf(err->text, sizeof(err->text), "the ACME server offers no "
                 "http-01 challenge for %.100s (it offers %.60s)",
                 az->name, offered[0] ? offered : "none");
        return PG_ERR;
    }

    if (az->token == NULL || az->challenge == NULL) {
        snprintf(err->text, sizeof(err->text), "out of memory");
        return PG_ERR;
    }

    /* RFC 8555 8.1: token "." thumbprint of the account's JWK; the token
     * goes into a URL path and the edges' API: only base64url there */
    for (i = 0; az->token[i] != '\0'; i++) {
        if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789-_", az->token[i]) == NULL)
        {
            snprintf(err->text, sizeof(err->text), "the ACME server's "
                     "http-01 token for %.*s is not base64url",
                     PG_ACME_SHOWN, az->name);
            return PG_ERR;
        }
    }

    n = (int) (strlen(az->token) + 1 + strlen(a->thumb) + 1);
    az->key_authorization = malloc((size_t) n);

    if (az->key_authorization == NULL) {
        snprintf(err->text, sizeof(err->text), "out of memory");
        return PG_ERR;
    }

    snprintf(az->key_authorization, (size_t) n, "%s.%s", az->token,
             a->thumb);

    *pending = 1;

    return PG_OK;
}


/* An authorization that is not valid: its challenge's error says why. */
static void
pg_acme_authz_invalid(pg_acme_t *a, pg_acme_authz_t *az,
    const json_t *authz, pg_error_t *err)
{
    char        *text;
    json_t      *ch, *error;
    size_t       i;
    const char  *status;

    (void) a;

    status = json_string_value(json_object_get(authz, "status"));

    json_array_foreach(json_object_get(authz, "challenges"), i, ch) {
        error = json_object_get(ch, "error");

        if (json_string_value(json_object_get(error, "type")) == NULL) {
            continue;
        }

        text = json_dumps(error, JSON_COMPACT);

        if (text != NULL) {
            pg_acme_problem(text, strlen(text), 0, az->url, NULL, 0, err);
            free(text);
            return;
        }
    }

    snprintf(err->text, sizeof(err->text), "the ACME authorization of "
             "%.*s is %.16s", PG_ACME_SHOWN, az->name,
             status ? status : "unknown");
}


/*
 * Seconds before the next poll of something the CA is working on: its
 * Retry-After (capped) when it gave one; else 0.1 s, 0.25 s, 0.5 s, then
 * 1 s: validation and issuance take a fraction of a second at most CAs,
 * and the first polls are what an issuance waits for. The callers cut it
 * to the time left.
 */
static double
pg_acme_poll_delay(pg_acme_t *a, unsigned polls)
{
    if (a->retry_after > 0) {
        return a->retry_after < PG_ACME_POLL_MAX ? (double) a->retry_after
                                                 : PG_ACME_POLL_MAX;
    }

    static const double  delays[] = { 0.1, 0.25, 0.5 };

    return polls < 3 ? delays[polls] : 1.0;
}


/* Poll an authorization until it is no longer pending. */
static int
pg_acme_authz_wait(pg_acme_t *a, pg_acme_authz_t *az, double deadline,
    pg_error_t *err)
{
    double       wait, left;
    json_t      *authz;
    unsigned     polls;
    const char  *status;

    for (polls = 0; ; polls++) {
        if (pg_acme_post(a, az->url, NULL, NULL, err) != PG_OK) {
            return PG_ERR;
        }

        authz = pg_acme_json(a, "an authorization", err);

        if (authz == NULL) {
            return PG_ERR;
        }

        status = json_string_value(json_object_get(authz, "status"));

        if (status != NULL && strcmp(status, "valid") == 0) {
            json_decref(authz);
            pg_acme_log(a, PG_ACME_INFO, "acme: %s authorized", az->name);
            return PG_OK;
        }

        if (status == NULL || strcmp(status, "pending") != 0) {
            pg_acme_authz_invalid(a, az, authz, err);
            json_decref(authz);
            return PG_ERR;
        }

        json_decref(authz);

        /* a Retry-After past the deadline: one more poll at the deadline,
         * where the CA may have finished after all */
        wait = pg_acme_poll_delay(a, polls);
        left = deadline - pg_acme_now();

        if (left <= 0) {
            if (deadline == a->deadline) {
                return pg_acme_late(a, err);
            }

            snprintf(err->text, sizeof(err->text), "the ACME server did not "
                     "validate %.*s within %ld s", PG_ACME_SHOWN, az->name,
                     pg_acme_wait(a));
            return PG_ERR;
        }

        if (pg_acme_sleep(a, wait < left ? wait : left, err) != PG_OK) {
            return PG_ERR;
        }
    }
}


/*
 * Every authorization of the order: the pending ones' challenges are all
 * published, then all answered, then waited for; they are withdrawn
 * whatever happens. An order has one authorization per identifier (RFC
 * 8555 7.1.3), so at most names of them: a CA listing more would have
 * the call make a request for each.
 */
static int
pg_acme_authorize(pg_acme_t *a, const json_t *order, size_t names,
    pg_error_t *err)
{
    int               rc, pending;
    json_t           *urls, *empty;
    size_t            i, n;
    double            deadline;
    pg_error_t        cb_err;
    pg_acme_authz_t  *az;

    urls = json_object_get(order, "authorizations");
    n = json_array_size(urls);

    if (n == 0) {
        snprintf(err->text, sizeof(err->text), "the ACME order has no "
                 "authorizations");
        return PG_ERR;
    }

    if (n > names) {
        snprintf(err->text, sizeof(err->text), "the ACME order lists %zu "
                 "authorizations for %zu name%s: one per identifier at most "
                 "(RFC 8555 7.1.3)", n, names, names == 1 ? "" : "s");
        return PG_ERR;
    }

    az = calloc(n, sizeof(pg_acme_authz_t));
    empty = json_object();

    if (az == NULL || empty == NULL) {
        free(az);
        json_decref(empty);
        snprintf(err->text, sizeof(err->text), "out of memory");
        return PG_ERR;
    }

    rc = PG_OK;

    for (i = 0; rc == PG_OK && i < n; i++) {
        az[i].url = pg_acme_strdup(json_string_value(json_array_get(urls, i)));

        if (az[i].url == NULL) {
            snprintf(err->text, sizeof(err->text), "the ACME order has a "
                     "bad authorization URL");
            rc = PG_ERR;
            break;
        }

        rc = pg_acme_authz_read(a, &az[i], &pending, err);

        if (rc == PG_OK && pending) {
            if (pg_acme_is_cancelled(a)) {
                rc = pg_acme_cancel_error(a, err);
                break;
            }

            memset(&cb_err, 0, sizeof(cb_err));

            /* a publish that failed may have reached some edges, or Redis
             * before the edges: it is withdrawn too, as the others */
            az[i].published = 1;

            if (a->conf->challenge(a->conf->ctx, az[i].token,
                                   az[i].key_authorization, 1, &cb_err)
                != PG_OK)
            {
                snprintf(err->text, sizeof(err->text), "cannot publish the "
                         "http-01 challenge for %.64s: %.140s", az[i].name,
                         cb_err.text);
                rc = PG_ERR;
                break;
            }
        }
    }

    /* the CA may validate at once: all of them are served before it is
     * told to */
    for (i = 0; rc == PG_OK && i < n; i++) {
        if (az[i].published) {
            rc = pg_acme_post(a, az[i].challenge, empty, NULL, err);
        }
    }

    deadline = pg_acme_step_deadline(a);

    for (i = 0; rc == PG_OK && i < n; i++) {
        if (az[i].published) {
            rc = pg_acme_authz_wait(a, &az[i], deadline, err);
        }
    }

    for (i = 0; i < n; i++) {
        if (az[i].published) {
            memset(&cb_err, 0, sizeof(cb_err));

            if (a->conf->challenge(a->conf->ctx, az[i].token,
                                   az[i].key_authorization, 0, &cb_err)
                != PG_OK)
            {
                pg_acme_log(a, PG_ACME_WARN, "acme: cannot withdraw the "
                            "http-01 challenge for %s: %s", az[i].name,
                            cb_err.text);
            }
        }

        free(az[i].url);
        free(az[i].name);
        free(az[i].token);
        free(az[i].challenge);
        free(az[i].key_authorization);
    }

    free(az);
    json_decref(empty);

    return rc;
}


/*
 * Poll the order (new, stolen) until its status is until ("ready",
 * "valid"); the last state read is returned (new). Waiting for "ready",
 * an order that is "valid" already is returned as it is (nothing to
 * finalize), and one "processing" (finalized already) is waited for
 * until it is "valid". "invalid" and a deadline past are errors.
 */
static json_t *
pg_acme_order_wait(pg_acme_t *a, const char *order_url, json_t *order,
    const char *until, pg_error_t *err)
{
    char        *text;
    double       deadline, wait, left;
    json_t      *error;
    unsigned     polls;
    const char  *status;

    deadline = pg_acme_step_deadline(a);

    for (polls = 0; ; polls++) {
        status = json_string_value(json_object_get(order, "status"));

        if (status != NULL
            && (strcmp(status, until) == 0 || strcmp(status, "valid") == 0))
        {
            return order;
        }

        if (status != NULL && strcmp(status, "processing") == 0) {
            until = "valid";
        }

        if (status == NULL || strcmp(status, "invalid") == 0) {
            error = json_object_get(order, "error");
            text = json_string_value(json_object_get(error, "type"))
                   ? json_dumps(error, JSON_COMPACT) : NULL;

            if (text != NULL) {
                pg_acme_problem(text, strlen(text), 0, order_url, NULL, 0,
                                err);
                free(text);

            } else {
                snprintf(err->text, sizeof(err->text), "the ACME order "
                         "%.*s is %.16s", PG_ACME_SHOWN, order_url,
                         status ? status : "without status");
            }

            json_decref(order);
            return NULL;
        }

        json_decref(order);

        /* pending (authorizations just settled) or processing (issuing) */
        wait = pg_acme_poll_delay(a, polls);
        left = deadline - pg_acme_now();

        if (left <= 0) {
            if (deadline == a->deadline) {
                pg_acme_late(a, err);
                return NULL;
            }

            snprintf(err->text, sizeof(err->text), "the ACME order %.*s was "
                     "not %s within %ld s", PG_ACME_SHOWN, order_url, until,
                     pg_acme_wait(a));
            return NULL;
        }

        if (pg_acme_sleep(a, wait < left ? wait : left, err) != PG_OK
            || pg_acme_post(a, order_url, NULL, NULL, err) != PG_OK)
        {
            return NULL;
        }

        order = pg_acme_json(a, "the order", err);

        if (order == NULL) {
            return NULL;
        }
    }
}


/* The order is authorized: finalize with a CSR, wait, download; or
 * download at once when it is valid already. */
static int
pg_acme_finalize(pg_acme_t *a, const char *order_url, json_t *order,
    EVP_PKEY *cert_key, char *const *names, size_t n, char **chain,
    size_t *len, pg_error_t *err)
{
    int             rc;
    char           *csr64;
    json_t         *req;
    size_t          dlen;
    const char     *url, *status;
    unsigned char  *der;

    order = pg_acme_order_wait(a, order_url, order, "ready", err);

    if (order == NULL) {
        return PG_ERR;
    }

    status = json_string_value(json_object_get(order, "status"));

    if (status != NULL && strcmp(status, "valid") == 0) {
        /* issued already: the CA reused an order it had finished, or
         * finalized it before (the download checks the key) */
        pg_acme_log(a, PG_ACME_INFO, "acme: order %s is valid already",
                    order_url);
        return pg_acme_download(a, order, cert_key, chain, len, err);
    }

    url = json_string_value(json_object_get(order, "finalize"));

    if (url == NULL) {
        snprintf(err->text, sizeof(err->text), "the ACME order has no "
                 "finalize URL");
        json_decref(order);
        return PG_ERR;
    }

    if (pg_cert_csr(cert_key, names, n, &der, &dlen, err) != PG_OK) {
        json_decref(order);
        return PG_ERR;
    }

    csr64 = pg_acme_b64_new(der, dlen);
    free(der);
    req = csr64 ? json_pack("{s:s}", "csr", csr64) : NULL;
    free(csr64);

    if (req == NULL) {
        json_decref(order);
        snprintf(err->text, sizeof(err->text), "out of memory");
        return PG_ERR;
    }

    rc = pg_acme_post(a, url, req, NULL, err);
    json_decref(req);
    json_decref(order);

    if (rc != PG_OK) {
        return PG_ERR;
    }

    order = pg_acme_json(a, "finalize", err);

    if (order == NULL) {
        return PG_ERR;
    }

    order = pg_acme_order_wait(a, order_url, order, "valid", err);

    if (order == NULL) {
        return PG_ERR;
    }

    return pg_acme_download(a, order, cert_key, chain, len, err);
}


/*
 * The certificate of a valid order (order: new, stolen), checked to be for
 * cert_key: an order the CA finished before (reused, or finalized by an
 * earlier call) may hold a certificate for another key.
 */
static int
pg_acme_download(pg_acme_t *a, json_t *order, EVP_PKEY *cert_key,
    char **chain, size_t *len, pg_error_t *err)
{
    int          rc;
    BIO         *bio;
    X509        *leaf;
    const char  *url;

    url = json_string_value(json_object_get(order, "certificate"));

    if (url == NULL) {
        snprintf(err->text, sizeof(err->text), "the valid ACME order has no "
                 "certificate URL");
        json_decref(order);
        return PG_ERR;
    }

    rc = pg_acme_post(a, url, NULL, "application/pem-certificate-chain",
                      err);
    json_decref(order);

    if (rc != PG_OK) {
        return PG_ERR;
    }

    if (a->body == NULL
        || strncmp(a->body, "-----BEGIN CERTIFICATE-----", 27) != 0)
    {
        snprintf(err->text, sizeof(err->text), "the ACME server's "
                 "certificate is not a PEM chain");
        return PG_ERR;
    }

    bio = BIO_new_mem_buf(a->body, (int) a->len);
    leaf = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    rc = leaf == NULL ? -1
         : EVP_PKEY_eq(X509_get0_pubkey(leaf), cert_key) == 1 ? 1 : 0;
    X509_free(leaf);
    BIO_free(bio);
    ERR_clear_error();

    if (rc != 1) {
        snprintf(err->text, sizeof(err->text), "the ACME server's "
                 "certificate is %s", rc < 0 ? "not a PEM chain"
                 : "for another key than this issuance's (an order the CA "
                   "had finished before?)");
        return PG_ERR;
    }

    *chain = a->body;
    *len = a->len;
    a->body = NULL;
    a->len = 0;

    return PG_OK;
}


/* --- the API ------------------------------------------------------------ */

int
pg_acme_issue(const pg_acme_conf_t *conf, char *const *names, size_t n,
    EVP_PKEY *cert_key, char **chain, size_t *len, long *retry_after,
    pg_error_t *err)
{
    int          rc;
    char        *order_url;
    json_t      *order;
    pg_acme_t    a;
    const char  *profile;

    *chain = NULL;
    *len = 0;
    *retry_after = 0;
    order_url = NULL;

    if (n == 0 || conf->challenge == NULL) {
        snprintf(err->text, sizeof(err->text), "nothing to issue: %s",
                 n == 0 ? "no names" : "no challenge callback");
        return PG_ERR;
    }

    rc = PG_ERR;

    if (pg_acme_open(&a, conf, err) != PG_OK) {
        goto done;
    }

    a.deadline = pg_acme_now()
                 + (double) PG_ACME_ISSUE_WAITS * (double) pg_acme_wait(&a);

    /* the key first: a bad one is said even while the CA is down; then
     * the directory's word on the profile, before an account or order */
    if (pg_acme_account_key(&a, err) != PG_OK
        || pg_acme_directory(&a, err) != PG_OK
        || pg_acme_dir_profile(a.dir, conf->profile, &profile, err) != PG_OK
        || pg_acme_account(&a, err) != PG_OK)
    {
        goto done;
    }

    order = pg_acme_new_order(&a, names, n, &order_url, err);

    if (order == NULL) {
        goto done;
    }

    rc = pg_acme_authorize(&a, order, n, err);
    json_decref(order);

    if (rc != PG_OK) {
        goto done;
    }

    rc = PG_ERR;

    /* the order as it is now that its authorizations are valid: "ready"
     * at once, most often, with no wait */
    if (pg_acme_post(&a, order_url, NULL, NULL, err) != PG_OK
        || (order = pg_acme_json(&a, "the order", err)) == NULL)
    {
        goto done;
    }

    /* pg_acme_finalize owns order from here */
    rc = pg_acme_finalize(&a, order_url, order, cert_key, names, n, chain,
                          len, err);

    if (rc == PG_OK) {
        pg_acme_log(&a, PG_ACME_INFO, "acme: certificate issued for %s%s",
                    names[0], n > 1 ? " and others" : "");
    }

done:

    if (rc != PG_OK && a.failed_retry_after > 0) {
        *retry_after = a.failed_retry_after;
    }

    if (rc != PG_OK && pg_acme_is_cancelled(&a)) {
        pg_acme_cancel_error(&a, err);
    }

    /* messages quote the CA's URLs and words, JSON strings that may hold
     * a newline: the caller logs one line */
    if (rc != PG_OK) {
        pg_acme_oneline(err->text);
    }

    free(order_url);
    pg_acme_close(&a);

    return rc;
}


int
pg_acme_renewal_info(const pg_acme_conf_t *conf, const char *ari_id,
    time_t *start, time_t *end, long *retry_after, pg_error_t *err)
{
    int          rc;
    char        *url;
    size_t       size, blen;
    pg_acme_t    a;
    const char  *base;

    *retry_after = 0;
    url = NULL;
    rc = PG_ERR;

    if (ari_id == NULL || ari_id[0] == '\0') {
        snprintf(err->text, sizeof(err->text), "no ARI id (the certificate "
                 "has no authority key identifier)");
        return PG_ERR;
    }

    if (pg_acme_open(&a, conf, err) != PG_OK
        || pg_acme_directory(&a, err) != PG_OK)
    {
        goto done;
    }

    base = pg_acme_dir_renewal_info(a.dir);

    if (base == NULL) {
        rc = PG_DECLINED;
        goto done;
    }

    /* RFC 9773 4.1: renewalInfo "/" id, whether or not the URL ends in one */
    blen = strlen(base);

    while (blen > 0 && base[blen - 1] == '/') {
        blen--;
    }

    size = blen + 1 + strlen(ari_id) + 1;
    url = malloc(size);

    if (url == NULL) {
        snprintf(err->text, sizeof(err->text), "out of memory");
        goto done;
    }

    snprintf(url, size, "%.*s/%s", (int) blen, base, ari_id);

    if (pg_acme_http(&a, "GET", url, NULL, NULL, err) != PG_OK) {
        goto done;
    }

    if (a.status != 200) {
        pg_acme_fail(&a, url, NULL, 0, err);
        goto done;
    }

    if (a.body == NULL) {
        snprintf(err->text, sizeof(err->text), "empty renewalInfo answer");
        goto done;
    }

    rc = pg_cert_ari_parse(a.body, a.len, start, end, err);

done:

    if (a.retry_after > 0) {
        *retry_after = a.retry_after;
    }

    if (rc == PG_ERR) {
        pg_acme_oneline(err->text);
    }

    free(url);
    pg_acme_close(&a);

    return rc;
}
