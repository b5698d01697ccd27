// Streams: partitioning by key, offsets, replay from the beginning / an offset / a time / the
// end, the live tail with no gap or duplicate at the seam, retention by count, bytes and age
// (on the manual clock), the trimmed error, reader-safe trimming, compaction and bus capture.
#include "stream/stream_events.hpp"

#include <courier/runtime/runtime.hpp>
#include <courier/stream/stream.hpp>

#include <boost/asio/bind_executor.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>
#include "wait.hpp"

using namespace stream_events;
using namespace std::chrono_literals;

namespace {

using courier_test::wait_until;

// Reads everything the reader has now, as (partition, offset, payload).
std::vector<std::tuple<std::uint32_t, std::uint64_t, std::string>> drain(courier::stream_reader& r, std::size_t batch = 7) {
    std::vector<std::tuple<std::uint32_t, std::uint64_t, std::string>> out;
    for (;;) {
        auto b = r.read(batch);
        REQUIRE(b);
        if (b->empty()) return out;
        for (auto& rec : *b) out.emplace_back(b->partition(), rec.offset, rec.payload);
    }
}

}  // namespace

TEST_CASE("append returns partition and offset, the key picks the partition by a stable hash", "[stream]") {
    courier::manual_clock clk;
    courier::stream s("orders", clk, {.partitions = 4});
    CHECK(s.partitions() == 4);
    CHECK(courier::stable_hash("a") == 0xaf63dc4c8601ec8cull);  // FNV-1a 64: the same everywhere
    std::map<std::uint32_t, std::uint64_t> next;
    for (int i = 0; i < 100; ++i) {
        const std::string key = "customer-" + std::to_string(i % 10);
        auto pos = s.append(key, "payload");
        REQUIRE(pos);
        CHECK(pos->partition == s.partition_for(key));
        CHECK(pos->partition == courier::stable_hash(key) % 4);
        CHECK(pos->offset == next[pos->partition]++);
    }
    // Records without a key go round robin.
    std::set<std::uint32_t> used;
    for (int i = 0; i < 4; ++i) used.insert(s.append("", "x")->partition);
    CHECK(used.size() == 4);
    auto to = s.append_to(2, "k", "v");
    REQUIRE(to);
    CHECK(to->partition == 2);
    auto bad = s.append_to(9, "k", "v");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == courier::errc::invalid_argument);
    CHECK(bad.error().id() == "courier.stream.bad_partition");
    CHECK(s.metrics().appended == 105);
    CHECK(s.metrics().rejected == 1);
}

TEST_CASE("records keep key, headers and a timestamp that never decreases", "[stream]") {
    courier::manual_clock clk;
    courier::stream s("audit", clk);
    const auto t0 = clk.now();
    (void)s.append("k1", "one", {{"source", "test"}});
    clk.advance(5s);
    (void)s.append("k2", "two");
    auto r = s.reader();
    auto b = r.read().value();
    REQUIRE(b.size() == 2);
    CHECK(b[0].key == "k1");
    CHECK(b[0].payload == "one");
    CHECK(b[0].header("source") == "test");
    CHECK(b[0].timestamp == t0);
    CHECK(b[1].timestamp == t0 + 5s);
    CHECK(b[1].offset == 1);
    CHECK(b.partition() == 0);
}

TEST_CASE("a reader replays from the beginning, an offset, a time or the end", "[stream][replay]") {
    courier::manual_clock clk;
    courier::stream s("events", clk, {.segment_records = 16});  // several segments
    const auto t0 = clk.now();
    for (int i = 0; i < 50; ++i) {
        (void)s.append("k", std::to_string(i));
        clk.advance(1s);
    }
    SECTION("beginning") {
        auto r = s.reader(courier::start_position::beginning());
        auto all = drain(r);
        REQUIRE(all.size() == 50);
        for (std::uint64_t i = 0; i < 50; ++i) CHECK(std::get<1>(all[i]) == i);
    }
    SECTION("an offset") {
        auto r = s.reader(courier::start_position::at(37));
        auto all = drain(r);
        REQUIRE(all.size() == 13);
        CHECK(std::get<2>(all.front()) == "37");
    }
    SECTION("a time") {
        auto r = s.reader(courier::start_position::at_time(t0 + 20s + 500ms));
        auto all = drain(r);
        REQUIRE(all.size() == 29);
        CHECK(std::get<2>(all.front()) == "21");
        auto late = s.reader(courier::start_position::at_time(t0 + 1h));
        CHECK(drain(late).empty());
        CHECK(late.position(0) == 50);
    }
    SECTION("the end") {
        auto r = s.reader(courier::start_position::end());
        CHECK(drain(r).empty());
        (void)s.append("k", "new");
        auto all = drain(r);
        REQUIRE(all.size() == 1);
        CHECK(std::get<2>(all[0]) == "new");
        CHECK(std::get<1>(all[0]) == 50);
    }
    SECTION("seek") {
        auto r = s.reader();
        r.seek(0, 48);
        CHECK(drain(r).size() == 2);
        r.seek(courier::start_position::at(10));
        CHECK(drain(r).size() == 40);
        CHECK(r.lag() == 0);
    }
}

TEST_CASE("a reader of several partitions sees each partition in offset order", "[stream][replay]") {
    courier::manual_clock clk;
    courier::stream s("multi", clk, {.partitions = 3, .segment_records = 16});
    for (int i = 0; i < 300; ++i) (void)s.append("key-" + std::to_string(i % 17), std::to_string(i));
    auto r = s.reader();
    std::map<std::uint32_t, std::uint64_t> next;
    std::size_t n = 0;
    for (auto& [p, off, payload] : drain(r, 10)) {
        CHECK(off == next[p]++);
        ++n;
    }
    CHECK(n == 300);
    auto only = s.reader(courier::start_position::beginning(), {.partitions = {1}});
    for (auto& [p, off, payload] : drain(only)) CHECK(p == 1);
    CHECK_THROWS_AS(s.reader(courier::start_position::beginning(), {.partitions = {7}}), courier::courier_error);
}

TEST_CASE("retention by record count trims the oldest, reading a trimmed offset is a clear error", "[stream][retention]") {
    courier::manual_clock clk;
    courier::stream s("capped", clk, {.retention = {.max_records = 10}, .segment_records = 16});
    auto early = s.reader();  // positioned at offset 0
    for (int i = 0; i < 25; ++i) (void)s.append("k", std::to_string(i));
    auto info = s.info(0);
    CHECK(info.records == 10);
    CHECK(info.start_offset == 15);
    CHECK(info.end_offset == 25);
    CHECK(s.metrics().trimmed == 15);

    auto b = early.read();
    REQUIRE_FALSE(b);
    CHECK(b.error().code == courier::errc::trimmed);
    CHECK(b.error().id() == "courier.stream.trimmed");
    CHECK(b.error().message.find("offset 0") != std::string::npos);
    CHECK(b.error().message.find("first available offset is 15") != std::string::npos);
    CHECK(early.first_available(0) == 15);
    CHECK_FALSE(early.read());  // stays put until it seeks
    early.seek(0, early.first_available(0));
    auto rest = drain(early);
    REQUIRE(rest.size() == 10);
    CHECK(std::get<2>(rest.front()) == "15");

    SECTION("or, with skip_trimmed, jumps ahead and counts what it skipped") {
        auto skipping = s.reader(courier::start_position::at(3), {.skip_trimmed = true});
        auto got = drain(skipping);
        CHECK(got.size() == 10);
        CHECK(skipping.skipped() == 12);
    }
    SECTION("a reader starting at a trimmed offset gets the error on its first read") {
        auto r = s.reader(courier::start_position::at(2));
        CHECK(r.read().error().code == courier::errc::trimmed);
    }
}

TEST_CASE("retention by bytes keeps the partition under its byte budget", "[stream][retention]") {
    courier::manual_clock clk;
    courier::stream s("bytes", clk, {.retention = {.max_bytes = 100}, .segment_records = 16});
    for (int i = 0; i < 30; ++i) (void)s.append("key", std::string(17, 'x'));  // 20 bytes a record
    auto info = s.info(0);
    CHECK(info.bytes == 100);
    CHECK(info.records == 5);
    CHECK(info.start_offset == 25);
    auto big = s.append("key", std::string(200, 'x'));
    REQUIRE_FALSE(big);
    CHECK(big.error().code == courier::errc::limit_exceeded);
    CHECK(big.error().id() == "courier.stream.record_too_large");
    CHECK(s.info(0).records == 5);  // a refused record trims nothing
}

TEST_CASE("retention by bytes counts records of every size and with headers exactly, and a reader keeps them",
          "[stream][retention]") {
    courier::manual_clock clk;
    courier::stream s("mixed", clk, {.retention = {.max_bytes = 2000}, .segment_records = 16});
    auto reader = s.reader(courier::start_position::beginning());
    auto first = reader.read(16).value();  // nothing yet: an empty batch
    CHECK(first.empty());
    // Short records (inline strings), long ones (heap strings) and records with headers, mixed.
    std::size_t appended_bytes = 0;
    for (int i = 0; i < 120; ++i) {
        const std::string key = i % 3 == 0 ? "k" + std::to_string(i) : "a-key-long-enough-for-the-heap-" + std::to_string(i);
        const std::string payload(i % 4 == 0 ? 3 : 40 + i, static_cast<char>('a' + i % 26));
        courier::record_headers h;
        if (i % 5 == 0) h["trace"] = "t-" + std::to_string(i);
        REQUIRE(s.append(key, payload, h));
        appended_bytes += key.size() + payload.size() + (i % 5 == 0 ? 5 + 2 + std::to_string(i).size() : 0);
    }
    // What is left is exactly the byte sum of the records still readable.
    auto info = s.info(0);
    CHECK(info.bytes <= 2000);
    CHECK(info.end_offset == 120);
    auto all = s.reader(courier::start_position::beginning());
    std::size_t sum = 0, n = 0;
    for (;;) {
        auto b = all.read(64).value();
        if (b.empty()) break;
        for (auto& r : b) {
            sum += r.size_bytes();
            ++n;
            const auto i = static_cast<int>(r.offset);
            CHECK(r.payload.size() == (i % 4 == 0 ? 3u : static_cast<std::size_t>(40 + i)));
            CHECK(r.header("trace") == (i % 5 == 0 ? "t-" + std::to_string(i) : std::string()));
        }
    }
    CHECK(sum == info.bytes);
    CHECK(n == info.records);
    CHECK(info.start_offset == 120 - n);
    auto m = s.metrics();
    CHECK(m.bytes == info.bytes);
    CHECK(m.trimmed == 120 - n);
    CHECK(appended_bytes > info.bytes);
    // The first reader is still at offset 0, long trimmed: a clear error, no stale record.
    auto late = reader.read(16);
    REQUIRE_FALSE(late);
    CHECK(late.error().code == courier::errc::trimmed);
}

TEST_CASE("retention by age runs off the runtime's clock, exactly when the oldest record expires", "[stream][retention]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::stream s(rt.bus(), "aged", {.partitions = 2, .retention = {.max_age = 1h}, .segment_records = 16});
    for (int i = 0; i < 10; ++i) (void)s.append("a", std::to_string(i));
    rt.advance(30min);
    for (int i = 0; i < 10; ++i) (void)s.append("b", std::to_string(i));
    CHECK(s.metrics().records == 20);
    rt.advance(29min + 59s);
    CHECK(s.metrics().records == 20);  // not a second early
    rt.advance(1s);
    CHECK(s.metrics().records == 10);  // the first ten expired at 1 h, by the timer alone
    rt.advance(30min);
    CHECK(s.metrics().records == 0);
    CHECK(s.metrics().trimmed == 20);
    // The timer is not left armed for an empty stream; a new record arms it again.
    (void)s.append("c", "x");
    rt.run_timers();
    CHECK(s.metrics().records == 0);

    SECTION("a stream without a runtime trims by age on append and enforce_retention") {
        courier::manual_clock c2;
        courier::stream bare("bare", c2, {.retention = {.max_age = 10s}});
        (void)bare.append("k", "old");
        c2.advance(11s);
        CHECK(bare.metrics().records == 1);
        CHECK(bare.enforce_retention() == 1);
        (void)bare.append("k", "a");
        c2.advance(11s);
        (void)bare.append("k", "b");  // trims "a" on the way
        CHECK(bare.metrics().records == 1);
    }
}

TEST_CASE("trimming never frees a record a slow reader is on", "[stream][retention]") {
    courier::manual_clock clk;
    courier::stream s("slow", clk, {.retention = {.max_records = 20}, .segment_records = 16});
    for (int i = 0; i < 16; ++i) (void)s.append("k", "first-segment-" + std::to_string(i));
    auto slow = s.reader();
    auto held = slow.read(16).value();  // the whole first segment
    REQUIRE(held.size() == 16);
    // Retention moves far past it: the first segment leaves the log...
    for (int i = 0; i < 200; ++i) (void)s.append("k", "later-" + std::to_string(i));
    CHECK(s.info(0).start_offset == 196);
    CHECK(s.info(0).segments <= 3);
    // ...but the batch the reader holds is intact (ASan would catch a use after free here).
    for (std::size_t i = 0; i < held.size(); ++i) {
        CHECK(held[i].offset == i);
        CHECK(held[i].payload == "first-segment-" + std::to_string(i));
    }
    // Its next read says where the stream starts now.
    auto next = slow.read();
    REQUIRE_FALSE(next);
    CHECK(next.error().code == courier::errc::trimmed);
    CHECK(slow.first_available(0) == 196);
}

TEST_CASE("a tailing reader moves from catch-up to live records with no gap and no duplicate", "[stream][tail]") {
    SECTION("with a concurrent appender") {
        courier::manual_clock clk;
        courier::stream s("tail", clk, {.segment_records = 64});
        const std::uint64_t total = 200000 / COURIER_STRESS_SCALE;
        for (std::uint64_t i = 0; i < total / 2; ++i) (void)s.append("k", std::to_string(i));  // history
        auto r = s.reader();
        std::thread appender([&] {
            for (std::uint64_t i = total / 2; i < total; ++i) (void)s.append("k", std::to_string(i));  // live
        });
        std::uint64_t expected = 0;
        bool ordered = true;
        const bool done = wait_until([&] {
            auto b = r.read(128);
            if (!b) return true;
            for (auto& rec : *b) {
                ordered = ordered && rec.offset == expected && rec.payload == std::to_string(expected);
                ++expected;
            }
            return expected >= total;
        });
        appender.join();
        REQUIRE(done);
        CHECK(ordered);
        CHECK(expected == total);
        CHECK(r.read()->empty());
    }
    SECTION("with async_read on the manual runtime") {
        courier::manual_clock clk;
        courier::runtime rt(courier::runtime::manual, clk);
        courier::stream s(rt.bus(), "tail", {.segment_records = 16});
        for (int i = 0; i < 40; ++i) (void)s.append("k", std::to_string(i));
        auto r = s.reader();
        std::vector<std::uint64_t> seen;
        std::function<void()> next;
        next = [&] {
            r.async_read(16, [&](courier::result<courier::stream_batch> b) {
                if (!b) return;
                for (auto& rec : *b) seen.push_back(rec.offset);
                next();
            });
        };
        next();
        rt.poll();
        CHECK(seen.size() == 40);  // caught up; now waiting
        (void)s.append("k", "40");
        rt.poll();
        (void)s.append("k", "41");
        (void)s.append("k", "42");
        rt.poll();
        REQUIRE(seen.size() == 43);
        for (std::uint64_t i = 0; i < seen.size(); ++i) CHECK(seen[i] == i);
    }
}

TEST_CASE("destroying a stream completes pending async reads with errc::closed", "[stream][tail]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    std::optional<courier::error> e;
    {
        courier::stream s(rt.bus(), "short");
        auto r = s.reader();
        r.async_read(10, [&](courier::result<courier::stream_batch> b) { e = b.error(); });
        rt.poll();
        CHECK_FALSE(e);
    }
    rt.poll();
    REQUIRE(e);
    CHECK(e->code == courier::errc::closed);

    courier::stream bare("bare", clk);
    auto r = bare.reader();
    std::optional<courier::error> e2;
    r.async_read(1, boost::asio::bind_executor(rt.executor(), [&](courier::result<courier::stream_batch> b) { e2 = b.error(); }));
    rt.poll();
    REQUIRE(e2);
    CHECK(e2->code == courier::errc::invalid_state);
    CHECK(bare.capture("a.#").error().code == courier::errc::invalid_state);
}

TEST_CASE("typed events and envelopes are stored as envelopes and read back", "[stream][events]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::stream s(rt.bus(), "orders", {.partitions = 2});
    auto pos = s.append(order_placed{"o-1", 42.5}, "customer-1");
    REQUIRE(pos);
    CHECK(pos->partition == s.partition_for("customer-1"));
    auto r = s.reader();
    auto all = r.read().value();
    REQUIRE(all.size() == 1);
    const auto& rec = all[0];
    CHECK(rec.is_envelope());
    CHECK(rec.header(courier::stream_headers::event_type) == "order.placed.v1");
    auto o = rec.as<order_placed>();
    REQUIRE(o);
    CHECK(o->id == "o-1");
    CHECK(o->total == 42.5);
    auto wrong = rec.as<order_shipped>();
    REQUIRE_FALSE(wrong);
    CHECK(wrong.error().id() == "courier.event.type_mismatch");
    auto env = rec.to_envelope();
    REQUIRE(env);
    CHECK(env->event_type == "order.placed.v1");

    SECTION("appended from a handler, a record continues the handler's trace") {
        auto sub = rt.bus().subscribe<order_shipped>([&](const order_shipped& e) { (void)s.append(order_placed{e.id, 1}, e.id); });
        rt.bus().publish(order_shipped{"o-2"}, {.trace_id = "t-9", .correlation_id = "c-9"});
        rt.poll();
        auto r2 = s.reader(courier::start_position::beginning(), {.partitions = {s.partition_for("o-2")}});
        std::optional<courier::envelope> found;
        for (;;) {
            auto b = r2.read().value();
            if (b.empty()) break;
            for (auto& x : b)
                if (x.key == "o-2") found = x.to_envelope().value();
        }
        REQUIRE(found);
        CHECK(found->metadata.trace_id == "t-9");
        CHECK(found->metadata.correlation_id == "c-9");
        CHECK_FALSE(found->metadata.causation_id.empty());
    }
}

TEST_CASE("compaction keeps the latest record of each key, offsets unchanged", "[stream][compaction]") {
    courier::manual_clock clk;
    courier::stream s("prices", clk, {.compact = true, .compact_every_segments = 0, .segment_records = 16});
    // 5 keys updated 20 times each, then a tombstone for one of them.
    for (int round = 0; round < 20; ++round)
        for (int k = 0; k < 5; ++k) (void)s.append("sku-" + std::to_string(k), "price-" + std::to_string(round));
    (void)s.append("sku-3", "");   // tombstone
    (void)s.append("", "no key");  // kept always
    auto pinned = s.reader();
    auto held = pinned.read(16).value();  // a reader holding the first segment during compaction
    auto before = s.info(0);
    auto rep = s.compact();
    CHECK(rep.removed > 0);
    auto after = s.info(0);
    CHECK(after.records == before.records - rep.removed);
    CHECK(after.end_offset == before.end_offset);
    CHECK(held[0].payload == "price-0");  // the pinned pre-compaction segment is intact

    auto r = s.reader();
    std::map<std::string, std::vector<std::string>> by_key;
    std::uint64_t last = 0;
    bool increasing = true;
    bool first = true;
    for (auto& [p, off, payload] : drain(r)) {
        increasing = increasing && (first || off > last);
        first = false;
        last = off;
        (void)payload;
    }
    CHECK(increasing);
    r.seek(0, 0);
    for (;;) {
        auto b = r.read().value();
        if (b.empty()) break;
        for (auto& rec : b) by_key[rec.key].push_back(rec.payload);
    }
    // The sealed segments kept one record per key; the active segment (the last 6 records) is
    // never compacted, so a key may show its latest value there too.
    for (int k = 0; k < 5; ++k) {
        const auto& v = by_key["sku-" + std::to_string(k)];
        REQUIRE_FALSE(v.empty());
        CHECK(v.size() <= 2);
        if (k != 3) CHECK(v.back() == "price-19");
    }
    CHECK(by_key["sku-3"].back() == "");  // the tombstone is the key's latest
    CHECK(by_key[""] == std::vector<std::string>{"no key"});
    // A reader positioned in a gap moves to the next record kept.
    auto gap = s.reader(courier::start_position::at(1));
    auto g = gap.read(1).value();
    REQUIRE(g.size() == 1);
    CHECK(g[0].offset >= 1);

    SECTION("automatically, every few sealed segments") {
        courier::stream a("auto", clk, {.compact = true, .compact_every_segments = 2, .segment_records = 16});
        for (int i = 0; i < 1000; ++i) (void)a.append("k" + std::to_string(i % 3), std::to_string(i));
        CHECK(a.metrics().compacted > 900);
        CHECK(a.info(0).records < 60);
    }
}

TEST_CASE("capture appends matching bus events as envelopes, in publish order", "[stream][capture]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::stream s(rt.bus(), "order-log");
    auto name = s.capture("order.#");
    REQUIRE(name);
    auto bad = s.capture("order..#");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == courier::errc::invalid_pattern);
    std::vector<courier::uuid> ids;
    auto ids_sub = rt.bus().subscribe("order.#", [&](const courier::message_context& ctx) { ids.push_back(ctx.event_id()); },
                                      {.mode = courier::delivery_mode::inline_call});
    rt.bus().publish(order_placed{"o-1", 10}, {.key = "c-1"});
    rt.bus().publish(order_shipped{"o-1"});
    rt.bus().publish(payment_taken{"o-1", 1000});  // not an order.# event
    rt.bus().publish(order_placed{"o-2", 20});
    auto r = s.reader();
    auto b = r.read().value();
    REQUIRE(b.size() == 3);
    CHECK(b[0].header(courier::stream_headers::event_type) == "order.placed.v1");
    CHECK(b[0].key == "c-1");
    CHECK(b[0].as<order_placed>()->id == "o-1");
    CHECK(b[1].as<order_shipped>()->id == "o-1");
    CHECK(b[2].as<order_placed>()->total == 20);
    REQUIRE(ids.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) CHECK(b[i].to_envelope()->event_id == ids[i]);  // the same events
    CHECK(s.metrics().captured == 3);
    CHECK(s.stop_capture(*name));
    CHECK_FALSE(s.stop_capture(*name));
    rt.bus().publish(order_placed{"o-3", 30});
    CHECK(r.read()->empty());
}

TEST_CASE("a reader racing retention gets trimmed or the next record, never a silent gap", "[stream][retention][stress]") {
    // Small segments and a tight retention: the appender keeps removing whole segments while
    // the reader moves from one segment to the next, the window where a lookup used to land
    // past the records retention had just removed and return later ones as if contiguous.
    courier::manual_clock clk;
    courier::stream s("race", clk, {.retention = {.max_records = 40}, .segment_records = 16});
    constexpr std::uint64_t total = 200000;
    auto r = s.reader();  // at offset 0, before the appender starts
    std::atomic<bool> done{false};
    std::thread appender([&] {
        for (std::uint64_t i = 0; i < total; ++i) (void)s.append("k", "v");
        done = true;
    });
    std::uint64_t expected = 0, read = 0, trimmed = 0, gaps = 0;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
        const bool finished = done.load();
        auto b = r.read(16);
        if (!b) {
            REQUIRE(b.error().code == courier::errc::trimmed);
            ++trimmed;
            const auto first = r.first_available(0);
            REQUIRE(first > expected);
            r.seek(0, first);
            expected = first;
            continue;
        }
        if (b->empty()) {
            if (finished) break;
            continue;
        }
        for (auto& rec : *b) {
            if (rec.offset != expected) ++gaps;
            expected = rec.offset + 1;
            ++read;
        }
    }
    appender.join();
    CHECK(gaps == 0);
    CHECK(expected == total);
    CHECK(read > 0);
    INFO("trimmed errors: " << trimmed);
}
