// Bridge scenarios over RabbitMQ (needs courier::bridge_amqp and a rabbitmq-server: scripts/bench
// starts one with scripts/services/rabbitmq.sh and exports COURIER_BENCH_RABBITMQ_STATE).
//   bridge.amqp            one thread publishes typed events on bus A; bridge A forwards them
//                          (outbox, persistent publishes on the topic exchange, publisher confirms);
//                          bridge B consumes them from its group's durable queue, publishes them on
//                          bus B, where an inline subscriber checks each (count + checksum), and
//                          acks after it. msgs/s from the first publish to the last delivery;
//                          latency = publish on A -> handler on B, every message. Baseline
//                          "rabbitmq_c": the same transfer with raw rabbitmq-c: one producer thread
//                          publishing persistent messages of the same size with confirms in flight
//                          (the same window as the bridge's max_in_flight), one consumer thread
//                          (basic.consume, the same prefetch) acking each message.
//   bridge.amqp_roundtrip  closed loop: A publishes a ping, B's handler answers with a pong, A's
//                          handler sees it; latency = the hop both ways. Baseline "rabbitmq_c":
//                          two threads doing publish / consume the same way.
#include "../harness/bridge_scenario.hpp"
#include "../harness/queue_harness.hpp"

#include <courier/bridge/amqp.hpp>
#include <courier/bridge/broker_bridge.hpp>
#include <courier/runtime/runtime.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

// Its own namespace: courier-bench compiles every scenario in one unity TU.
namespace courier_bench::bridge_amqp {
namespace {

namespace br = courier::bridge;

struct amqp_msg {
    static constexpr courier::event_name event_type{"bench.amqp.sent.v1"};
    std::uint64_t seq = 0;
    std::uint64_t sent_ns = 0;
    COURIER_JSON_FIELDS(amqp_msg, seq, sent_ns)
};
struct amqp_pong {
    static constexpr courier::event_name event_type{"bench.amqp.pong.v1"};
    std::uint64_t seq = 0;
    COURIER_JSON_FIELDS(amqp_pong, seq)
};

constexpr std::size_t window = 8192;     // confirms in flight: the bridge's max_in_flight
constexpr std::uint16_t prefetch = 512;  // unacked deliveries: the transport's prefetch

int amqp_port() {
    if (const char* p = std::getenv("COURIER_BENCH_RABBITMQ_PORT"); p && *p) return std::atoi(p);
    if (const char* s = std::getenv("COURIER_BENCH_RABBITMQ_STATE"); s && *s) {
        std::ifstream in(std::string(s) + "/port");
        int port = 0;
        if (in >> port && port > 0) return port;
    }
    throw std::runtime_error("no rabbitmq-server: run through scripts/bench (it starts one), or set COURIER_BENCH_RABBITMQ_PORT");
}

std::string fresh_name(const char* what) { return fresh_broker_name("courier_bench_", what, "_"); }

std::string text(amqp_bytes_t b) { return b.bytes ? std::string(static_cast<const char*>(b.bytes), b.len) : std::string(); }
amqp_bytes_t bytes(const std::string& s) {
    amqp_bytes_t b;
    b.len = s.size();
    b.bytes = const_cast<char*>(s.data());
    return b;
}

/// A raw rabbitmq-c connection with channel 1 open.
struct raw_conn {
    amqp_connection_state_t c = nullptr;
    explicit raw_conn(int port) : c(amqp_new_connection()) {
        amqp_socket_t* s = amqp_tcp_socket_new(c);
        if (!s || amqp_socket_open(s, "127.0.0.1", port) != AMQP_STATUS_OK) fail("cannot connect to rabbitmq on port " + std::to_string(port));
        check(amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"), "login");
        amqp_channel_open(c, 1);
        check(amqp_get_rpc_reply(c), "channel.open");
    }
    ~raw_conn() {
        amqp_connection_close(c, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(c);
    }
    raw_conn(const raw_conn&) = delete;
    raw_conn& operator=(const raw_conn&) = delete;

    [[noreturn]] void fail(const std::string& what) { throw std::runtime_error("rabbitmq-c: " + what); }
    void check(const amqp_rpc_reply_t& r, const char* what) {
        if (r.reply_type != AMQP_RESPONSE_NORMAL) fail(std::string(what) + " failed");
    }
    void declare_bound_queue(const std::string& queue, const std::string& key) {
        // Passive: the exchange is the transport's (declared with its alternate exchange by
        // ensure_topology), the very one the bridge publishes to.
        amqp_exchange_declare(c, 1, amqp_cstring_bytes("courier"), amqp_cstring_bytes("topic"), 1, 0, 0, 0, amqp_empty_table);
        check(amqp_get_rpc_reply(c), "exchange.declare (passive)");
        amqp_queue_declare(c, 1, bytes(queue), 0, 1, 0, 0, amqp_empty_table);
        check(amqp_get_rpc_reply(c), "queue.declare");
        amqp_queue_bind(c, 1, bytes(queue), amqp_cstring_bytes("courier"), bytes(key), amqp_empty_table);
        check(amqp_get_rpc_reply(c), "queue.bind");
    }
    void delete_queue(const std::string& queue) {
        amqp_queue_delete(c, 1, bytes(queue), 0, 0);
        check(amqp_get_rpc_reply(c), "queue.delete");
    }
};

br::amqp_options bench_options(int port) {
    br::amqp_options o;
    o.port = static_cast<std::uint16_t>(port);
    o.prefetch = prefetch;
    o.name = "courier-bench";
    return o;
}
br::bridge_options bench_bridge(const char* name) { return bench_bridge_options(name, window); }

// Makes sure the topology the transport declares exists (exchange with its alternate exchange),
// so the raw baseline's exchange.declare agrees with it.
void ensure_topology(int port) {
    br::amqp_transport t(bench_options(port));
    if (auto r = t.connect(std::chrono::seconds(5)); !r) throw std::runtime_error(r.error().message);
}

void drop_queues(int port, std::initializer_list<std::string> queues) {
    raw_conn c(port);
    for (auto& q : queues) c.delete_queue(q);
}

// ----------------------------------------------------------------------------- bridge.amqp

run_result courier_transfer(const run_params& p) {
    const int port = amqp_port();
    const auto topic = fresh_name("transfer");
    const auto r = courier_transfer_through<amqp_msg>(
        p,
        {.broker = "amqp", .pattern = "bench.amqp.#", .forward_to = {.topic = topic},
         .ingest = {.topic = topic, .group = "bench", .consumer = "b"},
         .options = bench_bridge(""),
         .deadline = std::chrono::seconds(120)},
        [&] { return std::make_unique<br::amqp_transport>(bench_options(port)); });
    drop_queues(port, {"bench:" + topic});
    return r;
}

// Publishes `body` persistent on `key` with confirms in flight; returns when all are confirmed.
void raw_publish_confirmed(raw_conn& c, const std::string& key, std::uint64_t n,
                           const std::function<std::string(std::uint64_t)>& body_of) {
    amqp_confirm_select(c.c, 1);
    c.check(amqp_get_rpc_reply(c.c), "confirm.select");
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2;
    std::uint64_t sent = 0, confirmed = 0;
    auto read_confirms = [&](bool block) {
        timeval zero{0, 0}, wait{1, 0};
        amqp_frame_t f;
        for (;;) {
            const int rc = amqp_simple_wait_frame_noblock(c.c, &f, block ? &wait : &zero);
            if (rc == AMQP_STATUS_TIMEOUT) return;
            if (rc != AMQP_STATUS_OK) c.fail("reading confirms");
            if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
                auto* ack = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
                confirmed = ack->multiple ? ack->delivery_tag : confirmed + 1;
            } else if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
                c.fail("publish nacked");
            }
            amqp_maybe_release_buffers(c.c);
            block = false;
        }
    };
    while (sent < n) {
        while (sent < n && sent - confirmed < window) {
            const std::string body = body_of(sent);
            if (amqp_basic_publish(c.c, 1, amqp_cstring_bytes("courier"), bytes(key), 0, 0, &props, bytes(body)) != AMQP_STATUS_OK)
                c.fail("publish");
            ++sent;
            if (sent % 64 == 0) read_confirms(false);
        }
        read_confirms(sent - confirmed >= window);
    }
    while (confirmed < n) read_confirms(true);
}

// Consumes `queue`, acking each delivery; calls `on` with each body.
void raw_consume(raw_conn& c, const std::string& queue, std::uint64_t n, const std::function<void(const std::string&)>& on) {
    amqp_basic_qos(c.c, 1, 0, prefetch, 0);
    c.check(amqp_get_rpc_reply(c.c), "basic.qos");
    amqp_basic_consume(c.c, 1, bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    c.check(amqp_get_rpc_reply(c.c), "basic.consume");
    const std::uint64_t deadline = now_ns() + 120'000'000'000ull;
    for (std::uint64_t got = 0; got < n && now_ns() < deadline;) {
        amqp_envelope_t env;
        timeval tv{1, 0};
        amqp_maybe_release_buffers(c.c);
        const amqp_rpc_reply_t res = amqp_consume_message(c.c, &env, &tv, 0);
        if (res.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && res.library_error == AMQP_STATUS_TIMEOUT) continue;
        if (res.reply_type != AMQP_RESPONSE_NORMAL) c.fail("consume");
        on(text(env.message.body));
        if (amqp_basic_ack(c.c, 1, env.delivery_tag, 0) != AMQP_STATUS_OK) c.fail("ack");
        amqp_destroy_envelope(&env);
        ++got;
    }
}

// The raw messages carry "seq:sent_ns" at the front of an envelope-sized body.
std::string raw_body(std::uint64_t seq, const std::string& filler) {
    std::string b = std::to_string(seq) + ":" + std::to_string(now_ns()) + "|";
    b.append(filler, 0, filler.size() > b.size() ? filler.size() - b.size() : 0);
    return b;
}
void parse_raw(const std::string& body, std::uint64_t& seq, std::uint64_t& sent) {
    const auto colon = body.find(':');
    const auto bar = body.find('|');
    seq = std::stoull(body.substr(0, colon));
    sent = std::stoull(body.substr(colon + 1, bar - colon - 1));
}

run_result raw_transfer(const run_params& p) {
    const int port = amqp_port();
    ensure_topology(port);
    const auto key = fresh_name("raw");
    const auto queue = key + "_q";
    const std::string filler = envelope_payload_of<amqp_msg>();
    {
        raw_conn setup(port);
        setup.declare_bound_queue(queue, key);
    }
    const std::uint64_t n = p.messages;
    run_result r;
    std::atomic<bool> ready{false};
    std::atomic<std::uint64_t> last_ns{0};
    std::uint64_t received = 0, checksum = 0;
    std::string consumer_error;
    std::thread consumer([&] {
        try {
            raw_conn c(port);
            ready = true;
            raw_consume(c, queue, n, [&](const std::string& body) {
                std::uint64_t seq = 0, sent = 0;
                parse_raw(body, seq, sent);
                const std::uint64_t now = now_ns();
                r.latency.record(now - sent);
                checksum += seq;
                ++received;
                last_ns.store(now, std::memory_order_relaxed);
            });
        } catch (const std::exception& e) {
            consumer_error = e.what();
        }
    });
    while (!ready.load()) std::this_thread::yield();
    const std::uint64_t start = now_ns();
    std::string producer_error;
    try {
        raw_conn c(port);
        raw_publish_confirmed(c, key, n, [&](std::uint64_t i) { return raw_body(i, filler); });
    } catch (const std::exception& e) {
        producer_error = e.what();
    }
    consumer.join();
    r.messages = received;
    r.elapsed = std::chrono::nanoseconds(last_ns.load() - start);
    r.payload = filler.size();
    if (!producer_error.empty()) r.error = producer_error;
    else if (!consumer_error.empty()) r.error = consumer_error;
    else if (received != n) r.error = "sent " + std::to_string(n) + ", received " + std::to_string(received);
    else if (checksum != n * (n - 1) / 2) r.error = "checksum mismatch";
    drop_queues(port, {queue});
    return r;
}

// ----------------------------------------------------------------------------- bridge.amqp_roundtrip

run_result courier_roundtrip(const run_params& p) {
    const int port = amqp_port();
    const auto pings = fresh_name("ping"), pongs = fresh_name("pong");
    run_result r;
    std::atomic<std::uint64_t> answered{0};
    std::uint64_t seq = 0;
    {
        courier::runtime rt_a(courier::runtime_options{.threads = 1}), rt_b(courier::runtime_options{.threads = 1});
        br::broker_bridge a(rt_a.bus(), std::make_unique<br::amqp_transport>(bench_options(port)), bench_bridge("a"));
        br::broker_bridge b(rt_b.bus(), std::make_unique<br::amqp_transport>(bench_options(port)), bench_bridge("b"));
        if (!a.forward("bench.amqp.sent.v1", {.topic = pings}) || !a.ingest({.topic = pongs, .group = "a", .consumer = "a"}) ||
            !b.forward("bench.amqp.pong.v1", {.topic = pongs}) || !b.ingest({.topic = pings, .group = "b", .consumer = "b"}))
            throw std::runtime_error("route refused");
        courier::subscription_options inl;
        inl.mode = courier::delivery_mode::inline_call;
        auto responder = rt_b.bus().subscribe<amqp_msg>([&](const amqp_msg& m) { rt_b.bus().publish(amqp_pong{m.seq}); }, inl);
        auto waiter = rt_a.bus().subscribe<amqp_pong>(
            [&](const amqp_pong& m) { answered.store(m.seq + 1, std::memory_order_release); }, inl);
        if (!a.wait_until_ready(std::chrono::seconds(10)) || !b.wait_until_ready(std::chrono::seconds(10)))
            throw std::runtime_error("amqp bridge not ready");
        const std::uint64_t start = now_ns();
        for (; seq < p.messages; ++seq) {
            const std::uint64_t t0 = now_ns();
            rt_a.bus().publish(amqp_msg{seq, t0});
            const std::uint64_t deadline = t0 + 10'000'000'000ull;
            while (answered.load(std::memory_order_acquire) != seq + 1 && now_ns() < deadline) cpu_pause();
            if (answered.load() != seq + 1) {
                r.error = "no pong for ping " + std::to_string(seq);
                break;
            }
            r.latency.record(now_ns() - t0);
        }
        r.elapsed = std::chrono::nanoseconds(now_ns() - start);
        r.messages = seq;
    }
    drop_queues(port, {"a:" + pongs, "b:" + pings});
    return r;
}

run_result raw_roundtrip(const run_params& p) {
    const int port = amqp_port();
    ensure_topology(port);
    const auto pings = fresh_name("rawping"), pongs = fresh_name("rawpong");
    const std::string filler = envelope_payload_of<amqp_msg>();
    {
        raw_conn setup(port);
        setup.declare_bound_queue(pings + "_q", pings);
        setup.declare_bound_queue(pongs + "_q", pongs);
    }
    const std::uint64_t n = p.messages;
    std::atomic<bool> ready{false};
    std::string server_error;
    // One connection per side and direction, as the bridges have: publishing with confirms on one
    // channel, consuming on another connection.
    std::thread server([&] {
        try {
            raw_conn in(port), out(port);
            amqp_confirm_select(out.c, 1);
            out.check(amqp_get_rpc_reply(out.c), "confirm.select");
            ready = true;
            std::uint64_t pub_tag = 0;
            raw_consume(in, pings + "_q", n, [&](const std::string& body) {
                amqp_basic_properties_t props{};
                props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
                props.delivery_mode = 2;
                std::string reply = body;
                if (amqp_basic_publish(out.c, 1, amqp_cstring_bytes("courier"), bytes(pongs), 0, 0, &props, bytes(reply)) != AMQP_STATUS_OK)
                    out.fail("publish pong");
                ++pub_tag;
                // Wait for the confirm, as the bridge's outbox does before it forgets a message.
                for (;;) {
                    amqp_frame_t f;
                    timeval tv{5, 0};
                    if (amqp_simple_wait_frame_noblock(out.c, &f, &tv) != AMQP_STATUS_OK) out.fail("pong confirm");
                    if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD &&
                        static_cast<amqp_basic_ack_t*>(f.payload.method.decoded)->delivery_tag >= pub_tag)
                        break;
                }
                amqp_maybe_release_buffers(out.c);
            });
        } catch (const std::exception& e) {
            server_error = e.what();
        }
    });
    while (!ready.load()) std::this_thread::yield();
    run_result r;
    {
        raw_conn in(port), out(port);
        amqp_confirm_select(out.c, 1);
        out.check(amqp_get_rpc_reply(out.c), "confirm.select");
        amqp_basic_qos(in.c, 1, 0, prefetch, 0);
        amqp_basic_consume(in.c, 1, bytes(pongs + "_q"), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
        in.check(amqp_get_rpc_reply(in.c), "basic.consume");
        const std::uint64_t start = now_ns();
        std::uint64_t seq = 0;
        amqp_basic_properties_t props{};
        props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
        props.delivery_mode = 2;
        for (; seq < n; ++seq) {
            const std::uint64_t t0 = now_ns();
            const std::string body = raw_body(seq, filler);
            if (amqp_basic_publish(out.c, 1, amqp_cstring_bytes("courier"), bytes(pings), 0, 0, &props, bytes(body)) != AMQP_STATUS_OK) {
                r.error = "publish ping";
                break;
            }
            amqp_envelope_t env;
            timeval tv{10, 0};
            amqp_maybe_release_buffers(in.c);
            const amqp_rpc_reply_t res = amqp_consume_message(in.c, &env, &tv, 0);
            if (res.reply_type != AMQP_RESPONSE_NORMAL) {
                r.error = "no pong for ping " + std::to_string(seq);
                break;
            }
            std::uint64_t back = 0, sent = 0;
            parse_raw(text(env.message.body), back, sent);
            amqp_basic_ack(in.c, 1, env.delivery_tag, 0);
            amqp_destroy_envelope(&env);
            if (back != seq) {
                r.error = "pong " + std::to_string(back) + " for ping " + std::to_string(seq);
                break;
            }
            r.latency.record(now_ns() - t0);
            // The ping's confirm arrived meanwhile on `out`: read it so frames do not pile up.
            amqp_frame_t f;
            timeval zero{0, 0};
            while (amqp_simple_wait_frame_noblock(out.c, &f, &zero) == AMQP_STATUS_OK) amqp_maybe_release_buffers(out.c);
        }
        r.elapsed = std::chrono::nanoseconds(now_ns() - start);
        r.messages = seq;
    }
    server.join();
    if (!server_error.empty() && r.error.empty()) r.error = server_error;
    drop_queues(port, {pings + "_q", pongs + "_q"});
    return r;
}

const registration transfer{{
    .name = "bridge.amqp",
    .description = "publish on bus A -> rabbitmq topic exchange -> delivery on bus B (persistent, publisher confirms, "
                   "manual acks); latency = publish -> handler, under load",
    .impls = {{"courier", courier_transfer}, {"rabbitmq_c", raw_transfer}},
    .messages = 100'000,
    .smoke_messages = 300,
    .uses_threads = false,
}};

const registration roundtrip{{
    .name = "bridge.amqp_roundtrip",
    .description = "closed loop A -> rabbitmq -> B -> rabbitmq -> A; msgs/s = round trips/s, latency = the hop both ways",
    .impls = {{"courier", courier_roundtrip}, {"rabbitmq_c", raw_roundtrip}},
    .messages = 3'000,
    .smoke_messages = 50,
    .uses_threads = false,
}};

}  // namespace
}  // namespace courier_bench::bridge_amqp
