// Builds the document of an envelope's `data` in one pass over its text (delimiting it and
// measuring its depth on the way), for the common form
// nlohmann's dump() writes: no white space, no escapes, integers without fractions. The
// library's own parser goes through a lexer that copies every token into a buffer, asks the
// locale for its decimal point and converts numbers with strtoull; on a bridge's ingest that
// was a fifth of the thread's time. Anything outside that form is refused, and the caller
// parses the text with nlohmann::json::parse, which gives the same document for all that this
// accepts (tests/bridge/wire_fast.test.cpp compares the two).
#pragma once

#include <courier/bridge/detail/utf8.hpp>
#include <courier/core/config.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

COURIER_BEGIN_NAMESPACE
namespace bridge::detail {

/// The first byte at or after `i` that may be special in a JSON string (a quote, a backslash, a
/// control character or a high byte), or a position fewer than eight bytes from the end: what
/// follows is for a byte-wise look. The names, ids and times of an envelope are mostly such runs.
inline std::size_t plain_run_end(std::string_view t, std::size_t i) noexcept {
#if defined(__SSE2__)
    // Sixteen bytes at a time: a signed byte below 0x20 is a control character or a high byte.
    while (t.size() - i >= 16) {
        const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.data() + i));
        const __m128i quote = _mm_cmpeq_epi8(w, _mm_set1_epi8('"')), backslash = _mm_cmpeq_epi8(w, _mm_set1_epi8('\\'));
        const int special = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), _mm_cmplt_epi8(w, _mm_set1_epi8(0x20))));
        if (special != 0) return i + static_cast<std::size_t>(std::countr_zero(static_cast<unsigned>(special)));
        i += 16;
    }
#endif
    // Eight at a time, each test the "has a zero byte" trick: no false negative, and its lowest
    // flagged byte is exact (a borrow only runs upwards), so the byte-wise look starts at the
    // first special byte - for a short string, its closing quote.
    constexpr std::uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    while (t.size() - i >= 8) {
        std::uint64_t w;
        std::memcpy(&w, t.data() + i, 8);
        const std::uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
        const std::uint64_t special =
            (((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | (w - ones * 0x20) | w) & highs;
        if (special != 0) {
            if constexpr (std::endian::native == std::endian::little) i += static_cast<std::size_t>(std::countr_zero(special)) / 8;
            return i;
        }
        i += 8;
    }
    return i;
}

/// Reads the JSON string at `t[i]` when it has no escapes or control characters and is valid
/// UTF-8 (a parser gives such a string back unchanged): `out` views its contents, `i` moves past
/// its closing quote. False for anything else.
inline bool read_plain_json_string(std::string_view t, std::size_t& i, std::string_view& out) noexcept {
    // One table look-up per byte: 0 plain ASCII, 1 the closing quote, 2 an escape or a control
    // character, 3 a byte of a multi-byte sequence.
    static constexpr auto kind = [] {
        std::array<std::uint8_t, 256> k{};
        for (int c = 0; c < 0x20; ++c) k[static_cast<std::size_t>(c)] = 2;
        k['"'] = 1;
        k['\\'] = 2;
        for (int c = 0x80; c < 0x100; ++c) k[static_cast<std::size_t>(c)] = 3;
        return k;
    }();
    if (i >= t.size() || t[i] != '"') return false;
    const std::size_t start = ++i;
    bool ascii = true;
    i = plain_run_end(t, i);
    for (; i < t.size(); ++i) {
        const std::uint8_t k = kind[static_cast<unsigned char>(t[i])];
        if (COURIER_LIKELY(k == 0)) continue;
        if (k == 1) break;
        if (k == 2) return false;
        ascii = false;
    }
    if (i == t.size()) return false;
    out = t.substr(start, i - start);
    ++i;
    return ascii || valid_utf8(out);
}

class canonical_json {
public:
    /// True when `text` is one JSON value of that form; `out` is then its document. On false,
    /// `out` holds a partial document the caller must replace.
    static bool parse(std::string_view text, nlohmann::json& out) {
        std::size_t pos = 0, depth = 0;
        return parse_prefix(text, pos, out, depth) && pos == text.size();
    }
    /// Reads one value of that form at `text[pos]` (what follows it is the caller's): on true,
    /// `out` is its document, `pos` is past it and `depth` its nesting (1 for an object or array
    /// of scalars, 0 for a scalar). On false `pos` is unchanged and `out` must be replaced.
    static bool parse_prefix(std::string_view text, std::size_t& pos, nlohmann::json& out, std::size_t& depth) {
        return run<true>(text, pos, &out, depth);
    }
    /// As parse_prefix without the document: true exactly when parse_prefix would be (so that
    /// the text can be kept and parsed later, by `parse`, which then cannot fail but for memory).
    static bool check_prefix(std::string_view text, std::size_t& pos, std::size_t& depth) {
        return run<false>(text, pos, nullptr, depth);
    }

private:
    // Deeper documents go to nlohmann's parser, which does not recurse.
    static constexpr std::size_t max_depth = 64;
    // 19 digits always fit a uint64 (a nanosecond timestamp has 19); longer numbers, and
    // negative ones below the int64 range, are the library's to judge.
    static constexpr std::size_t max_digits = 19;

    explicit canonical_json(std::string_view t) noexcept : t_(t) {}

    // Build: the document goes to *out; otherwise the text is only checked (out is null).
    template <bool Build>
    static bool run(std::string_view text, std::size_t& pos, nlohmann::json* out, std::size_t& depth) {
        canonical_json p(text);
        p.i_ = pos;
        if (!p.value<Build>(out, 0)) return false;
        pos = p.i_;
        depth = p.deepest_;
        return true;
    }

    template <bool Build>
    bool value(nlohmann::json* out, std::size_t depth) {
        if (i_ >= t_.size()) return false;
        if ((t_[i_] == '{' || t_[i_] == '[') && depth + 1 > deepest_) deepest_ = depth + 1;
        switch (t_[i_]) {
        case '{': return depth < max_depth && object<Build>(out, depth + 1);
        case '[': return depth < max_depth && array<Build>(out, depth + 1);
        case '"': {
            std::string_view s;
            if (!str(s)) return false;
            if constexpr (Build) *out = std::string(s);
            return true;
        }
        case 't': return word("true") && (set<Build>(out, true), true);
        case 'f': return word("false") && (set<Build>(out, false), true);
        case 'n': return word("null") && (set<Build>(out, nullptr), true);
        default: return number<Build>(out);
        }
    }

    template <bool Build, class V>
    static void set(nlohmann::json* out, V v) {
        if constexpr (Build) *out = v;
    }

    template <bool Build>
    bool object(nlohmann::json* out, std::size_t depth) {
        ++i_;
        if constexpr (Build) *out = nlohmann::json::object();
        if (eat('}')) return true;
        for (;;) {
            std::string_view key;
            if (!str(key) || !eat(':')) return false;
            if constexpr (Build) {
                nlohmann::json v;
                if (!value<true>(&v, depth)) return false;
                // A repeated key: the last wins, as in the library.
                out->get_ref<nlohmann::json::object_t&>().insert_or_assign(std::string(key), std::move(v));
            } else if (!value<false>(nullptr, depth)) {
                return false;
            }
            if (eat(',')) continue;
            return eat('}');
        }
    }

    template <bool Build>
    bool array(nlohmann::json* out, std::size_t depth) {
        ++i_;
        if constexpr (Build) *out = nlohmann::json::array();
        if (eat(']')) return true;
        for (;;) {
            nlohmann::json* item = nullptr;
            if constexpr (Build) item = &out->get_ref<nlohmann::json::array_t&>().emplace_back();
            if (!value<Build>(item, depth)) return false;
            if (eat(',')) continue;
            return eat(']');
        }
    }

    // As the library types them: a non-negative integer is unsigned, a negative one (and -0) signed.
    template <bool Build>
    bool number(nlohmann::json* out) {
        const bool negative = t_[i_] == '-';
        if (negative) ++i_;
        const std::size_t start = i_;
        std::uint64_t v = 0;
        while (i_ < t_.size() && t_[i_] >= '0' && t_[i_] <= '9') v = v * 10 + static_cast<std::uint64_t>(t_[i_++] - '0');
        const std::size_t digits = i_ - start;
        if (digits == 0 || digits > max_digits || (t_[start] == '0' && digits > 1)) return false;
        if (i_ < t_.size() && (t_[i_] == '.' || t_[i_] == 'e' || t_[i_] == 'E')) return false;  // a fraction: the library's
        if (!negative) {
            set<Build>(out, v);
            return true;
        }
        constexpr std::uint64_t int64_magnitude_max = std::uint64_t{1} << 63;
        if (v > int64_magnitude_max) return false;
        set<Build>(out, v == int64_magnitude_max ? std::numeric_limits<std::int64_t>::min() : -static_cast<std::int64_t>(v));
        return true;
    }

    bool str(std::string_view& out) noexcept { return read_plain_json_string(t_, i_, out); }

    bool word(std::string_view w) noexcept {
        if (t_.compare(i_, w.size(), w) != 0) return false;
        i_ += w.size();
        return true;
    }

    bool eat(char c) noexcept {
        if (i_ >= t_.size() || t_[i_] != c) return false;
        ++i_;
        return true;
    }

    std::string_view t_;
    std::size_t i_ = 0;
    std::size_t deepest_ = 0;
};

}  // namespace bridge::detail
COURIER_END_NAMESPACE
