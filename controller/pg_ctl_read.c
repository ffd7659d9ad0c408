/*
 * pg_ctl_read.c: portal-gatectl's reading commands: list, show, explain,
 * audit. They write nothing.
 */

#include <math.h>               /* floor */
#include <stdio.h>              /* printf */
#include <stdlib.h>             /* malloc, qsort, free */
#include <string.h>             /* strcmp, strlen */
#include "pg_ctl.h"             /* the options, the errors */


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


/*
 * pg_store_snapshot() leaves out a flag whose value in Redis is broken;
 * list keeps it here (data: name -> why) to show it among the others.
 */
static void
pg_ctl_broken(const char *env, const char *flag, const char *why, void *data)
{
    json_t  *text;

    text = json_string(why);

    json_object_set_new(data, flag, text ? text
                        : json_string("its value is not valid"));
}


/*
 * Every flag of the environment, a line each, in name order. A flag whose
 * value in Redis is broken is shown as BROKEN, with why, among the others
 * (portal-gated leaves it as the edges have it), named on stderr too,
 * and the exit status is then 1: the listing is not the whole truth, and
 * a script or a monitor must not take it for that.
 */
int
pg_ctl_list(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    int           enabled, initialised;
    double        rollout;
    size_t        allow, deny, n, i;
    json_t       *snap, *flags, *broken, *f;
    const char   *name, *requires, **names, *env, *why;
    int64_t       revision;

    broken = json_object();
    if (broken == NULL) {
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    env = o->env;
    pg_ctl_warn_env(store, o);

    /* the flags and the revision they belong to, in one read */
    if (pg_store_snapshot(store, &env, 1, pg_ctl_broken, broken,
                          &initialised, &snap)
        != PG_OK)
    {
        json_decref(broken);
        return pg_ctl_store_error(store);
    }

    revision = json_integer_value(json_object_get(snap, "revision"));
    flags = json_object_get(json_object_get(snap, "environments"), env);

    /* in name order, the broken ones among the others: a hash has none */
    names = malloc((json_object_size(flags) + json_object_size(broken) + 1)
                   * sizeof(char *));
    if (names == NULL) {
        json_decref(snap);
        json_decref(broken);
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    n = 0;

    json_object_foreach(flags, name, f) {
        names[n++] = name;
    }

    json_object_foreach(broken, name, f) {
        names[n++] = name;
    }

    qsort(names, n, sizeof(char *), pg_ctl_strcmp);

    if (o->json) {
        json_dumpf(flags, stdout,
                   JSON_INDENT(2) | JSON_SORT_KEYS | PG_JSON_REAL);
        printf("\n");

    } else {
        printf("%-40s %-7s %8s %7s %7s  %s\n", "FLAG", "STATE", "ROLLOUT",
               "ALLOW", "DENY", "REQUIRES");

        for (i = 0; i < n; i++) {
            why = json_string_value(json_object_get(broken, names[i]));

            if (why) {
                printf("%-40s %-7s  %s\n", names[i], "BROKEN", why);
                continue;
            }

            f = json_object_get(flags, names[i]);
            pg_ctl_fields(f, &enabled, &rollout, &allow, &deny, &requires);

            printf("%-40s %-7s %7.2f%% %7zu %7zu  %s\n", names[i],
                   enabled ? "on" : "killed", rollout, allow, deny,
                   requires ? requires : "-");
        }

        printf("(%zu flags in %s", n, env);

        if (json_object_size(broken)) {
            printf(", %zu of them broken", json_object_size(broken));
        }

        printf(", store revision %lld)\n", (long long) revision);
    }

    fflush(stdout);

    for (i = 0; i < n; i++) {
        why = json_string_value(json_object_get(broken, names[i]));

        if (why) {
            pg_ctl_error(PG_CTL_FAILED, "flag \"%s\" in %s is %s; "
                         "portal-gated leaves it as the edges have it, and "
                         "`kill %s` still turns it off", names[i], env, why,
                         names[i]);
        }
    }

    free(names);
    json_decref(snap);

    n = json_object_size(broken);
    json_decref(broken);

    return n ? PG_CTL_FAILED : PG_CTL_OK;
}


/*
 * One flag's JSON, read on its own so that a broken sibling does not
 * matter. A value that is not a valid flag is shown all the same, named
 * on stderr, with exit 1.
 */
int
pg_ctl_show(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    json_t      *f;
    pg_error_t   err;

    if (pg_ctl_check_flag(argv[0]) != PG_CTL_OK) {
        return PG_CTL_USAGE;
    }

    if (pg_store_flag(store, o->env, argv[0], &f) != PG_OK) {
        return pg_ctl_store_error(store);
    }

    if (f == NULL) {
        pg_ctl_warn_env(store, o);
        return pg_ctl_error(PG_CTL_FAILED, "no flag \"%s\" in %s", argv[0],
                            o->env);
    }

    json_dumpf(f, stdout, JSON_INDENT(2) | PG_JSON_REAL);
    printf("\n");

    if (pg_flag_check_json(argv[0], f, &err) != PG_OK) {
        json_decref(f);
        fflush(stdout);
        return pg_ctl_error(PG_CTL_FAILED, "flag \"%s\" in %s is invalid: "
                            "%s", argv[0], o->env, err.text);
    }

    json_decref(f);

    return PG_CTL_OK;
}


int
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
    pg_ctl_warn_env(store, o);

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


/*
 * audit F of a flag that no entry names: exit 1 unless F is a flag of the
 * environment, naming the closest flag when there is one.
 */
static int
pg_ctl_unknown_flag(pg_store_t *store, pg_ctl_opts_t *o, const char *flag)
{
    int          initialised;
    json_t      *f, *snap, *flags, *broken;
    const char  *near, *env;

    if (pg_store_flag(store, o->env, flag, &f) != PG_OK) {
        return pg_ctl_store_error(store);
    }

    if (f) {
        json_decref(f);
        printf("no audit entries for %s\n", flag);
        return PG_CTL_OK;
    }

    env = o->env;
    near = NULL;
    snap = NULL;
    broken = json_object();

    /* broken siblings aside: they are names all the same */
    if (broken
        && pg_store_snapshot(store, &env, 1, pg_ctl_broken, broken,
                             &initialised, &snap) == PG_OK)
    {
        flags = json_object_get(json_object_get(snap, "environments"), env);
        near = pg_ctl_closest(flag, flags);
    }

    pg_ctl_error(PG_CTL_FAILED, "no audit entry names flag \"%s\", and "
                 "there is no flag \"%s\" in %s%s%s%s", flag, flag, o->env,
                 near ? "; did you mean \"" : "", near ? near : "",
                 near ? "\"?" : "");
    json_decref(snap);
    json_decref(broken);

    return PG_CTL_FAILED;
}


/*
 * Print s, a line of the audit log for the terminal, with what could
 * forge or hide part of it escaped: control characters (C0, DEL, C1; an
 * old entry or another tool's may hold a newline or an ESC), the
 * direction marks, embeddings, overrides and isolates (U+061C, U+200E,
 * U+200F, U+202A-U+202E, U+2066-U+2069) that reorder what follows, and
 * the line and paragraph separators (U+2028, U+2029). --json shows the
 * text as stored.
 */
static void
pg_ctl_put_safe(const char *s)
{
    unsigned int          cp;
    const unsigned char  *p;

    for (p = (const unsigned char *) s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            printf("\\x%02x", *p);
            continue;
        }

        cp = 0;

        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            cp = p[1];

        } else if (p[0] == 0xd8 && p[1] == 0x9c) {
            cp = 0x061c;

        } else if (p[0] == 0xe2 && p[1] == 0x80
                   && ((p[2] >= 0x8e && p[2] <= 0x8f)
                       || (p[2] >= 0xa8 && p[2] <= 0xae)))
        {
            cp = 0x2000 + (p[2] - 0x80);

        } else if (p[0] == 0xe2 && p[1] == 0x81 && p[2] >= 0xa6
                   && p[2] <= 0xa9)
        {
            cp = 0x2040 + (p[2] - 0x80);
        }

        if (cp == 0) {
            putchar(*p);
            continue;
        }

        printf("\\u%04x", cp);
        p += cp < 0x800 ? 1 : 2;
    }
}


int
pg_ctl_audit(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    char         diff[1024], line[4096];
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

    /* no entry names it and it is not a flag: a typo, not a quiet flag
     * (a deleted flag keeps its entries, so its history still shows) */
    if (flag && json_array_size(entries) == 0) {
        json_decref(entries);
        return pg_ctl_unknown_flag(store, o, flag);
    }

    if (o->json) {
        json_dumpf(entries, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(entries);
        return PG_CTL_OK;
    }

    json_array_foreach(entries, i, e) {
        if (strcmp(pg_ctl_field(e, "action"), "revision") == 0) {
            /* portal-gated raised the store's revision above an edge's */
            snprintf(diff, sizeof(diff), "revision %s -> %s",
                     pg_ctl_field(e, "before"), pg_ctl_field(e, "after"));

        } else if (strcmp(pg_ctl_field(e, "action"), "env") == 0) {
            snprintf(diff, sizeof(diff), "environment added");

        } else if (strcmp(pg_ctl_field(e, "action"), "release") == 0) {
            snprintf(diff, sizeof(diff), "kill overrides released");

        } else if (strcmp(pg_ctl_field(e, "action"), "delete") == 0) {
            snprintf(diff, sizeof(diff), "deleted");

        } else {
            before = json_loads(pg_ctl_field(e, "before"), 0, NULL);
            after = json_loads(pg_ctl_field(e, "after"), 0, NULL);
            pg_ctl_diff(before, after, diff, sizeof(diff));
            json_decref(before);
            json_decref(after);
        }

        /* one line, each text in it as it may be shown */
        snprintf(line, sizeof(line), "%s  rev %-6s %-12s %-12s %-32s %-8s"
                 "  %s  reason: %s", pg_ctl_field(e, "ts"),
                 pg_ctl_field(e, "revision"), pg_ctl_field(e, "actor"),
                 pg_ctl_field(e, "env"), pg_ctl_field(e, "flag"),
                 pg_ctl_field(e, "action"), diff,
                 pg_ctl_field(e, "reason"));
        pg_ctl_put_safe(line);
        printf("\n");
    }

    if (json_array_size(entries) == 0) {
        printf("no audit entries%s%s\n", flag ? " for " : "",
               flag ? flag : "");
    }

    json_decref(entries);

    return PG_CTL_OK;
}
