// The RabbitMQ (AMQP 0-9-1) adapter of courier's broker bridge: a `bridge::transport` over
// rabbitmq-c. Events go to one durable topic exchange with the event name as routing key (the
// bus's `*`/`#` patterns are AMQP's topic-binding dialect already), publisher confirms settle the
// outbox, consumers ack manually, and a rejected delivery goes to a dead-letter exchange.
// Link courier::bridge_amqp; the core library never includes this header.
#pragma once

#include <courier/bridge/detail/wire_amqp.hpp>
#include <courier/bridge/registry.hpp>
#include <courier/bridge/transport.hpp>
#include <courier/bridge/url.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/result.hpp>

// <amqp.h> comes with detail/wire_amqp.hpp (Debian's librabbitmq-dev 0.11 installs its headers
// at the top level; 0.12+ moved them to <rabbitmq-c/>).
#if __has_include(<rabbitmq-c/tcp_socket.h>)
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp_tcp_socket.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <cerrno>
#include <cstring>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge {

/// How the AMQP transport talks to the broker. Every field has a default that works against a
/// local `rabbitmq-server` with the guest account.
struct amqp_options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 5672;
    std::string user = "guest";
    std::string password = "guest";
    std::string vhost = "/";
    /// Connection name shown by `rabbitmqctl list_connections name client_properties`.
    std::string name = "courier-bridge";

    /// The durable topic exchange events are published to (routing key = event name).
    std::string exchange = "courier";
    /// Where rejected deliveries go (`nack(requeue=false)`): a durable topic exchange, named on
    /// every queue courier declares as its `x-dead-letter-exchange`. "" disables dead-lettering
    /// (a rejected message is then dropped by the broker).
    std::string dead_letter_exchange = "courier.dead-letter";
    /// A durable queue bound with `#` to the dead-letter exchange, so a rejected message is kept
    /// until somebody looks (`rabbitmqadmin get queue=courier.dead-letter`). "" declares none.
    std::string dead_letter_queue = "courier.dead-letter";
    /// The exchange's alternate exchange and its queue: a message no binding matches lands here
    /// instead of being dropped by the broker. "" declares none (RabbitMQ then drops it).
    std::string unroutable_queue = "courier.unroutable";
    /// Bound on `unroutable_queue` (x-max-length); past it the broker nacks the publish
    /// (x-overflow reject-publish), so the bridge keeps the message in its outbox.
    std::int64_t unroutable_max_length = 1'000'000;
    /// Prefix of a consumer group's queue: `ingest_spec{.topic = "order.*.v1", .group = "billing"}`
    /// consumes from the durable queue `<queue_prefix>billing:order.*.v1`.
    std::string queue_prefix;

    /// Deliveries unacknowledged at once per connection (basic.qos prefetch-count).
    std::uint16_t prefetch = 512;
    /// Heartbeat interval negotiated with the broker (0: none). A dead peer is noticed after two.
    std::chrono::seconds heartbeat{10};
    /// Bound on every synchronous exchange with the broker (declare, bind, consume, close).
    duration rpc_timeout = std::chrono::seconds(5);
    /// Largest frame (bodies are split in frames of this size).
    int frame_max = 131072;
    /// Messages are published persistent (delivery-mode 2) so a broker restart keeps them in
    /// durable queues; false: transient, faster, lost on restart.
    bool persistent = true;
    /// Largest payload accepted: RabbitMQ's own `max_message_size` (128 MiB by default).
    std::size_t max_message_bytes = 128u * 1024 * 1024;

    /// Options from a bridge URL:
    /// `amqp://[user[:password]@]host[:port][/vhost][?exchange=NAME&dead_letter_exchange=NAME&dead_letter_queue=NAME&unroutable_queue=NAME&queue_prefix=P&prefetch=N&heartbeat=S&persistent=BOOL&max_message_bytes=N&name=CLIENT]`.
    /// An empty or missing vhost is RabbitMQ's default "/" (write `%2f` for it explicitly).
    /// Errors: invalid_argument "[courier.bridge.amqp.url]" for another scheme, several hosts or
    /// an unknown parameter; "[courier.bridge.url.bad_param]" for a malformed value.
    static result<amqp_options> from_url(const broker_url& url);
};

/// Counters of one AMQP transport (read from the driving thread).
struct amqp_stats {
    std::uint64_t published = 0;    ///< messages handed to the broker
    std::uint64_t confirmed = 0;    ///< publisher confirms (basic.ack) reported ok
    std::uint64_t nacked = 0;       ///< publishes the broker refused (basic.nack)
    std::uint64_t lost_confirms = 0;  ///< publishes whose confirm was lost with a connection (reported failed)
    std::uint64_t delivered = 0;    ///< deliveries handed to `poll`'s callback
    std::uint64_t redelivered = 0;  ///< of those, flagged redelivered by the broker
    std::uint64_t acked = 0;        ///< deliveries acknowledged (basic.ack)
    std::uint64_t rejected = 0;     ///< deliveries rejected without requeue (to the dead-letter exchange)
    std::uint64_t requeued = 0;     ///< deliveries rejected with requeue
    std::uint64_t stale_settles = 0;  ///< ack/nack of a delivery from an earlier connection (a no-op: the broker requeued it)
    std::uint64_t connects = 0;     ///< successful connects (1 + reconnects)
    std::uint64_t blocked = 0;      ///< connection.blocked notices (broker resource alarms)
};

/// Checks a topic-exchange binding key: segments separated by '.', `*` and `#` only as whole
/// segments, at most 255 bytes (an AMQP short string).
/// Errors: invalid_pattern "[courier.bridge.amqp.pattern]".
inline result<void> amqp_check_binding(std::string_view pattern) {
    auto bad = [&](const char* why) {
        return unexpected(errc::invalid_pattern, "[courier.bridge.amqp.pattern] '" + std::string(pattern) + "' " + why);
    };
    if (pattern.empty()) return bad("is empty");
    if (pattern.size() > 255) return bad("is longer than 255 bytes (an AMQP short string)");
    std::size_t start = 0;
    for (;;) {
        const auto dot = pattern.find('.', start);
        const auto seg = pattern.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (seg.empty()) return bad("has an empty segment");
        if (seg.size() > 1 && seg.find_first_of("*#") != std::string_view::npos)
            return bad("mixes a wildcard with other characters in one segment");
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    return {};
}

namespace detail {

inline amqp_bytes_t amqp_view(std::string_view s) noexcept {
    amqp_bytes_t b;
    b.len = s.size();
    b.bytes = const_cast<char*>(s.data());
    return b;
}

inline timeval amqp_timeval(duration d) noexcept {
    const auto us = std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(d).count());
    timeval tv;
    tv.tv_sec = static_cast<time_t>(us / 1'000'000);
    tv.tv_usec = static_cast<suseconds_t>(us % 1'000'000);
    return tv;
}

/// Builds an AMQP field table whose keys and string values point into strings that outlive it.
class amqp_table_builder {
public:
    void text(std::string_view key, std::string_view value) {
        amqp_table_entry_t e;
        e.key = amqp_view(key);
        e.value.kind = AMQP_FIELD_KIND_UTF8;
        e.value.value.bytes = amqp_view(value);
        entries_.push_back(e);
    }
    void boolean(std::string_view key, bool value) {
        amqp_table_entry_t e;
        e.key = amqp_view(key);
        e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
        e.value.value.boolean = value ? 1 : 0;
        entries_.push_back(e);
    }
    void integer(std::string_view key, std::int64_t value) {
        amqp_table_entry_t e;
        e.key = amqp_view(key);
        e.value.kind = AMQP_FIELD_KIND_I64;
        e.value.value.i64 = value;
        entries_.push_back(e);
    }
    /// A nested table; `inner` must outlive this builder's table.
    void table(std::string_view key, const amqp_table_t& inner) {
        amqp_table_entry_t e;
        e.key = amqp_view(key);
        e.value.kind = AMQP_FIELD_KIND_TABLE;
        e.value.value.table = inner;
        entries_.push_back(e);
    }
    bool empty() const noexcept { return entries_.empty(); }
    /// Valid until the builder changes or dies.
    amqp_table_t get() noexcept {
        amqp_table_t t;
        t.num_entries = static_cast<int>(entries_.size());
        t.entries = entries_.empty() ? nullptr : entries_.data();
        return t;
    }

private:
    std::vector<amqp_table_entry_t> entries_;
};

/// The text of a failed synchronous exchange with the broker.
inline std::string amqp_reply_text(const amqp_rpc_reply_t& r) {
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL: return "ok";
    case AMQP_RESPONSE_NONE: return "no reply (missing RPC reply type)";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION: return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD && r.reply.decoded != nullptr) {
            auto* m = static_cast<const amqp_connection_close_t*>(r.reply.decoded);
            return "connection closed by the broker: " + std::to_string(m->reply_code) + " " + amqp_text(m->reply_text);
        }
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD && r.reply.decoded != nullptr) {
            auto* m = static_cast<const amqp_channel_close_t*>(r.reply.decoded);
            return "channel closed by the broker: " + std::to_string(m->reply_code) + " " + amqp_text(m->reply_text);
        }
        return "unexpected server method " + std::to_string(r.reply.id);
    }
    return "unknown reply";
}

}  // namespace detail

/// A `transport` over one AMQP 0-9-1 connection (rabbitmq-c), for RabbitMQ.
///
/// Topology (declared by `connect`, idempotently): the durable topic exchange
/// `options.exchange`, with `options.unroutable_queue` behind its alternate exchange (so a message
/// no binding matches is kept, not dropped); the dead-letter exchange with its queue.
/// Routing key = `wire_message::topic` (the route's topic; by default the event name). `ingest_spec::topic` is a binding key:
/// courier patterns are AMQP topic patterns (`order.*.v1`, `order.#`).
/// `ingest_spec::group` non-empty: the durable queue `<queue_prefix><group>:<topic>`, shared by
/// every consumer of the group (competing consumers; unacked deliveries come back, flagged redelivered,
/// when a consumer goes away). Empty group: an exclusive, server-named queue per connection
/// (fan-out; it disappears with the connection, so what arrives while disconnected is not kept).
/// Every queue names the dead-letter exchange, where `nack(requeue=false)` sends a delivery.
///
/// Publishing uses publisher confirms: `poll` reports each publish when the broker's
/// basic.ack/basic.nack arrives; a publish whose connection dies first is reported failed.
/// Envelope metadata travels twice: as AMQP properties (message-id = event_id, type =
/// event_type, content-type application/json, app-id courier, persistent delivery mode) and as
/// the `wire_message::headers` in the headers table (`courier-event-id`, ...).
///
/// Channels: 1 publishes (confirm mode), 2 consumes, 3 declares (a failed declaration closes
/// only channel 3, which is reopened).
///
/// Thread safety: rabbitmq-c is single-threaded; one thread drives the object (every member but
/// `caps()` and `wake()`), as the transport contract says. No thread of its own: `poll` sleeps
/// in poll(2) on the socket and an eventfd that `wake()` signals.
///
/// Example:
/// ```
/// courier::bridge::amqp_transport t({.host = "127.0.0.1", .port = 5672});
/// t.connect(std::chrono::seconds(2)).value();
/// t.subscribe({.topic = "order.*.v1", .group = "billing"}).value();
/// t.publish(1, {.topic = "order.created.v1", .event_id = "e-1", .payload = "{}"}).value();
/// t.poll(std::chrono::milliseconds(100), 64, [](auto c) { /* c.outcome */ }, [&](auto m) { t.ack({}, m.tag).value(); });
/// ```
class amqp_transport final : public transport {
public:
    static constexpr amqp_channel_t publish_channel = 1;
    static constexpr amqp_channel_t consume_channel = 2;
    static constexpr amqp_channel_t declare_channel = 3;

    explicit amqp_transport(amqp_options options = {})
        : options_(std::move(options)), wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
        caps_.broker = "amqp";
        caps_.wildcards = wildcard_dialect::courier;
        caps_.per_key_order = true;   // one channel publishes in order; one queue delivers in order
        caps_.consumer_groups = true;  // a shared durable queue
        caps_.redelivery = true;       // unacked deliveries of a group queue are requeued
        caps_.native_dedup = false;
        caps_.delayed_delivery = false;  // needs a plugin RabbitMQ does not ship enabled
        caps_.priorities = false;
        caps_.request_reply = false;
        caps_.replay = false;
        caps_.max_message_bytes = options_.max_message_bytes;
    }
    ~amqp_transport() override {
        close();
        if (wake_fd_ >= 0) ::close(wake_fd_);
    }
    amqp_transport(const amqp_transport&) = delete;
    amqp_transport& operator=(const amqp_transport&) = delete;

    const capabilities& caps() const noexcept override { return caps_; }
    const amqp_options& options() const noexcept { return options_; }
    const amqp_stats& stats() const noexcept { return stats_; }
    /// The broker-side queue an ingest spec consumes from ("" until it is subscribed on a
    /// connection; an exclusive queue's server-given name changes with every connection).
    std::string queue_of(const ingest_spec& spec) const {
        for (auto& s : subs_) {
            if (s.spec.topic == spec.topic && s.spec.group == spec.group) return s.queue;
        }
        return {};
    }
    /// True while the broker has told this connection to stop publishing (resource alarm).
    bool blocked() const noexcept { return blocked_; }
    /// Publishes sent and not yet confirmed.
    std::size_t unconfirmed() const noexcept { return unconfirmed_.size(); }

    result<void> connect(duration timeout) override {
        if (connected()) return {};
        drop_connection("reconnecting");
        conn_ = amqp_new_connection();
        if (conn_ == nullptr) return unexpected(errc::io_error, "[courier.bridge.amqp.connect] cannot allocate a connection");
        amqp_socket_t* socket = amqp_tcp_socket_new(conn_);
        if (socket == nullptr) return fail_connect(errc::io_error, "connect", "cannot create a TCP socket");
        const timeval tv = detail::amqp_timeval(timeout);
        const timeval rpc = detail::amqp_timeval(options_.rpc_timeout);
        amqp_set_handshake_timeout(conn_, &tv);
        amqp_set_rpc_timeout(conn_, &rpc);
        if (int rc = amqp_socket_open_noblock(socket, options_.host.c_str(), options_.port, &tv); rc != AMQP_STATUS_OK) {
            return fail_connect(rc == AMQP_STATUS_TIMEOUT || rc == AMQP_STATUS_SOCKET_INUSE ? errc::timeout : errc::io_error, "connect",
                                std::string("cannot open a socket: ") + amqp_error_string2(rc));
        }
        // Client properties: the connection's name, and the extensions this client handles.
        detail::amqp_table_builder capabilities;
        capabilities.boolean("publisher_confirms", true);
        capabilities.boolean("consumer_cancel_notify", true);
        capabilities.boolean("connection.blocked", true);
        capabilities.boolean("basic.nack", true);
        capabilities.boolean("authentication_failure_close", true);
        const amqp_table_t caps_table = capabilities.get();
        detail::amqp_table_builder props;
        props.text("connection_name", options_.name);
        props.text("product", "courier");
        props.table("capabilities", caps_table);
        const amqp_table_t props_table = props.get();
        amqp_rpc_reply_t r = amqp_login_with_properties(conn_, options_.vhost.c_str(), 0, options_.frame_max,
                                                        static_cast<int>(options_.heartbeat.count()), &props_table,
                                                        AMQP_SASL_METHOD_PLAIN, options_.user.c_str(), options_.password.c_str());
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            const bool refused =
                (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) ||
                (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_CONNECTION_CLOSED);
            if (refused)
                return fail_connect(errc::invalid_argument, "access_refused",
                                    "the broker refused user '" + options_.user + "' on vhost '" + options_.vhost +
                                        "': " + detail::amqp_reply_text(r));
            return fail_connect(r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT ? errc::timeout
                                                                                                                       : errc::io_error,
                                "connect", "login failed: " + detail::amqp_reply_text(r));
        }
        for (amqp_channel_t ch : {publish_channel, consume_channel, declare_channel}) {
            amqp_channel_open(conn_, ch);
            if (auto rr = check_rpc("channel_open", ch); !rr) return fail_connect(rr.error());
        }
        amqp_confirm_select(conn_, publish_channel);
        if (auto rr = check_rpc("confirm_select", publish_channel); !rr) return fail_connect(rr.error());
        if (options_.prefetch > 0) {
            amqp_basic_qos(conn_, consume_channel, 0, options_.prefetch, 0);
            if (auto rr = check_rpc("basic_qos", consume_channel); !rr) return fail_connect(rr.error());
        }
        if (auto rr = declare_topology(); !rr) return fail_connect(rr.error());
        ++generation_;
        next_publish_tag_ = 1;
        blocked_ = false;
        unsettled_.clear();
        ++stats_.connects;
        // Re-establish what was subscribed before (an exclusive queue gets a new name).
        auto subs = std::move(subs_);
        subs_.clear();
        for (auto& s : subs) {
            if (auto rr = subscribe(s.spec); !rr) {
                // Keep the rest remembered for the next attempt.
                for (auto& rest : subs) {
                    if (!known(rest.spec)) subs_.push_back({rest.spec, {}, {}});
                }
                return fail_connect(rr.error());
            }
        }
        return {};
    }

    bool connected() const noexcept override { return conn_ != nullptr; }

    void close() noexcept override {
        if (conn_ == nullptr) return;
        // A polite close (bounded by the RPC timeout); the broker requeues what was not acked.
        amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
        drop_connection("closed by the application");
    }

    result<void> publish(std::uint64_t sequence, const wire_message& m) override {
        if (conn_ == nullptr)
            return unexpected(errc::closed, "[courier.bridge.amqp.not_connected] publish while not connected to " + where());
        if (m.payload.size() > caps_.max_message_bytes)
            return unexpected(errc::limit_exceeded, "[courier.bridge.amqp.too_large] payload of " + std::to_string(m.payload.size()) +
                                                        " bytes exceeds max_message_bytes " + std::to_string(caps_.max_message_bytes));
        if (m.topic.empty() || m.topic.size() > 255)
            return unexpected(errc::invalid_name, "[courier.bridge.amqp.routing_key] routing key '" + m.topic +
                                                      "' must be 1 to 255 bytes");
        if (blocked_)
            return unexpected(errc::full, "[courier.bridge.amqp.blocked] the broker blocked publishing on this connection "
                                          "(a memory or disk alarm); the message stays with the caller");
        detail::amqp_table_builder headers;
        for (auto& [k, v] : m.headers) {
            if (k.size() > 128)
                return unexpected(errc::invalid_argument, "[courier.bridge.amqp.header] header name '" + k.substr(0, 32) +
                                                              "...' is longer than AMQP's 128 bytes");
            headers.text(k, v);
        }
        amqp_basic_properties_t props{};
        props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_APP_ID_FLAG;
        props.content_type = amqp_cstring_bytes("application/json");
        props.delivery_mode = options_.persistent ? 2 : 1;
        props.app_id = amqp_cstring_bytes("courier");
        if (!m.event_id.empty()) {
            props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
            props.message_id = detail::amqp_view(m.event_id);
        }
        if (!m.event_type.empty()) {
            props._flags |= AMQP_BASIC_TYPE_FLAG;
            props.type = detail::amqp_view(m.event_type);
        }
        if (!headers.empty()) {
            props._flags |= AMQP_BASIC_HEADERS_FLAG;
            props.headers = headers.get();
        }
        const int rc = amqp_basic_publish(conn_, publish_channel, detail::amqp_view(options_.exchange), detail::amqp_view(m.topic),
                                          0, 0, &props, detail::amqp_view(m.payload));
        if (rc != AMQP_STATUS_OK) {
            const std::string why = amqp_error_string2(rc);
            drop_connection("publish failed: " + why);
            return unexpected(errc::io_error, "[courier.bridge.amqp.publish] cannot send to " + where() + ": " + why);
        }
        unconfirmed_.push_back({next_publish_tag_++, sequence, false, {}});
        ++stats_.published;
        return {};
    }

    result<void> subscribe(const ingest_spec& spec) override {
        if (auto r = amqp_check_binding(spec.topic); !r) return r;
        if (known(spec)) return {};
        if (conn_ == nullptr) {
            subs_.push_back({spec, {}, {}});  // remembered: `connect` subscribes it
            return {};
        }
        // The queue: shared and durable per group, or exclusive per connection.
        detail::amqp_table_builder args;
        if (!options_.dead_letter_exchange.empty()) args.text("x-dead-letter-exchange", options_.dead_letter_exchange);
        const amqp_table_t args_table = args.get();
        const bool shared = !spec.group.empty();
        const std::string wanted = shared ? group_queue(spec) : std::string();
        if (wanted.size() > 255)
            return unexpected(errc::invalid_argument, "[courier.bridge.amqp.queue] queue name '" + wanted + "' is longer than 255 bytes");
        auto* declared = amqp_queue_declare(conn_, declare_channel, detail::amqp_view(wanted), 0, shared ? 1 : 0, shared ? 0 : 1,
                                            shared ? 0 : 1, args_table);
        if (auto r = check_declare("queue_declare '" + wanted + "'"); !r) return r;
        std::string queue = detail::amqp_text(declared->queue);
        amqp_queue_bind(conn_, declare_channel, detail::amqp_view(queue), detail::amqp_view(options_.exchange),
                        detail::amqp_view(spec.topic), amqp_empty_table);
        if (auto r = check_declare("queue_bind '" + queue + "' to '" + spec.topic + "'"); !r) return r;
        auto* consuming = amqp_basic_consume(conn_, consume_channel, detail::amqp_view(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
        if (auto r = check_rpc("basic_consume '" + queue + "'", consume_channel); !r) {
            drop_connection(r.error().message);  // the consuming channel is gone with its consumers
            return r;
        }
        subs_.push_back({spec, std::move(queue), detail::amqp_text(consuming->consumer_tag)});
        return {};
    }

    /// The durable queue of a consumer group's subscription: `<queue_prefix><group>:<topic>`.
    /// A group is scoped to its binding, as a Kafka group is to its topic and a NATS queue group
    /// to its subject: the same group on two topics is two independent queues.
    std::string group_queue(const ingest_spec& spec) const { return options_.queue_prefix + spec.group + ":" + spec.topic; }

    result<void> poll(duration max_wait, std::size_t max_messages, const std::function<void(publish_confirm)>& on_confirm,
                      const std::function<void(inbound_message&&)>& on_message) override {
        // Publishes whose connection closed before their confirm are reported first.
        while (!lost_.empty()) {
            pending_publish p = std::move(lost_.front());
            lost_.pop_front();
            publish_confirm c{p.sequence, {}};
            if (p.settled) {
                c.outcome = std::move(p.outcome);  // the broker had answered; only an earlier one was missing
            } else {
                ++stats_.lost_confirms;
                c.outcome = unexpected(errc::io_error, "[courier.bridge.amqp.connection_lost] the connection to " + where() +
                                                           " closed before the broker confirmed the publish (" + lost_reason_ + ")");
            }
            if (on_confirm) on_confirm(std::move(c));
        }
        if (conn_ == nullptr)
            return unexpected(errc::closed, "[courier.bridge.amqp.not_connected] poll while not connected to " + where());
        const auto deadline = std::chrono::steady_clock::now() + max_wait;
        std::size_t delivered = 0;
        bool woken = false;
        while (delivered < max_messages) {
            // A frame rabbitmq-c has buffered, or one the socket has now (never blocking here; this
            // is also where rabbitmq-c sends a heartbeat that is due).
            timeval zero{0, 0};
            amqp_frame_t frame;
            const int rc = amqp_simple_wait_frame_noblock(conn_, &frame, &zero);
            if (rc == AMQP_STATUS_OK) {
                if (auto r = handle_frame(frame, on_confirm, on_message, delivered); !r) return r;
                if (conn_ == nullptr) break;  // a callback closed the transport
                amqp_maybe_release_buffers(conn_);
                // A steady stream of frames must not keep the caller past its deadline.
                if (std::chrono::steady_clock::now() >= deadline && !amqp_frames_enqueued(conn_) && !amqp_data_in_buffer(conn_)) break;
                continue;
            }
            if (rc != AMQP_STATUS_TIMEOUT) return lost(std::string("reading from the broker: ") + amqp_error_string2(rc));
            const auto left = deadline - std::chrono::steady_clock::now();
            if (woken || left <= decltype(left)::zero()) break;
            // Nothing complete yet: sleep until the socket has data, `wake()` is called, or time is up.
            const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
            pollfd fds[2] = {{amqp_get_sockfd(conn_), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
            const int n = ::poll(fds, wake_fd_ >= 0 ? 2 : 1, static_cast<int>(std::min<std::int64_t>(ms, 60'000)));
            if (n < 0 && errno != EINTR) return lost(std::string("poll() on the socket failed: ") + std::strerror(errno));
            if (n > 0 && wake_fd_ >= 0 && (fds[1].revents & POLLIN) != 0) {
                std::uint64_t count = 0;
                while (::read(wake_fd_, &count, sizeof count) > 0) {}
                woken = true;  // one more look at the socket, then back to the caller
            }
        }
        return {};
    }

    /// Makes a blocked `poll` return promptly (any thread).
    void wake() noexcept override {
        if (wake_fd_ < 0) return;
        const std::uint64_t one = 1;
        [[maybe_unused]] const auto written = ::write(wake_fd_, &one, sizeof one);
    }

    result<void> ack(const ingest_spec&, const delivery_tag& tag) override { return settle(tag, true, false); }

    result<void> nack(const ingest_spec&, const delivery_tag& tag, bool requeue) override {
        return settle(tag, false, requeue);
    }

private:
    struct subscription {
        ingest_spec spec;
        std::string queue;         ///< the broker-side queue ("" until subscribed on a connection)
        std::string consumer_tag;  ///< the broker's name for this subscription's consumer
    };
    struct pending_publish {
        std::uint64_t tag = 0;       ///< the channel's publish sequence number
        std::uint64_t sequence = 0;  ///< the bridge's
        bool settled = false;        ///< confirmed out of order, waiting for the ones before it
        result<void> outcome;
    };

    bool known(const ingest_spec& spec) const noexcept {
        for (auto& s : subs_) {
            if (s.spec.topic == spec.topic && s.spec.group == spec.group) return true;
        }
        return false;
    }

    std::string where() const {
        return "amqp://" + options_.host + ":" + std::to_string(options_.port) + "/" + (options_.vhost == "/" ? "" : options_.vhost);
    }

    unexpected fail_connect(errc code, std::string_view what, const std::string& why) {
        drop_connection(why);
        return unexpected(code, "[courier.bridge.amqp." + std::string(what) + "] " + where() + ": " + why);
    }
    unexpected fail_connect(const courier::error& e) {
        drop_connection(e.message);
        return unexpected(e);
    }

    /// The reply of the last synchronous call on `channel`; a server exception on a channel is
    /// answered (close-ok), a connection-level one ends the connection.
    result<void> check_rpc(const std::string& what, amqp_channel_t channel) {
        channel_closed_ = false;
        const amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) return {};
        std::string text = detail::amqp_reply_text(r);
        errc code = errc::io_error;
        if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            auto* m = static_cast<const amqp_channel_close_t*>(r.reply.decoded);
            // 403 access-refused, 404 not-found, 405 resource-locked, 406 precondition-failed:
            // the request does not fit what the broker has (e.g. a queue declared with other arguments).
            if (m != nullptr && (m->reply_code == 403 || m->reply_code == 404 || m->reply_code == 405 || m->reply_code == 406))
                code = errc::invalid_argument;
            amqp_channel_close_ok_t close_ok{};
            amqp_send_method(conn_, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
            channel_closed_ = true;
        } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_ok_t close_ok{};
            amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
        } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) {
            code = errc::timeout;
        }
        return unexpected(code, "[courier.bridge.amqp." + std::string(code == errc::invalid_argument ? "refused" : "rpc") + "] " +
                                    what + " on " + where() + ": " + text);
    }

    /// A failed declaration: channel 3 closed by the broker is reopened, the connection stays.
    result<void> check_declare(const std::string& what) {
        auto r = check_rpc(what, declare_channel);
        if (r) return r;
        if (channel_closed_) {
            amqp_channel_open(conn_, declare_channel);
            if (auto reopen = check_rpc("channel_open", declare_channel); !reopen) drop_connection(reopen.error().message);
        } else {
            drop_connection(r.error().message);
        }
        return r;
    }

    result<void> declare_topology() {
        const amqp_table_t none = amqp_empty_table;
        if (!options_.dead_letter_exchange.empty()) {
            amqp_exchange_declare(conn_, declare_channel, detail::amqp_view(options_.dead_letter_exchange), amqp_cstring_bytes("topic"), 0,
                                  1, 0, 0, none);
            if (auto r = check_rpc("exchange_declare '" + options_.dead_letter_exchange + "'", declare_channel); !r) return r;
            if (!options_.dead_letter_queue.empty()) {
                amqp_queue_declare(conn_, declare_channel, detail::amqp_view(options_.dead_letter_queue), 0, 1, 0, 0, none);
                if (auto r = check_rpc("queue_declare '" + options_.dead_letter_queue + "'", declare_channel); !r) return r;
                amqp_queue_bind(conn_, declare_channel, detail::amqp_view(options_.dead_letter_queue),
                                detail::amqp_view(options_.dead_letter_exchange), amqp_cstring_bytes("#"), none);
                if (auto r = check_rpc("queue_bind '" + options_.dead_letter_queue + "'", declare_channel); !r) return r;
            }
        }
        detail::amqp_table_builder exchange_args;
        const std::string alternate = options_.unroutable_queue;
        if (!alternate.empty()) {
            // The alternate exchange is a fanout of the same name as its queue.
            amqp_exchange_declare(conn_, declare_channel, detail::amqp_view(alternate), amqp_cstring_bytes("fanout"), 0, 1, 0, 0, none);
            if (auto r = check_rpc("exchange_declare '" + alternate + "'", declare_channel); !r) return r;
            detail::amqp_table_builder qargs;
            qargs.integer("x-max-length", options_.unroutable_max_length);
            qargs.text("x-overflow", "reject-publish");
            amqp_queue_declare(conn_, declare_channel, detail::amqp_view(alternate), 0, 1, 0, 0, qargs.get());
            if (auto r = check_rpc("queue_declare '" + alternate + "'", declare_channel); !r) return r;
            amqp_queue_bind(conn_, declare_channel, detail::amqp_view(alternate), detail::amqp_view(alternate), amqp_empty_bytes, none);
            if (auto r = check_rpc("queue_bind '" + alternate + "'", declare_channel); !r) return r;
            exchange_args.text("alternate-exchange", alternate);
        }
        amqp_exchange_declare(conn_, declare_channel, detail::amqp_view(options_.exchange), amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                              exchange_args.get());
        return check_rpc("exchange_declare '" + options_.exchange + "'", declare_channel);
    }

    result<void> handle_frame(const amqp_frame_t& frame, const std::function<void(publish_confirm)>& on_confirm,
                              const std::function<void(inbound_message&&)>& on_message, std::size_t& delivered) {
        if (frame.frame_type != AMQP_FRAME_METHOD) {
            // Heartbeats are answered inside rabbitmq-c; content outside a delivery is a protocol error.
            if (frame.frame_type == AMQP_FRAME_HEARTBEAT) return {};
            return lost("a content frame arrived outside a delivery");
        }
        const amqp_method_t& method = frame.payload.method;
        switch (method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            auto* m = static_cast<const amqp_basic_ack_t*>(method.decoded);
            settle_publishes(m->delivery_tag, m->multiple != 0, {}, on_confirm);
            return {};
        }
        case AMQP_BASIC_NACK_METHOD: {
            auto* m = static_cast<const amqp_basic_nack_t*>(method.decoded);
            settle_publishes(m->delivery_tag, m->multiple != 0,
                             unexpected(errc::io_error, "[courier.bridge.amqp.nacked] the broker refused the publish (basic.nack: "
                                                        "a full queue with reject-publish, or an internal error)"),
                             on_confirm);
            return {};
        }
        case AMQP_BASIC_RETURN_METHOD: {
            // Only `mandatory` publishes come back, which this transport does not send; read the
            // content so the stream of frames stays in step.
            amqp_message_t msg;
            const amqp_rpc_reply_t r = amqp_read_message(conn_, frame.channel, &msg, 0);
            if (r.reply_type != AMQP_RESPONSE_NORMAL) return lost("reading a returned message: " + detail::amqp_reply_text(r));
            amqp_destroy_message(&msg);
            return {};
        }
        case AMQP_BASIC_DELIVER_METHOD: {
            auto* d = static_cast<const amqp_basic_deliver_t*>(method.decoded);
            inbound_message in;
            in.message.topic = detail::amqp_text(d->routing_key);
            in.tag.number = d->delivery_tag;
            in.tag.id = std::to_string(generation_);
            in.tag.partition = static_cast<std::int32_t>(frame.channel);
            in.delivery_count = d->redelivered ? 2 : 1;
            const bool redelivered = d->redelivered != 0;
            amqp_message_t msg;
            const amqp_rpc_reply_t r = amqp_read_message(conn_, frame.channel, &msg, 0);
            if (r.reply_type != AMQP_RESPONSE_NORMAL) return lost("reading a delivery: " + detail::amqp_reply_text(r));
            detail::amqp_read_delivery(msg.properties, msg.body, in);
            amqp_destroy_message(&msg);
            unsettled_.insert(in.tag.number);
            ++stats_.delivered;
            if (redelivered) ++stats_.redelivered;
            ++delivered;
            if (on_message) on_message(std::move(in));
            return {};
        }
        case AMQP_BASIC_CANCEL_METHOD: {
            // The broker cancelled a consumer (its queue was deleted): reconnecting declares it again.
            auto* m = static_cast<const amqp_basic_cancel_t*>(method.decoded);
            return lost("the broker cancelled consumer '" + detail::amqp_text(m->consumer_tag) + "' (was its queue deleted?)");
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
            auto* m = static_cast<const amqp_channel_close_t*>(method.decoded);
            const std::string why = "the broker closed channel " + std::to_string(frame.channel) + ": " + std::to_string(m->reply_code) +
                                    " " + detail::amqp_text(m->reply_text);
            amqp_channel_close_ok_t close_ok{};
            amqp_send_method(conn_, frame.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
            return lost(why);
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
            auto* m = static_cast<const amqp_connection_close_t*>(method.decoded);
            const std::string why = "the broker closed the connection: " + std::to_string(m->reply_code) + " " +
                                    detail::amqp_text(m->reply_text);
            amqp_connection_close_ok_t close_ok{};
            amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
            return lost(why);
        }
        case AMQP_CONNECTION_BLOCKED_METHOD:
            blocked_ = true;
            ++stats_.blocked;
            return {};
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            blocked_ = false;
            return {};
        default: return {};  // e.g. a late basic.cancel-ok: nothing to do
        }
    }

    void settle_publishes(std::uint64_t tag, bool multiple, result<void> outcome, const std::function<void(publish_confirm)>& on_confirm) {
        const bool ok = outcome.has_value();
        for (auto& p : unconfirmed_) {
            if (p.tag > tag) break;
            if (p.settled || (!multiple && p.tag != tag)) continue;
            p.settled = true;
            p.outcome = outcome;
            if (ok) ++stats_.confirmed;
            else ++stats_.nacked;
        }
        // Reported in publish order: a confirm is handed out once every earlier one was.
        while (!unconfirmed_.empty() && unconfirmed_.front().settled) {
            publish_confirm c{unconfirmed_.front().sequence, std::move(unconfirmed_.front().outcome)};
            unconfirmed_.pop_front();
            if (on_confirm) on_confirm(std::move(c));
        }
    }

    result<void> settle(const delivery_tag& tag, bool ack, bool requeue) {
        const char* what = ack ? "ack" : "nack";
        if (tag.id != std::to_string(generation_) || conn_ == nullptr) {
            // The connection that delivered it is gone, and with it the delivery: the broker
            // requeued the message when that connection closed and delivers it again (the
            // bridge's dedup drops the copy). Nothing to send; not an error of this connection.
            ++stats_.stale_settles;
            return {};
        }
        if (unsettled_.erase(tag.number) == 0)
            // Settling twice (or an unknown tag) would make the broker close the channel.
            return unexpected(errc::invalid_state, std::string("[courier.bridge.amqp.unknown_delivery] ") + what + " of delivery " +
                                                       std::to_string(tag.number) + ", which is not awaiting settlement");
        const int rc = ack ? amqp_basic_ack(conn_, consume_channel, tag.number, 0)
                           : amqp_basic_reject(conn_, consume_channel, tag.number, requeue ? 1 : 0);
        if (rc != AMQP_STATUS_OK) {
            const std::string why = amqp_error_string2(rc);
            drop_connection(std::string(what) + " failed: " + why);
            return unexpected(errc::io_error, std::string("[courier.bridge.amqp.") + what + "] cannot send to " + where() + ": " + why);
        }
        if (ack) ++stats_.acked;
        else if (requeue) ++stats_.requeued;
        else ++stats_.rejected;
        return {};
    }

    /// The connection is gone: unconfirmed publishes become failed confirms for the next poll.
    unexpected lost(std::string why) {
        drop_connection(why);
        return unexpected(errc::io_error, "[courier.bridge.amqp.connection_lost] " + where() + ": " + why);
    }

    void drop_connection(const std::string& why) noexcept {
        if (conn_ != nullptr) {
            amqp_destroy_connection(conn_);
            conn_ = nullptr;
        }
        for (auto& p : unconfirmed_) lost_.push_back(std::move(p));
        if (!unconfirmed_.empty()) lost_reason_ = why;
        unconfirmed_.clear();
        unsettled_.clear();
        // Queues are declared again on the next connection.
        for (auto& s : subs_) {
            s.queue.clear();
            s.consumer_tag.clear();
        }
        blocked_ = false;
    }

    amqp_options options_;
    capabilities caps_;
    amqp_stats stats_;
    amqp_connection_state_t conn_ = nullptr;
    int wake_fd_ = -1;  ///< eventfd `wake()` writes to; `poll` sleeps on it and the socket
    std::uint64_t generation_ = 0;        ///< connections made so far: names delivery tags' connection
    std::uint64_t next_publish_tag_ = 1;  ///< the publish channel's next confirm sequence number
    bool blocked_ = false;
    bool channel_closed_ = false;  ///< the last check_rpc answered a channel.close
    std::deque<pending_publish> unconfirmed_;
    std::deque<pending_publish> lost_;
    std::string lost_reason_;
    std::set<std::uint64_t> unsettled_;  ///< delivery tags handed out and not acked/nacked yet
    std::vector<subscription> subs_;
};

inline result<amqp_options> amqp_options::from_url(const broker_url& url) {
    if (url.scheme != broker_scheme::amqp)
        return unexpected(errc::invalid_argument, "[courier.bridge.amqp.url] '" + url.redacted() + "' is not an amqp:// URL");
    if (url.endpoints.size() != 1)
        return unexpected(errc::invalid_argument, "[courier.bridge.amqp.url] '" + url.redacted() + "' names " +
                                                      std::to_string(url.endpoints.size()) + " hosts; an AMQP connection has one");
    static constexpr std::string_view known[] = {"exchange", "dead_letter_exchange", "dead_letter_queue", "unroutable_queue", "queue_prefix",
                                                 "prefetch", "heartbeat", "persistent", "max_message_bytes", "name"};
    for (auto& [k, v] : url.params) {
        if (std::find(std::begin(known), std::end(known), k) == std::end(known))
            return unexpected(errc::invalid_argument,
                              "[courier.bridge.amqp.url] unknown parameter '" + k + "' in '" + url.redacted() +
                                  "' (known: exchange, dead_letter_exchange, dead_letter_queue, unroutable_queue, queue_prefix, prefetch, "
                                  "heartbeat, persistent, max_message_bytes, name)");
    }
    amqp_options o;
    o.host = url.host();
    o.port = url.port() != 0 ? url.port() : default_port(broker_scheme::amqp);
    if (!url.user.empty()) o.user = url.user;
    if (!url.password.empty() || !url.user.empty()) o.password = url.password;
    o.vhost = url.path.empty() ? std::string("/") : url.path;
    o.exchange = url.param("exchange", o.exchange);
    o.dead_letter_exchange = url.param("dead_letter_exchange", o.dead_letter_exchange);
    o.dead_letter_queue = url.param("dead_letter_queue", o.dead_letter_queue);
    o.unroutable_queue = url.param("unroutable_queue", o.unroutable_queue);
    o.queue_prefix = url.param("queue_prefix", o.queue_prefix);
    o.name = url.param("name", o.name);
    if (o.exchange.empty())
        return unexpected(errc::invalid_argument, "[courier.bridge.amqp.url] 'exchange' may not be empty (the default exchange "
                                                  "routes by queue name, not by event name) in '" + url.redacted() + "'");
    auto prefetch = url.param_uint("prefetch", o.prefetch);
    if (!prefetch) return unexpected(prefetch.error());
    if (*prefetch > 65535)
        return unexpected(errc::invalid_argument, "[courier.bridge.url.bad_param] parameter 'prefetch' must be at most 65535");
    o.prefetch = static_cast<std::uint16_t>(*prefetch);
    auto heartbeat = url.param_uint("heartbeat", static_cast<std::uint64_t>(o.heartbeat.count()));
    if (!heartbeat) return unexpected(heartbeat.error());
    if (*heartbeat > 65535)
        return unexpected(errc::invalid_argument, "[courier.bridge.url.bad_param] parameter 'heartbeat' must be at most 65535 seconds");
    o.heartbeat = std::chrono::seconds(*heartbeat);
    auto persistent = url.param_bool("persistent", o.persistent);
    if (!persistent) return unexpected(persistent.error());
    o.persistent = *persistent;
    auto max = url.param_uint("max_message_bytes", o.max_message_bytes);
    if (!max) return unexpected(max.error());
    o.max_message_bytes = static_cast<std::size_t>(*max);
    return o;
}

namespace detail {
inline const bool amqp_registered = register_transport(broker_scheme::amqp, [](const broker_url& url) -> result<std::unique_ptr<transport>> {
    auto o = amqp_options::from_url(url);
    if (!o) return unexpected(o.error());
    return std::unique_ptr<transport>(std::make_unique<amqp_transport>(std::move(*o)));
});
}  // namespace detail

}  // namespace bridge
COURIER_END_NAMESPACE
