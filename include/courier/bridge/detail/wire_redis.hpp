// The Redis adapter's inbound mapping: one stream entry, as hiredis hands it over, to a
// `wire_message`. A pure function of the reply (no connection, nothing of hiredis called, only its
// `redisReply` struct), so the fuzzer (fuzz/bridge_inbound.fuzz.cpp) runs the code redis.hpp runs
// without a server or the client library.
#pragma once

#include <courier/bridge/transport.hpp>
#include <courier/core/config.hpp>

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE
namespace bridge::detail {

/// The text of a string/status/error reply; empty for anything else (nil, integer, array).
inline std::string_view reply_text(const redisReply* r) noexcept {
    return r && r->str ? std::string_view(r->str, r->len) : std::string_view{};
}

/// Appends `s` as a JSON string. Bytes that are not UTF-8 are copied as they are (the result is
/// then no JSON, and the bridge dead-letters it with the exact bytes).
inline void redis_append_json_string(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"') {
            out += "\\\"";
        } else if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (u < 0x20) {
            out += "\\u00";
            out += hex[u >> 4];
            out += hex[u & 0xF];
        } else {
            out += c;
        }
    }
    out += '"';
}

/// What one entry of an XREADGROUP or XAUTOCLAIM reply is.
enum class redis_entry : std::uint8_t {
    malformed,  ///< not `[id, fields]`: nothing to deliver or ack
    deleted,    ///< `[id, nil]`: trimmed while pending; ack `out.tag.id` so it leaves the PEL
    message,    ///< a delivery, in `out`
};

/// Reads one stream entry `[id, [field, value, ...]]` into `out`: its topic (`topic`, the
/// subscription's stream), entry id (`tag.id`), `deliveries`, and the fields courier writes
/// (`envelope`, `event_type`, `event_id`, `key`; any other field becomes a header). An entry
/// without the `envelope` field (written by another tool) carries all its fields as a JSON object
/// in the entry's order instead, so the bridge dead-letters it with everything it held (it never
/// decodes: an envelope's `version` is a number, and every field value here is a string).
///
/// Complexity: linear in the entry; one allocation per field kept (as the fields are copied).
inline redis_entry redis_read_entry(const redisReply* entry, std::string_view topic, std::uint32_t deliveries,
                                    inbound_message& out) {
    if (entry == nullptr || entry->type != REDIS_REPLY_ARRAY || entry->elements < 2) return redis_entry::malformed;
    auto& m = out.message;
    m.topic.assign(topic);
    out.tag.id.assign(reply_text(entry->element[0]));
    out.delivery_count = deliveries;
    const redisReply* fields = entry->element[1];
    if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY) return redis_entry::deleted;
    bool has_envelope = false;
    for (std::size_t f = 0; f + 1 < fields->elements; f += 2) {
        const auto name = reply_text(fields->element[f]);
        const auto value = reply_text(fields->element[f + 1]);
        if (name == "envelope") {
            m.payload.assign(value);
            has_envelope = true;
        } else if (name == "event_type") {
            m.event_type.assign(value);
        } else if (name == "event_id") {
            m.event_id.assign(value);
        } else if (name == "key") {
            m.key.assign(value);
        } else {
            m.headers.emplace_back(std::string(name), std::string(value));
        }
    }
    if (!has_envelope) {
        // Not courier's: every field as a JSON object, in the entry's order.
        m.payload = "{";
        for (std::size_t f = 0; f + 1 < fields->elements; f += 2) {
            if (m.payload.size() > 1) m.payload += ',';
            redis_append_json_string(m.payload, reply_text(fields->element[f]));
            m.payload += ':';
            redis_append_json_string(m.payload, reply_text(fields->element[f + 1]));
        }
        m.payload += '}';
    }
    return redis_entry::message;
}

}  // namespace bridge::detail
COURIER_END_NAMESPACE
