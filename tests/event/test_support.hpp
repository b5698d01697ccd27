// Shared helpers for the event tests: varied random envelopes for the round-trip properties
// and a matcher-free way to assert an error's stable id.
#pragma once

#include <courier/core/uuid.hpp>
#include <courier/event/envelope.hpp>

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace courier_test {

/// A random string: ASCII, JSON specials, control characters and multi-byte UTF-8.
inline std::string random_text(std::mt19937_64& rng, std::size_t max_len = 12) {
    static const char* const pieces[] = {"a", "z", "0", "_", ".", " ", "\"", "\\", "/", "\n", "\t", "\x01",
                                         "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "{", "}"};
    std::uniform_int_distribution<std::size_t> len(0, max_len);
    std::uniform_int_distribution<std::size_t> pick(0, std::size(pieces) - 1);
    std::string s;
    for (std::size_t n = len(rng); n > 0; --n) s += pieces[pick(rng)];
    return s;
}

/// A random JSON value up to `depth` levels deep.
inline nlohmann::json random_json(std::mt19937_64& rng, int depth) {
    std::uniform_int_distribution<int> kind(0, depth > 0 ? 7 : 5);
    switch (kind(rng)) {
    case 0: return nullptr;
    case 1: return std::uniform_int_distribution<int>(0, 1)(rng) == 1;
    case 2: return std::uniform_int_distribution<std::int64_t>(INT64_MIN, INT64_MAX)(rng);
    case 3: return std::uniform_int_distribution<std::uint64_t>(0, UINT64_MAX)(rng);
    case 4: return std::uniform_real_distribution<double>(-1e12, 1e12)(rng);
    case 5: return random_text(rng);
    case 6: {
        auto a = nlohmann::json::array();
        for (int n = std::uniform_int_distribution<int>(0, 4)(rng); n > 0; --n) a.push_back(random_json(rng, depth - 1));
        return a;
    }
    default: {
        auto o = nlohmann::json::object();
        for (int n = std::uniform_int_distribution<int>(0, 4)(rng); n > 0; --n)
            o[random_text(rng, 6)] = random_json(rng, depth - 1);
        return o;
    }
    }
}

/// A random valid envelope: varied names and versions, microsecond timestamps across the
/// representable range (before 1970 included), metadata and headers with awkward text.
inline courier::envelope random_envelope(std::mt19937_64& rng) {
    static const char* const bases[] = {"order.created", "user.profile.updated", "a.b", "billing.invoice_2.paid"};
    courier::envelope e;
    const int version = std::uniform_int_distribution<int>(1, 120)(rng);
    e.event_type = std::string(bases[std::uniform_int_distribution<std::size_t>(0, 3)(rng)]) + ".v" +
                   std::to_string(version);
    e.version = version;
    courier::uuid id;
    while (id.is_nil()) id = courier::uuid::from_u64(rng(), rng());
    e.event_id = id;
    // Microseconds between 1700 and 2200.
    const std::int64_t us = std::uniform_int_distribution<std::int64_t>(-8'520'336'000'000'000LL,
                                                                        7'258'118'400'000'000LL)(rng);
    e.timestamp = courier::time_point(std::chrono::microseconds(us));
    e.data = random_json(rng, 3);
    e.metadata.producer = random_text(rng);
    e.metadata.trace_id = random_text(rng);
    e.metadata.correlation_id = random_text(rng);
    e.metadata.causation_id = random_text(rng);
    for (int n = std::uniform_int_distribution<int>(0, 5)(rng); n > 0; --n) e.headers[random_text(rng, 6)] = random_text(rng);
    return e;
}

/// Asserts that `r` failed with `code` and the stable id `id` (and, when given, that its
/// message says `says`).
inline void check_error(const courier::result<courier::envelope>& r, courier::errc code, std::string_view id,
                        std::string_view says = {}) {
    REQUIRE_FALSE(r);
    CHECK(r.error() == code);
    CHECK(r.error().id() == id);
    if (!says.empty()) CHECK_THAT(r.error().message, Catch::Matchers::Contains(std::string(says)));
}

}  // namespace courier_test
