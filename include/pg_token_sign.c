/*
 * pg_token_sign.c: company tokens signed, and keys made; see pg_token.h.
 * For portal-gatectl and the tests: the module does not compile this file,
 * so an edge holds no code that mints a token.
 *
 * As in pg_token.c, every OpenSSL failure clears the error queue.
 */

#include <stdlib.h>                 /* malloc, free */
#include <string.h>                 /* strlen */
#include <openssl/bn.h>             /* BIGNUM: r, s, x, y, d */
#include <openssl/core_names.h>     /* OSSL_PKEY_PARAM_* */
#include <openssl/crypto.h>         /* OPENSSL_cleanse */
#include <openssl/ec.h>             /* ECDSA_SIG: DER -> r||s */
#include <openssl/err.h>            /* ERR_clear_error */
#include <openssl/evp.h>            /* EVP_DigestSign, EVP_PKEY_Q_keygen */
#include <openssl/hmac.h>           /* HMAC */
#include <openssl/rand.h>           /* RAND_bytes: HS256 secrets */
#include <openssl/sha.h>            /* SHA256: thumbprints */
#include "pg_b64.h"                 /* pg_b64url_encode */
#include "pg_token_private.h"       /* the API this file implements */


/* --- signing ----------------------------------------------------------- */

static const pg_token_key_t *
pg_token_signer(const pg_token_keys_t *keys, const char *kid,
    pg_error_t *err)
{
    size_t                 i;
    char                   q[PG_TOKEN_QUOTE_LEN];
    const pg_token_key_t  *key;

    if (kid == NULL) {
        for (i = keys->n; i > 0; i--) {
            if (keys->key[i - 1].can_sign) {
                return &keys->key[i - 1];
            }
        }

        pg_token_error(err, "no key can sign: an ES256 key needs its "
                       "private part \"d\"");
        return NULL;
    }

    key = pg_token_find(keys, kid, strlen(kid));

    if (key == NULL) {
        pg_token_error(err, "no key \"%s\"",
                       pg_token_quote(q, kid, strlen(kid)));
        return NULL;
    }

    if (!key->can_sign) {
        pg_token_error(err, "key \"%s\" cannot sign: an ES256 key needs its "
                       "private part \"d\"", key->kid);
        return NULL;
    }

    return key;
}


int
pg_token_sign_raw(const pg_token_keys_t *keys, const char *kid,
    const void *input, size_t len, unsigned char *sig, size_t *siglen,
    pg_token_alg_t *alg, pg_error_t *err)
{
    int                    ok;
    size_t                 derlen;
    ECDSA_SIG             *es;
    EVP_MD_CTX            *mctx;
    unsigned int           mdlen;
    const BIGNUM          *r, *s;
    const unsigned char   *p;
    const pg_token_key_t  *key;
    unsigned char          der[PG_TOKEN_DER_MAX];

    key = pg_token_signer(keys, kid, err);

    if (key == NULL) {
        return PG_ERR;
    }

    if (alg != NULL) {
        *alg = key->alg;
    }

    if (key->alg == PG_TOKEN_HS256) {
        if (HMAC(EVP_sha256(), key->secret, (int) key->secret_len, input,
                 len, sig, &mdlen) == NULL)
        {
            ERR_clear_error();
            return pg_token_error(err, "HMAC-SHA-256 failed");
        }

        *siglen = mdlen;
        return PG_OK;
    }

    ok = 0;
    es = NULL;
    derlen = 0;
    mctx = EVP_MD_CTX_new();

    if (mctx == NULL
        || EVP_DigestSignInit(mctx, NULL, EVP_sha256(), NULL, key->pkey) != 1
        || EVP_DigestSign(mctx, NULL, &derlen, input, len) != 1
        || derlen > sizeof(der)
        || EVP_DigestSign(mctx, der, &derlen, input, len) != 1)
    {
        goto done;
    }

    p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long) derlen);

    if (es == NULL) {
        goto done;
    }

    ECDSA_SIG_get0(es, &r, &s);

    /* JOSE: r and s as 32 bytes each, leading zeros kept (RFC 7518 3.4) */
    if (BN_bn2binpad(r, sig, PG_TOKEN_EC_LEN) != PG_TOKEN_EC_LEN
        || BN_bn2binpad(s, sig + PG_TOKEN_EC_LEN, PG_TOKEN_EC_LEN)
           != PG_TOKEN_EC_LEN)
    {
        goto done;
    }

    *siglen = 2 * PG_TOKEN_EC_LEN;
    ok = 1;

done:

    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(mctx);

    if (!ok) {
        ERR_clear_error();
        return pg_token_error(err, "ES256 signing with key \"%s\" failed",
                              key->kid);
    }

    return PG_OK;
}


int
pg_token_sign(const pg_token_keys_t *keys, const char *kid,
    const char *payload, size_t len, char **token, pg_error_t *err)
{
    char                  *hdr, *out;
    size_t                 hlen, n, siglen;
    json_t                *header;
    pg_token_alg_t         alg;
    const pg_token_key_t  *key;
    unsigned char          sig[PG_TOKEN_SIG_MAX];

    *token = NULL;

    key = pg_token_signer(keys, kid, err);

    if (key == NULL) {
        return PG_ERR;
    }

    header = json_pack("{s:s, s:s, s:s}", "alg", pg_token_alg_name(key->alg),
                       "kid", key->kid, "typ", "JWT");
    hdr = header ? json_dumps(header, JSON_COMPACT) : NULL;
    json_decref(header);

    if (hdr == NULL) {
        return pg_token_error(err, "out of memory");
    }

    hlen = strlen(hdr);
    n = PG_B64URL_LEN(hlen) + 1 + PG_B64URL_LEN(len) + 1
        + PG_B64URL_LEN(PG_TOKEN_SIG_MAX);

    if (n > PG_TOKEN_MAX) {
        free(hdr);
        return pg_token_error(err, "the token would be about %zu bytes: the "
                              "edge takes at most %d", n, PG_TOKEN_MAX);
    }

    out = malloc(n + 1);

    if (out == NULL) {
        free(hdr);
        return pg_token_error(err, "out of memory");
    }

    n = pg_b64url_encode((const unsigned char *) hdr, hlen, out, n + 1);
    free(hdr);
    out[n++] = '.';
    n += pg_b64url_encode((const unsigned char *) payload, len, out + n,
                          PG_TOKEN_MAX + 1 - n);

    if (pg_token_sign_raw(keys, key->kid, out, n, sig, &siglen, &alg, err)
        != PG_OK)
    {
        free(out);
        return PG_ERR;
    }

    out[n++] = '.';
    pg_b64url_encode(sig, siglen, out + n, PG_TOKEN_MAX + 1 - n);

    *token = out;

    return PG_OK;
}


int
pg_token_issue(const pg_token_keys_t *keys, const char *kid,
    const char *claim, const char *company, int64_t now, int64_t ttl,
    char **token, pg_error_t *err)
{
    int      rc;
    char    *text;
    json_t  *payload;

    *token = NULL;

    if (claim == NULL) {
        claim = PG_TOKEN_DEFAULT_CLAIM;
    }

    if (!pg_token_valid_claim(claim, strlen(claim))) {
        return pg_token_error(err, "invalid claim name: 1 to %d printable "
                              "characters, not exp, nbf or iat",
                              PG_TOKEN_CLAIM_MAX);
    }

    if (company == NULL || !pg_valid_company(company, strlen(company))) {
        return pg_token_error(err, "invalid company id: expected "
                              "[A-Za-z0-9_.-]{1,64}");
    }

    if (ttl <= 0 || ttl > INT64_C(1) << 40) {
        return pg_token_error(err, "invalid ttl: a token must expire, after "
                              "a positive number of seconds");
    }

    payload = json_pack("{s:s, s:I, s:I}", claim, company,
                        "iat", (json_int_t) now, "exp",
                        (json_int_t) (now + ttl));
    text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    json_decref(payload);

    if (text == NULL) {
        return pg_token_error(err, "out of memory");
    }

    rc = pg_token_sign(keys, kid, text, strlen(text), token, err);
    free(text);

    return rc;
}


/* --- key generation ----------------------------------------------------- */

/* jwk's RFC 7638 thumbprint: SHA-256 of its required members, sorted, no
 * whitespace, in base64url (43 characters). */
static int
pg_token_thumbprint(const json_t *jwk, char *out, size_t size)
{
    char           *text;
    json_t         *req;
    unsigned char   md[SHA256_DIGEST_LENGTH];

    if (json_object_get(jwk, "crv") != NULL) {
        req = json_pack("{s:O, s:O, s:O, s:O}",
                        "crv", json_object_get(jwk, "crv"),
                        "kty", json_object_get(jwk, "kty"),
                        "x", json_object_get(jwk, "x"),
                        "y", json_object_get(jwk, "y"));

    } else {
        req = json_pack("{s:O, s:O}", "k", json_object_get(jwk, "k"),
                        "kty", json_object_get(jwk, "kty"));
    }

    text = req ? json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(req);

    if (text == NULL) {
        return PG_ERR;
    }

    SHA256((const unsigned char *) text, strlen(text), md);
    free(text);

    return pg_b64url_encode(md, sizeof(md), out, size) == (size_t) -1
           ? PG_ERR : PG_OK;
}


json_t *
pg_token_jwk_new(pg_token_alg_t alg, const char *kid, pg_error_t *err)
{
    int             ok;
    char            x64[PG_B64URL_LEN(PG_TOKEN_EC_LEN) + 1];
    char            y64[PG_B64URL_LEN(PG_TOKEN_EC_LEN) + 1];
    char            d64[PG_B64URL_LEN(PG_TOKEN_EC_LEN) + 1];
    char            thumb[PG_B64URL_LEN(SHA256_DIGEST_LENGTH) + 1];
    size_t          i, len;
    BIGNUM         *x, *y, *d;
    json_t         *jwk, *req;
    EVP_PKEY       *pkey;
    unsigned char   xb[PG_TOKEN_EC_LEN], yb[PG_TOKEN_EC_LEN];
    unsigned char   db[PG_TOKEN_EC_LEN];

    if (kid != NULL) {
        len = strlen(kid);

        for (i = 0; i < len; i++) {
            if (kid[i] < 0x20 || kid[i] > 0x7e) {
                break;
            }
        }

        if (len == 0 || len > PG_TOKEN_KID_MAX || i < len) {
            pg_token_error(err, "invalid kid: 1 to %d printable ASCII "
                           "characters", PG_TOKEN_KID_MAX);
            return NULL;
        }
    }

    if (alg == PG_TOKEN_HS256) {
        /* 32 bytes: the size of the hash, as RFC 7518 3.2 asks */
        if (RAND_bytes(db, PG_TOKEN_EC_LEN) != 1) {
            ERR_clear_error();
            pg_token_error(err, "no random bytes for the secret");
            return NULL;
        }

        pg_b64url_encode(db, PG_TOKEN_EC_LEN, d64, sizeof(d64));
        OPENSSL_cleanse(db, sizeof(db));

        req = json_pack("{s:s, s:s}", "kty", "oct", "k", d64);

    } else {
        ok = 0;
        x = NULL;
        y = NULL;
        d = NULL;
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

        if (pkey != NULL
            && EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x)
            && EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y)
            && EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d)
            && BN_bn2binpad(x, xb, PG_TOKEN_EC_LEN) == PG_TOKEN_EC_LEN
            && BN_bn2binpad(y, yb, PG_TOKEN_EC_LEN) == PG_TOKEN_EC_LEN
            && BN_bn2binpad(d, db, PG_TOKEN_EC_LEN) == PG_TOKEN_EC_LEN)
        {
            ok = 1;
        }

        BN_free(x);
        BN_free(y);
        BN_clear_free(d);
        EVP_PKEY_free(pkey);
        ERR_clear_error();

        if (!ok) {
            OPENSSL_cleanse(db, sizeof(db));
            pg_token_error(err, "cannot make a P-256 key");
            return NULL;
        }

        /* RFC 7518 6.2.1.2: the full 32 bytes, leading zeros kept */
        pg_b64url_encode(xb, PG_TOKEN_EC_LEN, x64, sizeof(x64));
        pg_b64url_encode(yb, PG_TOKEN_EC_LEN, y64, sizeof(y64));
        pg_b64url_encode(db, PG_TOKEN_EC_LEN, d64, sizeof(d64));
        OPENSSL_cleanse(db, sizeof(db));

        req = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256",
                        "x", x64, "y", y64);
    }

    if (req == NULL
        || (kid == NULL
            && pg_token_thumbprint(req, thumb, sizeof(thumb)) != PG_OK))
    {
        json_decref(req);
        OPENSSL_cleanse(d64, sizeof(d64));
        pg_token_error(err, "out of memory");
        return NULL;
    }

    json_decref(req);

    /* the members in the order a reader looks for them */
    if (alg == PG_TOKEN_HS256) {
        jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "oct",
                        "kid", kid ? kid : thumb, "alg", "HS256",
                        "use", "sig", "k", d64);

    } else {
        jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                        "kty", "EC", "crv", "P-256", "kid", kid ? kid : thumb,
                        "alg", "ES256", "use", "sig", "x", x64, "y", y64,
                        "d", d64);
    }

    OPENSSL_cleanse(d64, sizeof(d64));

    if (jwk == NULL) {
        pg_token_error(err, "out of memory");
    }

    return jwk;
}


json_t *
pg_token_jwks_public(const json_t *jwks, pg_error_t *err)
{
    size_t            i;
    json_t           *copy, *jwk;
    pg_token_keys_t  *keys;

    if (pg_token_keys_from_json(jwks, 0, &keys, err) != PG_OK) {
        return NULL;
    }

    pg_token_keys_free(keys);

    copy = json_deep_copy(jwks);

    if (copy == NULL) {
        pg_token_error(err, "out of memory");
        return NULL;
    }

    json_array_foreach(json_object_get(copy, "keys"), i, jwk) {
        json_object_del(jwk, "d");
    }

    return copy;
}
