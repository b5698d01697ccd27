// Tests for courier::mpmc_queue: statuses, tokens, bulk calls, blocking pops with deadlines,
// close() while consumers are blocked, move-only items, and both wake-up fences.
#include <catch2/catch.hpp>

#include <courier/queue/async_pop.hpp>  // detail::queue_access, to see parked waiters
#include <courier/queue/mpmc_queue.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <iterator>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "queue/queue_support.hpp"
#include "wait.hpp"

using namespace std::chrono_literals;
using courier::queue_status;

using namespace courier_test;

namespace {


struct small_block_traits : courier::mpmc_queue_traits {
    static constexpr std::size_t block_size = 4;
};

}  // namespace

TEST_CASE("mpmc_queue pops what one producer pushed, in push order", "[queue][mpmc]") {
    courier::mpmc_queue<int> q;
    for (int i = 0; i < 1000; ++i) REQUIRE(q.try_push(i) == queue_status::ok);
    REQUIRE(q.size_approx() == 1000);
    for (int i = 0; i < 1000; ++i) {
        int v = -1;
        REQUIRE(q.try_pop(v) == queue_status::ok);
        REQUIRE(v == i);
    }
    int v = -1;
    REQUIRE(q.try_pop(v) == queue_status::empty);
    REQUIRE(q.size_approx() == 0);
}

TEST_CASE("mpmc_queue push is try_push and copies a const item", "[queue][mpmc]") {
    courier::mpmc_queue<std::string> q;
    const std::string hello = "hello";
    REQUIRE(q.push(hello) == queue_status::ok);
    REQUIRE(hello == "hello");
    std::string moved = "world";
    REQUIRE(q.push(std::move(moved)) == queue_status::ok);
    std::string a, b;
    REQUIRE(q.try_pop(a) == queue_status::ok);
    REQUIRE(q.try_pop(b) == queue_status::ok);
    REQUIRE(a == "hello");
    REQUIRE(b == "world");
}

TEST_CASE("mpmc_queue moves through producer and consumer tokens", "[queue][mpmc]") {
    courier::mpmc_queue<int, small_block_traits> q;
    auto producer = q.make_producer_token();
    auto consumer = q.make_consumer_token();
    for (int i = 0; i < 100; ++i) REQUIRE(q.try_push(producer, i) == queue_status::ok);
    const int copied = 100;
    REQUIRE(q.try_push(producer, copied) == queue_status::ok);
    REQUIRE(q.push(producer, 101) == queue_status::ok);
    for (int i = 0; i < 102; ++i) {
        int v = -1;
        REQUIRE(q.try_pop(consumer, v) == queue_status::ok);
        REQUIRE(v == i);  // one token: FIFO
    }
    int v;
    REQUIRE(q.try_pop(consumer, v) == queue_status::empty);
    q.close();
    REQUIRE(q.try_pop(consumer, v) == queue_status::closed);
    REQUIRE(q.try_push(producer, 1) == queue_status::closed);
}

TEST_CASE("mpmc_queue reports closed to pops only once it is closed and empty", "[queue][mpmc]") {
    courier::mpmc_queue<int> q;
    REQUIRE(q.try_push(1) == queue_status::ok);
    REQUIRE(q.try_push(2) == queue_status::ok);
    REQUIRE_FALSE(q.is_closed());
    q.close();
    q.close();  // idempotent
    REQUIRE(q.is_closed());
    REQUIRE(q.try_push(3) == queue_status::closed);
    int v = 0;
    REQUIRE(q.try_pop(v) == queue_status::ok);
    REQUIRE(v == 1);
    REQUIRE(q.pop(v) == queue_status::ok);  // a blocking pop drains too
    REQUIRE(v == 2);
    REQUIRE(q.try_pop(v) == queue_status::closed);
    REQUIRE(q.pop(v) == queue_status::closed);
    REQUIRE(q.pop_for(v, 1s) == queue_status::closed);
}

TEST_CASE("mpmc_queue keeps a move-only item with the caller when a push is refused", "[queue][mpmc]") {
    courier::mpmc_queue<std::unique_ptr<int>> q;
    auto item = std::make_unique<int>(7);
    REQUIRE(q.try_push(std::move(item)) == queue_status::ok);
    REQUIRE(item == nullptr);  // moved on ok

    q.close();
    auto kept = std::make_unique<int>(8);
    REQUIRE(q.try_push(std::move(kept)) == queue_status::closed);
    REQUIRE(kept != nullptr);  // not moved on closed
    REQUIRE(*kept == 8);
    auto producer = q.make_producer_token();
    REQUIRE(q.try_push(producer, std::move(kept)) == queue_status::closed);
    REQUIRE(kept != nullptr);

    std::unique_ptr<int> out;
    REQUIRE(q.try_pop(out) == queue_status::ok);
    REQUIRE(*out == 7);
}

TEST_CASE("mpmc_queue pushes and pops in bulk", "[queue][mpmc]") {
    courier::mpmc_queue<std::unique_ptr<int>> q;
    std::vector<std::unique_ptr<int>> in;
    for (int i = 0; i < 50; ++i) in.push_back(std::make_unique<int>(i));

    SECTION("without tokens") {
        REQUIRE(q.try_push_bulk(std::make_move_iterator(in.begin()), in.size()) == 50);
        std::vector<std::unique_ptr<int>> out;
        REQUIRE(q.try_pop_bulk(std::back_inserter(out), 20) == 20);
        REQUIRE(q.try_pop_bulk(std::back_inserter(out), 100) == 30);
        REQUIRE(q.try_pop_bulk(std::back_inserter(out), 100) == 0);
        REQUIRE(out.size() == 50);
        for (int i = 0; i < 50; ++i) REQUIRE(*out[i] == i);
    }
    SECTION("with tokens") {
        auto producer = q.make_producer_token();
        auto consumer = q.make_consumer_token();
        REQUIRE(q.try_push_bulk(producer, std::make_move_iterator(in.begin()), in.size()) == 50);
        std::vector<std::unique_ptr<int>> out(50);
        REQUIRE(q.try_pop_bulk(consumer, out.begin(), 50) == 50);
        for (int i = 0; i < 50; ++i) REQUIRE(*out[i] == i);
    }
    SECTION("a closed queue takes nothing and the bulk pop drains, then returns 0") {
        REQUIRE(q.try_push_bulk(std::make_move_iterator(in.begin()), 10) == 10);
        q.close();
        REQUIRE(q.try_push_bulk(std::make_move_iterator(in.begin() + 10), 40) == 0);
        REQUIRE(in[10] != nullptr);
        std::vector<std::unique_ptr<int>> out;
        REQUIRE(q.try_pop_bulk(std::back_inserter(out), 100) == 10);
        REQUIRE(q.try_pop_bulk(std::back_inserter(out), 100) == 0);
        REQUIRE(q.is_closed());
    }
    SECTION("zero items is a no-op") {
        REQUIRE(q.try_push_bulk(std::make_move_iterator(in.begin()), 0) == 0);
        std::vector<std::unique_ptr<int>> out;
        REQUIRE(q.pop_bulk_for(std::back_inserter(out), 0, 1s) == 0);
    }
}

TEMPLATE_TEST_CASE("mpmc_queue pop_for times out on an empty queue", "[queue][mpmc][timeout]",
                   courier::mpmc_queue_traits, symmetric_traits, no_spin_traits) {
    courier::mpmc_queue<int, TestType> q;
    run_with_time_limit(10s, [&] {
        int v = -1;
        auto t0 = std::chrono::steady_clock::now();
        REQUIRE(q.pop_for(v, 30ms) == queue_status::timeout);
        REQUIRE(std::chrono::steady_clock::now() - t0 >= 30ms);
        REQUIRE(v == -1);
        REQUIRE(q.pop_for(v, 0ns) == queue_status::timeout);
        REQUIRE(q.pop_until(v, std::chrono::steady_clock::now() - 1s) == queue_status::timeout);
        std::vector<int> out;
        REQUIRE(q.pop_bulk_for(std::back_inserter(out), 8, 10ms) == 0);
        REQUIRE(parked(q) == 0);
        REQUIRE(q.try_push(5) == queue_status::ok);
        REQUIRE(q.pop_for(v, 0ns) == queue_status::ok);
        REQUIRE(v == 5);
    });
}

TEMPLATE_TEST_CASE("mpmc_queue wakes a parked consumer when an item arrives", "[queue][mpmc][blocking]",
                   courier::mpmc_queue_traits, symmetric_traits, no_spin_traits) {
    courier::mpmc_queue<int, TestType> q;
    run_with_time_limit(20s, [&] {
        std::atomic<int> got{-1};
        std::atomic<int> status{-1};
        std::thread consumer([&] {
            int v = -1;
            status = static_cast<int>(q.pop(v));
            got = v;
        });
        REQUIRE(wait_until([&] { return parked(q) == 1; }));  // really parked, not spinning
        REQUIRE(q.try_push(42) == queue_status::ok);
        consumer.join();
        REQUIRE(status == static_cast<int>(queue_status::ok));
        REQUIRE(got == 42);
        REQUIRE(parked(q) == 0);
    });
}

TEMPLATE_TEST_CASE("mpmc_queue pop_bulk_for waits for the first item and takes what is there",
                   "[queue][mpmc][blocking]", courier::mpmc_queue_traits, no_spin_traits) {
    courier::mpmc_queue<int, TestType> q;
    run_with_time_limit(20s, [&] {
        std::vector<int> out;
        std::thread consumer([&] { (void)q.pop_bulk_for(std::back_inserter(out), 16, 10s); });
        REQUIRE(wait_until([&] { return parked(q) == 1; }));
        std::vector<int> items{1, 2, 3};
        REQUIRE(q.try_push_bulk(items.begin(), items.size()) == 3);
        consumer.join();
        REQUIRE(!out.empty());
        REQUIRE(out.front() == 1);
        std::size_t rest = q.try_pop_bulk(std::back_inserter(out), 16);
        REQUIRE(out.size() == 3);
        (void)rest;
    });
}

TEMPLATE_TEST_CASE("mpmc_queue close wakes every blocked consumer after they drain the rest",
                   "[queue][mpmc][close]", courier::mpmc_queue_traits, symmetric_traits, no_spin_traits) {
    courier::mpmc_queue<int, TestType> q;
    run_with_time_limit(20s, [&] {
        constexpr int consumers = 4;
        std::atomic<int> closed_seen{0};
        std::atomic<int> items_seen{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < consumers; ++i) {
            threads.emplace_back([&] {
                int v;
                for (;;) {
                    queue_status s = q.pop(v);
                    if (s == queue_status::closed) break;
                    if (s == queue_status::ok) ++items_seen;
                }
                ++closed_seen;
            });
        }
        REQUIRE(wait_until([&] { return parked(q) == consumers; }));
        q.close();
        for (auto& t : threads) t.join();
        REQUIRE(closed_seen == consumers);
        REQUIRE(items_seen == 0);
        REQUIRE(parked(q) == 0);
    });
}

TEST_CASE("mpmc_queue consumers blocked with deadlines drain the queue before seeing closed",
          "[queue][mpmc][close]") {
    courier::mpmc_queue<int, no_spin_traits> q;
    run_with_time_limit(20s, [&] {
        std::atomic<long> sum{0};
        std::atomic<int> count{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < 3; ++i) {
            threads.emplace_back([&] {
                int v;
                for (;;) {
                    queue_status s = q.pop_for(v, 30s);
                    if (s == queue_status::closed) return;
                    if (s == queue_status::ok) {
                        sum += v;
                        ++count;
                    }
                }
            });
        }
        REQUIRE(wait_until([&] { return parked(q) == 3; }));
        for (int i = 1; i <= 1000; ++i) REQUIRE(q.try_push(i) == queue_status::ok);
        q.close();
        for (auto& t : threads) t.join();
        REQUIRE(count == 1000);
        REQUIRE(sum == 1000 * 1001 / 2);
    });
}

TEST_CASE("mpmc_queue never loses an item whose push returned ok while racing close", "[queue][mpmc][close]") {
    courier::mpmc_queue<int> q;
    run_with_time_limit(30s, [&] {
        constexpr int producers = 3;
        std::atomic<long> accepted{0};
        std::atomic<long> accepted_sum{0};
        std::atomic<long> popped{0};
        std::atomic<long> popped_sum{0};
        std::atomic<bool> start{false};
        std::vector<std::thread> threads;
        for (int p = 0; p < producers; ++p) {
            threads.emplace_back([&, p] {
                while (!start) std::this_thread::yield();
                for (int i = 1;; ++i) {
                    int v = p * 10'000'000 + i;
                    if (q.try_push(v) != queue_status::ok) return;  // closed
                    ++accepted;
                    accepted_sum += v;
                }
            });
        }
        threads.emplace_back([&] {
            int v;
            while (q.pop(v) == queue_status::ok) {
                ++popped;
                popped_sum += v;
            }
        });
        start = true;
        REQUIRE(wait_until([&] { return popped.load() > 10'000; }));
        q.close();
        for (auto& t : threads) t.join();
        // The consumer stopped at `closed`; whatever a racing push added after that is still
        // in the queue for the owner to drain.
        int v;
        while (q.try_pop(v) == queue_status::ok) {
            ++popped;
            popped_sum += v;
        }
        REQUIRE(q.try_pop(v) == queue_status::closed);
        REQUIRE(popped == accepted);
        REQUIRE(popped_sum == accepted_sum);
    });
}

TEST_CASE("mpmc_queue treats a huge timeout as no deadline", "[queue][mpmc][timeout]") {
    courier::mpmc_queue<int> q;
    run_with_time_limit(20s, [&] {
        std::atomic<int> got{0};
        std::thread consumer([&] {
            int v = 0;
            if (q.pop_for(v, std::chrono::nanoseconds::max()) == queue_status::ok) got = v;
        });
        REQUIRE(wait_until([&] { return parked(q) == 1; }));
        REQUIRE(q.try_push(9) == queue_status::ok);
        consumer.join();
        REQUIRE(got == 9);
    });
}

TEST_CASE("mpmc_queue uses the asymmetric fence where membarrier is available", "[queue][mpmc]") {
    courier::mpmc_queue<int> asymmetric;
    courier::mpmc_queue<int, symmetric_traits> symmetric;
    REQUIRE(asymmetric.uses_asymmetric_fence() == courier::detail::membarrier_available());
    REQUIRE_FALSE(symmetric.uses_asymmetric_fence());
}

TEST_CASE("mpmc_queue destroys the items still queued", "[queue][mpmc]") {
    auto counter = std::make_shared<int>(0);
    {
        courier::mpmc_queue<std::shared_ptr<int>> q;
        for (int i = 0; i < 100; ++i) REQUIRE(q.try_push(counter) == queue_status::ok);
        REQUIRE(counter.use_count() == 101);
    }
    REQUIRE(counter.use_count() == 1);
}
