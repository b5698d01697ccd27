// Three modules of one application — orders, billing, notifications — decoupled through typed
// events with versioned names (events.hpp is their only shared header). The old checkout still
// publishes shop.order.placed.v1; billing subscribes to v2 only and receives the old events
// through an upcaster, so no module changes when the other one migrates.
// Exits 0 only if every order was billed (v1 ones as v2), notified, and seen by the feed.
#include "billing.hpp"
#include "notifications.hpp"
#include "orders.hpp"

#include <courier/runtime/runtime.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <thread>

using namespace std::chrono_literals;

int main() {
    courier::runtime rt(courier::runtime_options{.threads = 2, .producer = "shop"});
    shop::billing_module billing(rt.bus());
    shop::notifications_module notifications(rt.bus());
    shop::orders_module orders(rt.bus());

    orders.place("o-1", "ada", 4200, "EUR");
    orders.place_legacy("o-2", "grace", 19.99);   // v1, upcast to v2 for billing
    orders.place("o-3", "ada", 0, "EUR");         // declined
    orders.place("o-4", "linus", 1250, "USD");

    // Wait (with a deadline) until every order produced its notification.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (notifications.sent().size() < 4 || notifications.feed().size() < 4) {
        if (std::chrono::steady_clock::now() > deadline) break;
        std::this_thread::sleep_for(1ms);
    }
    rt.stop();  // drain the queues

    auto sent = notifications.sent();
    auto feed = notifications.feed();
    std::sort(sent.begin(), sent.end());  // customers are billed in parallel: sort for a stable output
    std::sort(feed.begin(), feed.end());
    std::cout << "notifications:\n";
    for (auto& s : sent) std::cout << "  " << s << "\n";
    std::cout << "activity feed (the events as published, before any upcast):\n";
    for (auto& f : feed) std::cout << "  " << f << "\n";
    std::cout << "invoices issued: " << billing.invoices() << "\n";

    const bool legacy_billed = std::any_of(sent.begin(), sent.end(), [](const std::string& s) {
        return s.find("order o-2 (19.99 EUR)") != std::string::npos;  // v1's 19.99 became 1999 cents
    });
    const bool feed_has_v1 = std::find(feed.begin(), feed.end(), "shop.order.placed.v1 o-2") != feed.end();
    const bool ok = billing.invoices() == 3 && sent.size() == 4 && feed.size() == 4 && legacy_billed && feed_has_v1 &&
                    rt.bus().dead_letters().size() == 0;
    std::cout << (ok ? "modules: ok\n" : "modules: FAILED\n");
    return ok ? 0 : 1;
}
