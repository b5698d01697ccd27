// Must NOT compile: an event name without its version segment (diagnostic:
// last_segment_must_be_a_version_like_v1). With "order.created.v1" this file compiles; the
// test runs with WILL_FAIL.
#include <courier/event/event_name.hpp>

struct order_created {
    static constexpr courier::event_name event_type{"order.created"};
    int id = 0;
};

int main() { return order_created::event_type.version(); }
