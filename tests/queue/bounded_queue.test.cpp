// Tests for courier::bounded_queue: every overflow policy and status, drop counting and the
// drop handler, blocking pushes and pops with deadlines, close() with blocked producers and
// consumers, move-only items, bulk pops and the counters.
#include <catch2/catch.hpp>

#include <courier/queue/async_pop.hpp>  // detail::queue_access, to see parked waiters
#include <courier/queue/bounded_queue.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "queue/queue_support.hpp"
#include "wait.hpp"

using namespace std::chrono_literals;
using courier::overflow_policy;
using courier::queue_status;

using namespace courier_test;

namespace {


template <class T>
std::size_t parked_pops(courier::bounded_queue<T>& q) {
    return courier::detail::queue_access::pop_waiter_count(q);
}
template <class T>
std::size_t parked_pushes(courier::bounded_queue<T>& q) {
    return courier::detail::queue_access::push_waiter_count(q);
}

}  // namespace

TEST_CASE("bounded_queue rejects a capacity of zero with a stable error id", "[queue][bounded]") {
    try {
        courier::bounded_queue<int> q(0);
        FAIL("constructed a queue of capacity 0");
    } catch (const courier::courier_error& e) {
        REQUIRE(e.err().id() == "courier.queue.invalid_capacity");
        REQUIRE(e.code() == courier::errc::invalid_argument);
    }
}

TEST_CASE("bounded_queue pops in FIFO order and reports its configuration", "[queue][bounded]") {
    auto capacity = GENERATE(1u, 3u, 8u);  // 8: power of two (masked index); 3: modulo index
    courier::bounded_queue<int> q(capacity, overflow_policy::fail);
    REQUIRE(q.capacity() == capacity);
    REQUIRE(q.policy() == overflow_policy::fail);
    for (int lap = 0; lap < 5; ++lap) {  // several laps around the ring
        for (unsigned i = 0; i < capacity; ++i) REQUIRE(q.try_push(int(lap * 100 + i)) == queue_status::ok);
        REQUIRE(q.size_approx() == capacity);
        for (unsigned i = 0; i < capacity; ++i) {
            int v = -1;
            REQUIRE(q.try_pop(v) == queue_status::ok);
            REQUIRE(v == int(lap * 100 + i));
        }
        int v;
        REQUIRE(q.try_pop(v) == queue_status::empty);
    }
}

TEST_CASE("bounded_queue returns full and leaves the item with the caller under fail", "[queue][bounded]") {
    courier::bounded_queue<std::unique_ptr<int>> q(2, overflow_policy::fail);
    REQUIRE(q.try_push(std::make_unique<int>(1)) == queue_status::ok);
    REQUIRE(q.try_push(std::make_unique<int>(2)) == queue_status::ok);
    auto third = std::make_unique<int>(3);
    REQUIRE(q.try_push(std::move(third)) == queue_status::full);
    REQUIRE(third != nullptr);
    REQUIRE(q.push(std::move(third)) == queue_status::full);  // fail never blocks
    REQUIRE(q.push_for(std::move(third), 1s) == queue_status::full);
    REQUIRE(third != nullptr);
    REQUIRE(q.dropped_count() == 0);
    REQUIRE(q.stats().rejected_full == 3);
}

TEST_CASE("bounded_queue try_push returns full under block and the caller keeps the item", "[queue][bounded]") {
    courier::bounded_queue<std::unique_ptr<int>> q(1, overflow_policy::block);
    REQUIRE(q.try_push(std::make_unique<int>(1)) == queue_status::ok);
    auto second = std::make_unique<int>(2);
    REQUIRE(q.try_push(std::move(second)) == queue_status::full);
    REQUIRE(second != nullptr);
}

TEST_CASE("bounded_queue drops the oldest item when full under drop_oldest", "[queue][bounded]") {
    std::vector<int> dropped;
    courier::bounded_queue<int> q(3, overflow_policy::drop_oldest, [&](int&& v) { dropped.push_back(v); });
    for (int i = 1; i <= 5; ++i) REQUIRE(q.try_push(int(i)) == queue_status::ok);
    REQUIRE(q.push(6) == queue_status::ok);  // never blocks either
    REQUIRE(dropped == std::vector<int>{1, 2, 3});
    REQUIRE(q.dropped_count() == 3);
    auto s = q.stats();
    REQUIRE(s.dropped_oldest == 3);
    REQUIRE(s.dropped_newest == 0);
    REQUIRE(s.pushed == 6);
    REQUIRE(s.popped == 0);
    REQUIRE(s.size == 3);
    for (int expected : {4, 5, 6}) {
        int v;
        REQUIRE(q.try_pop(v) == queue_status::ok);
        REQUIRE(v == expected);
    }
    REQUIRE(q.stats().popped == 3);
}

TEST_CASE("bounded_queue discards the pushed item when full under drop_newest", "[queue][bounded]") {
    std::vector<std::string> dropped;
    courier::bounded_queue<std::string> q(2, overflow_policy::drop_newest,
                                          [&](std::string&& v) { dropped.push_back(std::move(v)); });
    REQUIRE(q.try_push("a") == queue_status::ok);
    REQUIRE(q.try_push("b") == queue_status::ok);
    std::string c = "c";
    REQUIRE(q.try_push(std::move(c)) == queue_status::dropped);
    REQUIRE(q.push("d") == queue_status::dropped);
    REQUIRE(q.push_for("e", 1s) == queue_status::dropped);
    REQUIRE(dropped == std::vector<std::string>{"c", "d", "e"});
    REQUIRE(q.dropped_count() == 3);
    REQUIRE(q.stats().dropped_newest == 3);
    std::string v;
    REQUIRE(q.try_pop(v) == queue_status::ok);
    REQUIRE(v == "a");
}

TEST_CASE("bounded_queue counts drops without a drop handler", "[queue][bounded]") {
    auto policy = GENERATE(overflow_policy::drop_oldest, overflow_policy::drop_newest);
    courier::bounded_queue<std::unique_ptr<int>> q(1, policy);
    REQUIRE(q.try_push(std::make_unique<int>(1)) == queue_status::ok);
    auto s = q.try_push(std::make_unique<int>(2));
    REQUIRE(s == (policy == overflow_policy::drop_oldest ? queue_status::ok : queue_status::dropped));
    REQUIRE(q.dropped_count() == 1);
    std::unique_ptr<int> v;
    REQUIRE(q.try_pop(v) == queue_status::ok);
    REQUIRE(*v == (policy == overflow_policy::drop_oldest ? 2 : 1));
}

TEST_CASE("bounded_queue returns closed to pushes and drains pops after close", "[queue][bounded][close]") {
    auto policy = GENERATE(overflow_policy::block, overflow_policy::fail, overflow_policy::drop_oldest,
                           overflow_policy::drop_newest);
    courier::bounded_queue<std::unique_ptr<int>> q(4, policy);
    REQUIRE(q.try_push(std::make_unique<int>(1)) == queue_status::ok);
    q.close();
    REQUIRE(q.is_closed());
    auto kept = std::make_unique<int>(2);
    REQUIRE(q.try_push(std::move(kept)) == queue_status::closed);
    REQUIRE(q.push(std::move(kept)) == queue_status::closed);
    REQUIRE(q.push_for(std::move(kept), 1s) == queue_status::closed);
    REQUIRE(kept != nullptr);
    std::unique_ptr<int> v;
    REQUIRE(q.pop(v) == queue_status::ok);
    REQUIRE(*v == 1);
    REQUIRE(q.try_pop(v) == queue_status::closed);
    REQUIRE(q.pop_for(v, 1s) == queue_status::closed);
}

TEST_CASE("bounded_queue push_for times out when no room appears", "[queue][bounded][timeout]") {
    courier::bounded_queue<int> q(1, overflow_policy::block);
    run_with_time_limit(10s, [&] {
        REQUIRE(q.try_push(1) == queue_status::ok);
        auto t0 = std::chrono::steady_clock::now();
        REQUIRE(q.push_for(2, 30ms) == queue_status::timeout);
        REQUIRE(std::chrono::steady_clock::now() - t0 >= 30ms);
        REQUIRE(q.push_until(2, std::chrono::steady_clock::now()) == queue_status::timeout);
        REQUIRE(q.stats().rejected_full == 2);
        REQUIRE(parked_pushes(q) == 0);
    });
}

TEST_CASE("bounded_queue pop_for times out on an empty queue", "[queue][bounded][timeout]") {
    courier::bounded_queue<int> q(4);
    run_with_time_limit(10s, [&] {
        int v = -1;
        auto t0 = std::chrono::steady_clock::now();
        REQUIRE(q.pop_for(v, 30ms) == queue_status::timeout);
        REQUIRE(std::chrono::steady_clock::now() - t0 >= 30ms);
        REQUIRE(q.pop_until(v, std::chrono::steady_clock::now() - 1s) == queue_status::timeout);
        std::vector<int> out;
        REQUIRE(q.pop_bulk_for(std::back_inserter(out), 4, 5ms) == 0);
        REQUIRE(parked_pops(q) == 0);
    });
}

TEST_CASE("bounded_queue wakes a blocked producer when a consumer makes room", "[queue][bounded][blocking]") {
    courier::bounded_queue<std::unique_ptr<int>> q(2, overflow_policy::block, {}, {.spin_count = 0});
    run_with_time_limit(20s, [&] {
        REQUIRE(q.try_push(std::make_unique<int>(1)) == queue_status::ok);
        REQUIRE(q.try_push(std::make_unique<int>(2)) == queue_status::ok);
        std::atomic<int> status{-1};
        std::thread producer([&] { status = static_cast<int>(q.push(std::make_unique<int>(3))); });
        REQUIRE(wait_until([&] { return parked_pushes(q) == 1; }));
        std::unique_ptr<int> v;
        REQUIRE(q.try_pop(v) == queue_status::ok);
        REQUIRE(*v == 1);
        producer.join();
        REQUIRE(status == static_cast<int>(queue_status::ok));
        for (int expected : {2, 3}) {
            REQUIRE(q.try_pop(v) == queue_status::ok);
            REQUIRE(*v == expected);
        }
    });
}

TEST_CASE("bounded_queue wakes a blocked consumer when an item arrives", "[queue][bounded][blocking]") {
    courier::bounded_queue<int> q(2, overflow_policy::block, {}, {.spin_count = 0});
    run_with_time_limit(20s, [&] {
        std::atomic<int> got{-1};
        std::thread consumer([&] {
            int v = -1;
            if (q.pop(v) == queue_status::ok) got = v;
        });
        REQUIRE(wait_until([&] { return parked_pops(q) == 1; }));
        REQUIRE(q.try_push(11) == queue_status::ok);
        consumer.join();
        REQUIRE(got == 11);
    });
}

TEST_CASE("bounded_queue close wakes blocked producers and consumers", "[queue][bounded][close]") {
    SECTION("producers blocked on a full queue get closed and keep their items") {
        courier::bounded_queue<std::unique_ptr<int>> q(1, overflow_policy::block, {}, {.spin_count = 0});
        run_with_time_limit(20s, [&] {
            REQUIRE(q.try_push(std::make_unique<int>(0)) == queue_status::ok);
            std::atomic<int> closed_seen{0};
            std::atomic<int> kept{0};
            std::vector<std::thread> producers;
            for (int i = 0; i < 3; ++i) {
                producers.emplace_back([&, i] {
                    auto item = std::make_unique<int>(i + 1);
                    if (q.push(std::move(item)) == queue_status::closed) ++closed_seen;
                    if (item != nullptr) ++kept;
                });
            }
            REQUIRE(wait_until([&] { return parked_pushes(q) == 3; }));
            q.close();
            for (auto& t : producers) t.join();
            REQUIRE(closed_seen == 3);
            REQUIRE(kept == 3);
            std::unique_ptr<int> v;
            REQUIRE(q.try_pop(v) == queue_status::ok);
            REQUIRE(q.try_pop(v) == queue_status::closed);
        });
    }
    SECTION("consumers blocked on an empty queue get closed") {
        courier::bounded_queue<int> q(4, overflow_policy::block, {}, {.spin_count = 0});
        run_with_time_limit(20s, [&] {
            std::atomic<int> closed_seen{0};
            std::vector<std::thread> consumers;
            for (int i = 0; i < 3; ++i) {
                consumers.emplace_back([&] {
                    int v;
                    if (q.pop_for(v, 30s) == queue_status::closed) ++closed_seen;
                });
            }
            REQUIRE(wait_until([&] { return parked_pops(q) == 3; }));
            q.close();
            for (auto& t : consumers) t.join();
            REQUIRE(closed_seen == 3);
        });
    }
}

TEST_CASE("bounded_queue pops in bulk", "[queue][bounded]") {
    courier::bounded_queue<std::unique_ptr<int>> q(16);
    for (int i = 0; i < 10; ++i) REQUIRE(q.try_push(std::make_unique<int>(i)) == queue_status::ok);
    std::vector<std::unique_ptr<int>> out;
    REQUIRE(q.try_pop_bulk(std::back_inserter(out), 4) == 4);
    REQUIRE(q.pop_bulk_for(std::back_inserter(out), 100, 1s) == 6);
    REQUIRE(out.size() == 10);
    for (int i = 0; i < 10; ++i) REQUIRE(*out[i] == i);
    REQUIRE(q.try_pop_bulk(std::back_inserter(out), 4) == 0);
    REQUIRE(q.pop_bulk_for(std::back_inserter(out), 4, 1ms) == 0);
    q.close();
    REQUIRE(q.pop_bulk_for(std::back_inserter(out), 4, 1s) == 0);
}

TEST_CASE("bounded_queue destroys the items still queued", "[queue][bounded]") {
    auto counter = std::make_shared<int>(0);
    {
        courier::bounded_queue<std::shared_ptr<int>> q(5, overflow_policy::drop_oldest);
        for (int i = 0; i < 12; ++i) REQUIRE(q.try_push(std::shared_ptr<int>(counter)) == queue_status::ok);
        std::shared_ptr<int> v;
        REQUIRE(q.try_pop(v) == queue_status::ok);
        v.reset();
        REQUIRE(counter.use_count() == 5);
    }
    REQUIRE(counter.use_count() == 1);
}

TEST_CASE("bounded_queue drop_oldest hands every evicted item over under contention", "[queue][bounded]") {
    std::atomic<long> dropped_sum{0};
    courier::bounded_queue<long> q(8, overflow_policy::drop_oldest, [&](long&& v) { dropped_sum += v; });
    run_with_time_limit(30s, [&] {
        constexpr int producers = 3;
        constexpr long per = 20'000 / COURIER_STRESS_SCALE;
        std::atomic<long> popped_sum{0};
        std::atomic<bool> stop{false};
        std::vector<std::thread> threads;
        for (int p = 0; p < producers; ++p) {
            threads.emplace_back([&, p] {
                for (long i = 1; i <= per; ++i) {
                    if (q.try_push(p * 1'000'000L + i) != queue_status::ok) std::abort();
                }
            });
        }
        std::thread consumer([&] {
            long v;
            while (!stop) {
                if (q.try_pop(v) == queue_status::ok) popped_sum += v;
            }
        });
        for (auto& t : threads) t.join();
        stop = true;
        consumer.join();
        long v;
        while (q.try_pop(v) == queue_status::ok) popped_sum += v;
        long expected = 0;
        for (int p = 0; p < producers; ++p) expected += p * 1'000'000L * per + per * (per + 1) / 2;
        REQUIRE(popped_sum + dropped_sum == expected);
        auto s = q.stats();
        REQUIRE(s.pushed == producers * per);
        REQUIRE(s.popped + s.dropped_oldest == s.pushed);
    });
}
