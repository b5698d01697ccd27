// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the per-record checksum of the file
// journal. A table computed at compile time; no dependency on zlib.
#pragma once

#include <courier/core/config.hpp>

#include <array>
#include <cstdint>
#include <string_view>

COURIER_BEGIN_NAMESPACE
namespace detail {

constexpr std::array<std::uint32_t, 256> make_crc32_table() noexcept {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
    }
    return t;
}
inline constexpr std::array<std::uint32_t, 256> crc32_table = make_crc32_table();

/// CRC-32 of `data` ("123456789" gives 0xCBF43926).
constexpr std::uint32_t crc32(std::string_view data) noexcept {
    std::uint32_t c = 0xFFFFFFFFu;
    for (unsigned char ch : data) c = crc32_table[(c ^ ch) & 0xFFu] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}
static_assert(crc32("123456789") == 0xCBF43926u);

}  // namespace detail
COURIER_END_NAMESPACE
