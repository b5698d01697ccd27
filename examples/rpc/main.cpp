// Request-reply between modules, as with NATS: a checkout asks "what does this cost?" without
// knowing who answers. Three pricing workers form a queue group and share the requests (each
// request to exactly one of them, round robin); a scatter-gather asks every worker at once;
// a request to a responder that is too slow ends with a typed timeout (its late reply is
// counted, not delivered), and a request nobody can answer fails at once.
// Exits 0 only if every request got the right answer or the right error.
#include <courier/courier.hpp>

#include <boost/asio/use_future.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

struct quote {
    static constexpr courier::event_name event_type{"pricing.quote.given.v1"};
    std::string sku;
    long cents = 0;
    std::string worker;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(quote, sku, cents, worker)
};
struct get_quote {
    static constexpr courier::event_name event_type{"pricing.quote.requested.v1"};
    using reply_type = quote;  // lets request() infer the reply type
    std::string sku;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(get_quote, sku)
};
struct stock_level {
    static constexpr courier::event_name event_type{"inventory.stock.level.v1"};
    std::string sku;
    int units = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(stock_level, sku, units)
};
struct get_stock {
    static constexpr courier::event_name event_type{"inventory.stock.requested.v1"};
    using reply_type = stock_level;
    std::string sku;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(get_stock, sku)
};

static long price_of(const std::string& sku) { return 100 * static_cast<long>(sku.size()); }

int main() {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::rpc rpc(rt.bus());  // declared after the runtime

    // Three workers in one queue group ("pricing"): they share the requests.
    std::atomic<int> served[3] = {0, 0, 0};
    std::vector<courier::responder> workers;
    for (int w = 0; w < 3; ++w) {
        workers.push_back(rpc.respond<get_quote>(
            [&served, w](const get_quote& q) -> courier::result<quote> {
                if (q.sku.empty())
                    return courier::unexpected(courier::errc::invalid_argument, "[shop.pricing.empty_sku] no sku given");
                served[w]++;
                return quote{q.sku, price_of(q.sku), "worker-" + std::to_string(w)};
            },
            {.name = "pricing-" + std::to_string(w), .group = "pricing"}));
    }

    // 30 requests in flight at once, as futures.
    std::vector<std::future<courier::result<quote>>> answers;
    for (int i = 0; i < 30; ++i)
        answers.push_back(rpc.request(get_quote{"sku-" + std::to_string(i)}, 2s, boost::asio::use_future));
    int right = 0;
    for (int i = 0; i < 30; ++i) {
        auto r = answers[i].get();
        if (r && r->sku == "sku-" + std::to_string(i) && r->cents == price_of(r->sku)) ++right;
    }
    const int s0 = served[0], s1 = served[1], s2 = served[2];
    std::cout << "30 requests to the 'pricing' group: " << right << " right answers; served by worker-0/1/2: "
              << s0 << "/" << s1 << "/" << s2 << "\n";

    // A responder's error result reaches the caller as it is.
    auto refused = rpc.request(get_quote{""}, 2s, boost::asio::use_future).get();
    std::cout << "empty sku: " << refused.error().message << "\n";

    // Scatter-gather: every responder answers the same request; whatever arrives within the window.
    std::promise<courier::result<courier::gather_result<quote>>> gathered;
    rpc.request_all(get_quote{"sku-x"}, 1s, [&](courier::result<courier::gather_result<quote>> g) { gathered.set_value(std::move(g)); });
    auto all = gathered.get_future().get();
    std::cout << "scatter-gather: " << all->replies.size() << " replies of " << all->asked << " asked, complete: " << std::boolalpha
              << all->complete << "\n";

    // A timeout: the inventory service takes 300 ms, the caller waits 50 ms.
    auto slow = rpc.respond<get_stock>([](const get_stock& q) {
        std::this_thread::sleep_for(300ms);
        return stock_level{q.sku, 7};
    }, {.name = "inventory"});
    auto t0 = std::chrono::steady_clock::now();
    auto late = rpc.request(get_stock{"sku-1"}, 50ms, boost::asio::use_future).get();
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "slow inventory: " << late.error().message << " (after ~" << (waited < 250 ? "50" : "300+") << " ms)\n";
    // The reply still comes, 250 ms later: it is dropped and counted, never delivered to anyone.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (rpc.metrics().late_replies < 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    std::cout << "late replies counted: " << rpc.metrics().late_replies << "\n";

    // Nobody answers any more: the request fails at once, without waiting for its timeout.
    slow = {};
    t0 = std::chrono::steady_clock::now();
    auto none = rpc.request(get_stock{"sku-1"}, 5s, boost::asio::use_future).get();
    const bool at_once = std::chrono::steady_clock::now() - t0 < 1s;
    std::cout << "no responder: " << none.error().message << (at_once ? " (at once)" : " (too slow!)") << "\n";

    auto m = rpc.metrics();
    std::cout << "metrics: requests " << m.requests << ", replies " << m.replies << ", error replies " << m.error_replies
              << ", timeouts " << m.timeouts << ", no responders " << m.no_responders << "\n";

    const bool ok = right == 30 && s0 == 10 && s1 == 10 && s2 == 10 &&
                    refused.error() == courier::errc::invalid_argument && all && all->replies.size() == 3 && all->complete &&
                    late.error() == courier::errc::timeout && waited < 250 && m.late_replies == 1 &&
                    none.error() == courier::errc::no_responders && at_once && m.timeouts == 1;
    rt.stop();
    std::cout << (ok ? "rpc: ok\n" : "rpc: FAILED\n");
    return ok ? 0 : 1;
}
