// The RAII handle of a bus subscription: destroying it (or calling unsubscribe) stops delivery,
// and no handler call starts after unsubscribe returns.
#pragma once

#include <courier/bus/detail/subscription_state.hpp>
#include <courier/bus/metrics.hpp>
#include <courier/core/config.hpp>

#include <atomic>
#include <memory>
#include <string_view>

COURIER_BEGIN_NAMESPACE

class event_bus;

/// A live subscription. Move-only; unsubscribes when destroyed unless `detach()`ed.
///
/// Thread safety: `unsubscribe`, `active`, `name` and `metrics` may be called concurrently from
/// any thread, including from inside the subscription's own handler (then the current call
/// finishes and no other starts). Moving, assigning and `detach` need exclusive access.
/// Blocking: `unsubscribe` waits for handler calls of this subscription running on other
/// threads to finish; queued messages are dead-lettered (at_least_once) or counted as
/// dropped (at_most_once), never silently lost.
class subscription {
public:
    subscription() = default;
    subscription(subscription&& o) noexcept = default;
    subscription& operator=(subscription&& o) noexcept {
        if (this != &o) {
            unsubscribe();
            bus_ = o.bus_;
            state_ = std::move(o.state_);
            bus_alive_ = std::move(o.bus_alive_);
        }
        return *this;
    }
    ~subscription() { unsubscribe(); }

    /// Stops delivery (idempotent).
    void unsubscribe();
    /// Leaves the subscription active for the bus's lifetime; the handle becomes empty.
    void detach() noexcept {
        state_.reset();
        bus_alive_.reset();
    }
    bool active() const noexcept { return state_ && state_->active(); }
    explicit operator bool() const noexcept { return active(); }
    std::string_view name() const noexcept { return state_ ? std::string_view(state_->name()) : std::string_view{}; }
    subscription_metrics metrics() const { return state_ ? state_->metrics() : subscription_metrics{}; }

private:
    friend class event_bus;
    subscription(event_bus* bus, std::shared_ptr<detail::subscription_state> st, std::shared_ptr<std::atomic<bool>> alive)
        : bus_(bus), state_(std::move(st)), bus_alive_(std::move(alive)) {}

    event_bus* bus_ = nullptr;
    std::shared_ptr<detail::subscription_state> state_;
    std::shared_ptr<std::atomic<bool>> bus_alive_;
};

COURIER_END_NAMESPACE
