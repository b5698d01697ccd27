// Shared by the reliability tests: a watchdog that fails the test process when a bound passes
// (a deadlock must fail, never hang CI), deadline waits, a peak-RSS sampler, the stress scale,
// the events the tests publish and request, and a broker transport that cannot keep up.
#pragma once

#include <courier/bridge/transport.hpp>
#include <courier/event/event_traits.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

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

/// Raises `slot` to `v` if `v` is larger (the slowest call seen by several threads).
inline void note_max(std::atomic<std::int64_t>& slot, std::int64_t v) {
    for (auto s = slot.load(); v > s && !slot.compare_exchange_weak(s, v);) {
    }
}

/// How many handlers run at once, and the most that ever did: `auto in = gauge.enter();` at the
/// top of a handler counts it until the handler returns or throws.
class concurrency_gauge {
public:
    class scope {
    public:
        explicit scope(std::atomic<int>& running) : running_(running) {}
        ~scope() { running_.fetch_sub(1); }
        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;

    private:
        std::atomic<int>& running_;
    };
    [[nodiscard]] scope enter() {
        const int now = running_.fetch_add(1) + 1;
        for (int p = peak_.load(); now > p && !peak_.compare_exchange_weak(p, now);) {
        }
        return scope(running_);
    }
    int running() const { return running_.load(); }
    int peak() const { return peak_.load(); }

private:
    std::atomic<int> running_{0}, peak_{0};
};

/// Microseconds since `t0` on the steady clock.
inline std::int64_t micros_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
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

/// Producer threads that start at the same moment, so that a shutdown lands in the middle of
/// all of them: add() starts `producers` threads, each of which runs `body(p)` once go() is
/// called; join() waits for them.
class starting_line {
public:
    template <class Body>
    void add(int producers, Body body) {
        for (int p = 0; p < producers; ++p)
            threads_.emplace_back([this, body, p] {
                while (!go_.load()) std::this_thread::yield();
                body(p);
            });
    }
    void go() { go_.store(true); }
    void join() {
        for (auto& t : threads_) t.join();
    }

private:
    std::atomic<bool> go_{false};
    std::vector<std::thread> threads_;
};

/// What publishers of `numbered` counted: subscriptions that accepted an event, subscriptions
/// that refused one (a publish racing the close), and publishes made.
struct publish_tally {
    std::atomic<std::uint64_t> accepted{0}, rejected{0}, published{0};
};

/// Publishes numbered{0, 1, ...} as producer `p` until the bus refuses a publish as closed
/// (refused as a whole: nothing of it was accepted).
template <class Bus>
void publish_until_closed(Bus& bus, int p, publish_tally& t) {
    for (std::uint64_t i = 0;; ++i) {
        const auto r = bus.publish(numbered{i, static_cast<std::uint64_t>(p), {}});
        if (r.closed) return;
        t.accepted.fetch_add(r.deliveries, std::memory_order_relaxed);
        t.rejected.fetch_add(r.rejected, std::memory_order_relaxed);
        t.published.fetch_add(1, std::memory_order_relaxed);
    }
}

/// The reply of the rpc tests: echoes the request's number and producer.
struct quote {
    static constexpr courier::event_name event_type{"reliability.quote.given.v1"};
    std::uint64_t n = 0;
    std::uint64_t producer = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(quote, n, producer)
};

/// The request of the rpc tests; `kind` tells a fault-injecting responder what to do.
struct quote_request {
    static constexpr courier::event_name event_type{"reliability.quote.requested.v1"};
    using reply_type = quote;
    std::uint64_t n = 0;
    std::uint64_t producer = 0;
    int kind = 0;
    std::string pad;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(quote_request, n, producer, kind, pad)
};

/// A broker that cannot keep up: passes everything to another transport (a loopback one), each
/// publish spinning for `delay` first. Driven by the bridge's I/O thread only, as any transport.
class slow_transport final : public courier::bridge::transport {
public:
    slow_transport(std::unique_ptr<courier::bridge::transport> inner, std::chrono::nanoseconds delay)
        : inner_(std::move(inner)), delay_(delay) {}

    const courier::bridge::capabilities& caps() const noexcept override { return inner_->caps(); }
    courier::result<void> connect(courier::duration timeout) override { return inner_->connect(timeout); }
    bool connected() const noexcept override { return inner_->connected(); }
    void close() noexcept override { inner_->close(); }
    courier::result<void> publish(std::uint64_t sequence, const courier::bridge::wire_message& m) override {
        busy_for(delay_);
        return inner_->publish(sequence, m);
    }
    courier::result<void> subscribe(const courier::bridge::ingest_spec& spec) override { return inner_->subscribe(spec); }
    courier::result<void> poll(courier::duration max_wait, std::size_t max_messages,
                               const std::function<void(courier::bridge::publish_confirm)>& on_confirm,
                               const std::function<void(courier::bridge::inbound_message&&)>& on_message) override {
        return inner_->poll(max_wait, max_messages, on_confirm, on_message);
    }
    courier::result<void> ack(const courier::bridge::ingest_spec& spec, const courier::bridge::delivery_tag& tag) override {
        return inner_->ack(spec, tag);
    }
    courier::result<void> nack(const courier::bridge::ingest_spec& spec, const courier::bridge::delivery_tag& tag,
                               bool requeue) override {
        return inner_->nack(spec, tag, requeue);
    }
    void wake() noexcept override { inner_->wake(); }
    std::string default_topic() const override { return inner_->default_topic(); }

private:
    std::unique_ptr<courier::bridge::transport> inner_;
    std::chrono::nanoseconds delay_;
};

}  // namespace reliability
