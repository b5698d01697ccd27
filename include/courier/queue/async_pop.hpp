// Asio integration for courier's queues: async_pop(queue, token) for mpmc_queue and
// bounded_queue, and async_push(bounded_queue, item, token), with any Asio completion token
// (callback, use_future, use_awaitable). The only queue header that includes Asio; the
// queues themselves see a type-erased waiter.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/queue/bounded_queue.hpp>
#include <courier/queue/detail/wait_list.hpp>
#include <courier/queue/mpmc_queue.hpp>
#include <courier/queue/queue_status.hpp>

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/version.hpp>

#if BOOST_VERSION >= 107700
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/cancellation_type.hpp>
#define COURIER_ASIO_HAS_CANCELLATION 1
#else
#define COURIER_ASIO_HAS_CANCELLATION 0
#endif

#include <atomic>
#include <memory>
#include <system_error>
#include <type_traits>
#include <utility>

COURIER_BEGIN_NAMESPACE

namespace detail {

// The queues befriend this struct; it is the Asio layer's only door into them.
struct queue_access {
    template <class Queue>
    static wait_list& pop_waiters(Queue& q) noexcept { return q.pop_waiters_; }
    template <class Queue>
    static bool ready_for_pop(const Queue& q) noexcept { return q.ready_for_pop(); }
    template <class T>
    static wait_list& push_waiters(bounded_queue<T>& q) noexcept { return q.room_waiters_; }
    template <class T>
    static bool ready_for_push(const bounded_queue<T>& q) noexcept { return q.ready_for_push(); }
    /// One push attempt for a waiting pusher: never applies the `block` policy's "full" count
    /// (waiting is not a rejection); other policies behave as try_push.
    template <class T>
    static queue_status try_push_once(bounded_queue<T>& q, T& v) {
        if (q.policy_ != overflow_policy::block) return q.try_push(std::move(v));
        if (q.closed_.load(std::memory_order_relaxed)) return queue_status::closed;
        return q.enqueue(v) ? queue_status::ok : queue_status::full;
    }
    /// Threads and async operations parked on a queue's pops (for tests and diagnostics).
    template <class Queue>
    static std::size_t pop_waiter_count(Queue& q) noexcept { return q.pop_waiters_.size(); }
    /// Threads and async operations parked in a bounded_queue's blocking pushes.
    template <class T>
    static std::size_t push_waiter_count(bounded_queue<T>& q) noexcept { return q.room_waiters_.size(); }
};

/// What async_pop and async_push share: a waiter node that owns an Asio completion handler,
/// its memory (from the handler's associated allocator), the outstanding work on its executor
/// and its cancellation slot. `Derived` provides `attempt()` (run on the handler's executor)
/// and `cancelled_value()` (the T to complete with on cancellation).
///
/// Life cycle: the initiation posts `attempt` to the handler's executor, so the initiating
/// call never completes inline. `attempt` tries the queue operation; it completes, or parks
/// the node in one of the queue's wait lists. A notifier (push, pop or close()) unlinks the
/// node and calls on_wake, which posts `attempt` again. The queue operation itself runs on
/// the handler's executor, so no item is taken out of a queue just to sit in an executor's
/// backlog (or be destroyed with it).
template <class Derived, class Handler, class Value>
class async_queue_op : public waiter_node {
public:
    using executor_type = boost::asio::associated_executor_t<Handler>;
    using allocator_type = typename std::allocator_traits<
        boost::asio::associated_allocator_t<Handler>>::template rebind_alloc<Derived>;

    template <class... Args>
    static void start(Handler&& handler, Args&&... args) {
        allocator_type alloc(boost::asio::get_associated_allocator(handler));
        Derived* op = std::allocator_traits<allocator_type>::allocate(alloc, 1);
        try {
            std::allocator_traits<allocator_type>::construct(alloc, op, std::move(handler), std::forward<Args>(args)...);
        } catch (...) {
            std::allocator_traits<allocator_type>::deallocate(alloc, op, 1);
            throw;
        }
        // Connect before posting: once posted, the attempt may run (and complete) on another
        // thread at any moment.
        op->connect_cancellation();
        try {
            op->post_attempt();
        } catch (...) {  // nothing was started: free the operation and report the failure
            op->disconnect_cancellation();
            std::allocator_traits<allocator_type>::destroy(alloc, op);
            std::allocator_traits<allocator_type>::deallocate(alloc, op, 1);
            throw;
        }
    }

protected:
    explicit async_queue_op(Handler&& handler)
        : handler_(std::move(handler)),
          // A pending operation is outstanding work: io_context::run() keeps running for it.
          work_(boost::asio::get_associated_executor(handler_)) {
        on_wake_ = &async_queue_op::wake;
    }

    bool cancel_requested() const noexcept { return cancel_requested_.load(std::memory_order_acquire); }

    void complete(std::error_code ec, Value v) {
        disconnect_cancellation();
        // Free the operation before the upcall, so the handler can start the next operation
        // and reuse the memory (Asio's allocation rule); the work guard outlives the call.
        Handler handler(std::move(handler_));
        auto work = std::move(work_);
        allocator_type alloc(boost::asio::get_associated_allocator(handler));
        Derived* self = static_cast<Derived*>(this);
        std::allocator_traits<allocator_type>::destroy(alloc, self);
        std::allocator_traits<allocator_type>::deallocate(alloc, self, 1);
        std::move(handler)(ec, std::move(v));
    }

    // Parks on `waiters` unless `ready()` (or a cancellation) says to try again now. True when
    // parked: from then on a notifier or a canceller owns *this and the caller must return.
    template <class Ready>
    bool park(wait_list& waiters, Ready ready) {
        waiters_ = &waiters;
        // The re-check also watches cancel_requested_, so a cancellation that raced with
        // arming (when remove() cannot take the node yet) is not lost.
        return waiters.arm(*this, [&] { return cancel_requested_.load(std::memory_order_relaxed) || ready(); });
    }

private:
    static void wake(waiter_node& node) noexcept {
        // noexcept: an allocation failure while posting has no caller to report to.
        static_cast<async_queue_op&>(node).post_attempt();
    }

    void post_attempt() {
        boost::asio::post(work_.get_executor(), [this] { static_cast<Derived*>(this)->attempt(); });
    }

#if COURIER_ASIO_HAS_CANCELLATION
    struct cancel_handler {
        async_queue_op* op;
        void operator()(boost::asio::cancellation_type_t type) {
            if ((type & (boost::asio::cancellation_type::terminal | boost::asio::cancellation_type::partial |
                         boost::asio::cancellation_type::total)) != boost::asio::cancellation_type::none) {
                op->cancel();
            }
        }
    };

    void connect_cancellation() {
        auto slot = boost::asio::get_associated_cancellation_slot(handler_);
        if (slot.is_connected()) slot.template emplace<cancel_handler>(cancel_handler{this});
    }
    void disconnect_cancellation() noexcept {
        auto slot = boost::asio::get_associated_cancellation_slot(handler_);
        if (slot.is_connected()) slot.clear();
    }

    // Runs where the cancellation signal is emitted (Asio requires that to be serialised with
    // the operation's own executor, as for every Asio operation).
    void cancel() {
        cancel_requested_.store(true, std::memory_order_release);
        if (waiters_ != nullptr && waiters_->remove(*this)) {
            // We took the node out of the list ourselves (no notifier signalled it), so there is
            // no wake-up to pass on: complete with `cancelled` on the handler's executor.
            boost::asio::post(work_.get_executor(), [this] {
                complete(make_error_code(errc::cancelled), static_cast<Derived*>(this)->cancelled_value());
            });
        }
        // Otherwise an attempt is pending or running; it sees cancel_requested_.
    }
#else
    void connect_cancellation() noexcept {}
    void disconnect_cancellation() noexcept {}
#endif

    Handler handler_;
    boost::asio::executor_work_guard<executor_type> work_;
    std::atomic<bool> cancel_requested_{false};
    wait_list* waiters_ = nullptr;  // the list the node last parked on (for cancel)
};

/// One pending async_pop.
template <class Queue, class Handler>
class async_pop_op final : public async_queue_op<async_pop_op<Queue, Handler>, Handler, typename Queue::value_type> {
    using base = async_queue_op<async_pop_op<Queue, Handler>, Handler, typename Queue::value_type>;
    friend base;

public:
    using value_type = typename Queue::value_type;

    async_pop_op(Handler&& handler, Queue& q) : base(std::move(handler)), queue_(q) {}

private:
    // Runs on the handler's executor.
    void attempt() {
        for (;;) {
            value_type v{};
            queue_status s = queue_.try_pop(v);
            if (s == queue_status::ok) return this->complete(std::error_code(), std::move(v));
            if (s == queue_status::closed) return this->complete(make_error_code(errc::closed), value_type{});
            if (this->cancel_requested()) return this->complete(make_error_code(errc::cancelled), value_type{});
            if (this->park(queue_access::pop_waiters(queue_), [this] { return queue_access::ready_for_pop(queue_); })) {
                return;
            }
        }
    }
    value_type cancelled_value() { return value_type{}; }

    Queue& queue_;
};

/// One pending async_push: owns the item until it is pushed or handed back.
template <class T, class Handler>
class async_push_op final : public async_queue_op<async_push_op<T, Handler>, Handler, T> {
    using base = async_queue_op<async_push_op<T, Handler>, Handler, T>;
    friend base;

public:
    async_push_op(Handler&& handler, bounded_queue<T>& q, T&& item)
        : base(std::move(handler)), queue_(q), item_(std::move(item)) {}

private:
    // Runs on the handler's executor.
    void attempt() {
        for (;;) {
            switch (queue_access::try_push_once(queue_, item_)) {
            case queue_status::ok: return this->complete(std::error_code(), T{});
            case queue_status::dropped: return this->complete(make_error_code(errc::dropped), T{});
            case queue_status::closed: return this->complete(make_error_code(errc::closed), std::move(item_));
            case queue_status::full:
                if (queue_.policy() != overflow_policy::block) {
                    return this->complete(make_error_code(errc::full), std::move(item_));
                }
                break;
            default: break;
            }
            if (this->cancel_requested()) return this->complete(make_error_code(errc::cancelled), std::move(item_));
            if (this->park(queue_access::push_waiters(queue_), [this] { return queue_access::ready_for_push(queue_); })) {
                return;
            }
        }
    }
    T cancelled_value() { return std::move(item_); }

    bounded_queue<T>& queue_;
    T item_;
};

struct initiate_async_pop {
    template <class Handler, class Queue>
    void operator()(Handler&& handler, Queue* q) const {
        using handler_type = std::decay_t<Handler>;
        async_pop_op<Queue, handler_type>::start(handler_type(std::forward<Handler>(handler)), *q);
    }
};

struct initiate_async_push {
    template <class Handler, class T>
    void operator()(Handler&& handler, bounded_queue<T>* q, T item) const {
        using handler_type = std::decay_t<Handler>;
        async_push_op<T, handler_type>::start(handler_type(std::forward<Handler>(handler)), *q, std::move(item));
    }
};

}  // namespace detail

/// Pops one item asynchronously from `q`; completes with `void(std::error_code, T)`.
///
/// Completion: with the item and an empty error code; with errc::closed once the queue is
/// closed and drained; with errc::cancelled after a per-operation cancellation (Boost >= 1.77).
/// On error the T is default-constructed. The handler always runs through its associated
/// executor, never inside this call. With Boost 1.74's tokens, whose error channel is
/// boost::system::error_code: `use_future` yields std::future<std::tuple<std::error_code, T>>
/// and `co_await async_pop(q, use_awaitable)` yields std::tuple<std::error_code, T>, so a
/// closed queue is a value to test, not an exception.
///
/// Thread safety: may be called from any thread, concurrently with pushes, pops and other
/// async_pops. The queue must outlive the operation. Close the queue (or cancel) and let the
/// executor run before destroying it: a pending async_pop counts as outstanding work, so
/// io_context::run() does not return while one waits.
///
/// Ordering: concurrent waiters are woken in the order they parked; the item is popped on the
/// handler's executor, so a blocked pop() in another thread may get an item first.
///
/// A callback without an associated executor runs on Asio's system executor; bind one with
/// boost::asio::bind_executor to run it on your io_context or strand.
///
/// Example:
/// ```
/// boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> {
///     for (;;) {
///         auto [ec, job] = co_await courier::async_pop(q, boost::asio::use_awaitable);
///         if (ec) co_return;  // errc::closed: drained
///         run(job);
///     }
/// }, boost::asio::detached);
/// ```
template <class T, class Traits, class CompletionToken>
auto async_pop(mpmc_queue<T, Traits>& q, CompletionToken&& token) {
    static_assert(std::is_default_constructible_v<T>, "async_pop completes with a default T on error");
    return boost::asio::async_initiate<CompletionToken, void(std::error_code, T)>(detail::initiate_async_pop{},
                                                                                   token, &q);
}

/// As async_pop for mpmc_queue, for a bounded_queue. Taking an item frees room, which wakes a
/// pusher blocked under overflow_policy::block.
template <class T, class CompletionToken>
auto async_pop(bounded_queue<T>& q, CompletionToken&& token) {
    static_assert(std::is_default_constructible_v<T>, "async_pop completes with a default T on error");
    return boost::asio::async_initiate<CompletionToken, void(std::error_code, T)>(detail::initiate_async_pop{},
                                                                                   token, &q);
}

/// Pushes `item` into `q` asynchronously; completes with `void(std::error_code, T)`.
///
/// Under overflow_policy::block the operation waits for room without blocking a thread.
/// Completion: an empty error code (and a default T) once the item is in the queue;
/// errc::closed, with the item handed back, if the queue is or gets closed first;
/// errc::cancelled, item handed back, after a per-operation cancellation (Boost >= 1.77).
/// Under the other policies it completes after one try_push: errc::full with the item back
/// (fail), errc::dropped (drop_newest; the item went to on_drop), or success (drop_oldest).
/// Nothing is lost silently: an item that was not pushed comes back in the completion.
///
/// Thread safety, executors, outstanding work and Boost 1.74's tokens: as async_pop. Waiting
/// pushers, threads and asynchronous ones, are woken longest-waiting first as room appears.
///
/// Example:
/// ```
/// auto [ec, back] = co_await courier::async_push(q, std::move(frame), boost::asio::use_awaitable);
/// if (ec == courier::errc::closed) spill(std::move(back));
/// ```
template <class T, class CompletionToken>
auto async_push(bounded_queue<T>& q, T item, CompletionToken&& token) {
    static_assert(std::is_default_constructible_v<T>, "async_push completes with a default T on success");
    return boost::asio::async_initiate<CompletionToken, void(std::error_code, T)>(detail::initiate_async_push{},
                                                                                   token, &q, std::move(item));
}

COURIER_END_NAMESPACE
