// Shared by the reliability tests: a watchdog that fails the test process when a bound passes
// (a deadlock must fail, never hang CI), deadline waits, a peak-RSS sampler, the stress scale and
// the events the tests publish.
#pragma once

#include <courier/event/event_traits.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#ifndef COURIER_STRESS_SCALE
#define COURIER_STRESS_SCALE 1
#endif

namespace reliability {

using namespace std::chrono_literals;

/// Sizes shrink by this factor under sanitizers (tests/CMakeLists.txt sets it).
inline constexpr int scale = COURIER_STRESS_SCALE;

/// Fails the whole test process (exit code 86, with a message on stderr) unless disarmed within
/// `limit`: the bound after which a deadlock is declared. Destroying it disarms it.
class watchdog {
public:
    watchdog(std::string what, std::chrono::milliseconds limit) : what_(std::move(what)) {
        thread_ = std::thread([this, limit] {
            std::unique_lock lock(mutex_);
            if (!cv_.wait_for(lock, limit, [this] { return disarmed_; })) {
                std::fprintf(stderr, "reliability watchdog: '%s' did not finish within %lld ms (deadlock?)\n",
                             what_.c_str(), static_cast<long long>(limit.count()));
                std::fflush(stderr);
                std::_Exit(86);
            }
        });
    }
    ~watchdog() {
        {
            std::lock_guard lock(mutex_);
            disarmed_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    watchdog(const watchdog&) = delete;
    watchdog& operator=(const watchdog&) = delete;

private:
    std::string what_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool disarmed_ = false;
    std::thread thread_;
};

/// Polls `p` until it holds or `limit` passes; true when it held.
template <class Pred>
bool wait_until(Pred p, std::chrono::milliseconds limit = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!p()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(200us);
    }
    return true;
}

/// Spins (no sleep, no yield) for `d`: a handler that takes a known time.
inline void busy_for(std::chrono::nanoseconds d) {
    const auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
    }
}

/// The whole content of a file ("" when it cannot be read).
inline std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

/// Resident set size of this process now, in bytes (from /proc/self/statm).
inline std::size_t current_rss() {
    std::ifstream in("/proc/self/statm");
    std::size_t pages_total = 0, pages_resident = 0;
    in >> pages_total >> pages_resident;
    return pages_resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

/// Samples the RSS every millisecond on its own thread and keeps the peak.
class rss_sampler {
public:
    rss_sampler() : baseline_(current_rss()), peak_(baseline_) {
        thread_ = std::thread([this] {
            while (!stop_.load(std::memory_order_acquire)) {
                const auto now = current_rss();
                if (now > peak_.load(std::memory_order_relaxed)) peak_.store(now, std::memory_order_relaxed);
                std::this_thread::sleep_for(1ms);
            }
        });
    }
    ~rss_sampler() { stop(); }
    void stop() {
        if (thread_.joinable()) {
            stop_.store(true, std::memory_order_release);
            thread_.join();
        }
    }
    std::size_t baseline() const { return baseline_; }
    std::size_t peak() const { return peak_.load(std::memory_order_relaxed); }

private:
    std::size_t baseline_;
    std::atomic<std::size_t> peak_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

/// A numbered event with a payload of `pad` bytes (so that a queue's memory shows in the RSS).
struct numbered {
    static constexpr courier::event_name event_type{"reliability.item.sent.v1"};
    std::uint64_t n = 0;
    std::uint64_t producer = 0;
    std::string pad;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(numbered, n, producer, pad)
};

}  // namespace reliability
