// Must NOT compile: a typed event whose name has capital letters. event_name's constructor
// is consteval, so the malformed literal is rejected by the compiler (the diagnostic names
// the rule: segment_must_start_with_a_lowercase_letter). With "order.created.v1" this file
// compiles; the test runs with WILL_FAIL.
#include <courier/event/event_name.hpp>

struct order_created {
    static constexpr courier::event_name event_type{"Order.Created.v1"};
    int id = 0;
};

int main() { return order_created::event_type.version(); }
