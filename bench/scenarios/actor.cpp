// Actor scenarios: courier::actor_system against one asio::post per message and CAF 0.17.
//   actor.tell      P senders flood one actor; the actor runs on C threads (courier: the
//                   runtime on an io_context the C consumer threads run, like asio_post; CAF: a
//                   scheduler of C threads).
//   actor.pingpong  round trips between two actors (messages = round trips; C threads).
// Every message carries a word from the harness's sender, so counts, checksums and latency
// (send -> receive; a round trip for ping-pong) are checked as in the queue scenarios.
#include "../baselines/asio_post.hpp"
#include "../harness/queue_harness.hpp"

#include <courier/actor/actor.hpp>
#include <courier/runtime/runtime.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#if COURIER_BENCH_HAVE_CAF
#include <caf/all.hpp>
#endif

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

namespace courier_bench {
namespace {

/// Harness threads that only wait for the actors sleep, so they do not steal the two cores.
void wait_for(const std::atomic<bool>& done, const run_control& ctl) {
    while (!done.load(std::memory_order_acquire) && !ctl.aborted()) std::this_thread::sleep_for(std::chrono::microseconds(100));
}

// ------------------------------------------------------------------------ actor.tell

/// The receiving actor: accounts each word in the receiver of the thread it runs on (the
/// consumer threads run the io_context, as in the asio_post baseline).
struct sink {
    run_control* ctl;
    void handle(std::uint64_t w) {
        receiver& rx = *detail::asio_receiver;
        rx.on_receive(w);
        ctl->maybe_publish(rx);
    }
};

run_result courier_tell(const run_params& p) {
    boost::asio::io_context io(p.consumers);
    std::optional work{boost::asio::make_work_guard(io)};
    run_control ctl(p);
    courier::runtime rt(io, courier::runtime_options{.threads = static_cast<std::uint32_t>(p.consumers)});
    courier::actor_system actors(rt);
    auto target = actors.spawn<sink>(&ctl);
    run_result r = ctl.run(
        [&](int i) {
            sender& tx = ctl.sender_of(i);
            ctl.arrive_and_wait();
            while (ctl.keep_sending(tx)) target.tell(tx.next_word());
        },
        [&](int i) {
            receiver& rx = ctl.receiver_of(i);
            detail::asio_receiver = &rx;
            ctl.arrive_and_wait();
            io.run();  // returns once the guard is gone and the mailbox is drained
            ctl.publish(rx);
            ctl.finish();
        },
        [&] { work.reset(); });
    (void)actors.shutdown(std::chrono::seconds(0));  // nobody runs the io_context any more
    r.payload = sizeof(std::uint64_t);
    return r;
}

// ------------------------------------------------------------------------ actor.pingpong

struct ponger;
struct ping_msg {
    std::uint64_t w;
};
struct pong_msg {
    std::uint64_t w;
};
struct start_msg {};

struct pinger {
    run_control* ctl;
    courier::actor_ref<ponger>* peer;
    std::atomic<bool>* done;
    void handle(start_msg);
    void handle(pong_msg m);
};
struct ponger {
    courier::actor_ref<pinger>* peer;
    void handle(ping_msg m) { peer->tell(pong_msg{m.w}); }
};
void pinger::handle(start_msg) { peer->tell(ping_msg{ctl->sender_of(0).next_word()}); }
void pinger::handle(pong_msg m) {
    receiver& rx = ctl->receiver_of(0);
    rx.on_receive(m.w);
    ctl->maybe_publish(rx);
    sender& tx = ctl->sender_of(0);
    if (ctl->keep_sending(tx)) {
        peer->tell(ping_msg{tx.next_word()});
    } else {
        ctl->publish(rx);
        ctl->finish();
        done->store(true, std::memory_order_release);
    }
}

run_result courier_pingpong(run_params p) {
    p.producers = 1;  // one pair; `consumers` threads run the runtime
    run_control ctl(p);
    courier::runtime rt(courier::runtime_options{.threads = static_cast<std::uint32_t>(p.consumers)});
    courier::actor_system actors(rt);
    std::atomic<bool> done{false};
    courier::actor_ref<pinger> ping_ref;
    courier::actor_ref<ponger> pong_ref;
    ping_ref = actors.spawn<pinger>(&ctl, &pong_ref, &done);
    pong_ref = actors.spawn<ponger>(&ping_ref);
    run_result r = ctl.run(
        [&](int) {
            ctl.arrive_and_wait();
            ping_ref.tell(start_msg{});
            wait_for(done, ctl);
        },
        [&](int) {
            ctl.arrive_and_wait();
            wait_for(done, ctl);
        });
    r.payload = sizeof(std::uint64_t);
    return r;
}

/// The same round trips with one asio::post per message (ping's handler posts pong's, which
/// posts ping's...), on an io_context run by `consumers` threads.
struct asio_pingpong {
    boost::asio::io_context& io;
    run_control& ctl;
    std::atomic<bool> done{false};
    void ping(std::uint64_t w) {
        boost::asio::post(io, [this, w] { boost::asio::post(io, [this, w] { pong(w); }); });
    }
    void pong(std::uint64_t w) {
        receiver& rx = ctl.receiver_of(0);
        rx.on_receive(w);
        ctl.maybe_publish(rx);
        sender& tx = ctl.sender_of(0);
        if (ctl.keep_sending(tx)) {
            ping(tx.next_word());
        } else {
            ctl.publish(rx);
            ctl.finish();
            done.store(true, std::memory_order_release);
        }
    }
};

run_result asio_post_pingpong(run_params p) {
    p.producers = 1;
    boost::asio::io_context io(p.consumers);
    std::optional work{boost::asio::make_work_guard(io)};
    run_control ctl(p);
    asio_pingpong pp{io, ctl};
    std::vector<std::thread> runners;
    for (int i = 0; i < p.consumers; ++i) runners.emplace_back([&] { io.run(); });
    run_result r = ctl.run(
        [&](int) {
            ctl.arrive_and_wait();
            pp.ping(ctl.sender_of(0).next_word());
            wait_for(pp.done, ctl);
        },
        [&](int) {
            ctl.arrive_and_wait();
            wait_for(pp.done, ctl);
        });
    work.reset();
    for (auto& t : runners) t.join();
    r.payload = sizeof(std::uint64_t);
    return r;
}

// ------------------------------------------------------------------------ CAF 0.17

#if COURIER_BENCH_HAVE_CAF
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using start_atom = caf::atom_constant<caf::atom("start")>;

caf::actor_system_config& caf_config(caf::actor_system_config& cfg, int threads) {
    cfg.set("scheduler.max-threads", static_cast<std::size_t>(threads));
    return cfg;
}

run_result caf_tell(const run_params& p) {
    run_control ctl(p);
    caf::actor_system_config cfg;
    caf::actor_system sys{caf_config(cfg, p.consumers)};
    std::atomic<bool> done{false};
    receiver& rx = ctl.receiver_of(0);  // one actor: its messages are handled one at a time
    auto target = sys.spawn([&](caf::event_based_actor* self) -> caf::behavior {
        return {
            [&](std::uint64_t w) {
                rx.on_receive(w);
                ctl.maybe_publish(rx);
            },
            [&, self](stop_atom) {
                ctl.publish(rx);
                ctl.finish();
                done.store(true, std::memory_order_release);
                self->quit();
            },
        };
    });
    run_result r = ctl.run(
        [&](int i) {
            sender& tx = ctl.sender_of(i);
            ctl.arrive_and_wait();
            while (ctl.keep_sending(tx)) caf::anon_send(target, tx.next_word());
        },
        [&](int) {
            ctl.arrive_and_wait();
            wait_for(done, ctl);
        },
        // Sent after every producer joined: it arrives behind all their messages.
        [&] { caf::anon_send(target, stop_atom::value); });
    r.payload = sizeof(std::uint64_t);
    return r;
}

run_result caf_pingpong(run_params p) {
    p.producers = 1;
    run_control ctl(p);
    caf::actor_system_config cfg;
    caf::actor_system sys{caf_config(cfg, p.consumers)};
    std::atomic<bool> done{false};
    auto pong = sys.spawn([](caf::event_based_actor* self) -> caf::behavior {
        return {[self](std::uint64_t w) { self->send(caf::actor_cast<caf::actor>(self->current_sender()), w); }};
    });
    auto ping = sys.spawn([&](caf::event_based_actor* self) -> caf::behavior {
        return {
            [&, self](start_atom) { self->send(pong, ctl.sender_of(0).next_word()); },
            [&, self](std::uint64_t w) {
                receiver& rx = ctl.receiver_of(0);
                rx.on_receive(w);
                ctl.maybe_publish(rx);
                sender& tx = ctl.sender_of(0);
                if (ctl.keep_sending(tx)) {
                    self->send(pong, tx.next_word());
                } else {
                    ctl.publish(rx);
                    ctl.finish();
                    done.store(true, std::memory_order_release);
                }
            },
        };
    });
    run_result r = ctl.run(
        [&](int) {
            ctl.arrive_and_wait();
            caf::anon_send(ping, start_atom::value);
            wait_for(done, ctl);
        },
        [&](int) {
            ctl.arrive_and_wait();
            wait_for(done, ctl);
        });
    caf::anon_send_exit(ping, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(pong, caf::exit_reason::user_shutdown);
    r.payload = sizeof(std::uint64_t);
    return r;
}
#endif

const registration tell{{
    .name = "actor.tell",
    .description = "P senders flood one actor (tell); C threads run the actors",
    .impls =
        {
            {"courier", courier_tell},
            {"asio_post", asio_post_bench},
#if COURIER_BENCH_HAVE_CAF
            {"caf", caf_tell},
#endif
        },
    .shapes = {{1, 1}, {1, 2}, {2, 2}},
    .messages = 4'000'000,
    .smoke_messages = 2'000,
}};

const registration pingpong{{
    .name = "actor.pingpong",
    .description = "round trips between two actors (messages = round trips; C threads run them)",
    .impls =
        {
            {"courier", courier_pingpong},
            {"asio_post", asio_post_pingpong},
#if COURIER_BENCH_HAVE_CAF
            {"caf", caf_pingpong},
#endif
        },
    .shapes = {{1, 1}, {1, 2}},
    .messages = 1'000'000,
    .smoke_messages = 2'000,
}};

}  // namespace
}  // namespace courier_bench
