// The event bus: routing, delivery modes, context propagation, versions, groups, topology.
#include "bus/test_events.hpp"

#include <courier/bus/event_bus.hpp>
#include <courier/runtime/runtime.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "wait.hpp"

using namespace test_events;
using namespace std::chrono_literals;

namespace {

courier::subscription_options inline_opts() {
    courier::subscription_options o;
    o.mode = courier::delivery_mode::inline_call;
    return o;
}

using courier_test::wait_until;

}  // namespace

TEST_CASE("an inline subscriber receives the typed event in the publisher's thread", "[bus]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::vector<order_created> got;
    std::thread::id handler_thread;
    auto sub = rt.bus().subscribe<order_created>(
        [&](const order_created& e) {
            got.push_back(e);
            handler_thread = std::this_thread::get_id();
        },
        inline_opts());
    auto r = rt.bus().publish(order_created{"o-1", 12.5});
    CHECK(r.deliveries == 1);
    REQUIRE(got.size() == 1);
    CHECK(got[0].id == "o-1");
    CHECK(got[0].total == 12.5);
    CHECK(handler_thread == std::this_thread::get_id());
}

TEST_CASE("the typed path never serializes to JSON", "[bus]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    int n = 0;
    auto a = rt.bus().subscribe<order_created>([&](const order_created&) { ++n; }, inline_opts());
    auto b = rt.bus().subscribe<order_created>([&](const order_created&) { ++n; });  // pooled
    const auto before = courier::detail::json_encode_counter().load();
    for (int i = 0; i < 100; ++i) (void)rt.bus().publish(order_created{"o", 1.0});
    rt.poll();
    CHECK(n == 200);
    CHECK(courier::detail::json_encode_counter().load() == before);
}

TEST_CASE("wildcard subscribers share one lazy JSON encoding per message", "[bus]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::vector<std::string> seen;
    auto a = rt.bus().subscribe("order.*.v1", [&](const courier::message_context& c) { seen.push_back(c.data().dump()); },
                                inline_opts());
    auto b = rt.bus().subscribe("order.#", [&](const courier::message_context& c) { seen.push_back(c.data().dump()); },
                                inline_opts());
    const auto before = courier::detail::json_encode_counter().load();
    (void)rt.bus().publish(order_created{"o-7", 3.0});
    CHECK(courier::detail::json_encode_counter().load() == before + 1);
    REQUIRE(seen.size() == 2);
    CHECK(seen[0] == seen[1]);
    CHECK(nlohmann::json::parse(seen[0])["id"] == "o-7");
}

TEST_CASE("topic patterns route by AMQP wildcard rules", "[bus]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::map<std::string, std::vector<std::string>> got;
    std::vector<courier::subscription> subs;
    auto record = [&](std::string key) {
        return [&got, key](const courier::message_context& c) { got[key].emplace_back(c.event_type()); };
    };
    subs.push_back(rt.bus().subscribe("order.*.v1", record("order.*.v1"), inline_opts()));
    subs.push_back(rt.bus().subscribe("order.#", record("order.#"), inline_opts()));
    subs.push_back(rt.bus().subscribe("#.v2", record("#.v2"), inline_opts()));
    subs.push_back(rt.bus().subscribe("billing.>", record("billing.>"), inline_opts()));
    std::string from_config = "#.charged.*";
    auto dynamic = rt.bus().try_subscribe(from_config, record("#.charged.*"), inline_opts());
    REQUIRE(dynamic);
    from_config.assign("garbage that must not matter");
    subs.push_back(std::move(*dynamic));

    (void)rt.bus().publish(order_created{"1", 1});
    (void)rt.bus().publish(order_created_v2{"2", 2, "EUR"});
    (void)rt.bus().publish(order_shipped{"3"});
    (void)rt.bus().publish(payment_charged{"4", 400});

    CHECK(got["order.*.v1"] == std::vector<std::string>{"order.created.v1", "order.shipped.v1"});
    CHECK(got["order.#"] == std::vector<std::string>{"order.created.v1", "order.created.v2", "order.shipped.v1"});
    CHECK(got["#.v2"] == std::vector<std::string>{"order.created.v2"});
    CHECK(got["billing.>"] == std::vector<std::string>{"billing.payment.charged.v1"});
    CHECK(got["#.charged.*"] == std::vector<std::string>{"billing.payment.charged.v1"});
}

TEST_CASE("a malformed run-time pattern or name is a typed error naming the segment", "[bus][errors]") {
    auto p = courier::topic_pattern::parse("order.Created.v1");
    REQUIRE_FALSE(p);
    CHECK(p.error() == courier::errc::invalid_pattern);
    CHECK(p.error().message.find("Created") != std::string::npos);
    CHECK(p.error().id() == "courier.event.invalid_pattern");

    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    auto bad_sub = rt.bus().try_subscribe("order.#x", [](const courier::message_context&) {});
    REQUIRE_FALSE(bad_sub);
    CHECK(bad_sub.error() == courier::errc::invalid_pattern);
    CHECK(bad_sub.error().message.find("#x") != std::string::npos);

    courier::envelope env;
    env.event_type = "Order..created";
    env.version = 1;
    auto r = rt.bus().publish(env);
    REQUIRE_FALSE(r);
    CHECK(r.error() == courier::errc::invalid_name);

    env.event_type = "order.created.v2";
    env.version = 1;
    auto r2 = rt.bus().publish(env);
    REQUIRE_FALSE(r2);
    CHECK(r2.error() == courier::errc::malformed_envelope);
}

TEST_CASE("an envelope published dynamically reaches a typed subscriber", "[bus]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::vector<order_created> got;
    auto sub = rt.bus().subscribe<order_created>([&](const order_created& e) { got.push_back(e); }, inline_opts());
    courier::envelope env;
    env.event_type = "order.created.v1";
    env.version = 1;
    env.data = {{"id", "dyn"}, {"total", 9.5}};
    auto r = rt.bus().publish(env);
    REQUIRE(r);
    CHECK(r->deliveries == 1);
    REQUIRE(got.size() == 1);
    CHECK(got[0].id == "dyn");
}

TEST_CASE("data that cannot become the subscriber's type is dead-lettered as undecodable, not retried", "[bus][errors]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    int calls = 0;
    auto sub = rt.bus().subscribe<order_created>([&](const order_created&) { ++calls; });
    courier::envelope env;
    env.event_type = "order.created.v1";
    env.version = 1;
    env.data = {{"id", 42}};  // wrong type, missing total
    REQUIRE(rt.bus().publish(env));
    rt.run_timers();
    CHECK(calls == 0);
    auto dl = rt.bus().dead_letters().list();
    REQUIRE(dl.size() == 1);
    CHECK(dl[0].reason == courier::dead_letter_reason::undecodable);
    CHECK(dl[0].errors.size() == 1);
    CHECK(dl[0].errors[0].error.find("[courier.bus.undecodable]") != std::string::npos);
}

TEST_CASE("a handler's publishes inherit trace and correlation and name their cause", "[bus][context]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::uuid parent_id;
    std::string child_trace, child_corr, child_cause;
    auto a = rt.bus().subscribe<order_created>(
        [&](const order_created& e, const courier::message_context& ctx) {
            parent_id = ctx.event_id();
            (void)rt.bus().publish(order_shipped{e.id});
        },
        inline_opts());
    auto b = rt.bus().subscribe<order_shipped>(
        [&](const order_shipped&, const courier::message_context& ctx) {
            child_trace = std::string(ctx.trace_id());
            child_corr = std::string(ctx.correlation_id());
            child_cause = ctx.causation_id().to_string();
        });
    courier::publish_options o;
    o.trace_id = "trace-abc";
    o.correlation_id = "corr-1";
    (void)rt.bus().publish(order_created{"o-9", 1}, o);
    rt.poll();
    CHECK(child_trace == "trace-abc");
    CHECK(child_corr == "corr-1");
    CHECK(child_cause == parent_id.to_string());
}

TEST_CASE("a root event without correlation correlates its descendants by its own id", "[bus][context]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::string root_id, child_corr;
    auto a = rt.bus().subscribe<order_created>(
        [&](const order_created& e, const courier::message_context& ctx) {
            root_id = ctx.event_id().to_string();
            (void)rt.bus().publish(order_shipped{e.id});
        },
        inline_opts());
    auto b = rt.bus().subscribe<order_shipped>(
        [&](const order_shipped&, const courier::message_context& ctx) { child_corr = std::string(ctx.correlation_id()); },
        inline_opts());
    (void)rt.bus().publish(order_created{"o", 1});
    CHECK(!root_id.empty());
    CHECK(child_corr == root_id);
}

// The descendant's trace is made when first read: readers on several threads at once must all
// get the same one (run under ThreadSanitizer in CI).
TEST_CASE("subscribers on several threads read one correlation from a root event's descendant", "[bus][context]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    constexpr int roots = 2000, readers = 4;
    std::mutex mutex;
    std::map<std::string, std::string> root_of_child;  // child order id -> root event id
    std::map<std::string, std::set<std::string>> seen;  // child order id -> correlations read
    std::atomic<int> reads{0};
    auto parent = rt.bus().subscribe<order_created>(
        [&](const order_created& e, const courier::message_context& ctx) {
            {
                std::lock_guard lock(mutex);
                root_of_child[e.id] = ctx.event_id().to_string();
            }
            (void)rt.bus().publish(order_shipped{e.id});
        },
        inline_opts());
    std::vector<courier::subscription> subs;
    for (int i = 0; i < readers; ++i) {
        subs.push_back(rt.bus().subscribe<order_shipped>([&](const order_shipped& s, const courier::message_context& ctx) {
            std::string corr(ctx.correlation_id());
            std::lock_guard lock(mutex);
            seen[s.id].insert(std::move(corr));
            ++reads;
        }));
    }
    for (int i = 0; i < roots; ++i) (void)rt.bus().publish(order_created{"o-" + std::to_string(i), 1});
    REQUIRE(wait_until([&] { return reads.load() == roots * readers; }));
    std::lock_guard lock(mutex);
    REQUIRE(seen.size() == roots);
    for (const auto& [id, corrs] : seen) {
        REQUIRE(corrs.size() == 1);
        CHECK(*corrs.begin() == root_of_child.at(id));
    }
}

TEST_CASE("a v2 subscriber receives v1 events through a registered upcaster", "[bus][versions]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    REQUIRE(rt.bus().upcasters().add("order.created.v1", [](nlohmann::json d) {
        return nlohmann::json{{"id", d["id"]}, {"amount", d["total"]}, {"currency", "EUR"}};
    }));
    std::vector<order_created_v2> got;
    auto sub = rt.bus().subscribe<order_created_v2>([&](const order_created_v2& e) { got.push_back(e); }, inline_opts());
    (void)rt.bus().publish(order_created{"o-1", 20});
    (void)rt.bus().publish(order_created_v2{"o-2", 30, "USD"});
    REQUIRE(got.size() == 2);
    CHECK(got[0].id == "o-1");
    CHECK(got[0].amount == 20);
    CHECK(got[0].currency == "EUR");
    CHECK(got[1].currency == "USD");
}

TEST_CASE("without an upcaster a version is never delivered as the wrong type", "[bus][versions]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    int v2_calls = 0, v1_calls = 0;
    auto a = rt.bus().subscribe<order_created_v2>([&](const order_created_v2&) { ++v2_calls; }, inline_opts());
    auto b = rt.bus().subscribe<order_created>([&](const order_created&) { ++v1_calls; }, inline_opts());
    (void)rt.bus().publish(order_created{"o", 1});
    (void)rt.bus().publish(order_created_v2{"o", 1, "EUR"});
    CHECK(v2_calls == 1);
    CHECK(v1_calls == 1);
    CHECK(rt.bus().dead_letters().size() == 0);
}

TEST_CASE("each event goes to exactly one member of a queue group, fan-out to the rest", "[bus][groups]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    int m1 = 0, m2 = 0, m3 = 0, audit = 0;
    auto o = inline_opts();
    o.group = "workers";
    auto s1 = rt.bus().subscribe<tick>([&](const tick&) { ++m1; }, o);
    auto s2 = rt.bus().subscribe<tick>([&](const tick&) { ++m2; }, o);
    auto s3 = rt.bus().subscribe("test.#", [&](const courier::message_context&) { ++m3; }, o);
    auto s4 = rt.bus().subscribe<tick>([&](const tick&) { ++audit; }, inline_opts());
    for (std::uint64_t i = 0; i < 300; ++i) (void)rt.bus().publish(tick{i, ""});
    CHECK(m1 + m2 + m3 == 300);
    CHECK(m1 == 100);
    CHECK(m2 == 100);
    CHECK(m3 == 100);
    CHECK(audit == 300);
}

TEST_CASE("serial delivery handles one message at a time in publish order", "[bus][modes]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    std::vector<std::uint64_t> order;
    std::atomic<int> running{0};
    std::atomic<bool> overlapped{false};
    courier::subscription_options o;
    o.mode = courier::delivery_mode::serial;
    auto sub = rt.bus().subscribe<tick>(
        [&](const tick& t) {
            if (running.fetch_add(1) != 0) overlapped = true;
            order.push_back(t.n);
            running.fetch_sub(1);
        },
        o);
    constexpr std::uint64_t n = 20000;
    for (std::uint64_t i = 0; i < n; ++i) (void)rt.bus().publish(tick{i, ""});
    REQUIRE(wait_until([&] { return sub.metrics().delivered == n; }));
    CHECK_FALSE(overlapped);
    REQUIRE(order.size() == n);
    for (std::uint64_t i = 0; i < n; ++i) REQUIRE(order[i] == i);
}

TEST_CASE("keyed delivery keeps order per key while keys run in parallel", "[bus][modes]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    std::mutex m;
    std::map<std::string, std::vector<std::uint64_t>> per_key;
    courier::subscription_options o;
    o.mode = courier::delivery_mode::keyed;
    o.lanes = 4;
    o.key = courier::key_by<tick>([](const tick& t) { return t.key; });
    auto sub = rt.bus().subscribe<tick>(
        [&](const tick& t) {
            std::lock_guard lock(m);
            per_key[t.key].push_back(t.n);
        },
        o);
    constexpr std::uint64_t n = 20000;
    for (std::uint64_t i = 0; i < n; ++i) (void)rt.bus().publish(tick{i, "k" + std::to_string(i % 7)});
    REQUIRE(wait_until([&] { return sub.metrics().delivered == n; }));
    std::lock_guard lock(m);
    CHECK(per_key.size() == 7);
    for (auto& [k, v] : per_key) CHECK(std::is_sorted(v.begin(), v.end()));
}

TEST_CASE("the publish key orders a keyed subscription when it has no key function", "[bus][modes]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::map<std::string, std::vector<std::uint64_t>> per_key;
    courier::subscription_options o;
    o.mode = courier::delivery_mode::keyed;
    auto sub = rt.bus().subscribe<tick>(
        [&](const tick& t, const courier::message_context& c) { per_key[std::string(c.key())].push_back(t.n); }, o);
    for (std::uint64_t i = 0; i < 100; ++i) (void)rt.bus().publish(tick{i, ""}, {.key = "k" + std::to_string(i % 3)});
    rt.poll();
    CHECK(per_key.size() == 3);
    for (auto& [k, v] : per_key) CHECK(std::is_sorted(v.begin(), v.end()));
}

TEST_CASE("pooled delivery waits for the executor of a manual runtime", "[bus][modes]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    int n = 0;
    auto sub = rt.bus().subscribe<tick>([&](const tick&) { ++n; });
    for (int i = 0; i < 10; ++i) (void)rt.bus().publish(tick{});
    CHECK(n == 0);
    CHECK(sub.metrics().queue_depth == 10);
    rt.poll();
    CHECK(n == 10);
    CHECK(sub.metrics().queue_depth == 0);
}

TEST_CASE("an event without subscribers is counted as unrouted", "[bus]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    auto r = rt.bus().publish(order_shipped{"x"});
    CHECK(r.deliveries == 0);
    CHECK(rt.bus().stats().unrouted == 1);
    CHECK(rt.bus().stats().published == 1);
}

TEST_CASE("the topology report names unreached events, dead subscriptions and overlaps", "[bus][topology]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    rt.bus().declare<order_created>();
    rt.bus().declare<order_shipped>();
    auto a = rt.bus().subscribe<order_created>([](const order_created&) {}, {.name = "exact-created"});
    auto b = rt.bus().subscribe("order.*.v1", [](const courier::message_context&) {}, {.name = "order-star"});
    auto c = rt.bus().subscribe("order.#", [](const courier::message_context&) {}, {.name = "order-hash"});
    auto d = rt.bus().subscribe("inventory.#", [](const courier::message_context&) {}, {.name = "inventory"});
    auto e = rt.bus().subscribe<payment_charged>([](const payment_charged&) {}, {.name = "billing"});
    auto t = rt.bus().topology();
    CHECK(t.events_without_subscribers.empty());
    CHECK(std::find(t.subscriptions_matching_nothing.begin(), t.subscriptions_matching_nothing.end(), "inventory") !=
          t.subscriptions_matching_nothing.end());
    CHECK(std::find(t.subscriptions_matching_nothing.begin(), t.subscriptions_matching_nothing.end(), "billing") !=
          t.subscriptions_matching_nothing.end());
    REQUIRE(t.overlapping_wildcards.size() == 1);
    CHECK(t.overlapping_wildcards[0] == std::pair<std::string, std::string>{"order-star", "order-hash"});
    a.unsubscribe();
    b.unsubscribe();
    c.unsubscribe();
    auto t2 = rt.bus().topology();
    CHECK(t2.events_without_subscribers.size() == 2);
    CHECK(t2.to_string().find("has no subscriber") != std::string::npos);
}

TEST_CASE("two subscriptions cannot share a name", "[bus][errors]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    auto a = rt.bus().subscribe<tick>([](const tick&) {}, {.name = "same"});
    CHECK_THROWS_AS(rt.bus().subscribe<tick>([](const tick&) {}, {.name = "same"}), courier::courier_error);
}

TEST_CASE("metrics read as a struct and as Prometheus text", "[bus][metrics]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::subscription_options o = inline_opts();
    o.name = "metered";
    o.latency_sample_every = 1;
    o.guarantee = courier::delivery_guarantee::at_most_once;
    int n = 0;
    auto sub = rt.bus().subscribe<tick>(
        [&](const tick&) {
            if (++n % 2 == 0) throw std::runtime_error("even");
        },
        o);
    for (int i = 0; i < 10; ++i) (void)rt.bus().publish(tick{});
    auto m = sub.metrics();
    CHECK(m.delivered == 5);
    CHECK(m.failed == 5);
    CHECK(m.dead_lettered == 5);
    CHECK(m.latency_samples == 5);
    auto text = rt.bus().prometheus();
    CHECK(text.find("courier_subscription_delivered_total{subscription=\"metered\",pattern=\"test.tick.v1\"} 5") !=
          std::string::npos);
    CHECK(text.find("courier_subscription_failed_total{subscription=\"metered\",pattern=\"test.tick.v1\"} 5") !=
          std::string::npos);
    CHECK(text.find("courier_bus_published_total 10") != std::string::npos);
}

TEST_CASE("a reply address travels beside the message and survives the envelope", "[bus][context]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::vector<courier::reply_address> seen;
    std::vector<courier::envelope> envelopes;
    auto sub = rt.bus().subscribe<order_created>(
        [&](const order_created&, const courier::message_context& ctx) {
            seen.push_back(ctx.reply_to());
            envelopes.push_back(ctx.to_envelope());
        },
        {.mode = courier::delivery_mode::inline_call});

    courier::publish_options po;
    po.reply_to = courier::reply_address{7, 42};
    (void)rt.bus().publish(order_created{"o-1", 1.0}, po);
    (void)rt.bus().publish(order_created{"o-2", 2.0});
    REQUIRE(seen.size() == 2);
    CHECK(seen[0] == courier::reply_address{7, 42});
    CHECK_FALSE(seen[1]);
    // As an envelope it is the `courier-reply` header (no header map in process).
    CHECK(envelopes[0].headers.at("courier-reply") == "_INBOX.7.42");
    CHECK(envelopes[1].headers.count("courier-reply") == 0);

    // An envelope that arrives with the header (a bridge, a redrive) gets the address back.
    REQUIRE(rt.bus().publish(envelopes[0]));
    REQUIRE(seen.size() == 3);
    CHECK(seen[2] == courier::reply_address{7, 42});
    // A malformed header is not an address: it stays an ordinary header.
    auto odd = envelopes[1];
    odd.headers["courier-reply"] = "_INBOX.x.1";
    REQUIRE(rt.bus().publish(odd));
    REQUIRE(seen.size() == 4);
    CHECK_FALSE(seen[3]);
    CHECK(envelopes[3].headers.at("courier-reply") == "_INBOX.x.1");
}

TEST_CASE("reply addresses parse only the _INBOX.<inbox>.<request> form", "[bus][context]") {
    CHECK(courier::reply_address::parse("_INBOX.1.2") == courier::reply_address{1, 2});
    CHECK(courier::reply_address{18446744073709551615ull, 0}.to_string() == "_INBOX.18446744073709551615.0");
    CHECK(courier::reply_address::parse(courier::reply_address{99, 3}.to_string()) == courier::reply_address{99, 3});
    for (const char* bad : {"", "_INBOX.", "_INBOX.1", "_INBOX.1.", "_INBOX..2", "_INBOX.0.2", "INBOX.1.2", "_INBOX.1.2.3",
                            "_INBOX.-1.2", "_INBOX.1.2x", "_INBOX.99999999999999999999.1"})
        CHECK_FALSE(courier::reply_address::parse(bad));
}

TEST_CASE("publish takes a named publish_options by const reference: the caller's options stay as they were",
          "[bus][context]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::vector<std::string> keys;
    auto sub = rt.bus().subscribe<order_created>(
        [&](const order_created&, const courier::message_context& ctx) { keys.emplace_back(ctx.key()); }, inline_opts());
    courier::publish_options o;
    o.key = "k-1";
    o.trace_id = "trace-1";
    o.headers = {{"tenant", "acme"}};
    CHECK(rt.bus().publish(order_created{"o-1", 1}, o).deliveries == 1);
    CHECK(rt.bus().publish(order_created{"o-2", 2}, o).deliveries == 1);  // reused as is
    CHECK(keys == std::vector<std::string>{"k-1", "k-1"});
    CHECK(o.key == "k-1");
    CHECK(o.trace_id == "trace-1");
    CHECK(o.headers.at("tenant") == "acme");

    // Failure path: a closed bus delivers nothing and still leaves the options alone.
    (void)rt.bus().shutdown(std::chrono::seconds(1), [&] { rt.poll(); });
    const auto closed = rt.bus().publish(order_created{"o-3", 3}, o);
    CHECK(closed.closed);
    CHECK(closed.deliveries == 0);
    CHECK(keys.size() == 2);
    CHECK(o.key == "k-1");
}
