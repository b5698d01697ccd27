// What a handler knows about the message it is handling: the envelope's metadata, the attempt
// number, and (for wildcard subscribers) the data. While a handler runs, its message_context
// is the thread's current context, so events it publishes inherit trace and correlation and
// name the handled event as their cause, with no code in the handler.
#pragma once

#include <courier/bus/detail/message.hpp>
#include <courier/bus/reply_address.hpp>
#include <courier/core/config.hpp>
#include <courier/event/envelope.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

COURIER_BEGIN_NAMESPACE

/// A read-only view of the message being handled.
///
/// Thread safety: valid only during the handler call that received it, in that thread;
/// copy out what you need to keep (or call `to_envelope()`).
class message_context {
public:
    message_context(const detail::message_base& m, std::string_view subscription, std::uint32_t attempt,
                    std::string_view default_producer) noexcept
        : msg_(&m), subscription_(subscription), attempt_(attempt), default_producer_(default_producer) {}

    /// `order.created.v1`.
    std::string_view event_type() const noexcept { return msg_->event_type(); }
    /// The event id (UUID v7). Made on first use if the event did not carry one.
    const uuid& event_id() const noexcept { return msg_->event_id(); }
    time_point timestamp() const noexcept { return msg_->timestamp; }
    std::string_view trace_id() const noexcept {
        return msg_->trace() ? std::string_view(msg_->trace()->trace_id) : std::string_view{};
    }
    std::string_view correlation_id() const noexcept {
        return msg_->trace() ? std::string_view(msg_->trace()->correlation_id) : std::string_view{};
    }
    /// The id of the event whose handler published this one (nil for a root event).
    const uuid& causation_id() const noexcept { return msg_->causation_id(); }
    std::string_view producer() const noexcept {
        const auto& t = msg_->trace();
        return t && !t->producer.empty() ? std::string_view(t->producer) : default_producer_;
    }
    /// The ordering key given at publish, or empty.
    std::string_view key() const noexcept { return msg_->key(); }
    /// A free-form header, or empty.
    std::string_view header(std::string_view name) const noexcept {
        const auto& t = msg_->trace();
        if (!t) return {};
        auto it = t->headers.find(std::string(name));
        return it == t->headers.end() ? std::string_view{} : std::string_view(it->second);
    }
    /// Where the reply to this request goes (false when the publisher expects none).
    reply_address reply_to() const noexcept { return msg_->reply_to(); }
    /// 1 for the first delivery to this subscription, 2 for the first retry, ...
    std::uint32_t attempt() const noexcept { return attempt_; }
    /// The name of the subscription handling the message.
    std::string_view subscription() const noexcept { return subscription_; }

    /// The data as JSON (serialized once per message, shared by every subscriber that asks).
    const nlohmann::json& data() const { return msg_->data_json(); }
    /// The typed event if this message carries a T in-process, else nullptr.
    template <class T>
    const T* get_if() const noexcept {
        if (!msg_->template holds<T>()) return nullptr;
        return &static_cast<const detail::typed_message<T>&>(*msg_).value;
    }
    /// The data converted to T (no conversion when the message carries a T already).
    template <class T>
    T as() const {
        if (auto p = get_if<T>()) return *p;
        return detail::read_data_as<T>(*msg_);
    }
    /// The full envelope (serializes the data if it was not yet).
    envelope to_envelope() const { return msg_->to_envelope(default_producer_); }

    const detail::message_base& message() const noexcept { return *msg_; }

    /// The context of the handler running in this thread, or nullptr outside handlers.
    static const message_context* current() noexcept { return current_ref(); }

private:
    friend class context_scope;
    static const message_context*& current_ref() noexcept {
        thread_local const message_context* current = nullptr;
        return current;
    }

    const detail::message_base* msg_;
    std::string_view subscription_;
    std::uint32_t attempt_;
    std::string_view default_producer_;
};

/// Makes a message_context the thread's current one for its lifetime (restores the previous
/// one after, so nested inline deliveries work).
class context_scope {
public:
    explicit context_scope(const message_context& c) noexcept
        : previous_(std::exchange(message_context::current_ref(), &c)) {}
    ~context_scope() { message_context::current_ref() = previous_; }
    context_scope(const context_scope&) = delete;
    context_scope& operator=(const context_scope&) = delete;

private:
    const message_context* previous_;
};

COURIER_END_NAMESPACE
