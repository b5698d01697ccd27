// The vocabulary of a saga's life: its state (running, waiting for a signal, compensating, and
// the four ends), and the kind of a step attempt (the action, or its compensation).
#pragma once

#include <courier/core/config.hpp>

#include <cstdint>
#include <string_view>

COURIER_BEGIN_NAMESPACE

/// Where a saga is. `completed`, `failed`, `compensation_failed` and `cancelled` are final.
enum class saga_state : std::uint8_t {
    running,              ///< executing steps forward
    waiting,              ///< blocked on a signal, with a deadline
    compensating,         ///< a step failed or the saga was cancelled: undoing completed steps
    completed,            ///< every step succeeded
    failed,               ///< a step failed and every completed step was compensated
    compensation_failed,  ///< a compensation failed after its retries; needs an operator
    cancelled,            ///< cancelled, and every completed step was compensated
};

/// True for the four final states.
constexpr bool is_final(saga_state s) noexcept { return s >= saga_state::completed; }

constexpr std::string_view to_string(saga_state s) noexcept {
    switch (s) {
    case saga_state::running: return "running";
    case saga_state::waiting: return "waiting";
    case saga_state::compensating: return "compensating";
    case saga_state::completed: return "completed";
    case saga_state::failed: return "failed";
    case saga_state::compensation_failed: return "compensation_failed";
    case saga_state::cancelled: return "cancelled";
    }
    return "unknown";
}

/// What a step attempt runs. Part of the idempotency key.
enum class attempt_kind : std::uint8_t {
    action,        ///< the step's action
    compensation,  ///< the step's compensation
    signal,        ///< a signal wait (no user code runs, except the optional payload handler)
};

constexpr std::string_view to_string(attempt_kind k) noexcept {
    switch (k) {
    case attempt_kind::action: return "action";
    case attempt_kind::compensation: return "compensation";
    case attempt_kind::signal: return "signal";
    }
    return "unknown";
}

COURIER_END_NAMESPACE
