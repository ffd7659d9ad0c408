/*
 * pg_ctl_cert.c: `portal-gatectl cert status [--json]` and `cert renew
 * NAME [--wait [SECONDS]]`, the staging certificates as every
 * portal-gated reports them in Redis, from any host.
 *
 * Each controller writes one status per certificate it manages,
 * P"certs" "NAME@HOST" (pgd_certs.c), and writes it again every minute: a
 * status older than PG_CTL_CERT_STALE has no live controller behind it.
 * A renewal is asked by giving P"cert:renew" NAME a new value (the time
 * and this process's pid), which every controller managing NAME acts on.
 *
 * Exit status: status exits 1 when a certificate is not in good shape (a
 * last error, the placeholder still in place, expired, or stale), so that
 * a monitoring check can run it; renew exits 1 when no live controller
 * manages the name, and with --wait when a renewal failed or did not end
 * in time.
 */

#define _GNU_SOURCE             /* strptime, timegm */
#include <stdio.h>              /* printf, snprintf */
#include <stdlib.h>             /* malloc, free, qsort */
#include <string.h>             /* strcmp */
#include <sys/time.h>           /* gettimeofday */
#include <time.h>               /* time, timegm, strptime */
#include <unistd.h>             /* usleep, getpid */
#include "pg_ctl.h"             /* the options, pg_ctl_error */


#define PG_CTL_CERT_POLL_MS    200
#define PG_CTL_CERT_STALE      180      /* s: 3 of the daemon's refreshes */


static int pg_ctl_cert_read(pg_store_t *store, pg_ctl_opts_t *o,
    json_t **certs);
static int pg_ctl_cert_status(pg_store_t *store, pg_ctl_opts_t *o);
static void pg_ctl_cert_print(json_t *c, time_t now, int first);
static int pg_ctl_cert_renew(pg_store_t *store, pg_ctl_opts_t *o,
    const char *name);
static int pg_ctl_cert_ended(json_t *before, json_t *now);
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
                        "[--json] | cert renew NAME [--wait [SECONDS]]; see "
                        "'portal-gatectl -h'");
}


/* P"certs" as {"NAME@HOST": status} (new); statuses that are not JSON
 * objects with a name are left out. */
static int
pg_ctl_cert_read(pg_store_t *store, pg_ctl_opts_t *o, json_t **certs)
{
    size_t       i;
    char         key[PG_STORE_PREFIX_MAX + 32];
    json_t      *c;
    redisReply  *r;

    snprintf(key, sizeof(key), "%s%s", o->prefix, PG_STORE_KEY_CERTS);

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

        if (json_is_object(c) && json_is_string(json_object_get(c, "name"))) {
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
    time_t        now, not_after, updated;
    size_t        i, n;
    json_t       *certs, *c, *out;
    const char   *key, **keys, *problem;

    if (pg_ctl_cert_read(store, o, &certs) != PG_CTL_OK) {
        return PG_CTL_FAILED;
    }

    keys = malloc((json_object_size(certs) + 1) * sizeof(char *));
    out = json_array();

    if (keys == NULL || out == NULL) {
        free(keys);
        json_decref(out);
        json_decref(certs);
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    n = 0;
    json_object_foreach(certs, key, c) {
        keys[n++] = key;
    }

    qsort(keys, n, sizeof(char *), pg_ctl_cert_cmp);

    now = time(NULL);
    rc = PG_CTL_OK;

    if (n == 0 && !o->json) {
        printf("no certificates: no portal-gated sharing this store has a "
               "certificate block\n");
    }

    for (i = 0; i < n; i++) {
        c = json_object_get(certs, keys[i]);
        not_after = pg_ctl_cert_time(c, "not_after");
        updated = pg_ctl_cert_time(c, "updated_at");
        problem = pg_ctl_cert_problem(c, now);

        if (problem != NULL) {
            rc = PG_CTL_FAILED;
        }

        json_object_set_new(c, "days_left", not_after
                            ? json_integer((not_after - now) / 86400)
                            : json_null());
        json_object_set_new(c, "stale", json_boolean(now - updated
                                                     > PG_CTL_CERT_STALE));
        json_object_set_new(c, "problem", problem ? json_string(problem)
                                                  : json_null());

        if (o->json) {
            json_array_append(out, c);

        } else {
            pg_ctl_cert_print(c, now, i == 0);
        }
    }

    if (o->json) {
        json_dumpf(out, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("\n");
    }

    json_decref(out);
    json_decref(certs);
    free(keys);

    return rc;
}


/* One certificate, as one controller reports it, for a terminal. */
static void
pg_ctl_cert_print(json_t *c, time_t now, int first)
{
    char         days[64];
    size_t       k;
    time_t       not_after, updated;
    json_t      *v;

#define PG_CTL_S(key)                                                        \
    (json_string_value(json_object_get(c, key)) ?: "-")

    not_after = pg_ctl_cert_time(c, "not_after");
    updated = pg_ctl_cert_time(c, "updated_at");

    printf("%s%s\n", first ? "" : "\n", PG_CTL_S("name"));
    printf("  names         ");
    json_array_foreach(json_object_get(c, "names"), k, v) {
        printf("%s%s", k ? " " : "", json_string_value(v));
    }
    printf("\n  issuer        %s\n", PG_CTL_S("issuer"));

    if (json_is_true(json_object_get(c, "placeholder"))) {
        printf("  certificate   the self-signed placeholder: not issued "
               "yet\n");

    } else {
        printf("  issued by     %s\n", PG_CTL_S("issued_by"));
        printf("  serial        %s\n", PG_CTL_S("serial"));
        snprintf(days, sizeof(days), "%" JSON_INTEGER_FORMAT " days left",
                 json_integer_value(json_object_get(c, "days_left")));
        printf("  not after     %s (%s)\n", PG_CTL_S("not_after"),
               not_after <= now ? "EXPIRED" : days);
    }

    printf("  next renewal  %s (%s)\n", PG_CTL_S("next_renewal"),
           PG_CTL_S("next_why"));

    if (json_is_string(json_object_get(c, "reload_owed"))) {
        printf("  nginx         not reloaded yet (tried again): %s\n",
               PG_CTL_S("reload_owed"));
    }

    if (json_is_string(json_object_get(c, "last_error"))) {
        printf("  last error    %s, %" JSON_INTEGER_FORMAT " in a row: %s\n",
               PG_CTL_S("last_error_at"),
               json_integer_value(json_object_get(c, "failures")),
               PG_CTL_S("last_error"));

    } else {
        printf("  last error    none\n");
    }

    if (now - updated > PG_CTL_CERT_STALE) {
        printf("  controller    %s: STALE, no word from it for %ld min (is "
               "its portal-gated running?)\n", PG_CTL_S("host"),
               (long) (now - updated) / 60);

    } else {
        printf("  controller    %s (status of %s)\n", PG_CTL_S("host"),
               PG_CTL_S("updated_at"));
    }

#undef PG_CTL_S
}


/* What is wrong with a certificate, for the exit status; NULL: nothing. */
static const char *
pg_ctl_cert_problem(json_t *c, time_t now)
{
    time_t  not_after;

    if (now - pg_ctl_cert_time(c, "updated_at") > PG_CTL_CERT_STALE) {
        return "stale";
    }

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
 * Ask every live controller that manages name to renew it now; with
 * --wait, wait for each one's answer: a new certificate (exit 0) or an
 * error (exit 1, with the error of each that failed).
 */
static int
pg_ctl_cert_renew(pg_store_t *store, pg_ctl_opts_t *o, const char *name)
{
    int              rc, pending, live;
    char             key[PG_STORE_PREFIX_MAX + 32], ask[64];
    double           waited;
    time_t           now;
    json_t          *certs, *before, *c, *cur;
    const char      *k;
    redisReply      *r;
    struct timeval   tv;

    if (pg_ctl_cert_read(store, o, &certs) != PG_CTL_OK) {
        return PG_CTL_FAILED;
    }

    /* the live controllers of name, as they were before the ask */
    now = time(NULL);
    before = json_object();
    live = 0;

    json_object_foreach(certs, k, c) {
        if (strcmp(json_string_value(json_object_get(c, "name")), name) != 0
            || now - pg_ctl_cert_time(c, "updated_at") > PG_CTL_CERT_STALE)
        {
            continue;
        }

        json_object_set(before, k, c);
        printf("renewal of %s asked from the portal-gated on %s\n", name,
               json_string_value(json_object_get(c, "host")) ?: "?");
        live++;
    }

    json_decref(certs);

    if (live == 0) {
        json_decref(before);
        return pg_ctl_error(PG_CTL_FAILED, "no live portal-gated manages a "
                            "certificate \"%s\" (portal-gatectl cert status "
                            "lists those that do, and when each last "
                            "reported)", name);
    }

    gettimeofday(&tv, NULL);
    snprintf(ask, sizeof(ask), "%lld.%06ld-%ld", (long long) tv.tv_sec,
             (long) tv.tv_usec, (long) getpid());

    snprintf(key, sizeof(key), "%s%s", o->prefix, PG_STORE_KEY_CERT_RENEW);
    r = redisCommand(store->redis, "HSET %s %s %s", key, name, ask);

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        pg_ctl_error(PG_CTL_FAILED, "cannot ask for the renewal in redis "
                     "%s: %s", o->where,
                     r ? r->str : store->redis->errstr);
        freeReplyObject(r);
        json_decref(before);
        return PG_CTL_FAILED;
    }

    freeReplyObject(r);

    snprintf(key, sizeof(key), "%s%s", o->prefix, PG_STORE_CHANNEL);
    r = redisCommand(store->redis, "PUBLISH %s %s", key,
                     PG_STORE_MSG_CERT_RENEW);
    freeReplyObject(r);

    if (o->wait < 0) {
        printf("portal-gatectl cert status shows the result\n");
        json_decref(before);
        return PG_CTL_OK;
    }

    fflush(stdout);

    for (waited = 0; waited <= o->wait * 1000; waited += PG_CTL_CERT_POLL_MS)
    {
        usleep(PG_CTL_CERT_POLL_MS * 1000);

        if (pg_ctl_cert_read(store, o, &certs) != PG_CTL_OK) {
            json_decref(before);
            return PG_CTL_FAILED;
        }

        pending = 0;

        json_object_foreach(before, k, c) {
            cur = json_object_get(certs, k);
            pending += (cur == NULL || !pg_ctl_cert_ended(c, cur));
        }

        if (pending > 0) {
            json_decref(certs);
            continue;
        }

        rc = PG_CTL_OK;

        json_object_foreach(before, k, c) {
            cur = json_object_get(certs, k);

#define PG_CTL_S(key)                                                        \
    (json_string_value(json_object_get(cur, key)) ?: "?")

            if (json_is_string(json_object_get(cur, "last_error"))) {
                pg_ctl_error(PG_CTL_FAILED, "renewal of %s on %s failed, the "
                             "current certificate stays: %s", name,
                             PG_CTL_S("host"), PG_CTL_S("last_error"));
                rc = PG_CTL_FAILED;

            } else {
                printf("renewed on %s: serial %s, valid until %s\n",
                       PG_CTL_S("host"), PG_CTL_S("serial"),
                       PG_CTL_S("not_after"));
            }

#undef PG_CTL_S
        }

        json_decref(certs);
        json_decref(before);

        return rc;
    }

    json_decref(before);

    return pg_ctl_error(PG_CTL_FAILED, "renewal of %s did not end within "
                        "%g s; portal-gatectl cert status shows it when it "
                        "does", name, o->wait);
}


/*
 * Has the controller whose status was before ended an attempt since? Its
 * attempts counter moved, or it restarted (started_at) and has ended one
 * since: a counter of a daemon that restarted starts again from 0.
 */
static int
pg_ctl_cert_ended(json_t *before, json_t *now)
{
    const char  *was, *is;

    was = json_string_value(json_object_get(before, "started_at"));
    is = json_string_value(json_object_get(now, "started_at"));

    if (was == NULL || is == NULL || strcmp(was, is) != 0) {
        return json_integer_value(json_object_get(now, "attempts")) > 0;
    }

    return json_integer_value(json_object_get(now, "attempts"))
           != json_integer_value(json_object_get(before, "attempts"));
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
