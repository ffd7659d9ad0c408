/*
 * pgd_files.h: portal-gated's own files and streams, for running without
 * systemd as nginx runs: the log file (`error_log FILE;`, reopened on
 * SIGUSR1 for logrotate), the pid file (`pid FILE;`), -d, and the
 * journal's priorities under systemd.
 *
 *   - the log goes to stderr; once the daemon has started (-d: once it has
 *     forked), to the error_log file instead: fd 2 becomes the file, so a
 *     sanitizer's or a library's stderr lands there too. Until then a
 *     failure is said on the first stderr (-d: by the parent);
 *   - when fd 2 is the journal's stream ($JOURNAL_STREAM), a line is
 *     "<5>[notice] ...": the journal takes the priority from it and keeps
 *     the time and the pid itself (pgd_files_journal(), for
 *     pgd_log_write());
 *   - the pid file is written in place once started, with or without
 *     -d: opened, flock()ed, then truncated and written, held open and
 *     locked for the daemon's life, and removed at a clean exit when it
 *     still names this process; a second start with the same pid file
 *     finds it locked and exits 1, "already running (pid N)", before it
 *     opens or binds anything (or, started at the same moment, when it
 *     does not get the lock), the file untouched;
 *   - with -d the parent waits until the daemon has started or failed
 *     (pgd_files_started()) and exits 0, or 1 saying why;
 *   - a HUP that changes error_log or pid moves them; one whose new file
 *     cannot be opened or written is refused whole; a pid line that names
 *     the same file by another path (/var/run -> /run) only renames it.
 *
 * State: this file's statics, process-wide as stderr is (the log's fd
 * before it becomes fd 2, the first stderr, the pipe to the parent, the pid
 * file written). Errors: PG_OK or PG_ERR with err filled.
 */

#ifndef PGD_FILES_H
#define PGD_FILES_H

#include "pgd.h"                /* pgd_t, pg_conf_t, pg_error_t */


/* First thing at start, and whenever fd 2 changes: is fd 2 the journal? */
void pgd_files_journal_check(void);

/* Lines in the journal's form ("<N>[level] ...")? */
int pgd_files_journal(void);

/* -t: can the error_log file and the pid file be written? */
int pgd_files_check(const pg_conf_t *conf, pg_error_t *err);

/* Before -d: open the error_log file, if any (not yet fd 2). */
int pgd_files_open(const pg_conf_t *conf, pg_error_t *err);

/* -d: fork; the parent waits for pgd_files_started() and exits; the
 * daemon returns PG_OK. PG_ERR (said on stderr) when it could not fork. */
int pgd_files_daemonize(pgd_t *d);

/* Once daemonized (or in the foreground, at the same point): the log goes
 * to the error_log file from now on. */
void pgd_files_log_start(void);

/* At start, once the signal handlers are in place: the pid file. */
int pgd_files_pid(const pg_conf_t *conf, pg_error_t *err);

/* Started (failure NULL), or not and why: -d's parent exits with it. */
void pgd_files_started(const char *failure);

/* SIGUSR1: reopen the error_log file; said in the log either way. */
void pgd_files_reopen(pgd_t *d);

/* SIGHUP, before conf replaces d->conf: a changed error_log or pid line;
 * PG_ERR: nothing changed, the reload is refused. */
int pgd_files_reconfigure(pgd_t *d, const pg_conf_t *conf,
    pg_error_t *err);

/* At exit: remove the pid file if it still names this process. */
void pgd_files_end(void);

#endif /* PGD_FILES_H */
