/* Embedded broker through the C ABI: produce -> consume round trips (one
 * 100-byte record produced with acks=written, then polled back by a consumer,
 * in one thread) and produce throughput of 100-byte records, 1000 per call.
 * Usage: bench DATA_DIR [ROUNDS]. Prints p50/p99 in microseconds and records/s. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ringmq.h"

#define CHECK(call)                                                                          \
    do {                                                                                     \
        rmq_result result_ = (call);                                                         \
        if (result_ != RMQ_OK) {                                                             \
            fprintf(stderr, "%s failed (%d): %s\n", #call, (int)result_, rmq_last_error()); \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR [ROUNDS]\n", argv[0]);
        return 2;
    }
    size_t rounds = argc > 2 ? (size_t)atol(argv[2]) : 20000;
    rmq_broker_options options = {.shards = 1, .busy_poll = 0, .flush_interval_ms = 0, .segment_bytes = 0};
    rmq_broker *broker = NULL;
    CHECK(rmq_broker_open(argv[1], &options, &broker));
    rmq_client *client = NULL;
    CHECK(rmq_client_open_embedded(broker, &client));
    CHECK(rmq_topic_create(client, "bench", 1, -1, -1));
    rmq_consumer *consumer = NULL;
    CHECK(rmq_consumer_open(client, "bench", 0, -1, &consumer));

    uint8_t value[100];
    memset(value, 'v', sizeof value);
    rmq_record_in record = {.key = NULL, .key_len = 0, .value = value, .value_len = sizeof value,
                            .headers = NULL, .headers_len = 0, .timestamp_ms = 0};
    double *latencies = malloc(rounds * sizeof *latencies);
    for (size_t i = 0; i < rounds; i++) {
        double start = now_us();
        CHECK(rmq_produce(client, "bench", 0, &record, 1, RMQ_ACKS_WRITTEN, NULL));
        rmq_fetch *fetch = NULL;
        CHECK(rmq_consumer_poll(consumer, 1000, &fetch));
        if (rmq_fetch_count(fetch) != 1) {
            fprintf(stderr, "expected one record\n");
            return 1;
        }
        rmq_fetch_free(fetch);
        latencies[i] = now_us() - start;
    }
    qsort(latencies, rounds, sizeof *latencies, compare);
    printf("C ABI embedded produce->consume (100 B, acks=written): p50 %.1f us, p99 %.1f us (%zu rounds)\n",
           latencies[rounds / 2], latencies[rounds * 99 / 100], rounds);

    enum { BATCH = 1000 };
    rmq_record_in *batch = malloc(BATCH * sizeof *batch);
    for (size_t i = 0; i < BATCH; i++) {
        batch[i] = record;
    }
    size_t calls = rounds / 20 + 1;
    double start = now_us();
    for (size_t i = 0; i < calls; i++) {
        CHECK(rmq_produce(client, "bench", 0, batch, BATCH, RMQ_ACKS_WRITTEN, NULL));
    }
    double seconds = (now_us() - start) / 1e6;
    printf("C ABI embedded produce 100 B records, %d per call, acks=written: %.0f records/s\n", BATCH,
           calls * BATCH / seconds);
    free(batch);
    free(latencies);
    rmq_consumer_close(consumer);
    rmq_client_close(client);
    CHECK(rmq_broker_close(broker));
    return 0;
}
