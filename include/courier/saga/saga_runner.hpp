// The saga runner: starts sagas from their definitions, runs their steps on the runtime's
// executor (one strand per saga), compensates in reverse order on failure or cancel, delivers
// signals, answers queries, journals every transition before it takes effect, and after a
// restart `recover()`s every saga the journal says had not finished.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/result.hpp>
#include <courier/core/uuid.hpp>
#include <courier/jobs/detail/record_pool.hpp>
#include <courier/runtime/runtime.hpp>
#include <courier/saga/detail/saga_instance.hpp>
#include <courier/saga/journal.hpp>
#include <courier/saga/memory_journal.hpp>
#include <courier/saga/saga_definition.hpp>
#include <courier/saga/saga_error.hpp>
#include <courier/saga/saga_info.hpp>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Options of one `saga_runner::start`.
struct start_options {
    /// The saga's id; nil: a fresh UUID v7. Starting an id that exists is an error (errc::duplicate).
    uuid id{};
    /// Correlation id of every event of the saga; empty: the saga id.
    std::string correlation_id;
};

/// What `recover()` did.
struct recovery_report {
    std::size_t resumed = 0;   ///< unfinished sagas now running again
    std::size_t finished = 0;  ///< sagas the journal shows finished (kept for query)
    std::size_t skipped = 0;   ///< sagas already known to this runner
    /// Sagas whose definition is not registered (add() it, then recover() again).
    std::vector<std::string> unknown_definitions;
};

/// Runs sagas.
///
/// Thread safety: every member may be called from any thread. The steps of one saga run on its
/// own strand (never two at once, parallel members included, so they may share the context
/// without locks); different sagas run in parallel on the runtime's threads.
/// Ordering: journal append, then state change, then event, for every transition.
/// Errors: a step that throws, returns an error or times out is retried by its policy, then the
/// saga compensates; a compensation that exhausts its retries ends the saga
/// `compensation_failed` with a dead letter in the bus's store. A journal that cannot be written
/// halts the saga where it is (its query shows the error); recover() resumes it later.
/// Lifetime: the runtime (and a journal given in the options) must outlive the runner.
///
/// Example:
/// ```
/// courier::runtime rt;
/// courier::saga_runner sagas(rt);
/// auto id = sagas.start(order_saga, order{"o-1", 42.0}).value();
/// sagas.signal(id, "order.approved", {{"by", "alice"}});
/// auto info = sagas.query(id);   // state, current step, history, context
/// ```
class saga_runner {
public:
    explicit saga_runner(runtime& rt, saga_options options = {}) {
        std::unique_ptr<saga_journal> owned;
        saga_journal* j = options.journal;
        if (!j) {
            owned = std::make_unique<memory_journal>();
            j = owned.get();
        }
        core_ = std::make_shared<detail::runner_core>(rt, *j, std::move(options));
        core_->owned_journal = std::move(owned);
        core_->attach();
    }
    ~saga_runner() {
        core_->closed.store(true, std::memory_order_release);
        // Before the table goes: the journal takes over the logs of the sagas still running.
        core_->journal.detach(*core_);
        // Destroyed after the lock: sagas hold user contexts, whose destructors must not run
        // under a lock that handlers still running on other threads take.
        decltype(core_->sagas) known;
        std::lock_guard lock(core_->mutex);
        std::swap(known, core_->sagas);
        core_->finished.clear();
    }
    saga_runner(const saga_runner&) = delete;
    saga_runner& operator=(const saga_runner&) = delete;

    /// Registers a definition (needed before `recover()`; `start` registers on first use).
    /// Errors: saga_errc::invalid_definition, or when another definition has the same name.
    template <class Ctx>
    result<void> add(const saga_definition<Ctx>& def) {
        auto p = register_program(def);
        if (!p) return unexpected(std::move(p).error());
        return {};
    }

    /// Starts a saga with context `ctx`; returns its id once `started` is journaled. Its steps run
    /// on the executor (on a manual runtime: at the next poll()).
    template <class Ctx>
    result<uuid> start(const saga_definition<Ctx>& def, Ctx ctx, start_options options = {}) {
        auto program = register_program(def);
        if (!program) return unexpected(std::move(program).error());
        const bool fresh = options.id.is_nil();  // a new UUID v7 cannot be taken already
        const time_point at = core_->rt.clock().now();
        const uuid id = fresh ? make_uuid_v7(at) : options.id;
        auto duplicate = [&] {
            return unexpected(errc::duplicate, "[courier.saga.duplicate_id] a saga with id " + id.to_string() +
                                                   " already exists");
        };
        if (!fresh && known(id)) return duplicate();
        // An empty correlation id stands for the saga id (formatted only when an event needs it).
        // From a block pool (as job records): an instance is over 1 KiB, past glibc's per-thread
        // cache, and malloc's slow path for it cost ~15% of a saga of three no-op steps.
        auto inst = std::allocate_shared<detail::saga_instance>(detail::pooled_allocator<detail::saga_instance>{}, core_,
                                                                *program, id, std::move(options.correlation_id));
        // Journaled before anyone can see it: a signal or cancel cannot race the `started` record.
        if (auto ok = inst->begin(std::make_unique<detail::typed_context<Ctx>>(std::move(ctx)), at); !ok)
            return unexpected(std::move(ok).error());
        bool added = false;
        {
            std::lock_guard lock(core_->mutex);
            added = core_->add_running(id, inst);
        }
        if (!added) {  // (the journal is called outside the runner's lock: see saga_journal::attach)
            inst->abandon();
            return duplicate();
        }
        detail::saga_instance::kick(std::move(inst));
        return id;
    }

    /// Sends the signal `name` to a saga. A wait for it ends (its handler folds `payload` into the
    /// context); a signal that arrives before its wait is kept until the saga reaches it.
    /// Errors: errc::not_found (no such saga), errc::invalid_state (it has finished).
    result<void> signal(const uuid& id, std::string name, nlohmann::json payload = {}) {
        auto inst = find(id);
        if (!inst) return not_running(id);
        if (is_final(inst->state())) return finished_error(id);
        inst->post_signal(std::move(name), std::move(payload));
        return {};
    }

    /// Cancels a saga: pending retries and waits stop, an action in flight finishes its attempt,
    /// then every completed step is compensated in reverse order; the saga ends `cancelled`.
    /// Errors: errc::not_found, errc::invalid_state (it has finished).
    result<void> cancel(const uuid& id, std::string reason = "cancelled by request") {
        auto inst = find(id);
        if (!inst) return not_running(id);
        if (is_final(inst->state())) return finished_error(id);
        inst->post_cancel(std::move(reason));
        return {};
    }

    /// State, current step, attempt history and context of a saga (running, or finished and retained).
    std::optional<saga_info> query(const uuid& id) const {
        detail::saga_entry e;
        {
            std::lock_guard lock(core_->mutex);
            auto* found = core_->sagas.find(id);
            if (found == nullptr) return std::nullopt;
            e = *found;
        }
        if (!e.finished()) return e.engine->info();
        return detail::saga_instance::info_of(*e.program, *e.log);
    }

    /// Ids of the sagas this runner knows (running and retained finished ones).
    std::vector<uuid> list() const {
        std::lock_guard lock(core_->mutex);
        std::vector<uuid> out;
        out.reserve(core_->sagas.size());
        core_->sagas.for_each([&](const uuid& id, const auto&) { out.push_back(id); });
        return out;
    }

    /// Reads the journal and resumes every saga that had not finished, from its last recorded
    /// transition: completed steps never run again; an attempt that was in flight runs again (same
    /// attempt number, same idempotency key); retry timers and signal waits are re-armed at their
    /// recorded times (at once if those passed). Register the definitions first.
    /// Errors: the journal's (saga_errc::journal_corrupt naming the file and line, journal_io);
    /// saga_errc::journal_corrupt also when a record's context does not convert to the type.
    result<recovery_report> recover() {
        auto loaded = core_->journal.load();
        if (!loaded) return unexpected(std::move(loaded).error());
        std::vector<uuid> order;
        std::unordered_map<uuid, std::vector<const journal_record*>> by_saga;
        for (auto& r : *loaded) {
            auto& v = by_saga[r.saga_id];
            if (v.empty()) order.push_back(r.saga_id);
            v.push_back(&r);
        }
        recovery_report report;
        std::vector<std::shared_ptr<detail::saga_instance>> to_resume;
        for (auto& id : order) {
            auto& recs = by_saga[id];
            if (id.is_nil())
                return unexpected(courier::error(make_error_code(saga_errc::journal_corrupt),
                                                 "[courier.saga.journal_corrupt] record " + std::to_string(recs.front()->seq) +
                                                     " has the nil saga id"));
            if (known(id)) {
                ++report.skipped;
                continue;
            }
            const journal_record& first = *recs.front();
            if (first.op != journal_op::started) continue;  // a finished saga's tail (memory journal)
            std::shared_ptr<detail::saga_program> program;
            {
                std::lock_guard lock(core_->mutex);
                if (auto it = core_->programs.find(first.definition); it != core_->programs.end()) program = it->second;
            }
            if (!program) {
                report.unknown_definitions.push_back(first.definition);
                continue;
            }
            auto inst = std::allocate_shared<detail::saga_instance>(detail::pooled_allocator<detail::saga_instance>{}, core_,
                                                                    program.get(), id, std::string(first.correlation_id));
            const journal_record* at = &first;
            try {
                for (auto* r : recs) {
                    at = r;
                    inst->replay(*r);
                }
                if (!inst->restore_context()) throw std::runtime_error("no record carries the context");
            } catch (const std::exception& e) {
                return unexpected(courier::error(make_error_code(saga_errc::journal_corrupt),
                                                 "[courier.saga.journal_corrupt] saga " + id.to_string() + " record " +
                                                     std::to_string(at->seq) + ": " + e.what()));
            }
            const bool done = inst->finished();
            {
                std::lock_guard lock(core_->mutex);
                if (!core_->add_running(id, inst)) {  // started meanwhile with this id
                    ++report.skipped;
                    continue;
                }
            }
            if (!done) inst->attach_journal(true);  // (a memory journal swaps the log it had for this one)
            if (done) {
                core_->on_final(id);
                ++report.finished;
            } else {
                to_resume.push_back(inst);
                ++report.resumed;
            }
        }
        for (auto& inst : to_resume) detail::saga_instance::kick(std::move(inst));
        return report;
    }

    /// The journal in use.
    saga_journal& journal() noexcept { return core_->journal; }

private:
    // The registered program of `def`. A raw pointer: the runner's core keeps every registered
    // program alive, and every saga keeps the core alive.
    template <class Ctx>
    result<detail::saga_program*> register_program(const saga_definition<Ctx>& def) {
        const auto& p = def.program();
        if (core_->last_program.load(std::memory_order_acquire) == p.get()) return p.get();
        std::lock_guard lock(core_->mutex);
        auto it = core_->programs.find(p->name);
        if (it != core_->programs.end()) {
            if (it->second != p)
                return unexpected(courier::error(make_error_code(saga_errc::invalid_definition),
                                                 "[courier.saga.invalid_definition] another definition is registered as " +
                                                     p->name));
            core_->last_program.store(p.get(), std::memory_order_release);
            return p.get();
        }
        if (auto ok = p->validate(); !ok) return unexpected(std::move(ok).error());
        core_->programs.emplace(p->name, p);
        core_->last_program.store(p.get(), std::memory_order_release);
        return p.get();
    }

    // A running saga (finished ones keep their log only: see runner_core::sagas).
    std::shared_ptr<detail::saga_instance> find(const uuid& id) const {
        std::lock_guard lock(core_->mutex);
        return core_->running(id);
    }
    bool known(const uuid& id) const {
        std::lock_guard lock(core_->mutex);
        return core_->sagas.find(id) != nullptr;
    }
    // For signal and cancel, which a finished saga refuses with its own error.
    result<void> not_running(const uuid& id) const {
        if (known(id)) return finished_error(id);
        return unexpected(errc::not_found, "[courier.saga.not_found] no saga " + id.to_string());
    }
    static result<void> finished_error(const uuid& id) {
        return unexpected(errc::invalid_state, "[courier.saga.finished] saga " + id.to_string() + " has finished");
    }

    std::shared_ptr<detail::runner_core> core_;
};

COURIER_END_NAMESPACE
