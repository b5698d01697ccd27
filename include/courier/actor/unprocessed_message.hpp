// A message an actor will never handle, handed back to the application: by stop(hand_back),
// by an overflow policy, or after the actor stopped. It keeps the message so nothing vanishes:
// inspect its type, take the typed message out, log it, or send an equivalent one elsewhere.
#pragma once

#include <courier/actor/detail/mail.hpp>
#include <courier/actor/detail/type_name.hpp>
#include <courier/core/config.hpp>

#include <string_view>
#include <utility>

COURIER_BEGIN_NAMESPACE

/// A message that was sent to an actor and will not be handled by it.
///
/// An ask among them has already been answered with an error ([courier.actor.stopped] or
/// [courier.actor.mailbox_full]), so its sender is not left waiting.
///
/// Thread safety: a value; one thread at a time.
///
/// Example:
/// ```
/// for (auto& m : ref.stop(courier::stop_mode::hand_back))
///     if (auto* order = m.get_if<place_order>()) backlog.push_back(std::move(*order));
/// ```
class unprocessed_message {
public:
    explicit unprocessed_message(detail::mail&& m) noexcept : mail_(std::move(m)) {}
    unprocessed_message(unprocessed_message&&) noexcept = default;
    unprocessed_message& operator=(unprocessed_message&&) noexcept = default;

    /// The message type's name as the compiler spells it, e.g. "app::place_order".
    std::string_view type_name() const noexcept { return mail_.ops() ? mail_.ops()->type_name : std::string_view{}; }
    /// True when the message was sent with ask (its asker got an error already).
    bool is_ask() const noexcept { return mail_.ops() && mail_.ops()->is_ask; }
    /// True when the message is an M.
    template <class M>
    bool is() const noexcept {
        return mail_.ops() && mail_.ops()->type == detail::type_id<M>();
    }
    /// The message if it is an M, else nullptr. Move from it to keep it.
    template <class M>
    M* get_if() noexcept {
        return is<M>() ? static_cast<M*>(mail_.ops()->message(mail_)) : nullptr;
    }
    template <class M>
    const M* get_if() const noexcept {
        return const_cast<unprocessed_message*>(this)->get_if<M>();
    }

private:
    detail::mail mail_;
};

COURIER_END_NAMESPACE
