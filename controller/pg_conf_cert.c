/*
 * pg_conf_cert.c: the certificates' directives of portal-gated.conf
 * (DESIGN.md, "Staging certificates"):
 *
 *   state_dir    /var/lib/portal-gate;
 *   nginx        conf=/etc/nginx/nginx.conf [pid=/run/nginx.pid]
 *                [binary=/usr/sbin/nginx] [prefix=DIR]
 *                [reload=on|off];                           # repeatable
 *                # pid=: SIGHUP from portal-gated; without: binary -s
 *                # reload (the package's root helper sends it)
 *   certificate  staging.example.com {
 *       names      staging.example.com www.staging.example.com;
 *       issuer     acme https://acme-v02.api.letsencrypt.org/directory;
 *       # issuer   local /etc/portal-gate/ca.pem /etc/portal-gate/ca.key;
 *       acme_ca    /etc/ssl/certs/ca-certificates.crt;
 *       contact    mailto:ops@example.com;
 *       key_type   ecdsa;                  # ecdsa | rsa
 *       profile    tlsserver;
 *       fullchain  /etc/portal-gate/certs/staging.example.com/fullchain.pem;
 *       privkey    /etc/portal-gate/certs/staging.example.com/privkey.pem;
 *   }
 *
 * What a block must hold is checked at its "}": an issuer, fullchain and
 * privkey; acme_ca, contact and profile only with an ACME issuer; a
 * wildcard name only with the local CA (http-01 cannot validate one). No
 * two blocks share a name or an output file, and a block's paths are
 * absolute: portal-gated runs from / and nginx reads them as root.
 */

#include <stdio.h>          /* snprintf */
#include <string.h>         /* strcmp, strlen, strncmp, memcpy, strchr */
#include "pg_conf_private.h"    /* the parser's state and helpers */


#define PG_CONF_DNS_MAX       253       /* bytes of a DNS name */
#define PG_CONF_LABEL_MAX     63        /* bytes of one of its labels */


static int pg_conf_dns_name(pg_conf_parse_t *cp, int i, char *name);
static int pg_conf_cert_names(pg_conf_parse_t *cp);
static int pg_conf_cert_issuer(pg_conf_parse_t *cp);
static int pg_conf_cert_acme_ca(pg_conf_parse_t *cp);
static int pg_conf_cert_contact(pg_conf_parse_t *cp);
static int pg_conf_cert_key_type(pg_conf_parse_t *cp);
static int pg_conf_cert_profile(pg_conf_parse_t *cp);
static int pg_conf_cert_fullchain(pg_conf_parse_t *cp);
static int pg_conf_cert_privkey(pg_conf_parse_t *cp);
static int pg_conf_cert_clash(const char *a, const char *b);


/* The directives of a certificate block; indexes name cert_seen[]. */
static const pg_conf_command_t  pg_conf_cert_commands[
    PG_CONF_CERT_COMMANDS + 1] =
{
    { "names",     1, PG_CONF_CERT_NAMES, 0, pg_conf_cert_names },
    { "issuer",    2, 3,                  0, pg_conf_cert_issuer },
    { "acme_ca",   1, 1,                  0, pg_conf_cert_acme_ca },
    { "contact",   1, PG_CONF_CONTACTS,   0, pg_conf_cert_contact },
    { "key_type",  1, 1,                  0, pg_conf_cert_key_type },
    { "profile",   1, 1,                  0, pg_conf_cert_profile },
    { "fullchain", 1, 1,                  0, pg_conf_cert_fullchain },
    { "privkey",   1, 1,                  0, pg_conf_cert_privkey },

    { NULL, 0, 0, 0, NULL }
};


/* --- top level ---------------------------------------------------------- */

/* state_dir DIR;  an absolute path: account keys, issuance state. */
int
pg_conf_set_state_dir(pg_conf_parse_t *cp)
{
    return pg_conf_path(cp, 1, cp->args[1], cp->conf.state_dir,
                        sizeof(cp->conf.state_dir), 1);
}


/*
 * nginx conf=PATH [pid=PATH] [binary=PATH] [prefix=DIR] [reload=on|off];
 * repeatable, each key once, conf required, no two lines with the same
 * conf. Without pid= (and reload on), the reload is `BINARY -s reload`.
 */
int
pg_conf_set_nginx(pg_conf_parse_t *cp)
{
    int               i;
    size_t            k, klen;
    char             *out;
    const char       *eq;
    pg_conf_nginx_t   ngx;

    static const char  *const keys[] = { "conf", "pid", "binary", "prefix",
                                         "reload" };

    memset(&ngx, 0, sizeof(ngx));
    ngx.reload = -1;

    for (i = 1; i < cp->nargs; i++) {
        eq = strchr(cp->args[i], '=');
        klen = eq ? (size_t) (eq - cp->args[i]) : 0;

        for (k = 0; k < 5; k++) {
            if (klen == strlen(keys[k])
                && strncmp(cp->args[i], keys[k], klen) == 0)
            {
                break;
            }
        }

        if (k == 5) {
            return pg_conf_invalid(cp, i, "expected conf=PATH, pid=PATH, "
                                   "binary=PATH, prefix=DIR or "
                                   "reload=on|off");
        }

        if (k == 4) {
            if (ngx.reload != -1) {
                return pg_conf_invalid(cp, i, "given twice");
            }

            if (strcmp(eq + 1, "on") != 0 && strcmp(eq + 1, "off") != 0) {
                return pg_conf_invalid(cp, i, "expected reload=on or "
                                       "reload=off");
            }

            ngx.reload = strcmp(eq + 1, "on") == 0;
            continue;
        }

        out = (k == 0) ? ngx.conf : (k == 1) ? ngx.pid
              : (k == 2) ? ngx.binary : ngx.prefix;

        if (out[0] != '\0') {
            return pg_conf_invalid(cp, i, "given twice");
        }

        /* prefix=DIR is a folder; the others are files */
        if (pg_conf_path(cp, i, eq + 1, out, PG_CONF_PATH_MAX, k == 3)
            != PG_OK)
        {
            return PG_ERR;
        }
    }

    /* reload=off: nginx reads the pair at each handshake (a variable in
     * ssl_certificate), so the install only checks it with nginx -t */
    if (ngx.reload == -1) {
        ngx.reload = 1;
    }

    /* no pid= with the reload on: `BINARY -s reload` does it (the
     * package's root helper), so portal-gated needs no right to signal */
    if (ngx.conf[0] == '\0') {
        return pg_conf_error(cp, cp->lines[0], "\"nginx\" needs "
                             "conf=PATH");
    }

    if (ngx.binary[0] == '\0') {
        snprintf(ngx.binary, sizeof(ngx.binary), "%s",
                 PG_CONF_NGINX_BINARY);
    }

    /* the file's nginx lines replace those in *conf, as edges do */
    for (k = 0; k < cp->nnginx; k++) {
        if (strcmp(cp->conf.nginx[k].conf, ngx.conf) == 0) {
            return pg_conf_error(cp, cp->lines[0], "duplicate nginx "
                                 "conf=%s, first on line %d", ngx.conf,
                                 cp->conf.nginx[k].line);
        }
    }

    if (cp->nnginx == PG_CONF_NGINX_MAX) {
        return pg_conf_error(cp, cp->lines[0], "too many \"nginx\" "
                             "directives: at most %d", PG_CONF_NGINX_MAX);
    }

    ngx.line = cp->lines[0];
    cp->conf.nginx[cp->nnginx++] = ngx;
    cp->conf.nnginx = cp->nnginx;

    return PG_OK;
}


/* --- the block ---------------------------------------------------------- */

/* certificate NAME {  a DNS name, once in the file. */
int
pg_conf_cert_open(pg_conf_parse_t *cp)
{
    size_t           i;
    pg_conf_cert_t  *cert;

    if (pg_conf_dns_name(cp, 1, cp->args[1]) != PG_OK) {
        return PG_ERR;
    }

    for (i = 0; i < cp->conf.ncerts; i++) {
        if (strcmp(cp->conf.certs[i].name, cp->args[1]) == 0) {
            return pg_conf_error(cp, cp->lines[1], "duplicate certificate "
                                 "\"%s\", first on line %d", cp->args[1],
                                 cp->conf.certs[i].line);
        }
    }

    if (cp->conf.ncerts == PG_CONF_CERTS_MAX) {
        return pg_conf_error(cp, cp->lines[0], "too many \"certificate\" "
                             "blocks: at most %d", PG_CONF_CERTS_MAX);
    }

    cert = &cp->conf.certs[cp->conf.ncerts];
    memset(cert, 0, sizeof(pg_conf_cert_t));
    memcpy(cert->name, cp->args[1], strlen(cp->args[1]) + 1);
    memcpy(cert->names, cp->args[1], strlen(cp->args[1]) + 1);
    cert->nnames = 1;
    cert->line = cp->lines[0];

    cp->cert = cert;
    memset(cp->cert_seen, 0, sizeof(cp->cert_seen));

    return PG_OK;
}


int
pg_conf_cert_directive(pg_conf_parse_t *cp)
{
    return pg_conf_command(cp, pg_conf_cert_commands, cp->cert_seen);
}


/* "}": what the block must hold, and what it may not share. */
int
pg_conf_cert_close(pg_conf_parse_t *cp, int line)
{
    size_t           i;
    const char      *what;
    pg_conf_cert_t  *cert, *other;

    cert = cp->cert;

    what = (cert->issuer == 0) ? "issuer"
           : (cert->fullchain[0] == '\0') ? "fullchain"
           : (cert->privkey[0] == '\0') ? "privkey" : NULL;

    if (what != NULL) {
        return pg_conf_error(cp, line, "certificate \"%s\" has no \"%s\"",
                             cert->name, what);
    }

    if (cert->issuer == PG_CONF_ISSUER_LOCAL) {
        what = (cert->acme_ca[0] != '\0') ? "acme_ca"
               : (cert->ncontacts > 0) ? "contact"
               : (cert->profile[0] != '\0') ? "profile" : NULL;

        if (what != NULL) {
            return pg_conf_error(cp, line, "certificate \"%s\": \"%s\" is "
                                 "for an acme issuer, not a local one",
                                 cert->name, what);
        }

    } else if (strchr(cert->names, '*') != NULL) {
        return pg_conf_error(cp, line, "certificate \"%s\": a wildcard "
                             "name needs \"issuer local\": an ACME server "
                             "validates one only by dns-01, and "
                             "portal-gated answers http-01", cert->name);
    }

    /* the install keeps FILE.prev beside each file: a file of a block
     * may be neither the other file, nor one's .prev */
    if (pg_conf_cert_clash(cert->fullchain, cert->privkey)) {
        return pg_conf_error(cp, line, "certificate \"%s\": \"fullchain\" "
                             "and \"privkey\" are the same file, or one is "
                             "the other's .prev (kept at each install)",
                             cert->name);
    }

    for (i = 0; i < cp->conf.ncerts; i++) {
        other = &cp->conf.certs[i];

        if (pg_conf_cert_clash(other->fullchain, cert->fullchain)
            || pg_conf_cert_clash(other->privkey, cert->privkey)
            || pg_conf_cert_clash(other->fullchain, cert->privkey)
            || pg_conf_cert_clash(other->privkey, cert->fullchain))
        {
            return pg_conf_error(cp, line, "certificate \"%s\" writes a "
                                 "file that certificate \"%s\" (line %d) "
                                 "writes too", cert->name, other->name,
                                 other->line);
        }
    }

    cp->conf.ncerts++;
    cp->cert = NULL;

    return PG_OK;
}


/* names NAME...;  DNS names, each once; they replace the block's name. */
static int
pg_conf_cert_names(pg_conf_parse_t *cp)
{
    int              i, j;
    size_t           len, used;
    pg_conf_cert_t  *cert;

    cert = cp->cert;

    for (i = 1; i < cp->nargs; i++) {
        if (pg_conf_dns_name(cp, i, cp->args[i]) != PG_OK) {
            return PG_ERR;
        }

        for (j = 1; j < i; j++) {
            if (strcmp(cp->args[i], cp->args[j]) == 0) {
                return pg_conf_invalid(cp, i, "named twice");
            }
        }
    }

    used = 0;

    for (i = 1; i < cp->nargs; i++) {
        len = strlen(cp->args[i]);

        /* a directive may span lines: its names may not fit */
        if (used + len + 1 > sizeof(cert->names)) {
            return pg_conf_error(cp, cp->lines[i], "too many names in "
                                 "\"names\": at most %zu bytes in all",
                                 sizeof(cert->names) - 1);
        }

        memcpy(cert->names + used, cp->args[i], len);
        used += len;
        cert->names[used++] = ' ';
    }

    cert->names[used - 1] = '\0';
    cert->nnames = (size_t) (cp->nargs - 1);

    return PG_OK;
}


/* issuer acme URL;  or  issuer local CERT KEY; */
static int
pg_conf_cert_issuer(pg_conf_parse_t *cp)
{
    pg_conf_cert_t  *cert;

    cert = cp->cert;

    if (strcmp(cp->args[1], "acme") == 0) {
        if (cp->nargs != 3) {
            return pg_conf_error(cp, cp->lines[0], "invalid number of "
                                 "arguments in \"issuer\": acme takes the "
                                 "directory's URL");
        }

        if (strncmp(cp->args[2], "https://", 8) != 0
            || cp->args[2][8] == '\0' || cp->args[2][8] == '/'
            || strpbrk(cp->args[2], " \t\"'<>\\^`{|}") != NULL)
        {
            return pg_conf_invalid(cp, 2, "an ACME directory is an "
                                   "https:// URL");
        }

        if (strlen(cp->args[2]) >= sizeof(cert->acme)) {
            return pg_conf_invalid(cp, 2, "too long");
        }

        memcpy(cert->acme, cp->args[2], strlen(cp->args[2]) + 1);
        cert->issuer = PG_CONF_ISSUER_ACME;

        return PG_OK;
    }

    if (strcmp(cp->args[1], "local") == 0) {
        if (cp->nargs != 4) {
            return pg_conf_error(cp, cp->lines[0], "invalid number of "
                                 "arguments in \"issuer\": local takes the "
                                 "CA's certificate and key files");
        }

        if (pg_conf_path(cp, 2, cp->args[2], cert->ca_cert,
                         sizeof(cert->ca_cert), 0) != PG_OK
            || pg_conf_path(cp, 3, cp->args[3], cert->ca_key,
                            sizeof(cert->ca_key), 0) != PG_OK)
        {
            return PG_ERR;
        }

        cert->issuer = PG_CONF_ISSUER_LOCAL;

        return PG_OK;
    }

    return pg_conf_invalid(cp, 1, "expected acme or local");
}


static int
pg_conf_cert_acme_ca(pg_conf_parse_t *cp)
{
    return pg_conf_path(cp, 1, cp->args[1], cp->cert->acme_ca,
                        sizeof(cp->cert->acme_ca), 0);
}


/* contact URL...;  mailto: URLs, as Let's Encrypt takes them. */
static int
pg_conf_cert_contact(pg_conf_parse_t *cp)
{
    int              i;
    size_t           len;
    pg_conf_cert_t  *cert;

    cert = cp->cert;

    for (i = 1; i < cp->nargs; i++) {
        len = strlen(cp->args[i]);

        if (strncmp(cp->args[i], "mailto:", 7) != 0 || len < 10
            || strchr(cp->args[i] + 7, '@') == NULL)
        {
            return pg_conf_invalid(cp, i, "expected mailto:ADDRESS");
        }

        if (len >= sizeof(cert->contact[0])) {
            return pg_conf_invalid(cp, i, "too long");
        }
    }

    for (i = 1; i < cp->nargs; i++) {
        memcpy(cert->contact[i - 1], cp->args[i], strlen(cp->args[i]) + 1);
    }

    cert->ncontacts = (size_t) (cp->nargs - 1);

    return PG_OK;
}


/* key_type ecdsa|rsa;  P-256 or RSA 2048: PG_CERT_KEY_ECDSA, _RSA. */
static int
pg_conf_cert_key_type(pg_conf_parse_t *cp)
{
    if (strcmp(cp->args[1], "ecdsa") == 0) {
        cp->cert->key_type = 0;
        return PG_OK;
    }

    if (strcmp(cp->args[1], "rsa") == 0) {
        cp->cert->key_type = 1;
        return PG_OK;
    }

    return pg_conf_invalid(cp, 1, "expected ecdsa or rsa");
}


/* profile NAME;  an ACME profile ("tlsserver", "shortlived"). */
static int
pg_conf_cert_profile(pg_conf_parse_t *cp)
{
    size_t       len;
    const char  *p;

    len = strlen(cp->args[1]);

    for (p = cp->args[1]; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'
              || *p == '.'))
        {
            break;
        }
    }

    if (len == 0 || len >= sizeof(cp->cert->profile) || *p != '\0') {
        return pg_conf_invalid(cp, 1, "a profile is [A-Za-z0-9_.-], 1 to "
                               "64 characters");
    }

    memcpy(cp->cert->profile, cp->args[1], len + 1);

    return PG_OK;
}


static int
pg_conf_cert_fullchain(pg_conf_parse_t *cp)
{
    return pg_conf_path(cp, 1, cp->args[1], cp->cert->fullchain,
                        sizeof(cp->cert->fullchain), 0);
}


static int
pg_conf_cert_privkey(pg_conf_parse_t *cp)
{
    return pg_conf_path(cp, 1, cp->args[1], cp->cert->privkey,
                        sizeof(cp->cert->privkey), 0);
}


/* --- values ------------------------------------------------------------- */

/* Are a and b one file, or is one the other's FILE.prev? */
static int
pg_conf_cert_clash(const char *a, const char *b)
{
    size_t  la, lb;

    la = strlen(a);
    lb = strlen(b);

    return strcmp(a, b) == 0
           || (la == lb + 5 && strncmp(a, b, lb) == 0
               && strcmp(a + lb, ".prev") == 0)
           || (lb == la + 5 && strncmp(b, a, la) == 0
               && strcmp(b + la, ".prev") == 0);
}


/* value (of cp->args[i]) as an absolute path: pg_conf_private.h */
int
pg_conf_path(pg_conf_parse_t *cp, int i, const char *value, char *out,
    size_t size, int folder)
{
    size_t  len;

    len = strlen(value);

    if (value[0] != '/') {
        return pg_conf_invalid(cp, i, "an absolute path");
    }

    if (value[len - 1] == '/' && !folder) {
        return pg_conf_invalid(cp, i, "a file's path, not a folder's");
    }

    if (len >= size) {
        return pg_conf_invalid(cp, i, "too long");
    }

    memcpy(out, value, len + 1);

    return PG_OK;
}


/*
 * A DNS name as a certificate holds it: labels of [a-z0-9-], 1 to 63
 * bytes, no '-' at either end, 253 bytes in all; "*." may open it.
 * Upper case is taken as lower case (names are case-insensitive, and the
 * CA answers in lower case); name is changed in place.
 */
static int
pg_conf_dns_name(pg_conf_parse_t *cp, int i, char *name)
{
    size_t  len, label;
    char   *p;

    len = strlen(name);
    p = name;

    if (len > 2 && p[0] == '*' && p[1] == '.') {
        p += 2;
    }

    if (len == 0 || len > PG_CONF_DNS_MAX) {
        return pg_conf_invalid(cp, i, "a DNS name is 1 to 253 bytes");
    }

    label = 0;

    for ( /* void */ ; *p; p++) {
        if (*p >= 'A' && *p <= 'Z') {
            *p = (char) (*p - 'A' + 'a');
        }

        if (*p == '.') {
            if (label == 0 || p[-1] == '-') {
                break;
            }

            label = 0;
            continue;
        }

        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || (*p == '-' && label > 0)))
        {
            break;
        }

        if (++label > PG_CONF_LABEL_MAX) {
            break;
        }
    }

    if (*p != '\0' || label == 0 || p[-1] == '-') {
        return pg_conf_invalid(cp, i, "not a DNS name: labels of a-z, "
                               "0-9 and inner '-', joined by '.'");
    }

    /* no top-level domain is all digits: "1.2.3.4" is an address */
    for (p = name + len; p > name && p[-1] != '.'; p--) {
        if (p[-1] < '0' || p[-1] > '9') {
            return PG_OK;
        }
    }

    return pg_conf_invalid(cp, i, "an IP address: portal-gated asks for "
                           "DNS names");
}
