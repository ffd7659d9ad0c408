/*
 * fuzz_flag.c: the check of one flag as Redis holds it,
 * pg_flag_check_json(). The input is "NAME\nJSON" (no newline: the whole
 * input is the JSON of flag "f"), parsed as portal-gatectl and portal-gated
 * parse a hash field's value.
 *
 * The check must agree with the snapshot compiler: a flag it accepts
 * compiles in a snapshot of its own (with the flag it requires, if any,
 * beside it), and one it refuses does not.
 */

#include <stdio.h>          /* snprintf */
#include <stdlib.h>         /* malloc, free */
#include <string.h>         /* memchr, memcpy, strcmp */
#include "fuzz.h"           /* FUZZ_CHECK, LLVMFuzzerTestOneInput */
#include "portal_gate.h"    /* the API under test */


/* The name part: longer names are refused before any JSON is read. */
#define FLAG_NAME_MAX  (PG_NAME_MAX + 8)


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             checked, compiled;
    char            name[FLAG_NAME_MAX + 1];
    size_t          name_len, blob_size;
    json_t         *flag, *snap, *env, *envs, *req;
    pg_error_t      err, cerr;
    json_error_t    jerr;
    const uint8_t  *nl;
    unsigned char  *blob;

    nl = memchr(data, '\n', size);

    if (nl == NULL) {
        memcpy(name, "f", 2);

    } else {
        name_len = (size_t) (nl - data);

        if (name_len > FLAG_NAME_MAX) {
            return 0;
        }

        memcpy(name, data, name_len);
        name[name_len] = '\0';
        size -= name_len + 1;
        data = nl + 1;
    }

    flag = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES,
                      &jerr);

    if (flag == NULL) {
        return 0;
    }

    err.text[0] = '\0';
    checked = pg_flag_check_json(name, flag, &err) == PG_OK;
    FUZZ_CHECK(checked || err.text[0] != '\0', "a refusal without a message");

    /* the same flag in a snapshot: {"revision":1,"environments":{"e":...}} */
    compiled = 0;

    if (pg_valid_name(name, strlen(name))) {
        env = json_object();
        envs = json_object();
        snap = json_pack("{s:i, s:o}", "revision", 1, "environments", envs);
        FUZZ_CHECK(env != NULL && snap != NULL, "out of memory");

        json_object_set_new(envs, "e", env);
        json_object_set(env, name, flag);

        req = json_is_object(flag) ? json_object_get(flag, "requires")
                                   : NULL;

        if (json_is_string(req) && strcmp(json_string_value(req), name) != 0
            && pg_valid_name(json_string_value(req),
                             json_string_length(req)))
        {
            json_object_set_new(env, json_string_value(req), json_object());
        }

        if (pg_snap_compile_json(snap, &blob, &blob_size, &cerr) == PG_OK) {
            compiled = 1;
            free(blob);

        } else if (checked && json_is_string(req)
                   && strcmp(json_string_value(req), name) == 0)
        {
            compiled = 1;   /* requires itself: only the snapshot sees it */
        }

        json_decref(snap);
    }

    FUZZ_CHECK(checked == compiled,
               "flag \"%s\": the check says %s, the compiler %s (%s)", name,
               checked ? "ok" : "refused", compiled ? "ok" : "refused",
               checked ? cerr.text : err.text);

    json_decref(flag);

    return 0;
}
