// The outbound side of a bridge without per-message copies: an event is encoded once, straight
// from the bus's message (the bytes `encode(ctx.to_envelope())` gives, without building the
// envelope), into an `outbound_item` that the outbox and the in-flight window hold; the I/O thread
// shows it to the transport through one reused `wire_message` (no allocation per publish).
// `in_flight_window` replaces a map node per message by a ring indexed by sequence number.
#pragma once

#include <courier/bridge/detail/wire.hpp>
#include <courier/bridge/transport.hpp>
#include <courier/bus/message_context.hpp>
#include <courier/bus/reply_address.hpp>
#include <courier/core/config.hpp>
#include <courier/core/uuid.hpp>
#include <courier/event/detail/json_text.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/event/json_fields.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge::detail {

/// One outbound message as the outbox and the in-flight window hold it. The event id and type
/// are not copied: the id is 16 bytes, the type is read back from the payload (it is the
/// envelope's first field); the topic is the route's, owned by the bridge.
struct outbound_item {
    std::string payload;                 ///< the envelope as JSON (the bytes `encode` gives)
    std::string key;                     ///< ordering key ("" = none)
    const std::string* topic = nullptr;  ///< the route's topic (outlives the item); null: the event type
    uuid event_id{};
    std::uint32_t type_offset = 0;  ///< event_type is payload.substr(type_offset, type_size) ...
    std::uint32_t type_size = 0;
    std::string type_fallback;  ///< ... unless the type needed JSON escapes (never for a valid name)

    std::string_view event_type() const noexcept {
        if (!type_fallback.empty()) return type_fallback;
        return std::string_view(payload).substr(type_offset, type_size);
    }
    std::string_view destination() const noexcept { return topic != nullptr && !topic->empty() ? std::string_view(*topic) : event_type(); }
};

/// Appends to a string through a buffer on the stack: an envelope is a dozen short pieces (keys,
/// ids, times, plain strings), and a string append per piece was a fifth of an encode. Pieces
/// are copied into the buffer and appended one buffer-full at a time; `flush()` before touching
/// the string directly, and at the end.
class batched_text {
public:
    static constexpr std::size_t capacity = 256;
    explicit batched_text(std::string& out) noexcept : out_(out) {}
    batched_text(const batched_text&) = delete;
    batched_text& operator=(const batched_text&) = delete;

    void put(std::string_view text) {
        if (text.size() > capacity - n_) {
            flush();
            if (text.size() > capacity) {
                out_.append(text);
                return;
            }
        }
        if (!text.empty()) std::memcpy(buf_ + n_, text.data(), text.size());  // (an empty view may hold null)
        n_ += text.size();
    }
    void put(char c) {
        *room(1) = c;
        ++n_;
    }
    /// `text` as a JSON string (escaped by append_json_string when it needs escapes).
    void put_json_string(std::string_view text) {
        if (text.size() + 2 <= capacity && courier::detail::json_verbatim(text)) {
            char* p = room(text.size() + 2);
            p[0] = '"';
            if (!text.empty()) std::memcpy(p + 1, text.data(), text.size());
            p[text.size() + 1] = '"';
            n_ += text.size() + 2;
            return;
        }
        flush();
        courier::detail::append_json_string(out_, text);
    }
    /// Room for `k` (at most `capacity`) characters: write them, then `commit` their end.
    char* room(std::size_t k) {
        if (k > capacity - n_) flush();
        return buf_ + n_;
    }
    void commit(const char* end) noexcept { n_ = static_cast<std::size_t>(end - buf_); }
    /// The length of the text so far, flushed or not.
    std::size_t size() const noexcept { return out_.size() + n_; }
    void flush() {
        out_.append(buf_, n_);
        n_ = 0;
    }

private:
    std::string& out_;
    char buf_[capacity];
    std::size_t n_ = 0;
};

/// Encodes the message a handler sees into `out`: the same bytes as
/// `encode(ctx.to_envelope())`, with the data serialized once (the bus caches it per message)
/// and no envelope, header map or metadata strings built on the way.
inline void encode_outbound(outbound_item& out, const message_context& ctx) {
    const auto& m = ctx.message();
    const std::string_view type = m.event_type();
    std::string& s = out.payload;
    s.clear();
    // A type declared with COURIER_JSON_FIELDS writes its data's text itself (the same bytes,
    // no document); any other goes through the message's cached document.
    const auto append_data = m.ops->append_data_json;
    std::string data_text;
    if (append_data == nullptr) {
        const auto& data = m.data_json();
        data_text = data.is_discarded() ? std::string("null") : data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    const std::string_view producer = ctx.producer(), trace_id = ctx.trace_id(), correlation_id = ctx.correlation_id();
    s.reserve(232 + type.size() + (append_data ? 64 : data_text.size()) + producer.size() + trace_id.size() +
              correlation_id.size() + m.key().size());
    batched_text w(s);
    w.put("{\"event_type\":");
    if (courier::detail::json_verbatim(type)) {
        w.put('"');
        out.type_offset = static_cast<std::uint32_t>(w.size());
        out.type_size = static_cast<std::uint32_t>(type.size());
        w.put(type);
        w.put('"');
        out.type_fallback.clear();
    } else {
        w.put_json_string(type);
        out.type_fallback.assign(type);
    }
    out.event_id = m.event_id();
    w.put(",\"event_id\":\"");
    w.commit(out.event_id.to_chars(w.room(uuid::text_size)));
    w.put("\",\"timestamp\":\"");
    w.commit(courier::format_rfc3339_to(w.room(courier::rfc3339_size), m.timestamp));
    w.put("\",\"version\":");
    char* version = w.room(16);
    w.commit(std::to_chars(version, version + 16, courier::detail::message_base::version_of(type)).ptr);
    w.put(",\"data\":");
    w.flush();
    if (append_data != nullptr) append_data(m, s);
    else s += data_text;
    w.put(",\"metadata\":{\"producer\":");
    w.put_json_string(producer);
    w.put(",\"trace_id\":");
    w.put_json_string(trace_id);
    w.put(",\"correlation_id\":");
    w.put_json_string(correlation_id);
    w.put(",\"causation_id\":");
    if (m.causation_id().is_nil()) {
        w.put("\"\"");
    } else {
        w.put('"');
        w.commit(m.causation_id().to_chars(w.room(uuid::text_size)));
        w.put('"');
    }
    w.put("},\"headers\":{");
    const auto& trace = m.trace();
    const reply_address reply = m.reply_to();
    out.key.assign(m.key());  // to_wire's key: the envelope's courier-key header
    if ((!trace || trace->headers.empty()) && !reply) {
        // The common case: no free headers, at most the key.
        if (!out.key.empty()) {
            w.put_json_string(header_key);
            w.put(':');
            w.put_json_string(out.key);
        }
    } else {
        // As to_envelope: the trace's headers, then the key and the reply address over them,
        // written in the map's (sorted) order.
        std::map<std::string, std::string> headers;
        if (trace) headers = trace->headers;
        if (!out.key.empty()) headers[std::string(header_key)] = out.key;
        if (reply) headers[std::string(reply_address::header)] = reply.to_string();
        if (auto k = headers.find(std::string(header_key)); k != headers.end()) out.key = k->second;
        bool first = true;
        for (const auto& [k, v] : headers) {
            if (!first) w.put(',');
            first = false;
            w.put_json_string(k);
            w.put(':');
            w.put_json_string(v);
        }
    }
    w.put("}}");
    w.flush();
}

/// Shows `item` to a transport through `w`, reusing its strings' capacity (`payload` is swapped
/// in: swap it back after the call with `release_wire`). `w` is lent through here only: the
/// header names are written when the list changes length, and a topic or type that did not
/// change since the last item is not copied again.
inline void lend_wire(wire_message& w, outbound_item& item) {
    const std::string_view type = item.event_type();
    auto assign_changed = [](std::string& to, std::string_view from) {
        if (std::string_view(to) != from) to.assign(from);
    };
    assign_changed(w.topic, item.destination());
    w.key.assign(item.key);
    w.event_id.resize(uuid::text_size);
    item.event_id.to_chars(w.event_id.data());
    assign_changed(w.event_type, type);
    w.payload.swap(item.payload);
    const std::size_t n = item.key.empty() ? 2 : 3;
    if (w.headers.size() != n) {
        w.headers.resize(n);
        w.headers[0].first.assign(header_event_id);
        w.headers[1].first.assign(header_event_type);
        if (n == 3) w.headers[2].first.assign(header_key);
    }
    w.headers[0].second.assign(w.event_id);
    assign_changed(w.headers[1].second, type);
    if (n == 3) w.headers[2].second.assign(item.key);
}
inline void release_wire(wire_message& w, outbound_item& item) noexcept { w.payload.swap(item.payload); }

/// The wire form of `item` as a fresh value (dead letters; the same fields `to_wire` gives).
inline wire_message as_wire(const outbound_item& item) {
    wire_message w;
    w.topic = std::string(item.destination());
    w.key = item.key;
    w.event_id = item.event_id.to_string();
    w.event_type = std::string(item.event_type());
    w.payload = item.payload;
    w.headers.emplace_back(header_event_id, w.event_id);
    w.headers.emplace_back(header_event_type, w.event_type);
    if (!w.key.empty()) w.headers.emplace_back(header_key, w.key);
    return w;
}

/// Messages handed to the transport and not yet confirmed, by sequence number: a ring indexed
/// by `sequence & mask` over the window [first, next), so that add, find and erase are O(1)
/// without a node per message. Confirms may come out of order (Kafka partitions, a refused
/// publish retried): an erased slot in the middle stays until the ones before it go. The ring
/// doubles when the window spans all of it.
///
/// Thread safety: none (the bridge's I/O thread owns it).
class in_flight_window {
public:
    struct item {
        outbound_item msg;
        std::uint32_t attempts = 0;
        bool sent = false;  ///< handed to the transport on the current connection
        bool live = false;
    };

    in_flight_window() : slots_(64) {}

    /// Live (not erased) messages.
    std::size_t size() const noexcept { return live_; }
    bool empty() const noexcept { return live_ == 0; }
    /// The sequence the next `add` gets.
    std::uint64_t next_sequence() const noexcept { return next_; }

    /// Adds `msg` under the next sequence number and returns that number.
    std::uint64_t add(outbound_item&& msg) {
        if (next_ - first_ == slots_.size()) grow();
        item& it = slots_[index(next_)];
        it.msg = std::move(msg);
        it.attempts = 0;
        it.sent = false;
        it.live = true;
        ++live_;
        return next_++;
    }

    item* find(std::uint64_t seq) noexcept {
        if (seq < first_ || seq >= next_) return nullptr;
        item& it = slots_[index(seq)];
        return it.live ? &it : nullptr;
    }

    /// Removes `seq` (it must be live) and frees its bytes.
    void erase(std::uint64_t seq) noexcept {
        item& it = slots_[index(seq)];
        it.live = false;
        it.msg = outbound_item{};
        --live_;
        while (first_ != next_ && !slots_[index(first_)].live) ++first_;
    }

    /// Calls f(sequence, item&) for every live message, oldest first. `f` may erase the one it
    /// is given (not others).
    template <class F>
    void for_each(F&& f) {
        for (std::uint64_t s = first_; s < next_; ++s) {
            item& it = slots_[index(s)];
            if (it.live) f(s, it);
        }
    }

    /// Removes everything.
    void clear() noexcept {
        for (std::uint64_t s = first_; s < next_; ++s) {
            item& it = slots_[index(s)];
            it.live = false;
            it.msg = outbound_item{};
        }
        first_ = next_;
        live_ = 0;
    }

private:
    std::size_t index(std::uint64_t seq) const noexcept { return static_cast<std::size_t>(seq) & (slots_.size() - 1); }

    void grow() {
        std::vector<item> bigger(slots_.size() * 2);
        for (std::uint64_t s = first_; s < next_; ++s) bigger[static_cast<std::size_t>(s) & (bigger.size() - 1)] = std::move(slots_[index(s)]);
        slots_.swap(bigger);
    }

    std::vector<item> slots_;  // size: a power of two
    std::uint64_t first_ = 1;  // oldest sequence still in the window (live, or erased and not yet passed)
    std::uint64_t next_ = 1;
    std::size_t live_ = 0;
};

}  // namespace bridge::detail
COURIER_END_NAMESPACE
