// Universally unique identifiers: `uuid`, a 16-byte value with the canonical RFC 9562 text
// form, and `uuid_v7_generator` / `make_uuid_v7`, which make version-7 ids: ordered by time,
// strictly increasing within a thread, and cheap (no syscall, lock or allocation per id).
// Every event_id, job id and saga id in courier is a UUID v7.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/detail/quote.hpp>
#include <courier/core/result.hpp>

#include <array>
#include <bit>
#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <thread>

COURIER_BEGIN_NAMESPACE

/// A 128-bit universally unique identifier (RFC 9562), compared byte by byte.
///
/// Ordering is the order of the 16 bytes, so UUID v7 ids sort by creation time.
/// The default-constructed value is the nil UUID (all zeros).
///
/// Thread safety: a value type; distinct objects may be used concurrently.
///
/// Example:
/// ```
/// courier::uuid id = courier::make_uuid_v7();
/// auto back = courier::uuid::parse(id.to_string());   // back.value() == id
/// ```
class uuid {
public:
    /// Number of characters in the canonical text form (8-4-4-4-12 hex digits).
    static constexpr std::size_t text_size = 36;

    /// The nil UUID.
    constexpr uuid() noexcept = default;

    /// The UUID whose bytes 0-7 are `high` and bytes 8-15 are `low`, both big-endian.
    static constexpr uuid from_u64(std::uint64_t high, std::uint64_t low) noexcept {
        uuid u;
        u.hi_ = high;
        u.lo_ = low;
        return u;
    }

    /// The UUID with these 16 bytes, in network order.
    static constexpr uuid from_bytes(const std::array<std::uint8_t, 16>& b) noexcept {
        std::uint64_t hi = 0, lo = 0;
        for (std::size_t i = 0; i < 8; ++i) hi = (hi << 8) | b[i];
        for (std::size_t i = 8; i < 16; ++i) lo = (lo << 8) | b[i];
        return from_u64(hi, lo);
    }

    /// The 16 bytes, in network order.
    constexpr std::array<std::uint8_t, 16> bytes() const noexcept {
        std::array<std::uint8_t, 16> b{};
        for (std::size_t i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(hi_ >> (56 - 8 * i));
        for (std::size_t i = 0; i < 8; ++i) b[8 + i] = static_cast<std::uint8_t>(lo_ >> (56 - 8 * i));
        return b;
    }

    /// Bytes 0-7 as a big-endian integer.
    constexpr std::uint64_t high() const noexcept { return hi_; }
    /// Bytes 8-15 as a big-endian integer.
    constexpr std::uint64_t low() const noexcept { return lo_; }

    /// True for the nil UUID (all zeros).
    constexpr bool is_nil() const noexcept { return hi_ == 0 && lo_ == 0; }

    /// The version field (7 for ids from `make_uuid_v7`, 4 for random ids, 0 for nil).
    constexpr int version() const noexcept { return static_cast<int>((hi_ >> 12) & 0xF); }

    /// For a version-7 UUID, the Unix time in milliseconds it carries.
    constexpr std::uint64_t unix_ts_ms() const noexcept { return hi_ >> 16; }

    /// Writes the canonical lowercase text form (exactly `text_size` characters, no
    /// terminator) to `out` and returns `out + text_size`. Does not allocate.
    char* to_chars(char* out) const noexcept {
        // Eight hex digits per 32 bits at once (see hex8), copied to fixed positions: a branch
        // and a table load per digit cost 160 instructions an id, and every message formats one
        // or two.
        const std::uint64_t a = hex8(static_cast<std::uint32_t>(hi_ >> 32)), b = hex8(static_cast<std::uint32_t>(hi_)),
                            c = hex8(static_cast<std::uint32_t>(lo_ >> 32)), d = hex8(static_cast<std::uint32_t>(lo_));
        const char* pb = reinterpret_cast<const char*>(&b);
        const char* pc = reinterpret_cast<const char*>(&c);
        std::memcpy(out, &a, 8);
        out[8] = '-';
        std::memcpy(out + 9, pb, 4);
        out[13] = '-';
        std::memcpy(out + 14, pb + 4, 4);
        out[18] = '-';
        std::memcpy(out + 19, pc, 4);
        out[23] = '-';
        std::memcpy(out + 24, pc + 4, 4);
        std::memcpy(out + 28, &d, 8);
        return out + text_size;
    }

    /// The canonical lowercase text form, e.g. "01942f3c-8a7b-7cde-8f01-23456789abcd".
    std::string to_string() const {
        std::string s(text_size, '\0');
        to_chars(s.data());
        return s;
    }

    /// Parses the canonical 8-4-4-4-12 form; hex digits may be upper or lower case.
    ///
    /// Errors: errc::invalid_argument, message id "[courier.core.invalid_uuid]", naming the
    /// offending character and its offset.
    static result<uuid> parse(std::string_view text) {
        auto fail = [&](std::string why) {
            return unexpected(errc::invalid_argument,
                              "[courier.core.invalid_uuid] " + detail::quote_for_message(text, 64) + ": " + why);
        };
        if (text.size() != text_size)
            return fail("expected " + std::to_string(text_size) +
                        " characters (8-4-4-4-12 hex digits), got " + std::to_string(text.size()));
        if (uuid u; parse_quietly(text, u)) return u;
        // Only now look for the first problem, to name it.
        for (std::size_t i = 0; i < text.size(); ++i) {
            const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
            if (dash && text[i] != '-') return fail("expected '-' at offset " + std::to_string(i));
            if (!dash && hex_digit_value(text[i]) > 15) return fail("invalid hex digit at offset " + std::to_string(i));
        }
        return fail("not a UUID");  // not reached: the loop above names the problem
    }

    /// The canonical text form (any hex case) into `out`, without an error message: false for
    /// anything else. For hints on hot paths; `parse` says what is wrong.
    static bool parse_quietly(std::string_view text, uuid& out) noexcept {
        if (text.size() != text_size) return false;
        // Eight digits per word (see unhex8): a digit at a time cost 500 instructions an id, and
        // a bridge reads one or two per message it ingests.
        const char* p = text.data();
        if (p[8] != '-' || p[13] != '-' || p[18] != '-' || p[23] != '-') return false;
        char middle[16];
        std::memcpy(middle, p + 9, 4);
        std::memcpy(middle + 4, p + 14, 4);
        std::memcpy(middle + 8, p + 19, 4);
        std::memcpy(middle + 12, p + 24, 4);
        std::uint64_t bad = 0;
        const std::uint64_t a = unhex8(p, bad), b = unhex8(middle, bad), c = unhex8(middle + 8, bad), d = unhex8(p + 28, bad);
        if (bad != 0) return false;
        out = from_u64((a << 32) | b, (c << 32) | d);
        return true;
    }

    friend constexpr bool operator==(const uuid&, const uuid&) noexcept = default;
    /// Byte order: for UUID v7 this is creation order.
    friend constexpr std::strong_ordering operator<=>(const uuid&, const uuid&) noexcept = default;

private:
    // 0-15 for a hex digit, 0x100 for any other byte.
    static unsigned hex_digit_value(char c) noexcept {
        static constexpr auto table = [] {
            std::array<std::uint16_t, 256> t{};
            for (auto& v : t) v = 0x100;
            for (int i = 0; i < 10; ++i) t['0' + i] = static_cast<std::uint16_t>(i);
            for (int i = 0; i < 6; ++i) {
                t['a' + i] = static_cast<std::uint16_t>(10 + i);
                t['A' + i] = static_cast<std::uint16_t>(10 + i);
            }
            return t;
        }();
        return table[static_cast<unsigned char>(c)];
    }

    // The value of the eight hex digits (either case) at `p`, the first most significant; sets
    // bits of `bad` when a byte is not one. Each byte is tested against both ranges at once:
    // below 0x80, b + (0x80 - lo) has its top bit set when b >= lo, and b + (0x7F - hi) when
    // b > hi, without a carry into the next byte. A digit's value is its low nibble, plus 9 for
    // a letter (bit 6 set).
    static std::uint64_t unhex8(const char* p, std::uint64_t& bad) noexcept {
        constexpr std::uint64_t ones = 0x0101010101010101u;
        std::uint64_t x;
        std::memcpy(&x, p, 8);
        if constexpr (std::endian::native == std::endian::little) x = __builtin_bswap64(x);  // first digit in the top byte
        const std::uint64_t lower = x | (ones * 0x20);
        const std::uint64_t digit = (x + ones * (0x80 - '0')) & ~(x + ones * (0x7F - '9'));
        const std::uint64_t letter = (lower + ones * (0x80 - 'a')) & ~(lower + ones * (0x7F - 'f'));
        bad |= (x | ~(digit | letter)) & (ones * 0x80);
        x = (x & (ones * 0x0F)) + ((x >> 6) & ones) * 9;
        x = (x | (x >> 4)) & 0x00FF00FF00FF00FFu;
        x = (x | (x >> 8)) & 0x0000FFFF0000FFFFu;
        return (x | (x >> 16)) & 0xFFFFFFFFu;
    }

    // The eight lowercase hex digits of `v`, most significant first, as the bytes of a word in
    // memory order: each nibble is spread into a byte of its own, then turned into its digit
    // ('0' + n, plus 39 more when n >= 10, which is where n + 6 carries into bit 4).
    static std::uint64_t hex8(std::uint32_t v) noexcept {
        std::uint64_t x = v;
        x = ((x & 0xFFFF0000u) << 16) | (x & 0x0000FFFFu);
        x = ((x & 0x0000FF000000FF00u) << 8) | (x & 0x000000FF000000FFu);
        x = ((x & 0x00F000F000F000F0u) << 4) | (x & 0x000F000F000F000Fu);
        const std::uint64_t letters = ((x + 0x0606060606060606u) >> 4) & 0x0101010101010101u;
        x += 0x3030303030303030u + letters * static_cast<std::uint64_t>('a' - '0' - 10);
        if constexpr (std::endian::native == std::endian::little) x = __builtin_bswap64(x);
        return x;
    }

    // Two big-endian words rather than a byte array: comparison and hashing are two integer
    // operations, and the defaulted <=> on (hi_, lo_) equals byte-wise order.
    std::uint64_t hi_ = 0;
    std::uint64_t lo_ = 0;
};

namespace detail {

/// SplitMix64 step: expands seed material into well-mixed 64-bit words.
constexpr std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/// xoshiro256** (Blackman and Vigna): a fast, small-state PRNG with a 2^256-1 period. Not
/// cryptographic; UUID v7 needs uniqueness, not secrecy (RFC 9562 section 6.9).
class xoshiro256ss {
public:
    explicit constexpr xoshiro256ss(std::uint64_t seed = 0) noexcept {
        for (auto& w : s_) w = splitmix64(seed);
    }
    constexpr std::uint64_t operator()() noexcept {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

private:
    static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
    std::uint64_t s_[4]{};
};

/// 64 bits of seed entropy from std::random_device, falling back to addresses and clocks
/// when the platform has no random device (random_device's constructor may throw).
inline std::uint64_t entropy_seed() noexcept {
    std::uint64_t seed = 0;
    try {
        std::random_device rd;
        seed = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
        seed ^= (static_cast<std::uint64_t>(rd()) << 16);  // a third draw: rd() may be 32 bits
    } catch (...) {
    }
    // Mixed in even when random_device worked, so two threads can never share a seed even
    // on a platform whose random_device is deterministic (old MinGW).
    static int anchor = 0;
    std::uint64_t mix = seed;
    mix ^= splitmix64(mix) ^ static_cast<std::uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    mix ^= static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    mix ^= static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&anchor)) << 1;
    mix ^= static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&seed));
    return splitmix64(mix);
}

}  // namespace detail

/// Makes RFC 9562 UUID version 7 ids: 48-bit Unix milliseconds, then a 42-bit counter, then
/// 32 random bits.
///
/// The counter (RFC 9562 section 6.2, method 1, "fixed bit-length dedicated counter", using
/// rand_a and the top 30 bits of rand_b) starts at a random value with its top bit clear
/// whenever the millisecond advances and is incremented for each further id in the same
/// millisecond, so the ids of one generator strictly increase. If the clock goes backwards
/// the generator keeps the last millisecond and keeps counting; if the counter overflows
/// (after 2^41 ids in one millisecond, i.e. never in practice) it borrows the next
/// millisecond. Ids from different generators are unique with overwhelming probability:
/// each millisecond starts at a random 41-bit counter value and every id carries 32 fresh
/// random bits.
///
/// Cost: one xoshiro256** step per id (a few nanoseconds); seeded once, at construction,
/// from std::random_device.
///
/// Thread safety: not thread-safe; use one generator per thread (`make_uuid_v7` keeps a
/// thread_local one). After fork() a child process must not keep using a generator copied
/// from its parent, or both would produce the same ids.
class uuid_v7_generator {
public:
    /// Seeds from std::random_device (once).
    uuid_v7_generator() noexcept : rng_(detail::entropy_seed()) {}
    /// Seeds deterministically, for reproducible tests.
    explicit uuid_v7_generator(std::uint64_t seed) noexcept : rng_(seed) {}

    /// The next id for the instant `now` (only its millisecond is used).
    uuid operator()(time_point now) noexcept {
        const auto ms_signed =
            std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
        std::uint64_t ms = ms_signed < 0 ? 0 : static_cast<std::uint64_t>(ms_signed);
        if (ms > max_ms) ms = max_ms;
        if (ms > last_ms_ || !started_) {
            started_ = true;
            last_ms_ = ms;
            counter_ = rng_() & counter_seed_mask;
        } else if (++counter_ > counter_mask) {
            ++last_ms_;  // counter overflow: borrow the next millisecond (RFC 9562 6.2)
            counter_ = rng_() & counter_seed_mask;
        }
        const std::uint64_t rand_a = counter_ >> 30;                     // top 12 counter bits
        const std::uint64_t counter_low = counter_ & ((1ULL << 30) - 1);  // low 30 counter bits
        const std::uint64_t hi = (last_ms_ << 16) | (0x7ULL << 12) | rand_a;
        const std::uint64_t lo = (0x2ULL << 62) | (counter_low << 32) | (rng_() & 0xFFFFFFFFULL);
        return uuid::from_u64(hi, lo);
    }

private:
    static constexpr std::uint64_t max_ms = (1ULL << 48) - 1;
    static constexpr std::uint64_t counter_mask = (1ULL << 42) - 1;
    // The top counter bit starts clear so a millisecond has at least 2^41 ids of headroom.
    static constexpr std::uint64_t counter_seed_mask = (1ULL << 41) - 1;

    detail::xoshiro256ss rng_;
    std::uint64_t last_ms_ = 0;
    std::uint64_t counter_ = 0;
    bool started_ = false;
};

/// A new UUID v7 for the instant `now`, from this thread's generator.
///
/// Ids made by one thread strictly increase (see `uuid_v7_generator`).
/// Thread safety: may be called from any thread; each thread has its own generator.
inline uuid make_uuid_v7(time_point now) noexcept {
    thread_local uuid_v7_generator generator;
    return generator(now);
}

/// A new UUID v7 for the current system time.
inline uuid make_uuid_v7() noexcept { return make_uuid_v7(std::chrono::system_clock::now()); }

COURIER_END_NAMESPACE

/// Hash support, so `uuid` can key unordered containers.
template <>
struct std::hash<courier::uuid> {
    std::size_t operator()(const courier::uuid& u) const noexcept {
        // Mix both halves: v7 ids share their high bits within a millisecond.
        std::uint64_t h = u.high() * 0x9E3779B97F4A7C15ULL ^ u.low();
        h ^= h >> 32;
        h *= 0xD6E8FEB86659FD93ULL;
        h ^= h >> 32;
        return static_cast<std::size_t>(h);
    }
};
