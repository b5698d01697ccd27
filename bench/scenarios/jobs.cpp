// Job scenarios: courier::job_system against one asio::post per job.
//   jobs.noop  P producers enqueue no-op jobs on one queue; C threads run the workers
//              (courier: the runtime on an io_context the C consumer threads run, with C
//              worker slots; asio_post: each job is a handler posted to an io_context the C
//              consumer threads run). Default job options: events are published (nobody
//              listens), no retries are needed, no timers are armed.
// Every job carries a word from the harness's sender: counts, checksums and latency (enqueue ->
// handler) are checked as in the queue scenarios.
#include "../baselines/asio_post.hpp"
#include "../harness/queue_harness.hpp"

#include <courier/jobs/job_system.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <optional>

namespace courier_bench {
namespace {

struct noop_job {
    static constexpr std::string_view job_type = "noop";
    std::uint64_t word = 0;
};

run_result courier_noop(const run_params& p) {
    boost::asio::io_context io(p.consumers);
    std::optional work{boost::asio::make_work_guard(io)};
    run_control ctl(p);
    courier::runtime rt(io, courier::runtime_options{.threads = static_cast<std::uint32_t>(p.consumers)});
    courier::job_system jobs(rt, {.concurrency = static_cast<std::uint32_t>(p.consumers)});
    auto q = jobs.queue("bench");
    q.handle<noop_job>([&ctl](const noop_job& j) {
        receiver& rx = *detail::asio_receiver;
        rx.on_receive(j.word);
        ctl.maybe_publish(rx);
    });
    std::atomic<std::uint64_t> refused{0};
    run_result r = ctl.run(
        [&](int i) {
            sender& tx = ctl.sender_of(i);
            ctl.arrive_and_wait();
            while (ctl.keep_sending(tx))
                if (!q.enqueue(noop_job{tx.next_word()})) refused.fetch_add(1, std::memory_order_relaxed);
        },
        [&](int i) {
            receiver& rx = ctl.receiver_of(i);
            detail::asio_receiver = &rx;
            ctl.arrive_and_wait();
            io.run();  // returns once the guard is gone and every job has run
            ctl.publish(rx);
            ctl.finish();
        },
        [&] { work.reset(); });
    if (refused.load() != 0 && r.error.empty()) r.error = std::to_string(refused.load()) + " enqueues were refused";
    r.payload = sizeof(noop_job);
    return r;
}

const registration noop{{
    .name = "jobs.noop",
    .description = "P producers enqueue no-op jobs on one queue; C threads run the workers",
    .impls =
        {
            {"courier", courier_noop},
            {"asio_post", asio_post_bench},
        },
    .shapes = {{1, 1}, {1, 2}, {2, 2}},
    .messages = 2'000'000,
    .smoke_messages = 2'000,
}};

}  // namespace
}  // namespace courier_bench
