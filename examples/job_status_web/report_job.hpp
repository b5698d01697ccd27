// The long job of the example: a "report" that processes its rows in steps, reports its
// progress after each step (published on the bus as courier.job.progressed.v1), and either
// returns a small result or fails on purpose at a chosen step.
#pragma once

#include <courier/jobs/job_system.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace job_status_web {

/// What POST /reports asks for. `fail_at` > 0 makes step `fail_at` throw.
struct report_job {
    static constexpr std::string_view job_type = "example.report.generate";
    std::uint32_t steps = 10;
    std::uint32_t step_ms = 100;
    std::uint32_t fail_at = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(report_job, steps, step_ms, fail_at)
};

/// What a finished report returns (kept in the job; JSON through to_json).
struct report_result {
    std::uint64_t rows = 0;
    std::uint64_t total = 0;  ///< sum of the rows' values: a checksum the tests recompute
    std::string summary;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(report_result, rows, total, summary)
};

inline constexpr std::uint64_t rows_per_step = 100;

/// The sum of the values of every row of a report of `steps` steps (row r is worth r % 97).
inline std::uint64_t expected_total(std::uint32_t steps) {
    std::uint64_t total = 0;
    for (std::uint64_t r = 0; r < steps * rows_per_step; ++r) total += r % 97;
    return total;
}

/// The handler: sleeps `step_ms` per step (in slices, so a cancellation or a shutdown stops it
/// within ~20 ms), sums the step's rows, and reports progress. Blocking on purpose: it stands
/// for real work and occupies one worker slot of the job system, never an HTTP thread.
inline report_result run_report(const report_job& job, courier::job_context& ctx) {
    using namespace std::chrono;
    report_result out;
    ctx.report_progress(0, "started");
    for (std::uint32_t step = 1; step <= job.steps; ++step) {
        const auto until = steady_clock::now() + milliseconds(job.step_ms);
        while (steady_clock::now() < until) {
            ctx.throw_if_cancelled();
            std::this_thread::sleep_for(std::min<steady_clock::duration>(milliseconds(20), until - steady_clock::now()));
        }
        ctx.throw_if_cancelled();
        if (step == job.fail_at) {
            throw std::runtime_error("[courier.example.report_failed] step " + std::to_string(step) + " of " +
                                     std::to_string(job.steps) +
                                     " failed: the data source refused the query (fail requested by the client)");
        }
        for (std::uint64_t r = (step - 1) * rows_per_step; r < step * rows_per_step; ++r) {
            out.total += r % 97;
            ++out.rows;
        }
        const int percent = static_cast<int>(step * 100 / job.steps);
        ctx.report_progress(percent, "step " + std::to_string(step) + " of " + std::to_string(job.steps));
    }
    out.summary = std::to_string(out.rows) + " rows, total " + std::to_string(out.total);
    return out;
}

}  // namespace job_status_web
