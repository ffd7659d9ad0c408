/*
 * pg_cert_renew.c: when to renew a certificate, and when to try again
 * after a failure (pg_cert.h, "when to renew"): DESIGN.md's rule of the
 * lifetime, the retry schedule, and RFC 9773's renewal window (ARI) with
 * the RFC 3339 times it is given in. Arithmetic and JSON: no OpenSSL, no
 * files.
 *
 * Thread safety: nothing is kept between calls; every function may run
 * in the daemon's worker thread.
 */

#include <stdio.h>              /* snprintf */
#include <time.h>               /* time_t */
#include <jansson.h>            /* json_loadb: ARI's renewalInfo */
#include "pg_cert_private.h"    /* the API this file implements (pg_cert.h),
                                   pg_cert_days */


#define PG_CERT_DAY            86400
#define PG_CERT_SHORT_LIFE     (10 * PG_CERT_DAY)   /* renew at 1/2 */
#define PG_CERT_RETRY_AFTER_MAX  (30L * PG_CERT_DAY) /* a CA's Retry-After
                                                        kept, at most */


time_t
pg_cert_renew_at(time_t not_before, time_t not_after, double jitter)
{
    double  life, at;

    if (not_after <= not_before) {
        return not_before;
    }

    if (jitter != jitter) {             /* NaN: no jitter */
        jitter = 0.0;

    } else if (jitter > 1.0) {
        jitter = 1.0;

    } else if (jitter < -1.0) {
        jitter = -1.0;
    }

    life = (double) not_after - (double) not_before;
    at = life * (life <= PG_CERT_SHORT_LIFE ? 1.0 / 2 : 2.0 / 3)
         + jitter * 0.02 * life;

    return not_before + (time_t) at;
}


time_t
pg_cert_retry_at(time_t now, unsigned failures, long retry_after,
    time_t not_after)
{
    time_t  delay, cap;

    switch (failures) {
    case 0:
    case 1:
        delay = 60;
        break;
    case 2:
        delay = 600;
        break;
    case 3:
        delay = 6000;
        break;
    default:
        delay = PG_CERT_DAY;
    }

    /* a CA's Retry-After wins when it is later; an absurd one (a bug, a
     * hostile answer) is held to 30 days rather than forever */
    if (retry_after > PG_CERT_RETRY_AFTER_MAX) {
        retry_after = PG_CERT_RETRY_AFTER_MAX;
    }

    if (retry_after > delay) {
        delay = retry_after;
    }

    /* the certificate in place must not expire while the next try waits:
     * at most a tenth of the time it has left, so that tries come closer
     * together as its end nears (once it has ended, the schedule alone) */
    if (not_after != 0 && not_after > now) {
        cap = (not_after - now) / 10;
        cap = (cap < 60) ? 60 : cap;
        delay = (delay > cap) ? cap : delay;
    }

    return now + delay;
}


/* n decimal digits at *p, as *v; p moves past them. */
static int
pg_cert_digits(const char **p, int n, int *v)
{
    int  i;

    *v = 0;

    for (i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9') {
            return PG_ERR;
        }

        *v = *v * 10 + ((*p)[i] - '0');
    }

    *p += n;

    return PG_OK;
}


/*
 * An RFC 3339 date-time: "2025-01-02T04:00:00Z", with any fraction of a
 * second (dropped: a renewal needs no more), "t"/"z" in lowercase, and a
 * "+hh:mm"/"-hh:mm" offset in place of Z. Nothing else, nothing after.
 */
static int
pg_cert_rfc3339(const char *s, time_t *out)
{
    int          year, mon, day, hour, min, sec, oh, om, sign;
    const char  *p;
    long long    t;

    p = s;

    if (pg_cert_digits(&p, 4, &year) != PG_OK || *p++ != '-'
        || pg_cert_digits(&p, 2, &mon) != PG_OK || *p++ != '-'
        || pg_cert_digits(&p, 2, &day) != PG_OK
        || (*p != 'T' && *p != 't'))
    {
        return PG_ERR;
    }

    p++;

    if (pg_cert_digits(&p, 2, &hour) != PG_OK || *p++ != ':'
        || pg_cert_digits(&p, 2, &min) != PG_OK || *p++ != ':'
        || pg_cert_digits(&p, 2, &sec) != PG_OK)
    {
        return PG_ERR;
    }

    if (mon < 1 || mon > 12 || day < 1 || hour > 23 || min > 59 || sec > 60)
    {
        return PG_ERR;
    }

    /* the day against its month's length, leap years included: the days
     * from this month's first to the next one's */
    if (day > pg_cert_days(year + (mon == 12), mon % 12 + 1, 1)
              - pg_cert_days(year, mon, 1))
    {
        return PG_ERR;
    }

    if (*p == '.') {
        p++;

        if (*p < '0' || *p > '9') {
            return PG_ERR;
        }

        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }

    t = pg_cert_days(year, mon, day) * PG_CERT_DAY + hour * 3600 + min * 60
        + sec;

    if (*p == 'Z' || *p == 'z') {
        p++;

    } else if (*p == '+' || *p == '-') {
        sign = (*p++ == '-') ? -1 : 1;

        if (pg_cert_digits(&p, 2, &oh) != PG_OK || *p++ != ':'
            || pg_cert_digits(&p, 2, &om) != PG_OK || oh > 23 || om > 59)
        {
            return PG_ERR;
        }

        /* local time = UTC + offset */
        t -= sign * (oh * 3600 + om * 60);

    } else {
        return PG_ERR;
    }

    if (*p != '\0') {
        return PG_ERR;
    }

    *out = (time_t) t;

    return PG_OK;
}


int
pg_cert_ari_parse(const char *json, size_t len, time_t *start, time_t *end,
    pg_error_t *err)
{
    int           rc;
    char         *p, shown[41];
    json_t       *root, *window, *v;
    time_t        t[2];
    const char   *key[2] = { "start", "end" };
    json_error_t  jerr;
    size_t        i;

    root = json_loadb(json, len, 0, &jerr);

    if (root == NULL) {
        snprintf(err->text, sizeof(err->text), "renewalInfo is not JSON: %s "
                 "(line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return PG_ERR;
    }

    rc = PG_ERR;
    window = json_is_object(root) ? json_object_get(root, "suggestedWindow")
                                  : NULL;

    if (!json_is_object(window)) {
        snprintf(err->text, sizeof(err->text), "renewalInfo has no "
                 "suggestedWindow object");
        goto done;
    }

    for (i = 0; i < 2; i++) {
        v = json_object_get(window, key[i]);

        if (!json_is_string(v)) {
            snprintf(err->text, sizeof(err->text), "renewalInfo's "
                     "suggestedWindow has no \"%s\" string", key[i]);
            goto done;
        }

        if (pg_cert_rfc3339(json_string_value(v), &t[i]) != PG_OK) {
            /* the CA's text, shown without its control characters */
            snprintf(shown, sizeof(shown), "%s", json_string_value(v));

            for (p = shown; *p != '\0'; p++) {
                *p = ((unsigned char) *p < ' ' || *p == 0x7f) ? '?' : *p;
            }

            snprintf(err->text, sizeof(err->text), "renewalInfo's "
                     "suggestedWindow.%s \"%s\" is not an RFC 3339 time",
                     key[i], shown);
            goto done;
        }
    }

    if (t[1] <= t[0]) {
        snprintf(err->text, sizeof(err->text), "renewalInfo's "
                 "suggestedWindow ends before it starts, or at its start");
        goto done;
    }

    *start = t[0];
    *end = t[1];
    rc = PG_OK;

done:

    json_decref(root);

    return rc;
}


time_t
pg_cert_ari_pick(time_t start, time_t end, time_t now, time_t not_before,
    time_t not_after, double u)
{
    time_t  t, latest;

    /* u outside [0, 1) (NaN included) counts as 0 */
    if (!(u >= 0.0 && u < 1.0)) {
        u = 0.0;
    }

    /* a window that opens once the certificate has ended is the CA's
     * mistake (or a hostile answer): following it is an outage */
    if (not_after != 0 && start > not_after) {
        return PG_CERT_ARI_IGNORED;
    }

    t = (end > start) ? start + (time_t) (u * ((double) end - start))
                      : start;

    /* never in the last tenth of the lifetime: room for the retries of a
     * renewal that fails */
    if (not_after != 0) {
        latest = not_after - ((not_after > not_before)
                              ? (not_after - not_before) / 10 : 0);
        t = (t > latest) ? latest : t;
    }

    /* RFC 9773 section 4.2: a time in the past means now */
    return (t < now) ? now : t;
}
