// Must NOT compile: a wildcard inside a segment ("order*") is not a topic pattern
// (diagnostic: wildcard_must_be_a_whole_segment). With "order.*.v1" this file compiles; the
// test runs with WILL_FAIL.
#include <courier/event/topic_pattern.hpp>

constexpr courier::topic_pattern all_orders{"order*.v1"};

int main() { return all_orders.matches("order.created.v1") ? 0 : 1; }
