// The orders module: takes orders and announces them. It knows the event contract and the
// bus, nothing about billing or notifications.
#pragma once

#include "events.hpp"

#include <courier/bus/event_bus.hpp>

#include <string>

namespace shop {

class orders_module {
public:
    explicit orders_module(courier::event_bus& bus) : bus_(bus) {}

    /// The new checkout: publishes v2. The key keeps one customer's events in order.
    void place(std::string order_id, std::string customer, long amount_cents, std::string currency) {
        courier::publish_options po;
        po.key = customer;
        (void)bus_.publish(order_placed{std::move(order_id), std::move(customer), amount_cents, std::move(currency)}, po);
    }
    /// The old checkout, not migrated yet: still publishes v1.
    void place_legacy(std::string order_id, std::string customer, double total_eur) {
        courier::publish_options po;
        po.key = customer;
        (void)bus_.publish(order_placed_v1{std::move(order_id), std::move(customer), total_eur}, po);
    }

private:
    courier::event_bus& bus_;
};

}  // namespace shop
