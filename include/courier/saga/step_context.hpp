// What a step's action or compensation receives: the saga's typed context, its id, the step,
// the attempt, the strand it runs on, and the step's idempotency key; and, for callback-style
// steps, the `step_completion` to call when the work is done.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/uuid.hpp>
#include <courier/saga/saga_state.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

COURIER_BEGIN_NAMESPACE

/// The executor every action, compensation and coroutine step of one saga runs on: a strand, so
/// the steps of one saga (parallel members included) never touch its context concurrently.
using saga_executor = boost::asio::strand<boost::asio::io_context::executor_type>;

/// The idempotency key of a step attempt: `<saga id>/<step>/<kind>`. It is the same for every
/// attempt of the step (retries and reruns after a crash), so a downstream service that stores
/// the key with its effect applies the effect once.
inline std::string make_idempotency_key(const uuid& saga_id, std::string_view step, attempt_kind kind) {
    std::string key = saga_id.to_string();
    key.append(1, '/').append(step).append(1, '/').append(to_string(kind));
    return key;
}

/// The environment of one step attempt, without the typed context.
struct step_env {
    uuid saga_id;
    std::string_view step;  ///< views the definition's step name (lives as long as the definition)
    std::uint32_t attempt = 0;
    attempt_kind kind = attempt_kind::action;
    /// The saga's strand, by pointer: copying a strand costs two atomic operations per step.
    const saga_executor* executor = nullptr;
};

/// What a step's action or compensation receives.
///
/// Thread safety: used on the saga's strand only; `context()` must not be touched from other
/// threads (a callback-style step calls its `step_completion` from anywhere, though).
template <class Ctx>
class step_context {
public:
    step_context(Ctx& ctx, step_env env) : ctx_(&ctx), env_(std::move(env)) {}

    /// The saga's context; changes made by a successful action are journaled with its completion.
    Ctx& context() const noexcept { return *ctx_; }
    const uuid& saga_id() const noexcept { return env_.saga_id; }
    std::string_view step() const noexcept { return env_.step; }
    /// 1 for the first attempt; a rerun after a crash keeps the interrupted attempt's number.
    std::uint32_t attempt() const noexcept { return env_.attempt; }
    attempt_kind kind() const noexcept { return env_.kind; }
    /// The saga's strand (for timers and co_spawn in coroutine steps).
    const saga_executor& executor() const noexcept { return *env_.executor; }
    /// `<saga id>/<step>/<kind>`: stable across retries and crash recovery; pass it to the
    /// service the step calls so that a repeated call is recognised.
    std::string idempotency_key() const { return make_idempotency_key(env_.saga_id, env_.step, env_.kind); }

private:
    Ctx* ctx_;
    step_env env_;
};

/// Completes a callback-style step: `succeed()` or `fail(...)`, once, from any thread. Later
/// calls, and calls after the attempt timed out, are ignored.
class step_completion {
public:
    explicit step_completion(std::function<void(std::exception_ptr)> fn) : fn_(std::move(fn)) {}
    void succeed() const { fn_(nullptr); }
    void fail(courier::error e) const { fn_(std::make_exception_ptr(courier_error(std::move(e)))); }
    void fail(std::exception_ptr e) const { fn_(std::move(e)); }

private:
    std::function<void(std::exception_ptr)> fn_;
};

COURIER_END_NAMESPACE
