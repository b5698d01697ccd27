// The vocabulary of background jobs: job states, per-job options (delay/ETA, priority,
// attempts, backoff, per-attempt timeout, TTL, deduplication key), per-queue options
// (concurrency, weight/priority between queues, rate limit), system options and counters.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/retry_policy.hpp>
#include <courier/core/uuid.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Where a job is in its life.
///
/// ```
///  enqueue ──> waiting <──── delayed (delay/ETA)          cancel: waiting/delayed/retrying -> cancelled
///                │  ▲ (backoff timer)                      TTL:    waiting/delayed -> expired
///                ▼  │                                      redrive: dead -> waiting
///              active ──> retrying                         shutdown: waiting/delayed/retrying -> cancelled
///                │  └───> completed | cancelled | dead (dead-letter store) | failed (no dead letter)
/// ```
enum class job_state : std::uint8_t {
    waiting,    ///< ready to run, queued
    delayed,    ///< waits for its delay or ETA
    active,     ///< a handler runs it now
    retrying,   ///< an attempt failed; waits for its backoff before the next one
    completed,  ///< the handler returned (its result is kept)
    failed,     ///< every allowed attempt failed and the job asked for no dead letter
    dead,       ///< every allowed attempt failed (or a non-retryable error): in the dead-letter store
    expired,    ///< its TTL passed before it started
    cancelled,  ///< cancelled by the caller (or by shutdown before it started)
};

constexpr std::string_view to_string(job_state s) noexcept {
    switch (s) {
    case job_state::waiting: return "waiting";
    case job_state::delayed: return "delayed";
    case job_state::active: return "active";
    case job_state::retrying: return "retrying";
    case job_state::completed: return "completed";
    case job_state::failed: return "failed";
    case job_state::dead: return "dead";
    case job_state::expired: return "expired";
    case job_state::cancelled: return "cancelled";
    }
    return "unknown";
}

/// True for the states a job leaves only through a redrive (dead) or never.
constexpr bool is_terminal(job_state s) noexcept {
    return s == job_state::completed || s == job_state::failed || s == job_state::dead || s == job_state::expired ||
           s == job_state::cancelled;
}

/// The default backoff of a job: exponential from 1 s, doubling, capped at 5 min, +/-20% jitter.
inline retry_policy default_job_backoff() {
    return retry_policy::exponential(std::chrono::seconds(1), 2.0, std::chrono::minutes(5), 0);
}

/// Options of one enqueue. Every field has a safe default; all times are on the runtime's clock.
struct job_options {
    /// Run no earlier than now + delay (state `delayed` meanwhile).
    duration delay{0};
    /// Run no earlier than this instant; wins over `delay` when set.
    std::optional<time_point> eta;
    /// Higher runs first within the queue. 0 (the default) takes the lock-free FIFO lane; other
    /// values a small heap (FIFO among equal priorities): positive before 0 before negative.
    int priority = 0;
    /// Attempts in total, the first included (at least 1).
    std::uint32_t max_attempts = 3;
    /// Delay between attempts (fixed, exponential, jitter: see retry_policy). Its
    /// `maximum_attempts` is ignored (max_attempts counts); its `is_retryable` is honoured: an
    /// error it refuses ends the job at once (non_retryable<E...>()).
    retry_policy backoff = default_job_backoff();
    /// Per-attempt time limit; 0 means none. See job_context::cancelled for what a timeout
    /// can and cannot do to a handler that is running.
    duration timeout{0};
    /// Expire the job if it has not started within `ttl` of its enqueue; 0 means never.
    duration ttl{0};
    /// While a job with this key is waiting, delayed, active or retrying, another enqueue with
    /// the same key is refused (errc::duplicate, naming the holder). Empty: no deduplication.
    std::string dedup_key;
    /// After the last failed attempt: keep the job in the queue's dead-letter store (state
    /// `dead`, can be redriven) or only mark it `failed`.
    bool dead_letter = true;
};

/// N jobs per interval (a fixed window on the runtime's clock). max == 0: no limit.
struct rate_limit {
    std::uint32_t max = 0;
    duration interval = std::chrono::seconds(1);
};

/// Options of one named queue.
struct job_queue_options {
    /// At most this many jobs of this queue run at once; 0: only the system's limit applies.
    std::uint32_t concurrency = 0;
    /// Share of the workers under queue_selection::weighted (smooth weighted round robin).
    std::uint32_t weight = 1;
    /// Order under queue_selection::strict: a higher value always goes first.
    int priority = 0;
    /// Jobs started per interval.
    courier::rate_limit rate_limit{};
    /// Dead jobs kept before the oldest is evicted (and counted).
    std::size_t dead_letter_capacity = 10000;
    /// At most this many jobs of this queue not yet finished (waiting, delayed, active or
    /// retrying); an enqueue or redrive past it is refused with `errc::full`
    /// (`[courier.jobs.full]`) and counted in `refused_full`, so producers far faster than the
    /// workers get backpressure instead of an ever larger backlog. 0: no bound (and no cost).
    std::size_t max_jobs = 0;
};

/// How free workers choose between queues that have work.
enum class queue_selection : std::uint8_t {
    weighted,  ///< by weight (3:1 gives three jobs of one queue for each of the other)
    strict,    ///< always the highest-priority queue with work (lower ones may starve: on purpose)
};

/// Options of a job_system.
struct job_system_options {
    /// Jobs running at once over all queues (worker slots on the executor); 0: the runtime's
    /// thread count (1 on a manual runtime).
    std::uint32_t concurrency = 0;
    queue_selection selection = queue_selection::weighted;
    /// Jobs a worker slot runs before it yields the executor (fairness with other work).
    std::uint32_t batch = 64;
    /// Pause instructions (~30-140 ns each) a worker slot that found no job spends looking
    /// again before it parks. Parking costs the next enqueue a thread wake-up (a system call);
    /// 0 disables the spin (e.g. when the executor's threads must never wait on jobs).
    std::uint32_t idle_spin = 512;
    /// Publish courier.job.* life-cycle events on the runtime's bus.
    bool publish_events = true;
    /// How long the destructor lets active jobs finish.
    duration shutdown_timeout = std::chrono::seconds(5);
};

/// One failed attempt of a job.
struct job_attempt_error {
    std::uint32_t attempt = 0;
    time_point at{};
    std::string error;
};

/// Progress reported by a handler.
struct job_progress {
    int percent = 0;  ///< 0..100
    std::string message;
};

/// When things happened to a job (zero when they have not).
struct job_times {
    time_point enqueued{};
    time_point started{};   ///< first attempt
    time_point finished{};  ///< reached its (latest) terminal state
};

/// A snapshot of one queue's counters.
struct job_queue_stats {
    std::string name;
    std::uint64_t enqueued = 0;
    std::uint64_t completed = 0;
    std::uint64_t failed_attempts = 0;  ///< attempts that threw or timed out
    std::uint64_t retried = 0;          ///< retries scheduled
    std::uint64_t timed_out = 0;        ///< attempts ended by their timeout
    std::uint64_t late_results = 0;     ///< handlers that returned after their attempt had timed out (ignored)
    std::uint64_t dead = 0;
    std::uint64_t failed = 0;
    std::uint64_t expired = 0;
    std::uint64_t cancelled = 0;
    std::uint64_t deduplicated = 0;     ///< enqueues refused by a live dedup key
    std::uint64_t refused_full = 0;     ///< enqueues and redrives refused by max_jobs
    std::uint64_t rate_limited = 0;     ///< times a worker found the queue's rate window full
    std::int64_t waiting = 0;           ///< ready jobs queued now (approximate)
    std::uint32_t active = 0;           ///< handlers running now
    std::size_t dead_letters = 0;       ///< records in the dead-letter store now
    std::uint64_t dead_letters_evicted = 0;
};

COURIER_END_NAMESPACE
