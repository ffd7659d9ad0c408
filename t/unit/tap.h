/*
 * tap.h: the Test Anything Protocol for the C unit tests, which prove runs
 * (t/unit*.t). Header-only: each test program is one translation unit.
 *
 *   t_ok(cond, "name %d", i)   prints "ok N - name" or "not ok N - name"
 *   t_diag("...")              prints a "# " diagnostic line
 *   t_count, t_failed          for the plan line and the exit status
 */

#ifndef PG_TAP_H
#define PG_TAP_H

#include <stdarg.h>         /* va_list */
#include <stdio.h>          /* printf, vprintf, fflush */


static int  t_count;
static int  t_failed;


static int t_ok(int cond, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), unused));
static void t_diag(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), unused));


static int
t_ok(int cond, const char *fmt, ...)
{
    va_list  args;

    t_count++;

    if (!cond) {
        t_failed++;
    }

    printf("%sok %d - ", cond ? "" : "not ", t_count);
    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);
    printf("\n");

    /* a crash (or a sanitizer's abort) must not lose what came before */
    fflush(stdout);

    return cond;
}


static void
t_diag(const char *fmt, ...)
{
    va_list  args;

    printf("# ");
    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);
    printf("\n");
    fflush(stdout);
}


#endif /* PG_TAP_H */
