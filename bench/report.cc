#include "bench/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

namespace warmpool::bench {
namespace {

std::string Fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

std::string Percent(double v) {
  if (std::isnan(v)) return "–";
  return Fmt(v >= 0 ? "−%.1f%%" : "+%.1f%%", std::fabs(v));
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

std::string CsvNumber(double v) {
  if (std::isnan(v)) return "";
  return Fmt("%.3f", v);
}

std::string XmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

const Series* BaselineOf(const std::vector<Series>& all, const std::string& scenario) {
  for (const Series& s : all) {
    if (s.scenario == scenario && s.baseline) return &s;
  }
  return nullptr;
}

std::string HitsText(const Series& s) {
  if (s.baseline && s.SandboxHits() == 0) return "–";
  std::string out = std::to_string(s.SandboxHits()) + "/" + std::to_string(s.samples.size());
  if (s.ContainerHits() > 0) out += " (app " + std::to_string(s.ContainerHits()) + ")";
  return out;
}

}  // namespace

std::string FormatMs(double ms) {
  if (std::isnan(ms)) return "–";
  if (ms < 10) return Fmt("%.2f ms", ms);
  if (ms < 1000) return Fmt("%.1f ms", ms);
  return Fmt("%.3f s", ms / 1000);
}

std::string MarkdownTables(const std::vector<Series>& series,
                           const std::vector<std::pair<std::string, std::string>>& titles) {
  std::vector<std::string> order;
  for (const Series& s : series) {
    if (std::find(order.begin(), order.end(), s.scenario) == order.end()) {
      order.push_back(s.scenario);
    }
  }
  std::ostringstream out;
  for (const std::string& scenario : order) {
    out << "#### " << scenario << "\n\n";
    for (const auto& [name, title] : titles) {
      if (name == scenario && !title.empty()) out << title << "\n\n";
    }
    const Series* base = BaselineOf(series, scenario);
    out << "| variant | pods ok | pool hits | phase | min | p50 | p90 | p99 | max | p50 vs "
        << (base ? base->variant : "baseline") << " | p99 vs " << (base ? base->variant : "baseline")
        << " |\n";
    out << "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n";
    std::vector<std::string> notes;
    for (const Series& s : series) {
      if (s.scenario != scenario) continue;
      for (size_t p = 0; p < kPhaseCount; ++p) {
        const Phase phase = static_cast<Phase>(p);
        Summary sum = Summarize(s.Values(phase));
        std::string red50 = "", red99 = "";
        if (base && base != &s && sum.n > 0) {
          Summary b = Summarize(base->Values(phase));
          if (b.n > 0) {
            red50 = Percent(ReductionPercent(sum.p50, b.p50));
            red99 = Percent(ReductionPercent(sum.p99, b.p99));
          }
        }
        const bool first = p == 0;
        const bool total = phase == kTotal;
        auto cell = [&](double v) {
          std::string t = sum.n ? FormatMs(v) : "–";
          return total ? "**" + t + "**" : t;
        };
        out << "| " << (first ? s.variant : "") << " | "
            << (first ? std::to_string(s.Ok()) + "/" + std::to_string(s.samples.size()) : "")
            << " | " << (first ? HitsText(s) : "") << " | " << (total ? "**total**" : PhaseName(phase))
            << " | " << cell(sum.min) << " | " << cell(sum.p50) << " | " << cell(sum.p90) << " | "
            << cell(sum.p99) << " | " << cell(sum.max) << " | " << red50 << " | " << red99
            << " |\n";
      }
      if (!s.note.empty()) notes.push_back(s.variant + ": " + s.note);
    }
    out << "\n";
    for (const std::string& n : notes) out << "- " << n << "\n";
    if (!notes.empty()) out << "\n";
  }
  return out.str();
}

std::string SamplesCsv(const std::vector<Series>& series) {
  std::ostringstream out;
  out << "scenario,variant,pod,ok,sandbox_ms,create_ms,start_ms,app_ready_ms,total_ms,"
         "sandbox_outcome,container_outcome,idle_answer_ms,burst,answer,error\n";
  for (const Series& s : series) {
    for (const PodSample& p : s.samples) {
      out << CsvField(s.scenario) << "," << CsvField(s.variant) << "," << CsvField(p.pod) << ","
          << (p.ok ? 1 : 0);
      for (size_t i = 0; i < kPhaseCount; ++i) out << "," << (p.ok ? CsvNumber(p.ms[i]) : "");
      out << "," << CsvField(p.sandbox_outcome) << "," << CsvField(p.container_outcome) << ","
          << (p.idle_answer_ms >= 0 ? CsvNumber(p.idle_answer_ms) : "") << "," << p.burst << ","
          << CsvField(p.body) << "," << CsvField(p.error) << "\n";
    }
  }
  return out.str();
}

std::string SummaryCsv(const std::vector<Series>& series) {
  std::ostringstream out;
  out << "scenario,variant,phase,pods,ok,sandbox_hits,container_hits,min_ms,p50_ms,p90_ms,"
         "p99_ms,max_ms,mean_ms,p50_reduction_pct,p99_reduction_pct\n";
  for (const Series& s : series) {
    const Series* base = BaselineOf(series, s.scenario);
    for (size_t p = 0; p < kPhaseCount; ++p) {
      const Phase phase = static_cast<Phase>(p);
      Summary sum = Summarize(s.Values(phase));
      double r50 = std::nan(""), r99 = std::nan("");
      if (base && base != &s) {
        Summary b = Summarize(base->Values(phase));
        if (b.n && sum.n) {
          r50 = ReductionPercent(sum.p50, b.p50);
          r99 = ReductionPercent(sum.p99, b.p99);
        }
      }
      out << CsvField(s.scenario) << "," << CsvField(s.variant) << ","
          << CsvField(PhaseName(phase)) << "," << s.samples.size() << "," << s.Ok() << ","
          << s.SandboxHits() << "," << s.ContainerHits() << ","
          << (sum.n ? CsvNumber(sum.min) : "") << "," << (sum.n ? CsvNumber(sum.p50) : "") << ","
          << (sum.n ? CsvNumber(sum.p90) : "") << "," << (sum.n ? CsvNumber(sum.p99) : "") << ","
          << (sum.n ? CsvNumber(sum.max) : "") << "," << (sum.n ? CsvNumber(sum.mean) : "") << ","
          << CsvNumber(r50) << "," << CsvNumber(r99) << "\n";
    }
  }
  return out.str();
}

std::string CdfSvg(const std::vector<const Series*>& series, const std::string& title) {
  // Layout (pixels): plot area, legend on the right.
  const double width = 1010, height = 540;
  const double left = 70, right = 330, top = 50, bottom = 60;
  const double pw = width - left - right, ph = height - top - bottom;
  static const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                                   "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"};
  double lo = INFINITY, hi = 0;
  for (const Series* s : series) {
    for (double v : s->Values(kTotal)) {
      if (v > 0) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
  }
  if (!(hi > 0)) {
    lo = 1;
    hi = 10;
  }
  const double dlo = std::floor(std::log10(lo)), dhi = std::max(dlo + 1, std::ceil(std::log10(hi)));
  auto x_of = [&](double ms) {
    return left + (std::log10(std::max(ms, std::pow(10, dlo))) - dlo) / (dhi - dlo) * pw;
  };
  auto y_of = [&](double f) { return top + (1 - f) * ph; };

  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" viewBox=\"0 0 " << width << " " << height
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << left << "\" y=\"28\" font-size=\"15\" font-weight=\"bold\">"
    << XmlEscape(title) << "</text>\n";
  // Grid: decades with 2 and 5 between; fractions every 0.1.
  for (int d = static_cast<int>(dlo); d <= static_cast<int>(dhi); ++d) {
    for (int m : {1, 2, 5}) {
      const double v = m * std::pow(10, d);
      if (std::log10(v) > dhi + 1e-9) continue;
      const double x = x_of(v);
      o << "<line x1=\"" << x << "\" y1=\"" << top << "\" x2=\"" << x << "\" y2=\"" << top + ph
        << "\" stroke=\"" << (m == 1 ? "#bbb" : "#e4e4e4") << "\"/>\n";
      std::string label = v >= 1000 ? Fmt("%g s", v / 1000) : Fmt("%g ms", v);
      o << "<text x=\"" << x << "\" y=\"" << top + ph + 18 << "\" text-anchor=\"middle\" fill=\""
        << (m == 1 ? "#000" : "#666") << "\">" << label << "</text>\n";
    }
  }
  for (int i = 0; i <= 10; ++i) {
    const double y = y_of(i / 10.0);
    o << "<line x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << left + pw << "\" y2=\"" << y
      << "\" stroke=\"" << (i % 5 == 0 ? "#bbb" : "#eee") << "\"/>\n";
    o << "<text x=\"" << left - 8 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">"
      << Fmt("%.1f", i / 10.0) << "</text>\n";
  }
  o << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"#000\"/>\n";
  o << "<text x=\"" << left + pw / 2 << "\" y=\"" << height - 18
    << "\" text-anchor=\"middle\">RunPodSandbox to first HTTP answer on the pod IP (log "
       "scale)</text>\n";
  o << "<text transform=\"translate(18," << top + ph / 2
    << ") rotate(-90)\" text-anchor=\"middle\">fraction of pods</text>\n";

  // One colour per scenario, one line style per variant (the baseline
  // dashed), so "which app" and "cold or warm" read apart.
  std::vector<std::string> scenarios, variants;
  for (const Series* s : series) {
    if (std::find(scenarios.begin(), scenarios.end(), s->scenario) == scenarios.end()) {
      scenarios.push_back(s->scenario);
    }
    if (!s->baseline &&
        std::find(variants.begin(), variants.end(), s->variant) == variants.end()) {
      variants.push_back(s->variant);
    }
  }
  static const char* kStyles[] = {"", " stroke-dasharray=\"1.5,2.5\"",
                                  " stroke-dasharray=\"10,3,2,3\"", " stroke-dasharray=\"12,4\"",
                                  " stroke-dasharray=\"4,4\""};
  size_t i = 0;
  for (const Series* s : series) {
    std::vector<double> v = s->Values(kTotal);
    std::sort(v.begin(), v.end());
    const size_t si = std::find(scenarios.begin(), scenarios.end(), s->scenario) - scenarios.begin();
    const size_t vi = std::find(variants.begin(), variants.end(), s->variant) - variants.begin();
    const char* colour = kColours[si % (sizeof(kColours) / sizeof(kColours[0]))];
    const std::string style =
        s->baseline ? " stroke-dasharray=\"6,3\" stroke-opacity=\"0.8\""
                    : std::string(kStyles[vi % (sizeof(kStyles) / sizeof(kStyles[0]))]);
    if (!v.empty()) {
      // A step function: up by 1/n at each sample.
      std::ostringstream pts;
      double prev = 0;
      pts << x_of(v.front()) << "," << y_of(0);
      for (size_t k = 0; k < v.size(); ++k) {
        const double f = double(k + 1) / v.size();
        pts << " " << x_of(v[k]) << "," << y_of(prev) << " " << x_of(v[k]) << "," << y_of(f);
        prev = f;
      }
      o << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"2\"" << style
        << " points=\"" << pts.str() << "\"/>\n";
    }
    const double ly = top + 8 + 20 * i;
    const double lx = left + pw + 16;
    o << "<line x1=\"" << lx << "\" y1=\"" << ly << "\" x2=\"" << lx + 24 << "\" y2=\"" << ly
      << "\" stroke=\"" << colour << "\" stroke-width=\"2\"" << style << "/>\n";
    Summary sum = Summarize(v);
    o << "<text x=\"" << lx + 30 << "\" y=\"" << ly + 4 << "\">"
      << XmlEscape(s->scenario + " " + s->variant + " (p50 " + FormatMs(sum.p50) + ")")
      << "</text>\n";
    ++i;
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace warmpool::bench
