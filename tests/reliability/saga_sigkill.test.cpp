// SIGKILL at random points of a long run of sagas. The parent spawns this test executable again
// as a child process (the hidden test case below) that recovers the sagas of a file journal and
// starts new ones; the parent kills it with SIGKILL after a random delay, several times, then
// lets a last child finish. Every step writes its idempotency key to a ledger file before it
// returns, so the parent can check the effects as well as the journal: every saga that started
// ends completed or compensated, exactly once, and no compensation undoes a step that never ran.
#include "support.hpp"

#include <courier/runtime/runtime.hpp>
#include <courier/saga/file_journal.hpp>
#include <courier/saga/saga.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

using namespace std::chrono_literals;
using reliability::slurp;

namespace {

struct parcel {
    std::uint64_t n = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(parcel, n)
};

courier::uuid saga_id(std::uint64_t n) { return courier::uuid::from_u64(0x5a6a'0000'0000'0000ULL, n); }

/// Sagas with n % 3 == 0 fail at "ship" and compensate "charge" then "reserve".
bool fails(std::uint64_t n) { return n % 3 == 0; }

void append_line(int fd, const std::string& line) {
    const std::string text = line + "\n";
    // One write() per line on an O_APPEND file: a kill cannot interleave or tear it.
    if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) std::abort();
}

void spin_for(std::chrono::microseconds d) {
    const auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
    }
}

courier::saga_definition<parcel> parcel_saga(int ledger) {
    courier::step_options o;
    o.retry = courier::retry_policy::none();
    o.compensation_retry = courier::retry_policy::fixed(1ms, 10);
    auto effect = [ledger](courier::step_context<parcel>& s) {
        spin_for(300us);  // some work, so that kills land inside steps as well as between them
        append_line(ledger, s.idempotency_key());
    };
    courier::saga_definition<parcel> def{"reliability.parcel.delivery.v1"};
    def.step("reserve", effect, effect, o)
        .step("charge", effect, effect, o)
        .step(
            "ship",
            [effect](courier::step_context<parcel>& s) {
                if (fails(s.context().n)) throw std::runtime_error("no courier available");
                effect(s);
            },
            effect, o);
    return def;
}

std::string env_or(const char* name, const char* fallback = "") {
    const char* v = std::getenv(name);
    return v ? v : fallback;
}

pid_t spawn_child(const std::string& journal, const std::string& ledger, std::uint64_t first, std::uint64_t count) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    env.push_back("COURIER_SAGA_CHILD_JOURNAL=" + journal);
    env.push_back("COURIER_SAGA_CHILD_LEDGER=" + ledger);
    env.push_back("COURIER_SAGA_CHILD_FIRST=" + std::to_string(first));
    env.push_back("COURIER_SAGA_CHILD_COUNT=" + std::to_string(count));
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string exe = "/proc/self/exe", name = "saga child process: recover and run sagas on a file journal";
    std::string out = "--out", devnull = "/dev/null";
    char* argv[] = {exe.data(), name.data(), out.data(), devnull.data(), nullptr};
    pid_t pid = -1;
    if (::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()) != 0) return -1;
    return pid;
}

/// Waits for `pid` until `limit`; returns its status, or -1 on timeout (the child is then killed).
int wait_child(pid_t pid, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(1ms);
    }
}

}  // namespace

// The child: runs only when spawned by the test below (hidden from the normal test list).
TEST_CASE("saga child process: recover and run sagas on a file journal", "[.][saga-child]") {
    const auto journal_path = env_or("COURIER_SAGA_CHILD_JOURNAL");
    REQUIRE(!journal_path.empty());
    const int ledger = ::open(env_or("COURIER_SAGA_CHILD_LEDGER").c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(ledger >= 0);
    const std::uint64_t first = std::stoull(env_or("COURIER_SAGA_CHILD_FIRST", "0"));
    const std::uint64_t count = std::stoull(env_or("COURIER_SAGA_CHILD_COUNT", "0"));
    // A process crash never loses a written record, so no fsync is needed for this test.
    courier::file_journal journal(journal_path, {.fsync = courier::fsync_policy::never});
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::saga_runner sagas(rt, {.journal = &journal, .publish_events = false});
    const auto def = parcel_saga(ledger);
    REQUIRE(sagas.add(def));
    auto recovered = sagas.recover();
    REQUIRE(recovered);
    for (std::uint64_t n = first; n < first + count; ++n) {
        REQUIRE(sagas.start(def, parcel{n}, {.id = saga_id(n)}));
    }
    REQUIRE(reliability::wait_until(
        [&] {
            for (auto& id : sagas.list()) {
                auto info = sagas.query(id);
                if (info && !courier::is_final(info->state)) return false;
            }
            return true;
        },
        120s));
    ::close(ledger);
}

TEST_CASE("sagas on a file journal survive repeated SIGKILLs: each ends completed or compensated, once",
          "[reliability][saga][sigkill]") {
    reliability::watchdog dog("SIGKILL saga run", 170s);
    const std::string base = "/tmp/courier-rel-sigkill-" + std::to_string(::getpid());
    const std::string journal = base + ".journal", ledger = base + ".ledger";
    std::remove(journal.c_str());
    std::remove(ledger.c_str());
    const std::uint64_t per_child = 150 / static_cast<std::uint64_t>(reliability::scale) + 30;
    const int wanted_kills = reliability::scale == 1 ? 6 : 4;
    std::random_device rd;
    const auto seed = rd();
    std::mt19937 rng(seed);
    INFO("seed " << seed);
    // Kill after 2..80 ms (more under sanitizers, which make the child slower to get going).
    std::uniform_int_distribution<int> delay_ms(2, 80 * reliability::scale);

    std::uint64_t next = 0;
    int kills = 0, spawns = 0, clean_exits = 0;
    while (kills < wanted_kills && spawns < wanted_kills * 4) {
        const pid_t child = spawn_child(journal, ledger, next, per_child);
        REQUIRE(child > 0);
        ++spawns;
        next += per_child;
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));  // the fault's random timing
        ::kill(child, SIGKILL);
        const int status = wait_child(child, 60s);
        REQUIRE(status != -1);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
            ++kills;
        } else {
            REQUIRE(WIFEXITED(status));
            REQUIRE(WEXITSTATUS(status) == 0);  // it finished before the kill: fine, and counted
            ++clean_exits;
        }
    }
    CHECK(kills == wanted_kills);
    // The last child recovers whatever is left and runs to the end.
    const pid_t last = spawn_child(journal, ledger, next, per_child);
    REQUIRE(last > 0);
    next += per_child;
    const int status = wait_child(last, 120s);
    REQUIRE(status != -1);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);

    // The journal: every saga that started has exactly one final record, the right one.
    courier::file_journal j(journal, {.fsync = courier::fsync_policy::never});
    auto records = j.load();
    REQUIRE(records);
    std::map<courier::uuid, std::vector<courier::journal_op>> ops;
    for (auto& r : *records) ops[r.saga_id].push_back(r.op);
    std::map<courier::uuid, std::uint64_t> number;
    for (std::uint64_t n = 0; n < next; ++n) number[saga_id(n)] = n;
    std::size_t completed = 0, compensated = 0;
    for (auto& [id, list] : ops) {
        REQUIRE(number.count(id) == 1);
        const auto n = number[id];
        INFO("saga " << n);
        CHECK(std::count(list.begin(), list.end(), courier::journal_op::started) == 1);
        std::vector<courier::journal_op> finals;
        for (auto op : list)
            if (courier::is_final(op)) finals.push_back(op);
        REQUIRE(finals.size() == 1);
        CHECK(courier::is_final(list.back()));
        CHECK(finals[0] == (fails(n) ? courier::journal_op::failed : courier::journal_op::completed));
        completed += finals[0] == courier::journal_op::completed;
        compensated += finals[0] == courier::journal_op::failed;
    }
    // The sagas the killed children were given but never started left no record at all.
    CHECK(ops.size() >= per_child);  // at least the last child's

    // The ledger: distinct effects per saga are exactly the expected ones. A step rerun after a
    // kill repeats its idempotency key (at-least-once, as documented), never a new one.
    std::map<courier::uuid, std::set<std::string>> effects;
    std::size_t lines = 0, reruns = 0;
    {
        std::istringstream in(slurp(ledger));
        std::string line;
        while (std::getline(in, line)) {
            ++lines;
            const auto slash = line.find('/');
            REQUIRE(slash != std::string::npos);
            auto id = courier::uuid::parse(line.substr(0, slash));
            REQUIRE(id);
            if (!effects[*id].insert(line.substr(slash + 1)).second) ++reruns;
        }
    }
    for (auto& [id, set] : effects) {
        REQUIRE(ops.count(id) == 1);  // no effect without a journaled saga
        const auto n = number[id];
        INFO("saga " << n);
        const std::set<std::string> want =
            fails(n) ? std::set<std::string>{"reserve/action", "charge/action", "charge/compensation", "reserve/compensation"}
                     : std::set<std::string>{"reserve/action", "charge/action", "ship/action"};
        CHECK(set == want);
    }
    for (auto& [id, list] : ops) {
        // a saga with no effect line died before its first step finished writing: only possible
        // for one killed early; the final child must have finished it, so every saga has effects
        CHECK(effects.count(id) == 1);
    }
    WARN("SIGKILL run: " << spawns << " children killed " << kills << " times (" << clean_exits
                         << " finished first), then one ran to the end; " << ops.size() << " sagas: " << completed
                         << " completed, " << compensated << " compensated; " << lines << " effects, " << reruns
                         << " reruns after a kill");
    std::remove(journal.c_str());
    std::remove(ledger.c_str());
}
