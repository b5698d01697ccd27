// What the saga test files share.
#pragma once

#include <courier/core/retry_policy.hpp>

#include <cstdint>

namespace saga_support {

/// A fixed retry policy without jitter: attempts land exactly on the manual clock's steps.
inline courier::retry_policy fixed(courier::duration d, std::uint32_t attempts) {
    auto p = courier::retry_policy::fixed(d, attempts);
    p.jitter = 0;
    return p;
}

}  // namespace saga_support
