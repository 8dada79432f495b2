/* The checks the C binding tests share: each counts itself in `checks` and
 * exits with a message naming the file, line and call that failed. */
#ifndef RINGMQ_TEST_CHECK_H
#define RINGMQ_TEST_CHECK_H
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include "ringmq.h"

static atomic_int checks;

#define CHECK(call)                                                              \
    do {                                                                         \
        rmq_result result_ = (call);                                             \
        checks++;                                                                \
        if (result_ != RMQ_OK) {                                                 \
            fprintf(stderr, "%s:%d: %s failed (%d): %s\n", __FILE__, __LINE__,  \
                    #call, (int)result_, rmq_last_error());                      \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

#define EXPECT(condition)                                                        \
    do {                                                                         \
        checks++;                                                                \
        if (!(condition)) {                                                      \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__,         \
                    #condition);                                                 \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

/* `call` fails with `code` and leaves a message in rmq_last_error(). */
#define EXPECT_ERROR(code, call)                                                 \
    do {                                                                         \
        rmq_result result_ = (call);                                             \
        checks++;                                                                \
        if (result_ != (code)) {                                                 \
            fprintf(stderr, "%s:%d: %s returned %d, expected %s (%d) [%s]\n",   \
                    __FILE__, __LINE__, #call, (int)result_, #code, (int)(code),  \
                    rmq_last_error());                                           \
            exit(1);                                                             \
        }                                                                        \
        if (rmq_last_error()[0] == '\0') {                                      \
            fprintf(stderr, "%s:%d: %s: rmq_last_error() is empty\n", __FILE__, \
                    __LINE__, #call);                                            \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

#endif
