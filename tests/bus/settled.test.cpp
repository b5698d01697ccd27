// The settle callback of an envelope publish: it fires exactly once, after every subscription
// that accepted the message finished with it (handled, retried and handled, dead-lettered,
// dropped), never for a publish the bus refused. Driven on the manual runtime, so each step is
// observed between pumps, plus one threaded fan-out run.
#include "bus/test_events.hpp"

#include <courier/bus/event_bus.hpp>
#include <courier/event/envelope.hpp>
#include <courier/runtime/runtime.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

using namespace test_events;
using namespace std::chrono_literals;

namespace {

courier::envelope order_envelope(courier::clock& clk, std::string id = "o-1") {
    return courier::make_envelope(order_created{std::move(id), 10.0}, clk.now());
}

}  // namespace

TEST_CASE("an envelope publish settles once every accepting subscription handled it", "[bus][settled]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    int typed = 0, pattern = 0, settled = 0;
    auto a = rt.bus().subscribe<order_created>([&](const order_created&) { ++typed; });
    auto b = rt.bus().subscribe(courier::topic_pattern("order.#"), [&](const courier::message_context&) { ++pattern; });
    auto r = rt.bus().publish(order_envelope(clk), [&] { ++settled; });
    REQUIRE(r);
    CHECK(r->deliveries == 2);
    CHECK(settled == 0);  // both are queued on the executor
    rt.poll();
    CHECK(typed == 1);
    CHECK(pattern == 1);
    CHECK(settled == 1);
    rt.poll();
    CHECK(settled == 1);
}

TEST_CASE("an envelope publish settles after retries, and after the dead letter when they run out", "[bus][settled]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::subscription_options o;
    o.retry = courier::retry_policy::fixed(1s, 3);
    o.retry.jitter = 0;
    int attempts = 0, settled = 0;
    auto sub = rt.bus().subscribe<order_created>(
        [&](const order_created&) {
            ++attempts;
            throw std::runtime_error("down");
        },
        o);
    REQUIRE(rt.bus().publish(order_envelope(clk), [&] { ++settled; }));
    rt.poll();
    CHECK(attempts == 1);
    CHECK(settled == 0);  // a retry is pending: not finished with it
    rt.advance(1s);
    CHECK(attempts == 2);
    CHECK(settled == 0);
    rt.advance(1s);
    CHECK(attempts == 3);
    CHECK(settled == 1);  // dead-lettered: finished
    CHECK(rt.bus().dead_letters().size() == 1);
}

TEST_CASE("an envelope publish nobody subscribes to settles before publish returns", "[bus][settled]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    int settled = 0;
    auto r = rt.bus().publish(order_envelope(clk), [&] { ++settled; });
    REQUIRE(r);
    CHECK(r->deliveries == 0);
    CHECK(settled == 1);

    // Inline subscribers finish before publish returns too.
    int handled = 0;
    courier::subscription_options inl;
    inl.mode = courier::delivery_mode::inline_call;
    auto sub = rt.bus().subscribe<order_created>([&](const order_created&) { ++handled; }, inl);
    REQUIRE(rt.bus().publish(order_envelope(clk), [&] { ++settled; }));
    CHECK(handled == 1);
    CHECK(settled == 2);
}

TEST_CASE("a refused envelope publish never settles: the caller still owns the message", "[bus][settled]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    int settled = 0;
    auto bad = order_envelope(clk);
    bad.event_type = "Not A Name";
    auto r = rt.bus().publish(bad, [&] { ++settled; });
    CHECK_FALSE(r);
    auto mismatch = order_envelope(clk);
    mismatch.version = 2;
    CHECK_FALSE(rt.bus().publish(mismatch, [&] { ++settled; }));
    (void)rt.bus().shutdown(10ms, [&] { rt.poll(); });
    auto closed = rt.bus().publish(order_envelope(clk), [&] { ++settled; });
    REQUIRE(closed);
    CHECK(closed->closed);
    CHECK(settled == 0);
}

TEST_CASE("an envelope dropped by a full subscription queue settles when it is dead-lettered", "[bus][settled]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::subscription_options o;
    o.capacity = 1;
    o.overflow = courier::overflow_policy::drop_newest;
    int handled = 0, settled = 0;
    auto sub = rt.bus().subscribe<order_created>([&](const order_created&) { ++handled; }, o);
    REQUIRE(rt.bus().publish(order_envelope(clk, "a"), [&] { ++settled; }));
    auto second = rt.bus().publish(order_envelope(clk, "b"), [&] { ++settled; });
    REQUIRE(second);
    CHECK(second->rejected == 1);
    CHECK(settled == 1);  // the dropped one, at once
    rt.poll();
    CHECK(handled == 1);
    CHECK(settled == 2);
    CHECK(rt.bus().dead_letters().size() == 1);
}

TEST_CASE("an envelope fanned out to pooled, serial and keyed subscriptions settles once after the last", "[bus][settled]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    constexpr int n = 2000;
    std::atomic<int> handled{0}, settled{0}, early{0};
    std::vector<std::unique_ptr<std::atomic<int>>> per_message;
    for (int i = 0; i < n; ++i) per_message.push_back(std::make_unique<std::atomic<int>>(0));
    std::vector<courier::subscription> subs;
    for (auto mode : {courier::delivery_mode::pooled, courier::delivery_mode::serial, courier::delivery_mode::keyed}) {
        courier::subscription_options o;
        o.mode = mode;
        subs.push_back(rt.bus().subscribe<order_created>(
            [&](const order_created& e) {
                per_message[static_cast<std::size_t>(std::stoi(e.id))]->fetch_add(1);
                handled.fetch_add(1);
            },
            o));
    }
    for (int i = 0; i < n; ++i) {
        const auto idx = static_cast<std::size_t>(i);
        REQUIRE(rt.bus().publish(order_envelope(rt.bus().clock(), std::to_string(i)), [&, idx] {
            if (per_message[idx]->load() != 3) early.fetch_add(1);
            settled.fetch_add(1);
        }));
    }
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (settled.load() < n && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    CHECK(settled.load() == n);
    CHECK(handled.load() == 3 * n);
    CHECK(early.load() == 0);
}
