// The contract between courier's generic bridge (outbox, dedup, dead letters, capability
// check: broker_bridge.hpp) and one broker's client library (redis.hpp, nats.hpp, kafka.hpp,
// amqp.hpp). An adapter only moves bytes and settles them; everything a user relies on across
// brokers is written once, in the bridge.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/result.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge {

/// How a broker matches a subscription against message names natively.
enum class wildcard_dialect : std::uint8_t {
    none,       ///< exact names only (Redis stream keys, Kafka topics without regex)
    courier,    ///< `*` one segment, `#` zero or more: courier's own (AMQP topic exchanges)
    nats,       ///< `*` one token, `>` one or more trailing tokens
};

/// What a broker does natively. The bridge refuses, at configuration, a route that needs
/// something missing here, instead of misbehaving at run time.
struct capabilities {
    std::string broker;                                  ///< "redis", "nats", "kafka", "amqp"
    wildcard_dialect wildcards = wildcard_dialect::none;
    bool per_key_order = false;     ///< messages with one key arrive in the order they were sent
    bool consumer_groups = false;   ///< competing consumers sharing one subscription
    bool redelivery = false;        ///< unacked messages come back after a consumer crash
    bool native_dedup = false;      ///< the broker drops a repeated message id (JetStream Nats-Msg-Id)
    bool delayed_delivery = false;  ///< deliver-at / delay per message
    bool priorities = false;        ///< per-message priority
    bool request_reply = false;     ///< native reply subjects / reply-to
    bool replay = false;            ///< a consumer can read history from an offset
    std::size_t max_message_bytes = 0;  ///< largest payload the broker accepts (0: no practical limit)
};

/// One message as it crosses the hop. `payload` is the envelope as JSON (courier's wire format,
/// so the broker's own tools show readable JSON); `headers` carry the envelope metadata where the
/// broker has headers (`courier-event-id`, `courier-event-type`, `courier-key`, ...).
struct wire_message {
    std::string topic;     ///< broker-side destination: stream key, subject, topic or routing key
    std::string key;       ///< ordering/partition key ("" = none)
    std::string event_id;  ///< the envelope's event_id (broker message id where one exists)
    std::string event_type;
    std::string payload;
    std::vector<std::pair<std::string, std::string>> headers;

    // Member by member, with each string's own swap (std::swap would make three moves of all
    // of them): the bridge's I/O thread swaps every delivery into its batch.
    friend void swap(wire_message& a, wire_message& b) noexcept {
        a.topic.swap(b.topic);
        a.key.swap(b.key);
        a.event_id.swap(b.event_id);
        a.event_type.swap(b.event_type);
        a.payload.swap(b.payload);
        a.headers.swap(b.headers);
    }
};

/// Identifies one inbound message to the adapter that delivered it, for ack/nack.
/// Opaque to the bridge: Redis entry id + group, Kafka partition/offset, AMQP delivery tag...
struct delivery_tag {
    std::string id;
    std::uint64_t number = 0;
    std::int32_t partition = -1;

    friend void swap(delivery_tag& a, delivery_tag& b) noexcept {
        a.id.swap(b.id);
        std::swap(a.number, b.number);
        std::swap(a.partition, b.partition);
    }
};

/// One message the broker delivered.
struct inbound_message {
    wire_message message;            ///< raw payload kept as received (a poison message is dead-lettered with it)
    delivery_tag tag;
    std::uint32_t delivery_count = 1; ///< > 1 when the broker redelivers (Redis PEL, AMQP redelivered flag)

    friend void swap(inbound_message& a, inbound_message& b) noexcept {
        swap(a.message, b.message);
        swap(a.tag, b.tag);
        std::swap(a.delivery_count, b.delivery_count);
    }
};

/// What `ingest` subscribes to on the broker side.
struct ingest_spec {
    std::string topic;  ///< stream key / subject / topic / binding key, in the broker's own dialect
    std::string group;  ///< consumer group / queue group / Kafka group.id ("" = none: fan-out)
    std::string consumer;  ///< this consumer's name inside the group
    bool from_beginning = false;  ///< replay history where the broker keeps it
};

/// Reported by `poll` for each message handed to `publish`.
struct publish_confirm {
    std::uint64_t sequence = 0;  ///< the value given to publish
    result<void> outcome;        ///< ok: the broker has it (XADD reply, delivery report, confirm, JetStream ack)
};

/// One broker connection, driven by exactly one thread: the bridge's I/O thread calls every
/// member (client libraries such as hiredis and rabbitmq-c are not thread-safe), except
/// `capabilities()`, which is immutable and may be read from anywhere.
///
/// Errors: a lost connection shows up as an error from `publish`/`poll`; the bridge then calls
/// `connect()` again with backoff and re-publishes whatever was not confirmed.
class transport {
public:
    virtual ~transport() = default;

    /// What the broker does natively (constant for the object's lifetime).
    virtual const capabilities& caps() const noexcept = 0;

    /// Connects (or reconnects) within `timeout`; re-establishes the subscriptions given to
    /// `subscribe` before. Idempotent when connected.
    virtual result<void> connect(duration timeout) = 0;
    virtual bool connected() const noexcept = 0;
    /// Closes the connection; pending confirms are reported as failed by the next poll or dropped
    /// with the connection (the bridge still holds those messages in its outbox).
    virtual void close() noexcept = 0;

    /// Sends one message; its outcome arrives later through `poll`. An error here means the
    /// message was not sent at all (the bridge keeps it and retries).
    virtual result<void> publish(std::uint64_t sequence, const wire_message& m) = 0;

    /// Subscribes (idempotent per spec; remembered for reconnects).
    virtual result<void> subscribe(const ingest_spec& spec) = 0;

    /// Drives I/O for at most `max_wait`: hands confirms to `on_confirm` and deliveries to
    /// `on_message`, at most `max_messages` deliveries per call. Returns an error when the
    /// connection is lost. `on_message` takes the message's contents and may leave older
    /// buffers in their place: a transport that fills one inbound_message again for each
    /// delivery reuses their capacity instead of allocating its strings per message.
    virtual result<void> poll(duration max_wait, std::size_t max_messages,
                              const std::function<void(publish_confirm)>& on_confirm,
                              const std::function<void(inbound_message&&)>& on_message) = 0;

    /// Settles an inbound message: the local handlers finished (ack) or it was dead-lettered
    /// locally and must not come back (ack as well); `nack` asks the broker to redeliver or to
    /// route it to its own dead-letter target where it has one.
    virtual result<void> ack(const ingest_spec& spec, const delivery_tag& tag) = 0;
    virtual result<void> nack(const ingest_spec& spec, const delivery_tag& tag, bool requeue) = 0;

    // ---- optional (added with broker_bridge.hpp; the defaults keep every adapter valid) ----

    /// Makes a `poll` that is blocked now, or the next one, return promptly (the bridge has
    /// outbound messages or acks). The one member besides `caps()` that may be called from any
    /// thread, concurrently with the others. Without it (the default does nothing) the bridge
    /// still works, but outbound messages wait up to `bridge_options::poll_interval`.
    virtual void wake() noexcept {}

    /// The topic a forward route without one of its own sends to (Redis: the URL's `stream`).
    /// Empty (the default): such a route sends each event to a topic named by its event type.
    virtual std::string default_topic() const { return {}; }
};

}  // namespace bridge
COURIER_END_NAMESPACE
