// Internals: a saga definition without its context type, as the runner's engine sees it: the
// steps (names, options, wait specs), the nodes they form (a group of parallel steps or a signal
// wait), and virtual hooks that run the typed actions and convert the typed context.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/retry_policy.hpp>
#include <courier/jobs/detail/record_pool.hpp>
#include <courier/saga/detail/saga_log.hpp>
#include <courier/saga/journal.hpp>
#include <courier/saga/saga_error.hpp>
#include <courier/saga/step_context.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Options of one step.
struct step_options {
    /// Start-to-close timeout of one attempt; zero means none. It preempts asynchronous steps
    /// (callback and coroutine); a synchronous action runs to its end on the strand.
    duration timeout{};
    /// Retries of the action (Temporal's vocabulary; default 5 attempts, 100 ms doubling, jitter).
    retry_policy retry{};
    /// Retries of the compensation; when they are exhausted the saga ends `compensation_failed`.
    retry_policy compensation_retry{};
};

namespace detail {

inline constexpr std::size_t no_index = static_cast<std::size_t>(-1);

struct step_spec {
    std::string name;
    std::size_t node = 0;
    bool is_wait = false;
    bool has_compensation = false;
    step_options options;
    // Signal waits:
    std::string signal;
    duration deadline{};
    std::string branch;  // step to jump to at the deadline; empty: fail
    std::size_t branch_node = no_index;
};

struct node_spec {
    bool is_wait = false;
    std::vector<std::size_t> steps;
};

/// Called when an attempt ends. `on_strand` is true when the caller runs on the saga's strand.
struct attempt_sink {
    virtual ~attempt_sink() = default;
    virtual void finish_attempt(std::size_t step, attempt_kind kind, std::uint64_t token, std::exception_ptr error,
                                bool on_strand) = 0;
    virtual std::weak_ptr<attempt_sink> weak_sink() = 0;
};

// Holds the saga weakly: a completion kept by user code past the runner's life does nothing.
struct attempt_ticket {
    std::weak_ptr<attempt_sink> sink;
    std::size_t step = 0;
    attempt_kind kind = attempt_kind::action;
    std::uint64_t token = 0;
    void operator()(std::exception_ptr e, bool on_strand) const {
        if (auto s = sink.lock()) s->finish_attempt(step, kind, token, std::move(e), on_strand);
    }
};

// What an asynchronous step (callback or coroutine) makes its ticket from; a synchronous step
// reports its outcome by return value and never pays for the ticket's weak pointer.
struct ticket_source {
    attempt_sink* sink = nullptr;
    std::size_t step = 0;
    attempt_kind kind = attempt_kind::action;
    std::uint64_t token = 0;
    attempt_ticket make() const { return {sink->weak_sink(), step, kind, token}; }
};

/// Class-level new/delete from a block pool: a saga copies its context at every completed step
/// (the copy its log keeps), and malloc's share of that was a tenth of a no-op saga.
template <class T>
struct pooled_new {
    static void* operator new(std::size_t n) {
#if COURIER_JOBS_RECORD_POOL
        if (n == sizeof(T))
            if (void* p = block_pool<sizeof(T), alignof(T)>::instance().get()) return p;
#endif
        return ::operator new(n);
    }
    static void operator delete(void* p, std::size_t n) noexcept {
#if COURIER_JOBS_RECORD_POOL
        if (n == sizeof(T) && block_pool<sizeof(T), alignof(T)>::instance().put(p)) return;
#else
        (void)n;
#endif
        ::operator delete(p);
    }
};
struct not_pooled {};

/// A typed context the engine holds without knowing the type.
template <class Ctx>
struct typed_context final
    : context_box,
      std::conditional_t<(alignof(Ctx) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__), pooled_new<typed_context<Ctx>>, not_pooled> {
    Ctx value;
    typed_context() = default;
    explicit typed_context(Ctx v) : value(std::move(v)) {}
    nlohmann::json to_json() const override {
        nlohmann::json j = value;
        return j;
    }
    std::unique_ptr<context_box> clone() const override { return std::make_unique<typed_context>(value); }
};

class saga_program {
public:
    virtual ~saga_program() = default;

    std::string name;
    std::vector<step_spec> steps;
    std::vector<node_spec> nodes;
    std::string invalid;  // set by the builder when a definition is malformed

    /// The definition's and steps' names (what a saga's log records point into). Set by validate().
    std::shared_ptr<const log_names> names;

    std::size_t find_step(std::string_view step) const noexcept {
        for (std::size_t i = 0; i < steps.size(); ++i)
            if (steps[i].name == step) return i;
        return no_index;
    }

    /// Checks names and branch targets; resolves branch_node and builds `names`. Once per program:
    /// runners on other threads may register the same definition (and read `names`) meanwhile.
    result<void> validate() {
        std::call_once(validated_, [this] { validation_ = check(); });
        return validation_;
    }

    /// Runs the action or compensation of `step` on the strand. A synchronous step returns true
    /// with its outcome in `error`; an asynchronous one returns false and reports later through a
    /// ticket made from `done`.
    virtual bool invoke(std::size_t step, attempt_kind kind, context_box& ctx, step_env env, const ticket_source& done,
                        std::exception_ptr& error) = 0;
    /// Folds a signal's payload into the context (the wait's handler, if any).
    virtual void apply_signal(std::size_t step, context_box& ctx, const nlohmann::json& payload) = 0;
    /// A mutable context from a record's context (typed copy or JSON). Throws on bad JSON.
    virtual std::unique_ptr<context_box> restore(const journal_record& r) const = 0;

private:
    result<void> check() {
        auto bad = [&](std::string why) {
            return unexpected(courier::error(make_error_code(saga_errc::invalid_definition),
                                             "[courier.saga.invalid_definition] " + name + ": " + why));
        };
        if (!invalid.empty()) return bad(invalid);
        if (nodes.empty()) return bad("no steps");
        for (std::size_t i = 0; i < steps.size(); ++i) {
            if (steps[i].name.empty()) return bad("a step has no name");
            for (std::size_t k = 0; k < i; ++k)
                if (steps[k].name == steps[i].name) return bad("two steps are named '" + steps[i].name + "'");
        }
        for (auto& s : steps) {
            if (!s.is_wait || s.branch.empty()) continue;
            auto target = find_step(s.branch);
            if (target == no_index) return bad("wait '" + s.name + "' branches to unknown step '" + s.branch + "'");
            if (steps[target].node <= s.node)
                return bad("wait '" + s.name + "' must branch forward, not to '" + s.branch + "'");
            if (nodes[steps[target].node].steps.front() != target)
                return bad("branch target '" + s.branch + "' is inside a parallel group");
            s.branch_node = steps[target].node;
        }
        auto n = std::make_shared<log_names>();
        n->definition = name;
        for (auto& s : steps) n->steps.push_back(s.name);
        names = std::move(n);
        return {};
    }

    std::once_flag validated_;
    result<void> validation_;
};

}  // namespace detail
COURIER_END_NAMESPACE
