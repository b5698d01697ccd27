// Where messages that could not be delivered end up: handler failures after their retries,
// overflow drops, undecodable input. Each record keeps the envelope, the reason, every error
// and the timestamps, and can be listed, inspected, redriven and purged.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/event/envelope.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Why a message was dead-lettered.
enum class dead_letter_reason : std::uint8_t {
    handler_failed,  ///< the handler threw on every allowed attempt
    non_retryable,   ///< the handler threw an error the retry policy refuses to retry
    overflow,        ///< the subscription's queue was full (drop policy or block timeout)
    unsubscribed,    ///< the subscription went away with the message still queued
    undecodable,     ///< the data could not be converted to the subscriber's type
    shutdown,        ///< the bus stopped before the message could be delivered
};

constexpr std::string_view to_string(dead_letter_reason r) noexcept {
    switch (r) {
    case dead_letter_reason::handler_failed: return "handler_failed";
    case dead_letter_reason::non_retryable: return "non_retryable";
    case dead_letter_reason::overflow: return "overflow";
    case dead_letter_reason::unsubscribed: return "unsubscribed";
    case dead_letter_reason::undecodable: return "undecodable";
    case dead_letter_reason::shutdown: return "shutdown";
    }
    return "unknown";
}

/// One failed attempt.
struct attempt_error {
    std::uint32_t attempt = 0;
    time_point at{};
    std::string error;
};

/// A message that could not be delivered.
struct dead_letter {
    std::uint64_t id = 0;             ///< store-local id, for inspect/redrive/purge
    envelope message;                 ///< the full envelope (data serialized)
    std::string subscription;         ///< the subscription that failed to take it
    dead_letter_reason reason{};
    std::vector<attempt_error> errors;  ///< every attempt's error, oldest first
    std::uint32_t attempts = 0;
    time_point first_failure{};
    time_point last_failure{};
};

/// A bounded, in-memory dead-letter store. When full, the oldest record is evicted and counted
/// (`evicted()`), so even the store itself never loses a message silently.
///
/// Thread safety: every member may be called concurrently.
class dead_letter_store {
public:
    explicit dead_letter_store(std::size_t capacity = 100000) : capacity_(capacity) {}

    /// Adds a record; returns its id.
    std::uint64_t add(dead_letter d) {
        std::lock_guard lock(mutex_);
        d.id = ++next_id_;
        if (capacity_ != 0 && records_.size() >= capacity_) {
            records_.pop_front();
            ++evicted_;
        }
        records_.push_back(std::move(d));
        ++total_;
        return next_id_;
    }
    /// Every record, oldest first (optionally only those of one subscription).
    std::vector<dead_letter> list(std::string_view subscription = {}) const {
        std::lock_guard lock(mutex_);
        std::vector<dead_letter> out;
        for (auto& d : records_)
            if (subscription.empty() || d.subscription == subscription) out.push_back(d);
        return out;
    }
    /// One record by id.
    std::optional<dead_letter> inspect(std::uint64_t id) const {
        std::lock_guard lock(mutex_);
        for (auto& d : records_)
            if (d.id == id) return d;
        return std::nullopt;
    }
    /// Removes and returns a record (for redrive).
    std::optional<dead_letter> take(std::uint64_t id) {
        std::lock_guard lock(mutex_);
        for (auto it = records_.begin(); it != records_.end(); ++it)
            if (it->id == id) {
                auto d = std::move(*it);
                records_.erase(it);
                return d;
            }
        return std::nullopt;
    }
    /// Removes and returns every record (optionally only one subscription's).
    std::vector<dead_letter> take_all(std::string_view subscription = {}) {
        std::lock_guard lock(mutex_);
        std::vector<dead_letter> out;
        std::deque<dead_letter> keep;
        for (auto& d : records_) {
            if (subscription.empty() || d.subscription == subscription) out.push_back(std::move(d));
            else keep.push_back(std::move(d));
        }
        records_.swap(keep);
        return out;
    }
    /// Deletes records (all, or one subscription's); returns how many.
    std::size_t purge(std::string_view subscription = {}) { return take_all(subscription).size(); }

    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return records_.size();
    }
    /// Records ever added.
    std::uint64_t total() const {
        std::lock_guard lock(mutex_);
        return total_;
    }
    /// Records pushed out by the capacity bound.
    std::uint64_t evicted() const {
        std::lock_guard lock(mutex_);
        return evicted_;
    }

private:
    mutable std::mutex mutex_;
    std::deque<dead_letter> records_;
    std::size_t capacity_;
    std::uint64_t next_id_ = 0;
    std::uint64_t total_ = 0;
    std::uint64_t evicted_ = 0;
};

COURIER_END_NAMESPACE
