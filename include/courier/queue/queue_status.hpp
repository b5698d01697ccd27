// The statuses and overflow policies shared by every courier queue.
// Kept apart from the queues so that other layers can name them without including one.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>

#include <cstdint>
#include <string_view>

COURIER_BEGIN_NAMESPACE

/// What a queue operation did. Returned by the non-throwing hot-path calls.
enum class [[nodiscard]] queue_status : std::uint8_t {
    ok,       ///< the item was pushed or popped
    empty,    ///< try_pop found nothing (the queue is still open)
    full,     ///< a bounded queue had no room (policy `fail`, or `block` on a non-blocking call)
    closed,   ///< push: the queue is closed. pop: closed and drained, nothing will ever come
    timeout,  ///< a blocking call's deadline passed
    dropped,  ///< the pushed item was dropped by the `drop_newest` policy (and counted)
};

/// What a bounded queue does with a push when it is full.
enum class overflow_policy : std::uint8_t {
    block,        ///< push waits for room (or its deadline); try_push returns `full`
    fail,         ///< push returns `full` at once; the caller keeps the item
    drop_oldest,  ///< the oldest queued item is evicted (counted, handed to on_drop)
    drop_newest,  ///< the pushed item is discarded (counted, handed to on_drop)
};

constexpr std::string_view to_string(queue_status s) noexcept {
    switch (s) {
    case queue_status::ok: return "ok";
    case queue_status::empty: return "empty";
    case queue_status::full: return "full";
    case queue_status::closed: return "closed";
    case queue_status::timeout: return "timeout";
    case queue_status::dropped: return "dropped";
    }
    return "unknown";
}

constexpr std::string_view to_string(overflow_policy p) noexcept {
    switch (p) {
    case overflow_policy::block: return "block";
    case overflow_policy::fail: return "fail";
    case overflow_policy::drop_oldest: return "drop_oldest";
    case overflow_policy::drop_newest: return "drop_newest";
    }
    return "unknown";
}

/// Maps a non-ok status to courier's error codes (for Asio handlers and result<T>).
constexpr errc to_errc(queue_status s) noexcept {
    switch (s) {
    case queue_status::closed: return errc::closed;
    case queue_status::full: return errc::full;
    case queue_status::timeout: return errc::timeout;
    case queue_status::dropped: return errc::dropped;
    default: return errc::invalid_state;
    }
}

COURIER_END_NAMESPACE
