/*
 * pg_ctl_direct.c: the break-glass commands, kill F --direct and release
 * F, which need neither Redis nor portal-gated: they go straight to every
 * edge's API at once, then to the store if Redis answers, so that the
 * store and the audit log agree once the incident is over.
 */

#include <stdio.h>              /* printf, snprintf */
#include <stdlib.h>             /* free */
#include <string.h>             /* strcmp, strlen */
#include "pg_ctl.h"             /* the options, the errors */


static int pg_ctl_module_answer(const json_t *json, const char *env,
    const char *flag, const char *key);
static int pg_ctl_take_back(pg_ctl_opts_t *o, const char *flag,
    const int *created, int *taken);


/*
 * kill F --direct: the break-glass kill. PUT overrides?env=E&flag=F to
 * every edge at once, with GET eval of F beside each (does the edge know
 * F in E at all? a typo must not pass for a kill); then, if Redis answers
 * within PG_CTL_AFTER_MS, the kill in the store and the audit log as
 * `kill` makes it, so that the store and the edges agree once the
 * incident is over. The edges come first: Redis and portal-gated may be
 * down, and every millisecond counts. An edge answers the PUT 200 once
 * the override is in its zone, which every worker reads at its next
 * request (and in its state file): that is the confirmation. Exit 0 only
 * when every edge confirmed.
 */
int
pg_ctl_direct_kill(pg_store_t *store, pg_ctl_opts_t *o, const char *flag)
{
    int                 rc, confirmed, known, created, n_ok, n_known, down;
    int                 init, persisted, n_lost, taken;
    int                 ok[PG_EDGE_MAX], made[PG_EDGE_MAX];
    char                line[1024], why[256], quoted[2200], *text;
    char                reason[PG_TEXT_MAX + 160];
    size_t              i, n;
    double              start, took;
    json_t             *body, *out, *edges, *e, *st;
    const char         *because, *given;
    pg_error_t          err;
    pg_edge_call_t      calls[2 * PG_EDGE_MAX], *put, *eval;
    pg_store_change_t   change;

    start = pg_ctl_now_ms();
    n = o->nedges;

    /* who and why, as much as an edge keeps (at a character's end) */
    given = o->reason && o->reason[0] ? o->reason
                                      : "portal-gatectl kill --direct";

    body = json_pack("{s:s%,s:s%}",
                     "by", o->actor, pg_ctl_utf8_cut(o->actor, 64),
                     "reason", given, pg_ctl_utf8_cut(given, 256));
    text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);

    if (text == NULL) {
        return pg_ctl_error(PG_CTL_FAILED, "out of memory");
    }

    /* calls[i]: the PUT to edge i; calls[n + i]: its GET eval */
    for (i = 0; i < n; i++) {
        put = &calls[i];
        put->edge = &o->edges[i];
        put->method = "PUT";
        snprintf(put->path, sizeof(put->path), "overrides?env=%s&flag=%s",
                 o->env, flag);
        put->body = text;
        put->len = strlen(text);

        eval = &calls[n + i];
        eval->edge = &o->edges[i];
        eval->method = "GET";
        snprintf(eval->path, sizeof(eval->path), "eval?env=%s&flag=%s",
                 o->env, flag);
        eval->body = NULL;
        eval->len = 0;
    }

    rc = pg_edge_calls(calls, 2 * n, PG_CTL_DIRECT_MS, &err);
    free(text);

    if (rc != PG_OK) {
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
    }

    took = pg_ctl_now_ms() - start;

    /* what each edge did */

    edges = json_array();
    n_ok = 0;
    n_known = 0;
    n_lost = 0;

    for (i = 0; i < n; i++) {
        put = &calls[i];
        eval = &calls[n + i];
        confirmed = 0;
        created = 0;
        persisted = 1;
        why[0] = '\0';

        /* an edge that cannot say counts as knowing the flag */
        because = eval->answered && eval->status == 200
                  ? json_string_value(json_object_get(eval->json, "reason"))
                  : NULL;
        known = because == NULL || strcmp(because, "unknown") != 0;

        if (!put->answered) {
            snprintf(why, sizeof(why), "%s", put->why);

        } else if (put->status != 200) {
            snprintf(why, sizeof(why), "PUT overrides answered %ld%s%.100s%s",
                     put->status,
                     json_string_value(json_object_get(put->json, "error"))
                     ? ": " : "",
                     json_string_value(json_object_get(put->json, "error"))
                     ?: "",
                     put->status == 404 ? " (a module without kill "
                                          "overrides?)"
                     : put->status == 507 ? " (portal-gatectl status lists "
                                            "its overrides; release lifts "
                                            "one)" : "");

        } else if (!pg_ctl_module_answer(put->json, o->env, flag,
                                         "created"))
        {
            /* any 200 is not a kill: a wrong path may answer one */
            snprintf(why, sizeof(why), "not a portal_gate API answer (PUT "
                     "overrides answered 200%s): is the edge's URL its "
                     "portal_gate_api location?",
                     put->json ? " with other JSON" : " without JSON");

        } else {
            confirmed = 1;
            created = json_is_true(json_object_get(put->json, "created"));
            persisted = !json_is_false(json_object_get(put->json,
                                                       "persisted"));
        }

        n_ok += confirmed;
        n_known += confirmed && known;
        n_lost += confirmed && !persisted;
        ok[i] = confirmed;
        made[i] = confirmed && created;

        json_array_append_new(edges,
            json_pack("{s:s,s:b,s:b,s:b,s:b,s:f,s:s?}", "edge",
                      o->edges[i].spec, "confirmed", confirmed, "created",
                      created, "persisted", confirmed && persisted,
                      "known", known, "ms", put->ms,
                      "error", confirmed ? NULL : why));
    }

    /* a flag no edge knows is a typo: its overrides would only fill the
     * edges' slots, so those this kill set are taken back */
    taken = 0;

    if (n_known == 0 && n_ok > 0
        && pg_ctl_take_back(o, flag, made, &taken) != PG_CTL_OK)
    {
        taken = -1;
    }

    pg_edge_calls_free(calls, 2 * n);

    if (!o->json) {
        if ((size_t) n_ok == n) {
            printf("KILLED %s in %s on every edge (%zu), by override, in "
                   "%.1f ms:\n", flag, o->env, n, took);
        } else {
            printf("%s in %s: killed on %d of %zu edges, by override, in "
                   "%.1f ms:\n", flag, o->env, n_ok, n, took);
        }

        json_array_foreach(edges, i, e) {
            if (!ok[i]) {
                printf("  %-52s  NOT CONFIRMED: %s\n", o->edges[i].spec,
                       json_string_value(json_object_get(e, "error")));
                continue;
            }

            printf("  %-52s  off: %s%s%s\n", o->edges[i].spec,
                   json_is_true(json_object_get(e, "created"))
                   ? "override set"
                   : "killed already (the first kill's who and why stay)",
                   json_is_true(json_object_get(e, "persisted"))
                   ? "" : ", NOT PERSISTED: lost when the edge restarts",
                   json_is_true(json_object_get(e, "known"))
                   ? "" : "; this edge has no such flag");
        }

        fflush(stdout);
    }

    /* then the store, if Redis answers: the same kill, audited */

    st = json_object();

    snprintf(reason, sizeof(reason), "%s%sbreak-glass: kill overrides on %d "
             "of %zu edges (kill --direct)", o->reason ? o->reason : "",
             o->reason && o->reason[0] ? "; " : "", n_ok, n);
    pg_ctl_shell_quote(o->reason && o->reason[0] ? o->reason
                                                 : "INCIDENT", quoted,
                       sizeof(quoted));

    down = 0;

    if (pg_ctl_connect(store, o, PG_CTL_AFTER_MS, &err) != PG_OK) {
        snprintf(line, sizeof(line), "%s", err.text);
        down = 1;

    } else if (pg_store_initialised(store, &init) != PG_OK) {
        snprintf(line, sizeof(line), "%s", store->err.text);
        down = (store->code == PG_STORE_EREDIS);

    } else if (!init) {
        /* a flushed Redis: `create` would make a new flag, not the one
         * the edges serve; the edges hold the whole store */
        snprintf(line, sizeof(line), "the store at %s (prefix \"%s\") is "
                 "not initialised: Redis is new or was flushed. Rebuild it "
                 "from an edge: portal-gatectl init --from-edge URL",
                 store->where, store->prefix);

    } else if (pg_ctl_store_kill(store, o, flag, reason, &change) != PG_OK) {
        snprintf(line, sizeof(line), "%s", store->err.text);
        down = (store->code == PG_STORE_EREDIS);

    } else {
        line[0] = '\0';

        if (change.unchanged) {
            /* off in the store already: the break-glass is noted all the
             * same, so that the audit log tells the whole incident */
            text = json_dumps(change.after, JSON_COMPACT | PG_JSON_REAL);

            if (text == NULL
                || pg_store_note(store, o->env, flag, "kill", o->actor,
                                 reason, text, text, &change.revision)
                   != PG_OK)
            {
                snprintf(line, sizeof(line), "%s", text ? store->err.text
                                                        : "out of memory");
            }

            free(text);
        }

        if (line[0] == '\0') {
            json_object_set_new(st, "recorded", json_true());
            json_object_set_new(st, "changed",
                                json_boolean(!change.unchanged));
            json_object_set_new(st, "revision",
                                json_integer(change.revision));

            if (!o->json && change.unchanged) {
                printf("the store has %s off in %s already (revision %lld): "
                       "the kill is in the audit log\n", flag, o->env,
                       (long long) change.revision);

            } else if (!o->json) {
                printf("the store agrees: ");
                pg_ctl_print_change(o, "kill", flag, &change);
            }
        }

        pg_store_change_free(&change);
    }

    if (line[0]) {
        json_object_set_new(st, "recorded", json_false());
        json_object_set_new(st, "error", json_string(line));

        if (!o->json && down) {
            fflush(stdout);
            pg_ctl_error(PG_CTL_FAILED, "the store was not changed: %s. "
                         "The overrides keep %s off on the edges that "
                         "took them, whatever portal-gated pushes; once "
                         "Redis is back, record the kill: portal-gatectl "
                         "-e %s --reason %s kill %s", line, flag, o->env,
                         quoted, flag);

        } else if (!o->json) {
            fflush(stdout);
            pg_ctl_error(PG_CTL_FAILED, "the store was not changed: %s",
                         line);
        }
    }

    if (o->json) {
        out = json_pack("{s:s,s:s,s:o,s:i,s:i,s:f,s:o}", "env", o->env,
                        "flag", flag, "edges", edges, "confirmed", n_ok,
                        "total", (int) o->nedges, "ms", took, "store", st);
        json_dumpf(out, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(out);

    } else {
        json_decref(edges);
        json_decref(st);
    }

    fflush(stdout);

    if ((size_t) n_ok < o->nedges) {
        line[0] = '\0';

        for (i = 0, rc = 0; i < o->nedges; i++) {
            if (!ok[i]) {
                rc += snprintf(line + rc, sizeof(line) - rc > 0
                               ? sizeof(line) - rc : 0, "%s%s",
                               rc ? ", " : "", o->edges[i].spec);
                if ((size_t) rc >= sizeof(line)) {
                    break;
                }
            }
        }

        return pg_ctl_error(PG_CTL_FAILED, "not every edge confirmed the "
                            "kill: %s; run it again, or reach them another "
                            "way", line);
    }

    if (n_known == 0) {
        return pg_ctl_error(PG_CTL_FAILED, "no edge knows flag \"%s\" in %s: "
                            "it was off there already. Are the flag and the "
                            "environment right? (portal-gatectl env list; "
                            "portal-gatectl -e %s list); %s", flag, o->env,
                            o->env, taken < 0
                            ? "the overrides it set could not all be taken "
                              "back: portal-gatectl status lists them"
                            : "the overrides it set were taken back");
    }

    if (n_lost) {
        return pg_ctl_error(PG_CTL_FAILED, "%d edge%s could not write the "
                            "override to %s state file: %s off until %s "
                            "restarts (portal-gatectl status says why; run "
                            "the kill again once it is fixed)", n_lost,
                            n_lost == 1 ? "" : "s",
                            n_lost == 1 ? "its" : "their", flag,
                            n_lost == 1 ? "it" : "they");
    }

    return PG_CTL_OK;
}


/*
 * release F: DELETE overrides?env=E&flag=F on every edge at once (always
 * straight to the edges: --direct is implied); then, if Redis answers, an
 * audit entry (action "release") and what the store says of F, which is
 * what the edges serve now. It does not turn F on. Exit 0 when every edge
 * holds no override of F any more.
 */
int
pg_ctl_release(pg_store_t *store, pg_ctl_opts_t *o, const char *cmd,
    int argc, char **argv)
{
    int              n_released, n_none, n_lost, noted, done[PG_EDGE_MAX];
    char             result[PG_EDGE_MAX][160], line[512];
    char             reason[PG_TEXT_MAX + 160];
    size_t           i, used;
    double           start, took;
    int64_t          revision;
    json_t          *f, *out, *edges, *st;
    pg_error_t       err;
    const char      *flag, *state, *error;
    pg_edge_call_t   calls[PG_EDGE_MAX];

    flag = argv[0];
    start = pg_ctl_now_ms();

    if (pg_ctl_check_flag(flag) != PG_CTL_OK) {
        return PG_CTL_USAGE;
    }

    for (i = 0; i < o->nedges; i++) {
        calls[i].edge = &o->edges[i];
        calls[i].method = "DELETE";
        snprintf(calls[i].path, sizeof(calls[i].path),
                 "overrides?env=%s&flag=%s", o->env, flag);
        calls[i].body = NULL;
        calls[i].len = 0;
    }

    if (pg_edge_calls(calls, o->nedges, PG_CTL_DIRECT_MS, &err) != PG_OK) {
        return pg_ctl_error(PG_CTL_FAILED, "%s", err.text);
    }

    took = pg_ctl_now_ms() - start;
    n_released = 0;
    n_none = 0;
    n_lost = 0;
    edges = json_array();

    for (i = 0; i < o->nedges; i++) {
        done[i] = 1;
        error = json_string_value(json_object_get(calls[i].json, "error"));

        /* only the module's own answers count: a wrong path may answer
         * 200, or 404 with some JSON */
        if (calls[i].answered && calls[i].status == 200
            && pg_ctl_module_answer(calls[i].json, o->env, flag, "released")
            && json_is_true(json_object_get(calls[i].json, "released")))
        {
            n_released++;

            if (json_is_false(json_object_get(calls[i].json, "persisted"))) {
                n_lost++;
                snprintf(result[i], sizeof(result[i]), "released, NOT "
                         "PERSISTED: the override is back when the edge "
                         "restarts");
            } else {
                snprintf(result[i], sizeof(result[i]), "released");
            }

        } else if (calls[i].answered && calls[i].status == 404 && error
                   && strncmp(error, "no override for flag ", 21) == 0)
        {
            n_none++;
            snprintf(result[i], sizeof(result[i]), "held none");

        } else {
            done[i] = 0;

            if (calls[i].answered && (calls[i].status == 200
                                      || calls[i].status == 404))
            {
                snprintf(result[i], sizeof(result[i]), "NOT RELEASED: not a "
                         "portal_gate API answer (DELETE overrides answered "
                         "%ld): is the edge's URL its portal_gate_api "
                         "location?", calls[i].status);

            } else if (calls[i].answered) {
                snprintf(result[i], sizeof(result[i]), "NOT RELEASED: "
                         "DELETE overrides answered %ld", calls[i].status);
            } else {
                snprintf(result[i], sizeof(result[i]), "NOT RELEASED: %s",
                         calls[i].why);
            }
        }

        json_array_append_new(edges, json_pack("{s:s,s:b,s:s}", "edge",
                                               o->edges[i].spec, "released",
                                               done[i], "result",
                                               result[i]));
    }

    pg_edge_calls_free(calls, o->nedges);

    if (!o->json) {
        printf("released the kill overrides of %s in %s on %d of %zu edges "
               "(%d held none), in %.1f ms:\n", flag, o->env, n_released,
               o->nedges, n_none, took);

        for (i = 0; i < o->nedges; i++) {
            printf("  %-52s  %s\n", o->edges[i].spec, result[i]);
        }

        fflush(stdout);
    }

    /* then the store, if Redis answers: the audit entry, and what F is */

    st = json_object();
    state = NULL;

    snprintf(reason, sizeof(reason), "%s%sreleased the kill overrides on %d "
             "of %zu edges", o->reason ? o->reason : "",
             o->reason && o->reason[0] ? "; " : "", n_released, o->nedges);

    noted = 0;

    if (pg_ctl_connect(store, o, PG_CTL_AFTER_MS, &err) != PG_OK) {
        snprintf(line, sizeof(line), "%s", err.text);

    } else if (pg_store_note(store, o->env, flag, "release", o->actor,
                             reason, "", "", &revision) != PG_OK)
    {
        snprintf(line, sizeof(line), "%s", store->err.text);

    } else if ((noted = 1, pg_store_flag(store, o->env, flag, &f))
               != PG_OK)
    {
        /* the entry is in the audit log: only the flag is unknown */
        snprintf(line, sizeof(line), "%s", store->err.text);

    } else {
        line[0] = '\0';
        state = f == NULL ? "missing"
                : json_is_false(json_object_get(f, "enabled")) ? "off"
                : "on";
        json_decref(f);

        json_object_set_new(st, "audited", json_true());
        json_object_set_new(st, "flag", json_string(state));
    }

    if (line[0]) {
        json_object_set_new(st, "audited", json_boolean(noted));
        json_object_set_new(st, "error", json_string(line));
    }

    if (o->json) {
        out = json_pack("{s:s,s:s,s:o,s:i,s:i,s:o}", "env", o->env, "flag",
                        flag, "edges", edges, "released", n_released,
                        "held_none", n_none, "store", st);
        json_dumpf(out, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(out);

    } else {
        json_decref(edges);
        json_decref(st);

        if (state && strcmp(state, "off") == 0) {
            printf("release does not turn %s on: the edges serve it as the "
                   "store says, and the store has it OFF (killed); "
                   "`portal-gatectl -e %s on %s` turns it on\n", flag,
                   o->env, flag);
        } else if (state && strcmp(state, "on") == 0) {
            printf("release does not turn %s on: the edges serve it as the "
                   "store says, and the store has it on (enabled, as its "
                   "rollout and lists say)\n", flag);
        } else if (state) {
            printf("the store has no flag %s in %s: the edges have none "
                   "either, unless portal-gated is behind\n", flag, o->env);
        } else {
            printf("release does not turn %s on: the edges serve it as the "
                   "store says; `portal-gatectl -e %s on %s` turns it on\n",
                   flag, o->env, flag);
        }

        fflush(stdout);

        if (line[0] && noted) {
            pg_ctl_error(PG_CTL_FAILED, "warning: in the audit log, but "
                         "what the store says of %s is unknown: %s", flag,
                         line);
        } else if (line[0]) {
            pg_ctl_error(PG_CTL_FAILED, "warning: not in the audit log, "
                         "and what the store says of %s is unknown: %s",
                         flag, line);
        }
    }

    if (n_released + n_none < (int) o->nedges) {
        used = 0;
        line[0] = '\0';

        for (i = 0; i < o->nedges && used < sizeof(line); i++) {
            if (!done[i]) {
                used += snprintf(line + used, sizeof(line) - used, "%s%s",
                                 used ? ", " : "", o->edges[i].spec);
            }
        }

        return pg_ctl_error(PG_CTL_FAILED, "not every edge released it: %s "
                            "still %s %s off; run release again", line,
                            n_released + n_none + 1 < (int) o->nedges
                            ? "keep" : "keeps", flag);
    }

    if (n_lost) {
        return pg_ctl_error(PG_CTL_FAILED, "%d edge%s could not write the "
                            "release to %s state file: %s off again when "
                            "%s restarts (portal-gatectl status says why; "
                            "run release again once it is fixed)", n_lost,
                            n_lost == 1 ? "" : "s",
                            n_lost == 1 ? "its" : "their", flag,
                            n_lost == 1 ? "it" : "they");
    }

    if (n_released == 0 && !o->json) {
        printf("no edge held a kill override of %s in %s (portal-gatectl "
               "status lists them)\n", flag, o->env);
    }

    return PG_CTL_OK;
}


/*
 * Is json the module's own answer to PUT or DELETE overrides of env and
 * flag: an object naming them, with the boolean key ("created",
 * "released")? Any other 200 (a wrong path, a proxy's page) is no
 * confirmation.
 */
static int
pg_ctl_module_answer(const json_t *json, const char *env, const char *flag,
    const char *key)
{
    const char  *e, *f;

    e = json_string_value(json_object_get(json, "env"));
    f = json_string_value(json_object_get(json, "flag"));

    return json_is_object(json) && e && f && strcmp(e, env) == 0
           && strcmp(f, flag) == 0 && json_is_boolean(json_object_get(json,
                                                                      key));
}


/*
 * DELETE the override of flag on each edge i where created[i]: a kill of a
 * flag no edge knows set them for nothing. *taken counts the edges that
 * released it. PG_CTL_FAILED when any did not.
 */
static int
pg_ctl_take_back(pg_ctl_opts_t *o, const char *flag, const int *created,
    int *taken)
{
    int              rc;
    size_t           i, n;
    pg_error_t       err;
    pg_edge_call_t   calls[PG_EDGE_MAX];

    n = 0;

    for (i = 0; i < o->nedges; i++) {
        if (!created[i]) {
            continue;
        }

        calls[n].edge = &o->edges[i];
        calls[n].method = "DELETE";
        snprintf(calls[n].path, sizeof(calls[n].path),
                 "overrides?env=%s&flag=%s", o->env, flag);
        calls[n].body = NULL;
        calls[n].len = 0;
        n++;
    }

    *taken = 0;

    if (n == 0) {
        return PG_CTL_OK;
    }

    if (pg_edge_calls(calls, n, PG_CTL_DIRECT_MS, &err) != PG_OK) {
        return PG_CTL_FAILED;
    }

    rc = PG_CTL_OK;

    for (i = 0; i < n; i++) {
        if (calls[i].answered && calls[i].status == 200) {
            (*taken)++;
        } else {
            rc = PG_CTL_FAILED;
        }
    }

    pg_edge_calls_free(calls, n);

    return rc;
}
