// The example of docs/queue.md, compiled and run: the page quotes the code between the "doc:"
// markers (tests/docs/check_snippets.py checks that it does), so a snippet that stops compiling
// or stops being true fails here.
#include <courier/queue/async_pop.hpp>
#include <courier/queue/bounded_queue.hpp>
#include <courier/queue/mpmc_queue.hpp>

#include <boost/asio/io_context.hpp>
#if defined(BOOST_ASIO_HAS_CO_AWAIT)  // not with clang 14 + libstdc++ on Boost 1.74
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#endif

#include <catch2/catch.hpp>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace queue_doc {

// What the page's example moves around, and the application code it calls.
struct job {
    int id = 0;
};
struct reading {
    int value = 0;
};
struct frame {
    int seq = 0;
};
struct dead_letter_log {
    std::vector<std::pair<int, std::string>> entries;
    void add(reading r, std::string why) { entries.emplace_back(r.value, std::move(why)); }
};

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
TEST_CASE("docs/queue.md: a worker thread, a bounded queue, back-pressure and Asio coroutines", "[queue][docs]") {
    std::mutex ran_mutex;
    std::vector<int> ran;
    auto run = [&](const job& j) {
        std::lock_guard lock(ran_mutex);
        ran.push_back(j.id);
    };
    dead_letter_log dead_letters;
    int next_frame = 0;
    auto capture = [&] { return frame{next_frame++}; };
    std::vector<int> spilled;
    auto spill = [&](frame&& f) { spilled.push_back(f.seq); };
    boost::asio::io_context io;  // runs part 4's coroutines

    // doc: example
    // 1. Threads: a worker drains until the queue is closed.
    courier::mpmc_queue<job> jobs;
    std::thread worker([&] {
        job j;
        while (jobs.pop(j) == courier::queue_status::ok) run(j);   // spins briefly, then parks
    });
    auto producer = jobs.make_producer_token();                     // fastest push path
    (void)jobs.try_push(producer, job{1});
    jobs.close();                                                   // the worker drains, then stops
    worker.join();

    // 2. Bounded, with a policy: keep the newest 1024 readings and count what was lost.
    courier::bounded_queue<reading> readings(1024, courier::overflow_policy::drop_oldest,
        [&](reading&& lost) { dead_letters.add(std::move(lost), "evicted"); });
    for (int i = 0; i < 1030; ++i) (void)readings.try_push(reading{i});  // ok, even when full
    auto lost = readings.dropped_count();                                // 6, each handed to the handler

    // 3. Back-pressure: a producer waits up to 50 ms for room.
    courier::bounded_queue<frame> frames(64);                        // overflow_policy::block
    for (int i = 0; i < 64; ++i) (void)frames.try_push(capture());   // (full, for the example)
    frame f = capture();
    if (frames.push_for(std::move(f), std::chrono::milliseconds(50)) == courier::queue_status::timeout) {
        spill(std::move(f));                                         // f is still ours
    }

    // 4. Asio: a coroutine consumer on an io_context...
    courier::mpmc_queue<job> inbox;
    boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> {
        for (;;) {
            auto [ec, j] = co_await courier::async_pop(inbox, boost::asio::use_awaitable);
            if (ec) co_return;                                      // errc::closed: closed and drained
            run(j);
        }
    }, boost::asio::detached);

    // ...and a coroutine producer that waits for room in a bounded queue.
    boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> {
        auto [ec, back] = co_await courier::async_push(frames, capture(), boost::asio::use_awaitable);
        if (ec) spill(std::move(back));                              // closed: the frame comes back
    }, boost::asio::detached);
    // doc: end

    // 1: the worker ran the job before it saw the queue closed.
    CHECK(ran == std::vector<int>{1});
    // 2: the six oldest readings went to the drop handler; the newest 1024 stay.
    CHECK(lost == 6);
    REQUIRE(dead_letters.entries.size() == 6);
    CHECK(dead_letters.entries.front() == std::pair<int, std::string>{0, "evicted"});
    CHECK(dead_letters.entries.back().first == 5);
    reading oldest;
    REQUIRE(readings.try_pop(oldest) == courier::queue_status::ok);
    CHECK(oldest.value == 6);
    // 3: the queue stayed full for 50 ms, so the push timed out and left the frame with us.
    CHECK(spilled == std::vector<int>{64});
    CHECK(frames.size_approx() == 64);

    // 4: the consumer waits for a job, the producer for room.
    io.poll();
    CHECK(ran.size() == 1);
    REQUIRE(inbox.try_push(job{2}) == courier::queue_status::ok);
    io.poll();
    CHECK(ran == std::vector<int>{1, 2});
    frame first;
    REQUIRE(frames.try_pop(first) == courier::queue_status::ok);
    CHECK(first.seq == 0);
    io.poll();  // room: the producer's frame went in
    CHECK(frames.size_approx() == 64);
    CHECK(spilled == std::vector<int>{64});
    inbox.close();
    io.run();  // the consumer sees closed and returns; nothing is left waiting
    CHECK(io.stopped());
    frame last;
    while (frames.try_pop(last) == courier::queue_status::ok) {}
    CHECK(last.seq == 65);
}
#endif

}  // namespace queue_doc
