// Replays the fuzzers' seed corpus (fuzz/corpus/<name>/) and every saved regression input
// (fuzz/regressions/<name>/: inputs that once crashed a harness or broke a property) through the
// same property checks the libFuzzer harnesses run, so every plain test run guards the fixes.
#include "../../fuzz/fuzz_checks.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct property_violated : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// The checkout: the first folder holding fuzz/fuzz_checks.hpp, looking up from this source
/// file, the test executable and the working directory (ccache may make __FILE__ relative).
fs::path source_root() {
    std::vector<fs::path> starts{fs::path(__FILE__).parent_path()};
    std::error_code ec;
    if (auto exe = fs::read_symlink("/proc/self/exe", ec); !ec) starts.push_back(exe.parent_path());
    starts.push_back(fs::current_path());
    for (auto p : starts) {
        p = fs::absolute(p, ec);
        for (; !p.empty(); p = p.parent_path()) {
            if (fs::exists(p / "fuzz" / "fuzz_checks.hpp", ec)) return p;
            if (p == p.parent_path()) break;
        }
    }
    throw std::runtime_error("cannot find the courier checkout (fuzz/fuzz_checks.hpp)");
}

std::string read_input(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

using check_fn = void (*)(std::string_view);

const std::map<std::string, check_fn>& harnesses() {
    static const std::map<std::string, check_fn> m{
        {"envelope", &courier_fuzz::check_envelope},       {"cloudevent", &courier_fuzz::check_cloudevent},
        {"event_name", &courier_fuzz::check_event_name},   {"topic_pattern", &courier_fuzz::check_topic_pattern},
        {"pattern_match", &courier_fuzz::check_pattern_match}, {"saga_journal", &courier_fuzz::check_saga_journal},
        {"bridge_inbound", &courier_fuzz::check_bridge_inbound},
    };
    return m;
}

/// Runs every file of fuzz/<folder>/<harness>/ through its harness's checks; returns how many.
std::size_t replay(const std::string& folder, const std::string& name) {
    courier_fuzz::on_failure() = [](const std::string& what) { throw property_violated(what); };
    const auto dir = source_root() / "fuzz" / folder / name;
    std::size_t n = 0;
    if (!fs::is_directory(dir)) return 0;
    std::vector<fs::path> files;
    for (const auto& f : fs::directory_iterator(dir))
        if (f.is_regular_file()) files.push_back(f.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        INFO("input " << f.string());
        const std::string bytes = read_input(f);
        CHECK_NOTHROW(harnesses().at(name)(bytes));
        ++n;
    }
    courier_fuzz::on_failure() = &courier_fuzz::abort_on_failure;
    return n;
}

}  // namespace

TEST_CASE("every fuzz harness has a seed corpus and a harness source", "[reliability][fuzz]") {
    const auto root = source_root();
    for (const auto& [name, fn] : harnesses()) {
        INFO(name);
        CHECK(fs::exists(root / "fuzz" / (name + ".fuzz.cpp")));
        CHECK(replay("corpus", name) > 0);
    }
    // and every harness source is listed here, so none escapes the replay
    for (const auto& f : fs::directory_iterator(root / "fuzz")) {
        const auto file = f.path().filename().string();
        if (file.size() > 9 && file.substr(file.size() - 9) == ".fuzz.cpp") {
            INFO(file);
            CHECK(harnesses().count(file.substr(0, file.size() - 9)) == 1);
        }
    }
}

TEST_CASE("inputs that once broke a fuzz harness are replayed and now pass", "[reliability][fuzz]") {
    std::size_t total = 0;
    for (const auto& [name, fn] : harnesses()) total += replay("regressions", name);
    // Each regression folder holds the inputs found by scripts/fuzz; see docs/reliability.md.
    SUCCEED("replayed " << total << " regression inputs");
}

TEST_CASE("the reference matcher used by the fuzzer agrees with the documented examples", "[reliability][fuzz]") {
    using courier_fuzz::reference_match;
    CHECK(reference_match("order.*.v1", "order.created.v1"));
    CHECK_FALSE(reference_match("order.*.v1", "order.line.added.v1"));
    CHECK(reference_match("order.#", "order"));
    CHECK(reference_match("order.#", "order.line.added.v1"));
    CHECK(reference_match("#.v2", "user.profile.updated.v2"));
    CHECK(reference_match("#", ""));
    CHECK_FALSE(reference_match("*", ""));
    CHECK_FALSE(reference_match("order.>", "order"));
    CHECK(reference_match("order.>", "order.a.b"));
    CHECK(reference_match("a.#.b.#.c", "a.x.b.y.b.c"));
    CHECK_FALSE(reference_match("a.#.b", "a.x.c"));
    CHECK(reference_match("a.*", "a."));  // an empty last segment is a segment
}

TEST_CASE("a broken property is reported, not swallowed", "[reliability][fuzz]") {
    // The checks must be able to fail: feed the journal reader's property a forged case.
    courier_fuzz::on_failure() = [](const std::string& what) { throw property_violated(what); };
    CHECK_THROWS_AS(courier_fuzz::fail("forced"), property_violated);
    courier_fuzz::on_failure() = &courier_fuzz::abort_on_failure;
}
