// Helpers shared by the queue tests.
#pragma once
#include <courier/queue/async_pop.hpp>  // detail::queue_access, to see parked waiters
#include <courier/queue/mpmc_queue.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>
#include <utility>

namespace courier_test {

/// Runs `body` on its own thread and fails the process if it takes longer than `limit`: a
/// wake-up bug shows up as a hang, and since a stuck thread cannot be joined the process exits
/// with a message.
template <class F>
void run_with_time_limit(std::chrono::milliseconds limit, F&& body) {
    std::packaged_task<void()> task(std::forward<F>(body));
    auto done = task.get_future();
    std::thread runner(std::move(task));
    if (done.wait_for(limit) == std::future_status::timeout) {
        std::fprintf(stderr, "time limit of %lld ms exceeded: a queue operation is stuck\n",
                     static_cast<long long>(limit.count()));
        std::fflush(stderr);
        std::_Exit(3);
    }
    runner.join();
    done.get();
}

struct symmetric_traits : courier::mpmc_queue_traits {
    static constexpr courier::wake_fence fence = courier::wake_fence::symmetric;
};
struct no_spin_traits : courier::mpmc_queue_traits {
    static constexpr int spin_count = 0;  // park at once: exercises the slow path
};

/// Consumers parked in `q` (blocking pops and async_pops waiting for an item).
template <class Q>
std::size_t parked(Q& q) {
    return courier::detail::queue_access::pop_waiter_count(q);
}

}  // namespace courier_test
