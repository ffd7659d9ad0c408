
/*
 * Observability at the edge: portal_gate_metrics (a Prometheus text
 * exposition of the whole nginx instance) and portal_gate_health (JSON for
 * the load balancer).
 *
 * The counters live in a shared zone of their own, "<zone>_metrics", made
 * when either directive is used: its size does not follow the snapshot
 * zone's (a resize for a 507 keeps the counters), and counting never takes
 * the snapshot zone's mutex. The zone holds
 *
 *   - a table of (environment, flag) pairs, open-addressed by a hash of
 *     the names, the names stored: a pair keeps its position for the
 *     zone's life, so counters never move between flags when the snapshot
 *     adds or removes one. Only names the snapshot has get a pair of their
 *     own: a flag the environment does not have is counted as
 *     flag="(unknown)", an environment the snapshot does not have as
 *     env="(other)" (it may come from a variable), and past
 *     NGX_HTTP_PORTAL_GATE_METRICS_PAIRS pairs everything new is counted
 *     under env="(other)", flag="(other)". No company id is ever a label;
 *   - one table of counters per worker slot, each starting on its own
 *     cache lines: a worker increments only its own slot's. After a reload
 *     old and new workers share a slot (ngx_worker starts at 0 again) for
 *     a while, so every increment is atomic; a scrape sums the slots.
 *
 * The zone's name, tag and size are the same across a reload (the size
 * depends only on worker_processes), so nginx hands the same memory over
 * and the counters keep counting.
 *
 * A client request counts a decision once, whether portal_gate or
 * $portal_flag_NAME made it, however often nginx reads the variable
 * (ngx_http_portal_gate_metrics_count()); only its own gate's decision
 * counts its answer, in the log phase.
 */


#include "ngx_http_portal_gate_module.h"


#define NGX_HTTP_PORTAL_GATE_METRICS_MAGIC    0x50474d54   /* "PGMT" */
#define NGX_HTTP_PORTAL_GATE_METRICS_LAYOUT   3

/* the most (environment, flag) pairs with series of their own */
#define NGX_HTTP_PORTAL_GATE_METRICS_PAIRS    1024

/* the hash table: twice the pairs, so probes stay short */
#define NGX_HTTP_PORTAL_GATE_METRICS_BUCKETS                                  \
    (2 * NGX_HTTP_PORTAL_GATE_METRICS_PAIRS)

/* the pair that takes what no pair is left for: after the buckets */
#define NGX_HTTP_PORTAL_GATE_METRICS_OVERFLOW                                 \
    NGX_HTTP_PORTAL_GATE_METRICS_BUCKETS

/* no such pair yet */
#define NGX_HTTP_PORTAL_GATE_METRICS_NONE     ((ngx_uint_t) -1)

#define NGX_HTTP_PORTAL_GATE_METRICS_REASONS  PG_REASON_COUNT
#define NGX_HTTP_PORTAL_GATE_METRICS_CLASSES  5     /* 1xx .. 5xx */

/* a pair's counters: decisions [on][reason], then responses [on][class] */
#define NGX_HTTP_PORTAL_GATE_METRICS_RESPONSES                                \
    (2 * NGX_HTTP_PORTAL_GATE_METRICS_REASONS)
#define NGX_HTTP_PORTAL_GATE_METRICS_COUNTERS                                 \
    (NGX_HTTP_PORTAL_GATE_METRICS_RESPONSES                                   \
     + 2 * NGX_HTTP_PORTAL_GATE_METRICS_CLASSES)

/* one worker slot's counters, rounded up so that slots share no line */
#define NGX_HTTP_PORTAL_GATE_METRICS_SLOT_SIZE                                \
    ngx_align((NGX_HTTP_PORTAL_GATE_METRICS_BUCKETS + 1)                      \
              * NGX_HTTP_PORTAL_GATE_METRICS_COUNTERS * sizeof(ngx_atomic_t), \
              2 * NGX_CPU_CACHE_LINE)

/* a sample line's longest text, names aside */
#define NGX_HTTP_PORTAL_GATE_METRICS_LINE     (96 + NGX_INT64_LEN)

/* the gauges' numbers, each at most NGX_INT64_LEN long */
#define NGX_HTTP_PORTAL_GATE_METRICS_GAUGES   7


typedef struct {
    ngx_atomic_t                 used;          /* set last: names written */
    ngx_uint_t                   hash;
    u_char                       env_len;
    u_char                       flag_len;
    u_char                       env[PG_NAME_MAX];
    u_char                       flag[PG_NAME_MAX];
} ngx_http_portal_gate_metrics_pair_t;


typedef struct {
    ngx_http_portal_gate_zone_header_t  header;
    ngx_uint_t                   npairs;        /* under the mutex */
    ngx_uint_t                   full;          /* a pair was refused */
    /* in ms since the epoch: stale=1s counted in whole seconds turned
     * stale as soon as the second did, 1 ms after a confirmation */
    uint64_t                     started_ms;    /* the zone's creation */
    uint64_t                     confirmed_ms;  /* 0: never */
    ngx_atomic_t                *counters;      /* [nslots] slots */
    ngx_http_portal_gate_metrics_pair_t
                      pairs[NGX_HTTP_PORTAL_GATE_METRICS_BUCKETS + 1];
} ngx_http_portal_gate_metrics_sh_t;


typedef struct {
    ngx_http_portal_gate_metrics_sh_t  *sh;
    ngx_slab_pool_t                    *shpool;
    ngx_uint_t                          nslots;
} ngx_http_portal_gate_metrics_ctx_t;


/*
 * A decision a client request has counted: a pool cleanup's data, since an
 * internal redirect (off=@named, index, try_files, rewrite ... last) clears
 * the module's context, and a subrequest shares the main request's pool.
 * The names point into the configuration or the request's pool, which
 * outlive the record: a flag named by a variable read by name is copied
 * there.
 */
typedef struct {
    ngx_http_request_t          *main;          /* r->main */
    ngx_str_t                    env;           /* as evaluated */
    ngx_str_t                    flag;
    ngx_uint_t                   on;
    pg_reason_t                  reason;
    ngx_uint_t                   pair;          /* its counters */
    ngx_uint_t                   answer;        /* a gate of the client
                                                   request itself decided
                                                   it: count the answer */
} ngx_http_portal_gate_metrics_counted_t;


static ngx_uint_t ngx_http_portal_gate_metrics_cached(ngx_http_request_t *r,
    ngx_http_portal_gate_metrics_ctx_t *ctx, ngx_http_portal_gate_gate_t *gate,
    ngx_str_t *env, ngx_str_t *flag, pg_reason_t reason);
static ngx_uint_t ngx_http_portal_gate_metrics_pair(ngx_http_request_t *r,
    ngx_http_portal_gate_metrics_ctx_t *ctx, ngx_str_t *env,
    ngx_str_t *flag, pg_reason_t reason);
static ngx_atomic_t *ngx_http_portal_gate_metrics_counters(
    ngx_http_portal_gate_metrics_ctx_t *ctx, ngx_uint_t slot, ngx_uint_t pair);
static ngx_uint_t ngx_http_portal_gate_metrics_find(
    ngx_http_portal_gate_metrics_ctx_t *ctx, ngx_str_t *env,
    ngx_str_t *flag);
static ngx_http_portal_gate_metrics_counted_t *
    ngx_http_portal_gate_metrics_counted(ngx_http_request_t *r,
    ngx_str_t *flag, ngx_http_portal_gate_decision_t *d, ngx_uint_t *newest);
static void ngx_http_portal_gate_metrics_counted_cleanup(void *data);
static ngx_int_t ngx_http_portal_gate_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_health_handler(ngx_http_request_t *r);
static char *ngx_http_portal_gate_observe(ngx_conf_t *cf,
    ngx_http_portal_gate_loc_conf_t *plcf, ngx_http_handler_pt handler);
static ngx_int_t ngx_http_portal_gate_metrics_log_handler(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_portal_gate_metrics_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static u_char *ngx_http_portal_gate_metrics_sample(u_char *p,
    ngx_http_portal_gate_metrics_pair_t *pair, ngx_uint_t j, uint64_t count);
static uint64_t ngx_http_portal_gate_metrics_now_ms(void);
static int ngx_libc_cdecl ngx_http_portal_gate_metrics_cmp(const void *one,
    const void *two);


static ngx_str_t  ngx_http_portal_gate_metrics_unknown =
    ngx_string("(unknown)");
static ngx_str_t  ngx_http_portal_gate_metrics_other =
    ngx_string("(other)");

/* the counters' families: a pair's decisions, then its responses */
static ngx_str_t  ngx_http_portal_gate_metrics_help[] = {
    ngx_string("# HELP portal_gate_decisions_total Decisions of portal_gate "
               "and $portal_flag_*, by environment, flag, decision and "
               "reason.\n"
               "# TYPE portal_gate_decisions_total counter\n"),
    ngx_string("# HELP portal_gate_responses_total Answers to requests a "
               "portal_gate decided, by status class.\n"
               "# TYPE portal_gate_responses_total counter\n")
};

static char  ngx_http_portal_gate_metrics_gauges[] =
    "# HELP portal_gate_snapshot_revision The revision of the snapshot "
    "in force; 0: none.\n"
    "# TYPE portal_gate_snapshot_revision gauge\n"
    "portal_gate_snapshot_revision %L\n"
    "# HELP portal_gate_snapshot_applied_timestamp_seconds When that "
    "snapshot was applied; 0: never.\n"
    "# TYPE portal_gate_snapshot_applied_timestamp_seconds gauge\n"
    "portal_gate_snapshot_applied_timestamp_seconds %T\n"
    "# HELP portal_gate_last_sync_timestamp_seconds When the controller "
    "last confirmed this edge in step; 0: not since start.\n"
    "# TYPE portal_gate_last_sync_timestamp_seconds gauge\n"
    "portal_gate_last_sync_timestamp_seconds %T\n"
    "# HELP portal_gate_zone_used_bytes Bytes used in the snapshot zone.\n"
    "# TYPE portal_gate_zone_used_bytes gauge\n"
    "portal_gate_zone_used_bytes %uz\n"
    "# HELP portal_gate_zone_size_bytes The snapshot zone's size.\n"
    "# TYPE portal_gate_zone_size_bytes gauge\n"
    "portal_gate_zone_size_bytes %uz\n"
    "# HELP portal_gate_state_file_ok 1 unless the last write of the "
    "state file failed.\n"
    "# TYPE portal_gate_state_file_ok gauge\n"
    "portal_gate_state_file_ok %ui\n"
    "# HELP portal_gate_metrics_pairs_full 1 once an (environment, "
    "flag) pair found no room: it counts under (other).\n"
    "# TYPE portal_gate_metrics_pairs_full gauge\n"
    "portal_gate_metrics_pairs_full %ui\n";

/* the metrics zone's tag: not the module's, which marks the snapshot
 * zones (ngx_http_portal_gate_retire() walks those) */
static ngx_uint_t  ngx_http_portal_gate_metrics_tag;



/*
 * The counters of a decision; called by the gate and by $portal_flag_*.
 *
 * A client request counts a decision (an environment, a flag, an answer
 * and its reason) once, whoever made it and however often: the rewrite
 * module's set reads a variable that is not cacheable once to size the
 * value and again to copy it, if, return, a map and add_header read it
 * each on their own, an internal redirect back into a gated location
 * (index, try_files) runs the gate again, and a subrequest (auth_request,
 * an SSI include) decides again. The variable itself stays uncached:
 * `set $company` or a redirect into another environment between two reads
 * changes the answer, and that is another decision, counted as such.
 *
 * gate: the portal_gate that decided, NULL for the variable.
 */

void
ngx_http_portal_gate_metrics_count(ngx_http_request_t *r, ngx_str_t *flag,
    ngx_http_portal_gate_decision_t *d, ngx_http_portal_gate_gate_t *gate)
{
    ngx_uint_t                               pair, on, newest, answer;
    ngx_atomic_t                            *c;
    ngx_pool_cleanup_t                      *cln;
    ngx_http_portal_gate_main_conf_t        *pmcf;
    ngx_http_portal_gate_metrics_ctx_t      *ctx;
    ngx_http_portal_gate_metrics_counted_t  *g;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

    if (pmcf->metrics == 0) {
        return;
    }

    /* a gate of the client request itself answers for it (the log phase
     * takes the newest such record): the newest record is marked, an older
     * one gets a newer record, counting nothing */

    answer = (gate && r == r->main);

    g = ngx_http_portal_gate_metrics_counted(r, flag, d, &newest);

    if (g && (!answer || newest)) {
        g->answer |= answer;
        return;
    }

    on = d->result.on ? 1 : 0;

    if (g) {
        pair = g->pair;

    } else {
        ctx = pmcf->metrics_zone->data;

        pair = ngx_http_portal_gate_metrics_cached(r, ctx, gate, &d->env,
                                                   flag, d->result.reason);

        c = ngx_http_portal_gate_metrics_counters(ctx, ngx_worker, pair)
            + on * NGX_HTTP_PORTAL_GATE_METRICS_REASONS + d->result.reason;

        (void) ngx_atomic_fetch_add(c, 1);
    }

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_portal_gate_metrics_counted_t));
    if (cln == NULL) {
        return;
    }

    g = cln->data;
    g->main = r->main;
    g->env = d->env;
    g->flag = *flag;

    if (gate == NULL) {
        /* a variable read by name (Lua's ngx.var, njs) names it in the
         * caller's buffer, which the next read overwrites */

        g->flag.data = ngx_pnalloc(r->pool, flag->len);
        if (g->flag.data == NULL) {
            return;     /* no handler: an inert cleanup */
        }

        ngx_memcpy(g->flag.data, flag->data, flag->len);
    }

    g->on = on;
    g->reason = d->result.reason;
    g->pair = pair;
    g->answer = answer;

    cln->handler = ngx_http_portal_gate_metrics_counted_cleanup;
}


/*
 * The pair of a decision, from the gate's cache when it has this
 * environment's. A flag the snapshot does not have is folded by what the
 * snapshot holds now: looked up each time.
 */

static ngx_uint_t
ngx_http_portal_gate_metrics_cached(ngx_http_request_t *r,
    ngx_http_portal_gate_metrics_ctx_t *ctx, ngx_http_portal_gate_gate_t *gate,
    ngx_str_t *env, ngx_str_t *flag, pg_reason_t reason)
{
    ngx_uint_t                             pair;
    ngx_http_portal_gate_metrics_cache_t  *cache;

    if (gate == NULL || reason == PG_REASON_UNKNOWN
        || env->len > PG_NAME_MAX)
    {
        return ngx_http_portal_gate_metrics_pair(r, ctx, env, flag, reason);
    }

    cache = &gate->metrics;

    if (cache->set && cache->env_len == env->len
        && ngx_memcmp(cache->env, env->data, env->len) == 0)
    {
        return cache->pair;
    }

    pair = ngx_http_portal_gate_metrics_pair(r, ctx, env, flag, reason);

    cache->set = 1;
    cache->pair = pair;
    cache->env_len = env->len;
    ngx_memcpy(cache->env, env->data, env->len);

    return pair;
}


/* the client request's record of this decision, or NULL; *newest: it is
 * the request's newest record */

static ngx_http_portal_gate_metrics_counted_t *
ngx_http_portal_gate_metrics_counted(ngx_http_request_t *r, ngx_str_t *flag,
    ngx_http_portal_gate_decision_t *d, ngx_uint_t *newest)
{
    ngx_uint_t                               on;
    ngx_pool_cleanup_t                      *cln;
    ngx_http_portal_gate_metrics_counted_t  *g;

    on = d->result.on ? 1 : 0;
    *newest = 1;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != ngx_http_portal_gate_metrics_counted_cleanup) {
            continue;
        }

        g = cln->data;

        /* an environment that failed to evaluate is empty, data NULL */

        if (g->main == r->main
            && g->on == on
            && g->reason == d->result.reason
            && g->flag.len == flag->len
            && g->env.len == d->env.len
            && ngx_memcmp(g->flag.data, flag->data, flag->len) == 0
            && (d->env.len == 0
                || ngx_memcmp(g->env.data, d->env.data, d->env.len) == 0))
        {
            return g;
        }

        *newest = 0;
    }

    return NULL;
}


static void
ngx_http_portal_gate_metrics_counted_cleanup(void *data)
{
    /* nothing to free: the cleanup only carries the decision counted, as
     * the realip module's carries its context */
}


/*
 * A pair's counters in a worker slot. ngx_worker may be past the slots when
 * worker_processes follows the http block: such workers share a slot,
 * which is why every increment is atomic.
 */

static ngx_atomic_t *
ngx_http_portal_gate_metrics_counters(ngx_http_portal_gate_metrics_ctx_t *ctx,
    ngx_uint_t slot, ngx_uint_t pair)
{
    return (ngx_atomic_t *) ((u_char *) ctx->sh->counters
                             + (slot % ctx->nslots)
                               * NGX_HTTP_PORTAL_GATE_METRICS_SLOT_SIZE)
           + pair * NGX_HTTP_PORTAL_GATE_METRICS_COUNTERS;
}


/*
 * The position of the pair that counts a decision: names the snapshot does
 * not have are folded into "(unknown)" and "(other)", so that neither a
 * $portal_flag_<anything> nor an environment from a variable can make
 * series without bound.
 */

static ngx_uint_t
ngx_http_portal_gate_metrics_pair(ngx_http_request_t *r,
    ngx_http_portal_gate_metrics_ctx_t *ctx, ngx_str_t *env,
    ngx_str_t *flag, pg_reason_t reason)
{
    size_t                                n, len;
    ngx_str_t                             e, f;
    pg_snap_t                            *snap;
    ngx_uint_t                            i, h, pos;
    const char                           *name;
    ngx_http_portal_gate_metrics_sh_t    *sh;
    ngx_http_portal_gate_metrics_pair_t  *p;

    e = *env;
    f = *flag;

    if (reason == PG_REASON_UNKNOWN) {
        f = ngx_http_portal_gate_metrics_unknown;
        e = ngx_http_portal_gate_metrics_other;

        snap = ngx_http_portal_gate_snapshot(r);
        n = pg_snap_env_count(snap);

        for (i = 0; i < n; i++) {
            name = pg_snap_env_name(snap, i, &len);

            if (len == env->len
                && ngx_strncmp(name, env->data, len) == 0)
            {
                e = *env;
                break;
            }
        }
    }

    pos = ngx_http_portal_gate_metrics_find(ctx, &e, &f);

    if (pos != NGX_HTTP_PORTAL_GATE_METRICS_NONE) {
        return pos;
    }

    /* a new pair: the names are written, then published */

    sh = ctx->sh;

    if (sh->full) {
        return NGX_HTTP_PORTAL_GATE_METRICS_OVERFLOW;   /* no lock taken */
    }

    h = ngx_hash_key(e.data, e.len) * 31 + ngx_hash_key(f.data, f.len);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    pos = ngx_http_portal_gate_metrics_find(ctx, &e, &f);

    if (pos == NGX_HTTP_PORTAL_GATE_METRICS_NONE) {
        pos = NGX_HTTP_PORTAL_GATE_METRICS_OVERFLOW;

        if (sh->npairs < NGX_HTTP_PORTAL_GATE_METRICS_PAIRS) {

            for (i = h % NGX_HTTP_PORTAL_GATE_METRICS_BUCKETS;
                 sh->pairs[i].used;
                 i = (i + 1) % NGX_HTTP_PORTAL_GATE_METRICS_BUCKETS)
            {
                /* void */
            }

            p = &sh->pairs[i];

            p->hash = h;
            p->env_len = (u_char) e.len;
            p->flag_len = (u_char) f.len;
            ngx_memcpy(p->env, e.data, e.len);
            ngx_memcpy(p->flag, f.data, f.len);

            ngx_memory_barrier();

            p->used = 1;
            sh->npairs++;
            pos = i;

        } else if (!sh->full) {
            sh->full = 1;

            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "portal_gate metrics: more than %d (environment, "
                          "flag) pairs, \"%V\" \"%V\" and any later one "
                          "are counted as \"(other)\"",
                          NGX_HTTP_PORTAL_GATE_METRICS_PAIRS, &e, &f);
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return pos;
}


/* without the lock: a pair's names are written before it is published */

static ngx_uint_t
ngx_http_portal_gate_metrics_find(ngx_http_portal_gate_metrics_ctx_t *ctx,
    ngx_str_t *env, ngx_str_t *flag)
{
    ngx_uint_t                            i, h, n;
    ngx_http_portal_gate_metrics_pair_t  *p;

    if (env->len == 0 || env->len > PG_NAME_MAX
        || flag->len == 0 || flag->len > PG_NAME_MAX)
    {
        return NGX_HTTP_PORTAL_GATE_METRICS_OVERFLOW;
    }

    h = ngx_hash_key(env->data, env->len) * 31
        + ngx_hash_key(flag->data, flag->len);

    i = h % NGX_HTTP_PORTAL_GATE_METRICS_BUCKETS;

    for (n = 0; n < NGX_HTTP_PORTAL_GATE_METRICS_BUCKETS; n++) {
        p = &ctx->sh->pairs[i];

        if (!p->used) {
            return NGX_HTTP_PORTAL_GATE_METRICS_NONE;
        }

        /* used seen set: the names are read after it (weak-memory CPUs) */
        ngx_memory_barrier();

        if (p->hash == h
            && p->env_len == env->len && p->flag_len == flag->len
            && ngx_memcmp(p->env, env->data, env->len) == 0
            && ngx_memcmp(p->flag, flag->data, flag->len) == 0)
        {
            return i;
        }

        i = (i + 1) % NGX_HTTP_PORTAL_GATE_METRICS_BUCKETS;
    }

    return NGX_HTTP_PORTAL_GATE_METRICS_NONE;
}


/*
 * The log phase: the answer's class for a client request a portal_gate
 * decided; a subrequest's answer is part of its main request's.
 */

static ngx_int_t
ngx_http_portal_gate_metrics_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                               status, class;
    ngx_atomic_t                            *c;
    ngx_pool_cleanup_t                      *cln;
    ngx_http_portal_gate_main_conf_t        *pmcf;
    ngx_http_portal_gate_metrics_ctx_t      *ctx;
    ngx_http_portal_gate_metrics_counted_t  *g;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

    if (pmcf->metrics == 0 || r != r->main) {
        return NGX_OK;
    }

    /* the latest gate of this request itself, as realip finds its context */

    g = NULL;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_portal_gate_metrics_counted_cleanup) {
            g = cln->data;

            if (g->main == r && g->answer) {
                break;
            }

            g = NULL;
        }
    }

    if (g == NULL) {
        return NGX_OK;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;
    class = status / 100;

    if (class < 1 || class > NGX_HTTP_PORTAL_GATE_METRICS_CLASSES) {
        return NGX_OK;
    }

    ctx = pmcf->metrics_zone->data;

    c = ngx_http_portal_gate_metrics_counters(ctx, ngx_worker, g->pair)
        + NGX_HTTP_PORTAL_GATE_METRICS_RESPONSES
        + g->on * NGX_HTTP_PORTAL_GATE_METRICS_CLASSES + class - 1;

    (void) ngx_atomic_fetch_add(c, 1);

    return NGX_OK;
}


/* The cached wall clock in ms: nginx's ngx_time() in whole seconds would
 * make a confirmation 1 ms before the second turns a second old. */

static uint64_t
ngx_http_portal_gate_metrics_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/*
 * The controller has confirmed the edge in step: called by the API's
 * handlers with the outcome (a push applied, a PUT of the very revision
 * the edge holds, GET status?in_step= of the edge's revision), never from
 * a URI seen in the log phase.
 */

void
ngx_http_portal_gate_metrics_confirm(ngx_http_request_t *r)
{
    ngx_http_portal_gate_main_conf_t    *pmcf;
    ngx_http_portal_gate_metrics_ctx_t  *ctx;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

    if (pmcf->metrics_zone == NULL) {
        return;
    }

    ctx = pmcf->metrics_zone->data;
    ctx->sh->confirmed_ms = ngx_http_portal_gate_metrics_now_ms();
}


/*
 * portal_gate_metrics: the Prometheus text format, version 0.0.4, in one
 * buffer sized from what the zone holds: the pairs in use, and of those
 * the series that have counted something.
 */

static ngx_int_t
ngx_http_portal_gate_metrics_handler(ngx_http_request_t *r)
{
    size_t                                 size, used, total;
    time_t                                 applied_at;
    int64_t                                revision;
    uint64_t                              *sums, *s;
    ngx_int_t                              rc;
    ngx_buf_t                             *b;
    ngx_uint_t                             i, j, k, f, n, state_ok;
    ngx_atomic_t                          *c;
    ngx_http_portal_gate_shctx_t          *zsh;
    ngx_http_portal_gate_zone_ctx_t       *zctx;
    ngx_http_portal_gate_main_conf_t      *pmcf;
    ngx_http_portal_gate_metrics_sh_t     *sh;
    ngx_http_portal_gate_metrics_ctx_t    *ctx;
    ngx_http_portal_gate_metrics_pair_t   *p, **order;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);

    ctx = pmcf->metrics_zone->data;
    sh = ctx->sh;

    zctx = pmcf->shm_zone->data;
    zsh = zctx->sh;

    /* the snapshot zone's gauges, read together */

    ngx_shmtx_lock(&zctx->shpool->mutex);

    revision = zsh->revision;
    applied_at = zsh->applied_at;
    state_ok = !zsh->state_failed;
    total = pmcf->shm_zone->shm.size;
    used = total - zctx->shpool->pfree * ngx_pagesize;

    ngx_shmtx_unlock(&zctx->shpool->mutex);

    /* the pairs in use in order of names, the overflow pair last: a pair
     * is never freed, and no more than _PAIRS are ever published */

    order = ngx_palloc(r->pool,
                       (NGX_HTTP_PORTAL_GATE_METRICS_PAIRS + 1)
                       * sizeof(ngx_http_portal_gate_metrics_pair_t *));
    if (order == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;

    for (i = 0;
         i < NGX_HTTP_PORTAL_GATE_METRICS_BUCKETS
         && n < NGX_HTTP_PORTAL_GATE_METRICS_PAIRS;
         i++)
    {
        if (sh->pairs[i].used) {
            order[n++] = &sh->pairs[i];
        }
    }

    /* the names were written before used was set (weak-memory CPUs) */
    ngx_memory_barrier();

    ngx_qsort(order, n, sizeof(ngx_http_portal_gate_metrics_pair_t *),
              ngx_http_portal_gate_metrics_cmp);

    order[n++] = &sh->pairs[NGX_HTTP_PORTAL_GATE_METRICS_OVERFLOW];

    /* every slot summed once, so that both families are of one moment,
     * and the size of each line that will be written */

    sums = ngx_palloc(r->pool, n * NGX_HTTP_PORTAL_GATE_METRICS_COUNTERS
                               * sizeof(uint64_t));
    if (sums == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    size = ngx_http_portal_gate_metrics_help[0].len
           + ngx_http_portal_gate_metrics_help[1].len
           + sizeof(ngx_http_portal_gate_metrics_gauges) - 1
           + NGX_HTTP_PORTAL_GATE_METRICS_GAUGES * NGX_INT64_LEN;

    for (k = 0; k < n; k++) {
        p = order[k];
        s = &sums[k * NGX_HTTP_PORTAL_GATE_METRICS_COUNTERS];

        ngx_memzero(s, NGX_HTTP_PORTAL_GATE_METRICS_COUNTERS
                       * sizeof(uint64_t));

        for (i = 0; i < ctx->nslots; i++) {
            c = ngx_http_portal_gate_metrics_counters(ctx, i, p - sh->pairs);

            for (j = 0; j < NGX_HTTP_PORTAL_GATE_METRICS_COUNTERS; j++) {
                s[j] += c[j];
            }
        }

        for (j = 0; j < NGX_HTTP_PORTAL_GATE_METRICS_COUNTERS; j++) {
            if (s[j]) {
                size += NGX_HTTP_PORTAL_GATE_METRICS_LINE
                        + p->env_len + p->flag_len;
            }
        }
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* each family whole: the decisions, then the responses */

    for (f = 0; f < 2; f++) {
        b->last = ngx_cpymem(b->last, ngx_http_portal_gate_metrics_help[f].data,
                             ngx_http_portal_gate_metrics_help[f].len);

        for (k = 0; k < n; k++) {
            s = &sums[k * NGX_HTTP_PORTAL_GATE_METRICS_COUNTERS];

            for (j = f ? NGX_HTTP_PORTAL_GATE_METRICS_RESPONSES : 0;
                 j < (f ? NGX_HTTP_PORTAL_GATE_METRICS_COUNTERS
                        : NGX_HTTP_PORTAL_GATE_METRICS_RESPONSES);
                 j++)
            {
                if (s[j]) {
                    b->last = ngx_http_portal_gate_metrics_sample(b->last,
                                                         order[k], j, s[j]);
                }
            }
        }
    }

    b->last = ngx_sprintf(b->last, ngx_http_portal_gate_metrics_gauges,
                          revision, applied_at,
                          (time_t) (sh->confirmed_ms / 1000), used, total,
                          state_ok, sh->full);

    return ngx_http_portal_gate_send(r, NGX_HTTP_OK,
                                "text/plain; version=0.0.4; charset=utf-8", b);
}


/*
 * One sample of a pair's counter j: a decision (on or off, a reason) or
 * a response (on or off, a class). At most NGX_HTTP_PORTAL_GATE_METRICS_LINE
 * bytes besides the names.
 */

static u_char *
ngx_http_portal_gate_metrics_sample(u_char *p,
    ngx_http_portal_gate_metrics_pair_t *pair, ngx_uint_t j, uint64_t count)
{
    ngx_uint_t   on;
    const char  *family, *label, *value;

    static const char  *classes[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };

    if (j < NGX_HTTP_PORTAL_GATE_METRICS_RESPONSES) {
        family = "decisions";
        label = "reason";
        on = j / NGX_HTTP_PORTAL_GATE_METRICS_REASONS;
        value = pg_reason_name((pg_reason_t)
                               (j % NGX_HTTP_PORTAL_GATE_METRICS_REASONS));

    } else {
        j -= NGX_HTTP_PORTAL_GATE_METRICS_RESPONSES;

        family = "responses";
        label = "class";
        on = j / NGX_HTTP_PORTAL_GATE_METRICS_CLASSES;
        value = classes[j % NGX_HTTP_PORTAL_GATE_METRICS_CLASSES];
    }

    return ngx_sprintf(p, "portal_gate_%s_total{env=\"%*s\",flag=\"%*s\","
                          "decision=\"%s\",%s=\"%s\"} %uL\n",
                       family, (size_t) pair->env_len, pair->env,
                       (size_t) pair->flag_len, pair->flag,
                       on ? "on" : "off", label, value, count);
}


/* the pairs by environment, then flag */

static int ngx_libc_cdecl
ngx_http_portal_gate_metrics_cmp(const void *one, const void *two)
{
    ngx_int_t                             rc;
    ngx_http_portal_gate_metrics_pair_t  *a, *b;

    a = *(ngx_http_portal_gate_metrics_pair_t **) one;
    b = *(ngx_http_portal_gate_metrics_pair_t **) two;

    rc = ngx_memn2cmp(a->env, b->env, a->env_len, b->env_len);

    if (rc == 0) {
        rc = ngx_memn2cmp(a->flag, b->flag, a->flag_len, b->flag_len);
    }

    return (int) rc;
}


/* portal_gate_health: JSON for a load balancer's check */

static ngx_int_t
ngx_http_portal_gate_health_handler(ngx_http_request_t *r)
{
    char                                *status;
    int64_t                              revision;
    uint64_t                             since, now, ago;
    ngx_int_t                            rc;
    ngx_buf_t                           *b;
    ngx_uint_t                           code;
    ngx_http_portal_gate_zone_ctx_t     *zctx;
    ngx_http_portal_gate_loc_conf_t     *plcf;
    ngx_http_portal_gate_main_conf_t    *pmcf;
    ngx_http_portal_gate_metrics_sh_t   *sh;
    ngx_http_portal_gate_metrics_ctx_t  *ctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portal_gate_module);
    plcf = ngx_http_get_module_loc_conf(r, ngx_http_portal_gate_module);

    ctx = pmcf->metrics_zone->data;
    sh = ctx->sh;
    zctx = pmcf->shm_zone->data;

    revision = zctx->sh->revision;

    /* never confirmed since the zone was made: counted from then, so that
     * a restart has stale= to hear from the controller */

    since = sh->confirmed_ms ? sh->confirmed_ms : sh->started_ms;
    now = ngx_http_portal_gate_metrics_now_ms();
    ago = now > since ? now - since : 0;

    if (revision == 0) {
        status = "empty";
        code = NGX_HTTP_SERVICE_UNAVAILABLE;

    } else if (plcf->health_stale
               && ago > (uint64_t) plcf->health_stale * 1000)
    {
        /* more than: both times are cut to the ms, so "ago" may say 1000
         * up to 1 ms before a whole second has passed */
        status = "stale";
        code = NGX_HTTP_SERVICE_UNAVAILABLE;

    } else {
        status = "ok";
        code = NGX_HTTP_OK;
    }

    b = ngx_create_temp_buf(r->pool, 128 + 2 * NGX_INT64_LEN);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last,
                          "{\"status\": \"%s\", \"revision\": %L, "
                          "\"synced_seconds_ago\": %uL}\n",
                          status, revision, ago / 1000);

    return ngx_http_portal_gate_send(r, code, "application/json", b);
}


/* portal_gate_metrics; (location) */

char *
ngx_http_portal_gate_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_portal_gate_main_conf_t  *pmcf;

    /* with a scrape to read them, every decision is counted */
    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_portal_gate_module);
    pmcf->metrics++;

    return ngx_http_portal_gate_observe(cf, conf,
                                        ngx_http_portal_gate_metrics_handler);
}


/* portal_gate_health [stale=TIME]; (location) */

char *
ngx_http_portal_gate_health(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_portal_gate_loc_conf_t *plcf = conf;

    char                              *rv;
    time_t                             stale;
    ngx_str_t                         *value, s;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    rv = ngx_http_portal_gate_observe(cf, plcf,
                                      ngx_http_portal_gate_health_handler);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_portal_gate_module);
    pmcf->health++;

    value = cf->args->elts;

    if (cf->args->nelts == 1) {
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[1].data, "stale=", 6) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    s.data = value[1].data + 6;
    s.len = value[1].len - 6;

    stale = ngx_parse_time(&s, 1);

    if (stale == (time_t) NGX_ERROR || stale == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid stale value \"%V\"", &s);
        return NGX_CONF_ERROR;
    }

    /* counted in ms: larger would wrap (ngx_parse_time() takes 2^63 s) */
    if ((uint64_t) stale > NGX_MAX_INT_T_VALUE / 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "stale value \"%V\" is too large", &s);
        return NGX_CONF_ERROR;
    }

    plcf->health_stale = stale;

    return NGX_CONF_OK;
}


/*
 * What portal_gate_metrics and portal_gate_health share: the location's
 * content handler, alone there (no other handler, no portal_gate_api), and
 * never gated (a portal_gate inherited is not run in it).
 */

static char *
ngx_http_portal_gate_observe(ngx_conf_t *cf,
    ngx_http_portal_gate_loc_conf_t *plcf, ngx_http_handler_pt handler)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate";
    }

    if (plcf->api == 1) {
        return "cannot be used in a portal_gate_api location";
    }

    clcf->handler = handler;
    plcf->observe = 1;

    return NGX_CONF_OK;
}


/*
 * From the http block's init_main_conf: the metrics zone, when either
 * directive is used. Its size follows worker_processes only (one counter
 * slot per worker), so a reload that keeps it reuses the zone.
 */

char *
ngx_http_portal_gate_metrics_init_conf(ngx_conf_t *cf,
    ngx_http_portal_gate_main_conf_t *pmcf)
{
    size_t                               size;
    ngx_str_t                            name;
    ngx_uint_t                           nslots;
    ngx_core_conf_t                     *ccf;
    ngx_shm_zone_t                      *shm_zone;
    ngx_http_portal_gate_metrics_ctx_t  *ctx;

    if (pmcf->metrics == 0 && pmcf->health == 0) {
        return NGX_CONF_OK;
    }

    if (pmcf->shm_zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" is used, but no \"portal_gate_zone\" is "
                           "defined in the http block",
                           pmcf->metrics ? "portal_gate_metrics"
                                         : "portal_gate_health");
        return NGX_CONF_ERROR;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                           ngx_core_module);

    /* not set yet when worker_processes follows the http block: one slot
     * per CPU, as "auto" would give (init_module warns when short) */
    nslots = (ccf->worker_processes > 0) ? (ngx_uint_t) ccf->worker_processes
                                          : (ngx_uint_t) ngx_ncpu;
    nslots = ngx_max(nslots, 1);

    size = ngx_align(sizeof(ngx_http_portal_gate_metrics_sh_t), ngx_pagesize)
           + nslots * ngx_align(NGX_HTTP_PORTAL_GATE_METRICS_SLOT_SIZE,
                                ngx_pagesize);

    /* the slab allocator's own pages and headers */
    size += size / 32 + 16 * ngx_pagesize;

    name.len = pmcf->shm_zone->shm.name.len + sizeof("_metrics") - 1;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(name.data, "%V_metrics", &pmcf->shm_zone->shm.name);

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_portal_gate_metrics_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    ctx->nslots = nslots;

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_portal_gate_metrics_tag);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_portal_gate_metrics_init_zone;
    shm_zone->data = ctx;

    pmcf->metrics_zone = shm_zone;

    return NGX_CONF_OK;
}


/*
 * From init_module, once worker_processes is known: more workers than
 * counter slots share slots, counting exactly but on the same cache lines.
 */

void
ngx_http_portal_gate_metrics_check_slots(ngx_cycle_t *cycle)
{
    ngx_core_conf_t                     *ccf;
    ngx_http_conf_ctx_t                 *hctx;
    ngx_http_portal_gate_main_conf_t    *pmcf;
    ngx_http_portal_gate_metrics_ctx_t  *ctx;

    hctx = (ngx_http_conf_ctx_t *) cycle->conf_ctx[ngx_http_module.index];

    if (hctx == NULL) {
        return;
    }

    pmcf = hctx->main_conf[ngx_http_portal_gate_module.ctx_index];

    if (pmcf == NULL || pmcf->metrics_zone == NULL) {
        return;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);
    ctx = pmcf->metrics_zone->data;

    if ((ngx_uint_t) ccf->worker_processes > ctx->nslots) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "%ui workers share %ui portal_gate metrics slots: "
                      "put \"worker_processes\" before the http block",
                      (ngx_uint_t) ccf->worker_processes, ctx->nslots);
    }
}


/* postconfiguration: the answers' classes are seen in the log phase */

ngx_int_t
ngx_http_portal_gate_metrics_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt               *h;
    ngx_http_core_main_conf_t         *cmcf;
    ngx_http_portal_gate_main_conf_t  *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_portal_gate_module);

    if (pmcf->metrics_zone == NULL) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_portal_gate_metrics_log_handler;

    return NGX_OK;
}


/*
 * nginx hands a zone over at a reload only with the same size, and only
 * the number of slots makes the size: the same slots, and the counters go
 * on.
 */

static ngx_int_t
ngx_http_portal_gate_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_portal_gate_metrics_ctx_t  *octx = data;

    ngx_uint_t                           fresh;
    ngx_http_portal_gate_metrics_sh_t   *sh;
    ngx_http_portal_gate_metrics_ctx_t  *ctx;

    ctx = shm_zone->data;
    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    sh = ngx_http_portal_gate_zone_shared(shm_zone, octx ? octx->sh : NULL,
                                    NGX_HTTP_PORTAL_GATE_METRICS_MAGIC,
                                    NGX_HTTP_PORTAL_GATE_METRICS_LAYOUT,
                                    sizeof(ngx_http_portal_gate_metrics_sh_t),
                                    "portal_gate metrics zone", &fresh);
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ctx->sh = sh;

    if (!fresh) {
        return NGX_OK;
    }

    /* page-aligned: every slot starts on a cache line of its own */

    sh->counters = ngx_slab_calloc(ctx->shpool, ctx->nslots
                                   * NGX_HTTP_PORTAL_GATE_METRICS_SLOT_SIZE);
    if (sh->counters == NULL) {
        return NGX_ERROR;
    }

    sh->started_ms = ngx_http_portal_gate_metrics_now_ms();

    ngx_memcpy(sh->pairs[NGX_HTTP_PORTAL_GATE_METRICS_OVERFLOW].env,
               ngx_http_portal_gate_metrics_other.data,
               ngx_http_portal_gate_metrics_other.len);
    ngx_memcpy(sh->pairs[NGX_HTTP_PORTAL_GATE_METRICS_OVERFLOW].flag,
               ngx_http_portal_gate_metrics_other.data,
               ngx_http_portal_gate_metrics_other.len);
    sh->pairs[NGX_HTTP_PORTAL_GATE_METRICS_OVERFLOW].env_len =
                               (u_char) ngx_http_portal_gate_metrics_other.len;
    sh->pairs[NGX_HTTP_PORTAL_GATE_METRICS_OVERFLOW].flag_len =
                               (u_char) ngx_http_portal_gate_metrics_other.len;

    return NGX_OK;
}
