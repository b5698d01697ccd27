// The engine of an actor: a mailbox (lock-free mpmc_queue, or bounded_queue with an overflow
// policy), an atomic `scheduled` flag, and turns on the runtime's executor. A message to an idle
// actor schedules it once; a turn handles up to `batch` messages one at a time, then yields.
// Also the actor system's core: the registry, and the thread-local "run next" slot that lets a
// message sent from one actor's handler run the idle receiver next, in the same thread.
#pragma once

#include <courier/actor/actor_options.hpp>
#include <courier/core/clock.hpp>
#include <courier/actor/detail/mail.hpp>
#include <courier/actor/detail/reply.hpp>
#include <courier/actor/detail/type_name.hpp>
#include <courier/actor/unprocessed_message.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/queue/bounded_queue.hpp>
#include <courier/queue/mpmc_queue.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/defer.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE

template <class T>
class actor_context;

namespace detail {

class actor_base;
class actor_system_core;

/// What() of an exception, for failure reports.
inline std::string exception_text(const std::exception_ptr& ep) {
    if (!ep) return "no exception";
    try {
        std::rethrow_exception(ep);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown exception";
    }
}


// ------------------------------------------------------------------------ handler traits

template <class T, class M>
concept handles_with_context = requires(T& t, M&& m, actor_context<T>& c) { t.handle(std::move(m), c); };
template <class T, class M>
concept handles_plain = requires(T& t, M&& m) { t.handle(std::move(m)); };
/// T has a `handle` member for messages of type M (taking it by value, const& or &&,
/// optionally followed by `actor_context<T>&`).
template <class T, class M>
concept can_handle = handles_with_context<T, M> || handles_plain<T, M>;

template <class T, class M>
struct handler_result;
template <class T, class M>
    requires handles_with_context<T, M>
struct handler_result<T, M> {
    using type = decltype(std::declval<T&>().handle(std::declval<M&&>(), std::declval<actor_context<T>&>()));
};
template <class T, class M>
    requires(!handles_with_context<T, M> && handles_plain<T, M>)
struct handler_result<T, M> {
    using type = decltype(std::declval<T&>().handle(std::declval<M&&>()));
};
/// What T's handler for M returns (the type an ask completes with).
template <class T, class M>
using handler_result_t = std::remove_cvref_t<typename handler_result<T, M>::type>;

// ------------------------------------------------------------------------ turns

/// Per thread: which actor system's turns run here now, the actor to run next (an idle actor a
/// handler just sent to), and the actor whose handler runs now.
struct turn_local {
    const actor_system_core* system = nullptr;
    std::shared_ptr<actor_base> next;
    const actor_base* current = nullptr;
};
inline turn_local& this_turn() noexcept {
    thread_local turn_local t;
    return t;
}

// ------------------------------------------------------------------------ system core

/// State shared by an actor_system and its actors (held by shared_ptr: posted turns keep it).
class actor_system_core : public std::enable_shared_from_this<actor_system_core> {
public:
    using executor_type = boost::asio::io_context::executor_type;

    actor_system_core(runtime& rt, actor_system_options o)
        : rt_(rt), executor_(rt.executor()), options_(std::move(o)) {
        if (options_.max_inline_turns == 0) options_.max_inline_turns = 1;
    }

    runtime& rt() noexcept { return rt_; }
    executor_type executor() const noexcept { return executor_; }
    const actor_system_options& options() const noexcept { return options_; }
    bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
    void close() noexcept { closed_.store(true, std::memory_order_release); }

    /// An actor just went from idle to scheduled: run it. From one of this system's turns the
    /// actor takes the thread's run-next slot (an older occupant goes to the executor, where an
    /// idle thread can pick it up); from anywhere else a turn is posted.
    void schedule(std::shared_ptr<actor_base> a) {
        auto& t = this_turn();
        if (t.system == this) {
            if (t.next) post(std::move(t.next));
            t.next = std::move(a);
            return;
        }
        post(std::move(a));
    }

    /// A turn used its whole batch: queue the next turn behind whatever else waits on the
    /// executor (that is the fairness the batch limit promises).
    void yield(std::shared_ptr<actor_base> a) { defer(std::move(a)); }

    void post(std::shared_ptr<actor_base> a);
    // defer: a continuation of the running handler; Asio queues it without waking another thread.
    void defer(std::shared_ptr<actor_base> a);
    void run_turns(std::shared_ptr<actor_base> a);

    /// True when a sender may wait for room in a bounded mailbox (never on a runtime thread,
    /// inside a turn or on a manual runtime: waiting there could deadlock).
    bool may_wait() const noexcept {
        return this_turn().system == nullptr && !rt_.is_manual() && !rt_.in_worker_thread();
    }

    std::string make_name(std::string_view type) {
        return std::string(type) + "#" + std::to_string(name_counter_.fetch_add(1, std::memory_order_relaxed) + 1);
    }

    void add(const std::shared_ptr<actor_base>& a) {
        std::lock_guard lock(mutex_);
        actors_.emplace(a.get(), a);
    }
    void remove(const actor_base* a) {
        std::shared_ptr<actor_base> keep;  // released outside the lock: the actor's destructor may run here
        std::lock_guard lock(mutex_);
        if (auto it = actors_.find(a); it != actors_.end()) {
            keep = std::move(it->second);
            actors_.erase(it);
        }
    }
    std::vector<std::shared_ptr<actor_base>> snapshot() const {
        std::lock_guard lock(mutex_);
        std::vector<std::shared_ptr<actor_base>> out;
        out.reserve(actors_.size());
        for (auto& [p, a] : actors_) out.push_back(a);
        return out;
    }
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return actors_.size();
    }

    template <class T, class... A>
    std::shared_ptr<actor_base> spawn(actor_options opts, std::shared_ptr<actor_base> parent, A&&... args);

private:
    runtime& rt_;
    executor_type executor_;
    actor_system_options options_;
    std::atomic<bool> closed_{false};
    std::atomic<std::uint64_t> name_counter_{0};
    mutable std::mutex mutex_;
    std::unordered_map<const actor_base*, std::shared_ptr<actor_base>> actors_;
};

// ------------------------------------------------------------------------ actor base

/// The untyped part of an actor: life cycle, scheduling flag, counters, supervision plumbing.
class actor_base : public std::enable_shared_from_this<actor_base> {
public:
    /// running -> draining (stop(drain)) -> stopped; running/draining -> stopping (stop now or
    /// hand back, while the stopper collects the mailbox) -> stopped.
    enum class life : std::uint8_t { running, draining, stopping, stopped };

    actor_base(std::shared_ptr<actor_system_core> sys, actor_options opts, std::shared_ptr<actor_base> parent)
        : sys_(std::move(sys)), options_(std::move(opts)), parent_(std::move(parent)) {
        if (options_.batch == 0) options_.batch = 1;
    }
    virtual ~actor_base() = default;
    actor_base(const actor_base&) = delete;
    actor_base& operator=(const actor_base&) = delete;

    /// Handles up to `batch` messages. Only ever run by actor_system_core::run_turns.
    virtual void turn() = 0;
    /// See actor_ref::stop.
    virtual std::vector<unprocessed_message> stop(stop_mode mode) = 0;
    virtual std::size_t depth() const noexcept = 0;

    const std::string& name() const noexcept { return options_.name; }
    const actor_options& options() const noexcept { return options_; }
    actor_system_core& system() noexcept { return *sys_; }
    const std::shared_ptr<actor_system_core>& system_ptr() const noexcept { return sys_; }
    const std::shared_ptr<actor_base>& parent() const noexcept { return parent_; }
    bool stopped() const noexcept { return life_.load(std::memory_order_acquire) == life::stopped; }

    actor_stats stats() const {
        actor_stats s;
        s.name = options_.name;
        s.processed = processed_.load(std::memory_order_relaxed);
        s.failures = failures_.load(std::memory_order_relaxed);
        s.restarts = restarts_.load(std::memory_order_relaxed);
        s.escalations = escalations_.load(std::memory_order_relaxed);
        s.undelivered = undelivered_.load(std::memory_order_relaxed);
        s.late_replies = late_replies_.load(std::memory_order_relaxed);
        s.ask_timeouts = ask_timeouts_.load(std::memory_order_relaxed);
        s.queue_depth = depth();
        s.stopped = stopped();
        return s;
    }

    void add_child(const std::shared_ptr<actor_base>& c) {
        std::lock_guard lock(children_mutex_);
        std::erase_if(children_, [](const std::weak_ptr<actor_base>& w) { return w.expired(); });
        children_.push_back(c);
    }

    void count_ask_timeout() noexcept { ask_timeouts_.fetch_add(1, std::memory_order_relaxed); }
    void count_late_reply() noexcept { late_replies_.fetch_add(1, std::memory_order_relaxed); }

protected:
    /// Asks the ancestors' child_supervisor strategies, nearest first, until one decides.
    /// With nobody left to ask, the actor stops.
    supervision_directive escalate(const actor_failure& f) {
        escalations_.fetch_add(1, std::memory_order_relaxed);
        for (const actor_base* p = parent_.get(); p; p = p->parent_.get()) {
            if (!p->options_.child_supervisor) continue;
            supervision_directive d = supervision_directive::stop;
            try {
                d = p->options_.child_supervisor(f);
            } catch (...) {
                return supervision_directive::stop;  // a strategy that throws cannot be trusted with the child
            }
            if (d != supervision_directive::escalate) return d;
        }
        return supervision_directive::stop;
    }

    /// Hands a message that will never be handled to on_undelivered (an ask is answered with
    /// `why` first), or counts and destroys it.
    void undeliver(mail&& m, const std::exception_ptr& why) noexcept {
        if (!m) return;
        m.ops()->fail(m, why);
        undelivered_.fetch_add(1, std::memory_order_relaxed);
        if (options_.on_undelivered) {
            try {
                options_.on_undelivered(unprocessed_message(std::move(m)));
            } catch (...) {
                // The callback's own failure must not turn into a lost wake-up or a crash.
            }
        }
        m.reset();
    }

    /// Marks the actor stopped, leaves the registry and stops the children (drain).
    void finish_stop() {
        life_.store(life::stopped, std::memory_order_seq_cst);
        std::vector<std::weak_ptr<actor_base>> kids;
        {
            std::lock_guard lock(children_mutex_);
            kids.swap(children_);
        }
        for (auto& w : kids)
            if (auto c = w.lock()) (void)c->stop(stop_mode::drain);
        sys_->remove(this);
    }

    void wait_for_turns(long allowed) const noexcept {
        for (unsigned spins = 0; inflight_.load(std::memory_order_seq_cst) > allowed; ++spins) {
            if (spins < 64) std::this_thread::yield();
            else std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
    }

    std::shared_ptr<actor_system_core> sys_;
    actor_options options_;
    const std::shared_ptr<actor_base> parent_;

    // Senders write `scheduled_` (one exchange per message); keep it apart from the turn's data.
    alignas(cache_line_size) std::atomic<bool> scheduled_{false};
    alignas(cache_line_size) std::atomic<life> life_{life::running};
    std::atomic<long> inflight_{0};  // turns between their entry check and their exit
    std::atomic<std::uint64_t> processed_{0};
    std::atomic<std::uint64_t> failures_{0};
    std::atomic<std::uint64_t> restarts_{0};
    std::atomic<std::uint64_t> escalations_{0};
    std::atomic<std::uint64_t> undelivered_{0};
    std::atomic<std::uint64_t> late_replies_{0};
    std::atomic<std::uint64_t> ask_timeouts_{0};

    std::mutex children_mutex_;
    std::vector<std::weak_ptr<actor_base>> children_;
};

inline void actor_system_core::post(std::shared_ptr<actor_base> a) {
    boost::asio::post(executor_, [a = std::move(a)]() mutable {
        auto& sys = a->system();
        sys.run_turns(std::move(a));
    });
}

inline void actor_system_core::defer(std::shared_ptr<actor_base> a) {
    boost::asio::defer(executor_, [a = std::move(a)]() mutable {
        auto& sys = a->system();
        sys.run_turns(std::move(a));
    });
}

inline void actor_system_core::run_turns(std::shared_ptr<actor_base> a) {
    auto& t = this_turn();
    const actor_system_core* previous = std::exchange(t.system, this);
    std::shared_ptr<actor_base> previous_next = std::move(t.next);  // empty unless nested
    for (std::uint32_t turns = 1;; ++turns) {
        a->turn();
        if (!t.next) break;
        a = std::move(t.next);
        if (turns >= options_.max_inline_turns) {
            defer(std::move(a));
            break;
        }
    }
    t.system = previous;
    t.next = std::move(previous_next);
}

// ------------------------------------------------------------------------ mail kinds

/// Error every stop-related rejection carries.
inline std::exception_ptr stopped_error(const std::string& actor, std::string_view why) {
    return std::make_exception_ptr(courier_error(
        error(errc::closed, "[courier.actor.stopped] actor '" + actor + "' " + std::string(why))));
}

/// An ask's message and its pending reply.
template <class M, class R>
struct ask_payload {
    M msg;
    std::shared_ptr<reply_base<R>> reply;

    ask_payload(M&& m, std::shared_ptr<reply_base<R>> r) : msg(std::move(m)), reply(std::move(r)) {}
    ask_payload(ask_payload&&) noexcept(std::is_nothrow_move_constructible_v<M>) = default;
    ~ask_payload() {
        // Never handled and never failed explicitly (e.g. destroyed with a mailbox): the asker
        // still gets an answer.
        if (reply && !reply->done())
            reply->complete(unexpected(errc::closed, "[courier.actor.undelivered] the message was destroyed unhandled"));
    }
};

template <class Cell, class M>
struct tell_model {
    static void invoke(void* cell, mail& m) { static_cast<Cell*>(cell)->call(std::move(*m.template get<M>())); }
    static void fail(mail&, const std::exception_ptr&) noexcept {}
    static void* message(mail& m) noexcept { return m.template get<M>(); }
    static constexpr mail_ops ops{&invoke, &payload_model<M>::relocate, &payload_model<M>::destroy, &fail,
                                  &message, type_id<M>(), type_name<M>(), false};
};

template <class Cell, class M, class R>
struct ask_model {
    using payload = ask_payload<M, R>;
    static void invoke(void* cell, mail& m) {
        payload& p = *m.template get<payload>();
        // The reply leaves the mail first: whatever happens below, it is completed exactly once.
        auto reply = std::move(p.reply);
        static_cast<Cell*>(cell)->call_ask(std::move(p.msg), *reply);
    }
    static void fail(mail& m, const std::exception_ptr& why) noexcept {
        payload& p = *m.template get<payload>();
        if (!p.reply) return;
        std::string text = exception_text(why);
        std::error_code code = make_error_code(errc::closed);
        try {
            std::rethrow_exception(why);
        } catch (const courier_error& e) {
            code = e.code();
        } catch (...) {
        }
        p.reply->complete(unexpected(error(code, std::move(text))));
        p.reply.reset();
    }
    static void* message(mail& m) noexcept { return &m.template get<payload>()->msg; }
    static constexpr mail_ops ops{&invoke, &payload_model<payload>::relocate, &payload_model<payload>::destroy,
                                  &fail, &message, type_id<M>(), type_name<M>(), true};
};

// ------------------------------------------------------------------------ the cell

/// An actor of behaviour T: its state, its mailbox and its turns.
template <class T>
class actor_cell final : public actor_base {
public:
    using factory = std::function<std::unique_ptr<T>()>;
    using unbounded_box = mpmc_queue<mail>;
    using bounded_box = bounded_queue<mail>;
    /// Mails taken out of the mailbox at once (a turn's handlers then run on this buffer).
    static constexpr std::size_t buffer_size = 16;

    actor_cell(std::shared_ptr<actor_system_core> sys, actor_options opts, std::shared_ptr<actor_base> parent,
               factory make)
        : actor_base(std::move(sys), std::move(opts), std::move(parent)), make_(std::move(make)) {
        if (options_.capacity == 0) {
            unbounded_ = std::make_unique<unbounded_box>(32);
        } else {
            bounded_ = std::make_unique<bounded_box>(options_.capacity, options_.overflow,
                                                     [this](mail&& m) { drop(std::move(m)); });
        }
        state_ = make_();
    }

    ~actor_cell() override = default;

    // ---------------------------------------------------------------- senders

    /// Sends an M. Returns ok, full, dropped or closed; on full or closed `m` is untouched.
    template <class M>
    queue_status try_send(M& m, bool allow_wait) {
        mail ml;
        ml.emplace<M>(&tell_model<actor_cell, M>::ops, std::move(m));
        const queue_status s = push(ml, allow_wait);
        if (COURIER_UNLIKELY(s == queue_status::full || s == queue_status::closed)) {
            if constexpr (std::is_move_assignable_v<M>) m = std::move(*ml.template get<M>());
        }
        return s;
    }

    /// Sends an M; a message that cannot be queued goes to on_undelivered (or is counted).
    template <class M>
    void send(M&& m) {
        mail ml;
        ml.emplace<std::remove_cvref_t<M>>(&tell_model<actor_cell, std::remove_cvref_t<M>>::ops, std::forward<M>(m));
        const queue_status s = push(ml, sys_->may_wait());
        if (COURIER_UNLIKELY(s == queue_status::full || s == queue_status::closed)) undeliver(std::move(ml), reject_error(s));
    }

    template <class M, class Handler>
    void start_ask(M&& msg, duration timeout, Handler&& handler) {
        using R = handler_result_t<T, M>;
        auto reply = std::make_shared<reply_op<R, std::decay_t<Handler>>>(std::forward<Handler>(handler), sys_->executor());
        auto& timers = sys_->rt().timers();
        reply->use_timers(&timers);
        if (timeout != duration::max()) {
            std::weak_ptr<actor_base> weak = weak_from_this();
            std::shared_ptr<reply_base<R>> r = reply;
            const timer_id id = timers.schedule_after(timeout, [r, weak, timeout] {
                std::string who = "?";
                auto self = weak.lock();
                if (self) who = self->name();
                r->complete(unexpected(errc::timeout, "[courier.actor.ask_timeout] ask " + std::string(type_name<M>()) +
                                                          " to actor '" + who + "' got no reply within " +
                                                          millis_text(timeout)),
                            [&self] {
                                if (self) self->count_ask_timeout();
                            });
            });
            reply->set_timer(id);
        }
        mail ml;
        ml.emplace<ask_payload<M, R>>(&ask_model<actor_cell, M, R>::ops, std::move(msg), std::move(reply));
        const queue_status s = push(ml, sys_->may_wait());
        // A rejected ask is answered at once with the reason; its sender learns, so it is not
        // also counted as undelivered.
        if (COURIER_UNLIKELY(s == queue_status::full || s == queue_status::closed)) ml.ops()->fail(ml, reject_error(s));
    }

    // ---------------------------------------------------------------- handlers

    template <class M>
    decltype(auto) call(M&& m) {
        if constexpr (handles_with_context<T, M>) {
            actor_context<T> ctx(*this);
            return state_->handle(std::move(m), ctx);
        } else {
            return state_->handle(std::move(m));
        }
    }

    template <class M, class R>
    void call_ask(M&& m, reply_base<R>& reply) {
        bool answered;
        try {
            if constexpr (std::is_void_v<R>) {
                call(std::move(m));
                answered = reply.complete(result<void>());
            } else {
                answered = reply.complete(result<R>(call(std::move(m))));
            }
        } catch (...) {
            reply.complete(unexpected(errc::handler_failed, "[courier.actor.handler_failed] actor '" + name() +
                                                                "' failed on " + std::string(type_name<M>()) + ": " +
                                                                exception_text(std::current_exception())));
            throw;  // supervision sees the failure too
        }
        if (!answered) count_late_reply();
    }

    T& state() noexcept { return *state_; }

    // ---------------------------------------------------------------- turns

    void turn() override {
        auto& t = this_turn();
        const actor_base* previous = std::exchange(t.current, this);
        inflight_.fetch_add(1, std::memory_order_seq_cst);
        const life at_entry = life_.load(std::memory_order_seq_cst);
        if (COURIER_UNLIKELY(at_entry == life::stopping)) {
            // A stopper owns the mailbox now; it releases `scheduled_` when it is done.
            inflight_.fetch_sub(1, std::memory_order_seq_cst);
            t.current = previous;
            return;
        }
        if (COURIER_UNLIKELY(at_entry == life::stopped)) {
            inflight_.fetch_sub(1, std::memory_order_seq_cst);
            t.current = previous;
            sweep(stopped_error(name(), "is stopped"));
            release();
            return;
        }

        std::uint32_t budget = options_.batch;
        std::uint64_t handled = 0;
        bool empty = false;
        while (budget != 0) {
            if (pos_ == count_) {
                pos_ = count_ = 0;
                count_ = pop_bulk(std::min<std::size_t>(budget, buffer_size));
                if (count_ == 0) {
                    empty = true;
                    break;
                }
            }
            mail& m = buffer_[pos_++];
            --budget;
            try {
                m.ops()->invoke(this, m);
                ++handled;
            } catch (...) {
                on_failure(std::current_exception(), m.ops()->type_name);
            }
            m.reset();
            if (COURIER_UNLIKELY(life_.load(std::memory_order_acquire) >= life::stopping)) break;
        }
        if (handled) processed_.fetch_add(handled, std::memory_order_relaxed);

        const life now = life_.load(std::memory_order_seq_cst);
        if (COURIER_UNLIKELY(self_stop_)) {
            // Stopped from inside: supervision, ctx.stop(), or a hand-back asked by a handler.
            self_stop_ = false;
            const auto why = stop_reason_ ? stop_reason_ : stopped_error(name(), "is stopped");
            for (; pos_ < count_; ++pos_) undeliver(std::move(buffer_[pos_]), why);
            pos_ = count_ = 0;
            sweep(why);
            state_.reset();
            finish_stop();
            inflight_.fetch_sub(1, std::memory_order_seq_cst);
            t.current = previous;
            release();
            return;
        }
        if (COURIER_UNLIKELY(now == life::stopping)) {
            // An outside stopper waits for us to leave; it takes the buffer and the mailbox.
            inflight_.fetch_sub(1, std::memory_order_seq_cst);
            t.current = previous;
            return;
        }
        if (COURIER_UNLIKELY(empty && now == life::draining && mailbox_closed())) {
            state_.reset();
            finish_stop();
            inflight_.fetch_sub(1, std::memory_order_seq_cst);
            t.current = previous;
            release();  // a push that raced with close() is swept by the turn this schedules
            return;
        }
        inflight_.fetch_sub(1, std::memory_order_seq_cst);
        t.current = previous;
        if (budget == 0) sys_->yield(self_ptr());
        else release();
    }

    // ---------------------------------------------------------------- stop

    std::vector<unprocessed_message> stop(stop_mode mode) override {
        const bool from_handler = this_turn().current == this;
        std::vector<unprocessed_message> out;
        if (mode == stop_mode::drain) {
            // Close first: a turn that sees `draining` then knows no push will be accepted.
            close_mailbox();
            life expected = life::running;
            if (!life_.compare_exchange_strong(expected, life::draining, std::memory_order_seq_cst)) return out;
            // An idle actor has no turn coming: schedule one to finish the stop.
            if (!scheduled_.exchange(true, std::memory_order_acq_rel)) sys_->schedule(self_ptr());
            return out;
        }
        if (!begin_stopping()) return out;
        close_mailbox();
        const auto why = stopped_error(name(), "was stopped and handed its messages back");
        if (from_handler) {
            take_rest(out, why);
            self_stop_ = true;  // the turn finishes the stop when the handler returns
            stop_reason_ = why;
            return out;
        }
        wait_for_turns(0);
        take_rest(out, why);
        state_.reset();
        finish_stop();
        release();
        return out;
    }

    /// ctx.stop() and supervision: stop after the message being handled; the rest is undelivered.
    void stop_from_handler(std::exception_ptr why) {
        if (!begin_stopping()) return;
        close_mailbox();
        self_stop_ = true;
        stop_reason_ = std::move(why);
    }

    std::size_t depth() const noexcept override {
        return unbounded_ ? unbounded_->size_approx() : bounded_->size_approx();
    }

private:
    std::shared_ptr<actor_base> self_ptr() { return shared_from_this(); }

    queue_status push(mail& ml, bool allow_wait) {
        queue_status s;
        if (COURIER_LIKELY(unbounded_ != nullptr)) {
            s = unbounded_->try_push(std::move(ml));
        } else if (allow_wait && options_.overflow == overflow_policy::block) {
            s = bounded_->push_for(std::move(ml), options_.block_timeout);
            if (s == queue_status::timeout) s = queue_status::full;
        } else {
            s = bounded_->try_push(std::move(ml));
        }
        if (COURIER_LIKELY(s == queue_status::ok)) notify();
        return s;
    }

    // Dekker pairing with release(): every operation on `scheduled_` is a read-modify-write, so
    // a sender's exchange either precedes the turn's release (which then sees the message and
    // reschedules) or follows it (and then it reads false and schedules a turn itself).
    void notify() {
        if (!scheduled_.exchange(true, std::memory_order_acq_rel)) sys_->schedule(self_ptr());
    }

    // Also pairs with stop(drain): it moves life_ to `draining` and then exchanges `scheduled_`.
    // If its exchange saw `true` (a turn held the flag and so stop scheduled nothing), that turn
    // may have read `running` before the change and found the mailbox empty; its exchange below
    // then reads stop's write and acquires `draining`, and the turn that finishes the stop is
    // scheduled here. Without the life check the actor stayed `draining` with no turn to come.
    void release() {
        scheduled_.exchange(false, std::memory_order_acq_rel);
        const bool more = depth() != 0 || life_.load(std::memory_order_acquire) == life::draining;
        if (more && !scheduled_.exchange(true, std::memory_order_acq_rel)) sys_->schedule(self_ptr());
    }

    std::size_t pop_bulk(std::size_t max) {
        return unbounded_ ? unbounded_->try_pop_bulk(buffer_, max) : bounded_->try_pop_bulk(buffer_, max);
    }
    bool pop_one(mail& m) {
        return (unbounded_ ? unbounded_->try_pop(m) : bounded_->try_pop(m)) == queue_status::ok;
    }
    void close_mailbox() noexcept {
        if (unbounded_) unbounded_->close();
        else bounded_->close();
    }
    bool mailbox_closed() const noexcept { return unbounded_ ? unbounded_->is_closed() : bounded_->is_closed(); }

    bool begin_stopping() {
        life cur = life_.load(std::memory_order_seq_cst);
        do {
            if (cur == life::stopping || cur == life::stopped) return false;
        } while (!life_.compare_exchange_weak(cur, life::stopping, std::memory_order_seq_cst));
        return true;
    }

    // Everything not handled yet (the turn's buffer, then the mailbox), for a hand-back.
    void take_rest(std::vector<unprocessed_message>& out, const std::exception_ptr& why) {
        auto take = [&](mail&& m) {
            m.ops()->fail(m, why);
            out.emplace_back(std::move(m));
        };
        for (; pos_ < count_; ++pos_) take(std::move(buffer_[pos_]));
        pos_ = count_ = 0;
        mail m;
        while (pop_one(m)) take(std::move(m));
    }

    void sweep(const std::exception_ptr& why) {
        mail m;
        while (pop_one(m)) undeliver(std::move(m), why);
    }

    void drop(mail&& m) {
        undeliver(std::move(m), std::make_exception_ptr(courier_error(error(
                                    errc::full, "[courier.actor.mailbox_full] actor '" + name() + "' dropped a " +
                                                    std::string(m.ops()->type_name) + " (" +
                                                    std::string(to_string(options_.overflow)) + ")"))));
    }

    std::exception_ptr reject_error(queue_status s) const {
        if (s == queue_status::closed) return stopped_error(name(), "is stopped");
        return std::make_exception_ptr(
            courier_error(error(errc::full, "[courier.actor.mailbox_full] the mailbox of actor '" + name() + "' is full")));
    }

    void on_failure(std::exception_ptr ep, std::string_view message_type) {
        actor_failure f;
        f.actor = name();
        f.message_type = message_type;
        f.error = exception_text(ep);
        f.exception = ep;
        f.failures = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
        f.restarts = static_cast<std::uint32_t>(restarts_.load(std::memory_order_relaxed));
        supervision_directive d = supervision_directive::restart;
        if (options_.supervisor) {
            try {
                d = options_.supervisor(f);
            } catch (...) {
                d = supervision_directive::stop;
            }
        }
        if (d == supervision_directive::escalate) d = escalate(f);
        if (d == supervision_directive::restart && !restart_allowed()) d = supervision_directive::stop;
        if (d == supervision_directive::restart) {
            restarts_.fetch_add(1, std::memory_order_relaxed);
            state_.reset();  // the old state goes first: it may hold resources the new one needs
            try {
                state_ = make_();
            } catch (...) {
                d = supervision_directive::stop;
            }
        }
        if (d == supervision_directive::stop) {
            stop_from_handler(stopped_error(name(), "stopped after a failure in its " + std::string(message_type) +
                                                        " handler: " + f.error));
        }
        if (sys_->options().publish_failures) {
            try {
                (void)sys_->rt().bus().publish(actor_failed{f.actor, std::string(message_type), f.error,
                                                            std::string(to_string(d)), f.failures,
                                                            restarts_.load(std::memory_order_relaxed)});
            } catch (...) {
                // Reporting must not fail the actor a second time.
            }
        }
    }

    bool restart_allowed() {
        const auto now = sys_->rt().clock().now();
        while (!restart_times_.empty() && now - restart_times_.front() > options_.restart_window)
            restart_times_.pop_front();
        if (restart_times_.size() >= options_.max_restarts) return false;
        restart_times_.push_back(now);
        return true;
    }

    factory make_;
    std::unique_ptr<T> state_;
    std::unique_ptr<unbounded_box> unbounded_;
    std::unique_ptr<bounded_box> bounded_;
    // Touched only by the turn that holds `scheduled_` (or a stopper once turns have left).
    std::size_t pos_ = 0;
    std::size_t count_ = 0;
    bool self_stop_ = false;
    std::exception_ptr stop_reason_;
    std::deque<time_point> restart_times_;
    mail buffer_[buffer_size];
};

template <class T, class... A>
std::shared_ptr<actor_base> actor_system_core::spawn(actor_options opts, std::shared_ptr<actor_base> parent,
                                                     A&&... args) {
    if (closed())
        throw courier_error(error(errc::closed, "[courier.actor.system_closed] the actor system is shut down"));
    if (opts.name.empty()) opts.name = make_name(type_name<T>());
    // Arguments are copied and kept: a restart builds the fresh state from them again.
    auto make = [tuple = std::make_tuple(std::decay_t<A>(std::forward<A>(args))...)]() {
        return std::apply(
            [](const auto&... a) {
                // Braces for aggregates: clang 14 lacks C++20's parenthesised aggregate init.
                if constexpr (std::is_constructible_v<T, const std::decay_t<A>&...>) return std::make_unique<T>(a...);
                else return std::unique_ptr<T>(new T{a...});
            },
            tuple);
    };
    auto cell = std::make_shared<actor_cell<T>>(shared_from_this(), std::move(opts), parent, std::move(make));
    std::shared_ptr<actor_base> base = cell;
    add(base);
    if (parent) parent->add_child(base);
    return base;
}

}  // namespace detail
COURIER_END_NAMESPACE
