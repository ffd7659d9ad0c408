/*
 * portal-gated: keeps every edge's snapshot in step with the store in
 * Redis (DESIGN.md, "The controller").
 *
 *   portal-gated [-t] [-d] [-c FILE]
 *
 * One thread, one loop (pgd_run): curl_multi_poll() waits on the edges'
 * requests, the pub/sub connection and a self-pipe for signals, and wakes
 * for the reconcile tick. What it does:
 *
 *   - it SUBSCRIBEs to the change channel first, then reads the whole store
 *     in one MULTI/EXEC (pg_store_snapshot), so no change slips between the
 *     two; a change message makes it read again;
 *   - it PUTs the snapshot to every edge at once (one curl multi handle), so
 *     an edge that is slow or down never holds back the others;
 *   - every reconcile_interval it asks Redis for its revision and each edge
 *     for its own, and pushes where they differ: a missed message or a
 *     restarted edge heals on its own;
 *   - it never pushes an uninitialised store (no marker) and never empties
 *     an edge because Redis is down: the edges keep the last good snapshot;
 *   - a flag whose value in Redis is not valid is reported, and the edges
 *     keep its last good version while every other change goes through, so
 *     a broken value never blocks a kill switch;
 *   - an edge that answers 409 with a revision above the store's (a store
 *     restored from an older backup) makes it raise the store's revision
 *     above the edge's and push again;
 *   - Redis down: it reconnects with a backoff capped at 5 s, with jitter,
 *     and says so once when Redis goes and once when it comes back.
 *
 * Signals only set a flag and write a byte to the self-pipe: SIGTERM and
 * SIGINT end the loop, SIGHUP re-reads the config file.
 *
 * Logs: one line per event, on stderr (or syslog with -d and no stderr):
 * "2026/11/25 14:03:07.123 [notice] 4711: ...".
 *
 * Ownership: the daemon (pgd_t) owns its Redis contexts, the multi handle,
 * the edges and their requests, and the snapshot; a pushed body is shared
 * by the requests that send it and freed by the last of them (pgd_body_t).
 */

#include <errno.h>              /* errno, EINTR */
#include <fcntl.h>              /* open, fcntl, O_NONBLOCK */
#include <signal.h>             /* sigaction */
#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* fprintf, snprintf */
#include <stdlib.h>             /* calloc, free, rand, realpath */
#include <string.h>             /* strcmp, strerror */
#include <syslog.h>             /* syslog: -d without a stderr */
#include <time.h>               /* clock_gettime, localtime_r */
#include <unistd.h>             /* fork, setsid, pipe, getpid, isatty */
#include <curl/curl.h>          /* the multi handle */
#include <hiredis/hiredis.h>    /* redisContext */
#include <jansson.h>            /* json_t */
#include "portal_gate.h"        /* pg_snap_compile_json */
#include "pg_conf.h"            /* pg_conf_t, PG_LOG_* */
#include "pg_ctl_store.h"       /* pg_store_snapshot, pg_store_raise... */
#include "pg_edge.h"            /* pg_edge_req_t */
#include "pg_redis.h"           /* pg_redis_connect */


#define PGD_CONF_DEFAULT      "/etc/portal-gate/portal-gated.conf"
#define PGD_ACTOR             "portal-gated"

#define PGD_REDIS_TIMEOUT_MS  1000      /* connect, and each command */
#define PGD_STATUS_TIMEOUT_MS 1000      /* GET status of an edge */
#define PGD_PUT_TIMEOUT_MS    10000     /* PUT snapshot: 100k ids ~50 ms */
#define PGD_BACKOFF_MIN_MS    250       /* Redis reconnects: 250 ms .. */
#define PGD_BACKOFF_MAX_MS    5000      /* .. 5 s, jitter within */
#define PGD_STALE_EVERY_MS    60000     /* "still no Redis", at most so often */
#define PGD_CULPRIT_TRIES     64        /* compiles to find one bad flag */

/* What an edge's request in flight is. */
#define PGD_REQ_NONE          0
#define PGD_REQ_STATUS        1
#define PGD_REQ_PUT           2

/* Redis, and the edges, as last said in the log. */
#define PGD_UNKNOWN           0
#define PGD_UP                1
#define PGD_DOWN              2

/* The store, as last read. */
#define PGD_STORE_UNKNOWN     0
#define PGD_STORE_OK          1
#define PGD_STORE_UNINIT      2         /* no marker: never pushed */
#define PGD_STORE_BROKEN      3         /* cannot be read or compiled */


#define pgd_log(d, level, ...)                                               \
    do {                                                                     \
        if ((level) >= (d)->conf.log_level) {                                \
            pgd_log_write(d, level, __VA_ARGS__);                            \
        }                                                                    \
    } while (0)


/* A snapshot's text, shared by the PUTs that send it. */
typedef struct {
    int       refs;
    int64_t   revision;
    size_t    len;
    char     *data;
} pgd_body_t;

typedef struct {
    pg_edge_t       edge;           /* where it is, from the config */
    pg_edge_req_t   req;            /* in flight when kind is not NONE */
    int             kind;           /* PGD_REQ_* */
    pgd_body_t     *body;           /* a PUT's body, one reference */
    double          started;        /* ms, of the request in flight */
    int64_t         revision;       /* the edge's, as it last said; -1 */
    int             state;          /* PGD_UP, PGD_DOWN as last logged */
    int             held;           /* failed: wait for the next tick */
    int             check;          /* ask its revision when idle */
    char            said[512];      /* the last refusal logged */
} pgd_edge_t;

typedef struct {
    char           *conf_path;      /* absolute: new */
    pg_conf_t       conf;
    int             use_syslog;

    redisContext   *cmd;            /* commands */
    redisContext   *sub;            /* SUBSCRIBE only */
    pg_store_t      store;
    char            where[300];     /* the Redis URL, password masked */
    char            channel[PG_STORE_PREFIX_MAX + 16];
    int             redis_state;    /* PGD_UP, PGD_DOWN as last logged */
    double          redis_down_since;
    double          redis_retry_at;
    double          stale_said;
    unsigned        redis_attempts;
    int             load_wanted;    /* a change message came */

    int             store_state;    /* PGD_STORE_* as last logged */
    char            store_said[1024];
    int64_t         store_revision; /* Redis's, at the last read */

    json_t         *good;           /* the last good snapshot, or NULL */
    pgd_body_t     *body;           /* its text: one reference */
    json_t         *bad;            /* "env/flag" -> why, as logged */
    json_t         *bad_now;        /* the same, for the read under way */
    json_t         *seed;           /* an edge's snapshot, see
                                       pgd_last_good(), or NULL */
    int             seed_tried;

    pgd_edge_t     *edges;
    size_t          nedges;
    CURLM          *multi;
    double          next_tick;
    int             sigpipe[2];
} pgd_t;


static volatile sig_atomic_t  pgd_signal_quit;
static volatile sig_atomic_t  pgd_signal_hup;
static int                    pgd_signal_fd = -1;


static void pgd_log_write(pgd_t *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static double pgd_now(void);
static void pgd_on_signal(int signo);
static int pgd_signals(pgd_t *d);
static void pgd_usage(FILE *out);
static int pgd_check_conf(const char *path, pg_conf_t *conf,
    pg_error_t *err);
static int pgd_daemonize(pgd_t *d);
static void pgd_body_release(pgd_body_t *body);
static int pgd_edges_set(pgd_t *d);
static void pgd_edges_free(pgd_t *d);
static void pgd_redis_close(pgd_t *d);
static void pgd_redis_down(pgd_t *d, const char *why);
static void pgd_redis_connect(pgd_t *d);
static void pgd_redis_read(pgd_t *d);
static void pgd_bad_flag(const char *env, const char *flag, const char *why,
    void *data);
static void pgd_store_trouble(pgd_t *d, int state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pgd_load(pgd_t *d);
static json_t *pgd_last_good(pgd_t *d, const char *env, const char *flag);
static json_t *pgd_seed(pgd_t *d);
static void pgd_use_last_good(pgd_t *d, json_t *snap, const char *env,
    const char *flag, int *kept);
static void pgd_keep_good_flags(pgd_t *d, json_t *snap);
static int pgd_find_culprit(pgd_t *d, json_t *snap, pg_error_t *err);
static void pgd_say_bad(pgd_t *d);
static void pgd_tick(pgd_t *d);
static void pgd_raise(pgd_t *d, pgd_edge_t *e, int64_t above);
static void pgd_raise_failed(pgd_t *d, pgd_edge_t *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pgd_kick(pgd_t *d);
static void pgd_start(pgd_t *d, pgd_edge_t *e, int kind);
static void pgd_cancel(pgd_t *d, pgd_edge_t *e);
static void pgd_done(pgd_t *d, pgd_edge_t *e, CURLcode code);
static void pgd_edge_down(pgd_t *d, pgd_edge_t *e, const char *why);
static void pgd_edge_up(pgd_t *d, pgd_edge_t *e);
static void pgd_reconfigure(pgd_t *d);
static int pgd_run(pgd_t *d);


static const char  *pgd_level_names[] = {
    "debug", "info", "notice", "warn", "error"
};

static const int  pgd_syslog_levels[] = {
    LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR
};


/* --- logging, time, signals ------------------------------------------- */

static void
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

    clock_gettime(CLOCK_REALTIME, &now);
    localtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y/%m/%d %H:%M:%S", &tm);

    /* one write per line, so that lines never interleave */
    fprintf(stderr, "%s.%03ld [%s] %d: %s\n", ts, now.tv_nsec / 1000000,
            pgd_level_names[level], (int) getpid(), msg);
}


/* Milliseconds on the monotonic clock. */
static double
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
        || sigaction(SIGHUP, &sa, NULL) != 0)
    {
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
        "\n"
        "Keeps the flag snapshot of every portal-gate edge in step with the\n"
        "store in Redis: pushes on every change, and reconciles every\n"
        "reconcile_interval. Runs in the foreground and logs to stderr.\n"
        "\n"
        "  -c FILE   the configuration file (default " PGD_CONF_DEFAULT ")\n"
        "  -t        check the configuration file and exit\n"
        "  -d        run in the background; logs go to stderr if it is not\n"
        "            a terminal, otherwise to syslog\n"
        "  -h        this help\n"
        "\n"
        "Signals: TERM and INT stop it, HUP re-reads the configuration.\n"
        "Exit status: 0 stopped cleanly or the configuration is good,\n"
        "1 the configuration is bad or it could not start, 2 usage error.\n");
}


/* Read the config and check what the daemon needs beyond its grammar. */
static int
pgd_check_conf(const char *path, pg_conf_t *conf, pg_error_t *err)
{
    pg_conf_defaults(conf);

    if (pg_conf_load(path, conf, err) != PG_OK) {
        return PG_ERR;
    }

    if (conf->nedges == 0) {
        snprintf(err->text, sizeof(err->text), "%s: no \"edge\": there is "
                 "nothing to keep in step", path);
        return PG_ERR;
    }

    return PG_OK;
}


static int
pgd_daemonize(pgd_t *d)
{
    int    fd;
    pid_t  pid;

    pid = fork();

    if (pid < 0) {
        fprintf(stderr, "portal-gated: fork failed: %s\n", strerror(errno));
        return PG_ERR;
    }

    if (pid > 0) {
        _exit(0);
    }

    setsid();

    if (chdir("/") != 0) {
        /* the config path was read already; nothing else is relative */
    }

    fd = open("/dev/null", O_RDWR);

    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);

        /* a terminal goes away with its session: log to syslog then */
        if (isatty(STDERR_FILENO)) {
            d->use_syslog = 1;
            openlog(PGD_ACTOR, LOG_PID, LOG_DAEMON);
            dup2(fd, STDERR_FILENO);
        }

        if (fd > STDERR_FILENO) {
            close(fd);
        }
    }

    return PG_OK;
}


int
main(int argc, char **argv)
{
    int          i, test, daemon, rc;
    pgd_t       *d;
    pg_error_t   err;
    const char  *path;

    path = PGD_CONF_DEFAULT;
    test = 0;
    daemon = 0;

    for (i = 1; i < argc; i++) {

        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            pgd_usage(stdout);
            return 0;

        } else if (strcmp(argv[i], "-t") == 0) {
            test = 1;

        } else if (strcmp(argv[i], "-d") == 0) {
            daemon = 1;

        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];

        } else {
            fprintf(stderr, "portal-gated: %s \"%s\"\n",
                    strcmp(argv[i], "-c") == 0 ? "no file after"
                                               : "unknown argument",
                    argv[i]);
            pgd_usage(stderr);
            return 2;
        }
    }

    d = calloc(1, sizeof(pgd_t));
    if (d == NULL) {
        fprintf(stderr, "portal-gated: out of memory\n");
        return 1;
    }

    if (pgd_check_conf(path, &d->conf, &err) != PG_OK) {
        fprintf(stderr, "portal-gated: %s\n", err.text);
        if (test) {
            fprintf(stderr, "portal-gated: configuration file %s test "
                    "failed\n", path);
        }
        free(d);
        return 1;
    }

    if (test) {
        fprintf(stderr, "portal-gated: the configuration file %s syntax is "
                "ok\nportal-gated: configuration file %s test is "
                "successful\n", path, path);
        free(d);
        return 0;
    }

    /* SIGHUP reads it again, after -d has left the working folder */
    d->conf_path = realpath(path, NULL);
    if (d->conf_path == NULL) {
        fprintf(stderr, "portal-gated: %s: %s\n", path, strerror(errno));
        free(d);
        return 1;
    }

    if (daemon && pgd_daemonize(d) != PG_OK) {
        free(d->conf_path);
        free(d);
        return 1;
    }

    setvbuf(stderr, NULL, _IOLBF, 0);
    srand((unsigned) getpid() ^ (unsigned) pgd_now());

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK
        || (d->multi = curl_multi_init()) == NULL)
    {
        pgd_log(d, PG_LOG_ERROR, "cannot start: libcurl failed to start");
        rc = 1;

    } else if (pgd_signals(d) != PG_OK || pgd_edges_set(d) != PG_OK) {
        pgd_log(d, PG_LOG_ERROR, "cannot start: %s", strerror(errno));
        rc = 1;

    } else {
        rc = pgd_run(d);
    }

    pgd_redis_close(d);
    pgd_edges_free(d);

    if (d->multi) {
        curl_multi_cleanup(d->multi);
    }

    pgd_body_release(d->body);
    json_decref(d->good);
    json_decref(d->bad);
    curl_global_cleanup();

    if (d->use_syslog) {
        closelog();
    }

    free(d->conf_path);
    free(d);

    return rc;
}


/* --- edges ---------------------------------------------------------------- */

static void
pgd_body_release(pgd_body_t *body)
{
    if (body != NULL && --body->refs == 0) {
        free(body->data);
        free(body);
    }
}


/* The edges of the config, none of them known yet. */
static int
pgd_edges_set(pgd_t *d)
{
    size_t  i;

    d->edges = calloc(d->conf.nedges, sizeof(pgd_edge_t));
    if (d->edges == NULL) {
        d->nedges = 0;
        return PG_ERR;
    }

    d->nedges = d->conf.nedges;

    for (i = 0; i < d->nedges; i++) {
        d->edges[i].edge = d->conf.edges[i];
        d->edges[i].revision = -1;
        d->edges[i].check = 1;
    }

    return PG_OK;
}


static void
pgd_edges_free(pgd_t *d)
{
    size_t  i;

    for (i = 0; i < d->nedges; i++) {
        pgd_cancel(d, &d->edges[i]);
    }

    free(d->edges);
    d->edges = NULL;
    d->nedges = 0;
}


/* Start what an idle edge needs: the snapshot, or a look at its revision. */
static void
pgd_kick(pgd_t *d)
{
    size_t       i;
    pgd_edge_t  *e;

    for (i = 0; i < d->nedges; i++) {
        e = &d->edges[i];

        if (e->kind != PGD_REQ_NONE || e->held) {
            continue;
        }

        if (d->body && e->revision != d->body->revision) {
            pgd_start(d, e, PGD_REQ_PUT);

        } else if (e->check) {
            pgd_start(d, e, PGD_REQ_STATUS);
        }
    }
}


static void
pgd_start(pgd_t *d, pgd_edge_t *e, int kind)
{
    int         rc;
    pg_error_t  err;

    if (kind == PGD_REQ_PUT) {
        rc = pg_edge_req_init(&e->req, &e->edge, "PUT", "snapshot",
                              d->body->data, d->body->len,
                              PGD_PUT_TIMEOUT_MS, &err);
    } else {
        rc = pg_edge_req_init(&e->req, &e->edge, "GET", "status", NULL, 0,
                              PGD_STATUS_TIMEOUT_MS, &err);
    }

    if (rc != PG_OK || curl_multi_add_handle(d->multi, e->req.curl) != 0) {
        if (rc == PG_OK) {
            pg_edge_req_free(&e->req);
            snprintf(err.text, sizeof(err.text), "edge %.128s: cannot start "
                     "a request", e->edge.spec);
        }

        pgd_log(d, PG_LOG_ERROR, "%s", err.text);
        e->held = 1;
        return;
    }

    e->kind = kind;
    e->check = 0;
    e->started = pgd_now();

    if (kind == PGD_REQ_PUT) {
        e->body = d->body;
        e->body->refs++;
    }
}


static void
pgd_cancel(pgd_t *d, pgd_edge_t *e)
{
    if (e->kind == PGD_REQ_NONE) {
        return;
    }

    curl_multi_remove_handle(d->multi, e->req.curl);
    pg_edge_req_free(&e->req);
    pgd_body_release(e->body);
    e->body = NULL;
    e->kind = PGD_REQ_NONE;
}


/* A request of e has ended: what did the edge say? */
static void
pgd_done(pgd_t *d, pgd_edge_t *e, CURLcode code)
{
    int          kind;
    long         status;
    json_t      *json, *rev, *error;
    int64_t      pushed, theirs;
    pg_error_t   err;
    pgd_body_t  *body;

    kind = e->kind;
    body = e->body;
    pushed = body ? body->revision : -1;

    curl_multi_remove_handle(d->multi, e->req.curl);
    e->kind = PGD_REQ_NONE;
    e->body = NULL;

    if (pg_edge_req_done(&e->req, code, &status, &json, &err) != PG_OK) {
        pgd_body_release(body);
        pgd_edge_down(d, e, err.text);
        return;
    }

    rev = json_object_get(json, "revision");
    error = json_object_get(json, "error");
    theirs = json_is_integer(rev) ? json_integer_value(rev) : -1;

    if (kind == PGD_REQ_PUT && status == 200) {
        pgd_edge_up(d, e);
        e->revision = pushed;
        e->said[0] = '\0';
        pgd_log(d, PG_LOG_INFO, "edge %s: revision %lld applied in %.1f ms",
                e->edge.spec, (long long) pushed, pgd_now() - e->started);

    } else if ((kind == PGD_REQ_PUT && status == 409 && theirs >= 0)
               || (kind == PGD_REQ_STATUS && status == 200 && theirs >= 0))
    {
        /* 409: the edge has this revision or a newer one already */
        pgd_edge_up(d, e);
        e->revision = theirs;

        if (kind == PGD_REQ_PUT && theirs != pushed) {
            if (theirs > pushed) {
                pgd_raise(d, e, theirs);
            }

            /* not pushed again until there is another snapshot to push */
            if (d->body == NULL || d->body->revision == pushed) {
                e->held = 1;
            }
        }

    } else {
        pgd_edge_up(d, e);
        snprintf(err.text, sizeof(err.text), "edge %.100s: %s answered %ld: "
                 "%.96s", e->edge.spec,
                 kind == PGD_REQ_PUT ? "PUT snapshot" : "GET status", status,
                 json_is_string(error) ? json_string_value(error)
                                       : "not the API's JSON");

        /* said once: it is tried again every tick */
        if (strcmp(err.text, e->said) != 0) {
            pgd_log(d, PG_LOG_ERROR, "%s", err.text);
            snprintf(e->said, sizeof(e->said), "%s", err.text);
        }

        e->revision = -1;
        e->held = 1;
    }

    json_decref(json);
    pgd_body_release(body);
}


static void
pgd_edge_down(pgd_t *d, pgd_edge_t *e, const char *why)
{
    if (e->state != PGD_DOWN) {
        pgd_log(d, PG_LOG_WARN, "%s; it keeps what it has, and is tried "
                "again every %ld ms", why, d->conf.reconcile_ms);
        e->state = PGD_DOWN;
    }

    e->revision = -1;
    e->held = 1;
}


static void
pgd_edge_up(pgd_t *d, pgd_edge_t *e)
{
    if (e->state == PGD_DOWN) {
        pgd_log(d, PG_LOG_NOTICE, "edge %s: reachable again", e->edge.spec);
    }

    e->state = PGD_UP;
}


/*
 * An edge is at a revision above the store's: the store was restored from
 * an older backup. Raise the store's revision above the edge's, so that
 * the next push wins, and read it again.
 */
static void
pgd_raise(pgd_t *d, pgd_edge_t *e, int64_t above)
{
    char     reason[700];
    int64_t  now;

    /* the store is ahead already: the next push wins */
    if (d->cmd == NULL || d->store_state != PGD_STORE_OK
        || d->store_revision > above)
    {
        return;
    }

    /*
     * Revision 0 is a store that was never written to: `init` after Redis
     * lost its data, not an older backup. Raising would empty the edges.
     */
    if (d->store_revision == 0) {
        pgd_raise_failed(d, e, "the store at %s was initialised empty "
                         "(revision 0) but edge %s holds revision %lld: the "
                         "edges are not emptied. To rebuild the store from "
                         "them, run `portal-gatectl init --from-edge URL`",
                         d->where, e->edge.spec, (long long) above);
        return;
    }

    snprintf(reason, sizeof(reason), "edge %s was at revision %lld, above "
             "the store's %lld", e->edge.spec, (long long) above,
             (long long) d->store_revision);

    if (pg_store_raise_revision(&d->store, above, PGD_ACTOR, reason, &now)
        != PG_OK)
    {
        if (d->store.code == PG_STORE_EREDIS) {
            pgd_redis_down(d, d->store.err.text);
        } else {
            pgd_raise_failed(d, e, "cannot raise the store's revision above "
                             "edge %s's %lld: %s", e->edge.spec,
                             (long long) above, d->store.err.text);
        }
        return;
    }

    e->said[0] = '\0';

    pgd_log(d, PG_LOG_WARN, "edge %s is at revision %lld, above the store's "
            "%lld (a store restored from an older backup?): raised the "
            "store's revision to %lld, so the edges take what the store "
            "holds", e->edge.spec, (long long) above,
            (long long) d->store_revision, (long long) now);

    pgd_load(d);
}


/* Why the store's revision stays below e's: said once per edge. */
static void
pgd_raise_failed(pgd_t *d, pgd_edge_t *e, const char *fmt, ...)
{
    char     msg[sizeof(e->said)];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    if (strcmp(msg, e->said) != 0) {
        pgd_log(d, PG_LOG_ERROR, "%s", msg);
        memcpy(e->said, msg, sizeof(e->said));
    }
}


/* --- Redis -------------------------------------------------------------- */

static void
pgd_redis_close(pgd_t *d)
{
    if (d->cmd) {
        redisFree(d->cmd);
        d->cmd = NULL;
    }

    if (d->sub) {
        redisFree(d->sub);
        d->sub = NULL;
    }
}


static void
pgd_redis_down(pgd_t *d, const char *why)
{
    double    now, delay;
    unsigned  shift;

    pgd_redis_close(d);
    now = pgd_now();

    if (d->redis_state != PGD_DOWN) {
        pgd_log(d, PG_LOG_ERROR, "redis unreachable: %s; the edges keep what "
                "they hold, reconnecting", why);

        d->redis_state = PGD_DOWN;
        d->redis_down_since = now;
        d->stale_said = now;
        d->redis_attempts = 0;

    } else {
        pgd_log(d, PG_LOG_DEBUG, "redis still unreachable: %s", why);
    }

    /* 250 ms, doubling to 5 s, each less up to a quarter at random */
    shift = d->redis_attempts < 5 ? d->redis_attempts : 5;
    delay = PGD_BACKOFF_MIN_MS * (double) (1u << shift);
    delay = delay < PGD_BACKOFF_MAX_MS ? delay : PGD_BACKOFF_MAX_MS;
    delay -= delay * 0.25 * (rand() / (double) RAND_MAX);

    d->redis_attempts++;
    d->redis_retry_at = now + delay;
}


/* Subscribe first, then read the store: no change slips between them. */
static void
pgd_redis_connect(pgd_t *d)
{
    pg_error_t   err;
    redisReply  *reply;

    pg_redis_url_format(&d->conf.redis, d->where, sizeof(d->where));
    snprintf(d->channel, sizeof(d->channel), "%s%s", d->conf.prefix,
             PG_STORE_CHANNEL);

    d->sub = pg_redis_connect(&d->conf.redis, PGD_REDIS_TIMEOUT_MS, &err);
    if (d->sub == NULL) {
        pgd_redis_down(d, err.text);
        return;
    }

    reply = redisCommand(d->sub, "SUBSCRIBE %s", d->channel);

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        snprintf(err.text, sizeof(err.text), "%.120s: SUBSCRIBE failed: %.100s",
                 d->where, reply == NULL ? d->sub->errstr
                           : reply->type == REDIS_REPLY_ERROR ? reply->str
                           : "unexpected reply");
        freeReplyObject(reply);
        pgd_redis_down(d, err.text);
        return;
    }

    freeReplyObject(reply);

    /* a connection that dies silently (a NAT, a firewall) is noticed */
    redisEnableKeepAlive(d->sub);

    d->cmd = pg_redis_connect(&d->conf.redis, PGD_REDIS_TIMEOUT_MS, &err);
    if (d->cmd == NULL) {
        pgd_redis_down(d, err.text);
        return;
    }

    pg_store_setup(&d->store, d->cmd, d->conf.prefix, d->where);

    /*
     * Up only once the store could be read: a Redis that accepts
     * connections but answers LOADING or MASTERDOWN stays down, and the
     * backoff goes on.
     */
    pgd_load(d);

    if (d->cmd == NULL) {
        return;
    }

    if (d->redis_state == PGD_DOWN) {
        pgd_log(d, PG_LOG_NOTICE, "redis %s reachable again after %.1f s",
                d->where, (pgd_now() - d->redis_down_since) / 1000);
    } else {
        pgd_log(d, PG_LOG_NOTICE, "connected to redis %s, following %s",
                d->where, d->channel);
    }

    d->redis_state = PGD_UP;
    d->redis_attempts = 0;
}


/* The pub/sub connection is readable: change messages, or its end. */
static void
pgd_redis_read(pgd_t *d)
{
    char         why[600];
    redisReply  *reply;

    if (redisBufferRead(d->sub) != REDIS_OK) {
        snprintf(why, sizeof(why), "%s: %s", d->where, d->sub->errstr);
        pgd_redis_down(d, why);
        return;
    }

    for ( ;; ) {
        reply = NULL;

        if (redisGetReplyFromReader(d->sub, (void **) &reply) != REDIS_OK) {
            snprintf(why, sizeof(why), "%s: %s", d->where, d->sub->errstr);
            pgd_redis_down(d, why);
            return;
        }

        if (reply == NULL) {
            return;
        }

        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
            && reply->element[0]->type == REDIS_REPLY_STRING
            && strcmp(reply->element[0]->str, "message") == 0)
        {
            pgd_log(d, PG_LOG_DEBUG, "change message: revision %s",
                    reply->element[2]->str ? reply->element[2]->str : "?");
            d->load_wanted = 1;
        }

        freeReplyObject(reply);
    }
}


/* --- the store ---------------------------------------------------------- */

static void
pgd_bad_flag(const char *env, const char *flag, const char *why, void *data)
{
    char    key[2 * PG_NAME_MAX + 8];
    pgd_t  *d = data;

    snprintf(key, sizeof(key), "%s/%s", env, flag);
    json_object_set_new(d->bad_now, key, json_string(why));
}


/* The store cannot be pushed as it is: say why, once per reason. */
static void
pgd_store_trouble(pgd_t *d, int state, const char *fmt, ...)
{
    char     msg[sizeof(d->store_said)];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    if (d->store_state == state && strcmp(msg, d->store_said) == 0) {
        return;
    }

    pgd_log(d, PG_LOG_ERROR, "%s; nothing is pushed, the edges keep what "
            "they hold", msg);

    d->store_state = state;
    memcpy(d->store_said, msg, sizeof(d->store_said));
}


/*
 * Read the store; when it is good and differs from the last snapshot, make
 * it the snapshot that the edges get.
 */
static void
pgd_load(pgd_t *d)
{
    int              initialised, rc;
    char            *text;
    size_t           size, i, nflags;
    json_t          *snap, *envs, *flags;
    const char      *names[PG_ENVS_MAX], *key;
    pg_error_t       err;
    pgd_body_t      *body;
    unsigned char   *blob;

    if (d->cmd == NULL) {
        return;
    }

    d->load_wanted = 0;

    for (i = 0; i < d->conf.nenvs; i++) {
        names[i] = d->conf.envs[i];
    }

    d->bad_now = json_object();
    if (d->bad_now == NULL) {
        return;
    }

    rc = pg_store_snapshot(&d->store, names, d->conf.nenvs, pgd_bad_flag, d,
                           &initialised, &snap);

    if (rc != PG_OK) {
        json_decref(d->bad_now);
        d->bad_now = NULL;

        if (d->store.code == PG_STORE_EREDIS) {
            pgd_redis_down(d, d->store.err.text);
        } else {
            pgd_store_trouble(d, PGD_STORE_BROKEN, "%s", d->store.err.text);
        }

        return;
    }

    d->store_revision = json_integer_value(json_object_get(snap,
                                                           "revision"));

    if (!initialised) {
        json_decref(d->bad_now);
        d->bad_now = NULL;
        json_decref(snap);
        pgd_store_trouble(d, PGD_STORE_UNINIT, "the store at %s (prefix "
                          "\"%s\") is NOT INITIALISED: no marker, a flushed "
                          "or brand-new Redis. To rebuild it from the edges, "
                          "run `portal-gatectl init --from-edge URL`; for a "
                          "new deployment, `portal-gatectl init`",
                          d->where, d->conf.prefix);
        return;
    }

    pgd_keep_good_flags(d, snap);

    rc = pg_snap_compile_json(snap, &blob, &size, &err);

    if (rc != PG_OK) {
        rc = pgd_find_culprit(d, snap, &err);
    } else {
        free(blob);
    }

    pgd_say_bad(d);
    json_decref(d->seed);
    d->seed = NULL;
    d->seed_tried = 0;

    if (rc != PG_OK) {
        json_decref(snap);
        pgd_store_trouble(d, PGD_STORE_BROKEN, "revision %lld of the store "
                          "is not valid: %s",
                          (long long) d->store_revision, err.text);
        return;
    }

    if (d->store_state != PGD_STORE_OK && d->store_state != PGD_STORE_UNKNOWN)
    {
        pgd_log(d, PG_LOG_NOTICE, "the store at %s is good again",
                d->where);
    }

    d->store_state = PGD_STORE_OK;
    d->store_said[0] = '\0';

    if (d->good && json_equal(d->good, snap)) {
        json_decref(snap);
        return;
    }

    text = json_dumps(snap, JSON_COMPACT | JSON_REAL_PRECISION(12));
    body = calloc(1, sizeof(pgd_body_t));

    if (text == NULL || body == NULL) {
        pgd_log(d, PG_LOG_ERROR, "out of memory for revision %lld",
                (long long) d->store_revision);
        free(text);
        free(body);
        json_decref(snap);
        return;
    }

    body->refs = 1;
    body->revision = d->store_revision;
    body->data = text;
    body->len = strlen(text);

    pgd_body_release(d->body);
    d->body = body;
    json_decref(d->good);
    d->good = snap;

    nflags = 0;
    envs = json_object_get(snap, "environments");

    json_object_foreach(envs, key, flags) {
        nflags += json_object_size(flags);
    }

    pgd_log(d, PG_LOG_INFO, "revision %lld read: %zu flags in %zu "
            "environments, %zu bytes to push", (long long) body->revision,
            nflags, json_object_size(envs), body->len);
}


/*
 * The last good version of a flag (borrowed), or NULL: from the last
 * snapshot pushed, or else, when this daemon has none (it restarted), from
 * what an edge holds, asked once per read of the store.
 */
static json_t *
pgd_last_good(pgd_t *d, const char *env, const char *flag)
{
    json_t  *old;

    old = json_object_get(json_object_get(json_object_get(d->good,
                                              "environments"), env), flag);
    if (old) {
        return old;
    }

    return json_object_get(json_object_get(json_object_get(pgd_seed(d),
                                               "environments"), env), flag);
}


/* What an edge holds (borrowed), asked once per read of the store. */
static json_t *
pgd_seed(pgd_t *d)
{
    long         status;
    size_t       i;
    json_t      *json;
    pg_error_t   err;

    if (!d->seed_tried) {
        d->seed_tried = 1;

        for (i = 0; i < d->nedges && d->seed == NULL; i++) {
            if (pg_edge_request(&d->edges[i].edge, "GET", "snapshot", NULL,
                                0, PGD_STATUS_TIMEOUT_MS, &status, &json,
                                &err)
                == PG_OK && status == 200 && json_is_object(json))
            {
                d->seed = json;
                json = NULL;
            }

            json_decref(json);
        }
    }

    return d->seed;
}


/* Put flag's last good version in snap in place of what it has; *kept
 * says whether one was known (else the flag is left out). */
static void
pgd_use_last_good(pgd_t *d, json_t *snap, const char *env, const char *flag,
    int *kept)
{
    json_t  *old, *flags;

    old = pgd_last_good(d, env, flag);
    flags = json_object_get(json_object_get(snap, "environments"), env);

    if (old) {
        json_object_set(flags, flag, old);
    } else {
        json_object_del(flags, flag);
    }

    *kept = (old != NULL);
}


/* The flags that pg_store_snapshot() left out because their value is not
 * valid: the edges keep their last good versions. */
static void
pgd_keep_good_flags(pgd_t *d, json_t *snap)
{
    int          kept;
    char         env[PG_NAME_MAX + 1];
    json_t      *why;
    const char  *key, *flag;

    json_object_foreach(d->bad_now, key, why) {
        flag = strchr(key, '/');
        snprintf(env, sizeof(env), "%.*s", (int) (flag - key), key);
        pgd_use_last_good(d, snap, env, flag + 1, &kept);
    }
}


/*
 * The snapshot does not compile as a whole (a `requires` of a missing
 * flag, a cycle): find the one flag whose last good version makes it
 * compile, so that one bad edit never blocks the others, a kill switch
 * above all. Only flags that differ from the last good snapshot are
 * tried, one at a time; err keeps the first error for the log.
 */
static int
pgd_find_culprit(pgd_t *d, json_t *snap, pg_error_t *err)
{
    int             kept, rc, tries;
    char            key[2 * PG_NAME_MAX + 8], why[PG_ERROR_LEN + 64];
    size_t          size, i;
    json_t         *base, *flags, *good_flags, *flag, *tried, *saved, *name;
    pg_error_t      again;
    const char     *env, *n;
    unsigned char  *blob;

    rc = PG_ERR;
    tries = 0;

    /* a daemon that just started compares with what the edges hold */
    base = d->good ? d->good : pgd_seed(d);

    json_object_foreach(json_object_get(snap, "environments"), env, flags) {
        good_flags = json_object_get(json_object_get(base, "environments"),
                                     env);

        /* the flags changed, added or removed since the last good one;
         * listed first, as trying one changes flags */
        tried = json_array();

        json_object_foreach(flags, n, flag) {
            if (!json_equal(flag, json_object_get(good_flags, n))) {
                json_array_append_new(tried, json_string(n));
            }
        }

        json_object_foreach(good_flags, n, flag) {
            if (json_object_get(flags, n) == NULL) {
                json_array_append_new(tried, json_string(n));
            }
        }

        json_array_foreach(tried, i, name) {
            if (++tries > PGD_CULPRIT_TRIES) {
                break;
            }

            n = json_string_value(name);
            saved = json_incref(json_object_get(flags, n));

            pgd_use_last_good(d, snap, env, n, &kept);

            if (pg_snap_compile_json(snap, &blob, &size, &again) == PG_OK) {
                free(blob);
                snprintf(key, sizeof(key), "%s/%s", env, n);
                snprintf(why, sizeof(why), "%s: %s",
                         saved ? "not valid with the other flags"
                               : "gone while other flags require it",
                         err->text);
                json_object_set_new(d->bad_now, key, json_string(why));
                json_decref(saved);
                rc = PG_OK;
                break;
            }

            /* not this one: as it was */
            if (saved) {
                json_object_set_new(flags, n, saved);
            } else {
                json_object_del(flags, n);
            }
        }

        json_decref(tried);

        if (rc == PG_OK) {
            break;
        }
    }

    return rc;
}


/* Say each bad flag once, and when it is good again. */
static void
pgd_say_bad(pgd_t *d)
{
    char         env[PG_NAME_MAX + 1];
    json_t      *why, *said;
    const char  *key, *flag;

    json_object_foreach(d->bad_now, key, why) {
        said = json_object_get(d->bad, key);

        if (said && json_equal(said, why)) {
            continue;
        }

        flag = strchr(key, '/');
        snprintf(env, sizeof(env), "%.*s", (int) (flag - key), key);
        flag++;

        if (pgd_last_good(d, env, flag)) {
            pgd_log(d, PG_LOG_ERROR, "flag \"%s\" in %s is %s; the edges "
                    "keep its last good version", flag, env,
                    json_string_value(why));
        } else {
            pgd_log(d, PG_LOG_ERROR, "flag \"%s\" in %s is %s; it is left "
                    "out: no good version of it is known", flag, env,
                    json_string_value(why));
        }
    }

    json_object_foreach(d->bad, key, why) {
        if (json_object_get(d->bad_now, key) == NULL) {
            pgd_log(d, PG_LOG_NOTICE, "flag %s is valid again", key);
        }
    }

    json_decref(d->bad);
    d->bad = d->bad_now;
    d->bad_now = NULL;
}


/* --- the loop ----------------------------------------------------------- */

/* The reconcile tick: Redis's revision and each edge's. */
static void
pgd_tick(pgd_t *d)
{
    int       initialised;
    size_t    i;
    json_t   *snap;
    int64_t   revision;
    double    now;

    for (i = 0; i < d->nedges; i++) {
        d->edges[i].held = 0;
        d->edges[i].check = 1;
    }

    now = pgd_now();

    if (d->cmd == NULL) {
        if (d->redis_state == PGD_DOWN
            && now - d->stale_said >= PGD_STALE_EVERY_MS)
        {
            pgd_log(d, PG_LOG_WARN, "redis still unreachable after %.0f s; "
                    "the edges keep what they hold",
                    (now - d->redis_down_since) / 1000);
            d->stale_said = now;
        }

        return;
    }

    /* no environments: the marker and the revision, in one round trip */
    if (pg_store_snapshot(&d->store, NULL, 0, NULL, NULL, &initialised,
                          &snap)
        != PG_OK)
    {
        if (d->store.code == PG_STORE_EREDIS) {
            pgd_redis_down(d, d->store.err.text);
        } else {
            pgd_store_trouble(d, PGD_STORE_BROKEN, "%s", d->store.err.text);
        }
        return;
    }

    revision = json_integer_value(json_object_get(snap, "revision"));
    json_decref(snap);

    if ((initialised && d->store_state != PGD_STORE_OK)
        || (!initialised && d->store_state != PGD_STORE_UNINIT)
        || revision != d->store_revision)
    {
        pgd_log(d, PG_LOG_DEBUG, "reconcile: the store is at revision %lld",
                (long long) revision);
        pgd_load(d);
    }
}


/* SIGHUP: read the config again; a bad one changes nothing. */
static void
pgd_reconfigure(pgd_t *d)
{
    int          redis_changed;
    size_t       i, j, nold;
    pg_conf_t   *conf;
    pg_error_t   err;
    pgd_edge_t  *old;

    conf = malloc(sizeof(pg_conf_t));
    if (conf == NULL) {
        pgd_log(d, PG_LOG_ERROR, "configuration not reloaded: out of memory");
        return;
    }

    if (pgd_check_conf(d->conf_path, conf, &err) != PG_OK) {
        pgd_log(d, PG_LOG_ERROR, "configuration not reloaded, the old one "
                "stays: %s", err.text);
        free(conf);
        return;
    }

    redis_changed = strcmp(conf->redis_url, d->conf.redis_url) != 0
                    || strcmp(conf->prefix, d->conf.prefix) != 0
                    || conf->nenvs != d->conf.nenvs;

    for (i = 0; !redis_changed && i < conf->nenvs; i++) {
        redis_changed = strcmp(conf->envs[i], d->conf.envs[i]) != 0;
    }

    /*
     * Every edge is asked again, and new ones get the snapshot; an edge
     * that stays keeps what the log said of it, so that it is not said
     * twice.
     */
    old = d->edges;
    nold = d->nedges;

    for (i = 0; i < nold; i++) {
        pgd_cancel(d, &old[i]);
    }

    memcpy(&d->conf, conf, sizeof(pg_conf_t));
    free(conf);

    if (pgd_edges_set(d) != PG_OK) {
        pgd_log(d, PG_LOG_ERROR, "out of memory for the edges");
    }

    for (i = 0; i < d->nedges; i++) {
        for (j = 0; j < nold; j++) {
            if (strcmp(d->edges[i].edge.spec, old[j].edge.spec) == 0) {
                d->edges[i].state = old[j].state;
                memcpy(d->edges[i].said, old[j].said, sizeof(old[j].said));
                break;
            }
        }
    }

    free(old);

    pgd_log(d, PG_LOG_NOTICE, "configuration reloaded from %s: %zu edges, "
            "reconcile every %ld ms, log level %s%s", d->conf_path,
            d->nedges, d->conf.reconcile_ms,
            pg_conf_log_level_name(d->conf.log_level),
            redis_changed ? "; reading the store again" : "");

    if (redis_changed) {
        /* another store: what the old one held is pushed nowhere */
        pgd_redis_close(d);
        pgd_body_release(d->body);
        json_decref(d->good);
        json_decref(d->bad);
        d->body = NULL;
        d->good = NULL;
        d->bad = NULL;
        d->redis_state = PGD_UNKNOWN;
        d->store_state = PGD_STORE_UNKNOWN;
        d->store_said[0] = '\0';
        d->redis_retry_at = 0;
    }

    d->next_tick = pgd_now() + d->conf.reconcile_ms;
}


static int
pgd_run(pgd_t *d)
{
    int                   n, running, msgs;
    char                  drain[64];
    long                  timeout;
    double                now, wake;
    size_t                i;
    CURLMsg              *msg;
    CURLMcode             mc;
    pg_edge_req_t        *req;
    struct curl_waitfd    fds[2];

    pgd_log(d, PG_LOG_NOTICE, "portal-gated started: %s, %zu edges, "
            "reconcile every %ld ms", d->conf_path, d->nedges,
            d->conf.reconcile_ms);

    d->next_tick = pgd_now() + d->conf.reconcile_ms;

    while (!pgd_signal_quit) {

        if (pgd_signal_hup) {
            pgd_signal_hup = 0;
            pgd_reconfigure(d);
        }

        now = pgd_now();

        if (d->cmd == NULL && now >= d->redis_retry_at) {
            pgd_redis_connect(d);
        }

        if (now >= d->next_tick) {
            d->next_tick = now + d->conf.reconcile_ms;
            pgd_tick(d);
        }

        if (d->load_wanted) {
            pgd_load(d);
        }

        pgd_kick(d);

        /* sleep until the tick, a reconnect, a signal, a message or curl */

        wake = d->next_tick;

        if (d->cmd == NULL && d->redis_retry_at < wake) {
            wake = d->redis_retry_at;
        }

        now = pgd_now();
        timeout = wake > now ? (long) (wake - now) + 1 : 0;

        fds[0].fd = d->sigpipe[0];
        fds[0].events = CURL_WAIT_POLLIN;
        fds[0].revents = 0;
        n = 1;

        if (d->sub) {
            fds[1].fd = d->sub->fd;
            fds[1].events = CURL_WAIT_POLLIN;
            fds[1].revents = 0;
            n = 2;
        }

        mc = curl_multi_poll(d->multi, fds, n, (int) timeout, NULL);

        if (mc != CURLM_OK) {
            /* cannot happen (a signal returns OK): do not spin on it */
            pgd_log(d, PG_LOG_ERROR, "waiting failed: %s",
                    curl_multi_strerror(mc));
            usleep(100000);
            continue;
        }

        while (read(d->sigpipe[0], drain, sizeof(drain)) > 0) {
            /* the flags say which signal */
        }

        curl_multi_perform(d->multi, &running);

        while ((msg = curl_multi_info_read(d->multi, &msgs)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }

            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &req);

            for (i = 0; i < d->nedges; i++) {
                if (&d->edges[i].req == req) {
                    pgd_done(d, &d->edges[i], msg->data.result);
                    break;
                }
            }
        }

        if (n == 2 && d->sub && (fds[1].revents & CURL_WAIT_POLLIN)) {
            pgd_redis_read(d);
        }
    }

    pgd_log(d, PG_LOG_NOTICE, "exiting on %s",
            pgd_signal_quit == SIGINT ? "SIGINT" : "SIGTERM");

    return 0;
}
