// Tests for courier/event/cloudevents.hpp: the envelope <-> CloudEvents 1.0 structured JSON
// mapping (attributes, extensions, the header rules), the round trip, and every error by id.
#include <courier/event/cloudevents.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <random>
#include <string>

#include "event/test_support.hpp"

using courier::envelope;
using courier::from_cloudevent;
using courier::to_cloudevent;
using nlohmann::json;

using courier_test::check_error;

namespace {

envelope sample() {
    envelope e;
    e.event_type = "order.created.v2";
    e.event_id = *courier::uuid::parse("0194228e-b57b-7000-8000-000000000001");
    e.timestamp = courier::time_point(std::chrono::microseconds(1'735'689'600'123'456LL));
    e.version = 2;
    e.data = json{{"order_id", "o-1"}};
    e.metadata = {"https://shop.example/orders", "trace-1", "corr-1", "cause-1"};
    e.headers = {{"tenant", "acme"}, {"subject", "o-1"}, {"X-Request-Id", "r-9"}, {"id", "clash"}, {"empty", ""}};
    return e;
}

const std::string sample_text =
    R"({"specversion":"1.0","id":"0194228e-b57b-7000-8000-000000000001","source":"https://shop.example/orders",)"
    R"("type":"order.created.v2","time":"2025-01-01T00:00:00.123456Z","datacontenttype":"application/json",)"
    R"("data":{"order_id":"o-1"},"traceid":"trace-1","correlationid":"corr-1","causationid":"cause-1",)"
    R"("subject":"o-1","tenant":"acme",)"
    R"("courierheaders":"{\"X-Request-Id\":\"r-9\",\"empty\":\"\",\"id\":\"clash\"}"})";

template <class Edit>
std::string edited_sample(Edit edit) {
    json j = json::parse(sample_text);
    edit(j);
    return j.dump();
}

}  // namespace

TEST_CASE("to_cloudevent maps the envelope onto CloudEvents attributes and extensions", "[event][cloudevents]") {
    CHECK(to_cloudevent(sample()) == sample_text);

    SECTION("an empty producer becomes the configured default source") {
        auto e = sample();
        e.metadata.producer.clear();
        CHECK(json::parse(to_cloudevent(e))["source"] == "courier://unknown");
        courier::cloudevent_options options;
        options.default_source = "/billing";
        CHECK(json::parse(to_cloudevent(e, options))["source"] == "/billing");
    }
    SECTION("empty metadata fields and no odd headers add no attributes") {
        auto e = sample();
        e.metadata = {"svc", "", "", ""};
        e.headers = {{"tenant", "acme"}};
        const json j = json::parse(to_cloudevent(e));
        CHECK(j.size() == 8);  // specversion id source type time datacontenttype data tenant
        CHECK_FALSE(j.contains("traceid"));
        CHECK_FALSE(j.contains("courierheaders"));
        CHECK(j["tenant"] == "acme");
    }
    SECTION("long or reserved header names are packed") {
        auto e = sample();
        e.headers = {{"averyveryverylongname", "x"}, {"type", "y"}, {"traceid", "z"}, {"ok20charsexactly1234", "w"}};
        const json j = json::parse(to_cloudevent(e));
        CHECK(j["ok20charsexactly1234"] == "w");
        CHECK(json::parse(j["courierheaders"].get<std::string>()) ==
              json{{"averyveryverylongname", "x"}, {"type", "y"}, {"traceid", "z"}});
        CHECK(j["type"] == "order.created.v2");
        CHECK(j["traceid"] == "trace-1");
    }
}

TEST_CASE("from_cloudevent reads courier's CloudEvents back", "[event][cloudevents]") {
    auto r = from_cloudevent(sample_text);
    REQUIRE(r);
    CHECK(*r == sample());
}

TEST_CASE("to_cloudevent then from_cloudevent round-trips varied envelopes", "[event][cloudevents]") {
    std::mt19937_64 rng(77);
    for (int i = 0; i < 2000; ++i) {
        envelope e = courier_test::random_envelope(rng);
        if (e.metadata.producer.empty()) e.metadata.producer = "svc";  // source is required
        const auto text = to_cloudevent(e);
        INFO(text);
        auto back = from_cloudevent(text);
        REQUIRE(back);
        REQUIRE(*back == e);
    }
}

TEST_CASE("from_cloudevent accepts CloudEvents from other producers", "[event][cloudevents]") {
    const std::string foreign = R"({
        "specversion": "1.0", "type": "com.example.thing.v1", "source": "/things",
        "id": "0194228E-B57B-7000-8000-0000000000AA", "time": "2025-01-01T02:00:00+02:00",
        "datacontenttype": "application/cloudevents+json; charset=utf-8",
        "dataschema": "https://example.com/schema", "count": 3, "flag": true, "gone": null,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    })";
    auto r = from_cloudevent(foreign);
    REQUIRE(r);
    CHECK(r->event_type == "com.example.thing.v1");
    CHECK(r->version == 1);
    CHECK(r->metadata.producer == "/things");
    CHECK(r->event_id.to_string() == "0194228e-b57b-7000-8000-0000000000aa");
    CHECK(r->timestamp == courier::time_point(std::chrono::seconds(1'735'689'600)));
    CHECK(r->data.is_null());
    CHECK(r->headers == std::map<std::string, std::string>{{"count", "3"},
                                                           {"dataschema", "https://example.com/schema"},
                                                           {"flag", "true"},
                                                           {"traceparent",
                                                            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}});
    for (const char* type : {"application/json", "text/json", "APPLICATION/JSON ; charset=utf-8", "application/x+json"}) {
        INFO(type);
        CHECK(from_cloudevent(edited_sample([&](json& j) { j["datacontenttype"] = type; })));
    }
    CHECK(from_cloudevent(edited_sample([](json& j) { j.erase("datacontenttype"); })));
}

TEST_CASE("from_cloudevent rejects what courier cannot represent, by id", "[event][cloudevents]") {
    using courier::errc;
    const auto malformed = errc::malformed_envelope;
    check_error(from_cloudevent("{"), malformed, "courier.cloudevent.bad_json", "not valid JSON");
    check_error(from_cloudevent("\"1.0\""), malformed, "courier.cloudevent.not_an_object", "found string");
    for (const char* attr : {"specversion", "id", "source", "type", "time"}) {
        INFO(attr);
        check_error(from_cloudevent(edited_sample([&](json& j) { j.erase(attr); })), malformed,
                    "courier.cloudevent.missing_field", "missing required attribute '" + std::string(attr) + "'");
        check_error(from_cloudevent(edited_sample([&](json& j) { j[attr] = nullptr; })), malformed,
                    "courier.cloudevent.missing_field");
        check_error(from_cloudevent(edited_sample([&](json& j) { j[attr] = 5; })), malformed, "courier.cloudevent.wrong_type",
                    "attribute '" + std::string(attr) + "' must be");
    }
    check_error(from_cloudevent(edited_sample([](json& j) { j.erase("time"); })), malformed,
                "courier.cloudevent.missing_field", "required by courier");
    check_error(from_cloudevent(edited_sample([](json& j) { j["specversion"] = "0.3"; })), malformed,
                "courier.cloudevent.bad_specversion", "'0.3' is not supported");
    check_error(from_cloudevent(edited_sample([](json& j) { j["id"] = "A234-21-1234"; })), malformed, "courier.cloudevent.bad_id",
                "must be a UUID");
    check_error(from_cloudevent(edited_sample([](json& j) { j["id"] = "00000000-0000-0000-0000-000000000000"; })), malformed,
                "courier.cloudevent.bad_id", "nil UUID");
    check_error(from_cloudevent(edited_sample([](json& j) { j["source"] = ""; })), malformed, "courier.cloudevent.bad_source");
    check_error(from_cloudevent(edited_sample([](json& j) { j["type"] = "com.github.pull_request.opened"; })), malformed,
                "courier.cloudevent.bad_type", "must be the version");
    check_error(from_cloudevent(edited_sample([](json& j) { j["time"] = "2025-01-01"; })), malformed,
                "courier.cloudevent.bad_time", "expected 'T'");
    check_error(from_cloudevent(edited_sample([](json& j) { j["datacontenttype"] = "text/plain"; })), malformed,
                "courier.cloudevent.unsupported_content_type", "'text/plain' is not JSON");
    check_error(from_cloudevent(edited_sample([](json& j) { j["datacontenttype"] = 1; })), malformed,
                "courier.cloudevent.wrong_type");
    check_error(from_cloudevent(edited_sample([](json& j) {
                    j.erase("data");
                    j["data_base64"] = "AAEC";
                })),
                malformed, "courier.cloudevent.unsupported_content_type", "data_base64");
    check_error(from_cloudevent(edited_sample([](json& j) { j["traceid"] = 1; })), malformed, "courier.cloudevent.wrong_type",
                "attribute 'traceid' must be a string");
    check_error(from_cloudevent(edited_sample([](json& j) { j["tenant"] = json::object(); })), malformed,
                "courier.cloudevent.wrong_type", "attribute 'tenant' must be a string, number or boolean");
    check_error(from_cloudevent(edited_sample([](json& j) { j["courierheaders"] = 1; })), malformed,
                "courier.cloudevent.wrong_type", "'courierheaders'");
    check_error(from_cloudevent(edited_sample([](json& j) { j["courierheaders"] = "not json"; })), malformed,
                "courier.cloudevent.bad_extension", "JSON object of strings");
    check_error(from_cloudevent(edited_sample([](json& j) { j["courierheaders"] = "[1]"; })), malformed,
                "courier.cloudevent.bad_extension");
    check_error(from_cloudevent(edited_sample([](json& j) { j["courierheaders"] = R"({"a":{"b":"c"}})"; })), malformed,
                "courier.cloudevent.bad_extension");
    check_error(from_cloudevent(edited_sample([](json& j) { j["courierheaders"] = R"({"a":1})"; })), malformed,
                "courier.cloudevent.bad_extension", "header 'a' must be a string, found number");
    check_error(from_cloudevent(edited_sample([](json& j) { j["courierheaders"] = R"({"tenant":"x"})"; })), malformed,
                "courier.cloudevent.bad_extension", "header 'tenant' appears both");

    SECTION("limits") {
        courier::decode_limits limits;
        limits.max_bytes = 100;
        check_error(from_cloudevent(sample_text, limits), errc::limit_exceeded, "courier.cloudevent.too_large");
        check_error(from_cloudevent(edited_sample([](json& j) { j["data"] = json::parse(std::string(70, '[') + std::string(70, ']')); })),
                    errc::limit_exceeded, "courier.cloudevent.too_deep");
        limits = {};
        limits.max_headers = 4;  // the sample carries 5 headers: 2 attributes + 3 packed
        check_error(from_cloudevent(sample_text, limits), errc::limit_exceeded, "courier.cloudevent.too_many_headers");
        limits.max_headers = 5;
        CHECK(from_cloudevent(sample_text, limits));
        limits.max_headers = 1;
        check_error(from_cloudevent(sample_text, limits), errc::limit_exceeded, "courier.cloudevent.too_many_headers");
    }
}

TEST_CASE("from_cloudevent never throws on mutated input", "[event][cloudevents]") {
    std::mt19937_64 rng(11);
    const std::string noise = "{}[]\":,\\0a.+ \x01\xff";
    for (int i = 0; i < 10'000; ++i) {
        std::string mutated = sample_text;
        for (int k = std::uniform_int_distribution<int>(1, 4)(rng); k > 0; --k) {
            mutated[std::uniform_int_distribution<std::size_t>(0, mutated.size() - 1)(rng)] =
                noise[std::uniform_int_distribution<std::size_t>(0, noise.size() - 1)(rng)];
        }
        courier::result<envelope> r = envelope{};
        REQUIRE_NOTHROW(r = from_cloudevent(mutated));
        if (!r) REQUIRE(r.error().id().substr(0, 19) == "courier.cloudevent.");
    }
}
