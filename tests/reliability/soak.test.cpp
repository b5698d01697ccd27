// The soak: bus, actors, jobs, a stream with a consumer group, sagas, request-reply and a broker
// bridge, all driven at once for COURIER_SOAK_SECONDS (default 60) with random faults (handlers,
// actors and responders that throw, jobs and responders that hang past their timeout, group
// members that "crash" before acking, saga steps and compensations that fail, a broker that goes
// down), then shut down under traffic. At the end every component's totals must add up exactly:
// sent = delivered + dead-lettered (failed, recorded) + handed back (at shutdown, or refused at
// once to the caller). Hidden from the normal run ([.]): scripts/soak runs it.
#include "support.hpp"

#include <courier/actor/actor.hpp>
#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/loopback.hpp>
#include <courier/bus/event_bus.hpp>
#include <courier/jobs/job_system.hpp>
#include <courier/rpc/rpc.hpp>
#include <courier/runtime/runtime.hpp>
#include <courier/saga/saga.hpp>
#include <courier/stream/stream.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using reliability::numbered;
using reliability::quote;
using reliability::quote_request;
using reliability::wait_until;

namespace {

/// A thread-local random source seeded from the run's seed and the thread's role.
struct dice {
    explicit dice(std::uint64_t seed) : rng(seed) {}
    bool roll(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
    std::mt19937_64 rng;
};

std::uint64_t soak_seed() {
    if (const char* s = std::getenv("COURIER_SOAK_SEED")) return std::stoull(s);
    return std::random_device{}();
}

struct faults {
    std::atomic<std::uint64_t> handler_throws{0}, actor_throws{0}, job_throws{0}, job_hangs{0}, member_crashes{0},
        saga_step_failures{0}, compensation_throws{0}, responder_throws{0}, responder_hangs{0}, broker_outages{0};
    std::uint64_t total() const {
        return handler_throws + actor_throws + job_throws + job_hangs + member_crashes + saga_step_failures +
               compensation_throws + responder_throws + responder_hangs + broker_outages;
    }
};

/// What the soak forwards to the broker (only the bridge subscribes to it).
struct soak_parcel {
    static constexpr courier::event_name event_type{"reliability.parcel.shipped.v1"};
    std::uint64_t n = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(soak_parcel, n)
};

struct job_work {
    std::uint64_t n = 0;
    int fault = 0;  // 0 none, 1 throws, 2 hangs past its timeout (cooperatively)
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(job_work, n, fault)
};

struct trip {
    std::uint64_t n = 0;
    int fail_at = -1;         // step that fails, -1: none
    int bad_compensation = 0; // compensation attempts that throw before one succeeds
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(trip, n, fail_at, bad_compensation)
};

struct flaky_actor {
    faults* f = nullptr;
    std::atomic<std::uint64_t>* ok = nullptr;
    std::shared_ptr<dice> d;  // shared across restarts (a restart rebuilds the state from these)
    flaky_actor(faults* fs, std::atomic<std::uint64_t>* okc, std::shared_ptr<dice> dd) : f(fs), ok(okc), d(std::move(dd)) {}
    void handle(const numbered&) {
        if (d->roll(0.01)) {
            f->actor_throws.fetch_add(1);
            throw std::runtime_error("actor fault");
        }
        ok->fetch_add(1, std::memory_order_relaxed);
    }
};

}  // namespace

TEST_CASE("soak: bus, actors, jobs, streams, sagas, rpc and a bridge under random faults lose nothing", "[.][soak]") {
    const char* secs_env = std::getenv("COURIER_SOAK_SECONDS");
    const auto seconds = std::chrono::seconds(secs_env ? std::stoll(secs_env) : 60);
    const auto seed = soak_seed();
    std::printf("soak: %lld s, seed %llu (COURIER_SOAK_SEED=%llu repeats the fault choices)\n",
                static_cast<long long>(seconds.count()), static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(seed));
    std::fflush(stdout);
    reliability::watchdog dog("soak", seconds + 300s);
    faults f;

    courier::runtime_options ro;
    // Four threads for two job slots and one responder slot: job and request timeouts fire on the
    // executor, so one thread stays free while every slot hangs (see docs/reliability.md, "Known
    // limits").
    ro.threads = 4;
    ro.bus.dead_letter_capacity = 20000;  // bounded: evictions are counted, not lost
    courier::runtime rt(ro);
    courier::actor_system actors(rt);
    courier::job_system jobs(rt, {.concurrency = 2, .publish_events = false});
    courier::saga_runner sagas(rt, {.retain_finished = 1 << 20, .publish_events = false});
    courier::stream log(rt.bus(), "soak.log", {.partitions = 4});
    courier::rpc rpc(rt.bus());
    // The bridge's broker goes down now and then (a fault thread below); its outbox is bounded.
    auto broker = courier::bridge::loopback_broker::create();
    std::unique_ptr<courier::bridge::broker_bridge> bridge;
    {
        courier::bridge::bridge_options bo;
        bo.name = "soak";
        bo.outbox_capacity = 4096;
        bo.outbox_overflow = courier::overflow_policy::drop_oldest;
        bo.max_in_flight = 256;
        bo.poll_interval = 5ms;
        bo.reconnect = courier::retry_policy::exponential(1ms, 2.0, 20ms, 0);
        bridge = std::make_unique<courier::bridge::broker_bridge>(rt.bus(), broker->make_transport(), bo);
        REQUIRE(bridge->forward("reliability.parcel.#", {.topic = "soak.parcels"}));
    }

    // ---- bus: three subscriptions with different modes, guarantees and overflow policies
    std::atomic<std::uint64_t> bus_ok{0};
    std::vector<courier::subscription> subs;
    {
        const struct {
            const char* name;
            courier::delivery_mode mode;
            courier::overflow_policy policy;
            std::size_t capacity;
        } specs[] = {
            {"soak.pooled", courier::delivery_mode::pooled, courier::overflow_policy::block, 4096},
            {"soak.serial", courier::delivery_mode::serial, courier::overflow_policy::drop_oldest, 1024},
            {"soak.keyed", courier::delivery_mode::keyed, courier::overflow_policy::drop_newest, 256},
        };
        int i = 0;
        for (const auto& s : specs) {
            courier::subscription_options o;
            o.name = s.name;
            o.mode = s.mode;
            o.overflow = s.policy;
            o.capacity = s.capacity;
            o.block_timeout = 2ms;
            o.lanes = 4;
            o.key = courier::key_by<numbered>([](const numbered& e) { return e.n; });
            o.retry = courier::retry_policy::fixed(1ms, 3);
            auto d = std::make_shared<std::mutex>();
            auto rng = std::make_shared<dice>(seed + 100 + static_cast<std::uint64_t>(i++));
            subs.push_back(rt.bus().subscribe<numbered>(
                [&, d, rng](const numbered&) {
                    bool fail;
                    {
                        std::lock_guard lock(*d);
                        fail = rng->roll(0.02);
                    }
                    if (fail) {
                        f.handler_throws.fetch_add(1);
                        throw std::runtime_error("handler fault");
                    }
                    bus_ok.fetch_add(1, std::memory_order_relaxed);
                },
                o));
        }
    }

    // ---- actor: a bounded mailbox, a handler that throws now and then (restart supervision)
    std::atomic<std::uint64_t> actor_ok{0}, actor_refused{0};
    auto actor = actors.spawn<flaky_actor>(
        courier::actor_options{.name = "soak.actor",
                               .capacity = 1024,
                               .overflow = courier::overflow_policy::drop_newest,
                               .max_restarts = 1u << 30,
                               .on_undelivered = [&](courier::unprocessed_message&&) { actor_refused.fetch_add(1); }},
        &f, &actor_ok, std::make_shared<dice>(seed + 7));

    // ---- jobs: throws and hangs past the timeout
    auto q = jobs.queue("soak.jobs");
    std::atomic<std::uint64_t> job_ran_ok{0};
    q.handle<job_work>([&](const job_work& w, courier::job_context& ctx) {
        if (w.fault == 1 && ctx.attempt() == 1) throw std::runtime_error("job fault");
        if (w.fault == 2 && ctx.attempt() == 1) {
            const auto limit = std::chrono::steady_clock::now() + 5s;
            while (!ctx.cancelled() && std::chrono::steady_clock::now() < limit) std::this_thread::sleep_for(100us);
            ctx.throw_if_cancelled();
        }
        job_ran_ok.fetch_add(1, std::memory_order_relaxed);
        return w.n;
    });

    // ---- sagas: three steps, a step may fail (compensate), a compensation may throw first
    std::atomic<std::uint64_t> saga_effects{0};
    courier::step_options so;
    so.retry = courier::retry_policy::none();
    so.compensation_retry = courier::retry_policy::fixed(1ms, 4);
    auto step = [&](int index) {
        return [&, index](trip& t) {
            if (t.fail_at == index) throw std::runtime_error("saga step fault");
            saga_effects.fetch_add(1, std::memory_order_relaxed);
        };
    };
    std::mutex comp_mutex;
    std::set<std::uint64_t> comp_failed_once;  // sagas whose compensation already threw once
    auto compensation = [&](trip& t) {
        if (t.bad_compensation > 0) {
            std::lock_guard lock(comp_mutex);
            if (comp_failed_once.insert(t.n).second) {
                f.compensation_throws.fetch_add(1);
                throw std::runtime_error("compensation fault");  // the retry succeeds
            }
        }
    };
    courier::saga_definition<trip> def{"soak.trip.booking.v1"};
    def.step("a", step(0), compensation, so).step("b", step(1), compensation, so).step("c", step(2), so);

    // ---- rpc: a bounded responder that throws now and then, or hangs past the request's timeout
    auto responder = rpc.respond<quote_request>(
        [](const quote_request& q) {
            if (q.kind == 1) throw std::runtime_error("responder fault");
            if (q.kind == 2) std::this_thread::sleep_for(15ms);  // the request waits 5 ms
            return quote{q.n, q.producer};
        },
        courier::responder_options{.name = "soak.rpc", .concurrency = 1, .capacity = 1024});

    // ---- traffic
    const auto end = std::chrono::steady_clock::now() + seconds;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> bus_published{0}, bus_pairs{0}, actor_sent{0}, jobs_accepted{0}, jobs_refused{0},
        appended{0}, append_refused{0}, sagas_started{0}, sagas_refused{0};
    std::atomic<std::uint64_t> requests{0}, answered{0}, error_replies{0}, timed_out{0}, overloaded{0}, rpc_closed{0},
        rpc_other{0};
    std::atomic<std::uint64_t> parcels_forwarded{0};
    std::vector<std::thread> threads;
    // bus + actor producer
    for (int p = 0; p < 2; ++p) {
        threads.emplace_back([&, p] {
            dice d(seed + 1000 + static_cast<std::uint64_t>(p));
            for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
                const auto r = rt.bus().publish(numbered{i, static_cast<std::uint64_t>(p), {}});
                if (r.closed) break;
                bus_published.fetch_add(1, std::memory_order_relaxed);
                bus_pairs.fetch_add(r.deliveries + r.rejected, std::memory_order_relaxed);
                actor.tell(numbered{i, static_cast<std::uint64_t>(p), {}});
                actor_sent.fetch_add(1, std::memory_order_relaxed);
                if (i % 512 == 0) std::this_thread::sleep_for(std::chrono::microseconds(d.rng() % 2000));  // bursts
            }
        });
    }
    // jobs + stream + sagas producer
    threads.emplace_back([&] {
        dice d(seed + 2000);
        courier::job_options jo;
        jo.max_attempts = 2;
        jo.timeout = 20ms;
        jo.backoff = courier::retry_policy::fixed(1ms, 0);
        for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
            job_work w{i, 0};
            if (d.roll(0.03)) w.fault = 1;
            else if (d.roll(0.002)) w.fault = 2;
            auto h = q.enqueue(w, jo);
            if (h) {
                jobs_accepted.fetch_add(1, std::memory_order_relaxed);
                if (w.fault == 1) f.job_throws.fetch_add(1);
                if (w.fault == 2) f.job_hangs.fetch_add(1);
            } else {
                jobs_refused.fetch_add(1);  // handed back to the caller at once
            }
            if (i % 4 == 0) {
                if (log.append("k" + std::to_string(i % 64), "payload " + std::to_string(i))) appended.fetch_add(1);
                else append_refused.fetch_add(1);
            }
            if (i % 64 == 0) {
                trip t{i, -1, 0};
                if (d.roll(0.1)) t.fail_at = static_cast<int>(d.rng() % 3);
                if (t.fail_at > 0 && d.roll(0.3)) t.bad_compensation = 1;
                if (sagas.start(def, t)) {
                    sagas_started.fetch_add(1);
                    if (t.fail_at >= 0) f.saga_step_failures.fetch_add(1);
                } else {
                    sagas_refused.fetch_add(1);
                }
            }
            if (i % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(d.rng() % 3000));
        }
    });
    // rpc requester: 2 % of requests make the responder throw, 0.5 % make it hang past the
    // request's 5 ms timeout; every request completes exactly once, counted by its outcome
    threads.emplace_back([&] {
        dice d(seed + 4000);
        for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
            int kind = 0;
            if (d.roll(0.02)) kind = 1;
            else if (d.roll(0.005)) kind = 2;
            if (kind == 1) f.responder_throws.fetch_add(1);
            if (kind == 2) f.responder_hangs.fetch_add(1);
            courier::request_options o;
            o.timeout = kind == 2 ? courier::duration(5ms) : courier::duration(2s);
            requests.fetch_add(1, std::memory_order_relaxed);
            rpc.request(quote_request{i, 7, kind, {}}, std::move(o), [&](courier::result<quote> r) {
                if (r) answered.fetch_add(1, std::memory_order_relaxed);
                else if (r.error() == courier::errc::handler_failed) error_replies.fetch_add(1, std::memory_order_relaxed);
                else if (r.error() == courier::errc::timeout) timed_out.fetch_add(1, std::memory_order_relaxed);
                else if (r.error() == courier::errc::full) overloaded.fetch_add(1, std::memory_order_relaxed);
                else if (r.error() == courier::errc::closed) rpc_closed.fetch_add(1, std::memory_order_relaxed);
                else rpc_other.fetch_add(1, std::memory_order_relaxed);
            });
            if (i % 256 == 0) std::this_thread::sleep_for(std::chrono::microseconds(d.rng() % 2000));  // bursts
        }
    });
    // parcels for the bridge, and the fault: the broker goes down for 1-20 ms now and then
    threads.emplace_back([&] {
        dice d(seed + 5000);
        for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
            const auto r = rt.bus().publish(soak_parcel{i});
            if (r.closed) break;
            parcels_forwarded.fetch_add(r.deliveries, std::memory_order_relaxed);  // the bridge's route only
            if (i % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(d.rng() % 2000));
        }
    });
    threads.emplace_back([&] {
        dice d(seed + 6000);
        while (!stop.load(std::memory_order_relaxed)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50 + d.rng() % 200));
            if (stop.load(std::memory_order_relaxed)) break;
            f.broker_outages.fetch_add(1);
            broker->set_down(true);
            std::this_thread::sleep_for(std::chrono::milliseconds(1 + d.rng() % 20));
            broker->set_down(false);
        }
    });
    // stream consumers: two members of one group; each may "crash" before acking a batch, and
    // claims what was left pending for 50 ms
    auto group = log.group("soak.readers");
    std::mutex acked_mutex;
    std::set<std::pair<std::uint32_t, std::uint64_t>> acked;
    std::atomic<std::uint64_t> ack_count{0}, processed{0};
    for (int m = 0; m < 2; ++m) {
        threads.emplace_back([&, m] {
            dice d(seed + 3000 + static_cast<std::uint64_t>(m));
            auto member = group.join("member-" + std::to_string(m));
            auto take = [&](const courier::group_batch& b) {
                processed.fetch_add(b.size(), std::memory_order_relaxed);
                if (d.roll(0.01)) {  // crash before the ack: the batch stays pending
                    f.member_crashes.fetch_add(1);
                    return;
                }
                ack_count.fetch_add(member.ack(b));
                std::lock_guard lock(acked_mutex);
                for (auto& x : b) acked.emplace(x.partition, x.offset());
            };
            while (!stop.load(std::memory_order_relaxed)) {
                auto b = member.read(128);
                if (b && !b->empty()) take(*b);
                else std::this_thread::sleep_for(200us);
                auto orphans = member.claim(50ms, 128);
                if (!orphans.empty()) take(orphans);
            }
        });
    }

    while (std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(100ms);

    // ---- shutdown under traffic: the bus first (producers still publishing), then the rest
    const auto bus_report = rt.bus().shutdown(20ms);
    stop = true;
    for (auto& t : threads) t.join();
    // stream: drain what is left, claiming everything pending (no crash faults any more)
    {
        auto member = group.join("drainer");
        REQUIRE(wait_until(
            [&] {
                for (;;) {
                    auto b = member.read(512);
                    if (!b || b->empty()) break;
                    processed.fetch_add(b->size());
                    ack_count.fetch_add(member.ack(*b));
                    std::lock_guard lock(acked_mutex);
                    for (auto& x : *b) acked.emplace(x.partition, x.offset());
                }
                auto orphans = member.claim(0ms, 512);
                processed.fetch_add(orphans.size());
                ack_count.fetch_add(member.ack(orphans));
                std::lock_guard lock(acked_mutex);
                for (auto& x : orphans) acked.emplace(x.partition, x.offset());
                return acked.size() == appended.load() && group.pending().empty();
            },
            60s));
    }
    // sagas: every started saga reaches a final state
    REQUIRE(wait_until(
        [&] {
            for (auto& id : sagas.list())
                if (auto i = sagas.query(id); i && !courier::is_final(i->state)) return false;
            return true;
        },
        60s));
    // rpc: the bus shutdown's hook closed the rpc, so every request has completed or will at once
    REQUIRE(wait_until(
        [&] { return answered + error_replies + timed_out + overloaded + rpc_closed + rpc_other == requests; }, 60s));
    // bridge: stopped with whatever its outbox still holds (handed back, reason shutdown)
    broker->set_down(false);
    bridge->stop(20ms);
    const auto bs = bridge->stats();
    const auto parcels_on_broker = broker->read_all("soak.parcels");
    const auto job_report = jobs.shutdown(2s);
    std::uint64_t jobs_stopped_running = 0;  // active at the deadline, then ended by the cancel request
    for (auto& h : job_report.still_running) {
        auto fut = h.async_wait(boost::asio::use_future);
        REQUIRE(fut.wait_for(30s) == std::future_status::ready);
        jobs_stopped_running += fut.get() == courier::job_state::cancelled;
    }
    const auto actor_report = actors.shutdown(2s);
    rt.stop();

    // ---- totals
    // bus: one (message, subscription) pair per subscription a publish reached or was refused by
    // bus: the three soak subscriptions; the responder's and the bridge's are counted below
    std::uint64_t delivered = 0, dead = 0, rpc_sub_delivered = 0, rpc_sub_dead = 0, rpc_sub_dropped = 0, other_dead = 0;
    for (auto& m : rt.bus().metrics()) {
        if (m.name == "soak.pooled" || m.name == "soak.serial" || m.name == "soak.keyed") {
            delivered += m.delivered;
            dead += m.dead_lettered;
        } else if (m.name == "soak.rpc") {
            rpc_sub_delivered += m.delivered;
            rpc_sub_dead += m.dead_lettered;
            rpc_sub_dropped += m.dropped;
        } else {
            other_dead += m.dead_lettered;
        }
    }
    // The report counts every queue the shutdown handed back: the responder's requests (its dead
    // letters that were not refusals) and the three subscriptions' messages.
    const std::uint64_t rpc_handed_back = rpc_sub_dead - rpc_sub_dropped;
    REQUIRE(bus_report.handed_back >= rpc_handed_back);
    const std::uint64_t handed_back = bus_report.handed_back - rpc_handed_back;
    INFO("bus: sent " << bus_pairs.load() << " = delivered " << delivered << " + dead-lettered " << dead - handed_back
                      << " + handed back " << handed_back);
    CHECK(bus_pairs.load() == delivered + dead);  // `dead` includes the handed-back (reason shutdown)
    CHECK(delivered == bus_ok.load());
    CHECK(other_dead == 0);
    // the store holds the bus subscriptions', the responder's and the bridge's dead letters
    CHECK(rt.bus().dead_letters().total() == dead + rpc_sub_dead + bs.dead_lettered);
    CHECK(dead >= handed_back);
    // actor: sent = processed + failed (recorded by supervision) + refused/handed back
    const auto as = actor.stats();
    const std::uint64_t actor_handed_back = actor_report.unprocessed.size();
    INFO("actor: sent " << actor_sent.load() << " processed " << as.processed << " failed " << as.failures
                        << " refused " << actor_refused.load() << " handed back " << actor_handed_back);
    CHECK(actor_sent.load() == as.processed + as.failures + actor_refused.load() + actor_handed_back);
    CHECK(as.failures == f.actor_throws.load());
    // jobs: accepted = completed + dead + cancelled at shutdown
    const auto js = q.stats();
    INFO("jobs: accepted " << jobs_accepted.load() << " completed " << js.completed << " dead " << js.dead
                           << " cancelled " << js.cancelled);
    CHECK(js.enqueued == jobs_accepted.load());
    CHECK(jobs_refused.load() == 0);  // no max_jobs, and the producer stopped before the shutdown
    CHECK(jobs_accepted.load() == js.completed + js.dead + js.failed + js.cancelled + js.expired);
    CHECK(js.cancelled == job_report.cancelled.size() + jobs_stopped_running);
    CHECK(job_ran_ok.load() == js.completed);
    // stream: every appended record acked exactly once; no append refused (no limit applies)
    INFO("stream: appended " << appended.load() << " refused " << append_refused.load() << " acked " << ack_count.load()
                             << " processed " << processed.load());
    CHECK(append_refused.load() == 0);
    CHECK(ack_count.load() == appended.load());
    CHECK(acked.size() == appended.load());
    CHECK(group.metrics().acked == ack_count.load());
    // sagas: started = completed + compensated (+ compensation_failed, dead-lettered)
    std::uint64_t completed = 0, compensated = 0, comp_failed = 0;
    for (auto& id : sagas.list()) {
        const auto s = sagas.query(id)->state;
        completed += s == courier::saga_state::completed;
        compensated += s == courier::saga_state::failed;
        comp_failed += s == courier::saga_state::compensation_failed;
    }
    CHECK(sagas_refused.load() == 0);  // fresh ids, one definition: start never refuses here
    CHECK(sagas.list().size() == sagas_started.load());
    CHECK(completed + compensated + comp_failed == sagas_started.load());
    CHECK(comp_failed == 0);  // one bad attempt per compensation, four allowed

    // rpc: requests = answered + error replies + timed out + refused (overloaded) + ended closed
    const auto rm = rpc.metrics();
    INFO("rpc: requests " << requests.load() << " answered " << answered.load() << " error replies "
                          << error_replies.load() << " timed out " << timed_out.load() << " overloaded "
                          << overloaded.load() << " closed " << rpc_closed.load() << " late replies " << rm.late_replies);
    CHECK(rpc_other.load() == 0);
    CHECK(rm.requests == requests.load());
    CHECK(rm.replies == answered.load());
    CHECK(rm.error_replies == error_replies.load());
    CHECK(rm.timeouts == timed_out.load());
    CHECK(rm.overloaded == overloaded.load());
    CHECK(rm.pending == 0);
    CHECK(rm.served + rm.served_failed == rpc_sub_delivered);
    CHECK(rm.served + rm.served_failed == rm.replies + rm.error_replies + rm.late_replies);
    // A refusal is dead-lettered by the bus and ends its request with [courier.rpc.overloaded],
    // unless the request's deadline or the shutdown's close ended it first (then it is counted
    // there: timed out, or closed).
    CHECK(rpc_sub_dropped >= overloaded.load());
    CHECK(rpc_sub_dropped <= overloaded.load() + timed_out.load() + rpc_closed.load());
    // bridge: forwarded = confirmed + dead-lettered (dropped by the bound, or handed back at stop)
    std::set<std::string> parcel_ids;
    for (auto& e : parcels_on_broker) parcel_ids.insert(e.message.event_id);
    INFO("bridge: forwarded " << parcels_forwarded.load() << " confirmed " << bs.confirmed << " dropped " << bs.dropped
                              << " handed back " << bs.dead_lettered - bs.dropped << " reconnects " << bs.reconnects
                              << " on the broker " << parcel_ids.size() << " (" << parcels_on_broker.size() << " copies)");
    CHECK(parcels_forwarded.load() == bs.confirmed + bs.dead_lettered);
    CHECK(bs.publish_errors == 0);
    CHECK(parcel_ids.size() >= bs.confirmed);  // a confirmed parcel is on the broker (resent ones once or more)

    const std::uint64_t sent = bus_pairs + actor_sent + jobs_accepted + jobs_refused + appended + append_refused +
                               sagas_started + sagas_refused + requests + parcels_forwarded;
    const std::uint64_t delivered_all = delivered + as.processed + js.completed + ack_count + completed + compensated +
                                        answered + bs.confirmed;
    const std::uint64_t dead_all = (dead - handed_back) + as.failures + actor_refused + js.dead + js.failed + js.expired +
                                   error_replies + timed_out + overloaded + bs.dropped;
    // handed back: at shutdown (the report's jobs, payloads readable; requests ended closed; the
    // bridge's outbox) or refused at once to the caller
    const std::uint64_t back_all = handed_back + actor_handed_back + js.cancelled + rpc_closed +
                                   (bs.dead_lettered - bs.dropped) + jobs_refused + append_refused + sagas_refused;
    std::printf("soak: %llu messages sent (bus pairs %llu, actor %llu, jobs %llu, stream %llu, sagas %llu, requests %llu, "
                "bridge %llu)\n"
                "soak: delivered %llu + dead-lettered/failed (recorded) %llu + handed back %llu = %llu\n"
                "soak: faults injected %llu (handler throws %llu, actor throws %llu, job throws %llu, job hangs %llu, "
                "member crashes %llu, saga step failures %llu, compensation throws %llu, responder throws %llu, "
                "responder hangs %llu, broker outages %llu)\n"
                "soak: losses: %lld\n",
                (unsigned long long)sent, (unsigned long long)bus_pairs.load(), (unsigned long long)actor_sent.load(),
                (unsigned long long)(jobs_accepted.load() + jobs_refused.load()),
                (unsigned long long)(appended.load() + append_refused.load()),
                (unsigned long long)(sagas_started.load() + sagas_refused.load()), (unsigned long long)requests.load(),
                (unsigned long long)parcels_forwarded.load(), (unsigned long long)delivered_all,
                (unsigned long long)dead_all, (unsigned long long)back_all,
                (unsigned long long)(delivered_all + dead_all + back_all), (unsigned long long)f.total(),
                (unsigned long long)f.handler_throws.load(), (unsigned long long)f.actor_throws.load(),
                (unsigned long long)f.job_throws.load(), (unsigned long long)f.job_hangs.load(),
                (unsigned long long)f.member_crashes.load(), (unsigned long long)f.saga_step_failures.load(),
                (unsigned long long)f.compensation_throws.load(), (unsigned long long)f.responder_throws.load(),
                (unsigned long long)f.responder_hangs.load(), (unsigned long long)f.broker_outages.load(),
                static_cast<long long>(sent) - static_cast<long long>(delivered_all + dead_all + back_all));
    std::fflush(stdout);
    CHECK(sent == delivered_all + dead_all + back_all);
    // every component had faults injected (a run of a few seconds may miss the rarest)
    CHECK(f.handler_throws > 0);
    CHECK(f.actor_throws > 0);
    CHECK(f.job_throws + f.job_hangs > 0);
    CHECK(f.member_crashes > 0);
    CHECK(f.saga_step_failures > 0);
    CHECK(f.responder_throws + f.responder_hangs > 0);
    CHECK(f.broker_outages > 0);
}
