/*
 * pg_acme_msg.c: what the ACME client puts on the wire and reads back,
 * without the network: the JWS of every POST (ES256, the account's JWK
 * and its RFC 7638 thumbprint), problem documents, the directory's
 * profiles and renewalInfo, Retry-After. Declared in pg_acme_private.h,
 * tested alone by t/unit/test_acme.c; pg_acme.c holds the conversation.
 */

#include <errno.h>              /* errno: strtol */
#include <stdio.h>              /* snprintf, sscanf */
#include <stdlib.h>             /* malloc, free, strtol */
#include <string.h>             /* memcpy, memset, strlen, strcmp, strncmp */
#include <time.h>               /* timegm */
#include <openssl/bn.h>         /* BIGNUM, BN_bn2binpad */
#include <openssl/core_names.h> /* OSSL_PKEY_PARAM_* */
#include <openssl/ec.h>         /* ECDSA_SIG */
#include <openssl/err.h>        /* ERR_clear_error */
#include <openssl/obj_mac.h>    /* SN_X9_62_prime256v1 */
#include <openssl/sha.h>        /* SHA256 */
#include "pg_acme_private.h"    /* the API this file implements */
#include "pg_b64.h"             /* pg_b64url_encode */


#define PG_ACME_SHOWN        160            /* bytes of a URL in a message */


/* pg_acme_private.h: control characters become spaces, trailing ones go */
void
pg_acme_oneline(char *s)
{
    char  *end;

    for (end = s; *s != '\0'; s++) {
        if ((unsigned char) *s < ' ' || *s == 0x7f) {
            *s = ' ';
        }

        if (*s != ' ') {
            end = s + 1;
        }
    }

    *end = '\0';
}


/* --- the JWS (RFC 7515, 7518, 7638; RFC 8555 6.2) ------------------------ */

json_t *
pg_acme_jwk_new(EVP_PKEY *key, pg_error_t *err)
{
    char            group[64];
    char            x64[PG_B64URL_LEN(32) + 1], y64[PG_B64URL_LEN(32) + 1];
    BIGNUM         *x, *y;
    json_t         *jwk;
    unsigned char   xb[32], yb[32];

    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC
        || !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, sizeof(group), NULL)
        || strcmp(group, SN_X9_62_prime256v1) != 0)
    {
        ERR_clear_error();
        snprintf(err->text, sizeof(err->text), "the account key is not an "
                 "ECDSA P-256 key (ACME accounts are signed with ES256)");
        return NULL;
    }

    x = NULL;
    y = NULL;
    jwk = NULL;

    if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x)
        && EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y)
        && BN_bn2binpad(x, xb, 32) == 32
        && BN_bn2binpad(y, yb, 32) == 32)
    {
        /* RFC 7518 6.2.1.2: x and y are the full 32 bytes, leading zeros
         * kept */
        pg_b64url_encode(xb, 32, x64, sizeof(x64));
        pg_b64url_encode(yb, 32, y64, sizeof(y64));

        jwk = json_pack("{s:s, s:s, s:s, s:s}", "crv", "P-256", "kty", "EC",
                        "x", x64, "y", y64);
    }

    BN_free(x);
    BN_free(y);
    ERR_clear_error();

    if (jwk == NULL) {
        snprintf(err->text, sizeof(err->text), "cannot read the account "
                 "key's public point");
    }

    return jwk;
}


int
pg_acme_thumbprint(const json_t *jwk, char *out, pg_error_t *err)
{
    int             rc;
    char           *text;
    json_t         *req, *v;
    size_t          i;
    const char     *kty;
    const char    **members;
    unsigned char   md[SHA256_DIGEST_LENGTH];

    /* the required members of each key type (RFC 7638 3.2, RFC 8037 2),
     * sorted: the order of the hashed text */
    static const char  *ec[] = { "crv", "kty", "x", "y", NULL };
    static const char  *rsa[] = { "e", "kty", "n", NULL };
    static const char  *okp[] = { "crv", "kty", "x", NULL };

    kty = json_string_value(json_object_get(jwk, "kty"));

    if (kty == NULL) {
        snprintf(err->text, sizeof(err->text), "a JWK without \"kty\"");
        return PG_ERR;
    }

    if (strcmp(kty, "EC") == 0) {
        members = ec;

    } else if (strcmp(kty, "RSA") == 0) {
        members = rsa;

    } else if (strcmp(kty, "OKP") == 0) {
        members = okp;

    } else {
        snprintf(err->text, sizeof(err->text), "a JWK of unknown type "
                 "\"%.32s\"", kty);
        return PG_ERR;
    }

    req = json_object();

    for (i = 0; req != NULL && members[i] != NULL; i++) {
        v = json_object_get(jwk, members[i]);

        if (!json_is_string(v)) {
            snprintf(err->text, sizeof(err->text), "the %s JWK has no "
                     "\"%s\"", kty, members[i]);
            json_decref(req);
            return PG_ERR;
        }

        json_object_set(req, members[i], v);
    }

    /* JSON_SORT_KEYS and JSON_COMPACT: exactly RFC 7638's text (the
     * members' values are base64url and names: nothing to escape) */
    text = req ? json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(req);

    if (text == NULL) {
        snprintf(err->text, sizeof(err->text), "out of memory");
        return PG_ERR;
    }

    SHA256((const unsigned char *) text, strlen(text), md);
    free(text);

    rc = pg_b64url_encode(md, sizeof(md), out, PG_ACME_THUMB_LEN)
         == (size_t) -1 ? PG_ERR : PG_OK;

    if (rc != PG_OK) {
        snprintf(err->text, sizeof(err->text), "cannot encode a thumbprint");
    }

    return rc;
}


int
pg_acme_es256(EVP_PKEY *key, const char *data, size_t len,
    unsigned char sig[64], pg_error_t *err)
{
    int                   ok;
    size_t                dlen;
    EVP_MD_CTX           *md;
    ECDSA_SIG            *es;
    const BIGNUM         *r, *s;
    unsigned char         der[80];    /* an ECDSA-P256 DER is at most 72 */
    const unsigned char  *p;

    ok = 0;
    es = NULL;
    dlen = sizeof(der);
    md = EVP_MD_CTX_new();

    if (md != NULL
        && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1
        && EVP_DigestSign(md, der, &dlen, (const unsigned char *) data, len)
           == 1)
    {
        /* OpenSSL signs DER (SEQUENCE of two INTEGERs); JOSE wants the two
         * numbers as they are, 32 bytes each (NGINX-NOTES.md) */
        p = der;
        es = d2i_ECDSA_SIG(NULL, &p, (long) dlen);

        if (es != NULL) {
            ECDSA_SIG_get0(es, &r, &s);
            ok = BN_bn2binpad(r, sig, 32) == 32
                 && BN_bn2binpad(s, sig + 32, 32) == 32;
        }
    }

    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    ERR_clear_error();

    if (!ok) {
        snprintf(err->text, sizeof(err->text), "cannot sign with the "
                 "account key (ES256)");
        return PG_ERR;
    }

    return PG_OK;
}


char *
pg_acme_b64_new(const void *in, size_t n)
{
    char    *out;
    size_t   size;

    size = PG_B64URL_LEN(n) + 1;
    out = malloc(size);

    if (out != NULL) {
        pg_b64url_encode(in, n, out, size);
    }

    return out;
}


char *
pg_acme_jws(EVP_PKEY *key, const json_t *jwk, const char *kid,
    const char *nonce, const char *url, const char *payload,
    pg_error_t *err)
{
    char           *prot_text, *prot64, *pay64, *input, *sig64, *jws;
    json_t         *prot, *out;
    size_t          plen, ylen;
    unsigned char   sig[64];

    jws = NULL;
    prot_text = NULL;
    prot64 = NULL;
    pay64 = NULL;
    input = NULL;
    sig64 = NULL;
    out = NULL;

    prot = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "nonce", nonce,
                     "url", url);

    if (prot == NULL) {
        goto oom;
    }

    /* RFC 8555 6.2: "jwk" for newAccount (no account yet), "kid" after */
    if (kid != NULL) {
        json_object_set_new(prot, "kid", json_string(kid));

    } else {
        json_object_set(prot, "jwk", (json_t *) jwk);
    }

    prot_text = json_dumps(prot, JSON_COMPACT);
    json_decref(prot);

    if (prot_text == NULL) {
        goto oom;
    }

    /* POST-as-GET (RFC 8555 6.3): the payload is empty, not "{}" */
    if (payload == NULL) {
        payload = "";
    }

    prot64 = pg_acme_b64_new(prot_text, strlen(prot_text));
    pay64 = pg_acme_b64_new(payload, strlen(payload));

    if (prot64 == NULL || pay64 == NULL) {
        goto oom;
    }

    plen = strlen(prot64);
    ylen = strlen(pay64);
    input = malloc(plen + 1 + ylen + 1);

    if (input == NULL) {
        goto oom;
    }

    memcpy(input, prot64, plen);
    input[plen] = '.';
    memcpy(input + plen + 1, pay64, ylen + 1);

    if (pg_acme_es256(key, input, plen + 1 + ylen, sig, err) != PG_OK) {
        goto done;
    }

    sig64 = pg_acme_b64_new(sig, sizeof(sig));

    if (sig64 == NULL) {
        goto oom;
    }

    out = json_pack("{s:s, s:s, s:s}", "protected", prot64, "payload", pay64,
                    "signature", sig64);

    if (out == NULL || (jws = json_dumps(out, JSON_COMPACT)) == NULL) {
        goto oom;
    }

    goto done;

oom:

    snprintf(err->text, sizeof(err->text), "out of memory");

done:

    json_decref(out);
    free(prot_text);
    free(prot64);
    free(pay64);
    free(input);
    free(sig64);

    return jws;
}


/* --- answers: problems, directories, Retry-After ------------------------ */

void
pg_acme_problem(const char *body, size_t len, long status, const char *what,
    char *type, size_t size, pg_error_t *err)
{
    int           n;
    json_t       *doc, *sub, *ident;
    size_t        i, used;
    const char   *t, *detail, *value, *instance;

    if (type != NULL && size > 0) {
        type[0] = '\0';
    }

    doc = body != NULL && len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    t = json_string_value(json_object_get(doc, "type"));

    if (t == NULL) {
        snprintf(err->text, sizeof(err->text), "HTTP %ld from %.*s", status,
                 PG_ACME_SHOWN, what);
        json_decref(doc);
        return;
    }

    if (type != NULL && size > 0) {
        snprintf(type, size, "%s", t);
    }

    detail = json_string_value(json_object_get(doc, "detail"));

    if (detail != NULL && detail[0] != '\0') {
        n = snprintf(err->text, sizeof(err->text), "%s: %s", t, detail);

    } else {
        n = snprintf(err->text, sizeof(err->text), "%s (HTTP %ld from %.*s)",
                     t, status, PG_ACME_SHOWN, what);
    }

    used = n < 0 ? 0 : (size_t) n;

    /* RFC 8555 7.3.3: userActionRequired's instance is the page the
     * operator must visit (new terms of service): without it the message
     * says what to do but not where */
    instance = json_string_value(json_object_get(doc, "instance"));

    if (instance != NULL && instance[0] != '\0'
        && used < sizeof(err->text) - 1)
    {
        n = snprintf(err->text + used, sizeof(err->text) - used,
                     " (see %s)", instance);
        used += n < 0 ? 0 : (size_t) n;
    }

    /* RFC 8555 6.7.1: one subproblem per identifier that failed */
    json_array_foreach(json_object_get(doc, "subproblems"), i, sub) {
        if (used >= sizeof(err->text) - 1) {
            break;
        }

        ident = json_object_get(sub, "identifier");
        value = json_string_value(json_object_get(ident, "value"));
        detail = json_string_value(json_object_get(sub, "detail"));

        if (detail == NULL) {
            detail = json_string_value(json_object_get(sub, "type"));
        }

        n = snprintf(err->text + used, sizeof(err->text) - used, "; %s%s%s",
                     value ? value : "", value ? ": " : "",
                     detail ? detail : "(no detail)");
        used += n < 0 ? 0 : (size_t) n;
    }

    pg_acme_oneline(err->text);
    json_decref(doc);
}


int
pg_acme_dir_profile(const json_t *dir, const char *want, const char **send,
    pg_error_t *err)
{
    int          n;
    json_t      *profiles, *v;
    size_t       used;
    const char  *name;

    *send = NULL;

    if (want == NULL || want[0] == '\0') {
        return PG_OK;
    }

    profiles = json_object_get(json_object_get(dir, "meta"), "profiles");

    if (!json_is_object(profiles) || json_object_size(profiles) == 0) {
        return PG_OK;
    }

    if (json_object_get(profiles, want) != NULL) {
        *send = want;
        return PG_OK;
    }

    n = snprintf(err->text, sizeof(err->text), "the ACME server offers no "
                 "profile \"%.64s\"; it offers", want);
    used = n < 0 ? 0 : (size_t) n;

    /* in the directory's order (jansson keeps it) */
    json_object_foreach((json_t *) profiles, name, v) {
        if (used >= sizeof(err->text) - 1) {
            break;
        }

        n = snprintf(err->text + used, sizeof(err->text) - used, "%s %s",
                     used && err->text[used - 1] == 's' ? ":" : ",", name);
        used += n < 0 ? 0 : (size_t) n;
    }

    pg_acme_oneline(err->text);

    return PG_ERR;
}


const char *
pg_acme_dir_renewal_info(const json_t *dir)
{
    const char  *url;

    url = json_string_value(json_object_get(dir, "renewalInfo"));

    return url != NULL && url[0] != '\0' ? url : NULL;
}


long
pg_acme_retry_after(const char *value, time_t now)
{
    int          i, mday, year, hh, mm, ss;
    char         mon[4], *end;
    long         n;
    time_t       t;
    struct tm    tm;

    static const char  months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

    while (*value == ' ' || *value == '\t') {
        value++;
    }

    if (*value >= '0' && *value <= '9') {
        errno = 0;
        n = strtol(value, &end, 10);

        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') {
            end++;
        }

        return (errno == 0 && *end == '\0') ? n : -1;
    }

    /* IMF-fixdate (RFC 9110 5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT", read
     * without strptime, whose month names follow the locale */
    if (sscanf(value, "%*3s, %d %3s %d %d:%d:%d GMT", &mday, mon, &year, &hh,
               &mm, &ss) != 6)
    {
        return -1;
    }

    for (i = 0; i < 12; i++) {
        if (strncmp(months + 3 * i, mon, 3) == 0) {
            break;
        }
    }

    if (i == 12) {
        return -1;
    }

    memset(&tm, 0, sizeof(tm));
    tm.tm_mday = mday;
    tm.tm_mon = i;
    tm.tm_year = year - 1900;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;

    t = timegm(&tm);

    if (t == (time_t) -1) {
        return -1;
    }

    return t > now ? (long) (t - now) : 0;
}
