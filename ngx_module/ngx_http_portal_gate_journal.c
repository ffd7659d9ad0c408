
/*
 * The journal of patches beside the state file (include/pg_state.h has
 * its format): a PATCH snapshot appends its body, as accepted, to the
 * journal that follows the state file, and answers once that record is
 * fsync()ed, instead of rewriting and fsync()ing the whole state file. A
 * restart reads the state file and replays the journal's records.
 *
 * The zone says which generation the state file and its journal hold
 * (sh->journal_generation): a record is appended only on top of the
 * patch's own base generation, under the zone's lock, right after the
 * swap and with nothing applied since, so records are in the order of
 * the zone's changes and each applies on the one before. Anything else (a
 * PUT, an override, a resize, a failed or torn write, a journal that has
 * grown past its limits) leaves journal_generation behind, and the next
 * change writes the state file whole, in the thread pool, and removes the
 * journal: that is also the compaction. The first patch after it creates
 * a new journal, whose header names the state file it follows.
 */


#include "ngx_http_portal_gate_module.h"


/* One append, in r->pool: the request outlives it. */
typedef struct {
    ngx_http_request_t               *request;
    ngx_http_portal_gate_zone_ctx_t  *ctx;
    ngx_log_t                        *log;
    ngx_fd_t                          fd;
    ngx_uint_t                        created;  /* a new journal */
    ngx_uint_t                        sync_dir; /* fsync the folder too:
                                                   the journal's name may
                                                   not be durable yet */
    uint64_t                          journal_id;
    ngx_err_t                         err;      /* fsync()'s, 0: none */
    ngx_atomic_uint_t                 generation;
    json_t                           *answer;
    u_char                           *path;
#if (NGX_THREADS)
    ngx_event_t                       wait;
#endif
} ngx_http_portal_gate_journal_t;


static void ngx_http_portal_gate_journal_sync(
    ngx_http_portal_gate_journal_t *jr);
static void ngx_http_portal_gate_journal_answer(
    ngx_http_portal_gate_journal_t *jr);
#if (NGX_THREADS)
static ngx_int_t ngx_http_portal_gate_journal_post(
    ngx_http_portal_gate_journal_t *jr);
static void ngx_http_portal_gate_journal_wait(ngx_event_t *ev);
static void ngx_http_portal_gate_journal_thread(void *data, ngx_log_t *log);
static void ngx_http_portal_gate_journal_done(ngx_event_t *ev);
#endif


/*
 * A new journal's id, under the zone's lock: never one an older state
 * file of this path has had (the time in ns, the pid and a serial, mixed).
 */

uint64_t
ngx_http_portal_gate_journal_id(ngx_http_portal_gate_shctx_t *sh)
{
    uint64_t         v[4];
    uint32_t         lo, hi;
    struct timespec  ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);

    v[0] = (uint64_t) ts.tv_sec;
    v[1] = (uint64_t) ts.tv_nsec;
    v[2] = (uint64_t) ngx_pid;
    v[3] = (uint64_t) ++sh->journal_serial;

    lo = pg_murmur3_32(v, sizeof(v), 0x6a6f7572);
    hi = pg_murmur3_32(v, sizeof(v), 0x6e616c21);

    return ((uint64_t) hi << 32 | lo) ? ((uint64_t) hi << 32 | lo) : 1;
}


/*
 * Append a patch that has just been swapped in (the zone went from
 * generation base to generation) to the journal, and answer the request
 * with answer once the record is durable: NGX_OK. NGX_DECLINED when the
 * journal cannot take it (see above): the caller writes the state file
 * whole, which answers.
 */

ngx_int_t
ngx_http_portal_gate_journal_append(ngx_http_request_t *r,
    ngx_atomic_uint_t base, ngx_atomic_uint_t generation, u_char *body,
    size_t len, json_t *answer)
{
    u_char                            *path;
    char                               head[PG_JOURNAL_HEAD_LEN + 1];
    char                               header[PG_JOURNAL_HEADER_LEN + 1];
    size_t                             limit, record, done, want;
    ssize_t                            n;
    ngx_fd_t                           fd;
    ngx_uint_t                         created;
    struct iovec                       iov[4];
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_journal_t    *jr;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    if (ctx->state.len == 0 || base == 0 || body == NULL) {
        return NGX_DECLINED;
    }

    jr = ngx_pcalloc(r->pool, sizeof(ngx_http_portal_gate_journal_t));
    path = ngx_pnalloc(r->pool, ctx->state.len + sizeof(PG_JOURNAL_SUFFIX));

    if (jr == NULL || path == NULL) {
        return NGX_DECLINED;
    }

    ngx_sprintf(path, "%V" PG_JOURNAL_SUFFIX "%Z", &ctx->state);

    pg_journal_record_head(head, (char *) body, len);
    record = PG_JOURNAL_HEAD_LEN + len + 1;

    /* past these, the next change compacts: a restart replays little,
     * and the journal stays below what a restart reads */

    limit = ngx_max(sh->state_bytes, NGX_HTTP_PORTAL_GATE_JOURNAL_MIN);
    limit = ngx_min(limit,
                    NGX_HTTP_PORTAL_GATE_STATE_MAX(pmcf->shm_zone->shm.size)
                    / 2);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (sh->generation != generation || sh->journal_generation != base
        || sh->journal_records >= NGX_HTTP_PORTAL_GATE_JOURNAL_RECORDS
        || sh->journal_bytes + record > limit)
    {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    /* the write goes to the page cache (microseconds) under the lock,
     * which orders the records; the fsync() goes to the thread pool */

    created = (sh->journal_bytes == 0);

    if (created) {
        /* the first patch since the state file was written: a new
         * journal (what is at the path is an older file's, or planted) */
        (void) ngx_delete_file(path);

        fd = ngx_open_file(path, NGX_FILE_WRONLY|NGX_FILE_APPEND|O_NOFOLLOW
                                 |O_CLOEXEC, O_CREAT|O_EXCL,
                           NGX_FILE_DEFAULT_ACCESS);

    } else {
        fd = ngx_open_file(path, NGX_FILE_WRONLY|NGX_FILE_APPEND|O_NOFOLLOW
                                 |O_CLOEXEC, NGX_FILE_OPEN, 0);
    }

    if (fd == NGX_INVALID_FILE) {
        sh->journal_generation = 0;
        ngx_shmtx_unlock(&ctx->shpool->mutex);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed: the state file is "
                      "written whole", path);
        return NGX_DECLINED;
    }

    n = 0;

    if (created) {
        pg_journal_header(header, sh->journal_id);
        iov[n].iov_base = header;
        iov[n++].iov_len = PG_JOURNAL_HEADER_LEN;
    }

    iov[n].iov_base = head;
    iov[n++].iov_len = PG_JOURNAL_HEAD_LEN;
    iov[n].iov_base = body;
    iov[n++].iov_len = len;
    iov[n].iov_base = "\n";
    iov[n++].iov_len = 1;

    want = record + (created ? PG_JOURNAL_HEADER_LEN : 0);

    n = writev(fd, iov, (int) n);
    done = n > 0 ? (size_t) n : 0;

    if (done != want) {
        /* a torn record: the state file written whole replaces the
         * journal (a short writev() of a small record is a full disk) */
        sh->journal_generation = 0;
        ngx_shmtx_unlock(&ctx->shpool->mutex);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, ngx_errno,
                      "writev() \"%s\" wrote %uz of %uz bytes: the state "
                      "file is written whole", path, done, want);
        (void) ngx_close_file(fd);
        return NGX_DECLINED;
    }

    sh->journal_generation = generation;
    sh->state_generation = generation;
    sh->journal_records++;

    /* a record is durable with the journal's name: until its creator has
     * synced the folder, each record's writer does too */
    jr->sync_dir = created || !sh->journal_named;
    jr->journal_id = sh->journal_id;
    sh->journal_bytes += want;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    jr->request = r;
    jr->ctx = ctx;
    jr->log = r->connection->log;
    jr->fd = fd;
    jr->created = created;
    jr->generation = generation;
    jr->answer = answer;
    jr->path = path;

#if (NGX_THREADS)
    if (ngx_http_portal_gate_journal_post(jr) == NGX_OK) {
        return NGX_OK;
    }
#endif

    ngx_http_portal_gate_journal_sync(jr);
    ngx_http_portal_gate_journal_answer(jr);

    return NGX_OK;
}


/* The record durable, and a new journal's name: no log and no lock, in
 * a thread. */

static void
ngx_http_portal_gate_journal_sync(ngx_http_portal_gate_journal_t *jr)
{
    u_char    *p, *dir;
    ngx_fd_t   fd;

    if (fdatasync(jr->fd) == -1) {
        jr->err = ngx_errno;
    }

    (void) ngx_close_file(jr->fd);
    jr->fd = NGX_INVALID_FILE;

    if (!jr->sync_dir || jr->err) {
        return;
    }

    /* the folder: the state file's path up to its last slash */

    p = jr->path + ngx_strlen(jr->path);

    while (p > jr->path && p[-1] != '/') {
        p--;
    }

    if (p - jr->path > 1) {
        p[-1] = '\0';
    }

    dir = (p - jr->path > 1) ? jr->path : (u_char *) "/";

    fd = ngx_open_file(dir, NGX_FILE_RDONLY|O_DIRECTORY|O_CLOEXEC,
                       NGX_FILE_OPEN, 0);

    if (p - jr->path > 1) {
        p[-1] = '/';
    }

    if (fd == NGX_INVALID_FILE || fsync(fd) == -1) {
        jr->err = ngx_errno;
    }

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }
}


/*
 * Back on the event loop: a failed fsync() is reported as a failed state
 * file write (the change stays applied), and the next change writes the
 * state file whole; then the answer.
 */

static void
ngx_http_portal_gate_journal_answer(ngx_http_portal_gate_journal_t *jr)
{
    u_char                        *p, *last;
    ngx_http_portal_gate_shctx_t  *sh;

    if (jr->err) {
        ngx_log_error(NGX_LOG_ERR, jr->log, jr->err,
                      "portal_gate: fdatasync() \"%s\" failed: the next "
                      "change writes the state file whole", jr->path);

        sh = jr->ctx->sh;

        ngx_shmtx_lock(&jr->ctx->shpool->mutex);

        sh->journal_generation = 0;

        if (sh->generation == jr->generation) {
            p = sh->state_error;
            last = p + NGX_HTTP_PORTAL_GATE_ERR_LEN - 1;
            p = ngx_slprintf(p, last, "fdatasync() \"%s\" failed (%d: ",
                             jr->path, jr->err);
            p = ngx_strerror(jr->err, p, last - p);
            p = ngx_slprintf(p, last, ")");
            *p = '\0';
            sh->state_failed = 1;
        }

        ngx_shmtx_unlock(&jr->ctx->shpool->mutex);

    } else {
        ngx_shmtx_lock(&jr->ctx->shpool->mutex);

        /* the record and every one before it are on disk (one file) */

        if (jr->ctx->sh->durable_generation < jr->generation) {
            jr->ctx->sh->durable_generation = jr->generation;
        }

        if (jr->sync_dir && jr->ctx->sh->journal_id == jr->journal_id) {
            jr->ctx->sh->journal_named = 1;
        }

        if (jr->ctx->sh->generation == jr->generation) {
            jr->ctx->sh->state_failed = 0;
            jr->ctx->sh->state_error[0] = '\0';
            jr->ctx->sh->state_written_at = ngx_time();
        }

        ngx_shmtx_unlock(&jr->ctx->shpool->mutex);
    }

    ngx_http_finalize_request(jr->request,
                              ngx_http_portal_gate_api_send(jr->request,
                                                            NGX_HTTP_OK,
                                                            jr->answer));
}


#if (NGX_THREADS)

static ngx_int_t
ngx_http_portal_gate_journal_post(ngx_http_portal_gate_journal_t *jr)
{
    ngx_thread_task_t  *task;

    if (jr->ctx->thread_pool == NULL) {
        return NGX_DECLINED;
    }

    task = ngx_thread_task_alloc(jr->request->pool, 0);
    if (task == NULL) {
        return NGX_ERROR;
    }

    task->ctx = jr;
    task->handler = ngx_http_portal_gate_journal_thread;
    task->event.handler = ngx_http_portal_gate_journal_done;
    task->event.data = jr;

    if (ngx_thread_task_post(jr->ctx->thread_pool, task) != NGX_OK) {
        return NGX_ERROR;
    }

    /* as nginx's own aio: nothing frees the request while the task runs */
    jr->request->main->blocked++;
    jr->request->aio = 1;

    jr->wait.handler = ngx_http_portal_gate_journal_wait;
    jr->wait.data = jr;
    jr->wait.log = jr->log;
    ngx_add_timer(&jr->wait, 3600000);

    return NGX_OK;
}


static void
ngx_http_portal_gate_journal_wait(ngx_event_t *ev)
{
    /* the timer only keeps a shutting down worker until the answer */
}


static void
ngx_http_portal_gate_journal_thread(void *data, ngx_log_t *log)
{
    ngx_http_portal_gate_journal_sync(data);
}


static void
ngx_http_portal_gate_journal_done(ngx_event_t *ev)
{
    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_http_portal_gate_journal_t  *jr;

    jr = ev->data;
    r = jr->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    if (jr->wait.timer_set) {
        ngx_del_timer(&jr->wait);
    }

    r->main->blocked--;
    r->aio = 0;

    ngx_http_portal_gate_journal_answer(jr);
    ngx_http_run_posted_requests(c);
}

#endif
