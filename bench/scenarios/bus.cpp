// Event-bus scenarios: what a typed publish costs end to end, against the ways a user could
// move the same event between threads without courier.
//   bus.exact       typed publish -> one pooled subscriber by exact name, vs raw moodycamel,
//                   asio::post of the same handler and ZeroMQ inproc PUSH/PULL.
//   bus.pattern     the same through a wildcard subscriber (`bench.#`), same baselines.
//   bus.fanout      one event, 8 inline subscribers, vs Boost.Signals2 with 8 slots.
//   envelope.codec  envelope encode + decode, vs nlohmann_json dump + parse of the same JSON.
// The bus runs on a user io_context whose threads are the scenario's consumers, so the
// consumer count means the same thing as for the queue baselines.
#include "../baselines/asio_post.hpp"
#include "../baselines/queues.hpp"
#include "../baselines/zmq_inproc.hpp"
#include "../harness/queue_harness.hpp"

#include <courier/bus/event_bus.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/signals2/signal.hpp>

#include <optional>

namespace courier_bench {
namespace {

struct bench_event {
    static constexpr courier::event_name event_type{"bench.message.sent.v1"};
    std::uint64_t word = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(bench_event, word)
};

thread_local receiver* bus_receiver = nullptr;

/// P publisher threads, C threads running the runtime's io_context, one subscription with the
/// bus's default options (bounded 64 Ki queue, block, at-least-once) and pooled concurrency C.
template <bool Wildcard>
run_result run_bus(const run_params& p) {
    boost::asio::io_context io(p.consumers);
    std::optional work{boost::asio::make_work_guard(io)};
    courier::runtime rt(io, courier::runtime_options{.threads = static_cast<std::uint32_t>(p.consumers)});
    run_control ctl(p);
    courier::subscription_options o;
    o.concurrency = static_cast<std::uint32_t>(p.consumers);
    courier::subscription sub;
    if constexpr (Wildcard) {
        sub = rt.bus().subscribe("bench.#", [&ctl](const courier::message_context& c) {
            receiver& rx = *bus_receiver;
            rx.on_receive(c.get_if<bench_event>()->word);
            ctl.maybe_publish(rx);
        }, o);
    } else {
        sub = rt.bus().subscribe<bench_event>([&ctl](const bench_event& e) {
            receiver& rx = *bus_receiver;
            rx.on_receive(e.word);
            ctl.maybe_publish(rx);
        }, o);
    }
    run_result r = ctl.run(
        [&](int i) {
            sender& tx = ctl.sender_of(i);
            ctl.arrive_and_wait();
            while (ctl.keep_sending(tx)) (void)rt.bus().publish(bench_event{tx.next_word()});
        },
        [&](int i) {
            receiver& rx = ctl.receiver_of(i);
            bus_receiver = &rx;
            ctl.arrive_and_wait();
            io.run();  // returns once producers are done (work guard gone) and the lane is drained
            ctl.publish(rx);
            ctl.finish();
        },
        [&] { work.reset(); });
    if (r.error.empty() && sub.metrics().dead_lettered != 0)
        r.error = std::to_string(sub.metrics().dead_lettered) + " messages were dead-lettered";
    r.payload = sizeof(bench_event);
    return r;
}

constexpr int fanout_subscribers = 8;

/// Times `publish` for p.messages events and checks that each of the 8 slots saw each one.
template <class Publish>
run_result time_fanout(const run_params& p, std::uint64_t& count, std::uint64_t& sum, Publish publish) {
    const std::uint64_t start = now_ns();
    for (std::uint64_t i = 0; i < p.messages; ++i) publish(i);
    const std::uint64_t end = now_ns();
    run_result r;
    r.messages = count;
    r.elapsed = std::chrono::nanoseconds(end - start);
    const std::uint64_t want = p.messages * fanout_subscribers;
    const std::uint64_t want_sum = fanout_subscribers * (p.messages * (p.messages - 1) / 2);
    if (count != want) r.error = "expected " + std::to_string(want) + " deliveries, got " + std::to_string(count);
    else if (sum != want_sum) r.error = "checksum mismatch";
    r.payload = sizeof(bench_event);
    return r;
}

run_result courier_fanout(const run_params& p) {
    courier::manual_clock clk;  // inline delivery never touches the executor
    courier::runtime rt(courier::runtime::manual, clk);
    std::uint64_t count = 0, sum = 0;
    std::vector<courier::subscription> subs;
    for (int i = 0; i < fanout_subscribers; ++i)
        subs.push_back(rt.bus().subscribe<bench_event>([&](const bench_event& e) {
            ++count;
            sum += e.word;
        }, {.mode = courier::delivery_mode::inline_call}));
    return time_fanout(p, count, sum, [&](std::uint64_t i) { (void)rt.bus().publish(bench_event{i}); });
}

run_result signals2_fanout(const run_params& p) {
    boost::signals2::signal<void(const bench_event&)> signal;
    std::uint64_t count = 0, sum = 0;
    for (int i = 0; i < fanout_subscribers; ++i)
        signal.connect([&](const bench_event& e) {
            ++count;
            sum += e.word;
        });
    return time_fanout(p, count, sum, [&](std::uint64_t i) { signal(bench_event{i}); });
}

courier::envelope sample_envelope(std::uint64_t i) {
    courier::envelope e;
    e.event_type = "order.created.v1";
    e.version = 1;
    e.event_id = courier::make_uuid_v7();
    e.timestamp = std::chrono::system_clock::now();
    e.data = {{"id", "o-" + std::to_string(i)}, {"total", 42.5}, {"lines", {{{"sku", "A-1"}, {"qty", 2}}}}};
    e.metadata.producer = "bench";
    e.metadata.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    e.metadata.correlation_id = "checkout-7";
    e.headers["tenant"] = "acme";
    return e;
}

/// Encodes and decodes p.messages envelopes, checking each round trip.
run_result courier_codec(const run_params& p) {
    auto env = sample_envelope(1);
    run_result r;
    const std::uint64_t start = now_ns();
    for (std::uint64_t i = 0; i < p.messages; ++i) {
        auto bytes = courier::encode(env);
        auto back = courier::decode(bytes);
        if (!back || back->event_id != env.event_id) {
            r.error = "round trip failed";
            break;
        }
        ++r.messages;
    }
    r.elapsed = std::chrono::nanoseconds(now_ns() - start);
    r.payload = courier::encode(env).size();
    return r;
}

/// The same JSON document built, dumped and parsed with nlohmann_json directly, fields read
/// back by hand: the floor any JSON envelope codec on nlohmann_json stands on.
run_result nlohmann_codec(const run_params& p) {
    auto env = sample_envelope(1);
    auto doc = courier::to_json_value(env);
    run_result r;
    const std::string id = doc["event_id"].get<std::string>();
    const std::uint64_t start = now_ns();
    for (std::uint64_t i = 0; i < p.messages; ++i) {
        auto bytes = doc.dump();
        auto back = nlohmann::json::parse(bytes);
        if (back["event_id"].get_ref<const std::string&>() != id) {
            r.error = "round trip failed";
            break;
        }
        ++r.messages;
    }
    r.elapsed = std::chrono::nanoseconds(now_ns() - start);
    r.payload = doc.dump().size();
    return r;
}

const registration exact{{
    .name = "bus.exact",
    .description = "typed publish to one pooled subscriber by exact name (C threads run the executor)",
    .impls =
        {
            {"courier", run_bus<false>},
            {"moodycamel", queue_bench<moodycamel_queue>},
            {"asio_post", asio_post_bench},
#if COURIER_BENCH_HAVE_ZMQ
            {"zmq_inproc", zmq_inproc_bench},
#endif
        },
    .shapes = {{1, 1}, {2, 2}},
    .messages = 2'000'000,
}};

const registration pattern{{
    .name = "bus.pattern",
    .description = "typed publish to one pooled wildcard subscriber (bench.#)",
    .impls =
        {
            {"courier", run_bus<true>},
            {"moodycamel", queue_bench<moodycamel_queue>},
            {"asio_post", asio_post_bench},
#if COURIER_BENCH_HAVE_ZMQ
            {"zmq_inproc", zmq_inproc_bench},
#endif
        },
    .shapes = {{1, 1}},
    .messages = 2'000'000,
}};

const registration fanout{{
    .name = "bus.fanout",
    .description = "one event to 8 inline subscribers; msgs/s counts deliveries",
    .impls = {{"courier", courier_fanout}, {"boost_signals2", signals2_fanout}},
    .messages = 2'000'000,
    .uses_threads = false,
}};

const registration codec{{
    .name = "envelope.codec",
    .description = "envelope JSON encode + decode (payload = encoded bytes)",
    .impls = {{"courier", courier_codec}, {"nlohmann_json", nlohmann_codec}},
    .messages = 200'000,
    .smoke_messages = 200,
    .uses_threads = false,
}};

}  // namespace
}  // namespace courier_bench
