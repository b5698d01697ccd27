// The machinery behind courier::rpc: the pending-request registry of one rpc object (a
// preallocated slot table for requests, a locked map for scatters and overflow, one armed
// timer), the process-wide directory that routes a reply to the rpc object that asked (by the
// inbox of the request's reply_address) and counts the live responders of each request type
// per bus, and the compile-time name of scatter requests.
#pragma once

#include <courier/bus/detail/bus_core.hpp>
#include <courier/bus/detail/message.hpp>
#include <courier/bus/message_context.hpp>
#include <courier/bus/reply_address.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/latency_histogram.hpp>
#include <courier/core/result.hpp>
#include <courier/event/event_traits.hpp>
#include <courier/runtime/timer_service.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace detail {

// ------------------------------------------------------------------ scatter requests

template <std::size_t N>
struct fixed_name {
    char data[N];
};

/// "pricing.quote.requested.v1" -> "pricing.quote.requested.rpc_scatter.v1", built at compile
/// time so that the scatter channel of a request type is a typed event with an exact name
/// (the bus's fast path), checked like any event name literal.
template <class Req>
struct scatter_name {
    static constexpr std::string_view full = event_type_of<Req>().str();
    static constexpr std::string_view base = event_type_of<Req>().base();
    static constexpr std::string_view suffix = ".rpc_scatter";
    static constexpr std::size_t size = full.size() + suffix.size() + 1;
    static constexpr fixed_name<size> make() {
        fixed_name<size> out{};
        std::size_t i = 0;
        for (char c : base) out.data[i++] = c;
        for (char c : suffix) out.data[i++] = c;
        for (char c : full.substr(base.size())) out.data[i++] = c;
        out.data[i] = '\0';
        return out;
    }
    static constexpr fixed_name<size> value = make();
};

/// The scatter channel of a request named at run time ("a.b.v2" -> "a.b.rpc_scatter.v2"), the
/// same channel a typed request of that name uses, so typed and named sides meet there too.
inline std::string scatter_name_of(const event_name& name) {
    std::string out(name.base());
    out += ".rpc_scatter";
    out += name.str().substr(name.base().size());
    return out;
}

/// What `rpc::request_all` publishes: the request itself, under the request type's scatter name,
/// which every responder of the type receives (outside any queue group). Its JSON is the
/// request's JSON, so a wildcard subscriber or a stream capture sees the request data.
template <class Req>
struct scatter_request {
    static constexpr event_name event_type{scatter_name<Req>::value.data};
    Req request{};
};
template <class Req>
void to_json(nlohmann::json& j, const scatter_request<Req>& s) {
    j = nlohmann::json(s.request);
}
template <class Req>
void from_json(const nlohmann::json& j, scatter_request<Req>& s) {
    s.request = j.template get<Req>();
}

// ------------------------------------------------------------------ replies

/// One reply on its way to the rpc object that asked: the reply as an in-flight typed message
/// (so it carries metadata and can become the completion's message_context), or an error.
struct reply_packet {
    message_ref msg;
    std::optional<courier::error> err;
};

/// True for the reply of a named responder: an envelope message without an event type (a
/// named reply is JSON only; see make_reply_message).
inline bool is_named_reply(const message_base& m) noexcept {
    return m.ops == &envelope_message::table && m.event_type().empty();
}

/// The reply value as JSON (a named request): moved out of a named responder's reply, the
/// typed reply's JSON (serialized once) otherwise.
inline result<nlohmann::json> take_json_reply(message_base& m) {
    if (is_named_reply(m)) {
        (void)m.data_json();  // the document, were the data still text
        return std::move(static_cast<envelope_message&>(m).env.data);
    }
    try {
        return m.data_json();
    } catch (const std::exception& e) {
        return unexpected(errc::malformed_envelope,
                          std::string("[courier.rpc.bad_reply] the reply does not convert: ") + e.what());
    }
}

/// The reply value as `R`: moved out when the responder returned an R, converted through JSON
/// when it returned another type with the same event name (another C++ type, same schema) or
/// when a named responder answered (JSON without an event type). `R = nlohmann::json`: the
/// reply's JSON, whatever answered.
template <class R>
result<R> take_reply(message_base& m) {
    if constexpr (std::is_same_v<R, nlohmann::json>) {
        return take_json_reply(m);
    } else {
        if (m.type_index() == type_index_of<R>()) return std::move(static_cast<typed_message<R>&>(m).value);
        if (!is_named_reply(m) && m.event_type() != event_type_of<R>().str()) {
            return unexpected(errc::unknown_event, "[courier.rpc.reply_type_mismatch] the responder replied with '" +
                                                       std::string(m.event_type()) + "', the requester expects '" +
                                                       std::string(event_type_of<R>().str()) + "'");
        }
        try {
            return read_data_as<R>(m);
        } catch (const std::exception& e) {
            return unexpected(errc::malformed_envelope,
                              std::string("[courier.rpc.bad_reply] the reply does not convert: ") + e.what());
        }
    }
}

/// Why a pending request ended without (all) replies.
enum class end_reason : std::uint8_t { deadline, cancelled, closed };

/// A pending request (or scatter) in the registry. Owned by the registry until it is taken
/// out; whoever takes it out completes it, exactly once.
struct pending_base {
    virtual ~pending_base() = default;
    /// Single request: completes with the reply. Scatter: collects it (called under the
    /// registry lock) and returns true once every responder asked has answered.
    virtual bool on_reply(reply_packet&& p) = 0;
    /// Scatter only: completes with what was collected.
    virtual void on_collected(bool deadline_reached) { (void)deadline_reached; }
    /// Completes with an error (timeout, cancelled, closed) or, for a scatter, with what it has.
    virtual void on_end(end_reason r) = 0;

    std::uint64_t id = 0;
    time_point deadline{};
    time_point started_at{};
    std::uint64_t start_ns = 0;  // steady time, for the latency histogram
    bool scatter = false;
    /// Set once the initiating call returned: until then a completion is posted, never run
    /// inline inside the initiating function (Asio's rule).
    std::atomic<bool> initiated{false};
};

/// The live counters of one rpc object, one cache line per side: the requester's thread, the
/// thread that delivers replies (usually a responder's), and the serving side, so a round trip
/// between two threads never bounces a counter line between them.
struct rpc_counters {
    struct alignas(cache_line_size) ask_side {
        std::atomic<std::uint64_t> requests{0};
        std::atomic<std::uint64_t> no_responders{0};
        std::atomic<std::uint64_t> overloaded{0};
    } ask;
    struct alignas(cache_line_size) reply_side {
        std::atomic<std::uint64_t> replies{0};
        std::atomic<std::uint64_t> error_replies{0};
        std::atomic<std::uint64_t> timeouts{0};
        std::atomic<std::uint64_t> late_replies{0};
    } reply;
    struct alignas(cache_line_size) serve_side {
        std::atomic<std::uint64_t> served{0};
        std::atomic<std::uint64_t> served_failed{0};
        std::atomic<std::uint64_t> without_reply_to{0};
        std::atomic<std::uint64_t> orphan_replies{0};
        std::atomic<std::uint64_t> completion_failed{0};
    } serve;
    alignas(cache_line_size) latency_histogram latency;
};

class rpc_core;

/// Process-wide: which rpc object owns which inbox, and how many responders each request type
/// has on each bus. Replies between two rpc objects of one bus go through here; a reply to the
/// rpc object that served the request takes a shortcut.
class rpc_directory {
public:
    static rpc_directory& instance() {
        static rpc_directory d;
        return d;
    }

    std::uint64_t add_inbox(const std::shared_ptr<rpc_core>& core) {
        std::unique_lock lock(mutex_);
        const auto id = ++next_inbox_;
        inboxes_.emplace(id, core);
        return id;
    }
    void remove_inbox(std::uint64_t id) {
        std::unique_lock lock(mutex_);
        inboxes_.erase(id);
    }
    std::shared_ptr<rpc_core> find_inbox(std::uint64_t id) const {
        std::shared_lock lock(mutex_);
        auto it = inboxes_.find(id);
        return it == inboxes_.end() ? nullptr : it->second.lock();
    }

    /// The live-responder counter of request type `name` on bus `bus` (made on first use, kept).
    std::shared_ptr<std::atomic<std::int64_t>> responders(const void* bus, std::string_view name) {
        std::unique_lock lock(mutex_);
        auto& slot = responders_[std::make_pair(bus, std::string(name))];
        if (!slot) slot = std::make_shared<std::atomic<std::int64_t>>(0);
        return slot;
    }

private:
    mutable std::shared_mutex mutex_;
    std::unordered_map<std::uint64_t, std::weak_ptr<rpc_core>> inboxes_;
    std::map<std::pair<const void*, std::string>, std::shared_ptr<std::atomic<std::int64_t>>> responders_;
    std::uint64_t next_inbox_ = 0;
};

inline std::uint64_t steady_ns() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

/// The steady time to stamp a request with for the latency histogram, for one request in 16
/// (0 for the others): a clock read costs ~20-60 ns, twice per round trip.
inline std::uint64_t sampled_start_ns() noexcept {
    thread_local std::uint32_t tick = 0;
    return (++tick & 15) == 0 ? steady_ns() : 0;
}

/// The pending-request registry of one rpc object.
///
/// Requests: a preallocated table of slots, each holding one pending request. A request's id is
/// its slot plus the slot's generation, so taking it out (a reply, its deadline, close) is one
/// compare-and-swap of the slot's id: exactly one taker wins, and a stale id (a late reply)
/// fails it. A requester claims a free slot with a compare-and-swap of that slot's id from 0,
/// starting at the slot its thread used last (free again once its reply came), so a request
/// and its reply touch the slot's cache line and nothing else of the table: no shared free
/// list whose head would cross between the requester's and the responder's cores twice per
/// round trip. No lock, no hash and no allocation per request beyond the operation itself
/// (pooled).
///
/// Scatters (which collect several replies under a lock) and requests that find the table full
/// go to a locked map with ids marked by the top bit.
///
/// Timeouts: one timer on the runtime's clock is armed for the earliest deadline. A request
/// whose deadline is not earlier than the armed one (the usual case: equal timeouts arrive in
/// order) only reads `armed_at_`. When the timer fires it scans the used part of the table and
/// the map for what expired and re-arms for the earliest deadline left. The request's id store
/// and its read of `armed_at_`, and the timer's reset of `armed_at_` and its scan, are seq_cst:
/// either the scan sees the request or the request sees the timer disarmed and arms it.
class rpc_core : public std::enable_shared_from_this<rpc_core> {
public:
    /// Slots of the lock-free table (requests beyond it go to the locked map).
    static constexpr std::uint32_t table_size = 1024;
    static constexpr std::uint32_t slot_bits = 10;
    static_assert((1u << slot_bits) == table_size);
    static constexpr std::uint64_t map_bit = std::uint64_t{1} << 63;

    rpc_core(runtime_services services, const void* bus)
        : services_(std::move(services)), bus_(bus), uid_(next_uid()), slots_(new slot[table_size]) {}

    void start() { inbox_ = rpc_directory::instance().add_inbox(shared_from_this()); }

    const runtime_services& services() const noexcept { return services_; }
    const void* bus() const noexcept { return bus_; }
    std::uint64_t inbox() const noexcept { return inbox_; }
    rpc_counters& counters() noexcept { return counters_; }

    /// The responder counter of request type `name` (dense type index `type`) on this bus:
    /// a per-thread vector look-up after the first call (counters are never freed).
    std::atomic<std::int64_t>& responders(std::size_t type, std::string_view name) {
        struct cache {
            const rpc_core* core = nullptr;
            std::uint64_t uid = 0;
            std::vector<std::atomic<std::int64_t>*> slots;
        };
        thread_local cache c;
        if (c.core != this || c.uid != uid_) {
            c.core = this;
            c.uid = uid_;
            c.slots.clear();
        }
        if (type < c.slots.size() && c.slots[type]) return *c.slots[type];
        auto& counter = responders(name);
        if (type >= c.slots.size()) c.slots.resize(type + 1, nullptr);
        c.slots[type] = &counter;
        return counter;
    }

    /// The responder counter of a request type on this bus, cached per name.
    std::atomic<std::int64_t>& responders(std::string_view name) {
        {
            std::shared_lock lock(responders_mutex_);
            if (auto it = responders_.find(name); it != responders_.end()) return *it->second;
        }
        auto c = rpc_directory::instance().responders(bus_, name);
        std::unique_lock lock(responders_mutex_);
        auto [it, inserted] = responders_.emplace(std::string(name), std::move(c));
        return *it->second;
    }

    /// Requester: asks for the slot this thread will most likely claim, so that the cache miss
    /// on it (its last writer is the thread that took the previous request out) overlaps the
    /// one on the executor's work count instead of following it.
    void prefetch_claim() noexcept { prefetch_for_write(&slots_[slot_hint()]); }

    /// Serving thread, as it starts on a request addressed to this object: asks for the slot
    /// (taken out with a compare-and-swap once the reply is built), and once that line is here
    /// (`with_op`), for the operation it points to, so that delivering the reply does not wait
    /// on lines the requester wrote while the reply is being built.
    void prefetch_reply_path(std::uint64_t id, bool with_op) noexcept {
        if (id & map_bit) return;
        slot& s = slots_[id & (table_size - 1)];
        if (!with_op) return prefetch_for_write(&s);
        // A hint only: the slot may have moved on (a late reply); nothing is dereferenced.
        if (auto* p = s.op.load(std::memory_order_relaxed)) prefetch_for_write(p);
    }

    /// Registers a pending request and sets its id (also in `id`, since on true the registry
    /// owns the operation and may complete it at once); returns false (and leaves `op` to the
    /// caller) after close().
    bool add(std::unique_ptr<pending_base>& op, std::uint64_t& id) {
        if (closed_.load(std::memory_order_acquire)) return false;
        const auto deadline = op->deadline;
        const std::uint32_t i = op->scatter ? nil : claim_slot();
        if (i == nil) return add_to_map(op, id);
        slot& s = slots_[i];
        id = (++s.generation << slot_bits) | i;  // < claimed: generations never reach 2^52
        op->id = id;
        s.op.store(op.release(), std::memory_order_relaxed);
        s.deadline_ns.store(deadline.time_since_epoch().count(), std::memory_order_relaxed);
        for (auto h = high_water_.load(std::memory_order_relaxed); h <= i;)
            if (high_water_.compare_exchange_weak(h, i + 1, std::memory_order_relaxed)) break;
        s.id.store(id, std::memory_order_seq_cst);  // publishes op and deadline
        if (COURIER_UNLIKELY(closed_.load(std::memory_order_seq_cst))) {
            // close() may have scanned before the store: take it back if it is still there.
            if (auto back = take(id)) {
                op = std::move(back);
                return false;
            }
            return true;  // close() took it and ends it
        }
        if (deadline.time_since_epoch().count() < armed_at_.load(std::memory_order_seq_cst)) arm_if_earlier(deadline);
        return true;
    }

    /// Takes a pending request out (the caller completes it), or nullptr.
    std::unique_ptr<pending_base> take(std::uint64_t id) {
        if (id & map_bit) {
            std::lock_guard lock(mutex_);
            return take_locked(id);
        }
        slot& s = slots_[id & (table_size - 1)];
        std::uint64_t expected = id;
        // Claimed while the operation is moved out, so no requester reuses the slot meanwhile;
        // then free (a plain release store: requesters claim it with their own CAS).
        if (!s.id.compare_exchange_strong(expected, claimed, std::memory_order_acq_rel)) return nullptr;
        std::unique_ptr<pending_base> op(s.op.load(std::memory_order_relaxed));
        s.op.store(nullptr, std::memory_order_relaxed);
        s.id.store(0, std::memory_order_release);
        return op;
    }

    /// Routes a reply to its pending request; counts it as late when there is none.
    void deliver(std::uint64_t id, reply_packet&& p) {
        auto& c = counters_.reply;
        if (id & map_bit) return deliver_to_map(id, std::move(p));
        auto done = take(id);
        if (!done) {
            c.late_replies.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        (p.err ? c.error_replies : c.replies).fetch_add(1, std::memory_order_relaxed);
        if (done->start_ns) counters_.latency.record(steady_ns() - done->start_ns);
        done->on_reply(std::move(p));
    }

    std::size_t pending() const {
        std::size_t n = 0;
        const auto h = high_water_.load(std::memory_order_acquire);
        for (std::uint32_t i = 0; i < h; ++i) n += is_request(slots_[i].id.load(std::memory_order_acquire));
        std::lock_guard lock(mutex_);
        return n + pending_.size();
    }

    bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }

    /// Ends every pending request with `reason` and refuses new ones (idempotent: a second call
    /// finds nothing left).
    void close(end_reason reason) {
        closed_.store(true, std::memory_order_seq_cst);
        std::vector<std::unique_ptr<pending_base>> all;
        {
            std::lock_guard lock(mutex_);
            for (auto& [id, op] : pending_) all.push_back(std::move(op));
            pending_.clear();
            heap_.clear();
            if (armed_) services_.timers.cancel(timer_);
            armed_ = false;
            armed_at_.store(never, std::memory_order_seq_cst);
        }
        const auto h = high_water_.load(std::memory_order_acquire);
        for (std::uint32_t i = 0; i < h; ++i) {
            const auto id = slots_[i].id.load(std::memory_order_acquire);
            if (!is_request(id)) continue;
            if (auto op = take(id)) all.push_back(std::move(op));
        }
        for (auto& op : all) op->on_end(reason);
        if (!removed_inbox_.exchange(true)) rpc_directory::instance().remove_inbox(inbox_);
    }

    ~rpc_core() {
        // close() ran (rpc's destructor), so the table is empty; free what a racing add left.
        for (std::uint32_t i = 0; i < table_size; ++i) delete slots_[i].op.load(std::memory_order_relaxed);
    }

private:
    static constexpr std::uint32_t nil = 0xffffffffu;
    static constexpr std::int64_t never = std::numeric_limits<std::int64_t>::max();

    /// A slot's id while a requester fills it or a taker empties it: neither free nor a request.
    static constexpr std::uint64_t claimed = std::uint64_t{1} << 62;
    /// Slots a requester probes before it gives up on the table (and uses the locked map).
    static constexpr std::uint32_t max_probes = 64;

    struct slot {
        std::atomic<std::uint64_t> id{0};      // 0: free; claimed; else (generation << slot_bits) | index
        std::atomic<std::int64_t> deadline_ns{0};
        // Owned while id is a request; written before id's store. Atomic (relaxed) only so that
        // a serving thread may read it early as a prefetch hint (see prefetch_reply_path).
        std::atomic<pending_base*> op{nullptr};
        std::uint64_t generation = 0;          // touched only by the thread that claimed the slot
    };

    static bool is_request(std::uint64_t id) noexcept { return id != 0 && id != claimed; }

    // Where this thread looks for a free slot first: the one it used last. One entry per thread
    // (a thread alternating between rpc objects just starts over); threads start apart so that
    // concurrent requesters do not probe the same slots.
    std::uint32_t& slot_hint() noexcept {
        struct cache {
            const rpc_core* core = nullptr;
            std::uint64_t uid = 0;
            std::uint32_t slot = 0;
        };
        thread_local cache c;
        if (c.core != this || c.uid != uid_) {
            static std::atomic<std::uint32_t> threads{0};
            thread_local const std::uint32_t start = threads.fetch_add(1, std::memory_order_relaxed) * 61;
            c.core = this;
            c.uid = uid_;
            c.slot = start & (table_size - 1);
        }
        return c.slot;
    }

    // Claims a free slot (its id goes from 0 to `claimed`), or returns nil when `max_probes`
    // slots from the hint on are all taken.
    std::uint32_t claim_slot() noexcept {
        auto& hint = slot_hint();
        std::uint32_t i = hint;
        for (std::uint32_t probe = 0; probe < max_probes; ++probe, i = (i + 1) & (table_size - 1)) {
            auto& id = slots_[i].id;
            std::uint64_t expected = 0;
            // acquire: pairs with the release store of the taker that freed it (generation, op).
            if (id.load(std::memory_order_relaxed) == 0 &&
                id.compare_exchange_strong(expected, claimed, std::memory_order_acquire, std::memory_order_relaxed)) {
                hint = i;
                return i;
            }
        }
        return nil;
    }

    bool add_to_map(std::unique_ptr<pending_base>& op, std::uint64_t& id) {
        std::lock_guard lock(mutex_);
        if (closed_.load(std::memory_order_acquire)) return false;
        id = op->id = map_bit | ++next_map_id_;
        heap_.push_back({op->deadline, op->id});
        std::push_heap(heap_.begin(), heap_.end(), later);
        const auto deadline = op->deadline;
        pending_.emplace(op->id, std::move(op));
        if (heap_.size() > 2 * pending_.size() + 1024) rebuild_heap_locked();
        if (deadline.time_since_epoch().count() < armed_at_.load(std::memory_order_relaxed)) arm_locked(deadline);
        return true;
    }

    void deliver_to_map(std::uint64_t id, reply_packet&& p) {
        auto& c = counters_.reply;
        std::unique_ptr<pending_base> done;
        {
            std::lock_guard lock(mutex_);
            auto it = pending_.find(id);
            if (it == pending_.end()) {
                c.late_replies.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            if (it->second->scatter) {
                (p.err ? c.error_replies : c.replies).fetch_add(1, std::memory_order_relaxed);
                // Collected under the lock: the deadline cannot end the scatter mid-way.
                if (!it->second->on_reply(std::move(p))) return;
                done = std::move(it->second);
                pending_.erase(it);
            } else {
                done = std::move(it->second);
                pending_.erase(it);
            }
        }
        if (done->scatter) {
            done->on_collected(false);  // every responder asked has answered
            return;
        }
        (p.err ? c.error_replies : c.replies).fetch_add(1, std::memory_order_relaxed);
        if (done->start_ns) counters_.latency.record(steady_ns() - done->start_ns);
        done->on_reply(std::move(p));
    }

    struct deadline_entry {
        time_point at;
        std::uint64_t id;
    };
    static bool later(const deadline_entry& a, const deadline_entry& b) noexcept { return a.at > b.at; }

    std::unique_ptr<pending_base> take_locked(std::uint64_t id) {
        auto it = pending_.find(id);
        if (it == pending_.end()) return nullptr;
        auto op = std::move(it->second);
        pending_.erase(it);
        return op;
    }

    void rebuild_heap_locked() {
        heap_.clear();
        for (auto& [id, op] : pending_) heap_.push_back({op->deadline, id});
        std::make_heap(heap_.begin(), heap_.end(), later);
    }

    void arm_if_earlier(time_point at) {
        std::lock_guard lock(mutex_);
        if (closed_.load(std::memory_order_acquire)) return;
        if (at.time_since_epoch().count() < armed_at_.load(std::memory_order_relaxed)) arm_locked(at);
    }

    void arm_locked(time_point at) {
        if (armed_) services_.timers.cancel(timer_);
        armed_ = true;
        armed_at_.store(at.time_since_epoch().count(), std::memory_order_seq_cst);
        std::weak_ptr<rpc_core> weak = weak_from_this();
        timer_ = services_.timers.schedule_at(at, [weak] {
            if (auto self = weak.lock()) self->on_timer();
        });
    }

    // Runs on the executor when the earliest deadline may have passed.
    void on_timer() {
        std::vector<std::unique_ptr<pending_base>> expired;
        {
            std::lock_guard lock(mutex_);
            armed_ = false;
            armed_at_.store(never, std::memory_order_seq_cst);  // before the scan: see add()
            const auto now = services_.clock.now();
            const auto now_ns = now.time_since_epoch().count();
            std::int64_t earliest = never;
            const auto h = high_water_.load(std::memory_order_acquire);
            for (std::uint32_t i = 0; i < h; ++i) {
                slot& s = slots_[i];
                const auto id = s.id.load(std::memory_order_seq_cst);
                if (!is_request(id)) continue;
                const auto d = s.deadline_ns.load(std::memory_order_relaxed);
                if (d <= now_ns) {
                    if (auto op = take(id)) expired.push_back(std::move(op));
                } else {
                    earliest = std::min(earliest, d);
                }
            }
            while (!heap_.empty() && heap_.front().at <= now) {
                std::pop_heap(heap_.begin(), heap_.end(), later);
                const auto id = heap_.back().id;
                heap_.pop_back();
                if (auto op = take_locked(id)) expired.push_back(std::move(op));
            }
            if (!heap_.empty()) earliest = std::min(earliest, heap_.front().at.time_since_epoch().count());
            if (earliest != never && !closed_.load(std::memory_order_acquire))
                arm_locked(time_point(duration(earliest)));
        }
        for (auto& op : expired) {
            if (!op->scatter) counters_.reply.timeouts.fetch_add(1, std::memory_order_relaxed);
            op->on_end(end_reason::deadline);
        }
    }

    // Tells a thread's responder cache apart from one of an earlier core at the same address.
    static std::uint64_t next_uid() noexcept {
        static std::atomic<std::uint64_t> n{0};
        return n.fetch_add(1, std::memory_order_relaxed) + 1;
    }

    runtime_services services_;
    const void* bus_;
    const std::uint64_t uid_;
    std::uint64_t inbox_ = 0;
    std::unique_ptr<slot[]> slots_;
    alignas(cache_line_size) std::atomic<std::uint32_t> high_water_{0};
    std::atomic<std::int64_t> armed_at_{never};
    std::atomic<bool> closed_{false};
    std::atomic<bool> removed_inbox_{false};
    alignas(cache_line_size) mutable std::mutex mutex_;  // the map, the heap and the timer
    std::unordered_map<std::uint64_t, std::unique_ptr<pending_base>> pending_;
    std::vector<deadline_entry> heap_;
    std::uint64_t next_map_id_ = 0;
    bool armed_ = false;
    timer_id timer_ = 0;
    std::shared_mutex responders_mutex_;
    std::map<std::string, std::shared_ptr<std::atomic<std::int64_t>>, std::less<>> responders_;
    rpc_counters counters_;
};

/// Sends a reply to the rpc object named by `to` (the serving object itself, or another one
/// through the directory). A reply nobody waits for is counted, never an error. A completion
/// that throws while it runs inline here (its executor is the delivering thread's) is caught
/// and counted (`completion_failed`): it belongs to the requester, not to the request served.
inline void route_reply(rpc_core& server, reply_address to, reply_packet&& p) noexcept {
    try {
        if (to.inbox == server.inbox()) {
            server.deliver(to.request, std::move(p));
            return;
        }
        if (auto target = rpc_directory::instance().find_inbox(to.inbox)) {
            target->deliver(to.request, std::move(p));
            return;
        }
        server.counters().serve.orphan_replies.fetch_add(1, std::memory_order_relaxed);
    } catch (...) {
        server.counters().serve.completion_failed.fetch_add(1, std::memory_order_relaxed);
    }
}

/// The metadata a reply inherits from its request: same trace, same correlation (a root
/// request's id becomes the correlation, as the bus does for events published by a handler),
/// and the request as the cause.
struct reply_meta {
    std::shared_ptr<const trace_data> trace;  // null with from_cause, or for no trace at all
    uuid cause;
    bool from_cause = false;  // the trace is {correlation = cause}, made when first read
};

inline reply_meta reply_meta_of(const message_context& request) {
    const auto& t = request.message().trace();
    // The request's own trace, shared (no copy), when it already names a correlation and has
    // no free headers (those were for the responder, not for what the completion publishes).
    if (t && !t->correlation_id.empty() && t->headers.empty()) return {t, request.event_id()};
    if (!t) return {nullptr, request.event_id(), true};  // a root request
    auto fresh = std::make_shared<trace_data>();
    fresh->trace_id = t->trace_id;
    fresh->correlation_id = t->correlation_id;
    const uuid& id = request.event_id();
    if (fresh->correlation_id.empty()) fresh->correlation_id = id.to_string();
    return {std::move(fresh), id};
}

/// A reply value as an in-flight message carrying `meta`: a typed message, or for JSON (a named
/// responder's reply) an envelope message without an event type. A named reply has no event
/// name because the request names only itself (as a NATS reply has no subject of its own); a
/// typed requester converts its JSON to the reply type it expects.
template <class R>
message_ref make_reply_message(R&& value, reply_meta meta, time_point now) {
    using V = std::decay_t<R>;
    message_base* m = nullptr;
    if constexpr (std::is_same_v<V, nlohmann::json>) {
        envelope e;
        e.data = std::forward<R>(value);
        e.timestamp = now;
        m = new envelope_message(std::move(e));
    } else {
        m = new typed_message<V>(std::forward<R>(value));
    }
    m->heap = true;
    m->timestamp = now;
    m->set_causation_id(meta.cause);
    if (meta.from_cause) m->set_trace_from_causation();
    else m->set_trace(std::move(meta.trace));
    return message_ref(m);
}

}  // namespace detail
COURIER_END_NAMESPACE
