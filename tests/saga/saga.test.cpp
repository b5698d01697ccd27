// The saga runner on a manual runtime: success, failure at each step, compensation order and
// failure, timeouts, retries, signals, parallel groups, cancellation, coroutine steps, events.
// Time only moves when a test moves it; nothing sleeps.
#include <courier/runtime/runtime.hpp>
#include <courier/saga/saga.hpp>

#include "saga_support.hpp"

#include <boost/asio/post.hpp>
#if defined(BOOST_ASIO_HAS_CO_AWAIT)  // not with clang 14 + libstdc++ on Boost 1.74
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#endif

#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "wait.hpp"

using namespace std::chrono_literals;

namespace {

struct order {
    std::string id;
    int amount = 0;
    std::vector<std::string> done;
    std::string approver;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order, id, amount, done, approver)
};

struct env {
    courier::manual_clock clk;
    courier::runtime rt{courier::runtime::manual, clk};
    courier::saga_runner sagas{rt};
    std::vector<std::string> trace;  // every action and compensation, in run order
};

courier::step_options no_retry() { return {.retry = courier::retry_policy::none(), .compensation_retry = courier::retry_policy::none()}; }
using saga_support::fixed;

// True when every saga in `ids` has completed.
bool all_completed(courier::saga_runner& sagas, const std::vector<courier::uuid>& ids) {
    for (auto& id : ids)
        if (sagas.query(id)->state != courier::saga_state::completed) return false;
    return true;
}

// Three compensable steps; step `fail_at` (0-based, -1: none) always throws.
courier::saga_definition<order> three_steps(env& e, int fail_at) {
    courier::saga_definition<order> def{"test.order.fulfilment.v1"};
    const char* names[] = {"reserve", "charge", "ship"};
    for (int i = 0; i < 3; ++i) {
        std::string n = names[i];
        def.step(
            n,
            [&e, n, i, fail_at](order& o) {
                e.trace.push_back(n);
                if (i == fail_at) throw std::runtime_error(n + " refused");
                o.done.push_back(n);
            },
            [&e, n](order&) { e.trace.push_back("undo " + n); }, no_retry());
    }
    return def;
}

}  // namespace

TEST_CASE("a saga runs its steps in order and completes", "[saga]") {
    env e;
    auto def = three_steps(e, -1);
    std::vector<std::string> events;
    std::vector<std::string> correlations;
    auto sub = e.rt.bus().subscribe<courier::saga_step_completed>(
        [&](const courier::saga_step_completed& ev, const courier::message_context& mc) {
            events.push_back(ev.step);
            correlations.emplace_back(mc.correlation_id());
        },
        {.mode = courier::delivery_mode::inline_call});
    auto id = e.sagas.start(def, order{"o-1", 42, {}, {}});
    REQUIRE(id);
    e.rt.poll();
    CHECK(e.trace == std::vector<std::string>{"reserve", "charge", "ship"});
    auto info = e.sagas.query(*id);
    REQUIRE(info);
    CHECK(info->state == courier::saga_state::completed);
    CHECK(info->definition == "test.order.fulfilment.v1");
    CHECK(info->context["done"] == nlohmann::json({"reserve", "charge", "ship"}));
    REQUIRE(info->history.size() == 3);
    for (auto& a : info->history) {
        CHECK(a.succeeded);
        CHECK(a.attempt == 1);
        CHECK(a.started == e.clk.now());
    }
    CHECK(events == std::vector<std::string>{"reserve", "charge", "ship"});
    for (auto& c : correlations) CHECK(c == id->to_string());
}

TEST_CASE("each transition is timed after the code that ran before it", "[saga]") {
    // One clock reading serves the records made between two calls out of the engine: a step's
    // completion and the next step's start share it, a step's own time is never lost.
    env e;
    const auto t0 = e.clk.now();
    courier::saga_definition<order> def{"test.timing.v1"};
    def.step("one", [&](order&) { e.clk.advance(1s); })
        .step("two", [&](order&) { e.clk.advance(2s); })
        .step("three", [&](order&) { e.clk.advance(4s); });
    std::vector<courier::time_point> event_times;
    auto sub = e.rt.bus().subscribe<courier::saga_step_started>(
        [&](const courier::saga_step_started&, const courier::message_context& mc) {
            event_times.push_back(mc.timestamp());
            e.clk.advance(10s);  // an inline subscriber's time is not the next record's either
        },
        {.mode = courier::delivery_mode::inline_call});
    auto id = e.sagas.start(def, order{});
    REQUIRE(id);
    e.rt.poll();
    auto info = e.sagas.query(*id);
    REQUIRE(info);
    CHECK(info->state == courier::saga_state::completed);
    CHECK(info->started_at == t0);
    REQUIRE(info->history.size() == 3);
    // one: starts at t0, its code moves 1 s; the subscriber of its start moved 10 s before that.
    CHECK(info->history[0].started == t0);
    CHECK(info->history[0].finished == t0 + 11s);
    CHECK(info->history[1].started == t0 + 11s);
    CHECK(info->history[1].finished == t0 + 23s);
    CHECK(info->history[2].started == t0 + 23s);
    CHECK(info->history[2].finished == t0 + 37s);
    CHECK(info->updated_at == t0 + 37s);
    REQUIRE(event_times.size() == 3);
    CHECK(event_times[1] == t0 + 11s);
}

TEST_CASE("sagas of one burst are timed after the code that ran before each of them", "[saga]") {
    // A burst of starts runs in one handler: a saga's first step starts at the time the saga
    // before it ended, unless code outside the engine ran in between (here a subscriber of
    // the end), which the next saga's time must include.
    env e;
    const auto t0 = e.clk.now();
    courier::saga_definition<order> def{"test.burst.timing.v1"};
    def.step("one", [&](order&) { e.clk.advance(1s); });
    int ended = 0;
    auto sub = e.rt.bus().subscribe<courier::saga_completed>(
        [&](const courier::saga_completed&) {
            if (++ended == 2) e.clk.advance(10s);  // after the second saga only
        },
        {.mode = courier::delivery_mode::inline_call});
    std::vector<courier::uuid> ids;
    for (int i = 0; i < 3; ++i) ids.push_back(e.sagas.start(def, order{}).value());
    e.rt.poll();
    std::vector<courier::saga_info> infos;
    for (auto& id : ids) infos.push_back(*e.sagas.query(id));
    for (auto& i : infos) {
        REQUIRE(i.state == courier::saga_state::completed);
        REQUIRE(i.history.size() == 1);
    }
    CHECK(infos[0].history[0].started == t0);
    CHECK(infos[0].updated_at == t0 + 1s);
    CHECK(infos[1].history[0].started == t0 + 1s);  // where the first one ended
    CHECK(infos[1].updated_at == t0 + 2s);
    CHECK(infos[2].history[0].started == t0 + 12s);  // after the subscriber's 10 s
    CHECK(infos[2].updated_at == t0 + 13s);
}

TEST_CASE("a runner keeps the newest finished sagas for query, whole, and forgets the oldest", "[saga]") {
    courier::manual_clock clk;
    courier::runtime rt{courier::runtime::manual, clk};
    courier::saga_runner sagas{rt, {.retain_finished = 2}};
    courier::saga_definition<order> def{"test.retain.v1"};
    def.step("a", [](order& o) { o.done.push_back("a"); })
        .step("b", [](order& o) {
            if (o.amount < 0) throw std::runtime_error("negative amount");
            o.done.push_back("b");
        }, [](order& o) { o.done.push_back("undo b"); }, no_retry());
    std::vector<courier::uuid> ids;
    for (int i = 0; i < 3; ++i)
        ids.push_back(sagas.start(def, order{"o-" + std::to_string(i), i == 2 ? -1 : i, {}, {}},
                                  {.correlation_id = i == 1 ? "corr-1" : ""}).value());
    auto running = sagas.query(ids[0]);
    REQUIRE(running);
    CHECK(running->state == courier::saga_state::running);
    rt.poll();
    CHECK_FALSE(sagas.query(ids[0]));  // the oldest finished one is forgotten
    CHECK(sagas.list().size() == 2);
    auto done = sagas.query(ids[1]);
    REQUIRE(done);
    CHECK(done->state == courier::saga_state::completed);
    CHECK(done->definition == "test.retain.v1");
    CHECK(done->correlation_id == "corr-1");
    CHECK(done->current_step == "b");
    CHECK(done->context["done"] == nlohmann::json({"a", "b"}));
    REQUIRE(done->history.size() == 2);
    CHECK(done->history[1].step == "b");
    CHECK(done->history[1].succeeded);
    CHECK(done->error.empty());
    CHECK(done->started_at == clk.now());
    auto failed = sagas.query(ids[2]);
    REQUIRE(failed);
    CHECK(failed->state == courier::saga_state::failed);
    CHECK(failed->correlation_id == ids[2].to_string());
    CHECK(failed->error.find("negative amount") != std::string::npos);
    REQUIRE(failed->history.size() == 2);
    CHECK_FALSE(failed->history[1].succeeded);
    CHECK(failed->history[1].error.find("negative amount") != std::string::npos);
    CHECK(failed->context["done"] == nlohmann::json({"a"}));  // the failed attempt's change is discarded
    // A finished saga refuses signals and cancels; a forgotten one is not found.
    auto sig = sagas.signal(ids[1], "late");
    REQUIRE_FALSE(sig);
    CHECK(sig.error().code == courier::errc::invalid_state);
    auto cancel = sagas.cancel(ids[2]);
    REQUIRE_FALSE(cancel);
    CHECK(cancel.error().code == courier::errc::invalid_state);
    auto gone = sagas.cancel(ids[0]);
    REQUIRE_FALSE(gone);
    CHECK(gone.error().code == courier::errc::not_found);
    // A retained id cannot be started again.
    auto again = sagas.start(def, order{}, {.id = ids[1]});
    REQUIRE_FALSE(again);
    CHECK(again.error().code == courier::errc::duplicate);
}

TEST_CASE("a saga that fails at a step compensates the completed steps in reverse order", "[saga]") {
    for (int fail_at = 0; fail_at < 3; ++fail_at) {
        DYNAMIC_SECTION("failing at step " << fail_at) {
            env e;
            auto def = three_steps(e, fail_at);
            auto id = e.sagas.start(def, order{"o-2", 1, {}, {}}).value();
            e.rt.poll();
            std::vector<std::string> want;
            const char* names[] = {"reserve", "charge", "ship"};
            for (int i = 0; i <= fail_at; ++i) want.push_back(names[i]);
            for (int i = fail_at - 1; i >= 0; --i) want.push_back(std::string("undo ") + names[i]);
            CHECK(e.trace == want);
            auto info = e.sagas.query(id).value();
            CHECK(info.state == courier::saga_state::failed);
            CHECK(info.error.find(std::string(names[fail_at]) + " refused") != std::string::npos);
            // The context is the one after the last completed step.
            CHECK(info.context["done"].size() == static_cast<std::size_t>(fail_at));
        }
    }
}

TEST_CASE("a compensation that keeps failing leaves the saga compensation_failed with a dead letter", "[saga]") {
    env e;
    int refund_calls = 0;
    courier::saga_definition<order> def{"test.order.refund.v1"};
    def.step("charge", [&](order&) { e.trace.push_back("charge"); },
             [&](order&) -> courier::result<void> {
                 ++refund_calls;
                 return courier::unexpected(courier::errc::handler_failed, "bank offline");
             },
             {.retry = courier::retry_policy::none(), .compensation_retry = fixed(1s, 3)})
        .step("ship", [](order&) { throw std::runtime_error("no truck"); }, no_retry());
    std::vector<std::string> failed_events;
    auto sub = e.rt.bus().subscribe<courier::saga_compensation_failed>(
        [&](const courier::saga_compensation_failed& ev) { failed_events.push_back(ev.error); },
        {.mode = courier::delivery_mode::inline_call});
    auto id = e.sagas.start(def, order{}).value();
    e.rt.run_timers();
    CHECK(refund_calls == 3);
    auto info = e.sagas.query(id).value();
    CHECK(info.state == courier::saga_state::compensation_failed);
    CHECK(info.error.find("[courier.saga.compensation_failed]") == 0);
    CHECK(info.error.find("bank offline") != std::string::npos);
    REQUIRE(failed_events.size() == 1);
    auto dead = e.rt.bus().dead_letters().list("courier.saga/test.order.refund.v1");
    REQUIRE(dead.size() == 1);
    CHECK(dead[0].errors.size() == 3);
    CHECK(dead[0].message.event_type == "courier.saga.compensation_failed.v1");
    CHECK(dead[0].message.metadata.correlation_id == id.to_string());
}

TEST_CASE("a step is retried by its policy, with backoff on the clock, and each attempt is recorded", "[saga]") {
    env e;
    int calls = 0;
    courier::saga_definition<order> def{"test.retry.v1"};
    def.step("flaky", [&](order&) {
        if (++calls < 3) throw std::runtime_error("try again");
    }, {.retry = fixed(10s, 5)});
    auto id = e.sagas.start(def, order{}).value();
    const auto t0 = e.clk.now();
    e.rt.poll();
    CHECK(calls == 1);
    e.rt.advance(9s);
    CHECK(calls == 1);
    e.rt.advance(1s);
    CHECK(calls == 2);
    e.rt.advance(10s);
    CHECK(calls == 3);
    auto info = e.sagas.query(id).value();
    CHECK(info.state == courier::saga_state::completed);
    REQUIRE(info.history.size() == 3);
    CHECK(info.history[0].error == "try again");
    CHECK(info.history[0].started == t0);
    CHECK(info.history[1].started == t0 + 10s);
    CHECK(info.history[2].started == t0 + 20s);
    CHECK(info.history[2].succeeded);
}

TEST_CASE("a non-retryable error fails the step at once", "[saga]") {
    env e;
    int calls = 0;
    auto policy = fixed(1s, 5);
    policy.is_retryable = courier::non_retryable<std::invalid_argument>();
    courier::saga_definition<order> def{"test.nonretry.v1"};
    def.step("validate", [&](order&) {
        ++calls;
        throw std::invalid_argument("bad card");
    }, {.retry = policy});
    auto id = e.sagas.start(def, order{}).value();
    e.rt.run_timers();
    CHECK(calls == 1);
    CHECK(e.sagas.query(id)->state == courier::saga_state::failed);
}

TEST_CASE("an asynchronous step that overruns its start-to-close timeout is retried", "[saga]") {
    env e;
    std::vector<courier::step_completion> pending;
    std::vector<std::string> keys;
    courier::saga_definition<order> def{"test.timeout.v1"};
    def.step("call", [&](courier::step_context<order>& s, courier::step_completion done) {
        keys.push_back(s.idempotency_key());
        if (s.attempt() == 1) pending.push_back(done);  // never completes in time
        else done.succeed();
    }, {.timeout = 5s, .retry = fixed(1s, 3)});
    auto id = e.sagas.start(def, order{}).value();
    e.rt.poll();
    REQUIRE(pending.size() == 1);
    e.rt.advance(4s);
    CHECK(e.sagas.query(id)->state == courier::saga_state::running);
    e.rt.advance(1s);  // timeout
    auto info = e.sagas.query(id).value();
    REQUIRE(info.history.size() >= 1);
    CHECK(info.history[0].error.find("[courier.saga.step_timeout]") == 0);
    e.rt.advance(1s);  // retry
    pending[0].succeed();  // the late completion of attempt 1 is ignored
    e.rt.poll();
    info = e.sagas.query(id).value();
    CHECK(info.state == courier::saga_state::completed);
    CHECK(info.history.size() == 2);
    REQUIRE(keys.size() == 2);
    CHECK(keys[0] == keys[1]);
    CHECK(keys[0] == id.to_string() + "/call/action");
}

TEST_CASE("a timeout that exhausts the retries fails and compensates the saga", "[saga]") {
    env e;
    std::vector<courier::step_completion> hold;
    courier::saga_definition<order> def{"test.timeout.fail.v1"};
    def.step("reserve", [&](order&) { e.trace.push_back("reserve"); }, [&](order&) { e.trace.push_back("undo reserve"); })
        .step("call", [&](courier::step_context<order>&, courier::step_completion done) { hold.push_back(done); },
              {.timeout = 2s, .retry = fixed(1s, 2)});
    auto id = e.sagas.start(def, order{}).value();
    e.rt.run_timers();
    CHECK(hold.size() == 2);
    CHECK(e.trace == std::vector<std::string>{"reserve", "undo reserve"});
    CHECK(e.sagas.query(id)->state == courier::saga_state::failed);
}

TEST_CASE("an attempt that timed out may still use its step context after the saga has finished", "[saga]") {
    env e;
    std::vector<courier::step_completion> hold;
    std::vector<courier::step_context<order>> given;  // what each attempt's code keeps
    courier::saga_definition<order> def{"test.timeout.late.v1"};
    def.step("call", [&](courier::step_context<order>& s, courier::step_completion done) {
        s.context().done.push_back("called");
        given.push_back(s);
        hold.push_back(done);
    }, {.timeout = 2s, .retry = fixed(1s, 2)});
    auto id = e.sagas.start(def, order{}).value();
    e.rt.run_timers();
    REQUIRE(hold.size() == 2);
    REQUIRE(e.sagas.query(id)->state == courier::saga_state::failed);
    // The attempts' code goes on after the saga finished: the contexts it was given are still
    // there (ASan checks), and nothing it writes reaches the saga.
    for (auto& s : given) {
        s.context().done.push_back("late");
        boost::asio::post(s.executor(), [] {});
    }
    for (auto& h : hold) h.succeed();
    e.rt.poll();
    auto info = e.sagas.query(id);
    REQUIRE(info);
    CHECK(info->state == courier::saga_state::failed);
    CHECK(info->context["done"] == nlohmann::json::array());
    REQUIRE(info->history.size() == 2);
    CHECK_FALSE(info->history[1].succeeded);
}

namespace {
courier::saga_definition<order> approval_saga(env& e, courier::on_deadline at_deadline) {
    courier::saga_definition<order> def{"test.approval.v1"};
    def.step("reserve", [&](order&) { e.trace.push_back("reserve"); }, [&](order&) { e.trace.push_back("undo reserve"); })
        .wait_for_signal("approval", "order.approved", 1h,
                         [](order& o, const nlohmann::json& p) { o.approver = p.at("by").get<std::string>(); },
                         std::move(at_deadline))
        .step("ship", [&](order&) { e.trace.push_back("ship"); })
        .step("escalate", [&](order&) { e.trace.push_back("escalate"); });
    return def;
}
}  // namespace

TEST_CASE("a signal before the deadline resumes a waiting saga", "[saga][signal]") {
    env e;
    auto id = e.sagas.start(approval_saga(e, courier::on_deadline::fail()), order{}).value();
    e.rt.poll();
    auto info = e.sagas.query(id).value();
    CHECK(info.state == courier::saga_state::waiting);
    CHECK(info.current_step == "approval");
    e.rt.advance(59min);
    REQUIRE(e.sagas.signal(id, "order.approved", {{"by", "alice"}}));
    e.rt.poll();
    info = e.sagas.query(id).value();
    CHECK(info.state == courier::saga_state::completed);
    CHECK(info.context["approver"] == "alice");
    CHECK(e.trace == std::vector<std::string>{"reserve", "ship", "escalate"});
    CHECK(e.rt.timers().pending() == 0);  // the deadline timer went away
}

TEST_CASE("a signal that arrives before its wait is kept until the saga reaches it", "[saga][signal]") {
    env e;
    courier::step_completion* gate = nullptr;
    std::optional<courier::step_completion> held;
    courier::saga_definition<order> def{"test.early.v1"};
    def.step("slow", [&](courier::step_context<order>&, courier::step_completion c) { held.emplace(c); })
        .wait_for_signal("approval", "go", 1h, [](order& o, const nlohmann::json& p) { o.approver = p.get<std::string>(); });
    auto id = e.sagas.start(def, order{}).value();
    e.rt.poll();
    REQUIRE(e.sagas.signal(id, "go", "bob"));
    e.rt.poll();
    REQUIRE(held);
    held->succeed();
    e.rt.poll();
    (void)gate;
    auto info = e.sagas.query(id).value();
    CHECK(info.state == courier::saga_state::completed);
    CHECK(info.context["approver"] == "bob");
}

TEST_CASE("a signal wait that reaches its deadline fails the saga, and a later signal is refused", "[saga][signal]") {
    env e;
    auto id = e.sagas.start(approval_saga(e, courier::on_deadline::fail()), order{}).value();
    e.rt.poll();
    e.rt.advance(1h);
    auto info = e.sagas.query(id).value();
    CHECK(info.state == courier::saga_state::failed);
    CHECK(info.error.find("[courier.saga.deadline_passed]") == 0);
    CHECK(e.trace == std::vector<std::string>{"reserve", "undo reserve"});
    auto late = e.sagas.signal(id, "order.approved", {{"by", "alice"}});
    REQUIRE_FALSE(late);
    CHECK(late.error() == courier::errc::invalid_state);
}

TEST_CASE("a signal wait can take a named branch at its deadline", "[saga][signal]") {
    env e;
    auto id = e.sagas.start(approval_saga(e, courier::on_deadline::go_to("escalate")), order{}).value();
    e.rt.poll();
    e.rt.advance(1h);
    CHECK(e.sagas.query(id)->state == courier::saga_state::completed);
    CHECK(e.trace == std::vector<std::string>{"reserve", "escalate"});
}

TEST_CASE("a parallel group runs its members together and succeeds when all do", "[saga][parallel]") {
    env e;
    std::vector<courier::step_completion> held;
    courier::saga_definition<order> def{"test.parallel.v1"};
    def.parallel([&](auto& g) {
           g.step("charge", [&](courier::step_context<order>&, courier::step_completion c) { e.trace.push_back("charge"); held.push_back(c); });
           g.step("pack", [&](courier::step_context<order>&, courier::step_completion c) { e.trace.push_back("pack"); held.push_back(c); });
       })
        .step("ship", [&](order&) { e.trace.push_back("ship"); });
    auto id = e.sagas.start(def, order{}).value();
    e.rt.poll();
    CHECK(e.trace == std::vector<std::string>{"charge", "pack"});  // both started before either ended
    held[1].succeed();
    e.rt.poll();
    CHECK(e.trace.size() == 2);
    held[0].succeed();
    e.rt.poll();
    CHECK(e.trace == std::vector<std::string>{"charge", "pack", "ship"});
    CHECK(e.sagas.query(id)->state == courier::saga_state::completed);
}

TEST_CASE("a failing member of a parallel group compensates the members that completed", "[saga][parallel]") {
    env e;
    std::optional<courier::step_completion> slow;
    courier::saga_definition<order> def{"test.parallel.fail.v1"};
    def.step("reserve", [&](order&) { e.trace.push_back("reserve"); }, [&](order&) { e.trace.push_back("undo reserve"); })
        .parallel([&](auto& g) {
            g.step("charge", [&](courier::step_context<order>&, courier::step_completion c) { slow.emplace(c); },
                   [&](order&) { e.trace.push_back("undo charge"); });
            g.step("pack", [](order&) { throw std::runtime_error("no box"); }, [&](order&) { e.trace.push_back("undo pack"); },
                   no_retry());
        });
    auto id = e.sagas.start(def, order{}).value();
    e.rt.poll();
    // pack failed; charge is still in flight, so compensation waits for it.
    CHECK(e.sagas.query(id)->state == courier::saga_state::running);
    slow->succeed();
    e.rt.poll();
    CHECK(e.trace == std::vector<std::string>{"reserve", "undo charge", "undo reserve"});
    CHECK(e.sagas.query(id)->state == courier::saga_state::failed);
}

TEST_CASE("cancelling a saga compensates its completed steps and ends it cancelled", "[saga]") {
    env e;
    std::vector<std::string> events;
    auto sub = e.rt.bus().subscribe<courier::saga_cancelled>([&](const courier::saga_cancelled& ev) { events.push_back(ev.error); },
                                                            {.mode = courier::delivery_mode::inline_call});
    auto id = e.sagas.start(approval_saga(e, courier::on_deadline::fail()), order{}).value();
    e.rt.poll();
    REQUIRE(e.sagas.cancel(id, "customer changed their mind"));
    e.rt.poll();
    auto info = e.sagas.query(id).value();
    CHECK(info.state == courier::saga_state::cancelled);
    CHECK(info.error == "cancelled: customer changed their mind");
    CHECK(e.trace == std::vector<std::string>{"reserve", "undo reserve"});
    CHECK(events.size() == 1);
    CHECK(e.rt.timers().pending() == 0);
    CHECK(e.sagas.cancel(id).error() == courier::errc::invalid_state);
    CHECK(e.sagas.cancel(courier::uuid::from_u64(1, 2)).error() == courier::errc::not_found);
}

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
TEST_CASE("steps can be Asio coroutines and may return result<void>", "[saga][coroutine]") {
    env e;
    courier::saga_definition<order> def{"test.coroutine.v1"};
    def.step("await", [&](courier::step_context<order>& s) -> boost::asio::awaitable<void> {
           co_await boost::asio::post(s.executor(), boost::asio::use_awaitable);
           s.context().done.push_back("await");
       })
        .step("refuse", [&](courier::step_context<order>&) -> boost::asio::awaitable<courier::result<void>> {
            co_return courier::unexpected(courier::errc::handler_failed, "coroutine says no");
        }, no_retry());
    auto id = e.sagas.start(def, order{}).value();
    e.rt.poll();
    auto info = e.sagas.query(id).value();
    CHECK(info.state == courier::saga_state::failed);
    CHECK(info.error.find("coroutine says no") != std::string::npos);
    CHECK(info.history[0].succeeded);
}
#endif

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
TEST_CASE("a coroutine step still suspended when its runner goes resumes with its context intact", "[saga][coroutine]") {
    courier::manual_clock clk;
    courier::runtime rt{courier::runtime::manual, clk};
    boost::asio::steady_timer gate(rt.executor(), std::chrono::hours(1));  // opened by the test
    bool resumed = false;
    courier::saga_definition<order> def{"test.coroutine.orphan.v1"};
    def.step("wait", [&](courier::step_context<order>& s) -> boost::asio::awaitable<void> {
        boost::system::error_code ec;
        co_await gate.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
        s.context().done.push_back("resumed");  // the context it was given is still there (ASan checks)
        resumed = true;
    });
    {
        courier::saga_runner sagas{rt};
        REQUIRE(sagas.start(def, order{}));
        rt.poll();  // the coroutine starts and waits at the gate
        CHECK_FALSE(resumed);
    }
    gate.cancel();
    rt.poll();
    CHECK(resumed);
}
#endif

TEST_CASE("definitions are validated", "[saga]") {
    env e;
    courier::saga_definition<order> dup{"test.dup.v1"};
    dup.step("a", [](order&) {}).step("a", [](order&) {});
    auto r = e.sagas.start(dup, order{});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == courier::saga_errc::invalid_definition);
    courier::saga_definition<order> back{"test.back.v1"};
    back.step("a", [](order&) {}).wait_for_signal("w", "s", 1s, courier::on_deadline::go_to("a"));
    CHECK_FALSE(e.sagas.add(back));
}

TEST_CASE("a saga's runtime threads run steps for many sagas at once", "[saga][threads]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::saga_runner sagas(rt);
    std::atomic<int> steps{0};
    courier::saga_definition<order> def{"test.threads.v1"};
    for (auto n : {"a", "b", "c"}) def.step(n, [&](order& o) { o.amount += 1; steps.fetch_add(1); });
    std::vector<courier::uuid> ids;
    for (int i = 0; i < 200; ++i) ids.push_back(sagas.start(def, order{}).value());
    CHECK(courier_test::wait_until([&] { return all_completed(sagas, ids); }));
    CHECK(steps.load() == 600);
    for (auto& id : ids) CHECK(sagas.query(id)->context["amount"] == 3);
}

TEST_CASE("a runtime says when one thread runs every handler", "[saga][threads]") {
    courier::manual_clock clk;
    CHECK(courier::runtime(courier::runtime::manual, clk).single_threaded());
    CHECK(courier::runtime(courier::runtime_options{.threads = 1}).single_threaded());
    CHECK_FALSE(courier::runtime(courier::runtime_options{.threads = 2}).single_threaded());
    boost::asio::io_context io;
    CHECK_FALSE(courier::runtime(io).single_threaded());  // nobody promised one thread
    CHECK(courier::runtime(io, courier::runtime_options{.threads = 1}).single_threaded());
}

namespace {
// A context that counts its live copies: a saga never run must still be released.
struct counted {
    static inline std::atomic<int> alive{0};
    int n = 0;
    counted() { ++alive; }
    explicit counted(int v) : n(v) { ++alive; }
    counted(const counted& o) : n(o.n) { ++alive; }
    counted& operator=(const counted&) = default;
    ~counted() { --alive; }
    friend void to_json(nlohmann::json& j, const counted& c) { j = {{"n", c.n}}; }
    friend void from_json(const nlohmann::json& j, counted& c) { c.n = j.at("n").get<int>(); }
};
}  // namespace

TEST_CASE("on a one-thread runtime a burst of starts runs in start order, from any thread, and sagas never run are released with their executor", "[saga][threads]") {
    std::vector<int> ran;
    courier::saga_definition<counted> def{"test.kick.burst.v1"};
    def.step("note", [&](counted& c) { ran.push_back(c.n); });
    {
        boost::asio::io_context io(1);
        courier::runtime rt(io, courier::runtime_options{.threads = 1});
        courier::saga_runner sagas(rt);
        for (int i = 0; i < 300; ++i) REQUIRE(sagas.start(def, counted{i}));
        io.run();
        REQUIRE(ran.size() == 300);
        for (int i = 0; i < 300; ++i) CHECK(ran[static_cast<std::size_t>(i)] == i);
        // Starts from four threads while the executor runs: each saga runs once.
        ran.clear();
        io.restart();
        auto guard = boost::asio::make_work_guard(io);
        std::thread runner([&] { io.run(); });
        std::vector<std::thread> starters;
        std::vector<std::vector<courier::uuid>> ids(4);
        for (int t = 0; t < 4; ++t)
            starters.emplace_back([&, t] {
                for (int i = 0; i < 250; ++i) ids[static_cast<std::size_t>(t)].push_back(sagas.start(def, counted{t * 1000 + i}).value());
            });
        for (auto& t : starters) t.join();
        CHECK(courier_test::wait_until([&] {
            for (auto& v : ids)
                if (!all_completed(sagas, v)) return false;
            return true;
        }));
        guard.reset();
        runner.join();
        CHECK(ran.size() == 1000);
        for (int t = 0; t < 4; ++t) {  // each thread's sagas in its start order
            int last = -1;
            for (int n : ran)
                if (n / 1000 == t) {
                    CHECK(n > last);
                    last = n;
                }
        }
    }
    CHECK(counted::alive == 0);
    {
        courier::manual_clock clk;
        courier::runtime rt(courier::runtime::manual, clk);  // never polled
        courier::saga_runner sagas(rt);
        for (int i = 0; i < 10; ++i) REQUIRE(sagas.start(def, counted{i}));
        CHECK(counted::alive >= 10);
    }  // the runner goes, then the executor with the sagas' first run still queued
    CHECK(ran.size() == 1000);
    CHECK(counted::alive == 0);
}

namespace {
// A context whose copy throws once a step has poisoned it: the engine's copy for the journal
// then throws out of the saga's first stay.
struct poisonable {
    int n = 0;
    bool poisoned = false;
    poisonable() = default;
    explicit poisonable(int v) : n(v) {}
    poisonable(const poisonable& o) : n(o.n), poisoned(o.poisoned) {
        if (poisoned) throw std::runtime_error("copy of a poisoned context");
    }
    poisonable& operator=(const poisonable&) = default;
    friend void to_json(nlohmann::json& j, const poisonable& c) { j = {{"n", c.n}}; }
    friend void from_json(const nlohmann::json& j, poisonable& c) { c.n = j.at("n").get<int>(); }
};
}  // namespace

TEST_CASE("on a one-thread runtime a saga whose first stay throws does not keep the next ones of its burst from running", "[saga][threads]") {
    std::vector<int> ran;
    courier::saga_definition<poisonable> def{"test.kick.throw.v1"};
    def.step("note", [&](poisonable& c) {
        ran.push_back(c.n);
        if (c.n == 1) c.poisoned = true;
    });
    boost::asio::io_context io(1);
    courier::runtime rt(io, courier::runtime_options{.threads = 1});
    courier::saga_runner sagas(rt);
    std::vector<courier::uuid> ids;
    for (int i = 0; i < 3; ++i) ids.push_back(sagas.start(def, poisonable{i}).value());
    CHECK_THROWS_WITH(io.run(), "copy of a poisoned context");  // as from a post of its own
    CHECK(ran == std::vector<int>{0, 1, 2});
    CHECK(sagas.query(ids[0])->state == courier::saga_state::completed);
    CHECK(sagas.query(ids[2])->state == courier::saga_state::completed);
    io.restart();
    CHECK(io.poll() == 0);  // nothing left behind
}

TEST_CASE("on a one-thread runtime sagas share one strand, and events follow subscriptions made between sagas", "[saga][threads]") {
    boost::asio::io_context io(1);
    courier::runtime rt(io, courier::runtime_options{.threads = 1});
    courier::saga_runner sagas(rt);
    std::vector<std::string> trace;
    std::optional<courier::step_completion> held;
    courier::saga_definition<order> def{"test.one.thread.v1"};
    def.step("plain", [&](order& o) { trace.push_back("plain " + o.id); })
#if defined(BOOST_ASIO_HAS_CO_AWAIT)
        .step("coroutine", [&](courier::step_context<order>& s) -> boost::asio::awaitable<void> {
            co_await boost::asio::post(s.executor(), boost::asio::use_awaitable);
            trace.push_back("coroutine " + s.context().id);
        })
#else
        .step("coroutine", [&](courier::step_context<order>& s) { trace.push_back("coroutine " + s.context().id); })
#endif
        .step("callback", [&](courier::step_context<order>& s, courier::step_completion done) {
            trace.push_back("callback " + s.context().id);
            held.emplace(std::move(done));
        });
    auto run = [&] {
        io.restart();
        io.run();
    };
    auto finish = [&](const courier::uuid& id) {
        REQUIRE(held);
        std::thread([c = *held] { c.succeed(); }).join();  // completed from another thread
        held.reset();
        run();
        CHECK(sagas.query(id)->state == courier::saga_state::completed);
    };
    auto quiet = sagas.start(def, order{"a", 0, {}, {}}).value();
    run();
    finish(quiet);

    std::vector<std::string> events;
    auto sub = rt.bus().subscribe(
        "courier.saga.#",
        [&](const courier::message_context& mc) {
            events.push_back(std::string(mc.event_type()) + " " + std::string(mc.correlation_id()));
        },
        {.mode = courier::delivery_mode::inline_call});
    auto loud = sagas.start(def, order{"b", 0, {}, {}}, {.correlation_id = "order-b"}).value();
    run();
    finish(loud);
    CHECK(events.size() == 8);  // started, 3 x (step_started, step_completed), completed
    for (auto& e : events) CHECK(e.find(" order-b") != std::string::npos);
    CHECK(events.front().rfind("courier.saga.started.v1", 0) == 0);
    CHECK(events.back().rfind("courier.saga.completed.v1", 0) == 0);

    sub.unsubscribe();
    events.clear();
    auto after = sagas.start(def, order{"c", 0, {}, {}}).value();
    run();
    finish(after);
    CHECK(events.empty());
    CHECK(trace == std::vector<std::string>{"plain a", "coroutine a", "callback a", "plain b", "coroutine b",
                                            "callback b", "plain c", "coroutine c", "callback c"});
}

TEST_CASE("an owned pool of one thread runs sagas whose steps complete from other threads", "[saga][threads]") {
    courier::runtime rt(courier::runtime_options{.threads = 1});
    REQUIRE(rt.single_threaded());
    courier::saga_runner sagas(rt);
    std::atomic<int> steps{0};
    std::vector<std::thread> helpers;
    std::mutex helpers_mutex;
    courier::saga_definition<order> def{"test.one.pool.v1"};
    def.step("local", [&](order& o) { o.amount += 1; steps.fetch_add(1); })
        .step("remote", [&](courier::step_context<order>& s, courier::step_completion done) {
            s.context().amount += 10;
            std::lock_guard lock(helpers_mutex);
            helpers.emplace_back([&steps, done] {
                steps.fetch_add(1);
                done.succeed();
            });
        })
        .step("last", [&](order& o) { o.amount += 100; steps.fetch_add(1); });
    std::vector<courier::uuid> ids;
    for (int i = 0; i < 100; ++i) ids.push_back(sagas.start(def, order{}).value());
    CHECK(courier_test::wait_until([&] { return all_completed(sagas, ids); }));
    CHECK(steps.load() == 300);
    for (auto& id : ids) CHECK(sagas.query(id)->context["amount"] == 111);
    std::lock_guard lock(helpers_mutex);
    for (auto& t : helpers) t.join();
}

TEST_CASE("queries and journal loads read sagas while their records are being written", "[saga][threads]") {
    // Each saga's step fails 20 times with no delay: 43 records, written on the runtime's
    // threads while this thread queries the sagas and loads the journal (ThreadSanitizer checks
    // that readers see only published records).
    courier::memory_journal journal;
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::saga_runner sagas(rt, {.journal = &journal});
    auto policy = courier::retry_policy::fixed(0ms, 30);
    policy.jitter = 0;
    std::atomic<int> failures{0};
    courier::saga_definition<order> def{"test.threads.records.v1"};
    def.step("flaky", [&](courier::step_context<order>& s) {
        ++s.context().amount;  // discarded when the attempt fails
        if (s.attempt() <= 20) {
            failures.fetch_add(1);
            throw std::runtime_error("again");
        }
    }, {.retry = policy});
    std::vector<courier::uuid> ids;
    for (int i = 0; i < 20; ++i) ids.push_back(sagas.start(def, order{}).value());
    std::size_t seen = 0;
    CHECK(courier_test::wait_until([&] {
        for (auto& id : ids) {
            auto info = sagas.query(id).value();
            for (std::size_t k = 1; k < info.history.size(); ++k) CHECK(info.history[k].attempt == k + 1);
            seen += info.history.size();
        }
        auto loaded = journal.load();
        REQUIRE(loaded);
        for (auto& r : *loaded) CHECK(r.seq >= 1);
        return all_completed(sagas, ids);
    }));
    CHECK(seen > 0);
    CHECK(failures.load() == 20 * 20);
    for (auto& id : ids) {
        auto info = sagas.query(id).value();
        CHECK(info.history.size() == 21);
        CHECK(info.context["amount"] == 1);  // each retry starts from the last journaled context
    }
    CHECK(journal.sagas() == 0);
}

TEST_CASE("a signal with an empty name and no payload is kept until its wait, like any other", "[saga][signal]") {
    env e;
    std::optional<courier::step_completion> held;
    courier::saga_definition<order> def{"test.signal.empty.v1"};
    def.step("slow", [&](courier::step_context<order>&, courier::step_completion done) { held.emplace(done); })
        .wait_for_signal("w", "", 1h)
        .step("after", [&](order&) { e.trace.push_back("after"); });
    auto id = e.sagas.start(def, order{}).value();
    e.rt.poll();
    REQUIRE(e.sagas.signal(id, ""));  // arrives while "slow" runs
    e.rt.poll();
    REQUIRE(held);
    held->succeed();
    e.rt.poll();
    CHECK(e.sagas.query(id)->state == courier::saga_state::completed);
    CHECK(e.trace == std::vector<std::string>{"after"});
}

TEST_CASE("runners on different threads register and run the same definition at once", "[saga][threads]") {
    courier::saga_definition<order> def{"test.threads.shared.v1"};
    def.step("a", [](order& o) { ++o.amount; }).step("b", [](order& o) { ++o.amount; });
    // True when all 50 sagas completed with two attempts each (Catch's CHECK is for this thread).
    auto run = [&def] {
        courier::runtime rt(courier::runtime_options{.threads = 1});
        courier::saga_runner sagas(rt);
        std::vector<courier::uuid> ids;
        for (int i = 0; i < 50; ++i) {
            auto id = sagas.start(def, order{});
            if (!id) return false;
            ids.push_back(*id);
        }
        if (!courier_test::wait_until([&] { return all_completed(sagas, ids); })) return false;
        for (auto& id : ids)
            if (sagas.query(id)->history.size() != 2) return false;
        return true;
    };
    bool other_ok = false;
    std::thread other([&] { other_ok = run(); });
    CHECK(run());
    other.join();
    CHECK(other_ok);
}
