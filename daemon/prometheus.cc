#include "daemon/prometheus.h"

#include <charconv>
#include <cmath>

namespace warmpool::prom {

Histogram::Histogram(const std::vector<double>* b) : bounds(b) {
  counts.assign((bounds ? bounds->size() : 0) + 1, 0);
}

void Histogram::Observe(double value) {
  size_t i = 0;
  if (bounds) {
    while (i < bounds->size() && value > (*bounds)[i]) ++i;
  }
  ++counts[i];
  sum += value;
  ++count;
}

void LabeledHistograms::Observe(const std::string& key, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) it = by_key_.emplace(key, Histogram(&bounds_)).first;
  it->second.Observe(value);
}

std::map<std::string, Histogram> LabeledHistograms::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_key_;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

namespace {

std::string EscapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void AppendLabels(std::string* out, const Labels& labels) {
  if (labels.empty()) return;
  *out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) *out += ',';
    first = false;
    *out += k;
    *out += "=\"";
    *out += EscapeLabelValue(v);
    *out += '"';
  }
  *out += '}';
}

}  // namespace

void TextWriter::Family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += EscapeHelp(help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void TextWriter::Sample(std::string_view name, const Labels& labels, double value) {
  out_ += name;
  AppendLabels(&out_, labels);
  out_ += ' ';
  out_ += FormatValue(value);
  out_ += '\n';
}

void TextWriter::HistogramSamples(std::string_view name, const Labels& labels, const Histogram& h) {
  static const std::vector<double> kNone;
  HistogramSamples(name, labels, h.bounds ? *h.bounds : kNone, h.counts, h.sum, h.count);
}

void TextWriter::HistogramSamples(std::string_view name, const Labels& labels,
                                  const std::vector<double>& bounds,
                                  const std::vector<uint64_t>& counts, double sum, uint64_t count) {
  const std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += i < counts.size() ? counts[i] : 0;
    Labels with_le = labels;
    with_le.emplace_back("le", i < bounds.size() ? FormatValue(bounds[i]) : "+Inf");
    Sample(bucket, with_le, static_cast<double>(cumulative));
  }
  Sample(std::string(name) + "_sum", labels, sum);
  Sample(std::string(name) + "_count", labels, static_cast<double>(count));
}

}  // namespace warmpool::prom
