/*
 * pg_cert_install.c: a new certificate pair put in place for nginx, and
 * the first-start placeholder; see pg_cert_install.h.
 *
 * The order of an install is what makes it safe: nothing is written until
 * the pair is known good; the previous files are kept (on disk as .prev,
 * and in memory to put them back); nginx is reloaded only once every
 * `nginx -t` has passed, so that a master never reads a pair, or a config,
 * it would refuse.
 *
 * The files at the output paths are ours alone: a symlink there (or at a
 * .prev) is refused rather than followed or replaced, files are read with
 * O_NOFOLLOW | O_NONBLOCK (a FIFO is refused, never waited on), and what
 * an install replaces keeps its mode and owner, restored exactly when it
 * is put back.
 *
 * `nginx -t` and the SIGHUPs are pg_cert_nginx.c's; what the two files
 * share is in pg_cert_private.h.
 *
 * The file's sections:
 *   files             the pair's files: read and written with their mode
 *                     and owner, kept as .prev, put back
 *   the marker        FULLCHAIN.installing, while an install is under way
 *   install           the steps of pg_cert_install(), and its rollback
 *   the placeholder   a first-start pair
 *   recovery          pg_cert_recover(), after a crash
 */

#include <dirent.h>             /* opendir: a crash's temp files */
#include <errno.h>              /* errno, ENOENT, ENOTDIR, EEXIST */
#include <fcntl.h>              /* open, O_* */
#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* free */
#include <string.h>             /* memset, strcmp, strchr, strerror,
                                   strrchr */
#include <sys/stat.h>           /* lstat, stat, fstat, mkdir, fchmod */
#include <unistd.h>             /* close, unlink, fsync */
#include <openssl/crypto.h>     /* OPENSSL_cleanse: keys in memory */
#include "pg_cert_private.h"    /* the API this file implements
                                   (pg_cert_install.h), pg_cert_msg,
                                   pg_cert_nginx_test, pg_cert_reload */


#define PG_CERT_PATH_MAX     4096
#define PG_CERT_SHOWN        120        /* bytes of a path in a message */


/* One file as it was: its bytes, permission bits and owner, or that it
 * was absent. */
typedef struct {
    int          exists;
    char        *data;          /* new, or NULL when absent */
    size_t       len;
    int          mode;          /* st_mode & 0777 */
    uid_t        uid;
    gid_t        gid;
} pg_cert_file_t;


/* A file of the pair before an install, and its .prev. */
typedef struct {
    const char      *path;
    int              key;       /* a private key: its .prev is never more
                                   readable than 0600 */
    int              kept;      /* pg_cert_keep() went through: what was
                                   there is known, and .prev written; until
                                   then pg_cert_put_back*() do nothing */
    pg_cert_file_t   cur;       /* what was at path */
    pg_cert_file_t   prev;      /* what was at PATH.prev */
    char             prev_path[PG_CERT_PATH_MAX];
} pg_cert_old_t;


static int pg_cert_mkdirs(const char *file, pg_error_t *err);
static int pg_cert_lstat(const char *path, int *exists, pg_error_t *err);
static int pg_cert_no_links(const char *fullchain, const char *privkey,
    pg_error_t *err);
static int pg_cert_file_read(const char *path, pg_cert_file_t *f,
    pg_error_t *err);
static int pg_cert_file_write(const char *path, const pg_cert_file_t *f,
    pg_error_t *err);
static void pg_cert_file_free(pg_cert_file_t *f);
static void pg_cert_old_init(pg_cert_old_t *old, const char *path, int key);
static int pg_cert_keep(pg_cert_old_t *old, pg_error_t *err);
static int pg_cert_stage_new(const pg_cert_old_t *old, const char *data,
    size_t len, char *tmp, size_t tmp_size, pg_error_t *err);
static int pg_cert_write_pair(const pg_cert_old_t *old_key,
    const char *key_pem, size_t key_len, const pg_cert_old_t *old_chain,
    const char *chain_pem, size_t chain_len, pg_error_t *err);
static int pg_cert_put_back_live(const pg_cert_old_t *old, pg_error_t *err);
static int pg_cert_put_back_prev(const pg_cert_old_t *old, pg_error_t *err);
static void pg_cert_old_free(pg_cert_old_t *old);
static int pg_cert_path(char *buf, size_t size, const char *file,
    const char *suffix, pg_error_t *err);
static int pg_cert_marker_write(const char *marker, const pg_cert_old_t *key,
    const pg_cert_old_t *chain, pg_error_t *err);
static int pg_cert_marker_remove(const char *marker, pg_error_t *err);
static int pg_cert_rollback(const pg_cert_old_t *old_key,
    const pg_cert_old_t *old_chain, const char *marker, pg_error_t *err);
static int pg_cert_temp_ours(const char *name, const char *base);
static void pg_cert_temps_remove(const char *file, const char *const *bases,
    size_t n);


/* --- files -------------------------------------------------------------- */

/*
 * The folders above file, made 0755 (exactly: the umask aside) where they
 * are missing, as `mkdir -p` does; each one made is opened without
 * following a link and its mode set on it (a folder swapped for a link
 * between mkdir and the chmod is refused, never chmod'ed through). The
 * folder that holds file must not be world-writable: anyone could replace
 * what is written there.
 */
static int
pg_cert_mkdirs(const char *file, pg_error_t *err)
{
    int          fd;
    char         dir[PG_CERT_PATH_MAX];
    char        *p, *slash;
    struct stat  st;

    if ((size_t) snprintf(dir, sizeof(dir), "%s", file) >= sizeof(dir)) {
        pg_cert_msg(err, "%.*s: the path is too long", PG_CERT_SHOWN, file);
        return PG_ERR;
    }

    slash = strrchr(dir, '/');

    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");    /* the current folder */
        slash = dir + 1;

    } else if (slash == dir) {
        slash[1] = '\0';                    /* "/" */
        slash++;

    } else {
        *slash = '\0';
    }

    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {

        /* each prefix in turn; one that exists is passed over */
        for (p = dir + 1; ; p++) {

            if (*p != '/' && *p != '\0') {
                continue;
            }

            *p = '\0';

            if (mkdir(dir, 0755) == 0) {
                fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW
                               | O_CLOEXEC);

                if (fd == -1 || fchmod(fd, 0755) == -1) {
                    pg_cert_msg(err, "cannot create folder %.*s: %s",
                                PG_CERT_SHOWN, dir, strerror(errno));

                    if (fd != -1) {
                        close(fd);
                    }

                    return PG_ERR;
                }

                close(fd);

            } else if (errno != EEXIST || stat(dir, &st) != 0
                       || !S_ISDIR(st.st_mode))
            {
                pg_cert_msg(err, "cannot create folder %.*s: %s",
                            PG_CERT_SHOWN, dir,
                            errno == EEXIST ? "a file is in the way"
                                            : strerror(errno));
                return PG_ERR;
            }

            if (p == slash) {
                break;
            }

            *p = '/';
        }
    }

    /* the folder itself, as it is now */
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd == -1 || fstat(fd, &st) == -1) {
        pg_cert_msg(err, "cannot open folder %.*s: %s", PG_CERT_SHOWN, dir,
                    strerror(errno));

        if (fd != -1) {
            close(fd);
        }

        return PG_ERR;
    }

    close(fd);

    if (st.st_mode & S_IWOTH) {
        pg_cert_msg(err, "folder %.*s is world-writable: anyone could "
                    "replace what is written there", PG_CERT_SHOWN, dir);
        return PG_ERR;
    }

    return PG_OK;
}


/*
 * *exists: something is at path (not following a link; a folder there is
 * an error later, when it is read). A symlink is refused: portal-gated
 * writes its files itself, and a link would be replaced by a file (and a
 * rollback could not make it again) or read through (a link to a secret
 * copied to a .prev). Errors other than "absent" are errors, never "no
 * file".
 */
static int
pg_cert_lstat(const char *path, int *exists, pg_error_t *err)
{
    struct stat  st;

    if (lstat(path, &st) == 0) {
        if (S_ISLNK(st.st_mode)) {
            pg_cert_msg(err, "%.*s is a symlink: portal-gated writes regular "
                        "files; point fullchain/privkey at paths of their "
                        "own, not certbot's live/ links", PG_CERT_SHOWN,
                        path);
            return PG_ERR;
        }

        *exists = 1;
        return PG_OK;
    }

    if (errno == ENOENT || errno == ENOTDIR) {
        *exists = 0;
        return PG_OK;
    }

    pg_cert_msg(err, "cannot read %.*s: %s", PG_CERT_SHOWN, path,
                strerror(errno));

    return PG_ERR;
}


/* No symlink at fullchain, privkey, or their .prev: checked before an
 * install or a placeholder writes anything. */
static int
pg_cert_no_links(const char *fullchain, const char *privkey,
    pg_error_t *err)
{
    int          exists, i;
    char         path[PG_CERT_PATH_MAX];
    const char  *file;

    for (i = 0; i < 4; i++) {
        file = (i % 2) ? privkey : fullchain;

        if ((size_t) snprintf(path, sizeof(path), "%s%s", file,
                              i < 2 ? "" : ".prev")
            >= sizeof(path))
        {
            pg_cert_msg(err, "%.*s: the path is too long", PG_CERT_SHOWN,
                        file);
            return PG_ERR;
        }

        if (pg_cert_lstat(path, &exists, err) != PG_OK) {
            return PG_ERR;
        }
    }

    return PG_OK;
}


/* *f = what is at path: its bytes and attributes, or "absent". A symlink,
 * a FIFO, anything but a regular file is an error. */
static int
pg_cert_file_read(const char *path, pg_cert_file_t *f, pg_error_t *err)
{
    struct stat  st;

    memset(f, 0, sizeof(pg_cert_file_t));

    if (pg_cert_lstat(path, &f->exists, err) != PG_OK) {
        return PG_ERR;
    }

    if (!f->exists) {
        return PG_OK;
    }

    if (pg_cert_read_file_nofollow(path, &f->data, &f->len, &st, err)
        != PG_OK)
    {
        f->exists = 0;
        return PG_ERR;
    }

    f->mode = (int) (st.st_mode & 0777);
    f->uid = st.st_uid;
    f->gid = st.st_gid;

    return PG_OK;
}


/* path made what f says: its bytes with its mode and owner (atomically),
 * or removed when f is absent. */
static int
pg_cert_file_write(const char *path, const pg_cert_file_t *f,
    pg_error_t *err)
{
    if (f->exists) {
        return pg_cert_write_file_owned(path, f->data, f->len, f->mode,
                                        f->uid, f->gid, err);
    }

    if (unlink(path) == -1 && errno != ENOENT) {
        pg_cert_msg(err, "cannot remove %.*s: %s", PG_CERT_SHOWN, path,
                    strerror(errno));
        return PG_ERR;
    }

    return PG_OK;
}


/* The memory of f, wiped: it may be a key. */
static void
pg_cert_file_free(pg_cert_file_t *f)
{
    if (f->data != NULL) {
        OPENSSL_cleanse(f->data, f->len);
        free(f->data);
    }

    f->data = NULL;
}


static void
pg_cert_old_init(pg_cert_old_t *old, const char *path, int key)
{
    memset(old, 0, sizeof(pg_cert_old_t));
    old->path = path;
    old->key = key;
}


/*
 * old->cur = what is at old->path now (absent, or its bytes and
 * attributes), and a copy of it at PATH.prev; what PATH.prev held is kept
 * in old->prev, so that a failed install puts that back too, and .prev
 * always holds the pair before the one in place. A key's .prev is never
 * more readable than 0600 (the key's own mode when stricter), with the
 * key's owner. old->kept is set last, once all of it is done: a file that
 * exists but cannot be read is an error, never "no file", so that nothing
 * is later "put back" as absent (removed) that was only unreadable.
 */
static int
pg_cert_keep(pg_cert_old_t *old, pg_error_t *err)
{
    pg_cert_file_t  copy;

    old->kept = 0;

    if ((size_t) snprintf(old->prev_path, sizeof(old->prev_path), "%s.prev",
                          old->path)
        >= sizeof(old->prev_path))
    {
        pg_cert_msg(err, "%.*s: the path is too long", PG_CERT_SHOWN,
                    old->path);
        return PG_ERR;
    }

    if (pg_cert_file_read(old->path, &old->cur, err) != PG_OK) {
        return PG_ERR;
    }

    if (!old->cur.exists) {
        old->kept = 1;
        return PG_OK;
    }

    if (pg_cert_file_read(old->prev_path, &old->prev, err) != PG_OK) {
        return PG_ERR;
    }

    copy = old->cur;

    if (old->key) {
        copy.mode &= 0600;
    }

    if (pg_cert_file_write(old->prev_path, &copy, err) != PG_OK) {
        return PG_ERR;
    }

    old->kept = 1;

    return PG_OK;
}


/* The new bytes at old->path, with the mode and owner of the file they
 * replace; a file new there gets 0600 (a key) or 0644. */
static int
pg_cert_stage_new(const pg_cert_old_t *old, const char *data, size_t len,
    char *tmp, size_t tmp_size, pg_error_t *err)
{
    if (old->cur.exists) {
        return pg_cert_file_stage(old->path, data, len, old->cur.mode,
                                  old->cur.uid, old->cur.gid, tmp, tmp_size,
                                  err);
    }

    return pg_cert_file_stage(old->path, data, len, old->key ? 0600 : 0644,
                              (uid_t) -1, (gid_t) -1, tmp, tmp_size, err);
}


/*
 * The new pair in place: both files staged first (written, fsynced), then
 * renamed back to back, the key first, then the folders synced. Between
 * the two renames a new key stands beside the old chain, for the time of
 * one rename(): an nginx that starts then refuses the pair, so that
 * moment is kept as short as it can be. On failure nothing is left
 * staged; a key renamed already is the caller's to roll back.
 */
static int
pg_cert_write_pair(const pg_cert_old_t *old_key, const char *key_pem,
    size_t key_len, const pg_cert_old_t *old_chain, const char *chain_pem,
    size_t chain_len, pg_error_t *err)
{
    int          saved;
    char         ktmp[PG_CERT_PATH_MAX + 16], ctmp[PG_CERT_PATH_MAX + 16];
    const char  *failed;

    if (pg_cert_stage_new(old_key, key_pem, key_len, ktmp, sizeof(ktmp),
                          err)
        != PG_OK)
    {
        return PG_ERR;
    }

    if (pg_cert_stage_new(old_chain, chain_pem, chain_len, ctmp,
                          sizeof(ctmp), err)
        != PG_OK)
    {
        (void) unlink(ktmp);
        return PG_ERR;
    }

    failed = NULL;

    if (rename(ktmp, old_key->path) == -1) {
        saved = errno;
        failed = old_key->path;
        (void) unlink(ktmp);
        (void) unlink(ctmp);

    } else if (rename(ctmp, old_chain->path) == -1) {
        saved = errno;
        failed = old_chain->path;
        (void) unlink(ctmp);
    }

    if (failed != NULL) {
        pg_cert_msg(err, "cannot write %.*s: %s", PG_CERT_SHOWN, failed,
                    strerror(saved));
        return PG_ERR;
    }

    /* the renames survive a crash once the folders are synced */
    pg_cert_dir_sync(old_key->path);
    pg_cert_dir_sync(old_chain->path);

    return PG_OK;
}


/* The file back as pg_cert_keep() found it, attributes included (or
 * removed, when there was none); nothing when pg_cert_keep() did not go
 * through (it changed nothing then). */
static int
pg_cert_put_back_live(const pg_cert_old_t *old, pg_error_t *err)
{
    if (!old->kept) {
        return PG_OK;
    }

    return pg_cert_file_write(old->path, &old->cur, err);
}


/* Its .prev back as pg_cert_keep() found it; no .prev was made when
 * there was nothing in place. */
static int
pg_cert_put_back_prev(const pg_cert_old_t *old, pg_error_t *err)
{
    if (!old->kept || !old->cur.exists) {
        return PG_OK;
    }

    return pg_cert_file_write(old->prev_path, &old->prev, err);
}


/* The memory pg_cert_keep() took, the key's wiped. */
static void
pg_cert_old_free(pg_cert_old_t *old)
{
    pg_cert_file_free(&old->cur);
    pg_cert_file_free(&old->prev);
}


/* buf = file then suffix, or a message when it does not fit. */
static int
pg_cert_path(char *buf, size_t size, const char *file, const char *suffix,
    pg_error_t *err)
{
    if ((size_t) snprintf(buf, size, "%s%s", file, suffix) >= size) {
        pg_cert_msg(err, "%.*s: the path is too long", PG_CERT_SHOWN, file);
        return PG_ERR;
    }

    return PG_OK;
}


/* --- the marker: an install under way ----------------------------------- */

/*
 * FULLCHAIN.installing, written (and synced) once both .prev files hold the
 * pair in place and before either live file changes; removed once the
 * install is through, or rolled back. Whoever finds it at start knows that
 * the live pair may be half new, or new and never passed by `nginx -t`:
 * pg_cert_recover() puts the .prev pair back. It says whether each file
 * existed before (when not, there is no .prev: the file is removed).
 */
static int
pg_cert_marker_write(const char *marker, const pg_cert_old_t *key,
    const pg_cert_old_t *chain, pg_error_t *err)
{
    int   n;
    char  text[256];

    n = snprintf(text, sizeof(text), "# portal-gated: an install of this "
                 "pair is under way; at its start, portal-gated puts the "
                 ".prev pair back if this file is still here\n"
                 "privkey=%d\nfullchain=%d\n", key->cur.exists ? 1 : 0,
                 chain->cur.exists ? 1 : 0);

    return pg_cert_write_file(marker, text, (size_t) n, 0600, err);
}


static int
pg_cert_marker_remove(const char *marker, pg_error_t *err)
{
    if (unlink(marker) == -1 && errno != ENOENT) {
        pg_cert_msg(err, "cannot remove %.*s: %s", PG_CERT_SHOWN, marker,
                    strerror(errno));
        return PG_ERR;
    }

    pg_cert_dir_sync(marker);

    return PG_OK;
}


/* --- install ------------------------------------------------------------ */

/*
 * The pair back as it was after a failed step: the live files first, then
 * the marker removed, then their .prev. A crash in the middle leaves
 * either the marker with the .prev pair whole (pg_cert_recover() finishes
 * the job) or the live pair whole. Every file is tried; err says the first
 * that could not be; the marker stays when a live file could not be put
 * back.
 */
static int
pg_cert_rollback(const pg_cert_old_t *old_key, const pg_cert_old_t *old_chain,
    const char *marker, pg_error_t *err)
{
    int         rc;
    pg_error_t  why;

    rc = PG_OK;

    if (pg_cert_put_back_live(old_key, err) != PG_OK) {
        rc = PG_ERR;
    }

    if (pg_cert_put_back_live(old_chain, rc == PG_OK ? err : &why) != PG_OK)
    {
        rc = PG_ERR;
    }

    if (rc != PG_OK) {
        return rc;
    }

    if (pg_cert_marker_remove(marker, err) != PG_OK) {
        rc = PG_ERR;
    }

    if (pg_cert_put_back_prev(old_key, rc == PG_OK ? err : &why) != PG_OK) {
        rc = PG_ERR;
    }

    if (pg_cert_put_back_prev(old_chain, rc == PG_OK ? err : &why) != PG_OK)
    {
        rc = PG_ERR;
    }

    return rc;
}


int
pg_cert_install(const char *fullchain, const char *privkey,
    const char *chain_pem, size_t chain_len, const char *key_pem,
    size_t key_len, char *const *names, size_t n,
    const pg_cert_nginx_t *nginx, size_t nginx_n, time_t now,
    pg_error_t *err)
{
    int            rc;
    char           marker[PG_CERT_PATH_MAX];
    size_t         i;
    pg_error_t     why, why2;
    pg_cert_old_t  old_chain, old_key;

    pg_cert_old_init(&old_chain, fullchain, 0);
    pg_cert_old_init(&old_key, privkey, 1);

    if (pg_cert_path(marker, sizeof(marker), fullchain, PG_CERT_MARKER,
                     &why) != PG_OK)
    {
        pg_cert_msg(err, "new pair not installed: %s", why.text);
        return PG_ERR;
    }

    if (strcmp(fullchain, privkey) == 0) {
        pg_cert_msg(err, "new pair not installed: fullchain and privkey are "
                    "the same file %.*s", PG_CERT_SHOWN, fullchain);
        return PG_ERR;
    }

    /* 1. the pair, before anything is touched */
    if (pg_cert_check_pair(chain_pem, chain_len, key_pem, key_len, names, n,
                           now, &why) != PG_OK)
    {
        pg_cert_msg(err, "new pair for %.*s refused, nothing changed: %s",
                    PG_CERT_SHOWN, fullchain, why.text);
        return PG_ERR;
    }

    /* 2. the paths (no link at any of them) and the folders */
    if (pg_cert_no_links(fullchain, privkey, &why) != PG_OK
        || pg_cert_mkdirs(fullchain, &why) != PG_OK
        || pg_cert_mkdirs(privkey, &why) != PG_OK)
    {
        pg_cert_msg(err, "new pair not installed, nothing changed: %s",
                    why.text);
        return PG_ERR;
    }

    /* 3. the pair in place kept; a folder that cannot be written stops
     * here (the key's .prev, if made, is put back as it was) */
    if (pg_cert_keep(&old_key, &why) != PG_OK
        || pg_cert_keep(&old_chain, &why) != PG_OK)
    {
        (void) pg_cert_put_back_prev(&old_key, &why2);
        pg_cert_msg(err, "new pair not installed, nothing changed: %s",
                    why.text);
        rc = PG_ERR;
        goto done;
    }

    /* the marker, before a live file changes: a crash from here on is
     * undone at the next start */
    if (pg_cert_marker_write(marker, &old_key, &old_chain, &why) != PG_OK) {
        (void) pg_cert_put_back_prev(&old_key, &why2);
        (void) pg_cert_put_back_prev(&old_chain, &why2);
        pg_cert_msg(err, "new pair not installed, nothing changed: %s",
                    why.text);
        rc = PG_ERR;
        goto done;
    }

    /* 4. the key first: for the instant between the two renames, a new key
     * beside the old chain is no worse than the reverse (and the marker
     * covers a crash there); a running nginx reads neither until step 6,
     * one that starts then refuses the pair (pg_cert_write_pair()) */
    if (pg_cert_write_pair(&old_key, key_pem, key_len, &old_chain,
                           chain_pem, chain_len, &why)
        != PG_OK)
    {
        if (pg_cert_rollback(&old_key, &old_chain, marker, &why2) != PG_OK) {
            pg_cert_msg(err, "new pair not installed: %.100s; and the "
                        "previous pair is not back: %s", why.text, why2.text);

        } else {
            pg_cert_msg(err, "new pair not installed, nothing changed: %s",
                        why.text);
        }

        rc = PG_ERR;
        goto done;
    }

    /* 5. every nginx accepts it, or the previous pair goes back */
    for (i = 0; i < nginx_n; i++) {
        if (pg_cert_nginx_test(&nginx[i], &why) == PG_OK) {
            continue;
        }

        if (pg_cert_rollback(&old_key, &old_chain, marker, &why2)
            != PG_OK)
        {
            pg_cert_msg(err, "nginx -t failed for %.80s, and the previous "
                        "pair is not back (%.80s): %s", nginx[i].conf,
                        why2.text, why.text);

        } else {
            pg_cert_msg(err, "nginx -t failed for %.80s (the previous pair "
                        "is back, nginx not reloaded): %s", nginx[i].conf,
                        why.text);
        }

        rc = PG_ERR;
        goto done;
    }

    /* through: the marker goes before any nginx reads the new pair; if it
     * cannot, the pair goes back (a later start would undo it anyway) */
    if (pg_cert_marker_remove(marker, &why) != PG_OK) {
        if (pg_cert_rollback(&old_key, &old_chain, marker, &why2) != PG_OK) {
            pg_cert_msg(err, "new pair not installed: %.100s; and the "
                        "previous pair is not back: %s", why.text, why2.text);

        } else {
            pg_cert_msg(err, "new pair not installed, nothing changed: %s",
                        why.text);
        }

        rc = PG_ERR;
        goto done;
    }

    /* 6. the reloads: each one tried, the first failure reported */
    rc = PG_OK;

    for (i = 0; i < nginx_n; i++) {
        if (pg_cert_reload(&nginx[i], &why) != PG_OK && rc == PG_OK) {
            pg_cert_msg(err, "new pair installed, but nginx %.60s was not "
                        "reloaded: %s", nginx[i].conf, why.text);
            rc = PG_CERT_NOT_RELOADED;
        }
    }

done:

    pg_cert_old_free(&old_key);
    pg_cert_old_free(&old_chain);

    return rc;
}


/* --- the placeholder ---------------------------------------------------- */

int
pg_cert_placeholder(const char *fullchain, const char *privkey,
    int key_type, char *const *names, size_t n, int *written,
    pg_error_t *err)
{
    int            rc, chain_exists, key_exists;
    char          *key_pem, *chain_pem, marker[PG_CERT_PATH_MAX];
    size_t         key_len, chain_len;
    EVP_PKEY      *key;
    pg_error_t     why;
    pg_cert_old_t  old_key, old_chain;

    *written = 0;

    if (pg_cert_no_links(fullchain, privkey, &why) != PG_OK
        || pg_cert_lstat(fullchain, &chain_exists, &why) != PG_OK
        || pg_cert_lstat(privkey, &key_exists, &why) != PG_OK)
    {
        pg_cert_msg(err, "no placeholder for %.*s: %s", PG_CERT_SHOWN,
                    fullchain, why.text);
        return PG_ERR;
    }

    if (chain_exists && key_exists) {
        return PG_OK;                   /* never replaced */
    }

    key_pem = NULL;
    chain_pem = NULL;
    rc = PG_ERR;
    pg_cert_old_init(&old_key, privkey, 1);
    pg_cert_old_init(&old_chain, fullchain, 0);

    key = pg_cert_key_new(key_type, &why);

    if (key == NULL
        || pg_cert_key_pem(key, &key_pem, &key_len, &why) != PG_OK
        || pg_cert_self_signed(key, names, n, PG_CERT_PLACEHOLDER_LIFETIME,
                               &chain_pem, &chain_len, &why) != PG_OK
        || pg_cert_mkdirs(fullchain, &why) != PG_OK
        || pg_cert_mkdirs(privkey, &why) != PG_OK)
    {
        pg_cert_msg(err, "no placeholder for %.*s: %s", PG_CERT_SHOWN,
                    fullchain, why.text);
        goto done;
    }

    /* the one half of a pair that is there is kept aside (as .prev), not
     * lost; the new file takes its mode and owner; the marker covers a
     * crash between the two writes, as for an install */
    if (pg_cert_path(marker, sizeof(marker), fullchain, PG_CERT_MARKER,
                     &why) != PG_OK
        || pg_cert_keep(&old_key, &why) != PG_OK
        || pg_cert_keep(&old_chain, &why) != PG_OK
        || pg_cert_marker_write(marker, &old_key, &old_chain, &why) != PG_OK
        || pg_cert_write_pair(&old_key, key_pem, key_len, &old_chain,
                              chain_pem, chain_len, &why) != PG_OK
        || pg_cert_marker_remove(marker, &why) != PG_OK)
    {
        pg_cert_msg(err, "no placeholder for %.*s: %s", PG_CERT_SHOWN,
                    fullchain, why.text);
        goto done;
    }

    *written = 1;
    rc = PG_OK;

done:

    if (key_pem != NULL) {
        OPENSSL_cleanse(key_pem, key_len);
    }

    free(key_pem);
    free(chain_pem);
    EVP_PKEY_free(key);
    pg_cert_old_free(&old_key);
    pg_cert_old_free(&old_chain);

    return rc;
}


/* --- recovery after a crash -------------------------------------------- */

/*
 * name is a temp file pg_cert_write_file() makes for base: base ".tmp."
 * and six of mkstemp()'s letters [A-Za-z0-9], nothing more.
 */
static int
pg_cert_temp_ours(const char *name, const char *base)
{
    int     i;
    size_t  n;

    n = strlen(base);

    if (strncmp(name, base, n) != 0 || strncmp(name + n, ".tmp.", 5) != 0
        || strlen(name + n + 5) != 6)
    {
        return 0;
    }

    for (i = 0; i < 6; i++) {
        if (!((name[n + 5 + i] >= 'a' && name[n + 5 + i] <= 'z')
              || (name[n + 5 + i] >= 'A' && name[n + 5 + i] <= 'Z')
              || (name[n + 5 + i] >= '0' && name[n + 5 + i] <= '9')))
        {
            return 0;
        }
    }

    return 1;
}


/* The temp files a crash left in file's folder, for each of bases (file
 * names in it), removed: regular files of our naming only. Best effort:
 * one left behind harms nothing. */
static void
pg_cert_temps_remove(const char *file, const char *const *bases, size_t n)
{
    DIR            *d;
    char            dir[PG_CERT_PATH_MAX], path[PG_CERT_PATH_MAX];
    char           *slash;
    size_t          i;
    struct stat     st;
    struct dirent  *e;

    snprintf(dir, sizeof(dir), "%s", file);
    slash = strrchr(dir, '/');

    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");

    } else if (slash == dir) {
        dir[1] = '\0';

    } else {
        *slash = '\0';
    }

    d = opendir(dir);

    if (d == NULL) {
        return;
    }

    while ((e = readdir(d)) != NULL) {
        for (i = 0; i < n; i++) {
            if (!pg_cert_temp_ours(e->d_name, bases[i])) {
                continue;
            }

            if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir,
                                  e->d_name) < sizeof(path)
                && lstat(path, &st) == 0 && S_ISREG(st.st_mode))
            {
                (void) unlink(path);
            }

            break;
        }
    }

    closedir(d);
}


/* The last part of path: its file name. */
static const char *
pg_cert_base(const char *path)
{
    const char  *slash;

    slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}


/* *had: the marker's "name=1" line (1), "name=0" (0), else -1. */
static void
pg_cert_marker_says(const char *text, const char *name, int *had)
{
    const char  *p;
    size_t       n;

    *had = -1;
    n = strlen(name);

    for (p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p += !!p) {
        if (strncmp(p, name, n) == 0 && p[n] == '='
            && (p[n + 1] == '0' || p[n + 1] == '1')
            && (p[n + 2] == '\n' || p[n + 2] == '\0'))
        {
            *had = p[n + 1] - '0';
            return;
        }
    }
}


/*
 * The live file at path made target (absent: removed), with the live
 * file's mode and owner when it is there (an install keeps them, so they
 * are what the pair had), else target's own.
 */
static int
pg_cert_recover_file(const char *path, const pg_cert_file_t *live,
    const pg_cert_file_t *target, pg_error_t *err)
{
    pg_cert_file_t  f;

    f = *target;

    if (f.exists && live->exists) {
        f.mode = live->mode;
        f.uid = live->uid;
        f.gid = live->gid;
    }

    return pg_cert_file_write(path, &f, err);
}


int
pg_cert_recover(const char *fullchain, const char *privkey, pg_error_t *err)
{
    int             rc, marked, had_key, had_chain, live_ok, usable;
    char            marker[PG_CERT_PATH_MAX], key_prev[PG_CERT_PATH_MAX];
    char            chain_prev[PG_CERT_PATH_MAX];
    char            base_marker[PG_CERT_PATH_MAX];
    char            base_chain_prev[PG_CERT_PATH_MAX];
    char            base_key_prev[PG_CERT_PATH_MAX];
    const char     *bases[5];
    pg_error_t      why, why2;
    pg_cert_file_t  mark, key, chain, pkey, pchain;

    memset(&mark, 0, sizeof(pg_cert_file_t));
    memset(&key, 0, sizeof(pg_cert_file_t));
    memset(&chain, 0, sizeof(pg_cert_file_t));
    memset(&pkey, 0, sizeof(pg_cert_file_t));
    memset(&pchain, 0, sizeof(pg_cert_file_t));
    rc = PG_ERR;

    if (pg_cert_path(marker, sizeof(marker), fullchain, PG_CERT_MARKER,
                     &why) != PG_OK
        || pg_cert_path(chain_prev, sizeof(chain_prev), fullchain, ".prev",
                        &why) != PG_OK
        || pg_cert_path(key_prev, sizeof(key_prev), privkey, ".prev", &why)
           != PG_OK
        || pg_cert_no_links(fullchain, privkey, &why) != PG_OK)
    {
        pg_cert_msg(err, "cannot check %.*s after a crash: %s",
                    PG_CERT_SHOWN, fullchain, why.text);
        return PG_ERR;
    }

    /* the temp files of the pair's own names, in their two folders */
    snprintf(base_marker, sizeof(base_marker), "%s",
             pg_cert_base(marker));
    snprintf(base_chain_prev, sizeof(base_chain_prev), "%s",
             pg_cert_base(chain_prev));
    snprintf(base_key_prev, sizeof(base_key_prev), "%s",
             pg_cert_base(key_prev));
    bases[0] = pg_cert_base(fullchain);
    bases[1] = base_chain_prev;
    bases[2] = base_marker;
    bases[3] = pg_cert_base(privkey);
    bases[4] = base_key_prev;
    pg_cert_temps_remove(fullchain, bases, 5);
    pg_cert_temps_remove(privkey, bases, 5);

    if (pg_cert_file_read(marker, &mark, &why) != PG_OK
        || pg_cert_file_read(privkey, &key, &why) != PG_OK
        || pg_cert_file_read(fullchain, &chain, &why) != PG_OK
        || pg_cert_file_read(key_prev, &pkey, &why) != PG_OK
        || pg_cert_file_read(chain_prev, &pchain, &why) != PG_OK)
    {
        pg_cert_msg(err, "cannot check %.*s after a crash: %s",
                    PG_CERT_SHOWN, fullchain, why.text);
        goto done;
    }

    marked = mark.exists;
    live_ok = key.exists && chain.exists
              && pg_cert_check_key(chain.data, chain.len, key.data, key.len,
                                   &why) == PG_OK;

    if (!marked) {
        /* no install was under way: only a pair that is no pair, beside a
         * .prev pair that is one, is put right */
        if (live_ok || !key.exists || !chain.exists || !pkey.exists
            || !pchain.exists
            || pg_cert_check_key(pchain.data, pchain.len, pkey.data,
                                 pkey.len, &why2) != PG_OK)
        {
            rc = PG_OK;
            goto done;
        }

        if (pg_cert_recover_file(privkey, &key, &pkey, &why2) != PG_OK
            || pg_cert_recover_file(fullchain, &chain, &pchain, &why2)
               != PG_OK)
        {
            pg_cert_msg(err, "%.*s and %.*s do not match (%s), and the "
                        "previous pair cannot be put back: %s", PG_CERT_SHOWN,
                        fullchain, PG_CERT_SHOWN, privkey, why.text,
                        why2.text);
            goto done;
        }

        pg_cert_msg(err, "%.*s and %.*s do not match (%s): the previous "
                    "pair (.prev), which does, is back", PG_CERT_SHOWN,
                    fullchain, PG_CERT_SHOWN, privkey, why.text);
        rc = PG_CERT_RECOVERED;
        goto done;
    }

    /* an install was under way: what it replaced goes back, as its
     * rollback would have done; a marker that does not say (made by hand,
     * damaged) counts a .prev that is there as what was there */
    pg_cert_marker_says(mark.data, "privkey", &had_key);
    pg_cert_marker_says(mark.data, "fullchain", &had_chain);
    had_key = (had_key == -1) ? pkey.exists : had_key;
    had_chain = (had_chain == -1) ? pchain.exists : had_chain;

    usable = 1;

    if ((had_key && !pkey.exists) || (had_chain && !pchain.exists)) {
        snprintf(why2.text, sizeof(why2.text), "%s.prev is missing",
                 (had_key && !pkey.exists) ? "privkey" : "fullchain");
        usable = 0;

    } else if (had_key && had_chain
               && pg_cert_check_key(pchain.data, pchain.len, pkey.data,
                                    pkey.len, &why2) != PG_OK)
    {
        usable = 0;
    }

    if (!usable && !live_ok) {
        pg_cert_msg(err, "an install of %.*s was interrupted, and neither "
                    "the pair in place nor the previous one (.prev) can be "
                    "used (%s): nothing changed", PG_CERT_SHOWN, fullchain,
                    why2.text);
        goto done;
    }

    if (!usable) {
        if (pg_cert_marker_remove(marker, &why) != PG_OK) {
            pg_cert_msg(err, "an install of %.*s was interrupted, and the "
                        "previous pair (.prev) does not match (%.60s): the "
                        "pair in place is kept, but %s", PG_CERT_SHOWN,
                        fullchain, why2.text, why.text);

        } else {
            pg_cert_msg(err, "an install of %.*s was interrupted, and the "
                        "previous pair (.prev) does not match (%s): the pair "
                        "in place, which does, is kept", PG_CERT_SHOWN,
                        fullchain, why2.text);
        }

        goto done;
    }

    if (!had_key) {
        pg_cert_file_free(&pkey);
        pkey.exists = 0;
    }

    if (!had_chain) {
        pg_cert_file_free(&pchain);
        pchain.exists = 0;
    }

    /* the live files, then the marker: a crash in between finds the marker
     * and does this again */
    if (pg_cert_recover_file(privkey, &key, &pkey, &why) != PG_OK
        || pg_cert_recover_file(fullchain, &chain, &pchain, &why) != PG_OK
        || pg_cert_marker_remove(marker, &why) != PG_OK)
    {
        pg_cert_msg(err, "an install of %.*s was interrupted, and the "
                    "previous pair cannot be put back: %s", PG_CERT_SHOWN,
                    fullchain, why.text);
        goto done;
    }

    if (had_key || had_chain) {
        pg_cert_msg(err, "an install of %.*s was interrupted: the previous "
                    "pair (.prev) is back", PG_CERT_SHOWN, fullchain);

    } else {
        pg_cert_msg(err, "an install of %.*s was interrupted: there was no "
                    "pair before it, its files are removed", PG_CERT_SHOWN,
                    fullchain);
    }

    rc = PG_CERT_RECOVERED;

done:

    pg_cert_file_free(&mark);
    pg_cert_file_free(&key);
    pg_cert_file_free(&chain);
    pg_cert_file_free(&pkey);
    pg_cert_file_free(&pchain);

    return rc;
}

