// How a subscription receives its messages: delivery mode, guarantee, queue bound and
// overflow policy, retry policy, queue group, key function and middleware.
#pragma once

#include <courier/bus/message_context.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/retry_policy.hpp>
#include <courier/queue/queue_status.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Where and how concurrently a handler runs.
enum class delivery_mode : std::uint8_t {
    inline_call,  ///< in the publisher's thread, before publish returns
    pooled,       ///< on the runtime's executor, up to `concurrency` at once, no order
    serial,       ///< on the executor, one at a time, in publish order (per publishing thread)
    keyed,        ///< order kept per key, different keys in parallel (Kafka partitions)
};

/// What the bus promises about a message that reached the subscription.
enum class delivery_guarantee : std::uint8_t {
    at_most_once,   ///< one attempt; a failure is counted and dead-lettered, never retried
    at_least_once,  ///< retried by `retry`, then dead-lettered with every error
};

constexpr std::string_view to_string(delivery_mode m) noexcept {
    switch (m) {
    case delivery_mode::inline_call: return "inline";
    case delivery_mode::pooled: return "pooled";
    case delivery_mode::serial: return "serial";
    case delivery_mode::keyed: return "keyed";
    }
    return "unknown";
}
constexpr std::string_view to_string(delivery_guarantee g) noexcept {
    return g == delivery_guarantee::at_most_once ? "at_most_once" : "at_least_once";
}

/// Wraps one handler call: call `next()` to continue the chain, or return without calling it
/// to skip the handler (the message then counts as delivered). Throwing fails the attempt.
using handle_middleware = std::function<void(const message_context&, const std::function<void()>& next)>;

/// Options of one subscription. Every field has a safe default.
struct subscription_options {
    /// Name in metrics, dead letters and the topology report; unique per bus. Default: made up
    /// from the pattern and a counter.
    std::string name;
    delivery_mode mode = delivery_mode::pooled;
    delivery_guarantee guarantee = delivery_guarantee::at_least_once;
    /// Retries for at_least_once (jittered exponential backoff by default).
    retry_policy retry{};
    /// Competing consumers: of all subscriptions in one group that match an event, exactly one
    /// receives it (round robin). Empty: the subscription gets every matching event (fan-out).
    std::string group;
    /// pooled: handlers of this subscription running at once (0: one per runtime thread).
    std::uint32_t concurrency = 0;
    /// keyed: number of ordered lanes (keys are hashed onto them).
    std::uint32_t lanes = 16;
    /// keyed: the key of a message; default: the key given at publish.
    std::function<std::uint64_t(const message_context&)> key;
    /// Bound of the subscription's queue (each lane's, for keyed); 0 means unbounded on purpose.
    std::size_t capacity = 65536;
    /// What a publish does when the queue is full. Dropped messages are counted and dead-lettered.
    overflow_policy overflow = overflow_policy::block;
    /// How long `block` waits for room before the message is dead-lettered as an overflow.
    duration block_timeout = std::chrono::seconds(1);
    /// Messages a drain task handles before it yields the thread (fairness between subscriptions).
    std::uint32_t batch = 64;
    /// Pause instructions a drain task spins on an empty queue before it gives the thread
    /// back (~30 ns each): keeps a busy lane hot without an Asio post and a thread wake-up per
    /// message; 0 disables. Costs at most ~idle_spin * 30 ns of a worker after traffic stops.
    std::uint32_t idle_spin = 512;
    /// Pause instructions a drain task spins before its next pop when messages keep arriving
    /// back to back but a pop finds less than a full batch: lets a batch build up instead of
    /// trading the queue's cache lines between the cores for every message. A message that
    /// follows an empty pop (request-reply, a paced stream) does not wait; one that lands just
    /// between two pops may wait this long once (~1.5 us at the default); 0 disables.
    std::uint32_t coalesce_spin = 64;
    /// Record the handler latency of every n-th message (0 disables; 1 records all).
    std::uint32_t latency_sample_every = 64;
    /// Middleware around this subscription's handler (outermost first), after the bus-wide ones.
    std::vector<handle_middleware> middleware;
};

/// A key function for `subscription_options::key` from a typed field or function:
/// `opts.key = courier::key_by<order_placed>([](const order_placed& e) { return e.customer; });`
template <class T, class F>
std::function<std::uint64_t(const message_context&)> key_by(F f) {
    return [f = std::move(f)](const message_context& ctx) -> std::uint64_t {
        using key_type = std::decay_t<std::invoke_result_t<F&, const T&>>;
        if (auto p = ctx.get_if<T>()) return std::hash<key_type>{}(std::invoke(f, *p));
        return std::hash<key_type>{}(std::invoke(f, ctx.as<T>()));
    };
}

COURIER_END_NAMESPACE
