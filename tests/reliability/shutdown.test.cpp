// Shutdown in the middle of heavy traffic: producers keep publishing (enqueueing, telling,
// requesting, forwarding) while the bus, the job system, the actor system, an rpc endpoint's bus,
// a stream's capture and consumer group, or a broker bridge shuts down. Every message that was
// accepted is either delivered (handled, answered, acked, confirmed) or handed back (dead-lettered
// with reason `shutdown`, counted in the report, returned to the caller, answered with a
// `closed` error), counted exactly; nothing is handled twice; and a watchdog fails the test if
// shutdown deadlocks.
#include "support.hpp"

#include <courier/actor/actor.hpp>
#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/loopback.hpp>
#include <courier/bus/event_bus.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/jobs/job_system.hpp>
#include <courier/rpc/rpc.hpp>
#include <courier/runtime/runtime.hpp>
#include <courier/stream/stream.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using reliability::numbered;
using reliability::busy_for;
using reliability::quote;
using reliability::quote_request;
using reliability::wait_until;

TEST_CASE("bus shutdown under heavy traffic delivers or hands back every accepted message, exactly",
          "[reliability][shutdown]") {
    std::chrono::milliseconds timeout{};
    SECTION("a short timeout hands most of the backlog back") { timeout = 5ms; }
    SECTION("a long timeout drains everything") { timeout = 30s; }
    reliability::watchdog dog("bus shutdown under traffic", 120s);

    courier::runtime rt(courier::runtime_options{.threads = 2});
    struct counted {
        std::atomic<std::uint64_t> calls{0};
    };
    counted pooled, serial, keyed, inlined;
    auto slow = [](counted& c) {
        return [&c](const numbered&) {
            c.calls.fetch_add(1, std::memory_order_relaxed);
            busy_for(2us);
        };
    };
    courier::subscription_options po;
    po.mode = courier::delivery_mode::pooled;
    courier::subscription_options so;
    so.mode = courier::delivery_mode::serial;
    courier::subscription_options ko;
    ko.mode = courier::delivery_mode::keyed;
    ko.lanes = 4;
    ko.key = courier::key_by<numbered>([](const numbered& e) { return e.n; });
    courier::subscription_options io;
    io.mode = courier::delivery_mode::inline_call;
    // Unbounded queues (on purpose), so that no publish is refused: every accepted message must
    // be counted by the drain or by the hand-back, not by an overflow policy.
    po.capacity = so.capacity = ko.capacity = 0;
    auto s1 = rt.bus().subscribe<numbered>(slow(pooled), po);
    auto s2 = rt.bus().subscribe<numbered>(slow(serial), so);
    auto s3 = rt.bus().subscribe<numbered>(slow(keyed), ko);
    auto s4 = rt.bus().subscribe<numbered>(
        [&](const numbered&) { inlined.calls.fetch_add(1, std::memory_order_relaxed); }, io);

    reliability::publish_tally tally;
    auto &accepted = tally.accepted, &rejected = tally.rejected, &published = tally.published;
    reliability::starting_line producers;
    producers.add(3, [&](int p) { reliability::publish_until_closed(rt.bus(), p, tally); });
    producers.go();
    // Heavy traffic: wait until a backlog has built up (the handlers are far slower than the
    // producers), then shut down while the producers are still publishing.
    REQUIRE(wait_until([&] { return published.load() > 60000 / static_cast<unsigned>(reliability::scale); }, 60s));
    const auto report = rt.bus().shutdown(timeout);
    producers.join();
    rt.stop();  // joins the workers: no handler runs after this

    const std::uint64_t handled =
        pooled.calls.load() + serial.calls.load() + keyed.calls.load() + inlined.calls.load();
    INFO("published " << published.load() << ", accepted " << accepted.load() << ", handled " << handled
                      << ", handed back " << report.handed_back);
    // Each publish reached all four subscriptions: accepted, or (a publish racing the close)
    // refused and dead-lettered, which the publisher sees in `rejected`.
    CHECK(accepted.load() + rejected.load() == published.load() * 4);
    CHECK(rejected.load() < 100);
    CHECK(inlined.calls.load() == published.load());
    // Nothing lost: every accepted message was handled or handed back, and only shutdown put
    // anything in the dead-letter store (a publish racing the close is refused as a whole, or
    // waited for by shutdown, so it is counted in the report too).
    auto& dl = rt.bus().dead_letters();
    CHECK(handled + dl.total() == accepted.load() + rejected.load());
    CHECK(dl.evicted() == 0);
    std::map<std::string, std::uint64_t> reasons;
    for (auto& d : dl.list()) ++reasons[std::string(courier::to_string(d.reason))];
    for (auto& [reason, count] : reasons) {
        INFO("dead letters with reason " << reason << ": " << count);
        CHECK(reason == "shutdown");
    }
    CHECK(report.handed_back == dl.total());
    CHECK(handled + report.handed_back == accepted.load() + rejected.load());
    for (auto& mt : rt.bus().metrics()) CHECK(mt.failed == 0);
    if (timeout == 30s) {
        CHECK(report.handed_back == 0);
        CHECK_FALSE(report.timed_out);
    } else {
        CHECK(report.timed_out == (report.handed_back > 0));
    }
    // After shutdown a publish is refused as a whole and says so.
    const auto late = rt.bus().publish(numbered{0, 99, {}});
    CHECK(late.closed);
    CHECK(late.deliveries == 0);
}

TEST_CASE("job system shutdown under heavy traffic runs or hands back every accepted job, exactly",
          "[reliability][shutdown]") {
    reliability::watchdog dog("job shutdown under traffic", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::job_system jobs(rt, {.concurrency = 2, .publish_events = false});
    auto q = jobs.queue("traffic");
    std::atomic<std::uint64_t> ran{0};
    q.handle<numbered>([&](const numbered&) {
        ran.fetch_add(1, std::memory_order_relaxed);
        busy_for(5us);
    });
    std::atomic<std::uint64_t> accepted{0}, refused{0};
    std::mutex hm;
    std::vector<courier::job_handle> handles;
    reliability::starting_line producers;
    producers.add(2, [&](int p) {
        std::vector<courier::job_handle> mine;
        for (std::uint64_t i = 0;; ++i) {
            auto h = q.enqueue(numbered{i, static_cast<std::uint64_t>(p), {}});
            if (!h) {
                if (h.error() == courier::errc::closed) break;
                refused.fetch_add(1);
                continue;
            }
            accepted.fetch_add(1, std::memory_order_relaxed);
            mine.push_back(*h);
        }
        std::lock_guard lock(hm);
        handles.insert(handles.end(), mine.begin(), mine.end());
    });
    producers.go();
    REQUIRE(wait_until([&] { return accepted.load() > 40000 / static_cast<unsigned>(reliability::scale); }, 60s));
    const auto report = jobs.shutdown(5ms);
    producers.join();
    // Handlers still running at the deadline finish on their own; wait for their terminal state.
    for (auto& h : report.still_running) {
        auto f = h.async_wait(boost::asio::use_future);
        REQUIRE(f.wait_for(30s) == std::future_status::ready);
    }
    rt.stop();
    CHECK(refused.load() == 0);
    REQUIRE(handles.size() == accepted.load());
    std::uint64_t completed = 0, cancelled = 0, other = 0;
    for (auto& h : handles) {
        const auto s = h.state();
        completed += s == courier::job_state::completed;
        cancelled += s == courier::job_state::cancelled;
        other += s != courier::job_state::completed && s != courier::job_state::cancelled;
    }
    INFO("accepted " << accepted.load() << ", ran " << ran.load() << ", cancelled " << cancelled);
    CHECK(other == 0);
    CHECK(completed + cancelled == accepted.load());
    CHECK(ran.load() == completed);  // each completed job ran exactly once
    CHECK(report.cancelled.size() == cancelled);
    for (auto& h : report.cancelled) {
        REQUIRE(h.payload<numbered>() != nullptr);  // the payload is handed back, readable
        CHECK(h.state() == courier::job_state::cancelled);
    }
}

// The report's count is exact: shutdown_report::handed_back equals the messages shutdown handed
// back, including those of publishes that raced the close (shutdown waits for them) and of
// drains that popped a message after the subscription went inactive.
TEST_CASE("bus shutdown_report counts every message shutdown handed back", "[reliability][shutdown]") {
    reliability::watchdog dog("bus shutdown report", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    std::atomic<std::uint64_t> handled{0};
    reliability::publish_tally tally;
    courier::subscription_options o;
    o.mode = courier::delivery_mode::pooled;
    o.capacity = 0;
    auto s = rt.bus().subscribe<numbered>(
        [&](const numbered&) {
            handled.fetch_add(1);
            busy_for(2us);
        },
        o);
    auto &accepted = tally.accepted, &published = tally.published;
    reliability::starting_line producers;
    producers.add(3, [&](int p) { reliability::publish_until_closed(rt.bus(), p, tally); });
    producers.go();
    REQUIRE(wait_until([&] { return published.load() > 60000 / static_cast<unsigned>(reliability::scale); }, 60s));
    const auto report = rt.bus().shutdown(5ms);
    producers.join();
    rt.stop();
    INFO("accepted " << accepted.load() << ", handled " << handled.load() << ", handed back " << report.handed_back
                     << ", dead letters " << rt.bus().dead_letters().total());
    CHECK(report.handed_back == rt.bus().dead_letters().total());
    CHECK(handled.load() + report.handed_back == accepted.load());
}

namespace {

/// An actor that takes a known time per message and counts tells and asks apart.
struct slow_sink {
    std::atomic<std::uint64_t>* tells;
    std::atomic<std::uint64_t>* asks;
    slow_sink(std::atomic<std::uint64_t>* t, std::atomic<std::uint64_t>* a) : tells(t), asks(a) {}
    void handle(const numbered&) {
        tells->fetch_add(1, std::memory_order_relaxed);
        busy_for(2us);
    }
    std::uint64_t handle(const quote_request& q) {
        asks->fetch_add(1, std::memory_order_relaxed);
        return q.n;
    }
};

}  // namespace

TEST_CASE("actor system shutdown under heavy traffic handles or hands back every message, exactly",
          "[reliability][shutdown][actor]") {
    std::chrono::milliseconds timeout{};
    SECTION("a short timeout hands most of the backlog back") { timeout = 5ms; }
    SECTION("a long timeout drains everything") { timeout = 30s; }
    reliability::watchdog dog("actor shutdown under traffic", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::actor_system actors(rt);
    constexpr int n_actors = 3;
    std::atomic<std::uint64_t> tells_handled{0}, asks_handled{0}, tells_undelivered{0}, other_undelivered{0};
    std::vector<courier::actor_ref<slow_sink>> refs;
    for (int a = 0; a < n_actors; ++a) {
        refs.push_back(actors.spawn<slow_sink>(
            courier::actor_options{.name = "shutdown.sink-" + std::to_string(a),
                                   .on_undelivered =
                                       [&](courier::unprocessed_message&& m) {
                                           // A refused ask was answered with an error instead.
                                           (m.is<numbered>() && !m.is_ask() ? tells_undelivered : other_undelivered)
                                               .fetch_add(1, std::memory_order_relaxed);
                                       }},
            &tells_handled, &asks_handled));
    }
    // Unbounded mailboxes (on purpose), so that nothing is refused by an overflow policy: every
    // tell is handled, refused because its actor stopped, or handed back in the report.
    std::atomic<std::uint64_t> tells_sent{0}, asks_sent{0}, asks_answered{0}, asks_stopped{0}, asks_other{0};
    std::atomic<bool> stop{false};
    reliability::starting_line senders;
    senders.add(3, [&](int p) {
        for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
            const auto& ref = refs[(i + static_cast<std::uint64_t>(p)) % n_actors];
            if (i % 64 == 0) {
                asks_sent.fetch_add(1, std::memory_order_relaxed);
                ref.ask(quote_request{i, static_cast<std::uint64_t>(p), 0, {}}, courier::duration::max(),
                        [&, i](courier::result<std::uint64_t> r) {
                            if (r && *r == i) asks_answered.fetch_add(1);
                            else if (!r && r.error() == courier::errc::closed &&
                                     r.error().message.find("[courier.actor.stopped]") != std::string::npos)
                                asks_stopped.fetch_add(1);
                            else
                                asks_other.fetch_add(1);
                        });
            } else {
                ref.tell(numbered{i, static_cast<std::uint64_t>(p), {}});
                tells_sent.fetch_add(1, std::memory_order_relaxed);
            }
        }
    });
    senders.go();
    // A backlog builds up (the actors are slower than the senders); shut down in the middle.
    REQUIRE(wait_until([&] { return tells_sent.load() > 60000 / static_cast<unsigned>(reliability::scale); }, 60s));
    auto report = actors.shutdown(timeout);
    // The senders keep telling the stopped actors for a moment: refused, every one counted.
    const auto after = tells_sent.load();
    REQUIRE(wait_until([&] { return tells_sent.load() > after + 1000; }, 60s));
    stop = true;
    senders.join();
    // Every ask completes exactly once, on the runtime's executor: wait before stopping it.
    REQUIRE(wait_until([&] { return asks_answered + asks_stopped + asks_other == asks_sent; }, 60s));
    rt.stop();

    std::uint64_t handed_back_tells = 0, handed_back_asks = 0;
    for (auto& m : report.unprocessed) {
        if (m.is_ask()) ++handed_back_asks;
        else if (m.is<numbered>()) ++handed_back_tells;
    }
    std::uint64_t processed = 0, failures = 0, undelivered = 0;
    for (auto& r : refs) {
        const auto st = r.stats();
        CHECK(st.stopped);
        processed += st.processed;
        failures += st.failures;
        undelivered += st.undelivered;
    }
    INFO("tells " << tells_sent.load() << ": handled " << tells_handled.load() << ", refused " << tells_undelivered.load()
                  << ", handed back " << handed_back_tells << "; asks " << asks_sent.load() << ": answered "
                  << asks_answered.load() << ", stopped " << asks_stopped.load());
    CHECK(report.unprocessed.size() == handed_back_tells + handed_back_asks);
    CHECK(failures == 0);
    CHECK(other_undelivered.load() == 0);
    // Every tell: handled once, refused (the actor had stopped), or handed back in the report.
    CHECK(tells_sent.load() == tells_handled.load() + tells_undelivered.load() + handed_back_tells);
    CHECK(tells_undelivered.load() >= 1000);  // the tells after shutdown
    CHECK(undelivered == tells_undelivered.load());
    // Every ask: answered by its handler, or (refused or handed back) answered with [courier.actor.stopped].
    CHECK(asks_other.load() == 0);
    CHECK(asks_answered.load() == asks_handled.load());
    CHECK(asks_stopped.load() >= handed_back_asks);
    CHECK(processed == tells_handled.load() + asks_handled.load());
    if (timeout == 30s) {
        CHECK(report.unprocessed.empty());
        CHECK_FALSE(report.timed_out);
        CHECK(report.stopped == n_actors);
    } else {
        CHECK(report.timed_out == !report.unprocessed.empty());
    }
    CHECK(actors.size() == 0);
    WARN("actor shutdown (" << timeout.count() << " ms): " << tells_sent.load() << " tells, " << tells_handled.load()
                            << " handled, " << tells_undelivered.load() << " refused after the stop, " << handed_back_tells
                            << " handed back; " << asks_sent.load() << " asks, " << asks_answered.load() << " answered, "
                            << asks_stopped.load() << " ended [courier.actor.stopped]");
    CHECK_THROWS_WITH(actors.spawn<slow_sink>(&tells_handled, &asks_handled),
                      Catch::Matchers::Contains("[courier.actor.system_closed]"));
}

TEST_CASE("rpc under heavy traffic when its bus shuts down: every request answered or ended closed, exactly",
          "[reliability][shutdown][rpc]") {
    std::chrono::milliseconds timeout{};
    SECTION("a short timeout hands most of the backlog back") { timeout = 5ms; }
    SECTION("a long timeout drains everything") { timeout = 30s; }
    reliability::watchdog dog("rpc shutdown under traffic", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::rpc rpc(rt.bus());
    std::atomic<std::uint64_t> handled{0};
    // An unbounded queue (on purpose): no request is refused by an overflow policy, so every one
    // is answered, or handed back by the bus and ended by the rpc's shutdown hook.
    auto responder = rpc.respond<quote_request>(
        [&](const quote_request& q) {
            handled.fetch_add(1, std::memory_order_relaxed);
            busy_for(2us);
            return quote{q.n, q.producer};
        },
        courier::responder_options{.name = "shutdown.rpc", .concurrency = 1, .capacity = 0});
    std::atomic<std::uint64_t> issued{0}, answered{0}, closed{0}, other{0};
    std::atomic<bool> stop{false};
    reliability::starting_line senders;
    senders.add(3, [&](int p) {
        for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
            issued.fetch_add(1, std::memory_order_relaxed);
            rpc.request(quote_request{i, static_cast<std::uint64_t>(p), 0, {}}, 60s, [&, i, p](courier::result<quote> r) {
                if (r && r->n == i && r->producer == static_cast<std::uint64_t>(p)) answered.fetch_add(1);
                else if (!r && r.error() == courier::errc::closed &&
                         r.error().message.find("[courier.rpc.closed]") != std::string::npos)
                    closed.fetch_add(1);
                else
                    other.fetch_add(1);
            });
        }
    });
    senders.go();
    REQUIRE(wait_until([&] { return issued.load() > 30000 / static_cast<unsigned>(reliability::scale); }, 60s));
    const auto report = rt.bus().shutdown(timeout);  // its hook closes the rpc: pending requests end
    const auto after = issued.load();
    REQUIRE(wait_until([&] { return issued.load() > after + 1000; }, 60s));  // refused at once now
    stop = true;
    senders.join();
    REQUIRE(wait_until([&] { return answered + closed + other == issued; }, 60s));
    rt.stop();  // joins the workers: every drain has added its counters
    const auto m = rpc.metrics();
    const auto sub = responder.metrics();

    INFO("requests " << issued.load() << ": answered " << answered.load() << ", closed " << closed.load()
                     << "; responder took " << sub.delivered + sub.dead_lettered << ", handed back " << report.handed_back
                     << ", late replies " << m.late_replies);
    CHECK(answered + closed + other == issued);  // still: nothing completed twice
    CHECK(other.load() == 0);
    CHECK(m.requests == issued.load());
    CHECK(m.pending == 0);
    CHECK(m.timeouts == 0);
    CHECK(m.overloaded == 0);
    CHECK(m.no_responders == 0);
    CHECK(m.replies == answered.load());
    CHECK(m.served == handled.load());
    CHECK(m.served == m.replies + m.late_replies);  // served after its request ended: late, counted
    CHECK(sub.delivered == handled.load());
    // Every request the responder's queue took was served or handed back by the shutdown.
    CHECK(sub.dead_lettered == report.handed_back);
    CHECK(sub.delivered + sub.dead_lettered <= issued.load());
    CHECK(issued.load() - (sub.delivered + sub.dead_lettered) >= 1000);  // the requests after shutdown, refused at once
    auto& dl = rt.bus().dead_letters();
    CHECK(dl.total() == report.handed_back);
    for (auto& d : dl.list()) CHECK(d.reason == courier::dead_letter_reason::shutdown);
    WARN("rpc shutdown (" << timeout.count() << " ms): " << issued.load() << " requests, " << answered.load()
                          << " answered, " << closed.load() << " ended [courier.rpc.closed] (" << report.handed_back
                          << " handed back by the bus, " << m.late_replies << " served too late)");
    if (timeout == 30s) {
        CHECK(report.handed_back == 0);
        CHECK(m.late_replies == 0);
        CHECK(answered.load() == sub.delivered);  // every accepted request answered
    }
}

TEST_CASE("a stream capture and consumer group under a bus shutdown and the stream's end ack or hand back every event",
          "[reliability][shutdown][stream]") {
    reliability::watchdog dog("stream shutdown under traffic", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    auto log = std::make_unique<courier::stream>(rt.bus(), "shutdown.log", courier::stream_options{.partitions = 2});
    // A queued capture (appends on the executor), so that the bus shutdown finds a backlog.
    REQUIRE(log->capture("reliability.#", {.name = "shutdown.capture", .mode = courier::delivery_mode::pooled}));
    auto group = log->group("shutdown.readers");

    // A member reading with async_read, acking each batch, until the stream ends.
    std::mutex am;
    std::set<std::pair<std::uint32_t, std::uint64_t>> acked;
    std::uint64_t duplicate_acks = 0, short_acks = 0;
    auto note_acked = [&](const courier::group_batch& b, std::size_t n) {
        std::lock_guard lock(am);
        short_acks += n != b.size();
        for (auto& d : b) duplicate_acks += !acked.emplace(d.partition, d.offset()).second;
    };
    auto reader = group.join("async-reader");
    std::atomic<int> reader_ended{0};
    std::optional<courier::error> reader_error;
    struct chain {
        courier::group_member* member;
        std::function<void(const courier::group_batch&, std::size_t)>* note;
        std::atomic<int>* ended;
        std::optional<courier::error>* error;
        void operator()(courier::result<courier::group_batch> b) const {
            if (!b) {
                *error = b.error();
                member->leave();  // its partitions go to the drainer below
                ended->fetch_add(1);
                return;
            }
            (*note)(*b, member->ack(*b));
            member->async_read(64, *this);
        }
    };
    std::function<void(const courier::group_batch&, std::size_t)> note_fn = note_acked;
    reader.async_read(64, chain{&reader, &note_fn, &reader_ended, &reader_error});

    reliability::publish_tally tally;
    auto &accepted = tally.accepted, &published = tally.published;
    reliability::starting_line producers;
    producers.add(2, [&](int p) { reliability::publish_until_closed(rt.bus(), p, tally); });
    producers.go();
    REQUIRE(wait_until([&] { return published.load() > 20000 / static_cast<unsigned>(reliability::scale); }, 60s));
    const auto report = rt.bus().shutdown(5ms);
    producers.join();
    const auto sm = log->metrics();
    log.reset();  // the stream ends: the pending async_read completes with errc::closed
    REQUIRE(wait_until([&] { return reader_ended.load() == 1; }, 30s));
    // The group outlives the stream: a drainer reads and acks what the async reader had not.
    {
        auto drainer = group.join("drainer");
        for (;;) {
            auto b = drainer.read(256).value();
            if (b.empty()) break;
            note_acked(b, drainer.ack(b));
        }
    }
    const auto gm = group.metrics();
    rt.stop();

    courier::subscription_metrics cap;
    for (auto& x : rt.bus().metrics())
        if (x.name == "shutdown.capture") cap = x;
    std::lock_guard lock(am);
    INFO("published " << published.load() << ", accepted " << accepted.load() << ", captured " << sm.captured
                      << ", handed back " << report.handed_back << ", acked " << acked.size());
    REQUIRE(reader_error);
    CHECK(reader_error->code == courier::errc::closed);
    CHECK(accepted.load() == published.load());  // the capture is the only subscription
    CHECK(sm.captured == sm.appended);
    CHECK(cap.delivered == sm.captured);
    CHECK(cap.dead_lettered == report.handed_back);
    CHECK(accepted.load() == sm.captured + report.handed_back);  // appended, or handed back
    CHECK(rt.bus().dead_letters().total() == report.handed_back);
    for (auto& d : rt.bus().dead_letters().list()) CHECK(d.reason == courier::dead_letter_reason::shutdown);
    CHECK(acked.size() == sm.appended);  // every record acked...
    CHECK(duplicate_acks == 0);          // ...exactly once
    CHECK(short_acks == 0);
    CHECK(gm.acked == sm.appended);
    CHECK(gm.delivered == sm.appended);
    CHECK(gm.pending == 0);
    WARN("stream shutdown, " << accepted.load() << " events taken by the capture; " << sm.captured
                             << " appended and acked by the group, " << report.handed_back
                             << " handed back by the bus shutdown");
}

TEST_CASE("a loopback bridge stopped under heavy traffic confirms or hands back every forwarded event, exactly",
          "[reliability][shutdown][bridge]") {
    namespace br = courier::bridge;
    reliability::watchdog dog("bridge shutdown under traffic", 120s);
    courier::runtime_options ro;
    ro.threads = 2;
    ro.bus.dead_letter_capacity = 0;  // unbounded here: every hand-back is checked by its event
    courier::runtime rt(ro);
    auto broker = br::loopback_broker::create();
    br::bridge_options bo;
    bo.name = "shutdown";
    bo.outbox_capacity = 4096;
    bo.outbox_overflow = courier::overflow_policy::fail;
    bo.max_in_flight = 64;
    bo.poll_interval = 5ms;
    // A broker slower than the producers (50 us per publish).
    auto bridge = std::make_unique<br::broker_bridge>(
        rt.bus(), std::make_unique<reliability::slow_transport>(broker->make_transport(), 50us), bo);
    REQUIRE(bridge->forward("reliability.#", {.topic = "shutdown.out"}));
    REQUIRE(bridge->wait_until_ready(30s));

    constexpr int producers = 2;
    std::vector<std::vector<std::uint64_t>> forwarded(producers);  // the numbers the forward route took
    std::atomic<std::uint64_t> published{0};
    std::atomic<bool> stop{false};
    reliability::starting_line senders;
    senders.add(producers, [&](int p) {
        for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
            const auto r = rt.bus().publish(numbered{i, static_cast<std::uint64_t>(p), {}});
            if (r.deliveries == 1) forwarded[static_cast<std::size_t>(p)].push_back(i);
            published.fetch_add(1, std::memory_order_relaxed);
        }
    });
    senders.go();
    REQUIRE(wait_until([&] { return published.load() > 6000 / static_cast<unsigned>(reliability::scale); }, 60s));
    // The broker becomes unreachable (confirms not read yet are lost with the connection), so a
    // backlog builds up in the outbox however fast the broker was; then stop under traffic.
    broker->set_down(true);
    const auto down_at = published.load();
    REQUIRE(wait_until([&] { return published.load() > down_at + 500; }, 60s));
    bridge->stop(5ms);  // forwards end; the outbox and the unconfirmed in flight are handed back
    const auto after = published.load();
    REQUIRE(wait_until([&] { return published.load() > after + 1000; }, 60s));  // no route any more
    stop = true;
    senders.join();
    const auto s = bridge->stats();
    bridge.reset();
    (void)rt.bus().shutdown(1s);
    rt.stop();

    using key = std::pair<std::uint64_t, std::uint64_t>;  // producer, number
    std::set<key> expected;
    for (int p = 0; p < producers; ++p)
        for (auto i : forwarded[static_cast<std::size_t>(p)]) expected.emplace(static_cast<std::uint64_t>(p), i);
    auto key_of = [](const courier::envelope& e) {
        return key{e.data.at("producer").get<std::uint64_t>(), e.data.at("n").get<std::uint64_t>()};
    };
    std::set<key> on_broker, handed_back, overflowed;
    std::uint64_t broker_duplicates = 0, dl_duplicates = 0, other_reasons = 0;
    for (auto& e : broker->read_all("shutdown.out")) {
        auto env = courier::decode(e.message.payload);
        REQUIRE(env);
        broker_duplicates += !on_broker.insert(key_of(*env)).second;
    }
    for (auto& d : rt.bus().dead_letters().list()) {
        const auto k = key_of(d.message);
        if (d.reason == courier::dead_letter_reason::shutdown) dl_duplicates += !handed_back.insert(k).second;
        else if (d.reason == courier::dead_letter_reason::overflow) dl_duplicates += !overflowed.insert(k).second;
        else ++other_reasons;
    }
    std::set<key> sent_unconfirmed;  // on the broker and handed back: sent, stopped before the confirm
    for (auto& k : handed_back)
        if (on_broker.count(k)) sent_unconfirmed.insert(k);
    std::set<key> all = on_broker;
    all.insert(handed_back.begin(), handed_back.end());
    all.insert(overflowed.begin(), overflowed.end());
    INFO("forwarded " << expected.size() << ": confirmed " << s.confirmed << ", on the broker " << on_broker.size()
                      << ", handed back " << handed_back.size() << " (" << sent_unconfirmed.size()
                      << " of them sent, not confirmed), overflowed " << overflowed.size());
    CHECK(s.confirmed + s.dead_lettered == expected.size());  // confirmed, or dead-lettered, once each
    CHECK(s.dead_lettered == handed_back.size() + overflowed.size());
    CHECK(s.dropped == overflowed.size());
    CHECK(dl_duplicates == 0);
    CHECK(other_reasons == 0);
    CHECK(broker_duplicates == 0);  // no reconnect: nothing was sent twice
    CHECK(all == expected);         // nothing lost, nothing invented
    CHECK(on_broker.size() == s.confirmed + sent_unconfirmed.size());
    CHECK(sent_unconfirmed.size() <= bo.max_in_flight);
    for (auto& k : overflowed) CHECK(on_broker.count(k) == 0);
    CHECK(handed_back.size() + overflowed.size() >= 500);  // the backlog since the broker went down
    CHECK(handed_back.size() > 0);
    CHECK(s.outbox_depth == 0);
    WARN("bridge shutdown: " << expected.size() << " forwarded, " << s.confirmed << " confirmed, " << handed_back.size()
                             << " handed back (" << sent_unconfirmed.size() << " of them sent, not confirmed), "
                             << overflowed.size() << " refused by the outbox bound");
}
