// The generic bridge: URL parsing and its errors, the capability check, the outbox bound under
// each overflow policy (every drop counted and dead-lettered), the dedup window's bound, the
// loop guard, stop handing back the outbox, size limits, and the scheme factory.
#include "bridge/conformance.hpp"

#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/detail/dedup_window.hpp>
#include <courier/bridge/loopback.hpp>
#include <courier/bridge/route.hpp>
#include <courier/bridge/url.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
namespace br = courier::bridge;
using conformance::item;
using conformance::wait_until;

TEST_CASE("broker URLs of every adapter parse into a typed config", "[bridge][url]") {
    auto r = br::parse_broker_url("redis://127.0.0.1:6379?stream=orders");
    REQUIRE(r);
    CHECK(r->scheme == br::broker_scheme::redis);
    CHECK(r->host() == "127.0.0.1");
    CHECK(r->port() == 6379);
    CHECK(r->param("stream") == "orders");
    CHECK(r->param("group", "default") == "default");

    auto n = br::parse_broker_url("nats://127.0.0.1");
    REQUIRE(n);
    CHECK(n->scheme == br::broker_scheme::nats);
    CHECK(n->port() == 4222);

    auto k = br::parse_broker_url("kafka://10.0.0.1:9093,10.0.0.2");
    REQUIRE(k);
    REQUIRE(k->endpoints.size() == 2);
    CHECK(k->endpoints[0] == br::endpoint{"10.0.0.1", 9093});
    CHECK(k->endpoints[1] == br::endpoint{"10.0.0.2", 9092});

    auto a = br::parse_broker_url("amqp://guest:gu%40est@127.0.0.1:5672/");
    REQUIRE(a);
    CHECK(a->scheme == br::broker_scheme::amqp);
    CHECK(a->user == "guest");
    CHECK(a->password == "gu@est");
    CHECK(a->has_path);
    CHECK(a->path.empty());
    CHECK(a->redacted() == "amqp://guest:***@127.0.0.1:5672/");

    auto v = br::parse_broker_url("amqp://u:p@[::1]:5673/my%2Fvhost?heartbeat=10&x=a+b");
    REQUIRE(v);
    CHECK(v->host() == "::1");
    CHECK(v->port() == 5673);
    CHECK(v->path == "my/vhost");
    CHECK(v->param("x") == "a b");
    CHECK(v->param_uint("heartbeat", 0).value() == 10);

    auto l = br::parse_broker_url("loopback://orders");
    REQUIRE(l);
    CHECK(l->scheme == br::broker_scheme::loopback);
    CHECK(l->host() == "orders");
}

TEST_CASE("a bad broker URL is a typed error naming what is wrong", "[bridge][url]") {
    auto id_of = [](std::string_view url) {
        auto r = br::parse_broker_url(url);
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::invalid_argument);
        return std::string(r.error().id());
    };
    CHECK(id_of("") == "courier.bridge.url.empty");
    CHECK(id_of("127.0.0.1:6379") == "courier.bridge.url.no_scheme");
    CHECK(id_of("://x") == "courier.bridge.url.no_scheme");
    CHECK(id_of("mqtt://127.0.0.1") == "courier.bridge.url.unknown_scheme");
    CHECK(id_of("redis://") == "courier.bridge.url.no_host");
    CHECK(id_of("redis://:6379") == "courier.bridge.url.no_host");
    CHECK(id_of("kafka://a:1,") == "courier.bridge.url.no_host");
    CHECK(id_of("redis://h:0") == "courier.bridge.url.bad_port");
    CHECK(id_of("redis://h:70000") == "courier.bridge.url.bad_port");
    CHECK(id_of("redis://h:63a9") == "courier.bridge.url.bad_port");
    CHECK(id_of("redis://h:") == "courier.bridge.url.bad_port");
    CHECK(id_of("redis://h:99999999999999999999") == "courier.bridge.url.bad_port");
    CHECK(id_of("amqp://u:p%zz@h/") == "courier.bridge.url.bad_escape");
    CHECK(id_of("redis://h?stream=%4") == "courier.bridge.url.bad_escape");
    CHECK(id_of("redis://h?stream=a&stream=b") == "courier.bridge.url.bad_query");
    CHECK(id_of("redis://h?=x") == "courier.bridge.url.bad_query");

    // The password never shows up in an error.
    auto r = br::parse_broker_url("amqp://guest:secret@h:notaport/");
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("secret") == std::string::npos);

    auto p = br::parse_broker_url("redis://h?maxlen=lots&flag=maybe");
    REQUIRE(p);
    auto bad = p->param_uint("maxlen", 1);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().id() == "courier.bridge.url.bad_param");
    CHECK(p->param_uint("absent", 5).value() == 5);
    CHECK_FALSE(p->param_bool("flag", false));
}

TEST_CASE("make_transport picks the adapter by scheme and says which header a missing one needs", "[bridge][url]") {
    auto t = br::make_transport("loopback://factory-test");
    REQUIRE(t);
    CHECK((*t)->caps().broker == "loopback");
    bool checked_missing = false;
    for (auto s : {br::broker_scheme::nats, br::broker_scheme::kafka, br::broker_scheme::amqp, br::broker_scheme::redis}) {
        if (br::has_transport(s)) continue;
        auto r = br::make_transport(std::string(br::to_string(s)) + "://127.0.0.1");
        REQUIRE_FALSE(r);
        CHECK(r.error().id() == "courier.bridge.url.no_adapter");
        CHECK(r.error().message.find("courier::bridge_" + std::string(br::to_string(s))) != std::string::npos);
        checked_missing = true;
    }
    if (!checked_missing) WARN("every adapter is compiled in: no missing one to check");
    auto bad = br::make_transport("loopback://x?redelivery_ms=soon");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().id() == "courier.bridge.url.bad_param");
}

TEST_CASE("the capability check refuses routes the broker cannot carry, at configuration", "[bridge][capabilities]") {
    br::capabilities redis_like{.broker = "redis", .wildcards = br::wildcard_dialect::none, .per_key_order = true,
                                .consumer_groups = true, .redelivery = true, .replay = true, .max_message_bytes = 1000};
    br::capabilities nats_like{.broker = "nats", .wildcards = br::wildcard_dialect::nats, .per_key_order = false};
    br::capabilities amqp_like{.broker = "amqp", .wildcards = br::wildcard_dialect::courier, .per_key_order = true};

    auto id_of = [](const auto& r) {
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::invalid_argument);
        return std::string(r.error().id());
    };
    CHECK(id_of(br::check_ingest(redis_like, {.topic = "order.#"}, {})) == "courier.bridge.capability.wildcards");
    CHECK(id_of(br::check_ingest(redis_like, {.topic = "order.*.v1"}, {})) == "courier.bridge.capability.wildcards");
    CHECK(br::check_ingest(amqp_like, {.topic = "order.#"}, {}).value() == "order.#");
    // NATS: a trailing # maps to >, * stays; # inside a subject cannot be said.
    CHECK(br::check_ingest(nats_like, {.topic = "order.#"}, {.per_key_order = false}).value() == "order.>");
    CHECK(br::check_ingest(nats_like, {.topic = "order.*.v1"}, {.per_key_order = false}).value() == "order.*.v1");
    CHECK(id_of(br::check_ingest(nats_like, {.topic = "#.v1"}, {.per_key_order = false})) == "courier.bridge.capability.wildcards");
    CHECK(id_of(br::check_ingest(nats_like, {.topic = "orders"}, {})) == "courier.bridge.capability.per_key_order");
    CHECK(id_of(br::check_ingest(nats_like, {.topic = "orders", .group = "g"}, {.per_key_order = false})) ==
          "courier.bridge.capability.consumer_groups");
    CHECK(id_of(br::check_ingest(nats_like, {.topic = "orders", .from_beginning = true}, {.per_key_order = false})) ==
          "courier.bridge.capability.replay");
    CHECK(id_of(br::check_ingest(redis_like, {.topic = "orders"}, {.native_dedup = true})) == "courier.bridge.capability.native_dedup");
    CHECK(id_of(br::check_ingest(redis_like, {.topic = ""}, {})) == "courier.bridge.route.empty_topic");

    CHECK(br::check_forward(redis_like, "order.#", {.topic = "orders"}));
    CHECK(id_of(br::check_forward(redis_like, "order.#", {.topic = "order.*"})) == "courier.bridge.capability.topic");
    CHECK(id_of(br::check_forward(nats_like, "order.#", {})) == "courier.bridge.capability.per_key_order");
    CHECK(br::check_forward(nats_like, "order.#", {.per_key_order = false}));
    CHECK(id_of(br::check_forward(redis_like, "order.#", {.delayed_delivery = true})) == "courier.bridge.capability.delayed_delivery");
    CHECK(id_of(br::check_forward(redis_like, "order.#", {.priorities = true})) == "courier.bridge.capability.priorities");
    CHECK(id_of(br::check_forward(redis_like, "order.#", {.max_message_bytes = 4096})) == "courier.bridge.capability.max_message_bytes");
    auto msg = br::check_forward(redis_like, "order.#", {.priorities = true}).error().message;
    CHECK(msg.find("redis") != std::string::npos);
    CHECK(msg.find("order.#") != std::string::npos);
}

TEST_CASE("broker_bridge refuses a route at forward/ingest time with the capability error", "[bridge][capabilities]") {
    courier::runtime rt(courier::runtime_options{.threads = 1});
    auto broker = br::loopback_broker::create();  // exact topics only
    br::broker_bridge bridge(rt.bus(), broker->make_transport(), conformance::fast_options("refuse"));
    auto r = bridge.ingest({.topic = "order.#", .group = "g"});
    REQUIRE_FALSE(r);
    CHECK(r.error().id() == "courier.bridge.capability.wildcards");
    auto f = bridge.forward("order.#", {.priorities = true});
    REQUIRE_FALSE(f);
    CHECK(f.error().id() == "courier.bridge.capability.priorities");
    auto p = bridge.forward("order..#");
    REQUIRE_FALSE(p);
    CHECK(p.error() == courier::errc::invalid_pattern);
}

TEST_CASE("dedup window remembers a bounded number of ids and evicts the oldest", "[bridge][dedup]") {
    const auto id = [](std::uint64_t n) { return courier::uuid::from_u64(0x0190000000007000ULL, n); };
    const auto a = id(1), b = id(2), c = id(3), d = id(4);
    br::detail::dedup_window w(3);
    w.prefetch(a, 0);  // a hint, before and after the window fills: it changes nothing
    CHECK(w.insert(a));
    CHECK(w.insert(b));
    CHECK(w.insert(c));
    w.prefetch(d, 2);
    w.prefetch(d, 3);  // beyond the lookahead: ignored
    CHECK(w.size() == 3);
    CHECK(w.evicted() == 0);
    CHECK_FALSE(w.insert(a));
    CHECK(w.size() == 3);
    CHECK(w.insert(d));  // evicts a
    CHECK(w.size() == 3);
    CHECK(w.evicted() == 1);
    CHECK_FALSE(w.contains(a));
    CHECK(w.insert(a));  // beyond the window: not caught, as documented
    CHECK_FALSE(w.insert(d));
    w.erase(d);
    CHECK(w.size() == 2);
    CHECK_FALSE(w.contains(d));
    CHECK(w.insert(d));
    CHECK(w.contains(c));
    CHECK(w.contains(a));
    CHECK(w.insert(id(5)));  // evicts c: the oldest left after the erase closed its gap
    CHECK_FALSE(w.contains(c));
    CHECK(w.contains(a));
    CHECK(w.contains(d));
    br::detail::dedup_window off(0);
    off.prefetch(a, 1);
    CHECK(off.insert(a));
    CHECK(off.insert(a));
    CHECK(off.size() == 0);
}

namespace {
// A bridge whose broker is down: everything forwarded waits in the outbox.
struct down_bridge {
    std::shared_ptr<br::loopback_broker> broker = br::loopback_broker::create();
    courier::runtime rt{courier::runtime_options{.threads = 1}};
    std::unique_ptr<br::broker_bridge> bridge;
    explicit down_bridge(courier::overflow_policy policy) {
        broker->set_down(true);
        auto o = conformance::fast_options("small");
        o.outbox_capacity = 4;
        o.outbox_overflow = policy;
        o.block_timeout = 5ms;
        bridge = std::make_unique<br::broker_bridge>(rt.bus(), broker->make_transport(), o);
        REQUIRE(bridge->forward("conformance.#", {.topic = "out"}));
    }
    ~down_bridge() { bridge.reset(); }
    void publish(int n) {
        for (int i = 0; i < n; ++i) rt.bus().publish(item{static_cast<std::uint64_t>(i), "", ""});
    }
};
}  // namespace

TEMPLATE_TEST_CASE_SIG("the outbox bound counts and dead-letters every message it refuses", "[bridge][outbox]",
                       ((courier::overflow_policy P), P), courier::overflow_policy::fail, courier::overflow_policy::block,
                       courier::overflow_policy::drop_newest, courier::overflow_policy::drop_oldest) {
    down_bridge d(P);
    d.publish(10);
    auto s = d.bridge->stats();
    CHECK(s.dropped == 6);
    CHECK(s.dead_lettered == 6);
    CHECK(s.outbox_depth == 4);
    CHECK(s.forwarded == (P == courier::overflow_policy::drop_oldest ? 10u : 4u));
    auto dls = d.rt.bus().dead_letters().list();
    REQUIRE(dls.size() == 6);
    std::set<std::uint64_t> dropped;
    for (auto& dl : dls) {
        CHECK(dl.reason == courier::dead_letter_reason::overflow);
        CHECK(dl.message.event_type == "conformance.item.sent.v1");
        CHECK(dl.errors.front().error.find("[courier.bridge.outbox_full]") != std::string::npos);
        dropped.insert(dl.message.data.at("n").get<std::uint64_t>());
    }
    // drop_oldest keeps the newest four; the others keep the first four.
    const std::set<std::uint64_t> expected = P == courier::overflow_policy::drop_oldest ? std::set<std::uint64_t>{0, 1, 2, 3, 4, 5}
                                                                                       : std::set<std::uint64_t>{4, 5, 6, 7, 8, 9};
    CHECK(dropped == expected);

    // The broker comes back: the four kept are delivered and confirmed.
    d.broker->set_down(false);
    REQUIRE(d.bridge->flush(10s));
    auto stored = d.broker->read_all("out");
    CHECK(stored.size() == 4);
    CHECK(d.bridge->stats().confirmed == 4);
    CHECK(d.bridge->stats().outbox_depth == 0);
}

TEST_CASE("stopping a bridge hands back what its outbox still holds as dead letters", "[bridge][outbox]") {
    down_bridge d(courier::overflow_policy::fail);
    d.publish(3);
    d.bridge->stop(10ms);
    auto dls = d.rt.bus().dead_letters().list();
    REQUIRE(dls.size() == 3);
    for (auto& dl : dls) CHECK(dl.reason == courier::dead_letter_reason::shutdown);
    CHECK(d.bridge->stats().dead_lettered == 3);
    auto again = d.bridge->forward("x.#");
    REQUIRE_FALSE(again);
    CHECK(again.error().id() == "courier.bridge.stopped");
}

TEST_CASE("a message above the broker's size limit is dead-lettered, not sent", "[bridge][outbox]") {
    br::loopback_options o;
    o.caps.max_message_bytes = 300;
    auto broker = br::loopback_broker::create(o);
    courier::runtime rt(courier::runtime_options{.threads = 1});
    br::broker_bridge bridge(rt.bus(), broker->make_transport(), conformance::fast_options("limit"));
    REQUIRE(bridge.forward("conformance.#", {.topic = "out"}));
    rt.bus().publish(item{1, "", std::string(500, 'x')});
    rt.bus().publish(item{2, "", "small"});
    REQUIRE(bridge.flush(10s));
    CHECK(broker->read_all("out").size() == 1);
    auto dls = rt.bus().dead_letters().list();
    REQUIRE(dls.size() == 1);
    CHECK(dls[0].reason == courier::dead_letter_reason::non_retryable);
    CHECK(dls[0].errors.front().error.find("[courier.bridge.too_large]") != std::string::npos);
    CHECK(bridge.stats().dead_lettered == 1);
}

namespace {
// A broker that takes every publish and then refuses it in its confirm, except a message whose
// payload says "never", which publish itself refuses as too large (the broker's own limit).
class refusing_transport final : public br::transport {
public:
    const br::capabilities& caps() const noexcept override { return caps_; }
    courier::result<void> connect(courier::duration) override { return {}; }
    bool connected() const noexcept override { return true; }
    void close() noexcept override {}
    courier::result<void> publish(std::uint64_t sequence, const br::wire_message& m) override {
        if (m.payload.find("never") != std::string::npos)
            return courier::unexpected(courier::errc::limit_exceeded, "[test.too_large] the broker will never take it");
        refused_.push_back(sequence);
        return {};
    }
    courier::result<void> subscribe(const br::ingest_spec&) override { return {}; }
    courier::result<void> poll(courier::duration max_wait, std::size_t, const std::function<void(br::publish_confirm)>& on_confirm,
                               const std::function<void(br::inbound_message&&)>&) override {
        if (refused_.empty()) {
            std::this_thread::sleep_for(std::min<courier::duration>(max_wait, 1ms));
            return {};
        }
        for (auto seq : std::exchange(refused_, {}))
            on_confirm({seq, courier::unexpected(courier::errc::io_error, "[test.refused] no")});
        return {};
    }
    courier::result<void> ack(const br::ingest_spec&, const br::delivery_tag&) override { return {}; }
    courier::result<void> nack(const br::ingest_spec&, const br::delivery_tag&, bool) override { return {}; }

private:
    br::capabilities caps_ = br::loopback_options{}.caps;  // what a Redis-like log does
    std::vector<std::uint64_t> refused_;
};
}  // namespace

TEST_CASE("a message the broker never takes leaves the in-flight count before flush returns", "[bridge][outbox]") {
    courier::runtime rt(courier::runtime_options{.threads = 1});
    auto o = conformance::fast_options("refused");
    o.max_publish_attempts = 3;
    br::broker_bridge bridge(rt.bus(), std::make_unique<refusing_transport>(), o);
    REQUIRE(bridge.forward("conformance.#", {.topic = "out"}));
    rt.bus().publish(item{1, "", "refused in its confirm"});
    rt.bus().publish(item{2, "", "never"});
    REQUIRE(bridge.flush(10s));
    const auto s = bridge.stats();
    CHECK(s.in_flight == 0);
    CHECK(s.outbox_depth == 0);
    CHECK(s.confirmed == 0);
    CHECK(s.dead_lettered == 2);
    CHECK(s.publish_errors == 4);  // three refused confirms, one refused publish
    auto dls = rt.bus().dead_letters().list();
    REQUIRE(dls.size() == 2);
    std::map<std::uint64_t, std::string> why;
    for (auto& dl : dls) {
        CHECK(dl.reason == courier::dead_letter_reason::non_retryable);
        why[dl.message.data.at("n").get<std::uint64_t>()] = dl.errors.front().error;
    }
    CHECK(why[1].find("[courier.bridge.publish_refused] the broker refused it 3 times; last: [test.refused]") != std::string::npos);
    CHECK(why[2].find("[test.too_large]") != std::string::npos);
}

TEST_CASE("a bridge that forwards and ingests one topic does not send its ingested events back", "[bridge][loop]") {
    auto broker = br::loopback_broker::create();
    courier::runtime rt(courier::runtime_options{.threads = 1});
    br::broker_bridge bridge(rt.bus(), broker->make_transport(), conformance::fast_options("loop"));
    REQUIRE(bridge.forward("conformance.#", {.topic = "t"}));
    REQUIRE(bridge.ingest({.topic = "t", .group = "g"}));
    REQUIRE(bridge.wait_until_ready(5s));
    std::atomic<int> calls{0};
    auto sub = rt.bus().subscribe<item>([&](const item&) { calls.fetch_add(1); });
    rt.bus().publish(item{1, "", ""});
    REQUIRE(wait_until([&] { return calls.load() == 2 && bridge.stats().acked == 1; }));  // local + ingested copy
    std::this_thread::sleep_for(100ms);
    CHECK(calls.load() == 2);
    CHECK(bridge.stats().forwarded == 1);
    CHECK(broker->read_all("t").size() == 1);
}

TEST_CASE("broker_bridge::connect builds a bridge from a URL and rejects a bad one", "[bridge][url]") {
    courier::runtime rt(courier::runtime_options{.threads = 1});
    auto bad = br::broker_bridge::connect(rt.bus(), "loopback//oops");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().id() == "courier.bridge.url.no_scheme");
    auto ok = br::broker_bridge::connect(rt.bus(), "loopback://connect-test");
    REQUIRE(ok);
    CHECK((*ok)->wait_until_ready(5s));
    CHECK((*ok)->caps().broker == "loopback");
}

TEST_CASE("an ingested message is acked only after the local handlers finished", "[bridge][ack]") {
    auto broker = br::loopback_broker::create({.redelivery_after = 10s});
    courier::runtime rt(courier::runtime_options{.threads = 2});
    br::broker_bridge bridge(rt.bus(), broker->make_transport(), conformance::fast_options("ack"));
    std::atomic<bool> release{false};
    std::atomic<int> done{0};
    auto slow = rt.bus().subscribe<item>([&](const item&) {
        wait_until([&] { return release.load(); });
        done.fetch_add(1);
    });
    REQUIRE(bridge.ingest({.topic = "t", .group = "g"}));
    REQUIRE(bridge.wait_until_ready(5s));
    broker->append(br::detail::to_wire(conformance::make_item(1, "", courier::system_clock::instance().now()), "t"));
    REQUIRE(wait_until([&] { return bridge.stats().ingested == 1; }));
    std::this_thread::sleep_for(50ms);
    CHECK(broker->pending("t", "g") == 1);  // the handler still runs
    CHECK(bridge.stats().acked == 0);
    release = true;
    REQUIRE(wait_until([&] { return broker->pending("t", "g") == 0; }));
    CHECK(done.load() == 1);
    CHECK(bridge.stats().acked == 1);
}
