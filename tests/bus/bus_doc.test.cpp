// The examples of docs/bus.md, compiled and run: the page quotes the code between the "doc:"
// markers (tests/docs/check_snippets.py checks that it does), so a snippet that stops compiling
// or stops being true fails here. Everything runs on a manual runtime: no thread, no sleep.
#include <courier/bus/event_bus.hpp>
#include <courier/runtime/runtime.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

// A named namespace: this file shares a unity TU with files that pull test_events' types into
// the global namespace.
namespace bus_doc {

// doc: events
struct order_created {
    static constexpr courier::event_name event_type{"order.created.v1"};
    std::string id;
    double total = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_created, id, total)
};
struct invoice_sent {
    static constexpr courier::event_name event_type{"billing.invoice.sent.v1"};
    std::string order_id;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(invoice_sent, order_id)
};
// doc: end

TEST_CASE("docs/bus.md: typed and wildcard subscriptions, a run-time pattern, a publish", "[bus][docs]") {
    // doc: subscribe
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);  // a program: courier::runtime rt; (own threads)

    // Exact name, typed: no pattern matching per message.
    std::map<std::string, double> charged;
    auto billing = rt.bus().subscribe<order_created>(
        [&](const order_created& e) {
            charged[e.id] += e.total;
            rt.bus().publish(invoice_sent{e.id});  // inherits trace + correlation; causation = this event
        },
        {.name = "billing", .mode = courier::delivery_mode::keyed,
         .key = courier::key_by<order_created>([](const order_created& e) { return e.id; })});

    // Wildcards (AMQP topic habit): `*` one segment, `#` zero or more, trailing `>` one or more.
    std::vector<std::string> audit_log;
    auto audit = rt.bus().subscribe("order.#", [&](const courier::message_context& m) {
        audit_log.push_back(std::string(m.event_type()) + " " + m.data().dump());
    });

    // A pattern that arrives at run time: a typed error instead of an exception.
    std::string configured = "order.Created.*";  // e.g. from a config file
    auto dynamic = rt.bus().try_subscribe(configured, [](const courier::message_context&) {});
    // dynamic.error().message: "[courier.event.invalid_pattern] ... segment 2 'Created' ..."

    rt.bus().publish(order_created{"o-1", 42.0});
    rt.poll();  // a manual runtime runs handlers here; an owned pool runs them on its threads
    // doc: end

    CHECK(charged == std::map<std::string, double>{{"o-1", 42.0}});
    REQUIRE(audit_log.size() == 1);
    CHECK(audit_log[0] == R"(order.created.v1 {"id":"o-1","total":42.0})");
    REQUIRE_FALSE(dynamic);
    CHECK(dynamic.error() == courier::errc::invalid_pattern);
    CHECK(dynamic.error().id() == "courier.event.invalid_pattern");
    CHECK(dynamic.error().message.find("'Created'") != std::string::npos);

    // The invoice published from the handler names the order event as its cause.
    std::vector<courier::uuid> order_ids;
    std::vector<std::pair<courier::uuid, std::string>> invoices;  // causation, correlation
    auto orders = rt.bus().subscribe<order_created>(
        [&](const order_created&, const courier::message_context& ctx) { order_ids.push_back(ctx.event_id()); },
        {.mode = courier::delivery_mode::inline_call});
    auto sent = rt.bus().subscribe<invoice_sent>(
        [&](const invoice_sent&, const courier::message_context& ctx) {
            invoices.emplace_back(ctx.causation_id(), std::string(ctx.correlation_id()));
        },
        {.mode = courier::delivery_mode::inline_call});
    (void)rt.bus().publish(order_created{"o-2", 1.5});
    rt.poll();
    REQUIRE(order_ids.size() == 1);
    REQUIRE(invoices.size() == 1);
    CHECK(invoices[0].first == order_ids[0]);
    CHECK(invoices[0].second == order_ids[0].to_string());  // a root event lends its id as correlation
    CHECK(charged.at("o-2") == 1.5);
}

TEST_CASE("docs/bus.md: a bulk consumer trades latency for batches", "[bus][docs]") {
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);
    // doc: bulk
    // Throughput over latency for a bulk consumer: a longer pause, larger batches.
    std::vector<std::string> indexed;
    auto bulk = rt.bus().subscribe<order_created>([&](const order_created& e) { indexed.push_back(e.id); },
                                                  {.batch = 256, .coalesce_spin = 256});
    // doc: end
    for (int i = 0; i < 300; ++i) (void)rt.bus().publish(order_created{"o-" + std::to_string(i), 1.0});
    rt.poll();
    REQUIRE(indexed.size() == 300);
    CHECK(indexed.front() == "o-0");
    CHECK(indexed.back() == "o-299");
    REQUIRE(bulk.metrics().delivered == 300);
}

TEST_CASE("docs/bus.md: a reply address travels beside the message", "[bus][docs]") {
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);
    std::vector<courier::reply_address> seen;
    auto sub = rt.bus().subscribe<order_created>(
        [&](const order_created&, const courier::message_context& ctx) { seen.push_back(ctx.reply_to()); },
        {.mode = courier::delivery_mode::inline_call});
    // doc: reply-to
    courier::publish_options po;
    po.reply_to = courier::reply_address{7, 42};
    rt.bus().publish(order_created{"o-1", 1.0}, po);
    // in the handler: ctx.reply_to() == courier::reply_address{7, 42}
    // doc: end
    REQUIRE(seen.size() == 1);
    CHECK(seen[0] == courier::reply_address{7, 42});
    CHECK(seen[0].to_string() == "_INBOX.7.42");
}

TEST_CASE("docs/bus.md: shutdown hooks run once, after the drain", "[bus][docs]") {
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);
    // doc: on-shutdown
    std::vector<std::string> log;
    auto flush = rt.bus().on_shutdown([&] { log.push_back("flushed"); });
    auto noisy = rt.bus().on_shutdown([&] { log.push_back("never"); });
    rt.bus().remove_on_shutdown(noisy);
    rt.stop();  // log == {"flushed"}
    // doc: end
    CHECK(flush != noisy);
    CHECK(log == std::vector<std::string>{"flushed"});
    (void)rt.stop();  // idempotent: the hook does not run again
    CHECK(log.size() == 1);
}

}  // namespace bus_doc
