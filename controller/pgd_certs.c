/*
 * pgd_certs.c: the staging certificates (DESIGN.md, "Staging
 * certificates"), the loop's side; the worker thread is pgd_certs_job.c.
 *
 * The loop owns the schedule: at the start, and at each SIGHUP, every
 * certificate of the config gets a placeholder pair when it has none (so
 * that nginx can start), and a time for its next attempt:
 *   - now, for a placeholder, a pair that cannot serve (unreadable, a key
 *     that does not match, a name missing, expired), another issuer than
 *     the one that issued the pair, or a configuration that changed;
 *   - the window the CA suggests (ARI, RFC 9773), when it offers one;
 *   - else 2/3 of the lifetime (1/2 for 10 days or less), +-2% jitter;
 *   - after a failure: 1 min, 10 min, 100 min, then daily, never before
 *     the CA's Retry-After;
 *   - now, when `portal-gatectl cert renew NAME` asks (P"cert:renew").
 * The current pair stays in place throughout: only a successful install
 * replaces it (pg_cert_install.h checks the pair, runs nginx -t, and puts
 * the previous files back when that fails).
 *
 * An ACME order starts only while Redis is up (the tokens travel through
 * it) and an edge answers (the CA asks one for the token). The loop never
 * waits for the worker: it hands a job over, and the wake pipe says when
 * the result is there.
 *
 * Each certificate's state goes to Redis (P"certs", "NAME@HOST" -> JSON)
 * so that `portal-gatectl cert status` works from any host, and shows each
 * controller that manages a name. Every issuance, renewal, failure and
 * next attempt is one line of the log.
 */

#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* calloc, free, rand, strtoll */
#include <string.h>             /* strcmp, memcpy, strtok_r */
#include <unistd.h>             /* read */
#include <openssl/crypto.h>     /* OPENSSL_cleanse */
#include "pgd.h"                /* the daemon */
#include "pg_acme.h"            /* PG_DECLINED: a CA without renewalInfo */
#include "pg_cert_install.h"    /* pg_cert_placeholder, pg_cert_reload_all */


static void pgd_cert_load(pgd_t *d, pgd_cert_t *c, int changed);
static int pgd_cert_check_files(pgd_t *d, pgd_cert_t *c, char **names,
    size_t n);
static void pgd_cert_plan(pgd_t *d, pgd_cert_t *c);
static void pgd_cert_now(pgd_cert_t *c, const char *why);
static int pgd_cert_can_start(pgd_t *d, pgd_cert_t *c);
static void pgd_certs_collect_reload(pgd_t *d, pgd_cert_t *c,
    pgd_job_t *job);
static void pgd_cert_status(pgd_t *d, pgd_cert_t *c);
static void pgd_cert_status_drop(pgd_t *d, const char *name);
static void pgd_certs_sweep(pgd_t *d);
static void pgd_certs_give(pgd_t *d, pgd_cert_t *c, int kind);
static void pgd_certs_collect_ari(pgd_t *d, pgd_cert_t *c, pgd_job_t *job);
static void pgd_certs_collect_issue(pgd_t *d, pgd_cert_t *c,
    pgd_job_t *job);
static void pgd_text_clean(char *s);
static uint64_t pgd_text_hash(const char *s);


/* --- configuration ------------------------------------------------------ */

/* The worker, then the certificates of the config. */
int
pgd_certs_start(pgd_t *d)
{
    if (pgd_worker_start(d) != PG_OK) {
        return PG_ERR;
    }

    /* the edges may hold tokens of an order a restart cut short */
    d->chal_wanted = 1;

    pgd_certs_configure(d);

    return PG_OK;
}


/* Every field of the block but where it is: a change means a reissue. */
int
pgd_cert_conf_same(const pg_conf_cert_t *a, const pg_conf_cert_t *b)
{
    size_t  i;

    if (strcmp(a->names, b->names) != 0 || a->issuer != b->issuer
        || strcmp(a->acme, b->acme) != 0
        || strcmp(a->ca_cert, b->ca_cert) != 0
        || strcmp(a->ca_key, b->ca_key) != 0
        || strcmp(a->acme_ca, b->acme_ca) != 0
        || a->ncontacts != b->ncontacts || a->key_type != b->key_type
        || strcmp(a->profile, b->profile) != 0
        || strcmp(a->fullchain, b->fullchain) != 0
        || strcmp(a->privkey, b->privkey) != 0)
    {
        return 0;
    }

    for (i = 0; i < a->ncontacts; i++) {
        if (strcmp(a->contact[i], b->contact[i]) != 0) {
            return 0;
        }
    }

    return 1;
}


/* "acme URL" or "local CA-FILE": what cert status shows, and the first
 * line of the record in state_dir. */
void
pgd_cert_issuer_text(const pg_conf_cert_t *conf, char *buf, size_t size)
{
    snprintf(buf, size, "%s %s",
             conf->issuer == PG_CONF_ISSUER_ACME ? "acme" : "local",
             conf->issuer == PG_CONF_ISSUER_ACME ? conf->acme
                                                 : conf->ca_cert);
}


/*
 * STATE_DIR/certs/NAME.issuer: the issuer's line, then what else of the
 * block the pair was issued under (key type, profile, CA key, acme_ca,
 * contacts): a start that finds another block than the pair's reissues,
 * as a SIGHUP does (names are checked against the certificate itself).
 */
void
pgd_cert_record_text(const pg_conf_cert_t *conf, char *buf, size_t size)
{
    size_t  i, len;

    pgd_cert_issuer_text(conf, buf, size);
    len = strlen(buf);
    len += (size_t) snprintf(buf + len, len < size ? size - len : 0,
                             "\nkey_type %d\nprofile %s\nca_key %s\n"
                             "acme_ca %s\ncontact", conf->key_type,
                             conf->profile, conf->ca_key, conf->acme_ca);

    for (i = 0; i < conf->ncontacts && len < size; i++) {
        len += (size_t) snprintf(buf + len, size - len, " %s",
                                 conf->contact[i]);
    }
}


/*
 * d->conf.certs as they are now (the start, or a SIGHUP): a certificate
 * whose block is the same keeps its state; a new or changed one gets a
 * placeholder when it has no files, and a plan. A job in flight for a
 * certificate removed or changed is cancelled: its result is dropped, or
 * replaced by a reissue for the new block (pgd_certs_collect()).
 */
void
pgd_certs_configure(pgd_t *d)
{
    size_t       i, j;
    pgd_cert_t  *certs, *old;

    certs = calloc(d->conf.ncerts ? d->conf.ncerts : 1, sizeof(pgd_cert_t));

    if (certs == NULL) {
        pgd_log(d, PG_LOG_ERROR, "certificates: out of memory");
        return;
    }

    for (i = 0; i < d->conf.ncerts; i++) {
        old = NULL;

        for (j = 0; j < d->ncerts; j++) {
            if (strcmp(d->certs[j].conf.name, d->conf.certs[i].name) == 0) {
                old = &d->certs[j];
                break;
            }
        }

        if (old != NULL && pgd_cert_conf_same(&old->conf,
                                              &d->conf.certs[i]))
        {
            certs[i] = *old;
            certs[i].conf = d->conf.certs[i];
            continue;
        }

        certs[i].conf = d->conf.certs[i];
        certs[i].ari = -1;

        if (old != NULL) {
            /* what the CLI watches goes on */
            certs[i].attempts = old->attempts;
            certs[i].renew_init = old->renew_init;
            certs[i].renew_seen = old->renew_seen;
        }

        pgd_cert_load(d, &certs[i], old != NULL);
    }

    pthread_mutex_lock(&d->worker.lock);

    if (d->worker.state == PGD_JOB_GIVEN) {
        for (i = 0; i < d->conf.ncerts; i++) {
            if (strcmp(certs[i].conf.name, d->worker.job.name) == 0
                && pgd_cert_conf_same(&certs[i].conf, &d->worker.job.conf))
            {
                break;
            }
        }

        if (i == d->conf.ncerts) {
            d->worker.cancel = 1;
            pthread_cond_broadcast(&d->worker.cond);
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
    d->certs_swept = 0;

    /* the asks already in Redis are not for this start: read them first */
    pgd_certs_renew_asked(d);

    for (i = 0; i < d->ncerts; i++) {
        pgd_cert_status(d, &d->certs[i]);
    }
}


/*
 * A certificate the daemon has not seen as configured (the start, a new
 * or changed block): a placeholder when its files are missing, then what
 * the pair in place is, then a plan.
 */
static void
pgd_cert_load(pgd_t *d, pgd_cert_t *c, int changed)
{
    int          written, usable, busy;
    char        *names[PG_CONF_CERT_NAMES];
    char         buf[sizeof(c->conf.names)];
    size_t       n;
    pg_error_t   err;

    memcpy(buf, c->conf.names, sizeof(buf));
    n = pgd_names_split(buf, names, PG_CONF_CERT_NAMES);
    written = 0;

    /*
     * An install cut short (a crash, a power loss between the key and the
     * chain) leaves a pair nginx cannot start with: undone first, unless
     * the worker is installing to these files right now.
     */
    pthread_mutex_lock(&d->worker.lock);
    busy = d->worker.state != PGD_JOB_IDLE
           && (strcmp(d->worker.job.name, c->conf.name) == 0
               || strcmp(d->worker.job.conf.fullchain, c->conf.fullchain) == 0
               || strcmp(d->worker.job.conf.privkey, c->conf.privkey) == 0);
    pthread_mutex_unlock(&d->worker.lock);

    if (!busy) {
        switch (pg_cert_recover(c->conf.fullchain, c->conf.privkey, &err)) {
        case PG_CERT_RECOVERED:
            pgd_log(d, PG_LOG_WARN, "certificate %s: %s", c->conf.name,
                    err.text);
            break;

        case PG_ERR:
            pgd_log(d, PG_LOG_ERROR, "certificate %s: %s", c->conf.name,
                    err.text);
            break;

        default:
            break;
        }
    }

    /* ECDSA whatever key_type says: a placeholder is thrown away, and an
     * RSA key costs the loop ~0.2 s (a SIGHUP adding 16 of them, 3 s) */
    if (pg_cert_placeholder(c->conf.fullchain, c->conf.privkey,
                            PG_CERT_KEY_ECDSA, names, n, &written, &err)
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

    usable = pgd_cert_check_files(d, c, names, n);

    if (!c->have_info) {
        pgd_cert_now(c, "first issuance (no certificate can be read)");

    } else if (c->placeholder) {
        pgd_cert_now(c, "first issuance (the placeholder is in place)");

    } else if (!usable) {
        pgd_cert_now(c, "reissue (the pair in place cannot serve)");

    } else if (changed) {
        pgd_cert_now(c, "reissue (the configuration changed)");

    } else if (!c->issuer_same && c->issuer_known) {
        pgd_cert_now(c, "reissue (another issuer is configured)");

    } else if (!c->block_same && c->issuer_known) {
        pgd_cert_now(c, "reissue (the configuration changed)");

    } else {
        pgd_cert_plan(d, c);
    }
}


/*
 * What the pair in place is: c->info from the fullchain, c->placeholder,
 * whether it was issued by the issuer configured (c->issuer_same, from
 * its record in state_dir), and whether nginx can serve it for the names
 * (1) or not (0: a corrupt or foreign key, a name missing, expired).
 */
static int
pgd_cert_check_files(pgd_t *d, pgd_cert_t *c, char **names, size_t n)
{
    int          usable;
    char        *pem, *key, *rec;
    char         path[PG_CONF_PATH_MAX + 300];
    char         want[PGD_RECORD_MAX];
    size_t       len, key_len, rec_len;
    pg_error_t   err;

    c->have_info = 0;
    c->issuer_same = 0;
    c->issuer_known = 0;
    c->block_same = 0;
    usable = 1;
    key = NULL;

    if (pg_cert_read_file(c->conf.fullchain, &pem, &len, &err) != PG_OK) {
        return 0;
    }

    if (pg_cert_info(pem, len, &c->info, &err) == PG_OK) {
        c->have_info = 1;
        c->placeholder = c->info.self_signed;
    }

    if (c->have_info && !c->placeholder) {
        if (pg_cert_read_file(c->conf.privkey, &key, &key_len, &err)
                != PG_OK
            || pg_cert_check_pair(pem, len, key, key_len, names, n,
                                  time(NULL), &err) != PG_OK)
        {
            usable = 0;
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

    /* who issued it, as recorded at its install (pgd_certs_job.c) */
    snprintf(path, sizeof(path), "%s/certs/%s.issuer", d->conf.state_dir,
             c->conf.name);

    if (pg_cert_read_file(path, &rec, &rec_len, &err) == PG_OK) {
        pgd_cert_issuer_text(&c->conf, want, sizeof(want));
        c->issuer_known = 1;
        c->issuer_same = strncmp(rec, want, strlen(want)) == 0
                         && (rec[strlen(want)] == '\n'
                             || rec[strlen(want)] == '\0');
        pgd_cert_record_text(&c->conf, want, sizeof(want));
        c->block_same = strcmp(rec, want) == 0;
        free(rec);
    }

    return usable;
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
    c->planned = 1;

    if (c->next_at < now) {
        c->next_at = now;
    }
}


/* An attempt now, for why; no window from the CA moves it. */
static void
pgd_cert_now(pgd_cert_t *c, const char *why)
{
    c->next_at = time(NULL);
    c->next_why = why;
    c->planned = 0;
}


/* --- the loop ----------------------------------------------------------- */

/*
 * May c's order start now? An ACME order needs Redis (the tokens travel
 * through it) and an edge that answers (the CA asks one): at the start,
 * nginx may come up after the daemon. The local CA needs neither.
 */
static int
pgd_cert_can_start(pgd_t *d, pgd_cert_t *c)
{
    size_t  i;

    if (c->conf.issuer != PG_CONF_ISSUER_ACME) {
        return 1;
    }

    if (d->cmd == NULL || d->redis_state != PGD_UP) {
        return 0;
    }

    for (i = 0; i < d->nedges; i++) {
        if (d->edges[i].state == PGD_UP) {
            return 1;
        }
    }

    return 0;
}


/*
 * `portal-gatectl cert renew NAME` sets P"cert:renew" NAME to a new value
 * (its time and pid); every controller that manages NAME renews when the
 * value changes, and none takes it away from the others. The first read
 * after the daemon starts only notes the values: an ask older than this
 * daemon was for the one before.
 */
void
pgd_certs_renew_asked(pgd_t *d)
{
    int          asked;
    size_t       i, j;
    char         key[PG_STORE_PREFIX_MAX + 32];
    uint64_t     seen;
    const char  *value;
    pgd_cert_t  *c;
    redisReply  *r;

    d->renew_wanted = 0;

    if (d->cmd == NULL || d->ncerts == 0) {
        return;
    }

    snprintf(key, sizeof(key), "%s%s", d->conf.prefix, PG_STORE_KEY_CERT_RENEW);

    r = redisCommand(d->cmd, "HGETALL %s", key);

    if (r == NULL) {
        pgd_redis_down(d, "reading the certificates asked to renew");
        return;
    }

    for (j = 0; j < d->ncerts; j++) {
        c = &d->certs[j];
        value = "";

        for (i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements;
             i += 2)
        {
            if (r->element[i]->type == REDIS_REPLY_STRING
                && r->element[i + 1]->type == REDIS_REPLY_STRING
                && strcmp(r->element[i]->str, c->conf.name) == 0)
            {
                value = r->element[i + 1]->str;
                break;
            }
        }

        /* an ask is new when its value changed since the last read; at
         * the first read, when it was made after this daemon started (the
         * CLI writes its time first) */
        seen = pgd_text_hash(value);
        asked = value[0] != '\0'
                && (c->renew_init ? seen != c->renew_seen
                                  : strtoll(value, NULL, 10)
                                    >= (long long) d->started);

        c->renew_seen = seen;
        c->renew_init = 1;

        if (asked) {
            pgd_cert_now(c, "renewal asked by portal-gatectl");
            pgd_log(d, PG_LOG_NOTICE, "certificate %s: renewal asked "
                    "(portal-gatectl cert renew)", c->conf.name);
            pgd_cert_status(d, c);
        }
    }

    freeReplyObject(r);
}


/* Every tick, and when a certificate is due: statuses, SIGHUPs owed, the
 * job to start. */
void
pgd_certs_tick(pgd_t *d)
{
    int          state;
    size_t       i;
    time_t       now;
    pgd_cert_t  *c;

    now = time(NULL);

    if (!d->certs_swept && d->cmd != NULL) {
        pgd_certs_sweep(d);
    }

    /* now and then, so that cert status shows a live controller, and a
     * Redis that came back (or was flushed) gets the statuses again */
    for (i = 0; i < d->ncerts && d->cmd != NULL; i++) {
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

    /* a reload owed, by the worker: `BINARY -s reload` may hang, and the
     * loop must go on serving /healthz and taking SIGTERM meanwhile */
    for (i = 0; i < d->ncerts; i++) {
        if (d->certs[i].reload_tries > 0 && now >= d->certs[i].reload_at) {
            d->certs[i].reload_tries--;
            d->certs[i].reload_at = now + PGD_RELOAD_EVERY;
            pgd_certs_give(d, &d->certs[i], PGD_JOB_RELOAD);
            return;
        }
    }

    for (i = 0; i < d->ncerts; i++) {
        c = &d->certs[i];

        if (now < c->next_at) {
            continue;
        }

        if (pgd_cert_can_start(d, c)) {
            c->held_said = 0;
            pgd_certs_give(d, c, PGD_JOB_ISSUE);
            return;
        }

        /* due, and held: said once, and shown by cert status */
        if (!c->held_said) {
            c->held_said = 1;
            pgd_log(d, PG_LOG_WARN, "certificate %s: %s is due, and waits "
                    "for %s", c->conf.name, c->next_why,
                    d->cmd == NULL || d->redis_state != PGD_UP
                    ? "redis (the challenge tokens travel through it)"
                    : "an edge that answers (the CA asks one)");
            pgd_cert_status(d, c);
        }
    }

    /* ARI: the CA's window, asked again every few hours */
    for (i = 0; i < d->ncerts; i++) {
        c = &d->certs[i];

        if (c->conf.issuer == PG_CONF_ISSUER_ACME && c->have_info
            && !c->placeholder && c->issuer_same
            && c->info.ari_id[0] != '\0' && c->ari != 0
            && now >= c->ari_at + PGD_ARI_EVERY)
        {
            c->ari_at = now;
            pgd_certs_give(d, c, PGD_JOB_ARI);
            return;
        }
    }
}


/*
 * When the loop must wake for a certificate, in wall-clock ms; 0: not for
 * one (the worker is busy, and its pipe wakes the loop; or nothing due can
 * start, and the tick looks again).
 */
double
pgd_certs_wake_at(pgd_t *d)
{
    int          state;
    size_t       i;
    time_t       first;
    pgd_cert_t  *c;

    pthread_mutex_lock(&d->worker.lock);
    state = d->worker.state;
    pthread_mutex_unlock(&d->worker.lock);

    if (state != PGD_JOB_IDLE) {
        return 0;
    }

    first = 0;

    for (i = 0; i < d->ncerts; i++) {
        c = &d->certs[i];

        if (!pgd_cert_can_start(d, c)) {
            continue;
        }

        if (first == 0 || c->next_at < first) {
            first = c->next_at;
        }
    }

    return first ? (double) first * 1000 : 0;
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

    /*
     * `replaces` names the pair in place only when this CA issued it and
     * answered renewalInfo for it: a CA refuses an id of another CA or
     * account, and would refuse every retry with it
     */
    if (c->have_info && !c->placeholder && c->issuer_same
        && (kind == PGD_JOB_ARI || c->ari == 1))
    {
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
    char          drain[16], *names[PG_CONF_CERT_NAMES];
    char          buf[sizeof(d->worker.job.conf.names)];
    size_t        i;
    pgd_job_t    *job;
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

    /* the job is the loop's from here, and no other is given meanwhile */
    job = &d->worker.job;
    pthread_mutex_unlock(&d->worker.lock);

    c = NULL;

    for (i = 0; i < d->ncerts; i++) {
        if (strcmp(d->certs[i].conf.name, job->name) == 0) {
            c = &d->certs[i];
            break;
        }
    }

    if (c == NULL) {
        pgd_log(d, PG_LOG_NOTICE, "certificate %s: removed from the "
                "configuration; its job's result is dropped", job->name);

    } else if (job->kind == PGD_JOB_RELOAD) {
        /* nginx's reload, whatever became of the block meanwhile */
        pgd_certs_collect_reload(d, c, job);

    } else if (!pgd_cert_conf_same(&c->conf, &job->conf)) {
        /* the block changed under the job: what the files are now, and an
         * issuance for the block as it is */
        pgd_log(d, PG_LOG_NOTICE, "certificate %s: its block changed "
                "during the %s; issuing for the new one", job->name,
                job->kind == PGD_JOB_ARI ? "renewalInfo request"
                                         : "issuance");

        if (job->kind == PGD_JOB_ISSUE) {
            c->attempts++;
        }

        memcpy(buf, c->conf.names, sizeof(buf));
        (void) pgd_cert_check_files(d, c, names,
                                    pgd_names_split(buf, names,
                                                    PG_CONF_CERT_NAMES));
        pgd_cert_now(c, "reissue (the configuration changed)");
        pgd_cert_status(d, c);

    } else if (job->kind == PGD_JOB_ARI) {
        pgd_certs_collect_ari(d, c, job);

    } else {
        pgd_certs_collect_issue(d, c, job);
    }

    pthread_mutex_lock(&d->worker.lock);
    d->worker.state = PGD_JOB_IDLE;
    pthread_mutex_unlock(&d->worker.lock);
}


/* The CA's renewalInfo: its window moves a planned renewal, and only that
 * (an ask, a retry or a reissue stays as it is). */
static void
pgd_certs_collect_ari(pgd_t *d, pgd_cert_t *c, pgd_job_t *job)
{
    char    when[32];
    time_t  now, at;

    now = time(NULL);

    if (job->rc == PG_DECLINED) {
        c->ari = 0;
        return;
    }

    if (job->rc != PG_OK) {
        pgd_log(d, PG_LOG_WARN, "certificate %s: cannot ask the CA's "
                "renewalInfo, the plan stays: %s", c->conf.name,
                job->err.text);
        return;
    }

    c->ari = 1;

    if (!c->planned) {
        return;
    }

    at = pg_cert_ari_pick(job->ari_start, job->ari_end, now,
                          c->info.not_before, c->info.not_after,
                          rand() / ((double) RAND_MAX + 1));

    /* a window past the certificate's end is the CA's mistake: the plan
     * stays (it renews well before the end) */
    if (at == PG_CERT_ARI_IGNORED) {
        pgd_log(d, PG_LOG_WARN, "certificate %s: the CA's renewalInfo "
                "window starts after the certificate ends; the plan stays",
                c->conf.name);
        return;
    }

    c->next_at = at;
    c->next_why = "renewal (in the window the CA suggests)";
    pgd_time_text(c->next_at, when, sizeof(when));
    pgd_log(d, PG_LOG_INFO, "certificate %s: the CA suggests renewing it "
            "by its renewalInfo: next renewal at %s", c->conf.name, when);
    pgd_cert_status(d, c);
}


static void
pgd_certs_collect_issue(pgd_t *d, pgd_cert_t *c, pgd_job_t *job)
{
    char    when[32];
    size_t  i, reloads;
    time_t  now;

    now = time(NULL);
    c->attempts++;

    if (job->rc != PG_OK) {
        c->failures++;
        snprintf(c->last_error, sizeof(c->last_error), "%s",
                 job->err.text);
        c->last_error_at = now;
        /* never past the end of the certificate in place */
        c->next_at = pg_cert_retry_at(now, c->failures, job->retry_after,
                                      c->have_info && !c->placeholder
                                      ? c->info.not_after : 0);
        c->next_why = "retry";
        c->planned = 0;

        pgd_time_text(c->next_at, when, sizeof(when));
        pgd_log(d, PG_LOG_ERROR, "certificate %s: failed (%u in a row), the "
                "current certificate stays; next attempt at %s: %s",
                c->conf.name, c->failures, when, job->err.text);
        pgd_cert_status(d, c);
        return;
    }

    c->info = job->info;
    c->have_info = 1;
    c->placeholder = 0;
    c->issuer_same = 1;
    c->issuer_known = 1;
    c->block_same = 1;
    c->failures = 0;
    c->last_error[0] = '\0';
    c->last_error_at = 0;
    c->issued_at = now;
    c->ari = -1;
    c->ari_at = 0;
    c->reload_tries = 0;
    pgd_cert_plan(d, c);

    pgd_time_text(c->info.not_after, when, sizeof(when));
    for (i = 0, reloads = 0; i < job->nnginx; i++) {
        reloads += job->nginx[i].reload;
    }

    pgd_log(d, PG_LOG_NOTICE, "certificate %s: issued by %s, serial %s, "
            "valid until %s, installed and %s in %.1f s", c->conf.name,
            c->info.issuer, c->info.serial, when,
            job->nnginx == 0 ? "no nginx line to reload"
            : job->not_reloaded ? "nginx NOT reloaded"
            : reloads == 0 ? "checked by nginx -t (reload=off: nginx reads "
                             "it at the next handshake)"
            : "nginx reloaded",
            job->took_ms / 1000);

    if (job->not_reloaded) {
        /* owed: tried again on the tick until a master takes it; the pair
         * is installed all the same (an nginx not running yet reads it at
         * its start), so this is no failed renewal */
        snprintf(c->reload_error, sizeof(c->reload_error), "%s",
                 job->err.text);
        c->reload_tries = PGD_RELOAD_TRIES;
        c->reload_at = now + PGD_RELOAD_EVERY;
        pgd_log(d, PG_LOG_WARN, "certificate %s: %s; tried again every "
                "%d s", c->conf.name, job->err.text, PGD_RELOAD_EVERY);
    }

    pgd_time_text(c->next_at, when, sizeof(when));
    pgd_log(d, PG_LOG_INFO, "certificate %s: next renewal at %s",
            c->conf.name, when);
    pgd_cert_status(d, c);
}


/* A reload owed since an install (its master could not be signalled, or
 * BINARY -s reload failed), as the worker tried it. */
static void
pgd_certs_collect_reload(pgd_t *d, pgd_cert_t *c, pgd_job_t *job)
{
    /* the next try counts from this one's end: one that hung its 30 s
     * is not followed at once by the next */
    c->reload_at = time(NULL) + PGD_RELOAD_EVERY;

    if (job->rc == PG_OK) {
        pgd_log(d, PG_LOG_NOTICE, "certificate %s: nginx reloaded, it "
                "serves the pair installed before", c->conf.name);
        c->reload_tries = 0;
        c->reload_error[0] = '\0';
        pgd_cert_status(d, c);
        return;
    }

    /* a reconfigure or an install since may have ended what was owed */
    if (c->reload_tries == 0 && c->reload_error[0] == '\0') {
        return;
    }

    snprintf(c->reload_error, sizeof(c->reload_error), "%s", job->err.text);

    /* past the quick tries, one an hour: a by-hand reload ends it too */
    if (c->reload_tries == 0) {
        pgd_log(d, PG_LOG_ERROR, "certificate %s: %s; tried again hourly, "
                "or reload nginx by hand", c->conf.name, job->err.text);
        c->reload_tries = 1;
        c->reload_at = time(NULL) + 3600;
    }

    pgd_cert_status(d, c);
}


/* The end. */
void
pgd_certs_stop(pgd_t *d)
{
    pgd_worker_stop(d);

    free(d->certs);
    d->certs = NULL;
    d->ncerts = 0;
}


/* --- status in Redis ---------------------------------------------------- */

/*
 * P"certs" "NAME@HOST" = {"name", "host", "names", "issuer", "issued_by",
 * "serial", "not_before", "not_after", "next_renewal", "next_why",
 * "last_error", "last_error_at", "failures", "attempts", "placeholder",
 * "issued_at", "started_at" (the daemon's), "updated_at"}; times in ISO
 * 8601 UTC, null when unknown.
 */
static void
pgd_cert_status(pgd_t *d, pgd_cert_t *c)
{
    char        *text, t[32], issuer[PG_CONF_PATH_MAX + 16];
    char         key[PG_STORE_PREFIX_MAX + 32], field[600];
    char        *list[PG_CONF_CERT_NAMES];
    char         buf[sizeof(c->conf.names)], error[sizeof(c->last_error)];
    char         fullchain[PG_CONF_PATH_MAX], why[160];
    char         reload[sizeof(c->reload_error)];
    json_t      *o, *names;
    size_t       i, n;
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

    pgd_cert_issuer_text(&c->conf, issuer, sizeof(issuer));
    pgd_text_clean(issuer);
    snprintf(fullchain, sizeof(fullchain), "%s", c->conf.fullchain);
    pgd_text_clean(fullchain);
    snprintf(why, sizeof(why), "%s%s", c->next_why ? c->next_why : "",
             c->held_said ? (d->cmd == NULL || d->redis_state != PGD_UP
                             ? "; waiting for redis"
                             : "; waiting for an edge that answers") : "");

    /* an error may be cut in a UTF-8 sequence, or quote a CA's bytes */
    memcpy(error, c->last_error, sizeof(error));
    pgd_text_clean(error);
    memcpy(reload, c->reload_error, sizeof(reload));
    pgd_text_clean(reload);

    o = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:i, s:I, s:b}",
                  "name", c->conf.name,
                  "host", d->host,
                  "names", names ? names : json_array(),
                  "issuer", issuer,
                  "fullchain", fullchain,
                  "next_why", why,
                  "started_at", d->started_at,
                  "failures", (int) c->failures,
                  "attempts", (json_int_t) c->attempts,
                  "placeholder", c->placeholder || !c->have_info);

    if (o == NULL) {
        pgd_log(d, PG_LOG_ERROR, "certificate %s: cannot build its status",
                c->conf.name);
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
    pgd_text_clean(c->info.issuer);
    json_object_set_new(o, "issued_by", c->have_info
                        ? json_string(c->info.issuer) : json_null());
    PGD_SET_TIME("not_before", c->have_info ? c->info.not_before : 0);
    PGD_SET_TIME("not_after", c->have_info ? c->info.not_after : 0);
    PGD_SET_TIME("next_renewal", c->next_at);
    PGD_SET_TIME("issued_at", c->issued_at);
    PGD_SET_TIME("last_error_at", c->last_error_at);
    PGD_SET_TIME("updated_at", time(NULL));
    json_object_set_new(o, "last_error", error[0] ? json_string(error)
                                                  : json_null());
    json_object_set_new(o, "reload_owed", c->reload_tries > 0
                        ? json_string(reload) : json_null());

#undef PGD_SET_TIME

    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);

    if (text == NULL) {
        return;
    }

    snprintf(key, sizeof(key), "%s%s", d->conf.prefix, PG_STORE_KEY_CERTS);
    snprintf(field, sizeof(field), "%s@%s", c->conf.name, d->host);
    r = redisCommand(d->cmd, "HSET %s %s %s", key, field, text);
    free(text);

    if (r == NULL) {
        pgd_redis_down(d, "writing a certificate's status");
        return;
    }

    if (pgd_redis_moved(d, r)) {
        /* tried again at a tick, on the new master */
        freeReplyObject(r);
        return;
    }

    /* written: the next in a minute; a failed write is tried at a tick */
    if (r->type != REDIS_REPLY_ERROR) {
        c->status_at = time(NULL);
    }

    freeReplyObject(r);
}


/*
 * Statuses of this host that no block of the config has now (removed
 * while the daemon was stopped, or by a SIGHUP while Redis was down):
 * they go, once after each start and reload. Another controller's stay.
 */
static void
pgd_certs_sweep(pgd_t *d)
{
    size_t       i, j, len, hlen;
    char         key[PG_STORE_PREFIX_MAX + 32];
    const char  *f;
    redisReply  *r, *del;

    snprintf(key, sizeof(key), "%s%s", d->conf.prefix, PG_STORE_KEY_CERTS);
    r = redisCommand(d->cmd, "HKEYS %s", key);

    if (r == NULL) {
        pgd_redis_down(d, "reading the certificates' statuses");
        return;
    }

    d->certs_swept = 1;
    hlen = strlen(d->host);

    for (i = 0; d->cmd != NULL && r->type == REDIS_REPLY_ARRAY
                && i < r->elements; i++)
    {
        f = r->element[i]->str;
        len = f ? strlen(f) : 0;

        /* "NAME@HOST" of this host */
        if (r->element[i]->type != REDIS_REPLY_STRING || len <= hlen + 1
            || f[len - hlen - 1] != '@' || strcmp(f + len - hlen, d->host)
            != 0)
        {
            continue;
        }

        for (j = 0; j < d->ncerts; j++) {
            if (strlen(d->certs[j].conf.name) == len - hlen - 1
                && strncmp(d->certs[j].conf.name, f, len - hlen - 1) == 0)
            {
                break;
            }
        }

        if (j == d->ncerts) {
            pgd_log(d, PG_LOG_NOTICE, "certificates: status %s of a block "
                    "no longer configured here: removed", f);
            del = redisCommand(d->cmd, "HDEL %s %s", key, f);

            if (del == NULL) {
                pgd_redis_down(d, "removing a certificate's status");

            } else if (pgd_redis_moved(d, del)) {
                /* swept again after the reconnect */
                d->certs_swept = 0;
            }

            freeReplyObject(del);
        }
    }

    freeReplyObject(r);
}


/* A certificate no longer configured here: its status goes. */
static void
pgd_cert_status_drop(pgd_t *d, const char *name)
{
    char         key[PG_STORE_PREFIX_MAX + 32], field[600];
    redisReply  *r;

    if (d->cmd == NULL) {
        return;
    }

    snprintf(key, sizeof(key), "%s%s", d->conf.prefix, PG_STORE_KEY_CERTS);
    snprintf(field, sizeof(field), "%s@%s", name, d->host);
    r = redisCommand(d->cmd, "HDEL %s %s", key, field);

    if (r == NULL) {
        pgd_redis_down(d, "removing a certificate's status");
        return;
    }

    pgd_redis_moved(d, r);
    freeReplyObject(r);
}


/* --- helpers ------------------------------------------------------------ */

/* t as ISO 8601 UTC. */
void
pgd_time_text(time_t t, char *buf, size_t size)
{
    struct tm  tm;

    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}


/* names (space-separated, changed in place) into out. */
size_t
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


/* FNV-1a of s: what renew asks are compared by, whatever their length. */
static uint64_t
pgd_text_hash(const char *s)
{
    uint64_t  h;

    for (h = 14695981039346656037ULL; *s; s++) {
        h = (h ^ (unsigned char) *s) * 1099511628211ULL;
    }

    return h;
}


/* s as JSON takes it: bytes outside printable ASCII become '?' (jansson
 * refuses a string that is not UTF-8, and would drop the whole field). */
static void
pgd_text_clean(char *s)
{
    for ( /* void */ ; *s; s++) {
        if ((unsigned char) *s < ' ' || (unsigned char) *s >= 0x7f) {
            *s = '?';
        }
    }
}
