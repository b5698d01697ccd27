// ONE suite of bridge behaviours, written once, run unchanged against every broker adapter.
//
// How to instantiate it for an adapter (see loopback.test.cpp and redis.test.cpp):
//
//   #include "bridge/conformance.hpp"
//   conformance::broker_env my_env(bool needs_restart) {
//       conformance::broker_env env;
//       env.make_transport = [] { return std::make_unique<my_transport>(my_options); };
//       env.redelivery_after = std::chrono::milliseconds(300);   // when an unacked delivery comes back
//       if (needs_restart) { env.stop_broker = ...; env.start_broker = ...; }  // else leave empty
//       return env;
//   }
//   COURIER_BRIDGE_CONFORMANCE("my-broker", "[my-broker]", my_env)
//
// `needs_restart` is true only for the restart test: give it a broker of its own (a private
// server) so stopping it does not disturb tests running in parallel; leave stop/start empty
// and that one test is skipped (with a message). Each test uses fresh topic names
// (`env.topic_prefix` + a counter; only [a-z0-9_] so every broker accepts them) and calls
// `env.prepare_topic(name)` first when set (a broker that needs topics created up front).
// Tests that need a capability the adapter does not declare (redelivery, consumer groups) are
// skipped with a message instead of failing.
#pragma once

#include <courier/bridge/broker_bridge.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/runtime/runtime.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace conformance {

using namespace std::chrono_literals;
namespace br = courier::bridge;

/// The event the suite sends.
struct item {
    static constexpr courier::event_name event_type{"conformance.item.sent.v1"};
    std::uint64_t n = 0;
    std::string key;
    std::string note;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(item, n, key, note)
};

/// One broker under test, as the suite needs it.
struct broker_env {
    /// A new, unconnected client of the broker under test.
    std::function<std::unique_ptr<br::transport>()> make_transport;
    /// Stop the broker keeping its data / start it again at the same address (restart test only).
    std::function<void()> stop_broker;
    std::function<void()> start_broker;
    /// Called with each topic name before a test uses it (optional).
    std::function<void(const std::string&)> prepare_topic;
    /// After this long an unacked delivery comes back (consumer-crash and poison tests).
    std::chrono::milliseconds redelivery_after{1000};
    /// Prefix of the topic names the tests make.
    std::string topic_prefix = "conf";
    /// Kept alive as long as the env (a private server, a shared broker object...).
    std::shared_ptr<void> keep_alive;
};
using env_factory = std::function<broker_env(bool needs_restart)>;

template <class Pred>
bool wait_until(Pred p, std::chrono::milliseconds limit = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!p()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

inline std::string fresh_topic(const broker_env& env, const std::string& test) {
    static std::atomic<unsigned> n{0};
    std::string t = env.topic_prefix + "_" + test + "_" + std::to_string(::getpid()) + "_" + std::to_string(++n) + "_" +
                    std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000);
    if (env.prepare_topic) env.prepare_topic(t);
    return t;
}

inline br::bridge_options fast_options(const std::string& name) {
    br::bridge_options o;
    o.name = name;
    o.poll_interval = 20ms;
    o.reconnect = courier::retry_policy::exponential(10ms, 2.0, 200ms, 0);
    o.connect_timeout = 1s;
    return o;
}

/// A runtime, its bus and a bridge on it: one side of a hop.
struct side {
    courier::runtime rt;
    std::unique_ptr<br::broker_bridge> bridge;
    side(const broker_env& env, const std::string& name, std::string producer)
        : side(env, std::move(producer), fast_options(name)) {}
    side(const broker_env& env, std::string producer, br::bridge_options options)
        : rt(courier::runtime_options{.threads = 2, .producer = std::move(producer)}),
          bridge(std::make_unique<br::broker_bridge>(rt.bus(), env.make_transport(), std::move(options))) {}
    ~side() { bridge.reset(); }  // before the runtime
};

inline courier::envelope make_item(std::uint64_t n, const std::string& key, courier::time_point now) {
    auto e = courier::make_envelope(item{n, key, "note-" + std::to_string(n)}, now);
    if (!key.empty()) e.headers["courier-key"] = key;
    return e;
}

// ---------------------------------------------------------------------------------------------

inline void round_trip(const env_factory& factory) {
    auto env = factory(false);
    const auto topic = fresh_topic(env, "round_trip");
    side a(env, "a", "service-a"), b(env, "b", "service-b");
    REQUIRE(a.bridge->forward("conformance.#", {.topic = topic}));
    REQUIRE(b.bridge->ingest({.topic = topic, .group = "g", .consumer = "b1"}));
    REQUIRE(a.bridge->wait_until_ready(10s));
    REQUIRE(b.bridge->wait_until_ready(10s));

    std::mutex m;
    std::vector<courier::envelope> seen;
    std::vector<item> typed;
    std::vector<std::string> typed_keys;  // checked on this thread: Catch's assertions are not thread-safe
    auto sub_env = b.rt.bus().subscribe(courier::topic_pattern("conformance.#"), [&](const courier::message_context& ctx) {
        std::lock_guard lock(m);
        seen.push_back(ctx.to_envelope());
    });
    auto sub_typed = b.rt.bus().subscribe<item>([&](const item& v, const courier::message_context& ctx) {
        std::lock_guard lock(m);
        typed.push_back(v);
        typed_keys.emplace_back(ctx.key());
    });

    courier::envelope sent = make_item(7, "k-1", courier::system_clock::instance().now());
    sent.metadata.producer = "service-a";
    sent.metadata.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    sent.metadata.correlation_id = "corr-42";
    sent.metadata.causation_id = courier::make_uuid_v7(courier::system_clock::instance().now()).to_string();
    sent.headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    sent.headers["tenant"] = "acme";
    REQUIRE(a.rt.bus().publish(sent));

    REQUIRE(wait_until([&] {
        std::lock_guard lock(m);
        return seen.size() == 1 && typed.size() == 1;
    }));
    std::lock_guard lock(m);
    const auto& got = seen.front();
    CHECK(got.event_type == sent.event_type);
    CHECK(got.event_id == sent.event_id);
    CHECK(got.timestamp == sent.timestamp);
    CHECK(got.version == sent.version);
    CHECK(got.data == sent.data);
    CHECK(got.metadata == sent.metadata);
    CHECK(got.headers == sent.headers);  // courier-key included
    CHECK(typed.front().n == 7);
    CHECK(typed.front().note == "note-7");
    CHECK(typed_keys.front() == "k-1");
    CHECK(wait_until([&] { return b.bridge->stats().acked == 1; }));
    // The broker's confirm to A (a JetStream ack, a delivery report) may arrive after B has
    // the message: wait for it too.
    CHECK(wait_until([&] { return a.bridge->stats().confirmed == 1; }));
    CHECK(a.bridge->stats().outbox_depth == 0);
    CHECK(b.bridge->stats().ingested == 1);
    CHECK(b.bridge->stats().duplicates == 0);
    CHECK(b.bridge->stats().dead_lettered == 0);
}

inline void key_order(const env_factory& factory) {
    auto env = factory(false);
    const auto topic = fresh_topic(env, "key_order");
    side a(env, "a", "service-a"), b(env, "b", "service-b");
    REQUIRE(a.bridge->forward("conformance.item.sent.v1", {.topic = topic}));
    REQUIRE(b.bridge->ingest({.topic = topic, .group = "g", .consumer = "b1"}));
    REQUIRE(a.bridge->wait_until_ready(10s));
    REQUIRE(b.bridge->wait_until_ready(10s));

    constexpr int keys = 4, per_key = 250;
    std::mutex m;
    std::map<std::string, std::vector<std::uint64_t>> by_key;
    std::atomic<int> received{0};
    courier::subscription_options keyed;
    keyed.mode = courier::delivery_mode::keyed;
    keyed.lanes = 8;
    auto sub = b.rt.bus().subscribe<item>(
        [&](const item& v) {
            {
                std::lock_guard lock(m);
                by_key[v.key].push_back(v.n);
            }
            received.fetch_add(1);
        },
        keyed);
    for (int i = 0; i < per_key; ++i)
        for (int k = 0; k < keys; ++k) {
            const std::string key = "key-" + std::to_string(k);
            a.rt.bus().publish(item{static_cast<std::uint64_t>(i), key, ""}, courier::publish_options{.key = key});
        }
    REQUIRE(wait_until([&] { return received.load() >= keys * per_key; }, 30s));
    std::this_thread::sleep_for(50ms);  // a duplicate, if any, would show up now
    std::lock_guard lock(m);
    REQUIRE(by_key.size() == keys);
    for (auto& [key, seq] : by_key) {
        INFO("key " << key);
        REQUIRE(seq.size() == per_key);
        for (int i = 0; i < per_key; ++i) REQUIRE(seq[i] == static_cast<std::uint64_t>(i));
    }
    CHECK(a.bridge->flush(10s));
    CHECK(a.bridge->stats().confirmed == keys * per_key);
}

inline void redelivery_after_crash(const env_factory& factory) {
    auto env = factory(false);
    {
        auto probe = env.make_transport();
        if (!probe->caps().redelivery || !probe->caps().consumer_groups) {
            WARN("skipped: the broker does not redeliver unacked messages to a group");
            return;
        }
    }
    const auto topic = fresh_topic(env, "crash");
    constexpr std::uint64_t n = 20;
    side a(env, "a", "service-a");
    REQUIRE(a.bridge->forward("conformance.#", {.topic = topic}));
    REQUIRE(a.bridge->wait_until_ready(10s));

    // A consumer joins the group, takes every message and dies without acking any.
    {
        auto crashed = env.make_transport();
        REQUIRE(crashed->connect(5s));
        const br::ingest_spec spec{.topic = topic, .group = "g", .consumer = "crashed"};
        REQUIRE(crashed->subscribe(spec));
        for (std::uint64_t i = 0; i < n; ++i) REQUIRE(a.rt.bus().publish(make_item(i, "", courier::system_clock::instance().now())));
        REQUIRE(a.bridge->flush(10s));
        std::size_t taken = 0;
        REQUIRE(wait_until([&] {
            auto r = crashed->poll(10ms, 64, [](br::publish_confirm) {}, [&](br::inbound_message) { ++taken; });
            REQUIRE(r);
            return taken >= n;
        }));
        REQUIRE(taken == n);
        crashed->close();  // the crash: nothing acked
    }

    // A survivor in the same group gets all of them once they idle past redelivery_after.
    side b(env, "b", "service-b");
    std::mutex m;
    std::multiset<std::uint64_t> got;
    auto sub = b.rt.bus().subscribe<item>([&](const item& v) {
        std::lock_guard lock(m);
        got.insert(v.n);
    });
    REQUIRE(b.bridge->ingest({.topic = topic, .group = "g", .consumer = "survivor"}));
    REQUIRE(wait_until([&] {
        std::lock_guard lock(m);
        return got.size() >= n;
    }, 30s));
    std::this_thread::sleep_for(env.redelivery_after + 200ms);  // nothing more may come: all acked
    std::lock_guard lock(m);
    CHECK(got.size() == n);
    for (std::uint64_t i = 0; i < n; ++i) CHECK(got.count(i) == 1);
    CHECK(b.bridge->stats().ingested == n);
    CHECK(b.bridge->stats().acked >= n);
}

inline void dedup(const env_factory& factory) {
    auto env = factory(false);
    const auto topic = fresh_topic(env, "dedup");
    side b(env, "b", "service-b");
    std::atomic<int> calls{0};
    auto sub = b.rt.bus().subscribe<item>([&](const item&) { calls.fetch_add(1); });
    REQUIRE(b.bridge->ingest({.topic = topic, .group = "g", .consumer = "b1"}));
    REQUIRE(b.bridge->wait_until_ready(10s));

    // The same envelope reaches the broker three times (a re-publish after a lost confirm).
    auto raw = env.make_transport();
    REQUIRE(raw->connect(5s));
    const auto e = make_item(1, "k", courier::system_clock::instance().now());
    const auto other = make_item(2, "k", courier::system_clock::instance().now());
    REQUIRE(raw->publish(1, br::detail::to_wire(e, topic)));
    REQUIRE(raw->publish(2, br::detail::to_wire(e, topic)));
    REQUIRE(raw->publish(3, br::detail::to_wire(other, topic)));
    REQUIRE(raw->publish(4, br::detail::to_wire(e, topic)));
    std::size_t confirmed = 0;
    REQUIRE(wait_until([&] {
        REQUIRE(raw->poll(10ms, 16, [&](br::publish_confirm c) { confirmed += c.outcome ? 1 : 0; }, [](br::inbound_message) {}));
        return confirmed == 4;
    }));
    REQUIRE(wait_until([&] { return b.bridge->stats().acked == 4; }));
    std::this_thread::sleep_for(100ms);
    CHECK(calls.load() == 2);
    auto s = b.bridge->stats();
    CHECK(s.ingested == 2);
    CHECK(s.duplicates == 2);
    CHECK(s.dead_lettered == 0);
}

inline void poison(const env_factory& factory) {
    auto env = factory(false);
    const auto topic = fresh_topic(env, "poison");
    side b(env, "b", "service-b");
    std::atomic<int> calls{0};
    auto sub = b.rt.bus().subscribe<item>([&](const item&) { calls.fetch_add(1); });
    REQUIRE(b.bridge->ingest({.topic = topic, .group = "g", .consumer = "b1"}));
    REQUIRE(b.bridge->wait_until_ready(10s));

    auto raw = env.make_transport();
    REQUIRE(raw->connect(5s));
    br::wire_message bad_json{.topic = topic, .key = "", .event_id = "x", .event_type = "?", .payload = "{not json", .headers = {}};
    br::wire_message not_envelope{.topic = topic, .key = "", .event_id = "y", .event_type = "?", .payload = R"({"hello":"world"})", .headers = {}};
    std::string binary("\x00\xff\xfe raw", 7);
    br::wire_message bytes{.topic = topic, .key = "", .event_id = "z", .event_type = "?", .payload = binary, .headers = {}};
    REQUIRE(raw->publish(1, bad_json));
    REQUIRE(raw->publish(2, not_envelope));
    REQUIRE(raw->publish(3, bytes));
    REQUIRE(raw->publish(4, br::detail::to_wire(make_item(9, "", courier::system_clock::instance().now()), topic)));
    std::size_t confirmed = 0;
    REQUIRE(wait_until([&] {
        REQUIRE(raw->poll(10ms, 16, [&](br::publish_confirm c) { confirmed += c.outcome ? 1 : 0; }, [](br::inbound_message) {}));
        return confirmed == 4;
    }));
    // The good message behind the poison still arrives; the poison is dead-lettered, acked, and
    // does not come back after the redelivery time.
    REQUIRE(wait_until([&] { return calls.load() == 1 && b.bridge->stats().acked == 4; }));
    std::this_thread::sleep_for(env.redelivery_after + 300ms);
    CHECK(b.bridge->stats().dead_lettered == 3);
    CHECK(b.bridge->stats().ingested == 1);
    auto dls = b.rt.bus().dead_letters().list();
    REQUIRE(dls.size() == 3);
    std::set<std::string> raws;
    for (auto& d : dls) {
        CHECK(d.reason == courier::dead_letter_reason::undecodable);
        CHECK(d.message.event_type == "courier.bridge.undecodable.v1");
        REQUIRE(d.errors.size() == 1);
        CHECK(d.errors.front().error.find("[courier.") != std::string::npos);
        raws.insert(d.message.data.at("raw_base64").get<std::string>());
    }
    CHECK(raws.count(br::detail::base64("{not json")) == 1);
    CHECK(raws.count(br::detail::base64(R"({"hello":"world"})")) == 1);
    CHECK(raws.count(br::detail::base64(binary)) == 1);
}

inline void inbound_limits(const env_factory& factory) {
    auto env = factory(false);
    const auto topic = fresh_topic(env, "limits");
    // Tight limits on the receiving bridge. The message at them is exactly max_bytes long, nests
    // exactly max_depth deep and carries exactly max_headers headers; each of the others is one
    // past one limit and at the other two.
    constexpr std::size_t max_bytes = 1200, max_depth = 6, max_headers = 4;
    auto options = fast_options("b");
    options.limits = courier::decode_limits{.max_bytes = max_bytes, .max_depth = max_depth, .max_headers = max_headers};
    side b(env, "service-b", options);
    const auto now = courier::system_clock::instance().now();
    // The envelope is depth 1, `data` 2, and each array in data.pad one more.
    auto make = [&](std::uint64_t n, std::size_t depth, std::size_t headers, std::size_t bytes) {
        courier::envelope e = make_item(n, "", now);
        nlohmann::json pad = 0;
        for (std::size_t i = 2; i < depth; ++i) pad = nlohmann::json::array({std::move(pad)});
        e.data["pad"] = std::move(pad);
        for (std::size_t i = 0; i < headers; ++i) e.headers["h" + std::to_string(i)] = "v";
        const std::size_t size = courier::encode(e).size();
        REQUIRE(size <= bytes);
        e.data["note"] = e.data["note"].get<std::string>() + std::string(bytes - size, 'x');
        REQUIRE(courier::encode(e).size() == bytes);
        return br::detail::to_wire(e, topic);
    };
    const br::wire_message at_limit = make(1, max_depth, max_headers, max_bytes);
    const std::map<std::string, br::wire_message> past{
        {"courier.envelope.too_large", make(2, max_depth, max_headers, max_bytes + 1)},
        {"courier.envelope.too_deep", make(3, max_depth + 1, max_headers, max_bytes)},
        {"courier.envelope.too_many_headers", make(4, max_depth, max_headers + 1, max_bytes)},
    };

    std::mutex m;
    std::vector<item> typed;
    std::atomic<int> any{0};
    auto sub_typed = b.rt.bus().subscribe<item>([&](const item& v) {
        std::lock_guard lock(m);
        typed.push_back(v);
    });
    auto sub_all = b.rt.bus().subscribe(courier::topic_pattern("conformance.#"), [&](const courier::message_context&) { any.fetch_add(1); });
    REQUIRE(b.bridge->ingest({.topic = topic, .group = "g", .consumer = "b1"}));
    REQUIRE(b.bridge->wait_until_ready(10s));

    auto raw = env.make_transport();
    REQUIRE(raw->connect(5s));
    std::uint64_t seq = 0;
    REQUIRE(raw->publish(++seq, past.at("courier.envelope.too_large")));
    REQUIRE(raw->publish(++seq, at_limit));
    REQUIRE(raw->publish(++seq, past.at("courier.envelope.too_deep")));
    REQUIRE(raw->publish(++seq, past.at("courier.envelope.too_many_headers")));
    std::size_t confirmed = 0;
    REQUIRE(wait_until([&] {
        REQUIRE(raw->poll(10ms, 16, [&](br::publish_confirm c) { confirmed += c.outcome ? 1 : 0; }, [](br::inbound_message) {}));
        return confirmed == 4;
    }));
    REQUIRE(wait_until([&] {
        std::lock_guard lock(m);
        return typed.size() == 1 && b.bridge->stats().acked == 4;
    }));
    std::this_thread::sleep_for(env.redelivery_after + 300ms);  // nothing comes back, nothing more arrives
    {
        std::lock_guard lock(m);
        REQUIRE(typed.size() == 1);
        CHECK(typed.front().n == 1);
        CHECK(typed.front().note.size() > 100);  // the padded note: the message whole
    }
    CHECK(any.load() == 1);
    const auto s = b.bridge->stats();
    CHECK(s.ingested == 1);
    CHECK(s.dead_lettered == 3);
    CHECK(s.duplicates == 0);
    CHECK(s.acked == 4);
    auto dls = b.rt.bus().dead_letters().list();
    REQUIRE(dls.size() == 3);
    std::set<std::string> reasons;
    for (auto& d : dls) {
        CHECK(d.reason == courier::dead_letter_reason::undecodable);
        CHECK(d.message.event_type == "courier.bridge.undecodable.v1");
        CHECK(d.subscription == "bridge:b:ingest:" + topic);
        REQUIRE(d.errors.size() == 1);
        const std::string& error = d.errors.front().error;
        REQUIRE(error.size() > 2);
        const std::string id = error.substr(1, error.find(']') - 1);
        reasons.insert(id);
        INFO(error);
        REQUIRE(past.count(id) == 1);
        CHECK(error.find(id == "courier.envelope.too_large" ? "max_bytes = 1200"
                         : id == "courier.envelope.too_deep" ? "max_depth = 6"
                                                             : "max_headers = 4") != std::string::npos);
        // The exact bytes are kept, and (being UTF-8) as text too.
        const std::string& bytes = past.at(id).payload;
        CHECK(d.message.data.at("raw_base64").get<std::string>() == br::detail::base64(bytes));
        CHECK(d.message.data.at("raw").get<std::string>() == bytes);
        CHECK(d.message.data.at("reason").get<std::string>() == error);
    }
    CHECK(reasons.size() == 3);
}

inline void broker_restart(const env_factory& factory) {
    auto env = factory(true);
    if (!env.stop_broker || !env.start_broker) {
        WARN("skipped: this environment cannot stop and start the broker");
        return;
    }
    const auto topic = fresh_topic(env, "restart");
    constexpr std::uint64_t n = 400;
    side a(env, "a", "service-a"), b(env, "b", "service-b");
    std::mutex m;
    std::multiset<std::uint64_t> got;
    auto sub = b.rt.bus().subscribe<item>([&](const item& v) {
        std::lock_guard lock(m);
        got.insert(v.n);
    });
    REQUIRE(a.bridge->forward("conformance.#", {.topic = topic}));
    REQUIRE(b.bridge->ingest({.topic = topic, .group = "g", .consumer = "b1"}));
    REQUIRE(a.bridge->wait_until_ready(10s));
    REQUIRE(b.bridge->wait_until_ready(10s));

    std::atomic<bool> stopped{false}, restarted{false};
    std::atomic<std::uint64_t> published{0};
    std::thread chaos([&] {
        // Mid-stream: once a quarter is published (and some delivered), the broker goes away
        // while the publisher goes on, and comes back 300 ms later.
        wait_until([&] {
            std::lock_guard lock(m);
            return published.load() >= n / 4 && !got.empty();
        });
        env.stop_broker();
        stopped = true;
        std::this_thread::sleep_for(300ms);
        env.start_broker();
        restarted = true;
    });
    for (std::uint64_t i = 0; i < n; ++i) {
        REQUIRE(a.rt.bus().publish(make_item(i, "k" + std::to_string(i % 3), courier::system_clock::instance().now())));
        published = i + 1;
        if (i % 10 == 0) std::this_thread::sleep_for(1ms);  // a stream, not one burst
        if (i == n / 2) wait_until([&] { return stopped.load(); });  // the second half while it is down or after
    }
    chaos.join();
    REQUIRE(restarted);
    REQUIRE(stopped);
    REQUIRE(a.bridge->flush(30s));
    REQUIRE(wait_until([&] {
        std::lock_guard lock(m);
        return got.size() >= n;
    }, 30s));
    std::this_thread::sleep_for(env.redelivery_after + 300ms);  // redeliveries, if any, are in by now
    {
        std::lock_guard lock(m);
        CHECK(got.size() == n);  // exactly once after dedup
        for (std::uint64_t i = 0; i < n; ++i) CHECK(got.count(i) == 1);
    }
    auto sa = a.bridge->stats();
    auto sb = b.bridge->stats();
    CHECK(sa.forwarded == n);
    CHECK(sa.confirmed == n);
    CHECK(sa.dropped == 0);
    CHECK(sa.outbox_depth == 0);
    CHECK(sa.reconnects >= 1);
    CHECK(sb.reconnects >= 1);
    CHECK(sb.ingested == n);
    CHECK(sb.dead_lettered == 0);
    INFO("duplicates dropped at the receiver: " << sb.duplicates);
    CHECK(a.rt.bus().dead_letters().size() == 0);
}

}  // namespace conformance

/// Registers the whole suite for one adapter: NAME and TAG are string literals, FACTORY a
/// callable `broker_env(bool needs_restart)`.
#define COURIER_BRIDGE_CONFORMANCE(NAME, TAG, FACTORY)                                                                  \
    TEST_CASE(NAME " bridge round trip keeps id, type, timestamp, metadata, headers and key", "[bridge][conformance]" TAG) { \
        conformance::round_trip(FACTORY);                                                                                \
    }                                                                                                                    \
    TEST_CASE(NAME " bridge keeps per-key order across the hop", "[bridge][conformance]" TAG) {                          \
        conformance::key_order(FACTORY);                                                                                 \
    }                                                                                                                    \
    TEST_CASE(NAME " bridge redelivers what a crashed consumer took to the group's survivor", "[bridge][conformance]" TAG) { \
        conformance::redelivery_after_crash(FACTORY);                                                                    \
    }                                                                                                                    \
    TEST_CASE(NAME " bridge drops a repeated event_id and still acks it", "[bridge][conformance]" TAG) {                 \
        conformance::dedup(FACTORY);                                                                                     \
    }                                                                                                                    \
    TEST_CASE(NAME " bridge dead-letters poison input with its raw bytes and acks it", "[bridge][conformance]" TAG) {    \
        conformance::poison(FACTORY);                                                                                    \
    }                                                                                                                    \
    TEST_CASE(NAME " bridge dead-letters inbound messages one past each limit and delivers the one at them",            \
              "[bridge][conformance]" TAG) {                                                                             \
        conformance::inbound_limits(FACTORY);                                                                            \
    }                                                                                                                    \
    TEST_CASE(NAME " bridge delivers every message exactly once across a broker restart", "[bridge][conformance]" TAG) { \
        conformance::broker_restart(FACTORY);                                                                            \
    }
