// The envelope's JSON wire format (nlohmann_json), RFC 3339 timestamps, and the limits that
// make decoding untrusted bytes safe. `decode` never throws and never crashes: every
// malformed or hostile input becomes an error whose id says what is wrong
// ("[courier.envelope.missing_field] ...", "[courier.envelope.too_large] ...").
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/core/uuid.hpp>
#include <courier/event/detail/json_text.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/event_name.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

COURIER_BEGIN_NAMESPACE

/// Bounds on what `decode` and `from_cloudevent` accept from untrusted bytes. Each check runs
/// before parsing or right after it, so oversized or hostile input is rejected with
/// errc::limit_exceeded instead of exhausting memory or the stack.
struct decode_limits {
    /// Largest input accepted, in bytes; checked before parsing. Default 1 MiB.
    std::size_t max_bytes = std::size_t{1} << 20;
    /// Deepest nesting of objects and arrays, counted from the outermost value (the envelope
    /// object is depth 1, an object in `data` depth 2). Checked by a linear scan before
    /// parsing, so a nesting bomb is rejected without recursion. Default 64.
    std::size_t max_depth = 64;
    /// Most headers an envelope may carry (for CloudEvents: the extensions that become
    /// headers, packed ones included). Default 64.
    std::size_t max_headers = 64;
};

// ---------------------------------------------------------------------------------------------
// RFC 3339 timestamps
// ---------------------------------------------------------------------------------------------

/// Length of the timestamps courier writes: "2025-01-01T00:00:00.000000Z".
inline constexpr std::size_t rfc3339_size = 27;

/// Writes `t` as RFC 3339 UTC with exactly six fractional digits (rounded down to the
/// microsecond) to `out`, which must have room for `rfc3339_size` characters; returns the
/// end. Does not allocate.
inline char* format_rfc3339_to(char* out, time_point t) noexcept {
    using namespace std::chrono;
    const auto us = floor<microseconds>(t);
    const auto sec = floor<seconds>(us);
    auto put = [](char* at, long long v, int width) {
        for (int i = width - 1; i >= 0; --i) {
            at[i] = static_cast<char>('0' + v % 10);
            v /= 10;
        }
    };
    // The date and the time to the second change once a second, and every message is stamped:
    // their text is kept per thread, and only the microseconds are written each time.
    struct second_text {
        long long second = std::numeric_limits<long long>::min();  // no time_point is this second
        char text[19]{};
    };
    thread_local second_text last;
    if (const long long s = sec.time_since_epoch().count(); s != last.second) {
        const auto day = floor<days>(sec);
        const year_month_day ymd{day};
        const long long tod = (sec - day).count();  // seconds into the day
        char* p = last.text;
        put(p, static_cast<int>(ymd.year()), 4);
        p[4] = '-';
        put(p + 5, static_cast<unsigned>(ymd.month()), 2);
        p[7] = '-';
        put(p + 8, static_cast<unsigned>(ymd.day()), 2);
        p[10] = 'T';
        put(p + 11, tod / 3600, 2);
        p[13] = ':';
        put(p + 14, tod / 60 % 60, 2);
        p[16] = ':';
        put(p + 17, tod % 60, 2);
        last.second = s;
    }
    std::memcpy(out, last.text, 19);
    out[19] = '.';
    put(out + 20, (us - sec).count(), 6);
    out[26] = 'Z';
    return out + rfc3339_size;
}

/// `t` as RFC 3339 UTC with exactly microseconds: "2025-01-01T00:00:00.000000Z".
inline std::string format_rfc3339(time_point t) {
    std::string s(rfc3339_size, '\0');
    format_rfc3339_to(s.data(), t);
    return s;
}

/// Parses an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`.
///
/// Accepts 'T', 't' or ' ' between date and time, 'Z' or 'z', any number of fractional
/// digits (kept to the nanosecond, further digits truncated) and a leap second (":60" is
/// read as the next minute's ":00"). The instant must fit `time_point` (years 1678-2261).
///
/// Errors: errc::invalid_argument, "[courier.event.invalid_timestamp] '<text>': <which part is
/// wrong>".
inline result<time_point> parse_rfc3339(std::string_view s) {
    // courier's own form ("2025-01-01T00:00:00.000000Z") repeats its first 19 characters, the
    // date and time to the second, from message to message: the instant they name is kept per
    // thread, and a text that starts with the same ones reads only its microseconds.
    struct second_seen {
        char text[19]{};
        long long secs = 0;
        bool valid = false;
    };
    thread_local second_seen seen;
    auto own_form = [&] { return s.size() == rfc3339_size && s[10] == 'T' && s[19] == '.' && s[26] == 'Z'; };
    if (seen.valid && own_form() && std::memcmp(s.data(), seen.text, 19) == 0) {
        long long micros = 0;
        bool digits_only = true;
        for (std::size_t k = 20; k < 26; ++k) {
            const char c = s[k];
            digits_only &= c >= '0' && c <= '9';
            micros = micros * 10 + (c - '0');
        }
        if (digits_only)
            return time_point(std::chrono::duration_cast<duration>(std::chrono::seconds(seen.secs) + std::chrono::microseconds(micros)));
    }

    auto fail = [&](const std::string& why) -> result<time_point> {
        return unexpected(errc::invalid_argument, "[courier.event.invalid_timestamp] " +
                                                      detail::quote_for_message(s) + ": " + why +
                                                      " (expected RFC 3339, e.g. '2025-01-01T00:00:00.000000Z')");
    };
    std::size_t i = 0;
    auto digits = [&](std::size_t count, int& out) {
        if (i + count > s.size()) return false;
        int v = 0;
        for (std::size_t k = 0; k < count; ++k) {
            const char c = s[i + k];
            if (c < '0' || c > '9') return false;
            v = v * 10 + (c - '0');
        }
        i += count;
        out = v;
        return true;
    };
    auto literal = [&](char c) {
        if (i < s.size() && s[i] == c) {
            ++i;
            return true;
        }
        return false;
    };
    auto at = [&] { return " at offset " + std::to_string(i); };

    int year = 0, month = 0, mday = 0, hour = 0, minute = 0, second = 0;
    if (!digits(4, year)) return fail("expected a 4-digit year" + at());
    if (!literal('-')) return fail("expected '-'" + at());
    if (!digits(2, month)) return fail("expected a 2-digit month" + at());
    if (!literal('-')) return fail("expected '-'" + at());
    if (!digits(2, mday)) return fail("expected a 2-digit day" + at());
    if (!(literal('T') || literal('t') || literal(' '))) return fail("expected 'T'" + at());
    if (!digits(2, hour)) return fail("expected a 2-digit hour" + at());
    if (!literal(':')) return fail("expected ':'" + at());
    if (!digits(2, minute)) return fail("expected 2-digit minutes" + at());
    if (!literal(':')) return fail("expected ':'" + at());
    if (!digits(2, second)) return fail("expected 2-digit seconds" + at());
    long long nanos = 0;
    if (literal('.')) {
        const std::size_t first = i;
        long long scale = 100'000'000;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
            nanos += (s[i] - '0') * scale;  // digits past the ninth add 0: truncated
            scale /= 10;
            ++i;
        }
        if (i == first) return fail("expected a digit after '.'" + at());
    }
    long long offset_seconds = 0;
    if (literal('Z') || literal('z')) {
    } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
        const int sign = s[i] == '-' ? -1 : 1;
        ++i;
        int oh = 0, om = 0;
        if (!digits(2, oh)) return fail("expected a 2-digit offset hour" + at());
        if (!literal(':')) return fail("expected ':' in the UTC offset" + at());
        if (!digits(2, om)) return fail("expected 2-digit offset minutes" + at());
        if (oh > 23 || om > 59) return fail("UTC offset out of range");
        offset_seconds = sign * (oh * 3600LL + om * 60LL);
    } else {
        return fail("expected 'Z' or a UTC offset like '+02:00'" + at());
    }
    if (i != s.size()) return fail("unexpected characters" + at());

    using namespace std::chrono;
    if (month < 1 || month > 12) return fail("month " + std::to_string(month) + " is out of range");
    const year_month_day ymd{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                             std::chrono::day{static_cast<unsigned>(mday)}};
    if (!ymd.ok()) return fail("day " + std::to_string(mday) + " does not exist in that month");
    if (hour > 23) return fail("hour " + std::to_string(hour) + " is out of range");
    if (minute > 59) return fail("minute " + std::to_string(minute) + " is out of range");
    if (second > 60) return fail("second " + std::to_string(second) + " is out of range");

    const long long secs = sys_days(ymd).time_since_epoch().count() * 86'400LL + hour * 3600LL + minute * 60LL +
                           second - offset_seconds;
    // time_point counts nanoseconds in an int64: keep secs * 1e9 + nanos inside it.
    constexpr long long max_secs = (std::numeric_limits<long long>::max() - 999'999'999LL) / 1'000'000'000LL;
    constexpr long long min_secs = std::numeric_limits<long long>::min() / 1'000'000'000LL + 1;
    if (secs > max_secs || secs < min_secs) return fail("the instant is outside the representable range");
    if (own_form()) {
        std::memcpy(seen.text, s.data(), 19);
        seen.secs = secs;
        seen.valid = true;
    }
    return time_point(duration_cast<duration>(seconds(secs) + nanoseconds(nanos)));
}

// ---------------------------------------------------------------------------------------------
// Envelope <-> JSON
// ---------------------------------------------------------------------------------------------

namespace detail {

/// Appends the envelope's JSON text to `out`, fields in the documented order.
inline void append_envelope_json(std::string& out, const envelope& e) {
    out += "{\"event_type\":";
    append_json_string(out, e.event_type);
    out += ",\"event_id\":\"";
    char buf[uuid::text_size > rfc3339_size ? uuid::text_size : rfc3339_size];
    out.append(buf, static_cast<std::size_t>(e.event_id.to_chars(buf) - buf));
    out += "\",\"timestamp\":\"";
    out.append(buf, static_cast<std::size_t>(format_rfc3339_to(buf, e.timestamp) - buf));
    out += "\",\"version\":";
    out += std::to_string(e.version);
    out += ",\"data\":";
    // `replace`: a string with invalid UTF-8 in the data must not make encode throw.
    out += e.data.is_discarded() ? std::string("null")
                                 : e.data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out += ",\"metadata\":{\"producer\":";
    append_json_string(out, e.metadata.producer);
    out += ",\"trace_id\":";
    append_json_string(out, e.metadata.trace_id);
    out += ",\"correlation_id\":";
    append_json_string(out, e.metadata.correlation_id);
    out += ",\"causation_id\":";
    append_json_string(out, e.metadata.causation_id);
    out += "},\"headers\":{";
    bool first = true;
    for (const auto& [k, v] : e.headers) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, k);
        out += ':';
        append_json_string(out, v);
    }
    out += "}}";
}

/// "string", "object", ..., and "number (not an integer)" for floats, for error messages.
inline std::string json_type_for_message(const nlohmann::json& j) {
    if (j.is_number_float()) return "a non-integer number";
    return std::string(j.type_name());
}

/// `text` with every byte outside printable ASCII written as \xHH, cut to `max_size` bytes of
/// input: parser explanations echo the input ("last read: '...'"), and hostile bytes must not
/// reach a log line raw.
inline std::string printable_for_message(std::string_view text, std::size_t max_size = 240) {
    constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < text.size() && i < max_size; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c < 0x7F && c != '\\') {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xF];
        }
    }
    if (text.size() > max_size) out += "...";
    return out;
}

/// Size and depth checks before parsing, then parsing, with nlohmann's explanation kept.
/// `kind` names the codec in error ids ("envelope", "cloudevent").
inline result<nlohmann::json> parse_json_limited(std::string_view bytes, const decode_limits& limits,
                                                 std::string_view kind) {
    if (bytes.size() > limits.max_bytes) {
        return unexpected(errc::limit_exceeded, codec_id(kind, "too_large") + "input is " +
                                                    std::to_string(bytes.size()) + " bytes, more than max_bytes = " +
                                                    std::to_string(limits.max_bytes));
    }
    if (json_nesting_exceeds(bytes, limits.max_depth)) {
        return unexpected(errc::limit_exceeded, codec_id(kind, "too_deep") +
                                                    "objects and arrays nest deeper than max_depth = " +
                                                    std::to_string(limits.max_depth));
    }
    try {
        return nlohmann::json::parse(bytes.begin(), bytes.end());
    } catch (const nlohmann::json::exception& e) {
        // nlohmann's what() starts with its own id ("[json.exception.parse_error.101] "); keep
        // the explanation after it, which gives the line, column and reason.
        std::string_view what = e.what();
        if (auto close = what.find("] "); !what.empty() && what.front() == '[' && close != std::string_view::npos)
            what.remove_prefix(close + 2);
        return unexpected(errc::malformed_envelope,
                          codec_id(kind, "bad_json") + "not valid JSON: " + printable_for_message(what));
    }
}

/// The envelope in `root`, with every field checked; moves `data` out of `root`.
inline result<envelope> envelope_from_json(nlohmann::json& root, const decode_limits& limits) {
    using nlohmann::json;
    const auto id = [](std::string_view what) { return codec_id("envelope", what); };
    const auto missing = [&](std::string_view key) {
        return unexpected(errc::malformed_envelope,
                          id("missing_field") + "missing required field '" + std::string(key) + "'");
    };
    const auto wrong_type = [&](std::string_view key, std::string_view want, const json& v) {
        return unexpected(errc::malformed_envelope, id("wrong_type") + "field '" + std::string(key) + "' must be " +
                                                        std::string(want) + ", found " + json_type_for_message(v));
    };
    if (!root.is_object()) {
        return unexpected(errc::malformed_envelope,
                          id("not_an_object") + "the envelope must be a JSON object, found " + json_type_for_message(root));
    }
    const auto find = [&](const char* key) -> json* {
        auto it = root.find(key);
        return it == root.end() ? nullptr : &*it;
    };

    envelope e;
    json* f = find("event_type");
    if (!f) return missing("event_type");
    if (!f->is_string()) return wrong_type("event_type", "a string", *f);
    e.event_type = std::move(f->get_ref<std::string&>());
    const auto name = event_name::parse(e.event_type);
    if (!name) {
        return unexpected(errc::malformed_envelope, id("bad_event_type") + "field 'event_type' is not a valid event name: " +
                                                        std::string(message_body(name.error())));
    }

    if (!(f = find("event_id"))) return missing("event_id");
    if (!f->is_string()) return wrong_type("event_id", "a string", *f);
    auto event_id = uuid::parse(f->get_ref<const std::string&>());
    if (!event_id) {
        return unexpected(errc::malformed_envelope,
                          id("bad_event_id") + "field 'event_id' is not a UUID: " + std::string(message_body(event_id.error())));
    }
    if (event_id->is_nil()) {
        return unexpected(errc::malformed_envelope, id("bad_event_id") + "field 'event_id' is the nil UUID");
    }
    e.event_id = *event_id;

    if (!(f = find("timestamp"))) return missing("timestamp");
    if (!f->is_string()) return wrong_type("timestamp", "an RFC 3339 string", *f);
    auto ts = parse_rfc3339(f->get_ref<const std::string&>());
    if (!ts) {
        return unexpected(errc::malformed_envelope, id("bad_timestamp") + "field 'timestamp' is not an RFC 3339 time: " +
                                                        std::string(message_body(ts.error())));
    }
    e.timestamp = *ts;

    if (!(f = find("version"))) return missing("version");
    if (!f->is_number_integer()) return wrong_type("version", "an integer", *f);
    const bool version_matches = f->is_number_unsigned()
                                     ? f->get<std::uint64_t>() == static_cast<std::uint64_t>(name->version())
                                     : f->get<std::int64_t>() == name->version();
    if (!version_matches) {
        return unexpected(errc::malformed_envelope, id("version_mismatch") + "field 'version' is " + f->dump() +
                                                        " but event_type '" + e.event_type + "' is version " +
                                                        std::to_string(name->version()));
    }
    e.version = name->version();

    if (!(f = find("data"))) return missing("data");
    e.data = std::move(*f);

    if ((f = find("metadata")) && !f->is_null()) {
        if (!f->is_object()) return wrong_type("metadata", "an object", *f);
        const std::pair<const char*, std::string*> fields[] = {{"producer", &e.metadata.producer},
                                                               {"trace_id", &e.metadata.trace_id},
                                                               {"correlation_id", &e.metadata.correlation_id},
                                                               {"causation_id", &e.metadata.causation_id}};
        for (const auto& [key, target] : fields) {
            auto it = f->find(key);
            if (it == f->end() || it->is_null()) continue;
            if (!it->is_string()) return wrong_type(std::string("metadata.") + key, "a string", *it);
            *target = std::move(it->get_ref<std::string&>());
        }
    }

    if ((f = find("headers")) && !f->is_null()) {
        if (!f->is_object()) return wrong_type("headers", "an object of strings", *f);
        if (f->size() > limits.max_headers) {
            return unexpected(errc::limit_exceeded, id("too_many_headers") + std::to_string(f->size()) +
                                                        " headers, more than max_headers = " +
                                                        std::to_string(limits.max_headers));
        }
        for (auto& [key, value] : f->items()) {
            if (!value.is_string()) {
                return unexpected(errc::malformed_envelope, id("wrong_type") + "header " + quote_for_message(key, 64) +
                                                                " must be a string, found " + json_type_for_message(value));
            }
            e.headers.emplace(key, std::move(value.get_ref<std::string&>()));
        }
    }
    return e;
}

}  // namespace detail

/// The envelope as JSON text in the wire format:
/// `{"event_type":"order.created.v1","event_id":"<uuid>","timestamp":"2025-01-01T00:00:00.000000Z",
///   "version":1,"data":{...},"metadata":{"producer":"","trace_id":"","correlation_id":"",
///   "causation_id":""},"headers":{"k":"v"}}`.
///
/// The timestamp is written with microseconds (rounded down). Strings that are not valid
/// UTF-8 are written with U+FFFD in place of the bad bytes, so the output is always JSON.
/// Errors: none but std::bad_alloc.
inline std::string encode(const envelope& e) {
    std::string out;
    out.reserve(256 + e.event_type.size() + e.headers.size() * 32);
    detail::append_envelope_json(out, e);
    return out;
}

/// Appends the wire form of `e` to `out` (reusing its capacity); otherwise as `encode`.
inline void encode_to(std::string& out, const envelope& e) { detail::append_envelope_json(out, e); }

/// The envelope as a JSON value with the wire format's fields (for bridges and tools that
/// work on JSON values rather than text). Copies `data`.
inline nlohmann::json to_json_value(const envelope& e) {
    nlohmann::json j = nlohmann::json::object();
    j["event_type"] = e.event_type;
    j["event_id"] = e.event_id.to_string();
    j["timestamp"] = format_rfc3339(e.timestamp);
    j["version"] = e.version;
    j["data"] = e.data;
    j["metadata"] = {{"producer", e.metadata.producer},
                     {"trace_id", e.metadata.trace_id},
                     {"correlation_id", e.metadata.correlation_id},
                     {"causation_id", e.metadata.causation_id}};
    j["headers"] = nlohmann::json::object();
    for (const auto& [k, v] : e.headers) j["headers"][k] = v;
    return j;
}

/// An envelope from a parsed JSON value, with the checks of `decode` (but not its byte
/// and depth limits, which apply to text).
///
/// Errors: as `decode`. Never throws but std::bad_alloc.
inline result<envelope> from_json_value(nlohmann::json value, const decode_limits& limits = {}) {
    try {
        return detail::envelope_from_json(value, limits);
    } catch (const std::exception& e) {
        // Not expected: every access above is type-checked first. Kept so that decode's
        // "never throws" holds even if a check is wrong.
        return unexpected(errc::malformed_envelope,
                          detail::codec_id("envelope", "invalid") + "could not read the envelope: " + e.what());
    }
}

/// Decodes an envelope from its JSON text, checking everything and trusting nothing.
///
/// Required fields: event_type (a valid event name), event_id (a non-nil UUID), timestamp
/// (RFC 3339), version (an integer equal to event_type's vN), data (any JSON value, null
/// included). Optional: metadata (an object; each of producer, trace_id, correlation_id,
/// causation_id a string or absent) and headers (an object of strings). Unknown fields are
/// ignored, so newer producers can add fields.
///
/// Errors (never thrown), each with errc::malformed_envelope unless noted:
/// - "[courier.envelope.too_large]" (errc::limit_exceeded): more than `limits.max_bytes`;
/// - "[courier.envelope.too_deep]" (errc::limit_exceeded): nesting beyond `limits.max_depth`;
/// - "[courier.envelope.too_many_headers]" (errc::limit_exceeded);
/// - "[courier.envelope.bad_json]": not JSON (with nlohmann's position and reason);
/// - "[courier.envelope.not_an_object]", "[courier.envelope.missing_field]",
///   "[courier.envelope.wrong_type]": the named field is absent or of the wrong JSON type;
/// - "[courier.envelope.bad_event_type]", "[courier.envelope.version_mismatch]",
///   "[courier.envelope.bad_event_id]", "[courier.envelope.bad_timestamp]": a field's value
///   is wrong, with the reason.
///
/// Complexity: linear in the input; the depth scan runs before the parser.
inline result<envelope> decode(std::string_view bytes, const decode_limits& limits = {}) {
    try {
        auto root = detail::parse_json_limited(bytes, limits, "envelope");
        if (!root) return unexpected(std::move(root).error());
        return detail::envelope_from_json(*root, limits);
    } catch (const std::exception& e) {
        return unexpected(errc::malformed_envelope,
                          detail::codec_id("envelope", "invalid") + "could not read the envelope: " + e.what());
    }
}

COURIER_END_NAMESPACE
