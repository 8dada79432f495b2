// Tests of the C++ wrapper (ringmq.hpp): an embedded broker always, and a
// server too when given its address.
// Usage: test [HOST:PORT]   (exit status 0 only when every check passed)
#include <ringmq.hpp>

#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using namespace std::string_view_literals;

namespace {

int checks = 0;
int failures = 0;

#define EXPECT(condition)                                                                  \
    do {                                                                                   \
        checks++;                                                                          \
        if (!(condition)) {                                                                \
            std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #condition); \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

/// `body` throws ringmq::Error with `code` and a non-empty message.
#define EXPECT_ERROR(code, body) expect_error((code), #body, __FILE__, __LINE__, [&] { body; })

void expect_error(rmq_result code, const char *text, const char *file, int line, const std::function<void()> &body) {
    checks++;
    try {
        body();
        std::fprintf(stderr, "%s:%d: %s did not throw (expected code %d)\n", file, line, text, (int)code);
        failures++;
    } catch (const ringmq::Error &error) {
        if (error.code() != code || std::string_view(error.what()).empty()) {
            std::fprintf(stderr, "%s:%d: %s threw code %d (%s), expected code %d\n", file, line, text,
                         (int)error.code(), error.what(), (int)code);
            failures++;
        }
    }
}

// The wrapper's handles are move-only, and moves never throw.
template <typename T>
constexpr bool move_only = !std::is_copy_constructible_v<T> && !std::is_copy_assignable_v<T> &&
                           std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T>;
static_assert(move_only<ringmq::Broker>);
static_assert(move_only<ringmq::Client>);
static_assert(move_only<ringmq::Consumer>);
static_assert(move_only<ringmq::Fetch>);
static_assert(move_only<ringmq::Pending>);
static_assert(move_only<ringmq::GroupConsumer>);
static_assert(move_only<ringmq::ShareConsumer>);
static_assert(std::is_base_of_v<std::runtime_error, ringmq::Error>);

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

constexpr int64_t T0 = 1700000000000;
constexpr uint32_t kPartitions = 3;

bool listed(const ringmq::Client &client, const std::string &topic, uint32_t partitions) {
    for (const ringmq::TopicInfo &info : client.topics()) {
        if (info.name == topic) {
            return info.partitions == partitions;
        }
    }
    return false;
}

/// Everything a client does, the same for an embedded broker and a server.
void exercise(const ringmq::Client &client, const std::string &label) {
    const std::string topic = "cpp-" + label + "-" + std::to_string(getpid());
    const std::string missing = topic + "-missing";

    // --- topics -----------------------------------------------------------
    EXPECT(!listed(client, topic, kPartitions));
    client.create_topic(topic, kPartitions);
    EXPECT_ERROR(RMQ_ERROR_TOPIC_EXISTS, client.create_topic(topic, kPartitions));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, client.create_topic(topic + "-zero", 0));
    EXPECT(listed(client, topic, kPartitions));
    ringmq::Offsets empty = client.offsets(topic, 0);
    EXPECT(empty.earliest == 0 && empty.latest == 0);

    // --- synchronous produce ------------------------------------------------
    ringmq::Record first{"k0", "v0", {{"trace", "abc"}, {"none", std::nullopt}}, T0};
    EXPECT(client.produce(topic, 0, first, ringmq::Acks::Durable) == 0);
    ringmq::Offsets after_durable = client.offsets(topic, 0);
    EXPECT(after_durable.latest == 1 && after_durable.durable == 1);
    ringmq::Record tombstone{std::nullopt, std::nullopt, {}, T0 + 1};
    EXPECT(client.produce(topic, 0, tombstone) == 1);
    // An engaged default string_view (data() == nullptr) is empty, not null.
    ringmq::Record empty_value{std::string_view{}, std::string_view{}, {{"", std::string_view{}}}, T0 + 2};
    EXPECT(client.produce(topic, 0, empty_value) == 2);
    const std::string binary("b\0i\xffn", 5);
    std::vector<ringmq::Record> batch{
        {"b0", binary, {}, T0 + 3},
        {"b1", "second", {{"h", "1"}, {"h", "2"}}, T0 + 4},
        {std::nullopt, "stamped now", {}, 0},
    };
    int64_t before = now_ms();
    EXPECT(client.produce(topic, 0, batch) == 3);
    int64_t after = now_ms();
    EXPECT(client.produce(topic, 0, ringmq::Record{"k6", "unacknowledged", {}, T0 + 6}, ringmq::Acks::None) == -1);
    for (auto deadline = std::chrono::steady_clock::now() + 5s; client.offsets(topic, 0).latest < 7;) {
        EXPECT(std::chrono::steady_clock::now() < deadline);
        std::this_thread::sleep_for(2ms);
    }

    // --- fetch: contents, null versus empty, headers, timestamps ------------
    ringmq::Fetch fetch = client.fetch(topic, 0, 0, 1000ms);
    EXPECT(fetch && fetch.size() >= 1);
    {
        ringmq::RecordView r = fetch[0];
        EXPECT(r.offset() == 0 && r.timestamp() == T0);
        EXPECT(r.key() == "k0"sv && r.value() == "v0"sv);
        EXPECT(r.header_count() == 2);
        EXPECT(r.header(0).key == "trace" && r.header(0).value == "abc"sv);
        EXPECT(r.header(1).key == "none" && !r.header(1).value);
        EXPECT(r.header_value("trace") == std::optional<std::string_view>("abc"));
        EXPECT(r.header_value("none").has_value() && !r.header_value("none")->has_value());
        EXPECT(!r.header_value("absent").has_value());
        EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, r.header(2));
    }
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, fetch.at(fetch.size()));
    uint64_t expected = 0;
    size_t read = 0;
    ringmq::Consumer consumer = client.consumer(topic, 0, ringmq::Consumer::kEarliest);
    EXPECT(consumer.position() == 0);
    for (auto deadline = std::chrono::steady_clock::now() + 10s; consumer.position() < 7;) {
        EXPECT(std::chrono::steady_clock::now() < deadline);
        ringmq::Fetch polled = consumer.poll(1000ms);
        for (const ringmq::RecordView &r : polled) {
            EXPECT(r.offset() == expected);
            switch (r.offset()) {
                case 1:
                    EXPECT(!r.key() && !r.value() && r.header_count() == 0 && r.timestamp() == T0 + 1);
                    break;
                case 2:
                    EXPECT(r.key() && r.key()->empty() && r.value() && r.value()->empty());
                    EXPECT(r.header_count() == 1 && r.header(0).key.empty() && r.header(0).value &&
                           r.header(0).value->empty());
                    break;
                case 3:
                    EXPECT(r.key() == "b0"sv && r.value() == std::string_view(binary) && r.timestamp() == T0 + 3);
                    break;
                case 4: {
                    std::string joined;
                    for (ringmq::HeaderView h : r.headers()) {
                        joined += std::string(h.key) + "=" + std::string(h.value.value_or("null"));
                        joined += ";";
                    }
                    EXPECT(joined == "h=1;h=2;");
                    EXPECT(r.headers().size() == 2);
                    break;
                }
                case 5:
                    EXPECT(!r.key() && r.value() == "stamped now"sv);
                    EXPECT(r.timestamp() >= before && r.timestamp() <= after);
                    break;
                case 6:
                    EXPECT(r.key() == "k6"sv && r.value() == "unacknowledged"sv);
                    break;
                default:
                    break;
            }
            expected++;
            read++;
        }
    }
    EXPECT(read == 7 && consumer.position() == 7);
    // Headers of a temporary RecordView: the range refers to the Fetch.
    size_t header_keys = 0;
    for (ringmq::HeaderView h : fetch[0].headers()) {
        header_keys += h.key.size();
    }
    EXPECT(header_keys == 5 + 4);

    // From the middle of a batch; at the end; past the end.
    ringmq::Fetch middle = client.fetch(topic, 0, 4, 1000ms);
    EXPECT(!middle.empty() && middle[0].offset() == 4);
    ringmq::Fetch at_end = client.fetch(topic, 0, 7, 10ms);
    EXPECT(at_end && at_end.empty() && at_end.begin() == at_end.end());
    EXPECT_ERROR(RMQ_ERROR_OFFSET_OUT_OF_RANGE, client.fetch(topic, 0, 1000, 10ms));
    EXPECT(client.offset_for_timestamp(topic, 0, T0 + 1) == std::optional<uint64_t>(1));
    EXPECT(client.offset_for_timestamp(topic, 0, T0 + 5) == std::optional<uint64_t>(5));
    EXPECT(!client.offset_for_timestamp(topic, 0, now_ms() + 3600 * 1000));

    // --- asynchronous produce: Pending and callbacks -------------------------
    std::atomic<int> calls{0};
    std::mutex lock;
    std::vector<int64_t> callback_offsets;
    auto callback = [&](rmq_result result, int64_t offset, std::string_view message) {
        std::lock_guard<std::mutex> guard(lock);
        if (result == RMQ_OK && message.empty()) {
            callback_offsets.push_back(offset);
        }
        calls++;
    };
    std::vector<ringmq::Pending> pendings;
    for (int i = 0; i < 8; i++) {
        std::string value = "async " + std::to_string(i);  // copied before produce_async returns
        pendings.push_back(client.produce_async(topic, 1, ringmq::Record{"async", value, {{"i", value}}, T0 + 100 + i},
                                                i == 7 ? ringmq::Acks::Durable : ringmq::Acks::Written, callback));
    }
    // Dropping a Pending early: the produce still happens, the callback still runs.
    (void)client.produce_async(topic, 1, ringmq::Record{"async", "dropped", {}, T0 + 108}, ringmq::Acks::Written,
                               callback);
    // Without a callback.
    ringmq::Pending plain = client.produce_async(topic, 1, {{"plain", "one", {}, T0 + 109}, {"plain", "two", {}, T0 + 110}});
    std::optional<int64_t> polled;
    for (auto deadline = std::chrono::steady_clock::now() + 10s; !(polled = pendings[0].poll());) {
        EXPECT(std::chrono::steady_clock::now() < deadline);
        std::this_thread::sleep_for(1ms);
    }
    EXPECT(polled == 0);
    EXPECT(pendings[3].wait_for(10s) == 3);
    ringmq::Pending moved = std::move(pendings[5]);  // a Pending moves
    EXPECT(!pendings[5] && moved && moved.wait() == 5);
    EXPECT(pendings[7].wait() == 7);
    EXPECT(plain.wait() == 9);
    EXPECT(plain.poll() == 9 && plain.wait_for(0ms) == 9);
    {
        std::lock_guard<std::mutex> guard(lock);
        EXPECT(calls == 9);  // produces complete in order: the dropped one did too
        EXPECT((callback_offsets == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
    }
    pendings.clear();
    ringmq::Offsets async_offsets = client.offsets(topic, 1);
    EXPECT(async_offsets.latest == 11 && async_offsets.durable >= 8);
    ringmq::Fetch async_fetch = client.fetch(topic, 1, 0, 1000ms);
    EXPECT(async_fetch.size() >= 1 && async_fetch[0].value() == "async 0"sv &&
           async_fetch[0].header_value("i") == std::optional<std::string_view>("async 0"));

    // A failing asynchronous produce: the Pending throws, the callback sees it.
    std::atomic<int> failed_result{RMQ_OK};
    std::string failed_message;
    ringmq::Pending failing = client.produce_async(
        missing, 0, ringmq::Record{"k", "v"}, ringmq::Acks::Written,
        [&](rmq_result result, int64_t offset, std::string_view message) {
            failed_message = std::string(message);  // published by the Pending's completion
            failed_result = offset == -1 ? result : RMQ_OK;
        });
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, failing.wait());
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, failing.poll());
    EXPECT(failed_result == RMQ_ERROR_UNKNOWN_TOPIC && !failed_message.empty());
    // A callback that throws does not take the process down.
    ringmq::Pending thrower = client.produce_async(topic, 1, ringmq::Record{"k", "thrown"}, ringmq::Acks::Written,
                                                   [](rmq_result, int64_t, std::string_view) {
                                                       throw std::runtime_error("from a callback");
                                                   });
    EXPECT(thrower.wait() == 11);

    // --- partition -1: the key decides, the same key the same partition -----
    std::vector<int64_t> latest_before;
    for (uint32_t p = 0; p < kPartitions; p++) {
        latest_before.push_back(client.offsets(topic, p).latest);
    }
    int64_t routed_first = client.produce(topic, -1, ringmq::Record{"route-me", "1"});
    int landed = -1;
    for (uint32_t p = 0; p < kPartitions; p++) {
        int64_t latest = client.offsets(topic, p).latest;
        if (latest == latest_before[p] + 1) {
            EXPECT(landed == -1);
            landed = static_cast<int>(p);
        }
    }
    EXPECT(landed >= 0 && routed_first == latest_before[landed]);
    EXPECT(client.produce(topic, -1, ringmq::Record{"route-me", "2"}) == routed_first + 1);
    EXPECT(client.produce_async(topic, -1, ringmq::Record{"route-me", "3"}).wait() == routed_first + 2);
    if (landed >= 0) {
        EXPECT(client.offsets(topic, static_cast<uint32_t>(landed)).latest == routed_first + 3);
        ringmq::Fetch routed = client.fetch(topic, static_cast<uint32_t>(landed), routed_first, 1000ms);
        EXPECT(routed.size() == 3);
        std::string values;
        for (const ringmq::RecordView &r : routed) {
            EXPECT(r.key() == "route-me"sv);
            values += std::string(r.value().value_or(""));
        }
        EXPECT(values == "123");
    }

    // --- a Client shared by threads ------------------------------------------
    int64_t partition2 = client.offsets(topic, 2).latest;
    std::atomic<int> thread_errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; t++) {
        threads.emplace_back([&, t] {
            try {
                for (int i = 0; i < 10; i++) {
                    client.produce(topic, 2, ringmq::Record{std::nullopt, "thread " + std::to_string(t)});
                }
            } catch (const ringmq::Error &) {
                thread_errors++;
            }
        });
    }
    for (std::thread &thread : threads) {
        thread.join();
    }
    EXPECT(thread_errors == 0 && client.offsets(topic, 2).latest == partition2 + 20);

    // --- a long poll in one thread does not hold up another's produce --------
    // (issue 12, item 3: over TCP the produce waited for the fetch's timeout)
    {
        const int64_t before = client.offsets(topic, 2).latest;
        std::size_t polled = 0;
        auto poll_started = std::chrono::steady_clock::now();
        std::chrono::steady_clock::duration poll_took{};
        std::thread poller([&] {
            ringmq::Fetch waited = client.fetch(topic, 2, static_cast<uint64_t>(before), 10000ms);
            polled = waited.size();
            poll_took = std::chrono::steady_clock::now() - poll_started;
        });
        std::this_thread::sleep_for(200ms);  // the fetch is waiting at the broker
        auto produce_started = std::chrono::steady_clock::now();
        EXPECT(client.produce(topic, 2, ringmq::Record{std::nullopt, "wake up"}) == before);
        auto produce_took = std::chrono::steady_clock::now() - produce_started;
        poller.join();
        EXPECT(produce_took < 5s && poll_took < 5s && polled == 1);
    }

    // --- a consumer at the end sees only what comes next ---------------------
    // (partition 0 may have received the routed records above)
    const int64_t end0 = client.offsets(topic, 0).latest;
    ringmq::Consumer tail = client.consumer(topic, 0, ringmq::Consumer::kLatest);
    EXPECT(static_cast<int64_t>(tail.position()) == end0);
    EXPECT(tail.poll(10ms).empty());
    EXPECT(client.produce(topic, 0, ringmq::Record{"tail", "new"}) == end0);
    ringmq::Fetch fresh = tail.poll(1000ms);
    EXPECT(fresh.size() == 1 && fresh[0].value() == "new"sv);
    const uint64_t end = static_cast<uint64_t>(end0) + 1;
    EXPECT(tail.position() == end);

    // --- move semantics --------------------------------------------------------
    ringmq::Fetch kept = std::move(fresh);
    EXPECT(!fresh && fresh.size() == 0 && fresh.begin() == fresh.end());
    EXPECT(kept.size() == 1 && kept[0].key() == "tail"sv);
    std::optional<std::string_view> view = kept[0].value();
    ringmq::Fetch holder = std::move(kept);  // views survive a move
    EXPECT(view == "new"sv);
    holder = client.fetch(topic, 0, 0, 1000ms);  // assigning frees the old one
    EXPECT(holder && holder[0].offset() == 0);
    ringmq::Fetch &alias = holder;
    holder = std::move(alias);  // self-move keeps it
    EXPECT(holder && holder.size() >= 1);
    ringmq::Consumer moved_consumer = std::move(tail);
    EXPECT(!tail && moved_consumer && moved_consumer.position() == end);
    EXPECT(tail.position() == 0);
    EXPECT_ERROR(RMQ_ERROR_NULL, tail.poll(0ms));  // a moved-from handle is NULL for the library
    tail = std::move(moved_consumer);
    EXPECT(tail && tail.position() == end);
    ringmq::Pending none;
    EXPECT_ERROR(RMQ_ERROR_NULL, none.poll());

    // --- errors -----------------------------------------------------------------
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, client.produce(missing, 0, ringmq::Record{"k", "v"}));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, client.produce(missing, -1, ringmq::Record{"k", "v"}));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, client.produce(topic, kPartitions, ringmq::Record{"k", "v"}));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, client.fetch(missing, 0, 0));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, client.offsets(missing, 0));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, client.consumer(missing, 0, ringmq::Consumer::kEarliest));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, client.delete_topic(missing));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, client.produce(topic, 0, std::vector<ringmq::Record>{}));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, client.consumer(topic, 0, -3));
    try {
        client.produce(missing, 0, ringmq::Record{"k", "v"});
    } catch (const std::runtime_error &error) {  // catchable as a std::runtime_error
        EXPECT(std::string(error.what()).find(missing) != std::string::npos);
    }

    // --- delete -------------------------------------------------------------------
    client.delete_topic(topic);
    EXPECT(!listed(client, topic, kPartitions));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, client.delete_topic(topic));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, client.produce(topic, 0, ringmq::Record{"k", "v"}));
}

/// Waits until `condition` holds, for at most `timeout` (valgrind is slow).
bool eventually(const std::function<bool()> &condition, std::chrono::milliseconds timeout = 60s) {
    for (auto deadline = std::chrono::steady_clock::now() + timeout; !condition();) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

/// Records "P-I" (I from `first`) to `partition`, as one batch.
void produce_numbered(const ringmq::Client &client, const std::string &topic, uint32_t partition, int first,
                      int count) {
    std::vector<std::string> values;
    for (int i = first; i < first + count; i++) {
        values.push_back(std::to_string(partition) + "-" + std::to_string(i));
    }
    std::vector<ringmq::Record> records;
    for (const std::string &value : values) {
        records.push_back(ringmq::Record{std::nullopt, value, {{"origin", "cpp"}}, 0});
    }
    EXPECT(client.produce(topic, static_cast<int32_t>(partition), records) == first);
}

/// Consumer groups, share groups and descriptions, the same embedded and over TCP.
void exercise_groups(const ringmq::Client &client, const std::string &label) {
    const std::string suffix = label + "-" + std::to_string(getpid());
    const std::string topic = "cpp-groups-" + suffix;
    constexpr uint32_t kGroupPartitions = 4;
    constexpr int kPerPartition = 5;
    client.create_topic(topic, kGroupPartitions);

    // --- two members, one thread each, split the partitions --------------------
    const std::string split = "cpp-split-" + suffix;
    ringmq::GroupOptions fast;
    fast.session_timeout_ms = 30000;  // valgrind is slow
    fast.rebalance_timeout_ms = 30000;
    fast.heartbeat_interval_ms = 100;
    std::atomic<bool> stop{false};
    std::atomic<int> total{0};
    std::atomic<int> member_errors{0};
    std::array<std::atomic<uint32_t>, 2> generation{};
    std::array<std::atomic<size_t>, 2> assigned{};
    std::mutex lock;
    std::map<std::pair<uint32_t, uint64_t>, int> seen;
    std::array<std::set<uint32_t>, 2> read_from;
    auto member = [&](int id) {
        try {
            ringmq::GroupConsumer consumer = client.group_consumer(split, {topic}, fast);
            while (!stop) {
                ringmq::Fetch fetch = consumer.poll(100ms);
                for (const ringmq::RecordView &r : fetch) {
                    ringmq::RecordView::Origin origin = r.origin();
                    std::string expected = std::to_string(origin.partition) + "-" + std::to_string(r.offset());
                    if (origin.topic != topic || origin.delivery_count != 0 || r.value() != std::string_view(expected) ||
                        r.header_value("origin") != std::optional<std::string_view>("cpp")) {
                        member_errors++;
                    }
                    std::lock_guard<std::mutex> guard(lock);
                    seen[{origin.partition, r.offset()}]++;
                    read_from[id].insert(origin.partition);
                    total++;
                }
                generation[id] = consumer.generation();
                assigned[id] = consumer.assignment_size();
            }
            consumer.commit();
            consumer.close();
            consumer.close();  // idempotent
        } catch (const ringmq::Error &error) {
            std::fprintf(stderr, "member %d: %s\n", id, error.what());
            member_errors++;
        }
    };
    std::thread first(member, 0), second(member, 1);
    EXPECT(eventually([&] {
        return generation[0] > 0 && generation[0] == generation[1] && assigned[0] == 2 && assigned[1] == 2;
    }));
    for (uint32_t p = 0; p < kGroupPartitions; p++) {
        produce_numbered(client, topic, p, 0, kPerPartition);
    }
    EXPECT(eventually([&] { return total >= static_cast<int>(kGroupPartitions) * kPerPartition; }));
    std::this_thread::sleep_for(300ms);  // room for a duplicate to show up
    stop = true;
    first.join();
    second.join();
    EXPECT(member_errors == 0);
    EXPECT(total == static_cast<int>(kGroupPartitions) * kPerPartition);
    EXPECT(seen.size() == kGroupPartitions * kPerPartition);
    for (const auto &entry : seen) {
        EXPECT(entry.second == 1);
    }
    EXPECT(read_from[0].size() == 2 && read_from[1].size() == 2);
    for (uint32_t p : read_from[0]) {
        EXPECT(read_from[1].count(p) == 0);
    }
    ringmq::GroupDescription described = client.describe_group(split);
    EXPECT(described.kind == ringmq::GroupKind::Consumer && described.state == ringmq::GroupState::Empty);
    EXPECT(described.members == 0 && described.generation >= 2);
    EXPECT(described.partitions.size() == kGroupPartitions);
    for (size_t i = 0; i < described.partitions.size(); i++) {
        const ringmq::GroupPartition &p = described.partitions[i];
        EXPECT(p.topic == topic && p.partition == i);
        EXPECT(p.committed == kPerPartition && p.end == kPerPartition && p.lag == 0);
    }

    // --- manual commits, and resuming where they left off -------------------------
    const std::string manual = "cpp-manual-" + suffix;
    ringmq::GroupOptions options;
    options.heartbeat_interval_ms = 100;
    options.manual_commit = true;
    auto read = [](ringmq::GroupConsumer &consumer, size_t want) {
        std::map<uint32_t, std::vector<uint64_t>> offsets;
        size_t got = 0;
        EXPECT(eventually([&] {
            for (const ringmq::RecordView &r : consumer.poll(100ms)) {
                offsets[r.partition()].push_back(r.offset());
                got++;
            }
            return got >= want;
        }));
        EXPECT(got == want);
        return offsets;
    };
    {
        ringmq::GroupConsumer consumer = client.group_consumer(manual, {topic}, options);
        EXPECT(consumer.generation() == 0 && consumer.assignment_size() == 0);  // joins on the first poll
        read(consumer, kGroupPartitions * kPerPartition);
        EXPECT(consumer.generation() >= 1 && consumer.assignment_size() == kGroupPartitions);
        consumer.commit(topic, 0, 2);
        consumer.commit(topic, 1, kPerPartition);
        ringmq::GroupConsumer moved = std::move(consumer);
        EXPECT(!consumer && moved);
        EXPECT(consumer.generation() == 0 && consumer.assignment_size() == 0);
        EXPECT_ERROR(RMQ_ERROR_NULL, consumer.poll(0ms));
        EXPECT_ERROR(RMQ_ERROR_NULL, consumer.commit());
        consumer.close();  // nothing to close
        moved.close();
    }
    described = client.describe_group(manual);
    EXPECT(described.state == ringmq::GroupState::Empty && described.partitions.size() == 2);
    if (described.partitions.size() == 2) {
        EXPECT(described.partitions[0].partition == 0 && described.partitions[0].committed == 2 &&
               described.partitions[0].end == kPerPartition && described.partitions[0].lag == kPerPartition - 2);
        EXPECT(described.partitions[1].partition == 1 && described.partitions[1].committed == kPerPartition &&
               described.partitions[1].lag == 0);
    }
    {
        // Partition 0 resumes at 2, partition 1 has nothing left, 2 and 3 start
        // at the earliest offset (nothing committed).
        ringmq::GroupConsumer consumer = client.group_consumer(manual, {topic}, options);
        auto offsets = read(consumer, (kPerPartition - 2) + 2 * kPerPartition);
        EXPECT((offsets[0] == std::vector<uint64_t>{2, 3, 4}));
        EXPECT(offsets.count(1) == 0 && offsets[2].size() == kPerPartition && offsets[3].size() == kPerPartition);
        consumer.commit();
        // The destructor leaves the group (manual: without committing).
    }
    described = client.describe_group(manual);
    EXPECT(described.partitions.size() == kGroupPartitions);
    for (const ringmq::GroupPartition &p : described.partitions) {
        EXPECT(p.committed == kPerPartition && p.lag == 0);
    }
    {
        // Automatic commits: close() commits what the polls returned.
        ringmq::GroupConsumer consumer = client.group_consumer("cpp-auto-" + suffix, {topic});
        read(consumer, kGroupPartitions * kPerPartition);
    }
    described = client.describe_group("cpp-auto-" + suffix);
    EXPECT(described.partitions.size() == kGroupPartitions);
    produce_numbered(client, topic, 3, kPerPartition, 2);
    described = client.describe_group("cpp-auto-" + suffix);
    int64_t lag = 0;
    for (const ringmq::GroupPartition &p : described.partitions) {
        lag += p.lag;
    }
    EXPECT(lag == 2);

    // --- share groups ----------------------------------------------------------------
    const std::string queue = "cpp-queue-" + suffix;
    const std::string workers = "cpp-workers-" + suffix;
    client.create_topic(queue, 1);
    produce_numbered(client, queue, 0, 0, 6);
    ringmq::ShareConsumer a = client.share_consumer(workers, queue);
    ringmq::ShareOptions share_options;
    share_options.lease_ms = 30000;
    share_options.max_deliveries = 3;
    ringmq::ShareConsumer b = client.share_consumer(workers, queue, share_options);
    ringmq::Fetch held = a.receive(2, 5000ms);
    EXPECT(held.size() == 2);
    for (const ringmq::RecordView &r : held) {
        EXPECT(r.topic() == queue && r.partition() == 0 && r.delivery_count() == 1);
    }
    std::set<uint64_t> offsets_seen;
    if (held.size() == 2) {
        offsets_seen = {held[0].offset(), held[1].offset()};
    }
    EXPECT(eventually([&] {
        for (const ringmq::RecordView &r : b.receive(100, 100ms)) {
            EXPECT(offsets_seen.insert(r.offset()).second);  // never one A holds
            b.accept(r);
        }
        return offsets_seen.size() >= 6;
    }));
    EXPECT(offsets_seen.size() == 6);
    EXPECT(b.receive(10, 50ms).empty());
    if (held.size() == 2) {
        EXPECT_ERROR(RMQ_ERROR_INVALID_STATE, b.accept(held[0]));  // A holds it
        a.release(held[0]);
        ringmq::Fetch again = b.receive(10, 5000ms);
        EXPECT(again.size() == 1 && again[0].offset() == held[0].offset() && again[0].delivery_count() == 2);
        b.acknowledge(again, 0, ringmq::Ack::Accept);
        EXPECT_ERROR(RMQ_ERROR_INVALID_STATE, b.accept(again[0]));  // accepted already
        a.renew(held[1]);
        EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, a.acknowledge(held, 1, static_cast<ringmq::Ack>(9)));
        EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, a.acknowledge(held, 2, ringmq::Ack::Accept));
        a.reject(held[1]);
        EXPECT_ERROR(RMQ_ERROR_INVALID_STATE, a.reject(held[1]));
        ringmq::Fetch dead = client.fetch(queue + ".dlq", 0, 0, 5000ms);
        EXPECT(dead.size() == 1);
        if (dead.size() == 1) {
            EXPECT(dead[0].value() == held[1].value());
            EXPECT(dead[0].header_value("ringmq.dlq.reason") == std::optional<std::string_view>("rejected"));
            EXPECT(dead[0].header_value("ringmq.dlq.group") == std::optional<std::string_view>(workers));
            EXPECT(dead[0].header_value("origin") == std::optional<std::string_view>("cpp"));
            EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, dead[0].origin());  // a plain fetch has no origins
        }
    }
    described = client.describe_group(workers);
    EXPECT(described.kind == ringmq::GroupKind::Share && described.state == ringmq::GroupState::Stable);
    EXPECT(described.generation == 0 && described.members == 2 && described.partitions.size() == 1);
    if (described.partitions.size() == 1) {
        const ringmq::GroupPartition &p = described.partitions[0];
        EXPECT(p.topic == queue && p.partition == 0 && p.committed == 6 && p.end == 6 && p.lag == 0);
        EXPECT(p.available == 0 && p.acquired == 0 && p.archived == 6);
    }
    produce_numbered(client, queue, 0, 6, 2);
    ringmq::Fetch pending = a.receive(1, 5000ms);
    described = client.describe_group(workers);
    if (described.partitions.size() == 1) {
        const ringmq::GroupPartition &p = described.partitions[0];
        EXPECT(p.available == 1 && p.acquired == 1 && p.end == 8 && p.lag == 2);
    }
    ringmq::ShareConsumer moved = std::move(a);
    EXPECT(!a && moved);
    EXPECT_ERROR(RMQ_ERROR_NULL, a.receive(1, 0ms));
    EXPECT_ERROR(RMQ_ERROR_NULL, a.accept(pending[0]));
    moved.accept(pending[0]);
    ringmq::Fetch moved_fetch = std::move(pending);
    EXPECT_ERROR(RMQ_ERROR_NULL, moved.acknowledge(pending, 0, ringmq::Ack::Accept));  // a moved-from Fetch
    moved.close();
    EXPECT(!moved);

    // --- errors ------------------------------------------------------------------------
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_GROUP, client.describe_group("cpp-nobody-" + suffix));
    EXPECT_ERROR(RMQ_ERROR_UNKNOWN_TOPIC, client.share_consumer(workers, queue + "-missing"));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, client.group_consumer("", {topic}).poll(1000ms));
}

/// A Client moves; a moved-from one is NULL for the library.
void moves(ringmq::Client &&fresh) {
    ringmq::Client client = std::move(fresh);
    EXPECT(client && !fresh);
    EXPECT_ERROR(RMQ_ERROR_NULL, fresh.topics());
    (void)client.topics();
    fresh = std::move(client);
    EXPECT(fresh && !client);
    fresh.close();
    EXPECT(!fresh);
    fresh.close();  // twice is fine
}

void embedded(const std::string &base) {
    const std::string data_dir = base + "/embedded";
    EXPECT_ERROR(RMQ_ERROR_START, ringmq::Broker("/dev/null/not-a-directory"));
    ringmq::BrokerOptions options;
    options.shards = 2;
    {
        ringmq::Broker broker(data_dir, options);
        ringmq::Broker moved = std::move(broker);
        EXPECT(moved && !broker);
        EXPECT_ERROR(RMQ_ERROR_NULL, ringmq::Client::embedded(broker));
        ringmq::Client client = ringmq::Client::embedded(moved);
        exercise(client, "embedded");
        exercise_groups(client, "embedded");
        moves(ringmq::Client::embedded(moved));
        client.create_topic("persisted", 1);
        EXPECT(client.produce("persisted", 0, {{"a", "1"}, {"b", "2"}}, ringmq::Acks::Durable) == 0);
        client.close();  // clients before their broker
        moved.close();   // explicit, throws on a shutdown error
        EXPECT(!moved);
    }
    // Reopened: the data is still there.
    ringmq::Broker broker(data_dir, options);
    ringmq::Client client = ringmq::Client::embedded(broker);
    EXPECT(listed(client, "persisted", 1));
    ringmq::Offsets offsets = client.offsets("persisted", 0);
    EXPECT(offsets.earliest == 0 && offsets.latest == 2);
    // A recovered log is reported durable after the broker's first flush round
    // (it does not sync before serving), which start-up asks for at once.
    for (auto deadline = std::chrono::steady_clock::now() + 5s; offsets.durable < 2;) {
        EXPECT(std::chrono::steady_clock::now() < deadline);
        std::this_thread::sleep_for(2ms);
        offsets = client.offsets("persisted", 0);
    }
    EXPECT(offsets.durable == 2);
    ringmq::Fetch fetch = client.fetch("persisted", 0, 0, 1000ms);
    EXPECT(fetch.size() == 2 && fetch[1].key() == "b"sv && fetch[1].value() == "2"sv);
    // Destructors: the client (declared last) closes before the broker.
}

void server(const std::string &bootstrap) {
    EXPECT_ERROR(RMQ_ERROR_IO, ringmq::Client::connect("127.0.0.1:1"));
    EXPECT_ERROR(RMQ_ERROR_INVALID_ARGUMENT, ringmq::Client::connect("no-port"));
    EXPECT_ERROR(RMQ_ERROR_AUTHENTICATION, ringmq::Client::connect(bootstrap, "bindings", "wrong"));
    EXPECT_ERROR(RMQ_ERROR_AUTHENTICATION, ringmq::Client::connect(bootstrap, "bindings", "wrong", "PLAIN"));
    ringmq::Client::connect(bootstrap, "bindings", "bindings-pw").close();
    ringmq::Client client = ringmq::Client::connect(bootstrap);
    exercise(client, "tcp");
    exercise_groups(client, "tcp");
    moves(ringmq::Client::connect(bootstrap));
    // A consumer may outlive its client.
    const std::string topic = "cpp-outlive-" + std::to_string(getpid());
    client.create_topic(topic, 1);
    client.produce(topic, 0, ringmq::Record{"k", "kept"});
    std::optional<ringmq::Consumer> consumer;
    {
        ringmq::Client short_lived = ringmq::Client::connect(bootstrap);
        consumer.emplace(short_lived, topic, 0, ringmq::Consumer::kEarliest);
    }
    ringmq::Fetch fetch = consumer->poll(1000ms);
    EXPECT(fetch.size() == 1 && fetch[0].value() == "kept"sv);
    consumer.reset();
    client.delete_topic(topic);
}

// A server with TLS and client certificates required; `pki` holds the
// certificates run-tests.sh made.
void server_tls(const std::string &bootstrap, const std::string &pki) {
    const ringmq::Tls trusted{pki + "/ca.pem", pki + "/client.pem", pki + "/client.key"};
    EXPECT_ERROR(RMQ_ERROR_TLS, ringmq::Client::connect(bootstrap, ringmq::Tls{pki + "/rogue-ca.pem", trusted.cert_file,
                                                                                trusted.key_file}));
    EXPECT_ERROR(RMQ_ERROR_TLS, ringmq::Client::connect(bootstrap, ringmq::Tls{trusted.ca_file, "", ""}));
    EXPECT_ERROR(RMQ_ERROR_TLS, ringmq::Client::connect(bootstrap));
    ringmq::Client client = ringmq::Client::connect(bootstrap, trusted);
    exercise(client, "tls");
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 1 && argc != 2 && argc != 4) {
        std::fprintf(stderr, "usage: %s [HOST:PORT [TLS_HOST:PORT PKI_DIR]]\n", argv[0]);
        return 2;
    }
    std::string base = (std::filesystem::temp_directory_path() / "ringmq-cpp-XXXXXX").string();
    if (mkdtemp(base.data()) == nullptr) {
        std::perror("mkdtemp");
        return 2;
    }
    try {
        embedded(base);
        if (argc >= 2) {
            server(argv[1]);
        }
        if (argc == 4) {
            server_tls(argv[2], argv[3]);
        }
    } catch (const ringmq::Error &error) {
        std::fprintf(stderr, "unexpected ringmq::Error (code %d): %s\n", (int)error.code(), error.what());
        failures++;
    } catch (const std::exception &error) {
        std::fprintf(stderr, "unexpected exception: %s\n", error.what());
        failures++;
    }
    std::error_code ignored;
    std::filesystem::remove_all(base, ignored);
    if (failures > 0) {
        std::fprintf(stderr, "cpp: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    std::printf("cpp: ok, %d checks (embedded%s, ringmq %s)\n", checks, argc == 4 ? ", server and TLS server" : argc == 2 ? " and server" : "",
                std::string(ringmq::version()).c_str());
    return 0;
}
