// Fault injection: handlers that throw (std and non-std exceptions), job handlers that hang past
// their timeout, saga steps that hang past their timeout and compensations that throw. Every
// failure must be counted and recorded (dead letter, job error, saga history) exactly as the
// docs say, and no worker thread may be lost: afterwards both runtime threads still run
// handlers at the same time (a rendezvous that needs two live threads).
#include "support.hpp"

#include <courier/bus/event_bus.hpp>
#include <courier/jobs/job_system.hpp>
#include <courier/runtime/runtime.hpp>
#include <courier/saga/saga.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using reliability::numbered;
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
    std::atomic<int> running{0}, peak{0};
    q.handle<work>([&](const work& w, courier::job_context& ctx) {
        const int now = running.fetch_add(1) + 1;
        for (int p = peak.load(); now > p && !peak.compare_exchange_weak(p, now);) {
        }
        struct leave {
            std::atomic<int>& r;
            ~leave() { r.fetch_sub(1); }
        } guard{running};
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
                            << " attempts, " << running.load() << " handlers running");
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
                                    running.load() == 0; }, 30s));
    REQUIRE(wait_until([&] { return running.load() == 0; }, 30s));
    const auto st = q.stats();
    CHECK(st.timed_out == hung);
    CHECK(st.late_results == hung);  // what a timed-out handler did afterwards is counted, not lost
    CHECK(st.dead == static_cast<std::uint64_t>(rounds) * 3);
    CHECK(st.completed == static_cast<std::uint64_t>(rounds) * 3);
    CHECK(st.failed_attempts == static_cast<std::uint64_t>(rounds) * 3 * 2);
    CHECK(q.dead_letters().size() == static_cast<std::size_t>(rounds) * 3);
    CHECK(peak.load() <= 2);  // never more handlers than slots
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
