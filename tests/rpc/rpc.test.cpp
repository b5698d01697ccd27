// Request-reply: completion tokens, no responders, timeouts and late replies on the manual
// clock, queue groups, error replies, deferred replies, scatter-gather, trace continuity,
// cancellation, and a stress test of concurrent requesters racing their timeouts.
#include "rpc/rpc_events.hpp"

#include <courier/rpc/rpc.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <array>
#include <future>
#include <mutex>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "wait.hpp"

using namespace rpc_events;
using namespace std::chrono_literals;

namespace {

using courier_test::wait_until;

/// Runs what it is given at once, in the calling thread, letting exceptions through.
struct inline_executor {
    boost::asio::io_context* ctx;
    boost::asio::execution_context& query(boost::asio::execution::context_t) const noexcept { return *ctx; }
    inline_executor require(boost::asio::execution::blocking_t::never_t) const noexcept { return *this; }
    template <class F>
    void execute(F&& f) const {
        std::forward<F>(f)();
    }
    friend bool operator==(const inline_executor& a, const inline_executor& b) noexcept { return a.ctx == b.ctx; }
    friend bool operator!=(const inline_executor& a, const inline_executor& b) noexcept { return a.ctx != b.ctx; }
};

struct manual_fixture {
    courier::manual_clock clk;
    courier::runtime rt{courier::runtime::manual, clk};
    courier::rpc rpc{rt.bus()};
};

}  // namespace

TEST_CASE("a request completes with the responder's reply through a callback", "[rpc]") {
    manual_fixture f;
    auto pricing = f.rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 9.5, "pricing"}; });
    std::optional<courier::result<quote>> got;
    f.rpc.request<quote>(get_quote{"sku-1"}, 2s, [&](courier::result<quote> r) { got.emplace(std::move(r)); });
    CHECK_FALSE(got);  // never completes inside the initiating call
    f.rt.poll();
    REQUIRE(got);
    REQUIRE(got->has_value());
    CHECK((*got)->sku == "sku-1");
    CHECK((*got)->price == 9.5);
    auto m = f.rpc.metrics();
    CHECK(m.requests == 1);
    CHECK(m.replies == 1);
    CHECK(m.served == 1);
    CHECK(m.pending == 0);
    CHECK(f.rpc.pending() == 0);
}

TEST_CASE("the reply type defaults to the request's reply_type", "[rpc]") {
    manual_fixture f;
    auto r = f.rpc.respond<double_it>([](const double_it& d) { return doubled{d.value * 2}; });
    std::uint64_t v = 0;
    f.rpc.request(double_it{21}, 1s, [&](courier::result<doubled> d) { v = d.value().value; });
    f.rt.poll();
    CHECK(v == 42);
}

TEST_CASE("a request completes through use_future and use_awaitable", "[rpc]") {
    SECTION("use_future on a threaded runtime") {
        courier::runtime rt(courier::runtime_options{.threads = 2});
        courier::rpc rpc(rt.bus());
        auto r = rpc.respond<double_it>([](const double_it& d) { return doubled{d.value * 2}; });
        std::future<courier::result<doubled>> fut = rpc.request(double_it{5}, 5s, boost::asio::use_future);
        REQUIRE(fut.wait_for(20s) == std::future_status::ready);
        auto res = fut.get();
        REQUIRE(res);
        CHECK(res->value == 10);
        rt.stop();  // threads joined before the responder unsubscribes
    }
    SECTION("use_awaitable in a coroutine on the manual runtime") {
        manual_fixture f;
        auto r = f.rpc.respond<double_it>([](const double_it& d) { return doubled{d.value * 2}; });
        std::vector<std::uint64_t> seen;
        std::optional<courier::error> failure;
        boost::asio::co_spawn(
            f.rt.executor(),
            [&]() -> boost::asio::awaitable<void> {
                for (std::uint64_t i = 1; i <= 3; ++i) {
                    // Named, not a temporary: g++ 12 mis-copies class temporaries that live
                    // across a co_await (see docs/rpc.md).
                    double_it req{i};
                    auto res = co_await f.rpc.request(std::move(req), 1s, boost::asio::use_awaitable);
                    if (res) seen.push_back(res->value);
                }
                r.stop();
                double_it last{9};
                auto res = co_await f.rpc.request(std::move(last), 1s, boost::asio::use_awaitable);
                if (!res) failure = res.error();
            },
            boost::asio::detached);
        f.rt.poll();
        CHECK(seen == std::vector<std::uint64_t>{2, 4, 6});
        REQUIRE(failure);
        CHECK(failure->code == courier::errc::no_responders);
    }
}

TEST_CASE("a request without responders fails at once with no_responders, not a timeout", "[rpc][errors]") {
    manual_fixture f;
    // A wildcard subscriber sees request events but is not a responder.
    int seen_by_audit = 0;
    auto audit = f.rt.bus().subscribe("pricing.#", [&](const courier::message_context&) { ++seen_by_audit; },
                                      {.mode = courier::delivery_mode::inline_call});
    std::optional<courier::result<quote>> got;
    const auto before = f.clk.now();
    f.rpc.request<quote>(get_quote{"sku-1"}, 30s, [&](courier::result<quote> r) { got.emplace(std::move(r)); });
    f.rt.poll();  // no clock movement needed
    REQUIRE(got);
    REQUIRE_FALSE(got->has_value());
    CHECK(got->error().code == courier::errc::no_responders);
    CHECK(got->error().id() == "courier.rpc.no_responders");
    CHECK(got->error().message.find("pricing.quote.requested.v1") != std::string::npos);
    CHECK(f.clk.now() == before);
    CHECK(f.rpc.metrics().no_responders == 1);
    CHECK(f.rpc.metrics().timeouts == 0);
    CHECK(seen_by_audit == 0);  // not published at all

    SECTION("and again after the last responder stopped") {
        auto r = f.rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 1, ""}; });
        CHECK(f.rpc.responders<get_quote>() == 1);
        r.stop();
        CHECK(f.rpc.responders<get_quote>() == 0);
        got.reset();
        f.rpc.request<quote>(get_quote{"sku-2"}, 30s, [&](courier::result<quote> res) { got.emplace(std::move(res)); });
        f.rt.poll();
        REQUIRE(got);
        CHECK(got->error().code == courier::errc::no_responders);
    }
}

TEST_CASE("a request times out on the runtime clock, the reply after that is dropped and counted", "[rpc][timeout]") {
    manual_fixture f;
    std::vector<courier::reply_to<quote>> held;
    auto slow = f.rpc.respond<get_quote, quote>(
        [&](const get_quote&, courier::reply_to<quote> reply) { held.push_back(std::move(reply)); });
    std::optional<courier::result<quote>> got;
    f.rpc.request<quote>(get_quote{"sku-1"}, 2s, [&](courier::result<quote> r) { got.emplace(std::move(r)); });
    f.rt.poll();
    REQUIRE(held.size() == 1);
    CHECK_FALSE(got);
    f.rt.advance(1999ms);
    CHECK_FALSE(got);  // not a millisecond early
    f.rt.advance(1ms);
    REQUIRE(got);
    REQUIRE_FALSE(got->has_value());
    CHECK(got->error().code == courier::errc::timeout);
    CHECK(got->error().id() == "courier.rpc.timeout");
    CHECK(got->error().message.find("2000 ms") != std::string::npos);
    CHECK(f.rpc.metrics().timeouts == 1);

    // The late reply: dropped, counted, and the handler is not called again.
    got.reset();
    CHECK(held[0].send(quote{"sku-1", 3, "late"}));
    CHECK_FALSE(held[0].send(quote{"sku-1", 4, "twice"}));
    f.rt.poll();
    CHECK_FALSE(got);
    auto m = f.rpc.metrics();
    CHECK(m.late_replies == 1);
    CHECK(m.replies == 0);
    CHECK(m.pending == 0);
}

TEST_CASE("a late reply never reaches the request that reuses its slot, and that request gets its own reply",
          "[rpc][timeout]") {
    manual_fixture f;
    std::vector<courier::reply_to<quote>> held;
    auto slow = f.rpc.respond<get_quote, quote>(
        [&](const get_quote&, courier::reply_to<quote> reply) { held.push_back(std::move(reply)); });
    std::vector<courier::result<quote>> first, second;
    f.rpc.request<quote>(get_quote{"sku-1"}, 1s, [&](courier::result<quote> r) { first.push_back(std::move(r)); });
    f.rt.poll();
    f.rt.advance(1s);
    REQUIRE(first.size() == 1);
    CHECK(first[0].error().code == courier::errc::timeout);
    // The next request from this thread takes the slot the first one left (a new generation).
    f.rpc.request<quote>(get_quote{"sku-2"}, 1s, [&](courier::result<quote> r) { second.push_back(std::move(r)); });
    f.rt.poll();
    REQUIRE(held.size() == 2);
    CHECK(f.rpc.metrics().pending == 1);
    CHECK(held[0].send(quote{"sku-1", 1, "late"}));  // for the first request: late, not for the second
    f.rt.poll();
    CHECK(second.empty());
    CHECK(f.rpc.metrics().late_replies == 1);
    CHECK(f.rpc.metrics().pending == 1);
    CHECK(held[1].send(quote{"sku-2", 2, "on time"}));
    f.rt.poll();
    REQUIRE(second.size() == 1);
    REQUIRE(second[0].has_value());
    CHECK(second[0]->sku == "sku-2");
    CHECK(second[0]->by == "on time");
    CHECK(first.size() == 1);
    auto m = f.rpc.metrics();
    CHECK(m.replies == 1);
    CHECK(m.late_replies == 1);
    CHECK(m.timeouts == 1);
    CHECK(m.pending == 0);
}

TEST_CASE("many pending requests with different timeouts each end at their own deadline", "[rpc][timeout]") {
    manual_fixture f;
    std::vector<courier::reply_to<doubled>> held;
    auto slow = f.rpc.respond<double_it, doubled>(
        [&](const double_it&, courier::reply_to<doubled> reply) { held.push_back(std::move(reply)); });
    std::map<std::uint64_t, courier::time_point> ended;
    const auto t0 = f.clk.now();
    for (std::uint64_t i : {5, 1, 3, 2, 4}) {
        f.rpc.request(double_it{i}, std::chrono::seconds(i), [&, i](courier::result<doubled> r) {
            CHECK(r.error().code == courier::errc::timeout);
            ended[i] = f.clk.now();
        });
    }
    f.rt.poll();
    f.rt.run_timers();
    REQUIRE(ended.size() == 5);
    for (auto& [i, at] : ended) CHECK(at - t0 == std::chrono::seconds(i));
    // Answering one of them now is a late reply; answering the rest happens as the handles go.
    held[0].send(doubled{10});
    CHECK(f.rpc.metrics().late_replies == 1);
}

TEST_CASE("responders of one queue group share the load round robin", "[rpc][group]") {
    manual_fixture f;
    std::map<std::string, int> served;
    std::vector<courier::responder> rs;
    for (std::string name : {"a", "b", "c"}) {
        rs.push_back(f.rpc.respond<get_quote>(
            [&served, name](const get_quote& q) {
                ++served[name];
                return quote{q.sku, 1, name};
            },
            {.name = "pricing-" + name}));
    }
    CHECK(f.rpc.responders<get_quote>() == 3);
    int replies = 0;
    for (int i = 0; i < 300; ++i)
        f.rpc.request<quote>(get_quote{"s"}, 1s, [&](courier::result<quote> r) { replies += r ? 1 : 0; });
    f.rt.poll();
    CHECK(replies == 300);
    CHECK(served["a"] == 100);
    CHECK(served["b"] == 100);
    CHECK(served["c"] == 100);
    CHECK(rs[0].name() == "pricing-a");
}

TEST_CASE("responders in different groups each answer, the first reply wins, the others are late", "[rpc][group]") {
    manual_fixture f;
    auto a = f.rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 1, "a"}; },
                                      {.group = "east", .mode = courier::delivery_mode::inline_call});
    auto b = f.rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 2, "b"}; },
                                      {.group = "west", .mode = courier::delivery_mode::inline_call});
    std::vector<std::string> by;
    f.rpc.request<quote>(get_quote{"s"}, 1s, [&](courier::result<quote> r) { by.push_back(r->by); });
    f.rt.poll();
    REQUIRE(by.size() == 1);
    CHECK(by[0] == "a");  // inline responders answer in subscription order
    CHECK(f.rpc.metrics().late_replies == 1);
}

TEST_CASE("a responder that throws or returns an error answers with that error", "[rpc][errors]") {
    manual_fixture f;
    SECTION("a throw becomes handler_failed with the exception text") {
        auto r = f.rpc.respond<get_quote>([](const get_quote&) -> quote { throw std::runtime_error("price feed down"); },
                                          {.name = "pricing"});
        std::optional<courier::error> e;
        f.rpc.request<quote>(get_quote{"s"}, 1s, [&](courier::result<quote> res) { e = res.error(); });
        f.rt.poll();
        REQUIRE(e);
        CHECK(e->code == courier::errc::handler_failed);
        CHECK(e->id() == "courier.rpc.handler_failed");
        CHECK(e->message.find("price feed down") != std::string::npos);
        CHECK(e->message.find("pricing") != std::string::npos);
        CHECK(f.rpc.metrics().served_failed == 1);
        CHECK(f.rpc.metrics().error_replies == 1);
        CHECK(f.rt.bus().dead_letters().size() == 0);  // answered, not dead-lettered
    }
    SECTION("an error result reaches the requester as it is") {
        auto r = f.rpc.respond<get_quote>([](const get_quote& q) -> courier::result<quote> {
            if (q.sku.empty()) return courier::unexpected(courier::errc::invalid_argument, "[shop.pricing.no_sku] sku is empty");
            return quote{q.sku, 1, ""};
        });
        std::optional<courier::error> e;
        f.rpc.request<quote>(get_quote{""}, 1s, [&](courier::result<quote> res) { e = res.error(); });
        f.rt.poll();
        REQUIRE(e);
        CHECK(e->code == courier::errc::invalid_argument);
        CHECK(e->id() == "shop.pricing.no_sku");
    }
    SECTION("a deferred responder that drops its reply_to answers no_reply") {
        auto r = f.rpc.respond<get_quote, quote>([](const get_quote&, courier::reply_to<quote>) {});
        std::optional<courier::error> e;
        f.rpc.request<quote>(get_quote{"s"}, 1s, [&](courier::result<quote> res) { e = res.error(); });
        f.rt.poll();
        REQUIRE(e);
        CHECK(e->code == courier::errc::handler_failed);
        CHECK(e->id() == "courier.rpc.no_reply");
    }
}

TEST_CASE("a deferred responder answers later, from another thread", "[rpc]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::rpc rpc(rt.bus());
    std::vector<std::thread> workers;
    std::mutex m;
    auto r = rpc.respond<double_it, doubled>([&](const double_it& d, courier::reply_to<doubled> reply) {
        std::lock_guard lock(m);
        workers.emplace_back([v = d.value, reply = std::move(reply)]() mutable { reply.send(doubled{v * 2}); });
    });
    auto fut = rpc.request(double_it{8}, 10s, boost::asio::use_future);
    REQUIRE(fut.wait_for(20s) == std::future_status::ready);
    CHECK(fut.get()->value == 16);
    {
        std::lock_guard lock(m);
        for (auto& t : workers) t.join();
    }
    rt.stop();
}

TEST_CASE("scatter-gather collects every responder's reply, across groups and members", "[rpc][scatter]") {
    manual_fixture f;
    std::vector<courier::responder> rs;
    rs.push_back(f.rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 1, "a"}; }));
    rs.push_back(f.rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 2, "b"}; }));
    rs.push_back(f.rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 3, "c"}; }, {.group = "other"}));
    rs.push_back(f.rpc.respond<get_quote>([](const get_quote&) -> quote { throw std::runtime_error("no stock"); }));
    std::optional<courier::result<courier::gather_result<quote>>> got;
    const auto t0 = f.clk.now();
    f.rpc.request_all<quote>(get_quote{"s"}, 5s, [&](auto r) { got.emplace(std::move(r)); });
    f.rt.poll();
    REQUIRE(got);  // every responder answered: completes early, before the window ends
    CHECK(f.clk.now() == t0);
    REQUIRE(got->has_value());
    const auto& g = **got;
    CHECK(g.asked == 4);
    CHECK(g.complete);
    REQUIRE(g.replies.size() == 3);
    std::vector<std::string> by;
    for (auto& q : g.replies) by.push_back(q.by);
    std::sort(by.begin(), by.end());
    CHECK(by == std::vector<std::string>{"a", "b", "c"});
    REQUIRE(g.errors.size() == 1);
    CHECK(g.errors[0].message.find("no stock") != std::string::npos);
}

TEST_CASE("scatter-gather ends at the deadline with the replies that arrived before it", "[rpc][scatter]") {
    manual_fixture f;
    std::vector<courier::reply_to<quote>> held;
    auto fast = f.rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 1, "fast"}; });
    auto slow = f.rpc.respond<get_quote, quote>(
        [&](const get_quote&, courier::reply_to<quote> reply) { held.push_back(std::move(reply)); });
    std::optional<courier::result<courier::gather_result<quote>>> got;
    f.rpc.request_all<quote>(get_quote{"s"}, 500ms, [&](auto r) { got.emplace(std::move(r)); });
    f.rt.poll();
    CHECK_FALSE(got);
    f.rt.advance(500ms);
    REQUIRE(got);
    REQUIRE(got->has_value());
    CHECK((*got)->asked == 2);
    CHECK_FALSE((*got)->complete);
    REQUIRE((*got)->replies.size() == 1);
    CHECK((*got)->replies[0].by == "fast");
    held.at(0).send(quote{"s", 2, "slow"});
    CHECK(f.rpc.metrics().late_replies == 1);

    SECTION("and fails at once when nobody answers the type") {
        fast.stop();
        slow.stop();
        got.reset();
        f.rpc.request_all<quote>(get_quote{"s"}, 500ms, [&](auto r) { got.emplace(std::move(r)); });
        f.rt.poll();
        REQUIRE(got);
        CHECK(got->error().code == courier::errc::no_responders);
    }
}

TEST_CASE("a request continues the caller's trace and correlation, and so does its reply", "[rpc][trace]") {
    manual_fixture f;
    struct seen {
        std::string trace, correlation;
        courier::uuid causation;
        courier::uuid event_id;
    };
    seen at_responder, at_reply, at_published;
    courier::uuid checkout_id;
    auto pricing = f.rpc.respond<get_quote>([&](const get_quote& q, const courier::message_context& ctx) {
        at_responder = {std::string(ctx.trace_id()), std::string(ctx.correlation_id()), ctx.causation_id(), ctx.event_id()};
        return quote{q.sku, 12.5, ""};
    });
    auto checkout = f.rt.bus().subscribe<checkout_started>(
        [&](const checkout_started& c, const courier::message_context& ctx) {
            checkout_id = ctx.event_id();
            f.rpc.request<quote>(get_quote{c.cart}, 1s, [&](courier::result<quote> r) {
                const auto* reply_ctx = courier::message_context::current();
                REQUIRE(reply_ctx);
                at_reply = {std::string(reply_ctx->trace_id()), std::string(reply_ctx->correlation_id()),
                            reply_ctx->causation_id(), reply_ctx->event_id()};
                f.rt.bus().publish(checkout_priced{r->price});  // continues the chain
            });
        });
    auto priced = f.rt.bus().subscribe<checkout_priced>([&](const checkout_priced&, const courier::message_context& ctx) {
        at_published = {std::string(ctx.trace_id()), std::string(ctx.correlation_id()), ctx.causation_id(), ctx.event_id()};
    });
    f.rt.bus().publish(checkout_started{"cart-7"}, {.trace_id = "trace-1", .correlation_id = "order-42"});
    f.rt.poll();
    CHECK(at_responder.trace == "trace-1");
    CHECK(at_responder.correlation == "order-42");
    CHECK(at_responder.causation == checkout_id);  // the request was caused by the checkout event
    CHECK(at_reply.trace == "trace-1");
    CHECK(at_reply.correlation == "order-42");
    CHECK(at_reply.causation == at_responder.event_id);  // the reply was caused by the request
    CHECK(at_published.trace == "trace-1");
    CHECK(at_published.correlation == "order-42");
    CHECK(at_published.causation == at_reply.event_id);
    CHECK(courier::message_context::current() == nullptr);

    SECTION("a root request's id becomes the correlation of its reply") {
        seen root;
        courier::uuid request_id;
        auto other = f.rpc.respond<double_it>([&](const double_it& d, const courier::message_context& ctx) {
            request_id = ctx.event_id();
            return doubled{d.value};
        });
        f.rpc.request(double_it{1}, 1s, [&](courier::result<doubled>) {
            auto* c = courier::message_context::current();
            root = {std::string(c->trace_id()), std::string(c->correlation_id()), c->causation_id(), c->event_id()};
        });
        f.rt.poll();
        CHECK(root.correlation == request_id.to_string());
        CHECK(root.causation == request_id);
    }
}

TEST_CASE("replies find the rpc object that asked, among several on one bus", "[rpc]") {
    manual_fixture f;
    courier::rpc client(f.rt.bus());
    auto r = f.rpc.respond<double_it>([](const double_it& d) { return doubled{d.value + 1}; });
    std::uint64_t v = 0;
    client.request(double_it{1}, 1s, [&](courier::result<doubled> d) { v = d->value; });
    f.rt.poll();
    CHECK(v == 2);
    CHECK(client.metrics().replies == 1);
    CHECK(f.rpc.metrics().served == 1);
    CHECK(f.rpc.metrics().replies == 0);
}

TEST_CASE("destroying an rpc object cancels its pending requests", "[rpc][errors]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::rpc server(rt.bus());
    std::vector<courier::reply_to<quote>> held;
    auto slow = server.respond<get_quote, quote>(
        [&](const get_quote&, courier::reply_to<quote> reply) { held.push_back(std::move(reply)); });
    std::optional<courier::error> e;
    {
        courier::rpc client(rt.bus());
        client.request<quote>(get_quote{"s"}, 10s, [&](courier::result<quote> r) { e = r.error(); });
        rt.poll();
        CHECK(client.pending() == 1);
    }
    rt.poll();
    REQUIRE(e);
    CHECK(e->code == courier::errc::cancelled);
    CHECK(e->id() == "courier.rpc.cancelled");
    held.at(0).send(quote{});  // its inbox is gone: an orphan reply, counted at the server
    CHECK(server.metrics().orphan_replies == 1);
}

TEST_CASE("a plain publish of a request type reaches responders, whose reply is dropped and counted", "[rpc]") {
    manual_fixture f;
    int calls = 0;
    auto r = f.rpc.respond<double_it>([&](const double_it& d) {
        ++calls;
        return doubled{d.value};
    });
    (void)f.rt.bus().publish(double_it{3});
    f.rt.poll();
    CHECK(calls == 1);
    CHECK(f.rpc.metrics().without_reply_to == 1);
}

TEST_CASE("stress: concurrent requesters get exactly one completion per request while timeouts race replies",
          "[rpc][stress]") {
    // A real thread pool, with the manual clock moved by the test thread while requests fly:
    // every request ends exactly once, as a reply or a timeout, and every reply that lost the
    // race is counted as late.
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime_options{.threads = 2, .clock = &clk});
    courier::rpc rpc(rt.bus());
    std::vector<courier::responder> rs;
    for (int i = 0; i < 3; ++i) {
        rs.push_back(rpc.respond<double_it>([](const double_it& d) { return doubled{d.value * 2}; },
                                            {.mode = i == 2 ? courier::delivery_mode::serial : courier::delivery_mode::pooled}));
    }
    constexpr int requesters = 4;
    const std::uint64_t per = 20000 / COURIER_STRESS_SCALE;
    std::atomic<std::uint64_t> replies{0}, timeouts{0}, other{0}, sum{0};
    std::atomic<bool> stop_clock{false};
    std::thread ticker([&] {
        while (!stop_clock.load()) {
            clk.advance(1ms);
            std::this_thread::yield();
        }
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < requesters; ++t) {
        threads.emplace_back([&, t] {
            for (std::uint64_t i = 0; i < per; ++i) {
                const std::uint64_t v = t * per + i;
                rpc.request(double_it{v}, 2ms, [&, v](courier::result<doubled> r) {
                    if (r) {
                        if (r->value != v * 2) other.fetch_add(1);
                        replies.fetch_add(1);
                        sum.fetch_add(v);
                    } else if (r.error().code == courier::errc::timeout) {
                        timeouts.fetch_add(1);
                    } else {
                        other.fetch_add(1);
                    }
                });
            }
        });
    }
    for (auto& t : threads) t.join();
    const std::uint64_t total = requesters * per;
    const bool finished = wait_until([&] { return replies + timeouts + other == total && rpc.pending() == 0; });
    // Let every responder finish, so that each timed-out request's reply has arrived late.
    const bool settled = wait_until([&] {
        auto m = rpc.metrics();
        return m.replies + m.late_replies == total;
    });
    stop_clock = true;
    ticker.join();
    REQUIRE(finished);
    REQUIRE(settled);
    CHECK(other == 0);
    auto m = rpc.metrics();
    CHECK(m.replies == replies);
    CHECK(m.timeouts == timeouts);
    CHECK(m.late_replies == timeouts);  // every reply that lost its race is counted, none lost
    CHECK(m.requests == total);
    INFO("replies " << replies << ", timeouts " << timeouts);
    CHECK(replies > 0);
    rt.stop();
}

TEST_CASE("stress: every request gets its own reply exactly once on a thread pool", "[rpc][stress]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::rpc rpc(rt.bus());
    std::vector<courier::responder> rs;
    for (int i = 0; i < 2; ++i) rs.push_back(rpc.respond<double_it>([](const double_it& d) { return doubled{d.value * 2}; }));
    constexpr int requesters = 4;
    const std::uint64_t per = 50000 / COURIER_STRESS_SCALE;
    std::atomic<std::uint64_t> count{0}, sum{0}, bad{0};
    std::array<std::atomic<std::uint64_t>, requesters> done{};
    std::vector<std::thread> threads;
    for (int t = 0; t < requesters; ++t) {
        threads.emplace_back([&, t] {
            for (std::uint64_t i = 0; i < per; ++i) {
                // At most 4096 requests in flight per requester: this test is about exactly-once
                // replies, not about overload (a full responder queue fails the request at
                // once as overloaded; another test covers that).
                while (i - done[t].load(std::memory_order_acquire) >= 4096) std::this_thread::yield();
                const std::uint64_t v = t * per + i;
                rpc.request(double_it{v}, 60s, [&, v, t](courier::result<doubled> r) {
                    if (!r || r->value != 2 * v) bad.fetch_add(1);
                    else sum.fetch_add(r->value);
                    count.fetch_add(1);
                    done[t].fetch_add(1, std::memory_order_release);
                });
            }
        });
    }
    for (auto& t : threads) t.join();
    const std::uint64_t total = requesters * per;
    REQUIRE(wait_until([&] { return count.load() == total; }));
    CHECK(bad == 0);
    CHECK(sum == total * (total - 1));  // sum of 2v for v in [0, total)
    CHECK(rpc.metrics().late_replies == 0);
    CHECK(rpc.pending() == 0);
    rt.stop();
}

TEST_CASE("a request refused by a full responder queue fails at once as overloaded, never blocking",
          "[rpc][errors][overflow]") {
    manual_fixture f;  // nobody polls between the requests: the responder's queue fills
    int calls = 0;
    auto r = f.rpc.respond<double_it>(
        [&](const double_it& d) {
            ++calls;
            return doubled{d.value};
        },
        {.name = "tiny", .capacity = 1});
    std::vector<courier::result<doubled>> got;
    for (std::uint64_t i = 0; i < 3; ++i)
        f.rpc.request(double_it{i}, 10s, [&](courier::result<doubled> res) { got.push_back(std::move(res)); });
    f.rt.poll();
    REQUIRE(got.size() == 3);
    int ok = 0, overloaded = 0;
    for (auto& g : got) {
        if (g) {
            ++ok;
            continue;
        }
        CHECK(g.error().code == courier::errc::full);
        CHECK(g.error().id() == "courier.rpc.overloaded");
        ++overloaded;
    }
    CHECK(ok == 1);
    CHECK(overloaded == 2);
    CHECK(calls == 1);
    auto m = f.rpc.metrics();
    CHECK(m.overloaded == 2);
    CHECK(m.no_responders == 0);
    CHECK(m.timeouts == 0);
    CHECK(m.pending == 0);
}

TEST_CASE("a completion that throws inline in the responder's thread is caught and counted, not charged to the request",
          "[rpc][errors]") {
    manual_fixture f;
    auto r = f.rpc.respond<double_it>([](const double_it& d) { return doubled{d.value}; }, {.name = "echo"});
    int calls = 0;
    // An executor that runs the completion inline, in the thread that delivers the reply (the
    // runtime's io_context would capture the exception itself and rethrow it from poll(), and
    // Asio's system_executor terminates).
    boost::asio::io_context io;
    f.rpc.request(double_it{1}, 1s,
                  boost::asio::bind_executor(inline_executor{&io}, [&](courier::result<doubled>) {
                      ++calls;
                      throw std::runtime_error("the caller's bug");
                  }));
    CHECK_NOTHROW(f.rt.poll());  // the reply completes inline inside the responder's delivery
    CHECK(calls == 1);
    auto m = f.rpc.metrics();
    CHECK(m.completion_failed == 1);
    CHECK(m.served == 1);
    CHECK(m.served_failed == 0);
    CHECK(r.metrics().failed == 0);                 // the responder's subscription did not fail
    CHECK(f.rt.bus().dead_letters().size() == 0);  // and the request was not dead-lettered
}

TEST_CASE("close() ends pending requests with errc::closed, for callbacks and futures, and refuses new ones",
          "[rpc][errors][shutdown]") {
    manual_fixture f;
    std::vector<courier::reply_to<quote>> held;
    auto slow = f.rpc.respond<get_quote, quote>(
        [&](const get_quote&, courier::reply_to<quote> reply) { held.push_back(std::move(reply)); });
    std::optional<courier::error> e;
    f.rpc.request<quote>(get_quote{"a"}, 10s, [&](courier::result<quote> r) { e = r.error(); });
    auto fut = f.rpc.request<quote>(get_quote{"b"}, 10s, boost::asio::use_future);
    std::optional<courier::result<courier::gather_result<quote>>> gathered;
    f.rpc.request_all<quote>(get_quote{"c"}, 10s, [&](auto r) { gathered.emplace(std::move(r)); });
    f.rt.poll();
    CHECK(f.rpc.pending() == 3);
    f.rpc.close();
    f.rt.poll();
    REQUIRE(e);
    CHECK(e->code == courier::errc::closed);
    CHECK(e->id() == "courier.rpc.closed");
    REQUIRE(fut.wait_for(0s) == std::future_status::ready);
    auto fr = fut.get();  // a closed error, not std::future_error(broken_promise)
    REQUIRE_FALSE(fr);
    CHECK(fr.error().code == courier::errc::closed);
    REQUIRE(gathered);
    CHECK_FALSE(*gathered);
    CHECK(f.rpc.pending() == 0);
    // After close: at once, closed.
    e.reset();
    f.rpc.request<quote>(get_quote{"d"}, 10s, [&](courier::result<quote> r) { e = r.error(); });
    f.rt.poll();
    REQUIRE(e);
    CHECK(e->code == courier::errc::closed);
    f.rpc.close();  // idempotent
    for (auto& h : held) h.send(quote{});  // late: counted, nothing completes twice
    CHECK(f.rpc.metrics().late_replies >= 2);
}

TEST_CASE("a request carries its reply address beside the message, and as a header only in its envelope", "[rpc]") {
    manual_fixture f;
    courier::reply_address seen;
    std::string header, envelope_header;
    auto r = f.rpc.respond<double_it>([&](const double_it& d, const courier::message_context& ctx) {
        seen = ctx.reply_to();
        header = std::string(ctx.header(courier::reply_address::header));
        auto env = ctx.to_envelope();
        if (auto it = env.headers.find(std::string(courier::reply_address::header)); it != env.headers.end())
            envelope_header = it->second;
        return doubled{d.value};
    });
    bool ok = false;
    f.rpc.request(double_it{2}, 1s, [&](courier::result<doubled> res) { ok = res.has_value(); });
    f.rt.poll();
    CHECK(ok);
    CHECK(seen);
    CHECK(header.empty());  // no header map is made for a request
    CHECK(envelope_header == seen.to_string());
    CHECK(envelope_header.rfind("_INBOX.", 0) == 0);

    SECTION("an envelope published with the header is a request whose reply completes the request") {
        std::optional<courier::envelope> captured;
        std::vector<courier::reply_to<quote>> kept;
        auto first = f.rpc.respond<get_quote, quote>(
            [&](const get_quote&, const courier::message_context& ctx, courier::reply_to<quote> reply) {
                captured = ctx.to_envelope();  // what a bridge would send
                kept.push_back(std::move(reply));
            });
        std::optional<courier::result<quote>> got;
        f.rpc.request<quote>(get_quote{"x"}, 5s, [&](courier::result<quote> res) { got.emplace(std::move(res)); });
        f.rt.poll();
        REQUIRE(captured);
        CHECK_FALSE(got);
        first.stop();
        auto second = f.rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 7, "second"}; });
        REQUIRE(f.rt.bus().publish(*captured));  // comes back in, e.g. from a broker
        f.rt.poll();
        REQUIRE(got);
        REQUIRE(got->has_value());
        CHECK((*got)->by == "second");
    }
}

TEST_CASE("more requests than the slot table holds all complete or time out exactly once", "[rpc][timeout]") {
    manual_fixture f;
    std::vector<courier::reply_to<doubled>> held;
    auto slow = f.rpc.respond<double_it, doubled>(
        [&](const double_it&, courier::reply_to<doubled> reply) { held.push_back(std::move(reply)); });
    constexpr std::uint64_t n = 2500;  // past the 1024 slots: the rest go to the locked map
    std::vector<int> completions(n, 0);
    std::uint64_t replies = 0, timeouts = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
        f.rpc.request(double_it{i}, std::chrono::seconds(1 + i % 3), [&, i](courier::result<doubled> r) {
            ++completions[i];
            if (r) ++replies;
            else if (r.error().code == courier::errc::timeout) ++timeouts;
        });
    }
    f.rt.poll();
    REQUIRE(held.size() == n);
    CHECK(f.rpc.pending() == n);
    for (std::uint64_t i = 0; i < n; i += 2) held[i].send(doubled{i});
    f.rt.poll();
    f.rt.advance(1s);
    f.rt.advance(1s);
    f.rt.advance(1s);
    f.rt.poll();
    CHECK(replies == n / 2);
    CHECK(timeouts == n / 2);
    for (auto c : completions) CHECK(c == 1);
    CHECK(f.rpc.pending() == 0);
    CHECK(f.rpc.metrics().timeouts == n / 2);
}

TEST_CASE("stopping the runtime ends pending requests with errc::closed instead of never", "[rpc][errors][shutdown]") {
    courier::runtime rt(courier::runtime_options{.threads = 1});
    courier::rpc rpc(rt.bus());
    std::vector<courier::reply_to<quote>> held;
    std::mutex held_mutex;
    auto slow = rpc.respond<get_quote, quote>([&](const get_quote&, courier::reply_to<quote> reply) {
        std::lock_guard lock(held_mutex);
        held.push_back(std::move(reply));  // never answered before the stop
    });
    auto fut = rpc.request<quote>(get_quote{"a"}, 60s, boost::asio::use_future);
    REQUIRE(wait_until([&] {
        std::lock_guard lock(held_mutex);
        return held.size() == 1;
    }));
    rt.stop();  // the bus shutdown hook closes the rpc before the timers are cancelled
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    auto r = fut.get();
    REQUIRE_FALSE(r);
    CHECK(r.error().code == courier::errc::closed);
    CHECK(rpc.pending() == 0);
}
