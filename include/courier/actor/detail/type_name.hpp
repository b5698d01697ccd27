// Compile-time type identity and readable type names without RTTI strings: a unique address
// per type (to compare types that travel type-erased) and the name the compiler prints for it
// (for failure reports, dead letters and events). Used by the actor and job layers.
#pragma once

#include <courier/core/config.hpp>

#include <string_view>

COURIER_BEGIN_NAMESPACE
namespace detail {

template <class T>
struct type_tag {
    static constexpr char id = 0;
};

/// A unique address per type: equal for the same type in every translation unit.
template <class T>
constexpr const void* type_id() noexcept {
    return &type_tag<T>::id;
}

/// The type's name as the compiler spells it ("app::send_email"), taken from
/// __PRETTY_FUNCTION__ at compile time (no allocation, no demangling at run time).
template <class T>
constexpr std::string_view type_name() noexcept {
#if defined(__clang__) || defined(__GNUC__)
    constexpr std::string_view p = __PRETTY_FUNCTION__;
    // g++: "... type_name() [with T = app::x; std::string_view = ...]"; clang: "... [T = app::x]"
    constexpr auto start = p.find("T = ");
    if constexpr (start == std::string_view::npos) {
        return "unknown";
    } else {
        constexpr auto end = p.find_first_of(";]", start + 4);
        return p.substr(start + 4, end - start - 4);
    }
#else
    return "unknown";
#endif
}

}  // namespace detail
COURIER_END_NAMESPACE
