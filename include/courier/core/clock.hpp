// The injectable clock. Every time-based behaviour in courier (timestamps, retries, backoff,
// TTLs, timeouts, saga timers) reads time from a `clock`, so tests drive it with a
// `manual_clock` and never sleep to see a retry.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/detail/tsc_clock.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Wall-clock instant (UTC), nanosecond resolution on Linux.
using time_point = std::chrono::system_clock::time_point;
/// Time spans used throughout courier.
using duration = std::chrono::system_clock::duration;

/// A source of the current time.
///
/// Thread safety: `now()` may be called from any thread.
class clock {
public:
    virtual ~clock() = default;
    /// The current instant.
    virtual time_point now() const noexcept = 0;
    /// True for clocks that only move when told to (tests).
    virtual bool is_manual() const noexcept { return false; }
};

/// The real time: std::chrono::system_clock, read through the TSC where that is exact (see
/// core/detail/tsc_clock.hpp).
class system_clock final : public clock {
public:
    time_point now() const noexcept override { return detail::fast_system_now(); }

    /// A process-wide instance, for components created without a runtime.
    static system_clock& instance() noexcept {
        static system_clock c;
        return c;
    }
};

/// A clock that moves only when `advance()` or `set()` is called.
///
/// Observers registered with `on_advance` run after each move, in the calling thread; the
/// runtime's timer service uses this to fire the timers that became due.
///
/// Thread safety: all members may be called concurrently.
///
/// Example:
/// ```
/// courier::manual_clock clk;                       // starts at 2025-01-01T00:00:00Z
/// clk.advance(std::chrono::seconds(5));            // fires timers due in the next 5 s
/// ```
class manual_clock final : public clock {
public:
    /// Starts at `start` (default 2025-01-01T00:00:00Z, a fixed instant so test output is stable).
    explicit manual_clock(time_point start = time_point(std::chrono::seconds(1735689600)))
        : now_ns_(start.time_since_epoch().count()) {}

    time_point now() const noexcept override {
        return time_point(duration(now_ns_.load(std::memory_order_acquire)));
    }
    bool is_manual() const noexcept override { return true; }

    /// Moves time forward by `d` (negative spans are ignored) and notifies observers.
    void advance(duration d) {
        if (d.count() > 0) now_ns_.fetch_add(d.count(), std::memory_order_acq_rel);
        notify();
    }
    /// Jumps to `t` if it is later than now, and notifies observers.
    void set(time_point t) {
        auto target = t.time_since_epoch().count();
        auto cur = now_ns_.load(std::memory_order_acquire);
        while (cur < target && !now_ns_.compare_exchange_weak(cur, target, std::memory_order_acq_rel)) {
        }
        notify();
    }

    /// Registers `fn` to run after every move; returns an id for `remove_observer`.
    std::uint64_t on_advance(std::function<void()> fn) {
        std::lock_guard lock(mutex_);
        observers_.push_back({++next_id_, std::move(fn)});
        return next_id_;
    }
    void remove_observer(std::uint64_t id) {
        std::lock_guard lock(mutex_);
        std::erase_if(observers_, [id](const observer& o) { return o.id == id; });
    }

private:
    struct observer {
        std::uint64_t id;
        std::function<void()> fn;
    };
    void notify() {
        std::vector<observer> copy;
        {
            std::lock_guard lock(mutex_);
            copy = observers_;
        }
        for (auto& o : copy) o.fn();
    }

    std::atomic<std::int64_t> now_ns_;
    std::mutex mutex_;
    std::vector<observer> observers_;
    std::uint64_t next_id_ = 0;
};

namespace detail {
/// Time points as integer nanoseconds since the epoch (journals and records store them so).
inline std::int64_t to_ns(time_point t) noexcept { return static_cast<std::int64_t>(t.time_since_epoch().count()); }
inline time_point from_ns(std::int64_t ns) noexcept { return time_point(duration(ns)); }
/// "250 ms", for error messages.
inline std::string millis_text(duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}
}  // namespace detail

COURIER_END_NAMESPACE
