/*
 * portal-gatectl: the operators' command line for portal-gate flags.
 *
 * Exit status: 0 done; 1 the operation failed (Redis unreachable, the
 * store not initialised, a flag that exists or is missing); 2 a usage error
 * or invalid input (nothing was written).
 *
 * This file: the options, the command table and main. The commands live in
 * pg_ctl_*.c (see pg_ctl.h).
 */

#include <errno.h>              /* errno */
#include <getopt.h>             /* getopt_long */
#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* printf, fprintf */
#include <stdlib.h>             /* getenv, strtod, strtoul */
#include <stdint.h>             /* uint32_t */
#include <string.h>             /* strcmp, strlen */
#include <curl/curl.h>          /* curl_global_init */
#include "pg_conf.h"            /* -c FILE: portal-gated's config */
#include "pg_ctl.h"             /* the commands, the options */
#include "pg_redis.h"           /* Redis URLs and connections */



typedef struct {
    const char   *name;
    int           min_args;     /* operands after the command */
    int           max_args;     /* -1: any number */
    int           writes;
    pg_ctl_run_pt  run;
    const char   *usage;
} pg_ctl_cmd_t;


static const pg_ctl_cmd_t  pg_ctl_cmds[] = {
    { "init",    0,  0, 0, pg_ctl_init,
      "init                 create an empty store in a new or flushed Redis\n"
      "                       [--from-edge URL]: rebuild it from an edge" },
    { "status",  0,  0, 0, pg_ctl_status,
      "status               the store's revision next to each edge's" },
    { "list",    0,  0, 0, pg_ctl_list,
      "list                 the environment's flags, a line each" },
    { "show",    1,  1, 0, pg_ctl_show,
      "show FLAG            one flag's JSON" },
    { "create",  1,  1, 1, pg_ctl_change,
      "create FLAG          a new flag: enabled, rollout 0, empty lists\n"
      "                       [--requires FLAG] [--description TEXT]" },
    { "on",      1,  1, 1, pg_ctl_change,
      "on FLAG              enable the flag" },
    { "off",     1,  1, 1, pg_ctl_change,
      "off FLAG             disable the flag for everyone" },
    { "kill",    1,  1, 1, pg_ctl_change,
      "kill FLAG            the same as off, for on-call: says what changed" },
    { "rollout", 2,  2, 1, pg_ctl_change,
      "rollout FLAG PCT     the share of companies, 0 to 100, step 0.01" },
    { "allow",   2, -1, 1, pg_ctl_change,
      "allow FLAG ID...     add companies to the allow list" },
    { "deny",    2, -1, 1, pg_ctl_change,
      "deny FLAG ID...      add companies to the deny list" },
    { "explain", 2,  2, 0, pg_ctl_explain,
      "explain FLAG ID      the decision for a company, as the edge makes it" },
    { "audit",   0,  1, 0, pg_ctl_audit,
      "audit [FLAG]         who changed what, when and why, newest first\n"
      "                       [--count N] (default 20)" },
    { NULL, 0, 0, 0, NULL, NULL }
};


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
        "  -r, --redis URL      redis://[user:pass@]host:port[/db] or\n"
        "                       unix:///path (default $PORTAL_GATE_REDIS,\n"
        "                       else %s)\n"
        "  -p, --prefix P       the key prefix (default $PORTAL_GATE_PREFIX,\n"
        "                       else %s)\n"
        "  -e, --env E          the environment (default $PORTAL_GATE_ENV,\n"
        "                       else production)\n"
        "      --actor NAME     who makes the change (default $SUDO_USER,\n"
        "                       else $USER)\n"
        "      --reason TEXT    why, for the audit log\n"
        "      --edge URL       an edge, for status and --wait (repeatable):\n"
        "                       http://host:port/path/ or\n"
        "                       unix:/path.sock:/path/\n"
        "  -c FILE              portal-gated's config: its edges, and its\n"
        "                       redis and prefix unless given otherwise\n"
        "      --wait[=SECONDS] after a change, wait until every edge has\n"
        "                       it (default %d s); exit 1 if one does not\n"
        "      --json           print JSON instead of text\n"
        "  -h, --help           this help\n"
        "\n"
        "exit status: 0 done, 1 the operation failed, 2 usage error or\n"
        "invalid input (nothing was written)\n",
        PG_REDIS_URL_DEFAULT, PG_STORE_PREFIX_DEFAULT, PG_CTL_WAIT_S);
}


/* The store's status as an exit status, with its message. */
int
pg_ctl_store_error(pg_store_t *store)
{
    switch (store->code) {

    case PG_STORE_EUNINIT:
        return pg_ctl_error(PG_CTL_FAILED,
                   "%s; run `portal-gatectl init` to create an empty store",
                   store->err.text);

    case PG_STORE_EINVALID:
        return pg_ctl_error(PG_CTL_USAGE, "%s", store->err.text);

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
static int
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


int
main(int argc, char **argv)
{
    int                  ch, rc, nargs, init;
    char                 where[300], *end;
    const char          *actor_from;
    pg_conf_t            conf;
    pg_edge_t            from;
    pg_error_t           err;
    pg_store_t           store;
    redisContext        *redis;
    pg_ctl_opts_t        o;
    pg_redis_url_t       url;
    const pg_ctl_cmd_t  *cmd;

    static const struct option  longopts[] = {
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
        { "from-edge",   required_argument, NULL, 'F' },
        { "help",        no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    memset(&o, 0, sizeof(o));
    o.wait = -1;

    o.redis_url = getenv("PORTAL_GATE_REDIS");
    o.prefix = getenv("PORTAL_GATE_PREFIX");
    o.env = getenv("PORTAL_GATE_ENV");
    o.actor = getenv("SUDO_USER");
    o.count = 20;
    actor_from = "actor in $SUDO_USER";

    if (o.actor == NULL || o.actor[0] == '\0') {
        o.actor = getenv("USER");
        actor_from = "actor in $USER";
    }

    while ((ch = getopt_long(argc, argv, "r:p:e:c:h", longopts, NULL)) != -1)
    {
        switch (ch) {
        case 'r': o.redis_url = optarg; break;
        case 'p': o.prefix = optarg; break;
        case 'e': o.env = optarg; break;
        case 'A': o.actor = optarg; actor_from = "--actor"; break;
        case 'R': o.reason = optarg; break;
        case 'Q': o.requires = optarg; break;
        case 'D': o.description = optarg; break;
        case 'j': o.json = 1; break;
        case 'c': o.conf = optarg; break;
        case 'F': o.from_edge = optarg; break;

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

        case 'n':
            errno = 0;
            o.count = strtoul(optarg, &end, 10);
            if (*end != '\0' || errno || o.count == 0 || optarg[0] == '-') {
                return pg_ctl_error(PG_CTL_USAGE, "invalid --count \"%s\": "
                                    "expected a number above 0", optarg);
            }
            break;

        case 'h':
            pg_ctl_usage(stdout);
            return PG_CTL_OK;

        default:
            pg_ctl_usage(stderr);
            return PG_CTL_USAGE;
        }
    }

    /* -c FILE: its edges, and its redis and prefix unless given */

    if (o.conf) {
        pg_conf_defaults(&conf);

        if (pg_conf_load(o.conf, &conf, &err) != PG_OK) {
            return pg_ctl_error(PG_CTL_USAGE, "%s", err.text);
        }

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

    if (o.actor == NULL || o.actor[0] == '\0') {
        o.actor = "unknown";
    }

    if (optind >= argc) {
        pg_ctl_usage(stderr);
        return PG_CTL_USAGE;
    }

    for (cmd = pg_ctl_cmds; cmd->name; cmd++) {
        if (strcmp(cmd->name, argv[optind]) == 0) {
            break;
        }
    }

    if (cmd->name == NULL) {
        return pg_ctl_error(PG_CTL_USAGE, "unknown command \"%s\"; "
                            "`portal-gatectl -h` lists them", argv[optind]);
    }

    nargs = argc - optind - 1;

    if (nargs < cmd->min_args
        || (cmd->max_args >= 0 && nargs > cmd->max_args))
    {
        return pg_ctl_error(PG_CTL_USAGE, "usage: portal-gatectl %s",
                            cmd->usage);
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

    /* what the store keeps as it is given */

    if ((cmd->writes || strcmp(cmd->name, "init") == 0)
        && pg_ctl_check_text(actor_from, actor_from[0] == '-' ? ""
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

    if (o.from_edge && strcmp(cmd->name, "init") != 0) {
        return pg_ctl_error(PG_CTL_USAGE, "--from-edge goes with init");
    }

    if (o.from_edge && pg_edge_parse(o.from_edge, &from, &err) != PG_OK) {
        return pg_ctl_error(PG_CTL_USAGE, "%s", err.text);
    }

    if (o.wait >= 0 && !cmd->writes) {
        return pg_ctl_error(PG_CTL_USAGE, "--wait goes with a change");
    }

    if (o.wait >= 0 && o.nedges == 0) {
        return pg_ctl_error(PG_CTL_USAGE, "--wait needs the edges: give "
                            "--edge URL or -c FILE");
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);

    if (pg_redis_url_parse(o.redis_url, &url, &err) != PG_OK) {
        return pg_ctl_error(PG_CTL_USAGE, "%s", err.text);
    }

    pg_redis_url_format(&url, where, sizeof(where));

    redis = pg_redis_connect(&url, PG_CTL_TIMEOUT_MS, &err);
    if (redis == NULL) {
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
    }

    pg_store_setup(&store, redis, o.prefix, where);

    /* a write to an uninitialised store is refused before anything */

    if (strcmp(cmd->name, "init") != 0 && strcmp(cmd->name, "status") != 0) {
        if (pg_store_initialised(&store, &init) != PG_OK) {
            rc = pg_ctl_store_error(&store);
            redisFree(redis);
            return rc;
        }

        if (!init && !cmd->writes) {
            fprintf(stderr, "portal-gatectl: warning: the store at %s "
                    "(prefix \"%s\") is not initialised: Redis is new or "
                    "was flushed\n", where, o.prefix);

        } else if (!init) {
            redisFree(redis);
            return pg_ctl_error(PG_CTL_FAILED,
                       "the store at %s (prefix \"%s\") is not initialised: "
                       "Redis is new or was flushed. Run `portal-gatectl "
                       "init` to create an empty store", where, o.prefix);
        }
    }

    rc = cmd->run(&store, &o, cmd->name, nargs, &argv[optind + 1]);

    redisFree(redis);
    curl_global_cleanup();

    return rc;
}
