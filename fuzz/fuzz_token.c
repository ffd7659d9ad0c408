/*
 * fuzz_token.c: the company tokens' core (include/pg_token.c), on what a
 * client or an operator can hand it. The first byte chooses:
 *
 *   0 mod 3  the rest is a token (a cookie, a header), verified against a
 *            fixed JWKS at a fixed time, with the next byte as the leeway;
 *   1 mod 3  the rest is a JWKS file's text, parsed;
 *   2 mod 3  the rest is "HEADER\nPAYLOAD", JSON text that the target
 *            encodes and signs with the key the header names (or hs1):
 *            a mutation of a signed token otherwise dies at the signature,
 *            this way the claims and their checks are reached.
 *
 * Checked besides "no crash": a verdict is one of the words, with a
 * message when it refuses and a valid company id when it accepts; the
 * same token gets the same verdict twice; a token over 4 KiB is
 * malformed; a token signed with the key its header names and the
 * algorithm of that key never fails at the signature, the alg or the kid;
 * a JWKS that loads has 1 to 64 keys with printable kids, and its public
 * part loads to the same keys.
 */

#include <stdio.h>          /* snprintf */
#include <stdlib.h>         /* malloc, free */
#include <string.h>         /* memchr, memcpy, strcmp, strlen */
#include "fuzz.h"           /* FUZZ_CHECK, LLVMFuzzerTestOneInput */
#include "pg_b64.h"         /* pg_b64url_encode */
#include "pg_token.h"       /* the API under test */


#define NOW  1700000000

/* RFC 7515 A.1's secret (hs1), another secret (hs2), A.3's key pair (es1):
 * fuzz/corpus/token/ was minted with these */
static const char  fuzz_jwks[] =
    "{\"keys\":["
    "{\"kty\":\"oct\",\"kid\":\"hs1\",\"k\":\"AyM1SysPpbyDfgZld3umj1qzKObwV"
    "MkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow\"},"
    "{\"kty\":\"oct\",\"kid\":\"hs2\",\"alg\":\"HS256\",\"use\":\"sig\","
    "\"k\":\"YW5vdGhlciBzZWNyZXQgb2YgYXQgbGVhc3QgMzIgYnl0ZXMh\"},"
    "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"es1\","
    "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
    "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\","
    "\"d\":\"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI\"}]}";

static pg_token_keys_t  *fuzz_keys;


static void
fuzz_verdict(const char *token, size_t len, int64_t leeway,
    pg_token_result_t *res)
{
    int                rc, again_rc;
    pg_error_t         err, again_err;
    pg_token_result_t  again;

    err.text[0] = '\0';
    rc = pg_token_verify(fuzz_keys, token, len, NULL, NOW, leeway, res, &err);

    FUZZ_CHECK(res->status <= PG_TOKEN_CLAIM, "status %d", (int) res->status);
    FUZZ_CHECK((rc == PG_OK) == (res->status == PG_TOKEN_VALID),
               "rc %d with status %s", rc,
               pg_token_status_name(res->status));

    if (rc == PG_OK) {
        FUZZ_CHECK(res->company_len == strlen(res->company)
                   && pg_valid_company(res->company, res->company_len),
                   "a valid token's company is no company id");
        FUZZ_CHECK(NOW - leeway < res->exp, "a valid token has expired");

    } else {
        FUZZ_CHECK(err.text[0] != '\0' && res->company_len == 0,
                   "a refusal without a message, or with a company");
    }

    if (len > PG_TOKEN_MAX) {
        FUZZ_CHECK(res->status == PG_TOKEN_MALFORMED, "%zu bytes: %s", len,
                   pg_token_status_name(res->status));
    }

    again_rc = pg_token_verify(fuzz_keys, token, len, NULL, NOW, leeway,
                               &again, &again_err);
    FUZZ_CHECK(again_rc == rc && again.status == res->status
               && strcmp(again.company, res->company) == 0,
               "the same token, another verdict");
}


static void
fuzz_jwks_text(const uint8_t *data, size_t size)
{
    size_t            i, n;
    json_t           *jwks, *pub;
    const char       *kid;
    pg_error_t        err;
    pg_token_keys_t  *keys, *pkeys;

    err.text[0] = '\0';

    if (pg_token_keys_parse((const char *) data, size, 0, &keys, &err)
        != PG_OK)
    {
        FUZZ_CHECK(err.text[0] != '\0' && keys == NULL,
                   "a refused JWKS without a message");
        return;
    }

    n = pg_token_keys_count(keys);
    FUZZ_CHECK(n >= 1 && n <= PG_TOKEN_KEYS_MAX, "%zu keys", n);

    for (i = 0; i < n; i++) {
        kid = pg_token_keys_kid(keys, i, NULL, NULL);
        FUZZ_CHECK(kid != NULL && kid[0] != '\0'
                   && strlen(kid) <= PG_TOKEN_KID_MAX, "key %zu's kid", i);
    }

    /* its public part loads to the same keys, none private */
    jwks = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES,
                      NULL);
    FUZZ_CHECK(jwks != NULL, "a JWKS that loads does not parse again");

    pub = pg_token_jwks_public(jwks, &err);
    FUZZ_CHECK(pub != NULL, "its public part fails: %s", err.text);
    FUZZ_CHECK(pg_token_keys_from_json(pub, 0, &pkeys, &err) == PG_OK
               && pg_token_keys_count(pkeys) == n
               && pg_token_keys_private(pkeys) == 0,
               "its public part does not load the same: %s", err.text);

    for (i = 0; i < n; i++) {
        FUZZ_CHECK(strcmp(pg_token_keys_kid(keys, i, NULL, NULL),
                          pg_token_keys_kid(pkeys, i, NULL, NULL)) == 0,
                   "key %zu's kid changed", i);
    }

    json_decref(pub);
    json_decref(jwks);
    pg_token_keys_free(pkeys);
    pg_token_keys_free(keys);
}


/* "HEADER\nPAYLOAD": encoded, signed with the key the header names. */
static void
fuzz_signed(const uint8_t *data, size_t size, int64_t leeway)
{
    int                 own;
    char               *tok;
    size_t              i, hlen, n, siglen;
    json_t             *header;
    const char         *kid, *alg, *name;
    const uint8_t      *nl;
    pg_error_t          err;
    pg_token_alg_t      kalg;
    unsigned char       sig[PG_TOKEN_SIG_MAX];
    pg_token_result_t   res;

    nl = memchr(data, '\n', size);

    if (nl == NULL || size > 3 * PG_TOKEN_MAX) {
        return;
    }

    hlen = nl - data;

    /* the key: the one the header's kid names, else hs1 */
    header = json_loadb((const char *) data, hlen, JSON_REJECT_DUPLICATES,
                        NULL);
    kid = json_string_value(json_object_get(header, "kid"));
    alg = json_string_value(json_object_get(header, "alg"));
    name = "hs1";
    own = 0;

    for (i = 0; pg_token_keys_kid(fuzz_keys, i, &kalg, NULL) != NULL; i++) {
        if (kid != NULL && strcmp(kid, pg_token_keys_kid(fuzz_keys, i, NULL,
                                                         NULL)) == 0
            && json_string_length(json_object_get(header, "kid"))
               == strlen(kid))
        {
            name = pg_token_keys_kid(fuzz_keys, i, NULL, NULL);
            own = alg != NULL && strcmp(alg, pg_token_alg_name(kalg)) == 0
                  && json_string_length(json_object_get(header, "alg"))
                     == strlen(alg)
                  && json_object_get(header, "crit") == NULL;
        }
    }

    n = PG_B64URL_LEN(hlen) + 1 + PG_B64URL_LEN(size - hlen - 1) + 1
        + PG_B64URL_LEN(PG_TOKEN_SIG_MAX) + 1;
    tok = malloc(n);
    FUZZ_CHECK(tok != NULL, "out of memory");

    i = pg_b64url_encode(data, hlen, tok, n);
    tok[i++] = '.';
    i += pg_b64url_encode(nl + 1, size - hlen - 1, tok + i, n - i);

    FUZZ_CHECK(pg_token_sign_raw(fuzz_keys, name, tok, i, sig, &siglen, NULL,
                                 &err) == PG_OK, "sign: %s", err.text);

    tok[i++] = '.';
    i += pg_b64url_encode(sig, siglen, tok + i, n - i);

    fuzz_verdict(tok, i, leeway, &res);

    if (own && i <= PG_TOKEN_MAX) {
        FUZZ_CHECK(res.status != PG_TOKEN_SIGNATURE
                   && res.status != PG_TOKEN_ALG
                   && res.status != PG_TOKEN_UNKNOWN_KID,
                   "signed by the key it names, refused: %s",
                   pg_token_status_name(res.status));
    }

    json_decref(header);
    free(tok);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pg_error_t         err;
    pg_token_result_t  res;

    if (fuzz_keys == NULL) {
        FUZZ_CHECK(pg_token_keys_parse(fuzz_jwks, strlen(fuzz_jwks),
                                       PG_TOKEN_KEYS_SIGN, &fuzz_keys, &err)
                   == PG_OK, "the fixed JWKS: %s", err.text);
    }

    if (size < 2) {
        return 0;
    }

    switch (data[0] % 3) {

    case 0:
        fuzz_verdict((const char *) data + 2, size - 2, data[1], &res);
        break;

    case 1:
        fuzz_jwks_text(data + 1, size - 1);
        break;

    default:
        fuzz_signed(data + 2, size - 2, data[1]);
        break;
    }

    return 0;
}
