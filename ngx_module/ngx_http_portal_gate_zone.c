
/*
 * The shared zone: its init at start and reload (kept, resized or fresh).
 * The snapshot in it, its swap and each worker's copy are in
 * ngx_http_portal_gate_pieces.c.
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

    ngx_int_t                         rc;
    ngx_uint_t                        fresh;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    ctx = shm_zone->data;
    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    ctx->sh = ngx_http_portal_gate_zone_shared(shm_zone,
                  octx ? octx->sh : NULL, NGX_HTTP_PORTAL_GATE_MAGIC,
                  NGX_HTTP_PORTAL_GATE_LAYOUT,
                  sizeof(ngx_http_portal_gate_shctx_t), "portal_gate zone",
                  &fresh);
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    if (!fresh) {
        /* a reload with the same name and size keeps the contents, and
         * this is the live zone: a resize that failed to commit retires
         * nothing */

        if (octx) {
            ctx->sh->retired = 0;
        }

        return NGX_OK;
    }

    ctx->sh->generation = 1;     /* a new worker's copy starts at 0 */
    ctx->sh->piece_serial = 1;   /* a piece id is never 0 */

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
 * The start of every zone's init: the structure shpool->data points to,
 * which begins with ngx_http_portal_gate_zone_header_t. osh is the old
 * cycle's when a reload hands the same zone over (the same name, tag and
 * size), else NULL.
 *
 * Returns the structure, or NULL: a zone another layout wrote (refused
 * with a message), or no memory. *fresh: a new zone, the structure size
 * bytes zeroed but for the header, and the slab pool's failures name the
 * zone.
 */

void *
ngx_http_portal_gate_zone_shared(ngx_shm_zone_t *shm_zone, void *osh,
    ngx_uint_t magic, ngx_uint_t layout, size_t size, char *what,
    ngx_uint_t *fresh)
{
    size_t                               len;
    ngx_slab_pool_t                     *shpool;
    ngx_http_portal_gate_zone_header_t  *h;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    /* Windows: a worker maps the zone its master made */
    if (osh == NULL && shm_zone->shm.exists) {
        osh = shpool->data;
    }

    if (osh) {
        h = osh;
        *fresh = 0;

        if (h->magic != magic || h->layout != layout) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "%s \"%V\" has layout %ui, this module needs %ui: "
                          "restart nginx", what, &shm_zone->shm.name,
                          h->layout, layout);
            return NULL;
        }

        return h;
    }

    h = ngx_slab_calloc(shpool, size);
    if (h == NULL) {
        return NULL;
    }

    h->magic = magic;
    h->layout = layout;

    shpool->data = h;

    len = sizeof(" in  \"\"") + ngx_strlen(what) + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NULL;
    }

    ngx_sprintf(shpool->log_ctx, " in %s \"%V\"%Z", what, &shm_zone->shm.name);

    *fresh = 1;

    return h;
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
                || octx->sh->header.magic != NGX_HTTP_PORTAL_GATE_MAGIC
                || octx->sh->header.layout != NGX_HTTP_PORTAL_GATE_LAYOUT)
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
    size_t                            size;
    ngx_int_t                         rc;
    pg_snap_t                         snap;
    pg_error_t                        err;
    ngx_http_portal_gate_shctx_t     *sh, *osh;
    ngx_http_portal_gate_zone_ctx_t  *ctx;

    ctx = shm_zone->data;
    sh = ctx->sh;
    osh = octx->sh;

    rc = ngx_http_portal_gate_zone_packed_locked(osh, octx->shpool,
                                                 shm_zone->shm.log,
                                                 &blob, &size);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc != NGX_OK || pg_snap_open(&snap, blob, size, &err) != PG_OK) {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" resized, but the old zone's "
                      "snapshot is bad: restoring from the state file",
                      &shm_zone->shm.name);

        if (blob) {
            ngx_free(blob);
        }

        return NGX_DECLINED;
    }

    /* no worker of the new cycle runs yet: the lock only keeps the rules */

    ngx_shmtx_lock(&ctx->shpool->mutex);

    ngx_http_portal_gate_zone_free_locked(sh, ctx->shpool);

    if (sh->piece_serial < osh->piece_serial) {
        sh->piece_serial = osh->piece_serial;
    }

    rc = ngx_http_portal_gate_zone_store_locked(sh, ctx->shpool, &snap);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (blob) {
        ngx_free(blob);
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "portal_gate zone \"%V\" of %uz bytes cannot hold "
                      "the current %uz-byte snapshot: keep the zone's "
                      "size, or enlarge it", &shm_zone->shm.name,
                      shm_zone->shm.size, size);
        return NGX_ERROR;
    }

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
