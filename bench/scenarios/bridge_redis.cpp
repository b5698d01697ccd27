// Bridge scenarios over Redis Streams (needs courier::bridge_redis and a redis-server: scripts/bench
// starts one with scripts/services/redis.sh and exports COURIER_BENCH_REDIS_STATE).
//   bridge.redis            one thread publishes typed events on bus A; bridge A forwards them
//                           (outbox, XADD MAXLEN ~ pipelined, confirms); bridge B reads them with
//                           XREADGROUP, publishes them on bus B, where an inline subscriber checks
//                           each (count + checksum) and acks after it (XACK). msgs/s from the first
//                           publish to the last delivery; latency = publish on A -> handler on B,
//                           every message. Baseline "hiredis": the same transfer with raw hiredis,
//                           one producer thread pipelining XADD in batches of 256 (the same fields,
//                           a payload the size of courier's envelope), one consumer thread doing
//                           XREADGROUP COUNT 512 BLOCK + one XACK per batch.
//   bridge.redis_roundtrip  closed loop: A publishes a ping, B's handler answers with a pong over
//                           a second stream, A's handler sees it; one round trip = A -> redis ->
//                           B -> redis -> A, so the latency covers the hop both ways. Baseline
//                           "hiredis": two threads doing XADD / XREADGROUP BLOCK the same way.
#include "../harness/bridge_scenario.hpp"
#include "../harness/queue_harness.hpp"

#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/redis.hpp>
#include <courier/runtime/runtime.hpp>

#include <hiredis/hiredis.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

// Its own namespace: courier-bench compiles every scenario in one unity TU.
namespace courier_bench::bridge_redis {
namespace {

namespace br = courier::bridge;

struct bridge_msg {
    static constexpr courier::event_name event_type{"bench.bridge.sent.v1"};
    std::uint64_t seq = 0;
    std::uint64_t sent_ns = 0;
    COURIER_JSON_FIELDS(bridge_msg, seq, sent_ns)
};
struct bridge_pong {
    static constexpr courier::event_name event_type{"bench.bridge.pong.v1"};
    std::uint64_t seq = 0;
    COURIER_JSON_FIELDS(bridge_pong, seq)
};

std::uint16_t redis_port() {
    if (const char* p = std::getenv("COURIER_BENCH_REDIS_PORT"); p && *p) return static_cast<std::uint16_t>(std::atoi(p));
    if (const char* s = std::getenv("COURIER_BENCH_REDIS_STATE"); s && *s) {
        std::ifstream in(std::string(s) + "/port");
        unsigned port = 0;
        if (in >> port && port) return static_cast<std::uint16_t>(port);
    }
    throw std::runtime_error("no redis-server: run through scripts/bench (it starts one), or set COURIER_BENCH_REDIS_PORT");
}

std::string fresh_stream(const char* what) { return fresh_broker_name("courier_bench_", what, "_"); }

struct redis_ctx {
    redisContext* c = nullptr;
    explicit redis_ctx(std::uint16_t port) {
        c = redisConnectWithTimeout("127.0.0.1", port, timeval{2, 0});
        if (!c || c->err) {
            const std::string why = c ? c->errstr : "out of memory";
            if (c) redisFree(c);
            throw std::runtime_error("cannot connect to redis on 127.0.0.1:" + std::to_string(port) + ": " + why);
        }
    }
    ~redis_ctx() { redisFree(c); }
    redis_ctx(const redis_ctx&) = delete;
    redis_ctx& operator=(const redis_ctx&) = delete;

    void append(std::initializer_list<std::string_view> args) {
        const char* argv[32];
        std::size_t lens[32];
        int n = 0;
        for (auto a : args) {
            argv[n] = a.data();
            lens[n++] = a.size();
        }
        redisAppendCommandArgv(c, n, argv, lens);
    }
    redisReply* get() {
        void* r = nullptr;
        if (redisGetReply(c, &r) != REDIS_OK || !r) throw std::runtime_error(std::string("redis: ") + c->errstr);
        return static_cast<redisReply*>(r);
    }
    void command(std::initializer_list<std::string_view> args) {
        append(args);
        freeReplyObject(get());
    }
};

void drop_streams(std::uint16_t port, std::initializer_list<std::string_view> streams) {
    redis_ctx c(port);
    for (auto s : streams) c.command({"DEL", s});
}

br::redis_options bench_options(std::uint16_t port) {
    br::redis_options o;
    o.port = port;
    o.block = std::chrono::milliseconds(100);
    o.claim_idle = std::chrono::seconds(60);  // nothing is lost in a bench run: no reclaim traffic
    return o;
}
// ----------------------------------------------------------------------------- bridge.redis

run_result courier_transfer(const run_params& p) {
    const auto port = redis_port();
    const auto stream = fresh_stream("transfer");
    const auto r = courier_transfer_through<bridge_msg>(
        p,
        {.broker = "redis", .pattern = "bench.bridge.#", .forward_to = {.topic = stream},
         .ingest = {.topic = stream, .group = "bench", .consumer = "b"}},
        [&] { return std::make_unique<br::redis_transport>(bench_options(port)); });
    drop_streams(port, {stream});
    return r;
}

run_result hiredis_transfer(const run_params& p) {
    const auto port = redis_port();
    const auto stream = fresh_stream("raw");
    const std::string payload = envelope_payload_of<bridge_msg>();
    {
        redis_ctx setup(port);
        setup.command({"XGROUP", "CREATE", stream, "bench", "$", "MKSTREAM"});
    }
    const std::uint64_t n = p.messages;
    run_result r;
    std::atomic<bool> ready{false};
    std::atomic<std::uint64_t> last_ns{0};
    std::uint64_t received = 0, checksum = 0;
    std::string consumer_error;
    std::thread consumer([&] {
        try {
            redis_ctx c(port);
            ready = true;
            std::string ack_ids;
            std::vector<std::string> ids;
            const std::uint64_t deadline = now_ns() + 60'000'000'000ull;
            while (received < n && now_ns() < deadline) {
                c.append({"XREADGROUP", "GROUP", "bench", "c", "COUNT", "512", "BLOCK", "100", "STREAMS", stream, ">"});
                redisReply* rep = c.get();
                ids.clear();
                if (rep->type == REDIS_REPLY_ARRAY) {
                    for (std::size_t s = 0; s < rep->elements; ++s) {
                        const redisReply* entries = rep->element[s]->element[1];
                        for (std::size_t e = 0; e < entries->elements; ++e) {
                            const redisReply* entry = entries->element[e];
                            ids.emplace_back(entry->element[0]->str, entry->element[0]->len);
                            const redisReply* f = entry->element[1];
                            // fields: event_type, event_id ("seq:sent_ns"), key, envelope
                            const std::string id(f->element[3]->str, f->element[3]->len);
                            const auto colon = id.find(':');
                            const std::uint64_t seq = std::stoull(id.substr(0, colon));
                            const std::uint64_t sent = std::stoull(id.substr(colon + 1));
                            const std::uint64_t now = now_ns();
                            r.latency.record(now - sent);
                            checksum += seq;
                            ++received;
                            last_ns.store(now, std::memory_order_relaxed);
                        }
                    }
                }
                freeReplyObject(rep);
                if (!ids.empty()) {
                    std::vector<const char*> argv{"XACK", stream.c_str(), "bench"};
                    std::vector<std::size_t> lens{4, stream.size(), 5};
                    for (auto& id : ids) {
                        argv.push_back(id.c_str());
                        lens.push_back(id.size());
                    }
                    redisAppendCommandArgv(c.c, static_cast<int>(argv.size()), argv.data(), lens.data());
                    freeReplyObject(c.get());
                }
            }
        } catch (const std::exception& e) {
            consumer_error = e.what();
        }
    });
    while (!ready.load()) std::this_thread::yield();
    const std::uint64_t start = now_ns();
    {
        redis_ctx c(port);
        constexpr std::uint64_t batch = 256;
        std::string id;
        for (std::uint64_t i = 0; i < n;) {
            const std::uint64_t end = std::min(n, i + batch);
            for (std::uint64_t k = i; k < end; ++k) {
                id = std::to_string(k) + ":" + std::to_string(now_ns());
                c.append({"XADD", stream, "MAXLEN", "~", "1000000", "*", "event_type", "bench.bridge.sent.v1", "event_id", id, "key", "",
                          "envelope", payload});
            }
            for (std::uint64_t k = i; k < end; ++k) freeReplyObject(c.get());
            i = end;
        }
    }
    consumer.join();
    r.messages = received;
    r.elapsed = std::chrono::nanoseconds(last_ns.load() - start);
    r.payload = payload.size();
    if (!consumer_error.empty()) r.error = consumer_error;
    else if (received != n) r.error = "sent " + std::to_string(n) + ", received " + std::to_string(received);
    else if (checksum != n * (n - 1) / 2) r.error = "checksum mismatch";
    drop_streams(port, {stream});
    return r;
}

// ----------------------------------------------------------------------------- bridge.redis_roundtrip

run_result courier_roundtrip(const run_params& p) {
    const auto port = redis_port();
    const auto pings = fresh_stream("ping"), pongs = fresh_stream("pong");
    run_result r;
    answer_latch answered;
    std::uint64_t seq = 0;
    {
        courier::runtime rt_a(courier::runtime_options{.threads = 1}), rt_b(courier::runtime_options{.threads = 1});
        auto opts = bench_options(port);
        br::broker_bridge a(rt_a.bus(), std::make_unique<br::redis_transport>(opts), bench_bridge_options("a"));
        br::broker_bridge b(rt_b.bus(), std::make_unique<br::redis_transport>(opts), bench_bridge_options("b"));
        if (!a.forward("bench.bridge.sent.v1", {.topic = pings}) || !a.ingest({.topic = pongs, .group = "a", .consumer = "a"}) ||
            !b.forward("bench.bridge.pong.v1", {.topic = pongs}) || !b.ingest({.topic = pings, .group = "b", .consumer = "b"}))
            throw std::runtime_error("route refused");
        courier::subscription_options inl;
        inl.mode = courier::delivery_mode::inline_call;
        auto responder = rt_b.bus().subscribe<bridge_msg>([&](const bridge_msg& m) { rt_b.bus().publish(bridge_pong{m.seq}); }, inl);
        auto waiter = rt_a.bus().subscribe<bridge_pong>(
            [&](const bridge_pong& m) { answered.post(m.seq); }, inl);
        if (!a.wait_until_ready(std::chrono::seconds(10)) || !b.wait_until_ready(std::chrono::seconds(10)))
            throw std::runtime_error("redis bridge not ready");
        const std::uint64_t start = now_ns();
        for (; seq < p.messages; ++seq) {
            const std::uint64_t t0 = now_ns();
            rt_a.bus().publish(bridge_msg{seq, t0});
            if (!answered.wait(seq, std::chrono::seconds(10))) {
                r.error = "no pong for ping " + std::to_string(seq);
                break;
            }
            r.latency.record(now_ns() - t0);
        }
        r.elapsed = std::chrono::nanoseconds(now_ns() - start);
        r.messages = seq;
    }
    drop_streams(port, {pings, pongs});
    return r;
}

run_result hiredis_roundtrip(const run_params& p) {
    const auto port = redis_port();
    const auto pings = fresh_stream("rawping"), pongs = fresh_stream("rawpong");
    const std::string payload = envelope_payload_of<bridge_msg>();
    {
        redis_ctx setup(port);
        setup.command({"XGROUP", "CREATE", pings, "b", "$", "MKSTREAM"});
        setup.command({"XGROUP", "CREATE", pongs, "a", "$", "MKSTREAM"});
    }
    // Reads one entry (blocking), acks it, returns its event_id field.
    auto read_one = [](redis_ctx& rd, redis_ctx& wr, const std::string& stream, const char* group) -> std::string {
        for (;;) {
            rd.append({"XREADGROUP", "GROUP", group, "c", "COUNT", "1", "BLOCK", "1000", "STREAMS", stream, ">"});
            redisReply* rep = rd.get();
            if (rep->type != REDIS_REPLY_ARRAY) {
                freeReplyObject(rep);
                continue;
            }
            const redisReply* entry = rep->element[0]->element[1]->element[0];
            std::string id(entry->element[0]->str, entry->element[0]->len);
            std::string value(entry->element[1]->element[3]->str, entry->element[1]->element[3]->len);
            freeReplyObject(rep);
            wr.append({"XACK", stream, group, id});  // pipelined: its reply is read with the next command's
            return value;
        }
    };
    const std::uint64_t n = p.messages;
    std::atomic<bool> ready{false};
    std::string server_error;
    std::thread server([&] {
        try {
            redis_ctx rd(port), wr(port);
            ready = true;
            for (std::uint64_t i = 0; i < n; ++i) {
                const std::string v = read_one(rd, wr, pings, "b");
                wr.append({"XADD", pongs, "MAXLEN", "~", "1000000", "*", "event_type", "bench.bridge.pong.v1", "event_id", v, "key", "",
                           "envelope", payload});
                freeReplyObject(wr.get());  // XACK
                freeReplyObject(wr.get());  // XADD
            }
        } catch (const std::exception& e) {
            server_error = e.what();
        }
    });
    while (!ready.load()) std::this_thread::yield();
    run_result r;
    {
        redis_ctx rd(port), wr(port);
        const std::uint64_t start = now_ns();
        std::uint64_t seq = 0;
        bool ack_pending = false;
        for (; seq < n; ++seq) {
            const std::uint64_t t0 = now_ns();
            const std::string v = std::to_string(seq);
            wr.append({"XADD", pings, "MAXLEN", "~", "1000000", "*", "event_type", "bench.bridge.sent.v1", "event_id", v, "key", "",
                       "envelope", payload});
            if (ack_pending) freeReplyObject(wr.get());
            freeReplyObject(wr.get());
            const std::string back = read_one(rd, wr, pongs, "a");
            ack_pending = true;
            if (back != v) {
                r.error = "pong " + back + " for ping " + v;
                break;
            }
            r.latency.record(now_ns() - t0);
        }
        if (ack_pending) freeReplyObject(wr.get());
        r.elapsed = std::chrono::nanoseconds(now_ns() - start);
        r.messages = seq;
    }
    server.join();
    if (!server_error.empty()) r.error = server_error;
    drop_streams(port, {pings, pongs});
    return r;
}

const registration transfer{{
    .name = "bridge.redis",
    .description = "publish on bus A -> redis stream -> delivery on bus B (XADD pipelined, XREADGROUP, XACK); "
                   "latency = publish -> handler, under load",
    .impls = {{"courier", courier_transfer}, {"hiredis", hiredis_transfer}},
    .messages = 200'000,
    .smoke_messages = 300,
    .uses_threads = false,
}};

const registration roundtrip{{
    .name = "bridge.redis_roundtrip",
    .description = "closed loop A -> redis -> B -> redis -> A; msgs/s = round trips/s, latency = the hop both ways",
    .impls = {{"courier", courier_roundtrip}, {"hiredis", hiredis_roundtrip}},
    .messages = 5'000,
    .smoke_messages = 50,
    .uses_threads = false,
}};

}  // namespace
}  // namespace courier_bench::bridge_redis
