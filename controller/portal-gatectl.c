/*
 * portal-gatectl: the operators' command line for portal-gate flags.
 *
 * Exit status: 0 done; 1 the operation failed (Redis unreachable, the
 * store not initialised, a flag that exists or is missing, an edge that
 * did not confirm); 2 a usage error or invalid input (nothing was
 * written).
 *
 * This file: the options, the command table and main, and the checks and
 * messages the commands share. The commands live in pg_ctl_*.c (see
 * pg_ctl.h).
 */

#include <errno.h>              /* errno */
#include <getopt.h>             /* getopt_long */
#include <pwd.h>                /* getpwuid: the actor when $USER is unset */
#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* printf, fprintf */
#include <stdlib.h>             /* getenv, strtod, strtoul */
#include <stdint.h>             /* uint32_t */
#include <string.h>             /* strcmp, strlen */
#include <unistd.h>             /* access, getuid */
#include "pg_curl.h"            /* pg_curl_load: only to ask the edges */
#include "pg_ctl.h"             /* the commands, the options */


/* How a command meets Redis. */
#define PG_CTL_REDIS_FIRST   0  /* main connects first: no Redis, exit 1 */
#define PG_CTL_REDIS_OWN     1  /* the command connects itself, if at all:
                                   what it does first needs no Redis */

typedef struct {
    const char   *name;
    int           min_args;     /* operands after the command */
    int           max_args;     /* -1: any number */
    int           writes;
    int           redis;        /* PG_CTL_REDIS_* */
    pg_ctl_run_pt  run;
    const char   *usage;        /* the synopsis, two spaces, what it does */
} pg_ctl_cmd_t;


static int pg_ctl_token_misplaced(pg_store_t *store, pg_ctl_opts_t *o,
    const char *cmd, int argc, char **argv);


static const pg_ctl_cmd_t  pg_ctl_cmds[] = {
    { "init",    0,  0, 0, PG_CTL_REDIS_FIRST, pg_ctl_init,
      "init                 create an empty store in a new or flushed Redis,\n"
      "                       with the environments of -c's config (else\n"
      "                       production and staging)\n"
      "                       [--from-edge URL]: rebuild it from an edge" },
    { "status",  0,  0, 0, PG_CTL_REDIS_OWN, pg_ctl_status,
      "status               the store, each portal-gated and its last beat,\n"
      "                       each edge's revision and kill overrides;\n"
      "                       exit 1 unless all is well" },
    { "env",     1,  2, 1, PG_CTL_REDIS_FIRST, pg_ctl_env,
      "env list | add ENV   the store's environments; add one" },
    { "list",    0,  0, 0, PG_CTL_REDIS_FIRST, pg_ctl_list,
      "list                 the environment's flags, a line each" },
    { "show",    1,  1, 0, PG_CTL_REDIS_FIRST, pg_ctl_show,
      "show FLAG            one flag's JSON" },
    { "create",  1,  1, 1, PG_CTL_REDIS_FIRST, pg_ctl_change,
      "create FLAG          a new flag: enabled, rollout 0, empty lists\n"
      "                       [--requires FLAG] [--description TEXT]" },
    { "on",      1,  1, 1, PG_CTL_REDIS_FIRST, pg_ctl_change,
      "on FLAG              enable the flag" },
    { "off",     1,  1, 1, PG_CTL_REDIS_FIRST, pg_ctl_change,
      "off FLAG             disable the flag for everyone" },
    { "kill",    1,  1, 1, PG_CTL_REDIS_FIRST, pg_ctl_change,
      "kill FLAG            the same as off, for on-call: says what changed\n"
      "                       [--direct]: break-glass, straight to every\n"
      "                       edge's API, with Redis or portal-gated down" },
    { "release", 1,  1, 1, PG_CTL_REDIS_OWN, pg_ctl_release,
      "release FLAG         lift the kill overrides of kill --direct on\n"
      "                       every edge: the flag is as the store says" },
    { "rollout", 2,  2, 1, PG_CTL_REDIS_FIRST, pg_ctl_change,
      "rollout FLAG PCT     the share of companies, 0 to 100, step 0.01" },
    { "allow",   2, -1, 1, PG_CTL_REDIS_FIRST, pg_ctl_change,
      "allow FLAG ID...     add companies to the allow list" },
    { "deny",    2, -1, 1, PG_CTL_REDIS_FIRST, pg_ctl_change,
      "deny FLAG ID...      add companies to the deny list" },
    { "unallow", 2, -1, 1, PG_CTL_REDIS_FIRST, pg_ctl_change,
      "unallow FLAG ID...   take companies off the allow list" },
    { "undeny",  2, -1, 1, PG_CTL_REDIS_FIRST, pg_ctl_change,
      "undeny FLAG ID...    take companies off the deny list" },
    { "set",     2, -1, 1, PG_CTL_REDIS_FIRST, pg_ctl_change,
      "set FLAG KEY=VALUE...  requires, description or salt; an empty\n"
      "                       VALUE removes the key" },
    { "delete",  1,  1, 1, PG_CTL_REDIS_FIRST, pg_ctl_delete,
      "delete FLAG          remove the flag (not while another requires it)" },
    { "explain", 2,  2, 0, PG_CTL_REDIS_FIRST, pg_ctl_explain,
      "explain FLAG ID      the decision for a company, as the edge makes it" },
    { "audit",   0,  1, 0, PG_CTL_REDIS_FIRST, pg_ctl_audit,
      "audit [FLAG]         who changed what, when and why, newest first\n"
      "                       [--count N] (default 20)" },
    { "cert",    1,  2, 0, PG_CTL_REDIS_FIRST, pg_ctl_cert,
      "cert status | renew NAME\n"
      "                       the staging certificates, as each portal-gated\n"
      "                       reports them: names, serial, expiry, next\n"
      "                       renewal, last error; exit 1 unless all are\n"
      "                       issued, current and reported [--json];\n"
      "                       renew: the controllers renew NAME now\n"
      "                       [--wait [SECONDS]]: and say how it went" },
    { "token",   1, -1, 0, PG_CTL_REDIS_OWN, pg_ctl_token_misplaced,
      "token keygen | public | issue | verify ...\n"
      "                       company tokens' keys, and tokens for tests\n"
      "                       and support; needs no Redis, stands first:\n"
      "                       see 'portal-gatectl token -h'" },
    { NULL, 0, 0, 0, 0, NULL, NULL }
};


static const struct option  pg_ctl_longopts[] = {
    { "redis",       required_argument, NULL, 'r' },
    { "prefix",      required_argument, NULL, 'p' },
    { "env",         required_argument, NULL, 'e' },
    { "actor",       required_argument, NULL, 'A' },
    { "reason",      required_argument, NULL, 'R' },
    { "requires",    required_argument, NULL, 'Q' },
    { "description", required_argument, NULL, 'D' },
    { "count",       required_argument, NULL, 'n' },
    { "json",        no_argument,       NULL, 'j' },
    { "edge",        required_argument, NULL, 'E' },
    { "wait",        optional_argument, NULL, 'W' },
    { "replicas",    required_argument, NULL, 'Y' },
    { "from-edge",   required_argument, NULL, 'F' },
    { "direct",      no_argument,       NULL, 'X' },
    { "version",     no_argument,       NULL, 'V' },
    { "help",        no_argument,       NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

/* the short options; ':' first: a missing value is told from a typo */
#define PG_CTL_SHORTOPTS  ":r:p:e:c:hV"

/* the commands whose operands are company ids: "--wait 5" is ambiguous */
static const char  *pg_ctl_id_cmds[] = {
    "allow", "deny", "unallow", "undeny", NULL
};


static int pg_ctl_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static int pg_ctl_option_error(const char *arg);


/* `-r URL token ...`: token takes no global option, and stands first. */
static int
pg_ctl_token_misplaced(pg_store_t *store, pg_ctl_opts_t *o,
    const char *cmd, int argc, char **argv)
{
    return pg_ctl_error(PG_CTL_USAGE, "token stands first and takes no "
                        "global option: portal-gatectl token %s ...; see "
                        "'portal-gatectl token -h'", argv[0]);
}


int
pg_ctl_error(int status, const char *fmt, ...)
{
    va_list  args;

    fprintf(stderr, "portal-gatectl: ");
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "\n");

    return status;
}


/* A usage error: one line, and where the whole usage is. Exit 2. */
static int
pg_ctl_usage_error(const char *fmt, ...)
{
    va_list  args;

    fprintf(stderr, "portal-gatectl: ");
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "; see 'portal-gatectl -h'\n");

    return PG_CTL_USAGE;
}


static void
pg_ctl_usage(FILE *out)
{
    const pg_ctl_cmd_t  *c;

    fprintf(out,
        "usage: portal-gatectl [options] COMMAND [ARGS]\n"
        "\n"
        "commands:\n");

    for (c = pg_ctl_cmds; c->name; c++) {
        fprintf(out, "  %s\n", c->usage);
    }

    fprintf(out,
        "\n"
        "options:\n"
        "  -r, --redis URL      redis://[user:pass@]host:port[/db],\n"
        "                       unix:///path or redis-sentinel://[user:pass@]\n"
        "                       host[:port][,host[:port]...][/db]#MASTER\n"
        "                       (default $PORTAL_GATE_REDIS,\n"
        "                       else -c's, else %s)\n"
        "  -p, --prefix P       the key prefix (default $PORTAL_GATE_PREFIX,\n"
        "                       else -c's, else %s)\n"
        "  -e, --env E          the environment (default $PORTAL_GATE_ENV,\n"
        "                       else production)\n"
        "      --actor NAME     who makes the change (default $SUDO_USER,\n"
        "                       else $USER, else the login name of the uid)\n"
        "      --reason TEXT    why, for the audit log (portal-gated.conf's\n"
        "                       `require_reason CMD...;` asks for one)\n"
        "      --edge URL       an edge (repeatable): http://host:port/path/\n"
        "                       or unix:/path.sock:/path/\n"
        "  -c FILE              portal-gated's config: its edges, and its\n"
        "                       redis and prefix unless given otherwise\n"
        "                       (default $PORTAL_GATE_CONF, else\n"
        "                       %s when it exists)\n"
        "      --wait[=SECONDS] after a change, wait until every edge has\n"
        "                       it (default %d s); exit 1 if one does not\n"
        "      --replicas NUM[,TIME]  a write waits until NUM replicas of\n"
        "                       the master have it, at most TIME (default\n"
        "                       -c's redis_replicas, else 1,1s; 0: no wait);\n"
        "                       exit 1 if fewer did (the change is made)\n"
        "      --direct         kill and release: the edges' APIs straight\n"
        "      --json           print JSON instead of text\n"
        "  -V, --version        the version\n"
        "  -h, --help           this help\n"
        "\n"
        "exit status: 0 done, 1 the operation failed, 2 usage error or\n"
        "invalid input (nothing was written)\n",
        PG_REDIS_URL_DEFAULT, PG_STORE_PREFIX_DEFAULT, PG_CTL_CONF_DEFAULT,
        PG_CTL_WAIT_S);
}


/*
 * The closest of names' keys to word, for "did you mean": the fewest
 * edits (insert, delete, replace, swap two neighbours), at most a third
 * of word's length (1 to 3); or the one name that word begins, from 3
 * characters. NULL when none is close. The result is names' (borrowed).
 */
const char *
pg_ctl_closest(const char *word, const json_t *names)
{
    size_t       i, j, n, m, best, d, len, prefixed;
    size_t       row[3][PG_NAME_MAX + 2];
    json_t      *v;
    const char  *name, *closest, *prefix;

    n = strlen(word);

    if (n > PG_NAME_MAX) {
        return NULL;
    }

    best = n / 3 < 1 ? 1 : n / 3 > 3 ? 3 : n / 3;
    best++;
    closest = NULL;
    prefix = NULL;
    prefixed = 0;

    json_object_foreach((json_t *) names, name, v) {
        m = strlen(name);

        if (m > PG_NAME_MAX || strcmp(name, word) == 0) {
            continue;
        }

        if (n >= 3 && strncmp(name, word, n) == 0) {
            prefix = name;
            prefixed++;
        }

        /* optimal string alignment: three rows of the table */
        for (j = 0; j <= m; j++) {
            row[1][j] = j;
        }

        for (i = 1; i <= n; i++) {
            row[2][0] = i;

            for (j = 1; j <= m; j++) {
                d = row[1][j - 1] + (word[i - 1] != name[j - 1]);
                d = row[1][j] + 1 < d ? row[1][j] + 1 : d;
                d = row[2][j - 1] + 1 < d ? row[2][j - 1] + 1 : d;

                if (i > 1 && j > 1 && word[i - 1] == name[j - 2]
                    && word[i - 2] == name[j - 1]
                    && row[0][j - 2] + 1 < d)
                {
                    d = row[0][j - 2] + 1;
                }

                row[2][j] = d;
            }

            memcpy(row[0], row[1], sizeof(row[0]));
            memcpy(row[1], row[2], sizeof(row[1]));
        }

        len = row[1][m];

        if (len < best) {
            best = len;
            closest = name;
        }
    }

    if (closest == NULL && prefixed == 1) {
        closest = prefix;
    }

    return closest;
}


/* The store's status as an exit status, with its message. */
int
pg_ctl_store_error(pg_store_t *store)
{
    int          recorded;
    json_t      *envs;
    const char  *near;

    switch (store->code) {

    case PG_STORE_EUNINIT:
        return pg_ctl_error(PG_CTL_FAILED,
                   "%s; run `portal-gatectl init` to create an empty store",
                   store->err.text);

    case PG_STORE_EINVALID:
        return pg_ctl_error(PG_CTL_USAGE, "%s", store->err.text);

    case PG_STORE_ENOENV:
        if (pg_store_envs(store, &envs, &recorded) != PG_OK) {
            return pg_ctl_error(PG_CTL_FAILED, "no environment \"%s\" in the "
                                "store (portal-gatectl env list)",
                                store->env);
        }

        near = pg_ctl_closest(store->env, envs);

        if (near) {
            pg_ctl_error(PG_CTL_FAILED, "no environment \"%s\" in the store; "
                         "did you mean \"%s\"? (portal-gatectl env list)",
                         store->env, near);
        } else {
            pg_ctl_error(PG_CTL_FAILED, "no environment \"%s\" in the store "
                         "(portal-gatectl env list; `portal-gatectl env add "
                         "%s` adds it)", store->env, store->env);
        }

        json_decref(envs);
        return PG_CTL_FAILED;

    default:
        return pg_ctl_error(PG_CTL_FAILED, "%s", store->err.text);
    }
}


int
pg_ctl_check_flag(const char *flag)
{
    if (!pg_valid_name(flag, strlen(flag))) {
        return pg_ctl_error(PG_CTL_USAGE, "invalid flag name \"%s\": "
                            "expected [a-z0-9_]{1,64}", flag);
    }

    return PG_CTL_OK;
}


/*
 * Free text that the store keeps (the actor, a reason, a description):
 * UTF-8, without control characters, at most PG_TEXT_MAX bytes. JSON
 * carries nothing else (the audit log dropped a reason in Latin-1), and a
 * newline or an escape sequence would let a reason forge audit lines on a
 * terminal. what names the text for the message, and hint ends it.
 */
int
pg_ctl_check_text(const char *what, const char *hint, const char *text)
{
    size_t                i, j, n, len;
    uint32_t              c;
    const unsigned char  *s = (const unsigned char *) text;

    len = strlen(text);

    if (len > PG_TEXT_MAX) {
        return pg_ctl_error(PG_CTL_USAGE, "invalid %s: %zu bytes, at most "
                            "%d%s", what, len, PG_TEXT_MAX, hint);
    }

    for (i = 0; i < len; i += n) {
        c = s[i];
        n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2
            : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;

        if (n == 0 || i + n > len) {
            break;
        }

        c &= 0xff >> (n + (n > 1));

        for (j = 1; j < n && (s[i + j] & 0xc0) == 0x80; j++) {
            c = (c << 6) | (s[i + j] & 0x3f);
        }

        /* a short sequence, an overlong form, a surrogate, past U+10FFFF */
        if (j < n || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000)
            || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
        {
            break;
        }

        if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
            return pg_ctl_error(PG_CTL_USAGE, "invalid %s: a control "
                                "character (U+%04X) at byte %zu%s", what,
                                (unsigned) c, i + 1, hint);
        }
    }

    if (i < len) {
        return pg_ctl_error(PG_CTL_USAGE, "invalid %s: not UTF-8 (byte %zu "
                            "is 0x%02x)%s", what, i + 1, s[i], hint);
    }

    return PG_CTL_OK;
}


/* Connect to the store's Redis (o->url) and set store up on it. */
int
pg_ctl_connect(pg_store_t *store, pg_ctl_opts_t *o, int timeout_ms,
    pg_error_t *err)
{
    redisContext  *redis;

    redis = pg_redis_connect(&o->url, timeout_ms, err);
    if (redis == NULL) {
        return PG_ERR;
    }

    pg_store_setup(store, redis, o->prefix, o->where);

    return PG_OK;
}


/* A read of an environment the store does not have: say so on stderr,
 * with the closest name; the read goes on (it finds nothing there). */
void
pg_ctl_warn_env(pg_store_t *store, const pg_ctl_opts_t *o)
{
    int          recorded;
    json_t      *envs;
    const char  *near;

    if (pg_store_envs(store, &envs, &recorded) != PG_OK) {
        return;
    }

    if (json_object_get(envs, o->env) == NULL) {
        near = pg_ctl_closest(o->env, envs);
        fprintf(stderr, "portal-gatectl: warning: no environment \"%s\" in "
                "the store%s%s%s (portal-gatectl env list)\n", o->env,
                near ? "; did you mean \"" : "", near ? near : "",
                near ? "\"?" : "");
    }

    json_decref(envs);
}


/* A text in single quotes for a shell, into buf: what to run later. */
void
pg_ctl_shell_quote(const char *s, char *buf, size_t size)
{
    size_t  n;

    n = 0;
    buf[n++] = '\'';

    for ( ; *s && n + 6 < size; s++) {
        if (*s == '\'') {
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else {
            buf[n++] = *s;
        }
    }

    buf[n++] = '\'';
    buf[n] = '\0';
}


/* One word of a command line to copy, appended to buf at *used: as it is
 * when a shell takes it so (a path, a URL), else in single quotes. */
static void
pg_ctl_shell_word(const char *s, char *buf, size_t size, size_t *used)
{
    char  quoted[PG_TEXT_MAX * 4 + 8];

    if (*used >= size) {
        return;
    }

    if (s[0] != '\0'
        && s[strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                       "0123456789_./:@%+=,-")] == '\0')
    {
        *used += snprintf(buf + *used, size - *used, " %s", s);
        return;
    }

    pg_ctl_shell_quote(s, quoted, sizeof(quoted));
    *used += snprintf(buf + *used, size - *used, " %s", quoted);
}


/*
 * kill F or off F failed because Redis does not answer (no connection, or
 * none that answers): the break-glass kill that needs no Redis, ready to
 * copy, one line on stderr. Nothing when the failure is another (Redis
 * answered with an error, the flag is missing) or the command another.
 */
void
pg_ctl_hint_direct(const pg_store_t *store, const pg_ctl_opts_t *o,
    const char *cmd, const char *flag)
{
    char    line[4096];
    size_t  i, used;

    if ((strcmp(cmd, "kill") != 0 && strcmp(cmd, "off") != 0) || o->direct
        || !pg_valid_name(flag, strlen(flag))
        || (store->redis != NULL && store->redis->err == 0))
    {
        return;
    }

    /* the edges as this command was given them: --edge, else -c's */
    used = snprintf(line, sizeof(line), "portal-gatectl");

    if (o->edges_given) {
        for (i = 0; i < o->nedges; i++) {
            used += snprintf(line + used, sizeof(line) - used, " --edge");
            pg_ctl_shell_word(o->edges[i].spec, line, sizeof(line), &used);
        }

    } else {
        used += snprintf(line + used, sizeof(line) - used, " -c");
        pg_ctl_shell_word(o->conf && o->nedges ? o->conf : "CONF", line,
                          sizeof(line), &used);
    }

    used += snprintf(line + used, sizeof(line) - used, " -e %s", o->env);

    if (o->actor_from && strcmp(o->actor_from, "--actor") == 0) {
        used += snprintf(line + used, sizeof(line) - used, " --actor");
        pg_ctl_shell_word(o->actor, line, sizeof(line), &used);
    }

    if (o->reason && o->reason[0]) {
        used += snprintf(line + used, sizeof(line) - used, " --reason");
        pg_ctl_shell_word(o->reason, line, sizeof(line), &used);
    }

    snprintf(line + used, used < sizeof(line) ? sizeof(line) - used : 0,
             " kill %s --direct", flag);

    fprintf(stderr, "portal-gatectl: the store is unreachable; to turn %s "
            "off on the edges anyway: %s%s\n", flag, line,
            o->nedges ? "" : " (CONF: portal-gated's config, which names "
                             "the edges)");
}


/* The length of text's longest start of at most max bytes that ends on
 * a whole UTF-8 character: what an edge's override keeps of a text. */
size_t
pg_ctl_utf8_cut(const char *text, size_t max)
{
    size_t  len;

    len = strlen(text);

    if (len <= max) {
        return len;
    }

    /* back over the continuation bytes of a character cut in two */
    for (len = max; len > 0 && ((unsigned char) text[len] & 0xc0) == 0x80;
         len--)
    {
        /* void */
    }

    return len;
}


/* Does this long option (name, without "--", may be cut short as getopt
 * takes it) or short one take a value in the next argument? */
static int
pg_ctl_takes_value(const char *arg)
{
    size_t                 n, i, found;
    const char            *eq;
    const struct option   *opt;

    if (arg[1] != '-') {
        /* -r URL, -rURL, -jr URL: the first that takes one ends it */
        for (i = 1; arg[i]; i++) {
            if (strchr("rpec", arg[i])) {
                return arg[i + 1] == '\0';
            }
        }

        return 0;
    }

    eq = strchr(arg, '=');
    n = eq ? (size_t) (eq - arg - 2) : strlen(arg + 2);

    if (eq) {
        return 0;
    }

    found = 0;

    for (opt = pg_ctl_longopts; opt->name; opt++) {
        if (strncmp(opt->name, arg + 2, n) == 0) {
            if (strlen(opt->name) == n) {
                return opt->has_arg == required_argument;
            }

            found = opt->has_arg == required_argument ? found + 1
                                                      : found + 100;
        }
    }

    return found == 1;
}


/* A long option getopt refused: one cut so short that it starts several
 * ("--re": --redis, --reason, --requires) is ambiguous, not unknown. */
static int
pg_ctl_option_error(const char *arg)
{
    char                  names[256];
    size_t                n, used, found;
    const struct option  *opt;

    n = strcspn(arg + 2, "=");
    used = 0;
    found = 0;
    names[0] = '\0';

    for (opt = pg_ctl_longopts; n > 0 && opt->name; opt++) {
        if (strncmp(opt->name, arg + 2, n) == 0 && used < sizeof(names)) {
            found++;
            used += snprintf(names + used, sizeof(names) - used, "%s--%s",
                             used ? ", " : "", opt->name);
        }
    }

    if (strncmp(arg, "--", 2) == 0 && found > 1) {
        return pg_ctl_usage_error("ambiguous option \"%.*s\": %s", (int) n + 2,
                                  arg, names);
    }

    return pg_ctl_usage_error("unknown option \"%s\"", arg);
}


/* A number of seconds as `--wait N` could mean it: digits, one '.'. */
static int
pg_ctl_is_seconds(const char *s)
{
    size_t  n;

    n = strspn(s, "0123456789");

    if (n == 0) {
        return 0;
    }

    if (s[n] == '.') {
        s += n + 1;
        n = strspn(s, "0123456789");
        return n > 0 && s[n] == '\0';
    }

    return s[n] == '\0';
}


/*
 * `--wait N`, the value in the next argument: getopt takes an optional
 * value only as `--wait=N`, so N would be read as an operand. Where the
 * command's operands tell that N cannot be one (kill F --wait 5), *wait_at
 * is the index of "--wait" and N is its value; where N could be either (an
 * id of allow, deny, unallow, undeny; the PCT of rollout F --wait 25),
 * that is said, and the call exits 2. Returns PG_CTL_OK otherwise, with
 * *wait_at -1 when there is nothing to do.
 */
static int
pg_ctl_wait_arg(int argc, char **argv, int *wait_at)
{
    int                   i, n, at, ops;
    const char           *cmd, *const *id;
    const pg_ctl_cmd_t   *c;

    *wait_at = -1;
    at = -1;
    cmd = NULL;
    ops = 0;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            n = argc - i - 1;
            if (cmd == NULL && n > 0) {
                cmd = argv[i + 1];
                n--;
            }
            ops += n;
            break;
        }

        if (strcmp(argv[i], "--wait") == 0) {
            if (i + 1 < argc && pg_ctl_is_seconds(argv[i + 1])) {
                at = i;
                i++;                /* not counted among the operands */
            }
            continue;
        }

        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            if (pg_ctl_takes_value(argv[i])) {
                i++;
            }
            continue;
        }

        if (cmd == NULL) {
            cmd = argv[i];
        } else {
            ops++;
        }
    }

    if (at < 0 || cmd == NULL) {
        return PG_CTL_OK;
    }

    for (c = pg_ctl_cmds; c->name; c++) {
        if (strcmp(c->name, cmd) == 0) {
            break;
        }
    }

    if (c->name == NULL) {
        return PG_CTL_OK;           /* main says the command is unknown */
    }

    for (id = pg_ctl_id_cmds; *id; id++) {
        if (strcmp(*id, cmd) == 0) {
            return pg_ctl_usage_error("\"--wait %s\" is ambiguous: %s takes "
                                      "company ids, which may be numbers; "
                                      "write --wait=%s for seconds",
                                      argv[at + 1], cmd, argv[at + 1]);
        }
    }

    /* seconds when the operands are all there without it, and it could
     * not be one of them (set takes KEY=VALUE: a number is none) */
    if (ops >= c->min_args
        && ((c->max_args >= 0 && ops + 1 > c->max_args)
            || strcmp(cmd, "set") == 0))
    {
        *wait_at = at;
        return PG_CTL_OK;
    }

    return pg_ctl_usage_error("\"--wait %s\" is ambiguous after %s: write "
                              "--wait=%s for seconds", argv[at + 1], cmd,
                              argv[at + 1]);
}


/* The audit actor when --actor does not give it: $SUDO_USER, $USER,
 * then the login name of the uid (root in a container has no $USER). */
static const char *
pg_ctl_actor(char *buf, size_t size, const char **from)
{
    const char     *s;
    struct passwd  *pw;

    s = getenv("SUDO_USER");
    *from = "actor in $SUDO_USER";

    if (s && s[0]) {
        return s;
    }

    s = getenv("USER");
    *from = "actor in $USER";

    if (s && s[0]) {
        return s;
    }

    pw = getpwuid(getuid());
    *from = "actor (the login name of the uid)";

    if (pw && pw->pw_name && pw->pw_name[0]) {
        snprintf(buf, size, "%s", pw->pw_name);
    } else {
        snprintf(buf, size, "uid %u", (unsigned) getuid());
    }

    return buf;
}


/*
 * -c FILE, or $PORTAL_GATE_CONF (set but empty: none), or the default when
 * it exists. A default that cannot be read is skipped with a warning, so
 * that an operator without the right to read it can still list flags.
 * Loaded with no environments by default, so that cf->nenvs 0 tells a file
 * without an environments line. PG_CTL_OK, or the exit status of an error.
 */
static int
pg_ctl_load_conf(pg_ctl_opts_t *o, pg_conf_t *conf)
{
    pg_error_t   err;
    const char  *env;

    if (o->conf == NULL) {
        env = getenv("PORTAL_GATE_CONF");

        if (env) {
            o->conf = env[0] ? env : NULL;

        } else if (access(PG_CTL_CONF_DEFAULT, F_OK) == 0) {
            if (access(PG_CTL_CONF_DEFAULT, R_OK) != 0) {
                fprintf(stderr, "portal-gatectl: warning: cannot read %s "
                        "(%s): its edges, redis and prefix are not used\n",
                        PG_CTL_CONF_DEFAULT, strerror(errno));
            } else {
                o->conf = PG_CTL_CONF_DEFAULT;
            }
        }
    }

    if (o->conf == NULL) {
        return PG_CTL_OK;
    }

    pg_conf_defaults(conf);
    conf->nenvs = 0;

    if (pg_conf_load(o->conf, conf, &err) != PG_OK) {
        return pg_ctl_error(PG_CTL_USAGE, "%s", err.text);
    }

    o->cf = conf;

    return PG_CTL_OK;
}


/* Does the config's `require_reason` name cmd? */
static int
pg_ctl_reason_required(const pg_ctl_opts_t *o, const char *cmd)
{
    size_t  i;

    for (i = 0; o->cf && i < o->cf->nrequire_reason; i++) {
        if (strcmp(o->cf->require_reason[i], cmd) == 0) {
            return 1;
        }
    }

    return 0;
}


static int
pg_ctl_main(int argc, char **argv)
{
    int                  ch, rc, nargs, init, is_kill, is_off, is_cert, writes;
    char                 actor[128], *end;
    size_t               len;
    pg_conf_t            conf;
    pg_edge_t            from;
    pg_error_t           err;
    pg_store_t           store;
    pg_ctl_opts_t        o;
    const char          *near;
    json_t              *names;
    const pg_ctl_cmd_t  *cmd;

    memset(&o, 0, sizeof(o));
    memset(&store, 0, sizeof(store));
    o.wait = -1;
    o.replicas = 1;
    o.replicas_ms = PG_CONF_REPLICAS_MS;

    o.redis_url = getenv("PORTAL_GATE_REDIS");
    o.prefix = getenv("PORTAL_GATE_PREFIX");
    o.env = getenv("PORTAL_GATE_ENV");
    o.count = 20;
    o.actor = NULL;

    opterr = 0;                         /* the errors are said here */

    while ((ch = getopt_long(argc, argv, PG_CTL_SHORTOPTS, pg_ctl_longopts,
                             NULL))
           != -1)
    {
        switch (ch) {
        /* given empty is a mistake, not "the default": -e "$ENV" with
         * $ENV unset must not write to production */
        case 'r':
        case 'e':
            if (optarg[0] == '\0') {
                return pg_ctl_usage_error("option %s is empty: give a%s, or "
                                          "leave the option out for the "
                                          "default", ch == 'r'
                                          ? "-r/--redis" : "-e/--env",
                                          ch == 'r' ? " Redis URL"
                                                    : "n environment");
            }

            if (ch == 'r') {
                o.redis_url = optarg;
            } else {
                o.env = optarg;
            }
            break;

        case 'p': o.prefix = optarg; break;
        case 'A': o.actor = optarg; o.actor_from = "--actor"; break;
        case 'R': o.reason = optarg; break;
        case 'Q': o.requires = optarg; break;
        case 'D': o.description = optarg; break;
        case 'j': o.json = 1; break;
        case 'c': o.conf = optarg; break;
        case 'F': o.from_edge = optarg; break;
        case 'X': o.direct = 1; break;

        case 'E':
            if (o.nedges == PG_EDGE_MAX) {
                return pg_ctl_error(PG_CTL_USAGE, "more than %d edges",
                                    PG_EDGE_MAX);
            }

            if (pg_edge_parse(optarg, &o.edges[o.nedges], &err) != PG_OK) {
                return pg_ctl_error(PG_CTL_USAGE, "%s", err.text);
            }

            o.nedges++;
            break;

        case 'W':
            o.wait = PG_CTL_WAIT_S;

            if (optarg) {
                errno = 0;
                o.wait = strtod(optarg, &end);

                if (*end != '\0' || errno || !(o.wait > 0 && o.wait <= 3600))
                {
                    return pg_ctl_error(PG_CTL_USAGE, "invalid --wait "
                                        "\"%s\": expected seconds, above 0 "
                                        "and at most 3600", optarg);
                }
            }
            break;

        case 'Y':
            if (pg_ctl_ha_option(&o, optarg) != PG_CTL_OK) {
                return PG_CTL_USAGE;
            }
            break;

        case 'n':
            errno = 0;
            o.count = strtoul(optarg, &end, 10);
            if (*end != '\0' || errno || o.count == 0 || optarg[0] == '-') {
                return pg_ctl_error(PG_CTL_USAGE, "invalid --count \"%s\": "
                                    "expected a number above 0", optarg);
            }
            break;

        case 'V':
            printf("portal-gatectl %s\n", PG_VERSION);
            return PG_CTL_OK;

        case 'h':
            pg_ctl_usage(stdout);
            return PG_CTL_OK;

        /* getopt names a long option only by its place in argv */
        case ':':
            if (strncmp(argv[optind - 1], "--", 2) == 0) {
                return pg_ctl_usage_error("option %s needs a value",
                                          argv[optind - 1]);
            }
            return pg_ctl_usage_error("option -%c needs a value", optopt);

        default:
            if (optopt && strncmp(argv[optind - 1], "--", 2) == 0
                && strchr(argv[optind - 1], '='))
            {
                return pg_ctl_usage_error("option %.*s takes no value",
                                          (int) (strchr(argv[optind - 1],
                                                        '=')
                                                 - argv[optind - 1]),
                                          argv[optind - 1]);
            }

            if (optopt == 0 || strncmp(argv[optind - 1], "--", 2) == 0) {
                return pg_ctl_option_error(argv[optind - 1]);
            }
            return pg_ctl_usage_error("unknown option -%c", optopt);
        }
    }

    if (optind >= argc) {
        return pg_ctl_usage_error("no command given");
    }

    for (cmd = pg_ctl_cmds; cmd->name; cmd++) {
        if (strcmp(cmd->name, argv[optind]) == 0) {
            break;
        }
    }

    if (cmd->name == NULL) {
        names = json_object();

        for (cmd = pg_ctl_cmds; names && cmd->name; cmd++) {
            json_object_set_new(names, cmd->name, json_true());
        }

        near = names ? pg_ctl_closest(argv[optind], names) : NULL;
        rc = near ? pg_ctl_usage_error("unknown command \"%s\" (did you "
                                       "mean \"%s\"?)", argv[optind], near)
                  : pg_ctl_usage_error("unknown command \"%s\"",
                                       argv[optind]);
        json_decref(names);
        return rc;
    }

    nargs = argc - optind - 1;

    if (nargs < cmd->min_args
        || (cmd->max_args >= 0 && nargs > cmd->max_args))
    {
        /* the synopsis: the usage up to two spaces or the line's end */
        for (len = 0; cmd->usage[len] != '\0' && cmd->usage[len] != '\n'
                      && strncmp(cmd->usage + len, "  ", 2) != 0; len++)
        {
            /* void */
        }

        return pg_ctl_usage_error("usage: portal-gatectl %.*s", (int) len,
                                  cmd->usage);
    }

    /* -c FILE: its edges, and its redis and prefix unless given */

    rc = pg_ctl_load_conf(&o, &conf);
    if (rc != PG_CTL_OK) {
        return rc;
    }

    o.edges_given = (o.nedges > 0);

    if (o.cf) {
        if (o.nedges == 0) {
            memcpy(o.edges, conf.edges, sizeof(conf.edges));
            o.nedges = conf.nedges;
        }

        if (o.redis_url == NULL || o.redis_url[0] == '\0') {
            o.redis_url = conf.redis_url;
        }

        if (o.prefix == NULL) {
            o.prefix = conf.prefix;
        }

        if (!o.replicas_given) {
            o.replicas = conf.redis_replicas;
            o.replicas_ms = conf.redis_replicas_ms;
        }
    }

    if (o.redis_url == NULL || o.redis_url[0] == '\0') {
        o.redis_url = PG_REDIS_URL_DEFAULT;
    }

    if (o.prefix == NULL) {
        o.prefix = PG_STORE_PREFIX_DEFAULT;
    }

    if (o.env == NULL || o.env[0] == '\0') {
        o.env = "production";
    }

    if (o.actor == NULL) {
        o.actor = pg_ctl_actor(actor, sizeof(actor), &o.actor_from);
    }

    if (!pg_valid_name(o.env, strlen(o.env))) {
        return pg_ctl_error(PG_CTL_USAGE, "invalid environment \"%s\": "
                            "expected [a-z0-9_]{1,64}", o.env);
    }

    if (o.prefix[0] == '\0' || strlen(o.prefix) > PG_STORE_PREFIX_MAX) {
        return pg_ctl_error(PG_CTL_USAGE, "invalid prefix \"%s\": 1 to %d "
                            "bytes", o.prefix, PG_STORE_PREFIX_MAX);
    }

    if ((o.requires || o.description) && strcmp(cmd->name, "create") != 0) {
        return pg_ctl_error(PG_CTL_USAGE, "--requires and --description "
                            "go with create");
    }

    /* env list reads: no --reason asked, an uninitialised store warned */
    writes = cmd->writes
             && !(strcmp(cmd->name, "env") == 0
                  && strcmp(argv[optind + 1], "list") == 0);

    /* what the store keeps as it is given */

    if ((writes || strcmp(cmd->name, "init") == 0)
        && pg_ctl_check_text(o.actor_from, o.actor_from[0] == '-' ? ""
                             : "; give --actor NAME", o.actor) != PG_CTL_OK)
    {
        return PG_CTL_USAGE;
    }

    if ((o.reason && pg_ctl_check_text("--reason", "", o.reason) != PG_CTL_OK)
        || (o.description
            && pg_ctl_check_text("--description", "", o.description)
               != PG_CTL_OK))
    {
        return PG_CTL_USAGE;
    }

    if ((writes || !cmd->writes) && pg_ctl_reason_required(&o, cmd->name)
        && (o.reason == NULL || o.reason[0] == '\0'))
    {
        return pg_ctl_error(PG_CTL_USAGE, "%s needs --reason TEXT: %s:%d "
                            "(require_reason) asks for one", cmd->name,
                            o.conf, o.cf->require_reason_line);
    }

    if (o.from_edge && strcmp(cmd->name, "init") != 0) {
        return pg_ctl_error(PG_CTL_USAGE, "--from-edge goes with init");
    }

    if (o.from_edge && pg_edge_parse(o.from_edge, &from, &err) != PG_OK) {
        return pg_ctl_error(PG_CTL_USAGE, "%s", err.text);
    }

    is_kill = strcmp(cmd->name, "kill") == 0;

    /* off is a kill too: made without edges for --wait, said after */
    is_off = strcmp(cmd->name, "off") == 0;

    if (o.direct && !is_kill && strcmp(cmd->name, "release") != 0) {
        return pg_ctl_error(PG_CTL_USAGE, "--direct goes with kill and "
                            "release");
    }

    if ((o.direct && is_kill) || strcmp(cmd->name, "release") == 0) {
        if (o.wait >= 0) {
            return pg_ctl_error(PG_CTL_USAGE, "--wait goes with a change "
                                "through the store: %s%s confirms each edge "
                                "itself", cmd->name,
                                is_kill ? " --direct" : "");
        }

        if (o.nedges == 0) {
            return pg_ctl_error(PG_CTL_USAGE, "%s%s needs the edges: give "
                                "--edge URL or -c FILE%s", cmd->name,
                                is_kill ? " --direct" : "",
                                is_kill ? " (or, with Redis and portal-gated "
                                          "up, drop --direct)" : "");
        }
    }

    /* cert renew --wait waits for the controller, not for the edges */
    is_cert = strcmp(cmd->name, "cert") == 0;

    if (o.wait >= 0 && !writes && !is_cert) {
        return pg_ctl_error(PG_CTL_USAGE, "--wait goes with a change");
    }

    /* a kill is made even then: it says afterwards that it cannot wait */
    if (o.wait >= 0 && o.nedges == 0 && !is_kill && !is_off && !is_cert) {
        return pg_ctl_error(PG_CTL_USAGE, "--wait needs the edges: give "
                            "--edge URL or -c FILE");
    }

    if (pg_redis_url_parse(o.redis_url, &o.url, &err) != PG_OK) {
        return pg_ctl_error(PG_CTL_USAGE, "%s", err.text);
    }

    pg_redis_url_format(&o.url, o.where, sizeof(o.where));

    /*
     * libcurl only for a command that asks the edges (loading it costs
     * 15-30 ms: pg_curl.h), and before anything is written, so that a
     * change with a --wait that could not ask is not made; but a kill is
     * made all the same, and its --wait says it cannot ask (pg_ctl_wait)
     */
    if ((o.from_edge || (o.nedges > 0
                         && ((o.wait >= 0 && !is_kill && !is_off)
                             || o.direct
                             || strcmp(cmd->name, "status") == 0
                             || strcmp(cmd->name, "release") == 0)))
        && pg_curl_load(&err) != PG_OK)
    {
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
    }

    o.cmd = cmd->name;
    o.flag = nargs > 0 && strcmp(cmd->name, "env") != 0
             && strcmp(cmd->name, "cert") != 0
             && strcmp(cmd->name, "audit") != 0 ? argv[optind + 1] : NULL;

    if (cmd->redis == PG_CTL_REDIS_OWN || (is_kill && o.direct)) {
        rc = cmd->run(&store, &o, cmd->name, nargs, &argv[optind + 1]);
        goto done;
    }

    /* a write follows a failover that is under way (pg_ctl_ha.c) */
    if ((writes ? pg_ctl_ha_connect(&store, &o, &err)
                : pg_ctl_connect(&store, &o, PG_CTL_TIMEOUT_MS, &err))
        != PG_OK)
    {
        rc = pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
        pg_ctl_hint_direct(&store, &o, cmd->name,
                           nargs > 0 ? argv[optind + 1] : "");
        goto done;
    }

    /* a write whose master goes away is resent where it is now */
    if (writes) {
        pg_ctl_ha_setup(&store, &o);
    }

    /* a write to an uninitialised store is refused before anything */

    if (strcmp(cmd->name, "init") != 0) {
        if (pg_store_initialised(&store, &init) != PG_OK) {
            rc = pg_ctl_store_error(&store);
            pg_ctl_hint_direct(&store, &o, cmd->name,
                           nargs > 0 ? argv[optind + 1] : "");
            goto done;
        }

        if (!init && !writes) {
            fprintf(stderr, "portal-gatectl: warning: the store at %s "
                    "(prefix \"%s\") is not initialised: Redis is new or "
                    "was flushed\n", o.where, o.prefix);

        } else if (!init) {
            rc = pg_ctl_error(PG_CTL_FAILED,
                     "the store at %s (prefix \"%s\") is not initialised: "
                     "Redis is new or was flushed. Run `portal-gatectl "
                     "init` to create an empty store", o.where, o.prefix);
            goto done;
        }
    }

    rc = cmd->run(&store, &o, cmd->name, nargs, &argv[optind + 1]);

done:

    if (store.redis) {
        redisFree(store.redis);
    }

    pg_curl_unload();

    return rc;
}


int
main(int argc, char **argv)
{
    int     rc, at, i, j;
    char  **args, wait[80];

    /* its own options, no Redis, no config: pg_ctl_token.c */
    if (argc >= 2 && strcmp(argv[1], "token") == 0) {
        return pg_ctl_token(argc - 1, argv + 1);
    }

    rc = pg_ctl_wait_arg(argc, argv, &at);
    if (rc != PG_CTL_OK) {
        return rc;
    }

    if (at < 0) {
        return pg_ctl_main(argc, argv);
    }

    /* "--wait" "5" becomes "--wait=5" */
    args = calloc(argc + 1, sizeof(char *));
    if (args == NULL) {
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    snprintf(wait, sizeof(wait), "--wait=%.64s", argv[at + 1]);

    for (i = 0, j = 0; i < argc; i++) {
        if (i == at) {
            args[j++] = wait;
            i++;
        } else {
            args[j++] = argv[i];
        }
    }

    rc = pg_ctl_main(j, args);
    free(args);

    return rc;
}
