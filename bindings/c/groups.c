/* Consumer groups, share groups (queues) and group descriptions from C, on an
 * embedded broker: two group members split a topic's partitions and read
 * every record once, committed offsets survive a close and reopen, describe
 * reports committed offsets and lag; share-group members receive disjoint
 * records, release (redelivered), reject (dead-lettered), renew and accept
 * them, leases expire; and the NULL and error paths of every new function.
 * Usage: groups DATA_DIR   (exit status 0 only when every check passed) */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ringmq.h"
#include "check.h"

/* Under valgrind everything is slow: deadlines are generous. */
#define DEADLINE_MS 60000

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int text_equals(const uint8_t *bytes, size_t len, const char *text) {
    return bytes != NULL && len == strlen(text) && memcmp(bytes, text, len) == 0;
}

/* Produces `count` records "P-I" (I from `first`) to `partition`, one batch,
 * each with a header "n" = "I"; returns the base offset. */
static int64_t produce_numbered(const rmq_client *client, const char *topic, int32_t partition, int first,
                                int count) {
    rmq_record_in records[16];
    rmq_header headers[16];
    char values[16][24];
    char numbers[16][12];
    EXPECT(count > 0 && count <= 16);
    for (int i = 0; i < count; i++) {
        int value_len = snprintf(values[i], sizeof values[i], "%d-%d", partition, first + i);
        int number_len = snprintf(numbers[i], sizeof numbers[i], "%d", first + i);
        headers[i] = (rmq_header){.key = (const uint8_t *)"n", .key_len = 1,
                                  .value = (const uint8_t *)numbers[i], .value_len = (size_t)number_len};
        records[i] = (rmq_record_in){.key = NULL, .value = (const uint8_t *)values[i],
                                     .value_len = (size_t)value_len, .headers = &headers[i], .headers_len = 1,
                                     .timestamp_ms = 0};
    }
    int64_t base = -1;
    CHECK(rmq_produce(client, topic, partition, records, (size_t)count, RMQ_ACKS_WRITTEN, &base));
    return base;
}

/* The value a record at `offset` of `partition` has when produced by
 * produce_numbered from 0 (one producer per partition). */
static int value_is(const rmq_record *record, uint32_t partition) {
    char expected[24];
    snprintf(expected, sizeof expected, "%u-%llu", partition, (unsigned long long)record->offset);
    return text_equals(record->value, record->value_len, expected);
}

/* Topic, partition and delivery count of record `index`; the topic must be `topic`. */
static void origin_of(const rmq_fetch *fetch, size_t index, const char *topic, uint32_t *partition,
                      uint16_t *deliveries) {
    const uint8_t *name = NULL;
    size_t name_len = 0;
    CHECK(rmq_fetch_record_origin(fetch, index, &name, &name_len, partition, deliveries));
    EXPECT(text_equals(name, name_len, topic));
}

/* The value of the first header named `key` of record `index`, or NULL. */
static int header_equals(const rmq_fetch *fetch, size_t index, const char *key, const char *value) {
    rmq_record record;
    CHECK(rmq_fetch_record(fetch, index, &record));
    for (size_t h = 0; h < record.headers_len; h++) {
        rmq_header header;
        CHECK(rmq_fetch_record_header(fetch, index, h, &header));
        if (text_equals(header.key, header.key_len, key)) {
            return text_equals(header.value, header.value_len, value);
        }
    }
    return 0;
}

/* --- describe -------------------------------------------------------------- */

typedef struct {
    uint32_t kind, state, generation;
    size_t members, partitions;
} summary;

static summary describe(const rmq_client *client, const char *group, rmq_group_info **info) {
    summary s = {0};
    CHECK(rmq_group_describe(client, group, info));
    CHECK(rmq_group_info_summary(*info, &s.kind, &s.state, &s.generation, &s.members));
    s.partitions = rmq_group_info_partitions(*info);
    return s;
}

static rmq_group_partition partition_of(const rmq_group_info *info, size_t index, const char *topic) {
    rmq_group_partition partition;
    memset(&partition, 0xab, sizeof partition);
    CHECK(rmq_group_info_partition(info, index, &partition));
    EXPECT(text_equals(partition.topic, partition.topic_len, topic));
    return partition;
}

/* --- two members of one consumer group, one thread each ----------------------- */

#define SPLIT_TOPIC "split"
#define SPLIT_GROUP "split-readers"
#define SPLIT_PARTITIONS 4
#define SPLIT_RECORDS 10 /* per partition */

static pthread_mutex_t split_lock = PTHREAD_MUTEX_INITIALIZER;
static int split_seen[SPLIT_PARTITIONS][SPLIT_RECORDS];
static atomic_int split_total;
static atomic_int split_stop;

typedef struct {
    const rmq_client *client;
    atomic_uint generation;
    atomic_size_t assignment;
    int read_from[SPLIT_PARTITIONS]; /* records this member read per partition */
    int failed;
} member;

static void *run_member(void *raw) {
    member *self = raw;
    const char *topics[] = {SPLIT_TOPIC};
    rmq_group_options options = {.session_timeout_ms = 30000, .rebalance_timeout_ms = 30000,
                                 .heartbeat_interval_ms = 100, .offset_reset_latest = 0, .manual_commit = 0};
    rmq_group_consumer *consumer = NULL;
    if (rmq_group_consumer_open(self->client, SPLIT_GROUP, topics, 1, &options, &consumer) != RMQ_OK) {
        fprintf(stderr, "member: open failed: %s\n", rmq_last_error());
        self->failed = 1;
        return NULL;
    }
    while (!atomic_load(&split_stop)) {
        rmq_fetch *fetch = NULL;
        if (rmq_group_consumer_poll(consumer, 100, &fetch) != RMQ_OK) {
            fprintf(stderr, "member: poll failed: %s\n", rmq_last_error());
            self->failed = 1;
            break;
        }
        for (size_t i = 0; i < rmq_fetch_count(fetch); i++) {
            rmq_record record;
            uint32_t partition = UINT32_MAX;
            uint16_t deliveries = 99;
            const uint8_t *name = NULL;
            size_t name_len = 0;
            if (rmq_fetch_record(fetch, i, &record) != RMQ_OK ||
                rmq_fetch_record_origin(fetch, i, &name, &name_len, &partition, &deliveries) != RMQ_OK ||
                !text_equals(name, name_len, SPLIT_TOPIC) || partition >= SPLIT_PARTITIONS ||
                record.offset >= SPLIT_RECORDS || deliveries != 0 || !value_is(&record, partition)) {
                fprintf(stderr, "member: unexpected record %u@%llu\n", partition, (unsigned long long)record.offset);
                self->failed = 1;
                continue;
            }
            pthread_mutex_lock(&split_lock);
            split_seen[partition][record.offset]++;
            pthread_mutex_unlock(&split_lock);
            self->read_from[partition]++;
            atomic_fetch_add(&split_total, 1);
        }
        rmq_fetch_free(fetch);
        atomic_store(&self->generation, rmq_group_consumer_generation(consumer));
        atomic_store(&self->assignment, rmq_group_consumer_assignment_len(consumer));
    }
    if (rmq_group_consumer_commit(consumer) != RMQ_OK) {
        fprintf(stderr, "member: commit failed: %s\n", rmq_last_error());
        self->failed = 1;
    }
    if (rmq_group_consumer_close(consumer) != RMQ_OK) {
        fprintf(stderr, "member: close failed: %s\n", rmq_last_error());
        self->failed = 1;
    }
    return NULL;
}

static void two_members_split_a_topic(const rmq_client *client) {
    CHECK(rmq_topic_create(client, SPLIT_TOPIC, SPLIT_PARTITIONS, -2, -1));
    member members[2];
    pthread_t threads[2];
    for (int m = 0; m < 2; m++) {
        memset(&members[m], 0, sizeof members[m]);
        members[m].client = client;
        atomic_init(&members[m].generation, 0);
        atomic_init(&members[m].assignment, 0);
        EXPECT(pthread_create(&threads[m], NULL, run_member, &members[m]) == 0);
    }
    /* Both joined one generation, two partitions each; then the records come. */
    int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        unsigned g0 = atomic_load(&members[0].generation), g1 = atomic_load(&members[1].generation);
        if (g0 > 0 && g0 == g1 && atomic_load(&members[0].assignment) == 2 &&
            atomic_load(&members[1].assignment) == 2) {
            break;
        }
        EXPECT(now_ms() < deadline && !members[0].failed && !members[1].failed);
        sleep_ms(20);
    }
    for (int32_t p = 0; p < SPLIT_PARTITIONS; p++) {
        EXPECT(produce_numbered(client, SPLIT_TOPIC, p, 0, SPLIT_RECORDS) == 0);
    }
    while (atomic_load(&split_total) < SPLIT_PARTITIONS * SPLIT_RECORDS) {
        EXPECT(now_ms() < deadline && !members[0].failed && !members[1].failed);
        sleep_ms(20);
    }
    sleep_ms(300); /* room for a duplicate to show up */
    atomic_store(&split_stop, 1);
    for (int m = 0; m < 2; m++) {
        EXPECT(pthread_join(threads[m], NULL) == 0);
        EXPECT(!members[m].failed);
    }
    /* Every record once; each partition read by exactly one member; two each. */
    EXPECT(atomic_load(&split_total) == SPLIT_PARTITIONS * SPLIT_RECORDS);
    for (int p = 0; p < SPLIT_PARTITIONS; p++) {
        for (int o = 0; o < SPLIT_RECORDS; o++) {
            EXPECT(split_seen[p][o] == 1);
        }
        EXPECT((members[0].read_from[p] == SPLIT_RECORDS) != (members[1].read_from[p] == SPLIT_RECORDS));
        EXPECT(members[0].read_from[p] + members[1].read_from[p] == SPLIT_RECORDS);
    }
    int first_member_partitions = 0;
    for (int p = 0; p < SPLIT_PARTITIONS; p++) {
        first_member_partitions += members[0].read_from[p] > 0;
    }
    EXPECT(first_member_partitions == 2);

    /* Both left after committing: empty, everything committed, no lag. */
    rmq_group_info *info = NULL;
    summary s = describe(client, SPLIT_GROUP, &info);
    EXPECT(s.kind == 0 && s.state == 0 && s.members == 0 && s.generation >= 2);
    EXPECT(s.partitions == SPLIT_PARTITIONS);
    for (size_t i = 0; i < s.partitions; i++) {
        rmq_group_partition p = partition_of(info, i, SPLIT_TOPIC);
        EXPECT(p.partition == i); /* sorted by topic and partition */
        EXPECT(p.committed == SPLIT_RECORDS && p.end == SPLIT_RECORDS && p.lag == 0);
        EXPECT(p.available == 0 && p.acquired == 0 && p.archived == 0);
    }
    rmq_group_info_free(info);
}

/* --- two members polled alternately from one thread (issue 12, item 2) ------------- */
/* Before, each poll blocked in its join until the rebalance timeout, the other
 * member was dropped meanwhile, and both reported owning 3 of 3 for ever. */

#define ONE_THREAD_GROUP "one-thread"
#define ONE_THREAD_TOPIC "one-thread-topic"

static size_t poll_once(rmq_group_consumer *consumer) {
    rmq_fetch *fetch = NULL;
    int64_t started = now_ms();
    CHECK(rmq_group_consumer_poll(consumer, 50, &fetch));
    EXPECT(now_ms() - started < 1000); /* a poll returns by its timeout, also mid-rebalance */
    size_t count = rmq_fetch_count(fetch);
    rmq_fetch_free(fetch);
    return count;
}

static void two_members_in_one_thread(const rmq_client *client) {
    CHECK(rmq_topic_create(client, ONE_THREAD_TOPIC, 3, -2, -1));
    const char *topics[] = {ONE_THREAD_TOPIC};
    rmq_group_options options = {.session_timeout_ms = 10000, .rebalance_timeout_ms = 3000,
                                 .heartbeat_interval_ms = 100, .offset_reset_latest = 0, .manual_commit = 0};
    rmq_group_consumer *a = NULL, *b = NULL;
    CHECK(rmq_group_consumer_open(client, ONE_THREAD_GROUP, topics, 1, &options, &a));
    CHECK(rmq_group_consumer_open(client, ONE_THREAD_GROUP, topics, 1, &options, &b));
    /* Settles well inside the 3 s rebalance timeout, on a split of the three. */
    int64_t deadline = now_ms() + 2500;
    for (;;) {
        poll_once(a);
        poll_once(b);
        size_t owned_a = rmq_group_consumer_assignment_len(a), owned_b = rmq_group_consumer_assignment_len(b);
        uint32_t generation = rmq_group_consumer_generation(a);
        if (generation > 0 && generation == rmq_group_consumer_generation(b) && owned_a > 0 && owned_b > 0 &&
            owned_a + owned_b == 3) {
            break;
        }
        EXPECT(now_ms() < deadline);
    }
    rmq_group_info *info = NULL;
    summary s = describe(client, ONE_THREAD_GROUP, &info);
    EXPECT(s.members == 2 && s.state == 2 && s.generation == rmq_group_consumer_generation(a));
    rmq_group_info_free(info);
    /* One closes: the other takes all three within a few heartbeats. */
    CHECK(rmq_group_consumer_close(b));
    deadline = now_ms() + 2500;
    while (rmq_group_consumer_assignment_len(a) != 3) {
        poll_once(a);
        EXPECT(now_ms() < deadline);
    }
    s = describe(client, ONE_THREAD_GROUP, &info);
    EXPECT(s.members == 1);
    rmq_group_info_free(info);
    CHECK(rmq_group_consumer_close(a));
}

/* --- committed offsets, manual and automatic --------------------------------------- */

#define LEDGER "ledger"

/* Polls until `want` records arrived (returns the offsets in `offsets`). */
static void poll_records(rmq_group_consumer *consumer, size_t want, uint64_t *offsets) {
    size_t got = 0;
    int64_t deadline = now_ms() + DEADLINE_MS;
    while (got < want) {
        EXPECT(now_ms() < deadline);
        rmq_fetch *fetch = NULL;
        CHECK(rmq_group_consumer_poll(consumer, 200, &fetch));
        for (size_t i = 0; i < rmq_fetch_count(fetch); i++) {
            rmq_record record;
            CHECK(rmq_fetch_record(fetch, i, &record));
            uint32_t partition = UINT32_MAX;
            uint16_t deliveries = 99;
            origin_of(fetch, i, LEDGER, &partition, &deliveries);
            EXPECT(partition == 0 && deliveries == 0 && value_is(&record, 0));
            EXPECT(got < want);
            offsets[got++] = record.offset;
        }
        rmq_fetch_free(fetch);
    }
}

static rmq_group_consumer *open_ledger_reader(const rmq_client *client, const char *group,
                                              const rmq_group_options *options) {
    const char *topics[] = {LEDGER};
    rmq_group_consumer *consumer = NULL;
    CHECK(rmq_group_consumer_open(client, group, topics, 1, options, &consumer));
    EXPECT(consumer != NULL);
    /* It joins on its first poll. */
    EXPECT(rmq_group_consumer_generation(consumer) == 0);
    EXPECT(rmq_group_consumer_assignment_len(consumer) == 0);
    return consumer;
}

static void check_lag(const rmq_client *client, const char *group, int64_t committed, int64_t end) {
    rmq_group_info *info = NULL;
    summary s = describe(client, group, &info);
    EXPECT(s.kind == 0 && s.state == 0 && s.members == 0 && s.partitions == 1);
    rmq_group_partition p = partition_of(info, 0, LEDGER);
    EXPECT(p.partition == 0 && p.committed == committed && p.end == end && p.lag == end - committed);
    rmq_group_info_free(info);
}

static void committed_offsets(const rmq_client *client) {
    CHECK(rmq_topic_create(client, LEDGER, 1, -2, -1));
    EXPECT(produce_numbered(client, LEDGER, 0, 0, 10) == 0);
    uint64_t offsets[16];

    /* Manual commits: only what is asked for. */
    rmq_group_options manual = {.heartbeat_interval_ms = 100, .manual_commit = 1};
    rmq_group_consumer *consumer = open_ledger_reader(client, "ledger-manual", &manual);
    poll_records(consumer, 10, offsets);
    for (uint64_t i = 0; i < 10; i++) {
        EXPECT(offsets[i] == i);
    }
    EXPECT(rmq_group_consumer_generation(consumer) >= 1);
    EXPECT(rmq_group_consumer_assignment_len(consumer) == 1);
    CHECK(rmq_group_consumer_commit_offset(consumer, LEDGER, 0, 6));
    CHECK(rmq_group_consumer_close(consumer)); /* manual: no commit here */
    check_lag(client, "ledger-manual", 6, 10);
    /* Reopened: resumes at the committed offset. */
    consumer = open_ledger_reader(client, "ledger-manual", &manual);
    poll_records(consumer, 4, offsets);
    for (uint64_t i = 0; i < 4; i++) {
        EXPECT(offsets[i] == 6 + i);
    }
    rmq_fetch *fetch = NULL;
    CHECK(rmq_group_consumer_poll(consumer, 50, &fetch));
    EXPECT(rmq_fetch_count(fetch) == 0);
    rmq_fetch_free(fetch);
    CHECK(rmq_group_consumer_commit(consumer)); /* its position: 10 */
    CHECK(rmq_group_consumer_close(consumer));
    check_lag(client, "ledger-manual", 10, 10);

    /* Automatic: close commits what the polls returned. */
    consumer = open_ledger_reader(client, "ledger-auto", NULL);
    poll_records(consumer, 10, offsets);
    CHECK(rmq_group_consumer_close(consumer));
    check_lag(client, "ledger-auto", 10, 10);
    EXPECT(produce_numbered(client, LEDGER, 0, 10, 2) == 10);
    check_lag(client, "ledger-auto", 10, 12);
    consumer = open_ledger_reader(client, "ledger-auto", NULL);
    poll_records(consumer, 2, offsets);
    EXPECT(offsets[0] == 10 && offsets[1] == 11);
    CHECK(rmq_group_consumer_close(consumer));
    check_lag(client, "ledger-auto", 12, 12);

    /* offset_reset_latest: a new group starts at the end. */
    rmq_group_options latest = {.heartbeat_interval_ms = 100, .offset_reset_latest = 1};
    consumer = open_ledger_reader(client, "ledger-latest", &latest);
    fetch = NULL;
    CHECK(rmq_group_consumer_poll(consumer, 100, &fetch));
    EXPECT(rmq_fetch_count(fetch) == 0);
    rmq_fetch_free(fetch);
    EXPECT(rmq_group_consumer_assignment_len(consumer) == 1);
    EXPECT(produce_numbered(client, LEDGER, 0, 12, 1) == 12);
    poll_records(consumer, 1, offsets);
    EXPECT(offsets[0] == 12);
    CHECK(rmq_group_consumer_close(consumer));
    check_lag(client, "ledger-latest", 13, 13);
}

/* --- share groups -------------------------------------------------------------------- */

#define JOBS "jobs"
#define WORKERS "workers"
#define JOB_PARTITIONS 2
#define JOBS_PER_PARTITION 6

static void share_groups(const rmq_broker *broker, const rmq_client *client) {
    CHECK(rmq_topic_create(client, JOBS, JOB_PARTITIONS, -2, -1));
    for (int32_t p = 0; p < JOB_PARTITIONS; p++) {
        EXPECT(produce_numbered(client, JOBS, p, 0, JOBS_PER_PARTITION) == 0);
    }
    rmq_share_options options = {.lease_ms = 30000, .max_deliveries = 5, .dead_letter_topic = NULL};
    rmq_share_consumer *a = NULL, *b = NULL;
    CHECK(rmq_share_consumer_open(client, WORKERS, JOBS, &options, &a));
    CHECK(rmq_share_consumer_open(client, WORKERS, JOBS, NULL, &b));
    int seen[JOB_PARTITIONS][JOBS_PER_PARTITION] = {{0}};

    /* A takes up to 4 records and keeps them. */
    rmq_fetch *held = NULL;
    CHECK(rmq_share_receive(a, 4, 5000, &held));
    size_t held_count = rmq_fetch_count(held);
    EXPECT(held_count == 4);
    uint32_t held_partition[4];
    uint64_t held_offset[4];
    for (size_t i = 0; i < held_count; i++) {
        rmq_record record;
        CHECK(rmq_fetch_record(held, i, &record));
        uint16_t deliveries = 0;
        origin_of(held, i, JOBS, &held_partition[i], &deliveries);
        EXPECT(held_partition[i] < JOB_PARTITIONS && record.offset < JOBS_PER_PARTITION);
        EXPECT(deliveries == 1 && value_is(&record, held_partition[i]));
        EXPECT(header_equals(held, i, "n", (char[]){(char)('0' + (int)record.offset), 0}));
        held_offset[i] = record.offset;
        EXPECT(seen[held_partition[i]][record.offset]++ == 0);
    }
    /* B gets every other record (never one A holds), and accepts each. */
    size_t total = held_count;
    int64_t deadline = now_ms() + DEADLINE_MS;
    while (total < JOB_PARTITIONS * JOBS_PER_PARTITION) {
        EXPECT(now_ms() < deadline);
        rmq_fetch *fetch = NULL;
        CHECK(rmq_share_receive(b, 100, 500, &fetch));
        size_t indexes[100];
        rmq_result results[100];
        size_t count = rmq_fetch_count(fetch);
        EXPECT(count <= 100);
        for (size_t i = 0; i < count; i++) {
            rmq_record record;
            CHECK(rmq_fetch_record(fetch, i, &record));
            uint32_t partition = UINT32_MAX;
            uint16_t deliveries = 0;
            origin_of(fetch, i, JOBS, &partition, &deliveries);
            EXPECT(partition < JOB_PARTITIONS && record.offset < JOBS_PER_PARTITION);
            EXPECT(deliveries == 1 && value_is(&record, partition));
            EXPECT(seen[partition][record.offset]++ == 0);
            indexes[i] = i;
            results[i] = RMQ_PANIC;
            total++;
        }
        /* All of a receive in one request; each record's result comes back. */
        CHECK(rmq_share_acknowledge_many(b, fetch, indexes, count, RMQ_ACK_ACCEPT, results));
        for (size_t i = 0; i < count; i++) {
            EXPECT(results[i] == RMQ_OK);
        }
        if (count > 0) {
            EXPECT_ERROR(RMQ_ERROR_INVALID_STATE,
                         rmq_share_acknowledge_many(b, fetch, indexes, count, RMQ_ACK_ACCEPT, results));
            EXPECT(results[count - 1] == RMQ_ERROR_INVALID_STATE);
            EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_share_acknowledge_many(b, fetch, indexes, count, 9, NULL));
        }
        rmq_fetch_free(fetch);
    }
    /* Nothing left for anyone while A holds its records. */
    rmq_fetch *none = NULL;
    CHECK(rmq_share_receive(b, 100, 100, &none));
    EXPECT(rmq_fetch_count(none) == 0);
    rmq_fetch_free(none);

    /* Only the holder may acknowledge; a record is accepted once. */
    EXPECT_ERROR(RMQ_ERROR_INVALID_STATE, rmq_share_acknowledge(b, held, 0, RMQ_ACK_ACCEPT));
    CHECK(rmq_share_acknowledge(a, held, 0, RMQ_ACK_ACCEPT));
    EXPECT_ERROR(RMQ_ERROR_INVALID_STATE, rmq_share_acknowledge(a, held, 0, RMQ_ACK_ACCEPT));
    EXPECT_ERROR(RMQ_ERROR_INVALID_STATE, rmq_share_acknowledge(a, held, 0, RMQ_ACK_RELEASE));

    /* Release: delivered again, counted twice. */
    CHECK(rmq_share_acknowledge(a, held, 1, RMQ_ACK_RELEASE));
    rmq_fetch *again = NULL;
    CHECK(rmq_share_receive(b, 100, 5000, &again));
    EXPECT(rmq_fetch_count(again) == 1);
    rmq_record record;
    CHECK(rmq_fetch_record(again, 0, &record));
    uint32_t partition = UINT32_MAX;
    uint16_t deliveries = 0;
    origin_of(again, 0, JOBS, &partition, &deliveries);
    EXPECT(partition == held_partition[1] && record.offset == held_offset[1] && deliveries == 2);
    CHECK(rmq_share_acknowledge(b, again, 0, RMQ_ACK_ACCEPT));
    rmq_fetch_free(again);

    /* Reject: straight to jobs.dlq, with its origin in headers. */
    rmq_record rejected;
    CHECK(rmq_fetch_record(held, 2, &rejected));
    CHECK(rmq_share_acknowledge(a, held, 2, RMQ_ACK_REJECT));
    rmq_fetch *dead = NULL;
    CHECK(rmq_fetch_records(client, JOBS ".dlq", 0, 0, 5000, &dead));
    EXPECT(rmq_fetch_count(dead) == 1);
    rmq_record letter;
    CHECK(rmq_fetch_record(dead, 0, &letter));
    EXPECT(letter.value_len == rejected.value_len && memcmp(letter.value, rejected.value, letter.value_len) == 0);
    char text[24];
    EXPECT(header_equals(dead, 0, "ringmq.dlq.reason", "rejected"));
    EXPECT(header_equals(dead, 0, "ringmq.dlq.topic", JOBS));
    EXPECT(header_equals(dead, 0, "ringmq.dlq.group", WORKERS));
    snprintf(text, sizeof text, "%u", held_partition[2]);
    EXPECT(header_equals(dead, 0, "ringmq.dlq.partition", text));
    snprintf(text, sizeof text, "%llu", (unsigned long long)held_offset[2]);
    EXPECT(header_equals(dead, 0, "ringmq.dlq.offset", text));
    EXPECT(header_equals(dead, 0, "n", text)); /* the record's own headers are kept */
    rmq_fetch_free(dead);
    EXPECT_ERROR(RMQ_ERROR_INVALID_STATE, rmq_share_acknowledge(a, held, 2, RMQ_ACK_ACCEPT));

    /* Renew keeps it; bad kinds and indexes are refused before anything happens. */
    CHECK(rmq_share_acknowledge(a, held, 3, RMQ_ACK_RENEW));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_share_acknowledge(a, held, 3, 0));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_share_acknowledge(a, held, 3, 5));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_share_acknowledge(a, held, 3, 0x101));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_share_acknowledge(a, held, held_count, RMQ_ACK_ACCEPT));
    CHECK(rmq_share_acknowledge(a, held, 3, RMQ_ACK_ACCEPT));
    rmq_fetch_free(held);

    /* Everything archived: start == end, nothing available or acquired. */
    rmq_group_info *info = NULL;
    summary s = describe(client, WORKERS, &info);
    EXPECT(s.kind == 1 && s.state == 2 && s.generation == 0 && s.members == 2);
    EXPECT(s.partitions == JOB_PARTITIONS);
    for (size_t i = 0; i < s.partitions; i++) {
        rmq_group_partition p = partition_of(info, i, JOBS);
        EXPECT(p.partition == i);
        EXPECT(p.committed == JOBS_PER_PARTITION && p.end == JOBS_PER_PARTITION && p.lag == 0);
        EXPECT(p.available == 0 && p.acquired == 0 && p.archived == JOBS_PER_PARTITION);
    }
    rmq_group_info_free(info);

    /* Leases expire: a record held too long goes to another member. */
    rmq_share_options short_lease = {.lease_ms = 200, .max_deliveries = 0, .dead_letter_topic = NULL};
    rmq_share_consumer *slow = NULL;
    CHECK(rmq_share_consumer_open(client, WORKERS, JOBS, &short_lease, &slow));
    EXPECT(produce_numbered(client, JOBS, 1, JOBS_PER_PARTITION, 1) == JOBS_PER_PARTITION);
    rmq_fetch *expiring = NULL;
    CHECK(rmq_share_receive(slow, 10, 5000, &expiring));
    EXPECT(rmq_fetch_count(expiring) == 1);
    info = NULL;
    s = describe(client, WORKERS, &info);
    EXPECT(s.members == 3);
    rmq_group_partition counted = partition_of(info, 1, JOBS);
    EXPECT(counted.acquired == 1 && counted.available == 0 && counted.end == JOBS_PER_PARTITION + 1);
    EXPECT(counted.lag == 1);
    rmq_group_info_free(info);
    rmq_fetch *taken_over = NULL;
    deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        EXPECT(now_ms() < deadline);
        CHECK(rmq_share_receive(b, 10, 500, &taken_over));
        if (rmq_fetch_count(taken_over) > 0) {
            break;
        }
        rmq_fetch_free(taken_over);
    }
    EXPECT(rmq_fetch_count(taken_over) == 1);
    origin_of(taken_over, 0, JOBS, &partition, &deliveries);
    CHECK(rmq_fetch_record(taken_over, 0, &record));
    EXPECT(partition == 1 && record.offset == JOBS_PER_PARTITION && deliveries == 2);
    EXPECT_ERROR(RMQ_ERROR_INVALID_STATE, rmq_share_acknowledge(slow, expiring, 0, RMQ_ACK_ACCEPT));
    CHECK(rmq_share_acknowledge(b, taken_over, 0, RMQ_ACK_ACCEPT));
    rmq_fetch_free(taken_over);
    rmq_fetch_free(expiring);
    rmq_share_consumer_close(slow);

    /* A fetch of one partition has no origins: it cannot be acknowledged. */
    rmq_fetch *plain = NULL;
    CHECK(rmq_fetch_records(client, JOBS, 0, 0, 1000, &plain));
    EXPECT(rmq_fetch_count(plain) > 0);
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_fetch_record_origin(plain, 0, NULL, NULL, NULL, NULL));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_share_acknowledge(a, plain, 0, RMQ_ACK_ACCEPT));
    rmq_fetch_free(plain);

    /* Options: a dead-letter topic of our choice. */
    rmq_share_options custom = {.lease_ms = 0, .max_deliveries = 1, .dead_letter_topic = "jobs-parked"};
    rmq_share_consumer *parker = NULL;
    CHECK(rmq_share_consumer_open(client, "parkers", JOBS, &custom, &parker));
    rmq_fetch *parked = NULL;
    CHECK(rmq_share_receive(parker, 1, 5000, &parked));
    EXPECT(rmq_fetch_count(parked) == 1);
    /* max_deliveries 1: a release after the first delivery dead-letters it. */
    CHECK(rmq_share_acknowledge(parker, parked, 0, RMQ_ACK_RELEASE));
    rmq_fetch_free(parked);
    parked = NULL;
    CHECK(rmq_fetch_records(client, "jobs-parked", 0, 0, 5000, &parked));
    EXPECT(rmq_fetch_count(parked) == 1);
    EXPECT(header_equals(parked, 0, "ringmq.dlq.reason", "max-deliveries"));
    EXPECT(header_equals(parked, 0, "ringmq.dlq.group", "parkers"));
    rmq_fetch_free(parked);
    rmq_share_consumer_close(parker);

    /* A share consumer may outlive the client it was opened on. */
    rmq_client *second = NULL;
    CHECK(rmq_client_open_embedded(broker, &second));
    rmq_share_consumer *orphan = NULL;
    CHECK(rmq_share_consumer_open(second, WORKERS, JOBS, NULL, &orphan));
    rmq_client_close(second);
    EXPECT(produce_numbered(client, JOBS, 0, JOBS_PER_PARTITION, 1) == JOBS_PER_PARTITION);
    rmq_fetch *late = NULL;
    CHECK(rmq_share_receive(orphan, 10, 5000, &late));
    EXPECT(rmq_fetch_count(late) == 1);
    CHECK(rmq_share_acknowledge(orphan, late, 0, RMQ_ACK_ACCEPT));
    rmq_fetch_free(late);
    rmq_share_consumer_close(orphan);

    rmq_share_consumer_close(a);
    rmq_share_consumer_close(b);
}

/* --- NULL handles and bad arguments ------------------------------------------------ */

static void error_paths(const rmq_client *client) {
    const char *topics[] = {LEDGER};
    const char *null_topic[] = {NULL};
    rmq_group_consumer *const sentinel_group = (rmq_group_consumer *)(uintptr_t)0x1;
    rmq_share_consumer *const sentinel_share = (rmq_share_consumer *)(uintptr_t)0x1;
    rmq_group_info *const sentinel_info = (rmq_group_info *)(uintptr_t)0x1;
    rmq_fetch *const sentinel_fetch = (rmq_fetch *)(uintptr_t)0x1;

    /* Group consumers. */
    rmq_group_consumer *group = sentinel_group;
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_consumer_open(NULL, "g", topics, 1, NULL, &group));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_consumer_open(client, NULL, topics, 1, NULL, &group));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_consumer_open(client, "g", NULL, 1, NULL, &group));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_consumer_open(client, "g", null_topic, 1, NULL, &group));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_consumer_open(client, "g", topics, 1, NULL, NULL));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_group_consumer_open(client, "\xc3\x28", topics, 1, NULL, &group));
    EXPECT(group == sentinel_group);
    rmq_fetch *fetch = sentinel_fetch;
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_consumer_poll(NULL, 0, &fetch));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_consumer_commit(NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_consumer_commit_offset(NULL, LEDGER, 0, 1));
    EXPECT(rmq_group_consumer_generation(NULL) == 0);
    EXPECT(rmq_group_consumer_assignment_len(NULL) == 0);
    CHECK(rmq_group_consumer_close(NULL));
    group = NULL;
    CHECK(rmq_group_consumer_open(client, "error-paths", topics, 1, NULL, &group));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_consumer_poll(group, 0, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_consumer_commit_offset(group, NULL, 0, 1));
    CHECK(rmq_group_consumer_close(group)); /* never joined: nothing to commit or leave */
    /* An invalid group name is refused by the broker: the join is answered at
     * once, so the first poll that waits at all reports it. */
    group = NULL;
    CHECK(rmq_group_consumer_open(client, "", topics, 1, NULL, &group));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_group_consumer_poll(group, 1000, &fetch));
    EXPECT(fetch == sentinel_fetch);
    CHECK(rmq_group_consumer_close(group));

    /* Origins. */
    const uint8_t *name = NULL;
    size_t name_len = 0;
    uint32_t partition = 0;
    uint16_t deliveries = 0;
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_fetch_record_origin(NULL, 0, &name, &name_len, &partition, &deliveries));

    /* Share consumers. */
    rmq_share_consumer *share = sentinel_share;
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_share_consumer_open(NULL, WORKERS, JOBS, NULL, &share));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_share_consumer_open(client, NULL, JOBS, NULL, &share));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_share_consumer_open(client, WORKERS, NULL, NULL, &share));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_share_consumer_open(client, WORKERS, JOBS, NULL, NULL));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, rmq_share_consumer_open(client, WORKERS, "no-such-topic", NULL, &share));
    EXPECT(share == sentinel_share);
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_share_receive(NULL, 1, 0, &fetch));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_share_acknowledge(NULL, NULL, 0, RMQ_ACK_ACCEPT));
    rmq_share_consumer_close(NULL);
    share = NULL;
    CHECK(rmq_share_consumer_open(client, WORKERS, JOBS, NULL, &share));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_share_receive(share, 1, 0, NULL));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_share_acknowledge(share, NULL, 0, RMQ_ACK_ACCEPT));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_share_acknowledge(share, NULL, 0, 42));
    /* Nothing to receive: an empty fetch, whose index 0 cannot be acknowledged. */
    rmq_fetch *empty = NULL;
    CHECK(rmq_share_receive(share, 10, 0, &empty));
    EXPECT(empty != NULL && rmq_fetch_count(empty) == 0);
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_share_acknowledge(share, empty, 0, RMQ_ACK_ACCEPT));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_share_acknowledge(share, empty, 0, 0));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_fetch_record_origin(empty, 0, NULL, NULL, NULL, NULL));
    rmq_fetch_free(empty);
    rmq_share_consumer_close(share);
    /* An invalid dead-letter topic name is refused by the broker at the first receive. */
    rmq_share_options bad = {.lease_ms = 0, .max_deliveries = 0, .dead_letter_topic = "no spaces allowed"};
    share = NULL;
    CHECK(rmq_share_consumer_open(client, WORKERS, JOBS, &bad, &share));
    fetch = sentinel_fetch;
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_share_receive(share, 1, 0, &fetch));
    EXPECT(fetch == sentinel_fetch);
    rmq_share_consumer_close(share);

    /* Descriptions. */
    rmq_group_info *info = sentinel_info;
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_describe(NULL, WORKERS, &info));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_describe(client, NULL, &info));
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_describe(client, WORKERS, NULL));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_GROUP, rmq_group_describe(client, "no-such-group", &info));
    EXPECT(info == sentinel_info);
    uint32_t kind = 7;
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_info_summary(NULL, &kind, NULL, NULL, NULL));
    EXPECT(kind == 7);
    EXPECT(rmq_group_info_partitions(NULL) == 0);
    rmq_group_partition entry;
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_info_partition(NULL, 0, &entry));
    rmq_group_info_free(NULL);
    info = NULL;
    CHECK(rmq_group_describe(client, "ledger-manual", &info));
    CHECK(rmq_group_info_summary(info, NULL, NULL, NULL, NULL)); /* every output optional */
    EXPECT_ERROR(RMQ_ERROR_NULL, rmq_group_info_partition(info, 0, NULL));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, rmq_group_info_partition(info, rmq_group_info_partitions(info), &entry));
    rmq_group_info_free(info);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    rmq_broker_options options = {.shards = 2, .busy_poll = 0, .flush_interval_ms = 0, .segment_bytes = 0};
    rmq_broker *broker = NULL;
    CHECK(rmq_broker_open(argv[1], &options, &broker));
    rmq_client *client = NULL;
    CHECK(rmq_client_open_embedded(broker, &client));

    two_members_split_a_topic(client);
    two_members_in_one_thread(client);
    committed_offsets(client);
    share_groups(broker, client);
    error_paths(client);

    rmq_client_close(client);
    CHECK(rmq_broker_close(broker));
    printf("groups: ok, %d checks (%s)\n", atomic_load(&checks), rmq_version());
    return 0;
}
