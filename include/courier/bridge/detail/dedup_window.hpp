// The inbound deduplication window of a bridge: the last N event ids seen, oldest evicted
// first. A redelivered or re-published message whose id is still in the window is a duplicate.
// Ids are the envelopes' UUIDs, kept in a flat open-addressing table and a ring (no node or
// string per message).
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/uuid.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge::detail {

/// A hash map from non-nil UUIDs to V: open addressing with linear probing and backward-shift
/// deletion (no tombstones), grown to keep the load at most one half. The nil UUID marks an
/// empty slot and cannot be a key (an envelope's event_id is never nil: decode refuses it).
///
/// Thread safety: none.
template <class V>
class uuid_map {
public:
    std::size_t size() const noexcept { return size_; }

    V* find(const uuid& k) noexcept {
        if (size_ == 0) return nullptr;
        for (std::size_t i = home(k);; i = (i + 1) & mask_) {
            if (slots_[i].key == k) return &slots_[i].value;
            if (slots_[i].key.is_nil()) return nullptr;
        }
    }
    bool contains(const uuid& k) const noexcept { return const_cast<uuid_map*>(this)->find(k) != nullptr; }

    /// The value of `k`, inserted (default-constructed) when missing; second: inserted.
    std::pair<V*, bool> try_emplace(const uuid& k) {
        if ((size_ + 1) * 2 > slots_.size()) grow();
        std::size_t i = home(k);
        for (;; i = (i + 1) & mask_) {
            if (slots_[i].key == k) return {&slots_[i].value, false};
            if (slots_[i].key.is_nil()) break;
        }
        slots_[i].key = k;
        slots_[i].value = V{};
        ++size_;
        return {&slots_[i].value, true};
    }

    /// Removes `k`; false when it was not there.
    bool erase(const uuid& k) noexcept {
        if (size_ == 0) return false;
        std::size_t i = home(k);
        for (;; i = (i + 1) & mask_) {
            if (slots_[i].key == k) break;
            if (slots_[i].key.is_nil()) return false;
        }
        // Backward shift: pull later entries of the probe run into the hole when their home
        // does not lie cyclically in (hole, j].
        std::size_t hole = i;
        for (std::size_t j = (i + 1) & mask_; !slots_[j].key.is_nil(); j = (j + 1) & mask_) {
            const std::size_t h = home(slots_[j].key);
            const bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
            if (stays) continue;
            slots_[hole] = std::move(slots_[j]);
            hole = j;
        }
        slots_[hole].key = uuid{};
        slots_[hole].value = V{};
        --size_;
        return true;
    }

private:
    struct slot {
        uuid key{};
        V value{};
    };
    std::size_t home(const uuid& k) const noexcept { return std::hash<uuid>{}(k) & mask_; }
    void grow() {
        std::vector<slot> old;
        old.swap(slots_);
        slots_.resize(old.empty() ? 16 : old.size() * 2);
        mask_ = slots_.size() - 1;
        for (auto& s : old) {
            if (s.key.is_nil()) continue;
            std::size_t i = home(s.key);
            while (!slots_[i].key.is_nil()) i = (i + 1) & mask_;
            slots_[i] = std::move(s);
        }
    }

    std::vector<slot> slots_;
    std::size_t mask_ = 0;
    std::size_t size_ = 0;
};

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
