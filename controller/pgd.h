/*
 * pgd.h: portal-gated's private header: the daemon's state, and what its
 * files call in each other. Only controller/portal-gated.c and
 * controller/pgd_*.c include it.
 *
 *   portal-gated.c   start, logging, signals, config reload, the loop
 *   pgd_redis.c      the two Redis connections: connect, pub/sub, backoff
 *   pgd_sentinel.c   a sentinel's +switch-master: reconnect at a failover
 *   pgd_store.c      reading the store, the reconcile tick, and saying once
 *                    what the edges get instead of what the store holds
 *   pgd_delta.c      the change messages, and a change read flag by flag
 *                    (a delta) when the store's change log says which
 *                    flags changed
 *   pgd_digest.c     the reconcile's check after deltas: the store's
 *                    digest (a SHA-1 per flag) against what was read,
 *                    for values written into Redis without a revision
 *   pgd_compose.c    from whatever the store holds, a snapshot that
 *                    compiles; a patch from one snapshot to another (pure:
 *                    JSON in, JSON out, no I/O)
 *   pgd_edges.c      every request to an edge, in the curl multi handle:
 *                    PUT snapshot, PATCH snapshot (to an edge known to
 *                    hold what it took), GET status, GET snapshot (seed);
 *                    409s (raise the store, or force a pinned edge); the
 *                    kill overrides an edge lists
 *   pgd_beat.c       liveness: the beat in Redis (P"controllers") at
 *                    every tick, removed at a clean exit
 *   pgd_certs.c      the staging certificates: placeholders, when each
 *                    renews, the worker thread that issues and installs
 *                    (ACME or the local CA), their status in Redis
 *   pgd_challenges.c the ACME http-01 tokens: from Redis to every edge
 *   pgd_http*.c      `listen`: /metrics, /healthz, the status page; MHD
 *                    in this loop, no thread (pgd_http.h)
 *
 * Nothing here blocks on an edge: every edge request runs in the multi
 * handle, and the loop only waits in curl_multi_poll(). Nothing blocks on
 * a CA either: an issuance runs in the certificates' worker thread
 * (pgd_worker_t), which shares with the loop only what pgd_worker_t
 * holds, under its lock.
 *
 * Ownership: the daemon (pgd_t) owns its Redis contexts, the multi handle,
 * the edges and their requests, the last good snapshot, the store as last
 * read, the seed and the notes; a pushed body is shared by the requests
 * that send it and freed by the last of them (pgd_body_t). Snapshot and
 * store documents are never changed once made: a delta makes new ones
 * that share every flag it did not change (pg_snap_patch_json()), which
 * is what makes a patch between two of them cheap to find.
 */

#ifndef PGD_H
#define PGD_H

#include <pthread.h>            /* the certificates' worker */
#include <signal.h>             /* sig_atomic_t */
#include <time.h>               /* time_t */
#include <stdint.h>             /* int64_t, uint64_t */
#include <curl/curl.h>          /* CURLM, CURLcode */
#include <hiredis/hiredis.h>    /* redisContext */
#include <jansson.h>            /* json_t */
#include "portal_gate.h"        /* PG_OK, pg_error_t, PG_REVISION_MAX */
#include "pg_conf.h"            /* pg_conf_t, PG_LOG_* */
#include "pg_ctl_store.h"       /* pg_store_t */
#include "pg_edge.h"            /* pg_edge_t, pg_edge_req_t */
#include "pg_cert.h"            /* pg_cert_info_t */


#define PGD_CONF_DEFAULT      "/etc/portal-gate/portal-gated.conf"
#define PGD_CONF_ENV          "PORTAL_GATE_CONF"    /* -c's default first */

/* The release, for --version and the beat. Until one shared place holds
 * it for both programs, -DPG_VERSION=... overrides it. */
#ifndef PG_VERSION
#define PG_VERSION            "0.8.0"
#endif

#define PGD_ACTOR             "portal-gated"

#define PGD_REDIS_TIMEOUT_MS  1000      /* connect, and each command */
#define PGD_SENTINEL_TIMEOUT_MS 500     /* connect and SUBSCRIBE together,
                                           to the sentinel watched */
#define PGD_SENTINEL_RETRY_MS 1000      /* after a failed one, the next; */
#define PGD_SENTINEL_RETRY_MAX_MS 30000 /* doubling to this while they
                                           fail */
#define PGD_STATUS_TIMEOUT_MS 1000      /* GET status of an edge */
#define PGD_SEED_TIMEOUT_MS   5000      /* GET snapshot: 100k ids ~ 2 MB */
#define PGD_SEED_WAIT_MS      1000      /* after the first usable answer,
                                           for a better one (a higher
                                           revision) from the others */
#define PGD_PUT_TIMEOUT_MS    10000     /* PUT snapshot: 100k ids ~50 ms */
#define PGD_PATCH_AGAIN_MS    60000     /* an edge that refused PATCH (a
                                           module from before it) gets
                                           PUTs, and a PATCH again after */
#define PGD_WHOLE_EVERY       10        /* intervals: the store's digest
                                           compared after deltas (a whole
                                           read only when it cannot say),
                                           even while they go on */
#define PGD_BACKOFF_MIN_MS    250       /* Redis reconnects: 250 ms .. */
#define PGD_BACKOFF_MAX_MS    5000      /* .. 5 s, jitter within */
#define PGD_STALE_EVERY_MS    60000     /* "still no Redis", at most so often */

/*
 * The highest edge revision the store's is raised above (409 from an edge
 * ahead of a store restored from an older backup). Above it the edge is
 * taken as pinned, by a hostile or broken PUT: raising the store there
 * would leave it too few revisions to write a kill with (an edge and the
 * core refuse anything above PG_REVISION_MAX), so the daemon pushes with
 * ?force=1 instead. Half the range: no real store gets near 2^52 writes.
 */
#define PGD_RAISE_MAX         (PG_REVISION_MAX / 2)

/* What an edge's request in flight is. */
#define PGD_REQ_NONE          0
#define PGD_REQ_STATUS        1
#define PGD_REQ_PUT           2
#define PGD_REQ_SEED          3         /* GET snapshot, see pgd_t.seed */
#define PGD_REQ_VERIFY        4         /* GET snapshot, see pgd_t.verify */
#define PGD_REQ_PATCH         5         /* PATCH snapshot, see pgd_kick() */

/* Redis, and the edges, as last said in the log. */
#define PGD_UNKNOWN           0
#define PGD_UP                1
#define PGD_DOWN              2

/* The store, as last read. */
#define PGD_STORE_UNKNOWN     0
#define PGD_STORE_OK          1
#define PGD_STORE_UNINIT      2         /* no marker: never pushed */
#define PGD_STORE_BROKEN      3         /* cannot be read or compiled */

/* The seed: what an edge holds, asked only while the daemon has no last
 * good snapshot of its own (it just started) and needs one. */
#define PGD_SEED_NONE         0         /* not needed, or not asked yet */
#define PGD_SEED_ASKING       1         /* GET snapshot to each edge */
#define PGD_SEED_SETTLED      2         /* an edge answered, or none could */

/* The certificates' worker: what it is doing. */
#define PGD_JOB_IDLE          0
#define PGD_JOB_GIVEN         1         /* the worker has it */
#define PGD_JOB_DONE          2         /* its result waits for the loop */

#define PGD_JOB_ISSUE         1         /* obtain and install */
#define PGD_JOB_ARI           2         /* ask the CA's renewalInfo */
#define PGD_JOB_RELOAD        3         /* a reload owed since an install:
                                           `BINARY -s reload` may wait as
                                           long as nginx -t, never in the
                                           loop */

#define PGD_ARI_EVERY         (6 * 3600)    /* s: renewalInfo asked again */
#define PGD_STATUS_EVERY      60        /* s: a status written again; the
                                           CLI calls one older than 3 of
                                           these stale */
#define PGD_RELOAD_TRIES      10        /* SIGHUPs owed: tries, .. */
#define PGD_RELOAD_EVERY      30        /* .. s apart */
#define PGD_TOKEN_TTL         600       /* s a challenge token is kept in
                                           Redis: an order that never
                                           withdrew it cannot leave it */
#define PGD_CHALLENGES_MAX    128       /* an edge's limit */
#define PGD_RECORD_MAX        (5 * PG_CONF_PATH_MAX + 64 * 4 + 4 * 256)
                                        /* the state_dir record of a
                                           certificate's block */
#define PGD_CHALLENGE_WAIT_MS 10000     /* for the edges to hold a token */
#define PGD_CHALLENGE_TIMEOUT_MS 2000   /* PUT challenges to an edge */
#define PGD_CHALLENGE_AGAIN_MS 250      /* an edge did not take a token a
                                           worker waits on: sent again */


/* The note key (pgd_compose()) of an environment the read could not read,
 * before its name. */
#define PGD_NOTE_UNREAD       "unread:"


#define pgd_log(d, level, ...)                                               \
    do {                                                                     \
        if ((level) >= (d)->conf.log_level) {                                \
            pgd_log_write(d, level, __VA_ARGS__);                            \
        }                                                                    \
    } while (0)


/*
 * What a PUT or a PATCH sends, shared by the requests that send it. A
 * whole snapshot's text is made when a PUT first needs it
 * (pgd_body_text()): a change that every edge takes as a patch never
 * prints the whole snapshot.
 */
typedef struct {
    int       refs;
    int64_t   revision;
    size_t    len;
    char     *data;             /* the text; NULL until made */
    json_t   *json;             /* the snapshot itself (a patch's: what it
                                   makes): one reference */
    int       delta;            /* a whole snapshot made from change
                                   messages: an edge that holds what it
                                   took from this daemon may get a patch */
    int64_t   base;             /* a patch: the revision it applies to;
                                   -1 for a whole snapshot */
    json_t   *from;             /* a patch: the snapshot it applies to,
                                   one reference; NULL */
    size_t    nflags;           /* a patch: the flags it names */
} pgd_body_t;

/* A certificate of the config, as the loop knows it. */
typedef struct {
    pg_conf_cert_t  conf;
    time_t          next_at;        /* the next attempt */
    const char     *next_why;       /* "first issuance", "renewal", ... */
    unsigned        failures;       /* in a row */
    char            last_error[512];    /* "" after a success */
    time_t          last_error_at;
    time_t          issued_at;      /* installed by this daemon; 0 */
    int             have_info;      /* info is the installed certificate */
    int             placeholder;    /* it is the first-start placeholder */
    pg_cert_info_t  info;
    time_t          ari_at;         /* renewalInfo asked last; 0: never */
    int             ari;            /* -1 unknown, 0 the CA has none, 1 */
    time_t          status_at;      /* written to Redis last; 0: never */
    unsigned long   attempts;       /* issuances ended, either way, since
                                       the daemon started: what `cert
                                       renew --wait` watches */
    int             planned;        /* next_at is the renewal plan (or the
                                       CA's window), which ARI may move;
                                       0: asked, a retry, a reissue */
    int             issuer_known;   /* state_dir records its issuer */
    int             issuer_same;    /* the pair in place was issued by the
                                       issuer configured now (its record
                                       in state_dir says so): `replaces`
                                       may name it */
    int             renew_init;     /* renew_seen was read once */
    uint64_t        renew_seen;     /* P"cert:renew" NAME, as last seen:
                                       its hash */
    unsigned        reload_tries;   /* SIGHUPs owed (an install that could
                                       not signal a master): tries left */
    time_t          reload_at;      /* the next one */
    char            reload_error[512];  /* why one is owed; "" */
    int             held_said;      /* due, held (no Redis, no edge):
                                       said */
    int             block_same;     /* the record says the pair was issued
                                       under this block as it is now */
} pgd_cert_t;

/* One job of the worker: the loop fills the copies, the worker the
 * results; neither touches it while the other has it (state). */
typedef struct {
    int              kind;          /* PGD_JOB_ISSUE, _ARI, _RELOAD */
    char             name[256];     /* the certificate's */
    pg_conf_cert_t   conf;
    char             state_dir[PG_CONF_PATH_MAX];
    pg_conf_nginx_t  nginx[PG_CONF_NGINX_MAX];
    size_t           nnginx;
    pg_redis_url_t   redis;
    char             prefix[PG_STORE_PREFIX_MAX + 1];
    int              log_level;     /* the config's, for the worker */
    char             ari_id[PG_CERT_ARI_ID_MAX + 1];    /* of the
                                       installed certificate, or "" */

    int              rc;            /* PG_OK, PG_ERR, PG_DECLINED (ARI) */
    pg_error_t       err;
    long             retry_after;   /* s, the CA's; 0 */
    pg_cert_info_t   info;          /* of the new certificate */
    time_t           ari_start;     /* the CA's suggested window */
    time_t           ari_end;
    int              not_reloaded;  /* installed, an nginx not reloaded */
    double           took_ms;
} pgd_job_t;

typedef struct {
    pthread_t        thread;
    int              running;       /* the thread was started */
    pthread_mutex_t  lock;          /* guards what follows */
    pthread_cond_t   cond;          /* the job's state, chal_done */
    int              quit;
    volatile int     cancel;        /* the worker's ACME waits end */
    int              state;         /* PGD_JOB_* */
    pgd_job_t        job;
    int              wake[2];       /* worker -> loop: look at the job */
    uint64_t         chal_want;     /* token changes the worker made */
    uint64_t         chal_done;     /* every edge was sent the set as it
                                       was after this many */
    uint64_t         chal_waiting;  /* the chal_want the worker waits on
                                       now; 0: it waits on none */
} pgd_worker_t;

typedef struct {
    pg_edge_t       edge;           /* where it is, from the config */
    pg_edge_req_t   req;            /* in flight when kind is not NONE */
    int             kind;           /* PGD_REQ_* */
    pgd_body_t     *body;           /* a PUT's body, one reference */
    double          started;        /* ms, of the request in flight */
    int64_t         revision;       /* the edge's, as it last said; -1 */
    int             state;          /* PGD_UP, PGD_DOWN as last logged */
    int             held;           /* failed: wait for the next tick, or
                                       the next snapshot (pgd_load()) */
    int             check;          /* ask its revision when idle */
    int             force;          /* pinned: PUT with ?force=1 */
    int             patch_ok;       /* it took accepted from this daemon
                                       (200), or was found holding it after
                                       the daemon's start (GET snapshot),
                                       and has answered every request
                                       since: a PATCH from accepted may go
                                       (pgd_patchable()) */
    double          patch_again;    /* ms (pgd_now()): it refused PATCH
                                       (405, 501, 400): PUTs until then */
    int             forcing;        /* the PUT in flight has ?force=1 */
    int             seed_asked;     /* GET snapshot sent, this seeding */
    int64_t         retried;        /* the revision whose PUT a 503 (an
                                       old worker after a resizing reload)
                                       had tried again at once; -1 */
    json_t         *accepted;       /* the snapshot it last took (200),
                                       or was found holding (pgd_verified()),
                                       new; NULL before */
    pgd_body_t     *own;            /* what it gets instead of d->body
                                       when it cannot hold that (507,
                                       413): the store's kills over what
                                       it took; one reference, or NULL */
    int64_t         partial;        /* the revision at which it took
                                       own, so holds less than the
                                       store's snapshot; -1 */
    int64_t         verified;       /* the revision at which what it
                                       holds is known to be the daemon's
                                       (it took it, or was compared); -1 */
    char            said[512];      /* the last refusal logged */
    char            error[512];     /* why it is not in step, for the
                                       beat: unreachable, or its refusal;
                                       "" when none is known */
    json_t         *overrides;      /* its kill overrides as its GET
                                       status last listed them, [{"env",
                                       "flag"}]: new; NULL before it has */
    pg_edge_req_t   acme_req;       /* PUT challenges, beside req */
    int             acme_busy;      /* acme_req is in flight */
    int             acme_failing;   /* its last PUT challenges failed (said
                                       once, until one succeeds) */
    char           *acme_body;      /* its body: new */
} pgd_edge_t;

typedef struct {
    char           *conf_path;      /* absolute: new */
    pg_conf_t       conf;
    int             use_syslog;

    redisContext   *cmd;            /* commands */
    redisContext   *sub;            /* SUBSCRIBE only */
    redisContext   *sentinel;       /* SUBSCRIBE +switch-master: NULL
                                       without a sentinel URL */
    char            sentinel_url[1024]; /* the URL it watches for */
    char            sentinel_at[128];   /* "host:port" of the sentinel */
    int             sentinel_next;  /* the URL's sentinel to try next */
    int             sentinel_failing; /* a try failed since the last
                                       SUBSCRIBE: said at info already */
    double          sentinel_retry_at;
    long            sentinel_backoff_ms; /* the wait after the next failed
                                       try (0: PGD_SENTINEL_RETRY_MS) */
    pg_store_t      store;
    char            where[300];     /* the Redis URL, password masked */
    char            channel[PG_STORE_PREFIX_MAX + 16];
    int             redis_state;    /* PGD_UP, PGD_DOWN as last logged */
    double          redis_down_since;
    double          redis_retry_at;
    double          stale_said;
    unsigned        redis_attempts;
    int             load_wanted;    /* a change message that says read
                                       everything came, or a doubt */
    int             delta_wanted;   /* a change message came: ask the
                                       store's change log what changed
                                       (pgd_delta()) */
    unsigned        deltas;         /* snapshots made by deltas since the
                                       last whole read or digest check: a
                                       tick compares the store's digest
                                       once they stop (pgd_tick()) */
    double          delta_at;       /* when the last was made, ms */
    double          whole_at;       /* the last whole read or digest
                                       check, ms */

    char            envs[PG_ENVS_MAX][PG_NAME_MAX + 1]; /* pushed: the
                                       config's, then the store's own */
    size_t          nenvs;
    char            envs_said[512]; /* the store's environments that are
                                       not pushed, as last logged */

    int             store_state;    /* PGD_STORE_* as last logged */
    char            store_said[1024];
    int64_t         store_revision; /* Redis's, at the last read */
    char            stored_epoch[PG_STORE_EPOCH_MAX + 1];  /* the
                                       marker's epoch at the last whole
                                       read ("": none): which store
                                       stored and store_revision are of;
                                       a delta asks the log only of it,
                                       and a tick that finds another
                                       reads the whole store */

    json_t         *good;           /* the last snapshot made, or NULL */
    pgd_body_t     *body;           /* its text: one reference */
    pgd_body_t     *patch;          /* the last patch made to body, for the
                                       next edge that holds the same: one
                                       reference, or NULL */
    json_t         *stored;         /* the store as last read (a delta
                                       applied): {"revision", "environments"},
                                       what pgd_compose() made good from;
                                       NULL when it made none */
    json_t         *stored_bad;     /* and its bad flags, as bad_now */
    json_t         *digests;        /* "env/flag" -> [SHA1HEX, the flag
                                       held]: the hash of each flag as
                                       stored, for the reconcile's check
                                       after deltas (pgd_digest.c) */
    json_t         *notes;          /* what was said of flags the edges
                                       do not get as the store has them:
                                       key -> [level, text]; see
                                       pgd_compose() */
    json_t         *bad_now;        /* "env/flag" -> {"why", "value"},
                                       for the read under way: invalid on
                                       their own; see pgd_compose() */
    json_t         *seed;           /* an edge's snapshot, or NULL */
    int             seed_state;     /* PGD_SEED_* */
    double          seed_until;     /* settle then, with the best answer
                                       so far; 0 before any */
    char            seed_from[512]; /* the edge the seed came from */

    int64_t         verify;         /* the first revision pushed since the
                                       start: an edge already at it may
                                       hold another snapshot for it (made
                                       by this daemon before a restart with
                                       another config, or by another
                                       controller), so what it holds is
                                       compared, once; -1 when done */
    int64_t         made_revision;  /* the last body made: its revision */
    json_t         *made;           /* and its snapshot; kept across
                                       pgd_store_forget(): the edges may
                                       hold it. -1, NULL before any */

    char            host[256];      /* the beat: gethostname() */
    char            started_at[32]; /* ISO 8601 UTC */
    time_t          started;        /* the same */
    char            beat_field[300];    /* "HOST:PID" */
    char            beat_key[PG_STORE_PREFIX_MAX + 16]; /* of the last
                                                           beat sent */
    int             beat_sent;      /* a beat of ours is in beat_key */
    int             beat_failed;    /* Redis refused the last one: said */

    pgd_cert_t     *certs;          /* the config's certificates: new */
    size_t          ncerts;
    int             certs_swept;    /* statuses of blocks gone: removed */
    pgd_worker_t    worker;
    int             renew_wanted;   /* a cert-renew message came */
    int             chal_wanted;    /* an acme-challenges message came */
    int             chal_live;      /* the set last pushed was not empty */
    int             chal_retry;     /* an edge did not take the last one:
                                       again at the next tick */
    size_t          chal_failed;    /* edges of the round that did not */
    double          chal_again_at;  /* ms (pgd_now()): the round again,
                                       soon, for a worker waiting; 0 */
    uint64_t        chal_round;     /* chal_want when the round in
                                       flight read the set */
    size_t          chal_pending;   /* edges of that round not done */

    pgd_edge_t     *edges;
    size_t          nedges;
    CURLM          *multi;
    double          next_tick;
    int             sigpipe[2];

    struct pgd_http_s  *http;       /* the listen endpoint: new, pgd_http.h */
} pgd_t;


/* portal-gated.c */
void pgd_log_write(pgd_t *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
double pgd_now(void);

/* pgd_redis.c */
void pgd_redis_connect(pgd_t *d);
void pgd_redis_close(pgd_t *d);
void pgd_redis_down(pgd_t *d, const char *why);
void pgd_redis_store_failed(pgd_t *d);
int pgd_redis_moved(pgd_t *d, const redisReply *r);

/* pgd_sentinel.c */
void pgd_sentinel_watch(pgd_t *d);
void pgd_sentinel_read(pgd_t *d);
void pgd_sentinel_close(pgd_t *d);
int pgd_redis_read(pgd_t *d);
int pgd_redis_pending(pgd_t *d, double wait_ms);

/* pgd_store.c */
void pgd_load(pgd_t *d);
void pgd_tick(pgd_t *d);
void pgd_store_forget(pgd_t *d);
void pgd_store_trouble(pgd_t *d, int state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* and for pgd_delta.c: a read's pieces, described where they are */
void pgd_bad_flag(const char *env, const char *flag, const char *why,
    void *data);
int pgd_bad_values(pgd_t *d);
int pgd_read(pgd_t *d, json_t **store, json_t **bad, int *initialised,
    char *epoch);
int pgd_envs(pgd_t *d);
void pgd_made(pgd_t *d, json_t *snap, json_t *notes, json_t *store,
    json_t *bad, const pg_error_t *err, int delta, double since);

/* pgd_delta.c: a change message came (msg: its text, borrowed); the loop
 * reads what they asked for; a delta read now (the reconcile) */
void pgd_change(pgd_t *d, const char *msg);
void pgd_follow(pgd_t *d);
void pgd_delta(pgd_t *d);
void pgd_delta_apply(pgd_t *d, json_t *read, double since);

/* pgd_digest.c: the reconcile's check after deltas; PG_ERR: read
 * the whole store */
int pgd_digest_check(pgd_t *d);
/* and a delta's flags, read with their hashes (pg_store_read_changes()) */
void pgd_digest_read(pgd_t *d, const json_t *sha);
/* and the flags held replaced (a whole read): the hashes of others let go */
void pgd_digest_prune(pgd_t *d);

/* pgd_beat.c */
void pgd_beat_start(pgd_t *d);
void pgd_beat(pgd_t *d);
void pgd_beat_end(pgd_t *d);

/* pgd_certs.c: the loop's side */
int pgd_certs_start(pgd_t *d);
void pgd_certs_configure(pgd_t *d);
void pgd_certs_renew_asked(pgd_t *d);
void pgd_certs_tick(pgd_t *d);
void pgd_certs_collect(pgd_t *d);
double pgd_certs_wake_at(pgd_t *d);
void pgd_certs_stop(pgd_t *d);
int pgd_cert_conf_same(const pg_conf_cert_t *a, const pg_conf_cert_t *b);
void pgd_cert_issuer_text(const pg_conf_cert_t *conf, char *buf,
    size_t size);
void pgd_cert_record_text(const pg_conf_cert_t *conf, char *buf,
    size_t size);
size_t pgd_names_split(char *names, char **out, size_t max);
void pgd_time_text(time_t t, char *buf, size_t size);

/* pgd_certs_job.c: the worker thread */
int pgd_worker_start(pgd_t *d);
void pgd_worker_stop(pgd_t *d);

/* pgd_challenges.c */
void pgd_challenges_kick(pgd_t *d, int tick);
int pgd_challenges_done(pgd_t *d, pg_edge_req_t *req, CURLcode code);
void pgd_challenges_cancel(pgd_t *d, pgd_edge_t *e);

/* pgd_edges.c */
int pgd_edges_set(pgd_t *d);
void pgd_edges_free(pgd_t *d);
void pgd_kick(pgd_t *d);
void pgd_cancel(pgd_t *d, pgd_edge_t *e);
void pgd_done(pgd_t *d, pgd_edge_t *e, CURLcode code);
void pgd_body_release(pgd_body_t *body);
const char *pgd_body_text(pgd_body_t *body);
void pgd_edge_forget(pgd_edge_t *e);
void pgd_seed_ask(pgd_t *d);

/*
 * pgd_compose.c: the snapshot the edges get, from store (a read of the
 * store: pg_store_read() with the flags that are not valid on their
 * own left out and named in bad, "env/flag" -> {"why": text, "value":
 * the value in Redis when it is a JSON object}, and the environments it
 * could not read at all left out and named in bad too, "env" -> {"why"})
 * and good (what the edges hold: the last snapshot made, or an edge's;
 * NULL when unknown).
 * Whatever the store holds, a change to a flag that compiles on its own
 * goes out, a kill above all; the rules are in pgd_compose.c.
 *
 * On PG_OK *out is a new snapshot that compiles. notes gets, for every
 * flag or environment that the edges do not get as the store has it,
 * key -> [level, text] ("env/flag", or "env" for the environment as a
 * whole, PGD_NOTE_UNREAD "env" for one that could not be read, or "*" for
 * the store), the text ready for the log. *wanted is 1
 * when the result depends on what the edges hold (good was consulted).
 * PG_ERR (err set) only when nothing can be pushed at all: a revision out
 * of range, or out of memory. store, bad and good are borrowed.
 */
int pgd_compose(const json_t *store, const json_t *bad, const json_t *good,
    json_t **out, json_t *notes, int *wanted, pg_error_t *err);

/*
 * good (what an edge holds) with store's revision and store's kills
 * applied to it (a flag killed in store, or in bad a value that is not
 * valid but says "enabled": false), keeping only what this core takes of
 * good: what an edge gets when nothing else compiles, or when it cannot
 * hold the store's snapshot. New, or NULL (good is NULL, out of memory).
 * All three are borrowed; bad may be NULL.
 */
json_t *pgd_kills_only(const json_t *store, const json_t *bad,
    const json_t *good);

/*
 * A delta's shortcut to pgd_compose(): store is the store after a change,
 * changed the flags the change set or deleted ({ENV: {FLAG: {...} or
 * null}}, each value valid on its own), and the store before the change
 * composed as it was (no note, no bad flag). Returns 1 when store compiles
 * as it is, so that pgd_compose() would give store itself (without a
 * note): every environment changed within PG_FLAGS_MAX, each requires of a
 * changed flag resolved without coming back to it, no flag left requiring
 * a deleted one. 0: call pgd_compose(). It costs the changed environments'
 * flags, where pgd_compose() compiles the whole snapshot. Both borrowed.
 */
int pgd_compose_fast(const json_t *store, const json_t *changed);

/*
 * The "environments" of a patch (PATCH snapshot) that makes to out of
 * from (two snapshots, borrowed): each flag of to that from has not, or
 * has otherwise, and null for each flag of from that to has not; an
 * environment of to that from has not is named whole (a patch creates it).
 * A new object (empty: a revision bump), or NULL when no patch says it:
 * from has an environment that to has not (a patch never removes one), or
 * out of memory. *nflags is the number of flags named. Flags that are the
 * same object in both (documents made from one another share them) cost a
 * pointer compare.
 */
json_t *pgd_patch_of(const json_t *from, const json_t *to, size_t *nflags);

#endif /* PGD_H */
