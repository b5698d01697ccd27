// The bridge's own cost, without a broker: the bridge.* transfer over an in-process "pipe"
// transport that only moves the payload bytes between two threads (a moodycamel queue, buffers
// recycled), so what remains is courier's part of a hop - typed publish, envelope encode, outbox,
// in-flight window and confirms on one side; decode, dedup, bus delivery to a typed subscriber
// and acks on the other. A broker's noise (the Kafka mock, a server process) swamps differences
// of a few hundred nanoseconds; this one shows them.
//   bridge.inproc  as bridge.kafka/redis/nats (harness/bridge_scenario.hpp), over the pipe.
//                  Baseline "moodycamel": the same bytes (an envelope-sized payload carrying
//                  seq and send time) through the same pipe, one producer thread, one consumer
//                  thread that checks each: the floor any transfer over this pipe stands on.
#include "../harness/bridge_scenario.hpp"
#include "../harness/queue_harness.hpp"

#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/transport.hpp>

#include <courier/detail/moodycamel.hpp>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

// Its own namespace: courier-bench compiles every scenario in one unity TU.
namespace courier_bench::inproc_bridge {
namespace {

namespace br = courier::bridge;

struct pipe_msg {
    static constexpr courier::event_name event_type{"bench.inproc.sent.v1"};
    std::uint64_t seq = 0;
    std::uint64_t sent_ns = 0;
    COURIER_JSON_FIELDS(pipe_msg, seq, sent_ns)
};

/// Payload buffers one way, emptied buffers back (so neither side allocates per message).
struct pipe {
    moodycamel::ConcurrentQueue<std::string> full, empty;

    void send(std::string_view bytes) {
        std::string b;
        (void)empty.try_dequeue(b);
        b.assign(bytes);
        full.enqueue(std::move(b));
    }
    /// Swaps the next payload into `into` (its old buffer goes back); false when none waits.
    bool receive(std::string& into) {
        std::string b;
        if (!full.try_dequeue(b)) return false;
        std::swap(b, into);
        if (b.capacity() != 0) empty.enqueue(std::move(b));
        return true;
    }
};

/// A transport over a `pipe`: publish is confirmed at the next poll; every delivery is one
/// topic's next number. What a broker adds (network, storage, redelivery) is left out on purpose.
class pipe_transport final : public br::transport {
public:
    explicit pipe_transport(pipe& p) : pipe_(p) {
        caps_.broker = "pipe";
        caps_.per_key_order = true;
        caps_.consumer_groups = true;
    }
    const br::capabilities& caps() const noexcept override { return caps_; }
    courier::result<void> connect(courier::duration) override {
        connected_ = true;
        return {};
    }
    bool connected() const noexcept override { return connected_; }
    void close() noexcept override { connected_ = false; }
    courier::result<void> publish(std::uint64_t sequence, const br::wire_message& m) override {
        pipe_.send(m.payload);
        confirms_.push_back(sequence);
        return {};
    }
    courier::result<void> subscribe(const br::ingest_spec& spec) override {
        topic_ = spec.topic;
        return {};
    }
    courier::result<void> poll(courier::duration max_wait, std::size_t max_messages,
                               const std::function<void(br::publish_confirm)>& on_confirm,
                               const std::function<void(br::inbound_message&&)>& on_message) override {
        bool any = !confirms_.empty();
        for (auto s : confirms_) on_confirm(br::publish_confirm{s, {}});
        confirms_.clear();
        if (!topic_.empty()) {
            for (std::size_t i = 0; i < max_messages && pipe_.receive(in_.message.payload); ++i) {
                in_.message.topic = topic_;
                in_.tag.id = topic_;
                in_.tag.number = ++delivered_;
                on_message(std::move(in_));
                any = true;
            }
        }
        // Nothing moved: wait a little, as a broker client blocks on its socket.
        if (!any && max_wait.count() > 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
        return {};
    }
    courier::result<void> ack(const br::ingest_spec&, const br::delivery_tag&) override { return {}; }
    courier::result<void> nack(const br::ingest_spec&, const br::delivery_tag&, bool) override { return {}; }

private:
    pipe& pipe_;
    br::capabilities caps_;
    bool connected_ = false;
    std::string topic_;
    std::vector<std::uint64_t> confirms_;
    br::inbound_message in_;
    std::uint64_t delivered_ = 0;
};

run_result courier_transfer(const run_params& p) {
    pipe link;
    return courier_transfer_through<pipe_msg>(
        p, {.broker = "pipe", .pattern = "bench.inproc.#", .forward_to = {.topic = "inproc"},
            .ingest = {.topic = "inproc", .group = "bench", .consumer = "b"}},
        [&] { return std::make_unique<pipe_transport>(link); });
}

run_result moodycamel_transfer(const run_params& p) {
    pipe link;
    std::string buf = envelope_payload_of<pipe_msg>();
    const std::uint64_t n = p.messages;
    std::atomic<std::uint64_t> last_ns{0};
    std::uint64_t received = 0, checksum = 0;
    run_result r;
    const std::uint64_t start = now_ns();
    std::thread consumer([&] {
        std::string in;
        const std::uint64_t deadline = now_ns() + 60'000'000'000ull;
        while (received < n && now_ns() < deadline) {
            if (!link.receive(in)) {
                std::this_thread::sleep_for(std::chrono::microseconds(20));  // as the pipe transport
                continue;
            }
            std::uint64_t v[2];
            std::memcpy(v, in.data(), 16);
            const std::uint64_t now = now_ns();
            r.latency.record(now - v[1]);
            checksum += v[0];
            ++received;
            last_ns.store(now, std::memory_order_relaxed);
        }
    });
    for (std::uint64_t i = 0; i < n; ++i) {
        const std::uint64_t v[2] = {i, now_ns()};
        std::memcpy(buf.data(), v, 16);
        link.send(buf);
    }
    consumer.join();
    r.messages = received;
    r.elapsed = std::chrono::nanoseconds(last_ns.load() - start);
    r.payload = buf.size();
    if (received != n) r.error = "sent " + std::to_string(n) + ", received " + std::to_string(received);
    else if (checksum != n * (n - 1) / 2) r.error = "checksum mismatch";
    return r;
}

const registration transfer{{
    .name = "bridge.inproc",
    .description = "publish on bus A -> bridge -> in-process pipe (no broker) -> bridge -> delivery on bus B: the bridge's own cost; "
                   "latency = publish -> handler, under load",
    .impls = {{"courier", courier_transfer}, {"moodycamel", moodycamel_transfer}},
    .messages = 500'000,
    .smoke_messages = 300,
    .uses_threads = false,
}};

}  // namespace
}  // namespace courier_bench::inproc_bridge
