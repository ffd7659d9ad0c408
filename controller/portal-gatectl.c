/*
 * portal-gatectl: the operators' command line for portal-gate flags.
 *
 * Exit status: 0 done; 1 the operation failed (Redis unreachable, the
 * store not initialised, a flag that exists or is missing); 2 a usage error
 * or invalid input (nothing was written).
 */

#include <errno.h>              /* errno */
#include <getopt.h>             /* getopt_long */
#include <math.h>               /* floor */
#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* printf, fprintf */
#include <stdlib.h>             /* getenv, strtod, strtoul, exit */
#include <string.h>             /* strcmp, strlen */
#include <time.h>               /* clock_gettime, nanosleep */
#include <curl/curl.h>          /* curl_global_init */
#include "pg_conf.h"            /* -c FILE: portal-gated's config */
#include "pg_ctl_store.h"       /* the flag store in Redis */
#include "pg_edge.h"            /* the edges' API */
#include "pg_redis.h"           /* Redis URLs and connections */


#define PG_CTL_OK        0
#define PG_CTL_FAILED    1
#define PG_CTL_USAGE     2

#define PG_CTL_TIMEOUT_MS  5000
#define PG_CTL_EDGE_MS     2000     /* one request to an edge */
#define PG_CTL_WAIT_S      10       /* --wait without SECONDS */


typedef struct {
    const char   *redis_url;
    const char   *prefix;
    const char   *env;
    const char   *actor;
    const char   *reason;
    const char   *requires;
    const char   *description;
    int           json;
    size_t        count;
    double        wait;             /* seconds; < 0: no --wait */
    const char   *from_edge;
    const char   *conf;
    pg_edge_t     edges[PG_EDGE_MAX];
    size_t        nedges;
} pg_ctl_opts_t;


typedef struct {
    const char   *name;
    int           min_args;     /* operands after the command */
    int           max_args;     /* -1: any number */
    int           writes;
    int         (*run)(pg_store_t *store, pg_ctl_opts_t *o,
                       const char *cmd, int argc, char **argv);
    const char   *usage;
} pg_ctl_cmd_t;


/* What an edit needs: the command's operands. */
typedef struct {
    const char   *cmd;
    char        **args;
    int           nargs;
    long          bp;           /* rollout in basis points */
    pg_ctl_opts_t *o;
} pg_ctl_edit_t;


static int pg_ctl_init(pg_store_t *store, pg_ctl_opts_t *o,
    const char *cmd, int argc, char **argv);
static int pg_ctl_list(pg_store_t *store, pg_ctl_opts_t *o,
    const char *cmd, int argc, char **argv);
static int pg_ctl_show(pg_store_t *store, pg_ctl_opts_t *o,
    const char *cmd, int argc, char **argv);
static json_t *pg_ctl_salvage(pg_ctl_edit_t *e, const json_t *before,
    pg_error_t *why, pg_error_t *err);
static int pg_ctl_change(pg_store_t *store, pg_ctl_opts_t *o,
    const char *cmd, int argc, char **argv);
static int pg_ctl_explain(pg_store_t *store, pg_ctl_opts_t *o,
    const char *cmd, int argc, char **argv);
static int pg_ctl_audit(pg_store_t *store, pg_ctl_opts_t *o,
    const char *cmd, int argc, char **argv);
static int pg_ctl_status(pg_store_t *store, pg_ctl_opts_t *o,
    const char *cmd, int argc, char **argv);
static int pg_ctl_wait(pg_store_t *store, pg_ctl_opts_t *o,
    int64_t revision);


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


static int
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
static int
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


static int
pg_ctl_check_flag(const char *flag)
{
    if (!pg_valid_name(flag, strlen(flag))) {
        return pg_ctl_error(PG_CTL_USAGE, "invalid flag name \"%s\": "
                            "expected [a-z0-9_]{1,64}", flag);
    }

    return PG_CTL_OK;
}


static int
pg_ctl_init(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    int             created, rc;
    long            status;
    size_t          size;
    json_t         *snap;
    pg_edge_t       edge;
    pg_error_t      err;
    unsigned char  *blob;

    if (o->from_edge) {
        if (pg_edge_parse(o->from_edge, &edge, &err) != PG_OK) {
            return pg_ctl_error(PG_CTL_USAGE, "%s", err.text);
        }

        if (pg_edge_request(&edge, "GET", "snapshot", NULL, 0,
                            10 * PG_CTL_EDGE_MS, &status, &snap, &err)
            != PG_OK)
        {
            return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
        }

        if (status != 200 || snap == NULL) {
            json_decref(snap);
            return pg_ctl_error(PG_CTL_FAILED, "edge %s: GET snapshot "
                                "answered %ld", edge.spec, status);
        }

        /* the edge's snapshot must be one the edges accept */
        rc = pg_snap_compile_json(snap, &blob, &size, &err);

        if (rc != PG_OK) {
            json_decref(snap);
            return pg_ctl_error(PG_CTL_FAILED, "edge %s: its snapshot is "
                                "invalid: %s", edge.spec, err.text);
        }

        free(blob);

        if (json_integer_value(json_object_get(snap, "revision")) == 0) {
            json_decref(snap);
            return pg_ctl_error(PG_CTL_FAILED, "edge %s has no snapshot "
                                "(revision 0): nothing to rebuild from; "
                                "`portal-gatectl init` makes an empty store",
                                edge.spec);
        }

        rc = pg_store_restore(store, snap, o->actor, edge.spec, &created);

        if (rc != PG_OK) {
            json_decref(snap);
            return pg_ctl_store_error(store);
        }

        if (!created) {
            json_decref(snap);
            return pg_ctl_error(PG_CTL_FAILED, "the store at %s (prefix "
                                "\"%s\") holds changes already: "
                                "--from-edge only rebuilds a lost store",
                                store->where, store->prefix);
        }

        printf("rebuilt the store at %s (prefix \"%s\") from %s: revision "
               "%" JSON_INTEGER_FORMAT "\n", store->where, store->prefix,
               edge.spec,
               json_integer_value(json_object_get(snap, "revision")));
        json_decref(snap);

        return PG_CTL_OK;
    }

    if (pg_store_init(store, o->actor, &created) != PG_OK) {
        return pg_ctl_store_error(store);
    }

    if (!created) {
        return pg_ctl_error(PG_CTL_FAILED, "the store at %s (prefix \"%s\") "
                            "is initialised already", store->where,
                            store->prefix);
    }

    printf("initialised an empty store at %s (prefix \"%s\")\n",
           store->where, store->prefix);

    return PG_CTL_OK;
}


/* Read a flag's fields for display, with DESIGN.md's defaults. */
static void
pg_ctl_fields(const json_t *f, int *enabled, double *rollout,
    size_t *allow, size_t *deny, const char **requires)
{
    json_t  *v;

    v = json_object_get(f, "enabled");
    *enabled = v ? json_is_true(v) : 1;

    v = json_object_get(f, "rollout");
    *rollout = v ? json_number_value(v) : 0;

    *allow = json_array_size(json_object_get(f, "allow"));
    *deny = json_array_size(json_object_get(f, "deny"));
    *requires = json_string_value(json_object_get(f, "requires"));
}


static int
pg_ctl_strcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}


static int
pg_ctl_list(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    int           enabled;
    double        rollout;
    size_t        allow, deny, n, i;
    json_t       *flags, *f;
    const char   *name, *requires, **names;
    int64_t       revision;

    if (pg_store_env_flags(store, o->env, &flags) != PG_OK
        || pg_store_revision(store, &revision) != PG_OK)
    {
        return pg_ctl_store_error(store);
    }

    if (o->json) {
        json_dumpf(flags, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("\n");
        json_decref(flags);
        return PG_CTL_OK;
    }

    printf("%-40s %-7s %8s %7s %7s  %s\n", "FLAG", "STATE", "ROLLOUT",
           "ALLOW", "DENY", "REQUIRES");

    /* in name order: a hash has none */
    names = malloc(json_object_size(flags) * sizeof(char *) + 1);
    if (names == NULL) {
        json_decref(flags);
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    n = 0;

    json_object_foreach(flags, name, f) {
        names[n++] = name;
    }

    qsort(names, n, sizeof(char *), pg_ctl_strcmp);

    for (i = 0; i < n; i++) {
        f = json_object_get(flags, names[i]);
        pg_ctl_fields(f, &enabled, &rollout, &allow, &deny, &requires);

        printf("%-40s %-7s %7.2f%% %7zu %7zu  %s\n", names[i],
               enabled ? "on" : "killed", rollout, allow, deny,
               requires ? requires : "-");
    }

    free(names);

    printf("(%zu flags in %s, store revision %lld)\n", json_object_size(flags),
           o->env, (long long) revision);

    json_decref(flags);

    return PG_CTL_OK;
}


static int
pg_ctl_show(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    json_t  *flags, *f;

    if (pg_ctl_check_flag(argv[0]) != PG_CTL_OK) {
        return PG_CTL_USAGE;
    }

    if (pg_store_env_flags(store, o->env, &flags) != PG_OK) {
        return pg_ctl_store_error(store);
    }

    f = json_object_get(flags, argv[0]);

    if (f == NULL) {
        json_decref(flags);
        return pg_ctl_error(PG_CTL_FAILED, "no flag \"%s\" in %s", argv[0],
                            o->env);
    }

    json_dumpf(f, stdout, JSON_INDENT(2));
    printf("\n");
    json_decref(flags);

    return PG_CTL_OK;
}


/* The edit of every writing command; see pg_store_edit_pt. */
/*
 * off or kill of a flag whose value in Redis is not valid: the flag,
 * disabled, with each of its fields that is valid on its own; the rest is
 * dropped and named on stderr (the audit entry keeps the value as it was).
 */
static json_t *
pg_ctl_salvage(pg_ctl_edit_t *e, const json_t *before, pg_error_t *why,
    pg_error_t *err)
{
    char         dropped[512];
    size_t       n;
    json_t      *after, *value;
    pg_error_t   check;
    const char  *key;

    after = json_pack("{s:b}", "enabled", 0);
    if (after == NULL) {
        snprintf(err->text, sizeof(err->text), "out of memory");
        return NULL;
    }

    n = 0;
    dropped[0] = '\0';

    json_object_foreach((json_t *) before, key, value) {
        if (strcmp(key, "enabled") == 0
            || strcmp(key, PG_STORE_UNREADABLE) == 0)
        {
            continue;
        }

        json_object_set(after, key, value);

        /*
         * requires is dropped too: it may name a flag that is gone, and
         * then the daemon would keep the last good, enabled, version
         */
        if (strcmp(key, "requires") == 0
            || pg_flag_check_json(e->args[0], after, &check) != PG_OK)
        {
            json_object_del(after, key);

            if (n < sizeof(dropped)) {
                n += snprintf(dropped + n, sizeof(dropped) - n, "%s\"%s\"",
                              n ? ", " : "", key);
            }
        }
    }

    fprintf(stderr, "portal-gatectl: warning: flag \"%s\" in %s held an "
            "invalid value (%s); turned off, dropping %s\n", e->args[0],
            e->o->env, why->text, n ? dropped : "nothing");

    return after;
}


static json_t *
pg_ctl_edit(const json_t *before, void *data, int *code, pg_error_t *err)
{
    int             i, j, rc;
    json_t         *after, *list, *id;
    pg_error_t      why;
    const char     *field, *unreadable;
    pg_ctl_edit_t  *e = data;

    if (strcmp(e->cmd, "create") == 0) {
        if (before) {
            snprintf(err->text, sizeof(err->text),
                     "flag \"%s\" exists already in %s", e->args[0],
                     e->o->env);
            return NULL;
        }

        after = json_pack("{s:b,s:i,s:[],s:[]}", "enabled", 1, "rollout", 0,
                          "allow", "deny");

        if (after && e->o->requires
            && json_object_set_new(after, "requires",
                                   json_string(e->o->requires)) != 0)
        {
            json_decref(after);
            after = NULL;
        }

        if (after == NULL) {
            snprintf(err->text, sizeof(err->text), "out of memory");
            return NULL;
        }

        if (after && e->o->description) {
            if (json_object_set_new(after, "description",
                                    json_string(e->o->description)) != 0)
            {
                json_decref(after);
                *code = PG_STORE_EINVALID;
                snprintf(err->text, sizeof(err->text),
                         "the description is not valid UTF-8");
                return NULL;
            }
        }

        return after;
    }

    if (before == NULL) {
        snprintf(err->text, sizeof(err->text),
                 "no flag \"%s\" in %s: `portal-gatectl -e %s create %s` "
                 "makes it", e->args[0], e->o->env, e->o->env, e->args[0]);
        return NULL;
    }

    unreadable = json_string_value(json_object_get(before,
                                                   PG_STORE_UNREADABLE));
    if (unreadable) {
        snprintf(why.text, sizeof(why.text), "%s", unreadable);
    }

    if (unreadable || pg_flag_check_json(e->args[0], before, &why) != PG_OK) {
        /* on-call can always turn a flag off, whatever Redis holds */
        if (strcmp(e->cmd, "off") == 0 || strcmp(e->cmd, "kill") == 0) {
            return pg_ctl_salvage(e, before, &why, err);
        }

        *code = PG_STORE_EFAILED;
        snprintf(err->text, sizeof(err->text), "flag \"%s\" in %s holds an "
                 "invalid value in Redis (%.120s): fix it, or `kill %s` to "
                 "turn it off", e->args[0], e->o->env, why.text, e->args[0]);
        return NULL;
    }

    after = json_deep_copy(before);
    if (after == NULL) {
        snprintf(err->text, sizeof(err->text), "out of memory");
        return NULL;
    }

    rc = 0;

    if (strcmp(e->cmd, "on") == 0) {
        rc = json_object_set_new(after, "enabled", json_true());

    } else if (strcmp(e->cmd, "off") == 0 || strcmp(e->cmd, "kill") == 0) {
        rc = json_object_set_new(after, "enabled", json_false());

    } else if (strcmp(e->cmd, "rollout") == 0) {
        /* whole percents as integers, others at their 0.01 step */
        rc = json_object_set_new(after, "rollout",
                                 e->bp % 100 == 0
                                 ? json_integer(e->bp / 100)
                                 : json_real(e->bp / 100.0));

    } else {
        /* allow, deny: add the ids that are not there yet */
        field = e->cmd;
        list = json_object_get(after, field);

        if (!json_is_array(list)) {
            list = json_array();
            rc = json_object_set_new(after, field, list);
        }

        for (i = 1; i < e->nargs; i++) {
            for (j = 0; j < (int) json_array_size(list); j++) {
                id = json_array_get(list, j);

                if (json_is_string(id)
                    && strcmp(json_string_value(id), e->args[i]) == 0)
                {
                    break;
                }
            }

            if (rc == 0 && j == (int) json_array_size(list)) {
                rc = json_array_append_new(list, json_string(e->args[i]));
            }
        }
    }

    if (rc != 0) {
        json_decref(after);
        snprintf(err->text, sizeof(err->text), "out of memory");
        return NULL;
    }

    return after;
}


/*
 * What changed between two versions of a flag, for the terminal: "enabled
 * true -> false, rollout 0 -> 25". Lists print their sizes; the version
 * and the updated_* stamps are left out. before may be NULL (a create).
 */
static void
pg_ctl_diff(const json_t *before, const json_t *after, char *buf,
    size_t size)
{
    int          n;
    char        *b, *a;
    size_t       used;
    json_t      *bv, *av, *keys;
    const char  *key;

    buf[0] = '\0';
    used = 0;

    if (after == NULL) {
        snprintf(buf, size, "-");
        return;
    }

    /* every key of either version, in a stable order */
    keys = json_object();

    if (keys == NULL) {
        return;
    }

    json_object_update(keys, (json_t *) after);   /* only read */

    if (before) {
        json_object_update_missing(keys, (json_t *) before);
    }

    json_object_foreach(keys, key, av) {
        if (strcmp(key, "version") == 0 || strcmp(key, "updated_at") == 0
            || strcmp(key, "updated_by") == 0)
        {
            continue;
        }

        bv = before ? json_object_get(before, key) : NULL;
        av = json_object_get(after, key);

        if (before && bv && av && json_equal(bv, av)) {
            continue;
        }

        if (json_is_array(av) || json_is_array(bv)) {
            if (before == NULL && json_array_size(av) == 0) {
                continue;
            }

            n = snprintf(buf + used, size - used, "%s%s %zu -> %zu",
                         used ? ", " : "", key, json_array_size(bv),
                         json_array_size(av));

        } else {
            b = bv ? json_dumps(bv, JSON_ENCODE_ANY) : NULL;
            a = av ? json_dumps(av, JSON_ENCODE_ANY) : NULL;

            if (before == NULL) {
                n = snprintf(buf + used, size - used, "%s%s %s",
                             used ? ", " : "", key, a ? a : "-");
            } else {
                n = snprintf(buf + used, size - used, "%s%s %s -> %s",
                             used ? ", " : "", key, b ? b : "-",
                             a ? a : "-");
            }

            free(b);
            free(a);
        }

        if (n < 0 || (size_t) n >= size - used) {
            break;
        }

        used += n;
    }

    json_decref(keys);

    if (used == 0) {
        snprintf(buf, size, "no change");
    }
}


/* One line on what changed, for the terminal. */
static void
pg_ctl_print_change(pg_ctl_opts_t *o, const char *cmd, const char *flag,
    pg_store_change_t *ch)
{
    char  diff[1024];

    if (o->json) {
        json_t  *j;

        j = json_pack("{s:s,s:s,s:s,s:O?,s:O,s:I,s:b}", "env", o->env,
                      "flag", flag, "action", cmd, "before", ch->before,
                      "after", ch->after, "revision",
                      (json_int_t) ch->revision, "changed", !ch->unchanged);
        if (j) {
            json_dumpf(j, stdout, JSON_COMPACT);
            printf("\n");
            json_decref(j);
        }

        return;
    }

    if (ch->unchanged) {
        if (strcmp(cmd, "off") == 0 || strcmp(cmd, "kill") == 0) {
            printf("%s is off already in %s: nothing changed (store "
                   "revision %lld)\n", flag, o->env,
                   (long long) ch->revision);
        } else {
            printf("%s in %s is so already: nothing changed (store revision "
                   "%lld)\n", flag, o->env, (long long) ch->revision);
        }

        return;
    }

    pg_ctl_diff(ch->before, ch->after, diff, sizeof(diff));

    if (ch->before == NULL) {
        printf("created %s in %s: %s (revision %lld)\n", flag, o->env, diff,
               (long long) ch->revision);
        return;
    }

    printf("%s%s in %s: %s (revision %lld)\n",
           strcmp(cmd, "kill") == 0 ? "KILLED " : "", flag, o->env, diff,
           (long long) ch->revision);
}


static int
pg_ctl_change(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    int                 i;
    long                bp;
    double              pct;
    size_t              len;
    pg_ctl_edit_t       edit;
    pg_store_change_t   change;

    /* check every operand before anything is read or written */

    if (pg_ctl_check_flag(argv[0]) != PG_CTL_OK) {
        return PG_CTL_USAGE;
    }

    edit.bp = 0;

    if (strcmp(cmd, "rollout") == 0) {
        /* digits, an optional fraction, an optional "%": nothing else */
        len = strspn(argv[1], "0123456789");
        len += (argv[1][len] == '.')
               ? 1 + strspn(argv[1] + len + 1, "0123456789") : 0;

        pct = (len > 0 && argv[1][0] != '.') ? strtod(argv[1], NULL) : -1;
        bp = (long) floor(pct * 100 + 0.5);

        if ((argv[1][len] != '\0' && strcmp(argv[1] + len, "%") != 0)
            || !(pct >= 0 && pct <= 100))
        {
            return pg_ctl_error(PG_CTL_USAGE, "invalid rollout \"%s\": "
                                "expected a percent from 0 to 100",
                                argv[1]);
        }

        if (fabs(pct * 100 - bp) > 1e-4) {
            return pg_ctl_error(PG_CTL_USAGE, "invalid rollout \"%s\": "
                                "the step is 0.01", argv[1]);
        }

        edit.bp = bp;
    }

    if (strcmp(cmd, "allow") == 0 || strcmp(cmd, "deny") == 0) {
        for (i = 1; i < argc; i++) {
            if (!pg_valid_company(argv[i], strlen(argv[i]))) {
                return pg_ctl_error(PG_CTL_USAGE, "invalid company id "
                                    "\"%s\": expected [A-Za-z0-9_.-]{1,64}",
                                    argv[i]);
            }
        }
    }

    if (o->requires && pg_ctl_check_flag(o->requires) != PG_CTL_OK) {
        return PG_CTL_USAGE;
    }

    edit.cmd = cmd;
    edit.args = argv;
    edit.nargs = argc;
    edit.o = o;

    /* only create can set requires: the others need no env-wide check */

    if (pg_store_write(store, o->env, argv[0], cmd, o->actor, o->reason,
                       strcmp(cmd, "create") == 0, pg_ctl_edit, &edit,
                       &change)
        != PG_OK)
    {
        return pg_ctl_store_error(store);
    }

    pg_ctl_print_change(o, cmd, argv[0], &change);
    pg_store_change_free(&change);

    if (o->wait >= 0) {
        fflush(stdout);
        return pg_ctl_wait(store, o, change.revision);
    }

    return PG_CTL_OK;
}


static int
pg_ctl_explain(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    int             bp, initialised;
    double          rollout;
    size_t          size;
    json_t         *flags, *snap, *f;
    const char     *env;
    int64_t         revision;
    pg_snap_t       view;
    pg_error_t      err;
    pg_result_t     res;
    unsigned char  *blob;

    if (pg_ctl_check_flag(argv[0]) != PG_CTL_OK) {
        return PG_CTL_USAGE;
    }

    env = o->env;

    if (pg_store_snapshot(store, &env, 1, NULL, NULL, &initialised, &snap)
        != PG_OK)
    {
        return pg_ctl_store_error(store);
    }

    revision = json_integer_value(json_object_get(snap, "revision"));
    flags = json_object_get(json_object_get(snap, "environments"), env);

    if (pg_snap_compile_json(snap, &blob, &size, &err) != PG_OK) {
        json_decref(snap);
        return pg_ctl_error(PG_CTL_FAILED, "the flags of %s do not compile: "
                            "%s", o->env, err.text);
    }

    /* the same core, the same answer as the edge */

    (void) pg_snap_open(&view, blob, size, &err);
    pg_eval(&view, o->env, strlen(o->env), argv[0], strlen(argv[0]),
            argv[1], strlen(argv[1]), &res);

    f = json_object_get(flags, argv[0]);

    if (o->json) {
        json_t  *j;

        j = json_pack("{s:s,s:s,s:o,s:I,s:s,s:s,s:s}",
                      "decision", res.on ? "on" : "off",
                      "reason", pg_reason_name(res.reason),
                      "bucket", res.bucket >= 0 ? json_integer(res.bucket)
                                                : json_null(),
                      "revision", (json_int_t) revision,
                      "env", o->env, "flag", argv[0], "company", argv[1]);
        if (j) {
            json_dumpf(j, stdout, JSON_COMPACT);
            printf("\n");
            json_decref(j);
        }

    } else {
        printf("%s for company %s in %s: %s (%s)\n", argv[0], argv[1],
               o->env, res.on ? "on" : "off", pg_reason_name(res.reason));

        if (!pg_valid_company(argv[1], strlen(argv[1]))) {
            printf("  \"%s\" is not a valid company id: no company\n",
                   argv[1]);

        } else if (res.bucket >= 0 && f) {
            rollout = json_number_value(json_object_get(f, "rollout"));
            bp = (int) floor(rollout * 100 + 0.5);

            printf("  bucket %d of 10000; rollout %.2f%% takes buckets "
                   "below %d\n", res.bucket, rollout, bp);
        }

        printf("  store revision %lld\n", (long long) revision);
    }

    free(blob);
    json_decref(snap);

    return PG_CTL_OK;
}


/* An audit entry's field for the terminal: "-" when empty. */
static const char *
pg_ctl_field(const json_t *entry, const char *name)
{
    const char  *s;

    s = json_string_value(json_object_get(entry, name));

    return (s && *s) ? s : "-";
}


static int
pg_ctl_audit(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    char         diff[1024];
    size_t       i;
    json_t      *entries, *e, *before, *after;
    const char  *flag;

    flag = argc ? argv[0] : NULL;

    if (flag && pg_ctl_check_flag(flag) != PG_CTL_OK) {
        return PG_CTL_USAGE;
    }

    if (pg_store_audit(store, flag, o->count, &entries) != PG_OK) {
        return pg_ctl_store_error(store);
    }

    if (o->json) {
        json_dumpf(entries, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(entries);
        return PG_CTL_OK;
    }

    json_array_foreach(entries, i, e) {
        printf("%s  rev %-6s %-12s %-12s %-32s %-8s",
               pg_ctl_field(e, "ts"), pg_ctl_field(e, "revision"),
               pg_ctl_field(e, "actor"), pg_ctl_field(e, "env"),
               pg_ctl_field(e, "flag"), pg_ctl_field(e, "action"));
        if (strcmp(pg_ctl_field(e, "action"), "revision") == 0) {
            /* portal-gated raised the store's revision above an edge's */
            snprintf(diff, sizeof(diff), "revision %s -> %s",
                     pg_ctl_field(e, "before"), pg_ctl_field(e, "after"));

        } else {
            before = json_loads(pg_ctl_field(e, "before"), 0, NULL);
            after = json_loads(pg_ctl_field(e, "after"), 0, NULL);
            pg_ctl_diff(before, after, diff, sizeof(diff));
            json_decref(before);
            json_decref(after);
        }

        printf("  %s  reason: %s\n", diff, pg_ctl_field(e, "reason"));
    }

    if (json_array_size(entries) == 0) {
        printf("no audit entries%s%s\n", flag ? " for " : "",
               flag ? flag : "");
    }

    json_decref(entries);

    return PG_CTL_OK;
}


static double
pg_ctl_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}


/*
 * --wait: until every edge reports revision, or a later one that the store
 * has too (another change may follow), or the limit passes; then say how
 * long it took, or which edges lag (exit 1). An edge ahead of the store
 * (Redis restored from an older backup) has not confirmed anything.
 */
static int
pg_ctl_wait(pg_store_t *store, pg_ctl_opts_t *o, int64_t revision)
{
    int              all;
    char             lag[2048];
    long             timeout;
    size_t           i, used;
    double           start, elapsed;
    int64_t          rev[PG_EDGE_MAX], now;
    pg_error_t       err;
    struct timespec  pause = { 0, 10 * 1000 * 1000 };

    for (i = 0; i < o->nedges; i++) {
        rev[i] = -1;
    }

    now = revision;
    start = pg_ctl_now_ms();

    for ( ;; ) {
        if (pg_store_revision(store, &now) != PG_OK) {
            return pg_ctl_store_error(store);
        }

        all = 1;
        elapsed = pg_ctl_now_ms() - start;

        /* one request never outlasts what is left of the wait */
        timeout = (long) (o->wait * 1000 - elapsed);
        timeout = timeout < 100 ? 100
                  : timeout > PG_CTL_EDGE_MS ? PG_CTL_EDGE_MS : timeout;

        for (i = 0; i < o->nedges; i++) {
            if (rev[i] >= revision && rev[i] <= now) {
                continue;
            }

            if (pg_edge_revision(&o->edges[i], timeout, &rev[i], &err)
                != PG_OK)
            {
                rev[i] = -1;
            }

            if (rev[i] < revision || rev[i] > now) {
                all = 0;
            }
        }

        elapsed = pg_ctl_now_ms() - start;

        if (all) {
            printf("every edge (%zu) has revision %lld, after %.1f ms\n",
                   o->nedges, (long long) revision, elapsed);
            return PG_CTL_OK;
        }

        if (elapsed >= o->wait * 1000) {
            break;
        }

        nanosleep(&pause, NULL);
    }

    used = 0;
    lag[0] = '\0';

    for (i = 0; i < o->nedges && used < sizeof(lag); i++) {
        if (rev[i] >= revision && rev[i] <= now) {
            continue;
        }

        if (rev[i] < 0) {
            used += snprintf(lag + used, sizeof(lag) - used,
                             "%s%s (unreachable)", used ? ", " : "",
                             o->edges[i].spec);
        } else {
            used += snprintf(lag + used, sizeof(lag) - used,
                             "%s%s (revision %lld%s)", used ? ", " : "",
                             o->edges[i].spec, (long long) rev[i],
                             rev[i] > now ? ", AHEAD of the store" : "");
        }
    }

    return pg_ctl_error(PG_CTL_FAILED, "revision %lld is not on every edge "
                        "after %g s; lagging: %s", (long long) revision,
                        o->wait, lag);
}


static int
pg_ctl_status(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv)
{
    int          init, behind;
    size_t       i;
    json_t      *all, *edges, *e;
    int64_t      revision, rev;
    pg_error_t   err;

    if (pg_store_initialised(store, &init) != PG_OK
        || pg_store_revision(store, &revision) != PG_OK)
    {
        return pg_ctl_store_error(store);
    }

    edges = json_array();
    behind = !init;

    for (i = 0; i < o->nedges; i++) {
        if (pg_edge_revision(&o->edges[i], PG_CTL_EDGE_MS, &rev, &err)
            != PG_OK)
        {
            e = json_pack("{s:s,s:n,s:n,s:s}", "edge", o->edges[i].spec,
                          "revision", "lag", "error", err.text);
            behind = 1;

        } else {
            e = json_pack("{s:s,s:I,s:I,s:n}", "edge", o->edges[i].spec,
                          "revision", (json_int_t) rev, "lag",
                          (json_int_t) (revision - rev), "error");
            behind |= (rev != revision);
        }

        json_array_append_new(edges, e);
    }

    if (o->json) {
        all = json_pack("{s:{s:s,s:s,s:b,s:I},s:o}",
                        "store", "redis", store->where, "prefix",
                        store->prefix, "initialised", init, "revision",
                        (json_int_t) revision, "edges", edges);
        json_dumpf(all, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(all);

        return behind ? PG_CTL_FAILED : PG_CTL_OK;
    }

    printf("store %s (prefix \"%s\"): %s, revision %lld\n", store->where,
           store->prefix, init ? "initialised" : "NOT INITIALISED (run init)",
           (long long) revision);

    if (o->nedges == 0) {
        printf("no edges: give --edge URL or -c FILE\n");
    }

    json_array_foreach(edges, i, e) {
        if (json_is_null(json_object_get(e, "revision"))) {
            printf("  %-52s  unreachable: %s\n",
                   json_string_value(json_object_get(e, "edge")),
                   json_string_value(json_object_get(e, "error")));
            continue;
        }

        rev = json_integer_value(json_object_get(e, "revision"));

        printf("  %-52s  revision %-8lld %s\n",
               json_string_value(json_object_get(e, "edge")),
               (long long) rev,
               rev == revision ? "in step"
               : rev < revision ? "BEHIND"
               : "AHEAD of the store (was it restored from a backup?)");
    }

    json_decref(edges);

    return behind ? PG_CTL_FAILED : PG_CTL_OK;
}


int
main(int argc, char **argv)
{
    int                  ch, rc, nargs, init;
    char                 where[300], *end;
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

    if (o.actor == NULL || o.actor[0] == '\0') {
        o.actor = getenv("USER");
    }

    while ((ch = getopt_long(argc, argv, "r:p:e:c:h", longopts, NULL)) != -1)
    {
        switch (ch) {
        case 'r': o.redis_url = optarg; break;
        case 'p': o.prefix = optarg; break;
        case 'e': o.env = optarg; break;
        case 'A': o.actor = optarg; break;
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
