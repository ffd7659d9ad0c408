/*
 * pgd_files.c: portal-gated's log file, pid file, -d and the journal's
 * priorities. See pgd_files.h.
 */

#define _GNU_SOURCE             /* pipe2 */
#include <errno.h>              /* errno, EINTR */
#include <fcntl.h>              /* open, fcntl, O_APPEND, O_NOFOLLOW */
#include <libgen.h>             /* dirname: -t checks the folders */
#include <stdio.h>              /* fprintf, snprintf, sscanf, dprintf */
#include <stdlib.h>             /* getenv, strtol */
#include <string.h>             /* strcmp, strerror, strlen, memcpy */
#include <syslog.h>             /* openlog: -d from a terminal */
#include <sys/file.h>           /* flock: the pid file's lock */
#include <sys/stat.h>           /* fstat: is stderr the journal? the pid
                                   file still ours? */
#include <unistd.h>             /* fork, setsid, dup2, access, rename */
#include "pgd_files.h"          /* the API this file implements */


#define PGD_FILES_SHOWN  160     /* bytes of a path in a message: the
                                   reason must fit after it */


static int   pgd_log_fd = -1;       /* error_log opened at start, until it
                                       becomes fd 2 */
static int   pgd_stderr_fd = -1;    /* the first stderr, while fd 2 is the
                                       log file (foreground only) */
static int   pgd_ready_fd = -1;     /* -d: to the parent, until started */
static int   pgd_daemonized;        /* -d, in the daemon */
static int   pgd_journal;           /* fd 2 is systemd's journal */
static char  pgd_pid_path[PG_CONF_PATH_MAX];    /* the pid file this
                                       process wrote; "": none */
static int   pgd_pid_fd = -1;       /* that file, open and flock()ed for
                                       the daemon's life: a second
                                       portal-gated finds it locked */


static int pgd_log_open(const char *path, int *fd, pg_error_t *err);
static void pgd_log_to(int fd);
static int pgd_pid_running(const char *path, pg_error_t *err);
static int pgd_pid_write(const char *path, pg_error_t *err);
static int pgd_pid_same(const char *path);
static void pgd_pid_remove(const char *path);


/* --- the journal -------------------------------------------------------- */

/*
 * Is fd 2 the stream systemd connected to the journal? $JOURNAL_STREAM
 * names it as "DEVICE:INODE" (systemd.exec(5)); a file or a pipe that
 * stderr became since (error_log, a shell's redirection) is not it. Then
 * each line starts with its syslog priority, "<5>", which the journal
 * reads (journalctl -p warning), and no time or pid: the journal keeps
 * both.
 */
void
pgd_files_journal_check(void)
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


int
pgd_files_journal(void)
{
    return pgd_journal;
}


/* --- -t, and the start ------------------------------------------------- */

/*
 * -t: can the error_log file and the pid file be written? As far as
 * access() tells (the start opens them for real), as nginx -t opens its
 * logs: a file or folder missing or not writable is said now, not at the
 * start of a daemon that is already in the background.
 */
int
pgd_files_check(const pg_conf_t *conf, pg_error_t *err)
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

        /* both are written in place: an existing one must be writable,
         * a new one needs its folder */
        if (access(path[i], F_OK) == 0) {
            if (access(path[i], W_OK) != 0) {
                snprintf(err->text, sizeof(err->text), "%s %.*s cannot be "
                         "written: %s", what[i], PGD_FILES_SHOWN, path[i],
                         strerror(errno));
                return PG_ERR;
            }

            continue;
        }

        snprintf(dir, sizeof(dir), "%s", path[i]);

        if (access(dirname(dir), W_OK | X_OK) != 0) {
            snprintf(err->text, sizeof(err->text), "%s %.*s cannot be "
                     "written: its folder: %s", what[i], PGD_FILES_SHOWN,
                     path[i], strerror(errno));
            return PG_ERR;
        }
    }

    return PG_OK;
}


int
pgd_files_open(const pg_conf_t *conf, pg_error_t *err)
{
    /* said before anything is opened or bound, and before -d: a second
     * start of the same config fails here, the first one untouched */
    if (conf->pid[0] != '\0' && pgd_pid_running(conf->pid, err) != PG_OK) {
        return PG_ERR;
    }

    if (conf->error_log[0] == '\0') {
        return PG_OK;
    }

    return pgd_log_open(conf->error_log, &pgd_log_fd, err);
}


/*
 * -d. The parent waits on a pipe until the daemon says it has started
 * ("ok") or why it could not (pgd_files_started()), and exits 0 or 1 with
 * that: a pid file that cannot be written is said on the terminal that
 * asked for the daemon, not only in a log nobody reads yet.
 */
int
pgd_files_daemonize(pgd_t *d)
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


void
pgd_files_log_start(void)
{
    if (pgd_log_fd != -1) {
        pgd_log_to(pgd_log_fd);
        pgd_log_fd = -1;
    }
}


int
pgd_files_pid(const pg_conf_t *conf, pg_error_t *err)
{
    if (conf->pid[0] == '\0') {
        return PG_OK;
    }

    return pgd_pid_write(conf->pid, err);
}


/*
 * Started (failure NULL), or not and why. -d: the parent hears it and
 * exits 0 or 1. In the foreground, a failure is also said on the first
 * stderr when the log went to an error_log file.
 */
void
pgd_files_started(const char *failure)
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


void
pgd_files_end(void)
{
    pgd_pid_remove(pgd_pid_path);

    if (pgd_pid_fd != -1) {
        close(pgd_pid_fd);
        pgd_pid_fd = -1;
    }
}


/* --- the log file ------------------------------------------------------- */

/* The error_log file, opened to append (made 0640 when missing): a new
 * *fd, close-on-exec. */
static int
pgd_log_open(const char *path, int *fd, pg_error_t *err)
{
    *fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

    if (*fd == -1) {
        snprintf(err->text, sizeof(err->text), "cannot open error_log "
                 "%.*s: %s", PGD_FILES_SHOWN, path, strerror(errno));
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
    pgd_files_journal_check();
}


/* SIGUSR1: open the error_log file again (logrotate moved the old one
 * away); if it cannot be, the log stays in the file open before. */
void
pgd_files_reopen(pgd_t *d)
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


/* --- the pid file ------------------------------------------------------- */

/*
 * Is a portal-gated running with the pid file at path? The one that wrote
 * it holds a flock() on it for its life (pgd_pid_write()); a lock is
 * released by the kernel when that process ends, however it ends, so a
 * stale file (a crash, a kill -9) never blocks a start. PG_OK: none is;
 * PG_ERR and "already running (pid N): ..." when one is. The file is only
 * read: a second start leaves it as it is.
 */
static int
pgd_pid_running(const char *path, pg_error_t *err)
{
    int      fd, locked;
    char     buf[32];
    ssize_t  n;

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd == -1) {
        return PG_OK;
    }

    locked = (flock(fd, LOCK_SH | LOCK_NB) == -1 && errno == EWOULDBLOCK);

    if (!locked) {
        close(fd);                      /* and with it the shared lock */
        return PG_OK;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';

    snprintf(err->text, sizeof(err->text), "already running (pid %ld): "
             "pid file %.*s is locked by it", strtol(buf, NULL, 10),
             PGD_FILES_SHOWN, path);

    return PG_ERR;
}


/*
 * The pid file: PATH itself, opened (never through a link, nor a file of
 * another owner or with other names) and flock()ed before anything is
 * written, then truncated and given this process's pid. The lock is the
 * arbiter: of two starting at once, the one that does not get it says
 * "already running (pid N)" with N read from the file, and touches
 * nothing; no temporary name one could remove under the other. The file
 * stays open and locked (pgd_pid_fd) until the exit or a HUP that moves
 * it. pgd_pid_path says which file to remove at exit.
 */
static int
pgd_pid_write(const char *path, pg_error_t *err)
{
    int          fd, n, saved;
    char         buf[32];
    ssize_t      got;
    struct stat  st;

    fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
              0644);

    if (fd == -1) {
        saved = errno;
        goto failed;
    }

    if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
        saved = errno;

        if (saved != EWOULDBLOCK) {
            close(fd);
            goto failed;
        }

        /* another holds it: a running one (or one starting, which runs) */
        got = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        buf[got > 0 ? got : 0] = '\0';

        if (strtol(buf, NULL, 10) > 0) {
            snprintf(err->text, sizeof(err->text), "already running (pid "
                     "%ld): pid file %.*s is locked by it",
                     strtol(buf, NULL, 10), PGD_FILES_SHOWN, path);

        } else {
            snprintf(err->text, sizeof(err->text), "already running: pid "
                     "file %.*s is locked by another process",
                     PGD_FILES_SHOWN, path);
        }

        return PG_ERR;
    }

    /* the lock is ours: a file someone else planted is not written to */
    if (fstat(fd, &st) != 0) {
        saved = errno;
        close(fd);
        goto failed;
    }

    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1) {
        close(fd);
        snprintf(err->text, sizeof(err->text), "cannot write pid file "
                 "%.*s: it is not a file of this user's with one name",
                 PGD_FILES_SHOWN, path);
        return PG_ERR;
    }

    n = snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());

    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, n, 0) != n) {
        saved = errno;
        unlink(path);                   /* ours, locked: half-written */
        close(fd);
        goto failed;
    }

    /* a HUP's move to another path: the old file's lock goes, and the
     * caller removes that file next */
    if (pgd_pid_fd != -1) {
        close(pgd_pid_fd);
    }

    pgd_pid_fd = fd;
    snprintf(pgd_pid_path, sizeof(pgd_pid_path), "%s", path);

    return PG_OK;

failed:

    snprintf(err->text, sizeof(err->text), "cannot write pid file %.*s: %s",
             PGD_FILES_SHOWN, path, strerror(saved));

    return PG_ERR;
}


/* Is path the pid file this process holds, by another name (/var/run/x
 * for /run/x)? Its own lock would refuse it, and removing the "old" name
 * would remove it. */
static int
pgd_pid_same(const char *path)
{
    struct stat  mine, there;

    return pgd_pid_fd != -1 && fstat(pgd_pid_fd, &mine) == 0
           && stat(path, &there) == 0 && mine.st_dev == there.st_dev
           && mine.st_ino == there.st_ino;
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


/* --- SIGHUP ------------------------------------------------------------- */

/*
 * SIGHUP with another error_log or pid line. What can fail comes first
 * (the new file opened, the new pid file written), so that on PG_ERR
 * nothing has changed and the reload is refused, as nginx refuses one
 * whose log it cannot open; then the log moves and the old pid file goes.
 */
int
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

        if (pgd_pid_same(conf->pid)) {
            /* the same file: only its name changes, and nothing goes */
            snprintf(pgd_pid_path, sizeof(pgd_pid_path), "%s", conf->pid);
            old_pid[0] = '\0';

        } else if (conf->pid[0] != '\0') {
            if (pgd_pid_write(conf->pid, err) != PG_OK) {
                if (fd != -1) {
                    close(fd);
                }

                return PG_ERR;
            }

        } else {
            pgd_pid_path[0] = '\0';

            if (pgd_pid_fd != -1) {
                close(pgd_pid_fd);
                pgd_pid_fd = -1;
            }
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
        pgd_files_journal_check();

    } else {
        /* a daemon that has none: syslog */
        openlog(PGD_ACTOR, LOG_PID, LOG_DAEMON);
        d->use_syslog = 1;
    }

    return PG_OK;
}
