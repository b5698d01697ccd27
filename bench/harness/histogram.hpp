// The latency histogram of courier-bench: log buckets (each power of two split in 32 linear
// sub-buckets, so a value is reported at most ~3% high), plain counters owned by one thread
// and merged after the run. Memory is fixed (~16 KiB) however long the run, unlike a vector
// of samples, so a 60 s run measures the same way as a 60 ms one.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace courier_bench {

/// Counts of nanosecond latencies in log-linear buckets, from 0 to 2^64 ns.
///
/// Thread safety: none; each thread records into its own histogram and the driver merges
/// them once the threads have joined (an atomic increment per sample would cost more than
/// some of the queues being measured).
class histogram {
public:
    static constexpr unsigned sub_bits = 5;  ///< 32 sub-buckets per power of two
    static constexpr unsigned sub_count = 1u << sub_bits;
    static constexpr unsigned bucket_count = (64 - sub_bits + 1) * sub_count;

    /// Records one value in nanoseconds.
    void record(std::uint64_t ns) noexcept {
        ++buckets_[index_of(ns)];
        ++count_;
    }

    /// Number of recorded values.
    std::uint64_t count() const noexcept { return count_; }
    bool empty() const noexcept { return count_ == 0; }

    /// The value at or below which a fraction `q` (0..1) of the values lie: the upper edge
    /// of the bucket holding that rank. 0 when empty.
    std::uint64_t percentile(double q) const noexcept {
        if (count_ == 0) return 0;
        auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_));
        if (rank >= count_) rank = count_ - 1;
        std::uint64_t seen = 0;
        for (unsigned i = 0; i < bucket_count; ++i) {
            seen += buckets_[i];
            if (seen > rank) return upper_edge(i);
        }
        return upper_edge(bucket_count - 1);
    }

    /// Adds every count of `other` into this histogram.
    void merge(const histogram& other) noexcept {
        for (unsigned i = 0; i < bucket_count; ++i) buckets_[i] += other.buckets_[i];
        count_ += other.count_;
    }

    /// Bucket of a value: exact below 32, then (power of two, 32 linear steps).
    static constexpr unsigned index_of(std::uint64_t v) noexcept {
        if (v < sub_count) return static_cast<unsigned>(v);
        const unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));
        const unsigned shift = msb - sub_bits;
        const auto sub = static_cast<unsigned>((v >> shift) & (sub_count - 1));
        return (shift + 1) * sub_count + sub;
    }
    /// Largest value that lands in bucket `i`.
    static constexpr std::uint64_t upper_edge(unsigned i) noexcept {
        if (i < sub_count) return i;
        const unsigned shift = i / sub_count - 1;
        const std::uint64_t base = (std::uint64_t{sub_count} + i % sub_count) << shift;
        return base + ((std::uint64_t{1} << shift) - 1);
    }

private:
    std::array<std::uint64_t, bucket_count> buckets_{};
    std::uint64_t count_ = 0;
};

static_assert(histogram::index_of(31) == 31);
static_assert(histogram::upper_edge(histogram::index_of(1000)) >= 1000);
static_assert(histogram::upper_edge(histogram::index_of(~std::uint64_t{0})) == ~std::uint64_t{0});

}  // namespace courier_bench
