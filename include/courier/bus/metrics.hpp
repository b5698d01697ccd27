// Counters and a latency histogram per subscription, readable as a plain struct and as
// Prometheus text. Counters are added once per drained batch, not per message.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/latency_histogram.hpp>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE

/// A point-in-time copy of one subscription's counters.
struct subscription_metrics {
    std::string name;
    std::string pattern;
    std::uint64_t delivered = 0;      ///< handler calls that succeeded (or were skipped by middleware)
    std::uint64_t failed = 0;         ///< handler calls that threw
    std::uint64_t retried = 0;        ///< retries scheduled
    std::uint64_t dead_lettered = 0;  ///< messages that ended in the dead-letter store
    std::uint64_t dropped = 0;        ///< messages refused by the overflow policy (also dead-lettered)
    std::uint64_t deduplicated = 0;   ///< messages skipped by an idempotency middleware
    std::uint64_t queue_depth = 0;    ///< messages waiting now
    std::uint64_t latency_p50_ns = 0;
    std::uint64_t latency_p99_ns = 0;
    std::uint64_t latency_samples = 0;
};

/// Bus-wide counters.
struct bus_metrics {
    std::uint64_t published = 0;   ///< publish calls that were accepted
    std::uint64_t unrouted = 0;    ///< published events that matched no subscription
    std::uint64_t dead_letters = 0;  ///< records currently in the dead-letter store
};

namespace detail {

/// The live counters of a subscription (written by drain tasks and publishers).
struct subscription_counters {
    std::atomic<std::uint64_t> delivered{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> retried{0};
    std::atomic<std::uint64_t> dead_lettered{0};
    std::atomic<std::uint64_t> dropped{0};
    std::atomic<std::uint64_t> deduplicated{0};
    latency_histogram latency;
};

inline void append_prometheus_label_value(std::string& out, std::string_view v) {
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
}

}  // namespace detail
COURIER_END_NAMESPACE
