/* Embedded broker from C: open a broker in this process, produce records
 * synchronously and asynchronously, consume them back, close everything.
 * Usage: embedded DATA_DIR   (exit status 0 when every check passed) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <unistd.h>
#include "ringmq.h"

#define CHECK(call)                                                              \
    do {                                                                         \
        rmq_result result_ = (call);                                             \
        if (result_ != RMQ_OK) {                                                 \
            fprintf(stderr, "%s:%d: %s failed (%d): %s\n", __FILE__, __LINE__,  \
                    #call, (int)result_, rmq_last_error());                      \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

#define EXPECT(condition)                                                        \
    do {                                                                         \
        if (!(condition)) {                                                      \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__,         \
                    #condition);                                                 \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

static void on_complete(void *user_data, rmq_result result, int64_t base_offset, const char *message) {
    int *completed = user_data;
    (void)message;
    if (result == RMQ_OK && base_offset >= 0) {
        (*completed)++;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    rmq_broker_options options = {.shards = 1, .busy_poll = 0, .flush_interval_ms = 0, .segment_bytes = 0};
    rmq_broker *broker = NULL;
    CHECK(rmq_broker_open(argv[1], &options, &broker));
    rmq_client *client = NULL;
    CHECK(rmq_client_open_embedded(broker, &client));
    CHECK(rmq_topic_create(client, "orders", 2, -2, -1));
    EXPECT(rmq_topic_create(client, "orders", 2, -2, -1) == RMQ_ERROR_TOPIC_EXISTS);
    EXPECT(strlen(rmq_last_error()) > 0);
    EXPECT(rmq_topic_create(NULL, "x", 1, -2, -1) == RMQ_ERROR_NULL);

    /* Synchronous, durable: one record with a key and a header. */
    const char *key = "customer-7";
    const char *value = "first order";
    rmq_header header = {.key = (const uint8_t *)"trace", .key_len = 5, .value = (const uint8_t *)"abc", .value_len = 3};
    rmq_record_in record = {.key = (const uint8_t *)key, .key_len = strlen(key),
                            .value = (const uint8_t *)value, .value_len = strlen(value),
                            .headers = &header, .headers_len = 1, .timestamp_ms = 0};
    int64_t offset = -1;
    CHECK(rmq_produce(client, "orders", 0, &record, 1, RMQ_ACKS_DURABLE, &offset));
    EXPECT(offset == 0);

    /* Asynchronous: ten records, a callback and a pollable completion. */
    int completed = 0;
    rmq_pending *last = NULL;
    for (int i = 0; i < 10; i++) {
        char text[32];
        snprintf(text, sizeof text, "async %d", i);
        rmq_record_in async_record = {.key = NULL, .key_len = 0, .value = (const uint8_t *)text,
                                      .value_len = strlen(text), .headers = NULL, .headers_len = 0, .timestamp_ms = 0};
        rmq_pending *pending = NULL;
        CHECK(rmq_produce_async(client, "orders", 0, &async_record, 1, RMQ_ACKS_WRITTEN, on_complete, &completed,
                                i == 9 ? &pending : NULL));
        if (pending != NULL) {
            last = pending;
        }
    }
    CHECK(rmq_pending_wait(last, -1, &offset));
    EXPECT(offset == 10);
    rmq_pending_free(last);

    /* Consume everything back through a consumer, without copying. */
    rmq_consumer *consumer = NULL;
    CHECK(rmq_consumer_open(client, "orders", 0, -2, &consumer));
    size_t seen = 0;
    while (seen < 11) {
        rmq_fetch *fetch = NULL;
        CHECK(rmq_consumer_poll(consumer, 1000, &fetch));
        EXPECT(rmq_fetch_count(fetch) > 0);
        for (size_t i = 0; i < rmq_fetch_count(fetch); i++) {
            rmq_record received;
            CHECK(rmq_fetch_record(fetch, i, &received));
            EXPECT(received.offset == seen);
            if (seen == 0) {
                EXPECT(received.key_len == strlen(key) && memcmp(received.key, key, received.key_len) == 0);
                EXPECT(received.value_len == strlen(value) && memcmp(received.value, value, received.value_len) == 0);
                EXPECT(received.headers_len == 1);
                rmq_header got;
                CHECK(rmq_fetch_record_header(fetch, i, 0, &got));
                EXPECT(got.key_len == 5 && memcmp(got.key, "trace", 5) == 0 && got.value_len == 3);
            } else {
                EXPECT(received.key == NULL);
            }
            seen++;
        }
        rmq_fetch_free(fetch);
    }
    EXPECT(rmq_consumer_position(consumer) == 11);
    rmq_consumer_close(consumer);
    EXPECT(completed == 10);

    int64_t earliest = -1, latest = -1, durable = -1;
    CHECK(rmq_partition_offsets(client, "orders", 0, &earliest, &latest, &durable));
    EXPECT(earliest == 0 && latest == 11);

    rmq_topic_list *topics = NULL;
    CHECK(rmq_topics(client, &topics));
    EXPECT(rmq_topic_list_len(topics) == 1);
    const char *name = NULL;
    uint32_t partitions = 0;
    CHECK(rmq_topic_list_get(topics, 0, &name, &partitions));
    EXPECT(strcmp(name, "orders") == 0 && partitions == 2);
    rmq_topic_list_free(topics);

    /* One broker per data directory (issue 12, item 1): a second open is
     * refused, naming the directory and this process as the holder. */
    rmq_broker *second = NULL;
    EXPECT(rmq_broker_open(argv[1], &options, &second) == RMQ_ERROR_LOCKED);
    EXPECT(second == NULL);
    char holder[64];
    snprintf(holder, sizeof holder, "pid %ld", (long)getpid());
    EXPECT(strstr(rmq_last_error(), argv[1]) != NULL && strstr(rmq_last_error(), holder) != NULL);

    /* The longest topic name survives every operation (issue 12, item 4). */
    char longest[250];
    memset(longest, 'n', 249);
    longest[249] = '\0';
    CHECK(rmq_topic_create(client, longest, 1, -2, -1));
    CHECK(rmq_produce(client, longest, 0, &record, 1, RMQ_ACKS_DURABLE, &offset));
    rmq_fetch *long_fetch = NULL;
    CHECK(rmq_fetch_records(client, longest, 0, 0, 0, &long_fetch));
    EXPECT(rmq_fetch_count(long_fetch) == 1);
    rmq_fetch_free(long_fetch);
    CHECK(rmq_topic_delete(client, longest));
    CHECK(rmq_topic_create(client, longest, 1, -2, -1));
    CHECK(rmq_topic_delete(client, longest));
    char too_long[251];
    memset(too_long, 'n', 250);
    too_long[250] = '\0';
    EXPECT(rmq_topic_create(client, too_long, 1, -2, -1) == RMQ_ERROR_INVALID_ARGUMENT);

    /* Argument rules of the header (issue 12, item 7). */
    EXPECT(rmq_produce(client, "orders", -2, &record, 1, RMQ_ACKS_WRITTEN, NULL) == RMQ_ERROR_INVALID_ARGUMENT);
    EXPECT(rmq_produce(client, "orders", INT32_MIN, &record, 1, RMQ_ACKS_WRITTEN, NULL) == RMQ_ERROR_INVALID_ARGUMENT);
    EXPECT(rmq_produce(client, "orders", 0, NULL, 1, RMQ_ACKS_WRITTEN, NULL) == RMQ_ERROR_NULL);
    EXPECT(rmq_produce(client, "orders", 0, &record, 0, RMQ_ACKS_WRITTEN, NULL) == RMQ_ERROR_INVALID_ARGUMENT);
    EXPECT(rmq_produce(client, "bad/name", 0, &record, 1, RMQ_ACKS_WRITTEN, NULL) == RMQ_ERROR_INVALID_ARGUMENT);
    rmq_fetch *refused = NULL;
    EXPECT(rmq_fetch_records(client, "bad/name", 0, 0, 0, &refused) == RMQ_ERROR_INVALID_ARGUMENT);
    EXPECT(refused == NULL);

    /* A client whose broker was closed answers RMQ_ERROR_CLOSED to everything. */
    CHECK(rmq_broker_close(broker));
    rmq_topic_list *after_close = NULL;
    EXPECT(rmq_topics(client, &after_close) == RMQ_ERROR_CLOSED);
    EXPECT(after_close == NULL);
    EXPECT(rmq_produce(client, "orders", 0, &record, 1, RMQ_ACKS_WRITTEN, NULL) == RMQ_ERROR_CLOSED);
    EXPECT(rmq_produce(client, "orders", -1, &record, 1, RMQ_ACKS_WRITTEN, NULL) == RMQ_ERROR_CLOSED);
    EXPECT(rmq_partition_offsets(client, "orders", 0, &earliest, &latest, &durable) == RMQ_ERROR_CLOSED);
    rmq_client_close(client);

    /* Closing released the directory: it opens again with everything in it. */
    CHECK(rmq_broker_open(argv[1], &options, &broker));
    CHECK(rmq_client_open_embedded(broker, &client));
    CHECK(rmq_partition_offsets(client, "orders", 0, &earliest, &latest, &durable));
    EXPECT(latest == 11);
    rmq_client_close(client);
    CHECK(rmq_broker_close(broker));
    printf("embedded: ok (%s)\n", rmq_version());
    return 0;
}
