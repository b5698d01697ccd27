// What a bridge route needs from its broker, and the check that refuses a route the broker
// cannot carry: at configuration, with an error that names the capability, instead of a topic
// that misbehaves at run time. Also maps courier's `*`/`#` patterns to a broker's own dialect.
#pragma once

#include <courier/bridge/transport.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>

#include <cstddef>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE
namespace bridge {

/// Options of one outbound route (`broker_bridge::forward`).
struct forward_options {
    /// Broker destination: stream key, subject, topic or exchange routing key. Empty: the
    /// transport's default topic (Redis: the URL's `stream`), else the event type of each message.
    std::string topic;
    /// The route relies on per-key order across the hop (the bus's keyed promise). Refused on a
    /// broker that does not keep it.
    bool per_key_order = true;
    /// The route relies on delayed delivery / priorities at the broker.
    bool delayed_delivery = false;
    bool priorities = false;
    /// Largest envelope the route will send, in bytes (0: not declared). Refused when above the
    /// broker's limit; a larger message at run time is dead-lettered either way.
    std::size_t max_message_bytes = 0;
};

/// Options of one inbound route (`broker_bridge::ingest`).
struct ingest_options {
    /// The route relies on per-key order from the broker.
    bool per_key_order = true;
    /// The route relies on the broker dropping repeated message ids (the bridge deduplicates by
    /// event_id anyway; ask for this only if something else reads the broker).
    bool native_dedup = false;
};

namespace detail {
inline unexpected refuse(const capabilities& caps, std::string_view what, std::string text) {
    return unexpected(errc::invalid_argument, "[courier.bridge.capability." + std::string(what) + "] " + text +
                                                  " (broker '" + caps.broker + "')");
}
inline bool has_wildcard(std::string_view topic) noexcept {
    return topic.find_first_of("*#>") != std::string_view::npos;
}
}  // namespace detail

/// `topic` (courier's dialect: `*` one segment, `#` zero or more) in the broker's dialect.
/// Errors: "[courier.bridge.capability.wildcards]" when the broker has no wildcards, or its
/// dialect cannot say this pattern (NATS has no `#` but a trailing one, which becomes `>`).
inline result<std::string> map_topic(const capabilities& caps, std::string_view topic) {
    if (!detail::has_wildcard(topic)) return std::string(topic);
    switch (caps.wildcards) {
    case wildcard_dialect::none:
        return detail::refuse(caps, "wildcards", "topic '" + std::string(topic) +
                                                     "' is a pattern, and this broker subscribes to exact names only");
    case wildcard_dialect::courier: return std::string(topic);
    case wildcard_dialect::nats: {
        std::string out;
        std::size_t start = 0;
        while (start <= topic.size()) {
            auto dot = topic.find('.', start);
            const bool last = dot == std::string_view::npos;
            std::string_view seg = topic.substr(start, last ? std::string_view::npos : dot - start);
            if (seg == "#") {
                // Event names have at least three segments, so `a.#` (zero or more) and NATS's
                // `a.>` (one or more) select the same events; only a trailing `#` maps.
                if (!last)
                    return detail::refuse(caps, "wildcards", "topic '" + std::string(topic) +
                                                                 "': NATS has no '#' inside a subject, only a trailing '>'");
                if (out.empty())
                    return detail::refuse(caps, "wildcards", "topic '" + std::string(topic) +
                                                                 "': '#' alone means every subject; write '>' for NATS");
                seg = ">";
            }
            if (!out.empty()) out += '.';
            out += seg;
            if (last) break;
            start = dot + 1;
        }
        return out;
    }
    }
    return std::string(topic);
}

/// Refuses an outbound route the broker cannot carry.
/// Errors (errc::invalid_argument): "[courier.bridge.capability.per_key_order]",
/// "[courier.bridge.capability.delayed_delivery]", "[courier.bridge.capability.priorities]",
/// "[courier.bridge.capability.max_message_bytes]", "[courier.bridge.capability.topic]" (the
/// destination is a pattern: a message goes to one place).
inline result<void> check_forward(const capabilities& caps, std::string_view pattern, const forward_options& o) {
    const std::string route = "forward('" + std::string(pattern) + "')";
    if (detail::has_wildcard(o.topic))
        return detail::refuse(caps, "topic", route + ": destination '" + o.topic + "' is a pattern, not a topic");
    if (o.per_key_order && !caps.per_key_order)
        return detail::refuse(caps, "per_key_order", route + " needs per-key order, which the broker does not keep "
                                                             "(set per_key_order = false to accept that)");
    if (o.delayed_delivery && !caps.delayed_delivery)
        return detail::refuse(caps, "delayed_delivery", route + " needs delayed delivery, which the broker lacks");
    if (o.priorities && !caps.priorities)
        return detail::refuse(caps, "priorities", route + " needs priorities, which the broker lacks");
    if (o.max_message_bytes && caps.max_message_bytes && o.max_message_bytes > caps.max_message_bytes)
        return detail::refuse(caps, "max_message_bytes",
                              route + " sends up to " + std::to_string(o.max_message_bytes) +
                                  " bytes, above the broker's limit of " + std::to_string(caps.max_message_bytes));
    return {};
}

/// Refuses an inbound route the broker cannot carry; returns the topic in the broker's dialect.
/// Errors (errc::invalid_argument): "[courier.bridge.capability.wildcards]" (see map_topic),
/// "[courier.bridge.capability.consumer_groups]", "[courier.bridge.capability.replay]",
/// "[courier.bridge.capability.per_key_order]", "[courier.bridge.capability.native_dedup]",
/// "[courier.bridge.route.empty_topic]".
inline result<std::string> check_ingest(const capabilities& caps, const ingest_spec& spec, const ingest_options& o) {
    const std::string route = "ingest('" + spec.topic + "')";
    if (spec.topic.empty())
        return unexpected(errc::invalid_argument, "[courier.bridge.route.empty_topic] ingest needs a topic");
    if (!spec.group.empty() && !caps.consumer_groups)
        return detail::refuse(caps, "consumer_groups", route + " names group '" + spec.group +
                                                           "', and the broker has no consumer groups");
    if (spec.from_beginning && !caps.replay)
        return detail::refuse(caps, "replay", route + " asks for history, which the broker does not keep");
    if (o.per_key_order && !caps.per_key_order)
        return detail::refuse(caps, "per_key_order", route + " needs per-key order, which the broker does not keep");
    if (o.native_dedup && !caps.native_dedup)
        return detail::refuse(caps, "native_dedup", route + " needs broker-side deduplication, which the broker lacks");
    return map_topic(caps, spec.topic);
}

}  // namespace bridge
COURIER_END_NAMESPACE
