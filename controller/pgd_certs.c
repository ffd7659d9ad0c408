/*
 * pgd_certs.c: the staging certificates (DESIGN.md, "Staging
 * certificates"), the daemon's side.
 *
 * The loop owns the schedule: at the start, and at each SIGHUP, every
 * certificate of the config gets a placeholder pair when it has none (so
 * that nginx can start), and a time for its next attempt:
 *   - now, for a placeholder, a pair that cannot be read, or names that
 *     changed;
 *   - the window the CA suggests (ARI, RFC 9773), when it offers one;
 *   - else 2/3 of the lifetime (1/2 for 10 days or less), +-2% jitter;
 *   - after a failure: 1 min, 10 min, 100 min, then daily, never before
 *     the CA's Retry-After;
 *   - now, when `portal-gatectl cert renew NAME` asks (P"cert:renew").
 * The current pair stays in place throughout: only a successful install
 * replaces it (pg_cert_install.h checks the pair, runs nginx -t, and puts
 * the previous files back when that fails).
 *
 * The worker thread does what may block: the ACME order (seconds), the
 * local CA, the install and its nginx -t. One job at a time; the loop
 * hands it over and collects the result (pgd_worker_t, under its lock),
 * and the thread's pipe wakes the loop. The worker has a Redis connection
 * of its own for the challenge tokens (pgd_challenges.c pushes them).
 *
 * Each certificate's state goes to Redis (P"certs", NAME -> JSON) so that
 * `portal-gatectl cert status` works from any host. Every issuance,
 * renewal, failure and next attempt is one line of the log.
 */

#include <errno.h>              /* errno */
#include <fcntl.h>              /* fcntl */
#include <signal.h>             /* sigfillset, pthread_sigmask */
#include <stdarg.h>             /* va_list: the ACME client's log */
#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* calloc, free, rand */
#include <string.h>             /* strcmp, memcpy, strerror */
#include <sys/stat.h>           /* mkdir */
#include <unistd.h>             /* pipe, read, write, close */
#include "pgd.h"                /* the daemon */
#include "pg_acme.h"            /* pg_acme_issue, pg_acme_renewal_info */
#include "pg_cert_install.h"    /* pg_cert_install, pg_cert_placeholder */


#define PGD_LOCAL_LIFETIME    (90L * 24 * 3600)   /* s: the local CA's */
#define PGD_STATUS_EVERY      60        /* s: the status written again */


static void pgd_cert_load(pgd_t *d, pgd_cert_t *c, int names_changed);
static void pgd_cert_plan(pgd_t *d, pgd_cert_t *c);
static void pgd_cert_status(pgd_t *d, pgd_cert_t *c);
static void pgd_cert_status_drop(pgd_t *d, const char *name);
static void pgd_certs_renew_asked(pgd_t *d);
static void pgd_certs_give(pgd_t *d, pgd_cert_t *c, int kind);
static void pgd_time_text(time_t t, char *buf, size_t size);
static size_t pgd_names_split(char *names, char **out, size_t max);
static void *pgd_worker_main(void *arg);
static void pgd_job_run(pgd_t *d, pgd_job_t *job);
static int pgd_job_issue(pgd_t *d, pgd_job_t *job);
static int pgd_job_account_key(pgd_job_t *job, char *path, size_t size);
static int pgd_job_challenge(void *ctx, const char *token,
    const char *key_authorization, int add, pg_error_t *err);
static void pgd_job_log(void *ctx, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


/* What the worker's ACME callbacks get. */
typedef struct {
    pgd_t          *d;              /* for pgd_log_write() alone */
    pgd_worker_t   *worker;
    pgd_job_t      *job;
    redisContext   *redis;          /* the worker's own, or NULL */
    char            channel[PG_STORE_PREFIX_MAX + 16];
} pgd_job_ctx_t;


/* --- the loop's side ---------------------------------------------------- */

/* The worker, then the certificates of the config. */
int
pgd_certs_start(pgd_t *d)
{
    int            i;
    pgd_worker_t  *w;

    w = &d->worker;

    if (pipe(w->wake) != 0) {
        return PG_ERR;
    }

    for (i = 0; i < 2; i++) {
        fcntl(w->wake[i], F_SETFL, O_NONBLOCK);
        fcntl(w->wake[i], F_SETFD, FD_CLOEXEC);
    }

    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);

    if (pthread_create(&w->thread, NULL, pgd_worker_main, d) != 0) {
        return PG_ERR;
    }

    w->running = 1;

    pgd_certs_configure(d);

    return PG_OK;
}


/*
 * d->conf.certs as they are now (the start, or a SIGHUP): a certificate
 * that stays keeps its state; new ones get a placeholder when they have
 * no files, and a plan. A removed certificate's job in flight is
 * cancelled (its result is dropped).
 */
void
pgd_certs_configure(pgd_t *d)
{
    int          changed;
    size_t       i, j;
    pgd_cert_t  *certs, *old;

    certs = calloc(d->conf.ncerts ? d->conf.ncerts : 1, sizeof(pgd_cert_t));

    if (certs == NULL) {
        pgd_log(d, PG_LOG_ERROR, "certificates: out of memory");
        return;
    }

    for (i = 0; i < d->conf.ncerts; i++) {
        certs[i].conf = d->conf.certs[i];
        certs[i].ari = -1;
        changed = 1;
        old = NULL;

        for (j = 0; j < d->ncerts; j++) {
            if (strcmp(d->certs[j].conf.name, certs[i].conf.name) == 0) {
                old = &d->certs[j];
                break;
            }
        }

        if (old != NULL) {
            changed = strcmp(old->conf.names, certs[i].conf.names) != 0
                      || old->conf.issuer != certs[i].conf.issuer
                      || strcmp(old->conf.acme, certs[i].conf.acme) != 0
                      || strcmp(old->conf.ca_cert, certs[i].conf.ca_cert)
                         != 0
                      || strcmp(old->conf.fullchain,
                                certs[i].conf.fullchain) != 0;

            if (!changed) {
                certs[i] = *old;
                certs[i].conf = d->conf.certs[i];
                continue;
            }
        }

        pgd_cert_load(d, &certs[i], old != NULL);
    }

    pthread_mutex_lock(&d->worker.lock);

    if (d->worker.state == PGD_JOB_GIVEN) {
        for (i = 0; i < d->conf.ncerts; i++) {
            if (strcmp(certs[i].conf.name, d->worker.job.name) == 0) {
                break;
            }
        }

        if (i == d->conf.ncerts) {
            d->worker.cancel = 1;
        }
    }

    pthread_mutex_unlock(&d->worker.lock);

    /* a certificate no longer configured leaves cert status */
    for (j = 0; j < d->ncerts; j++) {
        for (i = 0; i < d->conf.ncerts; i++) {
            if (strcmp(d->certs[j].conf.name, certs[i].conf.name) == 0) {
                break;
            }
        }

        if (i == d->conf.ncerts) {
            pgd_log(d, PG_LOG_NOTICE, "certificate %s: no longer in the "
                    "configuration: not renewed any more, its files stay",
                    d->certs[j].conf.name);
            pgd_cert_status_drop(d, d->certs[j].conf.name);
        }
    }

    free(d->certs);
    d->certs = certs;
    d->ncerts = d->conf.ncerts;

    for (i = 0; i < d->ncerts; i++) {
        pgd_cert_status(d, &d->certs[i]);
    }
}


/*
 * A certificate the daemon has not seen as configured: a placeholder when
 * its files are missing, then what its fullchain says, then a plan.
 */
static void
pgd_cert_load(pgd_t *d, pgd_cert_t *c, int names_changed)
{
    int          written, broken;
    char        *pem, *key, *names[PG_CONF_CERT_NAMES];
    char         buf[sizeof(c->conf.names)];
    size_t       len, key_len, n;
    pg_error_t   err;

    key = NULL;

    memcpy(buf, c->conf.names, sizeof(buf));
    n = pgd_names_split(buf, names, PG_CONF_CERT_NAMES);
    written = 0;

    if (pg_cert_placeholder(c->conf.fullchain, c->conf.privkey,
                            c->conf.key_type, names, n, &written, &err)
        != PG_OK)
    {
        pgd_log(d, PG_LOG_ERROR, "certificate %s: %s", c->conf.name,
                err.text);
        snprintf(c->last_error, sizeof(c->last_error), "%s", err.text);
        c->last_error_at = time(NULL);

    } else if (written) {
        pgd_log(d, PG_LOG_NOTICE, "certificate %s: no pair yet, wrote a "
                "self-signed placeholder to %s so that nginx can start; "
                "the first issuance replaces it", c->conf.name,
                c->conf.fullchain);
    }

    c->have_info = 0;
    broken = 0;

    if (pg_cert_read_file(c->conf.fullchain, &pem, &len, &err) == PG_OK) {
        if (pg_cert_info(pem, len, &c->info, &err) == PG_OK) {
            c->have_info = 1;
            c->placeholder = c->info.self_signed;
        }

        /* a pair nginx cannot serve (a corrupt or foreign key, a name
         * missing, expired) is replaced now, not at its renewal time */
        if (c->have_info && !c->placeholder) {
            if (pg_cert_read_file(c->conf.privkey, &key, &key_len, &err)
                    != PG_OK
                || pg_cert_check_pair(pem, len, key, key_len, names, n,
                                      time(NULL), &err) != PG_OK)
            {
                broken = 1;
                pgd_log(d, PG_LOG_WARN, "certificate %s: the pair in place "
                        "(%s, %s) cannot serve, a new one is issued now: %s",
                        c->conf.name, c->conf.fullchain, c->conf.privkey,
                        err.text);
            }

            if (key != NULL) {
                OPENSSL_cleanse(key, key_len);
                free(key);
            }
        }

        free(pem);
    }

    c->next_at = time(NULL);

    if (!c->have_info) {
        c->next_why = "first issuance (no certificate can be read)";

    } else if (broken) {
        c->next_why = "reissue (the pair in place cannot serve)";

    } else if (c->placeholder) {
        c->next_why = "first issuance (the placeholder is in place)";

    } else if (names_changed) {
        c->next_why = "reissue (the configuration changed)";

    } else {
        pgd_cert_plan(d, c);
    }
}


/* The plan for a certificate in place: its renewal time (no ARI). */
static void
pgd_cert_plan(pgd_t *d, pgd_cert_t *c)
{
    double  jitter;
    time_t  now;

    now = time(NULL);
    jitter = 2.0 * rand() / (double) RAND_MAX - 1.0;

    c->next_at = pg_cert_renew_at(c->info.not_before, c->info.not_after,
                                  jitter);
    c->next_why = "renewal";

    if (c->next_at < now) {
        c->next_at = now;
    }
}


/* Every tick: asks from the CLI, the job to start, statuses. */
void
pgd_certs_tick(pgd_t *d)
{
    int          state, edge_up;
    size_t       i;
    time_t       now;
    pgd_cert_t  *c;

    if (d->ncerts == 0) {
        return;
    }

    pgd_certs_renew_asked(d);

    /* now and then, so that cert status shows a live controller, and a
     * Redis that came back (or was flushed) gets the statuses again */
    now = time(NULL);

    for (i = 0; i < d->ncerts; i++) {
        if (now >= d->certs[i].status_at + PGD_STATUS_EVERY) {
            pgd_cert_status(d, &d->certs[i]);
        }
    }

    pthread_mutex_lock(&d->worker.lock);
    state = d->worker.state;
    pthread_mutex_unlock(&d->worker.lock);

    if (state != PGD_JOB_IDLE) {
        return;
    }

    now = time(NULL);

    /* the CA asks an edge for the token: none answers yet (at the
     * start, nginx may come up after the daemon), no order yet */
    edge_up = 0;

    for (i = 0; i < d->nedges; i++) {
        edge_up |= d->edges[i].state == PGD_UP;
    }

    for (i = 0; i < d->ncerts; i++) {
        c = &d->certs[i];

        if (now >= c->next_at
            && (c->conf.issuer != PG_CONF_ISSUER_ACME || edge_up))
        {
            pgd_certs_give(d, c, PGD_JOB_ISSUE);
            return;
        }
    }

    /* ARI: the CA's window, asked again every few hours */
    for (i = 0; i < d->ncerts; i++) {
        c = &d->certs[i];

        if (c->conf.issuer == PG_CONF_ISSUER_ACME && c->have_info
            && !c->placeholder && c->info.ari_id[0] != '\0' && c->ari != 0
            && now >= c->ari_at + PGD_ARI_EVERY)
        {
            c->ari_at = now;
            pgd_certs_give(d, c, PGD_JOB_ARI);
            return;
        }
    }
}


/* The job for c, to the idle worker. */
static void
pgd_certs_give(pgd_t *d, pgd_cert_t *c, int kind)
{
    pgd_job_t  *job;

    pthread_mutex_lock(&d->worker.lock);

    job = &d->worker.job;
    memset(job, 0, sizeof(pgd_job_t));
    job->kind = kind;
    memcpy(job->name, c->conf.name, sizeof(job->name));
    job->conf = c->conf;
    memcpy(job->state_dir, d->conf.state_dir, sizeof(job->state_dir));
    memcpy(job->nginx, d->conf.nginx, sizeof(job->nginx));
    job->nnginx = d->conf.nnginx;
    job->redis = d->conf.redis;
    memcpy(job->prefix, d->conf.prefix, sizeof(job->prefix));
    job->log_level = d->conf.log_level;

    if (c->have_info && !c->placeholder) {
        memcpy(job->ari_id, c->info.ari_id, sizeof(job->ari_id));
    }

    d->worker.cancel = 0;
    d->worker.state = PGD_JOB_GIVEN;
    pthread_cond_broadcast(&d->worker.cond);

    pthread_mutex_unlock(&d->worker.lock);

    if (kind == PGD_JOB_ISSUE) {
        pgd_log(d, PG_LOG_INFO, "certificate %s: %s from %s starts",
                c->conf.name, c->next_why,
                c->conf.issuer == PG_CONF_ISSUER_ACME ? c->conf.acme
                                                      : c->conf.ca_cert);
    }
}


/* The worker's result, when there is one. */
void
pgd_certs_collect(pgd_t *d)
{
    char          drain[16], when[32];
    size_t        i;
    time_t        now;
    pgd_job_t     job;
    pgd_cert_t   *c;

    while (d->worker.running && read(d->worker.wake[0], drain,
                                     sizeof(drain)) > 0)
    {
        /* the state says */
    }

    pthread_mutex_lock(&d->worker.lock);

    if (d->worker.state != PGD_JOB_DONE) {
        pthread_mutex_unlock(&d->worker.lock);
        return;
    }

    job = d->worker.job;
    d->worker.state = PGD_JOB_IDLE;
    pthread_mutex_unlock(&d->worker.lock);

    c = NULL;

    for (i = 0; i < d->ncerts; i++) {
        if (strcmp(d->certs[i].conf.name, job.name) == 0) {
            c = &d->certs[i];
            break;
        }
    }

    if (c == NULL) {
        pgd_log(d, PG_LOG_NOTICE, "certificate %s: removed from the "
                "configuration; its job's result is dropped", job.name);
        return;
    }

    now = time(NULL);

    if (job.kind == PGD_JOB_ARI) {
        if (job.rc == PG_OK) {
            c->ari = 1;
            c->next_at = pg_cert_ari_pick(job.ari_start, job.ari_end, now,
                                          rand() / ((double) RAND_MAX + 1));
            c->next_why = "renewal (in the window the CA suggests)";
            pgd_time_text(c->next_at, when, sizeof(when));
            pgd_log(d, PG_LOG_INFO, "certificate %s: the CA suggests "
                    "renewing it by its renewalInfo: next renewal at %s",
                    c->conf.name, when);

        } else if (job.rc == PG_DECLINED) {
            c->ari = 0;

        } else {
            pgd_log(d, PG_LOG_WARN, "certificate %s: cannot ask the CA's "
                    "renewalInfo, the plan stays: %s", c->conf.name,
                    job.err.text);
        }

        pgd_cert_status(d, c);
        return;
    }

    c->attempts++;

    if (job.rc == PG_OK) {
        c->info = job.info;
        c->have_info = 1;
        c->placeholder = 0;
        c->failures = 0;
        c->last_error[0] = '\0';
        c->issued_at = now;
        c->ari = -1;
        c->ari_at = 0;
        pgd_cert_plan(d, c);

        pgd_time_text(c->info.not_after, when, sizeof(when));
        pgd_log(d, PG_LOG_NOTICE, "certificate %s: issued by %s, serial %s, "
                "valid until %s, installed and nginx %s in %.1f s",
                c->conf.name, c->info.issuer, c->info.serial, when,
                job.not_reloaded ? "NOT reloaded" : "reloaded",
                job.took_ms / 1000);

        if (job.not_reloaded) {
            snprintf(c->last_error, sizeof(c->last_error), "%s",
                     job.err.text);
            c->last_error_at = now;
            pgd_log(d, PG_LOG_WARN, "certificate %s: %s", c->conf.name,
                    job.err.text);
        }
        pgd_time_text(c->next_at, when, sizeof(when));
        pgd_log(d, PG_LOG_INFO, "certificate %s: next renewal at %s",
                c->conf.name, when);

    } else {
        c->failures++;
        snprintf(c->last_error, sizeof(c->last_error), "%s", job.err.text);
        c->last_error_at = now;
        c->next_at = pg_cert_retry_at(now, c->failures, job.retry_after);
        c->next_why = "retry";

        pgd_time_text(c->next_at, when, sizeof(when));
        pgd_log(d, PG_LOG_ERROR, "certificate %s: failed (%u in a row), the "
                "current certificate stays; next attempt at %s: %s",
                c->conf.name, c->failures, when, job.err.text);
    }

    pgd_cert_status(d, c);
}


/* When the loop must wake for a certificate; 0 for never. In ms, as
 * pgd_now(). */
double
pgd_certs_wake_at(pgd_t *d)
{
    size_t  i;
    time_t  first;

    first = 0;

    for (i = 0; i < d->ncerts; i++) {
        if (first == 0 || d->certs[i].next_at < first) {
            first = d->certs[i].next_at;
        }
    }

    return first ? (double) first * 1000 : 0;
}


/* The end: the worker's waits are cut short, and it is joined. */
void
pgd_certs_stop(pgd_t *d)
{
    pgd_worker_t  *w;

    w = &d->worker;

    if (w->running) {
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

    free(d->certs);
    d->certs = NULL;
    d->ncerts = 0;
}


/* `portal-gatectl cert renew NAME`: P"cert:renew" holds the names asked. */
static void
pgd_certs_renew_asked(pgd_t *d)
{
    size_t       i, j;
    char         key[PG_STORE_PREFIX_MAX + 32];
    redisReply  *r, *del;

    if (d->cmd == NULL) {
        return;
    }

    d->renew_wanted = 0;
    snprintf(key, sizeof(key), "%s%s", d->conf.prefix, PGD_KEY_CERT_RENEW);

    r = redisCommand(d->cmd, "HKEYS %s", key);

    if (r == NULL) {
        pgd_redis_down(d, "reading the certificates asked to renew");
        return;
    }

    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING) {
            continue;
        }

        for (j = 0; j < d->ncerts; j++) {
            if (strcmp(d->certs[j].conf.name, r->element[i]->str) != 0) {
                continue;
            }

            /* ours: taken; another controller's names stay for it */
            del = redisCommand(d->cmd, "HDEL %s %s", key,
                               r->element[i]->str);
            freeReplyObject(del);

            d->certs[j].next_at = time(NULL);
            d->certs[j].next_why = "renewal asked by portal-gatectl";
            pgd_log(d, PG_LOG_NOTICE, "certificate %s: renewal asked "
                    "(portal-gatectl cert renew)", d->certs[j].conf.name);
            pgd_cert_status(d, &d->certs[j]);
        }
    }

    freeReplyObject(r);
}


/*
 * P"certs" NAME = {"name", "names", "issuer", "serial", "not_before",
 * "not_after", "next_renewal", "next_why", "last_error", "last_error_at",
 * "failures", "attempts", "placeholder", "issued_at", "host",
 * "updated_at"}; times
 * in ISO 8601 UTC, null when unknown.
 */
static void
pgd_cert_status(pgd_t *d, pgd_cert_t *c)
{
    char        *text, t[32], issuer[PG_CONF_PATH_MAX + 16];
    char         key[PG_STORE_PREFIX_MAX + 32];
    json_t      *o, *names;
    size_t       i, n;
    char        *list[PG_CONF_CERT_NAMES];
    char         buf[sizeof(c->conf.names)];
    redisReply  *r;

    if (d->cmd == NULL) {
        return;
    }

    memcpy(buf, c->conf.names, sizeof(buf));
    n = pgd_names_split(buf, list, PG_CONF_CERT_NAMES);
    names = json_array();

    for (i = 0; names != NULL && i < n; i++) {
        json_array_append_new(names, json_string(list[i]));
    }

    snprintf(issuer, sizeof(issuer), "%s %s",
             c->conf.issuer == PG_CONF_ISSUER_ACME ? "acme" : "local",
             c->conf.issuer == PG_CONF_ISSUER_ACME ? c->conf.acme
                                                   : c->conf.ca_cert);

    o = json_pack("{s:s, s:o, s:s, s:s, s:s, s:s, s:i, s:I, s:b}",
                  "name", c->conf.name,
                  "names", names ? names : json_array(),
                  "issuer", issuer,
                  "fullchain", c->conf.fullchain,
                  "host", d->host,
                  "next_why", c->next_why ? c->next_why : "",
                  "failures", (int) c->failures,
                  "attempts", (json_int_t) c->attempts,
                  "placeholder", c->placeholder || !c->have_info);

    if (o == NULL) {
        return;
    }

#define PGD_SET_TIME(k, v)                                                   \
    if ((v) != 0) {                                                          \
        pgd_time_text(v, t, sizeof(t));                                      \
        json_object_set_new(o, k, json_string(t));                           \
    } else {                                                                 \
        json_object_set_new(o, k, json_null());                              \
    }

    json_object_set_new(o, "serial", c->have_info
                        ? json_string(c->info.serial) : json_null());
    json_object_set_new(o, "issued_by", c->have_info
                        ? json_string(c->info.issuer) : json_null());
    PGD_SET_TIME("not_before", c->have_info ? c->info.not_before : 0);
    PGD_SET_TIME("not_after", c->have_info ? c->info.not_after : 0);
    PGD_SET_TIME("next_renewal", c->next_at);
    PGD_SET_TIME("issued_at", c->issued_at);
    PGD_SET_TIME("last_error_at", c->last_error_at);
    PGD_SET_TIME("updated_at", time(NULL));
    json_object_set_new(o, "last_error", c->last_error[0]
                        ? json_string(c->last_error) : json_null());

#undef PGD_SET_TIME

    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);

    if (text == NULL) {
        return;
    }

    c->status_at = time(NULL);

    snprintf(key, sizeof(key), "%s%s", d->conf.prefix, PGD_KEY_CERTS);
    r = redisCommand(d->cmd, "HSET %s %s %s", key, c->conf.name, text);
    free(text);

    if (r == NULL) {
        pgd_redis_down(d, "writing a certificate's status");
        return;
    }

    freeReplyObject(r);
}


/* A certificate no longer configured: its status goes. */
static void
pgd_cert_status_drop(pgd_t *d, const char *name)
{
    char         key[PG_STORE_PREFIX_MAX + 32];
    redisReply  *r;

    if (d->cmd == NULL) {
        return;
    }

    snprintf(key, sizeof(key), "%s%s", d->conf.prefix, PGD_KEY_CERTS);
    r = redisCommand(d->cmd, "HDEL %s %s", key, name);

    if (r == NULL) {
        pgd_redis_down(d, "removing a certificate's status");
        return;
    }

    freeReplyObject(r);
}


/* t as ISO 8601 UTC. */
static void
pgd_time_text(time_t t, char *buf, size_t size)
{
    struct tm  tm;

    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}


/* names (space-separated, changed in place) into out. */
static size_t
pgd_names_split(char *names, char **out, size_t max)
{
    size_t  n;
    char   *p, *save;

    n = 0;

    for (p = strtok_r(names, " ", &save); p != NULL && n < max;
         p = strtok_r(NULL, " ", &save))
    {
        out[n++] = p;
    }

    return n;
}


/* --- the worker --------------------------------------------------------- */

static void *
pgd_worker_main(void *arg)
{
    pgd_t         *d;
    sigset_t       all;
    pgd_job_t      job;
    pgd_worker_t  *w;

    d = arg;
    w = &d->worker;

    /* signals are the loop's: it unblocks them only while it waits */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);

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
    char            path[PG_CONF_PATH_MAX + 64];
    double          start;
    pgd_job_ctx_t   ctx;
    pg_acme_conf_t  acme;

    start = pgd_now();
    job->rc = PG_ERR;

    if (job->kind == PGD_JOB_ISSUE) {
        job->rc = pgd_job_issue(d, job);

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
    char             path[PG_CONF_PATH_MAX + 64];
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
        for (i = 0; i < job->nnginx; i++) {
            nginx[i].conf = job->nginx[i].conf;
            nginx[i].pid = job->nginx[i].pid;
            nginx[i].binary = job->nginx[i].binary;
            nginx[i].prefix = job->nginx[i].prefix[0] ? job->nginx[i].prefix
                                                      : NULL;
            nginx[i].timeout = 0;
        }

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
    }

    if (key_pem != NULL) {
        OPENSSL_cleanse(key_pem, key_len);
        free(key_pem);
    }

    free(chain);
    EVP_PKEY_free(key);

    return rc;
}


/*
 * The ACME account's key: STATE_DIR/acme/HOST/account.key, one account
 * per CA (the directory URL's host and port), made by pg_acme at 0600 on
 * first use; the folders are made here, 0700.
 */
static int
pgd_job_account_key(pgd_job_t *job, char *path, size_t size)
{
    char        host[256], *p;
    size_t      i;
    const char  *u;

    u = job->conf.acme + sizeof("https://") - 1;

    for (i = 0; u[i] && u[i] != '/' && i + 1 < sizeof(host); i++) {
        host[i] = (u[i] == ':') ? '_' : u[i];
    }

    host[i] = '\0';

    snprintf(path, size, "%s/acme/%s/account.key", job->state_dir, host);

    /* each folder of the path, below the state_dir's parent */
    for (p = path + 1; *p; p++) {
        if (*p != '/') {
            continue;
        }

        *p = '\0';

        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(job->err.text, sizeof(job->err.text), "cannot make "
                     "%s for the ACME account's key: %s", path,
                     strerror(errno));
            *p = '/';
            return PG_ERR;
        }

        *p = '/';
    }

    return PG_OK;
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
    char             key[PG_STORE_PREFIX_MAX + 32];
    uint64_t         want;
    pgd_job_ctx_t   *c;
    redisReply      *r;
    struct timespec  until;

    c = ctx;

    if (c->redis == NULL) {
        c->redis = pg_redis_connect(&c->job->redis, PGD_REDIS_TIMEOUT_MS,
                                    err);

        if (c->redis == NULL) {
            return PG_ERR;
        }
    }

    snprintf(key, sizeof(key), "%s%s", c->job->prefix, PGD_KEY_CHALLENGES);

    r = add ? redisCommand(c->redis, "HSET %s %s %s", key, token,
                           key_authorization)
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
                     PGD_MSG_CHALLENGES);
    freeReplyObject(r);

    if (!add) {
        return PG_OK;
    }

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PGD_CHALLENGE_WAIT_MS / 1000;

    pthread_mutex_lock(&c->worker->lock);

    while (c->worker->chal_done < want && !c->worker->cancel) {
        if (pthread_cond_timedwait(&c->worker->cond, &c->worker->lock,
                                   &until) != 0)
        {
            break;                      /* the CA will say what it saw */
        }
    }

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
