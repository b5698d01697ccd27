// Tests for courier/event/upcaster.hpp: chaining v1 -> v2 -> v3, every error path, typed
// steps, envelope-level steps, and concurrent upcasts while steps are being registered.
#include <courier/event/upcaster.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using courier::envelope;
using courier::upcaster_registry;
using nlohmann::json;

namespace {

envelope order_v1() {
    envelope e;
    e.event_type = "order.created.v1";
    e.version = 1;
    e.event_id = courier::uuid::from_u64(0x0194228eb57b7000ULL, 0x8000000000000001ULL);
    e.timestamp = courier::time_point(std::chrono::seconds(1'735'689'600));
    e.data = json{{"id", 7}, {"total", 1250}};
    e.metadata.producer = "orders";
    return e;
}

// upcaster_registry holds a mutex and does not move, so the helper fills one in place.
void add_v1_to_v3(upcaster_registry& r) {
    // v2 added a currency.
    REQUIRE(r.add("order.created.v1", [](json d) {
        d["currency"] = "EUR";
        return d;
    }));
    // v3 renamed total to amount_cents.
    REQUIRE(r.add("order.created.v2", [](json d) {
        d["amount_cents"] = d.at("total");
        d.erase("total");
        return d;
    }));
}

}  // namespace

// Outside the anonymous namespace: clang warns about the unused to_json of internal types.
namespace upcaster_test {

struct order_v2 {
    static constexpr courier::event_name event_type{"order.created.v2"};
    int id = 0;
    int total = 0;
    std::string currency;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_v2, id, total, currency)
};
struct order_v3 {
    static constexpr courier::event_name event_type{"order.created.v3"};
    int id = 0;
    int amount_cents = 0;
    std::string currency;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_v3, id, amount_cents, currency)
};

}  // namespace upcaster_test

using upcaster_test::order_v2;
using upcaster_test::order_v3;

TEST_CASE("upcast chains registered steps up to the target version", "[event][upcaster]") {
    upcaster_registry registry;
    add_v1_to_v3(registry);
    CHECK(registry.size() == 2);

    auto v3 = registry.upcast(order_v1(), 3);
    REQUIRE(v3);
    CHECK(v3->event_type == "order.created.v3");
    CHECK(v3->version == 3);
    CHECK(v3->data == json{{"id", 7}, {"amount_cents", 1250}, {"currency", "EUR"}});
    CHECK(v3->event_id == order_v1().event_id);  // identity and context are kept
    CHECK(v3->timestamp == order_v1().timestamp);
    CHECK(v3->metadata == order_v1().metadata);

    auto v2 = registry.upcast(order_v1(), 2);
    REQUIRE(v2);
    CHECK(v2->event_type == "order.created.v2");
    CHECK(v2->version == 2);
    CHECK(v2->data == json{{"id", 7}, {"total", 1250}, {"currency", "EUR"}});

    auto v2_to_v3 = registry.upcast(*v2, 3);
    REQUIRE(v2_to_v3);
    CHECK(*v2_to_v3 == *v3);

    auto same = registry.upcast(order_v1(), 1);
    REQUIRE(same);
    CHECK(*same == order_v1());

    CHECK(registry.can_upcast("order.created", 1, 3));
    CHECK(registry.can_upcast("order.created", 2, 2));
    CHECK_FALSE(registry.can_upcast("order.created", 1, 4));
    CHECK_FALSE(registry.can_upcast("order.created", 3, 1));
    CHECK_FALSE(registry.can_upcast("order.updated", 1, 2));
}

TEST_CASE("upcast reports a missing step and never returns the wrong version", "[event][upcaster]") {
    upcaster_registry registry;
    add_v1_to_v3(registry);
    auto r = registry.upcast(order_v1(), 4);
    REQUIRE_FALSE(r);
    CHECK(r.error() == courier::errc::version_mismatch);
    CHECK(r.error().id() == "courier.upcast.missing_step");
    CHECK_THAT(r.error().message,
               Catch::Matchers::Contains("no upcaster registered for order.created.v3 -> v4 (needed to bring "
                                         "order.created.v1 to v4)"));

    auto other = order_v1();
    other.event_type = "order.updated.v1";
    auto none = registry.upcast(other, 2);
    REQUIRE_FALSE(none);
    CHECK(none.error().id() == "courier.upcast.missing_step");
}

TEST_CASE("upcast rejects downcasts, bad targets and inconsistent envelopes", "[event][upcaster]") {
    upcaster_registry registry;
    add_v1_to_v3(registry);
    auto v3 = *registry.upcast(order_v1(), 3);

    auto down = registry.upcast(v3, 2);
    REQUIRE_FALSE(down);
    CHECK(down.error() == courier::errc::version_mismatch);
    CHECK(down.error().id() == "courier.upcast.downcast");

    auto zero = registry.upcast(order_v1(), 0);
    REQUIRE_FALSE(zero);
    CHECK(zero.error() == courier::errc::invalid_argument);
    CHECK(zero.error().id() == "courier.upcast.bad_target");

    auto inconsistent = order_v1();
    inconsistent.version = 2;
    auto r = registry.upcast(inconsistent, 3);
    REQUIRE_FALSE(r);
    CHECK(r.error() == courier::errc::version_mismatch);
    CHECK(r.error().id() == "courier.upcast.inconsistent_version");

    auto bad_name = order_v1();
    bad_name.event_type = "Order.created.v1";
    auto b = registry.upcast(bad_name, 2);
    REQUIRE_FALSE(b);
    CHECK(b.error() == courier::errc::invalid_name);
    CHECK(b.error().id() == "courier.event.invalid_name");
}

TEST_CASE("upcaster registration refuses duplicates and empty steps", "[event][upcaster]") {
    upcaster_registry registry;
    add_v1_to_v3(registry);
    auto dup = registry.add("order.created.v1", [](json d) { return d; });
    REQUIRE_FALSE(dup);
    CHECK(dup.error() == courier::errc::duplicate);
    CHECK(dup.error().id() == "courier.upcast.duplicate");

    auto empty = registry.add("order.created.v3", upcaster_registry::data_step{});
    REQUIRE_FALSE(empty);
    CHECK(empty.error() == courier::errc::invalid_argument);
    CHECK(empty.error().id() == "courier.upcast.empty_step");
    CHECK_FALSE(registry.add_envelope_step("order.created.v3", upcaster_registry::envelope_step{}));
    CHECK(registry.size() == 2);
}

TEST_CASE("a throwing upcaster is reported as handler_failed", "[event][upcaster]") {
    upcaster_registry registry;
    REQUIRE(registry.add("order.created.v1", [](json d) {
        d["currency"] = "EUR";
        return d;
    }));
    REQUIRE(registry.add("order.created.v2", [](json d) -> json { return d.at("missing_key"); }));
    REQUIRE(registry.add("order.created.v3", [](json) -> json { throw 42; }));

    auto r = registry.upcast(order_v1(), 3);
    REQUIRE_FALSE(r);
    CHECK(r.error() == courier::errc::handler_failed);
    CHECK(r.error().id() == "courier.upcast.failed");
    CHECK_THAT(r.error().message, Catch::Matchers::Contains("upcaster order.created.v2 -> v3 threw:"));
    CHECK_THAT(r.error().message, Catch::Matchers::Contains("missing_key"));

    auto odd = registry.upcast(*registry.upcast(order_v1(), 2), 4);
    REQUIRE_FALSE(odd);
    CHECK(odd.error().id() == "courier.upcast.failed");
}

TEST_CASE("typed upcasters convert through the event structs", "[event][upcaster]") {
    upcaster_registry registry;
    REQUIRE(registry.add("order.created.v1", [](json d) {
        d["currency"] = "EUR";
        return d;
    }));
    REQUIRE(registry.add_typed<order_v2, order_v3>([](const order_v2& o) {
        return order_v3{o.id, o.total, o.currency};
    }));
    auto v3 = registry.upcast(order_v1(), 3);
    REQUIRE(v3);
    auto typed = courier::data_as<order_v3>(*v3);
    REQUIRE(typed);
    CHECK(typed->amount_cents == 1250);
    CHECK(typed->currency == "EUR");

    SECTION("data that does not fit From fails the upcast, not the program") {
        auto broken = *registry.upcast(order_v1(), 2);
        broken.data["total"] = "a lot";
        auto r = registry.upcast(broken, 3);
        REQUIRE_FALSE(r);
        CHECK(r.error().id() == "courier.upcast.failed");
    }
}

TEST_CASE("envelope-level upcasters may change headers while the registry sets the version", "[event][upcaster]") {
    upcaster_registry registry;
    REQUIRE(registry.add_envelope_step("order.created.v1", [](envelope& e) {
        e.headers["migrated"] = "v1->v2";
        e.data["currency"] = "EUR";
        e.event_type = "something.else.v9";  // ignored: the registry decides the result's name
        e.version = 9;
    }));
    auto r = registry.upcast(order_v1(), 2);
    REQUIRE(r);
    CHECK(r->event_type == "order.created.v2");
    CHECK(r->version == 2);
    CHECK(r->headers.at("migrated") == "v1->v2");
}

TEST_CASE("upcasts run concurrently while other steps are registered", "[event][upcaster]") {
    upcaster_registry registry;
    REQUIRE(registry.add("order.created.v1", [](json d) {
        d["n"] = d.value("n", 0) + 1;
        return d;
    }));
    std::atomic<bool> stop{false};
    std::atomic<long> done{0};
    std::atomic<bool> bad{false};  // Catch2 assertions are not thread-safe: report afterwards
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t) {
        readers.emplace_back([&] {
            while (!stop.load(std::memory_order_relaxed)) {
                auto r = registry.upcast(order_v1(), 2);
                if (!r || r->data.at("n") != 1 || r->version != 2) {
                    bad = true;
                    return;
                }
                done.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }
    // Register many unrelated steps while the readers run.
    for (int i = 0; i < 500 / COURIER_STRESS_SCALE; ++i) {
        auto name = courier::owned_event_name::parse("other.event" + std::to_string(i) + ".v1");
        REQUIRE(name);
        REQUIRE(registry.add(name->view(), [](json d) { return d; }));
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (done.load() < 1000 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    stop = true;
    for (auto& t : readers) t.join();
    CHECK_FALSE(bad.load());
    CHECK(done.load() >= 1000);
    CHECK(registry.size() == 1 + 500 / COURIER_STRESS_SCALE);
}
