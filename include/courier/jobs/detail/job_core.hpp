// The job engine. A queue keeps ready jobs in a lock-free FIFO (priority 0) plus a small heap
// (other priorities); worker slots are drain tasks on the runtime's executor, started when a
// job arrives and a slot is idle, each running jobs one after another. Delays, retries, TTLs,
// timeouts, rate windows and repeats share one timer heap armed on the runtime's timer
// service, so all of them follow the runtime's clock. Bodies live in jobs/impl/job_system.hpp.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/result.hpp>
#include <courier/jobs/cron.hpp>
#include <courier/jobs/detail/job_record.hpp>
#include <courier/jobs/job_events.hpp>
#include <courier/jobs/job_handle.hpp>
#include <courier/jobs/job_options.hpp>
#include <courier/queue/detail/fence.hpp>
#include <courier/queue/mpmc_queue.hpp>
#include <courier/runtime/runtime.hpp>

#include <any>
#include <atomic>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

COURIER_BEGIN_NAMESPACE

class job_context;

namespace detail {

/// A registered handler: runs the user's function on a record and returns its result.
struct job_handler {
    std::function<std::any(job_record&, job_context&)> run;
    nlohmann::json (*to_json)(const std::any&) = nullptr;
};
using handler_table = std::vector<std::pair<const void*, std::shared_ptr<const job_handler>>>;

// ------------------------------------------------------------------------ flows

/// A chain (each result feeds the next step) or a group (a callback when all finish).
struct flow_state : std::enable_shared_from_this<flow_state> {
    using step_fn = std::function<result<std::shared_ptr<job_record>>(job_record& prev, const std::shared_ptr<flow_state>&)>;
    enum class kind : std::uint8_t { chain, group };

    flow_state(kind k, boost::asio::io_context::executor_type ex) : type(k), executor(ex) {}

    const kind type;
    const boost::asio::io_context::executor_type executor;  // where async_wait completions run by default
    std::mutex mutex;
    std::vector<std::shared_ptr<job_record>> jobs;  // created so far, in order
    std::vector<step_fn> steps;                     // chain: steps after the first job
    std::size_t next_step = 0;
    std::size_t pending = 0;  // group: members not finished (+1 until start() is done)
    bool all_completed = true;
    std::function<void(const std::vector<job_handle>&)> on_complete;
    bool done = false;
    job_state outcome = job_state::waiting;
    std::string error;
    std::vector<std::unique_ptr<job_waiter>> waiters;

    /// A member reached a terminal state (called once per member and terminal transition).
    void job_finished(job_record& rec, job_state s);
    /// A group's start() has enqueued every member (drops the guard count).
    void group_started();
    void finish(job_state s, std::string why);
    void add_waiter(std::unique_ptr<job_waiter> w);
};

// ------------------------------------------------------------------------ timers

enum class timer_kind : std::uint8_t { promote, expire, timeout, rate_wake, repeat };

struct timer_entry {
    time_point due{};
    std::uint64_t seq = 0;
    timer_kind kind = timer_kind::promote;
    std::uint32_t attempt = 0;
    std::shared_ptr<job_record> job;  // promote: the heap owns a delayed or retrying job
    std::weak_ptr<job_record> weak;   // expire, timeout: must not keep a finished job alive
    job_queue_core* queue = nullptr;  // rate_wake
    std::uint64_t repeat = 0;         // repeat id
};

struct timer_later {
    bool operator()(const timer_entry& a, const timer_entry& b) const noexcept {
        return a.due != b.due ? a.due > b.due : a.seq > b.seq;
    }
};

struct repeat_entry {
    job_queue_core* queue = nullptr;
    std::function<void()> fire;  // enqueues one copy of the job
    duration every{0};
    std::optional<cron_expression> cron;
    time_point next{};
};

// ------------------------------------------------------------------------ queue

class job_queue_core {
public:
    job_queue_core(job_system_core& sys, std::string name, job_queue_options o, std::size_t index)
        : sys(sys), name(std::move(name)), options(o), index(index), fast(64) {
        if (options.weight == 0) options.weight = 1;
    }

    job_system_core& sys;
    const std::string name;
    job_queue_options options;
    const std::size_t index;

    // Ready jobs: priority 0 in the lock-free lane, others in `prio` (under mutex). No shared
    // counter of ready jobs: producers and workers would bounce its cache line on every job.
    mpmc_queue<std::shared_ptr<job_record>> fast;
    // Counted only for a queue with a concurrency limit (the limit needs it; stats() counts the
    // worker slots otherwise).
    alignas(cache_line_size) std::atomic<std::uint32_t> active{0};
    alignas(cache_line_size) std::atomic<std::size_t> prio_positive{0};
    std::atomic<std::size_t> prio_count{0};
    std::atomic<bool> paused{false};
    std::atomic<std::int64_t> rate_blocked_until{0};  // ns on the runtime clock

    mutable std::mutex mutex;  // guards the members below
    struct prio_entry {
        int priority;
        std::uint64_t seq;
        std::shared_ptr<job_record> job;
    };
    std::vector<prio_entry> prio;  // a heap: highest priority, then lowest seq, on top
    std::unordered_map<std::string, std::weak_ptr<job_record>> dedup;
    std::deque<std::shared_ptr<job_record>> dead;
    std::uint64_t dead_evicted = 0;
    time_point window_end{};
    std::uint32_t window_count = 0;
    bool rate_wake_pending = false;
    std::vector<std::unique_ptr<const handler_table>> handler_tables;  // every version, kept alive
    std::int64_t wrr_current = 0;                                      // guarded by sys.select_mutex_

    std::atomic<const handler_table*> handlers{nullptr};

    // Producers' counters and workers' counters on separate cache lines (no false sharing).
    struct counters {
        alignas(cache_line_size) std::atomic<std::uint64_t> enqueued{0};
        std::atomic<std::uint64_t> deduplicated{0}, refused_full{0};
        alignas(cache_line_size) std::atomic<std::uint64_t> completed{0};
        std::atomic<std::uint64_t> failed_attempts{0}, retried{0}, timed_out{0}, late_results{0}, dead{0}, failed{0},
            expired{0}, cancelled{0}, rate_limited{0};
    } count;

    // Jobs not finished, counted only under max_jobs: a job takes a place when it enters
    // (enqueue, redrive) and gives it back at its terminal state (on_terminal).
    alignas(cache_line_size) std::atomic<std::size_t> held{0};
    /// Takes a place for one more job; false (counted) when max_jobs are held already.
    bool try_hold() noexcept {
        if (options.max_jobs == 0) return true;
        if (held.fetch_add(1, std::memory_order_acq_rel) < options.max_jobs) return true;
        held.fetch_sub(1, std::memory_order_acq_rel);
        count.refused_full.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    void release_hold() noexcept {
        if (options.max_jobs) held.fetch_sub(1, std::memory_order_acq_rel);
    }

    void set_handler(const void* tag, std::shared_ptr<const job_handler> h);
    const job_handler* find_handler(const void* tag) const noexcept;

    /// Ready jobs queued (stale entries of cancelled jobs included). O(producer threads).
    bool has_ready() const noexcept {
        return fast.size_approx() != 0 || prio_count.load(std::memory_order_seq_cst) != 0;
    }
    /// About how many ready jobs wait (stale entries included). O(producer threads).
    std::size_t ready_approx() const noexcept {
        return fast.size_approx() + prio_count.load(std::memory_order_acquire);
    }
    /// About how many worker slots could start a job of this queue now: its ready jobs, bounded
    /// by its concurrency headroom (0 when paused).
    std::size_t startable() const noexcept;
    /// Worth a try now: has ready jobs, not paused, under its limit and out of a full rate window.
    bool eligible(std::int64_t now_ns) const noexcept;
    /// Takes the next runnable job and makes it active (attempt + 1), or returns null. Skips
    /// (and drops) cancelled and expired entries; expires jobs whose TTL passed.
    std::shared_ptr<job_record> take();
    /// Puts a waiting job in its lane.
    void push_ready(std::shared_ptr<job_record> rec);
    /// Removes every queued entry (shutdown).
    std::vector<std::shared_ptr<job_record>> drain_ready();

    bool consume_rate_token(time_point now);
    void refund_rate_token();
    void add_dead(std::shared_ptr<job_record> rec);
    job_queue_stats stats() const;

private:
    std::shared_ptr<job_record> pop_one();
};

// ------------------------------------------------------------------------ system

class job_system_core : public std::enable_shared_from_this<job_system_core> {
public:
    static constexpr std::size_t max_queues = 64;
    using executor_type = boost::asio::io_context::executor_type;

    job_system_core(runtime& rt, job_system_options o);

    runtime& rt;
    const executor_type executor;
    courier::clock& clock;
    job_system_options options;

    // ---- queues
    job_queue_core& queue(std::string_view name, const job_queue_options& o);
    std::size_t queue_count() const noexcept { return queue_count_.load(std::memory_order_acquire); }
    job_queue_core& queue_at(std::size_t i) const noexcept { return *queues_[i]; }

    // ---- enqueue
    /// Accepts a built record into `q` (dedup, delay, TTL, events). Returns it, or the reason.
    /// When a live job holds the record's dedup key, `*holder` (if given) receives it.
    result<std::shared_ptr<job_record>> submit(job_queue_core& q, std::shared_ptr<job_record> rec,
                                               std::shared_ptr<job_record>* holder = nullptr);
    void make_ready(const std::shared_ptr<job_record>& rec);

    // ---- workers
    /// Starts up to `want` idle worker slots (never more than are idle).
    void wake(std::size_t want = 1);
    void run_slot(std::size_t i);
    std::shared_ptr<job_record> pick();
    void execute(std::size_t slot, std::shared_ptr<job_record> rec);
    void finish_attempt(const std::shared_ptr<job_record>& rec, std::uint32_t n, std::any out, std::exception_ptr ep,
                        const job_handler* h);
    /// After the finishing claim: record the error, then retry, dead-letter or fail.
    void attempt_failed(const std::shared_ptr<job_record>& rec, std::uint32_t n, std::string error,
                        const std::exception_ptr& ep, bool allow_retry);
    void on_terminal(job_record& rec, job_state s);
    /// waiting/delayed/retrying -> `to` (cancelled, expired); false if the job had moved on.
    bool end_unstarted(const std::shared_ptr<job_record>& rec, job_state to, std::string why);
    result<void> cancel(const std::shared_ptr<job_record>& rec);
    /// Dead -> waiting, out of the dead-letter store, dedup key retaken. Refuses (the job stays
    /// dead) when the job is not dead, the system is closed, or a live job holds its key.
    result<std::shared_ptr<job_record>> redrive(const std::shared_ptr<job_record>& rec);
    /// redrive() for every dead job of `q` now; returns how many.
    std::size_t redrive_all(job_queue_core& q);

    // ---- timers
    void push_timer(timer_entry e);
    void on_timer();

    // ---- repeats
    std::uint64_t add_repeat(repeat_entry e);
    bool cancel_repeat(std::uint64_t id);
    void fire_repeat(std::uint64_t id);

    // ---- events
    template <class E>
    void publish(const job_record& r, job_state s, std::uint32_t attempt, std::string error = {},
                 std::string message = {});

    // ---- shutdown
    struct shutdown_result {
        std::vector<std::shared_ptr<job_record>> cancelled;
        std::vector<std::shared_ptr<job_record>> still_running;
        bool timed_out = false;
    };
    shutdown_result shutdown(duration timeout);
    bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
    const std::atomic<bool>& abandon_flag() const noexcept { return abandon_; }

    /// Marks a thread that may put a job into a queue or the timer heap after a closed() check
    /// (enqueue, redrive, a timer promotion, a retry): shutdown waits for every one to leave
    /// before it collects what is left, so no job lands in a queue nobody will look at again.
    /// Striped over cache lines (by thread), so producers on different threads do not share one.
    class inflight_guard {
    public:
        explicit inflight_guard(job_system_core& s) noexcept : counter_(&s.inflight_[stripe()].n) {
            counter_->fetch_add(1, std::memory_order_seq_cst);
            ++held();
        }
        ~inflight_guard() {
            --held();
            counter_->fetch_sub(1, std::memory_order_seq_cst);
        }
        inflight_guard(const inflight_guard&) = delete;
        inflight_guard& operator=(const inflight_guard&) = delete;
        /// Guards this thread holds now (a shutdown called under one must not wait for itself).
        static std::uint32_t& held() noexcept {
            thread_local std::uint32_t n = 0;
            return n;
        }

    private:
        static std::size_t stripe() noexcept {
            static std::atomic<std::size_t> next{0};
            thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed) % inflight_stripes;
            return mine;
        }
        std::atomic<std::int64_t>* counter_;
    };
    /// closed(), ordered after an inflight_guard's entry (the Dekker pair of shutdown's store of
    /// closed_ then load of the counters).
    bool closed_for_entry() const noexcept { return closed_.load(std::memory_order_seq_cst); }

    std::uint64_t next_seq() noexcept { return seq_.fetch_add(1, std::memory_order_relaxed); }
    /// A timestamp for the job's record (enqueued, started, finished). On the system clock, the
    /// coarse real-time clock (1-4 ms resolution, ~5 ns instead of ~30 ns a read): three reads
    /// per job were a fifth of a no-op job's cost. Deadlines (delays, backoff, timeouts, TTLs)
    /// always read the precise clock.
    time_point stamp() const noexcept;
    /// Jobs of `q` running now (counted from the worker slots).
    std::uint32_t running_in(const job_queue_core& q) noexcept;
    /// True once a queue with a rate limit exists (only then do eligibility checks read the clock).
    bool any_rate_limit() const noexcept { return rate_limited_queues_.load(std::memory_order_acquire); }

private:
    struct slot {
        std::atomic<bool> busy{false};
        // Guards `current` (a spin lock: held for a pointer copy, contended only by shutdown/stats).
        std::atomic<bool> lock{false};
        std::shared_ptr<job_record> current;

        // The running job moves in and out (no reference-count traffic on the hot path).
        void put(std::shared_ptr<job_record>&& r) noexcept {
            acquire();
            current = std::move(r);
            lock.store(false, std::memory_order_release);
        }
        std::shared_ptr<job_record> take() noexcept {
            acquire();
            auto r = std::move(current);
            lock.store(false, std::memory_order_release);
            return r;
        }
        std::shared_ptr<job_record> get() noexcept {
            acquire();
            auto r = current;
            lock.store(false, std::memory_order_release);
            return r;
        }
        void acquire() noexcept {
            while (lock.exchange(true, std::memory_order_acquire))
                while (lock.load(std::memory_order_relaxed)) std::this_thread::yield();
        }
    };

    void release_slot(std::size_t i);
    std::shared_ptr<job_record> spin_for_work();
    bool any_eligible() const noexcept;
    void arm(time_point due);
    void compact_timers_locked();
    std::shared_ptr<job_record> pick_weighted(std::uint64_t& tried);
    std::shared_ptr<job_record> pick_strict(std::uint64_t& tried);
    void post_slot(std::size_t i, bool defer);
    std::int64_t inflight() const noexcept;
    result<void> redrive_locked(job_queue_core& q, const std::shared_ptr<job_record>& rec);

    // queues (append-only: workers read them without a lock)
    std::unique_ptr<job_queue_core> queues_[max_queues];
    std::atomic<std::size_t> queue_count_{0};
    std::mutex queues_mutex_;
    std::mutex select_mutex_;

    // worker slots
    std::unique_ptr<slot[]> slots_;
    std::size_t slot_count_ = 1;
    alignas(cache_line_size) std::atomic<std::size_t> busy_{0};

    // timer heap
    std::mutex timer_mutex_;
    std::vector<timer_entry> heap_;
    std::size_t compact_at_ = 4096;
    time_point armed_due_ = time_point::max();
    timer_id armed_id_ = 0;
    std::uint64_t timer_seq_ = 0;

    // repeats
    std::mutex repeat_mutex_;
    std::unordered_map<std::uint64_t, repeat_entry> repeats_;
    std::uint64_t next_repeat_ = 0;

    alignas(cache_line_size) std::atomic<bool> closed_{false};    // no more enqueues
    std::atomic<bool> shut_down_{false};
    std::atomic<bool> stopping_{false};  // no more dispatch (guarded by timer_mutex_ for the heap)
    std::atomic<bool> abandon_{false};   // shutdown deadline passed: job_context::cancelled()
    std::atomic<std::uint64_t> seq_{0};
    std::atomic<bool> rate_limited_queues_{false};
    bool coarse_stamps_ = false;

    static constexpr std::size_t inflight_stripes = 8;
    struct alignas(cache_line_size) inflight_counter {
        std::atomic<std::int64_t> n{0};
    };
    inflight_counter inflight_[inflight_stripes];
};

}  // namespace detail
COURIER_END_NAMESPACE
