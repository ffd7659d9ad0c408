/*
 * pg_token.c: company tokens verified; see pg_token.h. Signing and key
 * generation are in pg_token_sign.c, which the module does not compile.
 *
 * Sections: messages; names; keys (a JWK, a JWKS, a file); verifying.
 *
 * OpenSSL 3.0's libcrypto does the cryptography, through its EVP and
 * OSSL_PARAM interfaces only (nginx builds with -Werror, and the EC_KEY
 * ones are deprecated). Every failure path clears OpenSSL's error queue:
 * in nginx the queue is the worker's, and SSL_get_error() reads it, so an
 * error left there by a bad token would be blamed on a TLS connection.
 */

#include <errno.h>                  /* errno */
#include <fcntl.h>                  /* open, O_NONBLOCK */
#include <stdarg.h>                 /* va_list: the messages */
#include <stdio.h>                  /* vsnprintf, snprintf */
#include <stdlib.h>                 /* calloc, malloc, free */
#include <string.h>                 /* memchr, memcmp, memcpy, strlen */
#include <sys/stat.h>               /* fstat, S_ISREG */
#include <unistd.h>                 /* read, close */
#include <openssl/bn.h>             /* BIGNUM: r, s, d */
#include <openssl/core_names.h>     /* OSSL_PKEY_PARAM_* */
#include <openssl/crypto.h>         /* CRYPTO_memcmp, OPENSSL_cleanse */
#include <openssl/ec.h>             /* ECDSA_SIG: r||s -> DER */
#include <openssl/err.h>            /* ERR_clear_error */
#include <openssl/evp.h>            /* EVP_PKEY, EVP_DigestVerify */
#include <openssl/hmac.h>           /* HMAC */
#include <openssl/param_build.h>    /* OSSL_PARAM_BLD: a key from x, y, d */
#include "pg_b64.h"                 /* pg_b64url_decode */
#include "pg_token_private.h"       /* the API this file implements, and
                                       what pg_token_sign.c shares */


static int pg_token_reject(pg_token_result_t *res, pg_token_status_t status,
    pg_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));


/* --- messages -------------------------------------------------------- */

int
pg_token_error(pg_error_t *err, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    vsnprintf(err->text, sizeof(err->text), fmt, args);
    va_end(args);

    return PG_ERR;
}


static int
pg_token_reject(pg_token_result_t *res, pg_token_status_t status,
    pg_error_t *err, const char *fmt, ...)
{
    va_list  args;

    res->status = status;
    res->company[0] = '\0';
    res->company_len = 0;

    va_start(args, fmt);
    vsnprintf(err->text, sizeof(err->text), fmt, args);
    va_end(args);

    return PG_ERR;
}


/*
 * ": line L, column C" of a JSON error, in q (PG_TOKEN_QUOTE_LEN bytes):
 * where, never what (jansson's text quotes the input: the token).
 */
static const char *
pg_token_json_where(char *q, const json_error_t *jerr)
{
    snprintf(q, PG_TOKEN_QUOTE_LEN, ": line %d, column %d", jerr->line,
             jerr->column);

    return q;
}


const char *
pg_token_quote(char *q, const char *s, size_t len)
{
    size_t         i, n;
    unsigned char  c;

    n = len > 40 ? 40 : len;

    for (i = 0; i < n; i++) {
        c = (unsigned char) s[i];
        q[i] = (c < 0x20 || c > 0x7e || c == '"' || c == '\\') ? '?' : c;
    }

    if (n < len) {
        memcpy(q + n, "...", 4);

    } else {
        q[n] = '\0';
    }

    return q;
}


/* --- names ------------------------------------------------------------ */

const char *
pg_token_status_name(pg_token_status_t status)
{
    static const char  *names[] = {
        "",                 /* PG_TOKEN_VALID */
        "missing",          /* PG_TOKEN_MISSING */
        "malformed",        /* PG_TOKEN_MALFORMED */
        "alg",              /* PG_TOKEN_ALG */
        "unknown_kid",      /* PG_TOKEN_UNKNOWN_KID */
        "signature",        /* PG_TOKEN_SIGNATURE */
        "expired",          /* PG_TOKEN_EXPIRED */
        "not_yet_valid",    /* PG_TOKEN_NOT_YET_VALID */
        "claim"             /* PG_TOKEN_CLAIM */
    };

    if ((unsigned) status >= sizeof(names) / sizeof(names[0])) {
        return "malformed";
    }

    return names[status];
}


const char *
pg_token_alg_name(pg_token_alg_t alg)
{
    return alg == PG_TOKEN_ES256 ? "ES256" : "HS256";
}


int
pg_token_valid_claim(const char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (s == NULL || len == 0 || len > PG_TOKEN_CLAIM_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (c <= 0x20 || c > 0x7e || c == '"' || c == '\\') {
            return 0;
        }
    }

    /* the times are numbers the verifier reads itself, never a company */
    if ((len == 3 && (memcmp(s, "exp", 3) == 0 || memcmp(s, "nbf", 3) == 0
                      || memcmp(s, "iat", 3) == 0)))
    {
        return 0;
    }

    return 1;
}


/* --- keys ------------------------------------------------------------- */

/* A member holding exactly n bytes of base64url (n 0: any length up to
 * max), decoded into out. Returns the length, or -1 with err. */
static long
pg_token_member_b64(const json_t *jwk, const char *name, unsigned char *out,
    size_t n, size_t max, pg_error_t *err)
{
    size_t          len;
    json_t         *v;
    unsigned char   buf[PG_TOKEN_SECRET_MAX];

    v = json_object_get(jwk, name);

    if (!json_is_string(v)) {
        pg_token_error(err, "\"%s\" is missing or not a string", name);
        return -1;
    }

    if (PG_B64URL_DECODED_MAX(json_string_length(v)) > sizeof(buf)) {
        pg_token_error(err, "\"%s\" is too long: at most %zu bytes", name,
                       n ? n : max);
        return -1;
    }

    len = pg_b64url_decode(json_string_value(v), json_string_length(v), buf,
                           sizeof(buf));

    if (len == (size_t) -1) {
        pg_token_error(err, "\"%s\" is not base64url (RFC 4648 5, without "
                       "padding)", name);
        return -1;
    }

    if ((n != 0 && len != n) || len > max) {
        OPENSSL_cleanse(buf, len);

        if (n != 0) {
            pg_token_error(err, "\"%s\" is %zu bytes: P-256 needs %zu", name,
                           len, n);

        } else {
            pg_token_error(err, "\"%s\" is %zu bytes: at most %zu", name,
                           len, max);
        }

        return -1;
    }

    memcpy(out, buf, len);
    OPENSSL_cleanse(buf, len);

    return (long) len;
}


/* An EC P-256 key from its coordinates, and its private scalar when d is
 * not NULL; the point must be on the curve, and d must be its key. */
static EVP_PKEY *
pg_token_ec_key(const unsigned char *x, const unsigned char *y,
    const unsigned char *d, pg_error_t *err)
{
    int              ok;
    BIGNUM          *priv;
    EVP_PKEY        *pkey;
    OSSL_PARAM      *params;
    EVP_PKEY_CTX    *ctx, *check;
    unsigned char    pub[1 + 2 * PG_TOKEN_EC_LEN];
    OSSL_PARAM_BLD  *bld;

    pub[0] = 0x04;                      /* an uncompressed point */
    memcpy(pub + 1, x, PG_TOKEN_EC_LEN);
    memcpy(pub + 1 + PG_TOKEN_EC_LEN, y, PG_TOKEN_EC_LEN);

    pkey = NULL;
    params = NULL;
    ctx = NULL;
    check = NULL;
    priv = NULL;
    ok = 0;

    bld = OSSL_PARAM_BLD_new();

    if (bld == NULL
        || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                            "prime256v1", 0)
        || !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                             pub, sizeof(pub)))
    {
        goto done;
    }

    if (d != NULL) {
        priv = BN_bin2bn(d, PG_TOKEN_EC_LEN, NULL);

        if (priv == NULL
            || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv))
        {
            goto done;
        }
    }

    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);

    if (params == NULL || ctx == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey,
                             d ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
                             params) != 1)
    {
        goto done;
    }

    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);

    if (check == NULL || EVP_PKEY_public_check(check) != 1
        || (d != NULL && EVP_PKEY_pairwise_check(check) != 1))
    {
        goto done;
    }

    ok = 1;

done:

    if (!ok) {
        pg_token_error(err, d ? "\"d\" is not the private key of the point "
                                "(x, y), or the point is not on P-256"
                              : "(x, y) is not a point on P-256");
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }

    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(priv);
    ERR_clear_error();

    return pkey;
}


/* One JWK into key. *had_private is set when it held "d". */
static int
pg_token_jwk_parse(const json_t *jwk, int flags, pg_token_key_t *key,
    int *had_private, pg_error_t *err)
{
    int             ec;
    long            n;
    char            q[PG_TOKEN_QUOTE_LEN];
    json_t         *v;
    const char     *kty, *name, *s, **m;
    unsigned char   x[PG_TOKEN_EC_LEN], y[PG_TOKEN_EC_LEN];
    unsigned char   d[PG_TOKEN_EC_LEN], secret[PG_TOKEN_SECRET_MAX];

    static const char  *oct_members[] = { "kty", "kid", "alg", "use", "k",
                                          NULL };
    static const char  *ec_members[] = { "kty", "kid", "alg", "use", "crv",
                                         "x", "y", "d", NULL };

    *had_private = 0;

    if (!json_is_object(jwk)) {
        return pg_token_error(err, "not a JSON object");
    }

    kty = json_string_value(json_object_get(jwk, "kty"));

    if (kty == NULL) {
        return pg_token_error(err, "\"kty\" is missing or not a string");
    }

    if (strcmp(kty, "oct") == 0) {
        ec = 0;

    } else if (strcmp(kty, "EC") == 0) {
        ec = 1;

    } else {
        return pg_token_error(err, "kty \"%s\" is not supported: \"oct\" "
                              "(HS256) or \"EC\" (ES256)",
                              pg_token_quote(q, kty, strlen(kty)));
    }

    json_object_foreach((json_t *) jwk, name, v) {
        for (m = ec ? ec_members : oct_members; *m; m++) {
            if (strcmp(*m, name) == 0) {
                break;
            }
        }

        if (*m == NULL) {
            return pg_token_error(err, "unknown member \"%s\" for kty \"%s\"",
                                  pg_token_quote(q, name, strlen(name)), kty);
        }
    }

    key->alg = ec ? PG_TOKEN_ES256 : PG_TOKEN_HS256;

    v = json_object_get(jwk, "alg");

    if (v != NULL) {
        s = json_string_value(v);

        if (s == NULL || strcmp(s, pg_token_alg_name(key->alg)) != 0) {
            return pg_token_error(err, "alg \"%s\" does not fit kty \"%s\": "
                                  "%s", s ? pg_token_quote(q, s, strlen(s))
                                          : "(not a string)",
                                  kty, pg_token_alg_name(key->alg));
        }
    }

    v = json_object_get(jwk, "use");

    if (v != NULL) {
        s = json_string_value(v);

        if (s == NULL || strcmp(s, "sig") != 0) {
            return pg_token_error(err, "use \"%s\": only \"sig\" keys verify "
                                  "tokens", s ? pg_token_quote(q, s, strlen(s))
                                              : "(not a string)");
        }
    }

    if (!ec) {
        n = pg_token_member_b64(jwk, "k", secret, 0, sizeof(secret), err);

        if (n < 0) {
            return PG_ERR;
        }

        if (n < PG_TOKEN_SECRET_MIN) {
            OPENSSL_cleanse(secret, sizeof(secret));
            return pg_token_error(err, "\"k\" is %ld bytes: an HS256 secret "
                                  "needs at least %d (RFC 7518 3.2)", n,
                                  PG_TOKEN_SECRET_MIN);
        }

        key->secret = malloc((size_t) n);

        if (key->secret == NULL) {
            OPENSSL_cleanse(secret, sizeof(secret));
            return pg_token_error(err, "out of memory");
        }

        memcpy(key->secret, secret, (size_t) n);
        key->secret_len = (size_t) n;
        key->can_sign = 1;
        OPENSSL_cleanse(secret, sizeof(secret));

        return PG_OK;
    }

    s = json_string_value(json_object_get(jwk, "crv"));

    if (s == NULL) {
        return pg_token_error(err, "\"crv\" is missing or not a string");
    }

    if (strcmp(s, "P-256") != 0) {
        return pg_token_error(err, "crv \"%s\" is not supported: \"P-256\" "
                              "(ES256)", pg_token_quote(q, s, strlen(s)));
    }

    if (pg_token_member_b64(jwk, "x", x, PG_TOKEN_EC_LEN, sizeof(x), err) < 0
        || pg_token_member_b64(jwk, "y", y, PG_TOKEN_EC_LEN, sizeof(y), err)
           < 0)
    {
        return PG_ERR;
    }

    if (json_object_get(jwk, "d") != NULL) {
        if (pg_token_member_b64(jwk, "d", d, PG_TOKEN_EC_LEN, sizeof(d), err)
            < 0)
        {
            return PG_ERR;
        }

        *had_private = 1;
    }

    key->pkey = pg_token_ec_key(x, y,
                                (*had_private && (flags & PG_TOKEN_KEYS_SIGN))
                                ? d : NULL, err);
    OPENSSL_cleanse(d, sizeof(d));

    if (key->pkey == NULL) {
        return PG_ERR;
    }

    key->can_sign = *had_private && (flags & PG_TOKEN_KEYS_SIGN);

    return PG_OK;
}


int
pg_token_keys_from_json(const json_t *jwks, int flags,
    pg_token_keys_t **keys, pg_error_t *err)
{
    int               had_private;
    char              q[PG_TOKEN_QUOTE_LEN];
    size_t            i, j, n;
    json_t           *list, *jwk, *kid, *v;
    const char       *name, *s;
    pg_error_t        why;
    pg_token_key_t   *key;
    pg_token_keys_t  *set;

    *keys = NULL;

    if (!json_is_object(jwks)) {
        return pg_token_error(err, "not a JWKS: a JSON object "
                              "{\"keys\": [...]} is expected");
    }

    json_object_foreach((json_t *) jwks, name, v) {
        if (strcmp(name, "keys") != 0) {
            return pg_token_error(err, "unknown member \"%s\" (a JWKS holds "
                                  "\"keys\" only)",
                                  pg_token_quote(q, name, strlen(name)));
        }
    }

    list = json_object_get(jwks, "keys");

    if (!json_is_array(list)) {
        return pg_token_error(err, "\"keys\" is missing or not an array");
    }

    n = json_array_size(list);

    if (n == 0) {
        return pg_token_error(err, "no keys");
    }

    if (n > PG_TOKEN_KEYS_MAX) {
        return pg_token_error(err, "%zu keys: at most %d", n,
                              PG_TOKEN_KEYS_MAX);
    }

    set = calloc(1, sizeof(pg_token_keys_t));

    if (set == NULL || (set->key = calloc(n, sizeof(pg_token_key_t))) == NULL)
    {
        free(set);
        return pg_token_error(err, "out of memory");
    }

    for (i = 0; i < n; i++) {
        jwk = json_array_get(list, i);
        key = &set->key[i];

        /* the kid first: the other messages name the key by it */
        kid = json_is_object(jwk) ? json_object_get(jwk, "kid") : NULL;
        s = json_string_value(kid);

        if (s == NULL) {
            pg_token_error(err, "key %zu: \"kid\" is missing or not a "
                           "string", i + 1);
            goto failed;
        }

        key->kid_len = json_string_length(kid);

        for (j = 0; j < key->kid_len; j++) {
            if (s[j] < 0x20 || s[j] > 0x7e) {
                break;
            }
        }

        if (key->kid_len == 0 || key->kid_len > PG_TOKEN_KID_MAX
            || j < key->kid_len)
        {
            pg_token_error(err, "key %zu: kid \"%s\" is not 1 to %d "
                           "printable ASCII characters", i + 1,
                           pg_token_quote(q, s, key->kid_len),
                           PG_TOKEN_KID_MAX);
            goto failed;
        }

        memcpy(key->kid, s, key->kid_len);
        key->kid[key->kid_len] = '\0';

        for (j = 0; j < i; j++) {
            if (set->key[j].kid_len == key->kid_len
                && memcmp(set->key[j].kid, key->kid, key->kid_len) == 0)
            {
                pg_token_error(err, "kid \"%s\" is listed twice (keys %zu "
                               "and %zu)", pg_token_quote(q, s, key->kid_len),
                               j + 1, i + 1);
                goto failed;
            }
        }

        if (pg_token_jwk_parse(jwk, flags, key, &had_private, &why)
            != PG_OK)
        {
            pg_token_error(err, "key %zu (\"%s\"): %s", i + 1,
                           pg_token_quote(q, s, key->kid_len), why.text);
            goto failed;
        }

        set->nprivate += had_private;
        set->n = i + 1;
    }

    *keys = set;

    return PG_OK;

failed:

    set->n = n;                         /* free what any key holds */
    pg_token_keys_free(set);

    return PG_ERR;
}


int
pg_token_keys_parse(const char *text, size_t len, int flags,
    pg_token_keys_t **keys, pg_error_t *err)
{
    int           rc;
    json_t       *jwks;
    json_error_t  jerr;

    *keys = NULL;

    jwks = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);

    if (jwks == NULL) {
        return pg_token_error(err, "not JSON: line %d column %d: %s",
                              jerr.line, jerr.column, jerr.text);
    }

    rc = pg_token_keys_from_json(jwks, flags, keys, err);
    json_decref(jwks);

    return rc;
}


int
pg_token_keys_load(const char *path, int flags, pg_token_keys_t **keys,
    pg_error_t *err)
{
    int          fd, rc;
    char        *text;
    size_t       len;
    ssize_t      n;
    struct stat  st;

    *keys = NULL;

    /* O_NONBLOCK: a FIFO planted at the path must not hang nginx -t */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

    if (fd == -1) {
        return pg_token_error(err, "cannot open it: %s", strerror(errno));
    }

    if (fstat(fd, &st) == -1) {
        rc = errno;
        close(fd);
        return pg_token_error(err, "cannot stat it: %s", strerror(rc));
    }

    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pg_token_error(err, "not a regular file");
    }

    if (st.st_size > PG_TOKEN_FILE_MAX) {
        close(fd);
        return pg_token_error(err, "%lld bytes: a JWKS file is at most %d",
                              (long long) st.st_size, PG_TOKEN_FILE_MAX);
    }

    /* one byte more than the cap: a file that grew is seen to */
    text = malloc(PG_TOKEN_FILE_MAX + 1);

    if (text == NULL) {
        close(fd);
        return pg_token_error(err, "out of memory");
    }

    len = 0;

    for ( ;; ) {
        n = read(fd, text + len, PG_TOKEN_FILE_MAX + 1 - len);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n <= 0) {
            break;
        }

        len += (size_t) n;

        if (len > PG_TOKEN_FILE_MAX) {
            break;
        }
    }

    rc = errno;
    close(fd);

    if (n == -1) {
        free(text);
        return pg_token_error(err, "cannot read it: %s", strerror(rc));
    }

    if (len > PG_TOKEN_FILE_MAX) {
        free(text);
        return pg_token_error(err, "more than %d bytes: a JWKS file is at "
                              "most that", PG_TOKEN_FILE_MAX);
    }

    rc = pg_token_keys_parse(text, len, flags, keys, err);

    OPENSSL_cleanse(text, len);         /* HS256 secrets were in it */
    free(text);

    return rc;
}


void
pg_token_keys_free(pg_token_keys_t *keys)
{
    size_t  i;

    if (keys == NULL) {
        return;
    }

    for (i = 0; i < keys->n; i++) {
        if (keys->key[i].secret != NULL) {
            OPENSSL_cleanse(keys->key[i].secret, keys->key[i].secret_len);
            free(keys->key[i].secret);
        }

        EVP_PKEY_free(keys->key[i].pkey);
    }

    free(keys->key);
    free(keys);
}


size_t
pg_token_keys_count(const pg_token_keys_t *keys)
{
    return keys ? keys->n : 0;
}


size_t
pg_token_keys_private(const pg_token_keys_t *keys)
{
    return keys ? keys->nprivate : 0;
}


const char *
pg_token_keys_kid(const pg_token_keys_t *keys, size_t i, pg_token_alg_t *alg,
    int *can_sign)
{
    if (keys == NULL || i >= keys->n) {
        return NULL;
    }

    if (alg != NULL) {
        *alg = keys->key[i].alg;
    }

    if (can_sign != NULL) {
        *can_sign = keys->key[i].can_sign;
    }

    return keys->key[i].kid;
}


const pg_token_key_t *
pg_token_find(const pg_token_keys_t *keys, const char *kid, size_t len)
{
    size_t  i;

    for (i = 0; i < keys->n; i++) {
        if (keys->key[i].kid_len == len
            && memcmp(keys->key[i].kid, kid, len) == 0)
        {
            return &keys->key[i];
        }
    }

    return NULL;
}


/* --- verifying --------------------------------------------------------- */

/* sig on input with key: HMAC compared in constant time, or ECDSA with
 * JOSE's r||s turned into the DER that OpenSSL verifies. */
static int
pg_token_check(const pg_token_key_t *key, const unsigned char *input,
    size_t len, const unsigned char *sig, size_t siglen, pg_error_t *err)
{
    int             ok, derlen;
    BIGNUM         *r, *s;
    ECDSA_SIG      *es;
    EVP_MD_CTX     *mctx;
    unsigned int    mdlen;
    unsigned char   md[EVP_MAX_MD_SIZE], der[PG_TOKEN_DER_MAX], *p;

    if (key->alg == PG_TOKEN_HS256) {
        if (siglen != PG_TOKEN_HS_LEN) {
            return pg_token_error(err, "an HS256 signature is %d bytes, not "
                                  "%zu", PG_TOKEN_HS_LEN, siglen);
        }

        if (HMAC(EVP_sha256(), key->secret, (int) key->secret_len, input,
                 len, md, &mdlen) == NULL
            || mdlen != PG_TOKEN_HS_LEN)
        {
            ERR_clear_error();
            return pg_token_error(err, "HMAC-SHA-256 failed");
        }

        if (CRYPTO_memcmp(md, sig, PG_TOKEN_HS_LEN) != 0) {
            return pg_token_error(err, "the HS256 signature does not match "
                                  "key \"%s\"", key->kid);
        }

        return PG_OK;
    }

    if (siglen != 2 * PG_TOKEN_EC_LEN) {
        return pg_token_error(err, "an ES256 signature is %d bytes (r||s), "
                              "not %zu%s", 2 * PG_TOKEN_EC_LEN, siglen,
                              siglen > 0 && sig[0] == 0x30
                              ? " (a DER signature is refused)" : "");
    }

    ok = 0;
    mctx = NULL;
    r = BN_bin2bn(sig, PG_TOKEN_EC_LEN, NULL);
    s = BN_bin2bn(sig + PG_TOKEN_EC_LEN, PG_TOKEN_EC_LEN, NULL);
    es = ECDSA_SIG_new();

    if (r == NULL || s == NULL || es == NULL || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        goto done;
    }

    /* es owns r and s now */

    derlen = i2d_ECDSA_SIG(es, NULL);

    if (derlen <= 0 || derlen > (int) sizeof(der)) {
        goto done;
    }

    p = der;
    derlen = i2d_ECDSA_SIG(es, &p);

    mctx = EVP_MD_CTX_new();

    if (mctx != NULL
        && EVP_DigestVerifyInit(mctx, NULL, EVP_sha256(), NULL, key->pkey)
           == 1
        && EVP_DigestVerify(mctx, der, (size_t) derlen, input, len) == 1)
    {
        ok = 1;
    }

done:

    EVP_MD_CTX_free(mctx);
    ECDSA_SIG_free(es);

    if (!ok) {
        ERR_clear_error();
        return pg_token_error(err, "the ES256 signature does not verify with "
                              "key \"%s\"", key->kid);
    }

    return PG_OK;
}


int
pg_token_check_signature(const pg_token_keys_t *keys, const char *kid,
    pg_token_alg_t alg, const void *input, size_t len,
    const unsigned char *sig, size_t siglen, pg_error_t *err)
{
    const pg_token_key_t  *key;

    key = kid ? pg_token_find(keys, kid, strlen(kid)) : NULL;

    if (key == NULL) {
        return pg_token_error(err, "no key \"%s\"", kid ? kid : "(null)");
    }

    if (key->alg != alg) {
        return pg_token_error(err, "key \"%s\" is an %s key, not %s",
                              key->kid, pg_token_alg_name(key->alg),
                              pg_token_alg_name(alg));
    }

    return pg_token_check(key, input, len, sig, siglen, err);
}


uint32_t
pg_token_cache_hash(const char *token, size_t len, uint32_t seed)
{
    size_t  n;

    /* the tail only: hashing a 200-byte token whole cost a worker 50 ns a
     * request more, for no better spread */
    n = len < 32 ? len : 32;

    return pg_murmur3_32(token + len - n, n, seed ^ (uint32_t) len);
}


/* A NumericDate (RFC 7519 2) as whole seconds: an integer, or a real with
 * its fraction dropped, kept within +-2^62 so that sums cannot overflow. */
static int
pg_token_time(const json_t *v, int64_t *t)
{
    double  d;

    if (json_is_integer(v)) {
        *t = json_integer_value(v);

    } else if (json_is_real(v)) {
        d = json_real_value(v);
        *t = d >= 4.6e18 ? INT64_C(4600000000000000000)
             : d <= -4.6e18 ? -INT64_C(4600000000000000000)
             : (int64_t) d - ((double) (int64_t) d > d);

    } else {
        return PG_ERR;
    }

    if (*t > INT64_C(4611686018427387904)) {
        *t = INT64_C(4611686018427387904);

    } else if (*t < -INT64_C(4611686018427387904)) {
        *t = -INT64_C(4611686018427387904);
    }

    return PG_OK;
}


int
pg_token_verify(const pg_token_keys_t *keys, const char *token,
    size_t len, const char *claim, int64_t now, int64_t leeway,
    pg_token_result_t *res, pg_error_t *err)
{
    int                    rc;
    char                   q[PG_TOKEN_QUOTE_LEN], num[PG_TOKEN_INT_LEN];
    size_t                 hlen, plen, slen, n, claim_len;
    json_t                *header, *payload, *v;
    int64_t                exp, nbf;
    const char            *dot1, *dot2, *end, *s;
    json_error_t           jerr;
    pg_token_alg_t         alg;
    const pg_token_key_t  *key;
    unsigned char          buf[PG_TOKEN_MAX], *hdr, *pay, *sig;

    res->status = PG_TOKEN_VALID;
    res->company[0] = '\0';
    res->company_len = 0;
    res->exp = 0;

    if (claim == NULL) {
        claim = PG_TOKEN_DEFAULT_CLAIM;
    }

    if (len == 0 || token == NULL) {
        return pg_token_reject(res, PG_TOKEN_MISSING, err, "no token");
    }

    if (len > PG_TOKEN_MAX) {
        return pg_token_reject(res, PG_TOKEN_MALFORMED, err, "the token is "
                               "%zu bytes: at most %d", len, PG_TOKEN_MAX);
    }

    /* header.payload.signature: exactly two dots */
    end = token + len;
    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', end - dot1 - 1) : NULL;

    if (dot2 == NULL || memchr(dot2 + 1, '.', end - dot2 - 1) != NULL) {
        return pg_token_reject(res, PG_TOKEN_MALFORMED, err, "not a compact "
                               "JWS: three parts joined by '.' are "
                               "expected");
    }

    /* the three parts decode into one buffer: together they are at most
     * 3/4 of the token */
    hdr = buf;
    hlen = pg_b64url_decode(token, dot1 - token, hdr, sizeof(buf));

    if (hlen == (size_t) -1) {
        return pg_token_reject(res, PG_TOKEN_MALFORMED, err, "the header "
                               "is not base64url");
    }

    pay = hdr + hlen;
    plen = pg_b64url_decode(dot1 + 1, dot2 - dot1 - 1, pay,
                            sizeof(buf) - hlen);

    if (plen == (size_t) -1) {
        return pg_token_reject(res, PG_TOKEN_MALFORMED, err, "the payload "
                               "is not base64url");
    }

    sig = pay + plen;
    slen = pg_b64url_decode(dot2 + 1, end - dot2 - 1, sig,
                            sizeof(buf) - hlen - plen);

    if (slen == (size_t) -1) {
        return pg_token_reject(res, PG_TOKEN_MALFORMED, err, "the signature "
                               "is not base64url");
    }

    header = json_loadb((const char *) hdr, hlen, JSON_REJECT_DUPLICATES,
                        &jerr);

    if (!json_is_object(header)) {
        json_decref(header);
        /* where, not what: jansson's text quotes the token's bytes, and
         * the token is never logged */
        return pg_token_reject(res, PG_TOKEN_MALFORMED, err, "the header is "
                               "not a JSON object%s", header ? ""
                               : pg_token_json_where(q, &jerr));
    }

    payload = NULL;
    rc = PG_ERR;

    if (json_object_get(header, "crit") != NULL) {
        pg_token_reject(res, PG_TOKEN_MALFORMED, err, "the header has "
                        "\"crit\": no extension is understood");
        goto done;
    }

    v = json_object_get(header, "alg");
    s = json_string_value(v);

    if (s == NULL) {
        pg_token_reject(res, PG_TOKEN_ALG, err, "the header has no alg, or "
                        "not a string");
        goto done;
    }

    n = json_string_length(v);

    if (n == 5 && memcmp(s, "HS256", 5) == 0) {
        alg = PG_TOKEN_HS256;

    } else if (n == 5 && memcmp(s, "ES256", 5) == 0) {
        alg = PG_TOKEN_ES256;

    } else {
        pg_token_reject(res, PG_TOKEN_ALG, err, "alg \"%s\" is refused: "
                        "HS256 or ES256", pg_token_quote(q, s, n));
        goto done;
    }

    v = json_object_get(header, "kid");
    s = json_string_value(v);

    if (s == NULL) {
        pg_token_reject(res, PG_TOKEN_UNKNOWN_KID, err, "the header has no "
                        "kid, or not a string");
        goto done;
    }

    key = pg_token_find(keys, s, json_string_length(v));

    if (key == NULL) {
        pg_token_reject(res, PG_TOKEN_UNKNOWN_KID, err, "no key \"%s\" in "
                        "the JWKS",
                        pg_token_quote(q, s, json_string_length(v)));
        goto done;
    }

    /* an HS256 token must never be checked with an EC key's public
     * coordinates as the secret, nor the other way round */
    if (key->alg != alg) {
        pg_token_reject(res, PG_TOKEN_ALG, err, "alg %s with key \"%s\", an "
                        "%s key", pg_token_alg_name(alg), key->kid,
                        pg_token_alg_name(key->alg));
        goto done;
    }

    if (pg_token_check(key, (const unsigned char *) token, dot2 - token, sig,
                       slen, err)
        != PG_OK)
    {
        res->status = PG_TOKEN_SIGNATURE;
        goto done;
    }

    payload = json_loadb((const char *) pay, plen, JSON_REJECT_DUPLICATES,
                         &jerr);

    if (!json_is_object(payload)) {
        pg_token_reject(res, PG_TOKEN_MALFORMED, err, "the payload is not a "
                        "JSON object%s", payload ? ""
                        : pg_token_json_where(q, &jerr));
        goto done;
    }

    v = json_object_get(payload, "exp");

    if (v == NULL) {
        pg_token_reject(res, PG_TOKEN_CLAIM, err, "no exp: a company token "
                        "must expire");
        goto done;
    }

    if (pg_token_time(v, &exp) != PG_OK) {
        pg_token_reject(res, PG_TOKEN_CLAIM, err, "exp is not a number");
        goto done;
    }

    v = json_object_get(payload, "nbf");

    if (v != NULL && pg_token_time(v, &nbf) != PG_OK) {
        pg_token_reject(res, PG_TOKEN_CLAIM, err, "nbf is not a number");
        goto done;
    }

    /* valid while nbf - leeway <= now < exp + leeway */
    if (now - leeway >= exp) {
        pg_token_reject(res, PG_TOKEN_EXPIRED, err, "expired at %lld, now "
                        "%lld, leeway %lld s", (long long) exp,
                        (long long) now, (long long) leeway);
        goto done;
    }

    if (v != NULL && now + leeway < nbf) {
        pg_token_reject(res, PG_TOKEN_NOT_YET_VALID, err, "not valid before "
                        "%lld, now %lld, leeway %lld s", (long long) nbf,
                        (long long) now, (long long) leeway);
        goto done;
    }

    v = json_object_get(payload, claim);
    claim_len = strlen(claim);

    if (json_is_string(v)) {
        s = json_string_value(v);
        n = json_string_length(v);

    } else if (json_is_integer(v)) {
        n = (size_t) snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                              json_integer_value(v));
        s = num;

    } else {
        pg_token_reject(res, PG_TOKEN_CLAIM, err, "the claim \"%s\" is %s",
                        pg_token_quote(q, claim, claim_len),
                        v ? "not a string or an integer" : "missing");
        goto done;
    }

    if (!pg_valid_company(s, n)) {
        pg_token_reject(res, PG_TOKEN_CLAIM, err, "the claim \"%s\" is not "
                        "a valid company id ([A-Za-z0-9_.-]{1,64}, %zu bytes)",
                        pg_token_quote(q, claim, claim_len), n);
        goto done;
    }

    memcpy(res->company, s, n);
    res->company[n] = '\0';
    res->company_len = n;
    res->exp = exp;
    res->status = PG_TOKEN_VALID;
    rc = PG_OK;

done:

    json_decref(payload);
    json_decref(header);

    return rc;
}
