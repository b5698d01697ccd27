// Envelope <-> wire_message for the bridge, and the dead-letter records a bridge writes:
// outbound messages it could not send, inbound bytes it could not decode (kept exactly, as
// base64, with the text too when it is UTF-8).
#pragma once

#include <courier/bridge/detail/canonical_json.hpp>
#include <courier/bridge/detail/utf8.hpp>
#include <courier/bridge/transport.hpp>
#include <courier/bus/dead_letter_store.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/uuid.hpp>
#include <courier/event/detail/json_text.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/event/event_name.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge::detail {

inline constexpr std::string_view header_event_id = "courier-event-id";
inline constexpr std::string_view header_event_type = "courier-event-type";
inline constexpr std::string_view header_key = "courier-key";
/// The event type of the envelope a bridge dead-letters undecodable input under.
inline constexpr std::string_view undecodable_event_type = "courier.bridge.undecodable.v1";

inline std::string base64(std::string_view in) {
    static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const std::uint32_t v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                                static_cast<unsigned char>(in[i + 2]);
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += table[(v >> 6) & 63];
        out += table[v & 63];
    }
    if (i < in.size()) {
        std::uint32_t v = static_cast<unsigned char>(in[i]) << 16;
        if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += i + 1 < in.size() ? table[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

/// The wire form of an envelope: JSON payload plus id/type/key headers.
inline wire_message to_wire(const envelope& e, std::string topic) {
    wire_message w;
    w.topic = std::move(topic);
    if (auto k = e.headers.find(std::string(header_key)); k != e.headers.end()) w.key = k->second;
    w.event_id = e.event_id.to_string();
    w.event_type = e.event_type;
    w.payload = encode(e);
    w.headers.emplace_back(header_event_id, w.event_id);
    w.headers.emplace_back(header_event_type, w.event_type);
    if (!w.key.empty()) w.headers.emplace_back(header_key, w.key);
    return w;
}

/// Reads the envelope layout `encode` writes (fields in its order, no white space, strings
/// without escapes) straight into an envelope: only `data` goes through the JSON parser, so an
/// envelope costs one small parse instead of a document tree. Anything else - another field
/// order, escapes, a value decode would refuse - returns nullopt, and the caller decodes it
/// with `decode`, which gives the same envelope or the precise error.
class canonical_reader {
public:
    static std::optional<envelope> read(std::string_view text, const decode_limits& limits) {
        std::optional<envelope> e(std::in_place);
        if (!read_into(text, limits, *e)) return std::nullopt;
        return e;
    }
    /// As read, into `e` (a default envelope): the caller's object, so an ingested envelope is
    /// not moved on its way to the bus. False: `e` holds a partial decode (discard it).
    /// With `data_text`, data of the canonical form is checked, not parsed: `data_text` views
    /// it in `text` and `e.data` stays null (the bus parses it if a reader needs a document; a
    /// typed subscriber reads the text). Data of another form is parsed, and `data_text` is empty.
    static bool read_into(std::string_view text, const decode_limits& limits, envelope& e, std::string_view* data_text = nullptr) {
        // Limits as decode has them: the envelope is depth 1, metadata and headers depth 2, and
        // `data` is measured as it is delimited (decode's own scan reports the error).
        if (text.size() > limits.max_bytes || limits.max_depth < 2) return false;
        canonical_reader r(text);
        std::string_view v;
        if (!r.lit("{\"event_type\":") || !r.str(v)) return false;
        auto name = event_name::parse(v);
        if (!name) return false;
        e.event_type.assign(v);
        if (!r.lit(",\"event_id\":") || !r.str(v)) return false;
        if (!uuid::parse_quietly(v, e.event_id) || e.event_id.is_nil()) return false;
        if (!r.lit(",\"timestamp\":") || !r.str(v)) return false;
        auto ts = parse_rfc3339(v);
        if (!ts) return false;
        e.timestamp = *ts;
        std::int64_t version = 0;
        if (!r.lit(",\"version\":") || !r.integer(version) || version != name->version()) return false;
        e.version = name->version();
        std::size_t data_depth = 0;
        if (!r.lit(",\"data\":")) return false;
        if (data_text) *data_text = {};
        if (data_text ? r.checked_value(*data_text, data_depth) : r.json_value(e.data, data_depth)) {
            if (1 + data_depth > limits.max_depth) return false;
        } else {
            // Another form (a fraction, an escape, white space): delimit it, then the library parses it.
            if (!r.value(v, data_depth) || 1 + data_depth > limits.max_depth) return false;
            try {
                e.data = nlohmann::json::parse(v.begin(), v.end());
            } catch (const nlohmann::json::exception&) {
                return false;
            }
        }
        if (!r.lit(",\"metadata\":{\"producer\":") || !r.str(v)) return false;
        e.metadata.producer.assign(v);
        if (!r.lit(",\"trace_id\":") || !r.str(v)) return false;
        e.metadata.trace_id.assign(v);
        if (!r.lit(",\"correlation_id\":") || !r.str(v)) return false;
        e.metadata.correlation_id.assign(v);
        if (!r.lit(",\"causation_id\":") || !r.str(v)) return false;
        e.metadata.causation_id.assign(v);
        if (!r.lit("},\"headers\":{")) return false;
        if (!r.lit("}")) {
            for (;;) {
                std::string_view k;
                if (!r.str(k) || !r.lit(":") || !r.str(v)) return false;
                if (e.headers.size() == limits.max_headers) return false;
                if (!e.headers.emplace(std::string(k), std::string(v)).second) return false;  // a repeated name
                if (r.lit("}")) break;
                if (!r.lit(",")) return false;
            }
        }
        if (!r.lit("}") || !r.at_end()) return false;
        return true;
    }

private:
    explicit canonical_reader(std::string_view t) noexcept : t_(t) {}

    bool at_end() const noexcept { return i_ == t_.size(); }
    // A literal of known length: the comparison is a few inlined loads, not a memcmp call.
    template <std::size_t N>
    bool lit(const char (&l)[N]) noexcept {
        constexpr std::size_t n = N - 1;
        if (t_.size() - i_ < n || std::memcmp(t_.data() + i_, l, n) != 0) return false;
        i_ += n;
        return true;
    }
    bool str(std::string_view& out) noexcept { return read_plain_json_string(t_, i_, out); }
    // The value at i_ in canonical_json's form, read and measured in one pass.
    bool json_value(nlohmann::json& out, std::size_t& depth) { return canonical_json::parse_prefix(t_, i_, out, depth); }
    // As json_value, viewing the value's text instead of building its document.
    bool checked_value(std::string_view& text, std::size_t& depth) {
        const std::size_t start = i_;
        if (!canonical_json::check_prefix(t_, i_, depth)) return false;
        text = t_.substr(start, i_ - start);
        return true;
    }
    bool integer(std::int64_t& out) noexcept {
        bool negative = false;
        if (i_ < t_.size() && t_[i_] == '-') {
            negative = true;
            ++i_;
        }
        const std::size_t start = i_;
        std::int64_t v = 0;
        while (i_ < t_.size() && t_[i_] >= '0' && t_[i_] <= '9' && i_ - start < 9) v = v * 10 + (t_[i_++] - '0');
        if (i_ == start || (t_[start] == '0' && i_ - start > 1)) return false;
        if (i_ < t_.size() && (t_[i_] == '.' || t_[i_] == 'e' || t_[i_] == 'E' || (t_[i_] >= '0' && t_[i_] <= '9'))) return false;
        out = negative ? -v : v;
        return true;
    }
    // The extent of one JSON value (not validated here: the parser does that), up to the ',' or
    // '}' that ends it at depth 0.
    bool value(std::string_view& out, std::size_t& max_depth) noexcept {
        const std::size_t start = i_;
        std::size_t depth = 0;
        max_depth = 0;
        bool in_string = false;
        for (; i_ < t_.size(); ++i_) {
            const char c = t_[i_];
            if (in_string) {
                if (c == '\\') ++i_;
                else if (c == '"') in_string = false;
                continue;
            }
            if (c == '"') {
                in_string = true;
            } else if (c == '{' || c == '[') {
                if (++depth > max_depth) max_depth = depth;
            } else if (c == '}' || c == ']') {
                if (depth == 0) break;
                --depth;
            } else if (c == ',' && depth == 0) {
                break;
            }
        }
        if (i_ >= t_.size() || i_ == start || depth != 0) return false;
        out = t_.substr(start, i_ - start);
        return true;
    }

    std::string_view t_;
    std::size_t i_ = 0;
};

/// The envelope in `bytes`: the canonical layout read directly, anything else through `decode`.
/// `data_text`: as canonical_reader::read_into, a view into `bytes` (empty when `decode` read it).
inline result<envelope> decode_envelope(std::string_view bytes, const decode_limits& limits, std::string_view* data_text = nullptr) {
    // One object, returned by name: the envelope is decoded where the caller receives it.
    result<envelope> e = envelope{};
    if (!canonical_reader::read_into(bytes, limits, *e, data_text)) {
        if (data_text) *data_text = {};
        e = decode(bytes, limits);
    }
    return e;
}

/// The data document of an envelope whose data `decode_envelope` kept as text (the bus calls
/// it when a reader needs the document).
inline nlohmann::json parse_data_text(std::string_view text) {
    nlohmann::json data;
    if (canonical_json::parse(text, data)) return data;
    return nlohmann::json::parse(text);  // not reached for a text the reader checked
}

/// The envelope inside a wire message (the key from the wire when the payload lacks it).
/// `data_text`: as decode_envelope (a view into `w.payload`).
inline result<envelope> from_wire(const wire_message& w, const decode_limits& limits, std::string_view* data_text = nullptr) {
    auto e = decode_envelope(w.payload, limits, data_text);
    if (!e) return e;
    // The key becomes an envelope header, and headers are JSON strings (found by
    // fuzz/bridge_inbound.fuzz.cpp: a raw broker key that is not UTF-8 made encode() throw later).
    // (Every path returns `e` itself, so the envelope is not moved on the way out.)
    if (!w.key.empty() && !valid_utf8(w.key))
        e = unexpected(errc::malformed_envelope, "[courier.envelope.bad_key] the message key is not valid UTF-8");
    else if (!w.key.empty() && !e->headers.count(std::string(header_key))) e->headers[std::string(header_key)] = w.key;
    return e;
}

/// A dead-letter record for bytes that could not become an envelope (or a bus event).
inline dead_letter undecodable_record(const inbound_message& m, std::string_view broker, std::string subscription,
                                      std::string reason, time_point now) {
    envelope raw;
    raw.event_type = std::string(undecodable_event_type);
    raw.event_id = make_uuid_v7(now);
    raw.timestamp = truncate_to_wire_precision(now);
    raw.version = 1;
    nlohmann::json data = nlohmann::json::object();
    data["broker"] = std::string(broker);
    data["topic"] = valid_utf8(m.message.topic) ? m.message.topic : base64(m.message.topic);
    data["key"] = valid_utf8(m.message.key) ? m.message.key : base64(m.message.key);
    data["event_id"] = valid_utf8(m.message.event_id) ? m.message.event_id : base64(m.message.event_id);
    data["event_type"] = valid_utf8(m.message.event_type) ? m.message.event_type : base64(m.message.event_type);
    data["delivery_id"] = valid_utf8(m.tag.id) ? m.tag.id : base64(m.tag.id);
    data["delivery_count"] = m.delivery_count;
    data["raw_base64"] = base64(m.message.payload);  // the exact bytes
    if (valid_utf8(m.message.payload)) data["raw"] = m.message.payload;
    data["reason"] = valid_utf8(reason) ? reason : base64(reason);
    raw.data = std::move(data);
    raw.metadata.producer = "courier.bridge";
    dead_letter d;
    d.message = std::move(raw);
    d.subscription = std::move(subscription);
    d.reason = dead_letter_reason::undecodable;
    d.attempts = 1;
    d.first_failure = d.last_failure = now;
    d.errors.push_back(attempt_error{1, now, std::move(reason)});
    return d;
}

/// A dead-letter record for an outbound message the bridge could not send.
inline dead_letter outbound_record(const wire_message& w, dead_letter_reason why, std::string subscription,
                                   std::string reason, time_point now) {
    dead_letter d;
    if (auto e = decode(w.payload, decode_limits{.max_bytes = w.payload.size() + 1, .max_depth = 1024, .max_headers = 4096})) {
        d.message = std::move(*e);
    } else {
        inbound_message as_in;
        as_in.message = w;
        d = undecodable_record(as_in, "outbox", subscription, reason, now);
    }
    d.subscription = std::move(subscription);
    d.reason = why;
    d.attempts = 0;
    d.first_failure = d.last_failure = now;
    d.errors.clear();
    d.errors.push_back(attempt_error{0, now, std::move(reason)});
    return d;
}

}  // namespace bridge::detail
COURIER_END_NAMESPACE
