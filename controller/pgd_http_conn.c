/*
 * pgd_http_conn.c: the connections of portal-gated's HTTP endpoint, and
 * what clients make it log (see pgd_http.h for the endpoint).
 *
 * A client that connects and sends nothing, or a byte a second, must not
 * lock on-call out of /healthz and the page: that is when they are needed.
 * MHD alone would let it: its timeout counts from a connection's last byte
 * (a byte every 9 s keeps a slot forever), and at its connection limit it
 * stops accepting, so the next client waits in the listen backlog. Here:
 *
 *   - every connection has PGD_HTTP_REQUEST_S, from its connect or from
 *     its last answer, to send a whole request and read the answer; then
 *     it is closed, however many bytes it trickles meanwhile. That bounds
 *     a keep-alive connection left idle too.
 *   - when fewer than PGD_HTTP_SPARE slots are free, the connections that
 *     have waited longest for their request are closed (never one being
 *     answered), as nginx reuses idle keep-alive connections: a client
 *     that comes now is served at the next turn of the loop.
 *
 * No per-IP limit (MHD_OPTION_PER_IP_CONNECTION_LIMIT): on the loopback
 * listen that the examples use, every client is 127.0.0.1, and a limit
 * there would refuse on-call's curl beside whoever holds the connections.
 *
 * A connection is closed with shutdown(): MHD reads the end, closes it and
 * frees it (its own MHD_stop_daemon() closes connections the same way).
 * MHD offers no call that closes one connection.
 *
 * The log: a line per client event (MHD's messages, the connections closed
 * here) is at a rate that clients choose, so at most PGD_HTTP_LOG_BURST
 * such lines per PGD_HTTP_LOG_WINDOW_MS; the rest are counted, and said in
 * one line once the window is over (and at exit).
 *
 * Ownership: a pgd_http_conn_t is made by MHD's "started" notification and
 * freed by its "closed" one; h->conns lists them. All on the loop's thread.
 */

#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* vsnprintf */
#include <stdlib.h>             /* calloc, free */
#include <string.h>             /* strlen */
#include <arpa/inet.h>          /* inet_ntop */
#include <netinet/in.h>         /* sockaddr_in, sockaddr_in6 */
#include <sys/socket.h>         /* shutdown */
#include <microhttpd.h>         /* MHD_* */
#include "pgd_http_private.h"   /* pgd_http_t, the API it implements */


static void pgd_http_conn_close(pgd_t *d, pgd_http_conn_t *conn,
    const char *why);
static pgd_http_conn_t *pgd_http_conn_victim(pgd_http_t *h, double now);


/*
 * MHD_OPTION_NOTIFY_CONNECTION: a connection accepted (its record made) or
 * closed (freed). Out of memory, a connection has no record: it is served,
 * and only MHD's own idle timeout closes it.
 */
void
pgd_http_conn_notify(void *cls, struct MHD_Connection *c, void **ctx,
    enum MHD_ConnectionNotificationCode code)
{
    pgd_t                         *d;
    pgd_http_t                    *h;
    pgd_http_conn_t               *conn;
    const union MHD_ConnectionInfo *info;

    d = cls;
    h = d->http;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn = calloc(1, sizeof(pgd_http_conn_t));
        *ctx = conn;

        if (conn == NULL) {
            return;
        }

        conn->since = pgd_now();
        conn->born = conn->since;
        conn->fd = -1;

        info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (info != NULL) {
            conn->fd = info->connect_fd;
        }

        info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (info != NULL && info->client_addr != NULL) {
            if (info->client_addr->sa_family == AF_INET6) {
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)
                                      info->client_addr)->sin6_addr,
                          conn->peer, sizeof(conn->peer));
            } else {
                inet_ntop(AF_INET, &((struct sockaddr_in *)
                                     info->client_addr)->sin_addr,
                          conn->peer, sizeof(conn->peer));
            }
        }

        conn->next = h->conns;
        if (h->conns) {
            h->conns->prev = conn;
        }
        h->conns = conn;
        h->nconns++;

        return;
    }

    conn = *ctx;
    if (conn == NULL) {
        return;
    }

    if (conn->prev) {
        conn->prev->next = conn->next;
    } else {
        h->conns = conn->next;
    }
    if (conn->next) {
        conn->next->prev = conn->prev;
    }

    if (!conn->closing) {
        h->nconns--;
    }

    free(conn);
    *ctx = NULL;
}


/* The connection's record; NULL when it has none. */
static pgd_http_conn_t *
pgd_http_conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo  *info;

    info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return info ? info->socket_context : NULL;
}


void
pgd_http_conn_busy(struct MHD_Connection *c)
{
    pgd_http_conn_t  *conn;

    conn = pgd_http_conn_of(c);
    if (conn != NULL) {
        conn->busy = 1;
    }
}


/* MHD_OPTION_NOTIFY_COMPLETED: an answer sent (or given up): the
 * connection's time for its next request starts now. */
void
pgd_http_conn_done(void *cls, struct MHD_Connection *c, void **req,
    enum MHD_RequestTerminationCode code)
{
    pgd_http_conn_t  *conn;

    conn = pgd_http_conn_of(c);
    if (conn != NULL) {
        conn->busy = 0;
        conn->since = pgd_now();

        /* a client that pipelines without end would otherwise restart
         * its time at every answer and keep its slot for ever */
        if (++conn->answered >= PGD_HTTP_ANSWERS && !conn->closing) {
            pgd_http_conn_close(cls, conn, "had its answers");
        }
    }
}


/*
 * The connection to close when the slots run short: the one that has
 * waited longest for its request, else the one that has held its slot
 * longest, answered or not (a client keeping every old slot busy must not
 * lock on-call out). Never a newcomer in its first PGD_HTTP_GRACE_MS
 * without an answer: MHD reads a connection it accepted only at its next
 * run, after the sweep. NULL: only newcomers.
 */
static pgd_http_conn_t *
pgd_http_conn_victim(pgd_http_t *h, double now)
{
    pgd_http_conn_t  *conn, *waited, *held;

    waited = NULL;
    held = NULL;

    for (conn = h->conns; conn != NULL; conn = conn->next) {
        if (conn->closing
            || (conn->answered == 0 && now - conn->born < PGD_HTTP_GRACE_MS))
        {
            continue;
        }

        if (!conn->busy && (waited == NULL || conn->since < waited->since)) {
            waited = conn;
        }

        if (held == NULL || conn->born < held->born) {
            held = conn;
        }
    }

    return waited ? waited : held;
}


/*
 * Before MHD runs: a connection past its time is closed; then, while fewer
 * than PGD_HTTP_SPARE slots are free, pgd_http_conn_victim()'s. Runs at
 * every turn of the loop (the loop wakes for the first deadline:
 * pgd_http_conn_wait_ms()).
 */
void
pgd_http_conn_sweep(pgd_t *d, double now)
{
    pgd_http_t       *h;
    pgd_http_conn_t  *conn, *oldest;

    h = d->http;

    for (conn = h->conns; conn != NULL; conn = conn->next) {
        if (!conn->closing
            && now - conn->since >= PGD_HTTP_REQUEST_S * 1000.0)
        {
            pgd_http_conn_close(d, conn, conn->busy
                                ? "had not read its answer"
                                : "had sent no whole request");
        }
    }

    while (h->nconns > PGD_HTTP_CONNECTIONS - PGD_HTTP_SPARE) {
        oldest = pgd_http_conn_victim(h, now);

        if (oldest == NULL) {
            break;                      /* only newcomers: their turn */
        }

        pgd_http_conn_close(d, oldest, oldest->busy
                            ? "held its slot longest, and the slots run short"
                            : "waited longest for its request, and the "
                              "slots run short");
    }
}


/* ms until the first deadline: a connection's time up, or, with the
 * slots short, a newcomer's grace over (0: a sweep is owed now: the slots
 * run short and one can be closed); -1 when there is none. Slots short
 * with only newcomers owe nothing before their grace ends: the loop must
 * not spin on them. */
long
pgd_http_conn_wait_ms(pgd_t *d, double now)
{
    int               short_;
    double            first, at, left;
    pgd_http_t       *h;
    pgd_http_conn_t  *conn;

    h = d->http;
    first = -1;
    short_ = h->nconns > PGD_HTTP_CONNECTIONS - PGD_HTTP_SPARE;

    if (short_ && pgd_http_conn_victim(h, now) != NULL) {
        return 0;
    }

    for (conn = h->conns; conn != NULL; conn = conn->next) {
        if (conn->closing) {
            continue;
        }

        at = conn->since + PGD_HTTP_REQUEST_S * 1000.0;

        if (short_ && conn->answered == 0) {
            at = conn->born + PGD_HTTP_GRACE_MS < at
                 ? conn->born + PGD_HTTP_GRACE_MS : at;
        }

        if (first < 0 || at < first) {
            first = at;
        }
    }

    if (first < 0) {
        return -1;
    }

    left = first - now;

    return left <= 0 ? 0 : (long) left + 1;
}


static void
pgd_http_conn_close(pgd_t *d, pgd_http_conn_t *conn, const char *why)
{
    double  held;

    held = (pgd_now() - conn->since) / 1000;
    conn->closing = 1;
    d->http->nconns--;

    if (conn->fd >= 0) {
        (void) shutdown(conn->fd, SHUT_RDWR);
    }

    pgd_http_log(d, PG_LOG_INFO, "http: closed a connection from %s: it %s "
                 "(%.1f s)", conn->peer[0] ? conn->peer : "?", why, held);
}


/* --- the log ------------------------------------------------------------ */

/* A window over: the lines it did not log are said (each turn of the loop
 * asks, so the count is said even when no more lines come). */
void
pgd_http_log_window(pgd_t *d, double now)
{
    pgd_http_t  *h;

    h = d->http;

    if (now - h->log_window < PGD_HTTP_LOG_WINDOW_MS) {
        return;
    }

    if (h->log_dropped > 0) {
        pgd_log(d, PG_LOG_NOTICE, "http: %u more lines like these were not "
                "logged in %d s", h->log_dropped,
                PGD_HTTP_LOG_WINDOW_MS / 1000);
    }

    h->log_window = now;
    h->log_lines = 0;
    h->log_dropped = 0;
}


void
pgd_http_log(pgd_t *d, int level, const char *fmt, ...)
{
    char         msg[512];
    double       now;
    va_list      args;
    pgd_http_t  *h;

    h = d->http;
    now = pgd_now();

    pgd_http_log_window(d, now);

    if (h->log_lines >= PGD_HTTP_LOG_BURST) {
        h->log_dropped++;
        return;
    }

    h->log_lines++;

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    pgd_log(d, level, "%s", msg);
}


/* MHD's own messages ("Maximum number of connections reached", a client's
 * protocol error): info, they are no fault of the daemon's; limited, a
 * client decides how many there are. */
void
pgd_http_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char    msg[512];
    size_t  len;

    vsnprintf(msg, sizeof(msg), fmt, ap);

    len = strlen(msg);
    if (len > 0 && msg[len - 1] == '\n') {
        msg[len - 1] = '\0';            /* MHD's end each with one */
    }

    pgd_http_log(cls, PG_LOG_INFO, "http: %s", msg);
}
