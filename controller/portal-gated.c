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
 *     only the flag it names when the messages run unbroken from what it
 *     read (a delta), the whole store on any doubt. It reads the
 *     environments of its config and those the store records
 *     (`portal-gatectl env add`);
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
 * "2026/11/25 14:03:07.123 [notice] 4711: ...". SIGUSR1 reopens the file
 * after logrotate moved it, as nginx does. When stderr is systemd's
 * journal ($JOURNAL_STREAM), a line is "<5>[notice] ...": the journal
 * takes the priority from it and stamps the time and the pid itself.
 *
 * The pid file (the config's pid line): written once started, with or
 * without -d, removed at a clean exit when it still names this process.
 * With -d the parent waits until the daemon has started or failed, and
 * exits 0 or 1 saying why, so that a failed start is seen where it was
 * asked for.
 *
 * Ownership: see pgd.h.
 */

#define _GNU_SOURCE             /* pipe2 */
#include <errno.h>              /* errno, EINTR */
#include <fcntl.h>              /* open, fcntl, O_NONBLOCK, O_APPEND */
#include <libgen.h>             /* dirname: -t checks the log's folder */
#include <signal.h>             /* sigaction */
#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* fprintf, snprintf, sscanf */
#include <stdlib.h>             /* calloc, free, srand, realpath,
                                   getenv */
#include <string.h>             /* strcmp, strerror */
#include <syslog.h>             /* syslog: -d without a stderr */
#include <sys/stat.h>           /* fstat: is stderr the journal? */
#include <time.h>               /* clock_gettime, localtime_r */
#include <unistd.h>             /* fork, setsid, pipe, getpid, access */
#include "pg_curl.h"            /* pg_curl: libcurl, loaded at start */
#include "pgd.h"                /* pgd_t, and the daemon's other files */
#include "pgd_http.h"           /* listen: /metrics, /healthz, the page */


static volatile sig_atomic_t  pgd_signal_quit;
static volatile sig_atomic_t  pgd_signal_hup;
static volatile sig_atomic_t  pgd_signal_usr1;
static int                    pgd_signal_fd = -1;
static sigset_t               pgd_signal_set;   /* TERM, INT, HUP, USR1:
                                                   let through only while
                                                   the loop waits */

/* The log file and the pid file (the config's error_log and pid lines).
 * Process-wide, as stderr is. */
static int                    pgd_log_fd = -1;  /* error_log opened at start,
                                                   on fd 2 once started */
static int                    pgd_stderr_fd = -1;  /* the first stderr, while
                                                   fd 2 is the log file: a
                                                   HUP may take the file
                                                   away again */
static int                    pgd_ready_fd = -1;   /* -d: to the parent,
                                                   until started */
static int                    pgd_daemonized;   /* -d, in the daemon */
static int                    pgd_journal;      /* fd 2 is systemd's
                                                   journal: "<N>" lines */
static char                   pgd_pid_path[PG_CONF_PATH_MAX];  /* the pid
                                                   file this process wrote;
                                                   "": none */


static void pgd_journal_check(void);
static void pgd_on_signal(int signo);
static void pgd_edge_carry(pgd_edge_t *e, pgd_edge_t *old);
static int pgd_signals(pgd_t *d);
static void pgd_usage(FILE *out);
static int pgd_usage_error(const char *what, const char *arg);
static int pgd_check_conf(const char *path, pg_conf_t *conf,
    pg_error_t *err);
static int pgd_check_files(const pg_conf_t *conf, pg_error_t *err);
static int pgd_log_open(const char *path, int *fd, pg_error_t *err);
static void pgd_log_to(int fd);
static void pgd_log_reopen(pgd_t *d);
static int pgd_pid_write(const char *path, pg_error_t *err);
static void pgd_pid_remove(const char *path);
static int pgd_files_reconfigure(pgd_t *d, const pg_conf_t *conf,
    pg_error_t *err);
static int pgd_daemonize(pgd_t *d);
static void pgd_started(const char *failure);
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

    if (pgd_journal) {
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


/*
 * Is fd 2 the stream systemd connected to the journal? $JOURNAL_STREAM
 * names it as "DEVICE:INODE" (systemd.exec(5)); a file or a pipe that
 * stderr became since (error_log, a shell's redirection) is not it. Then
 * each line starts with its syslog priority, "<5>", which the journal
 * reads (journalctl -p warning), and no time or pid: the journal keeps
 * both.
 */
static void
pgd_journal_check(void)
{
    const char          *env;
    struct stat          st;
    unsigned long long   dev, ino;

    pgd_journal = 0;
    env = getenv("JOURNAL_STREAM");

    if (env != NULL && sscanf(env, "%llu:%llu", &dev, &ino) == 2
        && fstat(STDERR_FILENO, &st) == 0
        && (unsigned long long) st.st_dev == dev
        && (unsigned long long) st.st_ino == ino)
    {
        pgd_journal = 1;
    }
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


/*
 * -t: can the error_log file and the pid file be written? As far as
 * access() tells (the start opens them for real), as nginx -t opens its
 * logs: a file or folder missing or not writable is said now, not at the
 * start of a daemon that is already in the background.
 */
static int
pgd_check_files(const pg_conf_t *conf, pg_error_t *err)
{
    int          i;
    char         dir[PG_CONF_PATH_MAX];
    const char  *path[2], *what[2];

    path[0] = conf->error_log;
    what[0] = "error_log";
    path[1] = conf->pid;
    what[1] = "pid file";

    for (i = 0; i < 2; i++) {
        if (path[i][0] == '\0') {
            continue;
        }

        /* an error_log is appended to; a pid file is renamed into place,
         * so only its folder counts */
        if (i == 0 && access(path[i], F_OK) == 0) {
            if (access(path[i], W_OK) != 0) {
                snprintf(err->text, sizeof(err->text), "%s %s cannot be "
                         "written: %s", what[i], path[i], strerror(errno));
                return PG_ERR;
            }

            continue;
        }

        snprintf(dir, sizeof(dir), "%s", path[i]);

        if (access(dirname(dir), W_OK | X_OK) != 0) {
            snprintf(err->text, sizeof(err->text), "%s %s cannot be "
                     "written: its folder: %s", what[i], path[i],
                     strerror(errno));
            return PG_ERR;
        }
    }

    return PG_OK;
}


/* The error_log file, opened to append (made 0640 when missing): a new
 * *fd, close-on-exec. */
static int
pgd_log_open(const char *path, int *fd, pg_error_t *err)
{
    *fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

    if (*fd == -1) {
        snprintf(err->text, sizeof(err->text), "cannot open error_log %s: "
                 "%s", path, strerror(errno));
        return PG_ERR;
    }

    return PG_OK;
}


/*
 * The log goes to fd from now on: fd 2 becomes that file, so that what a
 * library or a sanitizer writes to stderr lands there too, as in nginx;
 * fd is closed. In the foreground the first stderr is kept, for a failure
 * to start and for a HUP that removes the error_log line; a daemon keeps
 * nothing of who started it (a pipe held open would never end its reader).
 */
static void
pgd_log_to(int fd)
{
    fflush(stderr);

    if (pgd_stderr_fd == -1 && !pgd_daemonized) {
        pgd_stderr_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    }

    dup2(fd, STDERR_FILENO);
    close(fd);
    pgd_journal_check();
}


/* SIGUSR1: open the error_log file again (logrotate moved the old one
 * away); if it cannot be, the log stays in the file open before. */
static void
pgd_log_reopen(pgd_t *d)
{
    int         fd;
    pg_error_t  err;

    if (d->conf.error_log[0] == '\0') {
        pgd_log(d, PG_LOG_NOTICE, "SIGUSR1: there is no error_log file to "
                "reopen (the log goes to %s)",
                d->use_syslog ? "syslog" : "stderr");
        return;
    }

    if (pgd_log_open(d->conf.error_log, &fd, &err) != PG_OK) {
        pgd_log(d, PG_LOG_ERROR, "SIGUSR1: %s; the log stays in the file "
                "open before", err.text);
        return;
    }

    pgd_log_to(fd);
    pgd_log(d, PG_LOG_NOTICE, "error_log %s reopened (SIGUSR1)",
            d->conf.error_log);
}


/*
 * The pid file: this process's pid, written to PATH.new and renamed, so
 * that a reader never sees it half-written; never through a link planted
 * at PATH.new. pgd_pid_path says which file to remove at exit.
 */
static int
pgd_pid_write(const char *path, pg_error_t *err)
{
    int   fd, n, saved;
    char  tmp[PG_CONF_PATH_MAX + 8], buf[32];

    snprintf(tmp, sizeof(tmp), "%s.new", path);
    n = snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
              0644);

    if (fd == -1) {
        saved = errno;

    } else if (write(fd, buf, n) != n) {
        saved = errno;
        close(fd);
        unlink(tmp);

    } else if (close(fd) != 0 || rename(tmp, path) != 0) {
        saved = errno;
        unlink(tmp);

    } else {
        snprintf(pgd_pid_path, sizeof(pgd_pid_path), "%s", path);
        return PG_OK;
    }

    snprintf(err->text, sizeof(err->text), "cannot write pid file %s: %s",
             path, strerror(saved));

    return PG_ERR;
}


/* Remove the pid file at path if it still names this process: another
 * portal-gated may have written its own there since. */
static void
pgd_pid_remove(const char *path)
{
    int      fd;
    char     buf[32];
    ssize_t  n;

    if (path[0] == '\0') {
        return;
    }

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd == -1) {
        return;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';

    if (strtol(buf, NULL, 10) == (long) getpid()) {
        unlink(path);
    }
}


/*
 * SIGHUP with another error_log or pid line. What can fail comes first
 * (the new file opened, the new pid file written), so that on PG_ERR
 * nothing has changed and the reload is refused, as nginx refuses one
 * whose log it cannot open; then the log moves and the old pid file goes.
 */
static int
pgd_files_reconfigure(pgd_t *d, const pg_conf_t *conf, pg_error_t *err)
{
    int   fd, log_changed;
    char  old_pid[PG_CONF_PATH_MAX];

    log_changed = strcmp(conf->error_log, d->conf.error_log) != 0;
    fd = -1;

    if (log_changed && conf->error_log[0] != '\0'
        && pgd_log_open(conf->error_log, &fd, err) != PG_OK)
    {
        return PG_ERR;
    }

    if (strcmp(conf->pid, d->conf.pid) != 0) {
        memcpy(old_pid, pgd_pid_path, sizeof(old_pid));

        if (conf->pid[0] != '\0') {
            if (pgd_pid_write(conf->pid, err) != PG_OK) {
                if (fd != -1) {
                    close(fd);
                }

                return PG_ERR;
            }

        } else {
            pgd_pid_path[0] = '\0';
        }

        pgd_pid_remove(old_pid);
    }

    if (!log_changed) {
        return PG_OK;
    }

    pgd_log(d, PG_LOG_NOTICE, "the log goes to %s from now on",
            conf->error_log[0] != '\0' ? conf->error_log : "stderr");

    if (fd != -1) {
        pgd_log_to(fd);
        d->use_syslog = 0;

    } else if (pgd_stderr_fd != -1) {
        /* no error_log any more: back to the first stderr */
        fflush(stderr);
        dup2(pgd_stderr_fd, STDERR_FILENO);
        pgd_journal_check();

    } else {
        /* a daemon that has none: syslog */
        openlog(PGD_ACTOR, LOG_PID, LOG_DAEMON);
        d->use_syslog = 1;
    }

    return PG_OK;
}


/*
 * -d. The parent waits on a pipe until the daemon says it has started
 * ("ok") or why it could not (pgd_started()), and exits 0 or 1 with that:
 * a pid file that cannot be written is said on the terminal that asked
 * for the daemon, not only in a log nobody reads yet.
 */
static int
pgd_daemonize(pgd_t *d)
{
    int      fd, ready[2];
    char     msg[1024];
    pid_t    pid;
    size_t   got;
    ssize_t  n;

    if (pipe2(ready, O_CLOEXEC) != 0) {
        fprintf(stderr, "portal-gated: pipe failed: %s\n", strerror(errno));
        return PG_ERR;
    }

    pid = fork();

    if (pid < 0) {
        fprintf(stderr, "portal-gated: fork failed: %s\n", strerror(errno));
        close(ready[0]);
        close(ready[1]);
        return PG_ERR;
    }

    if (pid > 0) {
        close(ready[1]);
        got = 0;

        while (got < sizeof(msg) - 1) {
            n = read(ready[0], msg + got, sizeof(msg) - 1 - got);

            if (n > 0) {
                got += n;

            } else if (n == 0 || errno != EINTR) {
                break;
            }
        }

        msg[got] = '\0';

        if (strcmp(msg, "ok") == 0) {
            _exit(0);
        }

        fprintf(stderr, "portal-gated: %s\n",
                got > 0 ? msg : "the daemon ended as it started");
        _exit(1);
    }

    close(ready[0]);
    pgd_ready_fd = ready[1];
    pgd_daemonized = 1;

    setsid();

    if (chdir("/") != 0) {
        /* the config path was read already; nothing else is relative */
    }

    fd = open("/dev/null", O_RDWR);

    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);

        /* a terminal goes away with its session: log to syslog then,
         * unless an error_log file takes the log */
        if (isatty(STDERR_FILENO)) {
            openlog(PGD_ACTOR, LOG_PID, LOG_DAEMON);
            d->use_syslog = (pgd_log_fd == -1);
            dup2(fd, STDERR_FILENO);
        }

        if (fd > STDERR_FILENO) {
            close(fd);
        }
    }

    return PG_OK;
}


/*
 * Started (failure NULL), or not and why. -d: the parent hears it and
 * exits 0 or 1. In the foreground, a failure is also said on the first
 * stderr when the log went to an error_log file.
 */
static void
pgd_started(const char *failure)
{
    const char  *msg;

    if (pgd_ready_fd != -1) {
        msg = failure ? failure : "ok";

        if (write(pgd_ready_fd, msg, strlen(msg)) < 0) {
            /* the parent is gone: nobody to tell */
        }

        close(pgd_ready_fd);
        pgd_ready_fd = -1;
        return;
    }

    if (failure != NULL && pgd_stderr_fd != -1) {
        dprintf(pgd_stderr_fd, "portal-gated: %s\n", failure);
    }
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

    pgd_journal_check();

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
        if (pgd_check_files(&d->conf, &err) != PG_OK) {
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
    if ((d->conf.error_log[0] != '\0'
         && pgd_log_open(d->conf.error_log, &pgd_log_fd, &err) != PG_OK)
        || pgd_http_start(d) != PG_OK)
    {
        if (pgd_log_fd == -1 && d->conf.error_log[0] != '\0') {
            fprintf(stderr, "portal-gated: cannot start: %s\n", err.text);
        }

        pgd_http_stop(d);
        free(d->conf_path);
        free(d);
        return 1;                           /* said */
    }

    if (daemon && pgd_daemonize(d) != PG_OK) {
        pgd_http_stop(d);
        free(d->conf_path);
        free(d);
        return 1;
    }

    /* the log goes to the error_log file from here on */
    if (pgd_log_fd != -1) {
        pgd_log_to(pgd_log_fd);
        pgd_log_fd = -1;
    }

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

    } else if (d->conf.pid[0] != '\0'
               && pgd_pid_write(d->conf.pid, &err) != PG_OK)
    {
        snprintf(why, sizeof(why), "cannot start: %s", err.text);
    }

    if (why[0] != '\0') {
        pgd_log(d, PG_LOG_ERROR, "%s", why);
        pgd_started(why);
        rc = 1;

    } else {
        pgd_started(NULL);
        rc = pgd_run(d);
    }

    pgd_pid_remove(pgd_pid_path);
    pgd_http_stop(d);
    pgd_redis_close(d);
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
    int          redis_changed, same;
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

    redis_changed = strcmp(conf->redis_url, d->conf.redis_url) != 0
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
    int                   n, running, msgs, tick, nhttp, changes;
    char                  drain[64];
    long                  timeout;
    double                now, wake, cert_at;
    size_t                i;
    CURLMsg              *msg;
    CURLMcode             mc;
    pg_edge_req_t        *req;
    struct curl_waitfd    fds[4];

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
            pgd_log_reopen(d);
        }

        now = pgd_now();

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

        if (n == 3 && d->sub && (fds[2].revents & CURL_WAIT_POLLIN)) {
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
