/*
 * pg_names.c: the syntax of names and company ids, and the reasons' names.
 */

#include "portal_gate.h"    /* the API this file implements */


int
pg_valid_name(const char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (s == NULL || len == 0 || len > PG_NAME_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return 0;
        }
    }

    return 1;
}


int
pg_valid_company(const char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (s == NULL || len == 0 || len > PG_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
        {
            return 0;
        }
    }

    return 1;
}


const char *
pg_reason_name(pg_reason_t reason)
{
    static const char  *names[] = {
        "unknown",          /* PG_REASON_UNKNOWN */
        "killed",           /* PG_REASON_KILLED */
        "requires",         /* PG_REASON_REQUIRES */
        "no_company",       /* PG_REASON_NO_COMPANY */
        "denied",           /* PG_REASON_DENIED */
        "allowed",          /* PG_REASON_ALLOWED */
        "rollout"           /* PG_REASON_ROLLOUT */
    };

    /* a reason added to pg_reason_t without a name fails to compile */
    _Static_assert(sizeof(names) / sizeof(names[0]) == PG_REASON_COUNT,
                   "every pg_reason_t has a name");

    if ((unsigned) reason >= sizeof(names) / sizeof(names[0])) {
        return "unknown";
    }

    return names[reason];
}
