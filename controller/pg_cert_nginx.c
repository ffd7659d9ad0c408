/*
 * pg_cert_nginx.c: the nginx side of an install (pg_cert_install.h):
 * `nginx -t` for one nginx, run as a child of this process and waited for
 * by its pid only; the SIGHUP to the master named by a pid file, once that
 * process is known to be that nginx's master, or without a pid file
 * `nginx -s reload` run as nginx -t is (the package's root helper as
 * binary: portal-gated needs no CAP_KILL); and pg_cert_reload_all().
 * pg_cert_install.c puts the files in place and calls pg_cert_nginx_test()
 * and pg_cert_reload() (pg_cert_private.h).
 *
 * The file's sections:
 *   nginx -t          posix_spawn (no shell), stderr kept, timeout, cancel;
 *                     nginx -s reload the same way
 *   the masters       /proc says it is nginx's master; SIGHUP via a pidfd
 */

#define _GNU_SOURCE             /* pipe2, environ, posix_spawn_file_actions_
                                   addclosefrom_np */
#include <errno.h>              /* errno, EINTR, ESRCH, ENOSYS, ECHILD */
#include <fcntl.h>              /* open, fcntl, O_*, F_SETFD */
#include <poll.h>               /* poll: nginx -t's stderr, with a timeout */
#include <signal.h>             /* kill, SIGHUP, SIGKILL, sigfillset */
#include <spawn.h>              /* posix_spawn and its attributes */
#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* free, strtol */
#include <string.h>             /* strcmp, strchr, strerror,
                                   strrchr */
#include <sys/syscall.h>        /* SYS_pidfd_open, SYS_pidfd_send_signal */
#include <sys/wait.h>           /* waitpid, WIFEXITED... */
#include <time.h>               /* clock_gettime, nanosleep */
#include <unistd.h>             /* environ, access, syscall */
#include "pg_cert_private.h"    /* pg_cert_msg; this file's part of
                                   pg_cert_install.h */


/* the same numbers on every architecture (Linux 5.3); headers older
 * than the kernel may lack them */
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal  424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open         434
#endif

#define PG_CERT_STDERR_MAX   4096       /* bytes of nginx -t's stderr kept */
#define PG_CERT_SHOWN        120        /* bytes of a path in a message */


static long long pg_cert_ms(void);
static int pg_cert_nginx_run(const pg_cert_nginx_t *ngx, int reload,
    pg_error_t *err);
static int pg_cert_spawn(pid_t *pid, const char *binary, char *const argv[],
    int null, int err_fd);
static void pg_cert_shown(const char *s, char *buf, size_t size);
static int pg_cert_is_nginx(long pid, const char *binary, pg_error_t *err);
static int pg_cert_hup(long pid, const char *binary, pg_error_t *err);


const char  *pg_cert_proc_root = "/proc";   /* pg_cert_private.h */


/* --- nginx -t ----------------------------------------------------------- */

static long long
pg_cert_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}


/*
 * Start binary with argv as a child of this process, stdin and stdout on
 * null, stderr on err_fd: 0 and *pid, or an errno (ENOENT, EACCES... from
 * the exec itself). posix_spawn, not fork: glibc's is a vfork-style clone
 * that shares the daemon's memory until the exec. A fork from the worker
 * thread copies the daemon's page tables under its memory map's lock, and
 * leaves every page copy-on-write until the child (at the worker's nice)
 * gets round to its exec: the daemon's loop, which must forward a kill
 * within milliseconds, stalls on both (bench/RESULTS.md, "Kill propagation
 * while orders are in flight"). The child gets every signal at its
 * default (a daemon's handler or ignored signal is not nginx's), none
 * blocked, and none of the daemon's files above 2.
 */
static int
pg_cert_spawn(pid_t *pid, const char *binary, char *const argv[], int null,
    int err_fd)
{
    int                         rc;
    sigset_t                    all, none;
    posix_spawnattr_t           attr;
    posix_spawn_file_actions_t  fa;

    rc = posix_spawnattr_init(&attr);

    if (rc != 0) {
        return rc;
    }

    rc = posix_spawn_file_actions_init(&fa);

    if (rc != 0) {
        posix_spawnattr_destroy(&attr);
        return rc;
    }

    sigfillset(&all);
    sigemptyset(&none);

    if ((rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF
                                              | POSIX_SPAWN_SETSIGMASK))
            == 0
        && (rc = posix_spawnattr_setsigdefault(&attr, &all)) == 0
        && (rc = posix_spawnattr_setsigmask(&attr, &none)) == 0
        && (rc = posix_spawn_file_actions_adddup2(&fa, null, 0)) == 0
        && (rc = posix_spawn_file_actions_adddup2(&fa, null, 1)) == 0
        && (rc = posix_spawn_file_actions_adddup2(&fa, err_fd, 2)) == 0
        && (rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) == 0)
    {
        rc = posix_spawn(pid, binary, &fa, &attr, argv, environ);
    }

    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);

    return rc;
}


/* `nginx -t` for one nginx: pg_cert_private.h */
int
pg_cert_nginx_test(const pg_cert_nginx_t *ngx, pg_error_t *err)
{
    return pg_cert_nginx_run(ngx, 0, err);
}


/*
 * `BINARY -t -q -c CONF [-p PREFIX]` (reload 0) or `BINARY -s reload -c
 * CONF [-p PREFIX]` (reload 1), waited for with the timeout: PG_OK when it
 * exits 0, else err quotes the first line it wrote on stderr.
 */
static int
pg_cert_nginx_run(const pg_cert_nginx_t *ngx, int reload, pg_error_t *err)
{
    int               fds[2], null, status, eof, timed_out, cancelled,
                      argc, rc;
    char             *argv[8], *nl, *p;
    char              out[PG_CERT_STDERR_MAX + 1], sink[512];
    pid_t             pid, r;
    size_t            got;
    ssize_t           n;
    long long         deadline, left;
    const char       *binary;
    struct pollfd     pfd;
    struct timespec   nap = { 0, 10 * 1000000 };

    binary = ngx->binary ? ngx->binary : PG_CERT_NGINX_BINARY;

    /* said first, in the words an operator expects for a path */
    if (access(binary, X_OK) == -1) {
        pg_cert_msg(err, "cannot run %.*s: %s", PG_CERT_SHOWN, binary,
                    strerror(errno));
        return PG_ERR;
    }

    argc = 0;
    argv[argc++] = (char *) binary;

    if (reload) {
        argv[argc++] = "-s";
        argv[argc++] = "reload";

    } else {
        argv[argc++] = "-t";
        argv[argc++] = "-q";
    }

    argv[argc++] = "-c";
    argv[argc++] = (char *) ngx->conf;

    if (ngx->prefix != NULL) {
        argv[argc++] = "-p";
        argv[argc++] = (char *) ngx->prefix;
    }

    argv[argc] = NULL;

    /* close-on-exec from the start: not inherited by anything another
     * thread starts meanwhile */
    if (pipe2(fds, O_CLOEXEC) == -1) {
        pg_cert_msg(err, "cannot run %.*s: pipe: %s", PG_CERT_SHOWN, binary,
                    strerror(errno));
        return PG_ERR;
    }

    null = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (null == -1) {
        pg_cert_msg(err, "cannot open /dev/null: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return PG_ERR;
    }

    rc = pg_cert_spawn(&pid, binary, argv, null, fds[1]);

    if (rc != 0) {
        pg_cert_msg(err, "cannot run %.*s: %s", PG_CERT_SHOWN, binary,
                    strerror(rc));
        close(fds[0]);
        close(fds[1]);
        close(null);
        return PG_ERR;
    }

    close(fds[1]);
    close(null);

    got = 0;
    eof = 0;
    timed_out = 0;
    cancelled = 0;
    status = 0;
    deadline = pg_cert_ms()
               + 1000LL * (ngx->timeout > 0 ? ngx->timeout
                                             : PG_CERT_NGINX_TIMEOUT);

    for ( ;; ) {
        r = waitpid(pid, &status, WNOHANG);

        if (r == pid) {
            break;
        }

        if (r == -1 && errno != EINTR) {
            /* ECHILD: someone else reaped it (SIGCHLD ignored, or a
             * waitpid(-1)): its status is lost */
            pg_cert_msg(err, "its exit status is lost (%s)",
                        strerror(errno));
            close(fds[0]);
            return PG_ERR;
        }

        left = deadline - pg_cert_ms();

        /* the daemon is stopping: cut it short, as a timeout */
        if (ngx->cancel != NULL && *ngx->cancel) {
            left = 0;
            cancelled = 1;
        }

        if (left <= 0) {
            kill(pid, SIGKILL);

            while (waitpid(pid, &status, 0) == -1 && errno == EINTR) {
                /* void */
            }

            timed_out = 1;
            break;
        }

        if (eof) {
            /* stderr closed; the process is still finishing */
            nanosleep(&nap, NULL);
            continue;
        }

        pfd.fd = fds[0];
        pfd.events = POLLIN;
        pfd.revents = 0;

        if (poll(&pfd, 1, left < 100 ? (int) left : 100) <= 0) {
            continue;
        }

        /* past what is kept, the rest is read and dropped, so that nginx
         * never blocks on a full pipe */
        n = (got < PG_CERT_STDERR_MAX)
            ? read(fds[0], out + got, PG_CERT_STDERR_MAX - got)
            : read(fds[0], sink, sizeof(sink));

        if (n > 0) {
            got += (got < PG_CERT_STDERR_MAX) ? (size_t) n : 0;

        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
            eof = 1;
        }
    }

    /* what is still in the pipe: the process has exited */
    (void) fcntl(fds[0], F_SETFL, O_NONBLOCK);

    while (got < PG_CERT_STDERR_MAX
           && (n = read(fds[0], out + got, PG_CERT_STDERR_MAX - got)) > 0)
    {
        got += n;
    }

    close(fds[0]);
    out[got] = '\0';

    if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return PG_OK;
    }

    /* the first line that says something, without control characters */
    p = out;

    while (*p == '\n' || *p == '\r' || *p == ' ') {
        p++;
    }

    nl = strchr(p, '\n');

    if (nl != NULL) {
        *nl = '\0';
    }

    for (nl = p; *nl != '\0'; nl++) {
        *nl = ((unsigned char) *nl < ' ' || *nl == 0x7f) ? ' ' : *nl;
    }

    if (cancelled) {
        pg_cert_msg(err, "cancelled: portal-gated is stopping");

    } else if (timed_out) {
        pg_cert_msg(err, "no answer in %d s",
                    ngx->timeout > 0 ? ngx->timeout : PG_CERT_NGINX_TIMEOUT);

    } else if (*p != '\0') {
        pg_cert_msg(err, "%s", p);

    } else if (WIFEXITED(status)) {
        pg_cert_msg(err, "exit status %d", WEXITSTATUS(status));

    } else {
        pg_cert_msg(err, "killed by signal %d",
                    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }

    return PG_ERR;
}


/* --- the masters: which process, and its SIGHUP ------------------------- */

/* A command line's text shown in a message: control characters as '?',
 * cut at 60 bytes. */
static void
pg_cert_shown(const char *s, char *buf, size_t size)
{
    char  *p;

    snprintf(buf, size, "%.60s", s);

    for (p = buf; *p != '\0'; p++) {
        *p = ((unsigned char) *p < ' ' || *p == 0x7f) ? '?' : *p;
    }
}


/*
 * Is pid the master of the nginx that runs binary? PG_OK, or PG_ERR with
 * why alone in err ("which is not nginx (tail)", "which is gone", "which
 * cannot be inspected from here": it exists, /proc hides it). From
 * Linux's /proc: comm is the name of the program file the process runs
 * (its first 15 bytes), cmdline its arguments, NUL-separated. Accepted:
 *   - comm "nginx", and a command line that starts "nginx: master
 *     process" (what nginx's master shows), or whose argv[0] is binary
 *     (before it shows that);
 *   - valgrind running it (the tests run nginx so): argv[0]'s file name
 *     starts "valgrind", or comm starts "memcheck", and one argument is
 *     binary exactly.
 * Nothing else: a `tail -f /var/log/nginx/error.log` (whose command line
 * says nginx) would die of SIGHUP, and so would most programs.
 */
static int
pg_cert_is_nginx(long pid, const char *binary, pg_error_t *err)
{
    int          fd, saved;
    char         path[256], comm[32], cmd[4096], shown[64];
    char        *arg, *end, *base;
    ssize_t      n;

    snprintf(path, sizeof(path), "%.200s/%ld/comm", pg_cert_proc_root, pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd == -1) {
        saved = errno;

        /*
         * There, but hidden: the packaged unit's ProtectProc=invisible
         * shows no process of another user (ENOENT), hidepid=2 likewise,
         * or refuses (EACCES). kill(0) still tells (EPERM: it exists).
         */
        if ((saved == ENOENT || saved == EACCES)
            && (kill((pid_t) pid, 0) == 0 || errno == EPERM))
        {
            pg_cert_msg(err, "which cannot be inspected from here (its "
                        "/proc entry: %s; ProtectProc=): drop pid=, the "
                        "reload is then `binary -s reload`",
                        strerror(saved));
            return PG_ERR;
        }

        pg_cert_msg(err, "which is gone");
        return PG_ERR;
    }

    n = read(fd, comm, sizeof(comm) - 1);
    close(fd);
    comm[n > 0 ? n : 0] = '\0';
    comm[strcspn(comm, "\n")] = '\0';

    snprintf(path, sizeof(path), "%.200s/%ld/cmdline", pg_cert_proc_root,
             pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    n = (fd == -1) ? -1 : read(fd, cmd, sizeof(cmd) - 1);

    if (fd != -1) {
        close(fd);
    }

    /* NUL-terminated arguments, the last one too */
    cmd[n > 0 ? n : 0] = '\0';
    end = cmd + (n > 0 ? n : 0);

    if (strcmp(comm, "nginx") == 0) {
        if (strncmp(cmd, "nginx: master process",
                    sizeof("nginx: master process") - 1) == 0
            || strcmp(cmd, binary) == 0)
        {
            return PG_OK;
        }

        pg_cert_shown(cmd, shown, sizeof(shown));
        pg_cert_msg(err, "which is nginx but not its master (%s)", shown);
        return PG_ERR;
    }

    base = strrchr(cmd, '/');
    base = base ? base + 1 : cmd;

    if (strncmp(base, "valgrind", 8) == 0
        || strncmp(comm, "memcheck", 8) == 0)
    {
        for (arg = cmd + strlen(cmd) + 1; arg < end;
             arg += strlen(arg) + 1)
        {
            if (strcmp(arg, binary) == 0) {
                return PG_OK;
            }
        }

        pg_cert_msg(err, "which is valgrind, but not running the configured "
                    "nginx");
        return PG_ERR;
    }

    pg_cert_shown(comm, shown, sizeof(shown));
    pg_cert_msg(err, "which is not nginx (%s)", shown);

    return PG_ERR;
}


/*
 * SIGHUP to pid once it is known to be that nginx's master. The check and
 * the signal are about the same process: a pidfd is taken first, and the
 * signal sent through it fails (ESRCH) if that process has ended since,
 * even when its pid was given to another. Linux < 5.3 (or a seccomp filter
 * that refuses pidfd_open) falls back to kill().
 */
static int
pg_cert_hup(long pid, const char *binary, pg_error_t *err)
{
    int  pidfd, rc;

    pidfd = (int) syscall(SYS_pidfd_open, (pid_t) pid, 0U);

    if (pidfd == -1 && errno == ESRCH) {
        pg_cert_msg(err, "which is gone");
        return PG_ERR;
    }

    if (pidfd == -1 && errno != ENOSYS && errno != EPERM) {
        pg_cert_msg(err, "which cannot be signalled: %s", strerror(errno));
        return PG_ERR;
    }

    if (pidfd != -1) {
        (void) fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    }

    if (pg_cert_is_nginx(pid, binary, err) != PG_OK) {
        if (pidfd != -1) {
            close(pidfd);
        }

        return PG_ERR;
    }

    rc = -1;

    if (pidfd != -1) {
        rc = (int) syscall(SYS_pidfd_send_signal, pidfd, SIGHUP, NULL, 0U);
    }

    if (pidfd == -1 || (rc == -1 && errno == ENOSYS)) {
        rc = kill((pid_t) pid, SIGHUP);
    }

    if (rc == -1 && errno == EPERM) {
        /* the packaged unit gives no CAP_KILL: the reload is the root
         * helper's, through binary= without pid= */
        pg_cert_msg(err, "which cannot be signalled: %s (without pid=, "
                    "the reload is `binary -s reload`)", strerror(errno));

    } else if (rc == -1) {
        pg_cert_msg(err, "which cannot be signalled: %s",
                    errno == ESRCH ? "it is gone" : strerror(errno));
    }

    if (pidfd != -1) {
        close(pidfd);
    }

    return rc == 0 ? PG_OK : PG_ERR;
}


/* SIGHUP to one master: pg_cert_private.h */
int
pg_cert_reload(const pg_cert_nginx_t *ngx, pg_error_t *err)
{
    long         pid;
    char        *text, *end;
    size_t       len;
    pg_error_t   why;

    /* nginx's own reload, through binary: the package's root helper,
     * so that portal-gated needs no right to signal nginx (CAP_KILL
     * would let it signal any process) */
    if (ngx->pid == NULL && ngx->by_binary) {
        if (pg_cert_nginx_run(ngx, 1, &why) != PG_OK) {
            pg_cert_msg(err, "%.*s -s reload failed: %s", PG_CERT_SHOWN,
                        ngx->binary ? ngx->binary : PG_CERT_NGINX_BINARY,
                        why.text);
            return PG_ERR;
        }

        return PG_OK;
    }

    /* no reload wanted: nginx reads the pair at each handshake */
    if (ngx->pid == NULL) {
        return PG_OK;
    }

    if (pg_cert_read_file(ngx->pid, &text, &len, err) != PG_OK) {
        /* "cannot read pid file F: ..." */
        return PG_ERR;
    }

    errno = 0;
    pid = strtol(text, &end, 10);

    while (end != text && (*end == '\n' || *end == ' ' || *end == '\r')) {
        end++;
    }

    /* never 0 or negative: kill() would signal a whole process group */
    if (end == text || *end != '\0' || errno != 0 || pid <= 0
        || pid > 0x7fffffffL)
    {
        pg_cert_msg(err, "pid file %.*s holds no pid", PG_CERT_SHOWN,
                    ngx->pid);
        free(text);
        return PG_ERR;
    }

    free(text);

    /* a stale pid file (nginx stopped, its pid reused) must not get an
     * unrelated process SIGHUP, which ends most programs */
    if (pg_cert_hup(pid, ngx->binary ? ngx->binary : PG_CERT_NGINX_BINARY,
                    &why) != PG_OK)
    {
        pg_cert_msg(err, "pid file %.*s names process %ld, %s: not "
                    "signalled", PG_CERT_SHOWN, ngx->pid, pid, why.text);
        return PG_ERR;
    }

    return PG_OK;
}


int
pg_cert_reload_all(const pg_cert_nginx_t *nginx, size_t nginx_n,
    pg_error_t *err)
{
    int         rc;
    size_t      i;
    pg_error_t  why;

    rc = PG_OK;

    for (i = 0; i < nginx_n; i++) {
        if (pg_cert_reload(&nginx[i], &why) != PG_OK && rc == PG_OK) {
            pg_cert_msg(err, "nginx %.*s was not reloaded: %s",
                        PG_CERT_SHOWN, nginx[i].conf, why.text);
            rc = PG_ERR;
        }
    }

    return rc;
}
