// Internal JSON text helpers shared by the envelope and CloudEvents codecs: a string escaper
// that writes straight into the output buffer (no temporary json values), a nesting-depth
// scan that runs before parsing, and error-id helpers. Not API.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE

namespace detail {

/// True for a byte that a JSON string holds as it is (no control character, quote or
/// backslash; ASCII, so no UTF-8 check or replacement).
constexpr bool json_plain_byte(unsigned char c) noexcept { return c >= 0x20 && c != '"' && c != '\\' && c < 0x80; }

/// True when `s` can be written between quotes as it is: what nlohmann's dump() leaves alone.
inline bool json_verbatim(std::string_view s) noexcept {
    for (char c : s)
        if (!json_plain_byte(static_cast<unsigned char>(c))) return false;
    return true;
}

/// Appends `s` to `out` as a quoted JSON string. Bytes that are not well-formed UTF-8 become
/// U+FFFD, so the output is always valid JSON (nlohmann's dump would throw instead).
inline void append_json_string(std::string& out, std::string_view s) {
    constexpr char hex[] = "0123456789abcdef";
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n && json_plain_byte(static_cast<unsigned char>(s[i]))) ++i;
    // The common case, a short string with nothing to escape: quoted in a buffer, one append.
    if (constexpr std::size_t small = 126; i == n && n <= small) {
        char quoted[small + 2];
        quoted[0] = '"';
        if (n != 0) std::memcpy(quoted + 1, s.data(), n);  // (an empty view may hold null)
        quoted[n + 1] = '"';
        out.append(quoted, n + 2);
        return;
    }
    out += '"';
    out.append(s.data(), i);
    while (i < n) {
        // Copy the longest run of bytes that need no attention in one append.
        std::size_t run = i;
        while (run < n && json_plain_byte(static_cast<unsigned char>(s[run]))) ++run;
        out.append(s.data() + i, run - i);
        i = run;
        if (i == n) break;
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 0xF];
            }
            ++i;
            continue;
        }
        // A multi-byte sequence, checked against the well-formed table of Unicode 15, 3-7.
        std::size_t len = 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;  // no UTF-16 surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
        }
        bool ok = len != 0 && i + len <= n;
        for (std::size_t k = 1; ok && k < len; ++k) {
            const auto b = static_cast<unsigned char>(s[i + k]);
            ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        }
        if (ok) {
            out.append(s.data() + i, len);
            i += len;
        } else {
            out += "\xEF\xBF\xBD";  // U+FFFD for one bad byte; resynchronise on the next
            ++i;
        }
    }
    out += '"';
}

/// True when the objects and arrays in `text` nest deeper than `max_depth`. A linear scan
/// that skips strings; it does not validate JSON (the parser does that afterwards).
inline bool json_nesting_exceeds(std::string_view text, std::size_t max_depth) noexcept {
    std::size_t depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        switch (c) {
        case '"': in_string = true; break;
        case '{':
        case '[':
            if (++depth > max_depth) return true;
            break;
        case '}':
        case ']':
            if (depth > 0) --depth;
            break;
        default: break;
        }
    }
    return false;
}

/// The "[courier.<kind>.<what>] " prefix for a codec's errors.
inline std::string codec_id(std::string_view kind, std::string_view what) {
    std::string s = "[courier.";
    s.append(kind);
    s += '.';
    s.append(what);
    s += "] ";
    return s;
}

/// The message of `e` without its leading "[id] ", for nesting one error in another.
inline std::string_view message_body(const error& e) noexcept {
    std::string_view m = e.message;
    if (!m.empty() && m.front() == '[') {
        if (auto close = m.find("] "); close != std::string_view::npos) m.remove_prefix(close + 2);
    }
    return m;
}

}  // namespace detail

COURIER_END_NAMESPACE
