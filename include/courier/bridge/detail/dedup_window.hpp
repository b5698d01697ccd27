// The inbound deduplication window of a bridge: the last N event ids seen, oldest evicted
// first. A redelivered or re-published message whose id is still in the window is a duplicate.
#pragma once

#include <courier/core/config.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_set>

COURIER_BEGIN_NAMESPACE
namespace bridge::detail {

/// A bounded set of ids with FIFO eviction.
///
/// Thread safety: none (the bridge's I/O thread owns it).
/// Complexity: O(1) average per insert; memory bounded by `capacity` ids.
class dedup_window {
public:
    /// `capacity` 0 disables deduplication (every id is new).
    explicit dedup_window(std::size_t capacity) : capacity_(capacity) {}

    /// Records `id`; false when it is in the window already (a duplicate).
    bool insert(std::string_view id) {
        if (capacity_ == 0) return true;
        std::string key(id);
        if (seen_.count(key)) return false;
        if (order_.size() == capacity_) {
            seen_.erase(order_.front());
            order_.pop_front();
            ++evicted_;
        }
        seen_.insert(key);
        order_.push_back(std::move(key));
        return true;
    }
    /// Forgets `id` (a message handed back to the broker for redelivery must not look like a duplicate).
    void erase(std::string_view id) {
        std::string key(id);
        if (seen_.erase(key) == 0) return;
        for (auto it = order_.begin(); it != order_.end(); ++it)
            if (*it == key) {
                order_.erase(it);
                break;
            }
    }
    bool contains(std::string_view id) const { return seen_.count(std::string(id)) != 0; }
    std::size_t size() const noexcept { return order_.size(); }
    std::size_t capacity() const noexcept { return capacity_; }
    /// Ids pushed out by the bound (a duplicate older than this many messages is not caught).
    std::uint64_t evicted() const noexcept { return evicted_; }

private:
    std::size_t capacity_;
    std::deque<std::string> order_;
    std::unordered_set<std::string> seen_;
    std::uint64_t evicted_ = 0;
};

}  // namespace bridge::detail
COURIER_END_NAMESPACE
