// The notifications module: tells customers what happened. It reacts to billing's events by
// name and to every shop event through a wildcard (an activity feed), without knowing who
// publishes them.
#pragma once

#include "events.hpp"

#include <courier/bus/event_bus.hpp>
#include <courier/bus/subscription.hpp>

#include <mutex>
#include <string>
#include <vector>

namespace shop {

class notifications_module {
public:
    explicit notifications_module(courier::event_bus& bus) {
        invoices_ = bus.subscribe<invoice_issued>([this](const invoice_issued& i) {
            send(i.customer + ": your invoice " + i.invoice_id + " for order " + i.order_id + " (" +
                 std::to_string(i.amount_cents / 100) + "." + two_digits(i.amount_cents % 100) + " " + i.currency + ")");
        }, {.name = "notify-invoice", .mode = courier::delivery_mode::serial});
        declined_ = bus.subscribe<payment_declined>([this](const payment_declined& d) {
            send("order " + d.order_id + " was declined: " + d.reason);
        }, {.name = "notify-declined", .mode = courier::delivery_mode::serial});
        // A wildcard sees envelopes: every version of every shop event, as it was published.
        feed_ = bus.subscribe("shop.#", [this](const courier::message_context& m) {
            std::lock_guard lock(mutex_);
            feed_lines_.push_back(std::string(m.event_type()) + " " + m.data().at("order_id").get<std::string>());
        }, {.name = "activity-feed", .mode = courier::delivery_mode::serial});
    }
    std::vector<std::string> sent() const { std::lock_guard lock(mutex_); return sent_; }
    std::vector<std::string> feed() const { std::lock_guard lock(mutex_); return feed_lines_; }

private:
    static std::string two_digits(long v) { return (v < 10 ? "0" : "") + std::to_string(v); }
    void send(std::string text) {
        std::lock_guard lock(mutex_);
        sent_.push_back(std::move(text));
    }

    mutable std::mutex mutex_;
    std::vector<std::string> sent_;
    std::vector<std::string> feed_lines_;
    courier::subscription invoices_, declined_, feed_;  // last: unsubscribed first
};

}  // namespace shop
