#pragma once

// A strict parser of the Prometheus text exposition format (0.0.4) for the
// tests: it refuses what Prometheus' own parser refuses and what the format's
// conventions forbid, so a scrape that parses here is one Prometheus takes.
//
// Checked: metric and label name syntax; label values with only the \\, \"
// and \n escapes; values (floats, +Inf, -Inf, NaN) with an optional integer
// timestamp; at most one HELP and one TYPE per family, TYPE before its
// samples; a family's lines contiguous (never reopened); sample names equal
// to the family's (histograms: _bucket, _sum, _count; summaries: _sum,
// _count); no series twice; every histogram series has an le label on its
// buckets, cumulative non-decreasing counts, a +Inf bucket equal to _count,
// and a _sum; the text ends with a newline. Header-only; no gtest inside.

#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace warmpool::testing::promtext {

using LabelMap = std::map<std::string, std::string>;

struct Sample {
  std::string name;
  LabelMap labels;
  double value = 0;
};

struct Family {
  std::string name;
  std::string type = "untyped";
  std::string help;
  std::vector<Sample> samples;
};

struct Parsed {
  std::map<std::string, Family> families;
  std::string error;  // "" when the whole text is valid

  // The value of the one sample `name` with exactly `labels`; NaN when none.
  double Value(const std::string& name, const LabelMap& labels = {}) const {
    for (const auto& [fname, f] : families) {
      for (const Sample& s : f.samples) {
        if (s.name == name && s.labels == labels) return s.value;
      }
    }
    return std::nan("");
  }
};

namespace detail {

inline bool NameStart(char c, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}
inline bool NameChar(char c, bool colon) { return NameStart(c, colon) || (c >= '0' && c <= '9'); }

inline bool ValidName(const std::string& s, bool colon) {
  if (s.empty() || !NameStart(s[0], colon)) return false;
  for (char c : s) {
    if (!NameChar(c, colon)) return false;
  }
  return true;
}

inline bool ParseValue(const std::string& text, double* out) {
  if (text == "+Inf" || text == "Inf") {
    *out = INFINITY;
    return true;
  }
  if (text == "-Inf") {
    *out = -INFINITY;
    return true;
  }
  if (text == "NaN") {
    *out = NAN;
    return true;
  }
  if (text.empty()) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) {
      return false;
    }
  }
  char* end = nullptr;
  *out = std::strtod(text.c_str(), &end);
  return end != nullptr && *end == '\0';
}

// The family a sample name belongs to, given the families declared so far.
inline std::string FamilyOf(const std::string& sample, const std::map<std::string, Family>& fams) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string sfx = suffix;
    if (sample.size() > sfx.size() &&
        sample.compare(sample.size() - sfx.size(), sfx.size(), sfx) == 0) {
      const std::string base = sample.substr(0, sample.size() - sfx.size());
      auto it = fams.find(base);
      if (it != fams.end() &&
          (it->second.type == "histogram" || (it->second.type == "summary" && sfx != "_bucket"))) {
        return base;
      }
    }
  }
  return sample;
}

}  // namespace detail

inline Parsed Parse(const std::string& text) {
  Parsed p;
  auto fail = [&](int line_no, const std::string& why) {
    p.error = "line " + std::to_string(line_no) + ": " + why;
    return p;
  };
  if (!text.empty() && text.back() != '\n') return fail(0, "text does not end with a newline");
  std::set<std::string> closed;  // families whose lines ended
  std::string current;           // the family of the previous line
  std::set<std::pair<std::string, LabelMap>> seen;
  std::map<std::string, bool> has_type, has_help;
  int line_no = 0;
  size_t pos = 0;
  auto enter = [&](const std::string& family, int n) -> bool {
    if (family == current) return true;
    if (!current.empty()) closed.insert(current);
    if (closed.count(family)) {
      p.error = "line " + std::to_string(n) + ": family " + family + " appears again";
      return false;
    }
    current = family;
    return true;
  };
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    const std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (line.empty()) continue;
    if (line[0] == '#') {
      // "# HELP name text" / "# TYPE name type"; other comments are allowed.
      if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
        const bool help = line[2] == 'H';
        const std::string rest = line.substr(7);
        const size_t sp = rest.find(' ');
        const std::string name = rest.substr(0, sp);
        const std::string arg = sp == std::string::npos ? "" : rest.substr(sp + 1);
        if (!detail::ValidName(name, true)) return fail(line_no, "bad metric name '" + name + "'");
        if (!enter(name, line_no)) return p;
        Family& f = p.families[name];
        f.name = name;
        if (help) {
          if (has_help[name]) return fail(line_no, "second HELP for " + name);
          has_help[name] = true;
          for (size_t i = 0; i < arg.size(); ++i) {
            if (arg[i] == '\\') {
              if (i + 1 >= arg.size() || (arg[i + 1] != '\\' && arg[i + 1] != 'n')) {
                return fail(line_no, "bad escape in HELP of " + name);
              }
              ++i;
            }
          }
          f.help = arg;
        } else {
          if (has_type[name]) return fail(line_no, "second TYPE for " + name);
          if (!f.samples.empty()) return fail(line_no, "TYPE after samples of " + name);
          if (arg != "counter" && arg != "gauge" && arg != "histogram" && arg != "summary" &&
              arg != "untyped") {
            return fail(line_no, "unknown type '" + arg + "'");
          }
          has_type[name] = true;
          f.type = arg;
        }
      }
      continue;
    }
    // name[{labels}] value [timestamp]
    size_t i = 0;
    while (i < line.size() && detail::NameChar(line[i], true)) ++i;
    Sample s;
    s.name = line.substr(0, i);
    if (!detail::ValidName(s.name, true)) return fail(line_no, "bad sample name in '" + line + "'");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        size_t start = i;
        while (i < line.size() && detail::NameChar(line[i], false)) ++i;
        const std::string label = line.substr(start, i - start);
        if (!detail::ValidName(label, false))
          return fail(line_no, "bad label name in '" + line + "'");
        if (line.compare(i, 2, "=\"") != 0) return fail(line_no, "expected =\" after " + label);
        i += 2;
        std::string value;
        bool closed_quote = false;
        while (i < line.size()) {
          const char c = line[i++];
          if (c == '"') {
            closed_quote = true;
            break;
          }
          if (c == '\\') {
            if (i >= line.size()) break;
            const char e = line[i++];
            if (e == '\\') {
              value += '\\';
            } else if (e == '"') {
              value += '"';
            } else if (e == 'n') {
              value += '\n';
            } else {
              return fail(line_no, std::string("bad escape \\") + e + " in a label value");
            }
          } else {
            value += c;
          }
        }
        if (!closed_quote) return fail(line_no, "unterminated label value");
        if (s.labels.count(label)) return fail(line_no, "label " + label + " twice");
        s.labels[label] = value;
        if (i < line.size() && line[i] == ',') {
          ++i;
        } else if (i >= line.size() || line[i] != '}') {
          return fail(line_no, "expected , or } in '" + line + "'");
        }
      }
    }
    if (i >= line.size() || line[i] != ' ')
      return fail(line_no, "expected a space before the value");
    const std::string rest = line.substr(i + 1);
    const size_t sp = rest.find(' ');
    if (!detail::ParseValue(rest.substr(0, sp), &s.value)) {
      return fail(line_no, "bad value in '" + line + "'");
    }
    if (sp != std::string::npos) {
      const std::string ts = rest.substr(sp + 1);
      if (ts.empty() || ts.find_first_not_of("-0123456789") != std::string::npos) {
        return fail(line_no, "bad timestamp in '" + line + "'");
      }
    }
    const std::string family = detail::FamilyOf(s.name, p.families);
    if (!enter(family, line_no)) return p;
    Family& f = p.families[family];
    f.name = family;
    if (f.type == "histogram" && s.name == family) {
      return fail(line_no, "histogram " + family + " has a bare sample");
    }
    if (f.type == "histogram" && s.name == family + "_bucket" && !s.labels.count("le")) {
      return fail(line_no, "bucket without le");
    }
    if (!seen.insert({s.name, s.labels}).second) return fail(line_no, "series twice: " + line);
    f.samples.push_back(std::move(s));
  }
  // Histogram consistency, per series (labels without le).
  for (const auto& [name, f] : p.families) {
    if (f.type != "histogram") continue;
    std::map<LabelMap, std::vector<std::pair<double, double>>> buckets;
    std::map<LabelMap, double> counts;
    std::set<LabelMap> sums;
    for (const Sample& s : f.samples) {
      if (s.name == name + "_bucket") {
        LabelMap key = s.labels;
        double le = 0;
        if (!detail::ParseValue(key["le"], &le)) return fail(0, name + ": bad le " + key["le"]);
        key.erase("le");
        buckets[key].emplace_back(le, s.value);
      } else if (s.name == name + "_count") {
        counts[s.labels] = s.value;
      } else if (s.name == name + "_sum") {
        sums.insert(s.labels);
      }
    }
    for (const auto& [key, bs] : buckets) {
      double prev_le = -INFINITY, prev_count = 0;
      for (const auto& [le, count] : bs) {
        if (!(le > prev_le)) return fail(0, name + ": le not ascending");
        if (count < prev_count) return fail(0, name + ": buckets not cumulative");
        prev_le = le;
        prev_count = count;
      }
      if (!std::isinf(prev_le)) return fail(0, name + ": no +Inf bucket");
      if (!counts.count(key) || counts[key] != prev_count) {
        return fail(0, name + ": _count differs from the +Inf bucket");
      }
      if (!sums.count(key)) return fail(0, name + ": no _sum");
    }
  }
  return p;
}

}  // namespace warmpool::testing::promtext
