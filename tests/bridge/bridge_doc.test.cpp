// The examples of docs/bridges.md, docs/bridges-nats-kafka.md, docs/bridges-amqp.md and
// docs/migrating-to-a-broker.md, compiled (and, where no server is needed, run): the pages quote
// the code between the "doc:" markers (tests/docs/check_snippets.py checks that they do).
// - The bridge wiring runs against the in-memory loopback broker.
// - The Kafka example runs against librdkafka's mock cluster, where the Kafka adapter exists.
// - The NATS and RabbitMQ examples name the broker at its usual address, which no test has:
//   they are compiled (where their adapter exists) in functions no test calls. The same calls
//   run against real servers in tests/bridge/nats.test.cpp and tests/bridge/amqp.test.cpp.
// COURIER_TEST_HAVE_<ADAPTER> is defined by tests/CMakeLists.txt for each adapter compiled in.
// Not the Kafka example under ThreadSanitizer: librdkafka's threads crash TSan's runtime before
// any courier code runs (see tests/bridge/kafka.test.cpp).
#if COURIER_TEST_HAVE_KAFKA && !defined(__SANITIZE_THREAD__)
#define COURIER_TEST_RUN_KAFKA_DOC 1
#else
#define COURIER_TEST_RUN_KAFKA_DOC 0
#endif
#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/loopback.hpp>
#include <courier/runtime/runtime.hpp>
#if COURIER_TEST_HAVE_NATS
#include <courier/bridge/nats.hpp>
#endif
#if COURIER_TEST_RUN_KAFKA_DOC
#include "bridge/kafka_cluster.hpp"

#include <courier/bridge/kafka.hpp>
#endif
#if COURIER_TEST_HAVE_AMQP
#include <courier/bridge/amqp.hpp>
#endif

#include <catch2/catch.hpp>

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "wait.hpp"

namespace bridge_doc {

using namespace std::chrono_literals;
using courier_test::wait_until;

struct order_created {
    static constexpr courier::event_name event_type{"order.created.v1"};
    std::string id;
    double total = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_created, id, total)
};

TEST_CASE("docs/bridges.md: a topic moves to a broker by configuration, publishers and subscribers unchanged",
          "[bridge][loopback][docs]") {
    // Two services, as two processes would have them.
    courier::runtime orders_rt(courier::runtime_options{.threads = 1});
    courier::runtime shipping_rt(courier::runtime_options{.threads = 1});
    std::mutex mutex;
    std::vector<std::string> shipped;
    auto ship = [&](const std::string& id) {
        std::lock_guard lock(mutex);
        shipped.push_back(id);
    };

    // doc: wiring
    // Configuration: "redis://127.0.0.1:6379?stream=orders" (include <courier/bridge/redis.hpp>
    // and link courier::bridge_redis), "nats://127.0.0.1:4222", ... or, in tests, an in-memory broker:
    std::string url = "loopback://orders";

    // The orders service publishes as before; its bridge forwards the topic to the broker.
    auto out = courier::bridge::broker_bridge::connect(orders_rt.bus(), url).value();
    out->forward("order.#", {.topic = "orders"}).value();                                // local -> broker

    // The shipping service's bridge publishes what the broker delivers on its own bus.
    auto in = courier::bridge::broker_bridge::connect(shipping_rt.bus(), url).value();
    in->ingest({.topic = "orders", .group = "shipping", .consumer = "ship-1"}).value();  // broker -> local
    auto sub = shipping_rt.bus().subscribe<order_created>([&](const order_created& e) { ship(e.id); });  // unchanged
    in->wait_until_ready(std::chrono::seconds(10));  // connected, and the ingest route subscribed

    orders_rt.bus().publish(order_created{"o-1", 42.0});
    // doc: end

    REQUIRE(wait_until([&] {
        std::lock_guard lock(mutex);
        return !shipped.empty();
    }));
    {
        std::lock_guard lock(mutex);
        CHECK(shipped == std::vector<std::string>{"o-1"});
    }
    CHECK(wait_until([&] { return out->stats().confirmed == 1 && in->stats().acked == 1; }));
    CHECK(out->stats().forwarded == 1);
    CHECK(in->stats().ingested == 1);
    CHECK(in->stats().duplicates == 0);
}

#if COURIER_TEST_RUN_KAFKA_DOC
TEST_CASE("docs/bridges-nats-kafka.md: a bridge over Kafka forwards by event name and ingests with a consumer group",
          "[bridge][kafka][docs]") {
    kafka_test::kafka_cluster cluster;  // librdkafka's mock cluster, in this process
    cluster.create_topic("order.created.v1", 4);
    const std::string url = "kafka://" + cluster.bootstraps();
    courier::runtime rt(courier::runtime_options{.threads = 1});
    std::mutex mutex;
    std::vector<courier::uuid> billed;
    auto sub = rt.bus().subscribe<order_created>(
        [&](const order_created&, const courier::message_context& ctx) {
            std::lock_guard lock(mutex);
            billed.push_back(ctx.event_id());
        },
        {.name = "billing"});

    // doc: kafka
    // url: "kafka://127.0.0.1:9092" (several bootstrap servers: "kafka://a:9092,b:9092")
    auto bridge = courier::bridge::broker_bridge::connect(rt.bus(), url).value();
    bridge->forward("order.created.v1").value();                                   // topic = event name
    bridge->ingest({.topic = "order.created.v1", .group = "billing"}).value();     // consumer group
    // doc: end
    auto pattern = bridge->ingest({.topic = "order.#", .group = "audit"});  // Kafka has no patterns
    REQUIRE_FALSE(pattern);
    CHECK(pattern.error().id() == "courier.bridge.capability.wildcards");
    REQUIRE(bridge->wait_until_ready(20s));

    (void)rt.bus().publish(order_created{"o-1", 42.0});
    // The local publish, then the same event back from Kafka (a bridge does not forward what it ingests).
    REQUIRE(wait_until([&] {
        std::lock_guard lock(mutex);
        return billed.size() == 2;
    }, 30s));
    {
        std::lock_guard lock(mutex);
        CHECK(billed[0] == billed[1]);
    }
    CHECK(wait_until([&] { return bridge->stats().acked == 1; }));
    CHECK(bridge->stats().confirmed == 1);
    CHECK(bridge->stats().forwarded == 1);
    bridge->stop();
}
#endif

#if COURIER_TEST_HAVE_NATS
// Compiled, never called: it needs a nats-server with JetStream at 127.0.0.1:4222 (the tests
// start theirs on a free port; tests/bridge/nats.test.cpp runs these calls against it).
void nats_bridge_example() {
    // doc: nats-bridge
    courier::runtime rt;
    auto bridge = courier::bridge::broker_bridge::connect(rt.bus(), "nats://127.0.0.1:4222?jetstream=true").value();
    bridge->forward("order.#").value();                                    // local -> NATS, subject = event name
    bridge->ingest({.topic = "order.*.v1", .group = "billing"}).value();   // NATS -> local, queue group "billing"
    // doc: end
}

// Compiled, never called (see above).
void nats_transport_example() {
    // doc: nats-transport
    courier::bridge::nats_transport t({.url = "nats://127.0.0.1:4222", .jetstream = true});
    t.connect(std::chrono::seconds(2)).value();
    t.subscribe({.topic = "order.>", .group = "audit", .from_beginning = true}).value();
    courier::bridge::wire_message m;
    m.topic = "order.created.v1";
    m.event_id = "e-1";
    m.payload = "{}";
    t.publish(1, m).value();
    bool stored = false;
    t.poll(std::chrono::milliseconds(100), 64,
           [&](courier::bridge::publish_confirm c) { stored = c.outcome.has_value(); },  // JetStream stored it
           [&](courier::bridge::inbound_message in) { t.ack({}, in.tag).value(); }).value();
    // doc: end
}

TEST_CASE("docs/bridges-nats-kafka.md: the NATS examples compile against the adapter", "[bridge][nats][docs]") {
    // What the uncalled examples above would connect to, parsed as the bridge parses it.
    auto o = courier::bridge::nats_options::from_url(
        courier::bridge::parse_broker_url("nats://127.0.0.1:4222?jetstream=true").value());
    REQUIRE(o);
    CHECK(o->url == "nats://127.0.0.1:4222");
    CHECK(o->jetstream);
    void (*examples[])() = {nats_bridge_example, nats_transport_example};
    CHECK(examples[0] != examples[1]);
}
#endif

#if COURIER_TEST_HAVE_AMQP
// Compiled, never called: it needs a rabbitmq-server at 127.0.0.1:5672 (the tests start theirs
// on a free port; tests/bridge/amqp.test.cpp runs these calls against it).
void amqp_bridge_example() {
    // doc: amqp-bridge
    courier::runtime rt;
    auto bridge = courier::bridge::broker_bridge::connect(
        rt.bus(), "amqp://guest:guest@127.0.0.1:5672/").value();
    bridge->forward("order.#").value();                          // local -> RabbitMQ, routing key = event name
    bridge->ingest({.topic = "order.*.v1", .group = "billing"}).value();  // RabbitMQ -> local
    // doc: end
}

// Compiled, never called (see above).
void amqp_transport_example() {
    // doc: amqp-transport
    courier::bridge::amqp_transport t({.host = "127.0.0.1", .port = 5672});
    t.connect(std::chrono::seconds(2)).value();
    const courier::bridge::ingest_spec spec{.topic = "order.*.v1", .group = "billing"};
    t.subscribe(spec).value();
    courier::bridge::wire_message m;
    m.topic = "order.created.v1";
    m.event_id = "e-1";
    m.event_type = "order.created.v1";
    m.payload = "{}";
    t.publish(1, m).value();
    bool confirmed = false;
    t.poll(std::chrono::milliseconds(100), 64,
           [&](courier::bridge::publish_confirm c) { confirmed = c.sequence == 1 && c.outcome; },  // broker has it
           [&](courier::bridge::inbound_message in) { t.ack(spec, in.tag).value(); }).value();
    // doc: end
}

TEST_CASE("docs/bridges-amqp.md: the RabbitMQ examples compile against the adapter", "[bridge][amqp][docs]") {
    auto o = courier::bridge::amqp_options::from_url(
        courier::bridge::parse_broker_url("amqp://guest:guest@127.0.0.1:5672/").value());
    REQUIRE(o);
    CHECK(o->host == "127.0.0.1");
    CHECK(o->port == 5672);
    CHECK(o->user == "guest");
    CHECK(o->vhost == "/");
    void (*examples[])() = {amqp_bridge_example, amqp_transport_example};
    CHECK(examples[0] != examples[1]);
}
#endif

}  // namespace bridge_doc
