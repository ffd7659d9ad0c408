/*
 * portal-gated: keeps every edge's snapshot in step with the store in
 * Redis (DESIGN.md, "The controller").
 *
 *   portal-gated [-t] [-d] [-c FILE]      FILE: -c, $PORTAL_GATE_CONF, or
 *                                         /etc/portal-gate/portal-gated.conf
 *   portal-gated --version
 *
 * One thread, one loop (pgd_run): curl_multi_poll() waits on the edges'
 * requests, the pub/sub connection and a self-pipe for signals, and wakes
 * for the reconcile tick. Nothing else in it waits on an edge. What it
 * does:
 *
 *   - it SUBSCRIBEs to the change channel first, then reads the whole store
 *     in one MULTI/EXEC (pg_store_snapshot), so no change slips between the
 *     two; a change message makes it read again (pgd_redis.c, pgd_store.c):
 *     only the flags that the store's change log says changed since what
 *     it read (a delta; the message's text is not trusted), the whole
 *     store when the log cannot say. It reads the environments of its
 *     config and those the store records (`portal-gatectl env add`);
 *   - it PUTs the snapshot to every edge at once (one curl multi handle), so
 *     an edge that is slow, down or hung never holds back the others
 *     (pgd_edges.c); after a delta, an edge known to hold what it took
 *     from this daemon gets a PATCH of the flags that changed instead;
 *   - every reconcile_interval it asks Redis for its revision and each edge
 *     for its own, and pushes where they differ: a missed message or a
 *     restarted edge heals on its own; a SIGHUP never puts the tick off;
 *   - it never pushes an uninitialised store (no marker) and never empties
 *     an edge because Redis is down: the edges keep the last good snapshot;
 *   - whatever the store holds (a value that is not valid, too many flags,
 *     a requires of a missing flag, a cycle), the flags that cannot be
 *     pushed as they are keep their last good version or are held back,
 *     each said once, while every other change goes through, a kill above
 *     all (pgd_compose.c);
 *   - an edge that answers 409 with a revision above the store's (a store
 *     restored from an older backup) makes it raise the store's revision
 *     above the edge's and push again; an edge pinned too high for that
 *     gets the snapshot with ?force=1;
 *   - Redis down: it reconnects with a backoff capped at 5 s, with jitter,
 *     and says so once when Redis goes and once when it comes back;
 *   - at every tick it beats in Redis (pgd_beat.c), with what it last saw
 *     of the store and of each edge, so that `portal-gatectl status` can
 *     tell it alive from any host; a clean exit removes the beat;
 *   - an edge that lists kill overrides (the break-glass kill) is said at
 *     warn, once: it serves those flags off whatever the store says.
 *
 * Signals only set a flag and write a byte to the self-pipe: SIGTERM and
 * SIGINT end the loop, SIGHUP re-reads the config file, SIGUSR1 reopens
 * the error_log file.
 *
 * Logs: one line per event, on stderr, or in the config's error_log file
 * once started (syslog with -d, a terminal and no error_log):
 * "2026/11/25 14:03:07.123 [notice] 4711: ...", or "<5>[notice] ..." when
 * stderr is systemd's journal. The log file, the pid file, -d and the
 * journal: pgd_files.c.
 *
 * Ownership: see pgd.h.
 */

#include <errno.h>              /* errno, EINTR */
#include <fcntl.h>              /* fcntl, O_NONBLOCK */
#include <signal.h>             /* sigaction */
#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* fprintf, snprintf */
#include <stdlib.h>             /* calloc, free, srand, realpath,
                                   getenv */
#include <string.h>             /* strcmp, strerror */
#include <syslog.h>             /* syslog: -d without a stderr */
#include <time.h>               /* clock_gettime, localtime_r */
#include <unistd.h>             /* getpid, access, read, usleep */
#include "pg_curl.h"            /* pg_curl: libcurl, loaded at start */
#include "pgd.h"                /* pgd_t, and the daemon's other files */
#include "pgd_files.h"          /* error_log, pid, -d, the journal */
#include "pgd_http.h"           /* listen: /metrics, /healthz, the page */


static volatile sig_atomic_t  pgd_signal_quit;
static volatile sig_atomic_t  pgd_signal_hup;
static volatile sig_atomic_t  pgd_signal_usr1;
static int                    pgd_signal_fd = -1;
static sigset_t               pgd_signal_set;   /* TERM, INT, HUP, USR1:
                                                   let through only while
                                                   the loop waits */


static void pgd_on_signal(int signo);
static void pgd_edge_carry(pgd_edge_t *e, pgd_edge_t *old);
static int pgd_signals(pgd_t *d);
static void pgd_usage(FILE *out);
static int pgd_usage_error(const char *what, const char *arg);
static int pgd_check_conf(const char *path, pg_conf_t *conf,
    pg_error_t *err);
static void pgd_reconfigure(pgd_t *d);
static int pgd_run(pgd_t *d);


static const char  *pgd_level_names[] = {
    "debug", "info", "notice", "warn", "error"
};

static const int  pgd_syslog_levels[] = {
    LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR
};


/* --- logging, time, signals ------------------------------------------- */

void
pgd_log_write(pgd_t *d, int level, const char *fmt, ...)
{
    char             msg[1024], ts[32], *p;
    va_list          args;
    struct tm        tm;
    struct timespec  now;

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    /* one event, one line: an edge's or Redis' text may hold a newline */
    for (p = msg; *p; p++) {
        if ((unsigned char) *p < ' ') {
            *p = ' ';
        }
    }

    if (d->use_syslog) {
        syslog(pgd_syslog_levels[level], "%s", msg);
        return;
    }

    if (pgd_files_journal()) {
        fprintf(stderr, "<%d>[%s] %s\n", pgd_syslog_levels[level],
                pgd_level_names[level], msg);
        return;
    }

    clock_gettime(CLOCK_REALTIME, &now);
    localtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y/%m/%d %H:%M:%S", &tm);

    /* one write per line, so that lines never interleave */
    fprintf(stderr, "%s.%03ld [%s] %d: %s\n", ts, now.tv_nsec / 1000000,
            pgd_level_names[level], (int) getpid(), msg);
}


/* Milliseconds on the monotonic clock. */
double
pgd_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}


static void
pgd_on_signal(int signo)
{
    int  saved;

    if (signo == SIGHUP) {
        pgd_signal_hup = 1;
    } else if (signo == SIGUSR1) {
        pgd_signal_usr1 = 1;
    } else {
        pgd_signal_quit = signo;
    }

    /* wake the loop; a full pipe already will */
    saved = errno;
    if (write(pgd_signal_fd, "s", 1) < 0) {
        /* nothing to do */
    }
    errno = saved;
}


static int
pgd_signals(pgd_t *d)
{
    int               i;
    struct sigaction  sa;

    if (pipe(d->sigpipe) != 0) {
        return PG_ERR;
    }

    for (i = 0; i < 2; i++) {
        fcntl(d->sigpipe[i], F_SETFL, O_NONBLOCK);
        fcntl(d->sigpipe[i], F_SETFD, FD_CLOEXEC);
    }

    pgd_signal_fd = d->sigpipe[1];

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = pgd_on_signal;
    sigemptyset(&sa.sa_mask);

    if (sigaction(SIGTERM, &sa, NULL) != 0
        || sigaction(SIGINT, &sa, NULL) != 0
        || sigaction(SIGHUP, &sa, NULL) != 0
        || sigaction(SIGUSR1, &sa, NULL) != 0)
    {
        return PG_ERR;
    }

    /*
     * Delivered only while the loop waits (pgd_run()): a signal in the
     * middle of a Redis command made hiredis retry the read, its timeout
     * starting again (HUPs in a row froze the loop on a Redis that does
     * not answer), and one during a connect read as Redis unreachable. A
     * signal that comes while blocked waits, and the self-pipe wakes the
     * wait as soon as it is let through.
     */
    sigemptyset(&pgd_signal_set);
    sigaddset(&pgd_signal_set, SIGTERM);
    sigaddset(&pgd_signal_set, SIGINT);
    sigaddset(&pgd_signal_set, SIGHUP);
    sigaddset(&pgd_signal_set, SIGUSR1);

    if (sigprocmask(SIG_BLOCK, &pgd_signal_set, NULL) != 0) {
        return PG_ERR;
    }

    /* a write to a closed connection is an error, not a death */
    sa.sa_handler = SIG_IGN;

    return sigaction(SIGPIPE, &sa, NULL) == 0 ? PG_OK : PG_ERR;
}


/* --- start -------------------------------------------------------------- */

static void
pgd_usage(FILE *out)
{
    fprintf(out,
        "usage: portal-gated [-t] [-d] [-c FILE]\n"
        "       portal-gated --version\n"
        "\n"
        "Keeps the flag snapshot of every portal-gate edge in step with the\n"
        "store in Redis: pushes on every change, and reconciles every\n"
        "reconcile_interval. Runs in the foreground and logs to stderr.\n"
        "\n"
        "  -c FILE    the configuration file (default: $PORTAL_GATE_CONF,\n"
        "             else " PGD_CONF_DEFAULT ")\n"
        "  -t         check the configuration file and exit\n"
        "  -d         run in the background; logs go to the error_log file,\n"
        "             else to stderr if it is not a terminal, else to syslog\n"
        "  -h         this help\n"
        "  --version  print the version and exit\n"
        "\n"
        "Signals: TERM and INT stop it, HUP re-reads the configuration,\n"
        "USR1 reopens the error_log file.\n"
        "Exit status: 0 stopped cleanly or the configuration is good,\n"
        "1 the configuration is bad or it could not start, 2 usage error.\n");
}


/* A usage error: one line, and where to read more. Returns 2. */
static int
pgd_usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "portal-gated: %s \"%s\"; see 'portal-gated -h'\n",
            what, arg);

    return 2;
}


/* Read the config and check what the daemon needs beyond its grammar. */
static int
pgd_check_conf(const char *path, pg_conf_t *conf, pg_error_t *err)
{
    pg_conf_defaults(conf);

    if (pg_conf_load(path, conf, err) != PG_OK) {
        return PG_ERR;
    }

    /* a controller of certificates alone (the local CA) needs no edge */
    if (conf->nedges == 0 && conf->ncerts == 0) {
        snprintf(err->text, sizeof(err->text), "%s: no \"edge\" and no "
                 "\"certificate\": there is nothing to do", path);
        return PG_ERR;
    }

    return PG_OK;
}


int
main(int argc, char **argv)
{
    int          i, test, daemon, given, rc;
    char         why[PG_ERROR_LEN + 32];
    pgd_t       *d;
    pg_error_t   err;
    const char  *path;

    /* -c, else $PORTAL_GATE_CONF, else the packaged path */
    path = getenv(PGD_CONF_ENV);
    given = path != NULL && path[0] != '\0';
    path = given ? path : PGD_CONF_DEFAULT;
    test = 0;
    daemon = 0;

    for (i = 1; i < argc; i++) {

        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            pgd_usage(stdout);
            return 0;

        } else if (strcmp(argv[i], "--version") == 0) {
            printf("portal-gated %s\n", PG_VERSION);
            return 0;

        } else if (strcmp(argv[i], "-t") == 0) {
            test = 1;

        } else if (strcmp(argv[i], "-d") == 0) {
            daemon = 1;

        } else if (strcmp(argv[i], "-c") == 0) {
            if (i + 1 == argc) {
                return pgd_usage_error("no FILE after", argv[i]);
            }

            path = argv[++i];
            given = 1;

        } else if (argv[i][0] == '-') {
            return pgd_usage_error("unknown option", argv[i]);

        } else {
            return pgd_usage_error("unexpected argument", argv[i]);
        }
    }

    d = calloc(1, sizeof(pgd_t));
    if (d == NULL) {
        fprintf(stderr, "portal-gated: out of memory\n");
        return 1;
    }

    pgd_files_journal_check();

    d->made_revision = -1;
    d->verify = -1;

    if (pgd_check_conf(path, &d->conf, &err) != PG_OK) {
        fprintf(stderr, "portal-gated: %s%s\n", err.text,
                given || access(path, F_OK) == 0
                ? "" : " (give -c FILE, or set " PGD_CONF_ENV ")");
        if (test) {
            fprintf(stderr, "portal-gated: configuration file %s test "
                    "failed\n", path);
        }
        free(d);
        return 1;
    }

    if (test) {
        if (pgd_files_check(&d->conf, &err) != PG_OK) {
            fprintf(stderr, "portal-gated: %s\nportal-gated: configuration "
                    "file %s test failed\n", err.text, path);
            free(d);
            return 1;
        }

        fprintf(stderr, "portal-gated: the configuration file %s syntax is "
                "ok\nportal-gated: configuration file %s test is "
                "successful\n", path, path);
        free(d);
        return 0;
    }

    /* before -d: a libcurl that cannot be loaded is said on the terminal */
    if (pg_curl_load(&err) != PG_OK) {
        fprintf(stderr, "portal-gated: cannot start: %s\n", err.text);
        free(d);
        return 1;
    }

    /* SIGHUP reads it again, after -d has left the working folder */
    d->conf_path = realpath(path, NULL);
    if (d->conf_path == NULL) {
        fprintf(stderr, "portal-gated: %s: %s\n", path, strerror(errno));
        free(d);
        return 1;
    }

    /* before -d too: a log file that cannot be opened, a listen address
     * in use are said on the terminal (MHD runs no thread, so it forks
     * with the daemon) */
    if (pgd_files_open(&d->conf, &err) != PG_OK) {
        fprintf(stderr, "portal-gated: cannot start: %s\n", err.text);
        free(d->conf_path);
        free(d);
        return 1;
    }

    if (pgd_http_start(d) != PG_OK) {
        pgd_http_stop(d);
        free(d->conf_path);
        free(d);
        return 1;                           /* said */
    }

    if (daemon && pgd_files_daemonize(d) != PG_OK) {
        pgd_http_stop(d);
        free(d->conf_path);
        free(d);
        return 1;
    }

    /* the log goes to the error_log file from here on */
    pgd_files_log_start();

    setvbuf(stderr, NULL, _IOLBF, 0);
    srand((unsigned) getpid() ^ (unsigned) pgd_now());
    pgd_beat_start(d);
    why[0] = '\0';

    /* the pid file last: whoever reads it may signal at once (logrotate's
     * USR1), and the handlers are in place by then */
    if ((d->multi = pg_curl.multi_init()) == NULL) {
        snprintf(why, sizeof(why), "cannot start: libcurl failed to start");

    } else if (pgd_signals(d) != PG_OK || pgd_edges_set(d) != PG_OK
               || pgd_certs_start(d) != PG_OK)
    {
        snprintf(why, sizeof(why), "cannot start: %s", strerror(errno));

    } else if (pgd_files_pid(&d->conf, &err) != PG_OK) {
        snprintf(why, sizeof(why), "cannot start: %s", err.text);
    }

    if (why[0] != '\0') {
        pgd_log(d, PG_LOG_ERROR, "%s", why);
        pgd_files_started(why);
        rc = 1;

    } else {
        pgd_files_started(NULL);
        rc = pgd_run(d);
    }

    pgd_files_end();
    pgd_http_stop(d);
    pgd_redis_close(d);
    pgd_sentinel_close(d);
    pgd_edges_free(d);
    pgd_certs_stop(d);

    if (d->multi) {
        pg_curl.multi_cleanup(d->multi);
    }

    pgd_store_forget(d);
    json_decref(d->made);
    pg_curl_unload();

    if (d->use_syslog) {
        closelog();
    }

    free(d->conf_path);
    free(d);

    return rc;
}


/* --- the loop ----------------------------------------------------------- */

/* What is known of an edge that stays across a reload, from old (whose
 * references move) to e, a new entry for it; no request is in flight. */
static void
pgd_edge_carry(pgd_edge_t *e, pgd_edge_t *old)
{
    e->revision = old->revision;
    e->state = old->state;
    e->held = old->held;
    e->force = old->force;
    e->patch_ok = old->patch_ok;
    e->patch_again = old->patch_again;
    e->retried = old->retried;
    e->partial = old->partial;
    memcpy(e->said, old->said, sizeof(old->said));
    memcpy(e->error, old->error, sizeof(old->error));
    e->overrides = old->overrides;
    e->accepted = old->accepted;
    e->own = old->own;
    old->overrides = NULL;
    old->accepted = NULL;
    old->own = NULL;
}


/* SIGHUP: read the config again; a bad one changes nothing. */
static void
pgd_reconfigure(pgd_t *d)
{
    int          redis_changed, url_changed, same;
    double       now;
    size_t       i, j, nold;
    pg_conf_t   *conf;
    pg_error_t   err;
    pgd_edge_t  *old;

    conf = malloc(sizeof(pg_conf_t));
    if (conf == NULL) {
        pgd_log(d, PG_LOG_ERROR, "configuration not reloaded: out of memory");
        return;
    }

    if (pgd_check_conf(d->conf_path, conf, &err) != PG_OK
        || pgd_files_reconfigure(d, conf, &err) != PG_OK)
    {
        pgd_log(d, PG_LOG_ERROR, "configuration not reloaded, the old one "
                "stays: %s", err.text);
        free(conf);
        return;
    }

    url_changed = strcmp(conf->redis_url, d->conf.redis_url) != 0;
    redis_changed = url_changed
                    || strcmp(conf->prefix, d->conf.prefix) != 0
                    || conf->nenvs != d->conf.nenvs;

    for (i = 0; !redis_changed && i < conf->nenvs; i++) {
        redis_changed = strcmp(conf->envs[i], d->conf.envs[i]) != 0;
    }

    /*
     * An edge that stays keeps what is known of it (its revision: a reload
     * re-sends nothing it holds already; what the log said of it, so that
     * it is not said twice) and, when the edges are the same as before,
     * its request in flight too; new edges get the snapshot. Every edge is
     * asked its revision again.
     */
    old = d->edges;
    nold = d->nedges;
    same = conf->nedges == nold;

    for (i = 0; same && i < nold; i++) {
        same = strcmp(conf->edges[i].spec, old[i].edge.spec) == 0;
    }

    memcpy(&d->conf, conf, sizeof(pg_conf_t));
    free(conf);

    pgd_certs_configure(d);

    if (same) {
        for (i = 0; i < d->nedges; i++) {
            d->edges[i].check = 1;
        }

    } else {
        /* a request in flight points into the old array: it goes */
        for (i = 0; i < nold; i++) {
            pgd_cancel(d, &old[i]);
        }

        if (pgd_edges_set(d) != PG_OK) {
            pgd_log(d, PG_LOG_ERROR, "out of memory for the edges");
        }

        for (i = 0; i < d->nedges; i++) {
            for (j = 0; j < nold; j++) {
                if (strcmp(d->edges[i].edge.spec, old[j].edge.spec) == 0) {
                    pgd_edge_carry(&d->edges[i], &old[j]);
                    break;
                }
            }
        }

        for (i = 0; i < nold; i++) {
            pgd_edge_forget(&old[i]);
        }

        free(old);
    }

    pgd_http_configure(d);

    pgd_log(d, PG_LOG_NOTICE, "configuration reloaded from %s: %zu edges, "
            "%zu certificates, reconcile every %ld ms, log level %s%s",
            d->conf_path, d->nedges, d->ncerts, d->conf.reconcile_ms,
            pg_conf_log_level_name(d->conf.log_level),
            redis_changed ? "; reading the store again" : "");

    if (redis_changed) {
        /* another store: its renew asks are not the old one's */
        for (i = 0; i < d->ncerts; i++) {
            d->certs[i].renew_init = 0;
        }

        /* the old Redis or prefix would show it alive until it aged */
        pgd_beat_end(d);
        pgd_redis_close(d);
        pgd_store_forget(d);
        d->redis_state = PGD_UNKNOWN;
        d->redis_retry_at = 0;
    }

    if (url_changed) {
        /* the +switch-master watch starts again too: the URL it compares
         * is shown with the password masked, which may be what changed */
        d->sentinel_url[0] = '\0';
    }

    /*
     * A new interval applies from now if it ends sooner, but a reload never
     * puts the tick off: HUPs in a row would starve the reconcile, and a
     * change made without a change message would never reach the edges.
     */
    now = pgd_now();

    if (d->next_tick > now + d->conf.reconcile_ms) {
        d->next_tick = now + d->conf.reconcile_ms;
    }
}


static int
pgd_run(pgd_t *d)
{
    int                   n, sfd, running, msgs, tick, nhttp, changes;
    char                  drain[64];
    long                  timeout;
    double                now, wake, cert_at;
    size_t                i;
    CURLMsg              *msg;
    CURLMcode             mc;
    pg_edge_req_t        *req;
    struct curl_waitfd    fds[5];

    pgd_log(d, PG_LOG_NOTICE, "portal-gated started: %s, %zu edges, "
            "%zu certificates, reconcile every %ld ms", d->conf_path,
            d->nedges, d->ncerts, d->conf.reconcile_ms);

    d->next_tick = pgd_now() + d->conf.reconcile_ms;

    while (!pgd_signal_quit) {

        if (pgd_signal_hup) {
            pgd_signal_hup = 0;
            pgd_reconfigure(d);
        }

        if (pgd_signal_usr1) {
            pgd_signal_usr1 = 0;
            pgd_files_reopen(d);
        }

        now = pgd_now();

        pgd_sentinel_watch(d);

        if (d->cmd == NULL && now >= d->redis_retry_at) {
            pgd_redis_connect(d);
        }

        tick = now >= d->next_tick;

        if (tick) {
            d->next_tick = now + d->conf.reconcile_ms;
            pgd_tick(d);
            pgd_beat(d);
        }

        pgd_follow(d);

        pgd_kick(d);

        /* certificates after the flags: a kill never waits for them */
        pgd_certs_collect(d);

        if (tick || d->renew_wanted) {
            pgd_certs_renew_asked(d);
        }

        cert_at = pgd_certs_wake_at(d);

        if (tick || (cert_at > 0 && (double) time(NULL) * 1000 >= cert_at)) {
            pgd_certs_tick(d);
        }

        pgd_challenges_kick(d, tick);

        /* sleep until the tick, a reconnect, a signal, a message or curl */

        wake = d->next_tick;

        if (d->cmd == NULL && d->redis_retry_at < wake) {
            wake = d->redis_retry_at;
        }

        if (d->conf.redis.sentinel && d->sentinel == NULL
            && d->sentinel_retry_at < wake)
        {
            wake = d->sentinel_retry_at;
        }

        if (d->seed_state == PGD_SEED_ASKING && d->seed_until > 0
            && d->seed_until < wake)
        {
            wake = d->seed_until;
        }

        if (d->chal_again_at > 0 && d->chal_again_at < wake) {
            wake = d->chal_again_at;
        }

        now = pgd_now();
        timeout = wake > now ? (long) (wake - now) + 1 : 0;

        /* a certificate due before the tick (wall clock, in s) */
        cert_at = pgd_certs_wake_at(d);

        if (cert_at > 0) {
            cert_at -= (double) time(NULL) * 1000;
            cert_at = cert_at < 0 ? 0 : cert_at + 1000;

            if (cert_at < timeout) {
                timeout = (long) cert_at;
            }
        }

        fds[0].fd = d->sigpipe[0];
        fds[0].events = CURL_WAIT_POLLIN;
        fds[0].revents = 0;
        n = 1;

        fds[1].fd = d->worker.wake[0];
        fds[1].events = CURL_WAIT_POLLIN;
        fds[1].revents = 0;
        n = 2;

        if (d->sub) {
            fds[2].fd = d->sub->fd;
            fds[2].events = CURL_WAIT_POLLIN;
            fds[2].revents = 0;
            n = 3;
        }

        /* the sentinel watched for +switch-master, when there is one */
        sfd = -1;

        if (d->sentinel) {
            sfd = n;
            fds[n].fd = d->sentinel->fd;
            fds[n].events = CURL_WAIT_POLLIN;
            fds[n].revents = 0;
            n++;
        }

        nhttp = pgd_http_wait(d, &fds[n], &timeout);

        sigprocmask(SIG_UNBLOCK, &pgd_signal_set, NULL);
        mc = pg_curl.multi_poll(d->multi, fds, n + nhttp, (int) timeout,
                                NULL);
        sigprocmask(SIG_BLOCK, &pgd_signal_set, NULL);

        if (mc != CURLM_OK) {
            /* cannot happen (a signal returns OK): do not spin on it */
            pgd_log(d, PG_LOG_ERROR, "waiting failed: %s",
                    pg_curl.multi_strerror(mc));
            usleep(100000);
            continue;
        }

        while (read(d->sigpipe[0], drain, sizeof(drain)) > 0) {
            /* the flags say which signal */
        }

        pg_curl.multi_perform(d->multi, &running);

        while ((msg = pg_curl.multi_info_read(d->multi, &msgs)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }

            pg_curl.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &req);

            if (pgd_challenges_done(d, req, msg->data.result)) {
                continue;
            }

            for (i = 0; i < d->nedges; i++) {
                if (&d->edges[i].req == req) {
                    pgd_done(d, &d->edges[i], msg->data.result);
                    break;
                }
            }
        }

        changes = 0;

        if (d->sentinel && sfd >= 0 && (fds[sfd].revents & CURL_WAIT_POLLIN))
        {
            pgd_sentinel_read(d);
        }

        if (n >= 3 && sfd != 2 && d->sub
            && (fds[2].revents & CURL_WAIT_POLLIN))
        {
            changes = pgd_redis_read(d);
        }

        /* last: a change message read above goes out before any answer */
        pgd_http_run(d, changes);
    }

    pgd_log(d, PG_LOG_NOTICE, "exiting on %s",
            pgd_signal_quit == SIGINT ? "SIGINT" : "SIGTERM");

    /* a controller that stopped is not one that died */
    pgd_beat_end(d);

    return 0;
}
