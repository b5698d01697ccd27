// Queue scenarios: threads handing fixed-size messages through one queue. queue.mpmc: courier's
// mpmc_queue (tokens) vs raw moodycamel (tokens), mutex+deque, asio::post, ZeroMQ inproc and the
// installed lock-free peers. queue.bounded: bounded_queue (policy fail, producers retry on full)
// vs the bounded peers. Consumers spin on try_pop; the clock runs from the first push to the last
// pop, and every message is counted and checksummed.
#include "../baselines/asio_post.hpp"
#include "../baselines/queues.hpp"
#include "../baselines/zmq_inproc.hpp"
#include "../harness/queue_harness.hpp"

#include <courier/queue/bounded_queue.hpp>
#include <courier/queue/mpmc_queue.hpp>

namespace courier_bench {
namespace {

/// A queue status as run_queue wants it: `full` means retry. Any other failure counts the
/// message as sent, so a queue that drops or closes on us fails the run's checksum loudly.
bool accepted(courier::queue_status s) { return s != courier::queue_status::full; }

/// courier::mpmc_queue with producer and consumer tokens, the way a hot loop should use it.
template <class Msg>
class courier_mpmc {
public:
    explicit courier_mpmc(const run_params& p) : q_(p.capacity) {}
    auto producer_token() { return q_.make_producer_token(); }
    auto consumer_token() { return q_.make_consumer_token(); }
    bool try_push(auto& token, Msg& m) { return accepted(q_.try_push(token, std::move(m))); }
    bool try_pop(auto& token, Msg& m) { return q_.try_pop(token, m) == courier::queue_status::ok; }

private:
    courier::mpmc_queue<Msg> q_;
};

/// courier::bounded_queue with overflow_policy::fail: a full queue hands the item back and
/// the producer retries, like every other bounded queue here.
template <class Msg>
class courier_bounded {
public:
    explicit courier_bounded(const run_params& p) : q_(p.capacity, courier::overflow_policy::fail) {}
    no_token producer_token() { return {}; }
    no_token consumer_token() { return {}; }
    bool try_push(no_token, Msg& m) { return accepted(q_.try_push(std::move(m))); }
    bool try_pop(no_token, Msg& m) { return q_.try_pop(m) == courier::queue_status::ok; }

private:
    courier::bounded_queue<Msg> q_;
};

const registration mpmc{{
    .name = "queue.mpmc",
    .description = "unbounded MPMC queue: P producers push, C consumers spin on try_pop",
    .impls =
        {
            {"courier", queue_bench<courier_mpmc>},
            {"moodycamel", queue_bench<moodycamel_queue>},
            {"mutex_deque", queue_bench<mutex_deque>},
#if COURIER_BENCH_HAVE_ATOMIC_QUEUE
            {"atomic_queue", queue_bench<atomic_queue_ring>},  // a 64 Ki-slot ring stands in for unbounded
#endif
#if COURIER_BENCH_HAVE_BOOST_LOCKFREE
            {"boost_lockfree", queue_bench<boost_lockfree_queue>},
#endif
#if COURIER_BENCH_HAVE_TBB
            {"tbb", queue_bench<tbb_queue>},
#endif
#if COURIER_BENCH_HAVE_ZMQ
            {"zmq_inproc", zmq_inproc_bench},
#endif
            {"asio_post", asio_post_bench},
        },
    .shapes = {{1, 1}, {2, 2}},
    .messages = 2'000'000,
    .sweep = true,
}};

const registration bounded{{
    .name = "queue.bounded",
    .description = "bounded queue (--capacity, default 4096; fail when full, producers retry), consumers spin",
    .impls =
        {
            {"courier", queue_bench<courier_bounded>},
            {"mutex_deque", queue_bench<mutex_deque_bounded>},
#if COURIER_BENCH_HAVE_ATOMIC_QUEUE
            {"atomic_queue", queue_bench<atomic_queue_bounded>},
#endif
#if COURIER_BENCH_HAVE_BOOST_LOCKFREE
            {"boost_lockfree", queue_bench<boost_lockfree_bounded>},
#endif
#if COURIER_BENCH_HAVE_TBB
            {"tbb", queue_bench<tbb_bounded_queue>},
#endif
        },
    .shapes = {{1, 1}, {2, 2}},
    .messages = 2'000'000,
    .sweep = true,
}};

}  // namespace
}  // namespace courier_bench
