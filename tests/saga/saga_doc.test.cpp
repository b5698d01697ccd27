// The examples of docs/sagas.md, compiled and run: the page quotes the code between the "doc:"
// markers (tests/docs/check_snippets.py checks that it does), so a snippet that stops compiling
// or stops being true fails here. Everything runs on a manual runtime: the 24 h approval
// deadline and the retry backoff move the manual clock, nothing sleeps.
#include <courier/runtime/runtime.hpp>
#include <courier/saga/saga.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

// Named, not anonymous: the JSON functions the macros define need not all be used.
namespace saga_doc {

using namespace std::chrono_literals;

// doc: context
struct order {                                   // the saga's typed context
    std::string id;
    double amount = 0;
    std::string payment_ref, approver;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order, id, amount, payment_ref, approver)
};
// doc: end

// The services the page's steps call, faked: each records what it was asked to do.
struct fake_inventory {
    std::vector<std::string> log;
    void reserve(const std::string& id) { log.push_back("reserve " + id); }
    void release(const std::string& id) { log.push_back("release " + id); }
};
struct charge_request {
    double amount = 0;
    std::string idempotency_key;
};
struct charge_reply {
    std::string id;
};
// Stores the idempotency key with each charge and answers a repeated key with the first charge.
struct fake_payments {
    std::map<std::string, std::string> by_key;
    std::vector<std::string> log;
    int lose_replies = 0;  // the next n charges reach the service, but their reply is lost
    std::string charge(double, const std::string& key) {
        auto [it, fresh] = by_key.try_emplace(key, "pay-" + std::to_string(by_key.size() + 1));
        if (fresh) log.push_back("charge " + it->second);
        if (lose_replies > 0) {
            --lose_replies;
            throw std::runtime_error("connection reset");
        }
        return it->second;
    }
    charge_reply charge(const charge_request& r) { return {charge(r.amount, r.idempotency_key)}; }
    void refund(const std::string& ref, const std::string&) { log.push_back("refund " + ref); }
};
struct fake_tickets {
    std::vector<std::string> opened;
    void open(const std::string& id) { opened.push_back(id); }
};
fake_inventory inventory;
fake_payments payments;
fake_tickets tickets;
std::vector<std::pair<std::string, courier::step_completion>> shipments;  // booked, not yet confirmed
std::vector<std::string> notified;

// A callback step: done when the carrier confirms (here: when the test says so).
void ship_async(courier::step_context<order>& s, courier::step_completion done) {
    shipments.emplace_back(s.context().id, std::move(done));
}
void notify_customer(order& o) { notified.push_back(o.id); }

void reset_services() {
    inventory = {};
    payments = {};
    tickets = {};
    shipments.clear();
    notified.clear();
}

TEST_CASE("docs/sagas.md: a fulfilment saga approved, cancelled, and escalated at its deadline", "[saga][docs]") {
    reset_services();
    const auto journal_path =
        (std::filesystem::temp_directory_path() / ("courier-saga-doc-" + std::to_string(::getpid()) + ".journal")).string();
    std::filesystem::remove(journal_path);

    // doc: definition
    courier::saga_definition<order> fulfilment{"order.fulfilment.v1"};   // checked at compile time
    fulfilment
        .step("reserve", [](order& o) { inventory.reserve(o.id); },
                         [](order& o) { inventory.release(o.id); })
        .step("charge",
              [](courier::step_context<order>& s) {
                  // The key is the same for every attempt of this step, crash reruns included.
                  s.context().payment_ref = payments.charge(s.context().amount, s.idempotency_key());
              },
              [](courier::step_context<order>& s) { payments.refund(s.context().payment_ref, s.idempotency_key()); },
              {.timeout = 30s, .retry = courier::retry_policy::exponential(1s, 2.0, 1min, 5)})
        .wait_for_signal("approval", "order.approved", 24h,
                         [](order& o, const nlohmann::json& p) { o.approver = p.at("by").get<std::string>(); },
                         courier::on_deadline::go_to("escalate"))     // or on_deadline::fail()
        .parallel([](auto& g) {                                      // succeeds when all members do
            g.step("ship", ship_async);                                // a callback step (or a coroutine)...
            g.step("notify", notify_customer);                         // ...and a plain one, together
        })
        .step("escalate", [](order& o) { if (o.approver.empty()) tickets.open(o.id); });
    // doc: end

    {
        // doc: runner
        courier::manual_clock clock;
        courier::runtime rt(courier::runtime::manual, clock);         // a program: courier::runtime rt;
        courier::file_journal journal(journal_path);                  // e.g. /var/lib/shop/sagas.journal; default: in memory
        courier::saga_runner sagas(rt, {.journal = &journal});
        sagas.add(fulfilment).value();
        sagas.recover().value();                                      // resume what the last process left unfinished

        auto id = sagas.start(fulfilment, order{"o-1", 42.0}).value();
        rt.poll();                                                    // reserve, charge, then wait for approval
        sagas.signal(id, "order.approved", {{"by", "alice"}}).value();
        rt.poll();                                                    // ship (booked) and notify run together
        auto info = sagas.query(id);                                  // state, current step, attempts, context

        auto other = sagas.start(fulfilment, order{"o-2", 10.0}).value();
        rt.poll();
        sagas.cancel(other, "customer changed their mind").value();  // compensates what completed
        rt.poll();
        // doc: end

        // o-1: approved, shipped and notified; waiting for the carrier's confirmation.
        REQUIRE(info);
        CHECK(info->state == courier::saga_state::running);
        CHECK(info->context["approver"] == "alice");
        CHECK(info->context["payment_ref"] == "pay-1");
        CHECK(notified == std::vector<std::string>{"o-1"});
        REQUIRE(shipments.size() == 1);
        CHECK(shipments[0].first == "o-1");
        shipments[0].second.succeed();
        rt.poll();
        CHECK(sagas.query(id)->state == courier::saga_state::completed);
        CHECK(tickets.opened.empty());  // approved: nothing to escalate

        // o-2: cancelled while it waited, so its charge and reservation were undone in reverse order.
        auto cancelled = sagas.query(other).value();
        CHECK(cancelled.state == courier::saga_state::cancelled);
        CHECK(cancelled.error == "cancelled: customer changed their mind");
        CHECK(payments.log == std::vector<std::string>{"charge pay-1", "charge pay-2", "refund pay-2"});
        CHECK(inventory.log == std::vector<std::string>{"reserve o-1", "reserve o-2", "release o-2"});

        // o-3: nobody approves it within 24 h, so the saga goes on at "escalate".
        auto late = sagas.start(fulfilment, order{"o-3", 5.0}).value();
        rt.poll();
        CHECK(sagas.query(late)->state == courier::saga_state::waiting);
        rt.advance(24h);
        CHECK(sagas.query(late)->state == courier::saga_state::completed);
        CHECK(tickets.opened == std::vector<std::string>{"o-3"});
        CHECK(notified.size() == 1);  // the deadline branch skipped shipping and the notification
    }

    // The journal holds every saga's records; a restarted process finds nothing left to resume.
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);
    courier::file_journal journal(journal_path);
    courier::saga_runner sagas(rt, {.journal = &journal});
    REQUIRE(sagas.add(fulfilment));
    auto report = sagas.recover();
    REQUIRE(report);
    CHECK(report->resumed == 0);
    CHECK(report->finished == 3);
    std::filesystem::remove(journal_path);
}

TEST_CASE("docs/sagas.md: a step retried after a lost reply charges once, by its idempotency key", "[saga][docs]") {
    reset_services();
    payments.lose_replies = 1;  // the first attempt's charge goes through, its reply does not
    courier::saga_definition<order> pay{"order.payment.v1"};
    pay.step("reserve", [](order& o) { inventory.reserve(o.id); })
        // doc: idempotent-step
        .step("charge", [](courier::step_context<order>& s) {
            auto r = payments.charge({.amount = s.context().amount, .idempotency_key = s.idempotency_key()});
            s.context().payment_ref = r.id;       // the same id on a repeated call
        })
        // doc: end
        .step("notify", notify_customer);

    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);
    courier::saga_runner sagas(rt);
    auto id = sagas.start(pay, order{"o-9", 30.0}).value();
    rt.run_timers();  // the failed attempt, its backoff on the manual clock, the retry
    auto info = sagas.query(id).value();
    CHECK(info.state == courier::saga_state::completed);
    CHECK(payments.log == std::vector<std::string>{"charge pay-1"});  // charged once
    CHECK(info.context["payment_ref"] == "pay-1");
    std::vector<std::uint32_t> charge_attempts;
    for (auto& a : info.history)
        if (a.step == "charge") charge_attempts.push_back(a.attempt);
    CHECK(charge_attempts == std::vector<std::uint32_t>{1, 2});
    CHECK(info.history[1].error.find("connection reset") != std::string::npos);
}

}  // namespace saga_doc
