// Tests for courier/core/uuid.hpp: the value type, its text form, and UUID v7 generation
// (layout, strict per-thread monotonicity, uniqueness across threads).
#include <courier/core/uuid.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

using courier::uuid;

namespace {
const courier::time_point t0 = courier::time_point(std::chrono::milliseconds(1735689600123));
}

TEST_CASE("uuid defaults to nil and prints the canonical nil text", "[event][uuid]") {
    constexpr uuid nil;
    STATIC_REQUIRE(nil.is_nil());
    STATIC_REQUIRE(nil.version() == 0);
    CHECK(nil.to_string() == "00000000-0000-0000-0000-000000000000");
}

TEST_CASE("uuid round-trips through its text form and bytes", "[event][uuid]") {
    const auto u = uuid::from_u64(0x0123456789abcdefULL, 0xfedcba9876543210ULL);
    CHECK(u.to_string() == "01234567-89ab-cdef-fedc-ba9876543210");
    auto parsed = uuid::parse("01234567-89ab-cdef-fedc-ba9876543210");
    REQUIRE(parsed);
    CHECK(*parsed == u);

    SECTION("upper case hex is accepted, lower case is printed") {
        auto upper = uuid::parse("01234567-89AB-CDEF-FEDC-BA9876543210");
        REQUIRE(upper);
        CHECK(*upper == u);
        CHECK(upper->to_string() == "01234567-89ab-cdef-fedc-ba9876543210");
    }
    SECTION("bytes are in network order") {
        const auto b = u.bytes();
        CHECK(b[0] == 0x01);
        CHECK(b[7] == 0xef);
        CHECK(b[8] == 0xfe);
        CHECK(b[15] == 0x10);
        CHECK(uuid::from_bytes(b) == u);
    }
    SECTION("to_chars writes exactly 36 characters") {
        char buf[40];
        std::fill(std::begin(buf), std::end(buf), '#');
        CHECK(u.to_chars(buf) == buf + 36);
        CHECK(buf[36] == '#');
    }
}

TEST_CASE("uuid text matches a digit-by-digit rendering of its bytes", "[event][uuid]") {
    auto reference = [](std::uint64_t hi, std::uint64_t lo) {
        std::string out;
        constexpr char hex[] = "0123456789abcdef";
        for (int i = 0; i < 16; ++i) {
            if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
            const std::uint64_t word = i < 8 ? hi : lo;
            const auto byte = static_cast<unsigned>(word >> (56 - 8 * (i % 8))) & 0xFFu;
            out += hex[byte >> 4];
            out += hex[byte & 0xF];
        }
        return out;
    };
    std::mt19937_64 rng(17);
    const std::uint64_t fixed[] = {0, ~std::uint64_t{0}, 0x0123456789abcdefULL, 0xfedcba9876543210ULL, 0xa0a0a0a09f9f9f9fULL};
    for (auto hi : fixed)
        for (auto lo : fixed) CHECK(uuid::from_u64(hi, lo).to_string() == reference(hi, lo));
    for (int i = 0; i < 100'000; ++i) {
        const std::uint64_t hi = rng(), lo = rng();
        REQUIRE(uuid::from_u64(hi, lo).to_string() == reference(hi, lo));
    }
}

TEST_CASE("uuid::parse rejects malformed text with a message naming the problem", "[event][uuid]") {
    struct bad_case {
        const char* text;
        const char* says;
    };
    const bad_case cases[] = {
        {"", "expected 36 characters"},
        {"01234567-89ab-cdef-fedc-ba987654321", "got 35"},
        {"01234567-89ab-cdef-fedc-ba98765432100", "got 37"},
        {"0123456789abcdeffedcba9876543210", "got 32"},
        {"01234567_89ab-cdef-fedc-ba9876543210", "expected '-' at offset 8"},
        {"01234567-89ab-cdef-fedc+ba9876543210", "expected '-' at offset 23"},
        {"0123456g-89ab-cdef-fedc-ba9876543210", "invalid hex digit at offset 7"},
        {"{1234567-89ab-cdef-fedc-ba987654321}", "invalid hex digit at offset 0"},
        {"01234567-89ab-cdef-fedc-ba987654321\xc3", "invalid hex digit at offset 35"},  // past ASCII, last digit
        {"01234567-89ab-cdeF-fedc-ba98765432 0", "invalid hex digit at offset 34"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        auto r = uuid::parse(c.text);
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::invalid_argument);
        CHECK(r.error().id() == "courier.core.invalid_uuid");
        CHECK_THAT(r.error().message, Catch::Matchers::Contains(c.says));
    }
}

TEST_CASE("uuid orders like its bytes and hashes both halves", "[event][uuid]") {
    const auto a = uuid::from_u64(1, 0xffffffffffffffffULL);
    const auto b = uuid::from_u64(2, 0);
    CHECK(a < b);
    CHECK(a.bytes() < b.bytes());
    CHECK(uuid::from_u64(1, 2) < uuid::from_u64(1, 3));

    std::unordered_set<uuid> set;
    for (std::uint64_t i = 0; i < 1000; ++i) set.insert(uuid::from_u64(42, i));  // same high half
    CHECK(set.size() == 1000);
    std::set<std::size_t> hashes;
    for (std::uint64_t i = 0; i < 1000; ++i) hashes.insert(std::hash<uuid>{}(uuid::from_u64(42, i)));
    CHECK(hashes.size() == 1000);
}

TEST_CASE("uuid v7 has the RFC 9562 layout: time, version 7, variant 10", "[event][uuid]") {
    courier::uuid_v7_generator gen;
    const auto id = gen(t0);
    CHECK(id.version() == 7);
    CHECK((id.low() >> 62) == 0b10);
    CHECK(id.unix_ts_ms() == 1735689600123ULL);
    CHECK(id.to_string().substr(0, 13) == "01941f29-7c7b");  // 1735689600123 = 0x1941f297c7b
    CHECK(id.to_string()[14] == '7');
    CHECK(!id.is_nil());

    SECTION("instants before 1970 clamp to 0 instead of wrapping") {
        courier::uuid_v7_generator fresh;
        CHECK(fresh(courier::time_point(std::chrono::seconds(-5))).unix_ts_ms() == 0);
    }
    SECTION("make_uuid_v7 uses the current time") {
        const auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
        const auto v = courier::make_uuid_v7();
        CHECK(v.version() == 7);
        CHECK(v.unix_ts_ms() >= static_cast<std::uint64_t>(before));
        CHECK(v.unix_ts_ms() <= static_cast<std::uint64_t>(before) + 60'000);
    }
}

TEST_CASE("uuid v7 ids from one generator strictly increase", "[event][uuid]") {
    courier::uuid_v7_generator gen;
    SECTION("many ids in the same millisecond") {
        uuid prev = gen(t0);
        for (int i = 0; i < 200'000; ++i) {
            const uuid next = gen(t0);
            REQUIRE(prev < next);
            REQUIRE(next.unix_ts_ms() >= prev.unix_ts_ms());
            prev = next;
        }
    }
    SECTION("the clock going backwards does not break the order") {
        const uuid a = gen(t0);
        const uuid b = gen(t0 - std::chrono::seconds(10));
        const uuid c = gen(t0 - std::chrono::hours(1));
        CHECK(a < b);
        CHECK(b < c);
        CHECK(c.unix_ts_ms() == a.unix_ts_ms());  // keeps the last millisecond
        const uuid d = gen(t0 + std::chrono::milliseconds(1));
        CHECK(c < d);
        CHECK(d.unix_ts_ms() == a.unix_ts_ms() + 1);
    }
    SECTION("later milliseconds sort later, whatever the counter") {
        uuid prev = gen(t0);
        for (int ms = 1; ms < 1000; ++ms) {
            const uuid next = gen(t0 + std::chrono::milliseconds(ms));
            REQUIRE(prev < next);
            prev = next;
        }
    }
    SECTION("make_uuid_v7 with the real clock") {
        uuid prev = courier::make_uuid_v7();
        for (int i = 0; i < 100'000; ++i) {
            const uuid next = courier::make_uuid_v7();
            REQUIRE(prev < next);
            prev = next;
        }
    }
}

TEST_CASE("uuid v7 generators seeded alike repeat, seeded apart differ", "[event][uuid]") {
    courier::uuid_v7_generator a(7), b(7), c(8);
    for (int i = 0; i < 100; ++i) {
        const auto x = a(t0);
        CHECK(x == b(t0));
        CHECK(x != c(t0));
    }
}

TEST_CASE("uuid v7 ids are unique across 4 threads x 100k ids, and increase per thread", "[event][uuid]") {
    constexpr int threads = 4;
    const int per_thread = 100'000 / COURIER_STRESS_SCALE;
    std::vector<std::vector<uuid>> ids(threads);
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            auto& mine = ids[static_cast<std::size_t>(t)];
            mine.reserve(static_cast<std::size_t>(per_thread));
            // Half the ids share one instant across threads: the hardest case for uniqueness.
            for (int i = 0; i < per_thread; ++i)
                mine.push_back(i % 2 == 0 ? courier::make_uuid_v7(t0) : courier::make_uuid_v7());
        });
    }
    for (auto& w : workers) w.join();

    std::vector<uuid> all;
    for (const auto& mine : ids) {
        // Mixing a fixed past instant with the real clock must still give increasing ids.
        CHECK(std::adjacent_find(mine.begin(), mine.end(), [](const uuid& x, const uuid& y) { return !(x < y); }) ==
              mine.end());
        all.insert(all.end(), mine.begin(), mine.end());
    }
    std::sort(all.begin(), all.end());
    CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
    CHECK(all.size() == static_cast<std::size_t>(threads * per_thread));
}

TEST_CASE("uuid::parse_quietly reads what parse reads and refuses the rest without a message", "[core][uuid]") {
    // A fixed id: making one would move this thread's v7 generator, which other tests pin.
    const auto id = courier::uuid::from_u64(0x0194228eb57b7abcULL, 0x8def000000000001ULL);
    courier::uuid out;
    REQUIRE(courier::uuid::parse_quietly(id.to_string(), out));
    CHECK(out == id);
    std::string upper = id.to_string();
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    REQUIRE(courier::uuid::parse_quietly(upper, out));
    CHECK(out == id);
    const courier::uuid before = out;
    const std::vector<std::string> refused{std::string(), id.to_string().substr(1), id.to_string() + "0", std::string(36, '-'),
                                           "0194228e_b57b-7000-8000-000000000001", "0194228e-b57b-7000-8000-00000000000g"};
    for (const auto& bad : refused) {
        INFO(bad);
        CHECK_FALSE(courier::uuid::parse_quietly(bad, out));
        CHECK(out == before);  // untouched
        CHECK_FALSE(courier::uuid::parse(bad));
    }
}

TEST_CASE("uuid::parse_quietly agrees with a digit-by-digit reader on every byte at every offset", "[core][uuid]") {
    // The reference: one character at a time, as the error path of parse reads them.
    auto reference = [](std::string_view t, courier::uuid& out) {
        if (t.size() != uuid::text_size) return false;
        std::uint64_t words[2] = {0, 0};
        int k = 0;
        for (std::size_t i = 0; i < t.size(); ++i) {
            const char c = t[i];
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (c != '-') return false;
                continue;
            }
            unsigned v;
            if (c >= '0' && c <= '9') v = static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') v = static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v = static_cast<unsigned>(c - 'A' + 10);
            else return false;
            words[k / 16] = (words[k / 16] << 4) | v;
            ++k;
        }
        out = uuid::from_u64(words[0], words[1]);
        return true;
    };
    std::mt19937_64 rng(29);
    std::vector<std::string> texts{"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
                                   "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "0123456789-abcdefABCDEF-0123456789ab"};
    for (int i = 0; i < 2000; ++i) {
        std::string t = uuid::from_u64(rng(), rng()).to_string();
        for (auto& c : t)
            if (rng() % 2) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        texts.push_back(std::move(t));
    }
    std::size_t accepted = 0, refused = 0;
    auto compare = [&](const std::string& t) {
        uuid got = uuid::from_u64(1, 1), want;
        const bool ok = uuid::parse_quietly(t, got);
        REQUIRE(ok == reference(t, want));
        if (ok) {
            REQUIRE(got == want);
            ++accepted;
        } else {
            REQUIRE(got == uuid::from_u64(1, 1));  // untouched
            ++refused;
        }
    };
    for (const auto& t : texts) compare(t);
    // Every byte value at every offset of a few of them (digits, letters of both cases,
    // bytes just outside each range, control and non-ASCII bytes).
    for (std::size_t which = 0; which < 8; ++which) {
        for (std::size_t offset = 0; offset < uuid::text_size; ++offset) {
            for (int b = 0; b < 256; ++b) {
                std::string t = texts[which];
                t[offset] = static_cast<char>(b);
                INFO("text " << texts[which] << ", offset " << offset << ", byte " << b);
                compare(t);
            }
        }
    }
    CHECK(accepted > 2000);
    CHECK(refused > 50'000);
}
