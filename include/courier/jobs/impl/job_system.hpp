// Bodies of the job engine (jobs/detail/job_core.hpp) and of the public job API
// (jobs/job_system.hpp, jobs/job_handle.hpp). Included at the bottom of job_system.hpp.
#pragma once

#include <courier/actor/detail/type_name.hpp>
#include <courier/core/uuid.hpp>
#include <courier/jobs/detail/job_core.hpp>
#include <courier/jobs/detail/record_pool.hpp>
#include <courier/jobs/job_system.hpp>

#include <boost/asio/defer.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <thread>

COURIER_BEGIN_NAMESPACE
namespace detail {

inline boost::asio::io_context::executor_type job_executor(const job_record& r) noexcept { return r.queue->sys.executor; }

/// The job system whose worker slot runs in this thread (so shutdown from a handler does not
/// wait for itself).
inline const job_system_core*& current_job_system() noexcept {
    thread_local const job_system_core* current = nullptr;
    return current;
}

inline std::string job_error_text(const std::exception_ptr& ep) {
    if (!ep) return "no exception";
    try {
        std::rethrow_exception(ep);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown exception";
    }
}

inline std::string job_millis(duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

// ======================================================================== queue core

inline void job_queue_core::set_handler(const void* tag, std::shared_ptr<const job_handler> h) {
    // Copy-on-write: workers read the table without a lock; old versions stay alive (handlers
    // are registered a handful of times per program).
    std::lock_guard lock(mutex);
    auto table = std::make_unique<handler_table>();
    if (const handler_table* cur = handlers.load(std::memory_order_acquire)) *table = *cur;
    auto it = std::find_if(table->begin(), table->end(), [tag](const auto& e) { return e.first == tag; });
    if (it != table->end()) it->second = std::move(h);
    else table->emplace_back(tag, std::move(h));
    handlers.store(table.get(), std::memory_order_release);
    handler_tables.push_back(std::move(table));
}

inline const job_handler* job_queue_core::find_handler(const void* tag) const noexcept {
    const handler_table* t = handlers.load(std::memory_order_acquire);
    if (!t) return nullptr;
    for (const auto& [k, h] : *t)
        if (k == tag) return h.get();
    return nullptr;
}

inline bool job_queue_core::eligible(std::int64_t now_ns) const noexcept {
    if (paused.load(std::memory_order_acquire)) return false;
    if (!has_ready()) return false;
    if (options.concurrency && active.load(std::memory_order_acquire) >= options.concurrency) return false;
    if (options.rate_limit.max && rate_blocked_until.load(std::memory_order_acquire) > now_ns) return false;
    return true;
}

inline std::size_t job_queue_core::startable() const noexcept {
    if (paused.load(std::memory_order_acquire)) return 0;
    std::size_t n = ready_approx();
    if (options.concurrency) {
        const std::uint32_t a = active.load(std::memory_order_acquire);
        n = std::min<std::size_t>(n, a >= options.concurrency ? 0 : options.concurrency - a);
    }
    return n;
}

inline void job_queue_core::push_ready(std::shared_ptr<job_record> rec) {
    const int p = rec->opts().priority;
    if (p == 0) {
        (void)fast.try_push(std::move(rec));  // unbounded and never closed: only out-of-memory fails
    } else {
        std::lock_guard lock(mutex);
        prio.push_back({p, rec->seq, std::move(rec)});
        std::push_heap(prio.begin(), prio.end(), [](const prio_entry& a, const prio_entry& b) {
            return a.priority != b.priority ? a.priority < b.priority : a.seq > b.seq;
        });
        prio_count.fetch_add(1, std::memory_order_acq_rel);
        if (p > 0) prio_positive.fetch_add(1, std::memory_order_acq_rel);
    }
}

inline std::shared_ptr<job_record> job_queue_core::pop_one() {
    auto pop_prio = [this](bool positive_only) -> std::shared_ptr<job_record> {
        std::lock_guard lock(mutex);
        if (prio.empty() || (positive_only && prio.front().priority <= 0)) return nullptr;
        std::pop_heap(prio.begin(), prio.end(), [](const prio_entry& a, const prio_entry& b) {
            return a.priority != b.priority ? a.priority < b.priority : a.seq > b.seq;
        });
        prio_entry e = std::move(prio.back());
        prio.pop_back();
        prio_count.fetch_sub(1, std::memory_order_acq_rel);
        if (e.priority > 0) prio_positive.fetch_sub(1, std::memory_order_acq_rel);
        return std::move(e.job);
    };
    if (prio_positive.load(std::memory_order_acquire) > 0)
        if (auto r = pop_prio(true)) return r;
    std::shared_ptr<job_record> rec;
    if (fast.try_pop(rec) == queue_status::ok) return rec;
    if (prio_count.load(std::memory_order_acquire) > 0) return pop_prio(false);
    return nullptr;
}

inline std::shared_ptr<job_record> job_queue_core::take() {
    if (paused.load(std::memory_order_acquire)) return nullptr;
    const bool limited = options.concurrency != 0;
    if (limited && active.fetch_add(1, std::memory_order_acq_rel) >= options.concurrency) {
        active.fetch_sub(1, std::memory_order_acq_rel);
        return nullptr;
    }
    const bool rated = options.rate_limit.max != 0;
    if (rated && !consume_rate_token(sys.clock.now())) {
        if (limited) active.fetch_sub(1, std::memory_order_acq_rel);
        return nullptr;
    }
    for (;;) {
        auto rec = pop_one();
        if (!rec) {
            if (limited) active.fetch_sub(1, std::memory_order_acq_rel);
            if (rated) refund_rate_token();
            return nullptr;
        }
        // The clock is read only for a job with a TTL: a no-op job costs no clock read here.
        if (rec->expires_at != time_point::max() && rec->generation.load(std::memory_order_relaxed) == 0 &&
            rec->expires_at <= sys.clock.now()) {
            (void)sys.end_unstarted(rec, job_state::expired,
                                    "[courier.jobs.expired] job " + rec->id.to_string() + " did not start within its TTL of " +
                                        job_millis(rec->opts().ttl));
            continue;
        }
        std::uint64_t st = rec->status.load(std::memory_order_acquire);
        while (bits_of(st) == static_cast<std::uint8_t>(job_state::waiting)) {
            if (rec->status.compare_exchange_weak(st, make_status(attempt_of(st) + 1, job_state::active),
                                                  std::memory_order_acq_rel))
                return rec;
        }
        // A stale entry (cancelled or expired while queued): dropped; look again.
    }
}

inline std::vector<std::shared_ptr<job_record>> job_queue_core::drain_ready() {
    std::vector<std::shared_ptr<job_record>> out;
    std::shared_ptr<job_record> rec;
    while (fast.try_pop(rec) == queue_status::ok) out.push_back(std::move(rec));
    std::lock_guard lock(mutex);
    std::sort_heap(prio.begin(), prio.end(), [](const prio_entry& a, const prio_entry& b) {
        return a.priority != b.priority ? a.priority < b.priority : a.seq > b.seq;
    });
    for (auto it = prio.rbegin(); it != prio.rend(); ++it) out.push_back(std::move(it->job));
    prio.clear();
    prio_count.store(0, std::memory_order_release);
    prio_positive.store(0, std::memory_order_release);
    return out;
}

inline bool job_queue_core::consume_rate_token(time_point now) {
    std::lock_guard lock(mutex);
    if (now >= window_end) {
        window_end = now + options.rate_limit.interval;
        window_count = 0;
        rate_blocked_until.store(0, std::memory_order_release);
    }
    if (window_count < options.rate_limit.max) {
        ++window_count;
        return true;
    }
    count.rate_limited.fetch_add(1, std::memory_order_relaxed);
    rate_blocked_until.store(to_ns(window_end), std::memory_order_release);
    if (!rate_wake_pending) {
        // Lock order: a queue's mutex may be held while taking the timer mutex, never the reverse.
        rate_wake_pending = true;
        timer_entry e;
        e.due = window_end;
        e.kind = timer_kind::rate_wake;
        e.queue = this;
        sys.push_timer(std::move(e));
    }
    return false;
}

inline void job_queue_core::refund_rate_token() {
    std::lock_guard lock(mutex);
    if (window_count) --window_count;
}

inline void job_queue_core::add_dead(std::shared_ptr<job_record> rec) {
    std::lock_guard lock(mutex);
    if (options.dead_letter_capacity && dead.size() >= options.dead_letter_capacity) {
        dead.pop_front();
        ++dead_evicted;
    }
    dead.push_back(std::move(rec));
}

inline job_queue_stats job_queue_core::stats() const {
    job_queue_stats s;
    s.name = name;
    s.enqueued = count.enqueued.load(std::memory_order_relaxed);
    s.completed = count.completed.load(std::memory_order_relaxed);
    s.failed_attempts = count.failed_attempts.load(std::memory_order_relaxed);
    s.retried = count.retried.load(std::memory_order_relaxed);
    s.timed_out = count.timed_out.load(std::memory_order_relaxed);
    s.late_results = count.late_results.load(std::memory_order_relaxed);
    s.dead = count.dead.load(std::memory_order_relaxed);
    s.failed = count.failed.load(std::memory_order_relaxed);
    s.expired = count.expired.load(std::memory_order_relaxed);
    s.cancelled = count.cancelled.load(std::memory_order_relaxed);
    s.deduplicated = count.deduplicated.load(std::memory_order_relaxed);
    s.refused_full = count.refused_full.load(std::memory_order_relaxed);
    s.rate_limited = count.rate_limited.load(std::memory_order_relaxed);
    s.waiting = static_cast<std::int64_t>(fast.size_approx() + prio_count.load(std::memory_order_relaxed));
    s.active = options.concurrency ? active.load(std::memory_order_relaxed) : sys.running_in(*this);
    std::lock_guard lock(mutex);
    s.dead_letters = dead.size();
    s.dead_letters_evicted = dead_evicted;
    return s;
}

// ======================================================================== flows

inline void flow_state::job_finished(job_record& rec, job_state s) {
    if (type == kind::group) {
        bool last;
        {
            std::lock_guard lock(mutex);
            if (s != job_state::completed) all_completed = false;
            last = --pending == 0;
        }
        if (last) finish(all_completed ? job_state::completed : job_state::failed, {});
        return;
    }
    step_fn step;
    {
        std::lock_guard lock(mutex);
        if (done) return;
        if (s == job_state::completed && next_step < steps.size()) step = steps[next_step++];
    }
    if (!step) {
        finish(s, {});  // the last step completed, or a step ended otherwise
        return;
    }
    auto next = step(rec, shared_from_this());
    if (!next) finish(job_state::failed, next.error().message);
}

inline void flow_state::group_started() {
    bool last;
    {
        std::lock_guard lock(mutex);
        last = --pending == 0;
    }
    if (last) finish(all_completed ? job_state::completed : job_state::failed, {});
}

inline void flow_state::finish(job_state s, std::string why) {
    std::vector<std::unique_ptr<job_waiter>> ws;
    std::function<void(const std::vector<job_handle>&)> callback;
    std::vector<job_handle> handles;
    {
        std::lock_guard lock(mutex);
        if (done) return;
        done = true;
        outcome = s;
        error = std::move(why);
        ws.swap(waiters);
        callback = std::move(on_complete);
        if (callback)
            for (auto& j : jobs) handles.emplace_back(j);
    }
    if (callback) {
        try {
            callback(handles);
        } catch (...) {
            // A throwing callback must not take a worker down; the flow's outcome stands.
        }
    }
    complete_all(ws, s);
}

inline void flow_state::add_waiter(std::unique_ptr<job_waiter> w) {
    std::unique_lock lock(mutex);
    if (done) {
        const job_state s = outcome;
        lock.unlock();
        w->complete(s);
        return;
    }
    waiters.push_back(std::move(w));
}

// ======================================================================== system core

inline job_system_core::job_system_core(runtime& r, job_system_options o)
    : rt(r), executor(r.executor()), clock(r.clock()), options(std::move(o)) {
    coarse_stamps_ = dynamic_cast<const system_clock*>(&clock) != nullptr;
    slot_count_ = options.concurrency ? options.concurrency : std::max<std::uint32_t>(1, r.services().threads);
    if (options.batch == 0) options.batch = 1;
    slots_ = std::make_unique<slot[]>(slot_count_);
}

inline time_point job_system_core::stamp() const noexcept {
#if defined(__linux__) && defined(CLOCK_REALTIME_COARSE)
    if (coarse_stamps_) {
        timespec ts{};
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        return time_point(std::chrono::duration_cast<duration>(std::chrono::seconds(ts.tv_sec) +
                                                                std::chrono::nanoseconds(ts.tv_nsec)));
    }
#endif
    return clock.now();
}

inline job_queue_core& job_system_core::queue(std::string_view name, const job_queue_options& o) {
    std::lock_guard lock(queues_mutex_);
    const std::size_t n = queue_count_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i)
        if (queues_[i]->name == name) return *queues_[i];
    if (n == max_queues)
        throw courier_error(error(errc::limit_exceeded, "[courier.jobs.too_many_queues] a job system holds at most " +
                                                            std::to_string(max_queues) + " queues"));
    queues_[n] = std::make_unique<job_queue_core>(*this, std::string(name), o, n);
    if (o.rate_limit.max) rate_limited_queues_.store(true, std::memory_order_release);
    queue_count_.store(n + 1, std::memory_order_release);
    return *queues_[n];
}

template <class E>
void job_system_core::publish(const job_record& r, job_state s, std::uint32_t attempt, std::string error,
                              std::string message) {
    // Nobody listening (the common case in production): no strings are built, no bus counter is
    // touched, which halves the cost of a no-op job.
    if (!options.publish_events) return;
    if constexpr (requires(event_bus& b) { b.template has_subscribers<E>(); }) {
        if (!rt.bus().template has_subscribers<E>()) return;
    }
    E e;
    e.job_id = r.id;
    e.queue = r.queue->name;
    e.type = std::string(r.type);
    e.state = std::string(to_string(s));
    e.attempt = attempt;
    e.max_attempts = r.opts().max_attempts;
    e.progress = r.progress.load(std::memory_order_relaxed);
    e.message = std::move(message);
    e.error = std::move(error);
    try {
        (void)rt.bus().publish(std::move(e));
    } catch (...) {
        // An event subscriber's failure is the bus's business, never the job's.
    }
}

inline result<std::shared_ptr<job_record>> job_system_core::submit(job_queue_core& q, std::shared_ptr<job_record> rec,
                                                                  std::shared_ptr<job_record>* holder_out) {
    // From here to the push, shutdown waits for us (or we see it closed and push nothing).
    inflight_guard guard(*this);
    if (closed_for_entry())
        return unexpected(errc::closed, "[courier.jobs.closed] the job system is shut down; not enqueued on '" + q.name + "'");
    const job_options& o = rec->opts();
    if (o.max_attempts == 0)
        return unexpected(errc::invalid_argument, "[courier.jobs.invalid_options] max_attempts must be at least 1");
    if (!q.try_hold())
        return unexpected(errc::full, "[courier.jobs.full] queue '" + q.name + "' holds its max_jobs (" +
                                          std::to_string(q.options.max_jobs) + ") unfinished jobs; not enqueued");
    const bool timed = o.ttl > duration::zero() || o.delay > duration::zero() || o.eta;
    const auto now = timed ? clock.now() : stamp();
    rec->id = make_uuid_v7(now);
    rec->queue = &q;
    rec->enqueued_at = now;
    if (o.ttl > duration::zero()) rec->expires_at = now + o.ttl;
    if (o.priority != 0) rec->seq = next_seq();
    rec->attempt_timeout = o.timeout;
    rec->keyed = !o.dedup_key.empty();
    const time_point not_before = o.eta ? *o.eta : now + o.delay;
    const bool delayed = not_before > now;
    const job_state first = delayed ? job_state::delayed : job_state::waiting;
    rec->status.store(make_status(0, first), std::memory_order_relaxed);
    if (!o.dedup_key.empty()) {
        std::lock_guard lock(q.mutex);
        auto it = q.dedup.find(o.dedup_key);
        if (it != q.dedup.end()) {
            if (auto holder = it->second.lock(); holder && !is_terminal(holder->state())) {
                q.count.deduplicated.fetch_add(1, std::memory_order_relaxed);
                auto refusal = unexpected(errc::duplicate, "[courier.jobs.duplicate] dedup key '" + o.dedup_key +
                                                               "' is held by job " + holder->id.to_string() + " (" +
                                                               std::string(to_string(holder->state())) + ") on queue '" +
                                                               q.name + "'");
                if (holder_out) *holder_out = std::move(holder);
                q.release_hold();
                return refusal;
            }
        }
        q.dedup.insert_or_assign(o.dedup_key, rec);
    }
    q.count.enqueued.fetch_add(1, std::memory_order_relaxed);
    publish<job_enqueued>(*rec, first, 0);
    if (o.ttl > duration::zero()) {
        timer_entry e;
        e.due = rec->expires_at;
        e.kind = timer_kind::expire;
        e.weak = rec;
        push_timer(std::move(e));
    }
    if (delayed) {
        timer_entry e;
        e.due = not_before;
        e.kind = timer_kind::promote;
        e.job = rec;
        push_timer(std::move(e));
    } else {
        make_ready(rec);
    }
    return rec;
}

// Wake-up handshake: a producer pushes the job, runs a seq_cst fence, then reads busy_; a slot
// going idle decrements busy_ (seq_cst), runs a fence, then looks at the queues. By the fence
// rules one of them sees the other, so a ready job is never left without a worker. A fence
// (rather than a shared counter of ready jobs) keeps producers and workers off each other's
// cache lines on the hot path.
inline void job_system_core::make_ready(const std::shared_ptr<job_record>& rec) {
    rec->queue->push_ready(rec);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    wake();
}

inline void job_system_core::wake(std::size_t want) {
    if (want == 0 || stopping_.load(std::memory_order_acquire)) return;
    if (busy_.load(std::memory_order_seq_cst) >= slot_count_) return;
    for (std::size_t i = 0; i < slot_count_; ++i) {
        auto& s = slots_[i];
        if (!s.busy.load(std::memory_order_relaxed) && !s.busy.exchange(true, std::memory_order_acq_rel)) {
            busy_.fetch_add(1, std::memory_order_seq_cst);
            post_slot(i, false);
            if (--want == 0) return;
        }
    }
}

inline void job_system_core::post_slot(std::size_t i, bool as_continuation) {
    auto fn = [self = shared_from_this(), i] { self->run_slot(i); };
    // defer: a slot that yields is a continuation of the running handler; Asio queues it
    // without waking another thread.
    if (as_continuation) boost::asio::defer(executor, std::move(fn));
    else boost::asio::post(executor, std::move(fn));
}

inline void job_system_core::run_slot(std::size_t i) {
    const job_system_core* previous = std::exchange(current_job_system(), this);
    std::uint32_t budget = options.batch;
    while (budget-- > 0) {
        auto rec = pick();
        if (!rec) rec = spin_for_work();
        if (!rec) {
            current_job_system() = previous;
            release_slot(i);
            return;
        }
        execute(i, std::move(rec));
    }
    current_job_system() = previous;
    post_slot(i, true);  // yield the thread, keep the slot
}

inline std::shared_ptr<job_record> job_system_core::spin_for_work() {
    // Giving the slot up means the next enqueue wakes a parked thread: a system call on the
    // producer's path (~5-100 us here), while the next job of a busy producer is usually well
    // under a microsecond away. So look again for a short while before parking. Never on a
    // manual runtime (nothing can arrive while this thread spins) or during shutdown.
    if (options.idle_spin == 0 || rt.is_manual()) return nullptr;
    for (std::uint32_t spin = 1; spin <= options.idle_spin; ++spin) {
        detail::cpu_relax();
        if ((spin & 15) != 0) continue;
        if (stopping_.load(std::memory_order_acquire)) return nullptr;
        if (auto rec = pick()) return rec;
    }
    return nullptr;
}

inline void job_system_core::release_slot(std::size_t i) {
    slots_[i].busy.store(false, std::memory_order_release);
    busy_.fetch_sub(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!stopping_.load(std::memory_order_acquire) && any_eligible()) wake();
}

inline std::int64_t job_system_core::inflight() const noexcept {
    std::int64_t n = 0;
    for (const auto& c : inflight_) n += c.n.load(std::memory_order_seq_cst);
    return n;
}

inline std::uint32_t job_system_core::running_in(const job_queue_core& q) noexcept {
    std::uint32_t n = 0;
    for (std::size_t i = 0; i < slot_count_; ++i) {
        auto r = slots_[i].get();
        n += r && r->queue == &q ? 1 : 0;
    }
    return n;
}

inline bool job_system_core::any_eligible() const noexcept {
    const auto now = any_rate_limit() ? to_ns(clock.now()) : 0;
    const std::size_t n = queue_count();
    for (std::size_t i = 0; i < n; ++i)
        if (queues_[i]->eligible(now)) return true;
    return false;
}

inline std::shared_ptr<job_record> job_system_core::pick() {
    if (stopping_.load(std::memory_order_acquire)) return nullptr;
    const std::size_t n = queue_count();
    if (n == 0) return nullptr;
    if (n == 1) return queues_[0]->take();
    std::uint64_t tried = 0;
    return options.selection == queue_selection::strict ? pick_strict(tried) : pick_weighted(tried);
}

inline std::shared_ptr<job_record> job_system_core::pick_strict(std::uint64_t& tried) {
    const std::size_t n = queue_count();
    for (;;) {
        const auto now = any_rate_limit() ? to_ns(clock.now()) : 0;
        job_queue_core* best = nullptr;
        for (std::size_t i = 0; i < n; ++i) {
            auto* q = queues_[i].get();
            if ((tried >> i) & 1 || !q->eligible(now)) continue;
            if (!best || q->options.priority > best->options.priority) best = q;
        }
        if (!best) return nullptr;
        tried |= std::uint64_t{1} << best->index;
        if (auto rec = best->take()) return rec;
    }
}

inline std::shared_ptr<job_record> job_system_core::pick_weighted(std::uint64_t& tried) {
    const std::size_t n = queue_count();
    for (;;) {
        job_queue_core* chosen = nullptr;
        {
            // Smooth weighted round robin (nginx) over the queues that have work now: each pick
            // adds every candidate's weight to its credit, takes the richest, charges it the total.
            std::lock_guard lock(select_mutex_);
            const auto now = any_rate_limit() ? to_ns(clock.now()) : 0;
            std::int64_t total = 0;
            for (std::size_t i = 0; i < n; ++i) {
                auto* q = queues_[i].get();
                if ((tried >> i) & 1 || !q->eligible(now)) continue;
                q->wrr_current += q->options.weight;
                total += q->options.weight;
                if (!chosen || q->wrr_current > chosen->wrr_current) chosen = q;
            }
            if (!chosen) return nullptr;
            chosen->wrr_current -= total;
        }
        tried |= std::uint64_t{1} << chosen->index;
        if (auto rec = chosen->take()) return rec;
    }
}

inline void job_system_core::execute(std::size_t i, std::shared_ptr<job_record> rec) {
    job_queue_core& q = *rec->queue;
    const std::uint32_t n = attempt_of(rec->status.load(std::memory_order_acquire));
    const bool timed = rec->attempt_timeout > duration::zero();
    const auto now = timed ? clock.now() : stamp();
    // Only the first attempt writes it (a later one starts after the first has), so a load and
    // a store do: no locked instruction.
    if (rec->started_ns.load(std::memory_order_relaxed) == 0)
        rec->started_ns.store(to_ns(now), std::memory_order_release);
    const time_point deadline = timed ? now + rec->attempt_timeout : time_point::max();
    if (timed) {
        timer_entry e;
        e.due = deadline;
        e.kind = timer_kind::timeout;
        e.attempt = n;
        e.weak = rec;
        push_timer(std::move(e));
    }
    slot& s = slots_[i];
    job_record* r = rec.get();
    s.put(std::move(rec));
    publish<job_started>(*r, job_state::active, n);
    const job_handler* h = q.find_handler(r->type_tag);
    std::any out;
    std::exception_ptr ep;
    if (!h) {
        ep = std::make_exception_ptr(courier_error(error(errc::not_found, "[courier.jobs.no_handler] queue '" + q.name +
                                                                              "' has no handler for job type '" +
                                                                              std::string(r->type) + "'")));
    } else {
        job_context ctx(*r, n, deadline, abandon_, *this);
        try {
            out = h->run(*r, ctx);
        } catch (...) {
            ep = std::current_exception();
        }
    }
    rec = s.take();
    finish_attempt(rec, n, std::move(out), std::move(ep), h);
    if (q.options.concurrency) q.active.fetch_sub(1, std::memory_order_acq_rel);
}

inline void job_system_core::finish_attempt(const std::shared_ptr<job_record>& rec, std::uint32_t n, std::any out,
                                            std::exception_ptr ep, const job_handler* h) {
    job_queue_core& q = *rec->queue;
    std::uint64_t expected = make_status(n, job_state::active);
    if (!rec->status.compare_exchange_strong(expected, make_status(n, finishing_bits), std::memory_order_acq_rel)) {
        // The attempt timed out while the handler ran: its outcome was decided without it.
        q.count.late_results.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    if (!ep) {
        rec->result = std::move(out);
        rec->result_to_json = h ? h->to_json : nullptr;
        rec->finished_ns.store(to_ns(stamp()), std::memory_order_release);
        rec->status.store(make_status(n, job_state::completed), std::memory_order_seq_cst);
        q.count.completed.fetch_add(1, std::memory_order_relaxed);
        publish<job_completed>(*rec, job_state::completed, n);
        on_terminal(*rec, job_state::completed);
        return;
    }
    std::string text = job_error_text(ep);
    bool cancelled = rec->cancel_requested.load(std::memory_order_acquire);
    if (!cancelled) {
        try {
            std::rethrow_exception(ep);
        } catch (const job_cancelled_error&) {
            cancelled = true;
        } catch (...) {
        }
    }
    if (cancelled) {
        const auto now = clock.now();
        rec->add_error({n, now, text});
        rec->finished_ns.store(to_ns(now), std::memory_order_release);
        rec->status.store(make_status(n, job_state::cancelled), std::memory_order_seq_cst);
        q.count.cancelled.fetch_add(1, std::memory_order_relaxed);
        publish<job_cancelled>(*rec, job_state::cancelled, n, std::move(text));
        on_terminal(*rec, job_state::cancelled);
        return;
    }
    attempt_failed(rec, n, std::move(text), ep, true);
}

inline void job_system_core::attempt_failed(const std::shared_ptr<job_record>& rec, std::uint32_t n, std::string text,
                                            const std::exception_ptr& ep, bool allow_retry) {
    job_queue_core& q = *rec->queue;
    const auto now = clock.now();
    rec->add_error({n, now, text});
    q.count.failed_attempts.fetch_add(1, std::memory_order_relaxed);
    const job_options& o = rec->opts();
    const bool retryable = !ep || !o.backoff.is_retryable || o.backoff.is_retryable(ep);
    // The retry goes into the timer heap: shutdown must either see it there or we see it closed.
    inflight_guard guard(*this);
    if (allow_retry && retryable && n < o.max_attempts && !closed_for_entry()) {
        const duration delay = o.backoff.delay_after(n);
        rec->status.store(make_status(n, job_state::retrying), std::memory_order_seq_cst);
        q.count.retried.fetch_add(1, std::memory_order_relaxed);
        publish<job_failed>(*rec, job_state::retrying, n, std::move(text));
        timer_entry e;
        e.due = now + delay;
        e.kind = timer_kind::promote;
        e.job = rec;
        push_timer(std::move(e));
        return;
    }
    rec->finished_ns.store(to_ns(now), std::memory_order_release);
    if (o.dead_letter) {
        rec->status.store(make_status(n, job_state::dead), std::memory_order_seq_cst);
        q.count.dead.fetch_add(1, std::memory_order_relaxed);
        q.add_dead(rec);
        publish<job_failed>(*rec, job_state::dead, n, std::move(text));
        on_terminal(*rec, job_state::dead);
    } else {
        rec->status.store(make_status(n, job_state::failed), std::memory_order_seq_cst);
        q.count.failed.fetch_add(1, std::memory_order_relaxed);
        publish<job_failed>(*rec, job_state::failed, n, std::move(text));
        on_terminal(*rec, job_state::failed);
    }
}

inline void job_system_core::on_terminal(job_record& rec, job_state s) {
    rec.queue->release_hold();
    if (rec.keyed) {
        job_queue_core& q = *rec.queue;
        std::lock_guard lock(q.mutex);
        auto it = q.dedup.find(rec.opts().dedup_key);
        if (it != q.dedup.end()) {
            auto holder = it->second.lock();
            if (!holder || holder.get() == &rec) q.dedup.erase(it);
        }
    }
    rec.complete_waiters(s);
    // A flow counts each member once: a member redriven later does not change its outcome.
    // Only the first terminal transition touches `flow` (the exchange decides which one).
    if (rec.has_flow && !rec.flow_notified.exchange(true, std::memory_order_acq_rel)) {
        auto flow = std::move(rec.flow);
        flow->job_finished(rec, s);
    }
}

inline bool job_system_core::end_unstarted(const std::shared_ptr<job_record>& rec, job_state to, std::string why) {
    std::uint64_t st = rec->status.load(std::memory_order_acquire);
    for (;;) {
        const std::uint8_t b = bits_of(st);
        const bool unstarted = b == static_cast<std::uint8_t>(job_state::waiting) ||
                               b == static_cast<std::uint8_t>(job_state::delayed);
        const bool between_attempts = b == static_cast<std::uint8_t>(job_state::retrying);
        // A TTL only concerns a job that never started.
        if (!unstarted && !(between_attempts && to != job_state::expired)) return false;
        if (rec->status.compare_exchange_weak(st, make_status(attempt_of(st), to), std::memory_order_seq_cst)) break;
    }
    rec->finished_ns.store(to_ns(clock.now()), std::memory_order_release);
    job_queue_core& q = *rec->queue;
    if (to == job_state::expired) {
        q.count.expired.fetch_add(1, std::memory_order_relaxed);
        publish<job_expired>(*rec, to, attempt_of(st), std::move(why));
    } else {
        q.count.cancelled.fetch_add(1, std::memory_order_relaxed);
        publish<job_cancelled>(*rec, to, attempt_of(st), std::move(why));
    }
    on_terminal(*rec, to);
    return true;
}

inline result<void> job_system_core::cancel(const std::shared_ptr<job_record>& rec) {
    for (;;) {
        const job_state s = rec->state();
        if (is_terminal(s))
            return unexpected(errc::invalid_state, "[courier.jobs.not_cancellable] job " + rec->id.to_string() +
                                                       " is already " + std::string(to_string(s)));
        if (s == job_state::active) {
            rec->cancel_requested.store(true, std::memory_order_release);
            return {};
        }
        if (end_unstarted(rec, job_state::cancelled, "[courier.jobs.cancelled] cancelled by the caller")) return {};
    }
}

// Under q.mutex: the state check, the dedup check, the move out of the dead-letter store and the
// key's new holder are one step, so two redrives of one job, or a redrive racing an enqueue of
// the same key, cannot both win.
inline result<void> job_system_core::redrive_locked(job_queue_core& q, const std::shared_ptr<job_record>& rec) {
    std::uint64_t st = rec->status.load(std::memory_order_acquire);
    if (state_of(st) != job_state::dead)
        return unexpected(errc::invalid_state, "[courier.jobs.not_dead] job " + rec->id.to_string() + " is not dead");
    if (rec->keyed) {
        auto it = q.dedup.find(rec->opts().dedup_key);
        if (it != q.dedup.end()) {
            auto holder = it->second.lock();
            if (holder && holder != rec && !is_terminal(holder->state()))
                return unexpected(errc::duplicate, "[courier.jobs.redrive_duplicate] job " + rec->id.to_string() +
                                                       " stays dead: its dedup key '" + rec->opts().dedup_key +
                                                       "' is held by live job " + holder->id.to_string() + " (" +
                                                       std::string(to_string(holder->state())) + ") on queue '" +
                                                       q.name + "'");
        }
    }
    if (!q.try_hold())
        return unexpected(errc::full, "[courier.jobs.full] job " + rec->id.to_string() + " stays dead: queue '" + q.name +
                                          "' holds its max_jobs (" + std::to_string(q.options.max_jobs) +
                                          ") unfinished jobs");
    if (!rec->status.compare_exchange_strong(st, make_status(0, job_state::waiting), std::memory_order_seq_cst)) {
        q.release_hold();
        return unexpected(errc::invalid_state, "[courier.jobs.not_dead] job " + rec->id.to_string() + " is not dead");
    }
    // A new life: the TTL and its timer entries belong to the old one.
    rec->generation.fetch_add(1, std::memory_order_acq_rel);
    rec->cancel_requested.store(false, std::memory_order_release);
    rec->finished_ns.store(0, std::memory_order_release);
    if (rec->keyed) q.dedup.insert_or_assign(rec->opts().dedup_key, rec);
    return {};
}

inline result<std::shared_ptr<job_record>> job_system_core::redrive(const std::shared_ptr<job_record>& rec) {
    inflight_guard guard(*this);
    if (closed_for_entry())
        return unexpected(errc::closed, "[courier.jobs.closed] the job system is shut down; cannot redrive");
    job_queue_core& q = *rec->queue;
    {
        std::lock_guard lock(q.mutex);
        auto r = redrive_locked(q, rec);
        if (!r) return unexpected(r.error());
        if (auto it = std::find(q.dead.begin(), q.dead.end(), rec); it != q.dead.end()) q.dead.erase(it);
    }
    publish<job_enqueued>(*rec, job_state::waiting, 0);
    make_ready(rec);
    return rec;
}

inline std::size_t job_system_core::redrive_all(job_queue_core& q) {
    inflight_guard guard(*this);
    if (closed_for_entry()) return 0;
    std::vector<std::shared_ptr<job_record>> moved;
    {
        std::lock_guard lock(q.mutex);
        std::deque<std::shared_ptr<job_record>> stay;
        for (auto& rec : q.dead) {
            if (redrive_locked(q, rec)) moved.push_back(std::move(rec));
            else stay.push_back(std::move(rec));  // e.g. its dedup key is held: it stays dead
        }
        q.dead.swap(stay);
    }
    for (auto& rec : moved) {
        publish<job_enqueued>(*rec, job_state::waiting, 0);
        make_ready(rec);
    }
    return moved.size();
}

// ------------------------------------------------------------------------ timers

inline void job_system_core::push_timer(timer_entry e) {
    time_point due;
    {
        std::lock_guard lock(timer_mutex_);
        e.seq = ++timer_seq_;
        heap_.push_back(std::move(e));
        std::push_heap(heap_.begin(), heap_.end(), timer_later{});
        if (heap_.size() >= compact_at_) compact_timers_locked();
        if (heap_.empty() || heap_.front().due >= armed_due_) return;
        armed_due_ = heap_.front().due;
        due = armed_due_;
    }
    arm(due);
}

inline void job_system_core::arm(time_point due) {
    std::weak_ptr<job_system_core> weak = weak_from_this();
    const timer_id id = rt.timers().schedule_at(due, [weak] {
        if (auto self = weak.lock()) self->on_timer();
    });
    timer_id old = 0;
    {
        std::lock_guard lock(timer_mutex_);
        // If an earlier arm superseded this one meanwhile, this timer just fires early: harmless.
        if (armed_due_ == due) old = std::exchange(armed_id_, id);
    }
    if (old) rt.timers().cancel(old);
}

inline void job_system_core::compact_timers_locked() {
    // Timeouts and TTLs of jobs that moved on stay in the heap until their instant; drop them in
    // bulk (amortised O(1) per entry) so a long timeout does not pin finished jobs' memory.
    std::erase_if(heap_, [](const timer_entry& e) {
        switch (e.kind) {
        case timer_kind::timeout: {
            auto r = e.weak.lock();
            return !r || r->status.load(std::memory_order_relaxed) != make_status(e.attempt, job_state::active);
        }
        case timer_kind::expire: {
            auto r = e.weak.lock();
            if (!r || r->generation.load(std::memory_order_relaxed) != e.attempt) return true;
            const auto s = r->state();
            return s != job_state::waiting && s != job_state::delayed;
        }
        case timer_kind::promote: return is_terminal(e.job->state());
        default: return false;
        }
    });
    std::make_heap(heap_.begin(), heap_.end(), timer_later{});
    compact_at_ = std::max<std::size_t>(4096, heap_.size() * 2);
}

inline void job_system_core::on_timer() {
    std::vector<timer_entry> due_now;
    time_point next = time_point::max();
    std::optional<inflight_guard> guard;
    {
        std::lock_guard lock(timer_mutex_);
        if (stopping_.load(std::memory_order_acquire)) return;  // shutdown collects what is left
        // Entered under the lock that shutdown sets stopping_ under: the entries taken below
        // (promotions above all) are either made ready before shutdown collects, or never taken.
        guard.emplace(*this);
        armed_due_ = time_point::max();
        armed_id_ = 0;
        const auto now = clock.now();
        while (!heap_.empty() && heap_.front().due <= now) {
            std::pop_heap(heap_.begin(), heap_.end(), timer_later{});
            due_now.push_back(std::move(heap_.back()));
            heap_.pop_back();
        }
        if (!heap_.empty()) next = armed_due_ = heap_.front().due;
    }
    if (next != time_point::max()) arm(next);
    for (auto& e : due_now) {
        switch (e.kind) {
        case timer_kind::promote: {
            std::uint64_t st = e.job->status.load(std::memory_order_acquire);
            for (;;) {
                const auto b = bits_of(st);
                if (b != static_cast<std::uint8_t>(job_state::delayed) && b != static_cast<std::uint8_t>(job_state::retrying))
                    break;  // cancelled or expired meanwhile
                if (e.job->status.compare_exchange_weak(st, make_status(attempt_of(st), job_state::waiting),
                                                        std::memory_order_acq_rel)) {
                    make_ready(e.job);
                    break;
                }
            }
            break;
        }
        case timer_kind::expire: {
            auto rec = e.weak.lock();
            if (rec && rec->generation.load(std::memory_order_acquire) == e.attempt)
                (void)end_unstarted(rec, job_state::expired,
                                    "[courier.jobs.expired] job " + rec->id.to_string() + " did not start within its TTL of " +
                                        job_millis(rec->opts().ttl));
            break;
        }
        case timer_kind::timeout: {
            auto rec = e.weak.lock();
            if (!rec) break;
            std::uint64_t expected = make_status(e.attempt, job_state::active);
            if (!rec->status.compare_exchange_strong(expected, make_status(e.attempt, finishing_bits),
                                                     std::memory_order_acq_rel))
                break;  // the attempt ended in time
            rec->queue->count.timed_out.fetch_add(1, std::memory_order_relaxed);
            attempt_failed(rec, e.attempt,
                           "[courier.jobs.timeout] attempt " + std::to_string(e.attempt) + " of job " + rec->id.to_string() +
                               " exceeded its timeout of " + job_millis(rec->opts().timeout),
                           nullptr, true);
            break;
        }
        case timer_kind::rate_wake: {
            {
                std::lock_guard lock(e.queue->mutex);
                e.queue->rate_wake_pending = false;
            }
            // A new window: as many slots as the window and the backlog allow.
            wake(std::min<std::size_t>(e.queue->startable(), e.queue->options.rate_limit.max));
            break;
        }
        case timer_kind::repeat: fire_repeat(e.repeat); break;
        }
    }
}

// ------------------------------------------------------------------------ repeats

inline std::uint64_t job_system_core::add_repeat(repeat_entry e) {
    const time_point first = e.next;
    std::uint64_t id;
    {
        std::lock_guard lock(repeat_mutex_);
        id = ++next_repeat_;
        repeats_.emplace(id, std::move(e));
    }
    timer_entry t;
    t.due = first;
    t.kind = timer_kind::repeat;
    t.repeat = id;
    push_timer(std::move(t));
    return id;
}

inline bool job_system_core::cancel_repeat(std::uint64_t id) {
    std::lock_guard lock(repeat_mutex_);
    return repeats_.erase(id) != 0;
}

inline void job_system_core::fire_repeat(std::uint64_t id) {
    std::function<void()> fire;
    time_point next;
    {
        std::lock_guard lock(repeat_mutex_);
        auto it = repeats_.find(id);
        if (it == repeats_.end() || closed()) return;
        repeat_entry& e = it->second;
        const auto now = clock.now();
        if (e.cron) {
            auto n = e.cron->next_after(now);
            if (!n) {
                repeats_.erase(it);
                return;
            }
            next = *n;
        } else {
            next = e.next + e.every;  // on the original grid: no drift
            while (next <= now) next += e.every;
        }
        e.next = next;
        fire = e.fire;
    }
    fire();
    timer_entry t;
    t.due = next;
    t.kind = timer_kind::repeat;
    t.repeat = id;
    push_timer(std::move(t));
}

// ------------------------------------------------------------------------ shutdown

inline job_system_core::shutdown_result job_system_core::shutdown(duration timeout) {
    shutdown_result out;
    if (shut_down_.exchange(true, std::memory_order_acq_rel)) return out;
    closed_.store(true, std::memory_order_seq_cst);
    {
        std::lock_guard lock(repeat_mutex_);
        repeats_.clear();
    }
    {
        std::lock_guard lock(timer_mutex_);
        stopping_.store(true, std::memory_order_seq_cst);
    }
    // A handler that shuts the system down occupies a slot itself: do not wait for it.
    const bool from_handler = current_job_system() == this;
    const std::size_t allowed = from_handler ? 1 : 0;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
    while (busy_.load(std::memory_order_seq_cst) > allowed && std::chrono::steady_clock::now() < deadline) {
        if (rt.is_manual() && !from_handler) {
            if (rt.poll() == 0) break;
        } else {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    }
    if (rt.is_manual() && !from_handler) rt.poll();  // let idle slots notice the stop
    // Enqueues, redrives, retries and timer promotions that passed their closed() check before
    // closed_ was set are still putting their job somewhere: wait for them (they never block),
    // then everything they put is collected below. Any later one sees closed_ and puts nothing.
    // A shutdown called under such a guard (e.g. from an event subscriber) does not wait for it.
    const std::int64_t own = inflight_guard::held();
    for (unsigned spins = 0; inflight() > own; ++spins) {
        if (spins > 1024 && std::chrono::steady_clock::now() >= deadline + std::chrono::seconds(1)) break;
        std::this_thread::yield();
    }
    for (std::size_t i = 0; i < slot_count_; ++i)
        if (auto r = slots_[i].get()) out.still_running.push_back(std::move(r));
    if (!out.still_running.empty()) {
        out.timed_out = !from_handler || out.still_running.size() > 1;
        abandon_.store(true, std::memory_order_seq_cst);
        for (auto& r : out.still_running) r->cancel_requested.store(true, std::memory_order_release);
    }
    std::vector<std::shared_ptr<job_record>> pending;
    for (std::size_t i = 0; i < queue_count(); ++i) {
        auto v = queues_[i]->drain_ready();
        for (auto& r : v) pending.push_back(std::move(r));
    }
    timer_id old = 0;
    {
        std::lock_guard lock(timer_mutex_);
        for (auto& e : heap_)
            if (e.kind == timer_kind::promote) pending.push_back(std::move(e.job));
        heap_.clear();
        old = std::exchange(armed_id_, 0);
        armed_due_ = time_point::max();
    }
    if (old) rt.timers().cancel(old);
    for (auto& r : pending)
        if (end_unstarted(r, job_state::cancelled, "[courier.jobs.shutdown] the job system shut down before the job ran"))
            out.cancelled.push_back(r);
    return out;
}

}  // namespace detail

// ======================================================================== public API

inline std::string_view job_context::queue() const noexcept { return rec_.queue->name; }
inline courier::clock& job_context::clock() const noexcept { return sys_.clock; }

inline void job_context::report_progress(int percent, std::string message) {
    if (rec_.status.load(std::memory_order_acquire) != detail::make_status(attempt_, job_state::active)) return;
    percent = std::clamp(percent, 0, 100);
    rec_.progress.store(percent, std::memory_order_relaxed);
    rec_.set_progress_message(message);
    sys_.publish<job_progressed>(rec_, job_state::active, attempt_, {}, std::move(message));
}

inline std::string_view job_handle::queue() const noexcept { return rec_->queue->name; }
inline courier::result<void> job_handle::cancel() const { return rec_->queue->sys.cancel(rec_); }

// ------------------------------------------------------------------------ job_queue

template <class T>
result<std::shared_ptr<detail::job_record>> job_queue::submit(T&& job, const job_options* options,
                                                              std::shared_ptr<detail::flow_state> flow,
                                                              std::shared_ptr<detail::job_record>* holder) {
    using U = std::remove_cvref_t<T>;
    // The one allocation of a job: control block, record and payload together (recycled).
    std::shared_ptr<detail::job_record> rec;
    if (options) {
        using R = detail::typed_job_with_options<U>;
        auto r = std::allocate_shared<R>(detail::pooled_allocator<R>{}, std::forward<T>(job));
        r->set_options(*options);
        rec = std::move(r);
    } else {
        using R = detail::typed_job<U>;
        rec = std::allocate_shared<R>(detail::pooled_allocator<R>{}, std::forward<T>(job));
    }
    rec->type = job_type_of<U>();
    rec->type_tag = detail::type_id<U>();
    if (flow) {
        rec->flow = flow;
        rec->has_flow = true;
        std::lock_guard lock(flow->mutex);
        flow->jobs.push_back(rec);
    }
    // Moved in: every reference-count change is a locked instruction on the record's first
    // cache line, which the producer has just written (a stall while it comes from the worker).
    const detail::job_record* raw = rec.get();
    auto r = q_->sys.submit(*q_, std::move(rec), holder);
    if (!r && flow) {
        std::lock_guard lock(flow->mutex);
        std::erase_if(flow->jobs, [raw](const std::shared_ptr<detail::job_record>& j) { return j.get() == raw; });
    }
    return r;
}

template <class T, class Handler>
void job_queue::handle(Handler&& handler) {
    using H = std::decay_t<Handler>;
    constexpr bool with_context = std::is_invocable_v<H&, const T&, job_context&>;
    static_assert(with_context || std::is_invocable_v<H&, const T&>,
                  "a job handler takes (const T&) or (const T&, courier::job_context&)");
    using R = std::conditional_t<with_context, std::invoke_result<H&, const T&, job_context&>, std::invoke_result<H&, const T&>>;
    using result_type = std::remove_cvref_t<typename R::type>;
    static_assert(std::is_void_v<result_type> || std::is_copy_constructible_v<result_type>,
                  "a job handler's result is kept in the job and must be copyable");
    auto entry = std::make_shared<detail::job_handler>();
    entry->run = [h = std::forward<Handler>(handler)](detail::job_record& r, job_context& ctx) mutable -> std::any {
        const T& job = static_cast<detail::typed_job<T>&>(r).value;
        if constexpr (std::is_void_v<result_type>) {
            if constexpr (with_context) h(job, ctx);
            else h(job);
            return {};
        } else {
            if constexpr (with_context) return std::any(h(job, ctx));
            else return std::any(h(job));
        }
    };
    if constexpr (!std::is_void_v<result_type>) entry->to_json = &detail::result_as_json<result_type>;
    q_->set_handler(detail::type_id<T>(), std::move(entry));
}

template <class T>
result<job_handle> job_queue::enqueue(T job) {
    auto r = submit(std::move(job), nullptr, nullptr);
    if (!r) return unexpected(r.error());
    return job_handle(std::move(*r));
}

template <class T>
result<job_handle> job_queue::enqueue(T job, const job_options& options) {
    auto r = submit(std::move(job), &options, nullptr);
    if (!r) return unexpected(r.error());
    return job_handle(std::move(*r));
}

template <class T>
result<job_handle> job_queue::enqueue(T job, const job_options& options, std::optional<job_handle>& holder) {
    std::shared_ptr<detail::job_record> h;
    auto r = submit(std::move(job), &options, nullptr, &h);
    if (h) holder.emplace(std::move(h));
    else holder.reset();
    if (!r) return unexpected(r.error());
    return job_handle(std::move(*r));
}

template <class T>
result<repeat_id> job_queue::repeat(T job, repeat_schedule schedule, job_options options) {
    detail::repeat_entry e;
    e.queue = q_;
    const auto now = q_->sys.clock.now();
    if (schedule.cron) {
        auto first = schedule.cron->next_after(now);
        if (!first)
            return unexpected(errc::invalid_argument, "[courier.jobs.invalid_schedule] cron expression '" +
                                                          schedule.cron->text() + "' never fires");
        e.cron = std::move(schedule.cron);
        e.next = *first;
    } else {
        if (schedule.interval <= duration::zero())
            return unexpected(errc::invalid_argument, "[courier.jobs.invalid_schedule] a repeat interval must be positive");
        e.every = schedule.interval;
        e.next = schedule.immediately ? now : now + schedule.interval;
    }
    if (q_->sys.closed()) return unexpected(errc::closed, "[courier.jobs.closed] the job system is shut down");
    // The copy made at each firing goes through a non-owning queue handle: the repeat lives in
    // the system core, which must not own itself.
    e.fire = [q = q_, job = std::move(job), options = std::move(options)] {
        (void)job_queue(*q, nullptr).enqueue(T(job), options);
    };
    return q_->sys.add_repeat(std::move(e));
}

inline bool job_queue::cancel_repeat(repeat_id id) { return q_->sys.cancel_repeat(id); }

inline void job_queue::resume() {
    q_->paused.store(false, std::memory_order_release);
    // The backlog may be long: start as many idle slots as it can use, not one.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    q_->sys.wake(q_->startable());
}

inline std::optional<job_handle> job_queue::find_by_dedup_key(std::string_view key) const {
    std::lock_guard lock(q_->mutex);
    auto it = q_->dedup.find(std::string(key));
    if (it == q_->dedup.end()) return std::nullopt;
    auto rec = it->second.lock();
    if (!rec || is_terminal(rec->state())) return std::nullopt;
    return job_handle(std::move(rec));
}

// ------------------------------------------------------------------------ dead letters

namespace detail {
inline dead_job make_dead_job(const std::shared_ptr<job_record>& rec) {
    dead_job d;
    d.id = rec->id;
    d.queue = rec->queue->name;
    d.type = std::string(rec->type);
    d.payload = rec->payload_json();
    d.attempts = rec->attempts();
    d.errors = rec->errors();
    d.enqueued_at = rec->enqueued_at;
    d.started_at = from_ns(rec->started_ns.load(std::memory_order_acquire));
    d.failed_at = from_ns(rec->finished_ns.load(std::memory_order_acquire));
    d.handle = job_handle(rec);
    return d;
}
}  // namespace detail

inline std::vector<dead_job> job_dead_letters::list() const {
    std::vector<std::shared_ptr<detail::job_record>> recs;
    {
        std::lock_guard lock(q_->mutex);
        recs.assign(q_->dead.begin(), q_->dead.end());
    }
    std::vector<dead_job> out;
    out.reserve(recs.size());
    for (auto& r : recs) out.push_back(detail::make_dead_job(r));
    return out;
}

inline std::optional<dead_job> job_dead_letters::inspect(const uuid& id) const {
    std::shared_ptr<detail::job_record> rec;
    {
        std::lock_guard lock(q_->mutex);
        for (auto& r : q_->dead)
            if (r->id == id) rec = r;
    }
    if (!rec) return std::nullopt;
    return detail::make_dead_job(rec);
}

inline result<job_handle> job_dead_letters::redrive(const uuid& id) {
    std::shared_ptr<detail::job_record> rec;
    {
        std::lock_guard lock(q_->mutex);
        auto it = std::find_if(q_->dead.begin(), q_->dead.end(), [&](const auto& r) { return r->id == id; });
        if (it == q_->dead.end())
            return unexpected(errc::not_found, "[courier.jobs.dead_letter_not_found] no dead job " + id.to_string() +
                                                   " in queue '" + q_->name + "'");
        rec = *it;  // it leaves the store only if the redrive succeeds
    }
    auto r = q_->sys.redrive(rec);
    if (!r) return unexpected(r.error());
    return job_handle(std::move(rec));
}

inline std::size_t job_dead_letters::redrive_all() { return q_->sys.redrive_all(*q_); }

inline std::size_t job_dead_letters::purge() {
    std::deque<std::shared_ptr<detail::job_record>> all;
    {
        std::lock_guard lock(q_->mutex);
        all.swap(q_->dead);
    }
    return all.size();
}

inline std::size_t job_dead_letters::size() const {
    std::lock_guard lock(q_->mutex);
    return q_->dead.size();
}

// ------------------------------------------------------------------------ flows

inline bool flow_handle::done() const {
    std::lock_guard lock(flow_->mutex);
    return flow_->done;
}
inline job_state flow_handle::outcome() const {
    std::lock_guard lock(flow_->mutex);
    return flow_->outcome;
}
inline std::string flow_handle::error() const {
    std::lock_guard lock(flow_->mutex);
    return flow_->error;
}
inline std::vector<job_handle> flow_handle::jobs() const {
    std::lock_guard lock(flow_->mutex);
    std::vector<job_handle> out;
    for (auto& j : flow_->jobs) out.emplace_back(j);
    return out;
}

template <class CompletionToken>
auto flow_handle::async_wait(CompletionToken&& token) const {
    return boost::asio::async_initiate<CompletionToken, void(job_state)>(
        [](auto handler, std::shared_ptr<detail::flow_state> f) {
            using H = decltype(handler);
            auto ex = f->executor;
            f->add_waiter(std::make_unique<detail::job_waiter_op<H>>(std::move(handler), ex));
        },
        token, flow_);
}

namespace detail {
template <class F>
struct first_arg : first_arg<decltype(&F::operator())> {};
template <class C, class R, class A, class... Rest>
struct first_arg<R (C::*)(A, Rest...) const> {
    using type = A;
};
template <class C, class R, class A, class... Rest>
struct first_arg<R (C::*)(A, Rest...)> {
    using type = A;
};
template <class R, class A, class... Rest>
struct first_arg<R (*)(A, Rest...)> {
    using type = A;
};
}  // namespace detail

template <class F>
job_chain& job_chain::then(job_queue queue, F&& make, job_options options) {
    using Fn = std::decay_t<F>;
    using R = std::remove_cvref_t<typename detail::first_arg<Fn>::type>;
    const std::size_t step_number = flow_->steps.size() + 2;
    flow_->steps.push_back([queue, make = Fn(std::forward<F>(make)), options = std::move(options), step_number](
                               detail::job_record& prev,
                               const std::shared_ptr<detail::flow_state>& f) -> result<std::shared_ptr<detail::job_record>> {
        const R* in = std::any_cast<R>(&prev.result);
        if (!in)
            return unexpected(errc::invalid_argument,
                              "[courier.jobs.chain_type_mismatch] step " + std::to_string(step_number) + " takes a " +
                                  std::string(detail::type_name<R>()) + " but job type '" + std::string(prev.type) +
                                  "' returned " + (prev.result.has_value() ? "another type" : "nothing"));
        try {
            auto q = queue;
            return q.submit(make(*in), &options, f);
        } catch (...) {
            return unexpected(errc::handler_failed, "[courier.jobs.chain_step_failed] step " + std::to_string(step_number) +
                                                        ": " + detail::job_error_text(std::current_exception()));
        }
    });
    return *this;
}

inline result<flow_handle> job_chain::start() {
    auto r = first_(flow_);
    if (!r) return unexpected(r.error());
    return flow_handle(flow_);
}

template <class T>
job_group& job_group::add(job_queue queue, T job, job_options options) {
    adds_.push_back([queue, job = std::move(job), options = std::move(options)](
                        const std::shared_ptr<detail::flow_state>& f) mutable {
        return queue.submit(T(job), &options, f);
    });
    return *this;
}

inline job_group& job_group::on_complete(std::function<void(const std::vector<job_handle>&)> fn) {
    std::lock_guard lock(flow_->mutex);
    flow_->on_complete = std::move(fn);
    return *this;
}

inline result<flow_handle> job_group::start() {
    {
        std::lock_guard lock(flow_->mutex);
        flow_->pending = adds_.size() + 1;  // +1 until every member is in: none may end the group early
    }
    std::optional<courier::error> first_error;
    for (auto& add : adds_) {
        auto r = add(flow_);
        if (!r) {
            if (!first_error) first_error = r.error();
            std::lock_guard lock(flow_->mutex);
            flow_->all_completed = false;
            --flow_->pending;
        }
    }
    flow_->group_started();
    if (first_error) return unexpected(*first_error);
    return flow_handle(flow_);
}

// ------------------------------------------------------------------------ job_system

template <class T>
job_chain job_system::chain(job_queue queue, T first, job_options options) {
    job_chain c;
    c.flow_ = std::make_shared<detail::flow_state>(detail::flow_state::kind::chain, core_->executor);
    c.first_ = [queue, job = std::move(first), options = std::move(options)](
                   const std::shared_ptr<detail::flow_state>& f) mutable { return queue.submit(T(job), &options, f); };
    return c;
}

inline job_group job_system::group() {
    job_group g;
    g.flow_ = std::make_shared<detail::flow_state>(detail::flow_state::kind::group, core_->executor);
    return g;
}

inline job_shutdown_report job_system::shutdown(duration timeout) {
    auto r = core_->shutdown(timeout);
    job_shutdown_report out;
    out.timed_out = r.timed_out;
    for (auto& j : r.cancelled) out.cancelled.emplace_back(std::move(j));
    for (auto& j : r.still_running) out.still_running.emplace_back(std::move(j));
    return out;
}

inline std::vector<job_queue_stats> job_system::stats() const {
    std::vector<job_queue_stats> out;
    for (std::size_t i = 0; i < core_->queue_count(); ++i) out.push_back(core_->queue_at(i).stats());
    return out;
}

COURIER_END_NAMESPACE
