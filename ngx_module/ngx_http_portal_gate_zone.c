
/*
 * The shared zone: its init at start and reload (kept, resized or fresh),
 * the swap of a new snapshot into it, and each worker's copy of it.
 */


#include "ngx_http_portal_gate_module.h"


static ngx_http_portal_gate_zone_ctx_t *ngx_http_portal_gate_old_zone(
    ngx_cycle_t *old, ngx_shm_zone_t *shm_zone);
static ngx_int_t ngx_http_portal_gate_resized(ngx_shm_zone_t *shm_zone,
    ngx_http_portal_gate_zone_ctx_t *octx);
static ngx_int_t ngx_http_portal_gate_lock_old(
    ngx_http_portal_gate_zone_ctx_t *octx);
static ngx_int_t ngx_http_portal_gate_carry(ngx_shm_zone_t *shm_zone,
    ngx_http_portal_gate_zone_ctx_t *octx);


ngx_int_t
ngx_http_portal_gate_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_portal_gate_zone_ctx_t  *octx = data;

    size_t                            len;
    ngx_int_t                         rc;
    ngx_http_portal_gate_shctx_t     *sh;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* a reload with the same name and size: keep the contents */

        if (octx->sh->magic != NGX_HTTP_PORTAL_GATE_MAGIC
            || octx->sh->layout != NGX_HTTP_PORTAL_GATE_LAYOUT)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "portal_gate zone \"%V\" has layout %ui, this "
                          "module needs %d: restart nginx",
                          &shm_zone->shm.name, octx->sh->layout,
                          NGX_HTTP_PORTAL_GATE_LAYOUT);
            return NGX_ERROR;
        }

        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;

        /* the live zone: a resize that failed to commit retires nothing */
        ctx->sh->retired = 0;

        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(ctx->shpool, sizeof(ngx_http_portal_gate_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    sh->magic = NGX_HTTP_PORTAL_GATE_MAGIC;
    sh->layout = NGX_HTTP_PORTAL_GATE_LAYOUT;
    sh->generation = 1;     /* a new worker's copy starts at 0 */

    ctx->sh = sh;
    ctx->shpool->data = sh;

    len = sizeof(" in portal_gate zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in portal_gate zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is answered with 507, not logged by the allocator */
    ctx->shpool->log_nomem = 0;

    /* during a reload, ngx_cycle is still the old cycle */

    octx = ngx_http_portal_gate_old_zone((ngx_cycle_t *) ngx_cycle,
                                         shm_zone);

    if (octx) {
        rc = ngx_http_portal_gate_resized(shm_zone, octx);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    /* a first start, or the old zone could not be read */

    return ngx_http_portal_gate_state_restore(shm_zone);
}


/*
 * A reload that changes the zone's size hands over a fresh zone while the
 * old one is still mapped: carry its snapshot over, which needs no state
 * file and is never staler than one. The old zone stays the live one until
 * the new cycle is committed (ngx_http_portal_gate_retire()): this reload
 * may still fail.
 *
 * NGX_OK: carried; NGX_DECLINED: the old zone is locked or bad, restore
 * from the state file; NGX_ERROR: the new zone cannot hold the snapshot,
 * and the reload is refused rather than start the edge empty.
 */

static ngx_int_t
ngx_http_portal_gate_resized(ngx_shm_zone_t *shm_zone,
    ngx_http_portal_gate_zone_ctx_t *octx)
{
    ngx_int_t                         rc;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (ngx_http_portal_gate_lock_old(octx) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" resized, but the old zone "
                      "stays locked: restoring from the state file",
                      &shm_zone->shm.name);
        return NGX_DECLINED;
    }

    rc = ngx_http_portal_gate_carry(shm_zone, octx);

    if (rc == NGX_OK) {
        ngx_http_portal_gate_challenges_carry(shm_zone, octx);
    }

    ngx_shmtx_unlock(&octx->shpool->mutex);

    if (rc == NGX_OK) {
        ctx->old = octx;

        ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" resized to %uz bytes, "
                      "revision %L carried over", &shm_zone->shm.name,
                      shm_zone->shm.size, ctx->sh->revision);
    }

    return rc;
}


/*
 * The module's init_module: it runs in the master once the new cycle is
 * committed (nginx -t and a failed reload never get here), before any new
 * worker starts, while the old zones are still mapped. Each old zone that
 * a resize replaced is retired: an old worker still finishing a request
 * must not apply a change where nobody reads it, answer 200 and leave the
 * new zone behind; it answers 503, and the controller tries again. What
 * old workers applied since the copy is copied again first.
 */

ngx_int_t
ngx_http_portal_gate_retire(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_shm_zone_t                   *zone;
    ngx_list_part_t                  *part;
    ngx_http_portal_gate_shctx_t     *osh;
    ngx_http_portal_gate_zone_ctx_t  *ctx, *octx;

    part = &cycle->shared_memory.part;
    zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            zone = part->elts;
            i = 0;
        }

        if (zone[i].tag != &ngx_http_portal_gate_module
            || zone[i].data == NULL)
        {
            continue;
        }

        ctx = zone[i].data;
        octx = ctx->old;

        if (octx == NULL) {
            continue;
        }

        ctx->old = NULL;
        osh = octx->sh;

        if (ngx_http_portal_gate_lock_old(octx) != NGX_OK) {
            /* best effort without the lock: words that only go up */
            osh->retired = 1;
            osh->generation++;

            ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                          "portal_gate zone \"%V\" resized, but the old zone "
                          "stays locked: a change an old worker applies "
                          "now is lost until the controller pushes again",
                          &zone[i].shm.name);
            continue;
        }

        if (osh->generation != ctx->sh->carried_generation
            && ngx_http_portal_gate_carry(&zone[i], octx) != NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                          "portal_gate zone \"%V\": what old workers applied "
                          "during the resize could not be carried over; "
                          "the controller pushes it again",
                          &zone[i].shm.name);
        }

        /* a PUT challenges moves no generation: copy them again anyway */
        ngx_http_portal_gate_challenges_carry(&zone[i], octx);

        /* the generation moves: an old writer's state file never renames */
        osh->retired = 1;
        osh->generation++;

        ngx_shmtx_unlock(&octx->shpool->mutex);
    }

    return NGX_OK;
}


/*
 * The old cycle's zone of this name, a valid one, in another mapping than
 * shm_zone's (the same mapping is a reload that kept the zone), or NULL.
 */

static ngx_http_portal_gate_zone_ctx_t *
ngx_http_portal_gate_old_zone(ngx_cycle_t *old, ngx_shm_zone_t *shm_zone)
{
    ngx_uint_t                        i;
    ngx_shm_zone_t                   *zone;
    ngx_list_part_t                  *part;
    ngx_http_portal_gate_zone_ctx_t  *octx;

    part = &old->shared_memory.part;
    zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            zone = part->elts;
            i = 0;
        }

        if (zone[i].tag == &ngx_http_portal_gate_module
            && zone[i].shm.name.len == shm_zone->shm.name.len
            && ngx_strncmp(zone[i].shm.name.data, shm_zone->shm.name.data,
                           shm_zone->shm.name.len) == 0
            && zone[i].data != NULL
            && zone[i].shm.addr != shm_zone->shm.addr)
        {
            octx = zone[i].data;

            if (octx->sh == NULL
                || octx->sh->magic != NGX_HTTP_PORTAL_GATE_MAGIC
                || octx->sh->layout != NGX_HTTP_PORTAL_GATE_LAYOUT)
            {
                return NULL;
            }

            return octx;
        }
    }
}


/*
 * SIGCHLD is blocked while the master reloads, so a worker that died
 * holding the lock would not be unlocked: try for a second, then give up
 * rather than hang the master.
 */

static ngx_int_t
ngx_http_portal_gate_lock_old(ngx_http_portal_gate_zone_ctx_t *octx)
{
    ngx_uint_t  i;

    for (i = 0; i < 1000; i++) {
        if (ngx_shmtx_trylock(&octx->shpool->mutex)) {
            return NGX_OK;
        }

        ngx_msleep(1);
    }

    return NGX_BUSY;
}


/*
 * Copy the old zone's snapshot, overrides and state into the new zone,
 * replacing what an earlier copy put there. The caller holds the old
 * zone's lock; no worker of the new cycle runs yet. The master does not
 * trust memory that workers write: the blob must lie inside the old zone
 * and open as a snapshot.
 */

static ngx_int_t
ngx_http_portal_gate_carry(ngx_shm_zone_t *shm_zone,
    ngx_http_portal_gate_zone_ctx_t *octx)
{
    u_char                           *blob;
    pg_snap_t                         snap;
    pg_error_t                        err;
    ngx_slab_pool_t                  *opool;
    ngx_http_portal_gate_shctx_t     *sh, *osh;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    ctx = shm_zone->data;
    sh = ctx->sh;
    osh = octx->sh;
    opool = octx->shpool;

    if (osh->blob_size
        && (osh->blob == NULL
            || osh->blob < opool->start
            || osh->blob_size > (size_t) (opool->end - osh->blob)
            || pg_snap_open(&snap, osh->blob, osh->blob_size, &err)
               != PG_OK))
    {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" resized, but the old zone's "
                      "snapshot is bad: restoring from the state file",
                      &shm_zone->shm.name);
        return NGX_DECLINED;
    }

    blob = NULL;

    if (osh->blob && osh->blob_size) {
        blob = ngx_slab_alloc(ctx->shpool, osh->blob_size);

        if (blob == NULL) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "portal_gate zone \"%V\" of %uz bytes cannot hold "
                          "the current %uz-byte snapshot: keep the zone's "
                          "size, or enlarge it", &shm_zone->shm.name,
                          shm_zone->shm.size, osh->blob_size);
            return NGX_ERROR;
        }

        ngx_memcpy(blob, osh->blob, osh->blob_size);
    }

    if (sh->blob) {
        ngx_slab_free(ctx->shpool, sh->blob);
    }

    sh->blob = blob;
    sh->blob_size = blob ? osh->blob_size : 0;
    sh->revision = osh->revision;
    sh->applied_at = osh->applied_at;
    sh->restored = osh->restored;
    sh->swapping = osh->swapping;
    sh->noverrides = ngx_min(osh->noverrides, PG_OVERRIDES_MAX);
    ngx_memcpy(sh->overrides, osh->overrides,
               sh->noverrides * sizeof(pg_override_t));
    sh->nomem_revision = osh->nomem_revision;
    sh->state_corrupt = osh->state_corrupt;
    sh->state_failed = osh->state_failed;
    sh->state_written_at = osh->state_written_at;
    ngx_memcpy(sh->state_error, osh->state_error, sizeof(sh->state_error));
    sh->state_error[NGX_HTTP_PORTAL_GATE_ERR_LEN - 1] = '\0';
    sh->carried_generation = osh->generation;
    sh->generation++;

    return NGX_OK;
}


/*
 * This worker's copy of the snapshot, refreshed when the zone's generation
 * has moved. The copy is taken under the slab pool's mutex, which the
 * writer holds while it frees the old blob. If the copy fails, the worker
 * keeps serving its previous snapshot.
 */

pg_snap_t *
ngx_http_portal_gate_snapshot(ngx_http_request_t *r)
{
    u_char                            *blob;
    size_t                             size;
    ngx_uint_t                         i, n;
    pg_snap_t                          snap;
    pg_error_t                         err;
    pg_override_t                     *o;
    ngx_atomic_uint_t                  generation;
    u_char                             kills[PG_OVERRIDES_MAX]
                                            [2 * (PG_NAME_MAX + 1)];
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

    if (pmcf->shm_zone == NULL) {
        return &pmcf->snap;
    }

    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    if (sh->generation == pmcf->generation) {
        return &pmcf->snap;
    }

    blob = NULL;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    generation = sh->generation;
    size = sh->blob ? sh->blob_size : 0;

    if (sh->swapping) {
        /* the lock is free, so the worker that set it died mid-swap */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "portal_gate zone \"%V\" lost its snapshot: a worker "
                      "died while it swapped one in; the zone is empty until "
                      "the next snapshot", &pmcf->shm_zone->shm.name);
    }

    if (size) {
        blob = ngx_alloc(size, r->connection->log);
        if (blob == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return &pmcf->snap;
        }

        ngx_memcpy(blob, sh->blob, size);
    }

    /* the kill overrides, as "env\0flag\0" */

    n = ngx_min(sh->noverrides, PG_OVERRIDES_MAX);

    for (i = 0; i < n; i++) {
        o = &sh->overrides[i];
        ngx_memcpy(kills[i], o->env, PG_NAME_MAX + 1);
        ngx_memcpy(kills[i] + PG_NAME_MAX + 1, o->flag, PG_NAME_MAX + 1);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (pg_snap_open(&snap, blob, size, &err) != PG_OK) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "portal_gate zone \"%V\" holds a bad snapshot: %s",
                      &pmcf->shm_zone->shm.name, err.text);
        ngx_free(blob);
        pmcf->generation = generation;
        return &pmcf->snap;
    }

    /* an override turns its flag off in this copy: nothing per request */

    for (i = 0; i < n; i++) {
        kills[i][PG_NAME_MAX] = '\0';
        kills[i][2 * PG_NAME_MAX + 1] = '\0';

        (void) pg_snap_kill(&snap, blob,
                            (char *) kills[i], ngx_strlen(kills[i]),
                            (char *) kills[i] + PG_NAME_MAX + 1,
                            ngx_strlen(kills[i] + PG_NAME_MAX + 1));
    }

    if (pmcf->blob) {
        ngx_free(pmcf->blob);
    }

    pmcf->blob = blob;
    pmcf->snap = snap;
    pmcf->generation = generation;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "portal gate: copied snapshot generation %uA, %uz bytes",
                   generation, size);

    return &pmcf->snap;
}


/*
 * Swap the blob into the zone, under the slab pool's mutex:
 *
 *   NGX_OK        applied; *generation is the zone's new generation;
 *   NGX_AGAIN     base is not 0 (a patch's blob, made from the zone's
 *                 snapshot at generation base) and the zone has moved
 *                 since: nothing is applied, two patches made on one
 *                 base never both apply;
 *   NGX_DECLINED  the revision is not newer than *current, the zone's
 *                 (force applies it all the same);
 *   NGX_BUSY      the zone cannot hold it; the old snapshot stays;
 *   NGX_ABORT     a reload has handed this zone's snapshot to a resized
 *                 zone: what is written here would be lost, try again
 *                 (the client reaches a new worker).
 *
 * A worker may die at any point while it holds the mutex (the master then
 * frees the mutex, not what the worker left half done), so every step
 * leaves the zone saying what it holds.
 */

ngx_int_t
ngx_http_portal_gate_apply(ngx_http_request_t *r, unsigned char *blob,
    size_t size, ngx_uint_t force, ngx_atomic_uint_t base, int64_t *current,
    ngx_atomic_uint_t *generation)
{
    u_char                            *p, *old;
    size_t                             old_size;
    int64_t                            revision, old_revision;
    pg_snap_t                          snap;
    pg_error_t                         err;
    ngx_slab_pool_t                   *shpool;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;
    shpool = ctx->shpool;

    if (pg_snap_open(&snap, blob, size, &err) != PG_OK) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "portal_gate: compiled snapshot is bad: %s", err.text);
        return NGX_ERROR;
    }

    revision = pg_snap_revision(&snap);

    ngx_shmtx_lock(&shpool->mutex);

    *current = sh->revision;

    if (sh->retired) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_ABORT;
    }

    if (base && sh->generation != base) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_AGAIN;
    }

    if (revision <= sh->revision && !force) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_DECLINED;
    }

    p = ngx_slab_alloc_locked(shpool, size);

    if (p == NULL && sh->blob) {

        /*
         * No room for the old and the new snapshot side by side: free the
         * old one first. Readers copy under this same lock, so none of them
         * sees the gap; if the new one still does not fit, the old one goes
         * back from the writer's copy.
         *
         * Should this worker die in the gap, the zone must not claim the
         * old revision without its blob: it says revision 0 (a reconcile
         * compares revisions, so the controller pushes again) and marks
         * the swap, which readers and GET status report. The generation
         * stays, so workers keep the copy they have.
         */

        old_size = sh->blob_size;
        old_revision = sh->revision;
        old = ngx_alloc(old_size, r->connection->log);

        if (old == NULL) {
            ngx_shmtx_unlock(&shpool->mutex);
            return NGX_ERROR;
        }

        ngx_memcpy(old, sh->blob, old_size);

        sh->swapping = 1;
        sh->revision = 0;

        /* the zone forgets the blob before its pages go */
        p = sh->blob;
        sh->blob = NULL;
        sh->blob_size = 0;
        ngx_slab_free_locked(shpool, p);

        p = ngx_slab_alloc_locked(shpool, size);

        if (p == NULL) {
            sh->blob = ngx_slab_alloc_locked(shpool, old_size);

            if (sh->blob == NULL) {
                /* cannot happen: the pages were just freed */
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              "portal_gate zone \"%V\" lost its snapshot",
                              &pmcf->shm_zone->shm.name);
                sh->blob_size = 0;
                sh->generation++;

            } else {
                ngx_memcpy(sh->blob, old, old_size);
                sh->blob_size = old_size;
                sh->revision = old_revision;
            }

            sh->swapping = 0;

            ngx_shmtx_unlock(&shpool->mutex);
            ngx_free(old);

            goto nomem;
        }

        ngx_free(old);
    }

    if (p == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        goto nomem;
    }

    ngx_memcpy(p, blob, size);

    old = sh->blob;

    sh->blob = p;
    sh->blob_size = size;
    sh->revision = revision;
    sh->applied_at = ngx_time();
    sh->restored = 0;
    sh->swapping = 0;
    sh->nomem_revision = 0;
    sh->generation++;

    *generation = sh->generation;

    if (old) {
        ngx_slab_free_locked(shpool, old);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;

nomem:

    /* the controller retries every reconcile: say it once per revision */

    ngx_shmtx_lock(&shpool->mutex);

    old_revision = sh->nomem_revision;
    sh->nomem_revision = revision;

    ngx_shmtx_unlock(&shpool->mutex);

    if (old_revision != revision) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "portal_gate zone \"%V\" is too small for the %uz-byte "
                      "snapshot of revision %L; enlarge portal_gate_zone",
                      &pmcf->shm_zone->shm.name, size, revision);
    }

    return NGX_BUSY;
}
