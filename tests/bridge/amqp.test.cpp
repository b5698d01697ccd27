// The AMQP 0-9-1 transport against a real rabbitmq-server (started by scripts/services/rabbitmq.sh
// on 127.0.0.1 with its own epmd, node name and data in a temporary folder): publisher confirms,
// topic bindings in courier's pattern dialect, envelope metadata as properties and headers, acks,
// reject -> dead-letter exchange, redelivery after a consumer goes away, unroutable messages kept,
// reconnect after the broker restarts, and the error paths (refused connection, bad credentials,
// bad vhost, oversized messages, malformed patterns, a queue declared differently). Interop both
// ways with RabbitMQ's own tools: `rabbitmqadmin` (management API) and a raw rabbitmq-c client.
// Then the shared conformance suite, unchanged.
#include "bridge/conformance.hpp"
#include "bridge/services.hpp"
#include "bridge/transport_support.hpp"

#include <courier/bridge/amqp.hpp>
#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/detail/wire.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/event/topic_pattern.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace cb = courier::bridge;

using collector = courier_test::transport_collector;
using courier_test::header;

namespace {

// ------------------------------------------------------------------ the broker under test

std::string rabbitmq_script() {
    if (const char* s = std::getenv("COURIER_TEST_RABBITMQ_SCRIPT"); s != nullptr && *s != '\0') return s;
    std::string here = courier_test::from_build_root(__FILE__);  // .../tests/bridge/amqp.test.cpp
    return here.substr(0, here.rfind("/tests/bridge/")) + "/scripts/services/rabbitmq.sh";
}

int read_int(const std::string& file) {
    std::ifstream in(file);
    int v = 0;
    in >> v;
    return v;
}

/// A rabbitmq-server: the CTest fixture's (COURIER_TEST_RABBITMQ_STATE), or one started here in
/// a temporary folder and stopped when the object goes (a destructor: also when a test fails).
class rabbit_server {
public:
    /// Starts a private server; `management` adds the HTTP API rabbitmqadmin needs (slower to stop).
    explicit rabbit_server(bool management) : owned_(true), management_(management) {
        char tmpl[] = "/tmp/courier-rabbitmq-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
        dir_ = tmpl;
        run("start");
    }
    /// A server somebody else started in `statedir`.
    explicit rabbit_server(std::string statedir) : dir_(std::move(statedir)) {}
    ~rabbit_server() {
        if (!owned_) return;
        if (std::system(("'" + rabbitmq_script() + "' stop '" + dir_ + "' >/dev/null 2>&1").c_str()) != 0) {}
        if (std::system(("rm -rf '" + dir_ + "'").c_str()) != 0) {}
    }
    rabbit_server(const rabbit_server&) = delete;
    rabbit_server& operator=(const rabbit_server&) = delete;

    /// The fixture's server, else one private server (with the management API) for this process.
    /// The fixture's folder comes from COURIER_TEST_RABBITMQ_STATE, or is `services/rabbitmq` in
    /// the working directory CTest runs the tests in (build/tests), when a broker answers there.
    static rabbit_server& shared() {
        static rabbit_server& server = pick();
        return server;
    }

    int port() const {
        const int p = read_int(dir_ + "/port");
        if (p <= 0) throw std::runtime_error("no port in " + dir_);
        return p;
    }
    /// The management API's port, 0 when the server runs without it.
    int management_port() const { return read_int(dir_ + "/management_port"); }

    void stop() { run("stop"); }
    void start() { run("start"); }

private:
    static rabbit_server& pick() {
        if (const char* dir = std::getenv("COURIER_TEST_RABBITMQ_STATE"); dir != nullptr && *dir != '\0') {
            static rabbit_server fixture{std::string(dir)};
            return fixture;
        }
        if (const int p = read_int("services/rabbitmq/port"); p > 0 && answers(p)) {
            static rabbit_server fixture{std::string("services/rabbitmq")};
            return fixture;
        }
        static rabbit_server own{true};
        return own;
    }
    static bool answers(int port) {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return false;
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(fd);
        return ok;
    }
    void run(const char* what) {
        const std::string cmd = std::string(management_ ? "" : "COURIER_RABBITMQ_MANAGEMENT=0 ") + "'" + rabbitmq_script() + "' " +
                                what + " '" + dir_ + "'";
        if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
    }

    std::string dir_;
    bool owned_ = false;
    bool management_ = true;
};

/// Names no other test (or earlier run against the same broker) uses.
std::string unique(const std::string& what) {
    static std::atomic<unsigned> n{0};
    return "t" + std::to_string(::getpid()) + "_" + std::to_string(++n) + "_" +
           std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000) + "_" + what;
}

cb::amqp_options options_for(int port) {
    cb::amqp_options o;
    o.port = static_cast<std::uint16_t>(port);
    o.name = "courier-test";
    return o;
}

// Drives `t` until `done()` or the deadline; collects everything it reports.
cb::wire_message make_amqp(std::string topic, std::string id, std::string payload = "") {
    cb::wire_message m;
    m.topic = std::move(topic);
    m.event_id = std::move(id);
    m.event_type = "test.item.sent.v1";
    m.payload = payload.empty() ? R"({"event_id":")" + m.event_id + R"("})" : std::move(payload);
    m.headers = {{"courier-event-id", m.event_id}, {"courier-event-type", m.event_type}, {"tenant", "acme"}};
    return m;
}

/// Calls `connect` until it succeeds or `limit` passes (the bridge's backoff loop, in small).
bool reconnect(cb::transport& t, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (auto wait = 20ms;; wait = std::min<std::chrono::milliseconds>(wait * 2, 500ms)) {
        if (t.connect(1s)) return true;
        if (std::chrono::steady_clock::now() + wait > deadline) return false;
        std::this_thread::sleep_for(wait);  // backoff between attempts, not a synchronization
    }
}

// ------------------------------------------------------------------ RabbitMQ's own client side

/// rabbitmq-c used directly, the way any other AMQP application would: declares, publishes,
/// and reads queues with basic.get, to see what courier put on the broker (and to put things
/// there courier did not write).
class raw_amqp {
public:
    struct message {
        std::string body, routing_key, exchange, message_id, type, content_type, app_id;
        int delivery_mode = 0;
        bool redelivered = false;
        std::map<std::string, std::string> headers;
        std::string death_reason;  ///< x-death[0].reason when the broker dead-lettered it
        std::string death_queue;   ///< x-death[0].queue
    };

    explicit raw_amqp(int port) : conn_(amqp_new_connection()) {
        amqp_socket_t* sock = amqp_tcp_socket_new(conn_);
        if (sock == nullptr || amqp_socket_open(sock, "127.0.0.1", port) != AMQP_STATUS_OK) throw std::runtime_error("raw: cannot open socket");
        check(amqp_login(conn_, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"), "login");
        amqp_channel_open(conn_, 1);
        check(amqp_get_rpc_reply(conn_), "channel.open");
    }
    ~raw_amqp() {
        amqp_channel_close(conn_, 1, AMQP_REPLY_SUCCESS);
        amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(conn_);
    }
    raw_amqp(const raw_amqp&) = delete;
    raw_amqp& operator=(const raw_amqp&) = delete;

    void declare_queue(const std::string& name, const amqp_table_t& args = amqp_empty_table, bool durable = false) {
        amqp_queue_declare(conn_, 1, amqp_cstring_bytes(name.c_str()), 0, durable ? 1 : 0, 0, 0, args);
        check(amqp_get_rpc_reply(conn_), "queue.declare " + name);
    }
    void bind(const std::string& queue, const std::string& exchange, const std::string& key) {
        amqp_queue_bind(conn_, 1, amqp_cstring_bytes(queue.c_str()), amqp_cstring_bytes(exchange.c_str()), amqp_cstring_bytes(key.c_str()),
                        amqp_empty_table);
        check(amqp_get_rpc_reply(conn_), "queue.bind " + queue);
    }
    void delete_queue(const std::string& name) {
        amqp_queue_delete(conn_, 1, amqp_cstring_bytes(name.c_str()), 0, 0);
        check(amqp_get_rpc_reply(conn_), "queue.delete " + name);
    }
    void publish(const std::string& exchange, const std::string& key, const std::string& body, const std::string& message_id,
                 const amqp_table_t& headers = amqp_empty_table) {
        amqp_basic_properties_t p{};
        p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
        p.content_type = amqp_cstring_bytes("application/json");
        p.message_id = amqp_cstring_bytes(message_id.c_str());
        if (headers.num_entries > 0) {
            p._flags |= AMQP_BASIC_HEADERS_FLAG;
            p.headers = headers;
        }
        amqp_bytes_t b;
        b.len = body.size();
        b.bytes = const_cast<char*>(body.data());
        if (amqp_basic_publish(conn_, 1, amqp_cstring_bytes(exchange.c_str()), amqp_cstring_bytes(key.c_str()), 0, 0, &p, b) != AMQP_STATUS_OK)
            throw std::runtime_error("raw: publish failed");
    }
    /// One message from `queue` (auto-ack), or nothing when it is empty.
    std::optional<message> get(const std::string& queue) {
        amqp_rpc_reply_t r = amqp_basic_get(conn_, 1, amqp_cstring_bytes(queue.c_str()), 1);
        check(r, "basic.get " + queue);
        if (r.reply.id != AMQP_BASIC_GET_OK_METHOD) return std::nullopt;
        auto* ok = static_cast<amqp_basic_get_ok_t*>(r.reply.decoded);
        message m;
        m.routing_key = text(ok->routing_key);
        m.exchange = text(ok->exchange);
        m.redelivered = ok->redelivered != 0;
        amqp_message_t msg;
        check(amqp_read_message(conn_, 1, &msg, 0), "read message");
        m.body = text(msg.body);
        const auto& p = msg.properties;
        if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) m.message_id = text(p.message_id);
        if (p._flags & AMQP_BASIC_TYPE_FLAG) m.type = text(p.type);
        if (p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) m.content_type = text(p.content_type);
        if (p._flags & AMQP_BASIC_APP_ID_FLAG) m.app_id = text(p.app_id);
        if (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) m.delivery_mode = p.delivery_mode;
        if (p._flags & AMQP_BASIC_HEADERS_FLAG) {
            for (int i = 0; i < p.headers.num_entries; ++i) {
                const auto& e = p.headers.entries[i];
                const std::string key = text(e.key);
                if (e.value.kind == AMQP_FIELD_KIND_UTF8 || e.value.kind == AMQP_FIELD_KIND_BYTES) {
                    m.headers[key] = text(e.value.value.bytes);
                } else if (key == "x-death" && e.value.kind == AMQP_FIELD_KIND_ARRAY && e.value.value.array.num_entries > 0 &&
                           e.value.value.array.entries[0].kind == AMQP_FIELD_KIND_TABLE) {
                    const amqp_table_t& death = e.value.value.array.entries[0].value.table;
                    for (int j = 0; j < death.num_entries; ++j) {
                        const std::string k = text(death.entries[j].key);
                        if (k == "reason") m.death_reason = text(death.entries[j].value.value.bytes);
                        if (k == "queue") m.death_queue = text(death.entries[j].value.value.bytes);
                    }
                }
            }
        }
        amqp_destroy_message(&msg);
        amqp_maybe_release_buffers(conn_);
        return m;
    }
    /// Waits until `queue` has a message.
    std::optional<message> wait_get(const std::string& queue, std::chrono::milliseconds limit = 10s) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            if (auto m = get(queue)) return m;
            if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
            std::this_thread::sleep_for(10ms);  // basic.get polls; nothing to wait on
        }
    }

private:
    static std::string text(amqp_bytes_t b) { return b.bytes == nullptr ? std::string() : std::string(static_cast<char*>(b.bytes), b.len); }
    static void check(const amqp_rpc_reply_t& r, const std::string& what) {
        if (r.reply_type != AMQP_RESPONSE_NORMAL) throw std::runtime_error("raw: " + what + " failed (reply type " + std::to_string(r.reply_type) + ")");
    }
    amqp_connection_state_t conn_;
};

/// Runs a command and returns its standard output.
std::string run_output(const std::string& cmd, int* status = nullptr) {
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) throw std::runtime_error("popen failed: " + cmd);
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int st = ::pclose(p);
    if (status != nullptr) *status = st;
    return out;
}

std::string rabbitmqadmin(int management_port, const std::string& args) {
    int status = 0;
    const std::string cmd = "rabbitmqadmin -H 127.0.0.1 -P " + std::to_string(management_port) + " -u guest -p guest " + args + " 2>&1";
    std::string out = run_output(cmd, &status);
    if (status != 0) throw std::runtime_error("failed (" + std::to_string(status) + "): " + cmd + "\n" + out);
    return out;
}

}  // namespace

// ================================================================== transport level

TEST_CASE("amqp transport publishes with publisher confirms, each sequence reported once and in order", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    cb::amqp_transport t(options_for(server.port()));
    REQUIRE(t.connect(5s));
    CHECK(t.connected());
    const auto topic = unique("confirms");
    raw_amqp raw(server.port());
    const auto queue = unique("confirms_q");
    raw.declare_queue(queue);
    raw.bind(queue, "courier", topic);

    constexpr std::uint64_t n = 200;
    for (std::uint64_t i = 1; i <= n; ++i) REQUIRE(t.publish(1000 + i, make_amqp(topic, "e" + std::to_string(i))));
    CHECK(t.stats().published == n);
    collector c;
    REQUIRE(c.drive(t, [&] { return c.confirms.size() >= n; }));
    REQUIRE(c.confirms.size() == n);
    CHECK(c.ok_confirms() == n);
    for (std::uint64_t i = 0; i < n; ++i) CHECK(c.confirms[i].sequence == 1001 + i);
    CHECK(t.unconfirmed() == 0);
    CHECK(t.stats().confirmed == n);
    CHECK(t.stats().nacked == 0);
    // What was confirmed is in the queue, in publish order.
    for (std::uint64_t i = 1; i <= n; ++i) {
        auto m = raw.get(queue);
        REQUIRE(m);
        CHECK(m->message_id == "e" + std::to_string(i));
    }
    CHECK_FALSE(raw.get(queue));
    raw.delete_queue(queue);
}

TEST_CASE("amqp topic bindings order.*.v1 and order.# select exactly what courier's patterns select", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    const std::string p = unique("bind");  // a first segment of this test's own
    const std::string one = p + ".order.*.v1", any = p + ".order.#";
    cb::amqp_transport pub(options_for(server.port())), star(options_for(server.port())), hash(options_for(server.port()));
    REQUIRE(pub.connect(5s));
    REQUIRE(star.connect(5s));
    REQUIRE(hash.connect(5s));
    // Fan-out (no group): each subscriber has its own exclusive queue.
    const cb::ingest_spec star_spec{.topic = one, .group = "", .consumer = "star"};
    const cb::ingest_spec hash_spec{.topic = any, .group = "", .consumer = "hash"};
    REQUIRE(star.subscribe(star_spec));
    REQUIRE(hash.subscribe(hash_spec));
    CHECK(star.subscribe(star_spec));  // idempotent
    CHECK_FALSE(star.queue_of(star_spec).empty());

    const std::vector<std::string> keys = {p + ".order.created.v1", p + ".order.created.v2", p + ".order",
                                           p + ".order.line.added.v1", p + ".payment.created.v1", p + ".order.shipped.v1"};
    std::uint64_t seq = 0;
    for (auto& k : keys) REQUIRE(pub.publish(++seq, make_amqp(k, "id-" + k)));
    collector pc;
    REQUIRE(pc.drive(pub, [&] { return pc.confirms.size() == keys.size(); }));
    CHECK(pc.ok_confirms() == keys.size());

    // The same selection courier's own matcher makes.
    auto expected = [&](const std::string& pattern) {
        std::set<std::string> want;
        auto tp = courier::topic_pattern::parse(pattern).value();
        for (auto& k : keys)
            if (tp.matches(k)) want.insert(k);
        return want;
    };
    const auto want_star = expected(one), want_hash = expected(any);
    CHECK(want_star == std::set<std::string>{p + ".order.created.v1", p + ".order.shipped.v1"});
    CHECK(want_hash.size() == 5);  // everything but payment, `order` itself included (# = zero segments too)

    collector sc, hc;
    REQUIRE(sc.drive(star, [&] { return sc.messages.size() >= want_star.size(); }));
    REQUIRE(hc.drive(hash, [&] { return hc.messages.size() >= want_hash.size(); }));
    // Nothing else arrives.
    sc.drive(star, [] { return false; }, 200ms);
    hc.drive(hash, [] { return false; }, 200ms);
    std::set<std::string> got_star, got_hash;
    for (auto& m : sc.messages) got_star.insert(m.message.topic);
    for (auto& m : hc.messages) got_hash.insert(m.message.topic);
    CHECK(sc.messages.size() == want_star.size());
    CHECK(hc.messages.size() == want_hash.size());
    CHECK(got_star == want_star);
    CHECK(got_hash == want_hash);
    for (auto& m : sc.messages) CHECK(star.ack(star_spec, m.tag));
    for (auto& m : hc.messages) CHECK(hash.ack(hash_spec, m.tag));
    CHECK(star.stats().acked == want_star.size());

    // A pattern AMQP would read differently from courier is refused before it reaches the broker.
    for (const char* bad : {"order.cre*.v1", "order..v1", "", "order.#x"}) {
        auto r = star.subscribe({.topic = bad, .group = "", .consumer = "x"});
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::invalid_pattern);
        CHECK(r.error().id() == "courier.bridge.amqp.pattern");
    }
    CHECK(star.connected());
}

TEST_CASE("amqp delivery keeps payload and envelope metadata as AMQP properties and headers", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    cb::amqp_transport pub(options_for(server.port())), sub(options_for(server.port()));
    REQUIRE(pub.connect(5s));
    REQUIRE(sub.connect(5s));
    const auto topic = unique("meta");
    const cb::ingest_spec spec{.topic = topic, .group = "readers", .consumer = "r1"};
    REQUIRE(sub.subscribe(spec));
    CHECK(sub.queue_of(spec) == "readers:" + topic);

    conformance::item value{42, "k-9", "n\xC3\xA9" "e \"quoted\""};
    auto env = courier::make_envelope(value, courier::system_clock::instance().now());
    env.headers["courier-key"] = "k-9";
    env.headers["tenant"] = "acme";
    env.metadata.correlation_id = "corr-1";
    const cb::wire_message w = cb::detail::to_wire(env, topic);
    REQUIRE(pub.publish(7, w));
    collector pc;
    REQUIRE(pc.drive(pub, [&] { return !pc.confirms.empty(); }));
    REQUIRE(pc.confirms.front().outcome);

    collector sc;
    REQUIRE(sc.drive(sub, [&] { return !sc.messages.empty(); }));
    const auto& in = sc.messages.front();
    CHECK(in.message.payload == w.payload);  // byte for byte
    CHECK(in.message.topic == topic);
    CHECK(in.message.event_id == env.event_id.to_string());
    CHECK(in.message.event_type == "conformance.item.sent.v1");
    CHECK(in.message.key == "k-9");
    CHECK(header(in.message, "courier-event-id") == env.event_id.to_string());
    CHECK(header(in.message, "courier-event-type") == "conformance.item.sent.v1");
    CHECK(header(in.message, "courier-key") == "k-9");
    CHECK(in.delivery_count == 1);
    CHECK(in.tag.number > 0);
    auto back = cb::detail::from_wire(in.message, {});
    REQUIRE(back);
    CHECK(back->event_id == env.event_id);
    CHECK(back->data == env.data);
    CHECK(back->headers == env.headers);
    CHECK(back->metadata == env.metadata);
    CHECK(sub.ack(spec, in.tag));
    // Settling twice would make RabbitMQ close the channel: refused locally instead.
    auto twice = sub.ack(spec, in.tag);
    REQUIRE_FALSE(twice);
    CHECK(twice.error().id() == "courier.bridge.amqp.unknown_delivery");
    CHECK(sub.connected());

    // The same message seen by a plain AMQP client: standard properties carry the metadata too.
    raw_amqp raw(server.port());
    const auto q = unique("meta_raw");
    raw.declare_queue(q);
    raw.bind(q, "courier", topic);
    REQUIRE(pub.publish(8, w));
    auto m = raw.wait_get(q);
    REQUIRE(m);
    CHECK(m->message_id == env.event_id.to_string());
    CHECK(m->type == "conformance.item.sent.v1");
    CHECK(m->content_type == "application/json");
    CHECK(m->app_id == "courier");
    CHECK(m->delivery_mode == 2);  // persistent
    CHECK(m->headers["courier-key"] == "k-9");
    CHECK(m->headers["courier-event-id"] == env.event_id.to_string());
    CHECK(nlohmann::json::parse(m->body).at("data").at("n") == 42);
    raw.delete_queue(q);
}

TEST_CASE("amqp delivery reads a hostile x-delivery-count saturated, never below the redelivered flag", "[bridge][amqp]") {
    // No broker: the mapping from a delivery's properties is a pure function (detail/wire_amqp.hpp).
    const std::string key = "x-delivery-count", body = "{}";
    auto count_of = [&](amqp_field_value_t value, std::uint32_t flagged) {
        amqp_table_entry_t entry{};
        entry.key = cb::detail::amqp_view(key);
        entry.value = value;
        amqp_basic_properties_t p{};
        p._flags = AMQP_BASIC_HEADERS_FLAG;
        p.headers.num_entries = 1;
        p.headers.entries = &entry;
        cb::inbound_message in;
        in.delivery_count = flagged;
        cb::detail::amqp_read_delivery(p, cb::detail::amqp_view(body), in);
        CHECK(in.message.headers.empty());  // the count is not a header of the message
        return in.delivery_count;
    };
    auto i64 = [](std::int64_t v) {
        amqp_field_value_t f{};
        f.kind = AMQP_FIELD_KIND_I64;
        f.value.i64 = v;
        return f;
    };
    amqp_field_value_t u32{}, u64{}, text{};
    u32.kind = AMQP_FIELD_KIND_U32;
    u32.value.u32 = 0xFFFFFFFFu;
    u64.kind = AMQP_FIELD_KIND_U64;
    u64.value.u64 = ~std::uint64_t{0};
    text.kind = AMQP_FIELD_KIND_UTF8;
    text.value.bytes = cb::detail::amqp_view("7");
    constexpr std::uint32_t most = 0xFFFFFFFFu;
    CHECK(count_of(i64(3), 1) == 4);
    CHECK(count_of(i64(0), 1) == 1);
    CHECK(count_of(i64(0), 2) == 2);  // a header cannot hide the redelivery the broker flagged
    CHECK(count_of(i64(-5), 2) == 2);  // negative: ignored
    CHECK(count_of(i64(std::numeric_limits<std::int64_t>::max()), 1) == most);  // was a signed overflow
    CHECK(count_of(i64(most - 1), 1) == most);
    CHECK(count_of(i64(std::int64_t{most}), 1) == most);  // wrapped to 0
    CHECK(count_of(i64(std::int64_t{most} + 4), 1) == most);  // wrapped to 4
    CHECK(count_of(u32, 1) == most);
    CHECK(count_of(u64, 1) == most);  // read as -1 (ignored) before
    CHECK(count_of(text, 2) == 2);  // not a number: ignored
}

TEST_CASE("amqp delivery with a forged x-delivery-count of INT64_MAX arrives with a saturated count", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    cb::amqp_transport sub(options_for(server.port()));
    REQUIRE(sub.connect(5s));
    const auto topic = unique("forged_count");
    const cb::ingest_spec spec{.topic = topic, .group = "readers", .consumer = "r1"};
    REQUIRE(sub.subscribe(spec));
    const auto env = courier::make_envelope(conformance::item{1, "", "forged"}, courier::system_clock::instance().now());
    cb::detail::amqp_table_builder headers;
    headers.integer("x-delivery-count", std::numeric_limits<std::int64_t>::max());
    headers.text("tenant", "acme");
    raw_amqp raw(server.port());
    raw.publish("courier", topic, courier::encode(env), env.event_id.to_string(), headers.get());
    collector c;
    REQUIRE(c.drive(sub, [&] { return !c.messages.empty(); }));
    const auto& in = c.messages.front();
    CHECK(in.delivery_count == 0xFFFFFFFFu);
    CHECK(header(in.message, "tenant") == "acme");
    CHECK(in.message.event_id == env.event_id.to_string());  // from message-id
    auto back = cb::detail::from_wire(in.message, {});
    REQUIRE(back);
    CHECK(back->event_id == env.event_id);
    CHECK(sub.ack(spec, in.tag));
}

TEST_CASE("amqp group queue: competing consumers, acked ones gone, unacked ones redelivered flagged after a consumer leaves", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    const auto topic = unique("group");
    const cb::ingest_spec spec{.topic = topic, .group = "workers", .consumer = "any"};
    cb::amqp_transport pub(options_for(server.port())), a(options_for(server.port())), b(options_for(server.port()));
    REQUIRE(pub.connect(5s));
    REQUIRE(a.connect(5s));
    REQUIRE(b.connect(5s));
    REQUIRE(a.subscribe(spec));
    REQUIRE(b.subscribe(spec));
    CHECK(a.queue_of(spec) == b.queue_of(spec));

    constexpr std::size_t n = 40;
    for (std::size_t i = 0; i < n; ++i) REQUIRE(pub.publish(i + 1, make_amqp(topic, "g" + std::to_string(i))));
    collector pc;
    REQUIRE(pc.drive(pub, [&] { return pc.confirms.size() == n; }));
    REQUIRE(pc.ok_confirms() == n);

    // Both consumers get a share (the broker round-robins a queue's consumers).
    collector ac, bc;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (ac.messages.size() + bc.messages.size() < n && std::chrono::steady_clock::now() < deadline) {
        ac.drive(a, [] { return false; }, 20ms);
        bc.drive(b, [] { return false; }, 20ms);
    }
    REQUIRE(ac.messages.size() + bc.messages.size() == n);
    CHECK(ac.messages.size() > 0);
    CHECK(bc.messages.size() > 0);

    // a acks half of its share and goes away: the other half comes back to b, flagged.
    std::set<std::string> acked_by_a, left_by_a;
    for (std::size_t i = 0; i < ac.messages.size(); ++i) {
        if (i % 2 == 0) {
            REQUIRE(a.ack(spec, ac.messages[i].tag));
            acked_by_a.insert(ac.messages[i].message.event_id);
        } else {
            left_by_a.insert(ac.messages[i].message.event_id);
        }
    }
    for (auto& m : bc.messages) REQUIRE(b.ack(spec, m.tag));
    a.close();
    CHECK_FALSE(a.connected());

    collector again;
    REQUIRE(again.drive(b, [&] { return again.messages.size() >= left_by_a.size(); }));
    again.drive(b, [] { return false; }, 200ms);  // and nothing else
    std::set<std::string> redelivered;
    for (auto& m : again.messages) {
        redelivered.insert(m.message.event_id);
        CHECK(m.delivery_count == 2);
        REQUIRE(b.ack(spec, m.tag));
    }
    CHECK(redelivered == left_by_a);
    CHECK(b.stats().redelivered == left_by_a.size());
    // Settling on a transport whose connection delivered it is gone is a no-op (counted).
    if (!ac.messages.empty()) {
        CHECK(a.ack(spec, ac.messages.front().tag));
        CHECK(a.stats().stale_settles == 1);
    }
}

TEST_CASE("amqp nack without requeue dead-letters through the dead-letter exchange, with requeue redelivers", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    auto o = options_for(server.port());
    o.dead_letter_exchange = unique("dlx");
    o.dead_letter_queue = unique("dlq");
    cb::amqp_transport t(o);
    REQUIRE(t.connect(5s));
    const auto topic = unique("reject");
    const cb::ingest_spec spec{.topic = topic, .group = "rejecters", .consumer = "r"};
    REQUIRE(t.subscribe(spec));
    REQUIRE(t.publish(1, make_amqp(topic, "poison", R"({"bad":true})")));
    REQUIRE(t.publish(2, make_amqp(topic, "flaky")));
    collector c;
    REQUIRE(c.drive(t, [&] { return c.confirms.size() == 2 && c.messages.size() == 2; }));
    for (auto& m : c.messages) {
        if (m.message.event_id == "poison") REQUIRE(t.nack(spec, m.tag, false));
        else REQUIRE(t.nack(spec, m.tag, true));
    }
    CHECK(t.stats().rejected == 1);
    CHECK(t.stats().requeued == 1);

    // The requeued one comes back, flagged; the rejected one does not.
    collector again;
    REQUIRE(again.drive(t, [&] { return !again.messages.empty(); }));
    again.drive(t, [] { return false; }, 200ms);
    REQUIRE(again.messages.size() == 1);
    CHECK(again.messages.front().message.event_id == "flaky");
    CHECK(again.messages.front().delivery_count == 2);
    REQUIRE(t.ack(spec, again.messages.front().tag));

    // The rejected one waits in the dead-letter queue with the broker's x-death record.
    raw_amqp raw(server.port());
    auto dead = raw.wait_get(o.dead_letter_queue);
    REQUIRE(dead);
    CHECK(dead->message_id == "poison");
    CHECK(dead->body == R"({"bad":true})");
    CHECK(dead->routing_key == topic);
    CHECK(dead->exchange == o.dead_letter_exchange);
    CHECK(dead->death_reason == "rejected");
    CHECK(dead->death_queue == "rejecters:" + topic);
    CHECK(dead->headers["tenant"] == "acme");
    CHECK_FALSE(raw.get(o.dead_letter_queue));
    raw.delete_queue(o.dead_letter_queue);
}

TEST_CASE("amqp message that no binding matches is kept in the unroutable queue, not dropped", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    auto o = options_for(server.port());
    o.exchange = unique("x");
    o.unroutable_queue = unique("unroutable");
    cb::amqp_transport t(o);
    REQUIRE(t.connect(5s));
    REQUIRE(t.publish(1, make_amqp("nobody.listens.v1", "lonely")));
    collector c;
    REQUIRE(c.drive(t, [&] { return !c.confirms.empty(); }));
    CHECK(c.confirms.front().outcome);  // the broker has it
    raw_amqp raw(server.port());
    auto m = raw.wait_get(o.unroutable_queue);
    REQUIRE(m);
    CHECK(m->message_id == "lonely");
    CHECK(m->routing_key == "nobody.listens.v1");
    raw.delete_queue(o.unroutable_queue);
}

TEST_CASE("amqp connect errors: refused port, bad credentials, unknown vhost, and calls while disconnected fail cleanly", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    SECTION("nothing listens on the port") {
        // A port bound (so nobody else takes it) but not listening: connections are refused.
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        const int free_port = ntohs(addr.sin_port);
        struct closer {
            int fd;
            ~closer() { ::close(fd); }
        } keep{fd};
        cb::amqp_transport t(options_for(free_port));
        auto r = t.connect(1s);
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::io_error);
        CHECK(r.error().id() == "courier.bridge.amqp.connect");
        CHECK(r.error().message.find(std::to_string(free_port)) != std::string::npos);
        CHECK_FALSE(t.connected());
    }
    SECTION("a wrong password") {
        auto o = options_for(server.port());
        o.password = "not-the-password";
        cb::amqp_transport t(o);
        auto r = t.connect(5s);
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::invalid_argument);
        CHECK(r.error().id() == "courier.bridge.amqp.access_refused");
        CHECK(r.error().message.find("guest") != std::string::npos);
        CHECK(r.error().message.find("not-the-password") == std::string::npos);
        CHECK_FALSE(t.connected());
    }
    SECTION("a vhost the broker does not have") {
        auto o = options_for(server.port());
        o.vhost = "no-such-vhost";
        cb::amqp_transport t(o);
        auto r = t.connect(5s);
        REQUIRE_FALSE(r);
        CHECK(r.error().id() == "courier.bridge.amqp.access_refused");
        CHECK(r.error().message.find("no-such-vhost") != std::string::npos);
    }
    SECTION("publish, poll and settle before connecting") {
        cb::amqp_transport t(options_for(server.port()));
        auto p = t.publish(1, make_amqp("a.b", "x"));
        REQUIRE_FALSE(p);
        CHECK(p.error() == courier::errc::closed);
        CHECK(p.error().id() == "courier.bridge.amqp.not_connected");
        auto q = t.poll(1ms, 1, [](cb::publish_confirm) {}, [](cb::inbound_message) {});
        REQUIRE_FALSE(q);
        CHECK(q.error() == courier::errc::closed);
        // A subscription made while disconnected is remembered and made by connect.
        const auto topic = unique("later");
        const cb::ingest_spec spec{.topic = topic, .group = "later", .consumer = "l"};
        REQUIRE(t.subscribe(spec));
        CHECK(t.queue_of(spec).empty());
        REQUIRE(t.connect(5s));
        CHECK(t.queue_of(spec) == "later:" + topic);
        REQUIRE(t.publish(1, make_amqp(topic, "after")));
        collector c;
        REQUIRE(c.drive(t, [&] { return !c.messages.empty(); }));
        CHECK(c.messages.front().message.event_id == "after");
        REQUIRE(t.ack(spec, c.messages.front().tag));
    }
}

TEST_CASE("amqp oversized payloads: refused against capabilities.max_message_bytes, multi-frame bodies below it arrive intact", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    auto o = options_for(server.port());
    o.max_message_bytes = 1024 * 1024;
    cb::amqp_transport t(o);
    CHECK(t.caps().max_message_bytes == 1024 * 1024);
    CHECK(t.caps().broker == "amqp");
    CHECK(t.caps().wildcards == cb::wildcard_dialect::courier);
    REQUIRE(t.connect(5s));
    const auto topic = unique("big");
    const cb::ingest_spec spec{.topic = topic, .group = "big", .consumer = "b"};
    REQUIRE(t.subscribe(spec));

    std::string too_big(o.max_message_bytes + 1, 'x');
    auto r = t.publish(1, make_amqp(topic, "too-big", too_big));
    REQUIRE_FALSE(r);
    CHECK(r.error() == courier::errc::limit_exceeded);
    CHECK(r.error().id() == "courier.bridge.amqp.too_large");
    CHECK(t.stats().published == 0);
    CHECK(t.connected());

    // Exactly the limit: split in frame_max-sized body frames and put together again.
    std::string fits(o.max_message_bytes, '\0');
    for (std::size_t i = 0; i < fits.size(); ++i) fits[i] = static_cast<char>(i * 7 % 251);
    REQUIRE(t.publish(2, make_amqp(topic, "fits", fits)));
    collector c;
    REQUIRE(c.drive(t, [&] { return c.confirms.size() == 1 && c.messages.size() == 1; }));
    CHECK(c.confirms.front().outcome);
    CHECK(c.messages.front().message.payload == fits);
    REQUIRE(t.ack(spec, c.messages.front().tag));

    // A limit above the broker's own (max_message_size = 16 MiB in the test server's config)
    // lets a message through that the broker refuses by closing the channel: the publish is then
    // reported failed, and a reconnect works. Declare the broker's real limit in the options.
    {
        auto lax = options_for(server.port());
        lax.max_message_bytes = 64u * 1024 * 1024;
        cb::amqp_transport l(lax);
        REQUIRE(l.connect(5s));
        REQUIRE(l.publish(9, make_amqp(topic, "huge", std::string(16u * 1024 * 1024 + 1, 'h'))));
        collector lc;
        REQUIRE_FALSE(lc.drive(l, [] { return false; }, 10s));
        REQUIRE(lc.errors.size() == 1);
        CHECK(lc.errors.front().id() == "courier.bridge.amqp.connection_lost");
        CHECK(lc.errors.front().message.find("406") != std::string::npos);
        CHECK_FALSE(l.connected());
        // The lost confirm is reported (failed) by the next poll.
        auto next = l.poll(1ms, 1, [&](cb::publish_confirm pc) { lc.confirms.push_back(std::move(pc)); }, [](cb::inbound_message) {});
        CHECK_FALSE(next);
        REQUIRE(lc.confirms.size() == 1);
        CHECK(lc.confirms.front().sequence == 9);
        CHECK(lc.confirms.front().outcome.error().id() == "courier.bridge.amqp.connection_lost");
        CHECK(l.stats().lost_confirms == 1);
        REQUIRE(l.connect(5s));
        CHECK(l.stats().connects == 2);
    }
}

TEST_CASE("amqp subscribe to a queue that exists with other arguments fails clearly and keeps the connection", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    const auto topic = unique("clash");
    raw_amqp raw(server.port());
    // Another application declared the group's queue without a dead-letter exchange, and durable.
    raw.declare_queue("clash:" + topic, amqp_empty_table, true);
    cb::amqp_transport t(options_for(server.port()));
    REQUIRE(t.connect(5s));
    auto r = t.subscribe({.topic = topic, .group = "clash", .consumer = "c"});
    REQUIRE_FALSE(r);
    CHECK(r.error() == courier::errc::invalid_argument);
    CHECK(r.error().id() == "courier.bridge.amqp.refused");
    CHECK(r.error().message.find("406") != std::string::npos);
    // Only the declaring channel was closed (and is open again): publishing still works.
    REQUIRE(t.connected());
    const auto other = unique("after_clash");
    const cb::ingest_spec ok_spec{.topic = other, .group = "fine", .consumer = "c"};
    REQUIRE(t.subscribe(ok_spec));
    REQUIRE(t.publish(1, make_amqp(other, "still-works")));
    collector c;
    REQUIRE(c.drive(t, [&] { return c.confirms.size() == 1 && c.messages.size() == 1; }));
    CHECK(c.confirms.front().outcome);
    REQUIRE(t.ack(ok_spec, c.messages.front().tag));
    raw.delete_queue("clash:" + topic);
}

TEST_CASE("amqp URLs configure the transport and make_transport picks it by scheme", "[bridge][amqp]") {
    auto o = cb::amqp_options::from_url(cb::parse_broker_url("amqp://guest:guest@127.0.0.1:5672/").value());
    REQUIRE(o);
    CHECK(o->host == "127.0.0.1");
    CHECK(o->port == 5672);
    CHECK(o->user == "guest");
    CHECK(o->password == "guest");
    CHECK(o->vhost == "/");
    CHECK(o->exchange == "courier");

    auto custom = cb::amqp_options::from_url(
        cb::parse_broker_url("amqp://app:s%40cret@rabbit.local/prod?exchange=events&prefetch=64&heartbeat=0&persistent=false&"
                             "max_message_bytes=1048576&queue_prefix=svc.&dead_letter_exchange=dlx&unroutable_queue=")
            .value());
    REQUIRE(custom);
    CHECK(custom->port == 5672);
    CHECK(custom->password == "s@cret");
    CHECK(custom->vhost == "prod");
    CHECK(custom->exchange == "events");
    CHECK(custom->prefetch == 64);
    CHECK(custom->heartbeat == std::chrono::seconds(0));
    CHECK_FALSE(custom->persistent);
    CHECK(custom->max_message_bytes == 1048576);
    CHECK(custom->queue_prefix == "svc.");
    CHECK(custom->dead_letter_exchange == "dlx");
    CHECK(custom->unroutable_queue.empty());
    CHECK(cb::amqp_options::from_url(cb::parse_broker_url("amqp://h/%2f").value())->vhost == "/");

    auto unknown = cb::amqp_options::from_url(cb::parse_broker_url("amqp://h/?exchnage=x").value());
    REQUIRE_FALSE(unknown);
    CHECK(unknown.error().id() == "courier.bridge.amqp.url");
    auto two_hosts = cb::amqp_options::from_url(cb::parse_broker_url("amqp://a:1,b:2/").value());
    REQUIRE_FALSE(two_hosts);
    CHECK(two_hosts.error().id() == "courier.bridge.amqp.url");
    auto bad_prefetch = cb::amqp_options::from_url(cb::parse_broker_url("amqp://h/?prefetch=70000").value());
    REQUIRE_FALSE(bad_prefetch);
    CHECK(bad_prefetch.error().id() == "courier.bridge.url.bad_param");
    auto empty_exchange = cb::amqp_options::from_url(cb::parse_broker_url("amqp://h/?exchange=").value());
    REQUIRE_FALSE(empty_exchange);
    auto not_amqp = cb::amqp_options::from_url(cb::parse_broker_url("nats://h:4222").value());
    REQUIRE_FALSE(not_amqp);

    CHECK(cb::has_transport(cb::broker_scheme::amqp));
    auto t = cb::make_transport("amqp://guest:guest@127.0.0.1:" + std::to_string(rabbit_server::shared().port()) + "/");
    REQUIRE(t);
    CHECK((*t)->caps().broker == "amqp");
    CHECK((*t)->caps().consumer_groups);
    CHECK((*t)->caps().redelivery);
    CHECK_FALSE((*t)->caps().native_dedup);
    REQUIRE((*t)->connect(5s));
    CHECK((*t)->connected());
}

TEST_CASE("amqp transport reconnects after a broker restart: durable queue and persistent messages survive, lost confirms reported", "[bridge][amqp]") {
    rabbit_server server(false);  // a private broker: stopping it must not disturb other tests
    const int port = server.port();
    const auto topic = unique("restart");
    const cb::ingest_spec spec{.topic = topic, .group = "survivors", .consumer = "s"};
    cb::amqp_transport t(options_for(port));
    REQUIRE(t.connect(5s));
    REQUIRE(t.subscribe(spec));
    // Five confirmed before the restart, not consumed yet.
    cb::amqp_transport pub(options_for(port));
    REQUIRE(pub.connect(5s));
    for (std::uint64_t i = 1; i <= 5; ++i) REQUIRE(pub.publish(i, make_amqp(topic, "before-" + std::to_string(i))));
    collector pc;
    REQUIRE(pc.drive(pub, [&] { return pc.confirms.size() == 5; }));
    REQUIRE(pc.ok_confirms() == 5);

    server.stop();
    collector lost;
    REQUIRE(lost.drive(t, [&] { return !lost.errors.empty(); }, 20s));
    CHECK(lost.errors.front().id() == "courier.bridge.amqp.connection_lost");
    CHECK_FALSE(t.connected());
    auto refused = t.connect(1s);
    CHECK_FALSE(refused);

    server.start();
    REQUIRE(reconnect(t, 60s));
    CHECK(t.stats().connects == 2);
    CHECK(t.queue_of(spec) == "survivors:" + topic);  // subscribed again by connect
    // The publisher notices on its next call and reconnects too.
    collector pc2;
    pc2.drive(pub, [&] { return !pc2.errors.empty(); }, 2s);
    if (!pub.connected()) REQUIRE(reconnect(pub, 30s));
    for (std::uint64_t i = 6; i <= 10; ++i) REQUIRE(pub.publish(i, make_amqp(topic, "after-" + std::to_string(i))));
    REQUIRE(pc2.drive(pub, [&] { return pc2.ok_confirms() == 5; }));

    collector c;
    REQUIRE(c.drive(t, [&] { return c.messages.size() >= 10; }, 20s));
    std::vector<std::string> ids;
    for (auto& m : c.messages) {
        ids.push_back(m.message.event_id);
        REQUIRE(t.ack(spec, m.tag));
    }
    CHECK(ids == std::vector<std::string>{"before-1", "before-2", "before-3", "before-4", "before-5",
                                          "after-6",  "after-7",  "after-8",  "after-9",  "after-10"});
}

// ================================================================== interop with RabbitMQ's tools

TEST_CASE("amqp interop: rabbitmqadmin reads what a courier bridge forwarded", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    const int mport = server.management_port();
    if (mport <= 0) {
        WARN("skipped: the test broker runs without the management plugin (COURIER_RABBITMQ_MANAGEMENT=0)");
        return;
    }
    const auto topic = unique("to_admin");
    const auto queue = unique("admin_q");
    courier::runtime rt(courier::runtime_options{.threads = 2, .producer = "service-a"});
    auto bridge = cb::broker_bridge::connect(rt.bus(), "amqp://guest:guest@127.0.0.1:" + std::to_string(server.port()) + "/",
                                             conformance::fast_options("to-admin"));
    REQUIRE(bridge);
    REQUIRE((*bridge)->forward("conformance.#", {.topic = topic}));
    REQUIRE((*bridge)->wait_until_ready(10s));  // connected: the `courier` exchange exists now
    // Somebody else's queue, declared and bound with RabbitMQ's own tool.
    rabbitmqadmin(mport, "declare queue name=" + queue + " durable=false");
    rabbitmqadmin(mport, "declare binding source=courier destination=" + queue + " routing_key=" + topic);
    auto sent = conformance::make_item(5, "k-5", courier::system_clock::instance().now());
    REQUIRE(rt.bus().publish(sent));
    REQUIRE((*bridge)->flush(10s));

    nlohmann::json got;
    REQUIRE(conformance::wait_until([&] {
        got = nlohmann::json::parse(rabbitmqadmin(mport, "-f raw_json get queue=" + queue + " ackmode=ack_requeue_false count=1"));
        return got.is_array() && !got.empty();
    }, 10s));
    const auto& m = got.at(0);
    CHECK(m.at("routing_key") == topic);
    CHECK(m.at("exchange") == "courier");
    CHECK(m.at("payload_encoding") == "string");
    CHECK(m.at("properties").at("message_id") == sent.event_id.to_string());
    CHECK(m.at("properties").at("type") == "conformance.item.sent.v1");
    CHECK(m.at("properties").at("content_type") == "application/json");
    CHECK(m.at("properties").at("headers").at("courier-key") == "k-5");
    // The payload is courier's JSON envelope, readable as it is.
    const auto envelope = nlohmann::json::parse(m.at("payload").get<std::string>());
    CHECK(envelope.at("event_id") == sent.event_id.to_string());
    CHECK(envelope.at("data").at("n") == 5);
    rabbitmqadmin(mport, "delete queue name=" + queue);
}

TEST_CASE("amqp interop: envelopes published by rabbitmqadmin and by a raw rabbitmq-c client reach a typed subscriber", "[bridge][amqp]") {
    auto& server = rabbit_server::shared();
    const auto topic = unique("from_outside");
    courier::runtime rt(courier::runtime_options{.threads = 2, .producer = "service-b"});
    auto bridge = cb::broker_bridge::connect(rt.bus(), "amqp://guest:guest@127.0.0.1:" + std::to_string(server.port()) + "/",
                                             conformance::fast_options("from-outside"));
    REQUIRE(bridge);
    std::mutex mu;
    std::vector<conformance::item> typed;
    std::vector<std::string> ids;
    auto sub = rt.bus().subscribe<conformance::item>([&](const conformance::item& v, const courier::message_context& ctx) {
        std::lock_guard lock(mu);
        typed.push_back(v);
        ids.push_back(ctx.to_envelope().event_id.to_string());
    });
    REQUIRE((*bridge)->ingest({.topic = topic, .group = "outside", .consumer = "o1"}));
    REQUIRE((*bridge)->wait_until_ready(10s));

    const auto now = courier::system_clock::instance().now();
    const auto by_raw = courier::make_envelope(conformance::item{1, "", "from rabbitmq-c"}, now);
    raw_amqp raw(server.port());
    raw.publish("courier", topic, courier::encode(by_raw), by_raw.event_id.to_string());
    std::size_t expected = 1;

    const int mport = server.management_port();
    courier::envelope by_admin;
    if (mport > 0) {
        by_admin = courier::make_envelope(conformance::item{2, "", "from rabbitmqadmin"}, now);
        const std::string payload = courier::encode(by_admin);
        REQUIRE(payload.find('\'') == std::string::npos);  // safe inside single quotes
        rabbitmqadmin(mport, "publish exchange=courier routing_key=" + topic + " payload='" + payload + "'");
        ++expected;
    } else {
        WARN("rabbitmqadmin part skipped: the test broker runs without the management plugin");
    }

    REQUIRE(conformance::wait_until([&] {
        std::lock_guard lock(mu);
        return typed.size() >= expected;
    }, 10s));
    REQUIRE(conformance::wait_until([&] { return (*bridge)->stats().acked == expected; }, 10s));
    std::lock_guard lock(mu);
    REQUIRE(typed.size() == expected);
    std::set<std::string> notes, got_ids;
    for (auto& v : typed) notes.insert(v.note);
    for (auto& id : ids) got_ids.insert(id);
    CHECK(notes.count("from rabbitmq-c") == 1);
    CHECK(got_ids.count(by_raw.event_id.to_string()) == 1);
    if (mport > 0) {
        CHECK(notes.count("from rabbitmqadmin") == 1);
        CHECK(got_ids.count(by_admin.event_id.to_string()) == 1);
    }
    CHECK((*bridge)->stats().ingested == expected);
    CHECK((*bridge)->stats().dead_lettered == 0);
}

// ================================================================== the shared conformance suite

namespace {

conformance::broker_env amqp_env(bool needs_restart) {
    conformance::broker_env env;
    int port = 0;
    if (needs_restart) {
        // A broker of its own: the restart must not disturb tests running in parallel.
        auto own = std::make_shared<rabbit_server>(false);
        port = own->port();
        env.stop_broker = [own] { own->stop(); };
        env.start_broker = [own] { own->start(); };
        env.keep_alive = own;
    } else {
        port = rabbit_server::shared().port();
    }
    env.make_transport = [port] { return std::make_unique<cb::amqp_transport>(options_for(port)); };
    // RabbitMQ requeues a consumer's unacked deliveries the moment its channel closes.
    env.redelivery_after = 300ms;
    env.topic_prefix = "amqp";
    return env;
}

}  // namespace

COURIER_BRIDGE_CONFORMANCE("amqp", "[amqp]", amqp_env)
