/* A ringmq server from C over TCP: create a topic, produce synchronously and
 * asynchronously (with keys, headers, timestamps, the key partitioner), read
 * everything back through consumers and plain fetches, check the error paths,
 * delete the topic, close everything.
 * Usage: client HOST:PORT   (exit status 0 only when every check passed) */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "ringmq.h"
#include "check.h"

#define PARTITIONS 3
#define MAX_RECORDS 128
#define BYTES(literal) ((const uint8_t *)(literal)), (sizeof(literal) - 1)

/* --- what every partition should hold, by offset ------------------------- */

typedef struct {
    int null;
    size_t len;
    uint8_t bytes[48];
} blob;

typedef struct {
    int present;
    blob key, value;
    size_t headers_len;
    blob header_key[2], header_value[2];
    int64_t ts_min, ts_max; /* inclusive */
} expected_record;

static expected_record model[PARTITIONS][MAX_RECORDS];
static pthread_mutex_t model_lock = PTHREAD_MUTEX_INITIALIZER;

static blob blob_of(const uint8_t *bytes, size_t len) {
    blob b;
    memset(&b, 0, sizeof b);
    if (bytes == NULL) {
        b.null = 1;
        return b;
    }
    if (len > sizeof b.bytes) {
        fprintf(stderr, "test bug: blob of %zu bytes\n", len);
        exit(1);
    }
    b.len = len;
    if (len > 0) {
        memcpy(b.bytes, bytes, len);
    }
    return b;
}

static int blob_equals(const blob *expected, const uint8_t *bytes, size_t len) {
    if (expected->null) {
        return bytes == NULL && len == 0;
    }
    return bytes != NULL && len == expected->len && (len == 0 || memcmp(bytes, expected->bytes, len) == 0);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Records `records[0..count)` as produced at `partition` from `base`, with
 * timestamps (0 = now) expected within [ts_min, ts_max]. */
static void remember(int partition, int64_t base, const rmq_record_in *records, size_t count, int64_t ts_min,
                     int64_t ts_max) {
    EXPECT(partition >= 0 && partition < PARTITIONS && base >= 0 && base + (int64_t)count <= MAX_RECORDS);
    pthread_mutex_lock(&model_lock);
    for (size_t i = 0; i < count; i++) {
        expected_record *slot = &model[partition][base + (int64_t)i];
        EXPECT(!slot->present);
        slot->present = 1;
        slot->key = blob_of(records[i].key, records[i].key_len);
        slot->value = blob_of(records[i].value, records[i].value_len);
        EXPECT(records[i].headers_len <= 2);
        slot->headers_len = records[i].headers_len;
        for (size_t h = 0; h < records[i].headers_len; h++) {
            slot->header_key[h] = blob_of(records[i].headers[h].key, records[i].headers[h].key_len);
            slot->header_value[h] = blob_of(records[i].headers[h].value, records[i].headers[h].value_len);
        }
        if (records[i].timestamp_ms != 0) {
            slot->ts_min = slot->ts_max = records[i].timestamp_ms;
        } else {
            slot->ts_min = ts_min;
            slot->ts_max = ts_max;
        }
    }
    pthread_mutex_unlock(&model_lock);
}

/* Record `index` of `fetch` is what the model holds at its offset. */
static void check_record(int partition, const rmq_fetch *fetch, size_t index) {
    rmq_record got;
    CHECK(rmq_fetch_record(fetch, index, &got));
    EXPECT(got.offset < MAX_RECORDS);
    const expected_record *want = &model[partition][got.offset];
    if (!want->present) {
        fprintf(stderr, "unexpected record at %d/%llu\n", partition, (unsigned long long)got.offset);
        exit(1);
    }
    EXPECT(blob_equals(&want->key, got.key, got.key_len));
    EXPECT(blob_equals(&want->value, got.value, got.value_len));
    EXPECT(got.timestamp_ms >= want->ts_min && got.timestamp_ms <= want->ts_max);
    EXPECT(got.headers_len == want->headers_len);
    for (size_t h = 0; h < got.headers_len; h++) {
        rmq_header header;
        CHECK(rmq_fetch_record_header(fetch, index, h, &header));
        EXPECT(blob_equals(&want->header_key[h], header.key, header.key_len));
        EXPECT(blob_equals(&want->header_value[h], header.value, header.value_len));
    }
    rmq_header header;
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_fetch_record_header(fetch, index, got.headers_len, &header));
}

/* --- Kafka's murmur2 partitioner, to check partition -1 ------------------ */

static int32_t murmur2(const uint8_t *data, size_t length) {
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28cu ^ (uint32_t)length;
    size_t whole = length / 4;
    for (size_t i = 0; i < whole; i++) {
        const uint8_t *p = data + i * 4;
        uint32_t k = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *tail = data + whole * 4;
    size_t rest = length % 4;
    if (rest == 3) {
        h ^= (uint32_t)tail[2] << 16;
    }
    if (rest >= 2) {
        h ^= (uint32_t)tail[1] << 8;
    }
    if (rest >= 1) {
        h ^= (uint32_t)tail[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

static uint32_t kafka_partition(const char *key, uint32_t partitions) {
    return ((uint32_t)murmur2((const uint8_t *)key, strlen(key)) & 0x7fffffffu) % partitions;
}

/* --- asynchronous completions -------------------------------------------- */

typedef struct {
    atomic_int calls;
    atomic_int result;
    atomic_llong offset;
    atomic_int order; /* the completion's rank among all completions */
    char message[256];
} completion;

static atomic_int completions_seen;

static void on_complete(void *user_data, rmq_result result, int64_t base_offset, const char *message) {
    completion *c = user_data;
    /* `message` is valid during this call only: copy it. */
    snprintf(c->message, sizeof c->message, "%s", message != NULL ? message : "(NULL)");
    atomic_store(&c->result, (int)result);
    atomic_store(&c->offset, (long long)base_offset);
    atomic_store(&c->order, atomic_fetch_add(&completions_seen, 1));
    atomic_fetch_add(&c->calls, 1);
}

/* --- threads sharing one client ------------------------------------------ */

#define THREADS 2
#define PER_THREAD 10

typedef struct {
    const rmq_client *client;
    const char *topic;
    int id;
    int failed;
} producer_args;

static void *producer_thread(void *raw) {
    producer_args *args = raw;
    for (int i = 0; i < PER_THREAD; i++) {
        char text[32];
        int len = snprintf(text, sizeof text, "thread %d record %d", args->id, i);
        rmq_record_in record = {.key = NULL, .value = (const uint8_t *)text, .value_len = (size_t)len,
                                .timestamp_ms = 1700000100000 + args->id * 100 + i};
        int64_t offset = -1;
        if (rmq_produce(args->client, args->topic, 2, &record, 1, RMQ_ACKS_WRITTEN, &offset) != RMQ_OK) {
            fprintf(stderr, "thread %d: produce failed: %s\n", args->id, rmq_last_error());
            args->failed = 1;
            return NULL;
        }
        remember(2, offset, &record, 1, 0, 0);
    }
    /* rmq_last_error is per thread: an error here leaves the main thread's alone. */
    if (rmq_topic_delete(args->client, "ringmq-c-client-no-such-topic") != RMQ_ERROR_UNKNOWN_TOPIC) {
        args->failed = 1;
    }
    return NULL;
}

/* A fetch that long-polls (10 s) on one partition. */
typedef struct {
    const rmq_client *client;
    const char *topic;
    uint64_t offset;
    rmq_result result;
    size_t count;
    int64_t elapsed_ms;
} long_poll_args;

static void *long_poll_thread(void *raw) {
    long_poll_args *args = raw;
    int64_t started = now_ms();
    rmq_fetch *fetch = NULL;
    args->result = rmq_fetch_records(args->client, args->topic, 0, args->offset, 10000, &fetch);
    args->elapsed_ms = now_ms() - started;
    if (args->result == RMQ_OK) {
        args->count = rmq_fetch_count(fetch);
        rmq_fetch_free(fetch);
    }
    return NULL;
}

/* --- helpers -------------------------------------------------------------- */

static void offsets(const rmq_client *client, const char *topic, uint32_t partition, int64_t *earliest,
                    int64_t *latest, int64_t *durable) {
    CHECK(rmq_partition_offsets(client, topic, partition, earliest, latest, durable));
}

static int64_t latest_of(const rmq_client *client, const char *topic, uint32_t partition) {
    int64_t latest = -1;
    offsets(client, topic, partition, NULL, &latest, NULL);
    return latest;
}

static int topic_listed(const rmq_client *client, const char *topic, uint32_t *partitions) {
    rmq_topic_list *list = NULL;
    CHECK(rmq_topics(client, &list));
    int found = 0;
    const char *previous = NULL;
    for (size_t i = 0; i < rmq_topic_list_len(list); i++) {
        const char *name = NULL;
        uint32_t count = 0;
        CHECK(rmq_topic_list_get(list, i, &name, &count));
        EXPECT(name != NULL);
        EXPECT(previous == NULL || strcmp(previous, name) < 0); /* sorted by name */
        previous = name;
        if (strcmp(name, topic) == 0) {
            found = 1;
            if (partitions != NULL) {
                *partitions = count;
            }
        }
    }
    const char *name = NULL;
    uint32_t count = 0;
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_topic_list_get(list, rmq_topic_list_len(list), &name, &count));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_topic_list_get(list, 0, NULL, &count));
    rmq_topic_list_free(list);
    return found;
}

/* Reads a whole partition through a consumer from the earliest offset and
 * checks every record against the model; returns how many it read. */
static size_t read_partition(const rmq_client *client, const char *topic, int partition) {
    int64_t earliest = -1, latest = -1;
    offsets(client, topic, (uint32_t)partition, &earliest, &latest, NULL);
    EXPECT(earliest == 0);
    for (int64_t offset = 0; offset < MAX_RECORDS; offset++) {
        EXPECT(model[partition][offset].present == (offset < latest));
    }
    rmq_consumer *consumer = NULL;
    CHECK(rmq_consumer_open(client, topic, (uint32_t)partition, -2, &consumer));
    EXPECT(rmq_consumer_position(consumer) == 0);
    uint64_t next = 0;
    int64_t deadline = now_ms() + 10000;
    while ((int64_t)next < latest) {
        EXPECT(now_ms() < deadline);
        rmq_fetch *fetch = NULL;
        CHECK(rmq_consumer_poll(consumer, 1000, &fetch));
        for (size_t i = 0; i < rmq_fetch_count(fetch); i++) {
            rmq_record got;
            CHECK(rmq_fetch_record(fetch, i, &got));
            EXPECT(got.offset == next);
            check_record(partition, fetch, i);
            next++;
        }
        rmq_record beyond;
        EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_fetch_record(fetch, rmq_fetch_count(fetch), &beyond));
        rmq_fetch_free(fetch);
        EXPECT(rmq_consumer_position(consumer) == next);
    }
    /* At the end: a short poll returns an empty fetch and does not move. */
    rmq_fetch *empty = NULL;
    CHECK(rmq_consumer_poll(consumer, 20, &empty));
    EXPECT(empty != NULL && rmq_fetch_count(empty) == 0);
    rmq_fetch_free(empty);
    EXPECT(rmq_consumer_position(consumer) == (uint64_t)latest);
    rmq_consumer_close(consumer);
    return (size_t)next;
}

/* A server with TLS and client certificates required (run-tests.sh makes the
 * certificates in `pki` with openssl): refused certificates are
 * RMQ_ERROR_TLS; trusted ones produce and fetch. */
static void over_tls(const char *bootstrap, const char *pki) {
    const int64_t T0_TLS = 1700000000000;
    char ca[512], rogue[512], cert[512], key[512], absent[512];
    snprintf(ca, sizeof ca, "%s/ca.pem", pki);
    snprintf(rogue, sizeof rogue, "%s/rogue-ca.pem", pki);
    snprintf(cert, sizeof cert, "%s/client.pem", pki);
    snprintf(key, sizeof key, "%s/client.key", pki);
    snprintf(absent, sizeof absent, "%s/absent.pem", pki);
    rmq_client *const sentinel = (rmq_client *)(uintptr_t)0x1;
    rmq_client *client = sentinel;
    EXPECT_ERROR(RMQ_ERROR_TLS, rmq_client_connect_tls(bootstrap, rogue, cert, key, NULL, NULL, NULL, &client));
    EXPECT(strstr(rmq_last_error(), "UnknownIssuer") != NULL);
    EXPECT_ERROR(RMQ_ERROR_TLS, rmq_client_connect_tls(bootstrap, ca, NULL, NULL, NULL, NULL, NULL, &client));
    EXPECT(strstr(rmq_last_error(), "CertificateRequired") != NULL);
    EXPECT_ERROR(RMQ_ERROR_TLS, rmq_client_connect_tls(bootstrap, absent, cert, key, NULL, NULL, NULL, &client));
    EXPECT(strstr(rmq_last_error(), "absent.pem") != NULL);
    EXPECT_ERROR(RMQ_ERROR_TLS, rmq_client_connect(bootstrap, &client));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_client_connect_tls(bootstrap, ca, cert, key, "user", NULL, NULL, &client));
    EXPECT(client == sentinel);
    CHECK(rmq_client_connect_tls(bootstrap, ca, cert, key, NULL, NULL, NULL, &client));
    char topic[64];
    snprintf(topic, sizeof topic, "c-tls-%ld", (long)getpid());
    CHECK(rmq_topic_create(client, topic, 2, -2, -1));
    static uint8_t value[200000]; /* a record of many TLS records */
    for (size_t i = 0; i < sizeof value; i++) {
        value[i] = (uint8_t)(i * 7);
    }
    rmq_record_in record = {.key = (const uint8_t *)"k", .key_len = 1, .value = value, .value_len = sizeof value,
                            .headers = NULL, .headers_len = 0, .timestamp_ms = T0_TLS};
    int64_t base = -1;
    CHECK(rmq_produce(client, topic, 1, &record, 1, RMQ_ACKS_DURABLE, &base));
    EXPECT(base == 0);
    rmq_fetch *fetch = NULL;
    CHECK(rmq_fetch_records(client, topic, 1, 0, 1000, &fetch));
    EXPECT(rmq_fetch_count(fetch) == 1);
    rmq_record out;
    CHECK(rmq_fetch_record(fetch, 0, &out));
    EXPECT(out.value_len == sizeof value && memcmp(out.value, value, sizeof value) == 0);
    rmq_fetch_free(fetch);
    CHECK(rmq_topic_delete(client, topic));
    rmq_client_close(client);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s HOST:PORT TLS_HOST:PORT PKI_DIR\n", argv[0]);
        return 2;
    }
    const char *bootstrap = argv[1];
    over_tls(argv[2], argv[3]);
    char topic[64];
    snprintf(topic, sizeof topic, "c-client-%ld", (long)getpid());
    const int64_t T0 = 1700000000000; /* explicit timestamps, well in the past */

    /* Kafka's own murmur2 vectors (UtilsTest.testMurmur2), so that the
     * partition -1 check below compares with Kafka's partitioner. */
    EXPECT(murmur2(BYTES("21")) == -973932308);
    EXPECT(murmur2(BYTES("foobar")) == -790332482);
    EXPECT(murmur2(BYTES("a-little-bit-long-string")) == -985981536);
    EXPECT(murmur2(BYTES("a-little-bit-longer-string")) == -1486304829);

    /* --- connecting ------------------------------------------------------- */
    rmq_client *const sentinel_client = (rmq_client *)(uintptr_t)0x1;
    rmq_client *client = sentinel_client;
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_client_connect(NULL, &client));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_client_connect(bootstrap, NULL));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_client_connect("no-port-here", &client));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_client_connect("\xff\xfe:1", &client));
    EXPECT_ERROR(RMQ_ERROR_IO, rmq_client_connect("127.0.0.1:1", &client)); /* nothing listens on port 1 */
    EXPECT(client == sentinel_client); /* outputs are written only on success */
    /* With credentials (the server's bootstrap user, see run-tests.sh): a
     * wrong password is refused by both mechanisms, the right one connects. */
    EXPECT_ERROR(RMQ_ERROR_AUTHENTICATION, rmq_client_connect_auth(bootstrap, "bindings", "wrong", NULL, &client));
    EXPECT_ERROR(RMQ_ERROR_AUTHENTICATION, rmq_client_connect_auth(bootstrap, "bindings", "wrong", "PLAIN", &client));
    EXPECT_ERROR(RMQ_ERROR_AUTHENTICATION, rmq_client_connect_auth(bootstrap, "nobody", "bindings-pw", NULL, &client));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_client_connect_auth(bootstrap, NULL, "bindings-pw", NULL, &client));
    EXPECT(client == sentinel_client);
    CHECK(rmq_client_connect_auth(bootstrap, "bindings", "bindings-pw", "PLAIN", &client));
    rmq_client_close(client);
    client = sentinel_client;
    CHECK(rmq_client_connect_auth(bootstrap, "bindings", "bindings-pw", NULL, &client));
    rmq_client_close(client);
    client = sentinel_client;
    CHECK(rmq_client_connect(bootstrap, &client));
    EXPECT(client != NULL && client != sentinel_client);
    EXPECT(strlen(rmq_version()) > 0);

    /* --- topics ----------------------------------------------------------- */
    EXPECT(!topic_listed(client, topic, NULL));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_topic_create(client, topic, 3, -3, -1));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_topic_create(client, topic, 3, -2, -7));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_topic_create(client, topic, 0, -2, -1));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_topic_create(client, "bad\xff", 1, -2, -1));
    CHECK(rmq_topic_create(client, topic, PARTITIONS, -2, -1));
    EXPECT_ERROR(RMQ_ERROR_TOPIC_EXISTS, rmq_topic_create(client, topic, PARTITIONS, -2, -1));
    uint32_t partitions = 0;
    EXPECT(topic_listed(client, topic, &partitions));
    EXPECT(partitions == PARTITIONS);
    for (uint32_t p = 0; p < PARTITIONS; p++) {
        int64_t earliest = -1, latest = -1, durable = -1;
        offsets(client, topic, p, &earliest, &latest, &durable);
        EXPECT(earliest == 0 && latest == 0 && durable == 0);
    }

    /* --- synchronous produce, durable: one batch of three ----------------- */
    rmq_header headers0[2] = {
        {.key = BYTES("trace"), .value = BYTES("t-0")},
        {.key = BYTES("null-valued"), .value = NULL, .value_len = 0},
    };
    rmq_header headers1[1] = {{.key = BYTES("trace"), .value = BYTES("")}};
    rmq_record_in batch[3] = {
        {.key = BYTES("k0"), .value = BYTES("v0"), .headers = headers0, .headers_len = 2, .timestamp_ms = T0},
        {.key = BYTES("k1"), .value = BYTES(""), .headers = headers1, .headers_len = 1, .timestamp_ms = T0 + 1},
        /* no key, null value (a tombstone) */
        {.key = NULL, .key_len = 0, .value = NULL, .value_len = 0, .timestamp_ms = T0 + 2},
    };
    int64_t offset = -100;
    CHECK(rmq_produce(client, topic, 0, batch, 3, RMQ_ACKS_DURABLE, &offset));
    EXPECT(offset == 0);
    remember(0, offset, batch, 3, 0, 0);
    int64_t earliest = -1, latest = -1, durable = -1;
    offsets(client, topic, 0, &earliest, &latest, &durable);
    EXPECT(earliest == 0 && latest == 3 && durable == 3);

    /* --- synchronous produce, written: binary bytes, timestamp "now" ------ */
    static const uint8_t binary[] = {'b', 'i', 'n', 0, 0xff, 0x80, 'y'};
    rmq_header binary_header = {.key = BYTES("bin"), .value = binary, .value_len = sizeof binary};
    rmq_record_in now_record = {.key = BYTES("k3"), .value = binary, .value_len = sizeof binary,
                                .headers = &binary_header, .headers_len = 1, .timestamp_ms = 0};
    int64_t before = now_ms();
    CHECK(rmq_produce(client, topic, 0, &now_record, 1, RMQ_ACKS_WRITTEN, &offset));
    int64_t after = now_ms();
    EXPECT(offset == 3);
    remember(0, offset, &now_record, 1, before, after);

    /* --- acks none: no offset; the record still lands -------------------- */
    rmq_record_in unacked = {.key = BYTES("k4"), .value = BYTES("unacknowledged"), .timestamp_ms = T0 + 10};
    offset = -100;
    CHECK(rmq_produce(client, topic, 0, &unacked, 1, RMQ_ACKS_NONE, &offset));
    EXPECT(offset == -1);
    remember(0, 4, &unacked, 1, 0, 0);
    int64_t deadline = now_ms() + 5000;
    while (latest_of(client, topic, 0) < 5) {
        EXPECT(now_ms() < deadline);
        sleep_ms(5);
    }
    rmq_record_in after_unacked = {.key = BYTES("k5"), .value = BYTES("after"), .timestamp_ms = T0 + 11};
    CHECK(rmq_produce(client, topic, 0, &after_unacked, 1, RMQ_ACKS_WRITTEN, NULL)); /* base_offset may be NULL */
    remember(0, 5, &after_unacked, 1, 0, 0);
    EXPECT(latest_of(client, topic, 0) == 6);

    /* --- asynchronous produce: callbacks and pollable pendings ----------- */
#define ASYNC 12
    static completion done[ASYNC + 2];
    rmq_pending *pending[ASYNC + 2] = {0};
    char texts[ASYNC + 2][32];
    rmq_record_in async_records[ASYNC + 2];
    rmq_header async_header = {.key = BYTES("source"), .value = BYTES("async")};
    before = now_ms();
    for (int i = 0; i < ASYNC; i++) {
        int len = snprintf(texts[i], sizeof texts[i], "async %d", i);
        async_records[i] = (rmq_record_in){.key = (const uint8_t *)texts[i], .key_len = 5, /* "async" */
                                           .value = (const uint8_t *)texts[i], .value_len = (size_t)len,
                                           .headers = &async_header, .headers_len = 1, .timestamp_ms = 0};
        /* Every other produce, and the last, also asks for a pollable handle. */
        int pollable = i % 2 == 0 || i == ASYNC - 1;
        CHECK(rmq_produce_async(client, topic, 1, &async_records[i], 1,
                                i == ASYNC - 1 ? RMQ_ACKS_DURABLE : RMQ_ACKS_WRITTEN, on_complete, &done[i],
                                pollable ? &pending[i] : NULL));
        EXPECT(pollable == (pending[i] != NULL));
    }
    /* The records were copied: scribbling over the buffers changes nothing. */
    memset(texts, '#', sizeof texts);
    /* A pending may be freed before completion: the produce still happens. */
    rmq_pending_free(pending[2]);
    pending[2] = NULL;
    /* Poll one by hand until it completes. */
    deadline = now_ms() + 10000;
    rmq_result polled;
    while ((polled = rmq_pending_poll(pending[0], &offset)) == RMQ_PENDING) {
        EXPECT(now_ms() < deadline);
        sleep_ms(1);
    }
    EXPECT(polled == RMQ_OK && offset == 0);
    /* Wait for the others (bounded and unbounded waits), the last one last. */
    for (int i = 4; i < ASYNC; i++) {
        if (pending[i] == NULL) {
            continue;
        }
        offset = -100;
        CHECK(rmq_pending_wait(pending[i], i % 4 == 0 ? 10000 : -1, &offset));
        EXPECT(offset == i);
        /* Completed: poll and a zero wait agree. */
        int64_t again = -100;
        CHECK(rmq_pending_poll(pending[i], &again));
        EXPECT(again == i);
        CHECK(rmq_pending_wait(pending[i], 0, NULL));
    }
    after = now_ms();
    /* The last produce completed, so every callback ran, once, in queue order,
     * and the callbacks saw the same offsets as the pendings. */
    for (int i = 0; i < ASYNC; i++) {
        EXPECT(atomic_load(&done[i].calls) == 1);
        EXPECT(atomic_load(&done[i].result) == RMQ_OK);
        EXPECT(atomic_load(&done[i].offset) == i);
        EXPECT(atomic_load(&done[i].order) == i);
        EXPECT(done[i].message[0] == '\0');
        /* rebuild the record as it was when queued */
        int len = snprintf(texts[i], sizeof texts[i], "async %d", i);
        async_records[i].value_len = (size_t)len;
        remember(1, i, &async_records[i], 1, before, after);
    }
    for (int i = 0; i < ASYNC; i++) {
        rmq_pending_free(pending[i]);
        pending[i] = NULL;
    }
    offsets(client, topic, 1, NULL, &latest, &durable);
    EXPECT(latest == ASYNC && durable == ASYNC); /* the last one asked for durable */

    /* An asynchronous batch of two, with a pending only (no callback). */
    rmq_record_in pair[2] = {
        {.key = BYTES("pair"), .value = BYTES("first"), .timestamp_ms = T0 + 20},
        {.key = BYTES("pair"), .value = BYTES("second"), .timestamp_ms = T0 + 21},
    };
    rmq_pending *pair_pending = NULL;
    CHECK(rmq_produce_async(client, topic, 1, pair, 2, RMQ_ACKS_WRITTEN, NULL, NULL, &pair_pending));
    CHECK(rmq_pending_wait(pair_pending, 10000, &offset));
    EXPECT(offset == ASYNC);
    remember(1, offset, pair, 2, 0, 0);
    rmq_pending_free(pair_pending);

    /* An asynchronous produce that fails reaches both the callback and the pending. */
    char missing[80];
    snprintf(missing, sizeof missing, "%s-missing", topic);
    completion *failed = &done[ASYNC];
    rmq_pending *failed_pending = NULL;
    CHECK(rmq_produce_async(client, missing, 0, pair, 1, RMQ_ACKS_WRITTEN, on_complete, failed, &failed_pending));
    offset = -100;
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_pending_wait(failed_pending, 10000, &offset));
    EXPECT(offset == -100); /* not written on failure */
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_pending_poll(failed_pending, &offset));
    EXPECT(atomic_load(&failed->calls) == 1);
    EXPECT(atomic_load(&failed->result) == RMQ_ERROR_UNKNOWN_TOPIC);
    EXPECT(atomic_load(&failed->offset) == -1);
    EXPECT(strlen(failed->message) > 0);
    rmq_pending_free(failed_pending);

    /* --- partition -1: the key picks the partition (Kafka's murmur2) ----- */
    const char *route_key = "route-me-42";
    uint32_t routed = kafka_partition(route_key, PARTITIONS);
    int64_t latest_before[PARTITIONS];
    for (uint32_t p = 0; p < PARTITIONS; p++) {
        latest_before[p] = latest_of(client, topic, p);
    }
    rmq_record_in keyed = {.key = (const uint8_t *)route_key, .key_len = strlen(route_key),
                           .value = BYTES("routed once"), .timestamp_ms = T0 + 30};
    int64_t first_routed = -1;
    CHECK(rmq_produce(client, topic, -1, &keyed, 1, RMQ_ACKS_WRITTEN, &first_routed));
    int landed = -1;
    for (uint32_t p = 0; p < PARTITIONS; p++) {
        int64_t now_latest = latest_of(client, topic, p);
        if (now_latest == latest_before[p] + 1) {
            EXPECT(landed == -1);
            landed = (int)p;
        } else {
            EXPECT(now_latest == latest_before[p]);
        }
    }
    EXPECT(landed == (int)routed);
    EXPECT(first_routed == latest_before[landed]);
    remember(landed, first_routed, &keyed, 1, 0, 0);
    /* The same key lands in the same partition, synchronously and asynchronously. */
    rmq_record_in keyed_again = keyed;
    keyed_again.value = (const uint8_t *)"routed twice";
    keyed_again.value_len = strlen("routed twice");
    keyed_again.timestamp_ms = T0 + 31;
    int64_t second_routed = -1;
    CHECK(rmq_produce(client, topic, -1, &keyed_again, 1, RMQ_ACKS_WRITTEN, &second_routed));
    EXPECT(second_routed == first_routed + 1);
    remember(landed, second_routed, &keyed_again, 1, 0, 0);
    rmq_record_in keyed_async = keyed;
    keyed_async.value = (const uint8_t *)"routed async";
    keyed_async.value_len = strlen("routed async");
    keyed_async.timestamp_ms = T0 + 32;
    rmq_pending *routed_pending = NULL;
    CHECK(rmq_produce_async(client, topic, -1, &keyed_async, 1, RMQ_ACKS_WRITTEN, NULL, NULL, &routed_pending));
    CHECK(rmq_pending_wait(routed_pending, 10000, &offset));
    EXPECT(offset == second_routed + 1);
    remember(landed, offset, &keyed_async, 1, 0, 0);
    rmq_pending_free(routed_pending);
    EXPECT(latest_of(client, topic, (uint32_t)landed) == offset + 1);
    /* Read the routed records back with a plain fetch from the first one. */
    rmq_fetch *routed_fetch = NULL;
    CHECK(rmq_fetch_records(client, topic, (uint32_t)landed, (uint64_t)first_routed, 1000, &routed_fetch));
    EXPECT(rmq_fetch_count(routed_fetch) == 3);
    for (size_t i = 0; i < 3; i++) {
        rmq_record got;
        CHECK(rmq_fetch_record(routed_fetch, i, &got));
        EXPECT(got.offset == (uint64_t)first_routed + i);
        EXPECT(got.key_len == strlen(route_key) && memcmp(got.key, route_key, got.key_len) == 0);
        check_record(landed, routed_fetch, i);
    }
    rmq_fetch_free(routed_fetch);

    /* --- one client shared by threads ------------------------------------ */
    int64_t partition2_before = latest_of(client, topic, 2);
    char main_error[256];
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_partition_offsets(client, missing, 0, NULL, NULL, NULL));
    snprintf(main_error, sizeof main_error, "%s", rmq_last_error());
    pthread_t threads[THREADS];
    producer_args args[THREADS];
    for (int t = 0; t < THREADS; t++) {
        args[t] = (producer_args){.client = client, .topic = topic, .id = t, .failed = 0};
        EXPECT(pthread_create(&threads[t], NULL, producer_thread, &args[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++) {
        EXPECT(pthread_join(threads[t], NULL) == 0);
        EXPECT(!args[t].failed);
    }
    EXPECT(strcmp(rmq_last_error(), main_error) == 0); /* per-thread messages */
    EXPECT(latest_of(client, topic, 2) == partition2_before + THREADS * PER_THREAD);

    /* --- plain fetches ---------------------------------------------------- */
    /* From the middle of a batch: starts exactly at the offset asked for. */
    rmq_fetch *fetch = NULL;
    CHECK(rmq_fetch_records(client, topic, 0, 1, 1000, &fetch));
    EXPECT(rmq_fetch_count(fetch) >= 2);
    rmq_record got;
    CHECK(rmq_fetch_record(fetch, 0, &got));
    EXPECT(got.offset == 1 && got.timestamp_ms == T0 + 1);
    EXPECT(got.key_len == 2 && memcmp(got.key, "k1", 2) == 0);
    EXPECT(got.value != NULL && got.value_len == 0); /* empty, not null */
    check_record(0, fetch, 0);
    CHECK(rmq_fetch_record(fetch, 1, &got));
    EXPECT(got.offset == 2 && got.key == NULL && got.key_len == 0 && got.value == NULL && got.value_len == 0);
    EXPECT(got.headers_len == 0);
    rmq_fetch_free(fetch);
    /* At the end of the log: an empty fetch after the timeout. */
    int64_t end0 = latest_of(client, topic, 0);
    fetch = NULL;
    CHECK(rmq_fetch_records(client, topic, 0, (uint64_t)end0, 20, &fetch));
    EXPECT(fetch != NULL && rmq_fetch_count(fetch) == 0);
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_fetch_record(fetch, 0, &got));
    rmq_fetch_free(fetch);
    /* Past the end: offset out of range, and *out untouched. */
    rmq_fetch *const sentinel_fetch = (rmq_fetch *)(uintptr_t)0x1;
    fetch = sentinel_fetch;
    EXPECT_ERROR(RMQ_ERROR_OFFSET_OUT_OF_RANGE, rmq_fetch_records(client, topic, 0, (uint64_t)end0 + 100, 20, &fetch));
    EXPECT(fetch == sentinel_fetch);
    EXPECT_ERROR(RMQ_ERROR_OFFSET_OUT_OF_RANGE, rmq_fetch_records(client, topic, 0, UINT64_MAX, 20, &fetch));
    EXPECT(fetch == sentinel_fetch);

    /* --- timestamps -------------------------------------------------------- */
    int64_t found = -100;
    CHECK(rmq_offset_for_timestamp(client, topic, 0, T0, &found));
    EXPECT(found == 0);
    CHECK(rmq_offset_for_timestamp(client, topic, 0, T0 + 1, &found));
    EXPECT(found == 1);
    CHECK(rmq_offset_for_timestamp(client, topic, 0, T0 + 3, &found));
    EXPECT(found == 3); /* offset 3 was stamped "now" */
    CHECK(rmq_offset_for_timestamp(client, topic, 0, now_ms() + 3600 * 1000, &found));
    EXPECT(found == -1);
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_offset_for_timestamp(client, topic, 0, -5, &found));

    /* --- a consumer at the end sees only new records --------------------- */
    rmq_consumer *tail = NULL;
    CHECK(rmq_consumer_open(client, topic, 0, -1, &tail));
    EXPECT(rmq_consumer_position(tail) == (uint64_t)end0);
    fetch = NULL;
    CHECK(rmq_consumer_poll(tail, 20, &fetch));
    EXPECT(rmq_fetch_count(fetch) == 0);
    rmq_fetch_free(fetch);
    rmq_record_in fresh = {.key = BYTES("fresh"), .value = BYTES("new"), .timestamp_ms = T0 + 40};
    CHECK(rmq_produce(client, topic, 0, &fresh, 1, RMQ_ACKS_WRITTEN, &offset));
    EXPECT(offset == end0);
    remember(0, offset, &fresh, 1, 0, 0);
    fetch = NULL;
    CHECK(rmq_consumer_poll(tail, 1000, &fetch));
    EXPECT(rmq_fetch_count(fetch) == 1);
    check_record(0, fetch, 0);
    rmq_fetch_free(fetch);
    EXPECT(rmq_consumer_position(tail) == (uint64_t)end0 + 1);
    rmq_consumer_close(tail);
    /* A consumer at an explicit offset. */
    rmq_consumer *at = NULL;
    CHECK(rmq_consumer_open(client, topic, 0, 4, &at));
    EXPECT(rmq_consumer_position(at) == 4);
    fetch = NULL;
    CHECK(rmq_consumer_poll(at, 1000, &fetch));
    EXPECT(rmq_fetch_count(fetch) >= 1);
    CHECK(rmq_fetch_record(fetch, 0, &got));
    EXPECT(got.offset == 4);
    rmq_fetch_free(fetch);
    rmq_consumer_close(at);
    rmq_consumer *const sentinel_consumer = (rmq_consumer *)(uintptr_t)0x1;
    rmq_consumer *bad = sentinel_consumer;
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_consumer_open(client, topic, 0, -3, &bad));
    EXPECT(bad == sentinel_consumer);

    /* --- a consumer may outlive the client it was opened on -------------- */
    rmq_client *second = NULL;
    CHECK(rmq_client_connect(bootstrap, &second));
    rmq_consumer *orphan = NULL;
    CHECK(rmq_consumer_open(second, topic, 0, 0, &orphan));
    rmq_client_close(second);
    fetch = NULL;
    CHECK(rmq_consumer_poll(orphan, 1000, &fetch));
    EXPECT(rmq_fetch_count(fetch) >= 1);
    check_record(0, fetch, 0);
    rmq_fetch_free(fetch);
    rmq_consumer_close(orphan);

    /* --- everything back, partition by partition ------------------------- */
    size_t total = 0;
    for (int p = 0; p < PARTITIONS; p++) {
        total += read_partition(client, topic, p);
    }
    EXPECT(total == 6 + ASYNC + 2 + 3 + THREADS * PER_THREAD + 1);

    /* --- error paths --------------------------------------------------------- */
    /* NULL handles and outputs: RMQ_ERROR_NULL, never a crash. */
    rmq_record_in one = {.key = NULL, .value = BYTES("x")};
    fetch = sentinel_fetch;
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_topic_create(NULL, topic, 1, -2, -1));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_topic_create(client, NULL, 1, -2, -1));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_topic_delete(NULL, topic));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_topics(NULL, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_topics(client, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_topic_list_get(NULL, 0, NULL, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_partition_offsets(NULL, topic, 0, NULL, NULL, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_offset_for_timestamp(NULL, topic, 0, T0, &found));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_produce(NULL, topic, 0, &one, 1, RMQ_ACKS_WRITTEN, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_produce(client, NULL, 0, &one, 1, RMQ_ACKS_WRITTEN, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_produce_async(NULL, topic, 0, &one, 1, RMQ_ACKS_WRITTEN, NULL, NULL, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_pending_poll(NULL, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_pending_wait(NULL, 0, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_fetch_records(NULL, topic, 0, 0, 0, &fetch));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_fetch_records(client, topic, 0, 0, 0, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_fetch_record(NULL, 0, &got));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_fetch_record_header(NULL, 0, 0, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_consumer_open(NULL, topic, 0, -2, &tail));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_consumer_open(client, topic, 0, -2, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_consumer_poll(NULL, 0, &fetch));
    EXPECT(rmq_fetch_count(NULL) == 0);
    EXPECT(rmq_topic_list_len(NULL) == 0);
    EXPECT(rmq_consumer_position(NULL) == 0);
    rmq_client_close(NULL);
    rmq_fetch_free(NULL);
    rmq_consumer_close(NULL);
    rmq_pending_free(NULL);
    rmq_topic_list_free(NULL);
    CHECK(rmq_broker_close(NULL));
    /* No records, bad UTF-8. */
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_produce(client, topic, 0, &one, 0, RMQ_ACKS_WRITTEN, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_produce(client, topic, 0, NULL, 1, RMQ_ACKS_WRITTEN, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_produce_async(client, topic, 0, NULL, 1, RMQ_ACKS_WRITTEN, NULL, NULL, NULL));
    /* Partitions below -1, and names that are not topic names (issue 12, item 7). */
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_produce(client, topic, -2, &one, 1, RMQ_ACKS_WRITTEN, NULL));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_produce(client, topic, INT32_MIN, &one, 1, RMQ_ACKS_WRITTEN, NULL));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT,
                 rmq_produce_async(client, topic, -2, &one, 1, RMQ_ACKS_WRITTEN, NULL, NULL, NULL));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_produce(client, "bad/name", 0, &one, 1, RMQ_ACKS_WRITTEN, NULL));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_fetch_records(client, "bad/name", 0, 0, 0, &fetch));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT,
                 rmq_produce_async(client, topic, 0, NULL, 0, RMQ_ACKS_WRITTEN, NULL, NULL, NULL));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_produce(client, "\xc3\x28", 0, &one, 1, RMQ_ACKS_WRITTEN, NULL));
    /* Unknown topics and partitions. */
    offset = -100;
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_produce(client, missing, 0, &one, 1, RMQ_ACKS_WRITTEN, &offset));
    EXPECT(offset == -100);
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_produce(client, missing, -1, &one, 1, RMQ_ACKS_WRITTEN, &offset));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_produce(client, topic, PARTITIONS, &one, 1, RMQ_ACKS_WRITTEN, &offset));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_fetch_records(client, missing, 0, 0, 0, &fetch));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_fetch_records(client, topic, PARTITIONS, 0, 0, &fetch));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_partition_offsets(client, missing, 0, &earliest, NULL, NULL));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_consumer_open(client, missing, 0, -2, &tail));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_topic_delete(client, missing));
    EXPECT(fetch == sentinel_fetch);
    /* The client still works after all those errors. */
    EXPECT(latest_of(client, topic, 0) == end0 + 1);

    /* --- a long poll in one thread does not hold up another's produce ------- */
    /* (issue 12, item 3: the produce waited until the 10 s fetch timed out,
     * and the fetch returned nothing.) */
    {
        long_poll_args poll = {.client = client, .topic = topic, .offset = (uint64_t)end0 + 1};
        pthread_t poller;
        int64_t started = now_ms();
        EXPECT(pthread_create(&poller, NULL, long_poll_thread, &poll) == 0);
        sleep_ms(200); /* the fetch is waiting at the broker */
        int64_t produced_at = -1;
        CHECK(rmq_produce(client, topic, 0, &one, 1, RMQ_ACKS_WRITTEN, &produced_at));
        int64_t produce_ms = now_ms() - started;
        EXPECT(produced_at == end0 + 1);
        EXPECT(pthread_join(poller, NULL) == 0);
        EXPECT(poll.result == RMQ_OK && poll.count == 1);
        EXPECT(produce_ms < 5000 && poll.elapsed_ms < 5000);
    }

    /* --- delete ------------------------------------------------------------ */
    CHECK(rmq_topic_delete(client, topic));
    EXPECT(!topic_listed(client, topic, NULL));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_topic_delete(client, topic));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_produce(client, topic, 0, &one, 1, RMQ_ACKS_WRITTEN, NULL));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_fetch_records(client, topic, 0, 0, 0, &fetch));

    rmq_client_close(client);
    printf("client: ok, %d checks against %s (%s)\n", atomic_load(&checks), bootstrap, rmq_version());
    return 0;
}
