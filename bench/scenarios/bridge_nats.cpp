// Bridge scenarios over NATS (needs courier::bridge_nats and a nats-server: scripts/bench starts
// one with scripts/services/nats.sh and exports COURIER_BENCH_NATS_STATE).
//   bridge.nats            one thread publishes typed events on bus A; bridge A forwards them
//                          (outbox, core-NATS publish, confirm = flush round trip); bridge B's
//                          subscription receives them and publishes them on bus B, where an inline
//                          subscriber checks each (count + checksum). msgs/s from the first publish
//                          to the last delivery; latency = publish on A -> handler on B, every
//                          message. Baseline "cnats": the same transfer with raw cnats, one thread
//                          publishing messages of the envelope's size with the same headers
//                          (SendAsap, a flush every 256 as the bridge's confirm), one async
//                          subscription handing them to one consumer thread.
//   bridge.nats_roundtrip  closed loop: A publishes a ping, B's handler answers with a pong, A's
//                          handler sees it; latency = A -> nats -> B -> nats -> A. Baseline
//                          "cnats": a requester and a responder thread doing the same with raw
//                          publish/subscribe.
#include "../harness/bridge_scenario.hpp"
#include "../harness/queue_harness.hpp"

#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/nats.hpp>
#include <courier/runtime/runtime.hpp>

#include <nats/nats.h>

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

// Its own namespace: courier-bench compiles every scenario in one unity TU.
namespace courier_bench::bridge_nats {
namespace {

namespace br = courier::bridge;

struct nats_msg {
    static constexpr courier::event_name event_type{"bench.natsbridge.sent.v1"};
    std::uint64_t seq = 0;
    std::uint64_t sent_ns = 0;
    COURIER_JSON_FIELDS(nats_msg, seq, sent_ns)
};
struct nats_pong {
    static constexpr courier::event_name event_type{"bench.natsbridge.pong.v1"};
    std::uint64_t seq = 0;
    COURIER_JSON_FIELDS(nats_pong, seq)
};

std::string nats_url() {
    if (const char* u = std::getenv("COURIER_BENCH_NATS_URL"); u && *u) return u;
    if (const char* s = std::getenv("COURIER_BENCH_NATS_STATE"); s && *s) {
        std::ifstream in(std::string(s) + "/port");
        unsigned port = 0;
        if (in >> port && port) return "nats://127.0.0.1:" + std::to_string(port);
    }
    throw std::runtime_error("no nats-server: run through scripts/bench (it starts one), or set COURIER_BENCH_NATS_URL");
}

std::string fresh_subject(const char* what) { return fresh_broker_name("benchnats.", what); }

struct raw_conn {
    natsConnection* nc = nullptr;
    explicit raw_conn(const std::string& url) {
        natsOptions* o = nullptr;
        natsOptions_Create(&o);
        natsOptions_SetURL(o, url.c_str());
        natsOptions_SetSendAsap(o, true);  // as the transport: no 0.6 ms batching delay
        const natsStatus s = natsConnection_Connect(&nc, o);
        natsOptions_Destroy(o);
        if (s != NATS_OK) throw std::runtime_error("cannot connect to " + url + ": " + natsStatus_GetText(s));
    }
    ~raw_conn() {
        natsConnection_Close(nc);
        natsConnection_Destroy(nc);
    }
    raw_conn(const raw_conn&) = delete;
    raw_conn& operator=(const raw_conn&) = delete;
};

// Deliveries from cnats' thread to one consumer thread, as the transport hands them to poll().
struct handoff {
    std::mutex m;
    std::condition_variable cv;
    std::deque<std::pair<std::uint64_t, std::uint64_t>> q;  // seq, sent_ns
    static void on_msg(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
        auto* self = static_cast<handoff*>(closure);
        std::uint64_t v[2] = {0, 0};
        if (natsMsg_GetDataLength(msg) >= 16) std::memcpy(v, natsMsg_GetData(msg), 16);
        natsMsg_Destroy(msg);
        {
            std::lock_guard lock(self->m);
            self->q.emplace_back(v[0], v[1]);
        }
        self->cv.notify_one();
    }
};

// A raw message of the envelope's size: seq and sent_ns in the first 16 bytes, and the headers
// the transport sends.
natsMsg* raw_message(const std::string& subject, std::string& buf, std::uint64_t seq, std::uint64_t sent) {
    std::memcpy(buf.data(), &seq, 8);
    std::memcpy(buf.data() + 8, &sent, 8);
    natsMsg* m = nullptr;
    natsMsg_Create(&m, subject.c_str(), nullptr, buf.data(), static_cast<int>(buf.size()));
    const std::string id = std::to_string(seq);
    natsMsgHeader_Set(m, "courier-event-id", id.c_str());
    natsMsgHeader_Set(m, "courier-event-type", "bench.natsbridge.sent.v1");
    natsMsgHeader_Set(m, "Nats-Msg-Id", id.c_str());
    return m;
}

// ----------------------------------------------------------------------------- bridge.nats

run_result courier_transfer(const run_params& p) {
    const auto url = nats_url();
    const auto subject = fresh_subject("transfer");
    return courier_transfer_through<nats_msg>(
        p,
        {.broker = "nats", .pattern = "bench.natsbridge.#", .forward_to = {.topic = subject}, .ingest = {.topic = subject},
         .flush_a = true},
        [&] { return std::make_unique<br::nats_transport>(br::nats_options{.url = url}); });
}

run_result cnats_transfer(const run_params& p) {
    const auto url = nats_url();
    const auto subject = fresh_subject("raw");
    std::string buf = envelope_payload_of<nats_msg>();
    const std::uint64_t n = p.messages;
    run_result r;
    raw_conn sub_conn(url), pub_conn(url);
    handoff h;
    natsSubscription* sub = nullptr;
    if (natsConnection_Subscribe(&sub, sub_conn.nc, subject.c_str(), &handoff::on_msg, &h) != NATS_OK)
        throw std::runtime_error("raw subscribe failed");
    natsSubscription_SetPendingLimits(sub, -1, -1);
    natsConnection_Flush(sub_conn.nc);
    std::atomic<std::uint64_t> last_ns{0};
    std::uint64_t received = 0, checksum = 0;
    std::thread consumer([&] {
        std::deque<std::pair<std::uint64_t, std::uint64_t>> batch;
        const std::uint64_t deadline = now_ns() + 60'000'000'000ull;
        while (received < n && now_ns() < deadline) {
            {
                std::unique_lock lock(h.m);
                h.cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return !h.q.empty(); });
                batch.swap(h.q);
            }
            for (auto& [seq, sent] : batch) {
                const std::uint64_t now = now_ns();
                r.latency.record(now - sent);
                checksum += seq;
                ++received;
                last_ns.store(now, std::memory_order_relaxed);
            }
            batch.clear();
        }
    });
    const std::uint64_t start = now_ns();
    for (std::uint64_t i = 0; i < n; ++i) {
        natsMsg* m = raw_message(subject, buf, i, now_ns());
        natsConnection_PublishMsg(pub_conn.nc, m);
        natsMsg_Destroy(m);
        if ((i & 255) == 255) natsConnection_FlushTimeout(pub_conn.nc, 5000);  // the bridge's confirm
    }
    natsConnection_FlushTimeout(pub_conn.nc, 5000);
    consumer.join();
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    r.messages = received;
    r.elapsed = std::chrono::nanoseconds(last_ns.load() - start);
    r.payload = buf.size();
    if (received != n) r.error = "sent " + std::to_string(n) + ", received " + std::to_string(received);
    else if (checksum != n * (n - 1) / 2) r.error = "checksum mismatch";
    return r;
}

// ----------------------------------------------------------------------------- bridge.nats_roundtrip

run_result courier_roundtrip(const run_params& p) {
    const auto url = nats_url();
    const auto pings = fresh_subject("ping"), pongs = fresh_subject("pong");
    run_result r;
    answer_latch answered;
    std::uint64_t seq = 0;
    {
        courier::runtime rt_a(courier::runtime_options{.threads = 1}), rt_b(courier::runtime_options{.threads = 1});
        br::broker_bridge a(rt_a.bus(), std::make_unique<br::nats_transport>(br::nats_options{.url = url}), bench_bridge_options("a"));
        br::broker_bridge b(rt_b.bus(), std::make_unique<br::nats_transport>(br::nats_options{.url = url}), bench_bridge_options("b"));
        if (!a.forward("bench.natsbridge.sent.v1", {.topic = pings}) || !a.ingest({.topic = pongs}) ||
            !b.forward("bench.natsbridge.pong.v1", {.topic = pongs}) || !b.ingest({.topic = pings}))
            throw std::runtime_error("route refused");
        courier::subscription_options inl;
        inl.mode = courier::delivery_mode::inline_call;
        auto responder = rt_b.bus().subscribe<nats_msg>([&](const nats_msg& m) { rt_b.bus().publish(nats_pong{m.seq}); }, inl);
        auto waiter = rt_a.bus().subscribe<nats_pong>(
            [&](const nats_pong& m) { answered.post(m.seq); }, inl);
        if (!a.wait_until_ready(std::chrono::seconds(10)) || !b.wait_until_ready(std::chrono::seconds(10)))
            throw std::runtime_error("nats bridge not ready");
        const std::uint64_t start = now_ns();
        for (; seq < p.messages; ++seq) {
            const std::uint64_t t0 = now_ns();
            rt_a.bus().publish(nats_msg{seq, t0});
            if (!answered.wait(seq, std::chrono::seconds(10))) {
                r.error = "no pong for ping " + std::to_string(seq);
                break;
            }
            r.latency.record(now_ns() - t0);
        }
        r.elapsed = std::chrono::nanoseconds(now_ns() - start);
        r.messages = seq;
    }
    return r;
}

run_result cnats_roundtrip(const run_params& p) {
    const auto url = nats_url();
    const auto pings = fresh_subject("rawping"), pongs = fresh_subject("rawpong");
    std::string buf = envelope_payload_of<nats_msg>();
    raw_conn a(url), b(url);
    handoff at_a, at_b;
    natsSubscription *sa = nullptr, *sb = nullptr;
    natsConnection_Subscribe(&sa, a.nc, pongs.c_str(), &handoff::on_msg, &at_a);
    natsConnection_Subscribe(&sb, b.nc, pings.c_str(), &handoff::on_msg, &at_b);
    natsConnection_Flush(a.nc);
    natsConnection_Flush(b.nc);
    const std::uint64_t n = p.messages;
    std::atomic<bool> stop{false};
    std::thread responder([&] {
        std::string out = buf;
        while (!stop.load()) {
            std::pair<std::uint64_t, std::uint64_t> v;
            {
                std::unique_lock lock(at_b.m);
                if (!at_b.cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return !at_b.q.empty(); })) continue;
                v = at_b.q.front();
                at_b.q.pop_front();
            }
            natsMsg* m = raw_message(pongs, out, v.first, v.second);
            natsConnection_PublishMsg(b.nc, m);
            natsMsg_Destroy(m);
        }
    });
    run_result r;
    const std::uint64_t start = now_ns();
    std::uint64_t seq = 0;
    for (; seq < n; ++seq) {
        const std::uint64_t t0 = now_ns();
        natsMsg* m = raw_message(pings, buf, seq, t0);
        natsConnection_PublishMsg(a.nc, m);
        natsMsg_Destroy(m);
        std::unique_lock lock(at_a.m);
        if (!at_a.cv.wait_for(lock, std::chrono::seconds(10), [&] { return !at_a.q.empty(); })) {
            r.error = "no pong for ping " + std::to_string(seq);
            break;
        }
        const auto back = at_a.q.front().first;
        at_a.q.pop_front();
        if (back != seq) {
            r.error = "pong " + std::to_string(back) + " for ping " + std::to_string(seq);
            break;
        }
        r.latency.record(now_ns() - t0);
    }
    r.elapsed = std::chrono::nanoseconds(now_ns() - start);
    r.messages = seq;
    stop = true;
    responder.join();
    natsSubscription_Destroy(sa);
    natsSubscription_Destroy(sb);
    return r;
}

const registration transfer{{
    .name = "bridge.nats",
    .description = "publish on bus A -> nats subject -> delivery on bus B (core NATS, confirm = flush); "
                   "latency = publish -> handler, under load",
    .impls = {{"courier", courier_transfer}, {"cnats", cnats_transfer}},
    .messages = 200'000,
    .smoke_messages = 300,
    .uses_threads = false,
}};

const registration roundtrip{{
    .name = "bridge.nats_roundtrip",
    .description = "closed loop A -> nats -> B -> nats -> A; msgs/s = round trips/s, latency = the hop both ways",
    .impls = {{"courier", courier_roundtrip}, {"cnats", cnats_roundtrip}},
    .messages = 5'000,
    .smoke_messages = 50,
    .uses_threads = false,
}};

}  // namespace
}  // namespace courier_bench::bridge_nats
