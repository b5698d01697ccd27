// Request-reply by run-time name with JSON data: named responders and requests, their errors
// (invalid names, no responders, timeouts, late replies), completion tokens, scatter-gather,
// and how named and typed sides meet on one event name. Manual clock, no sleeps.
#include "rpc/rpc_events.hpp"

#include <courier/rpc/rpc.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using nlohmann::json;
using rpc_events::get_quote;
using rpc_events::quote;

namespace {

struct named_fixture {
    courier::manual_clock clk;
    courier::runtime rt{courier::runtime::manual, clk};
    courier::rpc rpc{rt.bus()};
};

constexpr std::string_view sum_name = "calc.sum.requested.v1";

courier::responder summing(courier::rpc& rpc, courier::responder_options o = {}) {
    auto r = rpc.respond(
        sum_name, [](const json& d) { return json{{"sum", d.at("a").get<int>() + d.at("b").get<int>()}}; }, std::move(o));
    REQUIRE(r);
    return std::move(*r);
}

}  // namespace

TEST_CASE("a named request completes with a named responder's JSON reply", "[rpc][named]") {
    named_fixture f;
    auto sum = summing(f.rpc);
    CHECK(f.rpc.responders(sum_name) == 1);
    std::optional<courier::result<json>> got;
    f.rpc.request(sum_name, json{{"a", 2}, {"b", 3}}, 1s, [&](courier::result<json> r) { got.emplace(std::move(r)); });
    CHECK_FALSE(got);  // never completes inside the initiating call
    f.rt.poll();
    REQUIRE(got);
    REQUIRE(got->has_value());
    CHECK((*got)->at("sum") == 5);
    auto m = f.rpc.metrics();
    CHECK(m.requests == 1);
    CHECK(m.replies == 1);
    CHECK(m.served == 1);
    CHECK(m.pending == 0);
    sum.stop();
    CHECK(f.rpc.responders(sum_name) == 0);
}

TEST_CASE("a named responder sees the request's context and answers with result errors or throws", "[rpc][named]") {
    named_fixture f;
    std::string seen_header, seen_correlation, seen_type;
    auto r = f.rpc.respond("calc.div.requested.v1", [&](const json& d, const courier::message_context& ctx) -> courier::result<json> {
        seen_header = std::string(ctx.header("tenant"));
        seen_correlation = std::string(ctx.correlation_id());
        seen_type = std::string(ctx.event_type());
        if (d.at("b") == 0) return courier::unexpected(courier::errc::invalid_argument, "division by zero");
        if (d.at("b") == -1) throw std::runtime_error("negative");
        return json(d.at("a").get<int>() / d.at("b").get<int>());
    });
    REQUIRE(r);
    std::vector<courier::result<json>> got;
    auto keep = [&](courier::result<json> x) { got.push_back(std::move(x)); };
    courier::request_options o;
    o.timeout = 1s;
    o.headers["tenant"] = "t-7";
    o.correlation_id = "corr-1";
    f.rpc.request("calc.div.requested.v1", json{{"a", 9}, {"b", 3}}, o, keep);
    f.rpc.request("calc.div.requested.v1", json{{"a", 9}, {"b", 0}}, 1s, keep);
    f.rpc.request("calc.div.requested.v1", json{{"a", 9}, {"b", -1}}, 1s, keep);
    f.rt.poll();
    REQUIRE(got.size() == 3);
    REQUIRE(got[0]);
    CHECK(*got[0] == 3);
    CHECK(seen_type == "calc.div.requested.v1");
    REQUIRE_FALSE(got[1]);
    CHECK(got[1].error().code == courier::errc::invalid_argument);
    REQUIRE_FALSE(got[2]);
    CHECK(got[2].error().code == courier::errc::handler_failed);
    CHECK(got[2].error().message.find("[courier.rpc.handler_failed]") != std::string::npos);
    CHECK(f.rpc.metrics().served_failed == 2);
    // The first request's header and correlation reached the responder (later requests
    // overwrote seen_*; check again with only the first).
    got.clear();
    f.rpc.request("calc.div.requested.v1", json{{"a", 1}, {"b", 1}}, o, keep);
    f.rt.poll();
    CHECK(seen_header == "t-7");
    CHECK(seen_correlation == "corr-1");
}

TEST_CASE("a malformed name is a typed error naming the segment", "[rpc][named][errors]") {
    named_fixture f;
    auto bad = f.rpc.respond("calc.Sum.v1", [](const json& d) { return d; });
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == courier::errc::invalid_name);
    CHECK(bad.error().message.find("[courier.event.invalid_name]") != std::string::npos);
    CHECK(bad.error().message.find("Sum") != std::string::npos);

    std::optional<courier::result<json>> got;
    f.rpc.request("calc..v1", json::object(), 1s, [&](courier::result<json> r) { got.emplace(std::move(r)); });
    CHECK_FALSE(got);  // completed through the token, posted
    f.rt.poll();
    REQUIRE(got);
    REQUIRE_FALSE(*got);
    CHECK(got->error().code == courier::errc::invalid_name);
    CHECK(f.rpc.metrics().pending == 0);
}

TEST_CASE("a named request without responders fails at once", "[rpc][named][errors]") {
    named_fixture f;
    std::optional<courier::result<json>> got;
    const auto before = f.clk.now();
    f.rpc.request(sum_name, json{{"a", 1}, {"b", 1}}, 5s, [&](courier::result<json> r) { got.emplace(std::move(r)); });
    f.rt.poll();
    REQUIRE(got);
    REQUIRE_FALSE(*got);
    CHECK(got->error().code == courier::errc::no_responders);
    CHECK(got->error().message.find(std::string(sum_name)) != std::string::npos);
    CHECK(f.clk.now() == before);
    CHECK(f.rpc.metrics().no_responders == 1);
}

TEST_CASE("a named request times out on the manual clock and a late deferred reply is counted", "[rpc][named][errors]") {
    named_fixture f;
    std::vector<courier::reply_to<json>> held;
    auto r = f.rpc.respond(sum_name, [&](const json&, courier::reply_to<json> reply) { held.push_back(std::move(reply)); });
    REQUIRE(r);
    std::optional<courier::result<json>> got;
    f.rpc.request(sum_name, json{{"a", 1}, {"b", 1}}, 2s, [&](courier::result<json> x) { got.emplace(std::move(x)); });
    f.rt.poll();
    REQUIRE(held.size() == 1);
    CHECK_FALSE(got);
    f.clk.advance(1999ms);
    f.rt.poll();
    CHECK_FALSE(got);
    f.clk.advance(1ms);
    f.rt.poll();
    REQUIRE(got);
    REQUIRE_FALSE(*got);
    CHECK(got->error().code == courier::errc::timeout);
    CHECK(got->error().message.find("[courier.rpc.timeout] no reply to 'calc.sum.requested.v1' within 2000 ms") !=
          std::string::npos);
    CHECK(held[0].send(json{{"sum", 2}}));
    f.rt.poll();
    auto m = f.rpc.metrics();
    CHECK(m.timeouts == 1);
    CHECK(m.late_replies == 1);

    SECTION("a deferred reply in time completes the request") {
        got.reset();
        f.rpc.request(sum_name, json{{"a", 1}, {"b", 1}}, 2s, [&](courier::result<json> x) { got.emplace(std::move(x)); });
        f.rt.poll();
        REQUIRE(held.size() == 2);
        CHECK(held[1].send(json{{"sum", 2}}));
        f.rt.poll();
        REQUIRE(got);
        REQUIRE(*got);
        CHECK((*got)->at("sum") == 2);
    }
    SECTION("a dropped deferred handle answers no_reply") {
        got.reset();
        f.rpc.request(sum_name, json::object(), 2s, [&](courier::result<json> x) { got.emplace(std::move(x)); });
        f.rt.poll();
        REQUIRE(held.size() == 2);
        held.pop_back();
        f.rt.poll();
        REQUIRE(got);
        REQUIRE_FALSE(*got);
        CHECK(got->error().message.find("[courier.rpc.no_reply]") != std::string::npos);
    }
}

TEST_CASE("a named request completes through use_future and use_awaitable", "[rpc][named]") {
    SECTION("use_future on a threaded runtime") {
        courier::runtime rt(courier::runtime_options{.threads = 2});
        courier::rpc rpc(rt.bus());
        auto sum = summing(rpc);
        std::future<courier::result<json>> fut = rpc.request(sum_name, json{{"a", 20}, {"b", 22}}, 5s, boost::asio::use_future);
        REQUIRE(fut.wait_for(20s) == std::future_status::ready);
        auto res = fut.get();
        REQUIRE(res);
        CHECK(res->at("sum") == 42);
        rt.stop();
    }
    SECTION("use_awaitable in a coroutine on the manual runtime") {
        named_fixture f;
        auto sum = summing(f.rpc);
        std::vector<int> seen;
        std::optional<courier::error> failure;
        boost::asio::co_spawn(
            f.rt.executor(),
            [&]() -> boost::asio::awaitable<void> {
                for (int i = 1; i <= 3; ++i) {
                    // Built before the co_await: g++ 12 rejects an initializer list (a braced
                    // json) inside a co_await expression ("array used as initializer").
                    json d = {{"a", i}, {"b", i}};
                    auto res = co_await f.rpc.request(sum_name, std::move(d), 1s, boost::asio::use_awaitable);
                    if (res) seen.push_back(res->at("sum").get<int>());
                }
                sum.stop();
                json zero = {{"a", 0}, {"b", 0}};
                auto res = co_await f.rpc.request(sum_name, std::move(zero), 1s, boost::asio::use_awaitable);
                if (!res) failure = res.error();
            },
            boost::asio::detached);
        f.rt.poll();
        CHECK(seen == std::vector<int>{2, 4, 6});
        REQUIRE(failure);
        CHECK(failure->code == courier::errc::no_responders);
    }
}

TEST_CASE("named responders of one queue group share requests, other groups each get them", "[rpc][named]") {
    named_fixture f;
    int a = 0, b = 0, c = 0;
    auto make = [&](int& n, std::string group) {
        courier::responder_options o;
        o.group = std::move(group);
        auto r = f.rpc.respond(sum_name, [&n](const json&) { return json(++n); }, std::move(o));
        REQUIRE(r);
        return std::move(*r);
    };
    auto ra = make(a, "");
    auto rb = make(b, "");
    auto rc = make(c, "audit");
    int ok = 0;
    for (int i = 0; i < 10; ++i) f.rpc.request(sum_name, json::object(), 1s, [&](courier::result<json> r) { ok += r ? 1 : 0; });
    f.rt.poll();
    CHECK(ok == 10);
    CHECK(a + b == 10);  // the default group (the name) shares the load
    CHECK(c == 10);      // another group sees every request; its replies are late
    CHECK(f.rpc.metrics().late_replies == 10);
}

TEST_CASE("a named request reaches a typed responder of that event type", "[rpc][named][interop]") {
    named_fixture f;
    auto pricing = f.rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 9.5, "typed"}; });
    CHECK(f.rpc.responders("pricing.quote.requested.v1") == 1);
    std::optional<courier::result<json>> got;
    f.rpc.request("pricing.quote.requested.v1", json{{"sku", "sku-1"}}, 1s,
                  [&](courier::result<json> r) { got.emplace(std::move(r)); });
    f.rt.poll();
    REQUIRE(got);
    REQUIRE(*got);
    CHECK((*got)->at("sku") == "sku-1");
    CHECK((*got)->at("price") == 9.5);
    CHECK((*got)->at("by") == "typed");

    SECTION("data that does not make the request type is dead-lettered and times out") {
        got.reset();
        f.rpc.request("pricing.quote.requested.v1", json{{"no_sku", 1}}, 1s,
                      [&](courier::result<json> r) { got.emplace(std::move(r)); });
        f.rt.poll();
        CHECK_FALSE(got);
        f.clk.advance(1s);
        f.rt.poll();
        REQUIRE(got);
        REQUIRE_FALSE(*got);
        CHECK(got->error().code == courier::errc::timeout);
    }
}

TEST_CASE("a typed request reaches a named responder and converts its JSON reply", "[rpc][named][interop]") {
    named_fixture f;
    auto pricing = f.rpc.respond("pricing.quote.requested.v1", [](const json& d) {
        if (d.at("sku") == "broken") return json{{"price", "not a number"}};
        return json{{"sku", d.at("sku")}, {"price", 7.25}, {"by", "named"}};
    });
    REQUIRE(pricing);
    CHECK(f.rpc.responders<get_quote>() == 1);
    std::vector<courier::result<quote>> got;
    f.rpc.request(get_quote{"sku-2"}, 1s, [&](courier::result<quote> r) { got.push_back(std::move(r)); });
    f.rpc.request(get_quote{"broken"}, 1s, [&](courier::result<quote> r) { got.push_back(std::move(r)); });
    f.rt.poll();
    REQUIRE(got.size() == 2);
    REQUIRE(got[0]);
    CHECK(got[0]->sku == "sku-2");
    CHECK(got[0]->price == 7.25);
    CHECK(got[0]->by == "named");
    REQUIRE_FALSE(got[1]);
    CHECK(got[1].error().code == courier::errc::malformed_envelope);
    CHECK(got[1].error().message.find("[courier.rpc.bad_reply]") != std::string::npos);
}

TEST_CASE("scatter-gather by name collects named and typed responders", "[rpc][named][scatter]") {
    named_fixture f;
    auto typed = f.rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 1.0, "typed"}; });
    auto named = f.rpc.respond("pricing.quote.requested.v1",
                               [](const json& d) { return json{{"sku", d.at("sku")}, {"price", 2.0}, {"by", "named"}}; });
    REQUIRE(named);
    std::optional<courier::result<courier::gather_result<json>>> got;
    f.rpc.request_all("pricing.quote.requested.v1", json{{"sku", "s"}}, 1s,
                      [&](courier::result<courier::gather_result<json>> r) { got.emplace(std::move(r)); });
    f.rt.poll();
    REQUIRE(got);
    REQUIRE(*got);
    CHECK((*got)->asked == 2);
    CHECK((*got)->complete);
    REQUIRE((*got)->replies.size() == 2);
    std::vector<std::string> by;
    for (auto& j : (*got)->replies) by.push_back(j.at("by").get<std::string>());
    std::sort(by.begin(), by.end());
    CHECK(by == std::vector<std::string>{"named", "typed"});

    SECTION("a typed scatter reaches the named responder too") {
        std::optional<courier::result<courier::gather_result<quote>>> typed_got;
        f.rpc.request_all(get_quote{"t"}, 1s,
                          [&](courier::result<courier::gather_result<quote>> r) { typed_got.emplace(std::move(r)); });
        f.rt.poll();
        REQUIRE(typed_got);
        REQUIRE(*typed_got);
        CHECK((*typed_got)->replies.size() == 2);
        CHECK((*typed_got)->complete);
    }
}
