// Echoing untrusted text in error messages.
#pragma once

#include <courier/core/config.hpp>

#include <cstddef>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE
namespace detail {

/// Echoes (a bounded prefix of) untrusted text for an error message, quoted, escaping bytes
/// that are not printable ASCII (and the quote and backslash), so hostile input cannot forge
/// log lines or put control bytes on a terminal.
inline std::string quote_for_message(std::string_view s, std::size_t max_echo = 96) {
    std::string out = "'";
    for (std::size_t i = 0; i < s.size() && i < max_echo; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7F && c != '\\' && c != '\'') {
            out += static_cast<char>(c);
        } else {
            constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xF];
        }
    }
    if (s.size() > max_echo) out += "...";
    out += '\'';
    return out;
}

}  // namespace detail
COURIER_END_NAMESPACE
