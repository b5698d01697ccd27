// The shared state of one job, allocated once (payload included) and referenced by its handle,
// the queue that holds it and the worker that runs it. Its life is one atomic word, attempt and
// state together, so every transition is a single compare-and-swap and a late result from a
// timed-out attempt can never overwrite a newer one.
#pragma once

#include <courier/actor/detail/type_name.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/uuid.hpp>
#include <courier/jobs/job_options.hpp>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include <any>
#include <atomic>
#include <concepts>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// The job type name of T: `T::job_type` when T declares one
/// (`static constexpr std::string_view job_type = "email.send";`), else the C++ type's name.
template <class T>
constexpr std::string_view job_type_of() noexcept {
    if constexpr (requires { std::string_view(T::job_type); }) {
        return std::string_view(T::job_type);
    } else {
        return detail::type_name<T>();
    }
}

namespace detail {

class job_queue_core;
class job_system_core;
struct flow_state;

// ------------------------------------------------------------------------ status word

/// An internal state beside job_state: the attempt's outcome is being written (exclusive claim
/// taken by whoever ends the attempt first: the worker, or the timeout).
inline constexpr std::uint8_t finishing_bits = 0xFF;

constexpr std::uint64_t make_status(std::uint32_t attempt, std::uint8_t bits) noexcept {
    return (static_cast<std::uint64_t>(attempt) << 8) | bits;
}
constexpr std::uint64_t make_status(std::uint32_t attempt, job_state s) noexcept {
    return make_status(attempt, static_cast<std::uint8_t>(s));
}
constexpr std::uint32_t attempt_of(std::uint64_t st) noexcept { return static_cast<std::uint32_t>(st >> 8); }
constexpr std::uint8_t bits_of(std::uint64_t st) noexcept { return static_cast<std::uint8_t>(st & 0xFF); }
constexpr job_state state_of(std::uint64_t st) noexcept {
    return bits_of(st) == finishing_bits ? job_state::active : static_cast<job_state>(bits_of(st));
}


// ------------------------------------------------------------------------ waiters

/// One pending async_wait on a job or a flow.
struct job_waiter {
    virtual ~job_waiter() = default;
    virtual void complete(job_state s) = 0;
};

/// A waiter bound to a completion handler; posts it to its associated executor (default: the
/// runtime's) and keeps the runtime's io_context busy until then.
template <class Handler>
class job_waiter_op final : public job_waiter {
public:
    using io_executor = boost::asio::io_context::executor_type;
    job_waiter_op(Handler&& h, io_executor ex) : handler_(std::move(h)), work_(ex) {}
    void complete(job_state s) override {
        auto ex = boost::asio::get_associated_executor(handler_, work_.get_executor());
        boost::asio::post(ex, [h = std::move(handler_), s]() mutable { std::move(h)(s); });
        // The work ends here, not in the posted handler: a handler that runs elsewhere (e.g.
        // use_future's, on Asio's system executor) may wake a thread that destroys the runtime
        // before it returns. A handler posted to the runtime's own executor keeps it busy itself.
        work_.reset();
    }

private:
    Handler handler_;
    boost::asio::executor_work_guard<io_executor> work_;
};

/// Completes every waiter of a list, outside any lock.
inline void complete_all(std::vector<std::unique_ptr<job_waiter>>& ws, job_state s) {
    for (auto& w : ws) w->complete(s);
    ws.clear();
}

// ------------------------------------------------------------------------ the record

/// What only some jobs need (a failure, a waiter, a progress message): made on first use, so a
/// job that just runs writes none of it.
struct job_extras {
    std::mutex mutex;  // guards the members below
    std::string progress_message;
    std::vector<job_attempt_error> errors;
    std::vector<std::unique_ptr<job_waiter>> waiters;
};

class job_record {
public:
    job_record() = default;
    // The options, if any, live in the derived typed_job (after the payload) and are destroyed
    // by it (destroy_options).
    virtual ~job_record() { delete extras_.load(std::memory_order_acquire); }
    job_record(const job_record&) = delete;
    job_record& operator=(const job_record&) = delete;

    /// The payload as JSON (null when T has no to_json).
    virtual nlohmann::json payload_json() const = 0;
    /// The payload object (a T of type `type_tag`).
    virtual const void* payload() const noexcept = 0;

    // Hot: what every attempt touches, packed at the front. The worker that runs a job pulls
    // these lines from the producer's core (and the producer pulls them back when the memory is
    // recycled), so the fewer lines a plain job writes, the cheaper it is.
    // attempt << 8 | state: every transition is one CAS on this word.
    std::atomic<std::uint64_t> status{0};
    job_queue_core* queue = nullptr;
    const void* type_tag = nullptr;
    time_point expires_at = time_point::max();
    duration attempt_timeout{0};  // = opts().timeout
    std::atomic<std::int64_t> started_ns{0};
    std::atomic<std::int64_t> finished_ns{0};
    std::atomic<std::uint32_t> generation{0};  // lives: a redrive starts a new one (TTL ends with the first)
    std::atomic<int> progress{0};
    std::atomic<bool> cancel_requested{false};
    std::atomic<bool> has_waiters{false};
    std::atomic<bool> flow_notified{false};  // the flow has counted this member
    bool keyed = false;                      // = !opts().dedup_key.empty()
    bool has_flow = false;                   // belongs to a chain or group (immutable)
    // The chain or group: held until this job has reported its end to it, then dropped (the
    // flow keeps its members for flow_handle::jobs(); they must not keep it: a cycle).
    std::shared_ptr<flow_state> flow;
    // Written by the holder of the `finishing` claim before the terminal state is stored
    // (release); read after the terminal state is seen (acquire).
    std::any result;
    nlohmann::json (*result_to_json)(const std::any&) = nullptr;

private:
    // Read by the worker too (opts(), and the destructor that runs on its thread): kept with
    // the hot fields rather than behind the cold ones.
    job_options* options_ = const_cast<job_options*>(&default_options());
    std::atomic<job_extras*> extras_{nullptr};

public:
    // Cold: set before the job is published to any queue, then immutable.
    uuid id;
    std::string_view type;
    time_point enqueued_at{};
    std::uint64_t seq = 0;  // FIFO among equal priorities

    /// The job's options: its own, or the shared defaults (a plain enqueue copies nothing).
    const job_options& opts() const noexcept { return *options_; }
    /// Takes the caller's options (before the job is published).
    void set_options(const job_options& o) {
        options_ = ::new (options_storage()) job_options(o);
        options_->backoff.maximum_attempts = 0;  // max_attempts counts, not the policy's own limit
    }
    static const job_options& default_options() {
        static const job_options defaults = [] {
            job_options o;
            o.backoff.maximum_attempts = 0;
            return o;
        }();
        return defaults;
    }

    job_state state() const noexcept { return state_of(status.load(std::memory_order_acquire)); }
    std::uint32_t attempts() const noexcept { return attempt_of(status.load(std::memory_order_acquire)); }

    void add_error(job_attempt_error e) {
        auto& x = extras();
        std::lock_guard lock(x.mutex);
        x.errors.push_back(std::move(e));
    }
    std::vector<job_attempt_error> errors() const {
        auto* x = extras_.load(std::memory_order_acquire);
        if (!x) return {};
        std::lock_guard lock(x->mutex);
        return x->errors;
    }
    void set_progress_message(std::string m) {
        auto& x = extras();
        std::lock_guard lock(x.mutex);
        x.progress_message = std::move(m);
    }
    std::string progress_message() const {
        auto* x = extras_.load(std::memory_order_acquire);
        if (!x) return {};
        std::lock_guard lock(x->mutex);
        return x->progress_message;
    }

    /// Registers a waiter, or completes it at once if the job is terminal.
    // Dekker pairing with complete_waiters(): the terminal store and our flag store are seq_cst,
    // so either we see the terminal state after setting the flag, or the finisher sees the flag.
    void add_waiter(std::unique_ptr<job_waiter> w) {
        auto& x = extras();
        std::unique_lock lock(x.mutex);
        job_state s = state_of(status.load(std::memory_order_seq_cst));
        if (is_terminal(s)) {
            lock.unlock();
            w->complete(s);
            return;
        }
        x.waiters.push_back(std::move(w));
        has_waiters.store(true, std::memory_order_seq_cst);
        s = state_of(status.load(std::memory_order_seq_cst));
        if (is_terminal(s)) {
            auto ws = std::move(x.waiters);
            x.waiters.clear();
            lock.unlock();
            complete_all(ws, s);
        }
    }

    /// After the terminal state was stored (seq_cst): completes the waiters registered so far.
    void complete_waiters(job_state s) {
        if (!has_waiters.load(std::memory_order_seq_cst)) return;
        auto& x = extras();
        std::vector<std::unique_ptr<job_waiter>> ws;
        {
            std::lock_guard lock(x.mutex);
            ws.swap(x.waiters);
        }
        complete_all(ws, s);
    }

protected:
    /// Room for a job_options, in the derived record (set_options constructs it there).
    virtual void* options_storage() noexcept = 0;
    /// Called by the derived record's destructor, while its storage is alive.
    void destroy_options() noexcept {
        if (options_ != &default_options()) std::destroy_at(options_);
        options_ = const_cast<job_options*>(&default_options());
    }

private:
    job_extras& extras() {
        job_extras* x = extras_.load(std::memory_order_acquire);
        if (x) return *x;
        auto* made = new job_extras;
        if (extras_.compare_exchange_strong(x, made, std::memory_order_acq_rel)) return *made;
        delete made;  // another thread installed one first
        return *x;
    }

};

template <class T>
class typed_job : public job_record {
public:
    explicit typed_job(T&& v) : value(std::move(v)) {}
    explicit typed_job(const T& v) : value(v) {}

    nlohmann::json payload_json() const override {
        if constexpr (std::is_constructible_v<nlohmann::json, const T&>) {
            try {
                return nlohmann::json(value);
            } catch (...) {
                return nullptr;
            }
        } else {
            return nullptr;
        }
    }
    const void* payload() const noexcept override { return &value; }

    T value;

protected:
    // Enqueued without options: the record uses the shared defaults and has no room for others.
    void* options_storage() noexcept override { return nullptr; }
};

/// A job enqueued with job_options: the same record, with the options copied in after the
/// payload. A job without options is the smaller typed_job (~200 bytes instead of ~360 with
/// the control block): in a backlog of millions that is half the memory to fault in and to
/// pull between the producer's and the worker's cores, and the payload shares a cache line
/// with the record's fields instead of sitting behind 160 unused bytes.
template <class T>
class typed_job_with_options final : public typed_job<T> {
public:
    using typed_job<T>::typed_job;
    ~typed_job_with_options() override { this->destroy_options(); }

private:
    void* options_storage() noexcept override { return static_cast<void*>(own_options_); }

    alignas(job_options) unsigned char own_options_[sizeof(job_options)];
};

/// A result converter for handler return type R (null JSON when R has no to_json).
template <class R>
nlohmann::json result_as_json(const std::any& a) {
    if constexpr (std::is_constructible_v<nlohmann::json, const R&>) {
        if (auto* p = std::any_cast<R>(&a)) {
            try {
                return nlohmann::json(*p);
            } catch (...) {
            }
        }
    }
    return nullptr;
}

}  // namespace detail
COURIER_END_NAMESPACE
