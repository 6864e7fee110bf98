#pragma once

// warmpool-bench's outputs: a readable table (Markdown, so it can be pasted
// into a README as is), CSV files (one row per pod, one per statistic), and a
// latency CDF plot as SVG, written here without any plotting library.

#include <string>
#include <vector>

#include "bench/samples.h"

namespace warmpool::bench {

// "3.21 ms", "412.0 ms", "5.013 s".
std::string FormatMs(double ms);

// One Markdown table per scenario: for each variant its pods, hits, and per
// phase min/p50/p90/p99/max, and the p50 and p99 reduction of the total
// against the scenario's baseline series. `titles` maps a scenario to a
// heading line ("" none).
std::string MarkdownTables(const std::vector<Series>& series,
                           const std::vector<std::pair<std::string, std::string>>& titles);

// Every pod: scenario,variant,pod,ok,<phase ms...>,outcomes,idle,burst,error.
std::string SamplesCsv(const std::vector<Series>& series);
// Every series and phase: n, hits, min, p50, p90, p99, max, mean, reductions.
std::string SummaryCsv(const std::vector<Series>& series);

// Empirical CDFs of the total time (log-scale x axis) of `series`, one line
// each, labelled "scenario variant".
std::string CdfSvg(const std::vector<const Series*>& series, const std::string& title);

}  // namespace warmpool::bench
