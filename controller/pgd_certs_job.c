/*
 * pgd_certs_job.c: the certificates' worker thread (pgd_certs.c is the
 * loop's side). It does what may block: the ACME order (seconds, or as
 * long as a CA hangs), the local CA, the install and its nginx -t, and a
 * reload owed since an install (`BINARY -s reload` may hang too). One
 * job at a time: the loop hands it over in d->worker (under its lock) and
 * the worker hands the result back the same way, then writes a byte to the
 * wake pipe.
 *
 * What the worker may touch of the daemon: d->worker (under its lock, or
 * its own copy of the job), d->use_syslog (set once before the thread
 * starts) for pgd_log_write(), and nothing else: the loop may reload the
 * config under it.
 */

#include <errno.h>              /* errno */
#include <fcntl.h>              /* fcntl */
#include <signal.h>             /* sigfillset, pthread_sigmask */
#include <stdarg.h>             /* va_list: the ACME client's log */
#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* free */
#include <string.h>             /* memset, memcpy, strerror, strlen */
#include <time.h>               /* time, clock_gettime */
#include <sys/resource.h>       /* setpriority */
#include <sys/stat.h>           /* mkdir */
#include <sys/syscall.h>        /* SYS_gettid */
#include <unistd.h>             /* pipe, write, close */
#include <openssl/crypto.h>     /* OPENSSL_cleanse */
#include "pgd.h"                /* the daemon */
#include "pg_acme.h"            /* pg_acme_issue, pg_acme_renewal_info */
#include "pg_cert_install.h"    /* pg_cert_install */


#define PGD_LOCAL_LIFETIME    (90L * 24 * 3600)   /* s: the local CA's */
#define PGD_WORKER_NICE       10        /* the worker's, and nginx -t's,
                                           above the daemon's own */
#define PGD_ACCOUNT_PATH_MAX  (PG_CONF_PATH_MAX + 300)  /* state_dir, the
                                           CA's host, the file's name */


/* What the worker's ACME callbacks get. */
typedef struct {
    pgd_t          *d;              /* for pgd_log_write() alone */
    pgd_worker_t   *worker;
    pgd_job_t      *job;
    redisContext   *redis;          /* the worker's own, or NULL */
    char            channel[PG_STORE_PREFIX_MAX + 16];
    struct timespec wait_until;     /* CLOCK_MONOTONIC: the end of the
                                       order's wait for its tokens to be
                                       out; 0 before the first */
} pgd_job_ctx_t;


static void *pgd_worker_main(void *arg);
static void pgd_job_run(pgd_t *d, pgd_job_t *job);
static int pgd_job_issue(pgd_t *d, pgd_job_t *job);
static void pgd_job_nginx(pgd_t *d, pgd_job_t *job, pg_cert_nginx_t *nginx);
static int pgd_job_mkdirs(pgd_job_t *job, char *path);
static int pgd_job_account_key(pgd_job_t *job, char *path, size_t size);
static void pgd_job_record_issuer(pgd_job_t *job);
static int pgd_job_challenge(void *ctx, const char *token,
    const char *key_authorization, int add, pg_error_t *err);
static void pgd_job_log(void *ctx, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


/* The wake pipe, the lock, and the thread (signals blocked in it). */
int
pgd_worker_start(pgd_t *d)
{
    int                  i;
    pgd_worker_t        *w;
    pthread_condattr_t   attr;

    w = &d->worker;

    if (pipe(w->wake) != 0) {
        return PG_ERR;
    }

    for (i = 0; i < 2; i++) {
        fcntl(w->wake[i], F_SETFL, O_NONBLOCK);
        fcntl(w->wake[i], F_SETFD, FD_CLOEXEC);
    }

    pthread_mutex_init(&w->lock, NULL);

    /* the worker's waits are timed on the monotonic clock: a clock set
     * back must not make one last an hour */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);

    if (pthread_create(&w->thread, NULL, pgd_worker_main, d) != 0) {
        return PG_ERR;
    }

    w->running = 1;

    return PG_OK;
}


/* The end: the worker's waits (the CA, nginx -t) are cut short, and it is
 * joined. */
void
pgd_worker_stop(pgd_t *d)
{
    pgd_worker_t  *w;

    w = &d->worker;

    if (!w->running) {
        return;
    }

    pthread_mutex_lock(&w->lock);
    w->quit = 1;
    w->cancel = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);

    pthread_join(w->thread, NULL);
    w->running = 0;

    close(w->wake[0]);
    close(w->wake[1]);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}


static void *
pgd_worker_main(void *arg)
{
    int            prio;
    id_t           tid;
    pgd_t         *d;
    sigset_t       all;
    pgd_job_t      job;
    pgd_worker_t  *w;

    d = arg;
    w = &d->worker;

    /* signals are the loop's: it unblocks them only while it waits */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);

    /*
     * The CPU is the kill's first: this thread, and the nginx -t it forks
     * (a child takes its thread's nice value), yield to the loop and the
     * edges. Linux keeps a nice value per thread; at worst it stays 0.
     */
    tid = (id_t) syscall(SYS_gettid);
    errno = 0;
    prio = getpriority(PRIO_PROCESS, tid);

    /* relative to the daemon's own: a daemon run at nice 15 must not
     * give its worker more CPU than its loop */
    if (errno == 0) {
        prio = prio + PGD_WORKER_NICE > 19 ? 19 : prio + PGD_WORKER_NICE;
        (void) setpriority(PRIO_PROCESS, tid, prio);
    }

    pthread_mutex_lock(&w->lock);

    for ( ;; ) {
        while (!w->quit && w->state != PGD_JOB_GIVEN) {
            pthread_cond_wait(&w->cond, &w->lock);
        }

        if (w->quit) {
            break;
        }

        /* the job is the worker's until it says DONE: work on a copy */
        job = w->job;
        pthread_mutex_unlock(&w->lock);

        pgd_job_run(d, &job);

        pthread_mutex_lock(&w->lock);
        w->job = job;
        w->state = PGD_JOB_DONE;

        if (write(w->wake[1], "", 1) < 0) {
            /* full: the loop has a byte to read already */
        }
    }

    pthread_mutex_unlock(&w->lock);

    return NULL;
}


static void
pgd_job_run(pgd_t *d, pgd_job_t *job)
{
    char             path[PGD_ACCOUNT_PATH_MAX];
    double           start;
    pgd_job_ctx_t    ctx;
    pg_acme_conf_t   acme;
    pg_cert_nginx_t  nginx[PG_CONF_NGINX_MAX];

    start = pgd_now();
    job->rc = PG_ERR;

    if (job->kind == PGD_JOB_ISSUE) {
        job->rc = pgd_job_issue(d, job);

    } else if (job->kind == PGD_JOB_RELOAD) {
        /* here, not in the loop: `BINARY -s reload` may hang as long as
         * PG_CERT_NGINX_TIMEOUT, and a stop cuts it short (cancel) */
        pgd_job_nginx(d, job, nginx);
        job->rc = pg_cert_reload_all(nginx, job->nnginx, &job->err);

    } else if (pgd_job_account_key(job, path, sizeof(path)) == PG_OK) {
        memset(&ctx, 0, sizeof(ctx));
        ctx.d = d;
        ctx.job = job;
        memset(&acme, 0, sizeof(acme));
        acme.directory = job->conf.acme;
        acme.ca_file = job->conf.acme_ca[0] ? job->conf.acme_ca : NULL;
        acme.account_key = path;
        acme.challenge = pgd_job_challenge;
        acme.log = pgd_job_log;
        acme.ctx = &ctx;
        acme.cancel = &d->worker.cancel;

        job->rc = pg_acme_renewal_info(&acme, job->ari_id, &job->ari_start,
                                       &job->ari_end, &job->retry_after,
                                       &job->err);
    }

    job->took_ms = pgd_now() - start;
}


/* Obtain a pair (the CA, or the local CA) and install it. */
static int
pgd_job_issue(pgd_t *d, pgd_job_t *job)
{
    int              rc;
    char            *chain, *key_pem, *names[PG_CONF_CERT_NAMES];
    char             path[PGD_ACCOUNT_PATH_MAX];
    char             buf[sizeof(job->conf.names)];
    const char      *contact[PG_CONF_CONTACTS];
    size_t           i, n, chain_len, key_len;
    EVP_PKEY        *key;
    pgd_job_ctx_t    ctx;
    pg_acme_conf_t   acme;
    pg_cert_nginx_t  nginx[PG_CONF_NGINX_MAX];

    memcpy(buf, job->conf.names, sizeof(buf));
    n = pgd_names_split(buf, names, PG_CONF_CERT_NAMES);

    /* a new key at every issuance: a key that leaked dies with its pair */
    key = pg_cert_key_new(job->conf.key_type, &job->err);

    if (key == NULL) {
        return PG_ERR;
    }

    chain = NULL;
    key_pem = NULL;

    if (job->conf.issuer == PG_CONF_ISSUER_LOCAL) {
        rc = pg_cert_local_issue(job->conf.ca_cert, job->conf.ca_key, key,
                                 names, n, PGD_LOCAL_LIFETIME, &chain,
                                 &chain_len, &job->err);

    } else if (pgd_job_account_key(job, path, sizeof(path)) != PG_OK) {
        rc = PG_ERR;

    } else {
        memset(&ctx, 0, sizeof(ctx));
        ctx.d = d;
        ctx.worker = &d->worker;
        ctx.job = job;
        snprintf(ctx.channel, sizeof(ctx.channel), "%s%s", job->prefix,
                 PG_STORE_CHANNEL);

        for (i = 0; i < job->conf.ncontacts; i++) {
            contact[i] = job->conf.contact[i];
        }

        memset(&acme, 0, sizeof(acme));
        acme.directory = job->conf.acme;
        acme.ca_file = job->conf.acme_ca[0] ? job->conf.acme_ca : NULL;
        acme.account_key = path;
        acme.contact = contact;
        acme.ncontact = job->conf.ncontacts;
        acme.profile = job->conf.profile[0] ? job->conf.profile : NULL;
        acme.replaces = job->ari_id[0] ? job->ari_id : NULL;
        acme.challenge = pgd_job_challenge;
        acme.log = pgd_job_log;
        acme.ctx = &ctx;
        acme.cancel = &d->worker.cancel;

        rc = pg_acme_issue(&acme, names, n, key, &chain, &chain_len,
                           &job->retry_after, &job->err);

        if (ctx.redis != NULL) {
            redisFree(ctx.redis);
        }
    }

    if (rc == PG_OK) {
        rc = pg_cert_key_pem(key, &key_pem, &key_len, &job->err);
    }

    if (rc == PG_OK) {
        pgd_job_nginx(d, job, nginx);

        rc = pg_cert_install(job->conf.fullchain, job->conf.privkey, chain,
                             chain_len, key_pem, key_len, names, n, nginx,
                             job->nnginx, time(NULL), &job->err);

        if (rc == PG_CERT_NOT_RELOADED) {
            /* in place: the next reload serves it; the loop says so */
            job->not_reloaded = 1;
            rc = PG_OK;
        }
    }

    if (rc == PG_OK) {
        rc = pg_cert_info(chain, chain_len, &job->info, &job->err);
        pgd_job_record_issuer(job);
    }

    if (key_pem != NULL) {
        OPENSSL_cleanse(key_pem, key_len);
        free(key_pem);
    }

    free(chain);
    EVP_PKEY_free(key);

    return rc;
}


/* The job's nginx lines as pg_cert_install wants them, cut short by a
 * stop (the worker's cancel). */
static void
pgd_job_nginx(pgd_t *d, pgd_job_t *job, pg_cert_nginx_t *nginx)
{
    size_t  i;

    for (i = 0; i < job->nnginx; i++) {
        memset(&nginx[i], 0, sizeof(pg_cert_nginx_t));
        nginx[i].conf = job->nginx[i].conf;
        /* with pid=, this process signals; without, BINARY -s reload
         * does (the package's root helper) */
        nginx[i].pid = (job->nginx[i].reload && job->nginx[i].pid[0])
                       ? job->nginx[i].pid : NULL;
        nginx[i].by_binary = job->nginx[i].reload
                             && job->nginx[i].pid[0] == '\0';
        nginx[i].binary = job->nginx[i].binary;
        nginx[i].prefix = job->nginx[i].prefix[0] ? job->nginx[i].prefix
                                                  : NULL;
        nginx[i].timeout = 0;
        nginx[i].cancel = &d->worker.cancel;
    }
}


/*
 * The ACME account's key: STATE_DIR/acme/HOST/account.key, one account
 * per CA (the directory URL's host and port), made by pg_acme at 0600 on
 * first use; the folders are made here, 0700.
 */
static int
pgd_job_account_key(pgd_job_t *job, char *path, size_t size)
{
    char        host[256];
    size_t      i;
    const char  *u;

    u = job->conf.acme + sizeof("https://") - 1;

    for (i = 0; u[i] && u[i] != '/' && i + 1 < sizeof(host); i++) {
        host[i] = (u[i] == ':') ? '_' : u[i];
    }

    host[i] = '\0';

    if ((size_t) snprintf(path, size, "%s/acme/%s/account.key",
                          job->state_dir, host) >= size)
    {
        snprintf(job->err.text, sizeof(job->err.text), "state_dir %.200s "
                 "is too long for the ACME account's key", job->state_dir);
        return PG_ERR;
    }

    return pgd_job_mkdirs(job, path);
}


/* The folders of path (a file's) that do not exist yet, 0700. */
static int
pgd_job_mkdirs(pgd_job_t *job, char *path)
{
    char  *p;

    for (p = path + 1; *p; p++) {
        if (*p != '/') {
            continue;
        }

        *p = '\0';

        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(job->err.text, sizeof(job->err.text), "cannot make "
                     "%s in state_dir: %s", path, strerror(errno));
            *p = '/';
            return PG_ERR;
        }

        *p = '/';
    }

    return PG_OK;
}


/*
 * STATE_DIR/certs/NAME.issuer: who issued the pair in place ("acme URL",
 * "local CA-FILE"), so that a start with another issuer configured (a
 * staging CA for production, say) reissues at once, and `replaces` names
 * only a certificate of the same CA. Best effort: without it, the daemon
 * renews on the plan and sends no `replaces`.
 */
static void
pgd_job_record_issuer(pgd_job_t *job)
{
    char        path[PG_CONF_PATH_MAX + 300], text[PGD_RECORD_MAX];
    pg_error_t  err;

    snprintf(path, sizeof(path), "%s/certs/%s.issuer", job->state_dir,
             job->name);
    pgd_cert_record_text(&job->conf, text, sizeof(text));

    if (pgd_job_mkdirs(job, path) == PG_OK) {
        (void) pg_cert_write_file(path, text, strlen(text), 0600, &err);
    }
}


/*
 * pg_acme's challenge callback, in the worker: the token to Redis (add)
 * or out of it, the message for every controller, and for an add, the
 * wait until this daemon's edges were sent the set (pgd_challenges.c).
 */
static int
pgd_job_challenge(void *ctx, const char *token,
    const char *key_authorization, int add, pg_error_t *err)
{
    char             key[PG_STORE_PREFIX_MAX + 32], value[300];
    uint64_t         want;
    pgd_job_ctx_t   *c;
    redisReply      *r;

    c = ctx;

    if (c->redis == NULL) {
        c->redis = pg_redis_connect(&c->job->redis, PGD_REDIS_TIMEOUT_MS,
                                    err);

        if (c->redis == NULL) {
            return PG_ERR;
        }
    }

    snprintf(key, sizeof(key), "%s%s", c->job->prefix, PG_STORE_KEY_CHALLENGES);

    /* "EXPIRES KEY_AUTHORIZATION": a token an order could not withdraw
     * (Redis down then, the daemon killed) is pruned by any controller
     * once its time is past (pgd_challenges.c) */
    snprintf(value, sizeof(value), "%lld %s",
             (long long) time(NULL) + PGD_TOKEN_TTL, key_authorization);

    r = add ? redisCommand(c->redis, "HSET %s %s %s", key, token, value)
            : redisCommand(c->redis, "HDEL %s %s", key, token);

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        snprintf(err->text, sizeof(err->text), "cannot %s the challenge "
                 "token in redis: %s", add ? "write" : "remove",
                 r ? r->str : c->redis->errstr);
        freeReplyObject(r);

        if (r == NULL) {
            redisFree(c->redis);
            c->redis = NULL;
        }

        return PG_ERR;
    }

    freeReplyObject(r);

    pthread_mutex_lock(&c->worker->lock);
    want = ++c->worker->chal_want;
    pthread_mutex_unlock(&c->worker->lock);

    if (write(c->worker->wake[1], "", 1) < 0) {
        /* full: the loop has a byte to read already */
    }

    /* the other controllers' edges */
    r = redisCommand(c->redis, "PUBLISH %s %s", c->channel,
                     PG_STORE_MSG_CHALLENGES);
    freeReplyObject(r);

    if (!add) {
        return PG_OK;
    }

    /* one wait for the whole order, not one per token: a 26-name order
     * with an edge that never answers waits 10 s, not 260 */
    if (c->wait_until.tv_sec == 0) {
        clock_gettime(CLOCK_MONOTONIC, &c->wait_until);
        c->wait_until.tv_sec += PGD_CHALLENGE_WAIT_MS / 1000;
    }

    pthread_mutex_lock(&c->worker->lock);
    c->worker->chal_waiting = want;

    while (c->worker->chal_done < want && !c->worker->cancel) {
        if (pthread_cond_timedwait(&c->worker->cond, &c->worker->lock,
                                   &c->wait_until) != 0)
        {
            break;                      /* the CA will say what it saw */
        }
    }

    c->worker->chal_waiting = 0;
    pthread_mutex_unlock(&c->worker->lock);

    return PG_OK;
}


/*
 * pg_acme's log, in the worker: one line, named for the certificate, at
 * the level the job was given with (the loop's config may change under
 * it: the worker reads no more of it). pgd_log_write() formats on its own
 * stack and writes the line in one call, which is safe from a thread.
 */
static void
pgd_job_log(void *ctx, int level, const char *fmt, ...)
{
    char            msg[900];
    va_list         args;
    pgd_job_ctx_t  *c;

    c = ctx;

    if (level < c->job->log_level) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    pgd_log_write(c->d, level, "certificate %s: %s", c->job->name, msg);
}
