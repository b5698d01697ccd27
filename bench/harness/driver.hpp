// The driver of courier-bench: turns the command line into cases (scenario x shape x
// payload), runs every implementation of a case interleaved (run k of each before run k+1
// of any, so drift in the machine hits all alike) and summarises median, spread and ratios.
#pragma once

#include "registry.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace courier_bench {

/// Everything the command line can set.
struct options {
    std::vector<std::string> scenario_globs{"*"};  ///< --scenario (repeatable, comma lists)
    std::vector<std::string> impl_globs{"*"};      ///< --impl
    std::optional<int> producers;                  ///< --producers (overrides the shapes)
    std::optional<int> consumers;                  ///< --consumers
    std::optional<std::uint64_t> messages;         ///< --messages
    std::chrono::nanoseconds duration{0};          ///< --duration
    double rate = 0;                               ///< --rate (msgs/s, all producers)
    std::optional<std::size_t> payload;            ///< --payload
    std::optional<std::size_t> capacity;           ///< --capacity
    int runs = 5;                                  ///< --runs
    int warmup = 1;                                ///< --warmup: untimed runs per impl and case
    std::uint32_t sample_every = 64;               ///< --sample-every
    bool json = false;                             ///< --json
    bool sweep = false;                            ///< --sweep
    bool smoke = false;                            ///< --smoke
    bool progress = true;                          ///< --no-progress clears it
    std::string csv_path;                          ///< --csv
    std::string jsonl_path;                        ///< --jsonl: JSON lines to a file as well
};

/// One cell of the experiment: a scenario at one shape and payload.
struct bench_case {
    const scenario* sc = nullptr;
    run_params params;
    std::string sweep_axis;  ///< --sweep: "threads", "payload" or "latency"; empty otherwise
};

/// All runs of one implementation in one case, summarised.
struct impl_summary {
    std::string impl;
    std::vector<double> rates;      ///< msgs/s of each timed run
    std::uint64_t messages = 0;     ///< messages per run (median)
    std::size_t payload = 0;        ///< bytes per message actually moved
    double median = 0, min = 0, max = 0;  ///< msgs/s
    histogram latency;              ///< every timed run merged
    std::optional<std::uint64_t> peak_mem_bytes;  ///< the largest of the runs
    std::optional<double> courier_ratio;  ///< courier's median / this median (baselines only)
    /// Paced runs (--rate), where msgs/s is the same for all: this p50 latency / courier's.
    std::optional<double> courier_p50_ratio;
    std::string error;              ///< first failure, if any run failed
};

/// A case with the summaries of its implementations, in registration order.
struct case_result {
    bench_case spec;
    std::vector<impl_summary> impls;
};

/// The cases selected by `opt`, in run order. Errors: std::invalid_argument when a glob
/// matches nothing.
std::vector<bench_case> plan(const options& opt);

/// Reports what is about to run, for a progress bar: (step, total, label).
using progress_fn = std::function<void(int, int, const std::string&)>;

/// Runs one case: warm-up, then `opt.runs` rounds of every selected impl, interleaved.
case_result run_case(const bench_case& c, const options& opt, const progress_fn& progress, int& step, int total);

/// Number of progress steps `run_case` will report for these cases.
int count_steps(const std::vector<bench_case>& cases, const options& opt);

/// True if `name` matches any of the shell globs.
bool matches_any(const std::string& name, const std::vector<std::string>& globs);

}  // namespace courier_bench
