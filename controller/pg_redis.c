/*
 * pg_redis.c: the Redis URL forms of DESIGN.md, and a connection that
 * has authenticated and selected its db. hiredis 0.14.1 has no URL parser.
 *
 * Grammar (what is accepted, and why where it is not obvious):
 *
 *   redis://[user:pass@]host[:port][/[db]]
 *     - scheme: case-insensitive (RFC 3986);
 *     - user:pass: split at the last '@' and at the first ':', so a raw
 *       '@' or ':' in a password works; '/', '?' and '#' must be written
 *       %2F, %3F, %23. %XX is decoded in both (%00 is refused: C strings).
 *       The user may be empty (":pass@": AUTH pass); the password may not;
 *     - host: a name or IPv4 of [A-Za-z0-9._-], or an IPv6 address in
 *       brackets, stored without them;
 *     - port: 1..65535, 6379 when left out; db: 0..2147483647, 0 when
 *       left out; nothing may follow the db (no "?options").
 *   unix:///absolute/path/redis.sock
 *     - no db, no password, no "?options".
 *
 *   redis-sentinel://[user:pass@]host[:port][,host[:port]...][/[db]]#master
 *     - the userinfo and db are the master's, as in redis://; each host is
 *       a sentinel, port 26379 when left out, PG_REDIS_SENTINELS_MAX at
 *       most; the master's name ([A-Za-z0-9._-]) is required.
 *
 * No space or control character anywhere: percent-encode it. A refusal
 * names the URL with its password masked, cut to PG_REDIS_SHOWN chars.
 */

#include <arpa/inet.h>      /* inet_pton: check a bracketed IPv6 address */
#include <errno.h>          /* EAGAIN: what a timed out read leaves */
#include <limits.h>         /* INT_MAX: the highest db */
#include <stdarg.h>         /* va_list: the refusal messages */
#include <stdio.h>          /* snprintf, vsnprintf */
#include <string.h>         /* memchr, strcspn, strrchr, strstr... */
#include <strings.h>        /* strncasecmp: the scheme */
#include <sys/socket.h>     /* getsockopt: a command timeout */
#include <sys/time.h>       /* struct timeval: hiredis timeouts */
#include "pg_redis.h"       /* the API this file implements */
#include "pg_redis_private.h" /* pg_redis_sentinel_connect */


#define PG_REDIS_PORT       6379    /* when the URL leaves the port out */
#define PG_REDIS_SENTINEL_PORT  26379   /* a sentinel's, likewise */
#define PG_REDIS_SHOWN      96      /* URL chars a message shows, then ... */
#define PG_REDIS_EXPECTED   "expected redis://host:port/db or " \
                            "unix:///path/redis.sock"


static void pg_redis_shown(const char *url, char *buf, size_t size);
static void pg_redis_error(pg_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int pg_redis_refuse(pg_error_t *err, const char *url,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pg_redis_hex(unsigned char c);
static int pg_redis_decode(const char *url, const char *s, size_t len,
    char *out, size_t size, const char *what, pg_error_t *err);
static int pg_redis_parse_userinfo(const char *url, const char *s,
    const char *end, pg_redis_url_t *u, pg_error_t *err);
static int pg_redis_parse_host(const char *url, const char *s,
    const char *end, pg_redis_url_t *u, const char **next, pg_error_t *err);
static int pg_redis_parse_tcp(const char *url, const char *rest,
    pg_redis_url_t *u, pg_error_t *err);
static int pg_redis_parse_unix(const char *url, const char *rest,
    pg_redis_url_t *u, pg_error_t *err);
static int pg_redis_parse_port(const char *url, const char *s,
    const char *end, int dflt, int *port, pg_error_t *err);
static int pg_redis_parse_db(const char *url, const char *s,
    const char *end, int *db, pg_error_t *err);
static int pg_redis_parse_sentinel(const char *url, const char *rest,
    pg_redis_url_t *u, pg_error_t *err);
static void pg_redis_encode(const char *s, char *buf, size_t size);
static void pg_redis_format_sentinels(const pg_redis_url_t *u,
    const char *user, const char *sep, char *buf, size_t size);
static int pg_redis_command(redisContext *c, const char *shown,
    const char *what, int argc, const char **argv, pg_error_t *err);


/* --- refusals ---------------------------------------------------------- */

/*
 * url as a message shows it: the password (what lies between the first
 * ':' after "://" and the last '@') is "***", and so is a whole userinfo
 * without ':' ("secret@host" may be a password), unix:// aside; other than
 * printable ASCII is '?'; more than PG_REDIS_SHOWN chars end with "...".
 */
static void
pg_redis_shown(const char *url, char *buf, size_t size)
{
    size_t       n;
    const char  *p, *auth, *at, *colon, *mask;

    auth = strstr(url, "://");
    at = NULL;
    mask = NULL;

    /* a unix:// path has no userinfo: '@' is a character of the path */
    if (auth != NULL && strncasecmp(url, "unix:", 5) != 0) {
        auth += 3;
        at = strrchr(auth, '@');
    }

    if (at != NULL) {
        colon = memchr(auth, ':', (size_t) (at - auth));
        mask = (colon != NULL) ? colon + 1 : auth;
    }

    n = 0;
    p = url;

    while (*p != '\0' && n < PG_REDIS_SHOWN && n + 4 < size) {

        if (p == mask) {
            memcpy(buf + n, "***", 3);
            n += 3;
            p = at;
            mask = NULL;
            continue;
        }

        buf[n++] = (*p > ' ' && *p < 0x7f) ? *p : '?';
        p++;
    }

    if (*p != '\0' && n + 4 <= size) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }

    buf[n] = '\0';
}


/* err = the message, cut to fit: vsnprintf() warns of no truncation. */
static void
pg_redis_error(pg_error_t *err, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    vsnprintf(err->text, sizeof(err->text), fmt, args);
    va_end(args);
}


/* err = `invalid redis url "URL": REASON`; returns PG_ERR. */
static int
pg_redis_refuse(pg_error_t *err, const char *url, const char *fmt, ...)
{
    char     shown[PG_REDIS_SHOWN + 8];
    char     reason[PG_ERROR_LEN];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(reason, sizeof(reason), fmt, args);
    va_end(args);

    if (url == NULL || url[0] == '\0') {
        pg_redis_error(err, "%s", reason);
        return PG_ERR;
    }

    pg_redis_shown(url, shown, sizeof(shown));
    pg_redis_error(err, "invalid redis url \"%s\": %s", shown, reason);

    return PG_ERR;
}


/* --- parsing ----------------------------------------------------------- */

/* The value of a hex digit, or -1. */
static int
pg_redis_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


/* Percent-decode s[0..len) into out, NUL-terminated; what names it. */
static int
pg_redis_decode(const char *url, const char *s, size_t len, char *out,
    size_t size, const char *what, pg_error_t *err)
{
    int     hi, lo;
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {

        if (n + 1 >= size) {
            return pg_redis_refuse(err, url, "%s is longer than %zu "
                                   "characters", what, size - 1);
        }

        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }

        hi = -1;
        lo = -1;

        if (i + 2 < len) {
            hi = pg_redis_hex((unsigned char) s[i + 1]);
            lo = pg_redis_hex((unsigned char) s[i + 2]);
        }

        if (hi < 0 || lo < 0) {
            return pg_redis_refuse(err, url, "bad percent-encoding in the %s: "
                                   "'%%' must be followed by two hex digits",
                                   what);
        }

        if (hi == 0 && lo == 0) {
            return pg_redis_refuse(err, url, "%%00 is not allowed in the %s",
                                   what);
        }

        out[n++] = (char) (hi * 16 + lo);
        i += 2;
    }

    out[n] = '\0';

    return PG_OK;
}


/* "user:pass" in s..end (before the last '@') into u->user, u->pass. */
static int
pg_redis_parse_userinfo(const char *url, const char *s, const char *end,
    pg_redis_url_t *u, pg_error_t *err)
{
    const char  *colon;

    if (memchr(s, '/', (size_t) (end - s)) != NULL
        || memchr(s, '?', (size_t) (end - s)) != NULL
        || memchr(s, '#', (size_t) (end - s)) != NULL)
    {
        return pg_redis_refuse(err, url, "'/', '?' and '#' in the user or "
                               "password must be percent-encoded "
                               "(%%2F, %%3F, %%23)");
    }

    colon = memchr(s, ':', (size_t) (end - s));

    if (colon == NULL) {
        return pg_redis_refuse(err, url, "user without password: write "
                               "user:pass@, or :pass@ for a password alone");
    }

    if (colon + 1 == end) {
        return pg_redis_refuse(err, url, "empty password");
    }

    if (pg_redis_decode(url, s, (size_t) (colon - s), u->user,
                        sizeof(u->user), "user", err) != PG_OK)
    {
        return PG_ERR;
    }

    return pg_redis_decode(url, colon + 1, (size_t) (end - colon - 1),
                           u->pass, sizeof(u->pass), "password", err);
}


/* "host" or "[ipv6]" in s..end into u->host; *next is what follows it. */
static int
pg_redis_parse_host(const char *url, const char *s, const char *end,
    pg_redis_url_t *u, const char **next, pg_error_t *err)
{
    size_t          len;
    const char     *p, *close;
    unsigned char   c, addr[16];

    if (s < end && *s == '[') {
        close = memchr(s, ']', (size_t) (end - s));

        if (close == NULL) {
            return pg_redis_refuse(err, url, "'[' without ']' around the "
                                   "IPv6 address");
        }

        len = (size_t) (close - s - 1);

        if (len == 0) {
            return pg_redis_refuse(err, url, "empty host");
        }

        if (len >= sizeof(u->host)) {
            return pg_redis_refuse(err, url, "host is longer than %zu "
                                   "characters", sizeof(u->host) - 1);
        }

        memcpy(u->host, s + 1, len);
        u->host[len] = '\0';

        if (inet_pton(AF_INET6, u->host, addr) != 1) {
            return pg_redis_refuse(err, url, "bad IPv6 address \"%.64s\"",
                                   u->host);
        }

        if (close + 1 < end && close[1] != ':') {
            return pg_redis_refuse(err, url, "expected ':port' or the end "
                                   "of the address after ']'");
        }

        *next = close + 1;
        return PG_OK;
    }

    p = memchr(s, ':', (size_t) (end - s));

    if (p != NULL && memchr(p + 1, ':', (size_t) (end - p - 1)) != NULL) {
        return pg_redis_refuse(err, url, "an IPv6 address must be in "
                               "brackets: redis://[::1]:6379");
    }

    if (p == NULL) {
        p = end;
    }

    len = (size_t) (p - s);

    if (len == 0) {
        return pg_redis_refuse(err, url, "empty host");
    }

    if (len >= sizeof(u->host)) {
        return pg_redis_refuse(err, url, "host is longer than %zu "
                               "characters", sizeof(u->host) - 1);
    }

    for (*next = s; *next < p; (*next)++) {
        c = (unsigned char) **next;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
        {
            return pg_redis_refuse(err, url, "a host may hold only letters, "
                                   "digits, '.', '-' and '_'");
        }
    }

    memcpy(u->host, s, len);
    u->host[len] = '\0';

    return PG_OK;
}


/*
 * What follows a host: s == end (no port: dflt), or ":digits" up to end,
 * 1..65535, into *port.
 */
static int
pg_redis_parse_port(const char *url, const char *s, const char *end,
    int dflt, int *port, pg_error_t *err)
{
    long         n;
    size_t       len;
    const char  *p, *digits;

    if (s >= end) {
        *port = dflt;
        return PG_OK;
    }

    /* s is at ':' */
    digits = s + 1;
    len = (size_t) (end - digits);
    n = 0;

    for (p = digits; p < end && *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');

        if (n > 65535) {
            break;
        }
    }

    if (len == 0 || p < end || n < 1 || n > 65535) {
        return pg_redis_refuse(err, url, "bad port \"%.*s\": expected "
                               "1..65535", (int) (len > 16 ? 16 : len),
                               digits);
    }

    *port = (int) n;

    return PG_OK;
}


/* The db's digits in s..end (not empty), 0..INT_MAX, into *db. */
static int
pg_redis_parse_db(const char *url, const char *s, const char *end, int *db,
    pg_error_t *err)
{
    int          n;
    const char  *p;

    n = 0;

    for (p = s; p < end && *p >= '0' && *p <= '9'; p++) {
        if (n > (INT_MAX - (*p - '0')) / 10) {
            return pg_redis_refuse(err, url, "bad db \"%.*s\": expected "
                                   "0..%d", (int) (end - s > 16 ? 16 : end - s),
                                   s, INT_MAX);
        }

        n = n * 10 + (*p - '0');
    }

    if (p == s) {
        return pg_redis_refuse(err, url, "bad db \"%.*s\": expected 0..%d",
                               (int) (end - s > 16 ? 16 : end - s), s,
                               INT_MAX);
    }

    if (p < end) {
        return pg_redis_refuse(err, url, "unexpected \"%.*s\" after the "
                               "db: nothing may follow it",
                               (int) (end - p > 32 ? 32 : end - p), p);
    }

    *db = n;

    return PG_OK;
}


/* rest: what follows "redis://". */
static int
pg_redis_parse_tcp(const char *url, const char *rest, pg_redis_url_t *u,
    pg_error_t *err)
{
    const char  *at, *host, *end, *p;

    p = NULL;       /* pg_redis_parse_host() sets it; gcc -O2 cannot tell */

    at = strrchr(rest, '@');
    host = rest;

    if (at != NULL) {
        if (pg_redis_parse_userinfo(url, rest, at, u, err) != PG_OK) {
            return PG_ERR;
        }

        host = at + 1;
    }

    end = host + strcspn(host, "/?#");

    if (pg_redis_parse_host(url, host, end, u, &p, err) != PG_OK) {
        return PG_ERR;
    }

    if (pg_redis_parse_port(url, p, end, PG_REDIS_PORT, &u->port, err)
        != PG_OK)
    {
        return PG_ERR;
    }

    p = end;
    u->db = 0;

    if (*p == '/' && p[1] != '\0') {
        if (pg_redis_parse_db(url, p + 1, p + strlen(p), &u->db, err)
            != PG_OK)
        {
            return PG_ERR;
        }

    } else if (*p == '/') {
        /* "redis://host:port/": db 0 */

    } else if (*p != '\0') {
        return pg_redis_refuse(err, url, "unexpected \"%.32s\" after the "
                               "address: options are not supported", p);
    }

    return PG_OK;
}


/* rest: what follows "unix://". */
static int
pg_redis_parse_unix(const char *url, const char *rest, pg_redis_url_t *u,
    pg_error_t *err)
{
    size_t  len;

    if (rest[0] == '\0') {
        return pg_redis_refuse(err, url, "empty socket path: expected "
                               "unix:///path/redis.sock");
    }

    if (rest[0] != '/') {
        return pg_redis_refuse(err, url, "socket path is not absolute: "
                               "expected unix:///path/redis.sock");
    }

    if (strpbrk(rest, "?#") != NULL) {
        return pg_redis_refuse(err, url, "options are not supported in "
                               "unix:// (no db, no password: use redis:// "
                               "for them)");
    }

    len = strlen(rest);

    if (len >= sizeof(u->path)) {
        return pg_redis_refuse(err, url, "socket path is longer than %zu "
                               "characters", sizeof(u->path) - 1);
    }

    memcpy(u->path, rest, len + 1);
    u->unix_socket = 1;
    u->db = 0;

    return PG_OK;
}


/*
 * rest: what follows "redis-sentinel://". The userinfo is the master's, as
 * in redis://; each host[:port] (26379 when left out) is a sentinel; the
 * master's name, after '#', is required: sentinels know masters by name.
 */
static int
pg_redis_parse_sentinel(const char *url, const char *rest,
    pg_redis_url_t *u, pg_error_t *err)
{
    size_t            len;
    const char       *at, *host, *end, *hash, *item, *comma, *p;
    unsigned char     c;
    pg_redis_addr_t  *s;

    p = NULL;       /* pg_redis_parse_host() sets it; gcc -O2 cannot tell */

    at = strrchr(rest, '@');
    host = rest;

    if (at != NULL) {
        if (pg_redis_parse_userinfo(url, rest, at, u, err) != PG_OK) {
            return PG_ERR;
        }

        host = at + 1;
    }

    hash = strchr(host, '#');

    if (hash == NULL || hash[1] == '\0') {
        return pg_redis_refuse(err, url, "no master name: end the url with "
                               "#MASTER, the name the sentinels monitor it "
                               "by");
    }

    len = strlen(hash + 1);

    if (len >= sizeof(u->master)) {
        return pg_redis_refuse(err, url, "master name is longer than %zu "
                               "characters", sizeof(u->master) - 1);
    }

    for (p = hash + 1; *p != '\0'; p++) {
        c = (unsigned char) *p;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
        {
            return pg_redis_refuse(err, url, "a master name may hold only "
                                   "letters, digits, '.', '-' and '_'");
        }
    }

    memcpy(u->master, hash + 1, len + 1);

    end = host + strcspn(host, "/?#");

    for (item = host; /* void */; item = comma + 1) {
        comma = memchr(item, ',', (size_t) (end - item));

        if (comma == NULL) {
            comma = end;
        }

        if (u->nsentinels == PG_REDIS_SENTINELS_MAX) {
            return pg_redis_refuse(err, url, "too many sentinels: %d at most",
                                   PG_REDIS_SENTINELS_MAX);
        }

        s = &u->sentinels[u->nsentinels];

        /* parses into u->host, which a sentinel URL leaves empty after */
        if (pg_redis_parse_host(url, item, comma, u, &p, err) != PG_OK
            || pg_redis_parse_port(url, p, comma, PG_REDIS_SENTINEL_PORT,
                                   &s->port, err) != PG_OK)
        {
            return PG_ERR;
        }

        memcpy(s->host, u->host, sizeof(s->host));
        u->nsentinels++;

        if (comma == end) {
            break;
        }
    }

    u->host[0] = '\0';
    u->port = 0;
    u->db = 0;

    if (*end == '/' && end + 1 < hash) {
        if (pg_redis_parse_db(url, end + 1, hash, &u->db, err) != PG_OK) {
            return PG_ERR;
        }

    } else if (*end == '?') {
        return pg_redis_refuse(err, url, "unexpected \"%.*s\" after the "
                               "sentinels: options are not supported",
                               (int) (hash - end > 32 ? 32 : hash - end), end);
    }

    u->sentinel = 1;

    return PG_OK;
}


int
pg_redis_url_parse(const char *url, pg_redis_url_t *u, pg_error_t *err)
{
    int              rc;
    size_t           len;
    const char      *p, *sep;
    pg_redis_url_t   tmp;

    if (url == NULL || url[0] == '\0') {
        return pg_redis_refuse(err, NULL, "empty redis url: "
                               PG_REDIS_EXPECTED);
    }

    for (p = url; *p != '\0'; p++) {
        if ((unsigned char) *p <= ' ' || *p == 0x7f) {
            /* no offset: it could tell where a password has a space */
            return pg_redis_refuse(err, url, "a space or control character: "
                                   "percent-encode it (%%20)");
        }
    }

    sep = strstr(url, "://");
    len = (sep != NULL) ? (size_t) (sep - url) : 0;

    for (p = url; p < url + len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (p > url && ((*p >= '0' && *p <= '9')
                              || *p == '+' || *p == '-' || *p == '.'))))
        {
            len = 0;
            break;
        }
    }

    if (len == 0) {
        if (strncasecmp(url, "unix:", 5) == 0) {
            return pg_redis_refuse(err, url, "expected "
                                   "unix:///path/redis.sock");
        }

        return pg_redis_refuse(err, url, "no scheme: " PG_REDIS_EXPECTED);
    }

    memset(&tmp, 0, sizeof(tmp));

    if (len == 5 && strncasecmp(url, "redis", 5) == 0) {
        rc = pg_redis_parse_tcp(url, sep + 3, &tmp, err);

    } else if (len == 4 && strncasecmp(url, "unix", 4) == 0) {
        rc = pg_redis_parse_unix(url, sep + 3, &tmp, err);

    } else if (len == 14 && strncasecmp(url, "redis-sentinel", 14) == 0) {
        rc = pg_redis_parse_sentinel(url, sep + 3, &tmp, err);

    } else if (len == 6 && strncasecmp(url, "rediss", 6) == 0) {
        rc = pg_redis_refuse(err, url, "TLS (rediss://) is not supported "
                             "by hiredis 0.14.1");

    } else {
        rc = pg_redis_refuse(err, url, "unknown scheme \"%.*s\": expected "
                             "redis://, redis-sentinel:// or unix://",
                             (int) (len > 16 ? 16 : len), url);
    }

    if (rc == PG_OK) {
        *u = tmp;
    }

    /* the password does not linger on the stack */
    memset(&tmp, 0, sizeof(tmp));

    return rc;
}


/* --- formatting -------------------------------------------------------- */

/* s, percent-encoded but for [A-Za-z0-9._~-], cut to fit buf. */
static void
pg_redis_encode(const char *s, char *buf, size_t size)
{
    size_t          n;
    unsigned char   c;

    static const char  hex[] = "0123456789ABCDEF";

    for (n = 0; *s != '\0'; s++) {
        c = (unsigned char) *s;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~'
            || c == '-')
        {
            if (n + 1 >= size) {
                break;
            }

            buf[n++] = (char) c;
            continue;
        }

        if (n + 3 >= size) {
            break;
        }

        buf[n++] = '%';
        buf[n++] = hex[c >> 4];
        buf[n++] = hex[c & 0x0f];
    }

    buf[n] = '\0';
}


void
pg_redis_url_format(const pg_redis_url_t *u, char *buf, size_t size)
{
    int          v6;
    char         user[3 * sizeof(u->user)];
    const char  *sep;

    if (size == 0) {
        return;
    }

    if (u->unix_socket) {
        snprintf(buf, size, "unix://%s", u->path);
        return;
    }

    pg_redis_encode(u->user, user, sizeof(user));

    if (u->pass[0] != '\0') {
        sep = ":***@";

    } else if (u->user[0] != '\0') {
        sep = "@";

    } else {
        sep = "";
    }

    if (u->sentinel) {
        pg_redis_format_sentinels(u, user, sep, buf, size);
        return;
    }

    v6 = (strchr(u->host, ':') != NULL);

    snprintf(buf, size, "redis://%s%s%s%s%s:%d/%d", user, sep,
             v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->db);
}


/* "redis-sentinel://USERSEP" h1:p1,h2:p2 "/db#master", cut to fit buf. */
static void
pg_redis_format_sentinels(const pg_redis_url_t *u, const char *user,
    const char *sep, char *buf, size_t size)
{
    int     i, v6, n;
    size_t  len;

    n = snprintf(buf, size, "redis-sentinel://%s%s", user, sep);

    for (i = 0; i < u->nsentinels; i++) {
        len = strlen(buf);

        if (n < 0 || len + 1 >= size) {
            return;
        }

        v6 = (strchr(u->sentinels[i].host, ':') != NULL);
        n = snprintf(buf + len, size - len, "%s%s%s%s:%d", i ? "," : "",
                     v6 ? "[" : "", u->sentinels[i].host, v6 ? "]" : "",
                     u->sentinels[i].port);
    }

    len = strlen(buf);

    if (len + 1 < size) {
        snprintf(buf + len, size - len, "/%d#%s", u->db, u->master);
    }
}


/* --- connecting -------------------------------------------------------- */

/* Run one command whose answer must be a status ("OK"); what names it. */
static int
pg_redis_command(redisContext *c, const char *shown, const char *what,
    int argc, const char **argv, pg_error_t *err)
{
    int          i, rc;
    char         text[128];
    size_t       argvlen[3];
    redisReply  *reply;

    for (i = 0; i < argc; i++) {
        argvlen[i] = strlen(argv[i]);
    }

    reply = redisCommandArgv(c, argc, argv, argvlen);

    if (reply == NULL) {
        /* an I/O error or a timeout: the context says which */
        pg_redis_error(err, "%s: %s failed: %s", shown, what,
                       pg_redis_strerror(c, text, sizeof(text)));
        return PG_ERR;
    }

    rc = PG_OK;

    if (reply->type == REDIS_REPLY_ERROR) {
        pg_redis_error(err, "%s: %s failed: %.*s", shown, what,
                       (int) reply->len, reply->str);
        rc = PG_ERR;

    } else if (reply->type != REDIS_REPLY_STATUS) {
        pg_redis_error(err, "%s: %s failed: unexpected reply of type %d",
                       shown, what, reply->type);
        rc = PG_ERR;
    }

    freeReplyObject(reply);

    return rc;
}


redisContext *
pg_redis_connect(const pg_redis_url_t *u, int timeout_ms, pg_error_t *err)
{
    return pg_redis_connect_found(u, timeout_ms, NULL, 0, err);
}


redisContext *
pg_redis_connect_found(const pg_redis_url_t *u, int timeout_ms,
    char *found, size_t found_size, pg_error_t *err)
{
    if (found != NULL && found_size > 0) {
        found[0] = '\0';
    }

    if (u->sentinel) {
        return pg_redis_sentinel_connect(u, timeout_ms, found, found_size,
                                         err);
    }

    return pg_redis_connect_direct(u, timeout_ms, err);
}


/* A redis:// or unix:// URL: connect, AUTH, SELECT. */
redisContext *
pg_redis_connect_direct(const pg_redis_url_t *u, int timeout_ms,
    pg_error_t *err)
{
    int              argc;
    char             shown[1024];
    char             what[32], db[16];
    const char      *argv[3];
    redisContext    *c;
    struct timeval   tv;

    /* the URL as messages show it: password masked, cut like a refusal's */
    pg_redis_url_format(u, shown, sizeof(shown));

    if (strlen(shown) > PG_REDIS_SHOWN) {
        memcpy(shown + PG_REDIS_SHOWN, "...", 4);
    }

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;

    if (timeout_ms > 0) {
        c = u->unix_socket ? redisConnectUnixWithTimeout(u->path, tv)
                           : redisConnectWithTimeout(u->host, u->port, tv);

    } else {
        c = u->unix_socket ? redisConnectUnix(u->path)
                           : redisConnect(u->host, u->port);
    }

    if (c == NULL) {
        pg_redis_error(err, "%s: cannot allocate a redis context", shown);
        return NULL;
    }

    if (c->err) {
        pg_redis_error(err, "%s: %s", shown, c->errstr);
        goto failed;
    }

    /* redisConnectWithTimeout() bounds the connect only */
    if (timeout_ms > 0 && redisSetTimeout(c, tv) != REDIS_OK) {
        pg_redis_error(err, "%s: cannot set the command timeout: %s", shown,
                       c->errstr);
        goto failed;
    }

    /* binary-safe argv: a password is never part of a format string */
    argc = 0;
    argv[argc++] = "AUTH";

    if (u->user[0] != '\0') {
        argv[argc++] = u->user;
        argv[argc++] = u->pass;

    } else if (u->pass[0] != '\0') {
        argv[argc++] = u->pass;
    }

    if (argc > 1
        && pg_redis_command(c, shown, "AUTH", argc, argv, err) != PG_OK)
    {
        goto failed;
    }

    if (u->db != 0) {
        snprintf(db, sizeof(db), "%d", u->db);
        snprintf(what, sizeof(what), "SELECT %d", u->db);
        argv[0] = "SELECT";
        argv[1] = db;

        if (pg_redis_command(c, shown, what, 2, argv, err) != PG_OK) {
            goto failed;
        }
    }

    return c;

failed:

    redisFree(c);

    return NULL;
}


int
pg_redis_timed_out(const redisContext *c, long *timeout_ms)
{
    long            ms;
    socklen_t       len;
    struct timeval  tv;

    /* hiredis fills errstr with strerror(errno) for a failed read or
     * write; a socket timeout (SO_RCVTIMEO, SO_SNDTIMEO) is EAGAIN */
    if (c == NULL || c->err != REDIS_ERR_IO
        || strcmp(c->errstr, strerror(EAGAIN)) != 0)
    {
        return 0;
    }

    ms = 0;

    /* the connect timeout, which pg_redis_connect() sets commands too */
    if (c->timeout != NULL) {
        ms = c->timeout->tv_sec * 1000L + c->timeout->tv_usec / 1000;

    } else {
        len = sizeof(tv);

        if (c->fd >= 0
            && getsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) == 0)
        {
            ms = tv.tv_sec * 1000L + tv.tv_usec / 1000;
        }
    }

    if (timeout_ms != NULL) {
        *timeout_ms = ms;
    }

    return 1;
}


const char *
pg_redis_strerror(const redisContext *c, char *buf, size_t size)
{
    long  ms;

    if (pg_redis_timed_out(c, &ms)) {
        if (ms > 0) {
            snprintf(buf, size, "timed out: no answer within %ld ms", ms);
        } else {
            snprintf(buf, size, "timed out: no answer");
        }

        return buf;
    }

    return c->errstr[0] != '\0' ? c->errstr : "no reply";
}


int
pg_redis_master_moved(const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_ERROR || r->str == NULL) {
        return 0;
    }

    /* a script's error quotes the command's with its '-' (Redis 6) */
    return strncmp(r->str, "READONLY ", 9) == 0
           || strstr(r->str, "-READONLY ") != NULL;
}
