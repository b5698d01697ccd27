// The examples of docs/rpc.md, compiled and run: the page quotes the code between the "doc:"
// markers (tests/docs/check_snippets.py checks that it does), so a snippet that stops compiling
// or stops being true fails here. Everything runs on a manual runtime: no thread, no sleep.
#include <courier/rpc/rpc.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/use_future.hpp>
#if defined(BOOST_ASIO_HAS_CO_AWAIT)  // not with clang 14 + libstdc++ on Boost 1.74
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#endif

#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <utility>
#include <vector>

// A named namespace: this file shares a unity TU with rpc.test.cpp, which pulls rpc_events'
// types of the same names into the global namespace.
namespace rpc_doc {

using namespace std::chrono_literals;

// doc: types
struct quote {
    static constexpr courier::event_name event_type{"pricing.quote.given.v1"};
    std::string sku;
    double price = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(quote, sku, price)
};
struct get_quote {
    static constexpr courier::event_name event_type{"pricing.quote.requested.v1"};
    using reply_type = quote;  // optional: lets request() infer the reply type
    std::string sku;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(get_quote, sku)
};
// doc: end

// The price list the page's responders read.
bool known(const std::string& sku) { return sku == "sku-1" || sku == "sku-2"; }
double price_of(const std::string& sku) { return sku == "sku-1" ? 9.5 : 12.0; }

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
TEST_CASE("docs/rpc.md: responders in a group, a callback, a future, a coroutine and scatter-gather", "[rpc][docs]") {
    // doc: example
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);  // a program: courier::runtime rt;
    courier::rpc rpc(rt.bus());

    // Responders: return the reply, or a courier::result<quote> to answer with an error.
    // Both share the requests of the default group (the request's event name).
    auto r1 = rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, price_of(q.sku)}; });
    auto r2 = rpc.respond<get_quote>([](const get_quote& q) -> courier::result<quote> {
        if (!known(q.sku)) return courier::unexpected(courier::errc::not_found, "[shop.pricing.unknown_sku] " + q.sku);
        return quote{q.sku, price_of(q.sku)};
    });

    // Callback
    std::vector<double> shown;
    rpc.request(get_quote{"sku-1"}, 2s, [&](courier::result<quote> r) {
        if (r) shown.push_back(r->price);
        else if (r.error() == courier::errc::timeout) { /* retry later */ }
    });
    // Future
    std::future<courier::result<quote>> f = rpc.request(get_quote{"sku-2"}, 2s, boost::asio::use_future);
    // Coroutine
    boost::asio::co_spawn(rt.executor(), [&]() -> boost::asio::awaitable<void> {
        get_quote q{"sku-1"};  // see "g++ 12 and coroutines" below
        courier::result<quote> a = co_await rpc.request(std::move(q), 2s, boost::asio::use_awaitable);
        if (a) shown.push_back(a->price);
    }, boost::asio::detached);

    // Scatter-gather: every responder, every group; whatever arrived within 100 ms.
    std::vector<double> offers;
    rpc.request_all(get_quote{"sku-1"}, 100ms, [&](courier::result<courier::gather_result<quote>> g) {
        for (auto& q : g->replies) offers.push_back(q.price);   // g->errors, g->asked, g->complete
    });
    rt.poll();  // a manual runtime runs responders and completions here
    // doc: end

    CHECK(shown == std::vector<double>{9.5, 9.5});
    REQUIRE(f.wait_for(0s) == std::future_status::ready);
    auto second = f.get();
    REQUIRE(second);
    CHECK(second->sku == "sku-2");
    CHECK(second->price == 12.0);
    CHECK(offers == std::vector<double>{9.5, 9.5});
    CHECK(r1.metrics().delivered + r2.metrics().delivered == 3);  // the group shared the three requests

    // r2's error reply, once r1 has stopped answering.
    std::optional<courier::result<quote>> unknown;
    r1.stop();
    rpc.request(get_quote{"sku-9"}, 2s, [&](courier::result<quote> r) { unknown = std::move(r); });
    rt.poll();
    REQUIRE(unknown);
    REQUIRE_FALSE(*unknown);
    CHECK(unknown->error() == courier::errc::not_found);
    CHECK(unknown->error().message == "[shop.pricing.unknown_sku] sku-9");
    rpc.close();
}
#endif

TEST_CASE("docs/rpc.md: a deferred responder answers later through its reply_to", "[rpc][docs]") {
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);
    courier::rpc rpc(rt.bus());
    std::optional<courier::result<quote>> got;
    // doc: deferred
    // A deferred responder answers later, from anywhere, through a reply_to handle.
    std::vector<std::pair<std::string, courier::reply_to<quote>>> waiting;  // e.g. until a price feed ticks
    auto r3 = rpc.respond<get_quote, quote>([&](const get_quote& q, courier::reply_to<quote> reply) {
        waiting.emplace_back(q.sku, std::move(reply));
    });
    rpc.request(get_quote{"sku-3"}, 2s, [&](courier::result<quote> r) { got = std::move(r); });
    rt.poll();                                                         // r3 holds the reply_to
    for (auto& [sku, reply] : waiting) reply.send(quote{sku, 11.0});  // later, from any thread
    rt.poll();                                                         // the request completes
    // doc: end
    REQUIRE(waiting.size() == 1);
    CHECK_FALSE(waiting[0].second.pending());  // answered
    REQUIRE(got);
    REQUIRE(*got);
    CHECK((*got)->price == 11.0);
    CHECK((*got)->sku == "sku-3");
    CHECK(r3.metrics().delivered == 1);

    // A request nobody answers in time is a typed timeout on the runtime's clock.
    got.reset();
    rpc.request(get_quote{"sku-4"}, 2s, [&](courier::result<quote> r) { got = std::move(r); });
    rt.poll();
    rt.advance(2s);
    REQUIRE(got);
    REQUIRE_FALSE(*got);
    CHECK(got->error() == courier::errc::timeout);
    CHECK(got->error().id() == "courier.rpc.timeout");
}

TEST_CASE("docs/rpc.md: requests by name carry JSON", "[rpc][docs]") {
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);
    courier::rpc rpc(rt.bus());
    // doc: named
    using nlohmann::json;
    auto sum = rpc.respond("calc.sum.requested.v1", [](const json& d) -> courier::result<json> {
        if (!d.contains("a") || !d.contains("b"))
            return courier::unexpected(courier::errc::invalid_argument, "[calc.sum.missing_operand]");
        return json{{"sum", d["a"].get<int>() + d["b"].get<int>()}};
    });
    if (!sum) throw courier::courier_error(sum.error());  // a malformed name: errc::invalid_name

    std::vector<std::string> out;
    rpc.request("calc.sum.requested.v1", json{{"a", 2}, {"b", 3}}, 1s, [&](courier::result<json> r) {
        out.push_back(r ? "sum: " + r->at("sum").dump() : r.error().message);  // "sum: 5"
    });
    rpc.request("calc.sum.requested.v1", json{{"a", 2}}, 1s, [&](courier::result<json> r) {
        out.push_back(r.error().message);  // "[calc.sum.missing_operand]"
    });
    rpc.request("calc.Sum.v1", json::object(), 1s, [&](courier::result<json> r) {
        out.push_back(r.error().message);  // "[courier.event.invalid_name] 'calc.Sum.v1': segment 2 ..."
    });
    rt.poll();
    // doc: end
    REQUIRE(out.size() == 3);
    CHECK(out[0] == "sum: 5");
    CHECK(out[1] == "[calc.sum.missing_operand]");
    CHECK(out[2].find("[courier.event.invalid_name] 'calc.Sum.v1': segment 2 'Sum'") == 0);
}

}  // namespace rpc_doc
