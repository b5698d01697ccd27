// Request-reply on the event bus, NATS style: a request is a typed event published with a
// reply address (`publish_options::reply_to`); responders are bus subscriptions in a queue group that share the load; the
// reply completes the asker's pending request through any Asio completion token (callback,
// use_future, use_awaitable). Also scatter-gather (`request_all`) and typed timeouts, and the
// same by an event name known at run time with JSON data (`respond(name, ...)`,
// `request(name, json, ...)`), which meets typed responders and requests of that name.
#pragma once

#include <courier/bus/event_bus.hpp>
#include <courier/bus/message_context.hpp>
#include <courier/bus/subscription.hpp>
#include <courier/bus/subscription_options.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/event_name.hpp>
#include <courier/event/event_traits.hpp>
#include <courier/queue/queue_status.hpp>
#include <courier/rpc/detail/rpc_core.hpp>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Options of one request (`rpc::request` with a bare duration uses the defaults).
struct request_options {
    /// How long to wait for the reply, on the runtime's clock. Then errc::timeout.
    duration timeout = std::chrono::seconds(5);
    /// Ordering key of the request event (keyed responders keep order per key).
    std::string key;
    /// Extra headers on the request event (the responder reads them with `ctx.header`).
    std::map<std::string, std::string> headers;
    /// Start or continue a trace explicitly (default: inherited from the handler running in
    /// this thread, as for any publish).
    std::string trace_id;
    std::string correlation_id;
};

/// Options of one responder: how its bus subscriptions receive requests.
struct responder_options {
    /// Name of the request subscription in metrics and dead letters (the scatter subscription
    /// is "<name>.scatter"). Default: made up by the bus. Unique per bus.
    std::string name;
    /// Queue group: the responders of one request type in one group share its requests, each
    /// request going to one of them. Empty (the default) means the request's event name, so
    /// every responder of a type shares the load unless told otherwise; responders in different
    /// groups each receive every request (the first reply wins, later ones count as late).
    std::string group;
    /// Where the handler runs: pooled (default) on the runtime's executor; inline_call in the
    /// requester's thread (no hop; the requester's own thread does the work).
    delivery_mode mode = delivery_mode::pooled;
    /// pooled: handler calls of this responder running at once (0: one per runtime thread).
    std::uint32_t concurrency = 0;
    /// Bound of the responder's request queue; 0 is unbounded on purpose.
    std::size_t capacity = 65536;
    /// What a request does when the queue is full. `fail` (the default): the request is refused
    /// at once (dead-lettered by the bus) and, when no responder took it, the requester
    /// completes with errc::full "[courier.rpc.overloaded]", so `request` never waits for room.
    /// `block` makes the requesting thread wait for room (back-pressure instead of an error).
    overflow_policy overflow = overflow_policy::fail;
    /// Middleware around the handler (tracing, metrics...), outermost first.
    std::vector<handle_middleware> middleware;
};

/// What `rpc::request_all` collected.
template <class Reply>
struct gather_result {
    std::vector<Reply> replies;          ///< in arrival order
    std::vector<courier::error> errors;  ///< responders that answered with an error (or threw)
    std::size_t asked = 0;               ///< responders live when the request was sent
    /// True when every responder asked answered before the deadline (the scatter then completes
    /// early); false when the deadline ended it.
    bool complete = false;
};

/// A point-in-time copy of an rpc object's counters.
struct rpc_metrics {
    std::uint64_t requests = 0;        ///< request / request_all calls
    std::uint64_t replies = 0;         ///< replies that completed (or joined) a pending request
    std::uint64_t error_replies = 0;   ///< replies that carried an error
    std::uint64_t timeouts = 0;        ///< requests that ended with errc::timeout
    std::uint64_t no_responders = 0;   ///< requests that failed at once: nobody answers the type
    std::uint64_t overloaded = 0;      ///< requests that failed at once: every responder's queue was full
    std::uint64_t late_replies = 0;    ///< replies dropped: their request timed out, was answered
                                       ///< already or was cancelled
    std::uint64_t orphan_replies = 0;  ///< replies this object's responders made for an rpc object
                                       ///< that no longer exists
    std::uint64_t served = 0;          ///< requests this object's responders answered
    std::uint64_t served_failed = 0;   ///< ... of which with an error (a throw or an error result)
    std::uint64_t without_reply_to = 0;  ///< request events served that had no reply-to (plain publishes)
    std::uint64_t completion_failed = 0;  ///< completions that threw while a responder's thread ran
                                          ///< them inline (caught there, see rpc)
    std::uint64_t pending = 0;         ///< requests waiting now
    std::uint64_t latency_p50_ns = 0;  ///< request -> reply, steady clock
    std::uint64_t latency_p99_ns = 0;
};

/// The RAII handle of a responder: destroying it (or `stop()`) unregisters the responder, so
/// new requests no longer count it, then unsubscribes (requests already queued for it are
/// handed back by the bus, and their requesters time out).
///
/// Thread safety: as `subscription`.
class responder {
public:
    responder() = default;
    responder(responder&&) noexcept = default;
    responder& operator=(responder&& o) noexcept {
        if (this != &o) {
            stop();
            requests_ = std::move(o.requests_);
            scatter_ = std::move(o.scatter_);
            count_ = std::move(o.count_);
        }
        return *this;
    }
    ~responder() { stop(); }

    /// Stops answering (idempotent).
    void stop() {
        if (count_) count_->fetch_sub(1, std::memory_order_acq_rel);
        count_.reset();
        requests_.unsubscribe();
        scatter_.unsubscribe();
    }
    bool active() const noexcept { return requests_.active(); }
    explicit operator bool() const noexcept { return active(); }
    /// The name of the request subscription.
    std::string_view name() const noexcept { return requests_.name(); }
    /// The bus counters of the request subscription (queue depth, latency, ...).
    subscription_metrics metrics() const { return requests_.metrics(); }

private:
    friend class rpc;
    responder(subscription req, subscription scatter, std::shared_ptr<std::atomic<std::int64_t>> count)
        : requests_(std::move(req)), scatter_(std::move(scatter)), count_(std::move(count)) {}

    subscription requests_;
    subscription scatter_;
    std::shared_ptr<std::atomic<std::int64_t>> count_;
};

/// A deferred reply: a responder that cannot answer before its handler returns (it waits for
/// I/O, another request, a timer) takes a `reply_to<Reply>` and answers through it later,
/// from any thread. The reply carries the request's trace and correlation like an immediate
/// one. Destroying an unanswered handle answers with errc::handler_failed
/// "[courier.rpc.no_reply]", so a requester never waits for a reply that will not come.
///
/// Thread safety: one thread at a time (move it where it is needed).
/// Errors: none; a reply that arrives after the requester gave up is dropped and counted by the
/// requester (`late_replies`).
///
/// Example:
/// ```
/// auto r = rpc.respond<get_quote, quote>([&](const get_quote& q, courier::reply_to<quote> reply) {
///     pricing.async_price(q.sku, [reply = std::move(reply)](double p) mutable { reply.send(quote{p}); });
/// });
/// ```
template <class Reply>
class reply_to {
public:
    reply_to() = default;
    /// Made by the responder machinery (detail types: not for users).
    reply_to(std::shared_ptr<detail::rpc_core> core, reply_address address, detail::reply_meta meta, std::string name)
        : core_(std::move(core)), address_(std::move(address)), meta_(std::move(meta)), name_(std::move(name)) {}
    reply_to(reply_to&&) noexcept = default;
    reply_to& operator=(reply_to&& o) noexcept {
        if (this != &o) {
            abandon();
            core_ = std::move(o.core_);
            address_ = o.address_;
            meta_ = std::move(o.meta_);
            name_ = std::move(o.name_);
        }
        return *this;
    }
    ~reply_to() { abandon(); }

    /// True until the handle answered (or was moved from).
    bool pending() const noexcept { return core_ != nullptr; }
    /// Sends the reply; false if this handle answered already.
    bool send(Reply reply) {
        if (!core_) return false;
        auto core = std::move(core_);
        detail::reply_packet p;
        p.msg = detail::make_reply_message(std::move(reply), std::move(meta_), core->services().clock.now());
        finish(*core, std::move(p));
        return true;
    }
    /// Answers with an error (the requester completes with it); false if answered already.
    bool fail(courier::error e) {
        if (!core_) return false;
        auto core = std::move(core_);
        detail::reply_packet p;
        p.err = std::move(e);
        finish(*core, std::move(p));
        return true;
    }
    /// Where the reply goes (`to_string()`: "_INBOX.<inbox>.<id>"); false for a request
    /// published without one.
    reply_address address() const noexcept { return address_; }

private:
    void finish(detail::rpc_core& core, detail::reply_packet&& p) {
        auto& c = core.counters().serve;
        (p.err ? c.served_failed : c.served).fetch_add(1, std::memory_order_relaxed);
        if (!address_) {
            c.without_reply_to.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        detail::route_reply(core, address_, std::move(p));
    }
    void abandon() {
        if (core_)
            fail(courier::error(errc::handler_failed,
                                "[courier.rpc.no_reply] responder '" + name_ + "' dropped the request without replying"));
    }

    std::shared_ptr<detail::rpc_core> core_;
    reply_address address_;
    detail::reply_meta meta_;
    std::string name_;
};

namespace detail {
template <class Reply, class Req>
struct reply_type {
    using type = Reply;
};
template <class Req>
struct reply_type<void, Req> {
    static_assert(requires { typename Req::reply_type; },
                  "name the reply type: rpc.request<Reply>(req, ...), or declare `using reply_type = Reply;` in the request");
    using type = typename Req::reply_type;
};
template <class Reply, class Req>
using reply_type_t = typename reply_type<Reply, Req>::type;

/// Ends the pending requests with errc::closed when the bus shuts down, through the bus's
/// shutdown notification when it offers one (`on_shutdown(std::function<void()>)`, run by
/// `event_bus::shutdown` before the runtime cancels its timers). Without it `rpc::close()` does
/// the same by hand.
template <class Bus>
void close_on_shutdown(Bus& bus, const std::shared_ptr<rpc_core>& core) {
    if constexpr (requires { bus.on_shutdown(std::function<void()>{}); }) {
        std::weak_ptr<rpc_core> weak = core;
        bus.on_shutdown([weak] {
            if (auto c = weak.lock()) c->close(end_reason::closed);
        });
    }
}

template <class T>
struct is_result : std::false_type {};
template <class T>
struct is_result<result<T>> : std::true_type {
    using type = T;  // hides integral_constant::type on purpose: the value type
};
}  // namespace detail

/// Request-reply over an event bus.
///
/// A request is a typed event (`pricing.quote.requested.v1`) published on the bus with a reply
/// address (`publish_options::reply_to`, carried beside the message: no header, no string; it
/// becomes the header "courier-reply: _INBOX.<inbox>.<id>" only if the request is turned into an
/// envelope, and an envelope published with that header is a request again); it inherits trace and correlation
/// like any publish, so wildcard subscribers and stream captures see it. A responder is a pair
/// of bus subscriptions: one in a queue group for requests, one outside any group for
/// scatter requests. Its handler returns the reply (or a `result<Reply>`, or throws); the reply
/// carries metadata that continues the request's trace and correlation with the request as its
/// cause, and completes the pending request of the rpc object that asked (found through the
/// inbox, whichever rpc object of the process that is).
///
/// Completion: `void(courier::result<Reply>)`: a value, or an error with a stable id:
/// - errc::no_responders "[courier.rpc.no_responders]" at once, without waiting, when nobody
///   answers the request type (counted before publishing, and confirmed by the publish);
/// - errc::full "[courier.rpc.overloaded]" at once when responders exist but every queue that
///   the request went to refused it (full, under the default `fail` overflow);
/// - errc::timeout "[courier.rpc.timeout]" when no reply came within the timeout, measured on
///   the runtime's clock (a manual clock in tests); a reply after that is dropped and counted
///   in `metrics().late_replies`;
/// - the responder's error (its `result` error, or errc::handler_failed
///   "[courier.rpc.handler_failed]" when it threw);
/// - errc::closed "[courier.rpc.closed]" when the bus is shut down before the request is sent,
///   or when `close()` ends it while pending; errc::cancelled "[courier.rpc.cancelled]" when the
///   rpc object is destroyed while it is pending.
/// A result-carrying signature (rather than `void(error_code, Reply)`) because Boost 1.74's
/// `use_future`/`use_awaitable` only turn boost::system::error_code into exceptions: with a
/// result the three token kinds behave alike, and the typed error is never lost in a tuple.
///
/// While a callback or coroutine runs on the reply, the reply's `message_context` is the
/// thread's current one (trace, correlation, causation = the request's id), so what it
/// publishes continues the chain. (Not for `use_future`: the waiting thread has no context.)
/// That context carries the reply's metadata only: the value itself was moved into the result.
///
/// Thread safety: every member may be called from any thread, handlers included.
/// Ordering: replies complete in the order they arrive; no order between requests.
/// Blocking: `request` never waits for a reply, nor for room in a responder's queue under the
/// default overflow (`fail`); a responder made with overflow `block` makes it wait for room, and
/// an `inline_call` responder runs its handler inside `request`. The completion runs through
/// the handler's associated executor (default: the runtime's), never inside the initiating call.
/// Exceptions: a completion that throws on the runtime's io_context propagates from its
/// `run()`/`poll()` (Asio's rule; Asio captures it even when it ran inline). One whose executor
/// runs it inline in the thread that delivers the reply (system_executor, an inline executor)
/// would unwind into the responder: it is caught there and counted in `completion_failed`, never
/// counted against the request served.
/// Errors: as above; `respond` throws courier_error for a duplicate subscription name.
///
/// Example:
/// ```
/// courier::rpc rpc(rt.bus());
/// auto pricing = rpc.respond<get_quote>([](const get_quote& q) { return quote{q.sku, 9.5}; });
/// rpc.request<quote>(get_quote{"sku-1"}, 2s, [](courier::result<quote> r) {
///     if (r) use(r->price); else log(r.error().message);   // [courier.rpc.timeout] ...
/// });
/// std::future<courier::result<quote>> f = rpc.request<quote>(get_quote{"sku-1"}, 2s, boost::asio::use_future);
/// courier::result<quote> q = co_await rpc.request<quote>(get_quote{"sku-1"}, 2s, boost::asio::use_awaitable);
/// ```
class rpc {
public:
    using executor_type = boost::asio::io_context::executor_type;

    /// An rpc endpoint on `bus`, which must outlive it.
    explicit rpc(event_bus& bus) : bus_(bus), core_(std::make_shared<detail::rpc_core>(bus.services(), &bus)) {
        core_->start();
        detail::close_on_shutdown(bus, core_);
    }
    /// Ends every pending request with errc::cancelled. Responders made here keep answering
    /// until their handles are destroyed.
    ~rpc() { core_->close(detail::end_reason::cancelled); }

    /// Ends every pending request with errc::closed "[courier.rpc.closed]" and refuses new ones
    /// (they complete with errc::closed at once). Idempotent. Call it before stopping the
    /// runtime: `runtime::stop()` cancels every timer, so a request still pending then would
    /// never time out. Responders made here keep answering until their handles are destroyed.
    void close() { core_->close(detail::end_reason::closed); }
    rpc(const rpc&) = delete;
    rpc& operator=(const rpc&) = delete;

    /// Answers requests of type `Req`. The handler takes `(const Req&)` or `(const Req&, const
    /// message_context&)` and returns the reply (a typed event), or `result<Reply>` to answer
    /// with an error; a throw answers with errc::handler_failed. With `Reply` named, the handler
    /// may instead take a trailing `reply_to<Reply>` and answer later (deferred reply).
    /// Requests published without a reply-to (plain events) are handled and the reply is
    /// dropped (counted in `without_reply_to`).
    template <class Req, class Reply = void, class Handler>
        requires typed_event<Req>
    responder respond(Handler&& handler, responder_options options = {});

    /// Sends `req` and completes with the first reply, or an error (see the class comment).
    /// The reply type is `Reply`, or `Req::reply_type` when Reply is not given.
    template <class Reply = void, class Req, class CompletionToken>
        requires typed_event<std::decay_t<Req>>
    auto request(Req&& req, duration timeout, CompletionToken&& token) {
        request_options o;
        o.timeout = timeout;
        return request<Reply>(std::forward<Req>(req), std::move(o), std::forward<CompletionToken>(token));
    }
    /// As above, with options (key, headers, explicit trace).
    template <class Reply = void, class Req, class CompletionToken>
        requires typed_event<std::decay_t<Req>>
    auto request(Req&& req, request_options options, CompletionToken&& token);

    /// Scatter-gather: sends `req` to every live responder of its type (every member of every
    /// group, through the type's scatter channel `<base>.rpc_scatter.vN`) and completes with the
    /// replies that arrived before `window` passed on the runtime's clock, or earlier once
    /// every responder asked has answered. Completion: `void(result<gather_result<Reply>>)`;
    /// errors: no_responders (at once), closed, cancelled.
    template <class Reply = void, class Req, class CompletionToken>
        requires typed_event<std::decay_t<Req>>
    auto request_all(Req&& req, duration window, CompletionToken&& token) {
        request_options o;
        o.timeout = window;
        return request_all<Reply>(std::forward<Req>(req), std::move(o), std::forward<CompletionToken>(token));
    }
    template <class Reply = void, class Req, class CompletionToken>
        requires typed_event<std::decay_t<Req>>
    auto request_all(Req&& req, request_options options, CompletionToken&& token);

    /// Live responders of `Req` on this bus (every rpc object's).
    template <class Req>
        requires typed_event<Req>
    std::size_t responders() {
        const auto n = core_->responders(event_type_of<Req>().str()).load(std::memory_order_acquire);
        return n > 0 ? static_cast<std::size_t>(n) : 0;
    }

    // ---------------------------------------------------------------- by name

    /// Answers requests named `name` at run time (`"pricing.quote.requested.v1"`), with JSON
    /// data: the bridge's side of request-reply (a NATS subject forwarded as an event name), or a
    /// responder configured at run time. The handler takes `(const nlohmann::json& data)` or
    /// `(const nlohmann::json& data, const message_context&)` and returns the reply as JSON (or
    /// anything nlohmann converts to JSON), or `result<...>` of it to answer with an error; a
    /// throw answers with errc::handler_failed. It may instead take a trailing
    /// `reply_to<nlohmann::json>` and answer later (deferred reply). Options as for typed
    /// responders (the default queue group is the name).
    ///
    /// Typed and named sides meet on the name: a typed request of this name reaches this
    /// responder (its data as JSON, serialized once), and the reply (JSON, no event type of its
    /// own) is converted to the typed requester's reply type; a conversion that fails completes
    /// the typed request with errc::malformed_envelope "[courier.rpc.bad_reply]". Scatter
    /// requests of this name reach it too.
    ///
    /// Errors: errc::invalid_name (from event_name::parse, naming the offending segment) for a
    /// malformed name; the bus's error for a duplicate subscription name.
    ///
    /// Example:
    /// ```
    /// auto r = rpc.respond("pricing.quote.requested.v1", [](const nlohmann::json& d) {
    ///     return nlohmann::json{{"sku", d.at("sku")}, {"price", 9.5}};
    /// });
    /// if (!r) log(r.error().message);  // [courier.event.invalid_name] ...
    /// courier::responder pricing = std::move(*r);
    /// ```
    template <class Handler>
    result<responder> respond(std::string_view name, Handler&& handler, responder_options options = {});

    /// Sends a request named `name` with `data` (published as an envelope carrying the reply
    /// address in its `courier-reply` header) and completes with the first reply as JSON:
    /// `void(courier::result<nlohmann::json>)`, through any completion token (callback,
    /// use_future, use_awaitable). Any responder of the name answers: a named one (its JSON), or
    /// a typed one of that event type (the bus converts `data` to the request type; its reply
    /// arrives as the reply's JSON). Errors as for typed requests, plus errc::invalid_name for a
    /// malformed name (completed through the token, never thrown). A typed responder whose
    /// request type cannot be built from `data` never sees the request: the bus dead-letters
    /// it ("[courier.bus.undecodable]") and the request times out.
    template <class CompletionToken>
    auto request(std::string_view name, nlohmann::json data, duration timeout, CompletionToken&& token) {
        request_options o;
        o.timeout = timeout;
        return request(name, std::move(data), std::move(o), std::forward<CompletionToken>(token));
    }
    template <class CompletionToken>
    auto request(std::string_view name, nlohmann::json data, request_options options, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(result<nlohmann::json>)>(
            [this](auto&& handler, std::unique_ptr<std::string>&& n, nlohmann::json&& d, request_options&& o) {
                start_named<false>(std::forward<decltype(handler)>(handler), std::move(n), std::move(d), std::move(o));
            },
            token, std::make_unique<std::string>(name), std::move(data), std::move(options));
    }

    /// Scatter-gather by name: every live responder of `name`, named or typed, through the
    /// name's scatter channel (`<base>.rpc_scatter.vN`, the one typed scatters use).
    /// Completion: `void(result<gather_result<nlohmann::json>>)`.
    template <class CompletionToken>
    auto request_all(std::string_view name, nlohmann::json data, duration window, CompletionToken&& token) {
        request_options o;
        o.timeout = window;
        return request_all(name, std::move(data), std::move(o), std::forward<CompletionToken>(token));
    }
    template <class CompletionToken>
    auto request_all(std::string_view name, nlohmann::json data, request_options options, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(result<gather_result<nlohmann::json>>)>(
            [this](auto&& handler, std::unique_ptr<std::string>&& n, nlohmann::json&& d, request_options&& o) {
                start_named<true>(std::forward<decltype(handler)>(handler), std::move(n), std::move(d), std::move(o));
            },
            token, std::make_unique<std::string>(name), std::move(data), std::move(options));
    }

    /// Live responders of the request named `name` on this bus, typed and named (0 for a
    /// malformed name).
    std::size_t responders(std::string_view name) {
        const auto n = core_->responders(name).load(std::memory_order_acquire);
        return n > 0 ? static_cast<std::size_t>(n) : 0;
    }

    /// Requests waiting for a reply.
    std::size_t pending() const { return core_->pending(); }
    rpc_metrics metrics() const;
    /// The default executor of completions (the runtime's).
    executor_type get_executor() const noexcept { return core_->services().executor; }
    event_bus& bus() noexcept { return bus_; }

private:
    template <class R, bool Scatter, class Req, class Handler>
    void start(Handler&& handler, Req&& req, request_options&& options);
    // The name travels in its own allocation: g++ 12 may relocate an awaitable's arguments
    // bitwise (see docs/rpc.md), which a short (in-place) std::string does not survive.
    template <bool Scatter, class Handler>
    void start_named(Handler&& handler, std::unique_ptr<std::string> name, nlohmann::json&& data,
                     request_options&& options);
    // What typed and named requests share: responder check, registration, publish (`publish`
    // takes the publish_options and returns the publish_result), confirmation of the publish.
    template <bool Scatter, class Op, class Publish>
    void launch(std::unique_ptr<Op> op, std::atomic<std::int64_t>& responders, request_options& options,
                Publish&& publish);

    event_bus& bus_;
    std::shared_ptr<detail::rpc_core> core_;
};

COURIER_END_NAMESPACE

#include <courier/rpc/impl/rpc.hpp>
