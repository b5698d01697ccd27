// courier-bench: runs the registered scenarios (bench/scenarios/*.cpp), courier against its
// baselines in the same process, and prints a table, JSON lines or CSV. `--smoke` is what
// CTest runs: every scenario with tiny counts, its JSON checked, timings never asserted.
#include "harness/driver.hpp"
#include "harness/report.hpp"

#include <unistd.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace cb = courier_bench;

namespace {

constexpr std::string_view usage = R"(usage: courier-bench [options]
  --scenario GLOB     scenarios to run: a name (queue.mpmc), a glob (bus.*), a comma list;
                      repeatable; default: all
  --impl GLOB         implementations to run (default: all; courier is needed for ratios)
  --producers N       producer threads (replaces the scenario's default shapes)
  --consumers N       consumer threads (the one not given is 1)
  --messages N        messages per run, all producers together (k and M suffixes)
  --duration T        send for T per run instead of a count (2s, 500ms)
  --rate R            producers pace themselves to R msgs/s in all (latency at a given load)
  --payload BYTES     message size (queue scenarios: rounded up to 8,16,64,256,1024,4096)
  --capacity N        bounded queues: capacity; unbounded: initial size hint (default 4096)
  --runs N            timed runs per impl, interleaved across impls (default 5)
  --warmup N          untimed runs per impl before the timed ones (default 1)
  --sample-every K    time one message in K for latency (default 64; 1 = every message)
  --json              one JSON object per line instead of the table
  --jsonl FILE        also write the JSON lines to FILE (beside the table)
  --csv FILE          also write the results as CSV
  --sweep             for the scenarios that take part: producers=consumers 1,2,4,8; payload
                      8 B..4 KiB at 1P1C; latency at 1P1C paced at --rate (default 100k/s),
                      every message timed. CSV to --csv FILE, or to stdout without it
  --smoke             every scenario, tiny counts, one run; checks the JSON (for CTest)
  --validate FILE     check a file of JSON lines ('-' for stdin) and exit
  --list              list scenarios and implementations, and peers not built
  --no-progress       no progress bar (it is shown only when stderr is a terminal)
)";

std::uint64_t parse_count(std::string_view flag, std::string_view v) {
    std::uint64_t mult = 1;
    if (!v.empty() && (v.back() == 'k' || v.back() == 'K')) mult = 1'000, v.remove_suffix(1);
    else if (!v.empty() && (v.back() == 'm' || v.back() == 'M')) mult = 1'000'000, v.remove_suffix(1);
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || v.empty())
        throw std::invalid_argument(std::string(flag) + ": not a count: " + std::string(v));
    return n * mult;
}

std::chrono::nanoseconds parse_duration(std::string_view v) {
    double scale = 1e9;
    if (v.ends_with("ms")) scale = 1e6, v.remove_suffix(2);
    else if (v.ends_with("s")) v.remove_suffix(1);
    try {
        std::size_t used = 0;
        const double x = std::stod(std::string(v), &used);
        if (used != v.size() || !(x > 0)) throw std::invalid_argument("");
        return std::chrono::nanoseconds(static_cast<std::int64_t>(x * scale));
    } catch (const std::exception&) {
        throw std::invalid_argument("--duration: not a duration (2s, 500ms): " + std::string(v));
    }
}

void split_globs(std::vector<std::string>& out, std::string_view v) {
    while (!v.empty()) {
        const auto cut = v.find(',');
        if (cut != 0) out.emplace_back(v.substr(0, cut));
        if (cut == std::string_view::npos) break;
        v.remove_prefix(cut + 1);
    }
}

struct command {
    cb::options opt;
    bool list = false;
    std::string validate_path;
};

command parse(int argc, char** argv) {
    command cmd;
    auto& o = cmd.opt;
    bool scenario_given = false, impl_given = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
            return argv[++i];
        };
        auto positive = [&](std::uint64_t n) {
            if (n == 0) throw std::invalid_argument(std::string(arg) + " must be > 0");
            return n;
        };
        if (arg == "--help" || arg == "-h") {
            std::cout << usage;
            std::exit(0);
        } else if (arg == "--scenario") {
            if (!scenario_given) o.scenario_globs.clear(), scenario_given = true;
            split_globs(o.scenario_globs, value());
        } else if (arg == "--impl") {
            if (!impl_given) o.impl_globs.clear(), impl_given = true;
            split_globs(o.impl_globs, value());
        } else if (arg == "--producers") {
            o.producers = static_cast<int>(positive(parse_count(arg, value())));
        } else if (arg == "--consumers") {
            o.consumers = static_cast<int>(positive(parse_count(arg, value())));
        } else if (arg == "--messages") {
            o.messages = positive(parse_count(arg, value()));
        } else if (arg == "--duration") {
            o.duration = parse_duration(value());
        } else if (arg == "--rate") {
            o.rate = static_cast<double>(positive(parse_count(arg, value())));
        } else if (arg == "--payload") {
            o.payload = positive(parse_count(arg, value()));
        } else if (arg == "--capacity") {
            o.capacity = positive(parse_count(arg, value()));
        } else if (arg == "--runs") {
            o.runs = static_cast<int>(positive(parse_count(arg, value())));
        } else if (arg == "--warmup") {
            o.warmup = static_cast<int>(parse_count(arg, value()));
        } else if (arg == "--sample-every") {
            o.sample_every = static_cast<std::uint32_t>(positive(parse_count(arg, value())));
        } else if (arg == "--json") {
            o.json = true;
        } else if (arg == "--jsonl") {
            o.jsonl_path = value();
        } else if (arg == "--csv") {
            o.csv_path = value();
        } else if (arg == "--sweep") {
            o.sweep = true;
        } else if (arg == "--smoke") {
            o.smoke = true;
        } else if (arg == "--validate") {
            cmd.validate_path = value();
        } else if (arg == "--list") {
            cmd.list = true;
        } else if (arg == "--no-progress") {
            o.progress = false;
        } else {
            throw std::invalid_argument("unknown option " + std::string(arg));
        }
    }
    if (o.smoke) o.runs = 1, o.warmup = 0, o.json = true;
    if (o.messages && o.duration.count() > 0) throw std::invalid_argument("--messages and --duration exclude each other");
    return cmd;
}

void list_scenarios() {
    for (const auto& sc : cb::scenarios()) {
        std::cout << sc.name << "  " << sc.description << "\n   impls:";
        for (const auto& i : sc.impls) std::cout << ' ' << i.name;
        if (sc.uses_threads) {
            std::cout << "\n   shapes:";
            for (auto s : sc.shapes) std::cout << ' ' << s.producers << 'P' << s.consumers << 'C';
        }
        std::cout << (sc.sweep ? "  (in --sweep)" : "") << "\n";
    }
    for (const auto& skipped : cb::skipped_peers()) std::cout << "not built: " << skipped << "\n";
}

int validate_file(const std::string& path) {
    std::ifstream file;
    if (path != "-") {
        file.open(path);
        if (!file) {
            std::cerr << "courier-bench: cannot read " << path << "\n";
            return 1;
        }
    }
    std::size_t lines = 0;
    const auto problems = cb::validate_json_lines(path == "-" ? std::cin : file, lines);
    for (const auto& p : problems) std::cerr << path << ": " << p << "\n";
    if (lines == 0) std::cerr << path << ": no result lines\n";
    std::cerr << path << ": " << lines << " lines, " << problems.size() << " problems\n";
    return problems.empty() && lines > 0 ? 0 : 1;
}

int run(const cb::options& opt) {
    const auto cases = cb::plan(opt);
    if (cases.empty()) {
        std::cerr << "courier-bench: nothing to run" << (opt.sweep ? " (no selected scenario takes part in --sweep)" : "")
                  << "\n";
        return 1;
    }
    cb::progress_bar bar(opt.progress && !opt.smoke && ::isatty(STDERR_FILENO));
    const int total = cb::count_steps(cases, opt);
    int step = 0;
    auto progress = [&](int s, int t, const std::string& label) { bar.update(s, t, label); };

    std::ofstream csv_file;
    std::ostream* csv = nullptr;
    if (!opt.csv_path.empty()) {
        csv_file.open(opt.csv_path);
        if (!csv_file) throw std::runtime_error("cannot write " + opt.csv_path);
        csv = &csv_file;
    } else if (opt.sweep) {
        csv = &std::cout;
    }
    if (csv) cb::write_csv_header(*csv);
    std::ofstream jsonl;
    if (!opt.jsonl_path.empty()) {
        jsonl.open(opt.jsonl_path);
        if (!jsonl) throw std::runtime_error("cannot write " + opt.jsonl_path);
    }
    const bool table = !opt.json && csv != &std::cout;

    if (table) {
        std::cout << "courier-bench: " << std::thread::hardware_concurrency()
                  << " hardware threads. msgs/s: median of the runs; spread: half the min..max range;\n"
                     "latency: send -> receive; courier/impl: courier's msgs/s over the impl's, or when\n"
                     "paced (--rate) the impl's p50 over courier's: > 1 means courier is faster\n";
        for (const auto& skipped : cb::skipped_peers()) std::cout << "note: peer not built: " << skipped << "\n";
    }

    std::ostringstream smoke_lines;
    int failures = 0;
    for (const auto& c : cases) {
        const cb::case_result r = cb::run_case(c, opt, progress, step, total);
        bar.clear();
        for (const auto& s : r.impls) {
            if (s.error.empty()) continue;
            ++failures;
            std::cerr << "courier-bench: FAILED " << c.sc->name << " " << s.impl << ": " << s.error << "\n";
        }
        for (const auto& s : r.impls) {
            const std::string line = cb::json_line(r, s, opt);
            if (opt.json) std::cout << line << "\n" << std::flush;
            if (jsonl.is_open()) jsonl << line << "\n" << std::flush;
            if (opt.smoke) smoke_lines << line << "\n";
        }
        if (table) cb::print_table(std::cout, r, opt);
        if (csv) cb::write_csv_rows(*csv, r, opt);
    }
    if (table && !opt.csv_path.empty()) std::cout << "\nCSV written to " << opt.csv_path << "\n";

    if (opt.smoke) {
        std::istringstream in(smoke_lines.str());
        std::size_t lines = 0;
        const auto problems = cb::validate_json_lines(in, lines);
        for (const auto& p : problems) std::cerr << "courier-bench --smoke: " << p << "\n";
        std::cerr << "courier-bench --smoke: " << cases.size() << " cases, " << lines << " JSON lines, "
                  << problems.size() << " problems, " << failures << " failed runs\n";
        if (!problems.empty()) return 1;
    }
    return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const command cmd = parse(argc, argv);
        if (cmd.list) {
            list_scenarios();
            return 0;
        }
        if (!cmd.validate_path.empty()) return validate_file(cmd.validate_path);
        return run(cmd.opt);
    } catch (const std::invalid_argument& e) {
        std::cerr << "courier-bench: " << e.what() << "\n" << usage;
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "courier-bench: " << e.what() << "\n";
        return 1;
    }
}
