// A saga definition: a versioned name, a typed context (any struct with nlohmann_json
// conversions) and an ordered list of steps, parallel groups and signal waits. Actions and
// compensations are plain callables, callback-style steps or Asio coroutines.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/event/event_name.hpp>
#include <courier/saga/detail/saga_program.hpp>
#include <courier/saga/step_context.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#if defined(BOOST_ASIO_HAS_CO_AWAIT)
#include <boost/asio/awaitable.hpp>
#endif

#include <nlohmann/json.hpp>

#include <concepts>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// What a signal wait does when its deadline passes.
struct on_deadline {
    /// Empty: the saga fails (and compensates); otherwise the step to continue with.
    std::string branch;
    /// The saga fails with "[courier.saga.deadline_passed]" and compensates.
    static on_deadline fail() { return {}; }
    /// The saga continues with `step` (a later step, not inside a parallel group).
    static on_deadline go_to(std::string step) { return {std::move(step)}; }
};

namespace detail {

template <class T>
struct is_awaitable : std::false_type {};
#if defined(BOOST_ASIO_HAS_CO_AWAIT)
template <class T, class E>
struct is_awaitable<boost::asio::awaitable<T, E>> : std::true_type {};
#endif

// Calls f with the step_context, or with the context alone.
template <class Ctx, class F>
decltype(auto) call_step(F& f, step_context<Ctx>& sc) {
    if constexpr (std::is_invocable_v<F&, step_context<Ctx>&>) return f(sc);
    else return f(sc.context());
}

template <class Ctx, class F>
using step_result_t = decltype(call_step<Ctx>(std::declval<F&>(), std::declval<step_context<Ctx>&>()));

inline std::exception_ptr error_to_exception(const result<void>& r) {
    return r ? nullptr : std::make_exception_ptr(courier_error(r.error()));
}

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
// `owner` keeps the saga's engine (the context and strand `sc` points into) alive while the
// coroutine is, also if it outlives its attempt (a timeout) or its runner.
template <class Ctx, class F>
boost::asio::awaitable<void> run_step_coroutine(F f, std::shared_ptr<step_context<Ctx>> sc,
                                                [[maybe_unused]] std::shared_ptr<const void> owner) {
    using R = typename step_result_t<Ctx, F>::value_type;
    if constexpr (std::is_same_v<R, void>) {
        co_await call_step<Ctx>(f, *sc);
    } else {
        R r = co_await call_step<Ctx>(f, *sc);
        if (!r) throw courier_error(r.error());
    }
}
#endif

// The engine's form of an action: returns true when it finished synchronously (outcome in the
// exception_ptr), false when it will report through a ticket made from the ticket_source.
template <class Ctx>
using step_fn = std::function<bool(step_context<Ctx>&, const ticket_source&, std::exception_ptr&)>;

// Wraps any accepted form of action into the engine's form.
template <class Ctx, class F>
step_fn<Ctx> make_step_fn(F f) {
    if constexpr (std::is_invocable_v<F&, step_context<Ctx>&, step_completion>) {
        return [f = std::move(f)](step_context<Ctx>& sc, const ticket_source& src, std::exception_ptr& e) mutable {
            try {
                f(sc, step_completion([t = src.make()](std::exception_ptr x) { t(std::move(x), false); }));
            } catch (...) {
                e = std::current_exception();
                return true;
            }
            return false;
        };
    } else {
        static_assert(std::is_invocable_v<F&, step_context<Ctx>&> || std::is_invocable_v<F&, Ctx&>,
                      "a saga step takes (step_context<Ctx>&), (Ctx&) or (step_context<Ctx>&, step_completion)");
        using R = step_result_t<Ctx, F>;
        if constexpr (is_awaitable<R>::value) {
#if defined(BOOST_ASIO_HAS_CO_AWAIT)
            return [f = std::move(f)](step_context<Ctx>& sc, const ticket_source& src, std::exception_ptr&) {
                auto shared = std::make_shared<step_context<Ctx>>(sc);
                std::shared_ptr<const void> owner = src.sink->weak_sink().lock();
                boost::asio::co_spawn(sc.executor(), run_step_coroutine<Ctx, F>(f, std::move(shared), std::move(owner)),
                                      [t = src.make()](std::exception_ptr x) { t(std::move(x), false); });
                return false;
            };
#endif
        } else {
            static_assert(std::is_void_v<R> || std::is_same_v<std::decay_t<R>, result<void>>,
                          "a plain saga step returns void or courier::result<void> (or throws)");
            return [f = std::move(f)](step_context<Ctx>& sc, const ticket_source&, std::exception_ptr& e) mutable {
                try {
                    if constexpr (std::is_void_v<R>) call_step<Ctx>(f, sc);
                    else e = error_to_exception(call_step<Ctx>(f, sc));
                } catch (...) {
                    e = std::current_exception();
                }
                return true;
            };
        }
    }
}

template <class Ctx>
class typed_program final : public saga_program {
public:
    std::vector<step_fn<Ctx>> actions, compensations;
    std::vector<std::function<void(Ctx&, const nlohmann::json&)>> signal_handlers;

    bool invoke(std::size_t step, attempt_kind kind, context_box& ctx, step_env env, const ticket_source& done,
                std::exception_ptr& error) override {
        step_context<Ctx> sc(static_cast<typed_context<Ctx>&>(ctx).value, std::move(env));
        auto& fn = kind == attempt_kind::compensation ? compensations[step] : actions[step];
        return fn(sc, done, error);
    }
    void apply_signal(std::size_t step, context_box& ctx, const nlohmann::json& payload) override {
        if (signal_handlers[step]) signal_handlers[step](static_cast<typed_context<Ctx>&>(ctx).value, payload);
    }
    std::unique_ptr<context_box> restore(const journal_record& r) const override {
        if (auto* t = dynamic_cast<const typed_context<Ctx>*>(r.context.get()))
            return std::make_unique<typed_context<Ctx>>(t->value);
        auto out = std::make_unique<typed_context<Ctx>>();
        out->value = r.context_json.template get<Ctx>();
        return out;
    }
};

}  // namespace detail

/// A saga definition: name, typed context, steps.
///
/// A step's action and compensation may be:
/// - a plain callable `void(step_context<Ctx>&)` or `void(Ctx&)`, or returning
///   `courier::result<void>`; throwing or returning an error fails the attempt;
/// - a callback-style step `void(step_context<Ctx>&, step_completion)` that calls
///   `succeed()`/`fail()` later, from any thread;
/// - a coroutine returning `boost::asio::awaitable<void>` (or `awaitable<result<void>>`),
///   spawned on the saga's strand.
///
/// Thread safety: build it in one thread, then share copies freely (they share the steps).
///
/// Example:
/// ```
/// courier::saga_definition<order> def{"order.fulfilment.v1"};
/// def.step("reserve", [](order& o) { inventory.reserve(o.id); }, [](order& o) { inventory.release(o.id); })
///    .step("charge", charge_card, refund, {.timeout = std::chrono::seconds(30)})
///    .wait_for_signal("approval", "order.approved", std::chrono::hours(24))
///    .step("ship", ship);
/// ```
template <class Ctx>
class saga_definition {
public:
    using context_type = Ctx;

    /// A definition named `name` (a versioned event-style name, checked at compile time for literals).
    explicit saga_definition(event_name name) : program_(std::make_shared<detail::typed_program<Ctx>>()) {
        program_->name = std::string(name.str());
    }

    /// Appends a step without compensation.
    template <class Action>
    saga_definition& step(std::string name, Action action, step_options options = {}) {
        add_step(std::move(name), detail::make_step_fn<Ctx>(std::move(action)), nullptr, std::move(options));
        return *this;
    }
    /// Appends a step with a compensation, run (in reverse order) if a later step fails.
    template <class Action, class Compensation>
        requires(!std::is_same_v<std::decay_t<Compensation>, step_options>)
    saga_definition& step(std::string name, Action action, Compensation compensation, step_options options = {}) {
        add_step(std::move(name), detail::make_step_fn<Ctx>(std::move(action)),
                 detail::make_step_fn<Ctx>(std::move(compensation)), std::move(options));
        return *this;
    }

    /// Appends a parallel group: every step `members` adds runs at once; the group succeeds when
    /// all of them do. If one fails (after its retries), the others finish their current attempt
    /// and the completed ones are compensated with the rest.
    saga_definition& parallel(const std::function<void(saga_definition&)>& members) {
        if (in_group_) {
            program_->invalid = "parallel groups do not nest";
            return *this;
        }
        in_group_ = true;
        program_->nodes.push_back({false, {}});
        members(*this);
        in_group_ = false;
        if (program_->nodes.back().steps.empty()) program_->invalid = "an empty parallel group";
        return *this;
    }

    /// Appends a wait for the signal `signal` (see saga_runner::signal). A signal sent before the
    /// saga reaches the wait is kept until it does. `on_signal` folds the payload into the context.
    template <class Handler = std::nullptr_t>
        requires(!std::is_same_v<std::decay_t<Handler>, on_deadline>)
    saga_definition& wait_for_signal(std::string name, std::string signal, duration deadline,
                                     Handler on_signal = nullptr, on_deadline at_deadline = on_deadline::fail()) {
        if (in_group_) {
            program_->invalid = "a signal wait cannot be inside a parallel group";
            return *this;
        }
        detail::step_spec s;
        s.name = std::move(name);
        s.is_wait = true;
        s.signal = std::move(signal);
        s.deadline = deadline;
        s.branch = std::move(at_deadline.branch);
        s.node = program_->nodes.size();
        program_->nodes.push_back({true, {program_->steps.size()}});
        program_->steps.push_back(std::move(s));
        program_->actions.emplace_back();
        program_->compensations.emplace_back();
        if constexpr (std::is_same_v<Handler, std::nullptr_t>) program_->signal_handlers.emplace_back();
        else program_->signal_handlers.emplace_back(std::move(on_signal));
        return *this;
    }
    /// A signal wait without payload handler that takes a branch at its deadline.
    saga_definition& wait_for_signal(std::string name, std::string signal, duration deadline, on_deadline at_deadline) {
        return wait_for_signal(std::move(name), std::move(signal), deadline, nullptr, std::move(at_deadline));
    }

    const std::string& name() const noexcept { return program_->name; }
    std::size_t size() const noexcept { return program_->steps.size(); }
    /// The engine's view (internal).
    const std::shared_ptr<detail::typed_program<Ctx>>& program() const noexcept { return program_; }

private:
    void add_step(std::string name, detail::step_fn<Ctx> action, detail::step_fn<Ctx> compensation,
                  step_options options) {
        detail::step_spec s;
        s.name = std::move(name);
        s.has_compensation = static_cast<bool>(compensation);
        s.options = std::move(options);
        if (!in_group_) program_->nodes.push_back({false, {}});
        s.node = program_->nodes.size() - 1;
        program_->nodes.back().steps.push_back(program_->steps.size());
        program_->steps.push_back(std::move(s));
        program_->actions.push_back(std::move(action));
        program_->compensations.push_back(std::move(compensation));
        program_->signal_handlers.emplace_back();
    }

    std::shared_ptr<detail::typed_program<Ctx>> program_;
    bool in_group_ = false;
};

COURIER_END_NAMESPACE
