// Journals and recovery: the file journal's format, torn and corrupt records, recovery on a new
// runtime (in-memory and file), and a child process SIGKILLed in the middle of a saga whose
// parent recovers it from the file journal.
#include <courier/runtime/runtime.hpp>
#include <courier/saga/saga.hpp>

#include "saga_support.hpp"

#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct trip {
    std::vector<std::string> booked;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(trip, booked)
};

std::string temp_path(const std::string& tag) {
    static int n = 0;
    auto p = "/tmp/courier-saga-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n) + ".journal";
    std::remove(p.c_str());
    return p;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

using saga_support::fixed;

// The `started` record of saga `id` of definition `def`, with an empty trip as its context.
courier::journal_record started_record(const courier::uuid& id, std::string def) {
    courier::journal_record r;
    r.saga_id = id;
    r.seq = 1;
    r.op = courier::journal_op::started;
    r.definition = std::move(def);
    r.context_json = {{"booked", nlohmann::json::array()}};
    return r;
}

// The error of recover() on `journal` with a one-step definition named `def`.
courier::error recovery_error(courier::saga_journal& journal, const std::string& def) {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::saga_runner sagas(rt, {.journal = &journal});
    courier::saga_definition<trip> d{courier::event_name::parse(def).value()};
    d.step("car", [](trip&) {});
    REQUIRE(sagas.add(d));
    auto back = sagas.recover();
    REQUIRE_FALSE(back);
    CHECK(sagas.list().empty());
    return back.error();
}

struct calls {
    std::vector<std::string> ran;
    std::vector<std::string> keys;
};

// flight, hotel (callback: held while `hold_hotel`), car.
courier::saga_definition<trip> trip_saga(calls& c, std::optional<courier::step_completion>* hold_hotel) {
    courier::saga_definition<trip> def{"test.trip.booking.v1"};
    def.step("flight", [&c](courier::step_context<trip>& s) {
           c.ran.push_back("flight");
           c.keys.push_back(s.idempotency_key());
           s.context().booked.push_back("flight");
       })
        .step("hotel", [&c, hold_hotel](courier::step_context<trip>& s, courier::step_completion done) {
            c.ran.push_back("hotel");
            c.keys.push_back(s.idempotency_key());
            s.context().booked.push_back("hotel");
            if (hold_hotel) hold_hotel->emplace(done);
            else done.succeed();
        })
        .step("car", [&c](courier::step_context<trip>& s) {
            c.ran.push_back("car");
            s.context().booked.push_back("car");
        });
    return def;
}

}  // namespace

TEST_CASE("the file journal writes one checksummed JSON line per record and reads them back", "[saga][journal]") {
    auto path = temp_path("format");
    {
        courier::file_journal j(path, {.fsync = courier::fsync_policy::never});
        courier::journal_record r;
        r.saga_id = courier::uuid::from_u64(7, 9);
        r.seq = 1;
        r.op = courier::journal_op::started;
        r.at = courier::time_point(std::chrono::seconds(1735689600));
        r.definition = "test.trip.booking.v1";
        r.context_json = {{"booked", nlohmann::json::array()}};
        REQUIRE(j.append(r));
        r.seq = 2;
        r.op = courier::journal_op::step_failed;
        r.step = "hotel";
        r.attempt = 2;
        r.error = "no rooms";
        r.due = r.at + 5s;
        REQUIRE(j.append(r));
        auto back = j.load();
        REQUIRE(back);
        REQUIRE(back->size() == 2);
        CHECK((*back)[1].step == "hotel");
        CHECK((*back)[1].error == "no rooms");
        CHECK((*back)[1].due == r.due);
        CHECK((*back)[0].context_json == r.context_json);
    }
    auto text = slurp(path);
    CHECK(std::count(text.begin(), text.end(), '\n') == 2);
    CHECK(text.rfind("{\"crc\":\"", 0) == 0);
    std::remove(path.c_str());
}

TEST_CASE("a torn last record is ignored and cut off, and a corrupt earlier one is an error naming file and line", "[saga][journal]") {
    auto path = temp_path("torn");
    courier::journal_record r;
    r.saga_id = courier::uuid::from_u64(1, 1);
    r.op = courier::journal_op::started;
    r.definition = "test.trip.booking.v1";
    std::string good;
    for (int i = 1; i <= 3; ++i) {
        r.seq = static_cast<std::uint64_t>(i);
        good += courier::file_journal::encode(r);
    }
    SECTION("a last line without its newline") {
        std::ofstream(path, std::ios::binary) << good << good.substr(0, 30);
        courier::file_journal j(path);
        CHECK(j.repaired_torn_tail());
        auto back = j.load();
        REQUIRE(back);
        CHECK(back->size() == 3);
        CHECK(slurp(path) == good);  // cut back to the last whole record
    }
    SECTION("a last line failing its checksum") {
        auto bad = good;
        bad[bad.size() - 10] = 'X';
        std::ofstream(path, std::ios::binary) << bad;
        courier::file_journal j(path);
        auto back = j.load();
        REQUIRE(back);
        CHECK(back->size() == 2);
    }
    SECTION("a damaged record in the middle") {
        auto bad = good;
        const auto second = bad.find('\n') + 1;
        bad[second + 40] ^= 0x01;  // flip a bit inside record 2
        std::ofstream(path, std::ios::binary) << bad;
        courier::file_journal j(path);
        auto back = j.load();
        REQUIRE_FALSE(back);
        CHECK(back.error().code == courier::saga_errc::journal_corrupt);
        CHECK(back.error().id() == "courier.saga.journal_corrupt");
        CHECK(back.error().message.find(path + " line 2") != std::string::npos);
        // ... and recover() reports it rather than crashing.
        courier::manual_clock clk;
        courier::runtime rt(courier::runtime::manual, clk);
        courier::saga_runner sagas(rt, {.journal = &j});
        auto rec = sagas.recover();
        REQUIRE_FALSE(rec);
        CHECK(rec.error().message.find("line 2") != std::string::npos);
    }
    SECTION("garbage that is not a record") {
        std::ofstream(path, std::ios::binary) << "hello\n" << good;
        courier::file_journal j(path);
        auto back = j.load();
        REQUIRE_FALSE(back);
        CHECK(back.error().message.find("line 1: not a journal record") != std::string::npos);
    }
    std::remove(path.c_str());
}

TEST_CASE("recover() on a new runtime resumes an in-flight step with the same idempotency key", "[saga][recovery]") {
    auto path = temp_path("recover");
    calls first, second;
    courier::uuid id;
    {
        courier::file_journal j(path, {.fsync = courier::fsync_policy::never});
        courier::manual_clock clk;
        courier::runtime rt(courier::runtime::manual, clk);
        courier::saga_runner sagas(rt, {.journal = &j});
        std::optional<courier::step_completion> held;
        id = sagas.start(trip_saga(first, &held), trip{}).value();
        rt.poll();
        CHECK(first.ran == std::vector<std::string>{"flight", "hotel"});
        // the "process" ends here with hotel in flight
    }
    courier::file_journal j(path, {.fsync = courier::fsync_policy::never});
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::saga_runner sagas(rt, {.journal = &j});
    auto def = trip_saga(second, nullptr);
    REQUIRE(sagas.add(def));
    auto report = sagas.recover();
    REQUIRE(report);
    CHECK(report->resumed == 1);
    rt.poll();
    CHECK(second.ran == std::vector<std::string>{"hotel", "car"});
    CHECK(second.keys.front() == first.keys.back());
    auto info = sagas.query(id).value();
    CHECK(info.state == courier::saga_state::completed);
    CHECK(info.context["booked"] == nlohmann::json({"flight", "hotel", "car"}));
    // history: flight, hotel (interrupted), hotel (rerun, same attempt number), car
    REQUIRE(info.history.size() == 4);
    CHECK(info.history[1].error == "interrupted by a restart");
    CHECK(info.history[2].attempt == 1);
    std::remove(path.c_str());
}

TEST_CASE("recover() restores retry timers and signal waits at their recorded times", "[saga][recovery]") {
    courier::memory_journal journal;
    courier::manual_clock clk;
    int attempts = 0;
    courier::saga_definition<trip> def{"test.trip.wait.v1"};
    def.step("flaky", [&](trip&) {
           if (++attempts == 1) throw std::runtime_error("busy");
       }, {.retry = fixed(10s, 3)})
        .wait_for_signal("confirm", "trip.confirmed", 1h)
        .step("done", [](trip& t) { t.booked.push_back("done"); });
    courier::uuid id;
    {
        courier::runtime rt(courier::runtime::manual, clk);
        courier::saga_runner sagas(rt, {.journal = &journal});
        id = sagas.start(def, trip{}).value();
        rt.poll();
        CHECK(attempts == 1);  // the retry is due in 10 s
    }
    {
        courier::runtime rt(courier::runtime::manual, clk);
        courier::saga_runner sagas(rt, {.journal = &journal});
        REQUIRE(sagas.add(def));
        REQUIRE(sagas.recover()->resumed == 1);
        rt.advance(9s);
        CHECK(attempts == 1);
        rt.advance(1s);
        CHECK(attempts == 2);
        CHECK(sagas.query(id)->state == courier::saga_state::waiting);
        rt.advance(30min);
    }
    courier::runtime rt(courier::runtime::manual, clk);
    courier::saga_runner sagas(rt, {.journal = &journal});
    REQUIRE(sagas.add(def));
    REQUIRE(sagas.recover()->resumed == 1);
    rt.advance(29min);
    CHECK(sagas.query(id)->state == courier::saga_state::waiting);  // 1 min of the deadline left
    REQUIRE(sagas.signal(id, "trip.confirmed"));
    rt.poll();
    CHECK(sagas.query(id)->state == courier::saga_state::completed);
    CHECK(attempts == 2);
    CHECK(journal.sagas() == 0);  // finished sagas leave the in-memory journal
}

TEST_CASE("the memory journal finds a live runner's sagas in its table, keeps what a runner leaves unfinished, and finished sagas on request", "[saga][journal]") {
    courier::manual_clock clk;
    courier::saga_definition<trip> def{"test.trip.table.v1"};
    def.step("hotel", [](trip& t) { t.booked.push_back("hotel"); })
        .wait_for_signal("confirm", "trip.confirmed", 1h)
        .step("done", [](trip& t) { t.booked.push_back("done"); });
    courier::memory_journal journal;
    courier::memory_journal keep(true);
    courier::uuid waiting, other, kept;
    {
        courier::runtime rt(courier::runtime::manual, clk);
        courier::saga_runner sagas(rt, {.journal = &journal});
        courier::saga_runner second(rt, {.journal = &journal});  // two runners on one journal
        courier::saga_runner keeper(rt, {.journal = &keep});
        waiting = sagas.start(def, trip{}).value();
        other = second.start(def, trip{}).value();
        kept = keeper.start(def, trip{}).value();
        CHECK(journal.sagas() == 2);  // both runners' sagas, from the moment they start
        CHECK(journal.load()->size() == 2);
        rt.poll();
        CHECK(journal.sagas() == 2);
        CHECK(journal.load()->size() == 2 * 4);  // started, hotel started and completed, waiting
        REQUIRE(keeper.signal(kept, "trip.confirmed"));
        rt.poll();
        REQUIRE(keeper.query(kept)->state == courier::saga_state::completed);
        CHECK(keep.sagas() == 1);  // a finished saga stays in a journal that keeps them
        CHECK(keep.load()->size() == 8);
        REQUIRE(second.signal(other, "trip.confirmed"));
        rt.poll();
        REQUIRE(second.query(other)->state == courier::saga_state::completed);
        CHECK(journal.sagas() == 1);  // and leaves one that does not
        CHECK(journal.load()->size() == 4);
    }
    // The runners went: the journal holds the saga they left waiting, and nothing else.
    CHECK(journal.sagas() == 1);
    auto left = journal.load().value();
    REQUIRE(left.size() == 4);
    for (auto& r : left) CHECK(r.saga_id == waiting);
    CHECK(keep.sagas() == 1);
    {
        // Two runners recover the same saga (a process must not, but the journal lists it once).
        courier::runtime rt(courier::runtime::manual, clk);
        auto first = std::make_unique<courier::saga_runner>(rt, courier::saga_options{.journal = &journal});
        REQUIRE(first->add(def));
        REQUIRE(first->recover()->resumed == 1);
        courier::saga_runner second(rt, {.journal = &journal});
        REQUIRE(second.add(def));
        REQUIRE(second.recover()->resumed == 1);
        CHECK(journal.sagas() == 1);
        first.reset();  // its log was replaced by the second runner's: not handed over again
        CHECK(journal.sagas() == 1);
        CHECK(journal.load()->size() == 4);
    }

    courier::runtime rt(courier::runtime::manual, clk);
    courier::saga_runner sagas(rt, {.journal = &journal});
    REQUIRE(sagas.add(def));
    auto report = sagas.recover().value();
    CHECK(report.resumed == 1);
    CHECK(journal.sagas() == 1);  // the recovered saga's log took the place of the old one
    CHECK(sagas.recover()->skipped == 1);  // listed by the runner and the journal: once
    REQUIRE(sagas.signal(waiting, "trip.confirmed"));
    rt.poll();
    CHECK(sagas.query(waiting)->state == courier::saga_state::completed);
    CHECK(journal.sagas() == 0);
    courier::saga_runner reader(rt, {.journal = &keep});
    REQUIRE(reader.add(def));
    CHECK(reader.recover()->finished == 1);
    CHECK(reader.query(kept)->context["booked"] == nlohmann::json{"hotel", "done"});
}

TEST_CASE("a deadline that passed while the process was down fires at recovery", "[saga][recovery]") {
    courier::memory_journal journal;
    courier::manual_clock clk;
    courier::saga_definition<trip> def{"test.trip.late.v1"};
    def.wait_for_signal("confirm", "trip.confirmed", 1h).step("done", [](trip&) {});
    courier::uuid id;
    {
        courier::runtime rt(courier::runtime::manual, clk);
        courier::saga_runner sagas(rt, {.journal = &journal});
        id = sagas.start(def, trip{}).value();
        rt.poll();
    }
    clk.advance(2h);
    courier::runtime rt(courier::runtime::manual, clk);
    courier::saga_runner sagas(rt, {.journal = &journal});
    REQUIRE(sagas.add(def));
    REQUIRE(sagas.recover());
    rt.poll();
    CHECK(sagas.query(id)->state == courier::saga_state::failed);
}

TEST_CASE("recover() reports sagas whose definition is not registered", "[saga][recovery]") {
    courier::memory_journal journal;
    courier::manual_clock clk;
    calls c;
    std::optional<courier::step_completion> held;
    {
        courier::runtime rt(courier::runtime::manual, clk);
        courier::saga_runner sagas(rt, {.journal = &journal});
        (void)sagas.start(trip_saga(c, &held), trip{}).value();
        rt.poll();
    }
    courier::runtime rt(courier::runtime::manual, clk);
    courier::saga_runner sagas(rt, {.journal = &journal});
    auto report = sagas.recover();
    REQUIRE(report);
    CHECK(report->resumed == 0);
    CHECK(report->unknown_definitions == std::vector<std::string>{"test.trip.booking.v1"});
}

#if !defined(__SANITIZE_THREAD__)
TEST_CASE("a saga killed with SIGKILL in another process is recovered from its file journal", "[saga][recovery][fork]") {
    auto path = temp_path("fork");
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // The child: run the saga until step 2 is in flight, tell the parent, then wait to die.
        ::close(fds[0]);
        {
            courier::file_journal j(path, {.fsync = courier::fsync_policy::never});
            courier::manual_clock clk;
            courier::runtime rt(courier::runtime::manual, clk);
            courier::saga_runner sagas(rt, {.journal = &j});
            courier::saga_definition<trip> def{"test.trip.booking.v1"};
            def.step("flight", [](trip& t) { t.booked.push_back("flight"); })
                .step("hotel", [&](courier::step_context<trip>& s) {
                    const auto line = s.idempotency_key() + "\n";
                    (void)!::write(fds[1], line.data(), line.size());
                    for (;;) ::pause();  // blocked inside step 2 until SIGKILL
                })
                .step("car", [](trip& t) { t.booked.push_back("car"); });
            (void)sagas.start(def, trip{}).value();
            rt.poll();
        }
        ::_exit(3);  // never reached
    }
    ::close(fds[1]);
    std::string key;
    pollfd pfd{fds[0], POLLIN, 0};
    const auto limit = std::chrono::steady_clock::now() + 30s;
    while (key.empty() || key.back() != '\n') {
        REQUIRE(std::chrono::steady_clock::now() < limit);
        if (::poll(&pfd, 1, 1000) <= 0) continue;
        char buf[256];
        const auto n = ::read(fds[0], buf, sizeof buf);
        REQUIRE(n > 0);
        key.append(buf, static_cast<std::size_t>(n));
    }
    key.pop_back();
    ::close(fds[0]);
    REQUIRE(::kill(child, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));

    calls c;
    courier::file_journal j(path, {.fsync = courier::fsync_policy::never});
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    courier::saga_runner sagas(rt, {.journal = &j});
    auto def = trip_saga(c, nullptr);
    REQUIRE(sagas.add(def));
    auto report = sagas.recover();
    REQUIRE(report);
    CHECK(report->resumed == 1);
    rt.poll();
    CHECK(c.ran == std::vector<std::string>{"hotel", "car"});  // flight never runs again
    REQUIRE(c.keys.size() == 1);
    CHECK(c.keys[0] == key);  // the in-flight step reran with the same idempotency key
    auto ids = sagas.list();
    REQUIRE(ids.size() == 1);
    auto info = sagas.query(ids[0]).value();
    CHECK(info.state == courier::saga_state::completed);
    CHECK(info.context["booked"] == nlohmann::json({"flight", "hotel", "car"}));
    std::remove(path.c_str());
}
#endif

TEST_CASE("the file journal's direct encoder writes exactly what the JSON tree would", "[saga][journal]") {
    courier::journal_record r;
    r.saga_id = courier::uuid::parse("01890a5d-ac96-774b-bcce-b302099a8057").value();
    r.seq = 12;
    r.op = courier::journal_op::started;
    r.at = courier::time_point(std::chrono::nanoseconds(1735689600123456789));
    auto same = [](const courier::journal_record& rec) {
        const auto line = courier::file_journal::encode(rec);
        const auto json = courier::detail::record_to_json(rec).dump();
        char crc[9];
        std::snprintf(crc, sizeof crc, "%08x", courier::detail::crc32(json));
        CHECK(line == "{\"crc\":\"" + std::string(crc) + "\",\"rec\":" + json + "}\n");
        auto back = courier::detail::record_from_json(nlohmann::json::parse(json));
        REQUIRE(back);
        CHECK(courier::file_journal::encode(*back) == line);
    };
    same(r);  // the fewest fields
    r.definition = "test.trip.booking.v1";
    r.correlation_id = "order-7";
    r.context_json = {{"booked", {"flight", "h\u00f4tel"}}, {"n", -3}};
    same(r);
    r.op = courier::journal_op::step_failed;
    r.step = "hotel \"grand\"\n";  // needs escaping
    r.kind = courier::attempt_kind::compensation;
    r.attempt = 4294967295u;
    r.error = "no rooms: caf\u00e9 \\ tab\t";
    r.due = courier::time_point(std::chrono::nanoseconds(-5));  // before the epoch
    same(r);
    r.op = courier::journal_op::signal_received;
    r.kind = courier::attempt_kind::signal;
    r.signal = "trip.confirmed";
    r.payload = {{"by", "alice"}, {"ok", true}, {"x", 1.5}};
    same(r);
    r.payload = nullptr;  // a signal without payload still writes "payload":null
    same(r);
    // Bytes that are not UTF-8 (an exception's what() may carry any) become U+FFFD instead of
    // throwing out of the journal; the line reads back.
    r.error = std::string("disk \xff full");
    const auto line = courier::file_journal::encode(r);
    const auto rec = line.substr(line.find("\"rec\":") + 6, line.size() - line.find("\"rec\":") - 8);
    auto back = courier::detail::record_from_json(nlohmann::json::parse(rec));
    REQUIRE(back);
    CHECK(back->error == "disk \xef\xbf\xbd full");
}

TEST_CASE("the CRC-32 of the file journal reads eight bytes a step and agrees with the byte-wise one", "[saga][journal]") {
    constexpr std::string_view text = "{\"at\":1735689600000000000,\"op\":\"started\",\"saga\":\"01890a5d-ac96\"}";
    constexpr auto at_compile_time = courier::detail::crc32(text);  // the byte-wise loop
    const std::string copy(text);
    CHECK(courier::detail::crc32(copy) == at_compile_time);
    for (std::size_t n = 0; n <= copy.size(); ++n) {  // every tail length around the 8-byte steps
        std::uint32_t c = 0xFFFFFFFFu;
        for (unsigned char ch : copy.substr(0, n)) c = courier::detail::crc32_table[(c ^ ch) & 0xFFu] ^ (c >> 8);
        CHECK(courier::detail::crc32(std::string_view(copy).substr(0, n)) == (c ^ 0xFFFFFFFFu));
    }
    CHECK(courier::detail::crc32(std::string("123456789")) == 0xCBF43926u);
}

TEST_CASE("the memory journal gives back every field, lets go of finished sagas, and keeps finished ones on request", "[saga][journal]") {
    courier::memory_journal j;
    auto id = [](std::uint64_t n) { return courier::uuid::from_u64(n, n); };
    courier::journal_record r;
    r.saga_id = id(1);
    r.seq = 1;
    r.op = courier::journal_op::started;
    r.at = courier::time_point(std::chrono::seconds(5));
    r.definition = "test.trip.booking.v1";
    r.correlation_id = "corr-1";
    r.context_json = {{"booked", nlohmann::json::array()}};
    REQUIRE(j.append(r));
    courier::journal_record s;
    s.saga_id = id(1);
    s.seq = 2;
    s.op = courier::journal_op::signal_received;
    s.step = "confirm";
    s.kind = courier::attempt_kind::signal;
    s.attempt = 1;
    s.signal = "trip.confirmed";
    s.payload = {{"by", "bob"}};
    s.error = "late";
    s.due = r.at + 3s;
    REQUIRE(j.append(s));
    auto back = j.load().value();
    REQUIRE(back.size() == 2);
    CHECK(back[0].definition == r.definition);
    CHECK(back[0].correlation_id == "corr-1");
    CHECK(back[0].context_json == r.context_json);
    CHECK(back[0].at == r.at);
    CHECK(back[1].step == "confirm");
    CHECK(back[1].kind == courier::attempt_kind::signal);
    CHECK(back[1].attempt == 1);
    CHECK(back[1].signal == "trip.confirmed");
    CHECK(back[1].payload == s.payload);
    CHECK(back[1].error == "late");
    CHECK(back[1].due == s.due);
    CHECK(back[1].saga_id == id(1));
    // Many sagas start and finish: nothing of a finished saga remains,
    // and records of interleaved sagas stay with their own saga.
    for (std::uint64_t n = 2; n < 2 + 1536; ++n) {
        courier::journal_record a;
        a.saga_id = id(n);
        a.op = courier::journal_op::started;
        a.seq = 1;
        a.definition = n % 2 ? "test.odd.v1" : "test.even.v1";
        REQUIRE(j.append(a));
        a.op = courier::journal_op::step_started;
        a.seq = 2;
        a.definition.clear();
        a.step = "s" + std::to_string(n);
        REQUIRE(j.append(a));
        if (n % 3 != 0) {  // two of three finish
            a.op = courier::journal_op::completed;
            a.seq = 3;
            a.step.clear();
            REQUIRE(j.append(a));
        }
    }
    back = j.load().value();
    std::size_t live = 0;
    for (auto& rec : back) {
        if (rec.saga_id == id(1)) continue;
        const auto n = rec.saga_id.high();
        CHECK(n % 3 == 0);
        if (rec.seq == 1) {
            ++live;
            CHECK(rec.definition == (n % 2 ? "test.odd.v1" : "test.even.v1"));
            CHECK(rec.step.empty());
        } else {
            CHECK(rec.step == "s" + std::to_string(n));
            CHECK(rec.definition.empty());
        }
    }
    CHECK(live == j.sagas() - 1);
    CHECK(back.size() == 2 + 2 * live);

    courier::memory_journal keep(true);
    r.saga_id = id(9);
    REQUIRE(keep.append(r));
    r.op = courier::journal_op::completed;
    r.seq = 2;
    REQUIRE(keep.append(r));
    CHECK(keep.load()->size() == 2);
    CHECK(keep.sagas() == 1);
}

TEST_CASE("a saga's correlation id survives recovery, and the saga id stands in when none was given", "[saga][recovery]") {
    courier::memory_journal journal;
    courier::manual_clock clk;
    courier::saga_definition<trip> def{"test.trip.corr.v1"};
    def.wait_for_signal("confirm", "trip.confirmed", 1h).step("done", [](trip&) {});
    courier::uuid given, implicit;
    {
        courier::runtime rt(courier::runtime::manual, clk);
        courier::saga_runner sagas(rt, {.journal = &journal});
        given = sagas.start(def, trip{}, {.correlation_id = "order-42"}).value();
        implicit = sagas.start(def, trip{}).value();
        rt.poll();
        CHECK(sagas.query(given)->correlation_id == "order-42");
        CHECK(sagas.query(implicit)->correlation_id == implicit.to_string());
    }
    courier::runtime rt(courier::runtime::manual, clk);
    courier::saga_runner sagas(rt, {.journal = &journal});
    REQUIRE(sagas.add(def));
    REQUIRE(sagas.recover()->resumed == 2);
    std::vector<std::pair<std::string, std::string>> seen;  // saga id, correlation id
    auto sub = rt.bus().subscribe<courier::saga_completed>(
        [&](const courier::saga_completed& ev, const courier::message_context& mc) {
            seen.emplace_back(ev.saga_id.to_string(), std::string(mc.correlation_id()));
        },
        {.mode = courier::delivery_mode::inline_call});
    REQUIRE(sagas.signal(given, "trip.confirmed"));
    REQUIRE(sagas.signal(implicit, "trip.confirmed"));
    rt.poll();
    CHECK(sagas.query(given)->correlation_id == "order-42");
    CHECK(sagas.query(implicit)->correlation_id == implicit.to_string());
    REQUIRE(seen.size() == 2);
    for (auto& [saga, corr] : seen) CHECK(corr == (saga == given.to_string() ? "order-42" : saga));
}

TEST_CASE("a saga of many records keeps them all across recovery, and its query shows every attempt", "[saga][recovery]") {
    // 25 attempts of one step: 50 records, past the log's inline records and over two chunks.
    courier::memory_journal journal;
    courier::manual_clock clk;
    int attempts = 0;
    courier::saga_definition<trip> def{"test.trip.many.v1"};
    def.step("flaky", [&](trip& t) {
           if (++attempts < 25) throw std::runtime_error("busy " + std::to_string(attempts));
           t.booked.push_back("flaky");
       }, {.retry = fixed(1s, 40)})
        .step("done", [](trip& t) { t.booked.push_back("done"); });
    courier::uuid id;
    {
        courier::runtime rt(courier::runtime::manual, clk);
        courier::saga_runner sagas(rt, {.journal = &journal});
        id = sagas.start(def, trip{}).value();
        for (int i = 0; i < 20; ++i) i == 0 ? rt.poll() : rt.advance(1s);  // 20 attempts, 1 s apart
        CHECK(attempts == 20);
        auto info = sagas.query(id).value();
        REQUIRE(info.history.size() == 20);
        CHECK(info.history[18].error == "busy 19");
        CHECK(info.history[19].error == "busy 20");  // and the retry is due
        CHECK(journal.load()->size() == 1 + 2 * 20);
    }
    courier::runtime rt(courier::runtime::manual, clk);
    courier::saga_runner sagas(rt, {.journal = &journal});
    REQUIRE(sagas.add(def));
    REQUIRE(sagas.recover()->resumed == 1);
    CHECK(journal.sagas() == 1);  // the recovered saga's log took the place of the old one
    CHECK(sagas.query(id)->history.size() == 20);
    for (int i = 0; i < 5; ++i) rt.advance(1s);
    CHECK(attempts == 25);
    auto info = sagas.query(id).value();
    CHECK(info.state == courier::saga_state::completed);
    REQUIRE(info.history.size() == 26);
    CHECK(info.history[0].error == "busy 1");
    CHECK(info.history[24].succeeded);
    CHECK(info.context["booked"] == nlohmann::json{"flaky", "done"});
    CHECK(journal.sagas() == 0);
}

TEST_CASE("a journal whose record names a step the definition does not have is refused at recovery", "[saga][recovery]") {
    courier::memory_journal journal;
    auto r = started_record(courier::uuid::from_u64(7, 7), "test.trip.renamed.v1");
    REQUIRE(journal.append(r));
    r = courier::journal_record{};
    r.saga_id = courier::uuid::from_u64(7, 7);
    r.seq = 2;
    r.op = courier::journal_op::step_started;
    r.step = "boat";
    r.attempt = 1;
    REQUIRE(journal.append(r));
    const auto e = recovery_error(journal, "test.trip.renamed.v1");
    INFO(e.message);
    CHECK(e.code == courier::saga_errc::journal_corrupt);
    CHECK(e.message.find("record 2: the definition has no step 'boat'") != std::string::npos);
    // A step record without its step is refused the same way.
    courier::memory_journal other;
    REQUIRE(other.append(started_record(courier::uuid::from_u64(8, 8), "test.trip.renamed.v1")));
    r.saga_id = courier::uuid::from_u64(8, 8);
    r.op = courier::journal_op::step_completed;
    r.step.clear();
    REQUIRE(other.append(r));
    CHECK(recovery_error(other, "test.trip.renamed.v1").message.find("a step_completed record without a step") != std::string::npos);
}

TEST_CASE("a journal record with the nil saga id is refused at recovery", "[saga][recovery]") {
    courier::memory_journal journal;
    REQUIRE(journal.append(started_record(courier::uuid{}, "test.trip.nil.v1")));
    const auto e = recovery_error(journal, "test.trip.nil.v1");
    CHECK(e.code == courier::saga_errc::journal_corrupt);
    CHECK(e.message.find("record 1 has the nil saga id") != std::string::npos);
}
