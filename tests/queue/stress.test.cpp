// Stress tests: 4 producers and 4 consumers move millions of items through mpmc_queue and
// bounded_queue (block policy), blocking on both sides; every item must arrive exactly once
// (a per-item counter), and close() must end every consumer. Counts are divided by
// COURIER_STRESS_SCALE under sanitizers.
#include <catch2/catch.hpp>

#include <courier/queue/async_pop.hpp>
#include <courier/queue/bounded_queue.hpp>
#include <courier/queue/mpmc_queue.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <thread>
#include <vector>

#include "queue/queue_support.hpp"
#include "wait.hpp"

using namespace std::chrono_literals;
using courier::queue_status;

using namespace courier_test;

namespace {

constexpr int producers = 4;
constexpr int consumers = 4;

// Counts every delivery per item; the test passes only if each item arrived exactly once.
class ledger {
public:
    explicit ledger(std::uint64_t items) : seen_(new std::atomic<std::uint8_t>[items]), items_(items) {
        for (std::uint64_t i = 0; i < items; ++i) seen_[i].store(0, std::memory_order_relaxed);
    }
    void record(std::uint64_t item) {
        if (item >= items_) {
            bad_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        seen_[item].fetch_add(1, std::memory_order_relaxed);
        received_.fetch_add(1, std::memory_order_relaxed);
    }
    // Items delivered other than exactly once (0 when all is well).
    std::uint64_t anomalies() const {
        std::uint64_t n = bad_.load();
        for (std::uint64_t i = 0; i < items_; ++i) n += seen_[i].load(std::memory_order_relaxed) != 1;
        return n;
    }
    std::uint64_t received() const { return received_.load(); }

private:
    std::unique_ptr<std::atomic<std::uint8_t>[]> seen_;
    std::uint64_t items_;
    std::atomic<std::uint64_t> received_{0};
    std::atomic<std::uint64_t> bad_{0};
};

// Producers push items p*per .. p*per+per-1 with `push_one`; consumers take with
// `consume(ledger&)` until it returns (which they do once the queue is closed and drained).
template <class Push, class Consume, class Close>
void pump(std::uint64_t per, Push push_range, Consume consume, Close close) {
    ledger seen(per * producers);
    std::vector<std::thread> threads;
    for (int c = 0; c < consumers; ++c) threads.emplace_back([&] { consume(seen); });
    std::vector<std::thread> pushers;
    for (int p = 0; p < producers; ++p) {
        pushers.emplace_back([&, p] { push_range(std::uint64_t(p) * per, std::uint64_t(p) * per + per); });
    }
    for (auto& t : pushers) t.join();
    close();
    for (auto& t : threads) t.join();
    REQUIRE(seen.received() == per * producers);
    REQUIRE(seen.anomalies() == 0);
}

}  // namespace

TEST_CASE("mpmc_queue delivers every item exactly once with 4 producers and 4 blocking consumers",
          "[queue][stress]") {
    const std::uint64_t per = 4'000'000 / COURIER_STRESS_SCALE / producers;

    SECTION("tokens, single pushes and blocking pops") {
        courier::mpmc_queue<std::uint64_t> q;
        run_with_time_limit(240s, [&] {
            pump(
                per,
                [&](std::uint64_t first, std::uint64_t last) {
                    auto token = q.make_producer_token();
                    for (std::uint64_t i = first; i < last; ++i) {
                        if (q.try_push(token, std::uint64_t(i)) != queue_status::ok) std::abort();
                    }
                },
                [&](ledger& seen) {
                    auto token = q.make_consumer_token();
                    std::uint64_t v;
                    while (q.pop(token, v) == queue_status::ok) seen.record(v);
                },
                [&] { q.close(); });
            REQUIRE(q.size_approx() == 0);
        });
    }
    SECTION("no tokens, symmetric fence, bulk pushes and bulk pops with deadlines") {
        courier::mpmc_queue<std::uint64_t, symmetric_traits> q;
        run_with_time_limit(240s, [&] {
            pump(
                per,
                [&](std::uint64_t first, std::uint64_t last) {
                    std::uint64_t batch[64];
                    for (std::uint64_t i = first; i < last;) {
                        std::size_t n = 0;
                        while (n < 64 && i < last) batch[n++] = i++;
                        if (q.try_push_bulk(batch, n) != n) std::abort();
                    }
                },
                [&](ledger& seen) {
                    std::uint64_t batch[32];
                    for (;;) {
                        std::size_t n = q.pop_bulk_for(batch, 32, 50ms);
                        for (std::size_t k = 0; k < n; ++k) seen.record(batch[k]);
                        if (n == 0 && q.is_closed()) {
                            std::uint64_t v;
                            if (q.try_pop(v) == queue_status::closed) return;
                            seen.record(v);
                        }
                    }
                },
                [&] { q.close(); });
        });
    }
}

TEST_CASE("bounded_queue delivers every item exactly once with 4 blocking producers and 4 blocking consumers",
          "[queue][stress]") {
    SECTION("capacity 1024, default spinning") {
        const std::uint64_t per = 4'000'000 / COURIER_STRESS_SCALE / producers;
        courier::bounded_queue<std::uint64_t> q(1024, courier::overflow_policy::block);
        run_with_time_limit(240s, [&] {
            pump(
                per,
                [&](std::uint64_t first, std::uint64_t last) {
                    for (std::uint64_t i = first; i < last; ++i) {
                        if (q.push(std::uint64_t(i)) != queue_status::ok) std::abort();
                    }
                },
                [&](ledger& seen) {
                    std::uint64_t v;
                    while (q.pop(v) == queue_status::ok) seen.record(v);
                },
                [&] { q.close(); });
            auto s = q.stats();
            REQUIRE(s.pushed == per * producers);
            REQUIRE(s.popped == per * producers);
            REQUIRE(s.dropped_oldest + s.dropped_newest == 0);
        });
    }
    SECTION("capacity 3, no spinning: both sides park all the time") {
        const std::uint64_t per = 200'000 / COURIER_STRESS_SCALE / producers;
        courier::bounded_queue<std::uint64_t> q(3, courier::overflow_policy::block, {}, {.spin_count = 0});
        run_with_time_limit(240s, [&] {
            pump(
                per,
                [&](std::uint64_t first, std::uint64_t last) {
                    for (std::uint64_t i = first; i < last; ++i) {
                        // push_for with a generous deadline exercises the timed wait path.
                        if (q.push_for(std::uint64_t(i), 60s) != queue_status::ok) std::abort();
                    }
                },
                [&](ledger& seen) {
                    std::uint64_t v;
                    for (;;) {
                        queue_status s = q.pop_for(v, 60s);
                        if (s == queue_status::closed) return;
                        if (s != queue_status::ok) std::abort();
                        seen.record(v);
                    }
                },
                [&] { q.close(); });
        });
    }
}

TEST_CASE("async_pop consumers and blocking consumers together receive every item exactly once",
          "[queue][stress][async]") {
    const std::uint64_t per = 400'000 / COURIER_STRESS_SCALE / producers;
    courier::mpmc_queue<std::uint64_t> q;
    boost::asio::io_context io;
    run_with_time_limit(240s, [&] {
        ledger seen(per * producers);
        // Two chains of async_pop on one io_context thread...
        std::function<void()> chain = [&] {
            courier::async_pop(q, boost::asio::bind_executor(io, [&](std::error_code ec, std::uint64_t v) {
                                   if (ec) return;  // closed and drained
                                   seen.record(v);
                                   chain();
                               }));
        };
        chain();
        chain();
        std::thread runner([&] { io.run(); });
        // ...and two blocking consumers.
        std::vector<std::thread> threads;
        for (int c = 0; c < 2; ++c) {
            threads.emplace_back([&] {
                std::uint64_t v;
                while (q.pop(v) == queue_status::ok) seen.record(v);
            });
        }
        std::vector<std::thread> pushers;
        for (int p = 0; p < producers; ++p) {
            pushers.emplace_back([&, p] {
                for (std::uint64_t i = p * per; i < p * per + per; ++i) {
                    if (q.try_push(std::uint64_t(i)) != queue_status::ok) std::abort();
                }
            });
        }
        for (auto& t : pushers) t.join();
        q.close();
        for (auto& t : threads) t.join();
        runner.join();
        REQUIRE(seen.received() == per * producers);
        REQUIRE(seen.anomalies() == 0);
    });
}

TEST_CASE("async_push producers and blocking consumers move every item exactly once through a bounded_queue",
          "[queue][stress][async]") {
    const std::uint64_t per = 200'000 / COURIER_STRESS_SCALE / 2;
    courier::bounded_queue<std::uint64_t> q(16, courier::overflow_policy::block, {}, {.spin_count = 0});
    boost::asio::io_context io;
    run_with_time_limit(240s, [&] {
        ledger seen(per * 2);
        // Two chains of async_push (each push starts the next) on one io_context thread...
        std::atomic<int> chains_done{0};
        std::function<void(std::uint64_t, std::uint64_t)> chain = [&](std::uint64_t next, std::uint64_t last) {
            if (next == last) {
                if (++chains_done == 2) q.close();
                return;
            }
            courier::async_push(q, std::uint64_t(next),
                                boost::asio::bind_executor(io, [&, next, last](std::error_code ec, std::uint64_t) {
                                    if (ec) std::abort();
                                    chain(next + 1, last);
                                }));
        };
        chain(0, per);
        chain(per, 2 * per);
        std::thread runner([&] { io.run(); });
        // ...and three blocking consumers, parking often (capacity 16, no spinning).
        std::vector<std::thread> threads;
        for (int c = 0; c < 3; ++c) {
            threads.emplace_back([&] {
                std::uint64_t v;
                while (q.pop(v) == queue_status::ok) seen.record(v);
            });
        }
        for (auto& t : threads) t.join();
        runner.join();
        REQUIRE(seen.received() == per * 2);
        REQUIRE(seen.anomalies() == 0);
    });
}
