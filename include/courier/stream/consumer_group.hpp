// Consumer groups over a stream (Kafka groups + Redis Streams' PEL): each record goes to one
// member; members ack; what is delivered and not acked is pending with its owner and delivery
// count; a member can claim records idle too long (XPENDING / XAUTOCLAIM / XCLAIM); members
// joining, leaving or being evicted rebalance the partitions.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/detail/cpu_relax.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/stream/batch.hpp>
#include <courier/stream/detail/group_state.hpp>
#include <courier/stream/stream_options.hpp>

#include <boost/asio/async_result.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

COURIER_BEGIN_NAMESPACE

class group_member;

namespace detail {
/// What a pending async_read knows of its member: the member while it is in the group (moves
/// update it), null once it left. The read's attempts run under the mutex, so leave() and the
/// destructor wait for an attempt in progress and the next one sees the member gone.
struct member_link {
    std::mutex mutex;
    group_member* member = nullptr;
    std::string name;
};
}  // namespace detail

/// A member of a consumer group: reads records of the partitions assigned to it, acks them, and
/// claims what other members left pending. Move-only; destroying it leaves the group (its
/// partitions go to the other members; its pending records stay pending until claimed).
///
/// Thread safety: one thread at a time per member (give each worker its own member); members of
/// one group may be used concurrently.
/// Ordering: within a partition, `read` delivers in offset order; no order across partitions.
/// Blocking: never, except `read` with a `fetch_wait` (spins up to its max_wait); `async_read`
/// waits without a thread.
/// Errors: errc::invalid_state ("[courier.stream.member_left]") after `leave()`, and for an
/// async_read still pending when the member leaves or is destroyed.
class group_member {
public:
    group_member() = default;
    group_member(group_member&& o) noexcept { take(o); }
    group_member& operator=(group_member&& o) noexcept {
        if (this != &o) {
            leave();
            take(o);
        }
        return *this;
    }
    ~group_member() { leave(); }

    const std::string& name() const noexcept {
        static const std::string none;
        return link_ ? link_->name : none;
    }
    bool active() const noexcept { return group_ != nullptr; }

    /// Up to `max` new records from one of this member's partitions (round robin between them),
    /// each now pending with this member as owner. Empty when there is nothing new.
    result<group_batch> read(std::size_t max = 256) {
        group_batch b;
        auto n = read(b, max);
        if (!n) return unexpected(std::move(n).error());
        return b;
    }
    /// As `read`, into `out` (cleared first), reusing its capacity. Returns how many.
    result<std::size_t> read(group_batch& out, std::size_t max) {
        out.clear();
        if (!group_) return left_error();
        auto& g = *group_;
        const auto now = g.stream().clock().now();
        touch(now);
        g.maybe_evict(now);
        if (!slot_->live.load(std::memory_order_acquire)) g.rejoin(id_);  // evicted, and alive after all
        if (generation_ != g.generation()) assignment_ = g.assignment_of(id_, generation_);
        const auto n = assignment_.size();
        for (std::size_t k = 0; k < n; ++k) {
            const auto idx = (rr_ + k) % n;
            if (auto got = g.read_partition(assignment_[idx], id_, max, out, now)) {
                rr_ = idx + 1;
                return got;
            }
        }
        return std::size_t{0};
    }
    /// As `read`, but while fewer than `wait.min_records` new records wait in this member's
    /// partitions, waits for more, up to `wait.max_wait`, then reads what there is (Kafka's
    /// fetch.min.bytes + fetch.max.wait.ms). For throughput: a member that has caught up and
    /// reads again at once takes each partition's end offset, a line the appender writes per
    /// record, away from the appender's core at every look, and gets one or two records per
    /// read; waiting looks about once a microsecond and reads a batch. Records already pending
    /// redelivery do not count toward `min_records`.
    result<std::size_t> read(group_batch& out, std::size_t max, const fetch_wait& wait) {
        if (group_ && wait.min_records > 1 && wait.max_wait > std::chrono::nanoseconds::zero())
            wait_for_records(std::min(wait.min_records, max), wait.max_wait);
        return read(out, max);
    }
    result<group_batch> read(std::size_t max, const fetch_wait& wait) {
        group_batch b;
        auto n = read(b, max, wait);
        if (!n) return unexpected(std::move(n).error());
        return b;
    }

    /// Waits for new records (appended, or given to this member by a rebalance), then reads as
    /// `read`. Completion: `void(result<group_batch>)`; errc::closed when the stream closes;
    /// errc::invalid_state "[courier.stream.member_left]" when the member leaves or is destroyed
    /// while the read is pending (the operation never touches a destroyed member). The member
    /// is not to be used by other calls while the read is pending, except `leave()`.
    template <class CompletionToken>
    auto async_read(std::size_t max, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(result<group_batch>)>(
            [this, max](auto&& handler) {
                auto attempt = [link = link_, max]() -> std::optional<result<group_batch>> {
                    std::lock_guard lock(link->mutex);
                    group_member* m = link->member;
                    if (!m || !m->group_) return result<group_batch>(left_error(link->name));
                    auto b = m->read(max);
                    if (!b || !b->empty()) return b;
                    if (m->group_->stream().closed())
                        return result<group_batch>(unexpected(errc::closed, "[courier.stream.closed] stream closed"));
                    return std::nullopt;
                };
                auto st = group_ ? group_->stream_ptr() : nullptr;
                if (!st) {
                    auto ex = boost::asio::get_associated_executor(handler);
                    boost::asio::post(ex, [h = std::move(handler), e = left_error(name())]() mutable {
                        std::move(h)(result<group_batch>(std::move(e)));
                    });
                    return;
                }
                detail::start_async_read<group_batch>(st, std::move(attempt), std::forward<decltype(handler)>(handler));
            },
            token);
    }

    /// Acks every delivery of `b`; returns how many were pending (acking twice is harmless).
    std::size_t ack(const group_batch& b) {
        if (!group_) return 0;
        touch(group_->stream().clock().now());
        return group_->ack(std::span<const delivery>(b.begin(), b.end()));
    }
    /// Acks one delivery.
    std::size_t ack(const delivery& d) { return group_ ? group_->ack(std::span<const delivery>(&d, 1)) : 0; }
    /// Acks partition/offset (any member may ack any pending record, as XACK does).
    bool ack(std::uint32_t partition, std::uint64_t offset) { return group_ && group_->ack_one(partition, offset); }

    /// XAUTOCLAIM: takes up to `max` pending records, of any owner, idle for at least
    /// `min_idle` on the stream's clock; each now belongs to this member and its delivery
    /// count goes up. Records retention removed meanwhile are dropped from the pending list
    /// and counted (`lost_to_retention`).
    group_batch claim(duration min_idle, std::size_t max = 256) {
        group_batch b;
        if (!group_) return b;
        const auto now = group_->stream().clock().now();
        touch(now);
        group_->claim_idle(id_, min_idle, max, b, now, claim_rr_);
        return b;
    }
    /// XCLAIM: takes the named pending records of `partition` that are idle for `min_idle`.
    group_batch claim(std::uint32_t partition, std::span<const std::uint64_t> offsets, duration min_idle = {}) {
        group_batch b;
        if (!group_) return b;
        const auto now = group_->stream().clock().now();
        touch(now);
        group_->claim_offsets(id_, partition, offsets, min_idle, b, now);
        return b;
    }

    /// Tells the group this member is alive (for session_timeout) without reading.
    void heartbeat() {
        if (group_) touch(group_->stream().clock().now());
    }
    /// The partitions assigned to this member now.
    std::vector<std::uint32_t> assignment() {
        if (!group_) return {};
        assignment_ = group_->assignment_of(id_, generation_);
        return assignment_;
    }
    /// Leaves the group (idempotent; the destructor calls it). A pending async_read ends with
    /// "[courier.stream.member_left]".
    void leave() {
        if (link_) {
            std::lock_guard lock(link_->mutex);  // waits for an attempt of a pending read
            link_->member = nullptr;
        }
        if (!group_) return;
        auto g = std::move(group_);
        g->leave(id_);
        g->stream().notifier().notify();  // a pending read wakes and sees the member gone
    }

private:
    friend class consumer_group;
    group_member(std::shared_ptr<detail::group_state> g, detail::member_slot* slot, std::uint32_t id)
        : group_(std::move(g)), slot_(slot), id_(id), link_(std::make_shared<detail::member_link>()) {
        link_->member = this;
        link_->name = slot->name;
    }

    void take(group_member& o) noexcept {
        if (o.link_) {
            std::lock_guard lock(o.link_->mutex);
            o.link_->member = this;
        }
        group_ = std::move(o.group_);
        slot_ = o.slot_;
        id_ = o.id_;
        assignment_ = std::move(o.assignment_);
        generation_ = o.generation_;
        rr_ = o.rr_;
        claim_rr_ = o.claim_rr_;
        link_ = std::move(o.link_);
    }

    void touch(time_point now) noexcept { slot_->last_seen_ns.store(detail::ns_of(now), std::memory_order_relaxed); }

    void wait_for_records(std::size_t min, std::chrono::nanoseconds max_wait) {
        auto& g = *group_;
        const auto deadline = std::chrono::steady_clock::now() + max_wait;
        int looks = 0;
        for (;;) {
            if (generation_ != g.generation()) assignment_ = g.assignment_of(id_, generation_);
            std::uint64_t unread = 0;
            for (const auto p : assignment_) unread += g.unread(p, id_);
            if (unread >= min || g.stream().closed() || std::chrono::steady_clock::now() >= deadline) return;
            // ~0.7-1 us between looks (one pause is 20-40 ns on the x86 parts we measure on);
            // after 8 of them, yield instead: when threads outnumber cores, the appender may be
            // waiting for this one's core (2P/2C on 2 cores: 0.36x -> 0.53x moodycamel).
            if (++looks > 8) std::this_thread::yield();
            else
                for (int i = 0; i < 32; ++i) detail::cpu_relax();
        }
    }
    courier::unexpected left_error() const { return left_error(name()); }
    static courier::unexpected left_error(const std::string& name) {
        return courier::unexpected(errc::invalid_state, "[courier.stream.member_left] member '" + name + "' left its group");
    }

    std::shared_ptr<detail::group_state> group_;
    detail::member_slot* slot_ = nullptr;  // owned by the group, which outlives this handle
    std::uint32_t id_ = 0;
    std::vector<std::uint32_t> assignment_;
    std::uint64_t generation_ = std::numeric_limits<std::uint64_t>::max();
    std::size_t rr_ = 0;
    std::uint32_t claim_rr_ = 0;
    std::shared_ptr<detail::member_link> link_;
};

/// A consumer group of a stream: a handle (cheap to copy) to the group's state, which lives as
/// long as the stream or any handle.
///
/// Thread safety: every member may be called from any thread.
/// Guarantees: at least once. Each record goes to one member by `read`; it is redelivered only
/// by a claim (after its owner left it idle for `min_idle`), so when every member acks what it
/// reads, each record is processed exactly once.
///
/// Example:
/// ```
/// auto billing = orders.group("billing");
/// auto worker = billing.join("worker-1");
/// for (;;) {
///     auto batch = worker.read(64).value();
///     for (auto& d : batch) charge(d.record().as<order_placed>().value());
///     worker.ack(batch);
///     auto orphans = worker.claim(30s);            // what a dead member left behind
///     ...
/// }
/// ```
class consumer_group {
public:
    consumer_group() = default;

    const std::string& name() const noexcept { return state_->name(); }

    /// Adds a member (rebalancing the partitions). A name that left (or was evicted) may join
    /// again and finds its pending records still its own.
    ///
    /// Errors: throws courier_error (errc::duplicate, "[courier.stream.member_exists]") when a
    /// live member has the name.
    group_member join(std::string_view member) {
        auto m = try_join(member);
        if (!m) throw courier_error(std::move(m).error());
        return std::move(*m);
    }
    result<group_member> try_join(std::string_view member) {
        std::uint32_t id = 0;
        auto slot = state_->join(member, id);
        if (!slot) return unexpected(std::move(slot).error());
        return group_member(state_, *slot, id);
    }

    /// The committed offset of `partition`: every record below it is acked.
    std::uint64_t committed(std::uint32_t partition) const { return state_->committed(partition); }
    /// XPENDING's detail: up to `max` pending records, by partition then offset.
    std::vector<pending_entry> pending(std::size_t max = std::numeric_limits<std::size_t>::max()) const {
        return state_->pending(max, state_->stream().clock().now());
    }
    /// XPENDING's summary: how many, and per owner.
    pending_summary summary() const { return state_->summary(); }
    /// Live members, in join order.
    std::vector<std::string> members() const { return state_->members(); }
    /// Bumped by every rebalance.
    std::uint64_t generation() const noexcept { return state_->generation(); }
    /// Records appended and not yet acked by the group, over all partitions.
    std::uint64_t lag() const {
        std::uint64_t n = 0;
        for (std::uint32_t p = 0; p < state_->partition_count(); ++p) {
            const auto end = state_->stream().part(p).end_offset();
            const auto c = state_->committed(p);
            n += end > c ? end - c : 0;
        }
        return n;
    }
    group_metrics metrics() const {
        state_->settle_all();
        const auto pel = state_->pel_size();
        auto& c = state_->counters();
        group_metrics m;
        m.delivered = c.delivered.load(std::memory_order_relaxed);
        m.acked = c.acked.load(std::memory_order_relaxed);
        m.claimed = c.claimed.load(std::memory_order_relaxed);
        m.skipped_by_retention = c.skipped_by_retention.load(std::memory_order_relaxed);
        m.lost_to_retention = c.lost_to_retention.load(std::memory_order_relaxed);
        m.rebalances = c.rebalances.load(std::memory_order_relaxed);
        m.evictions = c.evictions.load(std::memory_order_relaxed);
        m.pending = pel.unacked;
        m.pending_list_entries = pel.entries;
        return m;
    }

private:
    friend class stream;
    explicit consumer_group(std::shared_ptr<detail::group_state> s) : state_(std::move(s)) {}
    std::shared_ptr<detail::group_state> state_;
};

COURIER_END_NAMESPACE
