// Typed events shared by the bus tests.
#pragma once

#include <courier/event/event_traits.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace test_events {

struct order_created {
    static constexpr courier::event_name event_type{"order.created.v1"};
    std::string id;
    double total = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_created, id, total)
};

// v2 splits the total into amount + currency.
struct order_created_v2 {
    static constexpr courier::event_name event_type{"order.created.v2"};
    std::string id;
    double amount = 0;
    std::string currency;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_created_v2, id, amount, currency)
};

struct order_shipped {
    static constexpr courier::event_name event_type{"order.shipped.v1"};
    std::string id;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_shipped, id)
};

struct payment_charged {
    static constexpr courier::event_name event_type{"billing.payment.charged.v1"};
    std::string order;
    int cents = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(payment_charged, order, cents)
};

struct tick {
    static constexpr courier::event_name event_type{"test.tick.v1"};
    std::uint64_t n = 0;
    std::string key;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(tick, n, key)
};

}  // namespace test_events
