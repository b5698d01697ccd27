// One partition of a stream: a segmented append-only log. Appends (and trimming, compaction)
// are serialized by a per-partition mutex; reads take no lock on the fast path: a reader holds
// the segment it is on by shared_ptr and sees the records [0, count) that the writer published
// with a release store, so retention and compaction never free a record under a reader.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/detail/spin_lock.hpp>
#include <courier/stream/record.hpp>
#include <courier/stream/stream_options.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace detail {

inline constexpr std::uint64_t no_offset = std::numeric_limits<std::uint64_t>::max();

/// Storage of segments that retention or compaction freed, kept for the next ones: a stream in
/// steady state (appending as fast as it trims) then never touches fresh memory, whose page
/// faults cost more than the appends themselves. Shared by the partition and its segments, so
/// a segment a reader frees late still finds it. A block holds `capacity` records followed by
/// their sizes (one 32-bit word each, see segment::size_at).
class segment_pool {
public:
    segment_pool(std::uint32_t capacity, std::size_t keep) : capacity_(capacity), keep_(keep) {}
    ~segment_pool() {
        for (auto* p : free_) release(p);
    }
    segment_pool(const segment_pool&) = delete;
    segment_pool& operator=(const segment_pool&) = delete;

    std::uint32_t capacity() const noexcept { return capacity_; }
    stream_record* take() {
        {
            std::lock_guard lock(mutex_);
            if (!free_.empty()) {
                auto* p = free_.back();
                free_.pop_back();
                return p;
            }
        }
        static_assert(alignof(stream_record) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
        return static_cast<stream_record*>(::operator new(block_bytes()));
    }
    void give(stream_record* p) noexcept {
        {
            std::lock_guard lock(mutex_);
            if (free_.size() < keep_) {
                free_.push_back(p);  // reserved up front: never allocates here
                return;
            }
        }
        release(p);
    }
    void reserve() { free_.reserve(keep_); }

private:
    std::size_t block_bytes() const noexcept { return std::size_t{capacity_} * (sizeof(stream_record) + sizeof(std::uint32_t)); }
    // Unsized: clang 14 declares the sized ::operator delete only with -fsized-deallocation.
    void release(stream_record* p) noexcept { ::operator delete(static_cast<void*>(p)); }

    const std::uint32_t capacity_;
    const std::size_t keep_;
    std::mutex mutex_;
    std::vector<stream_record*> free_;
};

/// A fixed-capacity run of records, allocated once (records never move, so readers may hold
/// pointers into it). Written by one thread at a time (the partition's mutex); read by any.
/// A dense segment holds offsets base, base+1, ...; a sparse one (made by compaction) holds
/// increasing offsets with gaps and is searched by binary search.
///
/// Cache-line aligned, with the count on a line of its own: readers' reference counts (in the
/// shared_ptr's control block, just before the object) and the writer's per-append count store
/// each stay off the line of fields both sides read.
class alignas(cache_line_size) segment {
public:
    segment(std::uint64_t base, std::shared_ptr<segment_pool> pool, bool dense)
        : base_(base), capacity_(pool->capacity()), dense_(dense), pool_(std::move(pool)), records_(pool_->take()),
          sizes_(reinterpret_cast<std::uint32_t*>(records_ + capacity_)) {}
    ~segment() {
        // Records whose strings all sit in their small-string buffers and that have no headers
        // own nothing: their destructors would only read them again (cold memory by now).
        if (owns_memory_) {
            const auto n = count_.load(std::memory_order_acquire);
            for (std::uint32_t i = 0; i < n; ++i) std::destroy_at(&records_[i]);
        }
        pool_->give(records_);
    }
    segment(const segment&) = delete;
    segment& operator=(const segment&) = delete;

    /// The lowest offset this segment covers.
    std::uint64_t base() const noexcept { return base_; }
    /// One past the highest offset it covers: set when sealed; no_offset while it is active.
    std::uint64_t end() const noexcept { return end_.load(std::memory_order_acquire); }
    bool sealed() const noexcept { return sealed_.load(std::memory_order_acquire); }
    /// Records published so far.
    std::uint32_t count() const noexcept { return count_.load(std::memory_order_acquire); }
    bool full() const noexcept { return count_.load(std::memory_order_relaxed) == capacity_; }
    std::uint32_t capacity() const noexcept { return capacity_; }
    const stream_record& at(std::uint32_t i) const noexcept { return records_[i]; }
    const stream_record* data() const noexcept { return records_; }
    bool dense() const noexcept { return dense_; }
    /// Record `i`'s size_bytes(), from a side array (16 per cache line), so that retention
    /// does not read the record itself.
    std::size_t size_at(std::uint32_t i) const noexcept {
        const auto n = sizes_[i];
        return n == large_size ? records_[i].size_bytes() : n;
    }
    /// Record `i`'s offset (a dense segment computes it without reading the record).
    std::uint64_t offset_at(std::uint32_t i) const noexcept { return dense_ ? base_ + i : records_[i].offset; }

    /// Index of the first of the `n` first records whose offset is >= pos (n if none).
    std::uint32_t locate(std::uint64_t pos, std::uint32_t n) const noexcept {
        if (dense_) {
            if (pos <= base_) return 0;
            const auto d = pos - base_;
            return d >= n ? n : static_cast<std::uint32_t>(d);
        }
        const auto* it = std::lower_bound(records_, records_ + n, pos,
                                          [](const stream_record& r, std::uint64_t p) { return r.offset < p; });
        return static_cast<std::uint32_t>(it - records_);
    }

    // ---- writer side (the partition's mutex held)
    void push(stream_record&& r) {
        const auto n = count_.load(std::memory_order_relaxed);
        std::construct_at(&records_[n], std::move(r));
        note_written(n);
        count_.store(n + 1, std::memory_order_release);  // publishes the record to lock-free readers
    }
    /// Builds the next record in place from what `make` returns (guaranteed copy elision: no
    /// temporary, no move), then publishes it.
    template <class Make>
    void emplace(Make&& make) {
        const auto n = count_.load(std::memory_order_relaxed);
        ::new (static_cast<void*>(&records_[n])) stream_record(make());
        note_written(n);
        count_.store(n + 1, std::memory_order_release);
    }
    void push_copy(const stream_record& r) {
        const auto n = count_.load(std::memory_order_relaxed);
        std::construct_at(&records_[n], r);
        note_written(n);
        count_.store(n + 1, std::memory_order_release);
    }
    /// No record will be added; `end` is where the next segment starts.
    void seal(std::uint64_t end) noexcept {
        end_.store(end, std::memory_order_release);
        sealed_.store(true, std::memory_order_release);
    }

private:
    static constexpr std::uint32_t large_size = std::numeric_limits<std::uint32_t>::max();

    static bool in_small_buffer(const std::string& str) noexcept {
        const auto* p = reinterpret_cast<const char*>(str.data());
        const auto* self = reinterpret_cast<const char*>(&str);
        return p >= self && p < self + sizeof(std::string);
    }
    // Records the size of the record just built at `i` and whether it owns memory.
    void note_written(std::uint32_t i) noexcept {
        const auto& r = records_[i];
        const auto size = r.size_bytes();
        sizes_[i] = size < large_size ? static_cast<std::uint32_t>(size) : large_size;
        if (r.headers || !in_small_buffer(r.payload) || !in_small_buffer(r.key)) owns_memory_ = true;
    }

    const std::uint64_t base_;
    const std::uint32_t capacity_;
    const bool dense_;
    bool owns_memory_ = false;  // written by the writer; read by the destructor (after the last reader)
    std::shared_ptr<segment_pool> pool_;
    stream_record* records_;
    std::uint32_t* sizes_;
    std::atomic<std::uint64_t> end_{no_offset};
    std::atomic<bool> sealed_{false};
    alignas(cache_line_size) std::atomic<std::uint32_t> count_{0};
};

/// Records handed to a reader: a run inside one segment, which the span keeps alive.
struct read_span {
    std::shared_ptr<const segment> seg;
    std::uint32_t first = 0;
    std::uint32_t count = 0;
};

enum class read_status : std::uint8_t { ok, empty, trimmed };

/// One partition.
///
/// Thread safety: writer calls (append, trim_*, compact) may come from any thread (they lock);
/// read/find/offset_at_time may run concurrently with them and with each other.
class partition_log {
public:
    partition_log(std::uint32_t id, const stream_options& o)
        : id_(id), segment_records_(std::max<std::uint32_t>(16, o.segment_records)), compact_(o.compact),
          compact_every_(o.compact_every_segments), pool_(std::make_shared<segment_pool>(segment_records_, 4)) {
        pool_->reserve();
    }

    std::uint32_t id() const noexcept { return id_; }

    /// What one append did.
    struct append_outcome {
        std::uint64_t offset = 0;
        std::size_t trimmed = 0;
        std::size_t compacted = 0;
        time_point timestamp{};
    };

    /// Appends `r` (its offset and timestamp are set here), then applies retention.
    append_outcome append(stream_record&& r, time_point now, const retention_policy& ret) {
        return append_with(r.size_bytes(), r.key, now, ret, [&](std::uint64_t offset, time_point ts) {
            r.offset = offset;
            r.timestamp = ts;
            return std::move(r);
        });
    }

    /// Appends the record `fill` builds in place from key/payload/headers views (the hot path:
    /// no temporary record). `size` is its size_bytes().
    append_outcome append(std::string_view key, std::string_view payload, record_headers* headers, time_point now,
                          const retention_policy& ret) {
        std::size_t size = key.size() + payload.size();
        if (headers)
            for (const auto& [k, v] : *headers) size += k.size() + v.size();
        return append_with(size, key, now, ret, [&](std::uint64_t offset, time_point ts) {
            // Strings built by their constructors: cheaper than default + assign.
            return stream_record{offset, ts, std::string(payload), std::string(key),
                                 headers ? std::make_shared<const record_headers>(std::move(*headers)) : nullptr};
        });
    }

private:
    template <class Fill>
    append_outcome append_with(std::size_t size, std::string_view key, time_point now, const retention_policy& ret,
                               Fill&& fill) {
        std::lock_guard lock(mutex_);
        append_outcome out;
        if (!active_ || active_->full()) out.compacted += roll_locked();
        // Timestamps never decrease within a partition, so replay by time can binary-search.
        const auto ts = std::max(now, last_timestamp_);
        last_timestamp_ = ts;
        if (compact_ && !key.empty()) latest_[std::string(key)] = next_;
        const auto offset = next_;
        active_->emplace([&] { return fill(offset, ts); });
        out.offset = next_;
        out.timestamp = ts;
        ++totals_.appended;
        ++next_;
        ++records_;
        bytes_ += size;
        // Release is enough: a waiter orders itself against appends through the mutex (see
        // append_notifier), so the hot path has no store-load fence.
        end_.store(next_, std::memory_order_release);
        while ((ret.max_records && records_ > ret.max_records) || (ret.max_bytes && bytes_ > ret.max_bytes)) {
            if (!trim_one_locked()) break;
            ++out.trimmed;
        }
        if (ret.max_age > duration::zero()) out.trimmed += trim_older_locked(ts - ret.max_age);
        return out;  // trim_one_locked and compact_locked count into totals_
    }

public:

    /// Trims every record stamped at or before `cutoff`; returns how many.
    std::size_t trim_older_than(time_point cutoff) {
        std::lock_guard lock(mutex_);
        return trim_older_locked(cutoff);
    }

    /// The timestamp of the oldest record held, if any.
    std::optional<time_point> oldest_timestamp() const {
        std::lock_guard lock(mutex_);
        if (records_ == 0) return std::nullopt;
        return segments_.front()->at(front_idx_).timestamp;
    }

    /// Keeps only the latest record of each key in the sealed segments (see stream_options).
    compaction_report compact() {
        std::lock_guard lock(mutex_);
        return compact_locked();
    }

    partition_info info() const {
        std::lock_guard lock(mutex_);
        partition_info i;
        i.partition = id_;
        i.start_offset = start_.load(std::memory_order_relaxed);
        i.end_offset = next_;
        i.records = records_;
        i.bytes = bytes_;
        i.segments = segments_.size();
        return i;
    }
    /// Records appended, trimmed by retention, removed by compaction (counted under the lock:
    /// no atomic read-modify-write per append).
    struct counts {
        std::uint64_t appended = 0, trimmed = 0, compacted = 0;
    };
    counts totals() const {
        std::lock_guard lock(mutex_);
        return totals_;
    }

    // ---- reader side

    /// The first offset still available.
    std::uint64_t start_offset() const noexcept { return start_.load(std::memory_order_acquire); }
    /// The offset the next append gets.
    std::uint64_t end_offset() const noexcept { return end_.load(std::memory_order_acquire); }

    /// Passes through the append lock once: every append that finished before is visible to
    /// this thread after it, and every append that starts after sees what this thread wrote
    /// before (a waiter's registration). See append_notifier.
    void sync() const { std::lock_guard lock(mutex_); }

    /// Up to `max` records at or after `pos`, from the segment `cursor` is on (moving it to the
    /// next segment when that one is done). Advances `pos` past what it returns. Lock-free
    /// unless the cursor moves to another segment.
    read_status read(std::shared_ptr<const segment>& cursor, std::uint64_t& pos, std::size_t max, read_span& out) const {
        if (pos < start_offset()) return read_status::trimmed;
        if (!cursor || pos < cursor->base()) {
            cursor = lookup(pos);
            // Retention may have run since the check above: a segment that left the index
            // makes lookup return a later one, whose first record is past `pos`.
            if (pos < start_offset()) return read_status::trimmed;
        }
        while (cursor) {
            // sealed before count: once sealed, the count read next is final.
            const bool sealed = cursor->sealed();
            const auto n = sealed || !cursor->dense() ? cursor->count() : published_in_active(*cursor);
            const auto idx = cursor->locate(pos, n);
            if (idx < n) {
                const auto cnt = static_cast<std::uint32_t>(std::min<std::size_t>(n - idx, max));
                out.seg = cursor;
                out.first = idx;
                out.count = cnt;
                pos = cursor->at(idx + cnt - 1).offset + 1;
                return read_status::ok;
            }
            if (!sealed) return read_status::empty;
            pos = std::max(pos, cursor->end());
            cursor = lookup(pos);
            // As above: trimming that ran concurrently (start_ is stored before a segment leaves
            // the index, and lookup takes the index lock) is seen here, never skipped silently.
            if (pos < start_offset()) return read_status::trimmed;
        }
        return read_status::empty;
    }

    /// The record at exactly `offset` if it is still available (not trimmed, not compacted
    /// away), with the segment that holds it in `pin`.
    const stream_record* find(std::uint64_t offset, std::shared_ptr<const segment>& pin) const {
        if (offset < start_offset()) return nullptr;
        auto seg = lookup(offset);
        if (!seg) return nullptr;
        const auto n = seg->count();
        const auto idx = seg->locate(offset, n);
        if (idx >= n || seg->at(idx).offset != offset) return nullptr;
        pin = seg;
        return &seg->at(idx);
    }

    /// The offset of the first record whose timestamp is >= t (end_offset() if none).
    std::uint64_t offset_at_time(time_point t) const {
        const auto start = start_offset();
        std::shared_lock lock(index_mutex_);
        for (const auto& s : segments_) {
            const auto n = s->count();
            if (n == 0 || s->at(n - 1).timestamp < t || s->at(n - 1).offset < start) continue;
            const auto* it = std::lower_bound(s->data(), s->data() + n, t,
                                              [](const stream_record& r, time_point v) { return r.timestamp < v; });
            return std::max(it->offset, start);
        }
        return end_offset();
    }

private:
    // Records published in `seg`, a dense segment that was active a moment ago, from the
    // partition's end (a line the reader loads anyway) rather than from the segment's count,
    // which the appender writes every append. A segment is sealed only when full, so an end
    // past it means all of it; the end's release store follows the record's construction.
    std::uint32_t published_in_active(const segment& seg) const noexcept {
        const auto e = end_offset();
        const auto b = seg.base();
        return e <= b ? 0 : static_cast<std::uint32_t>(std::min<std::uint64_t>(e - b, seg.capacity()));
    }

    // The first segment whose end is past `pos` (the active segment's end is unbounded).
    std::shared_ptr<const segment> lookup(std::uint64_t pos) const {
        std::shared_lock lock(index_mutex_);
        auto it = std::upper_bound(segments_.begin(), segments_.end(), pos,
                                   [](std::uint64_t p, const std::shared_ptr<segment>& s) { return p < s->end(); });
        return it == segments_.end() ? nullptr : *it;
    }

    // Starts a new active segment. The new segment is in the index before the old one is
    // sealed, so a reader that sees the seal finds its successor. Returns records compacted.
    std::size_t roll_locked() {
        auto seg = std::make_shared<segment>(next_, pool_, true);
        {
            std::unique_lock lock(index_mutex_);
            segments_.push_back(seg);
        }
        std::size_t compacted = 0;
        if (active_) {
            active_->seal(next_);
            ++sealed_since_compaction_;
        }
        active_ = std::move(seg);
        if (compact_ && compact_every_ && sealed_since_compaction_ >= compact_every_) compacted = compact_locked().removed;
        return compacted;
    }

    // Drops the oldest record (logically: its segment is freed once exhausted and unpinned).
    bool trim_one_locked() {
        if (records_ == 0) return false;
        const auto& f = *segments_.front();
        // Size and offset without reading the record (64 Ki records back: cold memory).
        const auto offset = f.offset_at(front_idx_);
        bytes_ -= f.size_at(front_idx_);
        --records_;
        if (compact_) {
            const auto& r = f.at(front_idx_);
            if (!r.key.empty()) {
                if (auto it = latest_.find(r.key); it != latest_.end() && it->second == r.offset) latest_.erase(it);
            }
        }
        start_.store(offset + 1, std::memory_order_release);
        ++totals_.trimmed;
        ++front_idx_;
        pop_exhausted_front_locked();
        return true;
    }

    std::size_t trim_older_locked(time_point cutoff) {
        std::size_t n = 0;
        // A record expires once its age reaches max_age: timestamp <= now - max_age.
        while (records_ > 0 && segments_.front()->at(front_idx_).timestamp <= cutoff) {
            trim_one_locked();
            ++n;
        }
        return n;
    }

    // Removes sealed front segments whose records are all trimmed (never the active one).
    void pop_exhausted_front_locked() {
        while (front_idx_ >= segments_.front()->count() && segments_.size() > 1 && segments_.front()->sealed()) {
            {
                std::unique_lock lock(index_mutex_);
                segments_.pop_front();
            }
            front_idx_ = 0;
        }
    }

    // Rewrites the sealed segments with only the latest record of each key (copies: the old
    // segments may be pinned by readers, who keep reading them unchanged).
    compaction_report compact_locked() {
        compaction_report rep;
        sealed_since_compaction_ = 0;
        if (!compact_ || segments_.size() < 2) return rep;
        const std::size_t sealed = segments_.size() - 1;
        std::deque<std::shared_ptr<segment>> out;
        std::shared_ptr<segment> cur;
        for (std::size_t i = 0; i < sealed; ++i) {
            const auto& s = *segments_[i];
            const auto n = s.count();
            for (std::uint32_t j = i == 0 ? front_idx_ : 0; j < n; ++j) {
                const auto& rec = s.at(j);
                bool keep = rec.key.empty();
                if (!keep) {
                    auto it = latest_.find(rec.key);
                    keep = it != latest_.end() && it->second == rec.offset;
                }
                if (!keep) {
                    ++rep.removed;
                    rep.removed_bytes += rec.size_bytes();
                    continue;
                }
                if (!cur || cur->full()) {
                    const auto base = cur ? rec.offset : segments_.front()->base();
                    if (cur) cur->seal(rec.offset);
                    cur = std::make_shared<segment>(base, pool_, false);
                    out.push_back(cur);
                }
                cur->push_copy(rec);
                ++rep.kept;
            }
        }
        if (cur) cur->seal(segments_[sealed - 1]->end());
        records_ -= rep.removed;
        bytes_ -= rep.removed_bytes;
        totals_.compacted += rep.removed;
        {
            std::unique_lock lock(index_mutex_);
            segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(sealed));
            segments_.insert(segments_.begin(), out.begin(), out.end());
        }
        front_idx_ = 0;
        return rep;
    }

    const std::uint32_t id_;
    const std::uint32_t segment_records_;
    const bool compact_;
    const std::uint32_t compact_every_;
    std::shared_ptr<segment_pool> pool_;

    // Writers: append, trim, compact. A spin lock: one append holds it for ~100 instructions,
    // compaction (rare, inside the append that seals a segment) for longer.
    mutable spin_lock mutex_;
    std::shared_ptr<segment> active_;
    std::uint64_t next_ = 0;
    std::size_t records_ = 0;
    std::size_t bytes_ = 0;
    std::uint32_t front_idx_ = 0;  // first live record in segments_.front()
    time_point last_timestamp_{};
    std::uint32_t sealed_since_compaction_ = 0;
    counts totals_;
    std::unordered_map<std::string, std::uint64_t> latest_;  // compaction: key -> latest offset

    mutable std::shared_mutex index_mutex_;  // segments_ (readers take it only to change segment)
    std::deque<std::shared_ptr<segment>> segments_;

    // One line for both bounds: an append past the retention limit moves both, and a reader
    // with records to read loads both, so they cross between the cores together.
    alignas(cache_line_size) std::atomic<std::uint64_t> start_{0};
    std::atomic<std::uint64_t> end_{0};
    [[maybe_unused]] char pad_[cache_line_size - 2 * sizeof(std::atomic<std::uint64_t>)]{};
};

/// The offset `from` means in partition `log`.
inline std::uint64_t resolve_start(const partition_log& log, const start_position& from) {
    switch (from.which()) {
    case start_position::kind::beginning: return log.start_offset();
    case start_position::kind::end: return log.end_offset();
    case start_position::kind::offsets: return from.offset_for(log.id()).value_or(log.start_offset());
    case start_position::kind::time: return log.offset_at_time(from.time());
    }
    return log.start_offset();
}

}  // namespace detail
COURIER_END_NAMESPACE
