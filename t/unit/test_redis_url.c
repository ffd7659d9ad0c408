/*
 * test_redis_url.c: unit tests of controller/pg_redis.c: the Redis URL
 * forms, their refusals and masking, and pg_redis_connect() against two
 * real redis-servers this test starts (one plain, one with requirepass),
 * and a command that times out (the plain one stopped) told as such; the
 * redis-sentinel:// form, and its one-line error when no sentinel answers
 * or a server is no sentinel (t/109-sentinel.t runs real sentinels).
 * Prints TAP; exits 1 if any test failed.
 *
 *   cc -std=gnu99 -Wall -Wextra -Werror -fsanitize=address,undefined \
 *      -fno-sanitize-recover=all -g -O1 -Iinclude -Icontroller \
 *      include/pg_*.c controller/pg_redis.c t/unit/test_redis_url.c \
 *      -lhiredis -ljansson -lm -o build/test-redis-url
 */

#include <arpa/inet.h>      /* htonl, ntohs: free loopback ports */
#include <errno.h>          /* errno */
#include <fcntl.h>          /* open: the servers' stdin and stdout */
#include <limits.h>         /* INT_MAX */
#include <netinet/in.h>     /* struct sockaddr_in */
#include <signal.h>         /* kill, SIGTERM */
#include <stdarg.h>         /* va_list */
#include <stdio.h>          /* printf, snprintf */
#include <stdlib.h>         /* mkdtemp, getenv */
#include <string.h>         /* strcmp, strstr, strlen, memset, memcmp */
#include <sys/prctl.h>      /* prctl: a server dies with the test */
#include <sys/socket.h>     /* socket, bind, listen */
#include <sys/stat.h>       /* stat: wait for the server's socket */
#include <sys/wait.h>       /* waitpid */
#include <time.h>           /* clock_gettime, nanosleep */
#include <unistd.h>         /* fork, execvp, close, unlink, rmdir */
#include "pg_redis.h"       /* the API under test */
#include "tap.h"          /* t_ok, t_diag, t_count, t_failed */


/* --- helpers: parsing -------------------------------------------------- */

/* What a parsed URL should hold; unix_socket is set by path != NULL. */
typedef struct {
    const char  *host;
    int          port;
    const char  *path;
    const char  *user;
    const char  *pass;
    int          db;
} t_want_t;


/* Parsing url succeeds and gives exactly want. */
static void
t_parses(const char *url, const t_want_t *want, const char *desc)
{
    int             ok;
    pg_error_t      err;
    pg_redis_url_t  u;

    memset(&err, 0, sizeof(err));

    if (pg_redis_url_parse(url, &u, &err) != PG_OK) {
        t_ok(0, "%s", desc);
        t_diag("%s refused: %s", url, err.text);
        return;
    }

    if (want->path != NULL) {
        ok = u.unix_socket == 1 && strcmp(u.path, want->path) == 0
             && u.host[0] == '\0';

    } else {
        ok = u.unix_socket == 0 && strcmp(u.host, want->host) == 0
             && u.port == want->port && u.path[0] == '\0';
    }

    ok = ok && strcmp(u.user, want->user ? want->user : "") == 0
         && strcmp(u.pass, want->pass ? want->pass : "") == 0
         && u.db == want->db;

    if (!t_ok(ok, "%s", desc)) {
        t_diag("url:  %s", url);
        t_diag("got:  unix %d host \"%s\" port %d path \"%s\" user \"%s\" "
               "pass \"%s\" db %d", u.unix_socket, u.host, u.port, u.path,
               u.user, u.pass, u.db);
    }
}


static int  t_refusals;      /* refusals checked by t_refuses() */
static int  t_bad_style;     /* of them, messages not lowercase or with '.' */
static int  t_leaked;        /* of them, messages that show "hunter2" */
static int  t_touched;       /* of them, refusals that changed *u */


/*
 * Parsing url fails, the message contains expect, and also: it shows no
 * "hunter2" (the password of several cases), starts lowercase, has no
 * final period, and *u is untouched (counted, checked once at the end).
 */
static void
t_refuses(const char *url, const char *expect, const char *desc)
{
    int             rc;
    size_t          len;
    pg_error_t      err;
    pg_redis_url_t  u, before;

    memset(&err, 0, sizeof(err));
    memset(&u, 0x5a, sizeof(u));
    before = u;
    rc = pg_redis_url_parse(url, &u, &err);

    if (!t_ok(rc == PG_ERR && strstr(err.text, expect) != NULL, "%s", desc)) {
        t_diag("rc %d, message: %s", rc, rc == PG_OK ? "(none)" : err.text);
        t_diag("expected a message containing: %s", expect);
    }

    if (rc != PG_ERR) {
        return;
    }

    t_refusals++;
    len = strlen(err.text);

    if (len == 0 || !(err.text[0] >= 'a' && err.text[0] <= 'z')
        || err.text[len - 1] == '.')
    {
        t_bad_style++;
        t_diag("style: %s", err.text);
    }

    if (strstr(err.text, "hunter2") != NULL) {
        t_leaked++;
        t_diag("password shown: %s", err.text);
    }

    if (memcmp(&u, &before, sizeof(u)) != 0) {
        t_touched++;
        t_diag("*u changed by a refusal of %s", url == NULL ? "NULL" : url);
    }
}


/* A string of n times c, in a static buffer (n < 1024). */
static const char *
t_rep(char c, size_t n)
{
    static char  buf[1024];

    memset(buf, c, n);
    buf[n] = '\0';

    return buf;
}


/* --- tests: parsing ---------------------------------------------------- */

static void
test_accepted(void)
{
    int       i;
    char      url[1024], want_long[512];
    t_want_t  w;

    memset(&w, 0, sizeof(w));
    w.host = "127.0.0.1";
    w.port = 6379;
    t_parses(PG_REDIS_URL_DEFAULT, &w, "the default URL is 127.0.0.1:6379, "
             "db 0, no user, no password");

    w.host = "redis.internal";
    w.port = 6380;
    w.db = 3;
    t_parses("redis://redis.internal:6380/3", &w, "host, port and db");

    w.host = "cache-1.example.com";
    w.port = 6379;
    w.db = 0;
    t_parses("redis://cache-1.example.com", &w,
             "no port means 6379 and no db means 0");

    w.host = "redis_1";
    w.db = 2;
    t_parses("redis://redis_1/2", &w,
             "a db without a port (port 6379); '_' in a host (compose)");

    w.host = "10.0.0.7";
    w.port = 7000;
    w.db = 0;
    t_parses("redis://10.0.0.7:7000/", &w, "a trailing '/' means db 0");

    w.host = "h";
    w.port = 65535;
    w.db = INT_MAX;
    t_parses("redis://h:65535/2147483647", &w,
             "port 65535 and db 2147483647 are the highest");

    w.port = 1;
    w.db = 0;
    t_parses("redis://h:1/0000", &w, "port 1 and db 0000");

    w.host = "H.Example";
    w.port = 6379;
    t_parses("REDIS://H.Example:6379/0", &w,
             "the scheme is case-insensitive; the host keeps its case");

    w.host = "h";
    w.pass = "s3cret";
    t_parses("redis://:s3cret@h:6379/0", &w,
             "an empty user is a password alone (:pass@)");

    w.user = "app";
    w.db = 1;
    t_parses("redis://app:s3cret@h:6379/1", &w, "user and password");

    w.user = "app@corp";
    w.pass = "p@ss:w/rd%?#";
    w.db = 0;
    t_parses("redis://app%40corp:p%40ss%3Aw%2frd%25%3F%23@h:6379", &w,
             "%XX is decoded in user and password (upper and lower hex)");

    w.user = NULL;
    w.pass = "p@ss:w@rd";
    t_parses("redis://:p@ss:w@rd@h", &w,
             "a raw '@' or ':' in a password works (last '@', first ':')");

    w.pass = "a b\xc3\xa9";
    t_parses("redis://:a%20b\xc3\xa9@h", &w,
             "%20 and raw UTF-8 in a password");

    w.host = "::1";
    w.pass = NULL;
    t_parses("redis://[::1]:6379/0", &w,
             "IPv6 in brackets is stored without them");

    w.host = "2001:db8::17";
    w.port = 6379;
    w.db = 5;
    w.user = "u";
    w.pass = "p";
    t_parses("redis://u:p@[2001:db8::17]/5", &w,
             "IPv6 without a port, with a user and a db");

    memset(&w, 0, sizeof(w));
    w.path = "/run/redis/redis.sock";
    t_parses("unix:///run/redis/redis.sock", &w,
             "unix:///path gives the path and db 0");

    w.path = "/tmp/a@b:c";
    t_parses("unix:///tmp/a@b:c", &w,
             "'@' and ':' are plain characters of a unix path");

    /* the fields at their longest */
    snprintf(want_long, sizeof(want_long), "/%s", t_rep('s', 106));
    w.path = want_long;
    snprintf(url, sizeof(url), "unix://%s", want_long);
    t_parses(url, &w, "a unix path of 107 characters (sun_path 108)");

    memset(&w, 0, sizeof(w));
    snprintf(want_long, sizeof(want_long), "%s", t_rep('h', 255));
    w.host = want_long;
    w.port = 6379;
    snprintf(url, sizeof(url), "redis://%s:6379", want_long);
    t_parses(url, &w, "a host of 255 characters");

    w.host = "h";
    w.user = "u";
    snprintf(want_long, sizeof(want_long), "%s", t_rep('p', 255));
    w.pass = want_long;
    snprintf(url, sizeof(url), "redis://u:%s@h", want_long);
    t_parses(url, &w, "a password of 255 characters");

    /* 127 '%41' is 381 chars of URL but 127 of user */
    memset(&w, 0, sizeof(w));
    w.host = "h";
    w.port = 6379;
    w.pass = "p";
    snprintf(want_long, sizeof(want_long), "%s", t_rep('A', 127));
    w.user = want_long;
    strcpy(url, "redis://");

    for (i = 0; i < 127; i++) {
        strcat(url, "%41");
    }

    strcat(url, ":p@h");
    t_parses(url, &w, "a user of 127 characters, length counted decoded");
}


static void
test_refused(void)
{
    char  url[1024];

    t_refuses(NULL, "empty redis url", "NULL is refused");
    t_refuses("", "empty redis url: expected redis://host:port/db or "
              "unix:///path/redis.sock", "an empty URL is refused, with the "
              "forms expected");

    t_refuses("127.0.0.1:6379",
              "invalid redis url \"127.0.0.1:6379\": no scheme",
              "a bare host:port is refused: no scheme");
    t_refuses("rediss://:hunter2@h:6380/0",
              "TLS (rediss://) is not supported by hiredis 0.14.1",
              "rediss:// is refused: no TLS in hiredis 0.14.1");
    t_refuses("http://h:6379", "unknown scheme \"http\"",
              "an unknown scheme is refused by name");
    t_refuses("unix:/tmp/r.sock", "expected unix:///path/redis.sock",
              "unix:/path (one slash) is refused with the form expected");

    t_refuses("redis://", "empty host", "redis:// alone: empty host");
    t_refuses("redis://:6379/0", "empty host", "redis://:6379: empty host");
    t_refuses("redis://:hunter2@:6379/0", "empty host",
              "a password and no host: empty host");
    t_refuses("redis://[]:6379", "empty host", "[]: empty host");

    t_refuses("redis://h:0/0", "bad port \"0\": expected 1..65535",
              "port 0 is refused");
    t_refuses("redis://h:65536", "bad port \"65536\"",
              "port 65536 is refused");
    t_refuses("redis://h:99999999999999999999", "bad port",
              "a port of 20 digits is refused");
    t_refuses("redis://h:63x9/0", "bad port \"63x9\"",
              "a port with a letter is refused");
    t_refuses("redis://h:-1", "bad port \"-1\"", "a negative port is refused");
    t_refuses("redis://h:/0", "bad port \"\"", "an empty port is refused");

    t_refuses("redis://h:6379/x", "bad db \"x\": expected 0..2147483647",
              "a db that is not a number is refused");
    t_refuses("redis://h:6379/-1", "bad db \"-1\"",
              "a negative db is refused");
    t_refuses("redis://h:6379/+1", "bad db \"+1\"",
              "a db with a sign is refused");
    t_refuses("redis://h:6379/2147483648", "bad db \"2147483648\"",
              "db 2^31 is refused");
    t_refuses("redis://h:6379/99999999999999999999", "bad db",
              "a db of 20 digits is refused");

    t_refuses("redis://h:6379/0/extra", "unexpected \"/extra\" after the db",
              "trailing garbage after the db is refused");
    t_refuses("redis://h:6379/3x", "unexpected \"x\" after the db",
              "a letter after the db is refused");
    t_refuses("redis://h:6379?db=1", "unexpected \"?db=1\" after the address",
              "query options are refused");
    t_refuses("redis://h:6379#x", "unexpected \"#x\"",
              "a fragment is refused");
    t_refuses("redis://h:6379/0 ", "a space or control character: "
              "percent-encode it", "a trailing space is refused");
    t_refuses("redis://h:6379/\n0", "control character",
              "a newline is refused");

    t_refuses("redis://::1:6379", "an IPv6 address must be in brackets",
              "IPv6 without brackets is refused");
    t_refuses("redis://[::1:6379", "'[' without ']'",
              "an unclosed '[' is refused");
    t_refuses("redis://[::g]:6379", "bad IPv6 address \"::g\"",
              "a bad IPv6 address is refused");
    t_refuses("redis://[::1]x:6379", "after ']'",
              "garbage after ']' is refused");
    t_refuses("redis://h!st:6379", "a host may hold only letters, digits",
              "a bad character in a host is refused");
    t_refuses("redis://h\xc3\xa9:6379", "a host may hold only",
              "non-ASCII in a host is refused");

    snprintf(url, sizeof(url), "redis://%s:6379", t_rep('h', 256));
    t_refuses(url, "host is longer than 255 characters",
              "a host of 256 characters is refused");
    snprintf(url, sizeof(url), "redis://[%s]", t_rep(':', 256));
    t_refuses(url, "host is longer than 255 characters",
              "a bracketed host of 256 characters is refused");
    snprintf(url, sizeof(url), "redis://%s:p@h", t_rep('u', 128));
    t_refuses(url, "user is longer than 127 characters",
              "a user of 128 characters is refused");
    snprintf(url, sizeof(url), "redis://:%s@h", t_rep('p', 256));
    t_refuses(url, "password is longer than 255 characters",
              "a password of 256 characters is refused");

    t_refuses("redis://hunter2@h:6379", "user without password",
              "user@ without a password is refused");
    t_refuses("redis://app:@h:6379", "empty password",
              "user: with an empty password is refused");
    t_refuses("redis://:@h:6379", "empty password",
              ":@ is refused: empty password");
    t_refuses("redis://:hunter2%zz@h", "bad percent-encoding in the password",
              "bad %XX in a password is refused");
    t_refuses("redis://:hunter2%4@h", "bad percent-encoding in the password",
              "a truncated %X at the end of a password is refused");
    t_refuses("redis://u%:hunter2@h", "bad percent-encoding in the user",
              "a lone '%' in a user is refused");
    t_refuses("redis://:hunter2%00@h", "%00 is not allowed in the password",
              "%00 in a password is refused");
    t_refuses("redis://:hunter2/x@h:6379",
              "'/', '?' and '#' in the user or password must be "
              "percent-encoded", "a raw '/' in a password is refused");

    t_refuses("unix://", "empty socket path", "unix:// alone is refused");
    t_refuses("unix://tmp/r.sock", "socket path is not absolute",
              "a relative unix path is refused");
    t_refuses("unix://localhost/tmp/r.sock", "socket path is not absolute",
              "unix://host/path is refused");
    t_refuses("unix:///tmp/r.sock?db=1", "options are not supported in "
              "unix://", "unix:// with ?db= is refused");
    snprintf(url, sizeof(url), "unix:///%s", t_rep('s', 107));
    t_refuses(url, "socket path is longer than 107 characters",
              "a unix path of 108 characters is refused");

    t_ok(t_refusals > 0 && t_bad_style == 0,
         "every refusal message starts lowercase and has no final period");
    t_ok(t_refusals > 0 && t_touched == 0,
         "a refusal leaves the caller's pg_redis_url_t untouched");
    t_ok(t_refusals > 0 && t_leaked == 0,
         "no refusal message shows the password");
}


/* Messages name the URL with the password masked. */
static void
test_masked(void)
{
    char            url[1024];
    pg_error_t      err;
    pg_redis_url_t  u;

    t_refuses("redis://app:hunter2@h:0/0",
              "invalid redis url \"redis://app:***@h:0/0\": bad port",
              "a refusal shows user:*** for user and password");
    t_refuses("redis://:hunter2@h:6379/x",
              "invalid redis url \"redis://:***@h:6379/x\": bad db",
              "a refusal shows :*** for a password alone");
    t_refuses("redis://hunter2@h:6379",
              "invalid redis url \"redis://***@h:6379\"",
              "a userinfo without ':' is masked whole (it may be a password)");
    t_refuses("redis://:hunter2:x@y@h:0",
              "\"redis://:***@h:0\"",
              "a password with ':' and '@' is masked whole");
    t_refuses("redis://:hunter2@:6379/0", "\"redis://:***@:6379/0\"",
              "a password is masked when the host is empty");

    /* a long URL is cut, never in the middle of a password it shows */
    snprintf(url, sizeof(url), "redis://%s:hunter2@h:0", t_rep('u', 130));
    t_refuses(url, "...\": user is longer",
              "a long URL is cut with \"...\" and the reason still shows");

    memset(&err, 0, sizeof(err));
    snprintf(url, sizeof(url), "redis://:hunter2@%s:0", t_rep('h', 200));

    if (!t_ok(pg_redis_url_parse(url, &u, &err) == PG_ERR
              && strstr(err.text, "redis://:***@hhhh") != NULL
              && strstr(err.text, "...\": ") != NULL
              && strstr(err.text, "bad port") != NULL
              && strlen(err.text) < sizeof(err.text) - 1,
              "a long host is cut in the message, the reason kept whole"))
    {
        t_diag("message: %s", err.text);
    }

    t_ok(t_leaked == 0, "no masked message shows the password");
}


/* pg_redis_url_format(pg_redis_url_parse(url)) is expect. */
static void
t_formats(const char *url, const char *expect, const char *desc)
{
    char            buf[1024];
    pg_error_t      err;
    pg_redis_url_t  u;

    if (pg_redis_url_parse(url, &u, &err) != PG_OK) {
        t_ok(0, "%s", desc);
        t_diag("%s refused: %s", url, err.text);
        return;
    }

    pg_redis_url_format(&u, buf, sizeof(buf));

    if (!t_ok(strcmp(buf, expect) == 0, "%s", desc)) {
        t_diag("got:      %s", buf);
        t_diag("expected: %s", expect);
    }
}


static void
test_format(void)
{
    char            buf[8];
    pg_redis_url_t  u;
    pg_error_t      err;

    t_formats(PG_REDIS_URL_DEFAULT, "redis://127.0.0.1:6379/0",
              "the default URL formats as itself");
    t_formats("redis://h/2", "redis://h:6379/2",
              "the format spells out the default port");
    t_formats("redis://h", "redis://h:6379/0",
              "the format spells out port and db");
    t_formats("redis://:s3cret@h:1/0", "redis://:***@h:1/0",
              "a password alone formats as :***@");
    t_formats("redis://app:s3cret@h:1/3", "redis://app:***@h:1/3",
              "user and password format as user:***@");
    t_formats("redis://a%40b:p@h", "redis://a%40b:***@h:6379/0",
              "a user is percent-encoded again");
    t_formats("redis://[::1]", "redis://[::1]:6379/0",
              "IPv6 formats in brackets");
    t_formats("unix:///run/redis/redis.sock", "unix:///run/redis/redis.sock",
              "unix:///path formats as itself");

    pg_redis_url_parse("redis://app:s3cret@h:1/3", &u, &err);
    memset(buf, 'x', sizeof(buf));
    pg_redis_url_format(&u, buf, sizeof(buf));
    t_ok(strcmp(buf, "redis:/") == 0,
         "a small buffer gets a cut, NUL-terminated URL");

    buf[0] = 'x';
    pg_redis_url_format(&u, buf, 0);
    t_ok(buf[0] == 'x', "a buffer of size 0 is left alone");
}


/* --- tests: sentinel URLs ---------------------------------------------- */

/* url parses as a sentinel URL of n sentinels: first (host, port), last
 * port, master, pass and db as given. */
static void
t_sentinel(const char *url, int n, const char *host, int port, int last,
    const char *master, const char *pass, int db, const char *desc)
{
    int             ok;
    pg_error_t      err;
    pg_redis_url_t  u;

    memset(&err, 0, sizeof(err));

    if (pg_redis_url_parse(url, &u, &err) != PG_OK) {
        t_ok(0, "%s", desc);
        t_diag("%s refused: %s", url, err.text);
        return;
    }

    ok = u.sentinel == 1 && u.unix_socket == 0 && u.nsentinels == n
         && strcmp(u.sentinels[0].host, host) == 0
         && u.sentinels[0].port == port && u.sentinels[n - 1].port == last
         && strcmp(u.master, master) == 0
         && strcmp(u.pass, pass ? pass : "") == 0 && u.db == db
         && u.host[0] == '\0';

    if (!t_ok(ok, "%s", desc)) {
        t_diag("got: sentinel %d n %d first %s:%d last port %d master \"%s\" "
               "pass \"%s\" db %d", u.sentinel, u.nsentinels,
               u.sentinels[0].host, u.sentinels[0].port,
               u.sentinels[u.nsentinels > 0 ? u.nsentinels - 1 : 0].port,
               u.master, u.pass, u.db);
    }
}


static void
test_sentinel_url(void)
{
    int   i;
    char  url[1024];

    t_sentinel("redis-sentinel://s1#mymaster", 1, "s1", 26379, 26379,
               "mymaster", NULL, 0, "one sentinel, port 26379 by default");
    t_sentinel("redis-sentinel://:s3cret@10.0.0.1:5000,s2,[::1]:5002/3#m-1.a_b",
               3, "10.0.0.1", 5000, 5002, "m-1.a_b", "s3cret", 3,
               "three sentinels (IPv6 too), the master's password and db");
    t_sentinel("REDIS-SENTINEL://h/#m", 1, "h", 26379, 26379, "m", NULL, 0,
               "the scheme is case-insensitive; '/' alone is db 0");

    strcpy(url, "redis-sentinel://");

    for (i = 0; i < 8; i++) {
        sprintf(url + strlen(url), "%sh%d:%d", i ? "," : "", i, 7000 + i);
    }

    strcat(url, "#m");
    t_sentinel(url, 8, "h0", 7000, 7007, "m", NULL, 0, "eight sentinels");

    strcpy(url + strlen(url) - 2, ",h8#m");
    t_refuses(url, "too many sentinels: 8 at most",
              "a ninth sentinel is refused");

    t_refuses("redis-sentinel://:hunter2@h1,h2", "no master name: end the "
              "url with #MASTER", "no master name is refused");
    t_refuses("redis-sentinel://:hunter2@h1/0#", "no master name",
              "an empty master name is refused");
    t_refuses("redis-sentinel://h1#m/x", "a master name may hold only",
              "a bad character in the master name is refused");
    snprintf(url, sizeof(url), "redis-sentinel://h#%s", t_rep('m', 128));
    t_refuses(url, "master name is longer than 127 characters",
              "a master name of 128 characters is refused");
    t_refuses("redis-sentinel://:hunter2@h1:0#m", "bad port \"0\"",
              "a sentinel's port 0 is refused");
    t_refuses("redis-sentinel://h1,h2:x#m", "bad port \"x\"",
              "a second sentinel's bad port is refused");
    t_refuses("redis-sentinel://:hunter2@#m", "empty host",
              "no sentinel is refused: empty host");
    t_refuses("redis-sentinel://h1,,h2#m", "empty host",
              "an empty sentinel between commas is refused");
    t_refuses("redis-sentinel://h1,#m", "empty host",
              "a trailing comma is refused");
    t_refuses("redis-sentinel://:hunter2@h1/x#m", "bad db \"x\"",
              "a bad db is refused");
    t_refuses("redis-sentinel://h1/2147483648#m", "bad db",
              "db 2^31 is refused");
    t_refuses("redis-sentinel://h1/1x#m", "unexpected \"x\" after the db",
              "a letter after the db is refused");
    t_refuses("redis-sentinel://h1?x=1#m", "options are not supported",
              "options are refused");
    t_refuses("redis-sentinel://hunter2@h1#m", "user without password",
              "user@ without a password is refused (and masked)");
    t_refuses("redis-sentinel://:hunter2@h1:0#m",
              "\"redis-sentinel://:***@h1:0#m\"",
              "a refusal shows the URL with its password masked");

    t_formats("redis-sentinel://app:hunter2@s1,[::1]:5000/2#mymaster",
              "redis-sentinel://app:***@s1:26379,[::1]:5000/2#mymaster",
              "a sentinel URL is formatted with every sentinel's port and the "
              "password masked");
    t_formats("redis-sentinel://s1#m", "redis-sentinel://s1:26379/0#m",
              "a sentinel URL without password or db is formatted with db 0");

    t_ok(t_leaked == 0, "no sentinel URL refusal shows the password");
}


/* --- helpers: servers -------------------------------------------------- */

typedef struct {
    pid_t  pid;
    int    port;
    char   sock[256];
    char   log[256];
} t_server_t;


/* the scratch folder: short, for sun_path's 108 bytes */
static char  t_dir[64];


static double
t_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


/* A socket listening on a loopback port (*port) that never accepts. */
static int
t_listen(int *port)
{
    int                 fd;
    socklen_t           len;
    struct sockaddr_in  sin;

    fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd == -1) {
        return -1;
    }

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(sin);

    if (bind(fd, (struct sockaddr *) &sin, sizeof(sin)) == -1
        || getsockname(fd, (struct sockaddr *) &sin, &len) == -1
        || listen(fd, 8) == -1)
    {
        close(fd);
        return -1;
    }

    *port = ntohs(sin.sin_port);

    return fd;
}


/* A loopback port that nothing listens on (until someone takes it). */
static int
t_free_port(int *port)
{
    int  fd;

    fd = t_listen(port);

    if (fd == -1) {
        return 0;
    }

    close(fd);

    return 1;
}


/* Start redis-server on a unix socket and a loopback port; wait for it. */
static int
t_server_start(t_server_t *s, const char *name, const char *requirepass)
{
    int          fd, argc, status;
    char         port[16];
    double       deadline;
    const char  *argv[32];
    struct stat  st;

    snprintf(s->sock, sizeof(s->sock), "%s/%s.sock", t_dir, name);
    snprintf(s->log, sizeof(s->log), "%s/%s.log", t_dir, name);

    if (!t_free_port(&s->port)) {
        t_diag("no free loopback port: %s", strerror(errno));
        return 0;
    }

    snprintf(port, sizeof(port), "%d", s->port);

    argc = 0;
    argv[argc++] = "redis-server";
    argv[argc++] = "--port";
    argv[argc++] = port;
    argv[argc++] = "--bind";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--unixsocket";
    argv[argc++] = s->sock;
    argv[argc++] = "--unixsocketperm";
    argv[argc++] = "700";
    argv[argc++] = "--save";
    argv[argc++] = "";
    argv[argc++] = "--appendonly";
    argv[argc++] = "no";
    argv[argc++] = "--dir";
    argv[argc++] = t_dir;
    argv[argc++] = "--logfile";
    argv[argc++] = s->log;
    argv[argc++] = "--daemonize";
    argv[argc++] = "no";

    if (requirepass != NULL) {
        argv[argc++] = "--requirepass";
        argv[argc++] = requirepass;
    }

    argv[argc] = NULL;

    s->pid = fork();

    if (s->pid == -1) {
        t_diag("fork: %s", strerror(errno));
        return 0;
    }

    if (s->pid == 0) {
        /* the server dies with the test, even when the test crashes */
        prctl(PR_SET_PDEATHSIG, SIGKILL);

        fd = open("/dev/null", O_RDWR);

        if (fd != -1) {
            dup2(fd, 0);
            dup2(fd, 1);
        }

        execvp(argv[0], (char **) argv);
        fprintf(stderr, "# cannot run redis-server: %s\n", strerror(errno));
        _exit(127);
    }

    deadline = t_now() + 10;

    while (t_now() < deadline) {
        if (stat(s->sock, &st) == 0 && S_ISSOCK(st.st_mode)) {
            return 1;
        }

        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            t_diag("redis-server (%s) exited with status %d: see %s", name,
                   WIFEXITED(status) ? WEXITSTATUS(status) : -1, s->log);
            s->pid = 0;
            return 0;
        }

        nanosleep(&(struct timespec) { 0, 20000000 }, NULL);
    }

    t_diag("redis-server (%s) made no socket %s in 10 s", name, s->sock);

    return 0;
}


static void
t_server_stop(t_server_t *s)
{
    int     status;
    double  deadline;

    if (s->pid <= 0) {
        return;
    }

    kill(s->pid, SIGTERM);
    deadline = t_now() + 5;

    while (waitpid(s->pid, &status, WNOHANG) == 0) {
        if (t_now() > deadline) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            break;
        }

        nanosleep(&(struct timespec) { 0, 10000000 }, NULL);
    }

    s->pid = 0;
    unlink(s->sock);
    unlink(s->log);
}


/* One command with string arguments; the reply, or NULL. */
static redisReply *
t_cmd(redisContext *c, int argc, const char **argv)
{
    return redisCommandArgv(c, argc, argv, NULL);
}


/* Connect to url; NULL with the message in err. */
static redisContext *
t_connect(const char *url, int timeout_ms, pg_error_t *err)
{
    pg_redis_url_t  u;

    memset(err, 0, sizeof(*err));

    if (pg_redis_url_parse(url, &u, err) != PG_OK) {
        return NULL;
    }

    return pg_redis_connect(&u, timeout_ms, err);
}


/* Connecting to url succeeds and PING answers PONG. */
static void
t_connects(const char *url, int timeout_ms, const char *desc)
{
    int            ok;
    pg_error_t     err;
    redisReply    *r;
    redisContext  *c;
    const char    *ping[] = { "PING" };

    c = t_connect(url, timeout_ms, &err);

    if (c == NULL) {
        t_ok(0, "%s", desc);
        t_diag("%s: %s", url, err.text);
        return;
    }

    r = t_cmd(c, 1, ping);
    ok = r != NULL && r->type == REDIS_REPLY_STATUS
         && strcmp(r->str, "PONG") == 0;

    if (!t_ok(ok, "%s", desc)) {
        t_diag("PING: %s", r == NULL ? c->errstr
                           : r->str != NULL ? r->str : "(no text)");
    }

    if (r != NULL) {
        freeReplyObject(r);
    }

    redisFree(c);
}


/* Connecting to url fails with NULL and a message containing each of
 * expect[] and not containing hide (if not NULL). */
static void
t_connect_fails(const char *url, const char **expect, const char *hide,
    const char *desc)
{
    int            ok, i;
    pg_error_t     err;
    redisContext  *c;

    c = t_connect(url, 1000, &err);
    ok = (c == NULL);

    for (i = 0; ok && expect[i] != NULL; i++) {
        ok = strstr(err.text, expect[i]) != NULL;
    }

    if (ok && hide != NULL) {
        ok = strstr(err.text, hide) == NULL;
    }

    if (!t_ok(ok, "%s", desc)) {
        t_diag("%s", c != NULL ? "connected" : err.text);

        for (i = 0; expect[i] != NULL; i++) {
            t_diag("expected: %s", expect[i]);
        }
    }

    if (c != NULL) {
        redisFree(c);
    }
}


/* --- tests: connecting ------------------------------------------------- */

/*
 * A sentinel URL whose sentinels are not there, or not sentinels: the one
 * line names each one's reason, and never the password.
 */
static void
test_sentinel_connect(const t_server_t *plain)
{
    int          p1, p2;
    char         url[512], s1[64], s2[64];
    const char  *expect[5];

    if (!t_free_port(&p1) || !t_free_port(&p2)) {
        t_ok(0, "two free loopback ports");
        return;
    }

    snprintf(url, sizeof(url), "redis-sentinel://:hunter2@127.0.0.1:%d,"
             "127.0.0.1:%d#mymaster", p1, p2);
    snprintf(s1, sizeof(s1), "127.0.0.1:%d: Connection refused; ", p1);
    snprintf(s2, sizeof(s2), "127.0.0.1:%d: Connection refused", p2);
    expect[0] = "redis-sentinel master \"mymaster\" not found: ";
    expect[1] = s1;
    expect[2] = s2;
    expect[3] = NULL;
    t_connect_fails(url, expect, "hunter2", "no sentinel listening: each "
                    "one's reason in one line, the password not shown");

    /* a redis-server that is no sentinel refuses the command */
    snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d,127.0.0.1:%d"
             "#mymaster", p1, plain->port);
    snprintf(s2, sizeof(s2), "127.0.0.1:%d: ERR ", plain->port);
    expect[1] = s1;
    expect[2] = s2;
    expect[3] = NULL;
    t_connect_fails(url, expect, NULL, "a redis-server that is no sentinel: "
                    "its error is the reason");
}


/* Long reasons from many sentinels: each is cut to its share of the
 * message, so every sentinel is still named in it */
static void
test_sentinel_reasons_fit(const t_server_t *plain)
{
    int              i, named;
    char             url[512], at[64];
    size_t           n;
    const char      *p;
    pg_error_t       err;
    redisContext    *c;
    pg_redis_url_t   u;

    n = (size_t) snprintf(url, sizeof(url), "redis-sentinel://");

    for (i = 0; i < 4; i++) {
        n += (size_t) snprintf(url + n, sizeof(url) - n, "%s127.0.0.1:%d",
                               i ? "," : "", plain->port);
    }

    snprintf(url + n, sizeof(url) - n, "#mymaster");

    if (!t_ok(pg_redis_url_parse(url, &u, &err) == PG_OK,
              "four sentinels, all a redis-server")) {
        t_diag("%s", err.text);
        return;
    }

    c = pg_redis_connect(&u, 1000, &err);
    t_ok(c == NULL, "no sentinel among them");

    if (c != NULL) {
        redisFree(c);
        return;
    }

    snprintf(at, sizeof(at), "127.0.0.1:%d: ERR ", plain->port);

    for (named = 0, p = err.text; (p = strstr(p, at)) != NULL; p++) {
        named++;
    }

    if (!t_ok(named == 4, "each of the four named with its reason, though "
              "the reasons do not fit whole (%d named)", named))
    {
        t_diag("%s", err.text);
    }
}


static void
test_connect_db(const t_server_t *plain)
{
    int            ok;
    char           url[512];
    pg_error_t     err;
    redisReply    *r;
    redisContext  *c;
    const char    *set[] = { "SET", "pg-redis-url-test", "in db 3" };
    const char    *get[] = { "GET", "pg-redis-url-test" };

    /* SET in db 3 over TCP */
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", plain->port);
    c = t_connect(url, 1000, &err);

    if (!t_ok(c != NULL, "connect over TCP with db 3")) {
        t_diag("%s", err.text);
        return;
    }

    r = t_cmd(c, 3, set);
    t_ok(r != NULL && r->type == REDIS_REPLY_STATUS,
         "SET in the connection to db 3");

    if (r != NULL) {
        freeReplyObject(r);
    }

    redisFree(c);

    /* not in db 0 */
    snprintf(url, sizeof(url), "unix://%s", plain->sock);
    c = t_connect(url, 1000, &err);

    if (!t_ok(c != NULL, "connect over the unix socket (db 0)")) {
        t_diag("%s", err.text);
        return;
    }

    r = t_cmd(c, 2, get);
    t_ok(r != NULL && r->type == REDIS_REPLY_NIL,
         "the key set with db 3 is not in db 0: SELECT 3 was sent");

    if (r != NULL) {
        freeReplyObject(r);
    }

    redisFree(c);

    /* in db 3, over another connection */
    snprintf(url, sizeof(url), "redis://localhost:%d/3", plain->port);
    c = t_connect(url, 1000, &err);

    if (!t_ok(c != NULL, "connect by the name localhost with db 3")) {
        t_diag("%s", err.text);
        return;
    }

    r = t_cmd(c, 2, get);
    ok = r != NULL && r->type == REDIS_REPLY_STRING
         && strcmp(r->str, "in db 3") == 0;
    t_ok(ok, "a new connection with db 3 finds the key");

    if (r != NULL) {
        freeReplyObject(r);
    }

    redisFree(c);
}


static void test_timed_out(const t_server_t *plain);


static void
test_connect(const t_server_t *plain, const t_server_t *secret)
{
    int          fd, port;
    char         url[512], want[512], want2[512];
    double       t0, took;
    pg_error_t   err;
    const char  *expect[4];

    snprintf(url, sizeof(url), "unix://%s", plain->sock);
    t_connects(url, 1000, "connect over a unix socket");
    t_connects(url, 0, "connect with timeout_ms 0 (no timeout)");

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", plain->port);
    t_connects(url, 1000, "connect over TCP");

    test_connect_db(plain);

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/99", plain->port);
    expect[0] = "SELECT 99 failed: ";
    expect[1] = "out of range";
    expect[2] = NULL;
    t_connect_fails(url, expect, NULL,
                    "db 99 of a 16-db server: SELECT 99 failed");

    /* requirepass s3cret */
    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/0",
             secret->port);
    t_connects(url, 1000, "AUTH with a password alone");

    snprintf(url, sizeof(url), "redis://default:s3cret@127.0.0.1:%d/2",
             secret->port);
    t_connects(url, 1000, "AUTH with user and password, then SELECT 2");

    snprintf(url, sizeof(url), "redis://:hunter2@127.0.0.1:%d/0",
             secret->port);
    snprintf(want, sizeof(want), "redis://:***@127.0.0.1:%d/0: AUTH failed: ",
             secret->port);
    expect[0] = want;
    expect[1] = "WRONGPASS";
    expect[2] = NULL;
    t_connect_fails(url, expect, "hunter2",
                    "a wrong password: NULL, \"AUTH failed\", masked URL");

    snprintf(url, sizeof(url), "redis://default:hunter2@127.0.0.1:%d/0",
             secret->port);
    snprintf(want, sizeof(want), "redis://default:***@127.0.0.1:%d/0: AUTH "
             "failed: WRONGPASS", secret->port);
    expect[0] = want;
    expect[1] = NULL;
    t_connect_fails(url, expect, "hunter2",
                    "a wrong password with a user: AUTH failed");

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/2", secret->port);
    expect[0] = "SELECT 2 failed: NOAUTH";
    expect[1] = NULL;
    t_connect_fails(url, expect, NULL,
                    "no password for a server that wants one: SELECT fails "
                    "with NOAUTH");

    snprintf(url, sizeof(url), "redis://:hunter2@127.0.0.1:%d/0",
             plain->port);
    expect[0] = "AUTH failed: ";
    expect[1] = NULL;
    t_connect_fails(url, expect, "hunter2",
                    "a password for a server without one: AUTH failed");

    /* nothing listens */
    if (!t_ok(t_free_port(&port), "a free loopback port")) {
        return;
    }

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    snprintf(want, sizeof(want), "redis://127.0.0.1:%d/0: Connection refused",
             port);
    expect[0] = want;
    expect[1] = NULL;
    t_connect_fails(url, expect, NULL,
                    "a refused TCP port: NULL, the URL and the reason");

    snprintf(url, sizeof(url), "redis://:hunter2@127.0.0.1:%d/4", port);
    snprintf(want2, sizeof(want2), "redis://:***@127.0.0.1:%d/4: "
             "Connection refused", port);
    expect[0] = want2;
    t_connect_fails(url, expect, "hunter2",
                    "a refused port with a password: the URL is masked");

    snprintf(url, sizeof(url), "unix://%s/nobody.sock", t_dir);
    snprintf(want, sizeof(want), "unix://%s/nobody.sock: No such file",
             t_dir);
    expect[0] = want;
    t_connect_fails(url, expect, NULL,
                    "a missing unix socket: NULL, the URL and the reason");

    /* a server that accepts (the kernel does) and never answers */
    fd = t_listen(&port);

    if (!t_ok(fd != -1, "a silent server listens")) {
        return;
    }

    snprintf(url, sizeof(url), "redis://:hunter2@127.0.0.1:%d/0", port);
    t0 = t_now();

    if (t_connect(url, 300, &err) != NULL) {
        t_ok(0, "a server that never answers AUTH: NULL after the timeout");
        close(fd);
        return;
    }

    took = t_now() - t0;

    if (!t_ok(strstr(err.text, "AUTH failed: ") != NULL
              && took > 0.25 && took < 3,
              "a server that never answers AUTH: NULL after timeout_ms "
              "(%.2f s for 300 ms)", took))
    {
        t_diag("%s", err.text);
    }

    if (!t_ok(strstr(err.text, "AUTH failed: timed out: no answer within "
                               "300 ms") != NULL
              && strstr(err.text, "temporarily") == NULL,
              "and says it timed out, with the timeout"))
    {
        t_diag("%s", err.text);
    }

    close(fd);

    test_timed_out(plain);
}


/* A command that Redis does not answer in time is told from other
 * failures, and worded as a timeout. */
static void
test_timed_out(const t_server_t *plain)
{
    int            timed_out;
    char           url[512], buf[128];
    long           ms;
    pg_error_t     err;
    redisReply    *r;
    redisContext  *c;
    const char    *ping[] = { "PING" };
    const char    *msg;

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", plain->port);
    c = t_connect(url, 300, &err);

    if (!t_ok(c != NULL, "connect for the timeout test")) {
        t_diag("%s", err.text);
        return;
    }

    ms = -1;
    t_ok(!pg_redis_timed_out(c, &ms) && ms == -1
         && strcmp(pg_redis_strerror(c, buf, sizeof(buf)), "no reply") == 0,
         "a context without an error: not timed out, \"no reply\"");

    /* Redis stopped: the kernel still holds the connection */
    kill(plain->pid, SIGSTOP);
    r = t_cmd(c, 1, ping);
    timed_out = pg_redis_timed_out(c, &ms);
    msg = pg_redis_strerror(c, buf, sizeof(buf));
    kill(plain->pid, SIGCONT);

    t_ok(r == NULL && timed_out && ms == 300,
         "a stopped Redis: the command timed out, after 300 ms");

    if (!t_ok(strcmp(msg, "timed out: no answer within 300 ms") == 0,
              "worded as a timeout, not as EAGAIN"))
    {
        t_diag("%s (errstr: %s)", msg, c->errstr);
    }

    freeReplyObject(r);
    redisFree(c);

    /* any other failure is left as hiredis says it */
    c = t_connect(url, 300, &err);

    if (c != NULL) {
        shutdown(c->fd, SHUT_RD);
        r = t_cmd(c, 1, ping);
        t_ok(r == NULL && !pg_redis_timed_out(c, NULL)
             && strcmp(pg_redis_strerror(c, buf, sizeof(buf)), c->errstr)
                == 0,
             "a closed connection is not a timeout (%s)", c->errstr);
        freeReplyObject(r);
        redisFree(c);
    }
}


/* Which replies say the master moved: READONLY, and Redis 6's wrapped in
 * a script's error; no other error, and no status or string that reads so */
static void
test_master_moved(void)
{
    size_t       i;
    redisReply   r;

    static const struct {
        int          type;
        const char  *str;
        int          moved;
    } cases[] = {
        { REDIS_REPLY_ERROR, "READONLY You can't write against a read only "
          "replica.", 1 },
        { REDIS_REPLY_ERROR, "ERR Error running script (call to f_0123): "
          "@user_script:3: @user_script: 3: -READONLY You can't write "
          "against a read only replica.", 1 },
        { REDIS_REPLY_ERROR, "ERR unknown command 'READONLYX'", 0 },
        { REDIS_REPLY_ERROR, "NOPERM this user has no permissions", 0 },
        { REDIS_REPLY_STATUS, "READONLY You can't write", 0 },
        { REDIS_REPLY_STRING, "-READONLY You can't write", 0 },
    };

    t_ok(!pg_redis_master_moved(NULL), "no reply: the master did not move");

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&r, 0, sizeof(r));
        r.type = cases[i].type;
        r.str = (char *) cases[i].str;
        r.len = strlen(cases[i].str);

        t_ok(pg_redis_master_moved(&r) == cases[i].moved,
             "the master %s: type %d \"%.40s...\"",
             cases[i].moved ? "moved" : "did not move", cases[i].type,
             cases[i].str);
    }
}


int
main(void)
{
    int          ok;
    const char  *tmp;
    t_server_t   plain, secret;

    test_accepted();
    test_refused();
    test_masked();
    test_format();
    test_sentinel_url();
    test_master_moved();

    tmp = getenv("TMPDIR");

    if (tmp == NULL || tmp[0] == '\0'
        || snprintf(t_dir, sizeof(t_dir), "%s/pg-redis-url.XXXXXX", tmp)
           >= (int) sizeof(t_dir))
    {
        snprintf(t_dir, sizeof(t_dir), "/tmp/pg-redis-url.XXXXXX");
    }

    if (mkdtemp(t_dir) == NULL) {
        t_ok(0, "a scratch folder for redis-server");
        t_diag("mkdtemp %s: %s", t_dir, strerror(errno));

    } else {
        memset(&plain, 0, sizeof(plain));
        memset(&secret, 0, sizeof(secret));

        ok = t_ok(t_server_start(&plain, "plain", NULL),
                  "redis-server starts (no password)")
             & t_ok(t_server_start(&secret, "secret", "s3cret"),
                    "redis-server starts (requirepass)");

        if (ok) {
            test_connect(&plain, &secret);
            test_sentinel_connect(&plain);
            test_sentinel_reasons_fit(&plain);
        }

        t_server_stop(&plain);
        t_server_stop(&secret);

        if (rmdir(t_dir) == -1) {
            t_diag("rmdir %s: %s", t_dir, strerror(errno));
        }
    }

    printf("1..%d\n", t_count);

    if (t_failed) {
        t_diag("failed %d of %d tests", t_failed, t_count);
        return 1;
    }

    return 0;
}
