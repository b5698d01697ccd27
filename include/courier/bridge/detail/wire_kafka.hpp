// The Kafka adapter's inbound mapping: a record's topic, key, value and headers to a
// `wire_message`. A pure function of plain inputs (the headers come through a visitor, so
// kafka.hpp walks librdkafka's header list without copying it), which the fuzzer
// (fuzz/bridge_inbound.fuzz.cpp) runs without a broker or librdkafka.
#pragma once

#include <courier/bridge/detail/canonical_json.hpp>
#include <courier/bridge/transport.hpp>
#include <courier/core/config.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

COURIER_BEGIN_NAMESPACE
namespace bridge::detail {

/// `size` bytes at `data` (librdkafka's key, value and header values may be null: empty).
inline std::string_view kafka_bytes(const void* data, std::size_t size) noexcept {
    return data != nullptr ? std::string_view(static_cast<const char*>(data), size) : std::string_view();
}

/// The event type and id a record's value starts with when it is an envelope as courier writes
/// it: `{"event_type":"<type>","event_id":"<id>"`, both plain JSON strings (no escape, valid
/// UTF-8). False for any other value (which may still be an envelope: decode() tells).
inline bool kafka_envelope_ids(std::string_view value, std::string_view& type, std::string_view& id) noexcept {
    constexpr std::string_view open = "{\"event_type\":", next = ",\"event_id\":";
    if (value.substr(0, open.size()) != open) return false;
    std::size_t i = open.size();
    if (!read_plain_json_string(value, i, type) || value.substr(i, next.size()) != next) return false;
    i += next.size();
    return read_plain_json_string(value, i, id);
}

/// A Kafka record in courier's wire form, written over `in` (its strings keep their capacity,
/// so a transport that reads every record into one inbound_message allocates only for what
/// outgrows it). `for_each_header(visit)` calls `visit(std::string_view name, std::string_view
/// value)` once per header, in order. Every header is kept; `courier-event-id` and
/// `courier-event-type` fill the fields of that name (the last one wins), and `courier-key`
/// gives the key only when the record has none of its own (the first non-empty one). The tag
/// and the delivery count are reset (the caller sets them).
///
/// Except for courier's own records: a value that starts as courier writes an envelope
/// (`{"event_type":"...","event_id":"..."`, plain strings: see kafka_envelope_ids) says itself
/// what those headers repeat, so the headers are not read at all (`for_each_header` is not
/// called, `headers` is empty, the key is the record's), and event_type and event_id come from
/// the value. librdkafka parses a record's headers when first asked, and that parse cost about
/// a tenth of a bridge's ingest.
///
/// Complexity: linear in the headers.
template <class ForEachHeader>
void kafka_read_record_into(inbound_message& in, std::string_view topic, std::string_view key, std::string_view value,
                            ForEachHeader&& for_each_header) {
    auto& m = in.message;
    m.topic.assign(topic);
    m.key.assign(key);
    m.payload.assign(value);
    in.tag.id.clear();
    in.tag.number = 0;
    in.tag.partition = -1;
    in.delivery_count = 1;
    std::string_view type, id;
    if (kafka_envelope_ids(value, type, id)) {
        m.event_type.assign(type);
        m.event_id.assign(id);
        m.headers.clear();
        return;
    }
    m.event_id.clear();
    m.event_type.clear();
    std::size_t headers = 0;
    std::forward<ForEachHeader>(for_each_header)([&](std::string_view k, std::string_view v) {
        if (k == "courier-event-id") m.event_id.assign(v);
        else if (k == "courier-event-type") m.event_type.assign(v);
        else if (k == "courier-key" && m.key.empty()) m.key.assign(v);
        if (headers == m.headers.size()) m.headers.emplace_back();
        m.headers[headers].first.assign(k);
        m.headers[headers].second.assign(v);
        ++headers;
    });
    m.headers.resize(headers);
}

/// A Kafka record in courier's wire form, in a new inbound_message (see kafka_read_record_into).
template <class ForEachHeader>
inbound_message kafka_read_record(std::string_view topic, std::string_view key, std::string_view value,
                                  ForEachHeader&& for_each_header) {
    inbound_message in;
    kafka_read_record_into(in, topic, key, value, std::forward<ForEachHeader>(for_each_header));
    return in;
}

}  // namespace bridge::detail
COURIER_END_NAMESPACE
