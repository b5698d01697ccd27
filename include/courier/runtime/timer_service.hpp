// Timers on courier's clock. With the system clock one Asio steady_timer is armed for the
// earliest deadline; with a manual_clock the timers fire when the test advances the clock,
// so retries, backoff, TTLs and saga deadlines are tested without sleeping.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Identifies a scheduled timer, for `timer_service::cancel`. Never 0.
using timer_id = std::uint64_t;

/// Runs callbacks on an executor when the clock reaches their due time.
///
/// Thread safety: all members may be called from any thread, callbacks included.
/// Ordering: timers due at the same instant fire in the order they were scheduled.
/// Blocking: never; callbacks are posted to the executor, never run inside `schedule` or
/// inside `manual_clock::advance`.
class timer_service {
public:
    using executor_type = boost::asio::io_context::executor_type;

    timer_service(executor_type ex, courier::clock& clk) : impl_(std::make_shared<impl>(ex, clk)) {
        if (clk.is_manual()) {
            // The observer holds only a weak reference: the clock may outlive this service.
            std::weak_ptr<impl> weak = impl_;
            observer_ = static_cast<manual_clock&>(clk).on_advance([weak] {
                if (auto self = weak.lock()) self->fire_due();
            });
        }
    }
    ~timer_service() {
        if (impl_->clock_.is_manual()) static_cast<manual_clock&>(impl_->clock_).remove_observer(observer_);
        cancel_all();
    }
    timer_service(const timer_service&) = delete;
    timer_service& operator=(const timer_service&) = delete;

    /// Runs `fn` on the executor once the clock reaches `due` (at once if it already has).
    timer_id schedule_at(time_point due, std::function<void()> fn) { return impl_->schedule(due, std::move(fn)); }
    /// Runs `fn` on the executor after `delay` on the clock.
    timer_id schedule_after(duration delay, std::function<void()> fn) {
        return impl_->schedule(impl_->clock_.now() + delay, std::move(fn));
    }
    /// Cancels a timer that has not fired; returns false if it already fired or never existed.
    bool cancel(timer_id id) { return impl_->cancel(id); }
    /// Cancels every pending timer; returns how many were cancelled.
    std::size_t cancel_all() { return impl_->cancel_all(); }
    /// Timers scheduled and not yet fired.
    std::size_t pending() const {
        std::lock_guard lock(impl_->mutex_);
        return impl_->due_.size();
    }
    /// The earliest pending due time, if any (tests use it to advance exactly there).
    std::optional<time_point> next_due() const {
        std::lock_guard lock(impl_->mutex_);
        if (impl_->due_.empty()) return std::nullopt;
        return impl_->due_.begin()->first.first;
    }
    courier::clock& clock() const noexcept { return impl_->clock_; }

private:
    struct impl : std::enable_shared_from_this<impl> {
        impl(executor_type ex, courier::clock& clk) : ex_(ex), clock_(clk), timer_(ex) {}

        timer_id schedule(time_point due, std::function<void()> fn) {
            bool rearm = false;
            timer_id id;
            {
                std::lock_guard lock(mutex_);
                id = ++next_id_;
                auto key = std::make_pair(due, id);
                rearm = due_.empty() || key < due_.begin()->first;
                due_.emplace(key, std::move(fn));
                by_id_.emplace(id, due);
            }
            if (clock_.is_manual()) {
                if (due <= clock_.now()) fire_due();
            } else if (rearm) {
                arm();
            }
            return id;
        }

        bool cancel(timer_id id) {
            std::lock_guard lock(mutex_);
            auto it = by_id_.find(id);
            if (it == by_id_.end()) return false;
            due_.erase(std::make_pair(it->second, id));
            by_id_.erase(it);
            return true;
        }

        std::size_t cancel_all() {
            std::lock_guard lock(mutex_);
            auto n = due_.size();
            due_.clear();
            by_id_.clear();
            return n;
        }

        // Moves every due callback to the executor, in due order.
        void fire_due() {
            std::vector<std::function<void()>> ready;
            {
                std::lock_guard lock(mutex_);
                const auto now = clock_.now();
                while (!due_.empty() && due_.begin()->first.first <= now) {
                    auto node = due_.extract(due_.begin());
                    by_id_.erase(node.key().second);
                    ready.push_back(std::move(node.mapped()));
                }
            }
            for (auto& fn : ready) boost::asio::post(ex_, std::move(fn));
        }

        // Real clock: one steady_timer for the earliest deadline. Wall-clock deadlines are
        // converted to a relative wait, then re-checked against the clock when it fires.
        void arm() {
            time_point earliest;
            {
                std::lock_guard lock(mutex_);
                if (due_.empty()) return;
                earliest = due_.begin()->first.first;
            }
            auto wait = earliest - clock_.now();
            if (wait < duration::zero()) wait = duration::zero();
            std::weak_ptr<impl> weak = shared_from_this();
            std::lock_guard lock(timer_mutex_);
            timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(wait));
            timer_.async_wait([weak](const boost::system::error_code& ec) {
                if (ec) return;  // superseded by a re-arm, or shut down
                if (auto self = weak.lock()) {
                    self->fire_due();
                    self->arm();
                }
            });
        }

        executor_type ex_;
        courier::clock& clock_;
        mutable std::mutex mutex_;
        std::map<std::pair<time_point, timer_id>, std::function<void()>> due_;
        std::unordered_map<timer_id, time_point> by_id_;
        timer_id next_id_ = 0;
        std::mutex timer_mutex_;  // steady_timer is not thread-safe
        boost::asio::steady_timer timer_;
    };

    std::shared_ptr<impl> impl_;
    std::uint64_t observer_ = 0;
};

COURIER_END_NAMESPACE
