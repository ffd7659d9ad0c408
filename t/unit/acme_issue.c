/*
 * acme_issue.c: a small driver of pg_acme_issue() and pg_acme_renewal_info()
 * for t/unit-acme-pebble.t (built as build/test-acme-issue, with the
 * sanitizers). Challenges are files under a web root that a plain nginx
 * serves, as `certbot --webroot` does; portal-gated publishes them to the
 * edges instead.
 *
 *   test-acme-issue -d DIRECTORY_URL -k ACCOUNT_KEY -w WEBROOT [-c CA_FILE]
 *       [-p PROFILE] [-m CONTACT]... [-r REPLACES] [-o CHAIN_OUT]
 *       [-t WAIT] [-n] [-x] NAME...
 *   test-acme-issue -d DIRECTORY_URL -k ACCOUNT_KEY [-c CA_FILE] -a ARI_ID
 *
 * -n: publish nothing (the CA's validation fails). -x: cancel the call
 * from the first publish (as portal-gated's exit or SIGHUP would). Output on stdout:
 * "issued N bytes" and exit 0; or "error: TEXT", "retry_after: N" and exit
 * 1; with -a, "window: START END", or "declined" and exit 3. stderr: the
 * client's log lines ("info: acme: account ... (new)"), each published
 * and withdrawn token, and "elapsed_ms: N".
 */

#include <errno.h>              /* errno, EEXIST */
#include <getopt.h>             /* getopt */
#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* printf, fprintf, snprintf, fopen */
#include <stdlib.h>             /* free, strtol */
#include <string.h>             /* strerror */
#include <sys/stat.h>           /* mkdir */
#include <time.h>               /* clock_gettime */
#include <unistd.h>             /* unlink */
#include <openssl/evp.h>        /* EVP_PKEY_free */
#include "pg_acme.h"            /* what is driven */
#include "pg_cert.h"            /* pg_cert_key_new, pg_cert_write_file */
#include "pg_curl.h"            /* pg_curl_load */


#define NAMES_MAX     16
#define CONTACTS_MAX  4


typedef struct {
    const char    *webroot;
    int            serve;
    int            cancel_at_publish;
    volatile int   cancel;
} webroot_t;


static double  t0;      /* ms at the start: log lines say when */


static double now_ms(void);


static void
on_log(void *ctx, int level, const char *fmt, ...)
{
    va_list  args;

    static const char  *levels[] = { "debug", "info", "notice", "warn",
                                     "error" };

    (void) ctx;

    fprintf(stderr, "%s: [%.0f ms] ", level >= 0 && level <= 4
            ? levels[level] : "?", now_ms() - t0);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "\n");
}


/* The challenge as a file under WEBROOT/.well-known/acme-challenge/. */
static int
on_challenge(void *ctx, const char *token, const char *key_authorization,
    int add, pg_error_t *err)
{
    char        path[1024];
    FILE       *f;
    webroot_t  *w;

    w = ctx;

    fprintf(stderr, "challenge: %s %s [%.0f ms]\n",
            add ? "publish" : "withdraw", token, now_ms() - t0);

    if (add && w->cancel_at_publish) {
        __atomic_store_n(&w->cancel, 1, __ATOMIC_RELAXED);
    }

    if (!w->serve) {
        return PG_OK;
    }

    snprintf(path, sizeof(path), "%s/.well-known/acme-challenge/%s",
             w->webroot, token);

    if (!add) {
        /* idempotent, as pg_acme.h asks: a publish that failed is
         * withdrawn too */
        if (unlink(path) != 0 && errno != ENOENT) {
            snprintf(err->text, sizeof(err->text), "unlink %.160s: %.60s", path,
                     strerror(errno));
            return PG_ERR;
        }

        return PG_OK;
    }

    f = fopen(path, "w");

    if (f == NULL || fputs(key_authorization, f) == EOF || fclose(f) != 0) {
        snprintf(err->text, sizeof(err->text), "write %.160s: %.60s", path,
                 strerror(errno));
        return PG_ERR;
    }

    return PG_OK;
}


static int
make_dirs(const char *webroot)
{
    char  path[1024];

    snprintf(path, sizeof(path), "%s/.well-known", webroot);

    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        return -1;
    }

    snprintf(path, sizeof(path), "%s/.well-known/acme-challenge", webroot);

    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        return -1;
    }

    return 0;
}


static double
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}


int
main(int argc, char **argv)
{
    int             opt, rc, n;
    char           *chain, *names[NAMES_MAX];
    long            retry_after;
    size_t          len, i;
    time_t          start, end;
    EVP_PKEY       *key;
    webroot_t       w;
    pg_error_t      err;
    const char     *out, *ari, *contacts[CONTACTS_MAX];
    pg_acme_conf_t  conf;

    memset(&conf, 0, sizeof(conf));
    w.webroot = NULL;
    w.serve = 1;
    w.cancel_at_publish = 0;
    w.cancel = 0;
    out = NULL;
    ari = NULL;
    n = 0;

    while ((opt = getopt(argc, argv, "d:k:w:c:p:m:r:o:t:a:nx")) != -1) {
        switch (opt) {
        case 'd': conf.directory = optarg; break;
        case 'k': conf.account_key = optarg; break;
        case 'w': w.webroot = optarg; break;
        case 'c': conf.ca_file = optarg; break;
        case 'p': conf.profile = optarg; break;
        case 'r': conf.replaces = optarg; break;
        case 'o': out = optarg; break;
        case 't': conf.wait = strtol(optarg, NULL, 10); break;
        case 'a': ari = optarg; break;
        case 'n': w.serve = 0; break;
        case 'x': w.cancel_at_publish = 1; break;
        case 'm':
            if (conf.ncontact < CONTACTS_MAX) {
                contacts[conf.ncontact++] = optarg;
            }
            break;
        default:
            return 2;
        }
    }

    for (i = (size_t) optind; i < (size_t) argc && n < NAMES_MAX; i++) {
        names[n++] = argv[i];
    }

    if (conf.directory == NULL || conf.account_key == NULL
        || (ari == NULL && (w.webroot == NULL || n == 0)))
    {
        fprintf(stderr, "usage: see t/unit/acme_issue.c\n");
        return 2;
    }

    conf.contact = contacts;
    conf.challenge = on_challenge;
    conf.log = on_log;
    conf.ctx = &w;
    conf.cancel = &w.cancel;

    /* as portal-gated does: in the main thread, before any ACME call */
    if (pg_curl_load(&err) != PG_OK) {
        printf("error: %s\n", err.text);
        return 1;
    }

    t0 = now_ms();

    if (ari != NULL) {
        rc = pg_acme_renewal_info(&conf, ari, &start, &end, &retry_after,
                                  &err);
        fprintf(stderr, "elapsed_ms: %.0f\n", now_ms() - t0);

        if (rc == PG_DECLINED) {
            printf("declined\n");
            return 3;
        }

        if (rc != PG_OK) {
            printf("error: %s\nretry_after: %ld\n", err.text, retry_after);
            return 1;
        }

        printf("window: %lld %lld\nretry_after: %ld\n", (long long) start,
               (long long) end, retry_after);
        return 0;
    }

    if (w.serve && make_dirs(w.webroot) != 0) {
        printf("error: cannot make the challenge folder under %s: %s\n",
               w.webroot, strerror(errno));
        return 1;
    }

    key = pg_cert_key_new(PG_CERT_KEY_ECDSA, &err);

    if (key == NULL) {
        printf("error: %s\n", err.text);
        return 1;
    }

    rc = pg_acme_issue(&conf, names, (size_t) n, key, &chain, &len,
                       &retry_after, &err);
    fprintf(stderr, "elapsed_ms: %.0f\n", now_ms() - t0);

    if (rc != PG_OK) {
        printf("error: %s\nretry_after: %ld\n", err.text, retry_after);
        EVP_PKEY_free(key);
        pg_curl_unload();
        return 1;
    }

    if (out != NULL && pg_cert_write_file(out, chain, len, 0644, &err)
                       != PG_OK)
    {
        printf("error: %s\n", err.text);
        rc = PG_ERR;

    } else {
        printf("issued %zu bytes\n", len);
    }

    free(chain);
    EVP_PKEY_free(key);
    pg_curl_unload();

    return rc == PG_OK ? 0 : 1;
}
