// Broker addresses as URLs: `redis://127.0.0.1:6379?stream=orders`, `nats://127.0.0.1:4222`,
// `kafka://127.0.0.1:9092`, `amqp://guest:guest@127.0.0.1:5672/`, `loopback://orders`. Parsed
// into a typed `broker_url` (scheme, credentials, endpoints, path, query) or a clear error; each
// adapter reads its own options from it (see redis_options::from_url).
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge {

/// The brokers courier has adapters for (whether an adapter is compiled in is another matter:
/// see make_transport).
enum class broker_scheme : std::uint8_t { loopback, redis, nats, kafka, amqp };

constexpr std::string_view to_string(broker_scheme s) noexcept {
    switch (s) {
    case broker_scheme::loopback: return "loopback";
    case broker_scheme::redis: return "redis";
    case broker_scheme::nats: return "nats";
    case broker_scheme::kafka: return "kafka";
    case broker_scheme::amqp: return "amqp";
    }
    return "unknown";
}

/// The port a scheme uses when the URL names none (0 for loopback, which has no network).
constexpr std::uint16_t default_port(broker_scheme s) noexcept {
    switch (s) {
    case broker_scheme::loopback: return 0;
    case broker_scheme::redis: return 6379;
    case broker_scheme::nats: return 4222;
    case broker_scheme::kafka: return 9092;
    case broker_scheme::amqp: return 5672;
    }
    return 0;
}

/// One `host:port` of a URL (Kafka URLs may list several, comma separated).
struct endpoint {
    std::string host;
    std::uint16_t port = 0;
    friend bool operator==(const endpoint&, const endpoint&) = default;
};

/// A parsed broker URL. Every text field is percent-decoded.
///
/// Thread safety: a value type.
struct broker_url {
    broker_scheme scheme = broker_scheme::loopback;
    std::string user;
    std::string password;
    std::vector<endpoint> endpoints;  ///< at least one (loopback: the broker's name as host, port 0)
    std::string path;                 ///< without the leading '/' (AMQP: the vhost; "" = default)
    bool has_path = false;            ///< a '/' followed the authority (`amqp://h/` names vhost "")
    std::map<std::string, std::string, std::less<>> params;  ///< the query, `?a=1&b=2`

    const std::string& host() const noexcept { return endpoints.front().host; }
    std::uint16_t port() const noexcept { return endpoints.front().port; }

    /// A query parameter, or `fallback`.
    std::string param(std::string_view name, std::string_view fallback = {}) const {
        auto it = params.find(name);
        return it == params.end() ? std::string(fallback) : it->second;
    }
    /// A query parameter as an unsigned integer, or `fallback` when absent.
    /// Errors: errc::invalid_argument "[courier.bridge.url.bad_param]" when it is not one.
    result<std::uint64_t> param_uint(std::string_view name, std::uint64_t fallback) const {
        auto it = params.find(name);
        if (it == params.end()) return fallback;
        const std::string& v = it->second;
        std::uint64_t n = 0;
        if (v.empty() || v.size() > 19) return bad_param(name, v);
        for (char c : v) {
            if (c < '0' || c > '9') return bad_param(name, v);
            n = n * 10 + static_cast<std::uint64_t>(c - '0');
        }
        return n;
    }
    /// A query parameter as a boolean (`1/0/true/false/yes/no`), or `fallback`.
    result<bool> param_bool(std::string_view name, bool fallback) const {
        auto it = params.find(name);
        if (it == params.end()) return fallback;
        const std::string& v = it->second;
        if (v == "1" || v == "true" || v == "yes") return true;
        if (v == "0" || v == "false" || v == "no") return false;
        return unexpected(errc::invalid_argument, "[courier.bridge.url.bad_param] parameter '" + std::string(name) +
                                                      "' must be true or false, not '" + v + "'");
    }

    /// The URL again, the password replaced by `***` (for logs and error messages).
    std::string redacted() const {
        std::string out(to_string(scheme));
        out += "://";
        if (!user.empty() || !password.empty()) {
            out += user;
            if (!password.empty()) out += ":***";
            out += '@';
        }
        for (std::size_t i = 0; i < endpoints.size(); ++i) {
            if (i) out += ',';
            out += endpoints[i].host;
            if (endpoints[i].port) out += ':' + std::to_string(endpoints[i].port);
        }
        if (has_path) out += '/' + path;
        char sep = '?';
        for (auto& [k, v] : params) {
            out += sep + k + '=' + v;
            sep = '&';
        }
        return out;
    }

private:
    static unexpected bad_param(std::string_view name, const std::string& v) {
        return unexpected(errc::invalid_argument, "[courier.bridge.url.bad_param] parameter '" + std::string(name) +
                                                      "' must be an unsigned integer, not '" + v + "'");
    }
};

namespace detail {

inline unexpected url_error(std::string_view what, std::string_view url, std::string detail) {
    // The URL may hold a password: echo only up to the authority's '@' replaced.
    std::string shown(url);
    if (auto at = shown.find('@'); at != std::string::npos) {
        auto scheme_end = shown.find("://");
        const std::size_t from = scheme_end == std::string::npos ? 0 : scheme_end + 3;
        if (at > from) shown.replace(from, at - from, "***");
    }
    return unexpected(errc::invalid_argument, "[courier.bridge.url." + std::string(what) + "] " + detail + " in '" +
                                                  shown + "'");
}

inline int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Percent-decodes `s` into `out`; false on a broken escape.
inline bool percent_decode(std::string_view s, std::string& out, bool plus_is_space) {
    out.clear();
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size()) return false;
            const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0) return false;
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out += ' ';
        } else {
            out += c;
        }
    }
    return true;
}

}  // namespace detail

/// Parses a broker URL: `scheme://[user[:password]@]host[:port][,host[:port]...][/path][?k=v&...]`.
///
/// Errors (errc::invalid_argument), each naming the URL with its password hidden:
/// "[courier.bridge.url.empty]", "[courier.bridge.url.no_scheme]" (no `scheme://`),
/// "[courier.bridge.url.unknown_scheme]" (not loopback, redis, nats, kafka or amqp),
/// "[courier.bridge.url.no_host]", "[courier.bridge.url.bad_port]" (not 1..65535),
/// "[courier.bridge.url.bad_escape]" (a broken %XX), "[courier.bridge.url.bad_query]"
/// (a parameter without a name or given twice).
inline result<broker_url> parse_broker_url(std::string_view text) {
    if (text.empty()) return detail::url_error("empty", text, "a broker URL is empty");
    const auto sep = text.find("://");
    if (sep == std::string_view::npos || sep == 0)
        return detail::url_error("no_scheme", text, "expected scheme://host (e.g. redis://127.0.0.1:6379)");
    broker_url u;
    const std::string_view scheme = text.substr(0, sep);
    if (scheme == "loopback") u.scheme = broker_scheme::loopback;
    else if (scheme == "redis") u.scheme = broker_scheme::redis;
    else if (scheme == "nats") u.scheme = broker_scheme::nats;
    else if (scheme == "kafka") u.scheme = broker_scheme::kafka;
    else if (scheme == "amqp") u.scheme = broker_scheme::amqp;
    else
        return detail::url_error("unknown_scheme", text,
                                 "scheme '" + std::string(scheme) + "' is none of loopback, redis, nats, kafka, amqp");

    std::string_view rest = text.substr(sep + 3);
    std::string_view query;
    if (auto q = rest.find('?'); q != std::string_view::npos) {
        query = rest.substr(q + 1);
        rest = rest.substr(0, q);
    }
    std::string_view authority = rest;
    if (auto slash = rest.find('/'); slash != std::string_view::npos) {
        authority = rest.substr(0, slash);
        u.has_path = true;
        if (!detail::percent_decode(rest.substr(slash + 1), u.path, false))
            return detail::url_error("bad_escape", text, "a broken %-escape in the path");
    }
    if (auto at = authority.rfind('@'); at != std::string_view::npos) {
        std::string_view info = authority.substr(0, at);
        authority = authority.substr(at + 1);
        std::string_view user = info, pass;
        if (auto colon = info.find(':'); colon != std::string_view::npos) {
            user = info.substr(0, colon);
            pass = info.substr(colon + 1);
        }
        if (!detail::percent_decode(user, u.user, false) || !detail::percent_decode(pass, u.password, false))
            return detail::url_error("bad_escape", text, "a broken %-escape in the user or password");
    }
    if (authority.empty()) return detail::url_error("no_host", text, "no host");
    while (!authority.empty()) {
        std::string_view one = authority;
        if (auto comma = authority.find(','); comma != std::string_view::npos) {
            one = authority.substr(0, comma);
            authority = authority.substr(comma + 1);
            if (authority.empty()) return detail::url_error("no_host", text, "an empty host after ','");
        } else {
            authority = {};
        }
        endpoint e;
        std::string_view host = one, port;
        if (!one.empty() && one.front() == '[') {  // [::1]:6379
            auto close = one.find(']');
            if (close == std::string_view::npos) return detail::url_error("no_host", text, "an unclosed '[' in the host");
            host = one.substr(1, close - 1);
            std::string_view after = one.substr(close + 1);
            if (!after.empty()) {
                if (after.front() != ':') return detail::url_error("bad_port", text, "expected ':port' after ']'");
                port = after.substr(1);
                if (port.empty()) return detail::url_error("bad_port", text, "an empty port");
            }
        } else if (auto colon = one.rfind(':'); colon != std::string_view::npos) {
            host = one.substr(0, colon);
            port = one.substr(colon + 1);
            if (port.empty()) return detail::url_error("bad_port", text, "an empty port");
        }
        if (host.empty()) return detail::url_error("no_host", text, "no host");
        if (!detail::percent_decode(host, e.host, false))
            return detail::url_error("bad_escape", text, "a broken %-escape in the host");
        e.port = default_port(u.scheme);
        if (!port.empty()) {
            unsigned long v = 0;
            for (char c : port) {
                if (c < '0' || c > '9' || v > 65535)
                    return detail::url_error("bad_port", text, "port '" + std::string(port) + "' is not a number in 1..65535");
                v = v * 10 + static_cast<unsigned long>(c - '0');
            }
            if (v == 0 || v > 65535)
                return detail::url_error("bad_port", text, "port '" + std::string(port) + "' is not a number in 1..65535");
            e.port = static_cast<std::uint16_t>(v);
        }
        u.endpoints.push_back(std::move(e));
    }
    while (!query.empty()) {
        std::string_view kv = query;
        if (auto amp = query.find('&'); amp != std::string_view::npos) {
            kv = query.substr(0, amp);
            query = query.substr(amp + 1);
        } else {
            query = {};
        }
        if (kv.empty()) continue;
        std::string_view k = kv, v;
        if (auto eq = kv.find('='); eq != std::string_view::npos) {
            k = kv.substr(0, eq);
            v = kv.substr(eq + 1);
        }
        std::string key, value;
        if (!detail::percent_decode(k, key, true) || !detail::percent_decode(v, value, true))
            return detail::url_error("bad_escape", text, "a broken %-escape in the query");
        if (key.empty()) return detail::url_error("bad_query", text, "a query parameter without a name");
        if (!u.params.emplace(std::move(key), std::move(value)).second)
            return detail::url_error("bad_query", text, "query parameter '" + std::string(k) + "' given twice");
    }
    return u;
}

}  // namespace bridge
COURIER_END_NAMESPACE
