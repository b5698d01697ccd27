// The example of docs/jobs.md, compiled and run: the page quotes the code between the "doc:"
// markers (tests/docs/check_snippets.py checks that it does), so a snippet that stops compiling
// or stops being true fails here. Everything runs on a manual runtime: retries, backoff and
// cron move the manual clock, nothing sleeps.
#include <courier/jobs/job_system.hpp>
#include <courier/runtime/runtime.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

// Named, not anonymous: the JSON functions the macros define need not all be used.
namespace jobs_doc {

using namespace std::chrono_literals;

// doc: job-type
struct send_email {
    static constexpr std::string_view job_type = "email.send";   // optional: the name in events
    std::string to;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(send_email, to)             // optional: JSON in dead letters
};
// doc: end

// The mail server the page's handler calls: refuses the first message, then accepts.
struct fake_smtp {
    std::vector<std::string> sent;
    int refusals_left = 1;
};
fake_smtp smtp;
std::string smtp_send(const std::string& to) {
    if (smtp.refusals_left > 0) {
        --smtp.refusals_left;
        throw std::runtime_error("421 try again later");
    }
    smtp.sent.push_back(to);
    return "250 queued for " + to;
}

// The jobs of the chain and the group.
struct fetch {
    std::string url;
};
struct parse {
    std::string body;
};
struct store {
    std::size_t words = 0;
};
struct resize {
    std::string file;
};

TEST_CASE("docs/jobs.md: a queue with a handler, options, retries on the clock, repeats, a chain and a group",
          "[jobs][docs]") {
    smtp = fake_smtp{};
    const courier::time_point t0 = courier::manual_clock{}.now();

    // doc: queue
    courier::manual_clock clock;
    courier::runtime rt(courier::runtime::manual, clock);           // a program: courier::runtime rt;
    courier::job_system jobs(rt, {.concurrency = 8});                 // declare it after the runtime
    auto emails = jobs.queue("emails", {.concurrency = 4, .weight = 3,
                                        .rate_limit = {.max = 100, .interval = 1s}});
    emails.handle<send_email>([](const send_email& e, courier::job_context& ctx) {
        ctx.report_progress(50, "rendered");
        ctx.throw_if_cancelled();                                    // cooperative cancellation
        return smtp_send(e.to);                                      // the result is kept in the job
    });

    auto h = emails.enqueue(send_email{"ada@example.com"},
                            {.max_attempts = 5,
                             .backoff = courier::retry_policy::exponential(1s, 2.0, 1min, 0),
                             .timeout = 30s, .ttl = 1h, .dedup_key = "welcome:ada"}).value();
    std::optional<courier::job_state> outcome;
    h.async_wait([&](courier::job_state s) { outcome = s; });  // completed, failed, dead, expired or cancelled
    auto waited = h.async_wait(boost::asio::use_future);
    rt.poll();        // a manual runtime runs jobs here: the first attempt...
    rt.advance(2s);   // ...and its retry, once the clock has passed the backoff (1 s +/- 20%)
    courier::job_state s = waited.get();
    // doc: end

    CHECK(clock.now() - t0 == 2s);  // the manual clock moved; no real time passed
    CHECK(s == courier::job_state::completed);
    CHECK(outcome == courier::job_state::completed);
    CHECK(h.attempts() == 2);  // the first was refused, the retry ran about 1 s later
    REQUIRE(h.errors().size() == 1);
    CHECK(h.errors()[0].error.find("421 try again later") != std::string::npos);
    REQUIRE(h.result<std::string>());
    CHECK(*h.result<std::string>() == "250 queued for ada@example.com");
    CHECK(h.progress().percent == 50);
    CHECK(h.progress().message == "rendered");
    CHECK(h.payload_json() == nlohmann::json{{"to", "ada@example.com"}});
    CHECK(h.type() == "email.send");

    // doc: repeat
    // Every day at 07:30 UTC; every 5 minutes.
    auto daily = emails.repeat(send_email{"ops@example.com"}, courier::repeat_schedule::on("30 7 * * *").value()).value();
    auto often = emails.repeat(send_email{"ops@example.com"}, courier::repeat_schedule::every(5min)).value();
    // doc: end
    smtp.sent.clear();
    for (int i = 0; i < 10; ++i) rt.advance(1min);
    CHECK(smtp.sent == std::vector<std::string>(2, "ops@example.com"));  // 5 and 10 minutes in
    CHECK(emails.cancel_repeat(often));
    const auto day = std::chrono::floor<std::chrono::days>(clock.now());
    rt.advance(day + 7h + 29min - clock.now());  // 07:29 UTC: the daily job has not run yet
    CHECK(smtp.sent.size() == 2);
    rt.advance(2min);
    CHECK(smtp.sent.size() == 3);  // 07:30 UTC
    CHECK(emails.cancel_repeat(daily));

    // doc: flows
    // A chain (each result feeds the next) and a group with a callback (a chord).
    auto pages = jobs.queue("pages");
    pages.handle<fetch>([](const fetch& f) { return "<p>hello world from " + f.url + "</p>"; });
    pages.handle<parse>([](const parse& p) { return static_cast<std::size_t>(std::ranges::count(p.body, ' ') + 1); });
    std::vector<std::size_t> stored;
    pages.handle<store>([&](const store& s) { stored.push_back(s.words); });
    auto flow = jobs.chain(pages, fetch{"https://x.org"})
                    .then(pages, [](const std::string& body) { return parse{body}; })
                    .then(pages, [](const std::size_t& words) { return store{words}; })
                    .start().value();

    auto images = jobs.queue("images", {.concurrency = 2});
    images.handle<resize>([](const resize& r) { return r.file + ".small"; });
    std::vector<std::string> files{"a.png", "b.png", "c.png"}, thumbnails;
    auto g = jobs.group();
    for (auto& f : files) g.add(images, resize{f});
    g.on_complete([&](const std::vector<courier::job_handle>& all) {  // every one finished
        for (auto& job : all) thumbnails.push_back(*job.result<std::string>());
    });
    auto resized = g.start().value();
    rt.poll();
    // doc: end

    CHECK(flow.outcome() == courier::job_state::completed);
    CHECK(stored == std::vector<std::size_t>{4});  // "<p>hello world from https://x.org</p>"
    CHECK(resized.outcome() == courier::job_state::completed);
    std::ranges::sort(thumbnails);
    CHECK(thumbnails == std::vector<std::string>{"a.png.small", "b.png.small", "c.png.small"});
}

}  // namespace jobs_doc
