// A fixed-size log-bucket latency histogram (HdrHistogram-style: powers of two, each split in
// 16 linear sub-buckets, so any recorded value is off by at most 1/16). Recording is one
// relaxed atomic increment, so it can sit on a hot path; memory never grows with the run.
#pragma once

#include <courier/core/config.hpp>

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <string>

COURIER_BEGIN_NAMESPACE

/// Counts of nanosecond latencies in log buckets, from 0 to ~2^63 ns.
///
/// Thread safety: `record` may be called concurrently from any number of threads;
/// `percentile`, `count` and `snapshot` read without stopping writers (approximate while
/// writes are in flight).
class latency_histogram {
public:
    static constexpr unsigned sub_bits = 4;  ///< 16 sub-buckets per power of two
    static constexpr unsigned sub_count = 1u << sub_bits;
    static constexpr unsigned bucket_count = (64 - sub_bits + 1) * sub_count;

    /// Records one value in nanoseconds.
    void record(std::uint64_t ns) noexcept {
        buckets_[index_of(ns)].fetch_add(1, std::memory_order_relaxed);
    }

    /// Number of recorded values.
    std::uint64_t count() const noexcept {
        std::uint64_t n = 0;
        for (auto& b : buckets_) n += b.load(std::memory_order_relaxed);
        return n;
    }

    /// The value below which a fraction `q` (0..1) of the recorded values lie (the upper edge
    /// of the bucket that holds it); 0 when empty.
    std::uint64_t percentile(double q) const noexcept {
        const std::uint64_t total = count();
        if (total == 0) return 0;
        auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total));
        if (rank >= total) rank = total - 1;
        std::uint64_t seen = 0;
        for (unsigned i = 0; i < bucket_count; ++i) {
            seen += buckets_[i].load(std::memory_order_relaxed);
            if (seen > rank) return upper_edge(i);
        }
        return upper_edge(bucket_count - 1);
    }

    /// Adds every count of `other` into this histogram.
    void merge(const latency_histogram& other) noexcept {
        for (unsigned i = 0; i < bucket_count; ++i)
            buckets_[i].fetch_add(other.buckets_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    void reset() noexcept {
        for (auto& b : buckets_) b.store(0, std::memory_order_relaxed);
    }

    /// Bucket index of a value: exact below 16, then (power of two, 16 linear steps).
    static constexpr unsigned index_of(std::uint64_t v) noexcept {
        if (v < sub_count) return static_cast<unsigned>(v);
        const unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));
        const unsigned shift = msb - sub_bits;
        const unsigned sub = static_cast<unsigned>((v >> shift) & (sub_count - 1));
        return (shift + 1) * sub_count + sub;
    }
    /// Largest value that lands in bucket `i`.
    static constexpr std::uint64_t upper_edge(unsigned i) noexcept {
        if (i < sub_count) return i;
        const unsigned shift = i / sub_count - 1;
        const std::uint64_t sub = i % sub_count;
        const std::uint64_t base = (sub_count + sub) << shift;
        return base + ((std::uint64_t{1} << shift) - 1);
    }
    /// Count in bucket `i` (for exporters).
    std::uint64_t bucket(unsigned i) const noexcept { return buckets_[i].load(std::memory_order_relaxed); }

private:
    std::array<std::atomic<std::uint64_t>, bucket_count> buckets_{};
};

COURIER_END_NAMESPACE
