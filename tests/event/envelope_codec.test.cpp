// Tests for courier/event/envelope_codec.hpp: the wire format, RFC 3339 timestamps, the
// encode/decode round trip over varied envelopes, and every malformed-input error by id.
#include <courier/event/envelope_codec.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <random>
#include <string>

#include "event/test_support.hpp"

using courier::decode;
using courier::encode;
using courier::envelope;
using nlohmann::json;

using courier_test::check_error;

namespace {

constexpr const char* golden_id = "0194228e-b57b-7000-8000-000000000001";

envelope golden_envelope() {
    envelope e;
    e.event_type = "order.created.v1";
    e.event_id = *courier::uuid::parse(golden_id);
    e.timestamp = courier::time_point(std::chrono::microseconds(1'735'689'600'123'456LL));
    e.version = 1;
    e.data = json{{"order_id", "o-1"}, {"amount", 12.5}};
    e.metadata = {"orders", "trace-1", "corr-1", "cause-1"};
    e.headers = {{"tenant", "acme"}, {"traceparent", "00-abc-def-01"}};
    return e;
}

const std::string golden_text =
    R"({"event_type":"order.created.v1","event_id":"0194228e-b57b-7000-8000-000000000001",)"
    R"("timestamp":"2025-01-01T00:00:00.123456Z","version":1,"data":{"amount":12.5,"order_id":"o-1"},)"
    R"("metadata":{"producer":"orders","trace_id":"trace-1","correlation_id":"corr-1","causation_id":"cause-1"},)"
    R"("headers":{"tenant":"acme","traceparent":"00-abc-def-01"}})";

// The golden envelope as JSON, edited by `edit`, then encoded to text.
template <class Edit>
std::string edited_golden(Edit edit) {
    json j = json::parse(golden_text);
    edit(j);
    return j.dump();
}

}  // namespace

TEST_CASE("encode writes the documented wire format", "[event][envelope_codec]") {
    CHECK(encode(golden_envelope()) == golden_text);
    std::string appended = "prefix:";
    courier::encode_to(appended, golden_envelope());
    CHECK(appended == "prefix:" + golden_text);
    CHECK(courier::to_json_value(golden_envelope()) == json::parse(golden_text));
}

TEST_CASE("decode reads the wire format back", "[event][envelope_codec]") {
    auto r = decode(golden_text);
    REQUIRE(r);
    CHECK(*r == golden_envelope());

    SECTION("optional metadata and headers may be absent or null; unknown fields are ignored") {
        auto minimal = decode(edited_golden([](json& j) {
            j.erase("metadata");
            j["headers"] = nullptr;
            j["future_field"] = {1, 2, 3};
        }));
        REQUIRE(minimal);
        CHECK(minimal->metadata == courier::event_metadata{});
        CHECK(minimal->headers.empty());
        auto partial = decode(edited_golden([](json& j) { j["metadata"] = {{"trace_id", "t"}, {"producer", nullptr}}; }));
        REQUIRE(partial);
        CHECK(partial->metadata.trace_id == "t");
        CHECK(partial->metadata.producer.empty());
    }
    SECTION("data may be null or any JSON value") {
        for (const json& data : {json(nullptr), json(42), json("text"), json::array({1, "x"})}) {
            auto d = decode(edited_golden([&](json& j) { j["data"] = data; }));
            REQUIRE(d);
            CHECK(d->data == data);
        }
    }
    SECTION("field order does not matter and whitespace is allowed") {
        auto pretty = decode(json::parse(golden_text).dump(4));
        REQUIRE(pretty);
        CHECK(*pretty == golden_envelope());
    }
    SECTION("from_json_value reads a parsed value") {
        auto v = courier::from_json_value(json::parse(golden_text));
        REQUIRE(v);
        CHECK(*v == golden_envelope());
    }
}

TEST_CASE("encode then decode returns an equal envelope (round-trip property)", "[event][envelope_codec]") {
    std::mt19937_64 rng(20250101);
    for (int i = 0; i < 3000; ++i) {
        const envelope e = courier_test::random_envelope(rng);
        const std::string text = encode(e);
        auto back = decode(text);
        INFO(text);
        REQUIRE(back);
        REQUIRE(*back == e);
        REQUIRE(encode(*back) == text);  // and re-encoding is byte-identical
        auto via_value = courier::from_json_value(courier::to_json_value(e));
        REQUIRE(via_value);
        REQUIRE(*via_value == e);
    }
}

TEST_CASE("timestamps keep microseconds on the wire and drop finer digits", "[event][envelope_codec]") {
    auto e = golden_envelope();
    SECTION("microseconds survive") {
        e.timestamp = courier::time_point(std::chrono::microseconds(1'735'689'600'000'001LL));
        auto back = decode(encode(e));
        REQUIRE(back);
        CHECK(back->timestamp == e.timestamp);
        CHECK_THAT(encode(e), Catch::Matchers::Contains("\"2025-01-01T00:00:00.000001Z\""));
    }
    SECTION("nanoseconds are rounded down, also before 1970") {
        e.timestamp = courier::time_point(std::chrono::nanoseconds(1'735'689'600'000'001'999LL));
        CHECK(decode(encode(e))->timestamp == courier::time_point(std::chrono::microseconds(1'735'689'600'000'001LL)));
        e.timestamp = courier::time_point(std::chrono::nanoseconds(-1));
        CHECK(courier::format_rfc3339(e.timestamp) == "1969-12-31T23:59:59.999999Z");
        CHECK(decode(encode(e))->timestamp == courier::time_point(std::chrono::microseconds(-1)));
        CHECK(courier::truncate_to_wire_precision(e.timestamp) == courier::time_point(std::chrono::microseconds(-1)));
    }
}

TEST_CASE("format_rfc3339 writes UTC with exactly six fractional digits", "[event][envelope_codec]") {
    using courier::format_rfc3339;
    using courier::time_point;
    CHECK(format_rfc3339(time_point{}) == "1970-01-01T00:00:00.000000Z");
    CHECK(format_rfc3339(time_point(std::chrono::seconds(1'735'689'600))) == "2025-01-01T00:00:00.000000Z");
    CHECK(format_rfc3339(time_point(std::chrono::seconds(951'782'400))) == "2000-02-29T00:00:00.000000Z");
    CHECK(format_rfc3339(time_point(std::chrono::microseconds(4'102'444'799'999'999LL))) ==
          "2099-12-31T23:59:59.999999Z");
    CHECK(format_rfc3339(time_point(std::chrono::seconds(-2'208'988'800))) == "1900-01-01T00:00:00.000000Z");
}

TEST_CASE("parse_rfc3339 accepts offsets, any fraction length, and the RFC's variants", "[event][envelope_codec]") {
    using courier::parse_rfc3339;
    using courier::time_point;
    using namespace std::chrono;
    const time_point base(seconds(1'735'689'600));  // 2025-01-01T00:00:00Z
    CHECK(*parse_rfc3339("2025-01-01T00:00:00Z") == base);
    CHECK(*parse_rfc3339("2025-01-01t00:00:00z") == base);
    CHECK(*parse_rfc3339("2025-01-01 00:00:00Z") == base);
    CHECK(*parse_rfc3339("2025-01-01T02:00:00+02:00") == base);
    CHECK(*parse_rfc3339("2024-12-31T19:30:00-04:30") == base);
    CHECK(*parse_rfc3339("2025-01-01T00:00:00+00:00") == base);
    CHECK(*parse_rfc3339("2025-01-01T00:00:00-00:00") == base);
    CHECK(*parse_rfc3339("2025-01-01T00:00:00.5Z") == base + milliseconds(500));
    CHECK(*parse_rfc3339("2025-01-01T00:00:00.123Z") == base + milliseconds(123));
    CHECK(*parse_rfc3339("2025-01-01T00:00:00.123456Z") == base + microseconds(123456));
    CHECK(*parse_rfc3339("2025-01-01T00:00:00.123456789Z") == base + nanoseconds(123456789));
    CHECK(*parse_rfc3339("2025-01-01T00:00:00.1234567891234Z") == base + nanoseconds(123456789));
    CHECK(*parse_rfc3339("2024-12-31T23:59:60Z") == base);  // a leap second reads as the next minute
    CHECK(*parse_rfc3339("2000-02-29T12:00:00Z") == time_point(seconds(951'825'600)));
    CHECK(*parse_rfc3339("1969-12-31T23:59:59.999999Z") == time_point(microseconds(-1)));
    CHECK(*parse_rfc3339("1700-01-01T00:00:00Z") == time_point(seconds(-8'520'336'000LL)));

    std::mt19937_64 rng(99);
    for (int i = 0; i < 10'000; ++i) {
        const time_point t(microseconds(std::uniform_int_distribution<std::int64_t>(-8'520'336'000'000'000LL,
                                                                                    7'258'118'400'000'000LL)(rng)));
        REQUIRE(*parse_rfc3339(courier::format_rfc3339(t)) == t);
    }
}

TEST_CASE("timestamps within one second take the cached second and still read and write exactly", "[event][envelope_codec]") {
    // format and parse keep the text of the last second per thread: runs of stamps inside one
    // second (the common case), across second, day and year boundaries, and around stamps
    // that differ only after the cached part must all give what a full conversion gives.
    using courier::format_rfc3339;
    using courier::parse_rfc3339;
    using courier::time_point;
    using namespace std::chrono;
    auto reference = [](time_point t) {  // field by field, no cache
        const auto us = floor<microseconds>(t);
        const auto day = floor<days>(us);
        const year_month_day ymd{day};
        const hh_mm_ss<microseconds> tod{us - day};
        char buf[40];
        std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02lld.%06lldZ", static_cast<int>(ymd.year()),
                      static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), static_cast<int>(tod.hours().count()),
                      static_cast<int>(tod.minutes().count()), static_cast<long long>(tod.seconds().count()),
                      static_cast<long long>(tod.subseconds().count()));
        return std::string(buf);
    };
    std::mt19937_64 rng(31);
    const std::int64_t edges[] = {0, 1'735'689'599'999'990LL, 951'868'799'999'999LL, -1, -2'208'988'800'000'001LL};
    for (const std::int64_t edge_us : edges) {
        for (int i = -40; i < 40; ++i) {
            const time_point t(microseconds(edge_us + i * 3));
            const std::string text = format_rfc3339(t);
            REQUIRE(text == reference(t));
            REQUIRE(*parse_rfc3339(text) == time_point(floor<microseconds>(t)));
        }
    }
    const std::int64_t base_ns = 1'764'700'000'000'000'000LL;
    for (int i = 0; i < 20'000; ++i) {
        const time_point t(nanoseconds(base_ns + static_cast<std::int64_t>(rng() % 3'000'000'000ull)));
        const std::string text = format_rfc3339(t);
        REQUIRE(text == reference(t));
        REQUIRE(*parse_rfc3339(text) == time_point(floor<microseconds>(t)));
        // Same cached second, another form: each goes its own way and agrees, or is refused.
        std::string lower = text;
        lower[26] = 'z';
        REQUIRE(*parse_rfc3339(lower) == time_point(floor<microseconds>(t)));
        std::string bad_digit = text;
        bad_digit[20 + static_cast<std::size_t>(i % 6)] = 'x';
        REQUIRE_FALSE(parse_rfc3339(bad_digit));
        std::string offset = text.substr(0, 26) + "+01:00";
        REQUIRE(*parse_rfc3339(offset) == time_point(floor<microseconds>(t)) - hours(1));
    }
}

TEST_CASE("parse_rfc3339 says which part of a bad timestamp is wrong", "[event][envelope_codec]") {
    struct bad_case {
        const char* text;
        const char* says;
    };
    const bad_case cases[] = {
        {"", "expected a 4-digit year at offset 0"},
        {"2025", "expected '-' at offset 4"},
        {"2025-1-01T00:00:00Z", "expected a 2-digit month at offset 5"},
        {"2025-13-01T00:00:00Z", "month 13 is out of range"},
        {"2025-00-01T00:00:00Z", "month 0 is out of range"},
        {"2025-02-29T00:00:00Z", "day 29 does not exist in that month"},
        {"2025-04-31T00:00:00Z", "day 31 does not exist"},
        {"2025-01-00T00:00:00Z", "day 0 does not exist"},
        {"2025-01-01X00:00:00Z", "expected 'T' at offset 10"},
        {"2025-01-01T24:00:00Z", "hour 24 is out of range"},
        {"2025-01-01T00:60:00Z", "minute 60 is out of range"},
        {"2025-01-01T00:00:61Z", "second 61 is out of range"},
        {"2025-01-01T00:00Z", "expected ':' at offset 16"},
        {"2025-01-01T00:00:00", "expected 'Z' or a UTC offset like '+02:00' at offset 19"},
        {"2025-01-01T00:00:00.Z", "expected a digit after '.' at offset 20"},
        {"2025-01-01T00:00:00+0200", "expected ':' in the UTC offset at offset 22"},
        {"2025-01-01T00:00:00+24:00", "UTC offset out of range"},
        {"2025-01-01T00:00:00Zjunk", "unexpected characters at offset 20"},
        {"2025-01-01T00:00:00ZZ", "unexpected characters at offset 20"},
        {"+2025-01-01T00:00:00Z", "expected a 4-digit year at offset 0"},
        {"1000-01-01T00:00:00Z", "outside the representable range"},
        {"9999-12-31T23:59:59Z", "outside the representable range"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        auto r = courier::parse_rfc3339(c.text);
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::invalid_argument);
        CHECK(r.error().id() == "courier.event.invalid_timestamp");
        CHECK_THAT(r.error().message, Catch::Matchers::Contains(c.says));
    }
}

TEST_CASE("decode rejects input over the limits before parsing it", "[event][envelope_codec]") {
    using courier::errc;
    SECTION("too large") {
        courier::decode_limits limits;
        limits.max_bytes = golden_text.size() - 1;
        check_error(decode(golden_text, limits), errc::limit_exceeded, "courier.envelope.too_large",
                    "more than max_bytes = " + std::to_string(golden_text.size() - 1));
        limits.max_bytes = golden_text.size();
        CHECK(decode(golden_text, limits));
        check_error(decode(std::string((1 << 20) + 1, ' ')), errc::limit_exceeded, "courier.envelope.too_large");
    }
    SECTION("too deep: a nesting bomb is refused without recursing into it") {
        const std::string bomb = std::string(500'000, '[') + std::string(500'000, ']');
        courier::decode_limits big;
        big.max_bytes = 2'000'000;
        check_error(decode(bomb, big), errc::limit_exceeded, "courier.envelope.too_deep", "max_depth = 64");
        // Data nested 63 levels below the envelope object is depth 64: accepted; one more is not.
        const auto nested = [](int levels) {
            json j = json::parse(golden_text);
            json data = 1;
            for (int i = 0; i < levels; ++i) data = json::array({data});
            j["data"] = data;
            return j.dump();
        };
        CHECK(decode(nested(63)));
        check_error(decode(nested(64)), errc::limit_exceeded, "courier.envelope.too_deep");
        // Brackets inside strings are not nesting.
        CHECK(decode(edited_golden([](json& j) { j["data"] = std::string(1000, '['); })));
        CHECK(decode(edited_golden([](json& j) { j["data"] = "\\\"[[[[" + std::string(100, '{'); })));
    }
    SECTION("too many headers") {
        const auto with_headers = [](int n) {
            return edited_golden([n](json& j) {
                for (int i = 0; i < n; ++i) j["headers"]["h" + std::to_string(i)] = "v";
            });
        };
        CHECK(decode(with_headers(62)));  // plus the golden's two: 64
        check_error(decode(with_headers(63)), errc::limit_exceeded, "courier.envelope.too_many_headers",
                    "65 headers, more than max_headers = 64");
    }
}

TEST_CASE("decode rejects malformed envelopes with an error that says what is wrong", "[event][envelope_codec]") {
    using courier::errc;
    const auto malformed = errc::malformed_envelope;

    SECTION("not JSON") {
        check_error(decode(""), malformed, "courier.envelope.bad_json", "not valid JSON");
        check_error(decode("{"), malformed, "courier.envelope.bad_json", "line 1, column 2");
        check_error(decode(golden_text.substr(0, 40)), malformed, "courier.envelope.bad_json");
        check_error(decode(golden_text + "x"), malformed, "courier.envelope.bad_json");
        check_error(decode("{\"event_type\":\"order.created.v1\xff\"}"), malformed, "courier.envelope.bad_json",
                    "UTF-8");
    }
    SECTION("not an object") {
        check_error(decode("[]"), malformed, "courier.envelope.not_an_object", "found array");
        check_error(decode("42"), malformed, "courier.envelope.not_an_object", "found number");
        check_error(decode("null"), malformed, "courier.envelope.not_an_object", "found null");
    }
    SECTION("each required field missing") {
        for (const char* field : {"event_type", "event_id", "timestamp", "version", "data"}) {
            INFO(field);
            check_error(decode(edited_golden([&](json& j) { j.erase(field); })), malformed, "courier.envelope.missing_field",
                        "missing required field '" + std::string(field) + "'");
        }
    }
    SECTION("each field of the wrong type") {
        struct wrong {
            const char* path;
            json value;
            const char* says;
        };
        const wrong cases[] = {
            {"event_type", 1, "field 'event_type' must be a string, found number"},
            {"event_id", json::array(), "field 'event_id' must be a string, found array"},
            {"timestamp", 1735689600, "field 'timestamp' must be an RFC 3339 string, found number"},
            {"version", "1", "field 'version' must be an integer, found string"},
            {"version", 1.0, "field 'version' must be an integer, found a non-integer number"},
            {"version", true, "found boolean"},
            {"metadata", "orders", "field 'metadata' must be an object, found string"},
            {"headers", json::array({"a"}), "field 'headers' must be an object of strings, found array"},
        };
        for (const auto& c : cases) {
            INFO(c.path);
            check_error(decode(edited_golden([&](json& j) { j[c.path] = c.value; })), malformed, "courier.envelope.wrong_type",
                        c.says);
        }
        check_error(decode(edited_golden([](json& j) { j["metadata"]["trace_id"] = 7; })), malformed,
                    "courier.envelope.wrong_type", "field 'metadata.trace_id' must be a string, found number");
        check_error(decode(edited_golden([](json& j) { j["metadata"]["causation_id"] = json::object(); })), malformed,
                    "courier.envelope.wrong_type", "metadata.causation_id");
        check_error(decode(edited_golden([](json& j) { j["headers"]["tenant"] = 1; })), malformed,
                    "courier.envelope.wrong_type", "header 'tenant' must be a string, found number");
        check_error(decode(edited_golden([](json& j) { j["headers"]["x"] = nullptr; })), malformed,
                    "courier.envelope.wrong_type", "found null");
    }
    SECTION("a bad event name") {
        check_error(decode(edited_golden([](json& j) { j["event_type"] = "Order.created.v1"; })), malformed,
                    "courier.envelope.bad_event_type",
                    "field 'event_type' is not a valid event name: 'Order.created.v1': segment 1 'Order'");
        check_error(decode(edited_golden([](json& j) { j["event_type"] = "order.created"; })), malformed,
                    "courier.envelope.bad_event_type", "must be the version");
        check_error(decode(edited_golden([](json& j) { j["event_type"] = ""; })), malformed, "courier.envelope.bad_event_type");
    }
    SECTION("a version that does not match the name") {
        check_error(decode(edited_golden([](json& j) { j["version"] = 2; })), malformed, "courier.envelope.version_mismatch",
                    "field 'version' is 2 but event_type 'order.created.v1' is version 1");
        check_error(decode(edited_golden([](json& j) { j["version"] = -1; })), malformed, "courier.envelope.version_mismatch");
        check_error(decode(edited_golden([](json& j) { j["version"] = 18446744073709551615ULL; })), malformed,
                    "courier.envelope.version_mismatch");
        check_error(decode(edited_golden([](json& j) { j["version"] = 4294967297LL; })), malformed,
                    "courier.envelope.version_mismatch");  // would be 1 if truncated to 32 bits
    }
    SECTION("a bad event id") {
        check_error(decode(edited_golden([](json& j) { j["event_id"] = "not-a-uuid"; })), malformed,
                    "courier.envelope.bad_event_id", "field 'event_id' is not a UUID");
        check_error(decode(edited_golden([](json& j) { j["event_id"] = "0194228e-b57b-7000-8000-00000000000g"; })), malformed,
                    "courier.envelope.bad_event_id", "invalid hex digit at offset 35");
        check_error(decode(edited_golden([](json& j) { j["event_id"] = "00000000-0000-0000-0000-000000000000"; })), malformed,
                    "courier.envelope.bad_event_id", "nil UUID");
    }
    SECTION("a bad timestamp") {
        check_error(decode(edited_golden([](json& j) { j["timestamp"] = "2025-13-01T00:00:00Z"; })), malformed,
                    "courier.envelope.bad_timestamp", "month 13 is out of range");
        check_error(decode(edited_golden([](json& j) { j["timestamp"] = "yesterday"; })), malformed,
                    "courier.envelope.bad_timestamp", "field 'timestamp' is not an RFC 3339 time");
    }
}

TEST_CASE("decode never throws on mutated or truncated input", "[event][envelope_codec]") {
    const std::string text = encode(golden_envelope());
    for (std::size_t n = 0; n < text.size(); ++n) {
        courier::result<envelope> r = envelope{};
        REQUIRE_NOTHROW(r = decode(std::string_view(text).substr(0, n)));
        REQUIRE_FALSE(r);
    }
    std::mt19937_64 rng(7);
    const std::string noise = "{}[]\":,\\0a-9.eE+ \x01\xff";
    for (int i = 0; i < 20'000; ++i) {
        std::string mutated = text;
        for (int k = std::uniform_int_distribution<int>(1, 4)(rng); k > 0; --k) {
            mutated[std::uniform_int_distribution<std::size_t>(0, mutated.size() - 1)(rng)] =
                noise[std::uniform_int_distribution<std::size_t>(0, noise.size() - 1)(rng)];
        }
        courier::result<envelope> r = envelope{};
        REQUIRE_NOTHROW(r = decode(mutated));
        if (!r) {
            const auto id = r.error().id();
            REQUIRE(id.substr(0, 17) == "courier.envelope.");
        }
    }
}

TEST_CASE("encode always produces JSON, even from invalid UTF-8", "[event][envelope_codec]") {
    auto e = golden_envelope();
    e.metadata.producer = "bad \xff\xfe bytes \xc3";
    e.headers["k\xed\xa0\x80"] = "surrogate";
    e.data = json{{"s", "x\xf4\x90\x80\x80y"}};  // above U+10FFFF
    const auto text = encode(e);
    auto back = decode(text);
    REQUIRE(back);
    CHECK(back->metadata.producer == "bad \xef\xbf\xbd\xef\xbf\xbd bytes \xef\xbf\xbd");
    CHECK(back->data["s"].get<std::string>().front() == 'x');
}

TEST_CASE("encode's string escaping matches nlohmann's for valid text", "[event][envelope_codec]") {
    std::mt19937_64 rng(5);
    for (int i = 0; i < 5000; ++i) {
        const std::string s = courier_test::random_text(rng, 20);
        std::string mine;
        courier::detail::append_json_string(mine, s);
        REQUIRE(mine == json(s).dump());
    }
    // Around the length up to which a plain string is quoted in one piece.
    for (std::size_t n : {0u, 1u, 125u, 126u, 127u, 300u}) {
        for (const char extra : {'a', '"', '\\', '\n', '\x7f'}) {
            std::string s(n, 'x');
            if (n > 0) s[n / 2] = extra;
            std::string mine = "prefix";
            courier::detail::append_json_string(mine, s);
            REQUIRE(mine == "prefix" + json(s).dump());
        }
    }
    std::string all_controls;
    for (int c = 0; c < 0x20; ++c) all_controls += static_cast<char>(c);
    std::string mine;
    courier::detail::append_json_string(mine, all_controls);
    CHECK(mine == json(all_controls).dump());
}
