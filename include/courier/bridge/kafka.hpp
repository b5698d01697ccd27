// The Kafka adapter of courier's broker bridge: a `bridge::transport` over librdkafka. Event
// name -> topic, bus key -> partition key, envelope metadata as Kafka headers, delivery reports
// driving publish confirms, consumer groups with manual commits (a commit only ever covers
// acked offsets). Link courier::bridge_kafka; the core library never includes this header.
#pragma once

#include <courier/bridge/detail/wire_kafka.hpp>
#include <courier/bridge/registry.hpp>
#include <courier/bridge/transport.hpp>
#include <courier/bridge/url.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/result.hpp>

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge {

/// How the Kafka transport talks to the cluster. The defaults favour latency (a message leaves
/// within a millisecond) and quick group joins; raise `linger` for throughput.
struct kafka_options {
    /// bootstrap.servers: `host:port[,host:port]`.
    std::string brokers = "127.0.0.1:9092";
    /// client.id.
    std::string client_id = "courier-bridge";
    /// linger.ms: how long the producer waits to fill a batch.
    duration linger = std::chrono::milliseconds(1);
    /// message.timeout.ms: a message not delivered within it is reported failed (the bridge retries).
    duration message_timeout = std::chrono::seconds(30);
    /// Largest payload accepted (message.max.bytes; Kafka's default is about 1 MB).
    std::size_t max_message_bytes = 1000000;
    /// enable.idempotence: no duplicate or reordering from the producer's own retries.
    bool idempotent = true;
    /// session.timeout.ms / heartbeat.interval.ms of the consumers.
    duration session_timeout = std::chrono::seconds(6);
    duration heartbeat_interval = std::chrono::milliseconds(500);
    /// Acked offsets are committed (asynchronously, from poll) once this many have accumulated or
    /// `commit_interval` has passed since the last commit, whichever comes first; on close and
    /// on a rebalance everything acked is committed at once. Committing less often never
    /// commits an unacked offset; a crash re-reads at most what was acked since the last commit.
    std::size_t commit_every = 512;
    duration commit_interval = std::chrono::milliseconds(20);
    /// true: librdkafka's own log lines go to stderr; false: they are dropped (errors still
    /// reach `stats().last_error` and `poll` through the error callback).
    bool client_logs = false;
    /// Further librdkafka properties, set on producer and consumers alike (applied last).
    std::vector<std::pair<std::string, std::string>> properties;

    /// Options from a bridge URL: `kafka://host:port[,host:port][?client_id=ID&linger_ms=N&idempotent=true&max_message_bytes=N]`.
    /// Errors: invalid_argument "[courier.bridge.kafka.url]" for an unknown parameter or another scheme.
    static result<kafka_options> from_url(const broker_url& url);
};

/// Counters of one Kafka transport (read from the driving thread).
struct kafka_stats {
    std::uint64_t published = 0;   ///< messages handed to librdkafka
    std::uint64_t confirmed = 0;   ///< delivery reports without error
    std::uint64_t failed = 0;      ///< delivery reports with an error
    std::uint64_t delivered = 0;   ///< messages handed to `poll`'s callback
    std::uint64_t commits = 0;     ///< offset commits requested
    std::uint64_t rebalances = 0;  ///< partition assignments received
    std::uint64_t errors = 0;      ///< client errors reported by librdkafka (see `last_error`)
    std::string last_error;
};

namespace detail {

inline std::string kafka_millis_text(duration d) {
    return std::to_string(std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(d).count()));
}

inline int kafka_millis(duration d) {
    return static_cast<int>(std::clamp<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count(), 0, 1 << 30));
}

inline errc kafka_errc(rd_kafka_resp_err_t e) {
    switch (e) {
    case RD_KAFKA_RESP_ERR__QUEUE_FULL: return errc::full;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE: return errc::limit_exceeded;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT: return errc::timeout;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION: return errc::invalid_argument;
    default: return errc::io_error;
    }
}

/// Sets one property; the error names the property.
inline result<void> kafka_set(rd_kafka_conf_t* conf, const std::string& k, const std::string& v) {
    char err[512];
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
        return unexpected(errc::invalid_argument, "[courier.bridge.kafka.config] " + k + "=" + v + ": " + err);
    return {};
}

}  // namespace detail

/// A `transport` over librdkafka: one producer, and one consumer per consumer group.
///
/// Topics are event names (`order.created.v1` is a legal Kafka topic name); Kafka has no
/// wildcard subscriptions in courier's sense, so patterns are refused (`caps().wildcards` is
/// `none`: the bridge says so at configuration). The partition key is the bus key, so one key
/// keeps its order. Headers carry `courier-event-id`, `courier-event-type`, `courier-key` and the
/// envelope's own headers.
///
/// Confirms come from delivery reports. `ack` marks an offset done; the committed offset of a
/// partition moves to the first offset not yet acked (so a commit never covers an unacked
/// message: after a crash, everything from there is delivered again, acked ones included; the
/// bridge's dedup drops those). `nack(requeue)` seeks back to the offset (that message and the
/// ones after it come again); `nack(no requeue)` settles like `ack` (Kafka has no dead-letter
/// topic of its own: the bridge keeps the dead letter).
///
/// Thread safety: one thread drives the object (every member but `caps()`). Every librdkafka
/// callback (delivery reports, errors, rebalances) runs inside `poll` on that thread.
///
/// Example:
/// ```
/// courier::bridge::kafka_transport t({.brokers = "127.0.0.1:9092"});
/// t.connect(std::chrono::seconds(5)).value();
/// t.subscribe({.topic = "order.created.v1", .group = "billing"}).value();
/// t.publish(1, {.topic = "order.created.v1", .key = "customer-7", .event_id = "e-1", .payload = "{}"}).value();
/// t.poll(std::chrono::milliseconds(100), 64, [](auto c) { /* c.outcome */ }, [](auto m) { /* ... */ });
/// ```
class kafka_transport final : public transport {
public:
    explicit kafka_transport(kafka_options options = {}) : options_(std::move(options)) {
        caps_.broker = "kafka";
        caps_.wildcards = wildcard_dialect::none;
        caps_.per_key_order = true;  // the key picks the partition; a partition is ordered
        caps_.consumer_groups = true;
        caps_.redelivery = true;  // uncommitted offsets are read again after a crash or rebalance
        caps_.native_dedup = false;
        caps_.replay = true;
        caps_.max_message_bytes = options_.max_message_bytes;
    }
    ~kafka_transport() override { close(); }
    kafka_transport(const kafka_transport&) = delete;
    kafka_transport& operator=(const kafka_transport&) = delete;

    const capabilities& caps() const noexcept override { return caps_; }
    const kafka_options& options() const noexcept { return options_; }

    result<void> connect(duration timeout) override {
        if (producer_ == nullptr) {
            auto p = make_handle(RD_KAFKA_PRODUCER, nullptr);
            if (!p) return unexpected(p.error());
            producer_ = *p;
            main_queue_ = rd_kafka_queue_get_main(producer_);
        }
        // librdkafka connects lazily and reconnects by itself: asking for metadata proves a
        // broker answers.
        const rd_kafka_metadata_t* md = nullptr;
        rd_kafka_resp_err_t e = rd_kafka_metadata(producer_, 0, nullptr, &md, std::max(1, detail::kafka_millis(timeout)));
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            connected_ = false;
            return unexpected(e == RD_KAFKA_RESP_ERR__TIMED_OUT || e == RD_KAFKA_RESP_ERR__TRANSPORT ? errc::timeout : errc::io_error,
                              "[courier.bridge.kafka.connect] no broker at " + options_.brokers + " answered within " +
                                  courier::detail::millis_text(timeout) + ": " + rd_kafka_err2str(e));
        }
        rd_kafka_metadata_destroy(md);
        for (auto& spec : specs_) {
            if (auto r = attach(spec); !r) return r;
        }
        connected_ = true;
        lost_ = false;
        return {};
    }

    bool connected() const noexcept override { return connected_ && !lost_; }

    void close() noexcept override {
        for (auto& [group, c] : consumers_) {
            if (c->queue != nullptr) rd_kafka_queue_destroy(c->queue);
            if (lost_) {
                // No broker to commit to or leave the group with: waiting for one would stall
                // the bridge. The group's session times out; uncommitted offsets are read again.
                rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
            } else {
                commit(*c, /*sync*/ true);
                rd_kafka_consumer_close(c->rk);
                rd_kafka_destroy(c->rk);
            }
        }
        consumers_.clear();
        if (producer_ != nullptr) {
            // Messages not yet reported stay in the bridge's outbox; drop librdkafka's copies.
            suppress_reports_ = true;
            rd_kafka_purge(producer_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_poll(producer_, 0);
            rd_kafka_queue_destroy(main_queue_);
            main_queue_ = nullptr;
            rd_kafka_destroy(producer_);
            suppress_reports_ = false;
            producer_ = nullptr;
        }
        reports_.clear();
        connected_ = false;
    }

    result<void> publish(std::uint64_t sequence, const wire_message& m) override {
        if (producer_ == nullptr || !connected())
            return unexpected(errc::closed, "[courier.bridge.kafka.not_connected] publish while not connected to " + options_.brokers);
        if (m.payload.size() > caps_.max_message_bytes)
            return unexpected(errc::limit_exceeded, "[courier.bridge.kafka.too_large] payload of " + std::to_string(m.payload.size()) +
                                                        " bytes exceeds max_message_bytes " + std::to_string(caps_.max_message_bytes));
        if (m.topic.empty() || m.topic != last_checked_topic_) {  // a route sends to one topic: checked once, not per message
            if (auto r = check_topic(m.topic); !r) return r;
            last_checked_topic_ = m.topic;
        }
        rd_kafka_headers_t* hdrs = rd_kafka_headers_new(m.headers.size() + 3);
        bool has_id = false, has_type = false, has_key = false;
        for (auto& [k, v] : m.headers) {
            rd_kafka_header_add(hdrs, k.data(), static_cast<ssize_t>(k.size()), v.data(), static_cast<ssize_t>(v.size()));
            has_id |= k == detail::header_event_id;  // (a view: the length is compared first)
            has_type |= k == detail::header_event_type;
            has_key |= k == detail::header_key;
        }
        auto add = [&](const char* k, const std::string& v) {
            if (!v.empty()) rd_kafka_header_add(hdrs, k, -1, v.data(), static_cast<ssize_t>(v.size()));
        };
        if (!has_id) add("courier-event-id", m.event_id);
        if (!has_type) add("courier-event-type", m.event_type);
        if (!has_key) add("courier-key", m.key);
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
        for (int attempt = 0;; ++attempt) {
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wgnu-statement-expression"  // librdkafka's RD_KAFKA_V_* macros use them
#endif
            e = rd_kafka_producev(
                producer_, RD_KAFKA_V_TOPIC(m.topic.c_str()),
                RD_KAFKA_V_KEY(m.key.empty() ? nullptr : const_cast<char*>(m.key.data()), m.key.size()),
                RD_KAFKA_V_VALUE(const_cast<char*>(m.payload.data()), m.payload.size()), RD_KAFKA_V_HEADERS(hdrs),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::uintptr_t>(sequence))), RD_KAFKA_V_END);
#if defined(__clang__)
#pragma clang diagnostic pop
#endif
            // A full producer queue is back-pressure, not a lost connection: serve delivery
            // reports (kept for the next poll) until there is room, for a bounded time.
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || attempt >= 50) break;
            rd_kafka_poll(producer_, 100);
        }
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_headers_destroy(hdrs);  // still ours when producev failed
            if (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
                return unexpected(errc::limit_exceeded, "[courier.bridge.kafka.too_large] " + std::string(rd_kafka_err2str(e)));
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                return unexpected(errc::full, "[courier.bridge.kafka.queue_full] the producer queue is full; poll to drain delivery reports");
            return unexpected(detail::kafka_errc(e), "[courier.bridge.kafka.produce] '" + m.topic + "': " + rd_kafka_err2str(e));
        }
        ++stats_.published;
        return {};
    }

    result<void> subscribe(const ingest_spec& spec) override {
        for (auto& known : specs_) {
            if (known.topic == spec.topic && known.group == spec.group && known.from_beginning == spec.from_beginning) return {};
        }
        if (spec.topic.find_first_of("*#>") != std::string::npos)
            return unexpected(errc::invalid_pattern, "[courier.bridge.kafka.pattern] '" + spec.topic +
                                                         "': Kafka subscribes to topic names, not patterns");
        if (auto r = check_topic(spec.topic); !r) return r;
        specs_.push_back(spec);
        if (producer_ == nullptr) return {};  // subscribed by connect
        if (auto r = attach(spec); !r) {
            specs_.pop_back();
            return r;
        }
        return {};
    }

    result<void> poll(duration max_wait, std::size_t max_messages, const std::function<void(publish_confirm)>& on_confirm,
                      const std::function<void(inbound_message&&)>& on_message) override {
        if (producer_ == nullptr)
            return unexpected(errc::closed, "[courier.bridge.kafka.not_connected] poll while not connected to " + options_.brokers);
        const auto deadline = std::chrono::steady_clock::now() + max_wait;
        std::size_t delivered = 0;
        bool progress = false;
        for (;;) {
            rd_kafka_poll(producer_, 0);  // delivery reports, errors
            progress |= hand_reports(on_confirm);
            for (auto& [group, c] : consumers_) {
                while (delivered < max_messages) {
                    rd_kafka_message_t* msg = rd_kafka_consumer_poll(c->rk, 0);
                    if (msg == nullptr) break;
                    if (take(*c, msg, on_message)) {
                        ++delivered;
                        progress = true;
                    }
                }
            }
            for (auto& [group, c] : consumers_) {
                // Batched as the raw client does: every commit_every acks, or after commit_interval.
                if (c->acked_since_commit >= options_.commit_every ||
                    (c->acked_since_commit != 0 && std::chrono::steady_clock::now() - c->last_commit >= options_.commit_interval))
                    commit(*c, false);
            }
            if (lost_) return unexpected(errc::io_error, "[courier.bridge.kafka.disconnected] " + stats_.last_error);
            const auto now = std::chrono::steady_clock::now();
            if (progress || delivered >= max_messages || now >= deadline) break;
            // Nothing yet: block where something can arrive, in short slices when there are
            // several places to look.
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
            const bool inflight = rd_kafka_outq_len(producer_) > 0;
            const bool single = consumers_.size() == 1 && !inflight;
            const int slice = consumers_.empty() || single ? std::max(1, static_cast<int>(left.count())) : 1;
            consumer* c = consumers_.empty() ? nullptr : consumers_.begin()->second.get();
            if (!block_begin(c != nullptr ? c->queue : main_queue_)) break;  // woken before blocking: return now
            if (c == nullptr) {
                rd_kafka_poll(producer_, slice);
            } else {
                rd_kafka_message_t* msg = rd_kafka_consumer_poll(c->rk, slice);
                if (msg != nullptr && take(*c, msg, on_message)) {
                    ++delivered;
                    progress = true;
                }
            }
            if (block_end()) {
                // wake(): hand out what is there and return.
                rd_kafka_poll(producer_, 0);
                hand_reports(on_confirm);
                break;
            }
        }
        return {};
    }

    result<void> ack(const ingest_spec& spec, const delivery_tag& tag) override {
        auto* c = consumer_for(spec);
        if (c == nullptr)
            return unexpected(errc::not_found, "[courier.bridge.kafka.unknown_group] no consumer for group '" + spec.group + "'");
        auto it = c->find_partition(tag.id, tag.partition);
        if (it == c->outstanding.end()) return {};  // revoked in a rebalance, or acked already: nothing to settle
        auto& part = it->second;
        auto off = part.find(static_cast<std::int64_t>(tag.number));
        if (off == part.offsets.end() || off->second) return {};
        off->second = true;
        // The commit point is the first offset not yet acked.
        while (!part.offsets.empty() && part.offsets.front().second) {
            part.commit_to = part.offsets.front().first + 1;
            part.offsets.pop_front();
            ++c->acked_since_commit;
        }
        part.dirty = part.commit_to > part.committed;
        return {};
    }

    result<void> nack(const ingest_spec& spec, const delivery_tag& tag, bool requeue) override {
        if (!requeue) return ack(spec, tag);
        auto* c = consumer_for(spec);
        if (c == nullptr)
            return unexpected(errc::not_found, "[courier.bridge.kafka.unknown_group] no consumer for group '" + spec.group + "'");
        auto it = c->find_partition(tag.id, tag.partition);
        if (it == c->outstanding.end()) return {};  // no longer ours: the new owner reads it again
        rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, tag.id.c_str(), tag.partition)->offset = static_cast<std::int64_t>(tag.number);
        rd_kafka_error_t* err = rd_kafka_seek_partitions(c->rk, list, 5000);
        rd_kafka_topic_partition_list_destroy(list);
        if (err != nullptr) {
            std::string text = rd_kafka_error_string(err);
            rd_kafka_error_destroy(err);
            return unexpected(errc::io_error, "[courier.bridge.kafka.seek] cannot redeliver " + tag.id + "/" + std::to_string(tag.partition) +
                                                  "@" + std::to_string(tag.number) + ": " + text);
        }
        // Everything from that offset is read again.
        auto& part = it->second;
        part.offsets.erase(part.lower_bound(static_cast<std::int64_t>(tag.number)), part.offsets.end());
        ++c->redeliveries[{tag.id, tag.partition, static_cast<std::int64_t>(tag.number)}];
        return {};
    }

    /// Makes a blocked `poll` return now (or the next one at once). Any thread.
    void wake() noexcept override {
        std::lock_guard lock(wake_mutex_);
        woken_ = true;
        if (blocking_ != nullptr) rd_kafka_queue_yield(blocking_);
    }

    /// Counters (the driving thread's view).
    const kafka_stats& stats() const noexcept { return stats_; }

    /// The committed offset of a partition for `group` as this transport last committed it (-1: none).
    std::int64_t committed(const std::string& group, const std::string& topic, std::int32_t partition) const {
        auto it = consumers_.find(group);
        if (it == consumers_.end()) return -1;
        auto p = it->second->outstanding.find(partition_key{topic, partition});
        return p == it->second->outstanding.end() ? -1 : p->second.committed;
    }

private:
    struct partition_state {
        /// Delivered, not yet committed, in offset order: acked? (A deque, not a node per message.)
        std::deque<std::pair<std::int64_t, bool>> offsets;
        std::int64_t commit_to = -1;  ///< next offset to commit (first unacked)
        std::int64_t committed = -1;
        bool dirty = false;

        std::deque<std::pair<std::int64_t, bool>>::iterator lower_bound(std::int64_t offset) {
            return std::lower_bound(offsets.begin(), offsets.end(), offset,
                                    [](const std::pair<std::int64_t, bool>& e, std::int64_t o) { return e.first < o; });
        }
        std::deque<std::pair<std::int64_t, bool>>::iterator find(std::int64_t offset) {
            auto it = lower_bound(offset);
            return it != offsets.end() && it->first == offset ? it : offsets.end();
        }
        /// Records a delivered offset (deliveries come in offset order; a re-read after a seek
        /// starts where the seek erased).
        void delivered(std::int64_t offset) {
            if (offsets.empty() || offsets.back().first < offset) {
                offsets.emplace_back(offset, false);
                return;
            }
            auto it = lower_bound(offset);
            if (it == offsets.end() || it->first != offset) offsets.emplace(it, offset, false);
        }
    };
    /// (topic, partition), looked up by views without building a key string per message.
    using partition_key = std::pair<std::string_view, std::int32_t>;
    struct partition_less {
        using is_transparent = void;
        template <class A, class B>
        bool operator()(const A& a, const B& b) const noexcept {
            const std::string_view at(a.first), bt(b.first);
            return at < bt || (at == bt && a.second < b.second);
        }
    };
    struct consumer {
        kafka_transport* owner = nullptr;
        std::string group;
        rd_kafka_t* rk = nullptr;
        std::vector<std::string> topics;
        bool from_beginning = false;
        bool fanout = false;
        rd_kafka_queue_t* queue = nullptr;  ///< its consumer queue (for wake)
        std::map<std::pair<std::string, std::int32_t>, partition_state, partition_less> outstanding;
        using partition_iterator = decltype(outstanding)::iterator;
        /// The partition of (topic, partition), or outstanding.end(). The last one found is kept:
        /// deliveries come in runs of one partition (a fetch) and acks follow them in that order,
        /// so most look-ups compare one key instead of walking the tree.
        partition_iterator find_partition(std::string_view topic, std::int32_t partition) {
            if (last_found != outstanding.end() && last_found->first.second == partition && last_found->first.first == topic)
                return last_found;
            auto it = outstanding.find(partition_key{topic, partition});
            if (it != outstanding.end()) last_found = it;
            return it;
        }
        void erase_partition(partition_iterator it) {
            if (it == last_found) last_found = outstanding.end();
            outstanding.erase(it);
        }
        partition_iterator last_found = outstanding.end();
        std::size_t acked_since_commit = 0;
        std::chrono::steady_clock::time_point last_commit{};
        std::map<std::tuple<std::string, std::int32_t, std::int64_t>, std::uint32_t> redeliveries;
    };

    // The blocking part of poll, bracketed so that `wake` can cut it short: false when a wake
    // came first (do not block).
    bool block_begin(rd_kafka_queue_t* q) {
        std::lock_guard lock(wake_mutex_);
        if (woken_) {
            woken_ = false;
            return false;
        }
        blocking_ = q;
        return true;
    }
    // true when a wake arrived while blocked.
    bool block_end() {
        std::lock_guard lock(wake_mutex_);
        blocking_ = nullptr;
        return std::exchange(woken_, false);
    }

    result<void> check_topic(const std::string& topic) const {
        bool ok = !topic.empty() && topic.size() <= 249 && topic != "." && topic != "..";
        for (char c : topic) {
            const bool legal = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
            ok = ok && legal;
        }
        if (!ok)
            return unexpected(errc::invalid_argument, "[courier.bridge.kafka.topic] '" + topic +
                                                      "' is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)");
        return {};
    }

    consumer* consumer_for(const ingest_spec& spec) {
        auto it = consumers_.find(group_of(spec));
        return it == consumers_.end() ? nullptr : it->second.get();
    }

    std::string group_of(const ingest_spec& spec) {
        if (!spec.group.empty()) return spec.group;
        // Fan-out: a group of this transport alone, so it sees every message.
        if (fanout_group_.empty()) {
            std::random_device rd;
            fanout_group_ = "courier-fanout-" + std::to_string(rd()) + std::to_string(rd());
        }
        return fanout_group_;
    }

    result<rd_kafka_t*> make_handle(rd_kafka_type_t type, consumer* c) {
        rd_kafka_conf_t* conf = rd_kafka_conf_new();
        std::vector<std::pair<std::string, std::string>> props = {
            {"bootstrap.servers", options_.brokers},
            {"client.id", options_.client_id},
            {"message.max.bytes", std::to_string(std::max<std::size_t>(options_.max_message_bytes + 4096, 1000))},
            // Quiet: errors reach `stats()` and `poll` through the error callback.
            {"log_level", "3"},
        };
        if (type == RD_KAFKA_PRODUCER) {
            props.emplace_back("linger.ms", detail::kafka_millis_text(options_.linger));
            props.emplace_back("message.timeout.ms", detail::kafka_millis_text(options_.message_timeout));
            props.emplace_back("enable.idempotence", options_.idempotent ? "true" : "false");
        } else {
            props.emplace_back("group.id", c->group);
            props.emplace_back("enable.auto.commit", "false");
            props.emplace_back("enable.auto.offset.store", "false");
            // A group without a committed offset starts at the oldest retained message: "latest"
            // would lose what is published while the group's first join is still running
            // (seconds). A fan-out subscription (a group of its own) honours from_beginning.
            props.emplace_back("auto.offset.reset", c->from_beginning || !c->fanout ? "earliest" : "latest");
            props.emplace_back("session.timeout.ms", detail::kafka_millis_text(options_.session_timeout));
            props.emplace_back("heartbeat.interval.ms", detail::kafka_millis_text(options_.heartbeat_interval));
            props.emplace_back("fetch.wait.max.ms", "10");
            // The subscription's own metadata request asks for a missing topic to be created.
            // topic.metadata.refresh.interval.ms stays librdkafka's (5 min): a group join that
            // sees the subscribed topics' metadata refreshed while it waits joins again, and a
            // refresh every second made a first join on the mock cluster take 8 to 28 s instead
            // of 3 in about one run of fifteen. Topics created later by an administrator and new
            // partitions are seen at the next refresh (docs/bridges-nats-kafka.md: how to shorten it).
            props.emplace_back("allow.auto.create.topics", "true");
        }
        for (auto& p : options_.properties) props.push_back(p);
        for (auto& [k, v] : props) {
            if (auto r = detail::kafka_set(conf, k, v); !r) {
                rd_kafka_conf_destroy(conf);
                return unexpected(r.error());
            }
        }
        rd_kafka_conf_set_error_cb(conf, &kafka_transport::on_error);
        if (!options_.client_logs) rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t*, int, const char*, const char*) {});
        if (type == RD_KAFKA_PRODUCER) {
            rd_kafka_conf_set_dr_msg_cb(conf, &kafka_transport::on_delivery);
            rd_kafka_conf_set_opaque(conf, this);
        } else {
            rd_kafka_conf_set_rebalance_cb(conf, &kafka_transport::on_rebalance);
            rd_kafka_conf_set_opaque(conf, c);
        }
        char err[512];
        rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
        if (rk == nullptr) {
            rd_kafka_conf_destroy(conf);
            return unexpected(errc::invalid_argument, "[courier.bridge.kafka.config] cannot create a client: " + std::string(err));
        }
        return rk;
    }

    /// Makes sure the consumer of `spec`'s group exists and subscribes to its topic.
    result<void> attach(const ingest_spec& spec) {
        const auto group = group_of(spec);
        auto it = consumers_.find(group);
        if (it == consumers_.end()) {
            auto c = std::make_unique<consumer>();
            c->owner = this;
            c->group = group;
            c->from_beginning = spec.from_beginning;
            c->fanout = spec.group.empty();
            auto rk = make_handle(RD_KAFKA_CONSUMER, c.get());
            if (!rk) return unexpected(rk.error());
            c->rk = *rk;
            rd_kafka_poll_set_consumer(c->rk);
            c->queue = rd_kafka_queue_get_consumer(c->rk);
            it = consumers_.emplace(group, std::move(c)).first;
        }
        auto& c = *it->second;
        if (std::find(c.topics.begin(), c.topics.end(), spec.topic) != c.topics.end()) return {};
        c.topics.push_back(spec.topic);
        rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(c.topics.size()));
        for (auto& t : c.topics) rd_kafka_topic_partition_list_add(list, t.c_str(), RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(c.rk, list);
        rd_kafka_topic_partition_list_destroy(list);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            c.topics.pop_back();
            return unexpected(errc::io_error, "[courier.bridge.kafka.subscribe] '" + spec.topic + "': " + rd_kafka_err2str(e));
        }
        return {};
    }

    /// One consumed message (or consumer event); true when it went to `on_message`.
    bool take(consumer& c, rd_kafka_message_t* msg, const std::function<void(inbound_message&&)>& on_message) {
        if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                ++stats_.errors;
                stats_.last_error = "consumer: " + std::string(rd_kafka_message_errstr(msg));
            }
            rd_kafka_message_destroy(msg);
            return false;
        }
        const char* topic = rd_kafka_topic_name(msg->rkt);
        inbound_message& in = scratch_;
        detail::kafka_read_record_into(
            in, topic != nullptr ? std::string_view(topic) : std::string_view(), detail::kafka_bytes(msg->key, msg->key_len),
            detail::kafka_bytes(msg->payload, msg->len), [msg](auto&& visit) {
                rd_kafka_headers_t* hdrs = nullptr;
                if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || hdrs == nullptr) return;
                const char* name = nullptr;
                const void* value = nullptr;
                size_t size = 0;
                for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
                    visit(name != nullptr ? std::string_view(name) : std::string_view(), detail::kafka_bytes(value, size));
            });
        auto& m = in.message;
        in.tag.id.assign(m.topic);
        in.tag.partition = msg->partition;
        in.tag.number = static_cast<std::uint64_t>(msg->offset);
        auto part = c.find_partition(m.topic, msg->partition);
        if (part == c.outstanding.end()) part = c.outstanding.emplace(std::make_pair(m.topic, msg->partition), partition_state{}).first;
        part->second.delivered(msg->offset);
        if (!c.redeliveries.empty()) {
            if (auto r = c.redeliveries.find({m.topic, msg->partition, msg->offset}); r != c.redeliveries.end()) in.delivery_count = r->second + 1;
        }
        rd_kafka_message_destroy(msg);
        ++stats_.delivered;
        on_message(std::move(in));  // may hand older buffers back to scratch_, for the next record
        return true;
    }

    void commit(consumer& c, bool sync) {
        c.acked_since_commit = 0;
        c.last_commit = std::chrono::steady_clock::now();
        rd_kafka_topic_partition_list_t* list = nullptr;
        for (auto& [tp, part] : c.outstanding) {
            if (!part.dirty) continue;
            if (list == nullptr) list = rd_kafka_topic_partition_list_new(4);
            rd_kafka_topic_partition_list_add(list, tp.first.c_str(), tp.second)->offset = part.commit_to;
            part.committed = part.commit_to;
            part.dirty = false;
            // Offsets below the commit point can no longer be redelivered by a nack.
            for (auto r = c.redeliveries.begin(); r != c.redeliveries.end();) {
                if (std::get<0>(r->first) == tp.first && std::get<1>(r->first) == tp.second && std::get<2>(r->first) < part.commit_to)
                    r = c.redeliveries.erase(r);
                else
                    ++r;
            }
        }
        if (list == nullptr) return;
        rd_kafka_resp_err_t e = rd_kafka_commit(c.rk, list, sync ? 0 : 1);
        rd_kafka_topic_partition_list_destroy(list);
        ++stats_.commits;
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            ++stats_.errors;
            stats_.last_error = "commit: " + std::string(rd_kafka_err2str(e));
        }
    }

    bool hand_reports(const std::function<void(publish_confirm)>& on_confirm) {
        if (reports_.empty()) return false;
        // The reports go to a local (safe if on_confirm polls again) that takes the spare
        // buffer's place, so both vectors keep their capacity from poll to poll.
        std::vector<publish_confirm> batch;
        batch.swap(spare_reports_);
        batch.swap(reports_);
        for (auto& c : batch) on_confirm(std::move(c));
        batch.clear();
        if (batch.capacity() > spare_reports_.capacity()) spare_reports_.swap(batch);
        return true;
    }

    static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
        auto* self = static_cast<kafka_transport*>(opaque);
        if (self->suppress_reports_) return;
        publish_confirm c;
        c.sequence = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(msg->_private));
        if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            c.outcome = unexpected(detail::kafka_errc(msg->err), "[courier.bridge.kafka.delivery] not delivered to '" +
                                                                     std::string(rd_kafka_topic_name(msg->rkt)) + "': " + rd_kafka_err2str(msg->err));
            ++self->stats_.failed;
        } else {
            ++self->stats_.confirmed;
        }
        self->reports_.push_back(std::move(c));
    }

    static void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
        // The producer's opaque is the transport, a consumer's its `consumer` record.
        kafka_transport* self = rd_kafka_type(rk) == RD_KAFKA_PRODUCER ? static_cast<kafka_transport*>(opaque)
                                                                        : static_cast<consumer*>(opaque)->owner;
        ++self->stats_.errors;
        self->stats_.last_error = std::string(rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err))) + ": " + reason;
        char buf[256];
        if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || (err == RD_KAFKA_RESP_ERR__FATAL && rd_kafka_fatal_error(rk, buf, sizeof buf))) {
            self->lost_ = true;
        }
    }

    static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts, void* opaque) {
        auto* c = static_cast<consumer*>(opaque);
        auto* self = c->owner;
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
            ++self->stats_.rebalances;
            rd_kafka_assign(rk, parts);
        } else {
            // Revoked: commit what is done, forget the rest (the next owner reads it again).
            self->commit(*c, true);
            for (int i = 0; i < parts->cnt; ++i) {
                auto it = c->find_partition(parts->elems[i].topic, parts->elems[i].partition);
                if (it != c->outstanding.end()) c->erase_partition(it);
            }
            rd_kafka_assign(rk, nullptr);
        }
    }

    kafka_options options_;
    capabilities caps_;
    rd_kafka_t* producer_ = nullptr;
    rd_kafka_queue_t* main_queue_ = nullptr;
    std::mutex wake_mutex_;
    rd_kafka_queue_t* blocking_ = nullptr;  ///< the queue poll blocks on now (guarded by wake_mutex_)
    bool woken_ = false;
    std::map<std::string, std::unique_ptr<consumer>> consumers_;
    std::vector<ingest_spec> specs_;
    std::vector<publish_confirm> reports_;
    std::vector<publish_confirm> spare_reports_;  ///< an empty buffer for reports_ (see hand_reports)
    inbound_message scratch_;  // each consumed record is read into it (see take)
    std::string last_checked_topic_;  // the last topic publish found valid
    std::string fanout_group_;
    bool connected_ = false;
    bool lost_ = false;
    bool suppress_reports_ = false;
    kafka_stats stats_;
};

inline result<kafka_options> kafka_options::from_url(const broker_url& url) {
    if (url.scheme != broker_scheme::kafka)
        return unexpected(errc::invalid_argument, "[courier.bridge.kafka.url] '" + url.redacted() + "' is not a kafka:// URL");
    kafka_options o;
    o.brokers.clear();
    for (auto& ep : url.endpoints) {
        if (!o.brokers.empty()) o.brokers += ',';
        o.brokers += ep.host + ":" + std::to_string(ep.port ? ep.port : default_port(broker_scheme::kafka));
    }
    for (auto& [k, v] : url.params) {
        if (k != "client_id" && k != "linger_ms" && k != "idempotent" && k != "max_message_bytes")
            return unexpected(errc::invalid_argument, "[courier.bridge.kafka.url] unknown parameter '" + k + "' in '" + url.redacted() +
                                                          "' (known: client_id, linger_ms, idempotent, max_message_bytes)");
    }
    o.client_id = url.param("client_id", o.client_id);
    auto linger = url.param_uint("linger_ms", 1);
    if (!linger) return unexpected(linger.error());
    o.linger = std::chrono::milliseconds(*linger);
    auto idem = url.param_bool("idempotent", true);
    if (!idem) return unexpected(idem.error());
    o.idempotent = *idem;
    auto max = url.param_uint("max_message_bytes", o.max_message_bytes);
    if (!max) return unexpected(max.error());
    o.max_message_bytes = static_cast<std::size_t>(*max);
    return o;
}

namespace detail {
inline const bool kafka_registered = register_transport(broker_scheme::kafka, [](const broker_url& url) -> result<std::unique_ptr<transport>> {
    auto o = kafka_options::from_url(url);
    if (!o) return unexpected(o.error());
    return std::unique_ptr<transport>(std::make_unique<kafka_transport>(std::move(*o)));
});
}  // namespace detail

}  // namespace bridge
COURIER_END_NAMESPACE
