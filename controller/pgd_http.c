/*
 * pgd_http.c: portal-gated's own HTTP endpoint, in the daemon's loop (see
 * pgd_http.h for the routes, the threading and who owns what).
 *
 * libmicrohttpd 0.9.75 (Debian bookworm): MHD_USE_EPOLL without
 * MHD_USE_INTERNAL_POLLING_THREAD gives one epoll fd that the loop polls
 * beside curl's, and MHD_run() never blocks. The listen socket is bound
 * here, not by MHD, so that a bind error names the listen line and a
 * SIGHUP can bind the new address before it lets the old one go (or, on
 * the same port, let the old one go, and take it back when the new one
 * cannot be bound: pgd_http_rebind()).
 */

#include <errno.h>              /* errno */
#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* snprintf, vsnprintf */
#include <stdlib.h>             /* calloc, free */
#include <string.h>             /* strcmp, strstr, memcpy */
#include <unistd.h>             /* close */
#include <arpa/inet.h>          /* inet_pton, htons */
#include <netinet/in.h>         /* sockaddr_in, sockaddr_in6 */
#include <sys/socket.h>         /* socket, bind, listen */
#include <sys/stat.h>           /* fstat: is the fd still our socket */
#include <microhttpd.h>         /* MHD_* */
#include <openssl/evp.h>        /* the page's script hash for its CSP */
#include "pg_redis.h"           /* pg_redis_timed_out, pg_redis_strerror */
#include "pg_store.h"           /* PG_STORE_KEY_AUDIT */
#include "pgd_http_private.h"   /* pgd_http_t, and the API it implements */


#define PGD_HTTP_AUDIT_EVERY  30000     /* ms: the audit read again while
                                           the revision stays (a release
                                           or a note adds no revision) */
#define PGD_HTTP_DIFF_MAX     65536     /* bytes of before/after JSON that
                                           an audit line is summed up from;
                                           larger stay in Redis */
#define PGD_HTTP_STATUS_MS    250       /* ms: one /status.json rendering
                                           serves every asker this long, at
                                           the same revisions */
#define PGD_HTTP_HEADERS_MAX  32768     /* bytes of a request's head */


/*
 * The status page, built in as it is in the source tree: an edit of the
 * HTML is an edit of one file, and the Makefile rebuilds on it. It ends
 * with a NUL (pgd_http_page_end points at it). PGD_HTTP_PAGE is its
 * absolute path, from the Makefile: .incbin reads a relative path from
 * the compiler's working directory, not from this file's.
 */
#ifndef PGD_HTTP_PAGE
#error "PGD_HTTP_PAGE: the absolute path of pgd_http_page.html (Makefile)"
#endif

__asm__(
    "    .section .rodata\n"
    "    .global pgd_http_page\n"
    "    .hidden pgd_http_page\n"
    "pgd_http_page:\n"
    "    .incbin \"" PGD_HTTP_PAGE "\"\n"
    "    .global pgd_http_page_end\n"
    "    .hidden pgd_http_page_end\n"
    "pgd_http_page_end:\n"
    "    .byte 0\n"
    "    .previous\n");

extern const char  pgd_http_page[];
extern const char  pgd_http_page_end[];


const double  pgd_http_buckets[PGD_HTTP_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1, 2.5, 5, 10
};

const char *const  pgd_http_results[PGD_HTTP_RESULTS] = {
    "ok", "conflict", "refused", "timeout", "failed"
};


static int pgd_http_csp(pgd_http_t *h);
static void pgd_http_addr(const pg_conf_t *conf, pgd_http_addr_t *a);
static void pgd_http_rebind(pgd_t *d, const pgd_http_addr_t *want);
static int pgd_http_clash(const pgd_http_addr_t *a,
    const pgd_http_addr_t *b);
static void pgd_http_serving(pgd_t *d, const pgd_http_addr_t *a);
static struct MHD_Daemon *pgd_http_listen(pgd_t *d, const pgd_http_addr_t *a,
    int *eno, char *why, size_t size);
static void pgd_http_close_ours(int fd, ino_t ino);
static enum MHD_Result pgd_http_answer(void *cls, struct MHD_Connection *c,
    const char *url, const char *method, const char *version,
    const char *upload_data, size_t *upload_data_size, void **con_cls);
static enum MHD_Result pgd_http_route(pgd_t *d, struct MHD_Connection *c,
    const char *url, const char *method);
static int pgd_http_host_ok(pgd_t *d, struct MHD_Connection *c, char *host,
    size_t size);
static enum MHD_Result pgd_http_send(struct MHD_Connection *c,
    unsigned code, const char *type, char *body, size_t len,
    enum MHD_ResponseMemoryMode mode, const char *csp);
static enum MHD_Result pgd_http_send_json(struct MHD_Connection *c,
    unsigned code, json_t *doc);
static void pgd_http_headers(struct MHD_Response *r, unsigned code,
    const char *type, const char *csp);
static struct MHD_Response *pgd_http_status_response(pgd_t *d);
static void pgd_http_observe(pgd_t *d, double now);
static void pgd_http_audit(pgd_t *d, double now);
static void pgd_http_change(const char *action, const char *before,
    const char *after, char *buf, size_t size);


/* --- lifecycle ---------------------------------------------------------- */

int
pgd_http_start(pgd_t *d)
{
    int          eno;
    char         why[512];
    pgd_http_t  *h;

    h = calloc(1, sizeof(pgd_http_t));
    if (h == NULL) {
        pgd_log(d, PG_LOG_ERROR, "cannot start: out of memory");
        return PG_ERR;
    }

    d->http = h;
    h->audit_rev = -1;
    h->status_snap = -1;

    if (pgd_http_csp(h) != PG_OK) {
        pgd_log(d, PG_LOG_ERROR, "cannot start: the status page has no "
                "<script> to hash");
        return PG_ERR;
    }

    if (d->conf.listen_port == 0) {
        return PG_OK;
    }

    pgd_http_addr(&d->conf, &h->bound);
    h->mhd = pgd_http_listen(d, &h->bound, &eno, why, sizeof(why));

    if (h->mhd == NULL) {
        pgd_log(d, PG_LOG_ERROR, "cannot start: %s", why);
        return PG_ERR;
    }

    pgd_http_serving(d, &h->bound);

    return PG_OK;
}


void
pgd_http_configure(pgd_t *d)
{
    size_t            i, j, n;
    pgd_http_t       *h;
    pgd_http_addr_t   want;

    h = d->http;
    if (h == NULL) {
        return;
    }

    /* counters of edges gone go: a HUP a day must not grow them */
    n = 0;

    for (i = 0; i < h->nedges; i++) {
        for (j = 0; j < d->nedges; j++) {
            if (strcmp(h->edges[i].spec, d->edges[j].edge.spec) == 0) {
                break;
            }
        }

        if (j < d->nedges) {
            if (n != i) {
                h->edges[n] = h->edges[i];
            }
            n++;
        }
    }

    h->nedges = n;

    if (strcmp(h->bound.text, d->conf.listen) == 0) {
        return;
    }

    if (d->conf.listen_port == 0) {
        if (h->mhd) {
            MHD_stop_daemon(h->mhd);
            h->mhd = NULL;
        }

        pgd_log(d, PG_LOG_NOTICE, "listen %s closed: no listen line",
                h->bound.text);
        memset(&h->bound, 0, sizeof(h->bound));
        return;
    }

    pgd_http_addr(&d->conf, &want);
    pgd_http_rebind(d, &want);
}


/*
 * Whether the old listen can be what keeps the new one from binding: the
 * same port and family (an IPv6 listen is IPV6_V6ONLY), and one of them a
 * wildcard or both the same address. 127.0.0.1:P and 127.0.0.2:P, or
 * [::1]:P and 127.0.0.1:P, never clash: someone else holds the port.
 */
static int
pgd_http_clash(const pgd_http_addr_t *a, const pgd_http_addr_t *b)
{
    int            af;
    size_t         n;
    unsigned char  x[16], y[16], none[16];

    if (a->port != b->port || a->v6 != b->v6) {
        return 0;
    }

    af = a->v6 ? AF_INET6 : AF_INET;
    n = a->v6 ? 16 : 4;
    memset(none, 0, sizeof(none));

    if (inet_pton(af, a->addr, x) != 1 || inet_pton(af, b->addr, y) != 1) {
        return 1;                       /* cannot tell: try as before */
    }

    return memcmp(x, none, n) == 0 || memcmp(y, none, n) == 0
           || memcmp(x, y, n) == 0;
}


/*
 * A changed listen line: the new address is bound first, and the old one
 * closed once it serves, so that a new address that cannot be bound leaves
 * the old one serving. But the old listen may itself hold the port that
 * the new one wants (127.0.0.1:9100 -> 0.0.0.0:9100, or back): then the
 * old one is closed first, the new one bound, and when that fails too
 * (someone else holds the port), the old one is bound again.
 */
static void
pgd_http_rebind(pgd_t *d, const pgd_http_addr_t *want)
{
    int                 eno;
    char                why[512];
    pgd_http_t         *h;
    pgd_http_addr_t     old;
    struct MHD_Daemon  *mhd;

    h = d->http;
    old = h->bound;

    mhd = pgd_http_listen(d, want, &eno, why, sizeof(why));

    if (mhd == NULL && eno == EADDRINUSE && h->mhd != NULL
        && pgd_http_clash(&old, want))
    {
        pgd_log(d, PG_LOG_NOTICE, "%s; the old listen %s may be what holds "
                "the port: closing it to bind %s", why, old.text, want->text);
        MHD_stop_daemon(h->mhd);
        h->mhd = NULL;

        mhd = pgd_http_listen(d, want, &eno, why, sizeof(why));

        if (mhd == NULL) {
            pgd_log(d, PG_LOG_ERROR, "%s; binding the old listen %s again",
                    why, old.text);

            h->mhd = pgd_http_listen(d, &old, &eno, why, sizeof(why));

            if (h->mhd == NULL) {
                pgd_log(d, PG_LOG_ERROR, "%s: no HTTP endpoint", why);
                memset(&h->bound, 0, sizeof(h->bound));
                return;
            }

            pgd_http_serving(d, &old);
            return;
        }

    } else if (mhd == NULL) {
        pgd_log(d, PG_LOG_ERROR, "%s; %s", why, h->mhd
                ? "the old listen stays" : "no HTTP endpoint");
        return;
    }

    if (h->mhd) {
        MHD_stop_daemon(h->mhd);
    }

    h->mhd = mhd;
    h->bound = *want;
    pgd_http_serving(d, want);
}


/* The listen line of conf, as pgd_http_listen() binds it. */
static void
pgd_http_addr(const pg_conf_t *conf, pgd_http_addr_t *a)
{
    memcpy(a->text, conf->listen, sizeof(a->text));
    memcpy(a->addr, conf->listen_addr, sizeof(a->addr));
    a->v6 = conf->listen_v6;
    a->port = conf->listen_port;
    a->line = conf->listen_line;
}


static void
pgd_http_serving(pgd_t *d, const pgd_http_addr_t *a)
{
    pgd_log(d, PG_LOG_NOTICE, "serving /metrics, /healthz and the status "
            "page on http://%s%s%s:%d/", a->v6 ? "[" : "", a->addr,
            a->v6 ? "]" : "", a->port);
}


void
pgd_http_stop(pgd_t *d)
{
    pgd_http_t  *h;

    h = d->http;
    if (h == NULL) {
        return;
    }

    if (h->mhd) {
        MHD_stop_daemon(h->mhd);
    }

    if (h->status) {
        MHD_destroy_response(h->status);
    }

    /* the lines the limit held back are said before the end: as if the
     * window were over */
    pgd_http_log_window(d, h->log_window + PGD_HTTP_LOG_WINDOW_MS);

    json_decref(h->audit);
    free(h);
    d->http = NULL;
}


/*
 * The page's Content-Security-Policy: its one inline script by hash, its
 * inline style, fetch() to itself, nothing else. Text from the store is
 * put in with textContent (the page's own rule); this is the second
 * wall: an injected onerror= or <script> would not run.
 */
static int
pgd_http_csp(pgd_http_t *h)
{
    unsigned int    mdlen;
    unsigned char   md[EVP_MAX_MD_SIZE], b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3)
                                             + 1];
    const char     *start, *end;

    start = strstr(pgd_http_page, "<script>");
    end = start ? strstr(start, "</script>") : NULL;

    if (end == NULL) {
        return PG_ERR;
    }

    start += sizeof("<script>") - 1;

    if (EVP_Digest(start, (size_t) (end - start), md, &mdlen, EVP_sha256(),
                   NULL) != 1)
    {
        return PG_ERR;
    }

    EVP_EncodeBlock(b64, md, (int) mdlen);

    snprintf(h->csp, sizeof(h->csp), "default-src 'none'; script-src "
             "'sha256-%s'; style-src 'unsafe-inline'; connect-src 'self'; "
             "img-src data:; base-uri 'none'; form-action 'none'; "
             "frame-ancestors 'none'", b64);

    return PG_OK;
}


/* A bound, listening socket for a, and MHD on it; NULL with why ("listen
 * 127.0.0.1:9145 (FILE:LINE): Address already in use") and *eno (the
 * errno of what failed; 0 when MHD did). */
static struct MHD_Daemon *
pgd_http_listen(pgd_t *d, const pgd_http_addr_t *a, int *eno, char *why,
    size_t size)
{
    int                   fd, one;
    ino_t                 ino;
    socklen_t             len;
    struct stat           st;
    struct MHD_Daemon    *mhd;
    struct sockaddr_in    a4;
    struct sockaddr_in6   a6;
    struct sockaddr      *sa;

    *eno = 0;

    memset(&a4, 0, sizeof(a4));
    memset(&a6, 0, sizeof(a6));

    if (a->v6) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t) a->port);
        inet_pton(AF_INET6, a->addr, &a6.sin6_addr);
        sa = (struct sockaddr *) &a6;
        len = sizeof(a6);

    } else {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t) a->port);
        inet_pton(AF_INET, a->addr, &a4.sin_addr);
        sa = (struct sockaddr *) &a4;
        len = sizeof(a4);
    }

    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        *eno = errno;
        snprintf(why, size, "listen %s: socket: %s", a->text,
                 strerror(errno));
        return NULL;
    }

    one = 1;
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));

    if (a->v6) {
        /* [::]:PORT is IPv6 alone, as written; no mapped IPv4 */
        (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }

    if (bind(fd, sa, len) != 0 || listen(fd, 64) != 0) {
        *eno = errno;
        snprintf(why, size, "listen %s (%s:%d): %s", a->text,
                 d->conf_path, a->line, strerror(errno));
        close(fd);
        return NULL;
    }

    ino = fstat(fd, &st) == 0 ? st.st_ino : 0;

    /*
     * The logger first: MHD says what is wrong with a later option through
     * the logger it has by then. The notifications keep the connections'
     * times (pgd_http_conn.c); MHD's own timeout stays as a second wall.
     */
    mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
              pgd_http_answer, d,
              MHD_OPTION_EXTERNAL_LOGGER, pgd_http_mhd_log, d,
              MHD_OPTION_LISTEN_SOCKET, (MHD_socket) fd,
              MHD_OPTION_CONNECTION_LIMIT, (unsigned int) PGD_HTTP_CONNECTIONS,
              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) PGD_HTTP_REQUEST_S,
              MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                  (size_t) PGD_HTTP_HEADERS_MAX,
              MHD_OPTION_NOTIFY_CONNECTION, pgd_http_conn_notify, d,
              MHD_OPTION_NOTIFY_COMPLETED, pgd_http_conn_done, d,
              MHD_OPTION_END);

    if (mhd == NULL) {
        snprintf(why, size, "listen %s: libmicrohttpd did not start",
                 a->text);
        pgd_http_close_ours(fd, ino);
        return NULL;
    }

    return mhd;
}


/*
 * A socket that MHD_start_daemon() was given and failed on: closed unless
 * MHD closed it already. It does on some of its failure paths and not on
 * others, and a second close() could close a descriptor that another
 * thread (the certificates' worker) has opened meanwhile under that
 * number: the inode says whether the number still holds our socket.
 */
static void
pgd_http_close_ours(int fd, ino_t ino)
{
    struct stat  st;

    if (ino != 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)
        && st.st_ino == ino)
    {
        close(fd);
    }
}


/* --- in the loop -------------------------------------------------------- */

int
pgd_http_wait(pgd_t *d, struct curl_waitfd *fd, long *timeout_ms)
{
    long                       conn_ms;
    pgd_http_t                *h;
    MHD_UNSIGNED_LONG_LONG     t;
    const union MHD_DaemonInfo *info;

    h = d->http;

    if (h == NULL || h->mhd == NULL) {
        return 0;
    }

    info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL) {
        return 0;
    }

    if (MHD_get_timeout(h->mhd, &t) == MHD_YES && (long long) t < *timeout_ms)
    {
        *timeout_ms = (long) t;
    }

    conn_ms = pgd_http_conn_wait_ms(d, pgd_now());

    if (conn_ms >= 0 && conn_ms < *timeout_ms) {
        *timeout_ms = conn_ms;
    }

    fd->fd = info->epoll_fd;
    fd->events = CURL_WAIT_POLLIN;
    fd->revents = 0;

    return 1;
}


void
pgd_http_run(pgd_t *d, int changes)
{
    double       now;
    pgd_http_t  *h;

    h = d->http;
    if (h == NULL) {
        return;
    }

    now = pgd_now();
    pgd_http_observe(d, now);
    pgd_http_log_window(d, now);

    /* even in a turn that skips MHD: the slots are kept free either way */
    pgd_http_conn_sweep(d, now);

    /*
     * A change to push goes out first: one read this turn (pushed at the
     * start of the next), a whole read owed while Redis is up, or a
     * message that waits unread. Only then: a load owed while Redis is
     * down waits for Redis, and must not silence the endpoint meanwhile.
     */
    if (changes > 0 || (d->load_wanted && d->cmd != NULL)
        || pgd_redis_pending(d, 0))
    {
        return;
    }

    if (h->mhd) {
        MHD_run(h->mhd);
    }
}


void
pgd_http_done(pgd_t *d, pgd_edge_t *e, CURLcode code)
{
    int               result;
    long              status;
    double            s;
    size_t            i;
    pgd_http_edge_t  *st;

    if (d->http == NULL
        || (e->kind != PGD_REQ_PUT && e->kind != PGD_REQ_PATCH))
    {
        return;
    }

    st = pgd_http_edge(d->http, e->edge.spec);
    if (st == NULL) {
        return;
    }

    status = 0;

    if (code == CURLE_OK) {
        pg_curl.easy_getinfo(e->req.curl, CURLINFO_RESPONSE_CODE, &status);
    }

    result = code == CURLE_OPERATION_TIMEDOUT ? PGD_HTTP_TIMEOUT
             : code != CURLE_OK ? PGD_HTTP_FAILED
             : status == 200 ? PGD_HTTP_OK
             : status == 409 ? PGD_HTTP_CONFLICT
             : PGD_HTTP_REFUSED;

    s = (pgd_now() - e->started) / 1000;
    s = s < 0 ? 0 : s;

    st->pushes[result]++;
    st->count++;
    st->sum += s;

    for (i = 0; i < PGD_HTTP_BUCKETS; i++) {
        if (s <= pgd_http_buckets[i]) {
            st->le[i]++;
            break;
        }
    }
}


/* The counters of the edge spec, made when new; NULL when full. */
pgd_http_edge_t *
pgd_http_edge(pgd_http_t *h, const char *spec)
{
    size_t            i;
    pgd_http_edge_t  *st;

    for (i = 0; i < h->nedges; i++) {
        if (strcmp(h->edges[i].spec, spec) == 0) {
            return &h->edges[i];
        }
    }

    if (h->nedges == PGD_HTTP_EDGES_MAX) {
        return NULL;
    }

    st = &h->edges[h->nedges++];
    memset(st, 0, sizeof(*st));
    snprintf(st->spec, sizeof(st->spec), "%s", spec);

    return st;
}


/* e holds the snapshot the daemon pushes now, all of it (not only its
 * kills over an older one). */
int
pgd_http_in_step(pgd_t *d, pgd_edge_t *e)
{
    return d->body != NULL && e->revision == d->body->revision
           && e->partial != d->body->revision;
}


/* Seconds since e was last seen in step (since the start when never); 0
 * in step. */
double
pgd_http_lag_s(pgd_t *d, pgd_edge_t *e)
{
    pgd_http_edge_t  *st;

    st = pgd_http_edge(d->http, e->edge.spec);

    if (st == NULL || st->out_since == 0) {
        return 0;
    }

    return (pgd_now() - st->out_since) / 1000;
}


/* Revisions e is behind the snapshot pushed (negative: ahead of it);
 * INT64_MIN when either is not known. */
int64_t
pgd_http_lag_revisions(pgd_t *d, pgd_edge_t *e)
{
    if (d->body == NULL || e->revision < 0) {
        return INT64_MIN;
    }

    return d->body->revision - e->revision;
}


/* When each edge went out of step: seen at the end of each turn, which is
 * where a change or an answer lands. */
static void
pgd_http_observe(pgd_t *d, double now)
{
    size_t            i;
    pgd_http_edge_t  *st;

    for (i = 0; i < d->nedges; i++) {
        st = pgd_http_edge(d->http, d->edges[i].edge.spec);
        if (st == NULL) {
            continue;
        }

        if (pgd_http_in_step(d, &d->edges[i])) {
            st->out_since = 0;

        } else if (st->out_since == 0) {
            st->out_since = now;
        }
    }
}


/* --- the audit ---------------------------------------------------------- */

/* One audit entry of XREVRANGE ({id, {k, v, ...}}), summed up: new, NULL
 * out of memory. A before or after over PGD_HTTP_DIFF_MAX is not parsed:
 * its size is said. */
static json_t *
pgd_http_audit_entry(const redisReply *item)
{
    char          change[512], clean[1024];
    size_t        j, big;
    json_t       *entry, *str;
    redisReply   *fields, *k, *v;
    const char   *before, *after, *action;

    entry = json_object();
    before = "";
    after = "";
    action = "";
    big = 0;
    fields = item->element[1];

    for (j = 0; entry != NULL && j + 1 < fields->elements; j += 2) {
        k = fields->element[j];
        v = fields->element[j + 1];

        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }

        if (strcmp(k->str, "before") == 0 || strcmp(k->str, "after") == 0) {
            if (v->len > PGD_HTTP_DIFF_MAX) {
                big += v->len;
            } else if (k->str[0] == 'b') {
                before = v->str;
            } else {
                after = v->str;
            }

        } else if (strcmp(k->str, "ts") == 0
                   || strcmp(k->str, "actor") == 0
                   || strcmp(k->str, "env") == 0
                   || strcmp(k->str, "flag") == 0
                   || strcmp(k->str, "action") == 0
                   || strcmp(k->str, "reason") == 0
                   || strcmp(k->str, "revision") == 0)
        {
            /* another tool's bytes need not be UTF-8: json_string
             * refuses those, so they are shown cleaned */
            str = json_stringn(v->str, v->len);

            if (str == NULL) {
                pgd_http_clean(v->str, clean, sizeof(clean));
                str = json_string(clean);
            }

            json_object_set_new(entry, k->str, str);

            if (strcmp(k->str, "action") == 0) {
                action = v->str;
            }
        }
    }

    if (entry == NULL) {
        return NULL;
    }

    if (big > 0) {
        snprintf(change, sizeof(change), "(%.1f MB of flag JSON, too large "
                 "to sum up: portal-gatectl audit)", (double) big / 1e6);
    } else {
        pgd_http_change(action, before, after, change, sizeof(change));
    }

    json_object_set_new(entry, "change", json_string(change));

    return entry;
}


/*
 * The newest PGD_HTTP_AUDIT_COUNT entries of the audit stream, for the
 * page, summed up. Asked by /status.json alone, at most once a revision
 * (and every PGD_HTTP_AUDIT_EVERY), never in a turn with a change to push
 * (pgd_http_run()). Each entry is read and summed up once: after the first
 * read only the entries past the newest one held are asked for (XREVRANGE
 * from an exclusive id, Redis 6.2), so a 100k-company flag's 2 MB of JSON
 * crosses once per change, not 20 times per revision. Read on the command
 * connection, as the store is; a Redis that fails here is down as it would
 * be for the store. (Not a Lua script that drops the large fields: Redis
 * takes about 90 ms to hand a Lua script one such entry, blocking every
 * writer meanwhile.)
 */
static void
pgd_http_audit(pgd_t *d, double now)
{
    int           more;
    char          key[PG_STORE_PREFIX_MAX + 16], why[600], text[160];
    char          from[80];
    size_t        i, n;
    json_t       *all, *entry;
    pgd_http_t   *h;
    redisReply   *reply, *item;

    h = d->http;

    /* a store that went back (restored, initialised again) has another
     * audit: read it all */
    more = h->audit != NULL && h->audit_id[0] != '\0'
           && d->store_revision >= h->audit_rev;

    h->audit_at = now;
    h->audit_rev = d->store_revision;

    snprintf(key, sizeof(key), "%s%s", d->conf.prefix, PG_STORE_KEY_AUDIT);
    snprintf(from, sizeof(from), "(%s", h->audit_id);

    reply = redisCommand(d->cmd, "XREVRANGE %s + %s COUNT %d", key,
                         more ? from : "-", PGD_HTTP_AUDIT_COUNT);

    if (reply == NULL) {
        if (pg_redis_timed_out(d->cmd, NULL)) {
            snprintf(why, sizeof(why), "%s: %s", d->where,
                     pg_redis_strerror(d->cmd, text, sizeof(text)));
        } else {
            snprintf(why, sizeof(why), "%s: %s", d->where, d->cmd->errstr);
        }

        snprintf(h->audit_error, sizeof(h->audit_error), "%.200s", why);
        pgd_redis_down(d, why);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY) {
        snprintf(h->audit_error, sizeof(h->audit_error), "XREVRANGE %s: %s",
                 key, reply->type == REDIS_REPLY_ERROR ? reply->str
                                                       : "not an array");
        freeReplyObject(reply);
        return;
    }

    all = json_array();

    for (i = 0; all != NULL && i < reply->elements; i++) {
        item = reply->element[i];

        if (item->type != REDIS_REPLY_ARRAY || item->elements != 2
            || item->element[0]->type != REDIS_REPLY_STRING
            || item->element[1]->type != REDIS_REPLY_ARRAY)
        {
            continue;
        }

        entry = pgd_http_audit_entry(item);

        if (entry == NULL || json_array_append_new(all, entry) != 0) {
            json_decref(all);
            all = NULL;
            break;
        }

        if (json_array_size(all) == 1) {
            snprintf(h->audit_id, sizeof(h->audit_id), "%s",
                     item->element[0]->str);
        }
    }

    pgd_log(d, PG_LOG_DEBUG, "audit: %zu entries read (%s)",
            reply->elements, more ? "after the newest held" : "the newest");
    freeReplyObject(reply);

    if (all == NULL) {
        snprintf(h->audit_error, sizeof(h->audit_error), "out of memory");
        return;
    }

    if (!more && json_array_size(all) == 0) {
        h->audit_id[0] = '\0';
    }

    /* the ones held follow the new ones, up to the count */
    if (more) {
        n = json_array_size(h->audit);

        for (i = 0; i < n && json_array_size(all) < PGD_HTTP_AUDIT_COUNT;
             i++)
        {
            json_array_append(all, json_array_get(h->audit, i));
        }
    }

    json_decref(h->audit);
    h->audit = all;
    h->audit_error[0] = '\0';
}


/* One part of a change, "rollout 10% -> 25%", after the others. */
static void
pgd_http_part(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
pgd_http_part(char *buf, size_t size, const char *fmt, ...)
{
    size_t   len;
    va_list  args;

    len = strlen(buf);

    if (len + 3 >= size) {
        return;
    }

    if (len > 0) {
        memcpy(buf + len, ", ", 3);
        len += 2;
    }

    va_start(args, fmt);
    vsnprintf(buf + len, size - len, fmt, args);
    va_end(args);
}


/* The flag's field as text for a change: "true", "12.5%", "none". */
static void
pgd_http_value(const json_t *flag, const char *name, char *buf, size_t size)
{
    const json_t  *v;

    v = json_object_get(flag, name);

    if (strcmp(name, "enabled") == 0) {
        snprintf(buf, size, "%s", json_is_false(v) ? "false" : "true");

    } else if (strcmp(name, "rollout") == 0) {
        snprintf(buf, size, "%g%%", json_is_number(v)
                 ? json_number_value(v) : 0.0);

    } else if (json_is_array(v)) {
        snprintf(buf, size, "%zu", json_array_size(v));

    } else if (json_is_string(v)) {
        snprintf(buf, size, "%.60s", json_string_value(v));

    } else {
        snprintf(buf, size, "%s", strcmp(name, "allow") == 0
                 || strcmp(name, "deny") == 0 ? "0" : "none");
    }
}


/* Equal, both absent included (json_equal() says 0 for NULLs). */
static int
pgd_http_same(const json_t *a, const json_t *b)
{
    return (a == NULL && b == NULL) || json_equal((json_t *) a, (json_t *) b);
}


/* What an audit entry changed, in a few words. */
static void
pgd_http_change(const char *action, const char *before, const char *after,
    char *buf, size_t size)
{
    char           a[96], b[96];
    size_t         i;
    json_t        *jb, *ja;
    const char    *name;

    static const char  *const fields[] = {
        "enabled", "rollout", "allow", "deny", "requires", "salt",
        "description", NULL
    };

    buf[0] = '\0';

    if (strcmp(action, "revision") == 0) {
        snprintf(buf, size, "revision %.30s -> %.30s", before, after);
        return;
    }

    if (strcmp(action, "env") == 0 || strcmp(action, "release") == 0
        || strcmp(action, "init") == 0)
    {
        snprintf(buf, size, "%s", strcmp(action, "env") == 0
                 ? "environment added" : strcmp(action, "init") == 0
                 ? "store initialised" : "kill overrides released");
        return;
    }

    if (strlen(before) > PGD_HTTP_DIFF_MAX
        || strlen(after) > PGD_HTTP_DIFF_MAX)
    {
        snprintf(buf, size, "(too large to sum up: portal-gatectl audit)");
        return;
    }

    jb = before[0] ? json_loads(before, 0, NULL) : NULL;
    ja = after[0] ? json_loads(after, 0, NULL) : NULL;

    if (jb == NULL && json_is_object(ja)) {
        snprintf(buf, size, "created");
    } else if (ja == NULL && json_is_object(jb)) {
        snprintf(buf, size, "deleted");
    }

    if (buf[0] == '\0' && json_is_object(jb) && json_is_object(ja)) {
        /* every changed field, in this order */
        for (i = 0; fields[i] != NULL; i++) {
            name = fields[i];
            pgd_http_value(jb, name, b, sizeof(b));
            pgd_http_value(ja, name, a, sizeof(a));

            if (strcmp(name, "description") == 0) {
                if (!pgd_http_same(json_object_get(jb, name),
                                   json_object_get(ja, name)))
                {
                    pgd_http_part(buf, size, "description changed");
                }

            } else if (strcmp(a, b) != 0
                       || ((strcmp(name, "allow") == 0
                            || strcmp(name, "deny") == 0)
                           && !pgd_http_same(json_object_get(jb, name),
                                             json_object_get(ja, name))))
            {
                pgd_http_part(buf, size, "%s %s -> %s", name, b, a);
            }
        }

        if (buf[0] == '\0') {
            snprintf(buf, size, "no change");
        }
    }

    json_decref(jb);
    json_decref(ja);
}


/* --- answers ------------------------------------------------------------ */

/*
 * MHD calls this at a request's head (*con_cls NULL), then once per piece
 * of its body, then with none left. A GET or HEAD without a body is
 * answered at that last call: libmicrohttpd 0.9.75 closes the connection
 * after an answer queued at the head ("refuse to read body or further
 * requests"), which would make every keep-alive client (Prometheus, the
 * page) connect again for each request. Anything else is answered at the
 * head, and then closed: its body is never read.
 */
static enum MHD_Result
pgd_http_answer(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
    const char  *length;

    static int   head_seen;             /* its address marks a request
                                           whose head was seen */

    if (*con_cls == NULL) {
        pgd_http_conn_busy(c);

        length = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                             MHD_HTTP_HEADER_CONTENT_LENGTH);

        if ((strcmp(method, MHD_HTTP_METHOD_GET) != 0
             && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
            || (length != NULL && strcmp(length, "0") != 0)
            || MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                    MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL)
        {
            return pgd_http_route(cls, c, url, method);
        }

        *con_cls = &head_seen;
        return MHD_YES;
    }

    return pgd_http_route(cls, c, url, method);
}


/* The answer to a request, by its method and path. */
static enum MHD_Result
pgd_http_route(pgd_t *d, struct MHD_Connection *c, const char *url,
    const char *method)
{
    int                    code;
    char                  *text, host[128], why[300];
    size_t                 len;
    json_t                *doc;
    pgd_http_t            *h;
    struct MHD_Response   *r;

    h = d->http;

    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0
        && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    {
        doc = json_pack("{s:s}", "error", "read-only: GET and HEAD only");
        return pgd_http_send_json(c, MHD_HTTP_METHOD_NOT_ALLOWED, doc);
    }

    /* everything but /metrics and /healthz shows the store: read by a
     * name of the operator's alone */
    if (strcmp(url, "/metrics") != 0 && strcmp(url, "/healthz") != 0
        && !pgd_http_host_ok(d, c, host, sizeof(host)))
    {
        pgd_http_log(d, PG_LOG_NOTICE, "http: %s refused: Host \"%s\" is not "
                     "localhost, an IP literal or a server_name", url, host);
        snprintf(why, sizeof(why), "Host \"%s\" is not a name of this "
                 "endpoint: localhost, an IP literal, or a server_name of "
                 "portal-gated.conf (a DNS-rebinding guard)", host);
        doc = json_pack("{s:s}", "error", why);
        return pgd_http_send_json(c, MHD_HTTP_MISDIRECTED_REQUEST, doc);
    }

    if (strcmp(url, "/metrics") == 0) {
        text = pgd_http_metrics(d, &len);
        return pgd_http_send(c, text ? MHD_HTTP_OK
                                     : MHD_HTTP_INTERNAL_SERVER_ERROR,
                             "text/plain; version=0.0.4; charset=utf-8",
                             text ? text : (char *) "out of memory\n",
                             text ? len : 14, text ? MHD_RESPMEM_MUST_FREE
                                                   : MHD_RESPMEM_PERSISTENT,
                             NULL);
    }

    if (strcmp(url, "/healthz") == 0) {
        doc = pgd_http_health(d, &code);
        return pgd_http_send_json(c, (unsigned) code, doc);
    }

    if (strcmp(url, "/status.json") == 0) {
        r = pgd_http_status_response(d);

        if (r == NULL) {
            return pgd_http_send_json(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                      NULL);
        }

        return MHD_queue_response(c, MHD_HTTP_OK, r);
    }

    if (strcmp(url, "/") == 0) {
        return pgd_http_send(c, MHD_HTTP_OK, "text/html; charset=utf-8",
                             (char *) pgd_http_page,
                             (size_t) (pgd_http_page_end - pgd_http_page),
                             MHD_RESPMEM_PERSISTENT, h->csp);
    }

    doc = json_pack("{s:s}", "error", "not found: /, /status.json, "
                    "/metrics, /healthz");
    return pgd_http_send_json(c, MHD_HTTP_NOT_FOUND, doc);
}


/*
 * The Host of a request for the page or /status.json: localhost, an IP
 * literal, or a server_name line's name. They show the store (flags,
 * companies' counts, the audit's actors and reasons), and a DNS-rebinding
 * page in an operator's browser (evil.example resolving to 127.0.0.1 after
 * its page loaded) would read them as same-origin: its requests carry its
 * own name. A literal cannot be rebound, localhost is not looked up in DNS
 * by browsers, and the operator's names are the operator's. The port is
 * not checked: a tunnel (ssh -L 8080:127.0.0.1:9145) or a proxy changes
 * it. No Host at all (HTTP/1.0) is no browser's request: answered. host:
 * the Host, cleaned, for the refusal.
 */
static int
pgd_http_host_ok(pgd_t *d, struct MHD_Connection *c, char *host, size_t size)
{
    char           name[PG_CONF_HOST_MAX + 2];
    size_t         len, i, n;
    const char    *v, *end, *suffix;
    unsigned char  bin[16];

    v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);

    if (v == NULL) {
        return 1;
    }

    pgd_http_clean(v, host, size);

    if (v[0] == '[') {
        end = strchr(v, ']');
        len = end ? (size_t) (end - v - 1) : 0;

        if (len == 0 || len >= sizeof(name)) {
            return 0;
        }

        memcpy(name, v + 1, len);
        name[len] = '\0';

        return inet_pton(AF_INET6, name, bin) == 1;
    }

    end = strchr(v, ':');
    len = end ? (size_t) (end - v) : strlen(v);

    if (len > 0 && v[len - 1] == '.') {
        len--;                          /* example.com. is example.com */
    }

    if (len == 0 || len >= sizeof(name)) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        name[i] = (char) (v[i] >= 'A' && v[i] <= 'Z' ? v[i] - 'A' + 'a'
                                                     : v[i]);
    }

    name[len] = '\0';

    if (strcmp(name, "localhost") == 0 || inet_pton(AF_INET, name, bin) == 1)
    {
        return 1;
    }

    for (i = 0; i < d->conf.nserver_names; i++) {
        if (strcmp(name, d->conf.server_names[i]) == 0) {
            return 1;
        }

        /* *.example.com: a name under example.com, not example.com */
        if (strncmp(d->conf.server_names[i], "*.", 2) == 0) {
            suffix = d->conf.server_names[i] + 1;
            n = strlen(suffix);

            if (len > n && strcmp(name + len - n, suffix) == 0) {
                return 1;
            }
        }
    }

    return 0;
}


/*
 * /status.json as a response shared by every asker (borrowed: h->status
 * holds the reference, MHD_queue_response() takes its own): rendered again
 * when the store or the snapshot moved on, or when older than
 * PGD_HTTP_STATUS_MS. The audit is read here, when asked, at most once a
 * revision. NULL out of memory.
 */
static struct MHD_Response *
pgd_http_status_response(pgd_t *d)
{
    char                 *text;
    double                now;
    json_t               *doc;
    int64_t               snap;
    pgd_http_t           *h;
    struct MHD_Response  *r;

    h = d->http;
    now = pgd_now();
    snap = d->body ? d->body->revision : -1;

    if (h->status != NULL && h->status_rev == d->store_revision
        && h->status_snap == snap && now - h->status_at < PGD_HTTP_STATUS_MS)
    {
        return h->status;
    }

    if (d->cmd != NULL
        && (h->audit == NULL || h->audit_rev != d->store_revision
            || now - h->audit_at >= PGD_HTTP_AUDIT_EVERY))
    {
        pgd_http_audit(d, now);
    }

    doc = pgd_http_status(d);
    text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);

    if (text == NULL) {
        return NULL;
    }

    r = MHD_create_response_from_buffer(strlen(text), text,
                                        MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(text);
        return NULL;
    }

    pgd_http_headers(r, MHD_HTTP_OK, "application/json", NULL);

    if (h->status) {
        MHD_destroy_response(h->status);
    }

    h->status = r;
    h->status_at = now;
    h->status_rev = d->store_revision;
    h->status_snap = snap;
    h->renders++;

    pgd_log(d, PG_LOG_DEBUG, "http: /status.json rendered (%zu bytes, "
            "rendering %llu)", strlen(text), (unsigned long long) h->renders);

    return r;
}


/* doc (stolen) as the answer; a NULL doc (out of memory) is a 500. */
static enum MHD_Result
pgd_http_send_json(struct MHD_Connection *c, unsigned code, json_t *doc)
{
    char  *text;

    text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);

    if (text == NULL) {
        return pgd_http_send(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                             "application/json",
                             (char *) "{\"error\":\"out of memory\"}", 25,
                             MHD_RESPMEM_PERSISTENT, NULL);
    }

    return pgd_http_send(c, code, "application/json", text, strlen(text),
                         MHD_RESPMEM_MUST_FREE, NULL);
}


/*
 * body as the answer. With MHD_RESPMEM_MUST_FREE, body is stolen: freed by
 * MHD after the answer, or here when the response cannot be made.
 */
static enum MHD_Result
pgd_http_send(struct MHD_Connection *c, unsigned code, const char *type,
    char *body, size_t len, enum MHD_ResponseMemoryMode mode,
    const char *csp)
{
    enum MHD_Result       rc;
    struct MHD_Response  *r;

    r = MHD_create_response_from_buffer(len, body, mode);

    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE) {
            free(body);
        }
        return MHD_NO;
    }

    pgd_http_headers(r, code, type, csp);
    rc = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);

    return rc;
}


/* The headers every answer carries, and the page's own (csp: NULL else). */
static void
pgd_http_headers(struct MHD_Response *r, unsigned code, const char *type,
    const char *csp)
{
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");

    if (code == MHD_HTTP_METHOD_NOT_ALLOWED) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    }

    if (csp != NULL) {
        MHD_add_response_header(r, "Content-Security-Policy", csp);
        MHD_add_response_header(r, "X-Frame-Options", "DENY");
        MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    }
}
