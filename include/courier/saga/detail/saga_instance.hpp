// Internals: one running saga. Every change is a journal record, appended first, then applied
// to the in-memory state by `apply` (the same function replays a journal on recovery), then
// `drive` starts whatever the new state calls for (attempts, retry timers, signal deadlines).
// Everything but `info()` runs on the saga's strand.
#pragma once

#include <courier/bus/dead_letter_store.hpp>
#include <courier/core/config.hpp>
#include <courier/core/detail/spin_lock.hpp>
#include <courier/event/envelope.hpp>
#include <courier/runtime/runtime.hpp>
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
#include <string>
#include <unordered_map>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Options of a saga_runner.
struct saga_options {
    /// Where transitions are journaled; null: an in-memory journal owned by the runner.
    /// A journal given here must outlive the runner.
    saga_journal* journal = nullptr;
    /// Finished sagas kept for `query` (the oldest are forgotten beyond this).
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

/// State shared by a runner and its sagas (outlives the runner while handlers are queued).
struct runner_core {
    runner_core(runtime& r, saga_journal& j, saga_options o)
        : rt(r), journal(j), options(std::move(o)), single_threaded(r.single_threaded()) {
        if (single_threaded) shared_strand.emplace(boost::asio::make_strand(r.executor()));
    }
    runtime& rt;
    saga_journal& journal;
    saga_options options;
    std::atomic<bool> closed{false};
    std::mutex mutex;
    std::unordered_map<uuid, std::shared_ptr<saga_instance>> sagas;
    std::deque<uuid> finished;
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

    void on_final(const uuid& id) {
        std::lock_guard lock(mutex);
        finished.push_back(id);
        while (finished.size() > options.retain_finished) {
            sagas.erase(finished.front());
            finished.pop_front();
        }
    }
};

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

    saga_instance(std::shared_ptr<runner_core> core, std::shared_ptr<saga_program> program, uuid id,
                  std::string correlation)
        : core_(std::move(core)), program_(std::move(program)), id_(id), correlation_(std::move(correlation)),
          strand_(core_->single_threaded ? *core_->shared_strand : boost::asio::make_strand(core_->rt.executor())),
          direct_(core_->single_threaded), steps_(program_->steps.size()) {
        history_.reserve(program_->steps.size() + 1);
        completed_order_.reserve(program_->steps.size());  // no-ops up to inline_steps
    }

    const uuid& id() const noexcept { return id_; }
    /// The correlation id of the saga's events: the one given at start, or the saga id.
    std::string correlation() const { return correlation_.empty() ? id_.to_string() : correlation_; }
    const saga_executor& strand() const noexcept { return strand_; }
    saga_program& program() const noexcept { return *program_; }

    // ------------------------------------------------------------------ set-up
    /// Journals `started` (before the saga is visible). Not on the strand: nobody else knows it yet.
    /// `at`: the time the saga's id was made from (its `started` record shares it).
    result<void> begin(std::unique_ptr<context_box> ctx, time_point at) {
        ctx_ = std::move(ctx);
        clock_cache_ = at;
        clock_fresh_ = true;
        auto& r = next_record(journal_op::started);
        r.definition = program_->name;
        r.correlation_id = correlation_;
        r.context = program_->snapshot(*ctx_);
        if (record(r)) return {};
        return unexpected(courier::error(make_error_code(saga_errc::journal_io), error_));
    }
    /// Recovery: replays one record (the context comes from the last record that has one).
    void replay(const journal_record& r) {
        seq_ = r.seq;
        apply(r, r.step.empty() ? no_index : index_of(r.step));
    }
    void restore_context(const journal_record& r) { ctx_ = program_->restore(r); }
    bool finished() const { return is_final(state()); }

    /// Runs `drive` on the strand.
    void kick() {
        post([self = shared_from_this()] { self->drive(); });
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

    saga_info info() const {
        saga_info i;
        i.id = id_;
        i.definition = program_->name;
        i.correlation_id = correlation();
        std::shared_ptr<const context_box> snapshot;
        {
            std::lock_guard lock(mutex_);
            i.state = state_;
            i.current_step = current_step_;
            i.history.assign(history_.begin(), history_.end());
            i.error = error_;
            i.started_at = started_at_;
            i.updated_at = updated_at_;
            snapshot = snapshot_;
        }
        i.context = snapshot ? snapshot->to_json() : nlohmann::json();  // the user's to_json, unlocked
        return i;
    }
    saga_state state() const { return shown_state_.load(std::memory_order_acquire); }

    // ------------------------------------------------------------------ attempts
    void finish_attempt(std::size_t idx, attempt_kind kind, std::uint64_t token, std::exception_ptr error,
                        bool on_strand) override {
        if (!on_strand) {
            post([self = shared_from_this(), idx, kind, token, e = std::move(error)]() mutable {
                self->finish_attempt(idx, kind, token, std::move(e), true);
            });
            return;
        }
        clock_moved();  // the step's code ran since the last record
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
        r.step = spec.name;
        r.kind = kind;
        if (!error) {
            r.op = journal_op::step_completed;
            r.attempt = kind == attempt_kind::action ? s.attempts : s.comp_attempts;
            if (kind == attempt_kind::action) r.context = program_->snapshot(*ctx_);
            if (!record(r, idx)) return;
        } else {
            const std::uint32_t n = kind == attempt_kind::action ? s.attempts : s.comp_attempts;
            const retry_policy& policy =
                kind == attempt_kind::action ? spec.options.retry : spec.options.compensation_retry;
            const bool retry = policy.should_retry(n, error) &&
                               !(kind == attempt_kind::action && (failing_ || cancel_requested_));
            r.op = journal_op::step_failed;
            r.attempt = n;
            r.error = describe_exception(error);
            if (retry) r.due = now() + policy.delay_after(n);
            // The failed attempt's changes to the context are discarded, as recovery would.
            if (kind == attempt_kind::action && snapshot_) restore_snapshot();
            if (!record(r, idx)) return;
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
            clock_moved();
            f();
        };
        if (direct_) boost::asio::post(core_->rt.executor(), std::move(entry));
        else boost::asio::post(strand_, std::move(entry));
    }

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
    /// Control comes back to the engine: the next record reads the clock again.
    void clock_moved() noexcept { clock_fresh_ = false; }

    /// The record of the next transition: one object, reset and reused (building and destroying a
    /// journal_record, five strings and two JSON values, cost ~200 instructions a transition).
    /// Valid until the next call; record() never nests on one saga (requests are posted).
    journal_record& next_record(journal_op op) {
        auto& r = scratch_;
        r.op = op;
        r.step.clear();
        r.kind = attempt_kind::action;
        r.attempt = 0;
        r.due = time_point{};
        r.error.clear();
        r.definition.clear();
        r.correlation_id.clear();
        r.signal.clear();
        if (!r.payload.is_null()) r.payload = nullptr;
        r.context.reset();
        if (!r.context_json.is_null()) r.context_json = nullptr;
        return r;
    }

    /// Appends `r` to the journal, then applies it (`idx`: the step it concerns, when the caller
    /// knows it). On a journal failure nothing changes and the saga halts where it is (recover()
    /// on a healthy journal resumes it).
    bool record(journal_record& r, std::size_t idx = no_index) {
        r.saga_id = id_;
        r.seq = ++seq_;
        r.at = now();
        if (auto ok = core_->journal.append(r); !ok) {
            --seq_;
            std::lock_guard lock(mutex_);
            halted_ = true;
            error_ = ok.error().message;
            return false;
        }
        if (idx == no_index && !r.step.empty()) idx = index_of(r.step);
        apply(r, idx);
        publish(r);
        if (is_final(r.op)) {
            if (r.op == journal_op::compensation_failed) record_dead_letter(r);
            core_->on_final(id_);
        }
        return true;
    }

    std::size_t index_of(const std::string& step) const {
        auto i = program_->find_step(step);
        return i == no_index ? 0 : i;
    }

    saga_attempt* open_attempt(const std::string& step, attempt_kind kind) {
        for (auto it = history_.rbegin(); it != history_.rend(); ++it)
            if (it->step == step && it->kind == kind) return it->finished == time_point{} ? &*it : nullptr;
        return nullptr;
    }

    void finish_history(const journal_record& r, bool ok) {
        if (auto* a = open_attempt(r.step, r.kind)) {
            a->finished = r.at;
            a->succeeded = ok;
            a->error = r.error;
        }
    }

    void advance_cursor() {
        while (cursor_ < program_->nodes.size()) {
            for (auto i : program_->nodes[cursor_].steps)
                if (steps_[i].status != st::done) return;
            ++cursor_;
        }
    }

    /// The state change a record describes (live and on replay).
    void apply(const journal_record& r, std::size_t idx) {
        std::lock_guard lock(mutex_);
        apply_locked(r, idx);
        shown_state_.store(state_, std::memory_order_release);
    }
    // Caller holds mutex_.
    void apply_locked(const journal_record& r, std::size_t idx) {
        updated_at_ = r.at;
        switch (r.op) {
        case journal_op::started:
            state_ = saga_state::running;
            started_at_ = r.at;
            snapshot_ = snapshot_of(r);
            break;
        case journal_op::step_started: {
            auto& s = steps_[idx];
            if (auto* open = open_attempt(r.step, r.kind)) {
                open->finished = r.at;
                open->error = "interrupted by a restart";
            }
            if (r.kind == attempt_kind::compensation) {
                s.status = st::comp_running;
                s.comp_attempts = r.attempt;
            } else {
                s.status = st::running;
                s.attempts = r.attempt;
            }
            current_step_ = r.step;
            history_.push_back({r.step, r.kind, r.attempt, r.at, {}, false, {}});
            break;
        }
        case journal_op::step_completed: {
            finish_history(r, true);
            if (r.kind == attempt_kind::compensation) {
                steps_[idx].status = st::compensated;
            } else {
                steps_[idx].status = st::done;
                completed_order_.push_back(idx);
                snapshot_ = snapshot_of(r);
                advance_cursor();
            }
            break;
        }
        case journal_op::step_failed: {
            auto& s = steps_[idx];
            finish_history(r, false);
            const bool retry = r.due != time_point{};
            s.due = r.due;
            if (r.kind == attempt_kind::compensation) {
                s.status = retry ? st::comp_retry_wait : st::comp_failed;
            } else {
                s.status = retry ? st::retry_wait : st::failed;
                if (!retry) {
                    failing_ = true;
                    if (error_.empty()) error_ = "step '" + r.step + "' failed: " + r.error;
                }
            }
            break;
        }
        case journal_op::waiting: {
            auto& s = steps_[idx];
            s.status = st::waiting;
            s.due = r.due;
            state_ = saga_state::waiting;
            current_step_ = r.step;
            history_.push_back({r.step, attempt_kind::signal, 1, r.at, {}, false, {}});
            break;
        }
        case journal_op::signal_received:
            if (r.step.empty()) {
                inbox_[r.signal] = r.payload;
            } else {
                finish_history(r, true);
                inbox_.erase(r.signal);
                steps_[idx].status = st::done;
                completed_order_.push_back(idx);
                snapshot_ = snapshot_of(r);
                state_ = saga_state::running;
                advance_cursor();
            }
            break;
        case journal_op::wait_timed_out: {
            finish_history(r, false);
            steps_[idx].status = st::timed_out;
            state_ = saga_state::running;
            const auto target = program_->steps[idx].branch_node;
            if (target != no_index) {
                cursor_ = target;
            } else {
                failing_ = true;
                if (error_.empty()) error_ = r.error;
            }
            break;
        }
        case journal_op::cancel_requested:
            cancel_requested_ = true;
            if (error_.empty()) error_ = "cancelled: " + r.error;
            break;
        case journal_op::compensating: state_ = saga_state::compensating; break;
        case journal_op::completed: state_ = saga_state::completed; break;
        case journal_op::failed: state_ = saga_state::failed; break;
        case journal_op::compensation_failed:
            state_ = saga_state::compensation_failed;
            error_ = r.error;
            break;
        case journal_op::cancelled: state_ = saga_state::cancelled; break;
        }
    }

    // The record's context as an immutable typed copy (converted from JSON once, on replay).
    std::shared_ptr<const context_box> snapshot_of(const journal_record& r) const {
        if (r.context) return r.context;
        if (!r.context_json.is_null()) return program_->snapshot(*program_->restore(r));
        return snapshot_;
    }

    void restore_snapshot() {
        journal_record r;
        r.context = snapshot_;  // the strand is the only writer: its own reads need no lock
        ctx_ = program_->restore(r);
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
                r.error = error_;
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
                        r.step = spec.name;
                        r.kind = attempt_kind::signal;
                        r.attempt = 1;
                        r.due = now() + spec.deadline;
                        if (!record(r, idx)) return;
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
        for (auto it = completed_order_.rbegin(); it != completed_order_.rend(); ++it) {
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
                r.step = program_->steps[idx].name;
                r.kind = attempt_kind::compensation;
                r.attempt = s.comp_attempts;
                r.error = "[courier.saga.compensation_failed] compensation of step '" + r.step + "' failed after " +
                          std::to_string(s.comp_attempts) + " attempts: " + last_error_of(r.step);
                record(r, idx);
                return;
            }
            default: return;
            }
        }
        auto& r = next_record(cancel_requested_ ? journal_op::cancelled : journal_op::failed);
        r.error = error_;
        record(r);
    }

    std::string last_error_of(const std::string& step) const {
        for (auto it = history_.rbegin(); it != history_.rend(); ++it)
            if (it->step == step && it->kind == attempt_kind::compensation) return it->error;
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
        r.step = spec.name;
        r.kind = kind;
        r.attempt = attempt;
        if (!record(r, idx)) return;
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
        clock_moved();  // the step's code ran (all of it, or up to its first suspension)
        if (done) finish_attempt(idx, kind, token, std::move(error), true);  // a synchronous step: done here
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
            r.step = spec.name;
            r.kind = attempt_kind::signal;
            r.attempt = 1;
            r.error = "[courier.saga.deadline_passed] no signal '" + spec.signal + "' before the deadline of '" +
                      spec.name + "'";
            if (self.record(r, idx)) self.drive();
        });
    }

    // Ends the wait `idx` with `payload`: runs the wait's handler, journals the new context.
    bool complete_wait(std::size_t idx, nlohmann::json payload) {
        const auto& spec = program_->steps[idx];
        try {
            program_->apply_signal(idx, *ctx_, payload);
        } catch (...) {
            clock_moved();
            restore_snapshot();
            auto& f = next_record(journal_op::step_failed);
            f.step = spec.name;
            f.kind = attempt_kind::signal;
            f.attempt = 1;
            f.error = "signal handler failed: " + describe_exception(std::current_exception());
            if (!record(f, idx)) return false;
            {
                std::lock_guard lock(mutex_);
                failing_ = true;
                if (error_.empty()) error_ = "wait '" + spec.name + "': " + describe_exception(std::current_exception());
            }
            steps_[idx].status = st::failed;
            return true;
        }
        clock_moved();  // the wait's handler ran
        auto& r = next_record(journal_op::signal_received);
        r.step = spec.name;
        r.kind = attempt_kind::signal;
        r.attempt = 1;
        r.signal = spec.signal;
        r.payload = std::move(payload);
        r.context = program_->snapshot(*ctx_);
        return record(r, idx);
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
        r.signal = std::move(name);
        r.payload = std::move(payload);
        record(r);
    }

    void cancel(std::string reason) {
        if (core_->closed.load(std::memory_order_acquire) || halted_ || is_final(state_) || cancel_requested_) return;
        if (state_ == saga_state::compensating) return;  // already undoing
        auto& r = next_record(journal_op::cancel_requested);
        r.error = std::move(reason);
        if (record(r)) drive();
    }

    // ------------------------------------------------------------------ reporting
    template <class E>
    void emit(const journal_record& r) {
        auto& bus = core_->rt.bus();
        if (!bus.template has_subscribers<E>()) return;
        E e;
        e.saga_id = id_;
        e.saga = program_->name;
        e.state = std::string(to_string(state_));
        e.step = r.step;
        if (!r.step.empty()) e.kind = std::string(to_string(r.kind));
        e.attempt = r.attempt;
        e.error = r.error;
        publish_options o;
        o.correlation_id = correlation();
        try {
            (void)bus.publish(std::move(e), std::move(o));
        } catch (...) {
            // A subscriber's failure is the bus's business, never the saga's.
        }
        clock_moved();  // inline subscribers ran
    }

    void publish(const journal_record& r) {
        if (!core_->options.publish_events) return;
        if (!(core_->event_interest() & (1u << static_cast<unsigned>(r.op)))) return;
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
    void record_dead_letter(const journal_record& r) {
        saga_compensation_failed ev;
        ev.saga_id = id_;
        ev.saga = program_->name;
        ev.state = std::string(to_string(saga_state::compensation_failed));
        ev.step = r.step;
        ev.kind = std::string(to_string(r.kind));
        ev.attempt = r.attempt;
        ev.error = r.error;
        event_metadata md;
        md.producer = core_->rt.services().producer;
        md.correlation_id = correlation();
        courier::dead_letter d;
        d.message = make_envelope(ev, r.at, std::move(md));
        d.subscription = "courier.saga/" + program_->name;
        d.reason = dead_letter_reason::handler_failed;
        {
            for (auto& a : history_) {
                if (a.step != r.step || a.kind != attempt_kind::compensation || a.succeeded) continue;
                d.errors.push_back({a.attempt, a.finished, a.error});
            }
        }
        d.attempts = r.attempt;
        if (!d.errors.empty()) {
            d.first_failure = d.errors.front().at;
            d.last_failure = d.errors.back().at;
        }
        core_->rt.bus().dead_letters().add(std::move(d));
    }

    std::shared_ptr<runner_core> core_;
    std::shared_ptr<saga_program> program_;
    uuid id_;
    std::string correlation_;  // empty: the saga id
    saga_executor strand_;     // its own, or the runner's one on a one-thread runtime
    bool direct_ = false;      // one-thread runtime: post to the executor, not through strand_
    std::unique_ptr<context_box> ctx_;  // the live context (strand only)
    journal_record scratch_;            // see next_record() (strand only)
    time_point clock_cache_{};          // see now() (strand only; begin() before the strand)
    bool clock_fresh_ = false;

    // Strand-only engine state (written under mutex_ where info() reads it).
    // Inline for sagas of a few steps: the instance is then one allocation, not four.
    boost::container::small_vector<step_rt, inline_steps> steps_;
    boost::container::small_vector<std::size_t, inline_steps> completed_order_;
    std::map<std::string, nlohmann::json> inbox_;  // signals that arrived before their wait
    std::size_t cursor_ = 0;
    std::uint64_t seq_ = 0;
    bool failing_ = false;
    bool cancel_requested_ = false;
    bool halted_ = false;
    static constexpr int max_inline_depth = 8;
    int inline_depth_ = 0;  // nested synchronous step calls on the strand

    // Guards what info() reads: taken once per transition on the saga's strand (the writer) and
    // by the occasional query. The strand's own reads need no lock: nobody else writes.
    mutable spin_lock mutex_;
    std::atomic<saga_state> shown_state_{saga_state::running};  // state_, for state() without the lock
    saga_state state_ = saga_state::running;
    std::string current_step_;
    boost::container::small_vector<saga_attempt, inline_steps + 1> history_;
    std::shared_ptr<const context_box> snapshot_;
    std::string error_;
    time_point started_at_{};
    time_point updated_at_{};
};

}  // namespace detail
COURIER_END_NAMESPACE
