// What stream reads hand out: a `stream_batch` (a run of records of one partition, for plain
// readers) and a `group_batch` (deliveries to a consumer-group member, with their partition and
// delivery count). Both hold the segments they point into, so the records stay valid for the
// batch's lifetime even if retention or compaction removes them from the stream meanwhile.
#pragma once

#include <courier/core/config.hpp>
#include <courier/stream/detail/partition_log.hpp>
#include <courier/stream/record.hpp>

#include <cstdint>
#include <memory>
#include <vector>

COURIER_BEGIN_NAMESPACE

namespace detail {
class group_state;
struct reader_access;
}  // namespace detail

/// Records of one partition, in offset order, as a reader returned them.
///
/// Thread safety: a read-only value; may be shared between threads.
class stream_batch {
public:
    using iterator = const stream_record*;

    stream_batch() = default;

    std::uint32_t partition() const noexcept { return partition_; }
    std::size_t size() const noexcept { return count_; }
    bool empty() const noexcept { return count_ == 0; }
    const stream_record& operator[](std::size_t i) const noexcept { return first_[i]; }
    iterator begin() const noexcept { return first_; }
    iterator end() const noexcept { return first_ + count_; }
    const stream_record& front() const noexcept { return first_[0]; }
    const stream_record& back() const noexcept { return first_[count_ - 1]; }

private:
    friend struct detail::reader_access;
    std::shared_ptr<const detail::segment> pin_;
    const stream_record* first_ = nullptr;
    std::size_t count_ = 0;
    std::uint32_t partition_ = 0;
};

/// One record delivered to a consumer-group member.
struct delivery {
    std::uint32_t partition = 0;
    /// 1 for the first delivery; claims count up (Redis's delivery counter).
    std::uint32_t delivery_count = 0;
    const stream_record* rec = nullptr;

    const stream_record& record() const noexcept { return *rec; }
    std::uint64_t offset() const noexcept { return rec->offset; }
};

/// Deliveries to a consumer-group member (from one read, or one claim).
///
/// Thread safety: a read-only value once returned; reuse one per thread with `read(batch, n)`.
class group_batch {
public:
    using iterator = std::vector<delivery>::const_iterator;

    std::size_t size() const noexcept { return items_.size(); }
    bool empty() const noexcept { return items_.empty(); }
    const delivery& operator[](std::size_t i) const noexcept { return items_[i]; }
    iterator begin() const noexcept { return items_.begin(); }
    iterator end() const noexcept { return items_.end(); }
    /// Forgets the deliveries (they stay pending in the group until acked) and unpins.
    void clear() noexcept {
        items_.clear();
        pins_.clear();
    }

private:
    friend class detail::group_state;
    void pin(const std::shared_ptr<const detail::segment>& s) {
        if (pins_.empty() || pins_.back() != s) pins_.push_back(s);
    }
    std::vector<delivery> items_;
    std::vector<std::shared_ptr<const detail::segment>> pins_;
};

namespace detail {
/// The door readers use to fill a stream_batch.
struct reader_access {
    static stream_batch make(std::uint32_t partition, const read_span& s) {
        stream_batch b;
        b.partition_ = partition;
        b.first_ = s.seg->data() + s.first;
        b.count_ = s.count;
        b.pin_ = s.seg;
        return b;
    }
};
}  // namespace detail

COURIER_END_NAMESPACE
