// The AMQP adapter's inbound mapping: a delivery's properties (header table, message-id, type)
// and body to a `wire_message`. A pure function of rabbitmq-c's plain structs (nothing of the
// library is called), which the fuzzer (fuzz/bridge_inbound.fuzz.cpp) builds by hand and runs
// without a broker or the library.
#pragma once

#include <courier/bridge/transport.hpp>
#include <courier/core/config.hpp>

// Debian's librabbitmq-dev 0.11 installs its headers at the top level (<amqp.h>); 0.12+ moved
// them to <rabbitmq-c/amqp.h>.
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#else
#include <amqp.h>
#endif

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

COURIER_BEGIN_NAMESPACE
namespace bridge::detail {

inline std::string amqp_text(amqp_bytes_t b) {
    return b.bytes == nullptr ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

/// A field value as text (header values courier did not write itself may be numbers, booleans...).
inline std::string amqp_field_text(const amqp_field_value_t& v) {
    switch (v.kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES: return amqp_text(v.value.bytes);
    case AMQP_FIELD_KIND_BOOLEAN: return v.value.boolean ? "true" : "false";
    case AMQP_FIELD_KIND_I8: return std::to_string(v.value.i8);
    case AMQP_FIELD_KIND_U8: return std::to_string(v.value.u8);
    case AMQP_FIELD_KIND_I16: return std::to_string(v.value.i16);
    case AMQP_FIELD_KIND_U16: return std::to_string(v.value.u16);
    case AMQP_FIELD_KIND_I32: return std::to_string(v.value.i32);
    case AMQP_FIELD_KIND_U32: return std::to_string(v.value.u32);
    case AMQP_FIELD_KIND_I64: return std::to_string(v.value.i64);
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP: return std::to_string(v.value.u64);
    case AMQP_FIELD_KIND_F32: return std::to_string(v.value.f32);
    case AMQP_FIELD_KIND_F64: return std::to_string(v.value.f64);
    case AMQP_FIELD_KIND_VOID: return {};
    case AMQP_FIELD_KIND_DECIMAL:
    case AMQP_FIELD_KIND_ARRAY:
    case AMQP_FIELD_KIND_TABLE: return "(structured)";  // x-death and friends: not envelope metadata
    }
    return {};
}

/// Integer value of a numeric field (x-delivery-count), or -1 for any other kind. A u64 above
/// INT64_MAX reads as INT64_MAX.
inline std::int64_t amqp_field_int(const amqp_field_value_t& v) noexcept {
    switch (v.kind) {
    case AMQP_FIELD_KIND_I8: return v.value.i8;
    case AMQP_FIELD_KIND_U8: return v.value.u8;
    case AMQP_FIELD_KIND_I16: return v.value.i16;
    case AMQP_FIELD_KIND_U16: return v.value.u16;
    case AMQP_FIELD_KIND_I32: return v.value.i32;
    case AMQP_FIELD_KIND_U32: return v.value.u32;
    case AMQP_FIELD_KIND_I64: return v.value.i64;
    case AMQP_FIELD_KIND_U64:
        return static_cast<std::int64_t>(std::min<std::uint64_t>(v.value.u64, std::numeric_limits<std::int64_t>::max()));
    default: return -1;
    }
}

/// The delivery count an `x-delivery-count` of `n` (earlier deliveries, as quorum queues count
/// them) means: n + 1, saturating at UINT32_MAX, and never below `flagged` (what the redelivered
/// flag said). Any client can set the header, so it is hostile input: INT64_MAX made `n + 1`
/// overflow, counts of 2^32 - 1 and more wrapped (to 0 and up: found by
/// fuzz/bridge_inbound.fuzz.cpp), and a 0 on a redelivered message hid the redelivery.
inline std::uint32_t amqp_delivery_count(std::int64_t n, std::uint32_t flagged) noexcept {
    constexpr auto most = static_cast<std::int64_t>(std::numeric_limits<std::uint32_t>::max());
    const auto count = static_cast<std::uint32_t>(n >= most ? most : n + 1);
    return std::max(count, flagged);
}

/// Fills `in` from a delivery's properties and body: the payload, every header but
/// `x-delivery-count` and `x-death` (values as text, see amqp_field_text), the event id, type and
/// key from the `courier-*` headers (the last one wins), else id and type from the standard
/// message-id and type properties (another AMQP client may set only those), and the delivery
/// count from `x-delivery-count` (see amqp_delivery_count; `in.delivery_count` holds what the
/// redelivered flag said). `in.message.topic` and `in.tag` are the caller's.
///
/// Complexity: linear in the headers; the allocations are the copies of the body and headers.
inline void amqp_read_delivery(const amqp_basic_properties_t& p, amqp_bytes_t body, inbound_message& in) {
    auto& m = in.message;
    m.payload = amqp_text(body);
    if ((p._flags & AMQP_BASIC_HEADERS_FLAG) != 0 && p.headers.entries != nullptr) {
        for (int i = 0; i < p.headers.num_entries; ++i) {
            const amqp_table_entry_t& e = p.headers.entries[i];
            std::string key = amqp_text(e.key);
            if (key == "x-delivery-count") {  // quorum queues count deliveries themselves
                if (auto n = amqp_field_int(e.value); n >= 0) in.delivery_count = amqp_delivery_count(n, in.delivery_count);
                continue;
            }
            if (key == "x-death") continue;  // the broker's dead-lettering history: a nested table
            std::string value = amqp_field_text(e.value);
            if (key == "courier-event-id") m.event_id = value;
            else if (key == "courier-event-type") m.event_type = value;
            else if (key == "courier-key") m.key = value;
            m.headers.emplace_back(std::move(key), std::move(value));
        }
    }
    if (m.event_id.empty() && (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) m.event_id = amqp_text(p.message_id);
    if (m.event_type.empty() && (p._flags & AMQP_BASIC_TYPE_FLAG) != 0) m.event_type = amqp_text(p.type);
}

}  // namespace bridge::detail
COURIER_END_NAMESPACE
