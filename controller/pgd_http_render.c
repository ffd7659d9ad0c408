/*
 * pgd_http_render.c: the answers of portal-gated's HTTP endpoint, rendered
 * on demand from pgd_t on the loop's thread (see pgd_http.h): /metrics in
 * Prometheus' text format 0.0.4, /healthz and /status.json. Reads only.
 *
 * Labels: edge (the edge line as written, user:password@ masked) and
 * certificate (the block's name). Never a company id, never a flag name:
 * the series are bounded by the config, not by the store.
 */

#include <stdarg.h>             /* va_list */
#include <stdio.h>              /* vsnprintf */
#include <stdlib.h>             /* malloc, realloc, free */
#include <string.h>             /* strlen, memcpy, strstr */
#include <time.h>               /* clock_gettime */
#include <unistd.h>             /* getpid */
#include "pgd_http_private.h"   /* pgd_http_t, the API it implements */


#define PGD_HTTP_LAG_INTERVALS 3        /* an edge out of step longer than
                                           this many reconcile intervals .. */
#define PGD_HTTP_LAG_MIN_MS    3000     /* .. and than this is lagging */


/* A growing text. */
typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    int      failed;                    /* out of memory: data is freed */
} pgd_text_t;


static void pgd_text_add(pgd_text_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void pgd_text_label(pgd_text_t *t, const char *value);
static void pgd_text_help(pgd_text_t *t, const char *name, const char *type,
    const char *help);
static const char *pgd_http_store_state(int state);


static void
pgd_text_add(pgd_text_t *t, const char *fmt, ...)
{
    int      n;
    char    *p;
    size_t   cap;
    va_list  args;

    if (t->failed) {
        return;
    }

    for ( ;; ) {
        va_start(args, fmt);
        n = vsnprintf(t->data ? t->data + t->len : NULL,
                      t->data ? t->cap - t->len : 0, fmt, args);
        va_end(args);

        if (n < 0) {
            return;
        }

        if (t->data != NULL && t->len + (size_t) n < t->cap) {
            t->len += (size_t) n;
            return;
        }

        cap = t->cap ? t->cap * 2 : 16384;

        while (cap < t->len + (size_t) n + 1) {
            cap *= 2;
        }

        p = realloc(t->data, cap);

        if (p == NULL) {
            free(t->data);
            t->data = NULL;
            t->failed = 1;
            return;
        }

        t->data = p;
        t->cap = cap;
    }
}


/* A label's value between its quotes: \ " and newline escaped, as the
 * text format asks (a unix socket's path in an edge line may hold a quote
 * or a backslash; a newline cannot pass the config parser, escaped all
 * the same). */
static void
pgd_text_label(pgd_text_t *t, const char *value)
{
    char         clean[1024];
    const char  *p;

    pgd_http_clean(value, clean, sizeof(clean));

    for (p = clean; *p; p++) {
        if (*p == '\\' || *p == '"') {
            pgd_text_add(t, "\\%c", *p);
        } else if (*p == '\n') {
            pgd_text_add(t, "\\n");
        } else {
            pgd_text_add(t, "%c", *p);
        }
    }
}


static void
pgd_text_help(pgd_text_t *t, const char *name, const char *type,
    const char *help)
{
    pgd_text_add(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}


void
pgd_http_clean(const char *s, char *buf, size_t size)
{
    char                  masked[1024];
    size_t                n, k, need;
    const char           *at, *scheme;
    const unsigned char  *p;

    /* http://user:pass@host/...: what is before the @ is masked */
    at = strchr(s, '@');
    scheme = strstr(s, "://");

    if (at != NULL && scheme != NULL && scheme < at
        && memchr(scheme + 3, '/', (size_t) (at - scheme - 3)) == NULL)
    {
        snprintf(masked, sizeof(masked), "%.*s***%s",
                 (int) (scheme + 3 - s), s, at);
        s = masked;
    }

    p = (const unsigned char *) s;
    n = 0;

    while (*p && n + 4 < size) {
        need = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2
               : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;

        for (k = 1; need > 1 && k < need; k++) {
            if ((p[k] & 0xc0) != 0x80) {
                need = 0;
                break;
            }
        }

        /* overlong, surrogate and out of range forms are invalid too */
        if ((need == 2 && *p < 0xc2)
            || (need == 3 && *p == 0xe0 && p[1] < 0xa0)
            || (need == 3 && *p == 0xed && p[1] >= 0xa0)
            || (need == 4 && *p == 0xf0 && p[1] < 0x90)
            || (need == 4 && (*p > 0xf4 || (*p == 0xf4 && p[1] >= 0x90))))
        {
            need = 0;
        }

        if (need == 1 && *p == '\n') {
            buf[n++] = '\n';                /* a label escapes it */
            p++;
            continue;
        }

        if (need == 0 || (need == 1 && (*p < 0x20 || *p == 0x7f))) {
            memcpy(buf + n, "\xef\xbf\xbd", 3);    /* U+FFFD */
            n += 3;
            p++;
            continue;
        }

        memcpy(buf + n, p, need);
        n += need;
        p += need;
    }

    buf[n] = '\0';
}


static const char *
pgd_http_store_state(int state)
{
    switch (state) {
    case PGD_STORE_OK:
        return "ok";
    case PGD_STORE_UNINIT:
        return "uninitialised";
    case PGD_STORE_BROKEN:
        return "broken";
    default:
        return "unknown";
    }
}


/* --- /metrics ----------------------------------------------------------- */

/*
 * The gauges with one sample per edge, and per certificate: the families,
 * in the order written; pgd_http_edge_samples() and _cert_samples() give
 * the samples, indexed as the tables are.
 */
typedef struct {
    const char  *name;
    const char  *help;
    int          decimals;                  /* of the value written */
} pgd_http_gauge_t;

enum {
    PGD_HTTP_EDGE_UP, PGD_HTTP_EDGE_REVISION, PGD_HTTP_EDGE_IN_STEP,
    PGD_HTTP_EDGE_LAG_REVISIONS, PGD_HTTP_EDGE_LAG_SECONDS,
    PGD_HTTP_EDGE_OVERRIDES, PGD_HTTP_EDGE_GAUGES
};

enum {
    PGD_HTTP_CERT_EXPIRY, PGD_HTTP_CERT_NEXT, PGD_HTTP_CERT_FAILURES,
    PGD_HTTP_CERT_ERROR_AT, PGD_HTTP_CERT_PLACEHOLDER, PGD_HTTP_CERT_GAUGES
};

#define PGD_HTTP_GAUGES_MAX   PGD_HTTP_EDGE_GAUGES  /* the larger */

static const pgd_http_gauge_t  pgd_http_edge_gauges[PGD_HTTP_EDGE_GAUGES] = {
    { "portal_gated_edge_up",
      "1 when the edge answered its last request, else 0.", 0 },
    { "portal_gated_edge_revision",
      "The edge's snapshot revision as it last said; absent while unknown "
      "(down).", 0 },
    { "portal_gated_edge_in_step",
      "1 when the edge holds all of the snapshot pushed now.", 0 },
    { "portal_gated_edge_lag_revisions",
      "Revisions the edge is behind the snapshot pushed (negative: ahead); "
      "absent while unknown.", 0 },
    { "portal_gated_edge_lag_seconds",
      "Seconds since the edge was last seen in step; 0 in step.", 3 },
    { "portal_gated_edge_kill_overrides",
      "Kill overrides (portal-gatectl kill --direct) the edge listed at its "
      "last status.", 0 }
};

static const pgd_http_gauge_t  pgd_http_cert_gauges[PGD_HTTP_CERT_GAUGES] = {
    { "portal_gated_certificate_expiry_timestamp_seconds",
      "notAfter of the certificate in place, in seconds since the epoch; "
      "absent while unknown.", 0 },
    { "portal_gated_certificate_next_renewal_timestamp_seconds",
      "When the next issuance or renewal of the certificate is due, in "
      "seconds since the epoch.", 0 },
    { "portal_gated_certificate_renewal_failures",
      "Issuances or renewals of the certificate that failed in a row; 0 "
      "after a success.", 0 },
    { "portal_gated_certificate_last_error_timestamp_seconds",
      "When the certificate's standing error (its last issuance failed) "
      "happened; 0 when none stands.", 0 },
    { "portal_gated_certificate_placeholder",
      "1 while the first-start self-signed placeholder is in place of the "
      "certificate.", 0 }
};


/* e's samples by PGD_HTTP_EDGE_*; have[g] 0: none (unknown now). */
static void
pgd_http_edge_samples(pgd_t *d, pgd_edge_t *e, double *v, int *have)
{
    int64_t  lag;

    lag = pgd_http_lag_revisions(d, e);

    v[PGD_HTTP_EDGE_UP] = e->state == PGD_UP;
    v[PGD_HTTP_EDGE_REVISION] = (double) e->revision;
    v[PGD_HTTP_EDGE_IN_STEP] = pgd_http_in_step(d, e);
    v[PGD_HTTP_EDGE_LAG_REVISIONS] = (double) lag;
    v[PGD_HTTP_EDGE_LAG_SECONDS] = pgd_http_lag_s(d, e);
    v[PGD_HTTP_EDGE_OVERRIDES] = (double) json_array_size(e->overrides);

    have[PGD_HTTP_EDGE_UP] = 1;
    have[PGD_HTTP_EDGE_REVISION] = e->revision >= 0;
    have[PGD_HTTP_EDGE_IN_STEP] = 1;
    have[PGD_HTTP_EDGE_LAG_REVISIONS] = lag != INT64_MIN;
    have[PGD_HTTP_EDGE_LAG_SECONDS] = 1;
    have[PGD_HTTP_EDGE_OVERRIDES] = 1;
}


/* c's samples by PGD_HTTP_CERT_*; have[g] 0: none (unknown now). */
static void
pgd_http_cert_samples(pgd_cert_t *c, double *v, int *have)
{
    v[PGD_HTTP_CERT_EXPIRY] = (double) c->info.not_after;
    v[PGD_HTTP_CERT_NEXT] = (double) c->next_at;
    v[PGD_HTTP_CERT_FAILURES] = c->failures;
    v[PGD_HTTP_CERT_ERROR_AT] = c->last_error[0] ? (double) c->last_error_at
                                                 : 0;
    v[PGD_HTTP_CERT_PLACEHOLDER] = c->placeholder != 0;

    have[PGD_HTTP_CERT_EXPIRY] = c->have_info;
    have[PGD_HTTP_CERT_NEXT] = 1;
    have[PGD_HTTP_CERT_FAILURES] = 1;
    have[PGD_HTTP_CERT_ERROR_AT] = 1;
    have[PGD_HTTP_CERT_PLACEHOLDER] = 1;
}


/* name{label="value"} v: v an integer (below 2^53: exact in a double) or
 * seconds with g->decimals decimals */
static void
pgd_text_sample(pgd_text_t *t, const pgd_http_gauge_t *g, const char *label,
    const char *value, double v)
{
    pgd_text_add(t, "%s{%s=\"", g->name, label);
    pgd_text_label(t, value);
    pgd_text_add(t, "\"} %.*f\n", g->decimals, v + 0.0);   /* no "-0" */
}


char *
pgd_http_metrics(pgd_t *d, size_t *len)
{
    int               i, have[PGD_HTTP_GAUGES_MAX];
    size_t            j, k, g;
    double            v[PGD_HTTP_GAUGES_MAX];
    uint64_t          cum;
    pgd_edge_t       *e;
    pgd_text_t        t;
    pgd_http_edge_t  *st;

    static const int  states[] = {
        PGD_STORE_OK, PGD_STORE_UNINIT, PGD_STORE_BROKEN, PGD_STORE_UNKNOWN
    };

    memset(&t, 0, sizeof(t));

    pgd_text_help(&t, "portal_gated_build_info", "gauge",
                  "The running portal-gated's version; always 1.");
    pgd_text_add(&t, "portal_gated_build_info{version=\"");
    pgd_text_label(&t, PG_VERSION);
    pgd_text_add(&t, "\"} 1\n");

    pgd_text_help(&t, "portal_gated_start_time_seconds", "gauge",
                  "When this portal-gated started, in seconds since the "
                  "epoch.");
    pgd_text_add(&t, "portal_gated_start_time_seconds %lld\n",
                 (long long) d->started);

    pgd_text_help(&t, "portal_gated_redis_up", "gauge",
                  "1 while portal-gated is connected to Redis, else 0.");
    pgd_text_add(&t, "portal_gated_redis_up %d\n",
                 d->redis_state == PGD_UP && d->cmd != NULL);

    pgd_text_help(&t, "portal_gated_store_state", "gauge",
                  "The store as last read: 1 for its state, 0 for the "
                  "others (uninitialised: no marker, nothing is pushed).");

    for (i = 0; i < (int) (sizeof(states) / sizeof(states[0])); i++) {
        pgd_text_add(&t, "portal_gated_store_state{state=\"%s\"} %d\n",
                     pgd_http_store_state(states[i]),
                     d->store_state == states[i]);
    }

    pgd_text_help(&t, "portal_gated_source_revision", "gauge",
                  "The store's revision in Redis, as last read.");
    pgd_text_add(&t, "portal_gated_source_revision %lld\n",
                 (long long) d->store_revision);

    if (d->body != NULL) {
        pgd_text_help(&t, "portal_gated_snapshot_revision", "gauge",
                      "The revision of the snapshot pushed to the edges.");
        pgd_text_add(&t, "portal_gated_snapshot_revision %lld\n",
                     (long long) d->body->revision);
    }

    /* per edge, then per certificate: each family whole, one after the
     * other, as the format wants */

    for (g = 0; g < PGD_HTTP_EDGE_GAUGES; g++) {
        pgd_text_help(&t, pgd_http_edge_gauges[g].name, "gauge",
                      pgd_http_edge_gauges[g].help);

        for (j = 0; j < d->nedges; j++) {
            pgd_http_edge_samples(d, &d->edges[j], v, have);

            if (have[g]) {
                pgd_text_sample(&t, &pgd_http_edge_gauges[g], "edge",
                                d->edges[j].edge.spec, v[g]);
            }
        }
    }

    pgd_text_help(&t, "portal_gated_pushes_total", "counter",
                  "Snapshot pushes to the edge, by result: ok (200), "
                  "conflict (409), refused (another status), timeout, "
                  "failed (no answer).");

    for (j = 0; j < d->nedges; j++) {
        st = pgd_http_edge(d->http, d->edges[j].edge.spec);

        for (i = 0; st != NULL && i < PGD_HTTP_RESULTS; i++) {
            pgd_text_add(&t, "portal_gated_pushes_total{edge=\"");
            pgd_text_label(&t, d->edges[j].edge.spec);
            pgd_text_add(&t, "\",result=\"%s\"} %llu\n", pgd_http_results[i],
                         (unsigned long long) st->pushes[i]);
        }
    }

    pgd_text_help(&t, "portal_gated_push_duration_seconds", "histogram",
                  "How long a snapshot push to the edge took, from its "
                  "start to its answer or its failure.");

    for (j = 0; j < d->nedges; j++) {
        e = &d->edges[j];
        st = pgd_http_edge(d->http, e->edge.spec);

        if (st == NULL) {
            continue;
        }

        cum = 0;

        for (k = 0; k < PGD_HTTP_BUCKETS; k++) {
            cum += st->le[k];
            pgd_text_add(&t, "portal_gated_push_duration_seconds_bucket"
                         "{edge=\"");
            pgd_text_label(&t, e->edge.spec);
            pgd_text_add(&t, "\",le=\"%g\"} %llu\n", pgd_http_buckets[k],
                         (unsigned long long) cum);
        }

        pgd_text_add(&t, "portal_gated_push_duration_seconds_bucket"
                     "{edge=\"");
        pgd_text_label(&t, e->edge.spec);
        pgd_text_add(&t, "\",le=\"+Inf\"} %llu\n",
                     (unsigned long long) st->count);
        pgd_text_add(&t, "portal_gated_push_duration_seconds_sum{edge=\"");
        pgd_text_label(&t, e->edge.spec);
        pgd_text_add(&t, "\"} %.6f\n", st->sum);
        pgd_text_add(&t, "portal_gated_push_duration_seconds_count"
                     "{edge=\"");
        pgd_text_label(&t, e->edge.spec);
        pgd_text_add(&t, "\"} %llu\n", (unsigned long long) st->count);
    }

    for (g = 0; d->ncerts > 0 && g < PGD_HTTP_CERT_GAUGES; g++) {
        pgd_text_help(&t, pgd_http_cert_gauges[g].name, "gauge",
                      pgd_http_cert_gauges[g].help);

        for (j = 0; j < d->ncerts; j++) {
            pgd_http_cert_samples(&d->certs[j], v, have);

            if (have[g]) {
                pgd_text_sample(&t, &pgd_http_cert_gauges[g], "certificate",
                                d->certs[j].conf.name, v[g]);
            }
        }
    }

    if (t.failed) {
        return NULL;
    }

    *len = t.len;

    return t.data;
}


/* --- /healthz ----------------------------------------------------------- */

/*
 * 503 "failing" when changes cannot reach the edges: Redis unreachable,
 * the store uninitialised or unreadable, or edges configured and none of
 * them ok (each down, or out of step longer than 3 reconcile intervals, at
 * least 3 s). 200 "degraded" when some edge is not ok (each named in
 * "problems"), or a certificate's renewal is failing; 200 "ok" otherwise.
 * "edges_ok" counts the edges up and in step, or out of step for less than
 * that (a push under way): not "in step", which an edge mid-push is not.
 * The edges keep serving what they hold in every case: this says whether
 * the controller delivers, for alerting and readiness, never for a
 * liveness probe (README, "Metrics and health").
 */
json_t *
pgd_http_health(pgd_t *d, int *code)
{
    int          failing, degraded;
    char         text[1200], spec[600];
    size_t       i, edges_ok;
    double       lag, limit;
    json_t      *doc, *problems;
    pgd_edge_t  *e;

    problems = json_array();
    failing = 0;
    degraded = 0;

    if (d->redis_state != PGD_UP || d->cmd == NULL) {
        failing = 1;
        snprintf(text, sizeof(text), "redis %s: changes cannot reach the "
                 "edges, which keep what they hold", d->redis_state
                 == PGD_DOWN ? "unreachable" : "not connected yet");
        json_array_append_new(problems, json_string(text));
    }

    if (d->store_state == PGD_STORE_UNINIT
        || d->store_state == PGD_STORE_BROKEN)
    {
        failing = 1;
        pgd_http_clean(d->store_said, spec, sizeof(spec));
        snprintf(text, sizeof(text), "store %s: %s",
                 pgd_http_store_state(d->store_state), spec);
        json_array_append_new(problems, json_string(text));
    }

    limit = (double) d->conf.reconcile_ms * PGD_HTTP_LAG_INTERVALS;
    limit = (limit < PGD_HTTP_LAG_MIN_MS ? PGD_HTTP_LAG_MIN_MS : limit) / 1000;
    edges_ok = 0;   /* up, and in step or not yet for long */

    for (i = 0; i < d->nedges; i++) {
        e = &d->edges[i];
        lag = pgd_http_lag_s(d, e);
        pgd_http_clean(e->edge.spec, spec, sizeof(spec));

        if (e->state == PGD_DOWN) {
            snprintf(text, sizeof(text), "edge %s: down (%.400s)", spec,
                     e->error);
        } else if (!pgd_http_in_step(d, e) && lag > limit) {
            snprintf(text, sizeof(text), "edge %s: not in step for %.0f s%s"
                     "%.400s%s", spec, lag, e->error[0] ? " (" : "",
                     e->error, e->error[0] ? ")" : "");
        } else {
            edges_ok++;
            continue;
        }

        pgd_http_clean(text, spec, sizeof(spec));
        json_array_append_new(problems, json_string(spec));
    }

    if (d->nedges > 0 && edges_ok == 0) {
        failing = 1;
    } else if (edges_ok < d->nedges) {
        degraded = 1;
    }

    for (i = 0; i < d->ncerts; i++) {
        if (d->certs[i].failures > 0) {
            degraded = 1;
            snprintf(text, sizeof(text), "certificate %s: %u failed "
                     "issuances in a row: %.400s", d->certs[i].conf.name,
                     d->certs[i].failures, d->certs[i].last_error);
            pgd_http_clean(text, spec, sizeof(spec));
            json_array_append_new(problems, json_string(spec));
        }
    }

    *code = failing ? 503 : 200;

    doc = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:o*}",
                    "status", failing ? "failing"
                              : degraded ? "degraded" : "ok",
                    "redis", d->redis_state == PGD_UP ? "up" : "down",
                    "store", pgd_http_store_state(d->store_state),
                    "revision", (json_int_t) d->store_revision,
                    "edges", (json_int_t) d->nedges,
                    "edges_ok", (json_int_t) edges_ok,
                    "problems", problems);

    return doc;
}


/* --- /status.json ------------------------------------------------------- */

/* The flags of one environment of the snapshot pushed, for the page:
 * counts of the lists, never the lists. */
static json_t *
pgd_http_flags(const json_t *flags)
{
    json_t      *out, *f, *v;
    const char  *name;
    json_t      *flag;

    out = json_array();

    json_object_foreach((json_t *) flags, name, flag) {
        v = json_object_get(flag, "rollout");

        f = json_pack("{s:s, s:b, s:f, s:I, s:I}",
                      "name", name,
                      "enabled", !json_is_false(json_object_get(flag,
                                                                "enabled")),
                      "rollout", json_is_number(v) ? json_number_value(v)
                                                   : 0.0,
                      "allow", (json_int_t) json_array_size(
                                   json_object_get(flag, "allow")),
                      "deny", (json_int_t) json_array_size(
                                  json_object_get(flag, "deny")));

        if (f == NULL) {
            continue;
        }

        /* strings as the store has them: the page puts them in as text */
        if ((v = json_object_get(flag, "requires")) != NULL) {
            json_object_set(f, "requires", v);
        }
        if ((v = json_object_get(flag, "description")) != NULL) {
            json_object_set(f, "description", v);
        }
        if ((v = json_object_get(flag, "updated_at")) != NULL) {
            json_object_set(f, "updated_at", v);
        }
        if ((v = json_object_get(flag, "updated_by")) != NULL) {
            json_object_set(f, "updated_by", v);
        }
        if ((v = json_object_get(flag, "version")) != NULL) {
            json_object_set(f, "version", v);
        }

        json_array_append_new(out, f);
    }

    return out;
}


json_t *
pgd_http_status(pgd_t *d)
{
    int          code;
    char         text[1024], issuer[PG_CONF_PATH_MAX + 16];
    size_t       i;
    int64_t      lag;
    json_t      *doc, *envs, *edges, *certs, *notes, *env, *edge, *cert;
    json_t      *flags, *note;
    const char  *key;
    pgd_cert_t  *c;
    struct timespec  now;

    clock_gettime(CLOCK_REALTIME, &now);

    envs = json_array();

    for (i = 0; i < d->nenvs; i++) {
        flags = json_object_get(json_object_get(d->good, "environments"),
                                d->envs[i]);
        env = json_pack("{s:s, s:o}", "name", d->envs[i],
                        "flags", pgd_http_flags(flags));
        json_array_append_new(envs, env);
    }

    edges = json_array();

    for (i = 0; i < d->nedges; i++) {
        pgd_edge_t *e = &d->edges[i];

        pgd_http_clean(e->edge.spec, text, sizeof(text));
        lag = pgd_http_lag_revisions(d, e);

        edge = json_pack("{s:s, s:s, s:b, s:f}",
                         "edge", text,
                         "state", e->state == PGD_UP ? "up"
                                  : e->state == PGD_DOWN ? "down"
                                  : "unknown",
                         "in_step", pgd_http_in_step(d, e),
                         "lag_seconds", pgd_http_lag_s(d, e));

        if (edge == NULL) {
            continue;
        }

        json_object_set_new(edge, "revision", e->revision >= 0
                            ? json_integer(e->revision) : json_null());
        json_object_set_new(edge, "lag_revisions", lag != INT64_MIN
                            ? json_integer(lag) : json_null());
        json_object_set_new(edge, "partial", json_boolean(
                            d->body && e->partial == d->body->revision));
        pgd_http_clean(e->error, text, sizeof(text));
        json_object_set_new(edge, "error", json_string(text));
        json_object_set(edge, "overrides",
                        e->overrides ? e->overrides : json_null());
        json_array_append_new(edges, edge);
    }

    certs = json_array();

    for (i = 0; i < d->ncerts; i++) {
        c = &d->certs[i];
        pgd_cert_issuer_text(&c->conf, issuer, sizeof(issuer));

        cert = json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:s, s:b}",
                         "name", c->conf.name,
                         "names", c->conf.names,
                         "issuer", issuer,
                         "next_renewal", (json_int_t) c->next_at,
                         "next_why", c->next_why ? c->next_why : "",
                         "failures", (json_int_t) c->failures,
                         "last_error", c->last_error,
                         "placeholder", c->placeholder != 0);

        if (cert == NULL) {
            /* not UTF-8 in the config: shown cleaned */
            pgd_http_clean(c->conf.name, text, sizeof(text));
            cert = json_pack("{s:s}", "name", text);
        }

        if (cert != NULL && c->have_info) {
            json_object_set_new(cert, "not_after",
                                json_integer(c->info.not_after));
            json_object_set_new(cert, "serial",
                                json_string(c->info.serial));
            json_object_set_new(cert, "issued_by",
                                json_string(c->info.issuer));
        }

        json_array_append_new(certs, cert);
    }

    notes = json_array();

    json_object_foreach(d->notes, key, note) {
        json_array_append_new(notes, json_pack("{s:s, s:O}", "key", key,
                                               "note", note));
    }

    doc = json_pack("{s:s, s:s, s:i, s:I, s:f, s:b, s:s, s:I}",
                    "version", PG_VERSION,
                    "host", d->host,
                    "pid", (int) getpid(),
                    "started", (json_int_t) d->started,
                    "now", now.tv_sec + now.tv_nsec / 1e9,
                    "redis_up", d->redis_state == PGD_UP && d->cmd != NULL,
                    "store", pgd_http_store_state(d->store_state),
                    "source_revision", (json_int_t) d->store_revision);

    if (doc == NULL) {
        json_decref(envs);
        json_decref(edges);
        json_decref(certs);
        json_decref(notes);
        return NULL;
    }

    json_object_set_new(doc, "snapshot_revision", d->body
                        ? json_integer(d->body->revision) : json_null());
    json_object_set_new(doc, "redis", json_string(d->where));
    json_object_set_new(doc, "health", pgd_http_health(d, &code));
    json_object_set_new(doc, "environments", envs);
    json_object_set_new(doc, "edges", edges);
    json_object_set_new(doc, "certificates", certs);
    json_object_set_new(doc, "notes", notes);
    json_object_set(doc, "audit", d->http->audit ? d->http->audit
                                                 : json_null());

    if (d->http->audit_error[0]) {
        json_object_set_new(doc, "audit_error",
                            json_string(d->http->audit_error));
    }

    return doc;
}
