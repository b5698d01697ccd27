// Typed events shared by the stream tests.
#pragma once

#include <courier/event/event_traits.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace stream_events {

struct order_placed {
    static constexpr courier::event_name event_type{"order.placed.v1"};
    std::string id;
    double total = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_placed, id, total)
};

struct order_shipped {
    static constexpr courier::event_name event_type{"order.shipped.v1"};
    std::string id;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_shipped, id)
};

struct payment_taken {
    static constexpr courier::event_name event_type{"billing.payment.taken.v1"};
    std::string order;
    int cents = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(payment_taken, order, cents)
};

}  // namespace stream_events
