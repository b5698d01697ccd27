// The fifteen-line example from README.md, compiled and run as a smoke test so it stays true.
#include <courier/courier.hpp>
#include <iostream>

struct order_created {
    static constexpr courier::event_name event_type{"order.created.v1"};  // checked at compile time
    std::string id;
    double total = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_created, id, total)
};

int main() {
    courier::runtime rt;                                       // a thread pool, a clock, a bus
    auto billing = rt.bus().subscribe<order_created>(          // typed, exact name: the fast path
        [](const order_created& e) { std::cout << "bill " << e.id << "\n"; });
    auto audit = rt.bus().subscribe("order.#",                 // wildcard: an envelope view
        [](const courier::message_context& m) { std::cout << m.event_type() << "\n"; });
    rt.bus().publish(order_created{"o-1", 42.0});              // moved, never serialized
    rt.stop();                                                 // drains the queues, then stops
}
