// The inbound deduplication window of a bridge: the last N event ids seen, oldest evicted
// first. A redelivered or re-published message whose id is still in the window is a duplicate.
// Ids are the envelopes' UUIDs, kept in a flat open-addressing table and a ring (no node or
// string per message).
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/detail/uuid_map.hpp>
#include <courier/core/uuid.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge::detail {

using courier::detail::uuid_map;

/// A bounded set of event ids with FIFO eviction.
///
/// Thread safety: none (the bridge's I/O thread owns it).
/// Complexity: O(1) average per insert, no allocation once the window is full; memory bounded
/// by `capacity` ids (about 48 bytes each); `erase` is O(capacity) (a rare path: a message
/// handed back to the broker).
class dedup_window {
public:
    /// `capacity` 0 disables deduplication (every id is new).
    explicit dedup_window(std::size_t capacity) : capacity_(capacity) {}

    /// Records `id`; false when it is in the window already (a duplicate). The nil id is never
    /// recorded (always new).
    bool insert(const uuid& id) {
        if (capacity_ == 0 || id.is_nil()) return true;
        if (!seen_.try_emplace(id).second) return false;
        if (count_ == capacity_) {
            seen_.erase(order_[head_]);
            order_[head_] = id;
            if (++head_ == capacity_) head_ = 0;  // a division per message cost more than the look-up
            ++evicted_;
            return true;
        }
        // Not full: no eviction happened yet, so the ring has not wrapped.
        const std::size_t at = head_ + count_ < capacity_ ? head_ + count_ : head_ + count_ - capacity_;
        if (at < order_.size()) order_[at] = id;
        else order_.push_back(id);
        ++count_;
        return true;
    }
    /// Starts loading the slots that inserting `id`, `ahead` inserts from now, will touch: its
    /// own and the one of the id it will evict. In a window of 100,000 ids the table is
    /// megabytes, so each is a cache miss that otherwise stalls the insert (found in
    /// bridge.kafka's profile: most of on_message's own time). `ahead` is at most `lookahead`.
    void prefetch(const uuid& id, std::size_t ahead) const noexcept {
        if (capacity_ <= lookahead || ahead > lookahead) return;
        seen_.prefetch(id);
        if (count_ == capacity_) {
            const std::size_t at = head_ + ahead < capacity_ ? head_ + ahead : head_ + ahead - capacity_;
            seen_.prefetch(order_[at]);
        }
    }
    /// How far ahead of its insert an id is worth prefetching (a delivery's work is microseconds).
    static constexpr std::size_t lookahead = 2;

    /// Forgets `id` (a message handed back to the broker for redelivery must not look like a duplicate).
    void erase(const uuid& id) {
        if (!seen_.erase(id)) return;
        // Close the gap in the ring: the ids after it move one place back.
        std::size_t pos = 0;
        while (pos < count_ && order_[(head_ + pos) % capacity_] != id) ++pos;
        for (; pos + 1 < count_; ++pos) order_[(head_ + pos) % capacity_] = order_[(head_ + pos + 1) % capacity_];
        --count_;
    }
    bool contains(const uuid& id) const noexcept { return seen_.contains(id); }
    std::size_t size() const noexcept { return count_; }
    std::size_t capacity() const noexcept { return capacity_; }
    /// Ids pushed out by the bound (a duplicate older than this many messages is not caught).
    std::uint64_t evicted() const noexcept { return evicted_; }

private:
    struct present {};
    std::size_t capacity_;
    std::vector<uuid> order_;  // a ring of `count_` ids from `head_` (grows up to capacity_)
    std::size_t head_ = 0;
    std::size_t count_ = 0;
    uuid_map<present> seen_;
    std::uint64_t evicted_ = 0;
};

}  // namespace bridge::detail
COURIER_END_NAMESPACE
