// Saga life-cycle events, published on the runtime's bus under courier's own domain
// (courier.saga.started.v1, .step_started, .step_completed, .step_failed, .waiting, .signalled,
// .deadline_passed, .cancel_requested, .compensating, .completed, .failed, .compensation_failed,
// .cancelled), one per journal record, each with the saga's correlation id in its metadata:
// subscribe to "courier.saga.#" to follow every saga.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/uuid.hpp>
#include <courier/event/event_name.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

COURIER_BEGIN_NAMESPACE

/// The fields every saga event carries.
struct saga_event {
    uuid saga_id;
    std::string saga;           ///< the definition's versioned name, e.g. "order.fulfilment.v1"
    std::string state;          ///< the saga's state after the change (see saga_state)
    std::string step;           ///< the step concerned, if any
    std::string kind;           ///< "action", "compensation" or "signal", with a step
    std::uint32_t attempt = 0;  ///< the attempt concerned
    std::string error;          ///< failures: the error; cancel: the reason
};

namespace detail {
inline void saga_event_to_json(nlohmann::json& j, const saga_event& e) {
    j = nlohmann::json{{"saga_id", e.saga_id.to_string()}, {"saga", e.saga},       {"state", e.state},
                       {"step", e.step},                   {"kind", e.kind},       {"attempt", e.attempt},
                       {"error", e.error}};
}
inline void saga_event_from_json(const nlohmann::json& j, saga_event& e) {
    e.saga_id = uuid::parse(j.at("saga_id").get<std::string>()).value();
    j.at("saga").get_to(e.saga);
    j.at("state").get_to(e.state);
    j.at("step").get_to(e.step);
    j.at("kind").get_to(e.kind);
    j.at("attempt").get_to(e.attempt);
    j.at("error").get_to(e.error);
}
}  // namespace detail

#define COURIER_DETAIL_SAGA_EVENT(type_name, literal)                                                        \
    struct type_name : saga_event {                                                                         \
        static constexpr event_name event_type{literal};                                                    \
        friend void to_json(nlohmann::json& j, const type_name& e) { detail::saga_event_to_json(j, e); }    \
        friend void from_json(const nlohmann::json& j, type_name& e) { detail::saga_event_from_json(j, e); } \
    }

/// A saga began.
COURIER_DETAIL_SAGA_EVENT(saga_started, "courier.saga.started.v1");
/// An attempt of a step's action or compensation began.
COURIER_DETAIL_SAGA_EVENT(saga_step_started, "courier.saga.step_started.v1");
/// An action or compensation (see `kind`) succeeded.
COURIER_DETAIL_SAGA_EVENT(saga_step_completed, "courier.saga.step_completed.v1");
/// An attempt failed (threw, returned an error or timed out); a retry may follow.
COURIER_DETAIL_SAGA_EVENT(saga_step_failed, "courier.saga.step_failed.v1");
/// The saga waits for a signal (state `waiting`).
COURIER_DETAIL_SAGA_EVENT(saga_waiting, "courier.saga.waiting.v1");
/// A signal arrived (buffered, or ending a wait).
COURIER_DETAIL_SAGA_EVENT(saga_signalled, "courier.saga.signalled.v1");
/// A signal wait reached its deadline (the saga fails or takes the named branch).
COURIER_DETAIL_SAGA_EVENT(saga_deadline_passed, "courier.saga.deadline_passed.v1");
/// cancel() was called (`error` is the reason).
COURIER_DETAIL_SAGA_EVENT(saga_cancel_requested, "courier.saga.cancel_requested.v1");
/// Compensation of the completed steps begins.
COURIER_DETAIL_SAGA_EVENT(saga_compensating, "courier.saga.compensating.v1");
/// Final: every step succeeded.
COURIER_DETAIL_SAGA_EVENT(saga_completed, "courier.saga.completed.v1");
/// Final: a step failed; every completed step was compensated.
COURIER_DETAIL_SAGA_EVENT(saga_failed, "courier.saga.failed.v1");
/// Final: a compensation failed after its retries (also recorded in the bus's dead-letter store).
COURIER_DETAIL_SAGA_EVENT(saga_compensation_failed, "courier.saga.compensation_failed.v1");
/// Final: the saga was cancelled and compensated.
COURIER_DETAIL_SAGA_EVENT(saga_cancelled, "courier.saga.cancelled.v1");

#undef COURIER_DETAIL_SAGA_EVENT

COURIER_END_NAMESPACE
