// Delivery guarantees of the bus: retries on the manual clock, dead letters and redrive,
// overflow policies, idempotency, unsubscribe during dispatch, shutdown, and a stress test.
#include "bus/test_events.hpp"

#include <courier/bus/event_bus.hpp>
#include <courier/bus/idempotency.hpp>
#include <courier/core/detail/op_slot.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "wait.hpp"

using namespace test_events;
using namespace std::chrono_literals;

namespace {

using courier_test::wait_until;

struct fatal_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace

TEST_CASE("at-least-once retries on the manual clock with backoff, then succeeds", "[bus][retry]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::vector<std::uint32_t> attempts;
    std::vector<courier::time_point> when;
    courier::subscription_options o;
    o.retry = courier::retry_policy::exponential(1s, 2.0, 1min, 5);
    o.retry.jitter = 0;
    auto sub = rt.bus().subscribe<tick>(
        [&](const tick&, const courier::message_context& c) {
            attempts.push_back(c.attempt());
            when.push_back(clk.now());
            if (c.attempt() < 3) throw std::runtime_error("not yet");
        },
        o);
    const auto t0 = clk.now();
    (void)rt.bus().publish(tick{1, ""});
    rt.poll();
    CHECK(attempts == std::vector<std::uint32_t>{1});
    rt.advance(999ms);
    CHECK(attempts.size() == 1);  // the first retry is due after 1 s, not before
    rt.advance(1ms);
    CHECK(attempts == std::vector<std::uint32_t>{1, 2});
    rt.advance(2s);
    CHECK(attempts == std::vector<std::uint32_t>{1, 2, 3});
    CHECK(when[1] - t0 == 1s);
    CHECK(when[2] - t0 == 3s);
    auto m = sub.metrics();
    CHECK(m.delivered == 1);
    CHECK(m.failed == 2);
    CHECK(m.retried == 2);
    CHECK(rt.bus().dead_letters().size() == 0);
}

TEST_CASE("jitter spreads retry delays around the backoff", "[bus][retry]") {
    courier::retry_policy p = courier::retry_policy::exponential(1s, 2.0, 10s, 0);
    p.jitter = 0.2;
    CHECK(p.delay_after(1, 0.0) == 800ms);
    CHECK(p.delay_after(1, 1.0) == 1200ms);
    CHECK(p.delay_after(3, 0.5) == 4s);
    CHECK(p.delay_after(10, 0.5) == 10s);  // capped by maximum_interval
}

TEST_CASE("a handler that always throws ends in the dead-letter store with every error", "[bus][retry][dead_letter]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::subscription_options o;
    o.name = "always-fails";
    o.retry = courier::retry_policy::fixed(100ms, 3);
    o.retry.jitter = 0;
    int calls = 0;
    auto sub = rt.bus().subscribe<order_created>(
        [&](const order_created&) { throw std::runtime_error("boom " + std::to_string(++calls)); }, o);
    (void)rt.bus().publish(order_created{"o-1", 5});
    rt.run_timers();
    CHECK(calls == 3);
    auto dl = rt.bus().dead_letters().list();
    REQUIRE(dl.size() == 1);
    const auto& d = dl[0];
    CHECK(d.subscription == "always-fails");
    CHECK(d.reason == courier::dead_letter_reason::handler_failed);
    CHECK(d.attempts == 3);
    REQUIRE(d.errors.size() == 3);
    CHECK(d.errors[0].error == "boom 1");
    CHECK(d.errors[2].error == "boom 3");
    CHECK(d.last_failure - d.first_failure == 200ms);
    CHECK(d.message.event_type == "order.created.v1");
    CHECK(d.message.data["id"] == "o-1");
    CHECK_FALSE(d.message.event_id.is_nil());
    CHECK(sub.metrics().dead_lettered == 1);
}

TEST_CASE("non-retryable errors skip the retries", "[bus][retry][dead_letter]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::subscription_options o;
    o.retry.is_retryable = courier::non_retryable<fatal_error>();
    int calls = 0;
    auto sub = rt.bus().subscribe<tick>(
        [&](const tick&) {
            ++calls;
            throw fatal_error("bad data");
        },
        o);
    (void)rt.bus().publish(tick{});
    rt.run_timers();
    CHECK(calls == 1);
    auto dl = rt.bus().dead_letters().list();
    REQUIRE(dl.size() == 1);
    CHECK(dl[0].reason == courier::dead_letter_reason::non_retryable);
}

TEST_CASE("at-most-once never retries but still dead-letters the failure", "[bus][dead_letter]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::subscription_options o;
    o.guarantee = courier::delivery_guarantee::at_most_once;
    int calls = 0;
    auto sub = rt.bus().subscribe<tick>(
        [&](const tick&) {
            ++calls;
            throw std::runtime_error("once");
        },
        o);
    (void)rt.bus().publish(tick{});
    rt.run_timers();
    CHECK(calls == 1);
    CHECK(rt.bus().dead_letters().size() == 1);
    CHECK(sub.metrics().retried == 0);
}

TEST_CASE("dead letters can be inspected, redriven to their subscription and purged", "[bus][dead_letter]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    bool healthy = false;
    std::vector<std::string> handled;
    courier::subscription_options o;
    o.name = "flaky";
    o.retry = courier::retry_policy::none();
    auto sub = rt.bus().subscribe<order_created>(
        [&](const order_created& e) {
            if (!healthy) throw std::runtime_error("downstream unavailable");
            handled.push_back(e.id);
        },
        o);
    for (auto id : {"a", "b", "c"}) (void)rt.bus().publish(order_created{id, 1});
    rt.run_timers();
    auto& store = rt.bus().dead_letters();
    REQUIRE(store.size() == 3);
    auto first = store.list()[0];
    auto inspected = store.inspect(first.id);
    REQUIRE(inspected);
    CHECK(inspected->errors.at(0).error == "downstream unavailable");

    healthy = true;
    REQUIRE(rt.bus().redrive(first.id));
    rt.poll();
    CHECK(handled == std::vector<std::string>{"a"});
    CHECK(store.size() == 2);

    auto missing = rt.bus().redrive(999999);
    REQUIRE_FALSE(missing);
    CHECK(missing.error() == courier::errc::not_found);

    CHECK(rt.bus().redrive_all("flaky") == 2);
    rt.poll();
    CHECK(handled.size() == 3);
    CHECK(store.size() == 0);

    healthy = false;
    (void)rt.bus().publish(order_created{"d", 1});
    rt.run_timers();
    CHECK(store.purge() == 1);
    CHECK(store.size() == 0);
    CHECK(store.total() == 4);
}

TEST_CASE("the overflow policy of a full subscription queue is applied and counted", "[bus][overflow]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::vector<std::uint64_t> got;
    courier::subscription_options o;
    o.capacity = 4;
    o.mode = courier::delivery_mode::serial;

    SECTION("fail: the new message is rejected and dead-lettered") {
        o.overflow = courier::overflow_policy::fail;
        auto sub = rt.bus().subscribe<tick>([&](const tick& t) { got.push_back(t.n); }, o);
        std::uint32_t rejected = 0;
        for (std::uint64_t i = 0; i < 6; ++i) rejected += rt.bus().publish(tick{i, ""}).rejected;
        CHECK(rejected == 2);
        rt.poll();
        CHECK(got == std::vector<std::uint64_t>{0, 1, 2, 3});
        CHECK(sub.metrics().dropped == 2);
        auto dl = rt.bus().dead_letters().list();
        REQUIRE(dl.size() == 2);
        CHECK(dl[0].reason == courier::dead_letter_reason::overflow);
        CHECK(dl[0].message.data["n"] == 4);
    }
    SECTION("drop_newest: the new message is dropped and dead-lettered") {
        o.overflow = courier::overflow_policy::drop_newest;
        auto sub = rt.bus().subscribe<tick>([&](const tick& t) { got.push_back(t.n); }, o);
        for (std::uint64_t i = 0; i < 6; ++i) (void)rt.bus().publish(tick{i, ""});
        rt.poll();
        CHECK(got == std::vector<std::uint64_t>{0, 1, 2, 3});
        CHECK(sub.metrics().dropped == 2);
    }
    SECTION("drop_oldest: the oldest queued message makes room and is dead-lettered") {
        o.overflow = courier::overflow_policy::drop_oldest;
        auto sub = rt.bus().subscribe<tick>([&](const tick& t) { got.push_back(t.n); }, o);
        for (std::uint64_t i = 0; i < 6; ++i) (void)rt.bus().publish(tick{i, ""});
        rt.poll();
        CHECK(got == std::vector<std::uint64_t>{2, 3, 4, 5});
        CHECK(sub.metrics().dropped == 2);
        auto dl = rt.bus().dead_letters().list();
        REQUIRE(dl.size() == 2);
        CHECK(dl[0].message.data["n"] == 0);
        CHECK(dl[1].message.data["n"] == 1);
    }
    SECTION("block on a manual runtime cannot wait: the message is dead-lettered at once") {
        o.overflow = courier::overflow_policy::block;
        auto sub = rt.bus().subscribe<tick>([&](const tick& t) { got.push_back(t.n); }, o);
        for (std::uint64_t i = 0; i < 5; ++i) (void)rt.bus().publish(tick{i, ""});
        CHECK(sub.metrics().dropped == 1);
        rt.poll();
        CHECK(got.size() == 4);
    }
}

TEST_CASE("block waits for room while a worker drains", "[bus][overflow]") {
    courier::runtime rt(courier::runtime_options{.threads = 1});
    std::atomic<std::uint64_t> n{0};
    courier::subscription_options o;
    o.capacity = 8;
    o.overflow = courier::overflow_policy::block;
    o.block_timeout = 10s;
    auto sub = rt.bus().subscribe<tick>([&](const tick&) { n.fetch_add(1); }, o);
    for (std::uint64_t i = 0; i < 5000; ++i) REQUIRE(rt.bus().publish(tick{i, ""}).deliveries == 1);
    REQUIRE(wait_until([&] { return n.load() == 5000; }));
    CHECK(sub.metrics().dropped == 0);
}

TEST_CASE("a large capacity is claimed in chunks yet never exceeded, with several publishers", "[bus][overflow]") {
    // 8192 / (8 * 32 slots) = chunks of 32: each publisher spends its own chunk per message.
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::subscription_options o;
    o.capacity = 8192;
    o.mode = courier::delivery_mode::serial;
    o.overflow = courier::overflow_policy::fail;
    std::uint64_t handled = 0;
    auto sub = rt.bus().subscribe<tick>([&](const tick&) { ++handled; }, o);

    constexpr int publishers = 4;
    constexpr std::uint64_t per_publisher = 3000;  // 12000 in all: more than the capacity
    std::atomic<std::uint64_t> accepted{0}, rejected{0};
    std::vector<std::thread> threads;
    for (int p = 0; p < publishers; ++p)
        threads.emplace_back([&] {
            for (std::uint64_t i = 0; i < per_publisher; ++i) {
                auto r = rt.bus().publish(tick{i, ""});
                accepted += r.deliveries;
                rejected += r.rejected;
            }
        });
    for (auto& t : threads) t.join();

    // Nothing drained (manual runtime, not polled): the lane holds what it accepted, which
    // never exceeds the capacity, and falls short of it by at most the unused chunks.
    CHECK(accepted + rejected == publishers * per_publisher);
    CHECK(accepted <= 8192);
    CHECK(accepted >= 8192 - publishers * 32);
    CHECK(sub.metrics().queue_depth == accepted);
    CHECK(sub.metrics().dropped == rejected);
    CHECK(rt.bus().dead_letters().size() == rejected);

    rt.poll();
    CHECK(handled == accepted);
    CHECK(sub.metrics().queue_depth == 0);
    // Drained, the whole capacity is free again for every publisher.
    std::uint64_t again = 0;
    for (std::uint64_t i = 0; i < 8000; ++i) again += rt.bus().publish(tick{i, ""}).deliveries;
    CHECK(again == 8000);
}

TEST_CASE("a publish racing unsubscribe is either handled or handed back, never lost", "[bus][unsubscribe]") {
    for (int round = 0; round < 20; ++round) {
        courier::runtime rt(courier::runtime_options{.threads = 2});
        std::atomic<std::uint64_t> handled{0};
        courier::subscription_options o;
        o.concurrency = 2;
        auto sub = rt.bus().subscribe<tick>([&](const tick&) { handled.fetch_add(1); }, o);
        std::atomic<bool> go{true};
        std::atomic<std::uint64_t> accepted{0}, refused{0};
        std::thread publisher([&] {
            std::uint64_t i = 0;
            while (go.load(std::memory_order_relaxed)) {
                auto r = rt.bus().publish(tick{i++, ""});
                accepted += r.deliveries;
                refused += r.rejected;
            }
        });
        while (accepted.load() < 2000) std::this_thread::yield();
        sub.unsubscribe();
        go = false;
        publisher.join();
        const auto m = sub.metrics();
        // Every accepted message was handled or dead-lettered as unsubscribed; one refused on
        // the way in (the lane closed under it) may be dead-lettered too, or just not taken.
        CHECK(handled.load() + m.dead_lettered >= accepted.load());
        CHECK(handled.load() + m.dead_lettered <= accepted.load() + refused.load());
        CHECK(m.queue_depth == 0);
    }
}

TEST_CASE("idempotency makes a redelivered event run once", "[bus][idempotency]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    auto store = std::make_shared<courier::in_memory_idempotency_store>();
    int runs = 0;
    courier::subscription_options o;
    o.mode = courier::delivery_mode::inline_call;

    courier::envelope env;
    env.event_type = "order.created.v1";
    env.version = 1;
    env.event_id = courier::make_uuid_v7(clk.now());
    env.data = {{"id", "o-1"}, {"total", 1.0}};

    SECTION("until completion plus a TTL") {
        o.middleware.push_back(courier::idempotency(store, clk, {.scope = courier::idempotency_scope::until_completion_plus_ttl,
                                                                  .ttl = 1h}));
        auto sub = rt.bus().subscribe<order_created>([&](const order_created&) { ++runs; }, o);
        REQUIRE(rt.bus().publish(env));
        REQUIRE(rt.bus().publish(env));
        CHECK(runs == 1);
        CHECK(sub.metrics().deduplicated == 1);
        CHECK(sub.metrics().delivered == 1);
        rt.advance(2h);  // the TTL has passed: the key is forgotten
        REQUIRE(rt.bus().publish(env));
        CHECK(runs == 2);
    }
    SECTION("in flight only: a later redelivery runs again") {
        o.middleware.push_back(courier::idempotency(store, clk, {.scope = courier::idempotency_scope::in_flight}));
        auto sub = rt.bus().subscribe<order_created>([&](const order_created&) { ++runs; }, o);
        REQUIRE(rt.bus().publish(env));
        REQUIRE(rt.bus().publish(env));
        CHECK(runs == 2);
    }
    SECTION("a failed attempt releases its key so the retry runs") {
        o.middleware.push_back(courier::idempotency(store, clk));
        o.retry = courier::retry_policy::fixed(1s, 3);
        auto sub = rt.bus().subscribe<order_created>(
            [&](const order_created&, const courier::message_context& c) {
                ++runs;
                if (c.attempt() == 1) throw std::runtime_error("first");
            },
            o);
        REQUIRE(rt.bus().publish(env));
        rt.run_timers();
        CHECK(runs == 2);
        REQUIRE(rt.bus().publish(env));
        CHECK(runs == 2);
    }
}

TEST_CASE("the in-memory idempotency store is bounded and evicts completed keys first", "[bus][idempotency]") {
    courier::in_memory_idempotency_store store(2);
    const courier::time_point now{};
    CHECK(store.try_claim("a", now) == courier::claim_result::claimed);
    store.complete("a", now + 1h);
    CHECK(store.try_claim("b", now) == courier::claim_result::claimed);
    CHECK(store.try_claim("b", now) == courier::claim_result::in_flight);
    CHECK(store.try_claim("c", now) == courier::claim_result::claimed);  // evicts "a", not the in-flight "b"
    CHECK(store.evicted() == 1);
    CHECK(store.try_claim("b", now) == courier::claim_result::in_flight);
}

TEST_CASE("no handler call starts after unsubscribe returns, even with messages in flight", "[bus][unsubscribe]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    std::atomic<bool> unsubscribed{false};
    std::atomic<int> late_calls{0};
    std::atomic<int> calls{0};
    courier::subscription_options o;
    o.guarantee = courier::delivery_guarantee::at_most_once;
    o.capacity = 0;
    auto sub = rt.bus().subscribe<tick>(
        [&](const tick&) {
            if (unsubscribed.load()) late_calls.fetch_add(1);
            calls.fetch_add(1);
        },
        o);
    std::atomic<bool> stop{false};
    std::thread publisher([&] {
        while (!stop.load()) (void)rt.bus().publish(tick{});
    });
    REQUIRE(wait_until([&] { return calls.load() > 1000; }));
    sub.unsubscribe();
    unsubscribed = true;
    const int at_unsubscribe = calls.load();
    std::this_thread::sleep_for(20ms);  // give a wrong implementation time to misbehave
    stop = true;
    publisher.join();
    CHECK(late_calls.load() == 0);
    CHECK(calls.load() == at_unsubscribe);
    CHECK_FALSE(sub.active());
}

TEST_CASE("a handler may unsubscribe itself", "[bus][unsubscribe]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    std::atomic<int> calls{0};
    courier::subscription sub;
    sub = rt.bus().subscribe<tick>([&](const tick&) {
        if (calls.fetch_add(1) == 0) sub.unsubscribe();
    }, {.mode = courier::delivery_mode::serial});
    for (int i = 0; i < 100; ++i) (void)rt.bus().publish(tick{});
    REQUIRE(wait_until([&] { return !sub.active(); }));
    CHECK(calls.load() == 1);
}

TEST_CASE("a throwing handler never takes down a worker thread", "[bus][errors]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    std::atomic<int> ok{0};
    courier::subscription_options o;
    o.guarantee = courier::delivery_guarantee::at_most_once;
    auto bad = rt.bus().subscribe<tick>([](const tick&) -> void { throw std::logic_error("always"); }, o);
    auto good = rt.bus().subscribe<tick>([&](const tick&) { ok.fetch_add(1); });
    for (int i = 0; i < 1000; ++i) (void)rt.bus().publish(tick{});
    // The failure is counted before its dead letter is stored: wait for both (under ASan the
    // check once ran between the two).
    REQUIRE(wait_until([&] { return ok.load() == 1000 && bad.metrics().failed == 1000 && rt.bus().dead_letters().size() == 1000; }));
    CHECK(rt.bus().dead_letters().size() == 1000);
}

TEST_CASE("shutdown hands back what it could not deliver", "[bus][shutdown]") {
    courier::manual_clock clk;
    auto rt = std::make_unique<courier::runtime>(courier::runtime::manual, clk,
                                                 courier::runtime_options{.shutdown_timeout = 0s});
    courier::subscription_options o;
    o.retry = courier::retry_policy::fixed(1h, 5);
    int calls = 0;
    auto retrying = rt->bus().subscribe<order_created>([&](const order_created&) {
        ++calls;
        throw std::runtime_error("later");
    }, o);
    (void)rt->bus().publish(order_created{"x", 1});
    rt->poll();  // first attempt fails, a retry waits an hour
    CHECK(calls == 1);
    auto report = rt->stop();
    CHECK(report.handed_back == 1);
    auto dl = rt->bus().dead_letters().list();
    REQUIRE(dl.size() == 1);
    CHECK(dl[0].reason == courier::dead_letter_reason::shutdown);
    CHECK(dl[0].errors.size() == 1);
    CHECK(rt->bus().publish(order_created{"y", 1}).closed);
}

TEST_CASE("stress: every delivery happens exactly once across publishers and subscribers", "[bus][stress]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    constexpr int publishers = 4;
    const std::uint64_t per_publisher = 200000 / COURIER_STRESS_SCALE;
    struct counter {
        std::atomic<std::uint64_t> count{0};
        std::atomic<std::uint64_t> sum{0};
    };
    std::vector<std::unique_ptr<counter>> counters;
    std::vector<courier::subscription> subs;
    const courier::delivery_mode modes[] = {courier::delivery_mode::pooled, courier::delivery_mode::serial,
                                            courier::delivery_mode::keyed, courier::delivery_mode::inline_call};
    for (int i = 0; i < 8; ++i) {
        counters.push_back(std::make_unique<counter>());
        auto* c = counters.back().get();
        courier::subscription_options o;
        o.mode = modes[i % 4];
        o.capacity = 0;
        o.key = courier::key_by<tick>([](const tick& t) { return t.n % 13; });
        if (i < 6) {
            subs.push_back(rt.bus().subscribe<tick>([c](const tick& t) {
                c->count.fetch_add(1, std::memory_order_relaxed);
                c->sum.fetch_add(t.n, std::memory_order_relaxed);
            }, o));
        } else {
            subs.push_back(rt.bus().subscribe("test.#", [c](const courier::message_context& ctx) {
                c->count.fetch_add(1, std::memory_order_relaxed);
                c->sum.fetch_add(ctx.get_if<tick>()->n, std::memory_order_relaxed);
            }, o));
        }
    }
    std::vector<std::thread> threads;
    for (int p = 0; p < publishers; ++p) {
        threads.emplace_back([&, p] {
            for (std::uint64_t i = 0; i < per_publisher; ++i) (void)rt.bus().publish(tick{p * per_publisher + i, ""});
        });
    }
    for (auto& t : threads) t.join();
    const std::uint64_t total = publishers * per_publisher;
    const std::uint64_t expected_sum = total * (total - 1) / 2;
    REQUIRE(wait_until([&] {
        for (auto& c : counters)
            if (c->count.load() != total) return false;
        return true;
    }, 120s));
    for (auto& c : counters) {
        CHECK(c->count.load() == total);
        CHECK(c->sum.load() == expected_sum);
    }
    CHECK(rt.bus().dead_letters().size() == 0);
}

TEST_CASE("shutdown hooks run once after the drain, and a late hook runs at once", "[bus][shutdown]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::vector<std::string> order;
    auto sub = rt.bus().subscribe<tick>([&](const tick&) { order.push_back("handled"); },
                                        {.mode = courier::delivery_mode::serial});
    (void)rt.bus().publish(tick{1, ""});
    const auto kept = rt.bus().on_shutdown([&] { order.push_back("hook"); });
    const auto removed = rt.bus().on_shutdown([&] { order.push_back("removed"); });
    CHECK(kept != 0);
    rt.bus().remove_on_shutdown(removed);
    auto report = rt.bus().shutdown(std::chrono::seconds(1), [&] { rt.poll(); });
    CHECK(report.handed_back == 0);
    CHECK(order == std::vector<std::string>{"handled", "hook"});
    (void)rt.bus().shutdown(std::chrono::seconds(1));  // a second shutdown runs no hook again
    CHECK(order.size() == 2);
    CHECK(rt.bus().on_shutdown([&] { order.push_back("late"); }) == 0);
    CHECK(order.back() == "late");
}

// Regression (found by the soak): an ordered lane that parks a failed message used to arm its
// retry timer before its drain had moved the rest of the batch into `held`; a short backoff
// let the timer start a second drain of the same lane, and both used the lane's deque at once.
TEST_CASE("a serial lane parked on a short retry keeps its order and loses nothing", "[bus][retry][stress]") {
    courier::runtime rt(courier::runtime_options{.threads = 4});
    constexpr std::uint64_t total = 20000 / COURIER_STRESS_SCALE;
    std::vector<std::uint64_t> seen;
    std::atomic<std::uint64_t> handled{0};
    std::atomic<bool> out_of_order{false};
    std::vector<std::uint8_t> failed_once(total, 0);
    courier::subscription_options o;
    o.mode = courier::delivery_mode::serial;
    o.capacity = 0;
    o.retry = courier::retry_policy::fixed(0ms, 3);
    auto sub = rt.bus().subscribe<tick>(
        [&](const tick& t) {
            // Every 16th message fails its first attempt: the lane parks mid-batch.
            if (t.n % 16 == 5 && !failed_once[t.n]) {
                failed_once[t.n] = 1;
                throw std::runtime_error("first attempt fails");
            }
            if (!seen.empty() && seen.back() + 1 != t.n) out_of_order = true;
            seen.push_back(t.n);
            handled.fetch_add(1, std::memory_order_release);
        },
        o);
    for (std::uint64_t i = 0; i < total; ++i) REQUIRE(rt.bus().publish(tick{i}).deliveries == 1);
    REQUIRE(wait_until([&] { return handled.load(std::memory_order_acquire) == total; }, 60s));
    CHECK_FALSE(out_of_order.load());
    CHECK(seen.size() == total);
    CHECK(rt.bus().dead_letters().total() == 0);
    rt.stop();
}

TEST_CASE("a lane's drain is built in its op slot; a second one while it is taken goes to the heap", "[bus][drain]") {
    courier::detail::op_slot slot;
    SECTION("take and give") {
        void* a = slot.take(64);
        void* b = slot.take(64);  // the slot is taken: heap
        CHECK(a != b);
        void* too_big = slot.take(courier::detail::op_slot::capacity + 1);
        CHECK(too_big != a);
        slot.give(b);
        slot.give(too_big);
        slot.give(a);
        CHECK(slot.take(32) == a);  // free again once given back
        slot.give(a);
    }
    SECTION("Asio builds a posted handler in it and frees it before the handler runs") {
        boost::asio::io_context io(1);
        struct task {
            courier::detail::op_slot* slot;
            std::vector<void*>* seen;
            int left;
            using allocator_type = courier::detail::op_slot_allocator<void>;
            allocator_type get_allocator() const noexcept { return allocator_type(slot); }
            void operator()() const {
                // The operation this handler came in is already released: taking the slot works.
                void* p = slot->take(8);
                seen->push_back(p);
                slot->give(p);
                if (left > 0) boost::asio::post(*io_of(), task{slot, seen, left - 1});
            }
            static boost::asio::io_context*& io_of() {
                static boost::asio::io_context* io = nullptr;
                return io;
            }
        };
        task::io_of() = &io;
        std::vector<void*> seen;
        boost::asio::post(io, task{&slot, &seen, 3});
        CHECK(io.run() == 4);
        REQUIRE(seen.size() == 4);
        for (void* p : seen) CHECK(p == seen.front());
        CHECK(slot.take(8) == seen.front());  // and nothing is left holding it
    }
}

TEST_CASE("a pooled lane drained by up to 4 drains at once delivers every message (one built in the slot, the others on the heap)",
          "[bus][drain]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    auto& bus = rt.bus();
    std::atomic<int> got{0};
    auto sub = bus.subscribe<order_created>([&](const order_created&) { got.fetch_add(1); },
                                            {.mode = courier::delivery_mode::pooled, .concurrency = 4});
    constexpr int n = 20000;
    for (int i = 0; i < n; ++i) bus.publish(order_created{"o-" + std::to_string(i), static_cast<double>(i)});
    REQUIRE(wait_until([&] { return got.load() == n; }));
    // A drain counts what it delivered when it ends, after the handlers ran.
    CHECK(wait_until([&] { return sub.metrics().delivered == n; }));
    CHECK(got.load() == n);
    CHECK(sub.metrics().dead_lettered == 0);
}

TEST_CASE("a drain pauses to let a batch build only while messages arrive back to back", "[bus][drain]") {
    courier::runtime rt(courier::runtime_options{.threads = 1});
    auto& bus = rt.bus();
    SECTION("the first message of a drain never waits, even with an endless pause configured") {
        // ~22 ns per pause: UINT32_MAX pauses would hold a message for over a minute, far past
        // the wait below. `delivered` is counted when a drain ends, so each publish here finds
        // the lane idle and starts a new drain.
        std::atomic<std::uint64_t> got{0};
        auto sub = bus.subscribe<tick>([&](const tick& t) { got.store(t.n); },
                                       {.mode = courier::delivery_mode::serial, .coalesce_spin = UINT32_MAX});
        for (std::uint64_t i = 1; i <= 3; ++i) {
            bus.publish(tick{i, ""});
            REQUIRE(wait_until([&] { return got.load() == i; }, 10s));
            REQUIRE(wait_until([&] { return sub.metrics().delivered == i; }, 10s));
        }
    }
    SECTION("a stream of messages is delivered whole and in order with the pause on and off") {
        for (const std::uint32_t spin : {0u, 64u, 4096u}) {
            std::vector<std::uint64_t> seen;
            std::atomic<std::size_t> count{0};
            auto sub = bus.subscribe<tick>(
                [&](const tick& t) {
                    seen.push_back(t.n);
                    count.fetch_add(1, std::memory_order_release);
                },
                {.mode = courier::delivery_mode::serial, .coalesce_spin = spin});
            constexpr std::uint64_t n = 20000;
            for (std::uint64_t i = 0; i < n; ++i) bus.publish(tick{i, ""});
            REQUIRE(wait_until([&] { return count.load(std::memory_order_acquire) == n; }));
            bool ordered = true;
            for (std::uint64_t i = 0; i < n; ++i) ordered = ordered && seen[i] == i;
            CHECK(ordered);
            CHECK(wait_until([&] { return sub.metrics().delivered == n; }));
            sub.unsubscribe();
        }
    }
}
