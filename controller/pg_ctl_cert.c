/*
 * pg_ctl_cert.c: `portal-gatectl cert status [--json]` and `cert renew
 * NAME [--wait [SECONDS]]`, the staging certificates as every
 * portal-gated reports them in Redis (P"certs", pgd_certs.c), from any
 * host.
 *
 * Exit status: status exits 1 when a certificate is not in good shape (a
 * last error, the placeholder still in place, or expired), so that a
 * monitoring check can run it; renew exits 1 when no controller manages
 * the name, and with --wait when the renewal failed or did not end in
 * time.
 */

#define _GNU_SOURCE                 /* strptime, timegm */
#include <stdio.h>              /* printf, snprintf */
#include <stdlib.h>             /* malloc, free, qsort */
#include <string.h>             /* strcmp */
#include <time.h>               /* time, timegm, strptime */
#include <unistd.h>             /* usleep */
#include "pg_ctl.h"             /* the options, pg_ctl_error */


#define PG_CTL_KEY_CERTS       "certs"          /* pgd.h's PGD_KEY_* */
#define PG_CTL_KEY_CERT_RENEW  "cert:renew"
#define PG_CTL_MSG_CERT_RENEW  "cert-renew"
#define PG_CTL_CERT_POLL_MS    200


static int pg_ctl_cert_read(pg_store_t *store, pg_ctl_opts_t *o,
    json_t **certs);
static int pg_ctl_cert_status(pg_store_t *store, pg_ctl_opts_t *o);
static int pg_ctl_cert_renew(pg_store_t *store, pg_ctl_opts_t *o,
    const char *name);
static const char *pg_ctl_cert_problem(json_t *c, time_t now);
static time_t pg_ctl_cert_time(json_t *c, const char *key);
static int pg_ctl_cert_cmp(const void *a, const void *b);


int
pg_ctl_cert(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    if (strcmp(argv[0], "status") == 0 && argc == 1) {
        if (o->wait >= 0) {
            return pg_ctl_error(PG_CTL_USAGE, "--wait goes with cert renew");
        }

        return pg_ctl_cert_status(store, o);
    }

    if (strcmp(argv[0], "renew") == 0 && argc == 2) {
        return pg_ctl_cert_renew(store, o, argv[1]);
    }

    return pg_ctl_error(PG_CTL_USAGE, "usage: portal-gatectl cert status "
                        "[--json] | renew NAME [--wait [SECONDS]]; see "
                        "'portal-gatectl -h'");
}


/* P"certs" as {NAME: status} (new), statuses that are not JSON left out. */
static int
pg_ctl_cert_read(pg_store_t *store, pg_ctl_opts_t *o, json_t **certs)
{
    size_t       i;
    char         key[PG_STORE_PREFIX_MAX + 32];
    json_t      *c;
    redisReply  *r;

    snprintf(key, sizeof(key), "%s%s", o->prefix, PG_CTL_KEY_CERTS);

    r = redisCommand(store->redis, "HGETALL %s", key);

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        pg_ctl_error(PG_CTL_FAILED, "cannot read the certificates from "
                     "redis %s: %s", o->where,
                     r ? (r->str ? r->str : "unexpected reply")
                       : store->redis->errstr);
        freeReplyObject(r);
        return PG_CTL_FAILED;
    }

    *certs = json_object();

    for (i = 0; *certs != NULL && i + 1 < r->elements; i += 2) {
        if (r->element[i]->type != REDIS_REPLY_STRING
            || r->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        c = json_loads(r->element[i + 1]->str, 0, NULL);

        if (json_is_object(c)) {
            json_object_set_new(*certs, r->element[i]->str, c);

        } else {
            json_decref(c);
        }
    }

    freeReplyObject(r);

    if (*certs == NULL) {
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    return PG_CTL_OK;
}


static int
pg_ctl_cert_status(pg_store_t *store, pg_ctl_opts_t *o)
{
    int           rc;
    char          t[64];
    time_t        now, not_after;
    size_t        i, k, n;
    json_t       *certs, *c, *out, *v;
    const char   *name, **names, *problem;

    if (pg_ctl_cert_read(store, o, &certs) != PG_CTL_OK) {
        return PG_CTL_FAILED;
    }

    names = malloc((json_object_size(certs) + 1) * sizeof(char *));
    if (names == NULL) {
        json_decref(certs);
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    n = 0;
    json_object_foreach(certs, name, c) {
        names[n++] = name;
    }

    qsort(names, n, sizeof(char *), pg_ctl_cert_cmp);

    now = time(NULL);
    rc = PG_CTL_OK;
    out = json_array();

    if (n == 0 && !o->json) {
        printf("no certificates: no portal-gated sharing this store has a "
               "certificate block\n");
    }

    for (i = 0; i < n; i++) {
        c = json_object_get(certs, names[i]);
        not_after = pg_ctl_cert_time(c, "not_after");
        problem = pg_ctl_cert_problem(c, now);

        if (problem != NULL) {
            rc = PG_CTL_FAILED;
        }

        json_object_set_new(c, "days_left", not_after
                            ? json_integer((not_after - now) / 86400)
                            : json_null());

        if (o->json) {
            json_array_append(out, c);
            continue;
        }

        printf("%s%s\n", i ? "\n" : "", names[i]);
        printf("  names         ");
        json_array_foreach(json_object_get(c, "names"), k, v) {
            printf("%s%s", k ? " " : "", json_string_value(v));
        }
        printf("\n  issuer        %s\n",
               json_string_value(json_object_get(c, "issuer")) ?: "-");

        if (json_is_true(json_object_get(c, "placeholder"))) {
            printf("  certificate   the self-signed placeholder: not issued "
                   "yet\n");

        } else {
            printf("  issued by     %s\n",
                   json_string_value(json_object_get(c, "issued_by"))
                   ?: "-");
            printf("  serial        %s\n",
                   json_string_value(json_object_get(c, "serial")) ?: "-");
            snprintf(t, sizeof(t), "%" JSON_INTEGER_FORMAT " days left",
                     json_integer_value(json_object_get(c, "days_left")));
            printf("  not after     %s (%s)\n",
                   json_string_value(json_object_get(c, "not_after"))
                   ?: "-", not_after <= now ? "EXPIRED" : t);
        }

        printf("  next renewal  %s (%s)\n",
               json_string_value(json_object_get(c, "next_renewal")) ?: "-",
               json_string_value(json_object_get(c, "next_why")) ?: "-");

        if (json_is_string(json_object_get(c, "last_error"))) {
            printf("  last error    %s, %" JSON_INTEGER_FORMAT " in a row: "
                   "%s\n",
                   json_string_value(json_object_get(c, "last_error_at"))
                   ?: "-",
                   json_integer_value(json_object_get(c, "failures")),
                   json_string_value(json_object_get(c, "last_error")));

        } else {
            printf("  last error    none\n");
        }

        printf("  controller    %s (status of %s)\n",
               json_string_value(json_object_get(c, "host")) ?: "-",
               json_string_value(json_object_get(c, "updated_at")) ?: "-");
    }

    if (o->json) {
        json_dumpf(out, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("\n");
    }

    json_decref(out);
    json_decref(certs);
    free(names);

    return rc;
}


/* What is wrong with a certificate, for the exit status; NULL: nothing. */
static const char *
pg_ctl_cert_problem(json_t *c, time_t now)
{
    time_t  not_after;

    if (json_is_string(json_object_get(c, "last_error"))) {
        return "failed";
    }

    if (json_is_true(json_object_get(c, "placeholder"))) {
        return "placeholder";
    }

    not_after = pg_ctl_cert_time(c, "not_after");

    return (not_after == 0 || not_after <= now) ? "expired" : NULL;
}


/*
 * Ask the controller that manages name to renew it now; with --wait, wait
 * for its answer: a new certificate (exit 0) or an error (exit 1).
 */
static int
pg_ctl_cert_renew(pg_store_t *store, pg_ctl_opts_t *o, const char *name)
{
    char         key[PG_STORE_PREFIX_MAX + 32], now_text[32];
    double       waited;
    time_t       now;
    json_t      *certs, *c;
    struct tm    tm;
    json_int_t   attempts;
    const char  *host;
    redisReply  *r;

    if (pg_ctl_cert_read(store, o, &certs) != PG_CTL_OK) {
        return PG_CTL_FAILED;
    }

    c = json_object_get(certs, name);

    if (c == NULL) {
        json_decref(certs);
        return pg_ctl_error(PG_CTL_FAILED, "no portal-gated manages a "
                            "certificate \"%s\" (portal-gatectl cert status "
                            "lists those that do)", name);
    }

    /* every attempt that ends, either way, raises it */
    attempts = json_integer_value(json_object_get(c, "attempts"));
    host = json_string_value(json_object_get(c, "host"));
    printf("renewal of %s asked from the portal-gated on %s\n", name,
           host ? host : "?");
    json_decref(certs);

    now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(now_text, sizeof(now_text), "%Y-%m-%dT%H:%M:%SZ", &tm);

    snprintf(key, sizeof(key), "%s%s", o->prefix, PG_CTL_KEY_CERT_RENEW);
    r = redisCommand(store->redis, "HSET %s %s %s", key, name, now_text);

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        pg_ctl_error(PG_CTL_FAILED, "cannot ask for the renewal in redis "
                     "%s: %s", o->where,
                     r ? r->str : store->redis->errstr);
        freeReplyObject(r);
        return PG_CTL_FAILED;
    }

    freeReplyObject(r);

    snprintf(key, sizeof(key), "%s%s", o->prefix, PG_STORE_CHANNEL);
    r = redisCommand(store->redis, "PUBLISH %s %s", key,
                     PG_CTL_MSG_CERT_RENEW);
    freeReplyObject(r);

    if (o->wait < 0) {
        printf("portal-gatectl cert status shows the result\n");
        return PG_CTL_OK;
    }

    fflush(stdout);

    for (waited = 0; waited <= o->wait * 1000; waited += PG_CTL_CERT_POLL_MS)
    {
        usleep(PG_CTL_CERT_POLL_MS * 1000);

        if (pg_ctl_cert_read(store, o, &certs) != PG_CTL_OK) {
            return PG_CTL_FAILED;
        }

        c = json_object_get(certs, name);

        if (c != NULL
            && json_integer_value(json_object_get(c, "attempts")) != attempts
            && !json_is_string(json_object_get(c, "last_error")))
        {
            printf("renewed: serial %s, valid until %s\n",
                   json_string_value(json_object_get(c, "serial")) ?: "?",
                   json_string_value(json_object_get(c, "not_after"))
                   ?: "?");
            json_decref(certs);
            return PG_CTL_OK;
        }

        if (c != NULL
            && json_integer_value(json_object_get(c, "attempts")) != attempts)
        {
            pg_ctl_error(PG_CTL_FAILED, "renewal of %s failed, the current "
                         "certificate stays: %s", name,
                         json_string_value(json_object_get(c, "last_error"))
                         ?: "?");
            json_decref(certs);
            return PG_CTL_FAILED;
        }

        json_decref(certs);
    }

    return pg_ctl_error(PG_CTL_FAILED, "renewal of %s did not end within "
                        "%g s; portal-gatectl cert status shows it when it "
                        "does", name, o->wait);
}


/* An ISO 8601 UTC field of a status as a time; 0 when it has none. */
static time_t
pg_ctl_cert_time(json_t *c, const char *key)
{
    struct tm    tm;
    const char  *s, *end;

    s = json_string_value(json_object_get(c, key));

    if (s == NULL) {
        return 0;
    }

    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);

    return (end != NULL && *end == '\0') ? timegm(&tm) : 0;
}


static int
pg_ctl_cert_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}
