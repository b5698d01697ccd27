// The bus's topology report: what is published and subscribed, and what looks like a mistake
// (events nobody receives, subscriptions that match nothing known, overlapping wildcards).
#pragma once

#include <courier/core/config.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE

struct topology_report {
    struct subscription_info {
        std::string name;
        std::string pattern;
        std::string mode;
        std::string guarantee;
        std::string group;
    };
    std::vector<std::string> known_events;                   ///< published or declared names
    std::vector<subscription_info> subscriptions;
    std::vector<std::string> events_without_subscribers;     ///< known events that reach nobody
    std::vector<std::string> subscriptions_matching_nothing; ///< subscription names
    std::vector<std::pair<std::string, std::string>> overlapping_wildcards;  ///< pairs of subscription names

    /// A multi-line, human-readable summary (one line per finding).
    std::string to_string() const {
        std::string out = "courier topology: " + std::to_string(known_events.size()) + " events, " +
                          std::to_string(subscriptions.size()) + " subscriptions\n";
        for (auto& e : events_without_subscribers) out += "  warning: event '" + e + "' has no subscriber\n";
        for (auto& s : subscriptions_matching_nothing)
            out += "  warning: subscription '" + s + "' matches no known event\n";
        for (auto& [a, b] : overlapping_wildcards)
            out += "  note: wildcard subscriptions '" + a + "' and '" + b + "' overlap\n";
        return out;
    }
};

namespace detail {

/// Splits a pattern into segments, `>` rewritten as `*` `#` (one or more).
inline std::vector<std::string_view> pattern_segments(std::string_view p) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (start <= p.size()) {
        auto dot = p.find('.', start);
        auto seg = p.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (seg == ">") {
            out.push_back("*");
            out.push_back("#");
        } else {
            out.push_back(seg);
        }
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    return out;
}

/// True when some event name matches both patterns.
inline bool patterns_overlap(const std::vector<std::string_view>& a, const std::vector<std::string_view>& b,
                             std::size_t i = 0, std::size_t j = 0) {
    if (i == a.size() && j == b.size()) return true;
    if (i < a.size() && a[i] == "#") {
        if (patterns_overlap(a, b, i + 1, j)) return true;
        if (j < b.size() && patterns_overlap(a, b, i, j + 1)) return true;
        return false;
    }
    if (j < b.size() && b[j] == "#") {
        if (patterns_overlap(a, b, i, j + 1)) return true;
        if (i < a.size() && patterns_overlap(a, b, i + 1, j)) return true;
        return false;
    }
    if (i == a.size() || j == b.size()) return false;
    if (a[i] == "*" || b[j] == "*" || a[i] == b[j]) return patterns_overlap(a, b, i + 1, j + 1);
    return false;
}

}  // namespace detail
COURIER_END_NAMESPACE
