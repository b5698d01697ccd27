// Tests for courier/event/topic_pattern.hpp: the grammar, compile-time literals, run-time
// errors, and `matches` checked case by case and against a slow, obviously correct
// recursive reference matcher on every small pattern/subject combination.
#include <courier/event/topic_pattern.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

using courier::topic_pattern;

namespace {

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    if (s.empty()) return out;  // the empty subject has no segments
    std::size_t begin = 0;
    while (true) {
        const auto dot = s.find('.', begin);
        out.push_back(s.substr(begin, dot == std::string::npos ? std::string::npos : dot - begin));
        if (dot == std::string::npos) return out;
        begin = dot + 1;
    }
}

// The reference: a direct transcription of the rules, exponential but obviously right.
bool reference_match(const std::vector<std::string>& p, std::size_t i, const std::vector<std::string>& s,
                     std::size_t j) {
    if (i == p.size()) return j == s.size();
    if (p[i] == "#") return reference_match(p, i + 1, s, j) || (j < s.size() && reference_match(p, i, s, j + 1));
    if (p[i] == ">") return j < s.size();  // one or more, only ever last
    if (j == s.size()) return false;
    if (p[i] == "*" || p[i] == s[j]) return reference_match(p, i + 1, s, j + 1);
    return false;
}

bool reference_match(const std::string& pattern, const std::string& subject) {
    return reference_match(split(pattern), 0, split(subject), 0);
}

std::string join(const std::vector<std::string>& parts) {
    std::string out;
    for (const auto& p : parts) {
        if (!out.empty() || &p != &parts.front()) out += '.';
        out += p;
    }
    return out;
}

}  // namespace

TEST_CASE("topic_pattern literals are checked at compile time and match at compile time", "[event][topic_pattern]") {
    constexpr topic_pattern all_orders{"order.#"};
    STATIC_REQUIRE(all_orders.matches("order.created.v1"));
    STATIC_REQUIRE(all_orders.matches("order"));
    STATIC_REQUIRE(!all_orders.matches("orders.created.v1"));
    STATIC_REQUIRE(!all_orders.is_exact());
    STATIC_REQUIRE(topic_pattern{"order.created.v1"}.is_exact());
    STATIC_REQUIRE(topic_pattern{"order.*.v1"}.segment_count() == 3);
    STATIC_REQUIRE(topic_pattern{"order.*.v1"}.segment(1) == "*");
    STATIC_REQUIRE(topic_pattern::is_valid("#.v2"));
    STATIC_REQUIRE(!topic_pattern::is_valid("order.>.v1"));
}

TEST_CASE("topic_pattern matches the AMQP and NATS examples", "[event][topic_pattern]") {
    struct match_case {
        const char* pattern;
        const char* subject;
        bool expected;
    };
    const match_case cases[] = {
        // exact
        {"order.created.v1", "order.created.v1", true},
        {"order.created.v1", "order.created.v2", false},
        {"order.created.v1", "order.created", false},
        {"order.created.v1", "order.created.v1.x", false},
        // '*' is exactly one segment
        {"order.*.v1", "order.created.v1", true},
        {"order.*.v1", "order.line.added.v1", false},
        {"order.*.v1", "order.v1", false},
        {"*.*.v1", "user.deleted.v1", true},
        {"*", "order", true},
        {"*", "order.created", false},
        {"*", "", false},
        // '#' is zero or more, anywhere
        {"#", "", true},
        {"#", "order", true},
        {"#", "order.created.v1", true},
        {"#.#", "order.created.v1", true},
        {"#.#", "", true},
        {"order.#", "order", true},
        {"order.#", "order.created.v1", true},
        {"order.#", "user.order.v1", false},
        {"#.v2", "order.created.v2", true},
        {"#.v2", "v2", true},
        {"#.v2", "order.created.v1", false},
        {"#.v2", "order.v2.created.v1", false},
        {"order.#.v1", "order.v1", true},
        {"order.#.v1", "order.created.v1", true},
        {"order.#.v1", "order.line.item.added.v1", true},
        {"order.#.v1", "order.created.v2", false},
        {"order.#.v1", "order.v1.v1", true},
        {"#.created.#", "order.created.v1", true},
        {"#.created.#", "created", true},
        {"#.created.#", "order.updated.v1", false},
        {"#.a.#.a.#", "a.b.a", true},
        {"#.a.#.a.#", "b.a.b", false},
        {"*.#.*", "a", false},
        {"*.#.*", "a.b", true},
        {"#.*.#", "", false},
        {"#.*.#", "x", true},
        // RabbitMQ tutorial 5
        {"*.orange.*", "quick.orange.rabbit", true},
        {"*.*.rabbit", "quick.orange.rabbit", true},
        {"lazy.#", "lazy.orange.elephant", true},
        {"*.orange.*", "quick.brown.fox", false},
        {"*.orange.*", "quick.orange.male.rabbit", false},
        {"lazy.#", "lazy.orange.male.rabbit", true},
        {"*.*.rabbit", "orange", false},
        // NATS '>': one or more, last only
        {"order.>", "order.created.v1", true},
        {"order.>", "order.created", true},
        {"order.>", "order", false},
        {">", "order", true},
        {">", "", false},
        {"#.>", "a", true},
        {"#.>", "", false},
        {"#.a.>", "a", false},
        {"#.a.>", "x.a.b", true},
        // subjects that are not valid names are matched segment by segment
        {"*.*", "a.", true},
        {"a.#", "a..b", true},
        {"a.b", "a..b", false},
    };
    for (const auto& c : cases) {
        INFO(c.pattern << " vs '" << c.subject << "'");
        auto p = topic_pattern::parse(c.pattern);
        REQUIRE(p);
        CHECK(p->matches(std::string_view(c.subject)) == c.expected);
        CHECK(reference_match(c.pattern, c.subject) == c.expected);  // the reference agrees too
    }
}

TEST_CASE("topic_pattern::matches agrees with the reference on every small combination", "[event][topic_pattern]") {
    // Every pattern of up to 5 segments over {a, b, *, #} (optionally ending in '>') against
    // every subject of up to 6 segments over {a, b}: 1'705 patterns x 127 subjects.
    const std::vector<std::string> pattern_alphabet = {"a", "b", "*", "#"};
    std::vector<std::string> patterns;
    std::vector<std::vector<std::string>> current = {{}};
    for (int len = 1; len <= 5; ++len) {
        std::vector<std::vector<std::string>> next;
        for (const auto& prefix : current) {
            for (const auto& seg : pattern_alphabet) {
                auto p = prefix;
                p.push_back(seg);
                patterns.push_back(join(p));
                next.push_back(std::move(p));
            }
        }
        current = std::move(next);
    }
    const std::size_t plain = patterns.size();
    for (std::size_t i = 0; i < plain; ++i) {
        if (split(patterns[i]).size() < 5) patterns.push_back(patterns[i] + ".>");
    }
    patterns.push_back(">");

    std::vector<std::string> subjects = {""};
    std::vector<std::string> level = {""};
    for (int len = 1; len <= 6; ++len) {
        std::vector<std::string> next;
        for (const auto& prefix : level) {
            for (const char* seg : {"a", "b"}) next.push_back(prefix.empty() ? seg : prefix + "." + seg);
        }
        subjects.insert(subjects.end(), next.begin(), next.end());
        level = std::move(next);
    }

    std::size_t checked = 0, matched = 0;
    for (const auto& pattern : patterns) {
        auto p = topic_pattern::parse(pattern);
        REQUIRE(p);
        for (const auto& subject : subjects) {
            const bool expected = reference_match(pattern, subject);
            if (p->matches(std::string_view(subject)) != expected) {
                FAIL("pattern '" << pattern << "' subject '" << subject << "' expected " << expected);
            }
            ++checked;
            matched += expected;
        }
    }
    CHECK(checked == 1'705u * 127u);
    CHECK(matched > 10'000);
}

TEST_CASE("topic_pattern::matches agrees with the reference on random longer inputs", "[event][topic_pattern]") {
    std::mt19937_64 rng(2024);
    const std::vector<std::string> pattern_segments = {"order", "created", "v1", "v2", "*", "#", "#"};
    const std::vector<std::string> subject_segments = {"order", "created", "v1", "v2"};
    for (int i = 0; i < 20'000; ++i) {
        std::vector<std::string> p, s;
        for (int n = std::uniform_int_distribution<int>(1, 9)(rng); n > 0; --n)
            p.push_back(pattern_segments[std::uniform_int_distribution<std::size_t>(0, pattern_segments.size() - 1)(rng)]);
        if (rng() % 5 == 0) p.push_back(">");
        for (int n = std::uniform_int_distribution<int>(0, 12)(rng); n > 0; --n)
            s.push_back(subject_segments[std::uniform_int_distribution<std::size_t>(0, subject_segments.size() - 1)(rng)]);
        const auto pattern = join(p), subject = join(s);
        auto parsed = topic_pattern::parse(pattern);
        REQUIRE(parsed);
        INFO(pattern << " vs '" << subject << "'");
        REQUIRE(parsed->matches(std::string_view(subject)) == reference_match(pattern, subject));
    }
}

TEST_CASE("topic_pattern::parse rejects malformed patterns, naming the segment", "[event][topic_pattern]") {
    struct bad_case {
        std::string text;
        std::string says;
    };
    const bad_case cases[] = {
        {"", "the pattern is empty"},
        {"order.", "segment 2 at offset 6 is empty"},
        {".order", "segment 1 at offset 0 is empty"},
        {"order..created", "segment 2 at offset 6 is empty"},
        {"or*der.v1", "segment 1 'or*der' at offset 0: a wildcard ('*', '#', '>') must be a whole segment, found '*' at offset 2"},
        {"order.#x", "segment 2 '#x' at offset 6: a wildcard"},
        {"order.**", "segment 2 '**' at offset 6: a wildcard"},
        {"order.>.v1", "segment 2 '>' at offset 6: '>' is allowed only as the last segment"},
        {"Order.#", "segment 1 'Order' at offset 0 must be '*', '#', '>' or start with a lowercase letter a-z, found 'O'"},
        {"order.1x", "segment 2 '1x' at offset 6 must be '*', '#', '>' or start with a lowercase letter"},
        {"order.cr-eated", "segment 2 'cr-eated' at offset 6 may contain only a-z, 0-9 and '_', found '-' at offset 8"},
        {"order.created v1", "found ' ' at offset 13"},
        {std::string(256, 'a'), "more than the limit of 255"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        auto r = topic_pattern::parse(c.text);
        REQUIRE_FALSE(r);
        CHECK(r.error() == courier::errc::invalid_pattern);
        CHECK(r.error().id() == "courier.event.invalid_pattern");
        CHECK_THAT(r.error().message, Catch::Matchers::Contains(c.says));
        CHECK_FALSE(topic_pattern::is_valid(c.text));
        CHECK_FALSE(courier::owned_topic_pattern::parse(c.text));
    }
}

TEST_CASE("topic_pattern exact patterns and owned patterns", "[event][topic_pattern]") {
    constexpr courier::event_name name{"order.created.v1"};
    constexpr auto exact = topic_pattern::exactly(name);
    STATIC_REQUIRE(exact.is_exact());
    STATIC_REQUIRE(exact.matches(name));
    STATIC_REQUIRE(!exact.matches("order.created.v2"));

    auto owned = [] {
        std::string text = "order.*.v1";
        return courier::owned_topic_pattern::parse(text);
    }();
    REQUIRE(owned);
    const auto copy = *owned;
    CHECK(copy.matches("order.created.v1"));
    CHECK_FALSE(copy.matches("order.created.v2"));
    CHECK_FALSE(copy.is_exact());
    CHECK(copy.view().str().data() == copy.str().data());
    CHECK(copy == *owned);
}
