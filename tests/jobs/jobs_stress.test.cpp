// Jobs under load and what they cost: a million no-op jobs through several workers (each runs
// exactly once), jobs that fail a known number of times (each runs exactly its attempts), and
// the allocations of the no-op path, counted by a replaced global operator new (it counts only
// while a test switches it on; the replacement is program-wide, so it lives in this TU alone).
#include <courier/jobs/job_system.hpp>
#include <courier/runtime/runtime.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {
std::atomic<bool> counting{false};
std::atomic<std::uint64_t> allocations{0};
}  // namespace

// Every form of operator new/delete is replaced, so that no allocation made by one family is
// freed by the other (AddressSanitizer checks the pairing). noinline: g++ would otherwise inline
// free() into delete expressions and warn that it frees memory from operator new
// (-Wmismatched-new-delete), which is exactly the pairing intended here.
namespace {
__attribute__((noinline)) void* counted_alloc(std::size_t n, std::size_t align) noexcept {
    if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
    if (n == 0) n = 1;
    if (align <= alignof(std::max_align_t)) return std::malloc(n);
    return std::aligned_alloc(align, (n + align - 1) / align * align);
}
void* counted_new(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
    if (void* p = counted_alloc(n, align)) return p;
    throw std::bad_alloc();
}
__attribute__((noinline)) void counted_free(void* p) noexcept { std::free(p); }
}  // namespace

void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, alignof(std::max_align_t)); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, alignof(std::max_align_t)); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_new(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_new(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }

using namespace std::chrono_literals;

namespace {

template <class Pred>
bool wait_sleeping(Pred p, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!p()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(200us);
    }
    return true;
}

struct noop {
    static constexpr std::string_view job_type = "noop";
};
struct numbered {
    static constexpr std::string_view job_type = "numbered";
    std::uint64_t i = 0;
};

}  // namespace

TEST_CASE("the no-op job path allocates once per job", "[jobs][cost]") {
    courier::manual_clock clk;
    courier::runtime rt(courier::runtime::manual, clk);
    const bool events = GENERATE(true, false);
    courier::job_system jobs(rt, {.publish_events = events});
    auto q = jobs.queue("q");
    q.handle<noop>([](const noop&) {});
    constexpr int rounds = 20, per_round = 1000;
    auto run = [&] {
        for (int r = 0; r < rounds; ++r) {
            for (int i = 0; i < per_round; ++i) (void)q.enqueue(noop{});
            rt.poll();
        }
    };
    run();  // warm up: queue blocks, route caches, Asio's handler memory
    allocations = 0;
    counting = true;
    run();
    counting = false;
    const std::uint64_t n = rounds * per_round;
    std::printf("jobs allocation (events %s): %llu allocations for %llu jobs (%.4f per job)\n", events ? "on" : "off",
                static_cast<unsigned long long>(allocations.load()), static_cast<unsigned long long>(n),
                static_cast<double>(allocations.load()) / static_cast<double>(n));
    // At most one per job: the record with its payload and control block. Recycled through
    // the record pool, so in steady state it is ~0 (the pool is off under AddressSanitizer:
    // exactly one). Plus one per round: the worker slot's Asio handler, posted from outside the
    // executor (no thread-local handler cache there).
    CHECK(allocations.load() <= n + rounds);
#if COURIER_JOBS_RECORD_POOL
    CHECK(allocations.load() <= rounds + n / 100);
#endif
    CHECK(q.stats().completed == 2 * n);
}

// The usual production shape: a producer thread that is not a worker, workers on a thread
// pool, and jobs enqueued with options. The record still carries the options inline (no
// dedup key: a key is a string the queue's index copies), so it is still one allocation at
// most, and with the record pool ~0.
TEST_CASE("the job path allocates at most once per job across threads, with options", "[jobs][cost]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::job_system jobs(rt, {.concurrency = 2});
    auto q = jobs.queue("q");
    std::atomic<std::uint64_t> done{0};
    q.handle<numbered>([&](const numbered&) { done.fetch_add(1, std::memory_order_relaxed); });
    courier::job_options o;
    o.max_attempts = 3;
    o.priority = 0;
    o.backoff = courier::retry_policy::fixed(std::chrono::milliseconds(5), 3);
    const bool with_options = GENERATE(false, true);
    constexpr int rounds = 20, per_round = 1000;
    std::uint64_t expected = 0;
    std::uint64_t refused = 0;
    auto run = [&] {
        for (int r = 0; r < rounds; ++r) {
            for (int i = 0; i < per_round; ++i) {
                const bool ok = with_options ? q.enqueue(numbered{static_cast<std::uint64_t>(i)}, o).has_value()
                                             : q.enqueue(numbered{static_cast<std::uint64_t>(i)}).has_value();
                refused += ok ? 0 : 1;
            }
            expected += per_round;
            // Rounds bound the queue's depth, so the warm-up has grown every block it needs.
            while (done.load(std::memory_order_relaxed) != expected) std::this_thread::yield();
        }
    };
    std::uint64_t counted = 0;
    std::thread producer([&] {  // one producer thread for warm-up and measurement alike
        run();
        allocations = 0;
        counting = true;
        run();
        counting = false;
        counted = allocations.load();
    });
    producer.join();
    const std::uint64_t n = rounds * per_round;
    std::printf("jobs allocation cross-thread (options %s): %llu allocations for %llu jobs (%.4f per job)\n",
                with_options ? "on" : "off", static_cast<unsigned long long>(counted),
                static_cast<unsigned long long>(n), static_cast<double>(counted) / static_cast<double>(n));
    CHECK(refused == 0);
    // At most the record per job (pooled: ~0), plus one Asio handler each time the producer
    // wakes an idle worker slot (posted from outside the executor: not recycled), which is
    // per wake-up, not per job: 2-5 % of jobs here, up to 5.4 % in an unoptimised ASan build.
    CHECK(counted <= n + n / 10);
#if COURIER_JOBS_RECORD_POOL
    CHECK(counted <= n / 10);
#endif
}

TEST_CASE("stress: a million jobs through several workers, each run exactly once", "[jobs][stress]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::job_system jobs(rt, {.concurrency = 4});
    auto q = jobs.queue("q");
    const std::uint64_t n = 1'000'000 / COURIER_STRESS_SCALE;
    std::vector<std::atomic<std::uint8_t>> runs(n);
    std::atomic<std::uint64_t> done{0}, sum{0};
    q.handle<numbered>([&](const numbered& j) {
        runs[j.i].fetch_add(1, std::memory_order_relaxed);
        sum.fetch_add(j.i, std::memory_order_relaxed);
        done.fetch_add(1, std::memory_order_release);
    });
    constexpr int producers = 4;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    std::atomic<std::uint64_t> refused{0};
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            for (std::uint64_t i = static_cast<std::uint64_t>(p); i < n; i += producers)
                if (!q.enqueue(numbered{i})) refused.fetch_add(1);
        });
    }
    for (auto& t : threads) t.join();
    REQUIRE(wait_sleeping([&] { return done.load(std::memory_order_acquire) == n; }, 120s));
    const auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("jobs stress: %llu jobs, %d producers, 4 workers on 2 threads: %.2f s (%.0f jobs/s)\n",
                static_cast<unsigned long long>(n), producers, secs, static_cast<double>(n) / secs);
    CHECK(refused.load() == 0);
    std::uint64_t wrong = 0;
    for (auto& r : runs) wrong += r.load(std::memory_order_relaxed) != 1;
    CHECK(wrong == 0);
    CHECK(sum.load() == n * (n - 1) / 2);
    REQUIRE(wait_sleeping([&] { return q.stats().completed == n; }, 10s));
    CHECK(q.stats().waiting == 0);
}

TEST_CASE("stress: jobs that fail k times run exactly k + 1 attempts", "[jobs][stress]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::job_system jobs(rt, {.concurrency = 4});
    auto q = jobs.queue("q");
    const std::uint64_t n = 100'000 / COURIER_STRESS_SCALE;
    std::vector<std::atomic<std::uint8_t>> attempts(n);
    std::atomic<std::uint64_t> done{0};
    q.handle<numbered>([&](const numbered& j, courier::job_context& ctx) {
        attempts[j.i].fetch_add(1, std::memory_order_relaxed);
        if (ctx.attempt() <= j.i % 4) throw std::runtime_error("not yet");
        done.fetch_add(1, std::memory_order_release);
    });
    courier::job_options o;
    o.max_attempts = 4;
    o.backoff = courier::retry_policy::fixed(0s, 0);
    std::vector<std::thread> threads;
    for (int p = 0; p < 2; ++p) {
        threads.emplace_back([&, p] {
            for (std::uint64_t i = static_cast<std::uint64_t>(p); i < n; i += 2) (void)q.enqueue(numbered{i}, o);
        });
    }
    for (auto& t : threads) t.join();
    REQUIRE(wait_sleeping([&] { return done.load(std::memory_order_acquire) == n; }, 120s));
    std::uint64_t wrong = 0;
    for (std::uint64_t i = 0; i < n; ++i) wrong += attempts[i].load() != i % 4 + 1;
    CHECK(wrong == 0);
    REQUIRE(wait_sleeping([&] { return q.stats().completed == n; }, 10s));
    auto st = q.stats();
    CHECK(st.failed_attempts == n / 4 * (0 + 1 + 2 + 3));
    CHECK(st.retried == st.failed_attempts);
    CHECK(st.dead == 0);
}
