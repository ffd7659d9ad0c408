/*
 * test_token.c: unit tests of the company tokens' core (include/pg_token.c)
 * and of strict base64url decoding (include/pg_b64.c). Prints TAP; exits 1
 * if any test failed.
 *
 *   make build/test-token && build/test-token
 *
 * Known answers come from the RFCs: RFC 4648's base64 vectors, RFC 7515
 * appendix A.1 (HS256) and A.3 (ES256). The broken tokens are built here
 * by hand, part by part, so that each one is broken in exactly one way.
 */

#include <errno.h>          /* errno */
#include <fcntl.h>          /* open */
#include <stdio.h>          /* printf, snprintf, fopen */
#include <stdlib.h>         /* malloc, free, mkdtemp */
#include <string.h>         /* strcmp, strlen, strstr, memcmp, memset */
#include <sys/stat.h>       /* mkfifo */
#include <unistd.h>         /* unlink, rmdir, symlink */
#include <openssl/bn.h>     /* BN_bin2bn: a DER signature */
#include <openssl/ec.h>     /* ECDSA_SIG */
#include <openssl/evp.h>    /* EVP_sha256 */
#include <openssl/hmac.h>   /* HMAC: HS256 keyed with an EC key's bytes */
#include "pg_b64.h"         /* the decoder under test */
#include "pg_token.h"       /* the API under test */
#include "tap.h"            /* t_ok, t_diag, t_count, t_failed */


#define NOW      1700000000LL

/* RFC 7515 A.1: the HS256 key, signing input and signature */
#define A1_K     "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtM" \
                 "N3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
#define A1_IN    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA" \
                 "0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc1" \
                 "9yb290Ijp0cnVlfQ"
#define A1_SIG   "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

/* RFC 7515 A.3: the ES256 key, signing input and signature (r||s) */
#define A3_X     "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
#define A3_Y     "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
#define A3_D     "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"
#define A3_IN    "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTk" \
                 "zODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
#define A3_SIG   "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8I" \
                 "SlSApmWQxfKTUJqPP3-Kg6NU1Q"


static pg_token_keys_t  *t_keys;        /* hs1, es1 (with d), es2, hs2 */
static pg_token_keys_t  *t_signer;      /* the same, es2 with its d */
static char              t_es1_x[64];   /* es1's x, for the HS256 attack */
static char              t_dir[] = "/tmp/pg-test-token-XXXXXX";


/* --- helpers ---------------------------------------------------------- */

static const char *
t_b64(const void *s, size_t len)
{
    static int   i;
    static char  buf[4][3 * PG_TOKEN_MAX];

    i = (i + 1) % 4;
    pg_b64url_encode(s, len, buf[i], sizeof(buf[i]));

    return buf[i];
}


/* A token from a header and a payload (JSON text, as given), signed by
 * key kid of t_keys: a static buffer. how: 0 JOSE's signature, 'd' DER,
 * 'n' none, 'h' HMAC keyed with es1's x (the switched alg attack). */
static const char *
t_mint(const char *header, const char *payload, const char *kid, int how)
{
    int             derlen;
    size_t          n, siglen;
    BIGNUM         *r, *s;
    ECDSA_SIG      *es;
    pg_error_t      err;
    unsigned int    mdlen;
    unsigned char   sig[128], *p;

    static char     tok[4 * PG_TOKEN_MAX];

    n = (size_t) snprintf(tok, sizeof(tok), "%s.%s",
                          t_b64(header, strlen(header)),
                          t_b64(payload, strlen(payload)));
    siglen = 0;

    if (how == 'h') {
        HMAC(EVP_sha256(), t_es1_x, (int) strlen(t_es1_x),
             (unsigned char *) tok, n, sig, &mdlen);
        siglen = mdlen;

    } else if (how != 'n') {
        if (pg_token_sign_raw(t_signer, kid, tok, n, sig, &siglen, NULL,
                              &err)
            != PG_OK)
        {
            t_diag("cannot sign with %s: %s", kid, err.text);
        }
    }

    if (how == 'd') {
        r = BN_bin2bn(sig, 32, NULL);
        s = BN_bin2bn(sig + 32, 32, NULL);
        es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, r, s);
        p = sig;
        derlen = i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        siglen = (size_t) derlen;
    }

    snprintf(tok + n, sizeof(tok) - n, ".%s", t_b64(sig, siglen));

    return tok;
}


/* The usual header for kid, and a payload for company cid valid from
 * NOW - 10 to NOW + 600. */
static const char *
t_header(const char *alg, const char *kid)
{
    static char  buf[256];

    snprintf(buf, sizeof(buf), "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":"
             "\"JWT\"}", alg, kid);

    return buf;
}

#define T_PAYLOAD  "{\"cid\":\"1001\",\"iat\":1699999990,\"exp\":1700000600}"


/* A valid HS256 token of exactly want bytes, padded in its header and its
 * payload (base64url lengths skip every 4k + 1, so both are needed). */
static const char *
t_sized(size_t want)
{
    size_t       hp, pp, len;
    static char  hdr[64], pay[PG_TOKEN_MAX];

    for (hp = 0; hp < 8; hp++) {
        for (pp = 0; pp < PG_TOKEN_MAX; pp++) {
            snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"kid\":\"hs1\","
                     "\"p\":\"%.*s\"}", (int) hp, "xxxxxxxx");
            len = snprintf(pay, sizeof(pay), "{\"cid\":\"1001\",\"exp\":"
                           "1700000600,\"p\":\"%*s\"}", (int) pp, "");

            if (PG_B64URL_LEN(strlen(hdr)) + 1 + PG_B64URL_LEN(len) + 1
                + PG_B64URL_LEN(32) == want)
            {
                return t_mint(hdr, pay, "hs1", 0);
            }
        }
    }

    return NULL;
}


/* Verify tok at NOW with claim and leeway; check the verdict. */
static int
t_verdict(const char *tok, const char *claim, long leeway,
    pg_token_status_t want, const char *name)
{
    int                ok;
    pg_error_t         err;
    pg_token_result_t  res;

    err.text[0] = '\0';

    pg_token_verify(t_keys, tok, strlen(tok), claim, NOW, leeway, &res,
                    &err);

    ok = t_ok(res.status == want, "%s: \"%s\"", name,
              pg_token_status_name(want));

    if (!ok) {
        t_diag("got \"%s\": %s", pg_token_status_name(res.status), err.text);
    }

    if (want != PG_TOKEN_VALID && err.text[0] == '\0') {
        t_ok(0, "%s: a rejection says why", name);
    }

    return ok;
}


static const char *
t_company(const char *tok, const char *claim)
{
    pg_error_t                 err;
    static pg_token_result_t   res;

    if (pg_token_verify(t_keys, tok, strlen(tok), claim, NOW, 0, &res, &err)
        != PG_OK)
    {
        t_diag("refused: %s", err.text);
        return "(refused)";
    }

    return res.company;
}


/* Parse a JWKS text; the message on failure, "" on success. */
static const char *
t_jwks_error(const char *text)
{
    pg_token_keys_t    *keys;
    static pg_error_t   err;

    if (pg_token_keys_parse(text, strlen(text), 0, &keys, &err) == PG_OK) {
        pg_token_keys_free(keys);
        return "";
    }

    return err.text;
}


static void
t_write(const char *path, const char *text)
{
    FILE  *f;

    f = fopen(path, "w");

    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}


static const char *
t_path(const char *name)
{
    static int   i;
    static char  buf[4][512];

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", t_dir, name);

    return buf[i];
}


/* --- base64url ---------------------------------------------------------- */

static void
test_b64(void)
{
    size_t          i, n, m;
    char            enc[256];
    unsigned char   in[100], out[100];

    static const char  *vec[][2] = {
        { "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" },
        { "foobar", "Zm9vYmFy" }, { "\xfb\xff", "-_8" }
    };

    static const char  *bad[] = {
        "Zg==", "Zg=", "Zm9v\n", " Zm9v", "Zm 9v", "Z", "Zm9vY",
        "Zh", "Zm9", "Zm+v", "Zm/v", "Zm9v.", "Zm9vYmF\x80"
    };

    for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        n = pg_b64url_decode(vec[i][1], strlen(vec[i][1]), out, sizeof(out));
        t_ok(n == strlen(vec[i][0]) && memcmp(out, vec[i][0], n) == 0,
             "b64url: \"%s\" decodes (RFC 4648 10)", vec[i][1]);
    }

    /* "Zh" has a low bit set that "Zg" has not; "Zm9" likewise: non-
     * canonical texts of the same bytes are refused */
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t_ok(pg_b64url_decode(bad[i], strlen(bad[i]), out, sizeof(out))
             == (size_t) -1, "b64url: bad text %zu (%zu bytes) is refused",
             i + 1, strlen(bad[i]));
    }

    t_ok(pg_b64url_decode("Zm9vYmFy", 8, out, 5) == (size_t) -1,
         "b64url: an output too small is refused");

    /* every length round-trips, and every other last character of each
     * encoding is refused or decodes to other bytes */
    for (n = 0; n < sizeof(in); n++) {
        for (i = 0; i < n; i++) {
            in[i] = (unsigned char) (i * 37 + n * 11);
        }

        pg_b64url_encode(in, n, enc, sizeof(enc));
        m = pg_b64url_decode(enc, strlen(enc), out, sizeof(out));

        if (m != n || memcmp(in, out, n) != 0) {
            t_ok(0, "b64url: %zu bytes round-trip", n);
            return;
        }

        if (n % 3 != 0) {
            for (i = 0; i < 64; i++) {
                enc[strlen(enc) - 1] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
                                       "klmnopqrstuvwxyz0123456789-_"[i];
                m = pg_b64url_decode(enc, strlen(enc), out, sizeof(out));

                if (m != (size_t) -1 && memcmp(in, out, n) == 0
                    && enc[strlen(enc) - 1] != t_b64(in, n)[strlen(enc) - 1])
                {
                    t_ok(0, "b64url: a second text for %zu bytes", n);
                    return;
                }
            }
        }
    }

    t_ok(1, "b64url: lengths 0 to 99 round-trip, each with one text only");
}


/* --- RFC 7515's examples ------------------------------------------------- */

static void
test_rfc(void)
{
    char              *text;
    size_t             n;
    pg_error_t         err;
    unsigned char      sig[64], got[64];
    pg_token_keys_t   *keys;

    text = malloc(1024);

    snprintf(text, 1024, "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a1\",\"k\":\""
             A1_K "\"},{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"a3\","
             "\"x\":\"" A3_X "\",\"y\":\"" A3_Y "\",\"d\":\"" A3_D "\"}]}");

    if (!t_ok(pg_token_keys_parse(text, strlen(text), PG_TOKEN_KEYS_SIGN,
                                  &keys, &err) == PG_OK,
              "RFC 7515 A.1 and A.3 keys load, A.3's d with its point"))
    {
        t_diag("%s", err.text);
        free(text);
        return;
    }

    n = pg_b64url_decode(A1_SIG, strlen(A1_SIG), sig, sizeof(sig));
    t_ok(pg_token_check_signature(keys, "a1", PG_TOKEN_HS256, A1_IN,
                                  strlen(A1_IN), sig, n, &err) == PG_OK,
         "RFC 7515 A.1: the HS256 signature verifies");

    t_ok(pg_token_sign_raw(keys, "a1", A1_IN, strlen(A1_IN), got, &n, NULL,
                           &err) == PG_OK
         && n == 32 && memcmp(got, sig, 32) == 0,
         "RFC 7515 A.1: signing gives the RFC's signature");

    n = pg_b64url_decode(A3_SIG, strlen(A3_SIG), sig, sizeof(sig));
    t_ok(pg_token_check_signature(keys, "a3", PG_TOKEN_ES256, A3_IN,
                                  strlen(A3_IN), sig, n, &err) == PG_OK,
         "RFC 7515 A.3: the ES256 signature (r||s) verifies");

    sig[63] ^= 1;
    t_ok(pg_token_check_signature(keys, "a3", PG_TOKEN_ES256, A3_IN,
                                  strlen(A3_IN), sig, n, &err) == PG_ERR,
         "RFC 7515 A.3: one bit flipped does not");

    t_ok(pg_token_check_signature(keys, "a3", PG_TOKEN_HS256, A3_IN,
                                  strlen(A3_IN), sig, 32, &err) == PG_ERR
         && strstr(err.text, "is an ES256 key") != NULL,
         "an ES256 key never checks an HS256 signature");

    t_ok(pg_token_sign_raw(keys, "a3", A3_IN, strlen(A3_IN), got, &n, NULL,
                           &err) == PG_OK
         && n == 64
         && pg_token_check_signature(keys, "a3", PG_TOKEN_ES256, A3_IN,
                                     strlen(A3_IN), got, n, &err) == PG_OK,
         "RFC 7515 A.3's key signs r||s that verifies");

    pg_token_keys_free(keys);

    /* the same d with another point */
    snprintf(text, 1024, "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
             "\"kid\":\"a3\",\"x\":\"" A3_Y "\",\"y\":\"" A3_X "\"}]}");
    t_ok(strstr(t_jwks_error(text), "not a point on P-256") != NULL,
         "a point off the curve is refused: %s", t_jwks_error(text));

    snprintf(text, 1024, "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
             "\"kid\":\"a3\",\"x\":\"" A3_X "\",\"y\":\"" A3_Y "\",\"d\":\""
             A1_SIG "\"}]}");
    t_ok(pg_token_keys_parse(text, strlen(text), PG_TOKEN_KEYS_SIGN, &keys,
                             &err) == PG_ERR
         && strstr(err.text, "not the private key") != NULL,
         "a d that is not the point's is refused: %s", err.text);

    free(text);
}


/* --- the JWKS ------------------------------------------------------------- */

static void
test_jwks(void)
{
    size_t             i;
    char               text[8192], *p;
    const char        *got;

    static const char  *cases[][2] = {
        { "", "not JSON: line 1 column 0" },
        { "[]", "not a JWKS" },
        { "{}", "\"keys\" is missing or not an array" },
        { "{\"keys\":[]}", "no keys" },
        { "{\"keys\":[], \"other\":1}", "unknown member \"other\"" },
        { "{\"keys\":[1]}", "key 1: \"kid\" is missing" },
        { "{\"keys\":[{\"kty\":\"oct\",\"k\":\"" A1_K "\"}]}",
          "key 1: \"kid\" is missing" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"\",\"k\":\"" A1_K "\"}]}",
          "key 1: kid \"\" is not 1 to 128 printable" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\\nb\",\"k\":\"" A1_K
          "\"}]}", "key 1: kid \"a?b\" is not 1 to 128 printable" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" A1_K "\"},"
          "{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" A1_K "\"}]}",
          "kid \"a\" is listed twice (keys 1 and 2)" },
        { "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r\",\"n\":\"x\",\"e\":"
          "\"AQAB\"}]}", "key 1 (\"r\"): kty \"RSA\" is not supported" },
        { "{\"keys\":[{\"kid\":\"r\"}]}",
          "key 1 (\"r\"): \"kty\" is missing" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" A1_K "\","
          "\"alg\":\"ES256\"}]}",
          "key 1 (\"a\"): alg \"ES256\" does not fit kty \"oct\": HS256" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" A1_K "\","
          "\"alg\":\"none\"}]}", "alg \"none\" does not fit" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" A1_K "\","
          "\"use\":\"enc\"}]}", "use \"enc\": only \"sig\"" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" A1_K "\","
          "\"x5c\":[]}]}", "unknown member \"x5c\" for kty \"oct\"" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"c2VjcmV0\"}]}",
          "\"k\" is 6 bytes: an HS256 secret needs at least 32" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" A1_K "=\"}]}",
          "\"k\" is not base64url" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\"}]}",
          "\"k\" is missing or not a string" },
        { "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-384\","
          "\"x\":\"" A3_X "\",\"y\":\"" A3_Y "\"}]}",
          "crv \"P-384\" is not supported: \"P-256\"" },
        { "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-256\","
          "\"x\":\"" A3_X "\"}]}", "\"y\" is missing" },
        { "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-256\","
          "\"x\":\"" A3_X "A\",\"y\":\"" A3_Y "\"}]}",
          "\"x\" is 33 bytes: P-256 needs 32" },
        { "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-256\","
          "\"x\":\"" A3_X "\",\"y\":\"" A3_Y "\",\"k\":\"" A1_K "\"}]}",
          "unknown member \"k\" for kty \"EC\"" },
        { "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-256\","
          "\"x\":\"" A3_X "\",\"y\":\"" A3_Y "\",\"d\":\"AA\"}]}",
          "\"d\" is 1 bytes: P-256 needs 32" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" A1_K "\","
          "\"kid\":\"b\"}]}", "duplicate object key" },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        got = t_jwks_error(cases[i][0]);

        if (!t_ok(strstr(got, cases[i][1]) != NULL, "JWKS refused: %s",
                  cases[i][1]))
        {
            t_diag("got: %s", got);
        }
    }

    /* 64 keys load, 65 do not */
    p = text + sprintf(text, "{\"keys\":[");

    for (i = 0; i < 65; i++) {
        p += sprintf(p, "%s{\"kty\":\"oct\",\"kid\":\"k%zu\",\"k\":\"" A1_K
                     "\"}", i ? "," : "", i);

        if (i == 63) {
            sprintf(p, "]}");
            t_ok(t_jwks_error(text)[0] == '\0', "64 keys load");
        }
    }

    sprintf(p, "]}");
    t_ok(strstr(t_jwks_error(text), "65 keys: at most 64") != NULL,
         "65 keys are refused");

    /* a good one, with everything optional */
    t_ok(t_jwks_error("{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\""
                      A1_K "\",\"alg\":\"HS256\",\"use\":\"sig\"},"
                      "{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-256\","
                      "\"x\":\"" A3_X "\",\"y\":\"" A3_Y "\",\"alg\":"
                      "\"ES256\",\"use\":\"sig\"}]}")[0] == '\0',
         "a JWKS with alg and use on both key types loads");
}


static void
test_files(void)
{
    int               fd;
    char              big[PG_TOKEN_FILE_MAX + 2];
    pg_error_t        err;
    pg_token_keys_t  *keys;

    static const char  good[] = "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\","
                                "\"k\":\"" A1_K "\"}]}";

    t_write(t_path("good.json"), good);
    t_ok(pg_token_keys_load(t_path("good.json"), 0, &keys, &err) == PG_OK
         && pg_token_keys_count(keys) == 1,
         "a JWKS file loads");
    pg_token_keys_free(keys);

    t_ok(symlink("good.json", t_path("link.json")) == 0
         && pg_token_keys_load(t_path("link.json"), 0, &keys, &err)
            == PG_OK, "a symbolic link to one is followed");
    pg_token_keys_free(keys);

    t_ok(pg_token_keys_load(t_path("none.json"), 0, &keys, &err) == PG_ERR
         && strstr(err.text, "cannot open it: No such file") != NULL,
         "a missing file: %s", err.text);

    t_ok(pg_token_keys_load(t_dir, 0, &keys, &err) == PG_ERR
         && strcmp(err.text, "not a regular file") == 0,
         "a folder: %s", err.text);

    /* a FIFO nobody writes: refused at once, not read forever */
    t_ok(mkfifo(t_path("fifo"), 0600) == 0
         && pg_token_keys_load(t_path("fifo"), 0, &keys, &err) == PG_ERR
         && strcmp(err.text, "not a regular file") == 0,
         "a FIFO is refused without hanging: %s", err.text);

    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, good, sizeof(good) - 1);
    t_write(t_path("big.json"), big);
    t_ok(pg_token_keys_load(t_path("big.json"), 0, &keys, &err) == PG_ERR
         && strstr(err.text, "65537 bytes: a JWKS file is at most 65536")
            != NULL, "a file over 64 KiB: %s", err.text);

    fd = open(t_path("empty.json"), O_CREAT | O_WRONLY, 0600);
    close(fd);
    t_ok(pg_token_keys_load(t_path("empty.json"), 0, &keys, &err) == PG_ERR
         && strstr(err.text, "not JSON") != NULL, "an empty file: %s",
         err.text);

    unlink(t_path("good.json"));
    unlink(t_path("link.json"));
    unlink(t_path("fifo"));
    unlink(t_path("big.json"));
    unlink(t_path("empty.json"));
}


/* --- verifying ---------------------------------------------------------- */

static void
test_verify(void)
{
    char               tok[PG_TOKEN_MAX + 100], *p;
    size_t             n;
    pg_error_t         err;
    pg_token_result_t  res;

    /* valid */
    t_verdict(t_mint(t_header("HS256", "hs1"), T_PAYLOAD, "hs1", 0), NULL,
              0, PG_TOKEN_VALID, "HS256");
    t_ok(strcmp(t_company(t_mint(t_header("HS256", "hs1"), T_PAYLOAD,
                                 "hs1", 0), NULL), "1001") == 0,
         "HS256: company 1001");
    t_verdict(t_mint(t_header("ES256", "es1"), T_PAYLOAD, "es1", 0), NULL,
              0, PG_TOKEN_VALID, "ES256");
    t_verdict(t_mint(t_header("ES256", "es2"), T_PAYLOAD, "es2", 0), NULL,
              0, PG_TOKEN_VALID, "ES256 with a key listed without d");
    t_verdict(t_mint(t_header("HS256", "hs2"), T_PAYLOAD, "hs2", 0), NULL,
              0, PG_TOKEN_VALID, "HS256 with the second secret");
    t_verdict(t_mint("{\"kid\":\"hs1\",\"alg\":\"HS256\"}", T_PAYLOAD, "hs1",
                     0), NULL, 0, PG_TOKEN_VALID,
              "a header without typ, members in any order");

    p = (char *) t_mint(t_header("ES256", "es1"), T_PAYLOAD, "es1", 0);
    t_ok(pg_token_verify(t_keys, p, strlen(p), NULL, NOW, 0, &res, &err)
         == PG_OK && res.exp == 1700000600 && res.company_len == 4,
         "the result has exp and the company's length");

    /* missing, malformed */
    t_verdict("", NULL, 0, PG_TOKEN_MISSING, "empty");

    t_verdict("abc", NULL, 0, PG_TOKEN_MALFORMED, "one part");
    t_verdict("a.b", NULL, 0, PG_TOKEN_MALFORMED, "two parts");
    t_verdict("a.b.c.d", NULL, 0, PG_TOKEN_MALFORMED, "four parts");

    p = (char *) t_mint(t_header("HS256", "hs1"), T_PAYLOAD, "hs1", 0);
    snprintf(tok, sizeof(tok), "%s", p);
    tok[3] = '+';
    t_verdict(tok, NULL, 0, PG_TOKEN_MALFORMED, "'+' in the header");
    snprintf(tok, sizeof(tok), "%s=", p);
    t_verdict(tok, NULL, 0, PG_TOKEN_MALFORMED, "padding after the "
              "signature");
    snprintf(tok, sizeof(tok), " %s", p);
    t_verdict(tok, NULL, 0, PG_TOKEN_MALFORMED, "a leading space");
    snprintf(tok, sizeof(tok), "%s", p);
    *strchr(tok, '.') = '\n';
    t_verdict(tok, NULL, 0, PG_TOKEN_MALFORMED, "a newline for a dot");

    /* a header that is not JSON: the message says where, never quotes the
     * token's bytes (it goes to the log) */
    {
        pg_error_t         err;
        pg_token_result_t  res;

        p = (char *) t_mint("{\"alg\":\"HS256\",\"kid\":\"hs1\"} SECRETX",
                            T_PAYLOAD, "hs1", 0);
        pg_token_verify(t_keys, p, strlen(p), NULL, NOW, 0, &res, &err);
        t_ok(res.status == PG_TOKEN_MALFORMED
             && strstr(err.text, "SECRETX") == NULL
             && strstr(err.text, "line 1, column") != NULL,
             "a header that is not JSON: where, not its bytes (%s)",
             err.text);
    }

    /* the payload's base64url is broken: non-canonical last character */
    snprintf(tok, sizeof(tok), "%s.%s.%s", t_b64("{\"alg\":\"HS256\"}", 15),
             "eyJhIjoxfR", "AAAA");
    t_verdict(tok, NULL, 0, PG_TOKEN_MALFORMED, "a payload with non-zero "
              "trailing bits (eyJhIjoxfR, not eyJhIjoxfQ)");

    t_verdict(t_mint("not json", T_PAYLOAD, "hs1", 0), NULL, 0,
              PG_TOKEN_MALFORMED, "a header that is not JSON");
    t_verdict(t_mint("[\"HS256\"]", T_PAYLOAD, "hs1", 0), NULL, 0,
              PG_TOKEN_MALFORMED, "a header that is an array");
    t_verdict(t_mint("{\"alg\":\"HS256\",\"kid\":\"hs1\",\"alg\":\"HS256\"}",
                     T_PAYLOAD, "hs1", 0), NULL, 0, PG_TOKEN_MALFORMED,
              "a header with a duplicate key");
    t_verdict(t_mint("{\"alg\":\"HS256\",\"kid\":\"hs1\",\"crit\":[\"b64\"],"
                     "\"b64\":false}", T_PAYLOAD, "hs1", 0), NULL, 0,
              PG_TOKEN_MALFORMED, "a header with crit");

    t_verdict(t_mint(t_header("HS256", "hs1"), "{\"cid\":\"1001\",\"exp\":"
                     "1700000600", "hs1", 0), NULL, 0, PG_TOKEN_MALFORMED,
              "a signed payload that is not JSON");
    t_verdict(t_mint(t_header("HS256", "hs1"), "{\"cid\":\"1001\",\"exp\":"
                     "1700000600,\"cid\":\"1002\"}", "hs1", 0), NULL, 0,
              PG_TOKEN_MALFORMED, "a signed payload with a duplicate key "
              "(which cid?)");
    t_verdict(t_mint(t_header("HS256", "hs1"), "\"1001\"", "hs1", 0), NULL,
              0, PG_TOKEN_MALFORMED, "a signed payload that is a string");
    t_verdict(t_mint(t_header("HS256", "hs1"), "{\"cid\":\"1001\",\"exp\":"
                     "1700000600}\n{}", "hs1", 0), NULL, 0,
              PG_TOKEN_MALFORMED, "a signed payload with text after it");

    /* the size limit: 4096 bytes pass, 4097 do not */
    p = (char *) t_sized(PG_TOKEN_MAX);
    t_ok(p != NULL && strlen(p) == PG_TOKEN_MAX, "a token of 4096 bytes is "
         "built");
    t_verdict(p ? p : "", NULL, 0, PG_TOKEN_VALID, "a token of 4096 bytes");
    p = (char *) t_sized(PG_TOKEN_MAX + 1);
    t_ok(p != NULL && strlen(p) == PG_TOKEN_MAX + 1, "a token of 4097 bytes "
         "is built");
    t_verdict(p ? p : "", NULL, 0, PG_TOKEN_MALFORMED, "a token of 4097 "
              "bytes");

    /* alg */
    t_verdict(t_mint("{\"kid\":\"hs1\"}", T_PAYLOAD, "hs1", 0), NULL, 0,
              PG_TOKEN_ALG, "no alg");
    t_verdict(t_mint("{\"alg\":null,\"kid\":\"hs1\"}", T_PAYLOAD, "hs1", 0),
              NULL, 0, PG_TOKEN_ALG, "alg null");
    t_verdict(t_mint("{\"alg\":\"none\",\"kid\":\"hs1\"}", T_PAYLOAD, NULL,
                     'n'), NULL, 0, PG_TOKEN_ALG, "alg none, no signature");
    t_verdict(t_mint("{\"alg\":\"none\"}", T_PAYLOAD, NULL, 'n'), NULL, 0,
              PG_TOKEN_ALG, "alg none without kid");
    t_verdict(t_mint("{\"alg\":\"None\",\"kid\":\"hs1\"}", T_PAYLOAD, "hs1",
                     0), NULL, 0, PG_TOKEN_ALG, "alg None, signed");
    t_verdict(t_mint("{\"alg\":\"hs256\",\"kid\":\"hs1\"}", T_PAYLOAD, "hs1",
                     0), NULL, 0, PG_TOKEN_ALG, "alg hs256 (case matters)");
    t_verdict(t_mint("{\"alg\":\"RS256\",\"kid\":\"es1\"}", T_PAYLOAD,
                     "es1", 0), NULL, 0, PG_TOKEN_ALG, "alg RS256");
    t_verdict(t_mint(t_header("HS256", "es1"), T_PAYLOAD, NULL, 'h'), NULL, 0,
              PG_TOKEN_ALG, "HS256 keyed with the EC key's x: switched alg");
    t_verdict(t_mint(t_header("ES256", "hs1"), T_PAYLOAD, "es1", 0), NULL, 0,
              PG_TOKEN_ALG, "ES256 under an HS256 key's kid");

    /* kid */
    t_verdict(t_mint("{\"alg\":\"HS256\"}", T_PAYLOAD, "hs1", 0), NULL, 0,
              PG_TOKEN_UNKNOWN_KID, "no kid");
    t_verdict(t_mint("{\"alg\":\"HS256\",\"kid\":7}", T_PAYLOAD, "hs1", 0),
              NULL, 0, PG_TOKEN_UNKNOWN_KID, "kid a number");
    t_verdict(t_mint(t_header("HS256", "hs3"), T_PAYLOAD, "hs1", 0), NULL, 0,
              PG_TOKEN_UNKNOWN_KID, "a kid not in the JWKS");
    t_verdict(t_mint(t_header("HS256", "HS1"), T_PAYLOAD, "hs1", 0), NULL, 0,
              PG_TOKEN_UNKNOWN_KID, "kid HS1 (case matters)");

    /* signature */
    t_verdict(t_mint(t_header("HS256", "hs2"), T_PAYLOAD, "hs1", 0), NULL, 0,
              PG_TOKEN_SIGNATURE, "HS256 signed with the other secret");
    t_verdict(t_mint(t_header("ES256", "es2"), T_PAYLOAD, "es1", 0), NULL, 0,
              PG_TOKEN_SIGNATURE, "ES256 signed with the other key");
    t_verdict(t_mint(t_header("ES256", "es1"), T_PAYLOAD, "es1", 'd'), NULL,
              0, PG_TOKEN_SIGNATURE, "ES256 in DER");
    t_verdict(t_mint(t_header("ES256", "es1"), T_PAYLOAD, "es1", 'n'), NULL,
              0, PG_TOKEN_SIGNATURE, "ES256 with no signature");
    t_verdict(t_mint(t_header("HS256", "hs1"), T_PAYLOAD, "hs1", 'n'), NULL,
              0, PG_TOKEN_SIGNATURE, "HS256 with no signature");

    /* the payload of one token under the signature of another */
    p = (char *) t_mint(t_header("HS256", "hs1"), T_PAYLOAD, "hs1", 0);
    snprintf(tok, sizeof(tok), "%s", p);
    p = (char *) t_mint(t_header("HS256", "hs1"),
                        "{\"cid\":\"1002\",\"exp\":1700000600}", "hs1", 0);
    snprintf(strrchr(tok, '.'), sizeof(tok) - (strrchr(tok, '.') - tok),
             "%s", strrchr(p, '.'));
    t_verdict(tok, NULL, 0, PG_TOKEN_SIGNATURE, "HS256, payload swapped");

    p = (char *) t_mint(t_header("ES256", "es1"), T_PAYLOAD, "es1", 0);
    snprintf(tok, sizeof(tok), "%s", p);
    n = strrchr(tok, '.') - tok;
    tok[n + 5] = tok[n + 5] == 'A' ? 'B' : 'A';
    t_verdict(tok, NULL, 0, PG_TOKEN_SIGNATURE, "ES256, signature tampered");

    snprintf(tok, sizeof(tok), "%s", p);
    n = strchr(tok, '.') - tok;
    tok[n + 3] = tok[n + 3] == 'A' ? 'B' : 'A';
    t_verdict(tok, NULL, 0, PG_TOKEN_SIGNATURE, "ES256, payload tampered");

    /* times */
    t_verdict(t_mint(t_header("HS256", "hs1"), "{\"cid\":\"1001\"}", "hs1",
                     0), NULL, 0, PG_TOKEN_CLAIM, "no exp");
    t_verdict(t_mint(t_header("HS256", "hs1"), "{\"cid\":\"1001\",\"exp\":"
                     "\"1700000600\"}", "hs1", 0), NULL, 0, PG_TOKEN_CLAIM,
              "exp a string");
    t_verdict(t_mint(t_header("HS256", "hs1"), "{\"cid\":\"1001\",\"exp\":"
                     "1700000600,\"nbf\":true}", "hs1", 0), NULL, 0,
              PG_TOKEN_CLAIM, "nbf true");

#define T_EXP(exp)  t_mint(t_header("HS256", "hs1"),                        \
                           "{\"cid\":\"1001\",\"exp\":" exp "}", "hs1", 0)

    t_verdict(T_EXP("1700000000"), NULL, 0, PG_TOKEN_EXPIRED,
              "exp now: expired");
    t_verdict(T_EXP("1700000001"), NULL, 0, PG_TOKEN_VALID,
              "exp a second from now: valid");
    t_verdict(T_EXP("1699999999"), NULL, 0, PG_TOKEN_EXPIRED,
              "exp a second ago");
    t_verdict(T_EXP("1699999999"), NULL, 2, PG_TOKEN_VALID,
              "exp a second ago, leeway 2: valid");
    t_verdict(T_EXP("1699999998"), NULL, 2, PG_TOKEN_EXPIRED,
              "exp two seconds ago, leeway 2: expired");
    t_verdict(T_EXP("1700000000.5"), NULL, 0, PG_TOKEN_EXPIRED,
              "exp now and a half (fraction dropped)");
    t_verdict(T_EXP("1700000001.9"), NULL, 0, PG_TOKEN_VALID,
              "exp 1.9 s from now");
    t_verdict(T_EXP("1e300"), NULL, 0, PG_TOKEN_VALID, "exp 1e300");
    t_verdict(T_EXP("-1e300"), NULL, 0, PG_TOKEN_EXPIRED, "exp -1e300");
    t_verdict(T_EXP("9223372036854775807"), NULL, 1000000, PG_TOKEN_VALID,
              "exp INT64_MAX with a large leeway: no overflow");
    t_verdict(T_EXP("-9223372036854775807"), NULL, 0, PG_TOKEN_EXPIRED,
              "exp -INT64_MAX: no overflow");

#define T_NBF(nbf)  t_mint(t_header("HS256", "hs1"),                        \
                           "{\"cid\":\"1001\",\"exp\":1700000600,\"nbf\":"  \
                           nbf "}", "hs1", 0)

    t_verdict(T_NBF("1700000000"), NULL, 0, PG_TOKEN_VALID, "nbf now");
    t_verdict(T_NBF("1700000001"), NULL, 0, PG_TOKEN_NOT_YET_VALID,
              "nbf a second from now");
    t_verdict(T_NBF("1700000005"), NULL, 5, PG_TOKEN_VALID,
              "nbf 5 s from now, leeway 5");
    t_verdict(T_NBF("1700000006"), NULL, 5, PG_TOKEN_NOT_YET_VALID,
              "nbf 6 s from now, leeway 5");
    t_verdict(t_mint(t_header("HS256", "hs1"), "{\"cid\":\"1001\",\"exp\":"
                     "1699999000,\"nbf\":1800000000}", "hs1", 0), NULL, 0,
              PG_TOKEN_EXPIRED, "expired and not yet valid: expired");

    /* the company claim */
#define T_CID(cid)  t_mint(t_header("HS256", "hs1"),                        \
                           "{\"exp\":1700000600" cid "}", "hs1", 0)

    t_verdict(T_CID(""), NULL, 0, PG_TOKEN_CLAIM, "no cid");
    t_verdict(T_CID(",\"cid\":\"\""), NULL, 0, PG_TOKEN_CLAIM, "cid \"\"");
    t_verdict(T_CID(",\"cid\":\"a b\""), NULL, 0, PG_TOKEN_CLAIM,
              "cid \"a b\"");
    t_verdict(T_CID(",\"cid\":\"caf\\u00e9\""), NULL, 0, PG_TOKEN_CLAIM,
              "cid with a non-ASCII letter");
    t_verdict(T_CID(",\"cid\":\"a\\u0000b\""), NULL, 0, PG_TOKEN_MALFORMED,
              "cid with a NUL (jansson refuses \\u0000)");
    t_verdict(T_CID(",\"cid\":\"" "0123456789012345678901234567890123456789"
                    "01234567890123456789012345\""), NULL, 0, PG_TOKEN_CLAIM,
              "cid of 65 bytes");
    t_verdict(T_CID(",\"cid\":1.5"), NULL, 0, PG_TOKEN_CLAIM, "cid 1.5");
    t_verdict(T_CID(",\"cid\":true"), NULL, 0, PG_TOKEN_CLAIM, "cid true");
    t_verdict(T_CID(",\"cid\":null"), NULL, 0, PG_TOKEN_CLAIM, "cid null");
    t_verdict(T_CID(",\"cid\":[\"1001\"]"), NULL, 0, PG_TOKEN_CLAIM,
              "cid an array");
    t_ok(strcmp(t_company(T_CID(",\"cid\":1001"), NULL), "1001") == 0,
         "cid the integer 1001 is company \"1001\"");
    t_ok(strcmp(t_company(T_CID(",\"cid\":-5"), NULL), "-5") == 0,
         "cid -5 is company \"-5\"");
    t_ok(strcmp(t_company(T_CID(",\"cid\":\""
                                "0123456789012345678901234567890123456789"
                                "012345678901234567890123\""), NULL),
                "0123456789012345678901234567890123456789"
                "012345678901234567890123") == 0, "cid of 64 bytes");
    t_ok(strcmp(t_company(T_CID(",\"cid\":\"Acme.Corp_1-x\""), NULL),
                "Acme.Corp_1-x") == 0, "cid Acme.Corp_1-x");
    t_ok(strcmp(t_company(T_CID(",\"cid\":\"x\",\"org\":\"acme\""), "org"),
                "acme") == 0, "claim org: the company is org's");
    t_verdict(T_CID(",\"cid\":\"x\""), "org", 0, PG_TOKEN_CLAIM,
              "claim org, only cid there");
    t_ok(strcmp(t_company(T_CID(",\"https://example.com/company\":\"c9\""),
                          "https://example.com/company"), "c9") == 0,
         "a namespaced claim name");
}


/* --- signing and keys ------------------------------------------------------ */

static void
test_sign(void)
{
    int                can;
    char              *tok, *text;
    json_t            *jwk, *jwks, *pub;
    pg_error_t         err;
    pg_token_alg_t     alg;
    pg_token_keys_t   *keys, *pkeys;
    pg_token_result_t  res;

    t_ok(pg_token_issue(t_keys, "es1", NULL, "1001", NOW, 60, &tok, &err)
         == PG_OK
         && pg_token_verify(t_keys, tok, strlen(tok), NULL, NOW + 59, 0,
                            &res, &err) == PG_OK
         && strcmp(res.company, "1001") == 0 && res.exp == NOW + 60,
         "issue ES256: valid for its ttl");
    free(tok);

    t_ok(pg_token_issue(t_keys, "hs1", "org", "acme", NOW, 60, &tok, &err)
         == PG_OK
         && pg_token_verify(t_keys, tok, strlen(tok), "org", NOW + 60, 0,
                            &res, &err) == PG_ERR
         && res.status == PG_TOKEN_EXPIRED,
         "issue HS256 with claim org: expired after its ttl");
    free(tok);

    t_ok(pg_token_issue(t_keys, NULL, NULL, "1001", NOW, 60, &tok, &err)
         == PG_OK && strncmp(tok, t_b64("{\"alg\":\"HS256\",\"kid\":\"hs2\",",
                                        27), 36) == 0,
         "no kid: the last key that can sign (hs2; es2 has no d)");
    free(tok);

    t_ok(pg_token_issue(t_keys, "es2", NULL, "1001", NOW, 60, &tok, &err)
         == PG_ERR && strstr(err.text, "key \"es2\" cannot sign") != NULL,
         "a key without d cannot sign: %s", err.text);
    t_ok(pg_token_issue(t_keys, "nope", NULL, "1001", NOW, 60, &tok, &err)
         == PG_ERR && strstr(err.text, "no key \"nope\"") != NULL,
         "an unknown kid cannot sign");
    t_ok(pg_token_issue(t_keys, "hs1", NULL, "a b", NOW, 60, &tok, &err)
         == PG_ERR && strstr(err.text, "invalid company id") != NULL,
         "issue refuses a bad company id");
    t_ok(pg_token_issue(t_keys, "hs1", "exp", "1001", NOW, 60, &tok, &err)
         == PG_ERR && strstr(err.text, "invalid claim name") != NULL,
         "issue refuses claim exp");
    t_ok(pg_token_issue(t_keys, "hs1", NULL, "1001", NOW, 0, &tok, &err)
         == PG_ERR && strstr(err.text, "invalid ttl") != NULL,
         "issue refuses ttl 0");

    t_ok(pg_token_valid_claim("cid", 3) && pg_token_valid_claim("a:b/c", 5)
         && !pg_token_valid_claim("", 0) && !pg_token_valid_claim("a b", 3)
         && !pg_token_valid_claim("a\"b", 3)
         && !pg_token_valid_claim("nbf", 3) && !pg_token_valid_claim("iat", 3),
         "claim names: printable, no space or quote, not a time");

    /* keygen, both kinds, and the public part */
    jwks = json_pack("{s:[]}", "keys");

    jwk = pg_token_jwk_new(PG_TOKEN_ES256, "new-es", &err);
    t_ok(jwk != NULL && json_object_get(jwk, "d") != NULL
         && strcmp(json_string_value(json_object_get(jwk, "kid")), "new-es")
            == 0, "keygen ES256: a JWK with d and the kid given");
    json_array_append_new(json_object_get(jwks, "keys"), jwk);

    jwk = pg_token_jwk_new(PG_TOKEN_HS256, NULL, &err);
    t_ok(jwk != NULL
         && strlen(json_string_value(json_object_get(jwk, "kid"))) == 43,
         "keygen HS256 without a kid: its thumbprint (43 characters)");
    json_array_append_new(json_object_get(jwks, "keys"), jwk);

    t_ok(pg_token_jwk_new(PG_TOKEN_HS256, "a\tb", &err) == NULL,
         "keygen refuses a kid with a tab");

    t_ok(pg_token_keys_from_json(jwks, PG_TOKEN_KEYS_SIGN, &keys, &err)
         == PG_OK && pg_token_keys_private(keys) == 1,
         "the new JWKS loads to sign; one private key");

    pub = pg_token_jwks_public(jwks, &err);
    text = pub ? json_dumps(pub, JSON_COMPACT) : NULL;
    t_ok(text != NULL && strstr(text, "\"d\"") == NULL
         && pg_token_keys_from_json(pub, 0, &pkeys, &err) == PG_OK
         && pg_token_keys_private(pkeys) == 0,
         "its public part has no d, and loads");

    t_ok(pg_token_keys_kid(pkeys, 0, &alg, &can) != NULL
         && alg == PG_TOKEN_ES256 && !can
         && pg_token_keys_kid(pkeys, 1, &alg, &can) != NULL
         && alg == PG_TOKEN_HS256 && can
         && pg_token_keys_kid(pkeys, 2, &alg, &can) == NULL,
         "keys_kid lists both, ES256 without d cannot sign");

    t_ok(pg_token_issue(keys, "new-es", NULL, "c1", NOW, 60, &tok, &err)
         == PG_OK
         && pg_token_verify(pkeys, tok, strlen(tok), NULL, NOW, 0, &res,
                            &err) == PG_OK
         && strcmp(res.company, "c1") == 0,
         "a token of the private JWKS verifies with the public one");
    free(tok);

    json_array_append_new(json_object_get(jwks, "keys"), json_integer(1));
    t_ok(pg_token_jwks_public(jwks, &err) == NULL
         && strstr(err.text, "key 3") != NULL,
         "public refuses an invalid JWKS: %s", err.text);

    free(text);
    json_decref(pub);
    json_decref(jwks);
    pg_token_keys_free(keys);
    pg_token_keys_free(pkeys);

    t_ok(pg_token_cache_hash("abc.def.ghi", 11, 7)
         == pg_token_cache_hash("abc.def.ghi", 11, 7)
         && pg_token_cache_hash("abc.def.ghi", 11, 7)
            != pg_token_cache_hash("abc.def.ghj", 11, 7)
         && pg_token_cache_hash("abc.def.ghi", 11, 7)
            != pg_token_cache_hash("abc.def.ghi", 11, 8)
         && pg_token_cache_hash("", 0, 7) == pg_token_cache_hash("", 0, 7),
         "the cache hash: the same token the same hash, per seed");

    t_ok(strcmp(pg_token_status_name(PG_TOKEN_VALID), "") == 0
         && strcmp(pg_token_status_name(PG_TOKEN_NOT_YET_VALID),
                   "not_yet_valid") == 0
         && strcmp(pg_token_status_name(PG_TOKEN_UNKNOWN_KID), "unknown_kid")
            == 0
         && strcmp(pg_token_status_name(PG_TOKEN_CLAIM), "claim") == 0,
         "status names as $portal_gate_token_error spells them");
}


/* The messages quote what a token says, never the token. */
static void
test_messages(void)
{
    const char         *tok;
    pg_error_t          err;
    pg_token_result_t   res;

    tok = t_mint("{\"alg\":\"HS256\",\"kid\":\"hs9\\n[alert] x\"}", T_PAYLOAD,
                 "hs1", 0);
    pg_token_verify(t_keys, tok, strlen(tok), NULL, NOW, 0, &res, &err);
    t_ok(strstr(err.text, "no key \"hs9?[alert] x\"") != NULL,
         "a kid's newline is quoted as '?': %s", err.text);

    tok = t_mint(t_header("HS256", "hs2"), T_PAYLOAD, "hs1", 0);
    pg_token_verify(t_keys, tok, strlen(tok), NULL, NOW, 0, &res, &err);
    t_ok(strstr(err.text, strrchr(tok, '.') + 1) == NULL
         && strstr(err.text, "eyJ") == NULL,
         "a signature message holds no part of the token: %s", err.text);
}


int
main(void)
{
    char        text[4096];
    char       *x, *x2, *x3;
    json_t     *jwk;
    pg_error_t  err;

    if (mkdtemp(t_dir) == NULL) {
        printf("Bail out! mkdtemp: %s\n", strerror(errno));
        return 1;
    }

    /* the tests' keys: two secrets, an ES256 pair and a public key */
    jwk = pg_token_jwk_new(PG_TOKEN_ES256, "es1", &err);
    x = json_dumps(jwk, JSON_COMPACT);
    snprintf(t_es1_x, sizeof(t_es1_x), "%s",
             json_string_value(json_object_get(jwk, "x")));
    json_decref(jwk);

    jwk = pg_token_jwk_new(PG_TOKEN_ES256, "es2", &err);
    x2 = json_dumps(jwk, JSON_COMPACT);
    json_object_del(jwk, "d");
    x3 = json_dumps(jwk, JSON_COMPACT);
    json_decref(jwk);

#define T_JWKS  "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"hs1\",\"k\":\"" A1_K   \
                "\"},%s,%s,{\"kty\":\"oct\",\"kid\":\"hs2\",\"k\":\"%s\"}]}"

    snprintf(text, sizeof(text), T_JWKS, x, x3,
             t_b64("another secret of at least 32 bytes!", 36));

    if (pg_token_keys_parse(text, strlen(text), PG_TOKEN_KEYS_SIGN, &t_keys,
                            &err) != PG_OK)
    {
        printf("Bail out! the tests' keys: %s\n", err.text);
        return 1;
    }

    snprintf(text, sizeof(text), T_JWKS, x, x2,
             t_b64("another secret of at least 32 bytes!", 36));

    if (pg_token_keys_parse(text, strlen(text), PG_TOKEN_KEYS_SIGN,
                            &t_signer, &err) != PG_OK)
    {
        printf("Bail out! the tests' signing keys: %s\n", err.text);
        return 1;
    }

    free(x);
    free(x2);
    free(x3);

    test_b64();
    test_rfc();
    test_jwks();
    test_files();
    test_verify();
    test_sign();
    test_messages();

    pg_token_keys_free(t_keys);
    pg_token_keys_free(t_signer);
    rmdir(t_dir);

    printf("1..%d\n", t_count);

    return t_failed ? 1 : 0;
}
