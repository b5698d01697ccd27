// job_status_web: live job status in a browser. POST /reports enqueues a long report job on a
// courier::job_system and answers at once with its id; GET /status/{id} streams the job's
// progress and its end as Server-Sent Events, fed by the job events on the courier bus; GET /
// serves a page with a button and a progress bar (EventSource). Boost.Beast, asynchronous.
//
//   job_status_web [--port N] [--workers N] [--http-threads N] [--steps N] [--step-ms MS] [--keep N]
//
// --port 0 picks a free port. The first line on stdout is always
// "listening on http://127.0.0.1:PORT/" (tests read it). SIGINT or SIGTERM stop it cleanly.
#include "http_server.hpp"
#include "job_tracker.hpp"
#include "report_job.hpp"

#include <courier/jobs/job_system.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct cli {
    unsigned short port = 8080;
    std::uint32_t workers = 4;       ///< report jobs running at once
    std::uint32_t http_threads = 2;  ///< threads running the HTTP io_context
    std::uint32_t steps = 10;
    std::uint32_t step_ms = 100;
    std::uint32_t keep = 1000;  ///< finished jobs remembered for late GET /status
};

constexpr std::string_view usage =
    "usage: job_status_web [--port N] [--workers N] [--http-threads N] [--steps N] [--step-ms MS] [--keep N]\n"
    "  --port N          port on 127.0.0.1 (0: pick a free one; default 8080)\n"
    "  --workers N       report jobs running at once (default 4)\n"
    "  --http-threads N  threads serving HTTP (default 2)\n"
    "  --steps N         default steps of a report (default 10)\n"
    "  --step-ms MS      default duration of a step (default 100)\n"
    "  --keep N          finished jobs kept for late status requests (default 1000)\n";

bool parse_number(std::string_view text, std::uint32_t lo, std::uint32_t hi, std::uint32_t& out) {
    std::uint32_t v = 0;
    auto [p, e] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (e != std::errc() || p != text.data() + text.size() || v < lo || v > hi) return false;
    out = v;
    return true;
}

bool parse_cli(int argc, char** argv, cli& c) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help" || a == "-h") {
            std::cout << usage;
            std::exit(0);
        }
        if (i + 1 >= argc) {
            std::cerr << "job_status_web: " << a << " needs a value\n" << usage;
            return false;
        }
        const std::string_view v = argv[++i];
        std::uint32_t n = 0;
        bool ok = true;
        if (a == "--port") {
            ok = parse_number(v, 0, 65535, n);
            c.port = static_cast<unsigned short>(n);
        } else if (a == "--workers") ok = parse_number(v, 1, 256, c.workers);
        else if (a == "--http-threads") ok = parse_number(v, 1, 64, c.http_threads);
        else if (a == "--steps") ok = parse_number(v, 1, 1000, c.steps);
        else if (a == "--step-ms") ok = parse_number(v, 0, 60000, c.step_ms);
        else if (a == "--keep") ok = parse_number(v, 1, 1000000, c.keep);
        else {
            std::cerr << "job_status_web: unknown option " << a << "\n" << usage;
            return false;
        }
        if (!ok) {
            std::cerr << "job_status_web: bad value '" << v << "' for " << a << "\n" << usage;
            return false;
        }
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace job_status_web;
    cli c;
    if (!parse_cli(argc, argv, c)) return 2;

    // The job side: a runtime whose pool has a thread per report worker, plus one so the
    // bus and the timers never wait behind blocking report handlers.
    courier::runtime rt({.threads = c.workers + 1});
    courier::job_system jobs(rt, {.concurrency = c.workers});
    auto reports = jobs.queue("reports", {.concurrency = c.workers});
    reports.handle<report_job>([](const report_job& job, courier::job_context& ctx) { return run_report(job, ctx); });

    // Declared before the io_context: sessions still alive when it is destroyed unwatch here.
    job_tracker tracker(rt.bus(), c.keep);
    tracker.subscribe();

    net::io_context ioc;
    auto state = std::make_shared<server_state>(reports, tracker, server_options{c.steps, c.step_ms});
    std::unique_ptr<http_server> server;
    try {
        server = std::make_unique<http_server>(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), c.port), state);
    } catch (const std::exception& e) {
        std::cerr << "job_status_web: cannot listen on 127.0.0.1:" << c.port << ": " << e.what() << "\n";
        return 1;
    }
    std::cout << "listening on http://127.0.0.1:" << server->port() << "/" << std::endl;
    server->start();

    // SIGINT/SIGTERM: stop accepting, close every connection, and give them 3 s to go before
    // the io_context is stopped outright. The loop ends by itself once nothing is left to do.
    net::signal_set signals(ioc, SIGINT, SIGTERM);
    net::steady_timer drain(ioc);
    auto deadline = std::chrono::steady_clock::now();
    std::function<void()> wait_drained = [&] {
        if (state->connections.load() == 0) return;
        if (std::chrono::steady_clock::now() > deadline) {
            std::cerr << "job_status_web: " << state->connections.load() << " connection(s) did not close in time\n";
            ioc.stop();
            return;
        }
        drain.expires_after(std::chrono::milliseconds(20));
        drain.async_wait([&](boost::system::error_code ec) {
            if (!ec) wait_drained();
        });
    };
    signals.async_wait([&](boost::system::error_code ec, int sig) {
        if (ec) return;
        std::cerr << "job_status_web: signal " << sig << ", shutting down\n";
        server->stop();
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
        wait_drained();
    });

    std::vector<std::thread> threads;
    for (std::uint32_t i = 1; i < c.http_threads; ++i) threads.emplace_back([&] { ioc.run(); });
    ioc.run();
    for (auto& t : threads) t.join();

    // Reports still running get 2 s to finish; then they are cancelled (the handler checks
    // between slices of a step) and waited for. After that no more events can come, and the
    // subscriptions end before the io_context goes away.
    const courier::job_shutdown_report report = jobs.shutdown(std::chrono::seconds(2));
    std::size_t stuck = 0;
    for (const auto& h : report.still_running) {
        if (h.async_wait(boost::asio::use_future).wait_for(std::chrono::seconds(3)) != std::future_status::ready) ++stuck;
    }
    tracker.unsubscribe();
    const tracker_stats ts = tracker.stats();
    std::cout << "stopped: " << state->requests.load() << " requests, " << ts.jobs << " jobs tracked, "
              << report.cancelled.size() << " cancelled before they started, " << report.still_running.size()
              << " cancelled while running, " << stuck << " did not stop" << std::endl;
    server.reset();
    return stuck == 0 ? 0 : 1;
}
