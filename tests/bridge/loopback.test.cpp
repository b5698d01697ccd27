// The conformance suite against the in-memory loopback broker, plus what only the loopback
// can show: messages stored once per publish, pending entries, nack to the broker's dead letters.
#include "bridge/conformance.hpp"

#include <courier/bridge/loopback.hpp>

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
namespace br = courier::bridge;

namespace {

conformance::broker_env loopback_env(bool) {
    auto broker = br::loopback_broker::create({.redelivery_after = 300ms});
    conformance::broker_env env;
    env.make_transport = [broker] { return broker->make_transport(); };
    env.stop_broker = [broker] { broker->set_down(true); };
    env.start_broker = [broker] { broker->set_down(false); };
    env.redelivery_after = 300ms;
    env.keep_alive = broker;
    return env;
}

}  // namespace

COURIER_BRIDGE_CONFORMANCE("loopback", "[loopback]", loopback_env)

TEST_CASE("loopback broker keeps unacked entries pending and redelivers them with a higher count", "[bridge][loopback]") {
    auto broker = br::loopback_broker::create({.redelivery_after = 50ms});
    auto t = broker->make_transport();
    REQUIRE(t->connect(1s));
    const br::ingest_spec spec{.topic = "t", .group = "g", .consumer = "c"};
    REQUIRE(t->subscribe(spec));
    broker->append(br::wire_message{.topic = "t", .key = "", .event_id = "1", .event_type = "a.b.v1", .payload = "p", .headers = {}});
    std::vector<br::inbound_message> got;
    auto collect = [&](br::inbound_message m) { got.push_back(std::move(m)); };
    REQUIRE(t->poll(100ms, 10, [](br::publish_confirm) {}, collect));
    REQUIRE(got.size() == 1);
    CHECK(got[0].delivery_count == 1);
    CHECK(broker->pending("t", "g") == 1);
    REQUIRE(conformance::wait_until([&] {
        REQUIRE(t->poll(10ms, 10, [](br::publish_confirm) {}, collect));
        return got.size() == 2;
    }));
    CHECK(got[1].delivery_count == 2);
    CHECK(got[1].tag.number == got[0].tag.number);
    REQUIRE(t->nack(spec, got[1].tag, false));
    CHECK(broker->pending("t", "g") == 0);
    REQUIRE(broker->rejected().size() == 1);
    CHECK(broker->rejected()[0].message.payload == "p");
}

TEST_CASE("loopback transport reports a lost connection while the broker is down and reconnects after", "[bridge][loopback]") {
    auto broker = br::loopback_broker::create();
    auto t = broker->make_transport();
    REQUIRE(t->connect(1s));
    broker->set_down(true);
    auto r = t->publish(1, br::wire_message{.topic = "t", .key = "", .event_id = "1", .event_type = "a.b.v1", .payload = "p", .headers = {}});
    REQUIRE_FALSE(r);
    CHECK(r.error().id() == "courier.bridge.loopback.down");
    CHECK_FALSE(t->connected());
    CHECK_FALSE(t->connect(1s));
    broker->set_down(false);
    REQUIRE(t->connect(1s));
    CHECK(t->publish(2, br::wire_message{.topic = "t", .key = "", .event_id = "2", .event_type = "a.b.v1", .payload = "q", .headers = {}}));
    CHECK(broker->read_all("t").size() == 1);
}
