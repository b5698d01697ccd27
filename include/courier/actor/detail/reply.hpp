// The pending reply of one `ask`: completed exactly once, by the actor's answer, by the timeout
// timer, or with an error when the message can never be handled. The completion handler (any
// Asio completion token) is posted to its associated executor, never run inside complete().
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/result.hpp>
#include <courier/runtime/timer_service.hpp>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <memory>
#include <utility>

COURIER_BEGIN_NAMESPACE
namespace detail {

/// Completion side of an ask, independent of the handler type.
///
/// Thread safety: complete() may race from the actor's thread and the timer's; exactly one
/// call wins (returns true) and delivers.
template <class R>
class reply_base {
public:
    virtual ~reply_base() = default;

    /// Delivers `r` unless the ask was completed already; returns whether this call did.
    bool complete(result<R> r) {
        return complete(std::move(r), [] {});
    }

    /// As complete(r), and a winning call runs `before_deliver` first: what it counts is
    /// visible to anyone the completion handler wakes.
    template <class F>
    bool complete(result<R> r, F&& before_deliver) {
        if (done_.exchange(true, std::memory_order_acq_rel)) return false;
        std::forward<F>(before_deliver)();
        if (timers_) {
            // The timer may not be stored yet if the answer raced with ask's set-up; it then
            // fires later into an already completed reply, which is harmless.
            if (const timer_id id = timer_.load(std::memory_order_acquire)) timers_->cancel(id);
        }
        deliver(std::move(r));
        return true;
    }
    bool done() const noexcept { return done_.load(std::memory_order_acquire); }

    /// Set before the ask is sent (so it needs no synchronisation).
    void use_timers(timer_service* t) noexcept { timers_ = t; }
    void set_timer(timer_id id) noexcept { timer_.store(id, std::memory_order_release); }

protected:
    virtual void deliver(result<R>&& r) = 0;

private:
    std::atomic<bool> done_{false};
    timer_service* timers_ = nullptr;
    std::atomic<timer_id> timer_{0};
};

/// A reply bound to one completion handler. Keeps the runtime's io_context busy (outstanding
/// work) until it completes, as an Asio asynchronous operation must.
template <class R, class Handler>
class reply_op final : public reply_base<R> {
public:
    using io_executor = boost::asio::io_context::executor_type;

    reply_op(Handler&& h, io_executor ex) : handler_(std::move(h)), work_(ex) {}

private:
    void deliver(result<R>&& r) override {
        auto ex = boost::asio::get_associated_executor(handler_, work_.get_executor());
        boost::asio::post(ex, [h = std::move(handler_), r = std::move(r)]() mutable { std::move(h)(std::move(r)); });
        // The work ends here, not in the posted handler: a handler that runs elsewhere (e.g.
        // use_future's, on Asio's system executor) may wake a thread that destroys the runtime
        // before it returns. A handler posted to the runtime's own executor keeps it busy itself.
        work_.reset();
    }

    Handler handler_;
    boost::asio::executor_work_guard<io_executor> work_;
};

}  // namespace detail
COURIER_END_NAMESPACE
