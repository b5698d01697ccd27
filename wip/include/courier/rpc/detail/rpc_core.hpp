// The machinery behind courier::rpc: the pending-request registry of one rpc object (with its
// deadline heap and one armed timer), the process-wide directory that routes a reply to the
// rpc object that asked (by the inbox named in the request's reply-to header) and counts the
// live responders of each request type per bus, and the compile-time name of scatter requests.
#pragma once

#include <courier/bus/detail/bus_core.hpp>
#include <courier/bus/detail/message.hpp>
#include <courier/bus/message_context.hpp>
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
#include <charconv>
#include <cstdint>
#include <functional>
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

/// The header a request carries its reply address in: "_INBOX.<inbox>.<request>" (NATS
/// habit). 13 characters, so message_context::header's lookup key stays in the SSO buffer.
inline constexpr std::string_view reply_header = "courier-reply";

inline std::string format_reply_to(std::uint64_t inbox, std::uint64_t request) {
    char a[24], b[24];
    const std::string_view as(a, static_cast<std::size_t>(std::to_chars(a, a + sizeof a, inbox).ptr - a));
    const std::string_view bs(b, static_cast<std::size_t>(std::to_chars(b, b + sizeof b, request).ptr - b));
    std::string out;
    out.reserve(8 + as.size() + bs.size());
    out.append("_INBOX.").append(as).append(1, '.').append(bs);
    return out;
}

inline bool parse_reply_to(std::string_view s, std::uint64_t& inbox, std::uint64_t& request) noexcept {
    constexpr std::string_view prefix = "_INBOX.";
    if (s.substr(0, prefix.size()) != prefix) return false;
    s.remove_prefix(prefix.size());
    const auto dot = s.find('.');
    if (dot == std::string_view::npos) return false;
    auto a = std::from_chars(s.data(), s.data() + dot, inbox);
    auto b = std::from_chars(s.data() + dot + 1, s.data() + s.size(), request);
    return a.ec == std::errc() && a.ptr == s.data() + dot && b.ec == std::errc() && b.ptr == s.data() + s.size();
}

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

/// The reply value as `R`: moved out when the responder returned an R, converted through JSON
/// when it returned another type with the same event name (another C++ type, same schema).
template <class R>
result<R> take_reply(message_base& m) {
    if (m.type_index() == type_index_of<R>()) return std::move(static_cast<typed_message<R>&>(m).value);
    if (m.event_type() != event_type_of<R>().str()) {
        return unexpected(errc::unknown_event, "[courier.rpc.reply_type_mismatch] the responder replied with '" +
                                                   std::string(m.event_type()) + "', the requester expects '" +
                                                   std::string(event_type_of<R>().str()) + "'");
    }
    try {
        return m.data_json().template get<R>();
    } catch (const std::exception& e) {
        return unexpected(errc::malformed_envelope,
                          std::string("[courier.rpc.bad_reply] the reply does not convert: ") + e.what());
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

/// The live counters of one rpc object.
struct rpc_counters {
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> replies{0};
    std::atomic<std::uint64_t> error_replies{0};
    std::atomic<std::uint64_t> timeouts{0};
    std::atomic<std::uint64_t> no_responders{0};
    std::atomic<std::uint64_t> late_replies{0};
    std::atomic<std::uint64_t> orphan_replies{0};
    std::atomic<std::uint64_t> served{0};
    std::atomic<std::uint64_t> served_failed{0};
    std::atomic<std::uint64_t> without_reply_to{0};
    latency_histogram latency;
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
/// Timeouts: deadlines sit in a min-heap with lazy deletion (a reply does not search the heap;
/// its stale entry is skipped when it comes due), and one timer on the runtime's clock is armed
/// for the earliest deadline. With equal timeouts deadlines arrive in order, so the timer is
/// re-armed only when it fires. The heap is rebuilt from the live entries when stale ones
/// outnumber them, so memory stays proportional to the pending requests.
class rpc_core : public std::enable_shared_from_this<rpc_core> {
public:
    rpc_core(runtime_services services, const void* bus) : services_(std::move(services)), bus_(bus), uid_(next_uid()) {}

    void start() { inbox_ = rpc_directory::instance().add_inbox(shared_from_this()); }

    const runtime_services& services() const noexcept { return services_; }
    const void* bus() const noexcept { return bus_; }
    std::uint64_t inbox() const noexcept { return inbox_; }
    rpc_counters& counters() noexcept { return counters_; }

    std::uint64_t next_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed) + 1; }

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

    /// Registers a pending request; returns false (and leaves `op` to the caller) after close().
    bool add(std::unique_ptr<pending_base>& op) {
        std::lock_guard lock(mutex_);
        if (closed_) return false;
        heap_.push_back({op->deadline, op->id});
        std::push_heap(heap_.begin(), heap_.end(), later);
        const auto deadline = op->deadline;
        pending_.emplace(op->id, std::move(op));
        if (heap_.size() > 2 * pending_.size() + 1024) rebuild_heap_locked();
        if (!armed_ || deadline < armed_at_) arm_locked(deadline);
        return true;
    }

    /// Takes a pending request out (the caller completes it), or nullptr.
    std::unique_ptr<pending_base> take(std::uint64_t id) {
        std::lock_guard lock(mutex_);
        return take_locked(id);
    }

    /// Routes a reply to its pending request; counts it as late when there is none.
    void deliver(std::uint64_t id, reply_packet&& p) {
        std::unique_ptr<pending_base> done;
        {
            std::lock_guard lock(mutex_);
            auto it = pending_.find(id);
            if (it == pending_.end()) {
                counters_.late_replies.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            if (it->second->scatter) {
                if (p.err) counters_.error_replies.fetch_add(1, std::memory_order_relaxed);
                else counters_.replies.fetch_add(1, std::memory_order_relaxed);
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
        if (p.err) counters_.error_replies.fetch_add(1, std::memory_order_relaxed);
        else counters_.replies.fetch_add(1, std::memory_order_relaxed);
        if (done->start_ns) counters_.latency.record(steady_ns() - done->start_ns);
        done->on_reply(std::move(p));
    }

    std::size_t pending() const {
        std::lock_guard lock(mutex_);
        return pending_.size();
    }

    /// Ends every pending request with `reason` and refuses new ones.
    void close(end_reason reason) {
        std::unordered_map<std::uint64_t, std::unique_ptr<pending_base>> all;
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
            all.swap(pending_);
            heap_.clear();
            if (armed_) services_.timers.cancel(timer_);
            armed_ = false;
        }
        for (auto& [id, op] : all) op->on_end(reason);
        rpc_directory::instance().remove_inbox(inbox_);
    }

private:
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

    void arm_locked(time_point at) {
        if (armed_) services_.timers.cancel(timer_);
        armed_ = true;
        armed_at_ = at;
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
            const auto now = services_.clock.now();
            while (!heap_.empty() && heap_.front().at <= now) {
                std::pop_heap(heap_.begin(), heap_.end(), later);
                const auto id = heap_.back().id;
                heap_.pop_back();
                if (auto op = take_locked(id)) expired.push_back(std::move(op));
            }
            if (!heap_.empty()) arm_locked(heap_.front().at);
        }
        for (auto& op : expired) {
            if (!op->scatter) counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
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
    std::atomic<std::uint64_t> next_id_{0};
    mutable std::mutex mutex_;
    std::unordered_map<std::uint64_t, std::unique_ptr<pending_base>> pending_;
    std::vector<deadline_entry> heap_;
    bool armed_ = false;
    bool closed_ = false;
    time_point armed_at_{};
    timer_id timer_ = 0;
    std::shared_mutex responders_mutex_;
    std::map<std::string, std::shared_ptr<std::atomic<std::int64_t>>, std::less<>> responders_;
    rpc_counters counters_;
};

/// Sends a reply to the rpc object named by `reply_to` (the serving object itself, or another
/// one through the directory). A reply nobody waits for is counted, never an error.
inline void route_reply(rpc_core& server, std::string_view reply_to, reply_packet&& p) {
    std::uint64_t inbox = 0, id = 0;
    if (!parse_reply_to(reply_to, inbox, id)) {
        server.counters().orphan_replies.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    if (inbox == server.inbox()) {
        server.deliver(id, std::move(p));
        return;
    }
    if (auto target = rpc_directory::instance().find_inbox(inbox)) {
        target->deliver(id, std::move(p));
        return;
    }
    server.counters().orphan_replies.fetch_add(1, std::memory_order_relaxed);
}

/// The metadata a reply inherits from its request: same trace, same correlation (a root
/// request's id becomes the correlation, as the bus does for events published by a handler),
/// and the request as the cause.
struct reply_meta {
    std::shared_ptr<const trace_data> trace;
    uuid cause;
};

inline reply_meta reply_meta_of(const message_context& request) {
    // A fresh trace without the request's headers: its reply-to must not travel on with what
    // the completion publishes.
    auto t = std::make_shared<trace_data>();
    t->trace_id = std::string(request.trace_id());
    t->correlation_id =
        request.correlation_id().empty() ? request.event_id().to_string() : std::string(request.correlation_id());
    return {std::move(t), request.event_id()};
}

/// A reply value as an in-flight message carrying `meta`.
template <class R>
message_ref make_reply_message(R&& value, reply_meta meta, time_point now) {
    using V = std::decay_t<R>;
    auto* m = new typed_message<V>(std::forward<R>(value));
    m->heap = true;
    m->timestamp = now;
    m->set_causation_id(meta.cause);
    m->set_trace(std::move(meta.trace));
    return message_ref(m);
}

}  // namespace detail
COURIER_END_NAMESPACE
