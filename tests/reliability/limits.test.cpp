// Inbound limits: every bound on untrusted bytes (envelope and CloudEvents size, JSON nesting
// depth, header count, name and pattern length) accepts input exactly at the limit and rejects
// input one past it with errc::limit_exceeded and a stable id, for the default limits and for
// configured ones; the bridge's inbound decode (bridge_options::limits) included.
#include <courier/bridge/detail/wire.hpp>
#include <courier/event/cloudevents.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/event/event_name.hpp>
#include <courier/event/topic_pattern.hpp>

#include <catch2/catch.hpp>

#include <functional>
#include <string>

namespace {

using courier::decode_limits;
using courier::envelope;
using courier::errc;

/// An envelope whose `data` nests `levels` arrays (so the text nests 1 + levels deep) and which
/// carries `headers` headers: half of them named so that CloudEvents keeps them as extension
/// attributes, half (capital letters) so that it packs them into `courierheaders`.
envelope sample(std::size_t levels, std::size_t headers) {
    envelope e;
    e.event_type = "order.created.v1";
    e.version = 1;
    e.event_id = courier::uuid::from_u64(0x0189'0a5d'ac96'774b, 0xbcce'b302'099a'8057);
    e.timestamp = courier::time_point(std::chrono::seconds(1'735'689'600));
    e.metadata.producer = "limits-test";
    nlohmann::json data = 42;
    for (std::size_t i = 0; i < levels; ++i) data = nlohmann::json::array({std::move(data)});
    e.data = std::move(data);
    for (std::size_t i = 0; i < headers; ++i)
        e.headers.emplace((i % 2 ? "H" : "h") + std::to_string(i), "value" + std::to_string(i));
    return e;
}

struct codec {
    const char* name;
    const char* id_prefix;  // "courier.envelope" or "courier.cloudevent"
    std::function<std::string(const envelope&)> write;
    std::function<courier::result<envelope>(std::string_view, const decode_limits&)> read;
};

const codec codecs[] = {
    {"envelope", "courier.envelope", [](const envelope& e) { return courier::encode(e); },
     [](std::string_view s, const decode_limits& l) { return courier::decode(s, l); }},
    {"CloudEvents", "courier.cloudevent", [](const envelope& e) { return courier::to_cloudevent(e); },
     [](std::string_view s, const decode_limits& l) { return courier::from_cloudevent(s, l); }},
    // What a broker delivers to a bridge, read as the bridge reads it (the canonical layout by
    // its fast reader, anything else by decode) with bridge_options::limits.
    {"bridge", "courier.envelope", [](const envelope& e) { return courier::encode(e); },
     [](std::string_view s, const decode_limits& l) {
         courier::bridge::wire_message w;
         w.topic = "orders";
         w.payload.assign(s);
         return courier::bridge::detail::from_wire(w, l);
     }},
};

void require_limit_error(const courier::result<envelope>& r, const std::string& id, const std::string& says) {
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::limit_exceeded);
    CHECK(r.error().id() == id);
    CHECK_THAT(r.error().message, Catch::Matchers::Contains(says));
}

}  // namespace

TEST_CASE("decoders accept exactly max_bytes and reject one byte more, before parsing", "[reliability][limits]") {
    for (const auto& c : codecs) {
        DYNAMIC_SECTION(c.name) {
            const std::string text = c.write(sample(2, 2));
            for (const std::size_t limit : {text.size(), text.size() + 100, std::size_t{1} << 20}) {
                decode_limits limits;
                limits.max_bytes = limit;
                std::string at = text;
                at.resize(limit, ' ');  // trailing whitespace is valid JSON: exactly `limit` bytes
                INFO("max_bytes = " << limit);
                CHECK(c.read(at, limits));
                at += ' ';
                require_limit_error(c.read(at, limits), std::string(c.id_prefix) + ".too_large",
                                    std::to_string(limit + 1) + " bytes, more than max_bytes = " + std::to_string(limit));
            }
            // The size check comes first: a megabyte of garbage is not even looked at.
            require_limit_error(c.read(std::string((std::size_t{1} << 20) + 1, '['), {}),
                                std::string(c.id_prefix) + ".too_large", "max_bytes = 1048576");
        }
    }
}

TEST_CASE("decoders accept nesting exactly at max_depth and reject one level more", "[reliability][limits]") {
    for (const auto& c : codecs) {
        DYNAMIC_SECTION(c.name) {
            for (const std::size_t depth : {std::size_t{2}, std::size_t{5}, std::size_t{64}, std::size_t{200}}) {
                decode_limits limits;
                limits.max_depth = depth;
                INFO("max_depth = " << depth);
                // the outer object is depth 1, so data may nest depth - 1 arrays
                CHECK(c.read(c.write(sample(depth - 1, 1)), limits));
                require_limit_error(c.read(c.write(sample(depth, 1)), limits), std::string(c.id_prefix) + ".too_deep",
                                    "max_depth = " + std::to_string(depth));
            }
            // The default is 64; brackets inside strings do not count.
            CHECK(c.read(c.write(sample(63, 0)), {}));
            require_limit_error(c.read(c.write(sample(64, 0)), {}), std::string(c.id_prefix) + ".too_deep", "max_depth = 64");
            auto e = sample(0, 0);
            e.data = std::string(1000, '[');
            CHECK(c.read(c.write(e), {}));
            // A nesting bomb far deeper than any stack is rejected by the scan, not by recursion.
            decode_limits big;
            big.max_bytes = 4'000'000;
            require_limit_error(c.read(std::string(2'000'000, '[') + std::string(2'000'000, ']'), big),
                                std::string(c.id_prefix) + ".too_deep", "max_depth = 64");
        }
    }
}

TEST_CASE("decoders accept exactly max_headers headers and reject one more", "[reliability][limits]") {
    for (const auto& c : codecs) {
        DYNAMIC_SECTION(c.name) {
            for (const std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{64}, std::size_t{500}}) {
                decode_limits limits;
                limits.max_headers = count;
                INFO("max_headers = " << count);
                auto at = c.read(c.write(sample(0, count)), limits);
                REQUIRE(at);
                CHECK(at->headers.size() == count);
                auto past = c.read(c.write(sample(0, count + 1)), limits);
                require_limit_error(past, std::string(c.id_prefix) + ".too_many_headers",
                                    "max_headers = " + std::to_string(count));
            }
            CHECK(c.read(c.write(sample(0, 64)), {}));
            require_limit_error(c.read(c.write(sample(0, 65)), {}), std::string(c.id_prefix) + ".too_many_headers",
                                "max_headers = 64");
        }
    }
}

TEST_CASE("CloudEvents counts attribute and packed headers together against max_headers", "[reliability][limits]") {
    // sample(0, 4): h0 and h2 travel as attributes, H1 and H3 inside courierheaders.
    const std::string text = courier::to_cloudevent(sample(0, 4));
    REQUIRE(text.find("\"h0\":") != std::string::npos);
    REQUIRE(text.find("courierheaders") != std::string::npos);
    decode_limits limits;
    limits.max_headers = 4;
    CHECK(courier::from_cloudevent(text, limits));
    limits.max_headers = 3;
    require_limit_error(courier::from_cloudevent(text, limits), "courier.cloudevent.too_many_headers", "max_headers = 3");
    limits.max_headers = 1;  // already past the limit among the attributes
    require_limit_error(courier::from_cloudevent(text, limits), "courier.cloudevent.too_many_headers", "max_headers = 1");
}

TEST_CASE("event names and topic patterns accept 255 characters and reject 256", "[reliability][limits]") {
    // "a.a. ... .v1": 255 characters exactly
    std::string name;
    while (name.size() + 2 + 4 <= 255) name += "a.";
    name += std::string(255 - name.size() - 3, 'b') + ".v1";
    REQUIRE(name.size() == 255);
    CHECK(courier::event_name::parse(name));
    CHECK(courier::topic_pattern::parse(name));
    const std::string longer = "a" + name;
    auto n = courier::event_name::parse(longer);
    REQUIRE_FALSE(n);
    CHECK(n.error() == errc::invalid_name);
    CHECK_THAT(n.error().message, Catch::Matchers::Contains("256 characters long, more than the limit of 255"));
    auto p = courier::topic_pattern::parse("#." + name.substr(1));
    REQUIRE_FALSE(p);
    CHECK(p.error() == errc::invalid_pattern);
    CHECK_THAT(p.error().message, Catch::Matchers::Contains("256 characters long, more than the limit of 255"));
    // An envelope carrying a name past the limit is malformed, with the reason.
    auto e = sample(0, 0);
    e.event_type = longer;
    auto d = courier::decode(courier::encode(e));
    REQUIRE_FALSE(d);
    CHECK(d.error().id() == "courier.envelope.bad_event_type");
}

TEST_CASE("limit errors echo a bounded, printable prefix of hostile input", "[reliability][limits]") {
    const std::string hostile = std::string("order.\x1b[31mred\n.v1") + std::string(5000, 'x');
    auto n = courier::event_name::parse(hostile);
    REQUIRE_FALSE(n);
    CHECK(n.error().message.size() < 400);
    for (unsigned char ch : n.error().message) CHECK((ch >= 0x20 && ch < 0x7f));
}
