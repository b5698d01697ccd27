// Shared by the bridge.* scenarios (bench/scenarios/bridge_*.cpp): the bridges' options, the
// courier side of a one-way transfer, and the closed loop's latch.
#pragma once

#include "queue_harness.hpp"

#include <courier/bridge/broker_bridge.hpp>
#include <courier/core/clock.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/runtime/runtime.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace courier_bench {

/// A broker-side name no earlier run (or a concurrent bench process) used: `prefix` + `what` +
/// the process id + a counter.
inline std::string fresh_broker_name(const char* prefix, const char* what, const char* sep = ".") {
    static std::atomic<unsigned> n{0};
    return std::string(prefix) + what + sep + "p" + std::to_string(::getpid()) + "n" + std::to_string(++n);
}

/// What the bridge.* scenarios run their bridges with: a deep outbox, a publisher that a slow
/// broker holds back (never drops), `max_in_flight` sends awaiting the broker's confirm.
inline courier::bridge::bridge_options bench_bridge_options(const char* name, std::size_t max_in_flight = 8192) {
    courier::bridge::bridge_options o;
    o.name = name;
    o.outbox_capacity = 1 << 16;
    o.block_timeout = std::chrono::seconds(60);
    o.max_in_flight = max_in_flight;
    o.poll_batch = 512;
    return o;
}

/// The envelope courier sends for one `Msg`, so a raw client moves payloads of the same size.
template <class Msg>
std::string envelope_payload_of() {
    auto e = courier::make_envelope(Msg{123456, now_ns()}, courier::system_clock::instance().now());
    e.metadata.producer = "courier";
    return courier::encode(e);
}

/// How one courier transfer is wired: bridge A forwards `pattern` to `forward_to`, bridge B
/// ingests `ingest`.
struct bridge_transfer {
    const char* broker = "";  // for error messages
    std::string pattern;
    courier::bridge::forward_options forward_to;
    courier::bridge::ingest_spec ingest;
    /// Both bridges' options (their names become "a" and "b").
    courier::bridge::bridge_options options = bench_bridge_options("");
    /// When set, a message with this seq goes first and is waited for, uncounted: a broker whose
    /// consumer group settles slowly (Kafka) does not count its join against the transfer.
    std::optional<std::uint64_t> warmup_seq;
    std::chrono::seconds deadline{60};
    bool flush_a = false;  // flush A's outbox before closing (else B's acks)
};

/// Where undelivered messages stopped, for a failed run's error: each bridge's counters, and the
/// receiving bus's dead letters (a subscriber that could not take the event).
inline std::string lost_where(const courier::bridge::broker_bridge& a, const courier::bridge::broker_bridge& b,
                              courier::event_bus& bus_b) {
    const auto sa = a.stats();
    const auto sb = b.stats();
    std::string s = " (bridge a: forwarded " + std::to_string(sa.forwarded) + ", confirmed " + std::to_string(sa.confirmed) +
                    ", outbox " + std::to_string(sa.outbox_depth) + ", dropped " + std::to_string(sa.dropped) +
                    ", publish errors " + std::to_string(sa.publish_errors) + "; bridge b: ingested " +
                    std::to_string(sb.ingested) + ", duplicates " + std::to_string(sb.duplicates) + ", dead-lettered " +
                    std::to_string(sb.dead_lettered) + ", acked " + std::to_string(sb.acked) + "; bus b dead letters " +
                    std::to_string(bus_b.dead_letters().size());
    if (const auto dl = bus_b.dead_letters().list(); !dl.empty() && !dl.back().errors.empty())
        s += ", the last: " + dl.back().errors.back().error;
    return s + ")";
}

/// The courier impl of a bridge.* transfer: `p.messages` Msg{seq, sent_ns} published by one
/// thread on bus A, forwarded through the broker by bridge A, ingested by bridge B and handled
/// inline in B's I/O thread (as the raw consumer), which counts, checksums and times each.
/// `make_transport()` gives each bridge its own connection. msgs/s from the first publish to the
/// last delivery; latency publish -> handler; a lost, duplicated or dropped message is an error.
template <class Msg, class MakeTransport>
run_result courier_transfer_through(const run_params& p, const bridge_transfer& t, MakeTransport&& make_transport) {
    run_result r;
    std::atomic<std::uint64_t> received{0}, checksum{0}, last_ns{0};
    std::atomic<bool> warm{false};
    // The driver blocks until the last message is handled (a wake-up per 200 us poll took CPU
    // from the I/O threads on a saturated 2-core machine; the raw drivers block in flush/join).
    std::atomic<std::uint64_t> target{~std::uint64_t{0}};
    std::mutex done_mutex;
    std::condition_variable done_cv;
    bool done = false;
    histogram latency;
    {
        courier::runtime rt_a(courier::runtime_options{.threads = 1}), rt_b(courier::runtime_options{.threads = 1});
        auto options_of = [&](const char* name) {
            auto o = t.options;
            o.name = name;
            return o;
        };
        courier::bridge::broker_bridge a(rt_a.bus(), make_transport(), options_of("a"));
        courier::bridge::broker_bridge b(rt_b.bus(), make_transport(), options_of("b"));
        if (!a.forward(t.pattern, t.forward_to)) throw std::runtime_error("forward refused");
        if (!b.ingest(t.ingest)) throw std::runtime_error("ingest refused");
        courier::subscription_options inl;
        inl.mode = courier::delivery_mode::inline_call;  // in bridge B's thread, as the raw consumer
        auto sub = rt_b.bus().subscribe<Msg>(
            [&](const Msg& m) {
                if (t.warmup_seq && m.seq == *t.warmup_seq) {
                    warm.store(true, std::memory_order_release);
                    return;
                }
                const auto now = now_ns();
                latency.record(now - m.sent_ns);  // one writer: bridge B's I/O thread
                checksum.fetch_add(m.seq, std::memory_order_relaxed);
                last_ns.store(now, std::memory_order_relaxed);
                if (received.fetch_add(1, std::memory_order_acq_rel) + 1 == target.load(std::memory_order_acquire)) {
                    std::lock_guard lock(done_mutex);
                    done = true;
                    done_cv.notify_one();
                }
            },
            inl);
        if (!a.wait_until_ready(std::chrono::seconds(10)) || !b.wait_until_ready(std::chrono::seconds(10)))
            throw std::runtime_error(std::string(t.broker) + " bridge not ready: " + a.last_error() + b.last_error());
        if (t.warmup_seq) {
            rt_a.bus().publish(Msg{*t.warmup_seq, now_ns()});
            const std::uint64_t warm_deadline = now_ns() + 30'000'000'000ull;
            while (!warm.load(std::memory_order_acquire) && now_ns() < warm_deadline)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            if (!warm.load()) throw std::runtime_error("the warm-up message never arrived: " + b.last_error());
        }
        const std::uint64_t n = p.messages;
        target.store(n, std::memory_order_release);
        const std::uint64_t start = now_ns();
        for (std::uint64_t i = 0; i < n; ++i) rt_a.bus().publish(Msg{i, now_ns()});
        {
            std::unique_lock lock(done_mutex);
            done_cv.wait_for(lock, t.deadline, [&] { return done || received.load(std::memory_order_acquire) >= n; });
        }
        r.messages = received.load(std::memory_order_acquire);
        r.elapsed = std::chrono::nanoseconds(last_ns.load() - start);
        if (r.messages != n)
            r.error = "sent " + std::to_string(n) + ", delivered " + std::to_string(r.messages) + lost_where(a, b, rt_b.bus());
        else if (checksum.load() != n * (n - 1) / 2) r.error = "checksum mismatch (a message lost or duplicated)";
        const auto sa = a.stats();
        const auto sb = b.stats();
        if (r.error.empty() && (sa.dropped || sb.duplicates || sb.dead_lettered))
            r.error = "dropped " + std::to_string(sa.dropped) + ", duplicates " + std::to_string(sb.duplicates);
        (void)(t.flush_a ? a : b).flush(std::chrono::seconds(5));
    }
    r.latency = latency;
    r.payload = envelope_payload_of<Msg>().size();
    return r;
}

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
