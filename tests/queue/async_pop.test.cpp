// Tests for courier::async_pop and courier::async_push: callbacks (bound to an io_context and
// on the system executor), use_future, use_awaitable coroutines, wake-up by close
// (errc::closed), outstanding work, many concurrent waiters, bounded queues and their
// policies, and per-operation cancellation where Boost has it.
#include <catch2/catch.hpp>

#include <courier/queue/async_pop.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_future.hpp>
#if defined(BOOST_ASIO_HAS_CO_AWAIT)
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#endif
#if COURIER_ASIO_HAS_CANCELLATION
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#endif

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

#include "queue/queue_support.hpp"
#include "wait.hpp"

using namespace std::chrono_literals;
using courier::queue_status;
namespace asio = boost::asio;

using namespace courier_test;

namespace {


// What a callback saw.
template <class T>
struct outcome {
    std::atomic<bool> done{false};
    std::error_code ec;
    T value{};
    std::thread::id thread;
};

}  // namespace

TEST_CASE("async_pop completes a callback through its executor, never inline", "[queue][async]") {
    courier::mpmc_queue<int> q;
    asio::io_context io;
    REQUIRE(q.try_push(5) == queue_status::ok);
    outcome<int> out;
    courier::async_pop(q, asio::bind_executor(io, [&](std::error_code ec, int v) {
                           out.ec = ec;
                           out.value = v;
                           out.thread = std::this_thread::get_id();
                           out.done = true;
                       }));
    REQUIRE_FALSE(out.done);  // an item was ready, yet the initiating call did not complete
    REQUIRE(q.size_approx() == 1);  // and it is taken on the executor, not at initiation
    io.run();
    REQUIRE(out.done);
    REQUIRE_FALSE(out.ec);
    REQUIRE(out.value == 5);
    REQUIRE(out.thread == std::this_thread::get_id());
}

TEST_CASE("async_pop waits for a push when the queue is empty", "[queue][async]") {
    courier::mpmc_queue<std::unique_ptr<int>> q;
    asio::io_context io;
    outcome<std::unique_ptr<int>> out;
    courier::async_pop(q, asio::bind_executor(io, [&](std::error_code ec, std::unique_ptr<int> v) {
                           out.ec = ec;
                           out.value = std::move(v);
                           out.done = true;
                       }));
    run_with_time_limit(20s, [&] {
        // A pending async_pop is outstanding work: run_for returns at its timeout, not at once.
        io.run_for(20ms);
        REQUIRE_FALSE(io.stopped());
        REQUIRE_FALSE(out.done);
        REQUIRE(parked(q) == 1);
        std::thread runner([&] { io.run(); });
        REQUIRE(q.try_push(std::make_unique<int>(17)) == queue_status::ok);
        runner.join();  // returns once the operation completed: no work left
        REQUIRE(out.done);
        REQUIRE_FALSE(out.ec);
        REQUIRE(*out.value == 17);
        REQUIRE(parked(q) == 0);
    });
}

TEST_CASE("async_pop is woken by close with errc::closed and a default value", "[queue][async][close]") {
    courier::mpmc_queue<std::unique_ptr<int>> q;
    asio::io_context io;
    std::vector<std::error_code> codes;
    int nulls = 0;
    for (int i = 0; i < 3; ++i) {
        courier::async_pop(q, asio::bind_executor(io, [&](std::error_code ec, std::unique_ptr<int> v) {
                               codes.push_back(ec);
                               if (v == nullptr) ++nulls;
                           }));
    }
    run_with_time_limit(20s, [&] {
        REQUIRE(wait_until([&] {
            io.poll();  // runs the posted attempts, which park
            return parked(q) == 3;
        }));
        REQUIRE(q.try_push(std::make_unique<int>(1)) == queue_status::ok);  // one gets an item
        q.close();  // the others drain nothing and get closed
        io.run();
        REQUIRE(codes.size() == 3);
        int ok = 0, closed = 0;
        for (auto& ec : codes) {
            if (!ec) ++ok;
            if (ec == courier::errc::closed) ++closed;
        }
        REQUIRE(ok == 1);
        REQUIRE(closed == 2);
        REQUIRE(nulls == 2);
        REQUIRE(codes.back().message() == "closed");
    });
}

TEST_CASE("async_pop on a closed queue completes with errc::closed", "[queue][async][close]") {
    courier::bounded_queue<int> q(4);
    q.close();
    asio::io_context io;
    std::error_code seen;
    courier::async_pop(q, asio::bind_executor(io, [&](std::error_code ec, int) { seen = ec; }));
    io.run();
    REQUIRE(seen == courier::errc::closed);
}

TEST_CASE("async_pop works with use_future", "[queue][async]") {
    courier::mpmc_queue<int> q;
    run_with_time_limit(20s, [&] {
        // use_future's handler has no executor of its own: it completes on Asio's system executor.
        std::future<std::tuple<std::error_code, int>> f = courier::async_pop(q, asio::use_future);
        REQUIRE(f.wait_for(5ms) == std::future_status::timeout);
        REQUIRE(q.try_push(23) == queue_status::ok);
        REQUIRE(f.wait_for(10s) == std::future_status::ready);
        auto [ec, v] = f.get();
        REQUIRE_FALSE(ec);
        REQUIRE(v == 23);

        auto closed = courier::async_pop(q, asio::use_future);
        q.close();
        REQUIRE(closed.wait_for(10s) == std::future_status::ready);
        REQUIRE(std::get<0>(closed.get()) == courier::errc::closed);
    });
}

TEST_CASE("async_pop callbacks without an executor run on the system executor", "[queue][async]") {
    courier::mpmc_queue<int> q;
    run_with_time_limit(20s, [&] {
        std::promise<int> p;
        courier::async_pop(q, [&](std::error_code, int v) { p.set_value(v); });
        REQUIRE(q.try_push(4) == queue_status::ok);
        auto f = p.get_future();
        REQUIRE(f.wait_for(10s) == std::future_status::ready);
        REQUIRE(f.get() == 4);
    });
}

TEST_CASE("many pending async_pops each get exactly one item", "[queue][async]") {
    courier::mpmc_queue<int> q;
    asio::io_context io;
    constexpr int waiters = 200;
    std::vector<int> got;
    int errors = 0;
    for (int i = 0; i < waiters; ++i) {
        courier::async_pop(q, asio::bind_executor(io, [&](std::error_code ec, int v) {
                               if (ec) ++errors; else got.push_back(v);
                           }));
    }
    run_with_time_limit(30s, [&] {
        REQUIRE(wait_until([&] {
            io.poll();
            return parked(q) == waiters;
        }));
        std::thread runner([&] { io.run(); });
        std::thread producer([&] {
            for (int i = 0; i < waiters; ++i) (void)q.try_push(int(i));
        });
        producer.join();
        runner.join();
        REQUIRE(errors == 0);
        REQUIRE(got.size() == waiters);
        std::sort(got.begin(), got.end());
        for (int i = 0; i < waiters; ++i) REQUIRE(got[i] == i);
    });
}

TEST_CASE("async_pop and blocked threads share one queue without losing a wake-up", "[queue][async][blocking]") {
    courier::mpmc_queue<int, no_spin_traits> q;
    asio::io_context io;
    constexpr int per_side = 500 / COURIER_STRESS_SCALE;
    std::atomic<long> async_sum{0};
    std::atomic<int> async_count{0};
    // A chain of async_pops: each completion starts the next, until closed.
    std::function<void()> start = [&] {
        courier::async_pop(q, asio::bind_executor(io, [&](std::error_code ec, int v) {
                               if (ec) return;
                               async_sum += v;
                               ++async_count;
                               start();
                           }));
    };
    start();
    run_with_time_limit(60s, [&] {
        std::thread runner([&] { io.run(); });
        std::atomic<long> thread_sum{0};
        std::atomic<int> thread_count{0};
        std::thread consumer([&] {
            int v;
            while (q.pop(v) == queue_status::ok) {
                thread_sum += v;
                ++thread_count;
            }
        });
        for (int i = 1; i <= 2 * per_side; ++i) {
            REQUIRE(q.try_push(int(i)) == queue_status::ok);
            if (i % 16 == 0) {
                // Let the consumers park now and then, so pushes meet parked waiters.
                REQUIRE(wait_until([&] { return async_count + thread_count == i; }));
            }
        }
        REQUIRE(wait_until([&] { return async_count + thread_count == 2 * per_side; }));
        q.close();
        consumer.join();
        runner.join();
        long n = 2 * per_side;
        REQUIRE(async_sum + thread_sum == n * (n + 1) / 2);
    });
}

TEST_CASE("async_pop on a bounded_queue frees room for a blocked pusher", "[queue][async][bounded]") {
    courier::bounded_queue<int> q(1, courier::overflow_policy::block, {}, {.spin_count = 0});
    asio::io_context io;
    REQUIRE(q.try_push(1) == queue_status::ok);
    run_with_time_limit(20s, [&] {
        std::atomic<int> pushed{-1};
        std::thread producer([&] { pushed = static_cast<int>(q.push(2)); });
        REQUIRE(wait_until([&] { return courier::detail::queue_access::push_waiter_count(q) == 1; }));
        std::vector<int> got;
        for (int i = 0; i < 2; ++i) {
            courier::async_pop(q, asio::bind_executor(io, [&](std::error_code ec, int v) {
                                   if (!ec) got.push_back(v);
                               }));
        }
        std::thread runner([&] { io.run(); });
        producer.join();
        runner.join();
        REQUIRE(pushed == static_cast<int>(queue_status::ok));
        REQUIRE(got == std::vector<int>{1, 2});
    });
}

TEST_CASE("async_push waits for room in a bounded_queue under block", "[queue][async][push]") {
    courier::bounded_queue<std::unique_ptr<int>> q(1, courier::overflow_policy::block);
    asio::io_context io;
    REQUIRE(q.try_push(std::make_unique<int>(1)) == queue_status::ok);
    outcome<std::unique_ptr<int>> out;
    courier::async_push(q, std::make_unique<int>(2),
                        asio::bind_executor(io, [&](std::error_code ec, std::unique_ptr<int> back) {
                            out.ec = ec;
                            out.value = std::move(back);
                            out.done = true;
                        }));
    REQUIRE_FALSE(out.done);
    run_with_time_limit(20s, [&] {
        REQUIRE(wait_until([&] {
            io.poll();
            return courier::detail::queue_access::push_waiter_count(q) == 1;
        }));
        REQUIRE_FALSE(out.done);
        std::unique_ptr<int> v;
        REQUIRE(q.try_pop(v) == queue_status::ok);  // makes room: wakes the async pusher
        REQUIRE(*v == 1);
        io.run();
        REQUIRE(out.done);
        REQUIRE_FALSE(out.ec);
        REQUIRE(out.value == nullptr);  // nothing handed back: the item is in the queue
        REQUIRE(q.try_pop(v) == queue_status::ok);
        REQUIRE(*v == 2);
        REQUIRE(q.stats().rejected_full == 0);  // waiting for room is not a rejection
    });
}

TEST_CASE("async_push hands the item back with errc::closed when the queue closes", "[queue][async][push][close]") {
    courier::bounded_queue<std::unique_ptr<int>> q(1, courier::overflow_policy::block);
    asio::io_context io;
    REQUIRE(q.try_push(std::make_unique<int>(1)) == queue_status::ok);
    std::vector<std::pair<std::error_code, std::unique_ptr<int>>> results;
    for (int i = 2; i <= 3; ++i) {
        courier::async_push(q, std::make_unique<int>(i),
                            asio::bind_executor(io, [&](std::error_code ec, std::unique_ptr<int> back) {
                                results.emplace_back(ec, std::move(back));
                            }));
    }
    run_with_time_limit(20s, [&] {
        REQUIRE(wait_until([&] {
            io.poll();
            return courier::detail::queue_access::push_waiter_count(q) == 2;
        }));
        q.close();
        io.run();
        REQUIRE(results.size() == 2);
        for (auto& [ec, back] : results) {
            REQUIRE(ec == courier::errc::closed);
            REQUIRE(back != nullptr);  // nothing lost: the item comes back
        }
        REQUIRE(*results[0].second + *results[1].second == 5);
        std::error_code after_close;
        std::unique_ptr<int> returned;
        courier::async_push(q, std::make_unique<int>(4),
                            asio::bind_executor(io, [&](std::error_code ec, std::unique_ptr<int> back) {
                                after_close = ec;
                                returned = std::move(back);
                            }));
        io.restart();
        io.run();
        REQUIRE(after_close == courier::errc::closed);
        REQUIRE(*returned == 4);
    });
}

TEST_CASE("async_push applies a non-blocking policy after one try", "[queue][async][push]") {
    auto policy = GENERATE(courier::overflow_policy::fail, courier::overflow_policy::drop_newest,
                           courier::overflow_policy::drop_oldest);
    int dropped = 0;
    courier::bounded_queue<int> q(1, policy, [&](int&&) { ++dropped; });
    REQUIRE(q.try_push(1) == queue_status::ok);
    asio::io_context io;
    std::error_code seen;
    int back = 0;
    courier::async_push(q, 2, asio::bind_executor(io, [&](std::error_code ec, int v) {
                                  seen = ec;
                                  back = v;
                              }));
    io.run();
    int v = 0;
    REQUIRE(q.try_pop(v) == queue_status::ok);
    switch (policy) {
    case courier::overflow_policy::fail:
        REQUIRE(seen == courier::errc::full);
        REQUIRE(back == 2);
        REQUIRE(v == 1);
        break;
    case courier::overflow_policy::drop_newest:
        REQUIRE(seen == courier::errc::dropped);
        REQUIRE(dropped == 1);
        REQUIRE(v == 1);
        break;
    default:
        REQUIRE_FALSE(seen);
        REQUIRE(dropped == 1);
        REQUIRE(v == 2);
        break;
    }
}

TEST_CASE("async_push works with use_future", "[queue][async][push]") {
    courier::bounded_queue<int> q(1);
    REQUIRE(q.try_push(1) == queue_status::ok);
    run_with_time_limit(20s, [&] {
        auto f = courier::async_push(q, 2, asio::use_future);
        REQUIRE(f.wait_for(5ms) == std::future_status::timeout);
        int v;
        REQUIRE(q.pop(v) == queue_status::ok);
        REQUIRE(f.wait_for(10s) == std::future_status::ready);
        REQUIRE_FALSE(std::get<0>(f.get()));
        REQUIRE(q.pop(v) == queue_status::ok);
        REQUIRE(v == 2);
    });
}

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
TEST_CASE("async_pop works in a use_awaitable coroutine", "[queue][async][coroutine]") {
    courier::mpmc_queue<std::unique_ptr<int>> q;
    courier::bounded_queue<int> bq(8);
    asio::io_context io;
    long sum = 0;
    int bounded_sum = 0;
    std::error_code last;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            for (;;) {
                auto [ec, v] = co_await courier::async_pop(q, asio::use_awaitable);
                if (ec) {
                    last = ec;
                    break;
                }
                sum += *v;
            }
            for (;;) {
                auto [ec, v] = co_await courier::async_pop(bq, asio::use_awaitable);
                if (ec) break;
                bounded_sum += v;
            }
        },
        asio::detached);
    run_with_time_limit(20s, [&] {
        std::thread runner([&] { io.run(); });
        for (int i = 1; i <= 100; ++i) REQUIRE(q.try_push(std::make_unique<int>(i)) == queue_status::ok);
        q.close();
        for (int i = 1; i <= 5; ++i) REQUIRE(bq.push(int(i)) == queue_status::ok);
        bq.close();
        runner.join();  // the coroutine finished: both queues closed and drained
        REQUIRE(sum == 5050);
        REQUIRE(bounded_sum == 15);
        REQUIRE(last == courier::errc::closed);
    });
}
#endif

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
TEST_CASE("async_push and async_pop coroutines move every item through a small bounded_queue",
          "[queue][async][push][coroutine]") {
    courier::bounded_queue<std::unique_ptr<int>> q(2);
    asio::io_context io;
    long sum = 0;
    int received = 0;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            for (int i = 1; i <= 1000; ++i) {
                auto [ec, back] = co_await courier::async_push(q, std::make_unique<int>(i), asio::use_awaitable);
                if (ec) co_return;
            }
            q.close();
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            for (;;) {
                auto [ec, v] = co_await courier::async_pop(q, asio::use_awaitable);
                if (ec) co_return;
                sum += *v;
                ++received;
            }
        },
        asio::detached);
    run_with_time_limit(20s, [&] { io.run(); });
    REQUIRE(received == 1000);
    REQUIRE(sum == 1000L * 1001 / 2);
}
#endif

#if COURIER_ASIO_HAS_CANCELLATION
TEST_CASE("async_push hands the item back with errc::cancelled when its cancellation slot fires",
          "[queue][async][push][cancel]") {
    courier::bounded_queue<int> q(1);
    REQUIRE(q.try_push(1) == queue_status::ok);
    asio::io_context io;
    asio::cancellation_signal signal;
    std::error_code seen;
    int back = 0;
    courier::async_push(q, 7, asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, [&](std::error_code ec, int v) {
                                                                seen = ec;
                                                                back = v;
                                                            })));
    REQUIRE(wait_until([&] {
        io.poll();
        return courier::detail::queue_access::push_waiter_count(q) == 1;
    }));
    signal.emit(asio::cancellation_type::terminal);
    io.run();
    REQUIRE(seen == courier::errc::cancelled);
    REQUIRE(back == 7);
}

TEST_CASE("async_pop completes with errc::cancelled when its cancellation slot fires", "[queue][async][cancel]") {
    courier::mpmc_queue<int> q;
    asio::io_context io;
    asio::cancellation_signal signal;
    std::error_code seen;
    bool done = false;
    courier::async_pop(q, asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, [&](std::error_code ec, int) {
                                                           seen = ec;
                                                           done = true;
                                                       })));
    REQUIRE(wait_until([&] {
        io.poll();
        return parked(q) == 1;
    }));
    signal.emit(asio::cancellation_type::terminal);
    io.run();
    REQUIRE(done);
    REQUIRE(seen == courier::errc::cancelled);
    REQUIRE(parked(q) == 0);
    REQUIRE(q.try_push(1) == queue_status::ok);  // the item stays for the next consumer
    REQUIRE(q.size_approx() == 1);
}
#endif
