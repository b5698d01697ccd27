// graduate: one application whose `orders` topic runs in-process, or over Redis Streams or NATS,
// chosen by configuration alone. The orders module publishes order.placed.v1 and the shipping
// module subscribes to it; neither knows where the topic lives. Only `wire_orders_topic` reads
// the configuration (argv[1] or COURIER_ORDERS_URL):
//   (empty) or "inproc"                          both modules share one bus
//   redis://127.0.0.1:6379?stream=orders         orders' bus forwards to a stream, shipping's ingests
//   nats://127.0.0.1:4222                        the same over NATS subjects
// With a broker, each module gets its own runtime and bus, as they would in two processes.
// Exits 0 only when every order was shipped exactly once.
#include <courier/bridge/broker_bridge.hpp>
#if COURIER_EXAMPLE_HAVE_REDIS
#include <courier/bridge/redis.hpp>
#endif
#if COURIER_EXAMPLE_HAVE_NATS
#include <courier/bridge/nats.hpp>
#endif
#include <courier/courier.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>

using namespace std::chrono_literals;

struct order_placed {
    static constexpr courier::event_name event_type{"order.placed.v1"};
    std::string id;
    double total = 0;
    // nlohmann's to_json/from_json, plus a writer a bridge uses to put the event on the wire
    // without building a JSON document (docs/events.md).
    COURIER_JSON_FIELDS(order_placed, id, total)
};

// ---------------------------------------------------------------- the application's modules
// Written against an event_bus, nothing else: they do not change when the topic moves.

struct orders_module {
    courier::event_bus& bus;
    void place(std::string id, double total) { bus.publish(order_placed{std::move(id), total}, {.key = "orders"}); }
};

struct shipping_module {
    explicit shipping_module(courier::event_bus& bus)
        : sub(bus.subscribe<order_placed>(
              [this](const order_placed& o) {
                  std::lock_guard lock(mutex);
                  if (!shipped.insert(o.id).second) ++twice;
              },
              {.name = "shipping", .mode = courier::delivery_mode::serial})) {}
    std::size_t count() {
        std::lock_guard lock(mutex);
        return shipped.size();
    }
    std::mutex mutex;
    std::set<std::string> shipped;
    std::size_t twice = 0;
    courier::subscription sub;
};

// ---------------------------------------------------------------- the wiring: configuration only

struct orders_topic {
    std::unique_ptr<courier::runtime> orders_rt, shipping_rt;
    std::unique_ptr<courier::bridge::broker_bridge> out, in;
    courier::event_bus& orders_bus() { return orders_rt->bus(); }
    courier::event_bus& shipping_bus() { return shipping_rt ? shipping_rt->bus() : orders_rt->bus(); }
};

courier::result<orders_topic> wire_orders_topic(const std::string& url) {
    orders_topic t;
    t.orders_rt = std::make_unique<courier::runtime>();
    if (url.empty() || url == "inproc") return t;  // one bus: the topic is in-process
    t.shipping_rt = std::make_unique<courier::runtime>();
    auto out = courier::bridge::broker_bridge::connect(t.orders_rt->bus(), url, {.name = "orders-out"});
    if (!out) return courier::unexpected(out.error());
    auto in = courier::bridge::broker_bridge::connect(t.shipping_rt->bus(), url, {.name = "shipping-in"});
    if (!in) return courier::unexpected(in.error());
    // The broker-side name of the topic: Redis keeps it in one stream (the URL's `stream`), NATS
    // and the others use the event name as subject/topic.
    auto parsed = courier::bridge::parse_broker_url(url);
    if (!parsed) return courier::unexpected(parsed.error());
    const std::string topic = parsed->scheme == courier::bridge::broker_scheme::redis ? parsed->param("stream", "orders")
                                                                                     : "order.placed.v1";
    if (auto ok = (*out)->forward("order.#", {.topic = topic}); !ok) return courier::unexpected(ok.error());
    if (auto ok = (*in)->ingest({.topic = topic, .group = "shipping", .consumer = "shipping-1"}); !ok)
        return courier::unexpected(ok.error());
    if (!(*in)->wait_until_ready(10s) || !(*out)->wait_until_ready(10s))
        return courier::unexpected(courier::errc::timeout, "[example.graduate] the broker at " + url + " did not answer");
    t.out = std::move(*out);
    t.in = std::move(*in);
    return t;
}

int main(int argc, char** argv) {
    std::string url = argc > 1 ? argv[1] : "";
    if (url.empty())
        if (const char* e = std::getenv("COURIER_ORDERS_URL")) url = e;
    auto topic = wire_orders_topic(url);
    if (!topic) {
        std::cerr << "graduate: " << topic.error().message << "\n";
        return 1;
    }
    std::cout << "orders topic: " << (url.empty() ? "in-process" : url) << "\n";

    shipping_module shipping(topic->shipping_bus());
    orders_module orders{topic->orders_bus()};
    constexpr int n = 200;
    for (int i = 0; i < n; ++i) orders.place("o-" + std::to_string(i), 10.0 + i);

    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (shipping.count() < n && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    std::cout << "shipped " << shipping.count() << " of " << n << " orders, " << shipping.twice << " twice\n";
    if (topic->out) {
        const auto s = topic->out->stats();
        const auto r = topic->in->stats();
        std::cout << "bridge: forwarded " << s.forwarded << ", confirmed " << s.confirmed << "; ingested " << r.ingested
                  << ", acked " << r.acked << ", duplicates " << r.duplicates << "\n";
        topic->in->stop();
        topic->out->stop();
    }
    const bool ok = shipping.count() == n && shipping.twice == 0;
    std::cout << (ok ? "graduate: every order shipped once\n" : "graduate: FAILED\n");
    return ok ? 0 : 1;
}
