// Shared by the bridge.* scenarios (bench/scenarios/bridge_*.cpp).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace courier_bench {

/// The closed-loop driver's wait for the answer to one ping: the handler that sees the pong
/// posts its number, the driver blocks until it arrives (or a deadline). Blocking, as the raw
/// clients' drivers do (a read on a socket, a condition variable): a spinning driver would take
/// one of the machine's cores from the bridges' I/O threads it is measuring.
class answer_latch {
public:
    /// From the handler: ping `seq` was answered.
    void post(std::uint64_t seq) {
        {
            std::lock_guard lock(mutex_);
            answered_ = seq + 1;
        }
        cv_.notify_one();
    }
    /// From the driver: true when ping `seq` was answered before `timeout`.
    bool wait(std::uint64_t seq, std::chrono::nanoseconds timeout) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, timeout, [&] { return answered_ == seq + 1; });
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::uint64_t answered_ = 0;
};

}  // namespace courier_bench
