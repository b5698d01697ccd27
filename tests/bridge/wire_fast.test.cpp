// The bridge's per-message fast paths against the general code they stand in for: encoding
// straight from the bus's message gives the bytes encode(to_envelope()) gives; the canonical
// envelope reader gives what decode gives (or steps aside), and its one-pass data parser the
// document nlohmann's parser gives (or steps aside); the in-flight window and the UUID
// map behave as the map and set they replaced, including out-of-order erases and collisions.
#include "bridge/conformance.hpp"
#include "wait.hpp"

#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/detail/canonical_json.hpp>
#include <courier/bridge/detail/dedup_window.hpp>
#include <courier/bridge/detail/outbound.hpp>
#include <courier/bridge/detail/wire.hpp>
#include <courier/runtime/runtime.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace br = courier::bridge;
using conformance::item;

namespace {

struct pong_event {
    static constexpr courier::event_name event_type{"conformance.item.answered.v2"};
    std::string text;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(pong_event, text)
};

// Declared with COURIER_JSON_FIELDS: the bridge writes its data without a document.
struct shipped_event {
    static constexpr courier::event_name event_type{"conformance.item.shipped.v1"};
    std::uint64_t seq = 0;
    std::int64_t delta = -3;
    bool tracked = true;
    double weight = 0.25;
    std::string carrier;
    std::vector<std::string> parcels;
    COURIER_JSON_FIELDS(shipped_event, seq, delta, tracked, weight, carrier, parcels)
};

// Short data: an ingested envelope keeps its text in the message itself.
struct tick_event {
    static constexpr courier::event_name event_type{"conformance.item.ticked.v1"};
    std::uint64_t n = 0;
    std::string label;
    COURIER_JSON_FIELDS(tick_event, n, label)
};

// Every message the bus delivers to a pattern subscriber: the fast encoding and the reference.
struct encodings {
    std::vector<std::string> fast, reference;
    std::vector<std::string> keys, reference_keys;
    std::vector<std::string> types;
    std::vector<std::uint64_t> documents;  // data documents the fast encoding built
    // One wire message lent every item in turn, as the bridge lends its own: what it keeps
    // from the item before (header names, an unchanged topic or type) must never show.
    br::wire_message reused;
};

void capture(encodings& out, const courier::message_context& ctx) {
    br::detail::outbound_item o;
    const auto before = courier::detail::json_encode_counter().load();
    br::detail::encode_outbound(o, ctx);
    out.documents.push_back(courier::detail::json_encode_counter().load() - before);
    const auto env = ctx.to_envelope();
    const auto w = br::detail::to_wire(env, env.event_type);
    out.fast.push_back(o.payload);
    out.reference.push_back(w.payload);
    out.keys.push_back(o.key);
    out.reference_keys.push_back(w.key);
    out.types.push_back(std::string(o.event_type()));
    CHECK(o.event_id == env.event_id);
    br::wire_message lent;
    br::detail::lend_wire(lent, o);
    CHECK(lent.payload == w.payload);
    CHECK(lent.event_id == w.event_id);
    CHECK(lent.event_type == w.event_type);
    CHECK(lent.key == w.key);
    CHECK(lent.headers == w.headers);
    br::detail::release_wire(lent, o);
    CHECK(o.payload == w.payload);
    br::detail::lend_wire(out.reused, o);
    CHECK(out.reused.payload == w.payload);
    CHECK(out.reused.topic == w.topic);
    CHECK(out.reused.event_id == w.event_id);
    CHECK(out.reused.event_type == w.event_type);
    CHECK(out.reused.key == w.key);
    CHECK(out.reused.headers == w.headers);
    br::detail::release_wire(out.reused, o);
    const auto copy = br::detail::as_wire(o);
    CHECK(copy.payload == w.payload);
    CHECK(copy.headers == w.headers);
}

}  // namespace

TEST_CASE("encoding from the bus's message gives the bytes encode(to_envelope()) gives", "[bridge][wire]") {
    courier::runtime rt(courier::runtime_options{.threads = 1});
    encodings seen;
    courier::subscription_options inl;
    inl.mode = courier::delivery_mode::inline_call;
    auto all = rt.bus().try_subscribe("conformance.#", [&](const courier::message_context& ctx) { capture(seen, ctx); }, inl);
    REQUIRE(all);
    // A handler that publishes: the answer carries trace, correlation and causation.
    auto answer = rt.bus().subscribe<item>(
        [&](const item& i) {
            if (i.n == 2) rt.bus().publish(pong_event{"answer to 2 \"quoted\" \xc3\xa9"});
        },
        inl);

    rt.bus().publish(item{1, "", "plain"});
    courier::publish_options keyed;
    keyed.key = "k-1";
    keyed.trace_id = "trace-1";
    keyed.correlation_id = "corr-1";
    rt.bus().publish(item{2, "k-1", "keyed, traced"}, keyed);
    courier::publish_options headers;
    headers.headers = {{"tenant", "acme"}, {"courier-key", "from-header"}, {"z-last", "line\nbreak"}};
    rt.bus().publish(item{3, "", "headers"}, headers);
    courier::publish_options both;
    both.key = "k-4";
    both.headers = {{"a-first", "1"}, {"courier-key", "overridden"}};
    rt.bus().publish(item{4, "k-4", "key over header"}, both);
    courier::publish_options reply;
    reply.reply_to = *courier::reply_address::parse("_INBOX.7.9");
    rt.bus().publish(item{5, "", "request"}, reply);
    auto env = conformance::make_item(6, "k-6", courier::system_clock::instance().now());
    env.metadata.producer = "producer \xe2\x9c\x93";
    env.headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    REQUIRE(rt.bus().publish(env));
    // Typed data written by COURIER_JSON_FIELDS: the same bytes, without a document.
    rt.bus().publish(shipped_event{18446744073709551615ull, -9, false, 1.5, "post \"fast\" \xc3\xa9", {"p-1", "p\n2"}});
    rt.bus().publish(shipped_event{7, 0, true, 0, "", {}}, keyed);

    REQUIRE(seen.fast.size() == 9);
    for (std::size_t i = 0; i < seen.fast.size(); ++i) {
        INFO("message " << i << ": " << seen.reference[i]);
        CHECK(seen.fast[i] == seen.reference[i]);
        CHECK(seen.keys[i] == seen.reference_keys[i]);
    }
    CHECK(seen.documents[0] == 1);  // item: nlohmann's macro, so its data goes through a document
    CHECK(seen.documents[6] == 0);  // an envelope's data is JSON already
    CHECK(seen.documents[7] == 0);  // COURIER_JSON_FIELDS: written directly
    CHECK(seen.documents[8] == 0);
    CHECK(seen.types[7] == "conformance.item.shipped.v1");
    auto has = [](const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); };
    CHECK(has(seen.types, "conformance.item.answered.v2"));
    CHECK(has(seen.keys, "from-header"));  // the envelope's courier-key header, as to_wire reads it
    CHECK(has(seen.keys, "k-4"));          // the key over a courier-key header
    CHECK(has(seen.keys, "k-6"));
}

// Same document, node for node, and the same number types (unsigned, signed) as the library's.
static bool same_document(const nlohmann::json& a, const nlohmann::json& b) {
    if (a.type() != b.type()) return false;
    if (a.is_object()) {
        if (a.size() != b.size()) return false;
        for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib)
            if (ia.key() != ib.key() || !same_document(*ia, *ib)) return false;
        return true;
    }
    if (a.is_array()) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (!same_document(a[i], b[i])) return false;
        return true;
    }
    return a == b;
}

TEST_CASE("the one-pass data parser builds the document nlohmann's parser builds, or steps aside", "[bridge][wire]") {
    // The check without a document says yes exactly where the parser does, and ends where it ends.
    auto checks_as_parser = [](const std::string& text) {
        INFO(text);
        nlohmann::json doc;
        std::size_t parsed_at = 0, parsed_depth = 0, checked_at = 0, checked_depth = 0;
        const bool parsed = br::detail::canonical_json::parse_prefix(text, parsed_at, doc, parsed_depth);
        CHECK(br::detail::canonical_json::check_prefix(text, checked_at, checked_depth) == parsed);
        CHECK(checked_at == parsed_at);
        CHECK(checked_depth == (parsed ? parsed_depth : 0));
        return parsed && parsed_at == text.size();
    };
    auto parses_as_library = [&](const std::string& text) {
        INFO(text);
        nlohmann::json fast;
        REQUIRE(br::detail::canonical_json::parse(text, fast));
        CHECK(same_document(fast, nlohmann::json::parse(text)));
        CHECK(checks_as_parser(text));
    };
    const std::vector<std::string> accepted = {
        R"({"seq":1,"sent_ns":1732971234567890123})",
        R"({})",
        R"([])",
        R"({"a":{"b":[1,-2,{"c":"d"},[],{}]},"e":[true,false,null]})",
        R"({"n":0,"m":-0,"big":9999999999999999999,"neg":-999999999999999999})",
        R"([-9223372036854775808,9223372036854775807,1234567890123456789])",  // the int64 range, 19 digits
        "{\"text\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",  // UTF-8, kept as is
        R"({"dup":1,"dup":"second"})",                                  // the last one wins
        R"("just a string")",
        R"(42)",
        R"(null)",
    };
    for (const auto& text : accepted) parses_as_library(text);
    // A round trip of what dump() writes for typical event data is read in one pass.
    nlohmann::json typical = {{"order_id", "o-17"}, {"lines", {{{"sku", "A-1"}, {"qty", 2}}}}, {"paid", true}, {"id", 77u}};
    parses_as_library(typical.dump());

    // Valid JSON in another form: refused here, so the caller hands it to the library.
    std::string deep(65, '[');
    deep += std::string(65, ']');
    const std::vector<std::string> library_only = {
        R"({"price":12.5})", R"({"e":1e3})", R"({"E":2E-1})", R"({"s":"a\"b"})", R"({"u":"\u00e9"})",
        R"({"max":18446744073709551615})", R"({"below":-9223372036854775809})", R"({"huge":123456789012345678901})", R"({ "a":1})", R"({"a": 1})", R"([1, 2])",
        deep,
    };
    for (const auto& text : library_only) {
        INFO(text);
        nlohmann::json fast;
        CHECK_FALSE(br::detail::canonical_json::parse(text, fast));
        CHECK_NOTHROW(nlohmann::json::parse(text));
        (void)checks_as_parser(text);
    }
    // Not JSON: refused here and by the library.
    const std::vector<std::string> invalid = {
        "", "{", "}", "[1,]", "{\"a\":}", "{\"a\"1}", "{a:1}", "01", "-", "--1", "tru", "nul", "[1]x", "{\"a\":1}}",
        "\"unterminated", "\"\xff\xfe\"", "\"ctl\x01\"", "{\"a\":1,}",
    };
    for (const auto& text : invalid) {
        INFO(text);
        nlohmann::json fast;
        CHECK_FALSE(br::detail::canonical_json::parse(text, fast));
        CHECK_THROWS(nlohmann::json::parse(text));
        CHECK_FALSE(checks_as_parser(text));
    }
}

TEST_CASE("the plain-string reader, sixteen or eight bytes at a time, finds what a byte-by-byte scan finds", "[bridge][wire]") {
    // The reference: a quote ends the string; a backslash or a control character refuses it;
    // high bytes must make valid UTF-8.
    auto reference = [](std::string_view t, std::size_t i, std::string_view& out, std::size_t& end) {
        if (i >= t.size() || t[i] != '"') return false;
        const std::size_t start = ++i;
        for (; i < t.size(); ++i) {
            const auto c = static_cast<unsigned char>(t[i]);
            if (c == '"') break;
            if (c == '\\' || c < 0x20) return false;
        }
        if (i == t.size()) return false;
        out = t.substr(start, i - start);
        end = i + 1;
        return br::detail::valid_utf8(out);
    };
    // Every special byte at every offset of strings of 0..56 plain bytes (several 16-byte
    // steps, then the 8-byte ones, then single bytes), with text after.
    const std::string specials[] = {"\"", "\\", std::string(1, '\0'), "\x1f", "\x7f", "\xc3\xa9", "\xff", "\x80", " ", "~"};
    int checked = 0;
    for (std::size_t len = 0; len <= 56; ++len) {
        for (std::size_t at = 0; at <= len; ++at) {
            for (const auto& sp : specials) {
                std::string body(len, 'a');
                for (std::size_t k = 0; k < len; ++k) body[k] = static_cast<char>('a' + (k % 26));
                body.insert(at, sp);
                for (const std::string& tail : {std::string("\",\"x\":1}"), std::string(), std::string("\"")}) {
                    const std::string text = "\"" + body + tail;
                    std::string_view want, got;
                    std::size_t want_end = 0, got_i = 0;
                    const bool expected = reference(text, 0, want, want_end);
                    const bool actual = br::detail::read_plain_json_string(text, got_i, got);
                    INFO("text " << text);
                    REQUIRE(actual == expected);
                    if (expected) {
                        CHECK(got == want);
                        CHECK(got_i == want_end);
                    }
                    ++checked;
                }
            }
        }
    }
    CHECK(checked > 25'000);
}

TEST_CASE("an envelope message frees flat and nested data alike", "[bridge][wire]") {
    auto flat = nlohmann::json::parse(R"({"a":1,"b":"two","c":null,"d":2.5})");
    courier::detail::envelope_message::clear_flat(flat);
    CHECK(flat == nlohmann::json::object());
    auto items = nlohmann::json::parse(R"([1,"x",true])");
    courier::detail::envelope_message::clear_flat(items);
    CHECK(items == nlohmann::json::array());
    // A container inside: left whole (nlohmann's destructor unnests it without recursing).
    const auto nested_text = R"({"a":1,"b":{"c":[1,2]}})";
    auto nested = nlohmann::json::parse(nested_text);
    courier::detail::envelope_message::clear_flat(nested);
    CHECK(nested == nlohmann::json::parse(nested_text));
    auto scalar = nlohmann::json(7);
    courier::detail::envelope_message::clear_flat(scalar);
    CHECK(scalar == 7);
}

TEST_CASE("the canonical envelope reader gives what decode gives, and steps aside for anything else", "[bridge][wire]") {
    const courier::decode_limits limits{};
    auto same = [&](const std::string& text) {
        INFO(text);
        auto fast = br::detail::decode_envelope(text, limits);
        auto slow = courier::decode(text, limits);
        REQUIRE(fast.has_value() == slow.has_value());
        if (fast) CHECK(*fast == *slow);
        else CHECK(fast.error().message == slow.error().message);
        // Keeping the data as text: the same verdict, and the text parses to the same data.
        std::string_view data_text = "left from an earlier message";
        auto kept = br::detail::decode_envelope(text, limits, &data_text);
        REQUIRE(kept.has_value() == slow.has_value());
        if (!kept) {
            CHECK(kept.error().message == slow.error().message);
            return;
        }
        if (!data_text.empty()) {
            CHECK(kept->data.is_null());
            kept->data = br::detail::parse_data_text(data_text);
        }
        CHECK(*kept == *slow);
    };
    auto env = conformance::make_item(7, "k-7", courier::system_clock::instance().now());
    env.metadata = {"svc", "trace", "corr", "0190a0e4-8a34-7cc1-9c7e-3b9d1a0e2f11"};
    env.headers["tenant"] = "acme";
    const std::string canonical = courier::encode(env);
    auto direct = br::detail::canonical_reader::read(canonical, limits);
    REQUIRE(direct);  // the layout encode writes is read without the document parser
    CHECK(*direct == env);
    same(canonical);
    std::string_view data_text;
    courier::envelope kept;
    REQUIRE(br::detail::canonical_reader::read_into(canonical, limits, kept, &data_text));
    CHECK(data_text == env.data.dump());  // kept as it came, checked but not parsed
    CHECK(kept.data.is_null());

    auto bare = conformance::make_item(8, "", courier::system_clock::instance().now());
    REQUIRE(br::detail::canonical_reader::read(courier::encode(bare), limits));
    same(courier::encode(bare));

    auto replace = [&](std::string text, const std::string& from, const std::string& to) {
        auto at = text.find(from);
        REQUIRE(at != std::string::npos);
        return text.replace(at, from.size(), to);
    };
    // Not the canonical layout: decode reads them (the same envelope or the same error).
    const std::vector<std::string> others = {
        replace(canonical, "\"tenant\":\"acme\"", "\"tenant\":\"ac\\u006de\""),          // an escape
        replace(canonical, "{\"event_type\"", "{ \"event_type\""),                      // white space
        replace(canonical, "\"version\":1", "\"version\":2"),                           // wrong version
        replace(canonical, "\"version\":1", "\"version\":1.0"),                         // not an integer
        replace(canonical, "\"version\":1", "\"version\":01"),                          // not JSON
        replace(canonical, "conformance.item.sent.v1", "Conformance.item.sent.v1"),     // a bad name
        replace(canonical, env.event_id.to_string(), "00000000-0000-0000-0000-000000000000"),  // nil id
        replace(canonical, env.event_id.to_string(), "not-a-uuid"),
        replace(canonical, "Z\",\"version\"", "\",\"version\""),                        // a bad timestamp
        replace(canonical, "\"tenant\":\"acme\"", "\"tenant\":\"acme\",\"tenant\":\"again\""),  // repeated header
        replace(canonical, "\"tenant\":\"acme\"", "\"tenant\":7"),                       // a header that is no string
        replace(canonical, "\"producer\":\"svc\"", "\"producer\":null"),
        replace(canonical, "\"producer\":\"svc\"", "\"producer\":\"\xff\xfe\""),          // not UTF-8
        replace(canonical, "\"data\":{", "\"data\":{\"nested\":{\"a\":[1,{\"b\":\"}\"}]},"),  // braces in data strings
        replace(canonical, "\"data\":{", "\"data\":{,"),                                // data that is no JSON
        canonical + " ",
        canonical + "x",
        canonical.substr(0, canonical.size() - 1),
        "{\"event_id\":\"" + env.event_id.to_string() + "\"}",
        "",
        "[]",
    };
    for (const auto& text : others) same(text);

    courier::decode_limits tight;
    tight.max_headers = 1;
    env.headers["second"] = "2";
    const std::string two = courier::encode(env);
    CHECK_FALSE(br::detail::canonical_reader::read(two, tight));
    auto fast = br::detail::decode_envelope(two, tight);
    REQUIRE_FALSE(fast);
    CHECK(fast.error().message == courier::decode(two, tight).error().message);
    tight = {};
    tight.max_bytes = two.size() - 1;
    CHECK(br::detail::decode_envelope(two, tight).error().message == courier::decode(two, tight).error().message);
    tight = {};
    tight.max_depth = 1;
    CHECK(br::detail::decode_envelope(two, tight).error().message == courier::decode(two, tight).error().message);
}

TEST_CASE("the in-flight window finds, erases out of order and grows like the map it replaced", "[bridge][wire]") {
    br::detail::in_flight_window w;
    std::map<std::uint64_t, std::string> reference;
    std::mt19937_64 rng(42);
    for (int round = 0; round < 4000; ++round) {
        const bool add = reference.size() < 50 || rng() % 3 != 0;
        if (add) {
            br::detail::outbound_item o;
            o.payload = "p" + std::to_string(round);
            const auto seq = w.add(std::move(o));
            CHECK(reference.count(seq) == 0);
            reference[seq] = "p" + std::to_string(round);
        } else {
            // Erase a random live one (confirms come out of order) or, sometimes, the oldest.
            auto it = reference.begin();
            if (rng() % 4 != 0) std::advance(it, static_cast<long>(rng() % reference.size()));
            REQUIRE(w.find(it->first) != nullptr);
            w.erase(it->first);
            CHECK(w.find(it->first) == nullptr);
            reference.erase(it);
        }
        REQUIRE(w.size() == reference.size());
    }
    std::vector<std::uint64_t> order;
    w.for_each([&](std::uint64_t seq, br::detail::in_flight_window::item& it) {
        order.push_back(seq);
        CHECK(it.msg.payload == reference.at(seq));
    });
    std::vector<std::uint64_t> expected;
    for (auto& [seq, p] : reference) expected.push_back(seq);
    CHECK(order == expected);
    CHECK(w.find(w.next_sequence()) == nullptr);
    CHECK(w.find(0) == nullptr);
    w.clear();
    CHECK(w.empty());
    CHECK(w.find(expected.back()) == nullptr);
}

TEST_CASE("the UUID map keeps every key through collisions, growth and backward-shift erases", "[bridge][wire]") {
    br::detail::uuid_map<int> m;
    std::unordered_map<courier::uuid, int> reference;
    std::mt19937_64 rng(7);
    std::vector<courier::uuid> keys;
    // Few distinct keys and many operations: probe runs wrap and shift often.
    for (int i = 0; i < 300; ++i) keys.push_back(courier::uuid::from_u64(rng() | 1, rng()));
    m.prefetch(keys[0]);  // a hint: on an empty map it touches nothing
    for (int op = 0; op < 20000; ++op) {
        const auto& k = keys[rng() % keys.size()];
        m.prefetch(k);  // and never changes what the map holds
        switch (rng() % 3) {
        case 0: {
            auto [v, inserted] = m.try_emplace(k);
            CHECK(inserted == (reference.count(k) == 0));
            if (inserted) *v = op;
            reference.try_emplace(k, op);
            break;
        }
        case 1: CHECK(m.erase(k) == (reference.erase(k) == 1)); break;
        default: {
            auto* v = m.find(k);
            auto it = reference.find(k);
            REQUIRE((v != nullptr) == (it != reference.end()));
            if (v) CHECK(*v == it->second);
        }
        }
        REQUIRE(m.size() == reference.size());
    }
    for (auto& [k, v] : reference) {
        REQUIRE(m.find(k) != nullptr);
        CHECK(*m.find(k) == v);
    }
}

TEST_CASE("an ingested event's data stays text until a reader needs its document", "[bridge][wire]") {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    auto publish_text = [&](const std::string& data_text) {
        courier::envelope env;
        env.event_type = std::string(shipped_event::event_type.str());
        env.event_id = courier::make_uuid_v7(courier::system_clock::instance().now());
        env.version = 1;
        return courier::detail::envelope_text_publisher::publish(rt.bus(), std::move(env), data_text,
                                                                 &br::detail::parse_data_text, {});
    };
    const std::string text = R"({"carrier":"ups","delta":-4,"parcels":["p-1"],"seq":9,"tracked":false,"weight":0.5})";
    courier::subscription_options inl;
    inl.mode = courier::delivery_mode::inline_call;

    SECTION("a typed subscriber reads the event from the text; no document is made") {
        std::vector<shipped_event> got;
        bool document_made = true;
        auto sub = rt.bus().subscribe<shipped_event>(
            [&](const shipped_event& e, const courier::message_context& ctx) {
                got.push_back(e);
                CHECK(ctx.message().data_text() == text);
                document_made = !static_cast<const courier::detail::envelope_message&>(ctx.message()).env.data.is_null();
            },
            inl);
        REQUIRE(publish_text(text));
        REQUIRE(got.size() == 1);
        CHECK(got[0].seq == 9);
        CHECK(got[0].delta == -4);
        CHECK_FALSE(got[0].tracked);
        CHECK(got[0].weight == 0.5);  // a field the reader hands to nlohmann
        CHECK(got[0].carrier == "ups");
        CHECK(got[0].parcels == std::vector<std::string>{"p-1"});
        CHECK_FALSE(document_made);
    }
    SECTION("short data is kept in the message, long data beside it: both read alike") {
        std::vector<tick_event> got;
        std::vector<nlohmann::json> documents;
        auto typed = rt.bus().subscribe<tick_event>([&](const tick_event& e) { got.push_back(e); }, inl);
        auto all = rt.bus().subscribe("conformance.item.ticked.v1",
                                      [&](const courier::message_context& ctx) { documents.push_back(ctx.data()); }, inl);
        for (const std::size_t length : {0, 45, 46, 47, 200}) {  // {"label":"","n":7} is 18 bytes: 64 (kept inline) at 46
            courier::envelope env;
            env.event_type = std::string(tick_event::event_type.str());
            env.event_id = courier::make_uuid_v7(courier::system_clock::instance().now());
            env.version = 1;
            const std::string data = R"({"label":")" + std::string(length, 'x') + R"(","n":7})";
            REQUIRE(courier::detail::envelope_text_publisher::publish(rt.bus(), std::move(env), data,
                                                                      &br::detail::parse_data_text, {}));
            REQUIRE(got.size() == documents.size());
            CHECK(got.back().label == std::string(length, 'x'));
            CHECK(got.back().n == 7);
            CHECK(documents.back() == nlohmann::json::parse(data));
        }
    }
    SECTION("text the reader leaves to nlohmann, and text that does not convert, as from a document") {
        std::vector<shipped_event> got;
        auto sub = rt.bus().subscribe<shipped_event>([&](const shipped_event& e) { got.push_back(e); }, inl);
        REQUIRE(publish_text(R"({"carrier":"caf\u00e9","delta":1,"parcels":[],"seq":1,"tracked":true,"weight":1})"));
        REQUIRE(got.size() == 1);
        CHECK(got[0].carrier == "caf\xc3\xa9");
        // No `seq`: the subscriber's decode error, dead-lettered as for any envelope.
        const auto before = rt.bus().dead_letters().size();
        REQUIRE(publish_text(R"({"carrier":"x","delta":1,"parcels":[],"tracked":true,"weight":1})"));
        CHECK(got.size() == 1);
        REQUIRE(rt.bus().dead_letters().size() == before + 1);
        const auto dl = rt.bus().dead_letters().list().back();
        REQUIRE_FALSE(dl.errors.empty());
        CHECK(dl.errors.back().error.find("seq") != std::string::npos);
        CHECK(dl.message.data == nlohmann::json::parse(R"({"carrier":"x","delta":1,"parcels":[],"tracked":true,"weight":1})"));
    }
    SECTION("readers that need the document get it, made once, on whichever thread asks first") {
        // Checked on this thread afterwards: Catch2's assertions are not thread-safe.
        const nlohmann::json want = nlohmann::json::parse(text);
        std::mutex mutex;
        std::vector<const nlohmann::json*> seen;
        std::atomic<int> done{0}, wrong{0};
        std::vector<courier::subscription> subs;
        for (int i = 0; i < 4; ++i) {  // queued: on the runtime's two workers, concurrently
            subs.push_back(rt.bus().subscribe("conformance.item.#", [&](const courier::message_context& ctx) {
                const auto& data = ctx.data();
                if (data != want) wrong.fetch_add(1);
                {
                    std::lock_guard lock(mutex);
                    seen.push_back(&data);
                }
                done.fetch_add(1);
            }));
        }
        for (int round = 0; round < 50; ++round) REQUIRE(publish_text(text));
        REQUIRE(courier_test::wait_until([&] { return done.load() == 4 * 50; }));
        CHECK(wrong.load() == 0);
        CHECK(seen.size() == 200);
    }
}
