// One message in an actor's mailbox, type-erased: a pointer to a constant table of functions
// for its (actor, message) pair plus the message itself, stored inline when it is small and
// nothrow-movable (no allocation per tell) or on the heap otherwise.
#pragma once

#include <courier/actor/detail/type_name.hpp>
#include <courier/core/config.hpp>

#include <cstddef>
#include <cstring>
#include <exception>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>

COURIER_BEGIN_NAMESPACE
namespace detail {

class mail;

/// What the mailbox needs to know about one kind of mail. One constant table per
/// (actor type, message type, tell-or-ask), so a mail costs one pointer of metadata.
struct mail_ops {
    /// Runs the actor's handler on the message (`cell` is the actor's cell). May throw.
    void (*invoke)(void* cell, mail& m);
    /// Moves the payload from `src` to `dst` (raw storage), destroying it in `src`.
    void (*relocate)(mail& dst, mail& src) noexcept;
    /// Destroys the payload.
    void (*destroy)(mail& m) noexcept;
    /// An ask whose message will never be handled: completes its reply with `why`.
    void (*fail)(mail& m, const std::exception_ptr& why) noexcept;
    /// The message object inside the payload.
    void* (*message)(mail& m) noexcept;
    const void* type;            ///< type_id of the message
    std::string_view type_name;  ///< its name, for failure reports
    bool is_ask;
};

/// A type-erased mailbox entry. Movable (moodycamel and bounded_queue move entries in and out),
/// never copyable. A default-constructed mail is empty.
class mail {
public:
    /// Payloads up to this size (and alignment 8, nothrow move) live inside the mail.
    static constexpr std::size_t inline_size = 48;
    template <class P>
    static constexpr bool stored_inline =
        sizeof(P) <= inline_size && alignof(P) <= 8 && std::is_nothrow_move_constructible_v<P>;

    mail() noexcept = default;
    mail(mail&& o) noexcept { take(o); }
    mail& operator=(mail&& o) noexcept {
        if (this != &o) {
            reset();
            take(o);
        }
        return *this;
    }
    mail(const mail&) = delete;
    mail& operator=(const mail&) = delete;
    ~mail() { reset(); }

    template <class P, class... A>
    void emplace(const mail_ops* ops, A&&... a) {
        reset();
        if constexpr (stored_inline<P>) {
            ::new (static_cast<void*>(buf_)) P(std::forward<A>(a)...);
        } else {
            P* p = new P(std::forward<A>(a)...);
            std::memcpy(buf_, &p, sizeof p);
        }
        ops_ = ops;
    }

    template <class P>
    P* get() noexcept {
        if constexpr (stored_inline<P>) {
            return std::launder(reinterpret_cast<P*>(buf_));
        } else {
            P* p;
            std::memcpy(&p, buf_, sizeof p);
            return p;
        }
    }

    void reset() noexcept {
        if (ops_) {
            const mail_ops* ops = std::exchange(ops_, nullptr);
            ops->destroy(*this);
        }
    }

    const mail_ops* ops() const noexcept { return ops_; }
    explicit operator bool() const noexcept { return ops_ != nullptr; }

private:
    template <class P>
    friend struct payload_model;

    void take(mail& o) noexcept {
        if (o.ops_) {
            o.ops_->relocate(*this, o);
            ops_ = std::exchange(o.ops_, nullptr);
        }
    }

    const mail_ops* ops_ = nullptr;
    alignas(8) unsigned char buf_[inline_size];
};

/// relocate/destroy for payload type P.
template <class P>
struct payload_model {
    static void relocate(mail& dst, mail& src) noexcept {
        if constexpr (!mail::stored_inline<P> || std::is_trivially_copyable_v<P>) {
            // A heap pointer, or a trivially copyable value: the bytes are the object.
            std::memcpy(dst.buf_, src.buf_, mail::stored_inline<P> ? sizeof(P) : sizeof(P*));
        } else {
            P* from = src.get<P>();
            ::new (static_cast<void*>(dst.buf_)) P(std::move(*from));
            from->~P();
        }
    }
    static void destroy(mail& m) noexcept {
        if constexpr (mail::stored_inline<P>) {
            m.get<P>()->~P();
        } else {
            delete m.get<P>();
        }
    }
};

}  // namespace detail
COURIER_END_NAMESPACE
