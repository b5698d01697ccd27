// Typed requests and replies shared by the rpc tests.
#pragma once

#include <courier/event/event_traits.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace rpc_events {

struct quote {
    static constexpr courier::event_name event_type{"pricing.quote.given.v1"};
    std::string sku;
    double price = 0;
    std::string by;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(quote, sku, price, by)
};

struct get_quote {
    static constexpr courier::event_name event_type{"pricing.quote.requested.v1"};
    using reply_type = quote;
    std::string sku;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(get_quote, sku)
};

struct doubled {
    static constexpr courier::event_name event_type{"math.doubled.v1"};
    std::uint64_t value = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(doubled, value)
};

struct double_it {
    static constexpr courier::event_name event_type{"math.double.requested.v1"};
    using reply_type = doubled;
    std::uint64_t value = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(double_it, value)
};

// An event the tests publish to start a causal chain, and one published from a reply.
struct checkout_started {
    static constexpr courier::event_name event_type{"shop.checkout.started.v1"};
    std::string cart;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(checkout_started, cart)
};
struct checkout_priced {
    static constexpr courier::event_name event_type{"shop.checkout.priced.v1"};
    double total = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(checkout_priced, total)
};

}  // namespace rpc_events
