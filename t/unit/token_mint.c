/*
 * token_mint.c: makes keys and company tokens for the tests (t/35-token.t
 * and the others), good ones and deliberately broken ones, with the core's
 * own signer (include/pg_token.c). Perl has no ES256 without modules that
 * bookworm's perl lacks; this is the tests' minting tool.
 *
 *   test-token-mint keygen hs256|es256 KID      a JWK, private part included
 *   test-token-mint public JWKS_FILE            the JWKS without any "d"
 *   test-token-mint sign [OPTIONS] JWKS_FILE KID PAYLOAD
 *
 * sign: PAYLOAD is JSON text, used as it is (so it may be broken on
 * purpose); the header is {"alg":ALG,"kid":KID,"typ":"JWT"} for the key's
 * algorithm unless --header gives its text. Options:
 *   --header TEXT   the header's text, as it is
 *   --der           an ES256 signature in DER, as OpenSSL writes it
 *   --hmac SECRET   HMAC-SHA-256 with SECRET's bytes, whatever KID is (the
 *                   "switched alg" attack: HS256 keyed with a public key)
 *   --none          an empty signature (alg none)
 * The token goes to stdout with a newline; an error to stderr, exit 1.
 */

#include <stdio.h>              /* printf, fprintf */
#include <stdlib.h>             /* free */
#include <string.h>             /* strcmp, strlen */
#include <openssl/bn.h>         /* BN_bin2bn */
#include <openssl/ec.h>         /* ECDSA_SIG, i2d_ECDSA_SIG */
#include <openssl/evp.h>        /* EVP_sha256 */
#include <openssl/hmac.h>       /* HMAC */
#include "pg_b64.h"             /* pg_b64url_encode */
#include "pg_token.h"           /* the signer */


static int
mint_usage(void)
{
    fprintf(stderr, "usage: test-token-mint keygen hs256|es256 KID\n"
            "       test-token-mint public JWKS_FILE\n"
            "       test-token-mint sign [--header TEXT] [--der] "
            "[--hmac SECRET] [--none] JWKS_FILE KID PAYLOAD\n");
    return 2;
}


static int
mint_fail(const char *what, const char *why)
{
    fprintf(stderr, "test-token-mint: %s: %s\n", what, why);
    return 1;
}


/* s base64url-encoded; a static buffer. */
static const char *
mint_b64(const void *s, size_t len)
{
    static char  out[3 * PG_TOKEN_MAX];

    if (pg_b64url_encode(s, len, out, sizeof(out)) == (size_t) -1) {
        return "";
    }

    return out;
}


static int
mint_keygen(const char *alg, const char *kid)
{
    char        *text;
    json_t      *jwk;
    pg_error_t   err;

    if (strcmp(alg, "hs256") != 0 && strcmp(alg, "es256") != 0) {
        return mint_usage();
    }

    jwk = pg_token_jwk_new(strcmp(alg, "hs256") == 0 ? PG_TOKEN_HS256
                                                     : PG_TOKEN_ES256,
                           kid, &err);

    if (jwk == NULL) {
        return mint_fail("keygen", err.text);
    }

    text = json_dumps(jwk, JSON_COMPACT);
    json_decref(jwk);
    printf("%s\n", text);
    free(text);

    return 0;
}


static int
mint_public(const char *path)
{
    char          *text;
    json_t        *jwks, *pub;
    pg_error_t     err;
    json_error_t   jerr;

    jwks = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);

    if (jwks == NULL) {
        return mint_fail(path, jerr.text);
    }

    pub = pg_token_jwks_public(jwks, &err);
    json_decref(jwks);

    if (pub == NULL) {
        return mint_fail(path, err.text);
    }

    text = json_dumps(pub, JSON_COMPACT);
    json_decref(pub);
    printf("%s\n", text);
    free(text);

    return 0;
}


static int
mint_sign(int argc, char **argv)
{
    int               i, der, none, derlen;
    char             *input, hdr[512];
    size_t            len, siglen;
    BIGNUM           *r, *s;
    ECDSA_SIG        *es;
    const char       *header, *hmac, *path, *kid, *payload;
    pg_error_t        err;
    unsigned int      mdlen;
    unsigned char     sig[PG_TOKEN_SIG_MAX + 16], *q;
    pg_token_alg_t    alg;
    pg_token_keys_t  *keys;

    header = NULL;
    hmac = NULL;
    der = 0;
    none = 0;

    for (i = 0; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--der") == 0) {
            der = 1;

        } else if (strcmp(argv[i], "--none") == 0) {
            none = 1;

        } else if (strcmp(argv[i], "--header") == 0 && i + 1 < argc) {
            header = argv[++i];

        } else if (strcmp(argv[i], "--hmac") == 0 && i + 1 < argc) {
            hmac = argv[++i];

        } else {
            return mint_usage();
        }
    }

    if (argc - i != 3) {
        return mint_usage();
    }

    path = argv[i];
    kid = argv[i + 1];
    payload = argv[i + 2];

    if (pg_token_keys_load(path, PG_TOKEN_KEYS_SIGN, &keys, &err) != PG_OK) {
        return mint_fail(path, err.text);
    }

    alg = PG_TOKEN_HS256;

    for (i = 0; pg_token_keys_kid(keys, i, NULL, NULL) != NULL; i++) {
        if (strcmp(pg_token_keys_kid(keys, i, &alg, NULL), kid) == 0) {
            break;
        }
    }

    /* header.payload, then the signature of exactly that */
    input = malloc(3 * PG_TOKEN_MAX + 2 * strlen(payload) + 1024);

    if (input == NULL) {
        pg_token_keys_free(keys);
        return mint_fail("sign", "out of memory");
    }

    if (header == NULL) {
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"kid\":\"%s\","
                 "\"typ\":\"JWT\"}", pg_token_alg_name(alg), kid);
        header = hdr;
    }

    len = sprintf(input, "%s", mint_b64(header, strlen(header)));
    len += sprintf(input + len, ".%s", mint_b64(payload, strlen(payload)));

    if (none) {
        siglen = 0;

    } else if (hmac != NULL) {
        HMAC(EVP_sha256(), hmac, (int) strlen(hmac),
             (unsigned char *) input, len, sig, &mdlen);
        siglen = mdlen;

    } else if (pg_token_sign_raw(keys, kid, input, len, sig, &siglen, &alg,
                                 &err)
               != PG_OK)
    {
        free(input);
        pg_token_keys_free(keys);
        return mint_fail("sign", err.text);
    }

    if (der && siglen == 64) {
        r = BN_bin2bn(sig, 32, NULL);
        s = BN_bin2bn(sig + 32, 32, NULL);
        es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, r, s);
        q = sig;
        derlen = i2d_ECDSA_SIG(es, &q);
        ECDSA_SIG_free(es);
        siglen = (size_t) derlen;
    }

    printf("%s.%s\n", input, mint_b64(sig, siglen));

    free(input);
    pg_token_keys_free(keys);

    return 0;
}


int
main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "keygen") == 0) {
        return mint_keygen(argv[2], argv[3]);
    }

    if (argc == 3 && strcmp(argv[1], "public") == 0) {
        return mint_public(argv[2]);
    }

    if (argc >= 5 && strcmp(argv[1], "sign") == 0) {
        return mint_sign(argc - 2, argv + 2);
    }

    return mint_usage();
}
