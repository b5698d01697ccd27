// The clocks: the system clock (read through the TSC where that is exact) and the manual one.
#include <courier/core/clock.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("the system clock agrees with std::chrono::system_clock", "[core][clock]") {
    auto& clk = courier::system_clock::instance();
    // Long enough for the TSC rate to be calibrated (50 ms) and re-anchored a few times.
    const auto until = std::chrono::steady_clock::now() + 100ms;
    std::int64_t worst = 0;
    int close = 0, samples = 0;
    while (std::chrono::steady_clock::now() < until) {
        const auto before = std::chrono::system_clock::now();
        const auto ours = clk.now();
        const auto after = std::chrono::system_clock::now();
        ++samples;
        // Preemption between the reads can widen the window; count the reads that land in it
        // (with 50 us of slack for the rate estimate) rather than demand all of them do.
        if (ours >= before - 50us && ours <= after + 50us) ++close;
        const auto off = std::chrono::duration_cast<std::chrono::microseconds>(ours - before).count();
        worst = std::max<std::int64_t>(worst, off < 0 ? -off : off);
    }
    INFO("tsc in use: " << courier::detail::tsc_clock_in_use() << ", samples " << samples << ", worst offset " << worst << " us");
    CHECK(samples > 100);
    CHECK(close >= samples * 9 / 10);
}

TEST_CASE("the system clock moves forward on every thread", "[core][clock]") {
    auto& clk = courier::system_clock::instance();
    std::vector<std::thread> threads;
    std::atomic<int> backwards{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            auto last = clk.now();
            const auto start = last;
            for (int i = 0; i < 200000; ++i) {
                const auto now = clk.now();
                // Re-anchoring may move a reading back by the rate error times 2 ms (nanoseconds
                // once calibrated; more under a sanitizer's slow clock reads), never by a step.
                if (now < last - 20us) backwards.fetch_add(1);
                last = std::max(last, now);
            }
            if (!(last > start)) backwards.fetch_add(1);
        });
    for (auto& t : threads) t.join();
    CHECK(backwards.load() == 0);
}

TEST_CASE("the manual clock moves only when told", "[core][clock]") {
    courier::manual_clock clk;
    const auto t0 = clk.now();
    std::this_thread::sleep_for(2ms);
    CHECK(clk.now() == t0);
    clk.advance(5s);
    CHECK(clk.now() == t0 + 5s);
    clk.advance(-1s);  // never backwards
    CHECK(clk.now() == t0 + 5s);
}
