// courier-microbench: Google Benchmark timings of the primitives on every event's path:
// parsing an event name, parsing and matching topic patterns, encoding and decoding the
// JSON envelope, a typed event's data to and from JSON text, and making UUID v7 ids.
// Run: ./scripts/bench --micro [--benchmark_filter=...]
#include <courier/bridge/detail/canonical_json.hpp>
#include <courier/core/uuid.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/event/event_name.hpp>
#include <courier/event/json_fields.hpp>
#include <courier/event/topic_pattern.hpp>

#include <benchmark/benchmark.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

namespace {

constexpr std::string_view short_name = "order.created.v1";
constexpr std::string_view long_name = "warehouse.inventory.item.reservation_released.v12";

/// An envelope like the ones bridges carry: a small object as data, full metadata, one header.
courier::envelope sample_envelope() {
    courier::envelope e;
    e.event_type = "order.created.v1";
    const auto now = courier::time_point(std::chrono::seconds(1735689600));
    e.event_id = courier::make_uuid_v7(now);
    e.timestamp = courier::truncate_to_wire_precision(now);
    e.version = 1;
    e.data = {{"order_id", "A-1042"}, {"customer", "c-77"}, {"total_cents", 129900}, {"lines", 3}};
    e.metadata = {"checkout-service", "4bf92f3577b34da6a3ce929d0e0e4736", "corr-1042", ""};
    e.headers = {{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}};
    return e;
}

/// A benchmark that measures garbage is worse than none: stop at the first wrong answer.
void require(bool ok, const char* what) {
    if (!ok) {
        std::cerr << "courier-microbench: " << what << "\n";
        std::abort();
    }
}

void event_name_parse(benchmark::State& state, std::string_view text) {
    require(courier::event_name::parse(text).has_value(), "a valid name did not parse");
    for (auto _ : state) {
        auto n = courier::event_name::parse(text);
        benchmark::DoNotOptimize(n);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(event_name_parse, short, short_name);
BENCHMARK_CAPTURE(event_name_parse, long, long_name);

void event_name_parse_invalid(benchmark::State& state) {
    // The error path builds a message: worth knowing what a flood of bad names costs.
    constexpr std::string_view bad = "Order.Created.v1";
    require(!courier::event_name::parse(bad).has_value(), "an invalid name parsed");
    for (auto _ : state) {
        auto n = courier::event_name::parse(bad);
        benchmark::DoNotOptimize(n);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(event_name_parse_invalid);

void topic_pattern_parse(benchmark::State& state) {
    for (auto _ : state) {
        auto p = courier::topic_pattern::parse("warehouse.*.item.#");
        benchmark::DoNotOptimize(p);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(topic_pattern_parse);

void topic_pattern_match(benchmark::State& state, std::string_view pattern, std::string_view name, bool expected) {
    const auto parsed = courier::topic_pattern::parse(pattern);
    require(parsed.has_value(), "a valid pattern did not parse");
    const courier::topic_pattern p = *parsed;
    require(p.matches(name) == expected, "a pattern matched wrongly");
    for (auto _ : state) {
        benchmark::DoNotOptimize(name);  // keeps the compiler from folding the match
        bool m = p.matches(name);
        benchmark::DoNotOptimize(m);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(topic_pattern_match, exact, "order.created.v1", short_name, true);
BENCHMARK_CAPTURE(topic_pattern_match, star_hit, "order.*.v1", short_name, true);
BENCHMARK_CAPTURE(topic_pattern_match, star_miss, "order.*.v2", short_name, false);
BENCHMARK_CAPTURE(topic_pattern_match, hash_long, "warehouse.#.v12", long_name, true);
BENCHMARK_CAPTURE(topic_pattern_match, hash_middle_miss, "#.item.#.v1", long_name, false);

void envelope_encode(benchmark::State& state) {
    const courier::envelope e = sample_envelope();
    std::size_t bytes = 0;
    for (auto _ : state) {
        std::string s = courier::encode(e);
        bytes += s.size();
        benchmark::DoNotOptimize(s);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(envelope_encode);

void envelope_encode_reusing_buffer(benchmark::State& state) {
    const courier::envelope e = sample_envelope();
    std::string out;
    std::size_t bytes = 0;
    for (auto _ : state) {
        out.clear();
        courier::encode_to(out, e);
        bytes += out.size();
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(envelope_encode_reusing_buffer);

void envelope_decode(benchmark::State& state) {
    const courier::envelope e = sample_envelope();
    const std::string wire = courier::encode(e);
    auto check = courier::decode(wire);
    require(check.has_value() && *check == e, "decode(encode(e)) != e");
    for (auto _ : state) {
        auto d = courier::decode(wire);
        benchmark::DoNotOptimize(d);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * wire.size()));
}
BENCHMARK(envelope_decode);

/// A typed event's `data` as a bridge carries it: two integers.
struct two_fields {
    std::uint64_t seq = 0;
    std::uint64_t sent_ns = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(two_fields, seq, sent_ns)
};

void typed_data_to_text(benchmark::State& state) {
    // What a forward route pays for `data`: the event's to_json document, then its text.
    std::uint64_t i = 0;
    for (auto _ : state) {
        const nlohmann::json doc = two_fields{++i, 1735689600123456789ull};
        std::string s = doc.dump();
        benchmark::DoNotOptimize(s);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(typed_data_to_text);

void typed_data_from_text(benchmark::State& state) {
    // What an ingest pays for `data` (the bridge's one-pass reader builds the document), then
    // a typed subscriber's get<T>().
    const std::string text = nlohmann::json(two_fields{123456, 1735689600123456789ull}).dump();
    for (auto _ : state) {
        nlohmann::json doc;
        std::size_t pos = 0, depth = 0;
        if (!courier::bridge::detail::canonical_json::parse_prefix(text, pos, doc, depth)) state.SkipWithError("not canonical");
        auto t = doc.get<two_fields>();
        benchmark::DoNotOptimize(t);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(typed_data_from_text);

void typed_data_to_text_by_hand(benchmark::State& state) {
    // The floor for the same text without a document: what a generated writer could do.
    std::uint64_t i = 0;
    std::string s;
    for (auto _ : state) {
        s.assign("{\"sent_ns\":");
        char buf[24];
        s.append(buf, static_cast<std::size_t>(std::to_chars(buf, buf + sizeof buf, 1735689600123456789ull).ptr - buf));
        s.append(",\"seq\":");
        s.append(buf, static_cast<std::size_t>(std::to_chars(buf, buf + sizeof buf, ++i).ptr - buf));
        s.push_back('}');
        benchmark::DoNotOptimize(s.data());
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(typed_data_to_text_by_hand);

/// The same event declared with COURIER_JSON_FIELDS.
struct two_fields_direct {
    std::uint64_t seq = 0;
    std::uint64_t sent_ns = 0;
    COURIER_JSON_FIELDS(two_fields_direct, seq, sent_ns)
};

void typed_data_to_text_json_fields(benchmark::State& state) {
    // What a forward route pays for `data` of a COURIER_JSON_FIELDS event: the writer, no document.
    std::uint64_t i = 0;
    std::string s;
    const std::string reference = nlohmann::json(two_fields{7, 1735689600123456789ull}).dump();
    two_fields_direct::courier_append_json(s, two_fields_direct{7, 1735689600123456789ull});
    require(s == reference, "courier_append_json differs from nlohmann's dump");
    for (auto _ : state) {
        s.clear();
        two_fields_direct::courier_append_json(s, two_fields_direct{++i, 1735689600123456789ull});
        benchmark::DoNotOptimize(s.data());
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(typed_data_to_text_json_fields);

void uuid_v7_make(benchmark::State& state) {
    const auto now = std::chrono::system_clock::now();
    for (auto _ : state) {
        auto id = courier::make_uuid_v7(now);
        benchmark::DoNotOptimize(id);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(uuid_v7_make);

void uuid_v7_make_with_clock(benchmark::State& state) {
    // What a publisher pays per event: reading the clock and making the id.
    for (auto _ : state) {
        auto id = courier::make_uuid_v7(std::chrono::system_clock::now());
        benchmark::DoNotOptimize(id);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(uuid_v7_make_with_clock);

void uuid_to_string(benchmark::State& state) {
    const auto id = courier::make_uuid_v7(std::chrono::system_clock::now());
    for (auto _ : state) {
        auto s = id.to_string();
        benchmark::DoNotOptimize(s);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(uuid_to_string);

}  // namespace

BENCHMARK_MAIN();
