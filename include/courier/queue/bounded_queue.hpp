// bounded_queue<T>: a fixed-capacity MPMC queue with an explicit overflow policy (block with a
// deadline, fail, drop_oldest, drop_newest), close(), blocking pops, and counters for every
// drop. A lock-free ring (Vyukov's bounded MPMC algorithm): no allocation after construction.
// No Asio in here; async_pop and async_push for it live in queue/async_pop.hpp.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/queue/detail/fence.hpp>
#include <courier/queue/detail/wait_list.hpp>
#include <courier/queue/queue_status.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

COURIER_BEGIN_NAMESPACE

/// A snapshot of a bounded_queue's counters. Each field is read separately, so a snapshot
/// taken while the queue is busy may be slightly inconsistent.
struct bounded_queue_stats {
    std::uint64_t pushed = 0;          ///< items that entered the queue (later evictions included)
    std::uint64_t popped = 0;          ///< items handed to a pop
    std::uint64_t dropped_oldest = 0;  ///< items evicted by drop_oldest
    std::uint64_t dropped_newest = 0;  ///< pushed items discarded by drop_newest
    std::uint64_t rejected_full = 0;   ///< pushes that returned `full` (or timed out waiting for room)
    std::size_t size = 0;              ///< items queued now (approximately)
};

/// Tuning for bounded_queue's blocking calls.
struct bounded_queue_options {
    /// Failed tries a blocking push or pop makes, one pause apart, before it parks
    /// (see mpmc_queue_traits::spin_count).
    int spin_count = 512;
};

/// A fixed-capacity MPMC queue whose overflow behaviour is chosen at construction.
///
/// Policies, for a push that finds the queue full:
/// - block: push/push_for/push_until wait for room (or their deadline, or close());
///   try_push returns `full` and the caller keeps the item.
/// - fail: every push returns `full` at once; the caller keeps the item.
/// - drop_oldest: the oldest queued item is evicted (counted, handed to `on_drop`) and the push
///   returns ok. Under contention one push may evict more than one item (each is counted and
///   handed over) because other producers can take the slot an eviction freed.
/// - drop_newest: the pushed item is consumed, counted and handed to `on_drop`; the push returns
///   `dropped`.
///
/// Ordering: FIFO across all producers (a single ring), i.e. pops return items in the order
/// their pushes claimed slots.
///
/// Thread safety: every member may be called concurrently, except the destructor, which runs
/// alone with no blocked call or pending async operation left. `on_drop` runs on the pushing
/// thread, possibly on several threads at once.
///
/// Blocking: pop/pop_for/pop_until/pop_bulk_for, and push/push_for/push_until under `block`,
/// spin briefly, then park until the queue changes, close() or their deadline.
///
/// Close: as mpmc_queue. close() also wakes blocked pushers, which return `closed` and keep
/// their item. A push racing with close() may still return ok; that item is never lost: a later
/// pop returns it, or it stays counted in size_approx() for the owner to drain.
///
/// Errors: the constructor throws courier_error ([courier.queue.invalid_capacity]) for a
/// capacity of 0. An exception thrown by `on_drop` propagates out of the push that dropped the
/// item (the item is counted as dropped; under drop_oldest the pushed item was not pushed).
/// T's move constructor must not throw (checked at compile time).
///
/// Example:
/// ```
/// courier::bounded_queue<std::string> q(1024, courier::overflow_policy::drop_oldest,
///     [](std::string&& lost) { dead_letters.add(std::move(lost)); });
/// (void)q.try_push("hello");
/// std::string s;
/// if (q.try_pop(s) == courier::queue_status::ok) use(s);
/// ```
template <class T>
class bounded_queue {
    static_assert(std::is_nothrow_move_constructible_v<T>,
                  "bounded_queue<T> needs a noexcept move constructor: a throw mid-slot would wedge the ring");
    static_assert(std::is_nothrow_destructible_v<T>);

public:
    using value_type = T;
    /// Receives every dropped item, by either drop policy (e.g. to write a dead letter).
    using drop_handler = std::function<void(T&&)>;

    /// Creates an open queue holding at most `capacity` items (allocated up front).
    /// Errors: throws courier_error [courier.queue.invalid_capacity] if capacity is 0 or absurd.
    bounded_queue(std::size_t capacity, overflow_policy policy = overflow_policy::block, drop_handler on_drop = {},
                  bounded_queue_options options = {})
        : capacity_(checked_capacity(capacity)),
          pow2_((capacity & (capacity - 1)) == 0),
          policy_(policy),
          spin_count_(options.spin_count),
          cells_(new cell[capacity]),
          on_drop_(std::move(on_drop)) {
        for (std::size_t i = 0; i < capacity_; ++i) cells_[i].seq.store(2 * i, std::memory_order_relaxed);
    }

    bounded_queue(const bounded_queue&) = delete;
    bounded_queue& operator=(const bounded_queue&) = delete;

    /// Destroys the remaining items. Precondition: nothing blocked in or pending on the queue.
    ~bounded_queue() {
        std::size_t tail = enqueue_pos_.load(std::memory_order_relaxed);
        for (std::size_t pos = dequeue_pos_.load(std::memory_order_relaxed); pos != tail; ++pos) {
            cell& c = cell_at(pos);
            if (c.seq.load(std::memory_order_relaxed) == 2 * pos + 1) item_in(c)->~T();
        }
    }

    /// Pushes `v` without waiting. Returns:
    /// - ok: pushed (under drop_oldest possibly after evicting the oldest item);
    /// - full: no room under block or fail; `v` is untouched;
    /// - dropped: drop_newest discarded `v` (moved from, counted, handed to on_drop);
    /// - closed: the queue is closed; `v` is untouched.
    /// Thread safety: any thread. Lock-free unless a consumer is parked.
    queue_status try_push(T&& v) {
        if (COURIER_UNLIKELY(closed_.load(std::memory_order_relaxed))) return queue_status::closed;
        if (COURIER_LIKELY(enqueue(v))) return queue_status::ok;
        return overflow(v);
    }
    /// Pushes a copy of `v`; statuses as above.
    queue_status try_push(const T& v) {
        T copy(v);
        return try_push(std::move(copy));
    }

    /// Pushes `v`; under `block` waits for room or close(). Other policies: as try_push.
    queue_status push(T&& v) { return push_until(std::move(v), detail::no_deadline); }

    /// As push, waiting at most `timeout` for room: ok | timeout | closed (block); other
    /// policies as try_push. On timeout or closed the caller keeps `v`.
    queue_status push_for(T&& v, std::chrono::nanoseconds timeout) {
        // Room at once, the common case, needs no deadline: the clock is read only to wait.
        if (policy_ == overflow_policy::block) {
            if (COURIER_UNLIKELY(closed_.load(std::memory_order_relaxed))) return queue_status::closed;
            if (COURIER_LIKELY(enqueue(v))) return queue_status::ok;
        }
        return push_until(std::move(v), deadline_after(timeout));
    }

    /// As push, waiting until `deadline` for room.
    queue_status push_until(T&& v, std::chrono::steady_clock::time_point deadline) {
        if (policy_ != overflow_policy::block) return try_push(std::move(v));
        queue_status s = detail::block_until(
            room_waiters_, spin_count_, deadline, queue_status::full,
            [&] {
                if (closed_.load(std::memory_order_relaxed)) return queue_status::closed;
                return enqueue(v) ? queue_status::ok : queue_status::full;
            },
            [this] { return ready_for_push(); });
        if (s == queue_status::timeout) rejected_full_.fetch_add(1, std::memory_order_relaxed);
        return s;
    }

    /// Pops the oldest item into `out`: ok | empty | closed (closed only when also empty).
    queue_status try_pop(T& out) {
        auto into_out = [&out](T&& v) { out = std::move(v); };
        if (take_head(into_out)) return queue_status::ok;
        // acquire pairs with close(): pushes that happened before it are visible to the retry.
        if (COURIER_LIKELY(!closed_.load(std::memory_order_acquire))) return queue_status::empty;
        return take_head(into_out) ? queue_status::ok : queue_status::closed;
    }

    /// Pops up to `max` items into the output iterator `out`. Returns how many (0: empty or
    /// closed; ask is_closed()).
    template <class It>
    std::size_t try_pop_bulk(It out, std::size_t max) {
        std::size_t n = 0;
        auto into_out = [&](T&& v) {
            *out = std::move(v);
            ++out;
        };
        while (n < max && take_head(into_out)) ++n;
        if (n == 0 && closed_.load(std::memory_order_acquire)) {
            while (n < max && take_head(into_out)) ++n;
        }
        return n;
    }

    /// Pops one item, waiting for it: ok | closed.
    queue_status pop(T& out) { return pop_until(out, detail::no_deadline); }
    /// Pops one item, waiting at most `timeout`: ok | timeout | closed.
    queue_status pop_for(T& out, std::chrono::nanoseconds timeout) { return pop_until(out, deadline_after(timeout)); }
    /// Pops one item, waiting until `deadline`: ok | timeout | closed.
    queue_status pop_until(T& out, std::chrono::steady_clock::time_point deadline) {
        return wait_pop(deadline, [&] { return try_pop(out); });
    }

    /// Waits at most `timeout` for one item, then pops up to `max`. Returns how many (0: timeout
    /// or closed and empty).
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

    /// Closes the queue: later pushes return closed; blocked pushers wake with closed; blocked
    /// and pending pops drain what is left, then get closed. Idempotent.
    void close() noexcept {
        closed_.store(true, std::memory_order_seq_cst);  // before the locks: see mpmc_queue::close
        pop_waiters_.notify_all();
        room_waiters_.notify_all();
    }
    bool is_closed() const noexcept { return closed_.load(std::memory_order_acquire); }

    /// Items queued now: exact when quiescent, a snapshot otherwise.
    std::size_t size_approx() const noexcept {
        // Read the consumer side first: the difference can then only over-count in-flight
        // pushes, never go negative.
        std::size_t head = dequeue_pos_.load(std::memory_order_acquire);
        std::size_t tail = enqueue_pos_.load(std::memory_order_acquire);
        std::size_t n = tail > head ? tail - head : 0;
        return n < capacity_ ? n : capacity_;
    }

    std::size_t capacity() const noexcept { return capacity_; }
    overflow_policy policy() const noexcept { return policy_; }

    /// Every item dropped so far, by drop_oldest or drop_newest.
    std::uint64_t dropped_count() const noexcept {
        return evicted_.load(std::memory_order_relaxed) + discarded_.load(std::memory_order_relaxed);
    }

    /// The queue's counters (pushed and popped come from the ring positions: no hot-path cost).
    bounded_queue_stats stats() const noexcept {
        bounded_queue_stats s;
        s.dropped_oldest = evicted_.load(std::memory_order_relaxed);
        s.dropped_newest = discarded_.load(std::memory_order_relaxed);
        s.rejected_full = rejected_full_.load(std::memory_order_relaxed);
        std::uint64_t head = dequeue_pos_.load(std::memory_order_acquire);
        s.pushed = enqueue_pos_.load(std::memory_order_acquire);
        s.popped = head >= s.dropped_oldest ? head - s.dropped_oldest : 0;
        s.size = size_approx();
        return s;
    }

private:
    friend struct detail::queue_access;

    // A slot: `seq` says whose turn it is, in units of half a position so that the states stay
    // distinct even for capacity 1 (Vyukov's original pos / pos + 1 / pos + capacity encoding
    // collides there): seq == 2*pos: free for the push claiming position pos; 2*pos + 1: holds
    // that push's item; 2*(pos + capacity): freed for the push one lap later.
    struct cell {
        std::atomic<std::size_t> seq;
        alignas(T) unsigned char storage[sizeof(T)];
    };

    static T* item_in(cell& c) noexcept { return std::launder(reinterpret_cast<T*>(c.storage)); }

    static std::size_t checked_capacity(std::size_t capacity) {
        if (capacity == 0 || capacity > (std::size_t(1) << 40)) {
            throw courier_error(error(errc::invalid_argument,
                                      "[courier.queue.invalid_capacity] bounded_queue capacity must be in 1..2^40"));
        }
        return capacity;
    }

    static detail::steady_time deadline_after(std::chrono::nanoseconds timeout) {
        auto now = std::chrono::steady_clock::now();
        if (timeout >= detail::no_deadline - now) return detail::no_deadline;
        return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
    }

    // A power-of-two capacity avoids the division (about 25 cycles) on every push and pop.
    cell& cell_at(std::size_t pos) noexcept { return cells_[pow2_ ? pos & (capacity_ - 1) : pos % capacity_]; }

    // Claims the next slot and moves `v` in; false (and `v` untouched) if the ring is full.
    bool enqueue(T& v) {
        std::size_t pos = enqueue_pos_.load(std::memory_order_relaxed);
        cell* c;
        for (;;) {
            c = &cell_at(pos);
            std::size_t seq = c->seq.load(std::memory_order_acquire);
            auto diff = static_cast<std::ptrdiff_t>(seq - 2 * pos);
            if (diff == 0) {
                // seq_cst: this CAS is also the producer's store in the wake-up protocol (see
                // detail::wait_list), which is why no fence follows the publish below.
                if (enqueue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                                       std::memory_order_relaxed)) {
                    break;
                }
            } else if (diff < 0) {
                return false;  // the slot still holds last lap's item: full
            } else {
                pos = enqueue_pos_.load(std::memory_order_relaxed);
            }
        }
        ::new (static_cast<void*>(c->storage)) T(std::move(v));  // noexcept: see static_assert
        c->seq.store(2 * pos + 1, std::memory_order_release);  // publish to the consumer of pos
        // seq_cst load: pairs with the waiter's seq_cst increment (our CAS above is the store).
        if (COURIER_UNLIKELY(pop_waiters_.has_waiters(std::memory_order_seq_cst))) pop_waiters_.notify_one();
        return true;
    }

    // Takes the oldest item and hands it to `sink` (as T&&); false if none is ready, which
    // means empty or that the push claiming the head slot has not published yet.
    template <class Sink>
    bool take_head(Sink&& sink) {
        std::size_t pos = dequeue_pos_.load(std::memory_order_relaxed);
        cell* c;
        for (;;) {
            c = &cell_at(pos);
            std::size_t seq = c->seq.load(std::memory_order_acquire);
            auto diff = static_cast<std::ptrdiff_t>(seq - (2 * pos + 1));
            if (diff == 0) {
                // seq_cst: the consumer's store in the room-waiter protocol (blocked pushers).
                if (dequeue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                                       std::memory_order_relaxed)) {
                    break;
                }
            } else if (diff < 0) {
                return false;
            } else {
                pos = dequeue_pos_.load(std::memory_order_relaxed);
            }
        }
        T* item = item_in(*c);
        T taken(std::move(*item));  // noexcept (static_assert above): the slot cannot wedge
        item->~T();
        c->seq.store(2 * (pos + capacity_), std::memory_order_release);  // free the slot for the next lap
        if (COURIER_UNLIKELY(room_waiters_.has_waiters(std::memory_order_seq_cst))) room_waiters_.notify_one();
        sink(std::move(taken));  // after the slot is released: a throwing sink loses only `taken`
        return true;
    }

    // The queue was full for `v`: apply the policy.
    queue_status overflow(T& v) {
        switch (policy_) {
        case overflow_policy::block:
        case overflow_policy::fail:
            break;
        case overflow_policy::drop_newest: {
            T lost(std::move(v));
            discarded_.fetch_add(1, std::memory_order_relaxed);
            if (on_drop_) on_drop_(std::move(lost));
            return queue_status::dropped;
        }
        case overflow_policy::drop_oldest: {
            auto drop = [this](T&& lost) {
                evicted_.fetch_add(1, std::memory_order_relaxed);
                if (on_drop_) on_drop_(std::move(lost));
            };
            // Evict the head, then retry. If consumers emptied the ring meanwhile take_head
            // finds nothing and the retry simply succeeds; if other producers refilled the slot
            // we freed, we evict again (each eviction counted and handed over).
            for (;;) {
                if (closed_.load(std::memory_order_relaxed)) return queue_status::closed;
                if (!take_head(drop)) detail::cpu_relax();  // head slot mid-publish: let it land
                if (enqueue(v)) return queue_status::ok;
            }
        }
        }
        rejected_full_.fetch_add(1, std::memory_order_relaxed);
        return queue_status::full;
    }

    template <class Attempt>
    queue_status wait_pop(detail::steady_time deadline, Attempt&& attempt) {
        return detail::block_until(pop_waiters_, spin_count_, deadline, queue_status::empty, attempt,
                                   [this] { return ready_for_pop(); });
    }

    // Waiter re-checks (run after the waiter's seq_cst announcement): seq_cst loads, so that
    // either they see the claiming CAS of a concurrent push (pop) or that pusher sees us.
    bool ready_for_pop() const noexcept {
        if (closed_.load(std::memory_order_seq_cst)) return true;
        std::size_t head = dequeue_pos_.load(std::memory_order_seq_cst);
        return enqueue_pos_.load(std::memory_order_seq_cst) != head;
    }
    bool ready_for_push() const noexcept {
        if (closed_.load(std::memory_order_seq_cst)) return true;
        std::size_t tail = enqueue_pos_.load(std::memory_order_seq_cst);
        return tail - dequeue_pos_.load(std::memory_order_seq_cst) < capacity_;
    }

    // Producers' and consumers' positions on separate cache lines: each is CAS'd by one side.
    alignas(cache_line_size) std::atomic<std::size_t> enqueue_pos_{0};
    alignas(cache_line_size) std::atomic<std::size_t> dequeue_pos_{0};
    // Read-mostly configuration.
    alignas(cache_line_size) const std::size_t capacity_;
    const bool pow2_;
    const overflow_policy policy_;
    const int spin_count_;
    std::atomic<bool> closed_{false};
    std::unique_ptr<cell[]> cells_;
    drop_handler on_drop_;
    // Written only on the overflow paths.
    alignas(cache_line_size) std::atomic<std::uint64_t> evicted_{0};
    std::atomic<std::uint64_t> discarded_{0};
    std::atomic<std::uint64_t> rejected_full_{0};
    // Bounded pushes get the producer half of the fence from their CAS: symmetric waiters.
    detail::wait_list pop_waiters_{false};
    detail::wait_list room_waiters_{false};
};

COURIER_END_NAMESPACE
