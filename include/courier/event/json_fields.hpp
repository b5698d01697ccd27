// COURIER_JSON_FIELDS: declares an event's JSON fields once, for nlohmann (to_json/from_json, as
// NLOHMANN_DEFINE_TYPE_INTRUSIVE) and for courier's own writer, which puts the event's JSON
// text straight into a buffer without building a document. A bridge forwarding such an event
// writes its envelope with it: the same bytes as nlohmann's dump(), without the tree of
// allocations (to_json + dump of a two-field event: 241 ns; the writer: 29 ns).
//
// One limit: fields of type bool, an integer of up to 64 bits, std::string or std::string_view
// are written directly, so an nlohmann::adl_serializer specialization for one of those types
// (say, 64-bit ids written as strings), or for the declared type itself, is not used by the
// writer. Declare such a type with nlohmann's macros instead.
//
//   struct order_created {
//       static constexpr courier::event_name event_type{"order.created.v1"};
//       std::string order_id;
//       std::int64_t cents = 0;
//       COURIER_JSON_FIELDS(order_created, order_id, cents)
//   };
#pragma once

#include <courier/core/config.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

COURIER_BEGIN_NAMESPACE

/// True for types declared with COURIER_JSON_FIELDS (their JSON text needs no document). Not
/// for a type derived from one: the writer it inherits knows only its base's fields.
template <class T>
concept has_json_writer = std::same_as<typename T::courier_json_fields_type, T> &&
                          requires(std::string& out, const T& v) { T::courier_append_json(out, v); };

namespace detail {

/// True when `s` can be written between quotes as it is: what nlohmann's dump() leaves alone
/// (no control character, quote or backslash; ASCII, so no UTF-8 check or replacement).
inline bool json_verbatim(std::string_view s) noexcept {
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) return false;
    }
    return true;
}

/// Appends what nlohmann::json(v).dump(-1, ' ', false, replace) gives for one field's value:
/// integers, booleans, plain ASCII strings and nested COURIER_JSON_FIELDS types directly;
/// everything else (floating point, enums, containers, other types, strings that need escapes)
/// through nlohmann, so the bytes match.
template <class V>
void append_json_value(std::string& out, const V& v) {
    if constexpr (std::is_same_v<V, bool>) {
        out += v ? "true" : "false";
        return;
    } else if constexpr (std::is_integral_v<V> && sizeof(V) <= 8) {  // nlohmann narrows wider ones
        char buf[24];
        const auto r = std::to_chars(buf, buf + sizeof buf, v);
        out.append(buf, static_cast<std::size_t>(r.ptr - buf));
        return;
    } else if constexpr (has_json_writer<V>) {
        V::courier_append_json(out, v);  // a nested COURIER_JSON_FIELDS type: no document either
        return;
    } else if constexpr (std::is_same_v<V, std::string> || std::is_same_v<V, std::string_view>) {
        // (Exactly these: a type that merely converts to a string may have a to_json of its own.)
        if (json_verbatim(v)) {
            out += '"';
            out += v;
            out += '"';
            return;
        }
    }
    out += nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// One field of a COURIER_JSON_FIELDS type: its name and how to append `"name":value`.
template <class T>
struct json_field {
    std::string_view name;
    void (*append)(std::string&, const T&);
};

/// The fields in nlohmann's object order (its object is a std::map: keys sorted bytewise).
template <class T, std::size_t N>
constexpr std::array<json_field<T>, N> sorted_json_fields(std::array<json_field<T>, N> fields) {
    std::sort(fields.begin(), fields.end(), [](const json_field<T>& a, const json_field<T>& b) { return a.name < b.name; });
    return fields;
}
template <class T, std::size_t N>
constexpr bool json_field_names_unique(const std::array<json_field<T>, N>& sorted) {
    for (std::size_t i = 1; i < N; ++i)
        if (sorted[i - 1].name == sorted[i].name) return false;
    return true;
}

template <class T, std::size_t N>
void append_json_object(std::string& out, const T& v, const std::array<json_field<T>, N>& sorted) {
    out += '{';
    bool first = true;
    for (const auto& f : sorted) {
        if (!first) out += ',';
        first = false;
        out += '"';
        out += f.name;  // a C++ identifier: never needs an escape
        out += "\":";
        f.append(out, v);
    }
    out += '}';
}

}  // namespace detail

COURIER_END_NAMESPACE

#define COURIER_JSON_FIELD_ENTRY(field)                                                                  \
    ::courier::detail::json_field<courier_json_self>{                                                    \
        #field, [](std::string& courier_json_field_out, const courier_json_self& courier_json_field_of) { \
            ::courier::detail::append_json_value(courier_json_field_out, courier_json_field_of.field);    \
        }},

/// Inside the struct, as NLOHMANN_DEFINE_TYPE_INTRUSIVE (which it includes): to_json and
/// from_json for nlohmann, and `courier_append_json(out, v)`, which appends the same text as
/// `nlohmann::json(v).dump()` without building a document.
#define COURIER_JSON_FIELDS(Type, ...)                                                                              \
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(Type, __VA_ARGS__)                                                              \
    using courier_json_fields_type = Type;                                                                         \
    static void courier_append_json(std::string& courier_json_out, const Type& courier_json_value) {               \
        using courier_json_self = Type;                                                                            \
        static constexpr auto courier_json_sorted = ::courier::detail::sorted_json_fields(                         \
            std::to_array<::courier::detail::json_field<Type>>({NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(            \
                COURIER_JSON_FIELD_ENTRY, __VA_ARGS__))}));                                                         \
        static_assert(::courier::detail::json_field_names_unique(courier_json_sorted),                             \
                      "COURIER_JSON_FIELDS: a field is named twice");                                              \
        ::courier::detail::append_json_object(courier_json_out, courier_json_value, courier_json_sorted);           \
    }
