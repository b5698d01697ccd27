// An order saga, as Temporal runs order processing: reserve inventory, charge the payment,
// wait for a person's approval (a signal), ship. Three runs:
//   1. the happy path, approved by a signal;
//   2. shipping fails: the completed steps are compensated in reverse (refund, then release);
//   3. a crash: the program re-executes itself as a child process that journals to a file and
//      is killed (SIGKILL) in the middle of shipping; the parent then opens the same journal
//      with a new runner, recover() resumes the saga from its last recorded step (reserve and
//      charge do not run again) and shipping is retried with the same idempotency key.
// Exits 0 only if each run ended as described.
#include <courier/courier.hpp>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;

extern char** environ;

// The saga's typed context: journaled after each step, restored by recover().
struct order {
    std::string id;
    long amount_cents = 0;
    bool carrier_refuses = false;
    std::string payment_ref;
    std::string approver;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order, id, amount_cents, carrier_refuses, payment_ref, approver)
};

// The side effects of this process, in order (the services the steps call, simulated).
struct effects {
    std::mutex mutex;
    std::vector<std::string> log;
    std::string last_ship_key;  // the full idempotency key the carrier saw last
    void add(std::string s) { std::lock_guard lock(mutex); log.push_back(std::move(s)); }
    std::vector<std::string> get() { std::lock_guard lock(mutex); return log; }
    void shipped_with(std::string key) { std::lock_guard lock(mutex); last_ship_key = std::move(key); }
    std::string ship_key() { std::lock_guard lock(mutex); return last_ship_key; }
};

static std::string crash_marker;  // set in the child: the ship step writes its key here and dies

courier::saga_definition<order> make_fulfilment(effects& fx) {
    courier::saga_definition<order> def{"shop.order.fulfilment.v1"};
    def.step("reserve", [&fx](order& o) { fx.add("reserve " + o.id); },
             [&fx](order& o) { fx.add("release " + o.id); })
        .step("charge",
              [&fx](courier::step_context<order>& s) {
                  // The idempotency key is the same for every attempt of this step, across restarts:
                  // a real payment API stores it with the charge and answers a repeat with the first result.
                  s.context().payment_ref = "ch_" + s.context().id;
                  fx.add("charge " + s.context().id + " key=" + s.idempotency_key().substr(37));
              },
              [&fx](order& o) { fx.add("refund " + o.payment_ref); })
        .wait_for_signal("approval", "order.approved", 24h,
                         [](order& o, const nlohmann::json& p) { o.approver = p.at("by").get<std::string>(); })
        .step("ship",
              [&fx](courier::step_context<order>& s) {
                  if (!crash_marker.empty()) {
                      std::ofstream(crash_marker) << s.idempotency_key() << "\n";
                      std::raise(SIGKILL);  // the process dies mid-step: no destructor, no cleanup
                  }
                  if (s.context().carrier_refuses) throw std::runtime_error("carrier refused the parcel");
                  fx.add("ship " + s.context().id + " approved by " + s.context().approver + " key=" +
                         s.idempotency_key().substr(37));
                  fx.shipped_with(s.idempotency_key());
              },
              courier::step_options{.retry = courier::retry_policy::fixed(10ms, 2)});
    return def;
}

template <class F>
static bool wait_until(F done) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

static bool finished(courier::saga_runner& sagas, const courier::uuid& id) {
    auto info = sagas.query(id);
    return info && courier::is_final(info->state);
}

// The child of run 3: starts the saga on the file journal, approves it, dies while shipping.
static int crash_child(const std::string& journal_path, const std::string& marker, const std::string& id) {
    crash_marker = marker;
    effects fx;
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::file_journal journal(journal_path, {.fsync = courier::fsync_policy::never});  // survives a process crash
    courier::saga_runner sagas(rt, {.journal = &journal});
    auto def = make_fulfilment(fx);
    (void)sagas.start(def, order{"o-3", 2500}, {.id = courier::uuid::parse(id).value()}).value();
    (void)sagas.signal(courier::uuid::parse(id).value(), "order.approved", {{"by", "carol"}});
    std::this_thread::sleep_for(10s);  // SIGKILL comes long before this
    return 3;
}

int main(int argc, char** argv) {
    if (argc == 5 && std::string(argv[1]) == "--crash-child") return crash_child(argv[2], argv[3], argv[4]);

    char tmpl[] = "/tmp/courier-order-saga-XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    const std::filesystem::path dir = tmpl;
    bool ok = true;
    auto expect = [&ok](bool cond, const char* what) {
        if (!cond) {
            std::cout << "  CHECK FAILED: " << what << "\n";
            ok = false;
        }
    };

    {
        std::cout << "== runs 1 and 2: approval by signal; a failure compensates in reverse\n";
        effects fx;
        courier::runtime rt(courier::runtime_options{.threads = 2});
        courier::file_journal journal((dir / "sagas.journal").string(), {.fsync = courier::fsync_policy::never});
        courier::saga_runner sagas(rt, {.journal = &journal});
        auto def = make_fulfilment(fx);

        auto happy = sagas.start(def, order{"o-1", 4200}).value();
        wait_until([&] { auto i = sagas.query(happy); return i && i->state == courier::saga_state::waiting; });
        std::cout << "o-1 is " << to_string(sagas.query(happy)->state) << " at '" << sagas.query(happy)->current_step << "'\n";
        (void)sagas.signal(happy, "order.approved", {{"by", "alice"}});
        wait_until([&] { return finished(sagas, happy); });

        auto failing = sagas.start(def, order{"o-2", 990, true}).value();
        (void)sagas.signal(failing, "order.approved", {{"by", "bob"}});  // kept until the saga reaches its wait
        wait_until([&] { return finished(sagas, failing); });

        for (auto& l : fx.get()) std::cout << "  " << l << "\n";
        auto h = sagas.query(happy);
        auto f = sagas.query(failing);
        std::cout << "o-1: " << to_string(h->state) << "; o-2: " << to_string(f->state) << " (" << f->error << ")\n";
        auto log = fx.get();
        expect(h->state == courier::saga_state::completed, "o-1 completed");
        expect(f->state == courier::saga_state::failed, "o-2 failed");
        // o-2's effects: reserve, charge, then (after the ship attempts) refund before release.
        std::vector<std::string> o2;
        for (auto& l : log)
            if (l.find("o-2") != std::string::npos) o2.push_back(l.substr(0, l.find(' ')));
        expect(o2 == std::vector<std::string>{"reserve", "charge", "refund", "release"}, "o-2 compensated in reverse");
    }

    {
        std::cout << "\n== run 3: a crash in the middle of shipping, then recovery from the file journal\n";
        const std::string journal_path = (dir / "crash.journal").string();
        const std::string marker = (dir / "ship-attempt.txt").string();
        const std::string id = "0194228e-b57b-7000-8000-0000000000c3";
        std::string self = "/proc/self/exe", flag = "--crash-child";
        std::vector<char*> args{argv[0], flag.data(), const_cast<char*>(journal_path.c_str()),
                                const_cast<char*>(marker.c_str()), const_cast<char*>(id.c_str()), nullptr};
        pid_t pid = 0;
        if (::posix_spawn(&pid, self.c_str(), nullptr, nullptr, args.data(), environ) != 0) return 1;
        int status = 0;
        ::waitpid(pid, &status, 0);
        const bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        std::string key_before;
        std::getline(std::ifstream(marker), key_before);
        std::cout << "child " << (killed ? "was killed by SIGKILL" : "did NOT crash") << " while shipping\n";
        expect(killed && !key_before.empty(), "the child died in the ship step");

        effects fx;  // this process's effects: what recovery runs
        courier::runtime rt(courier::runtime_options{.threads = 2});
        courier::file_journal journal(journal_path, {.fsync = courier::fsync_policy::never});
        courier::saga_runner sagas(rt, {.journal = &journal});
        auto def = make_fulfilment(fx);
        (void)sagas.add(def).value();  // register every definition before recover()
        auto report = sagas.recover().value();
        const auto uid = courier::uuid::parse(id).value();
        wait_until([&] { return finished(sagas, uid); });
        auto info = sagas.query(uid);
        std::cout << "recover(): resumed " << report.resumed << " saga(s); o-3 is " << to_string(info->state)
                  << ", approved by " << info->context.at("approver").get<std::string>() << "\n";
        std::cout << "effects after the restart:\n";
        for (auto& l : fx.get()) std::cout << "  " << l << "\n";
        std::cout << "attempt history:\n";
        for (auto& a : info->history)
            std::cout << "  " << a.step << " #" << a.attempt << (a.succeeded ? " ok" : " failed: " + a.error) << "\n";
        const bool same_key = fx.ship_key() == key_before && key_before == id + "/ship/action";
        std::cout << "crashed attempt's key: " << key_before << "\nrecovered attempt's key: " << fx.ship_key()
                  << "\nship retried with the idempotency key of the crashed attempt: " << (same_key ? "yes" : "no") << "\n";
        expect(report.resumed == 1 && info->state == courier::saga_state::completed, "o-3 recovered and completed");
        expect(fx.get().size() == 1 && fx.get()[0].starts_with("ship o-3 approved by carol"),
               "only shipping ran again; reserve and charge did not");
        expect(same_key, "same idempotency key across the crash");
    }

    std::filesystem::remove_all(dir);
    std::cout << (ok ? "order_saga: ok\n" : "order_saga: FAILED\n");
    return ok ? 0 : 1;
}
