// Version, the versioned inline namespace and the few macros every courier header uses.
// Two courier versions linked into one program get distinct mangled names
// (courier::v0_1 vs courier::v0_2), so a mix-up fails at link time instead of at run time.
#pragma once

#include <cstddef>

#define COURIER_VERSION_MAJOR 0
#define COURIER_VERSION_MINOR 1
#define COURIER_VERSION_PATCH 0
#define COURIER_VERSION_STRING "0.1.0"

#define COURIER_ABI_NAMESPACE v0_1

/// Opens `namespace courier` and its versioned inline namespace.
#define COURIER_BEGIN_NAMESPACE \
    namespace courier {         \
    inline namespace COURIER_ABI_NAMESPACE {
/// Closes what COURIER_BEGIN_NAMESPACE opened.
#define COURIER_END_NAMESPACE \
    }                         \
    }

#if defined(__GNUC__) || defined(__clang__)
#define COURIER_LIKELY(x) __builtin_expect(!!(x), 1)
#define COURIER_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define COURIER_NOINLINE __attribute__((noinline))
#define COURIER_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define COURIER_LIKELY(x) (x)
#define COURIER_UNLIKELY(x) (x)
#define COURIER_NOINLINE
#define COURIER_ALWAYS_INLINE inline
#endif

COURIER_BEGIN_NAMESPACE

/// Size of a cache line, used to keep hot atomics written by different threads apart.
/// 64 on every x86-64 and most ARM64 parts; std::hardware_destructive_interference_size
/// is avoided because g++ warns that its value is not ABI-stable.
inline constexpr std::size_t cache_line_size = 64;

COURIER_END_NAMESPACE
