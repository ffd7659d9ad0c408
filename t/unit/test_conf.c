/*
 * test_conf.c: unit tests of portal-gated's configuration file
 * (controller/pg_conf.c). Each test writes a file into a scratch folder
 * and reads it. Prints TAP; exits 1 if any test failed.
 *
 *   cc -std=gnu99 -Wall -Wextra -Wno-unused-parameter -Werror -g -O1 \
 *      -fno-omit-frame-pointer -fsanitize=address,undefined \
 *      -fno-sanitize-recover=all -Iinclude -Icontroller include/pg_*.c \
 *      controller/pg_redis.c controller/pg_edge.c controller/pg_conf.c \
 *      t/unit/test_conf.c -lcurl -lhiredis -ljansson -lm \
 *      -o build/test-conf
 */

#include <stdarg.h>         /* va_list */
#include <stdio.h>          /* printf, snprintf, fopen, fwrite */
#include <stdlib.h>         /* malloc, free, mkdtemp */
#include <string.h>         /* strcmp, strncmp, strlen, memcmp, memset */
#include <unistd.h>         /* unlink, rmdir, access */
#include "pg_conf.h"        /* the API under test */
#include "tap.h"          /* t_ok, t_diag, t_count, t_failed */


/* A literal and its length, NUL bytes inside it included. */
#define T_TEXT(s)  (s), (sizeof(s) - 1)


static char  t_dir[] = "/tmp/pg-test-conf-XXXXXX";
static char  t_path[256];      /* the file of the last t_load() */


/* --- helpers ---------------------------------------------------------- */

/* Write len bytes of text to t_path. */
static void
t_write(const char *text, size_t len)
{
    FILE  *f;

    snprintf(t_path, sizeof(t_path), "%s/portal-gated.conf", t_dir);

    f = fopen(t_path, "wb");

    if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        t_diag("cannot write %s", t_path);
        exit(1);
    }
}


/* Read text (len bytes) as a config over the defaults; rc of the load. */
static int
t_load_len(const char *text, size_t len, pg_conf_t *conf, pg_error_t *err)
{
    int  rc;

    pg_conf_defaults(conf);
    memset(err, 0, sizeof(pg_error_t));
    t_write(text, len);

    rc = pg_conf_load(t_path, conf, err);
    unlink(t_path);

    return rc;
}


static int
t_load(const char *text, pg_conf_t *conf, pg_error_t *err)
{
    return t_load_len(text, strlen(text), conf, err);
}


/* text loads; says why when it does not. */
static int
t_loads(const char *text, pg_conf_t *conf, const char *name)
{
    pg_error_t  err;

    if (!t_ok(t_load(text, conf, &err) == PG_OK, "%s", name)) {
        t_diag("error: %s", err.text);
        return 0;
    }

    return 1;
}


/*
 * text is refused with exactly "FILE:line: msg" (msg a prefix of the
 * message when prefix is set), and the conf is left as it was.
 */
static void
t_refused_at(const char *text, size_t len, int line, const char *msg,
    int prefix, const char *name)
{
    int          rc;
    char         want[512];
    size_t       n;
    pg_conf_t    conf, before;
    pg_error_t   err;

    rc = t_load_len(text, len, &conf, &err);
    pg_conf_defaults(&before);

    n = (size_t) snprintf(want, sizeof(want), "%s:%d: %s", t_path, line,
                          msg);

    if (!t_ok(rc == PG_ERR
              && (prefix ? strncmp(err.text, want, n) == 0
                         : strcmp(err.text, want) == 0)
              && memcmp(&conf, &before, sizeof(pg_conf_t)) == 0,
              "%s", name))
    {
        t_diag("rc %d, error: %s", rc, err.text);
        t_diag("wanted%s: %s", prefix ? " (prefix)" : "", want);
    }
}


static void
t_refused(const char *text, int line, const char *msg, const char *name)
{
    t_refused_at(text, strlen(text), line, msg, 0, name);
}


/* reconcile_interval value: its ms, or -1 if refused. */
static long
t_interval(const char *value)
{
    char        text[256];
    pg_conf_t   conf;
    pg_error_t  err;

    snprintf(text, sizeof(text), "reconcile_interval %s;\n", value);

    if (t_load(text, &conf, &err) != PG_OK) {
        return -1;
    }

    return conf.reconcile_ms;
}


/* --- tests ------------------------------------------------------------ */

static void
test_defaults(void)
{
    pg_conf_t   conf;
    pg_error_t  err;

    pg_conf_defaults(&conf);

    t_ok(strcmp(conf.redis_url, "redis://127.0.0.1:6379/0") == 0
         && !conf.redis.unix_socket
         && strcmp(conf.redis.host, "127.0.0.1") == 0
         && conf.redis.port == 6379 && conf.redis.db == 0
         && conf.redis.pass[0] == '\0',
         "the default redis is redis://127.0.0.1:6379/0, parsed");

    t_ok(strcmp(conf.prefix, PG_STORE_PREFIX_DEFAULT) == 0
         && strcmp(conf.prefix, "portal-gate:") == 0,
         "the default prefix is portal-gate:");

    t_ok(conf.nenvs == 1 && strcmp(conf.envs[0], "production") == 0,
         "the default environments are production alone");

    t_ok(conf.nedges == 0 && conf.reconcile_ms == 2000
         && conf.log_level == PG_LOG_INFO,
         "by default no edges, 2 s reconcile, log level info");

    t_ok(t_load("", &conf, &err) == PG_OK
         && conf.nenvs == 1 && conf.reconcile_ms == 2000
         && strcmp(conf.prefix, "portal-gate:") == 0,
         "an empty file gives the defaults");

    t_ok(t_load("\n\n   \t\n# only a comment\n  # and another\n", &conf,
                &err) == PG_OK
         && conf.nenvs == 1 && conf.log_level == PG_LOG_INFO,
         "a file of comments and blank lines gives the defaults");
}


static void
test_log_level_names(void)
{
    t_ok(strcmp(pg_conf_log_level_name(PG_LOG_DEBUG), "debug") == 0
         && strcmp(pg_conf_log_level_name(PG_LOG_INFO), "info") == 0
         && strcmp(pg_conf_log_level_name(PG_LOG_NOTICE), "notice") == 0
         && strcmp(pg_conf_log_level_name(PG_LOG_WARN), "warn") == 0
         && strcmp(pg_conf_log_level_name(PG_LOG_ERROR), "error") == 0,
         "log level names: debug info notice warn error");

    t_ok(strcmp(pg_conf_log_level_name(-1), "unknown") == 0
         && strcmp(pg_conf_log_level_name(5), "unknown") == 0,
         "a level out of range is named unknown");
}


/* The fields of the example in pg_conf.h and DESIGN.md. */
static int
t_is_example(const pg_conf_t *conf)
{
    return strcmp(conf->redis_url, "redis://127.0.0.1:6379/0") == 0
           && strcmp(conf->redis.host, "127.0.0.1") == 0
           && conf->redis.port == 6379 && conf->redis.db == 0
           && strcmp(conf->prefix, "portal-gate:") == 0
           && conf->nenvs == 2
           && strcmp(conf->envs[0], "production") == 0
           && strcmp(conf->envs[1], "staging") == 0
           && conf->reconcile_ms == 2000
           && conf->log_level == PG_LOG_INFO;
}


static void
test_example(void)
{
    pg_conf_t  conf;

    if (!t_loads(
        "redis              redis://127.0.0.1:6379/0;\n"
        "prefix             portal-gate:;\n"
        "environments       production staging;\n"
        "edge               http://127.0.0.1:8081/portal-gate/;     "
        "# repeatable\n"
        "edge               unix:/run/portal-gate/api.sock:/portal-gate/;\n"
        "reconcile_interval 2s;\n"
        "log_level          info;          # debug|info|notice|warn|error\n",
        &conf, "the example of DESIGN.md loads"))
    {
        return;
    }

    t_ok(t_is_example(&conf), "the example: redis, prefix, environments, "
         "reconcile_interval and log_level");

    t_ok(conf.nedges == 2
         && strcmp(conf.edges[0].spec,
                   "http://127.0.0.1:8081/portal-gate/") == 0
         && strcmp(conf.edges[0].base,
                   "http://127.0.0.1:8081/portal-gate/") == 0
         && conf.edges[0].socket[0] == '\0'
         && strcmp(conf.edges[1].spec,
                   "unix:/run/portal-gate/api.sock:/portal-gate/") == 0
         && strcmp(conf.edges[1].socket, "/run/portal-gate/api.sock") == 0,
         "the example: two edges, in order, HTTP then unix socket");
}


/* conf-examples/portal-gated.conf, found from the binary (build/) or the
 * current folder. */
static void
test_example_file(const char *argv0)
{
    int          rc;
    char         path[1024];
    const char  *slash;
    pg_conf_t    conf;
    pg_error_t   err;

    slash = strrchr(argv0, '/');

    if (slash != NULL) {
        snprintf(path, sizeof(path), "%.*s/../conf-examples/"
                 "portal-gated.conf", (int) (slash - argv0), argv0);
    } else {
        snprintf(path, sizeof(path), "conf-examples/portal-gated.conf");
    }

    if (access(path, R_OK) != 0) {
        snprintf(path, sizeof(path), "conf-examples/portal-gated.conf");
    }

    pg_conf_defaults(&conf);
    rc = pg_conf_load(path, &conf, &err);

    if (!t_ok(rc == PG_OK, "conf-examples/portal-gated.conf loads")) {
        t_diag("error: %s", err.text);
        return;
    }

    t_ok(t_is_example(&conf) && conf.nedges == 1
         && strcmp(conf.edges[0].socket, "/run/portal-gate/api.sock") == 0,
         "conf-examples/portal-gated.conf: the production example");
}


static void
test_syntax(void)
{
    pg_conf_t  conf;

    if (t_loads("environments\n"
                "    production   # the customers\n"
                "\n"
                "    staging\n"
                "    dev\t;\n"
                "log_level\n"
                "debug\n"
                ";\n", &conf, "a directive may span lines"))
    {
        t_ok(conf.nenvs == 3 && strcmp(conf.envs[2], "dev") == 0
             && conf.log_level == PG_LOG_DEBUG,
             "a directive over lines, with a comment inside, has all its "
             "values");
    }

    if (t_loads("log_level warn;# a comment right after ';'\n"
                "prefix pg#1:;  # '#' inside a value is a character\n"
                "  # an indented comment; with a ';' \"and quotes\n"
                "reconcile_interval 1s;redis redis://h:1/2;",
                &conf, "comments after directives, and two on one line"))
    {
        t_ok(conf.log_level == PG_LOG_WARN
             && strcmp(conf.prefix, "pg#1:") == 0
             && conf.reconcile_ms == 1000
             && strcmp(conf.redis_url, "redis://h:1/2") == 0
             && conf.redis.port == 1 && conf.redis.db == 2,
             "'#' in a value is kept; the last directive needs no newline");
    }

    if (t_loads("prefix \"pg;#1:\" ;\n"
                "environments 'production' \"staging\";\n"
                "edge \"http://127.0.0.1:8081/pg/\"; # a comment\n",
                &conf, "quoted values"))
    {
        t_ok(strcmp(conf.prefix, "pg;#1:") == 0
             && conf.nenvs == 2 && strcmp(conf.envs[0], "production") == 0
             && strcmp(conf.edges[0].spec, "http://127.0.0.1:8081/pg/") == 0,
             "a quoted value keeps ';' and '#', its quotes gone");
    }

    if (t_loads("prefix 'it\\'s\\\\\"x\":';\n", &conf, "escapes in "
                "single quotes"))
    {
        t_ok(strcmp(conf.prefix, "it's\\\"x\":") == 0,
             "\\' and \\\\ are escapes, a \" is a character in '...'");
    }

    if (t_loads("prefix \"a\\\"b\\\\c\\'d\";", &conf, "escapes in double "
                "quotes"))
    {
        t_ok(strcmp(conf.prefix, "a\"b\\c'd") == 0,
             "\\\", \\\\ and \\' are escapes in \"...\"");
    }

    if (t_loads("\xef\xbb\xbfprefix it's:;\r\nlog_level\terror\t;\r\n",
                &conf, "a byte order mark, CRLF line ends, tabs, a quote "
                "inside a value"))
    {
        t_ok(strcmp(conf.prefix, "it's:") == 0
             && conf.log_level == PG_LOG_ERROR,
             "a quote inside a token is a character; CR is a space");
    }
}


static void
test_syntax_errors(void)
{
    char  buf[8192];

    t_refused("log_level info;\nedges http://h/;\n", 2,
              "unknown directive \"edges\"", "an unknown directive");

    t_refused("Log_level info;\n", 1, "unknown directive \"Log_level\"",
              "directive names are case-sensitive");

    t_refused("prefix x;\n\n\nlog_level info\n", 4,
              "unexpected end of file, expecting \";\"",
              "a missing final ';': the line of the last token");

    t_refused("log_level\n  info  # no ';'\n\n# the end\n", 2,
              "unexpected end of file, expecting \";\"",
              "a missing ';' followed by comments");

    t_refused("log_level info;\n;\n", 2, "unexpected \";\"", "a lone ';'");

    t_refused("log_level info;;\n", 1, "unexpected \";\"",
              "a doubled ';'");

    t_refused("prefix \"abc;\n", 1,
              "unterminated quoted value, expecting \"",
              "an unterminated quoted value");

    t_refused("log_level info;\nprefix 'abc\nxyz';\n", 2,
              "unterminated quoted value, expecting '",
              "a quoted value does not span lines");

    t_refused("prefix \"a\\nb\";\n", 1,
              "invalid escape \"\\n\" in a quoted value: only \\\", \\' "
              "and \\\\ are", "an unknown escape");

    t_refused("prefix \"ab\"cd;\n", 1,
              "unexpected \"c\" after a quoted value",
              "a quoted value glued to a token");

    t_refused_at(T_TEXT("log_level info;\nprefix a\0b;\n"), 2,
                 "unexpected NUL byte", 0, "a NUL byte");

    t_refused_at(T_TEXT("log_level info;\n\n# a\0 in a comment\n"), 3,
                 "unexpected NUL byte", 0, "a NUL byte in a comment");

    t_refused("log_level info;\nprefix a\001b;\n", 2,
              "unexpected control character 0x01", "a control character");

    /* 4096 bytes on a line are fine, 4097 are not */
    memset(buf, ' ', 4096);
    memcpy(buf, "log_level info;#", 16);
    memcpy(buf + 4096, "\nprefix x;\n", 12);
    {
        pg_conf_t   conf;
        pg_error_t  err;

        t_ok(t_load(buf, &conf, &err) == PG_OK
             && conf.log_level == PG_LOG_INFO
             && strcmp(conf.prefix, "x") == 0,
             "a line of 4096 bytes is fine");
    }

    memset(buf, '#', 4097);
    memcpy(buf, "\n", 1);
    memcpy(buf + 4097, "x\n", 3);
    t_refused(buf, 2, "line longer than 4096 bytes",
              "a line of 4097 bytes is refused");

    {
        char        missing[256], want[512];
        pg_conf_t   conf;
        pg_error_t  err;

        pg_conf_defaults(&conf);
        snprintf(missing, sizeof(missing), "%s/nothing-here.conf", t_dir);
        snprintf(want, sizeof(want), "cannot open %s: No such file or "
                 "directory", missing);

        if (!t_ok(pg_conf_load(missing, &conf, &err) == PG_ERR
                  && strcmp(err.text, want) == 0,
                  "a missing file: cannot open FILE: the reason"))
        {
            t_diag("error: %s", err.text);
        }

        if (!t_ok(pg_conf_load(t_dir, &conf, &err) == PG_ERR
                  && strncmp(err.text, "cannot read ", 12) == 0
                  && strstr(err.text, "Is a directory") != NULL,
                  "a folder: cannot read FILE: the reason"))
        {
            t_diag("error: %s", err.text);
        }
    }

    {
        char        *big;
        size_t       len, i;
        pg_conf_t    conf;
        pg_error_t   err;

        /* 1 MiB + 1 of comment lines */
        len = 1024 * 1024 + 1;
        big = malloc(len);

        if (big == NULL) {
            t_diag("out of memory");
            exit(1);
        }

        for (i = 0; i < len; i++) {
            big[i] = (i % 64 == 63) ? '\n' : '#';
        }

        t_ok(t_load_len(big, len, &conf, &err) == PG_ERR
             && strstr(err.text, "larger than 1048576 bytes") != NULL,
             "a file over 1 MiB is refused");

        t_ok(t_load_len(big, len - 1, &conf, &err) == PG_OK,
             "a file of 1 MiB of comments is fine");

        free(big);
    }
}


static void
test_arguments(void)
{
    t_refused("redis;\n", 1, "invalid number of arguments in \"redis\"",
              "redis without a value");

    t_refused("log_level\ninfo debug;\n", 1,
              "invalid number of arguments in \"log_level\"",
              "two values to log_level: the directive's line");

    t_refused("edge http://a:1/ http://b:1/;\n", 1,
              "invalid number of arguments in \"edge\"",
              "two edges on one line");

    t_refused("prefix;\n", 1, "invalid number of arguments in \"prefix\"",
              "prefix without a value");

    t_refused("environments ;\n", 1,
              "invalid number of arguments in \"environments\"",
              "environments without a value");

    t_refused("reconcile_interval 1 s;\n", 1,
              "invalid number of arguments in \"reconcile_interval\"",
              "a time with a space");
}


static void
test_values(void)
{
    pg_conf_t  conf;

    t_refused_at(T_TEXT("redis redis://h:99999/0;\n"), 1,
                 "invalid redis url \"redis://h:99999/0\": bad port", 1,
                 "a bad redis port: pg_redis_url_parse's message");

    t_refused_at(T_TEXT("log_level info;\nredis\n"
                        "  redis://:secret@h:0/0;\n"), 3,
                 "invalid redis url \"redis://:***@h:0/0\"", 1,
                 "a bad redis url: its line, the password masked");

    if (t_loads("redis unix:///run/redis/redis.sock;", &conf,
                "a unix:// redis"))
    {
        t_ok(conf.redis.unix_socket
             && strcmp(conf.redis.path, "/run/redis/redis.sock") == 0
             && strcmp(conf.redis_url, "unix:///run/redis/redis.sock") == 0,
             "redis unix://: the text and the parsed path");
    }

    if (t_loads("redis \"redis://u:p%23;w@db.example:6380/3\";", &conf,
                "a redis url with a password, quoted"))
    {
        t_ok(strcmp(conf.redis.user, "u") == 0
             && strcmp(conf.redis.pass, "p#;w") == 0
             && conf.redis.port == 6380 && conf.redis.db == 3,
             "the redis password is decoded");
    }

    t_refused_at(T_TEXT("log_level info;\nedge ftp://h/;\n"), 2,
                 "invalid edge \"ftp://h/\"", 1,
                 "a bad edge: pg_edge_parse's message");

    t_refused("log_level verbose;\n", 1, "invalid value \"verbose\" in "
              "\"log_level\": expected debug, info, notice, warn or error",
              "an unknown log level");

    t_refused("log_level INFO;\n", 1, "invalid value \"INFO\" in "
              "\"log_level\": expected debug, info, notice, warn or error",
              "log levels are lowercase");

    t_refused("prefix '';\n", 1,
              "invalid value \"\" in \"prefix\": 1 to 128 bytes",
              "an empty prefix");

    t_refused("prefix \"a b\";\n", 1, "invalid value \"a b\" in \"prefix\": "
              "no spaces or control characters", "a prefix with a space");

    t_refused("prefix \"a\tb\";\n", 1, "invalid value \"a?b\" in \"prefix\": "
              "no spaces or control characters", "a prefix with a tab");

    t_refused("environments production\n  Staging;\n", 2,
              "invalid value \"Staging\" in \"environments\": an "
              "environment is [a-z0-9_], 1 to 64 characters",
              "a bad environment name: its own line");

    t_refused("environments production staging production;\n", 1,
              "duplicate environment \"production\" in \"environments\"",
              "an environment twice");

    if (t_loads("environments staging;\n", &conf, "environments alone"))
    {
        t_ok(conf.nenvs == 1 && strcmp(conf.envs[0], "staging") == 0,
             "environments replaces the default list");
    }

    /* a long token is cut in messages */
    t_refused("log_level aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;\n", 1,
              "invalid value \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "aaaaaaaaaaaaaaaa...\" in \"log_level\": expected debug, "
              "info, notice, warn or error",
              "a long value is cut to 64 characters in the message");
}


static void
test_time(void)
{
    char  text[256];

    t_ok(t_interval("500ms") == 500, "500ms is 500 ms");
    t_ok(t_interval("2s") == 2000, "2s is 2000 ms");
    t_ok(t_interval("1m") == 60000, "1m is 60000 ms");
    t_ok(t_interval("1h") == 3600000, "1h is the most");
    t_ok(t_interval("5") == 5000, "a bare number is seconds");
    t_ok(t_interval("1m30s") == 90000, "1m30s is 90000 ms");
    t_ok(t_interval("1s500ms") == 1500, "1s500ms is 1500 ms");
    t_ok(t_interval("100ms") == 100, "100ms is the least");
    t_ok(t_interval("3600") == 3600000, "3600 seconds is 1h");

    t_refused("reconcile_interval 5x;\n", 1,
              "invalid value \"5x\" in \"reconcile_interval\"",
              "5x is not a time");

    t_ok(t_interval("") == -1 && t_interval("ms") == -1
         && t_interval("1.5s") == -1 && t_interval("-1s") == -1
         && t_interval("+1s") == -1 && t_interval("1S") == -1
         && t_interval("1s1m") == -1 && t_interval("1s1s") == -1
         && t_interval("1m30") == -1 && t_interval("1d") == -1
         && t_interval("s1") == -1 && t_interval("1sx") == -1
         && t_interval("1000000000s") == -1,
         "not times: empty, no digits, fractions, signs, uppercase, "
         "units out of order or twice, a trailing bare number, days, "
         "10 digits");

    t_refused("reconcile_interval 99ms;\n", 1,
              "invalid value \"99ms\" in \"reconcile_interval\": from "
              "100ms to 1h", "99ms is too short");

    t_ok(t_interval("0") == -1 && t_interval("0s") == -1,
         "0 is too short");

    t_refused("reconcile_interval 1h1ms;\n", 1,
              "invalid value \"1h1ms\" in \"reconcile_interval\": from "
              "100ms to 1h", "1h1ms is too long");

    t_ok(t_interval("3601") == -1 && t_interval("2h") == -1
         && t_interval("999999999h") == -1,
         "3601 s, 2h and 999999999h are too long");

    snprintf(text, sizeof(text), "reconcile_interval '1s';");
    {
        pg_conf_t   conf;
        pg_error_t  err;

        t_ok(t_load(text, &conf, &err) == PG_OK && conf.reconcile_ms == 1000,
             "a quoted time");
    }
}


static void
test_repeats(void)
{
    pg_conf_t   conf;
    pg_error_t  err;

    t_refused("redis redis://a:1/0;\nredis redis://a:1/0;\n", 2,
              "\"redis\" directive is duplicate", "redis twice");

    t_refused("prefix a;\n\n  prefix b;\n", 3,
              "\"prefix\" directive is duplicate", "prefix twice");

    t_refused("environments a;\nenvironments b;\n", 2,
              "\"environments\" directive is duplicate",
              "environments twice");

    t_refused("reconcile_interval 1s;\nreconcile_interval 1s;\n", 2,
              "\"reconcile_interval\" directive is duplicate",
              "reconcile_interval twice");

    t_refused("log_level info;\nlog_level info;\n", 2,
              "\"log_level\" directive is duplicate", "log_level twice");

    t_refused("edge http://h:1/a/;\nedge unix:/s.sock:/a/;\n"
              "\nedge http://h:1/a/;\n", 4,
              "duplicate edge \"http://h:1/a/\", first on line 1",
              "the same edge twice");

    t_refused("edge http://h:1/a/;\nedge http://h:1/a;\n", 2,
              "duplicate edge \"http://h:1/a\", first on line 1",
              "the same edge, with and without a final '/'");

    if (t_loads("edge http://h:1/a/;\nedge http://h:1/b/;\n"
                "edge http://h:2/a/;\nedge unix:/s.sock:/a/;\n"
                "edge unix:/t.sock:/a/;\n", &conf,
                "different edges"))
    {
        t_ok(conf.nedges == 5
             && strcmp(conf.edges[4].socket, "/t.sock") == 0,
             "edges accumulate, in order");
    }

    /* over a conf that already has an edge: the file's replace it */
    pg_conf_defaults(&conf);
    pg_edge_parse("http://old:1/", &conf.edges[0], &err);
    conf.nedges = 1;
    t_write("edge http://new:1/;\n", 20);

    t_ok(pg_conf_load(t_path, &conf, &err) == PG_OK && conf.nedges == 1
         && strcmp(conf.edges[0].spec, "http://new:1/") == 0,
         "the file's edges replace those already in the conf");

    pg_conf_defaults(&conf);
    pg_edge_parse("http://old:1/", &conf.edges[0], &err);
    conf.nedges = 1;
    conf.reconcile_ms = 5000;
    t_write("log_level debug;\n", 17);

    t_ok(pg_conf_load(t_path, &conf, &err) == PG_OK && conf.nedges == 1
         && strcmp(conf.edges[0].spec, "http://old:1/") == 0
         && conf.reconcile_ms == 5000 && conf.log_level == PG_LOG_DEBUG,
         "what the file does not set keeps the value in the conf");

    unlink(t_path);
}


/* What is appended to an edge's URL must land in its path. */
static void
test_edge_urls(void)
{
    pg_conf_t  conf;

    t_refused("log_level info;\nedge \"http://127.0.0.1:8081/portal gate/\";\n",
              2, "invalid value \"http://127.0.0.1:8081/portal gate/\" in "
              "\"edge\": an edge's URL has no spaces: write a space as %20",
              "an edge URL with a space");

    t_refused("edge \"http://127.0.0.1:8081/pg/\tx/\";\n", 1,
              "invalid value \"http://127.0.0.1:8081/pg/?x/\" in \"edge\": "
              "an edge's URL has no spaces: write a space as %20",
              "an edge URL with a tab");

    t_refused("edge http://127.0.0.1:8081/pg/?x=1;\n", 1,
              "invalid value \"http://127.0.0.1:8081/pg/?x=1\" in \"edge\": "
              "an edge's URL has no query (\"?...\"): the API's paths are "
              "appended to it", "an edge URL with a query");

    t_refused("\n\nedge http://127.0.0.1:8081/pg/#top;\n", 3,
              "invalid value \"http://127.0.0.1:8081/pg/#top\" in \"edge\": "
              "an edge's URL has no fragment (\"#...\"): the API's paths "
              "are appended to it", "an edge URL with a fragment");

    t_refused("edge \"unix:/run/pg.sock:/portal gate/\";\n", 1,
              "invalid value \"unix:/run/pg.sock:/portal gate/\" in "
              "\"edge\": an edge's URL has no spaces: write a space as %20",
              "a unix edge whose location has a space");

    t_refused("edge unix:/run/pg.sock:/pg/?a;\n", 1,
              "invalid value \"unix:/run/pg.sock:/pg/?a\" in \"edge\": "
              "an edge's URL has no query (\"?...\"): the API's paths are "
              "appended to it", "a unix edge whose location has a query");

    if (t_loads("edge \"unix:/run/portal gate/a#1.sock:/pg/\";\n"
                "edge http://127.0.0.1:8081/portal%20gate/;\n", &conf,
                "a socket path with a space and a '#', and a %20"))
    {
        t_ok(strcmp(conf.edges[0].socket, "/run/portal gate/a#1.sock") == 0
             && strcmp(conf.edges[1].base,
                       "http://127.0.0.1:8081/portal%20gate/") == 0,
             "both kept as written");
    }
}


static void
test_limits(void)
{
    int          i;
    char        *text;
    char         line[128], want[128];
    size_t       len, size;
    pg_conf_t    conf;
    pg_error_t   err;

    size = 64 * 1024;
    text = malloc(size);

    if (text == NULL) {
        t_diag("out of memory");
        exit(1);
    }

    /* PG_EDGE_MAX edges, then one more */
    len = 0;

    for (i = 0; i < PG_EDGE_MAX; i++) {
        len += (size_t) snprintf(text + len, size - len,
                                 "edge http://127.0.0.1:%d/pg/;\n", 8000 + i);
    }

    t_ok(t_load(text, &conf, &err) == PG_OK && conf.nedges == PG_EDGE_MAX
         && strcmp(conf.edges[PG_EDGE_MAX - 1].spec,
                   "http://127.0.0.1:8063/pg/") == 0,
         "%d edges are fine", PG_EDGE_MAX);

    snprintf(text + len, size - len, "edge http://127.0.0.1:9000/pg/;\n");
    snprintf(want, sizeof(want), "too many \"edge\" directives: at most %d",
             PG_EDGE_MAX);
    t_refused(text, PG_EDGE_MAX + 1, want, "one edge more is refused");

    /* PG_ENVS_MAX environments over lines, then one more */
    len = (size_t) snprintf(text, size, "environments\n");

    for (i = 0; i < PG_ENVS_MAX; i++) {
        len += (size_t) snprintf(text + len, size - len, "  env_%02d\n", i);
    }

    snprintf(text + len, size - len, ";\n");

    t_ok(t_load(text, &conf, &err) == PG_OK && conf.nenvs == PG_ENVS_MAX
         && strcmp(conf.envs[PG_ENVS_MAX - 1], "env_63") == 0,
         "%d environments are fine", PG_ENVS_MAX);

    snprintf(text + len, size - len, "  one_more;\n");
    snprintf(want, sizeof(want), "too many values in \"environments\": at "
             "most %d", PG_ENVS_MAX);
    t_refused(text, 1, want, "one environment more is refused");

    /* many more tokens than are kept: still counted, still refused */
    len = (size_t) snprintf(text, size, "environments");

    for (i = 0; i < 1000; i++) {
        len += (size_t) snprintf(text + len, size - len, "%se%d",
                                 (i % 10 == 9) ? "\n" : " ", i);
    }

    snprintf(text + len, size - len, ";\n");
    t_refused(text, 1, want, "a thousand environments are refused");

    t_refused("edge http://a:1/;\nlog_level info x x x x x x x x x x x x x x "
              "x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x "
              "x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x "
              "x x x x x x x x;\n", 2,
              "invalid number of arguments in \"log_level\"",
              "85 values: counted past the tokens kept");

    /* a name of 64 characters is the longest */
    memset(line, 'a', 65);
    line[65] = '\0';
    snprintf(text, size, "environments %.64s;", line);

    t_ok(t_load(text, &conf, &err) == PG_OK && strlen(conf.envs[0]) == 64,
         "an environment of 64 characters is fine");

    snprintf(text, size, "environments %s;", line);
    t_ok(t_load(text, &conf, &err) == PG_ERR
         && strstr(err.text, "invalid value") != NULL,
         "an environment of 65 characters is refused");

    /* a prefix of 128 bytes is the longest */
    memset(text, 0, size);
    memcpy(text, "prefix ", 7);
    memset(text + 7, 'p', PG_STORE_PREFIX_MAX);
    memcpy(text + 7 + PG_STORE_PREFIX_MAX, ";", 2);

    t_ok(t_load(text, &conf, &err) == PG_OK
         && strlen(conf.prefix) == PG_STORE_PREFIX_MAX,
         "a prefix of %d bytes is fine", PG_STORE_PREFIX_MAX);

    memcpy(text + 7 + PG_STORE_PREFIX_MAX, "p;", 3);
    t_ok(t_load(text, &conf, &err) == PG_ERR
         && strstr(err.text, "1 to 128 bytes") != NULL,
         "a prefix of %d bytes is refused", PG_STORE_PREFIX_MAX + 1);

    /* a redis url longer than redis_url holds, yet valid */
    len = (size_t) snprintf(text, size, "redis redis://");

    for (i = 0; i < 127; i++) {
        len += (size_t) snprintf(text + len, size - len, "%%42");
    }

    len += (size_t) snprintf(text + len, size - len, ":");

    for (i = 0; i < 255; i++) {
        len += (size_t) snprintf(text + len, size - len, "%%41");
    }

    snprintf(text + len, size - len, "@h:1/0;\n");

    if (!t_ok(t_load(text, &conf, &err) == PG_ERR
              && strstr(err.text, ":1: invalid value in \"redis\": the url "
                        "is longer than 1023 bytes") != NULL
              && strstr(err.text, "%41") == NULL,
              "a redis url too long to keep, its password never shown"))
    {
        t_diag("error: %s", err.text);
    }

    free(text);
}


/* require_reason (portal-gatectl's, read from the same file): which
 * writing commands refuse to run without --reason, and where it says so. */
static void
test_require_reason(void)
{
    pg_conf_t  conf;

    pg_conf_defaults(&conf);
    t_ok(conf.nrequire_reason == 0, "require_reason: none by default");

    if (t_loads("# on-call\nrequire_reason kill\n    off;\n", &conf,
                "require_reason kill off"))
    {
        t_ok(conf.nrequire_reason == 2
             && strcmp(conf.require_reason[0], "kill") == 0
             && strcmp(conf.require_reason[1], "off") == 0
             && conf.require_reason_line == 2,
             "require_reason: kill and off, named on line 2");
    }

    if (t_loads("require_reason create on off kill rollout allow deny "
                "unallow undeny set delete env release;\n", &conf,
                "require_reason: every writing command"))
    {
        t_ok(conf.nrequire_reason == 13
             && strcmp(conf.require_reason[12], "release") == 0,
             "require_reason: all 13 kept, in order");
    }

    t_refused("require_reason kil;\n", 1,
              "invalid value \"kil\" in \"require_reason\": expected "
              "portal-gatectl's writing commands: create, on, off, kill, "
              "rollout, allow, deny, unallow, undeny, set, delete, env, "
              "release", "require_reason: a typo is refused, with the list");
    t_refused_at(T_TEXT("require_reason kill\n list;\n"), 2,
                 "invalid value \"list\" in \"require_reason\": expected ",
                 1, "require_reason: a command that writes nothing, on its "
                 "line");
    t_refused_at(T_TEXT("require_reason kill\nKill;\n"), 2,
                 "invalid value \"Kill\" in \"require_reason\"", 1,
                 "require_reason: commands are case-sensitive");
    t_refused("require_reason kill off\n  kill;\n", 2,
              "invalid value \"kill\" in \"require_reason\": named twice",
              "require_reason: a command named twice, at the second");
    t_refused("require_reason;\n", 1,
              "invalid number of arguments in \"require_reason\"",
              "require_reason: with no command");
    t_refused("require_reason kill;\nrequire_reason off;\n", 2,
              "\"require_reason\" directive is duplicate",
              "require_reason: twice");
}


/* The certificates' directives: state_dir, nginx, certificate { }. */
#define T_CERT_OK                                                            \
    "state_dir /var/lib/pg;\n"                                               \
    "nginx conf=/etc/nginx/nginx.conf pid=/run/nginx.pid;\n"                 \
    "nginx conf=/srv/edge2/nginx.conf pid=/srv/edge2/nginx.pid\n"            \
    "      binary=/opt/nginx prefix=/srv/edge2;\n"                           \
    "certificate Staging.Example.com {   # a comment\n"                      \
    "    names      staging.example.com www.staging.example.com;\n"          \
    "    issuer     acme https://acme.test/dir;\n"                           \
    "    acme_ca    /etc/ssl/ca.pem;\n"                                      \
    "    contact    mailto:ops@example.com;\n"                               \
    "    key_type   rsa;\n"                                                  \
    "    profile    shortlived;\n"                                           \
    "    fullchain  /etc/pg/s/fullchain.pem;\n"                              \
    "    privkey    /etc/pg/s/privkey.pem;\n"                                \
    "}\n"                                                                    \
    "certificate local.test{issuer local /ca.pem /ca.key;\n"                 \
    "  fullchain /l/f.pem; privkey /l/k.pem;}\n"

#define T_CERT_BLOCK(body)                                                   \
    "certificate s.test {\n" body "}\n"

#define T_CERT_MIN                                                           \
    "issuer acme https://a.test/d;\nfullchain /f.pem;\nprivkey /k.pem;\n"

static void
test_certificates(void)
{
    pg_conf_t  conf;

    pg_conf_defaults(&conf);
    t_ok(strcmp(conf.state_dir, "/var/lib/portal-gate") == 0
         && conf.nnginx == 0 && conf.ncerts == 0,
         "certificates: state_dir /var/lib/portal-gate, none by default");

    if (t_loads(T_CERT_OK, &conf, "certificates: a full example loads")) {
        t_ok(strcmp(conf.state_dir, "/var/lib/pg") == 0, "state_dir kept");
        t_ok(conf.nnginx == 2
             && strcmp(conf.nginx[0].conf, "/etc/nginx/nginx.conf") == 0
             && strcmp(conf.nginx[0].pid, "/run/nginx.pid") == 0
             && strcmp(conf.nginx[0].binary, "/usr/sbin/nginx") == 0
             && conf.nginx[0].prefix[0] == '\0'
             && strcmp(conf.nginx[1].binary, "/opt/nginx") == 0
             && strcmp(conf.nginx[1].prefix, "/srv/edge2") == 0
             && conf.nginx[1].line == 3,
             "nginx: two lines, binary defaults to /usr/sbin/nginx");
        t_ok(conf.ncerts == 2
             && strcmp(conf.certs[0].name, "staging.example.com") == 0
             && strcmp(conf.certs[0].names, "staging.example.com "
                       "www.staging.example.com") == 0
             && conf.certs[0].nnames == 2
             && conf.certs[0].issuer == PG_CONF_ISSUER_ACME
             && strcmp(conf.certs[0].acme, "https://acme.test/dir") == 0
             && strcmp(conf.certs[0].acme_ca, "/etc/ssl/ca.pem") == 0
             && conf.certs[0].ncontacts == 1
             && conf.certs[0].key_type == 1
             && strcmp(conf.certs[0].profile, "shortlived") == 0
             && strcmp(conf.certs[0].privkey, "/etc/pg/s/privkey.pem") == 0
             && conf.certs[0].line == 5,
             "certificate: every line of the block kept, the name in "
             "lower case");
        t_ok(conf.certs[1].issuer == PG_CONF_ISSUER_LOCAL
             && strcmp(conf.certs[1].ca_key, "/ca.key") == 0
             && strcmp(conf.certs[1].names, "local.test") == 0
             && conf.certs[1].nnames == 1 && conf.certs[1].key_type == 0,
             "certificate: braces need no spaces; names default to the "
             "block's name; ecdsa by default");
    }

    t_refused(T_CERT_BLOCK("fullchain /f.pem;\nprivkey /k.pem;\n"), 4,
              "certificate \"s.test\" has no \"issuer\"",
              "certificate: no issuer, said at the \"}\"");
    t_refused(T_CERT_BLOCK("issuer acme https://a.test/d;\nprivkey /k;\n"),
              4, "certificate \"s.test\" has no \"fullchain\"",
              "certificate: no fullchain");
    t_refused(T_CERT_BLOCK("issuer acme https://a.test/d;\nfullchain /k;\n"),
              4, "certificate \"s.test\" has no \"privkey\"",
              "certificate: no privkey");
    t_refused(T_CERT_BLOCK(T_CERT_MIN "  iss acme x;\n"), 5,
              "unknown directive \"iss\" in a certificate block",
              "certificate: a typo in the block, on its line");
    t_refused(T_CERT_BLOCK(T_CERT_MIN "redis redis://x:1/0;\n"), 5,
              "unknown directive \"redis\" in a certificate block",
              "certificate: a top-level directive inside is refused");
    t_refused(T_CERT_BLOCK("issuer acme http://a.test/d;\n"), 2,
              "invalid value \"http://a.test/d\" in \"issuer\": an ACME "
              "directory is an https:// URL",
              "certificate: the ACME directory must be https");
    t_refused(T_CERT_BLOCK("issuer acme;\n"), 2,
              "invalid number of arguments in \"issuer\"",
              "certificate: issuer acme without a URL");
    t_refused(T_CERT_BLOCK("issuer local /ca.pem;\n"), 2,
              "invalid number of arguments in \"issuer\": local takes the "
              "CA's certificate and key files",
              "certificate: issuer local without the key");
    t_refused(T_CERT_BLOCK("issuer local ca.pem ca.key;\n"), 2,
              "invalid value \"ca.pem\" in \"issuer\": an absolute path",
              "certificate: a relative CA path");
    t_refused(T_CERT_BLOCK("issuer vault x;\n"), 2,
              "invalid value \"vault\" in \"issuer\": expected acme or local",
              "certificate: an unknown issuer");
    t_refused(T_CERT_BLOCK("key_type ed25519;\n"), 2,
              "invalid value \"ed25519\" in \"key_type\": expected ecdsa or "
              "rsa", "certificate: an unknown key type");
    t_refused(T_CERT_BLOCK("contact ops@example.com;\n"), 2,
              "invalid value \"ops@example.com\" in \"contact\": expected "
              "mailto:ADDRESS", "certificate: a contact without mailto:");
    t_refused(T_CERT_BLOCK("names a.test -b.test;\n"), 2,
              "invalid value \"-b.test\" in \"names\": not a DNS name: "
              "labels of a-z, 0-9 and inner '-', joined by '.'",
              "certificate: a name that is not a DNS name");
    t_refused(T_CERT_BLOCK("names a.test a..test;\n"), 2,
              "invalid value \"a..test\" in \"names\": not a DNS name: "
              "labels of a-z, 0-9 and inner '-', joined by '.'",
              "certificate: an empty label");
    t_refused(T_CERT_BLOCK("names a.test A.test;\n"), 2,
              "invalid value \"a.test\" in \"names\": named twice",
              "certificate: a name twice, whatever its case");
    t_refused(T_CERT_BLOCK("names *.s.test;\n" T_CERT_MIN), 6,
              "certificate \"s.test\": a wildcard name needs \"issuer "
              "local\": an ACME server validates one only by dns-01, and "
              "portal-gated answers http-01",
              "certificate: a wildcard with ACME is refused");
    t_loads(T_CERT_BLOCK("names *.s.test;\nissuer local /c /k;\n"
                         "fullchain /f;\nprivkey /k2;\n"), &conf,
            "certificate: a wildcard with the local CA loads");
    t_refused(T_CERT_BLOCK("issuer local /c /k;\nprofile shortlived;\n"
                           "fullchain /f;\nprivkey /k2;\n"), 6,
              "certificate \"s.test\": \"profile\" is for an acme issuer, "
              "not a local one", "certificate: profile with a local CA");
    t_refused(T_CERT_BLOCK("issuer acme https://a.test/d;\nfullchain /f;\n"
                           "privkey /f;\n"), 5,
              "certificate \"s.test\": \"fullchain\" and \"privkey\" are "
              "the same file, or one is the other's .prev (kept at each "
              "install)", "certificate: one file for both");
    t_refused(T_CERT_BLOCK("issuer acme https://a.test/d;\nfullchain /f;\n"
                           "privkey /f.prev;\n"), 5,
              "certificate \"s.test\": \"fullchain\" and \"privkey\" are "
              "the same file, or one is the other's .prev (kept at each "
              "install)", "certificate: a key at the chain's .prev");
    t_refused(T_CERT_BLOCK(T_CERT_MIN) "certificate t.test {\n"
              "issuer acme https://a.test/d;\nfullchain /f.pem.prev;\n"
              "privkey /k2.pem;\n}\n", 10,
              "certificate \"t.test\" writes a file that certificate "
              "\"s.test\" (line 1) writes too",
              "certificate: a file at another block's .prev");
    t_refused(T_CERT_BLOCK("privkey /etc/pg/;\n"), 2,
              "invalid value \"/etc/pg/\" in \"privkey\": a file's path, "
              "not a folder's", "certificate: a folder as privkey");
    t_refused(T_CERT_BLOCK("issuer acme \"https://a.test/d x\";\n"), 2,
              "invalid value \"https://a.test/d x\" in \"issuer\": an ACME "
              "directory is an https:// URL",
              "certificate: a directory URL with a space");
    t_refused("certificate 10.0.0.1 {\n}\n", 1,
              "invalid value \"10.0.0.1\" in \"certificate\": an IP "
              "address: portal-gated asks for DNS names",
              "certificate: an IP address");
    t_loads(T_CERT_BLOCK("names s.test 1.s.test;\n" T_CERT_MIN), &conf,
            "certificate: a digit label is fine below the top level");
    t_refused(T_CERT_BLOCK(T_CERT_MIN) T_CERT_BLOCK(T_CERT_MIN), 6,
              "duplicate certificate \"s.test\", first on line 1",
              "certificate: the same name twice");
    t_refused(T_CERT_BLOCK(T_CERT_MIN) "certificate t.test {\n" T_CERT_MIN
              "}\n", 10,
              "certificate \"t.test\" writes a file that certificate "
              "\"s.test\" (line 1) writes too",
              "certificate: two blocks writing one file");
    t_refused(T_CERT_BLOCK(T_CERT_MIN "issuer local /a /b;\n"), 5,
              "\"issuer\" directive is duplicate",
              "certificate: issuer twice in a block");
    t_refused("certificate s.test;\n", 1,
              "directive \"certificate\" has no opening \"{\"",
              "certificate: without a block");
    t_refused("certificate s.test {\n" T_CERT_MIN, 4,
              "unexpected end of file, expecting \"}\"",
              "certificate: an unclosed block");
    t_refused(T_CERT_BLOCK(T_CERT_MIN) "}\n", 6, "unexpected \"}\"",
              "certificate: a stray \"}\"");
    t_refused(T_CERT_BLOCK("issuer acme https://a.test/d\n"), 3,
              "unexpected \"}\", expecting \";\"",
              "certificate: a missing \";\" before \"}\"");
    t_refused("redis redis://x:1/0 {\n}\n", 1,
              "unexpected \"{\": \"redis\" takes no block",
              "a block on a directive that takes none");
    t_refused(T_CERT_BLOCK("names a.test {\n"), 2,
              "unexpected \"{\": a certificate block holds no block",
              "certificate: a block inside a block");
    t_refused("certificate {\n}\n", 1,
              "invalid number of arguments in \"certificate\"",
              "certificate: without a name");

    if (t_loads("nginx conf=/a.conf binary=/h;\n", &conf,
                "nginx: without pid= (the reload by binary -s reload)"))
    {
        t_ok(conf.nnginx == 1 && conf.nginx[0].reload == 1
             && conf.nginx[0].pid[0] == '\0',
             "nginx: no pid=, reload on");
    }
    t_refused("nginx pid=/p;\n", 1, "\"nginx\" needs conf=PATH",
              "nginx: without conf=");
    if (t_loads("nginx conf=/a.conf reload=off;\n", &conf,
                "nginx: reload=off needs no pid="))
    {
        t_ok(conf.nnginx == 1 && conf.nginx[0].reload == 0
             && conf.nginx[0].pid[0] == '\0', "nginx: reload=off kept");
    }
    t_refused("nginx conf=/a.conf pid=/p reload=no;\n", 1,
              "invalid value \"reload=no\" in \"nginx\": expected "
              "reload=on or reload=off", "nginx: reload=no is refused");
    t_refused("nginx conf=/a.conf pid=/a.pid config=/x;\n", 1,
              "invalid value \"config=/x\" in \"nginx\": expected "
              "conf=PATH, pid=PATH, binary=PATH, prefix=DIR or "
              "reload=on|off",
              "nginx: an unknown key");
    t_refused("nginx conf=a.conf pid=/a.pid;\n", 1,
              "invalid value \"conf=a.conf\" in \"nginx\": an absolute path",
              "nginx: a relative conf");
    t_refused("nginx conf=/a pid=/p conf=/b;\n", 1,
              "invalid value \"conf=/b\" in \"nginx\": given twice",
              "nginx: a key twice");
    t_refused("nginx conf=/a pid=/p;\nnginx pid=/q conf=/a;\n", 2,
              "duplicate nginx conf=/a, first on line 1",
              "nginx: the same nginx twice");
    t_loads("nginx conf=/a pid=/p prefix=/etc/nginx/;\n"
            "state_dir /var/lib/pg/;\n", &conf,
            "nginx prefix= and state_dir are folders: a trailing / is fine");
    t_refused("state_dir var/lib;\n", 1,
              "invalid value \"var/lib\" in \"state_dir\": an absolute path",
              "state_dir: a relative path");
}


/* redis_replicas NUM [TIMEOUT]: portal-gatectl's WAIT after a write. */
static void
test_redis_replicas(void)
{
    pg_conf_t  conf;

    pg_conf_defaults(&conf);
    t_ok(conf.redis_replicas == 1 && conf.redis_replicas_ms == 1000,
         "redis_replicas: 1 replica within 1s by default");

    if (t_loads("redis_replicas 2 500ms;\n", &conf,
                "redis_replicas 2 500ms loads"))
    {
        t_ok(conf.redis_replicas == 2 && conf.redis_replicas_ms == 500,
             "redis_replicas 2 500ms: 2 replicas, 500 ms");
    }

    if (t_loads("redis_replicas 1 1m30s;\n", &conf,
                "redis_replicas takes nginx's times"))
    {
        t_ok(conf.redis_replicas_ms == 90000, "redis_replicas 1 1m30s: 90 s");
    }

    if (t_loads("redis_replicas 3;\n", &conf,
                "redis_replicas NUM alone loads"))
    {
        t_ok(conf.redis_replicas == 3 && conf.redis_replicas_ms == 1000,
             "redis_replicas 3: the timeout stays 1s");
    }

    if (t_loads("redis_replicas 0;\n", &conf, "redis_replicas 0 loads")) {
        t_ok(conf.redis_replicas == 0, "redis_replicas 0: no WAIT");
    }

    t_refused("\nredis_replicas two 1s;\n", 2,
              "invalid value \"two\" in \"redis_replicas\": expected a "
              "number of replicas from 0 to 100",
              "redis_replicas: a word for the number");
    t_refused("redis_replicas -1 1s;\n", 1,
              "invalid value \"-1\" in \"redis_replicas\": expected a "
              "number of replicas from 0 to 100",
              "redis_replicas: a negative number");
    t_refused("redis_replicas 101;\n", 1,
              "invalid value \"101\" in \"redis_replicas\": expected a "
              "number of replicas from 0 to 100",
              "redis_replicas: more than 100");
    t_refused("redis_replicas 1 1x;\n", 1,
              "invalid value \"1x\" in \"redis_replicas\": expected a "
              "time such as 500ms or 2s",
              "redis_replicas: a bad time");
    t_refused("redis_replicas 1 0s;\n", 1,
              "invalid value \"0s\" in \"redis_replicas\": from 1ms to 1h",
              "redis_replicas: 0s would wait forever (WAIT's 0)");
    t_refused("redis_replicas 1 2h;\n", 1,
              "invalid value \"2h\" in \"redis_replicas\": from 1ms to 1h",
              "redis_replicas: more than an hour");
    t_refused("redis_replicas 0 1s;\n", 1,
              "invalid value \"1s\" in \"redis_replicas\": 0 replicas wait "
              "for nothing: give no timeout",
              "redis_replicas: a timeout with 0");
    t_refused("redis_replicas 1 1s 1s;\n", 1,
              "too many values in \"redis_replicas\": at most 2",
              "redis_replicas: three values");
    t_refused("redis_replicas 1;\nredis_replicas 2;\n", 2,
              "\"redis_replicas\" directive is duplicate",
              "redis_replicas: twice");
}


int
main(int argc, char **argv)
{
    if (mkdtemp(t_dir) == NULL) {
        printf("Bail out! cannot make a scratch folder\n");
        return 255;
    }

    test_defaults();
    test_log_level_names();
    test_example();
    test_example_file(argc > 0 ? argv[0] : "test-conf");
    test_syntax();
    test_syntax_errors();
    test_arguments();
    test_values();
    test_time();
    test_repeats();
    test_edge_urls();
    test_limits();
    test_require_reason();
    test_certificates();
    test_redis_replicas();

    rmdir(t_dir);

    printf("1..%d\n", t_count);

    if (t_failed) {
        t_diag("failed %d of %d tests", t_failed, t_count);
        return 1;
    }

    return 0;
}
