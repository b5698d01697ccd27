// The examples of docs/events.md, compiled and run: the page quotes the code between the
// "doc:" markers, so a snippet that stops compiling or stops being true fails here.
#include <courier/core/clock.hpp>
// doc: includes
#include <courier/event/event_name.hpp>     // event_name, owned_event_name
#include <courier/event/topic_pattern.hpp>  // topic_pattern, owned_topic_pattern
#include <courier/event/event_traits.hpp>   // typed_event, event_type_of, to_data, from_data
#include <courier/event/json_fields.hpp>    // COURIER_JSON_FIELDS, has_json_writer, has_json_reader
#include <courier/event/envelope.hpp>       // envelope, event_metadata, make_envelope, data_as
#include <courier/event/envelope_codec.hpp> // encode, decode, decode_limits, RFC 3339
#include <courier/event/cloudevents.hpp>    // to_cloudevent, from_cloudevent
#include <courier/event/upcaster.hpp>       // upcaster_registry
#include <courier/core/uuid.hpp>            // uuid, make_uuid_v7
// doc: end

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

// doc: typed-event
struct order_created {
    static constexpr courier::event_name event_type{"order.created.v2"};
    std::string order_id;
    long amount_cents = 0;
    std::string currency;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_created, order_id, amount_cents, currency)
};
static_assert(courier::typed_event<order_created>);
static_assert(order_created::event_type.base() == "order.created");
static_assert(order_created::event_type.version() == 2);
// doc: end

// doc: json-fields
struct parcel_shipped {
    static constexpr courier::event_name event_type{"parcel.shipped.v1"};
    std::string parcel_id;
    std::uint64_t grams = 0;
    COURIER_JSON_FIELDS(parcel_shipped, parcel_id, grams)  // nlohmann's to_json/from_json, and more
};
static_assert(courier::typed_event<parcel_shipped>);
static_assert(courier::has_json_writer<parcel_shipped>);
// doc: end

TEST_CASE("docs/events.md: COURIER_JSON_FIELDS writes what nlohmann writes", "[event][docs]") {
    // doc: json-fields-text
    std::string text;
    parcel_shipped::courier_append_json(text, parcel_shipped{"p-7", 1200});
    // text == R"({"grams":1200,"parcel_id":"p-7"})": the keys sorted, as nlohmann's dump() gives
    // doc: end
    CHECK(text == R"({"grams":1200,"parcel_id":"p-7"})");
    CHECK(text == nlohmann::json(parcel_shipped{"p-7", 1200}).dump());
}

TEST_CASE("docs/events.md: COURIER_JSON_FIELDS reads what nlohmann reads", "[event][docs]") {
    static_assert(courier::has_json_reader<parcel_shipped>);
    // doc: json-fields-read
    parcel_shipped p;
    bool read = courier::detail::read_json_fields(R"({"grams":1200,"parcel_id":"p-7"})", p);
    // read == true, p.grams == 1200; what the bus does for a bridged event (detail: not API)
    // doc: end
    CHECK(read);
    CHECK(p.grams == 1200);
    CHECK(p.parcel_id == "p-7");
    parcel_shipped escaped;
    CHECK_FALSE(courier::detail::read_json_fields(R"({"grams":1,"parcel_id":"p\u002d7"})", escaped));  // nlohmann's to read
}

// doc: patterns
constexpr courier::topic_pattern all_orders{"order.#"};
constexpr courier::topic_pattern any_v2{"#.v2"};
static_assert(all_orders.matches(order_created::event_type));
static_assert(any_v2.matches("user.profile.updated.v2"));
static_assert(!courier::topic_pattern{"order.*.v1"}.matches("order.line.added.v1"));
// doc: end

TEST_CASE("docs/events.md: run-time names and patterns", "[event][docs]") {
    // doc: runtime-names
    std::string text = "Order.created.v1";  // e.g. from a config file or a bridge
    courier::result<courier::event_name> name = courier::event_name::parse(text);
    if (!name) {
        // "[courier.event.invalid_name] 'Order.created.v1': segment 1 'Order' at offset 0
        //  must start with a lowercase letter a-z, found 'O'"
        std::string why = name.error().message;
    }
    auto pattern = courier::topic_pattern::parse("order.*.v1");  // views its argument
    bool hit = pattern && pattern->matches("order.created.v1");
    // doc: end
    CHECK_FALSE(name);
    CHECK(name.error().id() == "courier.event.invalid_name");
    CHECK(hit);
}

TEST_CASE("docs/events.md: envelopes on the wire", "[event][docs]") {
    // doc: envelope
    courier::manual_clock clock;  // 2025-01-01T00:00:00Z
    courier::envelope env = courier::make_envelope(order_created{"o-1", 1250, "EUR"}, clock.now(),
                                                   courier::event_metadata{.producer = "shop"});
    env.headers["tenant"] = "acme";

    std::string bytes = courier::encode(env);
    // {"event_type":"order.created.v2","event_id":"0194...","timestamp":"2025-01-01T00:00:00.000000Z",
    //  "version":2,"data":{"amount_cents":1250,"currency":"EUR","order_id":"o-1"},
    //  "metadata":{"producer":"shop",...},"headers":{"tenant":"acme"}}

    courier::result<courier::envelope> back = courier::decode(bytes);  // never throws
    courier::result<order_created> typed = courier::data_as<order_created>(*back);
    // doc: end
    REQUIRE(back);
    CHECK(*back == env);
    REQUIRE(typed);
    CHECK(typed->amount_cents == 1250);
    CHECK(bytes.find("\"timestamp\":\"2025-01-01T00:00:00.000000Z\"") != std::string::npos);

    // doc: decode-errors
    courier::decode_limits limits;
    limits.max_bytes = 64 * 1024;  // this endpoint never needs more
    auto bad = courier::decode(R"({"event_type":"order.created.v2","version":2})", limits);
    // bad.error().code    == courier::errc::malformed_envelope
    // bad.error().id()    == "courier.envelope.missing_field"
    // bad.error().message == "[courier.envelope.missing_field] missing required field 'event_id'"
    // doc: end
    REQUIRE_FALSE(bad);
    CHECK(bad.error() == courier::errc::malformed_envelope);
    CHECK(bad.error().message == "[courier.envelope.missing_field] missing required field 'event_id'");

    // doc: cloudevents
    std::string ce = courier::to_cloudevent(env);
    // {"specversion":"1.0","id":"0194...","source":"shop","type":"order.created.v2",
    //  "time":"2025-01-01T00:00:00.000000Z","datacontenttype":"application/json",
    //  "data":{...},"tenant":"acme"}
    courier::result<courier::envelope> from_ce = courier::from_cloudevent(ce);
    // doc: end
    REQUIRE(from_ce);
    CHECK(*from_ce == env);
}

TEST_CASE("docs/events.md: upcasting", "[event][docs]") {
    courier::manual_clock clock;
    courier::envelope v1_envelope;
    v1_envelope.event_type = "order.created.v1";
    v1_envelope.version = 1;
    v1_envelope.event_id = courier::make_uuid_v7(clock.now());
    v1_envelope.timestamp = clock.now();
    v1_envelope.data = {{"order_id", "o-1"}, {"amount_cents", 1250}};

    // doc: upcasting
    courier::upcaster_registry upcasters;  // set up once, then shared
    // v2 added a currency; v1 events were all in euros.
    auto added = upcasters.add("order.created.v1", [](nlohmann::json data) {
        data["currency"] = "EUR";
        return data;
    });

    courier::result<courier::envelope> v2 = upcasters.upcast(v1_envelope, 2);
    // v2->event_type == "order.created.v2", v2->version == 2
    auto order = courier::data_as<order_created>(*v2);

    auto v3 = upcasters.upcast(v1_envelope, 3);
    // v3.error().id() == "courier.upcast.missing_step"
    // doc: end
    REQUIRE(added);
    REQUIRE(v2);
    CHECK(v2->event_type == "order.created.v2");
    REQUIRE(order);
    CHECK(order->currency == "EUR");
    REQUIRE_FALSE(v3);
    CHECK(v3.error().id() == "courier.upcast.missing_step");
}
