// Request-reply scenarios.
//   rpc.roundtrip  one requester thread sends a request and waits for its reply before the
//                  next (a closed loop, so each round trip is one latency sample); one
//                  responder thread serves. courier: rpc::request with a callback, the
//                  responder a serial bus subscription on a user io_context that the responder
//                  thread busy-polls. Baseline "moodycamel": the raw two-thread ping-pong over
//                  two moodycamel queues (tokens, spinning), what the bus's lanes are built on.
// msgs/s is round trips per second; latency is the round trip, every one timed.
#include "../harness/queue_harness.hpp"

#include <courier/detail/moodycamel.hpp>
#include <courier/rpc/rpc.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <optional>
#include <thread>

namespace courier_bench {
namespace {

struct pong {
    static constexpr courier::event_name event_type{"bench.rpc.pong.v1"};
    std::uint64_t seq = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(pong, seq)
};
struct ping {
    static constexpr courier::event_name event_type{"bench.rpc.ping.v1"};
    using reply_type = pong;
    std::uint64_t seq = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(ping, seq)
};

/// How many round trips a run makes: --messages, or as many as fit in --duration.
struct closed_loop {
    explicit closed_loop(const run_params& p) : p_(p), start_(now_ns()) {}
    bool more(std::uint64_t done) const noexcept {
        if (p_.duration.count() == 0) return done < p_.messages;
        return (done & 255) != 0 || now_ns() - start_ < static_cast<std::uint64_t>(p_.duration.count());
    }
    const run_params& p_;
    std::uint64_t start_;
};

run_result courier_roundtrip(const run_params& p) {
    boost::asio::io_context io(1);
    auto work = boost::asio::make_work_guard(io);
    courier::runtime rt(io, courier::runtime_options{.threads = 1});
    courier::rpc rpc(rt.bus());
    auto responder = rpc.respond<ping>([](const ping& q) { return pong{q.seq}; },
                                       {.name = "bench.pong", .mode = courier::delivery_mode::serial});
    std::atomic<bool> stop{false};
    std::atomic<bool> serving{false};
    std::thread server([&] {
        serving = true;
        while (!stop.load(std::memory_order_relaxed)) {
            if (io.poll() == 0) cpu_pause();
        }
    });
    while (!serving.load()) cpu_pause();

    run_result r;
    // The reply callback runs in the responder's thread (it completes inside the io_context that
    // thread polls) and hands the sequence number back through one atomic.
    std::atomic<std::uint64_t> answered{0};
    closed_loop loop(p);
    const std::uint64_t start = now_ns();
    std::uint64_t seq = 0;
    for (; loop.more(seq); ++seq) {
        const std::uint64_t t0 = now_ns();
        rpc.request(ping{seq}, std::chrono::seconds(30), [&answered](courier::result<pong> res) {
            answered.store(res ? res->seq + 1 : ~std::uint64_t{0}, std::memory_order_release);
        });
        std::uint64_t a;

        while ((a = answered.load(std::memory_order_acquire)) != seq + 1) {
            if (a == ~std::uint64_t{0}) {
                r.error = "a request failed: " + std::to_string(rpc.metrics().timeouts) + " timeouts";
                break;
            }
            cpu_pause();
        }
        if (!r.error.empty()) break;
        r.latency.record(now_ns() - t0);
    }
    r.elapsed = std::chrono::nanoseconds(now_ns() - start);
    r.messages = seq;
    stop = true;
    server.join();
    const auto m = rpc.metrics();
    if (r.error.empty() && m.replies != seq) r.error = "sent " + std::to_string(seq) + " requests, got " + std::to_string(m.replies) + " replies";
    return r;
}

/// The floor: the same closed loop over two raw moodycamel queues, both threads spinning.
run_result moodycamel_pingpong(const run_params& p) {
    moodycamel::ConcurrentQueue<std::uint64_t> requests(64), replies(64);
    std::atomic<bool> stop{false};
    std::atomic<bool> serving{false};
    std::thread server([&] {
        moodycamel::ConsumerToken in(requests);
        moodycamel::ProducerToken out(replies);
        serving = true;
        std::uint64_t v;
        while (!stop.load(std::memory_order_relaxed)) {
            if (requests.try_dequeue(in, v)) replies.enqueue(out, v);
            else cpu_pause();
        }
    });
    while (!serving.load()) cpu_pause();
    moodycamel::ProducerToken out(requests);
    moodycamel::ConsumerToken in(replies);
    run_result r;
    closed_loop loop(p);
    const std::uint64_t start = now_ns();
    std::uint64_t seq = 0;
    for (; loop.more(seq); ++seq) {
        const std::uint64_t t0 = now_ns();
        requests.enqueue(out, seq);
        std::uint64_t v;
        while (!replies.try_dequeue(in, v)) cpu_pause();
        if (v != seq) {
            r.error = "reply " + std::to_string(v) + " to request " + std::to_string(seq);
            break;
        }
        r.latency.record(now_ns() - t0);
    }
    r.elapsed = std::chrono::nanoseconds(now_ns() - start);
    r.messages = seq;
    stop = true;
    server.join();
    return r;
}

const registration roundtrip{{
    .name = "rpc.roundtrip",
    .description = "closed-loop request-reply between two threads; msgs/s = round trips/s, latency = round trip",
    .impls = {{"courier", courier_roundtrip}, {"moodycamel", moodycamel_pingpong}},
    .messages = 200'000,
    .smoke_messages = 500,
    .uses_threads = false,
}};

}  // namespace
}  // namespace courier_bench
