// The typed-event contract. A typed event is a plain struct that declares
// `static constexpr courier::event_name event_type{"order.created.v1"};` and has nlohmann_json
// to_json/from_json (the NLOHMANN_DEFINE_TYPE_* macros work as they are). `event_traits`
// reads the name and can be specialized for types you cannot change.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/event/event_name.hpp>

#include <nlohmann/json.hpp>

#include <concepts>
#include <exception>
#include <string>
#include <type_traits>

COURIER_BEGIN_NAMESPACE

namespace detail {
template <class T>
concept has_event_type_member = requires {
    requires std::same_as<std::remove_cvref_t<decltype(T::event_type)>, event_name>;
};
}  // namespace detail

/// How courier learns a type's event name.
///
/// The primary template is empty; for a type with a `static constexpr event_name event_type`
/// member it exposes that member. Specialize it for a type you cannot change:
/// ```
/// template <>
/// struct courier::event_traits<vendor::payment> {
///     static constexpr courier::event_name event_type{"payment.settled.v1"};
/// };
/// ```
/// Thread safety: compile-time only.
template <class T>
struct event_traits {};

/// The specialization for types that declare `event_type` themselves.
template <class T>
    requires detail::has_event_type_member<T>
struct event_traits<T> {
    static constexpr event_name event_type = T::event_type;
};

/// A type with a compile-time event name (through `event_traits`).
template <class T>
concept named_event = std::is_class_v<T> && requires {
    requires std::same_as<std::remove_cvref_t<decltype(event_traits<T>::event_type)>, event_name>;
    // Forces a constant expression: a name computed at run time is not a typed event's name.
    typename std::integral_constant<int, event_traits<T>::event_type.version()>;
};

/// A typed event: a named event that is a movable value and converts to and from JSON with
/// nlohmann_json (to_json/from_json found by ADL or an adl_serializer specialization).
template <class T>
concept typed_event = named_event<T> && std::move_constructible<T> && !std::is_const_v<T> &&
                      std::is_constructible_v<nlohmann::json, const T&> &&
                      requires(const nlohmann::json& j) {
                          { j.template get<T>() } -> std::same_as<T>;
                      };

/// The event name of `T`, e.g. `event_type_of<order_created>().str() == "order.created.v1"`.
template <named_event T>
constexpr event_name event_type_of() noexcept {
    return event_traits<T>::event_type;
}

/// The JSON data of a typed event (what goes into `envelope::data`).
///
/// Errors: throws what the type's to_json throws (nlohmann's own to_json never throws for
/// plain structs).
template <typed_event T>
nlohmann::json to_data(const T& ev) {
    return nlohmann::json(ev);
}

/// A typed event rebuilt from JSON data.
///
/// Errors: errc::malformed_envelope, "[courier.event.bad_data] order.created.v1: <what
/// from_json reported>", when the data does not convert (a missing key, a wrong type). Never
/// throws for conversion failures.
template <typed_event T>
result<T> from_data(const nlohmann::json& data) {
    try {
        return data.template get<T>();
    } catch (const std::exception& e) {
        return unexpected(errc::malformed_envelope, "[courier.event.bad_data] " +
                                                        std::string(event_type_of<T>().str()) +
                                                        ": data does not convert: " + e.what());
    }
}

COURIER_END_NAMESPACE
