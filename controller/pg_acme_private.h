/*
 * pg_acme_private.h: the ACME client's parts that need no network
 * (pg_acme_msg.c), for pg_acme.c and the unit tests (t/unit/test_acme.c).
 * Nothing else includes this file.
 *
 * Errors and ownership as in pg_acme.h: _new and char * results are new
 * (json_decref(), free()); every argument is borrowed.
 */

#ifndef PG_ACME_PRIVATE_H
#define PG_ACME_PRIVATE_H

#include <jansson.h>            /* json_t */
#include "pg_acme.h"            /* the public API, pg_error_t */

/* b64url(SHA-256): 43 characters and the NUL */
#define PG_ACME_THUMB_LEN  44

/* b64url of in[0..n), new (NULL: out of memory). */
char *pg_acme_b64_new(const void *in, size_t n);

/* The public JWK of an ECDSA P-256 key: {"crv","kty","x","y"} (new). */
json_t *pg_acme_jwk_new(EVP_PKEY *key, pg_error_t *err);

/*
 * RFC 7638: b64url(SHA-256) of the JWK's required members (EC: crv, kty,
 * x, y; RSA: e, kty, n; OKP: crv, kty, x) in lexicographic order, no
 * whitespace, into out (PG_ACME_THUMB_LEN bytes).
 */
int pg_acme_thumbprint(const json_t *jwk, char *out, pg_error_t *err);

/* ES256 in JOSE (RFC 7518 3.4): r||s, 32 bytes each, of SHA-256(data). */
int pg_acme_es256(EVP_PKEY *key, const char *data, size_t len,
    unsigned char sig[64], pg_error_t *err);

/*
 * A flattened JWS (RFC 8555 6.2), as the text of the POST: protected
 * {"alg":"ES256", "jwk" or "kid", "nonce", "url"}; payload the JSON text,
 * or "" for POST-as-GET when payload is NULL. jwk when kid is NULL.
 */
char *pg_acme_jws(EVP_PKEY *key, const json_t *jwk, const char *kid,
    const char *nonce, const char *url, const char *payload,
    pg_error_t *err);

/*
 * An error answer into err: a problem document (RFC 7807) as "TYPE:
 * detail (see INSTANCE); IDENTIFIER: detail..." on one line (the instance
 * when it has one: userActionRequired's page to visit); anything else as
 * "HTTP STATUS from what". *type (when not NULL) gets the problem's type,
 * or "" (size bytes).
 */
void pg_acme_problem(const char *body, size_t len, long status,
    const char *what, char *type, size_t size, pg_error_t *err);

/*
 * The profile to send for want (NULL or "": none): *send = want when the
 * directory's meta.profiles lists it, NULL when the directory lists no
 * profiles; PG_ERR naming those it lists when it lists others.
 */
int pg_acme_dir_profile(const json_t *dir, const char *want,
    const char **send, pg_error_t *err);

/* The directory's renewalInfo URL (borrowed), or NULL when it has none. */
const char *pg_acme_dir_renewal_info(const json_t *dir);

/* A CA's words go into a one-line message: control characters become
 * spaces (a detail, a URL from a JSON string may hold newlines), and
 * trailing spaces go. In place. */
void pg_acme_oneline(char *s);

/* Seconds of a Retry-After value: delta-seconds or an HTTP-date (then
 * relative to now, at least 0); -1 when it is neither. */
long pg_acme_retry_after(const char *value, time_t now);

#endif /* PG_ACME_PRIVATE_H */
