// A minimal program that uses courier the way a consumer project would.
#include <courier/courier.hpp>

int main() {
    courier::mpmc_queue<int> q;
    if (q.try_push(41) != courier::queue_status::ok) return 1;
    int v = 0;
    if (q.try_pop(v) != courier::queue_status::ok) return 2;
    return v == 41 ? 0 : 3;
}
