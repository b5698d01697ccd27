// The envelope: an event as it crosses a boundary (a bridge, a dead-letter record, a
// wildcard subscriber that asked for envelopes, a log line). It carries the familiar event
// schema: event_type, event_id (UUID v7), timestamp, version, data, metadata, headers.
// In-process typed events travel as C++ objects; an envelope is built only when needed.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/core/uuid.hpp>
#include <courier/event/event_name.hpp>
#include <courier/event/event_traits.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <string>
#include <utility>

COURIER_BEGIN_NAMESPACE

/// Who produced an event and which causal chain it belongs to.
///
/// A handler runs with its message's metadata as the current context, so whatever it
/// publishes inherits `trace_id` and `correlation_id` and names the handled event's id as
/// its `causation_id` (see `caused_by`). Empty strings mean "not set".
struct event_metadata {
    std::string producer;        ///< the service or component that published the event
    std::string trace_id;        ///< distributed-tracing id (e.g. a W3C trace id)
    std::string correlation_id;  ///< id shared by every event of one business transaction
    std::string causation_id;    ///< event_id of the event whose handling caused this one

    /// The metadata for an event published while handling `cause`: same trace and
    /// correlation (the correlation defaults to the cause's id when it had none), causation
    /// = the cause's event_id, producer = `producer`.
    static event_metadata caused_by(const event_metadata& cause_metadata, const uuid& cause_id,
                                    std::string producer) {
        event_metadata m;
        m.producer = std::move(producer);
        m.trace_id = cause_metadata.trace_id;
        m.correlation_id = cause_metadata.correlation_id.empty() ? cause_id.to_string() : cause_metadata.correlation_id;
        m.causation_id = cause_id.to_string();
        return m;
    }

    friend bool operator==(const event_metadata&, const event_metadata&) = default;
};

/// An event with its identity and context, ready to be encoded (see envelope_codec.hpp and
/// cloudevents.hpp).
///
/// Invariants that `decode` enforces and producers should keep: `event_type` is a valid
/// event name, `version` equals its vN, `event_id` is not nil. `timestamp` travels with
/// microsecond precision; `make_envelope` truncates it so that what you build equals what
/// a peer decodes.
///
/// Thread safety: a value type; distinct objects may be used concurrently, one object may
/// be read concurrently.
struct envelope {
    std::string event_type;                      ///< "order.created.v1"
    uuid event_id;                               ///< UUID v7, unique per event
    time_point timestamp;                        ///< when the event happened (UTC)
    int version = 0;                             ///< the vN of event_type
    nlohmann::json data;                         ///< the event's payload
    event_metadata metadata;                     ///< producer, trace, correlation, causation
    std::map<std::string, std::string> headers;  ///< free string headers (e.g. traceparent)

    /// The parsed event_type; views this envelope's string.
    ///
    /// Errors: errc::invalid_name when event_type is malformed.
    result<event_name> name() const { return event_name::parse(event_type); }

    friend bool operator==(const envelope&, const envelope&) = default;
};

/// `t` rounded down to the microsecond: the precision timestamps keep on the wire.
inline time_point truncate_to_wire_precision(time_point t) noexcept {
    return std::chrono::floor<std::chrono::microseconds>(t);
}

/// An envelope for a typed event: a fresh UUID v7 id from `now`, timestamp `now` (truncated to
/// microseconds), type and version from the event's name, data from its to_json.
///
/// Errors: throws what T's to_json throws.
template <typed_event T>
envelope make_envelope(const T& event, time_point now, event_metadata metadata = {}) {
    constexpr event_name name = event_type_of<T>();
    envelope e;
    e.event_type = std::string(name.str());
    e.event_id = make_uuid_v7(now);
    e.timestamp = truncate_to_wire_precision(now);
    e.version = name.version();
    e.data = to_data(event);
    e.metadata = std::move(metadata);
    return e;
}

/// The typed event inside `e`.
///
/// Errors: errc::unknown_event ("[courier.event.type_mismatch]") when `e` holds another event
/// type, errc::version_mismatch ("[courier.event.version_mismatch]") when it holds another
/// version of T's event (upcast it first, see upcaster.hpp), errc::malformed_envelope
/// ("[courier.event.bad_data]") when the data does not convert.
template <typed_event T>
result<T> data_as(const envelope& e) {
    constexpr event_name name = event_type_of<T>();
    if (e.event_type != name.str()) {
        const auto other = event_name::parse(e.event_type);
        if (other && other->base() == name.base()) {
            return unexpected(errc::version_mismatch,
                              "[courier.event.version_mismatch] the envelope holds " + e.event_type + ", not " +
                                  std::string(name.str()) + " (register an upcaster to convert it)");
        }
        return unexpected(errc::unknown_event, "[courier.event.type_mismatch] the envelope holds " +
                                                   detail::quote_for_message(e.event_type) + ", not " +
                                                   std::string(name.str()));
    }
    return from_data<T>(e.data);
}

COURIER_END_NAMESPACE
