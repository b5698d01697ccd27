// The one object an application makes: it owns the executor (its own threads, or the user's
// io_context), the clock, the timers and the event bus. A manual runtime has no threads and a
// manual clock, so tests drive every retry, backoff and timeout by hand, without sleeping.
#pragma once

#include <courier/bus/event_bus.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/runtime/timer_service.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Options of a runtime.
struct runtime_options {
    /// Worker threads for an owned pool; 0 means std::thread::hardware_concurrency(). With the
    /// user's io_context: how many threads run it (0: unknown; 1 promises exactly one).
    std::uint32_t threads = 0;
    /// The clock; default the system clock. Must outlive the runtime.
    courier::clock* clock = nullptr;
    /// `metadata.producer` of the events this process publishes.
    std::string producer = "courier";
    /// How long the destructor lets queued messages drain before handing them back.
    duration shutdown_timeout = std::chrono::seconds(5);
    bus_options bus{};
};

/// Owns executor, clock, timers and bus.
///
/// Thread safety: all members may be called from any thread; `poll`/`advance` are meant for the
/// single test thread that drives a manual runtime.
///
/// Example:
/// ```
/// courier::runtime rt;                                   // a pool of hardware_concurrency threads
/// auto sub = rt.bus().subscribe<order_created>([](const order_created& e) { /* ... */ });
/// rt.bus().publish(order_created{"o-1", 42.0});
/// ```
class runtime {
public:
    struct manual_tag {};
    /// Tag for the manual constructor: `courier::runtime rt(courier::runtime::manual, clock);`
    static constexpr manual_tag manual{};

    /// A runtime with its own pool of `options.threads` threads.
    explicit runtime(runtime_options options = {})
        : options_(std::move(options)),
          clock_(options_.clock ? options_.clock : &system_clock::instance()),
          owned_ctx_(std::in_place),
          ctx_(&*owned_ctx_),
          work_(std::in_place, ctx_->get_executor()) {
        const auto n = options_.threads ? options_.threads : std::max(1u, std::thread::hardware_concurrency());
        init(n, false);
        single_threaded_ = n == 1;
        for (std::uint32_t i = 0; i < n; ++i) {
            threads_.emplace_back([this] {
                worker_flag() = this;
                ctx_->run();
                worker_flag() = nullptr;
            });
        }
    }

    /// A runtime on the user's io_context; the user runs it (any number of threads).
    explicit runtime(boost::asio::io_context& ctx, runtime_options options = {})
        : options_(std::move(options)), clock_(options_.clock ? options_.clock : &system_clock::instance()), ctx_(&ctx) {
        init(options_.threads ? options_.threads : 1, false);
        single_threaded_ = options_.threads == 1;
    }

    /// A runtime with no threads and a manual clock: nothing runs until `poll()` or `advance()`.
    runtime(manual_tag, manual_clock& clk, runtime_options options = {})
        : options_(std::move(options)), clock_(&clk), owned_ctx_(std::in_place), ctx_(&*owned_ctx_) {
        init(0, true);
    }

    ~runtime() { stop(); }
    runtime(const runtime&) = delete;
    runtime& operator=(const runtime&) = delete;

    event_bus& bus() noexcept { return *bus_; }
    courier::clock& clock() noexcept { return *clock_; }
    timer_service& timers() noexcept { return *timers_; }
    boost::asio::io_context::executor_type executor() const noexcept { return ctx_->get_executor(); }
    boost::asio::io_context& context() noexcept { return *ctx_; }
    const runtime_services& services() const noexcept { return bus_->services(); }
    bool is_manual() const noexcept { return manual_; }
    /// True when handlers never run on two threads at once: a manual runtime, an owned pool of one
    /// thread, or the user's io_context given with `threads = 1` (a promise that one thread runs
    /// it). Components may then skip strands (the saga runner does).
    bool single_threaded() const noexcept { return single_threaded_; }

    /// Manual runtime: runs every ready handler, and what they post, until none is ready.
    /// Returns how many ran.
    std::size_t poll() {
        std::size_t total = 0;
        for (;;) {
            ctx_->restart();
            const auto n = ctx_->poll();
            total += n;
            if (n == 0) return total;
        }
    }
    /// Manual runtime: moves the clock by `d` (firing due timers) and polls.
    std::size_t advance(duration d) {
        poll();
        static_cast<manual_clock*>(clock_)->advance(d);
        return poll();
    }
    /// Manual runtime: advances in `step`s until no timer is pending within `limit` (runs every
    /// retry and backoff to its end). Returns the time advanced.
    duration run_timers(duration limit = std::chrono::hours(24)) {
        duration moved{};
        poll();
        while (moved < limit) {
            auto next = timers_->next_due();
            if (!next) break;
            auto step = std::max(*next - clock_->now(), duration::zero());
            advance(step);
            moved += step;
        }
        return moved;
    }

    /// True in a thread of this runtime's own pool.
    bool in_worker_thread() const noexcept { return worker_flag() == this; }

    /// Shuts the bus down (drains up to `shutdown_timeout`, hands back the rest) and stops the
    /// threads. Idempotent; the destructor calls it.
    shutdown_report stop() {
        if (stopped_) return {};
        stopped_ = true;
        shutdown_report report;
        if (manual_) {
            report = bus_->shutdown(options_.shutdown_timeout, [this] { poll(); });
        } else if (in_worker_thread()) {
            report = bus_->shutdown(duration::zero());
        } else {
            report = bus_->shutdown(options_.shutdown_timeout);
        }
        timers_->cancel_all();
        work_.reset();
        if (owned_ctx_) ctx_->stop();
        for (auto& t : threads_) {
            if (t.get_id() == std::this_thread::get_id()) t.detach();
            else t.join();
        }
        threads_.clear();
        return report;
    }

private:
    void init(std::uint32_t threads, bool manual) {
        manual_ = manual;
        single_threaded_ = manual;
        timers_ = std::make_unique<timer_service>(ctx_->get_executor(), *clock_);
        runtime_services s{ctx_->get_executor(), *clock_, *timers_, options_.producer, threads, manual};
        bus_ = std::make_unique<event_bus>(std::move(s), options_.bus);
    }
    static const runtime*& worker_flag() noexcept {
        thread_local const runtime* flag = nullptr;
        return flag;
    }

    runtime_options options_;
    courier::clock* clock_;
    std::optional<boost::asio::io_context> owned_ctx_;
    boost::asio::io_context* ctx_;
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
    std::unique_ptr<timer_service> timers_;
    std::unique_ptr<event_bus> bus_;
    std::vector<std::thread> threads_;
    bool manual_ = false;
    bool single_threaded_ = false;
    bool stopped_ = false;
};

COURIER_END_NAMESPACE
