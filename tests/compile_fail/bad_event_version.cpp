// Must NOT compile: versions start at v1, so "order.created.v0" is rejected at compile time
// (diagnostic: version_must_be_at_least_v1). With "order.created.v1" this file compiles;
// the test runs with WILL_FAIL.
#include <courier/event/event_name.hpp>

struct order_created {
    static constexpr courier::event_name event_type{"order.created.v0"};
    int id = 0;
};

int main() { return order_created::event_type.version(); }
