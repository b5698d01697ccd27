// Tests for courier/event/event_name.hpp: the grammar, compile-time literals, run-time
// parsing with errors that name the offending segment, accessors and owned names.
#include <courier/event/event_name.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <thread>
#include <string>
#include <unordered_set>

using courier::event_name;

namespace {
constexpr event_name created{"order.created.v1"};
constexpr event_name profile{"user.profile.updated.v12"};
}  // namespace

TEST_CASE("event_name literals are checked and split at compile time", "[event][event_name]") {
    STATIC_REQUIRE(created.str() == "order.created.v1");
    STATIC_REQUIRE(created.base() == "order.created");
    STATIC_REQUIRE(created.version() == 1);
    STATIC_REQUIRE(created.segment_count() == 3);
    STATIC_REQUIRE(created.segment(0) == "order");
    STATIC_REQUIRE(created.segment(2) == "v1");
    STATIC_REQUIRE(created.segment(3).empty());
    STATIC_REQUIRE(profile.base() == "user.profile.updated");
    STATIC_REQUIRE(profile.version() == 12);
    STATIC_REQUIRE(profile.segment(1) == "profile");
    STATIC_REQUIRE(event_name{"a_1.b2_.v999999999"}.version() == 999'999'999);
    // A 'v2' before the end is an ordinary segment.
    STATIC_REQUIRE(event_name{"api.v2.called.v3"}.base() == "api.v2.called");
    STATIC_REQUIRE(event_name::is_valid("order.created.v1"));
    STATIC_REQUIRE(!event_name::is_valid("order.created"));
}

TEST_CASE("event_name::parse accepts valid run-time names and views the caller's string", "[event][event_name]") {
    const std::string text = "billing.invoice_2.paid.v10";
    auto n = event_name::parse(text);
    REQUIRE(n);
    CHECK(n->str().data() == text.data());  // a view, no copy
    CHECK(n->base() == "billing.invoice_2.paid");
    CHECK(n->version() == 10);
    CHECK(n->segment_count() == 4);
    CHECK(n->segment(3) == "v10");
    // Parentheses, not braces, for temporaries: clang 14 crashes on a braced temporary of a
    // consteval constructor used twice in one function (llvm/llvm-project#55871).
    CHECK(*n == event_name("billing.invoice_2.paid.v10"));
    CHECK(*n != event_name("billing.invoice_2.paid.v11"));
    CHECK(*n == text);
    CHECK(*n == "billing.invoice_2.paid.v10");
    CHECK("billing.invoice_2.paid.v10" == *n);
    CHECK(*n != "billing.invoice_2.paid.v1");
    CHECK(created < profile);
}

TEST_CASE("event_name::parse rejects malformed names, naming the segment and its position", "[event][event_name]") {
    struct bad_case {
        std::string text;
        std::string says;
    };
    const bad_case cases[] = {
        {"", "the name is empty"},
        {"Order.created.v1", "segment 1 'Order' at offset 0 must start with a lowercase letter a-z, found 'O'"},
        {"order.Created.v1", "segment 2 'Created' at offset 6 must start with a lowercase letter"},
        {"order.1created.v1", "segment 2 '1created' at offset 6 must start with a lowercase letter a-z, found '1'"},
        {"_order.created.v1", "segment 1 '_order' at offset 0 must start with a lowercase letter"},
        {"order.cre-ated.v1", "segment 2 'cre-ated' at offset 6 may contain only a-z, 0-9 and '_', found '-' at offset 9"},
        {"order.creAted.v1", "found 'A' at offset 9"},
        {"order.created .v1", "found ' ' at offset 13"},
        {"order..created.v1", "segment 2 at offset 6 is empty"},
        {".order.created.v1", "segment 1 at offset 0 is empty"},
        {"order.created.v1.", "segment 4 at offset 17 is empty"},
        {"order.created.", "segment 3 at offset 14 is empty"},
        {"order.created", "segment 2 'created' at offset 6 must be the version"},
        {"order.created.V1", "segment 3 'V1' at offset 14 must be the version"},
        {"order.created.v", "segment 3 'v' at offset 14 must be the version"},
        {"order.created.vx", "segment 3 'vx' at offset 14 must be the version"},
        {"order.created.v1a", "segment 3 'v1a' at offset 14 must be the version"},
        {"order.created.v-1", "must be the version"},
        {"order.created.v0", "segment 3 'v0' at offset 14: versions start at v1"},
        {"order.created.v01", "segment 3 'v01' at offset 14: the version must not have leading zeros"},
        {"order.created.v1000000000", "the version must be at most 999999999"},
        {"order.v1", "at least two segments before the version 'v1', found 1"},
        {"v1", "at least two segments before the version 'v1', found 0"},
        {std::string("order.cre\0ated.v1", 17), "found '\\x00' at offset 9"},
        {"order.caf\xc3\xa9.v1", "found '\\xc3' at offset 9"},
        {"order." + std::string(300, 'a') + ".v1", "characters long, more than the limit of 255"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        auto r = event_name::parse(c.text);
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::invalid_name);
        CHECK(r.error().id() == "courier.event.invalid_name");
        CHECK_THAT(r.error().message, Catch::Matchers::Contains(c.says));
        CHECK_FALSE(event_name::is_valid(c.text));
    }
}

TEST_CASE("event_name error messages escape and truncate hostile input", "[event][event_name]") {
    auto r = event_name::parse("order.created\n[courier.fake] injected." + std::string(500, 'x'));
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find('\n') == std::string::npos);
    CHECK(r.error().message.size() < 600);
    CHECK_THAT(r.error().message, Catch::Matchers::Contains("\\x0a"));
}

TEST_CASE("event_name accepts names at the length limit and rejects one more", "[event][event_name]") {
    const std::string at_limit = "order." + std::string(255 - 6 - 3, 'a') + ".v1";
    REQUIRE(at_limit.size() == 255);
    CHECK(event_name::parse(at_limit));
    CHECK_FALSE(event_name::parse("order." + std::string(255 - 6 - 2, 'a') + ".v1"));
}

TEST_CASE("event_name::is_valid agrees with parse on random strings", "[event][event_name]") {
    // Random joins of good and bad segments, so that both outcomes are common.
    std::mt19937_64 rng(12345);
    const std::string segments[] = {"a", "b1", "c_d", "v1", "v12", "v0", "v01", "A", "", "1x", "x-y", "v"};
    std::uniform_int_distribution<std::size_t> count(1, 6), pick(0, std::size(segments) - 1);
    int valid = 0;
    for (int i = 0; i < 50'000; ++i) {
        std::string s;
        for (std::size_t n = count(rng); n > 0; --n) s += "." + segments[pick(rng)];
        s.erase(0, 1);
        const auto r = event_name::parse(s);
        REQUIRE(r.has_value() == event_name::is_valid(s));
        if (r) {
            ++valid;
            REQUIRE(r->str() == s);
            REQUIRE(std::string(r->base()) + ".v" + std::to_string(r->version()) == s);
        } else {
            REQUIRE(r.error().id() == "courier.event.invalid_name");
        }
    }
    CHECK(valid > 1000);
}

TEST_CASE("event_name::with_version builds the name of another version", "[event][event_name]") {
    CHECK(created.with_version(2) == "order.created.v2");
    CHECK(profile.with_version(1) == "user.profile.updated.v1");
    CHECK(event_name::parse(created.with_version(42)));
    CHECK_THROWS_AS(created.with_version(0), courier::courier_error);
    CHECK_THROWS_AS(created.with_version(-3), courier::courier_error);
    // A name at the length limit keeps it only with a version of as many digits (found by the
    // event_name fuzzer: with_version(10) of such a name gave 256 characters).
    const std::string at_limit = "order." + std::string(255 - 6 - 3, 'a') + ".v9";
    const auto full = event_name::parse(at_limit).value();
    CHECK(full.with_version(1).size() == 255);
    CHECK(full.with_version(8) == "order." + std::string(246, 'a') + ".v8");
    try {
        (void)full.with_version(10);
        FAIL("a name past the limit was built");
    } catch (const courier::courier_error& e) {
        CHECK(e.err() == courier::errc::invalid_argument);
        CHECK(e.err().message == "[courier.event.name_too_long] version 10 makes the name 256 characters long, past the limit of 255");
    }
}

TEST_CASE("owned_event_name keeps its text after the source is gone", "[event][event_name]") {
    auto make = [] {
        std::string text = "short.name.v3";  // fits in SSO: copies must re-point their views
        return courier::owned_event_name::parse(text);
    };
    auto owned = make();
    REQUIRE(owned);
    courier::owned_event_name copy = *owned;
    courier::owned_event_name moved = std::move(*owned);
    CHECK(copy.view() == "short.name.v3");
    CHECK(copy.view().base() == "short.name");
    CHECK(copy.view().str().data() == copy.str().data());
    CHECK(moved.view().version() == 3);
    CHECK(copy == moved);
    CHECK(courier::owned_event_name(created).str() == "order.created.v1");

    auto bad = courier::owned_event_name::parse("no");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().id() == "courier.event.invalid_name");
}

TEST_CASE("event_name hashes by text", "[event][event_name]") {
    std::unordered_set<event_name> set{created, profile};
    const std::string text = "order.created.v1";
    CHECK(set.count(*event_name::parse(text)) == 1);
    CHECK(std::hash<event_name>{}(created) == std::hash<std::string_view>{}("order.created.v1"));
}

TEST_CASE("event_name::parse remembers the last valid name per thread without changing any verdict", "[event][event_name]") {
    // The same name again (a stream of envelopes): the same parts, viewing the new text.
    std::string a = "order.created.v1";
    auto first = event_name::parse(a);
    REQUIRE(first);
    std::string again = a;
    auto second = event_name::parse(again);
    REQUIRE(second);
    CHECK(second->str().data() == again.data());
    CHECK(second->base() == "order.created");
    CHECK(second->version() == 1);
    // A name of the same length that differs: checked, never taken for the one remembered.
    for (const char* other : {"order.created.v2", "order.Created.v1", "order.created.x1", "order.created.v0"}) {
        INFO(other);
        auto r = event_name::parse(other);
        CHECK(r.has_value() == event_name::is_valid(other));
        if (r) CHECK(r->version() == 2);
        REQUIRE(event_name::parse(a));  // and remembered again
    }
    CHECK_FALSE(event_name::parse(""));
    // Longer than the memo keeps (96 characters): still parsed, every time.
    const std::string long_name = std::string(120, 'a') + ".created.v3";
    for (int i = 0; i < 2; ++i) {
        auto r = event_name::parse(long_name);
        REQUIRE(r);
        CHECK(r->version() == 3);
        CHECK(r->base() == std::string(120, 'a') + ".created");
    }
    // Per thread: another thread checks its own names.
    std::thread([] {
        CHECK_FALSE(event_name::parse("order.created.V1"));
        CHECK(event_name::parse("order.created.v1"));
    }).join();
}
