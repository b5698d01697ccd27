// Tests for courier/event/json_fields.hpp: COURIER_JSON_FIELDS gives nlohmann's conversions
// and a writer whose text is, byte for byte, what nlohmann's dump() gives, for every kind of
// field (the ones it writes itself and the ones it hands to nlohmann).
#include <courier/event/envelope_codec.hpp>
#include <courier/event/event_traits.hpp>
#include <courier/event/json_fields.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <map>
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
