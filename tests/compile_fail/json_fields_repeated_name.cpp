// Must NOT compile: COURIER_JSON_FIELDS names a field twice (static_assert "a field is named
// twice"; nlohmann would write it once). With `COURIER_JSON_FIELDS(order_placed, id, total)`
// this file compiles; the test runs with WILL_FAIL.
#include <courier/event/json_fields.hpp>

#include <string>

struct order_placed {
    std::string id;
    int total = 0;
    COURIER_JSON_FIELDS(order_placed, id, total, id)
};

int main() {
    std::string out;
    order_placed::courier_append_json(out, order_placed{});
    return out.empty() ? 1 : 0;
}
