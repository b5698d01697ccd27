// The NATS adapter of courier's broker bridge: a `bridge::transport` over cnats (libnats).
// Core NATS (confirm = the server answered a flush) or JetStream (confirm = the stream's
// publish ack, dedup by Nats-Msg-Id, durable consumers with explicit acks and redelivery).
// Link courier::bridge_nats; the core library never includes this header.
#pragma once

#include <courier/bridge/detail/wire_nats.hpp>
#include <courier/bridge/registry.hpp>
#include <courier/bridge/transport.hpp>
#include <courier/bridge/url.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/result.hpp>

#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge {

/// How the NATS transport talks to the server. Every field has a default that works against a
/// local `nats-server` (with `-js` for `jetstream = true`).
struct nats_options {
    /// Server URL, `nats://host:port` (several separated by commas).
    std::string url = "nats://127.0.0.1:4222";
    /// Client name shown by the server's monitoring (`connz`).
    std::string name = "courier-bridge";
    /// false: core NATS (at-most-once on the wire; a publish is confirmed when a flush round
    /// trip after it succeeded). true: JetStream (publish acks, durable consumers, redelivery).
    bool jetstream = false;

    // JetStream only.
    /// The stream courier's subjects are stored in.
    std::string stream = "COURIER";
    /// Subjects the stream captures. Empty: `<domain>.>` is added for each event domain as
    /// publish/subscribe meet it (`order.created.v1` -> `order.>`).
    std::vector<std::string> stream_subjects;
    /// true: the stream lives in memory (lost when the server stops); false: file storage.
    bool memory_storage = false;
    /// JetStream's dedup window for Nats-Msg-Id.
    duration duplicate_window = std::chrono::minutes(2);
    /// How long the server waits for an ack before redelivering.
    duration ack_wait = std::chrono::seconds(30);
    /// Unacked deliveries a consumer may have outstanding (the server's flow control).
    int max_ack_pending = 65536;
    /// Publishes awaiting their ack at once (publish fails past it; the bridge retries).
    int max_publishes_in_flight = 65536;
    /// How long a publish ack may take before the publish is reported failed.
    duration publish_ack_timeout = std::chrono::seconds(5);

    // Both modes.
    /// Largest payload accepted (the server's max_payload, 1 MiB by default).
    std::size_t max_message_bytes = 1024 * 1024;
    /// Deliveries buffered between cnats' threads and `poll` (past it a delivery is counted in
    /// `stats().dropped`; under JetStream the server redelivers it after ack_wait).
    std::size_t max_buffered_deliveries = 1 << 20;
    /// How long a core-NATS confirm flush may take.
    duration flush_timeout = std::chrono::seconds(5);

    /// Options from a bridge URL: `nats://[user:pass@]host:port[,host:port][?jetstream=true&stream=NAME&name=CLIENT&memory=true&max_message_bytes=N]`.
    /// Errors: invalid_argument "[courier.bridge.nats.url]" for an unknown parameter or another scheme.
    static result<nats_options> from_url(const broker_url& url);
};

/// Counters of one NATS transport (read from the driving thread).
struct nats_stats {
    std::uint64_t published = 0;   ///< messages handed to the server
    std::uint64_t confirmed = 0;   ///< confirms reported ok
    std::uint64_t failed = 0;      ///< confirms reported failed
    std::uint64_t delivered = 0;   ///< deliveries handed to `poll`'s callback
    std::uint64_t duplicates = 0;  ///< JetStream publish acks that said "duplicate" (dropped by the server's dedup)
    std::uint64_t dropped = 0;     ///< deliveries lost to a full buffer or to cnats' slow-consumer limit
    std::uint64_t connects = 0;    ///< successful connects (1 + reconnects)
};

/// Subjects a courier topic pattern becomes: `*` stays `*`; a trailing `#` becomes `>` and, since
/// `#` also matches zero segments, the prefix itself is a second subject (`order.#` ->
/// `order`, `order.>`). A `#` anywhere but at the end has no NATS form: invalid_pattern.
/// Names without wildcards are subjects already.
inline result<std::vector<std::string>> nats_subjects_for(std::string_view pattern) {
    auto bad = [&](const char* why) {
        return unexpected(errc::invalid_pattern, "[courier.bridge.nats.pattern] '" + std::string(pattern) + "' " + why);
    };
    if (pattern.empty()) return bad("is empty");
    std::vector<std::string_view> tokens;
    std::size_t start = 0;
    for (;;) {
        auto dot = pattern.find('.', start);
        tokens.push_back(pattern.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        auto t = tokens[i];
        if (t.empty()) return bad("has an empty segment");
        for (char c : t) {
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return bad("contains white space");
        }
        if (t == "#" && i + 1 != tokens.size())
            return bad("uses '#' before the last segment; NATS has only a trailing '>'");
        if (t != "#" && t != "*" && t != ">" && (t.find_first_of("*#>") != std::string_view::npos))
            return bad("mixes a wildcard with other characters in one segment");
        if (t == ">" && i + 1 != tokens.size()) return bad("uses '>' before the last segment");
    }
    std::vector<std::string> out;
    if (tokens.back() == "#") {
        std::string prefix;
        for (std::size_t i = 0; i + 1 < tokens.size(); ++i) {
            if (i) prefix += '.';
            prefix.append(tokens[i]);
        }
        if (prefix.empty()) {
            out.emplace_back(">");
        } else {
            out.push_back(prefix);
            out.push_back(prefix + ".>");
        }
    } else {
        out.emplace_back(pattern);
    }
    return out;
}

namespace detail {

/// What cnats' threads share with the thread driving a `nats_transport`.
struct nats_shared {
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<inbound_message> inbox;
    std::deque<publish_confirm> confirms;
    std::unordered_map<const natsMsg*, std::uint64_t> pending_acks;  ///< JetStream: message -> sequence
    std::size_t max_inbox = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t dropped = 0;
    bool disconnected = false;  ///< the current connection was lost (set by cnats' callback)
    bool woken = false;         ///< `wake()` asked the current or next poll to return
};

/// Callbacks from cnats find their transport through a number, never a raw pointer: a late
/// callback for a transport that is gone (or a connection that was replaced) finds nothing.
class nats_registry {
public:
    static nats_registry& instance() {
        // Never destroyed: cnats may still call back from its threads while statics are torn
        // down at exit (a connection closing then must find an intact, empty-handed registry).
        static nats_registry* r = new nats_registry;
        return *r;
    }
    std::uintptr_t add(std::shared_ptr<nats_shared> s) {
        std::lock_guard lock(mutex_);
        auto id = ++next_;
        map_.emplace(id, std::move(s));
        return id;
    }
    void remove(std::uintptr_t id) {
        std::lock_guard lock(mutex_);
        map_.erase(id);
    }
    std::shared_ptr<nats_shared> find(void* closure) {
        std::lock_guard lock(mutex_);
        auto it = map_.find(reinterpret_cast<std::uintptr_t>(closure));
        return it == map_.end() ? nullptr : it->second.lock();
    }

private:
    std::mutex mutex_;
    std::unordered_map<std::uintptr_t, std::weak_ptr<nats_shared>> map_;
    std::uintptr_t next_ = 0;
};

inline std::string nats_status_text(natsStatus s, natsConnection* nc = nullptr) {
    std::string text = natsStatus_GetText(s);
    if (nc != nullptr) {
        const char* last = nullptr;
        if (natsConnection_GetLastError(nc, &last) != NATS_OK && last != nullptr && *last != '\0' && text != last) {
            text.append(": ").append(last);
        }
    }
    return text;
}

inline errc nats_errc(natsStatus s) {
    switch (s) {
    case NATS_TIMEOUT: return errc::timeout;
    case NATS_MAX_PAYLOAD: return errc::limit_exceeded;
    case NATS_NO_RESPONDERS: return errc::no_responders;
    case NATS_INVALID_SUBJECT:
    case NATS_INVALID_ARG: return errc::invalid_argument;
    case NATS_CONNECTION_CLOSED: return errc::closed;
    default: return errc::io_error;
    }
}

inline std::int64_t nats_millis(duration d) {
    return std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

/// Copies a cnats message into courier's wire form (headers included; see nats_read_message).
inline inbound_message nats_copy(natsMsg* msg) {
    const char* subject = natsMsg_GetSubject(msg);
    const char* data = natsMsg_GetData(msg);
    const std::string_view payload =
        data != nullptr ? std::string_view(data, static_cast<std::size_t>(natsMsg_GetDataLength(msg))) : std::string_view();
    return nats_read_message(subject != nullptr ? std::string_view(subject) : std::string_view(), payload, [msg](auto&& visit) {
        const char** keys = nullptr;
        int nkeys = 0;
        if (natsMsgHeader_Keys(msg, &keys, &nkeys) != NATS_OK) return;
        for (int i = 0; i < nkeys; ++i) {
            const char** values = nullptr;
            int nvalues = 0;
            if (natsMsgHeader_Values(msg, keys[i], &values, &nvalues) != NATS_OK) continue;
            for (int j = 0; j < nvalues; ++j) visit(std::string_view(keys[i]), std::string_view(values[j]));
            std::free(static_cast<void*>(values));
        }
        std::free(static_cast<void*>(keys));
    });
}

inline void nats_on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto shared = nats_registry::instance().find(closure);
    if (!shared) {
        natsMsg_Destroy(msg);
        return;
    }
    inbound_message in = nats_copy(msg);
    const char* reply = natsMsg_GetReply(msg);
    jsMsgMetaData* meta = nullptr;
    if (reply != nullptr && std::string_view(reply).substr(0, 8) == "$JS.ACK." && natsMsg_GetMetaData(&meta, msg) == NATS_OK &&
        meta != nullptr) {
        // JetStream: the reply subject is the ack subject; the stream sequence names the message.
        in.tag.id = reply;
        in.tag.number = meta->Sequence.Stream;
        // Saturated: the count comes from the reply subject, which a core NATS publisher can forge
        // (2^32 must not wrap to 0).
        in.delivery_count = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(meta->NumDelivered, 1, UINT32_MAX));
        jsMsgMetaData_Destroy(meta);
    } else if (reply != nullptr && *reply != '\0') {
        // Core NATS request: answering means publishing to this subject.
        in.message.headers.emplace_back("nats-reply-to", reply);
    }
    natsMsg_Destroy(msg);
    {
        std::lock_guard lock(shared->mutex);
        if (shared->inbox.size() >= shared->max_inbox) {
            ++shared->dropped;
            return;
        }
        shared->inbox.push_back(std::move(in));
    }
    shared->wake.notify_one();
}

inline void nats_on_pub_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto shared = nats_registry::instance().find(closure);
    if (shared) {
        std::unique_lock lock(shared->mutex);
        auto it = shared->pending_acks.find(msg);
        if (it != shared->pending_acks.end()) {
            publish_confirm c;
            c.sequence = it->second;
            shared->pending_acks.erase(it);
            if (pa == nullptr) {
                std::string why = pae != nullptr && pae->ErrText != nullptr ? pae->ErrText
                                  : pae != nullptr                          ? natsStatus_GetText(pae->Err)
                                                                            : "no ack";
                c.outcome = unexpected(pae != nullptr ? nats_errc(pae->Err) : errc::io_error,
                                       "[courier.bridge.nats.publish_ack] JetStream refused or did not ack: " + why);
            } else if (pa->Duplicate) {
                ++shared->duplicates;  // stored once already: a confirm all the same
            }
            shared->confirms.push_back(std::move(c));
            lock.unlock();
            shared->wake.notify_one();
        }
    }
    natsMsg_Destroy(msg);
}

inline void nats_on_disconnect(natsConnection*, void* closure) {
    auto shared = nats_registry::instance().find(closure);
    if (!shared) return;
    {
        std::lock_guard lock(shared->mutex);
        shared->disconnected = true;
    }
    shared->wake.notify_all();
}

inline void nats_on_async_error(natsConnection*, natsSubscription*, natsStatus err, void* closure) {
    if (err != NATS_SLOW_CONSUMER) return;
    // cnats dropped a message past the subscription's pending limit: counted (and under
    // JetStream redelivered by the server); `stats()` also adds natsSubscription_GetDropped.
    (void)closure;
}

}  // namespace detail

/// A `transport` over one NATS connection (cnats).
///
/// Subjects are courier event names (`order.created.v1` is a NATS subject already); patterns map
/// as in `nats_subjects_for`. `ingest_spec::group` becomes a queue group (core) or a durable
/// consumer with that queue group (JetStream); an empty group is a fan-out subscription (an
/// ephemeral consumer under JetStream). Envelope metadata travels as NATS headers, with
/// `Nats-Msg-Id` = event_id, so JetStream drops a repeated publish inside its dedup window.
///
/// Request-reply: a message published with a `courier-reply` header carries that subject as its
/// NATS reply subject, so a plain NATS responder answers it; a core-NATS delivery that has a reply
/// subject shows it as header `nats-reply-to` (publish the answer to that topic); `request()`
/// sends one request and waits for the answer (natsConnection_RequestMsg).
///
/// Thread safety: one thread drives the object (every member but `caps()`), as the contract
/// says. cnats delivers on its own threads; those only append to a buffer guarded by a mutex,
/// which `poll` drains on the driving thread.
///
/// Example:
/// ```
/// courier::bridge::nats_transport t({.url = "nats://127.0.0.1:4222"});
/// t.connect(std::chrono::seconds(2)).value();
/// t.subscribe({.topic = "order.*.v1", .group = "billing"}).value();
/// t.publish(1, {.topic = "order.created.v1", .event_id = "e-1", .payload = "{}"}).value();
/// t.poll(std::chrono::milliseconds(100), 64, [](auto c) { /* c.outcome */ }, [](auto m) { /* ... */ });
/// ```
class nats_transport final : public transport {
public:
    explicit nats_transport(nats_options options = {})
        : options_(std::move(options)), shared_(std::make_shared<detail::nats_shared>()) {
        shared_->max_inbox = options_.max_buffered_deliveries;
        caps_.broker = "nats";
        caps_.wildcards = wildcard_dialect::nats;
        caps_.per_key_order = true;  // one connection publishes in order; a subscriber receives in order
        caps_.consumer_groups = true;
        caps_.redelivery = options_.jetstream;
        caps_.native_dedup = options_.jetstream;
        caps_.request_reply = true;
        caps_.replay = options_.jetstream;
        caps_.max_message_bytes = options_.max_message_bytes;
    }
    ~nats_transport() override { close(); }
    nats_transport(const nats_transport&) = delete;
    nats_transport& operator=(const nats_transport&) = delete;

    const capabilities& caps() const noexcept override { return caps_; }
    const nats_options& options() const noexcept { return options_; }

    result<void> connect(duration timeout) override {
        if (connected()) return {};
        drop_connection();
        natsOptions* opts = nullptr;
        auto fail = [&](natsStatus s, const char* what) -> result<void> {
            if (opts != nullptr) natsOptions_Destroy(opts);
            drop_connection();
            return unexpected(detail::nats_errc(s) == errc::timeout ? errc::timeout : errc::io_error,
                              "[courier.bridge.nats.connect] " + std::string(what) + " " + options_.url + ": " +
                                  detail::nats_status_text(s));
        };
        natsStatus s = natsOptions_Create(&opts);
        if (s != NATS_OK) return fail(s, "cannot create options for");
        id_ = detail::nats_registry::instance().add(shared_);
        void* closure = reinterpret_cast<void*>(id_);
        if ((s = natsOptions_SetURL(opts, options_.url.c_str())) != NATS_OK) return fail(s, "bad URL");
        natsOptions_SetName(opts, options_.name.c_str());
        natsOptions_SetTimeout(opts, detail::nats_millis(timeout));
        // The bridge owns reconnection (with backoff, re-subscribing): cnats must not hide a loss.
        natsOptions_SetAllowReconnect(opts, false);
        // Without it cnats holds small sends for its flusher thread (about 0.6 ms per hop).
        natsOptions_SetSendAsap(opts, true);
        natsOptions_SetDisconnectedCB(opts, &detail::nats_on_disconnect, closure);
        natsOptions_SetClosedCB(opts, &detail::nats_on_disconnect, closure);
        natsOptions_SetErrorHandler(opts, &detail::nats_on_async_error, closure);
        {
            std::lock_guard lock(shared_->mutex);
            shared_->disconnected = false;
        }
        s = natsConnection_Connect(&nc_, opts);
        natsOptions_Destroy(opts);
        opts = nullptr;
        if (s != NATS_OK) return fail(s, "cannot connect to");
        if (options_.jetstream) {
            jsOptions jo;
            jsOptions_Init(&jo);
            jo.Wait = detail::nats_millis(options_.publish_ack_timeout);
            jo.PublishAsync.MaxPending = options_.max_publishes_in_flight;
            jo.PublishAsync.AckHandler = &detail::nats_on_pub_ack;
            jo.PublishAsync.AckHandlerClosure = closure;
            // A full window waits for acks (they arrive on cnats' threads) rather than failing.
            jo.PublishAsync.StallWait = detail::nats_millis(options_.publish_ack_timeout);
            if ((s = natsConnection_JetStream(&js_, nc_, &jo)) != NATS_OK) return fail(s, "cannot open JetStream on");
            covered_.clear();
            if (auto r = ensure_stream({}); !r) {
                drop_connection();
                return r;
            }
        }
        ++stats_.connects;
        // Re-establish what was subscribed before.
        auto specs = std::move(specs_);
        specs_.clear();
        for (auto& spec : specs) {
            if (auto r = subscribe(spec); !r) {
                specs_ = std::move(specs);
                drop_connection();
                return r;
            }
        }
        return {};
    }

    bool connected() const noexcept override {
        return nc_ != nullptr && natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
    }

    void close() noexcept override { drop_connection(); }

    result<void> publish(std::uint64_t sequence, const wire_message& m) override {
        if (nc_ == nullptr || !connected())
            return unexpected(errc::closed, "[courier.bridge.nats.not_connected] publish while not connected to " + options_.url);
        if (m.payload.size() > caps_.max_message_bytes)
            return unexpected(errc::limit_exceeded, "[courier.bridge.nats.too_large] payload of " + std::to_string(m.payload.size()) +
                                                        " bytes exceeds max_message_bytes " + std::to_string(caps_.max_message_bytes));
        if (auto r = check_subject(m.topic); !r) return r;
        if (options_.jetstream) {
            if (auto r = ensure_stream(m.topic); !r) return r;
        }
        std::string reply;
        for (auto& [k, v] : m.headers) {
            if (k == "courier-reply") reply = v;
        }
        natsMsg* msg = nullptr;
        natsStatus s = natsMsg_Create(&msg, m.topic.c_str(), reply.empty() ? nullptr : reply.c_str(), m.payload.data(),
                                      static_cast<int>(m.payload.size()));
        if (s != NATS_OK) return nats_failure(s, "publish");
        if (auto r = set_headers(msg, m); !r) {
            natsMsg_Destroy(msg);
            return r;
        }
        if (options_.jetstream) {
            jsPubOptions po;
            jsPubOptions_Init(&po);
            po.MsgId = m.event_id.empty() ? nullptr : m.event_id.c_str();
            po.MaxWait = detail::nats_millis(options_.publish_ack_timeout);
            const natsMsg* key = msg;
            {
                std::lock_guard lock(shared_->mutex);
                shared_->pending_acks[key] = sequence;
            }
            s = js_PublishMsgAsync(js_, &msg, &po);
            if (s != NATS_OK) {
                {
                    std::lock_guard lock(shared_->mutex);
                    shared_->pending_acks.erase(key);
                }
                natsMsg_Destroy(msg);  // still ours when the call failed
                return nats_failure(s, "publish");
            }
        } else {
            s = natsConnection_PublishMsg(nc_, msg);
            natsMsg_Destroy(msg);
            if (s != NATS_OK) return nats_failure(s, "publish");
            unflushed_.push_back(sequence);
        }
        ++stats_.published;
        return {};
    }

    result<void> subscribe(const ingest_spec& spec) override {
        for (auto& known : specs_) {
            if (same_spec(known, spec)) return {};
        }
        auto subjects = nats_subjects_for(spec.topic);
        if (!subjects) return unexpected(subjects.error());
        if (nc_ == nullptr || !connected()) {
            // Remembered: `connect` subscribes it.
            specs_.push_back(spec);
            return {};
        }
        void* closure = reinterpret_cast<void*>(id_);
        std::vector<natsSubscription*> made;
        auto undo = [&] {
            for (auto* sub : made) {
                natsSubscription_Unsubscribe(sub);
                natsSubscription_Destroy(sub);
            }
        };
        if (options_.jetstream) {
            // A JetStream consumer has one filter subject: the `>` form (`order.#` -> `order.>`).
            const std::string& subject = subjects->back();
            if (auto r = ensure_stream(subject); !r) return r;
            if (spec.group.find_first_of(" \t\r\n") != std::string::npos)
                return unexpected(errc::invalid_argument, "[courier.bridge.nats.group] group '" + spec.group + "' contains white space");
            jsSubOptions so;
            jsSubOptions_Init(&so);
            so.Stream = options_.stream.c_str();
            so.ManualAck = true;
            so.Config.AckPolicy = js_AckExplicit;
            so.Config.AckWait = std::chrono::duration_cast<std::chrono::nanoseconds>(options_.ack_wait).count();
            so.Config.MaxAckPending = options_.max_ack_pending;
            so.Config.DeliverPolicy = spec.from_beginning ? js_DeliverAll : js_DeliverNew;
            // One durable consumer per (group, subject): a group may ingest several subjects,
            // and a durable's filter subject cannot change.
            const std::string durable = spec.group.empty() ? std::string() : durable_name(spec.group, subject);
            if (!spec.group.empty()) {
                so.Config.Durable = durable.c_str();
                so.Queue = spec.group.c_str();
            }
            natsSubscription* sub = nullptr;
            jsErrCode jerr = static_cast<jsErrCode>(0);
            natsStatus s = js_Subscribe(&sub, js_, subject.c_str(), &detail::nats_on_message, closure, nullptr, &so, &jerr);
            if (s != NATS_OK) {
                return unexpected(detail::nats_errc(s), "[courier.bridge.nats.subscribe] JetStream consumer on '" + subject +
                                                            "' refused: " + detail::nats_status_text(s, nc_) +
                                                            (jerr != 0 ? " (JetStream error " + std::to_string(jerr) + ")" : ""));
            }
            made.push_back(sub);
        } else {
            for (auto& subject : *subjects) {
                natsSubscription* sub = nullptr;
                natsStatus s = spec.group.empty()
                                   ? natsConnection_Subscribe(&sub, nc_, subject.c_str(), &detail::nats_on_message, closure)
                                   : natsConnection_QueueSubscribe(&sub, nc_, subject.c_str(), spec.group.c_str(),
                                                                   &detail::nats_on_message, closure);
                if (s != NATS_OK) {
                    undo();
                    return unexpected(detail::nats_errc(s), "[courier.bridge.nats.subscribe] '" + subject + "': " +
                                                                detail::nats_status_text(s, nc_));
                }
                made.push_back(sub);
            }
        }
        for (auto* sub : made) {
            // cnats' default (65,536 messages) would drop a burst; our own buffer is the bound.
            natsSubscription_SetPendingLimits(sub, -1, -1);
        }
        if (!options_.jetstream) {
            // The subscription must be registered at the server before the caller relies on it.
            if (natsStatus s = natsConnection_FlushTimeout(nc_, detail::nats_millis(options_.flush_timeout)); s != NATS_OK) {
                undo();
                return nats_failure(s, "subscribe");
            }
        }
        for (auto* sub : made) subs_.push_back(sub);
        specs_.push_back(spec);
        return {};
    }

    result<void> poll(duration max_wait, std::size_t max_messages, const std::function<void(publish_confirm)>& on_confirm,
                      const std::function<void(inbound_message&&)>& on_message) override {
        if (nc_ == nullptr) return unexpected(errc::closed, "[courier.bridge.nats.not_connected] poll while not connected to " + options_.url);
        // Core NATS: everything published before a successful flush reached the server.
        if (!unflushed_.empty()) {
            natsStatus s = natsConnection_FlushTimeout(nc_, detail::nats_millis(options_.flush_timeout));
            auto batch = std::move(unflushed_);
            unflushed_.clear();
            for (auto seq : batch) {
                publish_confirm c;
                c.sequence = seq;
                if (s != NATS_OK) {
                    c.outcome = unexpected(detail::nats_errc(s), "[courier.bridge.nats.flush] the server did not confirm: " +
                                                                      detail::nats_status_text(s));
                    ++stats_.failed;
                } else {
                    ++stats_.confirmed;
                }
                on_confirm(std::move(c));
            }
        }
        std::deque<publish_confirm> confirms;
        std::deque<inbound_message> messages;
        bool lost = false;
        {
            std::unique_lock lock(shared_->mutex);
            auto ready = [&] {
                return !shared_->confirms.empty() || !shared_->inbox.empty() || shared_->disconnected || shared_->woken;
            };
            if (!ready() && max_wait > duration::zero()) shared_->wake.wait_for(lock, max_wait, ready);
            shared_->woken = false;
            confirms.swap(shared_->confirms);
            const auto n = std::min(max_messages, shared_->inbox.size());
            for (std::size_t i = 0; i < n; ++i) {
                messages.push_back(std::move(shared_->inbox.front()));
                shared_->inbox.pop_front();
            }
            lost = shared_->disconnected;
        }
        for (auto& c : confirms) {
            if (c.outcome) ++stats_.confirmed;
            else ++stats_.failed;
            on_confirm(std::move(c));
        }
        for (auto& m : messages) {
            ++stats_.delivered;
            on_message(std::move(m));
        }
        if (lost || !connected()) {
            // Publishes awaiting a JetStream ack on the lost connection will never get one.
            fail_pending(on_confirm, "the connection was lost before JetStream acked");
            return unexpected(errc::io_error, "[courier.bridge.nats.disconnected] lost the connection to " + options_.url);
        }
        return {};
    }

    result<void> ack(const ingest_spec&, const delivery_tag& tag) override {
        if (!options_.jetstream || tag.id.empty()) return {};  // core NATS: nothing to settle
        return settle(tag, "+ACK");
    }

    result<void> nack(const ingest_spec&, const delivery_tag& tag, bool requeue) override {
        if (!options_.jetstream || tag.id.empty()) {
            if (!requeue) return {};
            return unexpected(errc::invalid_state, "[courier.bridge.nats.no_redelivery] core NATS cannot redeliver a message; "
                                                   "enable JetStream (nats_options::jetstream)");
        }
        // -NAK: redeliver now; +TERM: never again (the bridge has dead-lettered it).
        return settle(tag, requeue ? "-NAK" : "+TERM");
    }

    /// Makes a blocked `poll` return now (or the next one at once). Any thread.
    void wake() noexcept override {
        {
            std::lock_guard lock(shared_->mutex);
            shared_->woken = true;
        }
        shared_->wake.notify_all();
    }

    /// Core-NATS request-reply: publishes `m` with a fresh inbox as reply subject and waits for
    /// the first answer. Errors: no_responders when nobody subscribes, timeout, closed.
    result<inbound_message> request(const wire_message& m, duration timeout) {
        if (nc_ == nullptr || !connected())
            return unexpected(errc::closed, "[courier.bridge.nats.not_connected] request while not connected to " + options_.url);
        if (auto r = check_subject(m.topic); !r) return unexpected(r.error());
        natsMsg* msg = nullptr;
        natsStatus s = natsMsg_Create(&msg, m.topic.c_str(), nullptr, m.payload.data(), static_cast<int>(m.payload.size()));
        if (s != NATS_OK) return unexpected(nats_failure(s, "request").error());
        if (auto r = set_headers(msg, m); !r) {
            natsMsg_Destroy(msg);
            return unexpected(r.error());
        }
        natsMsg* reply = nullptr;
        s = natsConnection_RequestMsg(&reply, nc_, msg, detail::nats_millis(timeout));
        natsMsg_Destroy(msg);
        if (s != NATS_OK) {
            if (s == NATS_NO_RESPONDERS)
                return unexpected(errc::no_responders, "[courier.bridge.nats.no_responders] nobody subscribes to '" + m.topic + "'");
            if (s == NATS_TIMEOUT)
                return unexpected(errc::timeout, "[courier.bridge.nats.request_timeout] no answer on '" + m.topic + "' within " +
                                                     courier::detail::millis_text(timeout));
            return unexpected(nats_failure(s, "request").error());
        }
        inbound_message out = detail::nats_copy(reply);
        natsMsg_Destroy(reply);
        return out;
    }

    /// Counters (the driving thread's view).
    nats_stats stats() const {
        nats_stats s = stats_;
        std::lock_guard lock(shared_->mutex);
        s.duplicates = shared_->duplicates;
        s.dropped = shared_->dropped + cnats_dropped_;
        for (auto* sub : subs_) {
            int64_t d = 0;
            if (natsSubscription_GetDropped(sub, &d) == NATS_OK) s.dropped += static_cast<std::uint64_t>(d);
        }
        return s;
    }

private:
    /// The JetStream durable of `group` on `subject`: `<group>_<subject>` with the characters a
    /// durable name may not hold replaced (`billing` on `order.*.v1` -> `billing_order_-_v1`).
    static std::string durable_name(const std::string& group, const std::string& subject) {
        std::string out = group + "_" + subject;
        for (char& c : out) {
            if (c == '.') c = '_';
            else if (c == '*') c = '-';
            else if (c == '>') c = '+';
        }
        return out;
    }

    static bool same_spec(const ingest_spec& a, const ingest_spec& b) {
        return a.topic == b.topic && a.group == b.group && a.consumer == b.consumer && a.from_beginning == b.from_beginning;
    }

    result<void> nats_failure(natsStatus s, const char* what) {
        std::string text = detail::nats_status_text(s, nc_);
        if (s == NATS_MAX_PAYLOAD)
            return unexpected(errc::limit_exceeded, "[courier.bridge.nats.too_large] " + std::string(what) + ": " + text);
        if (s == NATS_CONNECTION_CLOSED || s == NATS_CONNECTION_DISCONNECTED || s == NATS_STALE_CONNECTION)
            return unexpected(errc::closed, "[courier.bridge.nats.disconnected] " + std::string(what) + ": " + text);
        return unexpected(detail::nats_errc(s), "[courier.bridge.nats.io] " + std::string(what) + ": " + text);
    }

    result<void> check_subject(const std::string& subject) const {
        bool ok = !subject.empty() && subject.front() != '.' && subject.back() != '.' && subject.find("..") == std::string::npos;
        for (char c : subject) {
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '*' || c == '>') ok = false;
        }
        if (!ok) return unexpected(errc::invalid_argument, "[courier.bridge.nats.subject] '" + subject + "' is not a NATS subject to publish to");
        return {};
    }

    static bool header_text_ok(std::string_view s, bool key) {
        if (s.empty() && key) return false;
        for (char c : s) {
            if (c == '\r' || c == '\n') return false;
            if (key && (c == ':' || c == ' ' || c == '\t')) return false;
        }
        return true;
    }

    result<void> set_headers(natsMsg* msg, const wire_message& m) {
        auto add = [&](const std::string& k, const std::string& v, bool replace) -> result<void> {
            if (!header_text_ok(k, true) || !header_text_ok(v, false))
                return unexpected(errc::invalid_argument, "[courier.bridge.nats.header] header '" + k +
                                                              "' cannot travel as a NATS header (':' or white space in the name, or a line break)");
            natsStatus s = replace ? natsMsgHeader_Set(msg, k.c_str(), v.c_str()) : natsMsgHeader_Add(msg, k.c_str(), v.c_str());
            if (s != NATS_OK) return nats_failure(s, "header");
            return {};
        };
        bool has_id = false, has_type = false, has_key = false;
        for (auto& [k, v] : m.headers) {
            if (k == "nats-reply-to") continue;  // inbound information only
            if (auto r = add(k, v, false); !r) return r;
            has_id |= k == detail::header_event_id;  // (a view: the length is compared first)
            has_type |= k == detail::header_event_type;
            has_key |= k == detail::header_key;
        }
        if (!m.event_id.empty()) {
            if (auto r = add("Nats-Msg-Id", m.event_id, true); !r) return r;
            if (!has_id) {
                if (auto r = add("courier-event-id", m.event_id, true); !r) return r;
            }
        }
        if (!has_type && !m.event_type.empty()) {
            if (auto r = add("courier-event-type", m.event_type, true); !r) return r;
        }
        if (!has_key && !m.key.empty()) {
            if (auto r = add("courier-key", m.key, true); !r) return r;
        }
        return {};
    }

    /// JetStream: makes the stream capture `subject`'s domain (`order.created.v1` -> `order.>`),
    /// creating or widening it. `{}`: only creates it (with `stream_subjects` when given).
    result<void> ensure_stream(const std::string& subject) {
        std::string wanted;
        if (options_.stream_subjects.empty() && !subject.empty()) {
            auto dot = subject.find('.');
            std::string domain = subject.substr(0, dot);
            if (domain == "*" || domain == ">" || domain == "#") {
                if (covered_.empty())
                    return unexpected(errc::invalid_pattern, "[courier.bridge.nats.stream_subjects] '" + subject +
                                                                 "' starts with a wildcard; list the stream's subjects in "
                                                                 "nats_options::stream_subjects or publish first");
                return {};
            }
            wanted = dot == std::string::npos ? domain : domain + ".>";
            if (covered_.count(wanted) != 0) return {};
        } else if (stream_ready_) {
            return {};
        }
        jsStreamInfo* si = nullptr;
        jsErrCode jerr = static_cast<jsErrCode>(0);
        natsStatus s = js_GetStreamInfo(&si, js_, options_.stream.c_str(), nullptr, &jerr);
        std::vector<std::string> subjects = options_.stream_subjects;
        bool exists = s == NATS_OK && si != nullptr;
        if (exists) {
            if (options_.stream_subjects.empty()) {
                for (int i = 0; i < si->Config->SubjectsLen; ++i) subjects.emplace_back(si->Config->Subjects[i]);
            }
            jsStreamInfo_Destroy(si);
            si = nullptr;
        } else if (s != NATS_NOT_FOUND) {
            return unexpected(errc::io_error, "[courier.bridge.nats.stream] cannot read stream '" + options_.stream +
                                                  "' (is the server running with -js?): " + detail::nats_status_text(s, nc_));
        }
        bool changed = !exists;
        if (!wanted.empty() && std::find(subjects.begin(), subjects.end(), wanted) == subjects.end()) {
            subjects.push_back(wanted);
            changed = true;
        }
        if (subjects.empty()) {
            // Nothing to capture yet: created when the first domain shows up.
            return {};
        }
        if (changed) {
            std::vector<const char*> raw;
            for (auto& x : subjects) raw.push_back(x.c_str());
            jsStreamConfig cfg;
            jsStreamConfig_Init(&cfg);
            cfg.Name = options_.stream.c_str();
            cfg.Subjects = raw.data();
            cfg.SubjectsLen = static_cast<int>(raw.size());
            cfg.Storage = options_.memory_storage ? js_MemoryStorage : js_FileStorage;
            cfg.Duplicates = std::chrono::duration_cast<std::chrono::nanoseconds>(options_.duplicate_window).count();
            cfg.MaxMsgSize = static_cast<std::int32_t>(std::min<std::size_t>(options_.max_message_bytes, 0x7fffffff));
            s = exists ? js_UpdateStream(&si, js_, &cfg, nullptr, &jerr) : js_AddStream(&si, js_, &cfg, nullptr, &jerr);
            if (si != nullptr) jsStreamInfo_Destroy(si);
            if (s != NATS_OK) {
                auto text = detail::nats_status_text(s, nc_);
                return unexpected(errc::io_error, "[courier.bridge.nats.stream] cannot " + std::string(exists ? "update" : "create") +
                                                      " stream '" + options_.stream + "': " + text +
                                                      (jerr != 0 ? " (JetStream error " + std::to_string(jerr) + ")" : ""));
            }
        }
        stream_ready_ = true;
        for (auto& x : subjects) covered_.insert(x);
        return {};
    }

    result<void> settle(const delivery_tag& tag, const char* verb) {
        if (nc_ == nullptr || !connected())
            return unexpected(errc::closed, "[courier.bridge.nats.not_connected] cannot settle a delivery while not connected");
        natsStatus s = natsConnection_PublishString(nc_, tag.id.c_str(), verb);
        if (s != NATS_OK) return nats_failure(s, "ack");
        return {};
    }

    void fail_pending(const std::function<void(publish_confirm)>& on_confirm, const char* why) {
        std::vector<std::uint64_t> seqs;
        {
            std::lock_guard lock(shared_->mutex);
            for (auto& [msg, seq] : shared_->pending_acks) seqs.push_back(seq);
            shared_->pending_acks.clear();
        }
        std::sort(seqs.begin(), seqs.end());
        for (auto seq : seqs) {
            publish_confirm c;
            c.sequence = seq;
            c.outcome = unexpected(errc::io_error, std::string("[courier.bridge.nats.disconnected] ") + why);
            ++stats_.failed;
            on_confirm(std::move(c));
        }
    }

    void drop_connection() noexcept {
        if (id_ != 0) {
            // Late callbacks of this connection find nothing from here on.
            detail::nats_registry::instance().remove(id_);
            id_ = 0;
        }
        for (auto* sub : subs_) {
            int64_t d = 0;
            if (natsSubscription_GetDropped(sub, &d) == NATS_OK) cnats_dropped_ += static_cast<std::uint64_t>(d);
            natsSubscription_Destroy(sub);
        }
        subs_.clear();
        if (js_ != nullptr) {
            jsCtx_Destroy(js_);
            js_ = nullptr;
        }
        if (nc_ != nullptr) {
            natsConnection_Close(nc_);
            natsConnection_Destroy(nc_);
            nc_ = nullptr;
        }
        stream_ready_ = false;
        covered_.clear();
        {
            // JetStream publishes awaiting an ack: the bridge re-publishes them after connect
            // (the stream's dedup window drops the copies that had been stored).
            std::lock_guard lock(shared_->mutex);
            shared_->pending_acks.clear();
        }
        // Core publishes never flushed: their fate is unknown, the bridge re-sends them after
        // the next connect (its outbox still holds them; the receiving side dedups).
        unflushed_.clear();
    }

    nats_options options_;
    capabilities caps_;
    std::shared_ptr<detail::nats_shared> shared_;
    natsConnection* nc_ = nullptr;
    jsCtx* js_ = nullptr;
    std::uintptr_t id_ = 0;
    std::vector<natsSubscription*> subs_;
    std::vector<ingest_spec> specs_;
    std::vector<std::uint64_t> unflushed_;
    std::set<std::string> covered_;
    bool stream_ready_ = false;
    std::uint64_t cnats_dropped_ = 0;
    nats_stats stats_;
};

inline result<nats_options> nats_options::from_url(const broker_url& url) {
    if (url.scheme != broker_scheme::nats)
        return unexpected(errc::invalid_argument, "[courier.bridge.nats.url] '" + url.redacted() + "' is not a nats:// URL");
    nats_options o;
    o.url.clear();
    for (auto& ep : url.endpoints) {
        if (!o.url.empty()) o.url += ',';
        o.url += "nats://";
        if (!url.user.empty() || !url.password.empty()) o.url += url.user + (url.password.empty() ? "" : ":" + url.password) + "@";
        o.url += ep.host + ":" + std::to_string(ep.port ? ep.port : default_port(broker_scheme::nats));
    }
    for (auto& [k, v] : url.params) {
        if (k != "jetstream" && k != "stream" && k != "name" && k != "memory" && k != "max_message_bytes")
            return unexpected(errc::invalid_argument, "[courier.bridge.nats.url] unknown parameter '" + k + "' in '" + url.redacted() +
                                                          "' (known: jetstream, stream, name, memory, max_message_bytes)");
    }
    auto js = url.param_bool("jetstream", false);
    if (!js) return unexpected(js.error());
    o.jetstream = *js;
    auto mem = url.param_bool("memory", false);
    if (!mem) return unexpected(mem.error());
    o.memory_storage = *mem;
    auto max = url.param_uint("max_message_bytes", o.max_message_bytes);
    if (!max) return unexpected(max.error());
    o.max_message_bytes = static_cast<std::size_t>(*max);
    o.stream = url.param("stream", o.stream);
    o.name = url.param("name", o.name);
    return o;
}

namespace detail {
inline const bool nats_registered = register_transport(broker_scheme::nats, [](const broker_url& url) -> result<std::unique_ptr<transport>> {
    auto o = nats_options::from_url(url);
    if (!o) return unexpected(o.error());
    return std::unique_ptr<transport>(std::make_unique<nats_transport>(std::move(*o)));
});
}  // namespace detail

}  // namespace bridge
COURIER_END_NAMESPACE
