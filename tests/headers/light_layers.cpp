// Proves the light layers stay light: the cores of queue/ and event/ must compile without
// Asio (their Asio integration lives in separate headers such as queue/async_pop.hpp).
#include <courier/queue/bounded_queue.hpp>
#include <courier/queue/mpmc_queue.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/event_name.hpp>
#include <courier/event/json_fields.hpp>
#include <courier/event/topic_pattern.hpp>

#if defined(BOOST_ASIO_VERSION) || defined(ASIO_VERSION)
#error "an Asio header leaked into the queue/event core headers"
#endif

int main() {
    courier::mpmc_queue<int> q;
    return q.try_push(1) == courier::queue_status::ok ? 0 : 1;
}
