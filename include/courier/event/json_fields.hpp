// COURIER_JSON_FIELDS: declares an event's JSON fields once, for nlohmann (to_json/from_json, as
// NLOHMANN_DEFINE_TYPE_INTRUSIVE) and for courier's own writer, which puts the event's JSON
// text straight into a buffer without building a document. A bridge forwarding such an event
// writes its envelope with it: the same bytes as nlohmann's dump(), without the tree of
// allocations (to_json + dump of a two-field event: 241 ns; the writer: 29 ns).
//
// It also declares a reader, which a typed subscriber of a bridged event uses on the text the
// broker delivered: the event is read without a document either, and whatever the reader does
// not take on (an escape, a number that is not a plain integer, a missing field) sends it to
// nlohmann's from_json, which gives the same value or the same error.
//
// One limit: fields of type bool, an integer of up to 64 bits, std::string or std::string_view
// are written (and read) directly, so an nlohmann::adl_serializer specialization for one of
// those types (say, 64-bit ids written as strings), or for the declared type itself, is not
// used by the writer or the reader. Declare such a type with nlohmann's macros instead.
//
//   struct order_created {
//       static constexpr courier::event_name event_type{"order.created.v1"};
//       std::string order_id;
//       std::int64_t cents = 0;
//       COURIER_JSON_FIELDS(order_created, order_id, cents)
//   };
#pragma once

#include <courier/core/config.hpp>
#include <courier/event/detail/json_text.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
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
struct json_cursor;
}  // namespace detail

/// True for types declared with COURIER_JSON_FIELDS, which read their JSON text themselves
/// (see detail::read_json_fields).
template <class T>
concept has_json_reader = has_json_writer<T> && requires(detail::json_cursor& c, T& v) {
    { T::courier_read_json(c, v) } -> std::same_as<bool>;
};

namespace detail {

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

/// A position in JSON text, for the typed reader: what it reads is JSON as nlohmann's dump()
/// writes it (no white space); anything else makes it return false, never guess.
struct json_cursor {
    std::string_view text;
    std::size_t at = 0;

    bool eat(char c) noexcept {
        if (at >= text.size() || text[at] != c) return false;
        ++at;
        return true;
    }
    bool word(std::string_view w) noexcept {
        if (text.compare(at, w.size(), w) != 0) return false;
        at += w.size();
        return true;
    }
    /// `"name":` at the cursor, for a name that needs no escape (a C++ identifier).
    bool member_name(std::string_view name) noexcept {
        const std::size_t n = name.size();
        if (text.size() - at < n + 3 || text[at] != '"' || text[at + n + 1] != '"' || text[at + n + 2] != ':' ||
            std::memcmp(text.data() + at + 1, name.data(), n) != 0)
            return false;
        at += n + 3;
        return true;
    }
    /// A string of printable ASCII without escapes (what nlohmann gives back byte for byte).
    bool plain_string(std::string_view& out) noexcept {
        if (!eat('"')) return false;
        const std::size_t start = at;
        for (; at < text.size(); ++at) {
            const auto c = static_cast<unsigned char>(text[at]);
            if (c == '"') break;
            if (c < 0x20 || c == '\\' || c >= 0x80) return false;
        }
        if (at == text.size()) return false;
        out = text.substr(start, at - start);
        ++at;
        return true;
    }
    /// Moves past one value of any kind (checked only as far as its extent needs): what the
    /// reader does not know is left to nlohmann, which judges it. False when it is cut short.
    bool skip_value(std::size_t depth = 0) noexcept {
        if (at >= text.size() || depth > 64) return false;
        const char c = text[at];
        if (c == '"') {
            for (++at; at < text.size(); ++at) {
                if (text[at] == '\\') ++at;
                else if (text[at] == '"') break;
            }
            if (at >= text.size()) return false;
            ++at;
            return true;
        }
        if (c == '{' || c == '[') {
            const char close = c == '{' ? '}' : ']';
            ++at;
            if (eat(close)) return true;
            for (;;) {
                if (c == '{' && (!skip_value(depth + 1) || !eat(':'))) return false;
                if (!skip_value(depth + 1)) return false;
                if (eat(',')) continue;
                return eat(close);
            }
        }
        const std::size_t start = at;
        while (at < text.size() && text[at] != ',' && text[at] != '}' && text[at] != ']' && text[at] != ':') ++at;
        return at != start;
    }
};

/// One field's value into `v` from the cursor. The types the writer writes itself are read
/// here too (and only in the form nlohmann's dump() gives them); any other type, and any
/// other form, is parsed by nlohmann and converted by its from_json (an exception: false).
template <class V>
bool read_json_value(json_cursor& c, V& v) {
    if constexpr (std::is_same_v<V, bool>) {
        if (c.word("true")) return v = true, true;
        if (c.word("false")) return v = false, true;
        return false;
    } else if constexpr (std::is_integral_v<V> && sizeof(V) <= 8) {
        // What nlohmann's get does with the integer it parsed: a static_cast from its uint64
        // (0 and up) or int64 (below 0). Numbers beyond those (nlohmann makes them doubles),
        // fractions and exponents are its own.
        const bool negative = c.eat('-');
        const std::size_t start = c.at;
        std::uint64_t n = 0;
        while (c.at < c.text.size() && c.text[c.at] >= '0' && c.text[c.at] <= '9')
            n = n * 10 + static_cast<std::uint64_t>(c.text[c.at++] - '0');
        const std::size_t digits = c.at - start;
        if (digits == 0 || digits > 20 || (c.text[start] == '0' && digits > 1)) return false;
        // Twenty digits: a uint64 up to its largest (wrapped in `n` past it, refused here).
        if (digits == 20 && (negative || c.text.compare(start, 20, "18446744073709551615") > 0)) return false;
        if (c.at < c.text.size() && (c.text[c.at] == '.' || c.text[c.at] == 'e' || c.text[c.at] == 'E')) return false;
        if (!negative) {
            v = static_cast<V>(n);
            return true;
        }
        constexpr std::uint64_t int64_magnitude_max = std::uint64_t{1} << 63;
        if (n > int64_magnitude_max) return false;
        const std::int64_t s = n == int64_magnitude_max ? std::numeric_limits<std::int64_t>::min() : -static_cast<std::int64_t>(n);
        v = static_cast<V>(s);
        return true;
    } else if constexpr (has_json_reader<V>) {
        return V::courier_read_json(c, v);
    } else if constexpr (std::is_same_v<V, std::string>) {
        std::string_view s;
        if (!c.plain_string(s)) return false;
        v.assign(s);
        return true;
    } else if constexpr (std::is_same_v<V, std::string_view> || !requires(const nlohmann::json& j) { j.get_to(v); }) {
        // A view would point into a document about to go, and a type nlohmann cannot read is
        // not read here either (a type that is only ever written still compiles).
        return false;
    } else {
        const std::size_t start = c.at;
        if (!c.skip_value()) return false;
        try {
            nlohmann::json::parse(c.text.substr(start, c.at - start)).get_to(v);
            return true;
        } catch (const std::exception&) {
            return false;
        }
    }
}

/// One field of a COURIER_JSON_FIELDS type: its name and how to append `"name":value` and read
/// its value back.
template <class T>
struct json_field {
    std::string_view name;
    void (*append)(std::string&, const T&);
    bool (*read)(json_cursor&, T&);
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
    bool first = true;
    for (const auto& f : sorted) {
        // `{"name":` or `,"name":` in one append (a name is a C++ identifier: never escaped).
        char key[64];
        const std::size_t n = f.name.size();
        if (n + 4 <= sizeof key) {
            key[0] = first ? '{' : ',';
            key[1] = '"';
            std::memcpy(key + 2, f.name.data(), n);
            key[n + 2] = '"';
            key[n + 3] = ':';
            out.append(key, n + 4);
        } else {
            out += first ? '{' : ',';
            out += '"';
            out += f.name;
            out.append("\":", 2);
        }
        first = false;
        f.append(out, v);
    }
    out += first ? "{}" : "}";
}

/// Reads `{"name":value,...}` into `v` as nlohmann's from_json for these fields would: every
/// field must be there, a repeated name takes its last value, names it does not know are
/// skipped. False (and `v` partly assigned) for anything it leaves to nlohmann.
template <class T, std::size_t N>
bool read_json_object(json_cursor& c, T& v, const std::array<json_field<T>, N>& sorted) {
    if (!c.eat('{')) return false;
    std::array<bool, N> seen{};
    std::size_t found = 0;
    std::size_t next = 0;  // the field the writer writes next (it writes them in this order)
    if (!c.eat('}')) {
        for (;;) {
            const json_field<T>* f = nullptr;
            if (next < N && c.member_name(sorted[next].name)) {
                f = &sorted[next];
            } else {
                std::string_view name;
                if (!c.plain_string(name) || !c.eat(':')) return false;
                f = std::lower_bound(sorted.begin(), sorted.end(), name,
                                     [](const json_field<T>& a, std::string_view n) { return a.name < n; });
                if (f == sorted.end() || f->name != name) f = nullptr;
            }
            if (f != nullptr) {
                if (!f->read(c, v)) return false;
                next = static_cast<std::size_t>(f - sorted.begin());
                found += seen[next] ? 0 : 1;
                seen[next++] = true;
            } else if (!c.skip_value()) {
                return false;
            }
            if (c.eat(',')) continue;
            if (!c.eat('}')) return false;
            break;
        }
    }
    return found == N;
}

/// Reads `text`, which must be valid JSON (a bridge checked it on ingest), into `out` with T's
/// COURIER_JSON_FIELDS reader: true when it did, with the value nlohmann's
/// `json::parse(text).get<T>()` gives; false when the text needs nlohmann (which then gives
/// that value, or its error). Unknown members are only skipped, hence the precondition.
template <class T>
    requires has_json_reader<T>
bool read_json_fields(std::string_view text, T& out) {
    json_cursor c{text, 0};
    return T::courier_read_json(c, out) && c.at == text.size();
}

}  // namespace detail

COURIER_END_NAMESPACE

#define COURIER_JSON_FIELD_ENTRY(field)                                                                  \
    ::courier::detail::json_field<courier_json_self>{                                                    \
        #field,                                                                                          \
        [](std::string& courier_json_field_out, const courier_json_self& courier_json_field_of) {        \
            ::courier::detail::append_json_value(courier_json_field_out, courier_json_field_of.field);    \
        },                                                                                               \
        [](::courier::detail::json_cursor& courier_json_field_in, courier_json_self& courier_json_field_to) { \
            return ::courier::detail::read_json_value(courier_json_field_in, courier_json_field_to.field);    \
        }},

/// Inside the struct, as NLOHMANN_DEFINE_TYPE_INTRUSIVE (which it includes): to_json and
/// from_json for nlohmann, `courier_append_json(out, v)`, which appends the same text as
/// `nlohmann::json(v).dump()` without building a document, and `courier_read_json`, its
/// reader (see detail::read_json_fields).
#define COURIER_JSON_FIELDS(Type, ...)                                                                              \
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(Type, __VA_ARGS__)                                                              \
    using courier_json_fields_type = Type;                                                                         \
    static constexpr auto courier_json_field_table() {                                                             \
        using courier_json_self = Type;                                                                            \
        return ::courier::detail::sorted_json_fields(std::to_array<::courier::detail::json_field<Type>>(            \
            {NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(COURIER_JSON_FIELD_ENTRY, __VA_ARGS__))}));                    \
    }                                                                                                              \
    static void courier_append_json(std::string& courier_json_out, const Type& courier_json_value) {               \
        static constexpr auto courier_json_sorted = courier_json_field_table();                                   \
        static_assert(::courier::detail::json_field_names_unique(courier_json_sorted),                             \
                      "COURIER_JSON_FIELDS: a field is named twice");                                              \
        ::courier::detail::append_json_object(courier_json_out, courier_json_value, courier_json_sorted);           \
    }                                                                                                              \
    static bool courier_read_json(::courier::detail::json_cursor& courier_json_in, Type& courier_json_value) {      \
        static constexpr auto courier_json_sorted = courier_json_field_table();                                   \
        return ::courier::detail::read_json_object(courier_json_in, courier_json_value, courier_json_sorted);      \
    }
