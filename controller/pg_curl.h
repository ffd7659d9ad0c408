/*
 * pg_curl.h: libcurl, loaded the first time a program needs HTTP.
 *
 * Why not link it: Debian's libcurl (the OpenSSL flavour) brings 29 more
 * shared libraries (OpenSSL, GnuTLS through librtmp and libldap, Kerberos,
 * SSH, ...), and loading them costs every start of a program linked with
 * -lcurl about 20 ms of CPU on the test VM (bench/RESULTS.md, kill
 * --direct): page faults and relocations, plus GnuTLS's constructor,
 * which runs gnutls_global_init() though nothing here uses GnuTLS. So
 * portal-gatectl and portal-gated are linked without libcurl, and
 * pg_curl_load() dlopen()s it when a request is to be made, with
 * GNUTLS_NO_IMPLICIT_INIT=1 in the environment while it loads (librtmp
 * and libldap initialise GnuTLS themselves when they use it). A command
 * that needs no HTTP never loads it.
 *
 * The curl functions the controller calls are the members of pg_curl,
 * filled by pg_curl_load(): pg_curl.easy_init(), pg_curl.multi_poll(), ...
 * The curl headers give their types and constants, as before.
 *
 * Errors: pg_curl_load() returns PG_OK or PG_ERR with a one-line message
 * ("cannot load libcurl, which reaches the edges: ...; install
 * libcurl4"). Calling a member before pg_curl_load() has returned PG_OK
 * is a NULL call: pg_edge.c loads it at each of its entry points, so its
 * callers need not.
 * Ownership: libcurl stays loaded (and initialised) until the process
 * ends; pg_curl_unload() only runs curl_global_cleanup().
 */

#ifndef PG_CURL_H
#define PG_CURL_H

#include <curl/curl.h>          /* the types and constants, not the link */
#include "portal_gate.h"        /* pg_error_t, PG_OK, PG_ERR */

/* the soname of Debian's libcurl4 (OpenSSL), which -lcurl linked before */
#define PG_CURL_LIBRARY  "libcurl.so.4"

/* __typeof__: each member has exactly the prototype curl.h declares */
typedef struct {
    __typeof__(curl_global_init)         *global_init;
    __typeof__(curl_global_cleanup)      *global_cleanup;
    __typeof__(curl_easy_init)           *easy_init;
    __typeof__(curl_easy_setopt)         *easy_setopt;
    __typeof__(curl_easy_getinfo)        *easy_getinfo;
    __typeof__(curl_easy_perform)        *easy_perform;
    __typeof__(curl_easy_cleanup)        *easy_cleanup;
    __typeof__(curl_easy_reset)          *easy_reset;     /* pg_acme.c */
    __typeof__(curl_easy_strerror)       *easy_strerror;
    __typeof__(curl_slist_append)        *slist_append;
    __typeof__(curl_slist_free_all)      *slist_free_all;
    __typeof__(curl_multi_init)          *multi_init;
    __typeof__(curl_multi_add_handle)    *multi_add_handle;
    __typeof__(curl_multi_remove_handle) *multi_remove_handle;
    __typeof__(curl_multi_perform)       *multi_perform;
    __typeof__(curl_multi_poll)          *multi_poll;
    __typeof__(curl_multi_info_read)     *multi_info_read;
    __typeof__(curl_multi_strerror)      *multi_strerror;
    __typeof__(curl_multi_cleanup)       *multi_cleanup;
} pg_curl_t;

/* libcurl's functions; all NULL until pg_curl_load() returns PG_OK */
extern pg_curl_t  pg_curl;

/*
 * Load libcurl and run curl_global_init() the first time; after that,
 * PG_OK at once. A failure is said again at each call (nothing is
 * half-loaded: the table stays empty).
 */
int pg_curl_load(pg_error_t *err);

/* curl_global_cleanup() if pg_curl_load() ran curl_global_init(). */
void pg_curl_unload(void);

#endif /* PG_CURL_H */
