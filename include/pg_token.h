/*
 * pg_token.h: company tokens (DESIGN.md, "Trusted company identity"). The
 * application proves a request's company with a compact JWS (RFC 7515),
 * signed HS256 or ES256 (RFC 7518) with a key of a JWKS (RFC 7517) chosen
 * by the header's "kid"; the edge verifies it and takes the company from
 * one claim of the payload.
 *
 * Who uses what:
 *   - the nginx module: pg_token_keys_load() at configuration time,
 *     pg_token_verify() per request when its cache misses;
 *   - portal-gatectl token keygen|issue: pg_token_jwk_new(),
 *     pg_token_jwks_public(), pg_token_keys_from_json() with
 *     PG_TOKEN_KEYS_SIGN, pg_token_issue();
 *   - the tests and the fuzz target: all of it, pg_token_sign_raw() to make
 *     broken tokens.
 *
 * What is accepted, exactly:
 *   - a token is at most PG_TOKEN_MAX bytes: three parts of strict
 *     base64url (pg_b64.h) joined by '.';
 *   - the header is a JSON object (duplicate keys refused) with "alg"
 *     HS256 or ES256 and "kid" naming a key of the JWKS whose type is that
 *     algorithm's; "typ" and other members are not looked at, but "crit"
 *     is refused (no extension is understood);
 *   - the signature is 32 bytes (HMAC-SHA-256, compared in constant time)
 *     or 64 (ES256 as JOSE writes it, r||s; a DER signature is refused);
 *   - the payload is a JSON object (duplicate keys refused) with "exp", a
 *     number, required; "nbf", when present, a number; both with the
 *     leeway: valid while nbf - leeway <= now < exp + leeway;
 *   - the company is the claim (default "cid"): a string, or an integer
 *     taken as its decimal string, that is a valid company id
 *     (pg_valid_company: [A-Za-z0-9_.-]{1,64}).
 *
 * The JWKS: {"keys": [...]} and nothing else at the top; at most
 * PG_TOKEN_KEYS_MAX keys, each {"kty": "oct", "k"} (HS256, a secret of
 * 32 to PG_TOKEN_SECRET_MAX bytes) or {"kty": "EC", "crv": "P-256", "x",
 * "y"} (ES256, a point on the curve), with "kid" required and unique,
 * "alg" and "use" optional (but "alg" must be the key type's algorithm and
 * "use" must be "sig"), and "d" (an ES256 private key) allowed. Any other
 * member is refused, so a typo never passes silently.
 *
 * Private keys: an ES256 key with "d" signs; the edge needs only x and y.
 * One file may hold both (the module then ignores "d" and warns, the
 * edge should not hold what can mint tokens); pg_token_jwks_public()
 * gives the JWKS without them. An HS256 secret is the same on both sides.
 *
 * Errors: PG_OK or PG_ERR (portal_gate.h) and a pg_error_t. A message
 * never holds the token, nor a secret; strings taken from a token (kid,
 * alg, the claim) are quoted with anything unprintable replaced.
 *
 * Ownership: a pg_token_keys_t is made by pg_token_keys_*() and released
 * with pg_token_keys_free(); it is read-only once made, so a verifier may
 * share it (the module's workers do, after fork). A char * token returned
 * through an argument is malloc()ed and the caller's to free(). json_t
 * results are new references.
 */

#ifndef PG_TOKEN_H
#define PG_TOKEN_H

#include <stddef.h>             /* size_t */
#include <stdint.h>             /* int64_t */
#include <jansson.h>            /* json_t: JWKS and JWK documents */
#include "portal_gate.h"        /* pg_error_t, PG_OK, PG_ERR, PG_ID_MAX */


#define PG_TOKEN_MAX            4096        /* bytes of a token */
#define PG_TOKEN_KEYS_MAX       64          /* keys in a JWKS */
#define PG_TOKEN_FILE_MAX       (64 * 1024) /* bytes of a JWKS file */
#define PG_TOKEN_KID_MAX        128         /* bytes of a kid */
#define PG_TOKEN_CLAIM_MAX      128         /* bytes of a claim's name */
#define PG_TOKEN_SECRET_MIN     32          /* HS256: RFC 7518 3.2 */
#define PG_TOKEN_SECRET_MAX     512
#define PG_TOKEN_SIG_MAX        64          /* bytes of a signature */
#define PG_TOKEN_DEFAULT_CLAIM  "cid"


/* The verdict on a token; pg_token_status_name() spells it as
 * $portal_gate_token_error does. */
typedef enum {
    PG_TOKEN_VALID = 0,         /* "" */
    PG_TOKEN_MISSING,           /* "missing": empty */
    PG_TOKEN_MALFORMED,         /* "malformed": too long, not three parts
                                   of base64url, a header or payload that
                                   is not a JSON object (duplicate keys
                                   included), a "crit" header */
    PG_TOKEN_ALG,               /* "alg": no alg, none, another algorithm,
                                   or one that is not the key's */
    PG_TOKEN_UNKNOWN_KID,       /* "unknown_kid": no kid, or not in the
                                   JWKS */
    PG_TOKEN_SIGNATURE,         /* "signature": wrong length (DER) or does
                                   not verify */
    PG_TOKEN_EXPIRED,           /* "expired": now >= exp + leeway */
    PG_TOKEN_NOT_YET_VALID,     /* "not_yet_valid": now < nbf - leeway */
    PG_TOKEN_CLAIM              /* "claim": exp missing, exp or nbf not a
                                   number, the company claim missing or not
                                   a valid company id */
} pg_token_status_t;


typedef enum {
    PG_TOKEN_HS256 = 1,
    PG_TOKEN_ES256
} pg_token_alg_t;


typedef struct pg_token_keys_s  pg_token_keys_t;


typedef struct {
    pg_token_status_t  status;
    char               company[PG_ID_MAX + 1];  /* NUL-terminated; "" unless
                                                   VALID */
    size_t             company_len;
    int64_t            exp;     /* whole seconds (a fraction is dropped);
                                   meaningful when VALID */
} pg_token_result_t;


/* --- names ------------------------------------------------------------ */

/* "", "missing", "malformed", ...: static. */
const char *pg_token_status_name(pg_token_status_t status);

/* "HS256" or "ES256": static. */
const char *pg_token_alg_name(pg_token_alg_t alg);

/* A claim name the module accepts: 1 to PG_TOKEN_CLAIM_MAX printable
 * ASCII characters, no space, quote or backslash. Returns 1 or 0. */
int pg_token_valid_claim(const char *s, size_t len);


/* --- keys ------------------------------------------------------------- */

/* pg_token_keys_*() flags: keep ES256 private keys ("d"), to sign with.
 * Without it "d" is checked for form, counted and not kept. */
#define PG_TOKEN_KEYS_SIGN      1

/*
 * Parse a JWKS (JSON text, or a parsed document, borrowed) into a new
 * key set. Everything is checked before anything is returned: an error
 * names the key (its position and kid) and what is wrong with it, and
 * for text that is not JSON, the line and column.
 */
int pg_token_keys_parse(const char *text, size_t len, int flags,
    pg_token_keys_t **keys, pg_error_t *err);
int pg_token_keys_from_json(const json_t *jwks, int flags,
    pg_token_keys_t **keys, pg_error_t *err);

/* Read a JWKS file: a regular file (opened without blocking, so a FIFO
 * never hangs the caller) of at most PG_TOKEN_FILE_MAX bytes. Symbolic
 * links are followed (secrets are often mounted as links). The message
 * of an error does not name the file: the caller does. */
int pg_token_keys_load(const char *path, int flags, pg_token_keys_t **keys,
    pg_error_t *err);

void pg_token_keys_free(pg_token_keys_t *keys);

/* How many keys; how many of them came with an ES256 private key ("d"). */
size_t pg_token_keys_count(const pg_token_keys_t *keys);
size_t pg_token_keys_private(const pg_token_keys_t *keys);

/* Key i's kid (NUL-terminated, borrowed) and algorithm; NULL when i is
 * out of range. can_sign (may be NULL) says whether it can sign: HS256
 * always, ES256 when loaded with its "d" under PG_TOKEN_KEYS_SIGN. */
const char *pg_token_keys_kid(const pg_token_keys_t *keys, size_t i,
    pg_token_alg_t *alg, int *can_sign);


/* --- verifying --------------------------------------------------------- */

/*
 * Verify token[0..len) against keys at time now (seconds since the epoch)
 * with leeway seconds (>= 0) for exp and nbf, and take the company from
 * claim (NULL: "cid"). Returns PG_OK with res->status VALID and the
 * company, or PG_ERR with res->status saying why and err the detail.
 */
int pg_token_verify(const pg_token_keys_t *keys, const char *token,
    size_t len, const char *claim, int64_t now, int64_t leeway,
    pg_token_result_t *res, pg_error_t *err);

/*
 * The hash a cache of verified tokens files token[0..len) under (the
 * module's per-worker LRU): murmur3 of its last 32 bytes, the signature's
 * (random for ES256, a MAC for HS256), and of its length, with seed. Only
 * the bucket depends on it: a hit is the whole token compared.
 */
uint32_t pg_token_cache_hash(const char *token, size_t len, uint32_t seed);

/*
 * Check sig[0..siglen) on input[0..len) with key kid, as the verifier
 * does once it has chosen the key: the algorithm must be the key's.
 * PG_OK when it verifies. For the tests (RFC 7515's examples, which have
 * no kid).
 */
int pg_token_check_signature(const pg_token_keys_t *keys, const char *kid,
    pg_token_alg_t alg, const void *input, size_t len,
    const unsigned char *sig, size_t siglen, pg_error_t *err);


/* --- signing (portal-gatectl, the tests) --------------------------------- */

/*
 * The signature of input[0..len) with key kid (NULL: the last key in the
 * set that can sign), in JOSE's form: 32 bytes for HS256, 64 (r||s) for
 * ES256, written to sig (PG_TOKEN_SIG_MAX bytes); *siglen gets the length
 * and *alg (may be NULL) the key's algorithm.
 */
int pg_token_sign_raw(const pg_token_keys_t *keys, const char *kid,
    const void *input, size_t len, unsigned char *sig, size_t *siglen,
    pg_token_alg_t *alg, pg_error_t *err);

/*
 * A token whose payload is payload[0..len), as given, signed with key kid
 * (NULL: the last key that can sign) under the header
 * {"alg":ALG,"kid":KID,"typ":"JWT"}. *token is new, NUL-terminated.
 */
int pg_token_sign(const pg_token_keys_t *keys, const char *kid,
    const char *payload, size_t len, char **token, pg_error_t *err);

/*
 * A token for company (a valid company id): payload
 * {"<claim>": company, "iat": now, "exp": now + ttl} with claim NULL for
 * "cid", ttl > 0; signed as pg_token_sign() signs.
 */
int pg_token_issue(const pg_token_keys_t *keys, const char *kid,
    const char *claim, const char *company, int64_t now, int64_t ttl,
    char **token, pg_error_t *err);


/* --- key generation (portal-gatectl token keygen) ------------------------ */

/*
 * A new random key as a JWK, private part included:
 *   HS256: {"kty":"oct","kid","alg":"HS256","use":"sig","k"} (32 bytes);
 *   ES256: {"kty":"EC","crv":"P-256","kid","alg":"ES256","use":"sig",
 *           "x","y","d"}.
 * kid NULL: the key's RFC 7638 thumbprint. Append it to a JWKS's "keys"
 * to rotate: old and new are both valid while both are listed.
 */
json_t *pg_token_jwk_new(pg_token_alg_t alg, const char *kid,
    pg_error_t *err);

/*
 * What an edge should hold: a copy of jwks with every ES256 "d" removed,
 * once jwks is checked as pg_token_keys_from_json() checks it. NULL with
 * err on an invalid JWKS.
 */
json_t *pg_token_jwks_public(const json_t *jwks, pg_error_t *err);


#endif /* PG_TOKEN_H */
