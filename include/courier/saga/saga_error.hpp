// The saga runner's own error codes (`saga_errc`, category "courier.saga"): a corrupt journal,
// a journal that cannot be written, a saga whose definition is not registered. Generic cases
// (no such saga, a saga that already finished) use courier's `errc`.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>

#include <string>
#include <system_error>
#include <type_traits>

COURIER_BEGIN_NAMESPACE

/// Errors of the saga runner and its journals. Values are stable.
enum class saga_errc : int {
    journal_corrupt = 1,  ///< a journal record that is not the last one fails its checksum or does not parse
    journal_io,           ///< the journal could not be opened, read or written
    unknown_definition,   ///< a journal names a saga definition this runner does not know
    invalid_definition,   ///< a definition is malformed (duplicate step names, unknown branch target)
};

namespace detail {
class saga_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "courier.saga"; }
    std::string message(int value) const override {
        switch (static_cast<saga_errc>(value)) {
        case saga_errc::journal_corrupt: return "corrupt saga journal";
        case saga_errc::journal_io: return "saga journal i/o error";
        case saga_errc::unknown_definition: return "unknown saga definition";
        case saga_errc::invalid_definition: return "invalid saga definition";
        }
        return "unknown saga error";
    }
};
}  // namespace detail

/// The category of `saga_errc`.
inline const std::error_category& saga_category() noexcept {
    static const detail::saga_category_impl instance;
    return instance;
}

inline std::error_code make_error_code(saga_errc e) noexcept { return {static_cast<int>(e), saga_category()}; }

COURIER_END_NAMESPACE

template <>
struct std::is_error_code_enum<courier::saga_errc> : std::true_type {};
