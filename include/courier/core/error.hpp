// courier's error vocabulary: `errc` with a std::error_category (so errors travel through
// std::error_code and Asio completion handlers), `error` (a code plus a message that starts
// with a stable identifier such as "[courier.event.invalid_name]"), and the typed exception
// thrown where a fallible call has no result to return.
#pragma once

#include <courier/core/config.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

COURIER_BEGIN_NAMESPACE

/// Every error courier reports. Values are stable: they are part of the API and appear in logs.
enum class errc : int {
    closed = 1,           ///< the queue, bus or runtime was closed
    full,                 ///< a bounded queue is full and its policy is `fail`
    timeout,              ///< a deadline passed before the operation completed
    cancelled,            ///< the operation was cancelled by its caller
    invalid_name,         ///< a run-time event name is malformed
    invalid_pattern,      ///< a run-time topic pattern is malformed
    malformed_envelope,   ///< bytes that should be an envelope are not one
    limit_exceeded,       ///< input beyond a configured limit (size, depth, count)
    unknown_event,        ///< no type or upcaster is registered for the event
    version_mismatch,     ///< an event version that no upcaster can bring to the wanted one
    no_responders,        ///< a request was sent where nobody answers
    handler_failed,       ///< a user handler threw or returned an error
    duplicate,            ///< an idempotency key or dedup key is already taken
    not_found,            ///< no entity with that id
    invalid_argument,     ///< a configuration or argument outside its domain
    invalid_state,        ///< the operation does not fit the object's current state
    io_error,             ///< a file or socket operation failed
    trimmed,              ///< a stream offset that retention already removed
    dropped,              ///< an item was dropped by an overflow policy
};

namespace detail {

class courier_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "courier"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::closed: return "closed";
        case errc::full: return "queue full";
        case errc::timeout: return "timed out";
        case errc::cancelled: return "cancelled";
        case errc::invalid_name: return "invalid event name";
        case errc::invalid_pattern: return "invalid topic pattern";
        case errc::malformed_envelope: return "malformed envelope";
        case errc::limit_exceeded: return "limit exceeded";
        case errc::unknown_event: return "unknown event";
        case errc::version_mismatch: return "event version mismatch";
        case errc::no_responders: return "no responders";
        case errc::handler_failed: return "handler failed";
        case errc::duplicate: return "duplicate";
        case errc::not_found: return "not found";
        case errc::invalid_argument: return "invalid argument";
        case errc::invalid_state: return "invalid state";
        case errc::io_error: return "i/o error";
        case errc::trimmed: return "trimmed";
        case errc::dropped: return "dropped";
        }
        return "unknown courier error";
    }
};

}  // namespace detail

/// The category of courier's `errc` values.
inline const std::error_category& courier_category() noexcept {
    static const detail::courier_category_impl instance;
    return instance;
}

inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), courier_category()};
}

/// An error code with a human message. The message starts with a stable identifier in
/// brackets ("[courier.queue.closed] ...") that tests and log filters can rely on.
struct error {
    std::error_code code;
    std::string message;

    error() = default;
    error(std::error_code c, std::string m) : code(c), message(std::move(m)) {}
    error(errc c, std::string m) : code(make_error_code(c)), message(std::move(m)) {}

    /// The identifier between the leading brackets, or an empty view.
    std::string_view id() const noexcept {
        if (message.size() < 2 || message.front() != '[') return {};
        auto end = message.find(']');
        return end == std::string::npos ? std::string_view{} : std::string_view(message).substr(1, end - 1);
    }
    friend bool operator==(const error& e, errc c) noexcept { return e.code == make_error_code(c); }
};

/// Thrown by the few calls that cannot return a result (constructors, operators).
/// Carries the same `error` a result would.
class courier_error : public std::system_error {
public:
    explicit courier_error(courier::error e)
        : std::system_error(e.code, e.message), error_(std::move(e)) {}
    const courier::error& err() const noexcept { return error_; }

private:
    courier::error error_;
};

COURIER_END_NAMESPACE

template <>
struct std::is_error_code_enum<courier::errc> : std::true_type {};
