// The pending entries list (PEL) of one consumer-group partition: the records delivered and
// not yet acked, in offset order, as a ring buffer. A group read appends a run of entries at
// the back, acks mark them, and the acked prefix is popped from the front: all O(1) with
// index arithmetic (a std::deque paid a block allocation every 16 entries and an iterator
// difference for every size() and operator[], a fifth of a record's read + ack).
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

COURIER_BEGIN_NAMESPACE
namespace detail {

/// One delivered, not yet acked record. Acked entries are popped from the front, and the
/// others swept out once they outnumber the unacked ones (see group_partition), so a member
/// that never acks keeps the list at about twice its unacked records, not growing.
struct pel_entry {
    std::uint64_t offset;
    std::uint32_t owner;
    std::uint32_t deliveries;
    time_point last;
    bool acked;
};

/// A growable ring of pel_entry in ascending offset order. Not thread-safe (the group
/// partition's mutex guards it). Capacity is a power of two; it doubles when full and never
/// shrinks below what the list once held (a partition's steady state reuses it).
class pending_list {
public:
    pending_list() = default;
    pending_list(const pending_list&) = delete;
    pending_list& operator=(const pending_list&) = delete;

    bool empty() const noexcept { return size_ == 0; }
    std::size_t size() const noexcept { return size_; }
    pel_entry& operator[](std::size_t i) noexcept { return buf_[(head_ + i) & mask_]; }
    const pel_entry& operator[](std::size_t i) const noexcept { return buf_[(head_ + i) & mask_]; }
    pel_entry& front() noexcept { return buf_[head_]; }
    const pel_entry& front() const noexcept { return buf_[head_]; }

    void push_back(const pel_entry& e) {
        if (COURIER_UNLIKELY(size_ == capacity())) grow(size_ + 1);
        buf_[(head_ + size_) & mask_] = e;
        ++size_;
    }
    /// Room for `n` more entries without growing (a read reserves its batch once).
    void reserve_more(std::size_t n) {
        if (size_ + n > capacity()) grow(size_ + n);
    }
    void pop_front() noexcept {
        head_ = (head_ + 1) & mask_;
        --size_;
    }

    /// Index of the first entry whose offset is >= `offset`, searching from index `from`.
    std::size_t lower_bound(std::uint64_t offset, std::size_t from = 0) const noexcept {
        std::size_t lo = from, hi = size_;
        while (lo < hi) {
            const std::size_t mid = lo + (hi - lo) / 2;
            if ((*this)[mid].offset < offset) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /// Removes every acked entry, keeping the order of the others.
    void remove_acked() noexcept {
        std::size_t out = 0;
        for (std::size_t i = 0; i < size_; ++i) {
            pel_entry& e = (*this)[i];
            if (e.acked) continue;
            if (out != i) (*this)[out] = e;
            ++out;
        }
        size_ = out;
    }

    /// Calls `f(entry)` for each entry, front to back.
    template <class F>
    void for_each(F&& f) const {
        for (std::size_t i = 0; i < size_; ++i) f((*this)[i]);
    }

private:
    std::size_t capacity() const noexcept { return buf_ ? mask_ + 1 : 0; }

    void grow(std::size_t need) {
        std::size_t cap = capacity() ? capacity() : 64;
        while (cap < need) cap *= 2;
        auto fresh = std::make_unique<pel_entry[]>(cap);
        for (std::size_t i = 0; i < size_; ++i) fresh[i] = (*this)[i];
        buf_ = std::move(fresh);
        mask_ = cap - 1;
        head_ = 0;
    }

    std::unique_ptr<pel_entry[]> buf_;
    std::size_t mask_ = 0;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
};

}  // namespace detail
COURIER_END_NAMESPACE
