// Output of courier-bench: the readable table, one JSON object per line, CSV for the sweep
// charts, the progress bar, and the JSON-lines checker used by --smoke and --validate.
#pragma once

#include "driver.hpp"

#include <iosfwd>
#include <string>
#include <vector>

namespace courier_bench {

/// One result as a JSON object on one line (fields documented in bench/README.md).
std::string json_line(const case_result& c, const impl_summary& s, const options& opt);

/// The case as a table: one row per impl, ratio courier/impl on the baselines' rows.
void print_table(std::ostream& out, const case_result& c, const options& opt);

/// CSV: the header once, then one row per impl and case (what bench/plot reads).
void write_csv_header(std::ostream& out);
void write_csv_rows(std::ostream& out, const case_result& c, const options& opt);

/// Checks JSON lines as courier-bench writes them: each line an object with the required
/// fields of the right types, a known impl name and ordered percentiles. Returns one message
/// per problem ("line 3: ..."); `lines` receives the number of lines checked.
std::vector<std::string> validate_json_lines(std::istream& in, std::size_t& lines);

/// A one-line progress bar on stderr, redrawn in place; silent unless enabled.
class progress_bar {
public:
    explicit progress_bar(bool enabled) : enabled_(enabled) {}
    ~progress_bar() { clear(); }
    void update(int step, int total, const std::string& label);
    void clear();

private:
    bool enabled_;
    bool drawn_ = false;
};

}  // namespace courier_bench
