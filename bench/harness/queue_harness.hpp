// The producer/consumer harness behind the queue scenarios (and any scenario that moves
// messages between threads): fixed-size messages that carry their send time, the start
// barrier, count or duration stop, spin-then-yield waiting, latency sampling, and the
// count + checksum check that makes a run that lost or duplicated a message fail.
#pragma once

#include "registry.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace courier_bench {

// ---------------------------------------------------------------------------------------
// Messages

/// A message of exactly `Bytes` bytes. `word` carries either a send timestamp (sampled
/// messages) or a producer id and sequence number; the rest is filler that is copied like a
/// real payload would be.
template <std::size_t Bytes>
struct message {
    static_assert(Bytes >= 16);
    std::uint64_t word = 0;
    std::array<std::byte, Bytes - sizeof(std::uint64_t)> filler{};
};
/// The 8-byte message is the word alone.
template <>
struct message<8> {
    std::uint64_t word = 0;
};

/// Payload sizes the queue scenarios are compiled for; --payload rounds up to one of them
/// (each size is a separate instantiation of every queue, so the list is kept short).
inline constexpr std::array<std::size_t, 6> payload_sizes{8, 16, 64, 256, 1024, 4096};

/// Calls `f.template operator()<message<N>>()` with the smallest built N >= `bytes`.
/// Errors: throws std::invalid_argument above 4096 bytes.
template <class F>
decltype(auto) with_message(std::size_t bytes, F&& f) {
    if (bytes <= 8) return f.template operator()<message<8>>();
    if (bytes <= 16) return f.template operator()<message<16>>();
    if (bytes <= 64) return f.template operator()<message<64>>();
    if (bytes <= 256) return f.template operator()<message<256>>();
    if (bytes <= 1024) return f.template operator()<message<1024>>();
    if (bytes <= 4096) return f.template operator()<message<4096>>();
    throw std::invalid_argument("--payload: queue scenarios support at most 4096 bytes");
}

// ---------------------------------------------------------------------------------------
// Waiting

/// One pause instruction: tells the core this is a spin loop (saves power, yields the
/// pipeline to a hyper-thread sibling, avoids the memory-order mis-speculation on exit).
inline void cpu_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

/// Spin with pause, then yield the time slice. Pure spinning is what a throughput benchmark
/// does on idle cores; the yield after a while keeps 8P8C on 2 cores (or a CTest run beside
/// other tests) from burning whole time slices while the thread it waits for is descheduled.
class backoff {
public:
    void pause() noexcept {
        if (++spins_ < spin_limit) {
            cpu_pause();
        } else {
            std::this_thread::yield();
        }
    }
    void reset() noexcept { spins_ = 0; }

private:
    static constexpr unsigned spin_limit = 256;
    unsigned spins_ = 0;
};

// ---------------------------------------------------------------------------------------
// Clock and message words

/// Steady-clock nanoseconds (CLOCK_MONOTONIC through the vDSO: ~20 ns, no system call).
inline std::uint64_t now_ns() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

/// Bit 63 of a word marks a sampled message whose low 63 bits are its send time.
inline constexpr std::uint64_t sampled_bit = std::uint64_t{1} << 63;

/// The sending half of a producer: makes each message's word and sums what it sent.
/// Cache-line aligned (as is receiver): a sender sharing a line with a consumer's counters
/// would make every message pay for the line's trips between the cores.
class alignas(64) sender {
public:
    sender() = default;
    sender(int id, std::uint32_t sample_every, std::uint64_t quota)
        : id_(static_cast<std::uint64_t>(id) + 1), every_(sample_every), quota_(quota) {}

    /// The word for the next message. Every `sample_every`-th is stamped with the current
    /// time, taken last so that the measured span starts as close to the push as possible.
    std::uint64_t next_word() noexcept {
        std::uint64_t w;
        if (++until_sample_ >= every_) {
            until_sample_ = 0;
            w = sampled_bit | now_ns();
        } else {
            w = (id_ << 40) | sent_;
        }
        ++sent_;
        sum_ += w;
        return w;
    }
    std::uint64_t sent() const noexcept { return sent_; }
    std::uint64_t sum() const noexcept { return sum_; }
    /// This producer's share of a counted run (computed once: a division per message in the
    /// send loop cost every implementation 20-40 cycles).
    std::uint64_t quota() const noexcept { return quota_; }

private:
    std::uint64_t id_ = 1;
    std::uint32_t every_ = 1;
    std::uint32_t until_sample_ = 0;
    std::uint64_t quota_ = 0;
    std::uint64_t sent_ = 0;
    std::uint64_t sum_ = 0;
};

class run_control;

/// The receiving half of a consumer: counts, sums and times what arrives.
class alignas(64) receiver {
public:
    /// Accounts for one received message word.
    void on_receive(std::uint64_t w) noexcept {
        if (w & sampled_bit) {
            const std::uint64_t now = now_ns();
            const std::uint64_t sent = w & ~sampled_bit;
            latency_.record(now > sent ? now - sent : 0);
        }
        ++received_;
        sum_ += w;
    }
    std::uint64_t received() const noexcept { return received_; }
    std::uint64_t sum() const noexcept { return sum_; }
    const histogram& latency() const noexcept { return latency_; }

private:
    friend class run_control;
    histogram latency_;
    std::uint64_t received_ = 0;
    std::uint64_t published_ = 0;  // part of received_ already added to run_control's total
    std::uint64_t sum_ = 0;
};

// ---------------------------------------------------------------------------------------
// One run

/// Runs P producer and C consumer threads through one measured run: start barrier, count or
/// duration stop, completion detection, stall detection and the final verification.
///
/// Producer bodies loop `while (ctl.keep_sending(tx))`; consumer bodies call
/// `ctl.publish(rx)` now and then and, when they find nothing, `if (ctl.done(rx)) break;`.
class run_control {
public:
    explicit run_control(const run_params& p) : params_(p) {
        if (p.producers < 1 || p.consumers < 1) throw std::invalid_argument("producers and consumers must be >= 1");
        if (p.duration.count() == 0) expected_.store(p.messages, std::memory_order_relaxed);
        senders_.resize(static_cast<std::size_t>(p.producers));
        receivers_.resize(static_cast<std::size_t>(p.consumers));
        const auto producers = static_cast<std::uint64_t>(p.producers);
        for (int i = 0; i < p.producers; ++i) {
            const auto n = static_cast<std::uint64_t>(i);
            senders_[n] = sender(i, p.sample_every, p.messages / producers + (n < p.messages % producers ? 1 : 0));
        }
    }

    const run_params& params() const noexcept { return params_; }

    /// Waits until every thread of the run is ready, so that set-up (tokens, sockets) is
    /// not timed. Each producer and consumer body calls it once, after its set-up.
    void arrive_and_wait() noexcept {
        ready_.fetch_add(1, std::memory_order_acq_rel);
        while (!go_.load(std::memory_order_acquire)) cpu_pause();
    }

    /// True while producer `tx` should send another message: its share of --messages is not
    /// sent yet, or the --duration has not run out. Checks the stop flag every 256 messages.
    /// With --rate, it first waits (spinning) for the message's scheduled send time.
    bool keep_sending(const sender& tx) const noexcept {
        bool more;
        if (params_.duration.count() == 0)
            more = tx.sent() < tx.quota();
        else
            more = (tx.sent() & 255) != 0 || (!stop_.load(std::memory_order_relaxed) && !aborted());
        if (more && params_.rate > 0) pace(tx);
        return more;
    }

    /// Adds what `rx` received since its last publish to the run's total (every ~1024
    /// messages is plenty: the total is only read to detect the end and stalls).
    void publish(receiver& rx) noexcept {
        if (rx.received_ != rx.published_) {
            delivered_.fetch_add(rx.received_ - rx.published_, std::memory_order_acq_rel);
            rx.published_ = rx.received_;
        }
    }
    /// Publishes at every 1024th message; for the consumer's hot loop.
    void maybe_publish(receiver& rx) noexcept {
        if ((rx.received_ & 1023) == 0) publish(rx);
    }

    /// Called by a consumer that found its source empty: publishes its count and says
    /// whether every message sent has been received (or the run was aborted). The first
    /// consumer to see the end stamps the end time.
    bool done(receiver& rx) noexcept {
        publish(rx);
        if (aborted()) return true;
        if (delivered_.load(std::memory_order_acquire) < expected_.load(std::memory_order_acquire)) return false;
        finish();
        return true;
    }

    /// Stamps the end of the run if nobody has yet (for consumers that know by other means,
    /// such as io_context::run returning).
    void finish() noexcept {
        std::uint64_t zero = 0;
        end_ns_.compare_exchange_strong(zero, now_ns(), std::memory_order_acq_rel);
    }

    /// True once a thread failed; every loop that may wait must check it.
    bool aborted() const noexcept { return aborted_.load(std::memory_order_acquire); }
    void abort(std::string why) {
        {
            std::lock_guard lock(error_mutex_);
            if (error_.empty()) error_ = std::move(why);
        }
        aborted_.store(true, std::memory_order_release);
    }

    sender& sender_of(int i) noexcept { return senders_[static_cast<std::size_t>(i)]; }
    receiver& receiver_of(int i) noexcept { return receivers_[static_cast<std::size_t>(i)]; }

    /// Runs `producer(i)` on P threads and `consumer(i)` on C threads, times the run and
    /// verifies it. `after_producers` runs once every producer has returned (to close a
    /// queue or release an io_context's work guard). Bodies must call arrive_and_wait().
    run_result run(const std::function<void(int)>& producer, const std::function<void(int)>& consumer,
                   const std::function<void()>& after_producers = {}) {
        const int p = params_.producers, c = params_.consumers;
        std::atomic<int> consumers_left{c};
        std::vector<std::thread> producers, consumers;
        auto guarded = [this](const std::function<void(int)>& body, int i) {
            try {
                body(i);
            } catch (const std::exception& e) {
                abort(std::string("a thread threw: ") + e.what());
            }
        };
        for (int i = 0; i < c; ++i)
            consumers.emplace_back([&, i] {
                guarded(consumer, i);
                consumers_left.fetch_sub(1, std::memory_order_acq_rel);
            });
        for (int i = 0; i < p; ++i) producers.emplace_back([&, i] { guarded(producer, i); });

        while (ready_.load(std::memory_order_acquire) < p + c && !aborted()) std::this_thread::yield();
        const std::uint64_t start = now_ns();
        start_ns_.store(start, std::memory_order_relaxed);  // published by the release below
        go_.store(true, std::memory_order_release);

        if (params_.duration.count() > 0) sleep_or_abort(params_.duration);
        stop_.store(true, std::memory_order_relaxed);
        for (auto& t : producers) t.join();
        std::uint64_t sent = 0, sent_sum = 0;
        for (auto& s : senders_) {
            sent += s.sent();
            sent_sum += s.sum();
        }
        expected_.store(sent, std::memory_order_release);
        if (after_producers) after_producers();

        wait_for_consumers(consumers_left, sent);
        for (auto& t : consumers) t.join();

        run_result r;
        std::uint64_t received = 0, received_sum = 0;
        for (auto& rx : receivers_) {
            received += rx.received();
            received_sum += rx.sum();
            r.latency.merge(rx.latency());
        }
        r.messages = received;
        const std::uint64_t end = end_ns_.load(std::memory_order_acquire);
        r.elapsed = std::chrono::nanoseconds(end > start ? end - start : 0);
        if (aborted()) {
            r.error = error_;
        } else if (received != sent) {
            r.error = "sent " + std::to_string(sent) + " messages but received " + std::to_string(received);
        } else if (received_sum != sent_sum) {
            r.error = "checksum mismatch: " + std::to_string(sent) + " messages arrived but not the ones sent";
        } else if (params_.duration.count() == 0 && sent != params_.messages) {
            r.error = "sent " + std::to_string(sent) + " messages instead of " + std::to_string(params_.messages);
        }
        return r;
    }

private:
    /// Each producer sends rate/P msgs/s on a fixed schedule from the start. A message is
    /// stamped when it actually leaves, not when it was due, so a producer that falls behind
    /// does not inflate latency (no coordinated-omission correction: the percentiles are of
    /// messages as sent).
    void pace(const sender& tx) const noexcept {
        const double per_producer = params_.rate / params_.producers;
        const auto due = start_ns_.load(std::memory_order_relaxed) +
                         static_cast<std::uint64_t>(static_cast<double>(tx.sent()) * 1e9 / per_producer);
        while (now_ns() < due && !aborted()) cpu_pause();
    }

    void sleep_or_abort(std::chrono::nanoseconds d) {
        const auto until = std::chrono::steady_clock::now() + d;
        while (std::chrono::steady_clock::now() < until && !aborted())
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }

    /// A queue that loses a message would leave the consumers waiting forever; a run whose
    /// delivered count does not move for `stall_limit` while messages are missing is aborted
    /// with the counts, so the bug is reported instead of hanging the suite.
    void wait_for_consumers(const std::atomic<int>& left, std::uint64_t sent) {
        constexpr auto stall_limit = std::chrono::seconds(10);
        std::uint64_t last = delivered_.load(std::memory_order_acquire);
        auto last_change = std::chrono::steady_clock::now();
        while (left.load(std::memory_order_acquire) > 0) {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            const std::uint64_t now = delivered_.load(std::memory_order_acquire);
            if (now != last) {
                last = now;
                last_change = std::chrono::steady_clock::now();
            } else if (std::chrono::steady_clock::now() - last_change > stall_limit) {
                abort("stalled: " + std::to_string(now) + " of " + std::to_string(sent) +
                      " messages received, none for 10 s (lost messages?)");
                finish();
            }
        }
    }

    run_params params_;
    std::vector<sender> senders_;
    std::vector<receiver> receivers_;
    alignas(64) std::atomic<int> ready_{0};
    std::atomic<bool> go_{false};
    std::atomic<bool> stop_{false};
    alignas(64) std::atomic<std::uint64_t> delivered_{0};
    alignas(64) std::atomic<std::uint64_t> expected_{~std::uint64_t{0}};
    std::atomic<std::uint64_t> start_ns_{0};
    std::atomic<std::uint64_t> end_ns_{0};
    std::atomic<bool> aborted_{false};
    std::mutex error_mutex_;
    std::string error_;
};

// ---------------------------------------------------------------------------------------
// Queues with push/pop: the common case

/// Runs one measured run of a queue `Queue` (see README: constructed from run_params, with
/// producer_token()/consumer_token(), try_push(token, Msg&) -> bool (false: full, retry) and
/// try_pop(token, Msg&) -> bool). Producers push their share as fast as the queue takes it;
/// consumers spin on try_pop with a pause, as a high-throughput consumer would.
template <class Queue, class Msg>
run_result run_queue(const run_params& p) {
    Queue q(p);
    run_control ctl(p);
    const Msg prototype{};
    return ctl.run(
        [&](int i) {
            auto token = q.producer_token();
            sender& tx = ctl.sender_of(i);
            ctl.arrive_and_wait();
            while (ctl.keep_sending(tx)) {
                Msg m = prototype;
                m.word = tx.next_word();
                backoff wait;
                while (!q.try_push(token, m)) {
                    if (ctl.aborted()) return;
                    wait.pause();
                }
            }
        },
        [&](int i) {
            auto token = q.consumer_token();
            receiver& rx = ctl.receiver_of(i);
            ctl.arrive_and_wait();
            Msg m;
            backoff wait;
            for (;;) {
                if (q.try_pop(token, m)) {
                    rx.on_receive(m.word);
                    ctl.maybe_publish(rx);
                    wait.reset();
                } else if (ctl.done(rx)) {
                    return;
                } else {
                    wait.pause();
                }
            }
        });
}

/// The run function of queue `Queue<Msg>` at the payload asked for: what a scenario puts
/// in an impl, e.g. `{"moodycamel", queue_bench<moodycamel_queue>}`.
template <template <class> class Queue>
run_result queue_bench(const run_params& p) {
    return with_message(p.payload, [&]<class Msg>() {
        run_result r = run_queue<Queue<Msg>, Msg>(p);
        r.payload = sizeof(Msg);
        return r;
    });
}

}  // namespace courier_bench
