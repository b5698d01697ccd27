// The knobs of an actor and what it reports: mailbox bound and overflow policy, the fairness
// batch, the supervision strategy (resume, restart, stop, escalate) with its restart budget,
// the stop modes, the counters, and the bus event published for every handler failure.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/event/event_name.hpp>
#include <courier/queue/queue_status.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE

/// What happens to an actor whose handler threw.
enum class supervision_directive : std::uint8_t {
    resume,    ///< keep the state, go on with the next message
    restart,   ///< replace the state with a fresh one (the constructor runs again), go on
    stop,      ///< stop the actor; the messages still queued are undelivered (see actor_options)
    escalate,  ///< let the parent's `child_supervisor` decide (then the grandparent's...)
};

constexpr std::string_view to_string(supervision_directive d) noexcept {
    switch (d) {
    case supervision_directive::resume: return "resume";
    case supervision_directive::restart: return "restart";
    case supervision_directive::stop: return "stop";
    case supervision_directive::escalate: return "escalate";
    }
    return "unknown";
}

/// One handler failure, as a supervision strategy sees it.
struct actor_failure {
    std::string actor;             ///< the failing actor's name
    std::string_view message_type;  ///< the type of the message being handled
    std::string error;             ///< what() of the exception ("unknown exception" otherwise)
    std::exception_ptr exception;  ///< the exception itself
    std::uint64_t failures = 0;    ///< failures of this actor so far, this one included
    std::uint32_t restarts = 0;    ///< restarts of this actor so far
};

/// Decides what to do about a failure. Runs in the failing actor's thread, while no other
/// message of that actor runs; it must not touch any actor's state (it may be a parent's).
using supervision_strategy = std::function<supervision_directive(const actor_failure&)>;

/// A strategy that always answers `d`.
inline supervision_strategy always(supervision_directive d) {
    return [d](const actor_failure&) { return d; };
}

/// How `actor_ref::stop` treats the messages still queued.
enum class stop_mode : std::uint8_t {
    drain,      ///< handle every message already queued, then stop (refuses new ones at once)
    hand_back,  ///< stop after the message being handled; return every other one to the caller
};

class unprocessed_message;

/// Options of one actor. Every field has a safe default.
struct actor_options {
    /// Name in reports, events and stats. Default: the type's name plus a number.
    std::string name;
    /// Messages handled per turn before the actor yields its thread to other work (fairness).
    std::uint32_t batch = 64;
    /// Mailbox bound; 0 means an unbounded lock-free mailbox (on purpose: a fast sender can
    /// grow it without limit).
    std::size_t capacity = 0;
    /// What a tell to a full bounded mailbox does (see actor_ref::tell).
    overflow_policy overflow = overflow_policy::fail;
    /// How long a `tell` under overflow_policy::block waits for room (never on a runtime
    /// thread or a manual runtime: there, block behaves as fail, since waiting could deadlock).
    duration block_timeout = std::chrono::seconds(1);
    /// The strategy for this actor's own failures. Default: restart.
    supervision_strategy supervisor;
    /// The strategy for children that escalate. Empty: escalate further up.
    supervision_strategy child_supervisor;
    /// More than `max_restarts` restarts within `restart_window` (runtime clock) stop the actor.
    std::uint32_t max_restarts = 10;
    duration restart_window = std::chrono::minutes(1);
    /// Receives each message that will never be handled: dropped by the overflow policy, sent
    /// to a stopped actor, or still queued when it stopped after a failure or ctx.stop().
    /// Without it such messages are counted (`actor_stats::undelivered`) and destroyed. An
    /// ask among them has already been answered with an error. Runs in the thread that
    /// found the message (a sender, the actor's, or a stopper); must not block.
    std::function<void(unprocessed_message&&)> on_undelivered;
};

/// A snapshot of an actor's counters.
struct actor_stats {
    std::string name;
    std::uint64_t processed = 0;    ///< handler calls that returned
    std::uint64_t failures = 0;     ///< handler calls that threw
    std::uint64_t restarts = 0;     ///< fresh states made by supervision
    std::uint64_t escalations = 0;  ///< failures decided by an ancestor
    std::uint64_t undelivered = 0;  ///< messages that will never be handled (see on_undelivered)
    std::uint64_t late_replies = 0;  ///< answers to asks that had already timed out
    std::uint64_t ask_timeouts = 0;  ///< asks that timed out
    std::size_t queue_depth = 0;    ///< messages waiting now (approximate)
    bool stopped = false;
};

/// Published on the runtime's bus for every handler failure (after the directive is chosen).
struct actor_failed {
    static constexpr event_name event_type{"courier.actor.failed.v1"};
    std::string actor;
    std::string message_type;
    std::string error;
    std::string directive;  ///< what supervision decided: resume, restart or stop
    std::uint64_t failures = 0;
    std::uint64_t restarts = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(actor_failed, actor, message_type, error, directive, failures, restarts)
};

/// Options of an actor_system.
struct actor_system_options {
    /// Actor turns one executor handler may run back to back: a message to an idle actor sent
    /// from a handler runs that actor next in the same thread, without a round trip through the
    /// executor's queue (the ping-pong fast path), at most this many times before yielding.
    std::uint32_t max_inline_turns = 64;
    /// How long the destructor lets queued messages drain before handing them back.
    duration shutdown_timeout = std::chrono::seconds(5);
    /// Publish `actor_failed` events on the bus.
    bool publish_failures = true;
};

COURIER_END_NAMESPACE
