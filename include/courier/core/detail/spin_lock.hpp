// A test-and-test-and-set lock for critical sections of a few dozen instructions taken once per
// message. Uncontended it costs one atomic exchange and a plain store, where a std::mutex pair
// costs ~45 instructions and a second locked instruction. A waiter spins briefly, then yields
// its time slice (it never sleeps in the kernel): hold it only for short, bounded work.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/detail/cpu_relax.hpp>

#include <atomic>
#include <thread>

COURIER_BEGIN_NAMESPACE
namespace detail {

class spin_lock {
public:
    void lock() noexcept {
        while (flag_.exchange(true, std::memory_order_acquire)) {
            unsigned spins = 0;
            while (flag_.load(std::memory_order_relaxed)) {
                if (++spins < 64) {
                    cpu_relax();
                } else {
                    std::this_thread::yield();
                }
            }
        }
    }
    void unlock() noexcept { flag_.store(false, std::memory_order_release); }

private:
    std::atomic<bool> flag_{false};
};

}  // namespace detail
COURIER_END_NAMESPACE
