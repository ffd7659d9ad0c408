/*
 * propagation-probe: how long a switch takes to reach every nginx worker
 * of every edge (bench/propagation.sh runs it).
 *
 *   propagation-probe --mode kill|reload --rounds N --workers W
 *       --edge PORT:MASTER_PID ...        (one per edge)
 *       --path /portal/ --company 42
 *       --on 'CMD ARGS' ... --off 'CMD ARGS' ...
 *       [--map FILE] [--per P] [--pause MIN_MS:MAX_MS] [--timeout S]
 *   propagation-probe --mode load --requests N --workers W
 *       --edge PORT:MASTER_PID ... --path /portal/ --company 42
 *
 * Each round has two phases: "on" (run the --on commands, wait until every
 * worker answers 200) then, after a random pause, "off", which is measured:
 *
 *   start  just before the first --off command is started (in reload mode,
 *          just before FILE is rewritten with "default 0;")
 *   t0     when the last --off command has exited (waitpid returned)
 *   t1     the earliest moment after which every answer is "off" (404) and
 *          every worker of every edge has answered off: the latest of
 *          (a) each live worker's first off answer after its last on answer
 *          (b) the first off answer after the last on answer from anyone
 *              (e.g. an old worker of a reload that has exited since).
 *
 * The probe is idle until t0 (no request is in flight before it). From t0
 * it keeps one request in flight on each of its keep-alive connections
 * (a tight loop: the next request leaves as soon as the answer is read),
 * until the phase is done. Each answer carries X-Pid: the worker's pid, so
 * the probe knows which worker answered. The workers are the master's
 * children (read from /proc); a phase is done when:
 *   - every live worker of every edge has answered off since its last on
 *     answer, and an off answer has come after the last on answer;
 *   - in reload mode: the workers that were there before the reload have
 *     exited, and each edge has W workers again.
 *
 * kill mode: the workers stay; the probe opens keep-alive connections
 * until each worker has P of them (reuseport hashes each connection to one
 * worker), once at the start.
 * reload mode: FILE (an nginx map include) is rewritten atomically, then
 * the commands (nginx -s reload of each edge) run. Connections that the old
 * workers close are opened again, until each new worker has P.
 *
 * One line per round on stdout:
 *   round MODE I START_US T0_US T1_US CMD_MS PROP_MS TOTAL_MS E1_MS.. \
 *         WRONG ANSWERS FLAPS LOST OPENED GONE_MS FIRST_MS ON_ANSWERS
 * START_US/T0_US/T1_US: CLOCK_REALTIME in microseconds (to line up with
 * the daemon's log); the durations come from CLOCK_MONOTONIC. E1_MS..:
 * t1 of each edge alone, from t0. WRONG: on answers after t0. FLAPS: a
 * worker that answered on after it had answered off (must be 0). LOST:
 * requests whose connection closed before the answer (reload). OPENED:
 * connections opened during the phase. GONE_MS: reload mode, when the last
 * old worker was seen gone, from t0 (polled every 0.5 ms); -1 otherwise.
 * FIRST_MS: when every edge had at least one worker answering off, from t0
 * (kill: the edge's zone has the new snapshot; the other worker may still
 * be busy with the PUT). ON_ANSWERS: the answers of the round's "on"
 * phase (ANSWERS counts the measured "off" phase's).
 *
 * load mode: no command, no phases: the same keep-alive connections (P
 * per worker), one request in flight on each in a tight loop, until N
 * answers have come; prints "load N MS". bench/propagation-sync.sh runs it
 * to learn what serving the probe's requests costs the workers, and takes
 * that out of their CPU time per change.
 */

#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_EDGES    8
#define MAX_CHILD    64
#define MAX_CONNS    256
#define MAX_WORKERS  512
#define MAX_CMDS     16
#define BUF_SIZE     8192

enum { MODE_KILL, MODE_RELOAD, MODE_LOAD };

typedef struct {
    int     port;
    int     master;
    int     children[MAX_CHILD];
    int     nchildren;
    int     old[MAX_CHILD];
    int     nold;
    double  t1;             /* this edge's own t1, this phase */
} edge_t;

typedef struct {
    int     fd;             /* -1: free */
    int     edge;
    int     pid;            /* the worker, 0 until the first answer */
    int     busy;           /* a request in flight */
    size_t  len;
    char    buf[BUF_SIZE];
} conn_t;

typedef struct {
    int     pid;
    int     edge;
    double  since;          /* first right answer since the last wrong; 0 */
    int     answered;       /* a right or wrong answer this phase */
} worker_t;

static int       mode = MODE_KILL;
static int       rounds = 200;
static long      requests = 10000;      /* load mode */
static int       nworkers = 2;
static int       per = 1;
static int       pause_min = 20, pause_max = 60;
static double    timeout_ms = 15000;
static const char *path = "/portal/";
static const char *company = "42";
static const char *map_file;
static char     *on_cmds[MAX_CMDS], *off_cmds[MAX_CMDS];
static int       non, noff;

static edge_t    edges[MAX_EDGES];
static int       nedges;
static conn_t    conns[MAX_CONNS];
static worker_t  workers[MAX_WORKERS];
static int       nworkers_seen;

static char      request[512];
static size_t    request_len;

/* per phase */
static int       target;            /* 1: on (200), 0: off (404) */
static int       wrong_pending;
static double    first_right_after_wrong;
static long      n_wrong, n_answers, n_flaps, n_lost, n_opened;


static void
die(const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    fprintf(stderr, "propagation-probe: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}


static double
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}


static long long
real_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}


/* --- /proc: the master's live children ---------------------------------- */

static void
scan_children(void)
{
    int             i, pid, ppid;
    char            file[300], text[512], state, *p;
    ssize_t         n;
    DIR            *dir;
    struct dirent  *de;
    int             fd;

    for (i = 0; i < nedges; i++) {
        edges[i].nchildren = 0;
    }

    dir = opendir("/proc");
    if (dir == NULL) {
        die("opendir /proc: %s", strerror(errno));
    }

    while ((de = readdir(dir)) != NULL) {
        if (!isdigit((unsigned char) de->d_name[0])) {
            continue;
        }

        snprintf(file, sizeof(file), "/proc/%s/stat", de->d_name);
        fd = open(file, O_RDONLY);
        if (fd < 0) {
            continue;
        }

        n = read(fd, text, sizeof(text) - 1);
        close(fd);

        if (n <= 0) {
            continue;
        }

        text[n] = '\0';
        p = strrchr(text, ')');

        if (p == NULL || sscanf(p + 1, " %c %d", &state, &ppid) != 2) {
            continue;
        }

        if (state == 'Z' || state == 'X') {
            continue;
        }

        pid = atoi(de->d_name);

        for (i = 0; i < nedges; i++) {
            if (edges[i].master == ppid && edges[i].nchildren < MAX_CHILD) {
                edges[i].children[edges[i].nchildren++] = pid;
            }
        }
    }

    closedir(dir);
}


static int
is_old(edge_t *e, int pid)
{
    int  i;

    for (i = 0; i < e->nold; i++) {
        if (e->old[i] == pid) {
            return 1;
        }
    }

    return 0;
}


static int
old_alive(edge_t *e)
{
    int  i;

    for (i = 0; i < e->nchildren; i++) {
        if (is_old(e, e->children[i])) {
            return 1;
        }
    }

    return 0;
}


/* --- workers and connections ------------------------------------------- */

static worker_t *
worker_get(int pid, int edge)
{
    int  i;

    for (i = 0; i < nworkers_seen; i++) {
        if (workers[i].pid == pid) {
            return &workers[i];
        }
    }

    if (nworkers_seen == MAX_WORKERS) {
        /* forget the workers that have gone (reloads make new ones) */
        int  j, k, e, alive;

        for (i = 0, k = 0; i < nworkers_seen; i++) {
            alive = 0;
            e = workers[i].edge;
            for (j = 0; j < edges[e].nchildren; j++) {
                alive |= edges[e].children[j] == workers[i].pid;
            }
            if (alive) {
                workers[k++] = workers[i];
            }
        }

        nworkers_seen = k;

        if (nworkers_seen == MAX_WORKERS) {
            die("too many workers");
        }
    }

    workers[nworkers_seen].pid = pid;
    workers[nworkers_seen].edge = edge;
    workers[nworkers_seen].since = 0;
    workers[nworkers_seen].answered = 0;

    return &workers[nworkers_seen++];
}


static int
conns_of(int pid)
{
    int  i, n = 0;

    for (i = 0; i < MAX_CONNS; i++) {
        n += conns[i].fd >= 0 && conns[i].pid == pid;
    }

    return n;
}


static void
conn_close(conn_t *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }

    c->fd = -1;
    c->pid = 0;
    c->busy = 0;
    c->len = 0;
}


static conn_t *
conn_open(int edge)
{
    int                 i, fd, one = 1;
    conn_t             *c = NULL;
    struct sockaddr_in  sin;

    for (i = 0; i < MAX_CONNS; i++) {
        if (conns[i].fd < 0) {
            c = &conns[i];
            break;
        }
    }

    if (c == NULL) {
        die("out of connection slots");
    }

    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        die("socket: %s", strerror(errno));
    }

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(edges[edge].port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* loopback: connect completes at once (the kernel's backlog) */
    if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) != 0) {
        die("connect 127.0.0.1:%d: %s", edges[edge].port, strerror(errno));
    }

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, O_NONBLOCK);

    c->fd = fd;
    c->edge = edge;
    c->pid = 0;
    c->busy = 0;
    c->len = 0;
    n_opened++;

    return c;
}


static void
conn_send(conn_t *c)
{
    ssize_t  n;

    n = write(c->fd, request, request_len);

    if (n == (ssize_t) request_len) {
        c->busy = 1;
        return;
    }

    /* a closed connection (an old worker left): open another later */
    conn_close(c);
}


/*
 * A complete answer in c->buf? Returns 1 and fills status and pid, 0 when
 * more is needed. Only Content-Length bodies: nginx's return and error
 * pages have one.
 */
static int
parse_answer(conn_t *c, int *status, int *pid, int *closing)
{
    char    *end, *p, *line;
    size_t   head, body = 0;

    if (c->len < 12) {
        return 0;
    }

    c->buf[c->len] = '\0';
    end = strstr(c->buf, "\r\n\r\n");
    if (end == NULL) {
        if (c->len >= BUF_SIZE - 1) {
            die("an answer's head is too long");
        }
        return 0;
    }

    head = end + 4 - c->buf;

    if (strncmp(c->buf, "HTTP/1.1 ", 9) != 0) {
        die("not an HTTP/1.1 answer: %.40s", c->buf);
    }

    *status = atoi(c->buf + 9);
    *pid = 0;
    *closing = 0;

    for (line = strstr(c->buf, "\r\n") + 2; line < end;
         line = strstr(line, "\r\n") + 2)
    {
        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            body = strtoul(line + 15, NULL, 10);
        } else if (strncasecmp(line, "X-Pid:", 6) == 0) {
            *pid = atoi(line + 6);
        } else if (strncasecmp(line, "Connection:", 11) == 0) {
            p = line + 11;
            while (*p == ' ') {
                p++;
            }
            *closing = strncasecmp(p, "close", 5) == 0;
        }
    }

    if (c->len < head + body) {
        return 0;
    }

    if (*pid == 0) {
        die("an answer without X-Pid (status %d)", *status);
    }

    memmove(c->buf, c->buf + head + body, c->len - head - body);
    c->len -= head + body;

    return 1;
}


/* --- an answer --------------------------------------------------------- */

static void
answer(conn_t *c, int status, int pid, double at)
{
    int        right;
    worker_t  *w;

    if (status != 200 && status != 404) {
        die("edge %d (port %d) answered %d", c->edge + 1,
            edges[c->edge].port, status);
    }

    n_answers++;
    right = (status == 200) == target;
    w = worker_get(pid, c->edge);
    w->answered = 1;

    if (c->pid == 0) {
        c->pid = pid;
    } else if (c->pid != pid) {
        die("a connection moved from worker %d to %d", c->pid, pid);
    }

    if (right) {
        if (w->since == 0) {
            w->since = at;
        }
        if (wrong_pending) {
            wrong_pending = 0;
            first_right_after_wrong = at;
        }
    } else {
        if (w->since != 0) {
            n_flaps++;
        }
        w->since = 0;
        wrong_pending = 1;
        n_wrong++;
    }
}


/* Read what a connection has; handle each complete answer. */
static void
conn_read(conn_t *c)
{
    int      status, pid, closing;
    ssize_t  n;

    for ( ;; ) {
        n = read(c->fd, c->buf + c->len, BUF_SIZE - 1 - c->len);

        if (n > 0) {
            c->len += n;
            continue;
        }

        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            break;
        }

        /* closed by the worker (it exits, or the request was reset) */
        if (c->busy && !parse_answer(c, &status, &pid, &closing)) {
            n_lost++;
            conn_close(c);
            return;
        }
        if (c->busy) {
            answer(c, status, pid, now_ms());
        }
        conn_close(c);
        return;
    }

    if (c->busy && parse_answer(c, &status, &pid, &closing)) {
        c->busy = 0;
        answer(c, status, pid, now_ms());
        if (closing) {
            conn_close(c);
        }
    }
}


/* --- coverage: a connection to every worker ------------------------------ */

/* kill mode, before the rounds: P keep-alive connections per worker */
static void
cover_all(void)
{
    int            e, i, tries, covered, status, pid, closing;
    conn_t        *c;
    struct pollfd  pfd;

    scan_children();

    for (e = 0; e < nedges; e++) {
        if (edges[e].nchildren != nworkers) {
            die("edge %d has %d workers, not %d", e + 1, edges[e].nchildren,
                nworkers);
        }

        for (tries = 0; ; tries++) {
            covered = 1;
            for (i = 0; i < edges[e].nchildren; i++) {
                covered &= conns_of(edges[e].children[i]) >= per;
            }
            if (covered) {
                break;
            }
            if (tries == 1000) {
                die("edge %d: 1000 connections did not reach every worker: "
                    "is the listen socket reuseport?", e + 1);
            }

            c = conn_open(e);
            conn_send(c);
            if (c->fd < 0) {
                die("edge %d closed a new connection", e + 1);
            }

            while (c->busy) {
                pfd.fd = c->fd;
                pfd.events = POLLIN;
                if (poll(&pfd, 1, 5000) <= 0) {
                    die("edge %d: no answer in 5 s", e + 1);
                }
                ssize_t  n = read(c->fd, c->buf + c->len,
                                  BUF_SIZE - 1 - c->len);
                if (n <= 0) {
                    die("edge %d closed a new connection", e + 1);
                }
                c->len += n;
                if (parse_answer(c, &status, &pid, &closing)) {
                    c->busy = 0;
                }
            }

            if (conns_of(pid) >= per || closing) {
                conn_close(c);
            } else {
                c->pid = pid;
            }
        }
    }
}


/* reload mode: open connections until every new worker has P of them */
static void
cover_new(void)
{
    int      e, i, pending, missing, k;
    edge_t  *ed;

    for (e = 0; e < nedges; e++) {
        ed = &edges[e];
        missing = 0;

        for (i = 0; i < ed->nchildren; i++) {
            if (!is_old(ed, ed->children[i])) {
                k = per - conns_of(ed->children[i]);
                missing += k > 0 ? k : 0;
            }
        }

        pending = 0;
        for (i = 0; i < MAX_CONNS; i++) {
            pending += conns[i].fd >= 0 && conns[i].edge == e
                       && conns[i].pid == 0;
        }

        /* a new connection lands on a worker the kernel picks: try more */
        while (pending < missing + 1 && missing > 0) {
            conn_t  *c = conn_open(e);
            conn_send(c);
            pending++;
        }
    }
}


/* reload mode: close the surplus connections of a worker (kept: P) */
static void
trim(void)
{
    int  i;

    for (i = 0; i < MAX_CONNS; i++) {
        if (conns[i].fd >= 0 && conns[i].pid != 0 && !conns[i].busy
            && conns_of(conns[i].pid) > per)
        {
            conn_close(&conns[i]);
        }
    }
}


/* --- commands ------------------------------------------------------------ */

static void
run(char *cmd)
{
    int                         status, argc = 0;
    char                       *argv[64], *copy, *save, *tok;
    pid_t                       pid;
    posix_spawn_file_actions_t  fa;

    copy = strdup(cmd);
    for (tok = strtok_r(copy, " ", &save); tok && argc < 63;
         tok = strtok_r(NULL, " ", &save))
    {
        argv[argc++] = tok;
    }
    argv[argc] = NULL;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);

    if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) {
        die("cannot run %s", cmd);
    }

    posix_spawn_file_actions_destroy(&fa);

    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            die("waitpid: %s", strerror(errno));
        }
    }

    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        die("%s: exit status %d", cmd, WIFEXITED(status)
                                       ? WEXITSTATUS(status) : -1);
    }

    free(copy);
}


static void
write_map(int on)
{
    char   tmp[4096];
    FILE  *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", map_file);
    f = fopen(tmp, "w");
    if (f == NULL) {
        die("cannot write %s: %s", tmp, strerror(errno));
    }
    fprintf(f, "default %d;\n", on);
    if (fclose(f) != 0 || rename(tmp, map_file) != 0) {
        die("cannot write %s: %s", map_file, strerror(errno));
    }
}


/* --- a phase ------------------------------------------------------------- */

typedef struct {
    long long  start_us, t0_us, t1_us;
    double     cmd_ms, prop_ms, total_ms, gone_ms, first_ms;
    double     edge_ms[MAX_EDGES];
} result_t;


static int
phase_done(void)
{
    int        e, i;
    edge_t    *ed;
    worker_t  *w;

    if (wrong_pending) {
        return 0;
    }

    for (e = 0; e < nedges; e++) {
        ed = &edges[e];

        if (mode == MODE_RELOAD
            && (ed->nchildren != nworkers || old_alive(ed)))
        {
            return 0;
        }

        for (i = 0; i < ed->nchildren; i++) {
            w = worker_get(ed->children[i], e);
            if (w->since == 0) {
                return 0;
            }
        }
    }

    return 1;
}


static void
phase(int on, result_t *r)
{
    int            e, i, n, idx[MAX_CONNS];
    double         start, t0, now, next_scan, t1, gone;
    struct pollfd  pfd[MAX_CONNS];
    char         **cmds = on ? on_cmds : off_cmds;
    int            ncmds = on ? non : noff;

    scan_children();

    for (e = 0; e < nedges; e++) {
        edges[e].nold = 0;
        if (mode == MODE_RELOAD) {
            memcpy(edges[e].old, edges[e].children,
                   edges[e].nchildren * sizeof(int));
            edges[e].nold = edges[e].nchildren;
        }
    }

    for (i = 0; i < nworkers_seen; i++) {
        workers[i].since = 0;
        workers[i].answered = 0;
    }

    target = on;
    wrong_pending = 0;
    first_right_after_wrong = 0;
    n_wrong = n_answers = n_flaps = n_lost = n_opened = 0;
    gone = -1;

    r->start_us = real_us();
    start = now_ms();

    if (mode == MODE_RELOAD) {
        write_map(on);
    }

    for (i = 0; i < ncmds; i++) {
        run(cmds[i]);
    }

    t0 = now_ms();
    r->t0_us = real_us();
    next_scan = t0;

again:

    for ( ;; ) {
        now = now_ms();

        if (now - t0 > timeout_ms) {
            fprintf(stderr, "propagation-probe: phase %s not done after "
                    "%.0f ms; workers:", on ? "on" : "off", timeout_ms);
            for (i = 0; i < nworkers_seen; i++) {
                fprintf(stderr, " %d/edge%d/%s", workers[i].pid,
                        workers[i].edge + 1,
                        workers[i].since ? "done" : "not");
            }
            fprintf(stderr, "\n");
            exit(1);
        }

        if (mode == MODE_RELOAD && now >= next_scan) {
            scan_children();
            next_scan = now + 0.5;

            if (gone < 0) {
                int  any = 0;
                for (e = 0; e < nedges; e++) {
                    any |= old_alive(&edges[e]);
                }
                if (!any) {
                    gone = now;
                }
            }

            cover_new();
            trim();
        }

        if (phase_done()) {
            break;
        }

        n = 0;
        for (i = 0; i < MAX_CONNS; i++) {
            if (conns[i].fd < 0) {
                continue;
            }
            if (!conns[i].busy) {
                conn_send(&conns[i]);
                if (conns[i].fd < 0) {
                    continue;
                }
            }
            pfd[n].fd = conns[i].fd;
            pfd[n].events = POLLIN;
            idx[n++] = i;
        }

        if (poll(pfd, n, mode == MODE_RELOAD ? 1 : 100) < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("poll: %s", strerror(errno));
        }

        for (i = 0; i < n; i++) {
            if (pfd[i].revents && conns[idx[i]].fd == pfd[i].fd) {
                conn_read(&conns[idx[i]]);
            }
        }

        if (mode == MODE_KILL) {
            /* the workers stay: a closed connection is a failure */
            for (e = 0; e < nedges; e++) {
                for (i = 0; i < edges[e].nchildren; i++) {
                    if (conns_of(edges[e].children[i]) == 0) {
                        die("edge %d: worker %d closed its connection",
                            e + 1, edges[e].children[i]);
                    }
                }
            }
        }
    }

    /*
     * The probe goes idle: no request in flight between phases. An answer
     * still on its way counts: if it is wrong (an old worker's, written
     * before it exited), the phase goes on.
     */
    for (i = 0; i < MAX_CONNS; i++) {
        while (conns[i].fd >= 0 && conns[i].busy) {
            struct pollfd  p = { conns[i].fd, POLLIN, 0 };
            if (poll(&p, 1, 5000) <= 0) {
                die("an answer did not come in 5 s");
            }
            conn_read(&conns[i]);
        }
    }

    if (!phase_done()) {
        goto again;
    }

    r->t1_us = real_us();       /* now; corrected below by the t1 found */
    now = now_ms();

    t1 = first_right_after_wrong;
    r->first_ms = 0;
    for (e = 0; e < nedges; e++) {
        double  first = 0;

        edges[e].t1 = 0;
        for (i = 0; i < edges[e].nchildren; i++) {
            double since = worker_get(edges[e].children[i], e)->since;
            if (since > edges[e].t1) {
                edges[e].t1 = since;
            }
            if (first == 0 || since < first) {
                first = since;
            }
        }
        if (first - t0 > r->first_ms) {
            r->first_ms = first - t0;
        }
        if (edges[e].t1 > t1) {
            t1 = edges[e].t1;
        }
        r->edge_ms[e] = edges[e].t1 - t0;
    }

    r->t1_us -= (long long) ((now - t1) * 1000);
    r->cmd_ms = t0 - start;
    r->prop_ms = t1 - t0;
    r->total_ms = t1 - start;
    r->gone_ms = gone < 0 ? -1 : gone - t0;
}


/* load mode: N answers, one request in flight per connection */
static void
load(long n)
{
    int            i, k, idx[MAX_CONNS];
    double         t0;
    struct pollfd  pfd[MAX_CONNS];

    n_answers = 0;
    t0 = now_ms();

    while (n_answers < n) {
        k = 0;
        for (i = 0; i < MAX_CONNS; i++) {
            if (conns[i].fd < 0) {
                continue;
            }
            if (!conns[i].busy) {
                conn_send(&conns[i]);
                if (conns[i].fd < 0) {
                    die("edge %d: a worker closed its connection",
                        conns[i].edge + 1);
                }
            }
            pfd[k].fd = conns[i].fd;
            pfd[k].events = POLLIN;
            idx[k++] = i;
        }

        if (poll(pfd, k, 5000) <= 0) {
            die("load: no answer in 5 s");
        }

        for (i = 0; i < k; i++) {
            if (pfd[i].revents && conns[idx[i]].fd == pfd[i].fd) {
                conn_read(&conns[idx[i]]);
            }
        }
    }

    /* idle again: read what is still in flight (not counted) */
    for (i = 0; i < MAX_CONNS; i++) {
        while (conns[i].fd >= 0 && conns[i].busy) {
            struct pollfd  p = { conns[i].fd, POLLIN, 0 };
            if (poll(&p, 1, 5000) <= 0) {
                die("an answer did not come in 5 s");
            }
            conn_read(&conns[i]);
        }
    }

    printf("load %ld %.3f\n", n, now_ms() - t0);
}


static void
pause_random(void)
{
    int              ms;
    struct timespec  ts;

    ms = pause_min + (pause_max > pause_min
                      ? rand() % (pause_max - pause_min + 1) : 0);
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}


int
main(int argc, char **argv)
{
    int       i, e;
    long      on_answers;
    result_t  r;

    for (i = 0; i < MAX_CONNS; i++) {
        conns[i].fd = -1;
    }

    for (i = 1; i < argc; i++) {
        const char  *a = argv[i];
        const char  *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (v == NULL) {
            die("%s needs a value", a);
        }
        i++;

        if (strcmp(a, "--mode") == 0) {
            mode = strcmp(v, "reload") == 0 ? MODE_RELOAD
                   : strcmp(v, "load") == 0 ? MODE_LOAD : MODE_KILL;
        } else if (strcmp(a, "--rounds") == 0) {
            rounds = atoi(v);
        } else if (strcmp(a, "--requests") == 0) {
            requests = atol(v);
        } else if (strcmp(a, "--workers") == 0) {
            nworkers = atoi(v);
        } else if (strcmp(a, "--per") == 0) {
            per = atoi(v);
        } else if (strcmp(a, "--path") == 0) {
            path = v;
        } else if (strcmp(a, "--company") == 0) {
            company = v;
        } else if (strcmp(a, "--map") == 0) {
            map_file = v;
        } else if (strcmp(a, "--timeout") == 0) {
            timeout_ms = atof(v) * 1000;
        } else if (strcmp(a, "--pause") == 0) {
            if (sscanf(v, "%d:%d", &pause_min, &pause_max) != 2) {
                die("--pause MIN:MAX");
            }
        } else if (strcmp(a, "--edge") == 0 && nedges < MAX_EDGES) {
            if (sscanf(v, "%d:%d", &edges[nedges].port,
                       &edges[nedges].master) != 2)
            {
                die("--edge PORT:MASTER_PID");
            }
            nedges++;
        } else if (strcmp(a, "--on") == 0 && non < MAX_CMDS) {
            on_cmds[non++] = (char *) v;
        } else if (strcmp(a, "--off") == 0 && noff < MAX_CMDS) {
            off_cmds[noff++] = (char *) v;
        } else {
            die("unknown argument %s", a);
        }
    }

    if (nedges == 0 || (mode == MODE_RELOAD && map_file == NULL)) {
        die("usage: see the comment at the top of bench/propagation-probe.c");
    }

    request_len = snprintf(request, sizeof(request),
                           "GET %s HTTP/1.1\r\nHost: edge\r\n"
                           "X-Company-Id: %s\r\n\r\n", path, company);
    srand(getpid());
    setvbuf(stdout, NULL, _IOLBF, 0);

    cover_all();

    if (mode == MODE_LOAD) {
        target = 1;
        load(requests);
        return 0;
    }

    for (i = 0; i < rounds; i++) {
        phase(1, &r);
        on_answers = n_answers;
        pause_random();
        phase(0, &r);

        printf("round %s %d %lld %lld %lld %.3f %.3f %.3f",
               mode == MODE_RELOAD ? "reload" : "kill", i + 1, r.start_us,
               r.t0_us, r.t1_us, r.cmd_ms, r.prop_ms, r.total_ms);
        for (e = 0; e < nedges; e++) {
            printf(" %.3f", r.edge_ms[e]);
        }
        printf(" %ld %ld %ld %ld %ld %.3f %.3f %ld\n", n_wrong, n_answers,
               n_flaps, n_lost, n_opened, r.gone_ms, r.first_ms, on_answers);

        pause_random();
    }

    return 0;
}
