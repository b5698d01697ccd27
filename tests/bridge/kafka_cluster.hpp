// A Kafka cluster for the Kafka bridge tests: librdkafka's mock cluster (one broker on
// 127.0.0.1, in this process; no Kafka server is packaged for Debian), plus a raw librdkafka
// producer and consumer as "the broker's own client" for interop checks.
#pragma once

#include <courier/bridge/transport.hpp>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace kafka_test {

inline int kafka_unused_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("cannot find a free port");
    }
    ::close(fd);
    return ntohs(a.sin_port);
}

/// `connect` with a short timeout until it succeeds or `limit` passes (the bridge's backoff).
inline bool reconnect_kafka(courier::bridge::transport& t, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (auto wait = std::chrono::milliseconds(20);; wait = std::min(wait * 2, std::chrono::milliseconds(500))) {
        if (t.connect(std::chrono::seconds(2))) return true;
        if (std::chrono::steady_clock::now() + wait > deadline) return false;
        std::this_thread::sleep_for(wait);  // backoff between attempts, not a synchronization
    }
}

class kafka_cluster {
public:
    struct record {
        std::string key;
        std::string value;
        std::map<std::string, std::string> headers;
    };

    explicit kafka_cluster(int brokers = 1) {
        char err[512];
        rd_kafka_conf_t* conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t*, int, const char*, const char*) {});
        rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (rk_ == nullptr) throw std::runtime_error(std::string("rd_kafka_new: ") + err);
        mc_ = rd_kafka_mock_cluster_new(rk_, brokers);
        if (mc_ == nullptr) throw std::runtime_error("rd_kafka_mock_cluster_new failed");
        bootstraps_ = rd_kafka_mock_cluster_bootstraps(mc_);
    }
    ~kafka_cluster() {
        rd_kafka_mock_cluster_destroy(mc_);
        rd_kafka_destroy(rk_);
    }
    kafka_cluster(const kafka_cluster&) = delete;
    kafka_cluster& operator=(const kafka_cluster&) = delete;

    const std::string& bootstraps() const noexcept { return bootstraps_; }
    rd_kafka_mock_cluster_t* mock() const noexcept { return mc_; }

    void create_topic(const std::string& topic, int partitions) {
        if (rd_kafka_mock_topic_create(mc_, topic.c_str(), partitions, 1) != RD_KAFKA_RESP_ERR_NO_ERROR)
            throw std::runtime_error("cannot create topic " + topic);
    }
    void broker_down(int id = 1) { rd_kafka_mock_broker_set_down(mc_, id); }
    void broker_up(int id = 1) { rd_kafka_mock_broker_set_up(mc_, id); }

    /// Produces one record with a plain librdkafka producer and waits for its delivery report.
    void raw_produce(const std::string& topic, const std::string& key, const std::string& value,
                     const std::vector<std::pair<std::string, std::string>>& headers) {
        rd_kafka_t* p = make(RD_KAFKA_PRODUCER, nullptr);
        rd_kafka_headers_t* h = rd_kafka_headers_new(headers.size());
        for (auto& [k, v] : headers) rd_kafka_header_add(h, k.data(), static_cast<ssize_t>(k.size()), v.data(), static_cast<ssize_t>(v.size()));
        auto e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.empty() ? nullptr : const_cast<char*>(key.data()), key.size()),
                                   RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_HEADERS(h),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_headers_destroy(h);
        const auto flushed = rd_kafka_flush(p, 10000);
        rd_kafka_destroy(p);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR || flushed != RD_KAFKA_RESP_ERR_NO_ERROR) throw std::runtime_error("raw produce failed");
    }

    /// Reads `n` records of every partition of `topic` from the beginning with a plain
    /// librdkafka consumer (assigned partitions: no group join).
    std::vector<record> raw_consume(const std::string& topic, std::size_t n, std::chrono::milliseconds limit) {
        rd_kafka_t* c = make(RD_KAFKA_CONSUMER, "raw-reader");
        const rd_kafka_metadata_t* md = nullptr;
        rd_kafka_topic_t* rkt = rd_kafka_topic_new(c, topic.c_str(), nullptr);
        std::vector<record> out;
        if (rd_kafka_metadata(c, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1) {
            rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
            for (int i = 0; i < md->topics[0].partition_cnt; ++i)
                rd_kafka_topic_partition_list_add(list, topic.c_str(), md->topics[0].partitions[i].id)->offset = RD_KAFKA_OFFSET_BEGINNING;
            rd_kafka_assign(c, list);
            rd_kafka_topic_partition_list_destroy(list);
            const auto deadline = std::chrono::steady_clock::now() + limit;
            while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
                rd_kafka_message_t* m = rd_kafka_consumer_poll(c, 100);
                if (m == nullptr) continue;
                if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    record r;
                    if (m->key) r.key.assign(static_cast<const char*>(m->key), m->key_len);
                    if (m->payload) r.value.assign(static_cast<const char*>(m->payload), m->len);
                    rd_kafka_headers_t* h = nullptr;
                    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        const char* name;
                        const void* val;
                        size_t size;
                        for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
                            r.headers[name] = std::string(static_cast<const char*>(val), size);
                    }
                    out.push_back(std::move(r));
                }
                rd_kafka_message_destroy(m);
            }
        }
        if (md) rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
        return out;
    }

private:
    rd_kafka_t* make(rd_kafka_type_t type, const char* group) {
        char err[512];
        rd_kafka_conf_t* conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps_.c_str(), err, sizeof err);
        rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t*, int, const char*, const char*) {});
        if (group != nullptr) {
            rd_kafka_conf_set(conf, "group.id", group, err, sizeof err);
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
        }
        rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
        if (rk == nullptr) throw std::runtime_error(std::string("rd_kafka_new: ") + err);
        return rk;
    }

    rd_kafka_t* rk_ = nullptr;
    rd_kafka_mock_cluster_t* mc_ = nullptr;
    std::string bootstraps_;
};

}  // namespace kafka_test
