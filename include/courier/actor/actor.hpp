// Actors: a behaviour class with typed `handle` members, a lock-free mailbox, and turns on the
// runtime's executor, one message at a time, so the behaviour's state needs no lock.
// `tell` sends and forgets; `ask` answers through any Asio completion token with a timeout;
// a supervision strategy decides what a throwing handler costs (resume, restart, stop, escalate).
#pragma once

#include <courier/actor/actor_options.hpp>
#include <courier/actor/detail/actor_cell.hpp>
#include <courier/actor/unprocessed_message.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/async_result.hpp>

#include <chrono>
#include <memory>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE

template <class T>
class actor_ref;
class actor_system;

/// An untyped handle to an actor: enough to name, inspect and stop it.
///
/// Thread safety: every member may be called from any thread.
class actor_addr {
public:
    actor_addr() = default;
    explicit actor_addr(std::shared_ptr<detail::actor_base> a) noexcept : actor_(std::move(a)) {}

    explicit operator bool() const noexcept { return actor_ != nullptr; }
    std::string_view name() const noexcept { return actor_ ? std::string_view(actor_->name()) : std::string_view{}; }
    actor_stats stats() const { return actor_ ? actor_->stats() : actor_stats{}; }
    bool stopped() const noexcept { return !actor_ || actor_->stopped(); }
    /// See actor_ref::stop.
    std::vector<unprocessed_message> stop(stop_mode mode = stop_mode::drain) {
        return actor_ ? actor_->stop(mode) : std::vector<unprocessed_message>{};
    }

    friend bool operator==(const actor_addr& a, const actor_addr& b) noexcept { return a.actor_ == b.actor_; }

private:
    template <class T>
    friend class actor_context;
    std::shared_ptr<detail::actor_base> actor_;
};

/// What an actor's handler may do besides handling: know itself, stop, spawn children.
/// A handler receives it when it takes `actor_context<T>&` as its second parameter:
/// `void handle(const ping& p, courier::actor_context<pinger>& ctx)`.
///
/// Thread safety: valid only inside the handler call that received it.
template <class T>
class actor_context {
public:
    explicit actor_context(detail::actor_cell<T>& cell) noexcept : cell_(cell) {}

    /// A reference to this actor (to pass in messages, or to tell itself).
    actor_ref<T> self() const;
    std::string_view name() const noexcept { return cell_.name(); }
    /// Stops this actor after the current message; every message still queued is undelivered
    /// (answered with [courier.actor.stopped] if an ask, then handed to on_undelivered).
    void stop() { cell_.stop_from_handler(detail::stopped_error(cell_.name(), "stopped itself")); }
    /// Spawns a child: its `escalate` failures are decided by this actor's `child_supervisor`,
    /// and it stops (drain) when this actor stops.
    template <class C, class... A>
    actor_ref<C> spawn(actor_options options, A&&... args);
    courier::runtime& rt() const noexcept { return cell_.system().rt(); }

private:
    detail::actor_cell<T>& cell_;
};

/// A typed handle to an actor with behaviour T. Copy it freely; the actor lives until it is
/// stopped (not until its last reference goes), so handles may form cycles.
///
/// Ordering: messages from one sender thread are handled in the order sent; no order between
/// senders (the mailbox is moodycamel's MPMC queue).
/// Thread safety: every member may be called from any thread, handlers included.
/// Blocking: never, except `tell` to a full bounded mailbox with overflow_policy::block (from
/// a non-runtime thread, up to block_timeout) and `stop(hand_back)` from outside the actor,
/// which waits for the message being handled to finish.
/// Errors: see tell/try_tell/ask. A handler's exception never escapes: supervision handles it.
///
/// Example:
/// ```
/// struct counter {
///     int n = 0;
///     void handle(const add& a) { n += a.by; }
///     int handle(const get&) { return n; }
/// };
/// courier::actor_system actors(rt);
/// auto c = actors.spawn<counter>();
/// c.tell(add{2});
/// c.ask(get{}, 1s, [](courier::result<int> r) { if (r) std::cout << *r; });
/// ```
template <class T>
class actor_ref {
public:
    actor_ref() = default;
    explicit actor_ref(std::shared_ptr<detail::actor_cell<T>> c) noexcept : cell_(std::move(c)) {}

    /// Sends `m` and forgets it. A message the mailbox refuses (stopped actor, full bounded
    /// mailbox) is handed to on_undelivered, or counted in stats().undelivered.
    template <class M>
    void tell(M&& m) const {
        static_assert(detail::can_handle<T, std::remove_cvref_t<M>>,
                      "the actor's behaviour has no handle() member for this message type");
        cell_->send(std::forward<M>(m));
    }

    /// Sends `m` without waiting. Returns ok; full (bounded mailbox, policy fail or block) or
    /// closed (stopped actor), in which cases `m` is left to the caller; or dropped (policy
    /// drop_newest: `m` was consumed and handed to on_undelivered).
    template <class M>
    [[nodiscard]] queue_status try_tell(M&& m) const {
        using msg_t = std::remove_cvref_t<M>;
        static_assert(detail::can_handle<T, msg_t>, "the actor's behaviour has no handle() member for this message type");
        if constexpr (std::is_lvalue_reference_v<M>) {
            msg_t copy(m);
            return cell_->try_send(copy, false);
        } else {
            return cell_->try_send(m, false);
        }
    }

    /// Sends `m` and completes `token` with the handler's return value R as
    /// `void(courier::result<R>)` (`result<void>` for a handler returning void). Errors:
    /// errc::timeout [courier.actor.ask_timeout] when no answer came within `timeout` on the
    /// runtime's clock (a later answer is dropped and counted in stats().late_replies);
    /// errc::handler_failed [courier.actor.handler_failed] with the exception's text when the
    /// handler threw; errc::closed [courier.actor.stopped] when the actor stopped before
    /// handling it; errc::full [courier.actor.mailbox_full] when a bounded mailbox refused it.
    /// Pass `duration::max()` for no timeout.
    ///
    /// The completion runs through the token's associated executor (default: the runtime's),
    /// never inside this call. Tokens: a callback, boost::asio::use_future, use_awaitable.
    template <class M, class CompletionToken>
    auto ask(M&& m, duration timeout, CompletionToken&& token) const {
        using msg_t = std::remove_cvref_t<M>;
        static_assert(detail::can_handle<T, msg_t>, "the actor's behaviour has no handle() member for this message type");
        using R = detail::handler_result_t<T, msg_t>;
        return boost::asio::async_initiate<CompletionToken, void(result<R>)>(
            [](auto handler, std::shared_ptr<detail::actor_cell<T>> cell, msg_t msg, duration d) {
                cell->start_ask(std::move(msg), d, std::move(handler));
            },
            token, cell_, msg_t(std::forward<M>(m)), timeout);
    }

    /// Stops the actor. `drain` (default): refuses new messages at once, handles those already
    /// queued, then stops; returns an empty vector at once. `hand_back`: stops after the
    /// message being handled and returns every other queued message (asks among them are
    /// answered with [courier.actor.stopped]). Either way the actor's state is destroyed, its
    /// children are stopped (drain), and a later tell is undelivered. Idempotent.
    std::vector<unprocessed_message> stop(stop_mode mode = stop_mode::drain) const { return cell_->stop(mode); }

    bool stopped() const noexcept { return cell_->stopped(); }
    actor_stats stats() const { return cell_->stats(); }
    std::string_view name() const noexcept { return cell_->name(); }
    actor_addr addr() const noexcept { return actor_addr(cell_); }

    explicit operator bool() const noexcept { return cell_ != nullptr; }
    friend bool operator==(const actor_ref& a, const actor_ref& b) noexcept { return a.cell_ == b.cell_; }

private:
    std::shared_ptr<detail::actor_cell<T>> cell_;
};

/// What actor_system::shutdown did.
struct actor_shutdown_report {
    std::size_t stopped = 0;                    ///< actors that drained and stopped in time
    std::vector<unprocessed_message> unprocessed;  ///< messages of actors that did not
    bool timed_out = false;
};

/// Owns the actors of one runtime: spawns them, runs their turns on the runtime's executor,
/// and stops them all at shutdown. Declare it after the runtime (it must be destroyed first).
///
/// Thread safety: every member may be called from any thread.
/// Blocking: shutdown (and the destructor) wait for mailboxes to drain, up to their timeout;
/// on a manual runtime they run the executor themselves.
/// Errors: spawn throws courier_error [courier.actor.system_closed] after shutdown, and
/// whatever T's constructor throws.
///
/// Example:
/// ```
/// courier::runtime rt;
/// courier::actor_system actors(rt);
/// auto greeter = actors.spawn<greeter_behaviour>(courier::actor_options{.name = "greeter"}, "Hello");
/// greeter.tell(greet{"Ada"});
/// ```
class actor_system {
public:
    explicit actor_system(runtime& rt, actor_system_options options = {})
        : core_(std::make_shared<detail::actor_system_core>(rt, std::move(options))) {}
    ~actor_system() { (void)shutdown(core_->options().shutdown_timeout); }
    actor_system(const actor_system&) = delete;
    actor_system& operator=(const actor_system&) = delete;

    /// Spawns an actor of behaviour T built from `args` (copied and kept: a restart builds the
    /// fresh state from them again), with default options.
    template <class T, class... A>
    actor_ref<T> spawn(A&&... args) {
        return spawn<T>(actor_options{}, std::forward<A>(args)...);
    }
    /// Spawns with options (name, mailbox bound, supervision...). Set `parent` through
    /// actor_context::spawn.
    template <class T, class... A>
    actor_ref<T> spawn(actor_options options, A&&... args) {
        auto base = core_->template spawn<T>(std::move(options), nullptr, std::forward<A>(args)...);
        return actor_ref<T>(std::static_pointer_cast<detail::actor_cell<T>>(std::move(base)));
    }

    /// Stops every actor: each drains its mailbox until `timeout`, then hands back what is
    /// left. Later spawns fail. Idempotent.
    actor_shutdown_report shutdown(duration timeout) {
        actor_shutdown_report report;
        if (core_->closed() && core_->size() == 0) return report;
        core_->close();
        // From inside a turn, waiting for mailboxes would wait for ourselves.
        if (detail::this_turn().system == core_.get()) timeout = duration::zero();
        auto all = core_->snapshot();
        for (auto& a : all) (void)a->stop(stop_mode::drain);
        const auto deadline = std::chrono::steady_clock::now() +
                              std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
        auto& rt = core_->rt();
        while (core_->size() != 0 && std::chrono::steady_clock::now() < deadline) {
            if (rt.is_manual()) {
                if (rt.poll() == 0) break;  // nothing can move any more without the clock
            } else {
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
        }
        auto left = core_->snapshot();
        report.stopped = all.size() >= left.size() ? all.size() - left.size() : 0;
        report.timed_out = !left.empty();
        for (auto& a : left) {
            auto rest = a->stop(stop_mode::hand_back);
            for (auto& m : rest) report.unprocessed.push_back(std::move(m));
        }
        return report;
    }

    /// Actors alive (spawned and not yet stopped).
    std::size_t size() const { return core_->size(); }
    courier::runtime& rt() noexcept { return core_->rt(); }

private:
    std::shared_ptr<detail::actor_system_core> core_;
};

// ------------------------------------------------------------------------ actor_context bodies

template <class T>
actor_ref<T> actor_context<T>::self() const {
    return actor_ref<T>(std::static_pointer_cast<detail::actor_cell<T>>(cell_.shared_from_this()));
}

template <class T>
template <class C, class... A>
actor_ref<C> actor_context<T>::spawn(actor_options options, A&&... args) {
    auto base = cell_.system().template spawn<C>(std::move(options), cell_.shared_from_this(), std::forward<A>(args)...);
    return actor_ref<C>(std::static_pointer_cast<detail::actor_cell<C>>(std::move(base)));
}

COURIER_END_NAMESPACE
