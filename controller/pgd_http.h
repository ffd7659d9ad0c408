/*
 * pgd_http.h: portal-gated's own HTTP endpoint, `listen ADDR:PORT;`
 * (DESIGN.md, "Observability"; README, "Metrics and health"):
 *
 *   GET /metrics       Prometheus text format 0.0.4 (pgd_http_render.c)
 *   GET /healthz       JSON {"status": ...}; 200, or 503 when changes
 *                      cannot reach the edges (the rules: pgd_http_health)
 *   GET /status.json   everything the status page shows
 *   GET /              the status page for on-call (pgd_http_page.html,
 *                      built into the binary), which polls /status.json
 *
 * Read-only: GET and HEAD only (405 otherwise), no request body is read.
 * Connections (pgd_http_conn.c): keep-alive as the client asks (HTTP/1.1
 * by default, `Connection: close` and HTTP/1.0 close after the answer); at
 * most PGD_HTTP_CONNECTIONS at once; each has PGD_HTTP_REQUEST_S from its
 * connect or its last answer to send a whole request and read the answer;
 * when fewer than PGD_HTTP_SPARE slots are free, those that have waited
 * longest for their request are closed, so that idle or trickling clients
 * never lock on-call out.
 *
 * Host check: / and /status.json answer only a Host that is localhost, an
 * IP literal, or a server_name of the config (421 otherwise), so that a
 * DNS-rebinding page in an operator's browser cannot read them through a
 * name of its own that resolves to the listen address. /metrics and
 * /healthz answer any Host: Prometheus and probes ask by whatever name.
 *
 * Threading and ownership: there is no HTTP thread. libmicrohttpd runs
 * inside the daemon's one loop (MHD_USE_EPOLL without an internal thread):
 * pgd_http_wait() adds MHD's one epoll fd to the loop's curl_multi_poll()
 * and shortens its timeout to MHD's; pgd_http_run(), at the end of each
 * turn of the loop, lets MHD accept, read and answer. An answer is
 * rendered there, on the loop's thread, straight from pgd_t: no lock, no
 * copy of the daemon's state, nothing rendered when nobody asks (a change
 * costs the endpoint nothing). A turn that read a change message, owes a
 * whole read, or finds a message waiting skips MHD: the change is pushed
 * first, so a kill never waits for an HTTP answer, and an answer waits at
 * most one turn of the loop. /status.json, the one costly answer (about
 * 130 bytes a flag), is rendered at most once per PGD_HTTP_STATUS_MS and
 * revision, and that one response serves every asker. Sockets are
 * non-blocking: a slow or stuck client costs a connection slot, never
 * the loop.
 *
 * What it keeps of its own (pgd_http_t, owned by d->http, freed by
 * pgd_http_stop()): the MHD daemon and its listen socket, the pushes
 * counted per edge (pgd_http_done(), from pgd_done()), when each edge went
 * out of step, the last /status.json, and the last audit entries summed
 * up, read from Redis when /status.json is asked (after the first read,
 * only the entries not held yet).
 *
 * Errors: pgd_http_start() says why in the log and returns PG_ERR (the
 * daemon does not start: a listen line that cannot be bound is as fatal
 * as nginx's); a SIGHUP that cannot bind a changed listen keeps the old
 * one and says so (on the old one's port, the old one is closed to try the
 * new one, and bound again when that fails too).
 */

#ifndef PGD_HTTP_H
#define PGD_HTTP_H

#include <curl/curl.h>          /* struct curl_waitfd, CURLcode */
#include "pgd.h"                /* pgd_t, pgd_edge_t */


#define PGD_HTTP_CONNECTIONS  64        /* at once; more wait in the
                                           listen backlog */
#define PGD_HTTP_SPARE        8         /* slots kept free: beyond
                                           CONNECTIONS - SPARE, those that
                                           waited longest are closed */
#define PGD_HTTP_REQUEST_S    10        /* s from a connect or an answer to
                                           a whole request and its answer */
#define PGD_HTTP_ANSWERS      100       /* answers on one connection, then
                                           it is closed (nginx's
                                           keepalive_requests) */
#define PGD_HTTP_GRACE_MS     1000      /* a new connection is not closed
                                           to make room before it had
                                           this long to be read */
#define PGD_HTTP_AUDIT_COUNT  20        /* audit entries the page shows */


/* At start, before the loop: allocate d->http, and bind when the config
 * has a listen line. PG_ERR said in the log. */
int pgd_http_start(pgd_t *d);

/* After SIGHUP's new d->conf: a listen line added, changed or removed is
 * bound, rebound or closed (the old one stays, or is bound again, when the
 * new one cannot be bound); counters of edges no longer configured are
 * dropped. */
void pgd_http_configure(pgd_t *d);

/* Before the loop waits: fills *fd with MHD's epoll fd and returns 1 (0
 * when there is no endpoint), and lowers *timeout_ms to MHD's. */
int pgd_http_wait(pgd_t *d, struct curl_waitfd *fd, long *timeout_ms);

/* At the end of each turn of the loop: what is seen of the edges, then
 * the HTTP requests, unless a change is to be pushed first: changes is
 * what pgd_redis_read() returned this turn (0 when it did not run). */
void pgd_http_run(pgd_t *d, int changes);

/* A request of e is done (pgd_done(), before it reads the answer): a push
 * is counted, by result, with its duration. */
void pgd_http_done(pgd_t *d, pgd_edge_t *e, CURLcode code);

/* At exit: closes the endpoint and frees d->http. */
void pgd_http_stop(pgd_t *d);

#endif /* PGD_HTTP_H */
