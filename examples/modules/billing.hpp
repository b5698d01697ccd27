// The billing module: turns placed orders (v2) into invoices, or declines them. It registers
// the v1 -> v2 upcaster, so orders from the old checkout reach it as v2 without a second handler.
#pragma once

#include "events.hpp"

#include <courier/bus/event_bus.hpp>
#include <courier/bus/subscription.hpp>

#include <atomic>
#include <cmath>
#include <string>

namespace shop {

class billing_module {
public:
    explicit billing_module(courier::event_bus& bus) : bus_(bus) {
        // Upcaster: v1 carried a euro total as a double; v2 wants cents and a currency.
        auto added = bus.upcasters().add("shop.order.placed.v1", [](nlohmann::json d) {
            const long cents = std::lround(d.at("total").get<double>() * 100);
            return nlohmann::json{{"order_id", d.at("order_id")}, {"customer", d.at("customer")},
                                  {"amount_cents", cents}, {"currency", "EUR"}};
        });
        if (!added) throw courier::courier_error(added.error());
        // keyed by customer: one customer's orders are billed in order, customers in parallel.
        sub_ = bus.subscribe<order_placed>([this](const order_placed& o) { bill(o); },
                                           {.name = "billing", .mode = courier::delivery_mode::keyed});
    }
    int invoices() const { return invoices_.load(); }

private:
    void bill(const order_placed& o) {
        if (o.amount_cents <= 0) {
            (void)bus_.publish(payment_declined{o.order_id, "amount must be positive"});
            return;
        }
        ++invoices_;
        (void)bus_.publish(invoice_issued{"inv-" + o.order_id, o.order_id, o.customer, o.amount_cents, o.currency});
    }

    courier::event_bus& bus_;
    std::atomic<int> invoices_{0};
    courier::subscription sub_;  // last: unsubscribed first, before the counters go away
};

}  // namespace shop
