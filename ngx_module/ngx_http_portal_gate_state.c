
/*
 * The state file: read into a fresh zone at start, and written after each
 * accepted change (a snapshot, an override), so that a restart gates as
 * before while the controller is down.
 */


#include "ngx_http_portal_gate_module.h"


/* One write of the state file, in r->pool: the request outlives it. */
typedef struct {
    ngx_http_request_t               *request;
    ngx_http_portal_gate_zone_ctx_t  *ctx;
    ngx_log_t                        *log;
    int64_t                           revision;
    ngx_atomic_uint_t                 change;   /* the change's generation */
    ngx_atomic_uint_t                 generation; /* the zone's, copied:
                                                     the change's or newer */
    ngx_uint_t                        status;   /* the change's answer, */
    json_t                           *answer;   /* sent once written */
    ngx_uint_t                        persisted; /* tell the answer */
    u_char                           *blob;     /* the zone's, ngx_alloc()ed */
    size_t                            size;
    pg_override_t                    *overrides;
    size_t                            noverrides;
    size_t                            max;      /* what a restart reads */
    uint64_t                          journal_id; /* of the next journal */
    char                             *text;     /* malloc()ed JSON */
    size_t                            len;
    u_char                           *tmp;      /* the paths, NUL-ended */
    u_char                           *journal;
    u_char                           *dir;
    u_char                           *base;     /* state file's name */
    u_char                           *corrupt;

    /* what _save() did, logged by _report() on the event loop */
    const char                       *failed;   /* the step, or NULL */
    u_char                           *path;
    ngx_err_t                         err;
    ngx_uint_t                        kept;     /* the corrupt file */
    ngx_uint_t                        synced;   /* this or a newer state
                                                   is durable on disk */
    ngx_uint_t                        retired;  /* a resize retired the
                                                   zone before the rename */
    ngx_uint_t                        cleaned;  /* stale temp files */
    size_t                            too_large; /* the text, if it was */
    ngx_err_t                         dir_err;  /* fsync of the folder */
    const char                       *dir_what;

#if (NGX_THREADS)
    /* a graceful shutdown waits for timers: the answer is still to go */
    ngx_event_t                       wait;
#endif
} ngx_http_portal_gate_state_t;


static ngx_int_t ngx_http_portal_gate_state_prepare(ngx_http_request_t *r,
    ngx_atomic_uint_t generation, ngx_http_portal_gate_state_t **stp);
static void ngx_http_portal_gate_state_answer(
    ngx_http_portal_gate_state_t *st);
static void ngx_http_portal_gate_state_retired(ngx_http_request_t *r);
static void ngx_http_portal_gate_state_save(ngx_http_portal_gate_state_t *st);
static void ngx_http_portal_gate_state_report(
    ngx_http_portal_gate_state_t *st);
#if (NGX_THREADS)
static ngx_int_t ngx_http_portal_gate_state_post(
    ngx_http_portal_gate_state_t *st);
static void ngx_http_portal_gate_state_wait(ngx_event_t *ev);
static void ngx_http_portal_gate_state_thread(void *data, ngx_log_t *log);
static void ngx_http_portal_gate_state_done(ngx_event_t *ev);
#endif
static void ngx_http_portal_gate_state_fail(ngx_http_portal_gate_state_t *st,
    ngx_err_t err, const char *what, u_char *path);
static void ngx_http_portal_gate_state_sync_dir(
    ngx_http_portal_gate_state_t *st);
static void ngx_http_portal_gate_state_clean(
    ngx_http_portal_gate_state_t *st);
static void ngx_http_portal_gate_state_failed(
    ngx_http_portal_gate_state_t *st, ngx_err_t err, const char *what,
    u_char *path);
static void ngx_http_portal_gate_state_overrides(ngx_shm_zone_t *shm_zone,
    const pg_state_t *st);


/* this worker's writes, for their temp files' names */
static ngx_uint_t  ngx_http_portal_gate_state_serial;


/*
 * The state file: written to a temp file named per pid in the same folder,
 * fsync()ed, then renamed under the zone's lock unless the file or its
 * journal already holds a newer generation (sh->state_generation), so an
 * older state never wins the race; then the folder is fsync()ed. A writer
 * that finds a newer state on disk syncs that one (the journal, the
 * folder) instead: the change it answers is in it. So no change is
 * answered 200 before what it changed is durable. A failure is logged and
 * reported by GET status; the change stays applied. In a zone a resize
 * retired, nothing is renamed: the answer is 503 unless the change was
 * durable already.
 *
 * _write() takes the change's answer and sends it once the file is
 * durable: _prepare() copies the zone's snapshot and overrides and makes
 * the text on the event loop; _save() does the file work with no pool and
 * no request, in a thread of the pool when nginx has threads, so that the
 * fsync()s never stall the worker's other requests.
 */

void
ngx_http_portal_gate_state_write(ngx_http_request_t *r,
    ngx_atomic_uint_t generation, ngx_uint_t status, json_t *answer,
    ngx_uint_t persisted)
{
    ngx_int_t                      rc;
    ngx_http_portal_gate_state_t  *st;

    st = NULL;
    rc = ngx_http_portal_gate_state_prepare(r, generation, &st);

    if (st != NULL) {
        st->status = status;
        st->answer = answer;
        st->persisted = persisted;

#if (NGX_THREADS)
        if (ngx_http_portal_gate_state_post(st) == NGX_OK) {
            return;
        }
#endif

        ngx_http_portal_gate_state_save(st);
        ngx_http_portal_gate_state_report(st);
        ngx_http_portal_gate_state_answer(st);
        return;
    }

    if (rc == NGX_ABORT) {
        if (answer) {
            json_decref(answer);
        }

        ngx_http_portal_gate_state_retired(r);
        return;
    }

    /* NGX_DONE: no state=; NGX_ERROR: out of memory, nothing written */

    if (persisted && answer) {
        (void) json_object_set_new(answer, "persisted", json_false());
    }

    ngx_http_finalize_request(r, ngx_http_portal_gate_api_send(r, status,
                                                               answer));
}


static void
ngx_http_portal_gate_state_answer(ngx_http_portal_gate_state_t *st)
{
    ngx_uint_t                     durable;
    ngx_http_portal_gate_shctx_t  *sh;

    sh = st->ctx->sh;

    ngx_shmtx_lock(&st->ctx->shpool->mutex);

    if (st->synced && sh->durable_generation < st->generation) {
        sh->durable_generation = st->generation;
    }

    durable = (sh->durable_generation >= st->change);

    ngx_shmtx_unlock(&st->ctx->shpool->mutex);

    if (st->retired && !durable) {
        /* carried into the new zone, maybe, but not on disk: not a 200 */
        if (st->answer) {
            json_decref(st->answer);
        }

        ngx_http_portal_gate_state_retired(st->request);
        return;
    }

    if (st->persisted && st->answer) {
        (void) json_object_set_new(st->answer, "persisted",
                                   json_boolean(st->failed == NULL
                                                && durable));
    }

    ngx_http_finalize_request(st->request,
                              ngx_http_portal_gate_api_send(st->request,
                                                            st->status,
                                                            st->answer));
}


/*
 * 503: a resize retired the zone before the change was on disk. The new
 * zone may hold it (the resize copied it) but its state file does not:
 * the change is sent again, as PUT's 503 says.
 */

static void
ngx_http_portal_gate_state_retired(ngx_http_request_t *r)
{
    int64_t                            revision;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);
    revision = ctx->sh->revision;
    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "portal_gate: a resize retired the zone before the change "
                  "was written to the state file: answered 503");

    ngx_http_finalize_request(r, ngx_http_portal_gate_api_send(r,
                      NGX_HTTP_SERVICE_UNAVAILABLE,
                      json_pack("{s:s,s:I}",
                                "error", "nginx is reloading with a resized "
                                         "zone: send the request again",
                                "revision", (json_int_t) revision)));
}


/*
 * Copy the zone's snapshot and overrides for the state file, as they are
 * now (the change of generation, or newer): NGX_OK with *stp set; NGX_DONE
 * without state=; NGX_ABORT when a resize has retired the zone; NGX_ERROR
 * when out of memory. The text is made in _save(), off the event loop: a
 * snapshot of 200,000 ids takes about 100 ms to serialise.
 */

static ngx_int_t
ngx_http_portal_gate_state_prepare(ngx_http_request_t *r,
    ngx_atomic_uint_t generation, ngx_http_portal_gate_state_t **stp)
{
    u_char                            *p;
    size_t                             len;
    ngx_int_t                          rc;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_state_t      *st;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    if (ctx->state.len == 0) {
        return NGX_DONE;
    }

    st = ngx_pcalloc(r->pool, sizeof(ngx_http_portal_gate_state_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    st->request = r;
    st->ctx = ctx;
    st->log = r->connection->log;
    st->change = generation;
    st->max = NGX_HTTP_PORTAL_GATE_STATE_MAX(pmcf->shm_zone->shm.size);

    st->tmp = ngx_pnalloc(r->pool, ctx->state.len + sizeof(".tmp...") - 1
                                   + 3 * NGX_INT64_LEN + 1);
    st->dir = ngx_pnalloc(r->pool, ctx->state.len + 2);
    st->corrupt = ngx_pnalloc(r->pool, ctx->state.len + sizeof(".corrupt"));
    st->journal = ngx_pnalloc(r->pool, ctx->state.len
                                       + sizeof(PG_JOURNAL_SUFFIX));
    st->overrides = ngx_palloc(r->pool, sizeof(sh->overrides));

    if (st->tmp == NULL || st->dir == NULL || st->corrupt == NULL
        || st->journal == NULL || st->overrides == NULL)
    {
        return NGX_ERROR;
    }

    /* the folder, to fsync and clean; the path is absolute (conf) */

    p = ctx->state.data + ctx->state.len;

    while (p > ctx->state.data && p[-1] != '/') {
        p--;
    }

    len = (p - ctx->state.data > 1) ? (size_t) (p - ctx->state.data - 1) : 1;

    ngx_memcpy(st->dir, ctx->state.data, len);
    st->dir[len] = '\0';
    st->base = p;

    ngx_sprintf(st->corrupt, "%V.corrupt%Z", &ctx->state);
    ngx_sprintf(st->journal, "%V" PG_JOURNAL_SUFFIX "%Z", &ctx->state);

    /* what the zone holds now: this change, and any newer one */

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (sh->retired) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_ABORT;
    }

    st->generation = sh->generation;

    /* per pid, generation and write: two writes of one generation may
     * run at once in threads (a kill sent again) */
    ngx_sprintf(st->tmp, "%V.tmp.%P.%uA.%ui%Z", &ctx->state, ngx_pid,
                st->generation, ++ngx_http_portal_gate_state_serial);

    st->revision = sh->revision;
    st->journal_id = ngx_http_portal_gate_journal_id(sh);
    st->noverrides = ngx_min(sh->noverrides, PG_OVERRIDES_MAX);
    ngx_memcpy(st->overrides, sh->overrides,
               st->noverrides * sizeof(pg_override_t));

    rc = ngx_http_portal_gate_zone_packed_locked(sh, ctx->shpool, st->log,
                                                 &st->blob, &st->size);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    *stp = st;

    return NGX_OK;
}


#if (NGX_THREADS)

static ngx_int_t
ngx_http_portal_gate_state_post(ngx_http_portal_gate_state_t *st)
{
    ngx_thread_task_t  *task;

    if (st->ctx->thread_pool == NULL) {
        return NGX_DECLINED;
    }

    task = ngx_thread_task_alloc(st->request->pool, 0);
    if (task == NULL) {
        return NGX_ERROR;
    }

    task->ctx = st;
    task->handler = ngx_http_portal_gate_state_thread;
    task->event.handler = ngx_http_portal_gate_state_done;
    task->event.data = st;

    if (ngx_thread_task_post(st->ctx->thread_pool, task) != NGX_OK) {
        return NGX_ERROR;
    }

    /* as nginx's own aio: nothing frees the request while the task runs */
    st->request->main->blocked++;
    st->request->aio = 1;

    st->wait.handler = ngx_http_portal_gate_state_wait;
    st->wait.data = st;
    st->wait.log = st->log;
    ngx_add_timer(&st->wait, 3600000);

    return NGX_OK;
}


static void
ngx_http_portal_gate_state_wait(ngx_event_t *ev)
{
    /* the timer only keeps a shutting down worker until the answer */
}


static void
ngx_http_portal_gate_state_thread(void *data, ngx_log_t *log)
{
    ngx_http_portal_gate_state_save(data);
}


/* Back on the event loop: answer the PUT. */

static void
ngx_http_portal_gate_state_done(ngx_event_t *ev)
{
    ngx_connection_t              *c;
    ngx_http_request_t            *r;
    ngx_http_portal_gate_state_t  *st;

    st = ev->data;
    r = st->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    if (st->wait.timer_set) {
        ngx_del_timer(&st->wait);
    }

    r->main->blocked--;
    r->aio = 0;

    ngx_http_portal_gate_state_report(st);
    ngx_http_portal_gate_state_answer(st);
    ngx_http_run_posted_requests(c);
}

#endif


static void
ngx_http_portal_gate_state_save(ngx_http_portal_gate_state_t *st)
{
    u_char                           *p, *tmp, *corrupt;
    size_t                            len;
    ssize_t                           n;
    ngx_fd_t                          fd;
    pg_snap_t                         snap;
    ngx_err_t                         err;
    pg_error_t                        perr;
    ngx_uint_t                        renamed, kept, tries;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    ctx = st->ctx;
    tmp = st->tmp;
    corrupt = st->corrupt;

    /* the text, in the thread: jansson on objects no one else sees */

    st->text = NULL;

    if (pg_snap_open(&snap, st->blob, st->size, &perr) == PG_OK) {
        st->text = pg_state_dump_journal(&snap, st->overrides,
                                         st->noverrides, st->journal_id);
    }

    if (st->blob) {
        ngx_free(st->blob);
        st->blob = NULL;
    }

    if (st->text == NULL) {
        ngx_http_portal_gate_state_fail(st, 0, "serialising", tmp);
        return;
    }

    len = ngx_strlen(st->text);

    /* a file the next start would refuse is no state file */

    if (len > st->max) {
        free(st->text);
        st->text = NULL;
        st->too_large = len;
        ngx_http_portal_gate_state_fail(st, 0, "checking the size of", tmp);
        return;
    }

    /*
     * A new file, never an existing one: the worker user can write the
     * folder, so a link planted at the temp name must not redirect the
     * write. What is there already is a temp file a killed worker left
     * (or a planted link): unlink() removes the name, never its target.
     */

    for (tries = 0; /* void */ ; tries++) {
        fd = ngx_open_file(tmp, NGX_FILE_WRONLY|O_NOFOLLOW|O_CLOEXEC,
                           O_CREAT|O_EXCL, NGX_FILE_DEFAULT_ACCESS);

        if (fd != NGX_INVALID_FILE || ngx_errno != NGX_EEXIST || tries) {
            break;
        }

        (void) ngx_delete_file(tmp);
    }

    if (fd == NGX_INVALID_FILE) {
        ngx_http_portal_gate_state_fail(st, ngx_errno, ngx_open_file_n,
                                        tmp);
        free(st->text);
        st->text = NULL;
        return;
    }

    p = (u_char *) st->text;
    err = 0;

    while (p < (u_char *) st->text + len) {
        n = ngx_write_fd(fd, p, (u_char *) st->text + len - p);

        if (n == -1) {
            err = ngx_errno;

            if (err == NGX_EINTR) {
                continue;
            }

            break;
        }

        if (n == 0) {
            break;
        }

        p += n;
    }

    n = p - (u_char *) st->text;

    free(st->text);
    st->text = NULL;

    if ((size_t) n != len) {
        ngx_http_portal_gate_state_fail(st, err, ngx_write_fd_n, tmp);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(tmp);
        return;
    }

    if (fsync(fd) == -1) {
        ngx_http_portal_gate_state_fail(st, ngx_errno, "fsync()", tmp);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(tmp);
        return;
    }

    (void) ngx_close_file(fd);

    renamed = 0;
    kept = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /* an older state never replaces a newer one: the generation the file
     * or its journal holds says which is newer; a retired zone's writer
     * never renames (a resize moved the snapshot into a new zone, whose
     * own writers write this path) */

    if (!ctx->sh->retired && st->generation >= ctx->sh->state_generation) {

        /* nothing lost on bad input: the unreadable file is kept aside */

        if (ctx->sh->state_corrupt) {
            if (ngx_rename_file(ctx->state.data, corrupt) != NGX_FILE_ERROR) {
                kept = 1;

            } else {
                err = ngx_errno;

                if (err != NGX_ENOENT) {
                    /* never overwrite the corrupt file unkept */
                    ngx_shmtx_unlock(&ctx->shpool->mutex);
                    ngx_http_portal_gate_state_fail(st, err,
                                                    "keeping the corrupt "
                                                    "file, " ngx_rename_file_n,
                                                    corrupt);
                    (void) ngx_delete_file(tmp);
                    return;
                }
            }

            ctx->sh->state_corrupt = 0;
        }

        if (ngx_rename_file(tmp, ctx->state.data) == NGX_FILE_ERROR) {
            err = ngx_errno;
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            ngx_http_portal_gate_state_fail(st, err, ngx_rename_file_n,
                                            tmp);
            (void) ngx_delete_file(tmp);
            return;
        }

        renamed = 1;
        ctx->sh->state_generation = st->generation;
        ctx->sh->journal_named = 0;
        ctx->sh->state_failed = 0;
        ctx->sh->state_error[0] = '\0';
        ctx->sh->state_written_at = ngx_time();

        /* the older journal goes: the next patch starts this file's (a
         * crash before the unlink leaves a journal that names another
         * state file, which is not replayed) */

        if (ngx_delete_file(st->journal) == NGX_FILE_ERROR
            && ngx_errno != NGX_ENOENT)
        {
            ctx->sh->journal_generation = 0;

        } else {
            ctx->sh->journal_id = st->journal_id;
            ctx->sh->journal_generation = st->generation;
            ctx->sh->journal_records = 0;
            ctx->sh->journal_bytes = 0;
            ctx->sh->state_bytes = len;
        }
    }

    st->retired = ctx->sh->retired;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (renamed) {
        ngx_http_portal_gate_state_clean(st);
    }

    st->kept = kept;

    if (!renamed) {
        (void) ngx_delete_file(tmp);

        if (st->retired) {
            return;
        }

        /*
         * A newer state is on disk already, written by another change's
         * writer (its file synced before its rename) or appended to the
         * journal, maybe not synced yet: sync them, so that this change is
         * durable when it is answered, whoever finishes first.
         */

        fd = ngx_open_file(st->journal, NGX_FILE_RDONLY|O_NOFOLLOW
                                        |O_CLOEXEC, NGX_FILE_OPEN, 0);

        if (fd != NGX_INVALID_FILE) {
            if (fdatasync(fd) == -1) {
                st->dir_err = ngx_errno;
                st->dir_what = "fdatasync() of the journal beside";
            }

            (void) ngx_close_file(fd);
        }
    }

    ngx_http_portal_gate_state_sync_dir(st);

    st->synced = (st->dir_what == NULL);
}


/* fsync the folder, so that a rename or a new journal is durable */

static void
ngx_http_portal_gate_state_sync_dir(ngx_http_portal_gate_state_t *st)
{
    ngx_fd_t  fd;

    if (st->dir_what) {
        return;
    }

    fd = ngx_open_file(st->dir, NGX_FILE_RDONLY|O_DIRECTORY|O_CLOEXEC,
                       NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        st->dir_err = ngx_errno;
        st->dir_what = ngx_open_file_n;
        return;
    }

    if (fsync(fd) == -1) {
        st->dir_err = ngx_errno;
        st->dir_what = "fsync()";
    }

    (void) ngx_close_file(fd);
}


/*
 * Remove the stale "<state>.tmp.PID.GEN.N" files in the state file's
 * folder: those of a process that no longer runs (a killed worker), and
 * this worker's own of an older generation, whose writers find a newer
 * state on disk and never rename. Another live process's temp file is never
 * touched: it may be an old worker's, after a reload, still being written.
 */

static void
ngx_http_portal_gate_state_clean(ngx_http_portal_gate_state_t *st)
{
    DIR            *d;
    u_char         *p, *last;
    size_t          len;
    ngx_int_t       pid;
    struct dirent  *de;

    d = opendir((char *) st->dir);
    if (d == NULL) {
        return;
    }

    len = ngx_strlen(st->base);

    while ((de = readdir(d)) != NULL) {

        if (ngx_strncmp(de->d_name, st->base, len) != 0
            || ngx_strncmp(de->d_name + len, ".tmp.", 5) != 0)
        {
            continue;
        }

        p = (u_char *) de->d_name + len + 5;
        last = (u_char *) ngx_strchr(p, '.');

        if (last == NULL) {
            continue;
        }

        pid = ngx_atoi(p, last - p);

        if (pid == NGX_ERROR) {
            continue;
        }

        if (pid == ngx_pid) {
            /* "GEN.SERIAL": an older generation's writer never renames */
            p = last + 1;
            last = (u_char *) ngx_strchr(p, '.');

            if (last == NULL
                || (ngx_atomic_uint_t) ngx_atoi(p, last - p)
                   >= st->generation)
            {
                continue;
            }

        } else if (kill((ngx_pid_t) pid, 0) == 0 || ngx_errno != NGX_ESRCH) {
            continue;
        }

        if (unlinkat(dirfd(d), de->d_name, 0) == 0) {
            st->cleaned++;
        }
    }

    (void) closedir(d);
}


/* Set what failed, for _report(); no log and no lock in a thread. */

static void
ngx_http_portal_gate_state_fail(ngx_http_portal_gate_state_t *st,
    ngx_err_t err, const char *what, u_char *path)
{
    st->failed = what;
    st->err = err;
    st->path = path;
}


/* Back on the event loop: say what the write of the state file did. */

static void
ngx_http_portal_gate_state_report(ngx_http_portal_gate_state_t *st)
{
    if (st->kept) {
        ngx_log_error(NGX_LOG_NOTICE, st->log, 0,
                      "portal_gate: the corrupt state file is kept as "
                      "\"%s\"", st->corrupt);
    }

    if (st->cleaned) {
        ngx_log_error(NGX_LOG_NOTICE, st->log, 0,
                      "portal_gate: removed %ui stale temp file%s of the "
                      "state file from \"%s\"", st->cleaned,
                      st->cleaned == 1 ? "" : "s", st->dir);
    }

    if (st->failed) {
        ngx_http_portal_gate_state_failed(st, st->err, st->failed,
                                          st->path);
    }

    if (st->dir_what) {
        ngx_log_error(NGX_LOG_WARN, st->log, st->dir_err,
                      "%s \"%s\" failed", st->dir_what, st->dir);
    }
}


/*
 * Log a failed write of the state file, and report it in GET status unless
 * a newer snapshot has been applied meanwhile: its writer has the say.
 */

static void
ngx_http_portal_gate_state_failed(ngx_http_portal_gate_state_t *st,
    ngx_err_t err, const char *what, u_char *path)
{
    u_char                           *p, *last;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    if (st->too_large) {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "portal_gate: state file not written for revision %L: "
                      "it would have %uz bytes, more than the %uz a restart "
                      "reads; enlarge portal_gate_zone", st->revision,
                      st->too_large, st->max);

    } else {
        ngx_log_error(NGX_LOG_ERR, st->log, err,
                      "portal_gate: state file not written for revision %L: "
                      "%s \"%s\" failed", st->revision, what, path);
    }

    ctx = st->ctx;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->generation != st->generation) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return;
    }

    p = ctx->sh->state_error;
    last = p + NGX_HTTP_PORTAL_GATE_ERR_LEN - 1;

    if (st->too_large) {
        p = ngx_slprintf(p, last, "the state file would have %uz bytes, "
                         "more than the %uz a restart reads", st->too_large,
                         st->max);

    } else {
        p = ngx_slprintf(p, last, "%s \"%s\" failed", what, path);
    }

    if (err) {
        p = ngx_slprintf(p, last, " (%d: ", err);
        p = ngx_strerror(err, p, last - p);
        p = ngx_slprintf(p, last, ")");
    }

    *p = '\0';
    ctx->sh->state_failed = 1;

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * The kill overrides st holds (pg_state_read() leaves them there when the
 * snapshot beside them cannot be restored) into the fresh zone, all the
 * same: a break-glass kill outlives a snapshot that is refused.
 */
static void
ngx_http_portal_gate_state_overrides(ngx_shm_zone_t *shm_zone,
    const pg_state_t *st)
{
    ngx_http_portal_gate_shctx_t     *sh;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    if (st->noverrides == 0) {
        return;
    }

    ctx = shm_zone->data;
    sh = ctx->sh;

    ngx_memcpy(sh->overrides, st->overrides,
               st->noverrides * sizeof(pg_override_t));
    sh->noverrides = st->noverrides;
    sh->generation++;

    ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                  "portal_gate zone \"%V\" restored %ui kill override%s "
                  "from \"%V\" all the same",
                  &shm_zone->shm.name, sh->noverrides,
                  sh->noverrides == 1 ? "" : "s", &ctx->state);
}


/*
 * Fill a fresh zone from the state file. Runs in the master at start and
 * when a reload changes the zone's size; it only reads. Whatever the path
 * holds, nginx starts: a missing file is normal on a first start
 * (notice), anything else that cannot be loaded is logged at warn and the
 * zone starts empty. A corrupt snapshot is kept aside by the next write.
 */

ngx_int_t
ngx_http_portal_gate_state_restore(ngx_shm_zone_t *shm_zone)
{
    size_t                            max;
    ngx_int_t                         stored;
    pg_snap_t                         snap;
    pg_error_t                        err;
    pg_state_t                       *st;
    pg_state_result_t                 rc;
    ngx_http_portal_gate_shctx_t     *sh;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    ctx = shm_zone->data;
    sh = ctx->sh;

    if (ctx->state.len == 0) {
        return NGX_OK;
    }

    st = ngx_alloc(sizeof(pg_state_t), shm_zone->shm.log);
    if (st == NULL) {
        return NGX_OK;
    }

    /* the module writes compact JSON, smaller than the blob in the zone */
    max = NGX_HTTP_PORTAL_GATE_STATE_MAX(shm_zone->shm.size);

    rc = pg_state_read((char *) ctx->state.data, max, st, &err);

    switch (rc) {

    case PG_STATE_LOADED:
        break;

    case PG_STATE_MISSING:
        ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                      "portal_gate state file \"%V\" does not exist yet, "
                      "zone \"%V\" starts empty",
                      &ctx->state, &shm_zone->shm.name);
        ngx_free(st);
        return NGX_OK;

    case PG_STATE_CORRUPT:
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate state file \"%V\" is corrupt, zone \"%V\" "
                      "starts empty (the next write keeps it as "
                      "\"%V.corrupt\"): %s",
                      &ctx->state, &shm_zone->shm.name, &ctx->state,
                      err.text);
        sh->state_corrupt = 1;
        ngx_http_portal_gate_state_overrides(shm_zone, st);
        ngx_free(st);
        return NGX_OK;

    default: /* PG_STATE_UNUSABLE */
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate state file \"%V\" cannot be used, zone "
                      "\"%V\" starts empty: %s",
                      &ctx->state, &shm_zone->shm.name, err.text);

        /*
         * out of memory replaying the journal comes after the overrides
         * were read: without them here the next push would write the
         * state file without them, an on-call `kill --direct` gone
         */
        ngx_http_portal_gate_state_overrides(shm_zone, st);
        ngx_free(st);
        return NGX_OK;
    }

    /* the overrides first: they hold even if the snapshot does not fit */

    ngx_memcpy(sh->overrides, st->overrides,
               st->noverrides * sizeof(pg_override_t));
    sh->noverrides = st->noverrides;

    (void) pg_snap_open(&snap, st->blob, st->size, &err);

    ngx_shmtx_lock(&ctx->shpool->mutex);
    stored = ngx_http_portal_gate_zone_store_locked(sh, ctx->shpool, &snap);
    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (stored != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" is too small for the %uz-byte "
                      "snapshot in \"%V\", it starts empty",
                      &shm_zone->shm.name, st->size, &ctx->state);

    } else {
        sh->revision = pg_snap_revision(&snap);
        sh->applied_at = st->mtime;
        sh->restored = 1;

        if (st->journal_records) {
            ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                          "portal_gate zone \"%V\" replayed %uz journal "
                          "record%s from \"%V" PG_JOURNAL_SUFFIX "\"",
                          &shm_zone->shm.name, st->journal_records,
                          st->journal_records == 1 ? "" : "s", &ctx->state);
        }

        ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" restored revision %L from "
                      "\"%V\"", &shm_zone->shm.name, sh->revision,
                      &ctx->state);
    }

    if (sh->noverrides) {
        ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" restored %ui kill "
                      "override%s from \"%V\"", &shm_zone->shm.name,
                      sh->noverrides, sh->noverrides == 1 ? "" : "s",
                      &ctx->state);
    }

    if (st->journal_note[0]) {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate state file \"%V\": %s", &ctx->state,
                      st->journal_note);
    }

    sh->generation++;

    /* records may follow this journal only if it was replayed whole and
     * the zone holds what it restores */

    if (stored == NGX_OK && st->journal_clean) {
        sh->journal_id = st->journal_id;
        sh->journal_generation = sh->generation;
        sh->state_generation = sh->generation;
        sh->durable_generation = sh->generation;
        sh->journal_records = st->journal_records;
        sh->journal_bytes = st->journal_bytes;
        sh->state_bytes = st->size;
    }

    free(st->blob);
    ngx_free(st);

    return NGX_OK;
}
