// The shared core of a stream: its partitions, options, clock, counters, the age-retention
// timer and the notifier that wakes waiting readers. Readers, consumer groups and bus captures
// hold it by shared_ptr, so none of them can outlive the records they point into.
#pragma once

#include <courier/bus/detail/bus_core.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/runtime/timer_service.hpp>
#include <courier/stream/detail/partition_log.hpp>
#include <courier/stream/record.hpp>
#include <courier/stream/stream_options.hpp>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace detail {

/// Wakes async readers when records arrive. An append publishes its record under its
/// partition's mutex, then (after unlocking) reads `has_waiters`. A waiter registers, then
/// passes through every partition's mutex (`stream_state::sync_appends`), then reads again.
/// For each partition either the append's critical section came first (the waiter's second
/// read sees the record) or the waiter's pass did (the append's has_waiters read sees the
/// registration), so no wake-up is lost; and an append with nobody waiting pays one plain load,
/// no store-load fence.
class append_notifier {
public:
    bool has_waiters() const noexcept { return waiting_.load(std::memory_order_acquire) != 0; }

    /// Runs `fn` once, at the next notify() (from the appending thread: keep it short, post).
    void wait(std::function<void()> fn) {
        std::lock_guard lock(mutex_);
        fns_.push_back(std::move(fn));
        waiting_.store(fns_.size(), std::memory_order_release);
    }
    void notify() {
        std::vector<std::function<void()>> fns;
        {
            std::lock_guard lock(mutex_);
            fns.swap(fns_);
            waiting_.store(0, std::memory_order_release);
        }
        for (auto& f : fns) f();
    }

private:
    std::mutex mutex_;
    std::vector<std::function<void()>> fns_;
    std::atomic<std::size_t> waiting_{0};
};

/// Counters kept outside the partitions (appended / trimmed / compacted live in each
/// partition, under its lock).
struct stream_counters {
    std::atomic<std::uint64_t> rejected{0};
    std::atomic<std::uint64_t> captured{0};
};

class stream_state : public std::enable_shared_from_this<stream_state> {
public:
    stream_state(std::string name, stream_options o, courier::clock& clk, std::optional<runtime_services> services)
        : name_(std::move(name)), options_(std::move(o)), clock_(clk), services_(std::move(services)),
          coarse_(options_.coarse_timestamps && dynamic_cast<const system_clock*>(&clk) != nullptr) {
        if (options_.partitions == 0) {
            throw courier_error(error(errc::invalid_argument, "[courier.stream.invalid_options] stream '" + name_ +
                                                                  "': partitions must be at least 1"));
        }
        parts_.reserve(options_.partitions);
        for (std::uint32_t p = 0; p < options_.partitions; ++p) parts_.push_back(std::make_unique<partition_log>(p, options_));
    }

    const std::string& name() const noexcept { return name_; }
    const stream_options& options() const noexcept { return options_; }
    courier::clock& clock() const noexcept { return clock_; }
    const std::optional<runtime_services>& services() const noexcept { return services_; }
    std::uint32_t partition_count() const noexcept { return static_cast<std::uint32_t>(parts_.size()); }
    partition_log& part(std::uint32_t p) noexcept { return *parts_[p]; }
    const partition_log& part(std::uint32_t p) const noexcept { return *parts_[p]; }
    append_notifier& notifier() noexcept { return notifier_; }
    stream_counters& counters() noexcept { return counters_; }
    bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }

    /// Appends to `partition`, or to the key's partition (round robin for an empty key).
    result<stream_position> append(std::optional<std::uint32_t> partition, stream_record&& r) {
        return append_impl(partition, r.size_bytes(), r.key, [&](partition_log& log) {
            return log.append(std::move(r), stamp(), options_.retention);
        });
    }
    /// The same from views, building the record in place in its segment.
    result<stream_position> append(std::optional<std::uint32_t> partition, std::string_view key, std::string_view payload,
                                   record_headers* headers) {
        std::size_t size = key.size() + payload.size();
        if (headers)
            for (const auto& [k, v] : *headers) size += k.size() + v.size();
        return append_impl(partition, size, key, [&](partition_log& log) {
            return log.append(key, payload, headers, stamp(), options_.retention);
        });
    }

private:
    // The append timestamp (see stream_options::coarse_timestamps).
    time_point stamp() const noexcept {
#if defined(__linux__) && defined(CLOCK_REALTIME_COARSE)
        if (coarse_) {
            timespec ts;
            ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);
            return time_point(std::chrono::duration_cast<duration>(std::chrono::seconds(ts.tv_sec) +
                                                                   std::chrono::nanoseconds(ts.tv_nsec)));
        }
#endif
        return clock_.now();
    }

    template <class Append>
    result<stream_position> append_impl(std::optional<std::uint32_t> partition, std::size_t size, std::string_view key,
                                        Append&& do_append) {
        if (COURIER_UNLIKELY(closed())) {
            return unexpected(errc::closed, "[courier.stream.closed] stream '" + name_ + "' is closed");
        }
        if (COURIER_UNLIKELY(size > options_.max_record_bytes ||
                             (options_.retention.max_bytes && size > options_.retention.max_bytes))) {
            counters_.rejected.fetch_add(1, std::memory_order_relaxed);
            return unexpected(errc::limit_exceeded, "[courier.stream.record_too_large] stream '" + name_ + "': a record of " +
                                                        std::to_string(size) + " bytes exceeds the limit");
        }
        const auto n = partition_count();
        std::uint32_t p;
        if (partition) {
            p = *partition;
        } else if (key.empty()) {
            p = n == 1 ? 0 : next_round_robin_.fetch_add(1, std::memory_order_relaxed) % n;
        } else {
            p = n == 1 ? 0 : static_cast<std::uint32_t>(stable_hash(key) % n);
        }
        if (COURIER_UNLIKELY(p >= n)) {
            counters_.rejected.fetch_add(1, std::memory_order_relaxed);
            return unexpected(errc::invalid_argument, "[courier.stream.bad_partition] stream '" + name_ + "' has " +
                                                          std::to_string(n) + " partitions; there is no partition " +
                                                          std::to_string(p));
        }
        auto out = do_append(*parts_[p]);  // counts appended / trimmed / compacted itself
        if (options_.retention.max_age > duration::zero() && services_ && !age_armed_.load(std::memory_order_acquire))
            arm_age_timer();
        if (notifier_.has_waiters()) notifier_.notify();
        return stream_position{p, out.offset};
    }

public:

    /// Orders this thread against every partition's appends (see append_notifier).
    void sync_appends() const {
        for (const auto& p : parts_) p->sync();
    }

    /// Trims records older than max_age now; returns how many.
    std::size_t enforce_retention() {
        if (options_.retention.max_age <= duration::zero()) return 0;
        const auto cutoff = clock_.now() - options_.retention.max_age;
        std::size_t n = 0;
        for (auto& p : parts_) n += p->trim_older_than(cutoff);
        return n;
    }

    compaction_report compact() {
        compaction_report total;
        for (auto& p : parts_) {
            auto r = p->compact();
            total.removed += r.removed;
            total.removed_bytes += r.removed_bytes;
            total.kept += r.kept;
        }
        return total;
    }

    /// Stops appends and wakes every waiter (their reads then complete with errc::closed).
    void close() {
        closed_.store(true, std::memory_order_release);
        {
            std::lock_guard lock(age_mutex_);
            if (age_armed_.exchange(false) && services_) services_->timers.cancel(age_timer_);
        }
        notifier_.notify();
    }

private:
    // Arms the age timer at the oldest record's expiry. The timer clears age_armed_ before it
    // looks at the partitions, so an append that finds the flag clear re-arms it, and one that
    // finds it set is seen by the timer's scan: no record escapes its expiry.
    void arm_age_timer() {
        std::lock_guard lock(age_mutex_);
        if (age_armed_.load(std::memory_order_acquire) || closed()) return;
        std::optional<time_point> oldest;
        for (auto& p : parts_) {
            auto t = p->oldest_timestamp();
            if (t && (!oldest || *t < *oldest)) oldest = t;
        }
        if (!oldest) return;
        age_armed_.store(true, std::memory_order_release);
        std::weak_ptr<stream_state> weak = weak_from_this();
        age_timer_ = services_->timers.schedule_at(*oldest + options_.retention.max_age, [weak] {
            if (auto self = weak.lock()) self->on_age_timer();
        });
    }
    void on_age_timer() {
        {
            std::lock_guard lock(age_mutex_);
            age_armed_.store(false, std::memory_order_seq_cst);
        }
        enforce_retention();
        if (!closed()) arm_age_timer();
    }

    std::string name_;
    stream_options options_;
    courier::clock& clock_;
    std::optional<runtime_services> services_;
    const bool coarse_;
    std::vector<std::unique_ptr<partition_log>> parts_;
    append_notifier notifier_;
    stream_counters counters_;
    std::atomic<std::uint32_t> next_round_robin_{0};
    std::atomic<bool> closed_{false};
    std::mutex age_mutex_;
    std::atomic<bool> age_armed_{false};
    timer_id age_timer_ = 0;
};

/// An async read: tries, and when there is nothing yet, waits for the next append (or close)
/// and tries again, on the stream's executor. `Attempt` returns std::nullopt for "nothing yet";
/// it runs under the operation's mutex, so a spurious wake-up never reads twice at once.
template <class Value, class Attempt, class Handler>
class async_read_op : public std::enable_shared_from_this<async_read_op<Value, Attempt, Handler>> {
public:
    using io_executor = boost::asio::io_context::executor_type;

    async_read_op(std::shared_ptr<stream_state> st, Attempt attempt, Handler handler, io_executor ex)
        : st_(std::move(st)), attempt_(std::move(attempt)), handler_(std::move(handler)), work_(ex) {}

    /// Posts the first attempt (never completes inside the initiating call).
    void start() {
        auto self = this->shared_from_this();
        boost::asio::post(work_.get_executor(), [self] { self->run(); });
    }

private:
    void run() {
        std::unique_lock lock(mutex_);
        if (done_) return;
        if (auto r = attempt_()) return finish(std::move(*r), lock);
        auto ex = work_.get_executor();
        st_->notifier().wait([self = this->shared_from_this(), ex] { boost::asio::post(ex, [self] { self->run(); }); });
        st_->sync_appends();
        if (auto r = attempt_()) return finish(std::move(*r), lock);  // raced with an append
    }
    void finish(result<Value> r, std::unique_lock<std::mutex>& lock) {
        done_ = true;
        Handler h(std::move(handler_));
        auto work = std::move(work_);
        lock.unlock();
        auto ex = boost::asio::get_associated_executor(h, work.get_executor());
        boost::asio::dispatch(ex, [h = std::move(h), r = std::move(r)]() mutable { std::move(h)(std::move(r)); });
    }

    std::shared_ptr<stream_state> st_;
    Attempt attempt_;
    Handler handler_;
    boost::asio::executor_work_guard<io_executor> work_;
    std::mutex mutex_;
    bool done_ = false;
};

/// Starts an async read, or completes with errc::invalid_state on a stream without executor.
template <class Value, class Attempt, class Handler>
void start_async_read(const std::shared_ptr<stream_state>& st, Attempt attempt, Handler&& handler) {
    using H = std::decay_t<Handler>;
    if (!st->services()) {
        auto ex = boost::asio::get_associated_executor(handler);
        result<Value> r = unexpected(errc::invalid_state, "[courier.stream.no_executor] stream '" + st->name() +
                                                             "' was made without a bus: async reads need its executor");
        boost::asio::post(ex, [h = H(std::forward<Handler>(handler)), r = std::move(r)]() mutable { std::move(h)(std::move(r)); });
        return;
    }
    auto op = std::make_shared<async_read_op<Value, Attempt, H>>(st, std::move(attempt), H(std::forward<Handler>(handler)),
                                                                 st->services()->executor);
    op->start();
}

}  // namespace detail
COURIER_END_NAMESPACE
