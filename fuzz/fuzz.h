/*
 * fuzz.h: what the libFuzzer targets in fuzz/ share. A target includes it,
 * defines LLVMFuzzerTestOneInput() and nothing else global.
 *
 * A target checks properties beyond "no crash" with FUZZ_CHECK(): a
 * failed check prints what broke and aborts, which libFuzzer reports as a
 * crash and saves the input, like any sanitizer report.
 */

#ifndef PG_FUZZ_H
#define PG_FUZZ_H

#include <stddef.h>         /* size_t */
#include <stdint.h>         /* uint8_t */
#include <stdio.h>          /* fprintf */
#include <stdlib.h>         /* abort */


#define FUZZ_CHECK(cond, ...)                                                \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz: %s:%d: check failed: %s: ", __FILE__,     \
                    __LINE__, #cond);                                        \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            abort();                                                         \
        }                                                                    \
    } while (0)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


#endif /* PG_FUZZ_H */
