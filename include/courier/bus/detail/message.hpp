// The in-flight form of a published event: the typed object itself (moved, never serialized),
// a small header (timestamp, lazily made event id, causation, shared trace data) and a JSON
// cache filled at most once, only when something needs bytes. Refcounted so fan-out shares one
// allocation; queues carry a pointer to it, never the object.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/detail/cpu_relax.hpp>
#include <courier/core/uuid.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/event_traits.hpp>
#include <courier/event/json_fields.hpp>
#include <courier/bus/detail/message_pool.hpp>
#include <courier/bus/reply_address.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>

COURIER_BEGIN_NAMESPACE
namespace detail {

/// Counts every JSON serialization the bus performs, so a test can prove the typed path never does.
inline std::atomic<std::uint64_t>& json_encode_counter() noexcept {
    static std::atomic<std::uint64_t> n{0};
    return n;
}

/// Trace data shared (immutably) by every event of one causal chain.
struct trace_data {
    std::string trace_id;
    std::string correlation_id;
    std::string producer;  // empty: the bus's default producer
    std::map<std::string, std::string> headers;
};

/// A dense per-process index for each typed event type, so a publish finds its route by
/// indexing a vector instead of hashing a name.
inline std::size_t next_type_index() noexcept {
    static std::atomic<std::size_t> n{0};
    return n.fetch_add(1, std::memory_order_relaxed);
}
template <class T>
std::size_t type_index_of() noexcept {
    static const std::size_t index = next_type_index();
    return index;
}
inline constexpr std::size_t no_type = static_cast<std::size_t>(-1);

struct message_base;

/// Per-type operations, one static table per event type (no virtual call on the hot path;
/// these run only when JSON or destruction is needed).
struct message_ops {
    void (*destroy)(message_base*) noexcept;
    nlohmann::json (*data_to_json)(const message_base&);  ///< typed data only
    /// The data where it already is JSON (an envelope's), read in place; null for typed data.
    /// (Throws only when it must parse text it kept, and memory runs out.)
    const nlohmann::json* (*data_in_place)(const message_base&);
    std::size_t type_index;
    const std::type_info* type;
    std::string_view event_type;  // empty for envelope messages, which carry their own
    /// Appends the data's JSON text without a document (types declared with
    /// COURIER_JSON_FIELDS); null: use data_json().
    void (*append_data_json)(const message_base&, std::string&);
};

/// What only some messages carry: an ordering key, a cause, trace data. Kept out of line so
/// that a plain typed event in flight stays one cache line (what crosses between cores).
struct message_extras : pooled_allocation<message_extras> {  // set by the publisher, freed by a worker
    std::string key;
    uuid causation_id{};
    std::shared_ptr<const trace_data> trace;
    reply_address reply_to;  // requests only (see rpc)
    // 0: `trace` is final. 1: it is made on first read, with the causation id as correlation
    // (what an event caused by a root event, or a reply to a root request, carries): most such
    // messages are never asked, and making it costs an allocation and a UUID format. 2: being made.
    std::atomic<std::uint8_t> trace_state{0};
};

struct message_base {
    // Field order packs the header into 56 bytes, so a small event fits one cache line.
    std::atomic<std::uint32_t> refs{1};
    bool heap = false;  // stack messages (inline-only publish) are never destroyed through refs

private:
    mutable std::atomic<std::uint8_t> id_state_{0};
    mutable std::atomic<std::uint8_t> json_state_{0};

public:
    const message_ops* ops = nullptr;
    time_point timestamp{};

    /// `order.created.v1`: from the type's table, or from the envelope of a dynamic event.
    std::string_view event_type() const noexcept;

    /// The event id, made on first use (UUID v7 from the publish timestamp) so an event that
    /// nobody asks about never pays for one; every reader sees the same id.
    const uuid& event_id() const noexcept {
        auto s = id_state_.load(std::memory_order_acquire);
        if (COURIER_LIKELY(s == 2)) return id_;
        std::uint8_t expected = 0;
        if (id_state_.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
            id_ = make_uuid_v7(timestamp);
            id_state_.store(2, std::memory_order_release);
        } else {
            while (id_state_.load(std::memory_order_acquire) != 2) {
            }
        }
        return id_;
    }
    void set_event_id(const uuid& id) noexcept {
        id_ = id;
        id_state_.store(2, std::memory_order_release);
    }
    bool has_event_id() const noexcept { return id_state_.load(std::memory_order_acquire) == 2; }

    /// The event's data as JSON, serialized at most once per message and shared by every reader.
    const nlohmann::json& data_json() const {
        // An envelope's data is JSON already, and a published message is not changed: no copy
        // (a DOM copy per delivery to a typed subscriber was 3+ allocations on a bridge's ingest).
        if (ops->data_in_place) return *ops->data_in_place(*this);
        auto s = json_state_.load(std::memory_order_acquire);
        if (COURIER_LIKELY(s == 2)) return *json_;
        std::uint8_t expected = 0;
        if (json_state_.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
            try {
                json_encode_counter().fetch_add(1, std::memory_order_relaxed);
                json_ = std::make_unique<nlohmann::json>(ops->data_to_json(*this));
            } catch (...) {
                json_state_.store(0, std::memory_order_release);  // let the next reader try (and fail) again
                throw;
            }
            json_state_.store(2, std::memory_order_release);
        } else {
            while ((s = json_state_.load(std::memory_order_acquire)) == 1) {
            }
            if (s != 2) return data_json();
        }
        return *json_;
    }

    /// The data's JSON text, where the message kept the text it arrived as (an envelope a
    /// bridge ingested: valid JSON, as a broker delivered it); empty otherwise.
    std::string_view data_text() const noexcept;

    std::size_t type_index() const noexcept { return ops->type_index; }
    /// True when this message carries a T in-process (one pointer comparison).
    template <class T>
    bool holds() const noexcept;

    std::string_view key() const noexcept { return extras_ ? std::string_view(extras_->key) : std::string_view{}; }
    const uuid& causation_id() const noexcept {
        static const uuid nil{};
        return extras_ ? extras_->causation_id : nil;
    }
    const std::shared_ptr<const trace_data>& trace() const noexcept {
        static const std::shared_ptr<const trace_data> none;
        if (!extras_) return none;
        if (COURIER_UNLIKELY(extras_->trace_state.load(std::memory_order_acquire) != 0)) make_causation_trace();
        return extras_->trace;
    }
    /// Where a reply goes: set at publish, or read from an envelope's `courier-reply` header.
    reply_address reply_to() const noexcept { return extras_ ? extras_->reply_to : reply_address{}; }
    void set_key(std::string k) { extras().key = std::move(k); }
    void set_reply_to(reply_address r) { extras().reply_to = r; }
    void set_causation_id(const uuid& id) { extras().causation_id = id; }
    void set_trace(std::shared_ptr<const trace_data> t) {
        auto& x = extras();
        x.trace = std::move(t);
        x.trace_state.store(0, std::memory_order_relaxed);
    }
    /// The trace is {correlation_id = causation id}, made when first read (the causation id must
    /// be set before the message is published).
    void set_trace_from_causation() {
        auto& x = extras();
        x.trace.reset();
        x.trace_state.store(1, std::memory_order_relaxed);
    }

    /// The whole envelope (makes the id and the JSON if not made yet).
    envelope to_envelope(std::string_view default_producer) const {
        envelope e;
        e.event_type = std::string(event_type());
        e.event_id = event_id();
        e.timestamp = timestamp;
        e.version = version_of(event_type());
        e.data = data_json();
        const auto& t = trace();
        if (t) {
            e.metadata.trace_id = t->trace_id;
            e.metadata.correlation_id = t->correlation_id;
            e.metadata.producer = t->producer.empty() ? std::string(default_producer) : t->producer;
            e.headers = t->headers;
        } else {
            e.metadata.producer = std::string(default_producer);
        }
        if (!causation_id().is_nil()) e.metadata.causation_id = causation_id().to_string();
        if (!key().empty()) e.headers["courier-key"] = std::string(key());
        if (extras_ && extras_->reply_to) e.headers[std::string(reply_address::header)] = extras_->reply_to.to_string();
        return e;
    }

    static int version_of(std::string_view name) noexcept {
        auto dot = name.rfind('.');
        if (dot == std::string_view::npos || dot + 2 > name.size() || name[dot + 1] != 'v') return 0;
        int v = 0;
        for (auto c : name.substr(dot + 2)) {
            if (c < '0' || c > '9') return 0;
            v = v * 10 + (c - '0');
        }
        return v;
    }

protected:
    message_base() = default;
    ~message_base() = default;

private:
    // Once per message, by whichever reader comes first; the others wait for it (as for the id).
    void make_causation_trace() const noexcept {
        auto& x = *extras_;
        std::uint8_t expected = 1;
        if (x.trace_state.compare_exchange_strong(expected, 2, std::memory_order_acq_rel)) {
            try {
                auto t = std::make_shared<trace_data>();
                t->correlation_id = x.causation_id.to_string();
                x.trace = std::move(t);
            } catch (...) {
                // Out of memory: the message goes on without a correlation id rather than not at all.
            }
            x.trace_state.store(0, std::memory_order_release);
        } else {
            while (x.trace_state.load(std::memory_order_acquire) != 0) cpu_relax();
        }
    }

    message_extras& extras() {
        if (!extras_) extras_ = std::make_unique<message_extras>();
        return *extras_;
    }

    mutable uuid id_{};
    std::unique_ptr<message_extras> extras_;
    // Allocated on first use: most messages never need JSON.
    mutable std::unique_ptr<nlohmann::json> json_;
};

inline void retain(message_base* m, std::uint32_t n = 1) noexcept {
    if (m->heap && n) m->refs.fetch_add(n, std::memory_order_relaxed);
}
inline void release(message_base* m) noexcept {
    if (!m->heap) return;
    // The last holder (the common case: one subscriber) frees without a read-modify-write.
    if (m->refs.load(std::memory_order_acquire) == 1 || m->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
        m->ops->destroy(m);
}

static_assert(sizeof(message_base) <= 56, "the in-flight header should leave room for a small event in one cache line");

/// A typed event in flight.
template <class T>
struct typed_message final : message_base, pooled_allocation<typed_message<T>> {  // published by one thread, freed by another
    T value;

    template <class U>
    explicit typed_message(U&& v) : value(std::forward<U>(v)) {
        ops = &table;
    }

    static void destroy(message_base* m) noexcept { delete static_cast<typed_message*>(m); }
    static nlohmann::json to_json(const message_base& m) {
        return nlohmann::json(static_cast<const typed_message&>(m).value);
    }
    static void append_json(const message_base& m, std::string& out) {
        if constexpr (has_json_writer<T>) T::courier_append_json(out, static_cast<const typed_message&>(m).value);
    }

    static inline const message_ops table{&typed_message::destroy, &typed_message::to_json, nullptr, type_index_of<T>(),
                                          &typeid(T), event_type_of<T>().str(),
                                          has_json_writer<T> ? &typed_message::append_json : nullptr};
};

/// Makes the document of data kept as text (see envelope_message).
using data_text_parser = nlohmann::json (*)(std::string_view);

/// A bridge's ingest learns that the bus settled an event through `settled(owner, event_id)`
/// (as envelope_message::on_settled): a function and a shared owner rather than a
/// std::function, whose buffer is too small for an owner and an event id (an allocation per
/// ingested message).
struct settle_hook {
    void (*settled)(void* owner, const uuid& event_id) noexcept = nullptr;
    std::shared_ptr<void> owner;
};

/// A dynamic event published as an envelope: the data is JSON already, or JSON text that is
/// parsed when a reader first needs the document (a bridge's ingest: its typed subscribers read
/// the text, and most events never need the document at all).
struct envelope_message final : message_base, pooled_allocation<envelope_message> {  // made by a bridge's thread, freed by a worker
    envelope env;  // env.data: see data_in_place before reading it

    explicit envelope_message(envelope&& e) : envelope_message(std::move(e), {}, nullptr) {}
    /// `text` (when not empty, with its `parser`): the data, checked JSON; env.data is ignored.
    envelope_message(envelope&& e, std::string_view text, data_text_parser parser) : env(std::move(e)), parse_data_(parser) {
        if (!text.empty() && parse_data_) {
            keep_text(text);
            data_state_.store(data_unparsed, std::memory_order_relaxed);
        }
        ops = &table;
        timestamp = env.timestamp;
        if (!env.event_id.is_nil()) set_event_id(env.event_id);
        if (!env.metadata.causation_id.empty()) {
            if (auto c = uuid::parse(env.metadata.causation_id)) set_causation_id(*c);
        }
        if (!env.headers.empty()) take_routing_headers();
        if (!env.metadata.trace_id.empty() || !env.metadata.correlation_id.empty() ||
            !env.metadata.producer.empty() || !env.headers.empty()) {
            set_trace(shared_trace_of(env));
        }
    }

    // The key and the reply address travel as headers; in flight they are the message's own
    // (a map look-up builds a std::string key: skipped when there are no headers at all).
    void take_routing_headers() {
        if (auto k = env.headers.find("courier-key"); k != env.headers.end()) {
            set_key(k->second);
            env.headers.erase(k);
        }
        if (auto r = env.headers.find(std::string(reply_address::header)); r != env.headers.end()) {
            if (auto a = reply_address::parse(r->second)) {
                set_reply_to(*a);
                env.headers.erase(r);
            }
        }
    }

    envelope_message(const envelope_message&) = delete;
    envelope_message& operator=(const envelope_message&) = delete;
    ~envelope_message() {
        if (settle.settled) settle.settled(settle.owner.get(), env.event_id);
        if (on_settled) {
            try {
                on_settled();
            } catch (...) {
                // A settle callback must not throw (see event_bus::publish); never from a destructor.
            }
        }
        clear_flat(env.data);
    }

    /// Empties an object or array whose members are all scalars. nlohmann's destructor moves a
    /// container's members to a heap-allocated stack first (so that deep documents do not
    /// recurse): one more allocation for every event whose data is one flat object, which an
    /// ingest frees once per message. Emptied here, the document is freed without it.
    static void clear_flat(nlohmann::json& j) noexcept {
        if (j.is_object()) {
            auto& members = j.get_ref<nlohmann::json::object_t&>();
            for (const auto& m : members)
                if (m.second.is_structured()) return;
            members.clear();
        } else if (j.is_array()) {
            auto& items = j.get_ref<nlohmann::json::array_t&>();
            for (const auto& v : items)
                if (v.is_structured()) return;
            items.clear();
        }
    }

    /// Runs once, when the last reference goes: every subscription that accepted the message
    /// has handled it, dead-lettered it or dropped it (see event_bus::publish(envelope, f)).
    /// Empty for every other publish, so a plain envelope pays one empty check at its end.
    std::function<void()> on_settled;
    /// As on_settled, for a bridge's ingest (see settle_hook).
    settle_hook settle;

    static void destroy(message_base* m) noexcept { delete static_cast<envelope_message*>(m); }

    // An ingested stream mostly repeats one producer and no trace (a bridge's input): the trace
    // data is immutable and shared, so a run of equal ones shares the thread's last one instead
    // of an allocation each.
    static std::shared_ptr<const trace_data> shared_trace_of(const envelope& e) {
        thread_local std::shared_ptr<const trace_data> last;
        if (last && e.headers.empty() && last->headers.empty() && last->producer == e.metadata.producer &&
            last->trace_id == e.metadata.trace_id && last->correlation_id == e.metadata.correlation_id)
            return last;
        auto t = std::make_shared<trace_data>();
        t->trace_id = e.metadata.trace_id;
        t->correlation_id = e.metadata.correlation_id;
        t->producer = e.metadata.producer;
        t->headers = e.headers;
        if (e.headers.empty()) last = t;
        return t;
    }
    static const nlohmann::json* data_in_place(const message_base& m) {
        const auto& e = static_cast<const envelope_message&>(m);
        if (COURIER_LIKELY(e.data_state_.load(std::memory_order_acquire) == data_ready)) return &e.env.data;
        return e.parse_data_text();
    }
    std::string_view text() const noexcept {
        return text_size_ <= inline_text ? std::string_view(text_inline_, text_size_) : std::string_view(text_heap_);
    }
    // No data_to_json: data_json() reads an envelope's data in place.
    static inline const message_ops table{&envelope_message::destroy, nullptr, &envelope_message::data_in_place, no_type,
                                          &typeid(envelope), {}, nullptr};

private:
    static constexpr std::uint8_t data_ready = 0, data_unparsed = 1, data_parsing = 2;

    // Once, by the first reader that needs the document; the others wait for it (as for the id).
    const nlohmann::json* parse_data_text() const {
        std::uint8_t expected = data_unparsed;
        if (data_state_.compare_exchange_strong(expected, data_parsing, std::memory_order_acq_rel)) {
            try {
                // The message is shared but not changed once published: this is the one write.
                const_cast<nlohmann::json&>(env.data) = parse_data_(text());
            } catch (...) {
                data_state_.store(data_unparsed, std::memory_order_release);  // the next reader tries again
                throw;
            }
            data_state_.store(data_ready, std::memory_order_release);
        } else {
            while (data_state_.load(std::memory_order_acquire) == data_parsing) cpu_relax();
            if (data_state_.load(std::memory_order_acquire) != data_ready) return parse_data_text();
        }
        return &env.data;
    }

    // Most events' data is short: kept in the message (which is pooled), it costs no allocation.
    void keep_text(std::string_view text) {
        text_size_ = text.size();
        if (text.size() <= inline_text) std::memcpy(text_inline_, text.data(), text.size());
        else text_heap_.assign(text);
    }

    static constexpr std::size_t inline_text = 64;
    std::size_t text_size_ = 0;
    char text_inline_[inline_text];
    std::string text_heap_;
    data_text_parser parse_data_ = nullptr;
    mutable std::atomic<std::uint8_t> data_state_{data_ready};
};

inline std::string_view message_base::data_text() const noexcept {
    if (ops != &envelope_message::table) return {};
    return static_cast<const envelope_message*>(this)->text();
}

/// The data as T (nlohmann's from_json): read straight from the text where the message kept
/// it and T has a COURIER_JSON_FIELDS reader, from the document otherwise.
template <class T>
T read_data_as(const message_base& m) {
    if constexpr (has_json_reader<T>) {
        if (const auto text = m.data_text(); !text.empty()) {
            T v{};
            if (read_json_fields(text, v)) return v;
        }
    }
    return m.data_json().template get<T>();
}

template <class T>
bool message_base::holds() const noexcept {
    return ops == &typed_message<T>::table;
}

inline std::string_view message_base::event_type() const noexcept {
    if (COURIER_LIKELY(!ops->event_type.empty())) return ops->event_type;
    return static_cast<const envelope_message*>(this)->env.event_type;
}

/// Owning pointer for a heap message (one reference).
struct message_ref {
    message_base* p = nullptr;
    message_ref() = default;
    explicit message_ref(message_base* m) noexcept : p(m) {}
    message_ref(const message_ref& o) noexcept : p(o.p) { if (p) retain(p); }
    message_ref(message_ref&& o) noexcept : p(std::exchange(o.p, nullptr)) {}
    message_ref& operator=(message_ref o) noexcept { std::swap(p, o.p); return *this; }
    ~message_ref() { if (p) release(p); }
    message_base* get() const noexcept { return p; }
    message_base* operator->() const noexcept { return p; }
    message_base* detach() noexcept { return std::exchange(p, nullptr); }
};

}  // namespace detail
COURIER_END_NAMESPACE
