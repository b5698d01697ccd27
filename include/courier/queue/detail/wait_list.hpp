// The waiter list both queues park on: blocked threads and pending asynchronous operations
// (async_pop) wait in one FIFO list, behind an atomic count that producers read on their
// hot path, so a push pays for a lock and a notify only when somebody is actually waiting.
// Not API. The queue core sees only `waiter_node`; Asio stays in queue/async_pop.hpp.
#pragma once

#include <courier/core/config.hpp>
#include <courier/queue/detail/fence.hpp>
#include <courier/queue/queue_status.hpp>

#include <atomic>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>

COURIER_BEGIN_NAMESPACE

namespace detail {

/// How the Asio layer (queue/async_pop.hpp) reaches a queue's wait lists; queues befriend it.
struct queue_access;

using steady_time = std::chrono::steady_clock::time_point;
/// "Wait forever" for the deadline-taking helpers below.
inline constexpr steady_time no_deadline = steady_time::max();

/// One waiter: a thread blocked in pop/push (`cv_` set) or an asynchronous operation
/// (`on_wake_` set). Every field but the callbacks is guarded by the owning list's mutex.
struct waiter_node {
    waiter_node* prev_ = nullptr;
    waiter_node* next_ = nullptr;
    bool linked_ = false;    ///< in the list; only a linked node can be signalled
    bool arming_ = false;    ///< announced, re-check pending: a signal is only recorded
    bool signaled_ = false;  ///< a notifier unlinked this node to wake it
    /// Thread waiters: notified under the list's mutex (the node lives on the waiter's stack,
    /// so it must not be touched after the mutex is released).
    std::condition_variable* cv_ = nullptr;
    /// Asynchronous waiters: called once, outside the lock, after a notifier unlinked the node.
    /// The callee owns the operation from then on; it may complete and free it.
    void (*on_wake_)(waiter_node&) noexcept = nullptr;
};

/// Why `wait_list::wait_until` returned.
enum class wake_reason : std::uint8_t { signaled, ready, timeout };

/// A FIFO list of waiters with a lock-free "anyone waiting?" test.
///
/// The protocol (a Dekker pattern) that keeps wake-ups from being lost:
///   producer: publish item; light_fence(); if (has_waiters()) notify_one();
///   waiter:   link node (count_ += 1, seq_cst); heavy_fence(); re-check the queue; park.
/// Either the producer's load of count_ sees the waiter, or the waiter's re-check sees the
/// item. Queues whose push already performs a seq_cst read-modify-write before publishing
/// (bounded_queue's CAS) get the producer half for free and use the symmetric heavy fence.
///
/// Thread safety: every member may be called concurrently.
class wait_list {
public:
    explicit wait_list(bool asymmetric) noexcept : asymmetric_(asymmetric) {}
    wait_list(const wait_list&) = delete;
    wait_list& operator=(const wait_list&) = delete;
    ~wait_list() { assert(head_ == nullptr && "a queue was destroyed while something waited on it"); }

    /// True when `heavy_fence` uses membarrier and producers may use the compiler-only fence.
    bool asymmetric() const noexcept { return asymmetric_; }

    /// Hot path: is any waiter linked? Producers call it after their half of the fence; a
    /// stale `true` costs only a lock, a stale `false` is excluded by the fence protocol.
    bool has_waiters(std::memory_order order = std::memory_order_relaxed) const noexcept {
        return count_.load(order) != 0;
    }

    /// Waiters linked now (a snapshot, for tests and diagnostics).
    std::size_t size() const noexcept { return count_.load(std::memory_order_acquire); }

    /// Wakes the longest-waiting waiter, if any.
    void notify_one() {
        waiter_node* async_node = nullptr;
        {
            std::lock_guard lock(mutex_);
            waiter_node* n = head_;
            if (n == nullptr) return;
            async_node = signal_locked(*n);
        }
        if (async_node != nullptr) async_node->on_wake_(*async_node);
    }

    /// Wakes up to `n` waiters (after a bulk push of `n` items).
    void notify_n(std::size_t n) {
        for (; n > 0 && has_waiters(); --n) notify_one();
    }

    /// Wakes every waiter (close()).
    void notify_all() {
        waiter_node* async_chain = nullptr;
        {
            std::lock_guard lock(mutex_);
            while (head_ != nullptr) {
                if (waiter_node* a = signal_locked(*head_)) {
                    a->next_ = async_chain;  // unlinked: next_ is ours to reuse as a chain
                    async_chain = a;
                }
            }
        }
        while (async_chain != nullptr) {
            waiter_node* a = async_chain;
            async_chain = a->next_;  // read before on_wake_, which may free `a`
            a->on_wake_(*a);
        }
    }

    /// Blocks the calling thread until a notifier signals it, `ready()` holds at the re-check
    /// after announcing, or `deadline` passes. `ready` runs under the list's mutex and must
    /// neither block nor touch this list. The caller must try its operation again afterwards
    /// whatever the reason: a signal is consumed only by that attempt.
    template <class Ready>
    wake_reason wait_until(Ready&& ready, steady_time deadline) {
        std::condition_variable cv;
        waiter_node node;
        node.cv_ = &cv;
        std::unique_lock lock(mutex_);
        if (!announce_and_recheck(node, ready, lock)) return node.signaled_ ? wake_reason::signaled : wake_reason::ready;
        while (node.linked_) {
            if (deadline == no_deadline) {
                cv.wait(lock);
            } else if (cv.wait_until(lock, deadline) == std::cv_status::timeout) {
                if (!node.linked_) break;  // signalled as the wait timed out: count it as a wake
                unlink(node);
                return wake_reason::timeout;
            }
        }
        return wake_reason::signaled;
    }

    /// Registers an asynchronous waiter. Returns false, with the node not registered, when
    /// `ready()` held at the re-check or a notifier fired meanwhile: the caller retries now.
    /// Returns true when the node is parked: `on_wake_` (or a successful `remove`) will follow,
    /// and the caller must not touch the node again.
    template <class Ready>
    bool arm(waiter_node& node, Ready&& ready) {
        std::unique_lock lock(mutex_);
        return announce_and_recheck(node, ready, lock);
    }

    /// Unlinks `node` if it is still parked (cancellation). True if it was: the caller owns it.
    bool remove(waiter_node& node) {
        std::lock_guard lock(mutex_);
        if (!node.linked_ || node.arming_) return false;
        unlink(node);
        return true;
    }

private:
    // Announces `node`, runs the heavy fence outside the lock (it may be a system call), then
    // re-checks. Returns true with `node` parked, false if it must not wait. `lock` is held on
    // entry and on return.
    template <class Ready>
    bool announce_and_recheck(waiter_node& node, Ready& ready, std::unique_lock<std::mutex>& lock) {
        node.signaled_ = false;
        node.arming_ = true;
        link(node);
        lock.unlock();
        heavy_fence(asymmetric_);
        lock.lock();
        node.arming_ = false;
        if (!node.linked_) return false;  // signalled while arming: the signal is ours, retry
        if (ready()) {
            unlink(node);
            return false;
        }
        return true;
    }

    // Unlinks `n` and signals it. Returns `&n` when the caller must call its on_wake_ after
    // releasing the mutex, nullptr otherwise.
    waiter_node* signal_locked(waiter_node& n) {
        unlink(n);
        n.signaled_ = true;
        if (n.arming_) return nullptr;  // its own re-check will see !linked_ and retry
        if (n.cv_ != nullptr) {
            n.cv_->notify_one();  // under the mutex: the waiter cannot return and destroy cv_ yet
            return nullptr;
        }
        return &n;
    }

    void link(waiter_node& n) {
        n.next_ = nullptr;
        n.prev_ = tail_;
        if (tail_ != nullptr) tail_->next_ = &n; else head_ = &n;
        tail_ = &n;
        n.linked_ = true;
        // seq_cst: this is the waiter's store in the Dekker pair; it must not be reordered
        // after the re-check's loads (heavy_fence follows as well, for the C++ fence rules).
        count_.fetch_add(1, std::memory_order_seq_cst);
    }

    void unlink(waiter_node& n) {
        if (n.prev_ != nullptr) n.prev_->next_ = n.next_; else head_ = n.next_;
        if (n.next_ != nullptr) n.next_->prev_ = n.prev_; else tail_ = n.prev_;
        n.prev_ = n.next_ = nullptr;
        n.linked_ = false;
        // relaxed: a producer that still reads the old value merely takes the lock for nothing.
        count_.fetch_sub(1, std::memory_order_relaxed);
    }

    // Read by every producer: kept apart from the mutex and list, which waiters write.
    alignas(cache_line_size) std::atomic<std::size_t> count_{0};
    const bool asymmetric_;
    alignas(cache_line_size) std::mutex mutex_;
    waiter_node* head_ = nullptr;
    waiter_node* tail_ = nullptr;
};

/// The blocking loop shared by every pop/push that may wait: try, spin `spin_count` times
/// with a pause between tries, then park on `waiters` and try again after each wake-up.
/// `attempt()` returns a status; `retry_on` (empty for pops, full for pushes) means "not yet".
/// Returns the first other status, or `timeout` once `deadline` has passed.
template <class Attempt, class Ready>
queue_status block_until(wait_list& waiters, int spin_count, steady_time deadline, queue_status retry_on,
                         Attempt&& attempt, Ready&& ready) {
    queue_status s = attempt();
    if (s != retry_on) return s;
    const bool timed = deadline != no_deadline;
    if (timed && std::chrono::steady_clock::now() >= deadline) return queue_status::timeout;
    for (int i = 0; i < spin_count; ++i) {
        cpu_relax();
        s = attempt();
        if (s != retry_on) return s;
        // Reading the clock costs about one pause; do it once every 64 spins.
        if (timed && (i & 63) == 63 && std::chrono::steady_clock::now() >= deadline) return queue_status::timeout;
    }
    for (;;) {
        wake_reason why = waiters.wait_until(ready, deadline);
        s = attempt();  // always, even after a timeout: a signal is consumed only by an attempt
        if (s != retry_on) return s;
        if (timed && (why == wake_reason::timeout || std::chrono::steady_clock::now() >= deadline)) {
            return queue_status::timeout;
        }
        // ready() saw an item (or room) that another thread took, or one still being written
        // by a peer between its claim and its publish: let that peer run.
        if (why == wake_reason::ready) std::this_thread::yield();
    }
}

}  // namespace detail

COURIER_END_NAMESPACE
