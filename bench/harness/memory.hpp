// Peak memory of one run, from Linux's own accounting: free what the allocator holds, reset
// the process's peak-RSS mark (/proc/self/clear_refs, "5"), run, then read how far the peak
// (VmHWM) rose above the resident set at the start. Whole-process, so it includes thread
// stacks and the allocator's slack; where /proc is unavailable nothing is reported.
#pragma once

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace courier_bench {

/// Measures the growth of peak RSS between `start()` and `peak_growth()`.
class peak_memory_probe {
public:
    /// Returns freed memory to the OS and resets the peak mark; false if not supported.
    bool start() {
#if defined(__GLIBC__)
        // Without the trim, memory freed by the previous run stays resident and a queue that
        // reuses it would look free; with it, every run starts from a similar floor.
        malloc_trim(0);
#endif
        std::ofstream clear("/proc/self/clear_refs");
        if (!clear) return ok_ = false;
        clear << "5";
        clear.close();
        if (!clear) return ok_ = false;
        const auto rss = read_kib("VmRSS:");
        if (!rss) return ok_ = false;
        start_kib_ = *rss;
        return ok_ = true;
    }

    /// Bytes by which the peak RSS exceeded the RSS at `start()`; empty when not measured.
    std::optional<std::uint64_t> peak_growth() const {
        if (!ok_) return std::nullopt;
        const auto hwm = read_kib("VmHWM:");
        if (!hwm) return std::nullopt;
        return (*hwm > start_kib_ ? *hwm - start_kib_ : 0) * 1024;
    }

private:
    static std::optional<std::uint64_t> read_kib(const std::string& key) {
        std::ifstream status("/proc/self/status");
        std::string line;
        while (std::getline(status, line))
            if (line.rfind(key, 0) == 0) return std::stoull(line.substr(key.size()));
        return std::nullopt;
    }

    bool ok_ = false;
    std::uint64_t start_kib_ = 0;
};

}  // namespace courier_bench
