// Table, JSON lines, CSV, progress bar and the JSON checker of courier-bench (report.hpp).
#include "report.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace courier_bench {

namespace {

std::string fixed(double v, int digits) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(digits) << v;
    return s.str();
}

std::string human_rate(double per_s) {
    if (per_s >= 1e9) return fixed(per_s / 1e9, 2) + " G";
    if (per_s >= 1e6) return fixed(per_s / 1e6, 2) + " M";
    if (per_s >= 1e3) return fixed(per_s / 1e3, 1) + " k";
    return fixed(per_s, 0) + " ";
}

std::string human_ns(std::uint64_t ns) {
    const auto v = static_cast<double>(ns);
    if (ns < 1'000) return std::to_string(ns) + " ns";
    if (ns < 1'000'000) return fixed(v / 1e3, v < 1e4 ? 2 : 1) + " us";
    if (ns < 1'000'000'000) return fixed(v / 1e6, v < 1e7 ? 2 : 1) + " ms";
    return fixed(v / 1e9, 2) + " s";
}

std::string human_bytes(std::uint64_t b) {
    const auto v = static_cast<double>(b);
    if (b < 1024 * 1024) return fixed(v / 1024, 0) + " KiB";
    if (b < 1024ull * 1024 * 1024) return fixed(v / (1024 * 1024), 1) + " MiB";
    return fixed(v / (1024.0 * 1024 * 1024), 2) + " GiB";
}

/// Half the min..max range relative to the median, in percent.
double spread_pct(const impl_summary& s) { return s.median > 0 ? 50.0 * (s.max - s.min) / s.median : 0; }

std::string shape_of(const case_result& c) {
    if (!c.spec.sc->uses_threads) return "-";
    return std::to_string(c.spec.params.producers) + "P/" + std::to_string(c.spec.params.consumers) + "C";
}

}  // namespace

std::string json_line(const case_result& c, const impl_summary& s, const options& /*opt*/) {
    nlohmann::ordered_json j;
    j["scenario"] = c.spec.sc->name;
    j["impl"] = s.impl;
    j["producers"] = c.spec.params.producers;
    j["consumers"] = c.spec.params.consumers;
    j["payload"] = s.payload;
    if (!s.error.empty()) {
        j["error"] = s.error;
        return j.dump();
    }
    j["messages"] = s.messages;
    j["msgs_per_s"] = std::round(s.median);
    j["msgs_per_s_min"] = std::round(s.min);
    j["msgs_per_s_max"] = std::round(s.max);
    j["runs"] = s.rates.size();
    if (!s.latency.empty()) {
        j["p50_ns"] = s.latency.percentile(0.50);
        j["p99_ns"] = s.latency.percentile(0.99);
        j["p999_ns"] = s.latency.percentile(0.999);
        j["latency_samples"] = s.latency.count();
        j["sample_every"] = c.spec.params.sample_every;
    }
    if (s.peak_mem_bytes) j["peak_mem_bytes"] = *s.peak_mem_bytes;
    if (s.courier_ratio) j["courier_ratio"] = std::round(*s.courier_ratio * 1000) / 1000;
    if (s.courier_p50_ratio) j["courier_p50_ratio"] = std::round(*s.courier_p50_ratio * 1000) / 1000;
    if (c.spec.params.rate > 0) j["rate"] = c.spec.params.rate;
    if (c.spec.params.duration.count() > 0)
        j["duration_s"] = std::chrono::duration<double>(c.spec.params.duration).count();
    if (!c.spec.sweep_axis.empty()) j["sweep"] = c.spec.sweep_axis;
    return j.dump();
}

void print_table(std::ostream& out, const case_result& c, const options& opt) {
    const auto& p = c.spec.params;
    std::size_t payload = p.payload;
    std::uint64_t messages = p.messages;
    for (const auto& s : c.impls)
        if (s.error.empty()) {
            payload = s.payload;
            messages = s.messages;
            break;
        }
    out << "\n" << c.spec.sc->name << " - " << c.spec.sc->description << "\n  " << shape_of(c) << ", " << payload
        << " B, ";
    if (p.duration.count() > 0)
        out << std::chrono::duration<double>(p.duration).count() << " s per run (~" << messages << " msgs)";
    else
        out << messages << " msgs per run";
    if (p.rate > 0) out << ", paced at " << human_rate(p.rate) << "msgs/s";
    out << ", " << opt.runs << " runs, latency of 1 msg in " << p.sample_every << "\n";

    auto row = [&](const std::vector<std::string>& cells) {
        static const int width[] = {16, 12, 9, 10, 10, 10, 11, 14};
        out << "  ";
        for (std::size_t i = 0; i < cells.size(); ++i) {
            if (i == 0)
                out << std::left << std::setw(width[i]) << cells[i];
            else
                out << std::right << std::setw(width[i]) << cells[i];
        }
        out << "\n";
    };
    row({"impl", "msgs/s", "spread", "p50", "p99", "p99.9", "peak mem", "courier/impl"});
    for (const auto& s : c.impls) {
        if (!s.error.empty()) {
            out << "  " << std::left << std::setw(16) << s.impl << "FAILED: " << s.error << "\n";
            continue;
        }
        const bool lat = !s.latency.empty();
        row({s.impl, human_rate(s.median) + "/s", "+-" + fixed(spread_pct(s), 1) + "%",
             lat ? human_ns(s.latency.percentile(0.5)) : "-", lat ? human_ns(s.latency.percentile(0.99)) : "-",
             lat ? human_ns(s.latency.percentile(0.999)) : "-", s.peak_mem_bytes ? human_bytes(*s.peak_mem_bytes) : "-",
             s.courier_ratio       ? fixed(*s.courier_ratio, 2) + "x"
             : s.courier_p50_ratio ? fixed(*s.courier_p50_ratio, 2) + "x p50"
                                   : ""});
    }
}

void write_csv_header(std::ostream& out) {
    out << "scenario,sweep,impl,producers,consumers,payload,messages,runs,msgs_per_s,msgs_per_s_min,"
           "msgs_per_s_max,p50_ns,p99_ns,p999_ns,peak_mem_bytes,courier_ratio,courier_p50_ratio,rate\n";
}

void write_csv_rows(std::ostream& out, const case_result& c, const options&) {
    for (const auto& s : c.impls) {
        if (!s.error.empty()) continue;
        const bool lat = !s.latency.empty();
        out << c.spec.sc->name << ',' << c.spec.sweep_axis << ',' << s.impl << ',' << c.spec.params.producers << ','
            << c.spec.params.consumers << ',' << s.payload << ',' << s.messages << ',' << s.rates.size() << ','
            << fixed(s.median, 0) << ',' << fixed(s.min, 0) << ',' << fixed(s.max, 0) << ','
            << (lat ? std::to_string(s.latency.percentile(0.5)) : "") << ','
            << (lat ? std::to_string(s.latency.percentile(0.99)) : "") << ','
            << (lat ? std::to_string(s.latency.percentile(0.999)) : "") << ','
            << (s.peak_mem_bytes ? std::to_string(*s.peak_mem_bytes) : "") << ','
            << (s.courier_ratio ? fixed(*s.courier_ratio, 3) : "") << ','
            << (s.courier_p50_ratio ? fixed(*s.courier_p50_ratio, 3) : "") << ','
            << (c.spec.params.rate > 0 ? fixed(c.spec.params.rate, 0) : "") << '\n';
    }
}

std::vector<std::string> validate_json_lines(std::istream& in, std::size_t& lines) {
    std::vector<std::string> problems;
    std::string text;
    std::size_t number = 0;
    lines = 0;
    while (std::getline(in, text)) {
        ++number;
        if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
        ++lines;
        const std::string at = "line " + std::to_string(number) + ": ";
        const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded() || !j.is_object()) {
            problems.push_back(at + "not a JSON object");
            continue;
        }
        auto need = [&](const char* key, auto&& is_ok, const char* what) {
            if (!j.contains(key)) {
                problems.push_back(at + "missing \"" + key + "\"");
                return false;
            }
            if (!is_ok(j[key])) {
                problems.push_back(at + "\"" + key + "\" is not " + what);
                return false;
            }
            return true;
        };
        auto is_string = [](const nlohmann::json& v) { return v.is_string() && !v.get<std::string>().empty(); };
        auto is_count = [](const nlohmann::json& v) { return v.is_number_unsigned() || (v.is_number_integer() && v.get<long long>() >= 0); };
        auto is_positive = [](const nlohmann::json& v) { return v.is_number() && v.get<double>() > 0; };

        need("scenario", is_string, "a non-empty string");
        if (need("impl", is_string, "a non-empty string")) {
            const auto name = j["impl"].get<std::string>();
            if (std::none_of(std::begin(known_impls), std::end(known_impls), [&](const char* k) { return name == k; }))
                problems.push_back(at + "unknown impl \"" + name + "\"");
        }
        need("producers", is_count, "a count");
        need("consumers", is_count, "a count");
        need("payload", is_count, "a count");
        if (j.contains("error")) {
            problems.push_back(at + "the run failed: " + j["error"].dump());
            continue;
        }
        need("messages", is_positive, "a positive count");
        need("msgs_per_s", is_positive, "a positive number");
        for (const char* key : {"p50_ns", "p99_ns", "p999_ns", "peak_mem_bytes", "msgs_per_s_min", "msgs_per_s_max"})
            if (j.contains(key) && !j[key].is_number()) problems.push_back(at + "\"" + key + "\" is not a number");
        if (j.contains("p50_ns") != j.contains("p99_ns")) problems.push_back(at + "p50_ns and p99_ns come together");
        if (j.contains("p50_ns") && j.contains("p99_ns") && j["p50_ns"].is_number() && j["p99_ns"].is_number()) {
            const auto p50 = j["p50_ns"].get<double>(), p99 = j["p99_ns"].get<double>();
            const auto p999 = j.value("p999_ns", p99);
            if (!(p50 <= p99 && p99 <= p999)) problems.push_back(at + "percentiles out of order");
        }
        for (const char* key : {"courier_ratio", "courier_p50_ratio"})
            if (j.contains(key) && !is_positive(j[key])) problems.push_back(at + "\"" + key + "\" is not a positive number");
    }
    return problems;
}

void progress_bar::update(int step, int total, const std::string& label) {
    if (!enabled_) return;
    constexpr int width = 30;
    const int filled = total > 0 ? width * std::min(step, total) / total : 0;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    std::string text = "\r[" + bar + "] " + std::to_string(step) + "/" + std::to_string(total) + "  " + label;
    std::fprintf(stderr, "%s\033[K", text.c_str());
    std::fflush(stderr);
    drawn_ = true;
}

void progress_bar::clear() {
    if (!drawn_) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    drawn_ = false;
}

}  // namespace courier_bench
