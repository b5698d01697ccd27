// Background image jobs, as with Celery, BullMQ or Asynq: a queue of thumbnail jobs with
// progress and results; a flaky storage that fails the first attempts (retried with
// exponential backoff, 40 ms then 80 ms); a handler that fails on purpose for corrupt files
// (every attempt, then the dead-letter store); the dead letters inspected, the bug "fixed" and
// the jobs redriven to completion. Life-cycle events are streamed from the bus, as a UI would.
// Exits 0 only if the retries happened with the backoff asked for and the redrive completed.
#include <courier/courier.hpp>

#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

using namespace std::chrono_literals;

struct make_thumbnail {
    static constexpr std::string_view job_type = "image.thumbnail";
    std::string file;
    int width = 320;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(make_thumbnail, file, width)
};

int main() {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::job_system jobs(rt);  // declared after the runtime: destroyed (and shut down) first

    // Watch the life cycle on the bus, as a status page would (courier.job.*.v1 events).
    std::mutex m;
    std::map<std::string, int> events;
    auto watch = rt.bus().subscribe("courier.job.#", [&](const courier::message_context& ctx) {
        std::lock_guard lock(m);
        ++events[std::string(ctx.event_type())];
    }, {.name = "job-watch", .mode = courier::delivery_mode::serial});

    std::atomic<bool> corrupt_files_fixed{false};
    std::mutex attempts_mutex;
    std::map<std::string, std::vector<std::chrono::steady_clock::time_point>> attempt_times;

    auto images = jobs.queue("images", {.concurrency = 2});
    images.handle<make_thumbnail>([&](const make_thumbnail& job, courier::job_context& ctx) -> std::string {
        {
            std::lock_guard lock(attempts_mutex);
            attempt_times[job.file].push_back(std::chrono::steady_clock::now());
        }
        ctx.report_progress(10, "downloaded");
        if (job.file.starts_with("flaky") && ctx.attempt() < 3) throw std::runtime_error("storage timed out");
        if (job.file.ends_with(".corrupt") && !corrupt_files_fixed) throw std::runtime_error("not a PNG: bad header");
        ctx.report_progress(100, "stored");
        return "thumbs/" + job.file + "@" + std::to_string(job.width);
    });

    // Exponential backoff without jitter so that the gaps can be checked: 40 ms, then 80 ms.
    courier::job_options retrying{.max_attempts = 3, .backoff = courier::retry_policy::exponential(40ms, 2.0, 1s, 0)};
    retrying.backoff.jitter = 0;

    std::vector<courier::job_handle> handles;
    for (std::string f : {"cat.png", "flaky-dog.png", "holiday.corrupt", "logo.png", "scan.corrupt"})
        handles.push_back(images.enqueue(make_thumbnail{f, 320}, retrying).value());

    for (auto& h : handles) (void)h.async_wait(boost::asio::use_future).get();  // every job reaches an end state
    std::cout << "first pass:\n";
    for (auto& h : handles) {
        std::cout << "  " << h.payload<make_thumbnail>()->file << ": " << to_string(h.state()) << " after "
                  << h.attempts() << " attempt(s)";
        if (auto r = h.result<std::string>()) std::cout << " -> " << *r;
        std::cout << "\n";
    }

    // The flaky job's attempts were spaced by the backoff (at least 40 ms, then 80 ms).
    std::vector<long> gaps;
    {
        std::lock_guard lock(attempts_mutex);
        auto& t = attempt_times["flaky-dog.png"];
        for (std::size_t i = 1; i < t.size(); ++i)
            gaps.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(t[i] - t[i - 1]).count());
    }
    const bool backoff_ok = gaps.size() == 2 && gaps[0] >= 40 && gaps[1] >= 80;
    std::cout << "flaky-dog.png retried with exponential backoff: gaps of at least 40 and 80 ms: "
              << (backoff_ok ? "yes" : "no") << "\n";

    // Inspect the dead letters: each with its payload and every attempt's error.
    auto dead = images.dead_letters().list();
    std::cout << "dead letters: " << dead.size() << "\n";
    for (auto& d : dead) {
        std::cout << "  " << d.type << " " << d.payload.dump() << ", " << d.attempts << " attempts, errors:";
        for (auto& e : d.errors) std::cout << " [" << e.attempt << "] " << e.error << ";";
        std::cout << "\n";
    }

    // Fix the cause, redrive, and wait for the redriven jobs.
    corrupt_files_fixed = true;
    const std::size_t redriven = images.dead_letters().redrive_all();
    for (auto& d : dead) (void)d.handle.async_wait(boost::asio::use_future).get();
    std::cout << "redrove " << redriven << " job(s):";
    for (auto& d : dead) std::cout << " " << d.handle.payload<make_thumbnail>()->file << "=" << to_string(d.handle.state());
    std::cout << "\n";

    auto stats = images.stats();
    (void)jobs.shutdown(1s);
    rt.stop();  // drains the bus, so every life-cycle event reached the watcher
    {
        std::lock_guard lock(m);
        std::cout << "life-cycle events seen:";
        for (auto& [name, n] : events) std::cout << " " << name << "=" << n;
        std::cout << "\n";
    }

    std::lock_guard lock(m);
    const bool ok = backoff_ok && dead.size() == 2 && redriven == 2 && images.dead_letters().size() == 0 &&
                    std::all_of(handles.begin(), handles.end(),
                                [](const courier::job_handle& h) { return h.state() == courier::job_state::completed; }) &&
                    stats.completed == 5 && events["courier.job.completed.v1"] == 5 &&
                    events["courier.job.failed.v1"] == 2 + 2 * 3;  // flaky: 2 failed attempts; each corrupt file: 3
    std::cout << (ok ? "image_jobs: ok\n" : "image_jobs: FAILED\n");
    return ok ? 0 : 1;
}
