/*
 * pg_ctl_token.c: `portal-gatectl token ...`, the application's side of
 * trusted company identity (DESIGN.md): the keys the application signs
 * company tokens with, and tokens for tests and support.
 *
 *   token keygen --keys FILE [--alg ES256|HS256] [--kid KID]
 *                [--public FILE]
 *       add a new key to FILE (a JWKS, private parts included; made 0600
 *       when new): old keys stay, so tokens signed with them stay valid
 *       while both are listed (rotation). --public writes what nginx's
 *       keys= reads: the same keys without ES256 private parts (an HS256
 *       secret is shared by nature, so HS256 keys are in it as they are).
 *   token public --keys FILE [--out FILE]
 *       that public JWKS, to stdout or a file
 *   token issue --keys FILE --company ID [--ttl TIME] [--kid KID]
 *               [--claim NAME]
 *       a token for ID, valid TIME (default 1h; 30s, 10m, 1h, 7d), signed
 *       with KID (default: the newest key that can sign)
 *   token verify --keys FILE [--claim NAME] [--leeway TIME] TOKEN
 *       what the edge makes of TOKEN: the company, or the reason it
 *       refuses it (the words of $portal_gate_token_error); exit 1 then
 *
 * It needs no Redis and reads no config: `token` stands first on the
 * command line, and takes only its own options. Exit 0, 1 (a file cannot
 * be read or written, a token refused) or 2 (usage).
 */

#include <getopt.h>             /* getopt_long */
#include <stdio.h>              /* printf, fprintf */
#include <stdlib.h>             /* free, strtoll */
#include <string.h>             /* strcmp, strlen */
#include <time.h>               /* time */
#include <unistd.h>             /* access */
#include "pg_cert.h"            /* pg_cert_write_file, pg_cert_read_file */
#include "pg_ctl.h"             /* pg_ctl_error, PG_CTL_* */
#include "pg_token.h"           /* the keys, signing, verifying */


#define PG_CTL_TOKEN_TTL     3600       /* s: token issue's default */
#define PG_CTL_TOKEN_TTL_MAX (366L * 24 * 3600)


typedef struct {
    const char  *keys;
    const char  *out;
    const char  *alg;
    const char  *kid;
    const char  *company;
    const char  *claim;
    long         ttl;
    long         leeway;
} pg_ctl_token_opts_t;


static int pg_ctl_token_keygen(pg_ctl_token_opts_t *t);
static int pg_ctl_token_public(pg_ctl_token_opts_t *t, const char *out);
static int pg_ctl_token_issue(pg_ctl_token_opts_t *t);
static int pg_ctl_token_verify(pg_ctl_token_opts_t *t, const char *token);
static json_t *pg_ctl_token_read_jwks(const char *path, int missing_ok);
static int pg_ctl_token_write_jwks(const char *path, json_t *jwks);
static int pg_ctl_token_time(const char *s, long *seconds);


static const struct option  pg_ctl_token_longopts[] = {
    { "keys",    required_argument, NULL, 'k' },
    { "public",  required_argument, NULL, 'P' },
    { "out",     required_argument, NULL, 'o' },
    { "alg",     required_argument, NULL, 'a' },
    { "kid",     required_argument, NULL, 'i' },
    { "company", required_argument, NULL, 'C' },
    { "claim",   required_argument, NULL, 'l' },
    { "ttl",     required_argument, NULL, 't' },
    { "leeway",  required_argument, NULL, 'L' },
    { "help",    no_argument,       NULL, 'h' },
    { NULL, 0, NULL, 0 }
};


static const char  pg_ctl_token_usage[] =
    "usage: portal-gatectl token COMMAND [options]\n"
    "\n"
    "  keygen --keys FILE [--alg ES256|HS256] [--kid KID] [--public FILE]\n"
    "                       add a new key to FILE (0600; old keys stay:\n"
    "                       rotation); --public: nginx's keys= file\n"
    "  public --keys FILE [--out FILE]\n"
    "                       the JWKS nginx reads: no ES256 private parts\n"
    "  issue --keys FILE --company ID [--ttl TIME] [--kid KID]\n"
    "        [--claim NAME] a token for ID (TIME: 30s, 10m, 1h (default),\n"
    "                       7d), signed with KID (default: the newest key)\n"
    "  verify --keys FILE [--claim NAME] [--leeway TIME] TOKEN\n"
    "                       the company, or why the edge refuses it\n"
    "\n"
    "exit status: 0 done, 1 failed (a file, a refused token), 2 usage\n";


/* argv[0] is "token". */
int
pg_ctl_token(int argc, char **argv)
{
    int                   ch, rc;
    const char           *cmd, *public;
    pg_ctl_token_opts_t   t;

    memset(&t, 0, sizeof(t));
    t.ttl = PG_CTL_TOKEN_TTL;
    public = NULL;

    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (strcmp(argv[1], "-h") == 0
                          || strcmp(argv[1], "--help") == 0))
        {
            fputs(pg_ctl_token_usage, stdout);
            return PG_CTL_OK;
        }

        return pg_ctl_error(PG_CTL_USAGE, "token needs a command: keygen, "
                            "public, issue or verify; see 'portal-gatectl "
                            "token -h'");
    }

    cmd = argv[1];
    argc--;
    argv++;
    optind = 1;
    opterr = 0;

    while ((ch = getopt_long(argc, argv, ":h", pg_ctl_token_longopts, NULL))
           != -1)
    {
        switch (ch) {
        case 'k': t.keys = optarg; break;
        case 'P': public = optarg; break;
        case 'o': t.out = optarg; break;
        case 'a': t.alg = optarg; break;
        case 'i': t.kid = optarg; break;
        case 'C': t.company = optarg; break;
        case 'l': t.claim = optarg; break;

        case 't':
        case 'L':
            if (pg_ctl_token_time(optarg, ch == 't' ? &t.ttl : &t.leeway)
                != PG_OK)
            {
                return pg_ctl_error(PG_CTL_USAGE, "invalid %s \"%s\": "
                                    "expected seconds, or a number with "
                                    "s, m, h or d", ch == 't' ? "--ttl"
                                    : "--leeway", optarg);
            }
            break;

        case 'h':
            fputs(pg_ctl_token_usage, stdout);
            return PG_CTL_OK;

        case ':':
            return pg_ctl_error(PG_CTL_USAGE, "option %s needs a value; "
                                "see 'portal-gatectl token -h'",
                                argv[optind - 1]);

        default:
            return pg_ctl_error(PG_CTL_USAGE, "unknown option %s for token "
                                "%s; see 'portal-gatectl token -h'",
                                argv[optind - 1], cmd);
        }
    }

    if (t.keys == NULL) {
        return pg_ctl_error(PG_CTL_USAGE, "token %s needs --keys FILE", cmd);
    }

    if (t.claim != NULL && !pg_token_valid_claim(t.claim, strlen(t.claim)))
    {
        return pg_ctl_error(PG_CTL_USAGE, "invalid --claim \"%s\"",
                            t.claim);
    }

    if (strcmp(cmd, "verify") == 0) {
        if (optind != argc - 1) {
            return pg_ctl_error(PG_CTL_USAGE, "usage: portal-gatectl token "
                                "verify --keys FILE TOKEN");
        }

        return pg_ctl_token_verify(&t, argv[optind]);
    }

    if (optind != argc) {
        return pg_ctl_error(PG_CTL_USAGE, "unexpected \"%s\" after token "
                            "%s; see 'portal-gatectl token -h'",
                            argv[optind], cmd);
    }

    if (strcmp(cmd, "keygen") == 0) {
        rc = pg_ctl_token_keygen(&t);

        if (rc != PG_CTL_OK || public == NULL) {
            return rc;
        }

        return pg_ctl_token_public(&t, public);
    }

    if (strcmp(cmd, "public") == 0) {
        return pg_ctl_token_public(&t, t.out);
    }

    if (strcmp(cmd, "issue") == 0) {
        return pg_ctl_token_issue(&t);
    }

    return pg_ctl_error(PG_CTL_USAGE, "unknown token command \"%s\": "
                        "keygen, public, issue or verify", cmd);
}


/* A new key, appended to the keys in t->keys (made when missing). */
static int
pg_ctl_token_keygen(pg_ctl_token_opts_t *t)
{
    const char      *kid;
    json_t          *jwks, *jwk, *keys;
    pg_error_t       err;
    pg_token_alg_t   alg;

    if (t->alg == NULL || strcmp(t->alg, "ES256") == 0) {
        alg = PG_TOKEN_ES256;

    } else if (strcmp(t->alg, "HS256") == 0) {
        alg = PG_TOKEN_HS256;

    } else {
        return pg_ctl_error(PG_CTL_USAGE, "invalid --alg \"%s\": expected "
                            "ES256 or HS256", t->alg);
    }

    jwks = pg_ctl_token_read_jwks(t->keys, 1);

    if (jwks == NULL) {
        return PG_CTL_FAILED;
    }

    jwk = pg_token_jwk_new(alg, t->kid, &err);

    if (jwk == NULL) {
        json_decref(jwks);
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
    }

    kid = json_string_value(json_object_get(jwk, "kid"));
    keys = json_object_get(jwks, "keys");

    if (json_array_append_new(keys, jwk) != 0) {
        json_decref(jwks);
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    /* the whole set must still load: a kid used twice, say */
    if (pg_ctl_token_write_jwks(t->keys, jwks) != PG_CTL_OK) {
        json_decref(jwks);
        return PG_CTL_FAILED;
    }

    printf("added %s key %s to %s (%zu keys)\n", pg_token_alg_name(alg),
           kid, t->keys, json_array_size(keys));
    json_decref(jwks);

    return PG_CTL_OK;
}


/* The public JWKS of t->keys, to out (a file, 0644) or stdout. */
static int
pg_ctl_token_public(pg_ctl_token_opts_t *t, const char *out)
{
    char        *text;
    json_t      *jwks, *pub;
    pg_error_t   err;

    jwks = pg_ctl_token_read_jwks(t->keys, 0);

    if (jwks == NULL) {
        return PG_CTL_FAILED;
    }

    pub = pg_token_jwks_public(jwks, &err);
    json_decref(jwks);

    if (pub == NULL) {
        return pg_ctl_error(PG_CTL_FAILED, "%s: %s", t->keys, err.text);
    }

    text = json_dumps(pub, JSON_INDENT(2));
    json_decref(pub);

    if (text == NULL) {
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    if (out == NULL) {
        printf("%s\n", text);
        free(text);
        return PG_CTL_OK;
    }

    /* an HS256 secret is in it: readable by nginx's master (root) only */
    if (pg_cert_write_file(out, text, strlen(text), 0600, &err) != PG_OK) {
        free(text);
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
    }

    free(text);
    printf("wrote the keys nginx reads (keys=%s)\n", out);

    return PG_CTL_OK;
}


static int
pg_ctl_token_issue(pg_ctl_token_opts_t *t)
{
    char             *token;
    pg_error_t        err;
    pg_token_keys_t  *keys;

    if (t->company == NULL) {
        return pg_ctl_error(PG_CTL_USAGE, "token issue needs --company ID");
    }

    if (t->ttl <= 0 || t->ttl > PG_CTL_TOKEN_TTL_MAX) {
        return pg_ctl_error(PG_CTL_USAGE, "invalid --ttl: from 1s to 366d");
    }

    if (pg_token_keys_load(t->keys, PG_TOKEN_KEYS_SIGN, &keys, &err)
        != PG_OK)
    {
        return pg_ctl_error(PG_CTL_FAILED, "%s: %s", t->keys, err.text);
    }

    if (pg_token_issue(keys, t->kid, t->claim, t->company,
                       (int64_t) time(NULL), t->ttl, &token, &err)
        != PG_OK)
    {
        pg_token_keys_free(keys);
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
    }

    printf("%s\n", token);
    free(token);
    pg_token_keys_free(keys);

    return PG_CTL_OK;
}


static int
pg_ctl_token_verify(pg_ctl_token_opts_t *t, const char *token)
{
    int                rc;
    int64_t            left;
    pg_error_t         err;
    pg_token_keys_t   *keys;
    pg_token_result_t  res;

    if (pg_token_keys_load(t->keys, 0, &keys, &err) != PG_OK) {
        return pg_ctl_error(PG_CTL_FAILED, "%s: %s", t->keys, err.text);
    }

    rc = pg_token_verify(keys, token, strlen(token),
                         t->claim ? t->claim : PG_TOKEN_DEFAULT_CLAIM,
                         (int64_t) time(NULL), t->leeway, &res, &err);
    pg_token_keys_free(keys);

    /* the word of $portal_gate_token_error, then the detail */
    if (rc != PG_OK || res.status != PG_TOKEN_VALID) {
        return pg_ctl_error(PG_CTL_FAILED, "refused: %s (%s)",
                            pg_token_status_name(res.status), err.text);
    }

    left = res.exp - (int64_t) time(NULL);

    if (left >= 0) {
        printf("company %s, valid %lld s more\n", res.company,
               (long long) left);

    } else {
        printf("company %s, expired %lld s ago, taken within the leeway\n",
               res.company, (long long) -left);
    }

    return PG_CTL_OK;
}


/*
 * The JWKS in path as a document (new), checked as the edge checks it;
 * with missing_ok, a file that does not exist is an empty set.
 */
static json_t *
pg_ctl_token_read_jwks(const char *path, int missing_ok)
{
    char             *text;
    size_t            len;
    json_t           *jwks;
    pg_error_t        err;
    json_error_t      jerr;
    pg_token_keys_t  *keys;

    if (missing_ok && access(path, F_OK) != 0) {
        return json_pack("{s:[]}", "keys");
    }

    if (pg_cert_read_file(path, &text, &len, &err) != PG_OK) {
        pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
        return NULL;
    }

    jwks = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);

    if (jwks == NULL) {
        pg_ctl_error(PG_CTL_FAILED, "%s:%d:%d: %s", path, jerr.line,
                     jerr.column, jerr.text);
        return NULL;
    }

    if (pg_token_keys_from_json(jwks, PG_TOKEN_KEYS_SIGN, &keys, &err)
        != PG_OK)
    {
        json_decref(jwks);
        pg_ctl_error(PG_CTL_FAILED, "%s: %s", path, err.text);
        return NULL;
    }

    pg_token_keys_free(keys);

    return jwks;
}


/* jwks to path (0600, atomically), once it is checked as a whole. */
static int
pg_ctl_token_write_jwks(const char *path, json_t *jwks)
{
    char             *text;
    pg_error_t        err;
    pg_token_keys_t  *keys;

    if (pg_token_keys_from_json(jwks, PG_TOKEN_KEYS_SIGN, &keys, &err)
        != PG_OK)
    {
        return pg_ctl_error(PG_CTL_FAILED, "%s: %s", path, err.text);
    }

    pg_token_keys_free(keys);

    text = json_dumps(jwks, JSON_INDENT(2));

    if (text == NULL) {
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    if (pg_cert_write_file(path, text, strlen(text), 0600, &err) != PG_OK) {
        free(text);
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
    }

    free(text);

    return PG_CTL_OK;
}


/* "90", "30s", "10m", "1h", "7d" as seconds. */
static int
pg_ctl_token_time(const char *s, long *seconds)
{
    char       *end;
    long long   n, unit;

    n = strtoll(s, &end, 10);

    if (end == s || n < 0 || n > 1000000000LL) {
        return PG_ERR;
    }

    unit = (*end == '\0' || strcmp(end, "s") == 0) ? 1
           : strcmp(end, "m") == 0 ? 60
           : strcmp(end, "h") == 0 ? 3600
           : strcmp(end, "d") == 0 ? 86400 : 0;

    if (unit == 0 || n > 100000000LL / unit * 10) {
        return PG_ERR;
    }

    *seconds = (long) (n * unit);

    return PG_OK;
}
