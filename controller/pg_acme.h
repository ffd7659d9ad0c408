/*
 * pg_acme.h: an ACME client (RFC 8555) for the staging certificates: an
 * account (ES256, its key made once), a new order, http-01 challenges that
 * the caller publishes, finalize with a CSR, the chain; and ARI (RFC 9773)
 * renewal windows. OpenSSL for the JWS, jansson for JSON, libcurl for
 * HTTPS (easy handles, blocking).
 *
 * Threads: the calls block (an issuance takes seconds), so portal-gated
 * runs them in a worker thread, never in its loop. They share nothing with
 * other threads: each call makes its own curl easy handle and frees it,
 * and keeps no global or static state. One requirement: libcurl must be
 * loaded and curl_global_init() done before the worker starts, by the main
 * thread: pg_curl_load() (curl_global_init is not thread-safe). A call
 * made before that fails with a message saying so; it never loads libcurl
 * itself. Every curl option is checked: a libcurl that refuses one (one
 * older than 7.85 has no CURLOPT_PROTOCOLS_STR, which keeps requests to
 * https) fails the call, "libcurl refused CURLOPT_...", before any request.
 *
 * Cancel: *conf->cancel (when not NULL) is read between steps, in every
 * wait (every 100 ms) and during every transfer (curl's progress
 * callback, about once a second while a request hangs): once it is
 * non-zero the call returns PG_ERR, "cancelled". Set it from any thread
 * (__atomic_store_n, or a plain store); the challenges published so far
 * are withdrawn first.
 *
 * Errors: PG_OK or PG_ERR with one line in pg_error_t. An ACME problem
 * document is reported as "TYPE: detail", " (see INSTANCE)" when it has
 * an instance (userActionRequired: the page to visit), then its
 * subproblems' "IDENTIFIER: detail" ("urn:ietf:params:acme:error:
 * unauthorized: ..."); an account the CA deactivated or revoked (an
 * unauthorized newAccount, or its status) ends with "; remove the account
 * key PATH to have a new account made"; an invalid authorization is
 * reported as its challenge's error, the same way; anything else names
 * what failed ("cannot reach the ACME server: GET https://...: Couldn't
 * connect to server"). *retry_after is the Retry-After (seconds) of the
 * answer the call failed on, 0 when it had none or the call failed
 * otherwise (no answer, a wait run out, an invalid authorization): never
 * that of an earlier answer.
 * Ownership: conf and everything it points to are borrowed for the call;
 * *chain is new (free()).
 */

#ifndef PG_ACME_H
#define PG_ACME_H

#include <stddef.h>             /* size_t */
#include <time.h>               /* time_t */
#include <openssl/evp.h>        /* EVP_PKEY */
#include "portal_gate.h"        /* pg_error_t, PG_OK, PG_ERR */

/* Neither OK nor an error: the CA does not offer what was asked (ARI). */
#ifndef PG_DECLINED
#define PG_DECLINED      1
#endif

#define PG_ACME_TIMEOUT  30     /* default seconds of one HTTPS exchange */
#define PG_ACME_WAIT     60     /* default seconds for the authorizations,
                                   then the order, to settle */
#define PG_ACME_ISSUE_WAITS 4  /* pg_acme_issue ends within this many
                                  times the wait, whatever the CA does */

/*
 * Publish (add 1) or withdraw (add 0) an http-01 challenge: the edges
 * answer GET /.well-known/acme-challenge/TOKEN with key_authorization.
 * add 1 comes before the CA is asked to validate and must return once the
 * edges serve it (PG_OK), or PG_ERR with err saying why: the issuance
 * stops there. add 0 comes once the authorization is settled, valid or
 * not, and on every way out after an add 1 (errors, cancel), including
 * for the token whose add 1 failed (it may be half-published): so add 0
 * must be idempotent, a token absent already is PG_OK. Its PG_ERR is
 * only logged. Called in the issuing thread.
 */
typedef int (*pg_acme_challenge_pt)(void *ctx, const char *token,
    const char *key_authorization, int add, pg_error_t *err);

/* level: pg_conf.h's PG_LOG_DEBUG (0) .. PG_LOG_ERROR (4); one line per
 * call, no newline. Called in the issuing thread. */
typedef void (*pg_acme_log_pt)(void *ctx, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct {
    const char            *directory;    /* the directory URL, https:// */
    const char            *ca_file;      /* trust for the ACME server's
                                            TLS (acme_ca), or NULL: the
                                            system's */
    const char            *account_key;  /* PEM path: made (ECDSA P-256,
                                            0600) when absent; its folder
                                            must exist; anything but a
                                            regular file there (a
                                            symlink, a FIFO) is refused */
    const char *const     *contact;      /* URLs ("mailto:ops@x"), given
                                            when the account is made */
    size_t                 ncontact;
    const char            *profile;      /* or NULL: sent only when the
                                            directory lists profiles; one
                                            it does not list is an error
                                            naming those it does */
    const char            *replaces;     /* ARI id of the certificate this
                                            one renews, or NULL: sent only
                                            when the directory has
                                            renewalInfo */
    long                   timeout;      /* seconds of one exchange; 0:
                                            PG_ACME_TIMEOUT */
    long                   wait;         /* seconds the authorizations,
                                            then the order, may take to
                                            settle; 0: PG_ACME_WAIT; an
                                            issuance as a whole takes at
                                            most PG_ACME_ISSUE_WAITS
                                            times this */
    pg_acme_challenge_pt   challenge;    /* required by pg_acme_issue */
    pg_acme_log_pt         log;          /* or NULL */
    void                  *ctx;          /* for challenge and log */
    volatile int          *cancel;       /* or NULL */
} pg_acme_conf_t;

/*
 * Issue a certificate for names[0..n) (DNS names; the first is also the
 * CSR's CN) and cert_key (the key the certificate is for, not the
 * account's): directory, account (the same key finds the same account),
 * order, one http-01 challenge per pending authorization, finalize,
 * download. The account is looked up by its key at each call (one
 * request; conf->contact is given only when it is made). An order the CA
 * reports "valid" already is downloaded without a finalize, and one
 * "processing" is waited for until valid; the leaf downloaded must be
 * for cert_key, or the call fails. Polls honour Retry-After (at most 10 s
 * apart); without one they come after 0.1 s, 0.25 s, 0.5 s, then every
 * 1 s. A delay past the end of the wait is cut to it, and the last poll
 * comes there.
 *
 * Bounds, whatever the CA answers: an order listing more authorizations
 * than names is refused (one per identifier, RFC 8555 7.1.3), so the
 * requests of a call are a few per name plus the polls; and the whole
 * call ends within PG_ACME_ISSUE_WAITS times conf->wait (4 min by
 * default): every transfer's timeout and every wait is cut to the time
 * left, and past it the call fails with "the ACME server did not
 * complete the issuance within N s (...)". The challenge callback's own
 * time counts towards it, but a callback is never interrupted.
 *
 * PG_OK: *chain (new, NUL-terminated PEM: the leaf first, then the
 * intermediates) and *len. PG_ERR: err and *retry_after as above.
 */
int pg_acme_issue(const pg_acme_conf_t *conf, char *const *names, size_t n,
    EVP_PKEY *cert_key, char **chain, size_t *len, long *retry_after,
    pg_error_t *err);

/*
 * ARI (RFC 9773): the suggested renewal window of the certificate whose
 * ARI id (pg_cert_info_t.ari_id) is given, in *start and *end. PG_OK;
 * PG_DECLINED when the directory has no renewalInfo (renew by the
 * lifetime rule); PG_ERR as above. *retry_after: the answer's
 * Retry-After, when to ask again (also on PG_OK), 0 when none.
 */
int pg_acme_renewal_info(const pg_acme_conf_t *conf, const char *ari_id,
    time_t *start, time_t *end, long *retry_after, pg_error_t *err);

#endif /* PG_ACME_H */
