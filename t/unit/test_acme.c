/*
 * test_acme.c: the ACME client's parts that need no CA (pg_acme_msg.c):
 * the JWS as a CA checks it (ES256 over protected.payload, r||s verified
 * after conversion back to DER), RFC 7638 thumbprints against the RFCs'
 * published examples, problem documents as an operator reads them,
 * profiles and renewalInfo from recorded directories, Retry-After; and
 * what pg_acme_issue() says before any network: libcurl not loaded, an
 * http:// directory, a bad account key, the key made at 0600, a CA that
 * is not there, a cancel; and pg_acme_issue() against a CA inside the
 * test (acme_ca.h) for what a real CA does not do on demand: hostile
 * orders, answers that never come, odd states and Retry-After.
 * t/unit-acme-pebble.t does the rest against pebble. TAP on stdout.
 */

#include <stdarg.h>             /* va_list: ca_log */
#include <stdio.h>              /* printf, snprintf, vsnprintf */
#include <stdlib.h>             /* free, malloc */
#include <string.h>             /* strcmp, strstr, strlen, memcmp */
#include <sys/stat.h>           /* stat, mkdir, mkfifo */
#include <sys/wait.h>           /* waitpid */
#include <unistd.h>             /* rmdir, unlink, fork, pipe, alarm */
#include <openssl/bn.h>         /* BN_bin2bn */
#include <openssl/ec.h>         /* ECDSA_SIG */
#include <openssl/evp.h>        /* EVP_EC_gen, EVP_DigestVerify */
#include <openssl/sha.h>        /* SHA256 */
#include "pg_acme.h"            /* pg_acme_issue, pg_acme_renewal_info */
#include "pg_acme_private.h"    /* what is tested here */
#include "pg_b64.h"             /* pg_b64url_encode */
#include "pg_cert.h"            /* pg_cert_key_*, pg_cert_write_file */
#include "pg_curl.h"            /* pg_curl_load */
#include "tap.h"                /* t_ok, t_diag */
#include "acme_ca.h"            /* a CA in the test: ca_install, ca_count */


/* Let's Encrypt's production directory as it answers since profiles came
 * (its keys sorted, as Go writes them, with its random entry). */
static const char *le_directory =
    "{\"Ao7JhnNrO4c\": \"https://community.letsencrypt.org/t/adding-random-"
    "entries-to-the-directory/33417\","
    " \"keyChange\": \"https://acme-v02.api.letsencrypt.org/acme/key-change\","
    " \"meta\": {\"caaIdentities\": [\"letsencrypt.org\"],"
    "  \"profiles\": {"
    "   \"classic\": \"https://letsencrypt.org/docs/profiles#classic\","
    "   \"shortlived\": \"https://letsencrypt.org/docs/profiles#shortlived\","
    "   \"tlsserver\": \"https://letsencrypt.org/docs/profiles#tlsserver\"},"
    "  \"termsOfService\": \"https://letsencrypt.org/documents/LE-SA-v1.5-"
    "February-24-2025.pdf\","
    "  \"website\": \"https://letsencrypt.org\"},"
    " \"newAccount\": \"https://acme-v02.api.letsencrypt.org/acme/new-acct\","
    " \"newNonce\": \"https://acme-v02.api.letsencrypt.org/acme/new-nonce\","
    " \"newOrder\": \"https://acme-v02.api.letsencrypt.org/acme/new-order\","
    " \"renewalInfo\": \"https://acme-v02.api.letsencrypt.org/draft-ietf-"
    "acme-ari-03/renewalInfo\","
    " \"revokeCert\": \"https://acme-v02.api.letsencrypt.org/acme/revoke-"
    "cert\"}";

/* Debian bookworm's pebble 2.4: no profiles, no renewalInfo. */
static const char *pebble_directory =
    "{\"keyChange\": \"https://127.0.0.1:14000/rollover-account-key\","
    " \"meta\": {\"externalAccountRequired\": false,"
    "  \"termsOfService\": \"data:text/plain,Do%20what%20thou%20wilt\"},"
    " \"newAccount\": \"https://127.0.0.1:14000/sign-me-up\","
    " \"newNonce\": \"https://127.0.0.1:14000/nonce-plz\","
    " \"newOrder\": \"https://127.0.0.1:14000/order-plz\","
    " \"revokeCert\": \"https://127.0.0.1:14000/revoke-cert\"}";


/* base64url without padding, decoded (new; NULL if it is not) */
static unsigned char *
b64url_decode(const char *in, size_t *n)
{
    int             v, bits;
    size_t          i, len;
    unsigned int    acc;
    unsigned char  *out;
    const char     *p;

    static const char  abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    len = strlen(in);
    out = malloc(len + 1);
    acc = 0;
    bits = 0;
    *n = 0;

    for (i = 0; i < len; i++) {
        p = strchr(abc, in[i]);

        if (p == NULL || in[i] == '\0') {
            free(out);
            return NULL;
        }

        v = (int) (p - abc);
        acc = (acc << 6) | (unsigned int) v;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            out[(*n)++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }

    out[*n] = '\0';

    return out;
}


/* A flattened JWS split into its decoded parts (new), and the signature
 * checked as a CA checks it: r||s back to DER, ES256 over the input. */
static int
jws_verify(const char *text, EVP_PKEY *key, json_t **prot, char **payload,
    size_t *siglen)
{
    int                   ok;
    char                 *input;
    json_t               *jws;
    size_t                n, dlen;
    BIGNUM               *r, *s;
    ECDSA_SIG            *es;
    EVP_MD_CTX           *md;
    unsigned char        *raw, *sig, *der, *p;
    const char           *p64, *y64, *s64;

    *prot = NULL;
    *payload = NULL;
    *siglen = 0;

    jws = json_loads(text, 0, NULL);
    p64 = json_string_value(json_object_get(jws, "protected"));
    y64 = json_string_value(json_object_get(jws, "payload"));
    s64 = json_string_value(json_object_get(jws, "signature"));

    if (p64 == NULL || y64 == NULL || s64 == NULL
        || json_object_size(jws) != 3)
    {
        json_decref(jws);
        return 0;
    }

    raw = b64url_decode(p64, &n);
    *prot = raw ? json_loadb((char *) raw, n, 0, NULL) : NULL;
    free(raw);
    *payload = (char *) b64url_decode(y64, &n);
    sig = b64url_decode(s64, siglen);

    ok = 0;

    if (sig != NULL && *siglen == 64) {
        r = BN_bin2bn(sig, 32, NULL);
        s = BN_bin2bn(sig + 32, 32, NULL);
        es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, r, s);
        der = NULL;
        dlen = (size_t) i2d_ECDSA_SIG(es, NULL);
        der = malloc(dlen);
        p = der;
        i2d_ECDSA_SIG(es, &p);

        input = malloc(strlen(p64) + 1 + strlen(y64) + 1);
        sprintf(input, "%s.%s", p64, y64);

        md = EVP_MD_CTX_new();
        ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1
             && EVP_DigestVerify(md, der, dlen, (unsigned char *) input,
                                 strlen(input)) == 1;

        EVP_MD_CTX_free(md);
        free(input);
        free(der);
        ECDSA_SIG_free(es);
    }

    free(sig);
    json_decref(jws);

    return ok;
}


static void
test_jws(void)
{
    int         ok, all;
    char       *jws, *payload, *text;
    json_t     *jwk, *prot, *j;
    size_t      siglen, i;
    EVP_PKEY   *key, *other, *rsa;
    pg_error_t  err;

    key = EVP_EC_gen("P-256");
    other = EVP_EC_gen("P-256");

    jwk = pg_acme_jwk_new(key, &err);
    t_ok(jwk != NULL, "the JWK of a P-256 key");
    t_ok(jwk != NULL && json_object_size(jwk) == 4
         && strcmp(json_string_value(json_object_get(jwk, "kty")), "EC") == 0
         && strcmp(json_string_value(json_object_get(jwk, "crv")), "P-256")
            == 0
         && strlen(json_string_value(json_object_get(jwk, "x"))) == 43
         && strlen(json_string_value(json_object_get(jwk, "y"))) == 43,
         "JWK: kty EC, crv P-256, x and y of 32 bytes (43 characters)");

    /* newAccount: the jwk goes in the protected header */
    jws = pg_acme_jws(key, jwk, NULL, "nonce-1", "https://ca/new-acct",
                      "{\"termsOfServiceAgreed\":true}", &err);
    t_ok(jws != NULL, "a JWS with jwk");
    ok = jws && jws_verify(jws, key, &prot, &payload, &siglen);
    t_ok(ok, "its ES256 signature verifies (r||s back to DER)");
    t_ok(siglen == 64, "the signature is r||s, 64 bytes (%zu)", siglen);
    t_ok(prot != NULL
         && strcmp(json_string_value(json_object_get(prot, "alg")), "ES256")
            == 0
         && strcmp(json_string_value(json_object_get(prot, "nonce")),
                   "nonce-1") == 0
         && strcmp(json_string_value(json_object_get(prot, "url")),
                   "https://ca/new-acct") == 0
         && json_equal(json_object_get(prot, "jwk"), jwk)
         && json_object_get(prot, "kid") == NULL,
         "protected: alg ES256, nonce, url, the jwk and no kid");
    t_ok(payload != NULL
         && strcmp(payload, "{\"termsOfServiceAgreed\":true}") == 0,
         "payload: the JSON text as given");
    json_decref(prot);
    free(payload);

    if (jws != NULL) {
        ok = jws_verify(jws, other, &prot, &payload, &siglen);
        t_ok(!ok, "another key does not verify it");
        json_decref(prot);
        free(payload);

        /* a byte of the payload changed: the signature no longer holds */
        j = json_loads(jws, 0, NULL);
        text = (char *) json_string_value(json_object_get(j, "payload"));
        text[1] = text[1] == 'A' ? 'B' : 'A';
        free(jws);
        jws = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        ok = jws_verify(jws, key, &prot, &payload, &siglen);
        t_ok(!ok, "a changed payload does not verify");
        json_decref(prot);
        free(payload);
    }

    free(jws);

    /* after newAccount: kid, no jwk; POST-as-GET: an empty payload */
    jws = pg_acme_jws(key, jwk, "https://ca/acct/7", "nonce-2",
                      "https://ca/authz/1", NULL, &err);
    ok = jws && jws_verify(jws, key, &prot, &payload, &siglen);
    t_ok(ok, "a POST-as-GET with kid verifies");
    t_ok(prot != NULL
         && strcmp(json_string_value(json_object_get(prot, "kid")),
                   "https://ca/acct/7") == 0
         && json_object_get(prot, "jwk") == NULL,
         "protected: the kid and no jwk");
    t_ok(payload != NULL && payload[0] == '\0' && jws != NULL
         && strstr(jws, "\"payload\":\"\"") != NULL,
         "POST-as-GET: the payload is empty, not {}");
    json_decref(prot);
    free(payload);
    free(jws);

    /* one signature in 128 has an r or s below 2^248: its leading zero
     * byte must be kept, or a CA refuses that request at random */
    all = 1;

    for (i = 0; i < 600; i++) {
        char  url[64];

        snprintf(url, sizeof(url), "https://ca/order/%zu", i);
        jws = pg_acme_jws(key, jwk, "https://ca/acct/7", "n", url, "{}",
                          &err);
        ok = jws && jws_verify(jws, key, &prot, &payload, &siglen)
             && siglen == 64;
        json_decref(prot);
        free(payload);
        free(jws);

        if (!ok) {
            all = 0;
            t_diag("signature %zu did not verify", i);
            break;
        }
    }

    t_ok(all, "600 signatures in a row verify (short r and s padded)");

    /* an RSA account key is refused, with a reason */
    rsa = pg_cert_key_new(PG_CERT_KEY_RSA, &err);
    j = pg_acme_jwk_new(rsa, &err);
    t_ok(j == NULL && strstr(err.text, "P-256") != NULL,
         "an RSA account key is refused: %s", err.text);
    json_decref(j);
    EVP_PKEY_free(rsa);

    json_decref(jwk);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}


static void
test_thumbprint(void)
{
    char            thumb[PG_ACME_THUMB_LEN], want[PG_ACME_THUMB_LEN];
    json_t         *jwk;
    pg_error_t      err;
    const char     *canon;
    unsigned char   md[SHA256_DIGEST_LENGTH];

    /* RFC 7638 3.1: the RSA key of RFC 7517 A.1, with alg and kid (not
     * hashed) */
    jwk = json_loads(
        "{\"kty\": \"RSA\", \"n\": \"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2a"
        "iAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCi"
        "FV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65"
        "YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn"
        "1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-"
        "G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw\", \"e\": \"AQAB\","
        " \"alg\": \"RS256\", \"kid\": \"2011-04-29\"}", 0, NULL);
    t_ok(pg_acme_thumbprint(jwk, thumb, &err) == PG_OK
         && strcmp(thumb, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs") == 0,
         "RFC 7638 3.1's example: %s", thumb);
    json_decref(jwk);

    /* RFC 8037 A.3: an OKP key, members given out of order */
    jwk = json_loads("{\"x\": \"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\","
                     " \"kty\": \"OKP\", \"crv\": \"Ed25519\"}", 0, NULL);
    t_ok(pg_acme_thumbprint(jwk, thumb, &err) == PG_OK
         && strcmp(thumb, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k") == 0,
         "RFC 8037 A.3's example: %s", thumb);
    json_decref(jwk);

    /* EC: crv, kty, x, y in that order whatever the JWK's, extra members
     * left out; computed independently here */
    jwk = json_loads("{\"y\": \"YYY\", \"use\": \"sig\", \"x\": \"XXX\","
                     " \"kty\": \"EC\", \"kid\": \"k\", \"crv\": \"P-256\"}",
                     0, NULL);
    canon = "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"XXX\",\"y\":\"YYY\"}";
    SHA256((const unsigned char *) canon, strlen(canon), md);
    pg_b64url_encode(md, sizeof(md), want, sizeof(want));
    t_ok(pg_acme_thumbprint(jwk, thumb, &err) == PG_OK
         && strcmp(thumb, want) == 0,
         "EC: the required members sorted, the others left out");
    json_decref(jwk);

    jwk = json_loads("{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"X\"}",
                     0, NULL);
    t_ok(pg_acme_thumbprint(jwk, thumb, &err) == PG_ERR
         && strstr(err.text, "\"y\"") != NULL,
         "an EC JWK without y is refused: %s", err.text);
    json_decref(jwk);
}


static void
test_problem(void)
{
    char        type[128];
    pg_error_t  err;
    const char *doc;

    /* RFC 8555 6.7.1's example */
    doc = "{\"type\": \"urn:ietf:params:acme:error:malformed\","
          " \"detail\": \"Some of the identifiers requested were rejected\","
          " \"subproblems\": ["
          "  {\"type\": \"urn:ietf:params:acme:error:malformed\","
          "   \"detail\": \"Invalid underscore in DNS name \\\"_example.org\\\"\","
          "   \"identifier\": {\"type\": \"dns\", \"value\": \"_example.org\"}},"
          "  {\"type\": \"urn:ietf:params:acme:error:rejectedIdentifier\","
          "   \"detail\": \"This CA will not issue for \\\"example.net\\\"\","
          "   \"identifier\": {\"type\": \"dns\", \"value\": \"example.net\"}}"
          " ]}";
    pg_acme_problem(doc, strlen(doc), 403, "https://ca/new-order", type,
                    sizeof(type), &err);
    t_ok(strcmp(err.text, "urn:ietf:params:acme:error:malformed: Some of the "
                "identifiers requested were rejected; _example.org: Invalid "
                "underscore in DNS name \"_example.org\"; example.net: This "
                "CA will not issue for \"example.net\"") == 0,
         "a problem with subproblems: %s", err.text);
    t_ok(strcmp(type, "urn:ietf:params:acme:error:malformed") == 0,
         "its type is given back");

    doc = "{\"type\":\"urn:ietf:params:acme:error:badNonce\","
          "\"detail\":\"JWS has an invalid anti-replay nonce: \\\"x\\\"\","
          "\"status\":400}";
    pg_acme_problem(doc, strlen(doc), 400, "https://ca/x", type,
                    sizeof(type), &err);
    t_ok(strcmp(type, "urn:ietf:params:acme:error:badNonce") == 0
         && strcmp(err.text, "urn:ietf:params:acme:error:badNonce: JWS has "
                   "an invalid anti-replay nonce: \"x\"") == 0,
         "badNonce: %s", err.text);

    doc = "{\"type\":\"urn:ietf:params:acme:error:rateLimited\","
          "\"detail\":\"too many certificates\\nalready issued\\r\"}";
    pg_acme_problem(doc, strlen(doc), 429, "https://ca/x", NULL, 0, &err);
    t_ok(strchr(err.text, '\n') == NULL && strchr(err.text, '\r') == NULL
         && strstr(err.text, "rateLimited: too many certificates already "
                   "issued") != NULL
         && err.text[strlen(err.text) - 1] == 'd',
         "a detail on several lines is one line: %s", err.text);

    doc = "{\"type\":\"urn:ietf:params:acme:error:serverInternal\"}";
    pg_acme_problem(doc, strlen(doc), 500, "https://ca/x", NULL, 0, &err);
    t_ok(strcmp(err.text, "urn:ietf:params:acme:error:serverInternal (HTTP "
                "500 from https://ca/x)") == 0,
         "no detail: the type and the status: %s", err.text);

    doc = "<html><body>502 Bad Gateway</body></html>";
    pg_acme_problem(doc, strlen(doc), 502, "https://ca/directory", type,
                    sizeof(type), &err);
    t_ok(strcmp(err.text, "HTTP 502 from https://ca/directory") == 0
         && type[0] == '\0',
         "not a problem document: %s", err.text);

    /* RFC 8555 7.3.3's example: where to go is the instance */
    doc = "{\"type\": \"urn:ietf:params:acme:error:userActionRequired\","
          " \"detail\": \"Terms of service have changed\","
          " \"instance\": \"https://example.com/acme/agreement/?token="
          "W8Ih3PswD-8\"}";
    pg_acme_problem(doc, strlen(doc), 403, "https://ca/new-order", NULL, 0,
                    &err);
    t_ok(strcmp(err.text, "urn:ietf:params:acme:error:userActionRequired: "
                "Terms of service have changed (see https://example.com/acme/"
                "agreement/?token=W8Ih3PswD-8)") == 0,
         "userActionRequired keeps its instance, the page to visit: %s",
         err.text);

    pg_acme_problem(NULL, 0, 503, "https://ca/directory", NULL, 0, &err);
    t_ok(strcmp(err.text, "HTTP 503 from https://ca/directory") == 0,
         "no body: %s", err.text);
}


static void
test_directory(void)
{
    json_t      *le, *pebble;
    pg_error_t   err;
    const char  *send;

    le = json_loads(le_directory, 0, NULL);
    pebble = json_loads(pebble_directory, 0, NULL);
    t_ok(le != NULL && pebble != NULL, "the recorded directories parse");

    t_ok(pg_acme_dir_profile(le, "tlsserver", &send, &err) == PG_OK
         && send != NULL && strcmp(send, "tlsserver") == 0,
         "a listed profile is sent");
    t_ok(pg_acme_dir_profile(le, "shortlived", &send, &err) == PG_OK
         && send != NULL && strcmp(send, "shortlived") == 0,
         "shortlived is sent");
    t_ok(pg_acme_dir_profile(le, NULL, &send, &err) == PG_OK && send == NULL,
         "no profile asked: none sent");
    t_ok(pg_acme_dir_profile(le, "", &send, &err) == PG_OK && send == NULL,
         "an empty profile: none sent");
    t_ok(pg_acme_dir_profile(le, "short", &send, &err) == PG_ERR
         && strcmp(err.text, "the ACME server offers no profile \"short\"; "
                   "it offers: classic, shortlived, tlsserver") == 0,
         "an unknown profile is refused with the list: %s", err.text);
    t_ok(pg_acme_dir_profile(pebble, "tlsserver", &send, &err) == PG_OK
         && send == NULL,
         "a CA that lists no profiles: the profile is not sent");

    t_ok(pg_acme_dir_renewal_info(le) != NULL
         && strcmp(pg_acme_dir_renewal_info(le), "https://acme-v02.api."
                   "letsencrypt.org/draft-ietf-acme-ari-03/renewalInfo") == 0,
         "Let's Encrypt's directory has renewalInfo");
    t_ok(pg_acme_dir_renewal_info(pebble) == NULL,
         "pebble 2.4's has none");

    json_decref(le);
    json_decref(pebble);
}


static void
test_retry_after(void)
{
    time_t  now;

    now = 784111777;    /* Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110) */

    t_ok(pg_acme_retry_after("120", now) == 120, "Retry-After: 120");
    t_ok(pg_acme_retry_after(" 3 ", now) == 3, "Retry-After with spaces");
    t_ok(pg_acme_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now) == 120,
         "Retry-After as an HTTP-date: seconds from now");
    t_ok(pg_acme_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now) == 0,
         "an HTTP-date past: 0");
    t_ok(pg_acme_retry_after("soon", now) == -1, "garbage: -1");
    t_ok(pg_acme_retry_after("12abc", now) == -1, "a number and garbage: -1");
}


static int
no_challenge(void *ctx, const char *token, const char *key_authorization,
    int add, pg_error_t *err)
{
    (void) ctx;
    (void) token;
    (void) key_authorization;
    (void) add;
    (void) err;

    return PG_OK;
}


/* Before any network: curl not loaded, a bad directory URL, the account
 * key made or refused, no CA there, a cancel. */
static void
test_issue_offline(void)
{
    int             rc;
    char            dir[] = "/tmp/test-acme-XXXXXX", path[256], rsa_path[256];
    char           *chain, *pem, *names[1];
    long            retry_after;
    size_t          len;
    time_t          start, end;
    EVP_PKEY       *cert_key, *key, *rsa;
    struct stat     st, st2;
    pg_error_t      err;
    volatile int    cancel;
    pg_acme_conf_t  conf;

    t_ok(mkdtemp(dir) != NULL, "a scratch folder");
    snprintf(path, sizeof(path), "%s/account.key", dir);
    snprintf(rsa_path, sizeof(rsa_path), "%s/rsa.key", dir);

    names[0] = "a.test";
    cert_key = EVP_EC_gen("P-256");

    memset(&conf, 0, sizeof(conf));
    conf.directory = "https://127.0.0.1:1/dir";     /* nothing listens */
    conf.account_key = path;
    conf.challenge = no_challenge;
    conf.timeout = 5;

    rc = pg_acme_issue(&conf, names, 1, cert_key, &chain, &len, &retry_after,
                       &err);
    t_ok(rc == PG_ERR && strstr(err.text, "pg_curl_load()") != NULL,
         "before libcurl is loaded: %s", err.text);

    t_ok(pg_curl_load(&err) == PG_OK, "libcurl loads");

    conf.directory = "http://127.0.0.1:1/dir";
    rc = pg_acme_issue(&conf, names, 1, cert_key, &chain, &len, &retry_after,
                       &err);
    t_ok(rc == PG_ERR && strstr(err.text, "https://") != NULL,
         "an http:// directory is refused: %s", err.text);

    /* an RSA account key is refused before the CA is asked */
    rsa = pg_cert_key_new(PG_CERT_KEY_RSA, &err);
    rc = pg_cert_key_pem(rsa, &pem, &len, &err);
    rc = rc == PG_OK ? pg_cert_write_file(rsa_path, pem, len, 0600, &err)
                     : rc;
    free(pem);
    EVP_PKEY_free(rsa);
    conf.account_key = rsa_path;
    conf.directory = "https://127.0.0.1:1/dir";
    rc = pg_acme_issue(&conf, names, 1, cert_key, &chain, &len, &retry_after,
                       &err);
    t_ok(rc == PG_ERR && strstr(err.text, rsa_path) != NULL
         && strstr(err.text, "P-256") != NULL,
         "an RSA account key is refused: %s", err.text);

    /* no account key yet: made at 0600, even though the CA is not there */
    conf.account_key = path;
    rc = pg_acme_issue(&conf, names, 1, cert_key, &chain, &len, &retry_after,
                       &err);
    t_ok(rc == PG_ERR && strstr(err.text, "cannot reach the ACME server")
         != NULL && strstr(err.text, "https://127.0.0.1:1/dir") != NULL,
         "no CA there: %s", err.text);
    t_ok(retry_after == 0, "no Retry-After without an answer");
    memset(&st, 0, sizeof(st));
    rc = stat(path, &st);
    t_ok(rc == 0 && (st.st_mode & 0777) == 0600,
         "the account key was made, mode 0600 (%o)", st.st_mode & 0777);
    key = pg_cert_key_load(path, &err);
    t_ok(key != NULL && EVP_PKEY_get_base_id(key) == EVP_PKEY_EC,
         "it is an EC key");
    EVP_PKEY_free(key);

    rc = pg_acme_issue(&conf, names, 1, cert_key, &chain, &len, &retry_after,
                       &err);
    t_ok(stat(path, &st2) == 0 && st2.st_ino == st.st_ino
         && st2.st_mtime == st.st_mtime,
         "the next call reuses it, untouched");

    rc = pg_acme_renewal_info(&conf, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
                              &start, &end, &retry_after, &err);
    t_ok(rc == PG_ERR && strstr(err.text, "cannot reach") != NULL,
         "renewal_info, no CA there: %s", err.text);

    cancel = 1;
    conf.cancel = &cancel;
    rc = pg_acme_issue(&conf, names, 1, cert_key, &chain, &len, &retry_after,
                       &err);
    t_ok(rc == PG_ERR && strcmp(err.text, "cancelled") == 0,
         "cancelled: %s", err.text);

    EVP_PKEY_free(cert_key);
    unlink(path);
    unlink(rsa_path);
    rmdir(dir);
}


/* --- against the CA of acme_ca.h ------------------------------------------ */

/* The challenge callback's record ("+tok1 -tok1 "), and its failure. */
typedef struct {
    char   calls[512];
    int    fail_add;            /* add 1 fails (but half-publishes) */
} chal_t;

/* One pg_acme_issue() against the CA. */
typedef struct {
    int             rc;
    long            retry_after;
    char           *chain;
    size_t          len;
    pg_error_t      err;
    chal_t          chal;
} run_t;

static char       ca_dir[] = "/tmp/test-acme-ca-XXXXXX";
static char       ca_key_path[256];
static char      *ca_pem;
static EVP_PKEY  *ca_cert_key;


static int
chal_record(void *ctx, const char *token, const char *key_authorization,
    int add, pg_error_t *err)
{
    size_t   used;
    chal_t  *c;

    (void) key_authorization;

    c = ctx;
    used = strlen(c->calls);
    snprintf(c->calls + used, sizeof(c->calls) - used, "%c%s ",
             add ? '+' : '-', token);

    if (add && c->fail_add) {
        snprintf(err->text, sizeof(err->text), "the edges did not take it");
        return PG_ERR;
    }

    return PG_OK;
}


static int  ca_log_lines, ca_log_broken;    /* lines logged, with a
                                               control character */

static void __attribute__((format(printf, 3, 4)))
ca_log(void *ctx, int level, const char *fmt, ...)
{
    char        line[1024];
    va_list     args;
    const char *p;

    (void) ctx;
    (void) level;

    va_start(args, fmt);
    vsnprintf(line, sizeof(line), fmt, args);
    va_end(args);

    ca_log_lines++;

    for (p = line; *p != '\0'; p++) {
        if ((unsigned char) *p < ' ') {
            ca_log_broken++;
            t_diag("a log line with a control character: %s", line);
            break;
        }
    }
}


/* A conf for the CA: wait 1 s (the deadline 4 s), exchanges 10 s. */
static void
ca_conf(pg_acme_conf_t *conf, run_t *r)
{
    memset(conf, 0, sizeof(pg_acme_conf_t));
    memset(r, 0, sizeof(run_t));
    conf->directory = CA_URL "/dir";
    conf->account_key = ca_key_path;
    conf->challenge = chal_record;
    conf->ctx = &r->chal;
    conf->log = ca_log;
    conf->wait = 1;
    conf->timeout = 10;
}


static void
ca_run(ca_pt answer, const pg_acme_conf_t *conf, run_t *r)
{
    char  *names[1];

    names[0] = "a.test";
    ca_install(answer);
    ca.chain = ca_pem;
    r->rc = pg_acme_issue(conf, names, 1, ca_cert_key, &r->chain, &r->len,
                          &r->retry_after, &r->err);
    ca_remove();
}


static void
ca_run_done(run_t *r)
{
    free(r->chain);
    r->chain = NULL;
}


static void
test_ca_default(void)
{
    run_t           r;
    pg_acme_conf_t  conf;

    ca_conf(&conf, &r);
    ca_run(ca_default, &conf, &r);
    t_ok(r.rc == PG_OK && r.chain != NULL && strcmp(r.chain, ca_pem) == 0,
         "the test's CA issues (%s)", r.rc == PG_OK ? "ok" : r.err.text);
    t_ok(strcmp(r.chal.calls, "+tok1 -tok1 ") == 0,
         "its challenge published, then withdrawn: %s", r.chal.calls);
    ca_run_done(&r);
}


/* review 18/1: 20,000 authorizations listed were 20,000 POSTs */
static void
ca_many_authz(const ca_req_t *q, ca_ans_t *s)
{
    if (ca_is(q, "POST", "/new-order") || ca_is(q, "POST", "/order/1")) {
        s->status = strcmp(q->path, "/new-order") == 0 ? 201 : 200;
        ca_header(s, "Location: " CA_URL "/order/1");
        ca_printf(s, "{\"status\": \"pending\", \"identifiers\": [{\"type\":"
                  " \"dns\", \"value\": \"a.test\"}], \"authorizations\": ["
                  "\"" CA_URL "/authz/1\", \"" CA_URL "/authz/2\", \"" CA_URL
                  "/authz/3\"], \"finalize\": \"" CA_URL "/finalize/1\"}");
        return;
    }

    ca_default(q, s);
}


/* review 18/1: the certificate's download never ends */
static void
ca_hung_download(const ca_req_t *q, ca_ans_t *s)
{
    if (ca_is(q, "POST", "/cert/1")) {
        s->hang = 30;
        return;
    }

    ca_default(q, s);
}


static void
test_ca_bounds(void)
{
    run_t           r;
    unsigned        i;
    pg_acme_conf_t  conf;

    ca_conf(&conf, &r);
    ca_run(ca_many_authz, &conf, &r);
    t_ok(r.rc == PG_ERR && strcmp(r.err.text, "the ACME order lists 3 "
                                  "authorizations for 1 name: one per "
                                  "identifier at most (RFC 8555 7.1.3)") == 0,
         "an order with more authorizations than names is refused: %s",
         r.err.text);
    t_ok(ca_count("POST /authz/") == 0 && r.chal.calls[0] == '\0',
         "before any authorization is read (%u read)",
         ca_count("POST /authz/"));
    ca_run_done(&r);

    /* wait 1 s: the issuance ends within 4 s, the download is cut short */
    ca_conf(&conf, &r);
    ca_run(ca_hung_download, &conf, &r);
    t_ok(r.rc == PG_ERR && strcmp(r.err.text, "the ACME server did not "
                                  "complete the issuance within 4 s (4 times "
                                  "the wait of 1 s)") == 0,
         "a download that hangs ends at the issuance's deadline: %s",
         r.err.text);

    for (i = 0; i < ca.n && i < CA_LOG_MAX; i++) {
        if (strcmp(ca.log[i], "POST /cert/1") == 0) {
            break;
        }
    }

    t_ok(i < ca.n && ca.log_timeout_ms[i] > 0 && ca.log_timeout_ms[i] <= 4000,
         "its transfer was given the time left (%ld ms), not the 10 s of "
         "an exchange", i < ca.n ? ca.log_timeout_ms[i] : -1);
    ca_run_done(&r);
}


#define ARI_ID  "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"   /* RFC 9773's */

/* review 18/2: a CA with renewalInfo whose newOrder never answers */
static void
ca_order_unanswered(const ca_req_t *q, ca_ans_t *s)
{
    ca.ari = 1;

    if (ca_is(q, "POST", "/new-order")) {
        s->rc = CURLE_GOT_NOTHING;
        return;
    }

    ca_default(q, s);
}


/* and one that refuses replaces, as RFC 9773 5 allows */
static void
ca_replaced_already(const ca_req_t *q, ca_ans_t *s)
{
    ca.ari = 1;

    if (ca_is(q, "POST", "/new-order")
        && strstr(q->payload, "\"replaces\"") != NULL)
    {
        ca_problem(s, 409, "alreadyReplaced", "the certificate was replaced "
                   "already");
        return;
    }

    ca_default(q, s);
}


/* a refusal that comes at the deadline: the order sent again finds it
 * past, and no answer is read as a refusal */
static void
ca_order_refused_late(const ca_req_t *q, ca_ans_t *s)
{
    ca.ari = 1;

    if (ca_is(q, "POST", "/new-order")) {
        s->at_timeout = 1;
        ca_problem(s, 400, "badNonce", "JWS has an invalid anti-replay "
                   "nonce");
        return;
    }

    ca_default(q, s);
}


static void
test_ca_replaces(void)
{
    run_t           r;
    pg_acme_conf_t  conf;

    ca_conf(&conf, &r);
    conf.replaces = ARI_ID;
    ca_run(ca_order_unanswered, &conf, &r);
    t_ok(r.rc == PG_ERR && strcmp(r.err.text, "cannot reach the ACME "
                                  "server: POST " CA_URL "/new-order: Server "
                                  "returned nothing (no headers, no data)")
                 == 0,
         "a renewal's newOrder with no answer says so: %s", r.err.text);
    t_ok(ca_count("POST /new-order") == 1,
         "and is not sent again without replaces (%u sent)",
         ca_count("POST /new-order"));
    ca_run_done(&r);

    ca_conf(&conf, &r);
    conf.replaces = ARI_ID;
    ca_run(ca_order_refused_late, &conf, &r);
    t_ok(r.rc == PG_ERR && strcmp(r.err.text, "the ACME server did not "
                                  "complete the issuance within 4 s (4 times "
                                  "the wait of 1 s)") == 0,
         "badNonce at the deadline, the retry not sent: the deadline is the "
         "error, not the earlier answer: %s", r.err.text);
    t_ok(ca_count("POST /new-order") == 1, "one newOrder sent (%u)",
         ca_count("POST /new-order"));
    ca_run_done(&r);

    ca_conf(&conf, &r);
    conf.replaces = ARI_ID;
    ca_run(ca_replaced_already, &conf, &r);
    t_ok(r.rc == PG_OK && ca_count("POST /new-order") == 2,
         "replaces refused (409 alreadyReplaced): ordered again without it "
         "(%s)", r.rc == PG_OK ? "issued" : r.err.text);
    ca_run_done(&r);
}


/* review 18/3: an order valid from the start (a CA reusing one) */
static void
ca_valid_at_once(const ca_req_t *q, ca_ans_t *s)
{
    ca.challenged = 1;
    ca.finalized = 1;
    ca_default(q, s);
}


/* an order "processing" at first (finalized already), then valid */
static void
ca_processing(const ca_req_t *q, ca_ans_t *s)
{
    ca.challenged = 1;

    if (ca_is(q, "POST", "/new-order")
        || (ca_is(q, "POST", "/order/1") && ca_count("POST /order/1") <= 2))
    {
        s->status = strcmp(q->path, "/new-order") == 0 ? 201 : 200;
        ca_header(s, "Location: " CA_URL "/order/1");
        ca_printf(s, "{\"status\": \"processing\", \"identifiers\": "
                  "[{\"type\": \"dns\", \"value\": \"a.test\"}], "
                  "\"authorizations\": [\"" CA_URL "/authz/1\"], "
                  "\"finalize\": \"" CA_URL "/finalize/1\"}");
        return;
    }

    ca.finalized = 1;
    ca_default(q, s);
}


static void
test_ca_order_states(void)
{
    char           *other_pem, *names[1];
    size_t          len;
    run_t           r;
    EVP_PKEY       *other;
    pg_acme_conf_t  conf;

    ca_conf(&conf, &r);
    ca_run(ca_valid_at_once, &conf, &r);
    t_ok(r.rc == PG_OK && r.chain != NULL && strcmp(r.chain, ca_pem) == 0,
         "an order valid at once: its certificate is downloaded (%s)",
         r.rc == PG_OK ? "issued" : r.err.text);
    t_ok(ca_count("POST /finalize/") == 0 && r.chal.calls[0] == '\0',
         "with no finalize and no challenge");
    ca_run_done(&r);

    ca_conf(&conf, &r);
    ca_run(ca_processing, &conf, &r);
    t_ok(r.rc == PG_OK && r.chain != NULL && strcmp(r.chain, ca_pem) == 0,
         "an order processing: waited for until valid (%s)",
         r.rc == PG_OK ? "issued" : r.err.text);
    t_ok(ca_count("POST /finalize/") == 0 && ca_count("POST /order/1") == 3,
         "not finalized again; the order read 3 times (%u)",
         ca_count("POST /order/1"));
    ca_run_done(&r);

    /* a valid order's certificate for another key is no certificate of
     * this issuance */
    names[0] = "a.test";
    other = EVP_EC_gen("P-256");
    pg_cert_self_signed(other, names, 1, 86400, &other_pem, &len, &r.err);
    ca_conf(&conf, &r);
    ca_install(ca_valid_at_once);
    ca.chain = other_pem;
    r.rc = pg_acme_issue(&conf, names, 1, ca_cert_key, &r.chain, &r.len,
                         &r.retry_after, &r.err);
    ca_remove();
    t_ok(r.rc == PG_ERR && r.chain == NULL
         && strcmp(r.err.text, "the ACME server's certificate is for another "
                   "key than this issuance's (an order the CA had finished "
                   "before?)") == 0,
         "a certificate for another key is refused: %s", r.err.text);
    ca_run_done(&r);
    free(other_pem);
    EVP_PKEY_free(other);
}


/* review 18/4: a publish that fails is withdrawn too */
static void
test_ca_publish_fails(void)
{
    run_t           r;
    pg_acme_conf_t  conf;

    ca_conf(&conf, &r);
    r.chal.fail_add = 1;
    ca_run(ca_default, &conf, &r);
    t_ok(r.rc == PG_ERR && strcmp(r.err.text, "cannot publish the http-01 "
                                  "challenge for a.test: the edges did not "
                                  "take it") == 0,
         "a publish that fails stops the issuance: %s", r.err.text);
    t_ok(strcmp(r.chal.calls, "+tok1 -tok1 ") == 0,
         "and its token is withdrawn (it may be half-published): %s",
         r.chal.calls);
    t_ok(ca_count("POST /chall/") == 0, "the CA was not told to validate");
    ca_run_done(&r);
}


/* review 18/7: URLs from JSON strings, with a newline in them */
static void
ca_newline_urls(const ca_req_t *q, ca_ans_t *s)
{
    if (ca_is(q, "GET", "/dir")) {
        ca_printf(s, "{\"newNonce\": \"" CA_URL "/nonce\","
                  " \"newAccount\": \"" CA_URL "/acct\","
                  " \"newOrder\": \"" CA_URL "/new-order\","
                  " \"renewalInfo\": \"" CA_URL "/ari\\nX-Evil: 1\"}");
        return;
    }

    if (ca_is(q, "POST", "/new-order")) {
        s->status = 201;
        ca_header(s, "Location: " CA_URL "/order/1");
        ca_printf(s, "{\"status\": \"pending\", \"identifiers\": [{\"type\":"
                  " \"dns\", \"value\": \"a.test\"}], \"authorizations\": ["
                  "\"" CA_URL "/authz/1\\nX-Evil: 1\"], \"finalize\": \""
                  CA_URL "/finalize/1\"}");
        return;
    }

    ca_default(q, s);
}


/* an identifier with a newline, which the log quotes */
static void
ca_newline_name(const ca_req_t *q, ca_ans_t *s)
{
    ca.challenged = 1;

    if (ca_is(q, "POST", "/authz/1")) {
        ca_printf(s, "{\"status\": \"valid\", \"identifier\": {\"type\": "
                  "\"dns\", \"value\": \"a.test\\nX-Evil: 1\"}, "
                  "\"challenges\": []}");
        return;
    }

    ca_default(q, s);
}


static void
test_ca_one_line(void)
{
    run_t           r;
    time_t          start, end;
    pg_acme_conf_t  conf;

    ca_conf(&conf, &r);
    ca_run(ca_newline_urls, &conf, &r);
    t_ok(r.rc == PG_ERR && strchr(r.err.text, '\n') == NULL
         && strcmp(r.err.text, "cannot reach the ACME server: POST " CA_URL
                   "/authz/1 X-Evil: 1: URL using bad/illegal format or "
                   "missing URL") == 0,
         "a CA's URL with a newline: the issuance's error is one line: %s",
         r.err.text);
    ca_run_done(&r);

    ca_conf(&conf, &r);
    ca_install(ca_newline_urls);
    r.rc = pg_acme_renewal_info(&conf, ARI_ID, &start, &end, &r.retry_after,
                                &r.err);
    ca_remove();
    t_ok(r.rc == PG_ERR && strchr(r.err.text, '\n') == NULL
         && strcmp(r.err.text, "cannot reach the ACME server: GET " CA_URL
                   "/ari X-Evil: 1/" ARI_ID ": URL using bad/illegal format "
                   "or missing URL") == 0,
         "and renewalInfo's: %s", r.err.text);

    ca_conf(&conf, &r);
    ca_log_lines = 0;
    ca_log_broken = 0;
    ca_run(ca_newline_name, &conf, &r);
    t_ok(r.rc == PG_OK && ca_log_lines > 0 && ca_log_broken == 0,
         "an identifier with a newline: every log line is one line "
         "(%d lines, %d broken)", ca_log_lines, ca_log_broken);
    ca_run_done(&r);
}


/* review 18/8: Retry-After 5 s while the wait is 1 s; valid at the next
 * poll, both the authorization and the order */
static void
ca_retry_later(const ca_req_t *q, ca_ans_t *s)
{
    if (ca_is(q, "POST", "/authz/1") && ca_count("POST /authz/1") < 3) {
        ca_header(s, "Retry-After: 5");
        ca_printf(s, "{\"status\": \"pending\", \"identifier\": {\"type\": "
                  "\"dns\", \"value\": \"a.test\"}, \"challenges\": [{"
                  "\"type\": \"http-01\", \"url\": \"" CA_URL "/chall/1\", "
                  "\"token\": \"tok1\", \"status\": \"pending\"}]}");
        return;
    }

    if (ca_is(q, "POST", "/finalize/1")) {
        ca.finalized = 1;
        ca_header(s, "Retry-After: 5");
        ca_printf(s, "{\"status\": \"processing\", \"identifiers\": "
                  "[{\"type\": \"dns\", \"value\": \"a.test\"}], "
                  "\"authorizations\": [\"" CA_URL "/authz/1\"], "
                  "\"finalize\": \"" CA_URL "/finalize/1\"}");
        return;
    }

    ca_default(q, s);
}


/* review 18/9: replaces refused with a Retry-After, then the order fails
 * for another reason, with no Retry-After */
static void
ca_refused_then_invalid(const ca_req_t *q, ca_ans_t *s)
{
    ca.ari = 1;

    if (ca_is(q, "POST", "/new-order")
        && strstr(q->payload, "\"replaces\"") != NULL)
    {
        ca_header(s, "Retry-After: 3600");
        ca_problem(s, 409, "alreadyReplaced", "replaced already");
        return;
    }

    if (ca_is(q, "POST", "/chall/1")) {
        ca_printf(s, "{}");
        return;
    }

    if (ca_is(q, "POST", "/authz/1") && ca_count("POST /authz/1") > 1) {
        ca_printf(s, "{\"status\": \"invalid\", \"identifier\": {\"type\": "
                  "\"dns\", \"value\": \"a.test\"}, \"challenges\": [{"
                  "\"type\": \"http-01\", \"url\": \"" CA_URL "/chall/1\", "
                  "\"token\": \"tok1\", \"status\": \"invalid\", \"error\": "
                  "{\"type\": \"urn:ietf:params:acme:error:unauthorized\", "
                  "\"detail\": \"404 at the token\"}}]}");
        return;
    }

    ca_default(q, s);
}


static void
test_ca_retry_after(void)
{
    run_t           r;
    pg_acme_conf_t  conf;

    ca_conf(&conf, &r);
    ca_run(ca_retry_later, &conf, &r);
    t_ok(r.rc == PG_OK,
         "Retry-After longer than the wait: polled once more at its end, "
         "and issued (%s)", r.rc == PG_OK ? "issued" : r.err.text);
    t_ok(ca_count("POST /authz/1") == 3 && ca_count("POST /order/1") == 2,
         "the authorization read 3 times (%u), the order twice (%u)",
         ca_count("POST /authz/1"), ca_count("POST /order/1"));
    ca_run_done(&r);

    ca_conf(&conf, &r);
    conf.replaces = ARI_ID;
    ca_run(ca_refused_then_invalid, &conf, &r);
    t_ok(r.rc == PG_ERR && strcmp(r.err.text, "urn:ietf:params:acme:error:"
                                  "unauthorized: 404 at the token") == 0,
         "replaces refused, then the authorization invalid: %s", r.err.text);
    t_ok(r.retry_after == 0,
         "no Retry-After: the refusal's 3600 s was not the failure's (%ld)",
         r.retry_after);
    ca_run_done(&r);
}


/* review 18/10: an account the CA deactivated, refused or reported so */
static void
ca_account_refused(const ca_req_t *q, ca_ans_t *s)
{
    if (ca_is(q, "POST", "/acct")) {
        ca_problem(s, 403, "unauthorized", "An account with the provided "
                   "public key exists but is deactivated");
        return;
    }

    ca_default(q, s);
}


static const char  *ca_account_status;

static void
ca_account_status_is(const ca_req_t *q, ca_ans_t *s)
{
    if (ca_is(q, "POST", "/acct")) {
        ca_header(s, "Location: " CA_URL "/acct/1");
        ca_printf(s, "{\"status\": \"%s\"}", ca_account_status);
        return;
    }

    ca_default(q, s);
}


/* An issuance in a child, so that a call that blocks (a FIFO read) fails
 * the test instead of hanging it: its error, or "blocked". */
static void
ca_run_child(const pg_acme_conf_t *conf, char *text, size_t size)
{
    int      fd[2], status;
    pid_t    pid;
    run_t    r;
    ssize_t  n;

    snprintf(text, size, "blocked");

    if (pipe(fd) != 0 || (pid = fork()) < 0) {
        return;
    }

    if (pid == 0) {
        close(fd[0]);
        alarm(10);
        ca_run(ca_default, conf, &r);

        if (r.rc == PG_OK) {
            snprintf(r.err.text, sizeof(r.err.text), "issued");
        }

        n = write(fd[1], r.err.text, strlen(r.err.text));
        _exit(n < 0);
    }

    close(fd[1]);
    n = read(fd[0], text, size - 1);
    close(fd[0]);
    waitpid(pid, &status, 0);

    if (n > 0 && WIFEXITED(status)) {
        text[n] = '\0';
    } else {
        snprintf(text, size, "blocked");
    }
}


static void
test_ca_account(void)
{
    char            path[300], want[600], text[300];
    run_t           r;
    unsigned        i;
    pg_acme_conf_t  conf;

    static const char  *gone[] = { "deactivated", "revoked" };

    ca_conf(&conf, &r);
    ca_run(ca_account_refused, &conf, &r);
    snprintf(want, sizeof(want), "urn:ietf:params:acme:error:unauthorized: "
             "An account with the provided public key exists but is "
             "deactivated; remove the account key %s to have a new account "
             "made", ca_key_path);
    t_ok(r.rc == PG_ERR && strcmp(r.err.text, want) == 0,
         "an account refused as unauthorized: remove its key: %s",
         r.err.text);
    ca_run_done(&r);

    for (i = 0; i < 2; i++) {
        ca_conf(&conf, &r);
        ca_account_status = gone[i];
        ca_run(ca_account_status_is, &conf, &r);
        snprintf(want, sizeof(want), "the ACME account " CA_URL "/acct/1 is "
                 "%s; remove the account key %s to have a new account made",
                 gone[i], ca_key_path);
        t_ok(r.rc == PG_ERR && strcmp(r.err.text, want) == 0,
             "an account %s: remove its key: %s", gone[i], r.err.text);
        ca_run_done(&r);
    }

    /* a libcurl that cannot keep the requests to https makes none */
    ca_conf(&conf, &r);
    ca_install(ca_default);
    ca.refuse = CURLOPT_PROTOCOLS_STR;
    ca.refuse_rc = CURLE_UNKNOWN_OPTION;
    ca.chain = ca_pem;
    r.rc = pg_acme_issue(&conf, (char *[]) { "a.test" }, 1, ca_cert_key,
                         &r.chain, &r.len, &r.retry_after, &r.err);
    ca_remove();
    t_ok(r.rc == PG_ERR && strcmp(r.err.text, "libcurl refused "
                                  "CURLOPT_PROTOCOLS_STR (An unknown option "
                                  "was passed in to libcurl): no ACME "
                                  "request is made without it") == 0,
         "CURLOPT_PROTOCOLS_STR refused: %s", r.err.text);
    t_ok(ca.n == 0, "and no request went out (%u)", ca.n);
    ca_run_done(&r);

    /* the account key path: a FIFO would block the worker, a symlink or a
     * folder is not a key portal-gated made */
    snprintf(path, sizeof(path), "%s/fifo.key", ca_dir);
    t_ok(mkfifo(path, 0600) == 0, "a FIFO at the account key path");
    ca_conf(&conf, &r);
    conf.account_key = path;
    ca_run_child(&conf, text, sizeof(text));
    snprintf(want, sizeof(want), "account key %s is a FIFO, not a regular "
             "file: remove it to have one made", path);
    t_ok(strcmp(text, want) == 0, "it is refused at once: %s", text);
    unlink(path);

    snprintf(path, sizeof(path), "%s/link.key", ca_dir);
    t_ok(symlink(ca_key_path, path) == 0, "a symlink to a good key");
    conf.account_key = path;
    ca_run_child(&conf, text, sizeof(text));
    snprintf(want, sizeof(want), "account key %s is a symlink, not a regular "
             "file: remove it to have one made", path);
    t_ok(strcmp(text, want) == 0, "it is refused: %s", text);
    unlink(path);

    conf.account_key = ca_dir;
    ca_run_child(&conf, text, sizeof(text));
    snprintf(want, sizeof(want), "account key %s is a folder, not a regular "
             "file: remove it to have one made", ca_dir);
    t_ok(strcmp(text, want) == 0, "a folder is refused: %s", text);
}


static void
test_ca(void)
{
    char      *names[1];
    size_t     len;
    pg_error_t err;

    t_ok(mkdtemp(ca_dir) != NULL, "a scratch folder for the CA's tests");
    snprintf(ca_key_path, sizeof(ca_key_path), "%s/account.key", ca_dir);

    names[0] = "a.test";
    ca_cert_key = EVP_EC_gen("P-256");
    t_ok(pg_cert_self_signed(ca_cert_key, names, 1, 86400, &ca_pem, &len,
                             &err) == PG_OK,
         "the chain the CA issues");

    test_ca_default();
    test_ca_bounds();
    test_ca_replaces();
    test_ca_order_states();
    test_ca_publish_fails();
    test_ca_one_line();
    test_ca_retry_after();
    test_ca_account();

    free(ca_pem);
    EVP_PKEY_free(ca_cert_key);
    unlink(ca_key_path);
    rmdir(ca_dir);
}


int
main(void)
{
    test_jws();
    test_thumbprint();
    test_problem();
    test_directory();
    test_retry_after();
    test_issue_offline();
    test_ca();

    pg_curl_unload();

    printf("1..%d\n", t_count);

    return t_failed ? 1 : 0;
}
