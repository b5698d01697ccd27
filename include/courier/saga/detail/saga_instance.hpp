// Internals: one running saga. Every change is a record, written into the saga's log and
// journaled first, then applied to the engine's state by `apply` (the same function replays a
// journal on recovery), then `drive` starts whatever the new state calls for (attempts, retry
// timers, signal deadlines). Everything but `info()` runs on the saga's strand; `info()` reads
// the log (see saga_log.hpp), never the engine's state, so the strand takes no lock.
#pragma once

#include <courier/bus/dead_letter_store.hpp>
#include <courier/core/config.hpp>
#include <courier/core/detail/uuid_map.hpp>
#include <courier/event/envelope.hpp>
#include <courier/runtime/runtime.hpp>
#include <courier/saga/detail/saga_log.hpp>
#include <courier/saga/detail/saga_program.hpp>
#include <courier/saga/journal.hpp>
#include <courier/saga/saga_events.hpp>
#include <courier/saga/saga_info.hpp>
#include <courier/saga/saga_state.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/container/small_vector.hpp>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Options of a saga_runner.
struct saga_options {
    /// Where transitions are journaled; null: an in-memory journal owned by the runner.
    /// A journal given here must outlive the runner.
    saga_journal* journal = nullptr;
    /// Finished sagas kept for `query` (the oldest are forgotten beyond this). A finished saga
    /// keeps its records only (about 0.8 KiB for three steps; its engine is released at once).
    std::size_t retain_finished = 10000;
    /// Publish courier.saga.* events (only built when someone subscribes).
    bool publish_events = true;
};

namespace detail {

inline std::string describe_exception(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    } catch (...) {
        return "unknown exception";
    }
}

class saga_instance;

/// A saga a runner knows: running (its engine), or finished and kept for `query` (its definition
/// and records; the engine only while an asynchronous attempt that timed out may still be
/// running: its code holds the step's context and executor, which live in the engine).
struct saga_entry {
    std::shared_ptr<saga_instance> engine;
    std::shared_ptr<saga_log> log;           // set when it finishes
    const saga_program* program = nullptr;   // set when it finishes
    bool finished() const noexcept { return log != nullptr; }
};

/// State shared by a runner and its sagas (outlives the runner while handlers are queued).
struct runner_core final : log_source {
    runner_core(runtime& r, saga_journal& j, saga_options o)
        : rt(r), journal(j), options(std::move(o)), single_threaded(r.single_threaded()) {
        if (single_threaded) shared_strand.emplace(boost::asio::make_strand(r.executor()));
    }
    runner_core(const runner_core&) = delete;
    runner_core& operator=(const runner_core&) = delete;

    /// Offers the running sagas' logs to the journal (once the core has its final address).
    void attach() { journal_attached = journal.attach(*this); }
    void collect_logs(std::vector<std::shared_ptr<saga_log>>& out) override;
    runtime& rt;
    saga_journal& journal;
    // The runner's default journal: held here, so that a handler still running when the runner
    // goes (it passed the `closed` check) finds it.
    std::unique_ptr<saga_journal> owned_journal;
    saga_options options;
    std::atomic<bool> closed{false};
    // The journal finds the running sagas' logs in `sagas` (see saga_journal::attach): a saga
    // starts and ends without a call into the journal.
    bool journal_attached = false;
    std::mutex mutex;
    // Every saga the runner knows, running or retained. A saga that finishes keeps its log alone:
    // its engine (steps, strand, live context) goes at once, while it is hot, and a retained saga
    // weighs its records only. One table, so that a saga finishing costs one lookup, not three.
    uuid_map<saga_entry> sagas;
    std::deque<uuid> finished;  // the retained ones, oldest first (forgotten beyond retain_finished)
    std::unordered_map<std::string, std::shared_ptr<saga_program>> programs;
    // The program start() saw last (registered; programs are never removed): skips the map.
    std::atomic<const saga_program*> last_program{nullptr};
    std::atomic<std::uint64_t> interest{~std::uint64_t{0}};  // see event_interest(); all ones: not computed
    // One thread runs every handler: sagas need no strand of their own. The engine posts to the
    // plain executor; steps get this one strand as their executor (for timers and coroutines).
    const bool single_threaded;
    std::optional<saga_executor> shared_strand;

    /// One bit per journal_op: whether its courier.saga.* event has a subscriber. Cached against
    /// the bus's routes_version (packed with it in one atomic word), so a transition nobody
    /// listens to costs a load and a compare instead of 13 route lookups' worth of checks.
    std::uint32_t event_interest() {
        auto& bus = rt.bus();
        const std::uint64_t v = bus.routes_version() & ((std::uint64_t{1} << 47) - 1);
        const auto packed = interest.load(std::memory_order_acquire);
        if ((packed >> 16) == v) return static_cast<std::uint32_t>(packed & 0xFFFFu);
        std::uint32_t mask = 0;
        note<saga_started>(mask, journal_op::started);
        note<saga_step_started>(mask, journal_op::step_started);
        note<saga_step_completed>(mask, journal_op::step_completed);
        note<saga_step_failed>(mask, journal_op::step_failed);
        note<saga_waiting>(mask, journal_op::waiting);
        note<saga_signalled>(mask, journal_op::signal_received);
        note<saga_deadline_passed>(mask, journal_op::wait_timed_out);
        note<saga_cancel_requested>(mask, journal_op::cancel_requested);
        note<saga_compensating>(mask, journal_op::compensating);
        note<saga_completed>(mask, journal_op::completed);
        note<saga_failed>(mask, journal_op::failed);
        note<saga_compensation_failed>(mask, journal_op::compensation_failed);
        note<saga_cancelled>(mask, journal_op::cancelled);
        interest.store((v << 16) | mask, std::memory_order_release);
        return mask;
    }
    template <class E>
    void note(std::uint32_t& mask, journal_op op) {
        if (rt.bus().template has_subscribers<E>()) mask |= 1u << static_cast<unsigned>(op);
    }

    /// Lists `inst` as running under `id` (under `mutex`); false when the id is taken, by a
    /// running saga or a retained finished one.
    bool add_running(const uuid& id, const std::shared_ptr<saga_instance>& inst) {
        auto [slot, inserted] = sagas.try_emplace(id);
        if (inserted) slot->engine = inst;
        return inserted;
    }
    /// The running saga `id`, or null (under `mutex`).
    std::shared_ptr<saga_instance> running(const uuid& id) {
        auto* e = sagas.find(id);
        return e != nullptr && !e->finished() ? e->engine : nullptr;
    }
    /// A saga reached its final record (on its strand): it is kept for query as its log only.
    void on_final(const uuid& id);

    // One-thread runtime: sagas started and not run yet, newest first. A burst of starts costs
    // one post (and the executor's lock and work count once) instead of one per saga.
    std::atomic<saga_instance*> kicks{nullptr};
    void push_kick(std::shared_ptr<saga_instance> inst, const std::shared_ptr<runner_core>& self);
    void run_kicks();
    void drop_kicks() noexcept;
    void requeue_kicks(saga_instance* chain);
    void post_drain(const std::shared_ptr<runner_core>& self);
};

// A saga's first post comes from start(), usually on a thread that does not run the executor,
// where Asio does not recycle handler memory: a malloc there and a free on the executor's
// thread. A handler with this allocator takes its memory from a block pool instead.
template <class F>
struct pooled_handler {
    F f;
    using allocator_type = pooled_allocator<void>;
    allocator_type get_allocator() const noexcept { return {}; }
    void operator()() { f(); }
};
template <class T>
inline constexpr bool is_pooled_handler = false;
template <class F>
inline constexpr bool is_pooled_handler<pooled_handler<F>> = true;

class saga_instance final : public attempt_sink, public std::enable_shared_from_this<saga_instance> {
public:
    static constexpr std::size_t inline_steps = 4;
    enum class st : std::uint8_t {
        pending, running, retry_wait, done, failed, waiting, timed_out,
        comp_running, comp_retry_wait, compensated, comp_failed,
    };
    struct step_rt {
        st status = st::pending;
        std::uint32_t attempts = 0;
        std::uint32_t comp_attempts = 0;
        time_point due{};
        bool live = false;  // an attempt or a timer is armed in this process
        std::uint64_t token = 0;
        timer_id timer = 0;
    };

    /// `program`: registered with the runner (its core keeps it alive, and this keeps the core).
    saga_instance(std::shared_ptr<runner_core> core, saga_program* program, uuid id, std::string&& correlation)
        : core_(std::move(core)), program_(program), id_(id),
          strand_(core_->single_threaded ? &*core_->shared_strand : &own_strand_.emplace(boost::asio::make_strand(core_->rt.executor()))),
          direct_(core_->single_threaded),
          log_(std::allocate_shared<saga_log>(pooled_allocator<saga_log>{}, id_, program_->names.get(), std::move(correlation))),
          steps_(program_->steps.size()), completed_order_(program_->steps.size()) {}

    const uuid& id() const noexcept { return id_; }
    /// The correlation id of the saga's events: the one given at start, or the saga id.
    std::string correlation() const { return correlation_of(*log_); }
    static std::string correlation_of(const saga_log& log) {
        return log.correlation().empty() ? log.id().to_string() : log.correlation();
    }
    const saga_executor& strand() const noexcept { return *strand_; }
    saga_program& program() const noexcept { return *program_; }
    const std::shared_ptr<runner_core>& core() const noexcept { return core_; }

    // ------------------------------------------------------------------ set-up
    /// Journals `started` (before the saga is visible). Not on the strand: nobody else knows it yet.
    /// `at`: the time the saga's id was made from (its `started` record shares it).
    result<void> begin(std::unique_ptr<context_box> ctx, time_point at) {
        ctx_ = std::move(ctx);
        clock_cache_ = at;
        clock_fresh_ = true;
        attach_journal(false);
        auto& r = next_record(journal_op::started);
        r.with_context = true;
        try {
            if (record(r)) return {};
        } catch (...) {
            abandon();
            throw;
        }
        abandon();
        return unexpected(courier::error(make_error_code(saga_errc::journal_io), halt_error()));
    }
    /// Journals the saga's log itself when the journal keeps logs (see saga_journal::adopt).
    /// `recovered`: rebuilt by recover() from what the journal's load() returned.
    /// A new saga of a runner attached to its journal is not adopted: the journal finds its log
    /// in the runner's table; a recovered one is, as its log replaces the one the journal had.
    void attach_journal(bool recovered) {
        if (core_->journal_attached && !recovered) {
            adopted_ = true;
            return;
        }
        adopted_ = listed_ = core_->journal.adopt(log_, recovered);
    }
    /// The saga will not run (its start failed): the journal lets go of its log.
    void abandon() {
        if (listed_) core_->journal.retire(log_, false, true);
        adopted_ = listed_ = false;
    }

    /// Recovery: replays one record into the log and the engine's state. Throws when the record
    /// does not fit the definition (an unknown step, a context that does not convert).
    void replay(const journal_record& r) {
        auto& m = log_->prepare();
        try {
            copy_common_fields(m, r);
            if (!r.step.empty()) {
                const auto i = program_->find_step(r.step);
                if (i == no_index) throw std::runtime_error("the definition has no step " + quote_for_message(r.step, 64));
                m.step = static_cast<std::uint32_t>(i);
            } else if (needs_step(r.op)) {
                throw std::runtime_error(std::string("a ") + std::string(to_string(r.op)) + " record without a step");
            }
            if (r.has_context()) m.context = program_->restore(r);
            if (!r.error.empty() || !r.signal.empty() || !r.payload.is_null()) {
                m.rare = std::make_unique<log_rare>();
                m.rare->error = r.error;
                m.rare->signal = r.signal;
                m.rare->payload = r.payload;
            }
        } catch (...) {
            log_->discard();
            throw;
        }
        log_->publish();
        seq_ = r.seq;
        apply(m);
    }
    /// Recovery: the live context is the last one the log holds. False when it holds none.
    bool restore_context() {
        if (!committed_) return false;
        ctx_ = committed_->clone();
        return true;
    }
    bool finished() const { return is_final(state()); }

    /// Runs `drive` on the strand (`self`: this saga, handed over).
    static void kick(std::shared_ptr<saga_instance> self) {
        saga_instance& s = *self;
        if (s.direct_) s.core_->push_kick(std::move(self), s.core_);
        else s.post(pooled_handler<kick_handler>{{std::move(self)}});
    }

    // ------------------------------------------------------------------ requests (any thread)
    void post_signal(std::string name, nlohmann::json payload) {
        post([self = shared_from_this(), n = std::move(name), p = std::move(payload)]() mutable {
            self->deliver_signal(std::move(n), std::move(p));
        });
    }
    void post_cancel(std::string reason) {
        post([self = shared_from_this(), r = std::move(reason)]() mutable {
            self->cancel(std::move(r));
        });
    }

    /// The saga as its log tells it (any thread: published records never change).
    saga_info info() const {
        saga_info i = info_of(*program_, *log_);
        std::lock_guard lock(halt_mutex_);
        if (!halt_error_.empty()) i.error = halt_error_;
        return i;
    }
    /// What query shows of a saga: its log folded (any thread; the log publishes each record).
    static saga_info info_of(const saga_program& program, const saga_log& log) {
        saga_info i;
        i.id = log.id();
        i.definition = program.name;
        i.correlation_id = correlation_of(log);
        const context_box* ctx = nullptr;
        const std::size_t n = log.size();
        for (std::size_t k = 0; k < n; ++k) fold(program, log, i, log[k], ctx);
        i.context = ctx ? ctx->to_json() : nlohmann::json();
        return i;
    }
    /// Its records (kept by the runner once it has finished).
    const std::shared_ptr<saga_log>& log() const noexcept { return log_; }
    /// Asynchronous attempts whose code has not handed back its ticket (strand only).
    bool attempts_out() const noexcept { return async_out_ != 0; }
    saga_state state() const { return shown_state_.load(std::memory_order_acquire); }

    // ------------------------------------------------------------------ attempts
    void finish_attempt(std::size_t idx, attempt_kind kind, std::uint64_t token, std::exception_ptr error,
                        bool on_strand) override {
        if (!on_strand) {  // an asynchronous attempt's ticket: the attempt's code is done with us
            post([self = shared_from_this(), idx, kind, token, e = std::move(error)]() mutable {
                if (self->async_out_ != 0 && --self->async_out_ == 0) self->abandoned_.clear();
                self->finish_attempt(idx, kind, token, std::move(e), true);
            });
            return;
        }
        engine_reentered();  // the step's code ran since the last record
        if (core_->closed.load(std::memory_order_acquire)) return;
        auto& s = steps_[idx];
        if (!s.live || s.token != token) return;  // a late completion of a timed-out attempt
        s.live = false;
        if (s.timer) {
            core_->rt.timers().cancel(s.timer);
            s.timer = 0;
        }
        const auto& spec = program_->steps[idx];
        auto& r = next_record(journal_op::step_completed);
        r.step = static_cast<std::uint32_t>(idx);
        r.kind = kind;
        if (!error) {
            r.attempt = kind == attempt_kind::action ? s.attempts : s.comp_attempts;
            r.with_context = kind == attempt_kind::action;
            if (!record(r)) return;
        } else {
            const std::uint32_t n = kind == attempt_kind::action ? s.attempts : s.comp_attempts;
            const retry_policy& policy =
                kind == attempt_kind::action ? spec.options.retry : spec.options.compensation_retry;
            const bool retry = policy.should_retry(n, error) &&
                               !(kind == attempt_kind::action && (failing_ || cancel_requested_));
            r.op = journal_op::step_failed;
            r.attempt = n;
            r.extra().error = describe_exception(error);
            if (retry) r.due = now() + policy.delay_after(n);
            // The failed attempt's changes to the context are discarded, as recovery would.
            if (kind == attempt_kind::action && committed_) restore_snapshot();
            if (!record(r)) return;
            if (retry) arm_retry(idx);
        }
        drive();
    }
    std::weak_ptr<attempt_sink> weak_sink() override { return std::weak_ptr<attempt_sink>(shared_from_this()); }

private:
    // Runs `f` on the saga's strand (on a one-thread runtime: on the executor, which is the same),
    // with a fresh engine time (see now()). `f` holds the saga alive (it captures `self`).
    template <class F>
    void post(F&& f) {
        auto entry = [this, f = std::forward<F>(f)]() mutable {
            engine_reentered();
            f();
        };
        // (a pooled handler's entry keeps its allocator)
        if constexpr (is_pooled_handler<std::decay_t<F>>) post_entry(pooled_handler<decltype(entry)>{std::move(entry)});
        else post_entry(std::move(entry));
    }
    template <class H>
    void post_entry(H&& h) {
        if (direct_) boost::asio::post(core_->rt.executor(), std::forward<H>(h));
        else boost::asio::post(*strand_, std::forward<H>(h));
    }

    struct kick_handler {
        std::shared_ptr<saga_instance> self;
        void operator()() const { self->drive(); }
    };

    // ------------------------------------------------------------------ journal
    /// The engine's time: one clock reading serves every record made until control next leaves
    /// the engine (a step's code, a subscriber's handler, the end of a handler). On these VMs a
    /// reading costs ~22 ns, and a synchronous step's completion and the next step's start
    /// would otherwise take two readings a few instructions apart.
    time_point now() {
        if (!clock_fresh_) {
            clock_cache_ = core_->rt.clock().now();
            clock_fresh_ = true;
        }
        return clock_cache_;
    }
    /// Control comes back to the engine: the next record reads the clock again, and asks again
    /// which events have subscribers (code that ran meanwhile may have subscribed).
    void engine_reentered() noexcept {
        clock_fresh_ = false;
        interest_fresh_ = false;
    }
    /// See runner_core::event_interest(); read once per stay in the engine.
    std::uint32_t event_interest() {
        if (!interest_fresh_) {
            interest_ = core_->event_interest();
            interest_fresh_ = true;
        }
        return interest_;
    }

    /// What the next record says, before it has a slot, a time and a seq: one object, reset and
    /// reused. Valid until the next call; record() never nests on one saga (requests are posted).
    struct transition {
        journal_op op = journal_op::started;
        std::uint32_t step = no_step;
        attempt_kind kind = attempt_kind::action;
        std::uint32_t attempt = 0;
        time_point due{};
        bool with_context = false;  // carries a copy of the live context
        std::unique_ptr<log_rare> rare;  // error, signal, payload: what few records carry
        log_rare& extra() {
            if (!rare) rare = std::make_unique<log_rare>();
            return *rare;
        }
    };
    transition& next_record(journal_op op) {
        auto& r = scratch_;
        r.op = op;
        r.step = no_step;
        r.kind = attempt_kind::action;
        r.attempt = 0;
        r.due = time_point{};
        r.with_context = false;
        r.rare.reset();
        return r;
    }

    static constexpr bool needs_step(journal_op op) noexcept {
        return op == journal_op::step_started || op == journal_op::step_completed || op == journal_op::step_failed ||
               op == journal_op::waiting || op == journal_op::wait_timed_out;
    }

    /// Writes `t` into the log and journals it, then applies it. On a journal failure nothing
    /// changes and the saga halts where it is (recover() on a healthy journal resumes it).
    bool record(transition& t) {
        auto& m = log_->prepare();
        try {
            m.seq = seq_ + 1;
            m.at = now();
            m.due = t.due;
            m.attempt = t.attempt;
            m.step = t.step;
            m.op = t.op;
            m.kind = t.kind;
            if (t.with_context) m.context = ctx_->clone();
            if (COURIER_UNLIKELY(t.rare != nullptr)) m.rare = std::move(t.rare);
            if (COURIER_UNLIKELY(!adopted_) && !append_to_journal(m)) return false;
        } catch (...) {  // a context's copy or JSON, or the journal, threw: the slot stays free
            log_->discard();
            throw;
        }
        log_->publish();
        ++seq_;
        apply(m);
        publish(m);
        if (is_final(m.op)) ended(m);
        return true;
    }
    // A journal that copies records (not the memory journal): false when it failed, and the saga halts.
    COURIER_NOINLINE bool append_to_journal(log_record& m) {
        if (auto ok = core_->journal.append(log_->to_record(m, log_)); !ok) {
            log_->discard();
            halt(ok.error().message);
            return false;
        }
        return true;
    }
    // The final record is in: the runner keeps the saga for query, the journal lets go of it.
    COURIER_NOINLINE void ended(const log_record& m) {
        if (m.op == journal_op::compensation_failed) record_dead_letter(m);
        // Before on_final: a journal that keeps finished sagas lists this one while the runner
        // still does, so a load() never misses it.
        if (adopted_) core_->journal.retire(log_, true, listed_);
        core_->on_final(id_);
        // A runner that went before on_final handed this log to the journal (the saga was still
        // running then), and `closed` was set before that: the journal lets go of it again.
        if (adopted_ && !listed_ && core_->closed.load(std::memory_order_acquire)) core_->journal.retire(log_, true, true);
    }

    void halt(std::string why) {
        halted_ = true;
        std::lock_guard lock(halt_mutex_);
        halt_error_ = std::move(why);
    }
    std::string halt_error() const {
        std::lock_guard lock(halt_mutex_);
        return halt_error_;
    }

    const std::string& step_name(std::size_t idx) const { return program_->steps[idx].name; }

    void note_completed(std::size_t idx) {
        if (completed_ < completed_order_.size()) completed_order_[completed_++] = static_cast<std::uint32_t>(idx);
    }

    void advance_cursor() {
        while (cursor_ < program_->nodes.size()) {
            for (auto i : program_->nodes[cursor_].steps)
                if (steps_[i].status != st::done) return;
            ++cursor_;
        }
    }

    /// The state change a record describes (live and on replay), to the engine's state.
    void apply(const log_record& r) {
        const std::size_t idx = r.step;  // set for every op that uses it (record() and replay())
        switch (r.op) {
        case journal_op::started:
            state_ = saga_state::running;
            committed_ = r.context.get();
            break;
        case journal_op::step_started: {
            auto& s = steps_[idx];
            if (r.kind == attempt_kind::compensation) {
                s.status = st::comp_running;
                s.comp_attempts = r.attempt;
            } else {
                s.status = st::running;
                s.attempts = r.attempt;
            }
            break;
        }
        case journal_op::step_completed:
            if (r.kind == attempt_kind::compensation) {
                steps_[idx].status = st::compensated;
            } else {
                steps_[idx].status = st::done;
                note_completed(idx);
                if (r.context) committed_ = r.context.get();
                advance_cursor();
            }
            break;
        case journal_op::completed: state_ = saga_state::completed; break;
        default: apply_rare(r); break;
        }
        shown_state_.store(state_, std::memory_order_release);
    }
    // The transitions of failures, waits, signals and cancels (apply's cold half).
    COURIER_NOINLINE void apply_rare(const log_record& r) {
        const std::size_t idx = r.step;
        switch (r.op) {
        case journal_op::step_failed: {
            auto& s = steps_[idx];
            const bool retry = r.due != time_point{};
            s.due = r.due;
            if (r.kind == attempt_kind::compensation) {
                s.status = retry ? st::comp_retry_wait : st::comp_failed;
            } else {
                s.status = retry ? st::retry_wait : st::failed;
                if (!retry) {
                    failing_ = true;
                    if (error_.empty()) error_ = "step '" + step_name(idx) + "' failed: " + std::string(r.error());
                }
            }
            break;
        }
        case journal_op::waiting: {
            auto& s = steps_[idx];
            s.status = st::waiting;
            s.due = r.due;
            state_ = saga_state::waiting;
            break;
        }
        case journal_op::signal_received:
            if (r.step == no_step) {
                if (r.rare) inbox_[r.rare->signal] = r.rare->payload;
            } else {
                if (r.rare) inbox_.erase(r.rare->signal);
                steps_[idx].status = st::done;
                note_completed(idx);
                if (r.context) committed_ = r.context.get();
                state_ = saga_state::running;
                advance_cursor();
            }
            break;
        case journal_op::wait_timed_out: {
            steps_[idx].status = st::timed_out;
            state_ = saga_state::running;
            const auto target = program_->steps[idx].branch_node;
            if (target != no_index) {
                cursor_ = target;
            } else {
                failing_ = true;
                if (error_.empty()) error_ = std::string(r.error());
            }
            break;
        }
        case journal_op::cancel_requested:
            cancel_requested_ = true;
            if (error_.empty()) error_ = "cancelled: " + std::string(r.error());
            break;
        case journal_op::compensating: state_ = saga_state::compensating; break;
        case journal_op::failed: state_ = saga_state::failed; break;
        case journal_op::compensation_failed:
            state_ = saga_state::compensation_failed;
            error_ = std::string(r.error());
            break;
        case journal_op::cancelled: state_ = saga_state::cancelled; break;
        case journal_op::started:
        case journal_op::step_started:
        case journal_op::step_completed:
        case journal_op::completed: break;  // (apply's)
        }
    }

    /// What a record changes in a query's view (the view-side twin of apply()).
    static void fold(const saga_program& program, const saga_log& log, saga_info& i, const log_record& r, const context_box*& ctx) {
        const std::string_view name = log.step_name(r);
        i.updated_at = r.at;
        auto open = [&](attempt_kind kind) -> saga_attempt* {
            for (auto it = i.history.rbegin(); it != i.history.rend(); ++it)
                if (it->step == name && it->kind == kind) return it->finished == time_point{} ? &*it : nullptr;
            return nullptr;
        };
        auto finish = [&](bool ok) {
            if (auto* a = open(r.kind)) {
                a->finished = r.at;
                a->succeeded = ok;
                a->error = std::string(r.error());
            }
        };
        switch (r.op) {
        case journal_op::started:
            i.state = saga_state::running;
            i.started_at = r.at;
            if (r.context) ctx = r.context.get();
            break;
        case journal_op::step_started:
            if (auto* a = open(r.kind)) {  // an attempt a restart interrupted
                a->finished = r.at;
                a->error = "interrupted by a restart";
            }
            i.current_step = std::string(name);
            i.history.push_back({std::string(name), r.kind, r.attempt, r.at, {}, false, {}});
            break;
        case journal_op::step_completed:
            finish(true);
            if (r.context) ctx = r.context.get();
            break;
        case journal_op::step_failed:
            finish(false);
            if (r.kind != attempt_kind::compensation && r.due == time_point{} && i.error.empty())
                i.error = "step '" + std::string(name) + "' failed: " + std::string(r.error());
            break;
        case journal_op::waiting:
            i.state = saga_state::waiting;
            i.current_step = std::string(name);
            i.history.push_back({std::string(name), attempt_kind::signal, 1, r.at, {}, false, {}});
            break;
        case journal_op::signal_received:
            if (r.has_step()) {
                finish(true);
                if (r.context) ctx = r.context.get();
                i.state = saga_state::running;
            }
            break;
        case journal_op::wait_timed_out:
            finish(false);
            i.state = saga_state::running;
            if ((r.step == no_step || program.steps[r.step].branch_node == no_index) && i.error.empty())
                i.error = std::string(r.error());
            break;
        case journal_op::cancel_requested:
            if (i.error.empty()) i.error = "cancelled: " + std::string(r.error());
            break;
        case journal_op::compensating: i.state = saga_state::compensating; break;
        case journal_op::completed: i.state = saga_state::completed; break;
        case journal_op::failed: i.state = saga_state::failed; break;
        case journal_op::compensation_failed:
            i.state = saga_state::compensation_failed;
            i.error = std::string(r.error());
            break;
        case journal_op::cancelled: i.state = saga_state::cancelled; break;
        }
    }

    // A failed attempt's changes to the live context are discarded: it goes back to the last
    // journaled one.
    // An asynchronous attempt still out (one that timed out, or a parallel sibling) holds a
    // pointer to the context it was given: that box is kept, not freed, until every ticket is
    // back, and what the attempt still writes into it is discarded with it.
    void restore_snapshot() {
        if (async_out_ != 0) abandoned_.push_back(std::move(ctx_));
        ctx_ = committed_->clone();
    }

    // ------------------------------------------------------------------ the engine
    void drive() {
        if (core_->closed.load(std::memory_order_acquire) || halted_ || is_final(state_)) return;
        if (state_ != saga_state::compensating) {
            if (failing_ || cancel_requested_) {
                bool busy = false;
                for (std::size_t i = 0; i < steps_.size(); ++i) {
                    auto& s = steps_[i];
                    if ((s.status == st::retry_wait || s.status == st::waiting) && s.live) disarm(s);
                    if (s.status == st::running) {
                        busy = true;  // an action in flight must settle before compensation
                        if (!s.live) start_attempt(i, attempt_kind::action, s.attempts);
                    }
                }
                if (busy) return;
                auto& r = next_record(journal_op::compensating);
                r.extra().error = error_;
                if (!record(r)) return;
                drive();
                return;
            }
            if (cursor_ >= program_->nodes.size()) {
                auto& r = next_record(journal_op::completed);
                record(r);
                return;
            }
            const auto& node = program_->nodes[cursor_];
            if (node.is_wait) {
                const auto idx = node.steps.front();
                auto& s = steps_[idx];
                const auto& spec = program_->steps[idx];
                if (s.status == st::pending || (s.status == st::waiting && !s.live)) {
                    if (auto it = inbox_.find(spec.signal); it != inbox_.end()) {
                        auto payload = it->second;
                        if (complete_wait(idx, std::move(payload))) drive();
                        return;
                    }
                    if (s.status == st::pending) {
                        auto& r = next_record(journal_op::waiting);
                        r.step = static_cast<std::uint32_t>(idx);
                        r.kind = attempt_kind::signal;
                        r.attempt = 1;
                        r.due = now() + spec.deadline;
                        if (!record(r)) return;
                    }
                    arm_wait(idx);
                }
                return;
            }
            for (auto i : node.steps) {
                auto& s = steps_[i];
                if (s.status == st::pending) start_attempt(i, attempt_kind::action, 1);
                else if (s.status == st::running && !s.live) start_attempt(i, attempt_kind::action, s.attempts);
                else if (s.status == st::retry_wait && !s.live) arm_retry(i);
                if (halted_) return;
            }
            return;
        }
        // Compensating: one step at a time, in reverse order of completion.
        for (auto it = completed_order_.rend() - static_cast<std::ptrdiff_t>(completed_); it != completed_order_.rend(); ++it) {
            const auto idx = *it;
            auto& s = steps_[idx];
            if (!program_->steps[idx].has_compensation || s.status == st::compensated) continue;
            switch (s.status) {
            case st::done: start_attempt(idx, attempt_kind::compensation, 1); return;
            case st::comp_running:
                if (!s.live) start_attempt(idx, attempt_kind::compensation, s.comp_attempts);
                return;
            case st::comp_retry_wait:
                if (!s.live) arm_retry(idx);
                return;
            case st::comp_failed: {
                auto& r = next_record(journal_op::compensation_failed);
                r.step = static_cast<std::uint32_t>(idx);
                r.kind = attempt_kind::compensation;
                r.attempt = s.comp_attempts;
                r.extra().error = "[courier.saga.compensation_failed] compensation of step '" + step_name(idx) + "' failed after " +
                          std::to_string(s.comp_attempts) + " attempts: " + last_error_of(idx);
                record(r);
                return;
            }
            default: return;
            }
        }
        auto& r = next_record(cancel_requested_ ? journal_op::cancelled : journal_op::failed);
        r.extra().error = error_;
        record(r);
    }

    // The error of the last failed compensation attempt of step `idx`.
    std::string last_error_of(std::size_t idx) const {
        for (std::size_t k = log_->size(); k-- > 0;) {
            const auto& r = (*log_)[k];
            if (r.op == journal_op::step_failed && r.step == idx && r.kind == attempt_kind::compensation)
                return std::string(r.error());
        }
        return {};
    }

    void disarm(step_rt& s) {
        if (s.timer) core_->rt.timers().cancel(s.timer);
        s.timer = 0;
        s.live = false;
        ++s.token;
    }

    void start_attempt(std::size_t idx, attempt_kind kind, std::uint32_t attempt) {
        const auto& spec = program_->steps[idx];
        auto& r = next_record(journal_op::step_started);
        r.step = static_cast<std::uint32_t>(idx);
        r.kind = kind;
        r.attempt = attempt;
        if (!record(r)) return;
        auto& s = steps_[idx];
        s.live = true;
        const auto token = ++s.token;
        if (spec.options.timeout > duration::zero()) {
            std::weak_ptr<saga_instance> weak = shared_from_this();
            s.timer = core_->rt.timers().schedule_after(spec.options.timeout, [weak, idx, kind, token] {
                auto self = weak.lock();
                if (!self) return;
                self->post([self, idx, kind, token] {
                    if (self->steps_[idx].token != token) return;
                    self->steps_[idx].timer = 0;
                    const auto& sp = self->program_->steps[idx];
                    auto e = courier::error(errc::timeout, "[courier.saga.step_timeout] " + std::string(to_string(kind)) +
                                                               " of step '" + sp.name + "' did not finish within " +
                                                               std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(sp.options.timeout).count()) +
                                                               " ms");
                    self->finish_attempt(idx, kind, token, std::make_exception_ptr(courier_error(std::move(e))), true);
                });
            });
        }
        // We are on the strand: run the step here, unless a chain of synchronous steps has
        // already nested a few calls deep (then post, so the stack stays flat).
        if (inline_depth_ < max_inline_depth) {
            ++inline_depth_;
            invoke(idx, kind, attempt, token);
            --inline_depth_;
        } else {
            post([self = shared_from_this(), idx, kind, attempt, token] {
                self->invoke(idx, kind, attempt, token);
            });
        }
    }

    void invoke(std::size_t idx, attempt_kind kind, std::uint32_t attempt, std::uint64_t token) {
        if (core_->closed.load(std::memory_order_acquire)) return;
        if (steps_[idx].token != token || !steps_[idx].live) return;
        step_env env{id_, program_->steps[idx].name, attempt, kind, strand_};
        std::exception_ptr error;
        const bool done = program_->invoke(idx, kind, *ctx_, std::move(env), ticket_source{this, idx, kind, token}, error);
        engine_reentered();  // the step's code ran (all of it, or up to its first suspension)
        if (done) finish_attempt(idx, kind, token, std::move(error), true);  // a synchronous step: done here
        else ++async_out_;  // until its ticket comes back (also after a timeout)
    }

    // Schedules `fire(self, step)` on the saga's strand at steps_[idx].due. A later arm or a
    // disarm of the same step (token), or the runner closing, makes the firing a no-op.
    template <class Fire>
    void arm_timer(std::size_t idx, Fire fire) {
        auto& s = steps_[idx];
        s.live = true;
        const auto token = ++s.token;
        std::weak_ptr<saga_instance> weak = shared_from_this();
        s.timer = core_->rt.timers().schedule_at(s.due, [weak, idx, token, fire] {
            auto self = weak.lock();
            if (!self) return;
            self->post([self, idx, token, fire] {
                auto& st_ = self->steps_[idx];
                if (!st_.live || st_.token != token || self->core_->closed.load(std::memory_order_acquire)) return;
                st_.live = false;
                st_.timer = 0;
                fire(*self, st_);
            });
        });
    }

    void arm_retry(std::size_t idx) {
        arm_timer(idx, [idx](saga_instance& self, step_rt& st_) {
            if (st_.status == st::retry_wait) {
                if (self.failing_ || self.cancel_requested_) return self.drive();
                self.start_attempt(idx, attempt_kind::action, st_.attempts + 1);
            } else if (st_.status == st::comp_retry_wait) {
                self.start_attempt(idx, attempt_kind::compensation, st_.comp_attempts + 1);
            }
        });
    }

    void arm_wait(std::size_t idx) {
        arm_timer(idx, [idx](saga_instance& self, step_rt&) {
            const auto& spec = self.program_->steps[idx];
            auto& r = self.next_record(journal_op::wait_timed_out);
            r.step = static_cast<std::uint32_t>(idx);
            r.kind = attempt_kind::signal;
            r.attempt = 1;
            r.extra().error = "[courier.saga.deadline_passed] no signal '" + spec.signal + "' before the deadline of '" +
                      spec.name + "'";
            if (self.record(r)) self.drive();
        });
    }

    // Ends the wait `idx` with `payload`: runs the wait's handler, journals the new context.
    bool complete_wait(std::size_t idx, nlohmann::json payload) {
        const auto& spec = program_->steps[idx];
        try {
            program_->apply_signal(idx, *ctx_, payload);
        } catch (...) {
            engine_reentered();
            restore_snapshot();
            auto& f = next_record(journal_op::step_failed);
            f.step = static_cast<std::uint32_t>(idx);
            f.kind = attempt_kind::signal;
            f.attempt = 1;
            f.extra().error = "signal handler failed: " + describe_exception(std::current_exception());
            return record(f);  // (applying it fails the saga)
        }
        engine_reentered();  // the wait's handler ran
        auto& r = next_record(journal_op::signal_received);
        r.step = static_cast<std::uint32_t>(idx);
        r.kind = attempt_kind::signal;
        r.attempt = 1;
        r.extra().signal = spec.signal;
        r.extra().payload = std::move(payload);
        r.with_context = true;
        return record(r);
    }

    void deliver_signal(std::string name, nlohmann::json payload) {
        if (core_->closed.load(std::memory_order_acquire) || halted_ || is_final(state_)) return;
        if (cursor_ < program_->nodes.size() && program_->nodes[cursor_].is_wait && !failing_ && !cancel_requested_) {
            const auto idx = program_->nodes[cursor_].steps.front();
            auto& s = steps_[idx];
            if (program_->steps[idx].signal == name && s.status == st::waiting) {
                disarm(s);
                if (complete_wait(idx, std::move(payload))) drive();
                return;
            }
        }
        auto& r = next_record(journal_op::signal_received);
        r.extra().signal = std::move(name);
        r.extra().payload = std::move(payload);
        record(r);
    }

    void cancel(std::string reason) {
        if (core_->closed.load(std::memory_order_acquire) || halted_ || is_final(state_) || cancel_requested_) return;
        if (state_ == saga_state::compensating) return;  // already undoing
        auto& r = next_record(journal_op::cancel_requested);
        r.extra().error = std::move(reason);
        if (record(r)) drive();
    }

    // ------------------------------------------------------------------ reporting
    template <class E>
    void emit(const log_record& r) {
        auto& bus = core_->rt.bus();
        if (!bus.template has_subscribers<E>()) return;
        E e;
        e.saga_id = id_;
        e.saga = program_->name;
        e.state = std::string(to_string(state_));
        e.step = std::string(log_->step_name(r));
        if (!e.step.empty()) e.kind = std::string(to_string(r.kind));
        e.attempt = r.attempt;
        e.error = std::string(r.error());
        publish_options o;
        o.correlation_id = correlation();
        try {
            (void)bus.publish(std::move(e), std::move(o));
        } catch (...) {
            // A subscriber's failure is the bus's business, never the saga's.
        }
        engine_reentered();  // inline subscribers ran
    }

    void publish(const log_record& r) {
        if (!core_->options.publish_events) return;
        if (!(event_interest() & (1u << static_cast<unsigned>(r.op)))) return;
        switch (r.op) {
        case journal_op::started: return emit<saga_started>(r);
        case journal_op::step_started: return emit<saga_step_started>(r);
        case journal_op::step_completed: return emit<saga_step_completed>(r);
        case journal_op::step_failed: return emit<saga_step_failed>(r);
        case journal_op::waiting: return emit<saga_waiting>(r);
        case journal_op::signal_received: return emit<saga_signalled>(r);
        case journal_op::wait_timed_out: return emit<saga_deadline_passed>(r);
        case journal_op::cancel_requested: return emit<saga_cancel_requested>(r);
        case journal_op::compensating: return emit<saga_compensating>(r);
        case journal_op::completed: return emit<saga_completed>(r);
        case journal_op::failed: return emit<saga_failed>(r);
        case journal_op::compensation_failed: return emit<saga_compensation_failed>(r);
        case journal_op::cancelled: return emit<saga_cancelled>(r);
        }
    }

    // A compensation that failed for good lands in the bus's dead-letter store, with every
    // attempt's error, so it is never lost silently.
    void record_dead_letter(const log_record& r) {
        saga_compensation_failed ev;
        ev.saga_id = id_;
        ev.saga = program_->name;
        ev.state = std::string(to_string(saga_state::compensation_failed));
        ev.step = std::string(log_->step_name(r));
        ev.kind = std::string(to_string(r.kind));
        ev.attempt = r.attempt;
        ev.error = std::string(r.error());
        event_metadata md;
        md.producer = core_->rt.services().producer;
        md.correlation_id = correlation();
        courier::dead_letter d;
        d.message = make_envelope(ev, r.at, std::move(md));
        d.subscription = "courier.saga/" + program_->name;
        d.reason = dead_letter_reason::handler_failed;
        for (std::size_t k = 0, n = log_->size(); k < n; ++k) {  // every failed attempt of the compensation
            const auto& f = (*log_)[k];
            if (f.op != journal_op::step_failed || f.step != r.step || f.kind != attempt_kind::compensation) continue;
            d.errors.push_back({f.attempt, f.at, std::string(f.error())});
        }
        d.attempts = r.attempt;
        if (!d.errors.empty()) {
            d.first_failure = d.errors.front().at;
            d.last_failure = d.errors.back().at;
        }
        core_->rt.bus().dead_letters().add(std::move(d));
    }

    std::shared_ptr<runner_core> core_;
    saga_program* program_;
    uuid id_;
    // Its own strand, or (on a one-thread runtime) the runner's one, by pointer: a strand is a
    // shared pointer, and a copy per saga cost two atomic operations.
    std::optional<saga_executor> own_strand_;
    const saga_executor* strand_;
    bool direct_ = false;      // one-thread runtime: post to the executor, not through strand_
    std::unique_ptr<context_box> ctx_;  // the live context (strand only)
    transition scratch_;                // see next_record() (strand only)
    time_point clock_cache_{};          // see now() (strand only; begin() before the strand)
    bool clock_fresh_ = false;
    std::uint32_t interest_ = 0;  // see event_interest() (strand only)
    bool interest_fresh_ = false;
    bool adopted_ = false;              // the journal keeps log_ itself (no append per record)
    bool listed_ = false;               // ... through adopt(), not through the runner's table

    // Every record of the saga: what info() and the memory journal read. Its own allocation: a
    // memory journal keeps it past the runner (and its runtime), which the instance must not.
    std::shared_ptr<saga_log> log_;

    // Strand-only engine state (begin() and recovery run before anyone else knows the saga).
    // Inline for sagas of a few steps: the instance is then one allocation, not three.
    boost::container::small_vector<step_rt, inline_steps> steps_;
    // Steps in the order they completed: the first completed_ entries (sized up front, as a
    // step completes at most once).
    boost::container::small_vector<std::uint32_t, inline_steps> completed_order_;
    std::size_t completed_ = 0;
    std::map<std::string, nlohmann::json> inbox_;  // signals that arrived before their wait
    const context_box* committed_ = nullptr;       // the context of the last record that has one (in log_)
    std::size_t cursor_ = 0;
    std::uint64_t seq_ = 0;
    bool failing_ = false;
    bool cancel_requested_ = false;
    bool halted_ = false;
    static constexpr int max_inline_depth = 8;
    int inline_depth_ = 0;  // nested synchronous step calls on the strand
    std::uint32_t async_out_ = 0;  // see attempts_out()
    std::vector<std::unique_ptr<context_box>> abandoned_;  // see restore_snapshot()
    saga_state state_ = saga_state::running;
    std::string error_;     // the failure that started compensation, or the cancel reason
    std::atomic<saga_state> shown_state_{saga_state::running};  // state_, for state() from any thread

    // Why the saga halted (a journal append failed): not a record, so info() reads it here.
    mutable std::mutex halt_mutex_;
    std::string halt_error_;

    // See runner_core::kicks (written before the push, read after the pop).
    friend struct runner_core;
    std::shared_ptr<saga_instance> kick_self_;
    saga_instance* next_kick_ = nullptr;
    /// What a stay in the engine knows that stays true until control leaves the engine: the
    /// time read last, and which events have subscribers (see now() and event_interest()).
    struct engine_view {
        time_point at{};
        bool fresh = false;
        std::uint32_t interest = 0;
        bool interest_fresh = false;
    };
    /// The first stay in the engine of a saga kicked through runner_core::push_kick. `before`:
    /// what the stay of the saga the same drain ran just before it left, as only engine code
    /// ran since (a saga's first step then starts at the time the one before it ended, as the
    /// next step of one saga does); returns what this stay leaves for the next.
    engine_view run_first(const engine_view& before) {
        clock_cache_ = before.at;
        clock_fresh_ = before.fresh;
        interest_ = before.interest;
        interest_fresh_ = before.interest_fresh;
        drive();
        return engine_view{clock_cache_, clock_fresh_, interest_, interest_fresh_};
    }
};

namespace saga_kicks {
// Runs the sagas kicked since the last drain; a drain dropped unrun (the executor went first)
// lets go of them.
struct drain {
    std::shared_ptr<runner_core> core;
    explicit drain(std::shared_ptr<runner_core> c) noexcept : core(std::move(c)) {}
    drain(drain&&) noexcept = default;
    drain& operator=(drain&&) = delete;
    ~drain() {
        if (core) core->drop_kicks();
    }
    void operator()() {
        auto c = std::move(core);
        c->run_kicks();
    }
};
}  // namespace saga_kicks

inline void runner_core::push_kick(std::shared_ptr<saga_instance> inst, const std::shared_ptr<runner_core>& self) {
    saga_instance* p = inst.get();
    p->kick_self_ = std::move(inst);
    saga_instance* head = kicks.load(std::memory_order_relaxed);
    do {
        p->next_kick_ = head;
    } while (!kicks.compare_exchange_weak(head, p, std::memory_order_release, std::memory_order_relaxed));
    if (head != nullptr) return;  // a drain is on its way
    try {
        post_drain(self);
    } catch (...) {
        // This saga fails to start as a failed post of its own did (it stays listed, not
        // running); sagas other threads pushed on top of it meanwhile must still run. It is the
        // oldest in the stack (it went onto an empty one, and no drain took it since).
        saga_instance* list = kicks.exchange(nullptr, std::memory_order_acquire);
        saga_instance* prev = nullptr;
        for (saga_instance* q = list; q != nullptr; prev = q, q = q->next_kick_) {
            if (q != p) continue;
            (prev != nullptr ? prev->next_kick_ : list) = q->next_kick_;
            break;
        }
        auto released = std::move(p->kick_self_);
        if (list != nullptr) {
            try {
                requeue_kicks(list);
                post_drain(self);
            } catch (...) {
                drop_kicks();
            }
        }
        throw;
    }
}

inline void runner_core::post_drain(const std::shared_ptr<runner_core>& self) {
    boost::asio::post(rt.executor(), pooled_handler<saga_kicks::drain>{saga_kicks::drain{self}});
}

// Puts `chain` (newest first; older than anything pushed since it was taken) back under what
// was pushed meanwhile, so that the next drain still runs everything in start order.
inline void runner_core::requeue_kicks(saga_instance* chain) {
    for (;;) {
        saga_instance* expected = nullptr;
        if (kicks.compare_exchange_strong(expected, chain, std::memory_order_acq_rel, std::memory_order_relaxed)) return;
        saga_instance* newer = kicks.exchange(nullptr, std::memory_order_acquire);
        if (newer == nullptr) continue;
        saga_instance* tail = newer;
        while (tail->next_kick_ != nullptr) tail = tail->next_kick_;
        tail->next_kick_ = chain;
        chain = newer;
    }
}

inline void runner_core::run_kicks() {
    saga_instance* fifo = nullptr;
    for (saga_instance* p = kicks.exchange(nullptr, std::memory_order_acquire); p != nullptr;) {
        saga_instance* next = p->next_kick_;
        p->next_kick_ = fifo;
        fifo = p;
        p = next;
    }
    // A saga whose first stay throws does not keep the others from theirs; the first error
    // goes on to the executor's run(), as a post of its own would have.
    std::exception_ptr first_error;
    saga_instance::engine_view view;  // nothing known yet: the first saga reads the clock
    while (fifo != nullptr) {
        saga_instance* next = fifo->next_kick_;
        std::shared_ptr<saga_instance> self = std::move(fifo->kick_self_);
        fifo = next;
        try {
            view = self->run_first(view);
        } catch (...) {
            view = {};  // (user code may have run: the next saga reads the clock again)
            if (!first_error) first_error = std::current_exception();
        }
    }
    if (first_error) std::rethrow_exception(first_error);
}

inline void runner_core::drop_kicks() noexcept {
    for (saga_instance* p = kicks.exchange(nullptr, std::memory_order_acquire); p != nullptr;) {
        saga_instance* next = p->next_kick_;
        auto self = std::move(p->kick_self_);
        p = next;
    }
}

inline void runner_core::collect_logs(std::vector<std::shared_ptr<saga_log>>& out) {
    std::lock_guard lock(mutex);
    sagas.for_each([&](const uuid&, const saga_entry& e) {
        if (!e.finished()) out.push_back(e.engine->log());
    });
}

inline void runner_core::on_final(const uuid& id) {
    // Declared before the lock, so destroyed after it: the engine is still on the saga's stack
    // (every entry onto its strand holds the instance) and goes when that returns; an evicted
    // saga's context copies run user destructors, which must not run under the runner's lock.
    std::shared_ptr<saga_instance> engine;
    saga_entry evicted;
    std::lock_guard lock(mutex);
    auto* e = sagas.find(id);
    if (e == nullptr || e->finished()) return;  // the runner is gone (it cleared its table)
    finished.push_back(id);  // the one step that can throw: the saga stays as it was
    e->program = &e->engine->program();
    e->log = e->engine->log();
    if (!e->engine->attempts_out()) engine = std::move(e->engine);
    while (finished.size() > options.retain_finished) {
        if (auto* old = sagas.find(finished.front())) {
            evicted = std::move(*old);
            sagas.erase(finished.front());
        }
        finished.pop_front();
    }
}

}  // namespace detail
COURIER_END_NAMESPACE
