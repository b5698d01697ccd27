// The scenario registry of courier-bench. Each file in bench/scenarios/ describes its
// experiments (a name, the implementations compared, default shapes) and registers them at
// static-initialisation time, so adding an area never means editing a central list.
#pragma once

#include "histogram.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace courier_bench {

/// What one run of one implementation is asked to do. Filled by the driver from the
/// command line and the scenario's defaults.
struct run_params {
    int producers = 1;             ///< threads that send
    int consumers = 1;             ///< threads that receive
    std::size_t payload = 8;       ///< bytes per message (queue scenarios round up to a built size)
    std::uint64_t messages = 0;    ///< total to send across producers (ignored when `duration` > 0)
    std::chrono::nanoseconds duration{0};  ///< when > 0: send for this long instead of a count
    double rate = 0;               ///< when > 0: producers pace themselves to this many msgs/s in all
    std::size_t capacity = 4096;   ///< bounded scenarios: queue capacity; others: initial size hint
    std::uint32_t sample_every = 1;  ///< latency: time one message in this many (1 = all)
    bool smoke = false;            ///< tiny run for the CTest smoke test (skip slow set-up)
};

/// What a run measured. An implementation fills `messages`, `elapsed` and `latency`; the
/// driver adds `peak_mem_bytes`.
struct run_result {
    std::uint64_t messages = 0;          ///< messages delivered (and verified)
    std::chrono::nanoseconds elapsed{0};  ///< first send to last receive
    histogram latency;                   ///< send -> receive, in ns; empty if not measured
    std::size_t payload = 0;             ///< bytes per message actually moved, if not as asked
    std::optional<std::uint64_t> peak_mem_bytes;  ///< growth of peak RSS during the run
    std::string error;                   ///< non-empty: the run is wrong (lost, duplicated...)
};

/// One implementation of a scenario: `courier` or a baseline such as `moodycamel`.
struct impl {
    std::string name;                             ///< a fixed impl name (see bench/README.md)
    std::function<run_result(const run_params&)> run;  ///< one timed run; may throw
};

/// A producers/consumers pair.
struct shape {
    int producers = 1;
    int consumers = 1;
};

/// An experiment: the same work done by `courier` and by each baseline, in the same process,
/// interleaved run by run. Ratios are courier's msgs/s over each baseline's.
struct scenario {
    std::string name;               ///< `area.what`, e.g. `queue.mpmc`; matched by --scenario globs
    std::string description;        ///< one line for --list and the table header
    std::vector<impl> impls;        ///< `courier` first; then baselines
    std::vector<shape> shapes = {{1, 1}};  ///< run when --producers/--consumers are not given
    std::size_t payload = 8;        ///< default --payload
    std::uint64_t messages = 1'000'000;  ///< default --messages for one run
    std::uint64_t smoke_messages = 2'000;  ///< --smoke count: enough to cross every code path
    bool sweep = false;             ///< take part in --sweep (threads and payload vary)
    bool uses_threads = true;       ///< false: producers/consumers mean nothing here
};

/// The implementation names results may carry. They are fixed so that JSON lines from
/// different days and machines can be compared; add_scenario rejects any other name.
inline constexpr const char* known_impls[] = {
    "courier", "moodycamel", "mutex_deque", "asio_post", "atomic_queue", "boost_lockfree", "tbb",
    "zmq_inproc", "caf", "boost_signals2", "nlohmann_json", "hiredis", "cnats", "librdkafka",
    "rabbitmq_c"};

/// Adds a scenario to the registry. Call at namespace scope through `registration`.
void add_scenario(scenario s);

/// Every registered scenario, sorted by name.
const std::vector<scenario>& scenarios();

/// Registers a scenario during static initialisation:
/// ```
/// const courier_bench::registration reg{{.name = "queue.mpmc", .impls = {...}}};
/// ```
struct registration {
    explicit registration(scenario s) { add_scenario(std::move(s)); }
};

/// Peers that CMake did not find, as "name (package)" strings, for the notes printed with
/// the results (set from COURIER_BENCH_SKIPPED).
std::vector<std::string> skipped_peers();

}  // namespace courier_bench
