// What an application holds of a job (job_handle: id, state, attempts, progress, result,
// errors, cancel, async wait for the outcome) and what a handler receives (job_context: attempt,
// deadline, cooperative cancellation, progress reports).
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/result.hpp>
#include <courier/core/uuid.hpp>
#include <courier/jobs/detail/job_record.hpp>
#include <courier/jobs/job_options.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>

#include <any>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

COURIER_BEGIN_NAMESPACE

namespace detail {
boost::asio::io_context::executor_type job_executor(const job_record& r) noexcept;
}

/// Thrown by job_context::throw_if_cancelled. A handler that lets it escape (or any exception
/// while cancellation was requested) ends its job `cancelled`, without a retry.
struct job_cancelled_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// What a job handler knows and can do about the attempt it runs.
///
/// Per-attempt timeouts: a synchronous handler cannot be pre-empted. When the timeout fires,
/// the attempt is marked failed ([courier.jobs.timeout]) at once, a retry (or the dead-letter
/// store) follows as for any failure, and `cancelled()` turns true so a cooperative handler can
/// stop. If the handler returns anyway, its result (or error) is ignored and counted in
/// job_queue_stats::late_results; meanwhile it still holds its worker slot and its place in the
/// queue's concurrency limit, since it still occupies a thread.
///
/// Thread safety: valid only during the handler call that received it, in any thread;
/// cancelled() may be polled from threads the handler started, while it runs.
class job_context {
public:
    job_context(detail::job_record& r, std::uint32_t attempt, time_point deadline, const std::atomic<bool>& abandon,
                detail::job_system_core& sys) noexcept
        : rec_(r), attempt_(attempt), deadline_(deadline), abandon_(abandon), sys_(sys) {}

    const uuid& id() const noexcept { return rec_.id; }
    std::string_view queue() const noexcept;
    std::string_view type() const noexcept { return rec_.type; }
    /// 1 for the first attempt.
    std::uint32_t attempt() const noexcept { return attempt_; }
    std::uint32_t max_attempts() const noexcept { return rec_.opts().max_attempts; }
    /// When this attempt times out (time_point::max() without a timeout), on the runtime's clock.
    time_point deadline() const noexcept { return deadline_; }

    /// True when the handler should stop: the job was cancelled, this attempt timed out, or the
    /// job system's shutdown deadline passed.
    bool cancelled() const noexcept {
        return rec_.cancel_requested.load(std::memory_order_acquire) || abandon_.load(std::memory_order_acquire) ||
               rec_.status.load(std::memory_order_acquire) != detail::make_status(attempt_, job_state::active);
    }
    /// Throws job_cancelled_error when cancelled().
    void throw_if_cancelled() const {
        if (cancelled()) throw job_cancelled_error("[courier.jobs.cancelled] job " + rec_.id.to_string() + " was cancelled");
    }

    /// Reports progress (0..100, clamped) with an optional message: visible through the handle
    /// and published as courier.job.progressed.v1. Ignored once the attempt has timed out.
    void report_progress(int percent, std::string message = {});

    courier::clock& clock() const noexcept;

private:
    detail::job_record& rec_;
    std::uint32_t attempt_;
    time_point deadline_;
    const std::atomic<bool>& abandon_;
    detail::job_system_core& sys_;
};

/// A handle to an enqueued job. Copy it freely; the job's state lives as long as any handle, its
/// queue or a dead-letter record holds it.
///
/// Lifetime: queue(), cancel() and async_wait() reach the job system, which must still exist;
/// the other members may be used after it is gone (id, state, result, errors, payload...).
/// Thread safety: every member may be called from any thread.
/// Errors: cancel() returns errc::invalid_state for a job that has already finished.
///
/// Example:
/// ```
/// courier::job_handle h = emails.enqueue(send_email{"ada@example.com"}).value();
/// h.async_wait([h](courier::job_state s) {
///     if (s == courier::job_state::completed) log("sent: " + h.result_json().dump());
///     else log("gave up: " + h.errors().back().error);
/// });
/// ```
class job_handle {
public:
    job_handle() = default;
    explicit job_handle(std::shared_ptr<detail::job_record> r) noexcept : rec_(std::move(r)) {}

    explicit operator bool() const noexcept { return rec_ != nullptr; }

    const uuid& id() const noexcept { return rec_->id; }
    std::string_view queue() const noexcept;
    std::string_view type() const noexcept { return rec_->type; }
    job_state state() const noexcept { return rec_->state(); }
    /// Attempts started so far.
    std::uint32_t attempts() const noexcept { return rec_->attempts(); }
    std::uint32_t max_attempts() const noexcept { return rec_->opts().max_attempts; }

    job_progress progress() const { return {rec_->progress.load(std::memory_order_relaxed), rec_->progress_message()}; }

    /// The handler's result, if the job completed and its handler returned an R.
    template <class R>
    const R* result() const noexcept {
        if (state() != job_state::completed) return nullptr;
        return std::any_cast<R>(&rec_->result);
    }
    /// The result as JSON (null if not completed, void, or R has no to_json).
    nlohmann::json result_json() const {
        if (state() != job_state::completed || !rec_->result_to_json) return nullptr;
        return rec_->result_to_json(rec_->result);
    }

    /// Every failed attempt, oldest first.
    std::vector<job_attempt_error> errors() const { return rec_->errors(); }

    job_times times() const noexcept {
        return {rec_->enqueued_at, detail::from_ns(rec_->started_ns.load(std::memory_order_acquire)),
                detail::from_ns(rec_->finished_ns.load(std::memory_order_acquire))};
    }

    /// The job object, if it is a T.
    template <class T>
    const T* payload() const noexcept {
        return rec_->type_tag == detail::type_id<T>() ? static_cast<const T*>(rec_->payload()) : nullptr;
    }
    nlohmann::json payload_json() const { return rec_->payload_json(); }

    /// Cancels the job: a waiting, delayed or retrying job becomes `cancelled` at once; for an
    /// active one, cancellation is requested and its handler decides (job_context::cancelled).
    /// Errors: errc::invalid_state [courier.jobs.not_cancellable] when the job already finished.
    courier::result<void> cancel() const;

    /// Completes `token` with the job's terminal state, `void(courier::job_state)`: completed,
    /// failed, dead, expired or cancelled (at once, through the executor, if it already is).
    /// Tokens: a callback, boost::asio::use_future, boost::asio::use_awaitable.
    template <class CompletionToken>
    auto async_wait(CompletionToken&& token) const {
        return boost::asio::async_initiate<CompletionToken, void(job_state)>(
            [](auto handler, std::shared_ptr<detail::job_record> rec) {
                using H = decltype(handler);
                rec->add_waiter(std::make_unique<detail::job_waiter_op<H>>(std::move(handler), detail::job_executor(*rec)));
            },
            token, rec_);
    }

    friend bool operator==(const job_handle& a, const job_handle& b) noexcept { return a.rec_ == b.rec_; }

private:
    std::shared_ptr<detail::job_record> rec_;
};

COURIER_END_NAMESPACE
