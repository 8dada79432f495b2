// ringmq.hpp: a header-only C++17 RAII wrapper over the C API (ringmq.h).
//
// Build: -std=c++17 -Iinclude -Ibindings/cpp, link -lringmq.
//
// Ownership
//  - Broker, Client, Consumer, GroupConsumer, ShareConsumer, Fetch and Pending
//    each own one C handle. They are move-only; the destructor frees the handle
//    (a moved-from object owns nothing and its destructor does nothing).
//    `native()` lends the raw handle.
//  - GroupConsumer's destructor commits (unless manual_commit) and leaves the
//    group, ignoring errors; call close() to see them. ShareConsumer's
//    destructor leaves the records it holds leased until their leases expire.
//  - Destroy clients (and their consumers) before the Broker they were opened
//    on: declare the Broker first. The C library requires it; with this
//    version a call on an embedded client whose broker was closed blocks
//    forever (the header promises RMQ_ERROR_CLOSED).
//  - Broker::close() and Client::close() close early; Broker::close() reports a
//    shutdown error as an exception, the destructor ignores it.
//  - Bytes are std::string_view. Views handed out by a Fetch (RecordView,
//    HeaderView and their string_views) borrow from it: they stay valid until
//    that Fetch is destroyed or assigned to. Moving a Fetch keeps them valid
//    (the bytes do not move); copy what must live longer.
//  - Inputs (Record, Header, topic names) are copied by the library before the
//    call returns, asynchronous produces included: nothing needs to outlive a
//    call.
//  - Null versus empty: a key, value or header value is
//    std::optional<std::string_view>; std::nullopt is null (a null value is a
//    tombstone), an engaged empty view is empty, even a default-constructed
//    std::string_view{} whose data() is nullptr.
//
// Threads
//  - Broker and Client are thread-safe: their const member functions may be
//    called from any number of threads at once.
//  - Consumer, GroupConsumer, ShareConsumer, Fetch and Pending belong to one
//    thread at a time (they may be moved to another thread, not used
//    concurrently). ShareConsumer::acknowledge reads the Fetch it is given: the
//    two must be on the same thread.
//  - Every member of one consumer group must keep polling (a rebalance waits
//    for all of them to join again): give each member its own thread.
//  - A callback given to Client::produce_async runs on the client's worker
//    thread; it must be quick and must not destroy or close its Client. It
//    should not throw: an exception escaping it is caught and discarded (it
//    cannot cross the C library).
//  - Over TCP, one Client's synchronous calls are serialised (the C client
//    holds one lock per client around each request); each Consumer and the
//    asynchronous worker have connections of their own, so a long poll never
//    delays a produce.
//
// Errors
//  - Every failure throws ringmq::Error (a std::runtime_error): code() is the
//    rmq_result, what() the message of rmq_last_error() at that moment.
//  - Destructors never throw.
#ifndef RINGMQ_HPP
#define RINGMQ_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ringmq.h"

namespace ringmq {

/// A failed call: the C result code and the library's message.
class Error : public std::runtime_error {
public:
    Error(rmq_result code, const std::string &message) : std::runtime_error(message), code_(code) {}
    rmq_result code() const noexcept { return code_; }

private:
    rmq_result code_;
};

namespace detail {

/// Throws for anything but RMQ_OK, with this thread's last error message
/// (read at once: the next library call on this thread replaces it).
inline void check(rmq_result result, const char *function) {
    if (result != RMQ_OK) {
        std::string message = rmq_last_error();
        if (message.empty()) {
            message = std::string(function) + " failed with code " + std::to_string(static_cast<int>(result));
        }
        throw Error(result, message);
    }
}

inline const uint8_t *bytes(std::string_view view) noexcept {
    // An engaged view is never null for the library, even a default one.
    return reinterpret_cast<const uint8_t *>(view.data() != nullptr ? view.data() : "");
}

inline std::optional<std::string_view> view(const uint8_t *data, size_t length) noexcept {
    if (data == nullptr) {
        return std::nullopt;
    }
    if (length == 0) {
        // Empty fields point at a valid empty buffer; a literal keeps the view
        // independent of that detail.
        return std::string_view("", 0);
    }
    return std::string_view(reinterpret_cast<const char *>(data), length);
}

/// Owns one C handle through its free function.
template <typename T, void (*Free)(T *)>
class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *raw) noexcept : raw_(raw) {}
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    Handle(Handle &&other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
    Handle &operator=(Handle &&other) noexcept {
        if (this != &other) {
            reset(std::exchange(other.raw_, nullptr));
        }
        return *this;
    }
    ~Handle() { reset(); }

    T *get() const noexcept { return raw_; }
    T *release() noexcept { return std::exchange(raw_, nullptr); }
    void reset(T *raw = nullptr) noexcept {
        T *old = std::exchange(raw_, raw);
        if (old != nullptr) {
            Free(old);
        }
    }

private:
    T *raw_ = nullptr;
};

inline void close_broker(rmq_broker *broker) { (void)rmq_broker_close(broker); }
inline void close_group_consumer(rmq_group_consumer *consumer) { (void)rmq_group_consumer_close(consumer); }

/// A timeout for the C API: negative is 0, longer than it takes is its maximum.
inline uint32_t timeout_ms(std::chrono::milliseconds timeout) noexcept {
    if (timeout.count() <= 0) {
        return 0;
    }
    if (timeout.count() > static_cast<std::chrono::milliseconds::rep>(UINT32_MAX)) {
        return UINT32_MAX;
    }
    return static_cast<uint32_t>(timeout.count());
}

}  // namespace detail

/// The library's version.
inline std::string_view version() { return rmq_version(); }

/// When a produce returns (see rmq_acks).
enum class Acks { None = RMQ_ACKS_NONE, Written = RMQ_ACKS_WRITTEN, Durable = RMQ_ACKS_DURABLE };

/// Retention values for Client::create_topic, besides limits >= 0.
inline constexpr int64_t kRetentionDefault = -2;
inline constexpr int64_t kRetentionUnlimited = -1;

/// One header to produce: std::nullopt value = a null value.
struct Header {
    std::string_view key;
    std::optional<std::string_view> value;
};

/// One record to produce. std::nullopt key = no key; std::nullopt value = a
/// null value (tombstone); timestamp_ms 0 = now.
struct Record {
    std::optional<std::string_view> key;
    std::optional<std::string_view> value;
    std::vector<Header> headers = {};
    int64_t timestamp_ms = 0;
};

/// A received header, borrowing from its Fetch.
struct HeaderView {
    std::string_view key;
    std::optional<std::string_view> value;
};

/// A received record, borrowing from its Fetch.
class RecordView {
public:
    RecordView(const rmq_fetch *fetch, size_t index) : fetch_(fetch), index_(index) {
        detail::check(rmq_fetch_record(fetch, index, &record_), "rmq_fetch_record");
    }

    uint64_t offset() const noexcept { return record_.offset; }
    int64_t timestamp() const noexcept { return record_.timestamp_ms; }
    std::optional<std::string_view> key() const noexcept { return detail::view(record_.key, record_.key_len); }
    std::optional<std::string_view> value() const noexcept {
        return detail::view(record_.value, record_.value_len);
    }
    size_t header_count() const noexcept { return record_.headers_len; }

    HeaderView header(size_t index) const { return header_of(fetch_, index_, index); }

    /// Where a record from a GroupConsumer or ShareConsumer came from (the
    /// topic borrows from the Fetch). Throws Error (RMQ_ERROR_INVALID_ARGUMENT)
    /// for a record of Client::fetch or Consumer::poll, which read one partition.
    struct Origin {
        std::string_view topic;
        uint32_t partition = 0;
        uint16_t delivery_count = 0;  // share groups: 1 on the first delivery; group consumers: 0
    };
    Origin origin() const {
        const uint8_t *topic = nullptr;
        size_t topic_len = 0;
        Origin origin;
        detail::check(rmq_fetch_record_origin(fetch_, index_, &topic, &topic_len, &origin.partition,
                                              &origin.delivery_count),
                      "rmq_fetch_record_origin");
        origin.topic = detail::view(topic, topic_len).value_or(std::string_view());
        return origin;
    }
    std::string_view topic() const { return origin().topic; }
    uint32_t partition() const { return origin().partition; }
    uint16_t delivery_count() const { return origin().delivery_count; }

    /// The Fetch this record is in, and its index there.
    const rmq_fetch *native_fetch() const noexcept { return fetch_; }
    size_t index() const noexcept { return index_; }

    /// The headers, in order, as an iterable range (it refers to the Fetch,
    /// not to this RecordView, so `for (auto h : fetch[0].headers())` is fine).
    class Headers {
    public:
        class iterator {
        public:
            using iterator_category = std::input_iterator_tag;
            using value_type = HeaderView;
            using difference_type = std::ptrdiff_t;
            using pointer = void;
            using reference = HeaderView;

            iterator(const rmq_fetch *fetch, size_t record, size_t index)
                : fetch_(fetch), record_(record), index_(index) {}
            HeaderView operator*() const { return RecordView::header_of(fetch_, record_, index_); }
            iterator &operator++() {
                ++index_;
                return *this;
            }
            iterator operator++(int) {
                iterator old = *this;
                ++index_;
                return old;
            }
            bool operator==(const iterator &other) const { return index_ == other.index_; }
            bool operator!=(const iterator &other) const { return index_ != other.index_; }

        private:
            const rmq_fetch *fetch_;
            size_t record_;
            size_t index_;
        };

        Headers(const rmq_fetch *fetch, size_t record, size_t count) : fetch_(fetch), record_(record), count_(count) {}
        iterator begin() const { return iterator(fetch_, record_, 0); }
        iterator end() const { return iterator(fetch_, record_, count_); }
        size_t size() const noexcept { return count_; }

    private:
        const rmq_fetch *fetch_;
        size_t record_;
        size_t count_;
    };

    Headers headers() const { return Headers(fetch_, index_, record_.headers_len); }

    /// The value of the first header named `key` (outer nullopt: no such
    /// header; inner nullopt: a null value).
    std::optional<std::optional<std::string_view>> header_value(std::string_view key) const {
        for (size_t i = 0; i < header_count(); i++) {
            HeaderView found = header(i);
            if (found.key == key) {
                return found.value;
            }
        }
        return std::nullopt;
    }

private:
    static HeaderView header_of(const rmq_fetch *fetch, size_t record, size_t index) {
        rmq_header header{};
        detail::check(rmq_fetch_record_header(fetch, record, index, &header), "rmq_fetch_record_header");
        auto key = detail::view(header.key, header.key_len);
        return HeaderView{key.value_or(std::string_view()), detail::view(header.value, header.value_len)};
    }

    const rmq_fetch *fetch_;
    size_t index_;
    rmq_record record_{};
};

/// Records received by Client::fetch or Consumer::poll (maybe none). Iterate
/// it (`for (const RecordView &r : fetch)`) or index it.
class Fetch {
public:
    Fetch() noexcept = default;
    explicit Fetch(rmq_fetch *raw) noexcept : handle_(raw) {}

    size_t size() const noexcept { return rmq_fetch_count(handle_.get()); }
    bool empty() const noexcept { return size() == 0; }
    RecordView operator[](size_t index) const { return RecordView(handle_.get(), index); }
    RecordView at(size_t index) const { return RecordView(handle_.get(), index); }

    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = RecordView;
        using difference_type = std::ptrdiff_t;
        using pointer = void;
        using reference = RecordView;

        iterator(const rmq_fetch *fetch, size_t index) : fetch_(fetch), index_(index) {}
        RecordView operator*() const { return RecordView(fetch_, index_); }
        iterator &operator++() {
            ++index_;
            return *this;
        }
        iterator operator++(int) {
            iterator old = *this;
            ++index_;
            return old;
        }
        bool operator==(const iterator &other) const { return index_ == other.index_; }
        bool operator!=(const iterator &other) const { return index_ != other.index_; }

    private:
        const rmq_fetch *fetch_;
        size_t index_;
    };

    iterator begin() const { return iterator(handle_.get(), 0); }
    iterator end() const { return iterator(handle_.get(), size()); }

    /// True while it owns a fetch (false once moved from).
    explicit operator bool() const noexcept { return handle_.get() != nullptr; }
    const rmq_fetch *native() const noexcept { return handle_.get(); }

private:
    detail::Handle<rmq_fetch, rmq_fetch_free> handle_;
};

/// An asynchronous produce in flight. Destroying it before completion is
/// allowed: the produce still happens (and its callback still runs).
class Pending {
public:
    Pending() noexcept = default;
    explicit Pending(rmq_pending *raw) noexcept : handle_(raw) {}

    /// std::nullopt while in flight; then the base offset (-1 with Acks::None),
    /// or throws the produce's error.
    std::optional<int64_t> poll() const {
        int64_t offset = -1;
        rmq_result result = rmq_pending_poll(handle_.get(), &offset);
        if (result == RMQ_PENDING) {
            return std::nullopt;
        }
        detail::check(result, "rmq_pending_poll");
        return offset;
    }

    /// Waits for completion: the base offset, or throws the produce's error.
    int64_t wait() const {
        int64_t offset = -1;
        detail::check(rmq_pending_wait(handle_.get(), -1, &offset), "rmq_pending_wait");
        return offset;
    }

    /// Waits at most `timeout`: std::nullopt if still in flight.
    std::optional<int64_t> wait_for(std::chrono::milliseconds timeout) const {
        int64_t offset = -1;
        rmq_result result = rmq_pending_wait(handle_.get(), timeout.count() < 0 ? 0 : timeout.count(), &offset);
        if (result == RMQ_PENDING) {
            return std::nullopt;
        }
        detail::check(result, "rmq_pending_wait");
        return offset;
    }

    explicit operator bool() const noexcept { return handle_.get() != nullptr; }
    const rmq_pending *native() const noexcept { return handle_.get(); }

private:
    detail::Handle<rmq_pending, rmq_pending_free> handle_;
};

/// Settings of an embedded Broker (see rmq_broker_options).
struct BrokerOptions {
    uint16_t shards = 0;             // 0 = one per core
    bool busy_poll = false;          // spin instead of sleeping
    uint64_t flush_interval_ms = 0;  // also fdatasync written data this often; 0 = never
    uint64_t segment_bytes = 0;      // 0 = 1 GiB
};

/// An embedded broker: shards running in this process.
class Broker {
public:
    using Options = BrokerOptions;

    /// Opens (creating if needed) `data_dir` and starts the shards.
    explicit Broker(const std::string &data_dir, const Options &options = Options()) {
        rmq_broker_options raw{};
        raw.shards = options.shards;
        raw.busy_poll = options.busy_poll ? 1 : 0;
        raw.flush_interval_ms = options.flush_interval_ms;
        raw.segment_bytes = options.segment_bytes;
        rmq_broker *broker = nullptr;
        detail::check(rmq_broker_open(data_dir.c_str(), &raw, &broker), "rmq_broker_open");
        handle_.reset(broker);
    }

    /// Shuts down gracefully now; throws if the shutdown reported an error.
    /// Close every client opened on it first.
    void close() {
        rmq_broker *broker = handle_.release();
        if (broker != nullptr) {
            detail::check(rmq_broker_close(broker), "rmq_broker_close");
        }
    }

    explicit operator bool() const noexcept { return handle_.get() != nullptr; }
    const rmq_broker *native() const noexcept { return handle_.get(); }

private:
    detail::Handle<rmq_broker, detail::close_broker> handle_;
};

class Consumer;
class GroupConsumer;
class ShareConsumer;
struct GroupOptions;
struct ShareOptions;

/// What a group description is of (rmq_group_info_summary's kind).
enum class GroupKind : uint32_t { Consumer = 0, Share = 1 };

/// A group's state (rmq_group_info_summary's state). A share group is Stable
/// while a member received or acknowledged within the last minute.
enum class GroupState : uint32_t { Empty = 0, Rebalancing = 1, Stable = 2 };

/// One partition of a group description.
struct GroupPartition {
    std::string topic;
    uint32_t partition = 0;
    /// Consumer groups: the committed offset (-1: none), the end offset (one
    /// past the last record) and the lag (-1: unknown). Share groups: the
    /// first offset not archived, the end offset, and the records between.
    int64_t committed = -1;
    int64_t end = -1;
    int64_t lag = -1;
    /// Share groups only: records available, acquired (leased), archived.
    uint64_t available = 0;
    uint64_t acquired = 0;
    uint64_t archived = 0;
};

/// A group as the broker describes it (a copy: nothing borrows from the library).
struct GroupDescription {
    GroupKind kind = GroupKind::Consumer;
    GroupState state = GroupState::Empty;
    uint32_t generation = 0;  // consumer groups; 0 for share groups
    size_t members = 0;
    std::vector<GroupPartition> partitions;  // sorted by topic and partition
};

/// A partition's offsets: earliest, latest (one past the last record), and
/// durable (everything below it is fdatasync'ed).
struct Offsets {
    int64_t earliest = -1;
    int64_t latest = -1;
    int64_t durable = -1;
};

struct TopicInfo {
    std::string name;
    uint32_t partitions = 0;
};

/// A client, embedded or over TCP, with the same functions for both.
/// TLS files of a client (PEM paths; empty: not given). See Client::connect.
struct Tls {
    std::string ca_file;
    std::string cert_file;
    std::string key_file;
};

class Client {
public:
    /// Called once, on the client's worker thread, when an asynchronous produce
    /// completes: RMQ_OK with the base offset, or an error and its message.
    using Callback = std::function<void(rmq_result result, int64_t base_offset, std::string_view message)>;

    /// A client of `broker`, in process (no TCP). Destroy it before the broker.
    static Client embedded(const Broker &broker) {
        rmq_client *client = nullptr;
        detail::check(rmq_client_open_embedded(broker.native(), &client), "rmq_client_open_embedded");
        return Client(client);
    }

    /// A client of the server at `bootstrap` ("HOST:PORT").
    static Client connect(std::string_view bootstrap) {
        std::string address(bootstrap);
        rmq_client *client = nullptr;
        detail::check(rmq_client_connect(address.c_str(), &client), "rmq_client_connect");
        return Client(client);
    }

    /// A client of the server at `bootstrap`, every connection authenticating
    /// as `user` by `mechanism` ("SCRAM-SHA-256" or "PLAIN"); refused
    /// credentials throw an Error with RMQ_ERROR_AUTHENTICATION.
    static Client connect(std::string_view bootstrap, std::string_view user, std::string_view password,
                          std::string_view mechanism = "SCRAM-SHA-256") {
        std::string address(bootstrap), name(user), secret(password), how(mechanism);
        rmq_client *client = nullptr;
        detail::check(rmq_client_connect_auth(address.c_str(), name.c_str(), secret.c_str(), how.c_str(), &client),
                      "rmq_client_connect_auth");
        return Client(client);
    }

    /// A client of the server at `bootstrap` over TLS: the server's
    /// certificate must chain to a CA in `tls.ca_file` (PEM; empty: the
    /// system's bundle) and carry the bootstrap host; `tls.cert_file` and
    /// `tls.key_file` (both or neither) are the client's own certificate.
    /// With a non-empty `user`, every connection also authenticates. A
    /// refused certificate, on either side, throws an Error with RMQ_ERROR_TLS.
    static Client connect(std::string_view bootstrap, const Tls &tls, std::string_view user = {},
                          std::string_view password = {}, std::string_view mechanism = "SCRAM-SHA-256") {
        std::string address(bootstrap), name(user), secret(password), how(mechanism);
        auto optional = [](const std::string &text) { return text.empty() ? nullptr : text.c_str(); };
        rmq_client *client = nullptr;
        detail::check(rmq_client_connect_tls(address.c_str(), optional(tls.ca_file), optional(tls.cert_file),
                                             optional(tls.key_file), optional(name), optional(secret), how.c_str(),
                                             &client),
                      "rmq_client_connect_tls");
        return Client(client);
    }

    /// Waits for the queued asynchronous produces, then closes.
    void close() noexcept { handle_.reset(); }

    /// Creates a topic; retention: kRetentionDefault, kRetentionUnlimited or a limit.
    void create_topic(const std::string &name, uint32_t partitions, int64_t retention_ms = kRetentionDefault,
                      int64_t retention_bytes = kRetentionUnlimited) const {
        detail::check(rmq_topic_create(handle_.get(), name.c_str(), partitions, retention_ms, retention_bytes),
                      "rmq_topic_create");
    }

    void delete_topic(const std::string &name) const {
        detail::check(rmq_topic_delete(handle_.get(), name.c_str()), "rmq_topic_delete");
    }

    /// Every topic, sorted by name.
    std::vector<TopicInfo> topics() const {
        rmq_topic_list *raw = nullptr;
        detail::check(rmq_topics(handle_.get(), &raw), "rmq_topics");
        detail::Handle<rmq_topic_list, rmq_topic_list_free> list(raw);
        std::vector<TopicInfo> topics;
        topics.reserve(rmq_topic_list_len(list.get()));
        for (size_t i = 0; i < rmq_topic_list_len(list.get()); i++) {
            const char *name = nullptr;
            uint32_t partitions = 0;
            detail::check(rmq_topic_list_get(list.get(), i, &name, &partitions), "rmq_topic_list_get");
            topics.push_back(TopicInfo{name, partitions});
        }
        return topics;
    }

    Offsets offsets(const std::string &topic, uint32_t partition) const {
        Offsets offsets;
        detail::check(rmq_partition_offsets(handle_.get(), topic.c_str(), partition, &offsets.earliest,
                                            &offsets.latest, &offsets.durable),
                      "rmq_partition_offsets");
        return offsets;
    }

    /// The first offset at or after `timestamp_ms`; std::nullopt when every
    /// record is older.
    std::optional<uint64_t> offset_for_timestamp(const std::string &topic, uint32_t partition,
                                                 int64_t timestamp_ms) const {
        int64_t offset = -1;
        detail::check(rmq_offset_for_timestamp(handle_.get(), topic.c_str(), partition, timestamp_ms, &offset),
                      "rmq_offset_for_timestamp");
        if (offset < 0) {
            return std::nullopt;
        }
        return static_cast<uint64_t>(offset);
    }

    /// Produces `records` as one batch to `partition` (-1: by the first
    /// record's key, Kafka's partitioner) and waits as `acks` asks. Returns the
    /// base offset (-1 with Acks::None).
    int64_t produce(const std::string &topic, int32_t partition, const std::vector<Record> &records,
                    Acks acks = Acks::Written) const {
        Converted converted(records.data(), records.size());
        int64_t offset = -1;
        detail::check(rmq_produce(handle_.get(), topic.c_str(), partition, converted.data(), converted.size(),
                                  static_cast<rmq_acks>(acks), &offset),
                      "rmq_produce");
        return offset;
    }

    int64_t produce(const std::string &topic, int32_t partition, const Record &record,
                    Acks acks = Acks::Written) const {
        Converted converted(&record, 1);
        int64_t offset = -1;
        detail::check(rmq_produce(handle_.get(), topic.c_str(), partition, converted.data(), converted.size(),
                                  static_cast<rmq_acks>(acks), &offset),
                      "rmq_produce");
        return offset;
    }

    /// Queues a produce and returns at once. Completion: the returned Pending,
    /// and `callback` (if any) on the worker thread. Throws Error with
    /// RMQ_ERROR_WOULD_BLOCK when the client's queue is full.
    Pending produce_async(const std::string &topic, int32_t partition, const std::vector<Record> &records,
                          Acks acks = Acks::Written, Callback callback = nullptr) const {
        Converted converted(records.data(), records.size());
        return queue(topic, partition, converted, acks, std::move(callback));
    }

    Pending produce_async(const std::string &topic, int32_t partition, const Record &record,
                          Acks acks = Acks::Written, Callback callback = nullptr) const {
        Converted converted(&record, 1);
        return queue(topic, partition, converted, acks, std::move(callback));
    }

    /// Records of `partition` from `offset`, waiting up to `timeout` for at least one.
    Fetch fetch(const std::string &topic, uint32_t partition, uint64_t offset,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const {
        rmq_fetch *fetch = nullptr;
        detail::check(rmq_fetch_records(handle_.get(), topic.c_str(), partition, offset, detail::timeout_ms(timeout), &fetch),
                      "rmq_fetch_records");
        return Fetch(fetch);
    }

    /// A consumer of one partition (see Consumer for `start`).
    Consumer consumer(const std::string &topic, uint32_t partition, int64_t start) const;

    /// A member of the consumer group `group` reading `topics` (see GroupConsumer).
    GroupConsumer group_consumer(const std::string &group, const std::vector<std::string> &topics,
                                 const GroupOptions &options) const;
    GroupConsumer group_consumer(const std::string &group, const std::vector<std::string> &topics) const;

    /// A member of the share group `group` reading `topic` as a queue (see ShareConsumer).
    ShareConsumer share_consumer(const std::string &group, const std::string &topic,
                                 const ShareOptions &options) const;
    ShareConsumer share_consumer(const std::string &group, const std::string &topic) const;

    /// Describes a consumer or share group; throws Error with
    /// RMQ_ERROR_UNKNOWN_GROUP when there is none of that name.
    GroupDescription describe_group(const std::string &group) const {
        rmq_group_info *raw = nullptr;
        detail::check(rmq_group_describe(handle_.get(), group.c_str(), &raw), "rmq_group_describe");
        detail::Handle<rmq_group_info, rmq_group_info_free> info(raw);
        GroupDescription description;
        uint32_t kind = 0, state = 0;
        detail::check(rmq_group_info_summary(info.get(), &kind, &state, &description.generation,
                                             &description.members),
                      "rmq_group_info_summary");
        description.kind = static_cast<GroupKind>(kind);
        description.state = static_cast<GroupState>(state);
        size_t count = rmq_group_info_partitions(info.get());
        description.partitions.reserve(count);
        for (size_t i = 0; i < count; i++) {
            rmq_group_partition entry{};
            detail::check(rmq_group_info_partition(info.get(), i, &entry), "rmq_group_info_partition");
            GroupPartition partition;
            partition.topic = std::string(detail::view(entry.topic, entry.topic_len).value_or(std::string_view()));
            partition.partition = entry.partition;
            partition.committed = entry.committed;
            partition.end = entry.end;
            partition.lag = entry.lag;
            partition.available = entry.available;
            partition.acquired = entry.acquired;
            partition.archived = entry.archived;
            description.partitions.push_back(std::move(partition));
        }
        return description;
    }

    explicit operator bool() const noexcept { return handle_.get() != nullptr; }
    const rmq_client *native() const noexcept { return handle_.get(); }

private:
    explicit Client(rmq_client *raw) noexcept : handle_(raw) {}

    /// Records in the C layout; they point into the caller's Records.
    class Converted {
    public:
        Converted(const Record *records, size_t count) {
            size_t headers = 0;
            for (size_t i = 0; i < count; i++) {
                headers += records[i].headers.size();
            }
            headers_.reserve(headers);  // no reallocation below: pointers stay valid
            records_.reserve(count);
            for (size_t i = 0; i < count; i++) {
                const Record &record = records[i];
                rmq_record_in raw{};
                if (record.key) {
                    raw.key = detail::bytes(*record.key);
                    raw.key_len = record.key->size();
                }
                if (record.value) {
                    raw.value = detail::bytes(*record.value);
                    raw.value_len = record.value->size();
                }
                raw.headers = headers_.data() + headers_.size();
                raw.headers_len = record.headers.size();
                for (const Header &header : record.headers) {
                    rmq_header h{};
                    h.key = detail::bytes(header.key);
                    h.key_len = header.key.size();
                    if (header.value) {
                        h.value = detail::bytes(*header.value);
                        h.value_len = header.value->size();
                    }
                    headers_.push_back(h);
                }
                if (raw.headers_len == 0) {
                    raw.headers = nullptr;
                }
                raw.timestamp_ms = record.timestamp_ms;
                records_.push_back(raw);
            }
        }
        const rmq_record_in *data() const noexcept { return records_.data(); }
        size_t size() const noexcept { return records_.size(); }

    private:
        std::vector<rmq_header> headers_;
        std::vector<rmq_record_in> records_;
    };

    static void trampoline(void *user_data, rmq_result result, int64_t base_offset, const char *message) noexcept {
        std::unique_ptr<Callback> callback(static_cast<Callback *>(user_data));
        try {
            (*callback)(result, base_offset, message != nullptr ? std::string_view(message) : std::string_view());
        } catch (...) {
            // Must not unwind into the C library; see the notes at the top.
        }
    }

    Pending queue(const std::string &topic, int32_t partition, const Converted &records, Acks acks,
                  Callback callback) const {
        std::unique_ptr<Callback> owned;
        if (callback) {
            owned = std::make_unique<Callback>(std::move(callback));
        }
        rmq_pending *pending = nullptr;
        rmq_result result = rmq_produce_async(handle_.get(), topic.c_str(), partition, records.data(), records.size(),
                                              static_cast<rmq_acks>(acks), owned ? &Client::trampoline : nullptr,
                                              owned.get(), &pending);
        detail::check(result, "rmq_produce_async");  // on failure the callback is never called: `owned` frees it
        owned.release();                             // the trampoline owns it now
        return Pending(pending);
    }

    detail::Handle<rmq_client, rmq_client_close> handle_;
};

/// Follows one partition. It may outlive the Client it was opened on.
class Consumer {
public:
    static constexpr int64_t kEarliest = -2;  // from the earliest offset
    static constexpr int64_t kLatest = -1;    // only records produced from now on

    /// `start`: kEarliest, kLatest, or an offset >= 0.
    Consumer(const Client &client, const std::string &topic, uint32_t partition, int64_t start) {
        rmq_consumer *consumer = nullptr;
        detail::check(rmq_consumer_open(client.native(), topic.c_str(), partition, start, &consumer),
                      "rmq_consumer_open");
        handle_.reset(consumer);
    }

    /// Waits up to `timeout` for records at the position (maybe none); the
    /// position moves past them.
    Fetch poll(std::chrono::milliseconds timeout) {
        rmq_fetch *fetch = nullptr;
        detail::check(rmq_consumer_poll(handle_.get(), detail::timeout_ms(timeout), &fetch), "rmq_consumer_poll");
        return Fetch(fetch);
    }

    /// The next offset poll() returns.
    uint64_t position() const noexcept { return rmq_consumer_position(handle_.get()); }

    explicit operator bool() const noexcept { return handle_.get() != nullptr; }
    const rmq_consumer *native() const noexcept { return handle_.get(); }

private:
    detail::Handle<rmq_consumer, rmq_consumer_close> handle_;
};

inline Consumer Client::consumer(const std::string &topic, uint32_t partition, int64_t start) const {
    return Consumer(*this, topic, partition, start);
}

/// Where a group member starts on a partition without a committed offset.
enum class OffsetReset { Earliest, Latest };

/// Settings of a GroupConsumer (see rmq_group_options): 0 takes the default.
struct GroupOptions {
    uint32_t session_timeout_ms = 0;     // the broker removes a member silent this long (10000)
    uint32_t rebalance_timeout_ms = 0;   // how long a rebalance waits for members (10000)
    uint32_t heartbeat_interval_ms = 0;  // how often polls heartbeat (300)
    OffsetReset offset_reset = OffsetReset::Earliest;
    bool manual_commit = false;  // false: commit before a rebalance and on close; true: only commit()
};

/// A member of a consumer group: the broker assigns it partitions of its
/// topics (each partition to one member of the group), and poll() returns
/// their records (RecordView::origin() tells each one's topic and partition).
/// It joins on its first poll(); polls heartbeat and follow rebalances, so poll
/// regularly (within the session timeout). It may outlive the Client it was
/// opened on (not an embedded Broker).
class GroupConsumer {
public:
    GroupConsumer(const Client &client, const std::string &group, const std::vector<std::string> &topics,
                  const GroupOptions &options = GroupOptions()) {
        std::vector<const char *> names;
        names.reserve(topics.size());
        for (const std::string &topic : topics) {
            names.push_back(topic.c_str());
        }
        rmq_group_options raw{};
        raw.session_timeout_ms = options.session_timeout_ms;
        raw.rebalance_timeout_ms = options.rebalance_timeout_ms;
        raw.heartbeat_interval_ms = options.heartbeat_interval_ms;
        raw.offset_reset_latest = options.offset_reset == OffsetReset::Latest ? 1 : 0;
        raw.manual_commit = options.manual_commit ? 1 : 0;
        rmq_group_consumer *consumer = nullptr;
        detail::check(rmq_group_consumer_open(client.native(), group.c_str(), names.data(), names.size(), &raw,
                                              &consumer),
                      "rmq_group_consumer_open");
        handle_.reset(consumer);
    }

    /// Records of this member's partitions, waiting up to `timeout` when there
    /// are none (maybe none). The first poll joins the group, which waits for
    /// the group's other members to join again.
    Fetch poll(std::chrono::milliseconds timeout) {
        rmq_fetch *fetch = nullptr;
        detail::check(rmq_group_consumer_poll(handle_.get(), detail::timeout_ms(timeout), &fetch),
                      "rmq_group_consumer_poll");
        return Fetch(fetch);
    }

    /// Commits the position of every partition the member owns: one past the
    /// last record poll() returned from it.
    void commit() { detail::check(rmq_group_consumer_commit(handle_.get()), "rmq_group_consumer_commit"); }

    /// Commits `next_offset` (the next record to read) for one partition.
    void commit(const std::string &topic, uint32_t partition, uint64_t next_offset) {
        detail::check(rmq_group_consumer_commit_offset(handle_.get(), topic.c_str(), partition, next_offset),
                      "rmq_group_consumer_commit_offset");
    }

    /// The member's generation (0 before it joined).
    uint32_t generation() const noexcept { return rmq_group_consumer_generation(handle_.get()); }

    /// How many partitions the member owns in its generation.
    size_t assignment_size() const noexcept { return rmq_group_consumer_assignment_len(handle_.get()); }

    /// Commits (unless manual_commit) and leaves the group now, so the other
    /// members take its partitions over at once. Throws when the commit or the
    /// leave failed (the consumer is closed all the same). Idempotent.
    void close() {
        rmq_group_consumer *consumer = handle_.release();
        if (consumer != nullptr) {
            detail::check(rmq_group_consumer_close(consumer), "rmq_group_consumer_close");
        }
    }

    explicit operator bool() const noexcept { return handle_.get() != nullptr; }
    const rmq_group_consumer *native() const noexcept { return handle_.get(); }

private:
    detail::Handle<rmq_group_consumer, detail::close_group_consumer> handle_;
};

/// How a ShareConsumer acknowledges a record (see rmq_ack).
enum class Ack : uint32_t {
    Accept = RMQ_ACK_ACCEPT,    // done: never delivered again
    Release = RMQ_ACK_RELEASE,  // give it back: delivered again (or dead-lettered after max deliveries)
    Reject = RMQ_ACK_REJECT,    // poison: straight to the dead-letter topic
    Renew = RMQ_ACK_RENEW,      // keep it: the lease starts over
};

/// Settings of a ShareConsumer (see rmq_share_options): 0 or empty takes the
/// default. The broker keeps max_deliveries and the dead-letter topic per
/// share-partition, as the last member's receive set them.
struct ShareOptions {
    uint32_t lease_ms = 0;          // how long a received record stays this member's (30000)
    uint16_t max_deliveries = 0;    // deliveries before a released or expired record is dead-lettered (5)
    std::string dead_letter_topic;  // empty: "<topic>.dlq"
};

/// A member of a share group reading one topic as a queue: members of a group
/// receive disjoint records, each under a lease, and acknowledge each one
/// (RecordView::delivery_count() counts its deliveries). It may outlive the
/// Client it was opened on (not an embedded Broker).
class ShareConsumer {
public:
    ShareConsumer(const Client &client, const std::string &group, const std::string &topic,
                  const ShareOptions &options = ShareOptions()) {
        rmq_share_options raw{};
        raw.lease_ms = options.lease_ms;
        raw.max_deliveries = options.max_deliveries;
        raw.dead_letter_topic = options.dead_letter_topic.empty() ? nullptr : options.dead_letter_topic.c_str();
        rmq_share_consumer *consumer = nullptr;
        detail::check(rmq_share_consumer_open(client.native(), group.c_str(), topic.c_str(), &raw, &consumer),
                      "rmq_share_consumer_open");
        handle_.reset(consumer);
    }

    /// Acquires up to `max_records` records (at least 1) under this member's
    /// lease, waiting up to `timeout` when none are available (maybe none).
    /// Keep the Fetch until its records are acknowledged.
    Fetch receive(uint32_t max_records, std::chrono::milliseconds timeout) {
        rmq_fetch *fetch = nullptr;
        detail::check(rmq_share_receive(handle_.get(), max_records, detail::timeout_ms(timeout), &fetch),
                      "rmq_share_receive");
        return Fetch(fetch);
    }

    /// Acknowledges record `index` of `fetch` (from this consumer's receive).
    /// Throws Error with RMQ_ERROR_INVALID_STATE when this member does not hold
    /// it (its lease expired, or it was acknowledged already).
    void acknowledge(const Fetch &fetch, size_t index, Ack kind) { acknowledge_raw(fetch.native(), index, kind); }
    void acknowledge(const RecordView &record, Ack kind) {
        acknowledge_raw(record.native_fetch(), record.index(), kind);
    }

    void accept(const RecordView &record) { acknowledge(record, Ack::Accept); }
    void release(const RecordView &record) { acknowledge(record, Ack::Release); }
    void reject(const RecordView &record) { acknowledge(record, Ack::Reject); }
    void renew(const RecordView &record) { acknowledge(record, Ack::Renew); }

    /// Frees it now; the records it holds stay leased until their leases expire.
    void close() noexcept { handle_.reset(); }

    explicit operator bool() const noexcept { return handle_.get() != nullptr; }
    const rmq_share_consumer *native() const noexcept { return handle_.get(); }

private:
    void acknowledge_raw(const rmq_fetch *fetch, size_t index, Ack kind) {
        detail::check(rmq_share_acknowledge(handle_.get(), fetch, index, static_cast<uint32_t>(kind)),
                      "rmq_share_acknowledge");
    }

    detail::Handle<rmq_share_consumer, rmq_share_consumer_close> handle_;
};

inline GroupConsumer Client::group_consumer(const std::string &group, const std::vector<std::string> &topics,
                                            const GroupOptions &options) const {
    return GroupConsumer(*this, group, topics, options);
}

inline GroupConsumer Client::group_consumer(const std::string &group, const std::vector<std::string> &topics) const {
    return GroupConsumer(*this, group, topics);
}

inline ShareConsumer Client::share_consumer(const std::string &group, const std::string &topic,
                                            const ShareOptions &options) const {
    return ShareConsumer(*this, group, topic, options);
}

inline ShareConsumer Client::share_consumer(const std::string &group, const std::string &topic) const {
    return ShareConsumer(*this, group, topic);
}

}  // namespace ringmq

#endif  // RINGMQ_HPP
