// The contract between the modules: typed events with versioned names. Nothing else is
// shared; a module includes this header, never another module's.
#pragma once

#include <courier/event/event_name.hpp>
#include <nlohmann/json.hpp>

#include <string>

namespace shop {

// v1, still published by the old checkout: one total, always in euros.
struct order_placed_v1 {
    static constexpr courier::event_name event_type{"shop.order.placed.v1"};
    std::string order_id;
    std::string customer;
    double total = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_placed_v1, order_id, customer, total)
};

// v2: amounts in cents with a currency. Billing only understands v2.
struct order_placed {
    static constexpr courier::event_name event_type{"shop.order.placed.v2"};
    std::string order_id;
    std::string customer;
    long amount_cents = 0;
    std::string currency;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_placed, order_id, customer, amount_cents, currency)
};

struct invoice_issued {
    static constexpr courier::event_name event_type{"billing.invoice.issued.v1"};
    std::string invoice_id;
    std::string order_id;
    std::string customer;
    long amount_cents = 0;
    std::string currency;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(invoice_issued, invoice_id, order_id, customer, amount_cents, currency)
};

struct payment_declined {
    static constexpr courier::event_name event_type{"billing.payment.declined.v1"};
    std::string order_id;
    std::string reason;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(payment_declined, order_id, reason)
};

}  // namespace shop
