// result<T>: a value or a courier::error, for fallible setup and I/O (an expected-like type;
// std::expected is C++23). Marked [[nodiscard]] on the class so an ignored error warns.
#pragma once

#include <courier/core/error.hpp>

#include <cassert>
#include <type_traits>
#include <utility>
#include <variant>

COURIER_BEGIN_NAMESPACE

/// Wraps an error so `result<T>` can be constructed from it unambiguously.
struct unexpected {
    courier::error err;
    explicit unexpected(courier::error e) : err(std::move(e)) {}
    unexpected(errc c, std::string message) : err(c, std::move(message)) {}
};

/// A value of type T, or an `error` saying why there is none.
///
/// Thread safety: like any value type; distinct objects may be used concurrently.
/// Errors: `value()` on an error throws `courier_error` carrying it.
template <class T>
class [[nodiscard]] result {
public:
    using value_type = T;

    template <class U = T, std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                                !std::is_same_v<std::decay_t<U>, result> &&
                                                !std::is_same_v<std::decay_t<U>, unexpected>,
                                            int> = 0>
    result(U&& v) : state_(std::in_place_index<0>, std::forward<U>(v)) {}
    result(unexpected u) : state_(std::in_place_index<1>, std::move(u.err)) {}

    bool has_value() const noexcept { return state_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    T& value() & { check(); return std::get<0>(state_); }
    const T& value() const& { check(); return std::get<0>(state_); }
    T&& value() && { check(); return std::get<0>(std::move(state_)); }
    T& operator*() & noexcept { assert(has_value()); return *std::get_if<0>(&state_); }
    const T& operator*() const& noexcept { assert(has_value()); return *std::get_if<0>(&state_); }
    T* operator->() noexcept { assert(has_value()); return std::get_if<0>(&state_); }
    const T* operator->() const noexcept { assert(has_value()); return std::get_if<0>(&state_); }

    /// The error; only valid when `!has_value()`.
    const courier::error& error() const& noexcept { assert(!has_value()); return *std::get_if<1>(&state_); }
    courier::error&& error() && noexcept { assert(!has_value()); return std::move(*std::get_if<1>(&state_)); }

    template <class U>
    T value_or(U&& fallback) const& {
        return has_value() ? std::get<0>(state_) : static_cast<T>(std::forward<U>(fallback));
    }

private:
    void check() const {
        if (!has_value()) throw courier_error(*std::get_if<1>(&state_));
    }
    std::variant<T, courier::error> state_;
};

/// result<void>: success, or an error.
template <>
class [[nodiscard]] result<void> {
public:
    result() = default;
    result(unexpected u) : error_(std::move(u.err)), failed_(true) {}

    bool has_value() const noexcept { return !failed_; }
    explicit operator bool() const noexcept { return !failed_; }
    void value() const {
        if (failed_) throw courier_error(error_);
    }
    const courier::error& error() const& noexcept { assert(failed_); return error_; }

private:
    courier::error error_;
    bool failed_ = false;
};

COURIER_END_NAMESPACE
