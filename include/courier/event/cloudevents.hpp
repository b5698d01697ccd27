// Mapping between courier envelopes and CloudEvents 1.0 in the structured JSON format, so
// events can cross into systems that speak CloudEvents (Knative, Azure Event Grid, ...).
// The mapping rules are listed on `to_cloudevent`; decoding has the same rigor as `decode`.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/core/uuid.hpp>
#include <courier/event/detail/json_text.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/event/event_name.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <exception>
#include <string>
#include <string_view>
#include <utility>

COURIER_BEGIN_NAMESPACE

/// How envelopes become CloudEvents.
struct cloudevent_options {
    /// The `source` written when the envelope's metadata.producer is empty (CloudEvents
    /// requires a non-empty source). Decoding always sets producer = source.
    std::string default_source = "courier://unknown";
};

/// The extension that carries headers which cannot be CloudEvents extensions of their own
/// (their name is not lowercase alphanumeric, or is reserved, or their value is empty): a
/// string holding a JSON object of those headers.
inline constexpr std::string_view cloudevent_headers_extension = "courierheaders";

namespace detail {

/// CloudEvents 1.0 attribute names: 'a'-'z' and '0'-'9' only, at most 20 characters.
constexpr bool is_cloudevent_attribute_name(std::string_view s) noexcept {
    if (s.empty() || s.size() > 20) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); });
}

/// Attribute names a header may not take as its own extension: CloudEvents context
/// attributes and the names courier maps metadata to.
constexpr bool is_reserved_cloudevent_name(std::string_view s) noexcept {
    constexpr std::string_view reserved[] = {"specversion", "id",      "source",        "type",
                                             "time",        "data",    "datacontenttype", "traceid",
                                             "correlationid", "causationid", "courierheaders"};
    return std::find(std::begin(reserved), std::end(reserved), s) != std::end(reserved);
}

/// True for media types whose data is JSON: application/json, text/json, anything +json.
inline bool is_json_media_type(std::string_view type) {
    if (auto semi = type.find(';'); semi != std::string_view::npos) type = type.substr(0, semi);
    while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
    while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
    std::string lower(type);
    for (auto& c : lower) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    return lower == "application/json" || lower == "text/json" ||
           (lower.size() > 5 && lower.compare(lower.size() - 5, 5, "+json") == 0);
}

/// How a header travels: as the `subject`/`dataschema` attribute, as its own extension, or
/// packed into `courierheaders`.
inline bool header_is_own_attribute(const std::string& key, const std::string& value) {
    if (value.empty()) return false;  // CloudEvents attributes must not be empty
    if (key == "subject" || key == "dataschema") return true;
    return is_cloudevent_attribute_name(key) && !is_reserved_cloudevent_name(key);
}

}  // namespace detail

/// The envelope as a CloudEvents 1.0 structured-mode JSON event.
///
/// Mapping:
/// - `specversion` "1.0"; `id` = event_id; `type` = event_type (its vN is the version);
///   `time` = timestamp (RFC 3339 UTC, microseconds); `datacontenttype` "application/json";
///   `data` = data;
/// - `source` = metadata.producer, or `options.default_source` when that is empty;
/// - extensions `traceid`, `correlationid`, `causationid` = the metadata fields (omitted
///   when empty);
/// - a header named `subject` or `dataschema` becomes that optional attribute; a header whose
///   name is a valid extension name (lowercase a-z0-9, at most 20 characters, not reserved)
///   and whose value is not empty becomes a string extension of that name; every other
///   header goes into the string extension `courierheaders`, a JSON object of them.
///
/// Errors: none but std::bad_alloc.
inline std::string to_cloudevent(const envelope& e, const cloudevent_options& options = {}) {
    std::string out;
    out.reserve(320 + e.event_type.size() + e.headers.size() * 32);
    out += "{\"specversion\":\"1.0\",\"id\":\"";
    char buf[uuid::text_size > rfc3339_size ? uuid::text_size : rfc3339_size];
    out.append(buf, static_cast<std::size_t>(e.event_id.to_chars(buf) - buf));
    out += "\",\"source\":";
    detail::append_json_string(out, e.metadata.producer.empty() ? options.default_source : e.metadata.producer);
    out += ",\"type\":";
    detail::append_json_string(out, e.event_type);
    out += ",\"time\":\"";
    out.append(buf, static_cast<std::size_t>(format_rfc3339_to(buf, e.timestamp) - buf));
    out += "\",\"datacontenttype\":\"application/json\",\"data\":";
    out += e.data.is_discarded() ? std::string("null")
                                 : e.data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    auto attribute = [&out](std::string_view name, const std::string& value) {
        if (value.empty()) return;
        out += ",\"";
        out.append(name);
        out += "\":";
        detail::append_json_string(out, value);
    };
    attribute("traceid", e.metadata.trace_id);
    attribute("correlationid", e.metadata.correlation_id);
    attribute("causationid", e.metadata.causation_id);
    std::string packed;
    for (const auto& [key, value] : e.headers) {
        if (detail::header_is_own_attribute(key, value)) {
            attribute(key, value);
        } else {
            packed += packed.empty() ? '{' : ',';
            detail::append_json_string(packed, key);
            packed += ':';
            detail::append_json_string(packed, value);
        }
    }
    if (!packed.empty()) {
        packed += '}';
        out += ",\"";
        out.append(cloudevent_headers_extension);
        out += "\":";
        detail::append_json_string(out, packed);
    }
    out += '}';
    return out;
}

namespace detail {

inline result<envelope> envelope_from_cloudevent(nlohmann::json& root, const decode_limits& limits) {
    using nlohmann::json;
    const auto id = [](std::string_view what) { return codec_id("cloudevent", what); };
    const auto bad = [&](std::string_view what, const std::string& why) {
        return unexpected(errc::malformed_envelope, id(what) + why);
    };
    const auto missing = [&](std::string_view key, std::string_view note = {}) {
        return bad("missing_field", "missing required attribute '" + std::string(key) + "'" + std::string(note));
    };
    const auto wrong_type = [&](std::string_view key, std::string_view want, const json& v) {
        return bad("wrong_type", "attribute " + quote_for_message(key, 64) + " must be " + std::string(want) +
                                     ", found " + json_type_for_message(v));
    };
    if (!root.is_object()) {
        return bad("not_an_object", "a structured CloudEvent must be a JSON object, found " + json_type_for_message(root));
    }
    const auto find = [&](const char* key) -> json* {
        auto it = root.find(key);
        return it == root.end() || it->is_null() ? nullptr : &*it;  // null attributes are absent
    };

    envelope e;
    json* f = find("specversion");
    if (!f) return missing("specversion");
    if (!f->is_string()) return wrong_type("specversion", "a string", *f);
    if (f->get_ref<const std::string&>() != "1.0") {
        return bad("bad_specversion", "specversion " + quote_for_message(f->get_ref<const std::string&>(), 16) +
                                          " is not supported (only \"1.0\")");
    }

    if (!(f = find("id"))) return missing("id");
    if (!f->is_string()) return wrong_type("id", "a string", *f);
    auto event_id = uuid::parse(f->get_ref<const std::string&>());
    if (!event_id) {
        return bad("bad_id", "attribute 'id' must be a UUID for courier: " + std::string(message_body(event_id.error())));
    }
    if (event_id->is_nil()) return bad("bad_id", "attribute 'id' is the nil UUID");
    e.event_id = *event_id;

    if (!(f = find("source"))) return missing("source");
    if (!f->is_string()) return wrong_type("source", "a string", *f);
    if (f->get_ref<const std::string&>().empty()) return bad("bad_source", "attribute 'source' is empty");
    e.metadata.producer = std::move(f->get_ref<std::string&>());

    if (!(f = find("type"))) return missing("type");
    if (!f->is_string()) return wrong_type("type", "a string", *f);
    e.event_type = std::move(f->get_ref<std::string&>());
    const auto name = event_name::parse(e.event_type);
    if (!name) {
        return bad("bad_type", "attribute 'type' is not a courier event name: " + std::string(message_body(name.error())));
    }
    e.version = name->version();

    if (!(f = find("time"))) return missing("time", " (optional in CloudEvents, required by courier)");
    if (!f->is_string()) return wrong_type("time", "an RFC 3339 string", *f);
    auto ts = parse_rfc3339(f->get_ref<const std::string&>());
    if (!ts) return bad("bad_time", "attribute 'time' is not an RFC 3339 time: " + std::string(message_body(ts.error())));
    e.timestamp = *ts;

    if ((f = find("datacontenttype"))) {
        if (!f->is_string()) return wrong_type("datacontenttype", "a string", *f);
        if (!is_json_media_type(f->get_ref<const std::string&>())) {
            return bad("unsupported_content_type", "datacontenttype " + quote_for_message(f->get_ref<const std::string&>(), 64) +
                                                       " is not JSON; courier envelopes carry JSON data");
        }
    }
    if (find("data_base64")) {
        return bad("unsupported_content_type", "binary data ('data_base64') is not supported; courier envelopes carry JSON data");
    }
    if ((f = find("data"))) e.data = std::move(*f);

    const std::pair<const char*, std::string*> metadata[] = {{"traceid", &e.metadata.trace_id},
                                                             {"correlationid", &e.metadata.correlation_id},
                                                             {"causationid", &e.metadata.causation_id}};
    for (const auto& [key, target] : metadata) {
        if (!(f = find(key))) continue;
        if (!f->is_string()) return wrong_type(key, "a string", *f);
        *target = std::move(f->get_ref<std::string&>());
    }

    constexpr std::string_view handled[] = {"specversion", "id",          "source",        "type",
                                            "time",        "datacontenttype", "data",      "data_base64",
                                            "traceid",     "correlationid", "causationid", "courierheaders"};
    for (auto& [key, value] : root.items()) {
        if (std::find(std::begin(handled), std::end(handled), key) != std::end(handled) || value.is_null()) continue;
        std::string text;
        if (value.is_string()) {
            text = std::move(value.get_ref<std::string&>());
        } else if (value.is_number() || value.is_boolean()) {
            text = value.dump();  // CloudEvents integer and boolean attributes, as their JSON text
        } else {
            return wrong_type(key, "a string, number or boolean (extension attribute)", value);
        }
        if (e.headers.size() >= limits.max_headers) {
            return unexpected(errc::limit_exceeded, id("too_many_headers") + "more than max_headers = " +
                                                        std::to_string(limits.max_headers) + " headers");
        }
        e.headers.emplace(key, std::move(text));
    }

    if ((f = find(std::string(cloudevent_headers_extension).c_str()))) {
        const std::string ext = std::string(cloudevent_headers_extension);
        if (!f->is_string()) return wrong_type(ext, "a string holding a JSON object", *f);
        const auto& text = f->get_ref<const std::string&>();
        if (json_nesting_exceeds(text, 1)) {
            return bad("bad_extension", "extension '" + ext + "' must hold a flat JSON object of strings");
        }
        json packed = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
        if (packed.is_discarded() || !packed.is_object()) {
            return bad("bad_extension", "extension '" + ext + "' must hold a JSON object of strings");
        }
        for (auto& [key, value] : packed.items()) {
            if (!value.is_string()) {
                return bad("bad_extension", "extension '" + ext + "': header " + quote_for_message(key, 64) +
                                                " must be a string, found " + json_type_for_message(value));
            }
            if (e.headers.count(key) != 0) {
                return bad("bad_extension", "header " + quote_for_message(key, 64) + " appears both as an attribute and in '" +
                                                ext + "'");
            }
            if (e.headers.size() >= limits.max_headers) {
                return unexpected(errc::limit_exceeded, id("too_many_headers") + "more than max_headers = " +
                                                            std::to_string(limits.max_headers) + " headers");
            }
            e.headers.emplace(key, std::move(value.get_ref<std::string&>()));
        }
    }
    return e;
}

}  // namespace detail

/// An envelope from a CloudEvents 1.0 structured-mode JSON event (the inverse of
/// `to_cloudevent`).
///
/// Requires specversion "1.0", `id` a UUID (courier's event ids are UUIDs), `source`
/// (becomes metadata.producer), `type` a courier event name (its vN becomes `version`) and
/// `time` (optional in CloudEvents, required here). `datacontenttype`, when present, must
/// be a JSON media type; `data` may be absent (null). Extensions: traceid, correlationid and
/// causationid fill the metadata, `courierheaders` is unpacked, every other attribute
/// (subject and dataschema included) becomes a header, numbers and booleans as their JSON
/// text. Attributes whose value is null count as absent.
///
/// Errors (never thrown), with ids "[courier.cloudevent.*]": too_large, too_deep and
/// too_many_headers (errc::limit_exceeded); bad_json, not_an_object, missing_field,
/// wrong_type, bad_specversion, bad_id, bad_source, bad_type, bad_time,
/// unsupported_content_type, bad_extension (errc::malformed_envelope).
inline result<envelope> from_cloudevent(std::string_view bytes, const decode_limits& limits = {}) {
    try {
        auto root = detail::parse_json_limited(bytes, limits, "cloudevent");
        if (!root) return unexpected(std::move(root).error());
        return detail::envelope_from_cloudevent(*root, limits);
    } catch (const std::exception& e) {
        return unexpected(errc::malformed_envelope,
                          detail::codec_id("cloudevent", "invalid") + "could not read the CloudEvent: " + e.what());
    }
}

COURIER_END_NAMESPACE
