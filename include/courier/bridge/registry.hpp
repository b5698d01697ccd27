// Picks a transport by URL scheme. Each adapter header registers its factory when it is
// included (loopback.hpp, redis.hpp, ...), so `make_transport("redis://...")` works in a program
// that includes <courier/bridge/redis.hpp> and links courier::bridge_redis, and says exactly that
// when it does not.
#pragma once

#include <courier/bridge/transport.hpp>
#include <courier/bridge/url.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE
namespace bridge {

/// Makes an (unconnected) transport from a parsed URL; errors for options it does not accept.
using transport_factory = std::function<result<std::unique_ptr<transport>>(const broker_url&)>;

namespace detail {
struct transport_registry {
    std::mutex mutex;
    std::array<transport_factory, 5> factories;  // by broker_scheme
    static transport_registry& instance() {
        static transport_registry r;
        return r;
    }
};
}  // namespace detail

/// Registers the factory of one scheme (an adapter header does it at static initialization:
/// `inline const bool registered = courier::bridge::register_transport(broker_scheme::redis, f);`).
/// A second registration replaces the first. Returns true (for that idiom).
/// Thread safety: any thread.
inline bool register_transport(broker_scheme scheme, transport_factory factory) {
    auto& r = detail::transport_registry::instance();
    std::lock_guard lock(r.mutex);
    r.factories[static_cast<std::size_t>(scheme)] = std::move(factory);
    return true;
}

/// True when an adapter for `scheme` is compiled into this program.
inline bool has_transport(broker_scheme scheme) {
    auto& r = detail::transport_registry::instance();
    std::lock_guard lock(r.mutex);
    return static_cast<bool>(r.factories[static_cast<std::size_t>(scheme)]);
}

/// A transport for a parsed URL.
/// Errors: "[courier.bridge.url.no_adapter]" (errc::invalid_argument) when no adapter for the
/// scheme is compiled in; otherwise what the adapter's factory says about its options.
inline result<std::unique_ptr<transport>> make_transport(const broker_url& url) {
    transport_factory f;
    {
        auto& r = detail::transport_registry::instance();
        std::lock_guard lock(r.mutex);
        f = r.factories[static_cast<std::size_t>(url.scheme)];
    }
    if (!f) {
        const std::string s(to_string(url.scheme));
        return unexpected(errc::invalid_argument,
                          "[courier.bridge.url.no_adapter] no adapter for '" + s + "://' in this program: include <courier/bridge/" +
                              s + ".hpp> and link courier::bridge_" + s + " (" + url.redacted() + ")");
    }
    return f(url);
}

/// A transport for a URL text (see parse_broker_url for the URL errors).
inline result<std::unique_ptr<transport>> make_transport(std::string_view url) {
    auto parsed = parse_broker_url(url);
    if (!parsed) return unexpected(parsed.error());
    return make_transport(*parsed);
}

}  // namespace bridge
COURIER_END_NAMESPACE
