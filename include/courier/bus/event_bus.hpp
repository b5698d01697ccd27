// The event bus: modules publish typed events named `domain.entity.action.vN` and subscribe to
// exact names (fast path) or AMQP-style patterns, without knowing each other. In-process a
// typed event travels as the object it is; JSON is made only when something needs bytes.
#pragma once

#include <courier/bus/dead_letter_store.hpp>
#include <courier/bus/detail/bus_core.hpp>
#include <courier/bus/detail/message.hpp>
#include <courier/bus/detail/route.hpp>
#include <courier/bus/detail/subscription_state.hpp>
#include <courier/bus/idempotency.hpp>
#include <courier/bus/message_context.hpp>
#include <courier/bus/metrics.hpp>
#include <courier/bus/reply_address.hpp>
#include <courier/bus/subscription.hpp>
#include <courier/bus/subscription_options.hpp>
#include <courier/bus/topology.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/event_name.hpp>
#include <courier/event/event_traits.hpp>
#include <courier/event/topic_pattern.hpp>
#include <courier/event/upcaster.hpp>

#include <atomic>
#include <cstring>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Options of one publish.
struct publish_options {
    /// Ordering key (keyed subscriptions keep order per key), carried as header `courier-key`.
    std::string key;
    /// Free-form headers added to the envelope.
    std::map<std::string, std::string> headers;
    /// Start or continue a trace explicitly (overrides the inherited one).
    std::string trace_id;
    std::string correlation_id;
    /// Where a responder sends its reply (request-reply sets it; see rpc.hpp).
    reply_address reply_to;
};

/// What a publish did.
struct publish_result {
    std::uint32_t deliveries = 0;  ///< subscriptions that accepted the event
    std::uint32_t rejected = 0;    ///< subscriptions whose queue refused it (dead-lettered)
    bool closed = false;           ///< the bus is shut down; nothing was delivered
};

namespace detail {
/// Builds a publish_result so that g++ 12 returns it in registers. Field by field, it stores
/// the parts to the stack and reloads them wider; the failed store forwarding makes the
/// reload wait for every store before it, the new message's included (a quarter of a typed
/// publish). Whole 8- and 4-byte words copied in one go forward fine.
inline publish_result make_publish_result(std::uint32_t deliveries, std::uint32_t rejected, bool closed) noexcept {
    static_assert(sizeof(publish_result) == 12 && std::is_trivially_copyable_v<publish_result>);
    const struct {
        std::uint64_t counts;
        std::uint32_t closed;
    } raw{deliveries | (std::uint64_t{rejected} << 32), closed ? 1u : 0u};
    publish_result r;
    std::memcpy(static_cast<void*>(&r), &raw, sizeof r);
    return r;
}
struct envelope_text_publisher;
}  // namespace detail

/// Options of a bus.
struct bus_options {
    /// Dead-letter records kept before the oldest is evicted (and counted).
    std::size_t dead_letter_capacity = 100000;
};

/// What `shutdown` did.
struct shutdown_report {
    std::size_t handed_back = 0;  ///< messages that could not be delivered in time (dead-lettered, reason shutdown)
    bool timed_out = false;
};

/// The typed event bus.
///
/// Thread safety: every member may be called from any thread, handlers included.
/// Ordering: see delivery_mode; inline subscriptions run before publish returns.
/// Errors: a handler exception never escapes to the publisher or kills a worker; it is counted,
/// retried (at_least_once) and dead-lettered. Bad run-time names and patterns are errors from
/// `event_name::parse` / `topic_pattern::parse`; a bad literal does not compile.
///
/// Example:
/// ```
/// courier::runtime rt;
/// auto sub = rt.bus().subscribe<order_created>([](const order_created& e) { ship(e.id); });
/// rt.bus().publish(order_created{"o-1", 42.0});
/// ```
class event_bus {
    struct route_cache_entry;  // defined with the private members below

public:
    explicit event_bus(runtime_services services, bus_options options = {})
        : core_(std::make_shared<detail::bus_core>(std::move(services), options.dead_letter_capacity)),
          uid_(next_uid()),
          system_time_(&core_->services.clock == &system_clock::instance()) {}
    ~event_bus() {
        alive_->store(false, std::memory_order_release);
        std::vector<std::shared_ptr<detail::subscription_state>> subs;
        {
            std::lock_guard lock(mutex_);
            subs.swap(subs_);
            invalidate_routes_locked();
        }
        for (auto& s : subs) s->unsubscribe();
        wait_for_publishes();
    }
    event_bus(const event_bus&) = delete;
    event_bus& operator=(const event_bus&) = delete;

    // ---------------------------------------------------------------- publish

    /// Publishes a typed event. The object is moved into the bus, never serialized unless a
    /// subscriber needs bytes. Inherits trace/correlation from the handler running in this
    /// thread, and names its event as the cause.
    template <class T>
        requires typed_event<std::decay_t<T>>
    publish_result publish(T&& event) {
        return publish_typed(std::forward<T>(event), nullptr);
    }
    /// Publishes a typed event with a key, headers or an explicit trace.
    template <class T>
        requires typed_event<std::decay_t<T>>
    publish_result publish(T&& event, publish_options&& options) {
        return publish_typed(std::forward<T>(event), &options);  // its strings are moved into the event
    }
    template <class T>
        requires typed_event<std::decay_t<T>>
    publish_result publish(T&& event, const publish_options& options) {
        publish_options copy = options;
        return publish_typed(std::forward<T>(event), &copy);
    }

private:
    template <class T>
    publish_result publish_typed(T&& event, publish_options* options) {
        using E = std::decay_t<T>;
        auto& cache = local_cache();
        const detail::route* r = typed_route(cache, detail::type_index_of<E>(), event_type_of<E>().str());
        publish_scope scope(cache, asymmetric_);
        if (COURIER_UNLIKELY(core_->closed.load(std::memory_order_acquire))) return detail::make_publish_result(0, 0, true);
        cache.slot->count(cache.slot->published);
        if (r->empty()) {
            cache.slot->count(cache.slot->unrouted);
            return detail::make_publish_result(0, 0, false);
        }
        if (!r->needs_heap) {
            // Every subscriber runs inline: the event can live on this stack.
            detail::typed_message<E> m(std::forward<T>(event));
            stamp(m, options);
            return dispatch(cache, *r, &m);
        }
        auto* m = new detail::typed_message<E>(std::forward<T>(event));
        m->heap = true;
        stamp(*m, options);
        return dispatch(cache, *r, m);
    }

public:

    /// True when publishing a T now would reach at least one subscription (exact, pattern or
    /// through an upcaster), so a producer can skip building an event nobody listens to. Costs
    /// what a publish's routing costs (a thread-local cache lookup, no lock). A subscription
    /// made concurrently may or may not be seen, as with publish itself.
    template <class T>
        requires typed_event<T>
    bool has_subscribers() {
        if (core_->closed.load(std::memory_order_acquire)) return false;
        return !typed_route(local_cache(), detail::type_index_of<T>(), event_type_of<T>().str())->empty();
    }

    /// Moves whenever a subscription is made or closed: a producer that checks has_subscribers()
    /// for many events may keep the answers until it moves (the saga runner does).
    std::uint64_t routes_version() const noexcept { return version_.load(std::memory_order_acquire); }

    /// Publishes a dynamic event from an envelope (validated: a malformed name is an error).
    /// A nil event_id or a zero timestamp is filled in.
    result<publish_result> publish(envelope env) { return publish_envelope(std::move(env), std::function<void()>{}); }

    /// Publishes a dynamic event and calls `on_settled` once, when every subscription that
    /// accepted it has finished with it: handled it (retries included), dead-lettered it or
    /// dropped it. A bridge acks its broker there, so at-least-once holds across the hop.
    ///
    /// `on_settled` runs on the thread that finishes last (a worker, a timer, or this thread
    /// before publish returns when no subscription matched or every one ran inline); keep it
    /// short and non-throwing. It is called exactly once when the result has a value and
    /// `closed` is false, and never otherwise (an invalid envelope, a closed bus: the caller
    /// still owns the message). Costs one std::function in the message; publishes without it
    /// (typed ones above all) pay nothing.
    result<publish_result> publish(envelope env, std::function<void()> on_settled) {
        return publish_envelope(std::move(env), std::move(on_settled));
    }

private:
    // By reference: the message is built from the caller's envelope with one move (an envelope
    // is nine members; a bridge ingests one per delivery).
    // `data_text` (with `parser`): the data as checked JSON text, env.data ignored (see
    // detail::envelope_text_publisher).
    result<publish_result> publish_envelope(envelope&& env, std::function<void()>&& on_settled, std::string_view data_text = {},
                                            detail::data_text_parser parser = nullptr, detail::settle_hook&& settle = {}) {
        auto name = event_name::parse(env.event_type);
        if (!name) return unexpected(name.error());
        if (env.version != name->version()) {
            return unexpected(errc::malformed_envelope,
                              "[courier.envelope.version_mismatch] version " + std::to_string(env.version) +
                                  " does not match event_type '" + env.event_type + "'");
        }
        if (core_->closed.load(std::memory_order_acquire)) return publish_result{0, 0, true};
        if (env.timestamp == time_point{}) env.timestamp = core_->services.clock.now();
        auto* m = new detail::envelope_message(std::move(env), data_text, parser);
        m->heap = true;
        m->on_settled = std::move(on_settled);
        m->settle = std::move(settle);
        inherit_context(*m);
        auto& cache = local_cache();
        const detail::route* r = named_route(cache, m->event_type());
        publish_scope scope(cache, asymmetric_);
        if (COURIER_UNLIKELY(core_->closed.load(std::memory_order_acquire))) {
            // Closed while we built the message: refused like a publish that came later, and
            // on_settled is not called (the contract for `closed`).
            m->on_settled = nullptr;
            m->settle = {};
            detail::release(m);
            return publish_result{0, 0, true};
        }
        cache.slot->count(cache.slot->published);
        if (r->empty()) {
            cache.slot->count(cache.slot->unrouted);
            detail::release(m);
            return publish_result{};
        }
        return dispatch(cache, *r, m);
    }

public:
    // ---------------------------------------------------------------- subscribe

    /// Subscribes to the typed event T by its exact name (no pattern matching per message).
    /// The handler takes `const T&`, optionally followed by `const message_context&`.
    /// Also receives older versions of T's event through registered upcasters.
    template <class T, class Handler>
        requires typed_event<T>
    subscription subscribe(Handler&& handler, subscription_options options = {}) {
        static_assert(std::is_invocable_v<Handler&, const T&> || std::is_invocable_v<Handler&, const T&, const message_context&>,
                      "a subscribe<T> handler takes (const T&) or (const T&, const message_context&)");
        const std::string_view name = event_type_of<T>().str();
        auto inv = [h = std::forward<Handler>(handler), this](const detail::message_base& m, const message_context& ctx) mutable {
            if (COURIER_LIKELY(m.template holds<T>())) {
                call(h, static_cast<const detail::typed_message<T>&>(m).value, ctx);
                return;
            }
            T value = convert<T>(m);
            call(h, value, ctx);
        };
        return add(std::string(name), std::nullopt, detail::type_index_of<T>(), std::move(options), std::move(inv));
    }

    /// Subscribes to every event whose name matches `pattern` (`*` one segment, `#` zero or
    /// more, trailing `>` one or more). The handler takes `const message_context&` (an envelope
    /// view: metadata, `data()` as JSON, `as<T>()`). A literal pattern is checked at compile
    /// time; for a run-time string use `try_subscribe`. (A parsed topic_pattern views its
    /// text, which must live until this call returns; the bus keeps its own copy.)
    template <class Handler>
    subscription subscribe(topic_pattern pattern, Handler&& handler, subscription_options options = {}) {
        static_assert(std::is_invocable_v<Handler&, const message_context&>,
                      "a pattern handler takes (const message_context&)");
        auto inv = [h = std::forward<Handler>(handler)](const detail::message_base&, const message_context& ctx) mutable {
            h(ctx);
        };
        std::string text(pattern.str());
        return add(std::move(text), std::optional<topic_pattern>(pattern), detail::no_type, std::move(options), std::move(inv));
    }

    /// Subscribes with a pattern that arrives at run time (configuration, user input). A
    /// malformed pattern is an error (errc::invalid_pattern) naming the offending segment.
    template <class Handler>
    result<subscription> try_subscribe(std::string_view pattern, Handler&& handler, subscription_options options = {}) {
        auto parsed = topic_pattern::parse(pattern);
        if (!parsed) return unexpected(parsed.error());
        // `parsed` views `pattern`, which lives until we return; the subscription keeps a copy.
        return subscribe(*parsed, std::forward<Handler>(handler), std::move(options));
    }

    // ---------------------------------------------------------------- management

    /// Adds a handle middleware for every subscription made after this call.
    void use(handle_middleware mw) {
        std::unique_lock lock(core_->middleware_mutex);
        core_->handle_middleware_list.push_back(std::move(mw));
    }

    /// Declares a typed event as known (for the topology report) without publishing it.
    template <class T>
        requires typed_event<T>
    void declare() {
        declare_name(std::string(event_type_of<T>().str()));
    }

    upcaster_registry& upcasters() noexcept { return core_->upcasters; }
    dead_letter_store& dead_letters() noexcept { return core_->dead_letters; }
    courier::clock& clock() const noexcept { return core_->services.clock; }
    const runtime_services& services() const noexcept { return core_->services; }

    /// Sends a dead letter back to its subscription (or, if that is gone, publishes it on the
    /// bus again). Returns errc::not_found for an unknown id.
    result<void> redrive(std::uint64_t dead_letter_id) {
        auto d = core_->dead_letters.take(dead_letter_id);
        if (!d) return unexpected(errc::not_found, "[courier.dead_letter.not_found] no dead letter with id " +
                                                       std::to_string(dead_letter_id));
        redrive_one(std::move(*d));
        return {};
    }
    /// Redrives every dead letter (of one subscription, if named); returns how many.
    std::size_t redrive_all(std::string_view subscription_name = {}) {
        auto all = core_->dead_letters.take_all(subscription_name);
        for (auto& d : all) redrive_one(std::move(d));
        return all.size();
    }

    /// Counters of every live subscription.
    std::vector<subscription_metrics> metrics() const {
        std::lock_guard lock(mutex_);
        std::vector<subscription_metrics> out;
        for (auto& s : subs_) out.push_back(s->metrics());
        return out;
    }
    bus_metrics stats() const {
        bus_metrics m;
        {
            std::lock_guard lock(mutex_);
            for (auto& [id, slot] : slots_) {
                m.published += slot->published.load(std::memory_order_relaxed);
                m.unrouted += slot->unrouted.load(std::memory_order_relaxed);
            }
        }
        m.dead_letters = core_->dead_letters.size();
        return m;
    }
    /// Every counter in Prometheus text exposition format.
    std::string prometheus() const;
    /// Which events have no subscriber, which subscriptions can never match a known event,
    /// which wildcard subscriptions overlap.
    topology_report topology() const;

    /// Stops accepting publishes, lets queued messages be handled until `timeout`, then hands
    /// back (dead-letters, reason shutdown) what is left. `pump` runs the executor when nobody
    /// else does (manual runtime).
    shutdown_report shutdown(duration timeout, const std::function<void()>& pump = {}) {
        core_->closed.store(true, std::memory_order_seq_cst);
        // A publish that began before the close may still be handing its message to a
        // subscription; once it has, the drain below sees the message (queued, or counted as
        // handed back), so the report's count is exact.
        wait_for_publishes();
        std::vector<std::shared_ptr<detail::subscription_state>> subs;
        {
            std::lock_guard lock(mutex_);
            subs = subs_;
        }
        shutdown_report report;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
        for (auto& s : subs) report.handed_back += s->drain_and_close(deadline, pump);
        report.timed_out = std::chrono::steady_clock::now() >= deadline && report.handed_back > 0;
        std::vector<std::function<void()>> hooks;
        {
            std::lock_guard lock(mutex_);
            for (auto& [id, f] : shutdown_hooks_) hooks.push_back(std::move(f));
            shutdown_hooks_.clear();
        }
        for (auto& f : hooks) f();  // no lock held: a hook may use the bus (it is closed)
        return report;
    }

    /// Runs `f` once at the end of shutdown(), after the drain and before the runtime cancels
    /// its timers: components with their own pending work (rpc requests waiting for a reply)
    /// end it there with a clear error instead of never. Returns an id for remove_on_shutdown.
    /// A hook added after shutdown runs at once.
    std::uint64_t on_shutdown(std::function<void()> f) {
        {
            std::lock_guard lock(mutex_);
            if (!core_->closed.load(std::memory_order_acquire)) {
                shutdown_hooks_.emplace(++hook_counter_, std::move(f));
                return hook_counter_;
            }
        }
        f();
        return 0;
    }
    /// Forgets a hook (no effect once it ran, or for id 0).
    void remove_on_shutdown(std::uint64_t id) {
        std::lock_guard lock(mutex_);
        shutdown_hooks_.erase(id);
    }
    bool closed() const noexcept { return core_->closed.load(std::memory_order_acquire); }

private:
    friend class subscription;
    friend struct detail::envelope_text_publisher;

    static std::uint64_t next_uid() {
        static std::atomic<std::uint64_t> n{0};
        return ++n;
    }

    template <class H, class T>
    static void call(H& h, const T& v, const message_context& ctx) {
        if constexpr (std::is_invocable_v<H&, const T&, const message_context&>) h(v, ctx);
        else h(v);
    }

    // Data of another C++ type, an envelope or an older version, converted to T.
    template <class T>
    T convert(const detail::message_base& m) {
        try {
            const std::string_view want = event_type_of<T>().str();
            if (m.event_type() == want) return detail::read_data_as<T>(m);
            auto up = core_->upcasters.upcast(m.to_envelope(core_->services.producer), event_type_of<T>().version());
            if (!up) throw detail::decode_failure(up.error().message);
            return up->data.template get<T>();
        } catch (const detail::decode_failure&) {
            throw;
        } catch (const std::exception& e) {
            throw detail::decode_failure(std::string("[courier.bus.undecodable] cannot convert '") +
                                         std::string(m.event_type()) + "' data to the subscriber's type: " + e.what());
        }
    }

    void stamp(detail::message_base& m, publish_options* options) {
        m.timestamp = system_time_ ? detail::fast_system_now() : core_->services.clock.now();
        inherit_context(m);
        if (!options) return;
        auto& o = *options;
        if (!o.key.empty()) m.set_key(std::move(o.key));
        if (o.reply_to) m.set_reply_to(o.reply_to);
        if (!o.trace_id.empty() || !o.correlation_id.empty() || !o.headers.empty()) {
            auto t = m.trace() ? std::make_shared<detail::trace_data>(*m.trace()) : std::make_shared<detail::trace_data>();
            if (!o.trace_id.empty()) t->trace_id = std::move(o.trace_id);
            if (!o.correlation_id.empty()) t->correlation_id = std::move(o.correlation_id);
            for (auto& [k, v] : o.headers) t->headers.insert_or_assign(k, std::move(v));
            m.set_trace(std::move(t));
        }
    }

    // The handler running in this thread (if any) becomes the cause of this event.
    static void inherit_context(detail::message_base& m) {
        const message_context* cause = message_context::current();
        if (!cause) return;
        const auto& c = cause->message();
        if (m.causation_id().is_nil()) m.set_causation_id(c.event_id());
        if (m.trace()) return;  // an envelope that brought its own trace keeps it
        const auto& ct = c.trace();
        if (ct && !ct->correlation_id.empty()) {
            m.set_trace(ct);
        } else if (!ct && m.causation_id() == c.event_id()) {
            // A root event: its id correlates the whole chain (the trace is made if someone asks).
            m.set_trace_from_causation();
        } else {
            // A cause whose trace has no correlation (or an event naming another cause): the
            // handled event's id correlates the chain, the rest of its trace is kept.
            auto t = ct ? std::make_shared<detail::trace_data>(*ct) : std::make_shared<detail::trace_data>();
            t->correlation_id = c.event_id().to_string();
            t->headers.clear();
            m.set_trace(std::move(t));
        }
    }

    publish_result dispatch(route_cache_entry& cache, const detail::route& r, detail::message_base* m) {
        std::uint32_t delivered = 0, rejected = 0;
        // One reference per async delivery, taken up front. Without queue groups the last async
        // delivery inherits the publisher's own reference (nothing touches the message after
        // it), which spares the common single-subscriber publish a retain/release pair on a
        // line the consumer is already reading.
        const bool hand_over = r.groups.empty() && r.async_count != 0;
        if (m->heap && r.async_count) detail::retain(m, r.async_count - (hand_over ? 1 : 0));
        const std::uint32_t publisher = cache.slot->index;
        for (auto* s : r.inline_subs) delivered += s->deliver_inline(*m, publisher) ? 1 : 0;
        for (auto* s : r.async_subs) {
            if (s->deliver(m, publisher)) ++delivered;
            else ++rejected;
        }
        if (hand_over) return detail::make_publish_result(delivered, rejected, false);
        // The same for the last group: its member, if async, takes the publisher's reference
        // (a request to a queue group of responders is the common case).
        const auto last_group = r.groups.empty() ? nullptr : r.groups.back().get();
        bool handed_over = false;
        for (auto& g : r.groups) {
            auto* s = g->pick();
            if (!s) continue;
            if (s->is_async()) {
                if (g.get() == last_group) handed_over = true;
                else detail::retain(m);
            }
            if (s->deliver(m, publisher)) ++delivered;
            else if (s->is_async()) ++rejected;
        }
        if (!handed_over) detail::release(m);
        return detail::make_publish_result(delivered, rejected, false);
    }

    subscription add(std::string pattern_text, std::optional<topic_pattern> pattern, std::size_t type_index,
                     subscription_options options, detail::subscription_state::invoker inv) {
        std::lock_guard lock(mutex_);
        if (options.name.empty()) options.name = pattern_text + "#" + std::to_string(++name_counter_);
        for (auto& s : subs_) {
            if (s->name() == options.name)
                throw courier_error(error(errc::invalid_argument, "[courier.bus.duplicate_subscription] a subscription named '" +
                                                                      options.name + "' exists already"));
        }
        std::string name = options.name;  // copied before `options` is moved below
        auto st = std::make_shared<detail::subscription_state>(core_, std::move(name), std::move(pattern_text),
                                                               std::move(pattern), type_index, std::move(options), std::move(inv));
        subs_.push_back(st);
        invalidate_routes_locked();
        return subscription(this, st, alive_);
    }

    void remove(std::shared_ptr<detail::subscription_state> st) {
        {
            std::lock_guard lock(mutex_);
            std::erase(subs_, st);
            invalidate_routes_locked();
        }
        st->unsubscribe();  // inactive first: an inline call that starts after this sees it
        wait_for_publishes();
    }

    // Waits until every other thread that was inside a publish on this bus has left it (its
    // slot's sequence moved on). Pairs with publish_scope: the publisher's fence after making
    // its sequence odd orders it before its reads of `active` and `closed`, and unsubscribe
    // (shutdown) made the subscription inactive (the bus closed) with seq_cst and ran the heavy
    // half of the fence before reading the sequences here.
    void wait_for_publishes() {
        detail::heavy_fence(asymmetric_);
        std::vector<std::pair<detail::publisher_slot*, std::uint64_t>> busy;
        {
            std::lock_guard lock(mutex_);
            const auto self = std::this_thread::get_id();
            for (auto& [id, slot] : slots_) {
                if (id == self) continue;  // our own dispatch is the caller: it cannot wait for itself
                const auto seq = slot->dispatch_seq.load(std::memory_order_seq_cst);
                if (seq & 1) busy.emplace_back(slot.get(), seq);
            }
        }
        for (auto& [slot, seq] : busy) {
            for (unsigned spins = 0; slot->dispatch_seq.load(std::memory_order_acquire) == seq; ++spins) {
                if (spins < 100) std::this_thread::yield();
                else std::this_thread::sleep_for(std::chrono::microseconds(50));
            }
        }
    }

    void invalidate_routes_locked() {
        routes_.clear();
        version_.fetch_add(1, std::memory_order_acq_rel);
    }

    void declare_name(std::string name) {
        std::lock_guard lock(mutex_);
        known_.insert(std::move(name));
    }

    // Builds (or finds) the route of an event name: every subscription that matches it,
    // matched once here and cached, never per message.
    std::shared_ptr<const detail::route> route_for(std::string_view name) {
        std::lock_guard lock(mutex_);
        if (auto it = routes_.find(name); it != routes_.end()) return it->second;
        known_.insert(std::string(name));
        auto r = std::make_shared<detail::route>();
        auto parsed = event_name::parse(name);
        for (auto& s : subs_) {
            if (!matches(*s, name, parsed ? &*parsed : nullptr)) continue;
            r->add(s);
        }
        routes_.emplace(std::string(name), r);
        return r;
    }

    bool matches(const detail::subscription_state& s, std::string_view name, const event_name* parsed) const {
        if (s.pattern()) return s.pattern()->matches(name);
        if (s.pattern_text() == name) return true;
        // A typed subscriber of a newer version receives older versions through upcasters.
        if (!parsed) return false;
        auto want = event_name::parse(s.pattern_text());
        if (!want || want->base() != parsed->base() || want->version() <= parsed->version()) return false;
        return core_->upcasters.can_upcast(parsed->base(), parsed->version(), want->version());
    }

    // Per-thread, per-bus cache of routes: a publish reads one shared counter (never written
    // on the hot path) and indexes a vector; no refcount traffic, no lock, no hash for typed
    // events. Routes replaced while this thread is inside a dispatch are retired, not freed,
    // because that dispatch may still be walking them.
    struct route_cache_entry {
        std::uint64_t bus_uid = 0;
        std::uint64_t version = 0;
        std::vector<std::shared_ptr<const detail::route>> typed;
        // Transparent: an envelope's publish looks its name up without building a string.
        struct name_hash {
            using is_transparent = void;
            std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
        };
        std::unordered_map<std::string, std::shared_ptr<const detail::route>, name_hash, std::equal_to<>> named;
        std::vector<std::shared_ptr<const detail::route>> retired;
        std::shared_ptr<detail::publisher_slot> slot;

        void reset_routes() {
            if (slot && slot->depth > 0) {
                for (auto& r : typed)
                    if (r) retired.push_back(std::move(r));
                for (auto& [name, r] : named) retired.push_back(std::move(r));
            }
            typed.clear();
            named.clear();
        }
    };
    struct route_cache {
        std::vector<route_cache_entry> entries;
        std::size_t victim = 0;
    };

    // Marks this thread as publishing on the bus (see wait_for_publishes): unsubscribe waits for
    // the inline calls such a publish may be making, shutdown for the messages it may still be
    // handing to a subscription. Two stores to a line only this thread writes, no RMW.
    class publish_scope {
    public:
        publish_scope(route_cache_entry& e, bool asymmetric) noexcept : e_(e) {
            auto& s = *e_.slot;
            if (s.depth++ == 0) {
                s.dispatch_seq.store(s.dispatch_seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
                // Store-load barrier before reading `active`: free here when unsubscribe pays
                // for it with membarrier (see wait_for_publishes).
                detail::light_fence(asymmetric);
            }
        }
        ~publish_scope() {
            auto& s = *e_.slot;
            if (--s.depth == 0) {
                s.dispatch_seq.store(s.dispatch_seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
                e_.retired.clear();
            }
        }
        publish_scope(const publish_scope&) = delete;
        publish_scope& operator=(const publish_scope&) = delete;

    private:
        route_cache_entry& e_;
    };

    route_cache_entry& local_cache() {
        thread_local route_cache c;
        route_cache_entry* e = nullptr;
        for (auto& x : c.entries)
            if (x.bus_uid == uid_) {
                e = &x;
                break;
            }
        if (COURIER_UNLIKELY(!e)) e = &new_cache_entry(c);
        const auto v = version_.load(std::memory_order_acquire);
        if (COURIER_UNLIKELY(e->version != v)) {
            e->version = v;
            e->reset_routes();
        }
        return *e;
    }

    route_cache_entry& new_cache_entry(route_cache& c) {
        constexpr std::size_t max_entries = 8;
        route_cache_entry* e = nullptr;
        if (c.entries.size() < max_entries) {
            // Growing would move entries that a dispatch up this stack may be using: reserve once.
            if (c.entries.capacity() < max_entries) c.entries.reserve(max_entries);
            e = &c.entries.emplace_back();
        } else {
            for (std::size_t tries = 0; tries < c.entries.size() && !e; ++tries) {
                auto& candidate = c.entries[c.victim++ % c.entries.size()];
                if (!candidate.slot || candidate.slot->depth == 0) e = &candidate;
            }
            if (!e) throw courier_error(error(errc::invalid_state,
                                              "[courier.bus.nesting] inline dispatch nested across more than 8 buses"));
            *e = route_cache_entry{};
        }
        e->bus_uid = uid_;
        e->version = version_.load(std::memory_order_acquire);
        std::lock_guard lock(mutex_);
        auto& slot = slots_[std::this_thread::get_id()];
        if (!slot) {
            slot = std::make_shared<detail::publisher_slot>();
            slot->index = static_cast<std::uint32_t>(slots_.size() - 1);
        }
        e->slot = slot;
        return *e;
    }

    const detail::route* typed_route(route_cache_entry& c, std::size_t index, std::string_view name) {
        if (COURIER_LIKELY(index < c.typed.size() && c.typed[index])) return c.typed[index].get();
        if (index >= c.typed.size()) c.typed.resize(index + 1);
        c.typed[index] = route_for(name);
        return c.typed[index].get();
    }
    const detail::route* named_route(route_cache_entry& c, std::string_view name) {
        if (auto it = c.named.find(name); it != c.named.end()) return it->second.get();
        auto r = route_for(name);
        auto* raw = r.get();
        c.named.emplace(std::string(name), std::move(r));
        return raw;
    }

    void redrive_one(dead_letter d) {
        std::shared_ptr<detail::subscription_state> target;
        {
            std::lock_guard lock(mutex_);
            for (auto& s : subs_)
                if (s->name() == d.subscription) target = s;
        }
        auto* m = new detail::envelope_message(std::move(d.message));
        m->heap = true;
        auto& cache = local_cache();
        publish_scope scope(cache, asymmetric_);
        if (target) {
            if (!target->is_async()) {
                target->deliver(m);
                detail::release(m);
            } else {
                target->redeliver(m);
            }
            return;
        }
        const detail::route* r = named_route(cache, m->event_type());
        if (r->empty()) {
            detail::release(m);
            return;
        }
        (void)dispatch(cache, *r, m);
    }

    std::shared_ptr<detail::bus_core> core_;
    const std::uint64_t uid_;
    std::map<std::uint64_t, std::function<void()>> shutdown_hooks_;  // guarded by mutex_
    std::uint64_t hook_counter_ = 0;
    const bool system_time_;
    const bool asymmetric_ = detail::membarrier_available();  // the clock is the system clock: read it without a virtual call
    mutable std::mutex mutex_;
    std::vector<std::shared_ptr<detail::subscription_state>> subs_;
    std::map<std::string, std::shared_ptr<const detail::route>, std::less<>> routes_;
    std::set<std::string, std::less<>> known_;
    std::uint64_t name_counter_ = 0;
    std::map<std::thread::id, std::shared_ptr<detail::publisher_slot>> slots_;  // one per publishing thread
    alignas(cache_line_size) std::atomic<std::uint64_t> version_{0};
    std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);
};

namespace detail {
/// For a bridge's ingest: publish(envelope, on_settled) for an envelope whose data is still the
/// JSON text the broker delivered, checked by the bridge (copied into the message). Typed
/// subscribers read the text (see read_data_as); the document is made by `parser` only if a
/// reader asks for it. `settle` is called as on_settled would be (see settle_hook).
struct envelope_text_publisher {
    static result<publish_result> publish(event_bus& bus, envelope&& env, std::string_view data_text, data_text_parser parser,
                                          settle_hook&& settle) {
        return bus.publish_envelope(std::move(env), std::function<void()>{}, data_text, parser, std::move(settle));
    }
};
}  // namespace detail

COURIER_END_NAMESPACE

#include <courier/bus/impl/event_bus.hpp>
