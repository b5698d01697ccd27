// The examples of docs/actors.md, compiled and run: the page quotes the code between the "doc:"
// markers (tests/docs/check_snippets.py checks that it does), so a snippet that stops compiling
// or stops being true fails here. Everything runs on a manual runtime: no thread, no sleep.
#include <courier/actor/actor.hpp>
#include <courier/runtime/runtime.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/use_awaitable.hpp>
#if defined(BOOST_ASIO_HAS_CO_AWAIT)  // not with clang 14 + libstdc++ on Boost 1.74
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#endif
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <future>
#include <iostream>
#include <optional>

// A named namespace: this file shares a unity TU with actor.test.cpp, whose anonymous
// namespace has types of the same names.
namespace actor_doc {

using namespace std::chrono_literals;

// doc: behaviour
struct add { int by; };
struct get {};

struct counter {                               // the behaviour: state + handlers
    int n = 0;
    void handle(const add& a) { n += a.by; }   // tell
    int handle(const get&) { return n; }       // ask: the return value is the answer
};
// doc: end

TEST_CASE("docs/actors.md: tell, and ask through a callback, a future and a coroutine", "[actor][docs]") {
    // doc: tell-ask
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);  // a program: courier::runtime rt;
    courier::actor_system actors(rt);                      // declare it after the runtime
    auto c = actors.spawn<counter>(courier::actor_options{.name = "counter"});

    c.tell(add{2});
    std::optional<int> seen;
    c.ask(get{}, 1s, [&](courier::result<int> r) {         // callback...
        if (r) seen = *r; else std::cerr << r.error().message << '\n';
    });
    auto f = c.ask(get{}, 1s, boost::asio::use_future);    // ...future...
    rt.poll();                                             // (a manual runtime runs turns here)
    int n = f.get().value();
    // doc: end
    CHECK(seen == 2);
    CHECK(n == 2);
    CHECK(c.stats().processed == 3);
    CHECK(c.name() == "counter");

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
    std::optional<int> awaited;
    // doc: ask-coroutine
    boost::asio::co_spawn(rt.executor(), [&]() -> boost::asio::awaitable<void> {
        c.tell(add{40});
        courier::result<int> r = co_await c.ask(get{}, 1s, boost::asio::use_awaitable);  // ...coroutine
        if (r) awaited = *r;
    }, boost::asio::detached);
    // doc: end
    rt.poll();
    CHECK(awaited == 42);
#endif

    // An ask nobody answers in time is a typed error, on the runtime's clock.
    c.stop();
    rt.poll();
    std::optional<courier::result<int>> late;
    c.ask(get{}, 1s, [&](courier::result<int> r) { late = std::move(r); });
    rt.poll();
    REQUIRE(late);
    REQUIRE_FALSE(*late);
    CHECK(late->error().id() == "courier.actor.stopped");
}

// doc: context
struct ponger;
struct pinger;
struct ping { courier::actor_ref<pinger> from; int n; };
struct pong { int n; };

struct ponger {
    void handle(const ping& p) { p.from.tell(pong{p.n}); }
};
struct pinger {
    courier::actor_ref<ponger> peer;
    int last = 0;
    void handle(const pong& p, courier::actor_context<pinger>& ctx) {
        last = p.n;
        if (p.n < 3) peer.tell(ping{ctx.self(), p.n + 1});  // ctx: self(), stop(), spawn<Child>(), rt()
    }
    int handle(const get&) { return last; }
};
// doc: end

TEST_CASE("docs/actors.md: a handler reaches itself through its actor_context", "[actor][docs]") {
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);
    courier::actor_system actors(rt);
    auto po = actors.spawn<ponger>();
    auto pi = actors.spawn<pinger>(po);
    pi.tell(pong{0});
    rt.poll();
    std::optional<int> last;
    pi.ask(get{}, 1s, [&](courier::result<int> r) { last = r.value(); });
    rt.poll();
    CHECK(last == 3);
    CHECK(po.stats().processed == 3);  // ping 1, 2 and 3
    CHECK(pi.stats().processed == 5);  // pong 0 to 3, and the ask
}

}  // namespace actor_doc
