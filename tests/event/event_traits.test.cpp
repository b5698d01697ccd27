// Tests for courier/event/event_traits.hpp and the typed helpers of envelope.hpp: the
// typed-event contract with nlohmann's macros, specializations for foreign types, and
// conversions between typed events and envelopes.
#include <courier/event/envelope.hpp>
#include <courier/event/event_traits.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <thread>

namespace shop {

struct order_created {
    static constexpr courier::event_name event_type{"order.created.v1"};
    std::string order_id;
    double amount = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_created, order_id, amount)
};

struct order_shipped {
    static constexpr courier::event_name event_type{"order.shipped.v2"};
    std::string order_id;
    std::string carrier;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_shipped, order_id, carrier)

struct order_created_v2 {
    static constexpr courier::event_name event_type{"order.created.v2"};
    std::string order_id;
    double amount = 0;
    std::string currency;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_created_v2, order_id, amount, currency)
};

// Named but without JSON support.
struct ping {
    static constexpr courier::event_name event_type{"health.ping.v1"};
};

// JSON but no name.
struct unnamed {
    int x = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(unnamed, x)
};

// Wrong type for event_type.
struct stringly {
    static constexpr const char* event_type = "order.created.v1";
    int x = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(stringly, x)
};

}  // namespace shop

namespace vendor {
// A type we cannot change: it has no event_type member.
struct payment {
    std::string id;
    long cents = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(payment, id, cents)
}  // namespace vendor

template <>
struct courier::event_traits<vendor::payment> {
    static constexpr courier::event_name event_type{"payment.settled.v3"};
};

TEST_CASE("typed_event accepts structs with an event_type and nlohmann conversions", "[event][event_traits]") {
    STATIC_REQUIRE(courier::typed_event<shop::order_created>);
    STATIC_REQUIRE(courier::typed_event<shop::order_shipped>);
    STATIC_REQUIRE(courier::typed_event<vendor::payment>);
    STATIC_REQUIRE(courier::named_event<shop::ping>);
    STATIC_REQUIRE_FALSE(courier::typed_event<shop::ping>);
    STATIC_REQUIRE_FALSE(courier::named_event<shop::unnamed>);
    STATIC_REQUIRE_FALSE(courier::typed_event<shop::unnamed>);
    STATIC_REQUIRE_FALSE(courier::named_event<shop::stringly>);
    STATIC_REQUIRE_FALSE(courier::named_event<int>);
    STATIC_REQUIRE_FALSE(courier::typed_event<const shop::order_created>);

    STATIC_REQUIRE(courier::event_type_of<shop::order_created>() == "order.created.v1");
    STATIC_REQUIRE(courier::event_type_of<shop::order_shipped>().version() == 2);
    STATIC_REQUIRE(courier::event_type_of<vendor::payment>().base() == "payment.settled");
}

TEST_CASE("to_data and from_data convert typed events through their JSON", "[event][event_traits]") {
    const shop::order_created ev{"o-1", 12.5};
    const auto data = courier::to_data(ev);
    CHECK(data == nlohmann::json{{"order_id", "o-1"}, {"amount", 12.5}});
    auto back = courier::from_data<shop::order_created>(data);
    REQUIRE(back);
    CHECK(back->order_id == "o-1");
    CHECK(back->amount == 12.5);

    SECTION("data that does not convert is an error, not an exception") {
        auto r = courier::from_data<shop::order_created>(nlohmann::json{{"order_id", 5}});
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::malformed_envelope);
        CHECK(r.error().id() == "courier.event.bad_data");
        CHECK_THAT(r.error().message, Catch::Matchers::Contains("order.created.v1"));
        CHECK_FALSE(courier::from_data<shop::order_created>(nlohmann::json::array()));
        CHECK_FALSE(courier::from_data<shop::order_created>(nullptr));
    }
}

TEST_CASE("make_envelope fills type, version, id, timestamp and data", "[event][event_traits]") {
    const courier::time_point now = courier::time_point(std::chrono::nanoseconds(1'735'689'600'123'456'789LL));
    // On a fresh thread: the v7 generator is per thread and never goes back in time, so on a
    // thread that made an id of today (another test, in the same process) the id would carry today.
    courier::envelope e, again;
    std::thread([&] {
        e = courier::make_envelope(vendor::payment{"p-9", 1999}, now, {"billing", "t-1", "c-1", ""});
        again = courier::make_envelope(vendor::payment{"p-9", 1999}, now);
    }).join();
    CHECK(e.event_type == "payment.settled.v3");
    CHECK(e.version == 3);
    CHECK(e.event_id.version() == 7);
    CHECK(e.event_id.unix_ts_ms() == 1'735'689'600'123ULL);
    CHECK(e.timestamp == courier::time_point(std::chrono::microseconds(1'735'689'600'123'456LL)));  // truncated
    CHECK(e.data == nlohmann::json{{"id", "p-9"}, {"cents", 1999}});
    CHECK(e.metadata.producer == "billing");
    CHECK(e.name()->version() == 3);

    CHECK(e.event_id < again.event_id);  // fresh, increasing ids
}

TEST_CASE("data_as returns the typed event or says why it cannot", "[event][event_traits]") {
    const auto now = courier::time_point(std::chrono::seconds(1'735'689'600));
    const auto e = courier::make_envelope(shop::order_created{"o-2", 3}, now);
    auto ok = courier::data_as<shop::order_created>(e);
    REQUIRE(ok);
    CHECK(ok->order_id == "o-2");

    auto other_version = courier::data_as<shop::order_created_v2>(e);
    REQUIRE_FALSE(other_version);
    CHECK(other_version.error() == courier::errc::version_mismatch);
    CHECK(other_version.error().id() == "courier.event.version_mismatch");

    auto other_type = courier::data_as<shop::order_shipped>(e);
    REQUIRE_FALSE(other_type);
    CHECK(other_type.error() == courier::errc::unknown_event);
    CHECK(other_type.error().id() == "courier.event.type_mismatch");

    auto broken = e;
    broken.data = nlohmann::json{{"amount", "lots"}};
    auto bad = courier::data_as<shop::order_created>(broken);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().id() == "courier.event.bad_data");
}

TEST_CASE("event_metadata::caused_by continues the trace and names the cause", "[event][event_traits]") {
    const auto cause_id = courier::uuid::from_u64(0x0194228eb57b7000ULL, 0x8000000000000001ULL);
    const courier::event_metadata cause{"orders", "trace-1", "", ""};
    const auto m = courier::event_metadata::caused_by(cause, cause_id, "billing");
    CHECK(m.producer == "billing");
    CHECK(m.trace_id == "trace-1");
    CHECK(m.correlation_id == cause_id.to_string());  // the first event starts the correlation
    CHECK(m.causation_id == cause_id.to_string());
    const auto next = courier::event_metadata::caused_by(m, courier::uuid::from_u64(1, 2), "shipping");
    CHECK(next.correlation_id == cause_id.to_string());
    CHECK(next.causation_id == courier::uuid::from_u64(1, 2).to_string());
}
