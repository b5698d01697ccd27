// Tests for courier/event/json_fields.hpp: COURIER_JSON_FIELDS gives nlohmann's conversions,
// a writer whose text is, byte for byte, what nlohmann's dump() gives, for every kind of field
// (the ones it writes itself and the ones it hands to nlohmann), and a reader that gives what
// nlohmann's from_json gives or leaves the text to it.
#include <courier/event/envelope_codec.hpp>
#include <courier/event/event_traits.hpp>
#include <courier/event/json_fields.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace fields_test {

enum class colour { red, green };

struct address {
    std::string city = "Zürich";
    int zip = 8001;
    COURIER_JSON_FIELDS(address, zip, city)
};

struct legacy {  // nested, with nlohmann's own macro: written through nlohmann
    double weight = 2.5;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(legacy, weight)
};

struct order_placed {
    static constexpr courier::event_name event_type{"shop.order.placed.v1"};
    std::uint64_t big = std::numeric_limits<std::uint64_t>::max();
    std::int64_t small = std::numeric_limits<std::int64_t>::min();
    std::int32_t zero = 0;
    bool paid = true;
    bool gift = false;
    char grade = 'A';
    unsigned char level = 200;
    signed char delta = -5;
    double price = 0.1;
    float ratio = 1.5f;
    std::string id = "o-1";
    std::string note = "say \"hi\"\\ \n\t\x01 caf\xc3\xa9 bad:\xff";
    std::string empty;
    std::vector<int> lines{1, 2, 3};
    std::map<std::string, int> stock{{"b", 2}, {"a", 1}};
    address ship_to;
    legacy box;
    colour tag = colour::green;

    COURIER_JSON_FIELDS(order_placed, big, small, zero, paid, gift, grade, level, delta, price, ratio, id, note, empty,
                        lines, stock, ship_to, box, tag, secret)

    int secret_value() const { return secret; }

private:
    int secret = 42;  // private members are reachable, as with nlohmann's intrusive macro
};

// Derived from a COURIER_JSON_FIELDS type, with nlohmann's macro: the inherited writer knows
// only the base's fields, so the derived type does not count as having one.
struct parcel : address {
    std::string carrier = "ups";
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(parcel, zip, city, carrier)
};

// Converts to a string, but nlohmann writes it through its own to_json (an object).
struct sku {
    std::string code;
    operator std::string_view() const { return code; }  // NOLINT: implicit on purpose
};
inline void to_json(nlohmann::json& j, const sku& s) { j = nlohmann::json{{"sku", s.code}}; }
inline void from_json(const nlohmann::json& j, sku& s) { j.at("sku").get_to(s.code); }

struct shipment {
    parcel first;
    sku item{"x-1"};
    std::vector<parcel> rest{parcel{}};
    COURIER_JSON_FIELDS(shipment, first, item, rest)
};

struct one_field {
    std::string z;
    COURIER_JSON_FIELDS(one_field, z)
};

std::string nlohmann_text(const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace fields_test

using fields_test::order_placed;

TEST_CASE("COURIER_JSON_FIELDS writes the bytes nlohmann's dump gives, field by field", "[event][json_fields]") {
    order_placed e;
    std::string out;
    order_placed::courier_append_json(out, e);
    CHECK(out == fields_test::nlohmann_text(nlohmann::json(e)));
    // Keys in nlohmann's (sorted) order, not the macro's.
    CHECK(out.find("\"big\"") < out.find("\"box\""));
    CHECK(out.find("\"tag\"") > out.find("\"secret\""));

    SECTION("other values, including ones that need escapes or replacement") {
        e.id = "";
        e.note = "\x7f control \x1f end";
        e.big = 0;
        e.small = -1;
        e.price = 1e300;
        e.lines.clear();
        e.ship_to.city = "quote \" inside";
        std::string again = "prefix:";  // appends, never overwrites
        order_placed::courier_append_json(again, e);
        CHECK(again == "prefix:" + fields_test::nlohmann_text(nlohmann::json(e)));
    }
    SECTION("fields that only look like what the writer writes directly go through nlohmann") {
        fields_test::shipment sh;
        sh.first.carrier = "dhl";
        std::string t;
        fields_test::shipment::courier_append_json(t, sh);
        CHECK(t == fields_test::nlohmann_text(nlohmann::json(sh)));
        CHECK(t.find(R"("item":{"sku":"x-1"})") != std::string::npos);
        CHECK(t.find(R"("carrier":"dhl")") != std::string::npos);
    }
    SECTION("one field") {
        fields_test::one_field f{"x"};
        std::string t;
        fields_test::one_field::courier_append_json(t, f);
        CHECK(t == R"({"z":"x"})");
    }
}

TEST_CASE("COURIER_JSON_FIELDS types convert with nlohmann both ways, as with its own macro", "[event][json_fields]") {
    order_placed e;
    e.id = "o-9";
    e.ship_to.zip = 1000;
    std::string text;
    order_placed::courier_append_json(text, e);
    const auto back = nlohmann::json::parse(text).get<order_placed>();
    CHECK(back.id == "o-9");
    CHECK(back.big == e.big);
    CHECK(back.small == e.small);
    CHECK(back.note == "say \"hi\"\\ \n\t\x01 caf\xc3\xa9 bad:\xef\xbf\xbd");  // the invalid byte was replaced
    CHECK(back.ship_to.zip == 1000);
    CHECK(back.tag == fields_test::colour::green);
    CHECK(back.secret_value() == 42);
    // A missing field is nlohmann's error, as with NLOHMANN_DEFINE_TYPE_INTRUSIVE.
    auto j = nlohmann::json::parse(text);
    j.erase("id");
    CHECK_THROWS_AS(j.get<order_placed>(), nlohmann::json::out_of_range);
}

TEST_CASE("a COURIER_JSON_FIELDS event is a typed event; the writer is detectable", "[event][json_fields]") {
    STATIC_REQUIRE(courier::typed_event<order_placed>);
    STATIC_REQUIRE(courier::has_json_writer<order_placed>);
    STATIC_REQUIRE(courier::has_json_writer<fields_test::address>);
    STATIC_REQUIRE_FALSE(courier::has_json_writer<fields_test::legacy>);
    STATIC_REQUIRE_FALSE(courier::has_json_writer<fields_test::parcel>);  // its writer is its base's
    STATIC_REQUIRE_FALSE(courier::has_json_writer<int>);
    // The envelope codec sees nothing different.
    const auto env = courier::make_envelope(order_placed{}, courier::time_point{});
    std::string data;
    order_placed::courier_append_json(data, order_placed{});
    CHECK(env.data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) == data);
}

namespace fields_test {

struct reading {
    std::uint64_t seq = 0;
    std::int32_t small = 0;
    std::uint8_t tiny = 0;
    bool flag = false;
    std::string name;
    address at;
    double ratio = 0;
    std::vector<int> list;
    COURIER_JSON_FIELDS(reading, seq, small, tiny, flag, name, at, ratio, list)
    bool operator==(const reading& o) const {
        return seq == o.seq && small == o.small && tiny == o.tiny && flag == o.flag && name == o.name && at.city == o.at.city &&
               at.zip == o.at.zip && ratio == o.ratio && list == o.list;
    }
};

// nlohmann's answer for `text`: the value, or nothing when from_json throws.
template <class T>
std::optional<T> nlohmann_value(const std::string& text) {
    try {
        return nlohmann::json::parse(text).get<T>();
    } catch (const nlohmann::json::exception&) {
        return std::nullopt;
    }
}

}  // namespace fields_test

TEST_CASE("the COURIER_JSON_FIELDS reader gives what nlohmann's from_json gives, or steps aside", "[event][json_fields]") {
    using fields_test::reading;
    STATIC_REQUIRE(courier::has_json_reader<order_placed>);
    STATIC_REQUIRE(courier::has_json_reader<reading>);
    STATIC_REQUIRE_FALSE(courier::has_json_reader<fields_test::parcel>);  // its reader is its base's
    STATIC_REQUIRE_FALSE(courier::has_json_reader<fields_test::legacy>);

    auto read = [](const std::string& text) {
        reading r;
        return courier::detail::read_json_fields(text, r) ? std::optional<reading>(r) : std::nullopt;
    };
    SECTION("what the writer wrote reads back, the fields the reader hands to nlohmann included") {
        order_placed e;
        e.note = "plain";
        e.ship_to.city = "Bern";
        std::string text;
        order_placed::courier_append_json(text, e);
        order_placed back;
        back.ship_to.zip = 0;
        REQUIRE(courier::detail::read_json_fields(text, back));
        const auto want = nlohmann::json::parse(text).get<order_placed>();
        CHECK(nlohmann::json(back) == nlohmann::json(want));
    }
    SECTION("cases one by one") {
        const std::string rest = R"("small":-7,"tiny":3,"flag":true,"name":"n","at":{"city":"c","zip":1},"ratio":0.5,"list":[1,2])";
        const auto ok = read(R"({"seq":42,)" + rest + "}");
        REQUIRE(ok);
        CHECK(ok == fields_test::nlohmann_value<reading>(R"({"seq":42,)" + rest + "}"));
        CHECK(ok->seq == 42);
        CHECK(ok->small == -7);
        CHECK(ok->list == std::vector<int>{1, 2});
        // Each of these reads, and reads as nlohmann does.
        for (const std::string& text : {
                 R"({"seq":1,"seq":2,)" + rest + "}",                                        // a repeated name: the last wins
                 R"({"seq":-1,)" + rest + "}",                                               // negative into unsigned: nlohmann's cast
                 R"({"seq":18446744073709551615,)" + rest + "}",                             // the largest uint64
                 R"({"seq":-9223372036854775808,)" + rest + "}",                             // the smallest int64
                 R"({"seq":0,"unknown":{"a":[1,{"b":"}]\"x"}],"c":null},)" + rest + "}",     // unknown members are skipped
                 "{" + rest + R"(,"seq":9})",                                                // any order
                 R"({"seq":5,)" + rest.substr(0, rest.find("\"tiny\"")) + R"("tiny":300,)" + rest.substr(rest.find("\"flag\"")) + "}",
             }) {
            INFO(text);
            const auto got = read(text);
            REQUIRE(got);
            CHECK(got == fields_test::nlohmann_value<reading>(text));
        }
        // These it leaves to nlohmann (which reads some and refuses others).
        for (const std::string& text : {
                 "{" + rest + "}",                                                            // a field missing
                 R"({"seq":1.0,)" + rest + "}",                                               // a fraction
                 R"({"seq":1e2,)" + rest + "}",                                               // an exponent
                 R"({"seq":123456789012345678901,)" + rest + "}",                             // more digits than a uint64 holds
                 R"({"seq":18446744073709551616,)" + rest + "}",                              // one past the largest uint64
                 R"({"seq":-9223372036854775809,)" + rest + "}",                              // one below the smallest int64
                 R"({"seq":"1",)" + rest + "}",                                               // a string for a number
                 R"({"seq":true,)" + rest + "}",                                              // a boolean for a number
                 R"({"seq":1,)" + rest.substr(0, rest.find("\"name\"")) + R"("name":"a\"b",)" + rest.substr(rest.find("\"at\"")) + "}",
                 R"({"seq":1,)" + rest.substr(0, rest.find("\"name\"")) + "\"name\":\"caf\xc3\xa9\"," + rest.substr(rest.find("\"at\"")) + "}",
                 R"({"seq":1,)" + rest.substr(0, rest.find("\"flag\"")) + R"("flag":1,)" + rest.substr(rest.find("\"name\"")) + "}",
                 R"({"seq":1,)" + rest + "}x",                                                // something after it
                 std::string(R"([1,2])"),                                                     // not an object
                 R"({"seq":1,)" + rest.substr(0, rest.find("\"ratio\"")) + R"("ratio":"x",)" + rest.substr(rest.find("\"list\"")) + "}",
             }) {
            INFO(text);
            CHECK_FALSE(read(text));
        }
    }
    SECTION("random objects: whenever it reads, it reads what nlohmann reads") {
        std::mt19937 rng(7);
        const std::vector<std::string> ints{"0", "1", "-1", "300", "-300", "18446744073709551615", "9223372036854775808",
                                            "-9223372036854775808", "-9223372036854775809", "12345678901234567890", "1.5",
                                            "1e3", "true", "\"7\"", "null"};
        const std::vector<std::string> strs{"\"\"", "\"abc\"", "\"a\\\"b\"", "\"\\u00e9\"", "\"caf\xc3\xa9\"", "1", "null"};
        const std::vector<std::string> bools{"true", "false", "1", "null"};
        const std::vector<std::string> ats{R"({"city":"x","zip":2})", R"({"zip":3,"city":"y","zip":4})", R"({"city":"x"})",
                                           R"({"city":"x","zip":"2"})", "[]"};
        const std::vector<std::string> ratios{"1.5", "2", "-0", "\"x\""};
        const std::vector<std::string> lists{"[]", "[1,2]", "[1,\"a\"]", "{}"};
        auto pick = [&](const std::vector<std::string>& v, std::size_t good) {
            return v[rng() % 5 != 0 ? rng() % good : rng() % v.size()];
        };
        std::size_t agreed = 0, stepped_aside = 0;
        for (int round = 0; round < 20000; ++round) {
            std::vector<std::pair<std::string, std::string>> m{{"seq", pick(ints, 10)},   {"small", pick(ints, 10)},
                                                               {"tiny", pick(ints, 10)},  {"flag", pick(bools, 2)},
                                                               {"name", pick(strs, 2)},   {"at", pick(ats, 2)},
                                                               {"ratio", pick(ratios, 3)}, {"list", pick(lists, 2)}};
            if (rng() % 4 == 0) m.emplace_back("extra", R"({"a":[1,2,{"b":"}"}]})");
            if (rng() % 4 == 0) m.push_back(m[rng() % m.size()]);
            if (rng() % 8 == 0) m.erase(m.begin() + static_cast<std::ptrdiff_t>(rng() % m.size()));
            std::shuffle(m.begin(), m.end(), rng);
            std::string text = "{";
            for (std::size_t i = 0; i < m.size(); ++i) text += (i ? ",\"" : "\"") + m[i].first + "\":" + m[i].second;
            text += "}";
            const auto got = read(text);
            if (!got) {
                ++stepped_aside;
                continue;
            }
            INFO(text);
            REQUIRE(got == fields_test::nlohmann_value<reading>(text));
            ++agreed;
        }
        CHECK(agreed > 1000);  // both outcomes are exercised
        CHECK(stepped_aside > 1000);
    }
}

namespace fields_test {
struct labelled {  // a std::string_view field: written directly, never read into (it would dangle)
    std::string_view label = "lit";
    std::uint64_t n = 2;
    COURIER_JSON_FIELDS(labelled, label, n)
};
}  // namespace fields_test

TEST_CASE("the reader leaves a std::string_view field to nlohmann, the writer writes it", "[event][json_fields]") {
    std::string text;
    fields_test::labelled::courier_append_json(text, fields_test::labelled{});
    CHECK(text == R"({"label":"lit","n":2})");
    fields_test::labelled back;
    CHECK_FALSE(courier::detail::read_json_fields(text, back));
}
