// Bridge scenario over Kafka (needs courier::bridge_kafka). No Kafka server is packaged for
// Debian: each run starts librdkafka's mock cluster (one broker on 127.0.0.1, in this process)
// and a topic of 8 partitions (the mock keeps about 5 MiB per partition, so a run stays far
// below what it retains).
//   bridge.kafka   one thread publishes typed events on bus A; bridge A forwards them (outbox,
//                  produce, delivery reports as confirms); bridge B's consumer group reads them
//                  and publishes them on bus B, where an inline subscriber checks each (count +
//                  checksum) and acks it (manual commit of acked offsets). msgs/s from the first
//                  publish to the last delivery; latency = publish on A -> handler on B. The
//                  group's first join (about 3 s on the mock) is done before timing starts: one
//                  warm-up message must arrive first. Baseline "librdkafka": the same transfer
//                  with a raw producer (same linger and idempotence; a delivery-report callback
//                  counts every message, served as it goes, and a run fails unless all were
//                  delivered) and a raw group consumer thread committing every 512 messages.
#include "../harness/bridge_scenario.hpp"
#include "../harness/queue_harness.hpp"

#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/kafka.hpp>
#include <courier/runtime/runtime.hpp>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

// Its own namespace: courier-bench compiles every scenario in one unity TU.
namespace courier_bench::bridge_kafka {
namespace {

namespace br = courier::bridge;

constexpr std::uint64_t warmup_seq = ~std::uint64_t{0};

struct kafka_msg {
    static constexpr courier::event_name event_type{"bench.kafkabridge.sent.v1"};
    std::uint64_t seq = 0;
    std::uint64_t sent_ns = 0;
    COURIER_JSON_FIELDS(kafka_msg, seq, sent_ns)
};

void quiet(const rd_kafka_t*, int, const char*, const char*) {}

// The raw producer's delivery reports, counted as a producer that cares about delivery counts
// them (the bridge's outbox is driven by the same reports).
struct delivery_counts {
    std::uint64_t delivered = 0;
    std::uint64_t failed = 0;
};
void count_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* counts = static_cast<delivery_counts*>(opaque);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) ++counts->delivered;
    else ++counts->failed;
}

// librdkafka's mock cluster with one topic, for one run.
struct mock_cluster {
    rd_kafka_t* rk = nullptr;
    rd_kafka_mock_cluster_t* mc = nullptr;
    std::string bootstraps;
    explicit mock_cluster(const std::string& topic) {
        char err[512];
        rd_kafka_conf_t* conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, quiet);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (!rk) throw std::runtime_error(std::string("rd_kafka_new: ") + err);
        mc = rd_kafka_mock_cluster_new(rk, 1);
        if (!mc) throw std::runtime_error("rd_kafka_mock_cluster_new failed");
        bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
        rd_kafka_mock_topic_create(mc, topic.c_str(), 8, 1);
    }
    ~mock_cluster() {
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(rk);
    }
    mock_cluster(const mock_cluster&) = delete;
    mock_cluster& operator=(const mock_cluster&) = delete;
};

std::string fresh_topic(const char* what) { return fresh_broker_name("benchkafka.", what); }

br::bridge_options bench_bridge(const char* name) {
    auto o = bench_bridge_options(name);
    o.connect_timeout = std::chrono::seconds(5);
    return o;
}

run_result courier_transfer(const run_params& p) {
    const auto topic = fresh_topic("transfer");
    mock_cluster cluster(topic);
    br::kafka_options ko;
    ko.brokers = cluster.bootstraps;
    return courier_transfer_through<kafka_msg>(
        p,
        {.broker = "kafka", .pattern = "bench.kafkabridge.#", .forward_to = {.topic = topic},
         .ingest = {.topic = topic, .group = "bench", .consumer = "b"},
         .options = bench_bridge(""), .warmup_seq = warmup_seq, .flush_a = true},
        [&] { return std::make_unique<br::kafka_transport>(ko); });
}

rd_kafka_t* raw_client(rd_kafka_type_t type, const std::string& brokers, const char* group, delivery_counts* counts = nullptr) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    auto set = [&](const char* k, const char* v) {
        if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) throw std::runtime_error(err);
    };
    set("bootstrap.servers", brokers.c_str());
    rd_kafka_conf_set_log_cb(conf, quiet);
    if (type == RD_KAFKA_PRODUCER) {
        set("linger.ms", "1");  // as kafka_options' default
        set("enable.idempotence", "true");
        rd_kafka_conf_set_dr_msg_cb(conf, count_delivery);
        rd_kafka_conf_set_opaque(conf, counts);
    } else {
        set("group.id", group);
        set("enable.auto.commit", "false");
        set("auto.offset.reset", "earliest");
        set("session.timeout.ms", "6000");
        set("heartbeat.interval.ms", "500");
        set("fetch.wait.max.ms", "10");
    }
    rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) throw std::runtime_error(err);
    return rk;
}

run_result librdkafka_transfer(const run_params& p) {
    const auto topic = fresh_topic("raw");
    mock_cluster cluster(topic);
    std::string buf = envelope_payload_of<kafka_msg>();
    const std::uint64_t n = p.messages;
    delivery_counts reports;
    rd_kafka_t* prod = raw_client(RD_KAFKA_PRODUCER, cluster.bootstraps, nullptr, &reports);
    rd_kafka_t* cons = raw_client(RD_KAFKA_CONSUMER, cluster.bootstraps, "bench");
    rd_kafka_poll_set_consumer(cons);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic.c_str(), RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(cons, list);
    rd_kafka_topic_partition_list_destroy(list);
    auto produce = [&](std::uint64_t seq, std::uint64_t sent) {
        std::memcpy(buf.data(), &seq, 8);
        std::memcpy(buf.data() + 8, &sent, 8);
        const std::string id = std::to_string(seq);
        rd_kafka_headers_t* h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, "courier-event-id", -1, id.data(), static_cast<ssize_t>(id.size()));
        rd_kafka_header_add(h, "courier-event-type", -1, "bench.kafkabridge.sent.v1", -1);
        for (;;) {
            auto e = rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_VALUE(buf.data(), buf.size()),
                                       RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_headers_destroy(h);
                throw std::runtime_error(rd_kafka_err2str(e));
            }
            rd_kafka_poll(prod, 10);
        }
        rd_kafka_poll(prod, 0);  // delivery reports, as the bridge serves them
    };
    std::atomic<bool> warm{false};
    std::atomic<std::uint64_t> last_ns{0};
    std::uint64_t received = 0, checksum = 0;
    run_result r;
    std::thread consumer([&] {
        const std::uint64_t deadline = now_ns() + 90'000'000'000ull;
        std::uint64_t since_commit = 0;
        while (received < n && now_ns() < deadline) {
            rd_kafka_message_t* m = rd_kafka_consumer_poll(cons, 100);
            if (!m) continue;
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->len >= 16) {
                std::uint64_t v[2];
                std::memcpy(v, m->payload, 16);
                if (v[0] == warmup_seq) {
                    warm.store(true, std::memory_order_release);
                } else {
                    const std::uint64_t now = now_ns();
                    r.latency.record(now - v[1]);
                    checksum += v[0];
                    ++received;
                    last_ns.store(now, std::memory_order_relaxed);
                }
                if (++since_commit == 512) {
                    rd_kafka_commit(cons, nullptr, 1);
                    since_commit = 0;
                }
            }
            rd_kafka_message_destroy(m);
        }
        rd_kafka_commit(cons, nullptr, 0);
    });
    produce(warmup_seq, now_ns());
    const std::uint64_t warm_deadline = now_ns() + 30'000'000'000ull;
    while (!warm.load(std::memory_order_acquire) && now_ns() < warm_deadline) rd_kafka_poll(prod, 1);
    const std::uint64_t start = now_ns();
    if (warm.load()) {
        for (std::uint64_t i = 0; i < n; ++i) produce(i, now_ns());
        rd_kafka_flush(prod, 30000);
    }
    consumer.join();
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    rd_kafka_destroy(prod);
    r.messages = received;
    r.elapsed = std::chrono::nanoseconds(last_ns.load() - start);
    r.payload = buf.size();
    if (!warm.load()) r.error = "the group never received the warm-up message";
    else if (received != n) r.error = "sent " + std::to_string(n) + ", received " + std::to_string(received);
    else if (checksum != n * (n - 1) / 2) r.error = "checksum mismatch";
    else if (reports.delivered != n + 1 || reports.failed != 0)
        r.error = "delivery reports: " + std::to_string(reports.delivered) + " delivered, " + std::to_string(reports.failed) + " failed";
    return r;
}

const registration transfer{{
    .name = "bridge.kafka",
    .description = "publish on bus A -> kafka topic (librdkafka mock cluster, 8 partitions) -> consumer group -> delivery on bus B; "
                   "latency = publish -> handler, under load",
    .impls = {{"courier", courier_transfer}, {"librdkafka", librdkafka_transfer}},
    .messages = 100'000,
    .smoke_messages = 300,
    .uses_threads = false,
}};

}  // namespace
}  // namespace courier_bench::bridge_kafka
