// A hash map keyed by UUIDs: a flat open-addressing table (no node per entry, no division per
// lookup), for the bridge's deduplication window and the saga runner's sagas.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/uuid.hpp>

#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace detail {

/// A hash map from non-nil UUIDs to V: open addressing with linear probing and backward-shift
/// deletion (no tombstones), grown to keep the load at most one half. The nil UUID marks an
/// empty slot and cannot be a key (a bridge's event ids and a runner's saga ids never are).
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

    /// Starts loading the slot where a look-up of `k` begins (a hint; no effect on contents).
    void prefetch(const uuid& k) const noexcept {
        if (slots_.empty()) return;
        const slot* p = slots_.data() + home(k);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        // g++ 12 drops a __builtin_prefetch whose address is computed from a uuid's words.
        asm volatile("prefetcht0 %0" : : "m"(*reinterpret_cast<const char*>(p)));
#elif defined(__GNUC__) || defined(__clang__)
        __builtin_prefetch(p);
#else
        (void)p;
#endif
    }

    /// Calls `f(key, value)` for every entry (in no particular order).
    template <class F>
    void for_each(F&& f) {
        for (auto& s : slots_)
            if (!s.key.is_nil()) f(s.key, s.value);
    }
    /// Removes every entry (keeps the table's capacity).
    void clear() {
        for (auto& s : slots_) {
            if (s.key.is_nil()) continue;
            s.key = uuid{};
            s.value = V{};
        }
        size_ = 0;
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
        // The bigger table is allocated before anything moves: if that throws, the map is intact.
        std::vector<slot> bigger(slots_.empty() ? 16 : slots_.size() * 2);
        const std::size_t mask = bigger.size() - 1;
        for (auto& s : slots_) {
            if (s.key.is_nil()) continue;
            std::size_t i = std::hash<uuid>{}(s.key) & mask;
            while (!bigger[i].key.is_nil()) i = (i + 1) & mask;
            bigger[i] = std::move(s);
        }
        slots_.swap(bigger);
        mask_ = mask;
    }

    std::vector<slot> slots_;
    std::size_t mask_ = 0;
    std::size_t size_ = 0;
};

}  // namespace detail
COURIER_END_NAMESPACE
