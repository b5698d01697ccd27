// Topic patterns in the AMQP topic habit: `*` matches exactly one segment, `#` zero or more,
// anywhere; NATS's trailing `>` (one or more) is accepted too. Literals are checked at
// compile time, run-time patterns through `parse`; `matches` never allocates.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/event/event_name.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE

namespace detail {

enum class pattern_problem : std::uint8_t {
    none,
    empty,
    too_long,
    not_terminated,
    empty_segment,
    mixed_wildcard,  // "order*" or "#x": a wildcard must be a whole segment
    bad_first_char,
    bad_char,
    gt_not_last,
};

struct pattern_check {
    pattern_problem problem = pattern_problem::none;
    std::size_t segment = 0;
    std::size_t segment_begin = 0;
    std::size_t segment_size = 0;
    std::size_t char_offset = 0;
    bool exact = true;  // no wildcard segment
};

constexpr bool is_wildcard_char(char c) noexcept { return c == '*' || c == '#' || c == '>'; }

/// Checks `s` against the pattern grammar without allocating.
constexpr pattern_check check_topic_pattern(std::string_view s) noexcept {
    pattern_check r;
    auto fail = [&](pattern_problem p, std::size_t seg, std::size_t b, std::size_t e, std::size_t at) {
        r.problem = p;
        r.segment = seg;
        r.segment_begin = b;
        r.segment_size = e - b;
        r.char_offset = at;
        return r;
    };
    if (s.empty()) return fail(pattern_problem::empty, 0, 0, 0, 0);
    if (s.size() > max_name_size) return fail(pattern_problem::too_long, 0, 0, 0, max_name_size);
    std::size_t index = 0;
    std::size_t begin = 0;
    while (true) {
        const std::size_t end = segment_end(s, begin);
        if (end == begin) return fail(pattern_problem::empty_segment, index, begin, end, begin);
        if (end - begin == 1 && is_wildcard_char(s[begin])) {
            r.exact = false;
            if (s[begin] == '>' && end != s.size()) return fail(pattern_problem::gt_not_last, index, begin, end, begin);
        } else {
            for (std::size_t i = begin; i < end; ++i)
                if (is_wildcard_char(s[i])) return fail(pattern_problem::mixed_wildcard, index, begin, end, i);
            if (!is_name_lower(s[begin])) return fail(pattern_problem::bad_first_char, index, begin, end, begin);
            for (std::size_t i = begin + 1; i < end; ++i)
                if (!is_name_char(s[i])) return fail(pattern_problem::bad_char, index, begin, end, i);
        }
        if (end == s.size()) return r;
        begin = end + 1;
        ++index;
    }
}

inline std::string describe_pattern_problem(const pattern_check& c, std::string_view s) {
    const std::string seg = "segment " + std::to_string(c.segment + 1) + " " +
                            quote_for_message(s.substr(c.segment_begin, c.segment_size)) + " at offset " +
                            std::to_string(c.segment_begin);
    const std::string found =
        c.char_offset < s.size() ? ", found " + quote_for_message(s.substr(c.char_offset, 1)) : std::string();
    switch (c.problem) {
    case pattern_problem::none: return "valid";
    case pattern_problem::empty: return "the pattern is empty (use '#' to match every event)";
    case pattern_problem::too_long:
        return "the pattern is " + std::to_string(s.size()) + " characters long, more than the limit of " +
               std::to_string(max_name_size);
    case pattern_problem::not_terminated: return "not a string literal";
    case pattern_problem::empty_segment:
        return "segment " + std::to_string(c.segment + 1) + " at offset " + std::to_string(c.segment_begin) +
               " is empty (leading, trailing or doubled '.')";
    case pattern_problem::mixed_wildcard:
        return seg + ": a wildcard ('*', '#', '>') must be a whole segment" + found + " at offset " +
               std::to_string(c.char_offset);
    case pattern_problem::bad_first_char:
        return seg + " must be '*', '#', '>' or start with a lowercase letter a-z" + found;
    case pattern_problem::bad_char:
        return seg + " may contain only a-z, 0-9 and '_'" + found + " at offset " + std::to_string(c.char_offset);
    case pattern_problem::gt_not_last: return seg + ": '>' is allowed only as the last segment";
    }
    return "invalid";
}

namespace topic_pattern_literal_error {
inline void pattern_is_empty() {}
inline void pattern_is_longer_than_255_characters() {}
inline void argument_is_not_a_string_literal() {}
inline void pattern_has_an_empty_segment() {}
inline void wildcard_must_be_a_whole_segment() {}
inline void segment_must_be_a_wildcard_or_start_with_a_lowercase_letter() {}
inline void segment_may_contain_only_lowercase_letters_digits_and_underscore() {}
inline void gt_wildcard_is_allowed_only_as_the_last_segment() {}
}  // namespace topic_pattern_literal_error

constexpr void reject_topic_pattern_literal(pattern_problem p) {
    namespace e = topic_pattern_literal_error;
    switch (p) {
    case pattern_problem::none: return;
    case pattern_problem::empty: e::pattern_is_empty(); break;
    case pattern_problem::too_long: e::pattern_is_longer_than_255_characters(); break;
    case pattern_problem::not_terminated: e::argument_is_not_a_string_literal(); break;
    case pattern_problem::empty_segment: e::pattern_has_an_empty_segment(); break;
    case pattern_problem::mixed_wildcard: e::wildcard_must_be_a_whole_segment(); break;
    case pattern_problem::bad_first_char: e::segment_must_be_a_wildcard_or_start_with_a_lowercase_letter(); break;
    case pattern_problem::bad_char: e::segment_may_contain_only_lowercase_letters_digits_and_underscore(); break;
    case pattern_problem::gt_not_last: e::gt_wildcard_is_allowed_only_as_the_last_segment(); break;
    }
}

/// Matches a valid pattern against `subject`, segment by segment, without allocating.
///
/// The subject is split at '.'; the empty string has zero segments. This is glob matching
/// with `#` as "any run of segments" and `*` as "one segment": on a mismatch the most recent
/// `#` absorbs one more segment and matching resumes after it. Only the most recent `#`
/// needs to be retried (a later `#` can absorb anything an earlier one could), so the cost
/// is O(pattern segments x subject segments) in the worst case and linear for patterns
/// with at most one `#`. A trailing `>` is `*` followed by `#`.
///
/// Positions are indices where a segment starts; `size + 1` means "past the last segment".
/// In a valid pattern a wildcard character is always a whole segment, so the first
/// character of a segment is enough to classify it.
constexpr bool topic_match(std::string_view pattern, std::string_view subject) noexcept {
    const std::size_t pn = pattern.size();
    const std::size_t sn = subject.size();
    std::size_t p = 0;
    std::size_t s = sn == 0 ? sn + 1 : 0;
    std::size_t resume_p = std::string_view::npos;  // pattern position after the latest '#'
    std::size_t resume_s = 0;                       // subject position that '#' resumes from
    while (s <= sn) {
        if (p < pn) {  // p == pn + 1 once the pattern is used up (pn itself never occurs)
            const char head = pattern[p];
            if (head == '#') {
                resume_p = p + 2;
                resume_s = s;
                p += 2;
                continue;
            }
            if (head == '>') return true;  // at least one subject segment remains
            if (head == '*') {
                p += 2;
                s = segment_end(subject, s) + 1;
                continue;
            }
            // A literal: compare it with the subject segment in one pass.
            std::size_t i = p, j = s;
            while (i < pn && pattern[i] != '.' && j < sn && subject[j] == pattern[i]) {
                ++i;
                ++j;
            }
            if ((i == pn || pattern[i] == '.') && (j == sn || subject[j] == '.')) {
                p = i + 1;
                s = j + 1;
                continue;
            }
        }
        if (resume_p == std::string_view::npos) return false;
        resume_s = segment_end(subject, resume_s) + 1;  // the '#' takes one more segment
        s = resume_s;
        p = resume_p;
    }
    // The subject is used up: what is left of the pattern must be able to match nothing.
    for (; p < pn; p += 2) {
        if (pattern[p] != '#') return false;
    }
    return true;
}

}  // namespace detail

/// A validated topic pattern: '.'-separated segments, each `*` (exactly one segment), `#`
/// (zero or more segments, anywhere), `>` (one or more; last segment only) or a literal
/// `[a-z][a-z0-9_]*`. `order.*.v1`, `order.#`, `#.v2`, `#`, `order.>`.
///
/// Like `event_name`, a literal type viewing its text: literals are checked at compile
/// time, `parse` views the caller's string (use `owned_topic_pattern` to keep one).
/// Version segments are ordinary literals: `order.created.v2` matches only v2.
///
/// Thread safety: an immutable value; `matches` may be called concurrently.
/// Errors: a malformed literal does not compile; `parse` returns errc::invalid_pattern,
/// "[courier.event.invalid_pattern]", naming the offending segment and its offset.
///
/// Example:
/// ```
/// constexpr courier::topic_pattern all_orders{"order.#"};
/// static_assert(all_orders.matches("order.created.v1"));
/// static_assert(!courier::topic_pattern{"order.*.v1"}.matches("order.line.added.v1"));
/// ```
class topic_pattern {
public:
    /// Checks a string literal at compile time; a malformed literal does not compile.
    template <std::size_t N>
    consteval topic_pattern(const char (&literal)[N]) {  // NOLINT: implicit on purpose
        if (literal[N - 1] != '\0') detail::reject_topic_pattern_literal(detail::pattern_problem::not_terminated);
        const std::string_view s(literal, N - 1);
        const auto c = detail::check_topic_pattern(s);
        detail::reject_topic_pattern_literal(c.problem);
        str_ = s;
        exact_ = c.exact;
    }

    /// Parses a run-time pattern; the result views `text`, which must outlive it.
    ///
    /// Errors: errc::invalid_pattern, "[courier.event.invalid_pattern] 'order.*x': segment 2
    /// '*x' at offset 6: a wildcard ('*', '#', '>') must be a whole segment ...".
    static result<topic_pattern> parse(std::string_view text) {
        const auto c = detail::check_topic_pattern(text);
        if (c.problem != detail::pattern_problem::none) {
            return unexpected(errc::invalid_pattern, "[courier.event.invalid_pattern] " +
                                                         detail::quote_for_message(text) + ": " +
                                                         detail::describe_pattern_problem(c, text));
        }
        return topic_pattern(text, c.exact);
    }

    /// The pattern matching exactly one event name (a fast path: plain string comparison).
    static constexpr topic_pattern exactly(event_name name) noexcept { return topic_pattern(name.str(), true); }

    /// True when `text` is a valid pattern. Does not allocate.
    static constexpr bool is_valid(std::string_view text) noexcept {
        return detail::check_topic_pattern(text).problem == detail::pattern_problem::none;
    }

    /// True when `event_type` matches. Never allocates; O(length) for exact patterns and
    /// patterns with at most one `#`.
    constexpr bool matches(std::string_view event_type) const noexcept {
        return exact_ ? event_type == str_ : detail::topic_match(str_, event_type);
    }
    /// True when `name` matches.
    constexpr bool matches(event_name name) const noexcept { return matches(name.str()); }
    /// Also matches string literals (without this, a literal would be ambiguous between
    /// the string_view and the event_name overloads).
    template <std::size_t N>
    constexpr bool matches(const char (&event_type)[N]) const noexcept {
        return matches(std::string_view(event_type));
    }

    /// True when the pattern has no wildcard, so it matches one name only.
    constexpr bool is_exact() const noexcept { return exact_; }
    /// The pattern text.
    constexpr std::string_view str() const noexcept { return str_; }
    /// Number of segments.
    constexpr std::size_t segment_count() const noexcept {
        std::size_t n = 1;
        for (char c : str_) n += c == '.';
        return n;
    }
    /// Segment `i` (0-based); empty when out of range.
    constexpr std::string_view segment(std::size_t i) const noexcept {
        std::size_t begin = 0;
        for (; i > 0; --i) {
            const auto dot = str_.find('.', begin);
            if (dot == std::string_view::npos) return {};
            begin = dot + 1;
        }
        return str_.substr(begin, detail::segment_end(str_, begin) - begin);
    }

    friend constexpr bool operator==(const topic_pattern& a, const topic_pattern& b) noexcept {
        return a.str_ == b.str_;
    }

private:
    friend class owned_topic_pattern;
    constexpr topic_pattern(std::string_view s, bool exact) noexcept : str_(s), exact_(exact) {}

    std::string_view str_;
    bool exact_ = true;
};

/// A topic pattern that owns its text, for patterns that arrive at run time and must be
/// kept (subscriptions, bridge forwarding rules).
///
/// Thread safety: a value type; `matches` may be called concurrently.
class owned_topic_pattern {
public:
    /// Copies a validated pattern.
    explicit owned_topic_pattern(topic_pattern p) : text_(p.str()), exact_(p.is_exact()) {}

    /// Parses and copies a run-time pattern.
    ///
    /// Errors: as `topic_pattern::parse`.
    static result<owned_topic_pattern> parse(std::string_view text) {
        auto p = topic_pattern::parse(text);
        if (!p) return unexpected(std::move(p).error());
        return owned_topic_pattern(*p);
    }

    /// A view of this pattern; valid while this object lives and is not assigned to.
    topic_pattern view() const noexcept { return topic_pattern(text_, exact_); }
    /// True when `event_type` matches. Never allocates.
    bool matches(std::string_view event_type) const noexcept { return view().matches(event_type); }
    /// True when the pattern has no wildcard.
    bool is_exact() const noexcept { return exact_; }
    /// The pattern text.
    const std::string& str() const noexcept { return text_; }

    friend bool operator==(const owned_topic_pattern& a, const owned_topic_pattern& b) noexcept {
        return a.text_ == b.text_;
    }

private:
    std::string text_;
    bool exact_;
};

COURIER_END_NAMESPACE
