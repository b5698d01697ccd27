// Five-field cron expressions (minute hour day-of-month month day-of-week) for repeatable jobs:
// `*`, values, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`, month and weekday names, and
// the @hourly/@daily/@weekly/@monthly/@yearly shorthands. Evaluated in UTC on courier's clock.
// A malformed expression is a typed error naming the field. No Asio, no allocation to evaluate.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>

#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE

/// A parsed cron expression.
///
/// Day matching follows Vixie cron: when both day-of-month and day-of-week are restricted (do
/// not start with `*`), a day matches if either does; otherwise the restricted one decides.
/// Day-of-week 0 and 7 are Sunday.
///
/// Thread safety: a value; const members may be called concurrently.
/// Errors: parse returns errc::invalid_argument with id [courier.jobs.cron.invalid_field] and a
/// message that names the field ("day-of-month field '32' ...: 32 is out of range 1-31"), or
/// [courier.jobs.cron.field_count] when there are not exactly five fields.
///
/// Example:
/// ```
/// auto every_15_in_office_hours = courier::cron_expression::parse("*/15 9-17 * * mon-fri").value();
/// courier::time_point next = *every_15_in_office_hours.next_after(clock.now());
/// ```
class cron_expression {
public:
    /// Parses `text`; see the class comment for the syntax and the errors.
    static result<cron_expression> parse(std::string_view text) {
        cron_expression c;
        c.text_ = std::string(text);
        std::string_view t = trim(text);
        if (!t.empty() && t.front() == '@') {
            if (t == "@hourly") t = "0 * * * *";
            else if (t == "@daily" || t == "@midnight") t = "0 0 * * *";
            else if (t == "@weekly") t = "0 0 * * 0";
            else if (t == "@monthly") t = "0 0 1 * *";
            else if (t == "@yearly" || t == "@annually") t = "0 0 1 1 *";
            else
                return unexpected(errc::invalid_argument, "[courier.jobs.cron.invalid_field] unknown shorthand '" +
                                                              std::string(t) + "' (use @hourly, @daily, @weekly, "
                                                                               "@monthly or @yearly)");
        }
        std::array<std::string_view, 5> fields;
        std::size_t n = 0;
        while (!t.empty()) {
            const auto end = t.find_first_of(" \t");
            if (n == 5) {
                n = 6;
                break;
            }
            fields[n++] = t.substr(0, end);
            t = end == std::string_view::npos ? std::string_view{} : trim(t.substr(end));
        }
        if (n != 5) {
            return unexpected(errc::invalid_argument,
                              "[courier.jobs.cron.field_count] '" + c.text_ + "' has " +
                                  (n > 5 ? std::string("more than 5") : std::to_string(n)) +
                                  " fields; a cron expression has 5: minute hour day-of-month month day-of-week");
        }
        for (std::size_t i = 0; i < 5; ++i) {
            auto bits = parse_field(fields[i], specs[i], c.text_);
            if (!bits) return unexpected(bits.error());
            c.bits_[i] = *bits;
        }
        // Sunday is both 0 and 7.
        if (c.bits_[4] & (1ULL << 7)) c.bits_[4] = (c.bits_[4] | 1ULL) & ~(1ULL << 7);
        c.dom_star_ = fields[2].front() == '*';
        c.dow_star_ = fields[4].front() == '*';
        return c;
    }

    /// The first whole minute strictly after `t` that matches, or nullopt when none comes
    /// within five years (e.g. "0 0 30 2 *": February 30th).
    std::optional<time_point> next_after(time_point t) const {
        using namespace std::chrono;
        auto m = floor<minutes>(t) + minutes(1);
        const auto limit = m + hours(24 * 366 * 5);
        while (m < limit) {
            const auto day = floor<days>(m);
            const year_month_day ymd(day);
            const unsigned month = static_cast<unsigned>(ymd.month());
            if (!has(3, month)) {
                // First day of the next month.
                const auto next = year_month_day(ymd.year() / ymd.month() / 1) + months(1);
                m = time_point_cast<minutes>(sys_days(next));
                continue;
            }
            if (!day_matches(ymd, weekday(day))) {
                m = time_point_cast<minutes>(day + days(1));
                continue;
            }
            const auto hour = static_cast<unsigned>(duration_cast<hours>(m - day).count());
            if (!has(1, hour)) {
                m = time_point_cast<minutes>(day + hours(hour + 1));
                continue;
            }
            const auto minute = static_cast<unsigned>(duration_cast<minutes>(m - day - hours(hour)).count());
            if (!has(0, minute)) {
                m += minutes(1);
                continue;
            }
            return time_point_cast<duration>(m);
        }
        return std::nullopt;
    }

    /// True when the minute containing `t` matches.
    bool matches(time_point t) const {
        using namespace std::chrono;
        const auto day = floor<days>(t);
        const year_month_day ymd(day);
        const auto since = floor<minutes>(t) - day;
        const auto hour = static_cast<unsigned>(duration_cast<hours>(since).count());
        const auto minute = static_cast<unsigned>((since - hours(hour)).count());
        return has(0, minute) && has(1, hour) && has(3, static_cast<unsigned>(ymd.month())) &&
               day_matches(ymd, weekday(day));
    }

    const std::string& text() const noexcept { return text_; }

private:
    struct field_spec {
        const char* name;
        unsigned min;
        unsigned max;
        const char* const* names;  // 3-letter names for min.., or nullptr
    };
    static constexpr const char* month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                                  "jul", "aug", "sep", "oct", "nov", "dec", nullptr};
    static constexpr const char* day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", nullptr};
    static constexpr field_spec specs[5] = {{"minute", 0, 59, nullptr},
                                            {"hour", 0, 23, nullptr},
                                            {"day-of-month", 1, 31, nullptr},
                                            {"month", 1, 12, month_names},
                                            {"day-of-week", 0, 7, day_names}};

    bool has(int field, unsigned v) const noexcept { return (bits_[field] >> v) & 1ULL; }

    bool day_matches(const std::chrono::year_month_day& ymd, std::chrono::weekday wd) const noexcept {
        const bool dom = has(2, static_cast<unsigned>(ymd.day()));
        const bool dow = has(4, wd.c_encoding());
        if (dom_star_ && dow_star_) return true;
        if (dom_star_) return dow;
        if (dow_star_) return dom;
        return dom || dow;
    }

    static std::string_view trim(std::string_view s) noexcept {
        while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
        while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
        return s;
    }

    static result<std::uint64_t> parse_field(std::string_view field, const field_spec& spec, const std::string& whole) {
        auto fail = [&](const std::string& why) {
            return unexpected(errc::invalid_argument, "[courier.jobs.cron.invalid_field] " + std::string(spec.name) +
                                                          " field '" + std::string(field) + "' in '" + whole + "': " + why);
        };
        const std::string range = std::to_string(spec.min) + "-" + std::to_string(spec.max);
        std::uint64_t bits = 0;
        std::string_view rest = field;
        while (true) {
            const auto comma = rest.find(',');
            std::string_view item = rest.substr(0, comma);
            if (item.empty()) return fail("empty list item");
            unsigned lo = spec.min, hi = spec.max, step = 1;
            std::string_view span = item;
            if (const auto slash = item.find('/'); slash != std::string_view::npos) {
                span = item.substr(0, slash);
                auto s = number(item.substr(slash + 1));
                if (!s || *s == 0) return fail("step '" + std::string(item.substr(slash + 1)) + "' is not a positive number");
                step = *s;
            }
            if (span != "*") {
                const auto dash = span.find('-');
                auto a = value(span.substr(0, dash), spec);
                if (!a) return fail("'" + std::string(span.substr(0, dash)) + "' is not a number or name");
                lo = *a;
                if (dash != std::string_view::npos) {
                    auto b = value(span.substr(dash + 1), spec);
                    if (!b) return fail("'" + std::string(span.substr(dash + 1)) + "' is not a number or name");
                    hi = *b;
                } else {
                    hi = item.find('/') != std::string_view::npos ? spec.max : lo;  // "a/n" means a..max step n
                }
                if (lo < spec.min || lo > spec.max) return fail(std::to_string(lo) + " is out of range " + range);
                if (hi < spec.min || hi > spec.max) return fail(std::to_string(hi) + " is out of range " + range);
                if (lo > hi) return fail("range " + std::to_string(lo) + "-" + std::to_string(hi) + " is reversed");
            }
            for (unsigned v = lo; v <= hi; v += step) bits |= 1ULL << v;
            if (comma == std::string_view::npos) break;
            rest = rest.substr(comma + 1);
        }
        return bits;
    }

    static std::optional<unsigned> number(std::string_view s) noexcept {
        if (s.empty() || s.size() > 4) return std::nullopt;
        unsigned v = 0;
        for (char ch : s) {
            if (ch < '0' || ch > '9') return std::nullopt;
            v = v * 10 + static_cast<unsigned>(ch - '0');
        }
        return v;
    }

    static std::optional<unsigned> value(std::string_view s, const field_spec& spec) noexcept {
        if (auto n = number(s)) return n;
        if (!spec.names || s.size() != 3) return std::nullopt;
        for (unsigned i = 0; spec.names[i]; ++i) {
            bool same = true;
            for (std::size_t k = 0; k < 3; ++k)
                same = same && std::tolower(static_cast<unsigned char>(s[k])) == spec.names[i][k];
            if (same) return spec.min + i;
        }
        return std::nullopt;
    }

    std::array<std::uint64_t, 5> bits_{};
    bool dom_star_ = true;
    bool dow_star_ = true;
    std::string text_;
};

COURIER_END_NAMESPACE
