// mpmc_queue<T>: courier's unbounded, lock-free, multi-producer multi-consumer queue, a thin
// layer over moodycamel::ConcurrentQueue that adds close(), blocking pops with deadlines
// (spin, then park) and the hooks async_pop (queue/async_pop.hpp) uses. No Asio in here.
#pragma once

#include <courier/core/config.hpp>
#include <courier/detail/moodycamel.hpp>
#include <courier/queue/detail/fence.hpp>
#include <courier/queue/detail/wait_list.hpp>
#include <courier/queue/queue_status.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

COURIER_BEGIN_NAMESPACE

/// How a producer and a consumer that is about to park agree that no wake-up is lost.
enum class wake_fence : std::uint8_t {
    /// Producers pay only a compiler barrier per push; a consumer that parks runs
    /// membarrier(2) (a few microseconds). Falls back to `symmetric` where membarrier is not
    /// available (not Linux, kernel < 4.14, or forbidden by seccomp). The default.
    asymmetric,
    /// Producers run a seq_cst fence after every push (an mfence on x86): portable, but on the
    /// 2-core machine courier is tuned on it cost up to a third of pinned 1P1C throughput.
    symmetric,
};

/// Tuning for mpmc_queue. Derive and override a field to change it:
/// ```
/// struct big_blocks : courier::mpmc_queue_traits { static constexpr std::size_t block_size = 256; };
/// courier::mpmc_queue<int, big_blocks> q;
/// ```
struct mpmc_queue_traits {
    /// Items per moodycamel block (a power of two). Larger blocks suit few producers pushing
    /// many items; smaller ones suit many producers each holding few items. Passed through as
    /// moodycamel's BLOCK_SIZE.
    static constexpr std::size_t block_size = 32;
    /// moodycamel's EXPLICIT_CONSUMER_CONSUMPTION_QUOTA_BEFORE_ROTATE: items a consumer token
    /// takes from one producer's sub-queue before consumers rotate to the next.
    static constexpr std::uint32_t consumer_rotation_quota = 256;
    /// moodycamel's MAX_SUBQUEUE_SIZE: at most this many items per producer sub-queue (rounded
    /// up to whole blocks); a push beyond it returns `full`. The default is no limit: use
    /// bounded_queue for a real capacity with an overflow policy.
    static constexpr std::size_t max_subqueue_size = static_cast<std::size_t>(-1);
    /// Failed tries a blocking pop makes, one pause apart, before it parks. 512 is about 15-25 us
    /// here (a pause is ~30 ns): long enough to ride out a producer's short stall, short enough
    /// not to starve a producer that shares the core. Set to 0 when consumers outnumber cores.
    static constexpr int spin_count = 512;
    /// The wake-up protocol; see wake_fence.
    static constexpr wake_fence fence = wake_fence::asymmetric;
};

namespace detail {

template <class Traits>
struct moodycamel_traits : moodycamel::ConcurrentQueueDefaultTraits {
    static constexpr std::size_t BLOCK_SIZE = Traits::block_size;
    static constexpr std::uint32_t EXPLICIT_CONSUMER_CONSUMPTION_QUOTA_BEFORE_ROTATE =
        Traits::consumer_rotation_quota;
    static constexpr std::size_t MAX_SUBQUEUE_SIZE = Traits::max_subqueue_size;
};

}  // namespace detail

/// An unbounded, lock-free MPMC queue with close() and blocking pops.
///
/// Ordering: FIFO per producer (items pushed by one thread, or through one producer_token, are
/// popped in push order); no order between producers. This is moodycamel's guarantee.
///
/// Thread safety: every member may be called concurrently, except that a producer_token or
/// consumer_token is used by one thread at a time, and the destructor runs alone, with no
/// blocked pop or pending async_pop left.
///
/// Blocking: only pop, pop_for, pop_until and pop_bulk_for block: they spin
/// `Traits::spin_count` times, then park until a push, close() or their deadline.
///
/// Close: close() makes every later push return `closed` and wakes every waiter; pops keep
/// returning items until the queue is empty, then `closed`. A push racing with close() may
/// return `ok` after close() began; such an item is never lost, it is returned by a later pop
/// or stays counted in size_approx(), but a consumer that already saw `closed` will not look
/// for it. The owner drains with try_pop once its producers have stopped.
///
/// Errors: no exceptions of its own. try_push reports `full` only if moodycamel cannot allocate
/// a block (out of memory) or a sub-queue reached Traits::max_subqueue_size. Exceptions from
/// T's copy/move propagate (moodycamel stays valid).
///
/// Example:
/// ```
/// courier::mpmc_queue<int> q;
/// std::thread consumer([&] { int v; while (q.pop(v) == courier::queue_status::ok) use(v); });
/// for (int i = 0; i < 100; ++i) (void)q.push(i);
/// q.close();  // the consumer drains the rest, then sees `closed`
/// consumer.join();
/// ```
template <class T, class Traits = mpmc_queue_traits>
class mpmc_queue {
    using impl_type = moodycamel::ConcurrentQueue<T, detail::moodycamel_traits<Traits>>;

public:
    using value_type = T;
    using traits_type = Traits;

    /// A producer's own sub-queue: pushes through it skip moodycamel's thread lookup and are
    /// the fastest path. Thread safety: one thread at a time. Must not outlive the queue.
    class producer_token {
    public:
        explicit producer_token(mpmc_queue& q) : token_(q.impl_) {}
        producer_token(producer_token&&) noexcept = default;
        producer_token& operator=(producer_token&&) noexcept = default;

    private:
        friend class mpmc_queue;
        moodycamel::ProducerToken token_;
    };

    /// A consumer's position among the producers' sub-queues, which spreads consumers over
    /// them. Thread safety: one thread at a time. Must not outlive the queue.
    class consumer_token {
    public:
        explicit consumer_token(mpmc_queue& q) : token_(q.impl_) {}
        consumer_token(consumer_token&&) noexcept = default;
        consumer_token& operator=(consumer_token&&) noexcept = default;

    private:
        friend class mpmc_queue;
        moodycamel::ConsumerToken token_;
    };

    /// Creates an open queue. `initial_capacity_hint` items' worth of blocks are allocated up
    /// front (0: moodycamel's default of 6 blocks); the queue grows beyond it as needed.
    explicit mpmc_queue(std::size_t initial_capacity_hint = 0)
        : impl_(initial_capacity_hint != 0 ? initial_capacity_hint : 6 * Traits::block_size),
          asymmetric_(Traits::fence == wake_fence::asymmetric && detail::membarrier_available()),
          pop_waiters_(asymmetric_) {}

    mpmc_queue(const mpmc_queue&) = delete;
    mpmc_queue& operator=(const mpmc_queue&) = delete;

    /// Remaining items are destroyed. Precondition: nothing is blocked in or pending on it.
    ~mpmc_queue() = default;

    producer_token make_producer_token() { return producer_token(*this); }
    consumer_token make_consumer_token() { return consumer_token(*this); }

    /// Pushes `v`. Returns ok or closed (full: out of memory or Traits::max_subqueue_size).
    /// Moves from `v` only on ok.
    /// Thread safety: any thread. Never blocks; lock-free unless a consumer is parked.
    queue_status try_push(T&& v) { return push_impl([&] { return impl_.enqueue(std::move(v)); }); }
    /// Copies `v` in. Returns ok or closed (or full if out of memory).
    queue_status try_push(const T& v) { return push_impl([&] { return impl_.enqueue(v); }); }
    /// Pushes `v` through the producer's own sub-queue (the fastest push).
    queue_status try_push(producer_token& t, T&& v) {
        return push_impl([&] { return impl_.enqueue(t.token_, std::move(v)); });
    }
    queue_status try_push(producer_token& t, const T& v) {
        return push_impl([&] { return impl_.enqueue(t.token_, v); });
    }

    /// The same as try_push (an unbounded queue never waits for room); it exists so code can
    /// switch between mpmc_queue and bounded_queue.
    queue_status push(T&& v) { return try_push(std::move(v)); }
    queue_status push(const T& v) { return try_push(v); }
    queue_status push(producer_token& t, T&& v) { return try_push(t, std::move(v)); }

    /// Pushes `n` items starting at `first`, all or none. Returns n, or 0 when closed (or out
    /// of memory). Items are copied unless `first` yields rvalues: pass
    /// std::make_move_iterator(it) to move them. Wakes up to n waiters.
    template <class It>
    std::size_t try_push_bulk(It first, std::size_t n) {
        return push_bulk_impl(n, [&] { return impl_.enqueue_bulk(first, n); });
    }
    template <class It>
    std::size_t try_push_bulk(producer_token& t, It first, std::size_t n) {
        return push_bulk_impl(n, [&] { return impl_.enqueue_bulk(t.token_, first, n); });
    }

    /// Pops one item into `out`. Returns ok; empty (the queue is open); or closed (closed AND
    /// empty: nothing will ever come). Never blocks. `empty` can also mean that the only items
    /// are being pushed at this instant, as with any non-linearizable queue.
    queue_status try_pop(T& out) {
        return pop_impl([&] { return impl_.try_dequeue(out); });
    }
    queue_status try_pop(consumer_token& t, T& out) {
        return pop_impl([&] { return impl_.try_dequeue(t.token_, out); });
    }

    /// Pops up to `max` items into `out` (an output iterator, e.g. std::back_inserter).
    /// Returns how many; 0 means empty or closed (ask is_closed()).
    template <class It>
    std::size_t try_pop_bulk(It out, std::size_t max) {
        return pop_bulk_impl([&] { return impl_.try_dequeue_bulk(out, max); });
    }
    template <class It>
    std::size_t try_pop_bulk(consumer_token& t, It out, std::size_t max) {
        return pop_bulk_impl([&] { return impl_.try_dequeue_bulk(t.token_, out, max); });
    }

    /// Pops one item, waiting for it. Returns ok, or closed once the queue is closed and empty.
    /// Blocking: spins, then parks until a push or close().
    queue_status pop(T& out) { return pop_until(out, detail::no_deadline); }
    queue_status pop(consumer_token& t, T& out) { return pop_until(t, out, detail::no_deadline); }

    /// Pops one item, waiting at most `timeout`. Returns ok, timeout or closed.
    queue_status pop_for(T& out, std::chrono::nanoseconds timeout) {
        return pop_until(out, deadline_after(timeout));
    }
    queue_status pop_for(consumer_token& t, T& out, std::chrono::nanoseconds timeout) {
        return pop_until(t, out, deadline_after(timeout));
    }

    /// Pops one item, waiting until `deadline`. Returns ok, timeout or closed.
    queue_status pop_until(T& out, std::chrono::steady_clock::time_point deadline) {
        return wait_pop(deadline, [&] { return try_pop(out); });
    }
    queue_status pop_until(consumer_token& t, T& out, std::chrono::steady_clock::time_point deadline) {
        return wait_pop(deadline, [&] { return try_pop(t, out); });
    }

    /// Waits at most `timeout` for at least one item, then pops up to `max`. Returns how many;
    /// 0 means the timeout passed or the queue is closed and empty (ask is_closed()).
    template <class It>
    std::size_t pop_bulk_for(It out, std::size_t max, std::chrono::nanoseconds timeout) {
        if (max == 0) return 0;
        std::size_t n = 0;
        (void)wait_pop(deadline_after(timeout), [&] {
            n = try_pop_bulk(out, max);
            return n != 0 ? queue_status::ok : (is_closed() ? queue_status::closed : queue_status::empty);
        });
        return n;
    }

    /// Closes the queue: later pushes return closed, and every blocked or pending pop wakes up
    /// (it drains what is left, then gets closed). Idempotent.
    /// Thread safety: any thread. Blocking: takes the waiter lock briefly.
    void close() noexcept {
        // seq_cst store, then the waiter lock: a waiter that links itself after this sees
        // closed_ in its re-check (the mutex orders them); one linked before is woken here.
        closed_.store(true, std::memory_order_seq_cst);
        pop_waiters_.notify_all();
    }

    /// True once close() was called.
    bool is_closed() const noexcept { return closed_.load(std::memory_order_acquire); }

    /// The number of items, exact when no push or pop runs concurrently, otherwise a snapshot
    /// that may be slightly off. Thread safety: any thread; O(number of producers).
    std::size_t size_approx() const noexcept { return impl_.size_approx(); }

    /// True when producers pay only a compiler barrier per push (see wake_fence).
    bool uses_asymmetric_fence() const noexcept { return asymmetric_; }

private:
    friend struct detail::queue_access;

    static detail::steady_time deadline_after(std::chrono::nanoseconds timeout) {
        auto now = std::chrono::steady_clock::now();
        // Saturate: a huge timeout (e.g. nanoseconds::max()) means "forever", not an overflow.
        if (timeout >= detail::no_deadline - now) return detail::no_deadline;
        return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
    }

    template <class Enqueue>
    queue_status push_impl(Enqueue&& enqueue) {
        // relaxed: a push that starts after close() returned must see it, which coherence alone
        // guarantees; a push racing with close() may go either way, as documented.
        if (COURIER_UNLIKELY(closed_.load(std::memory_order_relaxed))) return queue_status::closed;
        if (COURIER_UNLIKELY(!enqueue())) return queue_status::full;
        wake_after_push(1);
        return queue_status::ok;
    }

    template <class EnqueueBulk>
    std::size_t push_bulk_impl(std::size_t n, EnqueueBulk&& enqueue_bulk) {
        if (n == 0 || closed_.load(std::memory_order_relaxed)) return 0;
        if (!enqueue_bulk()) return 0;
        wake_after_push(n);
        return n;
    }

    // Producer half of the wake-up protocol (see detail::wait_list). With the asymmetric fence
    // this is a compiler barrier plus one load of a cache line that only parking consumers
    // write, which is why it stays within a few percent of raw moodycamel.
    void wake_after_push(std::size_t n) {
        detail::light_fence(asymmetric_);
        if (COURIER_UNLIKELY(pop_waiters_.has_waiters())) {
            if (n == 1) pop_waiters_.notify_one(); else pop_waiters_.notify_n(n);
        }
    }

    template <class Dequeue>
    queue_status pop_impl(Dequeue&& dequeue) {
        if (dequeue()) return queue_status::ok;
        // acquire pairs with close()'s store: every push that happened before close() is
        // visible now, so a second look after seeing closed_ cannot miss one of them.
        if (COURIER_LIKELY(!closed_.load(std::memory_order_acquire))) return queue_status::empty;
        return dequeue() ? queue_status::ok : queue_status::closed;
    }

    template <class DequeueBulk>
    std::size_t pop_bulk_impl(DequeueBulk&& dequeue_bulk) {
        std::size_t n = dequeue_bulk();
        if (n != 0 || !closed_.load(std::memory_order_acquire)) return n;
        return dequeue_bulk();
    }

    template <class Attempt>
    queue_status wait_pop(detail::steady_time deadline, Attempt&& attempt) {
        return detail::block_until(pop_waiters_, Traits::spin_count, deadline, queue_status::empty, attempt,
                                   [this] { return ready_for_pop(); });
    }

    // Waiter re-check, run after the heavy fence: anything to pop, or closed?
    bool ready_for_pop() const noexcept {
        return closed_.load(std::memory_order_seq_cst) || impl_.size_approx() != 0;
    }

    impl_type impl_;
    // Read by every push; written once. Apart from moodycamel's own hot fields.
    alignas(cache_line_size) std::atomic<bool> closed_{false};
    const bool asymmetric_;
    detail::wait_list pop_waiters_;
};

COURIER_END_NAMESPACE
