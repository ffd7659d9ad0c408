/*
 * pg_cert_install.h: putting a certificate pair in place for nginx, as
 * DESIGN.md "Staging certificates" says: check the pair, keep the
 * previous one, write both atomically, `nginx -t` for every nginx, then
 * SIGHUP each master; put the previous pair back when `nginx -t` fails.
 * And the first-start placeholder, so that nginx can start before the
 * first issuance; and the recovery, at start, from an install a crash
 * interrupted.
 *
 * Implemented by pg_cert_install.c (the files) and pg_cert_nginx.c
 * (`nginx -t`, the SIGHUPs, pg_cert_reload_all()).
 *
 * Thread safety: these functions may run in the daemon's worker thread.
 * They keep no state; `nginx -t` is a child of this process, started with
 * fork/execv (no shell) and waited for by its pid only (never waitpid(-1):
 * nothing else's child is reaped). The daemon must not reap children with
 * waitpid(-1) either, nor set SIGCHLD to SIG_IGN (then no exit status can
 * be read, and every `nginx -t` counts as failed).
 *
 * Errors: PG_OK, PG_ERR, PG_CERT_NOT_RELOADED or PG_CERT_RECOVERED, with
 * one line in
 * pg_error_t naming the file or the nginx and what is wrong.
 * Ownership: every pointer is borrowed.
 */

#ifndef PG_CERT_INSTALL_H
#define PG_CERT_INSTALL_H

#include <stddef.h>             /* size_t */
#include "pg_cert.h"            /* pg_error_t, PG_OK, PG_ERR, PG_CERT_KEY_* */

#define PG_CERT_NGINX_BINARY   "/usr/sbin/nginx"
#define PG_CERT_NGINX_TIMEOUT  30       /* seconds an `nginx -t` may take */

/* pg_cert_install(): the new pair is in place, but at least one nginx
 * was not reloaded (its pid file is missing or wrong, or its master is
 * gone); err says which. It serves the new pair from its next reload. */
#define PG_CERT_NOT_RELOADED   1

/* pg_cert_recover(): an interrupted install was undone; err says what
 * (for the log). */
#define PG_CERT_RECOVERED      2

/* The suffix of the marker of an install under way: FULLCHAIN.installing */
#define PG_CERT_MARKER         ".installing"


/* One `nginx` line of portal-gated.conf. */
typedef struct {
    const char  *conf;      /* nginx -c CONF */
    const char  *pid;       /* the master's pid file: this process
                               sends the SIGHUP; NULL: no SIGHUP from
                               here (see by_binary) */
    int          by_binary; /* with pid NULL, nonzero: the reload is
                               `BINARY -s reload -c CONF [-p PREFIX]`,
                               nginx's own (it reads the pid file its
                               config names), or the package's root
                               helper's; 0: no reload at all (an nginx
                               that reads the pair at each handshake:
                               `nginx -t` only) */
    const char  *binary;    /* NULL: PG_CERT_NGINX_BINARY */
    const char  *prefix;    /* nginx -p PREFIX, or NULL */
    int          timeout;   /* seconds for `nginx -t`; 0:
                               PG_CERT_NGINX_TIMEOUT */
    volatile int *cancel;   /* or NULL: once nonzero, a running
                               `nginx -t` is killed and the install
                               fails ("cancelled") and is rolled back */
} pg_cert_nginx_t;


/*
 * The output paths. fullchain, privkey and their .prev are portal-gated's
 * own regular files:
 *   - a symlink at any of them is refused ("PATH is a symlink: ..."), never
 *     followed nor replaced: point fullchain/privkey at paths of their own,
 *     not at certbot's live/ links;
 *   - anything else that is not a regular file (a FIFO, a folder) is
 *     refused at once ("cannot read PATH: not a regular file");
 *   - a file replaced keeps its permission bits and owner (a key at 0640
 *     root:ssl-cert stays so), and a rollback restores them exactly; a
 *     file new there is 0600 (the key) or 0644 (the chain);
 *   - a key's .prev is 0600, or the key's own mode when that is stricter,
 *     with the key's owner; the chain's .prev has the chain's mode;
 *   - the folder holding each one must not be world-writable (refused:
 *     anyone could replace what is written there); the folders made are
 *     0755.
 */

/*
 * Install chain_pem (the certificate, then its issuers) at fullchain and
 * key_pem at privkey, for names:
 *
 *   1. pg_cert_check_pair() at now; a pair that fails touches nothing;
 *   2. the output paths are checked as said above, and the folders of
 *      fullchain and privkey are made (0755) if missing;
 *   3. what is in place is copied to FULLCHAIN.prev and PRIVKEY.prev
 *      (when it exists); a file in place that cannot be read, or a folder
 *      that cannot be written, stops here, with the pair in place
 *      unchanged;
 *   4. both files are written atomically (temp file, fsync, rename);
 *   5. `BINARY -t -q -c CONF [-p PREFIX]` for each of nginx[0..nginx_n);
 *      if one fails (exit status, signal, timeout), the previous files
 *      and their .prev are written back (or the new ones removed, when
 *      there were none), and err quotes the first line nginx wrote;
 *   6. SIGHUP to the pid in each nginx's pid file, if that process is
 *      the master of that nginx: comm "nginx" and a command line that
 *      starts "nginx: master process" (or whose argv[0] is BINARY); or
 *      valgrind (argv[0] valgrind*, comm memcheck*) with BINARY as one of
 *      its arguments. Anything else (a stale pid file whose pid went to a
 *      `tail -f /var/log/nginx/error.log`) is not signalled. The check and
 *      the signal go through one pidfd (Linux >= 5.3; kill() before), so
 *      a master that ends in between is never mistaken for its pid's
 *      next owner.
 *
 * PG_OK: installed and every nginx reloaded. PG_ERR: nothing changed (or
 * everything was put back). PG_CERT_NOT_RELOADED: installed, but step 6
 * failed for at least one nginx (the others were reloaded).
 */
int pg_cert_install(const char *fullchain, const char *privkey,
    const char *chain_pem, size_t chain_len, const char *key_pem,
    size_t key_len, char *const *names, size_t n,
    const pg_cert_nginx_t *nginx, size_t nginx_n, time_t now,
    pg_error_t *err);

/*
 * After a crash: an install killed half-way (between the renames of the
 * key and of the chain, or while `nginx -t` ran) can leave a pair that
 * does not match, on which nginx does not start, or one `nginx -t` never
 * passed. An install (and a placeholder) writes the marker
 * FULLCHAIN.installing (synced) before either live file changes and
 * removes it once through or rolled back; its lines "privkey=0|1" and
 * "fullchain=0|1" say whether each file existed before (a marker without
 * them: a .prev that is there counts).
 *
 * pg_cert_recover(), run by the daemon at its start, before the
 * placeholder and before any install to these paths (never while one may
 * be under way, in this process or another):
 *   - the marker there: the .prev pair is put back (atomically, with the
 *     mode and owner of the live files), or the files removed when there
 *     was none before, and the marker removed: PG_CERT_RECOVERED. If the
 *     .prev pair does not match, nothing is put back: the marker is removed
 *     when the pair in place matches (PG_ERR, said), else left (PG_ERR,
 *     "nothing changed");
 *   - no marker, but the pair in place does not match (pg_cert_check_key)
 *     while the .prev pair does: the .prev pair is put back,
 *     PG_CERT_RECOVERED;
 *   - temp files of our own naming (NAME.tmp.XXXXXX, NAME one of the pair,
 *     their .prev and the marker) left beside them are removed;
 *   - otherwise nothing changes: PG_OK (a pair that cannot serve is the
 *     daemon's to reissue). A symlink at a path is PG_ERR, as for an
 *     install.
 */
int pg_cert_recover(const char *fullchain, const char *privkey,
    pg_error_t *err);

/*
 * The first start: when fullchain or privkey does not exist, write a new
 * key of key_type (PG_CERT_KEY_*) at privkey (0600) and a self-signed
 * certificate for names, valid PG_CERT_PLACEHOLDER_LIFETIME, at fullchain
 * (0644), making their folders (0755); the output paths as said above (a
 * symlink, even a dangling one, is refused). An existing pair is never
 * touched:
 * *written = 0, PG_OK. When only one of the two files exists, it is kept
 * as FILE.prev before the placeholder replaces it. *written = 1 when the
 * placeholder was written. No `nginx -t`, no reload: nginx starts with it.
 */
int pg_cert_placeholder(const char *fullchain, const char *privkey,
    int key_type, char *const *names, size_t n, int *written,
    pg_error_t *err);

/*
 * SIGHUP to the master of each nginx (after the same check that it is
 * nginx as an install makes): for a pair installed while a master could
 * not be signalled (PG_CERT_NOT_RELOADED). PG_ERR names the first that
 * still cannot be; the others are signalled all the same.
 */
int pg_cert_reload_all(const pg_cert_nginx_t *nginx, size_t nginx_n,
    pg_error_t *err);

#endif /* PG_CERT_INSTALL_H */
