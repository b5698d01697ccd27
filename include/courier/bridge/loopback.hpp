// An in-memory broker and its transport, for tests and examples: topics are append-only logs,
// consumer groups hand each entry to one consumer and keep it pending until acked, pending
// entries idle longer than `redelivery_after` come back (like Redis's XAUTOCLAIM), and the
// broker can be taken down and brought back to exercise reconnects and re-publishing.
// `loopback://<name>` URLs reach the broker registered under that name.
#pragma once

#include <courier/bridge/registry.hpp>
#include <courier/bridge/transport.hpp>
#include <courier/bridge/url.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/event/topic_pattern.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge {

/// How a loopback broker behaves.
struct loopback_options {
    /// A delivered entry not acked within this time is handed out again (delivery_count + 1).
    duration redelivery_after = std::chrono::seconds(1);
    /// What the broker claims to do natively (the capability check reads it); the defaults are
    /// those of a Redis-like log: exact topics, per-key order, groups, redelivery, replay.
    capabilities caps{.broker = "loopback",
                      .wildcards = wildcard_dialect::none,
                      .per_key_order = true,
                      .consumer_groups = true,
                      .redelivery = true,
                      .native_dedup = false,
                      .delayed_delivery = false,
                      .priorities = false,
                      .request_reply = false,
                      .replay = true,
                      .max_message_bytes = 0};
};

class loopback_transport;

/// The in-memory broker. Shared by the transports connected to it.
///
/// Thread safety: every member may be called from any thread.
class loopback_broker : public std::enable_shared_from_this<loopback_broker> {
public:
    /// One stored message, as a broker tool would show it.
    struct entry {
        std::uint64_t id = 0;  ///< 1, 2, 3... per topic
        wire_message message;
    };

    static std::shared_ptr<loopback_broker> create(loopback_options options = {}) {
        return std::shared_ptr<loopback_broker>(new loopback_broker(std::move(options)));
    }
    /// The broker registered under `name` (made on first use); `loopback://name` reaches it.
    static std::shared_ptr<loopback_broker> named(std::string_view name, loopback_options options = {}) {
        static std::mutex m;
        static std::map<std::string, std::weak_ptr<loopback_broker>, std::less<>> registry;
        std::lock_guard lock(m);
        auto& slot = registry[std::string(name)];
        if (auto b = slot.lock()) return b;
        auto b = create(std::move(options));
        slot = b;
        return b;
    }

    /// A new, unconnected client of this broker.
    std::unique_ptr<transport> make_transport();

    const capabilities& caps() const noexcept { return options_.caps; }

    /// Takes the broker down (every connection breaks; connects fail) or brings it back.
    /// Stored messages survive, as with a broker that persists them. Confirms a client had not
    /// read yet are lost with its connection, as they would be on the wire.
    void set_down(bool down) {
        std::lock_guard lock(mutex_);
        if (down && !down_) ++epoch_;
        down_ = down;
        cv_.notify_all();
    }
    bool down() const {
        std::lock_guard lock(mutex_);
        return down_;
    }

    /// Appends a message as a broker tool would (no confirm); returns its id.
    std::uint64_t append(wire_message m) {
        std::lock_guard lock(mutex_);
        return append_locked(std::move(m));
    }
    /// Every stored message of a topic.
    std::vector<entry> read_all(std::string_view topic) const {
        std::lock_guard lock(mutex_);
        auto it = topics_.find(topic);
        if (it == topics_.end()) return {};
        return {it->second.entries.begin(), it->second.entries.end()};
    }
    /// Entries delivered to `group` and not acked yet.
    std::size_t pending(std::string_view topic, std::string_view group) const {
        std::lock_guard lock(mutex_);
        auto t = topics_.find(topic);
        if (t == topics_.end()) return 0;
        auto g = t->second.groups.find(group);
        return g == t->second.groups.end() ? 0 : g->second.pending.size();
    }
    /// Entries rejected without requeue (the broker's own dead letters).
    std::vector<entry> rejected() const {
        std::lock_guard lock(mutex_);
        return rejected_;
    }

private:
    friend class loopback_transport;

    explicit loopback_broker(loopback_options o) : options_(std::move(o)) {}

    struct pending_entry {
        std::string consumer;
        std::uint32_t deliveries = 0;
        std::chrono::steady_clock::time_point delivered_at;
        bool requeued = false;
    };
    struct group_state {
        std::size_t next = 0;  // index of the next never-delivered entry
        std::map<std::uint64_t, pending_entry> pending;
    };
    struct topic_state {
        std::vector<entry> entries;
        std::map<std::string, group_state, std::less<>> groups;
    };

    std::uint64_t append_locked(wire_message m) {
        auto& t = topics_[m.topic];
        const std::uint64_t id = t.entries.size() + 1;
        t.entries.push_back(entry{id, std::move(m)});
        cv_.notify_all();
        return id;
    }

    // The topics a subscription reads (its own name, or every topic its pattern matches).
    std::vector<std::string> topics_for(const std::string& topic) {
        if (options_.caps.wildcards == wildcard_dialect::none || topic.find_first_of("*#") == std::string::npos) {
            topics_[topic];  // exists from now on, like XGROUP CREATE MKSTREAM
            return {topic};
        }
        std::vector<std::string> out;
        auto p = topic_pattern::parse(topic);
        for (auto& [name, state] : topics_)
            if (p && p->matches(name)) out.push_back(name);
        return out;
    }

    loopback_options options_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::map<std::string, topic_state, std::less<>> topics_;
    std::vector<entry> rejected_;
    bool down_ = false;
    std::uint64_t epoch_ = 0;  // bumps when the broker goes down: older connections are dead
};

/// A client of a loopback_broker (see transport.hpp for the contract).
class loopback_transport final : public transport {
public:
    explicit loopback_transport(std::shared_ptr<loopback_broker> b) : broker_(std::move(b)) {
        static std::atomic<std::uint64_t> ids{0};
        uid_ = ++ids;
    }

    const capabilities& caps() const noexcept override { return broker_->options_.caps; }

    result<void> connect(duration) override {
        std::lock_guard lock(broker_->mutex_);
        if (broker_->down_) return unexpected(errc::io_error, "[courier.bridge.loopback.down] the loopback broker is down");
        if (connected_ && epoch_ == broker_->epoch_) return {};
        epoch_ = broker_->epoch_;
        connected_ = true;
        confirms_.clear();
        return {};
    }
    bool connected() const noexcept override { return connected_; }
    void close() noexcept override {
        connected_ = false;
        confirms_.clear();
    }

    result<void> publish(std::uint64_t sequence, const wire_message& m) override {
        std::lock_guard lock(broker_->mutex_);
        if (auto e = alive_locked(); !e) return e;
        if (broker_->options_.caps.max_message_bytes && m.payload.size() > broker_->options_.caps.max_message_bytes)
            return unexpected(errc::limit_exceeded, "[courier.bridge.loopback.too_large] message above max_message_bytes");
        broker_->append_locked(m);
        confirms_.push_back(sequence);
        return {};
    }

    result<void> subscribe(const ingest_spec& spec) override {
        std::lock_guard lock(broker_->mutex_);
        for (auto& s : subs_)
            if (s.spec.topic == spec.topic && s.spec.group == spec.group && s.spec.consumer == spec.consumer) return alive_locked();
        sub sb;
        sb.spec = spec;
        sb.group = spec.group.empty() ? "~fanout-" + std::to_string(uid_) + "-" + std::to_string(subs_.size()) : spec.group;
        subs_.push_back(std::move(sb));
        if (auto e = alive_locked(); !e) return e;
        ensure_groups_locked(subs_.back());
        return {};
    }

    result<void> poll(duration max_wait, std::size_t max_messages, const std::function<void(publish_confirm)>& on_confirm,
                      const std::function<void(inbound_message&&)>& on_message) override {
        std::vector<std::uint64_t> confirms;
        std::vector<inbound_message> out;
        {
            std::unique_lock lock(broker_->mutex_);
            const auto deadline = std::chrono::steady_clock::now() +
                                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(max_wait);
            for (;;) {
                if (auto e = alive_locked(); !e) return e;
                confirms.swap(confirms_);
                collect_locked(max_messages, out);
                if (!confirms.empty() || !out.empty()) break;
                if (woken_.exchange(false)) break;
                const auto now = std::chrono::steady_clock::now();
                if (now >= deadline) break;
                // Wake at the deadline, or when the next pending entry becomes redeliverable.
                broker_->cv_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(20)));
            }
        }
        for (auto s : confirms) on_confirm(publish_confirm{s, {}});
        for (auto& m : out) on_message(std::move(m));
        return {};
    }

    result<void> ack(const ingest_spec& spec, const delivery_tag& tag) override {
        std::lock_guard lock(broker_->mutex_);
        if (auto e = alive_locked(); !e) return e;
        if (auto* g = group_locked(spec, tag.id)) g->pending.erase(tag.number);
        return {};
    }

    result<void> nack(const ingest_spec& spec, const delivery_tag& tag, bool requeue) override {
        std::lock_guard lock(broker_->mutex_);
        if (auto e = alive_locked(); !e) return e;
        auto* g = group_locked(spec, tag.id);
        if (!g) return {};
        auto it = g->pending.find(tag.number);
        if (it == g->pending.end()) return {};
        if (requeue) {
            it->second.requeued = true;
        } else {
            auto& t = broker_->topics_[tag.id];
            broker_->rejected_.push_back(t.entries[tag.number - 1]);
            g->pending.erase(it);
        }
        return {};
    }

    void wake() noexcept override {
        woken_.store(true);
        std::lock_guard lock(broker_->mutex_);
        broker_->cv_.notify_all();
    }

private:
    struct sub {
        ingest_spec spec;
        std::string group;  // the broker-side group (a private one for fan-out)
    };

    result<void> alive_locked() {
        if (!connected_ || broker_->down_ || epoch_ != broker_->epoch_) {
            connected_ = false;
            confirms_.clear();  // lost with the connection
            return unexpected(errc::io_error, "[courier.bridge.loopback.down] the connection to the loopback broker is lost");
        }
        return {};
    }

    void ensure_groups_locked(const sub& s) {
        for (auto& name : broker_->topics_for(s.spec.topic)) {
            auto& t = broker_->topics_[name];
            if (!t.groups.count(s.group)) {
                loopback_broker::group_state g;
                g.next = s.spec.from_beginning ? 0 : t.entries.size();
                t.groups.emplace(s.group, std::move(g));
            }
        }
    }

    loopback_broker::group_state* group_locked(const ingest_spec& spec, const std::string& topic) {
        auto t = broker_->topics_.find(topic);
        if (t == broker_->topics_.end()) return nullptr;
        std::string group = spec.group;
        if (group.empty()) {
            for (auto& s : subs_)
                if (s.spec.topic == spec.topic && s.spec.group.empty() && s.spec.consumer == spec.consumer) group = s.group;
        }
        auto g = t->second.groups.find(group);
        return g == t->second.groups.end() ? nullptr : &g->second;
    }

    void collect_locked(std::size_t max, std::vector<inbound_message>& out) {
        const auto now = std::chrono::steady_clock::now();
        for (auto& s : subs_) {
            ensure_groups_locked(s);  // pattern subscriptions pick up new topics
            for (auto& name : broker_->topics_for(s.spec.topic)) {
                auto& t = broker_->topics_[name];
                auto& g = t.groups[s.group];
                // Pending entries first: requeued ones, and those idle past redelivery_after.
                for (auto& [id, p] : g.pending) {
                    if (out.size() >= max) return;
                    if (!p.requeued && now - p.delivered_at < broker_->options_.redelivery_after) continue;
                    p.requeued = false;
                    p.consumer = s.spec.consumer;
                    p.delivered_at = now;
                    ++p.deliveries;
                    out.push_back(make(name, t.entries[id - 1], p.deliveries));
                }
                while (g.next < t.entries.size()) {
                    if (out.size() >= max) return;
                    const auto& e = t.entries[g.next++];
                    g.pending.emplace(e.id, loopback_broker::pending_entry{s.spec.consumer, 1, now, false});
                    out.push_back(make(name, e, 1));
                }
            }
        }
    }

    static inbound_message make(const std::string& topic, const loopback_broker::entry& e, std::uint32_t deliveries) {
        inbound_message m;
        m.message = e.message;
        m.tag.id = topic;
        m.tag.number = e.id;
        m.delivery_count = deliveries;
        return m;
    }

    std::shared_ptr<loopback_broker> broker_;
    std::uint64_t uid_ = 0;
    std::uint64_t epoch_ = 0;
    bool connected_ = false;  // touched by the driving thread only
    std::vector<std::uint64_t> confirms_;
    std::vector<sub> subs_;
    std::atomic<bool> woken_{false};
};

inline std::unique_ptr<transport> loopback_broker::make_transport() {
    return std::make_unique<loopback_transport>(shared_from_this());
}

namespace detail {
inline const bool loopback_registered = register_transport(broker_scheme::loopback, [](const broker_url& url) -> result<std::unique_ptr<transport>> {
    loopback_options o;
    auto redelivery = url.param_uint("redelivery_ms", 1000);
    if (!redelivery) return unexpected(redelivery.error());
    o.redelivery_after = std::chrono::milliseconds(*redelivery);
    return loopback_broker::named(url.host(), std::move(o))->make_transport();
});
}  // namespace detail

}  // namespace bridge
COURIER_END_NAMESPACE
