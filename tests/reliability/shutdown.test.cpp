// Shutdown in the middle of heavy traffic: producers keep publishing (or enqueueing) while the
// bus (or job system) shuts down. Every message a publish accepted is either handled or handed
// back (dead-lettered with reason `shutdown`, counted in the report), counted exactly; nothing is
// handled twice; and a watchdog fails the test if shutdown deadlocks.
#include "support.hpp"

#include <courier/bus/event_bus.hpp>
#include <courier/jobs/job_system.hpp>
#include <courier/runtime/runtime.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using reliability::numbered;
using reliability::busy_for;
using reliability::wait_until;

TEST_CASE("bus shutdown under heavy traffic delivers or hands back every accepted message, exactly",
          "[reliability][shutdown]") {
    std::chrono::milliseconds timeout{};
    SECTION("a short timeout hands most of the backlog back") { timeout = 5ms; }
    SECTION("a long timeout drains everything") { timeout = 30s; }
    reliability::watchdog dog("bus shutdown under traffic", 120s);

    courier::runtime rt(courier::runtime_options{.threads = 2});
    struct counted {
        std::atomic<std::uint64_t> calls{0};
    };
    counted pooled, serial, keyed, inlined;
    auto slow = [](counted& c) {
        return [&c](const numbered&) {
            c.calls.fetch_add(1, std::memory_order_relaxed);
            busy_for(2us);
        };
    };
    courier::subscription_options po;
    po.mode = courier::delivery_mode::pooled;
    courier::subscription_options so;
    so.mode = courier::delivery_mode::serial;
    courier::subscription_options ko;
    ko.mode = courier::delivery_mode::keyed;
    ko.lanes = 4;
    ko.key = courier::key_by<numbered>([](const numbered& e) { return e.n; });
    courier::subscription_options io;
    io.mode = courier::delivery_mode::inline_call;
    // Unbounded queues (on purpose), so that no publish is refused: every accepted message must
    // be counted by the drain or by the hand-back, not by an overflow policy.
    po.capacity = so.capacity = ko.capacity = 0;
    auto s1 = rt.bus().subscribe<numbered>(slow(pooled), po);
    auto s2 = rt.bus().subscribe<numbered>(slow(serial), so);
    auto s3 = rt.bus().subscribe<numbered>(slow(keyed), ko);
    auto s4 = rt.bus().subscribe<numbered>(
        [&](const numbered&) { inlined.calls.fetch_add(1, std::memory_order_relaxed); }, io);

    const int producers = 3;
    std::atomic<std::uint64_t> accepted{0}, rejected{0}, published{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            while (!go.load()) std::this_thread::yield();
            for (std::uint64_t i = 0;; ++i) {
                const auto r = rt.bus().publish(numbered{i, static_cast<std::uint64_t>(p), {}});
                if (r.closed) return;  // refused as a whole: nothing was accepted
                accepted.fetch_add(r.deliveries, std::memory_order_relaxed);
                rejected.fetch_add(r.rejected, std::memory_order_relaxed);
                published.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }
    go = true;
    // Heavy traffic: wait until a backlog has built up (the handlers are far slower than the
    // producers), then shut down while the producers are still publishing.
    REQUIRE(wait_until([&] { return published.load() > 60000 / static_cast<unsigned>(reliability::scale); }, 60s));
    const auto report = rt.bus().shutdown(timeout);
    for (auto& t : threads) t.join();
    rt.stop();  // joins the workers: no handler runs after this

    const std::uint64_t handled =
        pooled.calls.load() + serial.calls.load() + keyed.calls.load() + inlined.calls.load();
    INFO("published " << published.load() << ", accepted " << accepted.load() << ", handled " << handled
                      << ", handed back " << report.handed_back);
    // Each publish reached all four subscriptions: accepted, or (a publish racing the close)
    // refused and dead-lettered, which the publisher sees in `rejected`.
    CHECK(accepted.load() + rejected.load() == published.load() * 4);
    CHECK(rejected.load() < 100);
    CHECK(inlined.calls.load() == published.load());
    // Nothing lost: every accepted message was handled or is in the dead-letter store, and
    // only shutdown put it there.
    auto& dl = rt.bus().dead_letters();
    CHECK(handled + dl.total() == accepted.load() + rejected.load());
    CHECK(dl.evicted() == 0);
    std::map<std::string, std::uint64_t> reasons;
    for (auto& d : dl.list()) ++reasons[std::string(courier::to_string(d.reason))];
    for (auto& [reason, count] : reasons) {
        INFO("dead letters with reason " << reason << ": " << count);
        CHECK((reason == "shutdown" || reason == "unsubscribed"));
    }
    CHECK(report.handed_back <= dl.total());
    for (auto& mt : rt.bus().metrics()) CHECK(mt.failed == 0);
    if (timeout == 30s) {
        CHECK(report.handed_back == 0);
        CHECK_FALSE(report.timed_out);
    } else {
        CHECK(report.timed_out == (report.handed_back > 0));
    }
    // After shutdown a publish is refused as a whole and says so.
    const auto late = rt.bus().publish(numbered{0, 99, {}});
    CHECK(late.closed);
    CHECK(late.deliveries == 0);
}

TEST_CASE("job system shutdown under heavy traffic runs or hands back every accepted job, exactly",
          "[reliability][shutdown]") {
    reliability::watchdog dog("job shutdown under traffic", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::job_system jobs(rt, {.concurrency = 2, .publish_events = false});
    auto q = jobs.queue("traffic");
    std::atomic<std::uint64_t> ran{0};
    q.handle<numbered>([&](const numbered&) {
        ran.fetch_add(1, std::memory_order_relaxed);
        busy_for(5us);
    });
    std::atomic<std::uint64_t> accepted{0}, refused{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    std::mutex hm;
    std::vector<courier::job_handle> handles;
    for (int p = 0; p < 2; ++p) {
        threads.emplace_back([&, p] {
            std::vector<courier::job_handle> mine;
            while (!go.load()) std::this_thread::yield();
            for (std::uint64_t i = 0;; ++i) {
                auto h = q.enqueue(numbered{i, static_cast<std::uint64_t>(p), {}});
                if (!h) {
                    if (h.error() == courier::errc::closed) break;
                    refused.fetch_add(1);
                    continue;
                }
                accepted.fetch_add(1, std::memory_order_relaxed);
                mine.push_back(*h);
            }
            std::lock_guard lock(hm);
            handles.insert(handles.end(), mine.begin(), mine.end());
        });
    }
    go = true;
    REQUIRE(wait_until([&] { return accepted.load() > 40000 / static_cast<unsigned>(reliability::scale); }, 60s));
    const auto report = jobs.shutdown(5ms);
    for (auto& t : threads) t.join();
    // Handlers still running at the deadline finish on their own; wait for their terminal state.
    for (auto& h : report.still_running) {
        auto f = h.async_wait(boost::asio::use_future);
        REQUIRE(f.wait_for(30s) == std::future_status::ready);
    }
    rt.stop();
    CHECK(refused.load() == 0);
    REQUIRE(handles.size() == accepted.load());
    std::uint64_t completed = 0, cancelled = 0, other = 0;
    for (auto& h : handles) {
        const auto s = h.state();
        completed += s == courier::job_state::completed;
        cancelled += s == courier::job_state::cancelled;
        other += s != courier::job_state::completed && s != courier::job_state::cancelled;
    }
    INFO("accepted " << accepted.load() << ", ran " << ran.load() << ", cancelled " << cancelled);
    CHECK(other == 0);
    CHECK(completed + cancelled == accepted.load());
    CHECK(ran.load() == completed);  // each completed job ran exactly once
    CHECK(report.cancelled.size() == cancelled);
    for (auto& h : report.cancelled) {
        REQUIRE(h.payload<numbered>() != nullptr);  // the payload is handed back, readable
        CHECK(h.state() == courier::job_state::cancelled);
    }
}

// The report's count is exact: shutdown_report::handed_back equals the messages shutdown handed
// back, including those of publishes that raced the close (shutdown waits for them) and of
// drains that popped a message after the subscription went inactive.
TEST_CASE("bus shutdown_report counts every message shutdown handed back", "[reliability][shutdown]") {
    reliability::watchdog dog("bus shutdown report", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    std::atomic<std::uint64_t> handled{0}, accepted{0}, published{0};
    courier::subscription_options o;
    o.mode = courier::delivery_mode::pooled;
    o.capacity = 0;
    auto s = rt.bus().subscribe<numbered>(
        [&](const numbered&) {
            handled.fetch_add(1);
            busy_for(2us);
        },
        o);
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int p = 0; p < 3; ++p) {
        threads.emplace_back([&, p] {
            while (!go.load()) std::this_thread::yield();
            for (std::uint64_t i = 0;; ++i) {
                const auto r = rt.bus().publish(numbered{i, static_cast<std::uint64_t>(p), {}});
                if (r.closed) return;
                accepted.fetch_add(r.deliveries);
                published.fetch_add(1);
            }
        });
    }
    go = true;
    REQUIRE(wait_until([&] { return published.load() > 60000 / static_cast<unsigned>(reliability::scale); }, 60s));
    const auto report = rt.bus().shutdown(5ms);
    for (auto& t : threads) t.join();
    rt.stop();
    INFO("accepted " << accepted.load() << ", handled " << handled.load() << ", handed back " << report.handed_back
                     << ", dead letters " << rt.bus().dead_letters().total());
    CHECK(report.handed_back == rt.bus().dead_letters().total());
    CHECK(handled.load() + report.handed_back == accepted.load());
}
