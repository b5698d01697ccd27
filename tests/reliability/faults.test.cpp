// Fault injection: handlers that throw (std and non-std exceptions), job handlers that hang past
// their timeout, saga steps that hang past their timeout and compensations that throw, actors
// whose handlers throw (supervision restarts them, then stops one past its restart budget), rpc
// responders that throw or hang past the request's timeout, and a stream consumer-group member
// that crashes holding records it never acked. Every failure must be counted and recorded (dead
// letter, job error, saga history, actor failure event, rpc error and late reply, group claim)
// exactly as the docs say, and no worker thread may be lost: afterwards two runtime threads
// still run handlers at the same time (a rendezvous that needs two live threads).
#include "support.hpp"

#include <courier/actor/actor.hpp>
#include <courier/bus/event_bus.hpp>
#include <courier/jobs/job_system.hpp>
#include <courier/rpc/rpc.hpp>
#include <courier/runtime/runtime.hpp>
#include <courier/saga/saga.hpp>
#include <courier/stream/stream.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using reliability::numbered;
using reliability::quote;
using reliability::quote_request;
using reliability::wait_until;

namespace {

/// True when two handlers ran at the same time: two serial subscriptions get the same event and
/// each handler waits (bounded) for the other to be inside. Only possible when both threads of
/// the runtime are alive and free.
bool two_threads_rendezvous(courier::runtime& rt) {
    std::atomic<int> inside{0}, met{0};
    auto meet_other = [&](const numbered& e) {
        if (e.producer != 4242) return;  // only the rendezvous event
        inside.fetch_add(1);
        const auto limit = std::chrono::steady_clock::now() + 10s;
        while (inside.load() < 2 && std::chrono::steady_clock::now() < limit) std::this_thread::yield();
        if (inside.load() >= 2) met.fetch_add(1);
    };
    courier::subscription_options o;
    o.mode = courier::delivery_mode::serial;
    o.guarantee = courier::delivery_guarantee::at_most_once;
    auto a = rt.bus().subscribe<numbered>(meet_other, o);
    auto b = rt.bus().subscribe<numbered>(meet_other, o);
    rt.bus().publish(numbered{1, 4242, {}});
    return wait_until([&] { return met.load() == 2; }, 20s);
}

struct work {
    int kind = 0;  // 0 succeeds, 1 throws, 2 hangs until cancelled, 3 hangs ignoring the cancel for 150 ms
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(work, kind)
};

struct meet {
    int n = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(meet, n)
};

struct retry_fast {
    static courier::retry_policy policy(std::uint32_t attempts) {
        auto p = courier::retry_policy::fixed(1ms, attempts);
        p.jitter = 0;
        return p;
    }
};

}  // namespace

TEST_CASE("throwing bus handlers are retried, dead-lettered with every error, and no thread is lost",
          "[reliability][faults]") {
    reliability::watchdog dog("throwing bus handlers", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    const std::uint64_t n = 3000 / reliability::scale;
    // n % 3 == 0 throws std::runtime_error on every attempt, n % 3 == 1 throws an int (not an
    // std::exception) on its first attempt only, the rest succeed.
    std::mutex m;
    std::map<std::uint64_t, int> attempts_alo, attempts_amo;
    auto handler = [&m](std::map<std::uint64_t, int>& attempts) {
        return [&m, &attempts](const numbered& e) {
            int a;
            {
                std::lock_guard lock(m);
                a = ++attempts[e.n];
            }
            if (e.n % 3 == 0) throw std::runtime_error("boom " + std::to_string(e.n));
            if (e.n % 3 == 1 && a == 1) throw 42;
        };
    };
    courier::subscription_options alo;
    alo.name = "faults.alo";
    alo.mode = courier::delivery_mode::pooled;
    alo.retry = retry_fast::policy(3);
    courier::subscription_options amo;
    amo.name = "faults.amo";
    amo.mode = courier::delivery_mode::serial;
    amo.guarantee = courier::delivery_guarantee::at_most_once;
    auto s1 = rt.bus().subscribe<numbered>(handler(attempts_alo), alo);
    auto s2 = rt.bus().subscribe<numbered>(handler(attempts_amo), amo);
    for (std::uint64_t i = 0; i < n; ++i) REQUIRE(rt.bus().publish(numbered{i, 0, {}}).deliveries == 2);

    auto settled = [&](const std::string& name) {
        for (auto& mt : rt.bus().metrics())
            if (mt.name == name) return mt.delivered + mt.dead_lettered == n;
        return false;
    };
    REQUIRE(wait_until([&] { return settled("faults.alo") && settled("faults.amo"); }, 60s));

    const std::uint64_t always = (n + 2) / 3;      // n % 3 == 0
    const std::uint64_t once = (n + 1) / 3;        // n % 3 == 1
    for (auto& mt : rt.bus().metrics()) {
        if (mt.name == "faults.alo") {
            CHECK(mt.dead_lettered == always);
            CHECK(mt.delivered == n - always);
            CHECK(mt.failed == always * 3 + once);
            CHECK(mt.retried == always * 2 + once);
        } else if (mt.name == "faults.amo") {
            // at most once: one attempt each, every failure dead-lettered, never retried
            CHECK(mt.dead_lettered == always + once);
            CHECK(mt.delivered == n - always - once);
            CHECK(mt.failed == always + once);
            CHECK(mt.retried == 0);
        }
    }
    {
        std::lock_guard lock(m);
        REQUIRE(attempts_alo.size() == n);
        for (auto& [k, a] : attempts_alo) CHECK(a == (k % 3 == 0 ? 3 : k % 3 == 1 ? 2 : 1));
        for (auto& [k, a] : attempts_amo) CHECK(a == 1);
    }
    auto alo_dead = rt.bus().dead_letters().list("faults.alo");
    REQUIRE(alo_dead.size() == always);
    for (auto& d : alo_dead) {
        CHECK(d.reason == courier::dead_letter_reason::handler_failed);
        REQUIRE(d.errors.size() == 3);  // every attempt's error, oldest first
        const auto k = d.message.data.at("n").get<std::uint64_t>();
        CHECK(k % 3 == 0);
        CHECK(d.errors.back().error.find("boom " + std::to_string(k)) != std::string::npos);
    }
    auto amo_dead = rt.bus().dead_letters().list("faults.amo");
    REQUIRE(amo_dead.size() == always + once);
    std::size_t unknown = 0;
    for (auto& d : amo_dead) {
        REQUIRE(d.errors.size() == 1);
        unknown += d.message.data.at("n").get<std::uint64_t>() % 3 == 1;
        CHECK(!d.errors[0].error.empty());  // an int is recorded too, as an unknown exception
    }
    CHECK(unknown == once);
    CHECK(two_threads_rendezvous(rt));
}

TEST_CASE("job handlers that throw or hang past their timeout end dead with every attempt's error, and no slot is lost",
          "[reliability][faults]") {
    reliability::watchdog dog("hanging job handlers", 120s);
    // Three threads for two worker slots: the attempt timeouts fire on the runtime's executor,
    // so a thread must stay free while both slots hang (with concurrency == threads, hung
    // handlers would delay their own timeouts; see docs/reliability.md, "Known limits").
    courier::runtime rt(courier::runtime_options{.threads = 3});
    courier::job_system jobs(rt, {.concurrency = 2, .publish_events = false});
    auto q = jobs.queue("faults");
    reliability::concurrency_gauge gauge;
    q.handle<work>([&](const work& w, courier::job_context& ctx) {
        auto in = gauge.enter();
        if (w.kind == 1) throw std::runtime_error("handler failed on purpose");
        if (w.kind == 2) {
            const auto limit = std::chrono::steady_clock::now() + 10s;
            while (!ctx.cancelled() && std::chrono::steady_clock::now() < limit) std::this_thread::sleep_for(100us);
            ctx.throw_if_cancelled();
        }
        if (w.kind == 3) std::this_thread::sleep_for(150ms);  // a handler that cannot be pre-empted
        return w.kind;
    });
    courier::job_options o;
    o.max_attempts = 2;
    o.backoff = courier::retry_policy::fixed(1ms, 0);
    o.backoff.jitter = 0;
    o.timeout = 30ms;
    std::vector<std::pair<int, courier::job_handle>> handles;
    const int rounds = 12 / reliability::scale + 2;
    for (int i = 0; i < rounds; ++i)
        for (int kind : {0, 1, 2, 0, 3, 0}) handles.emplace_back(kind, q.enqueue(work{kind}, o).value());
    for (auto& [kind, h] : handles) {
        auto f = h.async_wait(boost::asio::use_future);
        INFO("job of kind " << kind << " in state " << static_cast<int>(h.state()) << " after " << h.attempts()
                            << " attempts, " << gauge.running() << " handlers running");
        REQUIRE(f.wait_for(60s) == std::future_status::ready);
        const auto state = f.get();
        INFO("kind " << kind);
        if (kind == 0) {
            CHECK(state == courier::job_state::completed);
            CHECK(h.errors().empty());
            continue;
        }
        CHECK(state == courier::job_state::dead);
        const auto errors = h.errors();
        REQUIRE(errors.size() == 2);  // both attempts recorded
        for (auto& e : errors) {
            if (kind == 1) CHECK(e.error.find("handler failed on purpose") != std::string::npos);
            else CHECK(e.error.rfind("[courier.jobs.timeout]", 0) == 0);
        }
    }
    const auto hung = static_cast<std::uint64_t>(rounds) * 2 * 2;  // kinds 2 and 3, two attempts each
    REQUIRE(wait_until([&] { return q.stats().late_results == static_cast<std::uint64_t>(rounds) * 2 * 2 ||
                                    gauge.running() == 0; }, 30s));
    REQUIRE(wait_until([&] { return gauge.running() == 0; }, 30s));
    const auto st = q.stats();
    CHECK(st.timed_out == hung);
    CHECK(st.late_results == hung);  // what a timed-out handler did afterwards is counted, not lost
    CHECK(st.dead == static_cast<std::uint64_t>(rounds) * 3);
    CHECK(st.completed == static_cast<std::uint64_t>(rounds) * 3);
    CHECK(st.failed_attempts == static_cast<std::uint64_t>(rounds) * 3 * 2);
    CHECK(q.dead_letters().size() == static_cast<std::size_t>(rounds) * 3);
    CHECK(gauge.peak() <= 2);  // never more handlers than slots
    // Every hung handler returned eventually (late results are counted, not lost), and both
    // slots are free again: two jobs run at the same time.
    std::atomic<int> inside{0}, met{0};
    auto r = jobs.queue("rendezvous");
    r.handle<meet>([&](const meet&) {
        inside.fetch_add(1);
        const auto limit = std::chrono::steady_clock::now() + 10s;
        while (inside.load() < 2 && std::chrono::steady_clock::now() < limit) std::this_thread::yield();
        if (inside.load() >= 2) met.fetch_add(1);
    });
    (void)r.enqueue(meet{1}).value();
    (void)r.enqueue(meet{2}).value();
    CHECK(wait_until([&] { return met.load() == 2; }, 20s));
}

namespace {

struct order {
    int n = 0;
    std::vector<std::string> done;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order, n, done)
};

}  // namespace

TEST_CASE("sagas whose steps hang past their timeout or whose compensations throw end as documented",
          "[reliability][faults][saga]") {
    reliability::watchdog dog("saga faults", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::saga_runner sagas(rt, {.publish_events = true});
    std::mutex m;
    std::map<int, std::vector<std::string>> effects;  // per saga: "a", "b", "~b", "~a" in order
    auto note = [&](int n, std::string what) {
        std::lock_guard lock(m);
        effects[n].push_back(std::move(what));
    };
    std::atomic<int> comp_b_calls{0};
    courier::step_options quick;
    quick.retry = courier::retry_policy::none();
    quick.compensation_retry = retry_fast::policy(3);
    courier::step_options hanging = quick;
    hanging.timeout = 20ms;
    // kind = n % 4: 0 completes; 1 step c throws -> compensate b, a; 2 step c hangs past its
    // timeout -> compensate b, a; 3 step c throws and b's compensation throws every time ->
    // compensation_failed after 3 attempts, a's compensation never runs.
    courier::saga_definition<order> def{"reliability.faults.order.v1"};
    def.step(
           "a", [&](order& o) { note(o.n, "a"); }, [&](order& o) { note(o.n, "~a"); }, quick)
        .step(
            "b", [&](order& o) { note(o.n, "b"); },
            [&](order& o) {
                comp_b_calls.fetch_add(1);
                note(o.n, "~b");
                if (o.n % 4 == 3) throw std::runtime_error("cannot undo b");
            },
            quick)
        .step(
            "c",
            [&](courier::step_context<order>& s, courier::step_completion done) {
                const int kind = s.context().n % 4;
                if (kind == 0) {
                    note(s.context().n, "c");
                    done.succeed();
                } else if (kind == 2) {
                    // never completes: the 20 ms timeout must fail the attempt
                } else {
                    done.fail(std::make_exception_ptr(std::runtime_error("c failed")));
                }
            },
            hanging);
    std::atomic<int> failed_events{0};
    auto sub = rt.bus().subscribe(courier::topic_pattern("courier.saga.compensation_failed.v1"),
                                  [&](const courier::message_context&) { failed_events.fetch_add(1); });
    const int total = 200 / reliability::scale;
    std::vector<courier::uuid> ids;
    for (int i = 0; i < total; ++i) ids.push_back(sagas.start(def, order{i, {}}).value());
    for (int i = 0; i < total; ++i) {
        INFO("saga " << i);
        REQUIRE(wait_until([&] { return courier::is_final(sagas.query(ids[i])->state); }, 60s));
        const auto info = *sagas.query(ids[i]);
        std::vector<std::string> got;
        {
            std::lock_guard lock(m);
            got = effects[i];
        }
        switch (i % 4) {
        case 0:
            CHECK(info.state == courier::saga_state::completed);
            CHECK(got == std::vector<std::string>{"a", "b", "c"});
            break;
        case 1:
        case 2:
            CHECK(info.state == courier::saga_state::failed);
            CHECK(got == std::vector<std::string>{"a", "b", "~b", "~a"});  // reverse order, each once
            if (i % 4 == 2) CHECK(info.error.find("timeout") != std::string::npos);
            break;
        case 3:
            CHECK(info.state == courier::saga_state::compensation_failed);
            CHECK(got == std::vector<std::string>{"a", "b", "~b", "~b", "~b"});  // stops at b, a untouched
            break;
        }
    }
    int broken = 0, undone = 0;  // kind 3 sagas; kinds 1 and 2
    for (int i = 0; i < total; ++i) {
        broken += i % 4 == 3;
        undone += i % 4 == 1 || i % 4 == 2;
    }
    CHECK(comp_b_calls.load() == undone + broken * 3);
    auto dead = rt.bus().dead_letters().list("courier.saga/reliability.faults.order.v1");
    CHECK(dead.size() == static_cast<std::size_t>(broken));
    for (auto& d : dead) CHECK(d.errors.size() == 3);
    CHECK(wait_until([&] { return failed_events.load() == broken; }, 10s));
    CHECK(two_threads_rendezvous(rt));
}

namespace {

/// An actor message: `fault` 0 is handled, 1 throws an std::exception, 2 throws an int.
struct jolt {
    std::uint64_t n = 0;
    int fault = 0;
};
/// Asks an actor how many messages its current state (since the last restart) handled.
struct jolt_probe {};

struct jolty {
    std::atomic<int>* built;
    std::uint64_t seen = 0;  // since this state was built
    explicit jolty(std::atomic<int>* b) : built(b) { built->fetch_add(1); }
    void handle(const jolt& j) {
        ++seen;
        if (j.fault == 1) throw std::runtime_error("jolt " + std::to_string(j.n) + " failed");
        if (j.fault == 2) throw 7;
    }
    std::uint64_t handle(const jolt_probe&) { return seen; }
};

int jolt_fault(std::uint64_t n) { return n % 5 == 0 ? 1 : n % 7 == 3 ? 2 : 0; }

}  // namespace

TEST_CASE("actors whose handlers throw are restarted by supervision, every failure recorded, and no thread is lost",
          "[reliability][faults][actor]") {
    reliability::watchdog dog("throwing actors", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::actor_system actors(rt);
    std::mutex em;
    std::map<std::string, std::vector<courier::actor_failed>> events;  // per actor, in order
    auto failures_sub = rt.bus().subscribe<courier::actor_failed>([&](const courier::actor_failed& f) {
        std::lock_guard lock(em);
        events[f.actor].push_back(f);
    });

    // Restart (the default directive) with a budget that never runs out: every failure builds a
    // fresh state and the actor goes on with the next message.
    std::atomic<int> built{0};
    std::atomic<std::uint64_t> undelivered_restarted{0};
    auto restarted = actors.spawn<jolty>(
        courier::actor_options{.name = "faults.restarted",
                               .max_restarts = 1u << 30,
                               .on_undelivered = [&](courier::unprocessed_message&&) { undelivered_restarted.fetch_add(1); }},
        &built);
    const std::uint64_t per_sender = 6000 / static_cast<std::uint64_t>(reliability::scale);
    std::uint64_t throws_std = 0, throws_int = 0;
    for (std::uint64_t i = 0; i < per_sender; ++i) {
        throws_std += jolt_fault(i) == 1;
        throws_int += jolt_fault(i) == 2;
    }
    {
        std::vector<std::thread> senders;
        for (int p = 0; p < 2; ++p)
            senders.emplace_back([&] {
                for (std::uint64_t i = 0; i < per_sender; ++i) restarted.tell(jolt{i, jolt_fault(i)});
            });
        for (auto& t : senders) t.join();
    }
    const std::uint64_t sent = per_sender * 2, failures = (throws_std + throws_int) * 2;
    REQUIRE(wait_until([&] {
        const auto st = restarted.stats();
        return st.processed + st.failures == sent;
    }, 60s));
    // An ask whose handler throws is answered with the error before supervision runs.
    auto failed_ask = restarted.ask(jolt{1, 1}, 10s, boost::asio::use_future);
    REQUIRE(failed_ask.wait_for(30s) == std::future_status::ready);
    const auto fa = failed_ask.get();
    REQUIRE_FALSE(fa);
    CHECK(fa.error() == courier::errc::handler_failed);
    CHECK(fa.error().message.find("[courier.actor.handler_failed]") != std::string::npos);
    CHECK(fa.error().message.find("jolt 1 failed") != std::string::npos);
    // The state after the last restart is fresh: it has seen only what came after it.
    for (int i = 0; i < 3; ++i) restarted.tell(jolt{1, 0});
    auto probe = restarted.ask(jolt_probe{}, 10s, boost::asio::use_future);
    REQUIRE(probe.wait_for(30s) == std::future_status::ready);
    const auto seen = probe.get();
    REQUIRE(seen);
    CHECK(*seen == 3);

    // The counters are added once per turn: wait for the turn that answered the probe to end.
    REQUIRE(wait_until([&] { return restarted.stats().processed == sent - failures + 3 + 1; }, 30s));
    const auto st = restarted.stats();
    CHECK(st.failures == failures + 1);
    CHECK(st.processed == sent - failures + 3 + 1);  // the 3 tells and the probe
    CHECK(st.restarts == failures + 1);
    CHECK(built.load() == static_cast<int>(failures) + 2);  // the first state and one per restart
    CHECK(st.undelivered == 0);
    CHECK(undelivered_restarted.load() == 0);
    CHECK_FALSE(st.stopped);

    // A restart budget of 3 within a minute: the fourth failure stops the actor, and every
    // message after it is handed to on_undelivered, counted exactly.
    std::atomic<int> built_budget{0};
    std::atomic<std::uint64_t> undelivered{0};
    auto budget = actors.spawn<jolty>(
        courier::actor_options{.name = "faults.budget",
                               .max_restarts = 3,
                               .restart_window = std::chrono::minutes(1),
                               .on_undelivered = [&](courier::unprocessed_message&& m) {
                                   if (m.is<jolt>()) undelivered.fetch_add(1);
                               }},
        &built_budget);
    const std::uint64_t burst = 100;  // messages 0, 10, 20, 30 throw; 30 is the fourth failure
    for (std::uint64_t i = 0; i < burst; ++i) budget.tell(jolt{i, i % 10 == 0 ? 1 : 0});
    REQUIRE(wait_until([&] {
        const auto b = budget.stats();
        return b.stopped && b.processed + b.failures + undelivered.load() == burst;
    }, 60s));
    const auto bs = budget.stats();
    CHECK(bs.failures == 4);
    CHECK(bs.restarts == 3);
    CHECK(bs.processed == 27);         // 1..29 but 10 and 20
    CHECK(undelivered.load() == 69);   // 31..99
    CHECK(bs.undelivered == 69);
    CHECK(built_budget.load() == 4);
    budget.tell(jolt{1000, 0});  // a tell to the stopped actor is undelivered, not lost
    CHECK(undelivered.load() == 70);

    // Every failure was published with the directive supervision chose.
    REQUIRE(wait_until([&] {
        std::lock_guard lock(em);
        return events["faults.restarted"].size() == failures + 1 && events["faults.budget"].size() == 4;
    }, 30s));
    {
        std::lock_guard lock(em);
        std::uint64_t unknown = 0;
        for (auto& e : events["faults.restarted"]) {
            CHECK(e.directive == "restart");
            CHECK(!e.error.empty());
            unknown += e.error.find("failed") == std::string::npos;  // the int throws
        }
        CHECK(unknown == throws_int * 2);
        const auto& b = events["faults.budget"];
        for (std::size_t i = 0; i < 3; ++i) CHECK(b[i].directive == "restart");
        CHECK(b[3].directive == "stop");
        CHECK(b[3].error.find("jolt 30 failed") != std::string::npos);
    }
    CHECK(two_threads_rendezvous(rt));
}

TEST_CASE("rpc responders that throw or hang past the request timeout: typed errors, late replies counted, no thread lost",
          "[reliability][faults][rpc]") {
    reliability::watchdog dog("hanging responders", 120s);
    // Three threads for two handler slots: the request deadlines fire on the runtime's executor,
    // so one thread stays free while both slots hang (as for jobs; docs/reliability.md).
    courier::runtime rt(courier::runtime_options{.threads = 3});
    courier::rpc rpc(rt.bus());
    std::mutex hang_mutex;
    std::condition_variable hang_cv;
    bool released = false;
    reliability::concurrency_gauge gauge;
    // kind 0 answers, 1 throws, 2 hangs until the test releases it (after its requester timed out).
    auto responder = rpc.respond<quote_request>(
        [&](const quote_request& q) {
            auto in = gauge.enter();
            if (q.kind == 1) throw std::runtime_error("quote " + std::to_string(q.n) + " failed");
            if (q.kind == 2) {
                std::unique_lock lock(hang_mutex);
                hang_cv.wait_for(lock, 30s, [&] { return released; });  // bounded: never forever
            }
            return quote{q.n, 0};
        },
        courier::responder_options{.name = "faults.rpc", .concurrency = 2});

    const std::uint64_t rounds = 200 / static_cast<std::uint64_t>(reliability::scale);
    const int kinds[] = {0, 1, 2, 0};
    std::atomic<std::uint64_t> answered{0}, failed{0}, timed_out{0}, other{0};
    std::uint64_t n_ok = 0, n_throw = 0, n_hang = 0, n = 0;
    for (std::uint64_t r = 0; r < rounds; ++r) {
        for (int kind : kinds) {
            ++n;
            (kind == 0 ? n_ok : kind == 1 ? n_throw : n_hang) += 1;
            // A hanging request waits 20 ms; the others long enough to wait behind the hung ones.
            courier::request_options o;
            o.timeout = kind == 2 ? courier::duration(20ms) : courier::duration(60s);
            rpc.request(quote_request{n, 0, kind, {}}, std::move(o), [&, kind](courier::result<quote> res) {
                if (kind == 0 && res) answered.fetch_add(1);
                else if (kind == 1 && !res && res.error() == courier::errc::handler_failed &&
                         res.error().message.find("[courier.rpc.handler_failed]") != std::string::npos &&
                         res.error().message.find(" failed") != std::string::npos)
                    failed.fetch_add(1);
                else if (kind == 2 && !res && res.error() == courier::errc::timeout &&
                         res.error().message.find("[courier.rpc.timeout]") != std::string::npos)
                    timed_out.fetch_add(1);
                else
                    other.fetch_add(1);
            });
        }
    }
    const std::uint64_t total = n_ok + n_throw + n_hang;
    // Every hanging request times out while its handler still hangs (or waits behind one)...
    REQUIRE(wait_until([&] { return timed_out.load() + other.load() >= n_hang; }, 60s));
    CHECK(other.load() == 0);
    {
        std::lock_guard lock(hang_mutex);
        released = true;
    }
    hang_cv.notify_all();
    // ...then the handlers return and their replies arrive late: counted and dropped.
    REQUIRE(wait_until([&] { return answered + failed + timed_out + other == total; }, 60s));
    // (The bus adds a subscription's counters once per drained batch: wait for those too.)
    REQUIRE(wait_until([&] {
        const auto m = rpc.metrics();
        return m.served + m.served_failed == total && m.late_replies == n_hang && responder.metrics().delivered == total;
    }, 60s));
    const auto m = rpc.metrics();
    INFO("answered " << answered.load() << ", failed " << failed.load() << ", timed out " << timed_out.load()
                     << ", other " << other.load());
    CHECK(other.load() == 0);
    CHECK(answered.load() == n_ok);
    CHECK(failed.load() == n_throw);
    CHECK(timed_out.load() == n_hang);
    CHECK(m.requests == total);
    CHECK(m.replies == n_ok);
    CHECK(m.error_replies == n_throw);
    CHECK(m.timeouts == n_hang);
    CHECK(m.served == n_ok + n_hang);
    CHECK(m.served_failed == n_throw);
    CHECK(m.late_replies == n_hang);  // what a hung responder answered afterwards is counted, not lost
    CHECK(m.pending == 0);
    CHECK(gauge.peak() <= 2);
    const auto sub = responder.metrics();
    CHECK(sub.delivered == total);
    CHECK(sub.dead_lettered == 0);
    CHECK(rt.bus().dead_letters().total() == 0);
    CHECK(wait_until([&] { return gauge.running() == 0; }, 30s));
    CHECK(two_threads_rendezvous(rt));
}

TEST_CASE("a stream group member that crashes holding unacked records has them redelivered to the others, each acked once",
          "[reliability][faults][stream]") {
    reliability::watchdog dog("crashing group member", 120s);
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::stream log(rt.bus(), "faults.log", {.partitions = 4});
    auto group = log.group("faults.readers");
    const std::uint64_t total = 40000 / static_cast<std::uint64_t>(reliability::scale);

    std::mutex m;
    std::set<std::pair<std::uint32_t, std::uint64_t>> acked, held, claimed;
    std::uint64_t duplicate_acks = 0, short_acks = 0, claimed_count = 0, wrong_count = 0;
    std::atomic<std::uint64_t> acked_total{0};
    auto note_acked = [&](const courier::group_batch& b, std::size_t n) {
        std::lock_guard lock(m);
        short_acks += n != b.size();
        for (auto& d : b) duplicate_acks += !acked.emplace(d.partition, d.offset()).second;
        acked_total.fetch_add(n);
    };

    std::atomic<bool> appended_all{false}, crashed{false};
    std::atomic<std::uint64_t> appended{0}, refused{0};
    std::thread appender([&] {
        for (std::uint64_t i = 0; i < total; ++i)
            (log.append("k" + std::to_string(i % 97), "record " + std::to_string(i)) ? appended : refused).fetch_add(1);
        appended_all = true;
    });
    // The crasher acks four batches, takes a fifth and crashes (leaves the group without acking):
    // its partitions go to the others at once, its pending records stay pending until claimed.
    std::thread crasher([&] {
        auto me = group.join("crasher");
        int batches = 0;
        for (;;) {
            auto b = me.read(64).value();
            if (b.empty()) {
                if (appended_all.load()) break;
                std::this_thread::yield();
                continue;
            }
            if (++batches < 5) {
                note_acked(b, me.ack(b));
                continue;
            }
            {
                std::lock_guard lock(m);
                for (auto& d : b) held.emplace(d.partition, d.offset());
            }
            break;
        }
        me.leave();  // the crash: nothing of the last batch acked
        crashed = true;
    });
    // Two survivors read and ack; once the crasher is gone, the first takes over what it left:
    // XPENDING for the crasher's records, XCLAIM of exactly those (an autoclaim with min_idle 0
    // would also take batches the other survivor has not acked yet).
    std::vector<std::thread> survivors;
    for (int s = 0; s < 2; ++s) {
        survivors.emplace_back([&, s] {
            auto me = group.join("survivor-" + std::to_string(s));
            while (!(appended_all.load() && crashed.load() && acked_total.load() == appended.load())) {
                auto b = me.read(64).value();
                if (!b.empty()) note_acked(b, me.ack(b));
                std::map<std::uint32_t, std::vector<std::uint64_t>> orphaned;
                if (s == 0 && crashed.load())
                    for (auto& e : group.pending())
                        if (e.owner == "crasher") orphaned[e.partition].push_back(e.offset);
                if (orphaned.empty()) {
                    if (b.empty()) std::this_thread::yield();
                    continue;
                }
                for (auto& [partition, offsets] : orphaned) {
                    auto got = me.claim(partition, offsets);
                    {
                        std::lock_guard lock(m);
                        claimed_count += got.size();
                        for (auto& d : got) {
                            claimed.emplace(d.partition, d.offset());
                            wrong_count += d.delivery_count != 2;
                        }
                    }
                    note_acked(got, me.ack(got));
                }
            }
        });
    }
    appender.join();
    crasher.join();
    for (auto& t : survivors) t.join();

    const auto gm = group.metrics();
    std::lock_guard lock(m);
    INFO("appended " << appended.load() << ", acked " << acked.size() << ", crasher held " << held.size() << ", claimed "
                     << claimed_count);
    CHECK(refused.load() == 0);
    CHECK(appended.load() == total);
    REQUIRE(held.size() > 0);  // the crash left records behind
    CHECK(claimed == held);    // exactly those were redelivered...
    CHECK(claimed_count == held.size());  // ...once each...
    CHECK(wrong_count == 0);              // ...as their second delivery
    CHECK(gm.claimed == held.size());
    CHECK(acked.size() == total);  // every record acked...
    CHECK(duplicate_acks == 0);    // ...exactly once
    CHECK(short_acks == 0);
    CHECK(gm.delivered == total);
    CHECK(gm.acked == total);
    CHECK(gm.pending == 0);
    CHECK(gm.lost_to_retention == 0);
    CHECK(gm.skipped_by_retention == 0);
    for (std::uint32_t p = 0; p < 4; ++p) CHECK(group.committed(p) == log.info(p).end_offset);
}
