// Event names: `event_name` checks "domain.entity.action.vN" at compile time for literals
// (a malformed literal does not compile) and at run time through `parse`, with an error
// that names the offending segment. `owned_event_name` is the same thing owning its text.
// Parsing, accessors and comparison never allocate.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/detail/quote.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>

#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE

namespace detail {

constexpr bool is_name_lower(char c) noexcept { return c >= 'a' && c <= 'z'; }
constexpr bool is_name_digit(char c) noexcept { return c >= '0' && c <= '9'; }
/// A character allowed after the first one of a name segment: [a-z0-9_].
constexpr bool is_name_char(char c) noexcept { return is_name_lower(c) || is_name_digit(c) || c == '_'; }

/// End of the '.'-separated segment that starts at `begin` (the '.' or the end of `s`).
constexpr std::size_t segment_end(std::string_view s, std::size_t begin) noexcept {
    // A plain loop: segments are a few characters long, shorter than a memchr call's overhead.
    while (begin < s.size() && s[begin] != '.') ++begin;
    return begin;
}

/// What is wrong with a candidate event name; `none` when nothing is.
enum class name_problem : std::uint8_t {
    none,
    empty,
    too_long,
    not_terminated,  // a char array that is not a string literal (compile time only)
    empty_segment,
    bad_first_char,
    bad_char,
    missing_version,
    version_zero,
    version_leading_zero,
    version_too_large,
    too_few_segments,
};

/// The outcome of checking a name: the problem and where it is, or the parsed parts.
struct name_check {
    name_problem problem = name_problem::none;
    std::size_t segment = 0;        // 0-based index of the offending segment
    std::size_t segment_begin = 0;  // its offset in the name
    std::size_t segment_size = 0;
    std::size_t char_offset = 0;  // offset of the offending character, when there is one
    std::size_t base_size = 0;    // length of the part before ".vN"
    int version = 0;
};

/// Longest accepted name or pattern. Brokers cap subjects and topics (Kafka: 249 bytes), and
/// a bound keeps error messages and header sizes sane.
inline constexpr std::size_t max_name_size = 255;
/// Largest accepted version: nine digits always fit an int.
inline constexpr int max_event_version = 999'999'999;

/// Checks `s` against the event-name grammar without allocating.
constexpr name_check check_event_name(std::string_view s) noexcept {
    name_check r;
    auto fail = [&](name_problem p, std::size_t seg, std::size_t b, std::size_t e, std::size_t at) {
        r.problem = p;
        r.segment = seg;
        r.segment_begin = b;
        r.segment_size = e - b;
        r.char_offset = at;
        return r;
    };
    if (s.empty()) return fail(name_problem::empty, 0, 0, 0, 0);
    if (s.size() > max_name_size) return fail(name_problem::too_long, 0, 0, 0, max_name_size);
    std::size_t index = 0;
    std::size_t begin = 0;
    while (true) {
        const std::size_t end = segment_end(s, begin);
        if (end == begin) return fail(name_problem::empty_segment, index, begin, end, begin);
        if (end == s.size()) {
            // The last segment is the version: 'v', then a positive integer without leading zeros.
            if (s[begin] != 'v' || end - begin < 2)
                return fail(name_problem::missing_version, index, begin, end, begin);
            for (std::size_t i = begin + 1; i < end; ++i)
                if (!is_name_digit(s[i])) return fail(name_problem::missing_version, index, begin, end, i);
            if (s[begin + 1] == '0') {
                return fail(end - begin == 2 ? name_problem::version_zero : name_problem::version_leading_zero,
                            index, begin, end, begin + 1);
            }
            if (end - begin - 1 > 9) return fail(name_problem::version_too_large, index, begin, end, begin + 1);
            int v = 0;
            for (std::size_t i = begin + 1; i < end; ++i) v = v * 10 + (s[i] - '0');
            if (index < 2) return fail(name_problem::too_few_segments, index, begin, end, begin);
            r.base_size = begin - 1;
            r.version = v;
            return r;
        }
        if (!is_name_lower(s[begin])) return fail(name_problem::bad_first_char, index, begin, end, begin);
        for (std::size_t i = begin + 1; i < end; ++i)
            if (!is_name_char(s[i])) return fail(name_problem::bad_char, index, begin, end, i);
        begin = end + 1;
        ++index;
    }
}

/// The human explanation of a failed check, without the "[id] " prefix.
inline std::string describe_name_problem(const name_check& c, std::string_view s) {
    const std::string seg = "segment " + std::to_string(c.segment + 1) + " " +
                            quote_for_message(s.substr(c.segment_begin, c.segment_size)) + " at offset " +
                            std::to_string(c.segment_begin);
    const std::string found =
        c.char_offset < s.size() ? ", found " + quote_for_message(s.substr(c.char_offset, 1)) : std::string();
    const std::string rule = " (expected lowercase segments [a-z][a-z0-9_]* and a final version vN, "
                             "e.g. 'order.created.v1')";
    switch (c.problem) {
    case name_problem::none: return "valid";
    case name_problem::empty: return "the name is empty" + rule;
    case name_problem::too_long:
        return "the name is " + std::to_string(s.size()) + " characters long, more than the limit of " +
               std::to_string(max_name_size);
    case name_problem::not_terminated: return "not a string literal";
    case name_problem::empty_segment:
        return "segment " + std::to_string(c.segment + 1) + " at offset " + std::to_string(c.segment_begin) +
               " is empty (leading, trailing or doubled '.')";
    case name_problem::bad_first_char: return seg + " must start with a lowercase letter a-z" + found;
    case name_problem::bad_char:
        return seg + " may contain only a-z, 0-9 and '_'" + found + " at offset " + std::to_string(c.char_offset);
    case name_problem::missing_version:
        return seg + " must be the version: 'v' followed by a positive integer, e.g. 'v1'" + rule;
    case name_problem::version_zero: return seg + ": versions start at v1";
    case name_problem::version_leading_zero: return seg + ": the version must not have leading zeros";
    case name_problem::version_too_large:
        return seg + ": the version must be at most " + std::to_string(max_event_version);
    case name_problem::too_few_segments:
        return "the name needs at least two segments before the version " +
               quote_for_message(s.substr(c.segment_begin, c.segment_size)) + ", found " +
               std::to_string(c.segment) + rule;
    }
    return "invalid";
}

// Compile-time rejection. Calling a function that is not constexpr from a consteval
// constructor makes the program ill-formed, and the compiler's message names the function,
// so these names are the diagnostic a user sees for a bad literal.
namespace event_name_literal_error {
inline void name_is_empty() {}
inline void name_is_longer_than_255_characters() {}
inline void argument_is_not_a_string_literal() {}
inline void name_has_an_empty_segment() {}
inline void segment_must_start_with_a_lowercase_letter() {}
inline void segment_may_contain_only_lowercase_letters_digits_and_underscore() {}
inline void last_segment_must_be_a_version_like_v1() {}
inline void version_must_be_at_least_v1() {}
inline void version_must_not_have_leading_zeros() {}
inline void version_is_too_large() {}
inline void name_needs_at_least_two_segments_before_the_version() {}
}  // namespace event_name_literal_error

constexpr void reject_event_name_literal(name_problem p) {
    namespace e = event_name_literal_error;
    switch (p) {
    case name_problem::none: return;
    case name_problem::empty: e::name_is_empty(); break;
    case name_problem::too_long: e::name_is_longer_than_255_characters(); break;
    case name_problem::not_terminated: e::argument_is_not_a_string_literal(); break;
    case name_problem::empty_segment: e::name_has_an_empty_segment(); break;
    case name_problem::bad_first_char: e::segment_must_start_with_a_lowercase_letter(); break;
    case name_problem::bad_char: e::segment_may_contain_only_lowercase_letters_digits_and_underscore(); break;
    case name_problem::missing_version: e::last_segment_must_be_a_version_like_v1(); break;
    case name_problem::version_zero: e::version_must_be_at_least_v1(); break;
    case name_problem::version_leading_zero: e::version_must_not_have_leading_zeros(); break;
    case name_problem::version_too_large: e::version_is_too_large(); break;
    case name_problem::too_few_segments: e::name_needs_at_least_two_segments_before_the_version(); break;
    }
}

struct trusted_name_tag {};

/// The last run-time name this thread found valid, with what its check found. A stream of
/// envelopes (a bridge's ingest) repeats a few names, and each is parsed where it is read and
/// again where it is published: checking a name costs ~350 instructions, comparing it ~30.
/// A plain buffer (no allocation; longer names are not kept), so the thread_local needs no guard.
struct valid_name_memo {
    static constexpr std::size_t capacity = 96;
    char text[capacity]{};
    std::size_t size = 0;  // 0: none kept
    std::size_t base_size = 0;
    int version = 0;

    bool matches(std::string_view s) const noexcept {
        return size != 0 && s.size() == size && std::char_traits<char>::compare(s.data(), text, size) == 0;
    }
    void keep(std::string_view s, const name_check& c) noexcept {
        if (s.size() > capacity) return;
        std::char_traits<char>::copy(text, s.data(), s.size());
        size = s.size();
        base_size = c.base_size;
        version = c.version;
    }
};
inline valid_name_memo& last_valid_name() noexcept {
    thread_local valid_name_memo memo;
    return memo;
}

}  // namespace detail

/// A validated event name: lowercase dot-separated segments `[a-z][a-z0-9_]*`, at least two
/// of them, then a version segment `v<N>` (N >= 1, no leading zeros), at most 255
/// characters: `order.created.v1`, `user.profile.updated.v2`.
///
/// A literal type holding a `std::string_view`. Built from a string literal, it is checked
/// at compile time and views static storage; built by `parse`, it views the caller's
/// string, which must outlive it (use `owned_event_name` to keep a run-time name).
///
/// Thread safety: an immutable value; may be shared freely.
/// Errors: a malformed literal does not compile; `parse` returns errc::invalid_name with id
/// "[courier.event.invalid_name]" and names the offending segment and its offset.
///
/// Example:
/// ```
/// struct order_created {
///     static constexpr courier::event_name event_type{"order.created.v1"};
/// };
/// static_assert(order_created::event_type.base() == "order.created");
/// static_assert(order_created::event_type.version() == 1);
/// auto n = courier::event_name::parse(text);   // result<event_name>, views `text`
/// ```
class event_name {
public:
    /// Checks a string literal at compile time; a malformed literal is a compile error whose
    /// message names the rule it breaks (see `detail::event_name_literal_error`).
    template <std::size_t N>
    consteval event_name(const char (&literal)[N]) {  // NOLINT: implicit on purpose, as for string_view
        if (literal[N - 1] != '\0') detail::reject_event_name_literal(detail::name_problem::not_terminated);
        const std::string_view s(literal, N - 1);
        const auto c = detail::check_event_name(s);
        detail::reject_event_name_literal(c.problem);
        str_ = s;
        base_size_ = c.base_size;
        version_ = c.version;
    }

    /// Parses a run-time name; the result views `text`, which must outlive it. Does not
    /// allocate unless it fails.
    ///
    /// Errors: errc::invalid_name, "[courier.event.invalid_name] '<text>': segment 2 'Created'
    /// at offset 6 must start with a lowercase letter a-z, found 'C'".
    static result<event_name> parse(std::string_view text) {
        auto& memo = detail::last_valid_name();
        if (memo.matches(text)) return event_name(detail::trusted_name_tag{}, text, memo.base_size, memo.version);
        const auto c = detail::check_event_name(text);
        if (c.problem != detail::name_problem::none) {
            return unexpected(errc::invalid_name, "[courier.event.invalid_name] " + detail::quote_for_message(text) +
                                                      ": " + detail::describe_name_problem(c, text));
        }
        memo.keep(text, c);
        return event_name(detail::trusted_name_tag{}, text, c.base_size, c.version);
    }

    /// True when `text` is a valid event name. Does not allocate.
    static constexpr bool is_valid(std::string_view text) noexcept {
        return detail::check_event_name(text).problem == detail::name_problem::none;
    }

    /// The full name, "order.created.v1".
    constexpr std::string_view str() const noexcept { return str_; }
    /// The name without its version, "order.created".
    constexpr std::string_view base() const noexcept { return str_.substr(0, base_size_); }
    /// The version number, 1 for "order.created.v1".
    constexpr int version() const noexcept { return version_; }
    /// Number of segments, the version included (3 for "order.created.v1").
    constexpr std::size_t segment_count() const noexcept {
        std::size_t n = 1;
        for (char c : str_) n += c == '.';
        return n;
    }
    /// Segment `i` (0-based, the version is the last one); empty when `i` is out of range.
    constexpr std::string_view segment(std::size_t i) const noexcept {
        std::size_t begin = 0;
        for (; i > 0; --i) {
            const auto dot = str_.find('.', begin);
            if (dot == std::string_view::npos) return {};
            begin = dot + 1;
        }
        return str_.substr(begin, detail::segment_end(str_, begin) - begin);
    }

    /// The same base with another version, "order.created.v2" for `with_version(2)`; what an
    /// upcaster produces.
    ///
    /// Errors: throws courier_error (errc::invalid_argument) when `v` is outside 1..999999999,
    /// or when the name would pass the 255-character limit (a name at the limit with a version
    /// that has more digits).
    std::string with_version(int v) const {
        if (v < 1 || v > detail::max_event_version) {
            throw courier_error(courier::error(errc::invalid_argument,
                                               "[courier.event.invalid_version] version " + std::to_string(v) +
                                                   " is outside 1.." + std::to_string(detail::max_event_version)));
        }
        std::string s;
        s.reserve(base_size_ + 12);
        s.append(base());
        s += ".v";
        s += std::to_string(v);
        if (s.size() > detail::max_name_size) {
            throw courier_error(courier::error(errc::invalid_argument,
                                               "[courier.event.name_too_long] version " + std::to_string(v) + " makes the name " +
                                                   std::to_string(s.size()) + " characters long, past the limit of " +
                                                   std::to_string(detail::max_name_size)));
        }
        return s;
    }

    /// The full name as a std::string.
    std::string to_string() const { return std::string(str_); }

    friend constexpr bool operator==(const event_name& a, const event_name& b) noexcept { return a.str_ == b.str_; }
    friend constexpr std::strong_ordering operator<=>(const event_name& a, const event_name& b) noexcept {
        return a.str_.compare(b.str_) <=> 0;
    }
    /// Compares with any string; a template so that `name == "order.created.v1"` is not
    /// ambiguous with the literal constructor.
    template <class S>
        requires(std::convertible_to<const S&, std::string_view> && !std::same_as<S, event_name>)
    friend constexpr bool operator==(const event_name& a, const S& b) noexcept {
        return a.str_ == std::string_view(b);
    }

private:
    friend class owned_event_name;
    constexpr event_name(detail::trusted_name_tag, std::string_view s, std::size_t base_size, int version) noexcept
        : str_(s), base_size_(base_size), version_(version) {}

    std::string_view str_;
    std::size_t base_size_ = 0;
    int version_ = 0;
};

/// An event name that owns its text, for names that arrive at run time and must be kept
/// (subscriptions, registries).
///
/// Thread safety: a value type; distinct objects may be used concurrently.
class owned_event_name {
public:
    /// Copies a validated name.
    explicit owned_event_name(event_name n) : text_(n.str()), base_size_(n.base().size()), version_(n.version()) {}

    /// Parses and copies a run-time name.
    ///
    /// Errors: as `event_name::parse`.
    static result<owned_event_name> parse(std::string_view text) {
        auto n = event_name::parse(text);
        if (!n) return unexpected(std::move(n).error());
        return owned_event_name(*n);
    }

    /// A view of this name; valid while this object lives and is not assigned to.
    event_name view() const noexcept { return event_name(detail::trusted_name_tag{}, text_, base_size_, version_); }
    /// The full name.
    const std::string& str() const noexcept { return text_; }
    /// The name without its version.
    std::string_view base() const noexcept { return std::string_view(text_).substr(0, base_size_); }
    /// The version number.
    int version() const noexcept { return version_; }

    friend bool operator==(const owned_event_name& a, const owned_event_name& b) noexcept {
        return a.text_ == b.text_;
    }
    friend std::strong_ordering operator<=>(const owned_event_name& a, const owned_event_name& b) noexcept {
        return a.text_.compare(b.text_) <=> 0;
    }

private:
    std::string text_;
    std::size_t base_size_;
    int version_;
};

COURIER_END_NAMESPACE

/// Hashes the name's text, so `event_name` can key unordered containers.
template <>
struct std::hash<courier::event_name> {
    std::size_t operator()(const courier::event_name& n) const noexcept {
        return std::hash<std::string_view>{}(n.str());
    }
};

template <>
struct std::hash<courier::owned_event_name> {
    std::size_t operator()(const courier::owned_event_name& n) const noexcept {
        return std::hash<std::string_view>{}(n.str());
    }
};
