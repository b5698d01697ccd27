// The Asio baseline for message passing: producer threads boost::asio::post one handler per
// message (carrying the message) to an io_context, consumer threads run that io_context.
// It is what "just post it to the executor" costs, the design courier's mailboxes avoid by
// posting one drain task per batch instead.
#pragma once

#include "../harness/queue_harness.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <optional>

namespace courier_bench {

namespace detail {
/// The receiver of the consumer thread running the io_context; handlers find it here
/// because any consumer thread may run any handler.
inline thread_local receiver* asio_receiver = nullptr;
}  // namespace detail

/// One run of P posting threads and C threads in io_context::run(), with messages of type Msg.
template <class Msg>
run_result run_asio_post(const run_params& p) {
    boost::asio::io_context io(p.consumers);
    std::optional work{boost::asio::make_work_guard(io)};
    run_control ctl(p);
    const Msg prototype{};
    run_result r = ctl.run(
        [&](int i) {
            sender& tx = ctl.sender_of(i);
            ctl.arrive_and_wait();
            while (ctl.keep_sending(tx)) {
                Msg m = prototype;
                m.word = tx.next_word();
                boost::asio::post(io, [m, &ctl] {
                    receiver& rx = *detail::asio_receiver;
                    rx.on_receive(m.word);
                    ctl.maybe_publish(rx);
                });
            }
        },
        [&](int i) {
            receiver& rx = ctl.receiver_of(i);
            detail::asio_receiver = &rx;
            ctl.arrive_and_wait();
            io.run();  // returns once the work guard is gone and every handler has run
            ctl.publish(rx);
            ctl.finish();
        },
        [&] { work.reset(); });
    r.payload = sizeof(Msg);
    return r;
}

/// The run function for a scenario's impl list: `{"asio_post", asio_post_bench}`.
inline run_result asio_post_bench(const run_params& p) {
    return with_message(p.payload, [&]<class Msg>() { return run_asio_post<Msg>(p); });
}

}  // namespace courier_bench
