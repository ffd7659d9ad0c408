/*
 * pg_cert_private.h: what the certificates' toolbox files share, and
 * nothing outside them uses. Not an API: pg_cert.h and pg_cert_install.h
 * are. The files:
 *   pg_cert.c           keys, CSRs, X.509, the placeholder and local CA
 *                       certificates, the files' bounded read and atomic
 *                       write (pg_cert.h)
 *   pg_cert_renew.c     when to renew: lifetime rule, retries, ARI
 *                       (pg_cert.h, "when to renew")
 *   pg_cert_install.c   install, rollback, placeholder, recovery after a
 *                       crash (pg_cert_install.h)
 *   pg_cert_nginx.c     `nginx -t`, the master's check and SIGHUP,
 *                       pg_cert_reload_all() (pg_cert_install.h)
 *
 * Errors and ownership as in pg_cert.h.
 */

#ifndef PG_CERT_PRIVATE_H
#define PG_CERT_PRIVATE_H

#include "pg_cert.h"            /* pg_error_t, PG_OK, PG_ERR */
#include "pg_cert_install.h"    /* pg_cert_nginx_t */


/* --- pg_cert.c ---------------------------------------------------------- */

/* err = the message, cut to fit (messages quote other messages); no
 * OpenSSL reason added, unlike pg_cert.c's own pg_cert_fail(). */
void pg_cert_msg(pg_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The first half of pg_cert_write_file_owned(): data written to a temp
 * file beside path (mode, owner as there), fsynced and closed; its name in
 * tmp. The caller renames it over path (then syncs the folder), or
 * unlinks it. An install stages both files of a pair first and renames
 * them back to back: nginx starting between the two renames would read a
 * new key beside the old chain and refuse to start ("key values
 * mismatch"), and the write and fsync of the second file made that
 * moment milliseconds long.
 */
int pg_cert_file_stage(const char *path, const char *data, size_t len,
    int mode, uid_t uid, gid_t gid, char *tmp, size_t tmp_size,
    pg_error_t *err);

/* The folder of path synced: a rename or an unlink in it outlives a
 * crash. */
void pg_cert_dir_sync(const char *path);

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12), for
 * any year: timegm() is not in C99, and the years of RFC 9773's example
 * certificate (year 1) are beyond some of its implementations. */
long long pg_cert_days(long long y, int m, int d);


/* --- pg_cert_nginx.c, for pg_cert_install.c ----------------------------- */

/*
 * `BINARY -t -q -c CONF [-p PREFIX]`: PG_OK when it exits 0 within the
 * timeout; else err names the config and quotes the first line nginx
 * wrote on stderr (with -q, that is its first error).
 */
int pg_cert_nginx_test(const pg_cert_nginx_t *ngx, pg_error_t *err);

/* SIGHUP to the master in ngx->pid, or with ngx->by_binary `BINARY -s
 * reload -c CONF`: nginx re-reads its config and the certificates, and its
 * old workers finish their connections. */
int pg_cert_reload(const pg_cert_nginx_t *ngx, pg_error_t *err);

/* Where a master is looked at before its SIGHUP: "/proc", or a test's
 * folder in its place (t/unit/test_cert.c: a process that exists and
 * cannot be inspected, as under the packaged unit's ProtectProc=). */
extern const char  *pg_cert_proc_root;

#endif /* PG_CERT_PRIVATE_H */
