// The NATS adapter's inbound mapping: a message's subject, data and headers to a `wire_message`.
// A pure function of plain inputs (the headers come through a visitor, so nats.hpp walks cnats's
// own arrays without copying them), which the fuzzer (fuzz/bridge_inbound.fuzz.cpp) runs
// without a server or libnats.
#pragma once

#include <courier/bridge/transport.hpp>
#include <courier/core/config.hpp>

#include <string_view>
#include <utility>

COURIER_BEGIN_NAMESPACE
namespace bridge::detail {

/// A NATS message in courier's wire form. `for_each_header(visit)` calls
/// `visit(std::string_view name, std::string_view value)` once per header value, in order (a
/// header with several values once per value). `courier-event-id`, `courier-event-type` and
/// `courier-key` fill the fields of that name (the last one wins) and are kept as headers too;
/// JetStream's `Nats-Msg-Id` gives the event id while none is set (a later `courier-event-id`
/// still wins), and is not kept.
///
/// Complexity: linear in the headers; the allocations are the copies of subject, data and headers.
template <class ForEachHeader>
inbound_message nats_read_message(std::string_view subject, std::string_view data, ForEachHeader&& for_each_header) {
    inbound_message in;
    auto& m = in.message;
    m.topic.assign(subject);
    m.payload.assign(data);
    std::forward<ForEachHeader>(for_each_header)([&](std::string_view k, std::string_view v) {
        if (k == "Nats-Msg-Id") {
            if (m.event_id.empty()) m.event_id.assign(v);
            return;
        }
        if (k == "courier-event-id") {
            m.event_id.assign(v);
        } else if (k == "courier-event-type") {
            m.event_type.assign(v);
        } else if (k == "courier-key") {
            m.key.assign(v);
        }
        m.headers.emplace_back(k, v);
    });
    return in;
}

}  // namespace bridge::detail
COURIER_END_NAMESPACE
