// The ZeroMQ baseline for message passing: each consumer owns a PULL socket bound to its own
// inproc:// endpoint, each producer a PUSH socket connected to all of them (PUSH spreads
// messages round-robin). Every message is copied into a zmq_msg by zmq_send; consumers poll
// with ZMQ_DONTWAIT, the same spin-and-pause loop as the queue consumers.
#pragma once

#include "../harness/queue_harness.hpp"

#include <zmq.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <vector>

namespace courier_bench {

namespace detail {
[[noreturn]] inline void zmq_fail(const char* what) {
    throw std::runtime_error(std::string(what) + ": " + zmq_strerror(zmq_errno()));
}

/// A context and its sockets, closed (linger 0) and terminated on every path.
class zmq_setup {
public:
    zmq_setup() : ctx_(zmq_ctx_new()) {
        if (!ctx_) zmq_fail("zmq_ctx_new");
    }
    zmq_setup(const zmq_setup&) = delete;
    zmq_setup& operator=(const zmq_setup&) = delete;
    ~zmq_setup() {
        for (void* s : sockets_) {
            int linger = 0;
            zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
            zmq_close(s);
        }
        zmq_ctx_term(ctx_);
    }
    void* socket(int type) {
        void* s = zmq_socket(ctx_, type);
        if (!s) zmq_fail("zmq_socket");
        sockets_.push_back(s);
        // A send or receive that waits longer than this rechecks whether the run was aborted.
        int timeout_ms = 100;
        zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
        return s;
    }

private:
    void* ctx_;
    std::vector<void*> sockets_;
};
}  // namespace detail

/// One run with P PUSH and C PULL sockets over inproc, messages of type Msg.
template <class Msg>
run_result run_zmq_inproc(const run_params& p) {
    detail::zmq_setup zmq;
    // Sockets are made here, before the run, and handed to the threads: a socket may move
    // between threads across a full memory barrier, which thread start provides.
    std::vector<void*> pulls, pushes;
    for (int c = 0; c < p.consumers; ++c) {
        void* s = zmq.socket(ZMQ_PULL);
        if (zmq_bind(s, ("inproc://courier-bench-" + std::to_string(c)).c_str()) != 0) detail::zmq_fail("zmq_bind");
        pulls.push_back(s);
    }
    for (int i = 0; i < p.producers; ++i) {
        void* s = zmq.socket(ZMQ_PUSH);
        for (int c = 0; c < p.consumers; ++c)
            if (zmq_connect(s, ("inproc://courier-bench-" + std::to_string(c)).c_str()) != 0)
                detail::zmq_fail("zmq_connect");
        pushes.push_back(s);
    }
    run_control ctl(p);
    const Msg prototype{};
    run_result r = ctl.run(
        [&](int i) {
            void* push = pushes[static_cast<std::size_t>(i)];
            sender& tx = ctl.sender_of(i);
            ctl.arrive_and_wait();
            while (ctl.keep_sending(tx)) {
                Msg m = prototype;
                m.word = tx.next_word();
                while (zmq_send(push, &m, sizeof m, 0) < 0) {
                    if (zmq_errno() != EAGAIN) detail::zmq_fail("zmq_send");
                    if (ctl.aborted()) return;
                }
            }
        },
        [&](int i) {
            void* pull = pulls[static_cast<std::size_t>(i)];
            receiver& rx = ctl.receiver_of(i);
            ctl.arrive_and_wait();
            Msg m;
            backoff wait;
            for (;;) {
                const int n = zmq_recv(pull, &m, sizeof m, ZMQ_DONTWAIT);
                if (n == static_cast<int>(sizeof m)) {
                    rx.on_receive(m.word);
                    ctl.maybe_publish(rx);
                    wait.reset();
                } else if (n >= 0) {
                    throw std::runtime_error("zmq_recv: message of " + std::to_string(n) + " bytes");
                } else if (zmq_errno() != EAGAIN) {
                    detail::zmq_fail("zmq_recv");
                } else if (ctl.done(rx)) {
                    return;
                } else {
                    wait.pause();
                }
            }
        });
    r.payload = sizeof(Msg);
    return r;
}

/// The run function for a scenario's impl list: `{"zmq_inproc", zmq_inproc_bench}`.
inline run_result zmq_inproc_bench(const run_params& p) {
    return with_message(p.payload, [&]<class Msg>() { return run_zmq_inproc<Msg>(p); });
}

}  // namespace courier_bench
