// The example of docs/streams.md, compiled and run: the page quotes the code between the "doc:"
// markers (tests/docs/check_snippets.py checks that it does), so a snippet that stops compiling
// or stops being true fails here. Everything runs on a manual runtime: no thread, no sleep.
#include <courier/runtime/runtime.hpp>
#include <courier/stream/stream.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "stream/stream_events.hpp"

// A named namespace: this file shares a unity TU with stream.test.cpp, which pulls
// stream_events' types into the global namespace.
namespace stream_doc {

using namespace std::chrono_literals;

using stream_events::order_placed;
using stream_events::order_shipped;

TEST_CASE("docs/streams.md: append, capture, replay by time, a consumer group", "[stream][docs]") {
    // doc: append
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);  // a program: courier::runtime rt;
    courier::stream orders(rt.bus(), "orders", {
        .partitions = 4,
        .retention = {.max_records = 1'000'000, .max_age = 24h},
    });

    auto at = orders.append("customer-7", R"({"raw":"bytes"})").value();  // {partition, offset}
    (void)orders.append(order_placed{"o-1", 42.0}, "customer-7");     // stored as its envelope
    (void)orders.capture("order.#");                                  // every order.* event from now on
    rt.bus().publish(order_shipped{"o-1"}, {.key = "customer-7"});    // captured, keyed like a publish
    // doc: end
    CHECK(at.partition == orders.partition_for("customer-7"));
    CHECK(at.offset == 0);
    CHECK(orders.info(at.partition).end_offset == 3);

    // doc: replay
    // Replay from a time, then keep following the tail.
    std::vector<std::string> replayed;
    auto r = orders.reader(courier::start_position::at_time(rt.clock().now() - 1h));
    for (;;) {
        auto batch = r.read(256);
        if (!batch && batch.error() == courier::errc::trimmed) {  // fell behind retention
            for (auto p : r.partitions()) r.seek(p, r.first_available(p));
            continue;
        }
        if (batch.value().empty()) break;  // caught up (or: co_await r.async_read(256, use_awaitable))
        for (const courier::stream_record& rec : *batch) replayed.push_back(rec.key + " " + rec.payload);
    }
    // doc: end
    REQUIRE(replayed.size() == 3);
    CHECK(replayed[0] == R"(customer-7 {"raw":"bytes"})");
    CHECK(replayed[1].find(R"("event_type":"order.placed.v1")") != std::string::npos);
    CHECK(replayed[2].find(R"("event_type":"order.shipped.v1")") != std::string::npos);

    // A member of the group that died holding one record, half a minute ago.
    {
        auto crashed = orders.group("billing").join("worker-0");
        REQUIRE(crashed.read(1).value().size() == 1);
    }
    rt.advance(31s);

    // doc: group
    // A consumer group: each record to one member; ack; claim what a dead member left.
    auto billing = orders.group("billing");
    auto me = billing.join("worker-1");
    double charged = 0;
    auto batch = me.read(64).value();
    for (auto& d : batch)
        if (auto order = d.record().as<order_placed>()) charged += order->total;  // other records: not orders
    me.ack(batch);
    auto bulk = me.read(256, {.min_records = 64, .max_wait = 50us}).value();  // fetch.min / max.wait
    me.ack(bulk);
    auto orphans = me.claim(30s);               // XAUTOCLAIM: pending records idle >= 30 s
    auto pending = billing.pending();           // XPENDING: partition, offset, owner, deliveries, idle
    // doc: end
    CHECK(charged == 42.0);
    CHECK(batch.size() == 2);    // worker-0 had taken the first record of the partition
    CHECK(bulk.size() == 0);     // nothing new: the wait ended after 50 us of real time
    REQUIRE(orphans.size() == 1);  // worker-0's record, now worker-1's
    CHECK(orphans.begin()->offset() == 0);
    REQUIRE(pending.size() == 1);
    CHECK(pending[0].owner == "worker-1");
    CHECK(pending[0].delivery_count == 2);
    me.ack(orphans);
    CHECK(billing.pending().empty());
    CHECK(billing.committed(at.partition) == 3);
}

}  // namespace stream_doc
