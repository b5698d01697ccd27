// Where the reply to a request goes: the requester's inbox and the request's number in it.
// Carried beside the message (no header map, no string) while in process, and as the header
// `courier-reply: _INBOX.<inbox>.<request>` (the NATS habit) once it becomes an envelope, so a
// bridge or a dead letter keeps it.
#pragma once

#include <courier/core/config.hpp>

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE

struct reply_address {
    std::uint64_t inbox = 0;    ///< 0: no reply expected
    std::uint64_t request = 0;  ///< the requester's number for this request

    explicit operator bool() const noexcept { return inbox != 0; }
    friend bool operator==(const reply_address&, const reply_address&) = default;

    /// The envelope header that carries a reply address.
    static constexpr std::string_view header = "courier-reply";

    /// `_INBOX.<inbox>.<request>`.
    std::string to_string() const {
        char a[24], b[24];
        const auto an = static_cast<std::size_t>(std::to_chars(a, a + sizeof a, inbox).ptr - a);
        const auto bn = static_cast<std::size_t>(std::to_chars(b, b + sizeof b, request).ptr - b);
        std::string out;
        out.reserve(8 + an + bn);
        out.append("_INBOX.").append(a, an).append(1, '.').append(b, bn);
        return out;
    }

    /// Parses `_INBOX.<inbox>.<request>`; nullopt for anything else (a malformed header from
    /// outside is not a reply address).
    static std::optional<reply_address> parse(std::string_view s) noexcept {
        constexpr std::string_view prefix = "_INBOX.";
        if (s.substr(0, prefix.size()) != prefix) return std::nullopt;
        s.remove_prefix(prefix.size());
        const auto dot = s.find('.');
        if (dot == std::string_view::npos) return std::nullopt;
        reply_address r;
        auto a = std::from_chars(s.data(), s.data() + dot, r.inbox);
        auto b = std::from_chars(s.data() + dot + 1, s.data() + s.size(), r.request);
        if (a.ec != std::errc() || a.ptr != s.data() + dot || b.ec != std::errc() || b.ptr != s.data() + s.size() ||
            r.inbox == 0)
            return std::nullopt;
        return r;
    }
};

COURIER_END_NAMESPACE
