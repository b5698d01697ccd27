// The Kafka transport against librdkafka's built-in mock cluster (no Kafka server is packaged
// for Debian; the mock speaks the real protocol on 127.0.0.1 and keeps about 5 MiB per
// partition): delivery reports as confirms, headers and keys intact, per-key order, interop with
// a raw librdkafka producer/consumer, manual commits that never cover an unacked offset,
// redelivery by nack, a broker going down and up, and the error paths.
#if defined(__SANITIZE_THREAD__)
// librdkafka starts its threads with C11 thrd_create, which the ThreadSanitizer runtime of
// g++ 12 / clang 14 does not intercept: the first allocation on such a thread crashes inside
// TSan itself (SIGSEGV in its allocator cache), before any courier code runs. The Kafka tests
// therefore run in the plain and ASan+UBSan builds only.
#else
#include "bridge/kafka_cluster.hpp"

#include <courier/bridge/kafka.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace cb = courier::bridge;

using courier_test::header;

namespace {

// librdkafka reports transient broker errors it recovers from: keep polling through them.
struct kafka_collector : courier_test::transport_collector {
    kafka_collector() { poll_through_errors = true; }
};

cb::wire_message make_kafka(std::string topic, std::string id, std::string key = "", std::string payload = "") {
    cb::wire_message m;
    m.topic = std::move(topic);
    m.event_id = std::move(id);
    m.event_type = m.topic;
    m.key = std::move(key);
    m.payload = payload.empty() ? R"({"event_id":")" + m.event_id + R"("})" : std::move(payload);
    m.headers = {{"courier-trace-id", "trace-" + m.event_id}};
    return m;
}

cb::kafka_options options_for(const kafka_test::kafka_cluster& cluster) {
    cb::kafka_options o;
    o.brokers = cluster.bootstraps();
    return o;
}

}  // namespace

TEST_CASE("kafka options come from a bridge URL and the capabilities say what Kafka does", "[bridge][kafka]") {
    auto o = cb::kafka_options::from_url(cb::parse_broker_url("kafka://10.0.0.1:9093,10.0.0.2?client_id=svc&linger_ms=5").value());
    REQUIRE(o);
    CHECK(o->brokers == "10.0.0.1:9093,10.0.0.2:9092");
    CHECK(o->client_id == "svc");
    CHECK(o->linger == 5ms);
    auto bad = cb::kafka_options::from_url(cb::parse_broker_url("kafka://127.0.0.1?group=x").value());
    REQUIRE_FALSE(bad);
    CHECK(bad.error().id() == "courier.bridge.kafka.url");
    auto t = cb::make_transport("kafka://127.0.0.1:9092");
    REQUIRE(t);
    auto& caps = (*t)->caps();
    CHECK(caps.broker == "kafka");
    CHECK(caps.wildcards == cb::wildcard_dialect::none);
    CHECK(caps.per_key_order);
    CHECK(caps.consumer_groups);
    CHECK(caps.redelivery);
    CHECK(caps.replay);
    CHECK_FALSE(caps.native_dedup);
    CHECK(caps.max_message_bytes == 1000000);
}

TEST_CASE("kafka: delivery reports confirm publishes, and a group reads them with key, headers and per-key order", "[bridge][kafka]") {
    kafka_test::kafka_cluster cluster;
    const std::string topic = "order.created.v1";
    cluster.create_topic(topic, 4);
    cb::kafka_transport pub(options_for(cluster)), sub(options_for(cluster));
    REQUIRE(pub.connect(5s));
    REQUIRE(sub.connect(5s));
    cb::ingest_spec spec{.topic = topic, .group = "billing", .consumer = "b1", .from_beginning = true};
    REQUIRE(sub.subscribe(spec));
    REQUIRE(sub.subscribe(spec));  // idempotent
    constexpr int n = 400;
    for (int i = 0; i < n; ++i) {
        REQUIRE(pub.publish(static_cast<std::uint64_t>(i + 1), make_kafka(topic, "e" + std::to_string(i), "k" + std::to_string(i % 7))));
    }
    kafka_collector pc, sc;
    REQUIRE(pc.drive(pub, [&] { return pc.confirms.size() == n; }));
    CHECK(pc.ok_confirms() == n);
    std::set<std::uint64_t> seqs;
    for (auto& c : pc.confirms) seqs.insert(c.sequence);
    CHECK(seqs.size() == n);
    CHECK(*seqs.begin() == 1);
    CHECK(*seqs.rbegin() == n);
    REQUIRE(sc.drive(sub, [&] { return sc.messages.size() >= n; }, 30s));
    std::map<std::string, int> last_per_key;
    std::map<std::string, std::int32_t> partition_of_key;
    for (auto& in : sc.messages) {
        auto& m = in.message;
        const int i = std::stoi(m.event_id.substr(1));
        CHECK(m.topic == topic);
        CHECK(m.key == "k" + std::to_string(i % 7));
        CHECK(m.event_type == topic);
        CHECK(m.payload == R"({"event_id":"e)" + std::to_string(i) + R"("})");
        CHECK(header(m, "courier-trace-id") == "trace-e" + std::to_string(i));
        CHECK(in.delivery_count == 1);
        // Per key: increasing order, always the same partition.
        auto [it, fresh] = last_per_key.emplace(m.key, i);
        if (!fresh) {
            CHECK(i > it->second);
            it->second = i;
        }
        auto [p, pfresh] = partition_of_key.emplace(m.key, in.tag.partition);
        if (!pfresh) CHECK(p->second == in.tag.partition);
        REQUIRE(sub.ack(spec, in.tag));
    }
    CHECK(sc.messages.size() == n);
    CHECK(pub.stats().confirmed == n);
    CHECK(sub.stats().delivered == n);
}

TEST_CASE("kafka: what courier produces is readable by a raw librdkafka consumer, and a raw envelope is ingested", "[bridge][kafka][interop]") {
    kafka_test::kafka_cluster cluster;
    const std::string topic = "payment.captured.v1";
    cluster.create_topic(topic, 1);
    cb::kafka_transport t(options_for(cluster));
    REQUIRE(t.connect(5s));
    cb::ingest_spec spec{.topic = topic, .group = "ledger", .from_beginning = true};
    REQUIRE(t.subscribe(spec));
    const std::string envelope = R"({"event_type":")" + topic + R"(","event_id":"c-1","data":{"amount":5}})";
    REQUIRE(t.publish(1, make_kafka(topic, "c-1", "acct-9", envelope)));
    kafka_collector c;
    REQUIRE(c.drive(t, [&] { return c.confirms.size() == 1; }));
    REQUIRE(c.ok_confirms() == 1);

    // Raw consumer (its own group) reads courier's record: value, key and headers.
    auto records = cluster.raw_consume(topic, 1, 20s);
    REQUIRE(records.size() == 1);
    CHECK(records[0].value == envelope);
    CHECK(records[0].key == "acct-9");
    CHECK(records[0].headers.at("courier-event-id") == "c-1");
    CHECK(records[0].headers.at("courier-event-type") == topic);
    CHECK(records[0].headers.at("courier-trace-id") == "trace-c-1");

    // Raw producer: an envelope with only an event-id header, and one with no headers at all.
    const std::string raw_env = R"({"event_type":")" + topic + R"(","event_id":"raw-1","data":{}})";
    cluster.raw_produce(topic, "acct-1", raw_env, {{"courier-event-id", "raw-1"}});
    cluster.raw_produce(topic, "", "not an envelope", {});
    REQUIRE(c.drive(t, [&] { return c.messages.size() == 3; }, 30s));
    CHECK(c.messages[0].message.event_id == "c-1");
    CHECK(c.messages[1].message.event_id == "raw-1");
    CHECK(c.messages[1].message.payload == raw_env);
    CHECK(c.messages[1].message.key == "acct-1");
    CHECK(c.messages[2].message.event_id.empty());
    CHECK(c.messages[2].message.payload == "not an envelope");
}

TEST_CASE("kafka: a record whose value is courier's envelope is read without its headers", "[bridge][kafka]") {
    using cb::detail::kafka_read_record;
    int visits = 0;
    auto headers = [&](auto&& visit) {
        ++visits;
        visit(std::string_view("courier-event-id"), std::string_view("from-header"));
        visit(std::string_view("courier-key"), std::string_view("k-header"));
        visit(std::string_view("tenant"), std::string_view("acme"));
    };
    const std::string envelope = R"({"event_type":"order.created.v1","event_id":"0194228e-b57b-7000-8000-000000000001","data":{}})";
    auto in = kafka_read_record("orders", "", envelope, headers);
    CHECK(visits == 0);  // librdkafka is never asked to parse them
    CHECK(in.message.event_type == "order.created.v1");
    CHECK(in.message.event_id == "0194228e-b57b-7000-8000-000000000001");
    CHECK(in.message.headers.empty());
    CHECK(in.message.key.empty());
    CHECK(in.message.payload == envelope);

    // Any other value: every header is read, and the courier-* ones fill their fields.
    for (const std::string& other : {std::string(R"({"event_id":"x","event_type":"order.created.v1"})"),
                                    std::string(R"({"event_type":"order.created.v1","data":{}})"),
                                    std::string(R"({"event_type":"a\u0041","event_id":"x"})"), std::string("not json")}) {
        visits = 0;
        auto plain = kafka_read_record("orders", "", other, headers);
        CHECK(visits == 1);
        CHECK(plain.message.event_id == "from-header");
        CHECK(plain.message.key == "k-header");
        CHECK(plain.message.headers.size() == 3);
    }

    // The reused inbound_message of a transport: an envelope after a plain record drops its headers.
    cb::inbound_message reused = kafka_read_record("orders", "", "not json", headers);
    cb::detail::kafka_read_record_into(reused, "orders", "k1", envelope, headers);
    CHECK(reused.message.headers.empty());
    CHECK(reused.message.key == "k1");
    CHECK(reused.message.event_id == "0194228e-b57b-7000-8000-000000000001");
}

TEST_CASE("kafka: commits cover only acked offsets, so a crashed consumer's unacked messages come back", "[bridge][kafka][redelivery]") {
    kafka_test::kafka_cluster cluster;
    const std::string topic = "stock.reserved.v1";
    cluster.create_topic(topic, 1);
    cb::kafka_transport pub(options_for(cluster));
    REQUIRE(pub.connect(5s));
    for (int i = 0; i < 10; ++i) REQUIRE(pub.publish(static_cast<std::uint64_t>(i), make_kafka(topic, "s" + std::to_string(i), "k")));
    kafka_collector pc;
    REQUIRE(pc.drive(pub, [&] { return pc.confirms.size() == 10; }));
    REQUIRE(pc.ok_confirms() == 10);
    cb::ingest_spec spec{.topic = topic, .group = "stock", .consumer = "c1", .from_beginning = true};
    {
        cb::kafka_transport c1(options_for(cluster));
        REQUIRE(c1.connect(5s));
        REQUIRE(c1.subscribe(spec));
        kafka_collector c;
        REQUIRE(c.drive(c1, [&] { return c.messages.size() == 10; }, 30s));
        // Acks 0, 1, 2 and 5: the commit point is 3 (the first unacked offset), not 6.
        for (int i : {0, 1, 2, 5}) REQUIRE(c1.ack(spec, c.messages[static_cast<std::size_t>(i)].tag));
        c.drive(c1, [] { return false; }, 100ms);
        CHECK(c1.committed("stock", topic, 0) == 3);
        // c1 "crashes" (closes without acking the rest).
    }
    cb::kafka_transport c2(options_for(cluster));
    REQUIRE(c2.connect(5s));
    REQUIRE(c2.subscribe(spec));
    kafka_collector c;
    REQUIRE(c.drive(c2, [&] { return c.messages.size() == 7; }, 30s));
    std::vector<std::string> ids;
    for (auto& m : c.messages) ids.push_back(m.message.event_id);
    CHECK(ids == std::vector<std::string>{"s3", "s4", "s5", "s6", "s7", "s8", "s9"});

    SECTION("nack with requeue reads the message again, with a higher delivery count") {
        for (std::size_t i = 1; i < c.messages.size(); ++i) REQUIRE(c2.ack(spec, c.messages[i].tag));
        const auto first = c.messages[0];
        REQUIRE(c2.nack(spec, first.tag, true));
        c.messages.clear();
        REQUIRE(c.drive(c2, [&] { return !c.messages.empty(); }, 10s));
        CHECK(c.messages[0].message.event_id == "s3");
        CHECK(c.messages[0].delivery_count == 2);
        REQUIRE(c2.ack(spec, c.messages[0].tag));
        // Seeking back re-reads the later offsets too; acking them again is harmless.
        c.drive(c2, [] { return false; }, 300ms);
        for (auto& m : c.messages) REQUIRE(c2.ack(spec, m.tag));
        c.drive(c2, [] { return false; }, 100ms);
        CHECK(c2.committed("stock", topic, 0) == 10);
    }
    SECTION("nack without requeue settles like an ack (the bridge keeps the dead letter)") {
        for (auto& m : c.messages) REQUIRE(c2.nack(spec, m.tag, false));
        c.drive(c2, [] { return false; }, 100ms);
        CHECK(c2.committed("stock", topic, 0) == 10);
    }
}

TEST_CASE("kafka: a broker that goes down and comes back: nothing published is lost", "[bridge][kafka][restart]") {
    kafka_test::kafka_cluster cluster;
    const std::string topic = "fleet.moved.v1";
    cluster.create_topic(topic, 2);
    cb::kafka_transport pub(options_for(cluster)), sub(options_for(cluster));
    REQUIRE(pub.connect(5s));
    REQUIRE(sub.connect(5s));
    cb::ingest_spec spec{.topic = topic, .group = "fleet", .from_beginning = true};
    REQUIRE(sub.subscribe(spec));
    kafka_collector pc, sc;
    for (int i = 0; i < 50; ++i) REQUIRE(pub.publish(static_cast<std::uint64_t>(i), make_kafka(topic, "f" + std::to_string(i), "k" + std::to_string(i % 3))));
    REQUIRE(pc.drive(pub, [&] { return pc.confirms.size() == 50; }));
    cluster.broker_down();
    for (int i = 50; i < 100; ++i) REQUIRE(pub.publish(static_cast<std::uint64_t>(i), make_kafka(topic, "f" + std::to_string(i), "k" + std::to_string(i % 3))));
    pc.drive(pub, [] { return false; }, 500ms);
    CHECK(pc.confirms.size() == 50);  // nothing confirmed while the broker is down
    cluster.broker_up();
    REQUIRE(kafka_test::reconnect_kafka(pub, 20s));
    REQUIRE(pc.drive(pub, [&] { return pc.confirms.size() == 100; }, 30s));
    CHECK(pc.ok_confirms() == 100);
    REQUIRE(kafka_test::reconnect_kafka(sub, 20s));
    REQUIRE(sc.drive(sub, [&] {
        std::set<std::string> ids;
        for (auto& m : sc.messages) ids.insert(m.message.event_id);
        return ids.size() == 100;
    }, 40s));
}

TEST_CASE("kafka: the error paths say what went wrong", "[bridge][kafka][errors]") {
    SECTION("a refused connection times out within the connect budget") {
        cb::kafka_transport t({.brokers = "127.0.0.1:" + std::to_string(kafka_test::kafka_unused_port())});
        const auto t0 = std::chrono::steady_clock::now();
        auto r = t.connect(1s);
        REQUIRE_FALSE(r);
        CHECK(r.error().id() == "courier.bridge.kafka.connect");
        CHECK(std::chrono::steady_clock::now() - t0 < 5s);
        CHECK_FALSE(t.connected());
        auto p = t.publish(1, make_kafka("order.created.v1", "x"));
        REQUIRE_FALSE(p);
        CHECK(p.error() == courier::errc::closed);
    }
    SECTION("a host that does not resolve") {
        cb::kafka_transport t({.brokers = "no-such-host.invalid:9092"});
        auto r = t.connect(1s);
        REQUIRE_FALSE(r);
        CHECK(r.error().id() == "courier.bridge.kafka.connect");
    }
    SECTION("a bad librdkafka property") {
        cb::kafka_transport t({.properties = {{"no.such.property", "1"}}});
        auto r = t.connect(1s);
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::invalid_argument);
        CHECK(r.error().id() == "courier.bridge.kafka.config");
    }
    SECTION("an oversized message, a pattern, a bad topic name") {
        kafka_test::kafka_cluster cluster;
        cb::kafka_transport t(options_for(cluster));
        REQUIRE(t.connect(5s));
        auto r = t.publish(1, make_kafka("order.created.v1", "big", "", std::string(t.caps().max_message_bytes + 1, 'x')));
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::limit_exceeded);
        CHECK(r.error().id() == "courier.bridge.kafka.too_large");
        auto p = t.subscribe({.topic = "order.*.v1", .group = "g"});
        REQUIRE_FALSE(p);
        CHECK(p.error() == courier::errc::invalid_pattern);
        CHECK(p.error().id() == "courier.bridge.kafka.pattern");
        auto b = t.publish(2, make_kafka("order created", "bad"));
        REQUIRE_FALSE(b);
        CHECK(b.error().id() == "courier.bridge.kafka.topic");
        CHECK(t.stats().published == 0);
        auto a = t.ack({.topic = "x", .group = "nobody"}, {});
        REQUIRE_FALSE(a);
        CHECK(a.error().id() == "courier.bridge.kafka.unknown_group");
    }
}

TEST_CASE("kafka: wake makes a blocked poll return at once, from another thread", "[bridge][kafka]") {
    kafka_test::kafka_cluster cluster;
    cluster.create_topic("wake.tested.v1", 1);
    for (bool with_consumer : {false, true}) {
        cb::kafka_transport t(options_for(cluster));
        REQUIRE(t.connect(5s));
        if (with_consumer) REQUIRE(t.subscribe({.topic = "wake.tested.v1", .group = "w"}));
        std::atomic<bool> polling{false};
        std::thread waker([&] {
            while (!polling.load()) std::this_thread::yield();
            std::this_thread::sleep_for(50ms);
            t.wake();
        });
        const auto t0 = std::chrono::steady_clock::now();
        polling = true;
        auto r = t.poll(10s, 16, [](cb::publish_confirm) {}, [](cb::inbound_message) {});
        const auto took = std::chrono::steady_clock::now() - t0;
        waker.join();
        INFO("with a consumer: " << with_consumer);
        CHECK(r);
        CHECK(took < 5s);
    }
}

// ---- the shared conformance suite, against a mock cluster per test -------------------------
#include "bridge/conformance.hpp"
#include "bridge/transport_support.hpp"

namespace {

conformance::broker_env kafka_env(bool /*needs_restart*/) {
    conformance::broker_env env;
    env.topic_prefix = "kafka";
    auto cluster = std::make_shared<kafka_test::kafka_cluster>();
    const auto brokers = cluster->bootstraps();
    env.make_transport = [brokers] { return std::make_unique<cb::kafka_transport>(cb::kafka_options{.brokers = brokers}); };
    env.prepare_topic = [cluster](const std::string& topic) { cluster->create_topic(topic, 4); };
    // The cluster is this test's own: "restart" = its broker goes down and comes back, data kept.
    env.stop_broker = [cluster] { cluster->broker_down(); };
    env.start_broker = [cluster] { cluster->broker_up(); };
    env.redelivery_after = 1000ms;
    env.keep_alive = cluster;
    return env;
}

}  // namespace

COURIER_BRIDGE_CONFORMANCE("kafka", "[kafka]", kafka_env)

#endif  // !__SANITIZE_THREAD__
