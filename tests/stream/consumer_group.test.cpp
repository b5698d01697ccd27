// Consumer groups: one member per record, acks and committed offsets, pending entries with
// owner and delivery count, claims by idle time on the manual clock (a member dying with
// pending records), rebalance on join / leave / eviction (also while consuming), retention
// while a group lags, and stress tests: exactly once when every member acks, at least once
// with claims after a member stops.
#include "stream/stream_events.hpp"

#include <courier/runtime/runtime.hpp>
#include <courier/stream/stream.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>
#include "wait.hpp"

using namespace std::chrono_literals;

namespace {

using courier_test::wait_until;

std::vector<std::pair<std::uint32_t, std::uint64_t>> positions(const courier::group_batch& b) {
    std::vector<std::pair<std::uint32_t, std::uint64_t>> out;
    for (auto& d : b) out.emplace_back(d.partition, d.offset());
    return out;
}

void fill(courier::stream& s, int n) {
    for (int i = 0; i < n; ++i) REQUIRE(s.append("key-" + std::to_string(i), std::to_string(i)));
}

}  // namespace

TEST_CASE("each record goes to one member, acks move the committed offset", "[stream][group]") {
    courier::manual_clock clk;
    courier::stream s("orders", clk, {.partitions = 4, .segment_records = 16});
    fill(s, 200);
    auto g = s.group("billing");
    auto a = g.join("a");
    auto b = g.join("b");
    CHECK(g.members() == std::vector<std::string>{"a", "b"});
    CHECK(a.assignment() == std::vector<std::uint32_t>{0, 2});
    CHECK(b.assignment() == std::vector<std::uint32_t>{1, 3});
    std::set<std::pair<std::uint32_t, std::uint64_t>> seen;
    std::size_t total = 0;
    for (auto* m : {&a, &b}) {
        for (;;) {
            auto batch = m->read(10).value();
            if (batch.empty()) break;
            for (auto& d : batch) {
                CHECK(seen.emplace(d.partition, d.offset()).second);  // never twice
                CHECK(d.delivery_count == 1);
                CHECK(d.record().payload == std::to_string(std::stoi(d.record().key.substr(4))));
            }
            total += batch.size();
            CHECK(m->ack(batch) == batch.size());
            CHECK(m->ack(batch) == 0);  // acking twice is harmless
        }
    }
    CHECK(total == 200);
    for (std::uint32_t p = 0; p < 4; ++p) CHECK(g.committed(p) == s.info(p).end_offset);
    CHECK(g.lag() == 0);
    CHECK(g.summary().count == 0);
    auto m = g.metrics();
    CHECK(m.delivered == 200);
    CHECK(m.acked == 200);
}

TEST_CASE("unacked records are pending with their owner and delivery count", "[stream][group][pending]") {
    courier::manual_clock clk;
    courier::stream s("jobs", clk, {.partitions = 1});
    fill(s, 10);
    auto g = s.group("workers");
    auto a = g.join("a");
    auto batch = a.read(4).value();
    REQUIRE(batch.size() == 4);
    a.ack(batch[1]);
    CHECK(a.ack(0, 3));
    CHECK_FALSE(a.ack(0, 3));
    CHECK(g.committed(0) == 0);  // offset 0 is still pending
    clk.advance(7s);
    auto p = g.pending();
    REQUIRE(p.size() == 2);
    CHECK(p[0].offset == 0);
    CHECK(p[0].owner == "a");
    CHECK(p[0].delivery_count == 1);
    CHECK(p[0].idle == 7s);
    CHECK(p[1].offset == 2);
    auto sum = g.summary();
    CHECK(sum.count == 2);
    REQUIRE(sum.per_owner.size() == 1);
    CHECK(sum.per_owner[0] == std::pair<std::string, std::size_t>{"a", 2});
    a.ack(batch);
    CHECK(g.committed(0) == 4);
    CHECK(g.pending().empty());
}

TEST_CASE("a member dies with pending records, another claims them once they were idle long enough",
          "[stream][group][claim]") {
    courier::manual_clock clk;
    courier::stream s("jobs", clk, {.partitions = 2});
    fill(s, 20);
    auto g = s.group("workers");
    auto survivor = g.join("survivor");
    std::vector<std::pair<std::uint32_t, std::uint64_t>> lost;
    {
        auto doomed = g.join("doomed");
        auto batch = doomed.read(5).value();
        REQUIRE(batch.size() == 5);
        lost = positions(batch);
        // ... and the member dies without acking: its handle goes away.
    }
    CHECK(g.members() == std::vector<std::string>{"survivor"});
    CHECK(survivor.assignment() == std::vector<std::uint32_t>{0, 1});  // its partition moved
    CHECK(g.summary().per_owner == std::vector<std::pair<std::string, std::size_t>>{{"doomed", 5}});

    clk.advance(29s);
    CHECK(survivor.claim(30s).empty());  // not idle long enough
    clk.advance(1s);
    auto claimed = survivor.claim(30s);
    REQUIRE(claimed.size() == 5);
    CHECK(positions(claimed) == lost);
    for (auto& d : claimed) CHECK(d.delivery_count == 2);
    for (auto& e : g.pending()) {
        CHECK(e.owner == "survivor");
        CHECK(e.idle == 0s);
    }
    CHECK(survivor.claim(30s).empty());  // just claimed: not idle any more
    survivor.ack(claimed);
    // The survivor reads the rest of both partitions; nothing is delivered twice by read.
    std::size_t rest = 0;
    for (;;) {
        auto b = survivor.read(100).value();
        if (b.empty()) break;
        rest += b.size();
        survivor.ack(b);
    }
    CHECK(rest == 15);
    CHECK(g.lag() == 0);
    CHECK(g.metrics().claimed == 5);

    SECTION("XCLAIM names the records to take") {
        fill(s, 4);
        auto other = g.join("other");
        auto b = survivor.read(100).value();
        auto c = other.read(100).value();
        const auto victim = b.empty() ? c[0] : b[0];
        auto& thief = b.empty() ? survivor : other;
        std::vector<std::uint64_t> offsets{victim.offset()};
        clk.advance(5s);
        CHECK(thief.claim(victim.partition, offsets, 10s).empty());
        auto got = thief.claim(victim.partition, offsets, 5s);
        REQUIRE(got.size() == 1);
        CHECK(got[0].offset() == victim.offset());
        CHECK(got[0].delivery_count == 2);
    }
}

TEST_CASE("a pending list that wraps around and grows keeps its entries in offset order", "[stream][group][pending]") {
    courier::manual_clock clk;
    courier::stream s("ring", clk, {.partitions = 1, .segment_records = 256});
    fill(s, 1000);
    auto g = s.group("workers");
    auto a = g.join("a");
    // 40 read and acked: the list's front moves on, so what follows wraps around its storage.
    auto warm = a.read(40).value();
    REQUIRE(warm.size() == 40);
    CHECK(a.ack(warm) == 40);
    CHECK(g.committed(0) == 40);
    // Then reads of growing size, every 10th record and offset 45 left unacked: the list keeps
    // them in order while it wraps, grows and sweeps acked entries.
    std::set<std::uint64_t> unacked;
    std::uint64_t next = 40;
    for (int round = 0; round < 8; ++round) {
        auto batch = a.read(30 + 20 * round).value();
        REQUIRE_FALSE(batch.empty());
        for (auto& d : batch) {
            CHECK(d.offset() == next++);
            if (d.offset() == 45 || d.offset() % 10 == 0) unacked.insert(d.offset());
            else CHECK(a.ack(d) == 1);
        }
        CHECK(g.committed(0) == 40);
        auto p = g.pending();
        REQUIRE(p.size() == unacked.size());
        std::size_t i = 0;
        for (auto o : unacked) CHECK(p[i++].offset == o);
        CHECK(g.metrics().pending_list_entries <= 2 * unacked.size() + 64);
    }
    // Claims find the idle ones in order; acking them moves the committed offset to the end.
    clk.advance(1s);
    auto b = g.join("b");
    auto claimed = b.claim(1s, 1000);
    REQUIRE(claimed.size() == unacked.size());
    std::size_t i = 0;
    for (auto o : unacked) {
        CHECK(claimed[i].offset() == o);
        CHECK(claimed[i].delivery_count == 2);
        ++i;
    }
    CHECK(b.ack(claimed) == unacked.size());
    CHECK(g.committed(0) == next);
    CHECK(g.pending().empty());
    CHECK(g.metrics().pending == 0);
}

TEST_CASE("a member that stops calling is evicted after the session timeout", "[stream][group][rebalance]") {
    courier::manual_clock clk;
    courier::stream s("jobs", clk, {.partitions = 2});
    fill(s, 10);
    auto g = s.group("workers", {.session_timeout = 10s});
    auto live = g.join("live");
    auto hung = g.join("hung");
    CHECK(live.assignment().size() == 1);
    auto stuck = hung.read(100).value();  // reads, then hangs without acking
    REQUIRE_FALSE(stuck.empty());
    clk.advance(6s);
    live.heartbeat();
    clk.advance(6s);  // hung silent for 12 s, live for 6 s
    auto b = live.read(100).value();
    CHECK(g.members() == std::vector<std::string>{"live"});
    CHECK(g.metrics().evictions == 1);
    CHECK(live.assignment().size() == 2);
    // Its pending records wait for a claim.
    auto claimed = live.claim(10s);
    CHECK(claimed.size() == stuck.size());
    // A hung member that comes back rejoins (and gets a share again).
    (void)hung.read(1);
    CHECK(g.members().size() == 2);
    (void)b;
}

TEST_CASE("members joining and leaving rebalance the partitions", "[stream][group][rebalance]") {
    courier::manual_clock clk;
    courier::stream s("t", clk, {.partitions = 4});
    auto g = s.group("g");
    auto a = g.join("a");
    const auto g1 = g.generation();
    CHECK(a.assignment() == std::vector<std::uint32_t>{0, 1, 2, 3});
    auto b = g.join("b");
    auto c = g.join("c");
    CHECK(g.generation() > g1);
    CHECK(a.assignment() == std::vector<std::uint32_t>{0, 3});
    CHECK(b.assignment() == std::vector<std::uint32_t>{1});
    CHECK(c.assignment() == std::vector<std::uint32_t>{2});
    b.leave();
    CHECK(a.assignment() == std::vector<std::uint32_t>{0, 2});
    CHECK(c.assignment() == std::vector<std::uint32_t>{1, 3});
    CHECK_FALSE(b.read(1));
    CHECK(b.read(1).error().id() == "courier.stream.member_left");
    CHECK_THROWS_AS(g.join("a"), courier::courier_error);
    CHECK(g.try_join("a").error().code == courier::errc::duplicate);
    auto b2 = g.join("b");  // a name that left may come back
    CHECK(g.members().size() == 3);
}

TEST_CASE("rebalance while consuming delivers every record once", "[stream][group][rebalance]") {
    courier::manual_clock clk;
    courier::stream s("t", clk, {.partitions = 4, .segment_records = 16});
    fill(s, 400);
    auto g = s.group("g");
    auto a = g.join("a");
    std::map<std::pair<std::uint32_t, std::uint64_t>, int> count;
    auto take = [&](courier::group_member& m, std::size_t n, bool ack) {
        auto b = m.read(n).value();
        for (auto& d : b) ++count[{d.partition, d.offset()}];
        if (ack) m.ack(b);
        return b;
    };
    take(a, 30, true);
    auto in_flight = take(a, 30, false);  // a holds these when b arrives
    auto b = g.join("b");
    take(b, 30, true);
    take(a, 30, true);
    CHECK(a.ack(in_flight) == in_flight.size());  // a's acks still count after the rebalance
    auto c = g.join("c");
    a.leave();
    for (int round = 0; round < 100; ++round) {
        take(b, 25, true);
        take(c, 25, true);
    }
    CHECK(count.size() == 400);
    for (auto& [pos, n] : count) CHECK(n == 1);
    CHECK(g.summary().count == 0);
    CHECK(g.lag() == 0);
}

TEST_CASE("a group starts at the beginning, the end, or a time", "[stream][group]") {
    courier::manual_clock clk;
    courier::stream s("t", clk);
    const auto t0 = clk.now();
    for (int i = 0; i < 10; ++i) {
        (void)s.append("k", std::to_string(i));
        clk.advance(1s);
    }
    auto from_start = s.group("all").join("m");
    auto from_end = s.group("new", {.start = courier::start_position::end()}).join("m");
    auto from_time = s.group("recent", {.start = courier::start_position::at_time(t0 + 7s)}).join("m");
    CHECK(from_start.read(100)->size() == 10);
    CHECK(from_end.read(100)->empty());
    CHECK(from_time.read(100)->size() == 3);
    (void)s.append("k", "10");
    CHECK(from_end.read(100)->size() == 1);
    CHECK(s.group("new").committed(0) == 10);  // the same group: options of the first call
}

TEST_CASE("retention while a group lags: skipped and lost records are counted", "[stream][group][retention]") {
    courier::manual_clock clk;
    courier::stream s("t", clk, {.retention = {.max_records = 10}, .segment_records = 16});
    fill(s, 5);
    auto g = s.group("slow");
    auto m = g.join("m");
    auto pending = m.read(3).value();  // offsets 0..2 pending, never acked
    REQUIRE(pending.size() == 3);
    fill(s, 30);  // retention trims offsets 0..24
    auto b = m.read(100).value();
    REQUIRE_FALSE(b.empty());
    CHECK(b[0].offset() == 25);  // resumes at the first available record
    CHECK(g.metrics().skipped_by_retention == 22);  // offsets 3..24 never delivered
    CHECK(pending[0].record().payload == "0");  // the batch it holds is still valid
    m.ack(b);
    clk.advance(1min);
    CHECK(m.claim(1s).size() == 0);  // pending 0..2 are gone: dropped from the list, counted
    CHECK(g.metrics().lost_to_retention == 3);
    CHECK(g.summary().count == 0);
}

TEST_CASE("async_read of a member waits for new records", "[stream][group]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::stream s(rt.bus(), "t");
    auto m = s.group("g").join("m");
    std::size_t got = 0;
    m.async_read(10, [&](courier::result<courier::group_batch> b) { got = b->size(); });
    rt.poll();
    CHECK(got == 0);
    (void)s.append("k", "v");
    (void)s.append("k", "w");
    rt.poll();
    CHECK(got == 2);
}

TEST_CASE("stress: a consumer group processes each record exactly once when every member acks", "[stream][group][stress]") {
    courier::manual_clock clk;
    courier::stream s("stress", clk, {.partitions = 4, .segment_records = 256});
    const std::uint64_t total = 200000 / COURIER_STRESS_SCALE;
    auto g = s.group("g");
    constexpr int members = 3;
    std::vector<std::unique_ptr<std::atomic<std::uint32_t>>> seen(total);
    for (auto& x : seen) x = std::make_unique<std::atomic<std::uint32_t>>(0);
    std::atomic<std::uint64_t> processed{0}, sum{0};
    std::atomic<bool> producing{true};
    std::vector<std::thread> threads;
    for (int i = 0; i < members; ++i) {
        threads.emplace_back([&, i] {
            auto m = g.join("m" + std::to_string(i));
            courier::group_batch b;
            for (;;) {
                auto n = m.read(b, 64);
                if (!n) return;
                if (*n == 0) {
                    if (!producing.load() && processed.load() >= total) return;
                    std::this_thread::yield();
                    continue;
                }
                for (auto& d : b) {
                    const auto v = std::stoull(d.record().payload);
                    seen[v]->fetch_add(1);
                    sum.fetch_add(v);
                }
                processed.fetch_add(b.size());
                m.ack(b);
            }
        });
    }
    for (std::uint64_t i = 0; i < total; ++i) REQUIRE(s.append("key-" + std::to_string(i % 1000), std::to_string(i)));
    producing = false;
    const bool done = wait_until([&] { return processed.load() >= total; });
    for (auto& t : threads) t.join();
    REQUIRE(done);
    CHECK(processed == total);
    CHECK(sum == total * (total - 1) / 2);
    std::uint64_t wrong = 0;
    for (auto& x : seen) wrong += x->load() != 1;
    CHECK(wrong == 0);
    CHECK(g.summary().count == 0);
    CHECK(g.lag() == 0);
    CHECK(g.metrics().claimed == 0);
}

TEST_CASE("stress: at least once with claims after a member stops", "[stream][group][stress][claim]") {
    // Three members; one stops mid-way without acking its last batch and leaves. Once it has
    // stopped, the test moves the manual clock past the claim idle time (one step, while the
    // others run); they claim what it left. Every record is processed at least once, the
    // abandoned ones at least twice; other duplicates can only be the survivors' own batches in
    // flight at the instant of the step (claimable too: the at-least-once contract).
    courier::manual_clock clk;
    courier::stream s("stress", clk, {.partitions = 4, .segment_records = 256});
    const std::uint64_t total = 100000 / COURIER_STRESS_SCALE;
    for (std::uint64_t i = 0; i < total; ++i) REQUIRE(s.append("key-" + std::to_string(i % 997), std::to_string(i)));
    auto g = s.group("g");
    std::vector<std::unique_ptr<std::atomic<std::uint32_t>>> seen(total);
    for (auto& x : seen) x = std::make_unique<std::atomic<std::uint32_t>>(0);
    std::atomic<std::uint64_t> acked_total{0};
    std::set<std::uint64_t> abandoned;
    std::atomic<bool> stopped{false};
    std::atomic<bool> survivors_go{false};
    constexpr std::size_t batch = 64;
    // The dying member reads alone first (all partitions are its own), lets the survivors join
    // halfway, and dies on its 20th non-empty batch: it always holds records when it dies, however
    // the threads are scheduled (under a sanitizer the survivors could otherwise drain every
    // partition before it got there).
    auto work = [&](int i, bool dies) {
        if (!dies) {
            while (!survivors_go.load()) std::this_thread::yield();
        }
        auto m = g.join("m" + std::to_string(i));
        courier::group_batch b;
        int reads = 0;
        for (;;) {
            if (!dies) {
                auto c = m.claim(30s, batch);
                for (auto& d : c) seen[std::stoull(d.record().payload)]->fetch_add(1);
                acked_total.fetch_add(m.ack(c));
            }
            auto n = m.read(b, batch);
            if (!n) {
                survivors_go = true;  // never strand them on an unexpected error
                return;
            }
            for (auto& d : b) seen[std::stoull(d.record().payload)]->fetch_add(1);
            if (dies && *n > 0) {
                ++reads;
                if (reads == 10) survivors_go = true;
                if (reads == 20) {
                    for (auto& d : b) abandoned.insert(std::stoull(d.record().payload));
                    stopped = true;  // published to the test thread by this store
                    return;          // dies holding an unacked batch; the handle leaves the group
                }
            }
            acked_total.fetch_add(m.ack(b));
            if (*n == 0) {
                if (acked_total.load() >= total) return;
                std::this_thread::yield();
            }
        }
    };
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i) threads.emplace_back(work, i, i == 2);
    REQUIRE(wait_until([&] { return stopped.load(); }));
    clk.advance(31s);
    const bool done = wait_until([&] { return acked_total.load() >= total; }, 60s);
    for (auto& t : threads) t.join();
    REQUIRE(done);
    CHECK(acked_total == total);
    REQUIRE_FALSE(abandoned.empty());
    std::uint64_t missing = 0, abandoned_once = 0, other_dups = 0;
    for (std::uint64_t v = 0; v < total; ++v) {
        const auto n = seen[v]->load();
        if (n == 0) ++missing;
        if (abandoned.count(v)) {
            if (n < 2) ++abandoned_once;
        } else if (n > 1) {
            ++other_dups;
        }
    }
    CHECK(missing == 0);
    CHECK(abandoned_once == 0);       // what the dead member held was redelivered
    CHECK(other_dups <= 2 * batch);   // at most the survivors' in-flight batches at the step
    CHECK(g.metrics().claimed >= abandoned.size());
    CHECK(g.summary().count == 0);
    CHECK(g.lag() == 0);
}

TEST_CASE("a pending async_read ends with member_left when its member leaves or is destroyed", "[stream][group]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::stream s(rt.bus(), "t");
    auto g = s.group("g");
    std::optional<courier::result<courier::group_batch>> got;
    auto handler = [&](courier::result<courier::group_batch> b) { got.emplace(std::move(b)); };

    SECTION("destroyed") {
        {
            auto m = g.join("m");
            m.async_read(10, handler);
            rt.poll();
            CHECK_FALSE(got);
        }  // the pending read must not touch the destroyed member (ASan would see it)
        rt.poll();
    }
    SECTION("left") {
        auto m = g.join("m");
        m.async_read(10, handler);
        rt.poll();
        CHECK_FALSE(got);
        m.leave();
        rt.poll();
    }
    SECTION("moved, then destroyed") {
        std::optional<courier::group_member> holder;
        {
            auto m = g.join("m");
            m.async_read(10, handler);
            rt.poll();
            holder.emplace(std::move(m));
        }
        rt.poll();
        CHECK_FALSE(got);  // the moved-to member is alive: the read still waits for it
        (void)s.append("k", "v");
        rt.poll();
        REQUIRE(got);
        REQUIRE(got->has_value());
        CHECK((*got)->size() == 1);
        return;
    }
    REQUIRE(got);
    REQUIRE_FALSE(got->has_value());
    CHECK(got->error().code == courier::errc::invalid_state);
    CHECK(got->error().id() == "courier.stream.member_left");
    CHECK(got->error().message.find("'m'") != std::string::npos);
    (void)s.append("k", "v");  // nothing left to wake
    rt.poll();
}

TEST_CASE("a rebalance wakes a waiting member that takes over a partition with a backlog", "[stream][group][rebalance]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::stream s(rt.bus(), "t", {.partitions = 2});
    auto g = s.group("g");
    auto a = g.join("a");
    auto b = g.join("b");
    const auto a_parts = a.assignment();
    const auto b_parts = b.assignment();
    REQUIRE(a_parts.size() == 1);
    REQUIRE(b_parts.size() == 1);
    // A backlog on a's partition only.
    for (int i = 0; i < 5; ++i) REQUIRE(s.append_to(a_parts[0], "k", std::to_string(i)));
    std::optional<courier::result<courier::group_batch>> got;
    b.async_read(10, [&](courier::result<courier::group_batch> r) { got.emplace(std::move(r)); });
    rt.poll();
    CHECK_FALSE(got);  // nothing on b's partition
    a.leave();         // b now owns both partitions: the backlog is its to read
    rt.poll();
    REQUIRE(got);  // without an append
    REQUIRE(got->has_value());
    CHECK((*got)->size() == 5);
    CHECK((**got)[0].partition == a_parts[0]);
}

TEST_CASE("a dead member's pending record does not make the pending list grow", "[stream][group][pending]") {
    courier::manual_clock clk;
    courier::stream s("t", clk, {.segment_records = 64});
    auto g = s.group("g");
    fill(s, 1);
    auto dead = g.join("dead");
    auto held = dead.read(1).value();  // offset 0: never acked
    REQUIRE(held.size() == 1);
    dead.leave();
    auto live = g.join("live");
    for (int round = 0; round < 200; ++round) {
        fill(s, 50);
        std::size_t got = 0;
        for (;;) {  // one segment per read
            auto b = live.read(1000).value();
            if (b.empty()) break;
            got += b.size();
            live.ack(b);
        }
        REQUIRE(got == 50);
    }
    auto m = g.metrics();
    CHECK(m.acked == 10000);
    CHECK(m.pending == 1);
    CHECK(m.pending_list_entries <= 2 * m.pending + 64 + 50);
    CHECK(g.committed(0) == 0);  // still held by the dead member's record
    clk.advance(1min);
    auto c = live.claim(30s);  // the claim scans a short list and finds the one record
    REQUIRE(c.size() == 1);
    CHECK(c[0].offset() == 0);
    live.ack(c);
    CHECK(g.committed(0) == 10001);
    CHECK(g.metrics().pending_list_entries == 0);
}

TEST_CASE("pending records retention removes are counted lost when trimmed, not at the next claim",
          "[stream][group][retention]") {
    courier::manual_clock clk;
    courier::stream s("t", clk, {.retention = {.max_records = 10}, .segment_records = 16});
    fill(s, 5);
    auto g = s.group("slow");
    auto m = g.join("m");
    REQUIRE(m.read(3).value().size() == 3);  // offsets 0..2 pending
    CHECK(g.metrics().lost_to_retention == 0);
    fill(s, 30);  // retention trims offsets 0..24
    auto metrics = g.metrics();  // no read, no claim
    CHECK(metrics.lost_to_retention == 3);
    CHECK(metrics.pending == 0);
    CHECK(g.summary().count == 0);
    CHECK(g.committed(0) >= 3);
}

TEST_CASE("read with a fetch wait takes a batch at once, or what there is after max_wait", "[stream][group][fetch]") {
    courier::manual_clock clk;
    courier::stream s("orders", clk, {.partitions = 2});
    auto m = s.group("g").join("m");
    const auto started = std::chrono::steady_clock::now();
    fill(s, 10);
    SECTION("enough records wait: read at once, all of them up to max") {
        auto b = m.read(256, {.min_records = 5, .max_wait = 60s}).value();
        CHECK(b.size() + m.read(256).value().size() == 10);  // one partition per read
        CHECK(std::chrono::steady_clock::now() - started < 30s);
    }
    SECTION("min_records above max waits for max only") {
        courier::group_batch b;
        CHECK(m.read(b, 3, {.min_records = 1000, .max_wait = 60s}).value() == 3);
        CHECK(std::chrono::steady_clock::now() - started < 30s);
    }
    SECTION("too few: after max_wait, what there is") {
        courier::group_batch b;
        std::size_t got = 0;
        while (m.read(b, 256).value() != 0) got += b.size();
        CHECK(got == 10);
        fill(s, 2);
        const auto t0 = std::chrono::steady_clock::now();
        got = m.read(b, 256, {.min_records = 64, .max_wait = 2ms}).value();
        got += m.read(b, 256, {.min_records = 64, .max_wait = 2ms}).value();
        CHECK(got == 2);
        CHECK(std::chrono::steady_clock::now() - t0 >= 2ms);  // it did wait for more
        CHECK(m.read(b, 256, {.min_records = 64, .max_wait = 1ms}).value() == 0);
    }
    SECTION("a member that left gets its error without waiting") {
        m.leave();
        auto r = m.read(256, {.min_records = 64, .max_wait = 60s});
        REQUIRE_FALSE(r);
        CHECK(r.error().code == courier::errc::invalid_state);
        CHECK(std::chrono::steady_clock::now() - started < 30s);
    }
}

TEST_CASE("a member waiting for min_records reads as soon as an appender supplies them", "[stream][group][fetch]") {
    courier::stream s("orders", courier::system_clock::instance(), {.partitions = 1});
    auto m = s.group("g").join("m");
    std::thread appender([&] {
        for (int i = 0; i < 50; ++i) {
            (void)s.append("k", std::to_string(i));
            if (i % 10 == 0) std::this_thread::sleep_for(1ms);
        }
    });
    courier::group_batch b;
    const auto t0 = std::chrono::steady_clock::now();
    const auto n = m.read(b, 256, {.min_records = 50, .max_wait = 60s}).value();
    appender.join();
    CHECK(n == 50);  // it waited for all of them, and no longer than needed
    CHECK(std::chrono::steady_clock::now() - t0 < 30s);
    for (std::size_t i = 0; i < b.size(); ++i) CHECK(b[i].record().payload == std::to_string(i));
    CHECK(m.ack(b) == 50);
}
