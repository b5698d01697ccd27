// The broker bridge: the same events over a real broker. `forward(pattern)` sends matching
// events from the local bus to the broker through a bounded outbox that holds them until the
// broker confirms; `ingest(spec)` publishes what the broker delivers on the local bus as the
// same events (id, type, timestamp, metadata, headers, key), deduplicated by event_id and acked
// only once the local handlers are done. One I/O thread drives the transport (see transport.hpp).
#pragma once

#include <courier/bridge/detail/dedup_window.hpp>
#include <courier/bridge/detail/outbound.hpp>
#include <courier/bridge/detail/wire.hpp>
#include <courier/bridge/registry.hpp>
#include <courier/bridge/route.hpp>
#include <courier/bridge/transport.hpp>
#include <courier/bridge/url.hpp>
#include <courier/bus/event_bus.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/core/retry_policy.hpp>
#include <courier/detail/moodycamel.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/queue/bounded_queue.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge {

/// Tuning of one bridge. Every field has a safe default.
struct bridge_options {
    /// Name in dead letters and error messages.
    std::string name = "bridge";
    /// Messages waiting in the outbox (not yet handed to the broker) before `outbox_overflow` applies.
    std::size_t outbox_capacity = 65536;
    /// What a forward does when the outbox is full (the queue layer's policies). Every message
    /// refused or evicted is counted in `dropped` and dead-lettered (reason overflow).
    overflow_policy outbox_overflow = overflow_policy::block;
    /// How long `block` waits for room.
    duration block_timeout = std::chrono::seconds(1);
    /// Messages sent and not yet confirmed, at most (they stay in the outbox until confirmed).
    std::size_t max_in_flight = 4096;
    /// A message whose publish the broker refused this many times is dead-lettered.
    std::uint32_t max_publish_attempts = 5;
    /// Backoff between reconnect attempts (maximum_attempts 0: forever).
    retry_policy reconnect = retry_policy::exponential(std::chrono::milliseconds(20), 2.0, std::chrono::seconds(2), 0);
    /// Time one connect attempt may take.
    duration connect_timeout = std::chrono::seconds(2);
    /// Longest idle poll. A transport that implements `wake()` returns sooner when work arrives.
    duration poll_interval = std::chrono::milliseconds(50);
    /// Deliveries taken from the broker per poll.
    std::size_t poll_batch = 512;
    /// Event ids remembered for inbound deduplication (0 disables it).
    std::size_t dedup_window = 100000;
    /// Limits for decoding inbound envelopes (a larger or deeper one is dead-lettered).
    decode_limits limits{};
};

/// Counters of one bridge (a snapshot; each field read separately).
struct bridge_stats {
    std::uint64_t forwarded = 0;       ///< envelopes taken from the local bus into the outbox
    std::uint64_t confirmed = 0;       ///< confirmed by the broker (they left the outbox)
    std::size_t outbox_depth = 0;      ///< waiting + in flight (sent, not confirmed)
    std::size_t in_flight = 0;         ///< sent, not confirmed
    std::uint64_t dropped = 0;         ///< refused or evicted by the outbox bound (each dead-lettered)
    std::uint64_t publish_errors = 0;  ///< refused publishes (retried, or dead-lettered after max_publish_attempts)
    std::uint64_t reconnects = 0;      ///< connections made again after the first
    std::uint64_t ingested = 0;        ///< broker deliveries published on the local bus
    std::uint64_t duplicates = 0;      ///< deliveries whose event_id was seen within the window (acked, not published)
    std::uint64_t dead_lettered = 0;   ///< dead letters the bridge wrote (drops, undecodable, too large, refused)
    std::uint64_t acked = 0;           ///< deliveries acked to the broker
    bool connected = false;
};

namespace detail {

struct settled_delivery {
    std::size_t route = 0;
    delivery_tag tag;
    uuid event_id{};  // set (tag empty) when the local bus finished with an ingested event
};

/// An ingested event the local handlers have not finished: its delivery, and the copies the
/// broker delivered meanwhile (acked with it).
struct in_progress_event {
    std::size_t route = 0;
    delivery_tag tag;
    std::vector<settled_delivery> duplicates;
};

/// The event a bridge's ingest is publishing in this thread, so that bridge's own forward routes
/// do not send it straight back (events its handlers publish meanwhile are new, and do go).
struct ingesting_event {
    const void* core = nullptr;
    uuid event_id{};
};
inline ingesting_event& ingesting() noexcept {
    thread_local ingesting_event current;
    return current;
}

/// What the I/O thread shares with publishers (forward handlers) and with the bus's settle
/// callbacks, which may outlive the bridge object.
struct bridge_core {
    bridge_core(const bridge_options& o, dead_letter_store& dl, courier::clock& clk)
        : options(o),
          dead_letters(dl),
          clock(clk),
          outbox(o.outbox_capacity ? o.outbox_capacity : 1, o.outbox_overflow, [this](outbound_item&& w) {
              dropped.fetch_add(1, std::memory_order_relaxed);
              dead_letter_accepted(w, dead_letter_reason::overflow,
                              "[courier.bridge.outbox_full] the outbox of bridge '" + options.name + "' was full (" +
                                  std::string(to_string(options.outbox_overflow)) + ")");
          }) {}

    const bridge_options options;
    dead_letter_store& dead_letters;
    courier::clock& clock;
    bounded_queue<outbound_item> outbox;
    /// The forward routes' topics (append only, under the bridge's mutex: items point at them).
    std::deque<std::string> topics;

    // The counters sit on three cache lines by who writes them per message: a line that two
    // threads write per message moves between the cores each time (on_confirm's one atomic add
    // took most of its time when they shared one).
    /// Publishers' (forward handlers) line.
    alignas(cache_line_size) std::atomic<std::uint64_t> forwarded{0};
    /// Messages accepted for forwarding (counted before they enter the outbox) and not settled
    /// yet: confirmed by the broker or handed to the dead letters. What flush waits for: the
    /// outbox and the in-flight window are two counts, and a message the I/O thread has popped
    /// and not yet added to its window would be in neither. Publishers add one per message; the
    /// I/O thread takes off the confirmed ones once per poll (see settle_confirmed).
    std::atomic<std::size_t> unsettled{0};
    std::atomic<std::uint64_t> dropped{0};
    /// The I/O thread's line (read by stats() only).
    alignas(cache_line_size) std::atomic<std::uint64_t> confirmed{0};
    std::atomic<std::uint64_t> publish_errors{0}, reconnects{0}, ingested{0}, duplicates{0}, dead_lettered{0}, acked{0};
    std::atomic<std::size_t> in_flight{0};
    /// Written by the I/O thread once per poll, read by publishers per message.
    alignas(cache_line_size) std::atomic<bool> sleeping{false};
    std::atomic<bool> connected{false};

    std::mutex wake_mutex;
    transport* wake_target = nullptr;  // null once the I/O thread is gone

    /// Payload buffers of confirmed messages, for the forward handlers to encode the next ones
    /// into: memory that has its pages and its size already, and the I/O thread no longer frees
    /// what a publisher's thread allocated (glibc then locks the publisher's arena per free).
    moodycamel::ConcurrentQueue<std::string> spare_payloads;
    static constexpr std::size_t max_spare_payloads = 1024;
    static constexpr std::size_t max_spare_payload_bytes = 16 * 1024;  // a rare big one is freed

    /// From the I/O thread: a confirmed message's payload buffer, kept for reuse (bounded).
    void recycle_payload(std::string&& payload) {
        if (payload.capacity() > max_spare_payload_bytes || spare_payloads.size_approx() >= max_spare_payloads) return;
        (void)spare_payloads.enqueue(std::move(payload));
    }
    /// From a forward handler: a buffer to encode into (empty when none is spare).
    void reuse_payload(std::string& into) { (void)spare_payloads.try_dequeue(into); }

    std::mutex settle_mutex;
    std::vector<settled_delivery> settled;
    std::atomic<std::size_t> settled_count{0};  // settled.size(), read without the lock
    bool accepting_settles = true;
    /// Settles the I/O thread makes itself (inline handlers of an event it is ingesting, the
    /// common case): collected after the publish, with no lock and no wake-up. That thread's only.
    std::vector<settled_delivery> settled_here;

    void dead_letter_out(const outbound_item& item, dead_letter_reason why, std::string reason) {
        dead_letters.add(outbound_record(as_wire(item), why, "bridge:" + options.name + ":outbox", std::move(reason), clock.now()));
        dead_lettered.fetch_add(1, std::memory_order_relaxed);
    }
    /// Dead-letters a message counted in `unsettled`: it is settled by this.
    void dead_letter_accepted(const outbound_item& item, dead_letter_reason why, std::string reason) {
        dead_letter_out(item, why, std::move(reason));
        unsettled.fetch_sub(1, std::memory_order_release);
    }

    /// Wakes the I/O thread if it is parked in a poll (Dekker pairing with the thread's
    /// `sleeping` store and its second look for work).
    void kick() noexcept {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (!sleeping.load(std::memory_order_relaxed)) return;
        std::lock_guard lock(wake_mutex);
        if (wake_target) wake_target->wake();
    }

    void settle(std::size_t route, delivery_tag tag, const uuid& event_id = {}) {
        if (ingesting().core == this) {
            settled_here.push_back(settled_delivery{route, std::move(tag), event_id});
            return;
        }
        {
            std::lock_guard lock(settle_mutex);
            if (!accepting_settles) return;  // the bridge stopped: the broker redelivers it
            settled.push_back(settled_delivery{route, std::move(tag), event_id});
            settled_count.store(settled.size(), std::memory_order_relaxed);
        }
        kick();  // its fence orders the count before the look at `sleeping`
    }
};

}  // namespace detail

/// Connects a local event bus to a broker.
///
/// Thread safety: forward/ingest/stats/flush/wait_until_ready/stop may be called from any
/// thread. The transport is driven by the bridge's own I/O thread only.
/// Lifetime: the bridge must be destroyed (or stopped) before its bus.
/// Guarantees: outbound at-least-once (a message leaves the outbox only when the broker
/// confirmed it; after a reconnect the unconfirmed ones are sent again, so a peer may see a
/// message twice and deduplicates it by event_id); inbound at-least-once with deduplication
/// (acked once every local subscription handled or dead-lettered it). Per-key order holds
/// across the hop for one forwarding bus (the forward route runs inline, in publish order).
/// Errors: configuration mistakes (a route the broker cannot carry, a bad URL) are errors from
/// forward/ingest/connect; run-time failures are counted and dead-lettered, never thrown.
///
/// Example:
/// ```
/// auto bridge = courier::bridge::broker_bridge::connect(rt.bus(), "redis://127.0.0.1:6379?stream=orders").value();
/// bridge->forward("order.#").value();                                     // local -> redis
/// bridge->ingest({.topic = "orders", .group = "shipping", .consumer = "s1"}).value();  // redis -> local
/// ```
class broker_bridge {
public:
    broker_bridge(event_bus& bus, std::unique_ptr<transport> t, bridge_options options = {})
        : bus_(bus),
          transport_(std::move(t)),
          caps_(transport_->caps()),
          default_topic_(transport_->default_topic()),
          core_(std::make_shared<detail::bridge_core>(options, bus.dead_letters(), bus.clock())),
          dedup_(options.dedup_window) {
        {
            std::lock_guard lock(core_->wake_mutex);
            core_->wake_target = transport_.get();
        }
        thread_ = std::thread([this] { run(); });
    }

    /// A bridge to the broker a URL names (the adapter's header must be included; see registry.hpp).
    static result<std::unique_ptr<broker_bridge>> connect(event_bus& bus, std::string_view url, bridge_options options = {}) {
        auto t = make_transport(url);
        if (!t) return unexpected(t.error());
        return std::make_unique<broker_bridge>(bus, std::move(*t), std::move(options));
    }

    ~broker_bridge() { stop(std::chrono::milliseconds(500)); }
    broker_bridge(const broker_bridge&) = delete;
    broker_bridge& operator=(const broker_bridge&) = delete;

    /// What the broker does natively.
    const capabilities& caps() const noexcept { return caps_; }

    /// Sends every event matching `pattern` (courier's `*`/`#` dialect) from the local bus to the
    /// broker, to `options.topic` (or the transport's default topic, or the event type).
    /// Errors: errc::invalid_pattern for a malformed pattern; "[courier.bridge.capability.*]"
    /// for a route the broker cannot carry (see check_forward); "[courier.bridge.stopped]".
    result<void> forward(std::string_view pattern, forward_options options = {}) {
        if (auto ok = check_forward(caps_, pattern, options); !ok) return ok;
        std::lock_guard lock(mutex_);
        if (stopped_) return unexpected(errc::closed, "[courier.bridge.stopped] bridge '" + core_->options.name + "' is stopped");
        core_->topics.push_back(!options.topic.empty() ? options.topic : default_topic_);
        const std::string* topic = &core_->topics.back();  // empty: each event's type
        subscription_options so;
        so.name = "bridge:" + core_->options.name + ":forward:" + std::string(pattern) + "#" + std::to_string(forwards_.size());
        so.mode = delivery_mode::inline_call;  // in publish order, so per-key order survives the hop
        so.guarantee = delivery_guarantee::at_most_once;
        auto sub = bus_.try_subscribe(
            pattern,
            [core = core_, topic, max = caps_.max_message_bytes](const message_context& ctx) {
                const auto& in = detail::ingesting();
                if (in.core == core.get() && in.event_id == ctx.event_id()) return;  // just ingested: not back
                detail::outbound_item w;
                w.topic = topic;
                core->reuse_payload(w.payload);
                detail::encode_outbound(w, ctx);  // the bytes encode(ctx.to_envelope()) gives
                if (max && w.payload.size() > max) {
                    core->dead_letter_out(w, dead_letter_reason::non_retryable,
                                          "[courier.bridge.too_large] the envelope is " + std::to_string(w.payload.size()) +
                                              " bytes, above the broker's limit of " + std::to_string(max));
                    return;
                }
                enqueue(*core, std::move(w));
            },
            std::move(so));
        if (!sub) return unexpected(sub.error());
        forwards_.push_back(std::move(*sub));
        return {};
    }

    /// Publishes on the local bus what the broker delivers for `spec` (the topic in courier's
    /// dialect; mapped to the broker's). The subscription is made by the I/O thread (and made
    /// again after each reconnect); `wait_until_ready` waits for it.
    /// Errors: "[courier.bridge.capability.*]" (see check_ingest), "[courier.bridge.stopped]".
    result<void> ingest(ingest_spec spec, ingest_options options = {}) {
        auto topic = check_ingest(caps_, spec, options);
        if (!topic) return unexpected(topic.error());
        spec.topic = std::move(*topic);
        if (spec.consumer.empty()) spec.consumer = core_->options.name;
        {
            std::lock_guard lock(mutex_);
            if (stopped_) return unexpected(errc::closed, "[courier.bridge.stopped] bridge '" + core_->options.name + "' is stopped");
            routes_.push_back(std::make_unique<route_state>(route_state{std::move(spec), false}));
            route_count_.store(routes_.size(), std::memory_order_release);
        }
        core_->kick();
        return {};
    }

    /// Waits until the broker is connected and every ingest route is subscribed.
    bool wait_until_ready(duration timeout) const {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
        for (;;) {
            if (core_->connected.load(std::memory_order_acquire) &&
                subscribed_.load(std::memory_order_acquire) == route_count_.load(std::memory_order_acquire))
                return true;
            if (std::chrono::steady_clock::now() >= deadline) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    /// Waits until the outbox is empty: everything forwarded so far is confirmed (or dead-lettered).
    bool flush(duration timeout) const {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
        for (;;) {
            if (core_->unsettled.load(std::memory_order_acquire) == 0) return true;
            if (std::chrono::steady_clock::now() >= deadline) return false;
            core_->kick();
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    }

    bridge_stats stats() const {
        bridge_stats s;
        s.forwarded = core_->forwarded.load(std::memory_order_relaxed);
        s.confirmed = core_->confirmed.load(std::memory_order_relaxed);
        s.in_flight = core_->in_flight.load(std::memory_order_relaxed);
        s.outbox_depth = core_->outbox.size_approx() + s.in_flight;
        s.dropped = core_->dropped.load(std::memory_order_relaxed);
        s.publish_errors = core_->publish_errors.load(std::memory_order_relaxed);
        s.reconnects = core_->reconnects.load(std::memory_order_relaxed);
        s.ingested = core_->ingested.load(std::memory_order_relaxed);
        s.duplicates = core_->duplicates.load(std::memory_order_relaxed);
        s.dead_lettered = core_->dead_lettered.load(std::memory_order_relaxed);
        s.acked = core_->acked.load(std::memory_order_relaxed);
        s.connected = core_->connected.load(std::memory_order_relaxed);
        return s;
    }

    /// The last connection error (empty while all is well), for logs.
    std::string last_error() const {
        std::lock_guard lock(mutex_);
        return last_error_;
    }

    /// Stops: no more forwards, up to `drain` for the outbox to be confirmed, then the I/O thread
    /// ends and the connection closes. What the outbox still holds is dead-lettered (reason
    /// shutdown); inbound messages not yet settled stay unacked, so the broker redelivers them.
    /// Idempotent; the destructor calls it.
    void stop(duration drain = std::chrono::seconds(2)) {
        std::vector<subscription> forwards;
        {
            std::lock_guard lock(mutex_);
            if (stopped_) return;
            stopped_ = true;
            forwards.swap(forwards_);
        }
        forwards.clear();  // unsubscribes: waits for forward handlers running now
        (void)flush(drain);
        stopping_.store(true, std::memory_order_release);
        {
            std::lock_guard lock(stop_mutex_);
            stop_cv_.notify_all();
        }
        core_->kick();
        {
            std::lock_guard lock(core_->wake_mutex);
            if (core_->wake_target) core_->wake_target->wake();
        }
        if (thread_.joinable()) thread_.join();
        {
            std::lock_guard lock(core_->wake_mutex);
            core_->wake_target = nullptr;
        }
        {
            std::lock_guard lock(core_->settle_mutex);
            core_->accepting_settles = false;
            core_->settled.clear();
            core_->settled_count.store(0, std::memory_order_relaxed);
        }
        core_->settled_here.clear();  // the I/O thread is gone
        transport_->close();
        core_->connected.store(false, std::memory_order_release);
        // Hand back what could not be confirmed: out of the in-flight count first (a flush
        // returns once unsettled reaches zero, and stats then show nothing in flight).
        std::vector<detail::outbound_item> unconfirmed;
        unconfirmed.reserve(in_flight_.size());
        in_flight_.for_each([&](std::uint64_t, detail::in_flight_window::item& item) { unconfirmed.push_back(std::move(item.msg)); });
        in_flight_.clear();
        core_->in_flight.store(0, std::memory_order_release);
        for (const auto& msg : unconfirmed)
            core_->dead_letter_accepted(msg, dead_letter_reason::shutdown,
                                        "[courier.bridge.shutdown] bridge '" + core_->options.name + "' stopped before the broker confirmed it");
        core_->outbox.close();
        detail::outbound_item w;
        while (core_->outbox.try_pop(w) == queue_status::ok)
            core_->dead_letter_accepted(w, dead_letter_reason::shutdown,
                                   "[courier.bridge.shutdown] bridge '" + core_->options.name + "' stopped before sending it");
    }

private:
    struct route_state {
        ingest_spec spec;
        bool subscribed = false;
    };

    static void enqueue(detail::bridge_core& core, detail::outbound_item w) {
        core.unsettled.fetch_add(1, std::memory_order_relaxed);
        queue_status st;
        switch (core.options.outbox_overflow) {
        case overflow_policy::block:
            st = core.outbox.push_for(std::move(w), std::chrono::duration_cast<std::chrono::nanoseconds>(core.options.block_timeout));
            break;
        default: st = core.outbox.try_push(std::move(w)); break;
        }
        if (st == queue_status::ok) {
            core.forwarded.fetch_add(1, std::memory_order_relaxed);
            core.kick();
            return;
        }
        if (st == queue_status::dropped) {
            // drop_newest: on_drop counted and dead-lettered it.
            return;
        }
        core.dropped.fetch_add(1, std::memory_order_relaxed);
        core.dead_letter_accepted(w, st == queue_status::closed ? dead_letter_reason::shutdown : dead_letter_reason::overflow,
                             st == queue_status::closed
                                 ? "[courier.bridge.stopped] bridge '" + core.options.name + "' is stopped"
                                 : "[courier.bridge.outbox_full] the outbox of bridge '" + core.options.name + "' was full (" +
                                       std::string(to_string(core.options.outbox_overflow)) + ")");
    }

    // ------------------------------------------------------------------ the I/O thread

    void run() {
        std::uint32_t failures = 0;
        bool ever_connected = false;
        // Deliveries of one poll, handled after it returns. The slots are kept from poll to poll
        // and swapped with what the transport hands over, so their buffers go back to it.
        std::vector<inbound_message> inbound;
        std::size_t inbound_count = 0;
        while (!stopping_.load(std::memory_order_acquire)) {
            if (!transport_->connected()) {
                core_->connected.store(false, std::memory_order_release);
                if (failures > 0) {
                    std::unique_lock lock(stop_mutex_);
                    stop_cv_.wait_for(lock, core_->options.reconnect.delay_after(failures),
                                      [&] { return stopping_.load(std::memory_order_acquire); });
                    if (stopping_.load(std::memory_order_acquire)) break;
                }
                auto r = transport_->connect(core_->options.connect_timeout);
                if (!r) {
                    ++failures;
                    note_error(r.error());
                    continue;
                }
                if (ever_connected) core_->reconnects.fetch_add(1, std::memory_order_relaxed);
                ever_connected = true;
                failures = 0;
                in_flight_.for_each([](std::uint64_t, detail::in_flight_window::item& item) { item.sent = false; });  // re-published below, in order
                unsent_ = in_flight_.size();
                {
                    std::lock_guard lock(mutex_);
                    last_error_.clear();
                }
                core_->connected.store(true, std::memory_order_release);
            }
            if (!subscribe_routes() || !send_outbound() || !send_acks()) {
                failures = 1;
                continue;
            }
            // Park in poll unless work is waiting (the publishers' kick pairs with this store).
            core_->sleeping.store(true, std::memory_order_seq_cst);
            const bool busy = has_outbound_work() || has_settled() || stopping_.load(std::memory_order_acquire);
            inbound_count = 0;
            auto r = transport_->poll(
                busy ? duration::zero() : core_->options.poll_interval, core_->options.poll_batch,
                [this](publish_confirm c) { on_confirm(std::move(c)); },
                [&](inbound_message&& m) {
                    if (inbound_count == inbound.size()) inbound.emplace_back();
                    swap(inbound[inbound_count++], m);  // inbound_message's own: strings swapped, not moved thrice
                });
            core_->sleeping.store(false, std::memory_order_relaxed);
            settle_confirmed();
            // Deliveries are handled after poll returns, so acks never re-enter the transport.
            constexpr std::size_t ahead = detail::dedup_window::lookahead;
            for (std::size_t k = 0; k < ahead && k < inbound_count; ++k) prefetch_dedup(inbound[k], k);
            for (std::size_t i = 0; i < inbound_count; ++i) {
                if (i + ahead < inbound_count) prefetch_dedup(inbound[i + ahead], ahead);
                on_message(inbound[i]);
            }
            if (!r) {
                lost(r.error());
                failures = 1;
            }
        }
        // Last acks for what settled before the stop (best effort: unacked ones come back).
        if (transport_->connected()) (void)send_acks();
    }

    void note_error(const error& e) {
        std::lock_guard lock(mutex_);
        last_error_ = e.message;
    }

    void lost(const error& e) {
        note_error(e);
        transport_->close();
        core_->connected.store(false, std::memory_order_release);
        std::lock_guard lock(mutex_);
        for (auto& r : routes_) r->subscribed = false;
        subscribed_.store(0, std::memory_order_release);
    }

    bool subscribe_routes() {
        std::vector<route_state*> todo;
        {
            std::lock_guard lock(mutex_);
            for (auto& r : routes_)
                if (!r->subscribed) todo.push_back(r.get());
        }
        for (auto* r : todo) {
            auto ok = transport_->subscribe(r->spec);
            if (!ok) {
                lost(ok.error());
                return false;
            }
            std::lock_guard lock(mutex_);
            r->subscribed = true;
            subscribed_.fetch_add(1, std::memory_order_acq_rel);
        }
        return true;
    }

    bool has_outbound_work() const {
        if (in_flight_.size() < core_->options.max_in_flight && core_->outbox.size_approx() != 0) return true;
        return unsent_ != 0;
    }
    bool has_settled() const {
        return !core_->settled_here.empty() || core_->settled_count.load(std::memory_order_seq_cst) != 0;
    }

    // Sends what waits: first the in-flight messages not sent on this connection (in sequence
    // order: a reconnect re-publishes them before anything newer), then new ones from the outbox.
    bool send_outbound() {
        if (unsent_ != 0) {
            bool ok = true;
            in_flight_.for_each([&](std::uint64_t seq, detail::in_flight_window::item& item) {
                if (ok && unsent_ != 0 && !item.sent) ok = publish(seq, item);
            });
            if (!ok) return false;
        }
        bool ok = true;
        while (ok && in_flight_.size() < core_->options.max_in_flight && core_->outbox.try_pop(popped_) == queue_status::ok) {
            const std::uint64_t seq = in_flight_.add(std::move(popped_));
            ++unsent_;
            ok = publish(seq, *in_flight_.find(seq));
        }
        core_->in_flight.store(in_flight_.size(), std::memory_order_release);
        return ok;
    }

    // Publishes one in-flight message; false when the connection is lost (it stays in flight).
    bool publish(std::uint64_t seq, detail::in_flight_window::item& item) {
        detail::lend_wire(wire_, item.msg);
        auto r = transport_->publish(seq, wire_);
        detail::release_wire(wire_, item.msg);
        if (r) {
            item.sent = true;
            --unsent_;
            return true;
        }
        if (r.error() == errc::limit_exceeded || r.error() == errc::invalid_argument) {
            // The broker will never take this one: hand it to the dead letters, keep going.
            core_->publish_errors.fetch_add(1, std::memory_order_relaxed);
            --unsent_;
            dead_letter_in_flight(seq, r.error().message);
            return true;
        }
        lost(r.error());
        return false;
    }

    void on_confirm(publish_confirm c) {
        auto* it = in_flight_.find(c.sequence);
        if (it == nullptr) return;  // a late confirm of a message confirmed already
        if (c.outcome) {
            if (!it->sent) --unsent_;
            core_->recycle_payload(std::move(it->msg.payload));
            in_flight_.erase(c.sequence);
            ++confirmed_here_;  // counted once per poll by settle_confirmed
            return;
        }
        core_->publish_errors.fetch_add(1, std::memory_order_relaxed);
        if (++it->attempts >= core_->options.max_publish_attempts) {
            if (!it->sent) --unsent_;
            dead_letter_in_flight(c.sequence, "[courier.bridge.publish_refused] the broker refused it " +
                                                  std::to_string(it->attempts) + " times; last: " + c.outcome.error().message);
            return;
        }
        if (it->sent) ++unsent_;
        it->sent = false;  // sent again by the next send_outbound
    }

    // Hands an in-flight message the broker will never take to the dead letters. Out of the
    // window and the counts first (with this poll's confirms so far): once unsettled drops, a
    // flush may return, and stats must not show it in flight then.
    void dead_letter_in_flight(std::uint64_t seq, std::string reason) {
        const detail::outbound_item msg = std::move(in_flight_.find(seq)->msg);
        in_flight_.erase(seq);
        settle_confirmed();
        core_->dead_letter_accepted(msg, dead_letter_reason::non_retryable, std::move(reason));
    }

    // Publishes the confirms of one poll: one update of the shared counters per poll, not per
    // message (flush sees them when poll returns; a poll that blocks returns on a kick).
    void settle_confirmed() {
        core_->in_flight.store(in_flight_.size(), std::memory_order_release);
        if (confirmed_here_ == 0) return;
        core_->confirmed.fetch_add(confirmed_here_, std::memory_order_relaxed);
        core_->unsettled.fetch_sub(confirmed_here_, std::memory_order_release);
        confirmed_here_ = 0;
    }

    // The I/O thread's copy of the route list, refreshed when ingest() added one: routes are
    // append only and never move, and a spec does not change, so the per-message lookups take
    // no lock.
    const std::vector<const route_state*>& io_routes() {
        if (io_routes_.size() != route_count_.load(std::memory_order_acquire)) {
            std::lock_guard lock(mutex_);
            io_routes_.clear();
            for (auto& r : routes_) io_routes_.push_back(r.get());
        }
        return io_routes_;
    }

    std::size_t route_of(const inbound_message& m) {
        const auto& routes = io_routes();
        for (std::size_t i = 0; i < routes.size(); ++i)
            if (routes[i]->spec.topic == m.message.topic) return i;
        for (std::size_t i = 0; i < routes.size(); ++i)
            if (detail::has_wildcard(routes[i]->spec.topic)) return i;
        return 0;
    }

    const ingest_spec& spec_of(std::size_t route) { return io_routes()[route]->spec; }

    // From the id the broker's headers carry (where they do), before the payload is decoded;
    // `ahead`: inserts before this one's.
    void prefetch_dedup(const inbound_message& m, std::size_t ahead) const noexcept {
        if (uuid id; uuid::parse_quietly(m.message.event_id, id)) dedup_.prefetch(id, ahead);
    }

    void on_message(inbound_message& m) {
        const std::size_t route = route_of(m);
        const ingest_spec& spec = spec_of(route);
        // The data stays text when it is in the canonical form: a typed subscriber reads the
        // event from it, and the document is made only if someone asks for one. (`data_text`
        // views m's payload, which outlives the publish below.)
        std::string_view data_text;
        auto env = detail::from_wire(m.message, core_->options.limits, &data_text);
        if (!env) {
            dead_letter_in(m, spec, env.error().message);
            core_->settle(route, std::move(m.tag));
            return;
        }
        const uuid id = env->event_id;
        const bool fresh = dedup_.insert(id);
        if (auto* first = in_progress_.find(id)) {
            // The first copy is still with the local handlers (even if the window has let its id
            // go since): ack this one with it, so a crash before they finish still leaves the
            // message with the broker.
            core_->duplicates.fetch_add(1, std::memory_order_relaxed);
            first->duplicates.push_back(detail::settled_delivery{route, std::move(m.tag), {}});
            return;
        }
        if (!fresh) {
            core_->duplicates.fetch_add(1, std::memory_order_relaxed);
            core_->settle(route, std::move(m.tag));
            return;
        }
        // The delivery waits here until the bus settles the event (the callback carries only the id).
        {
            auto* entry = in_progress_.try_emplace(id).first;
            entry->route = route;
            entry->tag = std::move(m.tag);
            reuse_tag_id(m.tag);
        }
        const detail::ingesting_event previous = std::exchange(detail::ingesting(), detail::ingesting_event{core_.get(), id});
        result<publish_result> r = courier::detail::envelope_text_publisher::publish(
            bus_, std::move(*env), data_text, &detail::parse_data_text, courier::detail::settle_hook{&settled_by_bus, core_});
        detail::ingesting() = previous;
        if (!r || r->closed) {
            // Not taken by the bus (the callback will not run): the delivery is ours again.
            if (auto* entry = in_progress_.find(id)) m.tag = std::move(entry->tag);
            in_progress_.erase(id);
        }
        if (!r) {
            // Bytes that decode but do not make a bus event (a bad name, a version mismatch).
            dead_letter_in(m, spec, r.error().message);
            core_->settle(route, std::move(m.tag));
            return;
        }
        if (r->closed) {
            // The local bus is shut down: give the message back for another consumer.
            dedup_.erase(id);
            (void)transport_->nack(spec, m.tag, true);
            return;
        }
        core_->ingested.fetch_add(1, std::memory_order_relaxed);
    }

    // The bus settled an ingested event (on the thread that handled it last).
    static void settled_by_bus(void* core, const uuid& event_id) noexcept {
        try {
            static_cast<detail::bridge_core*>(core)->settle(0, {}, event_id);
        } catch (...) {
            // Not recorded (out of memory): never acked, so the broker redelivers it.
        }
    }

    // Gives a delivery whose tag moved on the buffer of an acked one's id: the transport writes
    // the next delivery's id into it (an id longer than a short string, such as a Kafka topic
    // or a NATS ack subject, otherwise costs an allocation and a free per message).
    void reuse_tag_id(delivery_tag& moved_from) {
        if (spare_tag_ids_.empty()) return;
        moved_from.id = std::move(spare_tag_ids_.back());
        moved_from.id.clear();
        spare_tag_ids_.pop_back();
    }

    void dead_letter_in(const inbound_message& m, const ingest_spec& spec, std::string reason) {
        bus_.dead_letters().add(detail::undecodable_record(m, caps_.broker, "bridge:" + core_->options.name + ":ingest:" + spec.topic,
                                                           std::move(reason), bus_.clock().now()));
        core_->dead_lettered.fetch_add(1, std::memory_order_relaxed);
    }

    bool send_acks() {
        // A member, so its capacity (and that of the vectors it is swapped with) is kept.
        auto& batch = acks_;
        batch.clear();
        batch.swap(core_->settled_here);
        if (core_->settled_count.load(std::memory_order_acquire) != 0) {
            std::lock_guard lock(core_->settle_mutex);
            batch.insert(batch.end(), std::make_move_iterator(core_->settled.begin()), std::make_move_iterator(core_->settled.end()));
            core_->settled.clear();
            core_->settled_count.store(0, std::memory_order_relaxed);
        }
        // A settled event: its delivery, and the copies that arrived while it was being handled.
        const std::size_t direct = batch.size();
        for (std::size_t i = 0; i < direct; ++i) {
            if (batch[i].event_id.is_nil()) continue;
            auto* entry = in_progress_.find(batch[i].event_id);
            if (entry == nullptr) {
                batch[i].route = no_route;  // not ours any more (handed back): nothing to ack
                continue;
            }
            batch[i].route = entry->route;
            batch[i].tag = std::move(entry->tag);
            for (auto& d : entry->duplicates) batch.push_back(std::move(d));
            in_progress_.erase(batch[i].event_id);
        }
        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (batch[i].route == no_route) continue;
            auto r = transport_->ack(spec_of(batch[i].route), batch[i].tag);
            if (!r) {
                // Not acked: the broker redelivers these, and dedup drops the copies we handled.
                lost(r.error());
                return false;
            }
            core_->acked.fetch_add(1, std::memory_order_relaxed);
            if (spare_tag_ids_.size() < core_->options.poll_batch) spare_tag_ids_.push_back(std::move(batch[i].tag.id));
        }
        return true;
    }

    event_bus& bus_;
    std::unique_ptr<transport> transport_;
    const capabilities caps_;
    const std::string default_topic_;
    std::shared_ptr<detail::bridge_core> core_;

    mutable std::mutex mutex_;
    std::vector<subscription> forwards_;                  // guarded by mutex_
    std::vector<std::unique_ptr<route_state>> routes_;   // guarded by mutex_, append only
    std::atomic<std::size_t> route_count_{0};             // routes_.size(), read without the lock
    std::vector<const route_state*> io_routes_;           // the I/O thread's only
    std::vector<detail::settled_delivery> acks_;          // the I/O thread's only (send_acks)
    std::vector<std::string> spare_tag_ids_;              // the I/O thread's only (reuse_tag_id)
    std::atomic<std::size_t> subscribed_{0};
    std::string last_error_;                              // guarded by mutex_
    bool stopped_ = false;                                // guarded by mutex_

    static constexpr std::size_t no_route = static_cast<std::size_t>(-1);

    // The I/O thread's own.
    detail::in_flight_window in_flight_;  // sent, not confirmed, by sequence number
    std::size_t unsent_ = 0;              // in-flight messages not sent on the current connection
    std::size_t confirmed_here_ = 0;      // confirmed since the last settle_confirmed
    detail::outbound_item popped_;        // reused: the outbox's next item
    wire_message wire_;                   // reused: what the transport sees of an in-flight item
    detail::dedup_window dedup_;
    // Ingested events the local handlers have not finished, with the duplicates that arrived meanwhile.
    detail::uuid_map<detail::in_progress_event> in_progress_;

    std::atomic<bool> stopping_{false};
    std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    std::thread thread_;
};

}  // namespace bridge
COURIER_END_NAMESPACE
