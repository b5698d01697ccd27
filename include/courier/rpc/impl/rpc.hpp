// Out-of-line parts of courier::rpc: the pending operations that own a completion handler
// (one reply, or a scatter that collects many), the responder's serving function, and the
// request path (responder check, registration, publish, confirmation of the publish).
#pragma once

#include <courier/rpc/rpc.hpp>
#include <courier/core/clock.hpp>

COURIER_BEGIN_NAMESPACE
namespace detail {

/// The operation being initiated in this thread: a completion that happens inside the
/// initiating call (an inline responder) is posted instead of dispatched, so no handler ever
/// runs inside `request` itself.
inline const void*& initiating_op() noexcept {
    thread_local const void* op = nullptr;
    return op;
}
struct initiation_scope {
    explicit initiation_scope(const void* op) noexcept : previous(std::exchange(initiating_op(), op)) {}
    ~initiation_scope() { initiating_op() = previous; }
    initiation_scope(const initiation_scope&) = delete;
    initiation_scope& operator=(const initiation_scope&) = delete;
    const void* previous;
};


inline courier::error end_error(end_reason r, std::string_view name, duration timeout) {
    switch (r) {
    case end_reason::deadline:
        return {errc::timeout, "[courier.rpc.timeout] no reply to '" + std::string(name) + "' within " + millis_text(timeout)};
    case end_reason::closed:
        return {errc::closed, "[courier.rpc.closed] the rpc object or its bus is closed; '" + std::string(name) +
                                  "' gets no reply"};
    case end_reason::cancelled: break;
    }
    return {errc::cancelled, "[courier.rpc.cancelled] the rpc object was destroyed while '" + std::string(name) +
                                 "' waited for its reply"};
}

inline courier::error no_responders_error(std::string_view name) {
    return {errc::no_responders, "[courier.rpc.no_responders] no responder for '" + std::string(name) + "'"};
}

inline courier::error overloaded_error(std::string_view name, std::uint32_t refused) {
    return {errc::full, "[courier.rpc.overloaded] every responder queue for '" + std::string(name) +
                            "' refused the request (" + std::to_string(refused) + " full)"};
}

/// The part of a pending operation that owns the user's completion handler.
template <class Value, class Handler>
class completion_base : public pending_base {
public:
    using io_executor = boost::asio::io_context::executor_type;

    /// `name` views static storage (a typed request's event name); a name known only at run time
    /// is passed as `owned_name` instead (name empty) and kept here.
    completion_base(Handler&& h, io_executor ex, std::string_view name, duration timeout, const std::string& producer)
        : handler_(std::move(h)), work_(ex), name_(name), timeout_(timeout), producer_(producer) {}
    completion_base(Handler&& h, io_executor ex, std::string_view, duration timeout, const std::string& producer,
                    std::string&& owned_name)
        : handler_(std::move(h)), work_(ex), owned_name_(std::move(owned_name)), name_(owned_name_), timeout_(timeout),
          producer_(producer) {}

    /// Completes with an error before the request was registered (posted: never inline).
    void fail(courier::error e) { complete(unexpected(std::move(e)), {}); }
    /// The request's event name (for error messages).
    std::string_view name() const noexcept { return name_; }

protected:
    // Runs the handler through its associated executor (default: the runtime's), with the
    // reply's context current when there is a reply.
    void complete(result<Value> r, message_ref reply) {
        auto ex = boost::asio::get_associated_executor(handler_, work_.get_executor());
        auto fn = [h = std::move(handler_), r = std::move(r), reply = std::move(reply),
                   producer = std::move(producer_)]() mutable {
            if (reply.get()) {
                message_context ctx(*reply.get(), "rpc.reply", 1, producer);
                context_scope scope(ctx);
                std::move(h)(std::move(r));
            } else {
                std::move(h)(std::move(r));
            }
        };
        auto work = std::move(work_);  // outstanding work until the handler is on its way
        if (initiating_op() == this) boost::asio::post(ex, std::move(fn));
        else boost::asio::dispatch(ex, std::move(fn));
    }

    Handler handler_;
    boost::asio::executor_work_guard<io_executor> work_;
    std::string owned_name_;  // before name_, which may view it (the operation never moves)
    std::string_view name_;
    duration timeout_;
    std::string producer_;
};

/// One request: completes with the first reply, an error reply, or an end reason. Pooled: made by
/// the requester's thread, freed by the one that completes it.
template <class R, class Handler>
class request_op final : public completion_base<R, Handler>, public pooled_allocation<request_op<R, Handler>> {
public:
    using completion_base<R, Handler>::completion_base;

    bool on_reply(reply_packet&& p) override {
        if (p.err) {
            this->complete(unexpected(std::move(*p.err)), {});
        } else {
            auto v = take_reply<R>(*p.msg.get());
            this->complete(std::move(v), std::move(p.msg));
        }
        return true;
    }
    void on_end(end_reason r) override { this->complete(unexpected(end_error(r, this->name_, this->timeout_)), {}); }
};

/// A scatter: collects replies (under the registry's lock) until every responder asked has
/// answered or the deadline passes.
template <class R, class Handler>
class scatter_op final : public completion_base<gather_result<R>, Handler>,
                         public pooled_allocation<scatter_op<R, Handler>> {
public:
    using completion_base<gather_result<R>, Handler>::completion_base;

    void set_asked(std::size_t n) { collected_.asked = n; }

    bool on_reply(reply_packet&& p) override {
        if (p.err) {
            collected_.errors.push_back(std::move(*p.err));
        } else {
            auto v = take_reply<R>(*p.msg.get());
            if (v) collected_.replies.push_back(std::move(*v));
            else collected_.errors.push_back(std::move(v).error());
        }
        return collected_.replies.size() + collected_.errors.size() >= collected_.asked;
    }
    void on_collected(bool deadline_reached) override {
        collected_.complete = !deadline_reached;
        this->complete(std::move(collected_), {});
    }
    void on_end(end_reason r) override {
        if (r == end_reason::deadline) on_collected(true);
        else this->complete(unexpected(end_error(r, this->name_, this->timeout_)), {});
    }

private:
    gather_result<R> collected_;
};

template <class H, class Req>
decltype(auto) call_responder(H& h, const Req& req, const message_context& ctx) {
    if constexpr (std::is_invocable_v<H&, const Req&, const message_context&>) return h(req, ctx);
    else return h(req);
}

/// Everything a responder's two subscriptions share.
template <class H>
struct serve_state {
    H handler;
    std::shared_ptr<rpc_core> core;
    std::string name;  // for error messages
};

/// Runs the responder's handler on one request and sends the reply (or the error) back.
template <class Ret, class H, class Req>
void serve(serve_state<H>& st, const Req& req, const message_context& ctx) {
    rpc_core& core = *st.core;
    const reply_address to = ctx.reply_to();
    const bool local = to && to.inbox == core.inbox();
    if (local) core.prefetch_reply_path(to.request, false);
    reply_packet p;
    try {
        if constexpr (is_result<Ret>::value) {
            auto r = call_responder(st.handler, req, ctx);
            if (r) p.msg = make_reply_message(std::move(*r), reply_meta_of(ctx), core.services().clock.now());
            else p.err = std::move(r).error();
        } else {
            p.msg = make_reply_message(call_responder(st.handler, req, ctx), reply_meta_of(ctx),
                                       core.services().clock.now());
        }
    } catch (const std::exception& e) {
        p.err = courier::error(errc::handler_failed,
                               "[courier.rpc.handler_failed] responder '" + st.name + "' threw: " + e.what());
    } catch (...) {
        p.err = courier::error(errc::handler_failed,
                               "[courier.rpc.handler_failed] responder '" + st.name + "' threw a non-standard exception");
    }
    if (local) core.prefetch_reply_path(to.request, true);
    auto& c = core.counters().serve;
    (p.err ? c.served_failed : c.served).fetch_add(1, std::memory_order_relaxed);
    if (!to) {
        c.without_reply_to.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    route_reply(core, to, std::move(p));  // never throws: a throwing completion is caught there
}

/// Runs a deferred responder: its handler gets a reply_to and answers when it can.
template <class Reply, class H, class Req>
void serve_deferred(serve_state<H>& st, const Req& req, const message_context& ctx) {
    reply_to<Reply> handle(st.core, ctx.reply_to(), reply_meta_of(ctx), st.name);
    try {
        if constexpr (std::is_invocable_v<H&, const Req&, const message_context&, reply_to<Reply>>)
            st.handler(req, ctx, std::move(handle));
        else
            st.handler(req, std::move(handle));
    } catch (const std::exception& e) {
        handle.fail(courier::error(errc::handler_failed,
                                   "[courier.rpc.handler_failed] responder '" + st.name + "' threw: " + e.what()));
    } catch (...) {
        handle.fail(courier::error(errc::handler_failed, "[courier.rpc.handler_failed] responder '" + st.name +
                                                             "' threw a non-standard exception"));
    }
    // A handler that took the handle by reference and kept it unanswered: `handle` answers
    // "[courier.rpc.no_reply]" as it goes out of scope.
}

template <class Req, class Reply, class H>
struct deferred_responder
    : std::bool_constant<std::is_invocable_v<H&, const Req&, reply_to<Reply>> ||
                         std::is_invocable_v<H&, const Req&, const message_context&, reply_to<Reply>>> {};
template <class Req, class H>
struct deferred_responder<Req, void, H> : std::false_type {};
template <class Req, class Reply, class H>
inline constexpr bool is_deferred_responder = deferred_responder<Req, Reply, H>::value;

/// The reply type an immediate responder returns (unwrapping result<>).
template <class Req, class H>
struct immediate_reply {
    using ret = std::decay_t<decltype(call_responder(std::declval<H&>(), std::declval<const Req&>(),
                                                     std::declval<const message_context&>()))>;
    using type = typename std::conditional_t<is_result<ret>::value, is_result<ret>, std::type_identity<ret>>::type;
};

/// A named responder's handler seen as `result<json>(const json&, const message_context&)`: it
/// may return JSON (or anything nlohmann converts to JSON) or a result of it.
template <class H>
struct named_handler {
    H h;
    result<nlohmann::json> operator()(const nlohmann::json& data, const message_context& ctx) {
        using ret = std::decay_t<decltype(call_responder(h, data, ctx))>;
        if constexpr (std::is_same_v<ret, result<nlohmann::json>>) {
            return call_responder(h, data, ctx);
        } else if constexpr (is_result<ret>::value) {
            auto r = call_responder(h, data, ctx);
            if (!r) return unexpected(std::move(r).error());
            return nlohmann::json(std::move(*r));
        } else {
            return nlohmann::json(call_responder(h, data, ctx));
        }
    }
};

/// Sends an error reply for a request the responder could not even read (its data did not
/// serialize to JSON).
inline void answer_error(rpc_core& core, const message_context& ctx, courier::error e) {
    auto& c = core.counters().serve;
    c.served_failed.fetch_add(1, std::memory_order_relaxed);
    const reply_address to = ctx.reply_to();
    if (!to) {
        c.without_reply_to.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    reply_packet p;
    p.err = std::move(e);
    route_reply(core, to, std::move(p));
}

/// The bus subscription options of a responder's request subscription and of its scatter
/// subscription (outside any group).
inline std::pair<subscription_options, subscription_options> responder_subscriptions(const responder_options& o,
                                                                                     std::string_view type_name) {
    subscription_options so;
    so.name = o.name;
    so.mode = o.mode;
    // The serving function never throws (a throw becomes an error reply), so bus retries and
    // dead letters would only ever see refused requests: those the requester times out on.
    so.guarantee = delivery_guarantee::at_most_once;
    so.group = o.group.empty() ? std::string(type_name) : o.group;
    so.concurrency = o.concurrency;
    so.capacity = o.capacity;
    so.overflow = o.overflow;
    so.middleware = o.middleware;
    subscription_options scatter_options = so;
    scatter_options.group.clear();  // a scatter reaches every responder
    if (!o.name.empty()) scatter_options.name = o.name + ".scatter";
    return {std::move(so), std::move(scatter_options)};
}

/// A named request as the envelope the bus publishes: the request options become the
/// envelope's headers and metadata (`courier-key`, `courier-reply`, free headers, trace).
inline void apply_request_options(envelope& env, publish_options&& po) {
    const bool explicit_trace = !po.trace_id.empty() || !po.correlation_id.empty() || !po.headers.empty();
    for (auto& [k, v] : po.headers) env.headers.insert_or_assign(k, std::move(v));
    if (!po.key.empty()) env.headers["courier-key"] = std::move(po.key);
    env.headers[std::string(reply_address::header)] = po.reply_to.to_string();
    env.metadata.trace_id = std::move(po.trace_id);
    env.metadata.correlation_id = std::move(po.correlation_id);
    // An envelope that brings its own trace keeps it, so what a typed publish would inherit from
    // the handler running here (trace, correlation) is filled in by hand.
    if (!explicit_trace) return;
    if (const message_context* cause = message_context::current()) {
        const auto& ct = cause->message().trace();
        if (env.metadata.trace_id.empty() && ct) env.metadata.trace_id = ct->trace_id;
        if (env.metadata.correlation_id.empty())
            env.metadata.correlation_id =
                ct && !ct->correlation_id.empty() ? ct->correlation_id : cause->event_id().to_string();
    }
}

}  // namespace detail

template <class Req, class Reply, class Handler>
    requires typed_event<Req>
responder rpc::respond(Handler&& handler, responder_options o) {
    using H = std::decay_t<Handler>;
    constexpr bool deferred = detail::is_deferred_responder<Req, Reply, H>;
    if constexpr (!deferred) {
        static_assert(std::is_invocable_v<H&, const Req&, const message_context&> || std::is_invocable_v<H&, const Req&>,
                      "a responder takes (const Req&) or (const Req&, const courier::message_context&), or with "
                      "respond<Req, Reply> a trailing courier::reply_to<Reply>");
        using reply = typename detail::immediate_reply<Req, H>::type;
        static_assert(!std::is_void_v<reply>, "a responder returns its reply (a typed event) or result<Reply>");
        static_assert(typed_event<reply>, "a responder's reply must be a typed event (event_type + JSON conversion)");
    } else {
        static_assert(typed_event<Reply>, "a responder's reply must be a typed event (event_type + JSON conversion)");
    }
    auto serve_one = [](detail::serve_state<H>& st, const Req& req, const message_context& ctx) {
        if constexpr (deferred) detail::serve_deferred<Reply>(st, req, ctx);
        else detail::serve<typename detail::immediate_reply<Req, H>::ret>(st, req, ctx);
    };

    const std::string_view type_name = event_type_of<Req>().str();
    auto state = std::make_shared<detail::serve_state<H>>(
        detail::serve_state<H>{std::forward<Handler>(handler), core_, o.name.empty() ? std::string(type_name) : o.name});

    auto [so, scatter_options] = detail::responder_subscriptions(o, type_name);
    auto requests = bus_.subscribe<Req>(
        [state, serve_one](const Req& req, const message_context& ctx) { serve_one(*state, req, ctx); }, std::move(so));
    auto scatter = bus_.subscribe<detail::scatter_request<Req>>(
        [state, serve_one](const detail::scatter_request<Req>& s, const message_context& ctx) {
            serve_one(*state, s.request, ctx);
        },
        std::move(scatter_options));
    auto count = detail::rpc_directory::instance().responders(&bus_, type_name);
    count->fetch_add(1, std::memory_order_acq_rel);
    return responder(std::move(requests), std::move(scatter), std::move(count));
}

template <class Handler>
result<responder> rpc::respond(std::string_view name, Handler&& handler, responder_options o) {
    using json = nlohmann::json;
    using H = std::decay_t<Handler>;
    constexpr bool deferred = detail::is_deferred_responder<json, json, H>;
    if constexpr (!deferred) {
        static_assert(std::is_invocable_v<H&, const json&, const message_context&> || std::is_invocable_v<H&, const json&>,
                      "a named responder takes (const nlohmann::json&) or (const nlohmann::json&, const "
                      "courier::message_context&), optionally followed by courier::reply_to<nlohmann::json>");
        static_assert(!std::is_void_v<typename detail::immediate_reply<json, H>::type>,
                      "a named responder returns its reply (JSON, or result<nlohmann::json>)");
    }
    auto parsed = event_name::parse(name);
    if (!parsed) return unexpected(parsed.error());
    const std::string type_name(parsed->str());
    const std::string scatter_name = detail::scatter_name_of(*parsed);

    using S = std::conditional_t<deferred, H, detail::named_handler<H>>;
    auto state = std::make_shared<detail::serve_state<S>>(
        detail::serve_state<S>{S{std::forward<Handler>(handler)}, core_, o.name.empty() ? type_name : o.name});
    // Typed requests of this name reach the pattern subscription too; their data is serialized
    // once, on first read (a to_json that throws answers with errc::handler_failed).
    auto serve_one = [state](const message_context& ctx) {
        const json* data = nullptr;
        try {
            data = &ctx.data();
        } catch (const std::exception& e) {
            return detail::answer_error(*state->core, ctx,
                                        courier::error(errc::handler_failed, "[courier.rpc.handler_failed] responder '" +
                                                                                 state->name +
                                                                                 "' cannot read the request: " + e.what()));
        }
        if constexpr (deferred) detail::serve_deferred<json>(*state, *data, ctx);
        else detail::serve<result<json>>(*state, *data, ctx);
    };

    auto [so, scatter_options] = detail::responder_subscriptions(o, type_name);
    try {
        auto requests = bus_.try_subscribe(type_name, serve_one, std::move(so));
        if (!requests) return unexpected(requests.error());
        auto scatter = bus_.try_subscribe(scatter_name, serve_one, std::move(scatter_options));
        if (!scatter) return unexpected(scatter.error());
        auto count = detail::rpc_directory::instance().responders(&bus_, type_name);
        count->fetch_add(1, std::memory_order_acq_rel);
        return responder(std::move(*requests), std::move(*scatter), std::move(count));
    } catch (const courier_error& e) {
        return unexpected(e.err());  // a duplicate subscription name
    }
}

template <class Reply, class Req, class CompletionToken>
    requires typed_event<std::decay_t<Req>>
auto rpc::request(Req&& req, request_options options, CompletionToken&& token) {
    using E = std::decay_t<Req>;
    using R = detail::reply_type_t<Reply, E>;
    static_assert(typed_event<R>, "the reply type must be a typed event (event_type + JSON conversion)");
    return boost::asio::async_initiate<CompletionToken, void(result<R>)>(
        [this](auto&& handler, E&& r, request_options&& o) {
            this->template start<R, false>(std::forward<decltype(handler)>(handler), std::move(r), std::move(o));
        },
        token, E(std::forward<Req>(req)), std::move(options));
}

template <class Reply, class Req, class CompletionToken>
    requires typed_event<std::decay_t<Req>>
auto rpc::request_all(Req&& req, request_options options, CompletionToken&& token) {
    using E = std::decay_t<Req>;
    using R = detail::reply_type_t<Reply, E>;
    static_assert(typed_event<R>, "the reply type must be a typed event (event_type + JSON conversion)");
    return boost::asio::async_initiate<CompletionToken, void(result<gather_result<R>>)>(
        [this](auto&& handler, E&& r, request_options&& o) {
            this->template start<R, true>(std::forward<decltype(handler)>(handler), std::move(r), std::move(o));
        },
        token, E(std::forward<Req>(req)), std::move(options));
}

template <class R, bool Scatter, class Req, class Handler>
void rpc::start(Handler&& handler, Req&& req, request_options&& o) {
    using E = std::decay_t<Req>;
    using H = std::decay_t<Handler>;
    using op_type = std::conditional_t<Scatter, detail::scatter_op<R, H>, detail::request_op<R, H>>;
    detail::rpc_core& c = *core_;
    const auto& services = c.services();
    const std::string_view name = event_type_of<E>().str();
    c.counters().ask.requests.fetch_add(1, std::memory_order_relaxed);
    if constexpr (!Scatter) c.prefetch_claim();  // overlaps the work guard's miss (in the operation)
    auto owned = std::make_unique<op_type>(H(std::forward<Handler>(handler)), services.executor, name, o.timeout,
                                           services.producer);
    auto& live = c.responders(detail::type_index_of<E>(), name);
    launch<Scatter>(std::move(owned), live, o, [&](publish_options&& po) {
        if constexpr (Scatter) return bus_.publish(detail::scatter_request<E>{E(std::forward<Req>(req))}, std::move(po));
        else return bus_.publish(std::forward<Req>(req), std::move(po));
    });
}

template <bool Scatter, class Handler>
void rpc::start_named(Handler&& handler, std::unique_ptr<std::string> name, nlohmann::json&& data,
                      request_options&& o) {
    using json = nlohmann::json;
    using H = std::decay_t<Handler>;
    using op_type = std::conditional_t<Scatter, detail::scatter_op<json, H>, detail::request_op<json, H>>;
    detail::rpc_core& c = *core_;
    const auto& services = c.services();
    c.counters().ask.requests.fetch_add(1, std::memory_order_relaxed);
    auto owned = std::make_unique<op_type>(H(std::forward<Handler>(handler)), services.executor, std::string_view{},
                                           o.timeout, services.producer, std::move(*name));
    const auto parsed = event_name::parse(owned->name());
    if (!parsed) {
        detail::initiation_scope scope(owned.get());
        return owned->fail(parsed.error());
    }
    // Built before the operation is registered: from then on it may complete (and free the name
    // it owns) on another thread.
    envelope env;
    env.event_type = Scatter ? detail::scatter_name_of(*parsed) : std::string(parsed->str());
    env.version = parsed->version();
    env.data = std::move(data);
    auto& live = c.responders(parsed->str());
    launch<Scatter>(std::move(owned), live, o, [&](publish_options&& po) {
        detail::apply_request_options(env, std::move(po));
        auto r = bus_.publish(std::move(env));
        return r ? *r : publish_result{};  // the name was checked: publish only fails on it
    });
}

template <bool Scatter, class Op, class Publish>
void rpc::launch(std::unique_ptr<Op> owned, std::atomic<std::int64_t>& responders, request_options& o,
                 Publish&& publish) {
    detail::rpc_core& c = *core_;
    const auto& services = c.services();
    Op* op = owned.get();
    // Views the operation's name: used only while this thread owns the operation.
    const std::string_view name = op->name();
    detail::initiation_scope scope(op);

    const auto live = responders.load(std::memory_order_acquire);
    if (live <= 0) {
        c.counters().ask.no_responders.fetch_add(1, std::memory_order_relaxed);
        return op->fail(detail::no_responders_error(name));
    }
    if (bus_.closed() || c.closed()) return op->fail(detail::end_error(detail::end_reason::closed, name, o.timeout));

    op->scatter = Scatter;
    op->deadline = services.clock.now() + o.timeout;  // the one clock read of the request
    op->start_ns = detail::sampled_start_ns();
    if constexpr (Scatter) op->set_asked(static_cast<std::size_t>(live));
    std::uint64_t id = 0;
    std::unique_ptr<detail::pending_base> registered = std::move(owned);
    if (!c.add(registered, id)) return op->fail(detail::end_error(detail::end_reason::closed, name, o.timeout));
    // From here the registry owns the operation: whoever takes it out completes it, and `op`
    // (and `name`) must not be touched unless this thread takes it back.

    publish_options po;
    // Most requests set none of these: an empty string or map is left where it is (moving one
    // still costs a few dozen instructions).
    if (!o.key.empty()) po.key = std::move(o.key);
    if (!o.headers.empty()) po.headers = std::move(o.headers);
    if (!o.trace_id.empty()) po.trace_id = std::move(o.trace_id);
    if (!o.correlation_id.empty()) po.correlation_id = std::move(o.correlation_id);
    po.reply_to = reply_address{c.inbox(), id};
    const publish_result pr = publish(std::move(po));
    if (pr.closed || pr.deliveries == 0) {
        // The last responder left between the check and the publish, or every queue refused
        // the request: fail now rather than wait for the timeout.
        if (auto taken = c.take(id)) {
            auto* back = static_cast<Op*>(taken.get());
            if (pr.closed) {
                taken->on_end(detail::end_reason::closed);
            } else if (pr.rejected > 0) {
                c.counters().ask.overloaded.fetch_add(1, std::memory_order_relaxed);
                back->fail(detail::overloaded_error(back->name(), pr.rejected));
            } else {
                c.counters().ask.no_responders.fetch_add(1, std::memory_order_relaxed);
                back->fail(detail::no_responders_error(back->name()));
            }
        }
    }
}

inline rpc_metrics rpc::metrics() const {
    auto& c = core_->counters();
    rpc_metrics m;
    m.requests = c.ask.requests.load(std::memory_order_relaxed);
    m.no_responders = c.ask.no_responders.load(std::memory_order_relaxed);
    m.overloaded = c.ask.overloaded.load(std::memory_order_relaxed);
    m.replies = c.reply.replies.load(std::memory_order_relaxed);
    m.error_replies = c.reply.error_replies.load(std::memory_order_relaxed);
    m.timeouts = c.reply.timeouts.load(std::memory_order_relaxed);
    m.late_replies = c.reply.late_replies.load(std::memory_order_relaxed);
    m.orphan_replies = c.serve.orphan_replies.load(std::memory_order_relaxed);
    m.served = c.serve.served.load(std::memory_order_relaxed);
    m.served_failed = c.serve.served_failed.load(std::memory_order_relaxed);
    m.without_reply_to = c.serve.without_reply_to.load(std::memory_order_relaxed);
    m.completion_failed = c.serve.completion_failed.load(std::memory_order_relaxed);
    m.pending = core_->pending();
    m.latency_p50_ns = c.latency.percentile(0.50);
    m.latency_p99_ns = c.latency.percentile(0.99);
    return m;
}

COURIER_END_NAMESPACE
