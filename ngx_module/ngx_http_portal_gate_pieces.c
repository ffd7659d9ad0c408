
/*
 * The zone's snapshot as an index and its pieces (include/pg_blob.h): the
 * swap of a new one in, each worker's copy of it, and whole copies of it
 * (packed) for GET snapshot, the state file and a resize.
 *
 * The index and each piece are slab allocations of their own, immutable
 * once in, and every piece is named by an id that the zone never gives
 * twice (sh->piece_serial). A PUT brings every piece new; a PATCH brings
 * a new index and the patched flags' pieces, and keeps the others where
 * they are. Pieces the new index no longer names are freed after the
 * swap, under the same lock. A worker that sees a new generation copies
 * the index and only the pieces whose ids it does not hold yet, and frees
 * its own pieces the index no longer names; it checks each new piece and
 * the index before it serves them, as it checked the whole blob before.
 */


#include "ngx_http_portal_gate_module.h"


/* The worker's pieces by id, to find the ones it holds. */
typedef struct {
    uint64_t                      id;
    ngx_uint_t                    pos;
} ngx_http_portal_gate_held_t;


static ngx_int_t ngx_http_portal_gate_in_pool(ngx_slab_pool_t *pool,
    u_char *p, size_t size);
static ngx_int_t ngx_http_portal_gate_zone_sane_locked(
    ngx_http_portal_gate_shctx_t *sh, ngx_slab_pool_t *pool);
static int ngx_http_portal_gate_held_cmp(const void *a, const void *b);
static ngx_http_portal_gate_held_t *ngx_http_portal_gate_held_find(
    ngx_http_portal_gate_held_t *held, ngx_uint_t n, uint64_t id);
static ngx_int_t ngx_http_portal_gate_install_locked(
    ngx_http_portal_gate_shctx_t *sh, ngx_slab_pool_t *pool,
    const u_char *index, size_t index_size, ngx_uint_t n,
    const uint64_t *ids, const size_t *sizes, const u_char **src,
    u_char **reuse);
static void ngx_http_portal_gate_set_free(u_char *index,
    ngx_http_portal_gate_piece_t *pieces, const unsigned char **ptrs,
    ngx_uint_t n);


/* The zone does not trust what workers wrote: a pointer must lie inside. */

static ngx_int_t
ngx_http_portal_gate_in_pool(ngx_slab_pool_t *pool, u_char *p, size_t size)
{
    return p != NULL && p >= pool->start && p <= pool->end
           && size <= (size_t) (pool->end - p);
}


/* Do the zone's words hold together: its index (not NULL) and its array
 * of pieces inside the zone? The pieces themselves are checked where
 * they are read. Under the lock. */

static ngx_int_t
ngx_http_portal_gate_zone_sane_locked(ngx_http_portal_gate_shctx_t *sh,
    ngx_slab_pool_t *pool)
{
    return ngx_http_portal_gate_in_pool(pool, sh->index, sh->index_size)
           && sh->npieces <= PG_BUILD_IDS
           && (sh->npieces == 0
               || ngx_http_portal_gate_in_pool(pool, (u_char *) sh->pieces,
                      sh->npieces * sizeof(ngx_http_portal_gate_piece_t)));
}


/*
 * A copy of the zone's snapshot in the packed form (the index, then its
 * pieces in its order), in one ngx_alloc()ed buffer; *blob NULL and *size
 * 0 for the empty snapshot. The caller holds the zone's lock. NGX_ERROR
 * when out of memory, NGX_DECLINED when the zone's words do not hold
 * together (a pointer outside the zone): nothing is copied then. The copy
 * is not checked: open it with pg_snap_open().
 */

ngx_int_t
ngx_http_portal_gate_zone_packed_locked(ngx_http_portal_gate_shctx_t *sh,
    ngx_slab_pool_t *pool, ngx_log_t *log, u_char **blob, size_t *size)
{
    u_char                        *p;
    size_t                         total;
    ngx_uint_t                     i;
    ngx_http_portal_gate_piece_t  *pc;

    *blob = NULL;
    *size = 0;

    if (sh->index == NULL || sh->index_size == 0) {
        return NGX_OK;
    }

    if (!ngx_http_portal_gate_zone_sane_locked(sh, pool)) {
        return NGX_DECLINED;
    }

    total = sh->index_size;
    pc = sh->pieces;

    for (i = 0; i < sh->npieces; i++) {
        if (!ngx_http_portal_gate_in_pool(pool, pc[i].data, pc[i].size)
            || pc[i].size > NGX_MAX_SIZE_T_VALUE - total)
        {
            return NGX_DECLINED;
        }

        total += pc[i].size;
    }

    p = ngx_alloc(total, log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *blob = p;
    *size = total;

    p = ngx_cpymem(p, sh->index, sh->index_size);

    for (i = 0; i < sh->npieces; i++) {
        p = ngx_cpymem(p, pc[i].data, pc[i].size);
    }

    return NGX_OK;
}


/* Free the zone's snapshot: it is empty afterwards. Under the lock. */

void
ngx_http_portal_gate_zone_free_locked(ngx_http_portal_gate_shctx_t *sh,
    ngx_slab_pool_t *pool)
{
    u_char                        *index;
    ngx_uint_t                     i, n;
    ngx_http_portal_gate_piece_t  *pieces;

    /* the zone forgets them before their pages go */

    index = sh->index;
    pieces = sh->pieces;
    n = sh->npieces;

    sh->index = NULL;
    sh->index_size = 0;
    sh->pieces = NULL;
    sh->npieces = 0;
    sh->blob_size = 0;

    for (i = 0; i < n; i++) {
        ngx_slab_free_locked(pool, pieces[i].data);
    }

    if (pieces) {
        ngx_slab_free_locked(pool, pieces);
    }

    if (index) {
        ngx_slab_free_locked(pool, index);
    }
}


/*
 * Put an opened packed snapshot into an empty zone (a restore from the
 * state file, a resize's copy): every piece new in this zone, under the
 * ids the snapshot gives them, and the zone's serial past them. Under the
 * lock. NGX_OK, or NGX_BUSY when the zone cannot hold it (then it stays
 * empty).
 */

ngx_int_t
ngx_http_portal_gate_zone_store_locked(ngx_http_portal_gate_shctx_t *sh,
    ngx_slab_pool_t *pool, const pg_snap_t *snap)
{
    size_t          *sizes;
    uint64_t        *ids, max;
    ngx_int_t        rc;
    ngx_uint_t       i, n;
    const u_char   **src;

    if (snap->base == NULL) {
        return NGX_OK;
    }

    n = pg_snap_piece_count(snap);

    ids = ngx_alloc(n * sizeof(uint64_t) + 1, ngx_cycle->log);
    sizes = ngx_alloc(n * sizeof(size_t) + 1, ngx_cycle->log);
    src = ngx_alloc(n * sizeof(u_char *) + 1, ngx_cycle->log);

    if (ids == NULL || sizes == NULL || src == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    max = 0;

    for (i = 0; i < n; i++) {
        ids[i] = pg_snap_piece_id(snap, i, &sizes[i]);
        src[i] = pg_snap_piece(snap, i);
        max = ngx_max(max, ids[i]);
    }

    rc = ngx_http_portal_gate_install_locked(sh, pool, snap->base,
                                             pg_snap_index_size(snap), n,
                                             ids, sizes, src, NULL);

    if (sh->piece_serial <= max) {
        sh->piece_serial = max + 1;
    }

done:

    if (ids) {
        ngx_free(ids);
    }

    if (sizes) {
        ngx_free(sizes);
    }

    if (src) {
        ngx_free((void *) src);
    }

    return rc;
}


/*
 * Allocate and fill an index and its pieces in the zone, and make them
 * the zone's snapshot: piece i is reuse[i] when that is set (a piece the
 * zone holds already, kept as it is), otherwise a new allocation with a
 * copy of src[i]. The zone's previous index and piece array are replaced,
 * not freed (the caller frees what nobody names any more). Under the
 * lock. NGX_OK, or NGX_BUSY when the zone cannot hold it: then nothing
 * has changed.
 */

static ngx_int_t
ngx_http_portal_gate_install_locked(ngx_http_portal_gate_shctx_t *sh,
    ngx_slab_pool_t *pool, const u_char *index, size_t index_size,
    ngx_uint_t n, const uint64_t *ids, const size_t *sizes,
    const u_char **src, u_char **reuse)
{
    u_char                        *ix;
    size_t                         total;
    ngx_uint_t                     i, j;
    ngx_http_portal_gate_piece_t  *pieces;

    ix = ngx_slab_alloc_locked(pool, index_size);
    pieces = n ? ngx_slab_alloc_locked(pool,
                     n * sizeof(ngx_http_portal_gate_piece_t))
               : NULL;

    if (ix == NULL || (n && pieces == NULL)) {
        goto nomem;
    }

    total = index_size;

    for (i = 0; i < n; i++) {
        pieces[i].id = ids[i];
        pieces[i].size = sizes[i];

        if (reuse && reuse[i]) {
            pieces[i].data = reuse[i];

        } else {
            pieces[i].data = ngx_slab_alloc_locked(pool, sizes[i]);

            if (pieces[i].data == NULL) {
                for (j = 0; j < i; j++) {
                    if (!(reuse && reuse[j])) {
                        ngx_slab_free_locked(pool, pieces[j].data);
                    }
                }

                goto nomem;
            }

            ngx_memcpy(pieces[i].data, src[i], sizes[i]);
        }

        total += sizes[i];
    }

    ngx_memcpy(ix, index, index_size);

    sh->index = ix;
    sh->index_size = index_size;
    sh->pieces = pieces;
    sh->npieces = n;
    sh->blob_size = total;

    return NGX_OK;

nomem:

    if (ix) {
        ngx_slab_free_locked(pool, ix);
    }

    if (pieces) {
        ngx_slab_free_locked(pool, pieces);
    }

    return NGX_BUSY;
}


/*
 * Swap a built snapshot (pg_snap_build_*) into the zone, under the slab
 * pool's mutex:
 *
 *   NGX_OK        applied; *generation is the zone's new generation;
 *   NGX_AGAIN     base is not 0 (a patch's build, made from the zone's
 *                 index at generation base) and the zone has moved
 *                 since: nothing is applied, two patches made on one
 *                 base never both apply;
 *   NGX_DECLINED  the revision is not newer than *current, the zone's
 *                 (force applies it all the same);
 *   NGX_BUSY      the zone cannot hold it; the old snapshot stays;
 *   NGX_ABORT     a reload has handed this zone's snapshot to a resized
 *                 zone: what is written here would be lost, try again
 *                 (the client reaches a new worker).
 *
 * Only the build's new pieces and index are allocated; a kept piece is
 * the zone's own, named again. A worker may die at any point while it
 * holds the mutex (the master then frees the mutex, not what the worker
 * left half done), so every step leaves the zone saying what it holds.
 */

ngx_int_t
ngx_http_portal_gate_apply(ngx_http_request_t *r, pg_build_t *b,
    ngx_uint_t force, ngx_atomic_uint_t base, int64_t *current,
    ngx_atomic_uint_t *generation)
{
    u_char                            *old_index, *packed, **reuse;
    size_t                             packed_size;
    int64_t                            old_revision;
    pg_snap_t                          old;
    ngx_int_t                          rc;
    pg_error_t                         err;
    ngx_uint_t                         i, k, old_n, *keep;
    const u_char                     **src;
    ngx_slab_pool_t                   *shpool;
    ngx_http_portal_gate_piece_t      *old_pieces;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;
    shpool = ctx->shpool;

    src = ngx_alloc(b->count * sizeof(u_char *) + 1, r->connection->log);
    reuse = ngx_alloc(b->count * sizeof(u_char *) + 1, r->connection->log);

    if (src == NULL || reuse == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    keep = NULL;
    packed = NULL;

    ngx_shmtx_lock(&shpool->mutex);

    *current = sh->revision;

    if (sh->retired) {
        rc = NGX_ABORT;
        goto unlock;
    }

    if (base && sh->generation != base) {
        rc = NGX_AGAIN;
        goto unlock;
    }

    if (b->revision <= sh->revision && !force) {
        rc = NGX_DECLINED;
        goto unlock;
    }

    /* the kept pieces: the zone's own, at the positions the build says */

    old_n = sh->npieces;
    keep = ngx_calloc(old_n * sizeof(ngx_uint_t) + 1, r->connection->log);

    if (keep == NULL) {
        rc = NGX_ERROR;
        goto unlock;
    }

    for (i = 0; i < b->count; i++) {
        src[i] = b->pieces[i];
        reuse[i] = NULL;

        if (b->kept[i] == 0) {
            continue;
        }

        k = b->kept[i] - 1;

        if (k >= old_n || sh->pieces[k].id != b->ids[i]
            || sh->pieces[k].size != b->sizes[i])
        {
            /* cannot happen: the base generation names this index */
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "portal_gate zone \"%V\": a patch keeps piece %ui, "
                          "which the zone does not hold",
                          &pmcf->shm_zone->shm.name, k);
            rc = NGX_ERROR;
            goto unlock;
        }

        reuse[i] = sh->pieces[k].data;
        keep[k] = 1;
    }

    old_index = sh->index;
    old_pieces = sh->pieces;

    rc = ngx_http_portal_gate_install_locked(sh, shpool, b->index,
                                             b->index_size, b->count,
                                             b->ids, b->sizes, src, reuse);

    if (rc == NGX_OK) {
        /* what the new index does not name goes, after the swap */

        for (k = 0; k < old_n; k++) {
            if (!keep[k]) {
                ngx_slab_free_locked(shpool, old_pieces[k].data);
            }
        }

        if (old_pieces) {
            ngx_slab_free_locked(shpool, old_pieces);
        }

        if (old_index) {
            ngx_slab_free_locked(shpool, old_index);
        }

        goto applied;
    }

    if (old_index == NULL) {
        goto unlock;        /* NGX_BUSY: an empty zone too small */
    }

    /*
     * No room for the old and the new side by side: free the old snapshot
     * first, kept pieces included (nothing may stay allocated that the
     * zone does not name). Readers copy under this same lock, so none of
     * them sees the gap; if the new one still does not fit, the old one
     * goes back from the writer's packed copy.
     *
     * Should this worker die in the gap, the zone must not claim the old
     * revision without its snapshot: it says revision 0 (a reconcile
     * compares revisions, so the controller pushes again) and marks the
     * swap, which readers and GET status report. The generation stays,
     * so workers keep the copy they have.
     */

    rc = ngx_http_portal_gate_zone_packed_locked(sh, shpool,
                                                 r->connection->log,
                                                 &packed, &packed_size);

    if (rc != NGX_OK
        || pg_snap_open(&old, packed, packed_size, &err) != PG_OK)
    {
        rc = NGX_ERROR;
        goto unlock;
    }

    for (i = 0; i < b->count; i++) {
        if (b->kept[i]) {
            src[i] = pg_snap_piece(&old, b->kept[i] - 1);
        }
    }

    old_revision = sh->revision;

    sh->swapping = 1;
    sh->revision = 0;

    ngx_http_portal_gate_zone_free_locked(sh, shpool);

    rc = ngx_http_portal_gate_install_locked(sh, shpool, b->index,
                                             b->index_size, b->count,
                                             b->ids, b->sizes, src, NULL);

    if (rc != NGX_OK) {
        if (ngx_http_portal_gate_zone_store_locked(sh, shpool, &old)
            != NGX_OK)
        {
            /* cannot happen: the pages were just freed */
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "portal_gate zone \"%V\" lost its snapshot",
                          &pmcf->shm_zone->shm.name);
            sh->generation++;

        } else {
            sh->revision = old_revision;
        }

        sh->swapping = 0;
        rc = NGX_BUSY;
        goto unlock;
    }

applied:

    sh->revision = b->revision;
    sh->applied_at = ngx_time();
    sh->restored = 0;
    sh->swapping = 0;
    sh->nomem_revision = 0;
    sh->generation++;

    *generation = sh->generation;

unlock:

    ngx_shmtx_unlock(&shpool->mutex);

    if (keep) {
        ngx_free(keep);
    }

    if (packed) {
        ngx_free(packed);
    }

    if (rc == NGX_BUSY) {
        /* the controller retries every reconcile: say it once per
         * revision */

        ngx_shmtx_lock(&shpool->mutex);

        old_revision = sh->nomem_revision;
        sh->nomem_revision = b->revision;

        ngx_shmtx_unlock(&shpool->mutex);

        if (old_revision != b->revision) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "portal_gate zone \"%V\" is too small for the "
                          "%uz-byte snapshot of revision %L; enlarge "
                          "portal_gate_zone", &pmcf->shm_zone->shm.name,
                          b->bytes, b->revision);
        }
    }

done:

    if (src) {
        ngx_free((void *) src);
    }

    if (reuse) {
        ngx_free(reuse);
    }

    return rc;
}


/*
 * A copy of the zone's index (small: no list is in it), with the
 * generation and revision it was read at, for a patch to be built on.
 * *index is ngx_alloc()ed (NULL and *size 0 for the empty snapshot).
 * NGX_OK; NGX_ERROR when out of memory; NGX_DECLINED when the zone's
 * words do not hold together (nothing is copied). The copy is not
 * checked: pg_snap_build_patch() does that.
 */

ngx_int_t
ngx_http_portal_gate_zone_index(ngx_http_request_t *r, u_char **index,
    size_t *size, ngx_atomic_uint_t *generation, int64_t *revision)
{
    ngx_int_t                          rc;
    ngx_http_portal_gate_shctx_t      *sh;
    ngx_http_portal_gate_zone_ctx_t   *ctx;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    ctx = pmcf->shm_zone->data;
    sh = ctx->sh;

    *index = NULL;
    *size = 0;
    rc = NGX_OK;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    *generation = sh->generation;
    *revision = sh->revision;

    if (sh->index && sh->index_size) {
        if (!ngx_http_portal_gate_zone_sane_locked(sh, ctx->shpool)) {
            rc = NGX_DECLINED;

        } else {
            *index = ngx_alloc(sh->index_size, r->connection->log);

            if (*index == NULL) {
                rc = NGX_ERROR;

            } else {
                ngx_memcpy(*index, sh->index, sh->index_size);
                *size = sh->index_size;
            }
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


static int
ngx_http_portal_gate_held_cmp(const void *a, const void *b)
{
    const ngx_http_portal_gate_held_t  *ha = a, *hb = b;

    return (ha->id > hb->id) - (ha->id < hb->id);
}


static ngx_http_portal_gate_held_t *
ngx_http_portal_gate_held_find(ngx_http_portal_gate_held_t *held,
    ngx_uint_t n, uint64_t id)
{
    ngx_uint_t  lo, hi, mid;

    lo = 0;
    hi = n;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (held[mid].id == id) {
            return &held[mid];
        }

        if (held[mid].id < id) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return NULL;
}


/*
 * This worker's copy of the snapshot, refreshed when the zone's generation
 * has moved: the index, and the pieces whose ids it does not hold yet,
 * copied under the slab pool's mutex, which a writer holds while it frees
 * what the zone no longer names. If the copy fails, or what it copied
 * does not check, the worker keeps serving its previous snapshot.
 */

pg_snap_t *
ngx_http_portal_gate_snapshot(ngx_http_request_t *r)
{
    u_char                            *index, *used;
    size_t                             size, copied;
    ngx_uint_t                         i, n, held_n, kept, fresh, nkills;
    pg_snap_t                          snap;
    pg_error_t                         err;
    pg_override_t                     *o;
    ngx_atomic_uint_t                  generation;
    const unsigned char              **ptrs;
    u_char                             kills[PG_OVERRIDES_MAX]
                                            [2 * (PG_NAME_MAX + 1)];
    ngx_http_portal_gate_held_t       *held, *h;
    ngx_http_portal_gate_piece_t      *pieces, *zp;
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

    index = NULL;
    pieces = NULL;
    ptrs = NULL;
    copied = 0;
    kept = 0;
    fresh = 0;
    n = 0;
    generation = 0;

    /* the pieces held, by id, to be found in O(log n) under the lock */

    held_n = pmcf->npieces;
    held = ngx_alloc(held_n * sizeof(ngx_http_portal_gate_held_t) + 1,
                     r->connection->log);
    used = ngx_calloc(held_n + 1, r->connection->log);

    if (held == NULL || used == NULL) {
        goto nomem;
    }

    for (i = 0; i < held_n; i++) {
        held[i].id = pmcf->pieces[i].id;
        held[i].pos = i;
    }

    ngx_qsort(held, held_n, sizeof(ngx_http_portal_gate_held_t),
              ngx_http_portal_gate_held_cmp);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    generation = sh->generation;
    size = sh->index ? sh->index_size : 0;

    if (sh->swapping) {
        /* the lock is free, so the worker that set it died mid-swap */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "portal_gate zone \"%V\" lost its snapshot: a worker "
                      "died while it swapped one in; the zone is empty until "
                      "the next snapshot", &pmcf->shm_zone->shm.name);
    }

    if (size) {
        n = sh->npieces;

        if (!ngx_http_portal_gate_zone_sane_locked(sh, ctx->shpool)) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            ngx_cpystrn((u_char *) err.text,
                        (u_char *) "a pointer outside the zone",
                        sizeof(err.text));
            goto bad;
        }

        index = ngx_alloc(size, r->connection->log);
        pieces = ngx_calloc(n * sizeof(ngx_http_portal_gate_piece_t) + 1,
                            r->connection->log);
        ptrs = ngx_alloc(n * sizeof(u_char *) + 1, r->connection->log);

        if (index == NULL || pieces == NULL || ptrs == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            goto failed;
        }

        ngx_memcpy(index, sh->index, size);

        zp = sh->pieces;

        for (i = 0; i < n; i++) {
            pieces[i].id = zp[i].id;
            pieces[i].size = zp[i].size;

            h = ngx_http_portal_gate_held_find(held, held_n, zp[i].id);

            if (h != NULL && !used[h->pos]
                && pmcf->pieces[h->pos].size == zp[i].size)
            {
                /* held already: shared with the old set until the swap */
                pieces[i].data = pmcf->pieces[h->pos].data;
                pieces[i].kept = 1;
                used[h->pos] = 1;
                kept++;
                continue;
            }

            if (!ngx_http_portal_gate_in_pool(ctx->shpool, zp[i].data,
                                              zp[i].size))
            {
                ngx_shmtx_unlock(&ctx->shpool->mutex);
                ngx_cpystrn((u_char *) err.text,
                            (u_char *) "a piece outside the zone",
                            sizeof(err.text));
                goto bad;
            }

            pieces[i].data = ngx_alloc(zp[i].size, r->connection->log);
            if (pieces[i].data == NULL) {
                ngx_shmtx_unlock(&ctx->shpool->mutex);
                goto failed;
            }

            ngx_memcpy(pieces[i].data, zp[i].data, zp[i].size);
            copied += zp[i].size;
            fresh++;
        }
    }

    /* the kill overrides, as "env\0flag\0" */

    nkills = ngx_min(sh->noverrides, PG_OVERRIDES_MAX);
    o = sh->overrides;

    for (i = 0; i < nkills; i++) {
        ngx_memcpy(kills[i], o[i].env, PG_NAME_MAX + 1);
        ngx_memcpy(kills[i] + PG_NAME_MAX + 1, o[i].flag, PG_NAME_MAX + 1);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    /* outside the lock: each new piece whole, then the index over them */

    for (i = 0; i < n; i++) {
        if (!pieces[i].kept
            && pg_piece_check(pieces[i].data, pieces[i].size, &err) != PG_OK)
        {
            goto bad;
        }

        ptrs[i] = pieces[i].data;
    }

    if (pg_snap_open_pieces(&snap, index, size, ptrs, n, &err) != PG_OK) {
        goto bad;
    }

    /* an override turns its flag off in this copy: nothing per request */

    for (i = 0; i < nkills; i++) {
        kills[i][PG_NAME_MAX] = '\0';
        kills[i][2 * PG_NAME_MAX + 1] = '\0';

        (void) pg_snap_kill(&snap, index,
                            (char *) kills[i], ngx_strlen(kills[i]),
                            (char *) kills[i] + PG_NAME_MAX + 1,
                            ngx_strlen(kills[i] + PG_NAME_MAX + 1));
    }

    /* the swap: what the new index does not name goes */

    for (i = 0; i < held_n; i++) {
        pmcf->pieces[i].kept = used[i];
    }

    ngx_http_portal_gate_set_free(pmcf->snap_index, pmcf->pieces,
                                  pmcf->piece_ptrs, held_n);

    pmcf->snap_index = index;
    pmcf->pieces = pieces;
    pmcf->piece_ptrs = ptrs;
    pmcf->npieces = n;
    pmcf->snap = snap;
    pmcf->generation = generation;
    pmcf->copied_bytes = size + copied;
    pmcf->copied_pieces = fresh;
    pmcf->kept_pieces = kept;

    for (i = 0; i < n; i++) {
        pieces[i].kept = 0;
    }

    ngx_free(held);
    ngx_free(used);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "portal gate: copied snapshot generation %uA, %uz bytes, "
                   "%ui pieces new, %ui kept", generation, size + copied,
                   fresh, kept);

    return &pmcf->snap;

bad:

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "portal_gate zone \"%V\" holds a bad snapshot: %s",
                  &pmcf->shm_zone->shm.name, err.text);

    /* not again at every request: the next generation is tried */
    pmcf->generation = generation;

failed:

    /* what it shares with the worker's set stays */
    ngx_http_portal_gate_set_free(index, pieces, ptrs, n);

nomem:

    if (held) {
        ngx_free(held);
    }

    if (used) {
        ngx_free(used);
    }

    return &pmcf->snap;
}


/* At a worker's exit: its copy goes. */

void
ngx_http_portal_gate_worker_snapshot_free(
    ngx_http_portal_gate_main_conf_t *pmcf)
{
    ngx_http_portal_gate_set_free(pmcf->snap_index, pmcf->pieces,
                                  pmcf->piece_ptrs, pmcf->npieces);

    pmcf->snap_index = NULL;
    pmcf->pieces = NULL;
    pmcf->piece_ptrs = NULL;
    pmcf->npieces = 0;
    pmcf->snap.base = NULL;
    pmcf->snap.size = 0;
    pmcf->snap.pieces = NULL;
}


/*
 * Free a worker's set of pieces: each piece not marked kept (a kept one
 * is shared with the set that replaces it), the array of pieces, that of
 * their pointers and the index. Any of them may be NULL.
 */

static void
ngx_http_portal_gate_set_free(u_char *index,
    ngx_http_portal_gate_piece_t *pieces, const unsigned char **ptrs,
    ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; pieces != NULL && i < n; i++) {
        if (!pieces[i].kept && pieces[i].data != NULL) {
            ngx_free(pieces[i].data);
        }
    }

    if (pieces) {
        ngx_free(pieces);
    }

    if (ptrs) {
        ngx_free((void *) ptrs);
    }

    if (index) {
        ngx_free(index);
    }
}
