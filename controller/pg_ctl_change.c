/*
 * pg_ctl_change.c: portal-gatectl's writing commands: create, on, off,
 * kill, rollout, allow, deny, unallow, undeny, set. Each is one
 * pg_store_write() with an edit (pg_ctl_edit) that turns the flag as it is
 * into the flag as it should be. Also delete (pg_store_delete), and env:
 * the store's environments.
 */

#include <stdio.h>              /* printf, snprintf */
#include <stdlib.h>             /* calloc, malloc, free */
#include <string.h>             /* strcmp, strspn, strlen */
#include "pg_ctl.h"             /* the options, the errors */


/* set KEY=VALUE: the keys it takes */
#define PG_CTL_SET_KEYS  3

static const char  *pg_ctl_set_keys[PG_CTL_SET_KEYS] = {
    "requires", "description", "salt"
};


/* What an edit needs: the command's operands. */
typedef struct {
    const char   *cmd;
    char        **args;
    int           nargs;
    long          bp;           /* rollout in basis points */
    pg_ctl_opts_t *o;
    const char   *set[PG_CTL_SET_KEYS];  /* set: the value of each key
                                           given, "" to remove it */
} pg_ctl_edit_t;


/*
 * off or kill of a flag whose value in Redis is not valid: the flag,
 * disabled, with each of its fields that is valid on its own; the rest is
 * dropped and named on stderr (the audit entry keeps the value as it was).
 * Out of memory checking a field is no invalid field (it would drop an
 * allow list that is good): NULL, *code PG_STORE_EFAULT, nothing written.
 */
static json_t *
pg_ctl_salvage(pg_ctl_edit_t *e, const json_t *before, pg_error_t *why,
    int *code, pg_error_t *err)
{
    int          rc;
    char         dropped[512];
    size_t       n;
    json_t      *after, *value;
    pg_error_t   check;
    const char  *key;

    after = json_pack("{s:b}", "enabled", 0);
    if (after == NULL) {
        *code = PG_STORE_EFAULT;
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

        if (json_object_set(after, key, value) != 0) {
            json_decref(after);
            *code = PG_STORE_EFAULT;
            snprintf(err->text, sizeof(err->text), "out of memory");
            return NULL;
        }

        /*
         * requires is dropped too: it may name a flag that is gone, and
         * then the daemon would keep the last good, enabled, version
         */
        rc = strcmp(key, "requires") == 0
             ? PG_ERR : pg_flag_check_json(e->args[0], after, &check);

        if (rc == PG_FAULT) {
            json_decref(after);
            *code = PG_STORE_EFAULT;
            snprintf(err->text, sizeof(err->text), "out of memory checking "
                     "flag \"%s\": %.120s", e->args[0], check.text);
            return NULL;
        }

        if (rc != PG_OK) {
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


/*
 * Append to list (an allow or deny list) each of the n ids that it does not
 * hold yet, in their order, each once: a hash set of what the list holds
 * makes that one lookup per id, for lists of up to PG_LIST_MAX ids (a scan
 * of the list per id took 39 s for 100,000). An id the list holds as a
 * JSON integer is its decimal string, as everywhere in the core.
 * Returns 0, or -1 when out of memory.
 */
static int
pg_ctl_add_ids(json_t *list, char **ids, int n)
{
    int           rc;
    char         *digits;
    size_t        i, have, count, size, used, len;
    uint32_t      slot, mask;
    json_t       *v;
    const char  **set, *id;

    have = json_array_size(list);       /* the list grows below */
    count = have + (size_t) n;

    for (size = 16; size < 2 * count; size *= 2) { /* void */ }

    mask = (uint32_t) size - 1;
    set = calloc(size, sizeof(char *));
    /* the decimal strings of integer ids: at most 20 digits, a sign, NUL */
    digits = malloc(have * 22 + 1);

    if (set == NULL || digits == NULL) {
        free(set);
        free(digits);
        return -1;
    }

    rc = 0;
    used = 0;

    for (i = 0; i < count; i++) {
        if (i < have) {
            v = json_array_get(list, i);

            if (json_is_integer(v)) {
                id = digits + used;
                used += snprintf(digits + used, 22, "%" JSON_INTEGER_FORMAT,
                                 json_integer_value(v)) + 1;
            } else {
                id = json_string_value(v);
            }

        } else {
            id = ids[i - have];
        }

        if (id == NULL) {
            continue;       /* not an id: the flag's check says so */
        }

        len = strlen(id);

        for (slot = pg_murmur3_32(id, len, 0) & mask; set[slot] != NULL;
             slot = (slot + 1) & mask)
        {
            if (strcmp(set[slot], id) == 0) {
                break;
            }
        }

        if (set[slot] != NULL) {
            continue;       /* listed already, or given twice */
        }

        set[slot] = id;

        if (i >= have && json_array_append_new(list, json_string(id)) != 0)
        {
            rc = -1;
            break;
        }
    }

    free(set);
    free(digits);

    return rc;
}


/*
 * Take out of flag's list field (allow or deny) every id among the n
 * given, in whatever form it is listed (an integer id is its decimal
 * string): a hash set of the given ids, and the list rebuilt in one pass
 * (a scan of the ids per listed id, and a json_array_remove() each, took
 * 14 s for 50,000 of 100,000 ids). A list that holds none of them is left
 * as it was. Returns 0, or -1 when out of memory.
 */
static int
pg_ctl_remove_ids(json_t *flag, const char *field, char **ids, int n)
{
    int           rc;
    char          digits[32];
    size_t        i, size, len, removed;
    uint32_t      slot, mask;
    json_t       *list, *kept, *v;
    const char  **set, *id;

    list = json_object_get(flag, field);

    if (!json_is_array(list) || n <= 0) {
        return 0;
    }

    for (size = 16; size < 2 * (size_t) n; size *= 2) { /* void */ }

    mask = (uint32_t) size - 1;
    set = calloc(size, sizeof(char *));
    kept = json_array();

    if (set == NULL || kept == NULL) {
        free(set);
        json_decref(kept);
        return -1;
    }

    for (i = 0; i < (size_t) n; i++) {
        len = strlen(ids[i]);

        for (slot = pg_murmur3_32(ids[i], len, 0) & mask; set[slot] != NULL;
             slot = (slot + 1) & mask)
        {
            if (strcmp(set[slot], ids[i]) == 0) {
                break;
            }
        }

        set[slot] = ids[i];
    }

    rc = 0;
    removed = 0;

    for (i = 0; i < json_array_size(list); i++) {
        v = json_array_get(list, i);

        if (json_is_integer(v)) {
            snprintf(digits, sizeof(digits), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
            id = digits;
        } else {
            id = json_string_value(v);
        }

        if (id) {
            len = strlen(id);

            for (slot = pg_murmur3_32(id, len, 0) & mask; set[slot] != NULL;
                 slot = (slot + 1) & mask)
            {
                if (strcmp(set[slot], id) == 0) {
                    break;
                }
            }

            if (set[slot] != NULL) {
                removed++;
                continue;
            }
        }

        if (json_array_append(kept, v) != 0) {
            rc = -1;
            break;
        }
    }

    if (rc == 0 && removed > 0) {
        rc = json_object_set(flag, field, kept) == 0 ? 0 : -1;
    }

    free(set);
    json_decref(kept);

    return rc;
}


/* The edit of every writing command; see pg_store_edit_pt. */
static json_t *
pg_ctl_edit(const json_t *before, void *data, int *code, pg_error_t *err)
{
    int             rc, i;
    json_t         *after, *list;
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

    rc = unreadable ? PG_ERR : pg_flag_check_json(e->args[0], before, &why);

    /* out of memory says nothing of the value: no salvage of a good flag */
    if (rc == PG_FAULT) {
        *code = PG_STORE_EFAULT;
        snprintf(err->text, sizeof(err->text), "out of memory checking flag "
                 "\"%s\": %.120s", e->args[0], why.text);
        return NULL;
    }

    if (rc != PG_OK) {
        /* on-call can always turn a flag off, whatever Redis holds */
        if (strcmp(e->cmd, "off") == 0 || strcmp(e->cmd, "kill") == 0) {
            return pg_ctl_salvage(e, before, &why, code, err);
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

    /*
     * A key left out holds its default (DESIGN.md: enabled true, rollout
     * 0): setting it to that changes nothing an edge evaluates, so it is
     * left out still, and the write is a no-op (no revision, no audit).
     */
    if (strcmp(e->cmd, "on") == 0) {
        if (json_object_get(after, "enabled") != NULL) {
            rc = json_object_set_new(after, "enabled", json_true());
        }

    } else if (strcmp(e->cmd, "off") == 0 || strcmp(e->cmd, "kill") == 0) {
        rc = json_object_set_new(after, "enabled", json_false());

    } else if (strcmp(e->cmd, "rollout") == 0) {
        if (e->bp == 0 && json_object_get(after, "rollout") == NULL) {
            return after;
        }

        /* whole percents as integers, others at their 0.01 step */
        rc = json_object_set_new(after, "rollout",
                                 e->bp % 100 == 0
                                 ? json_integer(e->bp / 100)
                                 : json_real(e->bp / 100.0));

    } else if (strcmp(e->cmd, "unallow") == 0
               || strcmp(e->cmd, "undeny") == 0)
    {
        /* take the ids out; a list that has none of them is as it was */
        rc = pg_ctl_remove_ids(after, e->cmd + 2, &e->args[1],
                               e->nargs - 1);

    } else if (strcmp(e->cmd, "set") == 0) {
        for (i = 0; i < PG_CTL_SET_KEYS && rc == 0; i++) {
            if (e->set[i] == NULL) {
                continue;
            }

            if (e->set[i][0] == '\0') {
                json_object_del(after, pg_ctl_set_keys[i]);
            } else {
                rc = json_object_set_new(after, pg_ctl_set_keys[i],
                                         json_string(e->set[i]));
            }
        }

    } else {
        /* allow, deny: add the ids that are not there yet */
        field = e->cmd;
        list = json_object_get(after, field);

        if (!json_is_array(list)) {
            list = json_array();
            rc = json_object_set_new(after, field, list);
        }

        if (rc == 0) {
            rc = pg_ctl_add_ids(list, &e->args[1], e->nargs - 1);
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
void
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
            b = bv ? json_dumps(bv, JSON_ENCODE_ANY | PG_JSON_REAL) : NULL;
            a = av ? json_dumps(av, JSON_ENCODE_ANY | PG_JSON_REAL) : NULL;

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


/* One line on what changed, for the terminal; --json: one object. */
void
pg_ctl_print_change(pg_ctl_opts_t *o, const char *cmd, const char *flag,
    pg_store_change_t *ch)
{
    char  diff[1024];

    if (o->json) {
        json_t  *j;

        j = json_pack("{s:s,s:s,s:s,s:O?,s:O?,s:I,s:b}", "env", o->env,
                      "flag", flag, "action", cmd, "before", ch->before,
                      "after", ch->after, "revision",
                      (json_int_t) ch->revision, "changed", !ch->unchanged);
        if (j) {
            json_dumpf(j, stdout, JSON_COMPACT | PG_JSON_REAL);
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

        } else if (strcmp(cmd, "unallow") == 0
                   || strcmp(cmd, "undeny") == 0)
        {
            printf("%s in %s has none of those ids in its %s list: nothing "
                   "changed (store revision %lld)\n", flag, o->env, cmd + 2,
                   (long long) ch->revision);

        } else {
            printf("%s in %s is so already: nothing changed (store revision "
                   "%lld)\n", flag, o->env, (long long) ch->revision);
        }

        return;
    }

    if (ch->after == NULL) {
        printf("deleted %s in %s (revision %lld)\n", flag, o->env,
               (long long) ch->revision);
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


/*
 * A rollout as the command line gives it: digits, at most one '.' and
 * digits, at most a '%'; from 0 to 100, in steps of 0.01 (zeros past the
 * second place are fine: 12.500). It is read exactly, digit by digit, into
 * basis points, so that no double rounds it. Returns the basis points, or
 * -1 once the message has said what is wrong.
 */
static long
pg_ctl_parse_rollout(const char *arg)
{
    long         bp;
    size_t       n, f, i;
    const char  *digits, *frac, *end;

    n = strspn(arg, "0123456789");
    frac = arg + n + (arg[n] == '.');
    f = arg[n] == '.' ? strspn(frac, "0123456789") : 0;
    end = frac + f;

    if (n == 0 || strcmp(end, *end == '%' ? "%" : "") != 0) {
        pg_ctl_error(PG_CTL_USAGE, "invalid rollout \"%s\": expected a "
                     "percent from 0 to 100 in digits, with at most two "
                     "decimal places (5, 12.5, 0.25 or 12.5%%)", arg);
        return -1;
    }

    for (i = 2; i < f; i++) {
        if (frac[i] != '0') {
            pg_ctl_error(PG_CTL_USAGE, "invalid rollout \"%s\": more than "
                         "two decimal places; the step is 0.01", arg);
            return -1;
        }
    }

    /* the whole percents, past leading zeros; 4 digits are over 100 */
    for (digits = arg; n > 1 && *digits == '0'; digits++) {
        n--;
    }

    bp = 0;

    for (i = 0; i < n && i < 4; i++) {
        bp = bp * 10 + (digits[i] - '0');
    }

    bp = bp * 100 + (f > 0 ? (frac[0] - '0') * 10 : 0)
         + (f > 1 ? frac[1] - '0' : 0);

    if (n > 3 || bp > PG_BP_MAX) {
        pg_ctl_error(PG_CTL_USAGE, "invalid rollout \"%s\": more than 100; "
                     "a rollout is a percent from 0 to 100", arg);
        return -1;
    }

    return bp;
}


/*
 * set's operands, KEY=VALUE, into e->set; PG_CTL_OK or exit 2 with the
 * error said. Each key once; requires names a flag, not the flag itself;
 * a description is free text; a salt the core checks.
 */
static int
pg_ctl_parse_set(pg_ctl_edit_t *e, const char *flag, int argc, char **argv)
{
    int          i, k;
    size_t       n;
    const char  *eq, *value;

    for (k = 0; k < PG_CTL_SET_KEYS; k++) {
        e->set[k] = NULL;
    }

    for (i = 1; i < argc; i++) {
        eq = strchr(argv[i], '=');
        n = eq ? (size_t) (eq - argv[i]) : 0;

        for (k = 0; eq && k < PG_CTL_SET_KEYS; k++) {
            if (strlen(pg_ctl_set_keys[k]) == n
                && strncmp(pg_ctl_set_keys[k], argv[i], n) == 0)
            {
                break;
            }
        }

        if (eq == NULL || k == PG_CTL_SET_KEYS) {
            return pg_ctl_error(PG_CTL_USAGE, "invalid \"%s\": set takes "
                                "KEY=VALUE with KEY requires, description or "
                                "salt (an empty VALUE removes the key)",
                                argv[i]);
        }

        if (e->set[k]) {
            return pg_ctl_error(PG_CTL_USAGE, "%s given twice",
                                pg_ctl_set_keys[k]);
        }

        value = eq + 1;
        e->set[k] = value;

        if (value[0] == '\0') {
            continue;
        }

        if (k == 0) {
            if (pg_ctl_check_flag(value) != PG_CTL_OK) {
                return PG_CTL_USAGE;
            }

            if (strcmp(value, flag) == 0) {
                return pg_ctl_error(PG_CTL_USAGE, "flag \"%s\" cannot "
                                    "require itself", flag);
            }

        } else if (k == 1
                   && pg_ctl_check_text("description", "", value)
                      != PG_CTL_OK)
        {
            return PG_CTL_USAGE;
        }
    }

    return PG_CTL_OK;
}


/* The kill of flag in the store, as `kill` makes it; for kill --direct. */
int
pg_ctl_store_kill(pg_store_t *store, pg_ctl_opts_t *o, const char *flag,
    const char *reason, pg_store_change_t *change)
{
    char           *args[1];
    pg_ctl_edit_t   edit;

    memset(&edit, 0, sizeof(edit));
    args[0] = (char *) flag;
    edit.cmd = "kill";
    edit.args = args;
    edit.nargs = 1;
    edit.o = o;

    return pg_store_write(store, o->env, flag, "kill", o->actor, reason, 0,
                          pg_ctl_edit, &edit, change);
}


/*
 * A write that failed: its error, unless the environment is not one of
 * the store's. Then that is the error, with the closest name: "no flag F
 * in prodution: create makes it" would send on-call the wrong way.
 */
static int
pg_ctl_write_error(pg_store_t *store, pg_ctl_opts_t *o)
{
    int      recorded, known;
    json_t  *envs;

    if (store->code == PG_STORE_EFAILED
        && pg_store_envs(store, &envs, &recorded) == PG_OK)
    {
        known = json_object_get(envs, o->env) != NULL;
        json_decref(envs);

        if (!known) {
            snprintf(store->env, sizeof(store->env), "%s", o->env);
            store->code = PG_STORE_ENOENV;
        }
    }

    return pg_ctl_store_error(store);
}


int
pg_ctl_change(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    int                 i, rc, ha, check_env;
    pg_ctl_edit_t       edit;
    pg_store_change_t   change;

    /* check every operand before anything is read or written */

    if (pg_ctl_check_flag(argv[0]) != PG_CTL_OK) {
        return PG_CTL_USAGE;
    }

    if (strcmp(cmd, "kill") == 0 && o->direct) {
        return pg_ctl_direct_kill(store, o, argv[0]);
    }

    memset(&edit, 0, sizeof(edit));

    if (strcmp(cmd, "rollout") == 0) {
        edit.bp = pg_ctl_parse_rollout(argv[1]);

        if (edit.bp < 0) {
            return PG_CTL_USAGE;
        }
    }

    if (strcmp(cmd, "allow") == 0 || strcmp(cmd, "deny") == 0
        || strcmp(cmd, "unallow") == 0 || strcmp(cmd, "undeny") == 0)
    {
        for (i = 1; i < argc; i++) {
            if (!pg_valid_company(argv[i], strlen(argv[i]))) {
                return pg_ctl_error(PG_CTL_USAGE, "invalid company id "
                                    "\"%s\": expected [A-Za-z0-9_.-]{1,64}",
                                    argv[i]);
            }
        }
    }

    if (strcmp(cmd, "set") == 0
        && pg_ctl_parse_set(&edit, argv[0], argc, argv) != PG_CTL_OK)
    {
        return PG_CTL_USAGE;
    }

    if (o->requires && pg_ctl_check_flag(o->requires) != PG_CTL_OK) {
        return PG_CTL_USAGE;
    }

    edit.cmd = cmd;
    edit.args = argv;
    edit.nargs = argc;
    edit.o = o;

    /*
     * only create and set can set requires: the others need no env-wide
     * check (the script checks it again, atomically: no race gets past)
     */
    check_env = strcmp(cmd, "create") == 0
                || (strcmp(cmd, "set") == 0 && edit.set[0] && edit.set[0][0]);

    if (pg_store_write(store, o->env, argv[0], cmd, o->actor, o->reason,
                       check_env, pg_ctl_edit, &edit, &change)
        != PG_OK)
    {
        rc = pg_ctl_write_error(store, o);
        pg_ctl_hint_direct(store, o, cmd, argv[0]);
        return rc;
    }

    pg_ctl_print_change(o, cmd, argv[0], &change);
    pg_ctl_ha_applied(store);
    pg_store_change_free(&change);
    fflush(stdout);

    /* on a replica too, or said that it is not; the edges all the same */
    ha = change.unchanged ? PG_CTL_OK : pg_ctl_ha_replicas(store, o);

    if (o->wait >= 0) {
        rc = pg_ctl_wait(store, o, change.revision);
        return rc != PG_CTL_OK ? rc : ha;
    }

    return ha;
}


int
pg_ctl_delete(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    int                rc, ha;
    pg_store_change_t  change;

    if (pg_ctl_check_flag(argv[0]) != PG_CTL_OK) {
        return PG_CTL_USAGE;
    }

    if (pg_store_delete(store, o->env, argv[0], o->actor, o->reason, &change)
        != PG_OK)
    {
        return pg_ctl_write_error(store, o);
    }

    pg_ctl_print_change(o, cmd, argv[0], &change);
    pg_ctl_ha_applied(store);
    pg_store_change_free(&change);
    fflush(stdout);

    ha = pg_ctl_ha_replicas(store, o);

    if (o->wait >= 0) {
        rc = pg_ctl_wait(store, o, change.revision);
        return rc != PG_CTL_OK ? rc : ha;
    }

    return ha;
}


static int
pg_ctl_strcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}


/*
 * env list: the store's environments, with how many flags each holds
 * (portal-gated pushes them, besides those of its config).
 * env add ENV: one more; a name that is there already changes nothing.
 */
int
pg_ctl_env(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd, int argc,
    char **argv)
{
    int          recorded, rc, ha;
    size_t       k, n;
    json_t      *envs, *e;
    int64_t      revision;
    const char  *name, **names;

    if (strcmp(argv[0], "add") == 0 && argc == 2) {
        if (!pg_valid_name(argv[1], strlen(argv[1]))) {
            return pg_ctl_error(PG_CTL_USAGE, "invalid environment \"%s\": "
                                "expected [a-z0-9_]{1,64}", argv[1]);
        }

        if (pg_store_env_add(store, argv[1], o->actor, o->reason, &revision)
            != PG_OK)
        {
            return pg_ctl_store_error(store);
        }

        if (revision == 0) {
            if (pg_store_revision(store, &revision) != PG_OK) {
                return pg_ctl_store_error(store);
            }

            printf("environment %s is in the store already: nothing changed "
                   "(store revision %lld)\n", argv[1], (long long) revision);
            return PG_CTL_OK;
        }

        printf("added environment %s (revision %lld)\n", argv[1],
               (long long) revision);
        fflush(stdout);

        ha = pg_ctl_ha_replicas(store, o);

        if (o->wait >= 0) {
            rc = pg_ctl_wait(store, o, revision);
            return rc != PG_CTL_OK ? rc : ha;
        }

        return ha;
    }

    if (strcmp(argv[0], "list") != 0 || argc != 1) {
        return pg_ctl_error(PG_CTL_USAGE, "usage: portal-gatectl env list | "
                            "add ENV; see 'portal-gatectl -h'");
    }

    if (o->wait >= 0) {
        return pg_ctl_error(PG_CTL_USAGE, "--wait goes with a change");
    }

    if (pg_store_envs(store, &envs, &recorded) != PG_OK) {
        return pg_ctl_store_error(store);
    }

    if (o->json) {
        json_dumpf(envs, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("\n");
        json_decref(envs);
        return PG_CTL_OK;
    }

    printf("%-24s %6s  %-20s  %s\n", "ENVIRONMENT", "FLAGS", "ADDED", "BY");

    /* in name order: a hash has none */
    names = malloc((json_object_size(envs) + 1) * sizeof(char *));
    if (names == NULL) {
        json_decref(envs);
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    n = 0;
    json_object_foreach(envs, name, e) {
        names[n++] = name;
    }

    qsort(names, n, sizeof(char *), pg_ctl_strcmp);

    for (k = 0; k < n; k++) {
        name = names[k];
        e = json_object_get(envs, name);

        printf("%-24s %6" JSON_INTEGER_FORMAT "  %-20s  %s\n", name,
               json_integer_value(json_object_get(e, "flags")),
               json_string_value(json_object_get(e, "created_at"))
               ?: "-",
               json_string_value(json_object_get(e, "created_by"))
               ?: "-");
    }

    free(names);

    if (!recorded) {
        printf("(a store made before environments were recorded: those of "
               "its flags, and production and staging; `env add` records "
               "them)\n");
    }

    json_decref(envs);

    return PG_CTL_OK;
}
