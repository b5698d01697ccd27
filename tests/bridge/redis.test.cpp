// The Redis Streams adapter: the conformance suite against a real redis-server (started by the
// CTest fixture, scripts/services/redis.sh; the restart test starts a private one), interop both
// ways with redis-cli, XAUTOCLAIM reclaiming what a dead consumer left, and its URL options.
#include "bridge/conformance.hpp"
#include "bridge/services.hpp"

#include <courier/bridge/redis.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

using namespace std::chrono_literals;
namespace br = courier::bridge;
using conformance::item;
using conformance::wait_until;

namespace {

std::string run(const std::string& command) {
    std::string out;
    FILE* p = ::popen(command.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = ::pclose(p);
    INFO(command << " -> " << out);
    REQUIRE(status == 0);
    return out;
}

std::uint16_t read_port(const std::string& state) {
    const auto port = courier_test::service_port(state);
    if (port == 0) FAIL("no port in " + state + "/port: run the redis tests through ctest (its fixture starts the server)");
    return port;
}

std::uint16_t shared_port() { return read_port(courier_test::service_state("redis")); }

std::string cli(std::uint16_t port) { return "redis-cli -h 127.0.0.1 -p " + std::to_string(port) + " "; }

br::redis_options test_options(std::uint16_t port) {
    br::redis_options o;
    o.port = port;
    o.claim_idle = 300ms;
    o.claim_interval = 100ms;
    o.block = 50ms;
    return o;
}

// A redis-server of the test's own (the restart test stops it), removed with its data at the end.
struct private_server {
    std::string script = courier_test::service_script("redis");
    std::string state;
    std::uint16_t port = 0;
    private_server() {
        char tmpl[] = "/tmp/courier-redis-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        state = std::string(tmpl) + "/server";
        run(script + " start " + state);
        port = read_port(state);
    }
    ~private_server() {
        std::string cmd = script + " stop " + state + " && rmdir " + state.substr(0, state.rfind('/'));
        if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not stop the private redis in %s\n", state.c_str());
    }
};

conformance::broker_env redis_env(bool needs_restart) {
    conformance::broker_env env;
    env.redelivery_after = 300ms;
    if (!needs_restart) {
        const auto port = shared_port();
        env.make_transport = [port] { return std::make_unique<br::redis_transport>(test_options(port)); };
        return env;
    }
    auto server = std::make_shared<private_server>();
    const auto port = server->port;
    env.make_transport = [port] { return std::make_unique<br::redis_transport>(test_options(port)); };
    // These run on the restart test's chaos thread: no Catch assertions there (Catch is not
    // thread-safe); a failure shows up as messages that never arrive.
    env.stop_broker = [server] {
        if (std::system((server->script + " pause " + server->state).c_str()) != 0) std::fprintf(stderr, "redis pause failed\n");
    };
    env.start_broker = [server] {
        if (std::system((server->script + " resume " + server->state).c_str()) != 0) std::fprintf(stderr, "redis resume failed\n");
    };
    env.keep_alive = server;
    return env;
}

std::string fresh_stream(const std::string& what) {
    static int n = 0;
    return "courier_test_" + what + "_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
}

// `redis-cli XRANGE` output (one field or value per line, entry ids included) -> the values
// following each line equal to `field`.
std::vector<std::string> values_of(const std::string& xrange, const std::string& field) {
    std::vector<std::string> out;
    std::istringstream in(xrange);
    std::string line;
    bool take = false;
    while (std::getline(in, line)) {
        if (take) out.push_back(line);
        take = line == field;
    }
    return out;
}

}  // namespace

COURIER_BRIDGE_CONFORMANCE("redis", "[redis]", redis_env)

TEST_CASE("redis-cli XRANGE shows what courier forwarded as readable fields and JSON", "[bridge][redis]") {
    const auto port = shared_port();
    const auto stream = fresh_stream("xrange");
    courier::runtime rt(courier::runtime_options{.threads = 1});
    br::broker_bridge bridge(rt.bus(), std::make_unique<br::redis_transport>(test_options(port)), conformance::fast_options("xrange"));
    REQUIRE(bridge.forward("conformance.#", {.topic = stream}));
    auto env = conformance::make_item(5, "customer-9", courier::system_clock::instance().now());
    env.metadata.trace_id = "trace-1";
    REQUIRE(rt.bus().publish(env));
    REQUIRE(bridge.flush(10s));

    const auto out = run(cli(port) + "XRANGE " + stream + " - +");
    CHECK(values_of(out, "event_type") == std::vector<std::string>{"conformance.item.sent.v1"});
    CHECK(values_of(out, "event_id") == std::vector<std::string>{env.event_id.to_string()});
    CHECK(values_of(out, "key") == std::vector<std::string>{"customer-9"});
    auto json = values_of(out, "envelope");
    REQUIRE(json.size() == 1);
    auto back = courier::decode(json.front());
    REQUIRE(back);
    CHECK(back->event_id == env.event_id);
    CHECK(back->data.at("n") == 5);
    CHECK(back->metadata.trace_id == "trace-1");
    CHECK(nlohmann::json::parse(json.front()).at("data").at("key") == "customer-9");
}

TEST_CASE("an envelope written by redis-cli XADD is ingested and reaches a typed subscriber", "[bridge][redis]") {
    const auto port = shared_port();
    const auto stream = fresh_stream("xadd");
    courier::runtime rt(courier::runtime_options{.threads = 1});
    br::broker_bridge bridge(rt.bus(), std::make_unique<br::redis_transport>(test_options(port)), conformance::fast_options("xadd"));
    std::mutex m;
    std::vector<std::pair<item, std::string>> got;
    auto sub = rt.bus().subscribe<item>([&](const item& v, const courier::message_context& ctx) {
        std::lock_guard lock(m);
        got.emplace_back(v, ctx.event_id().to_string());
    });
    REQUIRE(bridge.ingest({.topic = stream, .group = "shipping", .consumer = "s1"}));
    REQUIRE(bridge.wait_until_ready(10s));

    const auto env = conformance::make_item(42, "", courier::system_clock::instance().now());
    const std::string json = courier::encode(env);
    REQUIRE(json.find('\'') == std::string::npos);
    run(cli(port) + "XADD " + stream + " '*' event_type " + env.event_type + " event_id " + env.event_id.to_string() +
        " envelope '" + json + "' > /dev/null");
    REQUIRE(wait_until([&] {
        std::lock_guard lock(m);
        return got.size() == 1;
    }));
    {
        std::lock_guard lock(m);
        CHECK(got[0].first.n == 42);
        CHECK(got[0].second == env.event_id.to_string());
    }
    // Acked once handled: nothing pending for the group.
    REQUIRE(wait_until([&] { return bridge.stats().acked == 1; }));
    const auto pending = run(cli(port) + "XPENDING " + stream + " shipping");
    CHECK(pending.rfind("0\n", 0) == 0);

    // An entry another tool wrote without an envelope is dead-lettered with its fields.
    run(cli(port) + "XADD " + stream + " '*' hello world > /dev/null");
    REQUIRE(wait_until([&] { return bridge.stats().dead_lettered == 1; }));
    auto dls = rt.bus().dead_letters().list();
    REQUIRE(dls.size() == 1);
    CHECK(dls[0].reason == courier::dead_letter_reason::undecodable);
    CHECK(dls[0].message.data.at("raw") == R"({"hello":"world"})");
}

TEST_CASE("redis XAUTOCLAIM hands the entries a dead consumer left pending to a live one", "[bridge][redis]") {
    const auto port = shared_port();
    const auto stream = fresh_stream("claim");
    run(cli(port) + "XGROUP CREATE " + stream + " workers '$' MKSTREAM > /dev/null");
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) {
        const auto env = conformance::make_item(static_cast<std::uint64_t>(i), "", courier::system_clock::instance().now());
        ids.push_back(env.event_id.to_string());
        run(cli(port) + "XADD " + stream + " '*' event_id " + ids.back() + " envelope '" + courier::encode(env) + "' > /dev/null");
    }
    // A consumer takes all three and dies.
    const auto taken_at = std::chrono::steady_clock::now();
    const auto taken = run(cli(port) + "XREADGROUP GROUP workers dead COUNT 10 STREAMS " + stream + " '>'");
    CHECK(values_of(taken, "event_id").size() == 3);
    CHECK(run(cli(port) + "XPENDING " + stream + " workers").rfind("3\n", 0) == 0);

    courier::runtime rt(courier::runtime_options{.threads = 1});
    br::broker_bridge bridge(rt.bus(), std::make_unique<br::redis_transport>(test_options(port)), conformance::fast_options("claim"));
    std::mutex m;
    std::set<std::uint64_t> got;
    auto sub = rt.bus().subscribe<item>([&](const item& v) {
        std::lock_guard lock(m);
        got.insert(v.n);
    });
    REQUIRE(bridge.ingest({.topic = stream, .group = "workers", .consumer = "alive"}));
    REQUIRE(wait_until([&] { return bridge.stats().acked == 3; }));
    CHECK(std::chrono::steady_clock::now() - taken_at >= 300ms);  // only once idle past claim_idle
    {
        std::lock_guard lock(m);
        CHECK(got == std::set<std::uint64_t>{0, 1, 2});
    }
    CHECK(run(cli(port) + "XPENDING " + stream + " workers").rfind("0\n", 0) == 0);
}

TEST_CASE("redis URLs give the adapter its options, and bad ones are typed errors", "[bridge][redis][url]") {
    auto u = br::parse_broker_url("redis://:pw@10.1.2.3:7000/3?stream=orders&maxlen=500&claim_idle_ms=2000&block_ms=20");
    REQUIRE(u);
    auto o = br::redis_options::from_url(*u);
    REQUIRE(o);
    CHECK(o->host == "10.1.2.3");
    CHECK(o->port == 7000);
    CHECK(o->password == "pw");
    CHECK(o->db == 3);
    CHECK(o->stream == "orders");
    CHECK(o->maxlen == 500);
    CHECK(o->claim_idle == 2000ms);
    CHECK(o->block == 20ms);

    auto bad_db = br::redis_options::from_url(br::parse_broker_url("redis://h/zero").value());
    REQUIRE_FALSE(bad_db);
    CHECK(bad_db.error().id() == "courier.bridge.redis.bad_db");
    auto bad_maxlen = br::make_transport("redis://h?maxlen=-1");
    REQUIRE_FALSE(bad_maxlen);
    CHECK(bad_maxlen.error().id() == "courier.bridge.url.bad_param");
    CHECK(br::has_transport(br::broker_scheme::redis));
}

TEST_CASE("a redis bridge made from a URL forwards to the URL's stream", "[bridge][redis][url]") {
    const auto port = shared_port();
    const auto stream = fresh_stream("url");
    courier::runtime rt(courier::runtime_options{.threads = 1});
    auto bridge = br::broker_bridge::connect(rt.bus(), "redis://127.0.0.1:" + std::to_string(port) + "?stream=" + stream,
                                             conformance::fast_options("url"));
    REQUIRE(bridge);
    REQUIRE((*bridge)->forward("conformance.#"));
    REQUIRE(rt.bus().publish(conformance::make_item(1, "", courier::system_clock::instance().now())));
    REQUIRE(rt.bus().publish(conformance::make_item(2, "", courier::system_clock::instance().now())));
    REQUIRE((*bridge)->flush(10s));
    CHECK(run(cli(port) + "XLEN " + stream) == "2\n");
}

TEST_CASE("a redis transport to a port nobody listens on fails to connect with a typed error", "[bridge][redis]") {
    // A port that was free a moment ago: bind, read, close.
    br::redis_options o = test_options(1);
    br::redis_transport t(o);
    auto r = t.connect(500ms);
    REQUIRE_FALSE(r);
    CHECK(r.error().id() == "courier.bridge.redis.connect");
    CHECK_FALSE(t.connected());
    CHECK_FALSE(t.publish(1, br::wire_message{}));
}
