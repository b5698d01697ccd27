// Saga scenarios: sagas of three no-op steps per second, against the same three steps as a plain
// chain of asio::post (each step posts the next), both on one io_context run by this thread.
//   saga.3steps       courier: saga_runner with the in-memory journal (8 records per saga)
//   saga.3steps_file  courier: saga_runner with the file journal, fsync_policy::never (one
//                     write() per record; the file is removed after the run)
// Sagas are started in batches of 256, then the io_context runs until idle; every saga's third
// step counts itself, and the count must match.
#include "../harness/queue_harness.hpp"

#include <courier/runtime/runtime.hpp>
#include <courier/saga/file_journal.hpp>
#include <courier/saga/saga_runner.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

namespace courier_bench {
namespace {

struct bench_ctx {
    std::uint64_t n = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(bench_ctx, n)
};

constexpr std::uint64_t batch = 256;

run_result courier_sagas(const run_params& p, courier::saga_journal* journal) {
    boost::asio::io_context io(1);
    courier::runtime rt(io, courier::runtime_options{.threads = 1});
    courier::saga_runner sagas(rt, {.journal = journal, .retain_finished = 1024});
    std::uint64_t done = 0;
    courier::saga_definition<bench_ctx> def{"bench.saga.three.v1"};
    def.step("one", [](bench_ctx&) {}).step("two", [](bench_ctx&) {}).step("three", [&done](bench_ctx&) { ++done; });
    run_result r;
    const std::uint64_t start = now_ns();
    std::uint64_t started = 0;
    while (started < p.messages) {
        const std::uint64_t t0 = now_ns();
        const std::uint64_t k = std::min(batch, p.messages - started);
        for (std::uint64_t i = 0; i < k; ++i) {
            if (!sagas.start(def, bench_ctx{started + i})) {
                r.error = "start failed";
                return r;
            }
        }
        started += k;
        io.restart();
        io.run();
        r.latency.record((now_ns() - t0) / k);
    }
    r.elapsed = std::chrono::nanoseconds(now_ns() - start);
    r.messages = done;
    if (done != p.messages) r.error = "ran " + std::to_string(done) + " sagas of " + std::to_string(p.messages);
    return r;
}

run_result courier_memory(const run_params& p) { return courier_sagas(p, nullptr); }

run_result courier_file(const run_params& p) {
    const std::string path = "/tmp/courier-bench-saga-" + std::to_string(::getpid()) + ".journal";
    std::remove(path.c_str());
    run_result r;
    {
        courier::file_journal journal(path, {.fsync = courier::fsync_policy::never});
        r = courier_sagas(p, &journal);
    }
    std::remove(path.c_str());
    return r;
}

/// The floor: three no-op steps, each posting the next, on the same io_context.
run_result asio_chain(const run_params& p) {
    boost::asio::io_context io(1);
    std::uint64_t done = 0;
    struct chain {
        boost::asio::io_context* io;
        std::uint64_t* done;
        void step(int i) const {
            if (i == 3) {
                ++*done;
                return;
            }
            boost::asio::post(*io, [c = *this, i] { c.step(i + 1); });
        }
    };
    run_result r;
    const std::uint64_t start = now_ns();
    std::uint64_t started = 0;
    while (started < p.messages) {
        const std::uint64_t t0 = now_ns();
        const std::uint64_t k = std::min(batch, p.messages - started);
        for (std::uint64_t i = 0; i < k; ++i) chain{&io, &done}.step(0);
        started += k;
        io.restart();
        io.run();
        r.latency.record((now_ns() - t0) / k);
    }
    r.elapsed = std::chrono::nanoseconds(now_ns() - start);
    r.messages = done;
    if (done != p.messages) r.error = "ran " + std::to_string(done) + " chains of " + std::to_string(p.messages);
    return r;
}

const registration memory{{
    .name = "saga.3steps",
    .description = "sagas of three no-op steps, in-memory journal; latency = per saga in a batch of 256",
    .impls = {{"courier", courier_memory}, {"asio_post", asio_chain}},
    .messages = 200'000,
    .smoke_messages = 500,
    .uses_threads = false,
}};

const registration file{{
    .name = "saga.3steps_file",
    .description = "sagas of three no-op steps, file journal without fsync; latency = per saga in a batch of 256",
    .impls = {{"courier", courier_file}, {"asio_post", asio_chain}},
    .messages = 50'000,
    .smoke_messages = 500,
    .uses_threads = false,
}};

}  // namespace
}  // namespace courier_bench
