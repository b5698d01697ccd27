// The state of one consumer group: members and their partition assignment (rebalanced on
// join, leave and eviction), and per partition the next offset to deliver, the committed
// offset and the pending entries list (PEL: offset, owner, delivery count, last delivery).
// Each partition's group state has its own mutex, so members on different partitions never
// contend; membership changes take the group mutex, then each partition's in turn.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/stream/batch.hpp>
#include <courier/stream/detail/pending_list.hpp>
#include <courier/stream/detail/stream_state.hpp>
#include <courier/stream/stream_options.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace detail {

inline constexpr std::uint32_t no_member = std::numeric_limits<std::uint32_t>::max();

struct group_partition {
    std::mutex mutex;
    std::uint64_t next = 0;  // next offset to deliver (Redis' last-delivered-id + 1)
    std::shared_ptr<const segment> cursor;
    pending_list pel;  // ascending offsets
    std::size_t unacked = 0;
    std::uint32_t owner = no_member;
    std::atomic<std::uint64_t> committed{0};

    // The committed offset: everything below it is acked (or was skipped as trimmed).
    void update_committed_locked() {
        while (!pel.empty() && pel.front().acked) pel.pop_front();
        // An unacked entry at the front (a dead member's) keeps every acked one behind it: sweep
        // them out when they outnumber the unacked ones. Amortized O(1) per ack, and claims and
        // XPENDING then scan O(unacked) entries.
        if (pel.size() > 2 * unacked + 64) pel.remove_acked();
        committed.store(pel.empty() ? next : pel.front().offset, std::memory_order_release);
    }
    // Drops the entries whose records retention removed (a prefix: the list is in offset
    // order), counting the unacked ones as lost. Returns how many were lost.
    std::size_t settle_locked(std::uint64_t start) {
        std::size_t lost = 0;
        while (!pel.empty() && pel.front().offset < start) {
            if (!pel.front().acked) {
                ++lost;
                --unacked;
            }
            pel.pop_front();
        }
        return lost;
    }
    // Index of the entry for `offset`, at or after `from`, or pel.size().
    std::size_t find_locked(std::uint64_t offset, std::size_t from = 0) const {
        const auto at = pel.lower_bound(offset, from);
        return at < pel.size() && pel[at].offset == offset ? at : pel.size();
    }
};

struct member_slot {
    std::string name;
    std::atomic<bool> live{false};
    std::atomic<std::int64_t> last_seen_ns{0};  // stream clock, nanoseconds since epoch
};

struct group_counters {
    std::atomic<std::uint64_t> delivered{0};
    std::atomic<std::uint64_t> acked{0};
    std::atomic<std::uint64_t> claimed{0};
    std::atomic<std::uint64_t> skipped_by_retention{0};
    std::atomic<std::uint64_t> lost_to_retention{0};
    std::atomic<std::uint64_t> rebalances{0};
    std::atomic<std::uint64_t> evictions{0};
};

/// What a group holds in its pending lists (tests check that it stays bounded).
struct pel_stats {
    std::size_t entries = 0;  ///< entries held, acked ones not swept yet included
    std::size_t unacked = 0;
};

inline std::int64_t ns_of(time_point t) noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

class group_state {
public:
    group_state(std::shared_ptr<stream_state> st, std::string name, group_options o)
        : stream_(std::move(st)), name_(std::move(name)), options_(std::move(o)) {
        const auto n = stream_->partition_count();
        parts_.reserve(n);
        for (std::uint32_t p = 0; p < n; ++p) {
            auto gp = std::make_unique<group_partition>();
            gp->next = resolve_start(stream_->part(p), options_.start);
            gp->committed.store(gp->next, std::memory_order_relaxed);
            parts_.push_back(std::move(gp));
        }
    }

    const std::string& name() const noexcept { return name_; }
    const group_options& options() const noexcept { return options_; }
    stream_state& stream() noexcept { return *stream_; }
    const std::shared_ptr<stream_state>& stream_ptr() const noexcept { return stream_; }
    group_counters& counters() noexcept { return counters_; }
    std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

    // ------------------------------------------------------------ membership

    /// Joins (or rejoins, keeping its pending entries) a member; returns its id.
    result<member_slot*> join(std::string_view member, std::uint32_t& id) {
        std::lock_guard lock(mutex_);
        for (std::uint32_t i = 0; i < slots_.size(); ++i) {
            if (slots_[i]->name != member) continue;
            if (slots_[i]->live.load(std::memory_order_acquire)) {
                return unexpected(errc::duplicate, "[courier.stream.member_exists] group '" + name_ + "' already has a live member '" +
                                                       std::string(member) + "'");
            }
            id = i;
            activate_locked(*slots_[i]);
            return slots_[i].get();
        }
        slots_.push_back(std::make_unique<member_slot>());
        slots_.back()->name = std::string(member);
        id = static_cast<std::uint32_t>(slots_.size() - 1);
        activate_locked(*slots_.back());
        return slots_.back().get();
    }

    /// A member leaves: its partitions go to the others; its pending entries stay pending.
    void leave(std::uint32_t id) {
        std::lock_guard lock(mutex_);
        if (!slots_[id]->live.exchange(false, std::memory_order_acq_rel)) return;
        rebalance_locked();
    }

    /// An evicted member that reads again comes back (as Kafka consumers rejoin).
    void rejoin(std::uint32_t id) {
        std::lock_guard lock(mutex_);
        if (slots_[id]->live.load(std::memory_order_acquire)) return;
        activate_locked(*slots_[id]);
    }

    /// The partitions assigned to member `id`, and the generation they belong to.
    std::vector<std::uint32_t> assignment_of(std::uint32_t id, std::uint64_t& generation) const {
        std::lock_guard lock(mutex_);
        generation = generation_.load(std::memory_order_acquire);
        std::vector<std::uint32_t> out;
        for (std::uint32_t p = 0; p < parts_.size(); ++p)
            if (owners_.size() > p && owners_[p] == id) out.push_back(p);
        return out;
    }

    std::vector<std::string> members() const {
        std::lock_guard lock(mutex_);
        std::vector<std::string> out;
        for (auto& s : slots_)
            if (s->live.load(std::memory_order_acquire)) out.push_back(s->name);
        return out;
    }

    /// Evicts members silent for longer than the session timeout (checked at most four times
    /// per timeout, from reads).
    void maybe_evict(time_point now) {
        const auto timeout = options_.session_timeout;
        if (timeout <= duration::zero()) return;
        const auto now_ns = ns_of(now);
        if (now_ns < next_session_check_ns_.load(std::memory_order_relaxed)) return;
        std::lock_guard lock(mutex_);
        next_session_check_ns_.store(now_ns + std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count() / 4,
                                     std::memory_order_relaxed);
        const auto limit = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
        bool changed = false;
        for (auto& s : slots_) {
            if (s->live.load(std::memory_order_acquire) && now_ns - s->last_seen_ns.load(std::memory_order_relaxed) > limit) {
                s->live.store(false, std::memory_order_release);
                counters_.evictions.fetch_add(1, std::memory_order_relaxed);
                changed = true;
            }
        }
        if (changed) rebalance_locked();
    }

    // ------------------------------------------------------------ delivery

    /// New records of partition `p` not yet delivered, if member `id` owns it (else 0).
    std::uint64_t unread(std::uint32_t p, std::uint32_t id) {
        auto& gp = *parts_[p];
        const auto end = stream_->part(p).end_offset();
        std::lock_guard lock(gp.mutex);
        return gp.owner == id && end > gp.next ? end - gp.next : 0;
    }

    /// Delivers up to `max` new records of partition `p` to member `id`, if it owns `p`.
    std::size_t read_partition(std::uint32_t p, std::uint32_t id, std::size_t max, group_batch& out, time_point now) {
        auto& gp = *parts_[p];
        auto& log = stream_->part(p);
        std::lock_guard lock(gp.mutex);
        if (gp.owner != id) return 0;  // reassigned since the member looked
        // Nothing pending and nothing new: one load of the partition's end (a line the appending
        // thread writes), no look at its start or its segment, which a member that polls a
        // partition it has caught up with would otherwise pull away from the producer per poll.
        // (With nothing pending there is nothing for settle_locked to settle.)
        if (gp.pel.empty() && gp.next >= log.end_offset()) return 0;
        settle_locked(gp, p);
        read_span span;
        auto status = log.read(gp.cursor, gp.next, max, span);
        if (status == read_status::trimmed) {
            // Retention removed records the group never delivered: skip them, counted.
            const auto start = log.start_offset();
            counters_.skipped_by_retention.fetch_add(start - gp.next, std::memory_order_relaxed);
            gp.next = start;
            status = log.read(gp.cursor, gp.next, max, span);
        }
        if (status != read_status::ok) return 0;
        const stream_record* recs = span.seg->data() + span.first;
        gp.pel.reserve_more(span.count);
        out.items_.reserve(out.items_.size() + span.count);
        for (std::uint32_t i = 0; i < span.count; ++i) {
            gp.pel.push_back(pel_entry{recs[i].offset, id, 1, now, false});
            out.items_.push_back(delivery{p, 1, &recs[i]});
        }
        out.pin(span.seg);
        gp.unacked += span.count;
        gp.update_committed_locked();
        counters_.delivered.fetch_add(span.count, std::memory_order_relaxed);
        return span.count;
    }

    /// Acks the deliveries of a batch; returns how many were pending and are acked now.
    std::size_t ack(std::span<const delivery> items) {
        std::size_t acked = 0;
        std::size_t i = 0;
        while (i < items.size()) {
            const auto p = items[i].partition;
            auto& gp = *parts_[p];
            std::lock_guard lock(gp.mutex);
            std::size_t cursor = 0;  // the front: reads are usually acked in order
            for (; i < items.size() && items[i].partition == p; ++i) {
                // Deliveries of one read are consecutive pending entries: try the next slot
                // before searching.
                const auto o = items[i].offset();
                std::size_t at = cursor < gp.pel.size() && gp.pel[cursor].offset == o ? cursor : gp.find_locked(o);
                if (at == gp.pel.size()) continue;
                cursor = at + 1;
                acked += ack_entry_locked(gp, at);
            }
            gp.update_committed_locked();
        }
        if (acked) counters_.acked.fetch_add(acked, std::memory_order_relaxed);
        return acked;
    }

    bool ack_one(std::uint32_t p, std::uint64_t offset) {
        if (p >= parts_.size()) return false;
        auto& gp = *parts_[p];
        std::lock_guard lock(gp.mutex);
        const auto at = gp.find_locked(offset);
        if (at == gp.pel.size() || !ack_entry_locked(gp, at)) return false;
        gp.update_committed_locked();
        counters_.acked.fetch_add(1, std::memory_order_relaxed);
        return true;
    }

    /// XAUTOCLAIM: takes pending entries idle for at least `min_idle`, from any owner, starting
    /// after where the previous claim of this member stopped.
    std::size_t claim_idle(std::uint32_t id, duration min_idle, std::size_t max, group_batch& out, time_point now,
                           std::uint32_t& rr) {
        std::size_t taken = 0;
        const auto n = static_cast<std::uint32_t>(parts_.size());
        for (std::uint32_t k = 0; k < n && taken < max; ++k) {
            const auto p = (rr + k) % n;
            auto& gp = *parts_[p];
            std::lock_guard lock(gp.mutex);
            settle_locked(gp, p);
            for (std::size_t i = 0; i < gp.pel.size() && taken < max; ++i) {
                auto& e = gp.pel[i];
                if (e.acked || now - e.last < min_idle) continue;
                taken += take_entry_locked(gp, p, e, id, out, now);
            }
            gp.update_committed_locked();
            if (taken >= max) rr = p;
        }
        return taken;
    }

    /// XCLAIM: takes the named pending entries of partition `p` that are idle for `min_idle`.
    std::size_t claim_offsets(std::uint32_t id, std::uint32_t p, std::span<const std::uint64_t> offsets, duration min_idle,
                              group_batch& out, time_point now) {
        if (p >= parts_.size()) return 0;
        auto& gp = *parts_[p];
        std::lock_guard lock(gp.mutex);
        settle_locked(gp, p);
        std::size_t taken = 0;
        for (auto o : offsets) {
            const auto at = gp.find_locked(o);
            if (at == gp.pel.size()) continue;
            auto& e = gp.pel[at];
            if (e.acked || now - e.last < min_idle) continue;
            taken += take_entry_locked(gp, p, e, id, out, now);
        }
        gp.update_committed_locked();
        return taken;
    }

    std::uint64_t committed(std::uint32_t p) const { return parts_.at(p)->committed.load(std::memory_order_acquire); }

    std::vector<pending_entry> pending(std::size_t max, time_point now) const {
        std::vector<pending_entry> out;
        std::vector<std::uint32_t> owners;
        for (std::uint32_t p = 0; p < parts_.size() && out.size() < max; ++p) {
            auto& gp = *parts_[p];
            std::lock_guard lock(gp.mutex);
            settle_locked(gp, p);
            for (std::size_t i = 0; i < gp.pel.size(); ++i) {
                const auto& e = gp.pel[i];
                if (e.acked) continue;
                if (out.size() >= max) break;
                out.push_back(pending_entry{p, e.offset, {}, e.deliveries, now - e.last});
                owners.push_back(e.owner);
            }
        }
        // Names after the partition locks are released: the group mutex is taken before them.
        for (std::size_t i = 0; i < out.size(); ++i) out[i].owner = name_of(owners[i]);
        return out;
    }

    pending_summary summary() const {
        std::map<std::uint32_t, std::size_t> per;
        pending_summary s;
        for (std::uint32_t p = 0; p < parts_.size(); ++p) {
            auto& gpp = parts_[p];
            std::lock_guard lock(gpp->mutex);
            settle_locked(*gpp, p);
            for (std::size_t i = 0; i < gpp->pel.size(); ++i) {
                const auto& e = gpp->pel[i];
                if (e.acked) continue;
                ++s.count;
                ++per[e.owner];
            }
        }
        for (auto& [id, c] : per) s.per_owner.emplace_back(name_of(id), c);
        std::sort(s.per_owner.begin(), s.per_owner.end());
        return s;
    }

    std::uint32_t partition_count() const noexcept { return static_cast<std::uint32_t>(parts_.size()); }

    /// Counts, as lost, the pending records that retention removed since the last look (the
    /// metrics call it first, so `lost_to_retention` is current when read).
    void settle_all() const {
        for (std::uint32_t p = 0; p < parts_.size(); ++p) {
            std::lock_guard lock(parts_[p]->mutex);
            settle_locked(*parts_[p], p);
        }
    }

    pel_stats pel_size() const {
        pel_stats s;
        for (auto& gp : parts_) {
            std::lock_guard lock(gp->mutex);
            s.entries += gp->pel.size();
            s.unacked += gp->unacked;
        }
        return s;
    }

private:
    // See group_partition::settle_locked; also moves the committed offset past them.
    void settle_locked(group_partition& gp, std::uint32_t p) const {
        if (gp.pel.empty() || gp.pel.front().offset >= stream_->part(p).start_offset()) return;
        if (const auto lost = gp.settle_locked(stream_->part(p).start_offset()))
            counters_.lost_to_retention.fetch_add(lost, std::memory_order_relaxed);
        gp.update_committed_locked();
    }

    std::string name_of(std::uint32_t id) const {
        std::lock_guard lock(mutex_);
        return id < slots_.size() ? slots_[id]->name : std::string();
    }

    void activate_locked(member_slot& s) {
        s.last_seen_ns.store(ns_of(stream_->clock().now()), std::memory_order_relaxed);
        s.live.store(true, std::memory_order_release);
        rebalance_locked();
    }

    // Round robin over the live members in join order: partition p goes to live[p % n].
    void rebalance_locked() {
        std::vector<std::uint32_t> live;
        for (std::uint32_t i = 0; i < slots_.size(); ++i)
            if (slots_[i]->live.load(std::memory_order_acquire)) live.push_back(i);
        owners_.assign(parts_.size(), no_member);
        for (std::uint32_t p = 0; p < parts_.size(); ++p) {
            const auto owner = live.empty() ? no_member : live[p % live.size()];
            owners_[p] = owner;
            std::lock_guard lock(parts_[p]->mutex);
            parts_[p]->owner = owner;
        }
        generation_.fetch_add(1, std::memory_order_acq_rel);
        counters_.rebalances.fetch_add(1, std::memory_order_relaxed);
        // A member waiting in async_read may have been given a partition with a backlog: wake
        // the waiters (each re-reads its assignment), rather than leave it until the next append.
        stream_->notifier().notify();
    }

    std::size_t ack_entry_locked(group_partition& gp, std::size_t at) {
        auto& e = gp.pel[at];
        if (e.acked) return 0;
        e.acked = true;
        --gp.unacked;
        return 1;
    }

    // Moves one pending entry to `id` (or drops it, counted, when retention removed its record).
    std::size_t take_entry_locked(group_partition& gp, std::uint32_t p, pel_entry& e, std::uint32_t id, group_batch& out,
                                  time_point now) {
        std::shared_ptr<const segment> pin;
        const stream_record* rec = stream_->part(p).find(e.offset, pin);
        if (!rec) {
            e.acked = true;
            --gp.unacked;
            counters_.lost_to_retention.fetch_add(1, std::memory_order_relaxed);
            return 0;
        }
        e.owner = id;
        ++e.deliveries;
        e.last = now;
        out.items_.push_back(delivery{p, e.deliveries, rec});
        out.pin(pin);
        counters_.claimed.fetch_add(1, std::memory_order_relaxed);
        return 1;
    }

    std::shared_ptr<stream_state> stream_;
    std::string name_;
    group_options options_;
    mutable std::mutex mutex_;  // membership and assignment
    std::vector<std::unique_ptr<member_slot>> slots_;
    std::vector<std::uint32_t> owners_;
    std::vector<std::unique_ptr<group_partition>> parts_;
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<std::int64_t> next_session_check_ns_{0};
    mutable group_counters counters_;
};

}  // namespace detail
COURIER_END_NAMESPACE
