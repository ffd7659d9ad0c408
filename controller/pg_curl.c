/*
 * pg_curl.c: libcurl through dlopen(), when a request first needs it.
 * See pg_curl.h for why.
 */

#include <dlfcn.h>              /* dlopen, dlsym, dlerror (libc in glibc
                                   2.34+: no -ldl) */
#include <stddef.h>             /* offsetof */
#include <stdio.h>              /* snprintf */
#include <stdlib.h>             /* getenv, setenv, unsetenv */
#include <string.h>             /* memcpy, memset */
#include "pg_curl.h"            /* the API this file implements */


/* GnuTLS skips its constructor's gnutls_global_init() when this is 1 */
#define PG_CURL_GNUTLS_ENV  "GNUTLS_NO_IMPLICIT_INIT"


pg_curl_t  pg_curl;

static int  pg_curl_initialised;


/* every member of pg_curl_t and the symbol that fills it */
static const struct {
    const char  *name;
    size_t       offset;
} pg_curl_symbols[] = {
    { "curl_global_init",         offsetof(pg_curl_t, global_init) },
    { "curl_global_cleanup",      offsetof(pg_curl_t, global_cleanup) },
    { "curl_easy_init",           offsetof(pg_curl_t, easy_init) },
    { "curl_easy_setopt",         offsetof(pg_curl_t, easy_setopt) },
    { "curl_easy_getinfo",        offsetof(pg_curl_t, easy_getinfo) },
    { "curl_easy_perform",        offsetof(pg_curl_t, easy_perform) },
    { "curl_easy_cleanup",        offsetof(pg_curl_t, easy_cleanup) },
    { "curl_easy_reset",          offsetof(pg_curl_t, easy_reset) },
    { "curl_easy_strerror",       offsetof(pg_curl_t, easy_strerror) },
    { "curl_slist_append",        offsetof(pg_curl_t, slist_append) },
    { "curl_slist_free_all",      offsetof(pg_curl_t, slist_free_all) },
    { "curl_multi_init",          offsetof(pg_curl_t, multi_init) },
    { "curl_multi_add_handle",    offsetof(pg_curl_t, multi_add_handle) },
    { "curl_multi_remove_handle", offsetof(pg_curl_t, multi_remove_handle) },
    { "curl_multi_perform",       offsetof(pg_curl_t, multi_perform) },
    { "curl_multi_poll",          offsetof(pg_curl_t, multi_poll) },
    { "curl_multi_info_read",     offsetof(pg_curl_t, multi_info_read) },
    { "curl_multi_strerror",      offsetof(pg_curl_t, multi_strerror) },
    { "curl_multi_cleanup",       offsetof(pg_curl_t, multi_cleanup) },
};

#define PG_CURL_NSYMBOLS                                                     \
    (sizeof(pg_curl_symbols) / sizeof(pg_curl_symbols[0]))


int
pg_curl_load(pg_error_t *err)
{
    int          set;
    void        *lib, *fn;
    size_t       i;
    pg_curl_t    table;
    const char  *why;

    if (pg_curl_initialised) {
        return PG_OK;
    }

    /*
     * Set only for the load, and only if the caller has not: GnuTLS reads
     * it in its constructor (and destructor, which then has nothing to
     * undo either way), and a program this one starts must not inherit it.
     */
    set = (getenv(PG_CURL_GNUTLS_ENV) == NULL);

    if (set) {
        setenv(PG_CURL_GNUTLS_ENV, "1", 0);
    }

    lib = dlopen(PG_CURL_LIBRARY, RTLD_NOW | RTLD_LOCAL);

    if (set) {
        unsetenv(PG_CURL_GNUTLS_ENV);
    }

    if (lib == NULL) {
        why = dlerror();
        snprintf(err->text, sizeof(err->text), "cannot load libcurl, which "
                 "reaches the edges: %.160s; install libcurl4",
                 why ? why : PG_CURL_LIBRARY);
        return PG_ERR;
    }

    memset(&table, 0, sizeof(pg_curl_t));

    for (i = 0; i < PG_CURL_NSYMBOLS; i++) {
        fn = dlsym(lib, pg_curl_symbols[i].name);

        if (fn == NULL) {
            /* curl_multi_poll is the youngest: libcurl 7.66 (2019) */
            snprintf(err->text, sizeof(err->text), "cannot load libcurl, "
                     "which reaches the edges: %s has no %s (7.66 or "
                     "later is needed)", PG_CURL_LIBRARY,
                     pg_curl_symbols[i].name);
            dlclose(lib);
            return PG_ERR;
        }

        /* POSIX: a function's address travels through a void * */
        memcpy((char *) &table + pg_curl_symbols[i].offset, &fn,
               sizeof(void *));
    }

    if (table.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err->text, sizeof(err->text), "cannot start libcurl: "
                 "curl_global_init() failed");
        dlclose(lib);
        return PG_ERR;
    }

    /* the library is never closed: OpenSSL, which libcurl started, keeps
     * exit handlers in it */
    pg_curl = table;
    pg_curl_initialised = 1;

    return PG_OK;
}


void
pg_curl_unload(void)
{
    if (pg_curl_initialised) {
        pg_curl.global_cleanup();
        pg_curl_initialised = 0;
    }
}
