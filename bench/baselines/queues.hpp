// Baseline queues behind the queue scenarios, each wrapped in the small interface that
// run_queue drives (constructed from run_params; producer_token()/consumer_token();
// try_push(token, Msg&) -> bool, false meaning "full, retry"; try_pop(token, Msg&) -> bool).
// The peers are compiled only when CMake found their Debian package (COURIER_BENCH_HAVE_*).
#pragma once

#include "../harness/registry.hpp"

#include <courier/detail/moodycamel.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

#if COURIER_BENCH_HAVE_ATOMIC_QUEUE
#include <atomic_queue/atomic_queue.h>
#endif
#if COURIER_BENCH_HAVE_BOOST_LOCKFREE
#include <boost/lockfree/queue.hpp>
#endif
#if COURIER_BENCH_HAVE_TBB
#include <tbb/concurrent_queue.h>
#endif

namespace courier_bench {

/// For queues that need no per-thread state.
struct no_token {};

/// A ring's size when it stands in for an unbounded queue: big enough that producers rarely
/// wait on it, small enough (<= 64 MiB) for 4 KiB payloads.
template <class Msg>
std::size_t large_ring(const run_params& p) {
    return std::clamp<std::size_t>((64u << 20) / sizeof(Msg), p.capacity, 65536);
}

/// Raw moodycamel::ConcurrentQueue with producer and consumer tokens: what courier's
/// mpmc_queue is built on, so the ratio against it is the price of courier's wrapper.
template <class Msg>
class moodycamel_queue {
public:
    explicit moodycamel_queue(const run_params& p) : q_(p.capacity) {}
    moodycamel::ProducerToken producer_token() { return moodycamel::ProducerToken(q_); }
    moodycamel::ConsumerToken consumer_token() { return moodycamel::ConsumerToken(q_); }
    bool try_push(moodycamel::ProducerToken& t, Msg& m) { return q_.enqueue(t, std::move(m)); }
    bool try_pop(moodycamel::ConsumerToken& t, Msg& m) { return q_.try_dequeue(t, m); }

private:
    moodycamel::ConcurrentQueue<Msg> q_;
};

/// The textbook queue: std::deque under a std::mutex, notify_one per push. Bounded when
/// `Bounded` (capacity from run_params). Consumers here poll with try_pop like everyone
/// else; the notify costs no system call while nobody waits (glibc checks for waiters).
template <class Msg, bool Bounded>
class basic_mutex_deque {
public:
    explicit basic_mutex_deque(const run_params& p) : capacity_(p.capacity) {}
    no_token producer_token() { return {}; }
    no_token consumer_token() { return {}; }
    bool try_push(no_token, Msg& m) {
        {
            std::lock_guard lock(mutex_);
            if (Bounded && items_.size() >= capacity_) return false;
            items_.push_back(std::move(m));
        }
        ready_.notify_one();
        return true;
    }
    bool try_pop(no_token, Msg& m) {
        std::lock_guard lock(mutex_);
        if (items_.empty()) return false;
        m = std::move(items_.front());
        items_.pop_front();
        return true;
    }

private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<Msg> items_;
    std::size_t capacity_;
};
// Aliases, because a template with a defaulted second parameter does not bind to a
// `template <class> class` parameter on every compiler (clang 14 needs P0522 enabled).
template <class Msg>
using mutex_deque = basic_mutex_deque<Msg, false>;
template <class Msg>
using mutex_deque_bounded = basic_mutex_deque<Msg, true>;

#if COURIER_BENCH_HAVE_ATOMIC_QUEUE
/// Maxim Egorushkin's atomic_queue: one shared ring, per-slot state, no tokens.
/// AtomicQueueB2 is the run-time-sized variant for non-atomic element types. It is always
/// bounded; `Bounded` picks run_params::capacity, otherwise a large ring.
template <class Msg, bool Bounded>
class basic_atomic_queue {
public:
    explicit basic_atomic_queue(const run_params& p)
        : q_(static_cast<unsigned>(Bounded ? p.capacity : large_ring<Msg>(p))) {}
    no_token producer_token() { return {}; }
    no_token consumer_token() { return {}; }
    bool try_push(no_token, Msg& m) { return q_.try_push(std::move(m)); }
    bool try_pop(no_token, Msg& m) { return q_.try_pop(m); }

private:
    atomic_queue::AtomicQueueB2<Msg> q_;
};
template <class Msg>
using atomic_queue_ring = basic_atomic_queue<Msg, false>;
template <class Msg>
using atomic_queue_bounded = basic_atomic_queue<Msg, true>;
#endif

#if COURIER_BENCH_HAVE_BOOST_LOCKFREE
/// boost::lockfree::queue (Michael-Scott, node-based, needs trivially copyable items).
/// Unbounded: push() takes nodes from a free list and allocates when it is empty.
template <class Msg>
class boost_lockfree_queue {
public:
    explicit boost_lockfree_queue(const run_params& p) : q_(p.capacity) {}
    no_token producer_token() { return {}; }
    no_token consumer_token() { return {}; }
    bool try_push(no_token, Msg& m) { return q_.push(m); }
    bool try_pop(no_token, Msg& m) { return q_.pop(m); }

private:
    boost::lockfree::queue<Msg> q_;
};

/// boost::lockfree::queue with a fixed node pool: bounded_push fails when it is used up.
template <class Msg>
class boost_lockfree_bounded {
public:
    explicit boost_lockfree_bounded(const run_params& p) : q_(std::min<std::size_t>(p.capacity, 65534)) {}
    no_token producer_token() { return {}; }
    no_token consumer_token() { return {}; }
    bool try_push(no_token, Msg& m) { return q_.bounded_push(m); }
    bool try_pop(no_token, Msg& m) { return q_.pop(m); }

private:
    // fixed_sized pools are indexed by 16 bits, hence the 65534 cap above.
    boost::lockfree::queue<Msg, boost::lockfree::fixed_sized<true>> q_;
};
#endif

#if COURIER_BENCH_HAVE_TBB
/// oneTBB's concurrent_queue (unbounded, no tokens).
template <class Msg>
class tbb_queue {
public:
    explicit tbb_queue(const run_params&) {}
    no_token producer_token() { return {}; }
    no_token consumer_token() { return {}; }
    bool try_push(no_token, Msg& m) {
        q_.push(std::move(m));
        return true;
    }
    bool try_pop(no_token, Msg& m) { return q_.try_pop(m); }

private:
    tbb::concurrent_queue<Msg> q_;
};

/// oneTBB's concurrent_bounded_queue with set_capacity; try_push fails when full.
template <class Msg>
class tbb_bounded_queue {
public:
    explicit tbb_bounded_queue(const run_params& p) { q_.set_capacity(static_cast<std::ptrdiff_t>(p.capacity)); }
    no_token producer_token() { return {}; }
    no_token consumer_token() { return {}; }
    bool try_push(no_token, Msg& m) { return q_.try_push(std::move(m)); }
    bool try_pop(no_token, Msg& m) { return q_.try_pop(m); }

private:
    tbb::concurrent_bounded_queue<Msg> q_;
};
#endif

}  // namespace courier_bench
