// Overload: producers far faster than consumers, every queue bounded. The process's resident
// memory (sampled every millisecond) stays bounded while ten times the queues' worth of 1 KiB
// messages goes through, every overflow is handled by its policy and counted (dead letter,
// refused publish, undelivered actor message, refused request, record trimmed before a consumer
// group read or acked it, bridge outbox drop), the totals add up exactly, and no producer
// blocks longer than its policy allows. Covered: bus subscriptions, actor mailboxes, rpc
// responders, stream consumer groups under retention, a bridge's outbox.
#include "support.hpp"

#include <courier/actor/actor.hpp>
#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/loopback.hpp>
#include <courier/bus/event_bus.hpp>
#include <courier/rpc/rpc.hpp>
#include <courier/runtime/runtime.hpp>
#include <courier/stream/stream.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using reliability::numbered;
using reliability::busy_for;
using reliability::micros_since;
using reliability::note_max;
using reliability::quote;
using reliability::quote_request;
using reliability::wait_until;

namespace {

// The RSS bound is asserted only without sanitizers: ASan keeps freed memory in quarantine
// (256 MiB by default) and TSan's shadow memory grows with every address touched.
#if defined(COURIER_ASAN) || defined(COURIER_TSAN) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool check_rss = false;
#else
constexpr bool check_rss = true;
#endif

constexpr std::size_t mib = 1 << 20;

}  // namespace

TEST_CASE("bounded subscriptions under a flood keep memory bounded and count every overflow by policy",
          "[reliability][overload]") {
    reliability::watchdog dog("bus overload", 150s);
    courier::runtime_options ro;
    ro.threads = 2;
    ro.bus.dead_letter_capacity = 2000;  // the dead-letter store is bounded too: evictions are counted
    courier::runtime rt(ro);

    struct sub_spec {
        const char* name;
        courier::delivery_mode mode;
        courier::overflow_policy policy;
        std::size_t capacity;
    };
    const sub_spec specs[] = {
        {"overload.drop_oldest", courier::delivery_mode::pooled, courier::overflow_policy::drop_oldest, 512},
        {"overload.drop_newest", courier::delivery_mode::serial, courier::overflow_policy::drop_newest, 512},
        {"overload.fail", courier::delivery_mode::keyed, courier::overflow_policy::fail, 128},
    };
    std::atomic<std::uint64_t> handled{0};
    std::vector<courier::subscription> subs;
    for (const auto& s : specs) {
        courier::subscription_options o;
        o.name = s.name;
        o.mode = s.mode;
        o.overflow = s.policy;
        o.capacity = s.capacity;
        o.lanes = 4;
        o.key = courier::key_by<numbered>([](const numbered& e) { return e.n; });
        subs.push_back(rt.bus().subscribe<numbered>(
            [&](const numbered&) {
                handled.fetch_add(1, std::memory_order_relaxed);
                busy_for(20us);  // consumers far slower than the producers
            },
            o));
    }

    const std::uint64_t per_producer = 100000 / static_cast<std::uint64_t>(reliability::scale);
    const int producers = 3;
    std::atomic<std::uint64_t> deliveries{0}, rejected{0};
    std::atomic<std::int64_t> slowest_publish_us{0};
    reliability::rss_sampler rss;
    {
        std::vector<std::thread> threads;
        for (int p = 0; p < producers; ++p) {
            threads.emplace_back([&, p] {
                const std::string pad(1024, static_cast<char>('a' + p));
                std::int64_t slowest = 0;
                for (std::uint64_t i = 0; i < per_producer; ++i) {
                    const auto t0 = std::chrono::steady_clock::now();
                    const auto r = rt.bus().publish(numbered{i, static_cast<std::uint64_t>(p), pad});
                    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
                    slowest = std::max<std::int64_t>(slowest, us);
                    deliveries.fetch_add(r.deliveries, std::memory_order_relaxed);
                    rejected.fetch_add(r.rejected, std::memory_order_relaxed);
                }
                for (auto s = slowest_publish_us.load(); slowest > s && !slowest_publish_us.compare_exchange_weak(s, slowest);) {
                }
            });
        }
        for (auto& t : threads) t.join();
    }
    const std::uint64_t published = per_producer * producers;
    auto metrics_of = [&](const std::string& name) {
        for (auto& m : rt.bus().metrics())
            if (m.name == name) return m;
        return courier::subscription_metrics{};
    };
    REQUIRE(wait_until(
        [&] {
            for (const auto& s : specs) {
                auto m = metrics_of(s.name);
                if (m.delivered + m.dead_lettered != published) return false;
            }
            return true;
        },
        90s));
    rss.stop();

    CHECK(deliveries.load() + rejected.load() == published * 3);
    std::uint64_t dropped = 0, delivered = 0;
    for (const auto& s : specs) {
        const auto m = metrics_of(s.name);
        INFO(s.name << ": delivered " << m.delivered << ", dropped " << m.dropped);
        CHECK(m.failed == 0);
        CHECK(m.dropped == m.dead_lettered);  // every loss is an overflow, dead-lettered
        // Without sanitizers the flood overflows every queue; under TSan the producers are slow
        // enough that a keyed subscription's four lanes may keep up (the totals still hold).
        if (check_rss) CHECK(m.dropped > 0);
        CHECK(m.delivered > 0);
        dropped += m.dropped;
        delivered += m.delivered;
    }
    CHECK(dropped > 0);  // the flood really overflowed
    // refused publishes (drop_newest, fail) are exactly the rejections the publisher saw
    CHECK(metrics_of("overload.drop_newest").dropped + metrics_of("overload.fail").dropped == rejected.load());
    CHECK(delivered == handled.load());
    auto& dl = rt.bus().dead_letters();
    CHECK(dl.total() == dropped);                        // every overflow reached the store...
    CHECK(dl.size() + dl.evicted() == dl.total());       // ...and is kept or counted as evicted
    CHECK(dl.size() <= 2000);
    for (auto& d : dl.list()) CHECK(d.reason == courier::dead_letter_reason::overflow);
    // Without the bounds the backlog would be published x 3 x ~1 KiB.
    const auto grew = rss.peak() > rss.baseline() ? rss.peak() - rss.baseline() : 0;
    WARN("bus overload: " << published << " publishes of 1 KiB to 3 bounded subscriptions, " << delivered
                          << " delivered, " << dropped << " dropped by policy (counted), peak RSS +" << grew / mib
                          << " MiB over " << rss.baseline() / mib << " MiB (unbounded would hold ~"
                          << published * 3 * 1024 / mib << " MiB), slowest publish " << slowest_publish_us.load() << " us");
    if (check_rss) CHECK(grew < 96 * mib);
    // drop and fail policies never wait for room
    CHECK(slowest_publish_us.load() < 2'000'000);
}

TEST_CASE("a blocking subscription makes producers wait at most block_timeout, then counts the overflow",
          "[reliability][overload]") {
    reliability::watchdog dog("blocking overload", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::subscription_options o;
    o.name = "overload.block";
    o.mode = courier::delivery_mode::serial;
    o.overflow = courier::overflow_policy::block;
    o.capacity = 64;
    o.block_timeout = 2ms;
    std::atomic<std::uint64_t> handled{0};
    auto sub = rt.bus().subscribe<numbered>(
        [&](const numbered&) {
            handled.fetch_add(1, std::memory_order_relaxed);
            busy_for(20us);
        },
        o);
    const std::uint64_t per_producer = 6000 / static_cast<std::uint64_t>(reliability::scale);
    std::atomic<std::uint64_t> accepted{0}, rejected{0};
    std::atomic<std::int64_t> slowest_us{0};
    std::vector<std::thread> threads;
    for (int p = 0; p < 2; ++p) {
        threads.emplace_back([&, p] {
            std::int64_t slowest = 0;
            for (std::uint64_t i = 0; i < per_producer; ++i) {
                const auto t0 = std::chrono::steady_clock::now();
                const auto r = rt.bus().publish(numbered{i, static_cast<std::uint64_t>(p), {}});
                slowest = std::max<std::int64_t>(
                    slowest, std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
                accepted.fetch_add(r.deliveries);
                rejected.fetch_add(r.rejected);
            }
            for (auto s = slowest_us.load(); slowest > s && !slowest_us.compare_exchange_weak(s, slowest);) {
            }
        });
    }
    for (auto& t : threads) t.join();
    const std::uint64_t published = per_producer * 2;
    // Counters are added once per drained batch: wait for them, not only for the handlers.
    courier::subscription_metrics m;
    REQUIRE(wait_until(
        [&] {
            for (auto& x : rt.bus().metrics())
                if (x.name == "overload.block") m = x;
            return handled.load() == accepted.load() && m.delivered == accepted.load();
        },
        60s));
    INFO("accepted " << accepted.load() << ", rejected " << rejected.load() << ", slowest publish " << slowest_us.load() << " us");
    CHECK(accepted.load() + rejected.load() == published);
    CHECK(m.delivered == accepted.load());
    CHECK(m.dropped == rejected.load());
    CHECK(m.dead_lettered == rejected.load());
    CHECK(rt.bus().dead_letters().total() == rejected.load());
    CHECK(accepted.load() > 0);
    // A blocked publish waits for room up to block_timeout (2 ms), never forever; the bound
    // here leaves room for a descheduled thread on a loaded 2-core machine.
    CHECK(slowest_us.load() < 1'000'000);
}

namespace {

struct tally {
    std::uint64_t n = 0;
    void handle(const numbered&) {
        ++n;
        busy_for(10us);
    }
};

}  // namespace

TEST_CASE("a bounded actor mailbox under a flood keeps memory bounded and counts every refused message",
          "[reliability][overload]") {
    reliability::watchdog dog("actor overload", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::actor_system actors(rt);
    std::atomic<std::uint64_t> undelivered_seen{0};
    auto a = actors.spawn<tally>(courier::actor_options{
        .name = "overload.actor",
        .capacity = 256,
        .overflow = courier::overflow_policy::drop_newest,
        .on_undelivered = [&](courier::unprocessed_message&&) { undelivered_seen.fetch_add(1); }});
    const std::uint64_t per_producer = 100000 / static_cast<std::uint64_t>(reliability::scale);
    reliability::rss_sampler rss;
    std::vector<std::thread> threads;
    for (int p = 0; p < 3; ++p) {
        threads.emplace_back([&, p] {
            const std::string pad(1024, 'x');
            for (std::uint64_t i = 0; i < per_producer; ++i) a.tell(numbered{i, static_cast<std::uint64_t>(p), pad});
        });
    }
    for (auto& t : threads) t.join();
    const std::uint64_t sent = per_producer * 3;
    REQUIRE(wait_until([&] {
        const auto s = a.stats();
        return s.processed + undelivered_seen.load() == sent;
    }, 60s));
    rss.stop();
    const auto s = a.stats();
    CHECK(s.failures == 0);
    CHECK(s.processed > 0);
    CHECK(undelivered_seen.load() > 0);
    CHECK(s.processed + undelivered_seen.load() == sent);
    const auto grew = rss.peak() > rss.baseline() ? rss.peak() - rss.baseline() : 0;
    WARN("actor overload: " << sent << " tells of 1 KiB to a 256-message mailbox, " << s.processed << " processed, "
                            << undelivered_seen.load() << " refused (handed to on_undelivered), peak RSS +" << grew / mib
                            << " MiB");
    if (check_rss) CHECK(grew < 64 * mib);
}

TEST_CASE("an rpc responder flooded by faster requesters refuses the overflow at once and answers every accepted request",
          "[reliability][overload][rpc]") {
    reliability::watchdog dog("rpc overload", 120s);
    courier::runtime_options ro;
    ro.threads = 2;
    ro.bus.dead_letter_capacity = 2000;  // refused requests are dead-lettered: bounded too
    courier::runtime rt(ro);
    courier::rpc rpc(rt.bus());
    // One handler call at a time, far slower than three requesters, with a 256-request queue and
    // the default overflow (fail): a full queue refuses at once with [courier.rpc.overloaded].
    // The first call waits until a refusal was seen, so the queue overflows however fast the
    // responder would be (under a sanitizer the requesters are slowed down too).
    std::atomic<std::uint64_t> handled{0};
    std::mutex gate_mutex;
    std::condition_variable gate_cv;
    bool gate_open = false;
    auto responder = rpc.respond<quote_request>(
        [&](const quote_request& q) {
            if (handled.fetch_add(1, std::memory_order_relaxed) == 0) {
                std::unique_lock lock(gate_mutex);
                gate_cv.wait_for(lock, 60s, [&] { return gate_open; });
            }
            busy_for(50us);
            return quote{q.n, q.producer};
        },
        courier::responder_options{.name = "overload.rpc", .concurrency = 1, .capacity = 256});

    const std::uint64_t per_requester = 20000 / static_cast<std::uint64_t>(reliability::scale);
    const int requesters = 3;
    const std::uint64_t sent = per_requester * requesters;
    std::atomic<std::uint64_t> answered{0}, overloaded{0}, timed_out{0}, other{0}, mismatched{0};
    std::atomic<std::int64_t> slowest_request_us{0};
    reliability::rss_sampler rss;
    {
        std::vector<std::thread> threads;
        for (int p = 0; p < requesters; ++p) {
            threads.emplace_back([&, p] {
                const std::string pad(4096, static_cast<char>('a' + p));
                std::int64_t slowest = 0;
                for (std::uint64_t i = 0; i < per_requester; ++i) {
                    const auto t0 = std::chrono::steady_clock::now();
                    rpc.request(quote_request{i, static_cast<std::uint64_t>(p), 0, pad}, 10s,
                                [&, i, p](courier::result<quote> r) {
                                    if (r) {
                                        if (r->n != i || r->producer != static_cast<std::uint64_t>(p)) mismatched.fetch_add(1);
                                        answered.fetch_add(1, std::memory_order_relaxed);
                                    } else if (r.error() == courier::errc::full &&
                                               r.error().message.find("[courier.rpc.overloaded]") != std::string::npos) {
                                        overloaded.fetch_add(1, std::memory_order_relaxed);
                                    } else if (r.error() == courier::errc::timeout) {
                                        timed_out.fetch_add(1, std::memory_order_relaxed);
                                    } else {
                                        other.fetch_add(1, std::memory_order_relaxed);
                                    }
                                });
                    slowest = std::max(slowest, micros_since(t0));
                }
                note_max(slowest_request_us, slowest);
            });
        }
        REQUIRE(wait_until([&] { return overloaded.load() > 0; }, 60s));
        {
            std::lock_guard lock(gate_mutex);
            gate_open = true;
        }
        gate_cv.notify_all();
        for (auto& t : threads) t.join();
    }
    // Every request completes exactly once; then the responder's queue is empty (a request that
    // timed out while queued is still served, and its reply counted as late).
    REQUIRE(wait_until([&] { return answered + overloaded + timed_out + other == sent; }, 90s));
    REQUIRE(wait_until([&] {
        const auto m = responder.metrics();
        return m.delivered + m.dead_lettered == sent && rpc.metrics().served == m.delivered;
    }, 60s));
    rss.stop();

    const auto m = rpc.metrics();
    const auto sub = responder.metrics();
    INFO("requests " << sent << ": answered " << answered.load() << ", overloaded " << overloaded.load()
                     << ", timed out " << timed_out.load() << ", other " << other.load());
    CHECK(other.load() == 0);
    CHECK(mismatched.load() == 0);
    CHECK(m.requests == sent);
    CHECK(m.overloaded == overloaded.load());           // every refusal counted...
    CHECK(sub.dropped == overloaded.load());            // ...by the responder's queue too...
    CHECK(sub.dead_lettered == overloaded.load());      // ...and dead-lettered
    CHECK(answered + timed_out == sent - overloaded);   // every accepted request answered or timed out
    CHECK(m.replies == answered.load());
    CHECK(m.timeouts == timed_out.load());
    CHECK(m.served == handled.load());
    CHECK(m.served == m.replies + m.late_replies);      // a reply after the timeout is counted, not lost
    CHECK(m.served_failed == 0);
    CHECK(m.no_responders == 0);
    CHECK(m.pending == 0);
    CHECK(sub.delivered == handled.load());
    auto& dl = rt.bus().dead_letters();
    CHECK(dl.total() == overloaded.load());
    CHECK(dl.size() + dl.evicted() == dl.total());
    for (auto& d : dl.list()) CHECK(d.reason == courier::dead_letter_reason::overflow);
    CHECK(overloaded.load() > 0);  // the flood really overflowed the queue
    CHECK(answered.load() > 0);
    const auto grew = rss.peak() > rss.baseline() ? rss.peak() - rss.baseline() : 0;
    WARN("rpc overload: " << sent << " requests of 4 KiB to a 256-request responder queue, " << answered.load()
                          << " answered, " << timed_out.load() << " timed out, " << overloaded.load()
                          << " refused at once (counted, dead-lettered), " << m.late_replies << " late replies; peak RSS +"
                          << grew / mib << " MiB (unbounded would queue ~" << sent * 4096 / mib
                          << " MiB), slowest request() " << slowest_request_us.load() << " us");
    if (check_rss) CHECK(grew < 64 * mib);
    // `request` never waits for room under the default overflow (fail).
    CHECK(slowest_request_us.load() < 2'000'000);
}

TEST_CASE("a consumer group far behind its appenders under retention counts every record trimmed before it was read or acked",
          "[reliability][overload][stream]") {
    reliability::watchdog dog("stream overload", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    constexpr std::uint32_t partitions = 4;
    // 128 records of 1 KiB per partition: retention trims long before the slow group reads.
    courier::stream log(rt.bus(), "overload.log",
                        {.partitions = partitions, .retention = {.max_records = 128}, .segment_records = 32});
    auto group = log.group("overload.readers");
    auto member = group.join("slow-reader");
    const std::string pad(1024, 'r');

    // A batch the group read and then held until retention trimmed all of it: acking it finds
    // nothing pending, and the records are counted as lost to retention, never silently gone.
    for (std::uint32_t i = 0; i < 32; ++i) REQUIRE(log.append_to(0, "", pad));
    auto held = member.read(32).value();
    REQUIRE(held.size() == 32);
    const auto held_last = held[held.size() - 1].offset();

    const std::uint64_t per_appender = 100000 / static_cast<std::uint64_t>(reliability::scale);
    const int appenders = 3;
    std::atomic<std::uint64_t> appended{32}, refused{0};
    std::atomic<int> appenders_done{0};
    std::atomic<std::int64_t> slowest_append_us{0};
    std::uint64_t acked = 0, read = held.size(), batches = 0;
    reliability::rss_sampler rss;
    {
        std::vector<std::thread> threads;
        for (int p = 0; p < appenders; ++p) {
            threads.emplace_back([&, p] {
                std::int64_t slowest = 0;
                for (std::uint64_t i = 0; i < per_appender; ++i) {
                    const auto t0 = std::chrono::steady_clock::now();
                    const auto r = log.append_to(static_cast<std::uint32_t>((i + static_cast<std::uint64_t>(p)) % partitions),
                                                 "k" + std::to_string(i % 64), pad);
                    slowest = std::max(slowest, micros_since(t0));
                    (r ? appended : refused).fetch_add(1, std::memory_order_relaxed);
                }
                note_max(slowest_append_us, slowest);
                appenders_done.fetch_add(1);
            });
        }
        // The reader: far slower than the appenders (5 us per record), acks each batch after it.
        // Retention passes the held batch and the group's next offset in partition 0 (so the group
        // skips at least 64 records there, counted).
        REQUIRE(wait_until([&] { return log.info(0).start_offset > held_last + 64; }, 60s));
        // The first group call after the trim drops them from the pending list, counted.
        CHECK(group.metrics().lost_to_retention == held.size());
        CHECK(member.ack(held) == 0);
        courier::group_batch b;
        for (;;) {
            const bool done = appenders_done.load() == appenders;  // read before the last read
            auto n = member.read(b, 64);
            REQUIRE(n);
            if (*n == 0) {
                if (done) break;
                std::this_thread::yield();
                continue;
            }
            ++batches;
            read += *n;
            for (std::size_t k = 0; k < b.size(); ++k) busy_for(5us);
            acked += member.ack(b);
        }
        for (auto& t : threads) t.join();
    }
    rss.stop();

    const auto gm = group.metrics();
    const auto sm = log.metrics();
    INFO("appended " << appended.load() << ", read " << read << " in " << batches << " batches, acked " << acked
                     << ", skipped by retention " << gm.skipped_by_retention << ", lost to retention "
                     << gm.lost_to_retention);
    CHECK(refused.load() == 0);
    CHECK(appended.load() == per_appender * appenders + 32);
    CHECK(sm.appended == appended.load());
    CHECK(sm.trimmed == sm.appended - sm.records);  // retention is the only thing that removed records
    CHECK(sm.records <= partitions * 128);
    CHECK(gm.delivered == read);
    CHECK(gm.acked == acked);
    CHECK(gm.pending == 0);
    CHECK(gm.claimed == 0);
    // Every record: acked, or trimmed before the group delivered it, or trimmed while pending.
    CHECK(gm.delivered == gm.acked + gm.lost_to_retention);
    CHECK(appended.load() == gm.acked + gm.skipped_by_retention + gm.lost_to_retention);
    CHECK(gm.lost_to_retention >= 32);  // the held batch
    CHECK(gm.skipped_by_retention >= 64);  // the group fell behind retention
    for (std::uint32_t p = 0; p < partitions; ++p) CHECK(group.committed(p) == log.info(p).end_offset);
    const auto grew = rss.peak() > rss.baseline() ? rss.peak() - rss.baseline() : 0;
    WARN("stream overload: " << appended.load() << " appends of 1 KiB, retention 128 per partition; the group acked "
                             << gm.acked << ", " << gm.skipped_by_retention << " trimmed before it read them, "
                             << gm.lost_to_retention << " trimmed while pending (all counted); peak RSS +" << grew / mib
                             << " MiB (unbounded would hold ~" << appended.load() * 1024 / mib
                             << " MiB), slowest append " << slowest_append_us.load() << " us");
    if (check_rss) CHECK(grew < 64 * mib);
    CHECK(slowest_append_us.load() < 2'000'000);  // appends never wait for readers
}

TEST_CASE("a bridge outbox flooded while the broker cannot keep up stays bounded and dead-letters every drop",
          "[reliability][overload][bridge]") {
    namespace br = courier::bridge;
    courier::overflow_policy policy{};
    SECTION("drop_oldest") { policy = courier::overflow_policy::drop_oldest; }
    SECTION("fail") { policy = courier::overflow_policy::fail; }
    reliability::watchdog dog("bridge overload", 120s);
    courier::runtime_options ro;
    ro.threads = 2;
    ro.bus.dead_letter_capacity = 2000;
    courier::runtime rt(ro);
    auto broker = br::loopback_broker::create();
    // First unreachable, then up but slow (200 us per publish): the broker side never keeps up.
    broker->set_down(true);
    br::bridge_options bo;
    bo.name = "overload";
    bo.outbox_capacity = 256;
    bo.outbox_overflow = policy;
    bo.max_in_flight = 64;
    bo.poll_interval = 5ms;
    bo.reconnect = courier::retry_policy::exponential(1ms, 2.0, 10ms, 0);
    auto bridge = std::make_unique<br::broker_bridge>(
        rt.bus(), std::make_unique<reliability::slow_transport>(broker->make_transport(), 200us), bo);
    REQUIRE(bridge->forward("reliability.#", {.topic = "overload.out"}));

    // Fewer messages than the other floods: each forward encodes its envelope and each drop
    // decodes it for the dead letter, which is most of the test's time in a -O0 build.
    const std::uint64_t per_producer = 8000 / static_cast<std::uint64_t>(reliability::scale);
    const int producers = 2;
    const std::uint64_t sent = per_producer * producers;
    std::atomic<std::uint64_t> forwarded{0}, published{0};
    std::atomic<std::int64_t> slowest_publish_us{0};
    reliability::rss_sampler rss;
    {
        std::vector<std::thread> threads;
        for (int p = 0; p < producers; ++p) {
            threads.emplace_back([&, p] {
                const std::string pad(512, static_cast<char>('a' + p));
                std::int64_t slowest = 0;
                for (std::uint64_t i = 0; i < per_producer; ++i) {
                    const auto t0 = std::chrono::steady_clock::now();
                    const auto r = rt.bus().publish(numbered{i, static_cast<std::uint64_t>(p), pad});
                    slowest = std::max(slowest, micros_since(t0));
                    forwarded.fetch_add(r.deliveries, std::memory_order_relaxed);  // the forward route (inline)
                    published.fetch_add(1, std::memory_order_relaxed);
                }
                note_max(slowest_publish_us, slowest);
            });
        }
        // Half-way through, the broker comes back (slow).
        REQUIRE(wait_until([&] { return published.load() >= sent / 2; }, 60s));
        broker->set_down(false);
        for (auto& t : threads) t.join();
    }
    // Everything the outbox kept is confirmed eventually.
    REQUIRE(bridge->flush(60s));
    rss.stop();
    const auto s = bridge->stats();
    const auto stored = broker->read_all("overload.out");
    std::set<std::string> ids;
    for (auto& e : stored) ids.insert(e.message.event_id);
    INFO("sent " << sent << ", forwarded " << forwarded.load() << ", confirmed " << s.confirmed << ", dropped "
                 << s.dropped << ", reconnects " << s.reconnects);
    CHECK(forwarded.load() == sent);  // the forward route took every publish
    CHECK(s.confirmed + s.dropped == sent);  // confirmed by the broker, or dropped by the outbox bound
    CHECK(s.dead_lettered == s.dropped);     // every drop dead-lettered
    CHECK(s.publish_errors == 0);
    CHECK(s.outbox_depth == 0);
    CHECK(stored.size() == s.confirmed);  // the broker went down only before the first connect: no resend
    CHECK(ids.size() == stored.size());
    if (policy == courier::overflow_policy::drop_oldest) CHECK(s.forwarded == sent);  // evicted after entering
    else CHECK(s.forwarded == s.confirmed);                                              // refused at the door
    auto& dl = rt.bus().dead_letters();
    CHECK(dl.total() == s.dropped);
    CHECK(dl.size() + dl.evicted() == dl.total());
    for (auto& d : dl.list()) {
        CHECK(d.reason == courier::dead_letter_reason::overflow);
        REQUIRE(!d.errors.empty());
        CHECK(d.errors.front().error.find("[courier.bridge.outbox_full]") != std::string::npos);
    }
    CHECK(s.dropped > 0);
    const auto grew = rss.peak() > rss.baseline() ? rss.peak() - rss.baseline() : 0;
    WARN("bridge overload (" << courier::to_string(policy) << "): " << sent << " forwards of 0.5 KiB to a 256-message outbox, "
                             << s.confirmed << " confirmed by the slow broker, " << s.dropped
                             << " dropped by the bound (counted, dead-lettered); peak RSS +" << grew / mib
                             << " MiB, slowest publish " << slowest_publish_us.load() << " us");
    if (check_rss) CHECK(grew < 64 * mib);
    CHECK(slowest_publish_us.load() < 2'000'000);  // drop and fail policies never wait for room
    bridge.reset();  // before the runtime
}
