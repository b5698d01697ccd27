// Job life-cycle events, published on the runtime's bus under courier's own domain
// (courier.job.enqueued.v1, .started, .progressed, .completed, .failed, .expired, .cancelled),
// so a UI or a log can stream them: subscribe to "courier.job.#". Every event carries the same
// fields: job id, queue, type, state, attempt, progress, message and error.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/uuid.hpp>
#include <courier/event/event_name.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

COURIER_BEGIN_NAMESPACE

/// The fields every job event carries.
struct job_event {
    uuid job_id;
    std::string queue;
    std::string type;          ///< the job type (T::job_type, or the C++ type's name)
    std::string state;         ///< the state after the change (see job_state)
    std::uint32_t attempt = 0;  ///< the attempt concerned (0 before the first)
    std::uint32_t max_attempts = 0;
    int progress = 0;          ///< last reported percentage
    std::string message;       ///< last progress message
    std::string error;         ///< failed: this attempt's error; cancelled/expired: why
};

namespace detail {
inline void job_event_to_json(nlohmann::json& j, const job_event& e) {
    j = nlohmann::json{{"job_id", e.job_id.to_string()}, {"queue", e.queue},       {"type", e.type},
                       {"state", e.state},                {"attempt", e.attempt},   {"max_attempts", e.max_attempts},
                       {"progress", e.progress},          {"message", e.message},   {"error", e.error}};
}
inline void job_event_from_json(const nlohmann::json& j, job_event& e) {
    e.job_id = uuid::parse(j.at("job_id").get<std::string>()).value();
    j.at("queue").get_to(e.queue);
    j.at("type").get_to(e.type);
    j.at("state").get_to(e.state);
    j.at("attempt").get_to(e.attempt);
    j.at("max_attempts").get_to(e.max_attempts);
    j.at("progress").get_to(e.progress);
    j.at("message").get_to(e.message);
    j.at("error").get_to(e.error);
}
}  // namespace detail

#define COURIER_DETAIL_JOB_EVENT(type_name, literal)                                                       \
    struct type_name : job_event {                                                                        \
        static constexpr event_name event_type{literal};                                                  \
        friend void to_json(nlohmann::json& j, const type_name& e) { detail::job_event_to_json(j, e); }   \
        friend void from_json(const nlohmann::json& j, type_name& e) { detail::job_event_from_json(j, e); } \
    }

/// A job was accepted: state `waiting`, or `delayed` when it has a delay or ETA. Also sent by a redrive.
COURIER_DETAIL_JOB_EVENT(job_enqueued, "courier.job.enqueued.v1");
/// An attempt began (state `active`, `attempt` is its number).
COURIER_DETAIL_JOB_EVENT(job_started, "courier.job.started.v1");
/// The handler reported progress (`progress`, `message`).
COURIER_DETAIL_JOB_EVENT(job_progressed, "courier.job.progressed.v1");
/// The handler returned (state `completed`).
COURIER_DETAIL_JOB_EVENT(job_completed, "courier.job.completed.v1");
/// An attempt failed (threw or timed out; `error`). `state` says what follows: `retrying`,
/// `dead` (in the dead-letter store) or `failed`.
COURIER_DETAIL_JOB_EVENT(job_failed, "courier.job.failed.v1");
/// The TTL passed before the job started (state `expired`).
COURIER_DETAIL_JOB_EVENT(job_expired, "courier.job.expired.v1");
/// The job was cancelled (state `cancelled`; `error` says by whom).
COURIER_DETAIL_JOB_EVENT(job_cancelled, "courier.job.cancelled.v1");

#undef COURIER_DETAIL_JOB_EVENT

COURIER_END_NAMESPACE
