// Background job queues with Celery/BullMQ/Asynq semantics, in process: named queues with
// handlers per job type, concurrency and rate limits, weighted or strict selection between
// queues, delays, priorities, retries with backoff, timeouts, TTLs, deduplication, progress,
// results, dead letters with redrive, repeatable jobs (interval or cron), chains and groups,
// life-cycle events on the bus, and a graceful shutdown that reports what did not finish.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/core/uuid.hpp>
#include <courier/jobs/cron.hpp>
#include <courier/jobs/detail/job_core.hpp>
#include <courier/jobs/detail/job_record.hpp>
#include <courier/jobs/job_events.hpp>
#include <courier/jobs/job_handle.hpp>
#include <courier/jobs/job_options.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/async_result.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Identifies a repeatable job, for job_queue::cancel_repeat.
using repeat_id = std::uint64_t;

/// When a repeatable job runs: every fixed interval, or on a cron expression (UTC).
struct repeat_schedule {
    duration interval{0};
    std::optional<cron_expression> cron;
    /// Interval schedules: run once at once, then every interval (default: first after one interval).
    bool immediately = false;

    static repeat_schedule every(duration d, bool immediately = false) { return {d, std::nullopt, immediately}; }
    static repeat_schedule on(cron_expression e) { return {duration{0}, std::move(e), false}; }
    /// Parses `expr`; errors as cron_expression::parse ([courier.jobs.cron.invalid_field] ...).
    static result<repeat_schedule> on(std::string_view expr) {
        auto e = cron_expression::parse(expr);
        if (!e) return unexpected(e.error());
        return on(std::move(*e));
    }
};

/// A job in a queue's dead-letter store, as list() and inspect() show it.
struct dead_job {
    uuid id;
    std::string queue;
    std::string type;
    nlohmann::json payload;                 ///< null when the job type has no to_json
    std::uint32_t attempts = 0;
    std::vector<job_attempt_error> errors;  ///< every attempt's error, oldest first
    time_point enqueued_at{};
    time_point started_at{};   ///< first attempt
    time_point failed_at{};    ///< the last failure
    job_handle handle;         ///< the job itself (typed payload: handle.payload<T>())
};

/// A queue's dead-letter store: jobs that failed every allowed attempt (or hit a
/// non-retryable error), kept with all their errors so they can be inspected and redriven.
///
/// Thread safety: every member may be called from any thread.
/// Errors: redrive returns errc::not_found [courier.jobs.dead_letter_not_found] for an unknown
/// id, errc::closed after shutdown, errc::duplicate [courier.jobs.redrive_duplicate] (the
/// job stays dead) when a live job now holds its dedup key, and errc::full [courier.jobs.full]
/// (the job stays dead) when the queue holds its job_queue_options::max_jobs.
class job_dead_letters {
public:
    explicit job_dead_letters(detail::job_queue_core& q) noexcept : q_(&q) {}
    /// Every dead job, oldest first.
    std::vector<dead_job> list() const;
    std::optional<dead_job> inspect(const uuid& id) const;
    /// Puts the job back to `waiting` with a fresh attempt budget (its error history is kept).
    result<job_handle> redrive(const uuid& id);
    /// Redrives every dead job that can be (one whose dedup key a live job holds stays dead);
    /// returns how many.
    std::size_t redrive_all();
    /// Deletes every dead job; returns how many.
    std::size_t purge();
    std::size_t size() const;

private:
    detail::job_queue_core* q_;
};

/// A handle to a named queue of a job_system (cheap to copy; valid while the system lives).
///
/// Thread safety: every member may be called from any thread, handlers included.
/// Errors: enqueue returns errc::closed [courier.jobs.closed] after shutdown,
/// errc::invalid_argument [courier.jobs.invalid_options] for max_attempts 0, and
/// errc::duplicate [courier.jobs.duplicate] when a live job holds the dedup key; the message
/// names the holder's id, and the enqueue overload with a `holder` argument hands its handle
/// back (find_by_dedup_key returns it too, while it lives).
class job_queue {
public:
    job_queue() = default;
    job_queue(detail::job_queue_core& q, std::shared_ptr<detail::job_system_core> sys) noexcept
        : q_(&q), sys_(std::move(sys)) {}

    std::string_view name() const noexcept { return q_->name; }

    /// Registers the handler of job type T (replacing an earlier one). It takes `(const T&)` or
    /// `(const T&, courier::job_context&)` and returns void or a result R (kept in the job,
    /// copyable, and JSON through to_json when it has one). It may run concurrently with itself
    /// (up to the queue's concurrency) and must be thread-safe. An exception fails the attempt.
    template <class T, class Handler>
    void handle(Handler&& handler);

    /// Enqueues `job` (moved into its one allocation) with the default job_options.
    /// Refused with errc::full [courier.jobs.full] while the queue holds its max_jobs unfinished
    /// jobs, errc::closed after shutdown.
    template <class T>
    result<job_handle> enqueue(T job);
    /// Enqueues `job` with `options` (copied into the job's allocation). See job_options.
    template <class T>
    result<job_handle> enqueue(T job, const job_options& options);
    /// As enqueue(job, options); when it is refused because a live job holds
    /// options.dedup_key (errc::duplicate), `holder` receives that job's handle (its id(),
    /// state, and an async wait for its outcome), and is reset otherwise.
    template <class T>
    result<job_handle> enqueue(T job, const job_options& options, std::optional<job_handle>& holder);

    /// Enqueues a copy of `job` on `schedule` until cancel_repeat or shutdown. Each copy is a
    /// separate job with `options`. Errors: errc::invalid_argument
    /// [courier.jobs.invalid_schedule] for a zero interval or a cron expression that never fires.
    template <class T>
    result<repeat_id> repeat(T job, repeat_schedule schedule, job_options options = {});
    bool cancel_repeat(repeat_id id);

    /// Stops starting jobs of this queue (running ones finish; enqueues still accepted).
    void pause() noexcept { q_->paused.store(true, std::memory_order_release); }
    void resume();
    bool paused() const noexcept { return q_->paused.load(std::memory_order_acquire); }

    /// The live job (waiting, delayed, active, retrying) holding `key`, if any.
    std::optional<job_handle> find_by_dedup_key(std::string_view key) const;

    job_dead_letters dead_letters() const noexcept { return job_dead_letters(*q_); }
    job_queue_stats stats() const { return q_->stats(); }

private:
    friend class job_chain;
    friend class job_group;
    friend class job_system;
    template <class T>
    result<std::shared_ptr<detail::job_record>> submit(T&& job, const job_options* options,
                                                       std::shared_ptr<detail::flow_state> flow,
                                                       std::shared_ptr<detail::job_record>* holder = nullptr);

    detail::job_queue_core* q_ = nullptr;
    std::shared_ptr<detail::job_system_core> sys_;
};

/// The outcome of a chain or a group.
///
/// Thread safety: every member may be called from any thread.
class flow_handle {
public:
    flow_handle() = default;
    explicit flow_handle(std::shared_ptr<detail::flow_state> f) noexcept : flow_(std::move(f)) {}

    /// True once the flow ended (every member of a group finished; a chain's last step
    /// completed or a step ended otherwise).
    bool done() const;
    /// completed when every job completed; otherwise a chain ends with the state of the step
    /// that stopped it, and a group with `failed`. Meaningful once done().
    job_state outcome() const;
    /// Why a chain stopped early, when the reason is not a job's own state (e.g. a step whose
    /// input had the wrong type: [courier.jobs.chain_type_mismatch]).
    std::string error() const;
    /// The jobs created so far, in order (a chain creates each step when the previous completes).
    std::vector<job_handle> jobs() const;

    /// Completes `token` with the flow's outcome, `void(courier::job_state)`.
    template <class CompletionToken>
    auto async_wait(CompletionToken&& token) const;

private:
    std::shared_ptr<detail::flow_state> flow_;
};

/// Builds a chain: each step's job is made from the previous job's result (Celery's chain).
class job_chain {
public:
    /// Adds a step: when the previous job completes with a result of type R, `make(const R&)`
    /// returns the next job, enqueued on `queue` with `options`. A result of another type ends
    /// the chain `failed` with [courier.jobs.chain_type_mismatch].
    template <class F>
    job_chain& then(job_queue queue, F&& make, job_options options = {});
    /// Enqueues the first job. Errors: those of enqueue.
    result<flow_handle> start();

private:
    friend class job_system;
    std::shared_ptr<detail::flow_state> flow_;
    std::function<result<std::shared_ptr<detail::job_record>>(const std::shared_ptr<detail::flow_state>&)> first_;
};

/// Builds a group: jobs that run independently, with a callback once every one has finished
/// (in any terminal state) — Celery's chord, BullMQ's flow parent.
class job_group {
public:
    template <class T>
    job_group& add(job_queue queue, T job, job_options options = {});
    /// Runs in the thread that finished the last member, with every member's handle (it may
    /// enqueue the next job with their results).
    job_group& on_complete(std::function<void(const std::vector<job_handle>&)> fn);
    /// Enqueues every member. Errors: the first enqueue error (members enqueued before it run
    /// on, and the group's outcome is `failed`).
    result<flow_handle> start();

private:
    friend class job_system;
    std::shared_ptr<detail::flow_state> flow_;
    std::vector<std::function<result<std::shared_ptr<detail::job_record>>(const std::shared_ptr<detail::flow_state>&)>> adds_;
};

/// What job_system::shutdown did.
struct job_shutdown_report {
    /// Jobs that had not started, or were waiting for a retry: now `cancelled` (error
    /// [courier.jobs.shutdown]); their payload is still readable through the handle.
    std::vector<job_handle> cancelled;
    /// Jobs whose handler was still running at the deadline: cancellation is requested, and they
    /// reach their terminal state when the handler returns (a failure is no longer retried).
    std::vector<job_handle> still_running;
    bool timed_out = false;
};

/// The job queues of one runtime, and the workers that run them on its executor.
///
/// Ordering: within a queue, higher priority first, FIFO among equal priorities (per
/// enqueueing thread for priority 0); between queues, by weight or strict priority.
/// Thread safety: every member may be called from any thread, handlers included.
/// Blocking: enqueue never blocks; shutdown (and the destructor) wait for active jobs up to the
/// deadline (on a manual runtime they run the executor themselves).
/// Errors: see job_queue; a handler's exception never escapes: it fails the attempt.
///
/// Example:
/// ```
/// courier::runtime rt;
/// courier::job_system jobs(rt);
/// auto emails = jobs.queue("emails", {.concurrency = 4, .rate_limit = {.max = 100, .interval = 1s}});
/// emails.handle<send_email>([](const send_email& e, courier::job_context& ctx) {
///     ctx.report_progress(50, "rendered");
///     return smtp_send(e);                       // the result is kept in the job
/// });
/// auto h = emails.enqueue(send_email{"ada@example.com"}, {.max_attempts = 5, .timeout = 30s}).value();
/// auto state = h.async_wait(boost::asio::use_future).get();
/// ```
class job_system {
public:
    explicit job_system(runtime& rt, job_system_options options = {})
        : core_(std::make_shared<detail::job_system_core>(rt, std::move(options))) {}
    /// Shuts down (options.shutdown_timeout) if that was not done yet.
    ~job_system() { (void)shutdown(core_->options.shutdown_timeout); }
    job_system(const job_system&) = delete;
    job_system& operator=(const job_system&) = delete;

    /// The queue named `name`, made with `options` on first use (later options are ignored).
    /// Errors: throws courier_error [courier.jobs.too_many_queues] beyond 64 queues.
    job_queue queue(std::string_view name, job_queue_options options = {}) {
        return job_queue(core_->queue(name, options), core_);
    }

    /// Starts a chain with `first` on `queue`; add steps with then(), run it with start().
    template <class T>
    job_chain chain(job_queue queue, T first, job_options options = {});
    /// Starts a group; add members with add(), run it with start().
    job_group group();

    /// Stops taking jobs (enqueue fails with errc::closed, repeats stop), lets active jobs run
    /// until `timeout`, then cancels every job that has not started and reports them, with the
    /// ones still running. Idempotent (a second call reports nothing new).
    job_shutdown_report shutdown(duration timeout);

    std::vector<job_queue_stats> stats() const;
    courier::runtime& rt() noexcept { return core_->rt; }

private:
    std::shared_ptr<detail::job_system_core> core_;
};

COURIER_END_NAMESPACE

#include <courier/jobs/impl/job_system.hpp>
