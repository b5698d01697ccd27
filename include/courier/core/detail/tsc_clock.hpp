// Wall-clock time read from the CPU's time-stamp counter. std::chrono::system_clock::now()
// costs 30-40 ns on the KVM guests courier is measured on (a vDSO call that reads the TSC and
// the kernel's conversion page); reading the TSC directly and converting with a per-thread
// anchor costs about a third of that, which is a fifth of a whole typed publish.
//
// Used only where it is exact enough: an invariant TSC (constant rate, never stops) that the
// kernel itself trusts as its clocksource. Each thread re-anchors on the system clock every
// 2 ms, so clock steps (NTP, settimeofday) are followed within 2 ms and the rate error of the
// calibration (which keeps improving, from a 50 ms window up to minutes) stays below a
// microsecond. Elsewhere, or with COURIER_NO_TSC set, it is system_clock::now().
#pragma once

#include <courier/core/config.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <x86intrin.h>
#define COURIER_HAS_TSC_CLOCK 1
#else
#define COURIER_HAS_TSC_CLOCK 0
#endif

COURIER_BEGIN_NAMESPACE
namespace detail {

#if COURIER_HAS_TSC_CLOCK
__extension__ typedef unsigned __int128 tsc_uint128;

class tsc_clock {
public:
    using time_point = std::chrono::system_clock::time_point;

    static time_point now() noexcept {
        if (COURIER_UNLIKELY(!usable())) return std::chrono::system_clock::now();
        anchor& a = local();
        const std::uint64_t t = __rdtsc();
        const std::uint64_t dt = t - a.tsc;
        if (COURIER_UNLIKELY(dt >= a.span)) return reanchor(a);
        return a.wall + std::chrono::nanoseconds(static_cast<std::int64_t>((static_cast<tsc_uint128>(dt) * a.mult) >> 32));
    }

    /// True when now() reads the TSC (not the system clock).
    static bool usable() noexcept {
        static const bool ok = probe();
        return ok;
    }

private:
    static constexpr std::int64_t anchor_period_ns = 2'000'000;
    static constexpr std::int64_t first_calibration_ns = 50'000'000;

    struct anchor {
        std::uint64_t tsc = 0;
        std::uint64_t span = 0;  // ticks this anchor may be used for; 0 forces a re-anchor
        std::uint64_t mult = 0;  // ns per tick, 32.32 fixed point
        time_point wall{};
    };
    struct calibration {
        std::uint64_t tsc0;
        std::chrono::steady_clock::time_point steady0;
        std::atomic<std::uint64_t> mult{0};
        std::atomic<std::int64_t> window_ns{0};  // the window the current mult was measured over
    };

    /// The TSC paired with both clocks, read between two TSC reads. A pair whose reads were
    /// split by preemption would skew the rate, so the tightest of a few tries is kept.
    struct reading {
        std::uint64_t tsc;
        time_point wall;
        std::chrono::steady_clock::time_point steady;
    };
    static reading read_pair() noexcept {
        constexpr std::uint64_t tight_ticks = 5'000;  // ~2 us at any TSC rate of today
        reading best{};
        std::uint64_t best_width = ~std::uint64_t{0};
        for (int attempt = 0; attempt < 8 && best_width > tight_ticks; ++attempt) {
            const std::uint64_t t0 = __rdtsc();
            const time_point wall = std::chrono::system_clock::now();
            const auto steady = std::chrono::steady_clock::now();
            const std::uint64_t t1 = __rdtsc();
            if (t1 - t0 < best_width) {
                best_width = t1 - t0;
                best = reading{t0 + (t1 - t0) / 2, wall, steady};
            }
        }
        return best;
    }

    static anchor& local() noexcept {
        thread_local anchor a;
        return a;
    }
    static calibration& shared() noexcept {
        static calibration c = [] {
            const reading r = read_pair();
            return calibration{r.tsc, r.steady};
        }();
        return c;
    }

    static time_point reanchor(anchor& a) noexcept {
        calibration& c = shared();
        const reading r = read_pair();
        const std::int64_t elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(r.steady - c.steady0).count();
        std::uint64_t mult = c.mult.load(std::memory_order_relaxed);
        // Re-measure the rate over the whole time since the first call each time that time has
        // doubled: the error of the two pairings shrinks with the window.
        if (elapsed >= first_calibration_ns && elapsed >= 2 * c.window_ns.load(std::memory_order_relaxed) && r.tsc > c.tsc0) {
            mult = static_cast<std::uint64_t>((static_cast<tsc_uint128>(elapsed) << 32) / (r.tsc - c.tsc0));
            c.mult.store(mult, std::memory_order_relaxed);
            c.window_ns.store(elapsed, std::memory_order_relaxed);
        }
        a.tsc = r.tsc;
        a.wall = r.wall;
        a.mult = mult;
        // Until the rate is known, every call reads the system clock.
        a.span = mult == 0 ? 0 : static_cast<std::uint64_t>((static_cast<tsc_uint128>(anchor_period_ns) << 32) / mult);
        return r.wall;
    }

    static bool probe() noexcept {
        if (std::getenv("COURIER_NO_TSC") != nullptr) return false;
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        if (__get_cpuid(0x80000000u, &eax, &ebx, &ecx, &edx) == 0 || eax < 0x80000007u) return false;
        __get_cpuid(0x80000007u, &eax, &ebx, &ecx, &edx);
        if ((edx & (1u << 8)) == 0) return false;  // not invariant
#if defined(__linux__)
        // The kernel demotes a TSC it finds unreliable (unsynchronized across CPUs, halting).
        std::ifstream in("/sys/devices/system/clocksource/clocksource0/current_clocksource");
        std::string source;
        if (!(in >> source) || source != "tsc") return false;
#endif
        (void)shared();
        return true;
    }
};

inline std::chrono::system_clock::time_point fast_system_now() noexcept { return tsc_clock::now(); }
/// True when fast_system_now() reads the TSC (for diagnostics and tests).
inline bool tsc_clock_in_use() noexcept { return tsc_clock::usable(); }
#else
inline std::chrono::system_clock::time_point fast_system_now() noexcept { return std::chrono::system_clock::now(); }
inline bool tsc_clock_in_use() noexcept { return false; }
#endif

}  // namespace detail
COURIER_END_NAMESPACE
