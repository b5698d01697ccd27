// Case planning, interleaved execution and summaries for courier-bench (see driver.hpp).
#include "driver.hpp"

#include "memory.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <exception>
#include <stdexcept>

namespace courier_bench {

bool matches_any(const std::string& name, const std::vector<std::string>& globs) {
    return std::any_of(globs.begin(), globs.end(),
                       [&](const std::string& g) { return fnmatch(g.c_str(), name.c_str(), 0) == 0; });
}

namespace {

/// Keeps an unbounded queue's backlog in memory: producers may run far ahead of consumers,
/// so the default count shrinks as payloads grow (<= 256 MiB of payload in flight at worst).
std::uint64_t default_messages(const scenario& sc, std::size_t payload, bool smoke) {
    if (smoke) return sc.smoke_messages;
    constexpr std::uint64_t budget = 256ull << 20;
    const std::uint64_t cap = std::max<std::uint64_t>(budget / std::max<std::size_t>(payload, 1), 20'000);
    return std::min(sc.messages, cap);
}

run_params params_for(const scenario& sc, const options& opt, shape s, std::size_t payload) {
    run_params p;
    p.producers = s.producers;
    p.consumers = s.consumers;
    p.payload = payload;
    p.duration = opt.smoke ? std::chrono::nanoseconds(0) : opt.duration;
    p.messages = opt.messages ? *opt.messages : default_messages(sc, payload, opt.smoke);
    p.rate = opt.smoke ? 0 : opt.rate;
    p.capacity = opt.capacity.value_or(run_params{}.capacity);
    p.sample_every = opt.sample_every;
    p.smoke = opt.smoke;
    return p;
}

double median_of(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

std::vector<bench_case> plan(const options& opt) {
    std::vector<bench_case> cases;
    for (const std::string& glob : opt.scenario_globs) {
        bool any = false;
        for (const scenario& sc : scenarios())
            if (fnmatch(glob.c_str(), sc.name.c_str(), 0) == 0) any = true;
        if (!any) throw std::invalid_argument("--scenario " + glob + " matches no scenario (see --list)");
    }
    for (const scenario& sc : scenarios()) {
        if (!matches_any(sc.name, opt.scenario_globs)) continue;
        const std::size_t payload = opt.payload.value_or(sc.payload);
        if (opt.sweep) {
            if (!sc.sweep) continue;
            // Threads: producers = consumers = 1, 2, 4, 8 whatever the core count, because
            // oversubscription is a case users hit. Payload: 8 B .. 4 KiB at 1P1C.
            for (int n : {1, 2, 4, 8})
                cases.push_back({&sc, params_for(sc, opt, {n, n}, payload), "threads"});
            for (std::size_t bytes : {8, 16, 64, 256, 1024, 4096})
                cases.push_back({&sc, params_for(sc, opt, {1, 1}, bytes), "payload"});
            // Latency: 1P1C paced well below saturation, every message timed, so the
            // percentiles show the hand-off itself rather than a backlog.
            run_params paced = params_for(sc, opt, {1, 1}, payload);
            paced.rate = opt.rate > 0 ? opt.rate : 100'000;
            paced.messages = static_cast<std::uint64_t>(paced.rate / 2);  // half a second per run
            paced.duration = std::chrono::nanoseconds(0);
            paced.sample_every = 1;
            cases.push_back({&sc, paced, "latency"});
            continue;
        }
        std::vector<shape> shapes = sc.shapes;
        if (sc.uses_threads && (opt.producers || opt.consumers))
            shapes = {{opt.producers.value_or(1), opt.consumers.value_or(1)}};
        for (shape s : shapes) cases.push_back({&sc, params_for(sc, opt, s, payload), ""});
    }
    return cases;
}

int count_steps(const std::vector<bench_case>& cases, const options& opt) {
    int steps = 0;
    for (const auto& c : cases) {
        int impls = 0;
        for (const auto& i : c.sc->impls) impls += matches_any(i.name, opt.impl_globs) ? 1 : 0;
        steps += impls * (opt.runs + (opt.smoke ? 0 : opt.warmup));
    }
    return steps;
}

case_result run_case(const bench_case& c, const options& opt, const progress_fn& progress, int& step, int total) {
    case_result out{c, {}};
    std::vector<const impl*> impls;
    for (const impl& i : c.sc->impls)
        if (matches_any(i.name, opt.impl_globs)) impls.push_back(&i);
    out.impls.resize(impls.size());
    std::vector<std::vector<std::uint64_t>> counts(impls.size());

    auto label = [&](const impl& i, const std::string& what) {
        return c.sc->name + " " + std::to_string(c.params.producers) + "P/" + std::to_string(c.params.consumers) +
               "C " + std::to_string(c.params.payload) + "B " + i.name + " " + what;
    };
    auto attempt = [&](const impl& i, const run_params& p) {
        run_result r;
        try {
            r = i.run(p);
        } catch (const std::exception& e) {
            r.error = std::string("threw: ") + e.what();
        }
        if (r.error.empty() && r.elapsed.count() <= 0) r.error = "reported no elapsed time";
        return r;
    };

    // Warm-up: page in the code, let the allocator grow its arenas, wake the CPU's clock.
    if (!opt.smoke && opt.warmup > 0) {
        run_params warm = c.params;
        warm.messages = std::max<std::uint64_t>(c.params.messages / 10, 1000);
        warm.duration = std::chrono::nanoseconds(0);
        for (int w = 0; w < opt.warmup; ++w)
            for (std::size_t k = 0; k < impls.size(); ++k) {
                if (progress) progress(++step, total, label(*impls[k], "warm-up"));
                run_result r = attempt(*impls[k], warm);
                if (!r.error.empty() && out.impls[k].error.empty()) out.impls[k].error = "warm-up: " + r.error;
            }
    }

    for (int run = 0; run < opt.runs; ++run) {
        // Round k runs every impl once; the order rotates each round so that no impl always
        // runs first (cold) or right after the heaviest one.
        for (std::size_t j = 0; j < impls.size(); ++j) {
            const std::size_t k = (j + static_cast<std::size_t>(run)) % impls.size();
            impl_summary& s = out.impls[k];
            if (progress)
                progress(++step, total, label(*impls[k], "run " + std::to_string(run + 1) + "/" + std::to_string(opt.runs)));
            if (!s.error.empty()) continue;  // a broken impl is reported once, not timed again
            peak_memory_probe mem;
            mem.start();
            run_result r = attempt(*impls[k], c.params);
            if (!r.error.empty()) {
                s.error = "run " + std::to_string(run + 1) + ": " + r.error;
                continue;
            }
            const auto peak = mem.peak_growth();
            if (peak && (!s.peak_mem_bytes || *peak > *s.peak_mem_bytes)) s.peak_mem_bytes = peak;
            s.rates.push_back(static_cast<double>(r.messages) / std::chrono::duration<double>(r.elapsed).count());
            s.latency.merge(r.latency);
            s.payload = r.payload ? r.payload : c.params.payload;
            counts[k].push_back(r.messages);
        }
    }

    const impl_summary* courier = nullptr;
    for (std::size_t k = 0; k < impls.size(); ++k) {
        impl_summary& s = out.impls[k];
        s.impl = impls[k]->name;
        if (s.payload == 0) s.payload = c.params.payload;
        if (!s.rates.empty()) {
            s.median = median_of(s.rates);
            s.min = *std::min_element(s.rates.begin(), s.rates.end());
            s.max = *std::max_element(s.rates.begin(), s.rates.end());
            std::vector<double> m(counts[k].begin(), counts[k].end());
            s.messages = static_cast<std::uint64_t>(median_of(m));
        }
        if (s.impl == "courier" && s.error.empty() && s.median > 0) courier = &s;
    }
    if (courier)
        for (auto& s : out.impls) {
            if (&s == courier || !s.error.empty() || s.median <= 0) continue;
            if (c.params.rate <= 0) {
                s.courier_ratio = courier->median / s.median;
            } else if (!s.latency.empty() && !courier->latency.empty()) {
                s.courier_p50_ratio = static_cast<double>(s.latency.percentile(0.5)) /
                                      static_cast<double>(std::max<std::uint64_t>(courier->latency.percentile(0.5), 1));
            }
        }
    return out;
}

}  // namespace courier_bench
