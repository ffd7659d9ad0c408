/*
 * pg_token_private.h: what the two halves of the company tokens' core
 * share: the key set's layout and three helpers. pg_token.c verifies (the
 * module compiles it); pg_token_sign.c signs and makes keys (the CLI and
 * the tests; the module does not compile it: an edge never mints).
 */

#ifndef PG_TOKEN_PRIVATE_H
#define PG_TOKEN_PRIVATE_H

#include <openssl/evp.h>        /* EVP_PKEY */
#include "pg_token.h"           /* the public half */


#define PG_TOKEN_QUOTE_LEN   48     /* a quoted string in a message */
#define PG_TOKEN_EC_LEN      32     /* bytes of x, y, d, r and s (P-256) */
#define PG_TOKEN_HS_LEN      32     /* bytes of an HMAC-SHA-256 */
#define PG_TOKEN_DER_MAX     80     /* an ES256 signature in DER: <= 72 */
#define PG_TOKEN_INT_LEN     24     /* a decimal int64, sign and NUL */


typedef struct {
    char             kid[PG_TOKEN_KID_MAX + 1];
    size_t           kid_len;
    pg_token_alg_t   alg;
    unsigned char   *secret;            /* HS256 */
    size_t           secret_len;
    EVP_PKEY        *pkey;              /* ES256: public, or a key pair */
    int              can_sign;
} pg_token_key_t;


struct pg_token_keys_s {
    size_t           n;
    size_t           nprivate;          /* ES256 keys that came with "d" */
    pg_token_key_t  *key;
};


/* err gets the message; returns PG_ERR, so that `return pg_token_error()`
 * reads as what it does. */
int pg_token_error(pg_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A string from a token or a file, fit for a one-line message, in q
 * (PG_TOKEN_QUOTE_LEN bytes): at most 40 bytes, anything but printable
 * ASCII (and '"', '\\') as '?'. Returns q. */
const char *pg_token_quote(char *q, const char *s, size_t len);

/* The key named kid[0..len), or NULL. */
const pg_token_key_t *pg_token_find(const pg_token_keys_t *keys,
    const char *kid, size_t len);


#endif /* PG_TOKEN_PRIVATE_H */
